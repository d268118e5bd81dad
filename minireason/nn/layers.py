"""The GPT's layers, each a forward/backward pair written out by hand (CS231n / llm.c style).

Every op is ``x_forward(...) -> (out, cache)`` and ``x_backward(dout, cache) -> grads``.
Each cache is a named tuple (``LayerNormCache``, ``BlockCache``, ...) that only its paired
backward opens; the one exception is :func:`block_attention`, which says why.
Activations inside the model are kept 2-D, ``(N, C)`` with ``N = B * T`` tokens, so that
every projection is one contiguous ``(N, C) @ (C, C')`` matrix product (BLAS's fast path,
split across the cores by :func:`minireason.nn.threads.matmul`);
only attention reshapes to ``(B, H, T, D)``. Linear weights are stored ``(C_in, C_out)``
(as GPT-2 does), so the forward product needs no transpose.

Arrays come from whatever library owns the inputs (``backend.array_module``): NumPy on the
CPU, CuPy on the GPU. Constants are Python floats, which NumPy >= 2 keeps in the array's
dtype, so float32 stays float32 throughout.

Order, as data flows through the model: embedding, layernorm, linear, gelu, dropout,
causal self-attention, mlp, block, tied lm head, cross-entropy; and last, :class:`Ops`, the
pairs a block runs (these, or on CuPy the project's CUDA kernels,
:mod:`minireason.gpu.model_kernels`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from minireason.backend import array_module
from minireason.nn.attention import AttentionCache, attention_backward, attention_forward
from minireason.nn.threads import matmul, rowwise

GELU_SCALE = math.sqrt(2.0 / math.pi)  # a Python float: no silent float64 upcast
GELU_CUBIC = 0.044715

# --------------------------------------------------------------------------- embedding


class EmbeddingCache(NamedTuple):
    idx: object  # (B, T) token ids
    wte_shape: tuple  # (V, C)
    wpe_shape: tuple  # (block_size, C)


def embedding_forward(idx, wte, wpe):
    """Token plus position embedding.

    Args:
        idx: ``(B, T)`` integer token ids in ``[0, V)``.
        wte: ``(V, C)`` token embedding.
        wpe: ``(block_size, C)`` position embedding, ``T <= block_size``.

    Returns:
        ``x`` ``(B * T, C)`` (row ``b * T + t`` is ``wte[idx[b, t]] + wpe[t]``) and the cache.
    """
    B, T = idx.shape
    C = wte.shape[1]
    x = wte[idx]  # (B, T, C), a fresh array
    x += wpe[:T]
    return x.reshape(B * T, C), EmbeddingCache(idx, wte.shape, wpe.shape)


def embedding_backward(dx, cache: EmbeddingCache):
    """Gradients of the embedding given ``dx`` ``(B * T, C)``.

    Returns:
        ``dwte`` ``(V, C)`` (rows of repeated tokens add up) and ``dwpe`` ``(block_size, C)``.
    """
    idx, wte_shape, wpe_shape = cache
    xp = array_module(dx)
    B, T = idx.shape
    dx3 = dx.reshape(B, T, -1)
    dwpe = xp.zeros(wpe_shape, dtype=dx.dtype)
    dwpe[:T] = dx3.sum(axis=0)
    dwte = xp.zeros(wte_shape, dtype=dx.dtype)
    # Scatter-add: a token seen twice gets both rows added. ``add.at`` is NumPy's ufunc.at
    # (recent CuPy has it too, as atomic adds; older CuPy calls it ``cupyx.scatter_add``).
    xp.add.at(dwte, idx.reshape(-1), dx)
    return dwte, dwpe


# --------------------------------------------------------------------------- layernorm


class LayerNormCache(NamedTuple):
    xhat: object  # (N, C) normalised input
    rstd: object  # (N, 1) 1 / sqrt(var + eps)
    w: object  # (C,)


def layernorm_forward(x, w, b, eps=1e-5):
    """LayerNorm over the last axis: ``(x - mean) / sqrt(var + eps) * w + b``.

    Args:
        x: ``(N, C)``; w, b: ``(C,)``.

    Returns:
        ``out`` ``(N, C)`` and the cache ``(xhat, rstd, w)``.
    """
    xp = array_module(x)
    xhat, out = xp.empty_like(x), xp.empty_like(x)
    rstd = xp.empty((x.shape[0], 1), dtype=x.dtype)

    def kernel(x, xhat, rstd, out):  # rows of x in; rows of xhat, rstd, out written
        xp.subtract(x, x.mean(axis=-1, keepdims=True), out=xhat)
        xp.multiply(xhat, xhat, out=out)
        var = out.mean(axis=-1, keepdims=True)
        var += eps
        xp.divide(1.0, var**0.5, out=rstd)  # (rows, 1)
        xhat *= rstd
        xp.multiply(xhat, w, out=out)
        out += b

    rowwise(kernel, x, xhat, rstd, out)
    return out, LayerNormCache(xhat, rstd, w)


def layernorm_backward(dout, cache: LayerNormCache):
    """Gradients of LayerNorm given ``dout`` ``(N, C)``.

    With ``g = dout * w``: ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))``.

    Returns:
        ``dx`` ``(N, C)``, ``dw`` ``(C,)``, ``db`` ``(C,)``.
    """
    xhat, rstd, w = cache
    xp = array_module(dout)
    db = dout.sum(axis=0)
    dw = (dout * xhat).sum(axis=0)
    g, gx = xp.empty_like(dout), xp.empty_like(dout)

    def kernel(dout, xhat, rstd, g, gx):  # rows of dout, xhat, rstd in; rows of g written
        xp.multiply(dout, w, out=g)
        xp.multiply(g, xhat, out=gx)
        gx_mean = gx.mean(axis=-1, keepdims=True)
        g -= g.mean(axis=-1, keepdims=True)
        xp.multiply(xhat, gx_mean, out=gx)
        g -= gx
        g *= rstd

    rowwise(kernel, dout, xhat, rstd, g, gx)
    return g, dw, db


# --------------------------------------------------------------------------- linear


class LinearCache(NamedTuple):
    x: object  # (N, C_in)
    w: object  # (C_in, C_out)


def linear_forward(x, w, b):
    """``x @ w + b``.

    Args:
        x: ``(N, C_in)``; w: ``(C_in, C_out)``; b: ``(C_out,)``.

    Returns:
        ``out`` ``(N, C_out)`` and the cache ``(x, w)``.
    """
    out = matmul(x, w)
    out += b
    return out, LinearCache(x, w)


def linear_backward(dout, cache: LinearCache):
    """Gradients of Linear given ``dout`` ``(N, C_out)``.

    Returns:
        ``dx = dout @ w.T`` ``(N, C_in)``, ``dw = x.T @ dout`` ``(C_in, C_out)``,
        ``db = sum(dout)`` ``(C_out,)``.
    """
    x, w = cache
    return matmul(dout, w.T), matmul(x.T, dout), dout.sum(axis=0)


# --------------------------------------------------------------------------- gelu


class GeluCache(NamedTuple):
    x: object  # the input
    t: object  # tanh(s (x + 0.044715 x^3)), same shape


def gelu_forward(x):
    """GELU, tanh form: ``0.5 x (1 + tanh(s (x + 0.044715 x^3)))``, ``s = sqrt(2 / pi)``.

    Args:
        x: any shape.

    Returns:
        ``out`` (same shape) and the cache ``(x, t)`` with ``t`` the tanh term.
    """
    xp = array_module(x)
    t, out = xp.empty_like(x), xp.empty_like(x)

    def kernel(x, t, out):  # rows of x in, rows of t and out written
        xp.multiply(x, x, out=t)  # s (x + c x^3) = x (s c x^2 + s), built in place
        t *= GELU_SCALE * GELU_CUBIC
        t += GELU_SCALE
        t *= x
        xp.tanh(t, out=t)
        xp.add(t, 1.0, out=out)
        out *= x
        out *= 0.5

    rowwise(kernel, x, t, out)
    return out, GeluCache(x, t)


def gelu_backward(dout, cache: GeluCache):
    """Gradient of GELU (tanh form) given ``dout`` (shape of the input).

    ``d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) s (1 + 3 * 0.044715 x^2)``.
    """
    x, t = cache
    xp = array_module(dout)
    dx, inner = xp.empty_like(dout), xp.empty_like(dout)

    def kernel(x, t, dout, dx, inner):  # rows of x, t, dout in; rows of dx (and inner) written
        xp.multiply(x, x, out=inner)  # 0.5 s (1 + 3c x^2) x, then times (t^2 - 1)
        inner *= 1.5 * GELU_SCALE * GELU_CUBIC
        inner += 0.5 * GELU_SCALE
        inner *= x
        xp.multiply(t, t, out=dx)
        dx -= 1.0  # t^2 - 1 = -(1 - t^2)
        inner *= dx
        xp.add(t, 1.0, out=dx)
        dx *= 0.5
        dx -= inner
        dx *= dout

    rowwise(kernel, x, t, dout, dx, inner)
    return dx


# --------------------------------------------------------------------------- dropout


def dropout_forward(x, p, rng):
    """Inverted dropout: zero each entry with probability ``p``, scale the rest by ``1/(1-p)``.

    Args:
        x: any shape.
        p: drop probability in ``[0, 1)``; 0 (or ``rng`` None, i.e. eval mode) is the identity.
        rng: a ``numpy.random.Generator``; the mask is drawn on the host so that NumPy and
            CuPy runs with the same seed drop the same entries.

    Returns:
        ``out`` and the cache (the scaled keep-mask, or None for the identity).
    """
    if p == 0.0 or rng is None:
        return x, None
    xp = array_module(x)
    keep = rng.random(x.shape, dtype=x.dtype) >= p
    mask = xp.asarray(keep, dtype=x.dtype)
    mask *= 1.0 / (1.0 - p)
    return x * mask, mask


def dropout_backward(dout, cache):
    """Gradient of dropout: ``dout * mask`` (or ``dout`` for the identity)."""
    return dout if cache is None else dout * cache


# --------------------------------------------------------------------------- attention


class SelfAttentionCache(NamedTuple):
    qkv: LinearCache
    attention: AttentionCache  # its ``weights`` are the attention ``(B, H, T, T)``
    proj: LinearCache
    shape: tuple  # (B, T, H, D)


def causal_attention(q, k, v):
    """Causal attention of heads ``(B, H, T, D)`` that the caller built (not validated):
    :func:`minireason.nn.attention.attention_forward`, returning ``(out, AttentionCache)``."""
    return attention_forward(q, k, v, is_causal=True, validate=False)


def self_attention_forward(x, w_qkv, b_qkv, w_proj, b_proj, B, T, n_head, ops=None):
    """Causal multi-head self-attention with one fused QKV projection.

    ``qkv = x @ w_qkv + b_qkv`` is split into Q, K, V heads ``(B, H, T, D)`` (views, no
    copy), attended with :func:`causal_attention` (or ``ops.attention_forward``), merged
    back to ``(B * T, C)`` and projected.

    Args:
        x: ``(B * T, C)``; w_qkv: ``(C, 3C)``; b_qkv: ``(3C,)``; w_proj: ``(C, C)``;
        b_proj: ``(C,)``; n_head: ``H``, dividing ``C``.
        ops: the layer pairs to run (:class:`Ops`; None: :data:`REFERENCE_OPS`).

    Returns:
        ``out`` ``(B * T, C)`` and a :class:`SelfAttentionCache`.
    """
    ops = ops or REFERENCE_OPS
    C = x.shape[1]
    D = C // n_head
    qkv, qkv_cache = linear_forward(x, w_qkv, b_qkv)  # (B*T, 3C)
    q, k, v = qkv.reshape(B, T, 3, n_head, D).transpose(2, 0, 3, 1, 4)  # each (B, H, T, D)
    y, att_cache = ops.attention_forward(q, k, v)
    y = y.transpose(0, 2, 1, 3).reshape(B * T, C)  # merge heads (one copy)
    out, proj_cache = linear_forward(y, w_proj, b_proj)
    return out, SelfAttentionCache(qkv_cache, att_cache, proj_cache, (B, T, n_head, D))


def self_attention_backward(dout, cache: SelfAttentionCache, ops=None):
    """Gradients of causal self-attention given ``dout`` ``(B * T, C)``; ``ops`` as given to
    the forward.

    Returns:
        ``dx`` ``(B * T, C)``, ``dw_qkv`` ``(C, 3C)``, ``db_qkv`` ``(3C,)``,
        ``dw_proj`` ``(C, C)``, ``db_proj`` ``(C,)``.
    """
    ops = ops or REFERENCE_OPS
    qkv_cache, att_cache, proj_cache, (B, T, H, D) = cache
    xp = array_module(dout)
    dy, dw_proj, db_proj = linear_backward(dout, proj_cache)
    dy = dy.reshape(B, T, H, D).transpose(0, 2, 1, 3)  # split heads: (B, H, T, D) view
    dq, dk, dv, _ = ops.attention_backward(dy, att_cache)
    dqkv = xp.empty((B, T, 3, H, D), dtype=dout.dtype)
    dqkv_heads = dqkv.transpose(2, 0, 3, 1, 4)  # (3, B, H, T, D) view of dqkv
    dqkv_heads[0] = dq
    dqkv_heads[1] = dk
    dqkv_heads[2] = dv
    dx, dw_qkv, db_qkv = linear_backward(dqkv.reshape(B * T, 3 * H * D), qkv_cache)
    return dx, dw_qkv, db_qkv, dw_proj, db_proj


# --------------------------------------------------------------------------- mlp


class MLPCache(NamedTuple):
    fc: LinearCache
    gelu: GeluCache
    proj: LinearCache


def mlp_forward(x, w_fc, b_fc, w_proj, b_proj, ops=None):
    """``gelu(x @ w_fc + b_fc) @ w_proj + b_proj``.

    Args:
        x: ``(N, C)``; w_fc: ``(C, 4C)``; b_fc: ``(4C,)``; w_proj: ``(4C, C)``; b_proj: ``(C,)``.
        ops: the layer pairs to run (:class:`Ops`; None: :data:`REFERENCE_OPS`).

    Returns:
        ``out`` ``(N, C)`` and the cache.
    """
    ops = ops or REFERENCE_OPS
    h, fc_cache = linear_forward(x, w_fc, b_fc)
    a, gelu_cache = ops.gelu_forward(h)
    out, proj_cache = linear_forward(a, w_proj, b_proj)
    return out, MLPCache(fc_cache, gelu_cache, proj_cache)


def mlp_backward(dout, cache: MLPCache, ops=None):
    """Gradients of the MLP given ``dout`` ``(N, C)``; ``ops`` as given to the forward.

    Returns:
        ``dx``, ``dw_fc``, ``db_fc``, ``dw_proj``, ``db_proj``.
    """
    ops = ops or REFERENCE_OPS
    fc_cache, gelu_cache, proj_cache = cache
    da, dw_proj, db_proj = linear_backward(dout, proj_cache)
    dh = ops.gelu_backward(da, gelu_cache)
    dx, dw_fc, db_fc = linear_backward(dh, fc_cache)
    return dx, dw_fc, db_fc, dw_proj, db_proj


# --------------------------------------------------------------------------- block


BLOCK_PARAMS = (
    "ln1.w",
    "ln1.b",
    "attn.w_qkv",
    "attn.b_qkv",
    "attn.w_proj",
    "attn.b_proj",
    "ln2.w",
    "ln2.b",
    "mlp.w_fc",
    "mlp.b_fc",
    "mlp.w_proj",
    "mlp.b_proj",
)


class BlockCache(NamedTuple):
    ln1: LayerNormCache
    attn: SelfAttentionCache
    drop1: object  # the dropout mask, or None
    ln2: LayerNormCache
    mlp: MLPCache
    drop2: object  # the dropout mask, or None
    ops: object  # the Ops the forward ran, which the backward must match


def block_forward(x, p, B, T, n_head, dropout=0.0, rng=None, eps=1e-5, ops=None):
    """One pre-norm transformer block::

        x = x + dropout(attn(ln1(x)))
        x = x + dropout(mlp(ln2(x)))

    Args:
        x: ``(B * T, C)``.
        p: the block's parameters by the names in :data:`BLOCK_PARAMS`.
        dropout, rng: as in :func:`dropout_forward` (rng None: no dropout).
        ops: the layer pairs to run (:class:`Ops`; None: :data:`REFERENCE_OPS`).

    Returns:
        ``out`` ``(B * T, C)`` and the cache.
    """
    ops = ops or REFERENCE_OPS
    h, ln1_cache = ops.layernorm_forward(x, p["ln1.w"], p["ln1.b"], eps)
    h, attn_cache = self_attention_forward(
        h, p["attn.w_qkv"], p["attn.b_qkv"], p["attn.w_proj"], p["attn.b_proj"], B, T, n_head, ops
    )
    h, drop1_cache = dropout_forward(h, dropout, rng)
    x = x + h
    h, ln2_cache = ops.layernorm_forward(x, p["ln2.w"], p["ln2.b"], eps)
    mlp_p = (p["mlp.w_fc"], p["mlp.b_fc"], p["mlp.w_proj"], p["mlp.b_proj"])
    h, mlp_cache = mlp_forward(h, *mlp_p, ops)
    h, drop2_cache = dropout_forward(h, dropout, rng)
    x = x + h  # a new array: a LayerNorm cache may hold its input x (the fused one does)
    caches = (ln1_cache, attn_cache, drop1_cache, ln2_cache, mlp_cache, drop2_cache)
    return x, BlockCache(*caches, ops)


def block_backward(dout, cache: BlockCache):
    """Gradients of a block given ``dout`` ``(B * T, C)``.

    Returns:
        ``dx`` ``(B * T, C)`` and the parameter gradients by the names in :data:`BLOCK_PARAMS`.
    """
    ln1_cache, attn_cache, drop1_cache, ln2_cache, mlp_cache, drop2_cache, ops = cache
    g = {}
    dh = dropout_backward(dout, drop2_cache)
    dh, g["mlp.w_fc"], g["mlp.b_fc"], g["mlp.w_proj"], g["mlp.b_proj"] = mlp_backward(
        dh, mlp_cache, ops
    )
    dh, g["ln2.w"], g["ln2.b"] = ops.layernorm_backward(dh, ln2_cache)
    dx = dout + dh  # residual: the gradient flows both ways
    dh = dropout_backward(dx, drop1_cache)
    dh, g["attn.w_qkv"], g["attn.b_qkv"], g["attn.w_proj"], g["attn.b_proj"] = (
        self_attention_backward(dh, attn_cache, ops)
    )
    dh, g["ln1.w"], g["ln1.b"] = ops.layernorm_backward(dh, ln1_cache)
    dx += dh
    return dx, g


def block_attention(cache: BlockCache) -> AttentionCache:
    """The attention inside a block's cache, for the two readers outside the backward pass:
    the model exposes its ``weights`` ``(B, H, T, T)`` as evidence (what a reason attended
    to), and generation copies its ``key`` / ``value`` ``(B, H, T, D)`` into the KV cache after
    the prefill, so the prompt is not run twice."""
    return cache.attn.attention


# --------------------------------------------------------------------------- lm head


class LMHeadCache(NamedTuple):
    x: object  # (N, C)
    wte: object  # (V, C)


def lm_head_forward(x, wte):
    """Logits from the token embedding, tied: ``x @ wte.T``.

    Args:
        x: ``(N, C)``; wte: ``(V, C)``.

    Returns:
        ``logits`` ``(N, V)`` and the cache.
    """
    return matmul(x, wte.T), LMHeadCache(x, wte)


def lm_head_backward(dlogits, cache: LMHeadCache):
    """Gradients of the tied head given ``dlogits`` ``(N, V)``.

    Returns:
        ``dx = dlogits @ wte`` ``(N, C)`` and ``dwte = dlogits.T @ x`` ``(V, C)`` (to be added
        to the embedding's own gradient, since the weight is shared).
    """
    x, wte = cache
    return matmul(dlogits, wte), matmul(dlogits.T, x)


# --------------------------------------------------------------------------- cross-entropy


def log_softmax(logits):
    """``logits - logsumexp(logits)`` over the last axis, stable; shape unchanged."""
    xp = array_module(logits)
    out = logits - logits.max(axis=-1, keepdims=True)
    lse = xp.log(xp.exp(out).sum(axis=-1, keepdims=True))
    out -= lse
    return out


class CrossEntropyCache(NamedTuple):
    e: object  # (N, V) exp(logits - rowmax), overwritten by the backward
    z: object  # (N,) row sums of e
    targets: object  # (N,)
    weights: object  # (N,) mask / count
    nll: object  # (N,) each token's negative log-likelihood


def cross_entropy_forward(logits, targets, mask=None):
    """Mean negative log-likelihood over the tokens selected by ``mask``.

    With ``e = exp(logits - rowmax)`` and ``z = rowsum(e)``, the softmax is ``e / z`` and a
    token's NLL is ``log z - (logit[target] - rowmax)``. The division by ``z`` is left to the
    backward pass, which scales every row anyway (one pass over ``(N, V)`` fewer).

    Args:
        logits: ``(N, V)``.
        targets: ``(N,)`` integer ids in ``[0, V)``.
        mask: ``(N,)`` of 0/1 (1 = counted), or None for all tokens; at least one must be 1.

    Returns:
        ``loss`` (a 0-d array) and the cache ``(e, z, targets, weights, nll)`` with ``e``
        ``(N, V)``, ``z`` ``(N,)``, ``weights`` ``(N,)`` = ``mask / count`` and ``nll`` ``(N,)``.
    """
    xp = array_module(logits)
    N = logits.shape[0]
    e = xp.empty_like(logits)  # the one (N, V) buffer
    rowmax, z = xp.empty((N, 1), dtype=logits.dtype), xp.empty((N, 1), dtype=logits.dtype)

    def kernel(logits, e, rowmax, z):  # rows of logits in; rows of e, rowmax, z written
        logits.max(axis=-1, keepdims=True, out=rowmax)
        xp.subtract(logits, rowmax, out=e)
        xp.exp(e, out=e)
        e.sum(axis=-1, keepdims=True, out=z)

    rowwise(kernel, logits, e, rowmax, z)
    z = z[:, 0]  # (N,)
    target_logit = logits[xp.arange(N), targets] - rowmax[:, 0]  # (N,), shifted like e
    nll = xp.log(z) - target_logit  # (N,)
    weights = token_weights(xp, mask, N, logits.dtype)
    loss = (nll * weights).sum()
    return loss, CrossEntropyCache(e, z, targets, weights, nll)


def token_weights(xp, mask, n: int, dtype):
    """``(n,)`` each token's share of the mean loss: ``mask / sum(mask)``, or ``1 / n`` each
    when ``mask`` is None."""
    if mask is None:
        return xp.full((n,), 1.0 / n, dtype=dtype)
    weights = mask.astype(dtype)
    weights /= weights.sum()
    return weights


def cross_entropy_backward(cache: CrossEntropyCache):
    """Gradient of the masked mean NLL: ``(softmax - onehot(target)) * weight`` per row.

    Overwrites the cached ``e`` (it is not needed again) and returns it as
    ``dlogits`` ``(N, V)``.
    """
    e, z, targets, weights, _ = cache
    xp = array_module(e)
    scale = (weights / z)[:, None]  # (N, 1)

    def kernel(e, scale):
        e *= scale  # softmax * weight, in one pass

    rowwise(kernel, e, scale)
    e[xp.arange(e.shape[0]), targets] -= weights
    return e


# --------------------------------------------------------------------------- the pairs a block runs


class Ops(NamedTuple):
    """The layer pairs a block, the final LayerNorm and the loss run, each a forward beside its
    backward with this module's signatures (``attention_forward(q, k, v) -> (out, cache)``,
    causal, on heads ``(B, H, T, D)``). :data:`REFERENCE_OPS` is this module's array maths;
    on CuPy, :mod:`minireason.gpu.model_kernels` builds others from the project's CUDA kernels.
    A cache is opened only by the backward of the Ops that made it."""

    layernorm_forward: Callable
    layernorm_backward: Callable
    gelu_forward: Callable
    gelu_backward: Callable
    attention_forward: Callable
    attention_backward: Callable
    cross_entropy_forward: Callable
    cross_entropy_backward: Callable


REFERENCE_OPS = Ops(
    layernorm_forward,
    layernorm_backward,
    gelu_forward,
    gelu_backward,
    causal_attention,
    attention_backward,
    cross_entropy_forward,
    cross_entropy_backward,
)
