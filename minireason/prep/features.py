"""Seed step 2: item features, user profiles and explanation targets.

**Aspect mining** (the literature's "features": strings, tuner, cable, sound, pedal, ...),
from training-split review text only:

1. a text is its tokens (:mod:`minireason.text`: lower-cased words, punctuation and
   clitics split off), the same tokens the reranker and the metrics read;
2. a *candidate* is a word of 3+ ASCII letters only (so not ``well-made`` or ``9v``), or
   of 2 to 4 Han characters (Chinese, cut by jieba), that is not a stop word, a sentiment
   or evaluation word (good, great, love, 精彩, 失望, ...), a generic review word (product,
   amazon, bought, 电影, 东西, ...), in Chinese one ending with a sentiment word (很漂亮,
   不好看), or, in English, adjective/adverb/past-participle shaped
   (-ly on words of 5+ letters; -ed, -ful, -ous, -ive, -able, -ible, -less on words of 7+
   letters): a cheap stand-in for "noun-like". Each list holds both languages' words
   (English first, then Chinese); a word of one never occurs in the other's text, so each
   language's text is judged by its own words;
3. document frequency (df) = the number of training reviews containing the word (or the
   bigram of two adjacent candidate tokens: never across punctuation, so "acoustic,
   electric" holds no bigram);
4. the aspects are the ``n_unigrams`` most frequent candidate words and the ``n_bigrams``
   most frequent candidate bigrams with df >= ``min_df`` (ties broken alphabetically).

**Explanation target** (PETER's: one review sentence that contains a feature word): the
review text is split into sentences; the target is the first sentence of 4 to
``MAX_TARGET_WORDS`` (25) words that mentions an aspect (:func:`minireason.text.mentions`,
the rule FMR judges by, so the target always mentions its own feature); its ground-truth feature is the
most specific aspect it mentions (lowest df; a bigram beats its own words). The cap keeps
targets the length of a reason rather than of a review. Reviews without such a sentence
get no target and are counted by reason ("no aspect in any sentence", "aspect sentences
all too long or short"). With ``prepare --target-prefer particular``, a *training* review's
target is the first such sentence that also says a word particular to its item (a brand, a
model, a use: :func:`minireason.text.particular_words`), when one does; validation and test
targets are always the first.

**Item tags**: the metadata tags (categories, brand, genres) where the item has them;
otherwise the item's ``n_item_tags`` most frequent aspects in *other* training reviews
(for a training review, its own aspects are subtracted first, so a review never supplies
its own item's tags).

**Focus** (the features a reason should talk about; PETER's "feature" input, here a few
of them): a training record whose target is known gets the aspects its target sentence
mentions, most specific first, at most ``MAX_FOCUS`` (the model learns to write about the
focus it is given). Every other record, and every record at test time, gets the ``k``
aspects :func:`predict_focus` ranks first from training data only: how often the item's
other reviews mention the aspect, whether the user's profile holds it, and how often the
aspect, when a training review mentions it, is that review's ground-truth feature
(:func:`feature_rates`). The weights were chosen on the validation split (docs/quality.md's
"How the settings were chosen" gives the numbers).

**User profile** of a record: the aspects the user mentioned in, and the tags of the items
of, their training reviews strictly before that record in time order (see
``history_items``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

from minireason.data.records import ItemMeta, Review
from minireason.text import HAN_RANGES, PhraseSet, particular_words, tokens, words

MAX_TARGET_WORDS = 25
MIN_TARGET_WORDS = 4
MAX_FOCUS = 3  # focus aspects of a training record (from its target sentence)
MAX_HISTORY_ASPECTS = 3  # aspects a history block keeps of what the user said
FOCUS_WEIGHTS = {"item": 1.0, "profile": 0.25, "rate": 0.5}  # predict_focus, see its doc

STOP_WORDS = frozenset(
    """
a about above after again against all almost along already also although always am among an
and another any anyone anything anyway are around as at away back be because been before
being below between both but by came can cannot could did do does doing done don down during
each either else enough etc even ever every everything few for from further get gets getting
go goes going gone got had has have having he her here hers herself him himself his how
however i if in into is it its itself just keep kind least less let lot lots made make makes
making many may maybe me might mine more most much must my myself need needs neither never
no nor not now of off often ok okay on once one ones only or other others our ours ourselves
out over own per perhaps put quite rather re really said same say says see seem seems seen
several she should since so some someone something sometimes somewhat still such sure take
than that the their theirs them themselves then there these they thing things this those
though through thus to too took toward try trying two under until up upon us use used uses
using very via want wanted was way ways we well went were what whatever when where whether
which while who whole whom whose why will with within without would yet you your yours
yourself ve ll t s d m isn doesn didn wasn aren won wouldn couldn shouldn haven hasn can
first second third three four five new old another right left little big bit lot back yes
actually definitely probably pretty sort since thanks thank day days time times year years
week weeks month months ago last next else able came come comes coming look looks looking
give gives given think thought know knew feel felt find found tell told around everyone
"""
    """
的 了 着 过 是 在 有 和 与 及 或 而 但 但是 可是 不过 然而 因为 所以 如果 虽然 而且 并且
就 都 也 还 又 再 才 只 只是 就是 还是 也是 都是 不是 没有 没 不 很 太 更 最 挺 蛮 非常
特别 比较 真的 实在 一点 一些 有点 有些 已经 一直 一样 这样 那样 怎么 什么 为什么 怎样
我 你 他 她 它 我们 你们 他们 她们 大家 自己 别人 这 那 这个 那个 这些 那些 这里 那里
这部 那部 这种 那种 一部 一个 一种 一次 两个 几个 个 部 次 种 些 里 上 下 中 后 前 时
时候 现在 以后 以前 之前 之后 然后 最后 开始 其实 当然 可能 应该 可以 能 会 要 想 让 被
把 给 对 从 到 向 跟 比 说 看 看到 看过 看完 觉得 感觉 认为 知道 还有 以及 其中 之一
没什么 有些 一定 肯定 完全 几乎 总是 总之 反正 毕竟 好像 似乎 简直 居然 竟然 终于
确实 的确 发生 出现 看看 去看 看了 来说 起来 出来 一下 东西 之类 而已 罢了 那么 这么 整体
整个 整部 第一次 第二次 第三次 说实话 老实说 总的来说 总体 总体来说 整体来说 昨天 今天 明天
前天 还会 不会 也许 或许 大概 真是
""".split()
)

SENTIMENT_WORDS = frozenset(
    """
good great nice bad excellent awesome amazing love loved loves like liked likes best better
worse worst perfect perfectly fine happy pleased disappointed recommend recommended
highly decent solid cheap expensive poor terrible horrible wonderful fantastic superb
fabulous outstanding beautiful cool fun easy hard difficult simple super glad sweet
favorite wrong problem problems issue issues star stars five four price worth value
quality real true high low long short large small huge tiny heavy light strong weak
"""
    """
好 坏 好看 难看 好听 精彩 出色 优秀 完美 经典 感人 动人 震撼 惊艳 有趣 幽默 搞笑 无聊
乏味 平淡 一般 普通 失望 推荐 值得 喜欢 讨厌 满意 不错 还行 可以 垃圾 糟糕 烂 差 棒
赞 爱 美 漂亮 舒服 紧凑 拖沓 冗长 流畅 生动 细腻 真实 自然 深刻 感动 温暖 可爱 尴尬 值得一看
老套 俗套 狗血 浮夸 用心 认真 成功 失败 满分 五星 一星 星 分 高 低 长 短 大 小 多 少
新 旧 快 慢 强 弱 过瘾 好玩 好笑 难过 遗憾 可惜 期待 惊喜 意外 精良 粗糙 优美 华丽
""".split()
)

GENERIC_WORDS = frozenset(
    """
product products item items amazon buy bought buying purchase purchased order ordered
review reviews work works worked working job use money dollars bucks stuff thing
anything nothing everything people person guy guys someone anyone company brand seller
shipping arrived box package reason way lot end sure need part parts instead set
play plays playing played different far tried needed hold holds built top change home line
place extra couple read overall difference longer deal easier turn fact full add fast expect
plus prefer close point break run feels note tight accurate clear single stay soft smaller
pay quick replace hear takes piece sounding bottom side type whatever able start started
wish free kept hope start test tested already inside outside especially exactly literally
guess together half install ends
"""
    """
电影 影片 片子 作品 东西 事情 问题 地方 方面 部分 样子 时间 人 看法 评价 评论 豆瓣
观众 影院 电影院 二刷 一刷 原著 版本 国产 国内 外国 全片 本片 此片 整部 全程 结果
""".split()
)

_SUFFIXES = ("ly", "ed", "ful", "ous", "ive", "able", "ible", "less")
_HAN_WORD = re.compile(f"[{HAN_RANGES}]{{2,4}}")
_CANDIDATE = re.compile(r"[a-z]{3,}")
_HAN_EVALUATIONS = tuple(w for w in SENTIMENT_WORDS if len(w) >= 2 and _HAN_WORD.fullmatch(w))
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[a-z][.!?])(?=[A-Z])|(?<=[。！？])\s*")


def is_candidate(word: str) -> bool:
    """Could the token ``word`` be an aspect? (See the module doc, rule 2.)"""
    if word in STOP_WORDS or word in SENTIMENT_WORDS or word in GENERIC_WORDS:
        return False
    if _HAN_WORD.fullmatch(word):  # not an evaluation with a degree word before it: 很漂亮
        return not word.endswith(_HAN_EVALUATIONS)
    if not _CANDIDATE.fullmatch(word):
        return False
    if len(word) >= 5 and word.endswith("ly"):
        return False
    return not (len(word) >= 7 and word.endswith(_SUFFIXES))


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: split after . ! ? followed by a space, or glued to a capital;
    after Chinese 。！？ always."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def candidate_terms(tokens: list[str]) -> set[str]:
    """Candidate unigrams and adjacent-candidate bigrams of one token list
    (:func:`minireason.text.tokens`)."""
    flags = [is_candidate(w) for w in tokens]
    terms = {w for w, ok in zip(tokens, flags, strict=True) if ok}
    for i in range(len(tokens) - 1):
        if flags[i] and flags[i + 1] and tokens[i] != tokens[i + 1]:
            terms.add(f"{tokens[i]} {tokens[i + 1]}")
    return terms


@dataclass
class AspectVocabulary:
    """The mined aspects (feature set F) with their training document frequencies."""

    df: dict[str, int]
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        self._index = PhraseSet(self.df)

    @property
    def aspects(self) -> list[str]:
        """F, most frequent first."""
        return sorted(self.df, key=lambda a: (-self.df[a], a))

    def find(self, text: str) -> list[str]:
        """The aspects mentioned in ``text``, most specific (lowest df) first."""
        found = self._index.mentioned_in(tokens(text), ordered=False)
        return sorted(found, key=lambda a: (self.df[a], -len(a), a))


def mine_aspects(
    train_texts, n_unigrams: int = 150, n_bigrams: int = 50, min_df: int = 5
) -> AspectVocabulary:
    """Mine aspects from an iterable of training review texts (see module doc)."""
    df: Counter = Counter()
    for text in train_texts:
        df.update(candidate_terms(tokens(text)))
    ranked = sorted((t for t, n in df.items() if n >= min_df), key=lambda t: (-df[t], t))
    unigrams = [t for t in ranked if " " not in t][:n_unigrams]
    bigrams = [t for t in ranked if " " in t][:n_bigrams]
    return AspectVocabulary(
        df={t: df[t] for t in unigrams + bigrams},
        params={"n_unigrams": n_unigrams, "n_bigrams": n_bigrams, "min_df": min_df},
    )


@dataclass
class Target:
    """An explanation target: one sentence, its ground-truth feature, the review's rating."""

    sentence: str
    feature: str
    rating: float


NO_ASPECT = "no aspect in any sentence"
BAD_LENGTH = f"aspect sentences all outside {MIN_TARGET_WORDS}-{MAX_TARGET_WORDS} words"


def explanation_target(
    review: Review, vocab: AspectVocabulary, particular: frozenset = frozenset()
) -> Target | str:
    """The review's target (see module doc), or the reason it has none (a string). With
    ``particular`` (words particular to the review's item, :func:`minireason.text.particular_words`):
    the first qualifying sentence that says one of them, else the first qualifying one."""
    saw_aspect, first = False, None
    for sentence in split_sentences(review.text):
        found = vocab.find(sentence)
        if not found:
            continue
        saw_aspect = True
        sentence_words = words(sentence)
        if MIN_TARGET_WORDS <= len(sentence_words) <= MAX_TARGET_WORDS:
            target = Target(sentence, found[0], review.rating)
            if not particular or particular.intersection(sentence_words):
                return target
            first = first or target
    if first is not None:
        return first
    return BAD_LENGTH if saw_aspect else NO_ASPECT


class ItemFeatures:
    """Per-item aspect counts over training reviews, and per-item tags.

    ``review_aspects`` maps ``id(review)`` of each training review to its aspect set, so a
    training review's own aspects can be left out of its item's tags.
    """

    def __init__(
        self,
        train: list[Review],
        vocab: AspectVocabulary,
        meta: dict[str, ItemMeta] | None = None,
        n_item_tags: int = 5,
    ):
        self.vocab = vocab
        self.meta = meta or {}
        self.n_item_tags = n_item_tags
        self.review_aspects: dict[int, list[str]] = {}
        self.counts: dict[str, Counter] = {}
        for r in train:
            found = vocab.find(r.text)
            self.review_aspects[id(r)] = found
            self.counts.setdefault(r.item, Counter()).update(found)

    def aspects_of_review(self, review: Review) -> list[str]:
        """The aspects ``review`` mentions, most specific first."""
        found = self.review_aspects.get(id(review))
        return list(found) if found is not None else self.vocab.find(review.text)

    def item_aspects(
        self, item: str, n: int | None = None, exclude: Review | None = None
    ) -> list[tuple[str, int]]:
        """The item's aspects as ``(aspect, number of training reviews)``, most frequent
        first; ``exclude``: a training review whose own aspects are not counted."""
        counts = Counter(self.counts.get(item, Counter()))
        if exclude is not None and id(exclude) in self.review_aspects:
            counts.subtract(self.review_aspects[id(exclude)])
        ranked = sorted((kv for kv in counts.items() if kv[1] > 0), key=lambda kv: (-kv[1], kv[0]))
        return ranked[:n] if n else ranked

    def tags(self, item: str, exclude: Review | None = None) -> list[str]:
        """Tags of ``item``: metadata tags, else its top aspects without ``exclude``'s own."""
        meta = self.meta.get(item)
        if meta is not None and meta.tags:
            return list(meta.tags)
        return [a for a, _ in self.item_aspects(item, self.n_item_tags, exclude)]


@dataclass
class HistoryItem:
    """One past review in a prompt: the item, its tags, what the user said about it, rating."""

    item: str
    tags: list[str]
    aspects: list[str]
    rating: float

    def as_dict(self) -> dict:
        """The fields as a dict, the lists copied: what ``dataclasses.asdict`` gives, without
        its recursive deep copy of every value."""
        return {"item": self.item, "tags": list(self.tags), "aspects": list(self.aspects),
                "rating": self.rating}  # fmt: skip


def history_items(
    past: list[Review],
    features: ItemFeatures,
    max_items: int,
    max_aspects: int = MAX_HISTORY_ASPECTS,
) -> list[HistoryItem]:
    """History blocks for the last ``max_items`` of ``past`` (oldest first).

    Each block keeps the ``max_aspects`` most specific aspects the user mentioned.

    ``past`` must hold only the user's training reviews strictly before the record being
    explained (``minireason.prep.prepare`` walks each user's time-sorted sequence to build it):
    that is what keeps the record's own review, and its future, out of its prompt.
    """
    return [
        HistoryItem(
            r.item, features.tags(r.item), features.aspects_of_review(r)[:max_aspects], r.rating
        )
        for r in past[-max_items:]
    ]


def profile(history: list[HistoryItem], n: int = 10) -> dict[str, list[str]]:
    """A user profile from a history: the most frequent aspects and item tags."""
    aspects = Counter(a for h in history for a in h.aspects)
    tags = Counter(t for h in history for t in h.tags)
    return {"aspects": _most_common(aspects, n), "tags": _most_common(tags, n)}


def _most_common(counts: Counter, n: int) -> list[str]:
    """The ``n`` most frequent keys, ties broken alphabetically (deterministic)."""
    return [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


# --------------------------------------------------------------------------- focus


def target_focus(sentence: str, vocab: AspectVocabulary, k: int = MAX_FOCUS) -> list[str]:
    """The focus of a known target: the aspects ``sentence`` mentions, most specific first
    (so its ground-truth feature comes first), at most ``k``."""
    return vocab.find(sentence)[:k]


def feature_rates(targets: list[tuple[list[str], str]]) -> dict[str, float]:
    """How often an aspect is *the* ground-truth feature when a review mentions it.

    targets: ``(aspects the review mentions, its ground-truth feature)`` for each training
    review with a target. Returns ``{aspect: (n_feature + 1) / (n_mentioned + 2)}`` (add-one
    smoothing: an aspect seen once is not certain), for every aspect mentioned at least once,
    in alphabetical order (so ``features.json`` is the same file from run to run).
    """
    mentioned: Counter = Counter()
    chosen: Counter = Counter()
    for aspects, feature in targets:
        mentioned.update(set(aspects))
        chosen[feature] += 1
    return {a: (chosen[a] + 1) / (n + 2) for a, n in sorted(mentioned.items())}


def predict_focus(
    item_aspects: list[tuple[str, int]],
    profile_aspects: list[str],
    rates: dict[str, float],
    k: int,
    weights: dict[str, float] | None = None,
) -> list[str]:
    """The ``k`` aspects a reason for this (user, item) should most likely talk about.

    Each aspect the item's training reviews mention scores::

        w_item * log(1 + n) + w_profile * [aspect in the user's profile]
                            + w_rate * log(rate)

    with ``n`` the item's training reviews mentioning it and ``rate`` its
    :func:`feature_rates` entry (0.5 when unknown). Ties go alphabetically. An item with no
    aspect (cold item) falls back to the profile aspects, ranked the same way with ``n = 0``.

    item_aspects: ``[(aspect, n), ...]`` as :meth:`ItemFeatures.item_aspects`.
    Returns at most ``k`` aspects, best first (``[]`` when ``k`` is 0 or nothing is known).
    """
    w = {**FOCUS_WEIGHTS, **(weights or {})}
    counts = dict(item_aspects) or {a: 0 for a in profile_aspects}
    in_profile = set(profile_aspects)

    def score(a: str) -> float:
        return (
            w["item"] * math.log1p(counts[a])
            + w["profile"] * (a in in_profile)
            + w["rate"] * math.log(rates.get(a, 0.5))
        )

    return sorted(counts, key=lambda a: (-score(a), a))[: max(k, 0)]


def tag_counts(tags: list[str], known) -> list[tuple[str, int]]:
    """Free-form item tags as :func:`predict_focus` input: the tags that are aspects
    (``known``: the feature set F), with made-up counts that keep their given order."""
    tags = [t for t in dict.fromkeys(tags) if t in known]
    return [(t, len(tags) - i) for i, t in enumerate(tags)]


# --------------------------------------------------------------------------- evidence


EVIDENCE_WORDS = 12  # the evidence length preferred among equally focused sentences


@dataclass(frozen=True)
class EvidenceSentence:
    """One sentence of a training review, with what the evidence choice needs to know."""

    review: tuple  # (user, item, time, line): which review it comes from
    user: str
    sentence: str
    aspects: frozenset  # the aspects it mentions
    n_words: int
    specific: int = 0  # its words particular to the item (text.particular_words)


EVIDENCE_PREFERENCES = ("focus", "particular")  # prepare --evidence-prefer


def item_words(reviews) -> dict[str, frozenset[str]]:
    """``{item: the words of its reviews}`` (:func:`minireason.text.words`), what
    :func:`minireason.text.particular_words` reads; ``reviews``: Review objects or prepared
    records."""
    found: dict[str, set[str]] = {}
    for r in reviews:
        item, text = (r["item"], r["text"]) if isinstance(r, dict) else (r.item, r.text)
        found.setdefault(item, set()).update(words(text))
    return {item: frozenset(ws) for item, ws in found.items()}


def review_key(review) -> tuple:
    """``(user, item, time, line)``: what tells one review from another. ``review``: a
    :class:`~minireason.data.records.Review` or a prepared record (a dict with those keys)."""
    if isinstance(review, dict):
        return (review["user"], review["item"], review["time"], review["line"])
    return (review.user, review.item, review.time, review.line)


class EvidenceIndex:
    """The sentences of the training reviews, by item, to ground a prompt in what *other*
    users wrote about the item (the prompt's evidence segment).

    :meth:`choose` picks, for (item, focus), up to ``k`` sentences of ``MIN_TARGET_WORDS`` to
    ``MAX_TARGET_WORDS`` words and at most ``max_tokens`` prompt tokens (``count_tokens``:
    a sentence's length in the tokenizer's tokens) from other users' training reviews of the
    item that mention a focus aspect: the most focus aspects first; with ``prefer``
    ``"particular"``, then a sentence that says a word particular to the item (one few
    items' reviews use, :func:`minireason.text.particular_words`: what the item *is*, a
    brand, a model, a use); then an earlier focus aspect, the length nearest
    :data:`EVIDENCE_WORDS`, and the earlier review. With ``k`` above 1 the further sentences
    come from other customers, cover the focus aspects not yet covered, and do not repeat
    what is already quoted (:func:`_covering`). An item none of whose
    sentences qualify (a cold item) borrows from the items that share most of its tags
    (``neighbours``). Nothing of the record's own review can be chosen, and nothing of the
    validation or test split is in the index at all: the evidence never sees the review it
    stands beside.

    reviews: the training reviews, as :class:`~minireason.data.records.Review` objects or
    prepared records (``user, item, time, line, text``). particular: the words particular to
    each item of those reviews, when the caller has them (else computed for ``"particular"``).
    """

    def __init__(
        self,
        reviews,
        vocab: AspectVocabulary,
        count_tokens,
        max_tokens: int = 32,
        prefer: str = "focus",
        particular: dict[str, frozenset[str]] | None = None,
    ):
        if prefer not in EVIDENCE_PREFERENCES:
            raise ValueError(f"evidence preference {prefer!r}: expected {EVIDENCE_PREFERENCES}")
        reviews = list(reviews)
        self.max_tokens, self.prefer = max_tokens, prefer
        if prefer != "particular":
            particular = {}
        elif particular is None:  # the caller may hold them already (text.particular_words)
            particular = particular_words(item_words(reviews))
        self.by_item: dict[str, list[EvidenceSentence]] = {}
        for r in reviews:
            key = review_key(r)
            user, item, text = (
                (r["user"], r["item"], r["text"])
                if isinstance(r, dict)
                else (r.user, r.item, r.text)
            )
            for sentence in split_sentences(text):
                n = len(words(sentence))
                if not MIN_TARGET_WORDS <= n <= MAX_TARGET_WORDS:
                    continue
                if count_tokens(sentence) > max_tokens:
                    continue
                found = frozenset(vocab.find(sentence))
                if found:
                    specific = len(set(words(sentence)) & particular.get(item, frozenset()))
                    entry = EvidenceSentence(key, user, sentence, found, n, specific)
                    self.by_item.setdefault(item, []).append(entry)

    def choose(
        self,
        item: str,
        focus: list[str],
        user: str,
        k: int = 1,
        exclude: tuple | None = None,
        neighbours=None,
    ) -> list[str]:
        """Up to ``k`` evidence sentences for ``user`` and ``item`` (class doc); ``exclude``:
        the ``(user, item, time, line)`` of a review that must not be used (the record's own);
        ``neighbours``: a function returning the items to borrow from, most similar first
        (called only for a cold item)."""
        if not focus or k < 1:
            return []
        chosen = self._best(item, focus, user, k, exclude)
        for other in neighbours() if neighbours and not chosen else []:
            chosen = self._best(other, focus, user, k, exclude)
            if chosen:
                break
        return chosen

    def _best(self, item, focus, user, k, exclude) -> list[str]:
        rank = {a: i for i, a in enumerate(focus)}

        def key(e: EvidenceSentence):
            hits = [rank[a] for a in e.aspects if a in rank]
            says = e.specific > 0 if self.prefer == "particular" else False
            return (
                -len(hits),
                -says,
                min(hits),
                abs(e.n_words - EVIDENCE_WORDS),
                e.review,
                e.sentence,
            )

        pool = sorted(
            (
                e
                for e in self.by_item.get(item, [])
                if e.user != user and e.review != exclude and e.aspects & rank.keys()
            ),
            key=key,
        )
        return [e.sentence for e in _covering(pool, rank.keys(), k)]


EVIDENCE_OVERLAP = 0.5  # a further evidence sentence repeats a chosen one above this overlap


def _content_words(sentence: str) -> set[str]:
    return {w for w in words(sentence) if is_candidate(w)}


def _covering(ranked: list[EvidenceSentence], focus, k: int) -> list[EvidenceSentence]:
    """Up to ``k`` of ``ranked`` (best first) that together cover the focus without
    repeating each other: the first is the best (it names the most focus aspects); each next
    one is from a customer not yet quoted, shares at most :data:`EVIDENCE_OVERLAP` of its
    content words with those chosen, and names the most focus aspects they do not name yet
    (then the best ranked)."""
    chosen = ranked[:1]
    if k < 2 or not chosen:
        return chosen[:k]
    users = {chosen[0].user}
    said = _content_words(chosen[0].sentence)  # content words of the chosen sentences
    covered = set(chosen[0].aspects)
    left = [(e, _content_words(e.sentence)) for e in ranked[1:]]
    while left and len(chosen) < k:
        best = None
        for place, (e, mine) in enumerate(left):
            if e.user in users or len(mine & said) > EVIDENCE_OVERLAP * max(len(mine), 1):
                continue
            new = len((e.aspects & focus) - covered)
            if best is None or new > best[0]:
                best = (new, place)
        if best is None:
            break
        e, mine = left.pop(best[1])
        chosen.append(e)
        users.add(e.user)
        said |= mine
        covered |= e.aspects
    return chosen


def tag_neighbours(item: str, tags_of: dict[str, list[str]], n: int = 5) -> list[str]:
    """The ``n`` items sharing most tags with ``item`` (ties by id), for a cold item's evidence."""
    mine = set(tags_of.get(item, []))
    if not mine:
        return []
    scored = [(-len(mine & set(t)), other) for other, t in tags_of.items() if other != item]
    return [other for s, other in sorted(scored) if s < 0][:n]
