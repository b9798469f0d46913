#!/usr/bin/env bash
# Statistics benchmark: the 2,000 x 256 KiB creation-with-upload burst with per-upload
# statistics off (`--no-stats`) and on (the default), alternated run by run; prints both rates,
# ferry's CPU and the ratio. See bench/stats_bench.py.
#
#   bench/stats.sh [--ferry PATH] [--runs N] [--count N]
#
# The set-up (loadgen, fd limit, scratch directory) is bench/business.sh's.
set -euo pipefail
BENCH_SCRIPT=stats_bench.py exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/business.sh" "$@"
