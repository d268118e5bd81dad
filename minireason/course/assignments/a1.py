"""A1: attention forward and backward, graded against :mod:`minireason.nn.attention`.

The student implements, in ``tutorials/assignments/A1_attention/attention_student.py``::

    softmax(x)                                  (..., N) -> (..., N), over the last axis
    attention_forward(q, k, v, is_causal=False) -> (out, cache)
    attention_backward(dout, cache)             -> (dq, dk, dv)

with ``q (..., Tq, D)``, ``k (..., Tk, D)``, ``v (..., Tk, Dv)``, ``out (..., Tq, Dv)``,
scale ``1 / sqrt(D)``, and ``is_causal`` letting query ``i`` see keys ``j <= i``.

Tests (100 points). Visible tests use fixed inputs; hidden-style tests draw fresh shapes and
values from the course seed and the file. Forward and backward tests replace the student's
``softmax`` with the reference one (in the child that runs them), so a softmax bug costs the softmax tests only; a forward bug still costs
the backward tests, whose gradients depend on the forward weights. Each gradient of the
hidden backward is its own test, so one wrong gradient costs that gradient's points.
"""

from __future__ import annotations

import numpy as np

from minireason.course.grading import Call, Case, GradedTest, Ref, call, expect_array, expect_tuple
from minireason.nn.attention import attention_backward, attention_forward, masked_softmax

NAME = "A1"
TITLE = "Attention forward and backward"
STUDENT_FILE = "tutorials/assignments/A1_attention/attention_student.py"
STUDENT_API = ("softmax", "attention_forward", "attention_backward")

HIDDEN = "after_due_date"


# --------------------------------------------------------------------------- helpers

REFERENCE_SOFTMAX = {"softmax": "minireason.nn.attention:masked_softmax"}


def _fixed_inputs(q_len=4, k_len=5, d=3, dv=2):
    """The visible tests' inputs: the same every run (seed 2024), shown in the README."""
    rng = np.random.default_rng(2024)
    q = rng.normal(size=(q_len, d))
    k = rng.normal(size=(k_len, d))
    v = rng.normal(size=(k_len, dv))
    dout = rng.normal(size=(q_len, dv))
    return q, k, v, dout


def _random_inputs(rng, causal: bool):
    """Hidden-style inputs: batch and head dims, random sizes (Tq == Tk when causal)."""
    b, h = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    tq = int(rng.integers(2, 9))
    tk = tq if causal else int(rng.integers(2, 9))
    d, dv = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    q = rng.normal(size=(b, h, tq, d))
    k = rng.normal(size=(b, h, tk, d))
    v = rng.normal(size=(b, h, tk, dv))
    dout = rng.normal(size=(b, h, tq, dv))
    return q, k, v, dout


def _forward_calls(q, k, v, causal) -> list[Call]:
    return [call("fwd", "attention_forward", q, k, v, is_causal=causal)]


def _backward_calls(q, k, v, dout, causal) -> list[Call]:
    """The student's forward, then their backward on the cache it returned."""
    return [
        *_forward_calls(q, k, v, causal),
        call("grads", "attention_backward", dout, Ref("fwd", 1)),
    ]


def _student_out(outputs):
    out, _ = expect_tuple("attention_forward must return (out, cache); it", outputs["fwd"], 2)
    return out


def _student_grads(outputs):
    _student_out(outputs)
    return expect_tuple("attention_backward must return (dq, dk, dv); it", outputs["grads"], 3)


def _shapes(*arrays) -> str:
    return ", ".join("x".join(str(n) for n in a.shape) for a in arrays)


# --------------------------------------------------------------------------- softmax


def _softmax_case(x, what: str, summary: str) -> Case:
    def check(outputs):
        expect_array(what, outputs["y"], masked_softmax(x))
        return summary

    return Case([call("y", "softmax", x)], check)


def softmax_fixed_rows(rng) -> Case:
    x = np.array(
        [[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0], [-2.0, 0.5, 0.5, 3.0]]
    )  # rows differ, so a softmax over the wrong axis shows
    return _softmax_case(x, "softmax(x) for a 3x4 x", "3x4 input: each row matches and sums to 1")


def softmax_large_values(rng) -> Case:
    x = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, -1000.0, -999.0]])
    what = "softmax of scores near +-1000 (subtract the row max first)"
    return _softmax_case(x, what, "no overflow for scores near +-1000")


def softmax_random_batched(rng) -> Case:
    shape = tuple(int(n) for n in rng.integers(2, 7, size=4))
    x = 3.0 * rng.normal(size=shape)
    return _softmax_case(x, f"softmax(x) for x of shape {shape}", f"random x of shape {shape}")


# --------------------------------------------------------------------------- forward


def _forward_case(q, k, v, causal, what, summary) -> Case:
    def check(outputs):
        expected = attention_forward(q, k, v, is_causal=causal)[0]
        expect_array(what, _student_out(outputs), expected)
        return summary

    return Case(_forward_calls(q, k, v, causal), check, replace=REFERENCE_SOFTMAX)


def forward_fixed(rng) -> Case:
    q, k, v, _ = _fixed_inputs()
    return _forward_case(
        q, k, v, False, "out (q 4x3, k 5x3, v 5x2, no mask)", "q 4x3, k 5x3, v 5x2"
    )


def forward_causal_fixed(rng) -> Case:
    q, k, v, _ = _fixed_inputs(q_len=4, k_len=4)
    what = "out (q, k 4x3, v 4x2, is_causal=True)"
    return _forward_case(q, k, v, True, what, "q, k 4x3, v 4x2, causal")


def forward_random_heads(rng) -> Case:
    q, k, v, _ = _random_inputs(rng, causal=False)
    shapes = _shapes(q, k, v)
    return _forward_case(q, k, v, False, f"out (q, k, v {shapes})", f"q, k, v {shapes}")


def forward_causal_random(rng) -> Case:
    q, k, v, _ = _random_inputs(rng, causal=True)
    shapes = _shapes(q, k, v)
    what = f"out (q, k, v {shapes}, is_causal=True)"
    return _forward_case(q, k, v, True, what, f"q, k, v {shapes}, causal")


# --------------------------------------------------------------------------- backward


def backward_fixed(rng) -> Case:
    q, k, v, dout = _fixed_inputs()

    def check(outputs):
        got = _student_grads(outputs)
        dq, dk, dv, _ = attention_backward(dout, attention_forward(q, k, v)[1])
        for name, g, e in zip(("dq", "dk", "dv"), got, (dq, dk, dv)):
            expect_array(f"{name} (q 4x3, k 5x3, v 5x2, no mask)", g, e)
        return "dq, dk, dv for q 4x3, k 5x3, v 5x2"

    return Case(_backward_calls(q, k, v, dout, False), check, replace=REFERENCE_SOFTMAX)


def _backward_random_one(rng, which: int) -> Case:
    q, k, v, dout = _random_inputs(rng, causal=True)
    name = ("dq", "dk", "dv")[which]

    def check(outputs):
        got = _student_grads(outputs)
        expected = attention_backward(dout, attention_forward(q, k, v, is_causal=True)[1])
        expect_array(f"{name} (q, k, v {_shapes(q, k, v)}, causal)", got[which], expected[which])
        return f"{name} for q, k, v {_shapes(q, k, v)}, causal"

    return Case(_backward_calls(q, k, v, dout, True), check, replace=REFERENCE_SOFTMAX)


def backward_dq_random(rng) -> Case:
    return _backward_random_one(rng, 0)


def backward_dk_random(rng) -> Case:
    return _backward_random_one(rng, 1)


def backward_dv_random(rng) -> Case:
    return _backward_random_one(rng, 2)


TESTS = [
    GradedTest(
        "softmax_fixed_rows", 5, softmax_fixed_rows, "visible", "softmax of a fixed 3x4 array"
    ),
    GradedTest(
        "softmax_large_values", 5, softmax_large_values, "visible", "softmax does not overflow"
    ),
    GradedTest("forward_fixed", 10, forward_fixed, "visible", "forward, fixed single head"),
    GradedTest(
        "forward_causal_fixed", 10, forward_causal_fixed, "visible", "forward, fixed, causal"
    ),
    GradedTest("backward_fixed", 10, backward_fixed, "visible", "dq, dk, dv, fixed single head"),
    GradedTest("softmax_random_batched", 10, softmax_random_batched, HIDDEN, "softmax, random 4-d"),
    GradedTest(
        "forward_random_heads", 10, forward_random_heads, HIDDEN, "forward, random batch x heads"
    ),
    GradedTest(
        "forward_causal_random", 10, forward_causal_random, HIDDEN, "forward, random, causal"
    ),
    GradedTest("backward_dq_random", 10, backward_dq_random, HIDDEN, "dq, random, causal"),
    GradedTest("backward_dk_random", 10, backward_dk_random, HIDDEN, "dk, random, causal"),
    GradedTest("backward_dv_random", 10, backward_dv_random, HIDDEN, "dv, random, causal"),
]
