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
# # 07 · Generating and extracting reasons (seed step 4), with attention as evidence
#
# **Goal.** Turn the trained model into reasons: (1) how the next token is chosen (greedy,
# temperature, top-k, top-p) and what each does to the distribution; (2) the key/value cache
# that makes generation fast, and a check that it gives exactly what recomputing the whole
# sequence gives; (3) seed step 4: sample several candidates, score them for relevance to the
# user and the item, keep the best; (4) read which parts of the prompt the model attended to
# while writing it, as a heatmap; (5) a copy head that lets the model repeat words of its
# prompt, checked and trained on a toy task.
#
# **Time:** seconds when tutorial 06's run is in `$MINIREASON_TUTORIAL_OUT/06_run`; otherwise
# this tutorial prepares the data and trains tutorial 06's `tutorial` preset itself (the `tiny`
# width, 2 layers x 128, 300 + 300 steps: about 2 to 4 minutes on 2 cores). With
# `MINIREASON_FAST=1` it uses a 600-review slice and the `tutorial_fast` preset, a 1-layer,
# 32-wide model trained for 20 + 20 steps, whose reasons are gibberish: the mechanics are what
# matter there.
# **Prerequisites:** tutorial 06. Assignment A4 asks you to write the scoring and the
# evidence aggregation yourself.

# %%
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from minireason.data.fetch import find_reviews
from minireason.nn.checkpoint import load_model
from minireason.nn.layers import log_softmax
from minireason.prep.features import profile
from minireason.prep.prepare import PrepareConfig, prepare, prepare_sample
from minireason.prep.prepared import load_prepared
from minireason.prep.prompts import build_prompt
from minireason.reason.evidence import evidence_figure
from minireason.reason.explain import explain, item_tags, user_history
from minireason.reason.generate import filter_probs, generate, prefill
from minireason.train.recipe import run_recipe
from minireason.train.run import Decoding

FAST = os.environ.get("MINIREASON_FAST") == "1"
OUT = Path(os.environ.get("MINIREASON_TUTORIAL_OUT", "runs/tutorials"))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 0. A trained model
#
# Tutorial 06's run if it is there; otherwise the same preparation and preset, done here.

# %%
SUFFIX = "_fast" if FAST else ""  # the folders tutorial 06 writes in this mode
prepared_dir, run_dir = OUT / f"06_prepared{SUFFIX}", OUT / f"06_run{SUFFIX}"
if not (run_dir / "finetune" / "checkpoint.json").is_file():
    REVIEWS = find_reviews(
        "musical-instruments"
    )  # $MINIREASON_DATA_DIR, ../shared/data, fetch cache
    if not (prepared_dir / "report.json").is_file():  # else tutorial 06 prepared it
        if FAST:
            prepare_sample(REVIEWS, prepared_dir, n_lines=600)
        else:
            prepare(PrepareConfig(reviews=str(REVIEWS), out=str(prepared_dir), progress=False))
    preset = "tutorial_fast" if FAST else "tutorial"  # tutorial 06's
    run_recipe(prepared_dir, preset, run_dir, resume=True, progress=not FAST)
prep = load_prepared(prepared_dir)
tok = prep.tokenizer
model = load_model(run_dir / "finetune")  # eval mode: no dropout
print(
    f"model: {model.config.n_layer} layers x {model.config.n_embd}, "
    f"{model.num_params():,} parameters"
)

# %% [markdown]
# A test user with some training history, and the item of their test review: the prompt is
# built exactly as in tutorial 05 (history blocks, newest kept first, then the item's tags).

# %%
record = next(r for r in prep.test if r["target"] and len(user_history(prep, r["user"])) >= 2)
history = user_history(prep, record["user"])
tags = item_tags(prep, record["item"])
budget = prep.prompt_tokens
focus = prep.focus_for(record["item"], profile(history)["aspects"])  # as prepare predicted it
prompt = build_prompt(history, tags, budget, tok, item=record["item"], focus=focus)
print(
    f"user {record['user']}: {len(history)} history items, {prompt.n_history} fit; "
    f"item {record['item']} tags {tags}; focus {focus}"
)
print("prompt:", tok.decode(prompt.ids))
print("the user actually wrote:", record["target"])

# %% [markdown]
# ## 1. Choosing the next token
#
# The model gives logits over the whole vocabulary. **Greedy** takes the largest: the most
# likely continuation, deterministic, and prone to bland, repetitive text. **Temperature**
# `t` samples from `softmax(logits / t)`: below 1 sharper, above 1 flatter. **Top-k** keeps
# only the k most likely tokens; **top-p** (nucleus) keeps the smallest set of most likely
# tokens whose mass reaches p, so it adapts: few tokens when the model is sure, many when it
# is not. The plot shows the first reason token's distribution under each rule (the 30 most
# likely tokens, in rank order).

# %%
step, _ = prefill(model, np.asarray([prompt.ids]), np.array([len(prompt.ids)]))
logits = step.logits  # (1, V): the next-token logits after the prompt
rules = {
    "t = 1": {},
    "t = 0.7": {"temperature": 0.7},
    "t = 1.5": {"temperature": 1.5},
    "top-k 10": {"top_k": 10},
    "top-p 0.9": {"top_p": 0.9},
}
order = np.argsort(-np.asarray(logits[0]))[:30]
fig, ax = plt.subplots(figsize=(9, 3.5))
for name, kw in rules.items():
    probs = filter_probs(logits, **kw)[0]
    ax.plot(range(30), probs[order], "o-", ms=3, label=f"{name} ({int((probs > 0).sum())} kept)")
ax.set_xticks(range(30))
ax.set_xticklabels([repr(tok.decode([int(i)]))[1:-1] for i in order], rotation=90, fontsize=7)
ax.set_ylabel("probability")
ax.set_title("The first reason token: how each sampling rule reshapes the distribution")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "07_sampling.png", dpi=120)
plt.show()

settings = {
    "greedy": {"temperature": 0},
    "temperature 1.0": {"temperature": 1.0},
    "temperature 0.7": {"temperature": 0.7},
    "top-k 10": {"top_k": 10},
    "top-p 0.9": {"top_p": 0.9},
}
for name, kw in settings.items():
    gen = generate(model, [prompt.ids], max_new_tokens=30, eos_id=tok.eos_id, rng=1, **kw)
    text = tok.decode(gen.tokens[0], skip_special=True)
    print(f"{name:>16} [{gen.finish[0]}, mean log p {np.mean(gen.logprobs[0]):.2f}]: {text}")

# %% [markdown]
# ## 2. The key/value cache, and a check that it is exact
#
# Attention is causal, so a position's keys and values never change once computed. The
# cache keeps them (per layer, `(B, H, block_size, D)`) and each new token costs one row of
# work instead of a forward pass over the whole sequence. An optimisation like this must not
# change the answer: below, the cached greedy generation is compared with a slow loop that
# recomputes the full sequence for every token; the tokens must be identical and the
# log-probabilities equal to rounding.

# %%
n_new = 12 if FAST else 30
t0 = time.perf_counter()
cached = generate(model, [prompt.ids], max_new_tokens=n_new, temperature=0)
t_cached = time.perf_counter() - t0

t0 = time.perf_counter()
seq, slow_logp = list(prompt.ids), []
for _ in range(n_new):
    logits_full, _ = model.forward(np.asarray([seq]), keep_cache=False)
    logp = np.asarray(log_softmax(logits_full[0, -1:]))[0]
    token = int(np.argmax(logp))
    slow_logp.append(logp[token])
    seq.append(token)
t_slow = time.perf_counter() - t0
same = cached.tokens[0] == seq[len(prompt.ids) :]
diff = np.abs(np.asarray(cached.logprobs[0]) - np.asarray(slow_logp)).max()
print(f"same tokens: {same}; max |log p difference| = {diff:.1e}")
print(
    f"{n_new} tokens: {t_cached * 1e3:.0f} ms with the cache, {t_slow * 1e3:.0f} ms "
    "recomputing (the gap grows with the length)"
)
assert same and diff < 1e-4

# %% [markdown]
# ## 3. Candidates, scored: seed step 4
#
# One sample is a gamble. `minireason.reason.explain.explain` draws several candidates in one batch
# (top-p 0.9, the prompt prefilled once and its cache copied), then scores each
# (`minireason.reason.choose`, the one place where candidates are sampled and scored):
#
# `score = item coverage + focus coverage + own phrases + agreement - repetition - echoes
# - unknown words - penalties`
#
# with the default weights (`minireason.train.run.ScoreWeights`, which every run records in its
# `run.json`; chosen on the validation split, docs/quality.md gives the numbers). *Item coverage* is the share of the item's tags the
# candidate names, *focus coverage* the share of the prompt's focus aspects, *own phrases* the
# share of its 3-word phrases the user wrote in their past reviews, and *agreement* its mean
# word overlap with the other candidates (minimum-Bayes-risk selection: what most samples say
# is rarely an odd sample). *User coverage* (the user's profile aspects it names) and the mean
# log-probability are computed too but weigh 0 by default: on validation they lost to the
# terms above, and the likeliest sentence is often the most generic one. The penalties push
# down loops, a content word said again, a word the training reviews never used (a made-up
# brand; only when the caller passes `known_words`), duplicates, cut-off and empty text.
# Below no past reviews or vocabulary are passed, so those two terms are 0.

# %%
expl = explain(
    model,
    tok,
    history,
    tags,
    prompt_tokens=budget,
    decoding=Decoding(n_candidates=8, max_new_tokens=30),
    seed=0,
    item=record["item"],
    focus=focus,
)
print("the user's profile aspects:", profile(history)["aspects"])
print("notes:", "; ".join(expl.notes) or "none")
print(f"{'score':>6} {'user':>5} {'item':>5} {'focus':>5} {'logp':>6} {'rep':>5}  candidate")
for c in expl.candidates:
    s = c.score
    print(
        f"{s.total:6.2f} {s.user_coverage:5.2f} {s.item_coverage:5.2f} {s.focus_coverage:5.2f} "
        f"{s.mean_logprob:6.2f} "
        f"{s.repetition:5.2f}  {c.text[:70]!r}{' [' + c.finish + ']' if c.finish != 'eos' else ''}"
    )
print("\nchosen:", expl.reason)
print(
    "it names aspects",
    expl.score.mentioned_aspects,
    "tags",
    expl.score.mentioned_tags,
    "and focus",
    expl.score.mentioned_focus,
)

# %% [markdown]
# ## 4. Attention as evidence
#
# One forward pass over `prompt + chosen reason` gives each layer's attention; averaged over
# layers and heads, row `i` is where the model looked while producing reason token `i`.
# Summing each row over a prompt segment's tokens (a history item, the target item, a single
# tag) and averaging over rows gives the segment's *share* of attention. The heatmap shows the
# rows; the list ranks the shares.
#
# A caution worth keeping: attention shows what the model *read*, not *why* it said
# something. Weights can be high on tokens that did not change the output (separators,
# `<reason>` itself) and low on tokens that did. Use it as a view, not a proof.

# %%
fig = evidence_figure(expl, plt.figure())  # drawn by the package into a pyplot figure
fig.savefig(OUT / "07_evidence.png", dpi=120)
print("saved", OUT / "07_evidence.png")
for share in expl.evidence.owners:
    print(f"  {share.owner:>8} {share.label:<12} {share.share:6.1%}")
print("single tags / aspects:", [(p.label, f"{p.share:.0%}") for p in expl.evidence.pieces])
plt.show()

# %% [markdown]
# ## 5. Copying from the prompt: a pointer-generator head
#
# The evidence sentence in the prompt often names the very thing the reason should say ("the
# Snark clip-on", "the felt pads"), but a small model trained on a million words may never
# have learnt to spell it. A *copy head* (`minireason.nn.copy_head`, switched on with
# `model.copy: true` in a preset) gives it a second way to produce a token: point at a
# position of the context and repeat its token. A learned gate `g` mixes the two:
#
# `p(w) = g * softmax(logits)[w] + (1 - g) * sum of the copy attention on positions holding w`
#
# Its backward pass is written by hand like every other layer's. Here it is checked against
# finite differences, then trained on a toy task, `a b c SEP a b c`, where the answer after
# `SEP` is always in the context. The test uses token ids never seen in training: the plain
# model cannot produce them (their embeddings were never trained), the copy head points at them.

# %%
from minireason.nn.copy_head import copy_head_backward, copy_head_forward, copy_param_shapes
from minireason.nn.gradcheck import check_gradients
from minireason.nn.model import GPT, GPTConfig
from minireason.nn.optim import AdamW

rng = np.random.default_rng(0)
B, T, C = 2, 5, 8
h, ids = rng.normal(size=(B * T, C)), rng.integers(0, 4, (B, T))
rows = np.arange(B * T)
targets, logp_vocab = rng.integers(0, 5, B * T), np.log(rng.uniform(0.05, 0.9, B * T))
params = {name: rng.normal(0, 0.5, shape) for name, shape in copy_param_shapes(C, 2).items()}
dlogp = rng.normal(size=B * T)
_, cache = copy_head_forward(h, ids, rows, targets, logp_vocab, params)
dlogp_vocab, dh, grads = copy_head_backward(dlogp, cache)
errors = check_gradients(
    lambda: copy_head_forward(h, ids, rows, targets, logp_vocab, params)[0],
    {"h": h, "logp_vocab": logp_vocab, **params},
    {"h": dh, "logp_vocab": dlogp_vocab, **grads},
    dlogp,
)
print("copy head gradient check, relative errors:", {k: f"{v:.1e}" for k, v in errors.items()})


def toy_batch(rng, lo, hi, n=32):
    words = rng.integers(lo, hi, (n, 3))
    return np.concatenate([words, np.zeros((n, 1), np.int64), words], axis=1)


def train_toy(copy, steps=300):
    """Train on ids 1..29; return the loss curve and the loss on ids 30..39, never seen."""
    model = GPT(GPTConfig(vocab_size=40, block_size=8, n_layer=1, n_head=2, n_embd=16, copy=copy))
    opt, rng = AdamW(model.params, lr=1e-2), np.random.default_rng(0)
    mask = np.zeros((32, 6), dtype=np.int64)
    mask[:, 3:] = 1  # the loss counts SEP -> a, a -> b, b -> c
    curve = []
    for _ in range(steps):
        seq = toy_batch(rng, 1, 30)
        curve.append(model.forward(seq[:, :-1], seq[:, 1:], mask, all_logits=False)[1])
        opt.step(model.backward())
    seq = toy_batch(rng, 30, 40)
    return curve, model.forward(seq[:, :-1], seq[:, 1:], mask, keep_cache=False)[1]


fig, ax = plt.subplots(figsize=(6, 3))
for copy in (False, True):
    curve, unseen = train_toy(copy)
    name = "with copy head" if copy else "plain"
    ax.plot(curve, label=f"{name}: loss on unseen ids {unseen:.2f}")
    print(f"{name:>15}: final training loss {curve[-1]:.3f}, loss on unseen ids {unseen:.2f}")
ax.set(xlabel="step", ylabel="loss", yscale="log", title="a b c SEP a b c")
ax.legend()
fig.savefig(OUT / "07_copy_head.png", dpi=120)
plt.show()

# %% [markdown]
# Both learn the task on the ids they trained on; only the copy head repeats ids it never
# saw (a uniform guess would score log 40 = 3.7). Notice too the plateau of the copy
# head's curve: the gate learns to copy first, and only then does the copy attention learn
# *where* to point. With a copy-head model, `minireason explain` prints a `copied:` line
# (which words came from where) and the explanations page underlines copied tokens.

# %% [markdown]
# ## What to take away
#
# - Sampling rules trade likelihood against variety; top-p adapts to the model's certainty.
# - The KV cache is an exact optimisation: check it against recomputation.
# - Step 4 is a re-ranking: sample many, keep the one that covers the user and the item.
# - A copy head lets a small model repeat what its prompt says, even words it cannot spell.
# - Attention evidence is a view into the model, to be read with care. Tutorial 08 asks how
#   to measure whether the reasons are any good, and how those measures mislead.
