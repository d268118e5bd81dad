"""``minireason evaluate``: the trained model against the baselines, and the recommenders.

    minireason evaluate --prepared runs/prep --run runs/tiny [--limit 200]

Explanations. For each test record with a target (``finetune_test.npz``, in order; the first
``limit`` with ``--limit``) the model generates a reason from the record's prompt, with the KV
cache of :mod:`minireason.reason.generate`, in batches: by default as the system explains
(:mod:`minireason.reason.choose`: the best of the run's 16 samples at temperature 0.7, top-p
0.9, scored with the run's weights or ``--weights FILE``'s), or greedily with ``--decode
greedy``; the reasons are scored with :func:`minireason.evaluation.metrics.explanation_metrics`
against the record's target sentence and ground-truth feature, with the prepared feature set F. The model's perplexity is
measured on the same records' ``reason + <eos>`` tokens (teacher-forced, the fine-tuning loss).
Every baseline of :mod:`minireason.evaluation.baselines` (random, retrieval, evidence,
template: :data:`~minireason.evaluation.baselines.BASELINES`) answers the same records.
Every system's reasons, and the records' target sentences themselves, are also judged
against the item's training reviews (:mod:`minireason.evaluation.grounding`: item
specificity, groundedness, copy rate; the index of the training split built once).

Recommendation. Popularity, ItemCF, ContentSimilarity and Hybrid
(:mod:`minireason.reason.recommend`) are fitted on the training split (each user's items in time
order; item content = its tags plus its aspect terms from ``items.json``) and ranked with
HR@10 / NDCG@10 against each user's held-out item of the evaluated split (the leave-last-out
split). This part always uses every user (``--limit`` does not apply; it takes seconds).

``--split valid`` evaluates on the validation split instead, the one to tune settings on
(the step-4 sampling, the focus size, score weights) before reporting on ``test``.

This module computes; :mod:`minireason.evaluation.render` draws and writes the outputs (in
``OUT``, default ``RUN/eval``): ``evaluation.json`` shaped ``{"model": {...}, "baselines":
{"random": {...}, "retrieval": {...}, "evidence": {...}, "template": {...}}, "references":
{...}, "uncertainty": {...}, "recommendation": {...}, "info": {...}}`` (``references``: the
grounding metrics of the target sentences; ``uncertainty``: 95% bootstrap intervals
of BLEU-1, BLEU-4, ROUGE-L and FMR for every system, and the share of resamples on which the
model is ahead of each baseline, :mod:`minireason.evaluation.bootstrap`), ``evaluation.md``
(Markdown tables), ``evaluation.png`` (bar chart), ``evaluation.html`` (all of it in a page,
with the generations sortable and filterable) and ``generations.jsonl`` (every record's
reference and every system's answer, to read them). ``info`` says what was evaluated and
how: the run and the prepared directory (paths, and content identities that tell the same
run and data wherever they live: ``run_content``, :func:`minireason.train.run.run_content`,
and ``prepared_content``), the split, limit, seed, batch size, decoding and weights, and
the grounding metrics' thresholds (``grounding``, :meth:`GroundingIndex.params`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from tqdm.auto import tqdm

from minireason import backend
from minireason.data.clean import one_line
from minireason.evaluation.baselines import BASELINES, baseline_answers
from minireason.evaluation.bootstrap import bootstrap_intervals
from minireason.evaluation.grounding import GroundingIndex, grounding_metrics
from minireason.evaluation.metrics import explanation_metrics, perplexity
from minireason.evaluation.render import check_output_dir, write_outputs
from minireason.options import option
from minireason.prep.prepared import Prepared, load_prepared
from minireason.prep.tokenizer import BPETokenizer
from minireason.reason.choose import ScoringContext, choose_reasons
from minireason.reason.recommend import RECOMMENDERS, evaluate_ranking
from minireason.train.batches import pad_batch
from minireason.train.run import (
    RUN_JSON,
    Decoding,
    RunOptions,
    ScoreWeights,
    check_same_data,
    content_paths,
    load_run,
    run_content,
)

SYSTEMS = ("model", *BASELINES)
DECODERS = ("step4", "greedy")
FOCUS_FROM = ("predicted", "target")
N_EXAMPLES = 20  # seeded random records shown in full in the reports
ORACLE_LABEL = (
    "ORACLE protocol (--focus-from target): the model's prompt names the test review's own "
    "feature as its focus, as PETER+, NETE and P5 with a feature hint are given it; not "
    "comparable with the honest (predicted-focus) numbers"
)

GenerateFn = Callable[[list[list[int]]], list[str]]


# --------------------------------------------------------------------------- the model


def greedy_generate_fn(
    model, tok: BPETokenizer, max_new_tokens: int, batch_size: int = 64, progress: bool = True
) -> GenerateFn:
    """``prompts -> reasons`` by greedy decoding with the KV cache of
    :func:`minireason.reason.generate.generate`, ``batch_size`` prompts at a time; each reason is
    the decoded text up to (not including) ``<eos>``."""
    from minireason.reason.generate import generate

    def generate_reasons(prompts: list[list[int]]) -> list[str]:
        out: list[str] = []
        for s in tqdm(
            range(0, len(prompts), batch_size),
            desc="generate",
            unit="batch",
            disable=None if progress else True,
        ):
            gen = generate(
                model,
                prompts[s : s + batch_size],
                max_new_tokens=max_new_tokens,
                temperature=0.0,
                eos_id=tok.eos_id,
            )
            for tokens, finish in zip(gen.tokens, gen.finish):
                reason = tokens[:-1] if finish == "eos" else tokens
                out.append(one_line(tok.decode(reason, skip_special=True)))
        return out

    return generate_reasons


def reason_perplexity(
    model, sequences, rows, pad_id: int, batch_size: int = 64, progress: bool = True
) -> tuple[float, int]:
    """Perplexity of the reason + ``<eos>`` tokens of fine-tuning sequences ``rows``, teacher
    forced; returns ``(perplexity, n_tokens)``."""
    total_nll, n_tokens = 0.0, 0
    for s in tqdm(
        range(0, len(rows), batch_size),
        desc="perplexity",
        unit="batch",
        disable=None if progress else True,
    ):
        idx, targets, mask = pad_batch(sequences, rows[s : s + batch_size], pad_id)
        logp = backend.to_numpy(model.token_logprobs(idx, targets)).astype(np.float64)
        mask = backend.to_numpy(mask)
        total_nll -= float((logp * mask).sum())
        n_tokens += int(mask.sum())
    return perplexity(total_nll, n_tokens), n_tokens


# --------------------------------------------------------------------------- recommendation


def recommendation_metrics(
    prepared: Prepared, k: int = 10, progress: bool = True, split: str = "test"
) -> dict:
    """HR@k / NDCG@k of every recommender on the leave-last-out items of ``split`` (module
    doc)."""
    train_seqs, item_tags = prepared.train_sequences(), prepared.item_terms()
    test_items = {rec["user"]: rec["item"] for rec in prepared.split(split)}
    out = {}
    for name, cls in tqdm(
        RECOMMENDERS.items(), desc="recommenders", disable=None if progress else True
    ):
        model = cls().fit(train_seqs, item_tags)
        out[name] = evaluate_ranking(model, test_items, k=k)
    return out


# --------------------------------------------------------------------------- the evaluation


@dataclass
class EvaluateConfig(RunOptions):
    """The options of ``minireason evaluate`` (:mod:`minireason.options`); the defaults of
    :func:`evaluate_run` are these."""

    description: ClassVar[str] = (
        "Reasons for the records with a target, scored (BLEU, ROUGE, USR, FMR, FCR, DIV, "
        "degenerate, perplexity; item-specificity, groundedness and copy rate against the "
        "item's training reviews, also for the real sentences) beside the baselines below, "
        "with 95% bootstrap intervals over the records and how often the model is ahead of "
        "each baseline; HR/NDCG@10 of four recommenders; 20 random records in full. Writes "
        "evaluation.json/.md/.png/.html and generations.jsonl.\n\nbaselines:\n"
        + "\n".join(f"  {name}: {line}" for name, line in BASELINES.items())
    )

    prepared: str = option(metavar="DIR", help="the prepared directory the run was trained on")
    run: str = option(metavar="DIR", help="a run of 'minireason train'")
    out: str | None = option(None, metavar="DIR", help="output directory (default: RUN/eval)")
    limit: int | None = option(None, min=2, help="evaluate the first N records only")
    batch_size: int = option(
        64, min=1, help="prompts per generation batch, sequences per loss batch"
    )
    seed: int = option(0, metavar="SEED", help="seed of the sampling and the random baseline")
    decode: str = option("step4", choices=DECODERS, help="step4: as 'explain' chooses; or greedy")
    split: str = option("test", choices=("test", "valid"), help="tune on valid, report on test")
    focus_from: str = option(
        "predicted",
        choices=FOCUS_FROM,
        help="predicted: the honest protocol; target: the oracle one, the test review's own "
        "feature as the focus (as PETER+/NETE are given it), labelled in every output",
    )


def evaluate_run(
    prepared_dir,
    run_dir,
    out_dir=None,
    limit: int | None = None,
    batch_size: int = EvaluateConfig.batch_size,
    seed: int = EvaluateConfig.seed,
    generate_fn: GenerateFn | None = None,
    progress: bool = True,
    decode: str = EvaluateConfig.decode,
    decoding: Decoding | None = None,
    split: str = EvaluateConfig.split,
    allow_other_data: bool = False,
    allow_unfinished: bool = False,
    focus_from: str = EvaluateConfig.focus_from,
    weights: ScoreWeights | None = None,
    weights_from: str = "run.json",
) -> dict:
    """Evaluate the fine-tuned model of ``run_dir`` and the baselines; write the outputs.

    Args:
        prepared_dir: the prepared directory the run was trained on.
        run_dir: a run directory of :func:`minireason.train.recipe.run_recipe`
            (:func:`minireason.train.run.load_run`).
        out_dir: where the outputs go (default ``run_dir/eval``).
        limit: only the first ``limit`` records with a target (None: all).
        batch_size: prompts per generation batch and sequences per perplexity batch.
        seed: seed of the random baseline.
        generate_fn: ``prompts (list of token-id lists) -> reasons (strings)``; default:
            the run's model decoding as ``decode`` says.
        decode: ``"step4"`` (default: the best of ``decoding.n_candidates`` samples, as
            ``minireason explain`` chooses it, :func:`minireason.reason.choose.choose_reasons`)
            or ``"greedy"`` (:func:`greedy_generate_fn`).
        decoding: the sampling settings (None: the run's, from ``run.json``).
        weights: the score's weights (None: the run's, from ``run.json``); ``weights_from``
            says where they came from (``run.json`` or a ``--weights`` file), recorded with
            them in ``info``.
        progress: show tqdm bars.
        split: ``"test"`` (default) or ``"valid"`` (for choosing settings).
        allow_other_data: evaluate even when ``prepared_dir`` is not the data the run was
            trained on.
        allow_unfinished: evaluate a run whose fine-tuning has not finished (the step is
            recorded in ``info.checkpoint_step`` either way).
        focus_from: ``"predicted"`` (default, the honest protocol: the prompts as prepared,
            their focus predicted from training data) or ``"target"`` (the oracle protocol:
            each prompt rebuilt with the test review's own feature as its focus and the
            evidence chosen for it, :func:`oracle_records`; labelled in every output).

    The output directory is checked before any work (absent, empty, or an earlier
    evaluation holding nothing else; never the run, its files or the prepared directory),
    and written whole at the end (:func:`write_outputs`).

    Returns:
        The dict written to ``evaluation.json``.
    """
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "eval"
    if limit is not None and limit < 2:
        raise ValueError(f"--limit must be at least 2 (DIV needs two records), got {limit}")
    if split not in ("test", "valid"):
        raise ValueError(f"split must be 'test' or 'valid', got {split!r}")
    if focus_from not in FOCUS_FROM:
        raise ValueError(f"focus_from must be one of {FOCUS_FROM}, got {focus_from!r}")
    weights_file = None if weights_from == RUN_JSON else weights_from
    check_output_dir(out, inputs=(prepared_dir, weights_file, *content_paths(run_dir)))
    prepared = load_prepared(prepared_dir)
    run = load_run(run_dir, allow_unfinished)
    check_same_data(run.info, prepared, allow_other_data)
    if run.tokenizer.vocab_size != prepared.tokenizer.vocab_size:
        raise ValueError(
            f"{run_dir}: the run's vocabulary ({run.tokenizer.vocab_size}) differs from "
            f"{prepared.path}'s ({prepared.tokenizer.vocab_size}); they cannot be paired"
        )
    model, tok = run.model, run.tokenizer
    decoding = decoding or run.info.decoding
    weights = weights or run.info.weights

    sequences = prepared.finetune[split]
    n = len(sequences) if limit is None else min(limit, len(sequences))
    if n < 2:
        raise ValueError(
            f"{prepared.path}: the {split} split has {n} records with a target; "
            "at least 2 are needed"
        )
    rows = np.arange(n)
    records = [prepared.split(split)[int(r)] for r in sequences.record[:n]]
    prompts = [prepared.prompts[split].get(int(r)).tolist() for r in sequences.record[:n]]
    if focus_from == "target":
        records, prompts = oracle_records(prepared, records)
    refs = [rec["target"] for rec in records]
    features_gt = [rec["feature"] for rec in records]
    train_with_target = [rec for rec in prepared.train if rec["target"] is not None]

    generate_fn_given = generate_fn is not None
    if decode not in DECODERS:
        raise ValueError(f"decode must be one of {DECODERS}, got {decode!r}")
    if generate_fn is None and decode == "greedy":
        generate_fn = greedy_generate_fn(model, tok, decoding.max_new_tokens, batch_size, progress)
    elif generate_fn is None:
        contexts = [
            ScoringContext.of_record(
                rec, prepared.reviews_by, prepared.known_words, prepared.particular_words
            )
            for rec in records
        ]

        def generate_fn(prompts: list[list[int]]) -> list[str]:
            per_batch = max(1, batch_size // decoding.n_candidates)
            return choose_reasons(
                model, tok, prompts, contexts, decoding, weights, seed, per_batch, progress
            )

    t_gen = time.perf_counter()
    answers = {"model": list(generate_fn(prompts))}
    seconds_generate = time.perf_counter() - t_gen
    if len(answers["model"]) != n:
        raise ValueError(f"generate_fn returned {len(answers['model'])} reasons for {n} prompts")
    ppl, n_ppl_tokens = reason_perplexity(model, sequences, rows, tok.pad_id, batch_size, progress)
    baselines, counts = baseline_answers(train_with_target, records, seed, prepared.lang)
    answers.update(baselines)

    scores = {
        name: explanation_metrics(answers[name], refs, features_gt, prepared.features)
        for name in SYSTEMS
    }
    scores["model"]["perplexity"] = ppl
    t_grounding = time.perf_counter()
    grounding = GroundingIndex(prepared.train, prepared.features)
    items = [rec["item"] for rec in records]
    for name in SYSTEMS:
        scores[name].update(grounding_metrics(answers[name], items, grounding))
    references = {**grounding_metrics(refs, items, grounding), "n": n}
    seconds_grounding = time.perf_counter() - t_grounding
    result = {
        "model": scores["model"],
        "baselines": {name: scores[name] for name in SYSTEMS[1:]},
        "references": references,
        "uncertainty": bootstrap_intervals(
            {name: answers[name] for name in SYSTEMS}, refs, features_gt, prepared.features
        ),
        "recommendation": recommendation_metrics(prepared, k=10, progress=progress, split=split),
        "info": {
            "prepared": str(prepared.path),
            "prepared_content": prepared.content,
            "run": str(run_dir),
            "run_content": run_content(run_dir),
            "checkpoint_step": run.step,
            "training_finished": run.finished,
            "model_size": {k: getattr(model.config, k) for k in ("n_layer", "n_head", "n_embd")},
            "split": split,
            "n_records": n,
            "n_test_records_with_target": len(sequences),
            "limit": limit,
            "perplexity_tokens": n_ppl_tokens,
            **counts,
            "focus_from": focus_from,
            "protocol": ORACLE_LABEL if focus_from == "target" else "honest (predicted focus)",
            "random_seed": seed,
            "batch_size": batch_size,
            "decode": "custom" if generate_fn_given else decode,
            "decoding": asdict(decoding)
            if decode == "step4"
            else {"greedy": True, "max_new_tokens": decoding.max_new_tokens},
            "weights": weights.to_dict() if decode == "step4" else None,
            "weights_from": weights_from if decode == "step4" else None,
            "grounding": grounding.params(),
            "seconds_generate": round(seconds_generate, 2),
            "seconds_grounding": round(seconds_grounding, 2),
            "seconds_total": round(time.perf_counter() - t0, 2),
        },
        "examples": examples(records, answers, N_EXAMPLES, seed),
    }
    write_outputs(result, answers, records, out)
    return result


def oracle_records(prepared: Prepared, records: list[dict]) -> tuple[list[dict], list[list[int]]]:
    """The oracle protocol's records and prompts: each record with ``focus`` its own
    ground-truth ``feature`` (and ``focus_from`` ``"oracle"``), its ``evidence`` chosen for
    that focus as ``prepare`` chooses it (:meth:`Prepared.evidence_for`), and its prompt
    rebuilt with both (:meth:`Prepared.prompt_for`). Raises ValueError for a directory
    prepared without a focus part (``--focus 0``): there is nowhere to put the feature."""
    if prepared.focus_size == 0:
        raise ValueError(
            f"--focus-from target: {prepared.path} was prepared with --focus 0, so its "
            "prompts have no focus part to give the feature in"
        )
    out, prompts = [], []
    for rec in records:
        focus = [rec["feature"]]
        evidence = prepared.evidence_for(rec["item"], focus, rec["user"])
        out.append({**rec, "focus": focus, "focus_from": "oracle", "evidence": evidence})
        prompts.append(prepared.prompt_for(rec, focus, evidence))
    return out, prompts


def examples(records: list[dict], answers: dict, n: int, seed: int) -> list[dict]:
    """``n`` records drawn at random (seeded, without replacement, shown in record order):
    each one's user, item, ground-truth feature, focus, the evidence its prompt quoted
    (``prompt_evidence``), reference and every system's answer (keyed by system), so a
    reader can judge the reasons themselves."""
    rng = np.random.default_rng([seed, len(records)])
    picks = sorted(rng.choice(len(records), size=min(n, len(records)), replace=False).tolist())
    return [
        {
            "record": i,
            "user": records[i]["user"],
            "item": records[i]["item"],
            "feature": records[i]["feature"],
            "focus": records[i].get("focus") or [],
            "prompt_evidence": records[i].get("evidence") or [],
            "reference": records[i]["target"],
            **{name: answers[name][i] for name in SYSTEMS},
        }
        for i in picks
    ]
