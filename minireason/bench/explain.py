"""``minireason bench explain``: seconds to explain one (user, item) with N candidates.

Takes a run and the prepared directory it was trained on, and explains the first
``n_pairs`` records of a split (deterministic) one at a time, exactly as ``explain`` would:
build the prompt, sample the candidates in one batch with the KV cache, score them, one
forward pass for the attention evidence. Each call is timed with ``time.perf_counter``
after ``warmup`` untimed calls; the report gives the median and the 90th percentile, and
how many tokens the candidates had (an untrained model never says ``<eos>`` and always
runs to ``max_new_tokens``: the worst case).

``threads`` sets how many threads the products are split across for the run
(:func:`minireason.nn.threads.set_threads`; decoding's one-token products are too small to
split and run inline) and restores it afterwards; the count used is reported.

``breakdown`` adds where the time goes: the same pairs explained once more with each stage
timed (:func:`stage_timers`), the seconds per pair of each of :data:`STAGES` and the decode
steps per pair. That pass is instrumented, so its total is reported beside the stages and
the median above comes from the plain pass.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from tqdm import tqdm

from minireason.bench.machine import json_option, machine_info
from minireason.nn.threads import set_threads
from minireason.nn.threads import threads as current_threads
from minireason.options import option
from minireason.prep.features import HistoryItem
from minireason.reason.explain import explain
from minireason.train.run import Decoding, RunOptions, ScoreWeights, check_same_data

STAGES = (
    "prefill",  # the prompt, once per explanation (generate.prefill)
    "decode steps",  # one new token for every candidate (generate.decode_step), each step
    "decode products",  # the part of the decode steps spent in matrix products
    "choosing tokens",  # temperature, top-p and sampling (generate.choose_tokens)
    "scoring",  # the score of every candidate (scoring.rank_candidates, from choose.rank)
    "attention evidence",  # the forward pass behind the evidence (evidence.attention_evidence)
)


@dataclass
class BenchExplainConfig(RunOptions):
    """The options of ``minireason bench explain`` (:mod:`minireason.options`)."""

    description: ClassVar[str] = (
        "Explain the first --pairs records of a split one at a time, as 'explain' does; "
        "median and 90th-percentile seconds per pair."
    )

    run: str = option(metavar="DIR", help="a run of 'minireason train'")
    prepared: str = option(metavar="DIR", help="the data it was trained on")
    split: str = option("test", choices=("train", "valid", "test"), help="whose records")
    pairs: int = option(20, min=1, help="timed pairs")
    warmup: int = option(2, min=0, help="untimed pairs first")
    seed: int = option(0, metavar="SEED", help="seed of every pair's candidates")
    threads: int | None = option(None, min=1, help="BLAS threads (default: as they are)")
    breakdown: bool = option(
        False,
        help="also time each stage (prefill, decode steps and their products, choosing "
        "tokens, scoring, attention evidence) in a second pass",
    )
    json: str | None = json_option()


@contextmanager
def stage_timers(seconds: dict):
    """Inside the block, add the seconds spent in each of :data:`STAGES` to ``seconds``, and
    count decode steps in ``seconds["decode step count"]``.

    It wraps the functions ``explain`` and ``generate`` call, by their names in the modules
    that call them, and the matrix products of the layers (``matmul`` in
    :mod:`minireason.nn.layers` and :mod:`minireason.nn.attention`, counted only inside a
    decode step); everything is put back on leaving. For measuring, never for serving.
    """
    from minireason.nn import attention, layers
    from minireason.reason import choose, generate
    from minireason.reason import explain as explain_module

    for stage in (*STAGES, "decode step count"):
        seconds.setdefault(stage, 0.0)
    in_decode = [False]
    saved = []

    def patch(module, name, wrapper_for):
        original = getattr(module, name)
        saved.append((module, name, original))
        setattr(module, name, wrapper_for(original))

    def timed(stage):
        def wrapper_for(original):
            def wrapper(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    seconds[stage] += time.perf_counter() - start

            return wrapper

        return wrapper_for

    def decode_wrapper_for(original):
        def wrapper(*args, **kwargs):
            in_decode[0] = True
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                in_decode[0] = False
                seconds["decode steps"] += time.perf_counter() - start
                seconds["decode step count"] += 1

        return wrapper

    def product_wrapper_for(original):
        def wrapper(a, b):
            if not in_decode[0]:
                return original(a, b)
            start = time.perf_counter()
            try:
                return original(a, b)
            finally:
                seconds["decode products"] += time.perf_counter() - start

        return wrapper

    try:
        patch(generate, "prefill", timed("prefill"))
        patch(generate, "decode_step", decode_wrapper_for)
        patch(generate, "choose_tokens", timed("choosing tokens"))
        patch(choose, "rank_candidates", timed("scoring"))
        patch(explain_module, "attention_evidence", timed("attention evidence"))
        patch(layers, "matmul", product_wrapper_for)
        patch(attention, "matmul", product_wrapper_for)
        yield seconds
    finally:
        for module, name, original in reversed(saved):
            setattr(module, name, original)


def pair_inputs(record: dict, prepared) -> dict:
    """``explain``'s keyword arguments for one record of ``prepared`` (see
    ``minireason.prep.prepare``): its prompt parts as prepared, the user's past reviews and
    the training reviews' words."""
    return {
        "history": [HistoryItem(**h) for h in record["history"]],
        "item_tags": record["item_tags"],
        "profile_aspects": record["profile"]["aspects"],
        "item": record["item"],
        "focus": record.get("focus") or [],
        "evidence": record.get("evidence") or [],
        "past_reviews": prepared.reviews_by(record["user"]),
        "known_words": prepared.known_words,
        "particular_words": prepared.particular_words(record["item"]),
    }


def run_bench_explain(
    run,
    prepared,
    n_pairs: int = BenchExplainConfig.pairs,
    decoding: Decoding | None = None,
    weights: ScoreWeights | None = None,
    split: str = BenchExplainConfig.split,
    warmup: int = BenchExplainConfig.warmup,
    seed: int = BenchExplainConfig.seed,
    threads: int | None = None,
    progress: bool = True,
    breakdown: bool = False,
) -> dict:
    """Time ``explain`` on the first ``n_pairs`` records of ``split``.

    Args:
        run: a :class:`minireason.train.run.Run`; prepared: the
            :class:`minireason.prep.prepared.Prepared` it was trained on.
        decoding, weights: the sampling settings and the score's weights (None: the run's).
        threads: threads for the run's products (None: leave as they are).
        breakdown: also time each stage, in a second pass (module docstring).

    Returns:
        A JSON-ready dict: ``median_s``, ``p90_s``, ``times_s``, ``mean_candidate_tokens``,
        the settings and the machine; with ``breakdown``, ``breakdown_ms`` (milliseconds
        per pair of each of :data:`STAGES`, and ``"instrumented total"``) and
        ``decode_steps_per_pair``.
    """
    check_same_data(run.info, prepared)
    records = [r for r in prepared.split(split) if r["history"] or r["item_tags"]][:n_pairs]
    if not records:
        raise ValueError(f"{prepared.path}: split {split!r} has no record to explain")
    decoding = decoding or run.info.decoding
    weights = weights or run.info.weights
    before = set_threads(threads) if threads is not None else current_threads()
    try:
        used = current_threads()
        result = _time_pairs(run, prepared, records, decoding, weights, warmup, seed, progress)
        if breakdown:
            seconds = {}
            with stage_timers(seconds):
                timed = _time_pairs(run, prepared, records, decoding, weights, 0, seed, progress)
                total = timed["times_s"]
            n = len(records)
            result["breakdown_ms"] = {
                **{stage: 1000.0 * seconds[stage] / n for stage in STAGES},
                "instrumented total": 1000.0 * sum(total) / n,
            }
            result["decode_steps_per_pair"] = seconds["decode step count"] / n
    finally:
        set_threads(before)
    return {
        **result,
        "split": split,
        "warmup": warmup,
        **asdict(decoding),
        "weights": weights.to_dict(),
        "prompt_tokens": run.info.prompt_tokens,
        "threads": used,
        "model_config": run.model.config.to_dict(),
        "machine": machine_info(),
    }


def _time_pairs(run, prepared, records, decoding, weights, warmup, seed, progress) -> dict:
    """Explain each record once (after ``warmup`` untimed ones); seconds and token counts."""

    def one(record):
        return explain(
            run.model,
            run.tokenizer,
            **pair_inputs(record, prepared),
            prompt_tokens=run.info.prompt_tokens,
            decoding=decoding,
            weights=weights,
            seed=seed,
        )

    for record in records[:warmup]:
        one(record)
    times, tokens = [], []
    for record in tqdm(records, desc="explain", unit="pair", disable=None if progress else True):
        start = time.perf_counter()
        result = one(record)
        times.append(time.perf_counter() - start)
        tokens.append(np.mean([len(c.token_ids) for c in result.candidates]))
    return {
        "median_s": float(np.median(times)),
        "p90_s": float(np.percentile(times, 90)),
        "times_s": [float(t) for t in times],
        "mean_candidate_tokens": float(np.mean(tokens)),
        "n_pairs": len(records),
    }


def format_report(result: dict) -> str:
    cfg = result["model_config"]
    return (
        f"explain: {result['n_pairs']} (user, item) pairs of split {result['split']}, "
        f"{result['n_candidates']} candidates, max_new_tokens {result['max_new_tokens']}\n"
        f"model: n_layer {cfg['n_layer']}, n_head {cfg['n_head']}, n_embd {cfg['n_embd']}, "
        f"block_size {cfg['block_size']}, vocab {cfg['vocab_size']}, {cfg['dtype']}; "
        f"threads {result['threads']}, {result['machine']['cpu_count']} CPUs\n"
        f"mean tokens per candidate: {result['mean_candidate_tokens']:.1f}\n"
        f"seconds per pair: median {result['median_s']:.3f}, p90 {result['p90_s']:.3f}"
        + _format_breakdown(result)
    )


def _format_breakdown(result: dict) -> str:
    ms = result.get("breakdown_ms")
    if not ms:
        return ""
    return (
        f"\nwhere a pair's time goes (mean of a second, instrumented pass: "
        f"{ms['instrumented total']:.0f} ms a pair, {result['decode_steps_per_pair']:.1f} "
        f"decode steps):\n"
        + "\n".join(
            f"  {stage:<20} {ms[stage]:7.1f} ms"
            + (" (part of the decode steps)" if stage == "decode products" else "")
            for stage in STAGES
        )
    )


def write_json(result: dict, path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return path
