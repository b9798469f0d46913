#!/usr/bin/env bash
# Business-integration benchmark: 2,000 x 256 KiB creation-with-upload, without a configuration
# (embedded defaults) and with JWT auth + a pre-finish callback + webhooks, alternated run by run.
# See bench/business_bench.py for what is measured.
#
#   bench/business.sh [--ferry PATH] [--runs N] [--count N] [--alg hs256|rs256] [--json FILE]
#
# Any other --flag is passed through to bench/business_bench.py (`python3 bench/business_bench.py --help`).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"

FERRY="$REPO_DIR/.build/release/ferry"
RUNS=3
EXTRA=()
# bench/stats.sh runs its own driver through this script (same set-up, loadgen, fd limit).
SCRIPT="${BENCH_SCRIPT:-business_bench.py}"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --ferry) FERRY="$2"; shift 2 ;;
        --ferry=*) FERRY="${1#*=}"; shift ;;
        --runs) RUNS="$2"; shift 2 ;;
        --runs=*) RUNS="${1#*=}"; shift ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        --*=*) EXTRA+=("$1"); shift ;;
        --*)
            # A flag without a value (--no-fresh-fs) is passed alone.
            if [[ $# -lt 2 || "$2" == --* ]]; then EXTRA+=("$1"); shift; else EXTRA+=("$1" "$2"); shift 2; fi ;;
        *) echo "business.sh: unexpected argument: $1" >&2; exit 2 ;;
    esac
done

if [[ "$FERRY" != /* ]]; then FERRY="$REPO_DIR/$FERRY"; fi
if [[ ! -x "$FERRY" ]]; then
    echo "business.sh: no ferry binary at $FERRY (build it first, or pass --ferry PATH)" >&2
    exit 1
fi
# Read the whole help first: `grep -q` stopping early would fail the pipe under pipefail.
SERVE_HELP="$("$FERRY" serve --help 2>/dev/null || true)"
if ! grep -q -- '--config' <<<"$SERVE_HELP"; then
    echo "business.sh: $FERRY serve has no --config option (built before the business features?)" >&2
    exit 1
fi
case "$FERRY" in *"/debug/"*) echo "business.sh: warning: $FERRY is a debug build; figures will not be representative" >&2 ;; esac

HARD="$(ulimit -Hn)"
WANT=65536
if [[ "$HARD" != unlimited && "$HARD" -lt "$WANT" ]]; then WANT="$HARD"; fi
ulimit -n "$WANT" || echo "business.sh: warning: could not raise the fd limit (now $(ulimit -n))" >&2

WORK="$(mktemp -d /tmp/ferry-business-bench.XXXXXX)"
PY_PID=""
cleanup() {
    if [[ -n "$PY_PID" ]] && kill -0 "$PY_PID" 2>/dev/null; then
        kill -INT "$PY_PID" 2>/dev/null || true   # business_bench.py stops its processes on the way out
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

python3 -u "$BENCH_DIR/$SCRIPT" --ferry "$FERRY" --loadgen "$WORK/loadgen" --workdir "$WORK" \
    --runs "$RUNS" ${EXTRA[@]+"${EXTRA[@]}"} &
PY_PID=$!
set +e
wait "$PY_PID"
RC=$?
PY_PID=""
exit "$RC"
