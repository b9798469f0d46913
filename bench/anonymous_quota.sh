#!/usr/bin/env bash
# What the per-address anonymous quota costs the quick start: a burst of COUNT x 256 KiB
# anonymous creation-with-upload requests (64 connections, one address) against `ferry serve`
# with its default anonymous quota (1,000 open uploads per address, checked atomically with
# every insert) and with it lifted (--anonymous-open-uploads 0), alternated run by run, each
# server on a fresh data folder. Prints every run and the medians.
#
#   bench/anonymous_quota.sh [--ferry PATH] [--runs N] [--count N]
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FERRY="$BENCH_DIR/../.build/release/ferry"
RUNS=5
COUNT=2000
while [[ $# -gt 0 ]]; do
    case "$1" in
        --ferry) FERRY="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --count) COUNT="$2"; shift 2 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "anonymous_quota.sh: unexpected argument: $1" >&2; exit 2 ;;
    esac
done
[[ -x "$FERRY" ]] || { echo "no ferry binary at $FERRY (swift build -c release --product ferry)" >&2; exit 2; }

SCRATCH=$(mktemp -d /tmp/ferry-anon-bench.XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT
gcc -O2 -pthread -o "$SCRATCH/loadgen" "$BENCH_DIR/loadgen.c"
ulimit -n 65536 2>/dev/null || true

declare -A RATES
for run in $(seq 1 "$RUNS"); do
    for mode in on lifted; do
        data="$SCRATCH/data-$run-$mode"
        port=$((20000 + RANDOM % 20000))
        lifted=()
        [[ $mode == lifted ]] && lifted=(--anonymous-open-uploads 0)
        "$FERRY" serve --creation-rate 0 "${lifted[@]}" --host 127.0.0.1 --port "$port" --data-dir "$data" \
            --log-level error >/dev/null 2>&1 &
        pid=$!
        for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.05; done
        line=$("$SCRATCH/loadgen" burst "$port" create "$COUNT" 262144 64 60 2>/dev/null || true)
        kill "$pid"; wait "$pid" 2>/dev/null || true
        rm -rf "$data"
        rate=$(sed -nE 's/.* rate=([0-9.]+).*/\1/p' <<<"$line")
        errors=$(sed -nE 's/.* errors=([0-9]+).*/\1/p' <<<"$line")
        echo "run $run, anonymous quota ${mode}: ${rate:-?} uploads/s (errors ${errors:-?})"
        RATES[$mode]+="${rate:-0} "
    done
done
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
with=$(median <<<"${RATES[on]}")
without=$(median <<<"${RATES[lifted]}")
# Runs are paired (one of each, back to back): the median of the pairs' ratios is steadier than
# the ratio of medians on a machine whose speed drifts.
pairs=$(paste -d/ <(tr ' ' '\n' <<<"${RATES[on]}" | sed '/^$/d') <(tr ' ' '\n' <<<"${RATES[lifted]}" | sed '/^$/d') \
    | awk -F/ '$2 > 0 {printf "%.4f ", $1 / $2}')
echo "median uploads/s: with the default anonymous quota $with, lifted $without (ratio of medians $(awk "BEGIN {printf \"%.3f\", $with / $without}"))"
echo "pairwise ratios (on / lifted): $pairs-> median $(median <<<"$pairs")"
