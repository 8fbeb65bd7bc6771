#!/usr/bin/env bash
# Fails when ARCHITECTURE.md names a path (in backticks) that does not exist.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=$(grep -oE '`[A-Za-z0-9_./-]+/[A-Za-z0-9_./*-]*`' ARCHITECTURE.md | tr -d '`' | sort -u |
  while read -r p; do
    case "$p" in http*|*://*|../*) continue ;; esac
    # Globs such as migrations/*.sql must match something.
    compgen -G "$p" >/dev/null || echo "$p"
  done)
if [ -n "$missing" ]; then
  echo "ARCHITECTURE.md names paths that do not exist:" >&2
  echo "$missing" >&2
  exit 1
fi
echo "ARCHITECTURE.md paths: ok"
