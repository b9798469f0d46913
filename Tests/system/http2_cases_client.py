"""Case `client` of the HTTPS and HTTP/2 lane: `ferry put` over HTTPS. Its trust decisions (the
system store refuses the lane's CA, `--cacert`, `--pin`), each refusal at once and not retried;
a file through `ferry netem` in front of TLS (the emulator is a TCP proxy: reconnects pay a
TLS handshake); and a folder of small files through the upload queue over one HTTP/2
connection, counted by the server."""
import hashlib
import os
import random
import subprocess
import time

from http2_env import MiB, h1, path_of
from support import check, free_port


def spki_pin(cert_path):
    """sha256/BASE64 of the certificate's SubjectPublicKeyInfo, as `--pin` takes it."""
    public = subprocess.run(["openssl", "x509", "-in", cert_path, "-pubkey", "-noout"], capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=public, capture_output=True, check=True).stdout
    return "sha256/" + __import__("base64").b64encode(hashlib.sha256(der).digest()).decode()


def put(env, *args, timeout=120):
    """Runs `ferry put`; returns (exit code, stdout, stderr, seconds)."""
    start = time.monotonic()
    done = subprocess.run([env.ferry, "put", "--no-resume", *args], capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr, time.monotonic() - start


def stored_sha256(server, url):
    status, _, body = h1(server, "GET", path_of(url))
    return hashlib.sha256(body).hexdigest() if status == 200 else f"GET {status}"


def case_client(env, servers):
    server = servers["main"]
    endpoint = f"https://localhost:{server.port}/files/"
    path = env.file("client-2m.bin", 2 * MiB, seed=41)
    want = hashlib.sha256(open(path, "rb").read()).hexdigest()

    code, out, err, seconds = put(env, path, endpoint)
    check(code != 0 and "identity could not be verified" in err and seconds < 10,
          "ferry put without --cacert: the lane's CA is not in the system store, refused at once, not retried",
          f"exit {code} after {seconds:.1f}s: {err.strip()[-300:]}")
    code, out, err, seconds = put(env, "--cacert", env.ca, "--pin", "sha256/" + "A" * 43 + "=", path, endpoint)
    check(code != 0 and "matches no pin" in err and seconds < 10,
          "ferry put --pin with a pin of another key: refused at once, not retried",
          f"exit {code} after {seconds:.1f}s: {err.strip()[-300:]}")
    code, out, err, _ = put(env, "--cacert", env.ca, "--pin", spki_pin(server.cert), path, endpoint)
    url = out.strip().splitlines()[-1] if out.strip() else ""
    check(code == 0 and stored_sha256(server, url) == want, "ferry put --cacert --pin (the server's key): uploaded, bytes match",
          f"exit {code}: {err.strip()[-300:]}")

    # Through the emulator: connections die mid-body; every reconnect is a new TLS handshake.
    netem_port = free_port()
    netem = env.procs.spawn([env.ferry, "netem", "--listen", f"127.0.0.1:{netem_port}", "--target", f"127.0.0.1:{server.port}",
                             "--profile", "middlebox", "--rate-scale", "8", "--seed", "3"])
    try:
        time.sleep(0.3)
        big = env.file("client-12m.bin", 12 * MiB, seed=42)
        code, out, err, seconds = put(env, "--cacert", env.ca, big, f"https://localhost:{netem_port}/files/", timeout=240)
        url = out.strip().splitlines()[-1] if out.strip() else ""
        check(code == 0 and stored_sha256(server, url) == hashlib.sha256(open(big, "rb").read()).hexdigest(),
              f"ferry put through netem middlebox (cut connections) in front of TLS: completes, bytes match ({seconds:.1f}s)",
              f"exit {code}: {err.strip()[-300:]}")
    finally:
        env.procs.kill(netem)

    # The queue: a folder of small files, one HTTP/2 connection.
    folder = os.path.join(env.tmp, "album")
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(43)
    sums = {}
    for i in range(200):
        name = os.path.join(folder, f"{i:02d}." + ("m4a" if i % 10 == 0 else "jpg"))
        data = rng.randbytes(rng.randint(64, 512) * 1024)
        with open(name, "wb") as f:
            f.write(data)
        sums[name] = hashlib.sha256(data).hexdigest()
    before = server.metric("ferry_http_connections_total", "h2") or 0
    code, out, err, seconds = put(env, "--cacert", env.ca, folder, endpoint, timeout=240)
    after = server.metric("ferry_http_connections_total", "h2") or 0
    lines = [line.split("\t") for line in out.strip().splitlines() if "\t" in line]
    urls = {p: u for p, u in lines if u.startswith("https://")}
    matching = sum(1 for p, u in urls.items() if stored_sha256(server, u) == sums.get(p))
    check(code == 0 and matching == len(sums), f"ferry put DIR: {len(sums)} small files uploaded by the queue, bytes match ({seconds:.1f}s)",
          f"exit {code}, {matching}/{len(sums)} match: {err.strip()[-300:]}")
    check(after - before == 1, "...over one HTTP/2 connection (ferry_http_connections_total{protocol=\"h2\"} rose by 1)",
          f"{before} -> {after}")
