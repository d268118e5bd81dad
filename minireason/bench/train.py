"""``minireason bench train``: how fast is one full training step of the NumPy GPT?

Measures, at a given model config and batch size:

- the median wall time of a full step (forward + backward + AdamW) -> tokens/s, and the
  achieved GFLOP/s from the standard model-FLOP count (below);
- the machine's float32 matmul rate (median of 2048^3 products), so the model's rate can be
  read as a fraction of what BLAS can do here;
- when PyTorch is importable, the same model in PyTorch eager (same weights, same inputs,
  same AdamW settings, same number of threads), and the ratio NumPy / PyTorch.

Model FLOPs per step (PaLM appendix B; backward = 2 x forward)::

    6 * N_matmul * tokens + 12 * n_layer * T * C * tokens

with ``N_matmul = n_layer * 12 C^2 + V C`` the weights that enter matrix products (the tied
LM head counted once as a product) and the second term the two attention products
``Q K^T`` and ``P V`` over the full ``T x T`` square. Elementwise work is not counted.

The CLI's defaults are the reference config: ``GPTConfig``'s defaults (n_layer 4, n_head 4,
n_embd 256, block_size 128, vocab_size 4096, float32) and batch :data:`REFERENCE_BATCH`. PyTorch is only a reference here; it is never needed at
run time by the rest of the package.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict

import numpy as np

from minireason.bench.threads import numpy_threads, set_numpy_threads
from minireason.nn.model import GPT, GPTConfig
from minireason.nn.optim import AdamW
from minireason.nn.torch_reference import build_torch_model

REFERENCE_BATCH = 16  # the reference config: GPTConfig's defaults and this batch

# --------------------------------------------------------------------------- counting


def model_flops_per_step(config: GPTConfig, batch_size: int) -> float:
    """Model FLOPs of one training step (forward + backward), see the module docstring."""
    C, L, T, V = config.n_embd, config.n_layer, config.block_size, config.vocab_size
    tokens = batch_size * T
    n_matmul = L * 12 * C * C + V * C
    return float(6 * n_matmul * tokens + 12 * L * T * C * tokens)


def matmul_stepper(n: int = 2048):
    """A function that does one float32 ``(n, n) @ (n, n)`` product; and its FLOP count."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    return (lambda: np.matmul(a, b, out=out)), 2.0 * n**3


# --------------------------------------------------------------------------- NumPy step


def _inputs(config: GPTConfig, batch_size: int, seed: int):
    rng = np.random.default_rng(seed)
    shape = (batch_size, config.block_size)
    return rng.integers(0, config.vocab_size, shape), rng.integers(0, config.vocab_size, shape)


def numpy_stepper(model: GPT, idx, targets):
    """A function doing one full NumPy training step (forward, backward, AdamW) -> loss."""
    optimizer = AdamW(model.params, lr=1e-4, decay=model.decay_mask())

    def step():
        _, loss = model.forward(idx, targets)
        optimizer.step(model.backward())
        return loss

    return step


# --------------------------------------------------------------------------- PyTorch step


def torch_stepper(model: GPT, idx, targets):
    """Like :func:`numpy_stepper` for the PyTorch twin of ``model`` (same weights and inputs)."""
    import torch

    net = build_torch_model(model)
    decay = [
        p for n, p in net.named_parameters() if p.ndim == 2 and not n.startswith(("wte", "wpe"))
    ]
    no_decay = [
        p
        for n, p in net.named_parameters()
        if not (p.ndim == 2 and not n.startswith(("wte", "wpe")))
    ]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-4,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    ti, tt = torch.from_numpy(idx), torch.from_numpy(targets)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = net(ti, tt)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def time_interleaved(steppers: dict, steps: int, warmup: int):
    """Run the steppers in turn, round after round, so that all of them see the same machine
    load; return ``{name: [seconds per timed round]}`` and ``{name: first return value}``."""
    times = {name: [] for name in steppers}
    first = {}
    for i in range(warmup + steps):
        for name, step in steppers.items():
            t0 = time.perf_counter()
            value = step()
            dt = time.perf_counter() - t0
            first.setdefault(name, value)
            if i >= warmup:
                times[name].append(dt)
    return times, first


# --------------------------------------------------------------------------- the benchmark


def run_train_benchmark(
    config: GPTConfig,
    batch_size: int,
    steps: int = 10,
    warmup: int = 2,
    threads: int | None = None,
    with_torch: bool = True,
    seed: int = 0,
) -> dict:
    """Run the benchmark; return the figures as a JSON-ready dict (see :func:`format_report`).

    NumPy, PyTorch and the reference matmul run in turn, round after round, in one process and
    on the same number of threads (so machine load hits all three alike); PyTorch gets the
    same weights and inputs. The result includes ``first_loss_numpy`` / ``first_loss_torch``:
    equal to a few decimals, they show the two models compute the same thing.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"--steps must be >= 1 and --warmup >= 0, got {steps} and {warmup}")
    threads = threads or os.cpu_count() or 1
    before = numpy_threads()
    try:
        return _run(config, batch_size, steps, warmup, threads, with_torch, seed)
    finally:  # leave the process's thread settings as they were
        if before is not None:
            set_numpy_threads(before)


def _run(config, batch_size, steps, warmup, threads, with_torch, seed) -> dict:
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    blas_threads = set_numpy_threads(threads)
    idx, targets = _inputs(config, batch_size, seed)
    model = GPT(config)
    tokens = batch_size * config.block_size
    flops = model_flops_per_step(config, batch_size)
    matmul, matmul_flops = matmul_stepper()
    steppers = {"matmul": matmul, "numpy": numpy_stepper(model, idx, targets)}
    versions = {"python": platform.python_version(), "numpy": np.__version__, "torch": None}
    torch, torch_note = None, None
    if with_torch:
        try:
            import torch
        except ImportError as exc:
            torch_note = f"PyTorch not importable ({exc}); no comparison"
    else:
        torch_note = "comparison skipped (--no-torch)"
    if torch is not None:
        versions["torch"] = torch.__version__
        torch_threads_before = torch.get_num_threads()
        torch.set_num_threads(threads)
        steppers["torch"] = torch_stepper(GPT(config), idx, targets)
    try:
        times, first = time_interleaved(steppers, steps, warmup)
    finally:
        if torch is not None:
            torch.set_num_threads(torch_threads_before)
    np_step = statistics.median(times["numpy"])
    result = {
        "config": {**asdict(config), "batch_size": batch_size},
        "steps": steps,
        "warmup": warmup,
        "threads": threads,
        "numpy_blas_threads": blas_threads,
        "num_params": model.num_params(),
        "model_gflop_per_step": flops / 1e9,
        "matmul_gflops": matmul_flops / statistics.median(times["matmul"]) / 1e9,
        "numpy_step_s": np_step,
        "numpy_step_times_s": times["numpy"],
        "numpy_tokens_per_s": tokens / np_step,
        "model_gflops": flops / np_step / 1e9,
        "first_loss_numpy": first["numpy"],
        "torch_tokens_per_s": None,
        "ratio": None,
        "torch_note": torch_note,
    }
    result["fraction_of_matmul"] = result["model_gflops"] / result["matmul_gflops"]
    if torch is not None:
        t_step = statistics.median(times["torch"])
        result.update(
            {
                "torch_step_s": t_step,
                "torch_step_times_s": times["torch"],
                "torch_tokens_per_s": tokens / t_step,
                "torch_gflops": flops / t_step / 1e9,
                "first_loss_torch": first["torch"],
                "ratio": t_step / np_step,
            }
        )
    result["versions"] = versions
    result["machine"] = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        # 1-minute load average before and after: a busy machine makes every figure noisy
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    result["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return result


def format_report(r: dict) -> str:
    """The benchmark's result as a few readable lines."""
    c = r["config"]
    lines = [
        f"config: n_layer {c['n_layer']}, n_head {c['n_head']}, n_embd {c['n_embd']}, "
        f"block_size {c['block_size']}, vocab_size {c['vocab_size']}, batch {c['batch_size']}, "
        f"{c['dtype']}; {r['num_params']:,} parameters",
        f"threads: {r['threads']} (NumPy BLAS reports {r['numpy_blas_threads']}); "
        f"median of {r['steps']} steps after {r['warmup']} warm-up; "
        f"load average {r['machine']['load_average_before']} -> "
        f"{r['machine']['load_average_after']} on {r['machine']['cpu_count']} cores",
        f"matmul float32:   {r['matmul_gflops']:8.1f} GFLOP/s (measured, 2048^3, interleaved)",
        f"model FLOPs:      {r['model_gflop_per_step']:8.2f} GFLOP per step",
        f"NumPy step:       {r['numpy_step_s'] * 1e3:8.1f} ms  "
        f"{r['numpy_tokens_per_s']:9,.0f} tokens/s  {r['model_gflops']:7.1f} GFLOP/s "
        f"({100 * r['fraction_of_matmul']:.0f}% of matmul)",
    ]
    if r["torch_tokens_per_s"] is not None:
        lines.append(
            f"PyTorch eager:    {r['torch_step_s'] * 1e3:8.1f} ms  "
            f"{r['torch_tokens_per_s']:9,.0f} tokens/s  {r['torch_gflops']:7.1f} GFLOP/s "
            f"(torch {r['versions']['torch']})"
        )
        lines.append(
            f"ratio NumPy / PyTorch: {r['ratio']:.2f}  "
            f"(first-step loss {r['first_loss_numpy']:.5f} vs {r['first_loss_torch']:.5f})"
        )
    else:
        lines.append(r["torch_note"])
    return "\n".join(lines)
