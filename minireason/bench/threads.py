"""BLAS threads of NumPy's bundled OpenBLAS: read and set them for a benchmark's run."""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np


def _openblas_functions():
    """``(get, set)`` for the OpenBLAS that NumPy's wheel ships, or None if not found.

    NumPy has no API for its BLAS thread count; ``threadpoolctl`` does this, but is not a
    dependency, so we call the two OpenBLAS functions through ctypes, as it would.
    """
    libdir = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libdir, "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for suffix in ("64_", "_64_", ""):
            for prefix in ("scipy_openblas", "openblas"):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    get.restype = ctypes.c_int
                    set_.argtypes = [ctypes.c_int]
                    return get, set_
    return None


def numpy_threads() -> int | None:
    """The BLAS thread count of NumPy's bundled OpenBLAS, or None if it cannot be reached."""
    funcs = _openblas_functions()
    return None if funcs is None else int(funcs[0]())


def set_numpy_threads(n: int) -> int | None:
    """Set the BLAS thread count of NumPy's bundled OpenBLAS; return the count now in use,
    or None when this NumPy's BLAS cannot be reached (then the environment decides)."""
    funcs = _openblas_functions()
    if funcs is None:
        return None
    funcs[1](int(n))
    return int(funcs[0]())
