"""A learned focus predictor, measured against the hand-made one (``predict_focus``).

    minireason bench focus --prepared DIR

Which aspect will this user write about for this item? :func:`predict_focus` answers with
three hand-weighted signals. :class:`FocusModel` learns the answer from the training reviews:
a conditional logit (a softmax over each record's candidate aspects) on the features of
:func:`candidate_features`, with their pairwise products, fitted by full-batch Adam with an
L2 penalty from zero weights (deterministic). A training record is one example: its
candidates, and which of them its target's ground-truth feature is. Everything it reads of
a training record leaves that record out (its own aspects are not counted among its item's,
and its own feature not among the item's or the user's features), so it learns what predicts
the *next* review; a validation or test record sees the whole training split, as the
prompts do.

Candidates of a record: the aspects its item's other training reviews mention, the user's
profile aspects and the item tags that are aspects. The true feature is among them for
about three records in four on Musical Instruments: the ceiling of any ranking.

:func:`compare` reports hit@1 and hit@3 (the share of records whose true feature is among
the first one or three) of both predictors on a split, :func:`format_comparison` prints them
(``minireason bench focus``, whose options are :class:`FocusBenchConfig`); docs/quality.md gives
the validation numbers. The prompts use :func:`predict_focus`: on Musical Instruments the learned model
is not reliably better (see docs/quality.md), and the hand-made one is the one a student can read.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from minireason.options import option
from minireason.prep.prepared import Prepared


@dataclass
class FocusBenchConfig:
    """The options of ``minireason bench focus``."""

    description: ClassVar[str] = (  # its --help
        "How often each focus predictor puts the true feature of a record's review first, or "
        "among its first three: predict_focus (what the prompts use) against the conditional "
        "logit of prep/focus.py, fitted on the training split; with the share of records "
        "whose feature is a candidate at all."
    )

    prepared: str = option(metavar="DIR", help="a prepared directory, from 'minireason prepare'")
    split: str = option("valid", choices=("valid", "test"), help="the records measured")
    json: str | None = option(None, metavar="FILE.json", help="also write the figures as JSON")


FEATURES = (
    "log1p(item reviews mentioning it)",
    "share of the item's reviews mentioning it",
    "in the user's profile",
    "log1p(the user's past mentions)",
    "log1p(times it was the item's feature)",
    "log1p(times it was the user's feature)",
    "log(feature rate)",
    "log(document frequency)",
    "two words",
    "1 / (1 + rank among the item's aspects)",
    "an item tag",
)


class TrainingCounts:
    """What the features count, over the training split of a prepared directory: per item
    its reviews and their features, per user their features, per aspect how often it is
    mentioned and how often it is the feature."""

    def __init__(self, prepared: Prepared):
        self.df = prepared.feature_df
        self.item_aspects = {
            item: {a: int(n) for a, n in info.get("aspects", [])}
            for item, info in prepared.items.items()
        }
        self.item_reviews = Counter(r["item"] for r in prepared.train)
        self.item_features: dict[str, Counter] = {}
        self.user_features: dict[str, Counter] = {}
        self.mentioned, self.chosen = Counter(), Counter()
        for r in prepared.train:
            if r["target"] is None:
                continue
            self.item_features.setdefault(r["item"], Counter())[r["feature"]] += 1
            self.user_features.setdefault(r["user"], Counter())[r["feature"]] += 1
            self.mentioned.update(set(r["aspects"]))
            self.chosen[r["feature"]] += 1


def candidate_features(record: dict, counts: TrainingCounts, own: bool):
    """``(candidates, X)``: the record's candidate aspects and their features ``(n, F)``
    in the order of :data:`FEATURES`. ``own``: the record is a training record, so what
    it contributed to the counts is taken out first (module doc)."""
    item = counts.item_aspects.get(record["item"], {})
    mine = set(record["aspects"]) if own else set()
    n_of = {a: n - (a in mine) for a, n in item.items()}
    n_of = {a: n for a, n in n_of.items() if n > 0}
    profile = record["profile"]["aspects"]
    tags = [t for t in record["item_tags"] if t in counts.df]
    candidates = list(dict.fromkeys([*n_of, *profile, *tags]))
    n_reviews = max(counts.item_reviews[record["item"]] - own, 1)
    ranked = sorted(n_of, key=lambda a: (-n_of[a], a))
    rank = {a: i for i, a in enumerate(ranked)}
    history = Counter(a for h in record["history"] for a in h["aspects"])
    feature = record["feature"] if own else None
    item_feats = counts.item_features.get(record["item"], Counter())
    user_feats = counts.user_features.get(record["user"], Counter())
    in_profile, tag_set = set(profile), set(tags)
    rows = []
    for a in candidates:
        mentioned = counts.mentioned[a] - (own and a in mine)
        chosen = counts.chosen[a] - (a == feature)
        rows.append(
            [
                math.log1p(n_of.get(a, 0)),
                n_of.get(a, 0) / n_reviews,
                float(a in in_profile),
                math.log1p(history[a]),
                math.log1p(item_feats[a] - (a == feature)),
                math.log1p(user_feats[a] - (a == feature)),
                math.log((chosen + 1) / (mentioned + 2)),
                math.log(counts.df.get(a, 1)),
                float(" " in a),
                1.0 / (1 + rank.get(a, len(rank))),
                float(a in tag_set),
            ]
        )
    return candidates, np.array(rows, dtype=np.float64).reshape(len(rows), len(FEATURES))


def expand(Z: np.ndarray) -> np.ndarray:
    """``(n, F)`` standardised features -> ``(n, F + F(F+1)/2)``: themselves and every
    pairwise product (squares included)."""
    i, j = np.triu_indices(Z.shape[1])
    return np.hstack([Z, Z[:, i] * Z[:, j]])


class FocusModel:
    """The conditional logit of the module doc: ``score(a) = expand(standardise(x_a)) @ w``,
    the candidates ranked by score (ties alphabetically)."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, weights: np.ndarray):
        self.mean, self.scale, self.weights = mean, scale, weights

    @classmethod
    def fit(
        cls,
        prepared: Prepared,
        epochs: int = 400,
        lr: float = 0.05,
        l2: float = 1e-3,
        counts: TrainingCounts | None = None,
    ) -> FocusModel:
        """Fit on the training records whose true feature is among their candidates
        (``counts``: the prepared directory's, when the caller has them already)."""
        counts = counts or TrainingCounts(prepared)
        blocks, answers = [], []
        for r in prepared.train:
            if r["target"] is None:
                continue
            candidates, X = candidate_features(r, counts, own=True)
            if r["feature"] in candidates:
                answers.append(sum(len(b) for b in blocks) + candidates.index(r["feature"]))
                blocks.append(X)
        if not blocks:
            raise ValueError(f"{prepared.path}: no training record to fit a focus model on")
        X = np.vstack(blocks)
        starts = np.cumsum([0] + [len(b) for b in blocks[:-1]])
        group = np.repeat(np.arange(len(blocks)), [len(b) for b in blocks])
        mean, scale = X.mean(axis=0), X.std(axis=0) + 1e-9
        Z = expand((X - mean) / scale)
        w, m, v = np.zeros(Z.shape[1]), np.zeros(Z.shape[1]), np.zeros(Z.shape[1])
        for step in range(1, epochs + 1):
            s = Z @ w
            s -= np.maximum.reduceat(s, starts)[group]
            p = np.exp(s)
            p /= np.add.reduceat(p, starts)[group]
            grad = (Z.T @ p - Z[answers].sum(axis=0)) / len(blocks) + l2 * w
            m = 0.9 * m + 0.1 * grad
            v = 0.999 * v + 0.001 * grad * grad
            w -= lr * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
        return cls(mean, scale, w)

    def rank(self, candidates: list[str], X: np.ndarray) -> list[str]:
        """The candidates, best first."""
        if not candidates:
            return []
        scores = expand((X - self.mean) / self.scale) @ self.weights
        return [candidates[i] for i in np.lexsort((np.array(candidates), -scores))]


def hits(ranked: list[list[str]], truth: list[str], k: int) -> float:
    """The share of records whose true feature is among the first ``k`` of its ranking."""
    return sum(t in r[:k] for r, t in zip(ranked, truth, strict=True)) / len(truth)


def compare(
    prepared: Prepared, split: str = FocusBenchConfig.split, model: FocusModel | None = None
) -> dict:
    """hit@1 and hit@3 on ``split``'s records with a target, of :func:`predict_focus` (as
    ``prepare`` called it: :meth:`Prepared.focus_for`) and of :class:`FocusModel` (fitted on
    the training split unless given); with the share of records whose feature is a
    candidate at all."""
    counts = TrainingCounts(prepared)
    model = model or FocusModel.fit(prepared, counts=counts)
    records = [r for r in prepared.split(split) if r["target"] is not None]
    truth = [r["feature"] for r in records]
    heuristic, learned, covered = [], [], 0
    for r in records:
        heuristic.append(prepared.focus_for(r["item"], r["profile"]["aspects"]))
        candidates, X = candidate_features(r, counts, own=False)
        learned.append(model.rank(candidates, X))
        covered += r["feature"] in candidates
    return {
        "split": split,
        "n": len(records),
        "candidates_hold_the_feature": covered / len(records),
        "heuristic": {"hit@1": hits(heuristic, truth, 1), "hit@3": hits(heuristic, truth, 3)},
        "learned": {"hit@1": hits(learned, truth, 1), "hit@3": hits(learned, truth, 3)},
    }


def format_comparison(result: dict) -> str:
    """:func:`compare`'s figures as text: how many records, the candidates' ceiling, and
    hit@1 and hit@3 of each predictor."""
    lines = [
        f"{result['n']} {result['split']} records with a target; the candidates hold the "
        f"feature for {result['candidates_hold_the_feature']:.3f}"
    ]
    for name in ("heuristic", "learned"):
        hit = result[name]
        lines.append(f"  {name:9}  hit@1 {hit['hit@1']:.3f}  hit@3 {hit['hit@3']:.3f}")
    return "\n".join(lines)
