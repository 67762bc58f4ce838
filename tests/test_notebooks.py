"""Every lesson and every lab solution re-executes under nbval to its committed outputs.

Strict mode (never --nbval-lax): each code cell's outputs are compared, after the regexes in
tests/nbval_sanitize.cfg. Each notebook runs in its own pytest process, as a maintainer would
run it, so a failure shows nbval's own report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"
NOTEBOOKS = sorted((ROOT / "course").glob("*.ipynb")) + sorted((ROOT / "labs" / "solutions").glob("*.ipynb"))


def test_there_are_notebooks_to_check() -> None:
    assert any(p.parent.name == "course" for p in NOTEBOOKS), "no lesson found in course/"
    assert any(p.parent.name == "solutions" for p in NOTEBOOKS), "no lab found in labs/solutions/"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_is_committed_executed(notebook: Path) -> None:
    nb = json.loads(notebook.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    counts = [c.get("execution_count") for c in code]
    assert None not in counts, f"{notebook.name}: commit it executed (some code cells never ran)"
    assert counts == sorted(counts), f"{notebook.name}: cells ran out of order; re-run top to bottom"
    errors = [c for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{notebook.name}: a stored output is an error"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_reproduces_under_nbval(notebook: Path) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env",
            f"--nbval-sanitize-with={SANITIZE}", "--nbval-cell-timeout=120",
            "-p", "no:cacheprovider", "-q", "--no-header", str(notebook),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, f"nbval failed for {notebook.name}:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"


def test_sanitize_file_pairs_every_regex_with_a_replace() -> None:
    # nbval reads the file with a regex: a `regex:` line must be directly followed by `replace:`.
    lines = [line for line in SANITIZE.read_text().splitlines()]
    for i, line in enumerate(lines):
        if line.startswith("regex: "):
            assert i + 1 < len(lines) and lines[i + 1].startswith("replace: "), f"line {i + 1}: regex without replace"
