"""Launch the hand-written CUDA attention kernels (``kernels/*.cu``) from CuPy.

The kernels, numbered as in llm.c, each a step up from the one before:

====  ===============================  ================================================
 1    :func:`attention_forward1_naive`   one thread block per query row, all in one kernel
 2    :func:`attention_forward2_fused`   cuBLAS ``Q K^T``, fused scale+mask+softmax, cuBLAS ``P V``
 3    :func:`attention_forward3_flash`   tiled flash attention, online softmax, saves lse
 4    :func:`attention_backward4_flash`  backward of 3, recomputing P from the saved lse
 5    :func:`attention_forward5_flash`   3 with double-buffered K/V tiles (cp.async), 16 rows
                                         a warp; its output and lse feed 4 as 3's do
====  ===============================  ================================================

The fused elementwise kernels 6-9 (LayerNorm, GELU, cross-entropy, AdamW) are launched by
:mod:`minireason.gpu.cuda_fused` through :func:`launch` below.

Every launcher takes CuPy ``float32`` arrays laid out ``(..., heads, seq, head_dim)`` like
:mod:`minireason.nn.attention` (the reference they are tested against), flattens the leading
dims into one batch axis ``B`` for the kernel, and returns arrays of the input's shape.
Outputs may be passed in (``out=``, ``dq=`` ...) to reuse buffers; otherwise they are
allocated. Inputs are not changed.

Sources are read with :mod:`importlib.resources` from the ``minireason/gpu/kernels`` package
data (a link to the top-level ``kernels/`` folder) and compiled once per process by
``cupy.RawModule`` (NVRTC). With ``check=True`` (the default) each launcher synchronises
and turns any CUDA error into a :class:`KernelError` naming the kernel and shapes; the
benchmark passes ``check=False`` inside its timed loop and checks once afterwards.

CuPy is never imported here: the array module comes from the arrays themselves through
:func:`minireason.backend.array_module`.
"""

from __future__ import annotations

import functools
import math
from importlib import resources

import numpy as np

from minireason.backend import array_module
from minireason.gpu.flash_emulation import BLOCK_M, BLOCK_N, FLASH5_BLOCK_M, check_flash_shapes
from minireason.nn.attention import check_attention_inputs

# Launch geometry; tests/test_kernels_compile.py checks these against the .cu #defines.
NAIVE_THREADS = 128  # attention_forward1_naive.cu
ROWS_PER_BLOCK = 4  # attention_forward2_fused_softmax.cu: warps (= rows) per block
FLASH_THREADS = 128  # attention_forward3_flash.cu, attention_backward4_flash.cu
DELTA_ROWS_PER_BLOCK = 4  # attention_backward4_flash.cu
FLASH5_THREADS = 128  # attention_forward5_flash_double_buffered.cu
DEFAULT_SHARED_BYTES = 48 * 1024  # more dynamic shared memory needs an explicit opt-in

KERNEL_FILES = {
    "attention_forward1_naive": "attention_forward1_naive.cu",
    "scale_mask_softmax": "attention_forward2_fused_softmax.cu",
    "attention_forward3_flash": "attention_forward3_flash.cu",
    "flash_backward_delta": "attention_backward4_flash.cu",
    "flash_backward_dkdv": "attention_backward4_flash.cu",
    "flash_backward_dq": "attention_backward4_flash.cu",
    "attention_forward5_flash_d64": "attention_forward5_flash_double_buffered.cu",
    "attention_forward5_flash_d128": "attention_forward5_flash_double_buffered.cu",
}


class KernelError(RuntimeError):
    """A kernel failed to compile or to run; the message names the kernel and the shapes."""


# --------------------------------------------------------------------------- sources and modules


def kernel_dir():
    """The packaged ``kernels`` folder (a Traversable; a real path in a normal install)."""
    return resources.files("minireason.gpu") / "kernels"


def kernel_source(filename: str) -> str:
    """The CUDA C source of ``filename`` (e.g. ``"attention_forward3_flash.cu"``)."""
    path = kernel_dir() / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"CUDA source {filename} is not in the package data at {kernel_dir()}"
        )
    return path.read_text(encoding="utf-8")


@functools.cache
def _module(cp, filename: str):
    """``cupy.RawModule`` for one ``.cu`` file, compiled on first use (NVRTC)."""
    try:
        module = cp.RawModule(code=kernel_source(filename), options=("--std=c++14",))
        module.compile()
    except cp.cuda.compiler.CompileException as exc:
        raise KernelError(f"{filename} failed to compile with NVRTC:\n{exc}") from exc
    return module


def kernel_function(cp, name: str, filename: str | None = None):
    """The compiled ``__global__`` function ``name`` of ``filename`` (default: its file in
    :data:`KERNEL_FILES`)."""
    return _module(cp, filename or KERNEL_FILES[name]).get_function(name)


def launch(
    cp, name: str, grid, block, args, shared_bytes: int = 0, what: str = "", filename=None
) -> None:
    """Launch kernel ``name`` (of ``filename``, default its :data:`KERNEL_FILES` entry) on a
    ``grid`` of ``block`` threads; opt in to more than 48 KiB of dynamic shared memory if
    needed. A launch the driver refuses raises :class:`KernelError` naming it and ``what``."""
    fn = kernel_function(cp, name, filename)
    if shared_bytes > DEFAULT_SHARED_BYTES:
        limit = cp.cuda.Device().attributes["MaxSharedMemoryPerBlockOptin"]
        if shared_bytes > limit:
            raise ValueError(
                f"{name} {what}: needs {shared_bytes} bytes of shared memory per block, "
                f"this GPU allows {limit}"
            )
        if fn.max_dynamic_shared_size_bytes < shared_bytes:
            fn.max_dynamic_shared_size_bytes = shared_bytes
    try:
        fn(tuple(grid), tuple(block), args, shared_mem=shared_bytes)
    except (cp.cuda.driver.CUDADriverError, cp.cuda.runtime.CUDARuntimeError) as exc:
        raise KernelError(f"{name} {what}: launch failed: {exc}") from exc


def check_cuda(cp, what: str) -> None:
    """Wait for the GPU and raise :class:`KernelError` for any pending CUDA error."""
    try:
        cp.cuda.runtime.deviceSynchronize()
    except (cp.cuda.driver.CUDADriverError, cp.cuda.runtime.CUDARuntimeError) as exc:
        raise KernelError(f"{what}: {exc}") from exc


# --------------------------------------------------------------------------- argument handling


def gpu_float32(name: str, a):
    """The array module of ``a`` (CuPy), after checking it is a float32 GPU array."""
    xp = array_module(a)
    if xp is np:
        raise ValueError(f"{name} must be a CuPy array on the GPU, got a NumPy array {a.shape}")
    if a.dtype != np.float32:
        raise ValueError(f"{name} must be float32 for the CUDA kernels, got {a.dtype} {a.shape}")
    return xp


def _as_batched(cp, a):
    """``(..., T, D) -> (B, T, D)`` C-contiguous (a view when ``a`` already is)."""
    return cp.ascontiguousarray(a).reshape(-1, *a.shape[-2:])


def _output(cp, name: str, given, shape):
    """``given`` checked to be a contiguous float32 GPU array of ``shape``, or a new one."""
    if given is None:
        return cp.empty(shape, dtype=np.float32)
    gpu_float32(name, given)
    if given.shape != tuple(shape) or not given.flags.c_contiguous:
        raise ValueError(
            f"{name} must be a C-contiguous array of shape {tuple(shape)}, got {given.shape}"
        )
    return given


def _bias(cp, attn_mask, score_shape):
    """``(B, Tq, Tk)`` float32 additive bias from a bool or float mask (0 / -inf for bool)."""
    if attn_mask.dtype == bool:
        bias = cp.where(attn_mask, np.float32(0.0), np.float32(-np.inf))
    else:
        bias = attn_mask.astype(np.float32)
    bias = cp.ascontiguousarray(cp.broadcast_to(bias, score_shape), dtype=np.float32)
    return bias.reshape(-1, *score_shape[-2:])


def _scale(scale, head_dim: int) -> np.float32:
    return np.float32(1.0 / math.sqrt(head_dim) if scale is None else scale)


# --------------------------------------------------------------------------- kernel 1


def attention_forward1_naive(
    query,
    key,
    value,
    attn_mask=None,
    is_causal=False,
    scale=None,
    out=None,
    check=True,
    validate=True,
):
    """Kernel 1: ``softmax(Q K^T * scale + mask) V``, one thread block per query row.

    Args:
        query ``(..., Tq, E)``, key ``(..., Tk, E)``, value ``(..., Tk, Ev)``: float32 CuPy.
        attn_mask: None, or a bool (True = may attend) / float (added) CuPy array
            broadcastable to ``(..., Tq, Tk)``; not together with ``is_causal``.
        is_causal, scale: as in :func:`minireason.nn.attention.attention_forward`.
        out: optional ``(..., Tq, Ev)`` float32 buffer to write into.
        check: synchronise and raise :class:`KernelError` on a CUDA error.
        validate: check shapes, dtypes and finiteness first (a ValueError names the problem).

    Returns:
        ``out`` ``(..., Tq, Ev)``.
    """
    cp = gpu_float32("query", query)
    if validate:
        for name, a in (("key", key), ("value", value)):
            gpu_float32(name, a)
        check_attention_inputs(query, key, value, attn_mask, is_causal, scale)
    q, k, v = (_as_batched(cp, a) for a in (query, key, value))
    B, Tq, E = q.shape
    Tk, Ev = k.shape[1], v.shape[2]
    out_shape = (*query.shape[:-1], Ev)
    result = _output(cp, "out", out, out_shape)
    score_shape = (*query.shape[:-1], Tk)
    bias = cp.empty(1, dtype=np.float32) if attn_mask is None else _bias(cp, attn_mask, score_shape)
    what = f"(query {query.shape}, key {key.shape}, value {value.shape})"
    launch(
        cp,
        "attention_forward1_naive",
        (Tq, B),
        (NAIVE_THREADS,),
        (
            q,
            k,
            v,
            bias,
            result,
            np.int32(Tq),
            np.int32(Tk),
            np.int32(E),
            np.int32(Ev),
            _scale(scale, E),
            np.int32(bool(is_causal)),
            np.int32(attn_mask is not None),
        ),
        shared_bytes=4 * (Tk + NAIVE_THREADS),
        what=what,
    )
    if check:
        check_cuda(cp, f"attention_forward1_naive {what}")
    return result


# --------------------------------------------------------------------------- kernel 2


def scale_mask_softmax(scores, bias=None, is_causal=False, scale=1.0, check=True):
    """Kernel 2's fused step, in place: ``scores <- softmax(scale * scores + bias)``.

    Args:
        scores: ``(B, Tq, Tk)`` float32 C-contiguous CuPy array, overwritten with the weights.
        bias: None or ``(B, Tq, Tk)`` float32 C-contiguous (0 / -inf for a boolean mask).
        is_causal: mask key ``j > i`` of row ``i``.
        scale: multiplier of the raw scores.

    Returns:
        ``scores`` (the same array). Rows with every key masked become zeros.
    """
    cp = gpu_float32("scores", scores)
    if scores.ndim != 3 or not scores.flags.c_contiguous:
        raise ValueError(f"scores must be a C-contiguous (B, Tq, Tk) array, got {scores.shape}")
    if bias is not None and (bias.shape != scores.shape or not bias.flags.c_contiguous):
        raise ValueError(
            f"bias must be C-contiguous of the scores' shape {scores.shape}, got {bias.shape}"
        )
    B, Tq, Tk = scores.shape
    has_bias = bias is not None
    bias_arg = bias if has_bias else cp.empty(1, dtype=np.float32)
    grid = (math.ceil(B * Tq / ROWS_PER_BLOCK),)
    launch(
        cp,
        "scale_mask_softmax",
        grid,
        (32 * ROWS_PER_BLOCK,),
        (
            scores,
            bias_arg,
            np.int32(B),
            np.int32(Tq),
            np.int32(Tk),
            np.float32(scale),
            np.int32(bool(is_causal)),
            np.int32(has_bias),
        ),
        what=f"(scores {scores.shape})",
    )
    if check:
        check_cuda(cp, f"scale_mask_softmax (scores {scores.shape})")
    return scores


def attention_forward2_fused(
    query,
    key,
    value,
    attn_mask=None,
    is_causal=False,
    scale=None,
    out=None,
    check=True,
    validate=True,
):
    """Kernel 2: cuBLAS ``S = Q K^T``, fused :func:`scale_mask_softmax`, cuBLAS ``P V``.

    Same arguments and result as :func:`attention_forward1_naive`. Holds the
    ``(..., Tq, Tk)`` score matrix in GPU memory.
    """
    cp = gpu_float32("query", query)
    if validate:
        for name, a in (("key", key), ("value", value)):
            gpu_float32(name, a)
        check_attention_inputs(query, key, value, attn_mask, is_causal, scale)
    q, k, v = (_as_batched(cp, a) for a in (query, key, value))
    Tk, Ev = k.shape[1], v.shape[2]
    result = _output(cp, "out", out, (*query.shape[:-1], Ev))
    scores = cp.matmul(q, k.transpose(0, 2, 1))  # (B, Tq, Tk), cuBLAS
    score_shape = (*query.shape[:-1], Tk)
    bias = None if attn_mask is None else _bias(cp, attn_mask, score_shape)
    scale_mask_softmax(scores, bias, is_causal, _scale(scale, q.shape[2]), check=False)
    cp.matmul(scores, v, out=result.reshape(-1, q.shape[1], Ev))  # (B, Tq, Ev), cuBLAS
    if check:
        check_cuda(cp, f"attention_forward2_fused (query {query.shape}, key {key.shape})")
    return result


# --------------------------------------------------------------------------- kernels 3 and 4


def flash_forward_shared_bytes(head_dim: int) -> int:
    """Dynamic shared memory of kernel 3: Q (BM, D4), K (BN, D4+4), V (BN, D), P (BM, BN).

    ``D4`` is head_dim rounded up to a multiple of 4 (the kernel reads Q and K as float4).
    """
    d, d4 = head_dim, -(-head_dim // 4) * 4
    return 4 * (BLOCK_M * d4 + BLOCK_N * (d4 + 4) + BLOCK_N * d + BLOCK_M * BLOCK_N)


def flash_dkdv_shared_bytes(head_dim: int) -> int:
    """``flash_backward_dkdv``: K, V (BN, D); Q, dout (BM, D+1); P^T, dS^T (BN, BM); lse, delta."""
    d = head_dim
    return 4 * (2 * BLOCK_N * d + 2 * BLOCK_M * (d + 1) + 2 * BLOCK_N * BLOCK_M + 2 * BLOCK_M)


def flash_dq_shared_bytes(head_dim: int) -> int:
    """``flash_backward_dq``: Q, dout (BM, D); K, V (BN, D+1); dS (BM, BN)."""
    d = head_dim
    return 4 * (2 * BLOCK_M * d + 2 * BLOCK_N * (d + 1) + BLOCK_M * BLOCK_N)


def _check_flash(names_arrays, query, key, value):
    cp = None
    for name, a in names_arrays:
        cp = gpu_float32(name, a)
    check_flash_shapes(query, key, value)
    return cp


def _flash_forward_operands(query, key, value, out, lse, validate):
    """What a flash forward launcher (kernels 3 and 5) starts from: the array module, Q, K and
    V as ``(B, T, D)`` batches, and the ``out`` ``(..., Tq, D)`` and ``lse`` ``(..., Tq)``
    buffers (given or new); the inputs checked first when ``validate``."""
    if validate:
        cp = _check_flash((("query", query), ("key", key), ("value", value)), query, key, value)
    else:
        cp = array_module(query)
    qkv = tuple(_as_batched(cp, a) for a in (query, key, value))
    result = _output(cp, "out", out, query.shape)
    return cp, qkv, result, _output(cp, "lse", lse, query.shape[:-1])


def attention_forward3_flash(
    query, key, value, is_causal=False, scale=None, out=None, lse=None, check=True, validate=True
):
    """Kernel 3: flash attention forward (see :func:`minireason.gpu.flash_emulation.flash_forward_emulated`).

    Args:
        query ``(..., Tq, D)``, key ``(..., Tk, D)``, value ``(..., Tk, D)``: float32 CuPy,
            ``D <= 128``.
        is_causal, scale: as in :func:`minireason.nn.attention.attention_forward`.
        out, lse: optional float32 buffers ``(..., Tq, D)`` and ``(..., Tq)``.

    Returns:
        ``out`` ``(..., Tq, D)`` and ``lse`` ``(..., Tq)``, the log-sum-exp of each row's
        scaled scores (kept for :func:`attention_backward4_flash`).
    """
    cp, (q, k, v), result, lse_out = _flash_forward_operands(query, key, value, out, lse, validate)
    B, Tq, D = q.shape
    Tk = k.shape[1]
    what = f"(query {query.shape}, key {key.shape})"
    launch(
        cp,
        "attention_forward3_flash",
        (math.ceil(Tq / BLOCK_M), B),
        (FLASH_THREADS,),
        (
            q,
            k,
            v,
            result,
            lse_out,
            np.int32(Tq),
            np.int32(Tk),
            np.int32(D),
            _scale(scale, D),
            np.int32(bool(is_causal)),
        ),
        shared_bytes=flash_forward_shared_bytes(D),
        what=what,
    )
    if check:
        check_cuda(cp, f"attention_forward3_flash {what}")
    return result, lse_out


def attention_backward4_flash(
    dout,
    query,
    key,
    value,
    out,
    lse,
    is_causal=False,
    scale=None,
    dq=None,
    dk=None,
    dv=None,
    check=True,
    validate=True,
):
    """Kernel 4: gradients of kernel 3 (see :func:`minireason.gpu.flash_emulation.flash_backward_emulated`).

    Args:
        dout ``(..., Tq, D)``; query, key, value, out ``(..., T, D)`` and lse ``(..., Tq)``
            as given to / returned by :func:`attention_forward3_flash`; all float32 CuPy.
        is_causal, scale: as in the forward.
        dq, dk, dv: optional float32 buffers of the query / key / value shapes.

    Returns:
        ``dq``, ``dk``, ``dv``.
    """
    if validate:
        cp = _check_flash(
            (
                ("dout", dout),
                ("query", query),
                ("key", key),
                ("value", value),
                ("out", out),
                ("lse", lse),
            ),
            query,
            key,
            value,
        )
        if dout.shape != query.shape or out.shape != query.shape or lse.shape != query.shape[:-1]:
            raise ValueError(
                f"dout {dout.shape} and out {out.shape} must match query {query.shape}, "
                f"and lse {lse.shape} must be {query.shape[:-1]}"
            )
    else:
        cp = array_module(query)
    q, k, v, do, o = (_as_batched(cp, a) for a in (query, key, value, dout, out))
    lse2 = cp.ascontiguousarray(lse).reshape(q.shape[:2])
    B, Tq, D = q.shape
    Tk = k.shape[1]
    dq_out = _output(cp, "dq", dq, query.shape)
    dk_out = _output(cp, "dk", dk, key.shape)
    dv_out = _output(cp, "dv", dv, value.shape)
    delta = cp.empty((B, Tq), dtype=np.float32)
    what = f"(query {query.shape}, key {key.shape})"
    sizes = (np.int32(Tq), np.int32(Tk), np.int32(D), _scale(scale, D), np.int32(bool(is_causal)))
    launch(
        cp,
        "flash_backward_delta",
        (math.ceil(B * Tq / DELTA_ROWS_PER_BLOCK),),
        (32 * DELTA_ROWS_PER_BLOCK,),
        (do, o, delta, np.int32(B * Tq), np.int32(D)),
        what=what,
    )
    launch(
        cp,
        "flash_backward_dkdv",
        (math.ceil(Tk / BLOCK_N), B),
        (FLASH_THREADS,),
        (q, k, v, do, lse2, delta, dk_out, dv_out, *sizes),
        shared_bytes=flash_dkdv_shared_bytes(D),
        what=what,
    )
    launch(
        cp,
        "flash_backward_dq",
        (math.ceil(Tq / BLOCK_M), B),
        (FLASH_THREADS,),
        (q, k, v, do, lse2, delta, dq_out, *sizes),
        shared_bytes=flash_dq_shared_bytes(D),
        what=what,
    )
    if check:
        check_cuda(cp, f"attention_backward4_flash {what}")
    return dq_out, dk_out, dv_out


# --------------------------------------------------------------------------- kernel 5


def flash5_shared_bytes(head_dim: int) -> int:
    """Dynamic shared memory of kernel 5: Q (64, D4), K 2 x (BN, D4+4), V 2 x (BN, D4), P (64, BN)."""
    d4 = -(-head_dim // 4) * 4
    m, n = FLASH5_BLOCK_M, BLOCK_N
    return 4 * (m * d4 + 2 * n * (d4 + 4) + 2 * n * d4 + m * n)


def flash5_kernel_name(head_dim: int) -> str:
    """Kernel 5's entry point for ``head_dim``: the 2-column one up to 64, else the 4-column one."""
    return "attention_forward5_flash_d64" if head_dim <= 64 else "attention_forward5_flash_d128"


def _address(a) -> int:
    """The device (or, for a NumPy stand-in in the tests, host) address of ``a``'s first element."""
    ptr = getattr(a.data, "ptr", None)
    return a.ctypes.data if ptr is None else ptr


def attention_forward5_flash(
    query, key, value, is_causal=False, scale=None, out=None, lse=None, check=True, validate=True
):
    """Kernel 5: kernel 3's flash forward, its K/V tiles double-buffered (see
    :func:`minireason.gpu.flash_emulation.flash_forward5_emulated`). Needs sm_80 or later.

    Same arguments and results as :func:`attention_forward3_flash` (``out`` ``(..., Tq, D)``,
    ``lse`` ``(..., Tq)``, both usable by :func:`attention_backward4_flash`). The copies move
    16 bytes at a time when ``D`` is a multiple of 4 and the inputs are 16-byte aligned,
    else 4.
    """
    cp, (q, k, v), result, lse_out = _flash_forward_operands(query, key, value, out, lse, validate)
    B, Tq, D = q.shape
    Tk = k.shape[1]
    use_16 = D % 4 == 0 and all(_address(a) % 16 == 0 for a in (q, k, v))
    name = flash5_kernel_name(D)
    what = f"(query {query.shape}, key {key.shape})"
    launch(
        cp,
        name,
        (math.ceil(Tq / FLASH5_BLOCK_M), B),
        (FLASH5_THREADS,),
        (
            q,
            k,
            v,
            result,
            lse_out,
            np.int32(Tq),
            np.int32(Tk),
            np.int32(D),
            _scale(scale, D),
            np.int32(bool(is_causal)),
            np.int32(use_16),
        ),
        shared_bytes=flash5_shared_bytes(D),
        what=what,
    )
    if check:
        check_cuda(cp, f"{name} {what}")
    return result, lse_out
