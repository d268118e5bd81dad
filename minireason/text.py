"""What counts as a word, and when a text mentions a phrase: one definition for the package.

Aspect mining (:mod:`minireason.prep.features`), the step-4 reranker
(:mod:`minireason.reason.scoring`) and the explanation metrics
(:mod:`minireason.evaluation.metrics`, FMR above all) read text only through :func:`tokens`
and :func:`mentions`, so the reranker optimises exactly what FMR measures, and a target
sentence always mentions the feature that mining found in it.

**Tokens** (:func:`tokens`), PETER's tokenisation in spirit (lower-case, punctuation split
off words, whitespace only separates):

1. the text is lower-cased, and curly apostrophes (’ ‘) become ``'``;
2. a *word* is a run of letters, digits or ``_``, possibly joined by inner apostrophes or
   hyphens: ``well-made``, ``d'addario``, ``9v``, ``5-input`` are one word each;
3. an English clitic ending a word is a token of its own: ``tone's`` is ``tone`` + ``'s``,
   ``don't`` is ``do`` + ``n't`` (also ``'re 've 'll 'd 'm``);
4. every other non-space character is a token of its own (``,`` ``!`` ``(`` ...);
5. Chinese has no spaces between words: a run of Han characters inside a word is cut into
   words by jieba's dictionary and HMM (:func:`han_words`, the ``[zh]`` extra, imported
   only when a text has a Han character), so "剧情很精彩" is ``剧情`` ``很`` ``精彩``; the
   letters and digits glued to the run stay words of their own ("3个" is ``3`` ``个``).
   Text without Han characters never reaches jieba: English is cut exactly as rules 1-4
   say. Chinese punctuation (，。！) is rule 4's.

**Words** (:func:`words`) are the tokens that are words: no punctuation, no clitics.

**Mentions** (:func:`mentions`): a phrase (an aspect, a tag, a feature; one or more words)
is mentioned in a text when its tokens occur *contiguously* in the text's tokens. So
``"guitar strings"`` is in "new guitar strings!" but not in "guitar, strings" (a comma
between) nor in "guitar's strings" (a clitic between); ``"tone"`` is in "the tone's warm"
but not in "undertone" nor in "sweet-tone" (one word). Case never matters.

**Shown text** (:func:`inert`): text from data (ids, review sentences, generated reasons,
tags) printed to a terminal or a log has its control characters escaped, so a user id can
neither clear the screen nor start a line of its own.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache

CLITICS = frozenset({"'s", "'re", "'ve", "'ll", "'d", "'m", "n't"})
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'"})
_TOKEN = re.compile(r"\w+(?:['-]\w+)*|[^\w\s]")
_CLITIC_END = re.compile(r"(?<=\w)(?:n't|'(?:s|re|ve|ll|d|m))$")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
HAN_RANGES = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef"  # CJK ideographs
_HAS_HAN = re.compile(f"[{HAN_RANGES}]")
_HAN_OR_NOT = re.compile(f"[{HAN_RANGES}]+|[^{HAN_RANGES}]+")


def tokens(text: str) -> list[str]:
    """The tokens of ``text`` (rules 1-4 of the module doc).

    >>> tokens("Great TONE, well-made; the neck's fine & don't buy!")
    ['great', 'tone', ',', 'well-made', ';', 'the', 'neck', "'s", 'fine', '&', 'do', "n't", 'buy', '!']
    """
    if not isinstance(text, str):
        raise TypeError(f"tokens: expected a str, got {type(text).__name__}")
    han = bool(_HAS_HAN.search(text))  # one look at the text: English never looks again
    out = []
    for tok in _TOKEN.findall(text.lower().translate(_APOSTROPHES)):
        if han and _HAS_HAN.search(tok):
            out += _cut_han(tok)
        elif clitic := _CLITIC_END.search(tok):
            out += [tok[: clitic.start()], clitic.group()]
        else:
            out.append(tok)
    return out


LANGUAGES = ("en", "zh")  # what prepare --lang takes: the language of prompts and pages
HAN_SHARE = 0.3  # language_of: a dataset whose letters are this share Han is Chinese


def language_of(texts: Iterable[str], sample: int = 2000) -> str:
    """``"zh"`` when Han characters are at least :data:`HAN_SHARE` of the letters of the
    first ``sample`` texts, else ``"en"`` (what ``prepare --lang auto`` records)."""
    han = letters = 0
    for text in itertools.islice(texts, sample):
        han += len(_HAS_HAN.findall(text))
        letters += sum(c.isalpha() for c in text)
    return "zh" if letters and han >= HAN_SHARE * letters else "en"


def has_han(text: str) -> bool:
    """True when ``text`` holds a Han (Chinese) character."""
    return bool(_HAS_HAN.search(text))


def _cut_han(token: str) -> list[str]:
    """A rule-2 word holding Han characters as words: its Han runs cut by :func:`han_words`,
    the rest of it (letters, digits) kept whole."""
    out = []
    for run in _HAN_OR_NOT.findall(token):
        out += han_words(run) if _HAS_HAN.match(run) else [run]
    return out


class MissingLanguage(ValueError):
    """Text of a language whose word cutter is not installed (the message says how)."""


@lru_cache(maxsize=1 << 16)
def han_words(run: str) -> tuple[str, ...]:
    """A run of Han characters cut into words by jieba (dictionary and HMM), e.g.
    ``("剧情", "很", "精彩")`` for "剧情很精彩"."""
    return tuple(_jieba().cut(run, HMM=True))


@lru_cache(maxsize=1)
def _jieba():
    """jieba's word cutter, its dictionary read from the package itself: jieba's own
    start-up would load (and write) a cache file in the shared temporary folder, which
    another user can replace; building the prefix dictionary takes about a second."""
    try:
        import jieba  # noqa: PLC0415  (the [zh] extra, only for Chinese text)
    except ImportError as exc:
        raise MissingLanguage(
            "this text is Chinese, and cutting it into words needs jieba, which is not "
            "installed: pip install 'minireason[zh]'"
        ) from exc
    jieba.setLogLevel(logging.WARNING)
    cutter = jieba.Tokenizer()
    with cutter.get_dict_file() as f:
        cutter.FREQ, cutter.total = cutter.gen_pfdict(f)
    cutter.initialized = True
    return cutter


def is_word(token: str) -> bool:
    """True for a word token (not punctuation, not a clitic)."""
    return (token[0].isalnum() or token[0] == "_") and token not in CLITICS


def words(text: str) -> list[str]:
    """The word tokens of ``text``, in order."""
    return [t for t in tokens(text) if is_word(t)]


def vocabulary(texts: Iterable[str], min_count: int = 2) -> frozenset[str]:
    """The words (:func:`words`) that ``texts`` use at least ``min_count`` times in all:
    what a corpus has written more than once, so that a word outside it is one its writers
    did not use (a made-up word, an invented model number) or used only once."""
    counts = Counter(w for text in texts for w in words(text))
    return frozenset(w for w, n in counts.items() if n >= min_count)


SPECIFIC_SHARE = 0.05  # a word used by at most this share of the items is particular to them


def particular_limit(n_items: int) -> int:
    """The most items whose texts may use a word particular to one of them:
    ``max(1, floor(SPECIFIC_SHARE * n_items))``."""
    return max(1, math.floor(SPECIFIC_SHARE * n_items))


def particular_words(
    item_words: dict[str, frozenset[str]], df: Counter | None = None
) -> dict[str, frozenset[str]]:
    """``{item: the words particular to it}``: the words of its texts (``item_words[item]``)
    that at most :func:`particular_limit` items' texts use (``df``: word -> number of items
    using it, counted here when not given).

    On Musical Instruments' training reviews (891 items, so at most 44): "snark" (28 items)
    is particular to a Snark tuner, "tuner" (109) and "fender" (236) are not. Step 4's
    ``specific`` term and the evaluation's item-specificity read the same sets."""
    df = Counter(w for ws in item_words.values() for w in ws) if df is None else df
    most = particular_limit(len(item_words))
    return {item: frozenset(w for w in ws if df[w] <= most) for item, ws in item_words.items()}


def ngrams(text_tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    """The distinct contiguous ``n``-grams of a token list (empty when it is shorter)."""
    return set(zip(*(text_tokens[i:] for i in range(n)), strict=False))


@lru_cache(maxsize=1 << 16)
def phrase_tokens(phrase: str) -> tuple[str, ...]:
    """The tokens of a phrase (cached: the same aspects are looked up again and again)."""
    return tuple(tokens(phrase))


class PhraseSet:
    """A fixed set of phrases indexed by their tokens, to find in many texts (the aspect
    vocabulary, the feature set): :meth:`mentioned_in` is :func:`mentions` for all of them,
    one set intersection per phrase length instead of one test per phrase."""

    def __init__(self, phrases: Iterable[str]):
        self.phrases = [p for p in dict.fromkeys(phrases) if phrase_tokens(p)]
        self._by_length: dict[int, dict[tuple[str, ...], list[str]]] = {}
        for phrase in self.phrases:
            key = phrase_tokens(phrase)
            self._by_length.setdefault(len(key), {}).setdefault(key, []).append(phrase)

    def mentioned_in(self, text_tokens: Sequence[str], ordered: bool = True) -> list[str]:
        """The phrases whose tokens occur contiguously in ``text_tokens``: in the set's order,
        or (``ordered=False``) in no particular order."""
        hit: list[str] = []
        for n, table in self._by_length.items():
            for key in ngrams(text_tokens, n) & table.keys():
                hit += table[key]
        if not ordered:
            return hit
        hit_set = set(hit)
        return [p for p in self.phrases if p in hit_set]


def mentions(text_tokens: Sequence[str], phrases: Iterable[str]) -> list[str]:
    """The ``phrases`` mentioned in a text given as its :func:`tokens`: those whose tokens
    occur contiguously in ``text_tokens``; in the given order, each once. A phrase with no
    token (empty or blank) is never mentioned."""
    return PhraseSet(phrases).mentioned_in(text_tokens)


# --------------------------------------------------------------------------- degenerate text

MIN_WORDS = 4  # fewer words than this is not a reason


BROKEN = "\ufffd"  # what the tokenizer decodes bytes that are not UTF-8 to


def degeneracies(text: str) -> list[str]:
    """What makes a text degenerate, as a reader sees it: in its :func:`words`, a word
    repeated twice in a row ("use use"), a word 3-gram said twice ("for my guitar ... for my
    guitar"), or fewer than :data:`MIN_WORDS` words; in its characters, a broken one
    (:data:`BROKEN`: the model wrote part of a character's UTF-8 bytes, which happens in
    Chinese, three bytes a character). An empty list: nothing of the kind. The step-4
    reranker penalises these, and ``evaluate`` reports the share of reasons with any."""
    text_words = words(text)
    found = []
    if any(a == b for a, b in zip(text_words, text_words[1:], strict=False)):
        found.append("a word repeated twice in a row")
    trigrams = list(zip(text_words, text_words[1:], text_words[2:], strict=False))
    if len(set(trigrams)) < len(trigrams):
        found.append("a repeated word 3-gram")
    if len(text_words) < MIN_WORDS:
        found.append(f"fewer than {MIN_WORDS} words")
    if BROKEN in text:
        found.append("a broken character")
    return found


# --------------------------------------------------------------------------- shown text


def inert(text) -> str:
    """``text`` (or ``str(text)``) safe to print on one line of a terminal or a log: every
    character of the Unicode categories C (controls such as ESC, newlines, carriage returns
    and tabs; format characters such as the bidirectional overrides and zero-width marks;
    unassigned and private-use code points) and the line and paragraph separators is written
    as its Python escape (``\\n``, ``\\x1b``, ``\\u202e``); everything else is kept as it is.

    >>> inert("A1\\x1b[2J\\nminireason: done")
    'A1\\\\x1b[2J\\\\nminireason: done'
    """
    text = str(text)
    if text.isprintable():  # no character of the categories C, Z but the space: nothing to do
        return text
    return "".join(_escape(c) if _is_control(c) else c for c in text)


def _is_control(char: str) -> bool:
    category = unicodedata.category(char)
    return category[0] == "C" or category in ("Zl", "Zp")


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
