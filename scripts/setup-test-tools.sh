#!/usr/bin/env bash
# Creates ./.venv with the pinned Python test tools (schemathesis for the OpenAPI contract test,
# standardwebhooks for webhook signature tests). Idempotent: does nothing when the venv already
# holds exactly these versions.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION="4.32.5"
STANDARDWEBHOOKS_VERSION="1.1.0"
VENV=".venv"
STAMP="$VENV/.ipm-test-tools"
WANT="schemathesis==$SCHEMATHESIS_VERSION standardwebhooks==$STANDARDWEBHOOKS_VERSION"

if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
    echo "test tools present: $WANT"
    exit 0
fi

PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
if [[ -z "$PYTHON" ]]; then
    echo "error: python3 is needed to install the test tools" >&2
    exit 1
fi

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $WANT
"$VENV/bin/schemathesis" --version
echo "$WANT" > "$STAMP"
echo "test tools installed: $WANT"
