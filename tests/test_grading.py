"""Tests of tlslab.grading: building student labs, and grading them with real nbval runs.

The sample lab (tests/fixtures/sample_lab, written by make_sample_lab.py there) has three
exercises about plain Python. Each nbval run starts a kernel (a few seconds), so the
submissions are graded once per module, in one batch, and the tests read the results.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from tlslab import grading
from tlslab.grading import (
    Gradebook,
    LabFormatError,
    build_labs,
    build_student_notebook,
    exercise_label,
    grade,
    restore_checks,
    strip_solutions,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SAMPLE_SOLUTIONS = HERE / "fixtures" / "sample_lab" / "solutions"
SAMPLE_SOLUTION = SAMPLE_SOLUTIONS / "99_sample.ipynb"
LABEL = "99_sample"

# The real labs of the course; with none yet, the parametrized tests have no cases.
REAL_SOLUTIONS = sorted((REPO / "labs" / "solutions").glob("*.ipynb"))
REAL_STUDENT_LABS = sorted((REPO / "labs").glob("*.ipynb"))

SOLUTION_B = 'GREETING = "hello"\n\n\ndef shout(s):\n    return s.upper() + "!"\n'


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def write(nb: nbformat.NotebookNode, path: Path) -> Path:
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    return path


def cell(nb: nbformat.NotebookNode, cell_id: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.get("id") == cell_id)


def without(nb: nbformat.NotebookNode, *cell_ids: str) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if c.get("id") not in cell_ids]
    return nb


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="tlslab")
    grading.add_commands(top.add_subparsers(dest="command", required=True))
    return top


def run_cli(*argv: str) -> int:
    args = parser().parse_args([str(a) for a in argv])
    return args.func(args)


@pytest.fixture(scope="module")
def sample_labs(tmp_path_factory) -> Path:
    """A labs folder holding the built student version of the sample lab."""
    labs = tmp_path_factory.mktemp("labs")
    build_labs(SAMPLE_SOLUTIONS, labs)
    return labs


@pytest.fixture(scope="module")
def student(sample_labs) -> nbformat.NotebookNode:
    return read(sample_labs / f"{LABEL}.ipynb")


# ---------------------------------------------------------------------------
# The lab format and the build
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell_id", "kind", "label"),
    [
        ("check-2-1", "check", "2.1"),
        ("check-2_1", "check", "2.1"),
        ("check-10-12b", "check", "10.12b"),
        ("exercise-0-1", "exercise", "0.1"),
        ("exercise-0-1", "check", None),
        ("check-", "check", None),
        ("answer-a", "check", None),
        (None, "check", None),
    ],
)
def test_exercise_label(cell_id, kind, label):
    assert exercise_label(cell_id, kind) == label


def test_strip_solutions_keeps_indentation_and_code_around():
    source = "x = 1\ndef f():\n    ### BEGIN SOLUTION\n    return 2\n    ### END SOLUTION\n# BEGIN SOLUTION\ny = 3\n# END SOLUTION"
    assert strip_solutions(source, "4.2") == (
        'x = 1\ndef f():\n    raise NotImplementedError("Exercise 4.2")\nraise NotImplementedError("Exercise 4.2")'
    )


def test_student_version_replaces_solutions_at_their_indentation(student):
    assert cell(student, "answer-a").source == 'def double(x):\n    raise NotImplementedError("Exercise 99.1")'
    assert cell(student, "answer-b").source == (
        'raise NotImplementedError("Exercise 99.2")\n\n\n'
        'def shout(s):\n    """Upper case, with an exclamation mark."""\n'
        '    raise NotImplementedError("Exercise 99.2")\n'
    )
    assert cell(student, "exercise-99-3").source == 'raise NotImplementedError("Exercise 99.3")'
    for c in student.cells:
        assert "SOLUTION" not in c.source
        assert "return 2 * x" not in c.source


def test_student_version_clears_exercise_and_check_outputs_only(student):
    solution = read(SAMPLE_SOLUTION)
    assert [c.id for c in student.cells] == [c.id for c in solution.cells]
    for ours, theirs in zip(student.cells, solution.cells):
        tags = ours.metadata.get("tags", [])
        if "exercise" in tags or "check" in tags:
            assert ours.outputs == [] and ours.execution_count is None
        else:
            assert ours == theirs  # markdown and setup code, outputs included
    assert cell(student, "setup").outputs[0].text == "setup done\n"
    assert cell(student, "check-99-1").source == cell(solution, "check-99-1").source


def test_student_version_names_its_lab_and_is_valid(student):
    assert student.metadata["tlslab"] == {"lab": LABEL}
    nbformat.validate(student)


def test_build_student_notebook_leaves_its_input_alone():
    solution = read(SAMPLE_SOLUTION)
    before = copy.deepcopy(solution)
    build_student_notebook(solution, lab=LABEL)
    assert solution == before


def test_build_is_deterministic(tmp_path, sample_labs):
    again = tmp_path / "labs"
    build_labs(SAMPLE_SOLUTIONS, again)
    built = (sample_labs / f"{LABEL}.ipynb").read_bytes()
    assert (again / f"{LABEL}.ipynb").read_bytes() == built
    assert built.startswith(b'{\n "cells": [\n  {\n') and built.endswith(b"}\n")
    text = grading._render(build_student_notebook(read(SAMPLE_SOLUTION), lab=LABEL))
    assert text.encode() == built


def test_check_mode_reports_stale_missing_and_extra_labs_and_writes_nothing(tmp_path):
    labs = tmp_path / "labs"
    target = labs / f"{LABEL}.ipynb"
    assert build_labs(SAMPLE_SOLUTIONS, labs) == [target]
    assert build_labs(SAMPLE_SOLUTIONS, labs, check=True) == []

    target.write_text(target.read_text().replace("Write `double(x)`", "Write `twice(x)`"))
    stale = target.read_bytes()
    assert build_labs(SAMPLE_SOLUTIONS, labs, check=True) == [target]
    assert target.read_bytes() == stale

    target.unlink()
    assert build_labs(SAMPLE_SOLUTIONS, labs, check=True) == [target]
    assert not target.exists()

    build_labs(SAMPLE_SOLUTIONS, labs)
    extra = labs / "42_gone.ipynb"
    shutil.copy(target, extra)
    assert build_labs(SAMPLE_SOLUTIONS, labs, check=True) == [extra]
    assert build_labs(SAMPLE_SOLUTIONS, labs) == [target]  # extra notebooks are never deleted
    assert extra.exists()


def _lab_with(exercise_source: str, *, exercise_id: str = "answer", check_id: str | None = "check-1-1", more=()):
    cells = [nbformat.v4.new_code_cell(exercise_source, id=exercise_id, metadata={"tags": ["exercise"]})]
    if check_id is not None:
        cells.append(nbformat.v4.new_code_cell('print("Exercise 1.1: passed")', metadata={"tags": ["check"]}))
        cells[-1]["id"] = check_id  # set directly: new_code_cell would refuse an invalid id
    nb = nbformat.v4.new_notebook()
    nb.cells = cells + list(more)  # after: new_notebook validates, and some of these are invalid
    return nb


@pytest.mark.parametrize(
    ("nb", "message"),
    [
        (_lab_with("### BEGIN SOLUTION\nx = 1"), "without END SOLUTION"),
        (_lab_with("x = 1\n### END SOLUTION"), "without BEGIN SOLUTION"),
        (_lab_with("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION"), "inside a solution block"),
        (_lab_with("x = 1"), "has no BEGIN SOLUTION block"),
        (_lab_with("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", check_id=None), "no check cell after it"),
        (_lab_with("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", exercise_id="exercise-7-7"), "no check cell for exercise 7.7"),
        (_lab_with("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", check_id="check-1.1"), "not a valid nbformat id"),
        (_lab_with("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", check_id="the-check"), "must be 'check-N-M'"),
        (
            _lab_with(
                "### BEGIN SOLUTION\nx = 1\n### END SOLUTION",
                more=[nbformat.v4.new_code_cell("# BEGIN SOLUTION\nkey = 42\n# END SOLUTION", id="setup")],
            ),
            "its solution would be handed out",
        ),
    ],
)
def test_build_refuses_a_malformed_lab(nb, message):
    with pytest.raises(LabFormatError, match=message):
        build_student_notebook(nb, lab="01_bad")


def test_a_broken_lab_stops_the_build_before_anything_is_written(tmp_path):
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    shutil.copy(SAMPLE_SOLUTION, solutions)
    write(_lab_with("### BEGIN SOLUTION\nx = 1"), solutions / "98_broken.ipynb")
    with pytest.raises(LabFormatError, match="98_broken"):
        build_labs(solutions, tmp_path / "labs")
    assert not (tmp_path / "labs").exists()


def test_build_labs_command(tmp_path, capsys):
    labs = tmp_path / "labs"
    assert run_cli("build-labs", "--solutions", SAMPLE_SOLUTIONS, "--labs", labs) == 0
    assert f"wrote: {labs / (LABEL + '.ipynb')}" in capsys.readouterr().out
    assert run_cli("build-labs", "--solutions", SAMPLE_SOLUTIONS, "--labs", labs, "--check") == 0
    assert "up to date" in capsys.readouterr().out

    (labs / f"{LABEL}.ipynb").write_text("{}")
    assert run_cli("build-labs", "--solutions", SAMPLE_SOLUTIONS, "--labs", labs, "--check") == 1
    assert f"out of date: {labs / (LABEL + '.ipynb')}" in capsys.readouterr().out

    assert run_cli("build-labs", "--solutions", tmp_path / "nowhere", "--labs", labs) == 2
    assert "no solutions folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Putting the pristine checks back (no kernel needed)
# ---------------------------------------------------------------------------


def _check_ids(nb):
    return [c.id for c in nb.cells if c.id.startswith("check-")]


def test_restore_checks_replaces_an_edited_check(student):
    submission = copy.deepcopy(student)
    cell(submission, "check-99-1").source = 'print("Exercise 99.1: passed")'
    graded, notes = restore_checks(submission, student)
    restored = cell(graded, "check-99-1")
    assert restored.source == cell(student, "check-99-1").source
    assert "nbval-check-output" in restored.metadata.tags
    assert restored.outputs[0].text == "Exercise 99.1: passed\n" and restored.execution_count is not None
    assert notes == ["check 99.1 was edited; the original was put back"]


def test_restore_checks_puts_a_deleted_check_back_in_its_place(student):
    graded, notes = restore_checks(without(student, "check-99-1", "check-99-3"), student)
    assert [c.id for c in graded.cells] == [c.id for c in student.cells]
    assert len(notes) == 2 and all("was missing" in note for note in notes)


def test_restore_checks_drops_a_check_the_lab_does_not_have(student):
    submission = copy.deepcopy(student)
    fake = nbformat.v4.new_code_cell('print("Exercise 99.4: passed")', id="check-99-4", metadata={"tags": ["check"]})
    submission.cells.append(fake)
    graded, notes = restore_checks(submission, student)
    assert _check_ids(graded) == ["check-99-1", "check-99-2", "check-99-3"]
    assert "not in the lab" in notes[0]


def test_restore_checks_handles_a_notebook_without_cell_ids(student):
    old = copy.deepcopy(student)
    for c in old.cells:
        del c["id"]
    graded, _ = restore_checks(old, student)
    nbformat.validate(graded)
    assert _check_ids(graded) == ["check-99-1", "check-99-2", "check-99-3"]
    assert [c.id for c in graded.cells[-3:]] == _check_ids(graded)  # no anchor: at the end


# ---------------------------------------------------------------------------
# Grading, with real nbval runs
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def submissions(tmp_path_factory, student) -> dict[str, Path]:
    """Submissions of the sample lab, solved to various degrees, and some broken files."""
    folder = tmp_path_factory.mktemp("submissions")
    solution = read(SAMPLE_SOLUTION)

    one_solved = copy.deepcopy(student)
    cell(one_solved, "answer-b").source = SOLUTION_B
    del one_solved.metadata["tlslab"]  # the lab is then told by the file name

    edited = copy.deepcopy(student)
    cell(edited, "check-99-1").source = 'print("Exercise 99.1: passed")'

    chatty = copy.deepcopy(solution)
    cell(chatty, "answer-a").source = 'def double(x):\n    print("debug")\n    return 2 * x'

    looping = copy.deepcopy(solution)
    cell(looping, "answer-a").source = "while True:\n    pass"

    other_lab = copy.deepcopy(student)
    other_lab.metadata["tlslab"] = {"lab": "42_other"}

    paths = {
        "solution": SAMPLE_SOLUTION,
        "student": write(student, folder / "student.ipynb"),
        "one_solved": write(one_solved, folder / f"alice-{LABEL}.ipynb"),
        "edited_check": write(edited, folder / "edited.ipynb"),
        "deleted_check": write(without(student, "check-99-1"), folder / "deleted.ipynb"),
        "deleted_checks_solved": write(without(solution, "check-99-2", "check-99-3"), folder / f"{LABEL}.ipynb"),
        "chatty": write(chatty, folder / f"chatty_{LABEL}.ipynb"),
        "looping": write(looping, folder / f"looping_{LABEL}.ipynb"),
        "not_json": folder / "not_json.ipynb",
        "not_notebook": folder / "not_notebook.ipynb",
        "missing": folder / "missing.ipynb",
        "other_lab": write(other_lab, folder / "other.ipynb"),
    }
    paths["not_json"].write_text("print('hello')\n")
    paths["not_notebook"].write_text('{"hello": "world"}\n')
    return paths


@pytest.fixture(scope="module")
def batch(submissions, sample_labs):
    """Grade every submission in one batch, two at a time; keep the progress calls."""
    calls = []
    book = grade(
        list(submissions.values()),
        labs_dir=sample_labs,
        jobs=2,
        timeout=5,
        progress=lambda done, total, row: calls.append((done, total, row.path)),
    )
    rows = dict(zip(submissions, book.rows))
    return book, rows, calls


def passed(row) -> list[str]:
    return [label for label, ok in row.exercises.items() if ok]


def test_rows_come_back_in_the_order_given(batch, submissions):
    book, _, calls = batch
    assert [row.path for row in book.rows] == list(submissions.values())
    assert [(done, total) for done, total, _ in calls] == [(n, len(submissions)) for n in range(1, len(submissions) + 1)]
    assert {path for _, _, path in calls} == set(submissions.values())


def test_the_solution_scores_full_marks(batch):
    row = batch[1]["solution"]
    assert (row.lab, row.error, row.score, row.max_score) == (LABEL, None, 3, 3)
    assert row.notes == [] and row.feedback == {}


def test_the_student_version_fails_exactly_its_checks(batch):
    row = batch[1]["student"]
    assert row.error is None
    assert row.exercises == {"99.1": False, "99.2": False, "99.3": False}
    assert row.feedback["99.1"] == "NotImplementedError: Exercise 99.1"
    assert row.feedback["99.3"] == "NameError: name 'is_prime' is not defined"


def test_one_solved_exercise_scores_one_point(batch):
    row = batch[1]["one_solved"]
    assert row.lab == LABEL  # from its file name, alice-99_sample.ipynb
    assert (row.score, row.max_score, passed(row)) == (1, 3, ["99.2"])


def test_an_edited_check_is_replaced_by_the_pristine_one(batch):
    row = batch[1]["edited_check"]
    assert row.exercises["99.1"] is False and row.score == 0
    assert "check 99.1 was edited; the original was put back" in row.notes


def test_a_deleted_check_never_counts_as_passed(batch):
    row = batch[1]["deleted_check"]
    assert row.error is None and row.max_score == 3
    assert row.exercises["99.1"] is False
    assert "check 99.1 was missing; the original was put back" in row.notes


def test_deleted_checks_are_put_back_and_run(batch):
    row = batch[1]["deleted_checks_solved"]
    assert (row.score, row.max_score) == (3, 3)
    assert len(row.notes) == 2


def test_a_check_that_prints_something_else_fails(batch):
    row = batch[1]["chatty"]
    assert passed(row) == ["99.2", "99.3"]
    assert row.feedback["99.1"] == "printed something other than its passed line"


def test_a_cell_that_never_ends_costs_only_its_exercise(batch):
    row = batch[1]["looping"]
    assert row.error is None
    assert passed(row) == ["99.2", "99.3"]


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("not_json", "not a notebook: not JSON"),
        ("not_notebook", "not a Jupyter notebook"),
        ("missing", "file not found"),
        ("other_lab", "a notebook of lab '42_other'"),
    ],
)
def test_a_bad_submission_becomes_an_error_row(batch, name, error):
    row = batch[1][name]
    assert row.error.startswith(error)
    assert row.score == 0 and not any(row.exercises.values())


def test_the_batch_goes_on_after_errors(batch):
    book, rows, _ = batch
    assert not book.ok
    assert sum(row.error is None for row in book.rows) == 8


def test_table_csv_json_and_html(batch, tmp_path):
    book, rows, _ = batch
    table = book.table()
    assert table.splitlines()[0].split() == ["submission", "lab", "score", "99.1", "99.2", "99.3", "error"]
    assert "8 of 12 submissions graded" in table
    assert "file not found" in table

    book.to_csv(tmp_path / "grades.csv")
    with open(tmp_path / "grades.csv", newline="") as file:
        lines = list(csv.DictReader(file))
    assert [line["path"] for line in lines] == [str(row.path) for row in book.rows]
    solution_line = lines[list(rows).index("solution")]
    assert (solution_line["score"], solution_line["99.1"], solution_line["error"]) == ("3", "1", "")
    assert lines[list(rows).index("missing")]["99.1"] == ""

    book.to_json(tmp_path / "grades.json")
    data = json.loads((tmp_path / "grades.json").read_text())
    assert [row["exercises"] for row in data["rows"]] == [row.exercises for row in book.rows]
    assert data["rows"][list(rows).index("one_solved")]["score"] == 1

    assert book._repr_html_().startswith("<table>") and "&#x27;42_other&#x27;" in book._repr_html_()


def test_grade_command_with_one_job_agrees_with_two(batch, submissions, sample_labs, tmp_path, capsys):
    names = ["solution", "student"]
    out = tmp_path / "grades.json"
    argv = ["grade", *(submissions[n] for n in names), "--labs", sample_labs, "-j", "1", "--timeout", "5"]
    assert run_cli(*argv, "--out", out) == 0  # low scores are fine: everything was graded
    captured = capsys.readouterr()
    assert "3/3" in captured.out and "0/3" in captured.out and "2 of 2 submissions graded" in captured.out
    assert captured.err.count("\n") == 2 and "[2/2]" in captured.err  # not a tty: one line each

    again = json.loads(out.read_text())["rows"]
    for name, row in zip(names, again):
        expected = batch[1][name]
        assert (row["lab"], row["exercises"], row["error"]) == (expected.lab, expected.exercises, expected.error)


def test_grade_command_exits_2_on_an_error_row(submissions, sample_labs, tmp_path, capsys):
    out = tmp_path / "grades.csv"
    assert run_cli("grade", submissions["not_json"], submissions["missing"], "--labs", sample_labs, "--out", out) == 2
    assert "0 of 2 submissions graded" in capsys.readouterr().out
    assert [line["error"] for line in csv.DictReader(out.open())][1] == "file not found"


def test_grade_command_refuses_an_unknown_gradebook_format(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["grade", "x.ipynb", "--out", "grades.xlsx"])
    assert "must end in .csv or .json" in capsys.readouterr().err


def test_progress_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    show = grading._progress_printer(stream, 4)
    row = grading.SubmissionResult(path=Path("a.ipynb"))
    for done in range(1, 5):
        show(done, 4, row)
    assert stream.getvalue().split("\r")[1:] == [
        "[" + " " * 30 + "] 0/4",
        "[" + "#" * 7 + " " * 23 + "] 1/4",
        "[" + "#" * 15 + " " * 15 + "] 2/4",
        "[" + "#" * 22 + " " * 8 + "] 3/4",
        "[" + "#" * 30 + "] 4/4\n",
    ]


def test_only_built_labs_count_as_labs(tmp_path, sample_labs):
    labs = tmp_path / "labs"
    shutil.copytree(sample_labs, labs)
    shutil.copy(SAMPLE_SOLUTION, labs / "Untitled.ipynb")  # a notebook without tlslab metadata
    submission = read(SAMPLE_SOLUTION)
    submission.metadata["tlslab"] = {"lab": "Untitled"}
    book = grade([write(submission, tmp_path / "x.ipynb")], labs_dir=labs)
    assert book.rows[0].error == "a notebook of lab 'Untitled', which is not one of the labs: 99_sample"


def test_grade_needs_a_labs_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        grade([SAMPLE_SOLUTION], labs_dir=tmp_path / "nowhere")


def test_an_empty_gradebook_is_fine():
    assert Gradebook().ok and "0 of 0" in Gradebook().table()


# ---------------------------------------------------------------------------
# The real labs of the course
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_grades(tmp_path_factory) -> dict[Path, grading.SubmissionResult]:
    """Every real solution, graded against freshly built labs, and every student lab in labs/."""
    if not REAL_SOLUTIONS and not REAL_STUDENT_LABS:
        return {}
    labs = tmp_path_factory.mktemp("real_labs")
    build_labs(REPO / "labs" / "solutions", labs)
    book = grade(REAL_SOLUTIONS, labs_dir=labs, jobs=2, timeout=120)
    rows = dict(zip(REAL_SOLUTIONS, book.rows))
    book = grade(REAL_STUDENT_LABS, labs_dir=REPO / "labs", jobs=2, timeout=120)
    rows.update(zip(REAL_STUDENT_LABS, book.rows))
    return rows


@pytest.mark.parametrize("solution", REAL_SOLUTIONS, ids=lambda path: path.stem)
def test_every_real_solution_scores_full_marks(real_grades, solution):
    row = real_grades[solution]
    assert row.error is None, row.error
    assert row.max_score > 0
    assert row.score == row.max_score, row.feedback


@pytest.mark.parametrize("lab", REAL_STUDENT_LABS, ids=lambda path: path.stem)
def test_every_real_student_lab_fails_every_check(real_grades, lab):
    row = real_grades[lab]
    assert row.error is None, row.error
    assert row.max_score > 0
    assert not any(row.exercises.values()), row.exercises


def test_real_student_labs_are_up_to_date():
    assert build_labs(REPO / "labs" / "solutions", REPO / "labs", check=True) == []
