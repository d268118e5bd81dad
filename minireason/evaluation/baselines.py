"""The three baselines every evaluation sets the model against.

They answer the same records as the model, using only what the model sees (the user's
history profile and the item's tags), never the test review:

- ``random``: the target sentence of a training record drawn uniformly (seeded);
- ``retrieval``: the target sentence of the most similar training record, where a record is
  the binary bag of its user-profile terms (``profile.tags`` + ``profile.aspects``, marked
  ``u:``) and its item's tags (``item_tags``, marked ``i:``), similarity is the cosine of two
  bags (one matrix product over all pairs), and ties go to the earliest training record. A test
  record with an empty bag (no history and no tags) matches nothing; it gets the first
  training record and is counted in ``retrieval_empty``;
- ``template``: ``"great {tag1} and {tag2}."`` from the item's first two tags
  (``"great {tag1}."`` with one tag, ``"great product."`` with none).
"""

from __future__ import annotations

import numpy as np


def random_reasons(train_targets: list[str], n: int, seed: int = 0) -> list[str]:
    """``n`` target sentences drawn uniformly (with replacement) from ``train_targets``."""
    picks = np.random.default_rng(seed).integers(0, len(train_targets), size=n)
    return [train_targets[i] for i in picks]


def record_terms(record: dict) -> list[str]:
    """The bag a record is matched on: ``u:`` profile tags and aspects, ``i:`` item tags."""
    prof = record.get("profile") or {}
    user = [f"u:{t}" for t in (prof.get("tags") or []) + (prof.get("aspects") or [])]
    return user + [f"i:{t}" for t in record.get("item_tags") or []]


def bag_matrix(bags: list[list[str]], vocab: dict[str, int]) -> np.ndarray:
    """L2-normalised binary matrix ``(len(bags), len(vocab))``; terms not in ``vocab`` ignored."""
    m = np.zeros((len(bags), len(vocab)), dtype=np.float32)
    for i, bag in enumerate(bags):
        m[i, [vocab[t] for t in bag if t in vocab]] = 1.0
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)


def nearest_neighbours(queries: np.ndarray, pool: np.ndarray, chunk: int = 512) -> np.ndarray:
    """For each row of ``queries`` ``(Nq, D)``, the row of ``pool`` ``(Np, D)`` with the highest
    dot product (earliest on ties): ``(Nq,)`` ints. Computed ``chunk`` queries at a time."""
    best = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        best[start : start + chunk] = np.argmax(queries[start : start + chunk] @ pool.T, axis=1)
    return best


def retrieval_reasons(train_records: list[dict], test_records: list[dict]) -> tuple[list[str], int]:
    """The target of the most similar training record for each test record (module doc), and
    the number of test records with an empty bag."""
    vocab: dict[str, int] = {}
    for rec in train_records:
        for t in record_terms(rec):
            vocab.setdefault(t, len(vocab))
    pool = bag_matrix([record_terms(r) for r in train_records], vocab)
    queries = bag_matrix([record_terms(r) for r in test_records], vocab)
    best = nearest_neighbours(queries, pool)
    n_empty = int(np.count_nonzero(~queries.any(axis=1)))
    return [train_records[i]["target"] for i in best], n_empty


def template_reason(item_tags: list[str]) -> str:
    """``"great {tag1} and {tag2}."`` from the first two tags (see the module doc)."""
    if len(item_tags) >= 2:
        return f"great {item_tags[0]} and {item_tags[1]}."
    return f"great {item_tags[0]}." if item_tags else "great product."
