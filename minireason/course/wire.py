"""The grader's wire format: values between the grader and a sandboxed child, without pickle.

What crosses the process boundary is data only::

    b"MRW1" | JSON length (8 bytes, big-endian) | JSON tree | raw array bytes

The JSON tree holds ``None``, booleans, numbers (NaN and inf included), strings and lists as
themselves, and tags for the rest: ``{"t": "tuple" | "set" | "dict", ...}``, NumPy arrays and
scalars as ``{"t": "array", "dtype", "shape", "offset", "nbytes"}`` pointing into the raw
bytes (numeric, boolean and fixed-width string dtypes only), a reference to an earlier call's
result ``{"t": "ref", ...}`` (grader to child only), and anything else as
``{"t": "opaque", "type": name}``: an object the child cannot describe as data (a student's
cache, a function) arrives as an :class:`Opaque` that names its type.

:func:`loads` trusts nothing it reads: it checks every length, builds arrays with
``np.frombuffer`` from bytes it has received (so a forged header cannot make it allocate
more), and never calls anything a payload names.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

MAGIC = b"MRW1"
MAX_DEPTH = 40
MAX_ITEMS = 1_000_000
ARRAY_KINDS = "biufcSU"  # bool, ints, floats, complex, bytes, str: never object or structured


class WireError(ValueError):
    """A payload that is not in this format (the message says what is wrong)."""


@dataclass(frozen=True)
class Opaque:
    """Something the child returned that is not data, e.g. a cache object; ``type`` names it."""

    type: str

    def __repr__(self) -> str:
        return f"<{self.type}>"


@dataclass(frozen=True)
class Ref:
    """An argument that is an earlier call's result (``item``: one element of it), kept live
    in the child: a forward pass's cache goes to the backward pass this way."""

    call: str
    item: int | None = None


def type_name(value) -> str:
    """The name to show for ``value``'s type (an :class:`Opaque` shows the child's type)."""
    return value.type if isinstance(value, Opaque) else type(value).__name__


# --------------------------------------------------------------------------- encoding


def dumps(value) -> bytes:
    """Encode ``value``; what cannot be encoded as data becomes an :class:`Opaque` node."""
    blob = bytearray()
    counter = [0]
    tree = _encode(value, blob, 0, counter)
    head = json.dumps(tree, allow_nan=True, separators=(",", ":")).encode("utf-8")
    return MAGIC + len(head).to_bytes(8, "big") + head + bytes(blob)


def _encode(value, blob: bytearray, depth: int, counter: list[int]):
    counter[0] += 1
    if depth > MAX_DEPTH or counter[0] > MAX_ITEMS:
        return {"t": "opaque", "type": "value nested too deeply or too large"}
    if isinstance(value, (np.ndarray, np.generic)) and not isinstance(value, np.str_):
        return _encode_array(value, blob)
    if value is None or isinstance(value, (bool, str)):
        return str(value) if isinstance(value, str) else value
    if isinstance(value, int):
        if abs(value) >= 1 << 4000:  # json would refuse to write it
            return {"t": "opaque", "type": "int too large"}
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Ref):
        return {"t": "ref", "call": value.call, "item": value.item}
    if isinstance(value, tuple):
        return {"t": "tuple", "v": [_encode(v, blob, depth + 1, counter) for v in value]}
    if isinstance(value, list):
        return [_encode(v, blob, depth + 1, counter) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [_encode(v, blob, depth + 1, counter) for v in value]
        return {"t": "set", "v": items}
    if isinstance(value, dict):
        pairs = [
            [_encode(k, blob, depth + 1, counter), _encode(v, blob, depth + 1, counter)]
            for k, v in value.items()
        ]
        return {"t": "dict", "v": pairs}
    return {"t": "opaque", "type": type(value).__name__}


def _encode_array(value, blob: bytearray):
    scalar = isinstance(value, np.generic)
    array = np.asarray(value)
    if array.dtype.kind not in ARRAY_KINDS or array.dtype.fields is not None:
        return {"t": "opaque", "type": f"numpy array of dtype {array.dtype}"}
    data = np.ascontiguousarray(array).tobytes()
    node = {
        "t": "scalar" if scalar else "array",
        "dtype": array.dtype.str,
        "shape": list(array.shape),
        "offset": len(blob),
        "nbytes": len(data),
    }
    blob += data
    return node


# --------------------------------------------------------------------------- decoding


def loads(data: bytes, resolve=None):
    """Decode a payload written by :func:`dumps`.

    Args:
        data: the bytes.
        resolve: ``resolve(Ref) -> value`` for ``ref`` nodes (the child passes its live
            results); None keeps them as :class:`Ref` objects.

    Raises:
        WireError: anything malformed (bad magic, lengths, dtypes, shapes, tags).
    """
    if len(data) < 12 or data[:4] != MAGIC:
        raise WireError("not a grader payload (bad magic)")
    size = int.from_bytes(data[4:12], "big")
    if size > len(data) - 12:
        raise WireError("truncated payload")
    try:
        tree = json.loads(data[12 : 12 + size].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError(f"unreadable payload header: {exc}") from None
    blob = memoryview(data)[12 + size :]
    return _decode(tree, blob, resolve, 0)


def _decode(node, blob, resolve, depth: int):
    if depth > MAX_DEPTH + 2:
        raise WireError("payload nested too deeply")
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_decode(v, blob, resolve, depth + 1) for v in node]
    if not isinstance(node, dict):
        raise WireError(f"unexpected node {type(node).__name__}")
    tag = node.get("t")
    if tag in ("tuple", "set"):
        items = [_decode(v, blob, resolve, depth + 1) for v in _list(node)]
        if tag == "tuple":
            return tuple(items)
        try:
            return set(items)
        except TypeError:
            raise WireError("unhashable item in a set") from None
    if tag == "dict":
        out = {}
        for pair in _list(node):
            if not isinstance(pair, list) or len(pair) != 2:
                raise WireError("malformed dict item")
            key = _decode(pair[0], blob, resolve, depth + 1)
            try:
                out[key] = _decode(pair[1], blob, resolve, depth + 1)
            except TypeError:
                raise WireError("unhashable dict key") from None
        return out
    if tag in ("array", "scalar"):
        return _decode_array(node, blob, scalar=tag == "scalar")
    if tag == "opaque":
        return Opaque(str(node.get("type", "object"))[:200])
    if tag == "ref":
        call, item = node.get("call"), node.get("item")
        if not isinstance(call, str) or not (item is None or isinstance(item, int)):
            raise WireError("malformed reference")
        ref = Ref(call, item)
        return ref if resolve is None else resolve(ref)
    raise WireError(f"unknown tag {tag!r}")


def _list(node) -> list:
    items = node.get("v")
    if not isinstance(items, list):
        raise WireError("malformed container")
    return items


def _decode_array(node, blob, scalar: bool):
    try:
        dtype = np.dtype(str(node["dtype"]))
        shape = tuple(int(n) for n in node["shape"])
        offset, nbytes = int(node["offset"]), int(node["nbytes"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"malformed array header: {exc}") from None
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.itemsize == 0:
        raise WireError(f"array dtype {dtype} is not allowed")
    if any(n < 0 for n in shape) or len(shape) > 32:
        raise WireError(f"bad array shape {shape}")
    if nbytes != math.prod(shape) * dtype.itemsize or offset < 0 or offset + nbytes > len(blob):
        raise WireError("array bytes do not match its header")
    array = np.frombuffer(blob[offset : offset + nbytes], dtype=dtype).reshape(shape).copy()
    return array[()] if scalar else array
