"""P1: wall time of the whole nbval run over course/ and labs/solutions/, and of each notebook.

    python bench/bench_nbval.py [--quick]

One pytest process runs every lesson and every lab solution, as strictly as CI does
(`--nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg`, never lax), with
`-p no:cacheprovider`. Its wall time is the figure (target ≤ 45 s on 2 cores); the JUnit report
gives each notebook's time (the sum of its cells' setup, call and teardown, so the kernel's
start and stop are in it) and its slowest cell. `--quick` runs the same machinery on one tiny
notebook in a temporary folder (for tests/test_bench.py): its figures mean nothing.

Prints one table row per figure: figure, value, target, met or blank. Run by hand or by
`make bench`; never a timed test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"
TARGET_SECONDS = 45.0

TINY_NOTEBOOK = """{
 "cells": [{"cell_type": "code", "execution_count": 1, "id": "tiny", "metadata": {},
            "outputs": [{"name": "stdout", "output_type": "stream", "text": ["2\\n"]}],
            "source": ["print(1 + 1)"]}],
 "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
 "nbformat": 4, "nbformat_minor": 5
}
"""


def notebooks() -> list[Path]:
    """Every notebook that CI checks with nbval, in the order tests/test_notebooks.py uses."""
    return sorted((ROOT / "course").glob("*.ipynb")) + sorted((ROOT / "labs" / "solutions").glob("*.ipynb"))


def run_nbval(paths: list[Path], report: Path, cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    """One pytest process over ``paths``; returns its wall time and the finished process."""
    command = [
        sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env",
        f"--nbval-sanitize-with={SANITIZE}", "--nbval-cell-timeout=120",
        "-p", "no:cacheprovider", "-q", "--no-header", f"--junitxml={report}",
        *(str(p.relative_to(cwd)) if p.is_relative_to(cwd) else str(p) for p in paths),
    ]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=1800)
    return time.perf_counter() - started, result


def per_notebook(report: Path, paths: list[Path], cwd: Path) -> dict[str, dict]:
    """From the JUnit report: each notebook's total time, cell count, failures, slowest cell."""
    # JUnit's classname is the path with dots for slashes: "labs.solutions.00_warmup.ipynb".
    names = {}
    for p in paths:
        shown = str(p.relative_to(cwd)) if p.is_relative_to(cwd) else p.name
        names[shown.replace(os.sep, ".")] = shown
    stats: dict[str, dict] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        classname = case.get("classname", "")
        name = names.get(classname, classname)
        entry = stats.setdefault(name, {"seconds": 0.0, "cells": 0, "failed": 0, "slowest": (0.0, "")})
        seconds = float(case.get("time", 0.0))
        entry["seconds"] += seconds
        entry["cells"] += 1
        if any(child.tag in ("failure", "error") for child in case):
            entry["failed"] += 1
        if seconds > entry["slowest"][0]:
            entry["slowest"] = (seconds, case.get("name", ""))
    return stats


def print_rows(rows: list[tuple[str, str, str, str]], width: int = 76) -> None:
    """The readable table; with TLSLAB_BENCH_ROWS set, also the ROW lines bench/run.py collects."""
    print(f"{'figure':<{width}} {'value':>10}  {'target':>8}  met")
    for figure, value, target, met in rows:
        print(f"{figure:<{width}} {value:>10}  {target:>8}  {met}")
    if os.environ.get("TLSLAB_BENCH_ROWS"):
        for row in rows:
            print("ROW", *(str(cell).strip() for cell in row), sep="\t")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one tiny notebook (a smoke test of this script)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tlslab-bench-nbval-") as name:
        folder = Path(name)
        if args.quick:
            tiny = folder / "tiny.ipynb"
            tiny.write_text(TINY_NOTEBOOK, encoding="utf-8")
            (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
            paths, cwd = [tiny], folder
        else:
            paths, cwd = notebooks(), ROOT
        if not paths:
            raise SystemExit("no notebooks in course/ or labs/solutions/")
        report = folder / "report.xml"
        wall, result = run_nbval(paths, report, cwd)
        if not report.is_file():
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise SystemExit(f"pytest wrote no report (exit {result.returncode}):\n{tail}")
        stats = per_notebook(report, paths, cwd)

    cells = sum(s["cells"] for s in stats.values())
    failed = sum(s["failed"] for s in stats.values())
    label = f"nbval, {len(stats)} notebooks, {cells} cells, one pytest process"
    rows = [(f"{label}{'' if not failed else f' ({failed} cells FAILED)'}", f"{wall:7.1f} s", f"≤ {TARGET_SECONDS:g} s",
             "yes" if wall <= TARGET_SECONDS and not failed else "no")]
    rows.append(("  of which in notebooks (sum of JUnit times)", f"{sum(s['seconds'] for s in stats.values()):7.1f} s", "", ""))
    for name, s in sorted(stats.items(), key=lambda item: -item[1]["seconds"]):
        slow_s, slow_cell = s["slowest"]
        mark = f", {s['failed']} FAILED" if s["failed"] else ""
        rows.append((f"  {name} ({s['cells']} cells{mark}; slowest {slow_cell}: {slow_s:.1f} s)", f"{s['seconds']:7.1f} s", "", ""))
    print_rows(rows)
    if failed:
        print("\n".join(result.stdout.strip().splitlines()[-10:]))
    return 0 if result.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
