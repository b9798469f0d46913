#!/usr/bin/env python3
"""HTTPS and HTTP/2 benchmark: what TLS costs a large upload, what one multiplexed connection
buys a chat's many small files on a mobile link, and what an HTTP/2 connection costs in memory.

Usage: python3 bench/tls_bench.py --ferry PATH [--runs N] [--size-mib N] [--files N]
                                  [--only throughput,queue,memory] [--json FILE]

1. throughput: one PATCH of --size-mib (default 1024) sent by curl over plain HTTP/1.1, TLS
   HTTP/1.1 and TLS HTTP/2 to the same ferry, and by nghttp (nghttp2's C client) over TLS
   HTTP/2; the same file as one request from Ferry's own client (`ferry put --chunk`, which
   speaks HTTP/2 through NIOHTTP2 and follows the server's 64 KiB frame size) over the three; and
   the same body to `PUT /discard` (read and dropped), which leaves out the disk, whose page
   cache makes the upload figures vary from run to run. All alternate, --runs times: MiB/s
   (median), ferry's CPU seconds (user + sys) per GiB and the client's, each beside the plain
   figure of the same run and client. curl 7.88 writes each HTTP/2 frame as two TLS records in
   two send calls, which costs it more CPU than the server spends: on 2 cores its h2 rate is
   the client's.
2. queue: --files (default 200) files of 64-512 KiB through `ferry netem --profile lte-good`
   (13 Mbit/s, 50 ms each way) in front of an HTTPS ferry: the queue (`ferry put FILES URL`) over
   one HTTP/2 connection, the queue over HTTP/1.1 (a pool of 4), one `ferry put` per file, and
   tuspy (the Python tus client) one file after another: seconds and TCP connections used.
3. memory: ferry's RSS growth per idle connection (plain HTTP/1.1, TLS with HTTP/1.1, TLS with
   h2) and per in-flight PATCH that sent 64 KiB of 1 MiB (one stream of an h2 connection vs an
   HTTP/1.1 connection), 300 of each.

Needs curl, openssl, nghttp (Debian's nghttp2-client; its row is left out without it), and from PyPI h2 and tuspy (bench/tls.sh installs the last two).
Certificates are made with openssl for the run. Everything binds 127.0.0.1.
"""
import argparse
import json
import os
import random
import resource
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def log(text=""):
    print(text, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def make_certificates(folder):
    """A throwaway CA and a leaf for localhost and 127.0.0.1."""
    def run(*args):
        subprocess.run(args, cwd=folder, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Ferry bench CA")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "key.pem", "-out", "leaf.csr", "-subj", "/CN=localhost")
    with open(os.path.join(folder, "ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "ext", "-out", "cert.pem")
    return {name: os.path.join(folder, name) for name in ("ca.pem", "cert.pem", "key.pem")}


class Server:
    """One `ferry serve` on a fresh data folder."""

    def __init__(self, ferry, work, tag, extra=(), env=None):
        self.port = free_port()
        self.data = os.path.join(work, f"data-{tag}")
        self.log = open(os.path.join(work, f"serve-{tag}.log"), "w")
        argv = [ferry, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", self.data,
                "--no-stats", "--max-size", "0", "--log-level", "warning", *extra]
        self.ferry = ferry
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, **env) if env else None)
        self.scheme = "https" if "--tls-cert" in extra else "http"
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"ferry serve {tag} did not start")

    @property
    def pid(self):
        return self.proc.pid

    def connections(self, ca):
        """ferry_http_connections_total by protocol, from /metrics."""
        out = subprocess.run(["curl", "-s", "--cacert", ca, f"{self.scheme}://localhost:{self.port}/metrics"],
                             capture_output=True, text=True).stdout
        counts = {}
        for match in re.finditer(r'ferry_http_connections_total\{protocol="([^"]+)"\} (\d+)', out):
            counts[match.group(1)] = int(match.group(2))
        return counts

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)


def median(values):
    return statistics.median(values) if values else float("nan")


# 1. Throughput ------------------------------------------------------------------------------

def client_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(server, argv, size, env=None):
    """Runs one upload command: (MiB/s, ferry CPU s/GiB, client CPU s/GiB, completed process)."""
    before, client_before = cpu_seconds(server.pid), client_cpu()
    start = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    seconds = time.monotonic() - start
    gib = size / (1 << 30)
    return size / MiB / seconds, (cpu_seconds(server.pid) - before) / gib, (client_cpu() - client_before) / gib, result


def create(server, size, ca, version):
    tus = ["-H", "Tus-Resumable: 1.0.0"]
    created = subprocess.run(["curl", "-s", "-i", "--cacert", ca, version, "-X", "POST", *tus,
                              "-H", f"Upload-Length: {size}", f"{server.scheme}://localhost:{server.port}/files/"],
                             capture_output=True, text=True).stdout
    return re.search(r"(?im)^location: (\S+)", created).group(1)


def delete(location, ca):
    subprocess.run(["curl", "-s", "-o", "/dev/null", "--cacert", ca, "-X", "DELETE", "-H", "Tus-Resumable: 1.0.0", location])


def curl_patch(server, path, size, ca, version):
    location = create(server, size, ca, version)
    rate, cpu, client, result = timed(server, [
        "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", "--cacert", ca, version, "-X", "PATCH",
        "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0", "-H", "Content-Type: application/offset+octet-stream",
        "-T", path, location], size)
    status, http = result.stdout.split()
    if status != "204":
        raise RuntimeError(f"PATCH answered {result.stdout}: {result.stderr}")
    delete(location, ca)
    return rate, cpu, client, "HTTP/" + http


def nghttp_patch(server, path, size, ca, version):
    """The same PATCH from nghttp (nghttp2's own C client), HTTP/2 only."""
    location = create(server, size, ca, "--http2")
    rate, cpu, client, result = timed(server, [
        "nghttp", "-n", "-s", "-d", path, "-H", ":method: PATCH", "-H", "tus-resumable: 1.0.0", "-H", "upload-offset: 0",
        "-H", "content-type: application/offset+octet-stream", location], size, env=dict(os.environ, SSL_CERT_FILE=ca))
    if not re.search(r"\s204\s", result.stdout):
        raise RuntimeError(f"nghttp PATCH: {result.stdout} {result.stderr}")
    delete(location, ca)
    return rate, cpu, client, "HTTP/2"


def ferry_put(server, path, size, ca, version):
    """Ferry's own client: `ferry put` with one request for the whole file (creation-with-upload)."""
    argv = [server.ferry, "put", path, f"{server.scheme}://localhost:{server.port}/files/", "--chunk", f"{size}",
            "--parallel", "1", "--no-resume", "--cacert", ca] + (["--http1"] if version == "--http1.1" else [])
    rate, cpu, client, result = timed(server, argv, size)
    if result.returncode != 0:
        raise RuntimeError(f"ferry put failed: {result.stderr[-500:]}")
    delete(result.stdout.strip().splitlines()[-1], ca)
    return rate, cpu, client, "HTTP/2" if version == "--http2" else "HTTP/1.1"


def curl_discard(server, path, size, ca, version):
    """PUT /discard: the same body read and dropped, the protocol's cost without the disk's."""
    rate, cpu, client, result = timed(server, [
        "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", ca, version, "-X", "PUT", "-H", "Expect:",
        "-T", path, f"{server.scheme}://localhost:{server.port}/discard"], size)
    if result.stdout != "204":
        raise RuntimeError(f"PUT /discard answered {result.stdout}: {result.stderr}")
    return rate, cpu, client, None


# What each run sends, in order: (table, way, client, server, curl's protocol flag).
WAYS = (
    ("PATCH (curl)", "plain h1", curl_patch, "plain", "--http1.1"),
    ("PATCH (curl)", "tls h1", curl_patch, "tls", "--http1.1"),
    ("PATCH (curl)", "tls h2", curl_patch, "tls", "--http2"),
    ("PATCH (curl)", "tls h2 nghttp", nghttp_patch, "tls", "--http2"),
    ("one request (ferry put)", "plain h1", ferry_put, "plain", "--http1.1"),
    ("one request (ferry put)", "tls h1", ferry_put, "tls", "--http1.1"),
    ("one request (ferry put)", "tls h2", ferry_put, "tls", "--http2"),
    ("PUT /discard (curl; no disk)", "plain h1", curl_discard, "plain", "--http1.1"),
    ("PUT /discard (curl; no disk)", "tls h1", curl_discard, "tls", "--http1.1"),
    ("PUT /discard (curl; no disk)", "tls h2", curl_discard, "tls", "--http2"),
)


def throughput(args, work, certs):
    size = args.size_mib * MiB
    path = os.path.join(work, "big.bin")
    with open(path, "wb") as f:
        for _ in range(args.size_mib):
            f.write(os.urandom(MiB))
    servers = {
        "plain": Server(args.ferry, work, "plain", ["--bench-discard"]),
        "tls": Server(args.ferry, work, "tls", ["--tls-cert", certs["cert.pem"], "--tls-key", certs["key.pem"], "--bench-discard"]),
    }
    ways = [w for w in WAYS if w[2] is not nghttp_patch or shutil.which("nghttp")]
    tables = {}
    try:
        for run in range(args.runs):
            for table, way, client, server, version in ways:
                rate, cpu, client_cpu_s, http = client(servers[server], path, size, certs["ca.pem"], version)
                tables.setdefault(table, {}).setdefault(way, []).append((rate, cpu, client_cpu_s))
                log(f"  run {run + 1} {table:30} {way:14} {rate:8.1f} MiB/s  ferry CPU {cpu:5.2f} s/GiB"
                    f"  client CPU {client_cpu_s:5.2f} s/GiB" + (f"  ({http})" if http else ""))
    finally:
        for server in servers.values():
            server.stop()
        os.unlink(path)
    result = {}
    for table, ways_of in tables.items():
        base = median([r for r, _, _ in ways_of["plain h1"]])
        log(f"\n  {args.size_mib} MiB {table}, median of {args.runs}:")
        for way, values in ways_of.items():
            rate = median([r for r, _, _ in values])
            cpu = median([c for _, c, _ in values])
            client = median([c for _, _, c in values])
            result.setdefault(table, {})[way] = {"mib_s": rate, "cpu_s_per_gib": cpu, "client_cpu_s_per_gib": client,
                                                 "vs_plain": rate / base}
            log(f"  {way:14} {rate:8.1f} MiB/s  {rate / base:5.2f}x plain  ferry CPU {cpu:5.2f} s/GiB"
                f"  client CPU {client:5.2f} s/GiB")
    return result


# 2. Many small files on lte-good -----------------------------------------------------------

TUSPY = r'''
import os, sys, time
from tusclient.client import TusClient
url, files = sys.argv[1], sys.argv[2:]
client = TusClient(url)
for path in files:
    client.uploader(path, chunk_size=5 * 1024 * 1024, metadata={"filename": os.path.basename(path)}).upload()
'''


def make_files(folder, count, seed):
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(count):
        path = os.path.join(folder, f"{i:03d}.jpg")
        with open(path, "wb") as f:
            f.write(rng.randbytes(rng.randint(64, 512) * 1024))
        paths.append(path)
    return paths


def queue(args, work, certs):
    paths = make_files(os.path.join(work, "album"), args.files, seed=7)
    total = sum(os.path.getsize(p) for p in paths)
    ca = certs["ca.pem"]
    env = dict(os.environ, REQUESTS_CA_BUNDLE=ca, SSL_CERT_FILE=ca)
    ways = {
        "queue h2 (one connection)": lambda url: [[args.ferry, "put", "--no-resume", "--cacert", ca, *paths, url]],
        "queue h1 (pool of 4)": lambda url: [[args.ferry, "put", "--no-resume", "--cacert", ca, "--http1", *paths, url]],
        "ferry put per file": lambda url: [[args.ferry, "put", "--no-resume", "--cacert", ca, p, url] for p in paths],
        "tuspy one after another": lambda url: [[sys.executable, "-c", TUSPY, url, *paths]],
    }
    times = {name: [] for name in ways}
    connections = {name: [] for name in ways}
    log(f"  {len(paths)} files, {total / MiB:.1f} MiB, through netem lte-good (13 Mbit/s, 50 ms each way)")
    for run in range(args.runs):
        for name, commands in ways.items():
            server = Server(args.ferry, work, "queue", ["--tls-cert", certs["cert.pem"], "--tls-key", certs["key.pem"]])
            netem_port = free_port()
            netem = subprocess.Popen([args.ferry, "netem", "--listen", f"127.0.0.1:{netem_port}",
                                      "--target", f"127.0.0.1:{server.port}", "--profile", "lte-good", "--seed", str(run + 1)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            url = f"https://localhost:{netem_port}/files/"
            try:
                before = server.connections(ca)
                start = time.monotonic()
                for argv in commands(url):
                    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=args.budget)
                    if done.returncode != 0:
                        raise RuntimeError(f"{name}: {' '.join(argv[:4])}... failed: {done.stderr.decode()[-400:]}")
                seconds = time.monotonic() - start
                after = server.connections(ca)
            finally:
                netem.terminate()
                netem.wait()
                server.stop()
            used = sum(after.values()) - sum(before.values()) - 1  # the /metrics request itself
            times[name].append(seconds)
            connections[name].append(used)
            log(f"  run {run + 1} {name:26} {seconds:7.1f} s  {used:4d} connections")
    result = {}
    serial = median(times["tuspy one after another"])
    log(f"\n  {len(paths)} small files over lte-good, median of {args.runs}:")
    for name in ways:
        seconds = median(times[name])
        result[name] = {"seconds": seconds, "connections": median(connections[name]), "speedup_vs_tuspy": serial / seconds}
        log(f"  {name:26} {seconds:7.1f} s  {serial / seconds:5.2f}x tuspy  {median(connections[name]):5.0f} connections")
    return result


# 3. Memory per connection and per in-flight PATCH ------------------------------------------

def tls_socket(port, alpn, ca):
    context = ssl.create_default_context(cafile=ca)
    context.set_alpn_protocols([alpn])
    raw = socket.create_connection(("127.0.0.1", port))
    sock = context.wrap_socket(raw, server_hostname="localhost")
    assert sock.selected_alpn_protocol() == alpn, sock.selected_alpn_protocol()
    return sock


def settle(pid, seconds=1.5):
    time.sleep(seconds)
    return rss_kib(pid)


def memory(args, work, certs):
    import h2.config
    import h2.connection

    count = args.connections
    ca = certs["ca.pem"]
    result = {}
    for kind in ("idle", "patch"):
        for alpn in ("plain", "http/1.1", "h2"):
            tls = [] if alpn == "plain" else ["--tls-cert", certs["cert.pem"], "--tls-key", certs["key.pem"]]
            server = Server(args.ferry, work, "memory", [*tls, "--max-connections", str(count * 2)])
            base_url = f"{server.scheme}://localhost:{server.port}"
            sockets = []
            try:
                # Warm up: one full exchange of each kind, so lazily built state is not counted.
                subprocess.run(["curl", "-s", "-o", "/dev/null", "--cacert", ca, f"{base_url}/healthz"])
                uploads = []
                if kind == "patch":
                    for _ in range(count):
                        out = subprocess.run(["curl", "-s", "-i", "--cacert", ca, "-X", "POST", "-H", "Tus-Resumable: 1.0.0",
                                              "-H", "Upload-Length: 1048576", f"{base_url}/files/"],
                                             capture_output=True, text=True).stdout
                        uploads.append(re.search(r"(?im)^location: https?://[^/]+(\S+)", out).group(1))
                base = settle(server.pid)
                body = os.urandom(64 * 1024)
                for i in range(count):
                    sock = socket.create_connection(("127.0.0.1", server.port)) if alpn == "plain" else tls_socket(server.port, alpn, ca)
                    if alpn == "h2":
                        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
                        conn.initiate_connection()
                        sock.sendall(conn.data_to_send())
                        if kind == "patch":
                            # The server's SETTINGS (its stream window) before the body.
                            sock.settimeout(10)
                            while (conn.remote_settings.initial_window_size <= len(body)
                                   or conn.outbound_flow_control_window <= len(body)):
                                conn.receive_data(sock.recv(65536))
                            conn.increment_flow_control_window(1 << 20)
                            stream = conn.get_next_available_stream_id()
                            conn.send_headers(stream, [(":method", "PATCH"), (":scheme", "https"), (":authority", "localhost"),
                                                       (":path", uploads[i]), ("tus-resumable", "1.0.0"), ("upload-offset", "0"),
                                                       ("content-type", "application/offset+octet-stream"),
                                                       ("content-length", "1048576")])
                            for at in range(0, len(body), 16384):
                                conn.send_data(stream, body[at:at + 16384])
                        sock.sendall(conn.data_to_send())
                        sockets.append((sock, conn))
                    else:
                        if kind == "patch":
                            head = (f"PATCH {uploads[i]} HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
                                    "Content-Type: application/offset+octet-stream\r\nContent-Length: 1048576\r\n\r\n")
                            sock.sendall(head.encode() + body)
                        sockets.append((sock, None))
                loaded = settle(server.pid, 3)
                per = (loaded - base) / count
                result[f"{kind} {alpn}"] = per
                log(f"  {kind:5} {alpn:8}: RSS {base / 1024:6.1f} -> {loaded / 1024:6.1f} MiB with {count}: {per:6.1f} KiB each")
            finally:
                for sock, _ in sockets:
                    try:
                        sock.close()
                    except OSError:
                        pass
                server.stop()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ferry", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--budget", type=float, default=900, help="seconds one way of uploading the files may take")
    parser.add_argument("--only", default="throughput,queue,memory")
    parser.add_argument("--json")
    args = parser.parse_args()
    args.ferry = os.path.abspath(args.ferry)
    work = tempfile.mkdtemp(prefix="ferry-tls-bench.")
    report = {}
    try:
        certs = make_certificates(work)
        parts = args.only.split(",")
        if "throughput" in parts:
            log("== throughput: one large PATCH, plain vs TLS h1 vs TLS h2")
            report["throughput"] = throughput(args, work, certs)
        if "queue" in parts:
            log("\n== queue: many small files on lte-good")
            report["queue"] = queue(args, work, certs)
        if "memory" in parts:
            log("\n== memory: per idle connection, per in-flight PATCH")
            report["memory"] = memory(args, work, certs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
