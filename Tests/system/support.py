"""Helpers shared by the system tests that drive the real `ferry` binary (client_test.py,
foreign_server_test.py): result counting, processes killed by PID, ports, files, netem, and the
parsing of `ferry put --verbose` request lines. Everything stays on 127.0.0.1."""
import hashlib
import os
import re
import signal
import socket
import subprocess
import time

MiB = 1024 * 1024
results = {"passed": 0, "failed": 0, "skipped": 0}
REQUEST_LINE = re.compile(r"^\[\s*([\d.]+)s\] ([A-Z]+)(?: (\d+)\.\.<(\d+))?(.*)$")


class CaseError(Exception):
    pass


def check(condition, what, detail=""):
    results["passed" if condition else "failed"] += 1
    print(("ok    " if condition else "FAIL  ") + what + ("" if condition or not detail else f"\n      {detail}"), flush=True)
    return condition


def skip(what, why):
    results["skipped"] += 1
    print(f"skip  {what} ({why})", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def random_file(path, size):
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 4 * MiB)
            f.write(os.urandom(n))
            left -= n
    return path


def tail(text, lines=25):
    return "\n      ".join(text.strip().splitlines()[-lines:])


class Procs:
    """Every process a case starts; each is killed by its PID at the end."""

    def __init__(self):
        self.procs = []

    def spawn(self, args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        # The binary may be replaced by a concurrent build: retry while it is missing or busy.
        deadline = time.monotonic() + 90
        while True:
            try:
                proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
                break
            except OSError as error:  # ENOENT, ETXTBSY, EACCES while the linker writes it
                if time.monotonic() > deadline:
                    raise
                print(f"      (cannot start {args[0]}: {error}; retrying)", flush=True)
                time.sleep(1)
        self.procs.append(proc)
        return proc

    def kill(self, proc, sig=signal.SIGKILL):
        if proc.poll() is None:
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def kill_all(self):
        for proc in self.procs:
            self.kill(proc)
        self.procs = []


def start_netem(procs, ferry, listen, target, profile, scale, log_path):
    """`ferry netem` from 127.0.0.1:listen to 127.0.0.1:target; waits until it accepts."""
    with open(log_path, "ab") as log:
        proc = procs.spawn(
            [ferry, "netem", "--listen", f"127.0.0.1:{listen}", "--target", f"127.0.0.1:{target}",
             "--profile", profile, "--rate-scale", str(scale)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", listen), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise CaseError(f"ferry netem did not listen on {listen}; see {log_path}")


def request_lines(stderr):
    """The `ferry put --verbose` request lines: (time, method, range start, range end, rest)."""
    lines = []
    for line in stderr.splitlines():
        m = REQUEST_LINE.match(line.strip())
        if m:
            start = int(m.group(3)) if m.group(3) else None
            end = int(m.group(4)) if m.group(4) else None
            lines.append((float(m.group(1)), m.group(2), start, end, m.group(5).strip()))
    return lines
