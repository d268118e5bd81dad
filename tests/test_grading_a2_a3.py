"""The autograder on assignments A2 and A3: reference solutions, stubs, planted bugs.

As for A1 (``tests/test_grading.py``), each planted bug is a one-line textual change to a
reference solution in ``tests/fixtures/`` and must lose exactly the points of the tests
meant to catch it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import seed_file

from minireason.cli import main
from minireason.course.assignments import a2, a3
from minireason.course.grading import grade, load_assignment

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
ASSIGNMENTS = {"A2": a2, "A3": a3}

A2_LAYERNORM = {
    "layernorm_forward_fixed",
    "layernorm_backward_fixed",
    "layernorm_forward_random",
    "layernorm_backward_random",
}
A3_DROPPING = {"prompt_drops_oldest_fixed", "prompt_drops_random"}


def _variant(tmp_path, assignment: str, old: str, new: str) -> Path:
    """The reference solution with ``old`` replaced by ``new`` (which must occur exactly once)."""
    source = (FIXTURES / f"{assignment.lower()}_solution.py").read_text()
    assert source.count(old) == 1, f"{old!r} must occur once in the fixture"
    path = tmp_path / "student.py"
    path.write_text(source.replace(old, new))
    return path


def _failed(report) -> set[str]:
    return {r.name for r in report.results if r.status != "passed"}


def _points(assignment: str) -> dict[str, float]:
    return {t.name: t.points for t in ASSIGNMENTS[assignment].TESTS}


@pytest.mark.parametrize("name", ["A2", "A3"])
def test_tests_add_up_to_100_and_are_registered(name):
    module = ASSIGNMENTS[name]
    assert sum(_points(name).values()) == 100
    assert len(_points(name)) == len(module.TESTS)  # names are unique
    assert {t.visibility for t in module.TESTS} == {"visible", "after_due_date"}
    assert load_assignment(name.lower()) is module
    assert (ROOT / module.STUDENT_FILE).is_file()
    assert (ROOT / module.STUDENT_FILE).with_name("README.md").is_file()


@pytest.mark.parametrize("name", ["A2", "A3"])
def test_reference_solution_scores_100_on_fresh_inputs(name):
    report = grade(name, FIXTURES / f"{name.lower()}_solution.py")  # the practice seed
    assert _failed(report) == set(), report.table()
    assert report.score == report.max_score == 100


@pytest.mark.parametrize("name", ["A2", "A3"])
def test_untouched_stub_scores_zero_with_not_implemented(tmp_path, name):
    module = ASSIGNMENTS[name]
    results = tmp_path / "results.json"
    stub = ROOT / module.STUDENT_FILE
    assert (
        main(
            [
                "grade",
                name,
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
    assert [t["name"] for t in data["tests"]] == [t.name for t in module.TESTS]
    for test in data["tests"]:
        assert test["score"] == 0 and test["status"] == "failed"
        assert f"not implemented: NotImplementedError ({stub.name}, line" in test["output"]


@pytest.mark.parametrize(
    "name, old, new, caught, says",
    [
        pytest.param(
            "A2",
            "var = (centred**2).mean(axis=-1, keepdims=True)",
            "var = (centred**2).sum(axis=-1, keepdims=True)",
            A2_LAYERNORM,  # the block tests run the reference LayerNorm
            "layernorm out (x 4x5): wrong values",
            id="A2-layernorm-variance-without-1/N",
        ),
        pytest.param(
            "A2",
            "return dout * (0.5 * (1.0 + t) + 0.5 * x * dtanh)",
            "return dout * (0.5 * (1.0 + t))",
            {"gelu_backward_fixed", "gelu_backward_random"},  # the MLP tests use the reference
            "gelu dx (x from -4 to 3): wrong values",
            id="A2-gelu-derivative-without-tanh-term",
        ),
        pytest.param(
            "A2",
            "dmid = dout + dh",
            "dmid = dout - dh",
            {"block_backward_fixed", "block_dx_random", "block_attn_half_random"},
            "block dx (B=2, T=3, C=4, 2 heads): wrong values",
            id="A2-residual-gradient-wrong-sign",  # the MLP half's gradients come before it
        ),
        pytest.param(
            "A3",
            "kept = blocks[len(blocks) - n_kept :]",
            "kept = blocks[:n_kept]",
            A3_DROPPING,  # when everything fits, both slices are the whole history
            "the oldest dropped, max_tokens=37): expected 33 ids, got 29; first difference at "
            "position 1",
            id="A3-drops-newest-history",
        ),
        pytest.param(
            "A3",
            "loss_mask = [0] * len(prompt_ids) + [1] * (len(reason) + 1)",
            "loss_mask = [1] * len(prompt_ids) + [1] * (len(reason) + 1)",
            {"finetune_fixed", "finetune_cut_random"},
            "finetune_example loss_mask (10 prompt, 3 reason tokens): expected 14 ids",
            id="A3-mask-covers-prompt",
        ),
        pytest.param(
            "A3",
            'earlier = [r for r in reviews if r["time"] < target_time]',
            'earlier = [r for r in reviews if r["time"] <= target_time]',
            {"history_fixed", "history_random"},
            "expected items ['d', 'b', 'c'], got ['b', 'c', 'target']",
            id="A3-history-leaks-target-review",
        ),
    ],
)
def test_planted_bug_loses_exactly_its_tests(tmp_path, name, old, new, caught, says):
    report = grade(name, _variant(tmp_path, name, old, new), seed=11)
    assert _failed(report) == caught, report.table()
    assert report.score == 100 - sum(_points(name)[n] for n in caught)
    assert {r.status for r in report.results if r.name in caught} == {"failed"}
    first_visible = next(r for r in report.results if r.name in caught)
    assert says in first_visible.message  # the message says what is wrong, with the inputs


def test_a3_random_prompt_tests_really_drop_and_cut():
    """The hidden-style prompt tests exercise what their names say, for many seeds."""
    for seed in range(20):
        rng = np.random.default_rng([seed, 0])
        n = int(rng.integers(3, 7))
        scenario = a3._Scenario(rng, n_history=n, n_item_tags=int(rng.integers(1, 4)))
        n_kept = int(rng.integers(1, n))
        max_tokens = a3._budget_dropping(scenario, rng, n_kept)
        prompt = a3.reference_build_prompt(
            scenario.reference_history, scenario.item_labels, max_tokens, scenario.tokenizer
        )
        assert (prompt.n_history, prompt.n_dropped) == (n_kept, n - n_kept)
        assert prompt.ids[-1] == a3.SPECIAL["<reason>"] and len(prompt.ids) <= max_tokens
