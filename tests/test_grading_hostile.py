"""The grader against hostile submissions: a submission is untrusted code.

What the grader contains (see tlslab.grading's docstring and the README): each submission runs
in a fresh temporary copy, with a per-cell timeout and an overall time limit, and its check cells
are put back from the pristine lab. What it does not contain: the code runs with the grader's own
rights (it could read or delete anything the grader's user can). These tests prove the first
part; the second is documented, not tested.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import nbformat
import pytest

from tlslab.grading import build_labs, grade

HERE = Path(__file__).parent
SOLUTIONS = HERE / "fixtures" / "sample_lab" / "solutions"
LABEL = "99_sample"


def _cell(nb, cell_id):
    return next(c for c in nb.cells if c.get("id") == cell_id)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    labs = tmp_path_factory.mktemp("labs")
    build_labs(SOLUTIONS, labs)
    folder = tmp_path_factory.mktemp("hostile")
    solution = nbformat.read(SOLUTIONS / f"{LABEL}.ipynb", as_version=4)

    # Deletes every file it can see from where it runs, then claims to pass.
    vandal = copy.deepcopy(solution)
    _cell(vandal, "answer-a").source = (
        "import os\n"
        "for name in os.listdir('.'):\n"
        "    if os.path.isfile(name):\n"
        "        os.remove(name)\n"
        "def double(x):\n    return 2 * x\n"
    )
    # Prints 20 MB of output.
    flood = copy.deepcopy(solution)
    _cell(flood, "answer-a").source = "print('x' * 20_000_000)\ndef double(x):\n    return 2 * x\n"

    paths = {
        "vandal": folder / f"vandal_{LABEL}.ipynb",
        "flood": folder / f"flood_{LABEL}.ipynb",
        "honest": folder / f"honest_{LABEL}.ipynb",
    }
    nbformat.write(vandal, paths["vandal"])
    nbformat.write(flood, paths["flood"])
    nbformat.write(solution, paths["honest"])
    before = {name: path.read_bytes() for name, path in paths.items()}
    book = grade(list(paths.values()), labs_dir=labs, jobs=2, timeout=30)
    gradebook = folder / "gradebook.json"
    book.to_json(gradebook)
    return paths, before, book, gradebook, labs


def test_a_vandal_deletes_only_its_own_temporary_copy(graded) -> None:
    paths, before, book, gradebook, labs = graded
    for name, path in paths.items():
        assert path.read_bytes() == before[name], f"{name}: the submission on disk was changed"
    assert (labs / f"{LABEL}.ipynb").exists(), "the pristine lab must survive"
    rows = {Path(r.path).name: r for r in book.rows}
    assert rows[paths["vandal"].name].error is None
    assert rows[paths["honest"].name].score == rows[paths["honest"].name].max_score


def test_huge_output_is_graded_not_fatal(graded) -> None:
    paths, _, book, _, _ = graded
    row = next(r for r in book.rows if Path(r.path).name == paths["flood"].name)
    assert row.error is None and row.score == row.max_score


def test_the_gradebook_is_written_and_complete(graded) -> None:
    _, _, book, gradebook, _ = graded
    data = json.loads(gradebook.read_text())
    assert len(book.rows) == 3
    assert "vandal" in gradebook.read_text() and "honest" in gradebook.read_text()
    assert data  # parsed back
