"""The whole GPT: gradient check, overfitting, input errors, masks, attention weights, PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from minireason.nn.gradcheck import check_gradients
from minireason.nn.model import GPT, GPTConfig
from minireason.nn.optim import AdamW

TINY = dict(vocab_size=11, block_size=6, n_layer=2, n_head=2, n_embd=8)


def perturbed_model(config, seed=0, scale=0.1):
    """A model whose biases and LayerNorm weights are not exactly 0 / 1 (so every path matters)."""
    model = GPT(config)
    rng = np.random.default_rng(seed)
    for a in model.params.values():
        a += rng.normal(0.0, scale, a.shape).astype(a.dtype)
    return model


def batch(config, B=2, T=5, seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, config.vocab_size, (B, T)), rng.integers(0, config.vocab_size, (B, T))


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_whole_model_gradient_check_float64(dropout):
    config = GPTConfig(**TINY, dtype="float64", dropout=dropout, seed=3)
    model = perturbed_model(config)
    idx, targets = batch(config)
    mask = np.array([[1, 0, 1, 1, 0], [0, 1, 1, 0, 1]])
    state = model.rng_state()
    model.forward(idx, targets, mask)
    grads = {k: v.copy() for k, v in model.backward().items()}

    def f():
        model.set_rng_state(state)  # the same dropout masks on every evaluation
        return model.forward(idx, targets, mask, keep_cache=False)[1]

    report = check_gradients(f, model.params, grads)
    assert max(report.values()) < 1e-5, report


def test_one_layer_model_overfits_one_batch():
    config = GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=32, seed=0)
    model = GPT(config)
    idx, targets = batch(config, B=4, T=8, seed=5)
    opt = AdamW(model.params, lr=1e-2, weight_decay=0.0)
    first = None
    for _ in range(150):
        _, loss = model.forward(idx, targets)
        first = loss if first is None else first
        opt.step(model.backward())
    assert first > 2.0
    assert loss < 0.05


def test_forward_shapes_dtypes_and_parameter_count():
    config = GPTConfig(**TINY)
    model = GPT(config)
    C, V, L = 8, 11, 2
    expected = V * C + 6 * C + L * (12 * C * C + 13 * C) + 2 * C
    assert model.num_params() == expected
    idx, targets = batch(config)
    logits, loss = model.forward(idx)
    assert logits.shape == (2, 5, V) and logits.dtype == np.float32 and loss is None
    _, loss = model.forward(idx, targets)
    assert isinstance(loss, float) and abs(loss - np.log(V)) < 0.1  # near uniform at init
    grads = model.backward()
    assert set(grads) == set(model.params)
    assert all(
        grads[k].shape == model.params[k].shape and grads[k].dtype == np.float32 for k in grads
    )


def test_gpt2_initialisation_scales_residual_projections():
    config = GPTConfig(vocab_size=64, block_size=16, n_layer=8, n_head=4, n_embd=64)
    p = GPT(config).params
    assert abs(p["h.0.mlp.w_fc"].std() - 0.02) < 0.002
    assert abs(p["h.0.mlp.w_proj"].std() - 0.02 / 4.0) < 0.0005  # 0.02 / sqrt(2 * 8)
    assert np.all(p["h.3.ln1.w"] == 1) and np.all(p["h.3.attn.b_qkv"] == 0)


def test_decay_mask_covers_only_linear_weights():
    mask = GPT(GPTConfig(**TINY)).decay_mask()
    assert {k for k, v in mask.items() if v} == {
        f"h.{i}.{n}"
        for i in range(2)
        for n in ("attn.w_qkv", "attn.w_proj", "mlp.w_fc", "mlp.w_proj")
    }


def test_loss_mask_averages_over_selected_tokens_only():
    config = GPTConfig(**TINY, dtype="float64")
    model = perturbed_model(config)
    idx, targets = batch(config)
    mask = np.array([[0, 0, 1, 1, 0], [1, 0, 0, 0, 1]])
    _, masked = model.forward(idx, targets, mask)
    logp = model.token_logprobs(idx, targets)
    assert logp.shape == (2, 5)
    assert masked == pytest.approx(-logp[mask == 1].mean(), rel=1e-12)
    _, full = model.forward(idx, targets)
    assert full == pytest.approx(-logp.mean(), rel=1e-12)
    # changing a target outside the mask changes nothing
    t2 = targets.copy()
    t2[0, 0] = (t2[0, 0] + 1) % config.vocab_size
    assert model.forward(idx, t2, mask)[1] == pytest.approx(masked, rel=1e-15)


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_head_on_counted_tokens_only_gives_the_same_loss_and_gradients(dropout):
    """``all_logits=False`` runs the LM head and the loss on the mask's tokens alone."""
    config = GPTConfig(**TINY, dtype="float64", dropout=dropout, seed=5)
    model = perturbed_model(config)
    idx, targets = batch(config)
    mask = np.array([[0, 0, 1, 1, 0], [1, 0, 0, 0, 1]])
    state = model.rng_state()
    logits, full = model.forward(idx, targets, mask)
    full_grads = {k: v.copy() for k, v in model.backward().items()}
    model.set_rng_state(state)  # the same dropout masks
    none, counted = model.forward(idx, targets, mask, all_logits=False)
    counted_grads = model.backward()
    assert logits.shape == (2, 5, config.vocab_size) and none is None
    assert counted == pytest.approx(full, rel=1e-12)
    for name, grad in full_grads.items():
        np.testing.assert_allclose(counted_grads[name], grad, rtol=1e-10, atol=1e-13)
    # a full mask and no mask take the full path and still give no logits
    for every in (np.ones_like(mask), None):
        model.set_rng_state(state)
        none, loss = model.forward(idx, targets, every, all_logits=False, keep_cache=False)
        model.set_rng_state(state)
        assert none is None and loss == pytest.approx(model.forward(idx, targets)[1], rel=1e-12)


def test_attention_weights_are_kept_per_layer_and_causal():
    config = GPTConfig(**TINY)
    model = GPT(config)
    idx, _ = batch(config)
    model.forward(idx, keep_cache=False)
    weights = model.attention_weights()
    assert len(weights) == config.n_layer
    for w in weights:
        assert w.shape == (2, config.n_head, 5, 5)
        np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
        assert np.all(np.triu(np.ones((5, 5)), 1)[None, None] * w == 0)


def test_backward_without_cache_raises():
    config = GPTConfig(**TINY)
    model = GPT(config)
    idx, targets = batch(config)
    model.forward(idx, targets, keep_cache=False)
    with pytest.raises(RuntimeError, match="keep_cache"):
        model.backward()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda i, t: (i + 100, t, None), r"idx .*outside \[0, 11\)"),
        (lambda i, t: (np.zeros((2, 7), int), None, None), r"T=7 .*block_size=6"),
        (lambda i, t: (i[0], None, None), r"idx must be a 2-D"),
        (lambda i, t: (i.astype(float), None, None), r"idx must hold integer"),
        (lambda i, t: (i, t[:, :3], None), r"targets must have the shape of idx \(2, 5\)"),
        (
            lambda i, t: (i, t, np.ones((2, 4))),
            r"loss_mask must have the shape of idx \(2, 5\), got \(2, 4\)",
        ),
        (lambda i, t: (i, t, np.zeros((2, 5))), r"loss_mask .* selects no token"),
        (lambda i, t: (i, t, np.full((2, 5), 2)), r"loss_mask .* only 0 and 1"),
        (lambda i, t: (i, None, np.ones((2, 5))), r"loss_mask given without targets"),
        (lambda i, t: (i, t - 20, None), r"targets hold token ids"),
    ],
)
def test_bad_inputs_raise_value_errors_naming_the_argument(make, match):
    config = GPTConfig(**TINY)
    model = GPT(config)
    idx, targets, mask = make(*batch(config))
    with pytest.raises(ValueError, match=match):
        model.forward(idx, targets, mask)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_embd=10, n_head=3), "divisible"),
        (dict(dropout=1.0), "dropout"),
        (dict(dtype="float16"), "dtype"),
        (dict(n_layer=0), "n_layer"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig(**{**TINY, **kwargs})


def test_dropout_is_seeded_and_off_in_eval():
    config = GPTConfig(**TINY, dropout=0.3, seed=4)
    idx, targets = batch(config)
    a, b = GPT(config), GPT(config)
    la = [a.forward(idx, targets)[1] for _ in range(2)]
    lb = [b.forward(idx, targets)[1] for _ in range(2)]
    assert la == lb  # same seed, same masks
    assert la[0] != la[1]  # fresh masks each step
    a.eval()
    assert a.forward(idx, targets)[1] == a.forward(idx, targets)[1]
    assert a.forward(idx, targets)[1] == GPT(GPTConfig(**TINY, seed=4)).forward(idx, targets)[1]


def test_matches_pytorch_loss_and_gradients():
    torch = pytest.importorskip("torch")
    from minireason.nn.torch_reference import build_torch_model

    config = GPTConfig(**TINY, dtype="float64", seed=7)
    model = perturbed_model(config)
    idx, targets = batch(config)
    _, loss = model.forward(idx, targets)
    grads = model.backward()
    net = build_torch_model(model)
    tloss = net(torch.from_numpy(idx), torch.from_numpy(targets))
    tloss.backward()
    assert loss == pytest.approx(float(tloss.detach()), rel=1e-12)
    np.testing.assert_allclose(grads["wte"], net.wte.weight.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads["wpe"], net.wpe.weight.grad.numpy(), rtol=1e-9, atol=1e-12)
    blk = net.blocks[1]
    np.testing.assert_allclose(
        grads["h.1.attn.w_qkv"], blk.qkv.weight.grad.numpy().T, rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(
        grads["h.1.mlp.b_fc"], blk.fc.bias.grad.numpy(), rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(
        grads["h.0.ln1.w"], net.blocks[0].ln1.weight.grad.numpy(), rtol=1e-9, atol=1e-12
    )
