"""A copy head (pointer-generator): the next token is either generated or copied from the context.

A small model trained on about a million words cannot spell every product name, property
or use it reads in its prompt. The copy head gives it a direct path: at each position it
mixes the usual vocabulary distribution with a distribution over the tokens already in the
context (the prompt's evidence, tags and focus, and the text so far), through a learned gate::

    h (B, T, C)            final hidden states (after ln_f), one per position
    q = h @ w_q            (B, T, D)   what position t looks for
    k = h @ w_k            (B, T, D)   what position s offers
    a = softmax_s(q k^T / sqrt(D)),  s <= t     (B, T, T)   causal copy attention
    g = sigmoid(h @ w_gate + b_gate)            (B, T)      P(generate) at each position

    p(w | t) = g_t * softmax(logits_t)[w] + (1 - g_t) * sum_{s <= t, idx_s = w} a_ts

Training never builds the ``(B, T, V)`` copy distribution: the loss needs only the copy mass
on the target, ``c_t = sum_s a_ts [idx_s = target_t]``, in log space::

    log p_t = logaddexp(log g_t + log p_vocab(target_t), log(1 - g_t) + log c_t)

Backward, with ``r_t = g_t p_vocab(target_t) / p_t`` (the share of the target's probability
that came from the vocabulary) and ``dlogp_t`` the upstream gradient of ``log p_t``:

- ``d log p_vocab(target_t) = r_t dlogp_t``: the usual cross-entropy gradient of the logits,
  scaled per row by ``r_t`` (:func:`copy_head_backward` returns this factor);
- ``d z_t = (r_t - g_t) dlogp_t`` for the gate's pre-activation ``z_t``;
- ``d scores_ts = dlogp_t (1 - g_t) / p_t * a_ts ([idx_s = target_t] - c_t)`` (softmax backward
  of ``d a_ts = dlogp_t (1 - g_t) [idx_s = target_t] / p_t``); then the matmuls back to
  ``q``, ``k`` and ``h``.

Parameters (their names in ``GPT.params``): ``copy.w_q`` ``(C, D)``, ``copy.w_k`` ``(C, D)``,
``copy.w_gate`` ``(C,)``, ``copy.b_gate`` ``(1,)``, with ``D = n_embd // n_head``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from minireason.backend import array_module
from minireason.nn.attention import masked_softmax
from minireason.nn.layers import log_softmax
from minireason.nn.threads import matmul

COPY_PARAMS = ("copy.w_q", "copy.w_k", "copy.w_gate", "copy.b_gate")


def copy_param_shapes(n_embd: int, n_head: int) -> dict:
    """``{name: shape}`` of the copy head's parameters."""
    D = n_embd // n_head
    return {
        "copy.w_q": (n_embd, D),
        "copy.w_k": (n_embd, D),
        "copy.w_gate": (n_embd,),
        "copy.b_gate": (1,),
    }


def copy_params(params: dict) -> dict:
    """The copy head's arrays out of a model's ``params`` (:data:`COPY_PARAMS`)."""
    return {name: params[name] for name in COPY_PARAMS}


def log_sigmoid(z):
    """``log(sigmoid(z))``, stable for large ``|z|``; shape unchanged."""
    xp = array_module(z)
    return -xp.logaddexp(0.0, -z)


class CopyHeadCache(NamedTuple):
    h: object  # (B * T, C) final hidden states
    q: object  # (B, T, D)
    k: object  # (B, T, D)
    a: object  # (B, T, T) copy attention
    rows: object  # (n,) the flat positions the loss scores
    match: object  # (n, T) [idx_s == target] of each scored row, as h's dtype
    c: object  # (n,) copy mass on the target
    g: object  # (n,) P(generate)
    logp: object  # (n,) log p of the target under the mixture
    params: dict


def copy_attention(h, w_q, w_k, B, T):
    """Causal copy attention of every position over the positions up to it.

    Args:
        h: ``(B * T, C)``; w_q, w_k: ``(C, D)``.

    Returns:
        ``q``, ``k`` ``(B, T, D)`` and ``a`` ``(B, T, T)`` (row ``t`` sums to 1 over ``s <= t``).
    """
    xp = array_module(h)
    D = w_q.shape[1]
    q = matmul(h, w_q).reshape(B, T, D)
    k = matmul(h, w_k).reshape(B, T, D)
    scores = matmul(q, k.transpose(0, 2, 1)) * (1.0 / math.sqrt(D))  # (B, T, T)
    return q, k, masked_softmax(scores, xp.tril(xp.ones((T, T), dtype=bool)))


def copy_head_forward(h, idx, rows, targets, logp_vocab, params):
    """Log-probability of each scored target under the generate/copy mixture.

    Args:
        h: ``(B * T, C)`` final hidden states.
        idx: ``(B, T)`` the input token ids (what each position offers to copy).
        rows: ``(n,)`` flat positions ``b * T + t`` whose targets are scored.
        targets: ``(n,)`` the target id of each scored row.
        logp_vocab: ``(n,)`` ``log softmax(logits)[target]`` of each scored row.
        params: the four ``copy.*`` arrays.

    Returns:
        ``logp`` ``(n,)`` and the cache for :func:`copy_head_backward`.
    """
    xp = array_module(h)
    B, T = idx.shape
    q, k, a = copy_attention(h, params["copy.w_q"], params["copy.w_k"], B, T)
    a_rows = a.reshape(B * T, T)[rows]  # (n, T)
    match = (idx[rows // T] == targets[:, None]).astype(h.dtype)  # (n, T)
    c = (a_rows * match).sum(axis=-1)  # (n,)
    z = matmul(h[rows], params["copy.w_gate"]) + params["copy.b_gate"]  # (n,)
    g = 1.0 / (1.0 + xp.exp(-z))
    logp = xp.logaddexp(log_sigmoid(z) + logp_vocab, log_sigmoid(-z) + _log(c))
    return logp, CopyHeadCache(h, q, k, a, rows, match, c, g, logp, params)


def copy_head_backward(dlogp, cache: CopyHeadCache):
    """Gradients of ``sum(logp * dlogp)``.

    Args:
        dlogp: ``(n,)`` upstream gradient of each scored row's ``logp``.

    Returns:
        ``dlogp_vocab`` ``(n,)`` (the gradient reaching ``log softmax(logits)[target]``),
        ``dh`` ``(B * T, C)`` and ``{name: grad}`` for the ``copy.*`` parameters.
    """
    h, q, k, a, rows, match, c, g, logp, params = cache
    xp = array_module(h)
    B, T, D = q.shape
    p = xp.exp(logp)
    r = xp.where(p > 0, 1.0 - (1.0 - g) * c / xp.where(p > 0, p, 1.0), g)  # vocab share
    dlogp_vocab = r * dlogp
    dz = (r - g) * dlogp  # (n,)
    coef = dlogp * (1.0 - g) / xp.where(p > 0, p, 1.0)  # (n,)
    a_rows = a.reshape(B * T, T)[rows]
    dscores = xp.zeros((B * T, T), dtype=h.dtype)
    dscores[rows] = coef[:, None] * a_rows * (match - c[:, None])
    dscores = dscores.reshape(B, T, T) * (1.0 / math.sqrt(D))
    dq = matmul(dscores, k).reshape(B * T, D)
    dk = matmul(dscores.transpose(0, 2, 1), q).reshape(B * T, D)
    grads = {
        "copy.w_q": matmul(h.T, dq),
        "copy.w_k": matmul(h.T, dk),
        "copy.w_gate": matmul(h[rows].T, dz),
        "copy.b_gate": dz.sum(keepdims=True),
    }
    dh = matmul(dq, params["copy.w_q"].T) + matmul(dk, params["copy.w_k"].T)
    dh[rows] += dz[:, None] * params["copy.w_gate"][None, :]
    return dlogp_vocab, dh, grads


def copy_attention_rows(q, keys, allowed):
    """Copy attention of one query per row over that row's cached keys (the decoder's step).

    Args:
        q: ``(n, D)``; keys: ``(n, S, D)``; allowed: ``(n, S)`` bool, the positions each row
            may copy from (at least one per row).

    Returns:
        ``a`` ``(n, S)``, zero where not allowed, each row summing to 1.
    """
    scores = (keys @ q[:, :, None])[:, :, 0] * (1.0 / math.sqrt(q.shape[1]))  # (n, S)
    return masked_softmax(scores, allowed)


def copy_mixture(logits, h_rows, a_rows, sources, params):
    """The full next-token log-distribution of some rows (inference: generation, scoring).

    Args:
        logits: ``(n, V)`` the vocabulary logits of each row.
        h_rows: ``(n, C)`` their final hidden states.
        a_rows: ``(n, S)`` each row's copy attention over ``S`` context positions (0 where
            a position may not be copied).
        sources: ``(n, S)`` the token id at each of those positions.
        params: the four ``copy.*`` arrays.

    Returns:
        ``(n, V)`` ``log p(w)`` of the mixture, and ``g`` ``(n,)`` P(generate).
    """
    xp = array_module(logits)
    n, V = logits.shape
    z = matmul(h_rows, params["copy.w_gate"]) + params["copy.b_gate"]  # (n,)
    flat = (xp.arange(n)[:, None] * V + sources).ravel()
    copy = xp.bincount(flat, weights=a_rows.ravel(), minlength=n * V).reshape(n, V)
    generated = log_softmax(logits) + log_sigmoid(z)[:, None]
    copied = _log(copy.astype(logits.dtype)) + log_sigmoid(-z)[:, None]
    return xp.logaddexp(generated, copied), 1.0 / (1.0 + xp.exp(-z))


def _log(x):
    """``log(x)`` of probabilities, ``-inf`` where ``x`` is 0 (nothing to copy), without the
    divide-by-zero warning; ``logaddexp`` takes the ``-inf``."""
    xp = array_module(x)
    positive = x > 0
    return xp.where(positive, xp.log(xp.where(positive, x, 1.0)), -xp.inf)
