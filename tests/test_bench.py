"""Smoke tests of bench/: every script imports, and each runs in its tiny --quick mode.

Benchmarks are never timed tests: nothing here looks at a figure's value, only that the scripts
run and print their rows (bench/README.md says what the figures mean). The quick runs go through
bench/run.py, the way `make bench` runs them, several at a time.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SCRIPTS = sorted(BENCH.glob("bench_*.py"))
QUICK = [script for script in SCRIPTS if "--quick" in script.read_text(encoding="utf-8")]
# The benchmarks this suite expects to have; others may come (run.py runs any bench_*.py).
EXPECTED = {"nbval", "gallery", "serve", "grading", "decrypt", "env"}


def load(path: Path):
    """Import a bench script as a module (its main() does not run)."""
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


run = load(BENCH / "run.py")


def test_the_benchmarks_are_there() -> None:
    names = {script.stem.removeprefix("bench_") for script in SCRIPTS}
    assert EXPECTED <= names, f"missing: {EXPECTED - names}"
    assert EXPECTED <= {script.stem.removeprefix("bench_") for script in QUICK}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bench_script_imports_and_has_a_main(script: Path) -> None:
    module = load(script)
    assert callable(module.main)
    assert module.__doc__, f"{script.name}: say in its docstring what it measures"


def test_row_lines_round_trip() -> None:
    assert run.parse_row("ROW\tratio tlslab / openssl\t0.93\t≥ 0.9\tyes\n") == ("ratio tlslab / openssl", "0.93", "≥ 0.9", "yes")
    assert run.parse_row("ROW\tsize\t651 MB\n") == ("size", "651 MB", "", "")
    assert run.parse_row("figure  value") is None


def test_a_table_without_row_lines_is_parsed() -> None:
    lines = [
        "something printed first",
        f"{'figure':<48} {'value':>10}  {'target':>8}  met",
        f"{'median full scan, weak server (5 runs)':<48} {'  812 ms':>10}  {'≤ 2 s':>8}  yes",
        f"{'handshakes per scan, weak server':<48} {'   64   ':>10}  {'':>8}  ",
        "",
        "  failed: later lines are not rows",
    ]
    assert run.parse_table(lines) == [
        ("median full scan, weak server (5 runs)", "812 ms", "≤ 2 s", "yes"),
        ("handshakes per scan, weak server", "64", "", ""),
    ]


def test_the_combined_table_keeps_targets_and_failures() -> None:
    good = run.Outcome("bench_a.py", rows=[("with a target", "1 s", "≤ 2 s", "yes"), ("no target", "3", "", "")], returncode=0)
    crashed = run.Outcome("bench_b.py", returncode=1, seconds=0.5)
    table = run.combined_table([good, crashed])
    assert "with a target" in table and "no target" not in table
    assert "bench_b.py: exit 1" in table
    assert table.splitlines()[0].startswith("| figure")


@pytest.fixture(scope="module")
def quick_run() -> subprocess.CompletedProcess:
    """bench/run.py --quick: every bench that has --quick, in its own process, all at once."""
    env = {k: v for k, v in os.environ.items() if k != "TLSLAB_BENCH_ROWS"}
    return subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--jobs", str(len(QUICK)), "--timeout", "240"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )


def test_run_py_quick_runs_every_bench(quick_run) -> None:
    out = quick_run.stdout
    assert quick_run.returncode == 0, f"{out[-4000:]}\n{quick_run.stderr[-2000:]}"
    assert "| figure" in out, "no combined table"
    summary = out.split("## all benches", 1)[1]
    for script in QUICK:
        line = next(line for line in summary.splitlines() if line.strip().startswith(script.name))
        assert "ok," in line, line
        assert " 0 figures" not in line, f"{script.name} printed no rows: {line}"


@pytest.mark.parametrize("script", QUICK, ids=lambda p: p.name)
def test_each_quick_bench_printed_its_table(quick_run, script: Path) -> None:
    block = quick_run.stdout.split(f"## {script.name}\n", 1)[1].split("\n## ", 1)[0]
    assert block.splitlines()[0].startswith("figure"), block[:500]
    assert "ROW\t" not in block, "ROW lines are for run.py, not for the reader"
