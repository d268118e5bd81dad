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
import re
from dataclasses import dataclass

import numpy as np

MAGIC = b"MRW1"
MAX_DEPTH = 40
MAX_ITEMS = 100_000  # values a payload may hold (what dumps encodes past it is opaque)
NODE_LIMIT = MAX_ITEMS + 10_000  # what loads accepts: the items, their tags and keys
HEAD_LIMIT = 4 * 1024 * 1024  # bytes of JSON tree loads accepts
INT_DIGITS = 19  # digits of an integer; larger ones are encoded as opaque
ARRAY_KINDS = "biufcSU"  # bool, ints, floats, complex, bytes, str: never object or structured
_DTYPE = re.compile(r"[<>|=]?[biufcSU][0-9]{1,4}")
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")


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
        if not -(10**INT_DIGITS) < value < 10**INT_DIGITS:
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


def loads(data: bytes, resolve=None, refs: bool = True, opaque_refs: bool = False):
    """Decode a payload written by :func:`dumps`, within hard bounds.

    Before anything is built, the JSON tree is scanned: at most HEAD_LIMIT bytes, NODE_LIMIT
    values, MAX_DEPTH + 2 levels. Numbers must be finite JSON numbers or NaN/inf, integers at
    most INT_DIGITS digits. Arrays must take their bytes in order, each byte once, and use all
    of them, so the arrays built never add up to more than the payload.

    Args:
        data: the bytes.
        resolve: ``resolve(Ref) -> value`` for ``ref`` nodes; None keeps them as :class:`Ref`.
        refs: whether ``ref`` nodes are allowed at all (a child's reply has none).
        opaque_refs: with ``refs=False``, read a ``ref`` node as ``Opaque("reference")``
            instead of refusing it (a student may hand a provided function's cache back).

    Raises:
        WireError: anything malformed, with a one-line reason.
    """
    if len(data) < 12 or data[:4] != MAGIC:
        raise WireError("not a grader payload (bad magic)")
    size = int.from_bytes(data[4:12], "big")
    if size > len(data) - 12:
        raise WireError("truncated payload")
    if size > HEAD_LIMIT:
        raise WireError(f"payload header larger than {HEAD_LIMIT >> 10} kB")
    head = bytes(data[12 : 12 + size])
    _scan(head)
    try:
        tree = json.loads(head.decode("utf-8"), parse_int=_parse_int)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WireError(f"unreadable payload header: {_one_line(exc)}") from None
    reader = _Reader(memoryview(data)[12 + size :], resolve, refs, opaque_refs)
    value = reader.decode(tree, 0)
    if reader.cursor != len(reader.blob):
        raise WireError(f"{len(reader.blob) - reader.cursor} unused bytes after the arrays")
    return value


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _scan(head: bytes) -> None:
    """Refuse a header nested deeper than MAX_DEPTH + 2 or with more than NODE_LIMIT values,
    without parsing it (strings are skipped; what is not JSON is left to the parser)."""
    bare = _STRINGS.sub(b'""', head)
    if bare.count(b",") + bare.count(b"[") + bare.count(b"{") > NODE_LIMIT:
        raise WireError(f"payload has more than {NODE_LIMIT:,} items")
    depth = 0
    for match in _BRACKETS.finditer(bare):
        depth += 1 if match.group() in b"[{" else -1
        if depth > 2 * (MAX_DEPTH + 2):
            raise WireError("payload nested too deeply")


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > INT_DIGITS:
        raise WireError(f"number with more than {INT_DIGITS} digits")
    return int(text)


class _Reader:
    """Build values from a parsed tree, taking array bytes from ``blob`` in order."""

    def __init__(self, blob, resolve, refs: bool, opaque_refs: bool):
        self.blob, self.resolve, self.refs, self.opaque_refs = blob, resolve, refs, opaque_refs
        self.cursor = 0

    def decode(self, node, depth: int):
        if depth > MAX_DEPTH + 2:
            raise WireError("payload nested too deeply")
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.decode(v, depth + 1) for v in node]
        if not isinstance(node, dict):
            raise WireError(f"unexpected node {type(node).__name__}")
        tag = node.get("t")
        if tag in ("tuple", "set"):
            items = [self.decode(v, depth + 1) for v in _list(node)]
            if tag == "tuple":
                return tuple(items)
            try:
                return set(items)
            except TypeError:
                raise WireError("unhashable item in a set") from None
        if tag == "dict":
            return self._dict(node, depth)
        if tag in ("array", "scalar"):
            return self._array(node, scalar=tag == "scalar")
        if tag == "opaque":
            name = node.get("type")
            return Opaque(name[:200] if isinstance(name, str) else "object")
        if tag == "ref":
            return self._ref(node)
        raise WireError(f"unknown tag {str(tag)[:40]!r}")

    def _dict(self, node, depth: int) -> dict:
        out = {}
        for pair in _list(node):
            if not isinstance(pair, list) or len(pair) != 2:
                raise WireError("malformed dict item")
            key = self.decode(pair[0], depth + 1)
            value = self.decode(pair[1], depth + 1)
            try:
                out[key] = value
            except TypeError:
                raise WireError("unhashable dict key") from None
        return out

    def _ref(self, node):
        if not self.refs:
            if self.opaque_refs:
                return Opaque("reference")
            raise WireError("a reference where none is allowed")
        call, item = node.get("call"), node.get("item")
        if not isinstance(call, str) or not (item is None or _is_int(item)):
            raise WireError("malformed reference")
        ref = Ref(call, item)
        return ref if self.resolve is None else self.resolve(ref)

    def _array(self, node, scalar: bool):
        dtype, shape = node.get("dtype"), node.get("shape")
        offset, nbytes = node.get("offset"), node.get("nbytes")
        if not (isinstance(dtype, str) and _DTYPE.fullmatch(dtype)):
            raise WireError(f"array dtype {str(dtype)[:40]!r} is not allowed")
        dtype = np.dtype(dtype)
        if not isinstance(shape, list) or len(shape) > 32 or (scalar and shape):
            raise WireError("malformed array shape")
        if not all(_is_int(n) and n >= 0 for n in shape + [offset, nbytes]):
            raise WireError("malformed array header (shape, offset and size must be integers)")
        if offset != self.cursor:
            raise WireError(f"array offset {offset} where {self.cursor} was expected")
        if nbytes != math.prod(shape) * dtype.itemsize or offset + nbytes > len(self.blob):
            raise WireError("array bytes do not match its header")
        self.cursor += nbytes
        raw = self.blob[offset : offset + nbytes]
        array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        return array[()] if scalar else array


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _list(node) -> list:
    items = node.get("v")
    if not isinstance(items, list):
        raise WireError("malformed container")
    return items
