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
# # 02 · Masks, multi-head attention and the backward pass
#
# **Goal.** Use the three kinds of attention mask (boolean, causal, float bias) and see what
# each does to the weights and to the gradients; build multi-head attention out of
# `split_heads` / `merge_heads` and see that heads are independent attentions on slices of the
# channels; derive the backward pass of attention and of a whole multi-head layer, and trust
# it only after a gradient check, including *why* the check uses float64 and a step of 1e-6.
#
# **Time:** well under a minute on a 2-core CPU (`MINIREASON_FAST=1` shrinks it further).
# **Prerequisites:** tutorial 01; the chain rule for matrix products
# ($Y = XW \Rightarrow dX = dY\,W^\top,\ dW = X^\top dY$).
#
# Run it as a script (`python tutorials/02_masks_heads_backward.py`) or open it as a notebook
# (`jupytext --to notebook tutorials/02_masks_heads_backward.py`). Figures are saved under
# `runs/tutorials/` (or `$MINIREASON_TUTORIAL_OUT`). Assignment A1 asks you to write the
# forward and backward of this tutorial yourself.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from minireason.course import worked_example as we
from minireason.nn.attention import (
    attention_backward,
    attention_forward,
    causal_mask,
    merge_heads,
    split_heads,
)
from minireason.nn.gradcheck import check_gradients, rel_error

FAST = os.environ.get("MINIREASON_FAST") == "1"
OUT = Path(os.environ.get("MINIREASON_TUTORIAL_OUT", "runs/tutorials"))
OUT.mkdir(parents=True, exist_ok=True)
np.set_printoptions(precision=3, suppress=True)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Three kinds of mask
#
# A mask decides, for every (query, key) pair, whether and how much the query may look at the
# key. The package follows PyTorch's `scaled_dot_product_attention`:
#
# * a **boolean** mask: `True` = may attend; a `False` score is replaced by $-\infty$, so
#   its softmax weight is exactly 0;
# * `is_causal=True`: the boolean lower triangle, so position $i$ sees only $j \le i$
#   (a language model must not read the word it is about to predict);
# * a **float** mask is *added* to the scores: $-\infty$ forbids, a finite number nudges.
#
# Masks broadcast against the score shape `(batch, heads, Tq, Tk)`. The everyday case is a
# batch of sequences of different lengths, padded to one length: a **padding mask** of shape
# `(batch, 1, 1, Tk)` hides the padded keys from every head and every query. To combine it
# with causality, `&` the two boolean masks yourself (the package refuses `attn_mask` together
# with `is_causal`, so that nothing is masked twice by accident).

# %%
T = 6
lengths = np.array([6, 4])  # two sequences, the second padded with 2 dummy positions
B, H, D = len(lengths), 2, 4
q, k, v = (rng.normal(size=(B, H, T, D)) for _ in range(3))

key_is_real = np.arange(T)[None, :] < lengths[:, None]  # (B, T)
padding = key_is_real[:, None, None, :]  # (B, 1, 1, T): broadcast over heads and queries
allowed = padding & causal_mask(T, T)  # (B, 1, T, T)
out, cache = attention_forward(q, k, v, attn_mask=allowed)
weights = cache.weights  # (B, H, T, T)
print("sequence 2 (length 4), first head, weights (rows: queries, columns: keys):\n", weights[1, 0])
assert np.allclose(weights[1][..., 4:], 0)  # nobody attends to padding
assert np.allclose(np.triu(weights[0, 0], 1), 0)  # nobody attends to the future

# %% [markdown]
# Every row of real queries still sums to 1: masking removes keys *before* normalising, it
# does not just zero some weights afterwards. Padded *queries* (rows 4 and 5 of sequence 2)
# still get outputs; they are junk that the loss must ignore (assignment A3's loss mask does
# exactly that).
#
# A float mask is a learned or designed **bias**. Here a penalty proportional to the distance
# $|i - j|$ makes each query prefer nearby keys without forbidding far ones (the idea behind
# ALiBi position biases). Then the worst case: a query row with no allowed key at all. The
# softmax would be $0/0$; the package returns a row of zero weights, never NaN.

# %%
distance = np.abs(np.arange(T)[:, None] - np.arange(T)[None, :])
bias = -1.0 * distance  # (T, T) float mask, broadcast over batch and heads
_, cache_bias = attention_forward(q, k, v, attn_mask=bias)

nobody = np.ones((T, T), dtype=bool)
nobody[2] = False  # query 2 may attend to nothing
out_nobody, _ = attention_forward(q, k, v, attn_mask=nobody)
print("output of the fully masked query:", out_nobody[0, 0, 2], "(zeros, not NaN)")
assert np.all(out_nobody[:, :, 2] == 0) and np.isfinite(out_nobody).all()

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
panels = [
    ("no mask", attention_forward(q, k, v)[1].weights[1, 0]),
    ("causal & padding (length 4)", weights[1, 0]),
    ("float bias -|i-j|", cache_bias.weights[1, 0]),
]
for ax, (title, w) in zip(axes, panels):
    im = ax.imshow(w, cmap="viridis", vmin=0, vmax=1)
    ax.set_title(title)
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
fig.colorbar(im, ax=axes, shrink=0.8, label="attention weight")
fig.savefig(OUT / "02_masks.png", dpi=100, bbox_inches="tight")
plt.show()
print("saved", OUT / "02_masks.png")

# %% [markdown]
# ## 2. Multi-head attention is a reshape
#
# A model with $C$ channels and $H$ heads projects $x$ $(B, T, C)$ to $q, k, v$ $(B, T, C)$
# once, then **cuts the channels into $H$ slices** of $D = C/H$: `split_heads` reshapes to
# $(B, T, H, D)$ and swaps to $(B, H, T, D)$. Attention treats the head axis as one more batch
# axis, so each head is an independent attention on its own slice of channels, free to learn
# its own notion of relevance. `merge_heads` undoes the cut, and an output projection $W_o$
# mixes what the heads found. No copying, no loops over heads.

# %%
x = rng.normal(size=(2, 5, 12))  # (B, T, C)
heads = split_heads(x, 3)  # (B, 3, T, 4)
print("split:", x.shape, "->", heads.shape, "  merge:", merge_heads(heads).shape)
assert np.array_equal(merge_heads(heads), x)
assert np.array_equal(heads[:, 1], x[..., 4:8])  # head 1 = channels 4..7

# %% [markdown]
# To *see* heads doing different jobs, build two by hand on the sentence made of the seed
# document's eight words, "I like to read books and I like to watch movies". Each token is
# a one-hot word (8 channels) next to a one-hot position (11 channels). With values = the
# tokens themselves:
#
# * **head 0, previous token**: its query at position $i$ is the one-hot of $i-1$, its key
#   the position one-hot, so the score peaks at $j = i - 1$; its output *copies the previous
#   word*;
# * **head 1, same word**: query = key = the word one-hot, so each word looks back at its own
#   earlier occurrences.
#
# Both heads live in one projection matrix, side by side; `split_heads` separates them.

# %%
sentence = "I like to read books and I like to watch movies".split()
vocab = {w: i for i, w in enumerate(we.WORDS)}
n_words, n_pos = len(vocab), len(sentence)
C_in = n_words + n_pos
tokens = np.zeros((n_pos, C_in))
tokens[np.arange(n_pos), [vocab[w] for w in sentence]] = 1.0
tokens[np.arange(n_pos), n_words + np.arange(n_pos)] = 1.0

sharp = 12.0  # large scores make the softmax almost one-hot
pos = slice(n_words, C_in)
Wq = np.zeros((C_in, 2 * C_in))  # [head 0 | head 1], each C_in wide
Wk = np.zeros((C_in, 2 * C_in))
Wq[pos, pos][np.arange(1, n_pos), np.arange(n_pos - 1)] = sharp  # head 0: position i -> i-1
Wk[pos, pos] = np.eye(n_pos)
Wq[:n_words, C_in : C_in + n_words] = sharp * np.eye(n_words)  # head 1: the word
Wk[:n_words, C_in : C_in + n_words] = np.eye(n_words)
Wv = np.hstack([np.eye(C_in), np.eye(C_in)])  # both heads read the tokens themselves

qh, kh, vh = (split_heads(tokens @ W, 2) for W in (Wq, Wk, Wv))  # (2, T, C_in) each
yh, cache_h = attention_forward(qh, kh, vh, is_causal=True, scale=1.0)
copied = [we.WORDS[i] for i in yh[0, :, :n_words].argmax(axis=1)]
print("word:          ", sentence)
print("head 0 copies: ", copied)
assert copied[1:] == sentence[:-1]
# each head is exactly single-head attention on its own slice of channels
alone, _ = attention_forward(qh[1], kh[1], vh[1], is_causal=True, scale=1.0)
assert np.allclose(alone, yh[1])
print("merged output:", merge_heads(yh).shape)

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
for ax, h, title in zip(axes, range(2), ["head 0: previous token", "head 1: same word"]):
    ax.imshow(cache_h.weights[h], cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(n_pos), sentence, rotation=60, ha="right")
    ax.set_yticks(range(n_pos), sentence)
    ax.set_title(title)
    ax.set_xlabel("key (attended to)")
fig.savefig(OUT / "02_heads.png", dpi=100)
plt.show()
print("saved", OUT / "02_heads.png")

# %% [markdown]
# Real heads are learned, not built, and rarely this clean; but previous-token and
# same-token heads are among the patterns found in trained transformers. In tutorial 07 we
# will read attention weights as evidence for a generated reason, with care.
#
# ## 3. The backward pass, derived
#
# Write the forward as four steps, with shapes for one head:
#
# | step | forward | shape |
# |---|---|---|
# | scores | $S = s\,QK^\top + M$ | $(T_q, T_k)$ |
# | weights | $P = \mathrm{softmax}_{\text{row}}(S)$ | $(T_q, T_k)$ |
# | output | $O = PV$ | $(T_q, D_v)$ |
#
# and walk back with $dO = \partial L / \partial O$:
#
# 1. $O = PV$ is a matrix product: $dV = P^\top dO$, $dP = dO\,V^\top$.
# 2. Softmax, one row $p$ at a time: $\partial p_j / \partial s_i = p_j(\delta_{ij} - p_i)$,
#    so $ds_i = \sum_j dp_j\, p_j (\delta_{ij} - p_i) = p_i\,(dp_i - \sum_j dp_j p_j)$. In
#    matrix form $dS = P \odot (dP - \mathrm{rowsum}(dP \odot P))$. Never build the
#    $T_k \times T_k$ Jacobian: this is $O(T_k)$ per row.
# 3. $S = s\,QK^\top + M$: $dQ = s\,dS\,K$, $dK = s\,dS^\top Q$, and for a float mask
#    $dM = dS$ (summed over the axes it was broadcast along).
#
# Masked keys have $P = 0$, so step 2 gives them $dS = 0$: **a masked key receives no
# gradient**, through $K$ or through $V$. Here is the derivation as code, next to the
# package:


# %%
def attention_backward_by_hand(dO, Q, K, V, P, scale):
    """dO (..., Tq, Dv); Q (..., Tq, D); K (..., Tk, D); V (..., Tk, Dv); P (..., Tq, Tk)."""
    dV = P.swapaxes(-1, -2) @ dO  # (..., Tk, Dv)
    dP = dO @ V.swapaxes(-1, -2)  # (..., Tq, Tk)
    dS = P * (dP - (dP * P).sum(axis=-1, keepdims=True))  # softmax backward, row by row
    dQ = scale * dS @ K  # (..., Tq, D)
    dK = scale * dS.swapaxes(-1, -2) @ Q  # (..., Tk, D)
    return dQ, dK, dV


dO = rng.normal(size=out.shape)
ours = attention_backward_by_hand(dO, q, k, v, cache.weights, cache.scale)
package = attention_backward(dO, cache)[:3]
for name, a, b in zip(("dQ", "dK", "dV"), ours, package):
    print(f"{name}: by hand vs package, rel_error {rel_error(a, b):.1e}")
    assert rel_error(a, b) < 1e-12
dK, dV = package[1], package[2]
assert np.all(dK[1][:, 4:] == 0) and np.all(dV[1][:, 4:] == 0)  # padded keys: no gradient
print("padded keys of sequence 2 get zero dK and dV")

# %% [markdown]
# ## 4. Trust, but gradient-check
#
# Agreeing with the package proves we copied it, not that either is right. The independent
# referee is the centred difference $\frac{f(x+h) - f(x-h)}{2h}$ on the scalar
# $L = \sum O \odot dO$, whose gradient is exactly what the backward returns. Check every
# input, under every kind of mask; the float bias gets a gradient too:

# %%
bias_small = rng.normal(size=(T, T))
checks = {
    "causal & padding": dict(attn_mask=allowed),
    "float bias": dict(attn_mask=bias_small),
}
for label, kw in checks.items():
    _, c = attention_forward(q, k, v, **kw)
    dq_, dk_, dv_, dmask_ = attention_backward(dO, c)
    inputs, analytic = {"Q": q, "K": k, "V": v}, {"Q": dq_, "K": dk_, "V": dv_}
    if dmask_ is not None:
        inputs["bias"], analytic["bias"] = bias_small, dmask_
    errors = check_gradients(
        lambda kw=kw: attention_forward(q, k, v, **kw)[0], inputs, analytic, dO
    )
    print(f"{label:>17}:", {n: f"{e:.1e}" for n, e in errors.items()})
    assert max(errors.values()) < 1e-7

# %% [markdown]
# The same referee for the backward we wrote by hand in section 3: `check_by_hand` takes any
# function with its signature and returns the relative error of each gradient.


# %%
def check_by_hand(backward, kw=checks["causal & padding"]):
    """Gradient-check ``backward(dO, Q, K, V, P, scale) -> (dQ, dK, dV)`` under mask ``kw``."""
    _, c = attention_forward(q, k, v, **kw)
    analytic = dict(zip(("Q", "K", "V"), backward(dO, q, k, v, c.weights, c.scale)))
    return check_gradients(
        lambda: attention_forward(q, k, v, **kw)[0], {"Q": q, "K": k, "V": v}, analytic, dO
    )


errors = check_by_hand(attention_backward_by_hand)
print("attention_backward_by_hand:", {n: f"{e:.1e}" for n, e in errors.items()})
assert max(errors.values()) < 1e-7

# %% [markdown]
# ### A whole multi-head layer
#
# Now chain everything: $q, k, v = xW_q, xW_k, xW_v$, split into heads, attention, merge,
# project with $W_o$. Backward runs the same steps in reverse, and each step's backward is
# the *other* reshape: the gradient of `merge_heads` is `split_heads` and vice versa, because
# a reshape only moves numbers around. Every weight is used at every position, so its
# gradient sums over batch and time.


# %%
def mha_forward(x, Wq, Wk, Wv, Wo, n_head):
    """x (B, T, C); W* (C, C). Causal multi-head self-attention. Returns out (B, T, C), cache."""
    q, k, v = (split_heads(x @ W, n_head) for W in (Wq, Wk, Wv))  # (B, H, T, D)
    y, att = attention_forward(q, k, v, is_causal=True)  # (B, H, T, D)
    merged = merge_heads(y)  # (B, T, C)
    return merged @ Wo, (x, merged, att, (Wq, Wk, Wv, Wo), n_head)


def mha_backward(dout, cache):
    """dout (B, T, C) -> dx (B, T, C) and dW* (C, C)."""
    x, merged, att, (Wq, Wk, Wv, Wo), n_head = cache
    C = x.shape[-1]
    dWo = merged.reshape(-1, C).T @ dout.reshape(-1, C)  # summed over batch and time
    dy = split_heads(dout @ Wo.T, n_head)  # backward of merge_heads
    dq, dk, dv, _ = attention_backward(dy, att)
    grads = {"Wo": dWo}
    dx = np.zeros_like(x)
    for name, W, dh in (("Wq", Wq, dq), ("Wk", Wk, dk), ("Wv", Wv, dv)):
        d = merge_heads(dh)  # backward of split_heads, (B, T, C)
        grads[name] = x.reshape(-1, C).T @ d.reshape(-1, C)
        dx += d @ W.T  # x feeds three projections: the gradients add
    grads["x"] = dx
    return grads


B_, T_, C_, H_ = (1, 4, 6, 2) if FAST else (2, 6, 12, 3)
xm = rng.normal(size=(B_, T_, C_))
Ws = {n: rng.normal(size=(C_, C_)) / np.sqrt(C_) for n in ("Wq", "Wk", "Wv", "Wo")}
dout = rng.normal(size=(B_, T_, C_))
out_m, cache_m = mha_forward(xm, *Ws.values(), H_)
grads = mha_backward(dout, cache_m)
errors = check_gradients(lambda: mha_forward(xm, *Ws.values(), H_)[0], {"x": xm, **Ws}, grads, dout)
print(f"multi-head layer B={B_} T={T_} C={C_} H={H_}:", {n: f"{e:.1e}" for n, e in errors.items()})
assert max(errors.values()) < 1e-7

# %% [markdown]
# ### Why float64, and why $h = 10^{-6}$?
#
# The centred difference has two errors pulling in opposite directions. **Truncation**: the
# Taylor remainder is about $\frac{h^2}{6} |f'''|$, so a big $h$ is inaccurate.
# **Round-off**: $f(x \pm h)$ are each stored with relative error $\epsilon$ (about
# $10^{-16}$ in float64, $10^{-7}$ in float32), and dividing their difference by $2h$
# amplifies it to about $\epsilon |f| / h$. The sum is smallest at
# $h^* = (3 \epsilon |f| / |f'''|)^{1/3}$. When $|f|$ and $|f'''|$ are of one size that is
# $h^* \approx \epsilon^{1/3}$: about $10^{-5}$ for float64, $10^{-3}$ to $10^{-2}$ for
# float32, the usual rule of thumb. Measure it: compare the directional derivative along a
# random direction $u$ with the analytic $\langle \nabla L, u \rangle$ over a range of steps.

# %%
steps = np.logspace(-1, -10, 10 if FAST else 19)  # both grids contain 1e-6
u = {n: rng.normal(size=a.shape) for n, a in {"x": xm, **Ws}.items()}
exact = sum(float((grads[n] * u[n]).sum()) for n in u)


def loss(dtype, h):
    shifted = {n: (a + h * u[n]).astype(dtype) for n, a in {"x": xm, **Ws}.items()}
    out_h, _ = mha_forward(shifted["x"], *(shifted[n] for n in Ws), H_)
    return float((out_h * dout.astype(dtype)).sum(dtype=np.float64))


curves = {}
for dtype in (np.float64, np.float32):
    curves[dtype.__name__] = [
        abs((loss(dtype, h) - loss(dtype, -h)) / (2 * h) - exact) / abs(exact) for h in steps
    ]
    errs = curves[dtype.__name__]
    best, at_default = int(np.argmin(errs)), int(np.argmin(np.abs(np.log10(steps) + 6)))
    print(
        f"{dtype.__name__}: best h = {steps[best]:.0e} (rel error {errs[best]:.1e}); "
        f"at h = 1e-6 rel error {errs[at_default]:.1e}"
    )

# %% [markdown]
# The best float64 step measured above is smaller than the rule of thumb's $10^{-5}$. The rule
# assumed $|f'''| \approx |f|$. Estimate both for this loss along $u$ ($f'''$ by a third
# centred difference at a large step): $|f'''|$ is far larger than $|f|$ (printed), so truncation
# grows faster with $h$ and the formula's $h^*$ moves down by the cube root of that ratio. The
# measured minimum sits lower still: the round-off term is a random error whose size is only
# bounded by $\epsilon |f| / h$, and near its bottom the curve is flat, so the minimum of one
# measurement wanders within that flat stretch. What matters is the stretch itself, printed
# last: every step in it gives an error far below $10^{-7}$.

# %%
h3 = 1e-2
f3 = (
    loss(np.float64, 2 * h3)
    - 2 * loss(np.float64, h3)
    + 2 * loss(np.float64, -h3)
    - loss(np.float64, -2 * h3)
) / (2 * h3**3)
f0 = loss(np.float64, 0.0)
predicted = (3 * np.finfo(np.float64).eps * abs(f0) / abs(f3)) ** (1 / 3)
measured = steps[int(np.argmin(curves["float64"]))]
print(f"along u: |f| = {abs(f0):.3g}, |f'''| = {abs(f3):.3g}")
print(f"float64: predicted best h = {predicted:.1e}; measured best on the grid = {measured:.0e}")
flat = steps[np.array(curves["float64"]) < 1e-9]
print(f"float64: relative error below 1e-9 for every h from {flat.min():.0e} to {flat.max():.0e}")

# %% [markdown]
# The curves: the dashed line marks gradcheck's default step, which sits on the flat bottom of
# the float64 curve, close to the best step.

# %%
fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
for name, errs in curves.items():
    ax.loglog(steps, np.maximum(errs, 1e-17), "o-", label=name)
ax.axvline(1e-6, color="gray", ls="--", lw=1)
ax.text(
    1e-6,
    0.95,
    " h = 1e-6, gradcheck's default",
    color="gray",
    va="top",
    transform=ax.get_xaxis_transform(),
)
ax.set_xlabel("step h")
ax.set_ylabel("relative error of the centred difference")
ax.set_title("Truncation error (large h, left) vs round-off error (small h, right)")
ax.invert_xaxis()
ax.legend()
fig.savefig(OUT / "02_gradcheck_step.png", dpi=100)
plt.show()
print("saved", OUT / "02_gradcheck_step.png")

# %% [markdown]
# In float64 several decades of steps around $10^{-6}$ give errors far below $10^{-7}$,
# which is why a relative error under $10^{-7}$ means "right" and anything near $10^{-2}$ or
# above means "wrong". In float32 the curve bottoms out orders of magnitude higher, and at
# $h = 10^{-6}$ it is about as large as a real but small bug would make it (the
# printed numbers above): gradient-check in float64, then train in float32.
#
# **Try it.** In a new cell, copy `attention_backward_by_hand` under another name, say
# `buggy`, flip the sign of `dK` (or drop `scale` from `dQ`), and run
# `check_by_hand(buggy)`: the relative error of `K` (or `Q`) jumps to order 1 while the other
# two stay near $10^{-10}$. That is how assignment A1's grader tells a bug from round-off.
#
# **Next:** tutorial 03 stacks this layer with LayerNorm and an MLP into a transformer block
# and the GPT. Assignment [A1](assignments/A1_attention/README.md) asks you to write
# sections 1 and 3 yourself.
