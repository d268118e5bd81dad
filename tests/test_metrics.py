"""Explanation metrics: hand-computed cases (arithmetic in the comments) and properties."""

from __future__ import annotations

import math
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minireason.evaluation.metrics import (
    corpus_bleu,
    corpus_rouge,
    detect_features,
    explanation_metrics,
    feature_diversity,
    feature_matrix,
    lcs_length,
    normalize_features,
    perplexity,
    rouge_l,
    rouge_n,
    unique_sentence_ratio,
)
from minireason.text import tokens


def toks(s: str) -> list[str]:
    return s.split()


# --- BLEU ------------------------------------------------------------------------------------


def test_bleu1_with_brevity_penalty():
    # hyp "the cat sat" (c = 3), ref "the cat sat on the mat" (r = 6)
    # p1 = 3 matches / 3 unigrams = 1; c <= r so BP = exp(1 - r/c) = exp(1 - 2) = exp(-1)
    # BLEU-1 = 100 * exp(-1) = 36.79
    b = corpus_bleu([toks("the cat sat")], [toks("the cat sat on the mat")], 1)
    assert b == pytest.approx(100 * math.exp(-1))


def test_bleu4_zero_when_a_precision_is_zero():
    # same pair: the 3-token hypothesis has no 4-gram, so p4 = 0 / 0 -> 0, and BLEU-4 = 0
    assert corpus_bleu([toks("the cat sat")], [toks("the cat sat on the mat")], 4) == 0.0
    # 4-grams exist but none matches: hyp "a b c d e", ref "a b c x d e" -> p4 = 0 -> 0
    assert corpus_bleu([toks("a b c d e")], [toks("a b c x d e")], 4) == 0.0


def test_bleu_clips_counts():
    # hyp "the the the", ref "the cat": "the" counted at most once (ref count 1) -> p1 = 1/3
    # c = 3 > r = 2 -> BP = 1.  BLEU-1 = 100/3
    assert corpus_bleu([toks("the the the")], [toks("the cat")], 1) == pytest.approx(100 / 3)


def test_bleu4_is_corpus_level():
    # pair 1: hyp "a b c d e", ref "a b c d f": matches 4/5, 3/4, 2/3, 1/2 (orders 1..4)
    # pair 2: hyp "x y", ref "x y z w": matches 2/2, 1/1, 0/0, 0/0 (no 3- or 4-grams in hyp)
    # summed: p1 = 6/7, p2 = 4/5, p3 = 2/3, p4 = 1/2; c = 7, r = 9 -> BP = exp(1 - 9/7)
    # BLEU-4 = 100 * (6/7 * 4/5 * 2/3 * 1/2) ** (1/4) * exp(-2/7)
    #        = 100 * 0.228571 ** 0.25 * 0.751477 = 100 * 0.691441 * 0.751477 = 51.96
    hyps = [toks("a b c d e"), toks("x y")]
    refs = [toks("a b c d f"), toks("x y z w")]
    expected = 100 * (6 / 7 * 4 / 5 * 2 / 3 * 1 / 2) ** 0.25 * math.exp(1 - 9 / 7)
    assert corpus_bleu(hyps, refs, 4) == pytest.approx(expected)
    assert expected == pytest.approx(51.96, abs=0.01)
    # the mean of per-sentence BLEU-4 would be different (pair 2 alone scores 0)
    per_sentence = (corpus_bleu(hyps[:1], refs[:1], 4) + corpus_bleu(hyps[1:], refs[1:], 4)) / 2
    assert per_sentence != pytest.approx(expected)


def test_bleu_no_penalty_when_hypothesis_longer():
    # hyp "a b c" (c = 3) vs ref "a b" (r = 2): p1 = 2/3, c > r so BP = 1 -> 66.67
    assert corpus_bleu([toks("a b c")], [toks("a b")], 1) == pytest.approx(200 / 3)


def test_bleu_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        corpus_bleu([["a"], ["b"]], [["a"]], 1)


# --- ROUGE -----------------------------------------------------------------------------------


def test_rouge_n_uses_sets():
    # hyp "a a b" -> unigram set {a, b}; ref "a c" -> {a, c}; common {a}
    # P = 1/2, R = 1/2, F = 1/2 (counts would give P = 1/3 instead)
    assert rouge_n(toks("a a b"), toks("a c"), 1) == pytest.approx((0.5, 0.5, 0.5))
    # bigrams: hyp {aa, ab}, ref {ac}: nothing common -> 0
    assert rouge_n(toks("a a b"), toks("a c"), 2) == (0.0, 0.0, 0.0)
    # hyp "a b c" bigrams {ab, bc}; ref "a b" {ab}: P = 1/2, R = 1, F = 2*(1/2)/(3/2) = 2/3
    assert rouge_n(toks("a b c"), toks("a b"), 2) == pytest.approx((0.5, 1.0, 2 / 3))


def test_rouge_l_beta_is_p_over_r():
    # hyp "a b c d" (4), ref "a x b" (3): LCS "a b" = 2; P = 2/4 = 0.5, R = 2/3
    # beta = P/R = 0.75, beta^2 = 0.5625
    # F = (1 + 0.5625) * 0.5 * (2/3) / (2/3 + 0.5625 * 0.5) = 0.520833 / 0.947917 = 0.549451
    # (the usual beta = 1 F1 would be 2 * 0.5 * (2/3) / (0.5 + 2/3) = 0.571429)
    p, r, f = rouge_l(toks("a b c d"), toks("a x b"))
    assert (p, r) == pytest.approx((0.5, 2 / 3))
    assert f == pytest.approx(0.549451, abs=1e-6)
    assert f != pytest.approx(0.571429, abs=1e-3)


def test_lcs_length():
    assert lcs_length(toks("a b c d e"), toks("a c e x")) == 3  # "a c e"
    assert lcs_length([], toks("a")) == 0


def test_corpus_rouge_averages_over_pairs_x100():
    # pair 1 identical ("a b"): every F = 1; pair 2 disjoint ("c" vs "d"): every F = 0
    # means = 0.5 -> 50 on the x100 scale
    out = corpus_rouge([toks("a b"), toks("c")], [toks("a b"), toks("d")])
    for key in ("rouge1_f", "rouge2_f", "rougeL_f"):
        assert out[key] == pytest.approx(50.0)


# --- USR, features, DIV ----------------------------------------------------------------------


def test_usr_counts_distinct_token_sequences():
    # 4 sentences, 2 distinct -> 0.5
    assert unique_sentence_ratio([["a"], ["a"], ["a", "b"], ["a", "b"]]) == 0.5


def test_feature_detection_tokens_and_bigrams():
    features = normalize_features(["Tone", "guitar  strings", "strings"])
    assert features == ["guitar strings", "strings", "tone"]
    found = detect_features(tokens("New guitar strings, great tone."), features)
    assert found == {"guitar strings", "strings", "tone"}
    # "guitar" and "strings" apart do not make the bigram feature
    assert detect_features(toks("guitar with strings"), features) == {"strings"}
    # a token that merely contains a feature is not the feature
    assert detect_features(toks("tones"), features) == set()


def test_div_on_three_sentences():
    # S1 = {strings, tone}, S2 = {tone}, S3 = {price, strings, tone}
    # |S1&S2| = 1, |S1&S3| = 2, |S2&S3| = 1 -> sum 4 over 3 pairs -> DIV = 4/3
    features = ["price", "strings", "tone"]
    sets = [{"strings", "tone"}, {"tone"}, {"price", "strings", "tone"}]
    assert feature_diversity(feature_matrix(sets, features)) == pytest.approx(4 / 3)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sets(st.integers(0, 5)), min_size=2, max_size=12))
def test_div_matches_pairwise_definition(raw_sets):
    features = [f"f{j}" for j in range(6)]
    sets = [{f"f{j}" for j in s} for s in raw_sets]
    pairs = list(combinations(sets, 2))
    direct = sum(len(a & b) for a, b in pairs) / len(pairs)
    assert feature_diversity(feature_matrix(sets, features)) == pytest.approx(direct)


def test_explanation_metrics_hand_case():
    hyps = ["Great tone.", "Great tone.", "The strings break fast"]
    refs = ["great tone !", "nice price", "the strings break"]
    feature_set = ["tone", "price", "strings", "action"]
    gt = ["tone", "price", "strings"]
    out = explanation_metrics(hyps, refs, gt, feature_set)
    # USR: 2 distinct of 3
    assert out["usr"] == pytest.approx(2 / 3)
    # S = {tone}, {tone}, {strings}; gt matched in records 1 and 3 -> FMR = 2/3
    assert out["fmr"] == pytest.approx(2 / 3)
    # union {tone, strings} over |F| = 4 -> FCR = 0.5
    assert out["fcr"] == 0.5
    # pairs: (1,2) share tone = 1, others 0 -> DIV = 1/3
    assert out["div"] == pytest.approx(1 / 3)
    # BLEU-1: hyp tokens [great tone .] [great tone .] [the strings break fast], c = 10
    # refs [great tone !] [nice price] [the strings break], r = 8; matches 2 + 0 + 3 = 5
    # p1 = 5/10, c > r -> BP = 1 -> 50
    assert out["bleu1"] == pytest.approx(50.0)
    # ROUGE-1 F per pair: 2/3 (P = R = 2/3), 0, 2*(3/4)*1/(7/4) = 6/7 -> mean * 100
    assert out["rouge1_f"] == pytest.approx(100 * (2 / 3 + 0 + 6 / 7) / 3)
    # degenerate: "Great tone." and "Great tone." have 2 words (< 4); the third has 4
    assert out["degenerate"] == pytest.approx(2 / 3)
    assert set(out) >= {
        "bleu1",
        "bleu4",
        "rouge1_f",
        "rouge2_f",
        "rougeL_f",
        "usr",
        "fmr",
        "fcr",
        "div",
        "degenerate",
    }


def test_degenerate_rate_counts_each_kind_once():
    from minireason.evaluation.metrics import degenerate_rate

    hyps = [
        "I use it to use it to tune.",  # "use it to" twice: a repeated 3-gram
        "The the strings are bright.",  # a word twice in a row (case does not matter)
        "Nice strings.",  # 2 words
        "The strings are bright and the tuner holds.",  # fine
    ]
    assert degenerate_rate(hyps) == pytest.approx(3 / 4)
    assert degenerate_rate(hyps[3:]) == 0.0
    with pytest.raises(ValueError, match="no hypotheses"):
        degenerate_rate([])


def test_explanation_metrics_bad_input():
    with pytest.raises(ValueError, match="same length"):
        explanation_metrics(["a", "b"], ["a"], ["x", "x"], ["x"])
    with pytest.raises(ValueError, match=r"features_gt\[1\] = 'nope' is not in feature_set"):
        explanation_metrics(["a", "b"], ["a", "b"], ["x", "nope"], ["x"])
    with pytest.raises(ValueError, match="at least 2"):
        explanation_metrics(["a"], ["a"], ["x"], ["x"])
    with pytest.raises(ValueError, match="has no tokens"):
        explanation_metrics(["a", "b"], ["a", "b"], ["x", "x"], ["x", "  "])
    with pytest.raises(TypeError, match=r"hyps\[1\] must be a str"):
        explanation_metrics(["a", None], ["a", "b"], ["x", "x"], ["x"])


def test_perplexity():
    # mean NLL ln(4) per token -> perplexity 4
    assert perplexity(10 * math.log(4), 10) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="n_tokens"):
        perplexity(1.0, 0)
    with pytest.raises(ValueError, match="total_nll"):
        perplexity(float("nan"), 3)


# --- properties ------------------------------------------------------------------------------

words = st.sampled_from(["great", "tone", "price", "strings", "the", "a", "sound", "cheap"])
sentences = st.lists(words, min_size=1, max_size=12).map(" ".join)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(words, min_size=4, max_size=12).map(" ".join), min_size=2, max_size=6))
def test_identical_hypotheses_score_100(texts):
    out = explanation_metrics(texts, texts, ["tone"] * len(texts), ["tone", "price"])
    for key in ("bleu1", "bleu4", "rouge1_f", "rouge2_f", "rougeL_f"):
        assert out[key] == pytest.approx(100.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(sentences, sentences), min_size=2, max_size=8))
def test_metrics_in_range(pairs):
    hyps = [h for h, _ in pairs]
    refs = [r for _, r in pairs]
    features = ["tone", "price", "strings", "great tone"]
    out = explanation_metrics(hyps, refs, ["price"] * len(pairs), features)
    for key in ("bleu1", "bleu4", "rouge1_f", "rouge2_f", "rougeL_f", "rouge1_p", "rougeL_r"):
        assert 0.0 <= out[key] <= 100.0 + 1e-9
    for key in ("usr", "fmr", "fcr"):
        assert 0.0 <= out[key] <= 1.0
    assert 0.0 <= out["div"] <= len(features)
