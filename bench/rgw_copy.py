"""What a server-side CopyObject costs on RGW against the upload it replaces, and whether RGW
copies the data (the memstore OSD's used bytes before and after), for instant upload's choice of
storage by reference on S3 (docs/instant-upload.md).

Usage (RGW from scripts/services/rgw.sh, whose test keys it uses):
    MON_PORT=13410 RGW_PORT=13411 scripts/services/rgw.sh start DIR
    python3 bench/rgw_copy.py http://127.0.0.1:13411 DIR/run/osd.0.asok
    scripts/services/rgw.sh stop DIR

Objects of 8 MiB and more go up as multipart uploads of 8 MiB parts (as boto3 and Ferry's S3
store send them); smaller ones as one PutObject. Each copy is checked whole after its source
is deleted.
"""
import json
import os
import statistics
import subprocess
import sys
import time

import boto3
from boto3.s3.transfer import TransferConfig

BUCKET = "copytest"
SIZES = (4 << 20, 64 << 20, 1 << 30)
RUNS = 3


def osd_used(asok: str) -> int:
    p = subprocess.run(["ceph", "--admin-daemon", asok, "perf", "dump"], capture_output=True, text=True, timeout=30)
    return int(json.loads(p.stdout)["osd"]["stat_bytes_used"])


def main() -> None:
    endpoint, asok = sys.argv[1], sys.argv[2]
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="ferry-test",
                      aws_secret_access_key="ferry-test-secret", region_name="us-east-1")
    try:
        s3.create_bucket(Bucket=BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    transfer = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20, max_concurrency=4)
    for size in SIZES:
        path = f"/tmp/rgw-copy-{size}.bin"
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(os.urandom(size))
        with open(path, "rb") as f:
            f.seek(size - 4096)
            tail = f.read()
        puts, copies, added = [], [], []
        for run in range(RUNS):
            source, copy = f"src-{size}-{run}", f"dst-{size}-{run}"
            start = time.monotonic()
            s3.upload_file(path, BUCKET, source, Config=transfer)
            puts.append(time.monotonic() - start)
            time.sleep(1)
            before = osd_used(asok)
            start = time.monotonic()
            s3.copy_object(Bucket=BUCKET, Key=copy, CopySource={"Bucket": BUCKET, "Key": source})
            copies.append(time.monotonic() - start)
            time.sleep(1)
            added.append(osd_used(asok) - before)
            s3.delete_object(Bucket=BUCKET, Key=source)
            assert s3.head_object(Bucket=BUCKET, Key=copy)["ContentLength"] == size
            got = s3.get_object(Bucket=BUCKET, Key=copy, Range=f"bytes={size - 4096}-{size - 1}")["Body"].read()
            assert got == tail, "the copy changed when its source was deleted"
            s3.delete_object(Bucket=BUCKET, Key=copy)
        put, cp = statistics.median(puts), statistics.median(copies)
        print(f"{size >> 20:5d} MiB: upload {put * 1000:8.1f} ms, CopyObject {cp * 1000:7.1f} ms ({cp / put:.3f} of the upload); "
              f"OSD bytes a copy adds {statistics.median(added) / (1 << 20):.1f} MiB; medians of {RUNS}")


if __name__ == "__main__":
    main()
