#!/usr/bin/env python3
"""Statistics benchmark: what per-upload statistics cost on the small-upload burst.

Normally started by bench/stats.sh. Each sample starts a fresh `ferry serve` (embedded defaults,
each on a fresh loop-mounted ext4 when root, as bench/business.sh) and runs COUNT x SIZE
creation-with-upload POSTs from CONC keep-alive connections (bench/loadgen.c burst). Two
configurations, alternated run by run:

  off  `ferry serve --no-stats`
  on   the default: every creation, request and completion recorded (batched, off the
       request path) in the catalog's statistics tables, duration/goodput histograms

After an `on` run it checks that the statistics hold every upload (GET /admin/stats). Prints
every sample, the medians, ferry's CPU, and the ratio on / off.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from bench import fmt, log, run_interruptibly
import business_bench as bb

ADMIN = "stats-bench-admin-" + os.urandom(6).hex()


class StatsBench(bb.Bench):
    def run_one(self, name: str) -> None:
        config = f'[server]\nadmin-token = "{ADMIN}"\n'
        proc, port, data = self.start_ferry(name, config, ("--no-stats",) if name == "off" else ())
        try:
            cpu0 = bb.cpu_seconds(proc.pid)
            rc, r, err = self.burst(port, [])
            cpu = (bb.cpu_seconds(proc.pid) or 0) - (cpu0 or 0)
            recorded = None
            if name == "on":
                time.sleep(1.5)  # one flush interval and a margin
                status, _, body = bb.request(port, "GET", "/admin/stats?since=1h", {"Authorization": f"Bearer {ADMIN}"})
                groups = json.loads(body).get("groups", []) if status == 200 else []
                recorded = sum(g.get("completed", 0) for g in groups)
        finally:
            bb.stop(proc)
            self.discard(data)
        ok = rc == 0 and r.get("errors") == 0
        if not ok:
            self.note(f"{name}: rc={rc} {r} {err[:300]}")
        self.add(f"{name}_rate", r.get("rate") if ok else None)
        self.add(f"{name}_p50", r.get("p50_ms"))
        self.add(f"{name}_cpu", round(cpu, 2))
        extra = ""
        if recorded is not None:
            extra = f"  statistics: {recorded} of {self.a.count} uploads recorded complete"
            if recorded != self.a.count:
                self.note(f"on: the statistics hold {recorded} completed uploads, not {self.a.count}")
        log(f"  {name:3s}: {fmt(r.get('rate'))} uploads/s  p50 {fmt(r.get('p50_ms'))} ms  [ferry CPU {cpu:.1f}s]{extra}")

    def run(self) -> None:
        a = self.a
        log(f"{a.count} x {a.size_kib} KiB creation-with-upload, c={a.concurrency}; {a.runs} run(s), alternated")
        for i in range(1, a.runs + 1):
            order = ["off", "on"] if i % 2 else ["on", "off"]
            log(f"== run {i}/{a.runs} ({' then '.join(order)})")
            for name in order:
                self.run_one(name)
        log()
        for k, vals in self.samples.items():
            log(f"  {k:10s} {fmt(self.med(k)):>10s}  [{', '.join(fmt(v) for v in vals)}]")
        off, on = self.med("off_rate"), self.med("on_rate")
        log()
        log(f"== summary: statistics off {fmt(off)} uploads/s, on {fmt(on)} uploads/s; "
            f"ratio on / off {f'{on / off:.3f}' if on and off else 'n/a'} (target >= 0.95)")
        for n in self.notes:
            log(f"  - {n}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ferry", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--size-kib", type=int, default=256)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--fresh-fs", dest="fresh_fs", action=argparse.BooleanOptionalAction, default=os.geteuid() == 0)
    a = ap.parse_args()
    # The fields bb.Bench reads that this benchmark does not use.
    a.alg, a.receiver, a.receiver_sync, a.event_concurrency, a.drain_timeout, a.json, a.webhook_batch = (
        "hs256", os.path.normpath(bb.RECEIVER), "full", 16, 60, "", 1)
    return run_interruptibly(StatsBench(a))


if __name__ == "__main__":
    sys.exit(main())
