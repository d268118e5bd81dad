"""The NumPy emulation of flash kernels 3, 4 and 5 against the reference attention, in float64."""

from __future__ import annotations

import numpy as np
import pytest

from minireason.gpu import flash_emulation as fe
from minireason.nn.attention import attention_backward, attention_forward

# (batch dims, Tq, Tk, head_dim): ragged lengths (not multiples of the 32-wide tile),
# Tq != Tk both ways, lengths below one tile, and head_dim up to 128.
SHAPES = [
    ((2, 3), 37, 37, 16),
    ((1,), 1, 1, 8),
    ((2,), 5, 70, 24),
    ((2,), 70, 5, 24),
    ((1, 2), 64, 64, 64),
    ((1,), 33, 95, 128),
    ((), 100, 31, 7),
]


def _inputs(lead, tq, tk, d, seed):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((*lead, tq, d))
    k = rng.standard_normal((*lead, tk, d))
    v = rng.standard_normal((*lead, tk, d))
    return q, k, v


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference(shape, is_causal):
    lead, tq, tk, d = shape
    q, k, v = _inputs(lead, tq, tk, d, seed=tq * 1000 + tk)
    out, lse = fe.flash_forward_emulated(q, k, v, is_causal=is_causal)
    ref, cache = attention_forward(q, k, v, is_causal=is_causal)
    assert out.shape == ref.shape and lse.shape == (*lead, tq)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-10)
    # lse is the log of each row's softmax denominator: exp(S - lse) must equal the weights.
    scores = (q @ np.swapaxes(k, -1, -2)) / np.sqrt(d)
    p = np.exp(scores - lse[..., None]) * (cache.weights > 0)
    np.testing.assert_allclose(p, cache.weights, rtol=0, atol=1e-10)


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES + [((2,), 130, 130, 64), ((1,), 65, 200, 32)])
def test_kernel5_schedule_matches_reference(shape, is_causal):
    """Kernel 5's 64-row query tiles and double-buffered key tiles compute the same thing."""
    lead, tq, tk, d = shape
    q, k, v = _inputs(lead, tq, tk, d, seed=tq * 13 + tk)
    out, lse = fe.flash_forward5_emulated(q, k, v, is_causal=is_causal)
    ref, _ = attention_forward(q, k, v, is_causal=is_causal)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-10)
    _, ref_lse = fe.flash_forward_emulated(q, k, v, is_causal=is_causal)
    np.testing.assert_allclose(lse, ref_lse, rtol=0, atol=1e-10)


def test_kernel5_causal_tile_reads_keys_up_to_its_64th_row():
    """A 64-row causal query tile reads key tiles 0 and 1 and never tile 2."""
    q, k, v = _inputs((1,), 128, 128, 16, seed=6)
    out, _ = fe.flash_forward5_emulated(q, k, v, is_causal=True)
    k2, v2 = k.copy(), v.copy()
    k2[:, 64:] = np.nan
    v2[:, 64:] = np.nan
    out2, _ = fe.flash_forward5_emulated(q, k2, v2, is_causal=True)
    np.testing.assert_array_equal(out2[:, :64], out[:, :64])


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_reference(shape, is_causal):
    lead, tq, tk, d = shape
    q, k, v = _inputs(lead, tq, tk, d, seed=tq * 7 + tk)
    dout = np.random.default_rng(1).standard_normal((*lead, tq, d))
    out, lse = fe.flash_forward_emulated(q, k, v, is_causal=is_causal)
    dq, dk, dv = fe.flash_backward_emulated(dout, q, k, v, out, lse, is_causal=is_causal)
    _, cache = attention_forward(q, k, v, is_causal=is_causal)
    rq, rk, rv, _ = attention_backward(dout, cache)
    for got, ref in ((dq, rq), (dk, rk), (dv, rv)):
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)


def test_custom_scale_and_float32():
    q, k, v = _inputs((2,), 40, 45, 32, seed=3)
    out, _ = fe.flash_forward_emulated(q, k, v, scale=0.3)
    ref, _ = attention_forward(q, k, v, scale=0.3)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-10)
    q32, k32, v32 = (a.astype(np.float32) for a in (q, k, v))
    out32, lse32 = fe.flash_forward_emulated(q32, k32, v32, is_causal=True)
    assert out32.dtype == np.float32 and lse32.dtype == np.float32
    ref32, _ = attention_forward(q, k, v, is_causal=True)
    np.testing.assert_allclose(out32, ref32, rtol=1e-4, atol=1e-5)


def test_causal_skips_tiles_right_of_the_diagonal():
    """Keys after a causal query tile never touch its output: changing them changes nothing."""
    q, k, v = _inputs((1,), 64, 64, 16, seed=4)
    out, _ = fe.flash_forward_emulated(q, k, v, is_causal=True)
    k2, v2 = k.copy(), v.copy()
    k2[:, 32:] = np.nan  # the second key tile is invisible to the first query tile
    v2[:, 32:] = np.nan
    out2, _ = fe.flash_forward_emulated(q, k2, v2, is_causal=True)
    np.testing.assert_array_equal(out2[:, :32], out[:, :32])


@pytest.mark.parametrize(
    "shapes, match",
    [
        (((2, 8, 16), (2, 8, 16), (2, 8, 8)), "one head_dim"),
        (((2, 8, 130), (2, 8, 130), (2, 8, 130)), "head_dim 1..128"),
        (((2, 8, 16), (3, 8, 16), (3, 8, 16)), "leading"),
        (((2, 8, 16), (2, 9, 16), (2, 8, 16)), "sequence lengths"),
        (((2, 8, 16), (2, 0, 16), (2, 0, 16)), "no positions"),
    ],
)
def test_bad_shapes_are_named(shapes, match):
    q, k, v = (np.zeros(s) for s in shapes)
    with pytest.raises(ValueError, match=match):
        fe.flash_forward_emulated(q, k, v)
