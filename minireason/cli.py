"""The ``minireason`` command line: one thin entry point per command, in ``--help`` order.

Each command is a row of :data:`COMMANDS`: its name, a one-line help, a function that
declares its options and a handler of a few lines that calls the package. Only the chosen
command's options are declared (they import their stage for its defaults), so every
command starts fast. Errors the user can fix (bad paths, input or options) are raised as
:class:`UserError`, ValueError or OSError and printed as one line naming what is wrong,
never as a traceback (``MINIREASON_DEBUG=1`` shows it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys


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


def at_least(low, kind=int):
    """An argparse ``type``: a ``kind`` (int or float) ``>= low``; argparse names the option
    in its one-line error."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if not value >= low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text}")
        return value

    return parse


seconds = at_least(0.001, float)


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


# --------------------------------------------------------------------------- demo


@command("demo", "the whole job: prepare, train the tiny preset, explain, evaluate")
def add_demo(p, add):
    p.description = (
        "Find the Musical Instruments reviews (downloading them into the cache if absent), "
        "prepare them, train the tiny preset, explain the top-3 recommendations of three test "
        "users, then evaluate. A second run reuses the first's work; an interrupted one resumes."
    )
    add("--data-dir", metavar="DIR", help="where the datasets are")
    add("--offline", action="store_true", help="never download; stop if the data is absent")
    add("--out", default="runs/demo", metavar="DIR", help="output directory")
    add("--preset", default="tiny", help="preset name or JSON file")
    add("--users", type=at_least(1), default=3, help="test users shown")
    add("--eval-limit", type=at_least(2), metavar="N", help="evaluate the first N records only")
    add("--seed", type=int, default=0)
    p.set_defaults(func=run_demo)


def run_demo(args) -> int:
    from minireason.demo import run_demo

    options = pick(args, "data_dir", "out", "preset", "eval_limit", "seed", "offline")
    run_demo(n_users=args.users, **options)
    return 0


# --------------------------------------------------------------------------- attention-example


@command("attention-example", "the seed document's worked attention example, with errata")
def add_attention_example(p, add):
    p.description = (
        "The eight-word example of the seed document's section 4.3: one query and full "
        "self-attention, with and without 1/sqrt(d_k), beside what the document printed."
    )
    add("--plot", metavar="FILE.png", help="save a labelled heatmap of the weights")
    add("--decimals", type=at_least(0), default=4, help="digits after the point")
    p.set_defaults(func=run_attention_example)


def run_attention_example(args) -> int:
    from minireason.course import worked_example

    print(worked_example.report(decimals=args.decimals))
    if args.plot:
        print(f"\nheatmap written to {worked_example.plot(args.plot)}")
    return 0


# --------------------------------------------------------------------------- prepare


@command("prepare", "seed steps 1-3: reviews in, a prepared directory out")
def add_prepare(p, add):
    from minireason.prep.prepare import FORMATS, SPLIT_KINDS
    from minireason.prep.prepare import PrepareConfig as D

    p.description = (
        "Load, validate, clean and split reviews, mine aspects, pick explanation targets, build "
        "prompts and a BPE tokenizer; write a prepared directory with report.md. Relative "
        "input paths are also looked up under $MINIREASON_DATA_DIR."
    )
    add("--reviews", required=True, metavar="FILE", help="reviews file (movielens: the folder)")
    add("--meta", metavar="FILE", help="Amazon item metadata (2014 or 2018)")
    add("--format", default=D.format, choices=FORMATS, help="input format")
    add("--columns", metavar="MAP", help="jsonl/csv: user=COL,item=COL,rating=COL,time=COL,...")
    add("--out", required=True, metavar="DIR", help="the prepared directory to write")
    add("--split", default=D.split, choices=SPLIT_KINDS, help="leave-last-out or seeded 8:1:1")
    add("--seed", type=int, default=D.seed, help="seed of the random split")
    add("--kcore", type=at_least(0), default=D.kcore, metavar="K", help="K-core filter (0: off)")
    add("--vocab-size", type=at_least(1), default=D.vocab_size, help="BPE vocabulary size")
    add("--n-unigrams", type=at_least(0), default=D.n_unigrams, help="one-word aspects kept")
    add("--n-bigrams", type=at_least(0), default=D.n_bigrams, help="two-word aspects kept")
    add("--min-df", type=at_least(1), default=D.min_df, help="reviews an aspect must be in")
    add("--max-history", type=at_least(1), default=D.max_history, help="past items kept")
    add("--context", type=at_least(1), default=D.context, help="tokens per fine-tuning sequence")
    add("--prompt-tokens", type=at_least(2), default=D.prompt_tokens, help="prompt budget")
    add("--focus", type=at_least(0), default=D.focus, metavar="K", help="focus aspects (0: none)")
    add(
        "--evidence",
        type=at_least(0),
        default=D.evidence,
        metavar="K",
        help="sentences of other users' reviews per prompt (0: none)",
    )
    add(
        "--evidence-tokens",
        type=at_least(4),
        default=D.evidence_tokens,
        metavar="N",
        help="longest evidence sentence, in prompt tokens",
    )
    add("--strict", action="store_true", help="stop at the first malformed line")
    p.set_defaults(func=run_prepare)


def run_prepare(args) -> int:
    from dataclasses import fields

    from minireason.data.accounting import DataError
    from minireason.data.fetch import resolve_input
    from minireason.data.generic import parse_columns
    from minireason.prep.prepare import PrepareConfig, prepare, summary

    given = {f.name: getattr(args, f.name) for f in fields(PrepareConfig) if hasattr(args, f.name)}
    given["reviews"] = resolve_input("--reviews", args.reviews)
    given["meta"] = resolve_input("--meta", args.meta)
    given["columns"] = parse_columns(args.columns) if args.columns else None
    try:
        report = prepare(PrepareConfig(**given))
    except DataError as exc:
        raise UserError(f"--strict: {exc}") from None
    print(summary(report, args.out))
    return 0


# --------------------------------------------------------------------------- train


@command("train", "pretrain on review sentences, then fine-tune on prompt -> reason")
def add_train(p, add):
    p.description = (
        "Pretrain on every training sentence, then fine-tune to write the reason after a "
        "prompt (loss on the reason only). Checkpoints as it goes; --resume continues exactly."
    )
    add("--prepared", required=True, metavar="DIR", help="from 'minireason prepare'")
    add("--preset", default="tiny", metavar="NAME|FILE", help="tiny, small or a JSON file")
    add("--out", metavar="DIR", help="run directory (default: runs/PRESET)")
    add("--resume", action="store_true", help="continue the checkpoints in --out")
    p.set_defaults(func=run_train)


def run_train(args) -> int:
    from minireason.train.recipe import load_preset, run_recipe, summary

    out = args.out or os.path.join("runs", os.path.splitext(os.path.basename(args.preset))[0])
    report = run_recipe(args.prepared, load_preset(args.preset), out, resume=args.resume)
    print(summary(report, args.prepared, out))
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
    p.description = "Known public datasets, downloaded from their canonical sources."
    actions = p.add_subparsers(dest="data_command", metavar="ACTION")
    fetch = actions.add_parser("fetch", formatter_class=_Help, help="download one into the cache")
    fetch.description = "Download with resume (HTTP Range), then check the size and SHA-256."
    fetch.add_argument("name", help="dataset name (see 'minireason data list')")
    fetch.add_argument("--cache", metavar="DIR", help="default: $MINIREASON_CACHE or ~/.cache")
    fetch.add_argument("--timeout", type=seconds, default=30.0, help="seconds")
    fetch.set_defaults(func=run_data_fetch)
    listing = actions.add_parser("list", help="the known datasets, their files and sources")
    listing.set_defaults(func=run_data_list)


def run_data_fetch(args) -> int:
    from minireason.data.fetch import FetchError, fetch

    try:
        folder = fetch(args.name, cache=args.cache, timeout=args.timeout)
    except FetchError as exc:
        raise UserError(str(exc)) from None
    print(f"{args.name}: ready in {folder}")
    return 0


def run_data_list(args) -> int:
    from minireason.data.fetch import describe_datasets

    print(describe_datasets())
    return 0


# --------------------------------------------------------------------------- bench


@command("bench", "benchmarks: measured speed, printed and written as JSON")
def add_bench(p, add):
    p.description = "Benchmarks. Speed targets live here, never in timed tests."
    benches = p.add_subparsers(dest="bench_command", metavar="BENCH")
    for name, (help_, declare) in BENCHES.items():
        q = benches.add_parser(name, help=help_, formatter_class=_Help)
        declare(q, q.add_argument)


@command("train", "tokens/s and GFLOP/s of a training step, vs PyTorch eager", BENCHES)
def add_bench_train(p, add):
    from minireason.bench.train import REFERENCE_BATCH
    from minireason.nn.model import GPTConfig as D

    p.description = (
        "One training step (forward, backward, AdamW) of the NumPy GPT, the machine's float32 "
        "matmul rate, and the same model in PyTorch eager on the same threads and inputs."
    )
    for name in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size"):
        add("--" + name.replace("_", "-"), type=at_least(1), default=getattr(D, name), help=name)
    add("--batch-size", type=at_least(1), default=REFERENCE_BATCH, help="sequences per step")
    add("--dtype", choices=["float32", "float64"], default=D.dtype, help="array dtype")
    add("--steps", type=at_least(1), default=10, help="timed steps")
    add("--warmup", type=at_least(0), default=2, help="untimed steps first")
    add("--threads", type=at_least(1), help="threads of both systems (default: all cores)")
    add("--load", type=at_least(0), default=0, metavar="N", help="busy processes meanwhile")
    add("--no-torch", action="store_true", help="skip the PyTorch comparison")
    add("--json", metavar="FILE", help="also write the figures as JSON")
    p.set_defaults(func=run_bench_train)


def run_bench_train(args) -> int:
    from minireason.bench import train as bench_train
    from minireason.nn.model import GPTConfig

    config = GPTConfig(
        **pick(args, "vocab_size", "block_size", "n_layer", "n_head", "n_embd"), dtype=args.dtype
    )
    options = pick(args, "steps", "warmup", "threads", "load")
    result = bench_train.run_train_benchmark(
        config, args.batch_size, with_torch=not args.no_torch, **options
    )
    print(bench_train.format_report(result))
    if args.json:
        _write_json(args.json, result)
    return 0


@command("generate", "step-4 generation: NumPy against PyTorch with a KV cache", BENCHES)
def add_bench_generate(p, add):
    p.description = (
        "Sample N candidates per prompt with the KV cache, NumPy against the same model in "
        "PyTorch eager (same weights, prompts and sampling; no early stop): one "
        "explanation's latency and reasons per second for a batch of prompts."
    )
    add("--preset", default="small", metavar="NAME|FILE", help="the model shape to time")
    add("--prompts", type=at_least(1), default=8, help="prompts in the throughput batch")
    add("--prompt-len", type=at_least(1), default=56, help="tokens per prompt")
    add("--rounds", type=at_least(1), default=5, help="timed rounds")
    add("--threads", type=at_least(1), help="threads of both systems (default: all cores)")
    add("--load", type=at_least(0), default=0, metavar="N", help="busy processes meanwhile")
    add("--no-torch", action="store_true", help="skip the PyTorch comparison")
    add("--json", metavar="FILE", help="also write the figures as JSON")
    add("--candidates", type=at_least(1), default=16, metavar="N", help="samples per prompt")
    add("--max-new-tokens", type=at_least(1), default=40, metavar="N", help="tokens per sample")
    p.set_defaults(func=run_bench_generate)


def run_bench_generate(args) -> int:
    from minireason.bench import generate as bench_generate
    from minireason.nn.model import GPTConfig
    from minireason.train.recipe import load_preset
    from minireason.train.run import Decoding

    config = GPTConfig(**load_preset(args.preset)["model"])
    decoding = Decoding(n_candidates=args.candidates, max_new_tokens=args.max_new_tokens)
    options = pick(args, "prompt_len", "rounds", "threads", "load")
    result = bench_generate.run_generate_benchmark(
        config, decoding, n_prompts=args.prompts, with_torch=not args.no_torch, **options
    )
    print(bench_generate.format_report(result))
    if args.json:
        _write_json(args.json, result)
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


@command("kernels", "TFLOP/s of the CUDA attention kernels on a GPU", BENCHES)
def add_bench_kernels(p, add):
    p.description = (
        "Validate each CUDA attention kernel against the NumPy reference, then time it with "
        "CUDA events at every T, causal and not; writes kernel_bench.md and .png. Needs a GPU."
    )
    add("--seq-lens", type=at_least(1), nargs="+", default=[256, 1024, 4096], metavar="T")
    add("--batch", type=at_least(1), default=8, help="batch size B")
    add("--heads", type=at_least(1), default=12, help="heads H")
    add("--head-dim", type=at_least(1), default=64, help="head_dim D")
    add("--warmup", type=at_least(1), default=3, help="untimed runs first")
    add("--max-runs", type=at_least(1), default=50, help="timed runs at most")
    add("--budget", type=seconds, default=2.0, help="seconds of timed runs, after 5")
    add("--no-torch", action="store_true", help="skip torch's scaled_dot_product_attention")
    add("--time-limit", type=seconds, metavar="S", help="no new (T, causal) after S s")
    add("--out-dir", default=".", help="folder for kernel_bench.md and .png")
    add("--json", metavar="FILE", help="also write the figures as JSON")
    p.set_defaults(func=run_bench_kernels)


def run_bench_kernels(args) -> int:
    from minireason.bench import kernels

    options = pick(args, "seq_lens", "batch", "heads", "head_dim", "warmup", "max_runs")
    result = kernels.run_kernel_bench(
        budget_s=args.budget, with_torch=not args.no_torch, time_limit_s=args.time_limit, **options
    )
    print(kernels.format_table(result))
    for path in kernels.write_outputs(result, args.out_dir, args.json):
        print(f"written: {path}")
    return 0 if all(r["valid"] for r in result["results"]) else 1


# --------------------------------------------------------------------------- grade


@command("grade", "autograde a course assignment: one file, a folder of them, or a Gradescope kit")
def add_grade(p, add):
    p.description = (
        "Run an assignment's weighted tests against a student's file, each test in a sandboxed "
        "process that returns outputs only (the grader compares); a crash, a time-out or a "
        "missing function costs its tests only. PATH is a .py file (score table and "
        "results.json), a folder of submissions (--jobs, --csv, --out), or with --gradescope "
        "one Gradescope submission folder. --gradescope-kit writes the autograder zip."
    )
    add("assignment", help="assignment name, e.g. A1")
    add("path", nargs="?", metavar="PATH", help="a .py file, or a folder of submissions")
    add("--results", metavar="FILE.json", default="results.json", help="Gradescope results")
    add("--seed", metavar="TEXT", help="course seed (default: $MINIREASON_GRADE_SEED)")
    add("--timeout", type=seconds, default=10.0, metavar="S", help="seconds per test")
    add("--memory", type=at_least(64), default=1024, metavar="MB", help="memory per test")
    add("--jobs", type=at_least(1), default=1, metavar="N", help="submissions graded at once")
    add("--csv", metavar="FILE.csv", help="a folder's grades, one row per student")
    add("--out", metavar="DIR", help="a folder's per-student results (default: grades/)")
    add("--gradescope", action="store_true", help="PATH is one Gradescope submission folder")
    add("--gradescope-kit", metavar="OUT.zip", help="write the Gradescope autograder kit")
    p.set_defaults(func=run_grade)


def run_grade(args) -> int:
    from pathlib import Path

    from minireason.course import batch, gradescope, grading
    from minireason.course.sandbox import Limits

    if args.gradescope_kit:
        path, source = gradescope.build_kit(args.assignment, args.gradescope_kit, args.seed)
        print(f"Gradescope kit written to {path} (course seed: {source}); keep it private")
        return 0
    if not args.path:
        raise UserError("PATH is required: a .py file or a folder of submissions")
    limits = Limits(memory_mb=args.memory)
    if Path(args.path).is_dir() and not args.gradescope:
        summary = batch.grade_folder(
            args.assignment, args.path, args.out or "grades", args.csv, args.jobs, args.seed,
            args.timeout, limits,
        )  # fmt: skip
        print(summary.text())
        return 0
    grade = gradescope.grade_submission if args.gradescope else grading.grade
    report = grade(args.assignment, args.path, args.seed, args.timeout, limits)
    print(report.table())
    print(f"\nresults written to {report.write_results(args.results)}")
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
