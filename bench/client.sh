#!/usr/bin/env bash
# Ferry client benchmark entry point. See bench/CLIENT.md.
#
#   bench/client.sh [--ferry PATH] [--runs N] [--size-mib N|profile=N,...,*=N] [--rate-scale X]
#                   [--profiles cliff,vacuum,handover,middlebox,lte-driving,3g,blackhole,per-flow]
#                   [--skip-clean] [--clean-size-mib N] [--budget SECONDS] [--json FILE]
#
# Any other --flag is passed to bench/client_bench.py (see `python3 bench/client_bench.py --help`).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"

FERRY="$REPO_DIR/.build/release/ferry"
RUNS=3
SIZE_MIB="cliff=80,vacuum=80,per-flow=128,*=20"
PROFILES="cliff,vacuum,handover,middlebox,lte-driving,3g,blackhole,per-flow"
RATE_SCALE=4
BUDGET=3600
EXTRA=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        --ferry) FERRY="$2"; shift 2 ;;
        --ferry=*) FERRY="${1#*=}"; shift ;;
        --runs) RUNS="$2"; shift 2 ;;
        --runs=*) RUNS="${1#*=}"; shift ;;
        --size-mib) SIZE_MIB="$2"; shift 2 ;;
        --size-mib=*) SIZE_MIB="${1#*=}"; shift ;;
        --profiles) PROFILES="$2"; shift 2 ;;
        --profiles=*) PROFILES="${1#*=}"; shift ;;
        --rate-scale) RATE_SCALE="$2"; shift 2 ;;
        --rate-scale=*) RATE_SCALE="${1#*=}"; shift ;;
        --budget) BUDGET="$2"; shift 2 ;;
        --budget=*) BUDGET="${1#*=}"; shift ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        --skip-clean|--scale-fates) EXTRA+=("$1"); shift ;;
        --*=*) EXTRA+=("$1"); shift ;;
        --*) EXTRA+=("$1" "$2"); shift 2 ;;
        *) echo "client.sh: unexpected argument: $1" >&2; exit 2 ;;
    esac
done

if [[ "$FERRY" != /* ]]; then FERRY="$REPO_DIR/$FERRY"; fi

python3 -c 'import tusclient' 2>/dev/null || { echo "client.sh: tuspy is not installed (pip install tuspy)" >&2; exit 1; }

# Not /tmp/ferry-*: something on the shared machine has been seen removing such directories.
WORK="$(mktemp -d /tmp/fcbench.XXXXXX)"
PY_PID=""
cleanup() {
    if [[ -n "$PY_PID" ]] && kill -0 "$PY_PID" 2>/dev/null; then
        kill -TERM "$PY_PID" 2>/dev/null || true   # timeout passes it on; client_bench.py stops its processes on the way out
        wait "$PY_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The binary may be missing for a moment while someone rebuilds it: wait, then run a private
# copy so the whole benchmark uses one build.
for _ in $(seq 1 60); do
    [[ -x "$FERRY" ]] && break
    echo "client.sh: waiting for $FERRY ..." >&2
    sleep 3
done
if [[ ! -x "$FERRY" ]]; then
    echo "client.sh: no ferry binary at $FERRY (build it first, or pass --ferry PATH)" >&2
    exit 1
fi
for _ in 1 2 3 4 5; do
    if cp "$FERRY" "$WORK/ferry" 2>/dev/null && "$WORK/ferry" --help >/dev/null 2>&1; then break; fi
    rm -f "$WORK/ferry"; sleep 3
done
[[ -x "$WORK/ferry" ]] || { echo "client.sh: could not copy a working $FERRY" >&2; exit 1; }
case "$FERRY" in *"/debug/"*) echo "client.sh: warning: $FERRY is a debug build; the clean figures will not be representative" >&2 ;; esac

LOADGEN=""
CC="${CC:-gcc}"
if command -v "$CC" >/dev/null && "$CC" -O2 -pthread -o "$WORK/loadgen" "$BENCH_DIR/loadgen.c"; then
    LOADGEN="$WORK/loadgen"
else
    echo "client.sh: warning: could not compile bench/loadgen.c; the clean step will have no server baseline" >&2
fi

echo "ferry:    $FERRY (modified $(date -r "$FERRY" '+%F %T'); repo at $(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo "scratch:  $WORK ($(df -h --output=source,fstype,avail "$WORK" | tail -1 | tr -s ' '))"
echo "cpus: $(nproc); load: $(cut -d' ' -f1-3 /proc/loadavg); tuspy $(python3 -c 'import importlib.metadata as m; print(m.version("tuspy"))' 2>/dev/null || echo '?')"

# In the background so the EXIT trap can interrupt it; a hard stop 5 min past the budget.
timeout -s TERM -k 30 "$((${BUDGET%.*} + 300))" \
    python3 -u "$BENCH_DIR/client_bench.py" --ferry "$WORK/ferry" --ferry-label "$FERRY" --ferry-source "$FERRY" --loadgen "$LOADGEN" \
    --workdir "$WORK" --runs "$RUNS" --size-mib "$SIZE_MIB" --profiles "$PROFILES" --rate-scale "$RATE_SCALE" \
    --budget "$BUDGET" ${EXTRA[@]+"${EXTRA[@]}"} &
PY_PID=$!
set +e
wait "$PY_PID"
RC=$?
PY_PID=""
exit "$RC"
