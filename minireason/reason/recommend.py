"""Small recommenders that pick the items to explain, and their ranking metrics.

Seed section 2.2: item-based collaborative filtering, tag/aspect content similarity, and a hybrid
of the two, measured against a popularity baseline. Everything works on plain Python structures,
so this module does not depend on the data loaders:

- ``train_seqs: dict[user, list[item]]``: each user's training items in time order;
- ``item_tags: dict[item, list[str]]``: tags and aspect terms of each item (content models);
- ``test_items: dict[user, item]``: one held-out item per user (leave-last-out).

Every recommender has the same interface::

    model = ItemCF().fit(train_seqs, item_tags)
    model.recommend(user, k=10, exclude_seen=True)       # -> [(item, score), ...], best first
    model.recommend_for_history([item, ...], k=10)       # free-form history, same ranking

The catalogue is the set of items that occur in ``train_seqs`` (in order of first appearance).
Cold start: a user who is unknown, or whose history is empty, gets the popularity ranking from
every model (there is nothing to be similar to). Ties in score are broken by popularity, then by
catalogue order, so rankings are deterministic.

Tags of items outside the catalogue cannot be recommended or scored; they are skipped and
counted in ``model.n_unknown_tag_items`` (not an error, since tag files often cover more items
than a split). An unknown item in a free-form history is a ValueError naming it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

Item = Hashable
User = Hashable


class Recommender(ABC):
    """Shared machinery: the item index, popularity, cold start and top-k selection.

    Subclasses implement ``_fit(train_seqs, item_tags)`` and ``_score(hist, candidates)``:
    ``hist`` is an int array of catalogue indices (distinct, non-empty), ``candidates`` a bool
    array of shape (n_items,) marking the items that may be recommended, and ``_score`` returns
    float scores of shape (n_items,), higher is better.
    """

    def fit(self, train_seqs: Mapping[User, Sequence[Item]], item_tags=None) -> Recommender:
        """Index users and items, count popularity, then fit the model. Returns ``self``."""
        if not isinstance(train_seqs, Mapping):
            raise TypeError(
                f"train_seqs must be a dict user -> list of items, got {type(train_seqs).__name__}"
            )
        self.items: list[Item] = []
        self.item_index: dict[Item, int] = {}
        for user, seq in train_seqs.items():
            if isinstance(seq, (str, bytes)) or not isinstance(seq, Sequence):
                raise TypeError(f"train_seqs[{user!r}] must be a list of items")
            for item in seq:
                if item not in self.item_index:
                    self.item_index[item] = len(self.items)
                    self.items.append(item)
        if not self.items:
            raise ValueError("train_seqs holds no items")
        self.histories: dict[User, np.ndarray] = {
            user: self._indices(seq) for user, seq in train_seqs.items()
        }
        # binary user-item matrix X, shape (n_users, n_items): X[u, i] = 1 if u has item i
        self.user_item = np.zeros((len(self.histories), len(self.items)), dtype=np.float64)
        for row, hist in enumerate(self.histories.values()):
            self.user_item[row, hist] = 1.0
        self.popularity = self.user_item.sum(axis=0)  # (n_items,) users per item
        self.n_unknown_tag_items = 0
        self._fit(train_seqs, item_tags)
        return self

    def is_cold(self, user: User) -> bool:
        """True when ``user`` has no training history (unknown, or an empty list)."""
        hist = self.histories.get(user)
        return hist is None or hist.size == 0

    def recommend(self, user: User, k: int = 10, exclude_seen: bool = True):
        """Top-``k`` ``[(item, score), ...]`` for a training user (cold start if unknown)."""
        hist = self.histories.get(user, np.zeros(0, dtype=np.int64))
        return self._rank(hist, k, exclude_seen)

    def recommend_for_history(
        self, history: Sequence[Item], k: int = 10, exclude_seen: bool = True
    ):
        """Top-``k`` for a free-form list of catalogue items (unknown item -> ValueError)."""
        unknown = [item for item in history if item not in self.item_index]
        if unknown:
            raise ValueError(
                f"history: unknown item id(s) {unknown[:5]!r} "
                f"({len(unknown)} of {len(history)}) not in the training data"
            )
        return self._rank(self._indices(history), k, exclude_seen)

    # -- internals ----------------------------------------------------------------------------

    def _indices(self, seq: Sequence[Item]) -> np.ndarray:
        """Distinct catalogue indices of ``seq``, int array of shape (n_distinct,)."""
        return np.unique(np.fromiter((self.item_index[i] for i in seq), dtype=np.int64))

    def _rank(self, hist: np.ndarray, k: int, exclude_seen: bool) -> list[tuple[Item, float]]:
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        candidates = np.ones(len(self.items), dtype=bool)
        if exclude_seen:
            candidates[hist] = False
        scores = self.popularity.copy() if hist.size == 0 else self._score(hist, candidates)
        cand = np.flatnonzero(candidates)
        # lexsort sorts by the LAST key first: score desc, then popularity desc, then index asc
        order = np.lexsort((cand, -self.popularity[cand], -scores[cand]))[:k]
        return [(self.items[i], float(scores[i])) for i in cand[order]]

    @abstractmethod
    def _fit(self, train_seqs, item_tags) -> None:
        """Model-specific fitting, called by ``fit`` once the index and popularity exist."""

    @abstractmethod
    def _score(self, hist: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Scores of shape (n_items,) for a non-empty history of catalogue indices."""


class Popularity(Recommender):
    """Baseline: every user gets the items most users have, by number of distinct users."""

    def _fit(self, train_seqs, item_tags) -> None:
        """Nothing beyond the popularity counts that ``fit`` already made."""

    def _score(self, hist: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        return self.popularity.copy()


class ItemCF(Recommender):
    """Item-based collaborative filtering: cosine similarity on the binary user-item matrix.

    ``S = (X^T X) / (n n^T)`` with X the (n_users, n_items) binary matrix and
    ``n_i = sqrt(#users of item i)``, so ``S[i, j]`` = users sharing i and j over
    ``sqrt(n_i^2 n_j^2)``; the diagonal is set to 0. A user's score for item j is the sum of
    similarities to the items of their history: ``score = x_u S`` (shape (n_items,)).
    Memory: S is dense, n_items^2 float64 (900 items: 6.5 MB).
    """

    def _fit(self, train_seqs, item_tags) -> None:
        co = self.user_item.T @ self.user_item  # (n_items, n_items) co-occurrence counts
        norms = np.sqrt(np.diag(co))
        self.similarity = co / np.outer(norms, norms)  # every item has >= 1 user: norms > 0
        np.fill_diagonal(self.similarity, 0.0)

    def _score(self, hist: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        return self.similarity[hist].sum(axis=0)


class ContentSimilarity(Recommender):
    """TF-IDF cosine between each item's tag bag and the user's profile bag.

    Tags are counted per item (``T[i, t]`` = times tag t is listed for item i, shape
    (n_items, n_tags)); ``idf_t = ln((1 + n_items) / (1 + df_t)) + 1`` (smoothed, so a tag on
    every item still counts a little). The user's profile bag is the sum of the tag counts of
    their history items; item and profile TF-IDF vectors are L2-normalised and the score is
    their dot product (cosine, in [0, 1]). Items without tags score 0.
    """

    def _fit(self, train_seqs, item_tags) -> None:
        if item_tags is None:
            raise ValueError(f"{type(self).__name__}.fit needs item_tags (dict item -> tags)")
        vocab: dict[str, int] = {}
        rows, cols = [], []
        for item, tags in item_tags.items():
            if item not in self.item_index:
                self.n_unknown_tag_items += 1
                continue
            if isinstance(tags, (str, bytes)) or not isinstance(tags, Sequence):
                raise TypeError(f"item_tags[{item!r}] must be a list of tag strings")
            for tag in tags:
                rows.append(self.item_index[item])
                cols.append(vocab.setdefault(tag, len(vocab)))
        self.tags = list(vocab)
        self.tag_counts = np.zeros((len(self.items), len(vocab)), dtype=np.float64)
        np.add.at(self.tag_counts, (rows, cols), 1.0)
        df = np.count_nonzero(self.tag_counts, axis=0)
        self.idf = np.log((1.0 + len(self.items)) / (1.0 + df)) + 1.0
        self.item_vectors = _l2_rows(self.tag_counts * self.idf)  # (n_items, n_tags)

    def _score(self, hist: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        profile = _l2_rows((self.tag_counts[hist].sum(axis=0) * self.idf)[None, :])[0]
        return self.item_vectors @ profile


class Hybrid(Recommender):
    """``alpha * minmax(ItemCF) + (1 - alpha) * minmax(ContentSimilarity)``.

    ``minmax(s) = (s - min) / (max - min)`` over the candidate items only (the ones that may be
    recommended), so both parts span [0, 1] on the items being ranked; a constant part becomes
    all 0. ``alpha = 1`` is pure CF, ``alpha = 0`` pure content; the default 0.5 weighs them
    equally (not tuned on the test split).
    """

    def __init__(self, alpha: float = 0.5):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha

    def _fit(self, train_seqs, item_tags) -> None:
        # both parts index train_seqs the same way (first appearance), so their scores align
        self.cf = ItemCF().fit(train_seqs)
        self.content = ContentSimilarity().fit(train_seqs, item_tags)
        self.n_unknown_tag_items = self.content.n_unknown_tag_items

    def _score(self, hist: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        cf = _minmax(self.cf._score(hist, candidates), candidates)
        content = _minmax(self.content._score(hist, candidates), candidates)
        return self.alpha * cf + (1.0 - self.alpha) * content


RECOMMENDERS = {  # name -> class, as the command line names them
    "popularity": Popularity,
    "itemcf": ItemCF,
    "content": ContentSimilarity,
    "hybrid": Hybrid,
}
DEFAULT_RECOMMENDER = "hybrid"  # what explain and explain-all recommend with


def _l2_rows(m: np.ndarray) -> np.ndarray:
    """Rows of ``m`` divided by their L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)


def _minmax(s: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Scale ``s`` to [0, 1] using min and max over ``candidates`` (all 0 when constant)."""
    if not candidates.any():
        return np.zeros_like(s)
    lo, hi = s[candidates].min(), s[candidates].max()
    return (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)


def evaluate_ranking(model: Recommender, test_items: Mapping[User, Item], k: int = 10) -> dict:
    """HR@k and NDCG@k of ``model`` on one held-out item per user.

    For each user, with ``rank`` the 0-based position of the held-out item in the top-k
    (seen items excluded): ``HR = 1`` and ``NDCG = 1 / log2(rank + 2)`` when it is there,
    both 0 otherwise; the results are means over all users of ``test_items``.

    Counted, never dropped: ``n_cold_start`` users (unknown or empty history: ranked by
    popularity), ``n_unknown_test_items`` (held-out item not in the catalogue: a miss, as no
    model can rank it) and ``n_test_item_seen`` (held-out item already in the user's training
    history: a miss, as seen items are excluded).

    Returns ``{f"hr@{k}", f"ndcg@{k}", "n_users", "n_cold_start", "n_unknown_test_items",
    "n_test_item_seen"}``.
    """
    if not test_items:
        raise ValueError("test_items is empty")
    hits = ndcg = 0.0
    cold = unknown = seen = 0
    for user, target in test_items.items():
        cold += model.is_cold(user)
        if target not in model.item_index:
            unknown += 1
            continue
        hist = model.histories.get(user)
        if hist is not None and model.item_index[target] in hist:
            seen += 1
        ranked = [item for item, _ in model.recommend(user, k)]
        if target in ranked:
            hits += 1.0
            ndcg += 1.0 / math.log2(ranked.index(target) + 2)
    n = len(test_items)
    return {
        f"hr@{k}": hits / n,
        f"ndcg@{k}": ndcg / n,
        "n_users": n,
        "n_cold_start": cold,
        "n_unknown_test_items": unknown,
        "n_test_item_seen": seen,
    }
