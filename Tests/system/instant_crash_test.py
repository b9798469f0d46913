#!/usr/bin/env python3
"""Instant upload under kill -9: storage by reference stays right whatever step a crash cuts.

Usage: python3 Tests/system/instant_crash_test.py --ferry PATH [--rounds 20] [--store disk|s3] [--catalog URL] [--seed N]

Each round uploads a file (the original), forwards it twice by instant upload (announce, answer
the challenge), terminates the original, announces a third forward that is never answered (it
expires), and terminates the first forward. During one step of each round, chosen at random and
cut at a random moment, the server is kill -9'ed and restarted; the client then does what a real
one does (asks where the upload stands, answers again or sends the bytes). After every restart
and every round:
  - every upload the server said is complete and that was not terminated reads back whole
    (no content freed while referenced), and every one the server said it terminated is gone;
  - on disk, no name outside the uploads' own shares their files (hard-link counts add up).
At the end every upload is terminated and, once the expiry and the orphan sweep have run, the
store holds nothing (no orphan kept forever): the disk folder is empty, the S3 prefix has no
object. --store s3 takes FERRY_TEST_S3_ENDPOINT, FERRY_TEST_S3_ACCESS_KEY, FERRY_TEST_S3_SECRET_KEY
(FERRY_TEST_S3_REGION) and a PostgreSQL catalog (--catalog, else $FERRY_TEST_POSTGRES_URL).
"""
import argparse
import base64
import collections
import hashlib
import hmac
import http.client
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from support import MiB, check, free_port, results  # noqa: E402

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {"Content-Type": "application/offset+octet-stream"}
STEPS = ["original", "announce-1", "prove-1", "announce-2", "prove-2", "terminate-original", "announce-3", "terminate-1"]
COUNTS = collections.Counter()


def request(port, method, path, headers=None, body=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={**TUS, **(headers or {})})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def digest_field(data):
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


def proof(challenge, data):
    """The `Ferry-Proof` of docs/instant-upload.md for `challenge` over `data`; None if malformed."""
    nonce = re.search(r'nonce=:([A-Za-z0-9+/=]+):', challenge)
    ranges = re.search(r'ranges="([0-9,-]+)"', challenge)
    if not nonce or not ranges:
        return None
    message = f"ferry-instant-1\n{len(data)}\n{ranges.group(1)}\n".encode()
    for pair in ranges.group(1).split(","):
        first, last = (int(x) for x in pair.split("-"))
        message += data[first:last + 1]
    mac = hmac.new(base64.b64decode(nonce.group(1)), message, hashlib.sha256).digest()
    return ":" + base64.b64encode(mac).decode() + ":"


class Server:
    def __init__(self, args, tmp):
        self.args, self.tmp = args, tmp
        self.port = free_port()
        self.data = os.path.join(tmp, "data")
        self.proc = None
        self.log = open(os.path.join(tmp, "ferry.log"), "ab")
        self.prefix = f"instant-{secrets.token_hex(5)}"

    def command(self):
        cmd = [os.path.abspath(self.args.ferry), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", self.data,
               "--expiry", "4s", "--expiry-interval", "1s", "--orphan-age", "3s", "--log-level", "warning"]
        if self.args.store == "s3":
            cmd += ["--storage", f"s3://ferry-instant/{self.prefix}", "--s3-endpoint", os.environ["FERRY_TEST_S3_ENDPOINT"],
                    "--s3-create-bucket", "--catalog", self.args.catalog]
            if os.environ.get("FERRY_TEST_S3_REGION"):
                cmd += ["--s3-region", os.environ["FERRY_TEST_S3_REGION"]]
        return cmd

    def start(self):
        self.proc = subprocess.Popen(self.command(), stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if request(self.port, "GET", "/healthz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the server did not start")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        COUNTS["kills"] += 1

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Model:
    """What the server told the client: uploads acknowledged complete, and terminated."""

    def __init__(self):
        self.complete = {}  # path -> bytes
        self.terminated = set()


def head(port, path):
    try:
        status, fields, _ = request(port, "HEAD", path)
        return status, int(fields.get("upload-offset", -1))
    except (OSError, http.client.HTTPException):
        return None, -1


def upload_whole(port, data, model):
    """The original: creation with the whole body and its digest; on a failure, resume it."""
    status, fields, _ = request(port, "POST", "/files/",
                                {**OCTETS, "Upload-Length": str(len(data)), "Repr-Digest": digest_field(data)}, data)
    path = "/files/" + fields["location"].rsplit("/", 1)[-1] if "location" in fields else None
    if status == 201 and int(fields.get("upload-offset", -1)) == len(data):
        model.complete[path] = data
    return path


def finish_by_bytes(port, path, data, model):
    """Brings an upload to completion with its bytes from where the server stands."""
    for _ in range(20):
        status, offset = head(port, path)
        if status == 200 and offset == len(data):
            model.complete[path] = data
            return True
        if status in (404, 410):
            return False
        if status == 200:
            try:
                answer, fields, _ = request(port, "PATCH", path, {**OCTETS, "Upload-Offset": str(offset)}, data[offset:])
                if answer == 204 and int(fields.get("upload-offset", -1)) == len(data):
                    model.complete[path] = data
                    return True
            except (OSError, http.client.HTTPException):
                pass
        time.sleep(0.2)
    return False


def announce(port, data):
    status, fields, _ = request(port, "POST", "/files/", {"Upload-Length": str(len(data)), "Repr-Digest": digest_field(data)})
    if status != 201:
        return None, None
    return "/files/" + fields["location"].rsplit("/", 1)[-1], fields.get("ferry-challenge")


def prove(port, path, challenge, data, model):
    """Answers; the upload is the model's once the server says complete."""
    if not challenge:
        return False
    status, fields, _ = request(port, "PATCH", path, {**OCTETS, "Upload-Offset": "0", "Content-Length": "0", "Ferry-Proof": proof(challenge, data)})
    COUNTS[f"proof {status} {fields.get('ferry-error', '')}".strip()] += 1
    if status == 204 and int(fields.get("upload-offset", -1)) == len(data):
        model.complete[path] = data
        COUNTS["stored instantly"] += 1
        return True
    return False


def terminate(port, path, model):
    status, _, _ = request(port, "DELETE", path)
    if status == 204:
        model.terminated.add(path)
        model.complete.pop(path, None)
    return status


def verify(server, model, who):
    bad = []
    for path, data in list(model.complete.items()):
        try:
            status, _, body = request(server.port, "GET", path, timeout=60)
        except (OSError, http.client.HTTPException) as error:
            bad.append(f"{path}: {error}")
            continue
        if status != 200 or hashlib.sha256(body).digest() != hashlib.sha256(data).digest():
            bad.append(f"{path}: GET {status}, {len(body)} of {len(data)} bytes")
    for path in model.terminated:
        status, _ = head(server.port, path)
        if status not in (404, 410):
            bad.append(f"{path}: terminated, but HEAD says {status}")
    COUNTS["verifications"] += 1
    if bad:
        check(False, f"{who}: every acknowledged upload reads back whole; every terminated one is gone", "; ".join(bad[:5]))
    return not bad


def disk_links_add_up(server, who):
    """No name outside the uploads' own holds their files: each inode's link count equals the
    names it has in the uploads folder (a leftover temporary name would add one)."""
    folder = os.path.join(server.data, "uploads")
    names = collections.Counter()
    links = {}
    for entry in os.scandir(folder) if os.path.isdir(folder) else []:
        if entry.is_file(follow_symlinks=False):
            stat = entry.stat(follow_symlinks=False)
            names[stat.st_ino] += 1
            links[stat.st_ino] = stat.st_nlink
    wrong = {inode: (names[inode], links[inode]) for inode in names if names[inode] != links[inode]}
    return not wrong, wrong


def run_round(server, rng, round_index, model):
    size = rng.choice([rng.randint(1, 64 << 10), rng.randint(64 << 10, 2 * MiB), rng.randint(5 * MiB + 1, 7 * MiB)])
    data = rng.randbytes(size)
    kill_step = STEPS[round_index % len(STEPS)] if round_index < len(STEPS) else rng.choice(STEPS)
    state = {"paths": {}, "challenges": {}}
    killed_ok = True

    def step(name):
        paths, challenges = state["paths"], state["challenges"]
        if name == "original":
            paths["original"] = upload_whole(server.port, data, model)
        elif name.startswith("announce-"):
            n = name[-1]
            paths[n], challenges[n] = announce(server.port, data)
        elif name.startswith("prove-"):
            n = name[-1]
            if paths.get(n) and challenges.get(n):
                prove(server.port, paths[n], challenges[n], data, model)
        elif name == "terminate-original" and paths.get("original"):
            terminate(server.port, paths["original"], model)
        elif name == "terminate-1" and paths.get("1"):
            terminate(server.port, paths["1"], model)

    for name in STEPS:
        if name != kill_step:
            try:
                step(name)
            except (OSError, http.client.HTTPException) as error:
                COUNTS[f"error {type(error).__name__}"] += 1
        else:
            thread = threading.Thread(target=lambda: _swallow(step, name))
            thread.start()
            time.sleep(rng.choice([0, rng.uniform(0, 0.004), rng.uniform(0, 0.02)]))
            server.kill()
            thread.join()
            server.start()
            # The client carries on as a real one would: where does each upload stand?
            for key, path in list(state["paths"].items()):
                if path and path not in model.terminated and path not in model.complete:
                    status, offset = head(server.port, path)
                    if status == 200 and offset == len(data):
                        model.complete[path] = data
            if name == "original" and state["paths"].get("original") and state["paths"]["original"] not in model.complete:
                finish_by_bytes(server.port, state["paths"]["original"], data, model)
            if name == "original" and not state["paths"].get("original"):
                state["paths"]["original"] = upload_whole(server.port, data, model)
            if name.startswith("prove-"):
                n = name[-1]
                path = state["paths"].get(n)
                if path and path not in model.complete:
                    # Answer again (a challenge the crash left pending), else send the bytes.
                    try:
                        if not prove(server.port, path, state["challenges"][n], data, model):
                            finish_by_bytes(server.port, path, data, model)
                    except (OSError, http.client.HTTPException):
                        finish_by_bytes(server.port, path, data, model)
            if name.startswith("terminate-"):
                target = state["paths"].get("original" if name == "terminate-original" else "1")
                if target and target not in model.terminated:
                    if terminate(server.port, target, model) in (404, 410):
                        model.terminated.add(target)
                        model.complete.pop(target, None)
            killed_ok = verify(server, model, f"round {round_index}: after a kill during {name} and the client's recovery")
    ok = verify(server, model, f"round {round_index} (kill during {kill_step}, {size} bytes)") and killed_ok
    if server.args.store == "disk":
        links_ok, wrong = disk_links_add_up(server, "round")
        if not links_ok:
            check(False, f"round {round_index}: hard-link counts add up", f"{wrong}")
        ok = ok and links_ok
    return ok, kill_step


def _swallow(step, name):
    try:
        step(name)
    except (OSError, KeyError, ValueError, http.client.HTTPException):
        COUNTS["requests cut by the kill"] += 1


def s3_objects(server):
    """The objects and multipart uploads under the run's prefix (curl signs SigV4)."""
    endpoint = os.environ["FERRY_TEST_S3_ENDPOINT"].rstrip("/")
    region = os.environ.get("FERRY_TEST_S3_REGION", "us-east-1")
    user = os.environ["FERRY_TEST_S3_ACCESS_KEY"] + ":" + os.environ["FERRY_TEST_S3_SECRET_KEY"]
    found = []
    for query, result in ((f"list-type=2&prefix={server.prefix}%2F", "ListBucketResult"), (f"prefix={server.prefix}%2F&uploads=", "ListMultipartUploadsResult")):
        out = subprocess.run(["curl", "-sS", "--aws-sigv4", f"aws:amz:{region}:s3", "--user", user, "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                              f"{endpoint}/ferry-instant?{query}"], capture_output=True, text=True, timeout=60)
        if f"<{result}" not in out.stdout:
            raise RuntimeError(f"listing the bucket failed: {out.stdout[:300]} {out.stderr[:300]}")
        found += re.findall(r"<Key>([^<]+)</Key>", out.stdout)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ferry", required=True)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--store", choices=["disk", "s3"], default="disk")
    parser.add_argument("--catalog", default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    if args.store == "s3":
        missing = [k for k in ("FERRY_TEST_S3_ENDPOINT", "FERRY_TEST_S3_ACCESS_KEY", "FERRY_TEST_S3_SECRET_KEY") if not os.environ.get(k)]
        args.catalog = args.catalog or os.environ.get("FERRY_TEST_POSTGRES_URL")
        if missing or not args.catalog:
            check(False, f"instant crash test on S3 needs {', '.join(missing) or 'a PostgreSQL catalog'}")
            return 1
        os.environ["FERRY_S3_ACCESS_KEY"] = os.environ["FERRY_TEST_S3_ACCESS_KEY"]
        os.environ["FERRY_S3_SECRET_KEY"] = os.environ["FERRY_TEST_S3_SECRET_KEY"]
    rng = random.Random(seed)
    tmp = tempfile.mkdtemp(prefix="ferry-instant-crash-")
    server = Server(args, tmp)
    started = time.monotonic()
    print(f"instant crash test: {args.rounds} rounds on {args.store}, seed {seed}, in {tmp}"
          + (f", s3://ferry-instant/{server.prefix}" if args.store == "s3" else ""), flush=True)
    model = Model()
    try:
        server.start()
        failed_rounds, steps = 0, collections.Counter()
        for index in range(args.rounds):
            ok, step = run_round(server, rng, index, model)
            steps[step] += 1
            failed_rounds += 0 if ok else 1
        check(failed_rounds == 0 and sum(steps.values()) >= 20 if args.rounds >= 20 else failed_rounds == 0,
              f"{args.rounds} rounds, a kill -9 in each ({dict(steps)}): every acknowledged upload read back whole after "
              f"{COUNTS['verifications']} checks, every terminated one gone", f"{failed_rounds} rounds failed")
        check(COUNTS["stored instantly"] >= args.rounds, f"forwards stored instantly: {COUNTS['stored instantly']} "
              f"(others fell back to their bytes after a cut answer)")
        # The end: terminate everything; the unanswered forwards expire; the sweep takes the rest.
        for path in list(model.complete):
            terminate(server.port, path, model)
        time.sleep(6)
        server.kill()
        server.start()  # sweeps orphans at start (--orphan-age 3s)
        time.sleep(2)
        verify(server, model, "the end")
        # What is left must belong to a live upload: one a kill hid from the client (its creation
        # completed, the answer was cut) is the server's to keep, not an orphan.
        if args.store == "disk":
            left = sorted(os.listdir(os.path.join(server.data, "uploads")))
        else:
            left = s3_objects(server)
        def upload_id(name):  # `<id>`, `<id>.link` (disk); `<prefix>/<id>`, `<prefix>/<id>.tail/<end>` (S3)
            return re.split(r"[./]", name[len(server.prefix) + 1:] if args.store == "s3" else name)[0]
        live = {i for i in {upload_id(name) for name in left} if head(server.port, f"/files/{i}")[0] == 200}
        orphans = sorted(name for name in left if upload_id(name) not in live)
        check(not orphans, f"no orphan kept: once every upload is terminated or expired and the sweep ran, the store holds only "
              f"live uploads ({len(live)} complete ones whose creation answer a kill cut)", f"{len(orphans)} orphans: {orphans[:6]}")
        print(f"      requests: {dict(COUNTS)}", flush=True)
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"({time.monotonic() - started:.0f} s)")
    print(f"instant crash test: {results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
