"""Run every benchmark in bench/, each in its own process, then print one table of the targets.

    python bench/run.py [--quick] [--jobs N] [--timeout S] [NAME ...]     (`make bench`)

Each `bench_*.py` runs as `python bench/bench_NAME.py` in a subprocess of its own, so one that
crashes or hangs (stopped after --timeout seconds) costs only its own figures. Its output is shown
as it comes. Then comes a combined table, `figure | value | target | met`, of every row that has a
target, gathered from all the scripts.

How the figures reach this script: it sets TLSLAB_BENCH_ROWS=1, and a bench then also prints each
table row as one machine-readable line, `ROW<TAB>figure<TAB>value<TAB>target<TAB>met` (hidden
here, so the output reads as when the bench runs alone). A bench that prints no ROW lines has its
readable table parsed instead (the line starting `figure`, then one row per line, columns parted
by two or more spaces), which works for the usual layout.

NAME picks benches (`nbval`, `bench_serve.py`, …). `--quick` passes --quick to each bench that
has it (a smoke test, figures meaningless; benches without it are skipped), `--jobs N` runs N
benches at a time (for --quick only: benchmarks running side by side spoil each other's figures).
Exit status: 1 if a bench crashed or timed out, else 0 (a missed target is a figure, not an error).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROW_ENV = "TLSLAB_BENCH_ROWS"


@dataclass
class Outcome:
    """What one bench script did."""

    script: str
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    output: list[str] = field(default_factory=list)
    returncode: int | None = None
    seconds: float = 0.0
    timed_out: bool = False
    skipped: str | None = None

    @property
    def failed(self) -> bool:
        return self.skipped is None and (self.timed_out or self.returncode != 0)

    @property
    def status(self) -> str:
        if self.skipped:
            return f"skipped ({self.skipped})"
        if self.timed_out:
            return f"timed out after {self.seconds:.0f} s"
        if self.returncode != 0:
            return f"exit {self.returncode} after {self.seconds:.1f} s"
        return f"ok, {self.seconds:.1f} s"


def parse_row(line: str) -> tuple[str, str, str, str] | None:
    """A `ROW<TAB>figure<TAB>value<TAB>target<TAB>met` line as a tuple, or None."""
    if not line.startswith("ROW\t"):
        return None
    cells = line.rstrip("\n").split("\t")[1:]
    cells += [""] * (4 - len(cells))
    return tuple(cell.strip() for cell in cells[:4])  # type: ignore[return-value]


def parse_table(lines: list[str]) -> list[tuple[str, str, str, str]]:
    """Fallback for a bench without ROW lines: its readable table, columns parted by 2+ spaces."""
    rows: list[tuple[str, str, str, str]] = []
    inside = False
    for line in lines:
        if not inside:
            inside = line.startswith("figure ")
            continue
        if not line.strip():
            break
        cells = [cell for cell in re.split(r"\s{2,}", line.strip()) if cell]
        if len(cells) < 2:
            continue
        if cells[-1] in ("yes", "no") and len(cells) >= 4:
            figure, value, target, met = " ".join(cells[:-3]), cells[-3], cells[-2], cells[-1]
        else:
            figure, value, target, met = cells[0], " ".join(cells[1:]), "", ""
        rows.append((figure, value, target, met))
    return rows


def has_quick(script: Path) -> bool:
    return "--quick" in script.read_text(encoding="utf-8")


def run_one(script: Path, *, quick: bool, timeout: float, echo: bool, lock: threading.Lock) -> Outcome:
    """Run one bench; echo its output line by line when ``echo`` (else keep it for later)."""
    outcome = Outcome(script.name)
    command = [sys.executable, "-u", str(script)] + (["--quick"] if quick else [])
    env = dict(os.environ, **{ROW_ENV: "1", "PYTHONUNBUFFERED": "1"})
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=HERE.parent, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True,
    )

    def stop() -> None:  # the bench and whatever it started (servers, kernels, s_time)
        outcome.timed_out = True
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    watchdog = threading.Timer(timeout, stop)
    watchdog.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            row = parse_row(line)
            if row is not None:
                outcome.rows.append(row)
                continue
            outcome.output.append(line.rstrip("\n"))
            if echo:
                with lock:
                    print(line, end="", flush=True)
        outcome.returncode = process.wait()
    finally:
        watchdog.cancel()
        outcome.seconds = time.perf_counter() - started
    if not outcome.rows:
        outcome.rows = parse_table(outcome.output)
    return outcome


def combined_table(outcomes: list[Outcome]) -> str:
    """Every row with a target, and a line for each bench that gave no figures."""
    lines: list[tuple[str, str, str, str]] = []
    for outcome in outcomes:
        targeted = [row for row in outcome.rows if row[2]]
        lines += [(f"{row[0]}", row[1], row[2], row[3] or "?") for row in targeted]
        if outcome.failed:
            lines.append((f"{outcome.script}: {outcome.status}", "-", "-", "no"))
    header = ("figure", "value", "target", "met")
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(4)]
    text = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(line, widths)) + " |" for line in [header, *lines]]
    text.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(text)


def select(names: list[str]) -> list[Path]:
    scripts = sorted(HERE.glob("bench_*.py"))
    if not names:
        return scripts
    wanted = {name.removeprefix("bench_").removesuffix(".py") for name in names}
    chosen = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
    unknown = wanted - {s.stem.removeprefix("bench_") for s in chosen}
    if unknown:
        raise SystemExit(f"no bench named {', '.join(sorted(unknown))}; there are: "
                         + ", ".join(s.stem.removeprefix('bench_') for s in scripts))
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="benches to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="pass --quick to every bench (a smoke test)")
    parser.add_argument("--jobs", type=int, default=1, help="benches at a time (default 1; more only for --quick)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before a bench is stopped (default 1800)")
    args = parser.parse_args(argv)
    scripts = select(args.names)
    lock = threading.Lock()
    outcomes: list[Outcome] = []
    runnable = []
    for script in scripts:
        if args.quick and not has_quick(script):
            outcomes.append(Outcome(script.name, skipped="no --quick"))
        else:
            runnable.append(script)
    started = time.perf_counter()
    if args.jobs <= 1:
        for script in runnable:
            print(f"\n## {script.name}", flush=True)
            outcome = run_one(script, quick=args.quick, timeout=args.timeout, echo=True, lock=lock)
            if outcome.failed:
                print(f"{script.name}: {outcome.status}", flush=True)
            outcomes.append(outcome)
    else:
        def job(script: Path) -> Outcome:
            outcome = run_one(script, quick=args.quick, timeout=args.timeout, echo=False, lock=lock)
            with lock:  # one bench's output in one piece, as each finishes
                print(f"\n## {script.name}", *outcome.output, sep="\n", flush=True)
                if outcome.failed:
                    print(f"{script.name}: {outcome.status}", flush=True)
            return outcome

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            outcomes += list(pool.map(job, runnable))
    outcomes.sort(key=lambda outcome: outcome.script)

    print(f"\n## all benches ({time.perf_counter() - started:.0f} s)")
    for outcome in outcomes:
        print(f"  {outcome.script:<22} {outcome.status}, {len(outcome.rows)} figures")
    print("\n" + combined_table(outcomes), flush=True)
    return 1 if any(outcome.failed for outcome in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
