"""Rotation under load: connections made and failed while short-lived certificates are renewed.

    python bench/bench_rotation.py [--lifetime 10] [--rotations 3] [--interval 0.02]

A mutual-TLS server and its client both hold certificates that live ``--lifetime`` seconds; a
rotator renews each at 2/3 of its life, ``--rotations`` times, while the client connects every
``--interval`` seconds. Prints one table row per figure: figure, value, target, met or not.
Run by hand or by `make bench`; never a timed test. (10-second certificates, 3 rotations: about
23 seconds.)
"""

from __future__ import annotations

import argparse
import os

from tlslab.rotation import run_rotation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lifetime", type=int, default=10)
    parser.add_argument("--rotations", type=int, default=3)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--quick", action="store_true", help="3-second certificates, 1 rotation (a smoke test of this script)")
    args = parser.parse_args(argv)
    if args.quick:
        args.lifetime, args.rotations = 3, 1
    result = run_rotation(args.lifetime, args.rotations, interval=args.interval)
    rows = [
        ("certificate lifetime (s)", f"{result.lifetime}", "", ""),
        ("run length (s)", f"{result.seconds:.1f}", "", ""),
        ("rotations (server certificate)", str(result.rotations), f"≥ {args.rotations}",
         "yes" if result.rotations >= args.rotations else "no"),
        ("rotations (client certificate)", str(result.client_rotations), f"≥ {args.rotations}",
         "yes" if result.client_rotations >= args.rotations else "no"),
        ("connections made", str(result.made), "", ""),
        ("connections failed", str(result.failed), "0", "yes" if result.failed == 0 else "no"),
    ]
    print(f"{'figure':<44} {'value':>10}  {'target':>8}  met")
    for label, value, target, met in rows:
        print(f"{label:<44} {value:>10}  {target:>8}  {met}")
        if os.environ.get("TLSLAB_BENCH_ROWS"):  # machine-readable, for bench/run.py
            print("ROW", label, value, target, met, sep="\t")
    for (key, who), count in result.failure_kinds().items():
        print(f"  failed: {key} ({who} refused) × {count}")
    return 0 if result.failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
