"""nn/threads and nn/memory: work split across threads gives the same numbers, bit for bit
(elementwise work and stacked products on any thread count; 2-D products on the same one)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from minireason.nn import threads
from minireason.nn.attention import attention_backward, attention_forward, masked_softmax
from minireason.nn.layers import (
    cross_entropy_backward,
    cross_entropy_forward,
    gelu_backward,
    gelu_forward,
    layernorm_backward,
    layernorm_forward,
)
from minireason.nn.memory import keep_freed_memory
from minireason.nn.optim import AdamW


@pytest.fixture
def two_threads():
    before = threads.set_threads(2)
    yield
    threads.set_threads(before)


def _with_threads(n, fn):
    before = threads.set_threads(n)
    try:
        return fn()
    finally:
        threads.set_threads(before)


def test_rowwise_splits_large_arrays_into_chunks_and_covers_every_row(two_threads):
    rows, cols = 1001, 257  # odd sizes: uneven blocks and a short last chunk
    x = np.arange(rows * cols, dtype=np.float64).reshape(rows, cols)
    out = np.zeros_like(x)
    calls = []

    def kernel(x, out):
        calls.append(x.shape[0])
        np.multiply(x, 2.0, out=out)

    threads.rowwise(kernel, x, out)
    assert np.array_equal(out, 2.0 * x)
    assert sum(calls) == rows and len(calls) > 2  # several chunks, no row twice
    assert max(calls) * cols <= 2 * threads.CHUNK_ELEMENTS


def test_rowwise_runs_small_arrays_and_one_thread_in_one_call():
    x = np.ones((4, 8), dtype=np.float32)
    calls = []
    threads.rowwise(lambda x: calls.append(x.shape), x)
    big = np.ones((1024, 1024), dtype=np.float32)
    _with_threads(1, lambda: threads.rowwise(lambda x: calls.append(x.shape), big))
    assert calls == [(4, 8), (1024, 1024)]


def test_an_error_in_a_chunk_is_raised_after_every_thread_has_stopped(two_threads):
    x = np.zeros((512, 512), dtype=np.float32)
    bad_rows = x[384:]
    done = []

    def kernel(x):
        if np.shares_memory(x, bad_rows):
            raise ArithmeticError("chunk failed")
        done.append(x.shape[0])

    with pytest.raises(ArithmeticError, match="chunk failed"):
        threads.rowwise(kernel, x)
    settled = list(done)
    assert sum(settled) == 384  # every other chunk was done; the failing ones were not
    time.sleep(0.05)
    assert done == settled  # and nothing still ran after the error reached us


def test_split_matmul_matches_numpy(two_threads):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((512, 300), dtype=np.float32)
    b = rng.standard_normal((300, 400), dtype=np.float32)
    np.testing.assert_allclose(threads.matmul(a, b), a @ b, rtol=1e-5, atol=1e-4)
    q = rng.standard_normal((4, 3, 128, 64), dtype=np.float32)
    k = rng.standard_normal((4, 3, 128, 64), dtype=np.float32)
    kt = k.swapaxes(-1, -2)
    np.testing.assert_allclose(threads.matmul(q, kt), q @ kt, rtol=1e-5, atol=1e-4)


def test_split_matmul_gives_the_same_bits_every_time_on_the_same_threads(two_threads):
    """Blocks go to whichever thread is free, so the thread behind each block changes from
    call to call; the result does not."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((1024, 256), dtype=np.float32)
    b = rng.standard_normal((256, 512), dtype=np.float32)
    first = threads.matmul(a, b)
    assert 2 * a.size * b.shape[1] >= threads.MIN_SPLIT_FLOPS  # it is split
    for _ in range(5):
        assert np.array_equal(threads.matmul(a, b), first)


def _layer_outputs():
    """Outputs of every layer that uses rowwise, on arrays large enough to be split."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((512, 1024), dtype=np.float32)
    d = rng.standard_normal((512, 1024), dtype=np.float32)
    w, b = rng.standard_normal(1024, dtype=np.float32), rng.standard_normal(1024, dtype=np.float32)
    out = {}
    y, cache = gelu_forward(x)
    out["gelu"] = [y, gelu_backward(d, cache)]
    y, cache = layernorm_forward(x, w, b)
    out["layernorm"] = [y, *layernorm_backward(d, cache)]
    targets = rng.integers(0, 1024, size=512)
    loss, cache = cross_entropy_forward(x, targets)
    out["cross-entropy"] = [loss, cross_entropy_backward(cache)]
    q, k, v = (rng.standard_normal((8, 4, 128, 32), dtype=np.float32) for _ in range(3))
    y, cache = attention_forward(q, k, v, is_causal=True)
    dout = rng.standard_normal(y.shape, dtype=np.float32)
    out["attention"] = [y, *attention_backward(dout, cache)[:3]]
    allowed = rng.random((8, 1, 128, 128)) < 0.5
    out["masked softmax"] = [masked_softmax(rng.standard_normal((8, 4, 128, 128)), allowed)]
    params = {"w": x.copy(), "b": b.copy()}
    opt = AdamW(params, lr=1e-2, decay={"w": True, "b": False})
    opt.step({"w": d, "b": w})
    opt.step({"w": x, "b": b})
    out["adamw"] = [params["w"], params["b"], opt.m["w"], opt.v["w"]]
    return out


def test_layers_give_the_same_bits_on_one_and_two_threads():
    one = _with_threads(1, _layer_outputs)
    two = _with_threads(2, _layer_outputs)
    assert one.keys() == two.keys()
    for name in one:
        for a, b in zip(one[name], two[name], strict=True):
            assert np.array_equal(a, b), name


def test_masked_softmax_empty_rows_stay_zero_when_split(two_threads):
    scores = np.random.default_rng(2).standard_normal((64, 4, 32, 64))
    allowed = np.ones(scores.shape, dtype=bool)
    allowed[3, 1, 5] = False  # one row with nothing allowed
    weights = masked_softmax(scores, allowed)
    assert np.all(weights[3, 1, 5] == 0)
    sums = weights.sum(axis=-1)
    sums[3, 1, 5] = 1.0
    np.testing.assert_allclose(sums, 1.0)


def test_keep_freed_memory_is_idempotent_and_reports_glibc():
    first = keep_freed_memory()
    assert keep_freed_memory() is first
    glibc = hasattr(os, "confstr") and os.confstr("CS_GNU_LIBC_VERSION") or ""
    assert first is glibc.startswith("glibc")


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_the_users_blas_threads_are_given_back_after_minireason_works(two_threads, monkeypatch):
    """BLAS runs on one thread while minireason works, and on the user's count after: a
    forward and backward, a generation, and nested and failing work."""
    from threadpoolctl import threadpool_limits

    from minireason.nn.model import GPT, GPTConfig
    from minireason.reason.generate import generate

    if not _blas_threads():
        pytest.skip("threadpoolctl finds no BLAS library in this process")
    inside = []
    split = threads._split_matmul

    def spy(a, b):
        if not inside:
            inside.extend(_blas_threads())
        return split(a, b)

    monkeypatch.setattr(threads, "_split_matmul", spy)
    model = GPT(GPTConfig(vocab_size=64, n_layer=1, n_head=2, n_embd=32, block_size=16))
    idx = np.random.default_rng(0).integers(0, 64, size=(2, 8))
    with threadpool_limits(limits=3, user_api="blas"):  # the user's own setting
        before = _blas_threads()
        model.forward(idx, idx)
        model.backward()
        assert _blas_threads() == before
        assert set(inside) == {1}, "BLAS was not on one thread inside minireason's work"
        generate(model, [[1, 2, 3]], max_new_tokens=4, temperature=0.0)
        assert _blas_threads() == before
        with threads.one_blas_thread:
            with threads.one_blas_thread:
                assert set(_blas_threads()) == {1}
            assert set(_blas_threads()) == {1}  # still inside the outer one
        with pytest.raises(ValueError):
            model.forward(idx[:, :0])  # refused inside the work: the limits are given back
        assert _blas_threads() == before
