"""One definition of a word and of a mention (minireason.text), and everyone using it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minireason import text
from minireason.text import PhraseSet, mentions, tokens, words


@pytest.mark.parametrize(
    "given_text,expected",
    [
        ("Great TONE, GREAT price!", ["great", "tone", ",", "great", "price", "!"]),  # case
        ("the neck's fine", ["the", "neck", "'s", "fine"]),  # a clitic is a token of its own
        (
            "don't, can't, they're, I've",
            ["do", "n't", ",", "ca", "n't", ",", "they", "'re", ",", "i", "'ve"],
        ),
        ("the neck\u2019s fine", ["the", "neck", "'s", "fine"]),  # a curly apostrophe too
        ("D'Addario strings", ["d'addario", "strings"]),  # an inner apostrophe joins a word
        ("rock'n'roll", ["rock'n'roll"]),
        ("well-made, clip-on 5-input M-Audio", ["well-made", ",", "clip-on", "5-input", "m-audio"]),
        ('9v 1/4" jack', ["9v", "1", "/", "4", '"', "jack"]),  # digits are word characters
        ("guitars' necks", ["guitars", "'", "necks"]),  # a trailing apostrophe is punctuation
        ("a -- b", ["a", "-", "-", "b"]),
        ("  \t\n", []),
    ],
)
def test_tokens_pin_the_rules(given_text, expected):
    assert tokens(given_text) == expected


def test_words_drop_punctuation_and_clitics():
    assert words("It's 9v -- don't!") == ["it", "9v", "do"]
    with pytest.raises(TypeError, match="expected a str"):
        tokens(["not", "a", "string"])


@pytest.mark.parametrize(
    "sentence,phrase,mentioned",
    [
        ("New guitar strings!", "guitar strings", True),  # a two-word phrase, contiguous
        ("guitar, strings", "guitar strings", False),  # punctuation between
        ("the guitar's strings", "guitar strings", False),  # a clitic between
        ("strings for my guitar", "guitar strings", False),  # order matters
        ("the tone's warm", "tone", True),  # a possessive still names the word
        ("what an undertone", "tone", False),  # words, not substrings
        ("sweet-tone machine", "tone", False),  # a hyphenated word is one word
        ("my D'Addario set", "d'addario", True),
        ("TONE", "Tone", True),  # case never matters, on either side
        ("a 9V battery", "9v battery", True),  # digits
        ("anything", "", False),  # an empty phrase is never mentioned
    ],
)
def test_mentions_pin_the_rules(sentence, phrase, mentioned):
    assert (mentions(tokens(sentence), [phrase]) == [phrase]) is mentioned
    assert (phrase in PhraseSet([phrase]).mentioned_in(tokens(sentence))) is mentioned


def test_mentions_keep_the_given_order_once_each():
    found = mentions(tokens("tone and strings and tone"), ["strings", "tone", "strings", "capo"])
    assert found == ["strings", "tone"]


PHRASES = st.lists(
    st.sampled_from(["tone", "strings", "guitar strings", "neck", "d'addario", "9v", "well-made"]),
    max_size=6,
)
TEXTS = st.lists(
    st.sampled_from(
        [
            "tone",
            "strings",
            "guitar",
            "neck",
            "'s",
            ",",
            "d'addario",
            "9v",
            "well",
            "-",
            "made",
            "well-made",
            "the",
            "!",
        ]
    ),
    max_size=14,
).map(" ".join)


@given(PHRASES, TEXTS)
def test_the_phrase_set_is_mentions_for_many_phrases(phrases, sentence):
    toks = tokens(sentence)
    assert PhraseSet(phrases).mentioned_in(toks) == mentions(toks, phrases)


def test_the_three_users_share_the_one_definition():
    """Aspect mining, the step-4 reranker and the metrics import the same functions; none
    defines a word or a mention of its own."""
    import inspect
    import re

    from minireason.evaluation import metrics
    from minireason.prep import features
    from minireason.reason import scoring

    assert scoring.mentions is text.mentions and scoring.tokens is text.tokens
    assert metrics.tokens is text.tokens and metrics.PhraseSet is text.PhraseSet
    assert features.tokens is text.tokens and features.PhraseSet is text.PhraseSet
    for module in (features, scoring, metrics):
        source = inspect.getsource(module)
        assert not re.search(r"^def (words|mentions|tokens|tokenize\w*)\(", source, re.M), module


@given(
    st.lists(
        st.sampled_from(["warm", "tone", "guitar", "strings", ",", "'s", "pedal", "9v", "noise"]),
        min_size=1,
        max_size=12,
    )
)
def test_reranker_mentions_are_what_fmr_counts(parts):
    """For any candidate, the features step 4 credits it with are the ones the metric finds."""
    from minireason.evaluation.metrics import detect_features, normalize_features
    from minireason.reason.scoring import score_candidate

    sentence = " ".join(parts)
    feature_set = ["tone", "guitar strings", "strings", "noise", "9v"]
    score = score_candidate(sentence, [-1.0], "eos", [], feature_set)
    assert set(score.mentioned_tags) == detect_features(
        tokens(sentence), normalize_features(feature_set)
    )


def test_every_target_mentions_its_own_feature(micro_prepared):
    """What mining calls a target's feature, FMR finds in that target (so a reason that
    repeats the reference scores FMR 1)."""
    from minireason.evaluation.metrics import detect_features, normalize_features
    from minireason.prep.prepared import load_prepared

    prepared = load_prepared(micro_prepared)
    features = normalize_features(prepared.features)
    records = [r for s in ("train", "valid", "test") for r in prepared.split(s) if r["target"]]
    assert len(records) > 100
    for rec in records:
        assert rec["feature"] in detect_features(tokens(rec["target"]), features), rec["target"]


@pytest.mark.parametrize(
    "sentence,found",
    [
        ("I have this tuner and I use it to use.", []),  # no exact repeat: scored, not degenerate
        ("the strings strings are bright", ["a word repeated twice in a row"]),
        ("for my guitar and for my guitar too", ["a repeated word 3-gram"]),
        ("great strings", ["fewer than 4 words"]),
        ("", ["fewer than 4 words"]),
        ("good good good", ["a word repeated twice in a row", "fewer than 4 words"]),
        ("These strings sound bright on my old guitar.", []),
        ("These strings sound bright on my \ufffd guitar.", ["a broken character"]),
        ("剧情很精彩，演员也很好。", []),
        ("剧情很精彩，剧情很精彩。", ["a repeated word 3-gram"]),
    ],
)
def test_degeneracies_name_what_a_reader_notices(sentence, found):
    assert text.degeneracies(sentence) == found


def test_vocabulary_keeps_the_words_written_at_least_min_count_times():
    texts = ["Great strings, great tone.", "The tone is warm.", "Snarkish tuner!"]
    assert text.vocabulary(texts) == {"great", "tone"}
    assert text.vocabulary(texts, min_count=1) == set(w for t in texts for w in words(t))
    assert text.vocabulary([]) == frozenset()
