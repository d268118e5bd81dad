"""The Gradescope kit, end to end, in Gradescope's layout under a directory of the test's own:
setup.sh installs the kit's wheel, run_autograder grades a correct submission, the stub, a
crashing one and a cheating one, and a failing grader still leaves a truthful results.json."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
from conftest import seed_file

from minireason.cli import main
from minireason.course.assignments import a1

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "tests" / "fixtures" / "a1_solution.py"
STUB = ROOT / a1.STUDENT_FILE
# Gradescope's autograder specification: the keys results.json may have
TOP_KEYS = {
    "score",
    "execution_time",
    "output",
    "output_format",
    "test_output_format",
    "test_name_format",
    "visibility",
    "stdout_visibility",
    "extra_data",
    "tests",
    "leaderboard",
}
TEST_KEYS = {
    "score",
    "max_score",
    "status",
    "name",
    "name_format",
    "number",
    "output",
    "output_format",
    "tags",
    "visibility",
    "extra_data",
}
BACKWARD = {"backward_fixed", "backward_dq_random", "backward_dk_random", "backward_dv_random"}


@pytest.fixture(scope="module")
def autograder():
    """``/autograder`` with the kit unpacked and setup.sh run, under a world-traversable
    temporary directory (so that the kit's own permissions are what keep the sandbox user
    out); the package is installed from the kit's wheel into ``site/``."""
    top = Path(tempfile.mkdtemp(prefix="minireason-gradescope-"))
    os.chmod(top, 0o755)
    root = top / "autograder"
    kit = top / "kit.zip"
    assert (
        main(["grade", "A1", "--gradescope-kit", str(kit), "--seed-file", seed_file(top, "course")])
        == 0
    )
    (root / "source").mkdir(parents=True)
    with zipfile.ZipFile(kit) as z:
        z.extractall(root / "source")
        for info in z.infolist():  # zipfile drops the executable bits
            mode = info.external_attr >> 16
            if mode:
                os.chmod(root / "source" / info.filename, mode & 0o777)
    shutil.copy(root / "source" / "run_autograder", root / "run_autograder")
    site = top / "site"
    env = dict(
        os.environ,
        AUTOGRADER_ROOT=str(root),
        MINIREASON_PYTHON=sys.executable,
        MINIREASON_PIP_ARGS=f"--no-deps --no-index --target {site}",
        PYTHONPATH=str(site),
    )
    env.pop("MINIREASON_GRADE_SEED", None)
    setup = subprocess.run(
        ["bash", str(root / "source" / "setup.sh")],
        cwd=top,
        env=env,
        capture_output=True,
        text=True,
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    yield root, site, env
    shutil.rmtree(top, ignore_errors=True)


def _run(autograder, source: str | None, extra_env=None) -> dict:
    root, _, env = autograder
    submission = root / "submission"
    shutil.rmtree(submission, ignore_errors=True)
    shutil.rmtree(root / "results", ignore_errors=True)
    submission.mkdir()
    if source is not None:
        (submission / "attention_student.py").write_text(source)
    proc = subprocess.run(
        [str(root / "run_autograder")],
        cwd=root,
        env=dict(env, **(extra_env or {})),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((root / "results" / "results.json").read_text())
    assert set(data) <= TOP_KEYS
    for test in data["tests"]:
        assert set(test) <= TEST_KEYS
    return data, proc.stdout


def test_the_kit_holds_what_gradescope_needs(autograder):
    root, site, _ = autograder
    names = sorted(p.name for p in (root / "source").iterdir())
    assert names[:2] == ["course_seed", "minireason-0.2.0-py3-none-any.whl"]
    assert {"setup.sh", "run_autograder"} <= set(names)
    assert (site / "minireason" / "course" / "grading.py").is_file()
    assert (site / "minireason" / "gpu" / "kernels").is_dir()  # package data came along
    # setup.sh closed the package and the kit to other users
    assert not os.stat(site / "minireason").st_mode & 0o077
    assert not os.stat(root / "source" / "course_seed").st_mode & 0o077


def test_a_correct_submission_scores_full_marks_from_the_wheel(autograder):
    data, stdout = _run(autograder, SOLUTION.read_text())
    assert data["score"] == 100 and len(data["tests"]) == len(a1.TESTS)
    assert {t["status"] for t in data["tests"]} == {"passed"}
    assert "the course seed ($MINIREASON_GRADE_SEED)" in data["output"]
    assert "course\n" not in json.dumps(data)  # the seed itself is never shown
    again, _ = _run(autograder, SOLUTION.read_text())
    assert [t["score"] for t in again["tests"]] == [t["score"] for t in data["tests"]]


def test_the_stub_scores_zero(autograder):
    data, _ = _run(autograder, STUB.read_text())
    assert data["score"] == 0
    assert all("not implemented" in t["output"] for t in data["tests"])


def test_a_crashing_submission_loses_only_what_crashes(autograder):
    source = SOLUTION.read_text().replace(
        "    q, k, v, weights, scale = cache\n", "    import os\n    os._exit(3)\n"
    )
    data, _ = _run(autograder, source)
    lost = {t["name"] for t in data["tests"] if t["score"] == 0}
    assert lost == BACKWARD
    assert data["score"] == 60


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: Gradescope runs the kit as root")
def test_a_cheating_submission_cannot_reach_the_package(autograder):
    _, site, _ = autograder
    attention = site / "minireason" / "nn" / "attention.py"
    source = SOLUTION.read_text().replace(
        "    q, k, v, weights, scale = cache\n",
        f"    code = open({str(attention)!r}).read()  # the reference, from the disk\n"
        "    namespace = {}\n    exec(code, namespace)\n"
        "    return namespace['attention_backward'](dout, cache)[:3]\n",
    )
    source = "from minireason.nn.attention import masked_softmax\n" + source
    data, _ = _run(autograder, source)
    assert data["score"] == 0  # the import at the top: the file does not load
    data, _ = _run(autograder, source.split("\n", 1)[1])
    assert data["score"] == 60
    backward = next(t for t in data["tests"] if t["name"] == "backward_fixed")
    # unreadable without a jail, absent in one
    assert "PermissionError" in backward["output"] or "FileNotFoundError" in backward["output"]


def test_no_file_and_a_killed_grader_still_leave_a_truthful_result(autograder, tmp_path):
    data, _ = _run(autograder, None)
    assert data["score"] == 0 and "submit one file named attention_student.py" in data["output"]
    killed = tmp_path / "killed" / "minireason"  # a grader that is killed as it starts
    killed.mkdir(parents=True)
    (killed / "__init__.py").write_text("")
    (killed / "cli.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    data, _ = _run(autograder, SOLUTION.read_text(), {"PYTHONPATH": str(killed.parent)})
    assert set(data) == {"score", "output", "visibility", "stdout_visibility", "tests"}
    assert data["score"] == 0 and data["tests"] == []
    assert data["output"].startswith("The autograder failed (exit status 137)")
