"""The ``minireason`` command line: one thin entry point per command, in ``--help`` order.

Each command is a row of :data:`COMMANDS`: its name, a one-line help, a function that
declares its options and a handler of a few lines that calls the package. A command's
options are declared once, beside its stage, as the fields of a config dataclass
(:mod:`minireason.options`: default, bounds, metavar, help); :func:`stage` registers such a
command, and its handler gets the config built from the command line. Only the chosen
command's stage is imported, so every command starts fast. Errors the user can fix (bad
paths, input or options) are raised as :class:`UserError`, ValueError or OSError and
printed as one line naming what is wrong, never as a traceback (``MINIREASON_DEBUG=1``
shows it).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from minireason.options import add_options, at_least, from_args


class UserError(Exception):
    """An error the user can fix; its message says what to do."""


class UsageError(Exception):
    """A command line argparse cannot take (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line naming the option (not the usage block)."""

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


class _Help(argparse.HelpFormatter):
    """Wraps descriptions (keeping indented example lines as they are) and shows each
    option's default after its help, when it has one worth showing."""

    def _fill_text(self, text, width, indent):
        return "\n".join(
            indent + line
            if line.startswith(" ")
            else super(_Help, self)._fill_text(line, width, indent)
            for line in text.splitlines()
        )

    def _get_help_string(self, action):
        text = action.help or ""
        shown = not any(action.default is v for v in (None, False, argparse.SUPPRESS))
        if shown and action.option_strings and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def _run_options(add, what: str) -> None:
    """The options of every command that uses a run: how it chooses a reason (its decoding
    and weights), and the pairing check."""
    add("--candidates", type=at_least(1), metavar="N", help=f"samples per {what} (run's)")
    add("--max-new-tokens", type=at_least(1), metavar="N", help="longest reason (run's)")
    add("--weights", metavar="FILE.json", help="the score's weights ('minireason tune'; run's)")
    add("--allow-other-data", action="store_true", help="data the run was not trained on")
    add("--allow-unfinished", action="store_true", help="a run whose training did not finish")


def _settings(info, args):
    """How the command chooses reasons: the run's decoding and weights (``run.json``) with
    the options given on the line (:meth:`minireason.train.run.RunInfo.settings`)."""
    decoding = info.decoding.replace(
        n_candidates=args.candidates, max_new_tokens=args.max_new_tokens
    )
    return info.settings(decoding, args.weights)


def _choice(info, args) -> dict:
    """:func:`_settings` as the keyword arguments ``decoding``, ``weights``, ``weights_from``."""
    s = _settings(info, args)
    return {"decoding": s.decoding, "weights": s.weights, "weights_from": s.weights_from}


COMMANDS: dict = {}  # name -> (one-line help, declare), in --help order
BENCHES: dict = {}  # the same for 'minireason bench NAME'


def command(name: str, help_: str, table: dict = COMMANDS):
    """Register ``declare(p, add)``: it declares a command's options and its handler."""

    def register(declare):
        table[name] = (help_, declare)
        return declare

    return register


def pick(args, *names: str) -> dict:
    """``{name: args.name}`` for the given option names (keyword arguments of a call)."""
    return {name: getattr(args, name) for name in names}


def _write_json(path, result: dict) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
    print(f"figures written to {path}")


def _declare(p, config: type, handler) -> None:
    """Give parser ``p`` the description and options of the config class ``config``, and a
    ``func`` that calls ``handler`` with the config built from the parsed arguments."""
    p.description = config.description
    add_options(p, config)
    p.set_defaults(func=lambda args: handler(from_args(config, args)))


def stage(name: str, help_: str, config: str, table: dict = COMMANDS):
    """Register the decorated handler as command ``name`` (in ``table``): its description
    and options are those of ``config``, a config class named ``"module:Class"`` and imported
    only when the command is declared; the handler gets the config built from the line."""

    def register(handler):
        def declare(p, add):
            module, _, cls = config.partition(":")
            _declare(p, getattr(importlib.import_module(module), cls), handler)

        table[name] = (help_, declare)
        return handler

    return register


# --------------------------------------------------------------------------- demo


@stage(
    "demo",
    "the whole job: prepare, train the tiny preset, explain, evaluate",
    "minireason.demo:DemoConfig",
)
def run_demo(c) -> int:
    from dataclasses import asdict

    from minireason.demo import run_demo

    run_demo(**asdict(c))
    return 0


# --------------------------------------------------------------------------- attention-example


@stage(
    "attention-example",
    "the seed document's worked attention example, with errata",
    "minireason.course.worked_example:ExampleConfig",
)
def run_attention_example(c) -> int:
    from minireason.course import worked_example

    print(worked_example.report(decimals=c.decimals))
    if c.plot:
        print(f"\nheatmap written to {worked_example.plot(c.plot)}")
    return 0


# --------------------------------------------------------------------------- prepare


@stage(
    "prepare",
    "seed steps 1-3: reviews in, a prepared directory out",
    "minireason.prep.prepare:PrepareConfig",
)
def run_prepare(c) -> int:
    from dataclasses import replace

    from minireason.data.accounting import DataError
    from minireason.data.fetch import resolve_input
    from minireason.data.generic import parse_columns
    from minireason.prep.prepare import prepare, summary

    reviews, meta = resolve_input("--reviews", c.reviews), resolve_input("--meta", c.meta)
    columns = parse_columns(c.columns) if c.columns else None
    try:
        report = prepare(replace(c, reviews=reviews, meta=meta, columns=columns))
    except DataError as exc:
        raise UserError(f"--strict: {exc}") from None
    print(summary(report, c.out))
    return 0


# --------------------------------------------------------------------------- train


@stage(
    "train",
    "pretrain on review sentences, then fine-tune on prompt -> reason",
    "minireason.train.recipe:RecipeConfig",
)
def run_train(c) -> int:
    from minireason.train.recipe import load_preset, run_recipe, summary

    report = run_recipe(c.prepared, load_preset(c.preset), c.run_dir, resume=c.resume)
    print(summary(report, c.prepared, c.run_dir))
    return 0


# --------------------------------------------------------------------------- evaluate


@command("evaluate", "explanation metrics against four baselines; HR/NDCG@10")
def add_evaluate(p, add):
    from minireason.evaluation.baselines import BASELINES

    p.description = (
        "Reasons for the records with a target, scored (BLEU, ROUGE, USR, FMR, FCR, DIV, "
        "degenerate, perplexity) beside the baselines below, with 95% bootstrap intervals "
        "over the records and how often the model is ahead of each baseline; HR/NDCG@10 of "
        "four recommenders; 20 random records in full. Writes evaluation.json/.md/.png/.html "
        "and generations.jsonl.\n\nbaselines:\n"
        + "\n".join(f"  {name}: {line}" for name, line in BASELINES.items())
    )
    add("--prepared", required=True, metavar="DIR", help="the prepared directory")
    add("--run", required=True, metavar="DIR", help="a run of 'minireason train'")
    add("--out", metavar="DIR", help="output directory (default: RUN/eval)")
    add("--limit", type=at_least(2), metavar="N", help="the first N records only")
    add("--batch-size", type=at_least(1), default=64, help="prompts per batch")
    add("--seed", type=int, default=0, help="seed of the sampling and the random baseline")
    add("--decode", choices=["step4", "greedy"], default="step4", help="as 'explain', or greedy")
    add("--split", choices=["test", "valid"], default="test", help="tune on valid, report test")
    add(
        "--focus-from",
        choices=["predicted", "target"],
        default="predicted",
        help="predicted: the honest protocol; target: the oracle one, the test review's own "
        "feature as the focus (as PETER+/NETE are given it), labelled in every output",
    )
    _run_options(add, "record")
    p.set_defaults(func=run_evaluate)


def run_evaluate(args) -> int:
    from minireason.evaluation.evaluate import evaluate_run
    from minireason.evaluation.render import markdown_report
    from minireason.train.run import read_run_info

    choice = _choice(read_run_info(args.run), args)
    options = pick(
        args,
        "limit",
        "batch_size",
        "seed",
        "decode",
        "split",
        "focus_from",
        "allow_other_data",
        "allow_unfinished",
    )
    result = evaluate_run(args.prepared, args.run, args.out, **choice, **options)
    print(markdown_report(result))
    out = args.out or os.path.join(args.run, "eval")
    print(
        f"written to {out}: evaluation.json, evaluation.md, evaluation.png, evaluation.html, "
        "generations.jsonl"
    )
    return 0


# --------------------------------------------------------------------------- tune


@command("tune", "choose the score's weights on the validation split, into a weights file")
def add_tune(p, add):
    from minireason.evaluation.tuning import TARGETS

    p.description = (
        "Sample the validation records' candidates once, then search the score's weights "
        "coordinate by coordinate from the run's own, for "
        + ", ".join(TARGETS)
        + " with at most 3% degenerate reasons. Writes the best weights with their "
        "validation numbers; adopt them with --weights FILE in explain, evaluate, "
        "explain-all and bench explain. Read the reasons they choose before adopting them."
    )
    add("--prepared", required=True, metavar="DIR", help="the run's prepared directory")
    add("--run", required=True, metavar="DIR", help="a run of 'minireason train'")
    add("--out", required=True, metavar="FILE.json", help="the weights file to write")
    add("--limit", type=at_least(2), metavar="N", help="the first N validation records only")
    add("--seed", type=int, default=0, metavar="SEED", help="the sampling seed, as evaluate's")
    add("--passes", type=at_least(1), default=2, metavar="N", help="rounds over the weights")
    p.set_defaults(func=run_tune)


def run_tune(args) -> int:
    from minireason.evaluation.tuning import format_tuned, tune

    result = tune(args.prepared, args.run, args.out, args.limit, seed=args.seed, passes=args.passes)
    print(format_tuned(result))
    print(f"written to {args.out}; adopt it with --weights {args.out}")
    return 0


# --------------------------------------------------------------------------- explain


@command("explain", "explain a user's recommendations (seed step 4), or free-form input")
def add_explain(p, add):
    p.description = (
        "Explain a known user's recommendations (--user, or one --item), or free-form input "
        "(--history and --tags); each reason with its attention evidence."
    )
    p.epilog = (
        "examples:\n  minireason explain --prepared runs/demo/prepared --run runs/demo/run "
        "--user A1L7M2CLYO4S4R\n  minireason explain --run runs/demo/run "
        '--history "strings, tuner (4); pedal, patch cables" --tags "capo, guitar"'
    )
    add("--run", required=True, metavar="DIR", help="a run of 'minireason train'")
    add("--prepared", metavar="DIR", help="the run's prepared directory (with --user)")
    add("--user", help="a user id of the prepared data")
    add("--item", help="explain this item id (default: recommend first)")
    add("--history", help='free-form history: "term, term (rating); term" oldest first')
    add("--tags", help='free-form item tags: "tag, tag, ..."')
    add("-k", type=at_least(1), default=3, help="recommendations to explain")
    add("--seed", type=int, default=0)
    add("--plot", metavar="FILE.png", help="attention heatmap of the first reason")
    add("--html", metavar="FILE.html", help="a self-contained page: token attention, step 4")
    add("--show-candidates", action="store_true", help="print every step-4 candidate's score")
    _run_options(add, "reason")
    p.set_defaults(func=run_explain)


def _explain_run(args):
    """The run ``explain`` uses and how it chooses reasons (:func:`_settings`), once its
    inputs are checked: --user (with --prepared) or --history/--tags, not both."""
    if (args.user is None) == (args.history is None and args.tags is None):
        raise UserError("give either --user ID (with --prepared) or --history/--tags, not both")
    if args.user is not None and not args.prepared:
        raise UserError("--user needs --prepared DIR (the prepared directory of the run)")
    from minireason.train.run import load_run

    run = load_run(args.run, args.allow_unfinished)
    return run, _settings(run.info, args)


def run_explain(args) -> int:
    from minireason.reason import explain as ex
    from minireason.reason import explanations_page as report
    from minireason.reason.evidence import plot_evidence
    from minireason.train.run import check_same_data

    run, settings = _explain_run(args)
    chosen = (settings.decoding, settings.weights)
    print(run.describe() + f"; weights from {settings.weights_from}")
    if args.user is not None:
        from minireason.prep.prepared import load_prepared

        prepared = load_prepared(args.prepared)
        check_same_data(run.info, prepared, args.allow_other_data)
        recs = ex.explain_for_user(
            run, prepared, args.user, args.item, args.k, args.seed, None, *chosen
        )
        print(ex.format_user_report(prepared, args.user, recs, candidates=args.show_candidates))
        first = recs[0].explanation
        section = report.user_section(prepared, args.user, recs, run.tokenizer)
    else:
        first = ex.explain_free_form(run, args.history, args.tags, args.seed, *chosen)
        print(first.prompt_text + "\n" + ex.format_explanation(first, 3, args.show_candidates))
        section = report.free_form_section(args.history, args.tags, first, run.tokenizer)
    if args.plot:
        print(f"attention heatmap written to {plot_evidence(first, args.plot)}")
    if args.html:
        about = report.report_about(run, settings, args.seed)
        print(f"report written to {report.write_report(args.html, [section], about)}")
    return 0


# --------------------------------------------------------------------------- explain-all


@command("explain-all", "every user's top-k recommendations with reasons, on Dask, to Parquet")
def add_explain_all(p, add):
    from minireason.reason.catalogue import DEFAULT_CHUNK_SIZE
    from minireason.reason.recommend import RECOMMENDERS

    p.description = (
        "Recommend the top-k items to every user (or those of --users FILE) and explain each "
        "as 'explain' does, as Dask tasks of --chunk-size users on a local cluster (--workers) "
        "or an existing one (--scheduler). One Parquet file per chunk and a manifest in --out; "
        "the same command again resumes, skipping finished chunks. Needs the [scale] extra."
    )
    p.epilog = (
        "examples:\n  minireason explain-all --prepared runs/demo/prepared --run runs/demo/run "
        "--out runs/demo/catalogue --workers 2\n  minireason explain-all ... --scheduler "
        "tcp://HOST:8786   (workers started with: dask worker tcp://HOST:8786 --nthreads 1)"
    )
    add("--prepared", required=True, metavar="DIR", help="the run's prepared directory")
    add("--run", required=True, metavar="DIR", help="a run of 'minireason train'")
    add("--out", required=True, metavar="DIR", help="output directory (Parquet + manifest)")
    add("--users", default="all", metavar="all|FILE", help="every user, or a file of ids")
    add("--top-k", type=at_least(1), default=10, metavar="K", help="recommendations per user")
    add("--recommender", choices=list(RECOMMENDERS), default="hybrid", help="as evaluate's")
    add(
        "--chunk-size",
        type=at_least(1),
        default=DEFAULT_CHUNK_SIZE,
        metavar="N",
        help="users per task",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=at_least(1),
        metavar="N",
        help="local worker processes (default: one per core)",
    )
    where.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask cluster")
    add("--seed", type=int, default=0, help="base of every (user, item) seed")
    _run_options(add, "reason")
    p.set_defaults(func=run_explain_all)


def run_explain_all(args) -> int:
    from minireason.reason import catalogue
    from minireason.train.run import read_run_info

    options = pick(args, "users", "top_k", "recommender", "chunk_size", "seed", "workers")
    choice = _choice(read_run_info(args.run), args)
    try:
        summary = catalogue.explain_all(
            args.prepared,
            args.run,
            args.out,
            **choice,
            scheduler=args.scheduler,
            allow_other_data=args.allow_other_data,
            **options,
        )
    except ImportError as exc:
        raise UserError(str(exc)) from None
    print(catalogue.format_summary(summary))
    return 0 if summary.complete else 1


# --------------------------------------------------------------------------- data


@command("data", "public datasets: list them, fetch one into the cache")
def add_data(p, add):
    from minireason.data.fetch import FetchConfig

    p.description = "Known public datasets, downloaded from their canonical sources."
    actions = p.add_subparsers(dest="data_command", metavar="ACTION")
    fetch = actions.add_parser("fetch", formatter_class=_Help, help="download one into the cache")
    _declare(fetch, FetchConfig, run_data_fetch)
    listing = actions.add_parser("list", help="the known datasets, their files and sources")
    listing.description = (
        "The download cache, then each known dataset: its folder, what to cite, and each "
        "file's size and canonical URL."
    )
    listing.set_defaults(func=run_data_list)


def run_data_fetch(c) -> int:
    from minireason.data.fetch import FetchError, fetch

    try:
        folder = fetch(c.name, cache=c.cache, timeout=c.timeout)
    except FetchError as exc:
        raise UserError(str(exc)) from None
    print(f"{c.name}: ready in {folder}")
    return 0


def run_data_list(args) -> int:
    from minireason.data.fetch import describe_datasets

    print(describe_datasets())
    return 0


# --------------------------------------------------------------------------- bench


@command("bench", "benchmarks: measured speed (and focus hit rates), printed and as JSON")
def add_bench(p, add):
    p.description = "Benchmarks. Speed targets live here, never in timed tests."
    benches = p.add_subparsers(dest="bench_command", metavar="BENCH")
    for name, (help_, declare) in BENCHES.items():
        q = benches.add_parser(name, help=help_, formatter_class=_Help)
        declare(q, q.add_argument)


@stage(
    "train",
    "tokens/s and GFLOP/s of a training step, vs PyTorch eager",
    "minireason.bench.train:BenchTrainConfig",
    BENCHES,
)
def run_bench_train(c) -> int:
    from minireason.bench import train as bench_train

    options = pick(c, "steps", "warmup", "threads", "load")
    result = bench_train.run_train_benchmark(
        c.model_config(), c.batch_size, with_torch=not c.no_torch, **options
    )
    print(bench_train.format_report(result))
    if c.json:
        _write_json(c.json, result)
    return 0


@stage(
    "generate",
    "step-4 generation: NumPy against PyTorch with a KV cache",
    "minireason.bench.generate:BenchGenerateConfig",
    BENCHES,
)
def run_bench_generate(c) -> int:
    from minireason.bench import generate as bench_generate

    options = pick(c, "n_prompts", "prompt_len", "rounds", "threads", "load")
    result = bench_generate.run_generate_benchmark(
        c.model_config(), c.decoding(), with_torch=not c.no_torch, **options
    )
    print(bench_generate.format_report(result))
    if c.json:
        _write_json(c.json, result)
    return 0


@command("explain", "seconds to explain one (user, item)", BENCHES)
def add_bench_explain(p, add):
    p.description = (
        "Explain the first --pairs records of a split one at a time, as 'explain' does; "
        "median and 90th-percentile seconds per pair."
    )
    add("--run", required=True, metavar="DIR", help="a run of 'minireason train'")
    add("--prepared", required=True, metavar="DIR", help="the data it was trained on")
    add("--split", choices=["train", "valid", "test"], default="test")
    add("--pairs", type=at_least(1), default=20, help="timed pairs")
    add("--warmup", type=at_least(0), default=2, help="untimed pairs first")
    add("--seed", type=int, default=0)
    add("--threads", type=at_least(1), help="BLAS threads (default: as they are)")
    add(
        "--breakdown",
        action="store_true",
        help="also time each stage (prefill, decode steps and their products, choosing "
        "tokens, scoring, attention evidence) in a second pass",
    )
    add("--json", metavar="FILE", help="also write the figures as JSON")
    _run_options(add, "pair")
    p.set_defaults(func=run_bench_explain)


def run_bench_explain(args) -> int:
    from minireason.bench import explain as bench_explain
    from minireason.prep.prepared import load_prepared
    from minireason.train.run import check_same_data, load_run

    run, prepared = load_run(args.run, args.allow_unfinished), load_prepared(args.prepared)
    check_same_data(run.info, prepared, args.allow_other_data)
    options = pick(args, "split", "warmup", "seed", "threads", "breakdown")
    settings = _settings(run.info, args)
    result = bench_explain.run_bench_explain(
        run,
        prepared,
        n_pairs=args.pairs,
        decoding=settings.decoding,
        weights=settings.weights,
        **options,
    )
    print(bench_explain.format_report(result))
    if args.json:
        _write_json(args.json, result)
    return 0


@command("explain-all", "reasons/s of explain-all with 1 and 2 local workers", BENCHES)
def add_bench_explain_all(p, add):
    p.description = (
        "Run explain-all on the first --users users, once per worker count, each into a "
        "temporary directory; reasons per second, per-worker-process rate, start-up time, and "
        "whether every run wrote the same rows."
    )
    add("--run", required=True, metavar="DIR", help="a run of 'minireason train'")
    add("--prepared", required=True, metavar="DIR", help="the data it was trained on")
    add("--users", type=at_least(1), default=40, metavar="N", help="the first N users")
    add("--top-k", type=at_least(1), default=3, metavar="K", help="recommendations per user")
    add("--chunk-size", type=at_least(1), default=2, metavar="N", help="users per task")
    add("--workers", type=at_least(1), nargs="+", default=[1, 2], metavar="N", help="counts")
    add("--seed", type=int, default=0)
    add("--json", metavar="FILE", help="also write the figures as JSON")
    _run_options(add, "reason")
    p.set_defaults(func=run_bench_explain_all)


def run_bench_explain_all(args) -> int:
    from minireason.bench import catalogue as bench_catalogue
    from minireason.train.run import read_run_info

    options = pick(args, "top_k", "chunk_size", "seed", "allow_other_data")
    try:
        result = bench_catalogue.run_bench_explain_all(
            args.prepared,
            args.run,
            n_users=args.users,
            worker_counts=args.workers,
            settings=_settings(read_run_info(args.run), args),
            **options,
        )
    except ImportError as exc:
        raise UserError(str(exc)) from None
    print(bench_catalogue.format_report(result))
    if args.json:
        _write_json(args.json, result)
    return 0 if result["same_rows"] else 1


@stage(
    "kernels",
    "TFLOP/s of the CUDA attention kernels on a GPU",
    "minireason.bench.kernels:KernelBenchConfig",
    BENCHES,
)
def run_bench_kernels(c) -> int:
    from minireason.bench import kernels

    shape = pick(c, "seq_lens", "batch", "heads", "head_dim", "warmup", "max_runs")
    timing = pick(c, "budget_s", "time_limit_s")
    result = kernels.run_kernel_bench(with_torch=not c.no_torch, **shape, **timing)
    print(kernels.format_table(result))
    for path in kernels.write_outputs(result, c.out_dir, c.json):
        print(f"written: {path}")
    return 0 if all(r["valid"] for r in result["results"]) else 1


@stage(
    "focus",
    "hit@1 and hit@3 of the learned focus predictor and the hand-made one",
    "minireason.prep.focus:FocusBenchConfig",
    BENCHES,
)
def run_bench_focus(c) -> int:
    from minireason.prep import focus
    from minireason.prep.prepared import load_prepared

    result = focus.compare(load_prepared(c.prepared), c.split)
    print(focus.format_comparison(result))
    if c.json:
        _write_json(c.json, result)
    return 0


# --------------------------------------------------------------------------- grade


@stage(
    "grade",
    "autograde a course assignment: one file, a folder of them, or a Gradescope kit",
    "minireason.course.grading:GradeConfig",
)
def run_grade(c) -> int:
    from pathlib import Path

    from minireason.course import batch, gradescope, grading
    from minireason.course.sandbox import Limits

    if c.gradescope_kit:
        path, source = gradescope.build_kit(c.assignment, c.gradescope_kit, c.seed)
        print(f"Gradescope kit written to {path} (course seed: {source}); keep it private")
        return 0
    if not c.path:
        raise UserError("PATH is required: a .py file or a folder of submissions")
    common = dict(seed=c.seed, timeout=c.timeout, limits=Limits(memory_mb=c.memory))
    if Path(c.path).is_dir() and not c.gradescope:
        summary = batch.grade_folder(c.assignment, c.path, c.out, c.csv, c.jobs, **common)
        print(summary.text())
        return 0
    grade = gradescope.grade_submission if c.gradescope else grading.grade
    report = grade(c.assignment, c.path, **common)
    print(report.table())
    print(f"\nresults written to {report.write_results(c.results)}")
    return 0


# --------------------------------------------------------------------------- main


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser. With ``argv``, only the command it names has its options declared (the
    others are listed by name and help); without, every command's are."""
    from minireason import __version__
    from minireason.backend import DEVICES

    about = "Recommendation reasons from a from-scratch GPT; 'COMMAND --help' for each command."
    parser = _Parser(prog="minireason", description=about)
    parser.add_argument("--version", action="version", version=f"minireason {__version__}")
    device_help = "cpu (NumPy) or cuda (CuPy); default: $MINIREASON_DEVICE or cpu"
    parser.add_argument("--device", choices=DEVICES, help=device_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = None if argv is None else next((a for a in argv if a in COMMANDS), None)
    for name, (help_, declare) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, formatter_class=_Help)
        p.set_defaults(func=lambda args, p=p: (p.print_help(), 2)[1])  # a group's bare name
        if argv is None or name == chosen:
            declare(p, p.add_argument)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser(argv).parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        build_parser([]).print_help()
        return 2
    try:
        if args.device:
            from minireason import backend

            try:
                backend.set_device(args.device)
            except backend.BackendError as exc:
                raise UserError(str(exc)) from exc
        return int(args.func(args) or 0)
    except (UserError, ValueError, OSError) as exc:
        if os.environ.get("MINIREASON_DEBUG") or isinstance(exc, BrokenPipeError):
            raise
        print(f"minireason {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"minireason {args.command}: interrupted", file=sys.stderr)
        return 130


def run() -> int:
    """The console-script entry point: :func:`main`, quiet when the output pipe closes."""
    try:
        return main()
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(run())
