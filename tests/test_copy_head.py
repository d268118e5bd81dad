"""The copy head (pointer-generator): gradients, the mixture it defines, and what it can learn."""

from __future__ import annotations

import numpy as np
import pytest

from minireason.nn.copy_head import (
    copy_attention,
    copy_head_backward,
    copy_head_forward,
    copy_mixture,
    copy_param_shapes,
)
from minireason.nn.gradcheck import check_gradients
from minireason.nn.model import GPT, GPTConfig
from minireason.nn.optim import AdamW

TINY = dict(vocab_size=11, block_size=6, n_layer=2, n_head=2, n_embd=8, copy=True)


def copy_params(C=8, n_head=2, seed=0):
    rng = np.random.default_rng(seed)
    return {
        name: rng.normal(0.0, 0.5, shape) for name, shape in copy_param_shapes(C, n_head).items()
    }


def test_copy_head_layer_gradient_check_float64():
    rng = np.random.default_rng(1)
    B, T, C, V = 2, 5, 8, 6
    h = rng.normal(size=(B * T, C))
    idx = rng.integers(0, V, (B, T))
    rows = np.array([0, 2, 3, 4, 6, 9])
    targets = idx.reshape(-1)[rows]  # every target is in its context ...
    targets[1] = V  # ... but one: a row with no copy mass, only the vocabulary
    logp_vocab = np.log(rng.uniform(0.05, 0.9, len(rows)))
    params = copy_params(C)
    dlogp = rng.normal(size=len(rows))
    _, cache = copy_head_forward(h, idx, rows, targets, logp_vocab, params)
    dlogp_vocab, dh, grads = copy_head_backward(dlogp, cache)
    assert cache.c[1] == 0 and np.all(cache.c[[0, 2, 3, 4, 5]] > 0)

    def f():
        return copy_head_forward(h, idx, rows, targets, logp_vocab, params)[0]

    inputs = {"h": h, "logp_vocab": logp_vocab, **params}
    expected = {"h": dh, "logp_vocab": dlogp_vocab, **grads}
    report = check_gradients(f, inputs, expected, dlogp)
    assert max(report.values()) < 1e-6, report


def test_copy_attention_is_causal_and_normalised():
    rng = np.random.default_rng(2)
    B, T, C = 2, 5, 8
    params = copy_params(C)
    _, _, a = copy_attention(
        rng.normal(size=(B * T, C)), params["copy.w_q"], params["copy.w_k"], B, T
    )
    np.testing.assert_allclose(a.sum(-1), 1.0)
    assert np.all(np.triu(a, k=1) == 0)


@pytest.mark.parametrize("all_logits", [True, False])
def test_whole_model_with_copy_head_gradient_check_float64(all_logits):
    config = GPTConfig(**TINY, dtype="float64", seed=3)
    model = GPT(config)
    rng = np.random.default_rng(0)
    for a in model.params.values():
        a += rng.normal(0.0, 0.1, a.shape)
    idx = rng.integers(0, 5, (2, 5))  # few distinct ids: targets often appear in the context
    targets = rng.integers(0, 7, (2, 5))
    mask = np.array([[1, 0, 1, 1, 0], [0, 1, 1, 0, 1]])
    model.forward(idx, targets, mask, all_logits=all_logits)
    grads = {k: v.copy() for k, v in model.backward().items()}
    assert set(grads) == set(model.params)

    def f():
        return model.forward(idx, targets, mask, keep_cache=False, all_logits=all_logits)[1]

    report = check_gradients(f, model.params, grads)
    assert max(report.values()) < 1e-5, report


def test_returned_logits_are_the_mixture_and_give_the_loss():
    config = GPTConfig(**TINY, dtype="float64", seed=4)
    model = GPT(config)
    rng = np.random.default_rng(5)
    idx, targets = rng.integers(0, 11, (3, 6)), rng.integers(0, 11, (3, 6))
    logits, loss = model.forward(idx, targets, keep_cache=False)
    probs = np.exp(logits)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-12)  # a distribution per position
    picked = np.take_along_axis(logits, targets[..., None], -1)[..., 0]
    assert loss == pytest.approx(-picked.mean(), rel=1e-12)
    np.testing.assert_allclose(model.token_logprobs(idx, targets), picked, atol=1e-12)


def test_mixture_puts_copy_mass_on_context_tokens_only():
    rng = np.random.default_rng(6)
    C, V = 8, 10
    params = copy_params(C)
    params["copy.b_gate"][:] = -50.0  # the gate shut: all mass is copied
    sources = np.array([[3, 3, 7, 0], [1, 2, 2, 2]])
    a = np.array([[0.5, 0.25, 0.25, 0.0], [0.1, 0.3, 0.6, 0.0]])
    logp, g = copy_mixture(rng.normal(size=(2, V)), rng.normal(size=(2, C)), a, sources, params)
    probs = np.exp(logp)
    np.testing.assert_allclose(probs[0, [3, 7]], [0.75, 0.25], atol=1e-9)
    np.testing.assert_allclose(probs[1, [1, 2]], [0.1, 0.9], atol=1e-9)
    assert probs[0, 0] < 1e-9  # a position with no attention gives nothing
    assert np.all(g < 1e-20)


def test_copy_head_repeats_tokens_it_never_saw_in_training():
    """Sequences ``a b c SEP a b c`` of random tokens: after SEP the answer is in the context.

    Both models learn the task on the tokens they train on (ids 1..29). On ids 30..39, never
    seen in training, the plain model fails (its tied embedding of those ids is untrained),
    while the copy head points at them: the path the copy head opens for rare item words.
    """

    def sequences(rng, lo, hi, n=32):
        words = rng.integers(lo, hi, (n, 3))
        return np.concatenate([words, np.zeros((n, 1), np.int64), words], axis=1)

    def losses(copy):
        config = GPTConfig(
            vocab_size=40, block_size=8, n_layer=1, n_head=2, n_embd=16, seed=0, copy=copy
        )
        model = GPT(config)
        opt = AdamW(model.params, lr=1e-2)
        rng = np.random.default_rng(0)
        mask = np.zeros((32, 6), dtype=np.int64)
        mask[:, 3:] = 1  # score SEP -> a, a -> b, b -> c
        for _ in range(300):
            seq = sequences(rng, 1, 30)
            _, seen = model.forward(seq[:, :-1], seq[:, 1:], mask, all_logits=False)
            model.backward()
            opt.step(model.grads)
        seq = sequences(rng, 30, 40)
        _, unseen = model.forward(seq[:, :-1], seq[:, 1:], mask, keep_cache=False)
        return seen, unseen

    copy_seen, copy_unseen = losses(copy=True)
    plain_seen, plain_unseen = losses(copy=False)
    assert copy_seen < 0.01 and plain_seen < 0.01
    assert copy_unseen < 0.5 < np.log(40) < plain_unseen
