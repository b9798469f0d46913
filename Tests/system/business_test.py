#!/usr/bin/env python3
"""System test of Ferry's business integration (docs/business.md) against the real binary.

Usage: python3 Tests/system/business_test.py --ferry PATH [--case NAME ...] [--crash-rounds 20]
                                             [--seed N] [--keep]

Starts three copies of Tests/system/webhook_receiver.py (A: callbacks and webhooks of scenario
`biz`; B: webhooks of scenario `retry`, --fail-first 2; C: callbacks and webhooks of scenario
`crash`, answering events 0-150 ms after committing them) and `ferry serve --config <generated
file>` with an HS256 secret, an RS256 public key and a JWKS (ES256 + RS256 keys by kid), all
generated here. Cases (--case runs a subset; pre-finish feeds webhooks):

  config      a broken configuration file stops the start, naming the file, line and key.
  scenarios   per-scenario Tus-Max-Size, unknown scenario, max size, required metadata, allowed
              types, content sniffing (a declared JPEG that is a PNG or random bytes is refused
              and nothing is stored; a real JPEG header passes), checksum=required, the default
              scenario and the `scenario` metadata key.
  auth        every operation on an owned upload (POST, HEAD, PATCH, GET, DELETE, a final
              concatenation naming it) with no token, expired / malformed / wrongly signed /
              wrong aud, iss, nbf tokens, another principal's token and a token without the
              scenario; afterwards the owner's upload is untouched. Anonymous uploads: the URL is
              the capability.
  quotas      open uploads, open bytes, creations per minute (429 + Retry-After), max size (also
              of a deferred length).
  pre-create  reject (403 and other 4xx) with ERR_REJECTED and the message; a 4xx answer; a 5xx
              answer or a timeout -> 503 ERR_CALLBACK_FAILED; added metadata in HEAD.
  pre-finish  Ferry-Business-Status/-Result on the completing PATCH, creation-with-upload and
              final concatenation, on HEAD and GET; the business system failing, slow, answering
              garbage or over 4 KiB -> pending, then done by a HEAD poll; tuspy's last response;
              `ferry put`'s business-result line (one stream and two).
  webhooks    signatures, per-upload order, ids `<upload>-<sequence>`, payloads, termination,
              retries with --fail-first 2 (ordered, every event delivered), two webhooks with
              their own secrets and events (progress, expiry), the admin endpoint.
  crash       --crash-rounds times: concurrent uploads, kill -9 ferry at a random moment around
              the last PATCH (sometimes the receiver too), restart, clients resume; then every
              complete upload has exactly one `upload.completed` event id (however often it was
              delivered) and its business result with the right SHA-256.

Needs the Python package `cryptography` (RSA / EC keys); tuspy (`tusclient`) for one check.
Every process it starts is killed by PID; all traffic stays on 127.0.0.1. Prints one line per
check and ends with `business test: N passed, M failed`; exits non-zero on any failure.

The code: this entry script (command line, the case list, the run); business_env.py (HTTP
helpers, tokens, the receivers, ferry and the generated configuration); business_cases_rules.py
(config, scenarios, auth, quotas); business_cases_callbacks.py (pre-create, pre-finish,
webhooks); business_cases_crash.py (crash).
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # the modules below live next to this script
    sys.path.insert(0, HERE)

import business_env  # noqa: E402
from business_cases_callbacks import case_pre_create, case_pre_finish, case_webhooks  # noqa: E402
from business_cases_crash import case_crash  # noqa: E402
from business_cases_rules import case_auth, case_config, case_quotas, case_scenarios  # noqa: E402
from business_env import Env  # noqa: E402
from support import CaseError, check, results  # noqa: E402


CASES = [("config", case_config), ("scenarios", case_scenarios), ("auth", case_auth), ("quotas", case_quotas),
         ("pre-create", case_pre_create), ("pre-finish", case_pre_finish), ("webhooks", case_webhooks),
         ("crash", None)]


def run(args, tmp):
    env = business_env.ENV = Env(tmp, args.seed)
    start = time.monotonic()
    try:
        env.start()
        print(f"business test: seed {args.seed}, ferry on {env.port}, receivers "
              + ", ".join(f"{k} :{r.port}" for k, r in env.receivers.items()), flush=True)
        for name, fn in CASES:
            if args.case and name not in args.case:
                continue
            print(f"== {name}", flush=True)
            t0 = time.monotonic()
            try:
                if name == "crash":
                    case_crash(env, args.crash_rounds)
                else:
                    fn(env)
            except Exception as e:
                check(False, f"{name}: ran to the end", f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
                if env.ferry.proc is not None and env.ferry.proc.poll() is not None:
                    print("      ferry is not running; restarting it", flush=True)
                    try:
                        env.ferry.start()
                    except CaseError as e2:
                        check(False, "ferry restarts", str(e2))
                        break
            print(f"   ({name}: {time.monotonic() - t0:.1f}s)", flush=True)
    except CaseError as e:
        check(False, "setup", str(e))
    finally:
        env.procs.kill_all()
    if results["failed"]:
        print("--- ferry log tail ---\n      " + env.ferry.log_tail(40))
    print(f"({time.monotonic() - start:.0f}s)")
    return 0 if results["failed"] == 0 else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ferry", required=True, help="path to the ferry binary")
    p.add_argument("--case", action="append", choices=[n for n, _ in CASES], help="run only this case (repeatable)")
    p.add_argument("--crash-rounds", type=int, default=20)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases, config)")
    args = p.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    ferry = business_env.FERRY = os.path.abspath(args.ferry)
    problem = None
    if not business_env.HAVE_CRYPTOGRAPHY:
        problem = "the Python package cryptography is not installed (python3 -m pip install cryptography)"
    elif not os.access(ferry, os.X_OK):
        problem = f"ferry binary not found or not executable: {ferry}"
    else:
        helptext = subprocess.run([ferry, "serve", "--help"], capture_output=True, text=True).stdout
        if "--config" not in helptext:
            problem = f"{ferry} serve has no --config option (built before the business features?)"
    if problem:
        print(f"business test: {problem}")
        print("business test: 0 passed, 1 failed")
        return 2
    tmp = tempfile.mkdtemp(prefix="ferry-business-")
    try:
        rc = run(args, tmp)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"business test: {results['passed']} passed, {results['failed']} failed"
          + (f", {results['skipped']} skipped" if results["skipped"] else ""), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())