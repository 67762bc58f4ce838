"""P4: grading 30 submissions of a real lab with 2 workers (`tlslab grade -j 2`).

    python bench/bench_grading.py [--submissions 30] [--jobs 2] [--lab 00_warmup|all] [--quick]

The submissions are copies of the lab's solution (every check passes) and of the student notebook
that `tlslab build-labs` wrote (every check fails), alternating, named like a class's hand-in
(`student07-00_warmup.ipynb`). `--lab all` cycles through every lab instead of one. The figure is
the wall time of one `tlslab grade -j N --out gradebook.json` process over all of them (target
≤ 60 s for 30 with 2 workers); the gradebook must then say what was expected of each (solutions
full marks, blank labs zero, no error). `--quick` grades two submissions of the small sample lab
of tests/fixtures (a smoke test of this script: its figures mean nothing).

Prints one table row per figure: figure, value, target, met or blank. Run by hand or by
`make bench`; never a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_SOLUTIONS = ROOT / "tests" / "fixtures" / "sample_lab" / "solutions"
TARGET_SECONDS = 60.0


def tlslab(*args: str, cwd: Path, timeout: float = 3600, env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``tlslab ARGS`` (this Python's) and time it."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "tlslab.cli", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started, result


def make_submissions(folder: Path, labs: Path, solutions: Path, names: list[str], count: int) -> dict[Path, bool]:
    """``count`` submissions in ``folder``: solved (True) and blank (False) copies, alternating."""
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[Path, bool] = {}
    for number in range(1, count + 1):
        lab = names[(number - 1) % len(names)]
        solved = number % 2 == 1
        target = folder / f"student{number:02d}-{lab}.ipynb"
        shutil.copyfile((solutions if solved else labs) / f"{lab}.ipynb", target)
        made[target] = solved
    return made


def print_rows(rows: list[tuple[str, str, str, str]], width: int = 64) -> None:
    """The readable table; with TLSLAB_BENCH_ROWS set, also the ROW lines bench/run.py collects."""
    print(f"{'figure':<{width}} {'value':>10}  {'target':>8}  met")
    for figure, value, target, met in rows:
        print(f"{figure:<{width}} {value:>10}  {target:>8}  {met}")
    if os.environ.get("TLSLAB_BENCH_ROWS"):
        for row in rows:
            print("ROW", *(str(cell).strip() for cell in row), sep="\t")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--lab", default="00_warmup", help="the lab handed in, or 'all' (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="two submissions of the sample lab (a smoke test)")
    parser.add_argument(
        "--without-rfc3987-syntax", action="store_true",
        help="an experiment: hide the rfc3987_syntax module from every process of the run (jsonschema, which "
        "nbformat and so nbval import, spends ~2 s building its grammar at import when it is installed)",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tlslab-bench-grading-") as name:
        folder = Path(name)
        if args.quick:
            args.submissions, args.lab = 2, "99_sample"
            solutions, labs = SAMPLE_SOLUTIONS, folder / "labs"
            _, built = tlslab("build-labs", "--solutions", str(solutions), "--labs", str(labs), cwd=folder)
            if built.returncode != 0:
                raise SystemExit(f"tlslab build-labs failed:\n{built.stdout}{built.stderr}")
        else:
            solutions, labs = ROOT / "labs" / "solutions", ROOT / "labs"
        available = sorted(p.stem for p in solutions.glob("*.ipynb") if (labs / p.name).is_file())
        names = available if args.lab == "all" else [args.lab]
        if not names or any(n not in available for n in names):
            raise SystemExit(f"no lab {args.lab!r} with both a solution and a student notebook; labs: {', '.join(available)}")
        expected = make_submissions(folder / "submissions", labs, solutions, names, args.submissions)
        book_path = folder / "gradebook.json"
        env = None
        if args.without_rfc3987_syntax:  # a package that fails to import: jsonschema then does without it
            shadow = folder / "shadow" / "rfc3987_syntax"
            shadow.mkdir(parents=True)
            (shadow / "__init__.py").write_text('raise ImportError("hidden by bench_grading.py")\n', encoding="utf-8")
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(shadow.parent), os.environ.get("PYTHONPATH")])))
        wall, result = tlslab("grade", "-j", str(args.jobs), "--labs", str(labs), "--out", str(book_path),
                              *(str(p) for p in expected), cwd=folder / "submissions", env=env)
        if not book_path.is_file():
            raise SystemExit(f"tlslab grade wrote no gradebook (exit {result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
        book = json.loads(book_path.read_text(encoding="utf-8"))["rows"]

    wrong = []
    for row in book:
        solved = expected[Path(row["path"])]
        good = row["error"] is None and row["max_score"] > 0 and row["score"] == (row["max_score"] if solved else 0)
        if not good:
            wrong.append(f"{Path(row['path']).name}: {row['score']}/{row['max_score']} {row['error'] or ''} {row['feedback']}")
    seconds = [row["seconds"] for row in book]
    solved_n = sum(expected.values())
    what = names[0] if len(names) == 1 else f"{len(names)} labs"
    hidden = " [rfc3987_syntax hidden]" if args.without_rfc3987_syntax else ""
    rows = [
        (f"grade {len(book)} submissions, -j {args.jobs} ({what}: {solved_n} solved, {len(book) - solved_n} blank){hidden}",
         f"{wall:7.1f} s", f"≤ {TARGET_SECONDS:g} s", "yes" if wall <= TARGET_SECONDS and not wrong else "no"),
        ("  per submission in a worker, median", f"{statistics.median(seconds):7.1f} s", "", ""),
        ("  per submission in a worker, slowest", f"{max(seconds):7.1f} s", "", ""),
        ("  throughput", f"{len(book) / wall * 60:7.1f} /min", "", ""),
        ("submissions graded as expected", f"{len(book) - len(wrong)}/{len(book)}", f"{len(book)}/{len(book)}",
         "yes" if not wrong else "no"),
    ]
    print_rows(rows)
    for line in wrong[:10]:
        print(f"  unexpected: {line}")
    return 0 if not wrong else 1


if __name__ == "__main__":
    raise SystemExit(main())
