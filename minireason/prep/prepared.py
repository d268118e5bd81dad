"""The prepared directory: the contract between the data pipeline and everything after it.

``minireason prepare`` (:mod:`minireason.prep.prepare`) writes it; training,
recommendation, explanation and evaluation read it with :func:`load_prepared`. Its files:

``config.json``
    How it was made: ``version``, ``inputs`` (path, bytes, sha256 of each input file) and
    every option (``format, split, seed, kcore, vocab_size, n_unigrams, n_bigrams, min_df,
    max_history, context, prompt_tokens, n_item_tags, focus``).
``train.jsonl``, ``valid.jsonl``, ``test.jsonl``
    One review record a line, in split order, with keys:
    ``user, item, rating, time, text, summary, source, line`` (the cleaned review; source
    file and line); ``aspects`` (aspects its own text mentions); ``target`` (the explanation
    sentence, or null), ``feature`` (its ground-truth aspect, or null), ``no_target`` (why
    there is no target, or null); ``history`` (list of ``{item, tags, aspects, rating}``:
    the user's *training* reviews strictly before this one, oldest first, at most
    ``max_history``); ``profile`` (``{aspects, tags}`` from that history only);
    ``item_tags`` (the target item's tags as given in the prompt); ``focus`` (the aspects
    the prompt asks the reason to talk about) and ``focus_from`` (``"target"``: a training
    record's own target sentence, what fine-tuning learns to follow; ``"predicted"``:
    :func:`minireason.prep.features.predict_focus`, every other record; ``null``: no focus,
    ``focus`` 0); ``prompt``
    (``{n_tokens, n_history, n_dropped, n_tags_dropped, text, segments}``: ``text`` is the
    plain-language rendering, ``segments`` the segment map of ``minireason.prep.prompts``);
    ``seq`` (row of this record in ``finetune_<split>.npz``, or -1 without a target).
``items.json``
    ``{item: {title, tags, meta_tags, aspects}}``: ``tags`` are the metadata tags, or the
    top aspects over all training reviews when the item has none; ``aspects`` is a list of
    ``[aspect, number of training reviews]``, most frequent first.
``users.json``
    ``{user: {aspects, tags, n_train}}``: the profile over *all* the user's training
    reviews (what a recommender knows at test time).
``features.json``
    ``{aspects, df, rates, focus, params, method}``: the feature set F (all aspect terms,
    most frequent first), their training document frequencies, how often each is the
    ground-truth feature of a training review that mentions it
    (:func:`minireason.prep.features.feature_rates`), the focus size of the prompts and the
    mining parameters (``minireason train`` copies this file into its run directory).
``tokenizer.json``
    The byte-level BPE (``minireason.prep.tokenizer``), trained on training-split text only.
``pretrain.npz``
    ``ids`` (int32, 1-D): every sentence of every training review, each followed by
    ``<eos>``, concatenated (a language-model stream).
``prompts_train.npz``, ``prompts_valid.npz``, ``prompts_test.npz``
    The prompt token ids of *every* record (with or without a target), stored flat:
    ``ids`` (int32, total) and ``offsets`` (int64, n+1): record i of ``<split>.jsonl`` has
    prompt ``ids[offsets[i]:offsets[i+1]]`` (what generation starts from at test time).
``finetune_train.npz``, ``finetune_valid.npz``, ``finetune_test.npz``
    Ragged sequences ``prompt + reason + <eos>`` for the records with a target, stored flat:
    ``ids`` (int32, total), ``loss_mask`` (uint8, total: 1 on the reason and ``<eos>``
    tokens only), ``offsets`` (int64, n+1: sequence i is ``ids[offsets[i]:offsets[i+1]]``),
    ``prompt_len`` (int32, n), ``record`` (int32, n: the row in ``<split>.jsonl``).
    Each sequence is at most ``context`` tokens; prompts at most ``prompt_tokens``; a
    reason that does not fit is cut (counted in the report).
``report.json``, ``report.md``, ``prompt_lengths.png``
    Counts at every stage, skipped lines by reason with file:line examples, targets found
    or not by reason, vocabulary size, top aspects, prompt-length histogram.

All arrays are ``.npz`` (read with ``allow_pickle=False``), records JSONL, the rest JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minireason.data.split import SPLITS
from minireason.prep.features import predict_focus
from minireason.prep.tokenizer import BPETokenizer


@dataclass
class SequenceSet:
    """Ragged token sequences stored flat (see the module doc, ``finetune_<split>.npz``)."""

    ids: np.ndarray
    loss_mask: np.ndarray
    offsets: np.ndarray
    prompt_len: np.ndarray
    record: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Sequence ``i``: (ids (L,), loss_mask (L,))."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.ids[a:b], self.loss_mask[a:b]


@dataclass
class PromptSet:
    """The prompt ids of every record of a split, stored flat (``prompts_<split>.npz``)."""

    ids: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, i: int) -> np.ndarray:
        """The prompt of record ``i``: ids (L,)."""
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    @classmethod
    def from_lists(cls, prompts: list[list[int]]) -> PromptSet:
        offsets = np.zeros(len(prompts) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(p) for p in prompts])
        flat = [i for p in prompts for i in p]
        return cls(np.asarray(flat, dtype=np.int32), offsets)


# --------------------------------------------------------------------------- writing


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def write_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


@dataclass
class Prepared:
    """Everything in a prepared directory (see the module doc for each part)."""

    path: Path
    config: dict
    train: list[dict]
    valid: list[dict]
    test: list[dict]
    items: dict
    users: dict
    features: list[str]
    feature_df: dict
    feature_rates: dict  # aspect -> how often it is the ground-truth feature when mentioned
    tokenizer: BPETokenizer
    pretrain: np.ndarray
    prompts: dict = field(default_factory=dict)  # split -> PromptSet (every record)
    finetune: dict = field(default_factory=dict)  # split -> SequenceSet (records with a target)
    report: dict = field(default_factory=dict)

    def split(self, name: str) -> list[dict]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; splits: {SPLITS}")
        return getattr(self, name)

    def train_sequences(self) -> dict[str, list[str]]:
        """``{user: [item, ...]}``: each user's distinct training items in time order (what
        the recommenders of ``minireason.reason.recommend`` fit on)."""
        ordered = sorted(
            enumerate(self.train), key=lambda ir: (ir[1]["user"], ir[1]["time"], ir[0])
        )
        seqs: dict[str, list[str]] = {}
        for _, rec in ordered:
            seq = seqs.setdefault(rec["user"], [])
            if rec["item"] not in seq:
                seq.append(rec["item"])
        return seqs

    def focus_for(self, item: str, profile_aspects: list[str]) -> list[str]:
        """The predicted focus of a prompt about ``item`` for a user with
        ``profile_aspects``, as ``prepare`` made it for the test records (``[]`` when the
        directory was prepared with ``focus`` 0). Free-form input has its own:
        :func:`minireason.reason.explain.free_form_focus`."""
        counts = [(a, int(n)) for a, n in self.items.get(item, {}).get("aspects", [])]
        return predict_focus(
            counts, profile_aspects, self.feature_rates, int(self.config.get("focus", 0))
        )

    def item_terms(self) -> dict[str, list[str]]:
        """``{item: tags + aspects}``: the bag of terms content similarity works on."""
        return {
            item: list(info.get("tags", [])) + [a for a, _ in info.get("aspects", [])]
            for item, info in self.items.items()
        }


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: corrupt prepared record ({exc})") from None
    return rows


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt JSON ({exc})") from None


def _read_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: corrupt array file ({exc})") from None


def load_prepared(directory) -> Prepared:
    """Read a directory written by :func:`prepare` (arrays with ``allow_pickle=False``)."""
    d = Path(directory)
    needed = [
        "config.json",
        "items.json",
        "users.json",
        "features.json",
        "tokenizer.json",
        "pretrain.npz",
        "report.json",
    ]
    needed += [f"{s}.jsonl" for s in SPLITS] + [f"finetune_{s}.npz" for s in SPLITS]
    needed += [f"prompts_{s}.npz" for s in SPLITS]
    missing = [n for n in needed if not (d / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{d} is not a prepared directory: missing {missing} (run minireason prepare)"
        )
    features = _read_json(d / "features.json")
    return Prepared(
        path=d,
        config=_read_json(d / "config.json"),
        train=_read_jsonl(d / "train.jsonl"),
        valid=_read_jsonl(d / "valid.jsonl"),
        test=_read_jsonl(d / "test.jsonl"),
        items=_read_json(d / "items.json"),
        users=_read_json(d / "users.json"),
        features=features["aspects"],
        feature_df=features["df"],
        feature_rates=features.get("rates", {}),
        tokenizer=BPETokenizer.load(d / "tokenizer.json"),
        pretrain=_read_npz(d / "pretrain.npz")["ids"],
        prompts={s: PromptSet(**_read_npz(d / f"prompts_{s}.npz")) for s in SPLITS},
        finetune={s: SequenceSet(**_read_npz(d / f"finetune_{s}.npz")) for s in SPLITS},
        report=_read_json(d / "report.json"),
    )
