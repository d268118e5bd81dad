"""A checkpoint survives a kill at any instant of its save: killed (SIGINT or SIGKILL) before
or after each step of the save, the run keeps a loadable checkpoint, and resuming it ends
with exactly the weights of a run never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import kill_training
import numpy as np
import pytest

from minireason.nn.checkpoint import JSON_NAME, NPZ_NAME, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SAVE = 3  # killed while saving step 3, so a good checkpoint of step 2 is there before


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return kill_training.run(tmp_path_factory.mktemp("straight"))


def script(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / "tests" / "kill_training.py"), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("name", ["INT", "KILL"])
@pytest.mark.parametrize("call", range(1, kill_training.REPLACES_PER_SAVE + 2))
def test_a_kill_during_a_save_loses_nothing_and_resumes_exactly(
    tmp_path, uninterrupted, name, call
):
    out = tmp_path / "run"
    killed = script(out, SAVE, call, name)
    signum = getattr(signal, f"SIG{name}")
    assert killed.returncode in (-signum, 1), killed.stderr  # SIGINT: KeyboardInterrupt
    assert load_checkpoint(out).step in (SAVE - 1, SAVE)  # the old or the new, whole
    finished = script(out)
    assert finished.returncode == 0, finished.stderr
    resumed = load_checkpoint(out)
    assert resumed.step == kill_training.TRAIN.max_steps
    for key, value in uninterrupted.params.items():
        np.testing.assert_array_equal(resumed.params[key], value, err_msg=key)
    assert sorted(p.name for p in out.iterdir()) == [JSON_NAME, NPZ_NAME, "loss.png"]
