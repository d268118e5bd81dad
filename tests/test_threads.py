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
        with threads.blas_as_planned:
            with threads.blas_as_planned:
                assert set(_blas_threads()) == {1}
            assert set(_blas_threads()) == {1}  # still inside the outer one
        with pytest.raises(ValueError):
            model.forward(idx[:, :0])  # refused inside the work: the limits are given back
        assert _blas_threads() == before


# --------------------------------------------------------------------------- thread plans

PLAN_MODEL = dict(vocab_size=256, block_size=64, n_layer=1, n_head=2, n_embd=128)  # split


def _train_bits(plan, steps=3, stop_at=None, resume_dir=None, out=None):
    """Weights after ``steps`` training steps on ``plan`` (large enough products to split)."""
    from minireason.nn.model import GPT, GPTConfig
    from minireason.train.batches import TokenWindows
    from minireason.train.loop import TrainConfig, train

    stream = np.random.default_rng(3).integers(0, 256, 20_000)
    config = TrainConfig(max_steps=steps, warmup_steps=1, eval_interval=0, checkpoint_interval=0)
    model = GPT(GPTConfig(**PLAN_MODEL))
    with threads.using_plan(plan):
        if stop_at:
            train(model, TokenWindows(stream, 8, 64, seed=1), config, out, stop_at_step=stop_at,
                  progress=False)  # fmt: skip
            model = GPT(GPTConfig(**PLAN_MODEL))  # its weights come from the checkpoint
            train(model, TokenWindows(stream, 8, 64, seed=1), config, out, resume=True,
                  progress=False)  # fmt: skip
        else:
            train(model, TokenWindows(stream, 8, 64, seed=1), config, out, progress=False)
    return {k: v.copy() for k, v in model.params.items()}


@pytest.mark.parametrize("splitter", sorted(threads.SPLITTERS))
def test_the_same_plan_gives_the_same_bits_twice(splitter, tmp_path):
    plan = threads.ThreadPlan(splitter, 2, 40_000_000 if splitter == "mixed" else 0)
    first = _train_bits(plan, out=tmp_path / "a")
    second = _train_bits(plan, out=tmp_path / "b")
    for name in first:
        assert np.array_equal(first[name], second[name]), name


def test_resume_on_the_cached_plan_matches_a_straight_run(tmp_path, monkeypatch):
    from minireason.nn import calibrate
    from minireason.nn.model import GPTConfig

    monkeypatch.delenv("MINIREASON_THREADS", raising=False)
    monkeypatch.delenv("MINIREASON_PLAN", raising=False)
    monkeypatch.setenv("MINIREASON_PLAN_CACHE", str(tmp_path / "plans.json"))
    config = GPTConfig(**PLAN_MODEL)
    measured = calibrate.choose_plan(config, 8, 64)
    assert measured.source == "measured" and (tmp_path / "plans.json").is_file()
    straight = _train_bits(measured.plan, steps=4, out=tmp_path / "a")
    cached = calibrate.choose_plan(config, 8, 64)  # as a later process finds it
    assert cached.source == "cached" and cached.plan == measured.plan
    resumed = _train_bits(cached.plan, steps=4, stop_at=2, out=tmp_path / "b")
    for name in straight:
        assert np.array_equal(straight[name], resumed[name]), name


def test_forced_plans_skip_calibration(tmp_path, monkeypatch):
    from minireason.nn import calibrate
    from minireason.nn.model import GPTConfig

    monkeypatch.setenv("MINIREASON_PLAN_CACHE", str(tmp_path / "plans.json"))
    monkeypatch.setenv("MINIREASON_THREADS", "3")
    monkeypatch.setenv("MINIREASON_PLAN", "blas")
    choice = calibrate.choose_plan(GPTConfig(**PLAN_MODEL), 8, 64)
    assert choice.source == "forced" and choice.plan == threads.ThreadPlan("blas", 3)
    assert "forced" in choice.line() and not (tmp_path / "plans.json").exists()
    monkeypatch.setenv("MINIREASON_PLAN", "fastest")
    with pytest.raises(ValueError, match="MINIREASON_PLAN='fastest'"):
        threads.forced_plan()


def test_a_foreign_or_broken_cache_is_ignored_with_a_note_and_kept(tmp_path, monkeypatch):
    from minireason.nn import calibrate
    from minireason.nn.model import GPTConfig

    monkeypatch.delenv("MINIREASON_THREADS", raising=False)
    monkeypatch.delenv("MINIREASON_PLAN", raising=False)
    config = GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16)
    for text in ('{"format": "something else"}', "{not json", '"a string"'):
        path = tmp_path / "plans.json"
        path.write_text(text)
        monkeypatch.setenv("MINIREASON_PLAN_CACHE", str(path))
        choice = calibrate.choose_plan(config, 2, 8)
        assert choice.source == "measured" and "not a thread-plan cache" in choice.note
        assert "\n" not in choice.line() and path.read_text() == text  # not overwritten
    path.write_text('{"format": "minireason-thread-plans", "format_version": 1, '
                    '"plans": {"k": {"splitter": "nope"}}}')  # fmt: skip
    key = calibrate.cache_key(config, 2, 8)
    assert calibrate.cached_plan(calibrate.read_cache(path)[0], key) is None
    assert calibrate.choose_plan(config, 2, 8).source == "measured"  # and written anew
    assert calibrate.choose_plan(config, 2, 8).source == "cached"


def test_plan_candidates_and_their_names():
    from minireason.nn.calibrate import candidates

    assert candidates(1) == [threads.ThreadPlan("pool", 1)]
    assert [str(p) for p in candidates(2, largest_flops=10)] == ["pool x2", "blas x2"]
    assert len(candidates(16, largest_flops=10**12)) == 6  # 3 splitters on 16 and 8 threads
    with pytest.raises(ValueError):
        threads.ThreadPlan("pool", 2, blas_flops=5)
    before = threads.set_plan(threads.ThreadPlan.of("blas", 2))
    try:
        assert threads.set_threads(3) == 2 and threads.plan() == threads.ThreadPlan("blas", 3)
    finally:
        threads.set_plan(before)
