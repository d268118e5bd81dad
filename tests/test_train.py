"""The training loop: exact resume, non-finite stop, validation, plot, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from minireason.nn.checkpoint import load_checkpoint
from minireason.nn.model import GPT, GPTConfig
from minireason.train.batches import TokenWindows
from minireason.train.loop import TrainConfig, evaluate, train

CONFIG = GPTConfig(vocab_size=17, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.1, seed=5)


def stream(n=400, seed=0):
    """A learnable token stream: a repeated pattern with a little noise."""
    rng = np.random.default_rng(seed)
    tokens = np.tile(np.arange(17), n // 17 + 1)[:n]
    noise = rng.random(n) < 0.05
    tokens[noise] = rng.integers(0, 17, noise.sum())
    return tokens


def tc(**kw):
    base = dict(
        max_steps=8,
        learning_rate=3e-3,
        min_lr=3e-4,
        warmup_steps=2,
        eval_interval=4,
        eval_iters=2,
        checkpoint_interval=100,
    )
    return TrainConfig(**{**base, **kw})


def test_resume_is_bit_exact(tmp_path):
    data, val = TokenWindows(stream(), 4, 8, seed=1), TokenWindows(stream(seed=9), 4, 8, seed=2)
    straight = GPT(CONFIG)
    r1 = train(straight, data, tc(), tmp_path / "a", val_batch=val, progress=False)
    assert r1.step == 8 and r1.stopped is None

    first = GPT(CONFIG)
    r2 = train(first, data, tc(), tmp_path / "b", val_batch=val, stop_at_step=4, progress=False)
    assert r2.step == 4 and load_checkpoint(tmp_path / "b").step == 4
    fresh = GPT(GPTConfig(**{**CONFIG.to_dict(), "seed": 5}))  # weights come from the checkpoint
    r3 = train(fresh, data, tc(), tmp_path / "b", val_batch=val, resume=True, progress=False)
    assert r3.step == 8
    for name in straight.params:
        np.testing.assert_array_equal(fresh.params[name], straight.params[name], err_msg=name)
    assert r3.train_losses == r1.train_losses
    assert r3.val_losses == r1.val_losses
    assert (tmp_path / "b" / "loss.png").stat().st_size > 1000


def test_resume_refuses_a_different_train_config(tmp_path):
    data = TokenWindows(stream(), 4, 8, seed=1)
    train(GPT(CONFIG), data, tc(), tmp_path, stop_at_step=2, progress=False)
    with pytest.raises(ValueError, match=r"learning_rate: 0.003 -> 0.01"):
        train(GPT(CONFIG), data, tc(learning_rate=1e-2), tmp_path, resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(GPT(CONFIG), data, tc(), tmp_path / "empty", resume=True, progress=False)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_non_finite_loss_stops_cleanly_and_keeps_last_good_checkpoint(tmp_path, capsys):
    model = GPT(CONFIG)
    data = TokenWindows(stream(), 4, 8, seed=1)

    def poisoned(step):
        if step == 5:
            model.params["ln_f.w"][:] = np.inf  # something blows up mid-run
        return data(step)

    result = train(model, poisoned, tc(checkpoint_interval=3), tmp_path, progress=False)
    assert result.step == 5
    assert "non-finite loss" in result.stopped and "step 5" in result.stopped
    assert "last good checkpoint" in result.stopped
    assert "non-finite loss" not in capsys.readouterr().out  # the caller says it, once
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.step == 3
    assert all(np.isfinite(a).all() for a in ckpt.params.values())
    assert (tmp_path / "loss.png").exists()


def test_training_lowers_the_loss_and_validates(tmp_path):
    model = GPT(GPTConfig(**{**CONFIG.to_dict(), "dropout": 0.0}))
    data, val = TokenWindows(stream(), 8, 8, seed=1), TokenWindows(stream(seed=9), 8, 8, seed=2)
    before = evaluate(model, val, 2)
    result = train(
        model,
        data,
        tc(max_steps=60, learning_rate=1e-2, eval_interval=30),
        tmp_path,
        val_batch=val,
        progress=False,
    )
    assert [s for s, _ in result.val_losses] == [30, 60]
    assert result.val_losses[-1][1] < 0.5 * before
    assert model.training  # evaluation restored training mode


def test_token_windows_are_deterministic_per_step_and_shifted():
    tokens = np.arange(100)
    src = TokenWindows(tokens, 3, 5, seed=7)
    idx, targets, mask = src(4)
    assert mask is None and idx.shape == (3, 5)
    np.testing.assert_array_equal(targets, idx + 1)
    np.testing.assert_array_equal(src(4)[0], idx)
    assert not np.array_equal(src(5)[0], idx)
    with pytest.raises(ValueError, match="fewer than block_size"):
        TokenWindows(np.arange(5), 2, 8)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(max_steps=0), "max_steps"),
        (dict(beta1=1.0), "beta1"),
        (dict(learning_rate=float("nan")), "learning_rate"),
    ],
)
def test_bad_train_config_raises(kw, match):
    with pytest.raises(ValueError, match=match):
        tc(**kw)
