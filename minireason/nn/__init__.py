"""The compact GPT in NumPy (or CuPy), every operation a forward/backward pair written by hand.

Reads: token ids. Writes: checkpoints (``.npz`` + JSON, never pickled). Nothing here knows
about reviews or prompts: this layer is the neural network alone, and reads top to bottom
in an afternoon. Taught in tutorials 01-03; assignments A1 (attention) and A2 (layers).

Modules, in reading order:

- ``attention``: scaled dot-product attention, PyTorch's API and mask semantics;
- ``layers``: embedding, LayerNorm, Linear, GELU, dropout, self-attention, MLP, the block,
  the tied LM head and cross-entropy, each ``x_forward -> (out, cache)`` beside
  ``x_backward(dout, cache)``;
- ``model``: the GPT (``GPTConfig``, parameters, forward, backward);
- ``optim``: AdamW, warm-up + cosine schedule, gradient clipping;
- ``gradcheck``: centred finite differences in float64, to check every backward;
- ``checkpoint``: atomic, checksummed ``.npz`` + JSON checkpoints with exact resume;
- ``threads``: how the work uses the cores (products and row-wise elementwise work split
  across a small pool, BLAS on one thread: fast on a busy machine too);
- ``memory``: freed large arrays kept in the heap for the next step (glibc);
- ``torch_reference``: the same GPT in PyTorch eager, a reference for tests and benchmarks.
"""
