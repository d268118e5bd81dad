"""The grounding metrics (item-specificity, groundedness, copy rate) on a hand-made training
split whose answers can be counted by eye."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minireason.evaluation.grounding import (
    COPY_WORDS,
    GroundingIndex,
    grounding_metrics,
    names,
    record_grounding,
)
from minireason.evaluation.metrics import GROUNDING_METRICS

FEATURES = ["tuner", "strap", "leather strap", "headstock", "battery", "strings"]
TUNER = "The Snark clips on the headstock and reads fast. It came with a CR2032 battery."
STRAP = (
    "This leather strap holds my Gibson Les Paul. The leather strap is soft and the Gibson "
    "never slips off my shoulder at all on stage."
)


def train_records() -> list[dict]:
    """40 items: so at most floor(0.05 * 40) = 2 items' reviews use a word particular to an
    item. "snark": 2 items (particular); "headstock": 3 items (not); "money": 37 (not)."""
    recs = [
        {"item": "tuner", "text": TUNER},
        {"item": "tuner2", "text": "My Snark died after a week."},
        {"item": "strap", "text": STRAP},
    ]
    for k in range(37):
        extra = " Fits the headstock." if k < 2 else ""
        text = "The money is on my side. It fits and it holds a lot." + extra
        recs.append({"item": f"f{k:02d}", "text": text})
    return recs


@pytest.fixture(scope="module")
def index() -> GroundingIndex:
    return GroundingIndex(train_records(), FEATURES)


def test_the_index_counts_items_and_the_threshold(index):
    assert index.params() == {
        "n_items": 40,
        "specific_max_items": 2,  # floor(0.05 * 40)
        "copy_words": COPY_WORDS,
        "train_ngrams": int(index.copy_hashes.size),
    }
    assert index.item_df["snark"] == 2 and index.item_df["headstock"] == 3
    assert index.item_df["money"] == 37
    assert index.item_aspects["strap"] == {"strap", "leather strap"}
    assert index.item_aspects["tuner"] == {"headstock", "battery"}
    # sentences of 8+ words only: TUNER's first (9 words: 2 8-grams), STRAP's two (8 and
    # 17 words: 1 + 10); every other sentence is shorter
    assert index.copy_hashes.size == 2 + 1 + 10
    assert (index.copy_hashes[1:] > index.copy_hashes[:-1]).all()  # sorted, distinct
    # with few items, a word one item uses is still particular to it
    assert GroundingIndex(train_records()[:3], FEATURES).max_df == 1


def test_item_specificity_needs_a_word_of_this_item_that_few_items_use(index):
    assert index.specific_words("The Snark is quick.", "tuner") == ["snark"]
    assert index.specific_words("The Snark is quick.", "strap") == []  # not this item's word
    assert index.specific_words("It fits the headstock.", "tuner") == []  # 3 items use it
    assert index.specific_words("Soft leather, and Paul, and soft leather.", "strap") == [
        "soft",
        "leather",
        "paul",
    ]  # each once, in order; "and" is every item's word
    assert index.specific_words("The Snark is quick.", "cold item") == []


def test_names_are_capitalised_words_inside_a_sentence_or_letters_with_digits():
    assert names("I love my Fender. Strings by D'Addario fit my SM58 and 9v rig.") == [
        "fender",
        "d'addario",
        "sm58",
        "9v",
    ]
    assert names("Snark works! Great. I'm happy, I've got 2 of them.") == []
    assert names("It's the Boss's best (Boss) pedal") == ["boss", "boss"]


def test_groundedness_wants_every_aspect_and_name_in_the_items_reviews(index):
    assert index.unattested("The Snark clips on fine.", "tuner") == []
    assert index.unattested("These strings sound great.", "tuner") == ["strings"]
    # an aspect the item's reviews mention, a name they do not
    assert index.unattested("My Fender loves this leather strap.", "strap") == ["fender"]
    assert index.unattested("Holds my Gibson and my Les Paul.", "strap") == []
    assert index.unattested("Works well.", "tuner") == []  # names nothing: grounded
    assert index.unattested("A great tuner with a CR2032.", "cold item") == ["tuner", "cr2032"]


def test_a_copy_is_eight_consecutive_words_of_one_training_sentence(index):
    # "and the gibson never slips off my shoulder": 8 words of STRAP's second sentence;
    # case and punctuation do not matter
    assert index.copied("Soft, and the GIBSON never slips off my shoulder!")
    assert not index.copied("The Gibson never slips off my shoulder.")  # 7 words
    # 8 words in a row, but across two training sentences
    assert not index.copied("on the headstock and reads fast it came")
    assert not index.copied("")


def test_grounding_metrics_are_shares_of_the_reasons(index):
    texts = [
        "The Snark clips on the headstock and reads fast.",  # specific, grounded, a copy
        "These strings sound great.",  # not specific, not grounded, not a copy
        "My leather strap holds my Gibson Les Paul.",  # specific, grounded, not a copy
        "Works well.",  # nothing: grounded only
    ]
    items = ["tuner", "tuner", "strap", "strap"]
    rows = [record_grounding(t, i, index) for t, i in zip(texts, items, strict=True)]
    assert [bool(r["specific"]) for r in rows] == [True, False, True, False]
    assert [not r["unattested"] for r in rows] == [True, False, True, True]
    assert [r["copied"] for r in rows] == [True, False, False, False]
    out = grounding_metrics(texts, items, index)
    assert list(out) == list(GROUNDING_METRICS)
    assert out == {"item_specificity": 0.5, "groundedness": 0.75, "copy_rate": 0.25}
    with pytest.raises(ValueError, match="3 texts for 4 items"):
        grounding_metrics(texts[:3], items, index)
    with pytest.raises(ValueError):
        grounding_metrics([], [], index)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from("ab"), min_size=0, max_size=12), min_size=1, max_size=6),
    st.lists(st.sampled_from("ab"), min_size=0, max_size=14),
)
def test_the_hashed_index_agrees_with_a_set_of_word_tuples(sentences, reason):
    """On a two-word language copies are common: the hashed 8-grams say what the tuples say."""
    train = [{"item": "x", "text": " ".join(s) + "."} for s in sentences]
    index = GroundingIndex(train, ["a"])
    seen = {tuple(s[i : i + COPY_WORDS]) for s in sentences for i in range(len(s) - 7)}
    want = any(tuple(reason[i : i + COPY_WORDS]) in seen for i in range(len(reason) - 7))
    assert index.copied(" ".join(reason)) == want
