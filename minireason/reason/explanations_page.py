"""The explanations page: one self-contained HTML page to look at and point at.

    explained recommendations (minireason.reason.explain)
        ──► report data: JSON-ready dicts holding the numbers the CLI prints
        ──► the page (minireason.html_page; templates/explanations.js draws it)

``minireason explain ... --html FILE`` writes it for one user or for free-form input, and
``minireason demo`` writes ``runs/demo/report.html`` for its test users. Per user: the latest
history items (tags, aspects, rating); per recommendation, a card with the reason as tokens,
the prompt drawn as its segments (history blocks with their tags, aspects and rating; the
item's tags and focus) with every prompt token shaded by the attention the reason paid to it;
hovering, focusing or clicking a reason token shows the attention of *that* token over the
prompt (mean over layers and heads, or one layer and head picked in the card); the evidence
shares as bars; and step 4's decision: every candidate with its score and the parts of the
score (:func:`minireason.reason.explain.candidate_table`; the parts that are 0 for every
candidate named in one line rather than as columns, and each candidate's text on a line of
its own, so the table fits its card), and why the first one won.

The data of one explanation (:func:`explanation_data`):

- ``prompt.tokens`` ``(P,)`` labels and ``prompt.segments`` (``Segment`` dicts);
- ``reason_tokens`` ``(R,)``: each generated token (its label, and whether it starts a word);
- ``attention.mean`` ``(R, P)`` integers: the evidence matrix (mean over layers and heads)
  in units of ``1 / MEAN_SCALE``; ``attention.heads`` ``(L, H, R, P)`` integers: each layer's
  and head's weights in units of ``1 / HEAD_SCALE`` (coarser, to keep the page small);
- ``shares``: the evidence's owners and pieces (the CLI's ``evidence:`` lines);
- ``candidates``: the rows of ``candidate_table``, and ``decision``, its one-line summary.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from minireason import __version__
from minireason.html_page import render_page, template, write_page
from minireason.prep.prepared import Prepared
from minireason.reason.explain import (
    CANDIDATE_HEADERS,
    Explanation,
    Recommendation,
    candidate_table,
    decision_summary,
    parse_history,
    parse_tags,
    user_summary,
)

MEAN_SCALE = 10_000  # attention.mean holds round(weight * MEAN_SCALE)
HEAD_SCALE = 1_000  # attention.heads holds round(weight * HEAD_SCALE)
TEMPLATES = Path(__file__).with_name("templates")
TITLE = "minireason: explained recommendations"


def _as_units(weights: np.ndarray, scale: int) -> list:
    """Attention weights as nested lists of integers of ``1 / scale``."""
    return np.rint(np.asarray(weights, dtype=np.float64) * scale).astype(np.int64).tolist()


def explanation_data(expl: Explanation, tokenizer) -> dict:
    """The page data of one explanation (module docstring), JSON-ready.

    ``tokenizer`` (the run's) says which reason tokens begin with a space, so the reason
    reads as text."""
    ev = expl.evidence
    names = {s.owner: ("this item" if s.owner == "item" else s.label) for s in ev.owners}
    rows = candidate_table(expl)
    attention = {
        "mean": _as_units(ev.matrix, MEAN_SCALE),
        "mean_scale": MEAN_SCALE,
        "heads": None if ev.heads is None else _as_units(ev.heads, HEAD_SCALE),
        "head_scale": HEAD_SCALE,
        "n_layers": 0 if ev.heads is None else int(ev.heads.shape[0]),
        "n_heads": 0 if ev.heads is None else int(ev.heads.shape[1]),
    }
    mentioned = (
        expl.score.mentioned_focus + expl.score.mentioned_aspects + expl.score.mentioned_tags
    )
    return {
        "reason": expl.reason,
        "score": expl.score.total,
        "reason_tokens": _reason_tokens(expl, tokenizer),
        "copies": [
            {"text": c.text, "share": round(c.share, 3), "source": c.source} for c in expl.copies
        ],
        "prompt": {
            "tokens": list(ev.prompt_tokens),
            "segments": [asdict(s) for s in ev.segments],
            "text": expl.prompt_text,
            "history_used": expl.history_used,
        },
        "attention": attention,
        "shares": {
            kind: [
                {
                    "kind": s.kind,
                    "label": s.label,
                    "owner": s.owner,
                    "owner_name": names.get(s.owner, s.owner),
                    "share": s.share,
                    "shown": f"{100 * s.share:.1f}%",
                }
                for s in shares
            ]
            for kind, shares in (("owners", ev.owners), ("pieces", ev.pieces))
        },
        "focus": [s.label for s in ev.segments if s.kind == "focus"],
        "mentions": list(dict.fromkeys(mentioned)),
        "notes": list(expl.notes),
        "candidates": rows,
        "candidate_headers": CANDIDATE_HEADERS,
        "weights": asdict(expl.weights),
        "decision": decision_summary(rows),
    }


def _reason_tokens(expl: Explanation, tokenizer) -> list[dict]:
    """Each reason token: its label, whether it starts a word, and the share of its
    probability a copy head copied with the position it copied from (``from``: a prompt
    position, or ``P + r`` for the reason's own token ``r``; 0 and -1 without copying)."""
    best = expl.candidates[0]
    copied = best.copied if best.copied is not None else np.zeros(len(best.token_ids))
    source = best.copied_from if best.copied_from is not None else np.full(len(copied), -1)
    return [
        {
            "text": label,
            "space": tokenizer.decode([t]).startswith(" "),
            "copied": round(float(share), 3),
            "from": int(position),
        }
        for label, t, share, position in zip(
            expl.evidence.row_tokens, best.token_ids, copied, source, strict=True
        )
    ]


def user_section(
    prepared: Prepared, user: str, recs: list[Recommendation], tokenizer, latest: int = 3
) -> dict:
    """One user's part of the page: :func:`minireason.reason.explain.user_summary` (what
    the CLI prints) with each recommendation's :func:`explanation_data`."""
    section = user_summary(prepared, user, recs, latest)
    for row, rec in zip(section["recommendations"], recs, strict=True):
        row["explanation"] = explanation_data(rec.explanation, tokenizer)
    return section


def free_form_section(
    history_text: str | None, tags_text: str | None, expl: Explanation, tokenizer, latest: int = 3
) -> dict:
    """The page's part for free-form input (``explain --history ... --tags ...``): the
    history and tags parsed as :func:`~minireason.reason.explain.explain_free_form` parses
    them, and its explanation ``expl``."""
    history, tags = parse_history(history_text or ""), parse_tags(tags_text or "")
    return {
        "user": None,
        "n_history": len(history),
        "latest": [
            {"item": h.item, "tags": list(h.tags), "aspects": list(h.aspects), "rating": h.rating}
            for h in history[max(0, len(history) - latest) :]
        ],
        "recommendations": [
            {
                "rank": 1,
                "item": "",
                "title": "",
                "tags": list(tags),
                "recommender_score": None,
                "recommender_shown": "",
                "explanation": explanation_data(expl, tokenizer),
            }
        ],
    }


def report_about(run, settings, seed: int) -> dict:
    """What made the page: the run, its model's size, how reasons were chosen (``settings``:
    a :class:`minireason.train.run.ChoiceSettings`, the decoding and the weights with where
    they came from) and the seed."""
    cfg = run.model.config
    decoding = settings.decoding
    weights = ", ".join(f"{k} {v:g}" for k, v in settings.weights.to_dict().items() if v)
    return {
        "run": str(run.path),
        "prepared": run.info.prepared_path,
        "model": f"{cfg.n_layer} layers x {cfg.n_head} heads, {cfg.n_embd} wide",
        "prompt budget": f"{run.info.prompt_tokens} tokens",
        "decoding": (
            f"{decoding.n_candidates} candidates, temperature {decoding.temperature:g}, "
            f"top-p {decoding.top_p:g}, at most {decoding.max_new_tokens} tokens"
        ),
        "weights": f"{weights} (from {settings.weights_from})",
        "seed": seed,
        "minireason": __version__,
    }


def render_report(sections: list[dict], about: dict | None = None, title: str = TITLE) -> str:
    """The page's HTML for ``sections`` (:func:`user_section`, :func:`free_form_section`)."""
    data = {"title": title, "about": about or {}, "users": sections}
    return render_page(
        title,
        data,
        ["common.js", TEMPLATES / "explanations.js"],
        css=template(TEMPLATES / "explanations.css"),
    )


def write_report(path, sections: list[dict], about: dict | None = None) -> Path:
    """Write the page to ``path`` (atomically); returns the path."""
    return write_page(path, render_report(sections, about))
