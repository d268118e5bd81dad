"""Checkpoints: ``.npz`` arrays + a JSON description, written atomically, never pickled.

A checkpoint is a directory holding two files:

- ``checkpoint.npz``: the parameters (``param/NAME``) and AdamW's moments (``adam_m/NAME``,
  ``adam_v/NAME``), loaded with ``allow_pickle=False``;
- ``checkpoint.json``: the model config, the step, AdamW's step count and constants, the
  dropout RNG state (plain ints), the SHA-256 of the ``.npz`` and any ``extra`` JSON the caller
  adds (the training loop stores its config and loss history there).

A save survives a kill at any instant (Ctrl-C, SIGKILL): the new checkpoint is
written whole beside the old one, one atomic rename switches to it, and the old one is
dropped only after. In order:

1. the new arrays go to ``checkpoint.<sha>.npz`` (a temporary file moved into place, ``sha``
   the first hex digits of their SHA-256): the old pair is untouched;
2. the new ``checkpoint.json`` is moved onto the old one (``os.replace``, atomic on POSIX):
   **the switch**. Its ``npz_sha256`` names the new arrays, which are in the staged file;
3. the staged file is moved onto ``checkpoint.npz`` (the old arrays are dropped).

The description is the truth: :func:`load_checkpoint` reads the arrays whose SHA-256 it
records, from ``checkpoint.npz`` or, after a kill between steps 2 and 3, from the staged
file. The next save (or :func:`settle`, which resuming calls) finishes such a switch and
removes what a kill before step 2 left. A damaged ``.npz`` still fails the SHA-256 check,
named (``tests/test_checkpoint_kill.py`` kills a save at each step).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minireason.backend import to_numpy
from minireason.files import atomic_write, read_npz, read_versioned_json, sha256_file
from minireason.nn.model import GPT, GPTConfig, param_shapes

NPZ_NAME = "checkpoint.npz"
JSON_NAME = "checkpoint.json"
STAGED_SHA_CHARS = 16  # hex digits of the SHA-256 in a staged file's name
FORMAT = "minireason-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing parts, corrupted or truncated (the message names the file)."""


# checkpoint.json, field by field (minireason.files.field_problem); ``extra`` is the
# caller's, but the training loop's parts of it are checked here too, as one reads them.
SCHEMA = {
    "step": "count",
    "model_config": "object",
    "optimizer": ("null", {"t": "count", "hyper": "object"}),
    "rng_state": "object",
    "npz_sha256": "sha256",
    "extra": {
        "train_config?": {"max_steps?": "count"},
        "train_losses?": ["point"],
        "val_losses?": ["point"],
    },
}


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns; arrays are NumPy (host) arrays."""

    model_config: GPTConfig
    params: dict
    optimizer: dict  # {"t": int, "m": {name: array}, "v": {name: array}, "hyper": {...}}
    step: int
    rng_state: dict
    extra: dict


def save_checkpoint(directory, model: GPT, optimizer, step: int, extra: dict | None = None) -> Path:
    """Write ``model``'s parameters, ``optimizer``'s state and ``step`` into ``directory``.

    Args:
        directory: created if missing.
        model: a :class:`~minireason.nn.model.GPT`.
        optimizer: an :class:`~minireason.nn.optim.AdamW`, or None (weights only).
        step: number of optimizer steps taken so far.
        extra: any JSON-serialisable dict, returned as ``Checkpoint.extra``.

    Returns:
        The directory's path.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    settle(directory)
    arrays = {f"param/{name}": to_numpy(a) for name, a in model.params.items()}
    opt_json = None
    if optimizer is not None:
        state = optimizer.state_dict()
        arrays.update({f"adam_m/{name}": to_numpy(a) for name, a in state["m"].items()})
        arrays.update({f"adam_v/{name}": to_numpy(a) for name, a in state["v"].items()})
        opt_json = {"t": int(state["t"]), "hyper": state["hyper"]}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    sha = hashlib.sha256(buffer.getbuffer()).hexdigest()
    atomic_write(_staged(directory, sha), lambda f: f.write(buffer.getbuffer()))  # step 1
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "step": int(step),
        "model_config": model.config.to_dict(),
        "optimizer": opt_json,
        "rng_state": model.rng_state(),
        "npz_sha256": sha,
        "extra": extra or {},
    }
    text = json.dumps(meta, indent=1, sort_keys=True)
    atomic_write(directory / JSON_NAME, lambda f: f.write(text.encode("utf-8")))  # step 2
    os.replace(_staged(directory, sha), directory / NPZ_NAME)  # step 3
    return directory


def _staged(directory: Path, sha: str) -> Path:
    """Where step 1 of a save puts the arrays whose SHA-256 is ``sha`` (module doc)."""
    return directory / f"checkpoint.{sha[:STAGED_SHA_CHARS]}.npz"


def settle(directory) -> None:
    """Finish the switch of a save killed between steps 2 and 3 (module doc), and remove
    what saves killed before step 2 left (staged arrays, temporary files): nothing the
    description names is lost. The caller is the directory's one writer."""
    directory = Path(directory)
    try:
        sha = str(_read_json(directory / JSON_NAME)["npz_sha256"])
    except (OSError, ValueError):
        sha = None
    for path in directory.glob("checkpoint.*.npz"):
        if sha is not None and path == _staged(directory, sha) and sha256_file(path) == sha:
            os.replace(path, directory / NPZ_NAME)
        elif path.name != NPZ_NAME:
            path.unlink()
    for path in directory.glob(".checkpoint.*.tmp"):  # atomic_write's, killed mid-write
        path.unlink()


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint description not found: {path}")
    return read_versioned_json(
        path,
        FORMAT,
        FORMAT_VERSION,
        what="checkpoint",
        schema=SCHEMA,
        error=CheckpointError,
    )


def _read_npz(path: Path, expected_sha: str) -> dict:
    staged = _staged(path.parent, str(expected_sha))
    if staged.is_file() and not (path.is_file() and sha256_file(path) == expected_sha):
        path = staged  # a save killed between its steps 2 and 3 (module doc)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint arrays not found: {path}")
    if sha256_file(path) != expected_sha:
        raise CheckpointError(
            f"{path}: SHA-256 does not match {JSON_NAME} (file corrupted, truncated, or from "
            "another save)"
        )
    try:
        return read_npz(path)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None


def load_checkpoint(directory) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        FileNotFoundError: a file is missing (named).
        CheckpointError: a file is corrupted, truncated, inconsistent or incomplete (named).
    """
    directory = Path(directory)
    json_path, npz_path = directory / JSON_NAME, directory / NPZ_NAME
    meta = _read_json(json_path)
    try:
        config = GPTConfig.from_dict(meta["model_config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{json_path}: bad model_config: {exc}") from None
    try:
        np.random.PCG64().state = meta["rng_state"]  # the dropout RNG's, as restore sets it
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{json_path}: bad rng_state ({exc})") from None
    arrays = _read_npz(npz_path, meta["npz_sha256"])
    groups = {"param": {}, "adam_m": {}, "adam_v": {}}
    for key, a in arrays.items():
        group, _, name = key.partition("/")
        if group not in groups:
            raise CheckpointError(f"{npz_path}: unexpected array {key!r}")
        groups[group][name] = a
    if config.n_layer > len(groups["param"]):  # each layer has arrays: too few to list them
        raise CheckpointError(
            f"{json_path}: model_config asks for {config.n_layer} layers, {npz_path.name} "
            f"holds {len(groups['param'])} parameter arrays in all"
        )
    shapes = param_shapes(config)
    expected = set(shapes)
    missing = sorted(expected - set(groups["param"]))
    if missing:
        raise CheckpointError(
            f"{json_path}: model_config needs {len(expected)} parameter arrays, "
            f"{npz_path.name} lacks {len(missing)} of them (e.g. {', '.join(missing[:3])})"
        )
    for name, shape in shapes.items():  # before anything the size of the config is allocated
        if tuple(groups["param"][name].shape) != tuple(shape):
            raise CheckpointError(
                f"{json_path}: model_config asks for {name} of shape {tuple(shape)}, but "
                f"{npz_path.name} holds {tuple(groups['param'][name].shape)}"
            )
    optimizer = None
    if meta["optimizer"] is not None:
        for group in ("adam_m", "adam_v"):
            missing = sorted(expected - set(groups[group]))
            if missing:
                raise CheckpointError(f"{npz_path}: missing optimizer moments {group} {missing}")
        optimizer = {
            "t": meta["optimizer"]["t"],
            "hyper": meta["optimizer"]["hyper"],
            "m": groups["adam_m"],
            "v": groups["adam_v"],
        }
    return Checkpoint(
        model_config=config,
        params=groups["param"],
        optimizer=optimizer,
        step=int(meta["step"]),
        rng_state=meta["rng_state"],
        extra=meta["extra"],
    )


def restore(checkpoint: Checkpoint, model: GPT, optimizer=None) -> None:
    """Put a loaded checkpoint's weights, RNG state and (if given) optimizer state into place.

    Raises CheckpointError if the model's config differs from the checkpoint's, or if an
    optimizer is given but the checkpoint holds no optimizer state.
    """
    if model.config != checkpoint.model_config:
        raise CheckpointError(
            f"checkpoint model_config {checkpoint.model_config} differs from "
            f"the model's {model.config}"
        )
    model.load_params(checkpoint.params)
    model.set_rng_state(checkpoint.rng_state)
    if optimizer is not None:
        if checkpoint.optimizer is None:
            raise CheckpointError("the checkpoint was saved without optimizer state")
        optimizer.load_state_dict(checkpoint.optimizer)


def model_from(checkpoint: Checkpoint) -> GPT:
    """A :class:`GPT` built from a loaded checkpoint's config and weights, in eval mode
    (dropout off), for evaluation and generation."""
    model = GPT(checkpoint.model_config)
    restore(checkpoint, model)
    return model.eval()


def load_model(directory) -> GPT:
    """:func:`model_from` the checkpoint in ``directory``."""
    return model_from(load_checkpoint(directory))
