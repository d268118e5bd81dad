"""``minireason bench gpu-train``: one training step on the GPU, by each choice of kernels.

At the two configs of issue 33 (:data:`CONFIGS`: the reference config, 4 layers x 256 wide,
block 128, batch 16; and 6 layers x 384 wide with 6 heads, block 256, batch 8), times one
full training step (forward, backward, AdamW) of the GPT on CuPy with every choice of the
GPU's kernels (:data:`VARIANTS`: ``--attention cublas`` or ``flash``, each with and without
``--fused``; and ``auto``) and, when PyTorch with CUDA imports, the same model in PyTorch
eager on the same GPU (same weights, inputs and AdamW settings; float32, TF32 off).

Each step is timed on the host from its start to a device synchronisation after AdamW, so a
step's Python work and kernel launches count as they do in training; the report gives the
median and quartiles of ``steps`` steps after ``warmup`` untimed ones, and each variant's
first loss (all equal to a few decimals: they compute the same model). PyTorch is only a
reference here; the package never needs it.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from minireason import backend
from minireason.bench.machine import json_option, spread, write_table_and_figure
from minireason.files import PNG_FIGURE, Kind, check_output, write_png
from minireason.nn.model import GPT, GPTConfig
from minireason.nn.optim import AdamW
from minireason.options import option

CONFIGS = {  # name: (model, batch size)
    "reference": (GPTConfig(n_layer=4, n_head=4, n_embd=256, block_size=128), 16),
    "wide": (GPTConfig(n_layer=6, n_head=6, n_embd=384, block_size=256), 8),
}
VARIANTS = {  # name: (--attention, --fused)
    "cublas": ("cublas", False),
    "flash": ("flash", False),
    "cublas + fused": ("cublas", True),
    "flash + fused": ("flash", True),
    "auto + fused": ("auto", True),
}
TORCH_VARIANT = "torch cuda eager"
TARGET_RATIO = 2.0  # issue 33: a CuPy step within 2x of PyTorch CUDA eager


@dataclass
class GpuTrainBenchConfig:
    """The options of ``minireason bench gpu-train``."""

    description: ClassVar[str] = (  # its --help
        "One training step (forward, backward, AdamW) of the GPT on CuPy with each choice of "
        "the GPU's kernels (--attention cublas/flash/auto, with and without --fused), against "
        "PyTorch CUDA eager, at issue 33's two configs; writes gpu_train_bench.md and .png. "
        "Needs a GPU."
    )

    configs: tuple = option(
        tuple(CONFIGS), choices=tuple(CONFIGS), nargs="+", help="which of the two configs"
    )
    steps: int = option(20, min=1, help="timed steps")
    warmup: int = option(3, min=1, help="untimed steps first (kernels compile, auto probes)")
    no_torch: bool = option(False, help="skip PyTorch")
    out_dir: str = option(".", metavar="DIR", help="folder for gpu_train_bench.md and .png")
    json: str | None = json_option()


def _inputs(config: GPTConfig, batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    shape = (batch, config.block_size)
    return rng.integers(0, config.vocab_size, shape), rng.integers(0, config.vocab_size, shape)


def _time_steps(step, sync, steps: int, warmup: int) -> tuple[list[float], float]:
    """Seconds of each timed ``step()`` (each ended by ``sync()``), and the first loss."""
    first = step()
    sync()
    for _ in range(warmup - 1):
        step()
    sync()
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync()
        seconds.append(time.perf_counter() - start)
    return seconds, float(first)


def _cupy_variant(config, batch, idx, targets, attention, fused, steps, warmup):
    from minireason.gpu import model_kernels  # noqa: PLC0415

    cp = backend.xp()
    model_kernels.install(attention, fused)
    model = GPT(config)
    optimizer = AdamW(model.params, lr=1e-4, decay=model.decay_mask())
    gi, gt = cp.asarray(idx), cp.asarray(targets)

    def step():
        _, loss = model.forward(gi, gt)
        optimizer.step(model.backward())
        return loss

    return _time_steps(step, cp.cuda.runtime.deviceSynchronize, steps, warmup)


def _torch_variant(host_model: GPT, idx, targets, steps, warmup):
    """PyTorch CUDA eager: ``host_model``'s twin (same weights) on the GPU."""
    import torch  # noqa: PLC0415  (an optional reference)

    from minireason.nn.torch_reference import build_torch_model  # noqa: PLC0415

    torch.backends.cuda.matmul.allow_tf32 = False
    net = build_torch_model(host_model).cuda()
    decay = [
        p for n, p in net.named_parameters() if p.ndim == 2 and not n.startswith(("wte", "wpe"))
    ]
    rest = [p for n, p in net.named_parameters() if not any(p is d for d in decay)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
        lr=1e-4,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    ti, tt = torch.from_numpy(idx).cuda(), torch.from_numpy(targets).cuda()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = net(ti, tt)
        loss.backward()
        opt.step()
        return loss.detach()

    return _time_steps(step, torch.cuda.synchronize, steps, warmup)


def _torch_reason() -> str | None:
    """None when PyTorch with a CUDA device imports, else why not."""
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        return "torch is not installed"
    return None if torch.cuda.is_available() else f"torch {torch.__version__} has no CUDA device"


def run_gpu_train_bench(
    configs=GpuTrainBenchConfig.configs,
    steps=GpuTrainBenchConfig.steps,
    warmup=GpuTrainBenchConfig.warmup,
    with_torch=True,
) -> dict:
    """The benchmark (module docstring), on the cuda device (ValueError says why when there is
    none). Returns ``{"environment", "results": [row], "probes", "torch"}``; a row has
    ``config, variant, median_ms, p25_ms, p75_ms, first_loss`` or ``error``."""
    from minireason.bench.kernels import environment
    from minireason.gpu import model_kernels

    try:
        backend.set_device("cuda")
    except backend.BackendError as exc:
        raise ValueError(f"bench gpu-train needs a CUDA GPU: {exc}") from None
    cp = backend.xp()
    torch_missing = _torch_reason() if with_torch else "not asked for (--no-torch)"
    rows = []
    before = backend.get_attention(), backend.get_fused(), backend.gpu_kernels()
    try:
        for name in configs:
            config, batch = CONFIGS[name]
            idx, targets = _inputs(config, batch)
            for variant, (attention, fused) in VARIANTS.items():
                row = {"config": name, "variant": variant, "batch": batch, **_shape(config)}
                try:
                    seconds, first = _cupy_variant(
                        config, batch, idx, targets, attention, fused, steps, warmup
                    )
                    row.update(_figures(seconds), first_loss=first)
                except Exception as exc:  # noqa: BLE001  (one failing variant: say, go on)
                    row["error"] = f"{type(exc).__name__}: {exc}"
                rows.append(row)
                cp.get_default_memory_pool().free_all_blocks()  # the variant's model is gone
            if torch_missing is None:
                row = {"config": name, "variant": TORCH_VARIANT, "batch": batch, **_shape(config)}
                backend.set_device("cpu")  # the twin is built from host weights
                host_model = GPT(config)
                backend.set_device("cuda")
                seconds, first = _torch_variant(host_model, idx, targets, steps, warmup)
                rows.append({**row, **_figures(seconds), "first_loss": first})
    finally:
        backend.set_attention(before[0])
        backend.set_fused(before[1])
        backend.use_gpu_kernels(before[2])
    env = environment(cp)
    env["date"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return {
        "environment": env,
        "config": {"steps": steps, "warmup": warmup},
        "results": rows,
        "probes": model_kernels.attention_probes(),
        "torch": torch_missing or "measured",
    }


def _shape(config: GPTConfig) -> dict:
    return {k: getattr(config, k) for k in ("n_layer", "n_head", "n_embd", "block_size")}


def _figures(seconds: list[float]) -> dict:
    s = spread(seconds)
    return {"median_ms": 1e3 * s["median"], "p25_ms": 1e3 * s["p25"], "p75_ms": 1e3 * s["p75"]}


# --------------------------------------------------------------------------- report


TABLE_HEADER = "| config | variant | median ms | quartiles ms | / torch | first loss |"
TABLE = Kind(  # what --out-dir's gpu_train_bench.md may replace: a table of this benchmark
    "a GPU training-step table", lambda p: TABLE_HEADER in p.read_text(errors="replace")
)
OUTPUT_FILES = {"gpu_train_bench.md": TABLE, "gpu_train_bench.png": PNG_FIGURE}


def check_outputs(out_dir) -> None:
    """Refuse, before any timing, an ``--out-dir`` whose :data:`OUTPUT_FILES` are not ours."""
    for name, kind in OUTPUT_FILES.items():
        check_output(Path(out_dir) / name, "--out-dir", kind)


def _row_of(rows, config, variant):
    return next((r for r in rows if r["config"] == config and r["variant"] == variant), None)


def format_table(result: dict) -> str:
    """The Markdown table of :func:`run_gpu_train_bench`'s result, and the target lines."""
    env, rows = result["environment"], result["results"]
    lines = [
        f"Measured on {env['gpu']}, {env['date']}; CuPy {env['cupy']}, CUDA runtime "
        f"{env['cuda_runtime']}, torch {env['torch'] or 'absent'} ({result['torch']}). "
        f"float32; one step = forward, backward, AdamW, synchronised; median of "
        f"{result['config']['steps']} steps after {result['config']['warmup']} untimed.",
        "",
        TABLE_HEADER,
        "|:---|:---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['config']} | {r['variant']} | failed: {r['error']} | | | |")
            continue
        torch_row = _row_of(rows, r["config"], TORCH_VARIANT)
        ratio = f"{r['median_ms'] / torch_row['median_ms']:.2f}" if torch_row else ""
        lines.append(
            f"| {r['config']} | {r['variant']} | {r['median_ms']:.2f} | "
            f"{r['p25_ms']:.2f}-{r['p75_ms']:.2f} | {ratio} | {r['first_loss']:.5f} |"
        )
    lines += ["", f"Target: a CuPy step within {TARGET_RATIO:g} x PyTorch CUDA eager."]
    for name in dict.fromkeys(r["config"] for r in rows):
        torch_row = _row_of(rows, name, TORCH_VARIANT)
        ours = [r for r in rows if r["config"] == name and r["variant"] in VARIANTS]
        ours = [r for r in ours if "median_ms" in r]
        if torch_row is None or not ours:
            lines.append(f"- {name}: not measured against PyTorch")
            continue
        best = min(ours, key=lambda r: r["median_ms"])
        ratio = best["median_ms"] / torch_row["median_ms"]
        met = "met" if ratio <= TARGET_RATIO else "NOT met"
        lines.append(f"- {name}: best is {best['variant']}, {ratio:.2f} x torch ({met})")
    for p in result.get("probes", []):
        lines.append(
            f"- --attention auto at heads {tuple(p['shape'])}: cuBLAS {p['cublas_ms']} ms, "
            f"flash {p['flash_ms']} ms -> {p['choice']}"
            + (f" (flash failed: {p['error']})" if p.get("error") else "")
        )
    return "\n".join(lines)


def plot(result: dict, path) -> Path:
    """Median step time of each variant, one group of bars per config; a PNG at ``path``."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

    rows = [r for r in result["results"] if "median_ms" in r]
    configs = list(dict.fromkeys(r["config"] for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    fig = Figure(figsize=(10, 4.2))
    ax = fig.subplots()
    width = 0.8 / max(1, len(variants))
    for i, variant in enumerate(variants):
        xs, hs = [], []
        for j, name in enumerate(configs):
            r = _row_of(rows, name, variant)
            if r is not None:
                xs.append(j + i * width)
                hs.append(r["median_ms"])
        ax.bar(xs, hs, width, label=variant)
    ax.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(configs))])
    ax.set_xticklabels(configs)
    ax.set_ylabel("ms per training step (median)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"one training step on {result['environment']['gpu']}")
    fig.tight_layout()
    return write_png(path, fig)


def write_outputs(result: dict, out_dir, json_path=None) -> list[Path]:
    """Write ``gpu_train_bench.md`` and ``.png`` into ``out_dir`` (and the JSON if asked)."""
    return write_table_and_figure(result, out_dir, "gpu_train_bench", format_table, plot, json_path)
