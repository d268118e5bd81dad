"""Sampling text from the GPT with a key/value cache (incremental decoding).

Recomputing the whole sequence for every new token costs ``O(T)`` forward passes of growing
length. A transformer's keys and values at a position never change once computed (attention
is causal), so we keep them, per layer, in a cache ``(B, H, block_size, D)`` and feed only
the newest token::

    prefill:  one forward over the prompts (the model's own block_forward), keep every
              layer's K and V, take the logits at each prompt's last token
    decode:   for each new token: embed it at its own position, per layer project q, k, v
              (one row per sequence), write k, v into the cache, attend over the cache,
              MLP; logits -> choose the next token

A model with a copy head (:mod:`minireason.nn.copy_head`) keeps one more pair in the cache,
after the layers': the copy keys ``(B, block_size, D)`` and the token id at each position
``(B, block_size)``; each step's distribution is the head's generate/copy mixture, and the
generation records, per token, how much of its probability was copied and from where.

The decode step is assembled from the same layer functions as the model
(``minireason.nn.layers``) and the same ``attention_forward`` (``minireason.nn.attention``), with a
boolean mask instead of ``is_causal``: nothing of the maths is written twice.

Ragged batches. Prompts of different lengths are RIGHT-padded: row ``b`` keeps its tokens at
positions ``0 .. L_b - 1``, so the learned absolute position embedding sees the positions it
was trained on (left padding would shift them). Causal attention means a real token never
looks at the pads after it; each decode step writes row ``b``'s new K/V at its own position
(overwriting a pad) and masks keys beyond it. A row that finishes (``<eos>`` or a limit)
stays in the batch, computed but never read, until half the batch has finished; then the
finished rows are dropped, so the cache is copied once per halving, not once per row.

Choosing the next token, from the logits ``l`` of one row:

- greedy (``temperature == 0``): ``argmax l`` (the first index on ties). This is the limit of
  sampling as the temperature goes to 0: ``softmax(l / t)`` tends to the one-hot of the
  maximum (split evenly between tied maxima, where greedy takes the first);
- temperature ``t > 0``: sample from ``softmax(l / t)`` (``t < 1`` sharper, ``t > 1`` flatter);
- top-k: keep only the ``k`` largest logits (``top_k=1`` is greedy);
- top-p (nucleus): sort the probabilities (after temperature and top-k) in decreasing order
  and keep the smallest prefix whose mass is ``>= p``; the first token is always kept.
  (Tokens tied with the last one kept are kept too: see :func:`filter_probs`.)

Sampling is inverse-CDF on the kept, renormalised probabilities with one uniform number per
row per step, drawn from that row's own ``numpy.random.Generator`` (``rng.spawn(B)``): the
same seed gives the same output, and a row's tokens do not depend on when other rows stop.

Context overflow. The whole sequence (prompt + new tokens) must fit the model's
``block_size``. A prompt longer than ``block_size - 1`` keeps its LAST ``block_size - 1``
tokens (the oldest are cropped; counted in ``n_cropped``), so at least one token can be
generated; a row whose sequence reaches ``block_size`` stops with ``finish == "length"``.

The log-probability returned for each generated token is the model's own, ``log softmax(l)``
at temperature 1 before any filtering: exactly what ``GPT.token_logprobs`` gives for the
same sequence, whatever sampling settings chose the token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minireason import backend
from minireason.nn.attention import attention_forward
from minireason.nn.copy_head import copy_attention_rows, copy_mixture, copy_params
from minireason.nn.layers import (
    BLOCK_PARAMS,
    block_attention,
    block_forward,
    embedding_forward,
    layernorm_forward,
    linear_forward,
    lm_head_forward,
    log_softmax,
    mlp_forward,
)
from minireason.nn.threads import blas_as_planned


@dataclass
class Generation:
    """What :func:`generate` returns, one entry per output row.

    Rows are ordered prompt-major: with ``n_samples`` samples per prompt, row
    ``i * n_samples + s`` is sample ``s`` of prompt ``i``.
    """

    tokens: list[list[int]]  # generated ids; the <eos> that stopped a row is included
    logprobs: list[np.ndarray]  # (len(tokens[r]),) model log p of each generated token
    finish: list[str]  # "eos", "max_new_tokens" or "length" (the context is full)
    prompts: list[list[int]]  # the prompt each row continued (after any cropping)
    n_cropped: list[int]  # oldest prompt tokens dropped to fit block_size
    copied: list[np.ndarray]  # (len(tokens[r]),) share of each token's probability copied
    copied_from: list[np.ndarray]  # (len(tokens[r]),) position it was mostly copied from, or -1


# --------------------------------------------------------------------------- choosing a token


def filter_probs(logits, temperature=1.0, top_k=None, top_p=None):
    """The sampling distribution of each row, in token-id order.

    Args:
        logits: ``(B, V)``.
        temperature: ``> 0``; the distribution is ``softmax(logits / temperature)``.
        top_k: keep the ``k`` most probable tokens (None: all).
        top_p: keep the smallest set of most probable tokens whose mass is ``>= top_p``,
            computed after top-k (None: all).

    Both filters work with a threshold (the k-th largest probability; the probability of the
    last token of the nucleus) rather than a full argsort: a sort of the values only is several
    times faster. Tokens tied with the threshold are all kept (under ties "the" smallest set
    is not unique; keeping all of them does not depend on token ids).

    Returns:
        ``probs`` ``(B, V)`` float64: the kept probabilities renormalised to sum to 1 per row,
        zero for the dropped tokens.
    """
    xp = backend.array_module(logits)
    V = logits.shape[-1]
    scaled = logits.astype(xp.float64) / temperature
    probs = xp.exp(scaled - scaled.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    if top_k is not None and top_k < V:
        kth = xp.partition(probs, V - top_k, axis=-1)[:, V - top_k : V - top_k + 1]  # (B, 1)
        probs = xp.where(probs >= kth, probs, 0.0)
        probs /= probs.sum(axis=-1, keepdims=True)
    if top_p is not None:
        threshold = nucleus_threshold(probs, top_p)  # (B, 1)
        probs = xp.where(probs >= threshold, probs, 0.0)
        probs /= probs.sum(axis=-1, keepdims=True)
    return probs


def nucleus_threshold(probs, top_p, head=64):
    """The probability of the last token of each row's nucleus, ``(B, 1)``.

    Ranks the probabilities (decreasing) and keeps tokens while the mass ranked above them is
    below ``top_p``. A nucleus is usually a few dozen tokens, so only the ``head`` largest of
    each row are sorted (``partition`` finds them without a full sort); a row whose ``head``
    largest hold less than ``top_p`` is ranked in full. The answer is the same either way:
    the first ``head`` running sums of the ranked values do not depend on the rest.
    """
    xp = backend.array_module(probs)
    V = probs.shape[-1]
    head = min(head, V)
    top = xp.partition(probs, V - head, axis=-1)[:, V - head :]  # the head largest, unordered
    ranked = xp.sort(top, axis=-1)[:, ::-1]  # decreasing
    short = backend.to_numpy(xp.cumsum(ranked, axis=-1)[:, -1] < top_p)  # nucleus not inside
    if short.any():
        full = xp.sort(probs[short], axis=-1)[:, ::-1]
        threshold = xp.zeros((probs.shape[0], 1), dtype=probs.dtype)
        threshold[~short] = _last_of_nucleus(ranked[~short], top_p)
        threshold[short] = _last_of_nucleus(full, top_p)
        return threshold
    return _last_of_nucleus(ranked, top_p)


def _last_of_nucleus(ranked, top_p):
    """``(B, 1)``: the value of the last token kept from rows ranked in decreasing order."""
    xp = backend.array_module(ranked)
    mass_before = xp.cumsum(ranked, axis=-1) - ranked  # mass of the tokens ranked above
    n_keep = (mass_before < top_p).sum(axis=-1)  # >= 1: the first has mass_before 0
    return xp.take_along_axis(ranked, n_keep[:, None] - 1, axis=-1)


def choose_tokens(logits, uniforms=None, temperature=1.0, top_k=None, top_p=None):
    """The next token of each row: greedy when ``temperature == 0``, else sampled.

    Sampling is inverse-CDF in token-id order: with ``cdf`` the running sum of
    :func:`filter_probs`, row ``b`` takes the first token whose ``cdf`` exceeds ``uniforms[b]``.

    Args:
        logits: ``(B, V)``.
        uniforms: ``(B,)`` numbers in ``[0, 1)``, one per row (ignored when greedy).
        temperature, top_k, top_p: as in :func:`filter_probs`.

    Returns:
        ``(B,)`` integer token ids (an array of the logits' module).
    """
    xp = backend.array_module(logits)
    if temperature == 0:
        return xp.argmax(logits, axis=-1)
    probs = filter_probs(logits, temperature, top_k, top_p)
    cdf = xp.cumsum(probs, axis=-1)
    u = xp.asarray(uniforms, dtype=xp.float64)[:, None] * cdf[:, -1:]
    token = (cdf <= u).sum(axis=-1)  # first token whose cdf passes u: skips zero-mass tokens
    last_kept = probs.shape[-1] - 1 - xp.argmax(probs[:, ::-1] > 0, axis=-1)
    return xp.minimum(token, last_kept)  # guard against rounding at the top of the cdf


# --------------------------------------------------------------------------- the cached forward


def _block_params(model, i):
    return {name: model.params[f"h.{i}.{name}"] for name in BLOCK_PARAMS}


class Step:
    """One step's next-token distributions, and what the copy head did (if there is one).

    ``logits`` ``(B, V)``: the vocabulary logits, or the copy mixture's log-probabilities;
    ``copy_attention`` ``(B, S)`` and ``gate`` ``(B,)`` (P(generate)), None without a copy head.
    """

    def __init__(self, logits, copy_attention=None, gate=None):
        self.logits, self.copy_attention, self.gate = logits, copy_attention, gate

    def repeat(self, n: int) -> Step:
        """Each row ``n`` times (the samples of one prompt share its prefill)."""
        xp = backend.array_module(self.logits)
        return Step(*(None if v is None else xp.repeat(v, n, axis=0) for v in vars(self).values()))


def _head(model, x, cache, positions):
    """The next-token distributions of rows whose final hidden states are ``x`` ``(B, C)``.

    With a copy head, ``cache[-1]`` holds the copy keys and token ids; each row copies from
    positions ``0 .. positions[b]``.
    """
    logits, _ = lm_head_forward(x, model.params["wte"])
    if not model.config.copy:
        return Step(logits)
    xp = backend.array_module(x)
    params = copy_params(model.params)
    keys, sources = cache[-1]
    n_keys = int(positions.max()) + 1
    allowed = xp.arange(n_keys)[None, :] <= xp.asarray(positions)[:, None]  # (B, S)
    a = copy_attention_rows(x @ params["copy.w_q"], keys[:, :n_keys], allowed)
    logits, gate = copy_mixture(logits, x, a, sources[:, :n_keys], params)
    return Step(logits, a, gate)


def _copy_cache(model, x, idx):
    """The copy head's cache entry: keys ``(B, block_size, D)`` and ids ``(B, block_size)``
    with the prompts' at ``0 .. T - 1``; ``x`` ``(B, T, C)`` after ln_f, ``idx`` ``(B, T)``."""
    xp = backend.array_module(x)
    B, T, _ = x.shape
    w_k = model.params["copy.w_k"]
    keys = xp.zeros((B, model.config.block_size, w_k.shape[1]), dtype=x.dtype)
    keys[:, :T] = x @ w_k
    sources = xp.zeros((B, model.config.block_size), dtype=idx.dtype)
    sources[:, :T] = idx
    return keys, sources


@blas_as_planned
def prefill(model, idx, lengths):
    """Run the prompts once; return the logits at each prompt's last token and the KV cache.

    Args:
        model: a :class:`~minireason.nn.model.GPT` (dropout is not applied).
        idx: ``(B, T)`` right-padded prompt ids (pads may be any valid id).
        lengths: ``(B,)`` true prompt lengths, ``1 <= lengths[b] <= T``.

    Returns:
        ``step`` (a :class:`Step`: ``logits`` ``(B, V)``...) and ``cache``: a list, per layer,
        of ``(K, V)`` arrays ``(B, H, block_size, D)`` holding the prompts' keys and values at
        ``0 .. T - 1`` (and the copy head's pair after them, for a model with one).
    """
    xp = backend.array_module(model.params["wte"])
    cfg = model.config
    B, T = idx.shape
    H, D = cfg.n_head, cfg.n_embd // cfg.n_head
    x, _ = embedding_forward(idx, model.params["wte"], model.params["wpe"])  # (B * T, C)
    cache = []
    for i in range(cfg.n_layer):
        x, block_cache = block_forward(
            x, _block_params(model, i), B, T, H, 0.0, None, cfg.layernorm_eps
        )
        attn = block_attention(block_cache)  # its keys and values seed the KV cache
        K = xp.zeros((B, H, cfg.block_size, D), dtype=x.dtype)
        V = xp.zeros_like(K)
        K[:, :, :T] = attn.key
        V[:, :, :T] = attn.value
        cache.append((K, V))
    last_positions = xp.asarray(lengths) - 1
    if cfg.copy:  # every position's final hidden state is a copy key
        x, _ = layernorm_forward(
            x, model.params["ln_f.w"], model.params["ln_f.b"], cfg.layernorm_eps
        )
        cache.append(_copy_cache(model, x.reshape(B, T, -1), idx))
        last = x.reshape(B, T, -1)[xp.arange(B), last_positions]  # (B, C)
    else:
        last = x.reshape(B, T, -1)[xp.arange(B), last_positions]  # (B, C)
        last, _ = layernorm_forward(
            last, model.params["ln_f.w"], model.params["ln_f.b"], cfg.layernorm_eps
        )
    return _head(model, last, cache, last_positions), cache


@blas_as_planned
def decode_step(model, tokens, positions, cache):
    """Feed one new token per row at its own position; update the cache in place.

    Args:
        model: a :class:`~minireason.nn.model.GPT`.
        tokens: ``(B,)`` the newest token of each row.
        positions: ``(B,)`` its position (= the row's length so far), ``< block_size``.
        cache: as returned by :func:`prefill` (``B`` rows).

    Returns:
        a :class:`Step` for the token after ``tokens``.
    """
    xp = backend.array_module(model.params["wte"])
    cfg = model.config
    p = model.params
    B = tokens.shape[0]
    H, C = cfg.n_head, cfg.n_embd
    D = C // H
    rows = xp.arange(B)
    n_keys = int(positions.max()) + 1  # attend over cache[:, :, :n_keys] only
    allowed = (xp.arange(n_keys)[None, :] <= positions[:, None])[:, None, None, :]  # (B,1,1,Tk)
    x = p["wte"][tokens] + p["wpe"][positions]  # (B, C): one token per row, own position
    for i in range(cfg.n_layer):
        bp = _block_params(model, i)
        K, V = cache[i]
        h, _ = layernorm_forward(x, bp["ln1.w"], bp["ln1.b"], cfg.layernorm_eps)
        qkv, _ = linear_forward(h, bp["attn.w_qkv"], bp["attn.b_qkv"])  # (B, 3C)
        q, k, v = qkv.reshape(B, 1, 3, H, D).transpose(2, 0, 3, 1, 4)  # each (B, H, 1, D)
        K[rows, :, positions] = k[:, :, 0]
        V[rows, :, positions] = v[:, :, 0]
        y, _ = attention_forward(
            q, K[:, :, :n_keys], V[:, :, :n_keys], attn_mask=allowed, validate=False
        )  # (B, H, 1, D)
        h, _ = linear_forward(y.reshape(B, C), bp["attn.w_proj"], bp["attn.b_proj"])
        x = x + h
        h, _ = layernorm_forward(x, bp["ln2.w"], bp["ln2.b"], cfg.layernorm_eps)
        h, _ = mlp_forward(h, bp["mlp.w_fc"], bp["mlp.b_fc"], bp["mlp.w_proj"], bp["mlp.b_proj"])
        x += h
    x, _ = layernorm_forward(x, p["ln_f.w"], p["ln_f.b"], cfg.layernorm_eps)
    if cfg.copy:
        keys, sources = cache[-1]
        keys[rows, positions] = x @ p["copy.w_k"]
        sources[rows, positions] = tokens
    return _head(model, x, cache, positions)


# --------------------------------------------------------------------------- generate


def _check_args(model, prompts, max_new_tokens, temperature, top_k, top_p, n_samples):
    """Raise ValueError naming the argument for anything :func:`generate` cannot take."""
    V = model.config.vocab_size
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise ValueError("prompts must be a non-empty list of token-id lists")
    for i, prompt in enumerate(prompts):
        if len(prompt) == 0:
            raise ValueError(f"prompts[{i}] is empty: generation needs at least one token")
        lo, hi = int(min(prompt)), int(max(prompt))
        if lo < 0 or hi >= V:
            raise ValueError(f"prompts[{i}] holds token ids in [{lo}, {hi}], outside [0, {V})")
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    if not (isinstance(temperature, (int, float)) and temperature >= 0):
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    if top_k is not None and not (isinstance(top_k, (int, np.integer)) and top_k >= 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")


@blas_as_planned
def generate(
    model,
    prompts,
    max_new_tokens=32,
    temperature=1.0,
    top_k=None,
    top_p=None,
    eos_id=None,
    rng=0,
    n_samples=1,
) -> Generation:
    """Continue each prompt, batched, with a KV cache (see the module docstring).

    Args:
        model: a :class:`~minireason.nn.model.GPT` (used in inference mode; no dropout).
        prompts: list of prompts, each a list (or 1-D array) of token ids; lengths may differ.
        max_new_tokens: at most this many new tokens per row.
        temperature: 0 for greedy, else the softmax temperature.
        top_k, top_p: optional filters (see :func:`filter_probs`).
        eos_id: a row stops after emitting this id (None: never stops early).
        rng: a ``numpy.random.Generator`` or an integer seed, and row ``r`` samples from
            ``rng.spawn(n_rows)[r]``; or a sequence of ``n_rows`` Generators, one per row
            (a record's own streams, :func:`minireason.reason.choose.record_streams`).
        n_samples: rows per prompt. The prompt is prefilled once and its cache copied, so
            ``n_samples`` candidates of one prompt cost one prefill.

    Returns:
        A :class:`Generation` with ``len(prompts) * n_samples`` rows.
    """
    _check_args(model, prompts, max_new_tokens, temperature, top_k, top_p, n_samples)
    xp = backend.array_module(model.params["wte"])
    block_size = model.config.block_size
    keep = block_size - 1  # a prompt keeps at most this many tokens: room for one new token
    kept = [[int(t) for t in prompt][-keep:] for prompt in prompts]
    n_cropped = [len(prompt) - len(k) for prompt, k in zip(prompts, kept, strict=True)]
    lengths = np.array([len(k) for k in kept])
    padded = np.zeros((len(kept), lengths.max()), dtype=np.int64)  # right-padded with id 0
    for b, k in enumerate(kept):
        padded[b, : len(k)] = k

    step, cache = prefill(model, xp.asarray(padded), lengths)
    if n_samples > 1:  # every sample of a prompt starts from that prompt's cache
        step = step.repeat(n_samples)
        cache = [
            (xp.repeat(K, n_samples, axis=0), xp.repeat(V, n_samples, axis=0)) for K, V in cache
        ]
    n_rows = len(kept) * n_samples
    row_prompt = np.repeat(np.arange(len(kept)), n_samples)
    if isinstance(rng, (list, tuple)):
        if len(rng) != n_rows:
            raise ValueError(f"rng: {len(rng)} generators for {n_rows} rows")
        row_rngs = list(rng)
    else:
        generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        row_rngs = generator.spawn(n_rows)

    tokens = [[] for _ in range(n_rows)]
    logprobs = [[] for _ in range(n_rows)]
    copied = [[] for _ in range(n_rows)]
    copied_from = [[] for _ in range(n_rows)]
    finish = [""] * n_rows
    batch = np.arange(n_rows)  # the output row held by each row of the batch and the cache
    live = np.ones(n_rows, dtype=bool)  # batch rows still generating
    feed = np.zeros(n_rows, dtype=np.int64)  # the token each batch row feeds next
    positions = lengths[row_prompt]  # where each batch row's next token goes
    while True:
        rows = np.flatnonzero(live)
        uniforms = None if temperature == 0 else [row_rngs[batch[i]].random() for i in rows]
        live_rows = xp.asarray(rows)
        row_logits = step.logits if len(rows) == len(batch) else step.logits[live_rows]
        chosen = choose_tokens(row_logits, uniforms, temperature, top_k, top_p)
        chosen_logp = xp.take_along_axis(log_softmax(row_logits), chosen[:, None], axis=-1)[:, 0]
        share, source = _copied(step, cache, live_rows, chosen, chosen_logp)
        chosen, chosen_logp = backend.to_numpy(chosen), backend.to_numpy(chosen_logp)
        for j, i in enumerate(rows):
            r = batch[i]
            tokens[r].append(int(chosen[j]))
            logprobs[r].append(float(chosen_logp[j]))
            copied[r].append(float(share[j]))
            copied_from[r].append(int(source[j]))
            if eos_id is not None and chosen[j] == eos_id:
                finish[r] = "eos"
            elif len(tokens[r]) == max_new_tokens:
                finish[r] = "max_new_tokens"
            elif positions[i] + 1 == block_size:
                finish[r] = "length"  # the new token fills the context: nothing more fits
            live[i] = not finish[r]
        if not live.any():
            break
        feed[rows] = chosen  # a finished row feeds its last token again: computed, never read
        if 2 * live.sum() <= len(live):  # half the batch has finished: drop those rows
            keep_rows = np.flatnonzero(live)
            survivors = xp.asarray(keep_rows)
            cache = [(K[survivors], V[survivors]) for K, V in cache]
            batch, live = batch[keep_rows], live[keep_rows]
            feed, positions = feed[keep_rows], positions[keep_rows]
        step = decode_step(model, xp.asarray(feed), xp.asarray(positions), cache)
        positions = positions + live  # finished rows stay where they are

    return Generation(
        tokens=tokens,
        logprobs=[np.asarray(lp) for lp in logprobs],
        finish=finish,
        prompts=[kept[i] for i in row_prompt],
        n_cropped=[n_cropped[i] for i in row_prompt],
        copied=[np.asarray(c) for c in copied],
        copied_from=[np.asarray(c, dtype=np.int64) for c in copied_from],
    )


def _copied(step: Step, cache, rows, chosen, chosen_logp):
    """For each chosen token: the share of its probability that the copy head gave, and the
    position that gave most of it (-1 if none); zeros and -1 without a copy head.

    Args:
        rows: ``(n,)`` the batch rows that chose; chosen, chosen_logp: ``(n,)``.

    Returns:
        two NumPy arrays ``(n,)``: float shares and integer positions.
    """
    n = len(rows)
    if step.copy_attention is None:
        return np.zeros(n), np.full(n, -1, dtype=np.int64)
    xp = backend.array_module(step.logits)
    a = step.copy_attention[rows]  # (n, S)
    sources = cache[-1][1][rows, : a.shape[1]]
    given = a * (sources == chosen[:, None])  # what each position gave the chosen token
    mass = given.sum(axis=-1)
    share = (1.0 - step.gate[rows]) * mass / xp.exp(chosen_logp)
    source = xp.where(mass > 0, xp.argmax(given, axis=-1), -1)
    return backend.to_numpy(share).astype(np.float64), backend.to_numpy(source).astype(np.int64)
