"""The autograder: run an assignment's weighted tests against a student's file, safely.

How one grading run goes::

    grade("A1", "attention_student.py", seed=7, timeout=10)
      1. load check   a fresh Python process imports the student file; a syntax error or a
                      crash at import time ends here: every test scores 0, with the message.
      2. each test    a fresh Python process imports the student file again and runs ONE test
                      (so a crash, an infinite loop or a corrupted global costs one test only);
                      it is killed after ``timeout`` seconds; it writes its verdict as JSON.
      3. report       a per-test score table (:meth:`GradeReport.table`) and Gradescope's
                      ``results.json`` (:meth:`GradeReport.to_gradescope`).

The student's code never runs in the grader's own process.

An assignment is a module (see :mod:`minireason.course.assignments`) with ``NAME``, ``TITLE``,
``STUDENT_FILE`` (where its stub lives), ``STUDENT_API`` (the functions the student's file
must define; checked at load) and ``TESTS``, a list of :class:`GradedTest`. A test is a
function ``check(student, rng) -> str``: it calls the student's functions, compares against the
package's reference, raises :class:`WrongAnswer` with a message a student can act on, and
returns a one-line summary when everything matches. ``rng`` is a NumPy generator seeded from
the run's seed and the test's position, so hidden-style tests see fresh inputs on every run
and any run can be replayed with ``--seed``.

Verdicts: ``passed`` (full points), ``failed`` (wrong answer), ``not implemented`` (the stub
still raises NotImplementedError), ``error`` (the student's code raised), ``timeout``,
``crashed`` (the test process died without a verdict). Every verdict but ``passed`` scores 0.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")  # Gradescope's
OUTPUT_LIMIT = 2000  # characters of a test's output kept in results.json


class WrongAnswer(AssertionError):
    """Raised by a test when the student's result is wrong; the message says how."""


@dataclass(frozen=True)
class GradedTest:
    """One weighted test.

    Attributes:
        name: short, unique, shown in the table and in results.json.
        points: what the test is worth.
        check: ``check(student_module, rng) -> summary``; raises :class:`WrongAnswer`.
        visibility: Gradescope visibility; hidden-style tests use ``"after_due_date"``.
        description: one line saying what is checked.
    """

    name: str
    points: float
    check: Callable
    visibility: str = "visible"
    description: str = ""

    def __post_init__(self):
        if self.visibility not in VISIBILITIES:
            raise ValueError(f"test {self.name!r}: visibility must be one of {VISIBILITIES}")


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
    """Everything a grading run found; print :meth:`table`, save :meth:`to_gradescope`."""

    assignment: str
    title: str
    student_file: str
    seed: int
    timeout: float
    results: list[TestResult] = field(default_factory=list)
    load_error: str | None = None
    seconds: float = 0.0

    @property
    def score(self) -> float:
        return float(sum(r.points for r in self.results))

    @property
    def max_score(self) -> float:
        return float(sum(r.max_points for r in self.results))

    def summary(self) -> str:
        head = (
            f"{self.assignment} ({self.title}): {self.student_file}, seed {self.seed} "
            f"(replay with --seed {self.seed}), time limit {self.timeout:g} s per test"
        )
        if self.load_error:
            head += f"\nThe file could not be loaded, so every test scores 0:\n{self.load_error}"
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
                lines.append(f"[{r.name}] {r.status}: {r.message}")
        return "\n".join(lines)

    def to_gradescope(self) -> dict:
        """The results.json Gradescope's autograder harness reads."""
        return {
            "score": self.score,
            "max_score": self.max_score,
            "execution_time": round(self.seconds, 2),
            "output": self.summary(),
            "visibility": "visible",
            "stdout_visibility": "hidden",
            "tests": [
                {
                    "name": r.name,
                    "score": r.points,
                    "max_score": r.max_points,
                    "status": "passed" if r.status == "passed" else "failed",
                    "output": f"{r.description}\n{r.status}: {r.message}".strip()[:OUTPUT_LIMIT],
                    "visibility": r.visibility,
                }
                for r in self.results
            ],
        }

    def write_results(self, path) -> Path:
        """Write :meth:`to_gradescope` as JSON to ``path`` (atomically); return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_gradescope(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path


# --------------------------------------------------------------------------- checks for tests


def expect_array(what: str, got, expected, atol: float = 1e-7, rtol: float = 1e-5) -> None:
    """Raise :class:`WrongAnswer` unless ``got`` is an array shaped and valued like ``expected``.

    The message names ``what`` and says what differs: not an array, the shape, NaN/inf, or the
    largest difference and where it is.
    """
    if not isinstance(got, np.ndarray):
        raise WrongAnswer(f"{what}: expected a NumPy array, got {type(got).__name__}")
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
            else type(got).__name__
        )
        raise WrongAnswer(f"{what}: expected a tuple of {length} items, got a {kind}")
    return tuple(got)


# --------------------------------------------------------------------------- the grader's side


def load_assignment(name: str):
    """The assignment module for ``name`` (e.g. ``"A1"``); ValueError lists the known ones."""
    from minireason.course.assignments import ASSIGNMENTS

    key = name.upper()
    if key not in ASSIGNMENTS:
        raise ValueError(f"unknown assignment {name!r}; known: {', '.join(sorted(ASSIGNMENTS))}")
    return importlib.import_module(ASSIGNMENTS[key])


def _run_worker(args: list[str], timeout: float) -> tuple[dict | None, str, float, bool]:
    """Run ``python -m minireason.course.grading ARGS RESULT.json`` in a fresh process.

    Returns ``(verdict or None, captured stdout+stderr, seconds, timed_out)``.
    """
    with tempfile.TemporaryDirectory(prefix="minireason-grade-") as tmp:
        result_path = Path(tmp) / "verdict.json"
        cmd = [sys.executable, "-m", "minireason.course.grading", *args, str(result_path)]
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
            PYTHONDONTWRITEBYTECODE="1",
            MPLBACKEND="Agg",
        )
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # its own process group: a timeout kills its children too
        )
        try:
            captured, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            captured, _ = proc.communicate()
            return None, captured, time.perf_counter() - start, True
        seconds = time.perf_counter() - start
        if not result_path.is_file():
            return None, captured + f"\n(exit code {proc.returncode})", seconds, False
        try:
            verdict = json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return None, captured + f"\n(unreadable verdict: {exc})", seconds, False
        return verdict, captured, seconds, False


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill a worker and every process it started (POSIX), or just the worker (elsewhere)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (AttributeError, ProcessLookupError, PermissionError):
        proc.kill()


def _tail(text: str, n: int = 600) -> str:
    text = text.strip()
    return text if len(text) <= n else "..." + text[-n:]


def grade(
    assignment: str, student_file, seed: int | None = None, timeout: float = 10.0
) -> GradeReport:
    """Grade ``student_file`` on every test of ``assignment``; see the module docstring.

    Args:
        assignment: e.g. ``"A1"``.
        student_file: path to the student's ``.py`` file.
        seed: seeds the hidden-style tests' inputs; None draws one from the clock.
        timeout: seconds each test (and the load check) may run, process start included.

    Raises:
        FileNotFoundError / ValueError for a missing file, a non-.py file, an unknown
        assignment or a non-positive timeout (problems of the command, not of the student).
    """
    module = load_assignment(assignment)
    path = Path(student_file).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"student file not found: {student_file}")
    if path.suffix != ".py":
        raise ValueError(f"student file must be a .py file, got {student_file}")
    if not timeout > 0:
        raise ValueError(f"--timeout must be positive, got {timeout}")
    if seed is None:
        seed = time.time_ns() % 2**32
    report = GradeReport(module.NAME, module.TITLE, path.name, int(seed), float(timeout))
    start = time.perf_counter()

    verdict, captured, _, timed_out = _run_worker(["load", module.NAME, str(path)], timeout)
    if timed_out:
        report.load_error = f"importing the file took longer than {timeout:g} s"
    elif verdict is None:
        report.load_error = f"the import process died without a verdict: {_tail(captured)}"
    elif verdict["status"] != "passed":
        report.load_error = verdict["message"]

    for index, test in enumerate(module.TESTS):
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
            result = _grade_one(module.NAME, path, index, test, report.seed, timeout)
        report.results.append(result)
    report.seconds = time.perf_counter() - start
    return report


def _grade_one(name, path, index, test: GradedTest, seed, timeout) -> TestResult:
    args = ["test", name, str(path), str(index), str(seed)]
    verdict, captured, seconds, timed_out = _run_worker(args, timeout)
    if timed_out:
        status = "timeout"
        message = f"did not finish within {timeout:g} s (an infinite loop?); the test was stopped"
    elif verdict is None:
        status = "crashed"
        message = f"the test process died without a verdict: {_tail(captured)}"
    else:
        status, message = verdict["status"], verdict["message"]
    points = test.points if status == "passed" else 0.0
    return TestResult(
        test.name,
        float(points),
        float(test.points),
        status,
        message,
        test.visibility,
        seconds,
        test.description,
    )


# --------------------------------------------------------------------------- the worker's side
# Everything below runs in the child process, where the student's file is imported.


def _import_student(path: str):
    spec = importlib.util.spec_from_file_location("student_submission", path)
    student = importlib.util.module_from_spec(spec)
    sys.modules["student_submission"] = student
    spec.loader.exec_module(student)
    return student


def _student_frame(exc: BaseException, path: str) -> str:
    """``" (file.py, line N, in func)"`` for the deepest frame in the student's file, or ``""``."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
    if not frames:
        return ""
    f = frames[-1]
    return f" ({Path(path).name}, line {f.lineno}, in {f.name})"


def _describe(exc: BaseException, path: str) -> tuple[str, str]:
    """``(status, message)`` for an exception raised while running the student's code."""
    if isinstance(exc, WrongAnswer):
        return "failed", str(exc)
    where = _student_frame(exc, path)
    if isinstance(exc, NotImplementedError):
        return "not implemented", f"NotImplementedError{where}: {exc}".rstrip(": ")
    if isinstance(exc, SyntaxError):
        return "error", f"SyntaxError in {Path(path).name}, line {exc.lineno}: {exc.msg}"
    return "error", f"{type(exc).__name__}{where}: {exc}"


def _worker(argv: list[str]) -> None:
    """``load NAME PATH OUT`` or ``test NAME PATH INDEX SEED OUT``; writes ``{status, message}``."""
    mode, name, path, out = argv[0], argv[1], argv[2], argv[-1]
    try:
        student = _import_student(path)
        if mode == "load":
            module = load_assignment(name)
            missing = [f for f in module.STUDENT_API if not callable(getattr(student, f, None))]
            if missing:
                raise WrongAnswer(f"the file defines no function {', '.join(missing)}")
            status, message = "passed", "loaded"
        else:
            index, seed = int(argv[3]), int(argv[4])
            test = load_assignment(name).TESTS[index]
            rng = np.random.default_rng([seed, index])
            status, message = "passed", test.check(student, rng)
    except BaseException as exc:  # noqa: BLE001 - a student's SystemExit is a verdict too
        status, message = _describe(exc, path)
        if mode == "load" and status == "error":
            message = f"importing {Path(path).name} raised {message}"
    Path(out).write_text(json.dumps({"status": status, "message": str(message)}), "utf-8")


if __name__ == "__main__":
    if len(sys.argv) not in (5, 7) or sys.argv[1] not in ("load", "test"):
        sys.exit("this module is the grader's worker; run 'minireason grade A1 FILE.py' instead")
    # Run the worker from the imported module, not from __main__: WrongAnswer must be the very
    # class the assignment modules raise.
    from minireason.course.grading import _worker as worker

    worker(sys.argv[1:])
