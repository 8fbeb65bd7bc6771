#!/usr/bin/env bash
# The test suite's own PostgreSQL: a private instance with its own data dir and a free port, so
# the suite never depends on (or competes for connections with) whatever answers on 5432.
#
#   bash scripts/setup-postgres.sh [start]   start it (idempotent) and print its admin URL
#   bash scripts/setup-postgres.sh stop      stop it (idempotent)
#
# With TEST_IPM_PG_URL set, that server is used instead: `start` only checks that it answers and
# prints it. `stop` always stops this checkout's private instance, if it runs. scripts/test.sh
# starts the instance and stops it on exit.
#
# Binaries: Debian's `postgresql` package (installed when missing), or `pg_config --bindir`.
# As root (CI), the server runs as the `postgres` user, since initdb refuses to run as root.
# Data dir: target/test-postgres/, or /var/tmp/ipm-test-postgres-<hash of this checkout> when
# the postgres user cannot write under target/. Superuser ipm/ipm, password auth over TCP on
# 127.0.0.1 only, no Unix socket; durability settings off (the suite kills IPM, never PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CMD="${1:-start}"

log() { echo "setup-postgres: $*" >&2; }
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
answers() { psql "$1" -qtAc 'SELECT 1' >/dev/null 2>&1; }

if [[ -n "${TEST_IPM_PG_URL:-}" && "$CMD" == "start" ]]; then
    if command -v psql >/dev/null && answers "$TEST_IPM_PG_URL"; then
        echo "$TEST_IPM_PG_URL"
        exit 0
    fi
    log "TEST_IPM_PG_URL=$TEST_IPM_PG_URL does not answer"
    exit 1
fi

# --- binaries -----------------------------------------------------------------------------------
find_bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    if [[ -n "$d" && -x "$d/initdb" ]]; then echo "$d"; return; fi
    if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; then
        pg_config --bindir
    fi
}
BINDIR=$(find_bindir)
if [[ -z "$BINDIR" || ! -x "$(command -v psql || true)" ]]; then
    [[ "$CMD" == "stop" ]] && exit 0
    log "installing postgresql (Debian package)"
    as_root apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >&2
    BINDIR=$(find_bindir)
fi
[[ -n "$BINDIR" ]] || { log "no PostgreSQL binaries found (initdb, pg_ctl)"; exit 1; }

# --- who runs the server, and where -------------------------------------------------------------
if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || { log "running as root needs a 'postgres' user (initdb refuses root)"; exit 1; }
    # From / : the checkout may be where the postgres user cannot even cd (e.g. under /root).
    as_pg() { (cd / && runuser -u postgres -- "$@"); }
else
    as_pg() { "$@"; }
fi

usable_dir() { # DIR: create it for the server's user; true when that user can write there
    mkdir -p "$1" 2>/dev/null || return 1
    if [[ $(id -u) -eq 0 ]]; then chown postgres: "$1" || return 1; fi
    as_pg test -w "$1" -a -x "$1" 2>/dev/null
}
DIR="$ROOT/target/test-postgres"
if ! usable_dir "$DIR"; then
    DIR="/var/tmp/ipm-test-postgres-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
    usable_dir "$DIR" || { log "cannot make a data dir for PostgreSQL ($DIR)"; exit 1; }
fi
PGDATA="$DIR/data"
PORT_FILE="$DIR/port"

# One start/stop at a time per checkout.
exec 9>"$DIR/.lock"
flock 9

running() { [[ -f "$PGDATA/postmaster.pid" ]] && as_pg "$BINDIR/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }
url_for() { echo "postgres://ipm:ipm@127.0.0.1:$1/postgres"; }

if [[ "$CMD" == "stop" ]]; then
    if running; then
        as_pg "$BINDIR/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null
        log "stopped the test PostgreSQL ($PGDATA)"
    fi
    exit 0
fi
[[ "$CMD" == "start" ]] || { log "usage: $0 [start|stop]"; exit 2; }

if running && [[ -f "$PORT_FILE" ]] && answers "$(url_for "$(cat "$PORT_FILE")")"; then
    url_for "$(cat "$PORT_FILE")"
    exit 0
fi

# --- a fresh cluster on first use ---------------------------------------------------------------
if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
    rm -rf "$PGDATA"
    as_pg mkdir -p "$PGDATA"
    printf 'ipm\n' >"$DIR/pwfile"
    [[ $(id -u) -eq 0 ]] && chown postgres: "$DIR/pwfile"
    as_pg "$BINDIR/initdb" -D "$PGDATA" -U ipm --pwfile="$DIR/pwfile" -E UTF8 --no-locale \
        --auth-local=trust --auth-host=scram-sha-256 --no-sync >"$DIR/initdb.log" 2>&1 ||
        { cat "$DIR/initdb.log" >&2; rm -f "$DIR/pwfile"; exit 1; }
    rm -f "$DIR/pwfile"
    # Sized for the suite: nextest runs one test process per core, each with its own pools, and
    # the multi-node tests run several servers at once.
    max_conn=$(( $(nproc) * 100 + 100 ))
    as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null <<EOF

# --- IPM test suite (scripts/setup-postgres.sh) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = $max_conn
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 256MB
EOF
    log "created a test PostgreSQL cluster in $PGDATA (max_connections $max_conn)"
fi

# --- a free port: the last one if still free, else one derived from this checkout's path --------
free() { python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
EOF
}
port=""
if [[ -f "$PORT_FILE" ]] && free "$(cat "$PORT_FILE")"; then
    port=$(cat "$PORT_FILE")
else
    base=$(( 20000 + 0x$(printf '%s' "$ROOT" | sha256sum | cut -c1-4) % 9000 ))
    for i in $(seq 0 99); do
        if free $(( base + i )); then port=$(( base + i )); break; fi
    done
fi
[[ -n "$port" ]] || { log "no free port found for PostgreSQL"; exit 1; }
echo "$port" >"$PORT_FILE"

if running; then # up on another port (an old start): restart on ours
    as_pg "$BINDIR/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
fi
# (9>&-: the server must not inherit the lock.)
as_pg "$BINDIR/pg_ctl" -D "$PGDATA" -l "$DIR/server.log" -w -t 60 -o "-p $port" start >/dev/null 9>&- ||
    { tail -20 "$DIR/server.log" >&2; exit 1; }
URL=$(url_for "$port")
for _ in $(seq 1 60); do answers "$URL" && break; sleep 0.5; done
answers "$URL" || { log "PostgreSQL started but $URL does not answer"; tail -20 "$DIR/server.log" >&2; exit 1; }
log "test PostgreSQL on 127.0.0.1:$port ($PGDATA)"
echo "$URL"
