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

import numpy as np

from minireason.course.grading import GradedTest, WrongAnswer, expect_array, expect_tuple
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
    try:
        value = float(got)
    except (TypeError, ValueError):
        raise WrongAnswer(f"{what}: expected a number, got {type(got).__name__}") from None
    if not np.isfinite(value) or not np.isclose(value, expected, rtol=rtol, atol=atol):
        raise WrongAnswer(f"{what}: expected {expected:.8g}, got {value:.8g}")
    return value


def _weights(w: dict) -> scoring.ScoreWeights:
    return scoring.ScoreWeights(
        user=w["user"], item=w["item"], logprob=w["logprob"], repetition=w["repetition"]
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


def _check_score(student, words, logprobs, aspects, tags, w, what) -> str:
    expected = _reference_score(words, logprobs, aspects, tags, w)
    got = student.score_candidate(list(words), logprobs.copy(), list(aspects), list(tags), dict(w))
    expect_number(
        f"score_candidate ({what}: words {words}, aspects {aspects}, tags {tags})", got, expected
    )
    return what


def score_fixed(student, rng) -> str:
    words = "great tone and great tone with bright strings".split()
    logprobs = np.array([-1.0, -2.0, -0.5, -0.5, -1.0, -3.0, -2.0, -1.5, -0.5])
    aspects = ["tone", "price", "bright strings"]  # 2 of 3 mentioned
    tags = ["strings", "neck"]  # 1 of 2 mentioned
    return _check_score(
        student,
        words,
        logprobs,
        aspects,
        tags,
        FIXED_WEIGHTS,
        "a repeated bigram, a two-word aspect",
    )


def score_random(student, rng) -> str:
    words = _random_words(rng, 4, 14)
    aspects = _random_phrases(rng, int(rng.integers(0, 4)))
    aspects += [" ".join(words[:2])] if " ".join(words[:2]) not in aspects else []
    tags = _random_phrases(rng, int(rng.integers(0, 4)))
    logprobs = -rng.exponential(1.5, size=len(words) + 1)
    return _check_score(
        student, words, logprobs, aspects, tags, _random_weights(rng), f"{len(words)} words"
    )


def _check_pick(student, candidates, logprobs, aspects, tags, w, what) -> str:
    scores = [_reference_score(c, lp, aspects, tags, w) for c, lp in zip(candidates, logprobs)]
    expected = int(np.argmax(scores))  # the first of equal bests
    got = student.pick_best(
        [list(c) for c in candidates],
        [lp.copy() for lp in logprobs],
        list(aspects),
        list(tags),
        dict(w),
    )
    if not isinstance(got, (int, np.integer)) or isinstance(got, bool):
        raise WrongAnswer(f"pick_best ({what}): expected an int index, got {type(got).__name__}")
    if int(got) != expected:
        raise WrongAnswer(
            f"pick_best ({what}): expected candidate {expected} (score "
            f"{scores[expected]:.4f}), got {int(got)}; scores "
            f"{[round(s, 4) for s in scores]}"
        )
    return what


def pick_best_fixed(student, rng) -> str:
    candidates = [
        "the sound is very nice".split(),  # likely, covers nothing
        "warm tone for the price".split(),  # covers 2 aspects
        "warm tone warm tone warm tone".split(),  # covers 1 aspect, loops
        "warm tone for the price".split(),
    ]  # a tie with 1: 1 wins
    logprobs = [np.full(6, -0.5), np.full(6, -2.0), np.full(7, -0.3), np.full(6, -2.0)]
    return _check_pick(
        student,
        candidates,
        logprobs,
        ["tone", "price"],
        ["warm"],
        FIXED_WEIGHTS,
        "4 candidates, the likeliest covers nothing",
    )


def pick_best_random(student, rng) -> str:
    n = int(rng.integers(3, 9))
    candidates = [_random_words(rng, 3, 12) for _ in range(n)]
    logprobs = [-rng.exponential(1.5, size=len(c) + 1) for c in candidates]
    aspects, tags = _random_phrases(rng, 3), _random_phrases(rng, 2)
    return _check_pick(
        student, candidates, logprobs, aspects, tags, _random_weights(rng), f"{n} random candidates"
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


def segment_mass_fixed(student, rng) -> str:
    attention = _causal_attention(np.random.default_rng(5), 8)
    rows, spans = [4, 5, 7], [(0, 2), (2, 3), (5, 8), (3, 5)]
    expected = evidence.segment_mass(attention, rows, _segments(spans))
    got = student.segment_mass(attention.copy(), list(rows), list(spans))
    expect_array(f"segment_mass (8x8 attention, rows {rows}, segments {spans})", got, expected)
    return "8x8 attention, 3 rows, 4 segments"


def _check_evidence(student, attention, prompt_len, spans, what) -> str:
    owners, _ = evidence.aggregate_evidence(attention, prompt_len, _segments(spans))
    by_label = {s.label: s.share for s in owners}
    expected = np.array([by_label[f"s{i}"] for i in range(len(spans))])
    got = student.evidence_shares(attention.copy(), prompt_len, list(spans))
    expect_array(
        f"evidence_shares ({what}, prompt_len {prompt_len}, segments {spans})", got, expected
    )
    return what


def evidence_fixed(student, rng) -> str:
    attention = _causal_attention(np.random.default_rng(9), 10)
    return _check_evidence(student, attention, 6, [(0, 3), (3, 5), (5, 6)], "10x10 attention")


def evidence_random(student, rng) -> str:
    prompt_len = int(rng.integers(4, 20))
    T = prompt_len + int(rng.integers(2, 10))
    spans = _tiling(rng, prompt_len, int(rng.integers(2, min(prompt_len, 6) + 1)))
    return _check_evidence(
        student, _causal_attention(rng, T), prompt_len, spans, f"{T}x{T} attention"
    )


# --------------------------------------------------------------------------- BLEU and ROUGE-L


def _check_bleu(student, hyps, refs, max_n, what) -> str:
    expected = metrics.corpus_bleu(hyps, refs, max_n)
    got = student.corpus_bleu([list(h) for h in hyps], [list(r) for r in refs], max_n)
    expect_number(f"corpus_bleu (BLEU-{max_n}, {what})", got, expected)
    return f"BLEU-{max_n} {expected:.3f}"


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


def bleu_fixed(student, rng) -> str:
    """3 pairs, hypotheses shorter than references (c = 15 < r = 21: the brevity penalty)."""
    done = [_check_bleu(student, BLEU_HYPS, BLEU_REFS, n, "3 pairs, c=15, r=21") for n in (1, 4)]
    return ", ".join(done)


def _related_pair(rng) -> tuple[list[str], list[str]]:
    """A reference and a shorter hypothesis made from it by deletions (at least one) and
    substitutions."""
    ref = _random_words(rng, 6, 14)
    keep = rng.random(len(ref)) < 0.75
    keep[int(rng.integers(len(ref)))] = False
    hyp = [w if rng.random() < 0.85 else str(rng.choice(VOCAB)) for w, k in zip(ref, keep) if k]
    return (hyp or ref[:1]), ref


def bleu_random(student, rng) -> str:
    n = int(rng.integers(3, 9))
    pairs = [_related_pair(rng) for _ in range(n)]
    pairs.append((["a", "b", "c", "d", "e"], ["a", "b", "c", "d", "e", "f", "g"]))  # p_4 > 0
    hyps, refs = [p[0] for p in pairs], [p[1] for p in pairs]
    c, r = sum(map(len, hyps)), sum(map(len, refs))
    return ", ".join(
        _check_bleu(student, hyps, refs, m, f"{n + 1} pairs, c={c}, r={r}") for m in (1, 2, 4)
    )


def _check_rouge_l(student, hyp, ref, what) -> str:
    result = student.rouge_l(list(hyp), list(ref))
    p, r, f = expect_tuple("rouge_l must return (P, R, F); it", result, 3)
    ep, er, ef = metrics.rouge_l(hyp, ref)
    where = f"rouge_l ({what}: hyp {hyp}, ref {ref})"
    expect_number(f"{where} P", p, ep)
    expect_number(f"{where} R", r, er)
    expect_number(f"{where} F (beta = P/R)", f, ef)
    return what


def rouge_l_fixed(student, rng) -> str:
    hyp = "great tone and a solid neck".split()
    ref = "the tone is great and the neck is solid".split()  # LCS 3: P 1/2, R 1/3
    _check_rouge_l(student, hyp, ref, "LCS 3 of 6 and 9 tokens")
    return _check_rouge_l(student, ["cheap"], ["good", "price"], "no common token")


def rouge_l_random(student, rng) -> str:
    done = []
    for i in range(3):
        hyp, ref = _related_pair(rng)
        done.append(_check_rouge_l(student, hyp, ref, f"pair {i}"))
    return ", ".join(done)


# --------------------------------------------------------------------------- FMR and DIV

FEATURES = ["tone", "price", "strings", "guitar strings", "neck", "action", "sound"]


def _check_detect(student, tokens, features, what) -> str:
    expected = metrics.detect_features(tokens, features)
    got = student.detect_features(list(tokens), list(features))
    if not isinstance(got, (set, frozenset)) or set(got) != expected:
        raise WrongAnswer(
            f"detect_features ({what}: tokens {tokens}): expected the set "
            f"{sorted(expected)}, got {got!r:.200}"
        )
    return what


def detect_fixed(student, rng) -> str:
    tokens = "new guitar strings , great tone and tone again".split()
    _check_detect(student, tokens, FEATURES, "a two-word feature and a repeat")
    return _check_detect(student, "the strings guitar".split(), FEATURES, "words out of order")


def detect_random(student, rng) -> str:
    features = sorted(set(_random_phrases(rng, 6)))
    tokens = _random_words(rng, 5, 15)
    return _check_detect(student, tokens, features, f"{len(features)} random features")


def _random_sets(rng, n: int, features: list[str]) -> list[set[str]]:
    return [{f for f in features if rng.random() < 0.35} for _ in range(n)]


def _check_fmr(student, sets, gts, what) -> str:
    expected = metrics.feature_matching_ratio(sets, gts)
    got = student.feature_matching_ratio([set(s) for s in sets], list(gts))
    expect_number(
        f"feature_matching_ratio ({what}: sets {sets}, ground truth {gts})", got, expected
    )
    return what


def fmr_fixed(student, rng) -> str:
    sets = [{"tone", "price"}, set(), {"neck"}, {"tone"}]
    return _check_fmr(student, sets, ["tone", "tone", "action", "tone"], "4 records")


def fmr_random(student, rng) -> str:
    n = int(rng.integers(3, 12))
    sets = _random_sets(rng, n, FEATURES)
    gts = [str(rng.choice(FEATURES)) for _ in range(n)]
    return _check_fmr(student, sets, gts, f"{n} records")


def _check_div(student, sets, what) -> str:
    features = sorted(set().union(*sets) | {"tone"})
    expected = metrics.feature_diversity(metrics.feature_matrix(sets, features))
    got = student.feature_diversity([set(s) for s in sets])
    expect_number(f"feature_diversity ({what}: sets {sets})", got, expected)
    return what


def div_fixed(student, rng) -> str:
    sets = [{"tone", "price"}, {"tone"}, {"neck", "tone", "price"}, set()]
    return _check_div(student, sets, "4 sentences")  # pairs share 1, 2, 0, 1, 0, 0: DIV 4/6


def div_random(student, rng) -> str:
    n = int(rng.integers(2, 30))
    return _check_div(student, _random_sets(rng, n, FEATURES), f"{n} sentences")


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
