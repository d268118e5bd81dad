"""``minireason demo``: the whole job, from a review dump to explained recommendations.

    find the data (or download it) ──► prepare (steps 1-3) ──► train the tiny preset (pretrain + fine-tune)
        ──► for three test users: top-3 recommendations, each with its reason and evidence
        ──► evaluation table (model vs baselines; recommenders vs popularity)

Everything goes under ``--out`` (default ``runs/demo``): ``prepared/``, ``run/``, ``eval/``
and the evidence heatmaps. Everything it is given is checked before any work
(:func:`check_demo`). Running the demo again reuses what is already there (a prepared
directory made from the same file, finished training stages, an evaluation of the same run
on the same data with the same settings: :func:`reusable_evaluation`), and an interrupted
demo picks up where it stopped (training resumes from its last checkpoint). When the
reviews are not on the machine, the demo downloads them into the cache (``minireason data
fetch``), unless ``--offline``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

from minireason.data.fetch import find_or_fetch
from minireason.data.io import cut_short
from minireason.files import HTML_PAGE, PNG_FIGURE, Kind, check_output, sha256_file
from minireason.options import check_values, option
from minireason.train.recipe import SET_OPTION

DEMO_DATASET = "musical-instruments"
DEMO_EVAL_RECORDS = 400  # the test records the demo evaluates, about a third of them
REPORT = "report.html"  # the explanations page, in --out
# --out itself: the demo adds its own named outputs to any directory and removes nothing, so
# only what it reads (the data directory) is out of bounds
DEMO_DIR = Kind("a directory", lambda path: True, directory=True)


@dataclass
class DemoConfig:
    """The options of ``minireason demo``: keyword arguments of :func:`run_demo`, whose
    defaults they are."""

    description: ClassVar[str] = (  # its --help
        "Find the Musical Instruments reviews (downloading them into the cache if absent), "
        "prepare them, train the tiny preset, explain the top-3 recommendations of three test "
        "users, then evaluate. A second run reuses the first's work; an interrupted one resumes."
    )

    data_dir: str | None = option(None, metavar="DIR", help="where the datasets are")
    offline: bool = option(False, help="never download; stop if the data is absent")
    out: str = option("runs/demo", metavar="DIR", help="output directory")
    preset: str = option("tiny", metavar="NAME|FILE", help="preset name or JSON file")
    overrides: tuple[str, ...] = option((), **SET_OPTION)
    n_users: int = option(3, min=1, flag="--users", help="test users shown")
    eval_limit: int = option(
        DEMO_EVAL_RECORDS,
        min=2,
        help="evaluate the first N test records (all of them: 'minireason evaluate', as the "
        "demo's last line says)",
    )
    seed: int = option(0, metavar="SEED", help="seed of the explanations' sampling")


def check_demo(data_dir, out, preset, overrides, n_users, eval_limit, seed) -> dict:
    """Check everything the demo is given before any work, so that a typo is one line naming
    the option at once rather than after minutes of preparing: the options' bounds, the data
    directory, the preset with its ``--set`` values (a run already under ``out`` must have
    been trained with the same ones), and that ``out`` and what the demo writes in it can be
    written. Returns the preset, loaded (:func:`minireason.train.recipe.load_preset`).

    Raises:
        ValueError or OSError (FileNotFoundError, PermissionError), naming the option.
    """
    from minireason.evaluation.render import check_output_dir as check_eval_dir
    from minireason.prep.prepared import check_output_dir as check_prepared_dir
    from minireason.train.recipe import check_continuation, load_preset

    check_values(DemoConfig, n_users=n_users, eval_limit=eval_limit, seed=seed)
    if data_dir is not None and not Path(data_dir).is_dir():
        raise FileNotFoundError(f"--data-dir {data_dir}: no such directory")
    loaded = load_preset(preset, overrides)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory; choose another path")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"--out {out}: {existing} is not a directory; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"--out {out}: {existing} cannot be written in; choose another path")
    check_prepared_dir(out / "prepared")
    run_dir = out / "run"
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--out {out}: {run_dir} exists and is not a directory")
    check_continuation(run_dir, loaded, resume=True)
    check_eval_dir(out / "eval")
    check_output(out / REPORT, "--out", HTML_PAGE)
    for plot in sorted(out.glob("evidence_*.png")):  # the users' figures, named after them
        check_output(plot, "--out", PNG_FIGURE)
    if data_dir is not None:
        check_output(out, "--out", DEMO_DIR, inputs=(data_dir,))
    return loaded


def reusable_prepared(prepared_dir: Path, reviews: Path):
    """The complete prepared directory at ``prepared_dir`` when it was made from exactly
    this reviews file (same SHA-256), else None."""
    from minireason.prep.prepared import load_prepared

    try:
        prepared = load_prepared(prepared_dir)
    except (ValueError, FileNotFoundError):
        return None
    digest = sha256_file(reviews)
    return prepared if any(e.get("sha256") == digest for e in prepared.config["inputs"]) else None


def comparison(result: dict, model: str) -> str:
    """One line: how the ``model`` compares with the best baseline on each headline metric
    (BLEU-1, BLEU-4, ROUGE-L, FMR) of the evaluation ``result``."""
    from minireason.evaluation.metrics import LOWER_IS_BETTER, UNCERTAIN_METRICS, format_metric

    parts, ahead, behind = [], [], []
    for metric, label in UNCERTAIN_METRICS.items():
        sign = -1 if metric in LOWER_IS_BETTER else 1
        name, best = max(result["baselines"].items(), key=lambda kv: sign * kv[1][metric])
        mine = result["model"][metric]
        (ahead if sign * mine > sign * best[metric] else behind).append(label)
        parts.append(
            f"{label} {format_metric(metric, mine)} vs {format_metric(metric, best[metric])} ({name})"
        )
    if not ahead:
        verdict = "behind it on all of them"
    elif not behind:
        verdict = "ahead of it on all of them"
    else:
        verdict = f"ahead on {', '.join(ahead)}, behind (or level) on {', '.join(behind)}"
    return f"the {model} model against the best baseline: {', '.join(parts)}; {verdict}"


def next_step(prepared_dir: Path, user: str | None) -> str:
    """One line: how to train the ``small`` preset on the demo's data and use it, with its
    measured training time (:data:`minireason.train.recipe.TRAINING_TIME`)."""
    from minireason.train.recipe import TRAINING_TIME

    run = Path("runs") / "small"
    user_part = f" --user {user}" if user else " --user ID"
    return (
        f"better reasons come from the small preset ({TRAINING_TIME['small']}): "
        f"minireason train --prepared {prepared_dir} --preset small --out {run}; then "
        f"minireason explain --prepared {prepared_dir} --run {run}{user_part} and "
        f"minireason evaluate --prepared {prepared_dir} --run {run}"
    )


def whole_evaluation(prepared_dir: Path, run_dir: Path, n_test: int) -> str:
    """One line: how to evaluate the demo's run on all ``n_test`` test records (the demo
    evaluates the first ``--eval-limit``); the evaluation goes to ``run_dir/eval``."""
    return (
        f"the whole test split ({n_test} records): "
        f"minireason evaluate --prepared {prepared_dir} --run {run_dir}"
    )


def reusable_evaluation(eval_dir: Path, run, prepared, limit, decoding) -> dict | None:
    """The evaluation in ``eval_dir`` (its ``evaluation.json``) when it is whole and was made
    of this run (its content identity, :func:`minireason.train.run.run_content`) on this
    prepared data with the settings the demo evaluates with: the test split, the first
    ``limit`` records, the honest protocol, ``decoding``, the run's weights, the default seed
    and batch size. Else None: the demo evaluates again."""
    from minireason.evaluation.evaluate import EvaluateConfig
    from minireason.evaluation.render import OUTPUT_FILES
    from minireason.train.run import RUN_JSON, run_content

    if not all((eval_dir / name).is_file() for name in OUTPUT_FILES):
        return None
    try:
        result = json.loads((eval_dir / "evaluation.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    info = result.get("info") if isinstance(result, dict) else None
    wanted = {
        "run_content": run_content(run.path),
        "prepared_content": prepared.content,
        "split": "test",
        "limit": limit,
        "focus_from": "predicted",
        "decode": "step4",
        "decoding": asdict(decoding),
        "weights": run.info.weights.to_dict(),
        "weights_from": RUN_JSON,
        "random_seed": EvaluateConfig.seed,
        "batch_size": EvaluateConfig.batch_size,
    }
    if not isinstance(info, dict) or any(info.get(k) != v for k, v in wanted.items()):
        return None
    return result


def pick_users(prepared, n: int) -> list[str]:
    """``n`` test users with a target and the longest training histories (ties by id)."""
    n_train = {u: info.get("n_train", 0) for u, info in prepared.users.items()}
    users = sorted(
        {r["user"] for r in prepared.test if r["target"]}, key=lambda u: (-n_train.get(u, 0), u)
    )
    return users[:n]


def run_demo(
    data_dir=DemoConfig.data_dir,
    out=DemoConfig.out,
    preset=DemoConfig.preset,
    overrides=DemoConfig.overrides,
    n_users: int = DemoConfig.n_users,
    k: int = 3,
    n_candidates: int | None = None,
    eval_limit: int | None = DemoConfig.eval_limit,
    seed: int = DemoConfig.seed,
    offline: bool = DemoConfig.offline,
    progress: bool = True,
    echo=print,
) -> dict:
    """Run the demo; print as it goes through ``echo``; return the evaluation result.

    Everything given is checked before any work (:func:`check_demo`). ``overrides``:
    ``--set`` values of the preset. ``n_candidates`` overrides the run's decoding (fewer candidates: a faster demo). Data that
    is not found locally is downloaded into the cache, unless ``offline``."""
    from minireason.evaluation.evaluate import evaluate_run
    from minireason.evaluation.render import markdown_report
    from minireason.prep.prepare import PrepareConfig, prepare
    from minireason.prep.prepared import load_prepared
    from minireason.reason.evidence import plot_evidence
    from minireason.reason.explain import (
        explain_for_user,
        fit_recommender,
        format_user_report,
    )
    from minireason.reason.explanations_page import report_about, user_section, write_report
    from minireason.train.recipe import run_recipe
    from minireason.train.run import load_run

    t0 = time.perf_counter()
    out = Path(out)
    loaded = check_demo(data_dir, out, preset, overrides, n_users, eval_limit, seed)
    echo("[1/4] data")
    reviews = find_or_fetch(DEMO_DATASET, data_dir, offline, echo, progress)
    problem = cut_short(reviews)
    if problem:
        echo(
            f"WARNING: {reviews} is incomplete ({problem}): everything below uses only its "
            f"complete lines; download it again with 'minireason data fetch {DEMO_DATASET}'"
        )
    echo(f"      reviews: {reviews}")
    prepared_dir = out / "prepared"
    prepared = reusable_prepared(prepared_dir, reviews)
    if prepared is not None:
        echo(f"      reusing {prepared_dir}")
    else:
        prepare(PrepareConfig(reviews=str(reviews), out=str(prepared_dir), progress=progress))
        prepared = load_prepared(prepared_dir)
    files = prepared.report["load"]["files"]
    skipped = {reason: n for f in files for reason, n in f["skipped"].items()}
    echo(
        f"      {sum(f['lines_read'] for f in files)} lines read; skipped by reason: {skipped or 'none'} "
        f"(examples in {prepared_dir / 'report.md'})"
    )
    echo(
        f"      {len(prepared.train)} train / {len(prepared.valid)} valid / {len(prepared.test)} test "
        f"reviews, {len(prepared.users)} users, {len(prepared.items)} items, "
        f"{len(prepared.features)} aspects"
    )

    changed = "".join(f" --set {o}" for o in overrides)
    echo(
        f"[2/4] training the {preset} preset{changed} (pretrain on review sentences, then "
        "fine-tune on prompt -> reason)"
    )
    run_dir = out / "run"
    report = run_recipe(
        prepared_dir,
        loaded,
        run_dir,
        resume=True,  # picks up finished or interrupted stages; trains what is missing
        progress=progress,
        echo=lambda line: echo("      " + line),
    )
    for stage in ("pretrain", "finetune"):
        r = report[stage]
        val = "-" if r["final_val_loss"] is None else f"{r['final_val_loss']:.3f}"
        echo(
            f"      {stage}: {r['status']}, {r['steps']} steps, val loss {val}, {r['seconds_this_run']:.0f} s"
        )

    echo(
        f"[3/4] top-{k} recommendations for {n_users} test users, each with its reason and evidence"
    )
    run = load_run(run_dir)
    decoding = run.info.decoding.replace(n_candidates=n_candidates)
    recommender = fit_recommender(prepared)
    sections = []
    users = pick_users(prepared, n_users)
    for user in users:
        recs = explain_for_user(
            run,
            prepared,
            user,
            k=k,
            seed=seed,
            recommender=recommender,
            decoding=decoding,
        )
        echo("\n" + format_user_report(prepared, user, recs))
        plot = out / f"evidence_{user}.png"
        plot_evidence(recs[0].explanation, plot)
        echo(f"  evidence heatmap of the first: {plot}")
        sections.append(user_section(prepared, user, recs, run.tokenizer))
    about = report_about(run, run.info.settings(decoding), seed)
    page = write_report(out / REPORT, sections, about)
    echo(f"\nthe explanations as a page (token-level attention, every step-4 candidate): {page}")

    n_test = len(prepared.finetune["test"])
    n_eval = n_test if eval_limit is None else min(eval_limit, n_test)
    echo(
        f"\n[4/4] evaluation on the first {n_eval} of the {n_test} test records "
        "(model vs baselines; recommenders vs popularity)"
    )
    result = reusable_evaluation(out / "eval", run, prepared, eval_limit, decoding)
    if result is not None:
        echo(
            f"      reusing {out / 'eval'}: made by this run, on this data, with these settings "
            f"(it took {result['info']['seconds_total']:.0f} s; delete it to evaluate again)"
        )
    else:
        result = evaluate_run(
            prepared_dir,
            run_dir,
            out / "eval",
            limit=eval_limit,
            progress=progress,
            decoding=decoding,
        )
    echo(markdown_report(result))
    if n_eval < n_test:
        echo("\n" + whole_evaluation(prepared_dir, run_dir, n_test))
    echo(
        f"\noutputs under {out}/ (report.html, eval/evaluation.html, eval/evaluation.md, "
        "eval/evaluation.png, run/*/loss.png); "
        f"demo took {time.perf_counter() - t0:.0f} s"
    )
    name = Path(preset).stem
    echo(comparison(result, name + (" (with --set)" if overrides else "")))
    if name != "small":
        echo(next_step(prepared_dir, users[0] if users else None))
    return result
