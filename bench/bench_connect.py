"""Median time of one experiment: new certificate, server start, handshake, server stop.

    python bench/bench_connect.py [--runs 200]

Prints one table row per figure: figure, value, target, met or not. Run by hand or by `make bench`;
never a timed test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from tlslab import CertificateAuthority, TLSServer, connect


def one_experiment(ca: CertificateAuthority) -> dict[str, float]:
    t0 = time.perf_counter()
    credential = ca.issue_server_cert("localhost", "127.0.0.1")
    t1 = time.perf_counter()
    server = TLSServer(credential).start()
    t2 = time.perf_counter()
    report = connect(server, trust=ca)
    t3 = time.perf_counter()
    server.stop()
    t4 = time.perf_counter()
    if not report.ok:
        raise SystemExit(f"handshake failed: {report.diagnosis}")
    return {"certificate": t1 - t0, "server start": t2 - t1, "connect()": t3 - t2, "server stop": t4 - t3, "total": t4 - t0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="3 runs, 1 warm-up (a smoke test of this script)")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 3
    ca = CertificateAuthority("Bench CA")
    for _ in range(1 if args.quick else 10):  # warm-up: imports, OpenSSL tables, thread start-up
        one_experiment(ca)
    samples: dict[str, list[float]] = {}
    for _ in range(args.runs):
        for part, seconds in one_experiment(ca).items():
            samples.setdefault(part, []).append(seconds)
    print(f"{'figure':<44} {'value':>10}  {'target':>8}  met")
    for part, values in samples.items():
        median_ms = statistics.median(values) * 1000
        target = "≤ 20 ms" if part == "total" else ""
        met = ("yes" if median_ms <= 20 else "no") if target else ""
        label = f"median {part} ({args.runs} runs)"
        print(f"{label:<44} {median_ms:>7.2f} ms  {target:>8}  {met}")
        if os.environ.get("TLSLAB_BENCH_ROWS"):  # machine-readable, for bench/run.py
            print("ROW", label, f"{median_ms:.2f} ms", target, met, sep="\t")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
