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
# # 03 · A transformer block and the GPT, layer by layer
#
# **Goal.** Run the package's GPT (`minireason.nn.model.GPT`) by hand, one layer at a time, and
# print the shape of every intermediate; see why a pre-norm block is
# `x + attn(ln1(x))` then `+ mlp(ln2(.))`; count the parameters with a formula and check it
# against the model; trust the block's hand-written backward only after a gradient check.
#
# **Time:** a few seconds on a 2-core CPU. **Prerequisites:** tutorial 02 (attention and its
# backward). Assignment A2 asks you to write LayerNorm, GELU, the MLP and the block yourself.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from minireason.nn import layers
from minireason.nn.gradcheck import check_gradients
from minireason.nn.model import GPT, GPTConfig

FAST = os.environ.get("MINIREASON_FAST") == "1"
OUT = Path(os.environ.get("MINIREASON_TUTORIAL_OUT", "runs/tutorials"))
OUT.mkdir(parents=True, exist_ok=True)
np.set_printoptions(precision=4, suppress=True)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. A tiny GPT
#
# One config dataclass holds the shape. We use float64 so that our layer-by-layer replay can
# be compared with the model to the last digit, and a tiny size so every array is printable.

# %%
config = GPTConfig(
    vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=16, dtype="float64", seed=0
)
model = GPT(config).eval()
B, T = 2, 8
idx = rng.integers(0, config.vocab_size, size=(B, T))
print(config)
print("idx", idx.shape)

# %% [markdown]
# ## 2. Layer by layer
#
# Inside the model, activations are 2-D: `(B * T, C)`, one row per token, so that every
# projection is a single matrix product. Only attention reshapes to `(B, H, T, D)`.
# A *pre-norm* block normalises the input of each sublayer, not its output: the residual
# stream `x` itself is never normalised, so the gradient has a clean path from the loss to
# the embeddings (`dx = dout + ...` at every residual), which is what lets deep stacks train.


# %%
def show(label, a, note=""):
    print(f"{label:<32} {str(a.shape):<10} {note}")


p = model.params
x, _ = layers.embedding_forward(idx, p["wte"], p["wpe"])
show("embedding (token + position)", x)
for i in range(config.n_layer):
    bp = {name: p[f"h.{i}.{name}"] for name in layers.BLOCK_PARAMS}
    h, _ = layers.layernorm_forward(x, bp["ln1.w"], bp["ln1.b"])
    show(f"block {i}: ln1(x)", h, f"largest row mean {np.abs(h.mean(-1)).max():.0e}")
    h, att = layers.self_attention_forward(
        h,
        bp["attn.w_qkv"],
        bp["attn.b_qkv"],
        bp["attn.w_proj"],
        bp["attn.b_proj"],
        B,
        T,
        config.n_head,
    )
    show(f"block {i}: attn(ln1(x))", h, f"weights {att[1].weights.shape} = (B, H, T, T)")
    x = x + h
    show(f"block {i}: x + attn", x)
    h, _ = layers.layernorm_forward(x, bp["ln2.w"], bp["ln2.b"])
    hidden, _ = layers.linear_forward(h, bp["mlp.w_fc"], bp["mlp.b_fc"])
    show(f"block {i}: mlp hidden, 4C wide", hidden)
    h, _ = layers.mlp_forward(h, bp["mlp.w_fc"], bp["mlp.b_fc"], bp["mlp.w_proj"], bp["mlp.b_proj"])
    x = x + h
    show(f"block {i}: x + mlp", x)
x, _ = layers.layernorm_forward(x, p["ln_f.w"], p["ln_f.b"])
logits, _ = layers.lm_head_forward(x, p["wte"])
show("logits = ln_f(x) @ wte.T", logits, "tied head; reshaped to (B, T, V)")

model_logits, _ = model.forward(idx, keep_cache=False)
print("replay == model.forward:", np.allclose(logits.reshape(B, T, -1), model_logits, atol=1e-12))

# %% [markdown]
# ## 3. Counting parameters
#
# Per block: two LayerNorms (`2C` each), the fused QKV projection (`3C² + 3C`), the output
# projection (`C² + C`), and the MLP (`4C² + 4C` and `4C² + C`): `12C² + 13C`. Add the token
# and position embeddings and the final LayerNorm; the LM head reuses `wte` (weight tying),
# so it costs nothing. The `C²` terms dominate quickly: most of a GPT is its blocks' matrices,
# unless the vocabulary is large compared with the width.


# %%
def parameter_count(cfg: GPTConfig) -> dict:
    C = cfg.n_embd
    return {
        "token embedding": cfg.vocab_size * C,
        "position embedding": cfg.block_size * C,
        "attention": cfg.n_layer * (4 * C * C + 4 * C),
        "mlp": cfg.n_layer * (8 * C * C + 5 * C),
        "layernorms": cfg.n_layer * 4 * C + 2 * C,
    }


counts = parameter_count(config)
print(counts, "total", sum(counts.values()), "model.num_params()", model.num_params())
assert sum(counts.values()) == model.num_params()
default = GPTConfig()  # the package's default model (shapes only, nothing is allocated)
default_counts = parameter_count(default)
print(f"default GPTConfig: {sum(default_counts.values()):,} parameters", default_counts)

# %% [markdown]
# ## 4. A gradient check of one block
#
# `block_backward` chains the backward of every layer above. One wrong sign anywhere and
# training silently goes nowhere, so we compare it with centred finite differences in
# float64: a relative error below 1e-7 is right, above 1e-2 is a bug.

# %%
Bc, Tc, Cc, Hc = (1, 3, 4, 2) if FAST else (2, 4, 8, 2)
xc = rng.normal(size=(Bc * Tc, Cc))
shapes = {
    name: tuple(Cc * (s // config.n_embd) for s in p[f"h.0.{name}"].shape)
    for name in layers.BLOCK_PARAMS
}  # the block's shapes, with C = Cc
pc = {name: 0.5 * rng.normal(size=shape) for name, shape in shapes.items()}
pc["ln1.w"] += 1.0
pc["ln2.w"] += 1.0
dout = rng.normal(size=(Bc * Tc, Cc))
out, cache = layers.block_forward(xc, pc, Bc, Tc, Hc)
dx, grads = layers.block_backward(dout, cache)


def f():
    return layers.block_forward(xc, pc, Bc, Tc, Hc)[0]


checked = ["ln1.w", "attn.w_qkv", "mlp.w_fc", "ln2.b"]
errors = check_gradients(
    f,
    {"x": xc, **{n: pc[n] for n in checked}},
    {"x": dx, **{n: grads[n] for n in checked}},
    dout=dout,
)
for name, err in errors.items():
    print(f"rel error {name:<11} {err:.2e}")
assert max(errors.values()) < 1e-7

# %% [markdown]
# ## 5. A picture: where the parameters are, and what layer 0 attends to
#
# Left, the parameter budget of the default model by component. Right, the attention
# weights of layer 0, head 0, for the first sequence: random weights give nearly uniform
# attention over the visible (past) tokens; training is what makes them sharp.

# %%
model.forward(idx, keep_cache=False)
weights = model.attention_weights()[0][0, 0]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
ax1.barh(list(default_counts), list(default_counts.values()))
ax1.set_xlabel("parameters")
ax1.set_title(f"default GPTConfig: {sum(default_counts.values()):,} parameters")
im = ax2.imshow(weights, cmap="viridis")
ax2.set_xlabel("key position")
ax2.set_ylabel("query position")
ax2.set_title("layer 0, head 0 attention (untrained, causal)")
fig.colorbar(im, ax=ax2)
fig.tight_layout()
fig.savefig(OUT / "03_params_and_attention.png", dpi=100)
plt.show()
print("saved", OUT / "03_params_and_attention.png")
