"""P6: size of the installed environment, and how long a fresh install takes.

    python bench/bench_env.py [--no-install] [--quick]

Size: `du` of this environment (the .venv that `make` made, or whichever Python runs this).
Install: a fresh virtual environment in a temporary folder, made the way the Makefile makes one
(`python -m venv`, `pip install --upgrade pip`, then `pip install -e .` as `make lab` does, then
`pip install -e '.[test]'` as `make test` does), each step timed and the environment's size taken
after it. The project is copied first (pyproject.toml, README.md, helpers/), so the build leaves
nothing in the work tree. pip uses its cache as it finds it: the table says whether one was there
(a cold cache downloads or copies every wheel; a warm one is faster). If the full install fails
(no index reachable), the figure falls back to `pip install --no-deps -e .` alone, and says so.
`--no-install` and `--quick` measure the size only.

Prints one table row per figure: figure, value, target, met or blank. Run by hand or by
`make bench`; never a timed test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEP_TIMEOUT = 1200  # seconds; a pip that waits on an unreachable index gives up well before


def size_mb(path: Path) -> float:
    """Disk usage of ``path`` in MB (du -sk; a walk over the files where du is missing)."""
    if shutil.which("du"):
        out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout
        return int(out.split()[0]) * 1024 / 1e6
    seen, total = set(), 0
    for folder, _, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(folder, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total / 1e6


def count_packages(python: Path | str) -> int:
    code = "import importlib.metadata as m; print(len({d.metadata['Name'].lower() for d in m.distributions()}))"
    return int(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout)


def pip_cache() -> tuple[Path | None, float]:
    """pip's cache folder and its size in MB (None, 0 when pip has none)."""
    result = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True)
    folder = Path(result.stdout.strip()) if result.returncode == 0 and result.stdout.strip() else None
    if folder is None or not folder.is_dir():
        return None, 0.0
    return folder, size_mb(folder)


def step(command: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=STEP_TIMEOUT, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started, result


def copy_project(target: Path) -> Path:
    """What `pip install .` reads, copied so that its build leaves nothing in the work tree."""
    target.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, target / name)
    shutil.copytree(ROOT / "helpers", target / "helpers", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return target


def fresh_install(folder: Path) -> tuple[list[tuple[str, str, str, str]], str | None]:
    """Rows for a fresh install in ``folder``; the second value says why it fell back, if it did."""
    project = copy_project(folder / "project")
    venv = folder / "venv"
    python = venv / "bin" / "python"
    rows: list[tuple[str, str, str, str]] = []
    t_venv, result = step([sys.executable, "-m", "venv", str(venv)], cwd=folder)
    if result.returncode != 0:
        return rows, f"python -m venv failed: {result.stderr.strip()[-300:]}"
    t_pip, result = step([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], cwd=folder)
    pip_note = "" if result.returncode == 0 else " (pip upgrade failed; bundled pip used)"
    rows.append((f"fresh venv + pip upgrade{pip_note}", f"{t_venv + t_pip:7.1f} s", "", ""))
    t_lab, result = step([str(python), "-m", "pip", "install", "--quiet", "-e", "."], cwd=project)
    if result.returncode != 0:
        why = (result.stderr.strip().splitlines() or ["?"])[-1][:200]
        t_nodeps, again = step([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "-e", "."], cwd=project)
        if again.returncode == 0:
            rows.append(("install time: pip install --no-deps -e . only", f"{t_nodeps:7.1f} s", "", ""))
        return rows, f"pip install -e . failed ({why}); install time of tlslab alone shown"
    rows.append(("install time: pip install -e . (make lab)", f"{t_lab:7.1f} s", "", ""))
    rows.append(("  size after it (a learner's environment)", f"{size_mb(venv):7.0f} MB", "", ""))
    rows.append(("  packages", f"{count_packages(python):7d}   ", "", ""))
    t_test, result = step([str(python), "-m", "pip", "install", "--quiet", "-e", ".[test]"], cwd=project)
    if result.returncode != 0:
        why = (result.stderr.strip().splitlines() or ["?"])[-1][:200]
        return rows, f"pip install -e '.[test]' failed ({why})"
    rows.append(("install time: + pip install -e '.[test]' (make test)", f"{t_test:7.1f} s", "", ""))
    rows.append(("  size after it (a maintainer's environment)", f"{size_mb(venv):7.0f} MB", "", ""))
    rows.append(("  packages", f"{count_packages(python):7d}   ", "", ""))
    rows.append(("install time, all steps", f"{t_venv + t_pip + t_lab + t_test:7.1f} s", "", ""))
    return rows, None


def print_rows(rows: list[tuple[str, str, str, str]], width: int = 56) -> None:
    """The readable table; with TLSLAB_BENCH_ROWS set, also the ROW lines bench/run.py collects."""
    print(f"{'figure':<{width}} {'value':>10}  {'target':>8}  met")
    for figure, value, target, met in rows:
        print(f"{figure:<{width}} {value:>10}  {target:>8}  {met}")
    if os.environ.get("TLSLAB_BENCH_ROWS"):
        for row in rows:
            print("ROW", *(str(cell).strip() for cell in row), sep="\t")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-install", action="store_true", help="measure the size only")
    parser.add_argument("--quick", action="store_true", help="the size only (a smoke test of this script)")
    args = parser.parse_args(argv)
    here = Path(sys.prefix)
    shown = os.path.relpath(here, ROOT) if here.is_relative_to(ROOT) else str(here)
    rows = [
        (f"size of this environment ({shown})", f"{size_mb(here):7.0f} MB", "", ""),
        ("  packages in it", f"{count_packages(sys.executable):7d}   ", "", ""),
    ]
    note = None
    if not (args.no_install or args.quick):
        cache, cache_mb = pip_cache()
        rows.append(("pip cache before the install" + (f" ({cache})" if cache else ""),
                     f"{cache_mb:7.0f} MB" if cache else "none", "", ""))
        with tempfile.TemporaryDirectory(prefix="tlslab-bench-env-") as name:
            more, note = fresh_install(Path(name))
        rows += more
    print_rows(rows)
    if note:
        print(f"  note: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
