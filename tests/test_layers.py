"""Every layer's hand-written backward against float64 centred differences (rel error < 1e-6)."""

from __future__ import annotations

import numpy as np
import pytest

from minireason.nn import layers as L
from minireason.nn.gradcheck import check_gradients

TOL = 1e-6


def rnd(rng, *shape, scale=1.0):
    return rng.normal(0.0, scale, size=shape)


def assert_grads(f, inputs, analytic, dout=None):
    report = check_gradients(f, inputs, analytic, dout)
    bad = {k: v for k, v in report.items() if not v < TOL}
    assert not bad, f"gradient check failed: {report}"


def test_embedding_gradients_add_up_repeated_tokens():
    rng = np.random.default_rng(0)
    idx = np.array([[1, 3, 1], [0, 1, 4]])  # token 1 appears three times
    wte, wpe = rnd(rng, 5, 4), rnd(rng, 6, 4)
    out, cache = L.embedding_forward(idx, wte, wpe)
    assert out.shape == (6, 4)
    np.testing.assert_allclose(out[3], wte[0] + wpe[0])
    dout = rnd(rng, 6, 4)
    dwte, dwpe = L.embedding_backward(dout, cache)
    assert_grads(
        lambda: L.embedding_forward(idx, wte, wpe)[0],
        {"wte": wte, "wpe": wpe},
        {"wte": dwte, "wpe": dwpe},
        dout,
    )
    np.testing.assert_allclose(dwte[1], dout[0] + dout[2] + dout[4])
    assert np.all(dwpe[3:] == 0)  # positions beyond T get no gradient


def test_layernorm_gradients_and_normalisation():
    rng = np.random.default_rng(1)
    x, w, b = rnd(rng, 5, 6, scale=3.0), rnd(rng, 6), rnd(rng, 6)
    out, cache = L.layernorm_forward(x, w, b)
    xhat = (out - b) / w
    np.testing.assert_allclose(xhat.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(xhat.var(axis=1), 1.0, rtol=1e-4)  # var / (var + eps)
    dout = rnd(rng, 5, 6)
    dx, dw, db = L.layernorm_backward(dout, cache)
    assert_grads(
        lambda: L.layernorm_forward(x, w, b)[0],
        {"x": x, "w": w, "b": b},
        {"x": dx, "w": dw, "b": db},
        dout,
    )


def test_linear_gradients():
    rng = np.random.default_rng(2)
    x, w, b = rnd(rng, 4, 3), rnd(rng, 3, 5), rnd(rng, 5)
    out, cache = L.linear_forward(x, w, b)
    np.testing.assert_allclose(out, x @ w + b)
    dout = rnd(rng, 4, 5)
    dx, dw, db = L.linear_backward(dout, cache)
    assert_grads(
        lambda: L.linear_forward(x, w, b)[0],
        {"x": x, "w": w, "b": b},
        {"x": dx, "w": dw, "b": db},
        dout,
    )


def test_gelu_tanh_form_values_and_gradient():
    rng = np.random.default_rng(3)
    x = rnd(rng, 4, 7, scale=2.0)
    out, cache = L.gelu_forward(x)
    expected = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    dout = rnd(rng, 4, 7)
    dx = L.gelu_backward(dout, cache)
    assert_grads(lambda: L.gelu_forward(x)[0], {"x": x}, {"x": dx}, dout)


def test_dropout_is_seeded_scaled_and_identity_without_rng():
    x = np.ones((200, 50))
    out, mask = L.dropout_forward(x, 0.25, np.random.default_rng(4))
    kept = out != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(out[kept], 1 / 0.75)
    again, _ = L.dropout_forward(x, 0.25, np.random.default_rng(4))
    np.testing.assert_array_equal(out, again)
    dout = np.arange(x.size, dtype=float).reshape(x.shape)
    np.testing.assert_array_equal(L.dropout_backward(dout, mask), dout * mask)
    same, cache = L.dropout_forward(x, 0.25, None)  # eval mode
    assert same is x and cache is None


def test_dropout_gradient_with_fixed_mask():
    rng = np.random.default_rng(5)
    x = rnd(rng, 3, 8)
    out, mask = L.dropout_forward(x, 0.5, np.random.default_rng(6))
    dout = rnd(rng, 3, 8)
    dx = L.dropout_backward(dout, mask)
    assert_grads(
        lambda: L.dropout_forward(x, 0.5, np.random.default_rng(6))[0], {"x": x}, {"x": dx}, dout
    )


def test_self_attention_gradients_and_causality():
    rng = np.random.default_rng(7)
    B, T, C, H = 2, 4, 6, 2
    x = rnd(rng, B * T, C)
    w_qkv, b_qkv = rnd(rng, C, 3 * C, scale=0.5), rnd(rng, 3 * C, scale=0.1)
    w_proj, b_proj = rnd(rng, C, C, scale=0.5), rnd(rng, C, scale=0.1)

    def f():
        return L.self_attention_forward(x, w_qkv, b_qkv, w_proj, b_proj, B, T, H)[0]

    out, cache = L.self_attention_forward(x, w_qkv, b_qkv, w_proj, b_proj, B, T, H)
    weights = cache.attention.weights
    assert weights.shape == (B, H, T, T)
    assert np.all(weights[..., np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0)
    np.testing.assert_allclose(weights.sum(-1), 1.0)
    dout = rnd(rng, B * T, C)
    dx, dw_qkv, db_qkv, dw_proj, db_proj = L.self_attention_backward(dout, cache)
    assert_grads(
        f,
        {"x": x, "w_qkv": w_qkv, "b_qkv": b_qkv, "w_proj": w_proj, "b_proj": b_proj},
        {"x": dx, "w_qkv": dw_qkv, "b_qkv": db_qkv, "w_proj": dw_proj, "b_proj": db_proj},
        dout,
    )
    # a later token does not change an earlier token's output
    x2 = x.copy()
    x2[T - 1] += 1.0  # last position of sequence 0
    out2 = L.self_attention_forward(x2, w_qkv, b_qkv, w_proj, b_proj, B, T, H)[0]
    np.testing.assert_allclose(out2[: T - 1], out[: T - 1])
    np.testing.assert_allclose(out2[T:], out[T:])


def test_mlp_gradients():
    rng = np.random.default_rng(8)
    x = rnd(rng, 5, 3)
    w_fc, b_fc, w_proj, b_proj = rnd(rng, 3, 12), rnd(rng, 12), rnd(rng, 12, 3), rnd(rng, 3)
    out, cache = L.mlp_forward(x, w_fc, b_fc, w_proj, b_proj)
    dout = rnd(rng, 5, 3)
    dx, dw_fc, db_fc, dw_proj, db_proj = L.mlp_backward(dout, cache)
    assert_grads(
        lambda: L.mlp_forward(x, w_fc, b_fc, w_proj, b_proj)[0],
        {"x": x, "w_fc": w_fc, "b_fc": b_fc, "w_proj": w_proj, "b_proj": b_proj},
        {"x": dx, "w_fc": dw_fc, "b_fc": db_fc, "w_proj": dw_proj, "b_proj": db_proj},
        dout,
    )


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_block_gradients(dropout):
    rng = np.random.default_rng(9)
    B, T, C, H = 2, 3, 4, 2
    shapes = {
        "ln1.w": (C,),
        "ln1.b": (C,),
        "attn.w_qkv": (C, 3 * C),
        "attn.b_qkv": (3 * C,),
        "attn.w_proj": (C, C),
        "attn.b_proj": (C,),
        "ln2.w": (C,),
        "ln2.b": (C,),
        "mlp.w_fc": (C, 4 * C),
        "mlp.b_fc": (4 * C,),
        "mlp.w_proj": (4 * C, C),
        "mlp.b_proj": (C,),
    }
    assert set(shapes) == set(L.BLOCK_PARAMS)
    p = {name: rnd(rng, *shape, scale=0.5) for name, shape in shapes.items()}
    x = rnd(rng, B * T, C)

    def f():
        return L.block_forward(x, p, B, T, H, dropout, np.random.default_rng(10))[0]

    out, cache = L.block_forward(x, p, B, T, H, dropout, np.random.default_rng(10))
    dout = rnd(rng, B * T, C)
    dx, grads = L.block_backward(dout, cache)
    assert_grads(f, {"x": x, **p}, {"x": dx, **grads}, dout)


def test_lm_head_gradients():
    rng = np.random.default_rng(11)
    x, wte = rnd(rng, 4, 3), rnd(rng, 7, 3)
    logits, cache = L.lm_head_forward(x, wte)
    assert logits.shape == (4, 7)
    dout = rnd(rng, 4, 7)
    dx, dwte = L.lm_head_backward(dout, cache)
    assert_grads(
        lambda: L.lm_head_forward(x, wte)[0], {"x": x, "wte": wte}, {"x": dx, "wte": dwte}, dout
    )


@pytest.mark.parametrize("use_mask", [False, True])
def test_cross_entropy_value_and_gradient(use_mask):
    rng = np.random.default_rng(12)
    logits = rnd(rng, 6, 5, scale=3.0)
    targets = rng.integers(0, 5, 6)
    mask = np.array([1, 0, 1, 1, 0, 0]) if use_mask else None
    loss, cache = L.cross_entropy_forward(logits, targets, mask)
    nll = -L.log_softmax(logits)[np.arange(6), targets]
    expected = nll[mask == 1].mean() if use_mask else nll.mean()
    assert float(loss) == pytest.approx(expected, rel=1e-12)
    dlogits = L.cross_entropy_backward(cache)
    if use_mask:
        assert np.all(dlogits[mask == 0] == 0)  # unmasked tokens get no gradient
    assert_grads(
        lambda: L.cross_entropy_forward(logits, targets, mask)[0],
        {"logits": logits},
        {"logits": dlogits},
    )


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4]], dtype=np.float32)
    loss, _ = L.cross_entropy_forward(logits, np.array([0]))
    assert np.isfinite(float(loss)) and float(loss) == pytest.approx(0.0, abs=1e-6)


def test_float32_stays_float32_through_every_layer():
    rng = np.random.default_rng(13)
    B, T, C, H = 2, 3, 8, 2
    f32 = np.float32
    x = rng.normal(size=(B * T, C)).astype(f32)
    p = {
        "ln1.w": np.ones(C, f32),
        "ln1.b": np.zeros(C, f32),
        "attn.w_qkv": rng.normal(size=(C, 3 * C)).astype(f32),
        "attn.b_qkv": np.zeros(3 * C, f32),
        "attn.w_proj": rng.normal(size=(C, C)).astype(f32),
        "attn.b_proj": np.zeros(C, f32),
        "ln2.w": np.ones(C, f32),
        "ln2.b": np.zeros(C, f32),
        "mlp.w_fc": rng.normal(size=(C, 4 * C)).astype(f32),
        "mlp.b_fc": np.zeros(4 * C, f32),
        "mlp.w_proj": rng.normal(size=(4 * C, C)).astype(f32),
        "mlp.b_proj": np.zeros(C, f32),
    }
    out, cache = L.block_forward(x, p, B, T, H, 0.1, np.random.default_rng(0))
    assert out.dtype == f32
    dx, grads = L.block_backward(np.ones_like(out), cache)
    assert dx.dtype == f32 and all(g.dtype == f32 for g in grads.values())
    logits = rng.normal(size=(B * T, 11)).astype(f32)
    loss, ce = L.cross_entropy_forward(logits, rng.integers(0, 11, B * T), np.ones(B * T, f32))
    assert loss.dtype == f32 and L.cross_entropy_backward(ce).dtype == f32
