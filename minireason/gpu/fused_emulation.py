"""The fused elementwise kernels 6-9, emulated in NumPy with their thread decomposition.

The readable twin of four CUDA files, as :mod:`minireason.gpu.flash_emulation` is of the flash
kernels:

- ``kernels/layernorm6_fused.cu``      <->  :func:`layernorm_forward_emulated`,
  :func:`layernorm_backward_emulated`
- ``kernels/gelu7_fused.cu``           <->  :func:`gelu_forward_emulated`,
  :func:`gelu_backward_emulated`
- ``kernels/cross_entropy8_fused.cu``  <->  :func:`cross_entropy_forward_emulated`,
  :func:`cross_entropy_backward_emulated`
- ``kernels/adamw9_fused.cu``          <->  :func:`adamw_update_emulated`

Each is the kernel's arithmetic in the kernel's order, laid out the way the threads share the
work, with the work of threads that run in parallel written as array maths. Two layouts:

*A row per warp* (LayerNorm, cross-entropy). Lane ``l`` of the warp that owns a row of
length ``C`` visits elements ``l, l + 32, l + 64, ...`` and keeps a partial sum (or max);
:func:`lane_partials` lays a row out as ``(strides, 32)`` and accumulates down the strides in
that order. The 32 partials are then combined by a butterfly, ``__shfl_xor_sync`` with
offsets 16, 8, 4, 2, 1 (:func:`warp_reduce`): after it every lane holds the row's total.

*A grid-stride loop* (GELU, AdamW). Thread ``i`` of a grid of ``blocks x threads`` handles
elements ``i, i + blocks * threads, ...``: :func:`grid_stride_passes` yields the element
indices of each pass.

In float64 each function matches its layer in :mod:`minireason.nn.layers` /
:mod:`minireason.nn.optim` to about 1e-12 (``tests/test_fused_emulation.py``); in float32 the
CUDA kernels run on CPU threads match it to float32 rounding (``tests/test_kernels_compile.py``).
"""

from __future__ import annotations

import math

import numpy as np

WARP = 32
LN_ROWS_PER_BLOCK = 4  # layernorm6_fused.cu: warps (= rows) per block of forward and dx
LN_DWDB_WARPS = 8  # layernorm_backward_dwdb: warps per block, each a stride of rows
LN_DWDB_ROWS = 256  # layernorm_backward_dwdb: rows per block (one partial sum each)
GELU_THREADS = 256  # gelu7_fused.cu
GELU_MAX_BLOCKS = 4096
CE_ROWS_PER_BLOCK = 4  # cross_entropy8_fused.cu
ADAMW_THREADS = 256  # adamw9_fused.cu
ADAMW_MAX_BLOCKS = 4096

GELU_S = math.sqrt(2.0 / math.pi)  # the constants of nn.layers' GELU, grouped as it groups them
GELU_SC = GELU_S * 0.044715
GELU_HALF_S = 0.5 * GELU_S
GELU_SC_3_HALVES = 1.5 * GELU_S * 0.044715

_LANES = np.arange(WARP)


# --------------------------------------------------------------------------- the two layouts


def lane_partials(rows, fill, combine):
    """Each lane's partial over its elements of each row, in the kernel's loop order.

    Args:
        rows: ``(N, C)``; lane ``l`` visits ``rows[:, l], rows[:, l + 32], ...``.
        fill: the identity of ``combine`` (0 for a sum, ``-inf`` for a max): a lane whose
            stride runs past ``C`` adds nothing.
        combine: a binary ufunc (``np.add``, ``np.maximum``).

    Returns:
        ``(N, 32)``: lane ``l``'s partial, accumulated stride by stride from ``fill``.
    """
    n, c = rows.shape
    strides = -(-c // WARP)
    laid = np.full((n, strides * WARP), fill, dtype=rows.dtype)
    laid[:, :c] = rows
    laid = laid.reshape(n, strides, WARP)  # [:, s, l] is element s * 32 + l
    partial = np.full((n, WARP), fill, dtype=rows.dtype)
    for s in range(strides):
        partial = combine(partial, laid[:, s])
    return partial


def warp_reduce(partial, combine):
    """``warp_sum`` / ``warp_max`` of the kernels: the xor butterfly over the 32 lanes.

    Args:
        partial: ``(N, 32)`` one value per lane.
        combine: ``np.add`` or ``np.maximum``.

    Returns:
        ``(N,)``: the total every lane holds at the end (lane 0's).
    """
    for offset in (16, 8, 4, 2, 1):
        partial = combine(partial, partial[:, _LANES ^ offset])
    return partial[:, 0]


def warp_rows(n_rows: int, rows_per_block: int):
    """``(block, rows)`` for each block of a row-per-warp launch: warp ``w`` of block ``b``
    owns row ``b * rows_per_block + w``; warps past ``n_rows`` leave at once."""
    for block in range(-(-n_rows // rows_per_block)):
        start = block * rows_per_block
        yield block, np.arange(start, min(n_rows, start + rows_per_block))


def grid_stride_blocks(n: int, threads: int, max_blocks: int) -> int:
    """The grid of a grid-stride launch over ``n`` elements: ``min(ceil(n / threads), max)``."""
    return max(1, min(-(-n // threads), max_blocks))


def grid_stride_passes(n: int, threads: int, max_blocks: int):
    """Element indices of each pass of a grid-stride loop: pass ``k`` gives thread ``i``
    (``i = block * threads + threadIdx``) element ``k * blocks * threads + i``, if ``< n``."""
    span = grid_stride_blocks(n, threads, max_blocks) * threads
    for start in range(0, n, span):
        yield np.arange(start, min(n, start + span))


# --------------------------------------------------------------------------- layernorm (kernel 6)


def layernorm_forward_emulated(x, w, b, eps=1e-5):
    """``layernorm_forward``: a warp per row; ``(N, C) -> out (N, C), mean (N,), rstd (N,)``.

    ``out = (x - mean) * rstd * w + b`` with ``rstd = 1 / sqrt(var + eps)``, as
    :func:`minireason.nn.layers.layernorm_forward`; keeps ``mean`` and ``rstd`` for the
    backward instead of ``xhat``.
    """
    n, c = x.shape
    out = np.empty_like(x)
    mean = np.empty(n, dtype=x.dtype)
    rstd = np.empty(n, dtype=x.dtype)
    for _, rows in warp_rows(n, LN_ROWS_PER_BLOCK):
        xr = x[rows]
        mu = warp_reduce(lane_partials(xr, 0, np.add), np.add) / c
        d = xr - mu[:, None]
        var = warp_reduce(lane_partials(d * d, 0, np.add), np.add) / c
        r = 1.0 / np.sqrt(var + x.dtype.type(eps))
        out[rows] = d * r[:, None] * w + b
        mean[rows], rstd[rows] = mu, r
    return out, mean, rstd


def layernorm_backward_emulated(dout, x, w, mean, rstd):
    """``layernorm_backward_dx`` and ``layernorm_backward_dwdb``: ``dx (N, C)``, ``dw (C,)``,
    ``db (C,)`` from ``dout (N, C)`` and the forward's ``x``, ``mean``, ``rstd``.

    ``dx`` is a warp per row (``g = dout * w``, ``dx = (g - mean(g) - xhat * mean(g xhat)) *
    rstd``). ``dw``, ``db`` are sums over rows: a block per (32 columns, ``LN_DWDB_ROWS``
    rows), warp ``w`` taking rows ``w, w + 8, ...`` of the block's, the 8 warps' sums added
    in warp order into one partial per block row, and the partials added last.
    """
    n, c = x.shape
    dx = np.empty_like(x)
    for _, rows in warp_rows(n, LN_ROWS_PER_BLOCK):
        r = rstd[rows][:, None]
        xhat = (x[rows] - mean[rows][:, None]) * r
        g = dout[rows] * w
        g_mean = warp_reduce(lane_partials(g, 0, np.add), np.add) / c
        gx_mean = warp_reduce(lane_partials(g * xhat, 0, np.add), np.add) / c
        dx[rows] = (g - g_mean[:, None] - xhat * gx_mean[:, None]) * r

    n_chunks = -(-n // LN_DWDB_ROWS)
    dw_partial = np.empty((n_chunks, c), dtype=x.dtype)
    db_partial = np.empty((n_chunks, c), dtype=x.dtype)
    xhat_all = (x - mean[:, None]) * rstd[:, None]
    for chunk in range(n_chunks):  # blockIdx.y; every column block (blockIdx.x) at once
        r0, r_end = chunk * LN_DWDB_ROWS, min(n, (chunk + 1) * LN_DWDB_ROWS)
        warp_dw = np.zeros((LN_DWDB_WARPS, c), dtype=x.dtype)
        warp_db = np.zeros((LN_DWDB_WARPS, c), dtype=x.dtype)
        for warp in range(LN_DWDB_WARPS):
            for row in range(r0 + warp, r_end, LN_DWDB_WARPS):
                warp_dw[warp] += dout[row] * xhat_all[row]
                warp_db[warp] += dout[row]
        dw_partial[chunk], db_partial[chunk] = warp_dw[0], warp_db[0]
        for warp in range(1, LN_DWDB_WARPS):  # warp 0 adds the shared-memory sums in order
            dw_partial[chunk] += warp_dw[warp]
            db_partial[chunk] += warp_db[warp]
    return dx, dw_partial.sum(axis=0), db_partial.sum(axis=0)


# --------------------------------------------------------------------------- gelu (kernel 7)


def _gelu_tanh(x):
    """``tanh(((x x) sc + s) x)``: the kernel's ``gelu_tanh``, NumPy's grouping."""
    t = x.dtype.type
    return np.tanh((x * x * t(GELU_SC) + t(GELU_S)) * x)


def gelu_forward_emulated(x):
    """``gelu_forward``: ``out = (t + 1) x / 2``, a grid-stride loop; any shape, same out."""
    flat, out = x.reshape(-1), np.empty(x.size, dtype=x.dtype)
    for i in grid_stride_passes(flat.size, GELU_THREADS, GELU_MAX_BLOCKS):
        xi = flat[i]
        out[i] = (_gelu_tanh(xi) + 1.0) * xi * 0.5
    return out.reshape(x.shape)


def gelu_backward_emulated(dout, x):
    """``gelu_backward``: ``dx`` (shape of ``x``) from the forward's input, recomputing ``t``."""
    t = x.dtype.type
    flat_x, flat_d = x.reshape(-1), dout.reshape(-1)
    dx = np.empty(x.size, dtype=x.dtype)
    for i in grid_stride_passes(flat_x.size, GELU_THREADS, GELU_MAX_BLOCKS):
        xi = flat_x[i]
        tanh = _gelu_tanh(xi)
        inner = (xi * xi * t(GELU_SC_3_HALVES) + t(GELU_HALF_S)) * xi
        dx[i] = ((tanh + 1.0) * 0.5 - inner * (tanh * tanh - 1.0)) * flat_d[i]
    return dx.reshape(x.shape)


# --------------------------------------------------------------------------- cross-entropy (kernel 8)


def cross_entropy_forward_emulated(logits, targets):
    """``cross_entropy_forward``: a warp per row; ``(N, V), (N,) -> lse (N,), nll (N,)``.

    ``lse = rowmax + log z`` with ``z = sum exp(logits - rowmax)``, and each token's
    ``nll = log z - (logits[target] - rowmax)``, as :func:`minireason.nn.layers.cross_entropy_forward`.
    The loss is ``sum(nll * weights)``.
    """
    n = logits.shape[0]
    lse = np.empty(n, dtype=logits.dtype)
    nll = np.empty(n, dtype=logits.dtype)
    for _, rows in warp_rows(n, CE_ROWS_PER_BLOCK):
        lr = logits[rows]
        row_max = warp_reduce(lane_partials(lr, -np.inf, np.maximum), np.maximum)
        e = np.exp(lr - row_max[:, None])
        log_z = np.log(warp_reduce(lane_partials(e, 0, np.add), np.add))
        lse[rows] = row_max + log_z
        nll[rows] = log_z - (lr[np.arange(len(rows)), targets[rows]] - row_max)
    return lse, nll


def cross_entropy_backward_emulated(logits, targets, weights, lse):
    """``cross_entropy_backward``: a warp per row; ``dlogits (N, V) = (softmax - onehot) *
    weight`` from the logits, the token weights ``(N,)`` and the forward's ``lse``."""
    n = logits.shape[0]
    dlogits = np.empty_like(logits)
    for _, rows in warp_rows(n, CE_ROWS_PER_BLOCK):
        w = weights[rows][:, None]
        d = np.exp(logits[rows] - lse[rows][:, None]) * w
        d[np.arange(len(rows)), targets[rows]] -= w[:, 0]
        dlogits[rows] = d
    return dlogits


# --------------------------------------------------------------------------- adamw (kernel 9)


def adamw_update_emulated(p, g, m, v, *, b1, b2, decay, v_correction, eps, step_size):
    """``adamw_update``: one grid-stride pass over a parameter, in place; arguments as
    :func:`minireason.nn.optim.adamw_update` (``p``, ``g``, ``m``, ``v`` flat or any shape,
    contiguous)."""
    t = p.dtype.type
    fp, fg, fm, fv = (a.reshape(-1) for a in (p, g, m, v))
    for i in grid_stride_passes(fp.size, ADAMW_THREADS, ADAMW_MAX_BLOCKS):
        gi = fg[i]
        mi = fm[i] * t(b1) + t(1.0 - b1) * gi
        vi = fv[i] * t(b2) + t(1.0 - b2) * (gi * gi)
        pi = fp[i]
        if decay != 1.0:
            pi = pi * t(decay)
        pi = pi - mi / (np.sqrt(vi) * t(v_correction) + t(eps)) * t(step_size)
        fm[i], fv[i], fp[i] = mi, vi, pi
