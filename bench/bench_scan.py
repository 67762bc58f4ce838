"""How long a full `tlslab scan` of one local server takes (median of a few runs).

    python bench/bench_scan.py [--runs 5] [--workers 4]

Two servers, each scanned `--runs` times after one warm-up scan: the weak one (TLS 1.0–1.3, CBC
and static-RSA suites: many suites accepted) and the hardened one (TLS 1.2–1.3, ECDHE + AEAD,
client certificates required; scanned with a client certificate, so every probe runs). A full
scan is 4 version probes, one probe per TLS 1.2 suite OpenSSL knows, and the resumption pairs.

Prints one table row per figure: figure, value, target, met or not. Run by hand or by `make bench`;
never a timed test.
"""

from __future__ import annotations

import argparse
import statistics
import time

from tlslab.hardening import client_credential, hardened_server, hardening_ca, weak_server
from tlslab.scan import scan, tls12_suites

TARGET_SECONDS = 2.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    options = dict(ca=hardening_ca(), cert=client_credential(), require_client_cert=True, workers=args.workers)
    rows = []
    for label, factory in (("weak", weak_server), ("hardened", hardened_server)):
        with factory(name=f"bench-scan-{label}") as server:
            first = scan(server, **options)  # warm-up: imports, certificates, OpenSSL tables
            times, probes = [], first.probes
            for _ in range(args.runs):
                started = time.perf_counter()
                result = scan(server, **options)
                times.append(time.perf_counter() - started)
                if result.error is not None:
                    raise SystemExit(f"the scan of the {label} server failed: {result.error}")
        median = statistics.median(times)
        rows.append((f"median full scan, {label} server ({args.runs} runs)", f"{median * 1000:7.0f} ms", f"≤ {TARGET_SECONDS:g} s",
                     "yes" if median <= TARGET_SECONDS else "no"))
        rows.append((f"handshakes per scan, {label} server", f"{probes:7d}   ", "", ""))
    rows.append(("TLS 1.2 suites probed one by one", f"{len(tls12_suites()):7d}   ", "", ""))
    print(f"{'figure':<48} {'value':>10}  {'target':>8}  met")
    for figure, value, target, met in rows:
        print(f"{figure:<48} {value:>10}  {target:>8}  {met}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
