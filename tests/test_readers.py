"""Step 4's weights fitted to readers' ratings (``minireason.evaluation.readers``): the sheet,
reading the filled sheets, the fit and its check, and the two commands end to end."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from minireason.cli import main
from minireason.evaluation.readers import (
    FOLDS,
    _picked,
    check_fit,
    fit_weights,
    read_ratings,
    ridge,
)
from minireason.reason.scoring import SCORE_PARTS
from minireason.train.run import ScoreWeights, load_run, load_weights

COLUMN = {name: k for k, name in enumerate(SCORE_PARTS)}


@dataclass
class FakePool:
    """What the fit reads of a CandidatePool: per record, the terms and the texts."""

    terms: list
    texts: list


def _pool_with_a_known_taste(n_records=30, n_candidates=8, seed=0):
    """Candidates whose readers' sense is their mean log-probability and whose specificity
    is their item coverage (plus noise); the other terms vary at random and mean nothing."""
    rng = np.random.default_rng(seed)
    terms, texts, labels = [], [], {}
    for i in range(n_records):
        t = np.zeros((n_candidates, len(SCORE_PARTS)))
        t[:, COLUMN["logprob"]] = rng.uniform(-3.0, -0.5, n_candidates)
        t[:, COLUMN["item"]] = rng.uniform(0.0, 1.0, n_candidates)
        t[:, COLUMN["consensus"]] = rng.uniform(0.0, 1.0, n_candidates)  # noise
        t[:, COLUMN["length"]] = rng.integers(5, 30, n_candidates)
        terms.append(t)
        texts.append([f"candidate {i}.{j}" for j in range(n_candidates)])
        for j in range(n_candidates):
            sense = 5 + 1.6 * (t[j, COLUMN["logprob"]] + 0.5) + rng.normal(0, 0.1)
            specific = 1 + 4 * t[j, COLUMN["item"]] + rng.normal(0, 0.1)
            labels[(i, texts[i][j])] = np.array([3.0, specific, sense])
    return FakePool(terms, texts), labels


def test_the_fit_recovers_what_readers_reward_and_chooses_better_than_the_run():
    pool, labels = _pool_with_a_known_taste()
    records = list(range(30))
    start = ScoreWeights(item=0.0, logprob=0.0)  # a run that ignores both
    w = fit_weights(pool, labels, records, start, sense_weight=1.0, length_bonus=0.0)
    assert w.logprob > 0.5 and w.item > 0.5  # both rewarded, in rating units per unit term
    assert abs(w.consensus) < 0.2 * min(w.logprob, w.item)  # the noise is nearly ignored
    assert w.empty == start.empty and w.degenerate == start.degenerate  # never varied: kept
    check = check_fit(pool, labels, records, start, 1.0, 0.0)
    fitted, run, best = check["fitted (five folds)"], check["run.json"], check["best rated"]
    assert fitted["sense"] > run["sense"] + 0.5 and fitted["specific"] > run["specific"] + 0.5
    assert best["specific"] >= fitted["specific"] - 0.3
    # sense_weight 0 cares for specificity only; the length bonus is added to the fitted weight
    only_specific = fit_weights(pool, labels, records, start, 0.0, 0.0)
    assert only_specific.logprob < 0.1 * w.logprob
    longer = fit_weights(pool, labels, records, start, 1.0, 0.25)
    assert longer.length == pytest.approx(w.length + 0.25)


def test_the_constrained_ridge_is_the_optimum_of_its_problem():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(60, 5))
    y = z @ np.array([1.0, -2.0, 0.5, -0.3, 0.0]) + rng.normal(0, 0.1, 60)
    free = ridge(z, y, penalty=2.0)
    a = np.c_[z, np.ones(60)]
    eye = np.diag([1.0] * 5 + [0.0])
    direct = np.linalg.solve(a.T @ a + 2.0 * eye, a.T @ y)[:-1]
    assert np.allclose(free, direct)
    assert free[1] < 0 and free[3] < 0
    mask = np.array([True, True, False, True, True])
    held = ridge(z, y, penalty=2.0, nonneg=mask)
    assert held[1] == 0.0 and held[3] == 0.0 and held[0] > 0  # the reversed ones sit at 0
    # optimality (KKT): the gradient vanishes on the free coordinates and the intercept,
    # and pushes below zero on the held ones
    full = np.r_[held, np.linalg.lstsq(np.ones((60, 1)), y - z @ held, rcond=None)[0]]
    gradient = (a.T @ a + 2.0 * eye) @ full - a.T @ y
    assert np.allclose(gradient[[0, 2, 4, 5]], 0.0, atol=1e-8)
    assert np.all(gradient[[1, 3]] >= -1e-8)
    assert np.array_equal(ridge(z, y, 2.0, nonneg=np.zeros(5, bool)), free)


def test_a_penalty_never_becomes_a_reward_but_the_length_may_take_either_sign():
    """Readers who like short sentences full of made-up words: the unknown-word term and the
    length correlate with their taste in the wrong direction; only the length may follow."""
    rng = np.random.default_rng(2)
    terms, texts, labels = [], [], {}
    for i in range(30):
        t = np.zeros((8, len(SCORE_PARTS)))
        t[:, COLUMN["unknown"]] = -rng.integers(0, 3, 8)  # signed: a penalty part is <= 0
        t[:, COLUMN["length"]] = rng.integers(5, 30, 8)
        t[:, COLUMN["logprob"]] = rng.uniform(-3.0, -0.5, 8)
        terms.append(t)
        texts.append([f"candidate {i}.{j}" for j in range(8)])
        for j in range(8):
            liked = 4 - 0.5 * t[j, COLUMN["unknown"]] - 0.05 * t[j, COLUMN["length"]]
            labels[(i, texts[i][j])] = np.array([3.0, liked, liked + t[j, COLUMN["logprob"]]])
    w = fit_weights(FakePool(terms, texts), labels, list(range(30)), ScoreWeights(), 1.0, 0.0)
    assert w.unknown == 0.0  # held at zero, not turned into a reward for made-up words
    assert w.length < 0  # the readers' taste for short sentences is kept
    assert w.logprob > 0


def test_a_duplicate_sample_is_fitted_once_and_keeps_the_runs_penalty():
    pool, labels = _pool_with_a_known_taste()
    for i, (terms, texts) in enumerate(zip(pool.terms, pool.texts)):
        twin = terms[0].copy()
        twin[COLUMN["duplicate"]] = -1.0  # the signed part of a repeat of candidate 0
        pool.terms[i] = np.vstack([terms, twin])
        texts.append(texts[0])  # the same text: the same rating
    start = ScoreWeights(duplicate=0.75)
    w = fit_weights(pool, labels, list(range(30)), start, sense_weight=1.0, length_bonus=0.0)
    assert w.duplicate == 0.75


def test_the_candidate_kept_is_the_highest_weighted_among_the_rated_ones():
    pool, labels = _pool_with_a_known_taste(n_records=3)
    w = ScoreWeights(**{name: 0.0 for name in SCORE_PARTS})
    w = ScoreWeights(**{**w.to_dict(), "logprob": 1.0})
    kept = _picked(pool, labels, [0, 1, 2], w)
    for i in range(3):
        j = int(np.argmax(pool.terms[i][:, COLUMN["logprob"]]))
        assert kept[i] == pytest.approx(labels[(i, pool.texts[i][j])])


def _sheet(path, rows, header=None):
    header = header or {"format": "minireason-rating-sheet", "format_version": 1,
                        "prepared_content": "p", "run_content": "r", "seed": 0,
                        "n_records": 3}  # fmt: skip
    lines = [json.dumps(header)] + [json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _row(record, text, fluency=4, specific=2, sense=5):
    return {"record": record, "item": "i", "item_tags": [], "text": text,
            "fluency": fluency, "specific": specific, "sense": sense}  # fmt: skip


def test_ratings_of_several_readers_are_averaged_and_unrated_rows_counted(tmp_path):
    a = _sheet(tmp_path / "a.jsonl", [_row(0, "x", 4, 2, 5), _row(1, "y", None, None, None)])
    b = _sheet(tmp_path / "b.jsonl", [_row(0, "x", 2, 4, 3), _row(1, "y", 5, 1, 2)])
    ratings = read_ratings([a, b])
    assert ratings.labels[(0, "x")] == pytest.approx([3.0, 3.0, 4.0])
    assert ratings.labels[(1, "y")] == pytest.approx([5.0, 1.0, 2.0])
    assert (ratings.n_rows, ratings.n_unrated) == (4, 1)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([_row(0, "x", 4, 7, 5)], "a.jsonl:2: field 'specific' must be 1 to 5 (or null), got 7"),
        ([_row(0, "x", 4, "5", 5)], "a.jsonl:2: field 'specific' must be 1 to 5"),
        ([_row(9, "x")], "a.jsonl:2: record 9 is not one of the sheet's records"),
        ([{**_row(0, "x"), "text": 3}], "a.jsonl:2: field 'text' must be a string"),
        ([{**_row(0, "x"), "record": "0"}], "a.jsonl:2: field 'record' must be an integer"),
    ],
)
def test_a_bad_rating_is_one_line_naming_file_line_and_field(tmp_path, rows, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_ratings([_sheet(tmp_path / "a.jsonl", rows)])


def test_sheets_that_are_not_sheets_or_of_other_candidates_are_refused(tmp_path):
    plain = tmp_path / "notes.jsonl"
    plain.write_text('{"record": 0}\n')
    with pytest.raises(ValueError, match="notes.jsonl:1: not a rating sheet"):
        read_ratings([plain])
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"format": "minireason-rating-sheet"\n')
    with pytest.raises(ValueError, match="broken.jsonl:1: not a JSON object"):
        read_ratings([broken])
    a = _sheet(tmp_path / "a.jsonl", [_row(0, "x")])
    other = {"format": "minireason-rating-sheet", "format_version": 1, "prepared_content": "p",
             "run_content": "another", "seed": 0, "n_records": 3}  # fmt: skip
    b = _sheet(tmp_path / "b.jsonl", [_row(0, "x")], other)
    with pytest.raises(ValueError, match="b.jsonl:1: made from other candidates"):
        read_ratings([a, b])
    with pytest.raises(FileNotFoundError, match="--labels .*missing.jsonl: no such file"):
        read_ratings([tmp_path / "missing.jsonl"])


def test_sheet_then_ratings_then_weights_end_to_end(micro_run, tmp_path, capsys):
    """rating-sheet -> readers fill it in -> tune --labels -> a weights file every command
    adopts; the sheet is never replaced, and a sheet of another run is refused."""
    prep_dir, run_dir = micro_run
    sheet = tmp_path / "sheet.jsonl"
    common = ["--prepared", str(prep_dir), "--run", str(run_dir)]
    limit = 2 * FOLDS
    assert main(["rating-sheet", *common, "--out", str(sheet), "--limit", str(limit)]) == 0
    assert "candidates of 10 validation records" in capsys.readouterr().out
    lines = sheet.read_text().splitlines()
    header, rows = json.loads(lines[0]), [json.loads(x) for x in lines[1:]]
    assert header["format"] == "minireason-rating-sheet" and header["n_records"] == limit
    assert {r["record"] for r in rows} == set(range(limit))
    assert all(r["fluency"] is r["specific"] is r["sense"] is None for r in rows)
    per_record = {}
    for r in rows:
        per_record.setdefault(r["record"], []).append(r["text"])
    assert all(len(set(t)) == len(t) for t in per_record.values())  # distinct texts only
    # the sheet may hold ratings: it is never written over
    before = sheet.read_text()
    assert main(["rating-sheet", *common, "--out", str(sheet), "--limit", "12"]) == 1
    assert "never replaced" in capsys.readouterr().err and sheet.read_text() == before
    # two readers: one likes short candidates, the other agrees, with one row left unrated
    filled = []
    for name, spread in (("one", 0), ("two", 1)):
        out_rows = []
        for k, r in enumerate(rows):
            short = len(r["text"].split()) <= 6
            rating = {"fluency": 4, "specific": 2 + spread, "sense": 5 if short else 1}
            if name == "two" and k == 0:
                rating = {"fluency": None, "specific": None, "sense": None}
            out_rows.append({**r, **rating})
        filled.append(_sheet(tmp_path / f"{name}.jsonl", out_rows, header))
    weights_out = tmp_path / "readers.json"
    argv = ["tune", *common, "--out", str(weights_out), "--labels", str(filled[0])]
    assert main([*argv, "--labels", str(filled[1]), "--length-bonus", "0"]) == 0
    printed = capsys.readouterr().out
    assert "fitted to" in printed and "1 rows unrated" in printed
    assert f"--weights {weights_out}" in printed
    result = json.loads(weights_out.read_text())
    assert result["chosen_on"]["n_records"] == limit and len(result["chosen_on"]["labels"]) == 2
    assert load_weights(weights_out).length < 0  # the readers here punish length
    check = result["validation"]
    assert check["fitted (five folds)"]["sense"] >= check["run.json"]["sense"]
    # a duplicate sample is fitted once, as its first: the duplicate penalty keeps the run's
    assert load_weights(weights_out).duplicate == load_run(run_dir).info.weights.duplicate
    assert main([*argv, "--limit", "5"]) == 1  # the sheet decides the records
    assert "--limit: not with --labels" in capsys.readouterr().err
    # a sheet made from another run's candidates is refused, naming the remedy
    header_other = {**header, "run_content": "0" * 64}
    stranger = _sheet(tmp_path / "stranger.jsonl", [{**rows[0], "specific": 3, "sense": 3}],
                      header_other)  # fmt: skip
    assert main(["tune", *common, "--out", str(tmp_path / "w2.json"),
                 "--labels", str(stranger)]) == 1  # fmt: skip
    assert "made from another run" in capsys.readouterr().err
    # a text that is not one of the run's candidates is refused too
    wrong = _sheet(tmp_path / "wrong.jsonl", [{**rows[0], "text": "Never sampled.",
                                               "specific": 3, "sense": 3}], header)  # fmt: skip
    assert main(["tune", *common, "--out", str(tmp_path / "w3.json"),
                 "--labels", str(wrong)]) == 1  # fmt: skip
    assert "has no candidate 'Never sampled.'" in capsys.readouterr().err
