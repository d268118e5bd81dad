"""Byte-level BPE tokenizer (trained with the ``tokenizers`` library), saved as ``tokenizer.json``.

Byte-level means every string round-trips: text is first mapped to its UTF-8 bytes, so
accented and Chinese characters are never "unknown" (a rare character just costs several
tokens). The special tokens of the prompt template are registered first, so their ids are
fixed and small::

    <pad>=0  <eos>=1  <hist>=2  <item>=3  <reason>=4  <sep>=5  <evidence>=6

Train only on training-split text (the caller's responsibility: ``prepare`` passes the
training reviews), so the vocabulary never peeks at validation or test text.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from minireason.files import atomic_write_text

SPECIAL_TOKENS = ("<pad>", "<eos>", "<hist>", "<item>", "<reason>", "<sep>", "<evidence>")
DEFAULT_VOCAB_SIZE = 4096
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)  # every byte, and the special tokens


class BPETokenizer:
    """A thin wrapper: ``encode(text) -> list[int]``, ``decode(ids) -> str``, special ids."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        missing = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
        if missing:
            raise ValueError(f"tokenizer lacks special tokens {missing}")
        self.special = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
        self.pad_id = self.special["<pad>"]
        self.eos_id = self.special["<eos>"]
        self._piece_cache: dict[str, list[int]] = {}

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE, min_frequency: int = 2
    ) -> BPETokenizer:
        """Train a byte-level BPE on ``texts`` with ``vocab_size`` entries (specials included)."""
        if vocab_size < MIN_VOCAB_SIZE:
            raise ValueError(
                f"vocab_size must be >= {MIN_VOCAB_SIZE} "
                f"(256 bytes + {len(SPECIAL_TOKENS)} special tokens), got {vocab_size}"
            )
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def load(cls, path) -> BPETokenizer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {path}")
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as exc:  # the Rust library raises its own exception type
            raise ValueError(f"{path}: not a valid tokenizer.json ({exc})") from None

    def save(self, path) -> Path:
        """Write ``tokenizer.json`` atomically (:func:`minireason.files.atomic_write_text`)."""
        return atomic_write_text(path, self.tokenizer.to_str(pretty=True))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (special-token strings in ``text`` map to their ids)."""
        return self.tokenizer.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def encode_piece(self, text: str) -> list[int]:
        """``encode`` with a memo, for the strings prompts repeat (tags, aspects, evidence
        sentences). The ids returned are shared: read them, never change them."""
        ids = self._piece_cache.get(text)
        if ids is None:
            ids = self._piece_cache[text] = self.encode(text)
        return ids

    def decode(self, ids, skip_special: bool = False) -> str:
        """Text of ``ids``; ``skip_special`` drops <pad>, <eos>, ... from the output."""
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def id_to_token(self, i: int) -> str | None:
        """The vocabulary entry of id ``i`` (byte-level form: a leading space shows as "Ġ")."""
        return self.tokenizer.id_to_token(int(i))
