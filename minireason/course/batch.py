"""Batch grading: every submission in a folder, in parallel, with a CSV of the grades.

::

    summary = grade_folder("A1", "submissions/", out="grades/", csv="grades.csv", jobs=4)
    print(summary.text())

A folder of submissions holds one ``.py`` file per student (the student is the file's stem)
or one folder per student (the student is the folder's name; the file inside is the one named
like the stub, else its only ``.py`` file: :func:`find_submission_file`). Each submission is
graded by :func:`minireason.course.grading.grade`, in a sandbox of its own (as root: its own
sandbox user, so submissions graded at the same time cannot read each other's copies), and
gets ``OUT/<student>/results.json`` (Gradescope's format) and ``OUT/<student>/report.txt``
(the table). The CSV has one row per student: score, maximum, status, then one column per
test. Everything is written atomically.

As root, the grader refuses a folder that other users can read: the sandbox users are "other
users", and could read the other submissions there (``chmod -R o-rwx FOLDER`` fixes it). As
another user, student code runs as that user and can read every file that user can:
:class:`BatchSummary` says so.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from minireason.course.grading import (
    GradeConfig,
    GradeReport,
    grade,
    load_assignment,
    write_private,
)
from minireason.files import Kind, csv_kind
from minireason.options import check_values
from minireason.text import inert

SKIPPED = ("__MACOSX", "__pycache__")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet reads as a formula


@dataclass
class StudentGrade:
    """One row of the CSV."""

    student: str
    file: str
    score: float
    max_score: float
    status: str
    tests: dict[str, float] = field(default_factory=dict)


@dataclass
class BatchSummary:
    """What a batch run did; :meth:`text` is what the CLI prints."""

    assignment: str
    rows: list[StudentGrade]
    seconds: float
    jobs: int
    isolation: str
    csv_path: Path | None = None
    out: Path | None = None

    def text(self) -> str:
        graded = [r for r in self.rows if r.status == "graded"]
        scores = [r.score for r in graded]
        lines = [
            f"{self.assignment}: {len(self.rows)} submissions in {self.seconds:.0f} s "
            f"with {self.jobs} job{'s' if self.jobs != 1 else ''}"
        ]
        if scores:
            top = max(r.max_score for r in graded)
            lines.append(
                f"graded {len(scores)}: mean {statistics.mean(scores):.1f}, median "
                f"{statistics.median(scores):g}, min {min(scores):g}, max {max(scores):g} "
                f"(of {top:g}); {sum(s == top for s in scores)} full marks, "
                f"{sum(s == 0 for s in scores)} zero"
            )
        for r in self.rows:
            if r.status != "graded":
                lines.append(inert(f"  {r.student}: {r.status}"))
        if self.csv_path:
            lines.append(f"grades: {self.csv_path}")
        if self.out:
            lines.append(f"per-student results and reports: {self.out}/<student>/")
        lines.append(f"isolation: {self.isolation}")
        return "\n".join(lines)


def find_submission_file(folder, assignment_module) -> Path:
    """The student's file in a submission folder, at any depth (GitHub uploads arrive inside a
    folder or two): the one named like the stub, else the only ``.py`` file. Hidden folders,
    ``__MACOSX`` and ``__pycache__`` are skipped, and symbolic links never followed: a file
    that is one is refused. FileNotFoundError says what is there instead."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        raise FileNotFoundError(f"submission folder not found: {folder}")
    name = Path(assignment_module.STUDENT_FILE).name
    found, links = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIPPED)
        for f in sorted(filenames):
            path = Path(dirpath) / f
            if f.endswith(".py") and not f.startswith("."):
                (links if path.is_symlink() else found).append(path)
    named = [p for p in found if p.name == name]
    if len(named) == 1 or (not named and len(found) == 1):
        return (named or found)[0]
    if links:
        raise FileNotFoundError(
            f"{links[0].relative_to(folder)} is a symbolic link: the grader reads only regular "
            f"files; submit the file {name} itself"
        )
    listed = ", ".join(str(p.relative_to(folder)) for p in found[:5]) or "none"
    raise FileNotFoundError(
        f"{len(named) or 'no'} {name} in the submission, and {len(found)} .py files in all "
        f"({listed}): submit one file named {name}"
    )


def submissions(folder) -> list[tuple[str, Path]]:
    """``(student, path)`` for each submission in ``folder``: its ``.py`` files and folders."""
    folder = Path(folder)
    items = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.name in SKIPPED:
            continue
        if p.is_dir() or p.suffix == ".py":  # a link too: grading it says why it is refused
            items.append((p.stem if p.is_file() else p.name, p))
    return items


def readable_by_others(folder) -> bool:
    """Whether a user who is neither the owner nor in the group can read any submission."""
    folder = Path(folder).resolve()
    for part in [*reversed(folder.parents), folder]:
        if not os.stat(part).st_mode & stat.S_IXOTH:
            return False
    for dirpath, dirnames, filenames in os.walk(folder):
        d = Path(dirpath)
        if not os.stat(d).st_mode & stat.S_IXOTH:
            dirnames[:] = []
            continue
        if os.stat(d).st_mode & stat.S_IROTH and (dirnames or filenames):
            return True
        if any(os.stat(d / f).st_mode & stat.S_IROTH for f in filenames):
            return True
    return False


def grade_folder(
    assignment: str,
    folder,
    out=None,
    csv_path=None,
    jobs: int = GradeConfig.jobs,
    seed=None,
    timeout: float = GradeConfig.timeout,
    limits=None,
) -> BatchSummary:
    """Grade every submission in ``folder``; see the module docstring.

    Raises:
        FileNotFoundError: no such folder, or no submission in it.
        ValueError: as root, a folder other users can read; ``jobs`` below 1.
    """
    module = load_assignment(assignment)
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"submissions folder not found: {folder}")
    check_values(GradeConfig, jobs=jobs)
    if getattr(os, "geteuid", lambda: -1)() == 0 and readable_by_others(folder):
        raise ValueError(
            f"{folder}: other users can read these submissions, so student code (which runs "
            f"as a sandbox user) could read the others: run 'chmod -R o-rwx {folder}' first"
        )
    items = submissions(folder)
    if not items:
        raise FileNotFoundError(f"no submissions in {folder} (expected .py files or folders)")
    out = Path(out) if out is not None else None
    if out is not None:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        out.chmod(0o700)  # the reports are for the instructor only
    start = time.perf_counter()
    isolation = [""]

    def one(item) -> StudentGrade:
        student, path = item
        try:
            file = path if path.suffix == ".py" else find_submission_file(path, module)
        except FileNotFoundError as exc:
            return StudentGrade(student, "", 0.0, _max(module), f"no file: {exc}")
        try:
            report = grade(module.NAME, file, seed=seed, timeout=timeout, limits=limits)
        except ValueError as exc:  # a link or not a regular file: the submission's problem
            return StudentGrade(student, file.name, 0.0, _max(module), f"not gradable: {exc}")
        except Exception as exc:  # noqa: BLE001 - one submission never stops the batch
            return StudentGrade(student, file.name, 0.0, _max(module), f"grader error: {exc}")
        isolation[0] = re.sub(
            r"runs as sandbox user \d+",
            "runs as a sandbox user of its own (one per submission graded at a time)",
            report.isolation,
        )
        if out is not None:
            _write_student(out / student, report)
        status = "graded" if not report.load_error else f"not loadable: {report.load_error}"
        tests = {r.name: r.points for r in report.results}
        return StudentGrade(
            student, file.name, report.score, report.max_score, status.split("\n")[0], tests
        )

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        rows = list(pool.map(one, items))
    summary = BatchSummary(
        module.NAME, rows, time.perf_counter() - start, jobs, isolation[0], out=out
    )
    if csv_path is not None:
        summary.csv_path = write_csv(csv_path, rows, [t.name for t in module.TESTS])
    return summary


def _max(module) -> float:
    return float(sum(t.points for t in module.TESTS))


def _write_student(folder: Path, report: GradeReport) -> None:
    """``results.json`` and ``report.txt`` in ``folder`` (0700), each 0600."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    report.write_results(folder / "results.json")
    write_private(folder / "report.txt", report.table() + "\n")


def cell(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: control characters escaped, and a leading
    ``'`` where the text would start a formula."""
    text = inert(text)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


GRADES_COLUMNS = ("student", "file", "score", "max_score", "status")  # then one per test
GRADES_CSV = csv_kind(
    GRADES_COLUMNS, "a grades table of minireason grade"
)  # what --csv may replace
STUDENT_FILES = ("results.json", "report.txt")  # what --out holds per student
GRADES_DIR = Kind(  # what --out may write into: folders of those files only
    "a folder of grades of minireason grade",
    lambda d: all(
        s.is_dir() and {p.name for p in s.iterdir()} <= {*STUDENT_FILES} for s in d.iterdir()
    ),
    directory=True,
)


def write_csv(path, rows: list[StudentGrade], test_names: list[str]) -> Path:
    """The grades as CSV (atomically, 0600): student, file, score, max_score, status, tests...;
    each text a :func:`cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*GRADES_COLUMNS, *test_names])
    for r in rows:
        writer.writerow(
            [cell(r.student), cell(r.file), f"{r.score:g}", f"{r.max_score:g}", cell(r.status)]
            + [f"{r.tests[n]:g}" if n in r.tests else "" for n in test_names]
        )
    return write_private(path, buffer.getvalue())
