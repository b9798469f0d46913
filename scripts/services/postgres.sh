#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster on loopback, for the tests and benchmarks.
#
#   scripts/services/postgres.sh start DIR   # prints `export FERRY_TEST_POSTGRES_URL=...` on stdout
#   scripts/services/postgres.sh stop DIR    # pg_ctl stop -m fast, removes DIR
#
# The cluster (data, unix socket, log) lives in DIR. It listens on 127.0.0.1:PG_PORT only and has
# a database `ferry` owned by the role `ferry` (password `ferry`, md5 auth over TCP). fsync stays
# on, so commit latency is that of the disk under DIR. Run as root, the server runs as the
# `postgres` OS user (DIR is chowned to it; DIR's parents must be searchable by it, as /tmp is).
#
# Env: PG_PORT (default 15432), PG_BIN (default /usr/lib/postgresql/15/bin),
#      PG_START_TIMEOUT (seconds, default 60).
# Only the export line goes to stdout; progress goes to stderr, the server log to DIR/postgres.log.
set -euo pipefail

PG_PORT=${PG_PORT:-15432}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_START_TIMEOUT=${PG_START_TIMEOUT:-60}

log() { printf 'postgres.sh: %s\n' "$*" >&2; }

usage() {
    echo "usage: $0 start|stop DIR" >&2
    exit 2
}

# as_owner CMD...: runs CMD as the owner of the cluster (postgres when we are root).
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

stop() {
    local dir=$1
    [ -e "$dir" ] || return 0
    if [ -f "$dir/data/postmaster.pid" ]; then
        if ! as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >&2; then
            # pg_ctl could not stop it (or the pid file is stale): kill the postmaster by its PID,
            # if that PID is still a postgres process
            local pid
            pid=$(head -n 1 "$dir/data/postmaster.pid" | tr -dc '0-9')
            if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q postgres; then
                log "pg_ctl stop failed: sending SIGQUIT, then SIGKILL, to postmaster $pid"
                kill -QUIT "$pid" 2>/dev/null || true
                local i
                for ((i = 0; i < 50; i++)); do
                    kill -0 "$pid" 2>/dev/null || break
                    sleep 0.1
                done
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
    fi
    rm -rf -- "$dir"
}

install_missing() {
    [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] && [ -x "$PG_BIN/postgres" ] && command -v psql >/dev/null &&
        { [ "$(id -u)" -ne 0 ] || id postgres >/dev/null 2>&1; } && return 0
    if [ "$(id -u)" -ne 0 ]; then
        log "FAILED: $PG_BIN/initdb not found and not root: install postgresql-15"
        exit 1
    fi
    log "installing postgresql-15"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql-15 postgresql-client-15; } >&2
}

port_in_use() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
    local dir=$1 t0=$SECONDS
    install_missing
    if [ -e "$dir" ]; then
        log "$dir exists: stopping and wiping a previous run"
        stop "$dir"
    fi
    if port_in_use "$PG_PORT"; then
        log "FAILED: something already listens on 127.0.0.1:$PG_PORT (set PG_PORT)"
        exit 1
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ "$(id -u)" -ne 0 ] || chown postgres: "$dir"
    chmod 700 "$dir"
    if ! as_owner test -w "$dir"; then
        log "FAILED: the postgres user cannot write $dir (is a parent directory closed to it?)"
        rm -rf -- "$dir"
        exit 1
    fi

    fail() {
        log "FAILED: $*"
        [ -f "$dir/postgres.log" ] && tail -n 30 "$dir/postgres.log" >&2
        [ -f "$dir/initdb.log" ] && tail -n 30 "$dir/initdb.log" >&2
        [ -f "$dir/data/postmaster.pid" ] && as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1
        log "files kept in $dir; '$0 stop $dir' removes them"
        exit 1
    }

    as_owner "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=md5 \
        -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || fail "initdb"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$dir/initdb.log"
    mkdir -p "$dir/socket"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$dir/socket"
    cat >>"$dir/data/postgresql.conf" <<EOF

# scripts/services/postgres.sh
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$dir/socket'
max_connections = 200
fsync = on
synchronous_commit = on
password_encryption = md5
logging_collector = off
EOF
    # local: trust for the postgres superuser over the socket in DIR; TCP on 127.0.0.1: md5.
    cat >"$dir/data/pg_hba.conf" <<EOF
local   all   all                 trust
host    all   all   127.0.0.1/32  md5
EOF

    as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t "$PG_START_TIMEOUT" start >/dev/null 2>&1 ||
        fail "pg_ctl start"

    local psql=(as_owner psql -X -q -v ON_ERROR_STOP=1 -h "$dir/socket" -p "$PG_PORT" -U postgres -d postgres)
    "${psql[@]}" -c "CREATE ROLE ferry LOGIN PASSWORD 'ferry'" >&2 || fail "CREATE ROLE ferry"
    "${psql[@]}" -c "CREATE DATABASE ferry OWNER ferry" >&2 || fail "CREATE DATABASE ferry"
    # the URL works over TCP with the password
    PGPASSWORD=ferry PGCONNECT_TIMEOUT=10 psql -X -q -v ON_ERROR_STOP=1 -At \
        "postgres://ferry:ferry@127.0.0.1:$PG_PORT/ferry" -c 'SELECT 1' >/dev/null || fail "connecting as ferry over TCP"
    log "ready in $((SECONDS - t0))s (stop with: $0 stop $dir)"

    echo "export FERRY_TEST_POSTGRES_URL=postgres://ferry:ferry@127.0.0.1:$PG_PORT/ferry"
}

[ $# -eq 2 ] || usage
[ -n "$2" ] && [ "$2" != / ] || usage
case $1 in
start) start "$2" ;;
stop) stop "$2" ;;
*) usage ;;
esac
