"""A checkpoint survives a kill at any instant of its save: killed (SIGINT or SIGKILL) before
or after each step of the save, the run keeps a loadable checkpoint, and resuming it ends
with exactly the weights of a run never interrupted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import kill_training
import numpy as np
import pytest

from minireason.cli import main
from minireason.nn.checkpoint import (
    JSON_NAME,
    NPZ_NAME,
    STAGED_SHA_CHARS,
    load_checkpoint,
    settle,
)

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


def test_a_run_killed_at_the_switch_of_its_last_save_resumes_whole(micro_run, tmp_path):
    """The state a kill between the switch and the rename leaves (module doc of
    ``nn/checkpoint.py``): the new description, the old arrays under the name, the new ones
    staged. It loads, and ``train --resume`` finishes the switch and the run."""
    prepared, run = micro_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    fine = copy / "finetune"
    sha = json.loads((fine / JSON_NAME).read_text())["npz_sha256"]
    os.replace(fine / NPZ_NAME, fine / f"checkpoint.{sha[:STAGED_SHA_CHARS]}.npz")
    shutil.copy(copy / "pretrain" / NPZ_NAME, fine / NPZ_NAME)  # the arrays of another save
    (copy / "train_report.json").unlink()
    expected = load_checkpoint(run / "finetune").params
    for key, value in load_checkpoint(fine).params.items():  # read from the staged file
        np.testing.assert_array_equal(value, expected[key], err_msg=key)
    preset = copy / "preset.json"
    argv = ["train", "--prepared", str(prepared), "--preset", str(preset), "--out", str(copy)]
    assert main([*argv, "--resume"]) == 0
    assert sorted(p.name for p in fine.glob("*.npz")) == [NPZ_NAME]  # the switch finished
    settle(fine)  # nothing left to finish
    for key, value in load_checkpoint(fine).params.items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)
