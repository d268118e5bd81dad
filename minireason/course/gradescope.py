"""The Gradescope autograder kit, and grading one submission the way Gradescope runs it.

``minireason grade A1 --gradescope-kit a1_autograder.zip`` writes a zip to upload as the
assignment's autograder. Its root holds::

    setup.sh          Gradescope runs it once, as root, when it builds the image: installs
                      Python if missing and the wheel below, then makes the package's files
                      and the kit unreadable to other users (the sandbox users among them)
    run_autograder    Gradescope runs it for every submission, as root: grades
                      /autograder/submission with the course seed and writes
                      /autograder/results/results.json; if the grader fails or is killed,
                      it writes a truthful "the autograder failed" result instead
    minireason-VERSION-py3-none-any.whl   this package, built from the installed files
    course_seed       the course seed (keep the zip private: it is the course's secret)

Both scripts take their paths from ``$AUTOGRADER_ROOT`` (default ``/autograder``), the
interpreter from ``$MINIREASON_PYTHON`` (default ``python3``) and extra ``pip install``
arguments from ``$MINIREASON_PIP_ARGS``, which is how the tests run the kit end to end in a
directory of their own (Gradescope's layout:
https://gradescope-autograders.readthedocs.io/en/latest/specs/).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import os
import secrets
import zipfile
from pathlib import Path

import minireason
from minireason.course.batch import find_submission_file
from minireason.course.grading import (
    GradeConfig,
    GradeReport,
    TestResult,
    course_seed,
    grade,
    load_assignment,
)
from minireason.files import Kind

SEED_ENTRY = "course_seed"  # the kit's entry that holds the course seed


def _is_kit(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return SEED_ENTRY in z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


KIT = Kind("a Gradescope kit of minireason", _is_kit)  # what --gradescope-kit may replace

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PYTHON="${MINIREASON_PYTHON:-python3}"
cd "$ROOT"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    apt-get update && apt-get install -y --no-install-recommends python3 python3-pip
fi
# PIP_BREAK_SYSTEM_PACKAGES: newer Ubuntu images mark the system Python as externally managed
PIP_BREAK_SYSTEM_PACKAGES=1 "$PYTHON" -m pip install ${MINIREASON_PIP_ARGS:-} "$ROOT"/source/{wheel}
# Student code runs as a sandbox user: it must not read the package (another interpreter could
# import the reference implementations from it) nor the kit (the course seed).
PACKAGE="$("$PYTHON" -c 'import os, minireason; print(os.path.dirname(minireason.__file__))')"
chmod -R go-rwx "$PACKAGE" "$ROOT/source"
"$PYTHON" -m minireason.cli --version
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this for every submission, as root, with the working directory /autograder.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PYTHON="${MINIREASON_PYTHON:-python3}"
RESULTS="$ROOT/results/results.json"
cd "$ROOT"
mkdir -p "$ROOT/results"
MINIREASON_GRADE_SEED="$(cat "$ROOT/source/course_seed")"
export MINIREASON_GRADE_SEED
"$PYTHON" -m minireason.cli grade {assignment} "$ROOT/submission" --gradescope --results "$RESULTS"
status=$?
if [ "$status" -ne 0 ]; then
    # The grader failed or was killed: replace whatever is there with a truthful result.
    "$PYTHON" - "$RESULTS" "$status" <<'EOF'
import json, os, sys
path, status = sys.argv[1], sys.argv[2]
text = ("The autograder failed (exit status " + status + ") before it could grade this "
        "submission. This is not your grade: please tell the course staff.")
tmp = path + ".fallback"
with open(tmp, "w") as f:
    json.dump({"score": 0.0, "output": text, "visibility": "visible",
               "stdout_visibility": "hidden", "tests": []}, f)
os.replace(tmp, path)
EOF
fi
exit 0
"""


def build_wheel() -> tuple[str, bytes]:
    """``(file name, bytes)`` of a wheel of the installed package (its files as installed,
    with the distribution's metadata and entry points)."""
    dist = importlib.metadata.distribution("minireason")
    version = dist.version
    package = Path(minireason.__file__).resolve().parent
    info = f"minireason-{version}.dist-info"
    files: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in sorted(os.walk(package, followlinks=True)):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix not in (".pyc", ".pyo"):
                files["minireason/" + path.relative_to(package).as_posix()] = path.read_bytes()
    metadata = (
        dist.read_text("METADATA")
        or f"Metadata-Version: 2.1\nName: minireason\nVersion: {version}\n"
    )
    files[f"{info}/METADATA"] = metadata.encode("utf-8")
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: minireason\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    entry_points = dist.read_text("entry_points.txt")
    if entry_points:
        files[f"{info}/entry_points.txt"] = entry_points.encode("utf-8")
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return f"minireason-{version}-py3-none-any.whl", buffer.getvalue()


def build_kit(assignment: str, out, seed: str | None = None) -> tuple[Path, str]:
    """Write the kit zip (atomically); return ``(path, where the course seed came from)``.

    The course seed is ``seed``, else ``$MINIREASON_GRADE_SEED``, else a new random one.
    """
    module = load_assignment(assignment)
    value, source = course_seed(seed)
    if source.startswith("the practice seed"):
        value, source = secrets.token_hex(16), "a new random course seed"
    wheel_name, wheel = build_wheel()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in (
            ("setup.sh", SETUP.replace("{wheel}", wheel_name)),
            ("run_autograder", RUN.replace("{assignment}", module.NAME)),
        ):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o100755 << 16  # executable, as Gradescope expects
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, text)
        z.writestr(wheel_name, wheel)
        z.writestr(SEED_ENTRY, value + "\n")
    os.replace(tmp, out)
    return out, source


def report_without_file(assignment: str, problem: str, timeout: float) -> GradeReport:
    """A report for a submission with no gradable file: every test 0, with the reason."""
    module = load_assignment(assignment)
    report = GradeReport(module.NAME, module.TITLE, "(no file)", "-", timeout)
    report.load_error = problem
    report.results = [
        TestResult(t.name, 0.0, float(t.points), "not run", "no file", t.visibility, 0.0)
        for t in module.TESTS
    ]
    return report


def results_path() -> Path:
    """Where Gradescope reads a submission's results, and ``grade --gradescope`` writes them
    unless ``--results`` says otherwise: ``$AUTOGRADER_ROOT/results/results.json``, the root
    ``/autograder`` by default (as in ``run_autograder``)."""
    return Path(os.environ.get("AUTOGRADER_ROOT") or "/autograder") / "results" / "results.json"


def grade_submission(assignment: str, folder, seed=None, timeout=GradeConfig.timeout, limits=None):
    """Grade Gradescope's submission folder: the file named like the stub, else its only
    ``.py`` file, at any depth (:func:`~minireason.course.batch.find_submission_file`); a
    folder without one, or whose file is a symbolic link, gets a report in which every test
    scores 0, saying why (and never what the link points to)."""
    try:
        file = find_submission_file(folder, load_assignment(assignment))
        return grade(assignment, file, seed, timeout, limits)
    except (FileNotFoundError, ValueError) as exc:
        return report_without_file(assignment, str(exc), timeout)
