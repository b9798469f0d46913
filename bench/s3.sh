#!/usr/bin/env bash
# Ferry on S3 benchmark entry point: Ferry -> Ceph RGW vs boto3 -> RGW, and small uploads through
# nginx in front of several nodes on S3 + PostgreSQL. See bench/README.md ("S3 benchmark").
#
#   bench/s3.sh [--ferry PATH] [--runs N] [--size-mib N] [--budget SECONDS] [--ferry-args "..."]
#               [--only boto3,ferry-tus,ferry-put,small-disk,small-s3pg,small-nginx,small-boto3,explore]
#               [--explore 8M:2,8M:4,16M:4] [--json FILE] [--keep-logs DIR]
#
# Any other --flag is passed through to bench/s3_bench.py (see `python3 bench/s3_bench.py --help`).
# Env: RGW_PORT/MON_PORT/RGW_OSD_PORTS and PG_PORT pick the services' ports; when unset and the
# defaults (7480/13300/16800-16899, 15432) are taken, 7500/13320/17000-17099 and 15450 are used.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
SERVICES="$REPO_DIR/scripts/services"

FERRY="$REPO_DIR/.build/release/ferry"
RUNS=3
SIZE_MIB=1024
BUDGET=1800
NODES=3
KEEP_LOGS=""
EXTRA=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        --ferry) FERRY="$2"; shift 2 ;;
        --ferry=*) FERRY="${1#*=}"; shift ;;
        --runs) RUNS="$2"; shift 2 ;;
        --runs=*) RUNS="${1#*=}"; shift ;;
        --size-mib) SIZE_MIB="$2"; shift 2 ;;
        --size-mib=*) SIZE_MIB="${1#*=}"; shift ;;
        --budget) BUDGET="$2"; shift 2 ;;
        --budget=*) BUDGET="${1#*=}"; shift ;;
        --keep-logs) KEEP_LOGS="$2"; shift 2 ;;
        --keep-logs=*) KEEP_LOGS="${1#*=}"; shift ;;
        -h|--help) sed -n "2,11p" "$0"; exit 0 ;;
        --*=*) EXTRA+=("$1"); shift ;;
        --*) EXTRA+=("$1=$2"); shift 2 ;;   # one token: values such as "--s3-part-size 16M" start with --
        *) echo "s3.sh: unexpected argument: $1" >&2; exit 2 ;;
    esac
done

if [[ "$FERRY" != /* ]]; then FERRY="$REPO_DIR/$FERRY"; fi
if [[ ! -x "$FERRY" ]]; then
    echo "s3.sh: no ferry binary at $FERRY (build it first: swift build -c release --product ferry)" >&2
    exit 1
fi
case "$FERRY" in *"/debug/"*) echo "s3.sh: warning: $FERRY is a debug build; figures will not be representative" >&2 ;; esac

port_in_use() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Service ports: the caller's, else the defaults, else (someone else's instance has them) alternates.
if [[ -z "${RGW_PORT:-}${MON_PORT:-}${RGW_OSD_PORTS:-}" ]]; then
    if port_in_use 7480 || port_in_use 13300; then
        export RGW_PORT=7500 MON_PORT=13320 RGW_OSD_PORTS=17000-17099
    else
        export RGW_PORT=7480 MON_PORT=13300 RGW_OSD_PORTS=16800-16899
    fi
fi
if [[ -z "${PG_PORT:-}" ]]; then
    if port_in_use 15432; then export PG_PORT=15450; else export PG_PORT=15432; fi
fi

HARD="$(ulimit -Hn)"
WANT=65536
if [[ "$HARD" != unlimited && "$HARD" -lt "$WANT" ]]; then WANT="$HARD"; fi
ulimit -n "$WANT" 2>/dev/null || echo "s3.sh: warning: could not raise the fd limit (now $(ulimit -n))" >&2

# Scratch space: servers' data dirs, the test file, the ferry binary and the services' dirs.
WORK="$(mktemp -d /tmp/ferry-s3bench.XXXXXX)"
chmod 711 "$WORK"   # postgres.sh runs the cluster as the postgres user under it
PY_PID=""
RGW_DIR="$WORK/rgw"
PG_DIR="$WORK/postgres"
NGINX_DIR="$WORK/nginx"
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [[ -n "$PY_PID" ]] && kill -0 "$PY_PID" 2>/dev/null; then
        kill -INT "$PY_PID" 2>/dev/null || true   # s3_bench.py stops its ferry nodes on the way out
        wait "$PY_PID" 2>/dev/null || true
    fi
    if [[ -n "$KEEP_LOGS" ]]; then   # the nodes' logs and the services' logs, before they go
        mkdir -p "$KEEP_LOGS"
        cp "$WORK"/server-*.log "$KEEP_LOGS"/ 2>/dev/null || true
        cp -r "$RGW_DIR/log" "$KEEP_LOGS/rgw" 2>/dev/null || true
        cp "$PG_DIR/postgres.log" "$NGINX_DIR/error.log" "$KEEP_LOGS"/ 2>/dev/null || true
        echo "s3.sh: logs kept in $KEEP_LOGS" >&2
    fi
    # each script stops its daemons by the PIDs in its pid files and removes its directory
    "$SERVICES/nginx.sh" stop "$NGINX_DIR" >&2 || true
    "$SERVICES/postgres.sh" stop "$PG_DIR" >&2 || true
    "$SERVICES/rgw.sh" stop "$RGW_DIR" >&2 || true
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The binary is copied, so a rebuild during the run cannot change or remove it.
cp "$FERRY" "$WORK/ferry"
CC="${CC:-gcc}"
"$CC" -O2 -pthread -o "$WORK/loadgen" "$BENCH_DIR/loadgen.c"
python3 -c 'import boto3' 2>/dev/null || { echo "s3.sh: installing boto3" >&2; python3 -m pip install -q boto3; }

echo "ferry:    $FERRY (copied to $WORK/ferry)"
echo "scratch:  $WORK ($(df -h --output=source,fstype,avail "$WORK" | tail -1 | tr -s ' '))"
echo "machine:  $(nproc) cpus; load $(cut -d' ' -f1-3 /proc/loadavg); $(free -g | awk '/^Mem:/{print $7 " GiB available of " $2}'); fd limit $(ulimit -n)"
echo "runs: $RUNS; size: $SIZE_MIB MiB; budget: ${BUDGET}s"

t0=$SECONDS
echo "starting Ceph RGW on 127.0.0.1:$RGW_PORT (mon $MON_PORT, osd $RGW_OSD_PORTS) ..."
ENV_LINES="$("$SERVICES/rgw.sh" start "$RGW_DIR")"
eval "$ENV_LINES"
echo "starting PostgreSQL on 127.0.0.1:$PG_PORT ..."
ENV_LINES="$("$SERVICES/postgres.sh" start "$PG_DIR")"
eval "$ENV_LINES"
# nginx's port and its upstreams (the ferry nodes, started per sample by s3_bench.py on these ports)
read -r -a PORTS <<<"$(python3 -c "
import socket
socks = [socket.socket() for _ in range($NODES + 1)]
for s in socks: s.bind(('127.0.0.1', 0))
print(' '.join(str(s.getsockname()[1]) for s in socks))")"
NGINX_PORT="${PORTS[0]}"
NODE_PORTS=("${PORTS[@]:1}")
echo "starting nginx on 127.0.0.1:$NGINX_PORT -> ${NODE_PORTS[*]} ..."
ENV_LINES="$("$SERVICES/nginx.sh" start "$NGINX_DIR" "$NGINX_PORT" "${NODE_PORTS[@]}")"
eval "$ENV_LINES"
echo "services ready in $((SECONDS - t0))s: $FERRY_TEST_S3_ENDPOINT, ${FERRY_TEST_POSTGRES_URL%%@*}@..., $FERRY_TEST_NGINX_URL"

# In the background so the EXIT trap can interrupt it; a hard stop 5 min past the budget.
NODE_LIST="$(IFS=,; echo "${NODE_PORTS[*]}")"
timeout -s INT -k 30 "$((${BUDGET%.*} + 300))" \
    python3 -u "$BENCH_DIR/s3_bench.py" --ferry "$WORK/ferry" --loadgen "$WORK/loadgen" --workdir "$WORK" \
    --runs "$RUNS" --size-mib "$SIZE_MIB" --budget "$BUDGET" \
    --nginx-port "$NGINX_PORT" --node-ports "$NODE_LIST" --nginx-dir "$NGINX_DIR" \
    --rgw-conf "$RGW_DIR/ceph.conf" ${EXTRA[@]+"${EXTRA[@]}"} &
PY_PID=$!
set +e
wait "$PY_PID"
RC=$?
PY_PID=""
exit "$RC"
