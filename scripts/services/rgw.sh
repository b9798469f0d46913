#!/usr/bin/env bash
# A throwaway one-node Ceph cluster (1 mon, 1 memstore OSD, 1 radosgw) serving S3 on loopback,
# for the live S3 tests and benchmarks.
#
#   scripts/services/rgw.sh start DIR   # prints `export FERRY_TEST_S3_*=...` lines on stdout
#   scripts/services/rgw.sh stop DIR    # kills the daemons by their pid files, removes DIR
#
#   eval "$(scripts/services/rgw.sh start /tmp/ferry-rgw)" && ... ; scripts/services/rgw.sh stop /tmp/ferry-rgw
#
# Everything (ceph.conf, mon and osd data, pid files, admin sockets, logs) lives under DIR;
# nothing is read from or written to /etc/ceph or /var/lib/ceph. Auth is off (loopback only).
# OSD data is in RAM (memstore): it does not survive a stop.
#
# Env: RGW_PORT (default 7480), MON_PORT (default 13300), RGW_START_TIMEOUT (seconds, default 60),
#      RGW_OSD_PORTS (messenger port range for the OSD, default 16800-16899).
# Only the four export lines go to stdout; progress and logs go to stderr.
# Needs root only to apt-get install missing packages (Debian 12: Ceph 16.2).
set -euo pipefail

RGW_PORT=${RGW_PORT:-7480}
MON_PORT=${MON_PORT:-13300}
RGW_START_TIMEOUT=${RGW_START_TIMEOUT:-60}
RGW_OSD_PORTS=${RGW_OSD_PORTS:-16800-16899}
ACCESS_KEY=ferry-test
SECRET_KEY=ferry-test-secret
REGION=us-east-1

log() { printf 'rgw.sh: %s\n' "$*" >&2; }

usage() {
    echo "usage: $0 start|stop DIR" >&2
    exit 2
}

# The PID in DIR/run/NAME.pid, if that process is still a Ceph daemon (a recycled PID is left alone).
daemon_pid() {
    local pidfile=$1/run/$2.pid pid
    [ -f "$pidfile" ] || return 0
    pid=$(tr -dc '0-9' <"$pidfile")
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 0
    if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qE '(ceph-mon|ceph-osd|radosgw)'; then echo "$pid"; fi
}

# terminate PID... : TERM, wait up to 5 s, then KILL (and wait for the exit).
terminate() {
    (($#)) || return 0
    local pid i alive=("$@")
    kill -TERM "$@" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        alive=()
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
        ((${#alive[@]})) || return 0
        if ((i == 50)); then
            log "still running 5 s after TERM, sending KILL: ${alive[*]}"
            kill -KILL "${alive[@]}" 2>/dev/null || true
        fi
        sleep 0.1
    done
}

# Stops the daemons named by the pid files in DIR/run, one at a time: radosgw, the OSD, the mon.
# Each waits for the next in its shutdown (radosgw and the OSD hang until KILL if the mon is gone).
stop_daemons() {
    local dir=$1 name
    [ -d "$dir/run" ] || return 0
    for name in client.rgw.x osd.0 mon.a; do
        # shellcheck disable=SC2046
        terminate $(daemon_pid "$dir" "$name")
    done
}

# On a failed start: TERM everything at once, KILL what is left after 2 s (the cluster is discarded).
kill_now() {
    local dir=$1 name pid pids=() i
    for name in client.rgw.x osd.0 mon.a; do
        pid=$(daemon_pid "$dir" "$name")
        [ -n "$pid" ] && pids+=("$pid")
    done
    ((${#pids[@]})) || return 0
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && break; done || return 0
        sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
}

port_in_use() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stop() {
    local dir=$1
    [ -e "$dir" ] || return 0
    stop_daemons "$dir"
    rm -rf -- "$dir"
}

install_missing() {
    local missing=()
    command -v ceph-mon >/dev/null || missing+=(ceph-mon)
    command -v ceph-osd >/dev/null || missing+=(ceph-osd)
    command -v radosgw >/dev/null || missing+=(radosgw)
    { command -v ceph >/dev/null && command -v monmaptool >/dev/null && command -v radosgw-admin >/dev/null; } || missing+=(ceph-common)
    command -v curl >/dev/null || missing+=(curl)
    command -v uuidgen >/dev/null || [ -r /proc/sys/kernel/random/uuid ] || missing+=(uuid-runtime)
    ((${#missing[@]})) || return 0
    if [ "$(id -u)" -ne 0 ]; then
        log "missing ${missing[*]} and not root: cannot install"
        return 1
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >&2
}

new_uuid() {
    if [ -r /proc/sys/kernel/random/uuid ]; then cat /proc/sys/kernel/random/uuid; else uuidgen; fi
}

start() {
    local dir=$1
    local t0=$SECONDS
    # leave a few seconds of the budget for tearing down after a failure
    local deadline=$((SECONDS + (RGW_START_TIMEOUT > 10 ? RGW_START_TIMEOUT - 5 : 5)))

    install_missing

    if [ -e "$dir" ]; then
        log "$dir exists: stopping and wiping a previous run"
        stop "$dir"
    fi
    local port
    for port in "$MON_PORT" "$RGW_PORT"; do
        if port_in_use "$port"; then
            log "FAILED: something already listens on 127.0.0.1:$port (set MON_PORT / RGW_PORT)"
            exit 1
        fi
    done
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    mkdir -p "$dir/run" "$dir/log" "$dir/mon/ceph-a" "$dir/osd/ceph-0" "$dir/rgw/ceph-rgw.x" "$dir/crash"

    local conf=$dir/ceph.conf
    local fsid
    fsid=$(new_uuid)
    cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$MON_PORT]
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
ms bind port min = ${RGW_OSD_PORTS%-*}
ms bind port max = ${RGW_OSD_PORTS#*-}

auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
ms client mode = crc
keyring = $dir/keyring

; every path under $dir
mon data = $dir/mon/\$cluster-\$id
osd data = $dir/osd/\$cluster-\$id
rgw data = $dir/rgw/\$cluster-\$id
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
run dir = $dir/run
crash dir = $dir/crash
log file = $dir/log/\$name.log
mon cluster log file = $dir/log/cluster.log
log to stderr = false
err to stderr = false
log to syslog = false
mon cluster log to syslog = false

osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon data avail warn = 1
mon max pg per osd = 1000
osd crush chooseleaf type = 0
paxos propose interval = 0.05
paxos min wait = 0.01

osd objectstore = memstore
memstore device bytes = 8G

rgw gc obj min wait = 30
rgw gc processor period = 30

[client.rgw.x]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
ms mon client mode = crc
EOF
    # An empty keyring, so nothing falls back to /etc/ceph.
    : >"$dir/keyring"

    fail() {
        log "FAILED: $*"
        local f
        for f in "$dir"/log/*.out "$dir"/log/*.log; do
            [ -s "$f" ] || continue
            printf '\n--- tail of %s\n' "$f" >&2
            tail -n 25 "$f" >&2
        done
        kill_now "$dir"
        log "logs kept in $dir/log; '$0 stop $dir' removes them"
        exit 1
    }
    remaining() { local r=$((deadline - SECONDS)); ((r > 0)) && echo "$r" || echo 1; }
    cephc() { timeout "$(remaining)" ceph -c "$conf" --connect-timeout "$(remaining)" "$@"; }
    trap 'fail "interrupted"' INT TERM

    # 1. monitor
    log "mon a on 127.0.0.1:$MON_PORT"
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$MON_PORT]" "$dir/monmap" >"$dir/log/monmaptool.out" 2>&1 ||
        fail "monmaptool"
    ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" >"$dir/log/mon-mkfs.out" 2>&1 || fail "ceph-mon --mkfs"
    ceph-mon -c "$conf" -i a >"$dir/log/mon-start.out" 2>&1 || fail "ceph-mon start"

    # 2. OSD
    local osd_uuid osd_id
    osd_uuid=$(new_uuid)
    osd_id=$(cephc osd new "$osd_uuid" 2>"$dir/log/osd-new.out") || fail "ceph osd new (mon not reachable?)"
    [ "$osd_id" = 0 ] || fail "ceph osd new returned '$osd_id', expected 0"
    ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$dir/log/osd-mkfs.out" 2>&1 || fail "ceph-osd --mkfs"
    ceph-osd -c "$conf" -i 0 >"$dir/log/osd-start.out" 2>&1 || fail "ceph-osd start"
    log "osd.0 starting"
    until cephc osd dump 2>/dev/null | grep -qE '^osd\.0 up'; do
        ((SECONDS < deadline)) || fail "osd.0 not up after ${RGW_START_TIMEOUT}s"
        sleep 0.2
    done

    # 3. RGW pools, created up front in one call (radosgw would otherwise create them one by one).
    local pool cmds=""
    for pool in .rgw.root default.rgw.control default.rgw.meta default.rgw.log \
        default.rgw.buckets.index default.rgw.buckets.data default.rgw.buckets.non-ec; do
        cmds+="osd pool create $pool 8 8"$'\n'"osd pool application enable $pool rgw"$'\n'
    done
    printf '%s' "$cmds" | cephc >"$dir/log/pools.out" 2>&1 || fail "creating RGW pools"

    # 4. radosgw, in the foreground (-f) of a background job in its own session, so a Ctrl-C
    #    meant for the caller does not reach it. radosgw -f writes no pid file: the shell that
    #    execs it writes its own PID. radosgw waits for the mon by itself.
    log "radosgw on 127.0.0.1:$RGW_PORT"
    # shellcheck disable=SC2016
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$dir/run/client.rgw.x.pid" radosgw -c "$conf" -f -n client.rgw.x \
        >"$dir/log/radosgw.out" 2>&1 </dev/null &
    local rgw_pid="" i
    for ((i = 0; i < 50; i++)); do
        rgw_pid=$(tr -dc '0-9' 2>/dev/null <"$dir/run/client.rgw.x.pid" || true)
        [ -n "$rgw_pid" ] && break
        sleep 0.05
    done
    [ -n "$rgw_pid" ] || fail "radosgw did not start"
    until curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$RGW_PORT/"; do
        kill -0 "$rgw_pid" 2>/dev/null || fail "radosgw exited"
        ((SECONDS < deadline)) || fail "radosgw not answering on 127.0.0.1:$RGW_PORT after ${RGW_START_TIMEOUT}s"
        sleep 0.1
    done

    # 5. the S3 user, then wait until a SigV4-signed request with its keys succeeds.
    timeout "$(remaining)" radosgw-admin -c "$conf" user create --uid ferry-test --display-name "Ferry tests" \
        --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" >"$dir/log/user-create.out" 2>&1 ||
        fail "radosgw-admin user create"
    # curl 7.88 signs but does not send x-amz-content-sha256, which S3 requires: pass the hash of
    # the empty body (curl then signs it too).
    local code=000
    until code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
        -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
        --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" "http://127.0.0.1:$RGW_PORT/") && [ "$code" = 200 ]; do
        ((SECONDS < deadline)) || fail "signed ListBuckets still answers HTTP $code after ${RGW_START_TIMEOUT}s"
        sleep 0.1
    done
    kill -0 "$rgw_pid" 2>/dev/null || fail "radosgw exited"
    trap - INT TERM
    log "ready in $((SECONDS - t0))s (stop with: $0 stop $dir)"

    echo "export FERRY_TEST_S3_ENDPOINT=http://127.0.0.1:$RGW_PORT"
    echo "export FERRY_TEST_S3_ACCESS_KEY=$ACCESS_KEY"
    echo "export FERRY_TEST_S3_SECRET_KEY=$SECRET_KEY"
    echo "export FERRY_TEST_S3_REGION=$REGION"
}

[ $# -eq 2 ] || usage
[ -n "$2" ] && [ "$2" != / ] || usage
case $1 in
start) start "$2" ;;
stop) stop "$2" ;;
*) usage ;;
esac
