"""The autograder: run an assignment's weighted tests against a student's file, and say what
the grade can be trusted for.

How one grading run goes::

    grade("A1", "attention_student.py", seed="course secret", timeout=10)
    # (the command line reads the seed from --seed-file or $MINIREASON_GRADE_SEED)
      0. read       the grader reads the file (at most 1 MB; a symbolic link is refused) and
                    parses it, without running it:
                    a syntax error ends here (every test scores 0, with the message); imports
                    the sandbox will refuse are noted in the feedback (static_check.py);
      1. load       a sandboxed child imports the file and says which of the assignment's
                    functions it defines; a crash or a time-out at import ends here;
      2. each test  the grader builds the test's inputs and calls (hidden-style inputs from
                    the course seed, below), a fresh sandboxed child imports the file, makes
                    the calls and returns the OUTPUTS; the grader computes the expected values
                    with the package's reference and compares, in its own process;
      3. report     a per-test table (GradeReport.table) and Gradescope's results.json
                    (GradeReport.to_gradescope), written atomically by the grader.

Trust model. A submission is untrusted code. It runs only in children
(:mod:`minireason.course.sandbox`, :mod:`minireason.course.runner`), one per test, each in its
own session and private directory, with limits on memory, CPU time, processes, file size and
open files, and killed with its whole process group after the test.

- What a submission can do: compute anything from the inputs it is given, print (up to 64 kB
  is kept), return any data, raise, crash, loop, or exhaust its limits. Each of those costs
  the test it happens in, nothing else.
- What it cannot do: produce a verdict (the child returns outputs only, as data without
  pickle; the grader compares, and a malformed reply is that test's failure, never the
  grader's); see the expected values, the course seed or the path of the results file (none
  is ever given to the child); reach the references the assignment is about: no reference
  code is ever loaded in its process (what a test provides, e.g. A1's softmax, runs in a
  separate reference process, and only data crosses), and the import guard refuses
  ``minireason`` modules but for stand-ins of the provided names; patch the grader, its
  comparison or NumPy in the grader's process (it never shares one); change the results file
  (the grader writes it after the last child is gone, 0600, through a temporary file created
  exclusively); or make the grader hang or run out of memory (time limits, and bounded reads
  and decoding of everything a child sends).
- As root (Gradescope, CI, a container), student code also runs as a sandbox user of its own
  with no other processes, and where mount namespaces are permitted in a jail: a root holding
  only the interpreter and NumPy, read-only, with the package hidden, and a fresh /tmp,
  /var/tmp, /dev/shm and working directory for every test. Without a jail, the files the
  sandbox user leaves in /tmp, /var/tmp and /dev/shm are deleted after each test, and the
  package is hidden only if its files are unreadable to other users. As another user, student
  code runs as that user, who must then trust it not to read their files (the package among
  them) or signal their processes: grade untrusted work as root, in a container. The report's
  isolation line says which of these holds, as measured when grading starts.
- Copying the package's published reference code into a submission is not something a grader
  can see; the static check notes the tell-tale imports and names.

What the grader guarantees: the same file graded with the same course seed gets the same
inputs and the same score on every run; a missing or broken function costs only the tests
that call it; every test of a file that cannot be loaded scores 0 with the reason; the
results file is complete and the grader's own, or absent (the Gradescope wrapper then writes a
"grader failed" result).

Seeds. Hidden-style inputs come from the course seed (``--seed-file FILE``, a file only its
owner can read, else ``$MINIREASON_GRADE_SEED``, else the practice seed ``"practice"``; never
the command line, which other users can read in /proc), the assignment, the test's name and
the SHA-256 of the file: fixed for a course, so a regrade gives the same grade, and different
for every different file, so that outputs cannot be hard-coded for them. The seed never
reaches the child, and a course seed of 8 characters or more is taken out of everything a
report shows, should the student's code have found it anyway.

An assignment is a module (see :mod:`minireason.course.assignments`) with ``NAME``,
``TITLE``, ``STUDENT_FILE``, ``STUDENT_API`` (the functions a file should define),
optionally ``PROVIDED`` (``{module: names}`` a stub may import, e.g. A2's attention sublayer)
and ``TESTS``, a list of :class:`GradedTest`. A test's ``case(rng)`` returns a :class:`Case`:
the :class:`Call` s the child makes, the provided functions to put in place of the student's
(``replace``) and ``check(outputs) -> summary``, which raises :class:`WrongAnswer` with a
message a student can act on.

Verdicts: ``passed`` (full points), ``failed`` (wrong answer), ``not implemented`` (the stub
still raises NotImplementedError), ``missing`` (the file defines no such function), ``error``
(the student's code raised), ``timeout``, ``crashed`` (the child died without a reply), ``not
run`` (the file did not load). Every verdict but ``passed`` scores 0.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from minireason.course import static_check
from minireason.course.runner import CHILD_STATUSES
from minireason.course.sandbox import ChildRun, GraderError, Limits, Sandbox
from minireason.course.wire import Opaque, Ref, type_name
from minireason.files import Kind, json_object
from minireason.options import check_values, option
from minireason.text import inert

VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")  # Gradescope's
OUTPUT_LIMIT = 2000  # characters of a test's output kept in results.json
# The keys of results.json (Gradescope's autograder specification), which to_gradescope writes.
RESULTS_KEYS = ("score", "execution_time", "output", "visibility", "stdout_visibility", "tests")
RESULTS = Kind(  # what --results may replace: a results file with only those keys
    "a results file of minireason grade",
    lambda p: isinstance(d := json_object(p), dict) and "tests" in d and set(d) <= {*RESULTS_KEYS},
)
FILE_LIMIT = 1024 * 1024  # bytes of a submission the grader reads
ALLOWED_IMPORTS = ("numpy",)
SEED_VARIABLE = "MINIREASON_GRADE_SEED"
PRACTICE_SEED = "practice"
SEED_SHOWN = 8  # a course seed this long or longer is taken out of everything a report shows

__all__ = ["Call", "Case", "GradedTest", "GraderError", "Opaque", "Ref", "WrongAnswer", "grade"]


@dataclass
class GradeConfig:
    """The options of ``minireason grade``: one file (:func:`grade`), a folder of submissions
    (:func:`minireason.course.batch.grade_folder`) or Gradescope's (its module)."""

    description: ClassVar[str] = (  # its --help
        "Run an assignment's weighted tests against a student's file, each test in a sandboxed "
        "process that returns outputs only (the grader compares); a crash, a time-out or a "
        "missing function costs its tests only. PATH is a .py file (a score table; "
        "--results FILE.json for Gradescope's file too), a folder of submissions (--jobs, "
        "--csv, --out), or with --gradescope one Gradescope submission folder (results where "
        "Gradescope reads them). --gradescope-kit writes the autograder zip."
    )

    assignment: str = option(positional=True, metavar="NAME", help="assignment name, e.g. A1")
    path: str | None = option(
        None, positional=True, metavar="PATH", help="a .py file, or a folder of submissions"
    )
    results: str | None = option(
        None,
        metavar="FILE.json",
        help="write one file's results there, in Gradescope's format (default: none, the "
        "table only; with --gradescope, $AUTOGRADER_ROOT/results/results.json)",
    )
    seed_file: str | None = option(
        None,
        metavar="FILE",
        help=f"a file holding the course seed, readable by you only (default: "
        f"${SEED_VARIABLE}, else the practice seed); never on the command line, where other "
        "users can read it",
    )
    timeout: float = option(10.0, min=0.001, metavar="S", help="seconds per test")
    memory: int = option(Limits.memory_mb, min=64, metavar="MB", help="memory per test")
    jobs: int = option(1, min=1, help="submissions graded at once")
    csv: str | None = option(
        None, metavar="FILE.csv", help="a folder's grades, one row per student"
    )
    out: str = option("grades", metavar="DIR", help="a folder's per-student results")
    gradescope: bool = option(False, help="PATH is one Gradescope submission folder")
    gradescope_kit: str | None = option(
        None, metavar="OUT.zip", help="write the Gradescope autograder kit instead of grading"
    )


class WrongAnswer(AssertionError):
    """Raised by a test's check when the student's result is wrong; the message says how."""


class StudentError(Exception):
    """A call of the student's code that did not return: ``status`` and ``message`` say why."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status if status in CHILD_STATUSES else "error"
        self.message = str(message)[:OUTPUT_LIMIT]


@dataclass(frozen=True)
class Call:
    """One call the child makes: ``name = function(*args, **kwargs)``.

    Arguments are data (arrays, numbers, strings, lists, tuples, dicts, sets) or
    :class:`Ref` to an earlier call's result.
    """

    name: str
    function: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


def call(name: str, function: str, *args, **kwargs) -> Call:
    """``call("out", "softmax", x)``: a :class:`Call` written like the call it makes."""
    return Call(name, function, args, kwargs)


@dataclass
class Case:
    """A test, ready to run: what the child does, and how the grader judges what it returns.

    Attributes:
        calls: made in order in one child; a call that raises ends the list.
        check: ``check(outputs) -> summary``: ``outputs[name]`` is a call's result (raising
            :class:`StudentError` if that call, or an earlier one, did not return).
        replace: ``{student attribute: "module:function"}``, package functions put in place
            of the student's before the calls (so a softmax bug costs the softmax tests only).
    """

    calls: list[Call]
    check: Callable
    replace: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GradedTest:
    """One weighted test.

    Attributes:
        name: short, unique, shown in the table and in results.json.
        points: what the test is worth.
        case: ``case(rng) -> Case``; ``rng`` draws the hidden-style inputs.
        visibility: Gradescope visibility; hidden-style tests use ``"after_due_date"``.
        description: one line saying what is checked.
    """

    name: str
    points: float
    case: Callable
    visibility: str = "visible"
    description: str = ""

    def __post_init__(self):
        if self.visibility not in VISIBILITIES:
            raise ValueError(f"test {self.name!r}: visibility must be one of {VISIBILITIES}")


class Outputs:
    """What a child returned, read by a test's check: ``outputs["fwd"]``."""

    def __init__(self, results: dict, error: dict | None):
        self.results = results
        self.error = error

    def __getitem__(self, name: str):
        if name in self.results:
            return self.results[name]
        if self.error:
            raise StudentError(self.error.get("status", "error"), self.error.get("message", ""))
        raise StudentError("error", f"the test process returned no result for {name}")


@dataclass
class TestResult:
    """The verdict on one test."""

    name: str
    points: float
    max_points: float
    status: str
    message: str
    visibility: str
    seconds: float
    description: str = ""


@dataclass
class GradeReport:
    """Everything a grading run found; print :meth:`table`, save :meth:`write_results`."""

    assignment: str
    title: str
    student_file: str
    seed_source: str
    timeout: float
    results: list[TestResult] = field(default_factory=list)
    load_error: str | None = None
    notes: list[str] = field(default_factory=list)
    isolation: str = ""
    seconds: float = 0.0

    @property
    def score(self) -> float:
        return float(sum(r.points for r in self.results))

    @property
    def max_score(self) -> float:
        return float(sum(r.max_points for r in self.results))

    def summary(self) -> str:
        """What the grading was, and why the file did not load; what came from the student
        (the file's name, messages, notes) is shown :func:`~minireason.text.inert`, one line each."""
        head = (
            f"{self.assignment} ({self.title}): {inert(self.student_file)}; hidden-style "
            f"inputs from {self.seed_source} and this file's content; time limit "
            f"{self.timeout:g} s per test"
        )
        if self.load_error:
            head += "\nThe file could not be loaded, so every test scores 0:\n" + inert(
                self.load_error
            )
        if self.notes:
            head += "\nNotes on the file:\n" + "\n".join(f"  {inert(n)}" for n in self.notes)
        return head

    def table(self) -> str:
        """A fixed-width per-test score table, with the total and each failure's message."""
        width = max([len(r.name) for r in self.results] + [4])
        lines = [self.summary(), ""]
        lines.append(f"{'test':<{width}}  {'score':>11}  {'status':<16} {'time':>6}")
        lines.append("-" * (width + 43))
        for r in self.results:
            lines.append(
                f"{r.name:<{width}}  {r.points:>5g} / {r.max_points:<3g}  {r.status:<16}"
                f" {r.seconds:>5.1f}s"
            )
        lines.append("-" * (width + 43))
        pct = 100.0 * self.score / self.max_score if self.max_score else 0.0
        lines.append(f"{'total':<{width}}  {self.score:>5g} / {self.max_score:<3g}  ({pct:.0f}%)")
        failures = [r for r in self.results if r.status != "passed"]
        if failures and not self.load_error:
            lines.append("")
            for r in failures:
                lines.append(f"[{r.name}] {r.status}: {inert(r.message)}")
        if self.isolation:
            lines += ["", f"isolation: {self.isolation}"]
        return "\n".join(lines)

    def to_gradescope(self) -> dict:
        """results.json with only the keys of Gradescope's autograder specification, and
        nothing that varies between runs (no timings): a regrade writes the same bytes."""
        return {
            "score": self.score,
            "output": self.summary(),
            "visibility": "visible",
            "stdout_visibility": "hidden",
            "tests": [
                {
                    "name": r.name,
                    "score": r.points,
                    "max_score": r.max_points,
                    "status": "passed" if r.status == "passed" else "failed",
                    "output": f"{r.description}\n{r.status}: {inert(r.message)}".strip()[
                        :OUTPUT_LIMIT
                    ],
                    "visibility": r.visibility,
                }
                for r in self.results
            ],
        }

    def write_results(self, path) -> Path:
        """Write :meth:`to_gradescope` as JSON to ``path`` (atomically); return the path."""
        return write_json(path, self.to_gradescope())


def write_json(path, data: dict) -> Path:
    """Write ``data`` to ``path`` as JSON, readable by its owner only (:func:`write_private`)."""
    return write_private(path, json.dumps(data, indent=2) + "\n")


def write_private(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically, mode 0600: through a temporary file of a random
    name created exclusively and without following links (``mkstemp``) in the same folder,
    then renamed over ``path``; a missing folder is created 0700."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --------------------------------------------------------------------------- checks for tests


def expect_array(what: str, got, expected, atol: float = 1e-7, rtol: float = 1e-5) -> None:
    """Raise :class:`WrongAnswer` unless ``got`` is an array shaped and valued like ``expected``.

    The message names ``what`` and says what differs: not an array, the shape, NaN/inf, or the
    largest difference and where it is.
    """
    if not isinstance(got, np.ndarray):
        raise WrongAnswer(f"{what}: expected a NumPy array, got {type_name(got)}")
    if got.shape != expected.shape:
        raise WrongAnswer(f"{what}: wrong shape, expected {expected.shape}, got {got.shape}")
    if got.dtype.kind not in "fc":
        raise WrongAnswer(f"{what}: expected a floating-point array, got dtype {got.dtype}")
    if not np.isfinite(got).all():
        raise WrongAnswer(
            f"{what}: contains NaN or inf ({np.size(got) - np.isfinite(got).sum()} entries)"
        )
    if not np.allclose(got, expected, atol=atol, rtol=rtol):
        diff = np.abs(got - expected)
        where = np.unravel_index(int(diff.argmax()), diff.shape)
        raise WrongAnswer(
            f"{what}: wrong values, largest difference {diff.max():.3g} at index "
            f"{tuple(int(i) for i in where)} (got {got[where]:.6g}, expected {expected[where]:.6g})"
        )


def expect_tuple(what: str, got, length: int) -> tuple:
    """Raise :class:`WrongAnswer` unless ``got`` is a tuple/list of ``length`` items; return it."""
    if not isinstance(got, (tuple, list)) or len(got) != length:
        kind = (
            f"{type(got).__name__} of length {len(got)}"
            if isinstance(got, (tuple, list))
            else type_name(got)
        )
        raise WrongAnswer(f"{what}: expected a tuple of {length} items, got a {kind}")
    return tuple(got)


# --------------------------------------------------------------------------- seeds


def course_seed(seed: str | int | None = None) -> tuple[str, str]:
    """``(seed, where it came from)``: ``seed`` (from ``--seed-file``), else
    ``$MINIREASON_GRADE_SEED``, else the practice seed. The second item is what reports print
    (never the seed itself)."""
    if seed is not None and str(seed) != "":
        return str(seed), "the course seed"
    env = os.environ.get(SEED_VARIABLE, "")
    if env:
        return env, f"the course seed (${SEED_VARIABLE})"
    return PRACTICE_SEED, (
        f"the practice seed (set --seed-file or ${SEED_VARIABLE} for a course's)"
    )


def read_seed_file(path) -> str:
    """The course seed in ``path``: a regular file of this user's that no other user can read
    or write (ValueError says what is wrong, without echoing ``path``, which may be a seed
    typed where a file was expected), its first line."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ValueError(
            f"the --seed-file cannot be opened ({exc.strerror}); a seed itself never goes on "
            "the command line: put it in a file only you can read"
        ) from None
    with os.fdopen(fd, encoding="utf-8") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("the --seed-file is not a regular file")
        if st.st_mode & 0o077 or st.st_uid != os.geteuid():
            raise ValueError(
                f"{path} is readable by other users or not yours: run 'chmod 600 {path}'"
            )
        seed = f.readline(4096).strip()
    if not seed:
        raise ValueError(f"{path} holds no seed")
    return seed


def redact(text: str, seed: str) -> str:
    """``text`` with a course seed (of at least SEED_SHOWN characters) replaced."""
    return text.replace(seed, "<the course seed>") if len(seed) >= SEED_SHOWN else text


def hidden_rng(seed: str, assignment: str, test: str, file_digest: str) -> np.random.Generator:
    """The generator of one test's hidden-style inputs: a function of the course seed, the
    assignment, the test's name and the file's SHA-256, and of nothing else."""
    material = "\0".join(["minireason-grade", seed, assignment, test, file_digest]).encode()
    return np.random.default_rng(int.from_bytes(hashlib.sha256(material).digest()[:16], "big"))


# --------------------------------------------------------------------------- the grader's side


def load_assignment(name: str):
    """The assignment module for ``name`` (e.g. ``"A1"``); ValueError lists the known ones."""
    from minireason.course.assignments import ASSIGNMENTS

    key = name.upper()
    if key not in ASSIGNMENTS:
        raise ValueError(f"unknown assignment {name!r}; known: {', '.join(sorted(ASSIGNMENTS))}")
    return importlib.import_module(ASSIGNMENTS[key])


def _tail(text: str, n: int = 600) -> str:
    text = text.strip()
    return text if len(text) <= n else "..." + text[-n:]


def grade(
    assignment: str,
    student_file,
    seed: str | int | None = None,
    timeout: float = GradeConfig.timeout,
    limits: Limits | None = None,
    only=None,
) -> GradeReport:
    """Grade ``student_file`` on every test of ``assignment``; see the module docstring.

    Args:
        assignment: e.g. ``"A1"``.
        student_file: path to the student's ``.py`` file.
        seed: the course seed (any string); None reads ``$MINIREASON_GRADE_SEED``, then the
            practice seed.
        timeout: seconds each test (and the load check) may run, process start included.
        limits: the children's resource limits (default :class:`Limits`).
        only: names of the tests to run (default: all); ValueError names an unknown one.

    Raises:
        FileNotFoundError / ValueError for a missing file, a non-.py file, an unknown
        assignment or a timeout under a millisecond (problems of the command, not of the student);
        GraderError if the sandbox itself fails.
    """
    module = load_assignment(assignment)
    path = Path(student_file)
    if path.is_symlink():
        raise ValueError(
            f"{student_file} is a symbolic link: the grader reads only the file itself"
        )
    if not path.is_file():
        raise FileNotFoundError(f"student file not found: {student_file}")
    if path.suffix != ".py":
        raise ValueError(f"student file must be a .py file, got {student_file}")
    check_values(GradeConfig, timeout=timeout)
    tests = list(module.TESTS)
    if only is not None:
        unknown = sorted(set(only) - {t.name for t in tests})
        if unknown:
            raise ValueError(f"{module.NAME} has no test {', '.join(unknown)}")
        tests = [t for t in tests if t.name in set(only)]
    seed_value, seed_source = course_seed(seed)
    report = GradeReport(module.NAME, module.TITLE, path.name, seed_source, float(timeout))
    start = time.perf_counter()
    source = read_submission(path)
    digest = hashlib.sha256(source).hexdigest()
    provided = getattr(module, "PROVIDED", {})
    report.load_error = _read_problem(source, path.name, provided, report)
    with Sandbox(timeout, limits) as box:
        report.isolation = box.isolation
        base = {
            "api": list(module.STUDENT_API),
            "allowed_imports": list(ALLOWED_IMPORTS),
            "provided": {f"{m}:{n}": f"{m}:{n}" for m, names in provided.items() for n in names},
            "provide": {m: {n: f"{m}:{n}" for n in names} for m, names in provided.items()},
        }
        if not report.load_error:
            report.load_error, defined, unset = _load(box, base, path.name, source, timeout)
            if unset:
                report.isolation += f"; not enforced on this system: {', '.join(unset)}"
            missing = [f for f in module.STUDENT_API if f not in defined]
            if missing and not report.load_error:
                report.notes.append(
                    f"the file defines no function {', '.join(missing)}: the tests that call "
                    "it score 0, the others run"
                )
        for test in tests:
            if report.load_error:
                result = TestResult(
                    test.name,
                    0.0,
                    float(test.points),
                    "not run",
                    "the file failed to load",
                    test.visibility,
                    0.0,
                    test.description,
                )
            else:
                rng = hidden_rng(seed_value, module.NAME, test.name, digest)
                result = _grade_one(box, base, path.name, source, test, rng)
            report.results.append(result)
    report.seconds = time.perf_counter() - start
    _redact_report(report, seed_value)
    return report


def read_submission(path: Path) -> bytes:
    """At most FILE_LIMIT + 1 bytes of ``path``, which must be a regular file reached without
    following a link at its last step (ValueError otherwise)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise ValueError(f"{path.name} cannot be read as a regular file ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError(f"{path.name} is not a regular file")
        return f.read(FILE_LIMIT + 1)


def _redact_report(report: GradeReport, seed: str) -> None:
    """Take the course seed out of everything the student's code could have put in it."""
    if report.seed_source.startswith("the practice seed"):
        return
    report.load_error = report.load_error and redact(report.load_error, seed)
    report.notes = [redact(n, seed) for n in report.notes]
    for r in report.results:
        r.message = redact(r.message, seed)


def _read_problem(source: bytes, filename: str, provided: dict, report: GradeReport):
    """Why the file cannot even be parsed (None if it can); adds the static check's notes."""
    if len(source) > FILE_LIMIT:
        return f"{filename} is larger than {FILE_LIMIT >> 20} MB"
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        return f"SyntaxError in {filename}, line {exc.lineno}: {exc.msg}"
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"{filename} could not be parsed: {type(exc).__name__}: {exc}"
    report.notes += static_check.source_notes(tree, provided, ALLOWED_IMPORTS)
    return None


def _load(box: Sandbox, base: dict, filename: str, source: bytes, timeout: float):
    """``(load error or None, defined functions, limits the system did not set)`` from a child
    that only imports the file."""
    request = {k: v for k, v in base.items() if k != "provided"}
    run = box.run(dict(request, calls=[]), filename, source, base["provided"])
    if run.timed_out:
        return f"importing the file took longer than {timeout:g} s", [], []
    if run.reply is None:
        problem = f"the import process died without a reply: {run.problem} {_tail(run.output)}"
        return problem, [], []
    unset = run.reply.get("limits_failed")
    unset = [str(u) for u in unset] if isinstance(unset, list) else []
    if not run.reply.get("loaded"):
        error = run.reply.get("error") or {}
        message = str(error.get("message", ""))[:OUTPUT_LIMIT]
        return f"importing {filename} raised {message}", [], unset
    defined = run.reply.get("defined")
    defined = [f for f in defined if isinstance(f, str)] if isinstance(defined, list) else []
    return None, defined, unset


def _grade_one(box: Sandbox, base: dict, filename, source, test: GradedTest, rng) -> TestResult:
    case = test.case(rng)
    request = dict(
        {k: v for k, v in base.items() if k != "provided"},
        replace=dict(case.replace),
        calls=[
            {"name": c.name, "function": c.function, "args": list(c.args), "kwargs": c.kwargs}
            for c in case.calls
        ],
    )
    provided = dict(base["provided"], **{v: v for v in case.replace.values()})
    run = box.run(request, filename, source, provided)
    status, message = _judge(case, run, box.timeout)
    points = test.points if status == "passed" else 0.0
    if run.output_bytes > len(run.output.encode("utf-8", errors="replace")) + 16:
        message += f" (it printed {run.output_bytes:,} bytes; the first 64 kB were kept)"
    return TestResult(
        test.name,
        float(points),
        float(test.points),
        status,
        message,
        test.visibility,
        run.seconds,
        test.description,
    )


def _judge(case: Case, run: ChildRun, timeout: float) -> tuple[str, str]:
    """``(status, message)``: the grader's verdict on what one child returned."""
    if run.timed_out:
        return "timeout", f"did not finish within {timeout:g} s (an infinite loop?); stopped"
    if run.reply is None:
        return "crashed", f"{run.problem}; its output: {_tail(run.output) or '(none)'}"
    reply = run.reply
    if not reply.get("loaded"):
        error = reply.get("error") or {}
        return "error", f"importing the file raised {str(error.get('message', ''))[:OUTPUT_LIMIT]}"
    results = reply.get("results")
    error = reply.get("error")
    outputs = Outputs(
        results if isinstance(results, dict) else {}, error if isinstance(error, dict) else None
    )
    try:
        return "passed", str(case.check(outputs))
    except WrongAnswer as exc:
        return "failed", str(exc)[:OUTPUT_LIMIT]
    except StudentError as exc:
        return exc.status, exc.message
    except Exception as exc:  # noqa: BLE001 - an output the check did not foresee
        return "failed", f"the result could not be checked ({type(exc).__name__}: {exc})"[
            :OUTPUT_LIMIT
        ]
