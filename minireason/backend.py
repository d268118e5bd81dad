"""One switch between NumPy (CPU) and CuPy (GPU).

Every module that does array maths gets its array library from here::

    from minireason import backend
    xp = backend.xp()          # numpy, or cupy after backend.set_device("cuda")

The core never imports CuPy itself; only this module does, and only when asked for
``cuda``. The device is chosen, in order of precedence, by ``set_device(...)`` (the CLI's
``--device`` flag calls it) or by the ``MINIREASON_DEVICE`` environment variable
(``cpu`` or ``cuda``); the default is ``cpu``.

On ``cuda``, the model may run the project's own CUDA kernels instead of CuPy's array maths.
The network layer cannot import them (``minireason.gpu`` comes after it), so they are
installed here: :func:`use_gpu_kernels` takes their provider,
:mod:`minireason.gpu.model_kernels` (its ``install()`` does it; the CLI calls that for
``--device cuda``), and the model asks :func:`gpu_kernels`. Two settings say which kernels:
``set_attention`` (``auto``, ``cublas`` or ``flash``: the CLI's ``--attention``) and
``set_fused`` (the fused LayerNorm, GELU, cross-entropy and AdamW kernels, or CuPy's
elementwise operations: ``--fused``). Without a provider, or on ``cpu``, they change nothing.
"""

from __future__ import annotations

import os

import numpy as np

DEVICES = ("cpu", "cuda")
ATTENTIONS = ("auto", "cublas", "flash")  # auto: the faster of the two, timed per shape
_device: str | None = None  # None: not chosen yet, read MINIREASON_DEVICE on first use
_cupy = None
_attention = "auto"
_fused = False
_gpu_kernels = None  # the provider of the model's CUDA kernels, once installed


class BackendError(RuntimeError):
    """The requested device cannot be used (the message says what is missing)."""


def _load_cupy():
    """Import CuPy and check that a GPU is visible; raise BackendError saying which is missing."""
    global _cupy
    if _cupy is not None:
        return _cupy
    try:
        import cupy  # noqa: PLC0415  (the only CuPy import in the package core)
    except ImportError as exc:
        raise BackendError(
            "device 'cuda' needs CuPy, which is not installed: "
            "pip install 'minireason[gpu]' (CuPy for CUDA 12), or use --device cpu"
        ) from exc
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken
        raise BackendError(
            f"device 'cuda': CuPy is installed but no CUDA GPU is usable ({exc}); use --device cpu"
        ) from exc
    if n < 1:
        raise BackendError(
            "device 'cuda': CuPy is installed but no GPU is visible; use --device cpu"
        )
    _cupy = cupy
    return cupy


def set_device(device: str) -> None:
    """Select ``"cpu"`` (NumPy) or ``"cuda"`` (CuPy) for everything that follows."""
    global _device
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cuda":
        _load_cupy()
    _device = device


def get_device() -> str:
    """The current device name, reading ``MINIREASON_DEVICE`` the first time."""
    global _device
    if _device is None:
        env = os.environ.get("MINIREASON_DEVICE", "cpu").strip().lower() or "cpu"
        if env not in DEVICES:
            raise BackendError(f"MINIREASON_DEVICE must be one of {DEVICES}, got {env!r}")
        set_device(env)
    return _device


def set_attention(choice: str) -> None:
    """How the model computes attention on CuPy: ``"cublas"`` (:mod:`minireason.nn.attention`
    on cuBLAS products), ``"flash"`` (the flash kernels 3 and 4) or ``"auto"`` (the faster,
    timed on the GPU for each shape; the default)."""
    global _attention
    if choice not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, got {choice!r}")
    _attention = choice


def get_attention() -> str:
    return _attention


def set_fused(on: bool) -> None:
    """Whether the model on CuPy runs LayerNorm, GELU, cross-entropy and AdamW through the
    fused kernels 6-9 (True) or CuPy's elementwise operations (False, the default)."""
    global _fused
    _fused = bool(on)


def get_fused() -> bool:
    return _fused


def use_gpu_kernels(provider) -> None:
    """Install ``provider`` (a module with ``model_ops(heads, dtype, need_weights)``,
    ``adamw_update_for(p)`` and ``report()``: :mod:`minireason.gpu.model_kernels`) as what
    the model runs on CuPy; None: CuPy's array maths only."""
    global _gpu_kernels
    _gpu_kernels = provider


def gpu_kernels():
    """The installed provider of the model's CUDA kernels, or None."""
    return _gpu_kernels


def xp():
    """The array module for the current device: ``numpy`` or ``cupy``."""
    return _load_cupy() if get_device() == "cuda" else np


def gpu_available() -> tuple[bool, str]:
    """``(True, "")`` when CuPy and a GPU are usable, else ``(False, reason)`` (for test skips)."""
    try:
        _load_cupy()
    except BackendError as exc:
        return False, str(exc)
    return True, ""


def array_module(a):
    """The array module that owns ``a``: ``numpy`` for NumPy arrays and scalars, else ``cupy``."""
    if isinstance(a, (np.ndarray, np.generic, int, float)):
        return np
    return _load_cupy()


def to_numpy(a) -> np.ndarray:
    """Bring an array (NumPy or CuPy) to host memory as a NumPy array."""
    if isinstance(a, np.ndarray):
        return a
    get = getattr(a, "get", None)
    return get() if get is not None else np.asarray(a)


def asarray(a, dtype=None):
    """Put ``a`` on the current device (a no-op copy-free call for NumPy arrays on CPU)."""
    return xp().asarray(a, dtype=dtype)
