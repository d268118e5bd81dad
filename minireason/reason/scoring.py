"""Seed step 4, the choice: score each sampled candidate reason and rank them.

For one prompt we sample ``N`` candidates (:mod:`minireason.reason.generate`); this module
scores each and ranks them, best first; :mod:`minireason.reason.explain` keeps the best.

Scoring. A candidate's words and the phrases it *mentions* (an aspect or tag, possibly
several words, whose tokens occur contiguously in it) follow :mod:`minireason.text`, the
definitions FMR is measured with. With
``A`` the user's profile aspects, ``G`` the item's tags, ``Q`` the prompt's focus (the
aspects it asks the reason to talk about, ``minireason.prep.features.predict_focus``),
``M(c)`` the phrases ``c`` mentions, ``U`` the token 3-grams of the user's own past
reviews (:func:`phrase_set`; empty for free-form input or a user with none), ``K`` the words
the training reviews use at least twice (``Prepared.known_words``; empty for free-form
input, which turns the unknown-word term off), ``S`` the words particular to the item
(``Prepared.particular_words``: its training reviews use them, few other items' do; empty
for free-form input), and ``w`` a :class:`ScoreWeights`::

    user_coverage  = |A ∩ M(c)| / |A|        (0 when A is empty: cold start)
    item_coverage  = |G ∩ M(c)| / |G|        (0 when G is empty)
    focus_coverage = |Q ∩ M(c)| / |Q|        (0 when Q is empty)
    phrasing       = |U ∩ 3-grams(c)| / |3-grams(c)|   (0 when either is empty)
    specific       = [c says a word of S]
    mean_logprob   = mean over c's tokens (its <eos> included) of log p(token | prompt, before)
    lowest_logprob = the lowest of those log-probabilities          (0 for no token)
    length         = c's tokens, its <eos> included
    repetition     = 1 - distinct word bigrams / word bigrams   (0 below two bigrams)
    echoes         = uses of content words beyond their first    (:func:`echoes`)
    unknown        = words of c not in K                         (0 when K is empty)
    consensus      = mean over the other candidates c' of overlap(c, c')
    overlap(a, b)  = (F1 of their word unigrams + F1 of their word bigrams) / 2

    score = w.user * user_coverage + w.item * item_coverage + w.focus * focus_coverage
            + w.phrasing * phrasing + w.specific * specific + w.logprob * mean_logprob
            + w.lowest * lowest_logprob + w.length * length + w.consensus * consensus
            - w.repetition * repetition - w.echo * echoes - w.unknown * unknown
            - w.degenerate  * [c is degenerate: minireason.text.degeneracies]
            - w.unfinished  * [c stopped at <eos> without ending a sentence (. ! ?)]
            - w.contradicts * [c's sentiment goes against the rating expected]
            - w.duplicate   * [c repeats an earlier candidate's words]
            - w.truncated   * [c hit max_new_tokens or the context before <eos>]
            - w.empty       * [c has no word at all]

:meth:`ScoreBreakdown.parts` gives each signed, weighted term of that sum on its own (the
HTML report's candidates table shows them). Coverage rewards relevance, the log-probability rewards fluent, likely text (it is <= 0),
and the penalties push what a reader punishes down: loops and doubled words, the same
noun said again ("these strings sound great on your string with a string bass string"), a
word nobody wrote in training (a made-up "Satoiknica", an invented "XDXDX-00" adapter), a
sentence that stops in the middle, a reason that argues against the item, copies, cut-off or empty
text. The consensus term is minimum-Bayes-risk selection: the candidate that says what most
of the others say is the likeliest to be a good sentence, not an odd sample. The phrasing
term prefers the candidate worded the way this user writes: people reuse their own phrases
("works great for my", "I have been using"), and a reason in the reader's own words reads as
theirs.

Sentiment (:func:`sentiment`) is a small word list, English and Chinese: a candidate is
negative when it holds more negative words ("disappointed", "broke", "returned", "not good",
失望, 不好看) than positive ones ("great", "love", "no problems", 精彩), a negator within the
three words before flipping a word.
The rating expected is the user's mean past rating (a recommendation expects a liked item,
4 with no history): negative text contradicts an expected rating of 3.5 or more, positive
text one of 2.5 or less.

The weights ``w`` are data, not code: :class:`minireason.train.run.ScoreWeights`, recorded in
each run's ``run.json`` (its defaults are what a new run records) and replaced for one
command by ``--weights FILE``; ``minireason tune`` chooses them on the validation split.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from minireason.data.clean import one_line
from minireason.prep.features import STOP_WORDS
from minireason.text import degeneracies, has_han, is_word, mentions, ngrams, tokens, words
from minireason.train.run import ScoreWeights

# The terms of the score, in the formula's order: the keys of ScoreBreakdown.parts().
SCORE_PARTS = (
    "user",
    "item",
    "focus",
    "phrasing",
    "specific",
    "logprob",
    "lowest",
    "length",
    "consensus",
    "repetition",
    "echo",
    "unknown",
    "degenerate",
    "unfinished",
    "contradicts",
    "duplicate",
    "truncated",
    "empty",
)


@dataclass
class ScoreBreakdown:
    """Every term of one candidate's score, and the phrases it mentions."""

    user_coverage: float
    item_coverage: float
    focus_coverage: float
    mean_logprob: float
    repetition: float
    duplicate: bool
    truncated: bool
    empty: bool
    total: float
    mentioned_aspects: list[str]  # profile aspects the text names literally
    mentioned_tags: list[str]  # item tags the text names literally
    mentioned_focus: list[str] = field(default_factory=list)  # focus aspects it names
    degenerate: list[str] = field(default_factory=list)  # minireason.text.degeneracies
    unfinished: bool = False
    contradicts: bool = False
    consensus: float = 0.0  # set by rank_candidates, which sees the other candidates
    echoes: int = 0  # content words used again (echoes())
    phrasing: float = 0.0  # share of its token 3-grams found in the user's past reviews
    unknown_words: list[str] = field(default_factory=list)  # its words outside K, in order
    specific_words: list[str] = field(default_factory=list)  # its words of S, in order
    lowest_logprob: float = 0.0  # its least likely token's log-probability
    length: int = 0  # its tokens, the stopping <eos> included

    def parts(self, weights: ScoreWeights | None = None) -> dict[str, float]:
        """Each term of the score with its weight and sign, in the formula's order (module
        docstring); they sum to ``total`` when ``weights`` are the ones it was scored with.
        Keys: :data:`SCORE_PARTS`, in that order. A term of nothing is 0.0, never -0.0."""
        w = weights or ScoreWeights()
        signed = {
            "user": w.user * self.user_coverage,
            "item": w.item * self.item_coverage,
            "focus": w.focus * self.focus_coverage,
            "phrasing": w.phrasing * self.phrasing,
            "specific": w.specific * bool(self.specific_words),
            "logprob": w.logprob * self.mean_logprob,
            "lowest": w.lowest * self.lowest_logprob,
            "length": w.length * self.length,
            "consensus": w.consensus * self.consensus,
            "repetition": -(w.repetition * self.repetition),
            "echo": -(w.echo * self.echoes),
            "unknown": -(w.unknown * len(self.unknown_words)),
            "degenerate": -(w.degenerate * bool(self.degenerate)),
            "unfinished": -(w.unfinished * self.unfinished),
            "contradicts": -(w.contradicts * self.contradicts),
            "duplicate": -(w.duplicate * self.duplicate),
            "truncated": -(w.truncated * self.truncated),
            "empty": -(w.empty * self.empty),
        }
        return {name: value + 0.0 for name, value in signed.items()}  # -0.0 + 0.0 is 0.0


@dataclass
class Candidate:
    text: str
    token_ids: list[int]  # generated ids, the stopping <eos> included
    logprobs: np.ndarray  # (len(token_ids),)
    finish: str  # "eos", "max_new_tokens" or "length"
    score: ScoreBreakdown
    index: int = 0  # its place in the sampling order (ties keep it)
    copied: np.ndarray | None = None  # (len(token_ids),) share of each token's p copied
    copied_from: np.ndarray | None = None  # (len(token_ids),) position copied from, or -1


# --------------------------------------------------------------------------- scoring


def echoes(text_words: list[str]) -> int:
    """How many times ``text_words`` (:func:`minireason.text.words`) use a content word again:
    for each word of three letters (two Han characters) or more that is not a stop word
    (:data:`minireason.prep.features.STOP_WORDS`), a plural folded into its singular (a final
    "s" dropped), its uses beyond the first. 0 when no content word comes back; "I like these
    straps because my acoustic guitar straps, and electric guitar straps are made" gives 3
    (strap twice again, guitar once)."""
    counts = Counter(
        w[:-1] if len(w) > 3 and w.endswith("s") else w
        for w in text_words
        if (len(w) > 2 or (len(w) == 2 and has_han(w))) and w not in STOP_WORDS
    )
    return sum(n - 1 for n in counts.values())


PHRASE_N = 3  # the phrasing term's n-grams: tokens, punctuation included (minireason.text)


def phrase_set(texts) -> frozenset:
    """The token 3-grams of ``texts`` (a user's past reviews), what :func:`phrasing`
    compares a candidate with; empty for no texts."""
    out: set = set()
    for text in texts:
        out |= ngrams(tokens(text), PHRASE_N)
    return frozenset(out)


def phrasing(text_tokens: list[str], phrases: frozenset) -> float:
    """The share of ``text_tokens``' distinct 3-grams that are in ``phrases``
    (:func:`phrase_set`): 1 when every phrase of the candidate is one the user has written,
    0 when none is, or when either side has none."""
    grams = ngrams(text_tokens, PHRASE_N)
    if not grams or not phrases:
        return 0.0
    return len(grams & phrases) / len(grams)


def repetition(text_words: list[str]) -> float:
    """``1 - distinct bigrams / bigrams``: 0 for no repeated bigram, towards 1 for a loop."""
    bigrams = list(zip(text_words, text_words[1:]))
    if len(bigrams) < 2:
        return 0.0
    return 1.0 - len(set(bigrams)) / len(bigrams)


NEGATIVE = frozenset(
    "awful bad broke broken cheaply crap defective died disappointed disappointing "
    "disappointment fail failed fails flimsy garbage hate horrible junk poor poorly problem "
    "problems refund return returned returning sadly terrible unfortunately useless waste "
    "worse worst "
    "差 烂 垃圾 糟糕 失望 难看 难听 无聊 乏味 讨厌 后悔 退货 坏 坏了 浪费 可惜 遗憾 尴尬 拖沓".split()
)
POSITIVE = frozenset(
    "amazing awesome best excellent fan fantastic good great happy love loved nice perfect "
    "perfectly pleased recommend solid sturdy wonderful "
    "好 好看 好听 喜欢 推荐 精彩 不错 满意 完美 优秀 出色 经典 感人 值得 棒 赞 惊艳".split()
)
NEGATORS = frozenset({"no", "not", "n't", "never", "without", "nothing", "不", "没", "没有", "别"})
SENTENCE_ENDS = (".", "!", "?", "。", "！", "？")


def sentiment(text_tokens: list[str]) -> int:
    """-1, 0 or +1: the sign of (positive - negative) words in ``text_tokens``
    (:func:`minireason.text.tokens`), a word with a negator among the three tokens before it
    counting for the other side (module doc)."""
    balance = 0
    for i, t in enumerate(text_tokens):
        sign = (t in POSITIVE) - (t in NEGATIVE)
        if sign and NEGATORS.intersection(text_tokens[max(0, i - 3) : i]):
            sign = -sign
        balance += sign
    return (balance > 0) - (balance < 0)


def contradicts(text_tokens: list[str], expected_rating: float) -> bool:
    """True when the text's :func:`sentiment` goes against ``expected_rating`` (1-5)."""
    s = sentiment(text_tokens)
    return (s < 0 and expected_rating >= 3.5) or (s > 0 and expected_rating <= 2.5)


def expected_rating(ratings) -> float:
    """The rating a reason should agree with: the mean of the user's past ``ratings``, 4 for
    none (a recommendation expects an item the user will like)."""
    ratings = list(ratings)
    return float(np.mean(ratings)) if ratings else 4.0


def ends_sentence(text: str) -> bool:
    """True when ``text`` ends like a sentence: ``.``, ``!`` or ``?`` (Chinese ``。！？``
    too), closing quotes or brackets allowed after it."""
    return text.rstrip().rstrip("\"')]」』）").endswith(SENTENCE_ENDS)


def _grams(words: list[str]) -> tuple[Counter, Counter]:
    """The word unigram and bigram counts of ``words`` (what :func:`overlap` compares)."""
    return Counter(zip(words)), Counter(zip(words, words[1:]))


def _overlap_of(ga: tuple[Counter, Counter], gb: tuple[Counter, Counter]) -> float:
    f = []
    for a, b in zip(ga, gb):
        total = a.total() + b.total()
        shared = sum(min(count, b[gram]) for gram, count in a.items() if gram in b)
        f.append(2 * shared / total if total else 0.0)
    return sum(f) / 2


def overlap(a: list[str], b: list[str]) -> float:
    """Mean of the F1 of the word unigrams and of the word bigrams of ``a`` and ``b``
    (clipped counts): 1 for the same words, 0 for nothing in common."""
    return _overlap_of(_grams(a), _grams(b))


def consensus(candidate_words: list[list[str]]) -> list[float]:
    """For each candidate, its mean :func:`overlap` with every other candidate (the
    minimum-Bayes-risk term; 0 for a single candidate). Each candidate's counts are made
    once, not once per pair."""
    n = len(candidate_words)
    if n < 2:
        return [0.0] * n
    grams = [_grams(w) for w in candidate_words]
    pair = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            pair[i, j] = pair[j, i] = _overlap_of(grams[i], grams[j])
    return list(pair.sum(axis=1) / (n - 1))


def score_candidate(
    text: str,
    logprobs,
    finish: str,
    profile_aspects: list[str],
    item_tags: list[str],
    duplicate: bool = False,
    weights: ScoreWeights | None = None,
    focus: list[str] | None = None,
    rating: float = 4.0,
    phrases: frozenset = frozenset(),
    known_words: frozenset = frozenset(),
    particular: frozenset = frozenset(),
) -> ScoreBreakdown:
    """Score one candidate (formula in the module docstring; the consensus term needs the
    other candidates and is added by :func:`rank_candidates`).

    Args:
        text: the candidate's text; logprobs: ``(n,)`` its tokens' log-probabilities;
        finish: how generation stopped ("eos" or a limit); duplicate: it repeats an earlier
        candidate; profile_aspects, item_tags, focus: the phrases to cover; rating: the
        rating expected (:func:`expected_rating`); phrases: the token 3-grams of the user's
        past reviews (:func:`phrase_set`); known_words: the training reviews' words
        (``Prepared.known_words``; empty: no word is charged as unknown); particular: the
        words particular to the item (``Prepared.particular_words``; empty: no reward).
    """
    focus = focus or []
    w = weights or ScoreWeights()
    text_tokens = tokens(text)
    text_words = [t for t in text_tokens if is_word(t)]
    aspects = mentions(text_tokens, profile_aspects)
    tags = mentions(text_tokens, item_tags)
    user_cov = len(aspects) / len(set(profile_aspects)) if profile_aspects else 0.0
    item_cov = len(tags) / len(set(item_tags)) if item_tags else 0.0
    focused = mentions(text_tokens, focus)
    focus_cov = len(focused) / len(set(focus)) if focus else 0.0
    mean_lp = float(np.mean(logprobs)) if len(logprobs) else 0.0
    rep = repetition(text_words)
    truncated = finish != "eos"
    empty = not text_words
    degenerate = degeneracies(text)
    unfinished = not truncated and not empty and not ends_sentence(text)
    against = contradicts(text_tokens, rating)
    breakdown = ScoreBreakdown(
        user_cov,
        item_cov,
        focus_cov,
        mean_lp,
        rep,
        duplicate,
        truncated,
        empty,
        0.0,
        aspects,
        tags,
        focused,
        degenerate,
        unfinished,
        against,
        echoes=echoes(text_words),
        phrasing=phrasing(text_tokens, phrases),
        unknown_words=[t for t in text_words if t not in known_words] if known_words else [],
        specific_words=list(dict.fromkeys(t for t in text_words if t in particular)),
        lowest_logprob=float(np.min(logprobs)) if len(logprobs) else 0.0,
        length=len(logprobs),
    )
    breakdown.total = float(sum(breakdown.parts(w).values()))
    return breakdown


def rank_candidates(
    tokenizer,
    token_ids,
    logprobs,
    finishes,
    profile_aspects: list[str],
    item_tags: list[str],
    weights: ScoreWeights | None = None,
    focus: list[str] | None = None,
    rating: float = 4.0,
    phrases: frozenset = frozenset(),
    known_words: frozenset = frozenset(),
    particular: frozenset = frozenset(),
) -> list[Candidate]:
    """Decode and score the sampled rows of one prompt; return them best first.

    Args:
        token_ids, logprobs, finishes: per candidate, as in :class:`minireason.reason.generate.Generation`.
        profile_aspects, item_tags, weights, focus, rating, phrases, known_words,
        particular: as in :func:`score_candidate`.

    A candidate whose words repeat an earlier candidate's is marked ``duplicate``. The sort
    is stable: ties keep the sampling order.
    """
    w = weights or ScoreWeights()
    candidates, seen, texts_words = [], set(), []
    for ids, logp, finish in zip(token_ids, logprobs, finishes, strict=True):
        text = one_line(tokenizer.decode(ids, skip_special=True))
        text_words = words(text)
        key = " ".join(text_words)
        score = score_candidate(
            text,
            logp,
            finish,
            profile_aspects,
            item_tags,
            duplicate=key in seen,
            weights=w,
            focus=focus,
            rating=rating,
            phrases=phrases,
            known_words=known_words,
            particular=particular,
        )
        seen.add(key)
        texts_words.append(text_words)
        candidates.append(Candidate(text, ids, logp, finish, score, len(candidates)))
    for candidate, c in zip(candidates, consensus(texts_words), strict=True):
        candidate.score.consensus = c
        candidate.score.total = float(sum(candidate.score.parts(w).values()))
    candidates.sort(key=lambda c: -c.score.total)
    return candidates
