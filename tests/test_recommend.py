"""Recommenders and ranking metrics on tiny hand-made data where the right answer is obvious."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minireason.reason.recommend import (
    ContentSimilarity,
    Hybrid,
    ItemCF,
    Popularity,
    evaluate_ranking,
)

# Two taste groups: {a, b} (guitar) and {c, d} (piano); e is a rare extra.
# catalogue order (first appearance): a, b, c, d, e
# users per item (popularity): a 3 (u1 u2 u5), b 2, c 3 (u3 u4 u6), d 2, e 1
TRAIN = {
    "u1": ["a", "b"],
    "u2": ["a", "b"],
    "u3": ["c", "d"],
    "u4": ["c", "d"],
    "u5": ["a", "e"],
    "u6": ["c"],
}
TAGS = {
    "a": ["rock", "guitar"],
    "b": ["guitar", "strings"],
    "c": ["piano", "keys"],
    "d": ["piano", "pedal"],
    "e": ["rock", "drums"],
}


def items(recs):
    return [item for item, _ in recs]


def test_popularity_ranks_by_users_and_breaks_ties():
    model = Popularity().fit(TRAIN)
    # u6 has seen c; a (3 users) first, then b and d (2 each, b earlier in the catalogue), e
    recs = model.recommend("u6", k=10)
    assert items(recs) == ["a", "b", "d", "e"]
    assert [s for _, s in recs] == [3.0, 2.0, 2.0, 1.0]
    assert items(model.recommend("u6", k=10, exclude_seen=False)) == ["a", "c", "b", "d", "e"]


def test_itemcf_cosine_by_hand():
    model = ItemCF().fit(TRAIN)
    # c and d share users u3, u4: cos = 2 / sqrt(3 * 2) = 0.8165 (c has 3 users, d has 2)
    recs = model.recommend("u6", k=2)
    assert items(recs) == ["d", "a"]  # a: score 0, first of the rest by popularity
    assert recs[0][1] == pytest.approx(2 / math.sqrt(6))
    # u5 has a and e: b = cos(a, b) + cos(e, b) = 2/sqrt(6) + 0; then c (pop 3) before d
    recs = model.recommend("u5", k=3)
    assert items(recs) == ["b", "c", "d"]
    assert recs[0][1] == pytest.approx(2 / math.sqrt(6))
    # the similarity matrix is symmetric with a zero diagonal
    s = model.similarity
    assert np.allclose(s, s.T) and np.all(np.diag(s) == 0)
    # a and e share u5 only: 1 / sqrt(3 * 1)
    assert s[0, 4] == pytest.approx(1 / math.sqrt(3))


def test_equal_scores_fall_back_to_popularity():
    # catalogue order p, q, r; users per item p 1, q 1, r 3. Item p co-occurs with nothing,
    # so ItemCF gives user x all-zero scores: r (3 users) must come before q (catalogue order)
    train = {"x": ["p"], "y": ["q", "r"], "z": ["r"], "w": ["r"]}
    assert items(ItemCF().fit(train).recommend("x", k=2)) == ["r", "q"]


def test_content_tfidf_cosine_by_hand():
    model = ContentSimilarity().fit(TRAIN, TAGS)
    # 5 items; df(piano) = 2 -> idf = ln(6/3) + 1; df(keys) = df(pedal) = 1 -> ln(6/2) + 1
    # profile(u6) = c = [piano i2, keys i1]; d = [piano i2, pedal i1]
    # cos = i2^2 / (i2^2 + i1^2) = 2.8667 / (2.8667 + 4.4041) = 0.3943
    i2, i1 = math.log(6 / 3) + 1, math.log(6 / 2) + 1
    recs = model.recommend("u6", k=1)
    assert items(recs) == ["d"]
    assert recs[0][1] == pytest.approx(i2**2 / (i2**2 + i1**2))
    assert recs[0][1] == pytest.approx(0.3943, abs=1e-4)


def test_hybrid_combines_minmax_scores():
    cf = ItemCF().fit(TRAIN)
    content = ContentSimilarity().fit(TRAIN, TAGS)
    hybrid = Hybrid(alpha=0.3).fit(TRAIN, TAGS)
    # u5 candidates b, c, d: min-max each part over them, then 0.3 * cf + 0.7 * content
    cf_s = dict(cf.recommend("u5", k=10))
    co_s = dict(content.recommend("u5", k=10))

    def minmax(d):
        lo, hi = min(d.values()), max(d.values())
        return {k: (v - lo) / (hi - lo) if hi > lo else 0.0 for k, v in d.items()}

    cf_n, co_n = minmax(cf_s), minmax(co_s)
    expected = {k: 0.3 * cf_n[k] + 0.7 * co_n[k] for k in cf_s}
    got = dict(hybrid.recommend("u5", k=10))
    assert got.keys() == expected.keys()
    for k in got:
        assert got[k] == pytest.approx(expected[k])
    # the extremes are the parts' rankings
    for user in TRAIN:
        assert items(Hybrid(alpha=1.0).fit(TRAIN, TAGS).recommend(user)) == items(
            cf.recommend(user)
        )
        assert items(Hybrid(alpha=0.0).fit(TRAIN, TAGS).recommend(user)) == items(
            content.recommend(user)
        )
    with pytest.raises(ValueError, match="alpha"):
        Hybrid(alpha=1.5)


@pytest.mark.parametrize(
    "model",
    [Popularity(), ItemCF(), ContentSimilarity(), Hybrid()],
    ids=lambda m: type(m).__name__,
)
def test_cold_start_is_popularity(model):
    model.fit({**TRAIN, "empty": []}, TAGS)
    assert model.is_cold("stranger") and model.is_cold("empty") and not model.is_cold("u1")
    # all of a and c have 3 users (a first in the catalogue), b and d 2, e 1
    assert items(model.recommend("stranger", k=10)) == ["a", "c", "b", "d", "e"]
    assert items(model.recommend("empty", k=2)) == ["a", "c"]


def test_evaluate_ranking_hand_computed():
    test_items = {"u6": "d", "u5": "b", "stranger": "a"}
    # Popularity, k = 2:
    #   u6 (seen c)   -> [a, b]: d missing                      hr 0, ndcg 0
    #   u5 (seen a e) -> [c, b]: b at rank 1                     hr 1, ndcg 1/log2(3)
    #   stranger      -> cold start [a, c]: a at rank 0          hr 1, ndcg 1/log2(2) = 1
    out = evaluate_ranking(Popularity().fit(TRAIN), test_items, k=2)
    assert out["hr@2"] == pytest.approx(2 / 3)
    assert out["ndcg@2"] == pytest.approx((0 + 1 / math.log2(3) + 1) / 3)
    assert out["n_users"] == 3 and out["n_cold_start"] == 1
    assert out["n_unknown_test_items"] == 0 and out["n_test_item_seen"] == 0
    # ItemCF, k = 2: u6 -> [d, a], u5 -> [b, c], stranger -> [a, c]: all at rank 0
    out = evaluate_ranking(ItemCF().fit(TRAIN), test_items, k=2)
    assert out["hr@2"] == 1.0 and out["ndcg@2"] == 1.0


def test_evaluate_counts_unknown_and_seen_test_items():
    # "zzz" is not in the catalogue; u1's held-out "a" is already in u1's history
    out = evaluate_ranking(Popularity().fit(TRAIN), {"u6": "zzz", "u1": "a", "u3": "a"}, k=10)
    assert out["n_unknown_test_items"] == 1 and out["n_test_item_seen"] == 1
    # only u3 can hit: a is first for u3 (seen c, d) -> hr 1/3, ndcg 1/3
    assert out["hr@10"] == pytest.approx(1 / 3) and out["ndcg@10"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="empty"):
        evaluate_ranking(Popularity().fit(TRAIN), {})


def test_unknown_tag_items_are_counted_skips():
    model = ContentSimilarity().fit(TRAIN, {**TAGS, "ghost": ["rock"], "phantom": ["x"]})
    assert model.n_unknown_tag_items == 2
    assert "ghost" not in items(model.recommend("u5", k=10))
    assert Hybrid().fit(TRAIN, {**TAGS, "ghost": ["rock"]}).n_unknown_tag_items == 1


def test_free_form_history_and_bad_input():
    model = ItemCF().fit(TRAIN)
    assert items(model.recommend_for_history(["c"], k=1)) == ["d"]
    assert model.recommend_for_history(["c"], k=1) == model.recommend("u6", k=1)
    with pytest.raises(ValueError, match=r"unknown item id\(s\) \['ghost'\]"):
        model.recommend_for_history(["c", "ghost"])
    with pytest.raises(ValueError, match="k must be a positive int"):
        model.recommend("u6", k=0)
    with pytest.raises(ValueError, match="needs item_tags"):
        ContentSimilarity().fit(TRAIN)
    with pytest.raises(TypeError, match=r"train_seqs\['u1'\] must be a list"):
        Popularity().fit({"u1": "ab"})
    with pytest.raises(TypeError, match=r"item_tags\['a'\] must be a list"):
        ContentSimilarity().fit(TRAIN, {"a": "rock"})
    with pytest.raises(ValueError, match="no items"):
        Popularity().fit({"u1": []})
