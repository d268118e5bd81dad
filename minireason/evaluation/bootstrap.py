"""How sure a score is: bootstrap intervals over the evaluated records.

A corpus metric on a thousand records moves when other records are drawn. BLEU-4 moves most:
a few dozen matched 4-grams make it, and one user who repeats a sentence of their own can
bring a third of them. So beside each score, ``evaluate`` reports how far it moves:

    draw N records with replacement from the N evaluated (seeded), ``n_resamples`` times
    score every system on each draw, from per-record statistics:
        BLEU-1, BLEU-4   summed :func:`~minireason.evaluation.metrics.bleu_counts` rows
        ROUGE-L          mean of the records' ROUGE-L F (x100)
        FMR              mean of [the reason names the record's ground-truth feature]
    interval = the 2.5th and 97.5th percentiles of a system's scores over the draws

Every system is scored on the *same* draws, so the comparison is paired: ``model_ahead``
is the share of draws on which the model scores above a baseline (0.5: no telling them
apart; above 0.975 or below 0.025: the 95% interval of their difference leaves out 0).

Shapes: ``N`` records, ``R`` resamples; the statistics of one system are ``(N, k)`` arrays;
a draw is a row of ``(R, N)`` counts, how many times each record was drawn (a multinomial,
the same as drawing indices), so a draw's sums are one product ``counts @ statistics``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from minireason.evaluation.metrics import (
    bleu_counts,
    bleu_from_counts,
    detect_features,
    normalize_features,
    rouge_l,
)
from minireason.text import PhraseSet, tokens

METRICS = ("bleu1", "bleu4", "rougeL_f", "fmr")
N_RESAMPLES = 1000
LEVEL = 0.95


def record_statistics(hyps: Sequence[str], refs: Sequence[str], features_gt, feature_set) -> dict:
    """Per record, what each of :data:`METRICS` is made of: ``{"bleu1": (N, 4),
    "bleu4": (N, 10)`` (:func:`bleu_counts` rows), ``"rougeL_f": (N,)`` (x100),
    ``"fmr": (N,)`` (1.0 when the reason names the ground-truth feature) ``}``."""
    hyp_toks = [tokens(h) for h in hyps]
    ref_toks = [tokens(r) for r in refs]
    index = PhraseSet(normalize_features(feature_set))
    gt = [" ".join(tokens(f)) for f in features_gt]
    return {
        "bleu1": bleu_counts(hyp_toks, ref_toks, 1),
        "bleu4": bleu_counts(hyp_toks, ref_toks, 4),
        "rougeL_f": np.array([100.0 * rouge_l(h, r)[2] for h, r in zip(hyp_toks, ref_toks)]),
        "fmr": np.array([g in detect_features(h, index) for h, g in zip(hyp_toks, gt)], float),
    }


def resampled_scores(stats: dict, counts: np.ndarray) -> dict:
    """Each metric of one system on each draw: ``{metric: (R,)}``. ``stats`` as
    :func:`record_statistics`; ``counts`` ``(R, N)``, how often each record was drawn."""
    weights = counts.astype(np.float64)
    out = {}
    for name in METRICS:
        s = stats[name].astype(np.float64)
        if name.startswith("bleu"):
            out[name] = bleu_from_counts(weights @ s)  # (R, N) @ (N, k) -> (R, k) -> (R,)
        else:
            out[name] = weights @ s / counts.shape[1]
    return out


def bootstrap_intervals(
    answers: dict,
    refs: Sequence[str],
    features_gt: Sequence[str],
    feature_set,
    reference_system: str = "model",
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> dict:
    """The intervals of every system and the paired comparison (module docstring).

    Args:
        answers: ``{system: N reasons}``; ``reference_system`` is the one compared with the
            others (the model).
        refs, features_gt, feature_set: as :func:`~minireason.evaluation.metrics.explanation_metrics`.
        n_resamples, seed: the draws (``numpy.random.default_rng(seed)``).

    Returns:
        ``{"level", "n_resamples", "seed", "intervals": {system: {metric: [low, high]}},
        "model_ahead": {other system: {metric: share of draws}}}``.
    """
    n = len(refs)
    if n < 2:
        raise ValueError(f"bootstrap_intervals needs at least 2 records, got {n}")
    if reference_system not in answers:
        raise ValueError(f"bootstrap_intervals: no answers for {reference_system!r}")
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_resamples)
    scores = {
        name: resampled_scores(record_statistics(hyps, refs, features_gt, feature_set), counts)
        for name, hyps in answers.items()
    }
    tail = 100.0 * (1.0 - LEVEL) / 2.0
    intervals = {
        name: {m: np.percentile(s[m], [tail, 100.0 - tail]).tolist() for m in METRICS}
        for name, s in scores.items()
    }
    ours = scores[reference_system]
    ahead = {
        name: {m: float(np.mean(ours[m] > s[m])) for m in METRICS}
        for name, s in scores.items()
        if name != reference_system
    }
    return {
        "level": LEVEL,
        "n_resamples": n_resamples,
        "seed": seed,
        "intervals": intervals,
        "model_ahead": ahead,
    }
