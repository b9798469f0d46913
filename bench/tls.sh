#!/usr/bin/env bash
# HTTPS and HTTP/2 benchmark entry point (bench/README.md, "HTTPS and HTTP/2").
#
#   bench/tls.sh [--ferry PATH] [--runs N] [--size-mib N] [--files N] [--only throughput,queue,memory]
#
# Any other --flag is passed to bench/tls_bench.py (see `python3 bench/tls_bench.py --help`).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
FERRY="$REPO_DIR/.build/release/ferry"
ARGS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --ferry) FERRY="$2"; shift 2 ;;
        --ferry=*) FERRY="${1#*=}"; shift ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
if [[ "$FERRY" != /* ]]; then FERRY="$REPO_DIR/$FERRY"; fi
[[ -x "$FERRY" ]] || { echo "tls.sh: no ferry binary at $FERRY (build it, or pass --ferry PATH)" >&2; exit 1; }
case "$FERRY" in *"/debug/"*) echo "tls.sh: warning: $FERRY is a debug build; figures will not be representative" >&2 ;; esac
for tool in curl:curl openssl:openssl nghttp:nghttp2-client; do
    command -v "${tool%%:*}" >/dev/null || { echo "tls.sh: installing ${tool#*:}" >&2; apt-get install -y -qq "${tool#*:}" >/dev/null; }
done
python3 -c "import h2, tusclient" 2>/dev/null || python3 -m pip install -q h2 tuspy
ulimit -n 65536 2>/dev/null || true
exec python3 "$BENCH_DIR/tls_bench.py" --ferry "$FERRY" "${ARGS[@]}"
