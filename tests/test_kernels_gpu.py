"""The CUDA kernels against the NumPy reference, on the GPU (skipped, with the reason, without one).

Every output buffer is filled with NaN before each launch, so an element a kernel forgets to
write fails the comparison. Tolerance for float32: abs 1e-4 + rel 1e-4. Launchers run with
``check=True``: each call ends in a synchronisation that raises on any CUDA error, and a
launch the driver refuses raises at once.
Run them all with ``kernels/gpu_check.sh`` (or ``pytest -m gpu``).
"""

from __future__ import annotations

import numpy as np
import pytest

from minireason import backend
from minireason.nn.attention import attention_backward, attention_forward, masked_softmax

pytestmark = pytest.mark.gpu

ATOL = RTOL = 1e-4

# (batch dims, Tq, Tk, head_dim): ragged (not multiples of 32), Tq != Tk, tiny, head_dim to 128
SHAPES = [
    ((2, 3), 37, 37, 16),
    ((1,), 1, 1, 8),
    ((2,), 5, 70, 24),
    ((2,), 70, 5, 24),
    ((1, 4), 64, 64, 64),
    ((2, 2), 129, 129, 64),
    ((1,), 33, 95, 128),
    ((3,), 100, 31, 100),
    ((), 300, 300, 32),
    ((2,), 40, 33, 7),
]


@pytest.fixture(scope="module")
def cp():
    return pytest.importorskip("cupy")


@pytest.fixture(scope="module")
def ca():
    from minireason.gpu import cuda_attention

    return cuda_attention


def _inputs(lead, tq, tk, d, seed):
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal((*lead, t, d)).astype(np.float32) for t in (tq, tk, tk))


def _nan(cp, shape):
    return cp.full(shape, np.nan, dtype=np.float32)


def _close(got, ref, what):
    np.testing.assert_allclose(
        np.asarray(got, dtype=np.float64), ref, rtol=RTOL, atol=ATOL, err_msg=what
    )


def _masks(lead, tq, tk, seed):
    """A bool mask with a fully masked row (broadcast over batch) and a float mask with -inf."""
    rng = np.random.default_rng(seed)
    bool_mask = rng.random((tq, tk)) < 0.7
    bool_mask[0] = False  # a row with no key: zeros, never NaN
    float_mask = rng.standard_normal((*lead, tq, tk))
    float_mask[rng.random(float_mask.shape) < 0.2] = -np.inf
    return {"bool": bool_mask, "float": float_mask.astype(np.float32)}


@pytest.mark.parametrize("version", ["attention_forward1_naive", "attention_forward2_fused"])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_1_and_2_match_reference(cp, ca, version, shape):
    lead, tq, tk, d = shape
    q, k, v = _inputs(lead, tq, tk, d, seed=tq + 31 * tk)
    launch = getattr(ca, version)
    gq, gk, gv = (cp.asarray(a) for a in (q, k, v))
    cases = [("plain", None, False), ("causal", None, True)]
    cases += [(name, m, False) for name, m in _masks(lead, tq, tk, seed=d).items()]
    for name, mask, causal in cases:
        ref, _ = attention_forward(
            *(a.astype(np.float64) for a in (q, k, v)), attn_mask=mask, is_causal=causal
        )
        out = _nan(cp, ref.shape)
        got = launch(
            gq,
            gk,
            gv,
            attn_mask=None if mask is None else cp.asarray(mask),
            is_causal=causal,
            out=out,
        )
        assert got is out
        _close(cp.asnumpy(out), ref, f"{version} {shape} {name}")


def test_forward_1_and_2_value_head_dim_may_differ(cp, ca):
    q, k, _ = _inputs((2,), 40, 50, 16, seed=5)
    v = np.random.default_rng(6).standard_normal((2, 50, 24)).astype(np.float32)
    ref, _ = attention_forward(
        q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), scale=0.2
    )
    for launch in (ca.attention_forward1_naive, ca.attention_forward2_fused):
        out = launch(*(cp.asarray(a) for a in (q, k, v)), scale=0.2, out=_nan(cp, ref.shape))
        _close(cp.asnumpy(out), ref, launch.__name__)


def test_fused_softmax_kernel_in_place(cp, ca):
    rng = np.random.default_rng(7)
    scores = rng.standard_normal((3, 45, 77)).astype(np.float32)
    bias = np.where(rng.random(scores.shape) < 0.3, -np.inf, 0.0).astype(np.float32)
    bias[1, 2] = -np.inf  # a fully masked row
    ref = masked_softmax(0.5 * scores.astype(np.float64) + bias)
    g = cp.asarray(scores)
    assert ca.scale_mask_softmax(g, cp.asarray(bias), scale=0.5) is g
    _close(cp.asnumpy(g), ref, "scale_mask_softmax")
    assert not np.isnan(cp.asnumpy(g)).any()


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_flash_forward_3_matches_reference(cp, ca, shape, is_causal):
    lead, tq, tk, d = shape
    q, k, v = _inputs(lead, tq, tk, d, seed=tq * 3 + tk)
    q64, k64, v64 = (a.astype(np.float64) for a in (q, k, v))
    ref, _ = attention_forward(q64, k64, v64, is_causal=is_causal)
    scores = q64 @ np.swapaxes(k64, -1, -2) / np.sqrt(d)
    if is_causal:
        scores = np.where(np.tril(np.ones((tq, tk), dtype=bool)), scores, -np.inf)
    m = scores.max(axis=-1)
    ref_lse = m + np.log(np.exp(scores - m[..., None]).sum(axis=-1))
    out, lse = _nan(cp, ref.shape), _nan(cp, ref.shape[:-1])
    got_out, got_lse = ca.attention_forward3_flash(
        *(cp.asarray(a) for a in (q, k, v)), is_causal=is_causal, out=out, lse=lse
    )
    assert got_out is out and got_lse is lse
    _close(cp.asnumpy(out), ref, f"flash out {shape} causal={is_causal}")
    _close(cp.asnumpy(lse), ref_lse, f"flash lse {shape} causal={is_causal}")


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_flash_backward_4_matches_reference(cp, ca, shape, is_causal):
    lead, tq, tk, d = shape
    q, k, v = _inputs(lead, tq, tk, d, seed=tq * 5 + tk)
    dout = np.random.default_rng(11).standard_normal((*lead, tq, d)).astype(np.float32)
    _, cache = attention_forward(*(a.astype(np.float64) for a in (q, k, v)), is_causal=is_causal)
    ref = attention_backward(dout.astype(np.float64), cache)[:3]
    gq, gk, gv, gdo = (cp.asarray(a) for a in (q, k, v, dout))
    out, lse = ca.attention_forward3_flash(gq, gk, gv, is_causal=is_causal)
    bufs = [_nan(cp, a.shape) for a in (q, k, v)]
    got = ca.attention_backward4_flash(
        gdo, gq, gk, gv, out, lse, is_causal=is_causal, dq=bufs[0], dk=bufs[1], dv=bufs[2]
    )
    for name, g, b, r in zip(("dq", "dk", "dv"), got, bufs, ref):
        assert g is b
        _close(cp.asnumpy(g), r, f"flash {name} {shape} causal={is_causal}")


def test_launchers_name_bad_inputs(cp, ca):
    q = cp.zeros((2, 8, 16), dtype=cp.float32)
    with pytest.raises(ValueError, match="float32"):
        ca.attention_forward3_flash(q.astype(cp.float64), q, q)
    with pytest.raises(ValueError, match="head_dim 1..128"):
        big = cp.zeros((2, 8, 130), dtype=cp.float32)
        ca.attention_forward3_flash(big, big, big)
    with pytest.raises(ValueError, match="out must be"):
        ca.attention_forward1_naive(q, q, q, out=cp.zeros((2, 8, 15), dtype=cp.float32))
    with pytest.raises(ValueError, match="does not broadcast"):
        ca.attention_forward2_fused(q, q, q, attn_mask=cp.ones((3, 8), dtype=bool))


def test_cuda_errors_are_raised_not_ignored(cp, ca):
    """A launch the GPU refuses (a grid dimension over the limit) raises KernelError."""
    q = cp.zeros((70000, 1, 8), dtype=cp.float32)  # B = 70000 > 65535 blocks in grid.y
    with pytest.raises(ca.KernelError, match="attention_forward3_flash"):
        ca.attention_forward3_flash(q, q, q)


def _train_step(device, config, idx, targets):
    """Loss, gradients and parameters after one forward/backward/AdamW step, on the host."""
    from minireason.nn.model import GPT
    from minireason.nn.optim import AdamW

    backend.set_device(device)
    xp = backend.xp()
    model = GPT(config)
    _, loss = model.forward(xp.asarray(idx), xp.asarray(targets))
    grads = {name: backend.to_numpy(g).copy() for name, g in model.backward().items()}
    # eps=1e-4, not 1e-8: a gradient that is zero in exact arithmetic (the key bias of
    # b_qkv: softmax ignores a shift) is float32 noise of ~1e-8, which Adam with a tiny eps
    # would blow up into a +-lr step whose sign differs between the two devices.
    AdamW(model.params, lr=1e-3, eps=1e-4).step(model.grads)
    params = {name: backend.to_numpy(p) for name, p in model.params.items()}
    return loss, grads, params


@pytest.mark.parametrize("copy", [False, True], ids=["plain", "copy-head"])
def test_one_training_step_on_gpu_matches_cpu(cp, copy):
    from minireason.nn.model import GPTConfig

    config = GPTConfig(
        vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32, dtype="float32", copy=copy
    )
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 64, size=(3, 16))
    targets = rng.integers(0, 64, size=(3, 16))
    try:
        cpu = _train_step("cpu", config, idx, targets)
        gpu = _train_step("cuda", config, idx, targets)
    finally:
        backend.set_device("cpu")
    assert gpu[0] == pytest.approx(cpu[0], rel=RTOL, abs=ATOL)
    for name in cpu[1]:
        _close(gpu[1][name], cpu[1][name], f"grad {name}")
        _close(gpu[2][name], cpu[2][name], f"param {name} after AdamW")


def test_copy_head_generation_on_gpu_matches_cpu(cp):
    from minireason.nn.model import GPT, GPTConfig
    from minireason.reason.generate import generate

    config = GPTConfig(
        vocab_size=64, block_size=32, n_layer=2, n_head=2, n_embd=32, dtype="float64", copy=True
    )
    prompts = [[5, 9, 2, 17, 5], [3], [8, 1, 4, 4, 30, 12]]
    runs = []
    try:
        for device in ("cpu", "cuda"):
            backend.set_device(device)
            model = GPT(config).eval()
            gen = generate(model, prompts, max_new_tokens=8, temperature=0.9, rng=1, n_samples=2)
            runs.append(gen)
    finally:
        backend.set_device("cpu")
    cpu, gpu = runs
    assert gpu.tokens == cpu.tokens
    for a, b in zip(gpu.copied, cpu.copied, strict=True):
        _close(a, b, "copied share")
    assert [list(f) for f in gpu.copied_from] == [list(f) for f in cpu.copied_from]
