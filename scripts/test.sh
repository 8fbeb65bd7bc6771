#!/usr/bin/env bash
# THE test command: installs the test tools and starts its own PostgreSQL (both idempotent), then runs
# every test target on SQLite (the conformance suite covers both backends), and the API suite a
# second time on PostgreSQL (a fresh database per test), multi-node tests included.
# Uses cargo-nextest when present (CI machines have it), else cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-test-tools.sh
# The suite's test databases (fresh ones per test, named ipm_t_…), dropped before and after.
drop_test_databases() {
    [[ -n "${TEST_IPM_PG_URL:-}" ]] || return 0
    psql "$TEST_IPM_PG_URL" -qtAc "SELECT datname FROM pg_database WHERE datname LIKE 'ipm\_t\_%'" |
        while read -r db; do psql "$TEST_IPM_PG_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true; done
}
# The suite's own PostgreSQL (a private instance on a free port), stopped when this script ends;
# a TEST_IPM_PG_URL set by the caller is used as is.
if [[ -z "${TEST_IPM_PG_URL:-}" ]]; then
    trap 'drop_test_databases || true; bash scripts/setup-postgres.sh stop || true' EXIT
else
    trap 'drop_test_databases || true' EXIT
fi
TEST_IPM_PG_URL="$(bash scripts/setup-postgres.sh start)"
export TEST_IPM_PG_URL
drop_test_databases

if cargo nextest --version >/dev/null 2>&1; then
    profile="default"
    if [[ "${CI:-}" == "true" ]]; then
        profile="ci"
    fi
    echo "== all targets, SQLite =="
    cargo nextest run --all-targets --profile "$profile" -E 'not test(/^multinode::/)' "$@"
    echo "== API suite, PostgreSQL =="
    TEST_IPM_BACKEND=postgres cargo nextest run --test api --profile "$profile" "$@"
else
    echo "cargo-nextest not found: falling back to cargo test" >&2
    cargo test --all-targets "$@" -- --skip multinode::
    TEST_IPM_BACKEND=postgres cargo test --test api "$@"
fi
