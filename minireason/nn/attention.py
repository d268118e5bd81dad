"""Scaled dot-product attention, forward and backward, written out by hand.

    Attention(Q, K, V) = softmax(Q K^T * scale + mask) V,      scale = 1 / sqrt(d_k)

The API follows PyTorch's ``torch.nn.functional.scaled_dot_product_attention``:

- arrays are laid out ``(..., heads, seq, head_dim)``; ``...`` is any number of batch dims
  (including none), identical for query, key and value;
- query length ``Tq`` and key length ``Tk`` may differ; value's head_dim ``Ev`` may differ
  from the query/key head_dim ``E``;
- ``attn_mask`` is boolean (True = may attend) or floating (added to the scores), and
  broadcastable to the score shape ``(..., heads, Tq, Tk)``;
- ``is_causal=True`` lets query ``i`` attend to keys ``j <= i`` (the top-left triangle, as
  ``torch.tril(ones(Tq, Tk))``); it may not be combined with ``attn_mask``;
- ``scale`` defaults to ``1 / sqrt(E)``.

Fully masked rows. If every key of a query row is masked, the softmax has nothing to
normalise: ``0 / 0``. We return a row of zero weights, so the output row is zero and its
gradients are zero, as PyTorch's ``scaled_dot_product_attention`` does (with a boolean mask
or a float mask of ``-inf``; ``tests/test_attention.py`` checks it against torch 2.13.0).
Nothing in this module ever produces NaN or inf from finite inputs.

Every op comes as a pair, CS231n style: ``attention_forward(...) -> (out, cache)`` and
``attention_backward(dout, cache) -> (dq, dk, dv, dmask)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from minireason.backend import array_module
from minireason.nn.threads import matmul, rowwise

# --------------------------------------------------------------------------- helpers


def causal_mask(q_len: int, k_len: int, xp=None):
    """Boolean ``(q_len, k_len)`` mask, True where key ``j <= i`` (PyTorch's ``is_causal``)."""
    xp = np if xp is None else xp
    return xp.tril(xp.ones((q_len, k_len), dtype=bool))


def split_heads(x, n_head: int):
    """``(..., T, C) -> (..., n_head, T, C // n_head)``: cut the channels into heads.

    Raises ValueError if ``C`` is not a multiple of ``n_head``.
    """
    *lead, T, C = x.shape
    if n_head < 1 or C % n_head:
        raise ValueError(
            f"split_heads: channels C={C} (x.shape={x.shape}) is not divisible by n_head={n_head}"
        )
    xs = x.reshape(*lead, T, n_head, C // n_head)
    return xs.swapaxes(-2, -3)


def merge_heads(x):
    """``(..., H, T, D) -> (..., T, H * D)``: the inverse of :func:`split_heads`."""
    *lead, H, T, D = x.shape
    return x.swapaxes(-2, -3).reshape(*lead, T, H * D)


def masked_softmax(scores, allowed=None):
    """Softmax over the last axis that ignores disallowed entries, stable and NaN-free.

    Args:
        scores: ``(..., Tk)`` floating array; may hold ``-inf`` (e.g. from a float mask).
        allowed: optional boolean array broadcastable to ``scores``; False entries get weight 0.

    Returns:
        ``(..., Tk)`` weights; each row sums to 1, or is all zeros when no entry is allowed
        (every entry False or ``-inf``).
    """
    xp = array_module(scores)
    out = xp.empty_like(scores)
    masks = [] if allowed is None else [xp.broadcast_to(allowed, scores.shape)]

    def kernel(scores, out, *mask):  # rows of scores (and the mask) in; rows of out written
        s = xp.where(mask[0], scores, -xp.inf) if mask else scores
        m = s.max(axis=-1, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0.0)  # all -inf row: subtract 0, exp gives 0, no inf-inf
        xp.subtract(s, m, out=out)
        xp.exp(out, out=out)
        z = out.sum(axis=-1, keepdims=True)
        z = xp.where(z > 0, z, 1.0)  # empty row: 0 / 1 = 0
        out /= z

    rowwise(kernel, scores, out, *masks)
    return out


def _unbroadcast(grad, shape):
    """Sum ``grad`` over the axes along which an array of ``shape`` was broadcast to it."""
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad


# --------------------------------------------------------------------------- forward / backward


@dataclass
class AttentionCache:
    """What the backward pass needs. ``weights`` is the softmax, ``(..., Tq, Tk)``."""

    query: object
    key: object
    value: object
    weights: object
    scale: float
    mask_shape: tuple | None  # shape of a float mask (its gradient is returned), else None


def attention_forward(
    query, key, value, attn_mask=None, is_causal=False, scale=None, validate=True
):
    """Scaled dot-product attention that also returns the cache for the backward pass.

    Args:
        query: ``(..., Tq, E)``.
        key: ``(..., Tk, E)``.
        value: ``(..., Tk, Ev)``.
        attn_mask: None, or bool / float array broadcastable to ``(..., Tq, Tk)``.
        is_causal: mask key ``j > i`` for query ``i`` (top-left triangle).
        scale: multiplier of ``Q K^T``; None means ``1 / sqrt(E)``.
        validate: check shapes, dtypes and finiteness (a ValueError names what is wrong).
            Internal hot loops that built their inputs themselves may pass False.

    Returns:
        ``out`` ``(..., Tq, Ev)`` and an :class:`AttentionCache` (its ``weights`` field holds
        the attention weights ``(..., Tq, Tk)``).
    """
    if validate:
        check_attention_inputs(query, key, value, attn_mask, is_causal, scale)
    xp = array_module(query)
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    scores = matmul(query, key.swapaxes(-1, -2))  # (..., Tq, Tk)
    scores *= scale
    allowed = None
    mask_shape = None
    if is_causal:
        allowed = causal_mask(query.shape[-2], key.shape[-2], xp)
    elif attn_mask is not None and attn_mask.dtype == bool:
        allowed = attn_mask
    elif attn_mask is not None:
        scores += attn_mask.astype(scores.dtype, copy=False)
        mask_shape = attn_mask.shape
    weights = masked_softmax(scores, allowed)
    out = matmul(weights, value)  # (..., Tq, Ev)
    return out, AttentionCache(query, key, value, weights, float(scale), mask_shape)


def attention_backward(dout, cache: AttentionCache):
    """Gradients of attention given ``dout = dL/d(out)``, ``(..., Tq, Ev)``.

    With P the weights and S the scaled, masked scores::

        dV = P^T dout                       (..., Tk, Ev)
        dP = dout V^T                       (..., Tq, Tk)
        dS = P * (dP - rowsum(dP * P))      softmax backward; zero where P is zero
        dQ = scale * dS K                   (..., Tq, E)
        dK = scale * dS^T Q                 (..., Tk, E)
        dmask = dS, summed over broadcast axes (float masks only; else None)

    Returns:
        ``(dq, dk, dv, dmask)``.
    """
    P = cache.weights
    dv = matmul(P.swapaxes(-1, -2), dout)
    dP = matmul(dout, cache.value.swapaxes(-1, -2))

    def softmax_backward(dS, P):  # rows of dP in, rows of dS (in the same array) out
        dS -= (dS * P).sum(axis=-1, keepdims=True)
        dS *= P

    dS = dP
    rowwise(softmax_backward, dS, P)
    dmask = None if cache.mask_shape is None else _unbroadcast(dS, cache.mask_shape).copy()
    dq = matmul(dS, cache.key)
    dq *= cache.scale  # (..., Tq, E): fewer entries to scale than dS's (..., Tq, Tk)
    dk = matmul(dS.swapaxes(-1, -2), cache.query)
    dk *= cache.scale
    return dq, dk, dv, dmask


def scaled_dot_product_attention(query, key, value, attn_mask=None, is_causal=False, scale=None):
    """``softmax(Q K^T * scale + mask) V``; shapes and semantics as in the module docstring.

    Args:
        query ``(..., Tq, E)``, key ``(..., Tk, E)``, value ``(..., Tk, Ev)``.

    Returns:
        ``(..., Tq, Ev)``.
    """
    out, _ = attention_forward(query, key, value, attn_mask, is_causal, scale)
    return out


# --------------------------------------------------------------------------- validation
# After the maths on purpose: read attention_forward first; this is what it refuses.


def check_attention_inputs(query, key, value, attn_mask, is_causal, scale):
    """Raise ValueError naming the argument and shapes for anything attention cannot take."""
    xp = array_module(query)
    for name, a in (("query", query), ("key", key), ("value", value)):
        if not hasattr(a, "shape") or a.ndim < 2:
            raise ValueError(
                f"{name} must be an array of shape (..., seq, head_dim), got {getattr(a, 'shape', type(a))}"
            )
        if a.dtype.kind != "f":
            raise ValueError(
                f"{name} must be floating point (float32 or float64), got dtype {a.dtype}"
            )
    if not (query.dtype == key.dtype == value.dtype):
        raise ValueError(
            f"query, key and value must share a dtype, got {query.dtype}, {key.dtype}, {value.dtype}"
        )
    if query.shape[:-2] != key.shape[:-2] or key.shape[:-2] != value.shape[:-2]:
        raise ValueError(
            "query, key and value must have the same leading (..., heads) dims, got "
            f"query {query.shape}, key {key.shape}, value {value.shape}"
        )
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"query and key head_dim differ: query {query.shape}, key {key.shape}")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"key and value sequence lengths differ: key {key.shape}, value {value.shape}"
        )
    for name, a in (("query", query), ("key", key), ("value", value)):
        if not bool(xp.isfinite(a).all()):
            raise ValueError(f"{name} {a.shape} contains NaN or inf")
    if scale is not None and not (isinstance(scale, (int, float)) and math.isfinite(scale)):
        raise ValueError(f"scale must be a finite number or None, got {scale!r}")
    if attn_mask is None:
        return
    if is_causal:
        raise ValueError(
            f"pass either attn_mask (shape {attn_mask.shape}) or is_causal=True, not both"
        )
    if attn_mask.dtype != bool and attn_mask.dtype.kind != "f":
        raise ValueError(
            f"attn_mask must be boolean (True = may attend) or floating (added to scores), got dtype {attn_mask.dtype}"
        )
    score_shape = query.shape[:-1] + key.shape[-2:-1]
    try:
        ok = np.broadcast_shapes(attn_mask.shape, score_shape) == score_shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"attn_mask of shape {attn_mask.shape} does not broadcast to the score shape "
            f"{score_shape} (from query {query.shape} and key {key.shape})"
        )
    if attn_mask.dtype.kind == "f" and bool((xp.isnan(attn_mask) | (attn_mask == xp.inf)).any()):
        raise ValueError(
            f"float attn_mask {attn_mask.shape} contains NaN or +inf (only -inf may mask)"
        )
