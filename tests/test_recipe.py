"""The training recipe: presets, padded reason batches, pretrain -> fine-tune, resume, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

from minireason.cli import main
from minireason.nn.checkpoint import load_checkpoint
from minireason.nn.model import GPTConfig
from minireason.prep.prepared import SequenceSet
from minireason.train.batches import ReasonBatches
from minireason.train.recipe import load_preset, preset_names, run_recipe, stage_config
from minireason.train.run import read_run_info

MI = "amazon-musical-instruments-2014/reviews_Musical_Instruments_5.json.gz"

# A model small enough to train in seconds: the recipe's wiring is under test, not its quality.
MICRO = {
    "description": "micro preset for tests",
    "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 128, "seed": 3},
    "pretrain": {
        "batch_size": 4,
        "block_size": 32,
        "max_steps": 4,
        "warmup_steps": 1,
        "eval_interval": 2,
        "eval_iters": 1,
        "checkpoint_interval": 2,
    },
    "finetune": {
        "batch_size": 4,
        "max_steps": 4,
        "warmup_steps": 1,
        "eval_interval": 2,
        "eval_iters": 1,
        "checkpoint_interval": 2,
    },
}


@pytest.fixture(scope="module")
def prepared_dir(micro_prepared):
    """A prepared directory from the first 600 lines of the real Musical Instruments file."""
    return micro_prepared


@pytest.fixture()
def micro_preset(tmp_path):
    path = tmp_path / "micro.json"
    path.write_text(json.dumps(MICRO))
    return path


def _sequences(seqs: list[list[int]], prompt_lens: list[int]) -> SequenceSet:
    ids = np.concatenate([np.asarray(s, dtype=np.int32) for s in seqs])
    mask = np.concatenate(
        [
            np.r_[np.zeros(p), np.ones(len(s) - p)].astype(np.uint8)
            for s, p in zip(seqs, prompt_lens)
        ]
    )
    offsets = np.r_[0, np.cumsum([len(s) for s in seqs])].astype(np.int64)
    return SequenceSet(
        ids,
        mask,
        offsets,
        np.asarray(prompt_lens, dtype=np.int32),
        np.arange(len(seqs), dtype=np.int32),
    )


# --------------------------------------------------------------------------- presets


def test_shipped_presets_load_and_build_configs():
    names = ("tiny", "small", "tutorial", "tutorial_fast")
    assert set(names) <= set(preset_names())
    for name in names:
        preset = load_preset(name)
        GPTConfig(vocab_size=4096, **preset["model"])  # a valid model shape
        for stage in ("pretrain", "finetune"):
            assert stage_config(preset, stage).max_steps >= 1
    tiny, small = load_preset("tiny"), load_preset("small")
    assert tiny["model"]["n_layer"] < small["model"]["n_layer"]
    assert tiny["model"]["n_embd"] // tiny["model"]["n_head"] == 64
    tutorial = load_preset("tutorial")  # tiny's shape, fewer steps
    assert tutorial["model"] == tiny["model"]
    assert stage_config(tutorial, "finetune").max_steps < stage_config(tiny, "finetune").max_steps


def test_preset_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**MICRO, "finetune": {**MICRO["finetune"], "lr": 1.0}}))
    with pytest.raises(ValueError, match=r"bad\.json.*unknown finetune fields \['lr'\]"):
        load_preset(bad)
    bad.write_text(json.dumps({k: v for k, v in MICRO.items() if k != "pretrain"}))
    with pytest.raises(ValueError, match=r"missing keys \['pretrain'\]"):
        load_preset(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_preset(bad)
    with pytest.raises(FileNotFoundError, match="neither a preset name"):
        load_preset("huge")


# --------------------------------------------------------------------------- batches


def test_reason_batches_shift_pad_and_mask():
    seqs = [[10, 11, 12, 20, 21, 1], [13, 22, 1], [14, 15, 23, 24, 25, 26, 1]]
    batches = ReasonBatches(_sequences(seqs, [3, 1, 2]), batch_size=3, pad_id=0, seed=5)
    rows = batches.indices(0)
    idx, targets, mask = batches(0)
    assert idx.shape == targets.shape == mask.shape == (3, 6)  # longest (7) minus one
    for b, r in enumerate(rows):
        s, p = seqs[r], [3, 1, 2][r]
        n = len(s) - 1
        assert idx[b, :n].tolist() == s[:-1] and targets[b, :n].tolist() == s[1:]
        assert (idx[b, n:] == 0).all() and (targets[b, n:] == 0).all()
        # loss only where the *target* is a reason token or <eos>; never on prompt or padding
        assert mask[b].tolist() == [0] * (p - 1) + [1] * (len(s) - p) + [0] * (6 - n)


def test_reason_batches_cover_each_epoch_once_and_repeat_by_step():
    seqs = [[i, i + 1, 1] for i in range(2, 12)]  # 10 sequences
    batches = ReasonBatches(_sequences(seqs, [1] * 10), batch_size=4, pad_id=0, seed=1)
    first_epoch = np.concatenate([batches.indices(s) for s in range(3)])[:10]
    assert sorted(first_epoch.tolist()) == list(range(10))
    again = ReasonBatches(_sequences(seqs, [1] * 10), batch_size=4, pad_id=0, seed=1)
    assert all((again(s)[0] == batches(s)[0]).all() for s in range(5))
    other = ReasonBatches(_sequences(seqs, [1] * 10), batch_size=4, pad_id=0, seed=2)
    assert any((other.indices(s) != batches.indices(s)).any() for s in range(3))


# --------------------------------------------------------------------------- the recipe


@pytest.mark.slow
def test_recipe_end_to_end_then_resume_between_stages(prepared_dir, micro_preset, tmp_path):
    out = tmp_path / "run"
    report = run_recipe(prepared_dir, micro_preset, out, progress=False)
    for name in (
        "preset.json",
        "tokenizer.json",
        "train_report.json",
        "pretrain/loss.png",
        "finetune/loss.png",
        "pretrain/checkpoint.npz",
        "finetune/checkpoint.npz",
    ):
        assert (out / name).is_file(), name
    assert (out / "tokenizer.json").read_bytes() == (prepared_dir / "tokenizer.json").read_bytes()
    assert (out / "features.json").read_bytes() == (prepared_dir / "features.json").read_bytes()
    assert json.loads((out / "train_report.json").read_text()) == json.loads(json.dumps(report))
    for stage in ("pretrain", "finetune"):
        r = report[stage]
        assert r["status"] == "trained" and r["steps"] == 4
        assert np.isfinite(r["final_train_loss"]) and np.isfinite(r["final_val_loss"])
        assert load_checkpoint(out / stage).step == 4
    pre, fine = load_checkpoint(out / "pretrain"), load_checkpoint(out / "finetune")
    assert pre.model_config == fine.model_config and pre.model_config.vocab_size == 400
    assert not np.array_equal(pre.params["wte"], fine.params["wte"])

    with pytest.raises(ValueError, match="already holds a checkpoint"):
        run_recipe(prepared_dir, micro_preset, out, progress=False)
    said = []
    again = run_recipe(
        prepared_dir, micro_preset, out, resume=True, progress=False, echo=said.append
    )
    assert again["pretrain"]["status"] == again["finetune"]["status"] == "already finished"
    assert said == [
        f"{stage}: already finished (4 of 4 steps, in {out / stage}); skipped"
        for stage in ("pretrain", "finetune")
    ]

    # a run stopped between the stages resumes into exactly the same fine-tuned weights
    crashed = tmp_path / "crashed"
    shutil.copytree(out, crashed)
    shutil.rmtree(crashed / "finetune")
    said.clear()
    resumed = run_recipe(
        prepared_dir, micro_preset, crashed, resume=True, progress=False, echo=said.append
    )
    assert resumed["pretrain"]["status"] == "already finished"
    assert resumed["finetune"]["status"] == "trained"
    assert said[0].startswith("thread plan: pool ")  # the tests' plan (conftest)
    assert (
        said[2] == f"finetune: no checkpoint in {crashed / 'finetune'}; training from step 0 of 4"
    )
    redone = load_checkpoint(crashed / "finetune")
    for name, a in fine.params.items():
        np.testing.assert_array_equal(redone.params[name], a, err_msg=name)


def test_a_resumed_run_says_where_each_stage_restarts(prepared_dir, micro_preset, tmp_path):
    out = tmp_path / "run"
    shorter = {**MICRO, "finetune": {**MICRO["finetune"], "max_steps": 2}}  # stops at step 2
    (tmp_path / "shorter.json").write_text(json.dumps(shorter))
    run_recipe(prepared_dir, tmp_path / "shorter.json", out, progress=False)
    said = []
    report = run_recipe(
        prepared_dir, micro_preset, out, resume=True, progress=False, echo=said.append
    )
    assert said[0].startswith("thread plan: ")  # the first line: the plan, then the stages
    assert said[1:] == [
        f"pretrain: already finished (4 of 4 steps, in {out / 'pretrain'}); skipped",
        f"finetune: resuming from step 2 of 4 (checkpoint in {out / 'finetune'})",
    ]
    assert report["finetune"]["status"] == "resumed"
    assert report["finetune"]["steps_before_this_run"] == 2


def test_a_resumed_run_keeps_the_thread_plan_it_started_with(
    prepared_dir, micro_preset, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    shorter = {**MICRO, "finetune": {**MICRO["finetune"], "max_steps": 2}}
    (tmp_path / "shorter.json").write_text(json.dumps(shorter))
    monkeypatch.setenv("MINIREASON_PLAN", "pool")
    monkeypatch.setenv("MINIREASON_THREADS", "1")
    run_recipe(prepared_dir, tmp_path / "shorter.json", out, progress=False)
    assert json.loads((out / "thread_plan.json").read_text())["threads"] == 1
    monkeypatch.delenv("MINIREASON_PLAN")
    monkeypatch.delenv("MINIREASON_THREADS")  # another plan would be chosen now
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "thread_plan.json").write_text('{"splitter": "fastest"}')
    with pytest.raises(ValueError, match="thread_plan.json: not a thread plan"):
        run_recipe(prepared_dir, micro_preset, broken, resume=True, progress=False)
    said = []
    run_recipe(prepared_dir, micro_preset, out, resume=True, progress=False, echo=said.append)
    assert said[0].startswith("thread plan: pool x1 ") and "kept for an exact resume" in said[0]
    assert json.loads((out / "thread_plan.json").read_text())["threads"] == 1


def test_recipe_rejects_a_context_longer_than_the_model(prepared_dir, tmp_path):
    short = {
        **MICRO,
        "model": {**MICRO["model"], "block_size": 64},
        "pretrain": {**MICRO["pretrain"], "block_size": 32},
    }
    path = tmp_path / "short.json"
    path.write_text(json.dumps(short))
    with pytest.raises(ValueError, match="block_size 64 is shorter than the prepared context 128"):
        run_recipe(prepared_dir, path, tmp_path / "run", progress=False)


def test_cli_train(prepared_dir, micro_preset, tmp_path, capsys):
    out = tmp_path / "cli_run"
    argv = [
        "train",
        "--prepared",
        str(prepared_dir),
        "--preset",
        str(micro_preset),
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "pretrain: trained, 4 steps" in printed and "finetune: trained, 4 steps" in printed
    assert main(argv) == 1  # the run exists and --resume was not given
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass --resume" in err
    assert main([*argv, "--resume"]) == 0
    printed = capsys.readouterr().out
    assert f"pretrain: already finished (4 of 4 steps, in {out / 'pretrain'}); skipped" in printed
    assert (
        main(["train", "--prepared", str(tmp_path / "nope"), "--preset", "tiny", "--out", str(out)])
        == 1
    )
    assert "no such prepared directory" in capsys.readouterr().err


def test_a_piped_log_gets_plain_progress_lines_and_no_carriage_returns(
    prepared_dir, micro_preset, tmp_path
):
    """train and evaluate with standard error a pipe (as in ``cmd 2>&1 | tee log``): no tqdm
    bar redrawn with ``\\r``, and training still says how far it got."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = str(tmp_path / "run")

    def cli(*argv):
        proc = subprocess.run(
            [sys.executable, "-m", "minireason.cli", *argv],
            capture_output=True,  # bytes: text mode would read a carriage return as a newline
            env=env,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stderr.decode()

    err = cli("train", "--prepared", str(prepared_dir), "--preset", str(micro_preset), "--out", run)
    assert "\r" not in err
    for stage in ("pretrain", "finetune"):
        assert f"{stage}: step 1/4 (25%), loss " in err and f"{stage}: step 4/4 (100%)" in err
    args = ("--prepared", str(prepared_dir), "--run", run, "--limit", "4", "--candidates", "2")
    assert "\r" not in cli("evaluate", *args)


def test_set_changes_one_value_of_the_preset_checked_like_the_preset():
    preset = load_preset("tiny", ["finetune.learning_rate=3e-4", "model.n_layer=1"])
    tiny = load_preset("tiny")
    assert preset["finetune"] == {**tiny["finetune"], "learning_rate": 3e-4}
    assert preset["model"] == {**tiny["model"], "n_layer": 1}
    assert preset["overrides"] == {"finetune.learning_rate": 3e-4, "model.n_layer": 1}
    assert "overrides" not in tiny
    for overrides, message in [
        (["finetune.learning_rat=1"], "--set finetune.learning_rat=1: unknown finetune key"),
        (["fine.max_steps=1"], "--set fine.max_steps=1: unknown section 'fine'"),
        (["max_steps"], "--set max_steps: expected SECTION.KEY=VALUE"),
        (["finetune.learning_rate=fast"], "--set finetune.learning_rate=fast: finetune: Train"),
        (["pretrain.max_steps=1e3"], r"--set pretrain.max_steps=1e3: pretrain: .*integer"),
        (["model.n_layer=2", "model.n_head=3"], r"--set model.n_head=3: model: .*divisible"),
    ]:
        with pytest.raises(ValueError, match="^" + message):
            load_preset("tiny", overrides)
    # a value checked against the others once all are applied
    both = load_preset("tiny", ["model.block_size=32", "pretrain.block_size=32"])
    assert both["model"]["block_size"] == both["pretrain"]["block_size"] == 32


def test_cli_train_set_is_recorded_and_resume_needs_the_same(
    prepared_dir, micro_preset, tmp_path, capsys
):
    out = tmp_path / "run"
    argv = [
        "train",
        "--prepared",
        str(prepared_dir),
        "--preset",
        str(micro_preset),
        "--out",
        str(out),
    ]
    sets = ["--set", "finetune.learning_rate=0.002", "--set", "finetune.max_steps=3"]
    assert main([*argv, *sets]) == 0
    recorded = json.loads((out / "preset.json").read_text())
    assert recorded["overrides"] == {"finetune.learning_rate": 0.002, "finetune.max_steps": 3}
    assert recorded["finetune"]["learning_rate"] == 0.002
    assert read_run_info(out).overrides == recorded["overrides"]  # run.json records them too
    assert load_checkpoint(out / "finetune").step == 3
    capsys.readouterr()
    for other in ([], sets[:2], [*sets, "--set", "model.seed=1"]):
        assert main([*argv, "--resume", *other]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--set: " in err and "was trained with --set" in err, err
    assert main([*argv, "--resume", *sets]) == 0
    assert "finetune: already finished (3 of 3 steps" in capsys.readouterr().out
    assert main(["train", "--prepared", str(prepared_dir), "--set", "finetune.nope=1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--set finetune.nope=1: unknown finetune key 'nope'" in err
