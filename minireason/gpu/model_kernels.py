"""The model on CuPy through the project's CUDA kernels: the layer pairs, and which to run.

:func:`install` makes this module what the model asks on CuPy
(:func:`minireason.backend.use_gpu_kernels`: the network layer cannot import it); the CLI
installs it for ``--device cuda``.

:class:`minireason.nn.layers.Ops` names the layer pairs a block, the final LayerNorm and the
loss run; ``REFERENCE_OPS`` is the array maths of :mod:`minireason.nn.layers` (on CuPy: cuBLAS
products and CuPy's elementwise kernels). :func:`model_ops` swaps in, for a forward on CuPy:

- **attention** (``--attention``, :func:`minireason.backend.set_attention`):
  ``cublas`` keeps :mod:`minireason.nn.attention` (two cuBLAS products, the ``(B, H, T, T)``
  weights in memory); ``flash`` runs kernel 3 forward (saving the log-sum-exp) and kernel 4
  backward (:func:`flash_attention_forward` / :func:`flash_attention_backward`); ``auto``,
  the default, times one forward and backward of each on the GPU the first time a shape is
  seen (``T`` rounded up to the 32-row tile) and keeps the faster for the rest of the process
  (:func:`probe_attention`; :func:`attention_probes` lists what was measured). A forward that
  must return the attention weights (one without targets: evidence, scoring) runs cuBLAS.
- **the fused kernels 6-8** (``--fused``, :func:`minireason.backend.set_fused`): LayerNorm,
  GELU and the cross-entropy over the vocabulary; and kernel 9 for AdamW's update
  (:func:`adamw_update_for`, which :class:`minireason.nn.optim.AdamW` asks).

The flash and fused kernels compute in float32: a float64 model on CuPy keeps the reference
(``--attention flash`` with one is a ValueError saying so). Launches here do not synchronise
(``check=False``): a CUDA error surfaces at the step's next synchronisation (the loss).
"""

from __future__ import annotations

import statistics
import sys
import warnings
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from minireason import backend
from minireason.gpu import cuda_attention, cuda_fused
from minireason.gpu.flash_emulation import BLOCK_M, HEAD_DIM_MAX
from minireason.nn.layers import REFERENCE_OPS, token_weights
from minireason.nn.optim import adamw_update

PROBE_RUNS = 5  # timed forward + backward pairs per implementation, after one warm-up
MAX_GRID_Y = 65535  # kernels 3 and 4 put batch x heads in grid.y

# --------------------------------------------------------------------------- flash attention (3, 4)


class FlashAttentionCache(NamedTuple):
    """What kernel 4 needs: the heads ``(B, H, T, D)`` (contiguous float32), kernel 3's
    ``out`` ``(B, H, T, D)`` and ``lse`` ``(B, H, T)``."""

    query: object
    key: object
    value: object
    out: object
    lse: object

    @property
    def weights(self):
        """None: flash attention never forms the ``(B, H, T, T)`` weights."""
        return None


def flash_attention_forward(q, k, v):
    """Causal attention of heads ``(B, H, T, D)`` by kernel 3; ``(out, FlashAttentionCache)``."""
    cp = backend.array_module(q)
    q, k, v = (cp.ascontiguousarray(a) for a in (q, k, v))
    out, lse = cuda_attention.attention_forward3_flash(
        q, k, v, is_causal=True, check=False, validate=False
    )
    return out, FlashAttentionCache(q, k, v, out, lse)


def flash_attention_backward(dout, cache: FlashAttentionCache):
    """Kernel 4: ``(dq, dk, dv, None)`` from ``dout`` ``(B, H, T, D)`` (no mask gradient)."""
    dq, dk, dv = cuda_attention.attention_backward4_flash(
        dout, *cache, is_causal=True, check=False, validate=False
    )
    return dq, dk, dv, None


# --------------------------------------------------------------------------- fused layers (6, 7, 8)


class FusedLayerNormCache(NamedTuple):
    x: object  # (N, C), the input (held, not copied: the caller must not change it)
    w: object  # (C,)
    mean: object  # (N,)
    rstd: object  # (N,)


def fused_layernorm_forward(x, w, b, eps=1e-5):
    """Kernel 6 as the pair of :func:`minireason.nn.layers.layernorm_forward`."""
    out, mean, rstd = cuda_fused.layernorm_forward6(x, w, b, eps, check=False)
    return out, FusedLayerNormCache(x, w, mean, rstd)


def fused_layernorm_backward(dout, cache: FusedLayerNormCache):
    """``dx``, ``dw``, ``db`` by kernel 6's backward."""
    return cuda_fused.layernorm_backward6(dout, *cache, check=False)


class FusedGeluCache(NamedTuple):
    x: object  # the input (the backward recomputes the tanh from it)


def fused_gelu_forward(x):
    """Kernel 7 as the pair of :func:`minireason.nn.layers.gelu_forward`."""
    return cuda_fused.gelu_forward7(x, check=False), FusedGeluCache(x)


def fused_gelu_backward(dout, cache: FusedGeluCache):
    return cuda_fused.gelu_backward7(dout, cache.x, check=False)


class FusedCrossEntropyCache(NamedTuple):
    """The fields the model reads of a cross-entropy cache (``weights``, ``nll``), and the
    logits (held, not copied) and ``lse`` ``(N,)`` for kernel 8's backward."""

    logits: object  # (N, V)
    targets: object  # (N,)
    weights: object  # (N,) mask / count
    nll: object  # (N,)
    lse: object  # (N,)


def fused_cross_entropy_forward(logits, targets, mask=None):
    """Kernel 8 as the pair of :func:`minireason.nn.layers.cross_entropy_forward`: the loss
    (a 0-d array) and a :class:`FusedCrossEntropyCache`."""
    lse, nll = cuda_fused.cross_entropy_forward8(logits, targets, check=False)
    weights = token_weights(backend.array_module(logits), mask, logits.shape[0], logits.dtype)
    return (nll * weights).sum(), FusedCrossEntropyCache(logits, targets, weights, nll, lse)


def fused_cross_entropy_backward(cache: FusedCrossEntropyCache):
    """``dlogits`` ``(N, V)`` by kernel 8's backward (a new array; the logits are kept)."""
    return cuda_fused.cross_entropy_backward8(
        cache.logits, cache.targets, cache.weights, cache.lse, check=False
    )


def _ops(flash: bool, fused: bool):
    ops = REFERENCE_OPS
    if flash:
        ops = ops._replace(
            attention_forward=flash_attention_forward, attention_backward=flash_attention_backward
        )
    if fused:
        ops = ops._replace(
            layernorm_forward=fused_layernorm_forward,
            layernorm_backward=fused_layernorm_backward,
            gelu_forward=fused_gelu_forward,
            gelu_backward=fused_gelu_backward,
            cross_entropy_forward=fused_cross_entropy_forward,
            cross_entropy_backward=fused_cross_entropy_backward,
        )
    return ops


OPS = {(flash, fused): _ops(flash, fused) for flash in (False, True) for fused in (False, True)}


# --------------------------------------------------------------------------- the choice


@dataclass
class AttentionProbe:
    """One timing of :func:`probe_attention`: the heads' shape timed, the median ms of a
    causal forward + backward by each path, the choice, and an error that forced cuBLAS."""

    shape: tuple
    cublas_ms: float | None
    flash_ms: float | None
    choice: str
    error: str | None = None


_PROBES: dict[tuple, AttentionProbe] = {}


def flash_unsupported(heads: tuple, dtype) -> str | None:
    """Why the flash kernels cannot run causal attention of heads ``(B, H, T, D)`` of
    ``dtype``, or None when they can."""
    B, H, _, D = heads
    if np.dtype(dtype) != np.float32:
        return f"the flash kernels compute in float32; this model is {np.dtype(dtype)}"
    if D > HEAD_DIM_MAX:
        return f"the flash kernels take head_dim up to {HEAD_DIM_MAX}; this model's is {D}"
    if B * H > MAX_GRID_Y:
        return f"batch x heads = {B * H} is over the {MAX_GRID_Y} blocks of the grid's y"
    return None


def attention_choice(heads: tuple, dtype) -> str:
    """``"flash"`` or ``"cublas"`` for causal attention of heads ``(B, H, T, D)`` on CuPy,
    by :func:`minireason.backend.get_attention` (``auto``: the faster, probed once per
    shape bucket). Raises ValueError when ``flash`` is asked for and cannot run."""
    setting = backend.get_attention()
    if setting == "cublas":
        return "cublas"
    why = flash_unsupported(heads, dtype)
    if setting == "flash":
        if why:
            raise ValueError(f"--attention flash: {why}")
        return "flash"
    if why:
        return "cublas"
    B, H, T, D = heads
    bucket = (B, H, -(-T // BLOCK_M) * BLOCK_M, D)
    if bucket not in _PROBES:
        _PROBES[bucket] = probe_attention(bucket)
    return _PROBES[bucket].choice


def model_ops(heads: tuple, dtype, need_weights: bool):
    """The ``layers.Ops`` of a forward on CuPy with heads ``(B, H, T, D)`` of ``dtype``
    (module docstring); ``need_weights``: the attention weights are wanted (cuBLAS then)."""
    flash = not need_weights and attention_choice(heads, dtype) == "flash"
    fused = backend.get_fused() and np.dtype(dtype) == np.float32
    return OPS[(flash, fused)]


def _time_ms(cp, run, runs: int) -> float:
    """Median milliseconds of ``run()`` between CUDA events, after one untimed run."""
    run()
    cp.cuda.runtime.deviceSynchronize()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(runs):
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end))
    return statistics.median(times)


def probe_attention(heads: tuple, runs: int = PROBE_RUNS) -> AttentionProbe:
    """Time a causal forward + backward of heads ``(B, H, T, D)`` (float32, random, laid out
    as the model's QKV projection lays them out) by cuBLAS and by the flash kernels; the
    faster is the choice. Any failure of the flash path (a compile or launch error) makes
    the choice cuBLAS, with a warning that says why."""
    cp = backend.xp()
    B, H, T, D = heads
    timed: dict[str, float] = {}
    try:
        qkv = cp.random.standard_normal((B, T, 3, H, D), dtype=np.float32)
        q, k, v = qkv.transpose(2, 0, 3, 1, 4)
        dout = cp.random.standard_normal((B, T, H, D), dtype=np.float32).transpose(0, 2, 1, 3)
        paths = {
            "cublas": (REFERENCE_OPS.attention_forward, REFERENCE_OPS.attention_backward),
            "flash": (flash_attention_forward, flash_attention_backward),
        }
        for name, (forward, backward) in paths.items():
            timed[name] = _time_ms(cp, lambda f=forward, b=backward: b(dout, f(q, k, v)[1]), runs)
        probe = AttentionProbe(heads, timed["cublas"], timed["flash"], min(timed, key=timed.get))
    except Exception as exc:  # noqa: BLE001  (any failure: fall back, and say why)
        message = f"{type(exc).__name__}: {exc}"
        warnings.warn(
            f"--attention auto: the flash kernels failed on heads {heads} ({message}); "
            "using cuBLAS attention",
            RuntimeWarning,
            stacklevel=2,
        )
        probe = AttentionProbe(heads, timed.get("cublas"), None, "cublas", message)
    finally:
        cp.get_default_memory_pool().free_all_blocks()
    return probe


def attention_probes() -> list[dict]:
    """What :func:`probe_attention` measured in this process, one dict per shape bucket."""
    return [asdict(p) for p in _PROBES.values()]


# --------------------------------------------------------------------------- adamw (9)


def _fused_adamw_update(p, g, m, v, **hyper):
    cp = backend.array_module(p)
    cuda_fused.adamw_update9(p, cp.ascontiguousarray(g), m, v, check=False, **hyper)


def adamw_update_for(p):
    """The update :class:`minireason.nn.optim.AdamW` applies to parameter ``p``: kernel 9 for
    a float32 CuPy array with ``--fused``, else :func:`minireason.nn.optim.adamw_update`."""
    if backend.get_fused() and p.dtype == np.float32 and p.flags.c_contiguous:
        return _fused_adamw_update
    return adamw_update


# --------------------------------------------------------------------------- installing


def install(attention: str = "auto", fused: bool = False) -> None:
    """Make these kernels what the model runs on CuPy, with ``--attention`` and ``--fused``."""
    backend.set_attention(attention)
    backend.set_fused(fused)
    backend.use_gpu_kernels(sys.modules[__name__])


def report() -> dict:
    """The settings and the probes, for a run's report (``train_report.json``)."""
    return {
        "attention": backend.get_attention(),
        "fused": backend.get_fused(),
        "attention_probes": attention_probes(),  # what --attention auto measured
    }
