"""What the HTTPS and HTTP/2 lane (http2_test.py) is built on: certificates made with the
`openssl` CLI, `ferry serve` over TLS or h2c started and killed by PID, and HTTP/1.1 requests on a
fresh connection each (the HTTP/2 clients are in http2_clients.py). All on 127.0.0.1."""
import hashlib
import http.client
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

from support import CaseError, Procs, free_port

MiB = 1024 * 1024
KiB = 1024
TUS = {"tus-resumable": "1.0.0"}
RUFH6 = {"upload-draft-interop-version": "6"}


# ---------------------------------------------------------------- certificates

class Certificates:
    """A throwaway CA and leaves for localhost / 127.0.0.1 signed by it, made with `openssl`."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.ca = os.path.join(directory, "ca.pem")
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                      "-keyout", os.path.join(directory, "ca.key"), "-out", self.ca, "-days", "2",
                      "-subj", "/CN=Ferry h2 lane CA", "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        with open(os.path.join(directory, "leaf.ext"), "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")

    def _openssl(self, *args):
        done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise CaseError(f"openssl {' '.join(args[:2])} failed: {done.stderr.strip()}")
        return done.stdout

    def leaf(self, name, serial):
        """Makes `<name>.pem` and `<name>.key`; returns (cert path, key path, DER SHA-256)."""
        cert, key, csr = (os.path.join(self.dir, f"{name}.{ext}") for ext in ("pem", "key", "csr"))
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                      "-keyout", key, "-out", csr, "-subj", f"/CN=localhost/O=ferry-{name}")
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", os.path.join(self.dir, "ca.key"),
                      "-set_serial", str(serial), "-days", "2", "-extfile", os.path.join(self.dir, "leaf.ext"),
                      "-out", cert)
        return cert, key, der_sha256(cert)

    def context(self, alpn):
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.set_alpn_protocols(list(alpn))
        return ctx


def der_sha256(pem_path):
    with open(pem_path) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


# ---------------------------------------------------------------- the server

class Ferry:
    """One `ferry serve` on 127.0.0.1: over TLS (`certs` given), h2c, or plain HTTP/1.1."""

    def __init__(self, env, name, *, tls=True, h2c=False, extra=(), cert=None, key=None, data=None):
        self.env, self.name, self.tls, self.h2c = env, name, tls, h2c
        self.extra = list(extra)
        self.cert = cert or env.cert_a
        self.key = key or env.key_a
        self.data = data or os.path.join(env.tmp, f"data-{name}")
        self.log_path = os.path.join(env.tmp, f"ferry-{name}.log")
        self.port = free_port()
        self.proc = None

    @property
    def scheme(self):
        return "https" if self.tls else "http"

    @property
    def authority(self):
        return f"127.0.0.1:{self.port}"

    def url(self, path):
        return f"{self.scheme}://{self.authority}{path}"

    def args(self):
        args = [self.env.ferry, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", self.data,
                "--log-level", "info", "--creation-rate", "0", "--anonymous-open-uploads", "0"]
        if self.tls:
            args += ["--tls-cert", self.cert, "--tls-key", self.key]
        if self.h2c:
            args += ["--h2c"]
        return args + self.extra

    def start(self, timeout=60):
        with open(self.log_path, "ab") as log:
            self.proc = self.env.procs.spawn(self.args(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if h1(self, "GET", "/healthz", timeout=2)[0] == 200:
                    return self
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        raise CaseError(f"ferry {self.name} did not become ready (exit {self.proc.poll()}); log:\n{self.log_tail()}")

    def stop(self, sig=signal.SIGKILL):
        if self.proc is not None:
            self.env.procs.kill(self.proc, sig)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, lines=20):
        return "\n      ".join(self.log_text().strip().splitlines()[-lines:])

    def wait_log(self, needle, count=1, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_text().count(needle) >= count:
                return True
            time.sleep(0.05)
        return False

    def metric(self, name, protocol):
        """A `ferry_http_connections_*{protocol=...}` value read over HTTP/1.1."""
        status, _, body = h1(self, "GET", "/metrics")
        if status != 200:
            raise CaseError(f"/metrics answered {status}")
        m = re.search(rf'^{re.escape(name)}\{{protocol="{re.escape(protocol)}"\}} ([0-9.e+]+)$', body.decode(), re.M)
        return float(m.group(1)) if m else None

    def connect(self, alpn=("h2",), timeout=10):
        """A TCP connection to the server, wrapped in TLS with `alpn` when the server speaks TLS."""
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.tls:
            return raw
        sock = self.env.certs.context(alpn).wrap_socket(raw, server_hostname="127.0.0.1")
        if alpn == ("h2",) and sock.selected_alpn_protocol() != "h2":
            sock.close()
            raise CaseError(f"ALPN chose {sock.selected_alpn_protocol()!r}, not h2")
        return sock

    def peer_certificate_sha256(self):
        """The DER SHA-256 of the certificate a new TLS connection is shown."""
        with self.connect(alpn=("http/1.1",)) as sock:
            return hashlib.sha256(sock.getpeercert(binary_form=True)).hexdigest()


def h1(server, method, path, headers=None, body=None, timeout=30):
    """One HTTP/1.1 request on a new connection: (status, lowercased headers, body)."""
    if server.tls:
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=timeout,
                                           context=server.env.certs.context(["http/1.1"]))
    else:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


def path_of(location):
    return "/" + location.split("://", 1)[-1].split("/", 1)[1] if "://" in location else location


def poll_offset(server, path, want, timeout=3.0, headers=TUS):
    """HEADs `path` until its upload-offset is `want` or the time is up; returns the last offset."""
    deadline = time.monotonic() + timeout
    offset = None
    while True:
        status, got, _ = h1(server, "HEAD", path, headers)
        offset = int(got["upload-offset"]) if status in (200, 204) and "upload-offset" in got else None
        if offset == want or time.monotonic() > deadline:
            return offset
        time.sleep(0.1)


# ---------------------------------------------------------------- the lane's environment

class Env:
    """The lane's temp dir, certificates (CA, leaf A, renewed leaf B), processes and binary."""

    def __init__(self, ferry, tmp):
        self.ferry = ferry
        self.tmp = tmp
        self.procs = Procs()
        self.certs = Certificates(os.path.join(tmp, "pki"))
        self.cert_a, self.key_a, self.sha_a = self.certs.leaf("leaf-a", 0xA001)
        self.cert_b, self.key_b, self.sha_b = self.certs.leaf("leaf-b", 0xB002)
        self.ca = self.certs.ca

    def server(self, name, **kwargs):
        return Ferry(self, name, **kwargs).start()

    def file(self, name, size, seed=0):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(random.Random(seed).randbytes(size))
        return path

    def cleanup(self):
        self.procs.kill_all()


def copy_cert(src_cert, src_key, dst_cert, dst_key):
    """Replaces the served files the way a renewal tool does (write aside, then rename)."""
    for src, dst in ((src_cert, dst_cert), (src_key, dst_key)):
        shutil.copyfile(src, dst + ".new")
        os.replace(dst + ".new", dst)
