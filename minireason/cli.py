"""The ``minireason`` command line: one thin entry point per command, in ``--help`` order.

Each command is a row of :data:`COMMANDS`: its name, a one-line help, a function that
declares its options and a handler of a few lines that calls the package. A command's
options are declared once, beside its stage, as the fields of a config dataclass
(:mod:`minireason.options`); :func:`stage` registers such a command, and its handler gets
the config built from the command line. Only the chosen command's stage is imported. An
error the user can fix (:class:`UserError`, ValueError, OSError) and a Ctrl-C are one line
on stderr, never a traceback (``MINIREASON_DEBUG=1`` shows an error's).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys

from minireason.files import HTML_PAGE, PNG_FIGURE, check_output
from minireason.options import add_options, from_args
from minireason.text import inert


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
        fill, lines = super()._fill_text, text.splitlines()
        return "\n".join(indent + x if x.startswith(" ") else fill(x, width, indent) for x in lines)

    def _get_help_string(self, action):
        text = action.help or ""
        shown = not any(action.default is v for v in (None, False, argparse.SUPPRESS))
        if shown and action.option_strings and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


COMMANDS: dict = {}  # name -> (one-line help, declare), in --help order
BENCHES: dict = {}  # the same for 'minireason bench NAME'


def group(name: str, help_: str, table: dict, metavar: str, description: str) -> None:
    """Register command ``name``, a group of the subcommands registered in ``table``."""

    def declare(p, add):
        p.description = description
        sub = p.add_subparsers(dest=f"{name}_command", metavar=metavar)
        for sub_name, (sub_help, sub_declare) in table.items():
            q = sub.add_parser(sub_name, help=sub_help, formatter_class=_Help)
            sub_declare(q, q.add_argument)

    COMMANDS[name] = (help_, declare)


def pick(args, *names: str) -> dict:
    """``{name: args.name}`` for the given option names (keyword arguments of a call)."""
    return {name: getattr(args, name) for name in names}


def _check_outputs(c, inputs, **kinds) -> None:
    """Refuse, before any work, each output option of the config ``c`` that was given and
    that the command may not write (:func:`minireason.files.check_output`): ``html=HTML_PAGE``
    checks ``c.html`` as ``--html`` against ``inputs``, the paths the command reads."""
    for name, kind in kinds.items():
        if getattr(c, name):
            check_output(getattr(c, name), "--" + name.replace("_", "-"), kind, inputs)


def _check_json(c, *inputs) -> None:
    """:func:`_check_outputs` of a benchmark's ``--json`` (figures minireason wrote)."""
    from minireason.bench.machine import FIGURES

    _check_outputs(c, inputs, json=FIGURES)


def _show(text: str, result: dict, json_path) -> None:
    """Print a benchmark's report; write its figures as JSON too when ``json_path`` is given
    (checked first by :func:`_check_json`)."""
    from minireason.bench.machine import write_figures

    print(text)
    if json_path:
        print(f"figures written to {write_figures(json_path, result)}")


def _declare(p, config: type, handler) -> None:
    """Give parser ``p`` the description and options of the config class ``config``, and a
    ``func`` that calls ``handler`` with the config built from the parsed arguments."""
    p.description = config.description
    p.epilog = getattr(config, "epilog", None)
    add_options(p, config)
    p.set_defaults(func=lambda args: handler(from_args(config, args)))


def stage(name: str, config: str, table: dict = COMMANDS):
    """Register the decorated handler as command ``name`` (in ``table``), its docstring the
    one-line help: its description and options are those of ``config``, a config class named
    ``"module:Class"`` under ``minireason.``, imported only when the command is declared; the
    handler gets the config built from the command line."""

    def register(handler):
        def declare(p, add):
            module, _, cls = config.partition(":")
            _declare(p, getattr(importlib.import_module("minireason." + module), cls), handler)

        table[name] = (handler.__doc__, declare)
        return handler

    return register


# --------------------------------------------------------------------------- the commands, in --help order


@stage("demo", "demo:DemoConfig")
def run_demo(c) -> int:
    """the whole job: prepare, train the tiny preset, explain, evaluate"""
    from dataclasses import asdict

    from minireason.demo import run_demo

    run_demo(**asdict(c))
    return 0


@stage("attention-example", "course.worked_example:ExampleConfig")
def run_attention_example(c) -> int:
    """the seed document's worked attention example, with errata"""
    from minireason.course import worked_example

    _check_outputs(c, (), plot=PNG_FIGURE)
    print(worked_example.report(decimals=c.decimals))
    if c.plot:
        print(f"\nheatmap written to {worked_example.plot(c.plot)}")
    return 0


@stage("prepare", "prep.prepare:PrepareConfig")
def run_prepare(c) -> int:
    """seed steps 1-3: reviews in, a prepared directory out"""
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


@stage("train", "train.recipe:RecipeConfig")
def run_train(c) -> int:
    """pretrain on review sentences, then fine-tune on prompt -> reason"""
    from minireason.train.recipe import load_preset, run_recipe, summary

    preset = load_preset(c.preset, c.overrides)
    report = run_recipe(c.prepared, preset, c.run_dir, resume=c.resume)
    print(summary(report, c.prepared, c.run_dir))
    return 0


@stage("evaluate", "evaluation.evaluate:EvaluateConfig")
def run_evaluate(c) -> int:
    """explanation metrics against four baselines; HR/NDCG@10"""
    from minireason.evaluation.evaluate import evaluate_run
    from minireason.evaluation.render import OUTPUT_FILES, markdown_report
    from minireason.train.run import read_run_info

    options = pick(c, "limit", "batch_size", "seed", "decode", "split", "focus_from")
    checks = pick(c, "allow_other_data", "allow_unfinished")
    choice = c.choice(read_run_info(c.run))
    result = evaluate_run(c.prepared, c.run, c.out, **choice, **options, **checks)
    print(markdown_report(result))
    print(f"written to {c.out or os.path.join(c.run, 'eval')}: {', '.join(OUTPUT_FILES)}")
    return 0


@stage("tune", "evaluation.tuning:TuneConfig")
def run_tune(c) -> int:
    """choose the score's weights on the validation split, into a weights file"""
    from minireason.evaluation.readers import fit_to_ratings, format_fitted
    from minireason.evaluation.tuning import adopt_hint, format_tuned, tune

    if c.labels and c.limit is not None:
        raise UserError("--limit: not with --labels (the rating sheet decides the records)")
    if c.labels:
        result = fit_to_ratings(
            c.prepared, c.run, list(c.labels), c.out, c.sense_weight, c.length_bonus
        )
        print(format_fitted(result))
        limit = result["chosen_on"]["n_records"]
    else:
        result = tune(c.prepared, c.run, c.out, c.limit, seed=c.seed, passes=c.passes)
        print(format_tuned(result))
        limit = c.limit
    print(adopt_hint(c.prepared, c.run, c.out, limit))
    return 0


@stage("rating-sheet", "evaluation.readers:RatingSheetConfig")
def run_rating_sheet(c) -> int:
    """write validation candidates for readers to rate (for tune --labels)"""
    from minireason.evaluation.readers import write_sheet

    rows, records = write_sheet(c.prepared, c.run, c.out, c.limit, c.seed)
    print(
        f"written to {c.out}: {rows} candidates of {records} validation records; each reader "
        "fills in fluency, specific and sense (1-5) in a copy of it, then: minireason tune "
        f"--prepared {c.prepared} --run {c.run} --labels COPY1 --labels COPY2 --out W.json"
    )
    return 0


@stage("explain", "reason.explain:ExplainConfig")
def run_explain(c) -> int:
    """explain a user's recommendations, or free-form input"""
    from minireason.reason import explain as ex
    from minireason.reason import explanations_page as page
    from minireason.reason.evidence import plot_evidence
    from minireason.train.run import load_run

    _check_outputs(c, (c.run, c.prepared, c.weights), plot=PNG_FIGURE, html=HTML_PAGE)
    run = load_run(c.run, c.allow_unfinished)
    settings = c.settings(run.info)
    chosen = (settings.decoding, settings.weights)
    print(run.describe() + f"; weights from {settings.weights_from}")
    if c.user is not None:
        prepared = _prepared_for(run, c)
        recs = ex.explain_for_user(run, prepared, c.user, c.item, c.k, c.seed, None, *chosen)
        print(ex.format_user_report(prepared, c.user, recs, candidates=c.show_candidates))
        first = recs[0].explanation
        section = page.user_section(prepared, c.user, recs, run.tokenizer)
    else:
        first = ex.explain_free_form(run, c.history, c.tags, c.seed, *chosen)
        print(first.prompt_text + "\n" + ex.format_explanation(first, 3, c.show_candidates))
        section = page.free_form_section(c.history, c.tags, first, run.tokenizer)
    if c.plot:
        print(f"attention heatmap written to {plot_evidence(first, c.plot)}")
    if c.html:
        about = page.report_about(run, settings, c.seed)
        print(f"report written to {page.write_report(c.html, [section], about)}")
    return 0


def _prepared_for(run, c):
    """The prepared directory of ``c.prepared``, refused unless it is the run's data (or
    ``--allow-other-data``)."""
    from minireason.prep.prepared import load_prepared
    from minireason.train.run import check_same_data

    prepared = load_prepared(c.prepared)
    check_same_data(run.info, prepared, c.allow_other_data)
    return prepared


@stage("explain-all", "reason.catalogue:ExplainAllConfig")
def run_explain_all(c) -> int:
    """every user's top-k recommendations with reasons, on Dask, to Parquet"""
    from minireason.reason import catalogue
    from minireason.train.run import read_run_info

    options = pick(c, "users", "top_k", "recommender", "chunk_size", "seed", "workers")
    options |= pick(c, "scheduler", "allow_other_data")
    try:
        summary = catalogue.explain_all(
            c.prepared, c.run, c.out, **c.choice(read_run_info(c.run)), **options
        )
    except ImportError as exc:
        raise UserError(str(exc)) from None
    print(catalogue.format_summary(summary))
    return 0 if summary.complete else 1


DATA: dict = {}  # 'minireason data NAME'
group("data", "public datasets: list them, fetch one into the cache", DATA, "ACTION",
      "Known public datasets, downloaded from their canonical sources.")  # fmt: skip


@stage("list", "data.fetch:ListConfig", DATA)
def run_data_list(c) -> int:
    """the known datasets, their files and sources"""
    from minireason.data.fetch import describe_datasets

    print(describe_datasets())
    return 0


@stage("fetch", "data.fetch:FetchConfig", DATA)
def run_data_fetch(c) -> int:
    """download one into the cache"""
    from minireason.data.fetch import fetch

    folder = fetch(c.name, cache=c.cache, timeout=c.timeout)
    print(f"{c.name}: ready in {folder}")
    return 0


group("bench", "benchmarks: measured speed (and focus hit rates), printed and as JSON", BENCHES,
      "BENCH", "Benchmarks. Speed targets live here, never in timed tests.")  # fmt: skip


@stage("train", "bench.train:BenchTrainConfig", BENCHES)
def run_bench_train(c) -> int:
    """tokens/s and GFLOP/s of a training step, vs PyTorch eager"""
    from minireason.bench import train as bench_train

    _check_json(c)
    options = pick(c, "steps", "warmup", "threads", "load", "plan", "scaling")
    result = bench_train.run_train_benchmark(
        c.model_config(), c.batch_size, with_torch=not c.no_torch, **options
    )
    _show(bench_train.format_report(result), result, c.json)
    return 0


@stage("calibrate", "bench.calibrate:BenchCalibrateConfig", BENCHES)
def run_bench_calibrate(c) -> int:
    """measure the thread plans for a model shape; cache the fastest"""
    from minireason.bench import calibrate as bench_calibrate

    _check_json(c)
    result = bench_calibrate.run_calibrate(c.model_config(), c.batch_size)
    _show(bench_calibrate.format_report(result), result, c.json)
    return 0


@stage("generate", "bench.generate:BenchGenerateConfig", BENCHES)
def run_bench_generate(c) -> int:
    """step-4 generation: NumPy against PyTorch with a KV cache"""
    from minireason.bench import generate as bench_generate

    _check_json(c, c.preset)
    options = pick(c, "n_prompts", "prompt_len", "rounds", "threads", "load", "plan")
    result = bench_generate.run_generate_benchmark(
        c.model_config(),
        c.decoding(),
        with_torch=not c.no_torch,
        train_shape=c.train_shape(),
        **options,
    )
    _show(bench_generate.format_report(result), result, c.json)
    return 0


@stage("explain", "bench.explain:BenchExplainConfig", BENCHES)
def run_bench_explain(c) -> int:
    """seconds to explain one (user, item)"""
    from minireason.bench import explain as bench_explain
    from minireason.train.run import load_run

    _check_json(c, c.run, c.prepared, c.weights)
    run = load_run(c.run, c.allow_unfinished)
    prepared, settings = _prepared_for(run, c), c.settings(run.info)
    options = pick(c, "split", "warmup", "seed", "threads", "breakdown")
    result = bench_explain.run_bench_explain(
        run, prepared, c.pairs, settings.decoding, settings.weights, **options
    )
    _show(bench_explain.format_report(result), result, c.json)
    return 0


@stage("explain-all", "bench.catalogue:BenchExplainAllConfig", BENCHES)
def run_bench_explain_all(c) -> int:
    """reasons/s of explain-all with 1 and 2 local workers"""
    from minireason.bench import catalogue as bench_catalogue
    from minireason.train.run import read_run_info

    _check_json(c, c.run, c.prepared, c.weights)
    options = pick(c, "top_k", "chunk_size", "seed", "allow_other_data")
    settings = c.settings(read_run_info(c.run))
    try:
        result = bench_catalogue.run_bench_explain_all(
            c.prepared, c.run, c.users, worker_counts=c.workers, settings=settings, **options
        )
    except ImportError as exc:
        raise UserError(str(exc)) from None
    _show(bench_catalogue.format_report(result), result, c.json)
    return 0 if result["same_rows"] else 1


@stage("kernels", "bench.kernels:KernelBenchConfig", BENCHES)
def run_bench_kernels(c) -> int:
    """TFLOP/s of the CUDA attention kernels on a GPU"""
    from minireason.bench import kernels

    _check_json(c)
    kernels.check_outputs(c.out_dir)
    shape = pick(c, "seq_lens", "batch", "heads", "head_dim", "warmup", "max_runs")
    timing = pick(c, "budget_s", "time_limit_s")
    result = kernels.run_kernel_bench(with_torch=not c.no_torch, **shape, **timing)
    print(kernels.format_table(result))
    for path in kernels.write_outputs(result, c.out_dir, c.json):
        print(f"written: {path}")
    return 0 if all(r["valid"] for r in result["results"]) else 1


@stage("gpu-train", "bench.gpu_train:GpuTrainBenchConfig", BENCHES)
def run_bench_gpu_train(c) -> int:
    """ms per training step on the GPU by choice of kernels, vs PyTorch CUDA eager"""
    from minireason.bench import gpu_train

    _check_json(c)
    gpu_train.check_outputs(c.out_dir)
    result = gpu_train.run_gpu_train_bench(c.configs, c.steps, c.warmup, not c.no_torch)
    print(gpu_train.format_table(result))
    for path in gpu_train.write_outputs(result, c.out_dir, c.json):
        print(f"written: {path}")
    return 0 if all("error" not in r for r in result["results"]) else 1


@stage("focus", "prep.focus:FocusBenchConfig", BENCHES)
def run_bench_focus(c) -> int:
    """hit@1 and hit@3 of the learned focus predictor and the hand-made one"""
    from minireason.prep import focus
    from minireason.prep.prepared import load_prepared

    _check_json(c, c.prepared)
    result = focus.compare(load_prepared(c.prepared), c.split)
    _show(focus.format_comparison(result), result, c.json)
    return 0


@stage("grade", "course.grading:GradeConfig")
def run_grade(c) -> int:
    """autograde a course assignment: one file, a folder of them, or a Gradescope kit"""
    from pathlib import Path

    from minireason.course import batch, gradescope, grading
    from minireason.course.sandbox import Limits

    files = dict(gradescope_kit=gradescope.KIT, results=grading.RESULTS, csv=batch.GRADES_CSV)
    folder = c.path and Path(c.path).is_dir() and not c.gradescope
    _check_outputs(c, (c.path,), **files, **({"out": batch.GRADES_DIR} if folder else {}))
    seed = grading.read_seed_file(c.seed_file) if c.seed_file else None
    if c.gradescope_kit:
        path, source = gradescope.build_kit(c.assignment, c.gradescope_kit, seed)
        print(f"Gradescope kit written to {path} (course seed: {source}); keep it private")
        return 0
    if not c.path:
        raise UserError("PATH is required: a .py file or a folder of submissions")
    common = dict(seed=seed, timeout=c.timeout, limits=Limits(memory_mb=c.memory))
    if Path(c.path).is_dir() and not c.gradescope:
        summary = batch.grade_folder(c.assignment, c.path, c.out, c.csv, c.jobs, **common)
        print(summary.text())
        return 0
    grade = gradescope.grade_submission if c.gradescope else grading.grade
    report = grade(c.assignment, c.path, **common)
    print(report.table())
    results = c.results or (gradescope.results_path() if c.gradescope else None)
    if results:  # one file: the table only, unless asked
        print(f"\nresults written to {report.write_results(results)}")
    return 0


# --------------------------------------------------------------------------- main


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser. With ``argv``, only the command it names has its options declared (the
    others are listed by name and help); without, every command's are."""
    from minireason import __version__
    from minireason.backend import ATTENTIONS, DEVICES

    about = "Recommendation reasons from a from-scratch GPT; 'COMMAND --help' for each command."
    parser = _Parser(prog="minireason", description=about)
    parser.add_argument("--version", action="version", version=f"minireason {__version__}")
    device_help = "cpu (NumPy) or cuda (CuPy); default: $MINIREASON_DEVICE or cpu"
    parser.add_argument("--device", choices=DEVICES, help=device_help)
    attention_help = (
        "with --device cuda, the model's attention in training: cublas (cuBLAS products), "
        "flash (the flash kernels 3 and 4), or auto: the faster of the two, timed on the GPU "
        "for each batch shape (default: auto)"
    )
    parser.add_argument("--attention", choices=ATTENTIONS, help=attention_help)
    fused_help = (
        "with --device cuda, LayerNorm, GELU, cross-entropy and AdamW through the fused "
        "CUDA kernels 6-9 instead of CuPy's elementwise operations"
    )
    parser.add_argument("--fused", action="store_true", help=fused_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = None if argv is None else next((a for a in argv if a in COMMANDS), None)
    for name, (help_, declare) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, formatter_class=_Help)
        p.set_defaults(func=lambda args, p=p: (p.print_help(), 2)[1])  # a group's bare name
        if argv is None or name == chosen:
            declare(p, p.add_argument)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (None: this process's own, which then ends next)."""
    exiting, argv = argv is None, sys.argv[1:] if argv is None else list(argv)
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:  # Ctrl-C: one line, and what was kept when it says
        if exiting:  # then none: another (pressed again, or late) would be a traceback
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        exec("")  # clears CPython's mark of a Ctrl-C out of exec(str): -m would exit by SIGINT
        return _say(next((a for a in argv if a in COMMANDS), None), "interrupted", exc, 130)


def _main(argv: list[str]) -> int:
    try:
        args = build_parser(argv).parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        build_parser([]).print_help()
        return 2
    try:
        if args.device or args.attention or args.fused or os.environ.get("MINIREASON_DEVICE"):
            _set_device(args)
        return int(args.func(args) or 0)
    except (UserError, ValueError, OSError) as exc:
        if os.environ.get("MINIREASON_DEBUG") or isinstance(exc, BrokenPipeError):
            raise
        return _say(args.command, "error", exc, 1)


def _set_device(args) -> None:
    """``--device`` (or ``$MINIREASON_DEVICE``), then ``--attention`` and ``--fused``, which
    choose between GPU kernels and are refused, in one line, unless the device is cuda; on
    cuda the project's kernels are installed (:func:`minireason.gpu.model_kernels.install`)."""
    from minireason import backend

    try:
        if args.device:
            backend.set_device(args.device)
        device = backend.get_device()
    except backend.BackendError as exc:
        raise UserError(str(exc)) from exc
    chosen = [f"--attention {args.attention}"] * bool(args.attention) + ["--fused"] * args.fused
    if chosen and device != "cuda":
        raise UserError(
            f"{' and '.join(chosen)} chooses between the GPU's kernels: it needs --device cuda "
            "(on the CPU the model runs NumPy's own layers)"
        )
    if device == "cuda":
        from minireason.gpu import model_kernels

        model_kernels.install(args.attention or "auto", args.fused)


def _say(command: str | None, what: str, exc: BaseException, status: int) -> int:
    """``minireason COMMAND: WHAT[: the exception's message]``, one line on stderr (the
    message :func:`~minireason.text.inert`: what it quotes from data is escaped) below the
    progress bars still open (closed first, but one cut short as it started); ``status``."""
    tqdm = sys.modules.get("tqdm.std")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        with contextlib.suppress(AttributeError):  # one interrupted in its __init__
            bar.close()
    who = f"minireason {command}" if command else "minireason"
    print(f"{who}: {what}" + (f": {inert(exc)}" if str(exc) else ""), file=sys.stderr)
    return status


def run() -> int:
    """The console-script entry point: :func:`main`, quiet when the output pipe closes."""
    try:
        return main()
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(run())
