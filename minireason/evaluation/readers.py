"""Step 4's weights fitted to readers' ratings: a reranker learned from what readers prefer.

    minireason rating-sheet --prepared DIR --run RUN --out sheet.jsonl [--limit 60]
        (each reader fills in "fluency", "specific" and "sense", 1 to 5, on every row of
        their own copy of the sheet)
    minireason tune --prepared DIR --run RUN --labels reader1.jsonl --labels reader2.jsonl \\
        --out readers.json [--sense-weight 1] [--length-bonus 0.05]

The metrics ``minireason tune`` searches for (BLEU, ROUGE, FMR) reward a reason that shares
words with the user's own sentence; readers reward one that reads well, makes sense and says
something about the item, and the two disagree (``docs/quality.md``). This module fits the
score's weights to readers instead.

**The sheet.** :func:`write_sheet` samples the candidates of the first ``limit`` validation
records exactly as ``tune`` and ``evaluate`` do (the same seeds), and writes one row per
distinct candidate text of each record, in random order within the record, for readers to
rate::

    {"format": "minireason-rating-sheet", "format_version": 1, ...}     the header line
    {"record": 0, "item": "B0018TC3I4", "item_tags": ["stand", ...],
     "text": "This stand is sturdy.", "fluency": null, "specific": null, "sense": null}

``fluency`` 5 natural English ... 1 garbled; ``specific`` 5 says something particular and
concrete about this item ... 1 could be said of anything; ``sense`` 5 makes complete sense
... 1 nonsense (:data:`RATING_SCALES`). A row left unrated is skipped and counted.

**The fit** (:func:`fit_to_ratings`). Each distinct candidate of a rated record (its first
sample) is a row ``x`` of its terms under unit weights
(:class:`~minireason.reason.choose.CandidatePool`: the parts of
:mod:`minireason.reason.scoring`, the candidate's length and lowest token log-probability
among them), its labels the readers' mean ``specific`` and ``sense`` ratings. Over the columns that vary, standardised ``z = (x - mean) / scale``,
two ridge regressions (penalty :data:`RIDGE`, an intercept) predict ``specific`` (``a``) and
``sense`` (``b``), every coefficient but the length's held at ``>= 0`` (:data:`EITHER_SIGN`):
the terms are signed parts of the score, so a penalty stays a penalty and a reward a reward
(unconstrained, the readers' taste for short plain sentences turned the unknown-word penalty
into a reward for made-up words)::

    w = (a + sense_weight * b) / scale,   then w.length += length_bonus

so the candidate kept is the one the readers are predicted to find most specific and
sensible, with a bonus per token against the readers' taste for the shortest sentence (the
metrics fall with the reasons' length: BLEU's brevity penalty). A term no rated candidate
varies in keeps the run's weight. Five folds by record check the fit: each record's
candidate chosen by weights fitted without it, rated by the readers, against the run's own
choice and the best rated one (``validation`` in the weights file).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from minireason.evaluation.tuning import CANDIDATE_BATCH, check_weights_out, validation_pool
from minireason.files import (
    Kind,
    atomic_write_json,
    atomic_write_text,
    check_output,
    sha256_file,
)
from minireason.options import option
from minireason.prep.prepared import load_prepared
from minireason.reason.scoring import SCORE_PARTS
from minireason.train.run import (
    ScoreWeights,
    content_paths,
    load_run,
    run_content,
    weights_file,
)

SHEET_FORMAT = "minireason-rating-sheet"
SHEET_VERSION = 1
RATING_SCALES = {
    "fluency": "5 natural, grammatical English; 3 understandable but clumsy; 1 garbled",
    "specific": "5 says something particular and concrete about this item (what it is, "
    "does, is made of, how it performs); 3 names the kind of product with a plain property; "
    "1 generic, could be said of anything",
    "sense": "5 makes complete sense as something a customer would say about this item; "
    "3 partly odd (a wrong product word, an illogical clause); 1 nonsense",
}
A_NEW_FILE = Kind("a new file", lambda path: False)  # what a sheet may replace: nothing
RIDGE = 5.0  # the ridge penalty on the standardised terms
EITHER_SIGN = ("length",)  # the terms whose fitted weight may be negative (module doc)
FOLDS = 5  # the check's folds, by record (record index modulo FOLDS)


@dataclass
class RatingSheetConfig:
    """The options of ``minireason rating-sheet`` (:mod:`minireason.options`)."""

    description: ClassVar[str] = (
        "Write the step-4 candidates of the first validation records as a sheet for readers "
        "to rate (fluency, specific, sense, 1-5); 'minireason tune' with --labels then fits "
        "the score's weights to the ratings. A sheet is never replaced: it may hold ratings."
    )

    prepared: str = option(metavar="DIR", help="the run's prepared directory")
    run: str = option(metavar="DIR", help="a run of 'minireason train'")
    out: str = option(metavar="FILE.jsonl", help="the sheet to write (a new file)")
    limit: int = option(60, min=2, help="the first N validation records")
    seed: int = option(0, metavar="SEED", help="the sampling seed, as evaluate's")


def write_sheet(prepared_dir, run_dir, out, limit: int = 60, seed: int = 0, progress=True):
    """Write the rating sheet (module doc) to ``out``, a path that must not exist (a sheet may
    hold readers' ratings, so none is ever replaced). Returns ``(rows written, records)``."""
    out = Path(out)
    if out.exists():
        raise ValueError(
            f"--out {out}: exists; a rating sheet may hold readers' ratings and is never "
            "replaced: choose another path"
        )
    check_output(out, "--out", A_NEW_FILE, (prepared_dir, *content_paths(run_dir)))
    if not out.parent.is_dir():
        raise ValueError(f"--out {out}: no directory {out.parent}")
    prepared = load_prepared(prepared_dir)
    run = load_run(run_dir)
    records, pool = validation_pool(prepared, run, limit, seed, CANDIDATE_BATCH, progress)
    header = {
        "format": SHEET_FORMAT,
        "format_version": SHEET_VERSION,
        "prepared_content": prepared.content,
        "run_content": run_content(run_dir),
        "seed": seed,
        "n_records": len(records),
        "scales": RATING_SCALES,
    }
    lines = [json.dumps(header, ensure_ascii=False)]
    order = random.Random(seed)
    for i, (record, texts) in enumerate(zip(records, pool.texts)):
        distinct = list(dict.fromkeys(texts))
        order.shuffle(distinct)
        for text in distinct:
            row = {"record": i, "item": record["item"], "item_tags": record["item_tags"]}
            row |= {"text": text} | {name: None for name in RATING_SCALES}
            lines.append(json.dumps(row, ensure_ascii=False))
    atomic_write_text(out, "\n".join(lines) + "\n")
    return len(lines) - 1, len(records)


@dataclass(frozen=True)
class Ratings:
    """The readers' ratings of a sheet's candidates: ``labels[(record, text)]`` the mean
    ``[fluency, specific, sense]`` over the readers who rated it (nan where none rated a
    scale), the sheet's header, how many rows were read and left unrated, and the files."""

    labels: dict
    header: dict
    n_rows: int
    n_unrated: int
    files: list


def read_ratings(paths) -> Ratings:
    """The ratings of one or more filled sheets (one per reader) made from the same
    candidates; ValueError naming the file, line and field of anything else."""
    if not paths:
        raise ValueError("--labels: give at least one filled rating sheet")
    sums: dict = {}
    header, n_rows, n_unrated = None, 0, 0
    for path in map(Path, paths):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise FileNotFoundError(f"--labels {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--labels {path}: cannot be read ({exc})") from None
        rows = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append((number, json.loads(line)))
            except ValueError:
                raise ValueError(f"{path}:{number}: not a JSON object") from None
        if not rows or not isinstance(rows[0][1], dict) or rows[0][1].get("format") != SHEET_FORMAT:
            raise ValueError(
                f"{path}:1: not a rating sheet (its first line must be the header "
                f"'minireason rating-sheet' writes, format {SHEET_FORMAT!r})"
            )
        head = rows[0][1]
        if head.get("format_version") != SHEET_VERSION:
            raise ValueError(f"{path}:1: sheet version {head.get('format_version')!r}, this "
                             f"code reads {SHEET_VERSION}")  # fmt: skip
        keys = ("prepared_content", "run_content", "seed", "n_records")
        if header is not None and any(head.get(k) != header.get(k) for k in keys):
            raise ValueError(
                f"{path}:1: made from other candidates than {paths[0]} (another run, data, "
                "seed or number of records); every sheet must come from one rating-sheet"
            )
        header = head
        for number, row in rows[1:]:
            where = f"{path}:{number}"
            if not isinstance(row, dict):
                raise ValueError(f"{where}: not a JSON object")
            record, text = row.get("record"), row.get("text")
            if not isinstance(record, int) or isinstance(record, bool):
                raise ValueError(f"{where}: field 'record' must be an integer, got {record!r}")
            if not 0 <= record < head.get("n_records", 0):
                raise ValueError(f"{where}: record {record} is not one of the sheet's records")
            if not isinstance(text, str):
                raise ValueError(f"{where}: field 'text' must be a string, got {text!r}")
            values = []
            for name in RATING_SCALES:
                v = row.get(name)
                if v is not None and (
                    isinstance(v, bool) or not isinstance(v, (int, float)) or not 1 <= v <= 5
                ):
                    raise ValueError(f"{where}: field {name!r} must be 1 to 5 (or null), got {v!r}")
                values.append(v)
            n_rows += 1
            if values[1] is None or values[2] is None:  # the fit needs specific and sense
                n_unrated += 1
                continue
            entry = sums.setdefault((record, text), [[], [], []])
            for scale, v in zip(entry, values):
                if v is not None:
                    scale.append(float(v))
    labels = {
        key: np.array([np.mean(s) if s else np.nan for s in scales]) for key, scales in sums.items()
    }
    return Ratings(labels, header, n_rows, n_unrated, [str(p) for p in paths])


def ridge(z: np.ndarray, y: np.ndarray, penalty: float = RIDGE, nonneg=None) -> np.ndarray:
    """Ridge regression of ``y (n,)`` on ``z (n, d)`` with an unpenalised intercept; returns
    the ``(d,)`` coefficients (the intercept, which no choice depends on, dropped).

    ``nonneg``: None, or a ``(d,)`` boolean mask of coefficients held at ``>= 0``. The
    constrained problem (convex) is solved by cyclic coordinate descent on its normal
    equations, from the unconstrained answer clipped, to a change below 1e-12."""
    a = np.c_[z, np.ones(len(z))]
    eye = np.eye(a.shape[1])
    eye[-1, -1] = 0.0
    gram, target = a.T @ a + penalty * eye, a.T @ y
    coef = np.linalg.solve(gram, target)
    if nonneg is None or not np.any(coef[:-1][nonneg] < 0):
        return coef[:-1]
    floor = np.r_[np.where(nonneg, 0.0, -np.inf), -np.inf]  # the intercept is free
    coef = np.maximum(coef, floor)
    for _ in range(100_000):
        change = 0.0
        for k in range(len(coef)):
            new = max(floor[k], coef[k] + (target[k] - gram[k] @ coef) / gram[k, k])
            change = max(change, abs(new - coef[k]))
            coef[k] = new
        if change < 1e-12:
            break
    return coef[:-1]


def _rows(pool, labels, records):
    """The rated candidates of ``records``, each text once (its first sample: a later
    duplicate has its twin's rating and would count it twice): ``(x (n, P), y (n, 3))``."""
    xs, ys = [], []
    for i in records:
        seen = set()
        for j, text in enumerate(pool.texts[i]):
            if (i, text) in labels and text not in seen:
                seen.add(text)
                xs.append(pool.terms[i][j])
                ys.append(labels[(i, text)])
    return np.array(xs), np.array(ys)


def fit_weights(pool, labels, records, start: ScoreWeights, sense_weight, length_bonus):
    """The weights fitted to the ratings of ``records``' candidates (module doc), from
    ``start`` (the run's) for the terms no rated candidate varies in."""
    x, y = _rows(pool, labels, records)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    varies = scale > 1e-12
    z = (x[:, varies] - mean[varies]) / scale[varies]
    names = np.array(SCORE_PARTS)[varies]
    nonneg = np.array([name not in EITHER_SIGN for name in names])
    combined = ridge(z, y[:, 1], nonneg=nonneg) + sense_weight * ridge(z, y[:, 2], nonneg=nonneg)
    fitted = start.to_dict()
    for name, coef, s in zip(names, combined, scale[varies]):
        fitted[str(name)] = float(coef / s)
    fitted["length"] += length_bonus
    return ScoreWeights(**fitted)


def _picked(pool, labels, records, weights: ScoreWeights) -> np.ndarray:
    """The ratings ``(len(records), 3)`` of the candidate ``weights`` keep for each record,
    among its rated candidates (ties: the earlier sample)."""
    w = np.array([getattr(weights, k) for k in SCORE_PARTS])
    out = []
    for i in records:
        rated = [j for j, t in enumerate(pool.texts[i]) if (i, t) in labels]
        best = max(rated, key=lambda j: (pool.terms[i][j] @ w, -j))
        out.append(labels[(i, pool.texts[i][best])])
    return np.array(out)


def _summary(ratings: np.ndarray) -> dict:
    return {name: float(np.nanmean(ratings[:, k])) for k, name in enumerate(RATING_SCALES)}


def check_fit(pool, labels, records, start, sense_weight, length_bonus) -> dict:
    """The five-fold check (module doc): the readers' mean ratings of the candidates kept by
    weights fitted without each record, by the run's weights, and of the best rated one (the
    most specific of those rated 4 or more for sense, else of all)."""
    chosen = []
    for fold in range(FOLDS):
        held = [i for i in records if i % FOLDS == fold]
        rest = [i for i in records if i % FOLDS != fold]
        if not held or len(rest) < 2:
            continue
        w = fit_weights(pool, labels, rest, start, sense_weight, length_bonus)
        chosen.append(_picked(pool, labels, held, w))
    best = []
    for i in records:
        rated = [labels[(i, t)] for t in dict.fromkeys(pool.texts[i]) if (i, t) in labels]
        sensible = [r for r in rated if r[2] >= 4] or rated
        best.append(max(sensible, key=lambda r: (r[1], r[2])))
    return {
        "fitted (five folds)": _summary(np.concatenate(chosen)),
        "run.json": _summary(_picked(pool, labels, records, start)),
        "best rated": _summary(np.array(best)),
    }


def fit_to_ratings(
    prepared_dir,
    run_dir,
    label_paths,
    out=None,
    sense_weight: float = 1.0,
    length_bonus: float = 0.05,
    progress: bool = True,
) -> dict:
    """Fit the score's weights to the readers' ratings in ``label_paths`` (filled sheets of
    :func:`write_sheet`) and write the weights file to ``out`` (None: nothing written).
    Returns its contents, with ``validation`` the five-fold check (:func:`check_fit`)."""
    if out is not None:
        check_weights_out(out, inputs=(prepared_dir, *content_paths(run_dir), *label_paths))
    ratings = read_ratings(label_paths)
    head = ratings.header
    prepared = load_prepared(prepared_dir)
    run = load_run(run_dir)
    if head.get("prepared_content") != prepared.content:
        raise ValueError(f"--labels {label_paths[0]}: the sheet was made from other prepared "
                         f"data than --prepared {prepared_dir}")  # fmt: skip
    identity = run_content(run_dir)  # a hash of the run's files, read once
    if head.get("run_content") != identity:
        raise ValueError(
            f"--labels {label_paths[0]}: the sheet was made from another run than --run "
            f"{run_dir} (its model or settings changed); write a new sheet and rate it"
        )
    n = head["n_records"]
    _, pool = validation_pool(prepared, run, n, head["seed"], CANDIDATE_BATCH, progress)
    missing = [(i, t) for (i, t) in ratings.labels if t not in pool.texts[i]]
    if missing:
        i, t = missing[0]
        raise ValueError(
            f"--labels: record {i} has no candidate {t!r}: the sheet does not come from this "
            "run's candidates (write a new sheet with 'minireason rating-sheet')"
        )
    records = sorted({i for i, _ in ratings.labels})
    if len(records) < 2 * FOLDS:
        raise ValueError(
            f"--labels: ratings for {len(records)} records; the fit and its check need at "
            f"least {2 * FOLDS}"
        )
    start = run.info.weights
    weights = fit_weights(pool, ratings.labels, records, start, sense_weight, length_bonus)
    result = weights_file(
        weights,
        chosen_on={
            "split": "valid",
            "n_records": len(records),
            "seed": head["seed"],
            "batch_size": CANDIDATE_BATCH,
            "decoding": asdict(run.info.decoding),
            "objective": f"readers' specific + {sense_weight:g} x sense (ridge {RIDGE:g}, "
            "weights >= 0 but the length's), "
            f"length bonus {length_bonus:g} per token",
            "labels": [{"path": p, "sha256": sha256_file(p)} for p in ratings.files],
            "n_rated": len(ratings.labels),
            "n_unrated_rows": ratings.n_unrated,
        },
        validation=check_fit(pool, ratings.labels, records, start, sense_weight, length_bonus),
        inputs={
            "prepared": {"path": str(prepared.path), "content": prepared.content},
            "run": {"path": str(run_dir), "content": identity},
        },
    )
    if out is not None:
        atomic_write_json(out, result)
    return result


def format_fitted(result: dict) -> str:
    """What ``minireason tune --labels`` prints: the weights and the five-fold check."""
    about = result["chosen_on"]
    lines = [
        f"fitted to {about['n_rated']} rated candidates of {about['n_records']} validation "
        f"records ({len(about['labels'])} sheet(s), {about['n_unrated_rows']} rows unrated)",
        "weights: " + ", ".join(f"{k} {v:.3g}" for k, v in result["weights"].items()),
        "readers' mean ratings of the candidate kept (five folds by record):",
    ]
    for label, means in result["validation"].items():
        cells = ", ".join(f"{k} {v:.2f}" for k, v in means.items())
        lines.append(f"  {label:<20} {cells}")
    return "\n".join(lines)
