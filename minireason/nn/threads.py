"""How the GPT uses the CPU's cores: matrix products split across a small pool of threads,
with the BLAS library itself kept to one thread.

NumPy hands ``a @ b`` to OpenBLAS, which splits one product across its own threads and
*spins* while it waits for them. On a quiet machine that is fast; on a busy one (a laptop
running anything else, or a second training job) the spinning threads steal the cores the
work needs, and a training step gets many times slower (the README's "busy machine" row).
So instead, on the CPU:

- OpenBLAS runs every product on the thread that calls it (one BLAS thread, set once through
  threadpoolctl when this module is first used);
- :func:`matmul` cuts a large product into row blocks (or batch blocks, for the stacked
  ``(B, H, T, T)`` products of attention) and runs them on :func:`threads` threads, one block
  inline and the others on a pool; idle pool threads sleep instead of spinning;
- a product too small to be worth splitting (:data:`MIN_SPLIT_FLOPS`: the one-token steps of
  generation, say) runs inline.

The thread count is ``$MINIREASON_THREADS`` or the number of cores this process may use;
:func:`set_threads` changes it (``bench train --threads``). With CuPy arrays, :func:`matmul`
is plain ``a @ b``. The result is the same product; only where its blocks are computed changes.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Below this many FLOPs a product runs inline: handing a block to a pool thread costs tens of
# microseconds (more on a busy machine), as much as a third of a millisecond of work saves.
MIN_SPLIT_FLOPS = 32_000_000

_threads: int | None = None
_pool: ThreadPoolExecutor | None = None
_blas_single = False


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


def blas_single_threaded() -> None:
    """Keep NumPy's BLAS to one thread (once per process; threadpoolctl finds the library)."""
    global _blas_single
    if not _blas_single:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
        _blas_single = True


def _pool_for(n: int) -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="minireason")
    return _pool


def matmul(a, b):
    """``a @ b`` for NumPy arrays ``(..., M, K) @ (..., K, N)``, split across :func:`threads`.

    Two-dimensional products are cut into row blocks of ``a``; stacked ones into blocks of
    their leading axis (``a`` and ``b`` must then have the same leading shape, as attention's
    ``(B, H, ., .)`` operands do). Anything else, small products and CuPy arrays are plain
    ``a @ b``.
    """
    if type(a) is not np.ndarray or type(b) is not np.ndarray:
        return a @ b
    blas_single_threaded()
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
    blocks = [slice(rows * i // n, rows * (i + 1) // n) for i in range(n)]

    def product(block: slice) -> None:
        np.matmul(a[block], b[block] if stacked else b, out=out[block])

    futures = [_pool_for(n).submit(product, block) for block in blocks[1:]]
    product(blocks[0])
    for future in futures:
        future.result()
    return out
