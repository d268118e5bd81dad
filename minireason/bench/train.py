"""``minireason bench train``: how fast is one full training step of the NumPy GPT?

Measures, at a given model config and batch size:

- the median wall time of a full step (forward + backward + AdamW) -> tokens/s, and the
  achieved GFLOP/s from the standard model-FLOP count (below);
- the machine's float32 matmul rate (median of 2048^3 products, the better of OpenBLAS's own
  threads and :func:`minireason.nn.threads.matmul`), so the model's rate can be read as a
  fraction of what the machine can do;
- when PyTorch is importable, the same model in PyTorch eager (same weights, same inputs,
  same AdamW settings, same number of threads), and the ratio NumPy / PyTorch;
- with ``load`` > 0, all of it while that many CPU-bound processes share the machine
  (:func:`minireason.bench.machine.busy_load`): the ratio on a busy machine, measured;
- with ``scaling``, the NumPy step on 1, 2, 4, ... threads up to the cores available
  (:func:`scaling_counts`), under each splitter of :data:`minireason.nn.threads.SPLITTERS`.

NumPy runs on the thread plan measured for this machine and shape
(:mod:`minireason.nn.calibrate`; measured now when none is cached), or the one
``--threads`` / ``--plan`` force; the report's first lines say which.

Every system is timed in turn, round after round (so load hits them alike); the report gives
the median and the spread (quartiles) of each.

Model FLOPs per step (PaLM appendix B; backward = 2 x forward)::

    6 * N_matmul * tokens + 12 * n_layer * T * C * tokens

with ``N_matmul = n_layer * 12 C^2 + V C`` the weights that enter matrix products (the tied
LM head counted once as a product) and the second term the two attention products
``Q K^T`` and ``P V`` over the full ``T x T`` square. Elementwise work is not counted.

The CLI's defaults are the reference config: ``GPTConfig``'s defaults (n_layer 4, n_head 4,
n_embd 256, block_size 128, vocab_size 4096, float32) and batch :data:`REFERENCE_BATCH`.
PyTorch is only a reference here; the package never needs it.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from minireason.bench.machine import (
    busy_load,
    json_option,
    load_option,
    machine_info,
    plan_option,
    spread,
    threads_option,
    time_interleaved,
    use_plan,
)
from minireason.nn.model import DTYPES, GPT, GPTConfig
from minireason.nn.optim import AdamW
from minireason.nn.threads import ThreadPlan
from minireason.nn.torch_reference import build_torch_model
from minireason.options import check_values, option

REFERENCE_BATCH = 16  # the reference config: GPTConfig's defaults and this batch


@dataclass
class ModelShapeOptions:
    """The model's shape (GPTConfig's defaults), the batch and the dtype: the options of
    ``bench train`` and ``bench calibrate`` alike."""

    n_layer: int = option(GPTConfig.n_layer, min=1, help="transformer blocks")
    n_head: int = option(GPTConfig.n_head, min=1, help="attention heads per block")
    n_embd: int = option(GPTConfig.n_embd, min=1, help="embedding width, a multiple of --n-head")
    block_size: int = option(GPTConfig.block_size, min=1, help="tokens per sequence")
    vocab_size: int = option(GPTConfig.vocab_size, min=1, help="vocabulary size")
    batch_size: int = option(REFERENCE_BATCH, min=1, help="sequences per step")
    dtype: str = option(GPTConfig.dtype, choices=DTYPES, help="array dtype")

    def model_config(self) -> GPTConfig:
        """The model of these options (GPTConfig checks the shape)."""
        shape = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")
        return GPTConfig(**{name: getattr(self, name) for name in shape}, dtype=self.dtype)


@dataclass
class BenchTrainConfig(ModelShapeOptions):
    """The options of ``minireason bench train``: the model's shape (:class:`ModelShapeOptions`),
    the batch, and the timing."""

    description: ClassVar[str] = (  # its --help
        "One training step (forward, backward, AdamW) of the NumPy GPT, the machine's float32 "
        "matmul rate, and the same model in PyTorch eager on the same threads and inputs."
    )

    steps: int = option(10, min=1, help="timed steps")
    warmup: int = option(2, min=0, help="untimed steps first")
    threads: int | None = threads_option()
    plan: str | None = plan_option()
    load: int = load_option()
    no_torch: bool = option(False, help="skip the PyTorch comparison")
    scaling: bool = option(False, help="also time the NumPy step on 1, 2, 4, ... threads")
    json: str | None = json_option()


# --------------------------------------------------------------------------- counting


def model_flops_per_step(config: GPTConfig, batch_size: int) -> float:
    """Model FLOPs of one training step (forward + backward), see the module docstring."""
    C, L, T, V = config.n_embd, config.n_layer, config.block_size, config.vocab_size
    tokens = batch_size * T
    n_matmul = L * 12 * C * C + V * C
    return float(6 * n_matmul * tokens + 12 * L * T * C * tokens)


def scaling_counts(n: int) -> list[int]:
    """The thread counts of ``--scaling`` on ``n`` cores: 1, 2, 4, ... and ``n``."""
    counts = [1]
    while counts[-1] * 2 < n:
        counts.append(counts[-1] * 2)
    return counts + [n] if n > 1 else counts


def matmul_steppers(n: int = 2048) -> tuple[dict, float]:
    """``{name: one float32 (n, n) @ (n, n) product}`` two ways: OpenBLAS's own threads, and
    minireason's split (:func:`minireason.nn.threads.matmul`); and the product's FLOP count."""
    from threadpoolctl import threadpool_limits

    from minireason.nn.threads import matmul, threads

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)

    def openblas_threads():
        with threadpool_limits(limits=threads(), user_api="blas"):
            np.matmul(a, b, out=out)

    return {"matmul_blas": openblas_threads, "matmul_split": lambda: matmul(a, b)}, 2.0 * n**3


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


# --------------------------------------------------------------------------- the benchmark


def run_train_benchmark(
    config: GPTConfig,
    batch_size: int,
    steps: int = BenchTrainConfig.steps,
    warmup: int = BenchTrainConfig.warmup,
    threads: int | None = BenchTrainConfig.threads,
    with_torch: bool = True,
    seed: int = 0,
    load: int = BenchTrainConfig.load,
    plan: str | None = BenchTrainConfig.plan,
    scaling: bool = BenchTrainConfig.scaling,
) -> dict:
    """Run the benchmark; return the figures as a JSON-ready dict (see :func:`format_report`).

    NumPy, PyTorch and the reference matmuls run in turn, round after round, in one process
    and on the same number of threads; PyTorch gets the same weights and inputs. ``load``:
    CPU-bound processes kept busy meanwhile. The result includes ``first_loss_numpy`` /
    ``first_loss_torch``: equal to a few decimals, they show the two compute the same thing.
    ``threads`` and ``plan`` force the thread plan (else the measured one, chosen under the
    same load); ``scaling`` adds the rows of :func:`scaling_rows` (``"scaling"``).
    """
    from minireason.nn.threads import using_plan

    check_values(
        BenchTrainConfig, batch_size=batch_size, steps=steps, warmup=warmup, load=load, plan=plan
    )
    with busy_load(load):
        choice = use_plan(config, batch_size, config.block_size, threads, plan)
        with using_plan(choice.plan):  # the process's plan is given back after
            result = _run(
                config, batch_size, steps, warmup, choice.plan.threads, with_torch, seed, load
            )
            result["plan"] = choice.to_dict()
            result["plan_line"] = choice.line()
            if scaling:
                result["scaling"] = scaling_rows(config, batch_size, steps, warmup, seed)
    return result


def scaling_rows(config: GPTConfig, batch_size: int, steps: int, warmup: int, seed: int = 0):
    """The NumPy step on each of :func:`scaling_counts` threads under each splitter (one
    plan on one thread): ``[{splitter, threads, blas_flops, step_s (spread), tokens_per_s,
    speedup}]``, the speed-up against the pool on one thread. All plans take turns, round
    after round."""
    from minireason.nn.calibrate import SETTLE_S
    from minireason.nn.threads import SPLITTERS, ThreadPlan, cores, using_plan

    plans = [
        ThreadPlan.of(s, n)
        for n in scaling_counts(cores())
        for s in SPLITTERS
        if n > 1 or s == "pool"
    ]
    idx, targets = _inputs(config, batch_size, seed)
    step = numpy_stepper(GPT(config), idx, targets)

    def stepper(p):
        def planned():
            with using_plan(p):
                return step()

        return planned

    steppers = {str(p): stepper(p) for p in plans}
    times, _ = time_interleaved(steppers, steps, warmup, settle_s=SETTLE_S)
    base = statistics.median(times[str(plans[0])])
    rows = []
    for p in plans:
        median = statistics.median(times[str(p)])
        rows.append(
            {
                **p.to_dict(),
                "step_s": spread(times[str(p)]),
                "tokens_per_s": batch_size * config.block_size / median,
                "speedup": base / median,
            }
        )
    return rows


def _run(config, batch_size, steps, warmup, threads, with_torch, seed, load) -> dict:
    machine_before = machine_info()
    idx, targets = _inputs(config, batch_size, seed)
    model = GPT(config)
    tokens = batch_size * config.block_size
    flops = model_flops_per_step(config, batch_size)
    steppers, matmul_flops = matmul_steppers()
    steppers["numpy"] = numpy_stepper(model, idx, targets)
    torch, torch_note = None, None
    if with_torch:
        try:
            import torch
        except ImportError as exc:
            torch_note = f"PyTorch not importable ({exc}); no comparison"
    else:
        torch_note = "comparison skipped (--no-torch)"
    if torch is not None:
        torch_threads_before = torch.get_num_threads()
        torch.set_num_threads(threads)
        steppers["torch"] = torch_stepper(GPT(config), idx, targets)
    try:
        times, first = time_interleaved(steppers, steps, warmup)
    finally:
        if torch is not None:
            torch.set_num_threads(torch_threads_before)
    np_step = statistics.median(times["numpy"])
    matmul_rates = {
        k: matmul_flops / statistics.median(times[k]) / 1e9 for k in ("matmul_blas", "matmul_split")
    }
    result = {
        "config": {**asdict(config), "batch_size": batch_size},
        "steps": steps,
        "warmup": warmup,
        "threads": threads,
        "load_processes": load,
        "num_params": model.num_params(),
        "model_gflop_per_step": flops / 1e9,
        "matmul_gflops": max(matmul_rates.values()),
        "matmul_gflops_by_method": matmul_rates,
        "numpy_step_s": np_step,
        "numpy_step_spread_s": spread(times["numpy"]),
        "numpy_step_times_s": times["numpy"],
        "numpy_tokens_per_s": tokens / np_step,
        "model_gflops": flops / np_step / 1e9,
        "first_loss_numpy": first["numpy"],
        "torch_tokens_per_s": None,
        "ratio": None,
        "torch_note": torch_note,
        "torch_version": None if torch is None else torch.__version__,
    }
    result["fraction_of_matmul"] = result["model_gflops"] / result["matmul_gflops"]
    if torch is not None:
        t_step = statistics.median(times["torch"])
        result.update(
            {
                "torch_step_s": t_step,
                "torch_step_spread_s": spread(times["torch"]),
                "torch_step_times_s": times["torch"],
                "torch_tokens_per_s": tokens / t_step,
                "torch_gflops": flops / t_step / 1e9,
                "first_loss_torch": first["torch"],
                "ratio": t_step / np_step,
                "ratio_by_round": [
                    t / n for t, n in zip(times["torch"], times["numpy"], strict=True)
                ],
            }
        )
    result["machine"] = {**machine_before, "load_average_after": machine_info()["load_average"]}
    return result


def format_report(r: dict) -> str:
    """The benchmark's result as a few readable lines."""
    c, m = r["config"], r["machine"]

    def timing(name: str) -> str:
        sp = r[f"{name}_step_spread_s"]
        return (
            f"{sp['median'] * 1e3:8.1f} ms (quartiles {sp['p25'] * 1e3:.0f}-{sp['p75'] * 1e3:.0f})"
        )

    lines = [
        r["plan_line"],
        f"config: n_layer {c['n_layer']}, n_head {c['n_head']}, n_embd {c['n_embd']}, "
        f"block_size {c['block_size']}, vocab_size {c['vocab_size']}, batch {c['batch_size']}, "
        f"{c['dtype']}; {r['num_params']:,} parameters",
        f"threads: {r['threads']}; busy processes meanwhile: {r['load_processes']}; median of "
        f"{r['steps']} rounds after {r['warmup']} warm-up; load average "
        f"{m['load_average']} -> {m['load_average_after']} on {m['cpu_count']} cores",
        f"matmul float32:   {r['matmul_gflops']:8.1f} GFLOP/s (2048^3: OpenBLAS threads "
        f"{r['matmul_gflops_by_method']['matmul_blas']:.0f}, split "
        f"{r['matmul_gflops_by_method']['matmul_split']:.0f})",
        f"model FLOPs:      {r['model_gflop_per_step']:8.2f} GFLOP per step",
        f"NumPy step:   {timing('numpy')}  {r['numpy_tokens_per_s']:9,.0f} tokens/s  "
        f"{r['model_gflops']:6.1f} GFLOP/s ({100 * r['fraction_of_matmul']:.0f}% of matmul)",
    ]
    if r["torch_tokens_per_s"] is not None:
        lines.append(
            f"PyTorch eager: {timing('torch')}  {r['torch_tokens_per_s']:9,.0f} tokens/s  "
            f"{r['torch_gflops']:6.1f} GFLOP/s (torch {r['torch_version']})"
        )
        rounds = r["ratio_by_round"]
        lines.append(
            f"ratio NumPy / PyTorch: {r['ratio']:.2f} (rounds {min(rounds):.2f}-{max(rounds):.2f}; "
            f"first-step loss {r['first_loss_numpy']:.5f} vs {r['first_loss_torch']:.5f})"
        )
    else:
        lines.append(r["torch_note"])
    if r.get("scaling"):
        lines.append("scaling (NumPy step, all plans in turn):")
        lines.append(f"  {'plan':34s} {'step':>9s} {'tokens/s':>10s} {'speed-up':>8s}")
        for row in r["scaling"]:
            plan = str(ThreadPlan(row["splitter"], row["threads"], row["blas_flops"]))
            lines.append(
                f"  {plan:34s} {row['step_s']['median'] * 1e3:6.1f} ms {row['tokens_per_s']:10,.0f} "
                f"{row['speedup']:7.2f}x"
            )
    return "\n".join(lines)
