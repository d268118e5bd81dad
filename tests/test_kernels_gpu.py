"""The CUDA kernels against the NumPy reference, on the GPU (skipped, with the reason, without one).

Kernels 1-5 (attention) and 6-9 (fused LayerNorm, GELU, cross-entropy, AdamW) one by one; then
the model's GPU path (``--attention cublas|flash|auto``, ``--fused``): one training step's
gradients against NumPy's, and a short training run whose losses follow the CPU run's.

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
def test_flash_forward_5_matches_reference(cp, ca, shape, is_causal):
    """Kernel 5 (double-buffered, 16 rows a warp), and kernel 4 fed its out and lse."""
    lead, tq, tk, d = shape
    q, k, v = _inputs(lead, tq, tk, d, seed=tq * 3 + tk)
    dout = np.random.default_rng(12).standard_normal((*lead, tq, d)).astype(np.float32)
    ref, cache = attention_forward(*(a.astype(np.float64) for a in (q, k, v)), is_causal=is_causal)
    ref_grads = attention_backward(dout.astype(np.float64), cache)[:3]
    gq, gk, gv = (cp.asarray(a) for a in (q, k, v))
    out, lse = _nan(cp, q.shape), _nan(cp, q.shape[:-1])
    got = ca.attention_forward5_flash(gq, gk, gv, is_causal=is_causal, out=out, lse=lse)
    assert got[0] is out and got[1] is lse
    what = f"{shape} causal={is_causal}"
    _close(cp.asnumpy(out), ref, f"kernel 5 out {what}")
    _, lse3 = ca.attention_forward3_flash(gq, gk, gv, is_causal=is_causal)
    _close(cp.asnumpy(lse), cp.asnumpy(lse3).astype(np.float64), f"kernel 5 lse {what}")
    grads = ca.attention_backward4_flash(
        cp.asarray(dout), gq, gk, gv, out, lse, is_causal=is_causal
    )
    for name, g, r in zip(("dq", "dk", "dv"), grads, ref_grads):
        _close(cp.asnumpy(g), r, f"kernel 4 after 5 {name} {what}")


def test_flash_forward_5_unaligned_inputs_take_4_byte_copies(cp, ca):
    """A view one float into a buffer is not 16-byte aligned: kernel 5 copies single floats."""
    q, k, v = _inputs((2,), 70, 70, 32, seed=4)
    ref, _ = attention_forward(*(a.astype(np.float64) for a in (q, k, v)), is_causal=True)
    flat = [cp.asarray(np.concatenate([[0.0], a.ravel()]).astype(np.float32)) for a in (q, k, v)]
    views = [f[1:].reshape(q.shape) for f in flat]
    out, _ = ca.attention_forward5_flash(*views, is_causal=True)
    _close(cp.asnumpy(out), ref, "kernel 5, 4-byte copies")


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


# --------------------------------------------------------------------------- fused kernels 6-9

# (N, C): a row shorter than a warp, ragged widths, more rows than one dwdb block (256)
FUSED_SHAPES = [(1, 5), (37, 100), (600, 256), (2048, 1024)]


@pytest.fixture(scope="module")
def cf():
    from minireason.gpu import cuda_fused

    return cuda_fused


@pytest.mark.parametrize("shape", FUSED_SHAPES)
def test_layernorm_6_matches_the_layer(cp, cf, shape):
    from minireason.nn.layers import layernorm_backward, layernorm_forward

    rng = np.random.default_rng(shape[0])
    x, dout = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    x += 1.5
    w, b = (rng.standard_normal(shape[1]).astype(np.float32) for _ in range(2))
    ref, cache = layernorm_forward(*(a.astype(np.float64) for a in (x, w, b)))
    out, mean, rstd = cf.layernorm_forward6(*(cp.asarray(a) for a in (x, w, b)))
    _close(cp.asnumpy(out), ref, f"layernorm_forward6 {shape}")
    _close(cp.asnumpy(rstd), cache.rstd[:, 0], f"layernorm_forward6 rstd {shape}")
    grads = cf.layernorm_backward6(cp.asarray(dout), cp.asarray(x), cp.asarray(w), mean, rstd)
    ref_grads = layernorm_backward(dout.astype(np.float64), cache)
    for name, g, r in zip(("dx", "dw", "db"), grads, ref_grads):
        tol = 1e-4 * max(1.0, shape[0] / 256)  # dw, db: float32 sums over N rows
        np.testing.assert_allclose(cp.asnumpy(g), r, rtol=tol, atol=tol, err_msg=f"{name} {shape}")


@pytest.mark.parametrize("shape", FUSED_SHAPES + [(3, 5, 7)])
def test_gelu_7_matches_the_layer(cp, cf, shape):
    from minireason.nn.layers import gelu_backward, gelu_forward

    rng = np.random.default_rng(sum(shape))
    x, dout = ((rng.standard_normal(shape) * 3).astype(np.float32) for _ in range(2))
    ref, cache = gelu_forward(x.astype(np.float64))
    _close(cp.asnumpy(cf.gelu_forward7(cp.asarray(x))), ref, f"gelu_forward7 {shape}")
    got = cf.gelu_backward7(cp.asarray(dout), cp.asarray(x))
    _close(
        cp.asnumpy(got), gelu_backward(dout.astype(np.float64), cache), f"gelu_backward7 {shape}"
    )


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("shape", [(1, 3), (37, 257), (2048, 4096)])
def test_cross_entropy_8_matches_the_layer(cp, cf, shape, masked):
    from minireason.nn.layers import cross_entropy_backward, cross_entropy_forward, token_weights

    n, v = shape
    rng = np.random.default_rng(n + v)
    logits = (rng.standard_normal(shape) * 8).astype(np.float32)
    targets = rng.integers(0, v, n)
    mask = None
    if masked:
        mask = (rng.random(n) < 0.5).astype(np.int64)
        mask[0] = 1
    ref_loss, cache = cross_entropy_forward(logits.astype(np.float64), targets, mask)
    g_logits = cp.asarray(logits)
    lse, nll = cf.cross_entropy_forward8(g_logits, cp.asarray(targets))
    weights = token_weights(cp, None if mask is None else cp.asarray(mask), n, np.float32)
    assert float((nll * weights).sum()) == pytest.approx(ref_loss, rel=1e-5, abs=1e-5)
    _close(cp.asnumpy(nll), cache.nll, f"nll {shape}")
    d = cf.cross_entropy_backward8(g_logits, cp.asarray(targets), weights, lse)
    _close(cp.asnumpy(d), cross_entropy_backward(cache), f"dlogits {shape}")
    _close(cp.asnumpy(g_logits), logits.astype(np.float64), "the logits are left as they were")


@pytest.mark.parametrize("decay", [1.0, 0.9997])
@pytest.mark.parametrize("n", [1, 1000, 256 * 4096 + 77])  # the last: two grid-stride passes
def test_adamw_9_matches_the_optimizer(cp, cf, n, decay):
    from minireason.nn.optim import adamw_update

    rng = np.random.default_rng(n)
    p, m = (rng.standard_normal(n).astype(np.float32) for _ in range(2))
    v = rng.random(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    hyper = dict(b1=0.9, b2=0.95, decay=decay, v_correction=4.47, eps=1e-8, step_size=0.01)
    gp, gg, gm, gv = (cp.asarray(a) for a in (p, g, m, v))
    cf.adamw_update9(gp, gg, gm, gv, **hyper)
    adamw_update(p, g, m, v, **hyper)
    for name, got, ref in (("p", gp, p), ("m", gm, m), ("v", gv, v)):
        np.testing.assert_allclose(cp.asnumpy(got), ref, rtol=1e-6, atol=1e-6, err_msg=name)


# --------------------------------------------------------------------------- the model on the GPU


@pytest.fixture
def gpu_kernels():
    """Install the model's CUDA kernels with (attention, fused) for a test, as the CLI does
    for --device cuda; none, the defaults and the CPU after."""
    from minireason.gpu import model_kernels

    yield model_kernels.install
    model_kernels.install()
    backend.use_gpu_kernels(None)
    backend.set_device("cpu")


KERNEL_CHOICES = [("cublas", False), ("flash", False), ("flash", True), ("cublas", True)]
KERNEL_IDS = ["cublas", "flash", "flash+fused", "cublas+fused"]


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


@pytest.mark.parametrize("kernels", KERNEL_CHOICES, ids=KERNEL_IDS)
@pytest.mark.parametrize("copy", [False, True], ids=["plain", "copy-head"])
def test_one_training_step_on_gpu_matches_cpu(cp, copy, kernels, gpu_kernels):
    """Loss, every gradient (flash attention's and the fused kernels' included) and the
    parameters after AdamW (kernel 9 with --fused), against the same step in NumPy."""
    from minireason.nn.model import GPTConfig

    config = GPTConfig(
        vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32, dtype="float32", copy=copy
    )
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 64, size=(3, 16))
    targets = rng.integers(0, 64, size=(3, 16))
    gpu_kernels(*kernels)
    cpu = _train_step("cpu", config, idx, targets)
    gpu = _train_step("cuda", config, idx, targets)
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


def _short_run(device, steps, tmp_path):
    """Per-step training losses of ``steps`` AdamW steps (warm-up, cosine, clipping: the
    package's loop) of a small GPT on a token stream with structure to learn."""
    from minireason.nn.model import GPT, GPTConfig
    from minireason.train.batches import TokenWindows
    from minireason.train.loop import TrainConfig, train

    backend.set_device(device)
    stream = np.tile(np.random.default_rng(3).integers(0, 96, size=500), 8)  # repeats: learnable
    config = GPTConfig(vocab_size=96, block_size=64, n_layer=2, n_head=4, n_embd=64)
    train_config = TrainConfig(
        max_steps=steps, learning_rate=3e-3, warmup_steps=5, eval_interval=0, checkpoint_interval=0
    )
    result = train(
        GPT(config),
        TokenWindows(stream, 8, 64, seed=1),
        train_config,
        tmp_path / device,
        progress=False,
    )
    return np.array([loss for _, loss in result.train_losses])


@pytest.mark.parametrize(
    "kernels", [("flash", False), ("flash", True)], ids=["flash", "flash+fused"]
)
def test_short_training_run_with_flash_follows_the_cpu_run(cp, tmp_path, kernels, gpu_kernels):
    """60 steps with --attention flash (and --fused) on the GPU: the loss falls as on the CPU
    and stays within 1% of it at every step (float32 rounding differs between the devices)."""
    gpu_kernels(*kernels)
    cpu = _short_run("cpu", 60, tmp_path)
    gpu = _short_run("cuda", 60, tmp_path)
    assert cpu[-1] < 0.8 * cpu[0]  # it learned something
    np.testing.assert_allclose(gpu, cpu, rtol=1e-2)


def test_attention_auto_probes_each_shape_once(cp, gpu_kernels):
    """--attention auto times both paths on the first batch of a shape, keeps the faster,
    and does not time that shape (T rounded up to 32) again."""
    from minireason.gpu import model_kernels
    from minireason.nn.model import GPT, GPTConfig

    gpu_kernels("auto")
    backend.set_device("cuda")
    model_kernels._PROBES.clear()
    model = GPT(GPTConfig(vocab_size=64, block_size=64, n_layer=1, n_head=2, n_embd=32))
    for t in (40, 60, 64, 20):  # buckets 64, 64, 64, 32
        idx = cp.asarray(np.random.default_rng(t).integers(0, 64, size=(2, t)))
        model.forward(idx, idx)
        model.backward()
    probes = model_kernels.attention_probes()
    assert [p["shape"] for p in probes] == [(2, 2, 64, 16), (2, 2, 32, 16)]
    for p in probes:
        assert p["error"] is None and p["choice"] in ("cublas", "flash")
        assert p["cublas_ms"] > 0 and p["flash_ms"] > 0
    model.forward(idx)  # no targets: the weights are formed (cuBLAS), whatever auto chose
    assert all(w is not None for w in model.attention_weights())


def test_flash_refuses_a_float64_model(cp, gpu_kernels):
    from minireason.nn.model import GPT, GPTConfig

    backend.set_device("cuda")
    model = GPT(
        GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16, dtype="float64")
    )
    idx = cp.zeros((1, 8), dtype=cp.int64)
    gpu_kernels("flash")
    with pytest.raises(ValueError, match="--attention flash: the flash kernels compute in float32"):
        model.forward(idx, idx)
    gpu_kernels("auto")
    model.forward(idx, idx)  # auto: cuBLAS, no probe
