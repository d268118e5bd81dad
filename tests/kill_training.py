"""A small training run that kills itself in the middle of a checkpoint save, for
``tests/test_checkpoint_kill.py``: ``python tests/kill_training.py OUT SAVE CALL SIGNAL``.

The run trains :data:`CONFIG` for :data:`TRAIN` steps with a checkpoint after every step.
During save number ``SAVE`` (1-based) the process sends itself ``SIGNAL`` (``INT`` or
``KILL``) just before the ``CALL``-th ``os.replace`` of that save (``CALL`` one past the
last: just after the save). ``python tests/kill_training.py OUT`` alone trains (or
resumes, when OUT holds a checkpoint) to the end.
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np

from minireason.nn import checkpoint
from minireason.nn.model import GPT, GPTConfig
from minireason.train.batches import TokenWindows
from minireason.train.loop import TrainConfig, train

CONFIG = GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=0.1, seed=2)
TRAIN = TrainConfig(max_steps=4, warmup_steps=1, eval_interval=0, checkpoint_interval=1)
REPLACES_PER_SAVE = 3  # the staged arrays, the description (the switch), the arrays' name


def run(out, resume: bool = False) -> GPT:
    """Train (or resume) the run in ``out`` to the end; returns the model."""
    stream = np.random.default_rng(0).integers(0, 13, 400).astype(np.int32)
    model = GPT(CONFIG)
    train(model, TokenWindows(stream, 2, 8, seed=1), TRAIN, out, resume=resume, progress=False)
    return model


def kill_during_save(save: int, call: int, signum: int) -> None:
    """Make this process send itself ``signum`` before the ``call``-th ``os.replace`` of
    save number ``save`` (module doc)."""
    real_save, real_replace = checkpoint.save_checkpoint, os.replace
    count = {"saves": 0, "calls": 0}

    def replace(src, dst):
        if count["saves"] == save:
            count["calls"] += 1
            if count["calls"] == call:
                os.kill(os.getpid(), signum)
        return real_replace(src, dst)

    def save_checkpoint(*args, **kwargs):
        count["saves"] += 1
        result = real_save(*args, **kwargs)
        if count["saves"] == save and call > REPLACES_PER_SAVE:
            os.kill(os.getpid(), signum)
        return result

    os.replace = replace
    import minireason.train.loop as loop

    loop.save_checkpoint = save_checkpoint


if __name__ == "__main__":
    out = sys.argv[1]
    if len(sys.argv) > 2:
        save, call, name = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
        kill_during_save(save, call, getattr(signal, f"SIG{name}"))
    resume = os.path.isfile(os.path.join(out, checkpoint.JSON_NAME))
    run(out, resume=resume)
