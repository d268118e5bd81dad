"""Byte-level BPE: round trips, special tokens, vocabulary size, save and load."""

from __future__ import annotations

import pytest

from minireason.prep.tokenizer import SPECIAL_TOKENS, BPETokenizer

CORPUS = ["The strings sound bright and the tuner holds pitch."] * 50 + [
    "Café crème, naïve façade.",
    "这个调音器很好用。",
    "Sturdy stand for the gig bag.",
] * 20


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train(CORPUS, vocab_size=400)


@pytest.mark.parametrize(
    "text",
    [
        "The strings sound bright.",
        "Unseen words: xylophone QUUX 123 !?",
        "Café crème brûlée, Ærøskøbing, naïve",
        "这个调音器很好用，音色明亮。",
        "mixed 中文 and emoji 🎸 tabs\tand\nnewlines",
    ],
)
def test_round_trip(tok, text):
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def test_special_tokens_have_fixed_ids_and_encode_as_one_token(tok):
    assert [tok.special[t] for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert tok.encode("<hist>") == [tok.special["<hist>"]]
    assert [tok.id_to_token(i) for i in range(len(SPECIAL_TOKENS))] == list(SPECIAL_TOKENS)
    ids = tok.encode("<item> tuner<reason>")
    assert ids[0] == tok.special["<item>"] and ids[-1] == tok.special["<reason>"]
    assert tok.decode(ids, skip_special=True) == " tuner"


def test_training_learns_merges_up_to_the_vocab_size(tok):
    assert 256 + len(SPECIAL_TOKENS) < tok.vocab_size <= 400
    assert len(tok.encode("The strings sound bright")) < len("The strings sound bright") / 2
    small = BPETokenizer.train(CORPUS, vocab_size=300)
    assert small.vocab_size <= 300 < tok.vocab_size


def test_save_and_load(tok, tmp_path):
    path = tok.save(tmp_path / "tokenizer.json")
    again = BPETokenizer.load(path)
    text = "Café strings 调音器"
    assert again.encode(text) == tok.encode(text) and again.vocab_size == tok.vocab_size


def test_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer file not found"):
        BPETokenizer.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not a tokenizer")
    with pytest.raises(ValueError, match="bad.json: not a valid tokenizer.json"):
        BPETokenizer.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="vocab_size must be >= 263"):
        BPETokenizer.train(CORPUS, vocab_size=100)
