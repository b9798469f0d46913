#!/usr/bin/env bash
# nginx on loopback as a round-robin reverse proxy in front of several `ferry serve` nodes,
# configured the way a tus server behind a proxy needs it (see README, "Many nodes").
#
#   scripts/services/nginx.sh start DIR PORT UPSTREAM_PORT...   # prints `export FERRY_TEST_NGINX_URL=...`
#   scripts/services/nginx.sh stop DIR                          # QUIT, then KILL, by pid file; removes DIR
#
#   eval "$(scripts/services/nginx.sh start /tmp/ferry-nginx 8000 8081 8082 8083)"
#
# nginx runs in the foreground of its own session (`daemon off`, started in the background with
# setsid), with everything under DIR: nginx.conf, nginx.pid, error.log, access.log (one line per
# request with the upstream that served it: `$upstream_addr`) and the temp paths. It listens on
# 127.0.0.1:PORT and spreads requests round-robin over 127.0.0.1:UPSTREAM_PORT...
#
# Env: NGINX_START_TIMEOUT (seconds, default 15), NGINX_WORKERS (default 2).
# Only the export line goes to stdout; progress goes to stderr.
# Needs root only to apt-get install nginx-light when nginx is missing.
set -euo pipefail

NGINX_START_TIMEOUT=${NGINX_START_TIMEOUT:-15}
NGINX_WORKERS=${NGINX_WORKERS:-2}

log() { printf 'nginx.sh: %s\n' "$*" >&2; }

usage() {
    echo "usage: $0 start DIR PORT UPSTREAM_PORT... | stop DIR" >&2
    exit 2
}

is_port() { [[ $1 =~ ^[0-9]+$ ]] && (($1 > 0 && $1 < 65536)); }

port_in_use() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The nginx master's PID from DIR/nginx.pid (or DIR/nginx.spawned before nginx wrote its own),
# if that process is still nginx (a recycled PID is left alone).
master_pid() {
    local dir=$1 file pid
    for file in "$dir/nginx.pid" "$dir/nginx.spawned"; do
        [ -f "$file" ] || continue
        pid=$(tr -dc '0-9' <"$file")
        [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || continue
        if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q nginx; then
            echo "$pid"
            return 0
        fi
    done
}

stop() {
    local dir=$1 pid i
    [ -e "$dir" ] || return 0
    pid=$(master_pid "$dir")
    if [ -n "$pid" ]; then
        # QUIT: graceful (finishes requests in flight); the master exits after its workers.
        kill -QUIT "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "nginx $pid still running 5 s after QUIT, sending KILL to its process group"
            # the group is nginx's own session (setsid): master and workers
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 20; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
        fi
    fi
    rm -rf -- "$dir"
}

install_missing() {
    command -v nginx >/dev/null && return 0
    [ -x /usr/sbin/nginx ] && return 0
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        log "FAILED: nginx not found and cannot install it (install nginx-light)"
        exit 1
    fi
    log "installing nginx-light"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx-light; } >&2
}

nginx_bin() { command -v nginx 2>/dev/null || echo /usr/sbin/nginx; }

# The worker user: as root, `nobody` when it can reach DIR's temp paths, else root (a throwaway
# loopback proxy); as another user nginx cannot switch users and the directive is left out.
user_directive() {
    local dir=$1
    [ "$(id -u)" -eq 0 ] || return 0
    local group
    group=$(id -gn nobody 2>/dev/null || echo nogroup)
    chown -R nobody:"$group" "$dir/tmp"
    if runuser -u nobody -- test -w "$dir/tmp/client_body" 2>/dev/null; then
        echo "user nobody $group;"
    else
        echo "user root;"
    fi
}

write_config() {
    local dir=$1 port=$2
    shift 2
    local servers="" p
    for p in "$@"; do
        # max_fails=0: a refused connection (a killed node) is simply passed to the next node,
        # request by request, and the node is used again as soon as it listens.
        servers+="        server 127.0.0.1:$p max_fails=0;"$'\n'
    done
    cat >"$dir/nginx.conf" <<EOF
# written by scripts/services/nginx.sh
$(user_directive "$dir")
daemon off;
master_process on;
worker_processes $NGINX_WORKERS;
pid $dir/nginx.pid;
error_log $dir/error.log warn;

events {
    worker_connections 4096;
}

http {
    access_log off;
    log_format upstream '\$remote_addr [\$time_local] "\$request" \$status \$request_length \$body_bytes_sent '
                        'upstream=\$upstream_addr upstream_status=\$upstream_status rt=\$request_time';
    client_body_temp_path $dir/tmp/client_body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;

    upstream ferry {
        zone ferry 64k;                      # one round-robin state for all workers
$servers
        keepalive 64;
        # shorter than ferry's --read-timeout, which also closes idle connections: nginx must
        # not reuse a connection the node is closing (a PATCH sent on it could not be retried)
        keepalive_timeout 4s;
    }

    server {
        listen 127.0.0.1:$port;
        access_log $dir/access.log upstream;

        # --- the tus proxy block (README, "Many nodes") ---
        location / {
            proxy_pass http://ferry;

            # Stream request bodies to the node as they arrive, and responses (GET) back: a tus
            # PATCH is stored while it arrives, and whatever arrived counts if the client drops.
            proxy_request_buffering off;
            proxy_buffering off;
            client_max_body_size 0;          # ferry enforces --max-size and Upload-Length

            # HTTP/1.1 with keepalive to the nodes (chunked request bodies need 1.1 when unbuffered)
            proxy_http_version 1.1;
            proxy_set_header Connection "";

            # Location headers: ferry builds them from these with --trust-forwarded-headers
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;

            # Slow mobile uploads: long body and response timeouts
            client_body_timeout 300s;
            proxy_send_timeout 300s;
            proxy_read_timeout 300s;
            send_timeout 300s;

            # Retry on another node only when this one could not be reached. nginx never passes
            # a PATCH or POST to a next node once it sent any of it (no non_idempotent here), and
            # could not replay an unbuffered body anyway.
            proxy_connect_timeout 2s;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 0;
            proxy_next_upstream_timeout 10s;
        }
    }
}
EOF
}

start() {
    (($# >= 3)) || usage
    local dir=$1 port=$2
    shift 2
    local p
    for p in "$port" "$@"; do is_port "$p" || usage; done
    install_missing
    local nginx t0=$SECONDS
    nginx=$(nginx_bin)
    if [ -e "$dir" ]; then
        log "$dir exists: stopping and wiping a previous run"
        stop "$dir"
    fi
    if port_in_use "$port"; then
        log "FAILED: something already listens on 127.0.0.1:$port"
        exit 1
    fi
    mkdir -p "$dir/tmp"/{client_body,proxy,fastcgi,uwsgi,scgi}
    dir=$(cd "$dir" && pwd)
    chmod 755 "$dir"
    write_config "$dir" "$port" "$@"
    if ! "$nginx" -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" 2>"$dir/config-test.log"; then
        log "FAILED: nginx -t rejected $dir/nginx.conf"
        cat "$dir/config-test.log" >&2
        exit 1
    fi

    # setsid: its own session and process group (group id = the master's PID), so stop can
    # kill the workers too if the master does not exit.
    # shellcheck disable=SC2016
    setsid bash -c 'echo $$ >"$0/nginx.spawned"; exec "$@"' "$dir" \
        "$nginx" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
        >>"$dir/nginx.out" 2>&1 </dev/null &
    # $! is the session leader: setsid does not fork here (a background job leads no group),
    # and it becomes the nginx master with exec. Liveness by kill -0, not by its command
    # line, which reads empty while the exec is under way.
    local spawned=$! deadline=$((SECONDS + NGINX_START_TIMEOUT))
    until port_in_use "$port" && [ -s "$dir/nginx.pid" ]; do
        if ! kill -0 "$spawned" 2>/dev/null || ((SECONDS >= deadline)); then
            log "FAILED: nginx is not listening on 127.0.0.1:$port after $((SECONDS - t0))s"
            tail -n 20 "$dir/error.log" "$dir/nginx.out" >&2 2>/dev/null || true
            stop "$dir"
            exit 1
        fi
        sleep 0.05
    done
    log "nginx $(master_pid "$dir") on 127.0.0.1:$port -> 127.0.0.1:{$(
        IFS=,
        echo "$*"
    )}, ready in $((SECONDS - t0))s (stop with: $0 stop $dir)"
    echo "export FERRY_TEST_NGINX_URL=http://127.0.0.1:$port"
}

(($# >= 2)) || usage
[ -n "$2" ] && [ "$2" != / ] || usage
case $1 in
start)
    shift
    start "$@"
    ;;
stop)
    (($# == 2)) || usage
    stop "$2"
    ;;
*) usage ;;
esac
