"""The evaluation page: ``evaluation.html``, the metrics and every generation, browsable.

    evaluate_run's result, answers and records (minireason.evaluation.evaluate)
        ──► page data (JSON-ready: the metrics as ``evaluation.md`` prints them, and per
            record the reference, each system's answer and that answer's own scores)
        ──► the page (minireason.html_page; templates/evaluation.js draws it)

``minireason evaluate`` writes it beside ``evaluation.md``. The page shows the metrics table,
a bar chart of it, the recommenders' HR/NDCG, and the generations side by side (the
reference, the model, the retrieval, template and random baselines), sortable and
filterable: by whether a system names the record's ground-truth feature (as FMR counts it),
by ROUGE-L (the worst first), by the user's history length (cold start: none), by answers
repeated across records (what USR counts). It is the lesson of tutorial 08 ("how the
metrics mislead") on real outputs: the average hides which records the scores come from.

Per record and system, :func:`record_scores` gives what the corpus metrics average or count:
ROUGE-1 and ROUGE-L F of the pair (x100; their means over the records are the table's
``rouge1_f`` and ``rougeL_f``), and whether the answer names the ground-truth feature (their
mean is FMR).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from minireason.evaluation.evaluate import model_label
from minireason.evaluation.metrics import (
    LOWER_IS_BETTER,
    RATIO_METRICS,
    TEXT_METRICS,
    format_metric,
    rouge_l,
    rouge_n,
)
from minireason.html_page import render_page, write_page
from minireason.text import mentions, tokens

TEMPLATES = Path(__file__).with_name("templates")
TITLE = "minireason: evaluation"


def record_scores(answer: str, reference: str, feature: str) -> dict:
    """One answer's own scores against its record (module docstring): ``rouge1_f``,
    ``rougeL_f`` (x100) and ``names_feature``."""
    hyp, ref = tokens(answer), tokens(reference)
    return {
        "rouge1_f": 100.0 * rouge_n(hyp, ref, 1)[2],
        "rougeL_f": 100.0 * rouge_l(hyp, ref)[2],
        "names_feature": bool(mentions(hyp, [feature])),
    }


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
    metrics = [*TEXT_METRICS, *RATIO_METRICS]
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
