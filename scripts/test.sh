#!/usr/bin/env bash
# The whole Ferry test suite, from a fresh clone on a fresh Debian machine:
#   1. installs what the tests need (SQLite headers, the Python tus client) and starts, on
#      loopback, the services the many-node tests use: Ceph RGW (moto_server where radosgw
#      cannot be installed) and a throwaway PostgreSQL cluster (scripts/services/); all are
#      stopped and removed when the script exits,
#   2. builds once with warnings as errors (Package.swift sets it),
#   3. runs the Swift tests (unit, seam conformance, protocol table, live sockets),
#   4. runs the interop lane (official Python tus client), the kill -9 crash test, the many-node
#      lane, the business lane (scenarios, tokens, callbacks, webhooks), the web console in
#      headless Chromium (Selenium) and the HTTPS and HTTP/2 lane (curl, httpx, tuspy, frame-level
#      h2) against the real `ferry` binary.
# Prints one closing line `total: N passed, M failed` and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

install_prerequisites() {
    local missing=()
    dpkg -s libsqlite3-dev >/dev/null 2>&1 || missing+=(libsqlite3-dev)
    command -v python3 >/dev/null || missing+=(python3)
    # TestCertificates (the Swift TLS tests) and the HTTPS and HTTP/2 lane make their CAs with
    # openssl; the lane drives curl (HTTP/2 by nghttp2).
    command -v openssl >/dev/null || missing+=(openssl)
    command -v curl >/dev/null || missing+=(curl)
    # The web console's browser tests: Debian's Chromium and its WebDriver.
    command -v chromium >/dev/null || missing+=(chromium)
    command -v chromedriver >/dev/null || missing+=(chromium-driver)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null || return 1
    fi
    if ! python3 -c 'import jwt, cryptography' 2>/dev/null; then
        log "installing PyJWT and cryptography from PyPI for the business lane (tokens)"
        python3 -m pip install --quiet --disable-pip-version-check PyJWT==2.15.1 cryptography==48.0.0 || return 1
    fi
    if ! python3 -c 'import selenium' 2>/dev/null; then
        log "installing Selenium from PyPI for the console lane"
        # Without its dependency pins: selenium 4.52 asks for a certifi newer than the index may serve.
        python3 -m pip install --quiet --disable-pip-version-check --no-deps selenium==4.52.0 || return 1
        python3 -m pip install --quiet --disable-pip-version-check "trio>=0.31" trio-websocket websocket-client "urllib3[socks]" \
            typing_extensions certifi || return 1
    fi
    if ! python3 -c 'import h2, hpack, hyperframe, httpx' 2>/dev/null; then
        log "installing h2 (frame-level HTTP/2) and httpx[http2] from PyPI for the HTTPS and HTTP/2 lane"
        python3 -m pip install --quiet --disable-pip-version-check h2==4.3.0 "httpx[http2]==0.28.1" || return 1
    fi
    if ! python3 -c 'import tusclient, tuspyserver, uvicorn, fastapi' 2>/dev/null; then
        log "installing tuspy, and tus servers from PyPI for the client interop lane"
        python3 -m pip install --quiet --disable-pip-version-check tuspy==1.1.0 tuspyserver==4.4.3 fastapi-tusd==0.100.2 fastapi==0.165.0 uvicorn==0.54.0 || return 1
    fi
}

passed=0
failed=0
count() { # count <passed> <failed>
    passed=$((passed + $1))
    failed=$((failed + $2))
}

install_prerequisites || { echo "prerequisites could not be installed"; echo "total: 0 passed, 1 failed"; exit 1; }

services_dir=$(mktemp -d /tmp/ferry-services.XXXXXX)
chmod 755 "$services_dir"
s3_kind=""
stop_services() {
    [ -n "$s3_kind" ] && scripts/services/"$s3_kind".sh stop "$services_dir/s3" >/dev/null 2>&1
    [ -n "${FERRY_TEST_POSTGRES_URL:-}" ] && scripts/services/postgres.sh stop "$services_dir/pg" >/dev/null 2>&1
    rm -rf "$services_dir"
}
trap stop_services EXIT

start_services() {
    local exports
    log "starting Ceph RGW (S3) on loopback"
    if exports=$(scripts/services/rgw.sh start "$services_dir/s3" 2>"$services_dir/rgw.log"); then
        s3_kind=rgw
    else
        tail -20 "$services_dir/rgw.log"
        scripts/services/rgw.sh stop "$services_dir/s3" >/dev/null 2>&1
        log "radosgw unavailable: the S3 tests run against moto_server instead"
        exports=$(scripts/services/moto.sh start "$services_dir/s3") || return 1
        s3_kind=moto
    fi
    eval "$exports"
    log "starting PostgreSQL on loopback"
    exports=$(scripts/services/postgres.sh start "$services_dir/pg") || return 1
    eval "$exports"
    export FERRY_TEST_S3_ENDPOINT FERRY_TEST_S3_ACCESS_KEY FERRY_TEST_S3_SECRET_KEY FERRY_TEST_S3_REGION FERRY_TEST_POSTGRES_URL
}
start_services || { echo "test services could not be started"; echo "total: 0 passed, 1 failed"; exit 1; }

log "building (debug, warnings are errors)"
if ! swift build --build-tests; then
    echo "total: 0 passed, 1 failed"
    exit 1
fi

swift_tests() { # swift_tests <swift test arguments...>
    local swift_log swift_status swift_total swift_failed
    swift_log=$(mktemp)
    swift test --skip-build "$@" 2>&1 | tee "$swift_log" | grep -vE '^(✔|◇) |^↳ (Testing Library|Target Platform)|^\s*$|^\[|^[0-9T:+-]+ info ' ; swift_status=${PIPESTATUS[0]}
    swift_total=$(grep -oE 'Test run with [0-9]+ tests?' "$swift_log" | grep -oE '[0-9]+' | tail -1)
    # Failed tests, not swift-testing's closing "✘ Test run with N tests … failed" line.
    swift_failed=$(grep -E '^✘ Test .* failed' "$swift_log" | grep -vcE '^✘ Test run with ')
    tail -2 "$swift_log"
    rm -f "$swift_log"
    if [ "$swift_status" -eq 0 ]; then count "${swift_total:-0}" 0; else count $(( ${swift_total:-1} - swift_failed )) $((swift_failed > 0 ? swift_failed : 1)); fi
}

log "swift tests"
swift_tests --skip DialectFuzzTests --skip AdaptiveParallelTests --skip NetworkProfileTests
# The emulated mobile networks (the heaviest suite: a proxy and a client per profile) run on
# their own, so their CPU does not stretch the timed tests above.
log "swift tests: uploads through emulated mobile networks"
swift_tests --filter NetworkProfileTests
# Tests that judge measured rates run alone, one at a time: beside the others on two cores,
# a probe's measurement says more about the machine than about the link.
log "swift tests: adaptive parallelism (measured rates), alone"
swift_tests --filter AdaptiveParallelTests
# The dialect fuzzer alone, so that its CPU never competes with the timed live tests:
# a bounded 60 s per target.
log "swift tests: dialect fuzzer, 60 s per target"
FERRY_FUZZ_SECONDS=60 FERRY_FUZZ_REQUESTS=10000000 swift_tests --filter DialectFuzzTests

run_lane() { # run_lane <name> <command...>
    local name=$1; shift
    log "$name"
    local out
    out=$(mktemp)
    "$@" 2>&1 | tee "$out"
    local status=${PIPESTATUS[0]}
    local line p f
    line=$(grep -oE '[0-9]+ passed, [0-9]+ failed' "$out" | tail -1)
    p=$(echo "$line" | grep -oE '^[0-9]+')
    f=$(echo "$line" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+')
    rm -f "$out"
    if [ "$status" -eq 0 ]; then count "${p:-1}" 0; else count "${p:-0}" "$(( ${f:-0} > 0 ? ${f:-0} : 1 ))"; fi
}

run_lane "interop: tuspy" python3 Tests/system/interop_test.py --ferry .build/debug/ferry
run_lane "crash test: kill -9 during concurrent uploads" \
    python3 Tests/system/crash_test.py --ferry .build/debug/ferry --kills 40 --uploads 24
run_lane "client: restarts, server restarts, rejections, status polling" \
    python3 Tests/system/client_test.py --ferry .build/debug/ferry
run_lane "client interop: tus servers from PyPI" python3 Tests/system/foreign_server_test.py --ferry .build/debug/ferry
run_lane "many nodes: 3 nodes on S3 + PostgreSQL behind nginx (kill -9, races, frozen holder)" \
    python3 Tests/system/multinode_test.py --ferry .build/debug/ferry --nodes 3 --catalog "$FERRY_TEST_POSTGRES_URL"
run_lane "instant upload: kill -9 around every step, on disk + SQLite" \
    python3 Tests/system/instant_crash_test.py --ferry .build/debug/ferry --rounds 40
run_lane "instant upload: kill -9 around every step, on RGW + PostgreSQL" \
    python3 Tests/system/instant_crash_test.py --ferry .build/debug/ferry --rounds 24 --store s3
run_lane "business: scenarios, tokens, callbacks, webhooks, kill -9 around completion" \
    python3 Tests/system/business_test.py --ferry .build/debug/ferry --crash-rounds 20
run_lane "web console: uploads, reload and resume, dashboard, in headless Chromium" \
    python3 Tests/system/console_test.py --ferry .build/debug/ferry
run_lane "fuzz: 40,000 hostile requests over sockets, no crash, no 5xx" \
    python3 Tests/system/fuzz_test.py --ferry .build/debug/ferry --requests 40000 --seconds 420 --seed 3
run_lane "SIGTERM: bounded graceful shutdown" python3 Tests/system/shutdown_test.py --ferry .build/debug/ferry
run_lane "HTTPS and HTTP/2: interop, resets, reload, abuse" python3 Tests/system/http2_test.py --ferry .build/debug/ferry
if [ "$(id -u)" -eq 0 ]; then
    run_lane "disk full: 507 and resume" python3 Tests/system/disk_full_test.py --ferry .build/debug/ferry
else
    log "disk full: needs root to mount a small tmpfs"; count 0 1
fi

echo
echo "total: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
