"""A1: attention forward and backward, graded against :mod:`minireason.nn.attention`.

The student implements, in ``tutorials/assignments/A1_attention/attention_student.py``::

    softmax(x)                                  (..., N) -> (..., N), over the last axis
    attention_forward(q, k, v, is_causal=False) -> (out, cache)
    attention_backward(dout, cache)             -> (dq, dk, dv)

with ``q (..., Tq, D)``, ``k (..., Tk, D)``, ``v (..., Tk, Dv)``, ``out (..., Tq, Dv)``,
scale ``1 / sqrt(D)``, and ``is_causal`` letting query ``i`` see keys ``j <= i``.

Tests (100 points). Visible tests use fixed inputs; hidden-style tests draw fresh shapes and
values from the run's seed. Forward and backward tests replace the student's ``softmax`` with
the reference one, so a softmax bug costs the softmax tests only; a forward bug still costs
the backward tests, whose gradients depend on the forward weights. Each gradient of the
hidden backward is its own test, so one wrong gradient costs that gradient's points.
"""

from __future__ import annotations

import numpy as np

from minireason.course.grading import GradedTest, expect_array, expect_tuple
from minireason.nn.attention import attention_backward, attention_forward, masked_softmax

NAME = "A1"
TITLE = "Attention forward and backward"
STUDENT_FILE = "tutorials/assignments/A1_attention/attention_student.py"
STUDENT_API = ("softmax", "attention_forward", "attention_backward")

HIDDEN = "after_due_date"


# --------------------------------------------------------------------------- helpers


def _use_reference_softmax(student) -> None:
    """Make the student's module call the reference softmax (this test process only)."""
    student.softmax = masked_softmax


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


def _student_forward(student, q, k, v, causal):
    """Call the student's forward on copies; return its ``out`` and ``cache``."""
    result = student.attention_forward(q.copy(), k.copy(), v.copy(), is_causal=causal)
    out, cache = expect_tuple("attention_forward must return (out, cache); it", result, 2)
    return out, cache


def _student_backward(student, q, k, v, dout, causal):
    """Run the student's forward then backward; return ``(dq, dk, dv)`` checked for shape."""
    _, cache = _student_forward(student, q, k, v, causal)
    grads = student.attention_backward(dout.copy(), cache)
    return expect_tuple("attention_backward must return (dq, dk, dv); it", grads, 3)


def _shapes(*arrays) -> str:
    return ", ".join("x".join(str(n) for n in a.shape) for a in arrays)


# --------------------------------------------------------------------------- softmax


def softmax_fixed_rows(student, rng) -> str:
    x = np.array(
        [[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0], [-2.0, 0.5, 0.5, 3.0]]
    )  # rows differ, so a softmax over the wrong axis shows
    got = student.softmax(x.copy())
    expect_array("softmax(x) for a 3x4 x", got, masked_softmax(x))
    return "3x4 input: each row matches and sums to 1"


def softmax_large_values(student, rng) -> str:
    x = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, -1000.0, -999.0]])
    got = student.softmax(x.copy())
    expect_array(
        "softmax of scores near +-1000 (subtract the row max first)", got, masked_softmax(x)
    )
    return "no overflow for scores near +-1000"


def softmax_random_batched(student, rng) -> str:
    shape = tuple(int(n) for n in rng.integers(2, 7, size=4))
    x = 3.0 * rng.normal(size=shape)
    got = student.softmax(x.copy())
    expect_array(f"softmax(x) for x of shape {shape}", got, masked_softmax(x))
    return f"random x of shape {shape}"


# --------------------------------------------------------------------------- forward


def forward_fixed(student, rng) -> str:
    _use_reference_softmax(student)
    q, k, v, _ = _fixed_inputs()
    out, _ = _student_forward(student, q, k, v, causal=False)
    expect_array("out (q 4x3, k 5x3, v 5x2, no mask)", out, attention_forward(q, k, v)[0])
    return "q 4x3, k 5x3, v 5x2"


def forward_causal_fixed(student, rng) -> str:
    _use_reference_softmax(student)
    q, k, v, _ = _fixed_inputs(q_len=4, k_len=4)
    out, _ = _student_forward(student, q, k, v, causal=True)
    expected = attention_forward(q, k, v, is_causal=True)[0]
    expect_array("out (q, k 4x3, v 4x2, is_causal=True)", out, expected)
    return "q, k 4x3, v 4x2, causal"


def forward_random_heads(student, rng) -> str:
    _use_reference_softmax(student)
    q, k, v, _ = _random_inputs(rng, causal=False)
    out, _ = _student_forward(student, q, k, v, causal=False)
    expect_array(f"out (q, k, v {_shapes(q, k, v)})", out, attention_forward(q, k, v)[0])
    return f"q, k, v {_shapes(q, k, v)}"


def forward_causal_random(student, rng) -> str:
    _use_reference_softmax(student)
    q, k, v, _ = _random_inputs(rng, causal=True)
    out, _ = _student_forward(student, q, k, v, causal=True)
    expected = attention_forward(q, k, v, is_causal=True)[0]
    expect_array(f"out (q, k, v {_shapes(q, k, v)}, is_causal=True)", out, expected)
    return f"q, k, v {_shapes(q, k, v)}, causal"


# --------------------------------------------------------------------------- backward


def backward_fixed(student, rng) -> str:
    _use_reference_softmax(student)
    q, k, v, dout = _fixed_inputs()
    got = _student_backward(student, q, k, v, dout, causal=False)
    dq, dk, dv, _ = attention_backward(dout, attention_forward(q, k, v)[1])
    for name, g, e in zip(("dq", "dk", "dv"), got, (dq, dk, dv)):
        expect_array(f"{name} (q 4x3, k 5x3, v 5x2, no mask)", g, e)
    return "dq, dk, dv for q 4x3, k 5x3, v 5x2"


def _backward_random_one(student, rng, which: int) -> str:
    _use_reference_softmax(student)
    q, k, v, dout = _random_inputs(rng, causal=True)
    got = _student_backward(student, q, k, v, dout, causal=True)
    expected = attention_backward(dout, attention_forward(q, k, v, is_causal=True)[1])
    name = ("dq", "dk", "dv")[which]
    expect_array(f"{name} (q, k, v {_shapes(q, k, v)}, causal)", got[which], expected[which])
    return f"{name} for q, k, v {_shapes(q, k, v)}, causal"


def backward_dq_random(student, rng) -> str:
    return _backward_random_one(student, rng, 0)


def backward_dk_random(student, rng) -> str:
    return _backward_random_one(student, rng, 1)


def backward_dv_random(student, rng) -> str:
    return _backward_random_one(student, rng, 2)


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
