"""The grader's wire format: data round-trips, anything else arrives as an opaque type name,
and a malformed or forged payload is refused without allocating what it claims."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minireason.course import wire
from minireason.course.static_check import source_notes


def test_data_round_trips_with_types_kept():
    value = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "t": (1, 2.5, float("nan"), None, True, "x"),
        "s": {"tone", "price"},
        "n": [np.int64(3), np.float64(0.5), np.bool_(True)],
        (1, "k"): "tuple key",
        "ref": wire.Ref("fwd", 1),
    }
    back = wire.loads(wire.dumps(value))
    assert back["a"].dtype == np.float32 and np.array_equal(back["a"], value["a"])
    assert (
        back["t"][:2] == (1, 2.5) and np.isnan(back["t"][2]) and back["t"][3:] == (None, True, "x")
    )
    assert back["s"] == {"tone", "price"} and back[(1, "k")] == "tuple key"
    assert [type(v) for v in back["n"]] == [np.int64, np.float64, np.bool_]
    assert back["ref"] == wire.Ref("fwd", 1)
    assert wire.loads(wire.dumps(value), resolve=lambda ref: "live")["ref"] == "live"


def test_what_is_not_data_arrives_as_its_type_name():
    class Cache:
        pass

    back = wire.loads(wire.dumps((np.ones(2), Cache(), np.array([object()]), print)))
    assert isinstance(back[1], wire.Opaque) and wire.type_name(back[1]) == "Cache"
    assert back[2] == wire.Opaque("numpy array of dtype object")
    assert wire.type_name(back[3]) == "builtin_function_or_method"
    cyclic = []
    cyclic.append(cyclic)
    assert "nested too deeply" in repr(wire.loads(wire.dumps(cyclic)))


def _forged(tree, blob=b"") -> bytes:
    head = json.dumps(tree).encode()
    return wire.MAGIC + len(head).to_bytes(8, "big") + head + blob


@pytest.mark.parametrize(
    "payload, says",
    [
        (b"\x80\x04pickle", "bad magic"),
        (wire.MAGIC + (10**9).to_bytes(8, "big"), "truncated"),
        (
            _forged(
                {"t": "array", "dtype": "<f8", "shape": [10**12], "offset": 0, "nbytes": 8 * 10**12}
            ),
            "do not match",
        ),
        (
            _forged(
                {"t": "array", "dtype": "|O", "shape": [1], "offset": 0, "nbytes": 8}, b"\0" * 8
            ),
            "not allowed",
        ),
        (
            _forged(
                {"t": "array", "dtype": "<f8", "shape": [2], "offset": 0, "nbytes": 16}, b"\0" * 8
            ),
            "do not match",
        ),
        (_forged({"t": "set", "v": [[1, 2]]}), "unhashable"),
        (_forged({"t": "eval", "v": "os.system('x')"}), "unknown tag"),
        (_forged({"no": "tag"}), "unknown tag"),
    ],
)
def test_malformed_or_forged_payloads_are_refused(payload, says):
    with pytest.raises(wire.WireError, match=says):
        wire.loads(payload)


def test_static_check_notes_refused_imports_and_unneeded_tricks():
    import ast

    source = (
        '"""A docstring that mentions minireason.nn is fine."""\n'
        "import numpy as np\n"
        "import math, gc\n"
        "from minireason.nn.layers import self_attention_forward, layernorm_forward\n"
        "import torch\n"
        "def f(x):\n"
        "    import os\n"
        "    os.kill(os.getppid(), 9)\n"
        "    return eval('x') or open('minireason/nn/attention.py')\n"
    )
    provided = {"minireason.nn.layers": ("self_attention_forward",)}
    notes = source_notes(ast.parse(source), provided, ("numpy",))
    text = "\n".join(notes)
    assert "line 3: imports gc" in text
    assert "line 4: imports layernorm_forward from minireason.nn.layers" in text
    assert "self_attention_forward from" not in text
    assert "line 5: imports torch, which is not available while grading" in text
    assert "line 8: uses .kill" in text and "line 8: uses .getppid" in text
    assert "line 9: uses eval" in text and "line 9: names the minireason package" in text
    assert not any(n.startswith("line 1:") or n.startswith("line 2:") for n in notes)
