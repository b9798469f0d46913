#!/usr/bin/env python3
"""Two or more ferry binaries side by side: one large upload over TLS, alternating between them.

Usage: python3 bench/tls_ab.py [--runs N] [--size-mib N] [--mode discard|patch|put] [--http1]
                               NAME=BINARY[:ENV=VALUE,...] NAME=BINARY ...

Every server runs at once on its own port and data folder, with the same throwaway certificate;
each run sends the same file once to each, in turn, so that what the shared machine does at
that moment weighs on all of them alike. Modes: `discard` (curl PUT /discard: the protocol's
cost, no disk), `patch` (curl creates, then one PATCH), `put` (the binary's own `ferry put
--chunk` as the client: one creation-with-upload request). HTTP/2 unless --http1. Prints each
binary's median MiB/s and ferry CPU seconds (user + sys) per GiB, and every run's rate.

An ENV=VALUE after the binary is set for its server, e.g. new=./ferry:FERRY_H2_MAX_FRAME=16K.
Needs curl and openssl. Everything binds 127.0.0.1; the servers are stopped at the end.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tls_bench import MiB, Server, curl_discard, curl_patch, ferry_put, make_certificates  # noqa: E402


# The clients of bench/tls_bench.py's throughput part, by mode.
CLIENTS = {"discard": curl_discard, "patch": curl_patch, "put": ferry_put}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--mode", choices=("discard", "patch", "put"), default="discard")
    parser.add_argument("--http1", action="store_true")
    parser.add_argument("binaries", nargs="+", metavar="NAME=BINARY[:ENV=VALUE,...]")
    args = parser.parse_args()
    version = "--http1.1" if args.http1 else "--http2"
    work = tempfile.mkdtemp(prefix="ferry-tls-ab.")
    servers = {}
    try:
        certs = make_certificates(work)
        path = os.path.join(work, "big.bin")
        with open(path, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(MiB))
        size = args.size_mib * MiB
        for spec in args.binaries:
            name, _, rest = spec.partition("=")
            binary, _, settings = rest.partition(":")
            env = dict(kv.split("=", 1) for kv in settings.split(",") if kv)
            servers[name] = Server(os.path.abspath(binary), work, name,
                                   ["--tls-cert", certs["cert.pem"], "--tls-key", certs["key.pem"], "--bench-discard"],
                                   env=env)
        results = {name: [] for name in servers}
        for run in range(args.runs):
            for name, server in servers.items():
                rate, cpu, _, _ = CLIENTS[args.mode](server, path, size, certs["ca.pem"], version)
                results[name].append((rate, cpu))
        print(f"{args.size_mib} MiB {args.mode} over TLS {'HTTP/1.1' if args.http1 else 'HTTP/2'}, medians of {args.runs}:")
        for name, values in results.items():
            rate = statistics.median(r for r, _ in values)
            cpu = statistics.median(c for _, c in values)
            runs = " ".join(f"{r:.0f}" for r, _ in values)
            print(f"  {name:12} {rate:8.1f} MiB/s  ferry CPU {cpu:5.2f} s/GiB   runs: {runs}")
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
