"""`minireason bench train`: the FLOP count, the figures it reports and the JSON it writes.

Speeds are never asserted here (they belong to the benchmark itself); only that the figures
exist, are consistent with each other, and that the PyTorch twin computes the same loss.
"""

from __future__ import annotations

import json

import pytest

from minireason.bench.train import format_report, model_flops_per_step, run_train_benchmark
from minireason.cli import main
from minireason.nn.model import GPTConfig

TINY_FLAGS = [
    "--n-layer",
    "1",
    "--n-head",
    "2",
    "--n-embd",
    "16",
    "--block-size",
    "8",
    "--vocab-size",
    "32",
    "--batch-size",
    "2",
    "--steps",
    "2",
    "--warmup",
    "1",
]


def test_flop_count_by_hand():
    config = GPTConfig(vocab_size=10, block_size=4, n_layer=2, n_head=1, n_embd=3)
    tokens = 5 * 4
    per_token_forward = 2 * (2 * 12 * 9 + 10 * 3)  # every weight in a product, 2 FLOPs each
    attention_forward = 2 * (2 * 2 * 4 * 3)  # per layer: Q K^T and P V, each 2 T C per token
    assert model_flops_per_step(config, 5) == 3 * tokens * (per_token_forward + attention_forward)


def test_benchmark_figures_are_consistent_without_torch():
    config = GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16)
    r = run_train_benchmark(config, 2, steps=2, warmup=0, threads=1, with_torch=False)
    assert len(r["numpy_step_times_s"]) == 2 and r["numpy_step_s"] > 0
    assert r["numpy_tokens_per_s"] == pytest.approx(16 / r["numpy_step_s"])
    assert r["model_gflops"] == pytest.approx(r["model_gflop_per_step"] / r["numpy_step_s"])
    assert r["matmul_gflops"] > 0
    assert r["torch_tokens_per_s"] is None and r["ratio"] is None and "skipped" in r["torch_note"]
    assert r["config"]["batch_size"] == 2 and r["config"]["n_embd"] == 16


def test_cli_writes_json_with_torch_comparison(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "bench.json"
    assert main(["bench", "train", *TINY_FLAGS, "--threads", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ratio NumPy / PyTorch" in text and str(out) in text
    r = json.loads(out.read_text())
    for key in (
        "numpy_tokens_per_s",
        "torch_tokens_per_s",
        "ratio",
        "model_gflops",
        "matmul_gflops",
        "config",
        "machine",
        "torch_version",
    ):
        assert r[key] is not None, key
    assert r["ratio"] == pytest.approx(r["numpy_tokens_per_s"] / r["torch_tokens_per_s"])
    assert r["machine"]["numpy"] and r["machine"]["blas"] and r["torch_version"]
    assert r["threads"] == 1 and r["load_processes"] == 0
    for name in ("numpy", "torch"):
        sp = r[f"{name}_step_spread_s"]
        assert sp["min"] <= sp["p25"] <= sp["median"] <= sp["p75"] <= sp["max"] and sp["n"] == 2
    assert r["first_loss_numpy"] == pytest.approx(r["first_loss_torch"], rel=1e-5)  # same model


def test_cli_rejects_bad_flags(capsys):
    assert main(["bench", "train", *TINY_FLAGS, "--batch-size", "0"]) == 2
    err = capsys.readouterr().err
    assert "argument --batch-size: must be >= 1, got 0" in err and err.count("\n") == 1
    assert main(["bench", "train", *TINY_FLAGS, "--n-head", "3"]) == 1
    assert "divisible" in capsys.readouterr().err


def test_busy_load_starts_and_stops_its_processes():
    from minireason.bench.machine import busy_load

    with busy_load(2) as procs:
        assert len(procs) == 2 and all(p.poll() is None for p in procs)  # running
    assert all(p.poll() is not None for p in procs)  # and gone afterwards


def test_busy_processes_stop_when_the_benchmark_is_killed_outright():
    """SIGKILL skips every ``finally``: the busy processes notice their parent is gone."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import time\n"
        "from minireason.bench.machine import busy_load\n"
        "with busy_load(1) as procs:\n"
        "    print(procs[0].pid, flush=True)\n"
        "    time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    busy = int(parent.stdout.readline())
    os.kill(busy, 0)  # running
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(busy, 0)
        except ProcessLookupError:
            return  # gone (an exited orphan is reaped by init)
        with open(f"/proc/{busy}/stat") as stat:
            if stat.read().split(") ")[-1].startswith("Z"):
                return  # exited, waiting to be reaped
        time.sleep(0.05)
    os.kill(busy, signal.SIGKILL)
    raise AssertionError("the busy process outlived the killed benchmark by 10 s")


def test_benchmark_under_load_reports_it():
    config = GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16)
    r = run_train_benchmark(config, 2, steps=1, warmup=0, threads=1, with_torch=False, load=1)
    assert r["load_processes"] == 1 and "busy processes meanwhile: 1" in format_report(r)


def test_bench_generate_times_both_systems_on_the_same_work(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "gen.json"
    preset = tmp_path / "p.json"
    preset.write_text(
        json.dumps(
            {
                "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32},
                "pretrain": {"batch_size": 2, "block_size": 8},
                "finetune": {"batch_size": 2},
            }
        )
    )
    argv = [
        "bench",
        "generate",
        "--preset",
        str(preset),
        "--prompts",
        "3",
        "--prompt-len",
        "10",
        "--rounds",
        "2",
        "--candidates",
        "4",
        "--max-new-tokens",
        "5",
        "--threads",
        "1",
        "--json",
        str(out),
    ]
    assert main(argv) == 0
    assert "ratio NumPy / PyTorch: latency" in capsys.readouterr().out
    r = json.loads(out.read_text())
    for name in ("numpy", "torch"):
        s = r["systems"][name]
        assert s["one_s"]["n"] == 2 and s["batch_reasons_per_s"] > 0
    assert r["decoding"]["n_candidates"] == 4 and r["threads"] == 1
    assert r["ratio_throughput"] == pytest.approx(
        r["systems"]["numpy"]["batch_reasons_per_s"] / r["systems"]["torch"]["batch_reasons_per_s"]
    )


def test_torch_kv_cache_twin_matches_numpy_prefill_and_decode():
    torch = pytest.importorskip("torch")
    import numpy as np

    from minireason.nn.model import GPT
    from minireason.nn.torch_reference import build_torch_model
    from minireason.reason.generate import decode_step, prefill

    model = GPT(GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=16, seed=3))
    net = build_torch_model(model.eval())
    prompt = [3, 7, 9, 11, 2]
    first, cache = prefill(model, np.array([prompt]), np.array([len(prompt)]))
    caches = [[torch.zeros(1, 2, 32, 8), torch.zeros(1, 2, 32, 8)] for _ in range(2)]
    twin = net.logits_cached(torch.tensor([prompt]), caches)
    np.testing.assert_allclose(first.logits, twin.detach().numpy(), atol=1e-5)
    step = decode_step(model, np.array([4]), np.array([5]), cache)
    twin_step = net.logits_cached(torch.tensor([[4]]), caches, 5)
    np.testing.assert_allclose(step.logits, twin_step.detach().numpy(), atol=1e-5)


def test_scaling_gives_a_row_for_each_thread_count_and_plan():
    from minireason.bench.train import scaling_counts
    from minireason.nn.threads import SPLITTERS, cores

    assert scaling_counts(1) == [1] and scaling_counts(6) == [1, 2, 4, 6]
    assert scaling_counts(16) == [1, 2, 4, 8, 16]
    config = GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16)
    r = run_train_benchmark(config, 2, steps=1, warmup=0, threads=1, with_torch=False,
                            scaling=True)  # fmt: skip
    rows = {(row["splitter"], row["threads"]) for row in r["scaling"]}
    expected = {("pool", 1)} | {(s, n) for n in scaling_counts(cores())[1:] for s in SPLITTERS}
    assert rows == expected and all(row["step_s"]["n"] == 1 for row in r["scaling"])
    assert "scaling (NumPy step" in format_report(r) and r["plan"]["source"] == "forced"
    assert format_report(r).startswith("thread plan: pool x1")
