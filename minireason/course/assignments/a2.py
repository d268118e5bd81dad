"""A2: LayerNorm, GELU, MLP and transformer-block backward, graded against :mod:`minireason.nn.layers`.

The student implements, in ``tutorials/assignments/A2_layers/layers_student.py``::

    layernorm_forward(x, w, b, eps=1e-5)          -> (out, cache)       x (N, C), w, b (C,)
    layernorm_backward(dout, cache)               -> (dx, dw, db)
    gelu_forward(x)                               -> (out, cache)       tanh form, any shape
    gelu_backward(dout, cache)                    -> dx
    mlp_forward(x, w_fc, b_fc, w_proj, b_proj)    -> (out, cache)       (N, C) -> (N, C)
    mlp_backward(dout, cache)                     -> (dx, dw_fc, db_fc, dw_proj, db_proj)
    block_forward(x, p, B, T, n_head, eps=1e-5)   -> (out, cache)       x (B * T, C)
    block_backward(dout, cache)                   -> (dx, grads)        grads: dict by name

Caches are the student's own: the grader only hands them back to the matching backward.

Tests (100 points). Visible tests use fixed inputs; hidden-style tests draw fresh shapes and
values from the course seed and the file. Bugs are isolated the way A1 isolates softmax: the MLP tests
substitute the reference GELU into the student's module, and the block tests substitute the
reference LayerNorm and MLP, so a GELU bug costs the GELU tests only and a LayerNorm bug the
LayerNorm tests only. The block's attention sublayer is the package's
(``minireason.nn.layers.self_attention_forward/backward``, the subject of A1): ``PROVIDED``
lets the stub import exactly those two names, and nothing else of the package, while grading. The hidden block
backward is split in three tests (``dx``; the MLP half's parameters; the attention half's
parameters), so a wrong residual gradient between the halves costs exactly the tests whose
gradients flow through it.
"""

from __future__ import annotations

import numpy as np

from minireason.course.grading import (
    Call,
    Case,
    GradedTest,
    Ref,
    WrongAnswer,
    call,
    expect_array,
    expect_tuple,
)
from minireason.course.wire import type_name
from minireason.nn import layers

NAME = "A2"
TITLE = "LayerNorm, GELU, MLP and block backward"
STUDENT_FILE = "tutorials/assignments/A2_layers/layers_student.py"
STUDENT_API = (
    "layernorm_forward",
    "layernorm_backward",
    "gelu_forward",
    "gelu_backward",
    "mlp_forward",
    "mlp_backward",
    "block_forward",
    "block_backward",
)

PROVIDED = {"minireason.nn.layers": ("self_attention_forward", "self_attention_backward")}
HIDDEN = "after_due_date"
MLP_HALF = ("ln2.w", "ln2.b", "mlp.w_fc", "mlp.b_fc", "mlp.w_proj", "mlp.b_proj")
ATTN_HALF = ("ln1.w", "ln1.b", "attn.w_qkv", "attn.b_qkv", "attn.w_proj", "attn.b_proj")


# --------------------------------------------------------------------------- helpers


def _reference(*names: str) -> dict[str, str]:
    """Put the package's ``names`` in place of the student's (in the test's child only)."""
    return {name: f"minireason.nn.layers:{name}" for name in names}


def _layernorm_inputs(rng, n, c):
    x = 2.0 * rng.normal(size=(n, c)) + rng.normal(size=(n, 1))  # rows with their own offset
    w = 1.0 + 0.3 * rng.normal(size=c)
    b = 0.3 * rng.normal(size=c)
    return x, w, b, rng.normal(size=(n, c))


def _mlp_inputs(rng, n, c):
    x = rng.normal(size=(n, c))
    w_fc, b_fc = rng.normal(size=(c, 4 * c)) / np.sqrt(c), 0.5 * rng.normal(size=4 * c)
    w_proj, b_proj = rng.normal(size=(4 * c, c)) / np.sqrt(4 * c), 0.5 * rng.normal(size=c)
    return x, (w_fc, b_fc, w_proj, b_proj), rng.normal(size=(n, c))


def _block_inputs(rng, b, t, n_head, head_dim):
    """A block's input ``(B * T, C)``, parameters (by BLOCK_PARAMS name) and ``dout``."""
    c = n_head * head_dim
    shapes = {
        "ln1.w": (c,),
        "ln1.b": (c,),
        "attn.w_qkv": (c, 3 * c),
        "attn.b_qkv": (3 * c,),
        "attn.w_proj": (c, c),
        "attn.b_proj": (c,),
        "ln2.w": (c,),
        "ln2.b": (c,),
        "mlp.w_fc": (c, 4 * c),
        "mlp.b_fc": (4 * c,),
        "mlp.w_proj": (4 * c, c),
        "mlp.b_proj": (c,),
    }
    p = {name: 0.5 * rng.normal(size=shape) for name, shape in shapes.items()}
    p["ln1.w"] += 1.0
    p["ln2.w"] += 1.0
    x = rng.normal(size=(b * t, c))
    return x, p, rng.normal(size=(b * t, c))


def _fixed_block():
    rng = np.random.default_rng(2025)
    return (*_block_inputs(rng, 2, 3, 2, 2), 2, 3, 2)  # x, p, dout, B, T, n_head


def _random_block(rng):
    b, t = int(rng.integers(1, 3)), int(rng.integers(2, 6))
    n_head, head_dim = int(rng.integers(1, 4)), int(rng.integers(2, 5))
    return (*_block_inputs(rng, b, t, n_head, head_dim), b, t, n_head)


def _pair_calls(fwd: str, bwd: str, args, dout, backward: bool = True) -> list[Call]:
    """The student's forward on ``args``; then, if asked, their backward on its cache."""
    calls = [call("fwd", fwd, *args)]
    if backward:
        calls.append(call("bwd", bwd, dout, Ref("fwd", 1)))
    return calls


def _student_out(outputs, fwd: str):
    return expect_tuple(f"{fwd} must return (out, cache); it", outputs["fwd"], 2)[0]


def _student_grads(outputs, fwd: str, bwd: str, n_grads: int):
    _student_out(outputs, fwd)
    grads = outputs["bwd"]
    if n_grads > 1:
        grads = expect_tuple(f"{bwd} must return {n_grads} items; it", grads, n_grads)
    return grads


BLOCK_REFERENCE = _reference(
    "layernorm_forward", "layernorm_backward", "mlp_forward", "mlp_backward"
)


def _block_calls(x, p, dout, b, t, n_head) -> list[Call]:
    return _pair_calls("block_forward", "block_backward", (x, p, b, t, n_head), dout)


def _student_block(outputs):
    """``(out, dx, grads)`` of the student's block, checked for shape."""
    out = _student_out(outputs, "block_forward")
    dx, g = _student_grads(outputs, "block_forward", "block_backward", 2)
    if not isinstance(g, dict):
        raise WrongAnswer(f"block_backward: grads must be a dict by name, got {type_name(g)}")
    missing = [name for name in layers.BLOCK_PARAMS if name not in g]
    if missing:
        raise WrongAnswer(f"block_backward: grads lack {', '.join(missing)}")
    return out, dx, g


def _reference_block(x, p, dout, b, t, n_head):
    out, cache = layers.block_forward(x.copy(), p, b, t, n_head)
    dx, g = layers.block_backward(dout.copy(), cache)
    return out, dx, g


# --------------------------------------------------------------------------- layernorm


def _layernorm_case(x, w, b, dout, what, backward: bool, summary: str) -> Case:
    def check(outputs):
        ref_out, cache = layers.layernorm_forward(x, w, b)
        expect_array(f"layernorm out ({what})", _student_out(outputs, "layernorm_forward"), ref_out)
        if backward:
            grads = _student_grads(outputs, "layernorm_forward", "layernorm_backward", 3)
            ref_grads = layers.layernorm_backward(dout.copy(), cache)
            for name, got, expected in zip(("dx", "dw", "db"), grads, ref_grads, strict=True):
                expect_array(f"layernorm {name} ({what})", got, expected)
        return summary

    calls = _pair_calls("layernorm_forward", "layernorm_backward", (x, w, b), dout, backward)
    return Case(calls, check)


def layernorm_forward_fixed(rng) -> Case:
    x, w, b, dout = _layernorm_inputs(np.random.default_rng(2024), 4, 5)
    return _layernorm_case(x, w, b, dout, "x 4x5", False, "x 4x5")


def layernorm_backward_fixed(rng) -> Case:
    x, w, b, dout = _layernorm_inputs(np.random.default_rng(2024), 4, 5)
    return _layernorm_case(x, w, b, dout, "x 4x5", True, "out, dx, dw, db for x 4x5")


def layernorm_forward_random(rng) -> Case:
    n, c = int(rng.integers(2, 9)), int(rng.integers(2, 11))
    x, w, b, dout = _layernorm_inputs(rng, n, c)
    return _layernorm_case(x, w, b, dout, f"x {n}x{c}", False, f"x {n}x{c}")


def layernorm_backward_random(rng) -> Case:
    n, c = int(rng.integers(2, 9)), int(rng.integers(2, 11))
    x, w, b, dout = _layernorm_inputs(rng, n, c)
    return _layernorm_case(x, w, b, dout, f"x {n}x{c}", True, f"out, dx, dw, db for x {n}x{c}")


# --------------------------------------------------------------------------- gelu


GELU_FIXED_X = np.array([[-4.0, -2.0, -1.0, -0.5], [0.0, 0.5, 1.0, 3.0]])


def _gelu_case(x, dout, what, backward: bool, summary: str) -> Case:
    def check(outputs):
        ref_out, cache = layers.gelu_forward(x.copy())
        expect_array(f"gelu out ({what})", _student_out(outputs, "gelu_forward"), ref_out)
        if backward:
            dx = _student_grads(outputs, "gelu_forward", "gelu_backward", 1)
            expect_array(f"gelu dx ({what})", dx, layers.gelu_backward(dout.copy(), cache))
        return summary

    return Case(_pair_calls("gelu_forward", "gelu_backward", (x,), dout, backward), check)


def gelu_forward_fixed(rng) -> Case:
    summary = "x from -4 to 3 (tanh form, not the erf form)"
    return _gelu_case(GELU_FIXED_X, None, "x from -4 to 3", False, summary)


def gelu_backward_fixed(rng) -> Case:
    dout = np.random.default_rng(2024).normal(size=GELU_FIXED_X.shape)
    return _gelu_case(GELU_FIXED_X, dout, "x from -4 to 3", True, "out, dx for x from -4 to 3")


def gelu_backward_random(rng) -> Case:
    shape = tuple(int(n) for n in rng.integers(1, 6, size=int(rng.integers(1, 4))))
    x = 2.5 * rng.normal(size=shape)
    dout = rng.normal(size=shape)
    return _gelu_case(x, dout, f"x of shape {shape}", True, f"out, dx for x of shape {shape}")


# --------------------------------------------------------------------------- mlp


MLP_GRADS = ("dx", "dw_fc", "db_fc", "dw_proj", "db_proj")


def _mlp_case(x, weights, dout, check_out: bool, names, what: str, summary: str) -> Case:
    def check(outputs):
        ref_out, cache = layers.mlp_forward(x.copy(), *weights)
        out = _student_out(outputs, "mlp_forward")
        if check_out:
            expect_array(f"mlp out ({what})", out, ref_out)
        if names:
            grads = _student_grads(outputs, "mlp_forward", "mlp_backward", 5)
            ref_grads = layers.mlp_backward(dout.copy(), cache)
            for name, got, expected in zip(MLP_GRADS, grads, ref_grads, strict=True):
                if name in names:
                    expect_array(f"mlp {name} ({what})", got, expected)
        return summary

    calls = _pair_calls("mlp_forward", "mlp_backward", (x, *weights), dout, bool(names))
    return Case(calls, check, replace=_reference("gelu_forward", "gelu_backward"))


def mlp_forward_fixed(rng) -> Case:
    x, weights, dout = _mlp_inputs(np.random.default_rng(2024), 3, 4)
    return _mlp_case(x, weights, dout, True, (), "x 3x4, hidden 16", "x 3x4, hidden 16")


def mlp_backward_fixed(rng) -> Case:
    x, weights, dout = _mlp_inputs(np.random.default_rng(2024), 3, 4)
    summary = "dx, dw_fc, db_fc, dw_proj, db_proj for x 3x4"
    return _mlp_case(x, weights, dout, True, MLP_GRADS, "x 3x4, hidden 16", summary)


def _mlp_random(rng, names) -> Case:
    n, c = int(rng.integers(2, 9)), int(rng.integers(2, 7))
    x, weights, dout = _mlp_inputs(rng, n, c)
    what = f"x {n}x{c}, hidden {4 * c}"
    return _mlp_case(x, weights, dout, False, names, what, f"{', '.join(names)} for x {n}x{c}")


def mlp_dx_random(rng) -> Case:
    return _mlp_random(rng, ("dx",))


def mlp_dparams_random(rng) -> Case:
    return _mlp_random(rng, MLP_GRADS[1:])


# --------------------------------------------------------------------------- block


def block_forward_fixed(rng) -> Case:
    x, p, dout, b, t, n_head = _fixed_block()

    def check(outputs):
        out = _student_out(outputs, "block_forward")
        ref_out = _reference_block(x, p, dout, b, t, n_head)[0]
        expect_array("block out (B=2, T=3, C=4, 2 heads)", out, ref_out)
        return "B=2, T=3, C=4, 2 heads"

    calls = _pair_calls("block_forward", "block_backward", (x, p, b, t, n_head), dout, False)
    return Case(calls, check, replace=BLOCK_REFERENCE)


def block_backward_fixed(rng) -> Case:
    x, p, dout, b, t, n_head = _fixed_block()

    def check(outputs):
        out, dx, g = _student_block(outputs)
        ref_out, ref_dx, ref_g = _reference_block(x, p, dout, b, t, n_head)
        what = "B=2, T=3, C=4, 2 heads"
        expect_array(f"block out ({what})", out, ref_out)
        expect_array(f"block dx ({what})", dx, ref_dx)
        for name in layers.BLOCK_PARAMS:
            expect_array(f"block grads[{name!r}] ({what})", g[name], ref_g[name])
        return f"dx and all 12 parameter gradients, {what}"

    return Case(_block_calls(x, p, dout, b, t, n_head), check, replace=BLOCK_REFERENCE)


def _block_random(rng, check_dx: bool, names: tuple) -> Case:
    x, p, dout, b, t, n_head = _random_block(rng)

    def check(outputs):
        _, dx, g = _student_block(outputs)
        _, ref_dx, ref_g = _reference_block(x, p, dout, b, t, n_head)
        what = f"B={b}, T={t}, C={x.shape[1]}, {n_head} heads"
        if check_dx:
            expect_array(f"block dx ({what})", dx, ref_dx)
        for name in names:
            expect_array(f"block grads[{name!r}] ({what})", g[name], ref_g[name])
        return f"{'dx' if check_dx else ', '.join(names)}, {what}"

    return Case(_block_calls(x, p, dout, b, t, n_head), check, replace=BLOCK_REFERENCE)


def block_dx_random(rng) -> Case:
    return _block_random(rng, True, ())


def block_mlp_half_random(rng) -> Case:
    return _block_random(rng, False, MLP_HALF)


def block_attn_half_random(rng) -> Case:
    return _block_random(rng, False, ATTN_HALF)


TESTS = [
    GradedTest(
        "layernorm_forward_fixed",
        5,
        layernorm_forward_fixed,
        "visible",
        "LayerNorm forward, fixed 4x5",
    ),
    GradedTest(
        "layernorm_backward_fixed",
        8,
        layernorm_backward_fixed,
        "visible",
        "LayerNorm dx, dw, db, fixed 4x5",
    ),
    GradedTest(
        "gelu_forward_fixed", 5, gelu_forward_fixed, "visible", "GELU (tanh form) forward, fixed"
    ),
    GradedTest("gelu_backward_fixed", 6, gelu_backward_fixed, "visible", "GELU dx, fixed"),
    GradedTest("mlp_forward_fixed", 5, mlp_forward_fixed, "visible", "MLP forward, fixed 3x4"),
    GradedTest(
        "mlp_backward_fixed",
        8,
        mlp_backward_fixed,
        "visible",
        "MLP dx and weight gradients, fixed 3x4",
    ),
    GradedTest(
        "block_forward_fixed", 8, block_forward_fixed, "visible", "block forward, fixed B=2 T=3 C=4"
    ),
    GradedTest(
        "block_backward_fixed",
        8,
        block_backward_fixed,
        "visible",
        "block dx and parameter gradients, fixed",
    ),
    GradedTest(
        "layernorm_forward_random", 5, layernorm_forward_random, HIDDEN, "LayerNorm forward, random"
    ),
    GradedTest(
        "layernorm_backward_random",
        7,
        layernorm_backward_random,
        HIDDEN,
        "LayerNorm backward, random",
    ),
    GradedTest(
        "gelu_backward_random",
        5,
        gelu_backward_random,
        HIDDEN,
        "GELU forward and backward, random shape",
    ),
    GradedTest("mlp_dx_random", 6, mlp_dx_random, HIDDEN, "MLP dx, random"),
    GradedTest("mlp_dparams_random", 6, mlp_dparams_random, HIDDEN, "MLP weight gradients, random"),
    GradedTest("block_dx_random", 6, block_dx_random, HIDDEN, "block dx, random"),
    GradedTest(
        "block_mlp_half_random",
        6,
        block_mlp_half_random,
        HIDDEN,
        "block ln2 and MLP gradients, random",
    ),
    GradedTest(
        "block_attn_half_random",
        6,
        block_attn_half_random,
        HIDDEN,
        "block ln1 and attention gradients, random",
    ),
]
