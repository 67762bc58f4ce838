"""Build the student labs from their solutions, and grade submitted labs with nbval.

A lab has one source of truth, ``labs/solutions/NN_name.ipynb``. It holds three kinds of
cell:

* **exercise cells**: code cells tagged ``exercise``. The solution sits between a line
  ``### BEGIN SOLUTION`` and a line ``### END SOLUTION`` (nbgrader's markers; any number of
  ``#`` works, the block may be indented inside a function, and a cell may hold several);
* **check cells**: code cells tagged ``check`` whose cell id names the exercise, such as
  ``check-2-1`` for exercise 2.1. A check verifies behaviour and prints one fixed line,
  ``Exercise 2.1: passed``, or raises ``AssertionError`` with a hint;
* everything else (markdown, setup code), which the student gets as it is.

Cell ids may only hold letters, digits, ``-`` and ``_`` (the nbformat 4.5 schema), so the
dot of "2.1" is written ``-`` (or ``_``) in an id: ``check-2-1`` and ``exercise-2-1`` both
mean exercise 2.1.

Which exercise is an exercise cell? Its own id if that is ``exercise-N-M``, otherwise the
first check cell after it. So a task can be split over several exercise cells that share
one check. Every exercise label must have a check cell, and the build refuses anything
else (a dangling exercise, an unterminated block, solution markers outside an exercise
cell, which would hand the solution out).

``build_labs`` writes the student version ``labs/NN_name.ipynb``: each solution block
becomes ``raise NotImplementedError("Exercise N.M")`` and exercise and check cells lose
their outputs (the lesson cells keep theirs, so the lab reads well before it runs).

``grade`` scores one point per exercise whose check passed. For each submission it:

1. reads it (a missing file, not JSON, not a notebook: an error row, and the batch goes on);
2. tells its lab from the metadata ``tlslab.lab`` that the build wrote, else from its file
   name (``alice-02_authentication.ipynb`` is lab 02_authentication);
3. puts back the pristine check cells of ``labs/<lab>.ipynb``, matched by cell id: an
   edited check is replaced, a deleted one goes back where it was (before the next lab
   cell still present), so a student cannot pass by editing or deleting a check;
4. tells nbval that each check must print exactly ``Exercise N.M: passed`` (tag
   ``nbval-check-output``, that line as its stored output), so printing anything else fails;
5. runs the copy in an empty temporary folder with
   ``python -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=T --junitxml=...``
   and reads the JUnit report: nbval names its items "Cell N", N counting code cells from
   0, and the grader knows which code cell each check is. An exercise counts as passed only
   if its check's item is in the report and passed.

What grading contains, and what it does not
-------------------------------------------
A submission is untrusted code, and grading *runs* it, with your user rights. The grader
gives each submission a fresh temporary folder (the kernel's working directory, deleted
afterwards), stops a cell after ``timeout`` seconds and the whole run after an overall
limit. That is all. It is **not a sandbox**: the code can read and write any file you
can, use the network, start processes that outlive the grading, and, because it shares
the kernel with the checks, fool a check that trusts it (an object equal to anything, a
patched module). Grade work you do not trust inside a throwaway container or virtual
machine, or as a user that owns nothing.
"""

from __future__ import annotations

import argparse
import copy
import csv
import html
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import nbformat
from nbformat import NotebookNode

__all__ = [
    "LabFormatError",
    "SubmissionError",
    "exercise_label",
    "passed_line",
    "check_labels",
    "strip_solutions",
    "build_student_notebook",
    "build_labs",
    "restore_checks",
    "SubmissionResult",
    "Gradebook",
    "grade",
    "add_commands",
]

SOLUTIONS_DIR = Path("labs/solutions")
LABS_DIR = Path("labs")

EXERCISE_TAG = "exercise"
CHECK_TAG = "check"
# With --nbval-lax, nbval compares the outputs of the cells carrying this tag only.
NBVAL_CHECK_OUTPUT = "nbval-check-output"
# Tags that would make nbval skip a check, or accept it raising: never on a graded check.
_NBVAL_TAGS = {
    "nbval-check-output",
    "nbval-ignore-output",
    "nbval-skip",
    "nbval-raises-exception",
    "raises-exception",
}

_BEGIN = re.compile(r"^(?P<indent>[ \t]*)#+[ \t]*BEGIN SOLUTION[ \t]*$")
_END = re.compile(r"^[ \t]*#+[ \t]*END SOLUTION[ \t]*$")
_LABELLED_ID = re.compile(r"^(?P<kind>exercise|check)-(?P<label>[0-9A-Za-z]+(?:[-_.][0-9A-Za-z]+)*)$")
_VALID_ID = re.compile(r"^[a-zA-Z0-9-_]{1,64}$")


class LabFormatError(ValueError):
    """A lab notebook breaks the lab format (see the module docstring)."""


class SubmissionError(Exception):
    """A submission that cannot be graded; its message goes into the error column."""


# ---------------------------------------------------------------------------
# The lab format
# ---------------------------------------------------------------------------


def _tags(cell: NotebookNode) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return [tag for tag in tags if isinstance(tag, str)] if isinstance(tags, list) else []


def _is_exercise(cell: NotebookNode) -> bool:
    return cell.get("cell_type") == "code" and EXERCISE_TAG in _tags(cell)


def _is_check(cell: NotebookNode) -> bool:
    return cell.get("cell_type") == "code" and CHECK_TAG in _tags(cell)


def exercise_label(cell_id: str | None, kind: str = "check") -> str | None:
    """The exercise number a cell id names: ``"check-2-1"`` -> ``"2.1"``.

    ``kind`` is ``"check"`` or ``"exercise"``. Returns None when the id does not follow
    the ``<kind>-N-M`` pattern. ``-``, ``_`` and ``.`` all separate the parts, so
    ``check-2_1`` and ``check-2.1`` give "2.1" too (but a dot is not allowed in a cell id).
    """
    match = _LABELLED_ID.match(cell_id or "")
    if match is None or match["kind"] != kind:
        return None
    return re.sub(r"[-_]", ".", match["label"])


def passed_line(label: str) -> str:
    """The one line a check cell prints when its exercise is solved."""
    return f"Exercise {label}: passed"


def check_labels(nb: NotebookNode) -> list[str]:
    """The exercise labels of a lab's check cells, in notebook order.

    Raises LabFormatError for a check cell whose id is not ``check-N-M``, or a label
    used twice.
    """
    labels: list[str] = []
    for cell in nb.cells:
        if not _is_check(cell):
            continue
        label = exercise_label(cell.get("id"))
        if label is None:
            raise LabFormatError(
                f"check cell {cell.get('id')!r}: its id must be 'check-N-M' "
                "(e.g. 'check-2-1' for exercise 2.1)"
            )
        if label in labels:
            raise LabFormatError(f"two check cells for exercise {label}")
        labels.append(label)
    return labels


def _exercise_labels(nb: NotebookNode) -> dict[int, str]:
    """Map the index of each exercise cell to its exercise label (rule: module docstring)."""
    checks = check_labels(nb)
    labels: dict[int, str] = {}
    for index, cell in enumerate(nb.cells):
        if not _is_exercise(cell):
            continue
        if _is_check(cell):
            raise LabFormatError(f"cell {cell.get('id')!r} is tagged both exercise and check")
        label = exercise_label(cell.get("id"), kind="exercise")
        if label is None:
            following = (exercise_label(c.get("id")) for c in nb.cells[index + 1 :] if _is_check(c))
            label = next(following, None)
        if label is None:
            raise LabFormatError(
                f"exercise cell {cell.get('id')!r} has no check cell after it "
                "and no 'exercise-N-M' id"
            )
        if label not in checks:
            raise LabFormatError(f"exercise cell {cell.get('id')!r}: no check cell for exercise {label}")
        labels[index] = label
    return labels


def strip_solutions(source: str, label: str) -> str:
    """Replace each solution block of ``source`` by a stub raising NotImplementedError.

    The stub sits at the indentation of the BEGIN marker, so a block inside a function
    body leaves a valid function. Raises LabFormatError for unbalanced markers.
    """
    lines: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        text = line.rstrip("\r\n")
        begin = _BEGIN.match(text)
        if begin:
            if inside:
                raise LabFormatError(f"exercise {label}, line {number}: BEGIN SOLUTION inside a solution block")
            inside = True
            lines.append(f'{begin["indent"]}raise NotImplementedError("Exercise {label}")\n')
        elif _END.match(text):
            if not inside:
                raise LabFormatError(f"exercise {label}, line {number}: END SOLUTION without BEGIN SOLUTION")
            inside = False
        elif not inside:
            lines.append(line)
    if inside:
        raise LabFormatError(f"exercise {label}: BEGIN SOLUTION without END SOLUTION")
    stripped = "".join(lines)
    # Keep the cell's own ending: Jupyter stores sources without a final newline.
    if not source.endswith("\n") and stripped.endswith("\n"):
        stripped = stripped[:-1]
    return stripped


def _has_solution_marker(source: str) -> bool:
    return any(_BEGIN.match(line) or _END.match(line) for line in source.splitlines())


def _clear_outputs(cell: NotebookNode) -> None:
    cell.outputs = []
    cell.execution_count = None


def _validate(nb: NotebookNode, what: str) -> None:
    """Raise LabFormatError if ``nb`` is not valid nbformat, with a hint for bad ids."""
    for cell in nb.cells:
        cell_id = cell.get("id")
        if cell_id is not None and not _VALID_ID.match(cell_id):
            raise LabFormatError(
                f"{what}: cell id {cell_id!r} is not a valid nbformat id (letters, digits, "
                "'-' and '_' only, at most 64): write exercise 2.1 as 'check-2-1'"
            )
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as error:
        raise LabFormatError(f"{what}: not a valid notebook: {error.message}") from None


# ---------------------------------------------------------------------------
# Building the student labs
# ---------------------------------------------------------------------------


def build_student_notebook(nb: NotebookNode, *, lab: str | None = None) -> NotebookNode:
    """The student version of a solution notebook (the input is left untouched).

    Solution blocks become stubs, exercise and check cells lose their outputs and
    execution counts, every other cell is kept as it is. ``lab`` (e.g. "02_authentication")
    goes into the notebook metadata as ``tlslab.lab`` so the grader can tell labs apart.
    Raises LabFormatError if the notebook breaks the lab format.
    """
    student = copy.deepcopy(nb)
    exercises = _exercise_labels(student)
    for index, cell in enumerate(student.cells):
        if index in exercises:
            if not _has_solution_marker(cell.source):
                # Most likely forgotten markers: the cell would hand out its solution.
                raise LabFormatError(f"exercise cell {cell.get('id')!r} has no BEGIN SOLUTION block")
            cell.source = strip_solutions(cell.source, exercises[index])
            _clear_outputs(cell)
            continue
        if _has_solution_marker(cell.source):
            raise LabFormatError(
                f"cell {cell.get('id')!r} has solution markers but is not tagged "
                f"{EXERCISE_TAG!r}: its solution would be handed out"
            )
        if _is_check(cell):
            _clear_outputs(cell)
    if lab is not None:
        tlslab_metadata = student.metadata.get("tlslab")
        student.metadata["tlslab"] = dict(tlslab_metadata or {}, lab=lab)
    _validate(student, f"student version of lab {lab or '?'}")
    return student


def _render(nb: NotebookNode) -> str:
    """The file text of a notebook: nbformat's layout (indent 1, sorted keys), newline at end."""
    return nbformat.writes(nb, version=4) + "\n"


def _read_notebook(path: Path) -> NotebookNode:
    # Our own checks report bad notebooks; don't let nbformat log them as well.
    return nbformat.reads(path.read_text(encoding="utf-8"), as_version=4, capture_validation_error={})


def _plan_labs(solutions_dir: Path, labs_dir: Path) -> dict[Path, str | None]:
    """The text every student lab should have; None for a student lab with no solution."""
    solutions_dir, labs_dir = Path(solutions_dir), Path(labs_dir)
    if not solutions_dir.is_dir():
        raise FileNotFoundError(f"no solutions folder: {solutions_dir}")
    plan: dict[Path, str | None] = {}
    for source in sorted(solutions_dir.glob("*.ipynb")):
        try:
            student = build_student_notebook(_read_notebook(source), lab=source.stem)
        except ValueError as error:  # LabFormatError, not JSON, not UTF-8
            raise LabFormatError(f"{source}: {error}") from None
        plan[labs_dir / source.name] = _render(student)
    for extra in sorted(labs_dir.glob("*.ipynb")):
        plan.setdefault(extra, None)
    return plan


def _is_current(path: Path, text: str | None) -> bool:
    return text is not None and path.is_file() and path.read_bytes() == text.encode("utf-8")


def build_labs(solutions_dir: Path, labs_dir: Path, *, check: bool = False) -> list[Path]:
    """Write ``labs_dir/NN_name.ipynb`` for every ``solutions_dir/NN_name.ipynb``.

    Every solution is built before anything is written, so a broken lab (LabFormatError)
    leaves the folder as it was. Files already up to date are not rewritten. Returns the
    student notebooks, in name order.

    With ``check=True`` nothing is written; the result is the student notebooks that are
    out of date, missing, or extra (no solution for them). An empty list means up to date.
    Extra notebooks are only reported, never deleted.
    """
    plan = _plan_labs(solutions_dir, labs_dir)
    if check:
        return [path for path, text in plan.items() if not _is_current(path, text)]
    Path(labs_dir).mkdir(parents=True, exist_ok=True)
    written = []
    for path, text in plan.items():
        if text is None:
            continue
        if not _is_current(path, text):
            path.write_bytes(text.encode("utf-8"))
        written.append(path)
    return written


# ---------------------------------------------------------------------------
# Preparing a submission for grading
# ---------------------------------------------------------------------------


def _graded_check(check: NotebookNode) -> NotebookNode:
    """A pristine check cell as nbval must see it: its output compared to the passed line."""
    cell = copy.deepcopy(check)
    cell.metadata["tags"] = [tag for tag in _tags(cell) if tag not in _NBVAL_TAGS] + [NBVAL_CHECK_OUTPUT]
    text = passed_line(exercise_label(cell.id)) + "\n"
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    # nbval skips the comparison for a cell that was never run (execution_count None).
    cell.execution_count = 1
    return cell


def restore_checks(submission: NotebookNode, lab: NotebookNode) -> tuple[NotebookNode, list[str]]:
    """Put the pristine check cells of ``lab`` into a copy of ``submission``.

    A check is matched by cell id and replaced in place (edited or not). A check missing
    from the submission goes back before the first cell that follows it in the lab and
    is still in the submission, or at the end. Extra cells tagged ``check`` are dropped.
    All outputs are cleared; the checks expect their passed line (see ``_graded_check``).

    Returns the notebook to grade and notes for the instructor on what was restored.
    """
    checks = {cell.id: cell for cell in lab.cells if _is_check(cell)}
    notes: list[str] = []
    cells: list[NotebookNode] = []
    seen: set[str] = set()
    for original in submission.cells:
        cell_id = original.get("id")
        if cell_id in checks:
            if cell_id not in seen:
                cells.append(_graded_check(checks[cell_id]))
                if original.get("source") != checks[cell_id].source:
                    notes.append(f"check {exercise_label(cell_id)} was edited; the original was put back")
            seen.add(cell_id)
            continue
        if _is_check(original):
            notes.append(f"dropped a check cell that is not in the lab: {cell_id!r}")
            continue
        cell = copy.deepcopy(original)
        if cell.get("cell_type") == "code":
            _clear_outputs(cell)
        # Old notebooks (nbformat 4.4) have no ids; pasted JSON may repeat one.
        if not cell_id or cell_id in seen:
            cell.id = uuid.uuid4().hex[:8]
        seen.add(cell.id)
        cells.append(cell)

    lab_ids = [cell.get("id") for cell in lab.cells]
    for check_id, check in checks.items():
        if any(cell.get("id") == check_id for cell in cells):
            continue
        positions = {cell.get("id"): index for index, cell in enumerate(cells)}
        later = lab_ids[lab_ids.index(check_id) + 1 :]
        position = next((positions[i] for i in later if i in positions), len(cells))
        cells.insert(position, _graded_check(check))
        notes.append(f"check {exercise_label(check_id)} was missing; the original was put back")

    graded = nbformat.v4.new_notebook()  # nbformat 4.5: cell ids allowed
    graded.metadata = copy.deepcopy(submission.metadata)
    graded.cells = cells
    return graded, notes


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass
class SubmissionResult:
    """The grade of one submitted notebook: one row of the gradebook."""

    path: Path
    lab: str | None = None
    #: exercise label -> passed, in lab order; every exercise of the lab is listed.
    exercises: dict[str, bool] = field(default_factory=dict)
    #: why the submission could not be (fully) graded; None when it was.
    error: str | None = None
    #: exercise label -> why its check failed (the last line of the error, usually).
    feedback: dict[str, str] = field(default_factory=dict)
    #: what the grader changed, such as checks it put back.
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def score(self) -> int:
        return sum(self.exercises.values())

    @property
    def max_score(self) -> int:
        return len(self.exercises)

    @property
    def summary(self) -> str:
        """``"2/3"``, or the error."""
        return f"error: {self.error}" if self.error else f"{self.score}/{self.max_score}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "lab": self.lab,
            "score": self.score,
            "max_score": self.max_score,
            "exercises": dict(self.exercises),
            "error": self.error,
            "feedback": dict(self.feedback),
            "notes": list(self.notes),
            "seconds": round(self.seconds, 2),
        }


@dataclass
class Gradebook:
    """The results of one ``grade`` run, one row per submission, in the order given."""

    rows: list[SubmissionResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every submission was graded (whatever its score)."""
        return all(row.error is None for row in self.rows)

    def exercise_labels(self) -> list[str]:
        """Every exercise label of every row, in order of first appearance."""
        return list(dict.fromkeys(label for row in self.rows for label in row.exercises))

    def to_json(self, path: Path) -> None:
        data = {"rows": [row.to_dict() for row in self.rows]}
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    def to_csv(self, path: Path) -> None:
        """One line per submission; exercise columns hold 1 (passed), 0, or nothing."""
        labels = self.exercise_labels()
        with open(path, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(["path", "lab", "score", "max_score", *labels, "error", "feedback", "notes"])
            for row in self.rows:
                marks = [int(row.exercises[label]) if label in row.exercises else "" for label in labels]
                feedback = "; ".join(f"{label}: {text}" for label, text in row.feedback.items())
                notes = "; ".join(row.notes)
                writer.writerow(
                    [row.path, row.lab or "", row.score, row.max_score, *marks, row.error or "", feedback, notes]
                )

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows of the table shown on the terminal and in Jupyter."""
        labels = self.exercise_labels()
        header = ["submission", "lab", "score", *labels, "error"]
        lines = []
        for row in self.rows:
            marks = [("pass" if row.exercises[label] else "FAIL") if label in row.exercises else "" for label in labels]
            score = f"{row.score}/{row.max_score}" if row.exercises else "-"
            lines.append([str(row.path), row.lab or "-", score, *marks, row.error or ""])
        return header, lines

    def table(self) -> str:
        """A plain-text table, one line per submission."""
        header, lines = self._cells()
        widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
        text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [header, *lines]]
        graded = sum(row.error is None for row in self.rows)
        text.append(f"{graded} of {len(self.rows)} submissions graded")
        return "\n".join(text)

    def _repr_html_(self) -> str:
        header, lines = self._cells()
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in line) + "</tr>" for line in lines
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __repr__(self) -> str:
        return self.table()


# ---------------------------------------------------------------------------
# Grading
# ---------------------------------------------------------------------------

ProgressCallback = Callable[[int, int, SubmissionResult], None]


def _read_submission(path: Path) -> NotebookNode:
    """Read a submitted notebook, or raise SubmissionError saying why it can't be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SubmissionError("file not found") from None
    except UnicodeDecodeError:
        raise SubmissionError("not a notebook: not UTF-8 text") from None
    except OSError as error:
        raise SubmissionError(f"cannot read the file: {error.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SubmissionError(f"not a notebook: not JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list) or data.get("nbformat") != 4:
        raise SubmissionError("not a Jupyter notebook (nbformat 4)")
    try:
        return nbformat.reads(text, as_version=4, capture_validation_error={})
    except Exception as error:  # nbformat raises many kinds on malformed input
        raise SubmissionError(f"not a valid notebook: {error}") from None


def _identify_lab(nb: NotebookNode, path: Path, labs: Iterable[str]) -> str:
    """The lab a submission belongs to: its metadata ``tlslab.lab``, else its file name."""
    labs = list(labs)
    metadata = nb.metadata.get("tlslab")
    named = metadata.get("lab") if isinstance(metadata, dict) else None
    if named is not None:
        if named in labs:
            return named
        raise SubmissionError(f"a notebook of lab {named!r}, which is not one of the labs: {', '.join(labs) or 'none'}")
    if path.stem in labs:
        return path.stem
    # A renamed copy such as "alice-02_authentication.ipynb" still names its lab.
    matches = [lab for lab in labs if lab in path.stem]
    if len(matches) == 1:
        return matches[0]
    raise SubmissionError(
        "cannot tell which lab this is: no tlslab.lab in its metadata, and its file name names no lab"
    )


_ANSI = re.compile(r"(?:\x1b|#x1B)\[[0-9;]*[A-Za-z]")


def _why_failed(text: str) -> str:
    """A one-line reason from nbval's failure report of a cell."""
    text = _ANSI.sub("", text)
    reason = re.search(r"Cell \d+: (.+)", text)
    if reason and reason[1].strip() == "Cell outputs differ":
        return "printed something other than its passed line"
    if reason and reason[1].strip() != "Cell execution caused an exception":
        return reason[1].strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "failed"


def _read_junit(report: Path) -> dict[int, tuple[bool, str]]:
    """Map nbval's code-cell number ("Cell N") to (passed, why it failed)."""
    outcomes: dict[int, tuple[bool, str]] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        match = re.fullmatch(r"Cell (\d+)", case.get("name", ""))
        if match is None:
            continue
        passed, why = True, ""
        for child in case:
            message = child.get("message", "")
            if child.tag == "error" and message.startswith("failed on teardown"):
                continue  # the cell itself ran; only stopping the kernel went wrong
            if child.tag == "error":
                raise SubmissionError(f"nbval could not run the notebook: {_ANSI.sub('', message)[:300]}")
            if child.tag in ("failure", "skipped"):
                passed, why = False, _why_failed(child.text or message)
        outcomes[int(match[1])] = (passed, why)
    return outcomes


def _kill(process: subprocess.Popen) -> None:
    """Stop pytest and whatever it started in its process group."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except ProcessLookupError:
        pass


def _run_nbval(nb: NotebookNode, *, timeout: int) -> tuple[dict[str, bool], dict[str, str]]:
    """Run a prepared notebook under pytest + nbval; return passed and feedback per exercise."""
    # nbval names its items "Cell N", N counting code cells only: find the checks' numbers.
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    checks = {n: exercise_label(cell.id) for n, cell in enumerate(code_cells) if NBVAL_CHECK_OUTPUT in _tags(cell)}
    # Last resort only: nbval stops a slow cell itself after `timeout` seconds.
    overall = 120 + timeout * (len(code_cells) + 1)

    with tempfile.TemporaryDirectory(prefix="tlslab-grade-", ignore_cleanup_errors=True) as folder:
        root = Path(folder)
        # An ini file of our own: no options, conftest or rootdir from wherever we run.
        (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        (root / "work").mkdir()
        notebook = root / "work" / "submission.ipynb"
        notebook.write_text(_render(nb), encoding="utf-8")
        report = root / "report.xml"
        command = [
            sys.executable, "-m", "pytest",
            "-c", str(root / "pytest.ini"), "--rootdir", str(root),
            "-p", "nbval.plugin", "-p", "no:cacheprovider",
            "--nbval-lax", "--nbval-current-env", f"--nbval-cell-timeout={timeout}",
            "-q", f"--junitxml={report}", str(notebook),
        ]
        env = dict(os.environ)
        env.pop("PYTEST_ADDOPTS", None)
        # Load nbval only: a plugin that reorders tests (pytest-randomly) would break a notebook.
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        process = subprocess.Popen(
            command, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=overall)
        except subprocess.TimeoutExpired:
            _kill(process)
            process.communicate()
            raise SubmissionError(f"grading took longer than {overall} s and was stopped") from None
        if process.returncode < 0:
            raise SubmissionError(f"pytest was killed by signal {-process.returncode}")
        if process.returncode not in (0, 1) or not report.is_file():
            tail = " | ".join(output.strip().splitlines()[-3:])
            raise SubmissionError(f"pytest failed to run the notebook (exit {process.returncode}): {tail}")
        outcomes = _read_junit(report)

    passed = {label: outcomes.get(n, (False, ""))[0] for n, label in checks.items()}
    feedback = {label: outcomes[n][1] or "failed" for n, label in checks.items() if not passed[label] and n in outcomes}
    feedback.update({label: "check did not run" for n, label in checks.items() if n not in outcomes})
    return passed, feedback


def _grade_one(path: Path, labs: dict[str, NotebookNode | Exception], timeout: int) -> SubmissionResult:
    """Grade one submission. Never raises: any problem becomes the row's error."""
    started = time.monotonic()
    result = SubmissionResult(path=path)
    try:
        submission = _read_submission(path)
        result.lab = _identify_lab(submission, path, labs)
        lab = labs[result.lab]
        if isinstance(lab, Exception):
            raise SubmissionError(f"lab {result.lab} is broken: {lab}")
        # Every exercise counts as failed until its check is seen passing.
        result.exercises = dict.fromkeys(check_labels(lab), False)
        graded, result.notes = restore_checks(submission, lab)
        try:
            nbformat.validate(graded)
        except nbformat.ValidationError as error:
            raise SubmissionError(f"not a valid notebook: {error.message}") from None
        passed, result.feedback = _run_nbval(graded, timeout=timeout)
        result.exercises.update(passed)
    except SubmissionError as error:
        result.error = str(error)
    except Exception as error:  # one bad submission must not stop the batch
        result.error = f"internal error: {type(error).__name__}: {error}"
    result.seconds = time.monotonic() - started
    return result


def _load_labs(labs_dir: Path) -> dict[str, NotebookNode | Exception]:
    """The student labs by name; a lab that can't be read is kept as its error.

    A lab is a notebook that ``build_labs`` wrote: its metadata names it. Other notebooks
    lying in the folder (a learner's "Untitled.ipynb" or "00_warmup-Copy1.ipynb") are not.
    """
    labs: dict[str, NotebookNode | Exception] = {}
    for path in sorted(Path(labs_dir).glob("*.ipynb")):
        try:
            lab = _read_notebook(path)
        except Exception as error:
            labs[path.stem] = LabFormatError(f"{path}: cannot read it: {error}")
            continue
        metadata = lab.metadata.get("tlslab")
        if not isinstance(metadata, dict) or metadata.get("lab") != path.stem:
            continue
        try:
            check_labels(lab)
            labs[path.stem] = lab
        except LabFormatError as error:
            labs[path.stem] = LabFormatError(f"{path}: {error}")
    return labs


def grade(
    submissions: Iterable[Path],
    *,
    labs_dir: Path = LABS_DIR,
    jobs: int = 1,
    timeout: int = 60,
    progress: ProgressCallback | None = None,
) -> Gradebook:
    """Grade submitted lab notebooks against the pristine labs in ``labs_dir``.

    Each submission runs in its own temporary folder under pytest + nbval, ``jobs`` at a
    time, each cell stopped after ``timeout`` seconds. Read the module docstring on what
    this contains and what it does not: submissions run as you.

    ``progress(done, total, result)`` is called, in this thread, as each submission
    finishes. A submission that can't be graded becomes a row with an ``error``; the
    batch goes on. Raises FileNotFoundError if ``labs_dir`` does not exist.
    """
    paths = [Path(path) for path in submissions]
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    if not Path(labs_dir).is_dir():
        raise FileNotFoundError(f"no labs folder: {labs_dir}")
    labs = _load_labs(labs_dir)
    rows: list[SubmissionResult | None] = [None] * len(paths)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(_grade_one, path, labs, timeout): index for index, path in enumerate(paths)}
        for done, future in enumerate(as_completed(futures), start=1):
            index = futures[future]
            rows[index] = future.result()
            if progress is not None:
                progress(done, len(paths), rows[index])
    return Gradebook([row for row in rows if row is not None])


# ---------------------------------------------------------------------------
# Command line: tlslab build-labs, tlslab grade
# ---------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _gradebook_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() not in (".csv", ".json"):
        raise argparse.ArgumentTypeError(f"{text}: the gradebook must end in .csv or .json")
    return path


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``build-labs`` and ``grade`` subcommands; each sets ``func(args) -> exit code``."""
    build = subparsers.add_parser(
        "build-labs",
        help="write the student labs from labs/solutions",
        description="Write labs/NN_name.ipynb from labs/solutions/NN_name.ipynb: solutions "
        "replaced by stubs, exercise and check outputs cleared.",
    )
    build.add_argument("--solutions", type=Path, default=SOLUTIONS_DIR, metavar="DIR", help="default: %(default)s")
    build.add_argument("--labs", type=Path, default=LABS_DIR, metavar="DIR", help="default: %(default)s")
    build.add_argument("--check", action="store_true", help="write nothing; exit 1 if a student lab is out of date")
    build.set_defaults(func=_build_labs_command)

    grade_parser = subparsers.add_parser(
        "grade",
        help="grade submitted lab notebooks with nbval",
        description="Grade lab notebooks: put the pristine checks back, run under nbval, "
        "score one point per passed check. Submissions run with your rights: no sandbox.",
    )
    grade_parser.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION", help="a lab notebook to grade")
    grade_parser.add_argument("--labs", type=Path, default=LABS_DIR, metavar="DIR", help="default: %(default)s")
    grade_parser.add_argument("--out", type=_gradebook_path, metavar="FILE", help="write the gradebook (.csv or .json)")
    grade_parser.add_argument(
        "-j", "--jobs", type=_positive_int, default=1, metavar="N", help="parallel workers (default: 1)"
    )
    grade_parser.add_argument(
        "--timeout", type=_positive_int, default=60, metavar="S", help="seconds a cell may run (default: 60)"
    )
    grade_parser.set_defaults(func=_grade_command)


def _build_labs_command(args: argparse.Namespace) -> int:
    try:
        stale = build_labs(args.solutions, args.labs, check=True)
        if args.check:
            for path in stale:
                state = "missing" if not path.exists() else "out of date"
                if not (Path(args.solutions) / path.name).exists():
                    state = "extra (no solution)"
                print(f"{state}: {path}")
            if stale:
                print("run `tlslab build-labs` to rebuild the student labs")
                return 1
            print(f"student labs in {args.labs} are up to date")
            return 0
        written = build_labs(args.solutions, args.labs)
    except (FileNotFoundError, LabFormatError) as error:
        print(f"tlslab build-labs: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"{'wrote' if path in stale else 'up to date'}: {path}")
    for path in sorted(set(stale) - set(written)):
        print(f"extra (no solution, left alone): {path}")
    return 0


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = width * done // max(total, 1)
    return f"\r[{'#' * filled}{' ' * (width - filled)}] {done}/{total}"


def _progress_printer(stream: TextIO, total: int) -> ProgressCallback:
    """A bar redrawn in place on a terminal; one line per submission otherwise (logs, CI)."""
    interactive = stream.isatty()
    if interactive:
        stream.write(_bar(0, total))
        stream.flush()

    def show(done: int, total: int, result: SubmissionResult) -> None:
        if interactive:
            stream.write(_bar(done, total) + ("\n" if done == total else ""))
        else:
            stream.write(f"[{done}/{total}] {result.path}: {result.summary}\n")
        stream.flush()

    return show


def _grade_command(args: argparse.Namespace) -> int:
    show = _progress_printer(sys.stderr, len(args.submissions))
    try:
        book = grade(args.submissions, labs_dir=args.labs, jobs=args.jobs, timeout=args.timeout, progress=show)
    except FileNotFoundError as error:
        print(f"tlslab grade: {error}", file=sys.stderr)
        return 2
    print(book.table())
    if args.out is not None:
        if args.out.suffix.lower() == ".json":
            book.to_json(args.out)
        else:
            book.to_csv(args.out)
        print(f"wrote {args.out}")
    return 0 if book.ok else 2
