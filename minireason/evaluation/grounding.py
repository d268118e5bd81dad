"""Is a reason about *this* item, true to what its reviews say, and not a copy?

Three reference-free metrics (named in
:data:`minireason.evaluation.metrics.GROUNDING_METRICS`), each the share of N reasons for
which a test holds, given the item the reason is about and the *training split's* reviews
(never validation or test text). ``evaluate`` reports them
for the model, every baseline and the real reference sentences, so a reader can compare.

Every text is read as its :func:`minireason.text.words` (lower-case words, no punctuation).
With ``W_i`` the set of words of item i's training reviews and ``df(w)`` the number of items
whose training reviews use the word w:

``item_specificity``
    A reason about item i is *specific* when it holds a word w that is *particular to* i:
    ``w in W_i`` and ``df(w) <= max(1, floor(SPECIFIC_SHARE * n_items))``, with
    :data:`minireason.text.SPECIFIC_SHARE` 5% and ``n_items`` the number of items with a training review
    (891 on Musical Instruments, so at most 44 items: "snark" is particular to a Snark tuner,
    "tuner" (109 items) and "fender" (236) are not).
``groundedness``
    A reason about item i is *grounded* when everything it names is *attested* in i's
    training reviews: every aspect of the feature set F it mentions
    (:func:`minireason.text.mentions`, as FMR finds them) is mentioned by one of i's
    training reviews, and every *name* it holds (:func:`names`: a capitalised word not
    first in its sentence, other than "I", or a word of letters and digits such as "sm58")
    is in ``W_i``. A reason that names nothing ("Works great.") is grounded.
``copy_rate`` (lower is better)
    A reason is a *copy* when :data:`COPY_WORDS` (8) consecutive words of it are
    consecutive words of one training sentence (any item's; sentences as
    :func:`minireason.prep.features.split_sentences` cuts the reviews). The baselines that
    return training sentences (random, retrieval, evidence) are copies by construction
    whenever their sentence has 8 words or more.

:class:`GroundingIndex` holds what the three need from the training split, built once per
evaluation: ``W_i`` and each item's aspects, ``df``, and every training sentence's word
8-grams as a sorted array of distinct 64-bit hashes (402,504 on Musical Instruments;
membership is a binary search). Two different 8-grams share a hash with probability about
2^-64, so a false "copy" is out of reach in practice. :func:`record_grounding` tests one
reason; :func:`grounding_metrics` is the share over N of them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from minireason.evaluation.metrics import GROUNDING_METRICS, normalize_features
from minireason.prep.features import split_sentences
from minireason.text import (
    PhraseSet,
    is_word,
    particular_limit,
    particular_words,
    tokens,
    words,
)

COPY_WORDS = 8  # this many consecutive words of a training sentence make a copy

_WORD_OR_END = re.compile(r"\w+(?:['\u2019-]\w+)*|[.!?]")


def names(text: str) -> list[str]:
    """The names of ``text`` (a stand-in for product and brand names, model numbers), as
    lower-case words, in order: each word that starts with a capital letter and is not the
    first word of its sentence (a sentence starts the text and after ``.``, ``!`` or ``?``),
    except "I" ("I'm", "I've"), and each word that holds both a letter and a digit.

    >>> names("I love my Fender. Strings by D'Addario fit my SM58 and 9v rig.")
    ['fender', "d'addario", 'sm58', '9v']
    """
    found, sentence_start = [], True
    for piece in _WORD_OR_END.findall(text):
        if piece in ".!?":
            sentence_start = True
            continue
        first_word = sentence_start
        sentence_start = False
        digit = any(c.isdigit() for c in piece)
        if not (digit or (piece[0].isupper() and not first_word)):
            continue  # most words: not a name, and not read further
        word = words(piece)[0]  # "Fender's" -> "fender", as the item's words are read
        capitalised = piece[0].isupper() and not first_word and word != "i"
        alphanumeric = any(c.isdigit() for c in word) and any(c.isalpha() for c in word)
        if capitalised or alphanumeric:
            found.append(word)
    return found


def word_ngram_hashes(text_words: Sequence[str], n: int) -> np.ndarray:
    """The 64-bit hashes of the contiguous word ``n``-grams of ``text_words``: int64
    ``(max(len - n + 1, 0),)``. Python's ``hash`` of a tuple of strings: the same within
    one process (which is all an index built and queried in one evaluation needs)."""
    grams = zip(*(text_words[i:] for i in range(n)), strict=False)
    return np.fromiter((hash(g) for g in grams), dtype=np.int64)


class GroundingIndex:
    """What the grounding metrics know of the training split (module doc), built once.

    Args:
        train_records: the training reviews, each a dict with ``item`` and ``text`` (the
            prepared directory's ``train.jsonl`` records).
        feature_set: the feature set F (``Prepared.features``).

    Attributes:
        item_words: ``{item: frozenset of words}``, ``W_i``.
        item_aspects: ``{item: frozenset of aspects of F its training reviews mention}``.
        item_df: ``Counter {word: number of items whose training reviews use it}``.
        max_df: the largest ``df`` of a word particular to an item.
        copy_hashes: int64 ``(G,)``, sorted and distinct: the hashes of every training
            sentence's word :data:`COPY_WORDS`-grams.
    """

    def __init__(self, train_records: Iterable[dict], feature_set: Iterable[str]):
        self.aspects = PhraseSet(normalize_features(feature_set))
        item_words: dict[str, set[str]] = {}
        item_aspects: dict[str, set[str]] = {}
        hashes = []
        for rec in train_records:
            review_tokens = []  # the sentences' tokens, in order: the review's tokens
            for sentence in split_sentences(rec["text"]):  # each text tokenised once
                sentence_tokens = tokens(sentence)
                sentence_words = [t for t in sentence_tokens if is_word(t)]
                hashes.append(word_ngram_hashes(sentence_words, COPY_WORDS))
                review_tokens += sentence_tokens
            own_words = item_words.setdefault(rec["item"], set())
            own_words.update(t for t in review_tokens if is_word(t))
            found = self.aspects.mentioned_in(review_tokens, ordered=False)
            item_aspects.setdefault(rec["item"], set()).update(found)
        self.item_words = {i: frozenset(w) for i, w in item_words.items()}
        self.item_aspects = {i: frozenset(a) for i, a in item_aspects.items()}
        self.item_df = Counter(w for ws in self.item_words.values() for w in ws)
        self.max_df = particular_limit(len(self.item_words))
        self.particular = particular_words(self.item_words, self.item_df)
        self.copy_hashes = np.unique(np.concatenate([np.zeros(0, np.int64), *hashes]))

    def params(self) -> dict:
        """The thresholds as this index applies them, for a report to quote."""
        return {
            "n_items": len(self.item_words),
            "specific_max_items": self.max_df,
            "copy_words": COPY_WORDS,
            "train_ngrams": int(self.copy_hashes.size),
        }

    def specific_words(self, text: str, item: str) -> list[str]:
        """The words of ``text`` particular to ``item`` (module doc), in order, each once."""
        own = self.particular.get(item, frozenset())
        return list(dict.fromkeys(w for w in words(text) if w in own))

    def unattested(self, text: str, item: str) -> list[str]:
        """The aspects and names of ``text`` that ``item``'s training reviews never use
        (module doc): aspects first, then names, each once."""
        aspects = self.aspects.mentioned_in(tokens(text))
        own_aspects = self.item_aspects.get(item, frozenset())
        own_words = self.item_words.get(item, frozenset())
        missing = [a for a in aspects if a not in own_aspects]
        missing += [w for w in names(text) if w not in own_words]
        return list(dict.fromkeys(missing))

    def copied(self, text: str) -> bool:
        """Do :data:`COPY_WORDS` consecutive words of ``text`` occur in one training
        sentence?"""
        query = word_ngram_hashes(words(text), COPY_WORDS)
        if query.size == 0 or self.copy_hashes.size == 0:
            return False
        at = np.searchsorted(self.copy_hashes, query).clip(max=self.copy_hashes.size - 1)
        return bool((self.copy_hashes[at] == query).any())


def record_grounding(text: str, item: str, index: GroundingIndex) -> dict:
    """One reason's tests: ``specific`` (its words particular to ``item``), ``unattested``
    (its aspects and names ``item``'s training reviews never use) and ``copied`` (bool)."""
    return {
        "specific": index.specific_words(text, item),
        "unattested": index.unattested(text, item),
        "copied": index.copied(text),
    }


def grounding_metrics(
    texts: Sequence[str], items: Sequence[str], index: GroundingIndex
) -> dict[str, float]:
    """The three metrics of N reasons: ``{item_specificity, groundedness, copy_rate}``,
    each a share in [0, 1] (module doc). ``texts[i]`` is about ``items[i]``."""
    if len(texts) != len(items) or not texts:
        raise ValueError(f"grounding_metrics: {len(texts)} texts for {len(items)} items")
    rows = [record_grounding(t, i, index) for t, i in zip(texts, items, strict=True)]
    shares = (
        np.mean([bool(r["specific"]) for r in rows]),
        np.mean([not r["unattested"] for r in rows]),
        np.mean([r["copied"] for r in rows]),
    )
    return {name: float(s) for name, s in zip(GROUNDING_METRICS, shares, strict=True)}
