"""A4: reason extraction and the explanation metrics, graded against the package.

The student implements, in ``tutorials/assignments/A4_reasons_metrics/reasons_student.py``,
on plain lists of word tokens, strings, sets and NumPy arrays::

    score_candidate(words, logprobs, aspects, tags, weights)     -> float
    pick_best(candidates, logprobs, aspects, tags, weights)      -> int
    segment_mass(attention, rows, segments)                      -> (S,) array
    evidence_shares(attention, prompt_len, segments)             -> (S,) array, sums to 1
    corpus_bleu(hyps, refs, max_n)                               -> float (x100)
    rouge_l(hyp, ref)                                            -> (P, R, F)
    detect_features(tokens, features)                            -> set of str
    feature_matching_ratio(feature_sets, features_gt)            -> float
    feature_diversity(feature_sets)                              -> float

References: the scoring and evidence tests compare with :func:`minireason.reason.scoring.score_candidate`
(finish ``"eos"``, no duplicate, never empty, so only coverage, log-probability and repetition
count), :func:`minireason.reason.evidence.segment_mass` and :func:`minireason.reason.evidence.aggregate_evidence`;
the metric tests with :mod:`minireason.evaluation.metrics` (``corpus_bleu``, ``rouge_l``,
``detect_features``, ``feature_matching_ratio``, ``feature_diversity`` over
``feature_matrix``).
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from minireason.course.grading import (
    Case,
    GradedTest,
    WrongAnswer,
    call,
    expect_array,
    expect_tuple,
)
from minireason.course.wire import type_name
from minireason.evaluation import metrics
from minireason.prep.prompts import Segment
from minireason.reason import evidence, scoring

NAME = "A4"
TITLE = "Reason extraction and the explanation metrics"
STUDENT_FILE = "tutorials/assignments/A4_reasons_metrics/reasons_student.py"
STUDENT_API = (
    "score_candidate",
    "pick_best",
    "segment_mass",
    "evidence_shares",
    "corpus_bleu",
    "rouge_l",
    "detect_features",
    "feature_matching_ratio",
    "feature_diversity",
)

HIDDEN = "after_due_date"
VOCAB = (
    "great tone strings sound price neck cable pedal bright warm easy cheap solid the a "
    "and is for with good very nice fret action tuner"
).split()


# --------------------------------------------------------------------------- helpers


def expect_number(what: str, got, expected: float, rtol: float = 1e-6, atol: float = 1e-9):
    """Raise :class:`WrongAnswer` unless ``got`` is a finite number close to ``expected``."""
    if isinstance(got, (np.ndarray, np.generic)) and np.size(got) == 1:
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        raise WrongAnswer(f"{what}: expected a number, got {type_name(got)}")
    value = float(got)
    if not np.isfinite(value) or not np.isclose(value, expected, rtol=rtol, atol=atol):
        raise WrongAnswer(f"{what}: expected {expected:.8g}, got {value:.8g}")
    return value


def _weights(w: dict) -> scoring.ScoreWeights:
    """The assignment's four weights; every other term of the package's score (focus,
    consensus, echo, the penalties) is not part of A4 and weighs 0, so a term added to the
    package later cannot change what A4 expects."""
    others = {f.name: 0.0 for f in fields(scoring.ScoreWeights)}
    return scoring.ScoreWeights(
        **{**others, **{k: w[k] for k in ("user", "item", "logprob", "repetition")}}
    )


def _reference_score(words, logprobs, aspects, tags, w) -> float:
    return scoring.score_candidate(
        " ".join(words), logprobs, "eos", aspects, tags, weights=_weights(w)
    ).total


def _random_words(rng, low: int, high: int) -> list[str]:
    return [str(w) for w in rng.choice(VOCAB, size=int(rng.integers(low, high)))]


def _random_phrases(rng, n: int) -> list[str]:
    """``n`` distinct phrases of one or two vocabulary words."""
    phrases: list[str] = []
    while len(phrases) < n:
        phrase = " ".join(_random_words(rng, 1, 3))
        if phrase not in phrases:
            phrases.append(phrase)
    return phrases


def _random_weights(rng) -> dict:
    return {
        "user": float(rng.uniform(0.5, 2)),
        "item": float(rng.uniform(0.5, 2)),
        "logprob": float(rng.uniform(0.05, 0.5)),
        "repetition": float(rng.uniform(0.5, 2)),
    }


# --------------------------------------------------------------------------- scoring

FIXED_WEIGHTS = {"user": 1.0, "item": 1.0, "logprob": 0.2, "repetition": 1.0}


def _check_score(words, logprobs, aspects, tags, w, what) -> Case:
    def check(outputs):
        expected = _reference_score(words, logprobs, aspects, tags, w)
        where = f"score_candidate ({what}: words {words}, aspects {aspects}, tags {tags})"
        expect_number(where, outputs["score"], expected)
        return what

    args = (list(words), logprobs, list(aspects), list(tags), dict(w))
    return Case([call("score", "score_candidate", *args)], check)


def score_fixed(rng) -> Case:
    words = "great tone and great tone with bright strings".split()
    logprobs = np.array([-1.0, -2.0, -0.5, -0.5, -1.0, -3.0, -2.0, -1.5, -0.5])
    aspects = ["tone", "price", "bright strings"]  # 2 of 3 mentioned
    tags = ["strings", "neck"]  # 1 of 2 mentioned
    return _check_score(
        words,
        logprobs,
        aspects,
        tags,
        FIXED_WEIGHTS,
        "a repeated bigram, a two-word aspect",
    )


def score_random(rng) -> Case:
    words = _random_words(rng, 4, 14)
    aspects = _random_phrases(rng, int(rng.integers(0, 4)))
    aspects += [" ".join(words[:2])] if " ".join(words[:2]) not in aspects else []
    tags = _random_phrases(rng, int(rng.integers(0, 4)))
    logprobs = -rng.exponential(1.5, size=len(words) + 1)
    return _check_score(words, logprobs, aspects, tags, _random_weights(rng), f"{len(words)} words")


def _check_pick(candidates, logprobs, aspects, tags, w, what) -> Case:
    def check(outputs):
        scores = [_reference_score(c, lp, aspects, tags, w) for c, lp in zip(candidates, logprobs)]
        expected = int(np.argmax(scores))  # the first of equal bests
        got = outputs["best"]
        if not isinstance(got, (int, np.integer)) or isinstance(got, bool):
            raise WrongAnswer(f"pick_best ({what}): expected an int index, got {type_name(got)}")
        if int(got) != expected:
            raise WrongAnswer(
                f"pick_best ({what}): expected candidate {expected} (score "
                f"{scores[expected]:.4f}), got {int(got)}; scores "
                f"{[round(s, 4) for s in scores]}"
            )
        return what

    args = ([list(c) for c in candidates], list(logprobs), list(aspects), list(tags), dict(w))
    return Case([call("best", "pick_best", *args)], check)


def pick_best_fixed(rng) -> Case:
    candidates = [
        "the sound is very nice".split(),  # likely, covers nothing
        "warm tone for the price".split(),  # covers 2 aspects
        "warm tone warm tone warm tone".split(),  # covers 1 aspect, loops
        "warm tone for the price".split(),
    ]  # a tie with 1: 1 wins
    logprobs = [np.full(6, -0.5), np.full(6, -2.0), np.full(7, -0.3), np.full(6, -2.0)]
    return _check_pick(
        candidates,
        logprobs,
        ["tone", "price"],
        ["warm"],
        FIXED_WEIGHTS,
        "4 candidates, the likeliest covers nothing",
    )


def pick_best_random(rng) -> Case:
    n = int(rng.integers(3, 9))
    candidates = [_random_words(rng, 3, 12) for _ in range(n)]
    logprobs = [-rng.exponential(1.5, size=len(c) + 1) for c in candidates]
    aspects, tags = _random_phrases(rng, 3), _random_phrases(rng, 2)
    return _check_pick(
        candidates, logprobs, aspects, tags, _random_weights(rng), f"{n} random candidates"
    )


# --------------------------------------------------------------------------- evidence


def _causal_attention(rng, T: int) -> np.ndarray:
    """A random causal attention matrix ``(T, T)``: rows sum to 1 over columns <= row."""
    scores = 2.0 * rng.normal(size=(T, T))
    scores[np.triu_indices(T, k=1)] = -np.inf
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def _tiling(rng, prompt_len: int, n_segments: int) -> list[tuple[int, int]]:
    cuts = np.sort(rng.choice(np.arange(1, prompt_len), size=n_segments - 1, replace=False))
    bounds = [0, *[int(c) for c in cuts], prompt_len]
    return list(zip(bounds[:-1], bounds[1:]))


def _segments(spans) -> list[Segment]:
    return [
        Segment(
            "hist" if i < len(spans) - 1 else "item",
            s,
            e,
            f"s{i}",
            f"hist:{i}" if i < len(spans) - 1 else "item",
        )
        for i, (s, e) in enumerate(spans)
    ]


def segment_mass_fixed(rng) -> Case:
    attention = _causal_attention(np.random.default_rng(5), 8)
    rows, spans = [4, 5, 7], [(0, 2), (2, 3), (5, 8), (3, 5)]

    def check(outputs):
        expected = evidence.segment_mass(attention, rows, _segments(spans))
        what = f"segment_mass (8x8 attention, rows {rows}, segments {spans})"
        expect_array(what, outputs["mass"], expected)
        return "8x8 attention, 3 rows, 4 segments"

    return Case([call("mass", "segment_mass", attention, list(rows), list(spans))], check)


def _check_evidence(attention, prompt_len, spans, what) -> Case:
    def check(outputs):
        owners, _ = evidence.aggregate_evidence(attention, prompt_len, _segments(spans))
        by_label = {s.label: s.share for s in owners}
        expected = np.array([by_label[f"s{i}"] for i in range(len(spans))])
        where = f"evidence_shares ({what}, prompt_len {prompt_len}, segments {spans})"
        expect_array(where, outputs["shares"], expected)
        return what

    return Case([call("shares", "evidence_shares", attention, prompt_len, list(spans))], check)


def evidence_fixed(rng) -> Case:
    attention = _causal_attention(np.random.default_rng(9), 10)
    return _check_evidence(attention, 6, [(0, 3), (3, 5), (5, 6)], "10x10 attention")


def evidence_random(rng) -> Case:
    prompt_len = int(rng.integers(4, 20))
    T = prompt_len + int(rng.integers(2, 10))
    spans = _tiling(rng, prompt_len, int(rng.integers(2, min(prompt_len, 6) + 1)))
    return _check_evidence(_causal_attention(rng, T), prompt_len, spans, f"{T}x{T} attention")


# --------------------------------------------------------------------------- BLEU and ROUGE-L


def _bleu_case(hyps, refs, orders, what) -> Case:
    """One call of the student's corpus_bleu per BLEU order, checked in that order."""

    def check(outputs):
        done = []
        for n in orders:
            expected = metrics.corpus_bleu(hyps, refs, n)
            expect_number(f"corpus_bleu (BLEU-{n}, {what})", outputs[f"bleu{n}"], expected)
            done.append(f"BLEU-{n} {expected:.3f}")
        return ", ".join(done)

    calls = [call(f"bleu{n}", "corpus_bleu", hyps, refs, n) for n in orders]
    return Case(calls, check)


BLEU_HYPS = [
    "the tone is great".split(),
    "great strings for the price".split(),
    "the neck is easy to play".split(),
]
BLEU_REFS = [
    "the tone is great and warm".split(),
    "good strings for the price".split(),
    "the neck is very easy to play and solid".split(),
]


def bleu_fixed(rng) -> Case:
    """3 pairs, hypotheses shorter than references (c = 15 < r = 21: the brevity penalty)."""
    return _bleu_case(BLEU_HYPS, BLEU_REFS, (1, 4), "3 pairs, c=15, r=21")


def _related_pair(rng) -> tuple[list[str], list[str]]:
    """A reference and a shorter hypothesis made from it by deletions (at least one) and
    substitutions."""
    ref = _random_words(rng, 6, 14)
    keep = rng.random(len(ref)) < 0.75
    keep[int(rng.integers(len(ref)))] = False
    hyp = [w if rng.random() < 0.85 else str(rng.choice(VOCAB)) for w, k in zip(ref, keep) if k]
    return (hyp or ref[:1]), ref


def bleu_random(rng) -> Case:
    n = int(rng.integers(3, 9))
    pairs = [_related_pair(rng) for _ in range(n)]
    pairs.append((["a", "b", "c", "d", "e"], ["a", "b", "c", "d", "e", "f", "g"]))  # p_4 > 0
    hyps, refs = [p[0] for p in pairs], [p[1] for p in pairs]
    c, r = sum(map(len, hyps)), sum(map(len, refs))
    return _bleu_case(hyps, refs, (1, 2, 4), f"{n + 1} pairs, c={c}, r={r}")


def _rouge_case(pairs: list, whats: list[str], summary: str) -> Case:
    """One call of the student's rouge_l per ``(hyp, ref)`` pair, checked in that order."""

    def check(outputs):
        for i, ((hyp, ref), what) in enumerate(zip(pairs, whats)):
            p, r, f = expect_tuple("rouge_l must return (P, R, F); it", outputs[f"r{i}"], 3)
            ep, er, ef = metrics.rouge_l(hyp, ref)
            where = f"rouge_l ({what}: hyp {hyp}, ref {ref})"
            expect_number(f"{where} P", p, ep)
            expect_number(f"{where} R", r, er)
            expect_number(f"{where} F (beta = P/R)", f, ef)
        return summary

    calls = [call(f"r{i}", "rouge_l", list(h), list(r)) for i, (h, r) in enumerate(pairs)]
    return Case(calls, check)


def rouge_l_fixed(rng) -> Case:
    hyp = "great tone and a solid neck".split()
    ref = "the tone is great and the neck is solid".split()  # LCS 3: P 1/2, R 1/3
    pairs = [(hyp, ref), (["cheap"], ["good", "price"])]
    return _rouge_case(pairs, ["LCS 3 of 6 and 9 tokens", "no common token"], "no common token")


def rouge_l_random(rng) -> Case:
    pairs = [_related_pair(rng) for _ in range(3)]
    whats = [f"pair {i}" for i in range(3)]
    return _rouge_case(pairs, whats, ", ".join(whats))


# --------------------------------------------------------------------------- FMR and DIV

FEATURES = ["tone", "price", "strings", "guitar strings", "neck", "action", "sound"]


def _detect_case(cases: list[tuple[list, list, str]]) -> Case:
    """One call of the student's detect_features per ``(tokens, features, what)``."""

    def check(outputs):
        for i, (tokens, features, what) in enumerate(cases):
            expected = metrics.detect_features(tokens, features)
            got = outputs[f"d{i}"]
            if not isinstance(got, (set, frozenset)) or set(got) != expected:
                raise WrongAnswer(
                    f"detect_features ({what}: tokens {tokens}): expected the set "
                    f"{sorted(expected)}, got {got!r:.200}"
                )
        return cases[-1][2]

    calls = [
        call(f"d{i}", "detect_features", list(t), list(f)) for i, (t, f, _) in enumerate(cases)
    ]
    return Case(calls, check)


def detect_fixed(rng) -> Case:
    tokens = "new guitar strings , great tone and tone again".split()
    return _detect_case(
        [
            (tokens, FEATURES, "a two-word feature and a repeat"),
            ("the strings guitar".split(), FEATURES, "words out of order"),
        ]
    )


def detect_random(rng) -> Case:
    features = sorted(set(_random_phrases(rng, 6)))
    tokens = _random_words(rng, 5, 15)
    return _detect_case([(tokens, features, f"{len(features)} random features")])


def _random_sets(rng, n: int, features: list[str]) -> list[set[str]]:
    return [{f for f in features if rng.random() < 0.35} for _ in range(n)]


def _check_fmr(sets, gts, what) -> Case:
    def check(outputs):
        expected = metrics.feature_matching_ratio(sets, gts)
        where = f"feature_matching_ratio ({what}: sets {sets}, ground truth {gts})"
        expect_number(where, outputs["fmr"], expected)
        return what

    return Case([call("fmr", "feature_matching_ratio", [set(s) for s in sets], list(gts))], check)


def fmr_fixed(rng) -> Case:
    sets = [{"tone", "price"}, set(), {"neck"}, {"tone"}]
    return _check_fmr(sets, ["tone", "tone", "action", "tone"], "4 records")


def fmr_random(rng) -> Case:
    n = int(rng.integers(3, 12))
    sets = _random_sets(rng, n, FEATURES)
    gts = [str(rng.choice(FEATURES)) for _ in range(n)]
    return _check_fmr(sets, gts, f"{n} records")


def _check_div(sets, what) -> Case:
    def check(outputs):
        features = sorted(set().union(*sets) | {"tone"})
        expected = metrics.feature_diversity(metrics.feature_matrix(sets, features))
        expect_number(f"feature_diversity ({what}: sets {sets})", outputs["div"], expected)
        return what

    return Case([call("div", "feature_diversity", [set(s) for s in sets])], check)


def div_fixed(rng) -> Case:
    sets = [{"tone", "price"}, {"tone"}, {"neck", "tone", "price"}, set()]
    return _check_div(sets, "4 sentences")  # pairs share 1, 2, 0, 1, 0, 0: DIV 4/6


def div_random(rng) -> Case:
    n = int(rng.integers(2, 30))
    return _check_div(_random_sets(rng, n, FEATURES), f"{n} sentences")


TESTS = [
    GradedTest(
        "score_fixed", 8, score_fixed, "visible", "coverage + log-probability - repetition, fixed"
    ),
    GradedTest(
        "pick_best_fixed", 6, pick_best_fixed, "visible", "the best of 4 candidates, first on ties"
    ),
    GradedTest(
        "segment_mass_fixed",
        6,
        segment_mass_fixed,
        "visible",
        "attention mass per segment, averaged over rows",
    ),
    GradedTest(
        "evidence_fixed",
        8,
        evidence_fixed,
        "visible",
        "evidence shares over the prompt, normalised",
    ),
    GradedTest("bleu_fixed", 8, bleu_fixed, "visible", "corpus BLEU-1 and BLEU-4, fixed"),
    GradedTest("rouge_l_fixed", 7, rouge_l_fixed, "visible", "ROUGE-L P, R, F (beta = P/R)"),
    GradedTest("detect_fixed", 5, detect_fixed, "visible", "feature words in a sentence"),
    GradedTest("fmr_fixed", 4, fmr_fixed, "visible", "feature matching ratio, fixed"),
    GradedTest("div_fixed", 6, div_fixed, "visible", "feature diversity over pairs i < j"),
    GradedTest("score_random", 7, score_random, HIDDEN, "candidate score, random"),
    GradedTest("pick_best_random", 4, pick_best_random, HIDDEN, "best candidate, random"),
    GradedTest("evidence_random", 8, evidence_random, HIDDEN, "evidence shares, random"),
    GradedTest("bleu_random", 8, bleu_random, HIDDEN, "corpus BLEU-1/2/4, random corpora"),
    GradedTest("rouge_l_random", 6, rouge_l_random, HIDDEN, "ROUGE-L, random pairs"),
    GradedTest("detect_random", 3, detect_random, HIDDEN, "feature words, random"),
    GradedTest("fmr_random", 2, fmr_random, HIDDEN, "feature matching ratio, random"),
    GradedTest("div_random", 4, div_random, HIDDEN, "feature diversity, random"),
]
