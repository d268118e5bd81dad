"""The thread plan chosen by measurement, once per machine and model shape, and cached.

Which :class:`~minireason.nn.threads.ThreadPlan` is fastest depends on the machine (cores,
vendor, BLAS kernels, other work running) and on the model's shapes, so it is measured, as a
BLAS autotuner or cuDNN's benchmark mode does:

- :func:`candidates`: the plans worth trying on ``n`` cores: the pool, BLAS's threads and
  the mix on all of them (and on half of them, from 4 cores);
- :func:`measure`: each candidate times the forward and backward of a one-layer model of
  the given shape on a real batch (``(batch, seq_len)`` tokens): every product the model
  makes (the linear layers, attention's stacked products, the LM head) and the elementwise
  kernels between them, in their order. Candidates take turns, round after round, so that
  other work on the machine hits them alike; a round past :data:`BUDGET_S` is the last;
- :func:`choose_plan`: the forced plan (``$MINIREASON_THREADS``, ``$MINIREASON_PLAN``), else
  the cached one, else the fastest measured now (and cached);
- the cache, :func:`cache_path`: a JSON file ``{"format": "minireason-thread-plans", ...}``
  with one entry per machine and shape, written atomically. A file there that minireason
  did not write is never overwritten; one it cannot read is ignored with a one-line note.

Calibration changes no result's meaning: every plan computes the same model, and a run
gets the same bits again on the same plan and thread count (the cached plan, on the same
machine), which is what resuming needs.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from minireason.files import atomic_write_json, json_object
from minireason.nn.threads import SPLITTERS, ThreadPlan, cores, forced_plan, using_plan

CACHE_FORMAT = "minireason-thread-plans"
CACHE_VERSION = 1
CACHE_NAME = "thread-plans.json"
ROUNDS = 3  # timed rounds per candidate, at most
BUDGET_S = 3.0  # no timed round starts after this many seconds of calibration
# An untimed pause after each timed plan: OpenBLAS's threads spin for a while after their
# last product, and would slow whichever plan comes next.
SETTLE_S = 0.15
# The pool wins unless another plan's best round is faster by more than this share: the
# plans differ by little on a quiet small model, and noise should not choose.
TIE = 0.03


@dataclass
class PlanChoice:
    """A plan and how it was chosen.

    Attributes:
        plan: the plan.
        source: ``"forced"`` (environment or options), ``"cached"`` (measured before, on this
            machine and shape), ``"measured"`` (now), ``"run"`` (the plan a resumed run
            started with) or ``"default"`` (the process's plan,
            :func:`minireason.nn.threads.plan`, nothing measured).
        seconds: ``{str(plan): [seconds of each timed round]}`` of the measurement (empty when
            forced).
        note: a one-line remark on the cache (unreadable, not written...), or "".
    """

    plan: ThreadPlan
    source: str
    seconds: dict = field(default_factory=dict)
    note: str = ""

    def line(self) -> str:
        """One line for a command's output: the plan, and whether forced, cached or measured."""
        how = {
            "forced": "forced",
            "cached": "from the cache",
            "measured": "measured now",
            "run": "the plan this run started with, kept for an exact resume",
            "default": "the process's default",
        }
        text = f"thread plan: {self.plan} ({SPLITTERS[self.plan.splitter]}); {how[self.source]}"
        if self.seconds:
            best = {k: min(v) for k, v in self.seconds.items()}
            text += " (" + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in best.items()) + ")"
        return text + (f"; {self.note}" if self.note else "")

    def to_dict(self) -> dict:
        return {**self.plan.to_dict(), "source": self.source, "seconds": self.seconds}


def read_plan(path: Path) -> ThreadPlan:
    """The plan a run recorded (``ThreadPlan.to_dict`` as JSON in ``path``); ValueError naming
    the file when it is not one."""
    try:
        fields = json.loads(Path(path).read_text(encoding="utf-8"))
        return ThreadPlan(fields["splitter"], fields["threads"], fields["blas_flops"])
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(
            f"{path}: not a thread plan ({exc}); remove it to choose the plan again"
        ) from None


# --------------------------------------------------------------------------- the cache


def cache_path() -> Path:
    """``$MINIREASON_PLAN_CACHE``, else ``thread-plans.json`` in ``$XDG_CACHE_HOME/minireason``
    or ``~/.cache/minireason``."""
    env = os.environ.get("MINIREASON_PLAN_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "minireason" / CACHE_NAME


def machine() -> dict:
    """What a plan's speed depends on besides the model: CPU, cores, NumPy and its BLAS."""
    from threadpoolctl import threadpool_info

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    blas = sorted(
        f"{lib.get('internal_api')} {lib.get('version')} {lib.get('architecture')}"
        for lib in threadpool_info()
        if lib.get("user_api") == "blas"
    )
    return {"cpu": cpu, "cores": cores(), "numpy": np.__version__, "blas": blas}


def cache_key(config, batch_size: int, seq_len: int) -> str:
    """The cache's key of a machine and a model shape: a short hash of :func:`machine`, then
    the shape in words."""
    digest = hashlib.sha256(json.dumps(machine(), sort_keys=True).encode()).hexdigest()[:16]
    c = config
    return (
        f"{digest} L{c.n_layer} H{c.n_head} C{c.n_embd} V{c.vocab_size} "
        f"B{batch_size} T{seq_len} {c.dtype}"
    )


def read_cache(path: Path) -> tuple[dict | None, str]:
    """``(entries, note)``: the cache's entries by key (``{}`` when there is no file), or None
    with a one-line note when the file is not a cache minireason wrote or cannot be read."""
    if not path.exists():
        return {}, ""
    obj = json_object(path)
    if obj is None or obj.get("format") != CACHE_FORMAT:
        return None, f"{path} is not a thread-plan cache minireason wrote: ignored, not replaced"
    entries = obj.get("plans")
    if obj.get("format_version") != CACHE_VERSION or not isinstance(entries, dict):
        return {}, f"{path}: unreadable thread-plan cache (another version?), written anew"
    return entries, ""


def cached_plan(entries: dict, key: str) -> ThreadPlan | None:
    """The plan cached under ``key``, or None (none there, or one this code cannot read)."""
    entry = entries.get(key)
    if not isinstance(entry, dict):
        return None
    try:
        return ThreadPlan(entry["splitter"], entry["threads"], entry["blas_flops"])
    except (KeyError, TypeError, ValueError):
        return None


def write_cache(path: Path, key: str, choice: PlanChoice) -> str:
    """Add ``choice`` under ``key`` to the cache at ``path`` (atomically); returns a one-line
    note when it was not written ("" when it was)."""
    entries, note = read_cache(path)
    if entries is None:
        return note
    entries = {**entries, key: {**choice.to_dict(), "date": time.strftime("%Y-%m-%d")}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            path, {"format": CACHE_FORMAT, "format_version": CACHE_VERSION, "plans": entries}
        )
    except OSError as exc:
        return f"the thread plan was not cached ({exc.strerror or exc}: {path})"
    return note


# --------------------------------------------------------------------------- measuring


def largest_product_flops(config, batch_size: int, seq_len: int) -> int:
    """FLOPs of the model's largest 2-D product: the LM head's ``(N, C) @ (C, V)`` or the
    MLP's ``(N, C) @ (C, 4C)``, ``N = batch_size * seq_len``."""
    return 2 * batch_size * seq_len * config.n_embd * max(config.vocab_size, 4 * config.n_embd)


def candidates(n: int, largest_flops: int | None = None) -> list[ThreadPlan]:
    """The plans tried on ``n`` cores: each splitter on ``n`` threads (the pool alone on one
    core), and on ``n // 2`` too from 4 cores; the pool first. ``mixed`` is left out where
    no product reaches its threshold (``largest_flops`` below it: the pool's twin)."""
    if n == 1:
        return [ThreadPlan.of("pool", 1)]
    counts = [n, n // 2] if n >= 4 else [n]
    plans = [ThreadPlan.of(s, t) for t in counts for s in SPLITTERS]
    if largest_flops is not None:
        plans = [p for p in plans if p.splitter != "mixed" or largest_flops >= p.blas_flops]
    return plans


def measure(
    config, batch_size: int, seq_len: int, plans, rounds: int = ROUNDS, budget_s: float = BUDGET_S
) -> dict:
    """``{str(plan): [seconds per timed round]}``: each plan's forward and backward of a
    one-layer model of ``config``'s shape on a ``(batch_size, seq_len)`` batch; plans take
    turns, one untimed round first, then up to ``rounds`` timed ones within ``budget_s``."""
    from minireason.nn.model import GPT

    model = GPT(replace(config, n_layer=1))
    rng = np.random.default_rng(0)
    idx = rng.integers(0, config.vocab_size, (batch_size, seq_len))
    targets = rng.integers(0, config.vocab_size, (batch_size, seq_len))
    seconds = {str(p): [] for p in plans}
    t_start = time.perf_counter()
    for r in range(rounds + 1):
        if r > 1 and time.perf_counter() - t_start > budget_s:
            break
        for p in plans:
            with using_plan(p):
                t0 = time.perf_counter()
                model.forward(idx, targets)
                model.backward()
                dt = time.perf_counter() - t0
            if r > 0:
                seconds[str(p)].append(dt)
            time.sleep(SETTLE_S)
    return seconds


def calibrate(config, batch_size: int, seq_len: int, n: int | None = None) -> PlanChoice:
    """Measure :func:`candidates` on ``n`` cores (default: all this process may use) and
    choose the fastest (its best round; the pool within :data:`TIE` of it); writes it to
    the cache."""
    plans = candidates(n or cores(), largest_product_flops(config, batch_size, seq_len))
    seconds = measure(config, batch_size, seq_len, plans)
    best = min(plans, key=lambda p: min(seconds[str(p)]))
    if min(seconds[str(best)]) > (1 - TIE) * min(seconds[str(plans[0])]):
        best = plans[0]
    choice = PlanChoice(best, "measured", seconds)
    choice.note = write_cache(cache_path(), cache_key(config, batch_size, seq_len), choice)
    return choice


def choose_plan(config, batch_size: int, seq_len: int, forced: ThreadPlan | None = None):
    """The plan for a model of ``config``'s shape trained on ``(batch_size, seq_len)``
    batches: ``forced`` (options), else the environment's (:func:`forced_plan`), else the
    cached one for this machine and shape, else :func:`calibrate`. Returns a
    :class:`PlanChoice`; it does not put the plan in use."""
    forced = forced or forced_plan()
    if forced is not None:
        return PlanChoice(forced, "forced")
    path = cache_path()
    entries, note = read_cache(path)
    if entries:
        plan = cached_plan(entries, cache_key(config, batch_size, seq_len))
        if plan is not None:
            return PlanChoice(plan, "cached")
    choice = calibrate(config, batch_size, seq_len)
    choice.note = choice.note or note
    return choice
