"""The autograder on assignment A4: reference solution, stub, planted bugs.

As for A1-A3, each planted bug is a one-line textual change to the reference solution in
``tests/fixtures/a4_solution.py`` and must lose exactly the points of the tests meant to catch it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import seed_file

from minireason.cli import main
from minireason.course.assignments import a4
from minireason.course.grading import grade, load_assignment
from minireason.evaluation import metrics

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
POINTS = {t.name: t.points for t in a4.TESTS}


def _variant(tmp_path, old: str, new: str) -> Path:
    """The reference solution with ``old`` replaced by ``new`` (which must occur exactly once)."""
    source = (FIXTURES / "a4_solution.py").read_text()
    assert source.count(old) == 1, f"{old!r} must occur once in the fixture"
    path = tmp_path / "student.py"
    path.write_text(source.replace(old, new))
    return path


def _failed(report) -> set[str]:
    return {r.name for r in report.results if r.status != "passed"}


def test_tests_add_up_to_100_and_are_registered():
    assert sum(POINTS.values()) == 100
    assert len(POINTS) == len(a4.TESTS)  # names are unique
    assert {t.visibility for t in a4.TESTS} == {"visible", "after_due_date"}
    assert load_assignment("a4") is a4
    assert (ROOT / a4.STUDENT_FILE).is_file()
    assert (ROOT / a4.STUDENT_FILE).with_name("README.md").is_file()


def test_reference_solution_scores_100_on_fresh_inputs():
    report = grade("A4", FIXTURES / "a4_solution.py")  # the practice seed
    assert _failed(report) == set(), report.table()
    assert report.score == report.max_score == 100


def test_untouched_stub_scores_zero_with_not_implemented(tmp_path):
    results = tmp_path / "results.json"
    stub = ROOT / a4.STUDENT_FILE
    assert (
        main(
            [
                "grade",
                "A4",
                str(stub),
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
    assert [t["name"] for t in data["tests"]] == [t.name for t in a4.TESTS]
    for test in data["tests"]:
        assert test["score"] == 0 and test["status"] == "failed"
        assert f"not implemented: NotImplementedError ({stub.name}, line" in test["output"]


@pytest.mark.parametrize(
    "old, new, caught, says",
    [
        pytest.param(
            "bp = 1.0 if c > r else math.exp(1.0 - r / c)",
            "bp = 1.0",
            {"bleu_fixed", "bleu_random"},  # every corpus there has c < r
            "corpus_bleu (BLEU-1, 3 pairs, c=15, r=21): expected",
            id="bleu-without-brevity-penalty",
        ),
        pytest.param(
            "f = (1.0 + beta2) * p * r / (r + beta2 * p)",
            "f = 2.0 * p * r / (p + r)",
            {"rouge_l_fixed", "rouge_l_random"},  # P != R in every pair there
            "F (beta = P/R): expected 0.37142857, got 0.4",
            id="rouge-l-with-plain-f1",
        ),
        pytest.param(
            "return mass / mass.sum()",
            "return mass",
            {"evidence_fixed", "evidence_random"},  # reason rows also attend to reason tokens
            "evidence_shares (10x10 attention, prompt_len 6, segments [(0, 3), (3, 5), (5, 6)])"
            ": wrong values",
            id="evidence-not-normalised",
        ),
        pytest.param(
            "for j in range(i + 1, n)",
            "for j in range(i, n)",
            {"div_fixed", "div_random"},
            "expected 0.66666667, got 1.6666667",
            id="div-over-pairs-i<=j",
        ),
        pytest.param(
            "read[:, start:end].sum(axis=1).mean()",
            "read[:, start:end].sum(axis=1).sum()",
            {"segment_mass_fixed"},  # the evidence shares normalise the factor away
            "segment_mass (8x8 attention, rows [4, 5, 7], segments",
            id="segment-mass-summed-over-rows",
        ),
    ],
)
def test_planted_bug_loses_exactly_its_tests(tmp_path, old, new, caught, says):
    report = grade("A4", _variant(tmp_path, old, new), seed=11)
    assert _failed(report) == caught, report.table()
    assert report.score == 100 - sum(POINTS[n] for n in caught)
    assert {r.status for r in report.results if r.name in caught} == {"failed"}
    first_visible = next(r for r in report.results if r.name in caught)
    assert says in first_visible.message  # the message says what is wrong, with the inputs


def test_a4_inputs_exercise_what_the_bugs_change():
    """For many seeds: the BLEU corpora are shorter than their references (BP < 1), the
    ROUGE-L pairs have P != R, and the DIV sets overlap (so i <= j differs from i < j)."""
    for seed in range(30):
        rng = np.random.default_rng([seed, 0])
        hyp, ref = a4._related_pair(rng)
        p, r, _ = metrics.rouge_l(hyp, ref)
        assert len(hyp) < len(ref) and (p == 0 or p != r)
        sets = a4._random_sets(rng, 10, a4.FEATURES)
        assert sum(map(len, sets)) > 0
