"""How the GPT uses the CPU's cores: matrix products split across a small pool of threads,
with the BLAS library itself kept to one thread while minireason works.

NumPy hands ``a @ b`` to OpenBLAS, which splits one product across its own threads and
*spins* while it waits for them. On a quiet machine that is fast; on a busy one (a laptop
running anything else, or a second training job) the spinning threads steal the cores the
work needs, and a training step gets many times slower (docs/speed.md's busy-machine rows).
So instead, on the CPU:

- OpenBLAS runs every product on the thread that calls it: one BLAS thread, set through
  threadpoolctl while minireason works (:data:`one_blas_thread`, a context manager and a
  decorator around the model's forward and backward, generation and training, and inside
  :func:`matmul` and :func:`rowwise`) and given back as it was when the work returns, so a
  notebook's own NumPy keeps the BLAS threads it had;
- :func:`matmul` cuts a large product into row blocks (or batch blocks, for the stacked
  ``(B, H, T, T)`` products of attention) and runs them on :func:`threads` threads: the
  calling thread and a pool, each claiming the next block when it is free, so that a thread
  that starts late or is slowed by other work does fewer; idle pool threads sleep instead of
  spinning;
- a product too small to be worth splitting (:data:`MIN_SPLIT_FLOPS`: the one-token steps of
  generation, say) runs inline.

Elementwise work (GELU, the softmaxes, LayerNorm) goes the same way through :func:`rowwise`:
a layer writes its work as a *kernel* over rows with ``out=`` ufuncs, and the threads run it
over chunks of about :data:`CHUNK_ELEMENTS` elements, so that the chain of passes a kernel
makes over a chunk stays in the core's cache instead of memory.

The thread count is ``$MINIREASON_THREADS`` or the number of cores this process may use;
:func:`set_threads` changes it (``bench train --threads``). With CuPy arrays, :func:`matmul`
is plain ``a @ b`` and :func:`rowwise` one call on the whole arrays.

Which thread computes a block never changes a result. Elementwise kernels and stacked
products (each matrix whole in one block) give the same bits on any thread count. A 2-D
product is cut into one row block per thread, and OpenBLAS may round a row differently in
a block of another height: so the linear layers, and the training or the generated text
after them, can differ between thread counts by float32 rounding (measured: up to 4e-6 of
the outputs' typical size). On the same thread count every run gives the same bits, which is
what resuming needs.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

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

_threads: int | None = None
_pool: ThreadPoolExecutor | None = None
_prepared = False  # prepare_process() ran: BLAS is on one thread for the rest of the process
_work_lock = threading.Lock()
_work_depth = 0  # calls inside one_blas_thread now, on every thread, nested ones included
_blas_limiter = None  # threadpoolctl's limiter while _work_depth > 0: it restores the limits
_blas_controller = None  # threadpoolctl's view of the BLAS libraries, made at first use


def _default_threads() -> int:
    env = os.environ.get("MINIREASON_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"MINIREASON_THREADS={env!r}: expected a positive integer") from None
        if n < 1:
            raise ValueError(f"MINIREASON_THREADS={env!r}: expected a positive integer")
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads() -> int:
    """The number of threads matrix products are split across."""
    global _threads
    if _threads is None:
        _threads = _default_threads()
    return _threads


def set_threads(n: int) -> int:
    """Split products across ``n`` threads from now on (``n >= 1``); returns the previous count."""
    global _threads, _pool
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    before = threads()
    if n != _threads and _pool is not None:
        _pool.shutdown(wait=True)
        _pool = None
    _threads = n
    return before


def prepare_process() -> None:
    """For a process of minireason's own (the grader's child): NumPy's BLAS on one thread
    for the rest of the process, and freed large arrays kept for reuse
    (:func:`minireason.nn.memory.keep_freed_memory`). :data:`one_blas_thread` then does
    nothing. Elsewhere (a notebook, a script) minireason never calls it."""
    global _prepared
    if not _prepared:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
        keep_freed_memory()
        _prepared = True


class _OneBlasThread(contextlib.ContextDecorator):
    """The type of :data:`one_blas_thread`."""

    def __enter__(self):
        global _work_depth, _blas_limiter, _blas_controller
        keep_freed_memory()  # once per process (a setting of malloc's, not of NumPy's)
        if _prepared:
            return self
        with _work_lock:
            if _work_depth == 0:
                if _blas_controller is None:
                    from threadpoolctl import ThreadpoolController

                    _blas_controller = ThreadpoolController()
                _blas_limiter = _blas_controller.limit(limits=1, user_api="blas")
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


one_blas_thread = _OneBlasThread()
"""minireason's work, as a context manager (``with one_blas_thread:``) or a decorator
(``@one_blas_thread``): NumPy's BLAS runs on one thread inside it (threadpoolctl; the
products are split by :func:`matmul` instead), and when the outermost one is left, on
whichever thread, BLAS gets back the thread counts it had when the first was entered.
Nested and concurrent uses share one limit; entering costs about 15 microseconds, a nested
one a lock. After :func:`prepare_process` it does nothing."""


def _pool_for(n: int) -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="minireason")
    return _pool


def matmul(a, b):
    """``a @ b`` for NumPy arrays ``(..., M, K) @ (..., K, N)``, split across :func:`threads`.

    Two-dimensional products are cut into row blocks of ``a``; stacked ones into blocks of
    their leading axis (``a`` and ``b`` must then have the same leading shape, as attention's
    ``(B, H, ., .)`` operands do). There are :data:`BLOCKS_PER_THREAD` blocks per thread,
    each claimed by whichever thread is free. Anything else, small products and CuPy arrays
    are plain ``a @ b``. NumPy's products run inside :data:`one_blas_thread`.
    """
    if type(a) is not np.ndarray or type(b) is not np.ndarray:
        return a @ b
    with one_blas_thread:
        return _split_matmul(a, b)


def _split_matmul(a, b):
    """:func:`matmul` of two NumPy arrays."""
    n = threads()
    rows = a.shape[0] if a.ndim >= 2 else 0
    flops = 2 * a.size * (b.shape[-1] if b.ndim >= 2 else 1)
    stacked = a.ndim > 2 or b.ndim > 2
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
