"""``minireason bench calibrate``: measure the thread plans for a model shape and cache the
fastest (:mod:`minireason.nn.calibrate`), whatever the cache held before.

``train`` and ``bench train`` measure at first use on a machine and shape; this command
measures again on demand (after an upgrade of NumPy, or on a machine quieter than it was).
The shape options are ``bench train``'s (:class:`minireason.bench.train.ModelShapeOptions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from minireason.bench.machine import json_option, machine_info
from minireason.bench.train import ModelShapeOptions
from minireason.nn.model import GPTConfig


@dataclass
class BenchCalibrateConfig(ModelShapeOptions):
    """The options of ``minireason bench calibrate``: the model's shape and batch (every one of
    them in the cache key)."""

    description: ClassVar[str] = (  # its --help
        "Time each thread plan (minireason's pool, BLAS's threads, a mix by product size) on "
        "a model shape's products and elementwise kernels, and cache the fastest for this "
        "machine and shape."
    )

    json: str | None = json_option()


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
