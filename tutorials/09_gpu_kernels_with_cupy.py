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
# # 09 · GPU kernels with CuPy: tiled online softmax, in NumPy first
#
# **Goal.** Understand the idea behind flash attention well enough to read the CUDA kernel
# `kernels/attention_forward3_flash.cu`: the softmax of a row can be computed *one tile of
# keys at a time*, carrying only two numbers per row (the running maximum `m` and the
# running denominator `l`), so the `(T, T)` score matrix never has to exist in memory. We run
# the algorithm in NumPy on the CPU, step by step, with a plot of `m` and `l`; then the
# package's tile-for-tile emulation of the kernel (`minireason.gpu.flash_emulation`) against the
# reference attention; then, only where a GPU and CuPy exist, the real kernels.
#
# **Time:** a few seconds on a 2-core CPU (no data, no training). **Prerequisites:**
# tutorial 02 (attention forward and backward). The GPU cells need CuPy and an NVIDIA GPU;
# without them they print why they are skipped, and everything else still runs.

# %%
import math
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from minireason import backend
from minireason.gpu.flash_emulation import BLOCK_M, BLOCK_N, flash_forward_emulated
from minireason.nn.attention import attention_forward

FAST = os.environ.get("MINIREASON_FAST") == "1"
OUT = Path(os.environ.get("MINIREASON_TUTORIAL_OUT", "runs/tutorials"))
OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Why not just compute the softmax?
#
# Attention for one head is `softmax(scale * Q K^T) V`. Written naively it builds the score
# matrix `S` of shape `(Tq, Tk)`, exponentiates it, normalises each row and multiplies by
# `V`. On a GPU the arithmetic is cheap; what costs is *memory traffic*: `S` is written to
# the GPU's main memory, read back for the softmax, written again, read again for `P V`.
# At 12 heads, batch 8 and 4096 tokens, `S` alone is 8 * 12 * 4096² floats = 6.4 GB.
# Flash attention keeps a tile of `S` in the chip's small, fast on-chip memory and never
# writes it out. The question is how to do a softmax when you see only part of a row.

# %%
T, D = 4096, 64
for batch_heads in (1, 96):
    gb = batch_heads * T * T * 4 / 1e9
    print(f"score matrix for {batch_heads:>2} (batch x heads) rows of T={T}: {gb:6.2f} GB float32")
print(f"one {BLOCK_M} x {BLOCK_N} score tile: {BLOCK_M * BLOCK_N * 4 / 1024:.0f} KiB")

# %% [markdown]
# ## 2. The online softmax, one row, tile by tile
#
# For one query row with scores `s_1 .. s_T` and values `v_j`, the output is
# `sum_j exp(s_j - M) v_j / sum_j exp(s_j - M)` with `M = max_j s_j` (subtracting the
# maximum keeps `exp` from overflowing; it cancels in the ratio). We do not know `M` until we
# have seen every key. The trick: keep a running maximum `m`, a running denominator
# `l = sum exp(s_j - m)` and a running numerator `acc = sum exp(s_j - m) v_j` over the keys
# seen so far. When a new tile raises the maximum to `m_new`, everything summed so far was
# measured against the old `m`; multiplying by `alpha = exp(m - m_new)` re-expresses it
# against `m_new`:
#
# ```
# m_new = max(m, max(s_tile))
# alpha = exp(m - m_new)
# l     = alpha * l   + sum(exp(s_tile - m_new))
# acc   = alpha * acc + exp(s_tile - m_new) @ v_tile
# ```
#
# At the end `out = acc / l`. No approximation: it is the same sum, regrouped. Below, one
# row of 256 keys in tiles of 16, with the scores drifting upwards so that the maximum keeps
# moving (the interesting case).

# %%
n_keys, tile = 256, 16
scores = rng.normal(size=n_keys) + np.linspace(0.0, 4.0, n_keys)
values = rng.normal(size=(n_keys, 8))

m, l, acc = -np.inf, 0.0, np.zeros(values.shape[1])
trace = []  # (keys seen, m, l, alpha) after each tile
for start in range(0, n_keys, tile):
    s_tile = scores[start : start + tile]
    m_new = max(m, s_tile.max())
    alpha = math.exp(m - m_new)  # exp(-inf) = 0 on the first tile: nothing to rescale
    p = np.exp(s_tile - m_new)
    l = alpha * l + p.sum()
    acc = alpha * acc + p @ values[start : start + tile]
    m = m_new
    trace.append((start + tile, m, l, alpha))
online = acc / l

weights = np.exp(scores - scores.max())
direct = (weights / weights.sum()) @ values
print(f"online vs direct softmax output: max |difference| = {np.abs(online - direct).max():.2e}")
print(
    f"final m = {m:.4f} (true max {scores.max():.4f}); final l = {l:.4f} "
    f"(direct sum {weights.sum():.4f})"
)
print(
    "tiles where the maximum moved (alpha < 1):",
    sum(a < 1.0 for _, _, _, a in trace[1:]),
    "of",
    len(trace) - 1,
)

# %% [markdown]
# The plot shows the two running numbers. `m` only goes up, in steps, whenever a tile holds
# a new maximum. `l` grows as keys are added but *drops* each time `m` jumps, because all
# earlier terms are rescaled by `alpha < 1`. The quantity `l * exp(m)` (dashed, right axis)
# is the plain sum of `exp(s_j)` over the keys seen: it only grows, as a running sum must.
# The kernel never computes it (it would overflow for large scores); it is here to show that
# the rescaling loses nothing.

# %%
seen = np.array([t[0] for t in trace])
ms = np.array([t[1] for t in trace])
ls = np.array([t[2] for t in trace])
fig, ax = plt.subplots(figsize=(8, 4))
ax.step(seen, ms, where="post", label="running max m", color="tab:red")
ax.plot(seen, ls, "o-", label="running denominator l", color="tab:blue")
ax.set_xlabel("keys seen (tiles of 16)")
ax.set_ylabel("m, l")
twin = ax.twinx()
twin.plot(seen, ls * np.exp(ms), "k--", label="l * exp(m) = sum exp(s_j)")
twin.set_ylabel("l * exp(m)")
lines = ax.get_legend_handles_labels()
lines2 = twin.get_legend_handles_labels()
ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left")
ax.set_title("Online softmax: the running max and denominator of one row")
fig.tight_layout()
fig.savefig(OUT / "09_online_softmax.png", dpi=120)
plt.show()
print("saved", OUT / "09_online_softmax.png")

# %% [markdown]
# ## 3. The whole kernel, emulated tile for tile
#
# `minireason.gpu.flash_emulation.flash_forward_emulated` is the readable twin of the CUDA
# kernel: the same tiles (`BLOCK_M` = 32 query rows per thread block, `BLOCK_N` = 32 keys
# per step), the same order, the same rescaling, the same saved log-sum-exp
# `lse = m + log(l)` (the backward pass recomputes `P = exp(S - lse)` from it instead of
# storing `P`). Each thread block's parallel work is written as NumPy maths over a tile. In
# float64 it must match the reference `attention_forward` to rounding error, which is how the
# test suite checks the *algorithm* on machines without a GPU; the kernel then only has to
# match this file.

# %%
B, H, Tn, Dh = 2, 3, 40 if FAST else 200, 16
q, k, v = (rng.normal(size=(B, H, Tn, Dh)) for _ in range(3))
for causal in (False, True):
    out_flash, lse = flash_forward_emulated(q, k, v, is_causal=causal)
    out_ref, _ = attention_forward(q, k, v, is_causal=causal)
    scores_full = (q @ k.swapaxes(-1, -2)) / math.sqrt(Dh)
    if causal:
        scores_full = np.where(np.tril(np.ones((Tn, Tn), bool)), scores_full, -np.inf)
    lse_ref = np.log(np.exp(scores_full).sum(axis=-1))
    print(
        f"is_causal={causal!s:5}: max |out - reference| = "
        f"{np.abs(out_flash - out_ref).max():.1e}, max |lse - log sum exp| = "
        f"{np.abs(lse - lse_ref).max():.1e}"
    )

# %% [markdown]
# A causal kernel also *skips work*: query tile `[m0, m0 + 32)` can only see keys before
# `m0 + 32`, so key tiles wholly to the right of the diagonal are never loaded. Counting the
# tiles visited shows the saving approaching one half as `T` grows.

# %%
for t_len in (64, 256, 1024, 4096):
    n_q = math.ceil(t_len / BLOCK_M)
    n_k = math.ceil(t_len / BLOCK_N)
    causal_tiles = sum(
        math.ceil(min(t_len, m0 + BLOCK_M) / BLOCK_N) for m0 in range(0, t_len, BLOCK_M)
    )
    print(
        f"T={t_len:>5}: {n_q * n_k:>6} tiles without a mask, {causal_tiles:>6} causal "
        f"({causal_tiles / (n_q * n_k):.0%})"
    )

# %% [markdown]
# ## 4. The CUDA kernels
#
# `kernels/README.md` walks through the four numbered kernels, each a step from the one
# before (as in llm.c): (1) *naive*, one thread block per query row, scores in shared
# memory; (2) *fused softmax*, the two matrix products in cuBLAS and one warp per row doing
# scale + mask + softmax with warp shuffles, but the whole score matrix in global memory;
# (3) *flash forward*, the algorithm above, one thread block per 32 query rows, four warps
# of eight rows each, the tile's scores in registers and `float4` loads from shared memory;
# (4) *flash backward*, three kernels that recompute `P` from `lse`. Python launches them
# through `cupy.RawModule` (`minireason/gpu/cuda_attention.py`); the package core never imports
# CuPy (`minireason/backend.py` hands out the array module).
#
# The cells below run only where `backend.gpu_available()` is true. They check kernel 3
# against the NumPy reference *before* timing it: a fast wrong kernel is worth nothing.

# %%
gpu_ok, why = backend.gpu_available()
if not gpu_ok:
    print(f"GPU cells skipped: {why}")
else:
    import cupy as cp  # only here, and only when a GPU exists

    from minireason.gpu.cuda_attention import attention_forward3_flash

    q32, k32, v32 = (a.astype(np.float32) for a in (q, k, v))
    out_gpu, lse_gpu = attention_forward3_flash(
        cp.asarray(q32), cp.asarray(k32), cp.asarray(v32), is_causal=True
    )
    out_ref, _ = attention_forward(q32, k32, v32, is_causal=True)
    err = np.abs(backend.to_numpy(out_gpu) - out_ref).max()
    print(f"kernel 3 vs NumPy reference (float32, causal): max |difference| = {err:.2e}")
    assert err < 1e-4, "the kernel disagrees with the reference: do not time it"

# %%
if gpu_ok:
    shape = (8, 12, 1024, 64)
    qg, kg, vg = (cp.asarray(rng.normal(size=shape).astype(np.float32)) for _ in range(3))
    attention_forward3_flash(qg, kg, vg, is_causal=True)  # compile and warm up
    cp.cuda.Device().synchronize()
    t0 = time.perf_counter()
    for _ in range(20):
        attention_forward3_flash(qg, kg, vg, is_causal=True, check=False)
    cp.cuda.Device().synchronize()
    ms_per_call = (time.perf_counter() - t0) / 20 * 1e3
    print(
        f"kernel 3, causal, shape {shape}: {ms_per_call:.3f} ms per call "
        f"(see `minireason bench kernels` for the measured table)"
    )
else:
    print(
        "GPU timing skipped: no GPU (see above); `minireason bench kernels` times them "
        "where one exists"
    )

# %% [markdown]
# ## What to take away
#
# - The softmax over a row does not need the whole row at once: a running maximum and a
#   running denominator, rescaled by `exp(m_old - m_new)` when the maximum moves, give the
#   exact result tile by tile.
# - That is what lets flash attention keep scores on chip and save only `out` and `lse`;
#   the backward recomputes the probabilities instead of storing `(T, T)` of them.
# - Check a kernel against a trusted reference before timing it, and check the algorithm
#   in a slow, readable form (here NumPy) before writing it in CUDA.
