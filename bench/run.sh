#!/usr/bin/env bash
# Ferry benchmark entry point. See bench/README.md.
#
#   bench/run.sh [--ferry PATH] [--runs N] [--size-mib N] [--budget SECONDS] [--json FILE]
#                [--only dd,discard-stream,single,chunked,burst-create,burst-discard,slow]
#
# Any other --flag is passed through to bench/bench.py (see `python3 bench/bench.py --help`).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"

FERRY="$REPO_DIR/.build/release/ferry"
RUNS=3
SIZE_MIB=1024
BUDGET=900
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
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        --*=*) EXTRA+=("$1"); shift ;;
        --*) EXTRA+=("$1" "$2"); shift 2 ;;
        *) echo "run.sh: unexpected argument: $1" >&2; exit 2 ;;
    esac
done

if [[ "$FERRY" != /* ]]; then FERRY="$REPO_DIR/$FERRY"; fi
if [[ ! -x "$FERRY" ]]; then
    echo "run.sh: no ferry binary at $FERRY (build it first, or pass --ferry PATH)" >&2
    exit 1
fi
case "$FERRY" in *"/debug/"*) echo "run.sh: warning: $FERRY is a debug build; figures will not be representative" >&2 ;; esac

# 1,000 slow connections + 64 burst connections on both ends need more than 1024 fds.
HARD="$(ulimit -Hn)"
WANT=65536
if [[ "$HARD" != unlimited && "$HARD" -lt "$WANT" ]]; then WANT="$HARD"; fi
ulimit -n "$WANT" || echo "run.sh: warning: could not raise the fd limit (now $(ulimit -n))" >&2

# Scratch space under /tmp: the servers' data dirs and dd's test file share this filesystem.
WORK="$(mktemp -d /tmp/ferry-bench.XXXXXX)"
PY_PID=""
cleanup() {
    if [[ -n "$PY_PID" ]] && kill -0 "$PY_PID" 2>/dev/null; then
        kill -INT "$PY_PID" 2>/dev/null || true   # bench.py stops its servers on the way out
        wait "$PY_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CC="${CC:-gcc}"
"$CC" -O2 -pthread -o "$WORK/loadgen" "$BENCH_DIR/loadgen.c"

echo "ferry:    $FERRY"
echo "scratch:  $WORK ($(df -h --output=source,fstype,avail "$WORK" | tail -1 | tr -s ' '))"
echo "fd limit: $(ulimit -n); cpus: $(nproc); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "runs: $RUNS; size: $SIZE_MIB MiB; budget: ${BUDGET}s"

# Run in the background so the EXIT trap can interrupt it; a hard stop 2 min past the budget.
timeout -s INT -k 30 "$((${BUDGET%.*} + 120))" \
    python3 -u "$BENCH_DIR/bench.py" --ferry "$FERRY" --loadgen "$WORK/loadgen" --workdir "$WORK" \
    --runs "$RUNS" --size-mib "$SIZE_MIB" --budget "$BUDGET" ${EXTRA[@]+"${EXTRA[@]}"} &
PY_PID=$!
set +e
wait "$PY_PID"
RC=$?
PY_PID=""
exit "$RC"
