"""The evaluation's outputs, drawn from what ``evaluate_run`` computed.

    evaluate_run's result, answers and records (minireason.evaluation.evaluate)
        ──► evaluation.md     Markdown tables (markdown_report; the CLI prints it too)
        ──► evaluation.png    a bar chart with the bootstrap intervals (plot_scores)
        ──► evaluation.html   the page (page data ──► minireason.html_page;
                              templates/evaluation.js draws it)
        ──► evaluation.json and generations.jsonl
    written together by :func:`write_outputs`, never half of them.

Everything here reads the result and nothing else: the model's label under the oracle
protocol and the protocol's sentence come from ``info`` (``focus_from``, ``protocol``), the
systems from ``baselines``, the numbers are printed by
:func:`minireason.evaluation.metrics.format_metric`.

The page says what made it (:func:`evaluation_about`: the run and its checkpoint step, the
model's size, the decoding and the score's weights) and shows the metrics table, a bar chart
of it, the grounding table (:func:`grounding_rows`: the model, the baselines and the real
reference sentences), the recommenders' HR/NDCG, and the generations side by side (the
reference, the model, the retrieval, evidence, template and random baselines), sortable and
filterable: by whether a system names the record's ground-truth feature (as FMR counts it),
by ROUGE-L (the worst first), by the user's history length (cold start: none), by answers
repeated across records (what USR counts). It is the lesson of tutorial 08 ("how the metrics mislead") on
real outputs: the average hides which records the scores come from.

Per record and system, :func:`record_scores` gives what the corpus metrics average or count:
ROUGE-1 and ROUGE-L F of the pair (x100; their means over the records are the table's
``rouge1_f`` and ``rougeL_f``), and whether the answer names the ground-truth feature (their
mean is FMR).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from minireason.evaluation.metrics import (
    GROUNDING_METRICS,
    LOWER_IS_BETTER,
    METRICS,
    RATIO_METRICS,
    TEXT_METRICS,
    UNCERTAIN_METRICS,
    format_metric,
    rouge_l,
    rouge_n,
)
from minireason.files import Kind, check_output, directory_in_place, json_object
from minireason.html_page import render_page, write_page
from minireason.text import inert, mentions, tokens

TEMPLATES = Path(__file__).with_name("templates")
TITLE = "minireason: evaluation"
OUTPUT_FILES = (
    "evaluation.json",
    "evaluation.md",
    "evaluation.png",
    "evaluation.html",
    "generations.jsonl",
)


def model_label(info: dict) -> str:
    """The model's name in every table: ``model``, or under the oracle protocol
    ``model (oracle: test feature)``."""
    return "model (oracle: test feature)" if info.get("focus_from") == "target" else "model"


# --------------------------------------------------------------------------- evaluation.md


def markdown_report(result: dict) -> str:
    """The explanation table (one row per system) and the recommendation table."""
    info = result["info"]
    rows = {"model": result["model"], **result["baselines"]}
    oracle = info.get("focus_from") == "target"
    lines = [
        f"## Explanations ({info['n_records']} records of the {info['split']} split"
        + (", ORACLE feature)" if oracle else ")"),
        "",
        *([f"**{info['protocol']}.**", ""] if oracle else []),
        "| system | " + " | ".join(METRICS) + " |",
        "|---" * (len(METRICS) + 1) + "|",
    ]
    for name, s in rows.items():
        lines.append(
            f"| {model_label(info) if name == 'model' else name} | "
            + " | ".join(format_metric(m, s[m]) for m in METRICS)
            + " |"
        )
    lines += [
        "",
        "Text metrics x100; USR, FMR, FCR, DIV and degenerate (the share of reasons with a "
        "repeated word 3-gram, a word twice in a row, fewer than 4 words or a broken character) are ratios; DIV "
        "and degenerate: lower is better.",
        f"Model perplexity on the reasons: {result['model']['perplexity']:.2f} "
        f"({info['perplexity_tokens']} tokens"
        + (", after the prompts as prepared, not the oracle ones)." if oracle else ")."),
        "",
        *grounding_markdown(result),
        *uncertainty_markdown(result.get("uncertainty"), info),
        f"## Recommendation (leave-last-out, {next(iter(result['recommendation'].values()))['n_users']} users)",
        "",
        "| recommender | HR@10 | NDCG@10 |",
        "|---|---|---|",
    ]
    for name, r in result["recommendation"].items():
        lines.append(f"| {name} | {r['hr@10']:.4f} | {r['ndcg@10']:.4f} |")
    lines += ["", *examples_markdown(result.get("examples") or [], info)]
    return "\n".join(lines) + "\n"


def grounding_rows(result: dict) -> dict[str, dict]:
    """``{label: scores}`` of the grounding table: the model, each baseline and the real
    reference sentences (``result["references"]``), in that order; ``{}`` for a result
    without ``references`` (one made by hand in Python, or an older ``evaluation.json``)."""
    if "references" not in result:
        return {}
    rows = {model_label(result["info"]): result["model"], **result["baselines"]}
    return {**rows, "reference": result["references"]}


def grounding_markdown(result: dict) -> list[str]:
    """The grounding table (:mod:`minireason.evaluation.grounding`) as Markdown lines, with
    what each column counts (none for a result without it)."""
    rows = grounding_rows(result)
    if not rows:
        return []
    params = result["info"]["grounding"]
    lines = [
        "### Grounding in the item's training reviews",
        "",
        "| system | " + " | ".join(GROUNDING_METRICS) + " |",
        "|---" * (len(GROUNDING_METRICS) + 1) + "|",
    ]
    for name, s in rows.items():
        lines.append(
            f"| {name} | " + " | ".join(format_metric(m, s[m]) for m in GROUNDING_METRICS) + " |"
        )
    return [
        *lines,
        "",
        "Shares of the answers (reference: the real review sentences). item_specificity: with "
        "a word of the item's training reviews that at most "
        f"{params['specific_max_items']} of the {params['n_items']} items' training reviews "
        "use; groundedness: every aspect and name (a capitalised word not starting its "
        "sentence, a word of letters and digits) in it is in the item's training reviews; "
        f"copy_rate (lower is better): {params['copy_words']} consecutive words of it are in "
        "one training sentence.",
        "",
    ]


def uncertainty_markdown(u: dict | None, info: dict) -> list[str]:
    """The bootstrap intervals and the paired comparison as Markdown lines (none for a
    result without them)."""
    if not u:
        return []
    names = list(UNCERTAIN_METRICS.values())
    lines = [
        f"### How sure ({100 * u['level']:.0f}% bootstrap intervals: {u['n_resamples']:,} "
        f"resamples of the {info['n_records']:,} records, seed {u['seed']})",
        "",
        "| system | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for name, iv in u["intervals"].items():
        cells = ["-".join(format_metric(m, v) for v in iv[m]) for m in UNCERTAIN_METRICS]
        lines.append(
            f"| {model_label(info) if name == 'model' else name} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "Share of the same resamples on which the model scores above each baseline (0.5: no "
        "telling them apart; above 0.975 or below 0.025: the 95% interval of the difference "
        "leaves out 0):",
        "",
        "| baseline | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for name, ahead in u["model_ahead"].items():
        lines.append(
            f"| {name} | " + " | ".join(f"{ahead[m]:.3f}" for m in UNCERTAIN_METRICS) + " |"
        )
    return [*lines, ""]


def examples_markdown(rows: list[dict], info: dict) -> list[str]:
    """The reports' section of the result's ``examples``
    (:func:`minireason.evaluation.evaluate.examples`): each record's reference beside the
    model's reason and the baselines that return real sentences, unedited."""
    if not rows:
        return []
    lines = [
        f"## {len(rows)} random records (seed {info['random_seed']}), unedited"
        + (" (ORACLE feature)" if info.get("focus_from") == "target" else ""),
        "",
        "Drawn at random from the evaluated records; the reference is the real review's "
        "sentence, which no system saw.",
        "",
    ]
    for row in rows:
        lines += [
            f"**record {row['record']}** (user {row['user']}, item {row['item']}, feature "
            f"*{row['feature']}*, focus {', '.join(row['focus']) or '-'})",
            "",
            f"- reference: {row['reference']}",
            f"- **model**: {row['model']}",
            f"- retrieval: {row['retrieval']}",
            f"- evidence: {row['evidence']}"
            + ("" if row["prompt_evidence"] else " (no evidence: retrieval's answer)"),
            f"- template: {row['template']}",
            "",
        ]
    return [inert(line) for line in lines]


# --------------------------------------------------------------------------- evaluation.png


def plot_scores(result: dict, path) -> Path:
    """Grouped bar chart: text metrics (x100) on the left, ratios on the right; error bars on
    BLEU-1, BLEU-4, ROUGE-L and FMR are the 95% bootstrap intervals (``uncertainty``)."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

    rows = {"model": result["model"], **result["baselines"]}
    intervals = (result.get("uncertainty") or {}).get("intervals", {})
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [5, 4]})
    width = 0.8 / len(rows)
    for ax, metrics, label in (
        (axes[0], TEXT_METRICS, "score x100"),
        (axes[1], RATIO_METRICS, "ratio"),
    ):
        x = np.arange(len(metrics))
        for j, (name, s) in enumerate(rows.items()):
            at = x + (j - (len(rows) - 1) / 2) * width
            shown = model_label(result["info"]) if name == "model" else name
            ax.bar(at, [s[m] for m in metrics], width, label=shown)
            iv = intervals.get(name, {})
            known = [i for i, m in enumerate(metrics) if m in iv]
            if known:
                value = np.array([s[metrics[i]] for i in known])
                low, high = np.array([iv[metrics[i]] for i in known]).T
                ax.errorbar(
                    at[known],
                    value,
                    yerr=np.maximum([value - low, high - value], 0.0),
                    fmt="none",
                    ecolor="black",
                    elinewidth=0.8,
                    capsize=1.5,
                )
        ax.set_xticks(x, metrics)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_title("DIV: lower is better", fontsize=9)
    oracle = (
        " (ORACLE: the test feature given)" if result["info"].get("focus_from") == "target" else ""
    )
    bars = ", error bars: 95% bootstrap intervals" if intervals else ""
    fig.suptitle(
        f"Explanations on {result['info']['n_records']} {result['info']['split']} "
        f"records{oracle}{bars}"
    )
    fig.legend(
        *axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(rows), frameon=False
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


# --------------------------------------------------------------------------- evaluation.html


def record_scores(answer: str, reference: str, feature: str) -> dict:
    """One answer's own scores against its record (module docstring): ``rouge1_f``,
    ``rougeL_f`` (x100) and ``names_feature``."""
    hyp, ref = tokens(answer), tokens(reference)
    return {
        "rouge1_f": 100.0 * rouge_n(hyp, ref, 1)[2],
        "rougeL_f": 100.0 * rouge_l(hyp, ref)[2],
        "names_feature": bool(mentions(hyp, [feature])),
    }


def evaluation_about(info: dict) -> dict:
    """What made the evaluation, from its ``info``, as the page's list shows it: the run and
    its checkpoint step, the model's size (layers x heads x width), the decoding, the score's
    weights with where they came from, the records and the seed. A key ``info`` lacks is left
    out (a result made by hand in Python may carry only a few)."""
    about = {}
    if info.get("run") is not None:
        step = info.get("checkpoint_step")
        unfinished = ", fine-tuning not finished" if info.get("training_finished") is False else ""
        about["run"] = info["run"] + (
            "" if step is None else f" (checkpoint step {step}{unfinished})"
        )
    if info.get("prepared") is not None:
        about["prepared"] = info["prepared"]
    if size := info.get("model_size"):
        about["model"] = f"{size['n_layer']} layers x {size['n_head']} heads, {size['n_embd']} wide"
    d, decode = info.get("decoding") or {}, info.get("decode")
    if decode == "step4" and d:
        about["decoding"] = (
            f"step 4: the best-scored of {d['n_candidates']} candidates, temperature "
            f"{d['temperature']:g}, top-p {d['top_p']:g}, at most {d['max_new_tokens']} tokens"
        )
    elif decode == "greedy" and d:
        about["decoding"] = f"greedy, at most {d['max_new_tokens']} tokens"
    elif decode == "custom":
        about["decoding"] = "custom (reasons from a generate_fn given in Python)"
    if decode == "step4" and info.get("weights"):
        weights = ", ".join(f"{k} {v:g}" for k, v in info["weights"].items() if v)
        about["weights"] = f"{weights} (from {info.get('weights_from') or 'run.json'})"
    if info.get("n_records") is not None:
        of = info.get("n_test_records_with_target")
        split = f" {info['split']}" if info.get("split") else ""
        about["records"] = f"{info['n_records']}" + (
            "" if of is None else f" of the {of}{split} records with a target"
        )
    if info.get("random_seed") is not None:
        about["seed"] = info["random_seed"]
    return about


def evaluation_page_data(result: dict, answers: dict, records: list[dict]) -> dict:
    """The page data, JSON-ready.

    Args:
        result: what ``evaluate_run`` returns (``evaluation.json``).
        answers: ``{system: [N answers]}``, ``system`` in model and the baselines.
        records: the N evaluated records (``user``, ``item``, ``feature``, ``target``, and
            when known ``history`` and ``focus``).
    """
    systems = ["model", *result["baselines"]]
    rows = {"model": result["model"], **result["baselines"]}
    intervals = (result.get("uncertainty") or {}).get("intervals", {})
    metrics = list(METRICS)
    copies = {s: Counter(tuple(tokens(a)) for a in answers[s]) for s in systems}
    out_records = []
    for i, rec in enumerate(records):
        history = rec.get("history")
        out_records.append(
            {
                "i": i,
                "user": rec["user"],
                "item": rec["item"],
                "feature": rec["feature"],
                "reference": rec["target"],
                "n_history": None if history is None else len(history),
                "focus": list(rec.get("focus") or []),
                "answers": {
                    s: {
                        "text": answers[s][i],
                        **record_scores(answers[s][i], rec["target"], rec["feature"]),
                        "copies": copies[s][tuple(tokens(answers[s][i]))],
                    }
                    for s in systems
                },
            }
        )
    rec_rows = result.get("recommendation", {})
    return {
        "title": TITLE,
        "info": result["info"],
        "about": evaluation_about(result["info"]),
        "systems": systems,
        "metrics": {
            "names": metrics,
            "text": list(TEXT_METRICS),
            "lower_is_better": list(LOWER_IS_BETTER),
            "rows": [
                {
                    "system": model_label(result["info"]) if name == "model" else name,
                    "values": {m: s[m] for m in metrics},
                    "shown": {m: format_metric(m, s[m]) for m in metrics},
                    "interval": {
                        m: "-".join(format_metric(m, v) for v in low_high)
                        for m, low_high in intervals.get(name, {}).items()
                    },
                }
                for name, s in rows.items()
            ],
            "perplexity": result["model"].get("perplexity"),
        },
        "grounding": {
            "names": list(GROUNDING_METRICS),
            "params": result["info"].get("grounding"),
            "rows": [
                {
                    "system": name,
                    "values": {m: s[m] for m in GROUNDING_METRICS},
                    "shown": {m: format_metric(m, s[m]) for m in GROUNDING_METRICS},
                }
                for name, s in grounding_rows(result).items()
            ],
        },
        "recommendation": [
            {
                "name": name,
                "hr": r["hr@10"],
                "ndcg": r["ndcg@10"],
                "n_users": r.get("n_users"),
                "shown": {"hr": f"{r['hr@10']:.4f}", "ndcg": f"{r['ndcg@10']:.4f}"},
            }
            for name, r in rec_rows.items()
        ],
        "records": out_records,
    }


def render_evaluation_page(result: dict, answers: dict, records: list[dict]) -> str:
    """The page's HTML (:func:`evaluation_page_data` drawn by ``templates/evaluation.js``)."""
    data = evaluation_page_data(result, answers, records)
    return render_page(
        TITLE,
        data,
        ["common.js", TEMPLATES / "evaluation.js"],
        css=(TEMPLATES / "evaluation.css").read_text(encoding="utf-8"),
    )


def write_evaluation_page(result: dict, answers: dict, records: list[dict], path) -> Path:
    """Write ``evaluation.html`` to ``path`` (atomically); returns the path."""
    return write_page(path, render_evaluation_page(result, answers, records))


# --------------------------------------------------------------------------- the files


EVALUATION_DIR = Kind(  # what --out may replace whole: an evaluation and nothing else
    "an evaluation",
    lambda d: (
        json_object(d / "evaluation.json") is not None
        and all(p.name in OUTPUT_FILES for p in d.iterdir())
    ),
    directory=True,
)


def check_output_dir(out: Path, inputs=()) -> None:
    """Raise ValueError (naming ``--out``) unless ``out`` is absent, an empty directory, or
    an earlier evaluation's directory holding nothing else (it is replaced whole), and
    neither one of ``inputs`` nor holding one (:func:`minireason.files.check_output`)."""
    check_output(out, "--out", EVALUATION_DIR, inputs)


def write_outputs(result: dict, answers: dict, records: list[dict], out: Path) -> None:
    """:data:`OUTPUT_FILES`: ``evaluation.json``, ``evaluation.md``, ``evaluation.png``,
    ``evaluation.html`` and ``generations.jsonl`` (each record's reference and every
    system's answer), written into a hidden directory and put in place together
    (:func:`minireason.files.directory_in_place`): never half an evaluation.

    Args:
        result: what ``evaluate_run`` returns.
        answers: ``{system: [N answers]}``, ``system`` in model and the baselines.
        records: the N evaluated records.
        out: the output directory (:func:`check_output_dir` says which may be used).
    """
    systems = ["model", *result["baselines"]]
    with directory_in_place(out) as tmp:
        (tmp / "evaluation.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        (tmp / "evaluation.md").write_text(markdown_report(result), encoding="utf-8")
        plot_scores(result, tmp / "evaluation.png")
        write_evaluation_page(result, answers, records, tmp / "evaluation.html")
        with open(tmp / "generations.jsonl", "w", encoding="utf-8") as fh:
            for i, rec in enumerate(records):
                row = {
                    "user": rec["user"],
                    "item": rec["item"],
                    "feature": rec["feature"],
                    "reference": rec["target"],
                    **{name: answers[name][i] for name in systems},
                }
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
