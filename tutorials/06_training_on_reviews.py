# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Training on reviews: pretraining, fine-tuning, loss curves
#
# **Goal.** Train the compact GPT the way the package's recipe does (`minireason.train.recipe`),
# and understand each part: (1) *pretraining* on the running text of training reviews, so
# the model learns the language of reviews; (2) *fine-tuning* on `prompt + reason + <eos>`
# sequences with a **loss mask** that counts only the reason, so the model learns to answer
# a prompt rather than to write prompts; (3) reading the loss curves of both stages, and
# measuring what the mask did.
#
# **Time:** about 2 to 4 minutes on a 2-core CPU in the default mode, most of it training the
# shipped `tutorial` preset, smaller than `tiny` (the `tiny` width, 2 layers x 128, with
# 300 + 300 steps instead of 800 + 800), on the whole prepared Musical Instruments data.
# `MINIREASON_FAST=1` prepares the first 600 reviews and trains the `tutorial_fast` preset, a
# 1-layer, 32-wide model, for 20 + 20 steps (the curves then only show the start of learning). **Prerequisites:** tutorials 03 (the GPT)
# and 05 (prompts); assignment A3 asks you to write the loss mask yourself. The run is
# written to `$MINIREASON_TUTORIAL_OUT/06_run` (`06_run_fast` in fast mode); tutorial 07
# reuses it when it is there.

# %%
import os
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from minireason.data.fetch import find_reviews
from minireason.nn.checkpoint import load_checkpoint, load_model
from minireason.prep.prepare import PrepareConfig, prepare, prepare_sample
from minireason.prep.prepared import load_prepared
from minireason.train.batches import ReasonBatches, TokenWindows
from minireason.train.recipe import load_preset, run_recipe

FAST = os.environ.get("MINIREASON_FAST") == "1"
OUT = Path(os.environ.get("MINIREASON_TUTORIAL_OUT", "runs/tutorials"))
OUT.mkdir(parents=True, exist_ok=True)
# the reviews: under $MINIREASON_DATA_DIR, ../shared/data, or the cache of `minireason data fetch`
REVIEWS = find_reviews("musical-instruments")

# %% [markdown]
# ## 1. The prepared data
#
# `minireason prepare` (tutorial 05, as one command) turns the reviews into everything
# training needs: a BPE tokenizer trained on training reviews only, the pretraining token
# stream, and for every record with an explanation target the sequence `prompt + reason +
# <eos>` with its loss mask. In fast mode we prepare a 600-review slice, written to the
# output folder (the shared data stays read-only).

# %%
SUFFIX = "_fast" if FAST else ""  # fast and default runs never share a folder
prepared_dir = OUT / f"06_prepared{SUFFIX}"
if not (prepared_dir / "report.json").is_file():  # else an earlier run prepared it
    if FAST:
        prepare_sample(REVIEWS, prepared_dir, n_lines=600)
    else:
        prepare(PrepareConfig(reviews=str(REVIEWS), out=str(prepared_dir), progress=False))
prep = load_prepared(prepared_dir)
tok = prep.tokenizer
print(
    f"{len(prep.train)} training records, vocabulary {tok.vocab_size}, "
    f"pretraining stream {len(prep.pretrain):,} tokens"
)
print({split: len(seqs) for split, seqs in prep.finetune.items()}, "fine-tuning sequences")

# %% [markdown]
# ## 2. Pretraining: next-token prediction on running text
#
# The pretraining stream is every sentence of every training review, each followed by
# `<eos>`, concatenated. A batch is random windows of it; the target of each position is
# simply the next token, and every position counts. The model learns spelling, grammar and
# what people say about guitar strings: the language the reasons will be written in.
# (Only *training* reviews: the test reviews must stay unseen, or the evaluation in
# tutorial 08 would measure memory.)

# %%
windows = TokenWindows(prep.pretrain, batch_size=2, block_size=24, seed=0)
idx, targets, mask = windows(0)
print("input :", repr(tok.decode(idx[0].tolist())))
print("target:", repr(tok.decode(targets[0].tolist())), " (the same, one token later)")
print("loss mask:", mask, "(every position counts)")

# %% [markdown]
# ## 3. Fine-tuning: the loss mask
#
# A fine-tuning sequence is `prompt + reason + <eos>`. The model is *given* the prompt at
# generation time; we only want it to learn to continue a prompt with a good reason and to
# stop. So the loss counts a position only when its **target** is a reason token or the
# final `<eos>`. The picture below is one batch: each row a sequence (right-padded to the
# longest), coloured by what its target is.

# %%
batches = ReasonBatches(prep.finetune["train"], batch_size=8, pad_id=tok.pad_id, seed=0)
idx, targets, loss_mask = batches(0)
idx, targets, loss_mask = (np.asarray(a) for a in (idx, targets, loss_mask))
pad = targets == tok.pad_id
kind = np.where(loss_mask == 1, 2, np.where(pad & (loss_mask == 0), 0, 1))
row = 0
n_prompt = int(np.argmax(loss_mask[row]))  # first counted target
print("prompt (not counted):", repr(tok.decode(idx[row, : n_prompt + 1].tolist())))
print("targets counted     :", repr(tok.decode(targets[row][loss_mask[row] == 1].tolist())))
share = loss_mask.sum() / (~pad).sum()
print(
    f"this batch: {int(loss_mask.sum())} of {int((~pad).sum())} real targets count "
    f"({share:.0%}); the rest are prompt tokens"
)

fig, ax = plt.subplots(figsize=(9, 3))
ax.imshow(
    kind,
    cmap=matplotlib.colors.ListedColormap(["#dddddd", "#8fb3d9", "#d9534f"]),
    aspect="auto",
    interpolation="nearest",
    vmin=0,
    vmax=2,
)
ax.set_xlabel("position (target = next token)")
ax.set_ylabel("sequence in batch")
ax.set_title(
    "Fine-tuning batch: grey = padding, blue = prompt (mask 0), red = reason + <eos> (mask 1)",
    fontsize=9,
)
fig.tight_layout()
fig.savefig(OUT / "06_loss_mask.png", dpi=120)
plt.show()

# %% [markdown]
# ## 4. Train both stages
#
# `run_recipe` pretrains, then fine-tunes starting from the pretrained weights (with a fresh
# AdamW), each stage with warmup and cosine decay, validation every `eval_interval` steps,
# and a checkpoint (`.npz` + JSON) at the end. The preset is a plain JSON file: here the
# shipped `tutorial` preset (`minireason/train/presets/tutorial.json`; `tutorial_fast` in fast
# mode), small enough for the tutorial's time budget; tutorials 07 and 10 train it too when
# this run is missing. (The shipped `tiny` preset trains 800 + 800 steps; `minireason train
# --preset tiny` gives a noticeably better model.)

# %%
preset = load_preset("tutorial_fast" if FAST else "tutorial")
print(preset["description"])
for section in ("model", "pretrain", "finetune"):
    print(f"{section}: {preset[section]}")
run_dir = OUT / f"06_run{SUFFIX}"
report = run_recipe(prepared_dir, preset, run_dir, resume=True, progress=not FAST)
for name in ("pretrain", "finetune"):
    r = report[name]
    print(
        f"{name}: {r['steps']} steps, {r['status']} in {r['seconds_this_run']} s, "
        f"final train loss {r['final_train_loss']:.3f}, val loss {r['final_val_loss']:.3f}"
    )

# %% [markdown]
# ## 5. Loss curves
#
# The two stages measure different things. The pretraining loss is the mean over *every*
# token of review text; the fine-tuning loss only over *reason* tokens, which are harder
# (they must fit this user and this item) but also helped by the prompt. Watch for: the
# training and validation curves staying together (no overfitting yet at this size); the
# fine-tuning loss starting *below* where a fresh model would (ln V) because pretraining
# already taught the language; single-step spikes of the training loss (a hard batch while
# the learning rate is at its peak), which the run recovers from because gradient clipping
# bounds the step they cause; a validation curve that turns up would say "stop earlier".

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for ax, name in zip(axes, ("pretrain", "finetune"), strict=True):
    extra = load_checkpoint(run_dir / name).extra
    tr = np.array(extra["train_losses"])
    va = np.array(extra["val_losses"])
    ax.plot(tr[:, 0], tr[:, 1], alpha=0.6, label="train (per step)")
    ax.plot(va[:, 0], va[:, 1], "o-", label="validation")
    ax.axhline(np.log(tok.vocab_size), color="grey", ls=":", label="ln V (uniform guess)")
    ax.set_title(f"{name}: loss over {'all tokens' if name == 'pretrain' else 'reason tokens'}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "06_loss_curves.png", dpi=120)
plt.show()
print("saved", OUT / "06_loss_curves.png")

# %% [markdown]
# ## 6. What the mask did
#
# Compare the pretrained model with the fine-tuned one on validation sequences, measuring the
# loss separately on the reason targets (mask 1) and on the prompt targets (mask 0, padding
# excluded). Fine-tuning lowers the reason loss: that is what it was trained on. The prompt
# loss is *not* what it optimised: predicting the next tag of a prompt is no part of the
# task. Compare it with ln V, the loss of a uniform guess: the pretrained model never saw a
# prompt (tag lists between special tokens), and the fine-tuned one was never asked to
# predict one, so on the full data both stay near ln V there, while the reason loss sits
# far below it. Whatever the prompt loss does is a side effect (weights are shared), not a
# goal; without the mask, a good part of the gradient would be spent on it.


# %%
def masked_losses(model, seqs, n: int = 64):
    """Mean loss on reason targets and on prompt targets of the first ``n`` sequences."""
    batches = ReasonBatches(seqs, batch_size=min(n, len(seqs)), pad_id=tok.pad_id, seed=1)
    idx, targets, reason = (np.asarray(a) for a in batches(0))
    prompt = ((reason == 0) & (targets != tok.pad_id)).astype(np.int64)
    _, reason_loss = model.forward(idx, targets, reason, keep_cache=False)
    _, prompt_loss = model.forward(idx, targets, prompt, keep_cache=False)
    return reason_loss, prompt_loss


results = {}
for name in ("pretrain", "finetune"):
    results[name] = masked_losses(load_model(run_dir / name), prep.finetune["valid"])
    print(
        f"{name:>8} model: loss on reason targets {results[name][0]:.3f}, "
        f"on prompt targets {results[name][1]:.3f} (ln V = {np.log(tok.vocab_size):.3f})"
    )

# %% [markdown]
# ## What to take away
#
# - Pretraining teaches the language on all tokens; fine-tuning teaches the task on the
#   reason tokens only, through a mask that is 1 where the *target* is a reason or `<eos>`.
# - A masked loss is a mean over the counted tokens (not over the batch): a short reason in
#   a long prompt is not diluted.
# - Curves are read as pairs: training against validation, and each against `ln V`.
# - Next: tutorial 07 samples reasons from this model and picks the best.
