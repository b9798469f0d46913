#!/usr/bin/env bash
# Instant-upload benchmark: a file of 1-4 MiB uploaded once, then forwarded 499 times, through
# `ferry netem --profile 3g`: time, bytes on the wire (counted at the emulator), requests and
# server CPU per forward, beside the first upload and ordinary uploads of the same file in the
# same run. See bench/instant_bench.py.
#
#   bench/instant.sh [--ferry PATH] [--runs N] [--forwards N] [--profile NAME] [--size BYTES]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec python3 bench/instant_bench.py "$@"
