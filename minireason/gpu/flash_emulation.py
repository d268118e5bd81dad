"""Flash attention, forward and backward, emulated tile by tile in NumPy.

This module is the readable twin of three CUDA kernels:

- ``kernels/attention_forward3_flash.cu``   <->  :func:`flash_forward_emulated`
- ``kernels/attention_backward4_flash.cu``  <->  :func:`flash_backward_emulated`
- ``kernels/attention_forward5_flash_double_buffered.cu``  <->  :func:`flash_forward5_emulated`

It uses the same tile sizes, visits the tiles in the same order, does the same
online-softmax rescaling and saves the same log-sum-exp as the kernels; only the work
that one CUDA thread block does in parallel is written here as NumPy array maths over a
tile (and over the batch and head dims, which are independent blocks on the GPU). Run in
float64 it matches :func:`minireason.nn.attention.attention_forward` /
:func:`~minireason.nn.attention.attention_backward` to about 1e-12, which is how the CI checks
the algorithm without a GPU. The kernels then only have to match this file.

The algorithm (Dao et al., FlashAttention, 2022; FlashAttention-2, 2023). For one query
tile ``Q_t`` (``BLOCK_M`` rows) the forward keeps, per row, the running maximum ``m``, the
running softmax denominator ``l`` and an unnormalised output ``acc``; for each key tile
``K_s, V_s`` (``BLOCK_N`` keys)::

    S      = scale * Q_t K_s^T                  masked entries -> -inf
    m_new  = max(m, rowmax(S))
    alpha  = exp(m - m_new)                     rescales what was summed so far
    P      = exp(S - m_new)
    l      = alpha * l + rowsum(P)
    acc    = alpha * acc + P V_s

and at the end ``out = acc / l`` and ``lse = m + log(l)``. The ``(Tq, Tk)`` score matrix
never exists in full. The backward recomputes ``P = exp(S - lse)`` tile by tile from the
saved ``lse`` instead of storing it, in three steps, each a kernel:

1. ``delta_i = sum_d dout[i, d] * out[i, d]``       (= rowsum(dP * P), the softmax term)
2. per key tile, over every query tile:  ``dV += P^T dout``, ``dK += dS^T Q``; then ``dK *= scale``
3. per query tile, over every key tile:  ``dQ += dS K``; then ``dQ *= scale``

with ``dP = dout V^T`` and ``dS = P * (dP - delta)``. Steps 2 and 3 each write every
element of their output exactly once (no atomics), at the price of computing ``P`` twice.

Masking: ``is_causal`` (query ``i`` sees keys ``j <= i``, top-left, as in
:mod:`minireason.nn.attention`) and the ragged edge (keys ``j >= Tk`` and rows ``i >= Tq`` of the
last tile, which exist in the tile but not in the data). A causal kernel skips key tiles
that lie wholly to the right of the diagonal. A row with no key at all gets zeros, as in the
reference. Query and value head_dim must be equal and at most :data:`HEAD_DIM_MAX`.
"""

from __future__ import annotations

import math

import numpy as np

BLOCK_M = 32  # query rows per tile (one thread block's rows in the kernels)
BLOCK_N = 32  # keys per tile
HEAD_DIM_MAX = 128  # largest head_dim the kernels' shared-memory tiles hold
FLASH5_BLOCK_M = 64  # kernel 5's query tile: 4 warps of 16 rows (kernel 3: 4 of 8)


def check_flash_shapes(query, key, value) -> None:
    """Raise ValueError naming the shapes when the flash kernels cannot take these inputs.

    Args:
        query ``(..., Tq, D)``, key ``(..., Tk, D)``, value ``(..., Tk, D)``, ``D <= 128``.
    """
    for name, a in (("query", query), ("key", key), ("value", value)):
        if a.ndim < 2:
            raise ValueError(f"{name} must have shape (..., seq, head_dim), got {a.shape}")
    if query.shape[:-2] != key.shape[:-2] or key.shape[:-2] != value.shape[:-2]:
        raise ValueError(
            "query, key and value must have the same leading (..., heads) dims, got "
            f"query {query.shape}, key {key.shape}, value {value.shape}"
        )
    if not (query.shape[-1] == key.shape[-1] == value.shape[-1]):
        raise ValueError(
            "flash attention needs one head_dim for query, key and value, got "
            f"query {query.shape}, key {key.shape}, value {value.shape}"
        )
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"key and value sequence lengths differ: key {key.shape}, value {value.shape}"
        )
    if not 1 <= query.shape[-1] <= HEAD_DIM_MAX:
        raise ValueError(
            f"flash attention supports head_dim 1..{HEAD_DIM_MAX}, got {query.shape[-1]}"
        )
    if key.shape[-2] < 1:
        raise ValueError(f"key has no positions (shape {key.shape})")


def _tile_mask(
    m0: int, n0: int, tq: int, tk: int, is_causal: bool, block_m: int = BLOCK_M
) -> np.ndarray:
    """Boolean ``(block_m, BLOCK_N)``: True where row ``m0+r`` may attend key ``n0+c``.

    False for rows past ``tq`` and keys past ``tk`` (the ragged edge) and, when causal,
    for keys after the row.
    """
    rows = m0 + np.arange(block_m)[:, None]
    cols = n0 + np.arange(BLOCK_N)[None, :]
    ok = (rows < tq) & (cols < tk)
    if is_causal:
        ok &= cols <= rows
    return ok


def _load_tile(x, start: int, block: int):
    """Rows ``start .. start+block`` of ``x`` ``(B, T, D)``, zero-padded past ``T``: ``(B, block, D)``."""
    tile = np.zeros((x.shape[0], block, x.shape[2]), dtype=x.dtype)
    part = x[:, start : start + block]
    tile[:, : part.shape[1]] = part
    return tile


def _key_tile_end(m0: int, tk: int, is_causal: bool, block_m: int = BLOCK_M) -> int:
    """One past the last key a query tile starting at ``m0`` can see (causal tiles stop early)."""
    return min(tk, m0 + block_m) if is_causal else tk


def _query_tile_start(n0: int, is_causal: bool) -> int:
    """First query tile that can see the key tile starting at ``n0`` (causal: from the diagonal)."""
    return (n0 // BLOCK_M) * BLOCK_M if is_causal else 0


def _flatten(x):
    """``(..., T, D) -> (B, T, D)`` as float array, with ``B`` the product of the leading dims."""
    return np.ascontiguousarray(x).reshape(-1, *x.shape[-2:])


class _OnlineSoftmax:
    """One query tile's running state: per row the maximum ``m``, the denominator ``l`` and
    the unnormalised output ``acc``, over ``B`` independent blocks (batch x heads)."""

    def __init__(self, q_tile, scale: float):
        b, rows, d = q_tile.shape
        self.q_tile, self.scale = q_tile, scale
        self.m = np.full((b, rows), -np.inf, dtype=q_tile.dtype)
        self.l = np.zeros((b, rows), dtype=q_tile.dtype)
        self.acc = np.zeros((b, rows, d), dtype=q_tile.dtype)

    def update(self, k_tile, v_tile, ok) -> None:
        """Fold in one key tile ``(B, BN, D)`` with its mask ``ok`` ``(rows, BN)``."""
        s = self.scale * (self.q_tile @ k_tile.swapaxes(1, 2))  # (B, rows, BN)
        s = np.where(ok, s, -np.inf)
        m_new = np.maximum(self.m, s.max(axis=2))
        m_safe = np.where(np.isinf(m_new), 0.0, m_new)  # no key yet: avoid -inf - -inf
        alpha = np.exp(self.m - m_safe)
        p = np.exp(s - m_safe[:, :, None])
        self.l = alpha * self.l + p.sum(axis=2)
        self.acc = alpha[:, :, None] * self.acc + p @ v_tile
        self.m = m_new

    def finish(self, out, lse, m0: int) -> None:
        """``out = acc / l`` and ``lse = m + log(l)`` into rows ``m0 ..`` (zeros / -inf
        for a row with no key), the tile's rows past the end left out."""
        rows = min(self.m.shape[1], out.shape[1] - m0)
        l_safe = np.where(self.l > 0, self.l, 1.0)
        out[:, m0 : m0 + rows] = (self.acc / l_safe[:, :, None])[:, :rows]
        with np.errstate(divide="ignore"):
            row_lse = np.where(self.l > 0, self.m + np.log(l_safe), -np.inf)
        lse[:, m0 : m0 + rows] = row_lse[:, :rows]


def _forward_setup(query, key, value, scale):
    check_flash_shapes(query, key, value)
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    q, k, v = _flatten(query), _flatten(key), _flatten(value)
    return q, k, v, scale, np.empty_like(q), np.empty(q.shape[:2], dtype=q.dtype)


def flash_forward_emulated(query, key, value, is_causal=False, scale=None):
    """Kernel 3 in NumPy: tiled attention with online softmax; mirrors ``flash_forward``.

    Args:
        query: ``(..., Tq, D)``.
        key: ``(..., Tk, D)``.
        value: ``(..., Tk, D)``.
        is_causal: query ``i`` attends keys ``j <= i``.
        scale: multiplier of ``Q K^T``; None means ``1 / sqrt(D)``.

    Returns:
        ``out`` ``(..., Tq, D)`` and ``lse`` ``(..., Tq)``, the natural log of each row's
        softmax denominator of the scaled scores (``-inf`` for a row with no key).
    """
    q, k, v, scale, out, lse = _forward_setup(query, key, value, scale)
    tq, tk = q.shape[1], k.shape[1]
    for m0 in range(0, tq, BLOCK_M):  # one thread block per (batch*head, query tile)
        state = _OnlineSoftmax(_load_tile(q, m0, BLOCK_M), scale)  # Q tile (B, BM, D)
        for n0 in range(0, _key_tile_end(m0, tk, is_causal), BLOCK_N):
            k_tile = _load_tile(k, n0, BLOCK_N)  # (B, BN, D)
            v_tile = _load_tile(v, n0, BLOCK_N)
            state.update(k_tile, v_tile, _tile_mask(m0, n0, tq, tk, is_causal))
        state.finish(out, lse, m0)
    return out.reshape(query.shape), lse.reshape(query.shape[:-1])


def flash_forward5_emulated(query, key, value, is_causal=False, scale=None):
    """Kernel 5 in NumPy: kernel 3's algorithm on kernel 5's schedule.

    The same arguments and results as :func:`flash_forward_emulated`. Two things differ:
    a query tile is :data:`FLASH5_BLOCK_M` = 64 rows (a causal tile therefore reads up to
    its 64th row's keys), and the key/value tiles go through two buffers: tile ``t + 1`` is
    loaded into one while tile ``t``, in the other, is used (on the GPU the load is an
    asynchronous copy that overlaps the arithmetic; here it only shows the order).
    """
    q, k, v, scale, out, lse = _forward_setup(query, key, value, scale)
    tq, tk = q.shape[1], k.shape[1]
    for m0 in range(0, tq, FLASH5_BLOCK_M):  # one thread block per (batch*head, query tile)
        state = _OnlineSoftmax(_load_tile(q, m0, FLASH5_BLOCK_M), scale)
        starts = list(range(0, _key_tile_end(m0, tk, is_causal, FLASH5_BLOCK_M), BLOCK_N))
        buffers = [(_load_tile(k, 0, BLOCK_N), _load_tile(v, 0, BLOCK_N)), None]
        for t, n0 in enumerate(starts):
            if t + 1 < len(starts):  # issue tile t + 1 into the buffer tile t - 1 used
                nxt = starts[t + 1]
                buffers[(t + 1) % 2] = (_load_tile(k, nxt, BLOCK_N), _load_tile(v, nxt, BLOCK_N))
            k_tile, v_tile = buffers[t % 2]
            ok = _tile_mask(m0, n0, tq, tk, is_causal, FLASH5_BLOCK_M)
            state.update(k_tile, v_tile, ok)
        state.finish(out, lse, m0)
    return out.reshape(query.shape), lse.reshape(query.shape[:-1])


def flash_backward_delta(dout, out):
    """Backward step 1: ``delta_i = sum_d dout[i, d] * out[i, d]``, ``(..., Tq, D) -> (..., Tq)``.

    Mirrors the kernel ``flash_backward_delta``. It equals ``rowsum(dP * P)``, the term the
    softmax backward subtracts, without needing ``P``.
    """
    return (dout * out).sum(axis=-1)


def _recompute_tile(q_tile, k_tile, v_tile, do_tile, lse_tile, delta_tile, ok, scale):
    """``P`` and ``dS`` of one ``(BLOCK_M, BLOCK_N)`` tile, from the saved log-sum-exp.

    Args: tiles ``(B, BM, D)`` / ``(B, BN, D)``; ``lse_tile``, ``delta_tile`` ``(B, BM)``;
    ``ok`` the boolean tile mask ``(BM, BN)``. Returns ``P, dS``, each ``(B, BM, BN)``.
    """
    s = scale * (q_tile @ k_tile.swapaxes(1, 2))
    live = ok & np.isfinite(lse_tile)[:, :, None]  # masked or keyless rows: P = 0
    lse_safe = np.where(np.isfinite(lse_tile), lse_tile, 0.0)
    p = np.where(live, np.exp(np.where(live, s - lse_safe[:, :, None], 0.0)), 0.0)
    dp = do_tile @ v_tile.swapaxes(1, 2)
    ds = p * (dp - delta_tile[:, :, None])
    return p, ds


def flash_backward_emulated(dout, query, key, value, out, lse, is_causal=False, scale=None):
    """Kernel 4 in NumPy: the backward of :func:`flash_forward_emulated`.

    Args:
        dout: ``(..., Tq, D)``, the gradient of the loss with respect to ``out``.
        query ``(..., Tq, D)``, key ``(..., Tk, D)``, value ``(..., Tk, D)``: the forward inputs.
        out ``(..., Tq, D)`` and lse ``(..., Tq)``: what the forward returned.
        is_causal, scale: as in the forward.

    Returns:
        ``dq`` ``(..., Tq, D)``, ``dk`` ``(..., Tk, D)``, ``dv`` ``(..., Tk, D)``.
    """
    check_flash_shapes(query, key, value)
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    q, k, v = _flatten(query), _flatten(key), _flatten(value)
    do = _flatten(dout)
    lse2 = np.ascontiguousarray(lse).reshape(q.shape[:2])
    delta = flash_backward_delta(do, _flatten(out))  # step 1
    tq, tk = q.shape[1], k.shape[1]

    def row_tiles(m0):
        """Query-side tiles starting at row ``m0``, padded past Tq (lse padded with -inf)."""
        lse_t = np.full((q.shape[0], BLOCK_M), -np.inf, dtype=q.dtype)
        delta_t = np.zeros((q.shape[0], BLOCK_M), dtype=q.dtype)
        rows = min(BLOCK_M, tq - m0)
        lse_t[:, :rows] = lse2[:, m0 : m0 + rows]
        delta_t[:, :rows] = delta[:, m0 : m0 + rows]
        return _load_tile(q, m0, BLOCK_M), _load_tile(do, m0, BLOCK_M), lse_t, delta_t

    # Step 2: one block per key tile accumulates its dK, dV over the query tiles.
    dk = np.empty_like(k)
    dv = np.empty_like(v)
    for n0 in range(0, tk, BLOCK_N):
        k_tile, v_tile = _load_tile(k, n0, BLOCK_N), _load_tile(v, n0, BLOCK_N)
        dk_acc = np.zeros_like(k_tile)
        dv_acc = np.zeros_like(v_tile)
        for m0 in range(_query_tile_start(n0, is_causal), tq, BLOCK_M):
            q_tile, do_tile, lse_t, delta_t = row_tiles(m0)
            ok = _tile_mask(m0, n0, tq, tk, is_causal)
            p, ds = _recompute_tile(q_tile, k_tile, v_tile, do_tile, lse_t, delta_t, ok, scale)
            dv_acc += p.swapaxes(1, 2) @ do_tile
            dk_acc += ds.swapaxes(1, 2) @ q_tile
        cols = min(BLOCK_N, tk - n0)
        dk[:, n0 : n0 + cols] = scale * dk_acc[:, :cols]
        dv[:, n0 : n0 + cols] = dv_acc[:, :cols]

    # Step 3: one block per query tile accumulates its dQ over the key tiles.
    dq = np.empty_like(q)
    for m0 in range(0, tq, BLOCK_M):
        q_tile, do_tile, lse_t, delta_t = row_tiles(m0)
        dq_acc = np.zeros_like(q_tile)
        for n0 in range(0, _key_tile_end(m0, tk, is_causal), BLOCK_N):
            k_tile, v_tile = _load_tile(k, n0, BLOCK_N), _load_tile(v, n0, BLOCK_N)
            ok = _tile_mask(m0, n0, tq, tk, is_causal)
            _, ds = _recompute_tile(q_tile, k_tile, v_tile, do_tile, lse_t, delta_t, ok, scale)
            dq_acc += ds @ k_tile
        rows = min(BLOCK_M, tq - m0)
        dq[:, m0 : m0 + rows] = scale * dq_acc[:, :rows]
    return dq.reshape(query.shape), dk.reshape(key.shape), dv.reshape(value.shape)
