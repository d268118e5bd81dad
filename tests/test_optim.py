"""AdamW, the warm-up + cosine schedule and global-norm clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minireason.nn.optim import AdamW, clip_grad_norm, global_grad_norm, lr_at


def test_schedule_warms_up_linearly_then_decays_by_cosine_to_min():
    lrs = [lr_at(s, 1.0, 10, 110, 0.1) for s in range(130)]
    assert (
        lrs[0] == pytest.approx(0.1)
        and lrs[4] == pytest.approx(0.5)
        and lrs[9] == pytest.approx(1.0)
    )
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.45)  # half-way: the cosine's midpoint
    assert all(a >= b for a, b in zip(lrs[10:111], lrs[11:111]))
    assert lrs[110] == pytest.approx(0.1) and lrs[129] == pytest.approx(0.1)


def test_clip_grad_norm_scales_only_when_above_max():
    grads = {"a": np.array([3.0, 0.0], np.float32), "b": np.array([[4.0]], np.float32)}
    assert global_grad_norm(grads) == pytest.approx(5.0)
    norm = clip_grad_norm(grads, 1.0)
    assert norm == pytest.approx(5.0)
    assert global_grad_norm(grads) == pytest.approx(1.0, rel=1e-5)
    assert grads["a"].dtype == np.float32
    small = {"a": np.array([0.3, 0.4])}
    clip_grad_norm(small, 1.0)
    np.testing.assert_array_equal(small["a"], [0.3, 0.4])
    nan = {"a": np.array([np.nan, 1.0])}
    assert math.isnan(clip_grad_norm(nan, 1.0))


def test_first_adamw_step_is_lr_times_sign_and_decay_is_decoupled():
    p = {"w": np.array([[1.0, -2.0]]), "b": np.array([1.0, -2.0])}
    g = {"w": np.array([[0.5, -3.0]]), "b": np.array([0.5, -3.0])}
    opt = AdamW(p, lr=0.1, eps=0.0, weight_decay=0.5, decay={"w": True, "b": False})
    opt.step(g)
    # step 1: m_hat = g, v_hat = g^2 -> update = lr * sign(g); decay multiplies by 1 - lr * wd
    np.testing.assert_allclose(p["b"], [1.0 - 0.1, -2.0 + 0.1])
    np.testing.assert_allclose(p["w"], [[1.0 * 0.95 - 0.1, -2.0 * 0.95 + 0.1]])


def test_adamw_matches_pytorch_over_several_steps():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    p = {"w": rng.normal(size=(4, 3)), "b": rng.normal(size=3)}
    tw, tb = (torch.tensor(p[k].copy(), requires_grad=True) for k in ("w", "b"))
    opt = AdamW(
        p, lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, decay={"w": True, "b": False}
    )
    topt = torch.optim.AdamW(
        [{"params": [tw], "weight_decay": 0.1}, {"params": [tb], "weight_decay": 0.0}],
        lr=0.01,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    for step in range(5):
        g = {"w": rng.normal(size=(4, 3)), "b": rng.normal(size=3)}
        lr = 0.01 * (step + 1) / 5
        opt.step(g, lr=lr)
        for group in topt.param_groups:
            group["lr"] = lr
        tw.grad, tb.grad = torch.tensor(g["w"]), torch.tensor(g["b"])
        topt.step()
    np.testing.assert_allclose(p["w"], tw.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(p["b"], tb.detach().numpy(), rtol=1e-12)


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(1)
    grads = [{"w": rng.normal(size=(3, 2)).astype(np.float32)} for _ in range(4)]
    p1 = {"w": np.ones((3, 2), np.float32)}
    o1 = AdamW(p1, lr=0.1)
    for g in grads:
        o1.step(g)
    p2 = {"w": np.ones((3, 2), np.float32)}
    o2 = AdamW(p2, lr=0.1)
    for g in grads[:2]:
        o2.step(g)
    saved = o2.state_dict()
    state = {
        "t": saved["t"],
        "m": {"w": saved["m"]["w"].copy()},
        "v": {"w": saved["v"]["w"].copy()},
    }
    p3 = {"w": p2["w"].copy()}
    o3 = AdamW(p3, lr=0.1)
    o3.load_state_dict(state)
    for g in grads[2:]:
        o3.step(g)
    np.testing.assert_array_equal(p3["w"], p1["w"])
    with pytest.raises(ValueError, match=r"m\['w'\] has shape \(2,\)"):
        o3.load_state_dict({"t": 1, "m": {"w": np.zeros(2)}, "v": {"w": np.zeros((3, 2))}})
