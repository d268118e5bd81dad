"""The ``minireason`` command line: thin entry points over the package's modules.

Each sub-command is declared by an ``add_*`` function that builds its parser and sets
``func`` to a handler; handlers import their stage lazily so that ``--help`` stays fast.
A handler returns an exit code. Errors the user can fix (bad paths, bad input) are raised
as :class:`UserError` (or ValueError / FileNotFoundError) and printed as one line, never
as a traceback (set ``MINIREASON_DEBUG=1`` to see the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys


class UserError(Exception):
    """An error the user can fix; its message says what to do."""


# --------------------------------------------------------------------------- foundation


def add_attention_example(sub):
    p = sub.add_parser(
        "attention-example",
        help="the seed document's worked attention example (section 4.3), computed correctly, with errata",
        description=(
            "Rebuild the eight-word example of the seed document's section 4.3, compute the "
            "single-query case and full self-attention with and without the 1/sqrt(d_k) scale, "
            "and print what the document printed next to what is right."
        ),
    )
    p.add_argument(
        "--plot", metavar="FILE.png", help="save a labelled heatmap of the attention weights"
    )
    p.add_argument(
        "--decimals", type=int, default=4, help="digits printed after the point (default 4)"
    )
    p.set_defaults(func=_run_attention_example)


def _run_attention_example(args) -> int:
    from minireason.course import worked_example

    print(worked_example.report(decimals=args.decimals))
    if args.plot:
        path = worked_example.plot(args.plot)
        print(f"\nheatmap written to {path}")
    return 0


# --------------------------------------------------------------------------- benchmarks
# `minireason bench NAME`: each benchmark adds itself to BENCH_SUBCOMMANDS below.


def add_bench(sub):
    p = sub.add_parser(
        "bench",
        help="benchmarks: measured speed, printed and written as JSON",
        description="Benchmarks. Speed targets live here, never in timed tests.",
    )
    bench_sub = p.add_subparsers(dest="bench_command", metavar="BENCH")
    for add in BENCH_SUBCOMMANDS:
        add(bench_sub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


# --------------------------------------------------------------------------- model and training (issue 3)


def add_bench_train(bench_sub):
    p = bench_sub.add_parser(
        "train",
        help="tokens/s and GFLOP/s of a full NumPy training step, vs PyTorch eager when installed",
        description=(
            "Time forward + backward + AdamW of the NumPy GPT at a given config (default: the "
            "reference config), measure the machine's float32 matmul rate, and, when PyTorch is "
            "importable, the same model in PyTorch eager on the same threads and inputs. "
            "Reports medians."
        ),
    )
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument(
        "--threads", type=int, default=None, help="BLAS / torch threads (default: all cores)"
    )
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.set_defaults(func=_run_bench_train)


def _run_bench_train(args) -> int:
    import json

    from minireason.bench import train as bench_train
    from minireason.nn.model import GPTConfig

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    config = GPTConfig(
        vocab_size=args.vocab_size,
        block_size=args.block_size,
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_embd=args.n_embd,
        dtype=args.dtype,
    )
    result = bench_train.run_train_benchmark(
        config,
        args.batch_size,
        steps=args.steps,
        warmup=args.warmup,
        threads=args.threads,
        with_torch=not args.no_torch,
    )
    print(bench_train.format_report(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
        print(f"figures written to {args.json}")
    return 0


# --------------------------------------------------------------------------- data pipeline (issue 4)


def _data_path(flag: str, value: str | None) -> str | None:
    """``value`` as given, or resolved under ``$MINIREASON_DATA_DIR`` when relative and absent."""
    if value is None or os.path.exists(value):
        return value
    root = os.environ.get("MINIREASON_DATA_DIR")
    if root and not os.path.isabs(value) and os.path.exists(os.path.join(root, value)):
        return os.path.join(root, value)
    where = f" (nor under MINIREASON_DATA_DIR={root})" if root else ""
    raise UserError(
        f"{flag} {value}: not found{where}; 'minireason data list' shows the "
        "known datasets, 'minireason data fetch NAME' downloads one"
    )


def add_prepare(sub):
    p = sub.add_parser(
        "prepare",
        help="steps 1-3: load, clean and split reviews, mine aspects, build prompts, train BPE",
        description=(
            "Read a review file (and optional item metadata), validate and clean it, split it, "
            "mine aspect terms, pick explanation targets, build prompts, train a byte-level "
            "BPE tokenizer, and write a prepared directory with report.json/report.md. "
            "Relative input paths are also looked up under $MINIREASON_DATA_DIR."
        ),
    )
    p.add_argument(
        "--reviews",
        required=True,
        metavar="FILE",
        help="reviews (gzip or plain); for --format movielens, the folder",
    )
    p.add_argument("--meta", metavar="FILE", help="Amazon item metadata (2014 or 2018)")
    p.add_argument(
        "--format",
        default="amazon",
        choices=["amazon", "movielens", "jsonl", "csv"],
        help="input format (default amazon: 2014 and 2018 review JSON lines)",
    )
    p.add_argument(
        "--columns",
        metavar="MAP",
        help="jsonl/csv column mapping: user=COL,item=COL,rating=COL,time=COL"
        "[,text=COL][,summary=COL]",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="the prepared directory to write")
    p.add_argument(
        "--split",
        default="time",
        choices=["time", "random"],
        help="time: leave-last-out per user (default); random: seeded 8:1:1",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random split (default 0)")
    p.add_argument(
        "--kcore",
        type=int,
        default=0,
        metavar="K",
        help="keep only users and items with >= K reviews (default: off)",
    )
    p.add_argument(
        "--vocab-size", type=int, default=4096, help="BPE vocabulary size (default 4096)"
    )
    p.add_argument("--aspects", type=int, default=150, help="unigram aspects to keep (default 150)")
    p.add_argument("--bigrams", type=int, default=50, help="bigram aspects to keep (default 50)")
    p.add_argument(
        "--min-df",
        type=int,
        default=5,
        help="minimum training reviews mentioning an aspect (default 5)",
    )
    p.add_argument("--max-history", type=int, default=10, help="past items kept (default 10)")
    p.add_argument(
        "--context", type=int, default=128, help="tokens per fine-tuning sequence (default 128)"
    )
    p.add_argument(
        "--prompt-tokens",
        type=int,
        default=64,
        help="tokens per prompt, oldest history dropped to fit (default 64)",
    )
    p.add_argument(
        "--focus",
        type=int,
        default=3,
        metavar="K",
        help="aspects each prompt asks the reason to talk about, predicted from "
        "training data (default 3; 0: no focus part)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first malformed line (file:line and field) instead of counting it",
    )
    p.set_defaults(func=_run_prepare)


def _run_prepare(args) -> int:
    from minireason.data.generic import parse_columns
    from minireason.data.report import DataError
    from minireason.prep.prepare import PrepareConfig, prepare

    cfg = PrepareConfig(
        reviews=_data_path("--reviews", args.reviews),
        meta=_data_path("--meta", args.meta),
        format=args.format,
        columns=parse_columns(args.columns) if args.columns else None,
        out=args.out,
        split=args.split,
        seed=args.seed,
        kcore=args.kcore,
        vocab_size=args.vocab_size,
        n_unigrams=args.aspects,
        n_bigrams=args.bigrams,
        min_df=args.min_df,
        max_history=args.max_history,
        context=args.context,
        prompt_tokens=args.prompt_tokens,
        focus=args.focus,
        strict=args.strict,
    )
    try:
        report = prepare(cfg)
    except DataError as exc:
        raise UserError(f"--strict: {exc}") from None
    skipped = sum(sum(f["skipped"].values()) for f in report["load"]["files"])
    truncated = [f["truncated"] for f in report["load"]["files"] if "truncated" in f]
    print(f"prepared {args.out}: " + ", ".join(f"{k} {v}" for k, v in report["stages"].items()))
    print(f"skipped lines: {skipped} (by reason in {args.out}/report.md)")
    for line in truncated:
        print(f"warning: {line}")
    return 0


def add_data(sub):
    p = sub.add_parser(
        "data",
        help="public datasets: list them, fetch one into the cache",
        description="Known public datasets, downloaded from their canonical sources.",
    )
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    fetch = data_sub.add_parser(
        "fetch",
        help="download a dataset into $MINIREASON_CACHE (default ~/.cache/minireason)",
        description="Download with resume (HTTP Range on a .part file), then check size and SHA-256.",
    )
    fetch.add_argument("name", help="dataset name (see 'minireason data list')")
    fetch.add_argument(
        "--cache",
        metavar="DIR",
        help="cache directory (default: $MINIREASON_CACHE or ~/.cache/minireason)",
    )
    fetch.add_argument("--timeout", type=float, default=30.0, help="seconds per connection (30)")
    fetch.set_defaults(func=_run_data_fetch)
    listing = data_sub.add_parser("list", help="the known datasets, their files and sources")
    listing.set_defaults(func=_run_data_list)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _run_data_fetch(args) -> int:
    from minireason.data.fetch import FetchError, fetch

    try:
        folder = fetch(args.name, cache=args.cache, timeout=args.timeout)
    except FetchError as exc:
        raise UserError(str(exc)) from None
    print(f"{args.name}: ready in {folder}")
    return 0


def _run_data_list(args) -> int:
    from minireason.data.fetch import DATASETS, cache_dir

    print(f"cache: {cache_dir()}")
    for ds in DATASETS.values():
        print(f"{ds.name}  (folder {ds.folder}; cite {ds.citation})")
        for f in ds.files:
            size = f"{f.size:,} bytes" if f.size else "size not recorded"
            print(f"    {f.name}: {size}  {f.url}")
    return 0


# --------------------------------------------------------------------------- reasons and evaluation (issue 5)


def add_bench_explain(bench_sub):
    p = bench_sub.add_parser(
        "explain",
        help="seconds to explain one (user, item) with N candidates (median, p90)",
        description=(
            "Explain the first --pairs records of a split one at a time with a checkpoint "
            "(prompt, N sampled candidates with the KV cache, scoring, attention evidence) "
            "and report the median and 90th-percentile seconds per pair."
        ),
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint directory")
    p.add_argument("--prepared", required=True, help="the prepared directory it was trained on")
    p.add_argument("--split", choices=["train", "valid", "test"], default="test")
    p.add_argument("--pairs", type=int, default=20, help="timed pairs (default 20)")
    p.add_argument("--candidates", type=int, default=16, help="candidates per pair (default 16)")
    p.add_argument("--max-new-tokens", type=int, default=40, help="per candidate (default 40)")
    p.add_argument("--warmup", type=int, default=2, help="untimed pairs first (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS threads (default: as they are; 1 is fastest on a busy machine)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.set_defaults(func=_run_bench_explain)


def _run_bench_explain(args) -> int:
    from minireason.bench import explain as bench_explain
    from minireason.nn.checkpoint import load_model
    from minireason.prep.prepared import load_prepared

    for name in ("pairs", "candidates", "max_new_tokens"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise UserError(f"--warmup must be >= 0, got {args.warmup}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    model = load_model(args.checkpoint)
    prepared = load_prepared(args.prepared)
    result = bench_explain.run_bench_explain(
        model,
        prepared,
        n_pairs=args.pairs,
        n_candidates=args.candidates,
        max_new_tokens=args.max_new_tokens,
        split=args.split,
        warmup=args.warmup,
        seed=args.seed,
        threads=args.threads,
    )
    print(bench_explain.format_report(result))
    if args.json:
        print(f"written: {bench_explain.write_json(result, args.json)}")
    return 0


def add_train(sub):
    p = sub.add_parser(
        "train",
        help="pretrain the GPT on review sentences, then fine-tune it on prompt -> reason pairs",
        description=(
            "Stage 1 pretrains on the prepared pretrain.npz stream; stage 2 fine-tunes on "
            "finetune_train.npz with the loss on the reason tokens only, validating on "
            "finetune_valid.npz. OUT gets pretrain/ and finetune/ checkpoints, loss curves, "
            "tokenizer.json, preset.json and train_report.json."
        ),
    )
    p.add_argument(
        "--prepared",
        required=True,
        metavar="DIR",
        help="a directory written by 'minireason prepare'",
    )
    p.add_argument(
        "--preset",
        default="tiny",
        metavar="NAME|FILE.json",
        help="tiny, small, or a preset JSON file (copy one from minireason/train/presets/ "
        "and edit it); default tiny",
    )
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/PRESET)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the checkpoints in --out (finished stages are skipped)",
    )
    p.set_defaults(func=_run_train)


def _run_train(args) -> int:
    from minireason.train.recipe import load_preset, run_recipe

    preset = load_preset(args.preset)
    out = args.out or os.path.join("runs", os.path.splitext(os.path.basename(args.preset))[0])
    report = run_recipe(args.prepared, preset, out, resume=args.resume)
    for stage in ("pretrain", "finetune"):
        r = report[stage]
        losses = ", ".join(
            f"{what} loss {r[f'final_{what}_loss']:.4f}"
            for what in ("train", "val")
            if r[f"final_{what}_loss"] is not None
        )
        print(
            f"{stage}: {r['status']}, {r['steps']} steps, {losses}, {r['seconds_this_run']:.1f} s"
        )
    print(
        f"run written to {out} (train_report.json, {stage}/loss.png); "
        f"next: minireason evaluate --prepared {args.prepared} --run {out}"
    )
    return 0


def add_evaluate(sub):
    p = sub.add_parser(
        "evaluate",
        help="explanation metrics of a trained run against three baselines, and HR/NDCG@10",
        description=(
            "Generate reasons for the test records with a target, score them (BLEU-1/4, "
            "ROUGE-1/2/L, USR, FMR, FCR, DIV; perplexity) next to the random, retrieval and "
            "template baselines, and rank items with popularity, ItemCF, content and hybrid "
            "recommenders. Writes evaluation.json, evaluation.md, evaluation.png and "
            "generations.jsonl."
        ),
    )
    p.add_argument("--prepared", required=True, metavar="DIR", help="the prepared directory")
    p.add_argument("--run", required=True, metavar="DIR", help="a run of 'minireason train'")
    p.add_argument("--out", metavar="DIR", help="output directory (default RUN/eval)")
    p.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="only the first N test records with a target (default: all)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="prompts per batch (default 64)")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=40,
        help="longest generated reason in tokens (default 40)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the sampling and of the random baseline (default 0)",
    )
    p.add_argument(
        "--decode",
        choices=["step4", "greedy"],
        default="step4",
        help="step4: best of --candidates samples at temperature 0.7, as 'explain' does (default); "
        "greedy: one greedy reason",
    )
    p.add_argument(
        "--candidates", type=int, default=16, help="samples per record with step4 (default 16)"
    )
    p.add_argument(
        "--split",
        choices=["test", "valid"],
        default="test",
        help="records to evaluate on (default test; tune settings on valid)",
    )
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args) -> int:
    from minireason.evaluation.evaluate import evaluate_run, markdown_report

    for name in ("batch_size", "max_new_tokens", "candidates"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    result = evaluate_run(
        args.prepared,
        args.run,
        args.out,
        limit=args.limit,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        decode=args.decode,
        n_candidates=args.candidates,
        split=args.split,
    )
    print(markdown_report(result))
    out = args.out or os.path.join(args.run, "eval")
    print(f"written to {out}: evaluation.json, evaluation.md, evaluation.png, generations.jsonl")
    return 0


def add_explain(sub):
    p = sub.add_parser(
        "explain",
        help="recommend items to a user and explain each (seed step 4), or explain free-form input",
        description=(
            "Explain recommendations with a trained run. Either a known user (--user; with "
            "--item to explain that item, else the top-k recommendations are explained), or "
            "free-form input (--history and --tags). Each reason comes with its evidence: the "
            "share of attention on each history item and tag."
        ),
        epilog=(
            "examples:  minireason explain --prepared runs/demo/prepared --run runs/demo/run --user A1L7M2CLYO4S4R\n"
            '           minireason explain --run runs/demo/run --history "strings, tuner (4); pedal, patch cables" --tags "capo, guitar"'
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--run", required=True, metavar="DIR", help="a run directory of 'minireason train'"
    )
    p.add_argument(
        "--prepared",
        metavar="DIR",
        help="the prepared directory the run was trained on (needed with --user)",
    )
    p.add_argument("--user", help="a user id of the prepared data")
    p.add_argument("--item", help="explain this item id (default: recommend first)")
    p.add_argument(
        "--history", help='free-form history: "term, term (rating); term, ..." oldest first'
    )
    p.add_argument("--tags", help='free-form item tags: "tag, tag, ..."')
    p.add_argument("-k", type=int, default=3, help="recommendations to explain (default 3)")
    p.add_argument(
        "--candidates", type=int, default=16, help="candidates generated per reason (default 16)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", metavar="FILE.png", help="attention heatmap of the first reason")
    p.set_defaults(func=_run_explain)


def _run_explain(args) -> int:
    from pathlib import Path

    from minireason.nn.checkpoint import load_model
    from minireason.prep.tokenizer import BPETokenizer
    from minireason.reason import explain as ex
    from minireason.reason.evidence import plot_evidence
    from minireason.reason.explain import explain

    if (args.user is None) == (args.history is None and args.tags is None):
        raise UserError(
            "give either --user ID (with --prepared) or free-form --history/--tags, not both"
        )
    for name in ("k", "candidates"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be >= 1, got {getattr(args, name)}")
    run = Path(args.run)
    model = load_model(run / "finetune")
    if args.user is not None:
        if not args.prepared:
            raise UserError("--user needs --prepared DIR (the prepared directory of the run)")
        from minireason.prep.prepared import load_prepared

        prepared = load_prepared(args.prepared)
        recs = ex.explain_for_user(
            model,
            prepared,
            args.user,
            item=args.item,
            k=args.k,
            n_candidates=args.candidates,
            seed=args.seed,
        )
        history = ex.user_history(prepared, args.user)
        print(
            f"user {args.user}: {len(history)} past reviews" + ("" if history else " (cold start)")
        )
        for rank, rec in enumerate(recs, 1):
            score = "" if rec.score != rec.score else f"  recommender score {rec.score:.2f}"
            print(f"{rank}. {rec.item}{score}")
            print(ex.format_explanation(rec.explanation))
        explanations = [r.explanation for r in recs]
    else:
        tok_path = run / "tokenizer.json"
        if not tok_path.is_file():
            raise FileNotFoundError(f"{tok_path} not found: is {run} a run of 'minireason train'?")
        history, tags = ex.parse_history(args.history or ""), ex.parse_tags(args.tags or "")
        expl = explain(
            model,
            BPETokenizer.load(tok_path),
            history,
            tags,
            n_candidates=args.candidates,
            seed=args.seed,
            max_prompt_tokens=model.config.block_size - 40,
            focus=ex.free_form_focus(run, history, tags),
        )
        print(expl.prompt_text)
        print(ex.format_explanation(expl))
        explanations = [expl]
    if args.plot:
        print(f"attention heatmap written to {plot_evidence(explanations[0], args.plot)}")
    return 0


def add_demo(sub):
    p = sub.add_parser(
        "demo",
        help="the whole job: prepare the data, train the tiny preset, explain recommendations, evaluate",
        description=(
            "Find the Musical Instruments reviews (--data-dir, $MINIREASON_DATA_DIR, ../shared/data, "
            "or the cache of 'minireason data fetch musical-instruments'), prepare them, train the "
            "tiny preset, print the top-3 recommendations of three test users with reasons and "
            "evidence, then the evaluation table. A second run reuses what the first made."
        ),
    )
    p.add_argument("--data-dir", metavar="DIR", help="where the datasets are")
    p.add_argument(
        "--out", default="runs/demo", metavar="DIR", help="output directory (default runs/demo)"
    )
    p.add_argument(
        "--preset", default="tiny", help="training preset name or JSON file (default tiny)"
    )
    p.add_argument("--users", type=int, default=3, help="test users shown (default 3)")
    p.add_argument(
        "--eval-limit", type=int, default=None, help="evaluate on the first N test records only"
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from minireason.demo import run_demo

    if args.users < 1:
        raise UserError(f"--users must be >= 1, got {args.users}")
    run_demo(
        data_dir=args.data_dir,
        out=args.out,
        preset=args.preset,
        n_users=args.users,
        eval_limit=args.eval_limit,
        seed=args.seed,
    )
    return 0


# --------------------------------------------------------------------------- GPU kernels (issue 6)


def add_bench_kernels(bench_sub):
    p = bench_sub.add_parser(
        "kernels",
        help="TFLOP/s of the CUDA attention kernels 1-4 (and torch SDPA fp32) on the GPU",
        description=(
            "Validate each CUDA attention kernel against the NumPy reference, then time it with "
            "CUDA events (median of many runs after warm-up, inputs rotated over buffers larger "
            "than the L2 cache) at every T, causal and not. Writes kernel_bench.md (Markdown "
            "table) and kernel_bench.png into --out-dir. Needs CuPy and an NVIDIA GPU."
        ),
    )
    p.add_argument(
        "--seq-lens",
        type=int,
        nargs="+",
        default=[256, 1024, 4096],
        metavar="T",
        help="sequence lengths (default 256 1024 4096)",
    )
    p.add_argument("--batch", type=int, default=8, help="batch size B (default 8)")
    p.add_argument("--heads", type=int, default=12, help="heads H (default 12)")
    p.add_argument("--head-dim", type=int, default=64, help="head_dim D, 1..128 (default 64)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    p.add_argument("--max-runs", type=int, default=50, help="timed runs at most (default 50)")
    p.add_argument(
        "--budget",
        type=float,
        default=2.0,
        help="seconds of timed runs per measurement once 5 are done (default 2)",
    )
    p.add_argument(
        "--no-torch", action="store_true", help="skip torch's scaled_dot_product_attention"
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="start no new (T, causal) after this long; the rest are listed as not measured",
    )
    p.add_argument("--out-dir", default=".", help="folder for kernel_bench.md / .png (default .)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.set_defaults(func=_run_bench_kernels)


def _run_bench_kernels(args) -> int:
    from minireason import backend

    for name in ("batch", "heads", "warmup", "max_runs"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 1 <= args.head_dim <= 128:
        raise UserError(f"--head-dim must be in 1..128 (kernel 3's tiles), got {args.head_dim}")
    if min(args.seq_lens) < 1:
        raise UserError(f"--seq-lens must be >= 1, got {args.seq_lens}")
    try:
        backend.set_device("cuda")
    except backend.BackendError as exc:
        raise UserError(f"bench kernels needs a CUDA GPU: {exc}") from None
    from minireason.bench import kernels as kernel_bench

    result = kernel_bench.run_kernel_bench(
        seq_lens=args.seq_lens,
        batch=args.batch,
        heads=args.heads,
        head_dim=args.head_dim,
        warmup=args.warmup,
        max_runs=args.max_runs,
        budget_s=args.budget,
        with_torch=not args.no_torch,
        time_limit_s=args.time_limit,
    )
    print(kernel_bench.format_table(result))
    for path in kernel_bench.write_outputs(result, args.out_dir, args.json):
        print(f"written: {path}")
    return 0 if all(r["valid"] for r in result["results"]) else 1


# --------------------------------------------------------------------------- course (issue 7)


def add_grade(sub):
    p = sub.add_parser(
        "grade",
        help="autograde a course assignment: per-test score table and Gradescope results.json",
        description=(
            "Run an assignment's weighted tests against a student's file. Each test runs in "
            "its own process with a time limit, so a crash, an infinite loop or a wrong shape "
            "costs that test's points only. Hidden-style tests draw fresh random inputs from "
            "the seed (printed, so a run can be replayed)."
        ),
    )
    p.add_argument("assignment", help="assignment name, e.g. A1")
    p.add_argument("student_file", help="the student's .py file")
    p.add_argument(
        "--results",
        metavar="FILE.json",
        default="results.json",
        help="where to write Gradescope's results.json (default: ./results.json)",
    )
    p.add_argument(
        "--seed", type=int, default=None, help="seed of the hidden-style tests (default: clock)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds each test may run, process start included (default 10)",
    )
    p.set_defaults(func=_run_grade)


def _run_grade(args) -> int:
    from minireason.course import grading

    report = grading.grade(args.assignment, args.student_file, args.seed, args.timeout)
    print(report.table())
    path = report.write_results(args.results)
    print(f"\nresults written to {path}")
    return 0


SUBCOMMANDS = [
    add_demo,
    add_attention_example,
    add_prepare,
    add_train,
    add_evaluate,
    add_explain,
    add_data,
    add_bench,
    add_grade,
]

BENCH_SUBCOMMANDS = [
    add_bench_train,
    add_bench_kernels,
    add_bench_explain,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minireason",
        description=(
            "From-scratch, educational LLM-based recommendation-reason generation. "
            "Run 'minireason COMMAND --help' for each command."
        ),
    )
    from minireason import __version__

    parser.add_argument("--version", action="version", version=f"minireason {__version__}")
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default=None,
        help="array backend: cpu (NumPy) or cuda (CuPy); default: $MINIREASON_DEVICE or cpu",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if args.device:
            from minireason import backend

            try:
                backend.set_device(args.device)
            except backend.BackendError as exc:
                raise UserError(str(exc)) from exc
        return int(args.func(args) or 0)
    except (UserError, ValueError, FileNotFoundError, PermissionError) as exc:
        if os.environ.get("MINIREASON_DEBUG"):
            raise
        print(f"minireason {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"minireason {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
