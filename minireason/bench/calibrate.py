"""``minireason bench calibrate``: measure the thread plans for a model shape and cache the
fastest (:mod:`minireason.nn.calibrate`), whatever the cache held before.

``train`` and ``bench train`` measure at first use on a machine and shape; this command
measures again on demand (after an upgrade of NumPy, or on a machine quieter than it was).
The shape options are ``bench train``'s; ``--seq-len`` defaults to the block size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from minireason.bench.machine import json_option, machine_info
from minireason.bench.train import REFERENCE_BATCH
from minireason.nn.model import DTYPES, GPTConfig
from minireason.options import option


@dataclass
class BenchCalibrateConfig:
    """The options of ``minireason bench calibrate``: the model's shape and batch."""

    description: ClassVar[str] = (  # its --help
        "Time each thread plan (minireason's pool, BLAS's threads, a mix by product size) on "
        "a model shape's products and elementwise kernels, and cache the fastest for this "
        "machine and shape."
    )

    n_layer: int = option(GPTConfig.n_layer, min=1, help="transformer blocks (in the cache key)")
    n_head: int = option(GPTConfig.n_head, min=1, help="attention heads per block")
    n_embd: int = option(GPTConfig.n_embd, min=1, help="embedding width, a multiple of --n-head")
    block_size: int = option(GPTConfig.block_size, min=1, help="tokens per sequence")
    vocab_size: int = option(GPTConfig.vocab_size, min=1, help="vocabulary size")
    batch_size: int = option(REFERENCE_BATCH, min=1, help="sequences per step")
    dtype: str = option(GPTConfig.dtype, choices=DTYPES, help="array dtype")
    json: str | None = json_option()

    def model_config(self) -> GPTConfig:
        shape = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")
        return GPTConfig(**{name: getattr(self, name) for name in shape}, dtype=self.dtype)


def run_calibrate(config: GPTConfig, batch_size: int) -> dict:
    """Measure and cache; the figures as a JSON-ready dict."""
    from dataclasses import asdict

    from minireason.nn.calibrate import cache_path, calibrate

    choice = calibrate(config, batch_size, config.block_size)
    return {
        "config": {**asdict(config), "batch_size": batch_size},
        "plan": choice.to_dict(),
        "plan_line": choice.line(),
        "cache": str(cache_path()),
        "machine": machine_info(),
    }


def format_report(r: dict) -> str:
    lines = [r["plan_line"], "best round of each plan:"]
    for name, seconds in r["plan"]["seconds"].items():
        lines.append(f"  {name:34s} {min(seconds) * 1e3:8.1f} ms ({len(seconds)} rounds)")
    lines.append(f"cache: {r['cache']}")
    return "\n".join(lines)
