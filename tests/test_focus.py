"""The learned focus predictor (minireason.prep.focus) against the hand-made one, and
``minireason bench focus``, which measures both."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from minireason.cli import main
from minireason.prep.features import predict_focus
from minireason.prep.focus import (
    FEATURES,
    FocusModel,
    TrainingCounts,
    candidate_features,
    compare,
    expand,
    format_comparison,
    hits,
)
from minireason.prep.prepared import load_prepared


@pytest.fixture(scope="module")
def prepared(micro_prepared):
    return load_prepared(micro_prepared)


def test_a_training_record_never_counts_itself(prepared):
    counts = TrainingCounts(prepared)
    rec = next(r for r in prepared.train if r["target"] and r["feature"] in r["aspects"])
    cands, own = candidate_features(rec, counts, own=True)
    cands_all, everyone = candidate_features(rec, counts, own=False)
    assert own.shape == (len(cands), len(FEATURES))
    col = FEATURES.index("log1p(times it was the item's feature)")
    c = counts.item_features[rec["item"]][rec["feature"]]
    if rec["feature"] in cands:
        assert own[cands.index(rec["feature"]), col] == pytest.approx(math.log1p(c - 1))
    assert everyone[cands_all.index(rec["feature"]), col] == pytest.approx(math.log1p(c))
    mentioned = FEATURES.index("log1p(item reviews mentioning it)")
    for a in set(cands) & set(rec["aspects"]):  # its own review is not among its item's
        n = counts.item_aspects[rec["item"]][a]
        assert own[cands.index(a), mentioned] == pytest.approx(math.log1p(n - 1))


def test_the_fit_is_deterministic_and_ranks_every_candidate(prepared):
    a, b = FocusModel.fit(prepared, epochs=50), FocusModel.fit(prepared, epochs=50)
    assert np.array_equal(a.weights, b.weights)
    assert a.weights.shape == (expand(np.zeros((1, len(FEATURES)))).shape[1],)
    counts = TrainingCounts(prepared)
    for r in prepared.valid[:10]:
        cands, X = candidate_features(r, counts, own=False)
        assert sorted(a.rank(cands, X)) == sorted(cands)
    assert a.rank([], np.zeros((0, len(FEATURES)))) == []


def test_compare_reports_both_predictors_as_prepare_made_the_heuristic(prepared):
    out = compare(prepared, "valid", FocusModel.fit(prepared, epochs=50))
    records = [r for r in prepared.valid if r["target"]]
    assert out["n"] == len(records)
    assert out["heuristic"]["hit@3"] == pytest.approx(
        hits([r["focus"] for r in records], [r["feature"] for r in records], 3)
    )
    for name in ("heuristic", "learned"):
        assert 0.0 <= out[name]["hit@1"] <= out[name]["hit@3"] <= 1.0
    assert out["learned"]["hit@3"] <= out["candidates_hold_the_feature"]
    r = records[0]
    counts = sorted(prepared.items[r["item"]]["aspects"], key=lambda x: -x[1])
    assert r["focus"] == predict_focus(
        [(a, n) for a, n in counts], r["profile"]["aspects"], prepared.feature_rates, 3
    )


def test_hits():
    assert hits([["a", "b"], ["c"]], ["b", "x"], 1) == 0.0
    assert hits([["a", "b"], ["c"]], ["b", "c"], 2) == 1.0


def test_bench_focus_prints_and_writes_both_predictors(micro_prepared, prepared, tmp_path, capsys):
    out = tmp_path / "focus.json"
    argv = ["bench", "focus", "--prepared", str(micro_prepared), "--split", "test"]
    assert main([*argv, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["split"] == "test" and f"figures written to {out}" in printed
    assert format_comparison(result) in printed
    records = [r for r in prepared.test if r["target"]]
    assert result["n"] == len(records)
    assert result["heuristic"]["hit@1"] == pytest.approx(
        hits([r["focus"] for r in records], [r["feature"] for r in records], 1)
    )
    lines = format_comparison(result).splitlines()
    assert lines[0].startswith(f"{len(records)} test records with a target")
    assert [line.split()[0] for line in lines[1:]] == ["heuristic", "learned"]


def test_bench_focus_refuses_what_it_cannot_measure(tmp_path, capsys):
    assert main(["bench", "focus", "--prepared", str(tmp_path), "--split", "train"]) == 2
    err = capsys.readouterr().err
    assert "argument --split: invalid choice: 'train'" in err and err.count("\n") == 1
    assert main(["bench", "focus", "--prepared", str(tmp_path / "absent")]) == 1
    err = capsys.readouterr().err
    assert "no such prepared directory" in err and err.count("\n") == 1
