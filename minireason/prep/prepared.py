"""The prepared directory: the contract between the data pipeline and everything after it.

``minireason prepare`` (:mod:`minireason.prep.prepare`) writes it; training,
recommendation, explanation and evaluation read it with :func:`load_prepared`. Its files:

``config.json``
    How it was made: ``version``, ``inputs`` (path, bytes, sha256 of each input file) and
    every option (``format, split, seed, kcore, vocab_size, n_unigrams, n_bigrams, min_df,
    max_history, context, prompt_tokens, n_item_tags, focus, evidence, evidence_tokens,
    max_review_tokens``).
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
    ``focus`` 0); ``evidence`` (the sentences of other users' training reviews the prompt
    shows, :class:`minireason.prep.features.EvidenceIndex`; ``[]`` with ``evidence`` 0);
    ``prompt``
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
``manifest.json``
    Written last: ``format`` (``"minireason-prepared"``), ``format_version``
    (:data:`FORMAT_VERSION`), the byte size and SHA-256 of every other file, and ``content``,
    the directory's identity (:func:`content_id`). A directory without it is not a prepared
    directory (its ``prepare`` did not finish, or an older minireason made it).

All arrays are ``.npz`` (read with ``allow_pickle=False``), records JSONL, the rest JSON.

Complete or absent. :func:`write_prepared` writes everything into a fresh hidden directory
beside ``OUT`` and only then puts it in place (:func:`minireason.files.directory_in_place`:
on Linux by atomically exchanging it with the old ``OUT``), so a reader sees the old
complete directory or the new complete one; ``prepare`` holds ``OUT``'s writer lock for the
whole job, so a second ``prepare`` into the same ``OUT`` is refused at once. It replaces
only a prepared directory that holds nothing its manifest does not list, and never one that
holds its input (:func:`check_output_dir`). :func:`load_prepared` refuses a directory whose
manifest is missing, of another format version, or does not match its files, naming the
file.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minireason.data.split import SPLITS
from minireason.files import (
    Kind,
    check_output,
    directory_in_place,
    json_object,
    read_npz,
    read_versioned_json,
    sha256_file,
)
from minireason.prep.features import (
    AspectVocabulary,
    EvidenceIndex,
    HistoryItem,
    item_words,
    predict_focus,
    tag_neighbours,
)
from minireason.prep.prompts import build_prompt, evidence_length
from minireason.prep.tokenizer import BPETokenizer
from minireason.text import LANGUAGES, particular_words, vocabulary

FORMAT = "minireason-prepared"
FORMAT_VERSION = 2  # 2: the evidence segment (its special token, the records' evidence)
MANIFEST = "manifest.json"
JSON_FILES = ("config.json", "items.json", "users.json", "features.json", "report.json")
CONTENT_FILES = (  # what a model trained on the directory has seen: its identity
    *(f"{s}.jsonl" for s in SPLITS),
    *(f"finetune_{s}.npz" for s in SPLITS),
    *(f"prompts_{s}.npz" for s in SPLITS),
    "pretrain.npz",
    "tokenizer.json",
    "features.json",
    "items.json",
    "users.json",
)
CONFIG_FIELDS = (
    "max_history",
    "context",
    "prompt_tokens",
    "focus",
    "evidence",
    "evidence_tokens",
)  # read by later stages


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


@dataclass
class Prepared:
    """Everything in a prepared directory (see the module doc for each part).

    ``config``, ``items``, ``users``, ``feature_info`` and ``report`` are the JSON files as
    read; the properties below are the facts later stages need from them.
    """

    config: dict
    train: list[dict]
    valid: list[dict]
    test: list[dict]
    items: dict
    users: dict
    feature_info: dict  # features.json
    tokenizer: BPETokenizer
    pretrain: np.ndarray
    prompts: dict  # split -> PromptSet (every record)
    finetune: dict  # split -> SequenceSet (records with a target)
    report: dict
    path: Path | None = None  # where it was read from (None before it is written)
    content: str = ""  # its identity, :func:`content_id` (read from the manifest)

    @property
    def features(self) -> list[str]:
        """The feature set F: every aspect term, most frequent first."""
        return self.feature_info["aspects"]

    @property
    def feature_df(self) -> dict[str, int]:
        return self.feature_info["df"]

    @property
    def feature_rates(self) -> dict[str, float]:
        """Aspect -> how often it is the ground-truth feature when a review mentions it."""
        return self.feature_info["rates"]

    @property
    def prompt_tokens(self) -> int:
        """The prompt budget every record was built with (oldest history dropped to fit)."""
        return int(self.config["prompt_tokens"])

    @property
    def context(self) -> int:
        """The longest fine-tuning sequence, prompt + reason + ``<eos>``."""
        return int(self.config["context"])

    @property
    def focus_size(self) -> int:
        """Focus aspects per prompt (0: prompts have no focus part)."""
        return int(self.config["focus"])

    @property
    def evidence_size(self) -> int:
        """Evidence sentences per prompt (0: prompts have no evidence part)."""
        return int(self.config["evidence"])

    @property
    def lang(self) -> str:
        """The language of the prompt text people read (``prepare --lang``; ``"en"`` for a
        directory prepared before the option existed)."""
        return self.config.get("lang", "en")

    @property
    def max_history(self) -> int:
        """Past items kept per history."""
        return int(self.config["max_history"])

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

    @functools.cached_property
    def _train_texts_by_user(self) -> dict[str, list[str]]:
        by_user: dict[str, list[str]] = {}
        for rec in self.train:
            by_user.setdefault(rec["user"], []).append(rec["text"])
        return by_user

    def reviews_by(self, user: str) -> list[str]:
        """The texts of ``user``'s training reviews, in file order (``[]`` for a user with
        none): the words step 4's phrasing term compares a reason with
        (:func:`minireason.reason.scoring.phrase_set`). Never validation or test text."""
        return list(self._train_texts_by_user.get(user, []))

    @functools.cached_property
    def known_words(self) -> frozenset[str]:
        """The words the training reviews use at least twice (:func:`minireason.text.vocabulary`):
        step 4 charges a candidate for each word outside them (the unknown-word term of
        :mod:`minireason.reason.scoring`). Never validation or test text."""
        return vocabulary(rec["text"] for rec in self.train)

    @functools.cached_property
    def _particular_words(self) -> dict[str, frozenset[str]]:
        return particular_words(item_words(self.train))

    def particular_words(self, item: str) -> frozenset[str]:
        """The words of ``item``'s training reviews that few items' reviews use
        (:func:`minireason.text.particular_words`; empty for an item with no training
        review): step 4's ``specific`` term rewards a candidate that says one. Never
        validation or test text."""
        return self._particular_words.get(item, frozenset())

    def focus_for(self, item: str, profile_aspects: list[str]) -> list[str]:
        """The predicted focus of a prompt about ``item`` for a user with
        ``profile_aspects``, as ``prepare`` made it for the test records (``[]`` when the
        directory was prepared with ``focus`` 0). Free-form input has its own:
        :func:`minireason.reason.explain.free_form_focus`."""
        counts = [(a, int(n)) for a, n in self.items.get(item, {}).get("aspects", [])]
        return predict_focus(counts, profile_aspects, self.feature_rates, self.focus_size)

    @functools.cached_property
    def evidence_index(self) -> EvidenceIndex:
        """The training reviews' sentences the evidence is chosen from, as ``prepare`` chose
        it (built on first use)."""
        vocab = AspectVocabulary(self.feature_df)
        prefer = self.config.get("evidence_prefer", "focus")
        return EvidenceIndex(
            self.train,
            vocab,
            functools.partial(evidence_length, self.tokenizer),
            self.config["evidence_tokens"],
            prefer,
            self._particular_words if prefer == "particular" else None,
        )

    def evidence_for(self, item: str, focus: list[str], user: str) -> list[str]:
        """The evidence of a prompt about ``item`` for ``user`` with ``focus``, as ``prepare``
        chose it for the test records: other users' training sentences about the item, or
        about the items sharing most of its tags for a cold item (``[]`` when the directory
        was prepared with ``evidence`` 0)."""
        tags_of = {i: info.get("tags", []) for i, info in self.items.items()}
        return self.evidence_index.choose(
            item, focus, user, self.evidence_size, neighbours=lambda: tag_neighbours(item, tags_of)
        )

    def prompt_for(self, record: dict, focus: list[str], evidence: list[str]) -> list[int]:
        """The prompt ids of ``record`` (one of this directory's) built as ``prepare`` built
        them, with another ``focus`` and ``evidence``: with the record's own ``focus`` and
        ``evidence`` it is the stored prompt (``evaluate --focus-from target`` builds the
        oracle prompts with it)."""
        history = [HistoryItem(**h) for h in record["history"]]
        prompt = build_prompt(
            history,
            record["item_tags"],
            self.prompt_tokens,
            self.tokenizer,
            item=record["item"],
            focus=focus,
            evidence=evidence,
        )
        return prompt.ids

    def item_terms(self) -> dict[str, list[str]]:
        """``{item: tags + aspects}``: the bag of terms content similarity works on."""
        return {
            item: list(info.get("tags", [])) + [a for a, _ in info.get("aspects", [])]
            for item, info in self.items.items()
        }


# --------------------------------------------------------------------------- writing


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def content_id(file_sha: dict[str, str]) -> str:
    """The identity of a prepared directory: SHA-256 over the names and SHA-256s of its
    :data:`CONTENT_FILES` (records, arrays, tokenizer, features, items, users), so two
    directories with the same data have the same identity wherever they live and whatever
    their reports say."""
    digest = hashlib.sha256()
    for name in CONTENT_FILES:
        digest.update(f"{name}\0{file_sha[name]}\n".encode())
    return digest.hexdigest()


def _is_prepared(d: Path) -> bool:
    """True when ``d`` holds a prepared directory's manifest and nothing it does not list:
    all of it is ``prepare``'s to replace."""
    manifest = json_object(d / MANIFEST) or {}
    listed = manifest.get("files") if manifest.get("format") == FORMAT else None
    return isinstance(listed, dict) and all(
        p.name in listed or p.name == MANIFEST for p in d.iterdir()
    )


PREPARED_DIR = Kind("a prepared directory", _is_prepared, directory=True)


def check_output_dir(out, inputs=()) -> Path:
    """Raise ValueError (naming ``--out``) unless ``out`` can become a prepared directory:
    absent, an empty directory, or a prepared directory holding nothing its manifest does
    not list (replaced whole), and neither one of ``inputs`` nor holding one
    (:func:`minireason.files.check_output`)."""
    return check_output(out, "--out", PREPARED_DIR, inputs)


def write_prepared(prepared: Prepared, out, attachments: dict) -> Path:
    """Write ``prepared`` as the directory ``out``, complete or not at all (module doc).

    ``attachments`` maps further file names (``report.md``, ``prompt_lengths.png``) to a
    function ``write(path)``. Returns ``out``. The caller holds ``out``'s
    :func:`minireason.files.writer_lock`.
    """
    out = check_output_dir(out)
    with directory_in_place(out) as tmp:
        _write_files(prepared, tmp, attachments)
    return out


def _write_files(prepared: Prepared, d: Path, attachments: dict) -> None:
    write_json(d / "config.json", prepared.config)
    for name in SPLITS:
        write_jsonl(d / f"{name}.jsonl", prepared.split(name))
        np.savez(d / f"finetune_{name}.npz", **vars(prepared.finetune[name]))
        np.savez(d / f"prompts_{name}.npz", **vars(prepared.prompts[name]))
    np.savez(d / "pretrain.npz", ids=prepared.pretrain)
    write_json(d / "items.json", prepared.items)
    write_json(d / "users.json", prepared.users)
    write_json(d / "features.json", prepared.feature_info)
    write_json(d / "report.json", prepared.report)
    prepared.tokenizer.save(d / "tokenizer.json")
    for name, write in attachments.items():
        write(d / name)
    files = {p.name: p for p in sorted(d.iterdir())}
    sha = {name: sha256_file(p) for name, p in files.items()}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "content": content_id(sha),
        "files": {
            name: {"bytes": p.stat().st_size, "sha256": sha[name]} for name, p in files.items()
        },
    }
    write_json(d / MANIFEST, manifest)
    prepared.content = manifest["content"]


# --------------------------------------------------------------------------- reading


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: corrupt JSON ({exc})") from None


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: corrupt prepared record ({exc})") from None
    return rows


# manifest.json, field by field (minireason.files.field_problem)
MANIFEST_SCHEMA = {"content": "sha256", "files": {"*": {"bytes": "count", "sha256": "sha256"}}}


def read_manifest(directory) -> dict:
    """The manifest of a prepared directory, checked for format and version (not yet
    against the files: :func:`load_prepared` does that)."""
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: no such prepared directory (run minireason prepare)")
    path = d / MANIFEST
    if not path.is_file():
        raise ValueError(
            f"{d} is not a complete prepared directory: no {MANIFEST} (its prepare did not "
            "finish, or an older minireason made it); run minireason prepare again"
        )
    return read_versioned_json(
        path,
        FORMAT,
        FORMAT_VERSION,
        what="prepared-directory manifest",
        remedy="run minireason prepare again",
        schema=MANIFEST_SCHEMA,
    )


def verify_files(directory, manifest: dict) -> None:
    """Raise ValueError naming the first file that is missing or differs from the manifest."""
    d = Path(directory)
    listed = manifest.get("files", {})
    for name in (*CONTENT_FILES, *JSON_FILES):
        if name not in listed:
            raise ValueError(f"{d / MANIFEST}: does not list {name}; run minireason prepare again")
    for name, entry in listed.items():
        path = d / name
        if not path.is_file():
            raise ValueError(
                f"{path}: missing (listed in {MANIFEST}); run minireason prepare again"
            )
        if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise ValueError(
                f"{path}: changed since prepare wrote it (size or SHA-256 differs from "
                f"{MANIFEST}); run minireason prepare again"
            )


def load_prepared(directory) -> Prepared:
    """Read a directory written by :func:`write_prepared`, after checking its manifest
    (format, version, every file's size and SHA-256) and the config fields later stages
    need. Arrays are read with ``allow_pickle=False``. Any problem is a ValueError (or
    FileNotFoundError) naming the file."""
    d = Path(directory)
    manifest = read_manifest(d)
    verify_files(d, manifest)
    config = _read_json(d / "config.json")
    missing = [k for k in CONFIG_FIELDS if not isinstance(config.get(k), int)]
    if missing:
        raise ValueError(f"{d / 'config.json'}: missing or non-integer fields {missing}")
    if config.get("lang", "en") not in LANGUAGES:
        raise ValueError(
            f"{d / 'config.json'}: lang {config['lang']!r} is not one of {list(LANGUAGES)}"
        )
    seq_fields = ("ids", "loss_mask", "offsets", "prompt_len", "record")
    return Prepared(
        config=config,
        train=_read_jsonl(d / "train.jsonl"),
        valid=_read_jsonl(d / "valid.jsonl"),
        test=_read_jsonl(d / "test.jsonl"),
        items=_read_json(d / "items.json"),
        users=_read_json(d / "users.json"),
        feature_info=_read_json(d / "features.json"),
        tokenizer=BPETokenizer.load(d / "tokenizer.json"),
        pretrain=read_npz(d / "pretrain.npz", ("ids",))["ids"],
        prompts={
            s: PromptSet(**read_npz(d / f"prompts_{s}.npz", ("ids", "offsets"))) for s in SPLITS
        },
        finetune={s: SequenceSet(**read_npz(d / f"finetune_{s}.npz", seq_fields)) for s in SPLITS},
        report=_read_json(d / "report.json"),
        path=d,
        content=manifest["content"],
    )
