"""Assignment A1: attention forward and backward, by hand, in NumPy.

Fill in the three functions below (replace each ``raise NotImplementedError``), then grade
yourself:

    minireason grade A1 tutorials/assignments/A1_attention/attention_student.py

Rules: NumPy only (no minireason, no torch); do not change the function names or signatures.
Shapes: ``...`` is any number of leading batch/head dims (possibly none), the same for all
inputs. Inputs are float64.
"""

import numpy as np  # noqa: F401 (you will need it)


def softmax(x):
    """Softmax over the LAST axis, numerically stable.

    Args:
        x: ``(..., N)`` array of scores; may contain ``-inf`` (masked entries), but every
            row has at least one finite entry.

    Returns:
        ``(..., N)`` array; every row is non-negative and sums to 1. Must not overflow for
        scores near 1000 (hint: softmax(x) == softmax(x - c) for any row constant c).
    """
    raise NotImplementedError("softmax: compute exp(x - rowmax) / rowsum over the last axis")


def attention_forward(q, k, v, is_causal=False):
    """Scaled dot-product attention: ``softmax(q k^T / sqrt(D)) v``.

    Args:
        q: queries ``(..., Tq, D)``.
        k: keys ``(..., Tk, D)``.
        v: values ``(..., Tk, Dv)``.
        is_causal: if True, query ``i`` may attend only to keys ``j <= i`` (the lower
            triangle of the ``(Tq, Tk)`` score matrix, ``np.tril``); masked scores become
            ``-inf`` before the softmax, so their weights are exactly 0.

    Returns:
        ``out``: ``(..., Tq, Dv)``, and ``cache``: anything your backward needs (a tuple is
        fine; the grader only passes it back to :func:`attention_backward`).

    Use :func:`softmax` above for the softmax (call it by name).
    """
    raise NotImplementedError("attention_forward: scores, scale, mask, softmax, weighted sum")


def attention_backward(dout, cache):
    """Gradients of the loss with respect to q, k and v.

    Args:
        dout: ``dL/d(out)``, ``(..., Tq, Dv)``.
        cache: what :func:`attention_forward` returned.

    Returns:
        ``(dq, dk, dv)`` with the shapes of ``q (..., Tq, D)``, ``k (..., Tk, D)`` and
        ``v (..., Tk, Dv)``.
    """
    raise NotImplementedError("attention_backward: dv, then dweights, dscores, dq and dk")
