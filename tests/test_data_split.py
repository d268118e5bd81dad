"""Splits and k-core filtering."""

from __future__ import annotations

from collections import Counter

import pytest

from minireason.data.records import Review
from minireason.data.split import k_core, leave_last_out, random_split


def _reviews():
    out = []
    for u, n in (("a", 5), ("b", 3), ("c", 2), ("d", 1)):
        for t in range(n):  # written newest first, so the split must sort by time
            out.append(
                Review(user=u, item=f"{u}{t}", rating=4.0, time=1000 - t * 10, line=len(out))
            )
    return out


def test_leave_last_out_is_chronological_per_user():
    splits = leave_last_out(_reviews())
    by = {name: Counter(r.user for r in rs) for name, rs in splits.items()}
    assert by["test"] == {"a": 1, "b": 1, "c": 1}
    assert by["valid"] == {"a": 1, "b": 1}
    assert by["train"] == {"a": 3, "b": 1, "c": 1, "d": 1}
    for user in "abc":
        last_train = max(r.time for r in splits["train"] if r.user == user)
        (test,) = [r for r in splits["test"] if r.user == user]
        assert test.time == 1000 and last_train < test.time  # the newest review is the test one


def test_random_split_is_seeded_and_8_1_1():
    reviews = [Review("u", str(i), 3.0, i) for i in range(1000)]
    a, b, c = (
        random_split(reviews, seed=1),
        random_split(reviews, seed=1),
        random_split(reviews, seed=2),
    )
    assert {k: len(v) for k, v in a.items()} == {"train": 800, "valid": 100, "test": 100}
    assert a == b and a != c
    assert sorted(r.item for rs in a.values() for r in rs) == sorted(r.item for r in reviews)
    with pytest.raises(ValueError, match="summing to 1"):
        random_split(reviews, ratios=(0.5, 0.5, 0.5))


def test_k_core_iterates_to_a_fixpoint():
    # i3 has 1 review; removing it leaves u3 with 1 review, which must go too.
    pairs = [("u1", "i1"), ("u1", "i2"), ("u2", "i1"), ("u2", "i2"), ("u3", "i2"), ("u3", "i3")]
    reviews = [Review(u, i, 3.0, 0) for u, i in pairs]
    kept = k_core(reviews, 2)
    assert sorted((r.user, r.item) for r in kept) == pairs[:4]
    assert k_core(reviews, 1) == reviews
