"""Launch the fused elementwise kernels 6-9 (``kernels/*_fused.cu``) from CuPy.

====  ==========================  =================================================
 6    :func:`layernorm_forward6`    LayerNorm, a row per warp; saves mean and rstd
      :func:`layernorm_backward6`   dx a row per warp; dw, db summed over row blocks
 7    :func:`gelu_forward7`         GELU (tanh form), one pass
      :func:`gelu_backward7`        its gradient, recomputing the tanh from x
 8    :func:`cross_entropy_forward8`  per-token lse and NLL over the vocabulary
      :func:`cross_entropy_backward8` (softmax - onehot) * token weight
 9    :func:`adamw_update9`         one AdamW update of one parameter, in place
====  ==========================  =================================================

Each launcher takes float32 CuPy arrays (``targets`` int64) shaped like the arguments of its
layer in :mod:`minireason.nn.layers` / :mod:`minireason.nn.optim`, and returns new arrays (the
AdamW update writes into ``p``, ``m``, ``v``, as the NumPy one does). The NumPy twin of each,
with the same thread decomposition, is in :mod:`minireason.gpu.fused_emulation`; read it first.

``check=True`` synchronises after the launch and turns a CUDA error into
:class:`~minireason.gpu.cuda_attention.KernelError`; the model's training step passes False
(a synchronisation per layer would stall the GPU's queue), and its errors surface at the
step's next synchronisation instead. CuPy is never imported here.
"""

from __future__ import annotations

import math

import numpy as np

from minireason.gpu import cuda_attention as ca
from minireason.gpu.fused_emulation import (
    ADAMW_MAX_BLOCKS,
    ADAMW_THREADS,
    CE_ROWS_PER_BLOCK,
    GELU_MAX_BLOCKS,
    GELU_THREADS,
    LN_DWDB_ROWS,
    LN_DWDB_WARPS,
    LN_ROWS_PER_BLOCK,
    grid_stride_blocks,
)

KERNEL_FILES = {
    "layernorm_forward": "layernorm6_fused.cu",
    "layernorm_backward_dx": "layernorm6_fused.cu",
    "layernorm_backward_dwdb": "layernorm6_fused.cu",
    "gelu_forward": "gelu7_fused.cu",
    "gelu_backward": "gelu7_fused.cu",
    "cross_entropy_forward": "cross_entropy8_fused.cu",
    "cross_entropy_backward": "cross_entropy8_fused.cu",
    "adamw_update": "adamw9_fused.cu",
}


def _launch(cp, name, grid, block, args, shared_bytes=0, what="", check=True) -> None:
    ca.launch(cp, name, grid, block, args, shared_bytes, what, filename=KERNEL_FILES[name])
    if check:
        ca.check_cuda(cp, f"{name} {what}")


def _rows(cp, name: str, a, width=None):
    """``a`` checked to be a float32 GPU matrix ``(N, C)`` (``C == width`` if given), contiguous."""
    ca.gpu_float32(name, a)
    if a.ndim != 2 or (width is not None and a.shape[1] != width):
        want = "(N, C)" if width is None else f"(N, {width})"
        raise ValueError(f"{name} must be a {want} array, got {a.shape}")
    return cp.ascontiguousarray(a)


def _vector(cp, name: str, a, length: int):
    ca.gpu_float32(name, a)
    if a.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {a.shape}")
    return cp.ascontiguousarray(a)


# --------------------------------------------------------------------------- kernel 6


def layernorm_forward6(x, w, b, eps=1e-5, check=True):
    """Kernel 6 forward: ``(x - mean) * rstd * w + b`` over the last axis.

    Args:
        x: ``(N, C)``; w, b: ``(C,)``; float32 CuPy.
        eps: added to the variance.

    Returns:
        ``out`` ``(N, C)``, ``mean`` ``(N,)``, ``rstd`` ``(N,)`` (= ``1 / sqrt(var + eps)``).
    """
    cp = ca.gpu_float32("x", x)
    x = _rows(cp, "x", x)
    n, c = x.shape
    w, b = _vector(cp, "w", w, c), _vector(cp, "b", b, c)
    out = cp.empty_like(x)
    mean = cp.empty(n, dtype=np.float32)
    rstd = cp.empty(n, dtype=np.float32)
    _launch(
        cp,
        "layernorm_forward",
        (math.ceil(n / LN_ROWS_PER_BLOCK),),
        (32 * LN_ROWS_PER_BLOCK,),
        (x, w, b, out, mean, rstd, np.int32(n), np.int32(c), np.float32(eps)),
        what=f"(x {x.shape})",
        check=check,
    )
    return out, mean, rstd


def layernorm_backward6(dout, x, w, mean, rstd, check=True):
    """Kernel 6 backward, from ``dout`` ``(N, C)`` and the forward's ``x``, ``w``, ``mean``, ``rstd``.

    Returns:
        ``dx`` ``(N, C)``, ``dw`` ``(C,)``, ``db`` ``(C,)``.
    """
    cp = ca.gpu_float32("dout", dout)
    x = _rows(cp, "x", x)
    n, c = x.shape
    dout = _rows(cp, "dout", dout, c)
    if dout.shape != x.shape:
        raise ValueError(f"dout {dout.shape} must have the shape of x {x.shape}")
    w = _vector(cp, "w", w, c)
    mean, rstd = _vector(cp, "mean", mean, n), _vector(cp, "rstd", rstd, n)
    what = f"(x {x.shape})"
    dx = cp.empty_like(x)
    _launch(
        cp,
        "layernorm_backward_dx",
        (math.ceil(n / LN_ROWS_PER_BLOCK),),
        (32 * LN_ROWS_PER_BLOCK,),
        (dout, x, w, mean, rstd, dx, np.int32(n), np.int32(c)),
        what=what,
        check=False,
    )
    chunks = math.ceil(n / LN_DWDB_ROWS)
    dw_partial = cp.empty((chunks, c), dtype=np.float32)
    db_partial = cp.empty((chunks, c), dtype=np.float32)
    _launch(
        cp,
        "layernorm_backward_dwdb",
        (math.ceil(c / 32), chunks),
        (32 * LN_DWDB_WARPS,),
        (dout, x, mean, rstd, dw_partial, db_partial, np.int32(n), np.int32(c)),
        shared_bytes=4 * 2 * LN_DWDB_WARPS * 32,
        what=what,
        check=check,
    )
    return dx, dw_partial.sum(axis=0), db_partial.sum(axis=0)


# --------------------------------------------------------------------------- kernel 7


def _flat(cp, name: str, a):
    ca.gpu_float32(name, a)
    return cp.ascontiguousarray(a)


def gelu_forward7(x, check=True):
    """Kernel 7 forward: GELU (tanh form) of ``x`` (any shape); returns ``out``, same shape."""
    cp = ca.gpu_float32("x", x)
    x = _flat(cp, "x", x)
    out = cp.empty_like(x)
    _launch(
        cp,
        "gelu_forward",
        (grid_stride_blocks(x.size, GELU_THREADS, GELU_MAX_BLOCKS),),
        (GELU_THREADS,),
        (x, out, np.int64(x.size)),
        what=f"(x {x.shape})",
        check=check,
    )
    return out


def gelu_backward7(dout, x, check=True):
    """Kernel 7 backward: ``dx`` (shape of ``x``) from ``dout`` and the forward's input ``x``."""
    cp = ca.gpu_float32("dout", dout)
    if dout.shape != x.shape:
        raise ValueError(f"dout {dout.shape} must have the shape of x {x.shape}")
    x, dout = _flat(cp, "x", x), _flat(cp, "dout", dout)
    dx = cp.empty_like(x)
    _launch(
        cp,
        "gelu_backward",
        (grid_stride_blocks(x.size, GELU_THREADS, GELU_MAX_BLOCKS),),
        (GELU_THREADS,),
        (x, dout, dx, np.int64(x.size)),
        what=f"(x {x.shape})",
        check=check,
    )
    return dx


# --------------------------------------------------------------------------- kernel 8


def _targets(cp, targets, n: int):
    if targets.shape != (n,) or targets.dtype.kind not in "iu":
        raise ValueError(f"targets must be ({n},) integer ids, got {targets.shape} {targets.dtype}")
    return cp.ascontiguousarray(targets, dtype=np.int64)


def cross_entropy_forward8(logits, targets, check=True):
    """Kernel 8 forward: each token's log-sum-exp and negative log-likelihood.

    Args:
        logits: ``(N, V)`` float32; targets: ``(N,)`` integer ids in ``[0, V)`` (not checked
            on the GPU: an id out of range reads another row's logit).

    Returns:
        ``lse`` ``(N,)`` and ``nll`` ``(N,)``; the loss is ``(nll * weights).sum()`` with
        :func:`minireason.nn.layers.token_weights`.
    """
    cp = ca.gpu_float32("logits", logits)
    logits = _rows(cp, "logits", logits)
    n, v = logits.shape
    targets = _targets(cp, targets, n)
    lse = cp.empty(n, dtype=np.float32)
    nll = cp.empty(n, dtype=np.float32)
    _launch(
        cp,
        "cross_entropy_forward",
        (math.ceil(n / CE_ROWS_PER_BLOCK),),
        (32 * CE_ROWS_PER_BLOCK,),
        (logits, targets, lse, nll, np.int32(n), np.int32(v)),
        what=f"(logits {logits.shape})",
        check=check,
    )
    return lse, nll


def cross_entropy_backward8(logits, targets, weights, lse, check=True):
    """Kernel 8 backward: ``dlogits`` ``(N, V)`` = ``(softmax - onehot(target)) * weight``.

    Args:
        logits ``(N, V)``, targets ``(N,)``: as given to the forward; weights ``(N,)`` each
        token's share of the loss (0: no gradient); lse ``(N,)`` from the forward.
    """
    cp = ca.gpu_float32("logits", logits)
    logits = _rows(cp, "logits", logits)
    n, v = logits.shape
    targets = _targets(cp, targets, n)
    weights, lse = _vector(cp, "weights", weights, n), _vector(cp, "lse", lse, n)
    dlogits = cp.empty_like(logits)
    _launch(
        cp,
        "cross_entropy_backward",
        (math.ceil(n / CE_ROWS_PER_BLOCK),),
        (32 * CE_ROWS_PER_BLOCK,),
        (logits, targets, weights, lse, dlogits, np.int32(n), np.int32(v)),
        what=f"(logits {logits.shape})",
        check=check,
    )
    return dlogits


# --------------------------------------------------------------------------- kernel 9


def adamw_update9(p, g, m, v, *, b1, b2, decay, v_correction, eps, step_size, check=True):
    """Kernel 9: :func:`minireason.nn.optim.adamw_update` in one pass, in place.

    Args:
        p, g, m, v: float32 C-contiguous CuPy arrays of one shape (the parameter, its
            gradient, the two moments); ``p``, ``m``, ``v`` are updated.
        b1, b2, decay, v_correction, eps, step_size: as :func:`~minireason.nn.optim.adamw_update`.
    """
    cp = ca.gpu_float32("p", p)
    for name, a in (("p", p), ("g", g), ("m", m), ("v", v)):
        ca.gpu_float32(name, a)
        if a.shape != p.shape or not a.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous of shape {p.shape}, got {a.shape}")
    scalars = (b1, 1.0 - b1, b2, 1.0 - b2, decay, v_correction, eps, step_size)
    _launch(
        cp,
        "adamw_update",
        (grid_stride_blocks(p.size, ADAMW_THREADS, ADAMW_MAX_BLOCKS),),
        (ADAMW_THREADS,),
        (p, g, m, v, np.int64(p.size), *(np.float32(s) for s in scalars)),
        what=f"(p {p.shape})",
        check=check,
    )
