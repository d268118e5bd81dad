"""Shared fixtures: where the real data lives, and the GPU skip."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from minireason.data.io import write_head

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


MI_REVIEWS = "amazon-musical-instruments-2014/reviews_Musical_Instruments_5.json.gz"

# A model small enough to train in a second: for tests of the pipeline, not of quality.
MICRO_PRESET = {
    "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 128, "seed": 7},
    "pretrain": {
        "batch_size": 4,
        "block_size": 32,
        "max_steps": 3,
        "warmup_steps": 1,
        "eval_interval": 0,
        "checkpoint_interval": 0,
    },
    "finetune": {
        "batch_size": 4,
        "max_steps": 3,
        "warmup_steps": 1,
        "eval_interval": 0,
        "checkpoint_interval": 0,
    },
}


@pytest.fixture(scope="session")
def mi_slice(data_dir, tmp_path_factory) -> Path:
    """The first 600 lines of the real Musical Instruments reviews, gzipped, laid out as
    ``ROOT/amazon-musical-instruments-2014/reviews_Musical_Instruments_5.json.gz``; returns ROOT."""
    root = tmp_path_factory.mktemp("mi_slice")
    write_head(data_dir / MI_REVIEWS, root / MI_REVIEWS, 600)
    return root


@pytest.fixture(scope="session")
def micro_preset_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("preset") / "micro.json"
    path.write_text(json.dumps(MICRO_PRESET))
    return path


@pytest.fixture(scope="session")
def micro_prepared(data_dir, tmp_path_factory) -> Path:
    """A prepared directory of the first 600 real reviews (``prepare_sample``: small
    vocabulary and aspect set)."""
    from minireason.prep.prepare import prepare_sample

    return prepare_sample(data_dir / MI_REVIEWS, tmp_path_factory.mktemp("micro") / "prep", 600)


@pytest.fixture(scope="session")
def micro_run(micro_prepared, micro_preset_file) -> tuple[Path, Path]:
    """(prepared dir, run dir): the micro model trained for a few steps on the slice."""
    from minireason.train.recipe import run_recipe

    run = micro_prepared.parent / "run"
    run_recipe(micro_prepared, micro_preset_file, run, progress=False)
    return micro_prepared, run


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
