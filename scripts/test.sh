#!/usr/bin/env bash
# THE test command: installs the Python test tools (idempotent), then runs every test target.
# Uses cargo-nextest when present (CI machines have it), else cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-test-tools.sh

if cargo nextest --version >/dev/null 2>&1; then
    profile="default"
    if [[ "${CI:-}" == "true" ]]; then
        profile="ci"
    fi
    cargo nextest run --all-targets --profile "$profile" "$@"
else
    echo "cargo-nextest not found: falling back to cargo test" >&2
    cargo test --all-targets "$@"
fi
