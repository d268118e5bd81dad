"""From a user (or a free-form history) to recommendations with reasons and evidence.

This is the user-facing end of the pipeline, behind ``minireason explain`` and
``minireason demo``::

    prepared dir ──► user's history (training reviews, oldest first)
                 ──► recommend (hybrid CF + content, unless an item is given)
                 ──► predicted focus (the aspects to talk about, Prepared.focus_for)
                 ──► reasons.explain: 16 candidates, scored, best one + attention evidence

Inputs and fallbacks (never a traceback):

- an unknown user or item id is a ValueError that names it and shows a few valid ids;
- a user with no training history (cold start) gets popular items, and reasons drawn from
  the item tags only (``reasons.explain`` notes it);
- a free-form history is parsed by :func:`parse_history`; over-long input is cut to fit the
  model's context, oldest history first, and the cut is reported in the notes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from minireason.features import HistoryItem, predict_focus, profile, tag_counts
from minireason.prepare import Prepared
from minireason.reasons import N_CANDIDATES, Explanation, explain
from minireason.recommend import Hybrid

MAX_ASPECTS = 3  # aspects per history block, as minireason.features.history_items


@dataclass
class Recommendation:
    item: str
    score: float
    explanation: Explanation


def _unknown(kind: str, value: str, known) -> ValueError:
    sample = ", ".join(sorted(known)[:5])
    return ValueError(f"unknown {kind} id {value!r}: not in the prepared data (e.g. {sample})")


def user_history(
    prepared: Prepared, user: str, max_history: int | None = None
) -> list[HistoryItem]:
    """The user's training reviews as history blocks, oldest first (at most ``max_history``).

    Raises ValueError for a user the prepared data does not know.
    """
    if user not in prepared.users:
        raise _unknown("user", user, prepared.users)
    if max_history is None:
        max_history = int(prepared.config.get("max_history", 10))
    reviews = sorted((r for r in prepared.train if r["user"] == user), key=lambda r: r["time"])
    return [
        HistoryItem(
            r["item"], item_tags(prepared, r["item"]), r["aspects"][:MAX_ASPECTS], r["rating"]
        )
        for r in reviews[-max_history:]
    ]


def item_tags(prepared: Prepared, item: str) -> list[str]:
    """The item's tags as the prompts show them (ValueError for an unknown item)."""
    if item not in prepared.items:
        raise _unknown("item", item, prepared.items)
    return list(prepared.items[item].get("tags", []))


_RATING = re.compile(r"\(\s*([0-5](?:\.\d+)?)\s*\)\s*$")


def parse_history(text: str) -> list[HistoryItem]:
    """Free-form history: past items separated by ``;``, each a comma-separated list of what
    the user liked about it, optionally ending with a rating in parentheses (default 5)::

        "strings, tuner (4); pedal, patch cables"

    Each block becomes a history item whose tags and aspects are those terms.
    Raises ValueError naming the block that has no term.
    """
    history = []
    for i, block in enumerate(text.split(";"), 1):
        if not block.strip():
            continue
        rating = 5.0
        m = _RATING.search(block)
        if m:
            rating = float(m.group(1))
            block = block[: m.start()]
        terms = [t.strip().lower() for t in block.split(",") if t.strip()]
        if not terms:
            raise ValueError(f"--history: block {i} has a rating but no terms")
        history.append(HistoryItem(f"past item {i}", terms, terms[:MAX_ASPECTS], rating))
    return history


def parse_tags(text: str) -> list[str]:
    """Comma-separated item tags, lower-cased, empty ones dropped."""
    return [t.strip().lower() for t in text.split(",") if t.strip()]


def free_form_focus(run_dir, history: list[HistoryItem], tags: list[str]) -> list[str]:
    """The focus of a free-form prompt, predicted as ``prepare`` did for the run's training
    data, from the run's ``features.json`` (its feature set, rates and focus size): the
    given tags that are aspects, ranked by ``predict_focus`` with their order standing in
    for review counts; with no such tag, the history's aspects. A run without that file,
    or whose prepared data had no focus, gets none."""
    path = Path(run_dir) / "features.json"
    if not path.is_file():
        return []
    try:
        feats = json.loads(path.read_text(encoding="utf-8"))
        known, rates, k = feats["df"], feats.get("rates", {}), int(feats.get("focus", 0))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: corrupt feature file ({exc}); copy it again from the "
                         "prepared directory") from None
    return predict_focus(tag_counts(tags, known), profile(history)["aspects"], rates, k)


def fit_recommender(prepared: Prepared) -> Hybrid:
    """The hybrid recommender (item CF + tag/aspect content) on the training split."""
    return Hybrid().fit(prepared.train_sequences(), prepared.item_terms())


def explain_for_user(
    model,
    prepared: Prepared,
    user: str,
    item: str | None = None,
    k: int = 3,
    n_candidates: int = N_CANDIDATES,
    seed: int = 0,
    recommender: Hybrid | None = None,
    max_new_tokens: int = 40,
) -> list[Recommendation]:
    """Recommend ``k`` items to ``user`` (or take ``item``) and explain each.

    Returns one :class:`Recommendation` per item, best first (score ``nan`` for a given item).
    """
    history = user_history(prepared, user)
    if item is not None:
        items = [(item, float("nan"))]
        item_tags(prepared, item)  # validate before generating
    else:
        recommender = recommender or fit_recommender(prepared)
        items = recommender.recommend(user, k=k)
    budget = int(prepared.config.get("prompt_tokens", 64))
    aspects = profile(history)["aspects"]
    out = []
    for rank, (it, score) in enumerate(items):
        explanation = explain(
            model,
            prepared.tokenizer,
            history,
            item_tags(prepared, it),
            n_candidates=n_candidates,
            seed=seed + rank,
            max_new_tokens=max_new_tokens,
            max_prompt_tokens=budget,
            item=it,
            item_title=prepared.items[it].get("title", ""),
            profile_aspects=aspects,
            focus=prepared.focus_for(it, aspects),
        )
        out.append(Recommendation(it, score, explanation))
    return out


def format_explanation(expl: Explanation, top: int = 3) -> str:
    """A few indented lines: the reason, what it draws on, and what it mentions."""
    names = {s.owner: ("this item" if s.owner == "item" else s.label) for s in expl.evidence.owners}
    owners = ", ".join(f"{names[s.owner]} {100 * s.share:.0f}%" for s in expl.evidence.owners[:top])

    def piece(s) -> str:
        what = {"rating": f"rating {s.label}", "focus": f"focus {s.label!r}"}.get(s.kind, repr(s.label))
        return f"{what} ({names.get(s.owner, s.owner)}) {100 * s.share:.0f}%"

    pieces = ", ".join(piece(s) for s in expl.evidence.pieces[:top])
    mentioned = (expl.score.mentioned_focus + expl.score.mentioned_aspects
                 + expl.score.mentioned_tags)
    focus = [s.label for s in expl.evidence.segments if s.kind == "focus"]
    lines = [f'  reason:    "{expl.reason}"']
    if focus:
        lines.append(f"  focus:     {', '.join(focus)} (predicted from training data)")
    lines += [
        f"  evidence:  attention on {owners}",
        f"             strongest pieces: {pieces}",
        "  mentions:  "
        + (", ".join(dict.fromkeys(mentioned)) or "none of the focus, profile aspects or item tags"),
    ]
    lines += [f"  note:      {note}" for note in expl.notes]
    return "\n".join(lines)
