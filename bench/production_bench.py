#!/usr/bin/env python3
"""The configuration companies deploy, against the quick start: what each business feature costs.

Normally started by bench/production.sh (which compiles bench/loadgen.c, installs nginx and
makes the scratch directory). Each sample starts a fresh `ferry serve` on a fresh ext4 file
system (--fresh-fs) and runs bench/run.sh's small-upload figure: COUNT x SIZE
creation-with-upload POSTs from CONC keep-alive connections (loadgen burst). Five
configurations, alternated run by run (the order rotates):

  defaults     no configuration file: the embedded `default` scenario, anonymous.
  jwt          every request carries an HS256 bearer token (`[auth]`), quotas set out of reach.
  pre-finish   a pre-finish callback (called before each 201, so in the measured latency).
  webhooks     two webhooks, each for upload.created and upload.completed: 4 deliveries per
               upload, one event per POST (webhook-batch = 1; --webhook-batch N for up to N
               events per POST).
  production   all three together.

The business receivers are one nginx (one worker) answering the pre-finish POST with a fixed
JSON object and the webhooks with 204, so that what is measured is Ferry. For the webhook
configurations the sample lasts until every event was delivered (counted in nginx's access log).

Reported per configuration (medians): uploads/s over the burst; Ferry's own CPU (user + sys of
the ferry process) per 1,000 uploads during the burst, and until every event was delivered;
nginx's CPU until then; each as a ratio of `defaults`. With --baseline, a second binary runs
beside --ferry in every sample (alternating which goes first), and the ratios of the two in the
same sitting are printed last.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time

from bench import fmt, free_port, log
from business_bench import ADMIN_TOKEN, WEBHOOK_SECRET, Bench, cpu_seconds, stop, wait_healthy

CONFIGURATIONS = ("defaults", "jwt", "pre-finish", "webhooks", "production")
EVENTS = ("upload.created", "upload.completed")


class Receivers:
    """One nginx: POST /pre-finish answers a fixed business result, POST /hook/* answers 204
    and is counted in its own access log."""

    def __init__(self, workdir: str, tag: str):
        self.port = free_port()
        self.dir = os.path.join(workdir, f"nginx-{tag}")
        os.makedirs(self.dir, exist_ok=True)
        self.hooks_log = os.path.join(self.dir, "hooks.log")
        if os.path.exists(self.hooks_log):
            os.remove(self.hooks_log)  # counts must be this sample's alone
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1;
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    keepalive_requests 1000000;
    client_body_buffer_size 64k;
    log_format hook "$http_ferry_event_count";
    server {{
        listen 127.0.0.1:{self.port};
        location = /pre-finish {{
            default_type application/json;
            return 200 '{{"businessId":"bench"}}';
        }}
        location = /healthz {{
            return 200;
        }}
        location /hook/ {{
            access_log {self.hooks_log} hook buffer=64k flush=100ms;
            return 204;
        }}
    }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-c", conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        if not wait_healthy(self.proc, self.port, timeout=10):
            self.stop()
            raise RuntimeError(f"nginx did not start; see {self.dir}/error.log")

    def cpu(self) -> float:
        """CPU seconds of the master and its workers."""
        pids = [self.proc.pid]
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                            pids.append(int(entry))
                except (OSError, ValueError, IndexError):
                    pass
        return sum(cpu_seconds(pid) or 0 for pid in pids)

    def deliveries(self) -> int:
        """Events delivered: a POST of one event logs "-", a batch its Ferry-Event-Count."""
        try:
            with open(self.hooks_log, "rb") as f:
                lines = f.read().split(b"\n")[:-1]
        except OSError:
            return 0
        return sum(int(line) if line.isdigit() else 1 for line in lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Production(Bench):
    def config(self, name: str, receivers: Receivers) -> str | None:
        if name == "defaults":
            return None
        jwt = name in ("jwt", "production")
        pre_finish = name in ("pre-finish", "production")
        hooks = name in ("webhooks", "production")
        lines = ["# generated by bench/production_bench.py", "[server]", "default-scenario = bench",
                 f'admin-token = "{ADMIN_TOKEN}"', ""]
        if jwt:
            lines += ["[auth]", *self.tokens.auth_lines, "open-uploads = 1000000", "open-bytes = 100000GiB",
                      "creations-per-minute = 10000000", ""]
        lines += ["[events]", f"concurrency = {self.a.event_concurrency}", "", "[scenario bench]"]
        if not jwt:
            lines.append("anonymous = true")
        if pre_finish:
            lines.append(f"pre-finish = http://127.0.0.1:{receivers.port}/pre-finish")
        if hooks:
            for hook in ("a", "b"):
                lines += [f"webhook = http://127.0.0.1:{receivers.port}/hook/{hook}", f'webhook-secret = "{WEBHOOK_SECRET}"',
                          f"events = {', '.join(EVENTS)}", f"webhook-batch = {self.a.webhook_batch}"]
        return "\n".join(lines) + "\n"

    def sample(self, i: int, name: str, binary: tuple[str, str] = ("", "")) -> None:
        """One sample of `name`, with `binary` = (key prefix, path) when comparing binaries."""
        prefix, path = binary
        receivers = proc = data = None
        try:
            receivers = Receivers(self.a.workdir, f"{i}-{prefix.rstrip(':')}-{name}" if prefix else f"{i}-{name}")
            config = self.config(name, receivers)
            proc, port, data = self.start_ferry(name, config, binary=path or None)
            extra = []
            if config is not None:
                extra.append("/files/bench/")
                if name in ("jwt", "production"):
                    extra.append(f"Authorization: Bearer {self.tokens.token()}")
            cpu0 = {"ferry": cpu_seconds(proc.pid) or 0, "nginx": receivers.cpu()}
            t0 = time.monotonic()
            rc, r, err = self.burst(port, extra)
            t_burst = time.monotonic() - t0
            burst_cpu = (cpu_seconds(proc.pid) or 0) - cpu0["ferry"]
            ok = rc == 0 and r.get("errors") == 0
            if not ok:
                self.note(f"run {i} {name}: rc={rc} {r} {err[:500]}")
            if ok and name in ("pre-finish", "production") and r.get("business_done") != self.a.count:
                self.note(f"run {i} {name}: {r.get('business_done')} of {self.a.count} answers carried Ferry-Business-Status: done")
            want = 2 * len(EVENTS) * int(r.get("ok") or 0) if name in ("webhooks", "production") else 0
            deadline = time.monotonic() + self.a.drain_timeout
            while receivers.deliveries() < want and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.1)
            got = receivers.deliveries()
            t_all = time.monotonic() - t0
            all_cpu = {"ferry": (cpu_seconds(proc.pid) or 0) - cpu0["ferry"], "nginx": receivers.cpu() - cpu0["nginx"]}
            if got < want:
                self.note(f"run {i} {name}: {got}/{want} webhook deliveries after {self.a.drain_timeout:.0f}s")
        finally:
            died = proc.poll() if proc else None
            stop(proc)
            if receivers:
                receivers.stop()
            if data:
                self.discard(data)
        if died is not None:
            self.note(f"run {i} {name}: ferry exited during the run (code {died})")
        per = 1000 / self.a.count
        rate = r.get("rate") if ok else None
        key = prefix + name
        self.add(f"{key}_rate", rate)
        self.add(f"{key}_p99", r.get("p99_ms"))
        self.add(f"{key}_cpu_burst", burst_cpu * per if ok else None)
        self.add(f"{key}_cpu_all", all_cpu["ferry"] * per if ok and got >= want else None)
        self.add(f"{key}_nginx_cpu", all_cpu["nginx"] * per if ok else None)
        log(f"  {prefix + name:11} {fmt(rate)} uploads/s  p99 {fmt(r.get('p99_ms'))} ms  ferry CPU per 1,000: burst "
            f"{burst_cpu * per:.2f}s ({t_burst:.1f}s), until delivered {all_cpu['ferry'] * per:.2f}s ({t_all:.1f}s);"
            f" nginx {all_cpu['nginx'] * per:.2f}s" + (f"; {got}/{want} deliveries" if want else ""))

    def run(self) -> None:
        a = self.a
        names = self.names()
        log(f"{a.count} x {a.size_kib} KiB creation-with-upload, c={a.concurrency}, fresh ext4: {a.fresh_fs},"
            f" webhook-batch {a.webhook_batch};"
            f" {a.runs} run(s) of {', '.join(names)} (rotating order)")
        for i in range(1, a.runs + 1):
            order = names[(i - 1) % len(names):] + names[:(i - 1) % len(names)]
            log(f"== run {i}/{a.runs}")
            for name in order:
                # With --baseline, each configuration runs on both binaries, in turn, the first alternating.
                binaries = [("", a.ferry)] + ([("base:", a.baseline)] if a.baseline else [])
                if i % 2 == 0:
                    binaries.reverse()
                for binary in binaries:
                    try:
                        self.sample(i, name, binary)
                    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                        self.note(f"run {i} {binary[0]}{name}: {e}")
        self.report()

    def names(self) -> tuple[str, ...]:
        """The configurations of this sitting: --only's, always with the defaults (the baseline)."""
        chosen = set(self.a.only.split(",")) if self.a.only else set(CONFIGURATIONS)
        unknown = chosen - set(CONFIGURATIONS)
        if unknown:
            raise SystemExit(f"production_bench.py: unknown configuration(s): {', '.join(sorted(unknown))}")
        return tuple(name for name in CONFIGURATIONS if name in chosen or name == "defaults")

    def report(self) -> None:
        self.report_binary("", self.a.ferry)
        if self.a.baseline:
            self.report_binary("base:", self.a.baseline)
            log()
            log("== candidate / baseline, same sitting (medians)")
            for name in self.names():
                parts = []
                for metric, label in (("rate", "uploads/s"), ("cpu_all", "ferry CPU/1,000")):
                    new, old = self.med(f"{name}_{metric}"), self.med(f"base:{name}_{metric}")
                    parts.append(f"{label} {fmt(new)} vs {fmt(old)} ({new / old:.2f}x)" if new and old else f"{label} n/a")
                log(f"  {name:11} " + "; ".join(parts))
        self.report_notes()

    def report_binary(self, prefix: str, path: str) -> None:
        log()
        log(f"== medians of {self.a.runs}, ferry {path}")
        base_rate, base_cpu = self.med(f"{prefix}defaults_rate"), self.med(f"{prefix}defaults_cpu_all")
        log(f"  {'configuration':11} {'uploads/s':>10} {'x defaults':>10}   {'ferry CPU/1,000':>15} {'x defaults':>10}"
            f"   {'(burst only)':>12}   {'nginx CPU/1,000':>15}")
        for name in self.names():
            rate, cpu = self.med(f"{prefix}{name}_rate"), self.med(f"{prefix}{name}_cpu_all")
            rate_x = f"{rate / base_rate:.2f}" if rate and base_rate else "n/a"
            cpu_x = f"{cpu / base_cpu:.2f}" if cpu and base_cpu else "n/a"
            log(f"  {name:11} {fmt(rate):>10} {rate_x:>10}   {fmt(cpu):>14}s {cpu_x:>10}"
                f"   {fmt(self.med(f'{prefix}{name}_cpu_burst')):>11}s   {fmt(self.med(f'{prefix}{name}_nginx_cpu')):>14}s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ferry", required=True)
    ap.add_argument("--loadgen", required=True, help="compiled bench/loadgen.c")
    ap.add_argument("--workdir", required=True, help="scratch dir (data dirs, nginx, logs)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--size-kib", type=int, default=256)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--event-concurrency", type=int, default=16, help="[events] concurrency of the config")
    ap.add_argument("--baseline", help="a second ferry binary, run beside --ferry in every sample (A/B in one sitting)")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(CONFIGURATIONS)} (defaults always run)")
    ap.add_argument("--webhook-batch", type=int, default=1, help="most events per webhook POST (1: one event per POST)")
    ap.add_argument("--drain-timeout", type=float, default=300)
    ap.add_argument("--no-fresh-fs", dest="fresh_fs", action="store_false",
                    help="reuse the scratch file system instead of a new ext4 per sample")
    ap.add_argument("--json")
    a = ap.parse_args()
    a.alg = "hs256"
    Production(a).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
