#!/usr/bin/env python3
"""Many-node test of Ferry: N stateless `ferry serve` nodes on one S3 bucket behind nginx.

Usage: python3 Tests/system/multinode_test.py --ferry PATH [--nodes 3] [--catalog URL]
           [--scale 1.0] [--scenario a ...] [--kills 10] [--race-rounds 4] [--profiles P,...]
           [--netem-seed 32] [--timeout 900] [--keep] [--seed N]

Needs an S3 endpoint in the environment (scripts/services/rgw.sh start DIR prints it):
FERRY_TEST_S3_ENDPOINT, FERRY_TEST_S3_ACCESS_KEY, FERRY_TEST_S3_SECRET_KEY (FERRY_TEST_S3_REGION
optional). Several nodes need a shared catalog: --catalog postgres://... (default: sqlite for one
node, $FERRY_TEST_POSTGRES_URL for more when it is set). Every node gets its own data dir and port,
the same bucket and a fresh random key prefix per run, --trust-forwarded-headers, --read-timeout 10s
and --lock-timeout 10s. nginx (scripts/services/nginx.sh) spreads requests round-robin over them.
--nodes defaults to 1. With several nodes, an upload created on one must first be visible on all
(the shared catalog), or no scenario runs.

Scenarios (all requests through nginx unless said otherwise):
  a  a 200 MiB upload: POST, then 8 MiB PATCHes, each on its own connection (nginx's access log
     shows which node took each); every node reports the full offset; GET's SHA-256 matches.
  b  kill -9 mid-body: a PATCH streamed at 8 MiB/s straight to one node, which is kill -9'ed while
     the body is in flight and restarted on the same port and data dir; meanwhile the client
     resumes through nginx (HEAD: acknowledged <= offset <= bytes sent; PATCH the rest).
     --kills uploads of 20-80 MiB (two kills for those over 50 MiB); "acknowledged bytes lost"
     (a HEAD below an offset any response returned) must be 0; every GET matches.
  c  two clients race on one upload through two nodes (direct ports): A streams slowly, then B
     either PATCHes from the same offset or HEADs first and PATCHes from there. The later one
     wins: A is stopped (409 ERR_REQUEST_SUPERSEDED or cut off), B's PATCH gets 204 or, when A
     saved bytes past the offset B sent, 409 ERR_OFFSET_MISMATCH; offsets never go back, the
     final SHA-256 matches.
  d  100 concurrent 5 MiB uploads (half creation-with-upload, half POST + PATCH); all GET back
     identical; reports uploads/s.
  e  `ferry put FILE http://127.0.0.1:NGINX/files/` of 64 MiB; GET matches.
  f  (with 2+ nodes) the node receiving a PATCH is SIGSTOPped (a long
     pause, or a node cut off from PostgreSQL); another node answers HEAD once the lease lapses and
     takes the rest; the frozen node, SIGCONTed, must answer 409 ERR_REQUEST_SUPERSEDED or cut the
     connection, and must not write: every node reports the length, GET matches.
  g  the mobile client completes its emulator profiles against the cluster: for each of cliff,
     vacuum, handover, middlebox, lte-driving, 3g, blackhole, per-flow (--profiles picks some), a
     `ferry netem --profile P --seed 32 --rate-scale 4 --rates-only` in front of nginx and
     `ferry put FILE http://127.0.0.1:NETEM/files/ --network cellular` of 12-96 MiB (each ideally
     7-30 s at that scale; G_PROFILES has the sizes and why); ferry put must exit 0 within
     3 x ideal + 60 s (as bench/client_bench.py) and its upload URL (the last line of stdout) must
     GET back through nginx, not netem, with the file's SHA-256. Reports seconds, MiB/s and the
     requests per node (nginx round-robins the client's requests over the nodes).
  i  IETF Resumable Uploads across the cluster (Tests/system/multinode_rufh.py): a URLSession-style
     creation through nginx gets its 104 through the proxy, every node is killed -9 mid-body
     and restarted, HEAD and the resuming PATCH go through nginx, the file matches; then
     `ferry put --protocol rufh` through nginx.
--scale multiplies every size (and the upload count of d) for quick local runs.

Every process it starts (nodes, nginx, ferry put, ferry netem) is stopped by PID at the end; everything is
bounded in time (--timeout overall, socket timeouts per request). Prints "N passed, M failed".
"""

import argparse
import os
import random
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
import traceback

import multinode_env
from support import CaseError, Procs, check, results, tail
from multinode_cases_crash import scenario_a, scenario_b, scenario_c
from multinode_cases_load import scenario_d, scenario_e, scenario_f
from multinode_cases_clients import G_PROFILES, scenario_g, start_receiver, scenario_h
from multinode_rufh import scenario_i
from multinode_env import DEADLINE, Node, Proxy, STOP, StartFailed, shared_catalog


SCENARIOS = {"a": scenario_a, "b": scenario_b, "c": scenario_c, "d": scenario_d, "e": scenario_e, "f": scenario_f,
             "g": scenario_g, "h": scenario_h, "i": lambda ctx: scenario_i(ctx, multinode_env)}


DEFAULT = ["a", "b", "c", "d", "e", "f", "g", "h", "i"]


def watchdog(ctx, timeout):
    """Sets STOP at the deadline; 60 s later stops everything and exits, whatever still hangs."""
    if not STOP.wait(timeout):
        print(f"FAIL  global timeout of {timeout:.0f}s reached: stopping", flush=True)
        results["failed"] += 1
        STOP.set()
        time.sleep(60)
        print("      still not finished 60 s after the timeout: killing everything", flush=True)
        cleanup(ctx)
        print(f"multinode test: {results['passed']} passed, {results['failed']} failed", flush=True)
        os._exit(1)


def cleanup(ctx):
    if ctx.proxy is not None:
        ctx.proxy.stop(ctx.args.keep)
    ctx.procs.kill_all()


def s3_settings():
    env = os.environ
    missing = [k for k in ("FERRY_TEST_S3_ENDPOINT", "FERRY_TEST_S3_ACCESS_KEY", "FERRY_TEST_S3_SECRET_KEY")
               if not env.get(k)]
    return missing, env.get("FERRY_TEST_S3_ENDPOINT"), env.get("FERRY_TEST_S3_REGION")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ferry", required=True, help="path to the ferry binary")
    p.add_argument("--nodes", type=int, default=1, help="ferry nodes behind nginx (default 1)")
    p.add_argument("--catalog", default=None,
                   help="sqlite (one node only) or postgres://...; default: sqlite for one node, "
                        "$FERRY_TEST_POSTGRES_URL for more")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every size (0.1 for a quick run)")
    p.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="run only these (repeatable)")
    p.add_argument("--kills", type=int, default=10, help="scenario b: uploads, each with >= 1 kill -9 (default 10)")
    p.add_argument("--race-rounds", type=int, default=4, help="scenario c: races (default 4)")
    p.add_argument("--profiles", default="",
                   help=f"scenario g: only these netem profiles, comma-separated (default: all of "
                        f"{','.join(name for name, _ in G_PROFILES)})")
    p.add_argument("--netem-seed", type=int, default=32,
                   help="scenario g: ferry netem --seed (default 32: vacuum's first blackout comes after 21 s)")
    p.add_argument("--timeout", type=float, default=900,
                   help="overall time limit in seconds (default 900; the default set takes ~400 s)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (node logs, nginx logs)")
    args = p.parse_args()
    args.ferry = os.path.abspath(args.ferry)
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    if args.catalog is None:
        args.catalog = os.environ.get("FERRY_TEST_POSTGRES_URL", "sqlite") if args.nodes > 1 else "sqlite"

    missing, endpoint, region = s3_settings()
    problem = None
    if missing:
        problem = f"{', '.join(missing)} not set: start S3 first, e.g. eval \"$(scripts/services/rgw.sh start DIR)\""
    elif args.nodes < 1:
        problem = "--nodes must be at least 1"
    elif args.nodes > 1 and not args.catalog.startswith("postgres"):
        problem = f"{args.nodes} nodes need a shared catalog: pass --catalog postgres://... (or set FERRY_TEST_POSTGRES_URL)"
    elif not os.access(args.ferry, os.X_OK):
        problem = f"ferry binary not found or not executable: {args.ferry}"
    if problem:
        print(f"multinode test: {problem}")
        print("multinode test: 0 passed, 1 failed")
        return 2

    # The nodes read the S3 keys from the environment (not the command line); nothing else of
    # the caller's FERRY_* settings may reach them.
    for key in [k for k in os.environ if k.startswith("FERRY_") and not k.startswith("FERRY_TEST_")]:
        del os.environ[key]
    os.environ["FERRY_S3_ACCESS_KEY"] = os.environ["FERRY_TEST_S3_ACCESS_KEY"]
    os.environ["FERRY_S3_SECRET_KEY"] = os.environ["FERRY_TEST_S3_SECRET_KEY"]

    tmp = tempfile.mkdtemp(prefix="ferry-multinode-")
    os.chmod(tmp, 0o755)  # nginx's workers (nobody) reach their temp paths
    ctx = type("Context", (), {})()
    ctx.args, ctx.tmp, ctx.procs, ctx.proxy, ctx.nodes = args, tmp, Procs(), None, []
    ctx.bucket, ctx.prefix = "ferry-multinode", f"run-{secrets.token_hex(6)}"
    ctx.s3_endpoint, ctx.s3_region = endpoint, region
    catalog_shown = re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", args.catalog)
    print(f"multinode test: {args.nodes} node(s), catalog {catalog_shown}, S3 {endpoint} "
          f"s3://{ctx.bucket}/{ctx.prefix}, scale {args.scale}, seed {args.seed}", flush=True)
    started = time.monotonic()
    DEADLINE[0] = started + args.timeout
    threading.Thread(target=watchdog, args=(ctx, args.timeout), daemon=True).start()
    try:
        try:
            start_receiver(ctx)
            for i in range(args.nodes):
                ctx.nodes.append(Node(ctx, i))
            for node in ctx.nodes:
                secs = node.start()
                print(f"      node {node.index} on port {node.port}, healthy after {secs:.2f}s", flush=True)
            ctx.node_names = {f"127.0.0.1:{n.port}": f"node {n.index}" for n in ctx.nodes}
            ctx.proxy = Proxy(ctx)
            ctx.proxy.start([n.port for n in ctx.nodes])
        except Exception as e:
            check(False, f"start-up: {type(e).__name__}: {e}")
            raise StartFailed() from e
        try:
            shared = shared_catalog(ctx)
        except Exception as e:
            shared = check(False, f"shared catalog: {type(e).__name__}: {e}")
        for name in args.scenario or DEFAULT:
            if not shared:
                check(False, f"{name}: not run (the nodes do not share the catalog)")
                continue
            if STOP.is_set():
                check(False, f"{name}: not run (global timeout)")
                continue
            before = results["failed"]
            t0 = time.monotonic()
            try:
                SCENARIOS[name](ctx)
            except Exception as e:  # a harness failure or a hard server failure counts as a failed check
                check(False, f"{name}: {type(e).__name__}: {e}", traceback.format_exc().strip().replace("\n", "\n      "))
            print(f"      ({name}: {time.monotonic() - t0:.1f}s)", flush=True)
            if results["failed"] > before:
                for node in ctx.nodes:
                    print(f"      --- node {node.index} log tail ---\n      {tail(node.log(), 12)}", flush=True)
                print(f"      --- nginx error.log tail ---\n      {tail(ctx.proxy.error_log(), 8)}", flush=True)
            for node in ctx.nodes:  # the next scenario starts with every node up
                if not node.healthy() and not STOP.is_set():
                    try:
                        node.start()
                    except CaseError as e:
                        check(False, f"node {node.index} could not be restarted: {e}")
    except StartFailed:
        pass
    finally:
        STOP.set()
        cleanup(ctx)
        if args.keep:
            print(f"      kept {tmp} (nginx logs in {os.path.join(tmp, 'nginx-kept')})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"({time.monotonic() - started:.0f} s)")
    print(f"multinode test: {results['passed']} passed, {results['failed']} failed", flush=True)
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
