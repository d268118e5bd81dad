"""The training recipe: pretrain on review sentences, then fine-tune on prompt -> reason pairs.

    minireason train --prepared runs/prep --preset tiny --out runs/tiny

Stage 1, *pretraining*: the compact GPT learns the language of reviews from the prepared
``pretrain.npz`` stream (every training-review sentence followed by ``<eos>``), with random
windows of ``pretrain.block_size`` tokens. The last ``PRETRAIN_HOLDOUT`` share of the stream is
held out as its validation set (the stream is in split order, so that is whole sentences of the
last training reviews, never seen by the optimiser).

Stage 2, *fine-tuning*: starting from the pretrained weights (with a fresh AdamW), the model
reads ``prompt + reason + <eos>`` sequences (``finetune_train.npz``) and is taught only the
reason: the loss mask is 1 on the reason and ``<eos>`` targets, 0 on the prompt and on padding.
Validation uses ``finetune_valid.npz``.

A *preset* is a plain JSON file (``minireason/train/presets/tiny.json``, ``small.json``, and
``tutorial.json``, ``tutorial_fast.json``, the one run of tutorials 06, 07 and 10 in their
default and fast modes; copy one and edit it) with four keys::

    {"description": "...",
     "model":    {n_layer, n_head, n_embd, block_size, dropout, seed}     -> GPTConfig
     "pretrain": {batch_size, block_size, + any TrainConfig field}
     "finetune": {batch_size, + any TrainConfig field}}

The vocabulary size comes from the prepared tokenizer. ``model.block_size`` must hold the
prepared ``context`` (the longest fine-tuning sequence). A run keeps the preset it was
started with as ``RUN/preset.json``, with ``source`` (where it was read from) and, when
``--set`` changed values, ``overrides`` (those values, already in its sections): that file is
a preset too, the one ``--resume`` needs.

One value can be changed from the command line instead of in a copy of the file, as many
times as needed: ``--set finetune.learning_rate=3e-4 --set model.n_layer=2``
(:func:`apply_overrides`: checked as the file is, each mistake one line naming the
``--set``). The values set are recorded in ``RUN/preset.json`` (``overrides``), and a run
is resumed only with the same ones.

The run directory's layout and ``run.json`` are the contract of :mod:`minireason.train.run`.

Resuming (``resume=True``, ``--resume``) continues each stage from its checkpoint exactly
(:func:`minireason.train.loop.train`); a finished stage is skipped. A run is tied to the
prepared directory it was started on: resuming it with other data is refused.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

from minireason import backend
from minireason.files import (
    atomic_write,
    atomic_write_json,
    check_output,
    json_object,
    writer_lock,
)
from minireason.nn.calibrate import PlanChoice, choose_plan, read_plan
from minireason.nn.checkpoint import JSON_NAME, load_checkpoint, restore, settle
from minireason.nn.memory import available_bytes
from minireason.nn.model import GPT, GPTConfig, training_bytes
from minireason.nn.threads import forced_plan, plan, using_plan
from minireason.options import option
from minireason.prep.prepared import load_prepared
from minireason.train.batches import ReasonBatches, TokenWindows
from minireason.train.loop import TrainConfig, check_resume_config, plot_losses, train
from minireason.train.run import (
    REPORT_JSON,
    RUN_DIR,
    RUN_JSON,
    check_same_data,
    read_run_info,
    run_info_for,
    write_run_info,
)

PRESET_DIR = Path(__file__).resolve().parent / "presets"


@dataclass(frozen=True)
class Measured:
    """How long a shipped preset took to train (both stages), where and when."""

    minutes: float
    machine: str
    date: str

    def __str__(self) -> str:
        return f"{self.minutes} minutes on {self.machine}, measured {self.date}"


# The measured training times of the shipped presets, on the Musical Instruments reviews
# prepared with the defaults (the demo's data): `minireason train --preset NAME`, timed.
TRAINING_TIME = {"small": Measured(22.6, "a 2-core AMD EPYC VM", "2026-12-07")}
PRESET_KEYS = ("description", "model", "pretrain", "finetune")
# What a run's copy (RUN/preset.json) adds: where it was read from, and the --set values
# already applied to its sections (so it is a preset too, the one --resume is given).
RUN_COPY_KEYS = ("source", "overrides")
PRETRAIN_HOLDOUT = 0.02  # share of the pretraining stream kept for validation
STAGES = ("pretrain", "finetune")


# The --set option of train and demo: one value of the preset changed (apply_overrides).
SET_OPTION = dict(
    flag="--set",
    metavar="SECTION.KEY=VALUE",
    repeat=True,
    help="change one value of the preset, e.g. finetune.learning_rate=3e-4 or model.n_layer=2 "
    "(again for more); recorded in RUN/preset.json, and --resume needs the same ones",
)


@dataclass
class RecipeConfig:
    """The options of ``minireason train``."""

    description: ClassVar[str] = (  # its --help
        "Pretrain on every training sentence, then fine-tune to write the reason after a "
        "prompt (loss on the reason only). Checkpoints as it goes; --resume continues exactly."
    )

    prepared: str = option(metavar="DIR", help="a prepared directory, from 'minireason prepare'")
    preset: str = option("tiny", metavar="NAME|FILE", help="tiny, small or a JSON file")
    out: str | None = option(None, metavar="DIR", help="run directory (default: runs/PRESET)")
    resume: bool = option(False, help="continue the checkpoints in --out")
    overrides: tuple[str, ...] = option((), **SET_OPTION)

    @property
    def run_dir(self) -> str:
        """``out``, or else ``runs/PRESET`` (the preset's name, without folder or ``.json``)."""
        return self.out or os.path.join("runs", os.path.splitext(os.path.basename(self.preset))[0])


# --------------------------------------------------------------------------- presets


def preset_names() -> list[str]:
    """Names of the presets shipped with the package (``tiny``, ``small``, ...)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def load_preset(name_or_path, overrides=()) -> dict:
    """Read and check a preset: a shipped name (``"tiny"``) or the path of a JSON file, with
    ``overrides`` (``--set``'s ``SECTION.KEY=VALUE`` texts) applied on top
    (:func:`apply_overrides`).

    Returns the preset dict with keys ``model``, ``pretrain``, ``finetune`` (and
    ``description``, ``source``: where it was read from; ``overrides``: the values set, when
    any). Unknown or missing keys are a ValueError naming the file and the key.
    """
    path = Path(name_or_path)
    if not path.is_file():
        if str(name_or_path) not in preset_names():
            raise FileNotFoundError(
                f"--preset {name_or_path}: neither a preset name ({', '.join(preset_names())}) "
                "nor a JSON file"
            )
        path = PRESET_DIR / f"{name_or_path}.json"
    try:
        preset = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(preset, dict):
        raise ValueError(f"{path}: a preset is a JSON object with keys {PRESET_KEYS}")
    unknown = sorted(set(preset) - set(PRESET_KEYS) - set(RUN_COPY_KEYS))
    missing = [k for k in ("model", "pretrain", "finetune") if k not in preset]
    if unknown or missing:
        raise ValueError(
            f"{path}: unknown keys {unknown}, missing keys {missing} "
            f"(a preset has {list(PRESET_KEYS)})"
        )
    if not isinstance(preset.get("overrides", {}), dict):
        raise ValueError(f"{path}: 'overrides' must be an object of the --set values")
    preset = {"source": str(path), **preset}  # a run's copy keeps the name it was read by
    check_preset(preset)
    return apply_overrides(preset, overrides)


def section_fields() -> dict[str, set[str]]:
    """The keys each section of a preset may hold: ``model`` those of :class:`GPTConfig`
    (but the vocabulary size and dtype), the stages those of :class:`TrainConfig` and
    ``batch_size`` (and pretraining's ``block_size``)."""
    model_fields = {f.name for f in fields(GPTConfig)} - {"vocab_size", "dtype"}
    train_fields = {f.name for f in fields(TrainConfig)}
    return {
        "model": model_fields,
        "pretrain": train_fields | {"batch_size", "block_size"},
        "finetune": train_fields | {"batch_size"},
    }


def check_preset(preset: dict) -> None:
    """Check every section of a preset and build the model config and both stages'
    training configs now, so a mistake anywhere (an unknown key, a null, a string where a
    number belongs, a bad value in the fine-tune section) is one ValueError naming
    ``preset["source"]`` (the file) before the first training step."""
    problem = _preset_problem(preset)
    if problem:
        raise ValueError(f"{preset.get('source', 'preset')}: {problem}")


def _preset_problem(preset: dict) -> str | None:
    """What is wrong with a preset's sections, in words, or None (:func:`check_preset`)."""
    for section, ok in section_fields().items():
        if not isinstance(preset.get(section), dict):
            return f"{section!r} must be a JSON object"
        bad = sorted(set(preset[section]) - ok)
        if bad:
            return f"unknown {section} fields {bad}; allowed: {sorted(ok)}"
    for section in ("pretrain", "finetune"):
        b = preset[section].get("batch_size")
        if not isinstance(b, int) or isinstance(b, bool) or b < 1:
            return f"{section}.batch_size must be a positive integer, got {b!r}"
    block = preset["pretrain"].get("block_size")
    longest = preset["model"].get("block_size", GPTConfig.block_size)
    if not isinstance(block, int) or isinstance(block, bool) or not 1 <= block <= longest:
        return f"pretrain.block_size must be an integer in 1..model.block_size, got {block!r}"
    try:
        GPTConfig(vocab_size=1, **preset["model"])
    except (TypeError, ValueError) as exc:
        return f"model: {exc}"
    for stage in STAGES:
        try:
            TrainConfig(**_train_settings(preset, stage))
        except (TypeError, ValueError) as exc:
            return f"{stage}: {exc}"
    return None


def apply_overrides(preset: dict, overrides) -> dict:
    """``preset`` (checked) with each of ``overrides`` applied, in order: a text
    ``SECTION.KEY=VALUE`` (``finetune.learning_rate=3e-4``, ``model.n_layer=2``) sets one
    key of ``model``, ``pretrain`` or ``finetune``; the value is read as JSON (a number,
    ``true``, ``false``), else as a number (``.5``), else kept as text (which the check then
    refuses). The result is checked as a preset file is, and records the values set as
    ``overrides`` (``{"finetune.learning_rate": 0.0003}``). A malformed text, an unknown key
    or a value the check refuses is one ValueError naming the ``--set`` option."""
    if not overrides:
        return preset
    allowed = section_fields()
    parsed = []
    for text in overrides:
        key, equals, raw = text.partition("=")
        section, dot, name = key.strip().partition(".")
        where = f"--set {text}"
        if not equals or not dot or not name or not raw.strip():
            raise ValueError(
                f"{where}: expected SECTION.KEY=VALUE, e.g. finetune.learning_rate=3e-4"
            )
        if section not in allowed:
            raise ValueError(f"{where}: unknown section {section!r}; one of {list(allowed)}")
        if name not in allowed[section]:
            raise ValueError(
                f"{where}: unknown {section} key {name!r}; allowed: {sorted(allowed[section])}"
            )
        parsed.append((where, section, name, _override_value(raw.strip())))

    def applied(items) -> dict:
        out = {**preset}
        for _, section, name, value in items:
            out[section] = {**out[section], name: value}
        return out

    result = applied(parsed)
    problem = _preset_problem(result)
    if problem:
        # named: the override that alone gives the same complaint, else all of them
        alone = [p[0] for p in parsed if _preset_problem(applied([p])) == problem]
        raise ValueError(f"{(alone or [' '.join(p[0] for p in parsed)])[0]}: {problem}")
    values = {**preset.get("overrides", {})}
    values.update({f"{section}.{name}": value for _, section, name, value in parsed})
    return {**result, "overrides": values}


def _override_value(raw: str):
    """The value of ``--set KEY=RAW``: JSON, else a number, else the text itself."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        pass
    try:
        return float(raw)
    except ValueError:
        return raw


def stage_config(preset: dict, stage: str) -> TrainConfig:
    """The :class:`TrainConfig` of ``stage`` (``"pretrain"`` or ``"finetune"``)."""
    try:
        return TrainConfig(**_train_settings(preset, stage))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{preset['source']}: {stage}: {exc}") from None


def _train_settings(preset: dict, stage: str) -> dict:
    """The keys of ``stage``'s section that are :class:`TrainConfig` fields."""
    return {k: v for k, v in preset[stage].items() if k not in ("batch_size", "block_size")}


# --------------------------------------------------------------------------- the recipe


def _stage_state(directory: Path) -> int | None:
    """Steps done by the checkpoint in ``directory``, or None when there is none."""
    return load_checkpoint(directory).step if (directory / JSON_NAME).is_file() else None


def _run_stage(model, stage, get_batch, val_batch, config, out: Path, resume, progress, echo):
    """Train one stage (or resume it, or skip it when finished), saying through ``echo``
    where a resumed stage restarts; returns its report dict and its ``(train_losses,
    val_losses)``."""
    done = _stage_state(out)
    if done is not None and not resume:
        raise ValueError(
            f"{out} already holds a checkpoint (step {done}); pass --resume to "
            "continue it, or choose another --out"
        )
    if resume:
        echo(resume_line(stage, done, config.max_steps, out))
    if done is not None:
        settle(out)  # a save killed at its switch is finished before the stage goes on
    t0 = time.perf_counter()
    if done is not None and done >= config.max_steps:
        ckpt = load_checkpoint(out)
        restore(ckpt, model)
        train_losses, val_losses = ckpt.extra.get("train_losses"), ckpt.extra.get("val_losses")
        status = "already finished"
    else:
        result = train(
            model,
            get_batch,
            config,
            out,
            val_batch=val_batch,
            resume=done is not None,
            progress=progress,
            label=stage,
        )
        if result.stopped:
            raise ValueError(
                f"{stage} stopped: {result.stopped}. The preset cannot train: lower "
                f"{stage}.learning_rate (now {config.learning_rate:g}) and start again "
                "with another --out"
            )
        train_losses, val_losses = result.train_losses, result.val_losses
        status = "resumed" if done is not None else "trained"
    report = {
        "status": status,
        "steps": config.max_steps,
        "steps_before_this_run": done or 0,
        "seconds_this_run": round(time.perf_counter() - t0, 2),
        "final_train_loss": float(train_losses[-1][1]) if train_losses else None,
        "final_val_loss": float(val_losses[-1][1]) if val_losses else None,
        "checkpoint": str(out),
        "loss_plot": str(out / "loss.png"),
    }
    return report, (train_losses or [], val_losses or [])


def resume_line(stage: str, done: int | None, max_steps: int, out) -> str:
    """What resuming ``stage`` does, in one line: its checkpoint in ``out`` holds ``done``
    steps (None: there is none) of ``max_steps``."""
    if done is None:
        return f"{stage}: no checkpoint in {out}; training from step 0 of {max_steps}"
    if done >= max_steps:
        return f"{stage}: already finished ({done} of {max_steps} steps, in {out}); skipped"
    return f"{stage}: resuming from step {done} of {max_steps} (checkpoint in {out})"


def run_recipe(
    prepared_dir, preset, out_dir, resume: bool = False, progress: bool = True, echo=print
) -> dict:
    """Pretrain then fine-tune a GPT on a prepared directory; returns the train report.

    Args:
        prepared_dir: a directory written by ``minireason prepare``.
        preset: a preset name, a path, or a dict from :func:`load_preset`.
        out_dir: the run directory (:mod:`minireason.train.run`).
        resume: continue unfinished stages from their checkpoints.
        progress: show tqdm bars, one per stage.
        echo: where the lines saying where each resumed stage restarts go.

    Everything is checked before the first step: the output path, the whole preset, and
    that a run being resumed was started on this prepared data. One ``train`` at a time may
    write a run directory (:func:`minireason.files.writer_lock`).

    Returns:
        The dict written to ``OUT/train_report.json`` (written last: the run is finished).
    """
    t_start = time.perf_counter()
    if isinstance(preset, dict):
        check_preset(preset)
    else:
        preset = load_preset(preset)
    out = check_output(out_dir, "--out", RUN_DIR, inputs=(prepared_dir, preset.get("source")))
    prepared = load_prepared(prepared_dir)
    tok = prepared.tokenizer
    model_config = GPTConfig(vocab_size=tok.vocab_size, **preset["model"])
    if model_config.block_size < prepared.context:
        raise ValueError(
            f"{preset['source']}: model.block_size {model_config.block_size} is "
            f"shorter than the prepared context {prepared.context} ({prepared.path})"
        )
    check_memory(preset, model_config, prepared.context)
    with writer_lock(out, "minireason train"):
        choice = {}  # a run's recorded decoding and weights outlive new defaults
        if (out / RUN_JSON).is_file():
            before = read_run_info(out)
            check_same_data(before, prepared, instead="choose another --out")
            choice = {"decoding": before.decoding, "weights": before.weights}
        finished = check_continuation(out, preset, resume) and _finished(out, preset, echo)
        if finished:
            return finished  # nothing to train, nothing to write
        out.mkdir(parents=True, exist_ok=True)
        write_run_info(out, run_info_for(prepared, **choice, overrides=preset.get("overrides")))
        atomic_write_json(out / "preset.json", preset)
        for name in ("tokenizer.json", "features.json"):
            atomic_write(out / name, lambda fh, n=name: fh.write((prepared.path / n).read_bytes()))
        with using_plan(_thread_plan(preset, model_config, out, resume, echo)):
            report = _train_stages(prepared, preset, model_config, out, resume, progress, echo)
        report["seconds_this_run"] = round(time.perf_counter() - t_start, 2)
        atomic_write_json(out / REPORT_JSON, report)
    return report


PLAN_JSON = "thread_plan.json"  # the run's thread plan, which --resume keeps


def _thread_plan(preset: dict, model_config: GPTConfig, out: Path, resume: bool, echo):
    """The thread plan of training, said through ``echo``: a forced one (the environment),
    else with ``--resume`` the plan the run started with (``thread_plan.json``: another plan
    would round the products differently, and the resumed run would not be the run it
    continues), else :func:`minireason.nn.calibrate.choose_plan`'s on the pretraining
    batch's shape (cached, or measured now), recorded in ``thread_plan.json``. On the GPU:
    the process's plan, for the little CPU work left."""
    if backend.get_device() != "cpu":
        return plan()
    recorded = out / PLAN_JSON
    if resume and recorded.is_file() and forced_plan() is None:
        choice = PlanChoice(read_plan(recorded), "run")
    else:
        pre = preset["pretrain"]
        choice = choose_plan(model_config, pre["batch_size"], pre["block_size"])
        atomic_write_json(recorded, choice.plan.to_dict())
    echo(choice.line())
    return choice.plan


def check_memory(preset: dict, model_config: GPTConfig, context: int, available=None) -> None:
    """Refuse (ValueError naming the preset) a preset whose training step would need more
    memory than this machine has available (``available`` bytes; None: what
    :func:`minireason.nn.memory.available_bytes` says), before anything of its size is
    allocated. The need is :func:`minireason.nn.model.training_bytes` of the larger stage:
    pretraining's batches of ``pretrain.block_size`` tokens, fine-tuning's of the prepared
    ``context``."""
    available = available_bytes() if available is None else available
    if available is None:
        return
    shapes = {"pretrain": preset["pretrain"]["block_size"], "finetune": context}
    need, stage = max(
        (training_bytes(model_config, preset[stage]["batch_size"], block), stage)
        for stage, block in shapes.items()
    )
    if need > available:
        raise ValueError(
            f"{preset['source']}: a {stage} step needs at least {need / 2**30:,.1f} GiB "
            f"(batch_size {preset[stage]['batch_size']} x {shapes[stage]} tokens, n_embd "
            f"{model_config.n_embd}, n_layer {model_config.n_layer}), more than the "
            f"{available / 2**30:,.1f} GiB of memory available; lower {stage}.batch_size, "
            "the block size or the model's width or depth"
        )


def _finished(out: Path, preset: dict, echo) -> dict | None:
    """The report of the run ``out``, whose every stage is finished, resumed with nothing
    left to do: its ``train_report.json`` with each stage "already finished", said through
    ``echo``; nothing is written. None when the report is missing or unreadable (a run
    killed before writing it), which resuming writes again."""
    report = json_object(out / REPORT_JSON)
    if report is None or not all(isinstance(report.get(stage), dict) for stage in STAGES):
        return None
    for stage in STAGES:
        steps = preset[stage]["max_steps"]
        echo(resume_line(stage, steps, steps, out / stage))
        report[stage] = {**report[stage], "status": "already finished", "seconds_this_run": 0.0}
    report["seconds_this_run"] = 0.0
    return report


def check_continuation(out: Path, preset: dict, resume: bool) -> bool:
    """Refuse (ValueError), before anything in the run directory ``out`` is written, to
    train where a stage already holds a checkpoint unless ``resume``; to resume a run
    trained with other ``--set`` values than ``preset``'s (recorded in ``RUN/preset.json``)
    or with checkpoints ``preset`` cannot continue (:func:`_check_resumable`): its
    checkpoints and the new values would be mixed. Returns True when every stage is
    finished (nothing is left to train)."""
    saved = {s: load_checkpoint(out / s) for s in STAGES if (out / s / JSON_NAME).is_file()}
    if not saved:
        return False
    if not resume:
        stage, ckpt = next(iter(saved.items()))
        raise ValueError(
            f"{out / stage} already holds a checkpoint (step {ckpt.step}); pass --resume to "
            "continue it, or choose another --out"
        )
    try:
        recorded = json.loads((out / "preset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = {}  # not recorded: a run of an older minireason, trained without --set
    before = recorded.get("overrides", {}) if isinstance(recorded, dict) else {}
    now = preset.get("overrides", {})
    if before != now:
        raise ValueError(
            f"--set: {out} was trained with {_as_options(before)}, not {_as_options(now)}; "
            "resume it with the same --set options, or choose another --out"
        )
    _check_resumable(out, preset, saved)
    return len(saved) == len(STAGES) and all(
        ckpt.step >= preset[stage]["max_steps"] for stage, ckpt in saved.items()
    )


def _check_resumable(out: Path, preset: dict, saved: dict) -> None:
    """Refuse (ValueError naming the checkpoint) to resume ``out``'s checkpoints ``saved``
    (``{stage: Checkpoint}``) with a ``preset`` whose model differs from theirs, whose
    training settings differ in more than the schedule's length
    (:func:`~minireason.train.loop.check_resume_config`), that asks a stage for fewer steps
    than its checkpoint holds, or that changes the length of pretraining once fine-tuning
    has started from it (the fine-tuned model would no longer follow from the pretraining
    the preset and the report describe)."""
    for stage, ckpt in saved.items():
        where = out / stage / JSON_NAME
        was = ckpt.model_config.to_dict()
        now = GPTConfig(vocab_size=was["vocab_size"], **preset["model"]).to_dict()
        if now != was:
            pairs = ", ".join(f"{k}: {was[k]!r} -> {now[k]!r}" for k in now if now[k] != was[k])
            raise ValueError(
                f"cannot resume from {where}: {preset['source']} describes another model "
                f"({pairs}); choose another --out"
            )
        check_resume_config(ckpt.extra.get("train_config", {}), stage_config(preset, stage), where)
        steps = preset[stage]["max_steps"]
        if ckpt.step > steps:
            raise ValueError(
                f"cannot resume from {where}: it holds {ckpt.step} steps, more than "
                f"{stage}.max_steps {steps}; choose another --out"
            )
    if "finetune" in saved and "pretrain" in saved:
        was = saved["pretrain"].extra.get("train_config", {}).get("max_steps")
        now = preset["pretrain"]["max_steps"]
        if was != now:
            raise ValueError(
                f"cannot resume {out}: pretrain.max_steps is {now}, but {out / 'finetune'} was "
                f"fine-tuned after {was} steps of pretraining, and a changed pretraining needs "
                "a new fine-tuning; train into another --out (nothing was changed)"
            )


def _as_options(overrides: dict) -> str:
    """``{"finetune.learning_rate": 0.0003}`` as ``--set finetune.learning_rate=0.0003``."""
    if not overrides:
        return "no --set"
    return " ".join(f"--set {key}={json.dumps(value)}" for key, value in overrides.items())


def _train_stages(prepared, preset, model_config, out: Path, resume, progress, echo) -> dict:
    """Stage 1 then stage 2 (module doc); the fine-tune loss plot shows pretraining before
    it, with the boundary marked."""
    tok, seed = prepared.tokenizer, model_config.seed
    pre, block = preset["pretrain"], preset["pretrain"]["block_size"]
    n_val = max(block + 1, int(len(prepared.pretrain) * PRETRAIN_HOLDOUT))
    stream_train, stream_val = prepared.pretrain[:-n_val], prepared.pretrain[-n_val:]
    model = GPT(model_config)
    report = {
        "prepared": str(prepared.path),
        "preset": preset,
        "n_params": model.num_params(),
        "device": backend.get_device(),
    }
    report["pretrain"], pre_losses = _run_stage(
        model,
        "pretrain",
        TokenWindows(stream_train, pre["batch_size"], block, seed=seed),
        TokenWindows(stream_val, pre["batch_size"], block, seed=seed + 1),
        stage_config(preset, "pretrain"),
        out / "pretrain",
        resume,
        progress,
        echo,
    )
    report["pretrain"]["tokens_train"] = int(len(stream_train))
    report["pretrain"]["tokens_val"] = int(n_val)
    fine = preset["finetune"]
    report["finetune"], fine_losses = _run_stage(
        model,
        "finetune",
        ReasonBatches(prepared.finetune["train"], fine["batch_size"], tok.pad_id, seed=seed),
        ReasonBatches(prepared.finetune["valid"], fine["batch_size"], tok.pad_id, seed=seed + 1),
        stage_config(preset, "finetune"),
        out / "finetune",
        resume,
        progress,
        echo,
    )
    plot_losses(
        *fine_losses,
        out / "finetune" / "loss.png",
        before=(*pre_losses, "pretrain"),
        title="fine-tuning loss, after pretraining",
    )
    report["finetune"]["sequences_train"] = len(prepared.finetune["train"])
    report["finetune"]["sequences_val"] = len(prepared.finetune["valid"])
    kernels = backend.gpu_kernels()
    if report["device"] == "cuda" and kernels is not None:  # which GPU code trained it
        report["gpu_kernels"] = kernels.report()
    return report


def summary(report: dict, prepared_dir, out) -> str:
    """The lines ``minireason train`` prints: each stage's status, steps, losses and time."""
    lines = []
    for stage in STAGES:
        r = report[stage]
        losses = ", ".join(
            f"{what} loss {r[f'final_{what}_loss']:.4f}"
            for what in ("train", "val")
            if r[f"final_{what}_loss"] is not None
        )
        lines.append(
            f"{stage}: {r['status']}, {r['steps']} steps, {losses}, {r['seconds_this_run']:.1f} s"
        )
    evaluate = ["minireason", "evaluate", "--prepared", str(prepared_dir), "--run", str(out)]
    lines.append(
        f"run written to {out} (run.json, train_report.json, finetune/loss.png); "
        f"next: {shlex.join(evaluate)}"
    )
    return "\n".join(lines)
