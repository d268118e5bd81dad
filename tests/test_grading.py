"""The autograder on assignment A1: a reference solution, the stub, planted bugs, hostile files.

Each planted bug is a one-line textual change to ``tests/fixtures/a1_solution.py`` and must
lose exactly the points of the tests meant to catch it, no more, no less.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import seed_file

from minireason.cli import main
from minireason.course.assignments import a1
from minireason.course.grading import grade, hidden_rng, load_assignment

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "tests" / "fixtures" / "a1_solution.py"
STUB = ROOT / a1.STUDENT_FILE
POINTS = {t.name: t.points for t in a1.TESTS}
FORWARD = {"forward_fixed", "forward_causal_fixed", "forward_random_heads", "forward_causal_random"}
BACKWARD = {"backward_fixed", "backward_dq_random", "backward_dk_random", "backward_dv_random"}
SOFTMAX = {"softmax_fixed_rows", "softmax_large_values", "softmax_random_batched"}


def _variant(tmp_path, old: str, new: str, name: str = "student.py") -> Path:
    """The reference solution with ``old`` replaced by ``new`` (which must occur exactly once)."""
    source = SOLUTION.read_text()
    assert source.count(old) == 1, f"{old!r} must occur once in the fixture"
    path = tmp_path / name
    path.write_text(source.replace(old, new))
    return path


def _failed(report) -> set[str]:
    return {r.name for r in report.results if r.status != "passed"}


def test_a1_tests_cover_the_api_and_add_up_to_100():
    assert sum(POINTS.values()) == 100
    assert len(POINTS) == len(a1.TESTS)  # names are unique
    assert SOFTMAX | FORWARD | BACKWARD == set(POINTS)
    visibilities = {t.visibility for t in a1.TESTS}
    assert visibilities == {"visible", "after_due_date"}
    assert load_assignment("a1") is a1


def test_reference_solution_scores_100_on_fresh_inputs():
    report = grade("A1", SOLUTION)  # the practice seed
    assert _failed(report) == set(), report.table()
    assert report.score == report.max_score == 100
    assert "student_submission" not in sys.modules  # the grader never imported it itself


def test_untouched_stub_scores_zero_with_not_implemented(tmp_path):
    results = tmp_path / "out" / "results.json"
    assert (
        main(
            [
                "grade",
                "A1",
                str(STUB),
                "--results",
                str(results),
                "--seed-file",
                seed_file(tmp_path, "1"),
            ]
        )
        == 0
    )
    data = json.loads(results.read_text())
    assert data["score"] == 0 and sum(t["max_score"] for t in data["tests"]) == 100
    assert [t["name"] for t in data["tests"]] == [t.name for t in a1.TESTS]
    for test in data["tests"]:
        assert set(test) >= {"name", "score", "max_score", "output", "visibility"}
        assert test["score"] == 0 and test["status"] == "failed"
        assert "not implemented: NotImplementedError (attention_student.py, line" in test["output"]


def test_one_file_prints_its_table_and_writes_results_only_where_asked(
    tmp_path, monkeypatch, capsys
):
    """An instructor trying one file gets the table; Gradescope's file is written only with
    --results FILE, never into the current directory unasked."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["grade", "A1", str(STUB), "--seed-file", seed_file(tmp_path, "1")]) == 0
    out = capsys.readouterr().out
    assert "softmax_fixed_rows" in out and "results written" not in out
    assert list(work.iterdir()) == []


def test_gradescope_mode_writes_where_gradescope_reads(tmp_path, monkeypatch, capsys):
    submission = tmp_path / "submission"
    submission.mkdir()
    (submission / STUB.name).write_text(STUB.read_text())
    monkeypatch.setenv("AUTOGRADER_ROOT", str(tmp_path / "autograder"))
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            [
                "grade",
                "A1",
                str(submission),
                "--gradescope",
                "--seed-file",
                seed_file(tmp_path, "1"),
            ]
        )
        == 0
    )
    results = tmp_path / "autograder" / "results" / "results.json"
    assert f"results written to {results}" in capsys.readouterr().out
    assert json.loads(results.read_text())["score"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["autograder", "course_seed", "submission"]


@pytest.mark.parametrize(
    "old, new, caught",
    [
        pytest.param(
            "return e / e.sum(axis=-1, keepdims=True)",
            "return e / e.sum(axis=-2, keepdims=True)",
            SOFTMAX,
            id="softmax-wrong-axis",
        ),
        pytest.param(
            "scores = (q @ k.swapaxes(-1, -2)) * scale",
            "scores = q @ k.swapaxes(-1, -2)",
            FORWARD | BACKWARD,  # the weights are wrong, so every gradient is too
            id="missing-scale",
        ),
        pytest.param(
            "dk = (dscores.swapaxes(-1, -2) @ q) * scale",
            "dk = -(dscores.swapaxes(-1, -2) @ q) * scale",
            {"backward_fixed", "backward_dk_random"},
            id="dk-wrong-sign",
        ),
        pytest.param(
            "out = weights @ v",
            "out = (weights @ v).swapaxes(-1, -2)",
            FORWARD,  # backward uses the cached weights, not out
            id="out-wrong-shape",
        ),
    ],
)
def test_planted_bug_loses_exactly_its_tests(tmp_path, old, new, caught):
    report = grade("A1", _variant(tmp_path, old, new), seed=11)
    assert _failed(report) == caught, report.table()
    assert report.score == 100 - sum(POINTS[n] for n in caught)
    assert {r.status for r in report.results if r.name in caught} == {"failed"}


def test_failure_messages_say_what_is_wrong(tmp_path):
    bug = _variant(tmp_path, "out = weights @ v", "out = (weights @ v).swapaxes(-1, -2)")
    by_name = {r.name: r for r in grade("A1", bug, seed=2).results}
    assert "wrong shape, expected (4, 2), got (2, 4)" in by_name["forward_fixed"].message
    sign = _variant(tmp_path, "dk = (dscores", "dk = -(dscores", name="sign.py")
    by_name = {r.name: r for r in grade("A1", sign, seed=2).results}
    assert by_name["backward_fixed"].message.startswith("dk (q 4x3, k 5x3, v 5x2, no mask): wrong")


def test_infinite_loop_costs_one_test_and_the_rest_still_run(tmp_path):
    looping = _variant(  # loops only on inputs with more than two dims: one softmax test
        tmp_path,
        "    shifted = x - x.max(axis=-1, keepdims=True)",
        "    while x.ndim > 2:\n        pass\n    shifted = x - x.max(axis=-1, keepdims=True)",
    )
    report = grade("A1", looping, seed=3, timeout=4)
    assert _failed(report) == {"softmax_random_batched"}, report.table()
    (stuck,) = [r for r in report.results if r.status != "passed"]
    assert stuck.status == "timeout" and "within 4 s" in stuck.message
    assert report.score == 90


def test_exception_and_hard_exit_cost_only_their_tests(tmp_path):
    crashing = _variant(
        tmp_path,
        "    q, k, v, weights, scale = cache\n",
        "    import os\n    os._exit(3)\n",
    )
    report = grade("A1", crashing, seed=4)
    assert _failed(report) == BACKWARD
    assert {r.status for r in report.results if r.name in BACKWARD} == {"crashed"}
    assert "exit code 3" in report.results[-1].message
    raising = _variant(tmp_path, "weights = softmax(scores)", "weights = softmax(scores)[99]")
    report = grade("A1", raising, seed=4)
    assert _failed(report) == FORWARD | BACKWARD
    fixed = {r.name: r for r in report.results}["forward_fixed"]
    assert fixed.status == "error" and fixed.message.startswith("IndexError (student.py, line")


@pytest.mark.parametrize(
    "old, new, expected",
    [
        pytest.param(
            "def softmax(x):", "def softmax(x)", "SyntaxError in student.py, line 7", id="syntax"
        ),
        pytest.param(
            "import numpy as np\n",
            "import numpy as np\n\nraise RuntimeError('no data here')\n",
            "importing student.py raised RuntimeError (student.py, line 6, in <module>): no data",
            id="import-crash",
        ),
    ],
)
def test_unloadable_file_scores_zero_and_still_writes_results(tmp_path, capsys, old, new, expected):
    bad = _variant(tmp_path, old, new)
    results = tmp_path / "results.json"
    assert (
        main(
            [
                "grade",
                "A1",
                str(bad),
                "--results",
                str(results),
                "--seed-file",
                seed_file(tmp_path, "5"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert expected in printed and "total                       0 / 100" in printed
    data = json.loads(results.read_text())
    assert data["score"] == 0 and expected in data["output"]
    assert {t["output"].split("\n")[-1] for t in data["tests"]} == {
        "not run: the file failed to load"
    }


def test_a_missing_function_costs_only_the_tests_that_call_it(tmp_path):
    partial = _variant(
        tmp_path, "def attention_backward(dout, cache):", "def attention_backwards(dout, cache):"
    )
    report = grade("A1", partial, seed=6)
    assert _failed(report) == BACKWARD, report.table()
    assert {r.status for r in report.results if r.name in BACKWARD} == {"missing"}
    assert report.score == 100 - sum(POINTS[n] for n in BACKWARD)
    assert any("defines no function attention_backward" in n for n in report.notes)


def _hidden_x(seed, source: bytes):
    index = [t.name for t in a1.TESTS].index("softmax_random_batched")
    digest = hashlib.sha256(source).hexdigest()
    rng = hidden_rng(str(seed), "A1", a1.TESTS[index].name, digest)
    (only,) = a1.softmax_random_batched(rng).calls
    return only.args[0]


def test_hidden_inputs_follow_the_course_seed_and_the_file():
    source = SOLUTION.read_bytes()
    same = _hidden_x("course", source)
    assert np.array_equal(same, _hidden_x("course", source))
    for other in (_hidden_x("other course", source), _hidden_x("course", source + b"\n")):
        assert other.shape != same.shape or not np.allclose(other, same)


def test_the_same_file_gets_the_same_grade_on_every_run(tmp_path, monkeypatch):
    """A submission whose bug shows on some hidden inputs only: graded twice with the course
    seed (from the environment, as the Gradescope kit sets it), it gets the same score."""
    flaky = _variant(  # wrong only when the last axis is longer than 4
        tmp_path,
        "    return e / e.sum(axis=-1, keepdims=True)",
        "    return e / e.sum(axis=-1, keepdims=True) * (1.0 + (x.shape[-1] > 4))",
    )
    monkeypatch.setenv("MINIREASON_GRADE_SEED", "course secret")
    only = ["softmax_random_batched", "forward_random_heads"]
    scores = {grade("A1", flaky, only=only).score for _ in range(2)}
    assert len(scores) == 1
    report = grade("A1", flaky, only=only)
    assert "the course seed ($MINIREASON_GRADE_SEED)" in report.summary()
    assert "course secret" not in report.table() + json.dumps(report.to_gradescope())


def test_command_errors_are_one_line(tmp_path, capsys):
    assert main(["grade", "A7", str(STUB)]) == 1
    assert "unknown assignment 'A7'; known: A1" in capsys.readouterr().err
    assert main(["grade", "A1", str(tmp_path / "missing.py")]) == 1
    assert "student file not found" in capsys.readouterr().err
    assert main(["grade", "A1", str(STUB), "--timeout", "0"]) == 2
    err = capsys.readouterr().err
    assert "argument --timeout: must be >= 0.001, got 0" in err and err.count("\n") == 1
