"""Seed step 4: from several generated candidates, pick the reason most relevant to the user
and the item, and show the evidence it draws on.

For one (user history, item tags) prompt (``minireason.prompts``) we sample ``N`` candidates
(top-p, seeded, one batch: ``minireason.generate``), score each, keep the best, and read its
evidence from the attention weights.

Scoring. A candidate's words are lower-cased word tokens; a phrase (aspect or tag, possibly
several words) is *mentioned* when its words occur consecutively in the candidate. With
``A`` the user's profile aspects, ``G`` the item's tags, ``Q`` the prompt's focus (the
aspects it asks the reason to talk about, ``minireason.features.predict_focus``), ``M(c)``
the phrases ``c`` mentions, and ``w`` a :class:`ScoreWeights`::

    user_coverage  = |A ∩ M(c)| / |A|        (0 when A is empty: cold start)
    item_coverage  = |G ∩ M(c)| / |G|        (0 when G is empty)
    focus_coverage = |Q ∩ M(c)| / |Q|        (0 when Q is empty)
    mean_logprob   = mean over c's tokens (its <eos> included) of log p(token | prompt, before)
    repetition     = 1 - distinct word bigrams / word bigrams   (0 below two bigrams)

    score = w.user * user_coverage + w.item * item_coverage + w.focus * focus_coverage
            + w.logprob * mean_logprob - w.repetition * repetition
            - w.duplicate * [c repeats an earlier candidate's words]
            - w.truncated * [c hit max_new_tokens or the context before <eos>]
            - w.empty     * [c has no word at all]

Coverage rewards relevance, the log-probability rewards fluent, likely text (it is <= 0),
and the penalties push degenerate output (loops, copies, cut-off or empty text) down.

Evidence. One forward pass over ``prompt + chosen reason`` gives each layer's attention
``(H, T, T)``; we average over layers and heads. The rows we read are the positions whose
output *generated* a reason token: the prompt's last token (``<reason>``, which produced the
first reason token) up to the token before the final one; row ``i`` is the attention while
producing reason token ``i``. For each row, the weight on a prompt segment is the sum over
the segment's tokens; averaging the rows gives the segment's mass. Segments are then
aggregated by owner (``hist:i``, the i-th history item, or ``item``, the target item's
block), normalised to sum to 1 over the prompt, and ranked; the same is done for the single
tags and aspects inside them. Attention is a view into what the model looked at, not a proof
of why it said something; we show it as such.

Fallbacks: an empty history (cold start) gives an item-only prompt, and the user coverage is
0 for every candidate; an item without tags is explained from the history alone (item
coverage 0). Both empty is a ValueError: there is nothing to explain from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from minireason import backend
from minireason.features import HistoryItem, profile
from minireason.generate import generate
from minireason.prompts import Segment, build_prompt, render_prompt

WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

# How step 4 samples its candidates. Chosen on the *validation* split of Musical Instruments
# (1,236 reviews with a target) with the small preset, 2026-11-27: 8 candidates at temperature
# 1.0 gave BLEU-4 0.54, ROUGE-L 15.8, FMR 0.219, USR 0.947; 16 at 0.7 gave BLEU-4 1.03,
# ROUGE-L 18.2, FMR 0.273, USR 0.862 (more candidates, 32, added nothing). Those runs predate
# the focus part of the prompt. With it (small preset, same split, 16 at 0.7): focus 3 and
# focus weight 1.0 gave FMR 0.333, BLEU-4 0.79, ROUGE-L 18.3; focus 2 gave FMR 0.324,
# BLEU-4 0.80, ROUGE-L 18.8; focus weight 0 (the prompt alone) FMR 0.322, weight 2 FMR 0.331.
N_CANDIDATES = 16
TEMPERATURE = 0.7
TOP_P = 0.9


@dataclass
class ScoreWeights:
    """Weights of the score (see the module docstring for the formula)."""

    user: float = 1.0
    item: float = 1.0
    focus: float = 1.0
    logprob: float = 0.2
    repetition: float = 1.0
    duplicate: float = 1.0
    truncated: float = 0.5
    empty: float = 10.0


@dataclass
class ScoreBreakdown:
    """Every term of one candidate's score, and the phrases it mentions."""

    user_coverage: float
    item_coverage: float
    focus_coverage: float
    mean_logprob: float
    repetition: float
    duplicate: bool
    truncated: bool
    empty: bool
    total: float
    mentioned_aspects: list[str]  # profile aspects the text names literally
    mentioned_tags: list[str]  # item tags the text names literally
    mentioned_focus: list[str] = field(default_factory=list)  # focus aspects it names


@dataclass
class Candidate:
    text: str
    token_ids: list[int]  # generated ids, the stopping <eos> included
    logprobs: np.ndarray  # (len(token_ids),)
    finish: str  # "eos", "max_new_tokens" or "length"
    score: ScoreBreakdown


@dataclass
class Share:
    """One evidence entry: a segment owner or a single tag/aspect, and its attention share."""

    kind: str  # "hist" / "item" for owners; "tag" / "aspect" / "rating" for pieces
    label: str  # item id, or the tag / aspect text
    owner: str  # "hist:i" or "item"
    share: float  # fraction of the attention paid to the prompt


@dataclass
class Evidence:
    owners: list[Share]  # history items and the target item, largest share first
    pieces: list[Share]  # single tags / aspects / ratings, largest share first (top_k)
    matrix: np.ndarray  # (R, P): rows = reason tokens generated, cols = prompt tokens
    row_tokens: list[str]  # the token each row generated
    prompt_tokens: list[str]
    segments: list[Segment]


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


# --------------------------------------------------------------------------- scoring


def words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text``."""
    return WORD.findall(text.lower())


def mentions(text_words: list[str], phrases: list[str]) -> list[str]:
    """The phrases (in their given order, each once) whose words occur consecutively."""
    padded = " " + " ".join(text_words) + " "
    found = []
    for phrase in phrases:
        key = " ".join(words(phrase))
        if key and f" {key} " in padded and phrase not in found:
            found.append(phrase)
    return found


def repetition(text_words: list[str]) -> float:
    """``1 - distinct bigrams / bigrams``: 0 for no repeated bigram, towards 1 for a loop."""
    bigrams = list(zip(text_words, text_words[1:]))
    if len(bigrams) < 2:
        return 0.0
    return 1.0 - len(set(bigrams)) / len(bigrams)


def score_candidate(text: str, logprobs, finish: str, profile_aspects: list[str],
                    item_tags: list[str], duplicate: bool = False,
                    weights: ScoreWeights | None = None,
                    focus: list[str] | None = None) -> ScoreBreakdown:
    """Score one candidate (formula in the module docstring).

    Args:
        text: the candidate's text; logprobs: ``(n,)`` its tokens' log-probabilities;
        finish: how generation stopped ("eos" or a limit); duplicate: it repeats an earlier
        candidate; profile_aspects, item_tags, focus: the phrases to cover.
    """
    focus = focus or []
    w = weights or ScoreWeights()
    text_words = words(text)
    aspects = mentions(text_words, profile_aspects)
    tags = mentions(text_words, item_tags)
    user_cov = len(aspects) / len(set(profile_aspects)) if profile_aspects else 0.0
    item_cov = len(tags) / len(set(item_tags)) if item_tags else 0.0
    focused = mentions(text_words, focus)
    focus_cov = len(focused) / len(set(focus)) if focus else 0.0
    mean_lp = float(np.mean(logprobs)) if len(logprobs) else 0.0
    rep = repetition(text_words)
    truncated = finish != "eos"
    empty = not text_words
    total = (w.user * user_cov + w.item * item_cov + w.focus * focus_cov + w.logprob * mean_lp
             - w.repetition * rep - w.duplicate * duplicate - w.truncated * truncated
             - w.empty * empty)
    return ScoreBreakdown(user_cov, item_cov, focus_cov, mean_lp, rep, duplicate, truncated,
                          empty, float(total), aspects, tags, focused)


def rank_candidates(tokenizer, tokens, logprobs, finishes, profile_aspects: list[str],
                    item_tags: list[str], weights: ScoreWeights | None = None,
                    focus: list[str] | None = None) -> list[Candidate]:
    """Decode and score the sampled rows of one prompt; return them best first.

    Args:
        tokens, logprobs, finishes: per candidate, as in :class:`minireason.generate.Generation`.
        profile_aspects, item_tags, weights, focus: as in :func:`score_candidate`.

    A candidate whose words repeat an earlier candidate's is marked ``duplicate``. The sort
    is stable: ties keep the sampling order.
    """
    candidates, seen = [], set()
    for ids, logp, finish in zip(tokens, logprobs, finishes, strict=True):
        text = tokenizer.decode(ids, skip_special=True).strip()
        key = " ".join(words(text))
        score = score_candidate(text, logp, finish, profile_aspects, item_tags,
                                duplicate=key in seen, weights=weights, focus=focus)
        seen.add(key)
        candidates.append(Candidate(text, ids, logp, finish, score))
    candidates.sort(key=lambda c: -c.score.total)
    return candidates


# --------------------------------------------------------------------------- evidence


def segment_mass(attention, rows, segments: list[Segment]) -> np.ndarray:
    """Mean attention (over ``rows``) paid to each segment, summed over its tokens.

    Args:
        attention: ``(T, T)`` weights (row = query position, col = key position).
        rows: query positions to read.
        segments: spans ``start:end`` of key positions.

    Returns:
        ``(len(segments),)``.
    """
    read = attention[np.asarray(rows)]  # (R, T)
    return np.array([read[:, s.start:s.end].sum(axis=1).mean() for s in segments])


def rank_shares(segments: list[Segment], mass: np.ndarray, top_k: int | None = None):
    """``Share`` entries for ``segments`` with ``mass`` normalised to sum 1, largest first."""
    total = float(mass.sum())
    shares = [Share(s.kind, s.label, s.owner, float(m) / total if total > 0 else 0.0)
              for s, m in zip(segments, mass, strict=True)]
    shares.sort(key=lambda s: -s.share)
    return shares if top_k is None else shares[:top_k]


def aggregate_evidence(attention, prompt_len: int, segments: list[Segment], top_k: int = 5):
    """Evidence from averaged attention ``(T, T)`` over a prompt of ``prompt_len`` tokens.

    The rows read are ``prompt_len - 1 .. T - 1`` (the positions that generated the reason).
    Owners are the top-level ``hist`` / ``item`` segments (they tile the prompt); pieces are
    the ``tag`` / ``aspect`` / ``rating`` segments, each normalised over its own group.

    Returns:
        ``(owners, pieces)``: lists of :class:`Share`.
    """
    rows = range(prompt_len - 1, attention.shape[0])
    top = [s for s in segments if s.kind in ("hist", "item")]
    inner = [s for s in segments if s.kind not in ("hist", "item")]
    owners = rank_shares(top, segment_mass(attention, rows, top))
    pieces = rank_shares(inner, segment_mass(attention, rows, inner), top_k) if inner else []
    return owners, pieces


def attention_evidence(model, tokenizer, prompt_ids: list[int], reason_ids: list[int],
                       segments: list[Segment], top_k: int = 5) -> Evidence:
    """Forward ``prompt + reason`` once and read the evidence (see the module docstring).

    ``reason_ids`` are the generated ids, the stopping ``<eos>`` included; the sequence fed is
    the prompt and every reason id but the last (whose attention generated nothing). The
    model should be in eval mode (``checkpoint.load_model`` returns it so): dropout would
    perturb the weights read.
    """
    xp = backend.array_module(model.params["wte"])
    seq = prompt_ids + reason_ids[:-1]
    model.forward(xp.asarray([seq], dtype=xp.int64), keep_cache=False)
    layers = model.attention_weights()  # per layer (1, H, T, T)
    mean = backend.to_numpy(sum(a[0].mean(axis=0) for a in layers) / len(layers))  # (T, T)
    P = len(prompt_ids)
    owners, pieces = aggregate_evidence(mean, P, segments, top_k)
    return Evidence(
        owners=owners,
        pieces=pieces,
        matrix=mean[P - 1:, :P],  # rows: positions P-1 .. end, each generated a reason token
        row_tokens=[_token_text(tokenizer, t) for t in reason_ids],
        prompt_tokens=[_token_text(tokenizer, t) for t in prompt_ids],
        segments=segments,
    )


def _token_text(tokenizer, token_id: int) -> str:
    """A printable label for one token: its text without the leading space, else its ascii()
    (for whitespace, control characters and partial UTF-8 bytes)."""
    text = tokenizer.decode([token_id]).strip()
    return text if text and text.isprintable() and text.isascii() else ascii(text or " ")


# --------------------------------------------------------------------------- explain


def explain(model, tokenizer, history: list[HistoryItem], item_tags: list[str],
            profile_aspects: list[str] | None = None, n_candidates: int = N_CANDIDATES, seed=0,
            max_new_tokens: int = 40, top_p: float = TOP_P, temperature: float = TEMPERATURE,
            max_prompt_tokens: int | None = None, weights: ScoreWeights | None = None,
            item: str = "", item_title: str = "", top_k_evidence: int = 5,
            focus: list[str] | None = None) -> Explanation:
    """Generate ``n_candidates`` reasons for (history, item), return the best with evidence.

    Args:
        model, tokenizer: a trained GPT and its tokenizer.
        history: the user's past items, oldest first (may be empty: cold start).
        item_tags: the target item's tags (may be empty if the history is not).
        profile_aspects: the user's profile aspects to cover (default: those of ``history``,
            ``features.profile``).
        n_candidates: samples drawn (one batch, one prefill).
        seed: integer seed or ``numpy.random.Generator``; same seed, same explanation.
        max_new_tokens, top_p, temperature: sampling (``minireason.generate``).
        max_prompt_tokens: prompt budget; default ``block_size - max_new_tokens`` (the oldest
            history is dropped first to fit, ``minireason.prompts``).
        weights: the score's weights.
        item, item_title: the item's id and title, for the evidence labels and prompt text.
        top_k_evidence: single tags/aspects listed in the evidence.
        focus: the aspects the reason should talk about, put in the prompt and scored
            (``Prepared.focus_for`` predicts them as ``prepare`` did for the model's
            training data; None or empty: no focus part, for a model prepared without).

    Raises:
        ValueError: both history and item tags empty, or a budget that leaves no room.
    """
    item_tags = [t.strip() for t in item_tags if t and t.strip()]
    if not history and not item_tags:
        raise ValueError("nothing to explain from: the history is empty (cold start) and "
                         "the item has no tags; give --history or --tags")
    if not isinstance(n_candidates, (int, np.integer)) or n_candidates < 1:
        raise ValueError(f"n_candidates must be a positive integer, got {n_candidates!r}")
    block_size = model.config.block_size
    budget = block_size - max_new_tokens if max_prompt_tokens is None else max_prompt_tokens
    budget = min(budget, block_size - 1)
    if budget < 2:
        raise ValueError(f"max_new_tokens={max_new_tokens} leaves {budget} prompt tokens of "
                         f"block_size={block_size}; lower max_new_tokens")
    if profile_aspects is None:
        profile_aspects = profile(history)["aspects"]
    focus = [a.strip() for a in (focus or []) if a and a.strip()]
    prompt = build_prompt(history, item_tags, budget, tokenizer, item=item, focus=focus)
    notes = []
    if not history:
        notes.append("cold start: no history, the reason is drawn from the item tags only")
    if not item_tags:
        notes.append("the item has no tags: the reason is drawn from the history only")
    if prompt.n_dropped:
        notes.append(f"{prompt.n_dropped} oldest history items dropped to fit {budget} tokens")
    if prompt.n_tags_dropped:
        notes.append(f"{prompt.n_tags_dropped} item tags dropped to fit {budget} tokens")

    gen = generate(model, [prompt.ids], max_new_tokens=max_new_tokens, temperature=temperature,
                   top_p=top_p, eos_id=tokenizer.eos_id, rng=seed, n_samples=n_candidates)
    candidates = rank_candidates(tokenizer, gen.tokens, gen.logprobs, gen.finish,
                                 profile_aspects, item_tags, weights, focus)
    best = candidates[0]
    evidence = attention_evidence(model, tokenizer, prompt.ids, best.token_ids,
                                  prompt.segments, top_k_evidence)
    kept_history = history[len(history) - prompt.n_history:]
    kept_tags = item_tags[: len(item_tags) - prompt.n_tags_dropped]
    return Explanation(
        reason=best.text,
        score=best.score,
        candidates=candidates,
        evidence=evidence,
        prompt_text=render_prompt(kept_history, kept_tags, item_title, focus),
        prompt_ids=prompt.ids,
        history_used=prompt.n_history,
        notes=notes,
    )


# --------------------------------------------------------------------------- plot


def plot_evidence(explanation: Explanation, path):
    """Heatmap PNG of the chosen reason's attention over the prompt.

    Rows: the reason tokens (each row is the attention while generating that token); columns:
    the prompt tokens, labelled, with the history-item / item segment boundaries drawn as
    vertical lines and their owners written above. Returns the path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev = explanation.evidence
    R, P = ev.matrix.shape
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * P + 2), max(3.0, 0.25 * R + 2)))
    image = ax.imshow(ev.matrix, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xticks(range(P))
    ax.set_xticklabels(ev.prompt_tokens, rotation=90, fontsize=6)
    ax.set_yticks(range(R))
    ax.set_yticklabels(ev.row_tokens, fontsize=6)
    for seg in ev.segments:
        if seg.kind in ("hist", "item"):
            ax.axvline(seg.start - 0.5, color="white", linewidth=1.0)
            name = f"{seg.owner} {seg.label}".strip()
            ax.text((seg.start + seg.end - 1) / 2, -0.7, name, ha="center", va="bottom",
                    fontsize=7, clip_on=False)
    ax.set_xlabel("prompt tokens")
    ax.set_ylabel("reason tokens generated")
    reason = "".join(ch if ch.isprintable() and ch.isascii() else " " for ch in explanation.reason)
    ax.set_title(f"attention (mean over layers and heads): {reason[:80]}", fontsize=8, pad=18)
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
