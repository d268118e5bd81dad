"""The training loop: AdamW steps over token batches, validation, checkpoints, exact resume.

A *batch source* is any callable ``get_batch(step) -> (idx, targets, loss_mask)`` that
returns the same arrays for the same step (e.g. by seeding its sampler with ``(seed, step)``);
``loss_mask`` may be None. Because batches depend only on the step, and the checkpoint holds
the weights, AdamW's moments and step count and the dropout RNG, a run resumed from step N
continues exactly as if it had never stopped: 2N steps straight and N + resume + N give
bit-identical weights.

    config = TrainConfig(max_steps=2000)
    result = train(model, TokenWindows(train_ids, 16, 128, seed=1), config, "runs/x",
                   val_batch=TokenWindows(val_ids, 16, 128, seed=2))
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from minireason.files import write_png
from minireason.nn.checkpoint import JSON_NAME, load_checkpoint, restore, save_checkpoint
from minireason.nn.model import GPT, is_number
from minireason.nn.optim import AdamW, clip_grad_norm, global_grad_norm, lr_at
from minireason.nn.threads import blas_as_planned

# Fields that may differ between a checkpoint and the config used to resume it: they do not
# change the trajectory of the weights (max_steps does change the learning-rate schedule, so
# a longer run resumed is not bit-identical to a run planned that long from the start).
RESUME_MAY_CHANGE = ("max_steps", "eval_interval", "eval_iters", "checkpoint_interval")
# Where standard error is not a terminal (a log file, a pipe), training prints a plain
# progress line every this share of its steps instead of a tqdm bar's carriage returns.
PLAIN_PROGRESS_SHARE = 0.1


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping settings (all plain numbers, saved in the checkpoint)."""

    max_steps: int = 1000
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    eval_interval: int = 100  # validation every N steps (and at the end); 0 = never
    eval_iters: int = 10  # validation batches per evaluation
    checkpoint_interval: int = 500  # checkpoint every N steps (and at the end); 0 = end only

    def __post_init__(self):
        for name in (
            "max_steps",
            "warmup_steps",
            "eval_interval",
            "eval_iters",
            "checkpoint_interval",
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
                raise ValueError(
                    f"TrainConfig.{name} must be a non-negative integer, got {value!r}"
                )
        if self.max_steps < 1:
            raise ValueError(f"TrainConfig.max_steps must be >= 1, got {self.max_steps}")
        if self.eval_interval and self.eval_iters < 1:
            raise ValueError(
                f"TrainConfig.eval_iters must be >= 1 when eval_interval is set (a validation "
                f"over no batches has no loss), got {self.eval_iters}; eval_interval 0 for none"
            )
        for name in ("learning_rate", "min_lr", "weight_decay", "eps", "grad_clip"):
            value = getattr(self, name)
            if not (is_number(value) and value >= 0):
                raise ValueError(f"TrainConfig.{name} must be a finite number >= 0, got {value!r}")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not (is_number(value) and 0.0 <= value < 1.0):
                raise ValueError(f"TrainConfig.{name} must be a number in [0, 1), got {value!r}")


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    step: int  # optimizer steps done (including those before a resume)
    train_losses: list = field(default_factory=list)  # [(step, loss)], whole run
    val_losses: list = field(default_factory=list)  # [(step, loss)], whole run
    stopped: str | None = None  # why the run stopped early, or None
    checkpoint_dir: Path | None = None  # the last checkpoint written (or kept)
    plot: Path | None = None  # the loss-curve PNG


def evaluate(model: GPT, get_batch: Callable, iters: int) -> float:
    """Mean loss over batches ``get_batch(0) .. get_batch(iters - 1)`` in eval mode (no cache);
    ``iters`` must be at least 1."""
    if iters < 1:
        raise ValueError(f"evaluate: iters must be >= 1, got {iters}")
    was_training = model.training
    model.eval()
    try:
        losses = [
            model.forward(*get_batch(i), keep_cache=False, all_logits=False)[1]
            for i in range(iters)
        ]
    finally:
        model.training = was_training
    return float(np.mean(losses))


def plot_losses(train_losses, val_losses, path, before=None, title="training loss") -> Path:
    """Write :func:`loss_figure` to a PNG, atomically (:func:`minireason.files.write_png`);
    return the path."""
    return write_png(path, loss_figure(train_losses, val_losses, before, title))


def loss_figure(train_losses, val_losses, before=None, title="training loss"):
    """The loss curve (training per step, validation as points) as a matplotlib ``Figure``.

    ``before``: ``(train_losses, val_losses, label)`` of an earlier stage, drawn first in
    grey with this stage's steps shifted after it and a dashed line marking where this stage
    starts (the fine-tune plot shows pretraining so). A bare ``Figure``, so it never changes
    pyplot's backend or figures (safe inside a notebook, where it displays inline).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    offset = 0
    if before is not None:
        early_train, early_val, label = before
        if early_train:
            s, v = zip(*early_train)
            ax.plot(s, v, lw=0.8, color="0.6", label=f"{label}: train")
            offset = s[-1]
        if early_val:
            s, v = zip(*early_val)
            ax.plot(s, v, "o-", ms=3, color="0.45", label=f"{label}: validation")
        ax.axvline(offset, color="k", ls="--", lw=1)
        ax.annotate(
            "this stage starts",
            (offset, 1),
            xycoords=("data", "axes fraction"),
            xytext=(4, -12),
            textcoords="offset points",
            fontsize=8,
        )
    if train_losses:
        s, v = zip(*train_losses)
        ax.plot([offset + x for x in s], v, lw=0.8, label="train")
    if val_losses:
        s, v = zip(*val_losses)
        ax.plot([offset + x for x in s], v, "o-", ms=3, label="validation")
    ax.set_xlabel("step" if before is None else "step (earlier stage, then this one)")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_title(f"minireason {title}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def progress_line(label: str, step: int, end: int, loss: float, steps: int, seconds: float) -> str:
    """A plain progress line: ``label``'s ``step`` of ``end``, the last loss, and the pace
    of the ``steps`` done in ``seconds`` (this run's) with the time left at that pace."""
    line = f"{label}: step {step}/{end} ({100 * step // end}%), loss {loss:.4f}"
    if steps and seconds > 0:
        left = (end - step) * seconds / steps
        line += f", {steps / seconds:.2f} steps/s"
        if step < end:
            line += (
                f", about {left:.0f} s left" if left < 60 else f", about {left / 60:.1f} min left"
            )
    return line


def check_resume_config(saved: dict, config: TrainConfig, path) -> None:
    """Refuse (ValueError naming ``path``) to resume a checkpoint trained with the settings
    ``saved`` under ``config``, unless they differ only in :data:`RESUME_MAY_CHANGE`."""
    now = asdict(config)
    differ = [k for k in now if k not in RESUME_MAY_CHANGE and saved.get(k) != now[k]]
    if differ:
        pairs = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in differ)
        raise ValueError(f"cannot resume from {path}: train config differs ({pairs})")


@blas_as_planned
def train(
    model: GPT,
    get_batch: Callable,
    config: TrainConfig,
    out_dir,
    val_batch: Callable | None = None,
    resume: bool = False,
    stop_at_step: int | None = None,
    progress: bool = True,
    label: str = "train",
) -> TrainResult:
    """Train ``model`` in place; checkpoints and the loss-curve PNG go to ``out_dir``.

    Args:
        model: the model (its weights are replaced by the checkpoint's when resuming).
        get_batch: batch source, ``get_batch(step) -> (idx, targets, loss_mask)``.
        config: a :class:`TrainConfig`.
        out_dir: directory for ``checkpoint.npz`` / ``checkpoint.json`` and ``loss.png``.
        val_batch: validation batch source (``val_batch(i)``, i < eval_iters), or None.
        resume: continue from the checkpoint in ``out_dir`` (error if there is none).
        stop_at_step: stop (with a checkpoint) after this many steps, before ``max_steps``;
            the schedule still follows ``max_steps``, so a later resume continues exactly.
        progress: show progress, labelled ``label`` (the stage): a tqdm bar when standard
            error is a terminal (or a notebook); else, as in a log written to a file or a
            pipe, a plain line every :data:`PLAIN_PROGRESS_SHARE` of the steps
            (:func:`progress_line`) instead of the bar's carriage returns.

    Returns:
        A :class:`TrainResult`. On a non-finite loss or gradient the run stops and does not
        overwrite the last good checkpoint; ``result.stopped`` says why, for the caller to
        report.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    optimizer = AdamW(
        model.params,
        lr=config.learning_rate,
        betas=(config.beta1, config.beta2),
        eps=config.eps,
        weight_decay=config.weight_decay,
        decay=model.decay_mask(),
    )
    result = TrainResult(step=0)
    if resume:
        if not (out_dir / JSON_NAME).is_file():
            raise FileNotFoundError(f"nothing to resume: no {out_dir / JSON_NAME}")
        ckpt = load_checkpoint(out_dir)
        check_resume_config(ckpt.extra.get("train_config", {}), config, out_dir / JSON_NAME)
        restore(ckpt, model, optimizer)
        result.step = ckpt.step
        result.train_losses = [tuple(x) for x in ckpt.extra.get("train_losses", [])]
        result.val_losses = [tuple(x) for x in ckpt.extra.get("val_losses", [])]
        result.checkpoint_dir = out_dir
    end = config.max_steps if stop_at_step is None else min(stop_at_step, config.max_steps)

    def checkpoint():
        extra = {
            "train_config": asdict(config),
            "train_losses": [list(x) for x in result.train_losses],
            "val_losses": [list(x) for x in result.val_losses],
        }
        save_checkpoint(out_dir, model, optimizer, result.step, extra)
        result.checkpoint_dir = out_dir

    model.train()
    disable = None if progress else True  # None: no bar where stderr is not a terminal
    bar = tqdm(total=end, initial=result.step, disable=disable, desc=label, unit="step")
    plain = progress and bar.disable  # no bar shown: plain lines instead
    plain_every = max(1, round(config.max_steps * PLAIN_PROGRESS_SHARE))
    t_start, step_start = time.perf_counter(), result.step
    while result.step < end:
        step = result.step
        lr = lr_at(step, config.learning_rate, config.warmup_steps, config.max_steps, config.min_lr)
        idx, targets, loss_mask = get_batch(step)
        t0 = time.perf_counter()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # checked below
            _, loss = model.forward(idx, targets, loss_mask, all_logits=False)  # counted tokens
            grad_norm = float("nan")
            if math.isfinite(loss):
                grads = model.backward()
                grad_norm = (
                    clip_grad_norm(grads, config.grad_clip)
                    if config.grad_clip
                    else global_grad_norm(grads)
                )
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {grad_norm}"
            kept = (
                f"the last good checkpoint in {out_dir} is kept"
                if result.checkpoint_dir
                else "no checkpoint was written"
            )
            result.stopped = (
                f"non-finite {what} at step {step}; stopped before updating the weights; {kept}"
            )
            break
        optimizer.step(grads, lr)
        dt = time.perf_counter() - t0
        result.step = step + 1
        result.train_losses.append((result.step, loss))
        bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{idx.size / dt:,.0f}", lr=f"{lr:.2e}")
        bar.update(1)
        at_end = result.step == end
        if plain and (result.step % plain_every == 0 or at_end):
            seconds = time.perf_counter() - t_start
            line = progress_line(label, result.step, end, loss, result.step - step_start, seconds)
            print(line, file=sys.stderr, flush=True)
        if (
            val_batch is not None
            and config.eval_interval
            and (result.step % config.eval_interval == 0 or at_end)
        ):
            val = evaluate(model, val_batch, config.eval_iters)
            result.val_losses.append((result.step, val))
            bar.write(f"{label} step {result.step}: train loss {loss:.4f}, val loss {val:.4f}")
        if at_end or (config.checkpoint_interval and result.step % config.checkpoint_interval == 0):
            checkpoint()
    bar.close()
    result.plot = plot_losses(
        result.train_losses, result.val_losses, out_dir / "loss.png", title=f"{label} loss"
    )
    return result
