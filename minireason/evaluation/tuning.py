"""``minireason tune``: the score's weights chosen on the validation split.

    minireason tune --prepared DIR --run RUN --out weights.json [--limit N]
    minireason evaluate --prepared DIR --run RUN --split valid --weights weights.json \\
        --out weights-valid [--limit N]

It samples every validation record's candidates once, with the seeds ``evaluate`` uses
(:func:`minireason.reason.choose.sample_batches`), scores each candidate's terms once
(:class:`minireason.reason.choose.CandidatePool`), and then only re-weighs: the reason kept
under a weight setting is the candidate with the highest ``sum(ScoreBreakdown.parts(weights))``,
ties to the earlier sample, exactly as ``explain`` and ``evaluate`` would choose it. Each
setting's choices are scored with :func:`minireason.evaluation.metrics.explanation_metrics`.

The search is by coordinates: starting from the run's weights (``run.json``), each weight of
:data:`GRID` in turn takes the value of its list that maximises :func:`objective`, the others
held, for ``passes`` rounds. The objective is the sum of the targets as ratios (BLEU-4 / 1.6 +
ROUGE-L / 19 + BLEU-1 / 20 + FMR / 0.36) less the degenerate rate as a ratio of its 3%
ceiling (what a reader notices first costs as much as a whole target at that ceiling); a
setting whose degenerate rate is above 3% or whose USR is below 0.5 is infeasible. Only the
validation split is tuned on: the test split is reported once, with the weights chosen.

The output is a weights file (:func:`minireason.train.run.weights_file`): the best weights,
beside them the validation numbers of the best and of the run's own weights, the inputs'
identities, and every setting tried. ``--weights FILE`` adopts it in ``explain``,
``evaluate``, ``explain-all`` and ``bench explain``; each records the file it used.

The metrics do not see everything a reader does. The ``echo`` default (a content word said
again) and the ``unknown`` default (a word the training reviews never used twice) were
chosen by blind readings of validation reasons, not by this search, which prefers 0 for
them because they cost a little BLEU-1 and FMR (``docs/`` gives the readings): read the
reasons a tuned file chooses before adopting it.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import ClassVar

from minireason.evaluation.metrics import explanation_metrics
from minireason.files import atomic_write_json, check_output, json_kind
from minireason.options import option
from minireason.prep.prepared import load_prepared
from minireason.reason.choose import CandidatePool, ScoringContext, sample_batches
from minireason.train.run import (
    WEIGHTS_FORMAT,
    ScoreWeights,
    check_same_data,
    content_paths,
    load_run,
    run_content,
    weights_file,
)

GRID = {  # the values each weight may take
    "logprob": [0.0, 0.1, 0.2, 0.5, 1.0, 2.0],
    "consensus": [0.0, 0.5, 1.0, 2.0, 4.0, 8.0],
    "focus": [0.0, 0.5, 1.0, 2.0],
    "phrasing": [0.0, 0.25, 0.5, 1.0, 2.0, 4.0],
    "user": [0.0, 0.5, 1.0, 2.0],
    "item": [0.0, 0.5, 1.0, 2.0],
    "repetition": [0.0, 1.0, 2.0, 4.0],
    "echo": [0.0, 0.25, 0.5, 1.0, 2.0],
    "unknown": [0.0, 0.5, 1.0, 2.0],
    "degenerate": [0.0, 0.5, 1.0, 2.0, 4.0],
    "unfinished": [0.0, 0.25, 0.5, 1.0, 2.0],
    "contradicts": [0.0, 0.25, 0.5, 1.0, 2.0],
}
CANDIDATE_BATCH = 4  # prompts per sampling batch: evaluate's (its batch of 64 / 16 candidates)
TARGETS = {"bleu4": 1.6, "rougeL_f": 19.0, "bleu1": 20.0, "fmr": 0.36}
MAX_DEGENERATE = 0.03
MIN_USR = 0.5


@dataclass
class TuneConfig:
    """The options of ``minireason tune`` (:mod:`minireason.options`)."""

    description: ClassVar[str] = (
        "Sample the validation records' candidates once, then search the score's weights "
        "coordinate by coordinate from the run's own, for BLEU-4, ROUGE-L, BLEU-1 and FMR "
        "with at most 3% degenerate reasons; or, with --labels, fit them to readers' "
        "ratings of the candidates (a sheet from 'minireason rating-sheet'). Writes the "
        "weights with their validation numbers beside the run's; adopt them with --weights "
        "FILE in explain, evaluate, explain-all and bench explain. Read the reasons they "
        "choose before adopting them."
    )

    prepared: str = option(metavar="DIR", help="the run's prepared directory")
    run: str = option(metavar="DIR", help="a run of 'minireason train'")
    out: str = option(metavar="FILE.json", help="the weights file to write (or replace)")
    limit: int | None = option(None, min=2, help="the first N validation records only")
    seed: int = option(0, metavar="SEED", help="the sampling seed, as evaluate's")
    passes: int = option(2, min=1, help="rounds over the weights")
    labels: tuple[str, ...] = option(
        (),
        repeat=True,
        metavar="FILE.jsonl",
        help="fit the weights to readers' ratings in this filled rating sheet (again for "
        "another reader's) instead of searching for the metrics; the sheet's records and seed "
        "are used, not --limit and --seed (minireason.evaluation.readers)",
    )
    sense_weight: float = option(
        1.0,
        min=0.0,
        metavar="W",
        help="with --labels: weight of the readers' sense beside specificity",
    )
    length_bonus: float = option(
        0.05,
        metavar="W",
        help="with --labels: added to the length weight (per token of a candidate)",
    )


def objective(m: dict) -> float:
    """``sum(m[k] / TARGETS[k]) - m["degenerate"] / MAX_DEGENERATE``; ``-inf`` when the
    degenerate rate is above :data:`MAX_DEGENERATE` or USR below :data:`MIN_USR`."""
    if m["degenerate"] > MAX_DEGENERATE or m["usr"] < MIN_USR:
        return float("-inf")
    return sum(m[k] / t for k, t in TARGETS.items()) - m["degenerate"] / MAX_DEGENERATE


def coordinate_search(
    pool: CandidatePool, refs, features_gt, feature_set, start: ScoreWeights, passes=2, log=print
):
    """The weights :func:`objective` prefers, from ``start`` (module doc), and every setting
    tried as ``{"weights", "metrics", "objective"}`` in the order tried (``start`` first)."""
    tried, seen = [], {}

    def measure(w: ScoreWeights) -> float:
        key = tuple(sorted(w.to_dict().items()))
        if key not in seen:
            m = explanation_metrics(pool.choose(w), refs, features_gt, feature_set)
            seen[key] = objective(m)
            tried.append({"weights": w.to_dict(), "metrics": m, "objective": seen[key]})
            log(
                f"{seen[key]:7.3f}  BLEU-4 {m['bleu4']:.2f}  ROUGE-L {m['rougeL_f']:.2f}  "
                f"BLEU-1 {m['bleu1']:.2f}  FMR {m['fmr']:.3f}  USR {m['usr']:.3f}  "
                f"degenerate {m['degenerate']:.3f}  "
                + " ".join(f"{k}={getattr(w, k):g}" for k in GRID)
            )
        return seen[key]

    best = start
    best_score = measure(best)
    for _ in range(passes):
        for name, values in GRID.items():
            for v in values:
                w = replace(best, **{name: v})
                score = measure(w)
                if score > best_score:
                    best, best_score = w, score
    return best, tried


WEIGHTS_FILE = json_kind(WEIGHTS_FORMAT, "a weights file")  # what --out may replace


def check_weights_out(out, inputs=()) -> None:
    """Refuse (ValueError naming ``--out``) a path that holds anything but a weights file,
    or is one of ``inputs``: tune replaces only what it wrote."""
    out = check_output(out, "--out", WEIGHTS_FILE, inputs)
    if not out.parent.is_dir():
        raise ValueError(f"--out {out}: no directory {out.parent}")


def validation_pool(
    prepared, run, limit=None, seed: int = 0, batch_size: int = CANDIDATE_BATCH, progress=True
):
    """The first ``limit`` validation records with a target (None: all) and their candidates,
    sampled with the seeds ``evaluate`` uses and scored once: ``(records, pool)``, a
    :class:`~minireason.reason.choose.CandidatePool`. ``prepared`` and ``run``: loaded
    (:func:`~minireason.prep.prepared.load_prepared`, :func:`~minireason.train.run.load_run`)."""
    check_same_data(run.info, prepared, False)
    sequences = prepared.finetune["valid"]
    n = len(sequences) if limit is None else min(limit, len(sequences))
    if n < 2:
        raise ValueError(f"{prepared.path}: the valid split has {n} records with a target")
    records = [prepared.valid[int(r)] for r in sequences.record[:n]]
    prompts = [prepared.prompts["valid"].get(int(r)).tolist() for r in sequences.record[:n]]
    samples = sample_batches(
        run.model, run.tokenizer, prompts, run.info.decoding, seed, batch_size, progress
    )
    contexts = [
        ScoringContext.of_record(
            r, prepared.reviews_by, prepared.known_words, prepared.particular_words
        )
        for r in records
    ]
    return records, CandidatePool(run.tokenizer, samples, contexts)


def tune(
    prepared_dir,
    run_dir,
    out=None,
    limit=None,
    batch_size: int = CANDIDATE_BATCH,
    seed: int = TuneConfig.seed,
    passes: int = TuneConfig.passes,
    log=print,
    progress: bool = True,
) -> dict:
    """Sample the validation split's candidates with ``run_dir``'s model, search the weights
    from the run's own (:func:`coordinate_search`), and write the weights file to ``out``
    (None: nothing written). Returns the file's contents."""
    if out is not None:
        check_weights_out(out, inputs=(prepared_dir, *content_paths(run_dir)))
    if limit is not None and limit < 2:
        raise ValueError(f"--limit must be at least 2 (DIV needs two records), got {limit}")
    prepared = load_prepared(prepared_dir)
    run = load_run(run_dir)
    records, pool = validation_pool(prepared, run, limit, seed, batch_size, progress)
    n = len(records)
    decoding = run.info.decoding
    refs = [r["target"] for r in records]
    features_gt = [r["feature"] for r in records]
    best, tried = coordinate_search(
        pool, refs, features_gt, prepared.features, run.info.weights, passes, log
    )
    chosen = next(t for t in tried if t["weights"] == best.to_dict())
    result = weights_file(
        best,
        chosen_on={
            "split": "valid",
            "n_records": n,
            "seed": seed,
            "batch_size": batch_size,
            "passes": passes,
            "decoding": asdict(decoding),
            "objective": "sum of metric / target over "
            + ", ".join(f"{k} {t:g}" for k, t in TARGETS.items())
            + f", less degenerate / {MAX_DEGENERATE:g}",
        },
        validation={"tuned": chosen, "run": tried[0]},
        inputs={
            "prepared": {"path": str(prepared.path), "content": prepared.content},
            "run": {"path": str(run_dir), "content": run_content(run_dir)},
        },
        tried=tried,
    )
    if out is not None:
        atomic_write_json(out, result)
    return result


def adopt_hint(prepared, run, out, limit: int | None = None) -> str:
    """What ``minireason tune`` prints last: where the weights went, the command that
    evaluates them on the validation records they were chosen on (into ``OUT-valid/``
    beside the file: read the reasons they choose there), and how to adopt them."""
    out = Path(out)
    check = ["--prepared", prepared, "--run", run, "--split", "valid", "--weights", out]
    check += ["--out", out.with_name(out.stem + "-valid")] + (["--limit", limit] if limit else [])
    return (
        f"written to {out}; read the reasons it chooses on the validation records:\n"
        f"  {shlex.join(['minireason', 'evaluate', *map(str, check)])}\n"
        f"then adopt it with --weights {shlex.quote(str(out))} in explain, evaluate, "
        "explain-all and bench explain"
    )


def format_tuned(result: dict) -> str:
    """What ``minireason tune`` prints at the end: the weights that changed and the
    validation numbers of the run's weights and the tuned ones."""
    before, after = result["validation"]["run"], result["validation"]["tuned"]
    changed = [
        f"{k} {before['weights'][k]:g} -> {after['weights'][k]:g}"
        for k in after["weights"]
        if after["weights"][k] != before["weights"][k]
    ]
    names = {"bleu1": "BLEU-1", "bleu4": "BLEU-4", "rougeL_f": "ROUGE-L", "fmr": "FMR"}
    names |= {"usr": "USR", "degenerate": "degenerate"}

    def line(label, t):
        m = t["metrics"]
        cells = ", ".join(
            f"{name} {m[k]:.2f}" if k in ("bleu1", "bleu4", "rougeL_f") else f"{name} {m[k]:.3f}"
            for k, name in names.items()
        )
        return f"  {label:<12} objective {t['objective']:.3f}: {cells}"

    n = result["chosen_on"]["n_records"]
    return "\n".join(
        [
            f"validation ({n} records):",
            line("run.json", before),
            line("tuned", after),
            "changed: " + ("; ".join(changed) if changed else "nothing (the run's are best)"),
        ]
    )
