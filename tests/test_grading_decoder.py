"""The reply decoder under attack: hand-made replies are refused with a one-line reason, within
hard bounds on size, element count, nesting and array bytes, and never allocate more than they
carry. Hypothesis throws random and mutated replies at it."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minireason.course import wire


def _forged(head: bytes | str, blob: bytes = b"") -> bytes:
    head = head.encode() if isinstance(head, str) else head
    return wire.MAGIC + len(head).to_bytes(8, "big") + head + blob


def _array(offset: int, nbytes: int, shape=None, dtype="|u1") -> dict:
    shape = [nbytes] if shape is None else shape
    return {"t": "array", "dtype": dtype, "shape": shape, "offset": offset, "nbytes": nbytes}


@pytest.mark.parametrize(
    "payload, says",
    [
        (_forged("[" * 100_000 + "]" * 100_000), "nested"),
        (_forged('{"t": "dict", "v": ' + "[" * 5000 + "]" * 5000 + "}"), "nested"),
        (_forged("9" * 5000), "number"),
        (_forged(json.dumps(_array(0, 8)).replace('"offset": 0', '"offset": 1e999')), "array"),
        (_forged(json.dumps(_array(0, 8)).replace('"nbytes": 8', '"nbytes": 8.0')), "array"),
        (_forged(json.dumps(_array(0, 8, shape=[True] * 8))), "array"),
        (_forged(json.dumps(_array(0, 8, dtype="(2,)<f8"))), "dtype"),
        (_forged(json.dumps([_array(0, 8), _array(0, 8)]), b"\0" * 8), "offset"),
        (_forged(json.dumps(_array(0, 4)), b"\0" * 8), "unused"),
        (_forged("[" + ",".join(["0"] * 300_000) + "]"), "items"),
        (_forged(json.dumps({"t": "ref", "call": "fwd", "item": 0})), "reference"),
        (_forged(b"\xff\xfe"), "header"),
        (_forged("x" * (wire.HEAD_LIMIT + 1)), "header"),
    ],
)
def test_hand_made_replies_are_refused_in_one_line(payload, says):
    with pytest.raises(wire.WireError, match=says) as caught:
        wire.loads(payload, refs=False)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


def test_many_headers_aliasing_one_block_allocate_nothing():
    block = b"\0" * (4 << 20)
    payload = _forged(json.dumps([_array(0, len(block))] * 200), block)
    tracemalloc.start()
    with pytest.raises(wire.WireError, match="offset"):
        wire.loads(payload, refs=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1.5 * len(block), f"decoding allocated {peak:,} bytes"


def test_an_honest_reply_decodes_within_twice_its_size():
    value = {"results": {"fwd": (np.ones((256, 256)), [1, 2, 3], "x" * 100)}}
    data = wire.dumps(value)
    tracemalloc.start()
    back = wire.loads(data, refs=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.array_equal(back["results"]["fwd"][0], value["results"]["fwd"][0])
    assert peak < 2 * len(data)


def test_references_decode_only_where_allowed():
    data = wire.dumps({"cache": wire.Ref("fwd", 1)})
    assert wire.loads(data)["cache"] == wire.Ref("fwd", 1)
    assert wire.loads(data, refs=False, opaque_refs=True)["cache"] == wire.Opaque("reference")


LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.builds(np.arange, st.integers(0, 20)).map(lambda a: a.astype(np.float32)),
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=5).map(tuple),
        st.dictionaries(st.text(max_size=5), inner, max_size=5),
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(VALUES)
def test_honest_values_round_trip_or_say_what_they_are(value):
    back = wire.loads(wire.dumps(value), refs=False)
    assert type(back) is type(value) or isinstance(back, wire.Opaque)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_are_refused_or_read(data):
    for payload in (data, wire.MAGIC + data, _forged(data)):
        try:
            wire.loads(payload, refs=False)
        except wire.WireError as exc:
            assert "\n" not in str(exc)


@settings(max_examples=500, deadline=None)
@given(VALUES, st.data())
def test_mutated_replies_are_refused_or_read(value, data):
    payload = bytearray(wire.dumps(value))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(payload) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            payload[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del payload[at:]
            if not payload:
                break
        else:
            payload[at:at] = data.draw(st.sampled_from([b"[", b"{", b"1e999", b"9" * 50, b'"']))
    try:
        wire.loads(bytes(payload), refs=False)
    except wire.WireError as exc:
        assert "\n" not in str(exc)
