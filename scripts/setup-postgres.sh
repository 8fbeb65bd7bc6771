#!/usr/bin/env bash
# Makes a PostgreSQL server reachable for the test suite and prints its admin URL on stdout.
# Idempotent: does nothing when the URL already answers. Otherwise installs Debian's postgresql
# package if it is missing, creates/starts the packaged cluster, and creates the `ipm` role.
# Override the URL with TEST_IPM_PG_URL (then it must already work).
set -euo pipefail

URL="${TEST_IPM_PG_URL:-postgres://ipm:ipm@127.0.0.1:5432/postgres}"

answers() { psql "$URL" -qtAc 'SELECT 1' >/dev/null 2>&1; }

if command -v psql >/dev/null && answers; then
    echo "$URL"
    exit 0
fi
if [[ -n "${TEST_IPM_PG_URL:-}" ]]; then
    echo "TEST_IPM_PG_URL=$TEST_IPM_PG_URL does not answer" >&2
    exit 1
fi

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    echo "installing postgresql (Debian package)" >&2
    as_root apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >&2
fi
ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$ver main"; then
    as_root pg_createcluster "$ver" main >&2
fi
as_root pg_ctlcluster "$ver" main start >&2 2>/dev/null || true
for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL did not start" >&2; exit 1; }

as_root su postgres -c "psql -v ON_ERROR_STOP=1 -qc \"DO \\\$\\\$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ipm') THEN
        CREATE ROLE ipm LOGIN SUPERUSER PASSWORD 'ipm';
    END IF; END \\\$\\\$;\"" >&2

answers || { echo "PostgreSQL runs but $URL does not answer" >&2; exit 1; }
echo "$URL"
