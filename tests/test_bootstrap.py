"""Bootstrap intervals of the explanation metrics (minireason.evaluation.bootstrap)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minireason.evaluation.bootstrap import (
    METRICS,
    bootstrap_intervals,
    record_statistics,
    resampled_scores,
)
from minireason.evaluation.metrics import (
    bleu_counts,
    bleu_from_counts,
    corpus_bleu,
    explanation_metrics,
)

FEATURES = ["strings", "tone", "tuner", "strap", "guitar strings"]
REFS = [
    "these strings have a warm tone .",
    "the tuner is fast and accurate .",
    "a comfortable strap for long gigs .",
    "great guitar strings for the price .",
    "the tone is bright and the strings last .",
    "this tuner clips on and stays put .",
] * 4
GT = ["strings", "tuner", "strap", "guitar strings", "tone", "tuner"] * 4
GOOD = [
    "these strings have a warm tone .",
    "the tuner is fast .",
    "a strap for long gigs .",
    "great guitar strings .",
    "the tone is bright .",
    "this tuner clips on .",
] * 4
POOR = ["i bought this for my son ."] * len(REFS)

words = st.lists(st.sampled_from("a b c d e the tone strings".split()), max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(words, words), min_size=1, max_size=12), st.data())
def test_bleu_of_summed_counts_is_the_corpus_bleu_of_those_records(pairs, data):
    hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
    counts = bleu_counts(hyps, refs, 4)
    keep = data.draw(st.lists(st.sampled_from(range(len(pairs))), min_size=1, max_size=20))
    for n in (1, 4):
        c = bleu_counts(hyps, refs, n)
        assert float(bleu_from_counts(c[keep].sum(axis=0))) == pytest.approx(
            corpus_bleu([hyps[i] for i in keep], [refs[i] for i in keep], n), abs=1e-9
        )
    assert counts.shape == (len(pairs), 10) and (counts[:, 2::2] <= counts[:, 3::2]).all()


def test_drawing_every_record_once_gives_the_corpus_metrics():
    stats = record_statistics(GOOD, REFS, GT, FEATURES)
    once = resampled_scores(stats, np.ones((1, len(REFS)), dtype=np.int64))
    corpus = explanation_metrics(GOOD, REFS, GT, FEATURES)
    for m in METRICS:
        assert once[m][0] == pytest.approx(corpus[m]), m


def test_intervals_hold_the_score_and_a_better_system_is_ahead():
    answers = {"model": GOOD, "poor": POOR, "same": list(GOOD)}
    u = bootstrap_intervals(answers, REFS, GT, FEATURES, n_resamples=400, seed=1)
    corpus = explanation_metrics(GOOD, REFS, GT, FEATURES)
    for m in METRICS:
        low, high = u["intervals"]["model"][m]
        assert low <= corpus[m] <= high, m
    assert u["intervals"]["model"]["rougeL_f"][0] < u["intervals"]["model"]["rougeL_f"][1]
    assert u["model_ahead"]["poor"] == {m: 1.0 for m in METRICS}
    assert u["model_ahead"]["same"] == {m: 0.0 for m in METRICS}  # a tie is never ahead
    assert set(u["model_ahead"]) == {"poor", "same"}
    again = bootstrap_intervals(answers, REFS, GT, FEATURES, n_resamples=400, seed=1)
    other = bootstrap_intervals(answers, REFS, GT, FEATURES, n_resamples=400, seed=2)
    assert again == u and other["intervals"] != u["intervals"]


def test_half_better_half_worse_cannot_be_told_apart():
    half = GOOD[:12] + POOR[12:]
    mirror = POOR[:12] + GOOD[12:]
    u = bootstrap_intervals({"model": half, "mirror": mirror}, REFS, GT, FEATURES, seed=0)
    assert 0.3 < u["model_ahead"]["mirror"]["rougeL_f"] < 0.7


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="at least 2 records"):
        bootstrap_intervals({"model": GOOD[:1]}, REFS[:1], GT[:1], FEATURES)
    with pytest.raises(ValueError, match="no answers for 'model'"):
        bootstrap_intervals({"other": GOOD}, REFS, GT, FEATURES)
