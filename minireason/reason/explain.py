"""One explanation end to end, and the user-facing explanations behind ``minireason explain``.

:func:`explain` turns one (history, item tags, focus) into a reason with its evidence::

    prompt (minireason.prep.prompts) ──► N candidates sampled, scored and ranked
        (minireason.reason.choose) ──► the best one
        ──► its attention evidence (minireason.reason.evidence)

and :func:`explain_for_user` wraps it for a known user of a prepared directory::

    prepared dir ──► user's history (training reviews, oldest first)
                 ──► recommend (hybrid CF + content, unless an item is given)
                 ──► predicted focus (the aspects to talk about, Prepared.focus_for)
                 ──► explain

Inputs and fallbacks (never a traceback):

- an unknown user or item id is a ValueError that names it and shows a few valid ids;
- a user with no training history (cold start) gets popular items, and an item-only prompt
  (the user coverage of every candidate is 0); an item without tags is explained from the
  history alone; both empty is a ValueError: there is nothing to explain from;
- a free-form history is parsed by :func:`parse_history`; over-long input is cut to fit the
  prompt budget, oldest history first, and the cut is reported in the notes.

Seeds. ``explain_for_user`` seeds rank ``r`` (0-based) with ``seed + r``; a batch job that
must not depend on how it is cut into tasks seeds each (user, item) with
:func:`pair_seed` instead, and ``explain --user U --item I --seed S`` with ``S`` that seed
gives the same reason again.
"""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from dataclasses import dataclass, field
from typing import ClassVar

from minireason.options import option
from minireason.prep.features import (
    MAX_HISTORY_ASPECTS,
    HistoryItem,
    predict_focus,
    profile,
    tag_counts,
)
from minireason.prep.prepared import Prepared
from minireason.prep.prompts import build_prompt, render_prompt
from minireason.reason import choose
from minireason.reason.evidence import Evidence, attention_evidence
from minireason.reason.recommend import DEFAULT_RECOMMENDER, RECOMMENDERS, Recommender
from minireason.reason.scoring import Candidate, ScoreBreakdown
from minireason.text import inert
from minireason.train.run import Decoding, Run, RunOptions, ScoreWeights


@dataclass
class ExplainConfig(RunOptions):
    """The options of ``minireason explain`` (:mod:`minireason.options`)."""

    description: ClassVar[str] = (
        "Explain a known user's recommendations (--user, or one --item), or free-form input "
        "(--history and --tags); each reason with its attention evidence."
    )
    epilog: ClassVar[str] = (
        "examples:\n  minireason explain --prepared runs/demo/prepared --run runs/demo/run "
        "--user A00625243BI8W1SSZNLMD\n  minireason explain --run runs/demo/run "
        '--history "strings, tuner (4); pedal, patch cables" --tags "capo, guitar"'
    )

    run: str = option(metavar="DIR", help="a run of 'minireason train'")
    prepared: str | None = option(None, metavar="DIR", help="the run's prepared directory")
    user: str | None = option(None, metavar="ID", help="a user id of the prepared data")
    item: str | None = option(None, metavar="ID", help="explain this item (default: recommend)")
    history: str | None = option(
        None, metavar="TEXT", help='free-form history: "term, term (rating); term", oldest first'
    )
    tags: str | None = option(None, metavar="TEXT", help='free-form item tags: "tag, tag, ..."')
    k: int = option(3, min=1, flag="-k", metavar="K", help="recommendations to explain")
    seed: int = option(0, metavar="SEED", help="seed of the first reason's candidates")
    plot: str | None = option(
        None, metavar="FILE.png", help="attention heatmap of the first reason"
    )
    html: str | None = option(
        None, metavar="FILE.html", help="a self-contained page: token attention, every candidate"
    )
    show_candidates: bool = option(False, help="print every candidate with each part of its score")

    def __post_init__(self):
        if (self.user is None) == (self.history is None and self.tags is None):
            raise ValueError(
                "give either --user ID (with --prepared) or --history/--tags, not both"
            )
        if self.user is not None and not self.prepared:
            raise ValueError("--user needs --prepared DIR (the prepared directory of the run)")


@dataclass
class Explanation:
    reason: str
    score: ScoreBreakdown
    candidates: list[Candidate]  # best first
    evidence: Evidence
    prompt_text: str  # the plain-language rendering of the prompt
    prompt_ids: list[int]
    history_used: int  # history blocks that fitted the prompt (newest ones)
    notes: list[str] = field(default_factory=list)  # fallbacks taken, cropping
    weights: ScoreWeights = field(default_factory=ScoreWeights)  # what scored the candidates
    grounding: list[str] = field(default_factory=list)  # the prompt's evidence sentences
    copies: list = field(default_factory=list)  # Copy runs of a copy head (empty without)


def explain(
    model,
    tokenizer,
    history: list[HistoryItem],
    item_tags: list[str],
    *,
    prompt_tokens: int,
    decoding: Decoding | None = None,
    seed=0,
    profile_aspects: list[str] | None = None,
    focus: list[str] | None = None,
    evidence: list[str] | None = None,
    past_reviews: list[str] | None = None,
    known_words: frozenset[str] | None = None,
    particular_words: frozenset[str] | None = None,
    weights: ScoreWeights | None = None,
    item: str = "",
    item_title: str = "",
    top_k_evidence: int = 5,
    lang: str | None = None,
) -> Explanation:
    """Generate ``decoding.n_candidates`` reasons for (history, item), return the best with
    its evidence.

    Args:
        model, tokenizer: a trained GPT and its tokenizer.
        history: the user's past items, oldest first (may be empty: cold start).
        item_tags: the target item's tags (may be empty if the history is not).
        prompt_tokens: the prompt budget, the one the model was fine-tuned with
            (``RunInfo.prompt_tokens``); the oldest history is dropped first to fit.
        decoding: candidates, temperature, top-p and length (``RunInfo.decoding``;
            None: :class:`~minireason.train.run.Decoding`'s defaults).
        seed: integer seed or ``numpy.random.Generator``, or the candidates' own random
            streams (:func:`minireason.reason.choose.record_streams`); same seed, same
            explanation.
        profile_aspects: the user's profile aspects to cover (default: those of ``history``,
            ``features.profile``).
        focus: the aspects the reason should talk about, put in the prompt and scored
            (``Prepared.focus_for`` predicts them as ``prepare`` did for the model's
            training data; None or empty: no focus part, for a model prepared without).
        evidence: what other users wrote about the item, put in the prompt
            (``Prepared.evidence_for`` chooses it as ``prepare`` did; None or empty: no
            evidence part, for free-form input or a model prepared without).
        past_reviews: the user's own earlier reviews (``Prepared.reviews_by``); step 4
            prefers the candidate worded as they write (the phrasing term; None or empty:
            the term is 0 for every candidate).
        known_words: the words the training reviews use (``Prepared.known_words``); step 4
            charges a candidate for each word outside them (None or empty, as for free-form
            input: no word is charged).
        particular_words: the words particular to the item (``Prepared.particular_words``);
            step 4 rewards a candidate that says one (None or empty: no reward).
        weights: the score's weights (the run's, ``RunInfo.weights``; None: a new run's
            defaults).
        item, item_title: the item's id and title, for the evidence labels and prompt text.
        lang: the language of the prompt text (``Prepared.lang``; None: by its script,
            :func:`~minireason.prep.prompts.render_prompt`).
        top_k_evidence: single tags/aspects listed in the evidence.

    Raises:
        ValueError: both history and item tags empty, or a budget that leaves no room.
    """
    item_tags = [t.strip() for t in item_tags if t and t.strip()]
    if not history and not item_tags:
        raise ValueError(
            "nothing to explain from: the history is empty (cold start) and "
            "the item has no tags; give --history or --tags"
        )
    block_size = model.config.block_size
    if not 2 <= prompt_tokens < block_size:
        raise ValueError(
            f"prompt_tokens={prompt_tokens} must be in 2..{block_size - 1} (the model's "
            f"block_size is {block_size})"
        )
    budget = prompt_tokens
    decoding = decoding or Decoding()
    weights = weights or ScoreWeights()
    if profile_aspects is None:
        profile_aspects = profile(history)["aspects"]
    focus = [a.strip() for a in (focus or []) if a and a.strip()]
    evidence = [e.strip() for e in (evidence or []) if e and e.strip()]
    prompt = build_prompt(
        history, item_tags, budget, tokenizer, item=item, focus=focus, evidence=evidence
    )
    notes = []
    if not history:
        notes.append("cold start: no history, the reason is drawn from the item tags only")
    if not item_tags:
        notes.append("the item has no tags: the reason is drawn from the history only")
    if prompt.n_dropped:
        notes.append(f"{prompt.n_dropped} oldest history items dropped to fit {budget} tokens")
    if prompt.n_tags_dropped:
        notes.append(f"{prompt.n_tags_dropped} item tags dropped to fit {budget} tokens")

    streams = [seed] if isinstance(seed, (list, tuple)) else seed
    samples = choose.sample_candidates(model, tokenizer, [prompt.ids], decoding, streams)[0]
    context = choose.ScoringContext.of(
        profile_aspects,
        item_tags,
        focus,
        [h.rating for h in history],
        past_reviews,
        known_words,
        particular_words,
    )
    candidates = choose.rank(tokenizer, samples, context, weights)
    best = candidates[0]
    attention = attention_evidence(
        model, tokenizer, prompt.ids, best.token_ids, prompt.segments, top_k_evidence
    )
    kept_history = history[len(history) - prompt.n_history :]
    kept_tags = item_tags[: len(item_tags) - prompt.n_tags_dropped]
    return Explanation(
        reason=best.text,
        score=best.score,
        candidates=candidates,
        evidence=attention,
        prompt_text=render_prompt(kept_history, kept_tags, item_title, focus, evidence, lang),
        prompt_ids=prompt.ids,
        history_used=prompt.n_history,
        notes=notes,
        weights=weights,
        grounding=evidence,
        copies=copies(best, prompt.segments, len(prompt.ids), tokenizer),
    )


# --------------------------------------------------------------------------- users


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
        max_history = prepared.max_history
    reviews = sorted((r for r in prepared.train if r["user"] == user), key=lambda r: r["time"])
    return [
        HistoryItem(
            r["item"],
            item_tags(prepared, r["item"]),
            r["aspects"][:MAX_HISTORY_ASPECTS],
            r["rating"],
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
        "剧情，演员（4）；画面、音乐"

    (Chinese punctuation ，、；（） stands for its ASCII twin.) Each block becomes a history
    item whose tags and aspects are those terms.
    Raises ValueError naming the block that has no term.
    """
    history = []
    for i, block in enumerate(text.translate(_FULLWIDTH).split(";"), 1):
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
        history.append(HistoryItem(f"past item {i}", terms, terms[:MAX_HISTORY_ASPECTS], rating))
    return history


def parse_tags(text: str) -> list[str]:
    """Comma-separated item tags (or separated by Chinese ，、), lower-cased, empty ones
    dropped."""
    return [t.strip().lower() for t in text.translate(_FULLWIDTH).split(",") if t.strip()]


_FULLWIDTH = str.maketrans({"，": ",", "、": ",", "；": ";", "（": "(", "）": ")"})


def free_form_focus(
    feature_info: dict, history: list[HistoryItem], tags: list[str], k: int
) -> list[str]:
    """The focus of a free-form prompt, predicted as ``prepare`` did for the run's training
    data from its feature file (``Run.feature_info``: the feature set and rates): the given
    tags that are aspects, ranked by ``predict_focus`` with their order standing in for
    review counts; with no such tag, the history's aspects. ``k`` is the run's focus size
    (0: no focus)."""
    known, rates = feature_info["df"], feature_info.get("rates", {})
    return predict_focus(tag_counts(tags, known), profile(history)["aspects"], rates, k)


def fit_recommender(prepared: Prepared, name: str = DEFAULT_RECOMMENDER) -> Recommender:
    """A recommender of :data:`~minireason.reason.recommend.RECOMMENDERS` (default: the
    hybrid of item CF and tag/aspect content) fitted on the training split."""
    if name not in RECOMMENDERS:
        raise ValueError(f"unknown recommender {name!r}; choose one of {sorted(RECOMMENDERS)}")
    return RECOMMENDERS[name]().fit(prepared.train_sequences(), prepared.item_terms())


def pair_seed(seed: int, user: str, item: str) -> int:
    """The seed of one (user, item) explanation: 63 bits of SHA-256 over ``(seed, user,
    item)``. It depends on nothing else (not the rank, the batch or the order), and distinct
    pairs get unrelated seeds (a 32-bit checksum would repeat among a million users)."""
    key = json.dumps([int(seed), str(user), str(item)])  # unambiguous, whatever the ids hold
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def explain_item(
    run: Run,
    prepared: Prepared,
    history: list[HistoryItem],
    item: str,
    seed,
    decoding: Decoding | None = None,
    profile_aspects: list[str] | None = None,
    *,
    user: str,
    weights: ScoreWeights | None = None,
) -> Explanation:
    """Explain ``item`` to ``user`` with ``history`` as ``minireason explain --user`` does:
    ``run``'s model and prompt budget, its decoding settings and score weights unless
    ``decoding`` or ``weights`` is given,
    the item's tags and title from ``prepared``, the focus ``prepare`` would predict for the
    user's profile aspects (default: those of ``history``) and the evidence it would choose
    (other users' training sentences about the item: never ``user``'s own).

    Raises ValueError for an unknown item, or for nothing to explain from (no history and
    an item without tags)."""
    aspects = profile(history)["aspects"] if profile_aspects is None else profile_aspects
    focus = prepared.focus_for(item, aspects)
    return explain(
        run.model,
        run.tokenizer,
        history,
        item_tags(prepared, item),
        prompt_tokens=run.info.prompt_tokens,
        decoding=decoding or run.info.decoding,
        seed=seed,
        item=item,
        item_title=prepared.items[item].get("title", ""),
        profile_aspects=aspects,
        focus=focus,
        evidence=prepared.evidence_for(item, focus, user),
        past_reviews=prepared.reviews_by(user),
        known_words=prepared.known_words,
        particular_words=prepared.particular_words(item),
        weights=weights or run.info.weights,
        lang=prepared.lang,
    )


def explain_for_user(
    run: Run,
    prepared: Prepared,
    user: str,
    item: str | None = None,
    k: int = ExplainConfig.k,
    seed: int = 0,
    recommender: Recommender | None = None,
    decoding: Decoding | None = None,
    weights: ScoreWeights | None = None,
) -> list[Recommendation]:
    """Recommend ``k`` items to ``user`` (or take ``item``) and explain each with ``run``'s
    model, its prompt budget and (unless ``decoding`` or ``weights`` is given) its decoding
    settings and score weights.

    ``prepared`` must be the data the run was trained on (checked by the caller with
    :func:`minireason.train.run.check_same_data`). Returns one :class:`Recommendation` per
    item, best first (score ``nan`` for a given item).
    """
    history = user_history(prepared, user)
    if item is not None:
        items = [(item, float("nan"))]
        item_tags(prepared, item)  # validate before generating
    else:
        recommender = recommender or fit_recommender(prepared)
        items = recommender.recommend(user, k=k)
    aspects = profile(history)["aspects"]
    return [
        Recommendation(
            it,
            score,
            explain_item(
                run,
                prepared,
                history,
                it,
                seed + rank,
                decoding,
                aspects,
                user=user,
                weights=weights,
            ),
        )
        for rank, (it, score) in enumerate(items)
    ]


def explain_free_form(
    run: Run,
    history_text: str,
    tags_text: str,
    seed: int = 0,
    decoding: Decoding | None = None,
    weights: ScoreWeights | None = None,
) -> Explanation:
    """Explain free-form input (``--history "..." --tags "..."``) with ``run``: the prompt
    is built to the run's prompt budget and focus size, exactly like its training prompts,
    and the candidates scored with the run's weights unless ``weights`` is given."""
    history, tags = parse_history(history_text or ""), parse_tags(tags_text or "")
    focus = free_form_focus(run.feature_info, history, tags, run.info.focus)
    return explain(
        run.model,
        run.tokenizer,
        history,
        tags,
        prompt_tokens=run.info.prompt_tokens,
        decoding=decoding or run.info.decoding,
        seed=seed,
        focus=focus,
        weights=weights or run.info.weights,
    )


COPIED = 0.5  # a reason token counts as copied when the copy head gave this share of its p
PLACES = {
    "hist": "a history block",
    "item": "the item block",
    "tag": "a tag",
    "aspect": "an aspect",
    "rating": "a rating",
    "focus": "the focus",
    "evidence": "the evidence",
}


@dataclass(frozen=True)
class Copy:
    """A run of reason tokens copied from consecutive context positions."""

    text: str  # the copied tokens, as they read
    share: float  # the smallest share of probability the copy head gave them
    source: str  # where from: the prompt segment's kind (PLACES), or "the reason"
    rows: tuple[int, ...]  # the reason tokens


def copies(best: Candidate, segments: list, n_prompt: int, tokenizer) -> list[Copy]:
    """What a reason's copy head copied (tokens with at least :data:`COPIED` of their
    probability copied), consecutive tokens copied from consecutive positions in one run;
    empty for a model without a copy head. ``segments``: the prompt's segment map;
    ``n_prompt``: its length (positions from there on are the reason's own)."""
    if best.copied is None:
        return []
    runs: list[list[int]] = []
    for r, (share, source) in enumerate(zip(best.copied, best.copied_from, strict=True)):
        if share < COPIED or source < 0:
            continue
        previous = runs[-1][-1] if runs else None
        if previous == r - 1 and best.copied_from[previous] == source - 1:
            runs[-1].append(r)
        else:
            runs.append([r])
    return [
        Copy(
            tokenizer.decode([best.token_ids[r] for r in rows]).strip(),
            float(min(best.copied[r] for r in rows)),
            _place(segments, int(best.copied_from[rows[0]]), n_prompt),
            tuple(rows),
        )
        for rows in runs
    ]


def _place(segments, position: int, n_prompt: int) -> str:
    """The innermost prompt segment holding ``position`` (as :data:`PLACES` names it)."""
    if position >= n_prompt:
        return "the reason"
    holding = [s for s in segments if s.start <= position < s.end]
    if not holding:
        return "the prompt"
    inner = min(holding, key=lambda s: s.end - s.start)
    return PLACES.get(inner.kind, inner.kind)


def format_explanation(expl: Explanation, top: int = 3, candidates: bool = False) -> str:
    """A few indented lines: the reason, what it draws on, and what it mentions (and, with
    ``candidates``, every step-4 candidate: :func:`format_candidates`)."""
    names = {s.owner: ("this item" if s.owner == "item" else s.label) for s in expl.evidence.owners}
    owners = ", ".join(f"{names[s.owner]} {100 * s.share:.0f}%" for s in expl.evidence.owners[:top])

    def piece(s) -> str:
        what = {"rating": f"rating {s.label}", "focus": f"focus {s.label!r}"}.get(
            s.kind, repr(s.label)
        )
        return f"{what} ({names.get(s.owner, s.owner)}) {100 * s.share:.0f}%"

    pieces = ", ".join(piece(s) for s in expl.evidence.pieces[:top])
    mentioned = (
        expl.score.mentioned_focus + expl.score.mentioned_aspects + expl.score.mentioned_tags
    )
    focus = [s.label for s in expl.evidence.segments if s.kind == "focus"]
    lines = [f'  reason:    "{expl.reason}"']
    if focus:
        lines.append(f"  focus:     {', '.join(focus)} (predicted from training data)")
    lines += [f'  grounded:  another user wrote "{sentence}"' for sentence in expl.grounding]
    lines += [
        f"  evidence:  attention on {owners}",
        f"             strongest pieces: {pieces}",
        "  mentions:  "
        + (
            ", ".join(dict.fromkeys(mentioned)) or "none of the focus, profile aspects or item tags"
        ),
    ]
    if expl.copies:
        lines.append(
            "  copied:    "
            + ", ".join(f"{c.text!r} from {c.source} ({100 * c.share:.0f}%)" for c in expl.copies)
        )
    lines = [inert(line) for line in [*lines, *(f"  note:      {note}" for note in expl.notes)]]
    if candidates:
        lines.append(format_candidates(expl))
    return "\n".join(lines)


def candidate_table(expl: Explanation) -> list[dict]:
    """Step 4's decision as rows, best first (row 1 is the reason kept): every sampled
    candidate with its text, how generation stopped, its score, each signed part of the score
    (:meth:`~minireason.reason.scoring.ScoreBreakdown.parts` with the weights it was scored
    with: the parts sum to the score), the raw terms and the phrases it mentions. ``shown``
    holds each number as printed (:func:`format_candidates`, the HTML report).

    Returns:
        one dict per candidate: ``rank, chosen, text, finish, total, parts, terms, mentions,
        shown``; JSON-ready.
    """
    rows = []
    for rank, c in enumerate(expl.candidates, 1):
        b = c.score
        parts = b.parts(expl.weights)
        rows.append(
            {
                "rank": rank,
                "chosen": rank == 1,
                "text": c.text,
                "finish": c.finish,
                "total": b.total,
                "parts": parts,
                "terms": {
                    "user_coverage": b.user_coverage,
                    "item_coverage": b.item_coverage,
                    "focus_coverage": b.focus_coverage,
                    "phrasing": b.phrasing,
                    "mean_logprob": b.mean_logprob,
                    "lowest_logprob": b.lowest_logprob,
                    "length": b.length,
                    "consensus": b.consensus,
                    "repetition": b.repetition,
                    "echoes": b.echoes,
                    "unknown_words": b.unknown_words,
                    "specific_words": b.specific_words,
                    "degenerate": b.degenerate,
                    "unfinished": b.unfinished,
                    "contradicts": b.contradicts,
                    "duplicate": b.duplicate,
                    "truncated": b.truncated,
                    "empty": b.empty,
                },
                "mentions": list(
                    dict.fromkeys(b.mentioned_focus + b.mentioned_aspects + b.mentioned_tags)
                ),
                "shown": {"total": _signed(b.total), **{k: _signed(v) for k, v in parts.items()}},
            }
        )
    return rows


def decision_summary(rows: list[dict]) -> str:
    """One line on why step 4 kept the first of :func:`candidate_table`'s ``rows``: its
    margin over the runner-up and the part of the score that differs most between them."""
    best = rows[0]
    if len(rows) == 1:
        return f"kept the only candidate (score {best['shown']['total']})"
    second = rows[1]
    margin = best["total"] - second["total"]
    if margin <= 0:
        return (
            f"#1 and #2 tie at {best['shown']['total']}; the sampling order decides "
            "(the sort keeps it)"
        )
    part = max(best["parts"], key=lambda k: best["parts"][k] - second["parts"][k])
    return (
        f"kept #1 (score {best['shown']['total']}): {margin:.3f} above #2 "
        f"({second['shown']['total']}); the largest difference is {CANDIDATE_HEADERS[part]} "
        f"({best['shown'][part]} against {second['shown'][part]})"
    )


def _signed(x: float) -> str:
    """A score or one part of it as printed: sign and three decimals (no ``-0.000``)."""
    return f"{x + 0.0:+.3f}"


CANDIDATE_HEADERS = {
    "total": "score",
    "user": "user",
    "item": "item",
    "focus": "focus",
    "phrasing": "phrase",
    "specific": "specific",
    "logprob": "logprob",
    "lowest": "lowest",
    "length": "length",
    "consensus": "agree",
    "repetition": "repeat",
    "echo": "echo",
    "unknown": "unknown",
    "degenerate": "degen",
    "unfinished": "unend",
    "contradicts": "against",
    "duplicate": "dup",
    "truncated": "cut",
    "empty": "empty",
}


TEXT_AT_LEAST = 40  # characters of a candidate's text its line must have room for


def format_candidates(expl: Explanation, width: int = 120) -> str:
    """The table of :func:`candidate_table` as ``minireason explain --show-candidates``
    prints it: one line per candidate, best first, ``*`` on the one kept, with its score,
    each part of the score that is not 0, how generation stopped and its text.

    A part whose weight is 0 is 0 for every candidate, and so is, often, a penalty no
    candidate incurs: neither has a column (the header names them), so the parts shown sum
    to the score. Lines keep within ``width`` characters: the header is wrapped, and a text
    is cut with "..." to fit its line; when the columns leave it less than
    :data:`TEXT_AT_LEAST` characters, how each candidate stopped and its text are a line of
    their own, below its numbers.
    """
    rows = candidate_table(expl)
    weights = expl.weights.to_dict()
    names = {k: CANDIDATE_HEADERS[k] for k in weights}
    weighed = [k for k in weights if weights[k] != 0]
    shown = [k for k in weighed if any(row["parts"][k] != 0 for row in rows)]
    about = [
        f"{len(rows)} candidates, best first; score = the sum of the parts shown (each a "
        "weight times a term)",
        "weights: " + ", ".join(f"{names[k]}\xa0{weights[k]:g}" for k in weighed),
    ]
    unweighed = [names[k] for k in weights if weights[k] == 0]
    idle = [names[k] for k in weighed if k not in shown]
    if unweighed:
        about.append(f"not shown, weight 0: {', '.join(unweighed)}")
    if idle:
        about.append(f"not shown, 0 for every candidate: {', '.join(idle)}")
    lines = [_wrapped(line, width, INDENT) for line in about]
    lines[0] = "  step 4:    " + lines[0][len(INDENT) :]

    columns = ["total", *shown]
    headers = {"shown": CANDIDATE_HEADERS, "finish": "finish"}
    wide = {k: max(len(r["shown"][k]) for r in [*rows, headers]) for k in columns}
    finish = max(len(r["finish"]) for r in [*rows, headers])

    def cells(row: dict) -> str:
        return " ".join(f"{row['shown'][k]:>{wide[k]}}" for k in columns)

    header = "       #  " + cells(headers)
    starts = [f"    {'*' if r['chosen'] else ' '} {r['rank']:>2}  {cells(r)}" for r in rows]
    tails = [f"  {r['finish']:<{finish}}  " for r in rows]
    if width - len(starts[0] + tails[0]) >= TEXT_AT_LEAST:  # the text at the end of the line
        lines.append(header + f"  {'finish':<{finish}}  text")
        for start, tail, row in zip(starts, tails, rows, strict=True):
            lines.append(start + tail + _quoted(row["text"], width - len(start + tail)))
    else:  # how it stopped and the text on a line of their own, below the numbers
        lines += [header, f"{TEXT_INDENT}{'finish':<{finish}}  text"]
        for start, row in zip(starts, rows, strict=True):
            text = f"{TEXT_INDENT}{row['finish']:<{finish}}  "
            lines += [start, text + _quoted(row["text"], width - len(text))]
    lines.append(_wrapped(decision_summary(rows), width, INDENT))
    return "\n".join(lines)


INDENT = " " * 13  # where the text of an explanation's lines starts
TEXT_INDENT = " " * 11  # where a line of a candidate's finish and text starts


def _wrapped(text: str, width: int, first: str) -> str:
    """``text`` after ``first``, wrapped to ``width`` with its next lines at :data:`INDENT`
    (never at a no-break space, which is printed as a space)."""
    wrapped = textwrap.fill(text, width, initial_indent=first, subsequent_indent=INDENT)
    return wrapped.replace("\xa0", " ")


def _quoted(text: str, room: int) -> str:
    """``repr(text)``, cut with "..." inside the quotes to at most ``room`` characters."""
    quoted, n = repr(text), room - 5
    while len(quoted) > room and n > 0:
        quoted, n = repr(text[:n] + "..."), n - 1
    return quoted


def user_summary(
    prepared: Prepared, user: str, recs: list[Recommendation], latest: int = 3
) -> dict:
    """What the report of one user shows, JSON-ready: ``user``, ``n_history`` (training
    reviews), the ``latest`` history items (``item, tags, aspects, rating``) and each
    recommendation's ``rank, item, title, tags, recommender_score`` (None for a given item).
    :func:`format_user_report` prints it; :mod:`minireason.reason.explanations_page` draws it."""
    history = user_history(prepared, user)
    return {
        "user": user,
        "n_history": len(history),
        "latest": [
            {"item": h.item, "tags": list(h.tags), "aspects": list(h.aspects), "rating": h.rating}
            for h in history[max(0, len(history) - latest) :]
        ],
        "recommendations": [
            {
                "rank": rank,
                "item": rec.item,
                "title": prepared.items[rec.item].get("title", ""),
                "tags": list(prepared.items[rec.item].get("tags", [])),
                "recommender_score": None if rec.score != rec.score else rec.score,
                "recommender_shown": ""
                if rec.score != rec.score
                else f"recommender score {rec.score:.2f}",
            }
            for rank, rec in enumerate(recs, 1)
        ],
    }


def format_user_report(
    prepared: Prepared,
    user: str,
    recs: list[Recommendation],
    latest: int = 3,
    candidates: bool = False,
) -> str:
    """What ``minireason explain --user`` and the demo print for one user: the latest
    ``latest`` history items, then each recommendation with its explanation (and, with
    ``candidates``, every step-4 candidate: :func:`format_candidates`)."""
    summary = user_summary(prepared, user, recs, latest)
    if summary["n_history"]:
        lines = [f"user {user}: {summary['n_history']} past reviews; the latest:"]
    else:
        lines = [f"user {user}: no past reviews (cold start)"]
    for h in summary["latest"]:
        said = ", ".join(h["aspects"]) or "-"
        lines.append(
            f"  - {h['item']} ({', '.join(h['tags'][:4])}); said: {said}; rated {h['rating']:g}/5"
        )
    lines = [inert(line) for line in lines]
    for row, rec in zip(summary["recommendations"], recs, strict=True):
        tags = ", ".join(row["tags"][:5])
        score = f"  {row['recommender_shown']}" if row["recommender_shown"] else ""
        lines.append(inert(f" {row['rank']}. {row['item']} ({tags}){score}"))
        lines.append(format_explanation(rec.explanation, candidates=candidates))
    return "\n".join(lines)
