"""Median time of one gallery experiment: fresh server, handshake, diagnosis (server stopped).

    python bench/bench_gallery.py [--runs 50]

Prints one table row per case and one overall, in the style of bench_connect.py: figure, value,
target, met or not. The gallery's CAs and certificates are made once, before timing (as in a
notebook: the first call builds them, every later experiment reuses them). Run by hand or by
`make bench`; never a timed test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from tlslab.gallery import CASES, gallery_pki, run_case

TARGET_MS = 20.0


def one_experiment(name: str) -> float:
    started = time.perf_counter()
    result = run_case(name)
    elapsed = time.perf_counter() - started
    if not result.as_expected:
        raise SystemExit(f"gallery case {name} did not behave: {result!r}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="experiments per case")
    parser.add_argument("--quick", action="store_true", help="one run per case (a smoke test of this script)")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 1
    machine = bool(os.environ.get("TLSLAB_BENCH_ROWS"))  # ROW lines for bench/run.py
    started = time.perf_counter()
    pki = gallery_pki()
    for name in CASES:  # build every certificate once (the RSA 1024 key is the slow one)
        pki.credential(name)
    setup_ms = (time.perf_counter() - started) * 1000
    for name in CASES:  # warm-up: imports, OpenSSL tables, thread start-up
        one_experiment(name)
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.runs):  # interleaved, so a slow moment of the machine hits every case alike
        for name in CASES:
            samples[name].append(one_experiment(name))
    every = [value for values in samples.values() for value in values]
    print(f"{'figure':<52} {'value':>10}  {'target':>8}  met")
    print(f"{'gallery CAs and certificates, made once':<52} {setup_ms:>7.2f} ms  {'':>8}")
    if machine:
        print("ROW", "gallery CAs and certificates, made once", f"{setup_ms:.2f} ms", "", "", sep="\t")
    rows = [(f"median experiment: {name} ({args.runs} runs)", statistics.median(values)) for name, values in samples.items()]
    rows.append((f"median experiment, all cases ({len(every)} runs)", statistics.median(every)))
    for label, seconds in rows:
        median_ms = seconds * 1000
        met = "yes" if median_ms <= TARGET_MS else "no"
        print(f"{label:<52} {median_ms:>7.2f} ms  {'≤ 20 ms':>8}  {met}")
        if machine:
            print("ROW", label, f"{median_ms:.2f} ms", "≤ 20 ms", met, sep="\t")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
