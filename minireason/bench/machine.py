"""What every benchmark needs besides the thing it times: the machine it ran on, a controlled
load, interleaved timing and a summary of the spread.

- :func:`machine_info`: platform, cores, load average, library versions, BLAS (threadpoolctl);
- :func:`busy_load`: ``n`` CPU-bound processes for the duration of a measurement, so that
  "on a busy machine" is measured, not guessed (``--load N``);
- :func:`time_interleaved`: systems timed in turn, round after round, so that whatever else
  the machine does hits them alike;
- :func:`spread`: median, quartiles and extremes of a list of times;
- :func:`threads_option`, :func:`plan_option`, :func:`load_option`, :func:`json_option`:
  the options the benchmarks share, declared once for their configs; :func:`write_figures` writes what
  ``--json`` asks for, marked as :data:`FIGURES` (the only file a ``--json`` may replace).
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from minireason.files import atomic_write_json, json_kind
from minireason.options import option

FIGURES_FORMAT = "minireason-bench"
FIGURES = json_kind(FIGURES_FORMAT, "a benchmark's figures file")

# A busy process: spins until its parent is gone (checked every ~10 ms of spinning), so a
# benchmark killed outright (SIGTERM, SIGKILL) leaves no busy processes behind.
BUSY_LOOP = (
    "import os\n"
    "parent = os.getppid()\n"
    "while os.getppid() == parent:\n"
    "    for _ in range(200_000):\n"
    "        pass\n"
)


def threads_option():
    """A benchmark's ``--threads N`` (a field of its config; None: the measured plan's)."""
    return option(None, min=1, help="threads of both systems (default: the measured plan's)")


def plan_option():
    """A benchmark's ``--plan pool|blas|mixed`` (None: the measured thread plan)."""
    from minireason.nn.threads import SPLITTERS

    return option(
        None,
        choices=tuple(SPLITTERS),
        help="who splits the products (default: the plan measured on this machine and shape)",
    )


def use_plan(config, batch_size: int, seq_len: int, threads=None, splitter=None):
    """The :class:`~minireason.nn.calibrate.PlanChoice` of a benchmark: ``--threads`` and
    ``--plan`` force a plan (the other one's default: every core, the pool), else the
    measured one (:func:`minireason.nn.calibrate.choose_plan`)."""
    from minireason.nn.calibrate import choose_plan
    from minireason.nn.threads import ThreadPlan, cores, forced_plan

    forced = None
    if threads or splitter:
        base = forced_plan()
        forced = ThreadPlan.of(
            splitter or (base.splitter if base else "pool"),
            threads or (base.threads if base else cores()),
        )
    return choose_plan(config, batch_size, seq_len, forced)


def load_option():
    """A benchmark's ``--load N``: :func:`busy_load`'s processes."""
    return option(0, min=0, help="busy processes meanwhile")


def json_option():
    """A benchmark's ``--json FILE.json``."""
    return option(None, metavar="FILE.json", help="also write the figures as JSON")


def write_figures(path, result: dict):
    """Write a benchmark's ``result`` to ``path`` as JSON marked ``"format":
    "minireason-bench"`` (atomically); returns the path."""
    return atomic_write_json(path, {"format": FIGURES_FORMAT, **result})


def write_table_and_figure(
    result: dict, out_dir, stem: str, table, draw, json_path=None
) -> list[Path]:
    """Write ``STEM.md`` (``table(result)``) and ``STEM.png`` (``draw(result, path)``) into
    ``out_dir``, and the JSON figures to ``json_path`` if given; the picture last, so that
    the numbers are on disk first. Returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / f"{stem}.md"
    md.write_text(table(result) + "\n", encoding="utf-8")
    written = [md]
    if json_path:
        written.append(write_figures(json_path, result))
    written.append(draw(result, out / f"{stem}.png"))
    return written


def machine_info() -> dict:
    """The machine and the libraries the figures depend on (JSON-ready)."""
    from threadpoolctl import threadpool_info

    from minireason.nn.threads import plan

    blas = [
        {k: lib.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
        for lib in threadpool_info()
        if lib.get("user_api") == "blas"
    ]
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas,
        "minireason_threads": plan().threads,
        "minireason_plan": plan().to_dict(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


@contextlib.contextmanager
def busy_load(n: int):
    """Run ``n`` CPU-bound busy processes while the block runs; they are killed after, even
    when the block fails. ``n = 0``: nothing."""
    procs = [
        subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdin=subprocess.DEVNULL)
        for _ in range(n)
    ]
    try:
        if procs:
            time.sleep(0.5)  # let the scheduler see them
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def time_interleaved(steppers: dict, steps: int, warmup: int, settle_s: float = 0.0):
    """Run the steppers in turn, round after round, so that all of them see the same machine
    load; return ``{name: [seconds per timed round]}`` and ``{name: first return value}``.
    ``settle_s``: an untimed pause after each step (BLAS's threads spin for a while after
    their last product, and would slow the next stepper)."""
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
            if settle_s:
                time.sleep(settle_s)
    return times, first


def spread(seconds: list[float]) -> dict:
    """``{median, p25, p75, min, max, n}`` of a list of times (seconds)."""
    q = np.percentile(seconds, [25, 75]) if seconds else [float("nan")] * 2
    return {
        "median": statistics.median(seconds),
        "p25": float(q[0]),
        "p75": float(q[1]),
        "min": min(seconds),
        "max": max(seconds),
        "n": len(seconds),
    }
