"""Choosing a reason: sample candidates for a prompt, score them, keep the best.

This is the one place where candidates are sampled and scored (the seed document's step 4:
"extract from the generated text the part most relevant to the user's behaviour").
``explain`` (one prompt), ``evaluate`` (every record, in batches), ``explain-all`` (through
``explain``), ``minireason tune`` (:class:`CandidatePool`) and ``bench explain`` all go
through it::

    prompts ──► sample_candidates: decoding.n_candidates samples per prompt, one batch,
                with the KV cache (minireason.reason.generate), each record drawing from
                its own random streams
            ──► rank: each candidate scored against its record's ScoringContext with the
                weights (minireason.reason.scoring), best first
            ──► the first one is the reason

Seeds. A record's candidates are drawn from ``decoding.n_candidates`` random streams, one per
candidate. ``explain`` with an integer seed ``s`` uses ``default_rng(s).spawn(n)``;
``evaluate`` cuts the records into batches of ``batch_size`` prompts and seeds batch ``b``
with ``[seed, b]``, the streams spawned in record order (:func:`record_streams`). The same
streams, prompt, context and weights give the same reason whichever command asks.

The weights and the decoding are a run's recorded settings (``run.json``,
:meth:`minireason.train.run.RunInfo.settings`), never defaults of this module.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields, replace

import numpy as np
from tqdm.auto import tqdm

from minireason.reason.generate import generate
from minireason.reason.scoring import (
    SCORE_PARTS,
    Candidate,
    expected_rating,
    phrase_set,
    rank_candidates,
)
from minireason.train.loop import PLAIN_PROGRESS_SHARE
from minireason.train.run import Decoding, ScoreWeights


@dataclass(frozen=True)
class Samples:
    """The candidates of one prompt, in sampling order: per candidate its generated ids
    (the stopping ``<eos>`` included), their log-probabilities ``(len(ids),)``, how
    generation stopped (``"eos"``, ``"max_new_tokens"`` or ``"length"``), and what a copy
    head copied (:class:`~minireason.reason.generate.Generation`; empty without samples)."""

    token_ids: list[list[int]]
    logprobs: list[np.ndarray]
    finishes: list[str]
    copied: list[np.ndarray] = field(default_factory=list)
    copied_from: list[np.ndarray] = field(default_factory=list)


@dataclass(frozen=True)
class ScoringContext:
    """What one record's candidates are scored against (the terms of
    :mod:`minireason.reason.scoring`), built once per record.

    profile_aspects: the user's profile aspects; item_tags: the item's tags; focus: the
    aspects the prompt asks for; rating: the rating expected (:func:`expected_rating`);
    phrases: the token 3-grams of the user's past reviews (:func:`phrase_set`; empty: no
    phrasing term); known_words: the training reviews' words (empty: no unknown-word term);
    particular: the words particular to the item (empty: no specific term).
    """

    profile_aspects: tuple[str, ...] = ()
    item_tags: tuple[str, ...] = ()
    focus: tuple[str, ...] = ()
    rating: float = 4.0
    phrases: frozenset = frozenset()
    known_words: frozenset = frozenset()
    particular: frozenset = frozenset()

    @classmethod
    def of(
        cls,
        profile_aspects,
        item_tags,
        focus,
        ratings=(),
        past_reviews=(),
        known_words=frozenset(),
        particular=frozenset(),
    ) -> ScoringContext:
        """The context of a prompt from its parts: the history's ``ratings`` give the rating
        expected, the user's ``past_reviews`` (texts) the phrases."""
        return cls(
            tuple(profile_aspects or ()),
            tuple(item_tags or ()),
            tuple(focus or ()),
            expected_rating(ratings),
            phrase_set(past_reviews or []),
            frozenset(known_words or ()),
            frozenset(particular or ()),
        )

    @classmethod
    def of_record(
        cls, record: dict, reviews_by=None, known_words=frozenset(), particular_words=None
    ) -> ScoringContext:
        """The context of a prepared record (``Prepared.split(...)[i]``): its profile
        aspects, item tags, focus and history ratings; ``reviews_by``: user -> their training
        reviews' texts (``Prepared.reviews_by``; None: no phrasing term);
        ``particular_words``: item -> its particular words (``Prepared.particular_words``;
        None: no specific term)."""
        return cls.of(
            record["profile"]["aspects"],
            record.get("item_tags") or [],
            record.get("focus") or [],
            [h["rating"] for h in record.get("history") or []],
            reviews_by(record["user"]) if reviews_by else [],
            known_words,
            particular_words(record["item"]) if particular_words else (),
        )


def sample_candidates(model, tokenizer, prompts, decoding: Decoding, rng) -> list[Samples]:
    """``decoding.n_candidates`` samples for each of ``prompts`` (lists of token ids), in one
    batch (one prefill per prompt), at the decoding's temperature, top-p and length.

    ``rng``: an integer seed or ``numpy.random.Generator`` (the rows' streams are spawned from
    it, prompt-major), or one list of ``n_candidates`` Generators per prompt
    (:func:`record_streams`)."""
    n = decoding.n_candidates
    if isinstance(rng, (list, tuple)):
        if len(rng) != len(prompts):
            raise ValueError(f"rng: {len(rng)} lists of streams for {len(prompts)} prompts")
        rng = [stream for streams in rng for stream in streams]
    gen = generate(
        model,
        prompts,
        max_new_tokens=decoding.max_new_tokens,
        temperature=decoding.temperature,
        top_p=decoding.top_p,
        eos_id=tokenizer.eos_id,
        rng=rng,
        n_samples=n,
    )
    return [
        Samples(
            gen.tokens[i * n : (i + 1) * n],
            gen.logprobs[i * n : (i + 1) * n],
            gen.finish[i * n : (i + 1) * n],
            gen.copied[i * n : (i + 1) * n],
            gen.copied_from[i * n : (i + 1) * n],
        )
        for i in range(len(prompts))
    ]


def rank(
    tokenizer, samples: Samples, context: ScoringContext, weights: ScoreWeights
) -> list[Candidate]:
    """``samples`` decoded and scored against ``context`` with ``weights``, best first (ties
    keep the sampling order): :func:`minireason.reason.scoring.rank_candidates`, each with
    what it copied."""
    ranked = rank_candidates(
        tokenizer,
        samples.token_ids,
        samples.logprobs,
        samples.finishes,
        list(context.profile_aspects),
        list(context.item_tags),
        weights,
        list(context.focus),
        context.rating,
        context.phrases,
        context.known_words,
        context.particular,
    )
    if not samples.copied:
        return ranked
    return [
        replace(c, copied=samples.copied[c.index], copied_from=samples.copied_from[c.index])
        for c in ranked
    ]


# --------------------------------------------------------------------------- many records


def record_streams(seed: int, n_records: int, batch_size: int, n_candidates: int) -> list[list]:
    """The random streams of each of ``n_records`` records as ``evaluate`` samples them:
    batch ``b`` (records ``b * batch_size`` on) seeded ``[seed, b]``, ``n_candidates``
    streams spawned per record in record order. ``explain(..., seed=streams[i])`` draws
    record ``i``'s candidates exactly as ``evaluate`` does."""
    out = []
    for b, start in enumerate(range(0, n_records, batch_size)):
        size = min(batch_size, n_records - start)
        spawned = np.random.default_rng([seed, b]).spawn(size * n_candidates)
        out += [spawned[j * n_candidates : (j + 1) * n_candidates] for j in range(size)]
    return out


def sample_batches(
    model,
    tokenizer,
    prompts,
    decoding: Decoding,
    seed: int = 0,
    batch_size: int = 16,
    progress=True,
) -> list[Samples]:
    """Every prompt's candidates, ``batch_size`` prompts at a time, each record drawing from
    its :func:`record_streams`. Progress: a bar on a terminal, else (``progress``) a plain
    line every tenth of the batches."""
    streams = record_streams(seed, len(prompts), batch_size, decoding.n_candidates)
    out: list[Samples] = []
    starts = range(0, len(prompts), batch_size)
    bar = tqdm(starts, desc="candidates", unit="batch", disable=None if progress else True)
    plain = progress and bar.disable  # stderr is not a terminal: a plain line now and then
    every = max(1, round(len(starts) * PLAIN_PROGRESS_SHARE))
    for done, start in enumerate(bar, 1):
        end = start + batch_size
        out += sample_candidates(model, tokenizer, prompts[start:end], decoding, streams[start:end])
        if plain and (done % every == 0 or done == len(starts)):
            share = 100 * done // len(starts)
            print(f"candidates: batch {done}/{len(starts)} ({share}%)", file=sys.stderr, flush=True)
    return out


def choose_reasons(
    model,
    tokenizer,
    prompts,
    contexts: list[ScoringContext],
    decoding: Decoding,
    weights: ScoreWeights,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
) -> list[str]:
    """The reason chosen for each prompt (``contexts[i]`` is ``prompts[i]``'s): its
    candidates (:func:`sample_batches`) ranked (:func:`rank`), the best kept."""
    if len(prompts) != len(contexts):
        raise ValueError(f"choose_reasons: {len(prompts)} prompts for {len(contexts)} contexts")
    samples = sample_batches(model, tokenizer, prompts, decoding, seed, batch_size, progress)
    return [rank(tokenizer, s, c, weights)[0].text for s, c in zip(samples, contexts)]


class CandidatePool:
    """Every record's scored candidates, to choose again under other weights without
    sampling or scoring again (``minireason tune``).

    ``terms[i]`` is ``(n_i, len(SCORE_PARTS))``: candidate j's score parts under unit weights
    (:meth:`ScoreBreakdown.parts`, signed), so the totals under weights ``w`` are one product
    ``terms[i] @ w``; ``texts[i][j]`` the candidate texts in sampling order. Under any weights
    :meth:`choose` keeps what :func:`rank` would keep (the highest total, ties to the earlier
    sample).
    """

    def __init__(self, tokenizer, samples: list[Samples], contexts: list[ScoringContext]):
        unit = ScoreWeights(**{f.name: 1.0 for f in fields(ScoreWeights)})
        self.terms, self.texts = [], []
        for s, context in zip(samples, contexts, strict=True):
            ranked = sorted(rank(tokenizer, s, context, unit), key=lambda c: c.index)
            parts = [c.score.parts(unit) for c in ranked]
            self.terms.append(np.array([[p[k] for k in SCORE_PARTS] for p in parts]))
            self.texts.append([c.text for c in ranked])

    def choose(self, weights: ScoreWeights) -> list[str]:
        """The reason kept for each record under ``weights`` (ties: the earlier sample)."""
        w = np.array([getattr(weights, k) for k in SCORE_PARTS])
        return [texts[int(np.argmax(t @ w))] for t, texts in zip(self.terms, self.texts)]
