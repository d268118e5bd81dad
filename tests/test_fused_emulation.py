"""The NumPy emulation of the fused kernels 6-9 against the package's own layers.

In float64 the emulation (the kernels' thread decomposition: a row per warp with its lane
partials and xor butterfly, or a grid-stride loop) must give the layers' results to 1e-10;
in float32, to float32 rounding. Shapes are ragged on purpose: rows shorter than a warp and
not a multiple of 32, row counts that leave a block's last warps idle, more rows than one
``layernorm_backward_dwdb`` block sums.
"""

from __future__ import annotations

import numpy as np
import pytest

from minireason.gpu import fused_emulation as fe
from minireason.nn.layers import (
    cross_entropy_backward,
    cross_entropy_forward,
    gelu_backward,
    gelu_forward,
    layernorm_backward,
    layernorm_forward,
    token_weights,
)
from minireason.nn.optim import adamw_update

ATOL = 1e-10

# (N, C): a row shorter than a warp, ragged widths, several dwdb row blocks (256 rows each)
LN_SHAPES = [(1, 5), (7, 33), (37, 100), (600, 64), (3, 257)]


def _rng(seed):
    return np.random.default_rng(seed)


def test_warp_reduce_is_the_butterfly_total():
    rows = _rng(0).standard_normal((5, 77))
    partial = fe.lane_partials(rows, 0, np.add)
    assert partial.shape == (5, 32)
    np.testing.assert_allclose(partial.sum(axis=1), rows.sum(axis=1), atol=ATOL)
    np.testing.assert_allclose(fe.warp_reduce(partial, np.add), rows.sum(axis=1), atol=ATOL)
    np.testing.assert_array_equal(
        fe.warp_reduce(fe.lane_partials(rows, -np.inf, np.maximum), np.maximum), rows.max(axis=1)
    )
    # lane 3 of a 77-wide row visits elements 3, 35, 67, in that order
    np.testing.assert_array_equal(partial[:, 3], rows[:, 3] + rows[:, 35] + rows[:, 67])


def test_warp_rows_and_grid_stride_cover_every_index_once():
    owned = np.concatenate([rows for _, rows in fe.warp_rows(10, 4)])
    np.testing.assert_array_equal(owned, np.arange(10))
    assert [b for b, _ in fe.warp_rows(10, 4)] == [0, 1, 2]
    for n, threads, max_blocks in ((1, 256, 4096), (1000, 256, 3), (513, 32, 4096)):
        seen = np.concatenate(list(fe.grid_stride_passes(n, threads, max_blocks)))
        np.testing.assert_array_equal(seen, np.arange(n))
    assert fe.grid_stride_blocks(1000, 256, 3) == 3
    assert len(list(fe.grid_stride_passes(1000, 256, 3))) == 2  # 768 threads, two passes


@pytest.mark.parametrize("shape", LN_SHAPES)
def test_layernorm_matches_the_layer(shape):
    n, c = shape
    rng = _rng(n * 31 + c)
    x = rng.standard_normal(shape) * 3 + 1
    w, b = rng.standard_normal(c), rng.standard_normal(c)
    dout = rng.standard_normal(shape)
    ref, cache = layernorm_forward(x, w, b, eps=1e-5)
    out, mean, rstd = fe.layernorm_forward_emulated(x, w, b, eps=1e-5)
    np.testing.assert_allclose(out, ref, rtol=0, atol=ATOL)
    np.testing.assert_allclose(mean, x.mean(axis=1), rtol=0, atol=ATOL)
    np.testing.assert_allclose(rstd, cache.rstd[:, 0], rtol=0, atol=ATOL)
    ref_dx, ref_dw, ref_db = layernorm_backward(dout, cache)
    dx, dw, db = fe.layernorm_backward_emulated(dout, x, w, mean, rstd)
    for got, want in ((dx, ref_dx), (dw, ref_dw), (db, ref_db)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL * max(1, n / 10))


def test_layernorm_float32_and_constant_rows():
    x = _rng(1).standard_normal((40, 96)).astype(np.float32)
    x[3] = 2.5  # a constant row: var 0, rstd = 1 / sqrt(eps)
    w = np.ones(96, dtype=np.float32)
    b = np.zeros(96, dtype=np.float32)
    ref, _ = layernorm_forward(x, w, b)
    out, mean, rstd = fe.layernorm_forward_emulated(x, w, b)
    assert out.dtype == mean.dtype == rstd.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    assert np.isfinite(out).all() and np.all(out[3] == 0)


@pytest.mark.parametrize("shape", [(1,), (7, 33), (64, 1024), (3, 5, 11)])
def test_gelu_matches_the_layer(shape):
    rng = _rng(sum(shape))
    x = rng.standard_normal(shape) * 3
    dout = rng.standard_normal(shape)
    ref, cache = gelu_forward(x)
    out = fe.gelu_forward_emulated(x)
    np.testing.assert_allclose(out, ref, rtol=0, atol=ATOL)
    np.testing.assert_allclose(
        fe.gelu_backward_emulated(dout, x), gelu_backward(dout, cache), rtol=0, atol=ATOL
    )


def test_gelu_float32_over_several_grid_stride_passes():
    n = fe.GELU_THREADS * fe.GELU_MAX_BLOCKS + 1000  # every thread twice, some three times
    x = _rng(2).standard_normal(n).astype(np.float32) * 4
    dout = np.ones(n, dtype=np.float32)
    ref, cache = gelu_forward(x)
    out = fe.gelu_forward_emulated(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    dx = fe.gelu_backward_emulated(dout, x)
    np.testing.assert_allclose(dx, gelu_backward(dout, cache), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("shape", [(1, 3), (9, 50), (37, 257)])
def test_cross_entropy_matches_the_layer(shape, masked):
    n, v = shape
    rng = _rng(n + v)
    logits = rng.standard_normal(shape) * 5
    targets = rng.integers(0, v, n)
    mask = None
    if masked:
        mask = (rng.random(n) < 0.6).astype(np.int64)
        mask[0] = 1  # at least one token counts
    ref_loss, cache = cross_entropy_forward(logits, targets, mask)
    lse, nll = fe.cross_entropy_forward_emulated(logits, targets)
    weights = token_weights(np, mask, n, logits.dtype)
    np.testing.assert_allclose(nll, cache.nll, rtol=0, atol=ATOL)
    np.testing.assert_allclose(weights, cache.weights, rtol=0, atol=0)
    np.testing.assert_allclose((nll * weights).sum(), ref_loss, rtol=0, atol=ATOL)
    np.testing.assert_allclose(lse, np.log(np.exp(logits).sum(axis=1)), rtol=0, atol=ATOL)
    dlogits = fe.cross_entropy_backward_emulated(logits, targets, weights, lse)
    ref_d = cross_entropy_backward(cache)
    np.testing.assert_allclose(dlogits, ref_d, rtol=0, atol=ATOL)
    if masked:  # a token the mask leaves out has no gradient at all
        assert np.all(dlogits[mask == 0] == 0)


def test_cross_entropy_float32_large_logits():
    logits = (_rng(3).standard_normal((20, 4096)) * 30).astype(np.float32)
    targets = _rng(4).integers(0, 4096, 20)
    ref_loss, cache = cross_entropy_forward(logits, targets)
    lse, nll = fe.cross_entropy_forward_emulated(logits, targets)
    assert lse.dtype == nll.dtype == np.float32 and np.isfinite(lse).all()
    np.testing.assert_allclose(nll, cache.nll, rtol=1e-5, atol=1e-4)
    d = fe.cross_entropy_backward_emulated(logits, targets, cache.weights, lse)
    np.testing.assert_allclose(d, cross_entropy_backward(cache), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("decay", [1.0, 1.0 - 3e-3 * 0.1])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adamw_matches_the_optimizer_over_steps(decay, dtype):
    rng = _rng(5)
    shape = (33, 70)
    p_ref = rng.standard_normal(shape).astype(dtype)
    p_emu = p_ref.copy()
    m_ref, v_ref = np.zeros(shape, dtype), np.zeros(shape, dtype)
    m_emu, v_emu = m_ref.copy(), v_ref.copy()
    b1, b2, lr, eps = 0.9, 0.95, 3e-3, 1e-8
    for t in range(1, 4):
        g = rng.standard_normal(shape).astype(dtype)
        kw = dict(
            b1=b1,
            b2=b2,
            decay=decay,
            v_correction=1.0 / np.sqrt(1.0 - b2**t),
            eps=eps,
            step_size=lr / (1.0 - b1**t),
        )
        adamw_update(p_ref, g, m_ref, v_ref, **kw)
        fe.adamw_update_emulated(p_emu, g, m_emu, v_emu, **kw)
    tol = ATOL if dtype == np.float64 else 1e-6
    for got, want in ((p_emu, p_ref), (m_emu, m_ref), (v_emu, v_ref)):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
