"""Scenario i of Tests/system/multinode_test.py: IETF Resumable Uploads across the cluster.

Kept in its own module (multinode_test.py is large); `h` is the multinode_test module itself, so
the scenario counts its checks in the same tally and uses the same helpers.

  i  A URLSession-style creation (interop 6, `Upload-Complete: ?1`, the whole file announced)
     sent through nginx: the 104 with Location arrives through the proxy before the body is
     complete; every node is killed -9 mid-body (nginx does not say yet which one serves it) and
     restarted; offset retrieval (HEAD) and the resuming append (PATCH,
     application/partial-upload) go through nginx to whichever nodes it picks;
     the final 200 says Upload-Complete: ?1 and the GET matches by SHA-256. Then
     `ferry put --protocol rufh` through nginx.
"""
import hashlib
import http.client
import os
import socket
import subprocess
import time


def read_response(sock, pending):
    """Reads one response head (and a Content-Length body) from a raw socket."""
    while b"\r\n\r\n" not in pending:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("closed before a response head")
        pending += more
    head, rest = pending.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0")) if status >= 200 and status not in (204, 304) else 0
    while len(rest) < length:
        more = sock.recv(65536)
        if not more:
            break
        rest += more
    return status, headers, rest[:length], rest[length:]


def rufh_request(port, method, path, headers, body=None, timeout=120):
    """One RUFH request (no tus header) on a fresh connection: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def scenario_i(ctx, h):
    proxy = ctx.proxy.port
    size = h.scaled(ctx, 24 * h.MiB)
    first_part = size // 3
    data = os.urandom(size)
    digest = hashlib.sha256(data).hexdigest()
    print(f"== i: RUFH (interop 6) creation of {h.mib(size)} through nginx, nodes killed -9 mid-body,"
          f" resumed through nginx", flush=True)

    head = (f"POST /files/ HTTP/1.1\r\nHost: 127.0.0.1:{proxy}\r\nContent-Type: video/mp4\r\n"
            f"Upload-Draft-Interop-Version: 6\r\nUpload-Complete: ?1\r\nContent-Length: {size}\r\n"
            f"Accept: */*\r\nUser-Agent: FerryApp/1 CFNetwork/1568.200.51 Darwin/24.1.0\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", proxy), timeout=30)
    try:
        sock.sendall(head + data[:first_part])
        status, headers, _, _ = read_response(sock, b"")
        location = headers.get("location", "")
        h.check(status == 104 and location and headers.get("upload-draft-interop-version") == "6",
                "i: the 104 with Location and the interop version comes through nginx before the body is complete",
                f"{status} {headers}")
        if status != 104 or not location:
            return
        path = "/" + location.split("/", 3)[3]
        time.sleep(0.5)  # let the serving node store some of it
        # nginx logs a request only when it ends, so which node serves this one is not known
        # yet: every node is killed -9 (the serving one with it), then all are restarted.
        for node in ctx.nodes:
            node.kill9()
        print(f"      killed every node -9 after {h.mib(first_part)} of the creation body were sent", flush=True)
    finally:
        sock.close()
    for node in ctx.nodes:
        try:
            node.start()
        except h.CaseError as e:
            h.check(False, f"i: node {node.index} restarts: {e}")
            return

    v6 = {"Upload-Draft-Interop-Version": "6"}
    t0 = time.monotonic()
    status, headers, _ = 0, {}, b""
    while time.monotonic() - t0 < 60:
        try:
            status, headers, _ = rufh_request(proxy, "HEAD", path, v6, timeout=30)
        except (OSError, http.client.HTTPException):
            status = 0
        if status in (200, 204):
            break
        time.sleep(0.5)
    offset = int(headers.get("upload-offset", "-1"))
    h.check(status in (200, 204) and 0 <= offset <= first_part and headers.get("upload-complete") == "?0",
            f"i: HEAD through nginx answers after the restart in {time.monotonic() - t0:.1f}s: offset {h.mib(max(offset, 0))}"
            f" (<= the {h.mib(first_part)} sent), Upload-Complete: ?0", f"{status} {headers}")
    if offset < 0:
        return
    status, headers, body = rufh_request(
        proxy, "PATCH", path,
        {**v6, "Content-Type": "application/partial-upload", "Upload-Offset": str(offset), "Upload-Complete": "?1"},
        body=data[offset:])
    h.check(status == 200 and headers.get("upload-complete") == "?1" and headers.get("upload-offset") == str(size),
            "i: the resuming PATCH through nginx completes the upload (200, Upload-Complete: ?1)",
            f"{status} {headers} {body[:200]!r}")
    status, got, n, _ = h.get_digest(proxy, path)
    h.check(status == 200 and got == digest and n == size, "i: the stored file matches the sent one by SHA-256",
            f"{status} {n} bytes {got[:12]} vs {digest[:12]}")
    nodes = {a: ctx.node_names.get(a, a) for a in ctx.proxy.upstreams("HEAD", path) + ctx.proxy.upstreams("PATCH", path)}
    print(f"      HEAD and PATCH were served by {', '.join(sorted(set(nodes.values()))) or '?'}", flush=True)

    # The client over RUFH through the cluster.
    source = os.path.join(ctx.tmp, "i-put.bin")
    blob = h.Blob(h.scaled(ctx, 8 * h.MiB), path=source)
    try:
        out = subprocess.run([ctx.args.ferry, "put", source, f"http://127.0.0.1:{proxy}/files/", "--protocol", "rufh",
                              "--no-resume", "--deadline", "2m"], capture_output=True, text=True, timeout=180)
        url = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
        ok = out.returncode == 0 and url.startswith("http")
        h.check(ok, "i: ferry put --protocol rufh through nginx exits 0", out.stderr[-500:])
        if ok:
            status, got, n, _ = h.get_digest(proxy, "/" + url.split("/", 3)[3])
            h.check(status == 200 and got == blob.digest, "i: its upload GETs back with the file's SHA-256", f"{status} {got[:12]}")
    finally:
        blob.close()
