"""The four baselines every evaluation sets the model against, and their registry.

They answer the same records as the model, using only what the model sees (the user's
history profile, the item's tags and the evidence its prompt quotes), never the test review:

- ``random``: the target sentence of a training record drawn uniformly (seeded);
- ``retrieval``: the target sentence of the most similar training record, where a record is
  the binary bag of its user-profile terms (``profile.tags`` + ``profile.aspects``, marked
  ``u:``) and its item's tags (``item_tags``, marked ``i:``), similarity is the cosine of two
  bags (one matrix product over all pairs), and ties go to the earliest training record. A test
  record with an empty bag (no history and no tags) matches nothing; it gets the first
  training record and is counted in ``retrieval_empty``;
- ``evidence``: the record's first evidence sentence (what its prompt quotes to the model,
  :class:`minireason.prep.features.EvidenceIndex`) as the reason itself; a record without
  evidence gets the retrieval baseline's answer and is counted in ``evidence_missing``;
- ``template``: ``"great {tag1} and {tag2}."`` from the item's first two tags
  (``"great {tag1}."`` with one tag, ``"great product."`` with none); for Chinese data
  (``prepare --lang zh``) the same in Chinese, ``"{tag1}和{tag2}都很好。"``.

:data:`BASELINES` names them with a line each, in the order the evaluation reports them;
:func:`baseline_answers` gives every baseline's answers in that order.
"""

from __future__ import annotations

import numpy as np

BASELINES = {  # name -> what it answers, in the order the evaluation reports them
    "random": "a training record's reason, drawn at random (seeded)",
    "retrieval": "the reason of the most similar training record",
    "evidence": "the prompt's first evidence sentence (else retrieval's answer)",
    "template": "'great {tag1} and {tag2}.' from the item's tags",
}


def baseline_answers(
    train_records: list[dict], records: list[dict], seed: int = 0, lang: str = "en"
) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Every baseline's answers to ``records`` (module docstring).

    Args:
        train_records: the training records with a target (what ``random`` draws from and
            ``retrieval`` matches against).
        records: the N evaluated records.
        seed: seed of the random baseline.
        lang: the data's language (``Prepared.lang``), the template's.

    Returns:
        ``({name: [N answers]}`` keyed as :data:`BASELINES`, in its order``,
        {"retrieval_empty": n, "evidence_missing": n})``: how many records had an empty bag,
        and how many had no evidence.
    """
    retrieval, n_empty = retrieval_reasons(train_records, records)
    evidence, n_no_evidence = evidence_reasons(records, retrieval)
    answers = {
        "random": random_reasons([r["target"] for r in train_records], len(records), seed),
        "retrieval": retrieval,
        "evidence": evidence,
        "template": [template_reason(rec.get("item_tags") or [], lang) for rec in records],
    }
    return answers, {"retrieval_empty": n_empty, "evidence_missing": n_no_evidence}


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


def evidence_reasons(records: list[dict], fallback: list[str]) -> tuple[list[str], int]:
    """The evidence baseline: each record's first evidence sentence (what its prompt shows
    the model, :class:`minireason.prep.features.EvidenceIndex`) as the reason itself, and
    ``fallback``'s answer (the retrieval baseline's) for a record without evidence; with
    the number of those."""
    reasons = [
        (rec.get("evidence") or [None])[0] or other
        for rec, other in zip(records, fallback, strict=True)
    ]
    return reasons, sum(not rec.get("evidence") for rec in records)


TEMPLATES = {  # language -> (two tags, one tag, no tag)
    "en": ("great {0} and {1}.", "great {0}.", "great product."),
    "zh": ("{0}和{1}都很好。", "{0}很好。", "很好的东西。"),
}


def template_reason(item_tags: list[str], lang: str = "en") -> str:
    """``"great {tag1} and {tag2}."`` from the first two tags, in ``lang`` (see the module
    doc)."""
    two, one, none = TEMPLATES[lang]
    if len(item_tags) >= 2:
        return two.format(*item_tags[:2])
    return one.format(item_tags[0]) if item_tags else none
