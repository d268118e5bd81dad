"""Train / validation / test splits, and optional k-core filtering.

- ``leave_last_out`` (default): each user's history sorted by time; the last review goes to
  test, the one before to validation, the rest to training. A user with 2 reviews gives one
  to test and one to training; a user with 1 review trains only. This is the sequential-
  recommendation protocol: the model never sees a user's future.
- ``random_split``: a seeded shuffle cut 8:1:1 (the PETER/PEPLER protocol).
- ``k_core``: repeatedly drop users and items with fewer than ``k`` reviews until none is left.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from minireason.data.clean import sort_histories
from minireason.data.records import Review

SPLITS = ("train", "valid", "test")


def leave_last_out(reviews: list[Review]) -> dict[str, list[Review]]:
    """``{"train", "valid", "test"}`` lists, chronological per user (see module doc)."""
    out = {name: [] for name in SPLITS}
    for history in sort_histories(reviews).values():
        n = len(history)
        n_test = 1 if n >= 2 else 0
        n_valid = 1 if n >= 3 else 0
        out["train"].extend(history[: n - n_test - n_valid])
        out["valid"].extend(history[n - n_test - n_valid : n - n_test])
        out["test"].extend(history[n - n_test :])
    return out


def random_split(
    reviews: list[Review], seed: int = 0, ratios=(0.8, 0.1, 0.1)
) -> dict[str, list[Review]]:
    """A seeded random split with the given (train, valid, test) ratios."""
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1.0) > 1e-9:
        raise ValueError(f"split ratios must be 3 non-negative numbers summing to 1, got {ratios}")
    order = np.random.default_rng(seed).permutation(len(reviews))
    n_train = int(round(ratios[0] * len(reviews)))
    n_valid = int(round(ratios[1] * len(reviews)))
    cuts = {
        "train": order[:n_train],
        "valid": order[n_train : n_train + n_valid],
        "test": order[n_train + n_valid :],
    }
    return {name: [reviews[i] for i in sorted(idx)] for name, idx in cuts.items()}


def k_core(reviews: list[Review], k: int) -> list[Review]:
    """Keep only reviews whose user and item both have >= ``k`` reviews, iterated to a fixpoint."""
    if k <= 1:
        return list(reviews)
    current = list(reviews)
    while True:
        users = Counter(r.user for r in current)
        items = Counter(r.item for r in current)
        kept = [r for r in current if users[r.user] >= k and items[r.item] >= k]
        if len(kept) == len(current):
            return kept
        current = kept
