#!/usr/bin/env python3
"""System test of Ferry's HTTPS and HTTP/2 (`ferry serve --tls-cert/--tls-key`, `--h2c`, the
`--h2-*` windows and limits) against the real binary.

Usage: python3 Tests/system/http2_test.py --ferry PATH [--case NAME ...] [--keep]

Makes a throwaway CA and two leaves for localhost/127.0.0.1 (A, and a renewed B) with the
`openssl` CLI, and starts `ferry serve` on 127.0.0.1: `main` (TLS, default HTTP/2 settings),
`h2c` (plain text, --h2c), `limits` (TLS, --h2-max-streams 4, --h2-stream-window 1M,
--h2-connection-window 2M, --max-size 1M), and per case `abuse`, `reload` and `shutdown`.
Cases (--case runs a subset):

  interop      the console, /metrics, /healthz and the admin API over HTTP/2;
               curl --http2 / --http2-prior-knowledge (h2c) / --http1.1 through a tus upload's
               life (creation-with-upload, PATCH, HEAD, GET with Range, DELETE); httpx with
               http2=True; tuspy over HTTPS; RUFH's `HTTP/2 104` with curl -v.
  resets       on h2, a RUFH creation and a tus PATCH reset (RST_STREAM CANCEL) mid-body, and a
               PATCH whose TCP connection is cut: the offset is exactly the bytes sent, the rest
               resumes, GET is byte-identical.
  refusals     a wrong offset (409) and sizes over --max-size (413) answered while only the
               request's HEADERS were sent; the connection stays usable.
  streams      200 creations multiplexed over one connection (the h2 connection count rises by
               exactly 1); SETTINGS_MAX_CONCURRENT_STREAMS; a stream past it.
  flow         SETTINGS_INITIAL_WINDOW_SIZE and the connection window equal the configured
               ones before any DATA; 4 MiB in flight on one stream without a round trip.
  abuse        rapid reset, CONTINUATION flood, a 64 KiB header, WINDOW_UPDATE / PING /
               SETTINGS / empty DATA floods, 200 idle connections: each is cut, the server stays
               healthy (/healthz, RSS under +100 MiB, an upload still works).
  reload       SIGHUP with a renewed certificate during an h2 upload (the upload completes, new
               connections see B); a garbage or mismatched key at reload keeps B and logs
               tls.certificate_reload_failed; bad or missing files at start-up are refused.
  shutdown     SIGTERM during an h2 PATCH: GOAWAY, the received bytes are kept, the process
               exits within --shutdown-timeout.
  client       `ferry put` over HTTPS: the system store, --cacert and --pin (refusals at once,
               never retried); through `ferry netem --profile middlebox` in front of TLS; a
               folder of 200 small files by the upload queue over one HTTP/2 connection.

Needs the PyPI packages h2 and httpx[http2] (and tuspy for one check), the curl and openssl
CLIs. Every process it starts is killed by PID. Prints one line per check and ends with
`http2 test: N passed, M failed`; exits non-zero on any failure.

The code: this entry script; http2_env.py (certificates, servers, HTTP/1.1 requests);
http2_clients.py (H2 over hyper-h2, RawH2 frame by frame); http2_cases_interop.py; http2_cases_streams.py (resets, refusals, streams, flow);
http2_cases_abuse.py; http2_cases_lifecycle.py (reload, shutdown); http2_cases_client.py (ferry put).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # the modules below live next to this script
    sys.path.insert(0, HERE)

from http2_cases_abuse import case_abuse  # noqa: E402
from http2_cases_client import case_client  # noqa: E402
from http2_cases_interop import case_interop  # noqa: E402
from http2_cases_lifecycle import case_reload, case_shutdown  # noqa: E402
from http2_cases_streams import case_flow, case_refusals, case_resets, case_streams  # noqa: E402
from http2_env import Env  # noqa: E402
from support import CaseError, check, results  # noqa: E402

CASES = [("interop", case_interop), ("resets", case_resets), ("refusals", case_refusals), ("streams", case_streams),
         ("flow", case_flow), ("abuse", case_abuse), ("reload", case_reload), ("shutdown", case_shutdown),
         ("client", case_client)]


def run(args, tmp):
    start = time.monotonic()
    env = Env(os.path.abspath(args.ferry), tmp)
    servers = {}
    try:
        servers["main"] = env.server("main")
        servers["h2c"] = env.server("h2c", tls=False, h2c=True)
        servers["limits"] = env.server("limits", extra=["--h2-max-streams", "4", "--h2-stream-window", "1M",
                                                        "--h2-connection-window", "2M", "--max-size", "1M"])
        print("http2 test: " + ", ".join(f"{n} :{s.port}" for n, s in servers.items())
              + f" (setup {time.monotonic() - start:.1f}s)", flush=True)
        for name, fn in CASES:
            if args.case and name not in args.case:
                continue
            print(f"== {name}", flush=True)
            t0 = time.monotonic()
            try:
                fn(env, servers)
            except Exception as e:
                check(False, f"{name}: ran to the end", f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
            for server in servers.values():
                if not server.alive():
                    check(False, f"{name}: ferry {server.name} still runs", server.log_tail())
                    server.start()
            print(f"   ({name}: {time.monotonic() - t0:.1f}s)", flush=True)
    except CaseError as e:
        check(False, "setup", str(e))
    finally:
        env.cleanup()
    if results["failed"]:
        for name, server in servers.items():
            print(f"--- ferry {name} log tail ---\n      " + server.log_tail(15))
    print(f"({time.monotonic() - start:.0f}s)")
    return 0 if results["failed"] == 0 else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ferry", required=True, help="path to the ferry binary")
    p.add_argument("--case", action="append", choices=[n for n, _ in CASES], help="run only this case (repeatable)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, certificates, data)")
    args = p.parse_args()
    problem = None
    if not os.access(args.ferry, os.X_OK):
        problem = f"ferry binary not found or not executable: {args.ferry}"
    elif not shutil.which("curl") or not shutil.which("openssl"):
        problem = "the curl and openssl commands are needed (apt-get install curl openssl)"
    elif "--tls-cert" not in subprocess.run([args.ferry, "serve", "--help"], capture_output=True, text=True).stdout:
        problem = f"{args.ferry} serve has no --tls-cert (built before HTTPS and HTTP/2?)"
    if problem:
        print(f"http2 test: {problem}")
        print("http2 test: 0 passed, 1 failed")
        return 2
    tmp = tempfile.mkdtemp(prefix="ferry-http2-")
    try:
        rc = run(args, tmp)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"http2 test: {results['passed']} passed, {results['failed']} failed", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
