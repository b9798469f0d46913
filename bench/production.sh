#!/usr/bin/env bash
# The production configuration against the quick start: the 2,000 x 256 KiB creation-with-upload
# burst on defaults, + HS256 JWT, + a pre-finish callback, + 2 webhooks, and all together, with
# nginx as the business receivers, a fresh ext4 per sample, alternated; prints uploads/s and
# ferry's CPU per 1,000 uploads, each beside the defaults'. See bench/production_bench.py.
#
#   bench/production.sh [--ferry PATH] [--runs N (5)] [--count N] [--no-fresh-fs]
#
# The set-up (loadgen, fd limit, scratch directory) is bench/business.sh's.
set -euo pipefail
command -v nginx >/dev/null || { echo "production.sh: installing nginx" >&2; apt-get install -y -qq nginx-light >/dev/null 2>&1 || apt-get install -y -qq nginx >/dev/null; }
ARGS=("$@")
[[ " $* " == *" --runs"* ]] || ARGS+=(--runs 5)
BENCH_SCRIPT=production_bench.py exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/business.sh" "${ARGS[@]}"
