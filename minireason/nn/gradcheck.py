"""Centred finite differences in float64: the check every hand-written backward must pass.

    df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / (2 h)          error O(h^2)

For an op with array output ``out = f(x)`` and upstream gradient ``dout``, the quantity
differentiated is the scalar ``sum(f(x) * dout)``, whose gradient is exactly what a
``*_backward(dout, cache)`` returns.

Relative error (used throughout the project, by tests, tutorials and the grader)::

    rel_error(a, b) = ||a - b||_2 / max(||a||_2 + ||b||_2, 1e-300)

Rules of thumb in float64 with h = 1e-6: < 1e-7 is right, 1e-7..1e-4 deserves a look
(kinks such as ReLU, or a sloppy h), > 1e-2 is wrong.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def rel_error(a, b) -> float:
    """Norm-based relative error between two arrays of the same shape (0 when both are 0)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


def numerical_gradient(
    f: Callable[[], object], x: np.ndarray, dout=None, h: float = 1e-6
) -> np.ndarray:
    """Gradient of ``sum(f() * dout)`` with respect to ``x`` by centred differences.

    Args:
        f: a function of no arguments that reads ``x`` (perturbed in place) and returns an
            array (or a scalar, when ``dout`` is None).
        x: float64 array, changed in place during the call and restored afterwards.
        dout: upstream gradient, same shape as ``f()``; None means ``f`` returns a scalar.
        h: step.

    Returns:
        Array shaped like ``x``.
    """
    if x.dtype != np.float64:
        raise ValueError(f"numerical_gradient needs float64 inputs for accuracy, got {x.dtype}")
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        pos = np.asarray(f(), dtype=np.float64)
        x[i] = old - h
        neg = np.asarray(f(), dtype=np.float64)
        x[i] = old
        diff = pos - neg
        grad[i] = (diff if dout is None else diff * dout).sum() / (2 * h)
    return grad


def check_gradients(
    f: Callable[[], object],
    inputs: dict[str, np.ndarray],
    analytic: dict[str, np.ndarray],
    dout=None,
    h: float = 1e-6,
) -> dict[str, float]:
    """Compare analytic gradients with numerical ones; return ``{name: rel_error}``.

    Args:
        f: as in :func:`numerical_gradient`; it must read the arrays in ``inputs``.
        inputs: the float64 arrays to perturb, by name.
        analytic: the hand-written gradients, same names and shapes.
        dout: upstream gradient (None for a scalar ``f``).
    """
    report = {}
    for name, x in inputs.items():
        if name not in analytic:
            raise ValueError(f"check_gradients: no analytic gradient given for {name!r}")
        num = numerical_gradient(f, x, dout, h)
        report[name] = rel_error(analytic[name], num)
    return report
