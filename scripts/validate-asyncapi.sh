#!/usr/bin/env bash
# Validates an AsyncAPI document with the official parser (@asyncapi/parser from the npm
# registry). Installs the pinned parser into ./.tools/node once (skipped when present).
# Prints every diagnostic; exits non-zero on any error-severity diagnostic or a failed install.
#
# Usage: scripts/validate-asyncapi.sh FILE
set -euo pipefail

PARSER_VERSION="3.6.6"
if [ $# -ne 1 ]; then
  echo "usage: $0 FILE" >&2
  exit 2
fi
file="$1"
[ -f "$file" ] || { echo "no such file: $file" >&2; exit 2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
tools="$root/.tools/node"
marker="$tools/node_modules/@asyncapi/parser/package.json"

installed_version() {
  node -e "process.stdout.write(require(process.argv[1]).version)" "$marker" 2>/dev/null || true
}

if [ "$(installed_version)" != "$PARSER_VERSION" ]; then
  command -v npm >/dev/null || { echo "npm is required to install @asyncapi/parser" >&2; exit 3; }
  mkdir -p "$tools"
  # A lock on the install dir so concurrent test runs do not install over each other.
  exec 9>"$tools/.install.lock"
  flock 9
  if [ "$(installed_version)" != "$PARSER_VERSION" ]; then
    [ -f "$tools/package.json" ] || echo '{"name":"ipm-tools","private":true}' > "$tools/package.json"
    npm install --prefix "$tools" --no-audit --no-fund --loglevel=error \
      "@asyncapi/parser@$PARSER_VERSION" >&2
  fi
  flock -u 9
fi

NODE_PATH="$tools/node_modules" node "$here/validate-asyncapi.mjs" "$tools" "$file"
