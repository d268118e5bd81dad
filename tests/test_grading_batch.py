"""Batch grading: a folder of mixed submissions gives the right CSV, per-student results and
a summary, in parallel; as root a submission cannot read another's."""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import seed_file

from minireason.cli import main
from minireason.course.assignments import a1
from minireason.course.batch import grade_folder

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "tests" / "fixtures" / "a1_solution.py"
STUB = ROOT / a1.STUDENT_FILE
POINTS = {t.name: t.points for t in a1.TESTS}
BACKWARD = {"backward_fixed", "backward_dq_random", "backward_dk_random", "backward_dv_random"}


def _mixed(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    source = SOLUTION.read_text()
    (folder / "alice.py").write_text(source)
    (folder / "bob.py").write_text(STUB.read_text())
    carol = folder / "carol"  # a folder submission, file named like the stub
    carol.mkdir()
    (carol / "attention_student.py").write_text(
        source.replace(
            "def attention_backward(dout, cache):", "def attention_backwards(dout, cache):"
        )
    )
    (folder / "dave.py").write_text("def softmax(x)\n")  # a syntax error
    (folder / "erin").mkdir()  # a folder with nothing to grade


def test_a_folder_of_mixed_submissions_gives_the_right_csv(tmp_path, capsys):
    folder = tmp_path / "subs"
    _mixed(folder)
    grades, out = tmp_path / "grades.csv", tmp_path / "grades"
    argv = ["grade", "A1", str(folder), "--jobs", "3", "--csv", str(grades), "--out", str(out)]
    assert main([*argv, "--seed-file", seed_file(tmp_path, "course")]) == 0
    printed = capsys.readouterr().out
    assert "A1: 5 submissions" in printed and "with 3 jobs" in printed
    rows = {r["student"]: r for r in csv.DictReader(grades.open())}
    assert set(rows) == {"alice", "bob", "carol", "dave", "erin"}
    assert (rows["alice"]["score"], rows["alice"]["status"]) == ("100", "graded")
    assert (rows["bob"]["score"], rows["bob"]["status"]) == ("0", "graded")
    assert rows["carol"]["score"] == str(100 - sum(POINTS[n] for n in BACKWARD))
    assert {n for n in BACKWARD if rows["carol"][n] == "0"} == BACKWARD
    assert rows["dave"]["status"].startswith("not loadable: SyntaxError in dave.py, line 1")
    assert rows["erin"]["status"].startswith("no file: no attention_student.py")
    assert all(rows[s]["max_score"] == "100" for s in rows)
    alice = json.loads((out / "alice" / "results.json").read_text())
    assert alice["score"] == 100 and "total" in (out / "alice" / "report.txt").read_text()
    # graded again, one job at a time: the same grades
    again = grade_folder("A1", folder, csv_path=tmp_path / "again.csv", seed="course")
    assert [(r.student, r.score) for r in again.rows] == [
        (s, float(rows[s]["score"])) for s in sorted(rows)
    ]


@pytest.mark.skipif(
    os.geteuid() != 0,
    reason="needs root: only then does each submission run as a sandbox user of its own",
)
def test_a_submission_cannot_read_another(tmp_path):
    """Mallory's softmax is right only if it can read someone else's file: the originals,
    or the copies the grader makes while the others are graded at the same time."""
    folder = tmp_path / "subs"
    folder.mkdir()
    (folder / "alice.py").write_text(SOLUTION.read_text())
    thief = (
        "def softmax(x):\n"
        "    import glob\n"
        f"    paths = [{str(folder / 'alice.py')!r}] + glob.glob('/tmp/minireason-test-*/*.py')\n"
        "    for path in paths:\n"
        "        try:\n"
        "            source = open(path).read()\n"
        "        except OSError:\n"
        "            continue\n"
        "        if 'def softmax' in source and 'glob' not in source:\n"
        "            namespace = {}\n"
        "            exec(source, namespace)\n"
        "            return namespace['softmax'](x)\n"
        "    raise PermissionError('could not read any other submission')\n"
    )
    honest = SOLUTION.read_text()
    own = honest[honest.index("def softmax(x):") : honest.index("def attention_forward")]
    (folder / "mallory.py").write_text(honest.replace(own, thief + "\n\n"))
    summary = grade_folder("A1", folder, jobs=2, seed="course")
    mallory = {r.student: r for r in summary.rows}["mallory"]
    softmax = {"softmax_fixed_rows", "softmax_large_values", "softmax_random_batched"}
    assert mallory.status == "graded", mallory
    assert {n for n, points in mallory.tests.items() if points == 0} == softmax
    assert mallory.score == 100 - sum(POINTS[n] for n in softmax)
    shared = Path(tempfile.mkdtemp(prefix="minireason-readable-"))
    try:  # a folder other users could read is refused
        os.chmod(shared, 0o755)
        shutil.copy(folder / "alice.py", shared / "alice.py")
        os.chmod(shared / "alice.py", 0o644)
        with pytest.raises(ValueError, match="other users can read these submissions"):
            grade_folder("A1", shared)
    finally:
        shutil.rmtree(shared)
