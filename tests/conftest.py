"""Shared fixtures: where the real data lives, and the GPU skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """``$MINIREASON_DATA_DIR`` or ``../shared/data`` beside the checkout."""
    env = os.environ.get("MINIREASON_DATA_DIR")
    return Path(env) if env else (ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real datasets (read-only). Skips, saying why, when they are not there."""
    d = data_root()
    if not d.is_dir():
        pytest.skip(f"real data not found at {d}; set MINIREASON_DATA_DIR")
    return d


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``gpu`` when CuPy or a GPU is missing, with the reason."""
    if not any("gpu" in item.keywords for item in items):
        return
    from minireason.backend import gpu_available

    ok, why = gpu_available()
    if ok:
        return
    skip = pytest.mark.skip(reason=f"no GPU: {why}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
