"""minireason.nn.attention against an independent loop-over-rows reference, gradient checks, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minireason.nn.attention import (
    attention_backward,
    attention_forward,
    causal_mask,
    masked_softmax,
    merge_heads,
    scaled_dot_product_attention,
    split_heads,
)
from minireason.nn.gradcheck import check_gradients

# --------------------------------------------------------------------------- brute-force reference


def reference_attention(q, k, v, mask=None, is_causal=False, scale=None):
    """One query row at a time, with Python loops and math.exp: no shared code with the module.

    mask: None, a boolean or float array broadcastable to (..., Tq, Tk).
    Fully masked rows give zeros.
    """
    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    v = np.asarray(v, np.float64)
    *lead, Tq, E = q.shape
    Tk = k.shape[-2]
    scale = 1.0 / math.sqrt(E) if scale is None else scale
    full_mask = None if mask is None else np.broadcast_to(mask, (*lead, Tq, Tk))
    out = np.zeros((*lead, Tq, v.shape[-1]))
    for idx in np.ndindex(*lead):
        for i in range(Tq):
            scores = []
            for j in range(Tk):
                s = sum(q[idx][i, d] * k[idx][j, d] for d in range(E)) * scale
                if is_causal and j > i:
                    s = None
                elif full_mask is not None:
                    m = full_mask[idx][i, j]
                    if full_mask.dtype == bool:
                        s = s if m else None
                    else:
                        s = s + float(m)
                        s = None if s == -math.inf else s
                scores.append(s)
            live = [s for s in scores if s is not None]
            if not live:
                continue
            top = max(live)
            ex = [0.0 if s is None else math.exp(s - top) for s in scores]
            z = sum(ex)
            for j in range(Tk):
                out[idx][i] += (ex[j] / z) * v[idx][j]
    return out


def random_case(rng, lead, Tq, Tk, E, Ev, dtype):
    q = rng.normal(size=(*lead, Tq, E)).astype(dtype)
    k = rng.normal(size=(*lead, Tk, E)).astype(dtype)
    v = rng.normal(size=(*lead, Tk, Ev)).astype(dtype)
    return q, k, v


SHAPES = [
    ((), 1, 1, 1, 1),
    ((3,), 4, 4, 8, 8),
    ((2, 3), 5, 7, 4, 6),  # batch, heads, Tq != Tk, Ev != E
    ((2, 2), 7, 3, 5, 5),  # Tq > Tk
    ((1, 4), 6, 6, 16, 16),
]


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mask_kind", ["none", "bool", "float", "causal", "bool-broadcast"])
def test_forward_matches_loop_reference(shape, mask_kind, dtype, tol):
    rng = np.random.default_rng(hash((shape, mask_kind)) % 2**32)
    lead, Tq, Tk, E, Ev = shape
    q, k, v = random_case(rng, lead, Tq, Tk, E, Ev, dtype)
    mask, causal = None, False
    if mask_kind == "bool":
        mask = rng.random((*lead, Tq, Tk)) < 0.7
    elif mask_kind == "float":
        mask = rng.normal(size=(Tq, Tk)).astype(dtype)
        mask[rng.random((Tq, Tk)) < 0.2] = -np.inf
    elif mask_kind == "causal":
        causal = True
    elif mask_kind == "bool-broadcast":
        mask = rng.random((1, Tk)) < 0.6  # broadcast over batch, heads and query rows
    got = scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    want = reference_attention(q, k, v, mask, causal)
    assert got.dtype == dtype
    assert got.shape == (*lead, Tq, Ev)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_custom_scale_matches_reference():
    rng = np.random.default_rng(1)
    q, k, v = random_case(rng, (2,), 3, 4, 5, 5, np.float64)
    got = scaled_dot_product_attention(q, k, v, scale=0.37)
    np.testing.assert_allclose(
        got, reference_attention(q, k, v, scale=0.37), rtol=1e-12, atol=1e-12
    )


def test_fully_masked_rows_are_zero_not_nan():
    rng = np.random.default_rng(2)
    q, k, v = random_case(rng, (2,), 4, 5, 3, 3, np.float64)
    mask = np.ones((4, 5), dtype=bool)
    mask[1] = False
    out, cache = attention_forward(q, k, v, attn_mask=mask)
    assert np.isfinite(out).all()
    assert np.all(out[:, 1] == 0)
    assert np.all(cache.weights[:, 1] == 0)
    np.testing.assert_allclose(cache.weights[:, [0, 2, 3]].sum(-1), 1.0)
    # the same through a float mask of -inf
    fmask = np.where(mask, 0.0, -np.inf)
    out2 = scaled_dot_product_attention(q, k, v, attn_mask=fmask)
    np.testing.assert_array_equal(out2, out)
    # and the backward gives zero, finite gradients for that row
    dq, dk, dv, _ = attention_backward(np.ones_like(out), cache)
    assert np.isfinite(dq).all() and np.isfinite(dk).all() and np.isfinite(dv).all()
    assert np.all(dq[:, 1] == 0)


def test_masked_softmax_extreme_scores_stay_finite():
    s = np.array([[1e4, -1e4, 0.0], [-np.inf, -np.inf, -np.inf], [700.0, 710.0, -np.inf]])
    w = masked_softmax(s)
    assert np.isfinite(w).all()
    np.testing.assert_allclose(w.sum(-1), [1, 0, 1])
    np.testing.assert_allclose(w[2], [1 / (1 + math.exp(10)), 1 / (1 + math.exp(-10)), 0])


def test_causal_is_top_left_triangle_like_torch_tril():
    np.testing.assert_array_equal(causal_mask(2, 4), np.array([[1, 0, 0, 0], [1, 1, 0, 0]], bool))
    np.testing.assert_array_equal(causal_mask(3, 2), np.array([[1, 0], [1, 1], [1, 1]], bool))


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 3),
    st.integers(1, 4),
    st.integers(1, 6),
    st.integers(1, 6),
    st.integers(1, 8),
    st.integers(0, 2**31),
)
def test_forward_property_random_shapes(B, H, Tq, Tk, D, seed):
    rng = np.random.default_rng(seed)
    q, k, v = random_case(rng, (B, H), Tq, Tk, D, D, np.float64)
    mask = rng.random((B, 1, Tq, Tk)) < 0.5
    got = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    np.testing.assert_allclose(got, reference_attention(q, k, v, mask), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- backward


@pytest.mark.parametrize(
    "lead,Tq,Tk,mask_kind",
    [
        ((2, 3), 4, 4, "none"),
        ((2, 3), 3, 5, "bool"),
        ((2, 2), 5, 5, "causal"),
        ((1, 3), 4, 6, "float"),
        ((2, 2), 4, 3, "float-broadcast"),
    ],
)
def test_backward_passes_gradient_check(lead, Tq, Tk, mask_kind):
    rng = np.random.default_rng(7)
    q, k, v = random_case(rng, lead, Tq, Tk, 5, 4, np.float64)
    mask, causal = None, False
    if mask_kind == "bool":
        mask = rng.random((*lead, Tq, Tk)) < 0.7
        mask[..., 0] = True
    elif mask_kind == "causal":
        causal = True
    elif mask_kind == "float":
        mask = rng.normal(size=(*lead, Tq, Tk))
    elif mask_kind == "float-broadcast":
        mask = rng.normal(size=(1, Tq, Tk))  # broadcast over the leading batch dim
    dout = rng.normal(size=(*lead, Tq, 4))
    out, cache = attention_forward(q, k, v, attn_mask=mask, is_causal=causal)
    dq, dk, dv, dmask = attention_backward(dout, cache)

    def f():
        return attention_forward(q, k, v, attn_mask=mask, is_causal=causal)[0]

    inputs = {"q": q, "k": k, "v": v}
    analytic = {"q": dq, "k": dk, "v": dv}
    if mask is not None and mask.dtype != bool:
        inputs["mask"] = mask
        analytic["mask"] = dmask
        assert dmask.shape == mask.shape
    else:
        assert dmask is None
    errors = check_gradients(f, inputs, analytic, dout)
    assert all(e < 1e-6 for e in errors.values()), errors


def test_backward_float32_close_to_float64():
    rng = np.random.default_rng(3)
    q, k, v = random_case(rng, (2, 2), 4, 5, 6, 6, np.float64)
    dout = rng.normal(size=(2, 2, 4, 6))
    grads64 = attention_backward(dout, attention_forward(q, k, v, is_causal=True)[1])[:3]
    f32 = [a.astype(np.float32) for a in (q, k, v, dout)]
    grads32 = attention_backward(f32[3], attention_forward(*f32[:3], is_causal=True)[1])[:3]
    for g32, g64 in zip(grads32, grads64):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- heads


def test_split_merge_heads_round_trip_and_layout():
    x = np.arange(2 * 3 * 8, dtype=np.float64).reshape(2, 3, 8)
    h = split_heads(x, 4)
    assert h.shape == (2, 4, 3, 2)
    np.testing.assert_array_equal(h[1, 2, 0], x[1, 0, 4:6])  # head 2 owns channels 4..5
    np.testing.assert_array_equal(merge_heads(h), x)
    with pytest.raises(ValueError, match="not divisible by n_head=3"):
        split_heads(x, 3)


# --------------------------------------------------------------------------- bad arguments


def _qkv(Tq=3, Tk=4, E=5):
    rng = np.random.default_rng(0)
    return random_case(rng, (2,), Tq, Tk, E, E, np.float64)


@pytest.mark.parametrize(
    "make,match",
    [
        (
            lambda q, k, v: (q, k[..., :4], v, None, False),
            r"head_dim differ: query \(2, 3, 5\), key \(2, 4, 4\)",
        ),
        (
            lambda q, k, v: (q, k, v[:, :3], None, False),
            r"sequence lengths differ: key \(2, 4, 5\), value \(2, 3, 5\)",
        ),
        (lambda q, k, v: (q[None], k, v, None, False), r"same leading .* query \(1, 2, 3, 5\)"),
        (
            lambda q, k, v: (q, k, v, np.ones((3, 5), bool), False),
            r"attn_mask of shape \(3, 5\) does not broadcast to the score shape \(2, 3, 4\)",
        ),
        (
            lambda q, k, v: (q, k, v, np.ones((3, 4), np.int64), False),
            r"attn_mask must be boolean .* got dtype int64",
        ),
        (
            lambda q, k, v: (q, k, v, np.ones((3, 4), bool), True),
            r"either attn_mask \(shape \(3, 4\)\) or is_causal",
        ),
        (lambda q, k, v: (q, k.astype(np.float32), v, None, False), r"share a dtype"),
        (lambda q, k, v: (q.astype(np.int64), k, v, None, False), r"query must be floating point"),
        (
            lambda q, k, v: (np.where(q > 1, np.nan, q), k, v, None, False),
            r"query \(2, 3, 5\) contains NaN or inf",
        ),
        (
            lambda q, k, v: (q, k, np.where(v > 1, np.inf, v), None, False),
            r"value \(2, 4, 5\) contains NaN or inf",
        ),
        (
            lambda q, k, v: (q, k, v, np.full((3, 4), np.nan), False),
            r"float attn_mask \(3, 4\) contains NaN",
        ),
        (lambda q, k, v: (q[0, 0], k, v, None, False), r"query must be an array of shape"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(make, match):
    q, k, v = _qkv()
    args = make(q, k, v)
    with pytest.raises(ValueError, match=match):
        scaled_dot_product_attention(*args)


def test_bad_scale():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="scale must be a finite number"):
        scaled_dot_product_attention(q, k, v, scale=float("nan"))


# --------------------------------------------------------------------------- PyTorch, when present


def test_matches_torch_sdpa_when_installed():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    q, k, v = random_case(rng, (2, 3), 5, 7, 8, 4, np.float64)
    mask = rng.random((5, 7)) < 0.8
    mask[:, 0] = True  # every row may attend to something (fully masked rows: below)
    fmask = rng.normal(size=(1, 5, 7))
    T = torch.from_numpy
    for kwargs_np, kwargs_t in [
        ({}, {}),
        ({"is_causal": True}, {"is_causal": True}),
        ({"attn_mask": mask}, {"attn_mask": T(mask)}),
        ({"attn_mask": fmask, "scale": 0.3}, {"attn_mask": T(fmask), "scale": 0.3}),
    ]:
        want = torch.nn.functional.scaled_dot_product_attention(
            T(q), T(k), T(v), **kwargs_t
        ).numpy()
        np.testing.assert_allclose(
            scaled_dot_product_attention(q, k, v, **kwargs_np), want, rtol=1e-10, atol=1e-12
        )


def test_fully_masked_rows_match_torch_sdpa_zeros_and_gradients():
    """PyTorch's scaled_dot_product_attention returns zeros for a query row whose keys are
    all masked (boolean mask, or a float mask of -inf), with zero gradients: so do we."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    q, k, v = random_case(rng, (2,), 4, 5, 3, 3, np.float64)
    mask = np.ones((4, 5), dtype=bool)
    mask[1] = False
    dout = rng.normal(size=(2, 4, 3))
    out, cache = attention_forward(q, k, v, attn_mask=mask)
    dq, dk, dv, _ = attention_backward(dout, cache)
    for torch_mask in (torch.from_numpy(mask), torch.from_numpy(np.where(mask, 0.0, -np.inf))):
        tq, tk, tv = (torch.from_numpy(a.copy()).requires_grad_() for a in (q, k, v))
        want = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch_mask)
        want.backward(torch.from_numpy(dout))
        assert not torch.isnan(want).any()
        assert torch.all(want[:, 1] == 0)
        np.testing.assert_allclose(out, want.detach().numpy(), rtol=1e-10, atol=1e-12)
        for ours, theirs in zip((dq, dk, dv), (tq.grad, tk.grad, tv.grad)):
            np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-10, atol=1e-12)
