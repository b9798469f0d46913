#!/usr/bin/env bash
# Fallback S3 for the live tests when Ceph RGW (scripts/services/rgw.sh) cannot be installed:
# moto_server, a Python mock of S3, on loopback.
#
#   scripts/services/moto.sh start DIR   # prints `export FERRY_TEST_S3_*=...` lines on stdout
#   scripts/services/moto.sh stop DIR    # kills moto's whole process group, removes DIR
#
# moto is not S3: it answers HTTP 500 where S3 says NoSuchUpload, and it is slow on ranged reads.
# Prefer rgw.sh; use this only where radosgw is not available.
#
# Env: MOTO_PORT (default: RGW_PORT, else 7480, so either script gives the same endpoint),
#      MOTO_START_TIMEOUT (seconds, default 30).
# Installs moto[server] 5.1.x with pip if moto_server is missing (into a venv under
# ${XDG_CACHE_HOME:-~/.cache}/ferry/ when the system Python refuses pip installs, as Debian 12's does).
# Only the four export lines go to stdout; progress goes to stderr, moto's own log to DIR/moto.log.
set -euo pipefail

MOTO_PORT=${MOTO_PORT:-${RGW_PORT:-7480}}
MOTO_START_TIMEOUT=${MOTO_START_TIMEOUT:-30}
MOTO_VERSION='5.1.*'
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/ferry/moto-venv

log() { printf 'moto.sh: %s\n' "$*" >&2; }

usage() {
    echo "usage: $0 start|stop DIR" >&2
    exit 2
}

# PIDs of the processes whose process group is $1 (moto_server may be a shim, e.g. pyenv's,
# that runs the real server as a child; both are in the group).
group_members() {
    local pgid=$1
    ps -e -o pid=,pgid= | awk -v g="$pgid" '$2 == g { print $1 }'
}

stop() {
    local dir=$1
    [ -e "$dir" ] || return 0
    local pgid=""
    [ -f "$dir/moto.pgid" ] && pgid=$(tr -dc '0-9' <"$dir/moto.pgid")
    if [ -n "$pgid" ] && [ -n "$(group_members "$pgid")" ]; then
        # a recycled group id is left alone: the group must still run moto
        if ps -o args= -p "$(group_members "$pgid" | tr '\n' ',' | sed 's/,$//')" | grep -q moto; then
            kill -TERM -- "-$pgid" 2>/dev/null || true
            local i
            for ((i = 0; i < 50; i++)); do
                [ -n "$(group_members "$pgid")" ] || break
                sleep 0.1
            done
            if [ -n "$(group_members "$pgid")" ]; then
                log "process group $pgid still running 5 s after TERM, sending KILL"
                kill -KILL -- "-$pgid" 2>/dev/null || true
                for ((i = 0; i < 20; i++)); do
                    [ -n "$(group_members "$pgid")" ] || break
                    sleep 0.1
                done
            fi
        else
            log "process group $pgid no longer runs moto: not killing it"
        fi
    fi
    rm -rf -- "$dir"
}

port_in_use() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Sets MOTO_CMD to a moto server command line, installing moto if needed.
find_moto() {
    if command -v moto_server >/dev/null && python3 -c 'import moto.server' 2>/dev/null; then
        MOTO_CMD=(moto_server)
        return 0
    fi
    if [ -x "$VENV/bin/moto_server" ]; then
        MOTO_CMD=("$VENV/bin/moto_server")
        return 0
    fi
    if ! command -v python3 >/dev/null || ! python3 -m pip --version >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
            log "installing python3-pip python3-venv"
            export DEBIAN_FRONTEND=noninteractive
            { apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 python3-pip python3-venv; } >&2
        fi
    fi
    # PEP 668 (Debian 12's /usr/bin/python3): no pip installs outside a venv
    if ! python3 -c 'import os, sysconfig, sys; sys.exit(os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))' 2>/dev/null; then
        log "the system Python is externally managed (PEP 668)"
    elif log "installing moto[server]==$MOTO_VERSION with pip" &&
        python3 -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2 &&
        command -v moto_server >/dev/null; then
        MOTO_CMD=(moto_server)
        return 0
    fi
    log "installing moto[server]==$MOTO_VERSION into a venv in $VENV"
    python3 -m venv "$VENV" >&2 &&
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2 || {
        log "FAILED: could not install moto[server]"
        exit 1
    }
    MOTO_CMD=("$VENV/bin/moto_server")
}

start() {
    local dir=$1
    find_moto
    local t0=$SECONDS
    local deadline=$((SECONDS + MOTO_START_TIMEOUT))
    if [ -e "$dir" ]; then
        log "$dir exists: stopping and wiping a previous run"
        stop "$dir"
    fi
    if port_in_use "$MOTO_PORT"; then
        log "FAILED: something already listens on 127.0.0.1:$MOTO_PORT (set MOTO_PORT)"
        exit 1
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)

    # setsid: its own session and process group (group id = its PID), so stop can kill the
    # shim and the real server together.
    # The inner shell is the session leader whether or not setsid had to fork: its PID is the group id.
    # shellcheck disable=SC2016
    setsid bash -c 'echo $$ >"$0/moto.pgid"; exec "$@"' "$dir" "${MOTO_CMD[@]}" -H 127.0.0.1 -p "$MOTO_PORT" \
        >"$dir/moto.log" 2>&1 </dev/null &
    local pid i
    for ((i = 0; i < 50; i++)); do
        [ -s "$dir/moto.pgid" ] && break
        sleep 0.05
    done
    pid=$(tr -dc '0-9' 2>/dev/null <"$dir/moto.pgid" || true)
    if [ -z "$pid" ]; then
        log "FAILED: moto_server did not start"
        cat "$dir/moto.log" >&2
        exit 1
    fi
    log "moto_server (${MOTO_CMD[*]}) on 127.0.0.1:$MOTO_PORT, process group $pid"

    until port_in_use "$MOTO_PORT"; do
        if [ -z "$(group_members "$pid")" ] || ((SECONDS >= deadline)); then
            log "FAILED: moto_server is not listening on 127.0.0.1:$MOTO_PORT after $((SECONDS - t0))s"
            tail -n 30 "$dir/moto.log" >&2
            stop "$dir"
            exit 1
        fi
        sleep 0.1
    done
    log "ready in $((SECONDS - t0))s (stop with: $0 stop $dir)"

    echo "export FERRY_TEST_S3_ENDPOINT=http://127.0.0.1:$MOTO_PORT"
    echo "export FERRY_TEST_S3_ACCESS_KEY=testing"
    echo "export FERRY_TEST_S3_SECRET_KEY=testing"
    echo "export FERRY_TEST_S3_REGION=us-east-1"
}

[ $# -eq 2 ] || usage
[ -n "$2" ] && [ "$2" != / ] || usage
case $1 in
start) start "$2" ;;
stop) stop "$2" ;;
*) usage ;;
esac
