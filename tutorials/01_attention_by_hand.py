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
# # 01 · Attention by hand
#
# **Goal.** Compute scaled dot-product attention with nothing but NumPy, redo the seed
# document's worked example (section 4.3) correctly, see exactly where the document went wrong,
# mask keys, and check a hand-written backward pass with finite differences.
#
# **Time:** under a minute on a laptop CPU. **Prerequisites:** matrix products, the softmax.
#
# Run it as a script (`python tutorials/01_attention_by_hand.py`) or open it as a notebook
# (`jupytext --to notebook tutorials/01_attention_by_hand.py`). Figures are saved under
# `runs/tutorials/` (or `$MINIREASON_TUTORIAL_OUT`).

# %%
import math
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from minireason.course import worked_example as we
from minireason.nn.attention import attention_backward, attention_forward, causal_mask
from minireason.nn.gradcheck import check_gradients

OUT = Path(os.environ.get("MINIREASON_TUTORIAL_OUT", "runs/tutorials"))
OUT.mkdir(parents=True, exist_ok=True)
np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## 1. The formula
#
# A query asks "which of these keys are like me?". The answer is a weighted average of the
# values, with weights from a softmax over the query-key dot products:
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}}\right) V$$
#
# Shapes are the whole story: $Q$ is $(T_q, d_k)$, $K$ is $(T_k, d_k)$, so $QK^\top$ is
# $(T_q, T_k)$, **one score per (query, key) pair**; each row goes through a softmax over the
# keys; the result times $V$ $(T_k, d_v)$ is $(T_q, d_v)$. Here it is in five lines:


# %%
def attention_by_hand(Q, K, V, scale):
    scores = Q @ K.T * scale  # (Tq, Tk)
    scores = scores - scores.max(
        axis=1, keepdims=True
    )  # softmax is shift-invariant: avoid overflow
    weights = np.exp(scores)
    weights /= weights.sum(axis=1, keepdims=True)  # each row sums to 1
    return weights, weights @ V  # (Tq, Tk), (Tq, dv)


# %% [markdown]
# ## 2. The seed document's example
#
# Eight words, each a 3-d vector; the query is $q = [1, 0, 0]$; keys and values are the eight
# vectors themselves.

# %%
X, q = we.VECTORS, we.QUERY
for word, vec in zip(we.WORDS, X):
    print(f"{word:>7}: {vec.astype(int)}")

# %% [markdown]
# The query's scores are its dot products with each key: just each word's first coordinate.
# So "I", "read" and "watch" score 1 and the rest 0. Without the scale the weights are
# $e/(3e+5)$ and $1/(3e+5)$, and the output is $[3e,\ e+4,\ e+3]/(3e+5)$. Check it:

# %%
w, out = attention_by_hand(q[None, :], X, X, scale=1.0)
print("weights:", w[0])
print("closed form e/(3e+5) =", math.e / (3 * math.e + 5))
print(
    "output:",
    out[0],
    " closed form:",
    np.array([3 * math.e, math.e + 4, math.e + 3]) / (3 * math.e + 5),
)
assert np.allclose(w[0, 0], math.e / (3 * math.e + 5))

# %% [markdown]
# The document's own formula divides by $\sqrt{d_k} = \sqrt 3$. The example forgot to. With
# the scale, the scores shrink, and the weights get flatter:

# %%
w_scaled, out_scaled = attention_by_hand(q[None, :], X, X, scale=1 / math.sqrt(3))
print("scaled weights:", w_scaled[0])
print("scaled output: ", out_scaled[0])

# %% [markdown]
# The package's `attention_forward` gives the same numbers; it is what the model uses.

# %%
pkg_out, cache = attention_forward(q[None, :], X, X)  # default scale 1/sqrt(d_k)
assert np.allclose(pkg_out, out_scaled) and np.allclose(cache.weights, w_scaled)
print("minireason.nn.attention agrees:", pkg_out[0])

# %% [markdown]
# ## 3. What the document got wrong
#
# The document multiplied the 8x3 key matrix by itself (undefined: inner dimensions 3 and 8),
# printed an 8x3 "score" matrix, normalised every entry by one denominator taken down a column
# of that matrix, forgot its own scale, and printed outputs no reading of the inputs produces.
# First the two matrices the errata compare it with: the 8x8 scores of full self-attention
# ($Q = K = V = X$, so the scores are $X X^\top$) and its 8x3 output, one row per word.

# %%
sa = we.self_attention(False)  # unscaled, as the document computed it
print("scores X X^T (8x8, rows = queries, columns = keys):")
for word, row in zip(we.WORDS, sa.scores):
    print(f"{word:>7}: {row.astype(int)}")
print("output of unscaled self-attention (8x3, one row per word):")
for word, row in zip(we.WORDS, sa.output):
    print(f"{word:>7}: {row}")

# %% [markdown]
# Now each of the document's claims, what is right, and why:

# %%
for i, e in enumerate(we.errata(), 1):
    print(
        f"{i}. {e.what}\n   document: {e.document}\n   correct:  {e.correct}\n   why:      {e.why}\n"
    )

# %% [markdown]
# ## 4. Full self-attention, as a picture
#
# With $Q = K = V = X$, every word attends to every word. Words with the same vector ("books"
# and "and") get identical rows; each word attends most to itself and to words that share its
# coordinates. The scale makes every row flatter.

# %%
fig = we.figure(plt.figure())  # drawn by the package into a pyplot figure
fig.savefig(OUT / "01_worked_example_heatmap.png", dpi=120)
print("saved", OUT / "01_worked_example_heatmap.png")
plt.show()

# %% [markdown]
# ## 5. Masks
#
# A language model must not peek at the future: position $i$ may attend only to $j \le i$.
# That is the **causal** mask, the lower triangle. Masked scores become $-\infty$ before the
# softmax, so their weights are exactly 0. A row with *every* key masked would be $0/0$; the
# package defines it as all-zero weights, a zero output and zero gradients, which is what
# PyTorch's `scaled_dot_product_attention` returns too (checked against torch 2.13.0 in
# `tests/test_attention.py`).
#
# Both panels below share one colour scale (weights from 0 to 1), so the same colour is the
# same weight in each.

# %%
out_c, cache_c = attention_forward(X, X, X, is_causal=True)
print(causal_mask(4, 4).astype(int))
print("causal weights, first 4 rows:\n", cache_c.weights[:4, :4])
assert np.allclose(np.triu(cache_c.weights, 1), 0)

fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
for ax, (title, wts) in zip(
    axes, [("no mask", we.self_attention(True).weights), ("causal", cache_c.weights)]
):
    im = ax.imshow(wts, cmap="viridis", vmin=0.0, vmax=1.0)  # one scale for both panels
    ax.set_xticks(range(8), we.WORDS, rotation=45, ha="right")
    ax.set_yticks(range(8), we.WORDS)
    ax.set_xlabel("key (the word attended to)")
    ax.set_ylabel("query (the word attending)")
    ax.set_title(f"{title}: attention weights")
fig.colorbar(im, ax=axes, shrink=0.8, label="weight")
fig.savefig(OUT / "01_causal_mask.png", dpi=100)
plt.show()

# %%
mask = np.ones((2, 8), dtype=bool)
mask[1] = False  # the second query may attend to nothing
out_m, _ = attention_forward(X[:2], X, X, attn_mask=mask)
print("fully masked row gives zeros, not NaN:", out_m[1])

# %% [markdown]
# ## 6. The backward pass, and how to trust it
#
# With $P$ the weights and $S$ the scaled scores, the chain rule gives
# $dV = P^\top dO$, $dP = dO\,V^\top$, $dS = P \odot (dP - \mathrm{rowsum}(dP \odot P))$,
# $dQ = \text{scale}\cdot dS\,K$, $dK = \text{scale}\cdot dS^\top Q$.
#
# Derivations have sign errors; finite differences don't. Nudge each input by $\pm h$ and
# compare $\frac{f(x+h) - f(x-h)}{2h}$ with the analytic gradient. In float64, a relative error
# below $10^{-7}$ means the backward is right.
#
# The check below uses 5 queries and 6 keys with `is_causal=True`. When $T_q \ne T_k$, "causal"
# needs a convention: here (as in PyTorch) it is the **top-left** triangle, query $i$ sees keys
# $j \le i$, counting both from the start (`causal_mask(5, 6)` below), so the last key is seen by
# nobody. A KV cache needs the other alignment, **bottom-right**: its $T_q$ new queries are the
# *last* $T_q$ positions of a $T_k$-long sequence, so query $i$ sees keys
# $j \le i + (T_k - T_q)$, and the last query sees every key. With one new token
# ($T_q = 1$) top-left would let it see only the first key. That is why generation does not
# use `is_causal=True` on the cached keys: it passes a boolean mask, key position $\le$ the new
# token's position, so a new token attends to every key before it
# (`minireason/reason/generate.py`).

# %%
print("top-left causal, 5 queries x 6 keys:\n", causal_mask(5, 6).astype(int))
print(
    "bottom-right (KV cache), 5 queries x 6 keys:\n",
    np.tril(np.ones((5, 6), dtype=int), k=6 - 5),
)

# %%
rng = np.random.default_rng(0)
Q, K, V = (
    rng.normal(size=(2, 3, 5, 4)),
    rng.normal(size=(2, 3, 6, 4)),
    rng.normal(size=(2, 3, 6, 4)),
)
dO = rng.normal(size=(2, 3, 5, 4))
_, cache = attention_forward(Q, K, V, is_causal=True)
dQ, dK, dV, _ = attention_backward(dO, cache)
errors = check_gradients(
    lambda: attention_forward(Q, K, V, is_causal=True)[0],
    {"Q": Q, "K": K, "V": V},
    {"Q": dQ, "K": dK, "V": dV},
    dO,
)
print({name: f"{err:.1e}" for name, err in errors.items()})
assert max(errors.values()) < 1e-7

# %% [markdown]
# **Try it.** Flip the sign of `dS` in your head, or drop the scale from `dQ`: the relative
# error jumps to order 1. That is exactly how assignment A1's grader catches those bugs.
