"""Assignment A2: LayerNorm, GELU, MLP and a transformer block, forward and backward, in NumPy.

Fill in the eight functions below (replace each ``raise NotImplementedError``), then grade
yourself:

    minireason grade A2 tutorials/assignments/A2_layers/layers_student.py

Rules: NumPy only, plus the attention sublayer imported below (you wrote its core in A1);
do not change the function names or signatures. While grading, the grader provides those two
functions and nothing else: ``minireason.nn.layers`` then holds only them, and any other
import of ``minireason`` fails. Inputs are float64. Activations are 2-D,
``(N, C)`` with ``N = B * T`` tokens; linear weights are stored ``(C_in, C_out)``, so a
linear layer is ``x @ w + b``. Every cache is yours: put in it whatever your backward needs.
"""

import numpy as np  # noqa: F401 (you will need it)

from minireason.nn.layers import self_attention_backward, self_attention_forward  # noqa: F401

GELU_SCALE = np.sqrt(2.0 / np.pi)
GELU_CUBIC = 0.044715


def layernorm_forward(x, w, b, eps=1e-5):
    """LayerNorm over the last axis: ``(x - mean) / sqrt(var + eps) * w + b``.

    Args:
        x: ``(N, C)``; w, b: ``(C,)``; ``var`` is the biased variance (divide by C).

    Returns:
        ``out`` ``(N, C)`` and your cache.
    """
    raise NotImplementedError("layernorm_forward: mean, variance, normalise, scale and shift")


def layernorm_backward(dout, cache):
    """Gradients of LayerNorm given ``dout`` ``(N, C)``.

    Returns:
        ``(dx, dw, db)`` shaped ``(N, C)``, ``(C,)``, ``(C,)``.
    """
    raise NotImplementedError("layernorm_backward: db, dw, then dx through mean and variance")


def gelu_forward(x):
    """GELU, tanh form: ``0.5 x (1 + tanh(GELU_SCALE (x + GELU_CUBIC x^3)))``.

    Args:
        x: any shape.

    Returns:
        ``out`` (shape of ``x``) and your cache.
    """
    raise NotImplementedError("gelu_forward: the tanh approximation of GELU")


def gelu_backward(dout, cache):
    """Gradient of GELU given ``dout`` (shape of ``x``); returns ``dx``."""
    raise NotImplementedError("gelu_backward: product rule, with the derivative of tanh")


def mlp_forward(x, w_fc, b_fc, w_proj, b_proj):
    """``gelu(x @ w_fc + b_fc) @ w_proj + b_proj``.

    Args:
        x: ``(N, C)``; w_fc: ``(C, 4C)``; b_fc: ``(4C,)``; w_proj: ``(4C, C)``; b_proj: ``(C,)``.

    Returns:
        ``out`` ``(N, C)`` and your cache. Call :func:`gelu_forward` by name.
    """
    raise NotImplementedError("mlp_forward: linear, gelu, linear")


def mlp_backward(dout, cache):
    """Gradients of the MLP given ``dout`` ``(N, C)``.

    Returns:
        ``(dx, dw_fc, db_fc, dw_proj, db_proj)`` shaped like ``x, w_fc, b_fc, w_proj, b_proj``.
        Call :func:`gelu_backward` by name.
    """
    raise NotImplementedError("mlp_backward: back through the second linear, gelu, first linear")


def block_forward(x, p, B, T, n_head, eps=1e-5):
    """One pre-norm transformer block (no dropout)::

        mid = x + attn(ln1(x))
        out = mid + mlp(ln2(mid))

    Args:
        x: ``(B * T, C)``.
        p: dict of parameters: ``"ln1.w", "ln1.b"`` ``(C,)``; ``"attn.w_qkv"`` ``(C, 3C)``,
            ``"attn.b_qkv"`` ``(3C,)``, ``"attn.w_proj"`` ``(C, C)``, ``"attn.b_proj"``
            ``(C,)``; ``"ln2.w", "ln2.b"`` ``(C,)``; ``"mlp.w_fc", "mlp.b_fc",
            "mlp.w_proj", "mlp.b_proj"`` as in :func:`mlp_forward`.
        B, T: batch size and sequence length; n_head: number of attention heads.

    Returns:
        ``out`` ``(B * T, C)`` and your cache. ``attn`` is
        ``self_attention_forward(h, p["attn.w_qkv"], p["attn.b_qkv"], p["attn.w_proj"],
        p["attn.b_proj"], B, T, n_head) -> (out, cache)``. Call :func:`layernorm_forward` and
        :func:`mlp_forward` by name.
    """
    raise NotImplementedError("block_forward: two residual sublayers, each behind a LayerNorm")


def block_backward(dout, cache):
    """Gradients of the block given ``dout`` ``(B * T, C)``.

    Returns:
        ``(dx, grads)``: ``dx`` ``(B * T, C)`` and ``grads`` a dict with the 12 names of ``p``.
        ``self_attention_backward(dh, attn_cache)`` returns
        ``(dh_in, dw_qkv, db_qkv, dw_proj, db_proj)``.
    """
    raise NotImplementedError("block_backward: the residual adds the gradient of both paths")
