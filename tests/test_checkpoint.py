"""Checkpoints: exact round trip, atomic writes, clear errors on damaged files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minireason.nn.checkpoint import (
    JSON_NAME,
    NPZ_NAME,
    CheckpointError,
    load_checkpoint,
    load_model,
    restore,
    save_checkpoint,
)
from minireason.nn.model import GPT, GPTConfig
from minireason.nn.optim import AdamW

CONFIG = GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=0.1, seed=2)


def trained(steps=3):
    model = GPT(CONFIG)
    opt = AdamW(model.params, lr=1e-2, decay=model.decay_mask())
    rng = np.random.default_rng(0)
    for _ in range(steps):
        idx, targets = rng.integers(0, 13, (2, 8)), rng.integers(0, 13, (2, 8))
        model.forward(idx, targets)
        opt.step(model.backward())
    return model, opt


def test_round_trip_restores_weights_moments_rng_and_extra(tmp_path):
    model, opt = trained()
    save_checkpoint(tmp_path, model, opt, step=3, extra={"note": "hello", "losses": [[1, 2.5]]})
    assert sorted(p.name for p in tmp_path.iterdir()) == [JSON_NAME, NPZ_NAME]  # no temp files left
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.step == 3 and ckpt.model_config == CONFIG
    assert ckpt.extra == {"note": "hello", "losses": [[1, 2.5]]}
    assert ckpt.optimizer["t"] == 3
    model2 = GPT(CONFIG)
    opt2 = AdamW(model2.params, lr=1e-2, decay=model2.decay_mask())
    restore(ckpt, model2, opt2)
    for name in model.params:
        np.testing.assert_array_equal(model2.params[name], model.params[name])
        np.testing.assert_array_equal(opt2.m[name], opt.m[name])
        np.testing.assert_array_equal(opt2.v[name], opt.v[name])
    assert model2.params["wte"].dtype == np.float32
    assert model2.rng_state() == model.rng_state()
    idx = np.arange(8)[None] % 13
    np.testing.assert_array_equal(
        load_model(tmp_path).forward(idx)[0], model.eval().forward(idx)[0]
    )


def test_json_holds_only_plain_values(tmp_path):
    model, opt = trained(1)
    save_checkpoint(tmp_path, model, opt, step=1)
    meta = json.loads((tmp_path / JSON_NAME).read_text())
    assert meta["model_config"]["n_embd"] == 8 and meta["step"] == 1
    assert isinstance(meta["rng_state"]["state"]["state"], int)


def test_truncated_npz_names_the_file(tmp_path):
    model, opt = trained(1)
    save_checkpoint(tmp_path, model, opt, step=1)
    npz = tmp_path / NPZ_NAME
    npz.write_bytes(npz.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=str(npz)):
        load_checkpoint(tmp_path)


def test_corrupted_npz_byte_is_detected(tmp_path):
    model, opt = trained(1)
    save_checkpoint(tmp_path, model, opt, step=1)
    npz = tmp_path / NPZ_NAME
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"{npz}.*SHA-256"):
        load_checkpoint(tmp_path)


def test_npz_that_is_not_a_zip_names_the_file_even_when_hash_matches(tmp_path):
    model, opt = trained(1)
    save_checkpoint(tmp_path, model, opt, step=1)
    npz, meta_path = tmp_path / NPZ_NAME, tmp_path / JSON_NAME
    npz.write_bytes(b"garbage, not a zip archive")
    import hashlib

    meta = json.loads(meta_path.read_text())
    meta["npz_sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=f"{npz}: not an .npz archive"):
        load_checkpoint(tmp_path)


def test_truncated_json_names_the_file(tmp_path):
    model, opt = trained(1)
    save_checkpoint(tmp_path, model, opt, step=1)
    meta = tmp_path / JSON_NAME
    meta.write_text(meta.read_text()[:50])
    with pytest.raises(CheckpointError, match=f"{meta}.*not valid JSON"):
        load_checkpoint(tmp_path)
    assert issubclass(CheckpointError, ValueError)


def test_missing_files_raise_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=JSON_NAME):
        load_checkpoint(tmp_path)
    model, opt = trained(1)
    save_checkpoint(tmp_path, model, opt, step=1)
    (tmp_path / NPZ_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=NPZ_NAME):
        load_checkpoint(tmp_path)


def test_weights_only_checkpoint_cannot_restore_an_optimizer(tmp_path):
    model, _ = trained(1)
    save_checkpoint(tmp_path, model, None, step=1)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.optimizer is None
    m2 = GPT(CONFIG)
    with pytest.raises(CheckpointError, match="without optimizer state"):
        restore(ckpt, m2, AdamW(m2.params))


def test_config_mismatch_is_refused(tmp_path):
    model, opt = trained(1)
    save_checkpoint(tmp_path, model, opt, step=1)
    other = GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(CheckpointError, match="model_config"):
        restore(load_checkpoint(tmp_path), other)
