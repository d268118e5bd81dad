"""``minireason bench explain-all``: reasons per second of the catalogue job
(:mod:`minireason.reason.catalogue`) with 1 and 2 local workers.

For each worker count, ``explain_all`` runs on the first ``n_users`` users of the prepared
data into a fresh temporary directory (nothing is resumed), on a local Dask cluster of that
many worker processes, one thread and one BLAS thread each. Reported for each count:

- ``seconds``: the whole call, of which ``startup_seconds`` starting the cluster;
- ``reasons_per_second``: rows / seconds from the first task submitted to the last result,
  each worker's one-time load of the run and the data included, as in a real job;
- ``per_process_rate``: rows / the sum of the tasks' explaining seconds (loads excluded),
  what one worker process, that is one core, sustains: the figure to scale from;
- ``load_seconds``: each worker process's load of the run, the data and the recommender.

Every run must write the same rows; ``same_rows`` says whether they did.

The estimate for ``U`` users with ``k`` recommendations each on ``N`` machines of ``c``
cores, from a per-process rate ``r`` (reasons/s), assuming linear scaling (the 2-worker
figure shows how close one machine comes to it)::

    hours = U * k / (r * c * N) / 3600

``estimate`` gives ``U * k / r / 3600`` (core-hours) for one million users with 10 each.
"""

from __future__ import annotations

import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from minireason.bench.machine import json_option
from minireason.options import option
from minireason.prep.prepared import load_prepared
from minireason.reason import catalogue
from minireason.train.run import ChoiceSettings, RunOptions, read_run_info


def _sorted_rows(table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: (r["user"], r["rank"]))


@dataclass
class BenchExplainAllConfig(RunOptions):
    """The options of ``minireason bench explain-all`` (:mod:`minireason.options`); the
    defaults of :func:`run_bench_explain_all` are these."""

    description: ClassVar[str] = (
        "Run explain-all on the first --users users, once per worker count, each into a "
        "temporary directory; reasons per second, per-worker-process rate, start-up time, and "
        "whether every run wrote the same rows."
    )

    run: str = option(metavar="DIR", help="a run of 'minireason train'")
    prepared: str = option(metavar="DIR", help="the data it was trained on")
    users: int = option(40, min=1, help="the first N users")
    top_k: int = option(3, min=1, metavar="K", help="recommendations per user")
    chunk_size: int = option(2, min=1, help="users per task")
    workers: tuple = option((1, 2), min=1, kind=int, nargs="+", help="worker counts to time")
    seed: int = option(0, metavar="SEED", help="the base of every (user, item) seed")
    json: str | None = json_option()


def run_bench_explain_all(
    prepared_dir,
    run_dir,
    n_users: int = BenchExplainAllConfig.users,
    top_k: int = BenchExplainAllConfig.top_k,
    chunk_size: int = BenchExplainAllConfig.chunk_size,
    worker_counts=BenchExplainAllConfig.workers,
    seed: int = BenchExplainAllConfig.seed,
    settings: ChoiceSettings | None = None,
    allow_other_data: bool = False,
) -> dict:
    """Time ``explain_all`` once per worker count (module doc); a JSON-ready dict."""
    prepared = load_prepared(prepared_dir)
    users = catalogue.known_users(prepared)[:n_users]
    settings = settings or read_run_info(run_dir).settings()
    decoding = settings.decoding
    runs, rows = [], []
    for n in worker_counts:
        with tempfile.TemporaryDirectory(prefix="bench-explain-all-") as tmp:
            out = Path(tmp) / "out"
            summary = catalogue.explain_all(
                prepared_dir,
                run_dir,
                out,
                users=users,
                top_k=top_k,
                chunk_size=chunk_size,
                seed=seed,
                decoding=decoding,
                weights=settings.weights,
                weights_from=settings.weights_from,
                workers=n,
                dashboard=None,
                allow_other_data=allow_other_data,
                progress=False,
            )
            rows.append(_sorted_rows(catalogue.read_catalogue(out)))
        entries = list(summary.chunks.values())
        explaining = sum(e["seconds"] for e in entries)
        runs.append(
            {
                "workers": n,
                "reasons": summary.n_reasons,
                "seconds": summary.seconds,
                "startup_seconds": summary.startup_seconds,
                "compute_seconds": summary.compute_seconds,
                "reasons_per_second": summary.reasons_per_second,
                "per_process_rate": summary.n_reasons / explaining if explaining else 0.0,
                "load_seconds": [e["load_seconds"] for e in entries if e["loaded"]],
                "complete": summary.complete,
            }
        )
    per_core = runs[0]["per_process_rate"]
    return {
        "runs": runs,
        "same_rows": all(r == rows[0] for r in rows[1:]) and all(r["complete"] for r in runs),
        "users": len(users),
        "top_k": top_k,
        "chunk_size": chunk_size,
        **{f"decoding_{k}": v for k, v in vars(decoding).items()},
        "estimate": {
            "users": 1_000_000,
            "per_user": 10,
            "per_core_rate_from_workers": runs[0]["workers"],
            "core_hours": 1e7 / per_core / 3600 if per_core else None,
        },
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "numpy": np.__version__,
        },
    }


def format_report(result: dict) -> str:
    lines = [
        f"explain-all: {result['users']} users x top-{result['top_k']}, chunks of "
        f"{result['chunk_size']}, {result['decoding_n_candidates']} candidates, "
        f"max_new_tokens {result['decoding_max_new_tokens']}; "
        f"{result['machine']['cpu_count']} CPUs",
        "workers | reasons | reasons/s | per process | start-up s | load s per worker",
    ]
    for r in result["runs"]:
        loads = ", ".join(f"{s:.1f}" for s in r["load_seconds"]) or "-"
        lines.append(
            f"{r['workers']:>7} | {r['reasons']:>7} | {r['reasons_per_second']:>9.2f} | "
            f"{r['per_process_rate']:>11.2f} | {r['startup_seconds']:>10.1f} | {loads}"
        )
    est = result["estimate"]
    if est["core_hours"]:
        lines.append(
            f"1M users x 10 at the {est['per_core_rate_from_workers']}-worker per-process rate: "
            f"{est['core_hours']:.0f} core-hours (hours on N machines of c cores: that / (N c))"
        )
    lines.append("same rows in every run: " + ("yes" if result["same_rows"] else "NO"))
    return "\n".join(lines)
