"""``minireason prepare``: raw reviews in, a *prepared directory* out (seed steps 1 to 3).

The job, stage by stage: load and validate the input (:mod:`minireason.data`), drop
duplicates, optionally keep a k-core, split it (leave-last-out or random), mine aspects
and pick explanation targets (:mod:`minireason.prep.features`), train the BPE tokenizer
(:mod:`minireason.prep.tokenizer`), build every record's history, focus and prompt
(:mod:`minireason.prep.prompts`), build the token sequences, and write the directory whose
contract is :mod:`minireason.prep.prepared`.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import ClassVar

import numpy as np
from tqdm import tqdm

from minireason import __version__
from minireason.data import amazon, generic, movielens
from minireason.data.accounting import LoadReport
from minireason.data.clean import drop_duplicates, sort_histories
from minireason.data.io import write_head
from minireason.data.records import ItemMeta, Review
from minireason.data.split import SPLITS, k_core, leave_last_out, random_split
from minireason.files import sha256_file, writer_lock
from minireason.options import check, option
from minireason.prep.features import (
    EVIDENCE_PREFERENCES,
    AspectVocabulary,
    EvidenceIndex,
    ItemFeatures,
    Target,
    explanation_target,
    feature_rates,
    history_items,
    item_words,
    mine_aspects,
    predict_focus,
    profile,
    review_key,
    split_sentences,
    tag_neighbours,
    target_focus,
)
from minireason.prep.prepared import (
    Prepared,
    PromptSet,
    SequenceSet,
    check_output_dir,
    write_prepared,
)
from minireason.prep.prompts import build_prompt, evidence_length, render_prompt
from minireason.prep.tokenizer import DEFAULT_VOCAB_SIZE, MIN_VOCAB_SIZE, BPETokenizer
from minireason.text import LANGUAGES, language_of, particular_words

FORMATS = ("amazon", "movielens", "jsonl", "csv")
SPLIT_KINDS = ("time", "random")  # leave-last-out per user; seeded 8:1:1


@dataclass
class PrepareConfig:
    """Every option of ``prepare``, declared once: the CLI's flags are its fields
    (:mod:`minireason.options`) and :func:`check_options` checks the same bounds."""

    description: ClassVar[str] = (  # its --help
        "Load, validate, clean and split reviews, mine aspects, pick explanation targets, build "
        "prompts and a BPE tokenizer; write a prepared directory with report.md. Relative "
        "input paths are also looked up under $MINIREASON_DATA_DIR."
    )

    reviews: str = option(metavar="FILE", help="reviews file (movielens: the folder)")
    out: str = option(metavar="DIR", help="the prepared directory to write")
    meta: str | None = option(None, metavar="FILE", help="Amazon item metadata (2014 or 2018)")
    format: str = option("amazon", choices=FORMATS, help="input format")
    columns: dict | None = option(  # jsonl/csv: {field: column}; on the command line the text
        None, kind=str, metavar="TEXT", help="jsonl/csv: user=COL,item=COL,rating=COL,time=COL,..."
    )
    split: str = option("time", choices=SPLIT_KINDS, help="leave-last-out or seeded 8:1:1")
    seed: int = option(0, metavar="SEED", help="seed of the random split")
    kcore: int = option(
        0, min=0, metavar="K", help="keep only users and items with K or more reviews each (0: off)"
    )
    vocab_size: int = option(
        DEFAULT_VOCAB_SIZE, min=MIN_VOCAB_SIZE, help="BPE vocabulary size, special tokens included"
    )
    n_unigrams: int = option(150, min=0, help="one-word aspects kept")
    n_bigrams: int = option(50, min=0, help="two-word aspects kept")
    min_df: int = option(5, min=1, help="reviews an aspect must be in")
    n_item_tags: int = option(5, min=0, cli=False, help="tags kept per item")
    max_history: int = option(10, min=1, help="past items kept in a prompt")
    context: int = option(128, min=3, help="tokens per fine-tuning sequence")
    prompt_tokens: int = option(80, min=2, help="prompt budget in tokens, less than --context")
    focus: int = option(3, min=0, metavar="K", help="predicted focus aspects per prompt (0: none)")
    evidence: int = option(
        1,
        min=0,
        metavar="K",
        help="sentences of other users' reviews per prompt (0: none); several come from "
        "different customers, cover the focus and do not repeat each other",
    )
    evidence_tokens: int = option(32, min=4, help="longest evidence sentence, in prompt tokens")
    target_prefer: str = option(
        "first",
        choices=("first", "particular"),
        help="training targets: the first sentence with an aspect (first), or the first that "
        "also says a word particular to the item (particular); validation and test targets "
        "are always the first",
    )
    evidence_prefer: str = option(
        "focus",
        choices=EVIDENCE_PREFERENCES,
        help="among the evidence sentences with the most focus aspects: any (focus), or first "
        "one that says a word particular to the item (particular)",
    )
    max_review_tokens: int = option(
        4096, min=1, cli=False, help="most pretraining tokens one review may contribute"
    )
    lang: str = option(
        "auto",
        choices=("auto", *LANGUAGES),
        help="language of the prompt text people read (auto: the training text's, Chinese "
        "when a third of its letters are Han); words are cut by script either way",
    )
    strict: bool = option(False, help="stop at the first malformed line")
    progress: bool = True


# --------------------------------------------------------------------------- loading


def load_input(cfg: PrepareConfig, report: LoadReport) -> tuple[list[Review], dict[str, ItemMeta]]:
    """Read reviews (and metadata) in ``cfg.format``; every line is counted in ``report``."""
    if cfg.format not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, not {cfg.format!r}")
    meta: dict[str, ItemMeta] = {}
    if cfg.format == "movielens":
        reviews, meta = movielens.load_movielens(cfg.reviews, report)
    elif cfg.format == "amazon":
        reviews = list(amazon.load_reviews(cfg.reviews, report))
    else:
        if not cfg.columns:
            raise ValueError(f"--format {cfg.format} needs --columns user=COL,item=COL,...")
        reviews = list(generic.load_generic(cfg.reviews, cfg.format, cfg.columns, report))
    if cfg.meta:
        meta.update(amazon.load_meta(cfg.meta, report))
    return reviews, meta


# --------------------------------------------------------------------------- records


def _split_reviews(cfg: PrepareConfig, reviews: list[Review]) -> dict[str, list[Review]]:
    if cfg.split == "time":
        return leave_last_out(reviews)
    if cfg.split == "random":
        return random_split(reviews, seed=cfg.seed)
    raise ValueError(f"--split must be 'time' or 'random', not {cfg.split!r}")


def build_records(
    cfg,
    splits,
    features: ItemFeatures,
    vocab: AspectVocabulary,
    tok: BPETokenizer,
    meta: dict[str, ItemMeta],
    targets: dict,
    rates: dict[str, float],
    evidence: EvidenceIndex,
):
    """One JSON-ready dict per review, per split, plus the prompt ids of each.

    Walks each user's time-sorted sequence once, so ``past`` holds exactly the user's
    training reviews before the current one: history and profile never see the future.
    The focus is read off the target for training records with one, predicted for all
    others (``rates``: :func:`minireason.prep.features.feature_rates` of the training split).
    ``targets`` maps ``id(review)`` to its :func:`explanation_target` result. The evidence
    comes from other users' training reviews of the item (``evidence``), never from the
    record's own review.
    """
    split_of = {id(r): name for name, rs in splits.items() for r in rs}
    position = {id(r): i for rs in splits.values() for i, r in enumerate(rs)}
    records = {name: [None] * len(rs) for name, rs in splits.items()}
    prompt_ids = {name: [None] * len(rs) for name, rs in splits.items()}
    everyone = [r for rs in splits.values() for r in rs]
    sequences = sort_histories(everyone)
    tags_of = {item: features.tags(item) for item in {r.item for r in everyone}}
    for user_sequence in tqdm(
        sequences.values(), desc="prompts", unit="user", disable=None if cfg.progress else True
    ):
        past: list[Review] = []
        for r in user_sequence:
            name = split_of[id(r)]
            history = history_items(past, features, cfg.max_history)
            item_tags = features.tags(r.item, exclude=r)
            target = targets[id(r)]
            has_target = isinstance(target, Target)
            prof = profile(history)
            focus, focus_from = [], None
            if cfg.focus and name == "train" and has_target:
                focus, focus_from = target_focus(target.sentence, vocab), "target"
            elif cfg.focus:
                focus = predict_focus(
                    features.item_aspects(r.item, exclude=r), prof["aspects"], rates, cfg.focus
                )
                focus_from = "predicted"
            grounds = evidence.choose(
                r.item,
                focus,
                r.user,
                cfg.evidence,
                exclude=review_key(r),
                neighbours=lambda item=r.item: tag_neighbours(item, tags_of),
            )
            prompt = build_prompt(
                history,
                item_tags,
                cfg.prompt_tokens,
                tok,
                item=r.item,
                focus=focus,
                evidence=grounds,
            )
            title = meta[r.item].title if r.item in meta else ""
            records[name][position[id(r)]] = {
                "user": r.user,
                "item": r.item,
                "rating": r.rating,
                "time": r.time,
                "text": r.text,
                "summary": r.summary,
                "source": r.source,
                "line": r.line,
                "aspects": features.aspects_of_review(r),
                "target": target.sentence if has_target else None,
                "feature": target.feature if has_target else None,
                "no_target": None if has_target else target,
                "history": [h.as_dict() for h in history],
                "profile": prof,
                "item_tags": item_tags,
                "focus": focus,
                "focus_from": focus_from,
                "evidence": grounds,
                "prompt": {
                    "n_tokens": len(prompt.ids),
                    "n_history": prompt.n_history,
                    "n_dropped": prompt.n_dropped,
                    "n_tags_dropped": prompt.n_tags_dropped,
                    "text": render_prompt(
                        history[len(history) - prompt.n_history :],
                        item_tags[: len(item_tags) - prompt.n_tags_dropped],
                        title,
                        focus,
                        grounds,
                        cfg.lang,
                    ),
                    "segments": prompt.segments_as_dicts(),
                },
                "seq": -1,
            }
            prompt_ids[name][position[id(r)]] = prompt.ids
            if name == "train":
                past.append(r)
    return records, prompt_ids


# --------------------------------------------------------------------------- sequences


def finetune_sequences(
    records: list[dict], prompt_ids: list[list[int]], tok: BPETokenizer, context: int
) -> tuple[SequenceSet, int]:
    """``prompt + reason + <eos>`` for each record with a target; also sets ``record["seq"]``.

    Returns the set and the number of reasons cut to fit ``context``.
    """
    rows = [i for i, rec in enumerate(records) if rec["target"] is not None]
    reasons = tok.encode_batch([records[i]["target"] for i in rows])
    ids, mask, offsets, prompt_len, n_cut = [], [], [0], [], 0
    for seq, (i, reason) in enumerate(zip(rows, reasons, strict=True)):
        prompt = prompt_ids[i]
        room = context - len(prompt) - 1
        if len(reason) > room:
            reason, n_cut = reason[:room], n_cut + 1
        ids += prompt + reason + [tok.eos_id]
        mask += [0] * len(prompt) + [1] * (len(reason) + 1)
        offsets.append(len(ids))
        prompt_len.append(len(prompt))
        records[i]["seq"] = seq
    return SequenceSet(
        ids=np.asarray(ids, dtype=np.int32),
        loss_mask=np.asarray(mask, dtype=np.uint8),
        offsets=np.asarray(offsets, dtype=np.int64),
        prompt_len=np.asarray(prompt_len, dtype=np.int32),
        record=np.asarray(rows, dtype=np.int32),
    ), n_cut


@dataclass
class PretrainCut:
    """What the per-review cap took out of the pretraining stream (reported, not hidden)."""

    reviews: int = 0  # reviews that lost sentences
    tokens: int = 0  # tokens dropped in all
    longest: int = 0  # the longest review, in tokens, before the cut


def pretrain_stream(
    train: list[Review], tok: BPETokenizer, max_review_tokens: int
) -> tuple[np.ndarray, PretrainCut]:
    """Every sentence of every training review, each followed by <eos>: int32 (total,).

    One review contributes at most ``max_review_tokens`` tokens (its first sentences that
    fit): a single huge review must not become most of what the model learns language from.
    Returns the stream and what the cap cut.
    """
    per_review = [split_sentences(r.text) for r in train]
    encoded = iter(tok.encode_batch([s for sentences in per_review for s in sentences]))
    stream: list[int] = []
    cut = PretrainCut()
    for sentences in per_review:
        pieces = [next(encoded) + [tok.eos_id] for _ in sentences]
        total = sum(len(p) for p in pieces)
        cut.longest = max(cut.longest, total)
        kept = 0
        for piece in pieces:
            if kept + len(piece) > max_review_tokens:
                break
            stream += piece
            kept += len(piece)
        if kept < total:
            cut.reviews += 1
            cut.tokens += total - kept
    return np.asarray(stream, dtype=np.int32), cut


def plot_prompt_lengths(lengths: list[int], max_tokens: int, path: Path) -> Path:
    from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.hist(lengths, bins=range(0, max_tokens + 2), color="#4477aa")
    ax.set_xlabel("prompt length (tokens)")
    ax.set_ylabel("records")
    ax.set_title(f"Prompt lengths (cap {max_tokens} tokens, all splits)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def report_markdown(report: dict) -> str:
    """``report.md``: the same facts as ``report.json``, for people."""
    lines = ["# Prepared data report", ""]
    lines += [
        "## Input files",
        "",
        "| file | lines read | header | kept | merged | skipped |",
        "|---|---|---|---|---|---|",
    ]
    for f in report["load"]["files"]:
        lines.append(
            f"| `{f['path']}` | {f['lines_read']} | {f['header']} | {f['kept']} | "
            f"{f['merged']} | {sum(f['skipped'].values())} |"
        )
    lines += ["", "## Skipped lines by reason", ""]
    any_skip = False
    for f in report["load"]["files"]:
        if "truncated" in f:
            lines.append(f"- `{f['path']}`: **{f['truncated']}**")
        for reason, n in f["skipped"].items():
            any_skip = True
            lines.append(f"- `{Path(f['path']).name}`: {reason}: {n}")
            lines += [f"  - `{ex}`" for ex in f["examples"][reason]]
    if not any_skip:
        lines.append("none")
    lines += ["", "## Counts at every stage", "", "| stage | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["stages"].items()]
    lines += [
        "",
        "## Explanation targets",
        "",
        "| split | with target | without (by reason) |",
        "|---|---|---|",
    ]
    for name, t in report["targets"].items():
        why = ", ".join(f"{k}: {v}" for k, v in t["without"].items()) or "-"
        lines.append(f"| {name} | {t['with_target']} | {why} |")
    a = report["aspects"]
    lines += [
        "",
        f"## Aspects (feature set F: {a['n']} terms)",
        "",
        ", ".join(f"{t} ({n})" for t, n in a["top"]),
        "",
    ]
    p = report["prompts"]
    lines += [
        "## Tokenizer, prompts and sequences",
        "",
        f"- vocabulary size: {report['tokenizer']['vocab_size']}",
        f"- prompt tokens: mean {p['mean']:.1f}, median {p['median']}, max {p['max']} "
        f"(cap {p['cap']}); history blocks dropped to fit: {p['history_dropped']}; "
        f"item tags cut: {p['tags_dropped']}",
        f"- pretraining stream: {report['sequences']['pretrain_tokens']} tokens; reviews cut "
        f"to {report['sequences']['pretrain_cut']['max_review_tokens']} tokens: "
        f"{report['sequences']['pretrain_cut']['reviews']} "
        f"({report['sequences']['pretrain_cut']['tokens']} tokens dropped)",
        "- fine-tuning sequences: "
        + ", ".join(f"{k} {v}" for k, v in report["sequences"]["finetune"].items())
        + f"; reasons cut to fit the context: {report['sequences']['reasons_cut']}",
        "",
        "![prompt lengths](prompt_lengths.png)",
        "",
        f"Stage times (s): {report['seconds']}",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the job


# Options for a sample of a few hundred reviews: a vocabulary and aspect set sized for it.
SAMPLE_OPTIONS = {"vocab_size": 400, "min_df": 2, "n_unigrams": 60, "n_bigrams": 10}


def prepare_sample(reviews, out, n_lines: int = 600) -> Path:
    """Prepare the first ``n_lines`` reviews of ``reviews`` into ``out`` with
    :data:`SAMPLE_OPTIONS` (the fast mode of the tutorials). The sample itself is written
    beside ``out`` as ``OUT.sample.json.gz``. Returns ``out``."""
    out = Path(out)
    sample = write_head(reviews, out.with_name(out.name + ".sample.json.gz"), n_lines)
    prepare(PrepareConfig(reviews=str(sample), out=str(out), progress=False, **SAMPLE_OPTIONS))
    return out


def check_options(cfg: PrepareConfig) -> None:
    """Raise ValueError naming the option for a value its declaration refuses, or a
    combination that cannot work, before any data is read."""
    check(cfg)
    if cfg.prompt_tokens >= cfg.context:
        raise ValueError(
            f"--prompt-tokens ({cfg.prompt_tokens}) must be < --context "
            f"({cfg.context}) to leave room for the reason"
        )
    check_output_dir(cfg.out, inputs=(cfg.reviews, cfg.meta))


class Stopwatch:
    """Seconds per stage: ``lap(name)`` records the time since the previous lap."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last, 2)
        self._last = now


def with_language(cfg: PrepareConfig, splits) -> PrepareConfig:
    """``cfg`` with its language decided: ``--lang auto`` becomes the training text's
    (:func:`minireason.text.language_of`), recorded in ``config.json``."""
    if cfg.lang != "auto":
        return cfg
    return replace(cfg, lang=language_of(r.text for r in splits["train"] if r.text))


def load_and_split(cfg: PrepareConfig, load: LoadReport):
    """Stage 1: read, de-duplicate, k-core filter and split. Returns ``(splits, meta,
    stages)``: the reviews of each split, the item metadata, and counts at every step."""
    reviews, meta = load_input(cfg, load)
    if not reviews:
        raise ValueError(f"no review could be read: {load.summary()}; {_what_to_do(cfg, load)}")
    stages = {"reviews loaded": len(reviews)}
    reviews = drop_duplicates(reviews, load)
    stages["after de-duplication"] = len(reviews)
    if cfg.kcore > 1:
        before = len(reviews)
        reviews = k_core(reviews, cfg.kcore)
        stages[f"after {cfg.kcore}-core filter"] = len(reviews)
        if not reviews:
            raise ValueError(
                f"--kcore {cfg.kcore}: the filter removed all {before} reviews (no users and "
                f"items with {cfg.kcore}+ reviews each remain); lower --kcore"
            )
    stages["users"] = len({r.user for r in reviews})
    stages["items"] = len({r.item for r in reviews})
    stages["items with metadata"] = sum(1 for i in {r.item for r in reviews} if i in meta)
    splits = _split_reviews(cfg, reviews)
    stages.update({f"{name} reviews": len(splits[name]) for name in SPLITS})
    if not splits["train"]:
        raise ValueError(
            f"{cfg.reviews}: the {cfg.split} split leaves no training review out of "
            f"{len(reviews)} (each user needs several reviews); use more data"
        )
    return splits, meta, stages


FORMAT_HINTS = {
    "amazon": "one JSON object a line with reviewerID, asin, overall, unixReviewTime and "
    "reviewText",
    "movielens": "a folder with ratings.csv and movies.csv",
    "jsonl": "one JSON object a line with the fields --columns names",
    "csv": "a header line and the columns --columns names",
}


def _what_to_do(cfg: PrepareConfig, load: LoadReport) -> str:
    """Advice for a load that kept nothing, from what the report saw."""
    files = list(load.files.values())
    if sum(f.lines_read for f in files) == 0:
        cut = any(f.truncated_after is not None for f in files)
        return (
            "the gzip stream is damaged before its first line: download the file again"
            if cut
            else "the file is empty"
        )
    if any(f.truncated_after is not None for f in files):
        return "the gzip stream is damaged: download the file again (minireason data fetch)"
    not_utf8 = sum(f.skipped.get("not UTF-8", 0) for f in files)
    if not_utf8 * 2 > sum(f.lines_read for f in files):
        return (
            "most lines are not UTF-8: convert the file first (a Chinese file is often GBK: "
            "iconv -f gbk -t utf-8 FILE > FILE.utf8)"
        )
    return (
        f"is it a {cfg.format} file ({FORMAT_HINTS[cfg.format]})? choose --format, or run "
        "with --strict to stop at the first bad line"
    )


@dataclass
class FeatureStage:
    """Stage 2's results: the aspect vocabulary, per-item features, every review's target
    (``id(review) -> Target`` or the reason it has none), the feature rates, and the words
    particular to each item (``text.particular_words`` of the training reviews; None when
    neither ``--target-prefer`` nor ``--evidence-prefer`` asks for them)."""

    vocab: AspectVocabulary
    features: ItemFeatures
    targets: dict
    rates: dict[str, float]
    particular: dict[str, frozenset[str]] | None = None


def mine_features(cfg: PrepareConfig, splits, meta) -> FeatureStage:
    """Stage 2: aspects from training text only, explanation targets, feature rates."""
    train_texts = [r.text for r in splits["train"] if r.text]
    if not train_texts:
        raise ValueError(
            f"{cfg.reviews}: no training review has text; prepare needs review "
            "text for aspects, targets and the tokenizer (MovieLens has none)"
        )
    vocab = mine_aspects(train_texts, cfg.n_unigrams, cfg.n_bigrams, cfg.min_df)
    if not vocab.df and cfg.n_unigrams == cfg.n_bigrams == 0:
        raise ValueError("--n-unigrams 0 and --n-bigrams 0 keep no aspect; prepare needs one")
    if not vocab.df:
        top = max(
            mine_aspects(train_texts, cfg.n_unigrams, cfg.n_bigrams, 1).df.values(), default=0
        )
        raise ValueError(
            f"--min-df {cfg.min_df}: no candidate aspect is in that many of the "
            f"{len(train_texts)} training reviews (the most frequent is in {top}); lower "
            "--min-df, or give more reviews"
        )
    features = ItemFeatures(splits["train"], vocab, meta, cfg.n_item_tags)
    targets = {id(r): explanation_target(r, vocab) for rs in splits.values() for r in rs}
    particular = None
    if "particular" in (cfg.target_prefer, cfg.evidence_prefer):
        particular = particular_words(item_words(splits["train"]))
    if cfg.target_prefer == "particular":
        for r in splits["train"]:
            targets[id(r)] = explanation_target(r, vocab, particular.get(r.item, frozenset()))
    rates = feature_rates(
        [
            (features.aspects_of_review(r), t.feature)
            for r in splits["train"]
            if isinstance(t := targets[id(r)], Target)
        ]
    )
    return FeatureStage(vocab, features, targets, rates, particular)


def train_tokenizer(cfg: PrepareConfig, splits, meta) -> BPETokenizer:
    """Stage 3a: the BPE on training review text and the metadata tags."""
    train_texts = [r.text for r in splits["train"] if r.text]
    tag_texts = sorted({t for m in meta.values() for t in m.tags})
    return BPETokenizer.train(train_texts + tag_texts, vocab_size=cfg.vocab_size)


def item_table(splits, meta, features: ItemFeatures) -> dict:
    """``items.json``: every item's title, prompt tags, metadata tags and aspect counts."""
    items = {}
    for item in sorted({r.item for rs in splits.values() for r in rs}):
        m = meta.get(item)
        items[item] = {
            "title": m.title if m else "",
            "tags": features.tags(item),
            "meta_tags": list(m.tags) if m else [],
            "aspects": [list(kv) for kv in features.item_aspects(item)],
        }
    return items


def user_table(splits, features: ItemFeatures) -> dict:
    """``users.json``: each user's profile over all their training reviews."""
    users = {}
    for user, history in sort_histories(splits["train"]).items():
        prof = profile(history_items(history, features, len(history)))
        users[user] = {**prof, "n_train": len(history)}
    return users


def feature_info(cfg: PrepareConfig, stage: FeatureStage) -> dict:
    """``features.json``: the feature set F, its document frequencies and rates, the focus
    size and the mining parameters."""
    return {
        "aspects": stage.vocab.aspects,
        "df": stage.vocab.df,
        "rates": stage.rates,
        "focus": cfg.focus,
        "params": stage.vocab.params,
        "method": "document frequency of noun-like unigrams and bigrams in training reviews "
        "(see minireason.prep.features)",
    }


def run_config(cfg: PrepareConfig) -> dict:
    """``config.json``: every option, the package version and each input's size and
    SHA-256."""
    config = {k: v for k, v in asdict(cfg).items() if k not in ("out", "progress")}
    config["version"] = __version__
    config["inputs"] = [
        {"path": str(p), "bytes": os.path.getsize(p), "sha256": sha256_file(p)}
        for p in (cfg.reviews, cfg.meta)
        if p and Path(p).is_file()
    ]
    return config


def make_report(
    cfg,
    load,
    stages,
    stage: FeatureStage,
    tok,
    records,
    finetune,
    reasons_cut,
    pretrain,
    pretrain_cut: PretrainCut,
    seconds,
) -> dict:
    """``report.json``: counts at every stage, targets, aspects, prompts and sequences."""
    lengths = [rec["prompt"]["n_tokens"] for name in SPLITS for rec in records[name]]
    all_records = [rec for name in SPLITS for rec in records[name]]
    vocab = stage.vocab
    return {
        "load": load.to_dict(),
        "language": cfg.lang,
        "stages": stages,
        "targets": {
            name: {
                "with_target": sum(1 for rec in records[name] if rec["target"] is not None),
                "without": dict(
                    Counter(
                        rec["no_target"] for rec in records[name] if rec["no_target"] is not None
                    )
                ),
            }
            for name in SPLITS
        },
        "aspects": {"n": len(vocab.df), "top": [[a, vocab.df[a]] for a in vocab.aspects[:30]]},
        "tokenizer": {"vocab_size": tok.vocab_size},
        "prompts": {
            "cap": cfg.prompt_tokens,
            "mean": float(np.mean(lengths)) if lengths else 0.0,
            "median": int(np.median(lengths)) if lengths else 0,
            "max": max(lengths, default=0),
            "histogram": np.bincount(lengths, minlength=cfg.prompt_tokens + 1).tolist(),
            "history_dropped": sum(rec["prompt"]["n_dropped"] for rec in all_records),
            "tags_dropped": sum(rec["prompt"]["n_tags_dropped"] for rec in all_records),
            "cold_start": sum(1 for rec in all_records if not rec["history"]),
        },
        "sequences": {
            "pretrain_tokens": int(pretrain.size),
            "pretrain_cut": {"max_review_tokens": cfg.max_review_tokens, **asdict(pretrain_cut)},
            "finetune": {name: len(finetune[name]) for name in SPLITS},
            "reasons_cut": reasons_cut,
            "context": cfg.context,
        },
        "seconds": seconds,
    }


def prepare(cfg: PrepareConfig) -> dict:
    """Run steps 1-3 and write the prepared directory ``cfg.out``; return the report dict.

    The directory appears complete or not at all, and one writer at a time holds it
    (:func:`minireason.prep.prepared.write_prepared`, :func:`minireason.files.writer_lock`).
    """
    check_options(cfg)
    with writer_lock(cfg.out, "minireason prepare"):
        clock = Stopwatch()
        load = LoadReport(strict=cfg.strict)
        splits, meta, stages = load_and_split(cfg, load)
        cfg = with_language(cfg, splits)
        clock.lap("load")
        stage = mine_features(cfg, splits, meta)
        clock.lap("aspects")
        tok = train_tokenizer(cfg, splits, meta)
        clock.lap("tokenizer")
        index = EvidenceIndex(
            splits["train"],
            stage.vocab,
            partial(evidence_length, tok),
            cfg.evidence_tokens,
            cfg.evidence_prefer,
            stage.particular,
        )
        records, prompt_ids = build_records(
            cfg, splits, stage.features, stage.vocab, tok, meta, stage.targets, stage.rates, index
        )
        clock.lap("prompts")
        finetune, reasons_cut = {}, 0
        for name in SPLITS:
            finetune[name], n_cut = finetune_sequences(
                records[name], prompt_ids[name], tok, cfg.context
            )
            reasons_cut += n_cut
        pretrain, pretrain_cut = pretrain_stream(splits["train"], tok, cfg.max_review_tokens)
        clock.lap("sequences")
        prepared = Prepared(
            config=run_config(cfg),
            **records,
            items=item_table(splits, meta, stage.features),
            users=user_table(splits, stage.features),
            feature_info=feature_info(cfg, stage),
            tokenizer=tok,
            pretrain=pretrain,
            prompts={name: PromptSet.from_lists(prompt_ids[name]) for name in SPLITS},
            finetune=finetune,
            report={},
        )
        clock.lap("tables")
        prepared.report = make_report(
            cfg,
            load,
            stages,
            stage,
            tok,
            records,
            finetune,
            reasons_cut,
            pretrain,
            pretrain_cut,
            clock.seconds,
        )
        lengths = [len(ids) for name in SPLITS for ids in prompt_ids[name]]
        attachments = {
            "report.md": lambda path: path.write_text(
                report_markdown(prepared.report), encoding="utf-8"
            ),
            "prompt_lengths.png": lambda path: plot_prompt_lengths(
                lengths, cfg.prompt_tokens, path
            ),
        }
        write_prepared(prepared, cfg.out, attachments)
    return prepared.report


def summary(report: dict, out) -> str:
    """The lines ``minireason prepare`` prints: counts, skipped lines, truncated inputs."""
    files = report["load"]["files"]
    skipped = sum(sum(f["skipped"].values()) for f in files)
    lines = [f"prepared {out}: " + ", ".join(f"{k} {v}" for k, v in report["stages"].items())]
    if report.get("language", "en") != "en":
        lines.append(f"language: {report['language']} (prompts for people in it)")
    lines.append(f"skipped lines: {skipped} (by reason in {out}/report.md)")
    lines += [f"warning: {f['truncated']}" for f in files if "truncated" in f]
    return "\n".join(lines)
