"""Aspect mining, explanation targets, item tags and leakage-free user history."""

from __future__ import annotations

import math

import pytest

from minireason.data.records import ItemMeta, Review
from minireason.prep.features import (
    BAD_LENGTH,
    NO_ASPECT,
    ItemFeatures,
    Target,
    explanation_target,
    feature_rates,
    history_items,
    is_candidate,
    mine_aspects,
    predict_focus,
    profile,
    split_sentences,
    tag_counts,
    target_focus,
)

TEXTS = [
    "The strings sound bright. Great tuner too.",
    "These strings last long and the tuner is accurate.",
    "Good cable, the gig bag is sturdy.",
    "I love the gig bag and the strings.",
    "The tuner clip broke. The strings are fine.",
]


def test_candidates_exclude_stop_sentiment_and_adverb_words():
    assert is_candidate("strings") and is_candidate("tuner") and is_candidate("cable")
    for word in ("the", "great", "love", "product", "quickly", "adjustable", "an"):
        assert not is_candidate(word), word


def test_mining_ranks_by_document_frequency_with_bigrams():
    vocab = mine_aspects(TEXTS, n_unigrams=3, n_bigrams=1, min_df=2)
    assert vocab.aspects == ["strings", "tuner", "bag", "gig bag"]
    assert vocab.df == {"strings": 4, "tuner": 3, "bag": 2, "gig bag": 2}
    assert mine_aspects(TEXTS, min_df=5).df == {}


def test_sentences_split_on_glued_amazon_text():
    assert split_sentences("It works.I like it! Really? yes") == [
        "It works.",
        "I like it!",
        "Really?",
        "yes",
    ]


def test_target_is_first_aspect_sentence_of_reason_length():
    vocab = mine_aspects(TEXTS, n_unigrams=3, n_bigrams=1, min_df=2)
    r = Review("u", "i", 4.0, 0, text="Arrived on time. The gig bag feels sturdy and roomy.")
    target = explanation_target(r, vocab)
    assert target == Target("The gig bag feels sturdy and roomy.", "gig bag", 4.0)
    assert (
        explanation_target(Review("u", "i", 3.0, 0, text="Nothing to say here."), vocab)
        == NO_ASPECT
    )
    long = "The strings " + "really " * 30 + "ring."
    assert explanation_target(Review("u", "i", 3.0, 0, text=long), vocab) == BAD_LENGTH


def test_item_tags_prefer_metadata_and_never_use_the_review_itself():
    vocab = mine_aspects(TEXTS, n_unigrams=3, n_bigrams=1, min_df=2)
    own = Review("u", "x", 5.0, 0, text="The gig bag is great.")
    other = Review("v", "x", 4.0, 0, text="Fresh strings.")
    feats = ItemFeatures([own, other], vocab, {"m": ItemMeta("m", tags=["tuners", "snark"])})
    assert feats.tags("m") == ["tuners", "snark"]
    assert set(feats.tags("x")) == {"bag", "gig bag", "strings"}
    assert feats.tags("x", exclude=own) == ["strings"]


def test_history_and_profile_come_from_the_given_past_only():
    vocab = mine_aspects(TEXTS, n_unigrams=3, n_bigrams=1, min_df=2)
    past = [
        Review("u", "a", 5.0, 1, text="Nice strings."),
        Review("u", "b", 2.0, 2, text="Bad tuner."),
    ]
    feats = ItemFeatures(past, vocab)
    hist = history_items(past, feats, max_items=1)
    assert [(h.item, h.aspects, h.rating) for h in hist] == [("b", ["tuner"], 2.0)]
    assert profile(history_items(past, feats, 5)) == {
        "aspects": ["strings", "tuner"],
        "tags": ["strings", "tuner"],
    }
    assert profile([]) == {"aspects": [], "tags": []}


# --------------------------------------------------------------------------- focus


def test_target_focus_is_the_sentences_aspects_most_specific_first():
    vocab = mine_aspects(TEXTS, min_df=1)
    # df: strings 4, tuner 3, gig bag 2 (a bigram beats its own words at equal df)
    assert target_focus("The gig bag holds strings and a tuner.", vocab) == [
        "gig bag",
        "bag",
        "gig",
    ]
    assert target_focus("The gig bag holds strings and a tuner.", vocab, k=5)[3:] == [
        "tuner",
        "strings",
    ]
    assert target_focus("Nothing to see here.", vocab) == []


def test_feature_rates_are_add_one_smoothed_shares():
    rates = feature_rates(
        [
            (["strings", "tuner"], "tuner"),
            (["strings"], "strings"),
            (["strings", "tuner", "tuner"], "tuner"),
        ]
    )
    # strings: mentioned 3 times, chosen once; tuner: mentioned twice (sets), chosen twice
    assert rates == {"strings": pytest.approx(2 / 5), "tuner": pytest.approx(3 / 4)}
    assert list(feature_rates([(["tuner", "strings", "cable"], "cable")])) == [
        "cable",
        "strings",
        "tuner",
    ]  # sorted: the same features.json every run


def test_predict_focus_formula_and_fallbacks():
    item = [("strings", 9), ("tuner", 3), ("cable", 3)]
    rates = {"strings": 0.05, "tuner": 0.5, "cable": 0.5}
    w = {"item": 1.0, "profile": 0.25, "rate": 0.5}
    score = {a: w["item"] * math.log1p(n) + w["rate"] * math.log(rates[a]) for a, n in item}
    score["cable"] += w["profile"]
    expected = sorted(score, key=lambda a: (-score[a], a))
    assert predict_focus(item, ["cable"], rates, k=3, weights=w) == expected
    assert expected == ["cable", "tuner", "strings"]  # the rate outweighs 9 mentions
    assert predict_focus(item, [], {}, k=2) == ["strings", "cable"]  # unknown rate: 0.5
    assert predict_focus([], ["noise", "hum"], {}, k=3) == ["hum", "noise"]  # cold item
    assert predict_focus(item, [], rates, k=0) == []
    assert predict_focus([], [], rates, k=3) == []


def test_tag_counts_keep_the_order_of_known_tags():
    assert tag_counts(["capo", "zzz", "guitar", "capo"], {"capo", "guitar"}) == [
        ("capo", 2),
        ("guitar", 1),
    ]
    assert predict_focus(tag_counts(["capo", "guitar"], {"capo", "guitar"}), [], {}, k=1) == [
        "capo"
    ]


# --------------------------------------------------------------------------- evidence


def _review(user, item, text, time=0, line=1):
    return Review(user=user, item=item, rating=5.0, time=time, text=text, line=line)


EVIDENCE_REVIEWS = [
    _review("u1", "i1", "The strings sound bright and the tuner is accurate. Nice.", 1, 1),
    _review("u2", "i1", "These strings last long on my old guitar. The gig bag is fine.", 2, 2),
    _review("u3", "i1", "Good strings.", 3, 3),  # too short: fewer than MIN_TARGET_WORDS
    _review("u2", "i2", "The gig bag is sturdy and has room for the strings too.", 4, 4),
]


def _index(max_tokens=32):
    from minireason.prep.features import AspectVocabulary, EvidenceIndex

    vocab = AspectVocabulary({"strings": 4, "tuner": 2, "gig bag": 2, "guitar": 1})
    return EvidenceIndex(EVIDENCE_REVIEWS, vocab, lambda s: len(s.split()), max_tokens)


def test_evidence_comes_from_other_users_and_prefers_more_of_the_focus():
    index = _index()
    # u9 sees both reviews of i1: the one mentioning strings *and* tuner wins
    assert index.choose("i1", ["strings", "tuner"], "u9", k=1) == [
        "The strings sound bright and the tuner is accurate."
    ]
    # u1 never sees its own review; "Good strings." is too short to be evidence
    assert index.choose("i1", ["strings", "tuner"], "u1", k=2) == [
        "These strings last long on my old guitar."
    ]
    # the earlier focus aspect breaks a tie in the number of focus aspects
    assert index.choose("i1", ["guitar", "tuner"], "u9", k=1) == [
        "These strings last long on my old guitar."
    ]
    assert index.choose("i1", [], "u9", k=1) == []
    assert index.choose("i1", ["strings"], "u9", k=0) == []


def test_several_evidence_sentences_cover_the_focus_from_other_customers_without_repeats():
    from minireason.prep.features import AspectVocabulary, EvidenceIndex

    reviews = [
        # the best: both focus aspects (u1); its second sentence is the same customer again
        _review(
            "u1", "i1", "The strings and the tuner work well together. The tuner is bright.", 1, 1
        ),
        # ranked next (both aspects) but says the same as the first: a repeat
        _review("u2", "i1", "Strings and tuner work well together.", 2, 2),
        # one aspect each; the gig bag is the focus aspect still uncovered
        _review("u3", "i1", "These strings last a long time on stage.", 3, 3),
        _review("u4", "i1", "The gig bag holds everything I carry around.", 4, 4),
    ]
    vocab = AspectVocabulary({"strings": 5, "tuner": 3, "gig bag": 2})
    index = EvidenceIndex(reviews, vocab, lambda s: len(s.split()), 32)
    focus = ["strings", "tuner", "gig bag"]
    first = "The strings and the tuner work well together."
    assert index.choose("i1", focus, "u9", k=1) == [first]
    assert index.choose("i1", focus, "u9", k=2) == [
        first,
        "The gig bag holds everything I carry around.",
    ]
    # nothing new to cover: the best-ranked sentence that repeats no one comes next
    assert index.choose("i1", focus, "u9", k=3)[2] == "These strings last a long time on stage."
    # without the first customer, the repeat is the best and is quoted first
    assert index.choose("i1", focus, "u1", k=1) == ["Strings and tuner work well together."]


def test_a_target_can_prefer_a_sentence_that_says_what_is_particular_to_the_item():
    from minireason.prep.features import AspectVocabulary, explanation_target

    vocab = AspectVocabulary({"strings": 5, "tuner": 3})
    review = _review(
        "u1", "i1", "These strings sound great on my guitar. The Snark tuner on them works."
    )
    first = explanation_target(review, vocab)
    assert first.sentence == "These strings sound great on my guitar."
    named = explanation_target(review, vocab, frozenset({"snark"}))
    assert (named.sentence, named.feature) == ("The Snark tuner on them works.", "tuner")
    # no sentence says a particular word: the first qualifying one, as without
    assert explanation_target(review, vocab, frozenset({"elixir"})) == first


def test_evidence_can_prefer_a_sentence_that_says_what_is_particular_to_the_item():
    from minireason.prep.features import AspectVocabulary, EvidenceIndex

    plain = "These strings sound bright on my old stage guitar here."  # 10 words: nearer 12
    named = "Elixir strings sound bright."  # "elixir": no other item's reviews use it
    reviews = [_review("u1", "i1", plain, 1, 1), _review("u2", "i1", named, 2, 2)]
    reviews += [_review(f"u{n}", f"i{n}", plain, n, n) for n in range(3, 6)]
    vocab = AspectVocabulary({"strings": 5})

    def index(prefer):
        return EvidenceIndex(reviews, vocab, lambda s: len(s.split()), 32, prefer)

    assert index("focus").choose("i1", ["strings"], "u9") == [plain]
    assert index("particular").choose("i1", ["strings"], "u9") == [named]
    with pytest.raises(ValueError, match="evidence preference 'named'"):
        index("named")


def test_evidence_excludes_the_records_own_review_and_sentences_over_the_token_cap():
    from minireason.prep.features import review_key

    index = _index()
    own = review_key(EVIDENCE_REVIEWS[0])
    got = index.choose("i1", ["tuner"], "u9", k=1, exclude=own)
    assert got == []  # the only tuner sentence is in the excluded review
    assert review_key({"user": "u1", "item": "i1", "time": 1, "line": 1}) == own
    # a cap of 8 "tokens" (words here) leaves only the short sentences of 4..8 words
    assert _index(max_tokens=8).choose("i1", ["strings"], "u9", k=3) == [
        "These strings last long on my old guitar."
    ]


def test_a_cold_item_borrows_evidence_from_the_items_sharing_most_tags():
    from minireason.prep.features import tag_neighbours

    tags_of = {"i1": ["strings", "bag"], "i2": ["bag", "case"], "cold": ["bag", "case"], "x": []}
    assert tag_neighbours("cold", tags_of) == ["i2", "i1"]  # 2 shared, then 1 shared
    assert tag_neighbours("x", tags_of) == []
    index = _index()
    calls = []

    def neighbours():
        calls.append(1)
        return tag_neighbours("cold", tags_of)

    got = index.choose("cold", ["gig bag"], "u9", k=1, neighbours=neighbours)
    assert got == ["The gig bag is sturdy and has room for the strings too."]
    index.choose("i1", ["strings"], "u9", k=1, neighbours=neighbours)
    assert len(calls) == 1  # asked only for the item with nothing of its own
