"""How the GPT uses the CPU's cores: a *thread plan* says who splits the matrix products
(minireason's own pool of threads, or the BLAS library's threads) and on how many threads.

NumPy hands ``a @ b`` to OpenBLAS, which can split one product across its own threads and
*spins* while it waits for them. On a quiet machine that is fast; on a busy one (a laptop
running anything else, or a second training job) the spinning threads steal the cores the
work needs (docs/speed.md's busy-machine rows). Which way is faster depends on the machine,
its load and the model's shapes, so the plan is a named, measured thing (:class:`ThreadPlan`,
chosen by :mod:`minireason.nn.calibrate`):

- ``pool``: OpenBLAS runs every product on the thread that calls it (one BLAS thread), and
  :func:`matmul` cuts a large product into row blocks (or batch blocks, for the stacked
  ``(B, H, T, T)`` products of attention) run on the plan's threads: the calling thread and
  a pool, each claiming the next block when it is free, so that a thread that starts late or
  is slowed by other work does fewer; idle pool threads sleep instead of spinning. A product
  too small to be worth splitting (:data:`MIN_SPLIT_FLOPS`: generation's one-token steps,
  say) runs inline;
- ``blas``: every product goes whole to OpenBLAS on the plan's threads;
- ``mixed``: 2-D products of at least ``blas_flops`` FLOPs go whole to OpenBLAS's threads,
  the others (attention's stacked products, small ones) as in ``pool``.

BLAS gets the plan's thread count through threadpoolctl while minireason works
(:data:`blas_as_planned`, a context manager and a decorator around the model's forward and
backward, generation and training, and inside :func:`matmul`), and gets back what it had when
the work returns, so a notebook's own NumPy keeps the BLAS threads it had.

Elementwise work (GELU, the softmaxes, LayerNorm) goes through :func:`rowwise` in every plan:
a layer writes its work as a *kernel* over rows with ``out=`` ufuncs, and the plan's threads
run it over chunks of about :data:`CHUNK_ELEMENTS` elements, so that the chain of passes a
kernel makes over a chunk stays in the core's cache instead of memory.

The plan in use is :func:`plan`: ``$MINIREASON_THREADS`` threads (default: the cores this
process may use) split by ``$MINIREASON_PLAN`` (default ``pool``); :func:`set_plan` and
:func:`using_plan` change it (``train`` and ``bench`` use the measured one), and
:func:`set_threads` only its thread count. With CuPy arrays, :func:`matmul` is plain
``a @ b`` and :func:`rowwise` one call on the whole arrays.

Which thread computes a block never changes a result. Elementwise kernels and stacked
products (each matrix whole in one block) give the same bits on any plan. A 2-D product is
cut into one row block per pool thread (or into OpenBLAS's own tiles), and OpenBLAS may round
a row differently in a block of another height: so the linear layers, and the training or
the generated text after them, can differ between plans and thread counts by float32
rounding (measured: up to 4e-6 of the outputs' typical size). With the same plan and thread
count every run gives the same bits, which is what resuming needs.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass

import numpy as np

from minireason.nn.memory import keep_freed_memory

# Below this many FLOPs a product runs inline: handing a block to a pool thread costs tens of
# microseconds (more on a busy machine), as much as a third of a millisecond of work saves.
MIN_SPLIT_FLOPS = 32_000_000
# A split product is cut into this many row blocks per thread, claimed by whichever thread is
# free. More blocks let a slow thread take fewer, but make smaller BLAS calls: 4 per thread
# made the reference training step 11% slower on a quiet 2-core machine (2026-12-03).
BLOCKS_PER_THREAD = 1
# Elementwise work on fewer elements than this runs inline, for the same reason.
MIN_SPLIT_ELEMENTS = 131_072
# rowwise() cuts the rows into chunks of about this many elements: 128 KiB of float32 per
# array, so that a kernel's handful of arrays stays in a core's L2 cache between passes.
CHUNK_ELEMENTS = 32_768

# Who splits the products, by the name a plan records (module docstring).
SPLITTERS = {
    "pool": "minireason's pool splits the products, BLAS on one thread",
    "blas": "BLAS's own threads split every product",
    "mixed": "BLAS's threads take the large 2-D products, the pool the others",
}
# The mixed plan's default: 2-D products of at least this many FLOPs go to BLAS's threads
# (at the reference config: the MLP's and the LM head's, not the attention projection's).
MIXED_BLAS_FLOPS = 1_000_000_000


@dataclass(frozen=True)
class ThreadPlan:
    """How products and elementwise work use the cores.

    Attributes:
        splitter: a key of :data:`SPLITTERS`: ``pool``, ``blas`` or ``mixed``.
        threads: the threads of the pool (and of BLAS, under ``blas`` and ``mixed``), >= 1.
        blas_flops: under ``mixed``, the FLOP count from which a 2-D product goes to BLAS's
            threads (0 under the other splitters).
    """

    splitter: str = "pool"
    threads: int = 1
    blas_flops: int = 0

    def __post_init__(self):
        if self.splitter not in SPLITTERS:
            raise ValueError(f"thread plan: splitter {self.splitter!r}, expected one of "
                             f"{tuple(SPLITTERS)}")  # fmt: skip
        if not isinstance(self.threads, int) or isinstance(self.threads, bool) or self.threads < 1:
            raise ValueError(f"threads must be a positive integer, got {self.threads!r}")
        if not isinstance(self.blas_flops, int) or self.blas_flops < 0:
            raise ValueError(f"thread plan: blas_flops {self.blas_flops!r}, expected an int >= 0")
        if (self.splitter == "mixed") != (self.blas_flops > 0):
            raise ValueError("thread plan: blas_flops > 0 belongs to the mixed splitter only")

    @classmethod
    def of(cls, splitter: str, threads: int) -> ThreadPlan:
        """The plan of ``splitter`` on ``threads`` threads, with the mixed one's default."""
        return cls(splitter, threads, MIXED_BLAS_FLOPS if splitter == "mixed" else 0)

    @property
    def blas_threads(self) -> int:
        """BLAS's thread count while minireason works (``mixed`` raises it per product)."""
        return self.threads if self.splitter == "blas" else 1

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        if self.splitter == "mixed":
            return f"mixed x{self.threads} (BLAS from {self.blas_flops / 1e6:g} MFLOP)"
        return f"{self.splitter} x{self.threads}"


_plan: ThreadPlan | None = None
_pool: ThreadPoolExecutor | None = None
_pool_size = 0  # threads of _pool, the calling thread included
_prepared = False  # prepare_process() ran: BLAS stays set for the rest of the process
_prepared_blas = 0  # BLAS's thread count set since prepare_process()
_work_lock = threading.Lock()
_work_depth = 0  # calls inside blas_as_planned now, on every thread, nested ones included
_blas_limiter = None  # threadpoolctl's limiter while _work_depth > 0: it restores the limits
_blas_controller = None  # threadpoolctl's view of the BLAS libraries, made at first use


def _positive_env(name: str) -> int | None:
    env = os.environ.get(name)
    if not env:
        return None
    try:
        n = int(env)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{name}={env!r}: expected a positive integer")
    return n


def cores() -> int:
    """The number of cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def forced_plan() -> ThreadPlan | None:
    """The plan ``$MINIREASON_THREADS`` and ``$MINIREASON_PLAN`` force (either one set; the
    other takes its default), or None when neither is set."""
    n = _positive_env("MINIREASON_THREADS")
    splitter = os.environ.get("MINIREASON_PLAN") or None
    if n is None and splitter is None:
        return None
    if splitter is not None and splitter not in SPLITTERS:
        raise ValueError(f"MINIREASON_PLAN={splitter!r}: expected one of {tuple(SPLITTERS)}")
    return ThreadPlan.of(splitter or "pool", n or cores())


def plan() -> ThreadPlan:
    """The thread plan in use: the one set last, else the forced one, else the pool on every
    core."""
    global _plan
    if _plan is None:
        _plan = forced_plan() or ThreadPlan.of("pool", cores())
    return _plan


def threads() -> int:
    """The number of threads of the plan in use."""
    return plan().threads


def set_plan(new: ThreadPlan) -> ThreadPlan:
    """Use the plan ``new`` from now on; returns the previous one. Work running now keeps the
    BLAS threads it started with."""
    global _plan
    if not isinstance(new, ThreadPlan):
        raise TypeError(f"expected a ThreadPlan, got {new!r}")
    before = plan()
    _plan = new
    return before


@contextlib.contextmanager
def using_plan(new: ThreadPlan):
    """Use the plan ``new`` inside the block, and the one before it after."""
    before = set_plan(new)
    try:
        yield new
    finally:
        set_plan(before)


def set_threads(n: int) -> int:
    """Run the plan in use on ``n`` threads from now on (``n >= 1``); returns the previous
    count."""
    current = plan()
    set_plan(ThreadPlan(current.splitter, n, current.blas_flops))
    return current.threads


def _blas():
    """threadpoolctl's controller of the BLAS libraries NumPy uses (made once)."""
    global _blas_controller
    if _blas_controller is None:
        from threadpoolctl import ThreadpoolController

        _blas_controller = ThreadpoolController().select(user_api="blas")
    return _blas_controller


def _set_blas_threads(n: int) -> None:
    for lib in _blas().lib_controllers:
        lib.set_num_threads(n)


def prepare_process() -> None:
    """For a process of minireason's own (the grader's child): BLAS on the plan's thread
    count for the rest of the process, and freed large arrays kept for reuse
    (:func:`minireason.nn.memory.keep_freed_memory`). :data:`blas_as_planned` then only
    follows a change of plan, and never gives back the limits. Elsewhere (a notebook, a
    script) minireason never calls it."""
    global _prepared, _prepared_blas
    if not _prepared:
        _prepared_blas = plan().blas_threads
        _set_blas_threads(_prepared_blas)
        keep_freed_memory()
        _prepared = True


class _BlasAsPlanned(contextlib.ContextDecorator):
    """The type of :data:`blas_as_planned`."""

    def __enter__(self):
        global _work_depth, _blas_limiter, _prepared_blas
        keep_freed_memory()  # once per process (a setting of malloc's, not of NumPy's)
        wanted = plan().blas_threads
        if _prepared:
            if wanted != _prepared_blas:
                _set_blas_threads(wanted)
                _prepared_blas = wanted
            return self
        with _work_lock:
            if _work_depth == 0:
                _blas_limiter = _blas().limit(limits=wanted)
            _work_depth += 1
        return self

    def __exit__(self, *exc) -> bool:
        global _work_depth, _blas_limiter
        if _prepared:
            return False
        with _work_lock:
            _work_depth -= 1
            if _work_depth == 0:
                limiter, _blas_limiter = _blas_limiter, None
                limiter.restore_original_limits()
        return False


blas_as_planned = _BlasAsPlanned()
"""minireason's work, as a context manager (``with blas_as_planned:``) or a decorator
(``@blas_as_planned``): NumPy's BLAS runs on the plan's BLAS threads inside it
(:attr:`ThreadPlan.blas_threads`: one, but for the ``blas`` plan; threadpoolctl), and when
the outermost one is left, on whichever thread, BLAS gets back the thread counts it had when
the first was entered. Nested and concurrent uses share one limit, set by the first; entering
costs about 15 microseconds, a nested one a lock."""


def _pool_for(n: int) -> ThreadPoolExecutor:
    """The pool of ``n - 1`` threads (made again when the plan's count changed)."""
    global _pool, _pool_size
    if _pool is not None and _pool_size != n:
        _pool.shutdown(wait=True)
        _pool = None
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="minireason")
        _pool_size = n
    return _pool


def matmul(a, b):
    """``a @ b`` for NumPy arrays ``(..., M, K) @ (..., K, N)``, as the plan in use says.

    Under ``pool`` (and ``mixed``, below its ``blas_flops``), two-dimensional products are
    cut into row blocks of ``a``; stacked ones into blocks of their leading axis (``a`` and
    ``b`` must then have the same leading shape, as attention's ``(B, H, ., .)`` operands do).
    There are :data:`BLOCKS_PER_THREAD` blocks per thread, each claimed by whichever thread
    is free. Under ``blas``, and ``mixed`` from its ``blas_flops``, the product goes whole to
    BLAS's threads. Anything else, small products and CuPy arrays are plain ``a @ b``.
    NumPy's products run inside :data:`blas_as_planned`.
    """
    if type(a) is not np.ndarray or type(b) is not np.ndarray:
        return a @ b
    with blas_as_planned:
        return _split_matmul(a, b)


def _split_matmul(a, b):
    """:func:`matmul` of two NumPy arrays."""
    p = plan()
    n = p.threads
    rows = a.shape[0] if a.ndim >= 2 else 0
    flops = 2 * a.size * (b.shape[-1] if b.ndim >= 2 else 1)
    stacked = a.ndim > 2 or b.ndim > 2
    if p.splitter == "blas":
        return a @ b
    if p.splitter == "mixed" and not stacked and flops >= p.blas_flops and n > 1:
        _set_blas_threads(n)  # this product only: BLAS's threads
        try:
            return a @ b
        finally:
            _set_blas_threads(1)
    if n == 1 or rows < n or flops < MIN_SPLIT_FLOPS or (stacked and a.shape[:-2] != b.shape[:-2]):
        return a @ b
    if stacked:
        shape = a.shape[:-1] + b.shape[-1:]
    elif b.ndim == 2:
        shape = (a.shape[0], b.shape[1])
    else:
        return a @ b
    out = np.empty(shape, dtype=np.result_type(a, b))

    def product(block: slice) -> None:
        np.matmul(a[block], b[block] if stacked else b, out=out[block])

    _share_rows(product, rows, min(rows, BLOCKS_PER_THREAD * n), n)
    return out


def rowwise(kernel, *arrays) -> None:
    """Run ``kernel(*parts)`` over row blocks of ``arrays``, split across :func:`threads`.

    ``arrays`` share their first axis (rows). ``kernel`` must compute each row from that row
    of its arguments alone and write its results into output arrays among them (``out=``
    forms); it returns nothing. The rows are cut into chunks of about :data:`CHUNK_ELEMENTS`
    elements, which the threads claim one by one. CuPy arrays, small arrays and one thread:
    a single call on the whole arrays.
    """
    first = arrays[0]
    n = threads()
    rows = first.shape[0] if first.ndim else 0
    if type(first) is not np.ndarray or n == 1 or rows < n or first.size < MIN_SPLIT_ELEMENTS:
        kernel(*arrays)
        return
    keep_freed_memory()
    chunk = max(1, CHUNK_ELEMENTS * rows // first.size)  # rows per chunk

    def run(part: slice) -> None:
        kernel(*(array[part] for array in arrays))

    _share_rows(run, rows, -(-rows // chunk), n)


def _share_rows(work, rows: int, n_blocks: int, n: int) -> None:
    """``work(block)`` for ``n_blocks`` consecutive row blocks of ``range(rows)``, on ``n``
    threads: this one and ``n - 1`` of the pool.

    Each thread claims the next block whenever it is free, so a thread that starts late (a
    pool thread takes tens of microseconds to wake) or runs slowly (a busy machine) simply
    does fewer blocks, instead of the others waiting for it. Returns when every block is
    done, re-raising the first error.
    """
    bounds = [rows * i // n_blocks for i in range(n_blocks + 1)]
    blocks = itertools.count()
    lock = threading.Lock()  # each block is claimed once, with or without a GIL

    def claim() -> int:
        with lock:
            return next(blocks)

    def worker() -> None:
        while (i := claim()) < n_blocks:
            work(slice(bounds[i], bounds[i + 1]))

    futures = [_pool_for(n).submit(worker) for _ in range(n - 1)]
    try:
        worker()
    finally:
        wait(futures)  # no thread still writes into the outputs when this returns
    for future in futures:
        future.result()
