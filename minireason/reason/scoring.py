"""Seed step 4, the choice: score each sampled candidate reason and rank them.

For one prompt we sample ``N`` candidates (:mod:`minireason.reason.generate`); this module
scores each and ranks them, best first; :mod:`minireason.reason.explain` keeps the best.

Scoring. A candidate's words and the phrases it *mentions* (an aspect or tag, possibly
several words, whose tokens occur contiguously in it) follow :mod:`minireason.text`, the
definitions FMR is measured with. With
``A`` the user's profile aspects, ``G`` the item's tags, ``Q`` the prompt's focus (the
aspects it asks the reason to talk about, ``minireason.prep.features.predict_focus``),
``M(c)`` the phrases ``c`` mentions, and ``w`` a :class:`ScoreWeights`::

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

:func:`score_parts` gives each signed, weighted term of that sum on its own (the HTML
report's candidates table shows them). Coverage rewards relevance, the log-probability rewards fluent, likely text (it is <= 0),
and the penalties push degenerate output (loops, copies, cut-off or empty text) down.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from minireason.text import is_word, mentions, tokens, words


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

    def parts(self, weights: ScoreWeights | None = None) -> dict[str, float]:
        """The signed terms of the score (:func:`score_parts`); they sum to ``total`` when
        ``weights`` are the ones it was scored with."""
        return score_parts(
            weights or ScoreWeights(),
            self.user_coverage,
            self.item_coverage,
            self.focus_coverage,
            self.mean_logprob,
            self.repetition,
            self.duplicate,
            self.truncated,
            self.empty,
        )


@dataclass
class Candidate:
    text: str
    token_ids: list[int]  # generated ids, the stopping <eos> included
    logprobs: np.ndarray  # (len(token_ids),)
    finish: str  # "eos", "max_new_tokens" or "length"
    score: ScoreBreakdown


# --------------------------------------------------------------------------- scoring


def score_parts(
    w: ScoreWeights,
    user_coverage: float,
    item_coverage: float,
    focus_coverage: float,
    mean_logprob: float,
    repetition: float,
    duplicate: bool,
    truncated: bool,
    empty: bool,
) -> dict[str, float]:
    """Each term of the score with its weight and sign, in the formula's order (module
    docstring); the score is their sum. Keys: ``user, item, focus, logprob, repetition,
    duplicate, truncated, empty``."""
    return {
        "user": w.user * user_coverage,
        "item": w.item * item_coverage,
        "focus": w.focus * focus_coverage,
        "logprob": w.logprob * mean_logprob,
        "repetition": -(w.repetition * repetition),
        "duplicate": -(w.duplicate * duplicate),
        "truncated": -(w.truncated * truncated),
        "empty": -(w.empty * empty),
    }


def repetition(text_words: list[str]) -> float:
    """``1 - distinct bigrams / bigrams``: 0 for no repeated bigram, towards 1 for a loop."""
    bigrams = list(zip(text_words, text_words[1:]))
    if len(bigrams) < 2:
        return 0.0
    return 1.0 - len(set(bigrams)) / len(bigrams)


def score_candidate(
    text: str,
    logprobs,
    finish: str,
    profile_aspects: list[str],
    item_tags: list[str],
    duplicate: bool = False,
    weights: ScoreWeights | None = None,
    focus: list[str] | None = None,
) -> ScoreBreakdown:
    """Score one candidate (formula in the module docstring).

    Args:
        text: the candidate's text; logprobs: ``(n,)`` its tokens' log-probabilities;
        finish: how generation stopped ("eos" or a limit); duplicate: it repeats an earlier
        candidate; profile_aspects, item_tags, focus: the phrases to cover.
    """
    focus = focus or []
    w = weights or ScoreWeights()
    text_tokens = tokens(text)
    text_words = [t for t in text_tokens if is_word(t)]
    aspects = mentions(text_tokens, profile_aspects)
    tags = mentions(text_tokens, item_tags)
    user_cov = len(aspects) / len(set(profile_aspects)) if profile_aspects else 0.0
    item_cov = len(tags) / len(set(item_tags)) if item_tags else 0.0
    focused = mentions(text_tokens, focus)
    focus_cov = len(focused) / len(set(focus)) if focus else 0.0
    mean_lp = float(np.mean(logprobs)) if len(logprobs) else 0.0
    rep = repetition(text_words)
    truncated = finish != "eos"
    empty = not text_words
    total = sum(
        score_parts(
            w, user_cov, item_cov, focus_cov, mean_lp, rep, duplicate, truncated, empty
        ).values()
    )
    return ScoreBreakdown(
        user_cov,
        item_cov,
        focus_cov,
        mean_lp,
        rep,
        duplicate,
        truncated,
        empty,
        float(total),
        aspects,
        tags,
        focused,
    )


def rank_candidates(
    tokenizer,
    token_ids,
    logprobs,
    finishes,
    profile_aspects: list[str],
    item_tags: list[str],
    weights: ScoreWeights | None = None,
    focus: list[str] | None = None,
) -> list[Candidate]:
    """Decode and score the sampled rows of one prompt; return them best first.

    Args:
        token_ids, logprobs, finishes: per candidate, as in :class:`minireason.reason.generate.Generation`.
        profile_aspects, item_tags, weights, focus: as in :func:`score_candidate`.

    A candidate whose words repeat an earlier candidate's is marked ``duplicate``. The sort
    is stable: ties keep the sampling order.
    """
    candidates, seen = [], set()
    for ids, logp, finish in zip(token_ids, logprobs, finishes, strict=True):
        text = tokenizer.decode(ids, skip_special=True).strip()
        key = " ".join(words(text))
        score = score_candidate(
            text,
            logp,
            finish,
            profile_aspects,
            item_tags,
            duplicate=key in seen,
            weights=weights,
            focus=focus,
        )
        seen.add(key)
        candidates.append(Candidate(text, ids, logp, finish, score))
    candidates.sort(key=lambda c: -c.score.total)
    return candidates
