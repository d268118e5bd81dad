"""Files that are complete or absent: atomic writes, whole directories put in place at once,
one writer at a time, checksums, and ``.npz`` arrays read without pickle.

Every stage that writes something a later command reads goes through here:

- :func:`atomic_write` / :func:`atomic_write_text` / :func:`atomic_write_json`: a temporary
  file in the same directory, flushed to disk, then ``os.replace`` onto the name, so a reader
  sees the old file or the new one, never half of one;
- :func:`directory_in_place`: a whole directory written into a hidden sibling and then put in
  place (on Linux by atomically exchanging it with the old one, ``renameat2``), so a reader
  sees the old complete directory or the new complete one;
- :func:`writer_lock`: an exclusive ``flock`` on a hidden ``.NAME.lock`` beside an output, so a
  second writer is refused at once (the system releases it when a process dies);
- :func:`read_npz`: arrays with ``allow_pickle=False`` and one-line errors that name the file
  and never advise unpickling;
- :func:`read_versioned_json`: a JSON file a minireason command wrote (run, checkpoint,
  prepared manifest, explain-all manifest, weights), checked for its ``format`` and
  ``format_version`` and, field by field, against a *schema* (:func:`field_problem`), with
  one-line errors that name the file, the field and what to do;
- :func:`check_output`: the one rule of what a command may write over, checked before any
  work: a path that does not exist, an empty directory, or an output of the :class:`Kind`
  the command writes that carries this project's mark (:data:`HTML_MARK` in a page,
  :data:`PNG_METADATA` in a figure, a JSON ``format``, a CSV header); never a path that
  is, holds or lies inside one of the command's inputs. :func:`write_png` writes a figure
  with its mark.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import shutil
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:
    import fcntl  # POSIX file locks
except ImportError:
    fcntl = None


def sha256_file(path) -> str:
    """The SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- single files


def atomic_write(path, write: Callable) -> Path:
    """Call ``write(binary_file)`` on a temporary file beside ``path``, flush it to disk,
    then move it onto ``path``. On any error the temporary file is removed and ``path`` is
    untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(path, obj, indent: int = 1) -> Path:
    text = json.dumps(obj, ensure_ascii=False, indent=indent) + "\n"
    return atomic_write_text(path, text)


# --------------------------------------------------------------------------- whole directories


@contextlib.contextmanager
def directory_in_place(out):
    """Yield a fresh hidden directory beside ``out``; when the block ends without an error,
    put it in place as ``out`` (the old ``out``, if any, is removed only once the new one is
    there). On an error nothing changes and the hidden directory is removed."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        yield tmp
        for p in tmp.iterdir():  # on disk before the directory is put in place
            if p.is_file():
                with open(p, "rb") as fh:
                    os.fsync(fh.fileno())
        _put_in_place(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _put_in_place(new: Path, out: Path) -> None:
    """Make ``new`` appear at ``out``; the old ``out``, if any, ends up at ``new``."""
    if not out.exists():
        os.rename(new, out)
    elif not _exchange(new, out):
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:12]}"
        os.rename(out, old)
        os.rename(new, out)
        os.rename(old, new)
    fd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux's renameat2(RENAME_EXCHANGE); False where the
    system or the file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


@contextlib.contextmanager
def writer_lock(out, what: str):
    """Hold the one-writer lock of the output ``out`` (``what`` names the command, for the
    message) and clear what an interrupted writer left beside it. A second writer gets a
    ValueError at once. Where ``fcntl`` does not exist (not POSIX) there is no lock.

    The lock is a ``flock`` on ``.OUT.lock`` beside ``out``. The holder removes the file
    before it lets go, and a writer that locked a file someone removed meanwhile starts
    again, so two writers never hold two different files. A command that ends, done or
    refused, leaves neither the lock file nor a parent directory it made and left empty; a
    killed one leaves the lock file, which the next writer takes over."""
    out = Path(out)
    made = [p for p in (out.parent, *out.parent.parents) if not p.exists()]  # deepest first
    out.parent.mkdir(parents=True, exist_ok=True)
    lock_path = out.parent / f".{out.name}.lock"
    try:
        if fcntl is None:
            yield
            return
        with _locked_file(lock_path, out, what) as fh:
            for old in out.parent.glob(f".{out.name}.old-*"):  # killed between two renames
                if not out.exists():
                    os.rename(old, out)
                else:
                    shutil.rmtree(old, ignore_errors=True)
            for stale in out.parent.glob(f".{out.name}.partial-*"):
                shutil.rmtree(stale, ignore_errors=True)
            try:
                yield
            finally:
                lock_path.unlink(missing_ok=True)  # still held: no one else can take it now
                fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        for directory in made:  # only the empty ones this call made
            try:
                directory.rmdir()
            except OSError:
                break


def _locked_file(lock_path: Path, out: Path, what: str):
    """The open lock file ``lock_path``, flocked; ValueError when another writer holds it."""
    while True:
        fh = open(lock_path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise ValueError(
                f"--out {out}: another {what} is writing it now (lock {lock_path}); wait for "
                "it to finish, or choose another --out"
            ) from None
        try:
            if os.stat(lock_path).st_ino == os.fstat(fh.fileno()).st_ino:
                return fh
        except FileNotFoundError:
            pass
        fh.close()  # a finished writer removed the file after we opened it: again


# --------------------------------------------------------------------------- versioned JSON


def read_versioned_json(
    path,
    fmt: str,
    versions,
    *,
    what: str,
    remedy: str = "",
    required: tuple[str, ...] = (),
    schema: dict | None = None,
    error: type[Exception] = ValueError,
) -> dict:
    """The JSON object of ``path``, a file a minireason command wrote with
    ``{"format": fmt, "format_version": v, ...}``.

    Args:
        fmt: the ``format`` it must have; versions: the ``format_version`` (an int) or
            versions (a tuple of ints) this code reads.
        what: what the file is, for the messages ("run description", "checkpoint", ...).
        remedy: what the user should do, appended to every message ("train the run again").
        required: fields that must be present.
        schema: the fields and what each must hold (:func:`field_problem`), checked as a whole
            before anything is read from the file.
        error: the exception class raised (a ValueError subclass where a caller has one).

    Raises:
        FileNotFoundError: no such file. ``error``: not UTF-8 JSON, not an object, another
        format, a version outside ``versions``, a missing field or one the ``schema``
        refuses, in one line naming the file (and the field or version).
    """
    path = Path(path)
    versions = (versions,) if isinstance(versions, int) else tuple(versions)
    tail = f"; {remedy}" if remedy else ""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file ({what}){tail}")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        detail = exc if not isinstance(exc, RecursionError) else "nested too deep"
        raise error(f"{path}: not valid JSON (corrupt or truncated: {detail}){tail}") from None
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise error(f'{path}: not a minireason {what} (no "format": "{fmt}"){tail}')
    version = obj.get("format_version")
    if isinstance(version, bool) or version not in versions:
        reads = " or ".join(str(v) for v in versions)
        raise error(
            f"{path}: {what} format version {version!r}, this minireason reads version "
            f"{reads}{tail}"
        )
    missing = [key for key in required if key not in obj]
    if missing:
        raise error(f"{path}: {what} lacks the field {missing[0]!r}{tail}")
    problem = field_problem(obj, schema or {})
    if problem:
        raise error(f"{path}: {what} {problem}{tail}")
    return obj


# --------------------------------------------------------------------------- schemas

# What a field of a JSON file may hold: each kind's test and its description for a message.
KINDS = {
    "count": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "a non-negative integer",
    ),
    "positive": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "a positive integer",
    ),
    "point": (
        lambda v: (
            isinstance(v, list)
            and len(v) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
        ),
        "a [step, value] pair of numbers",
    ),
    "text": (lambda v: isinstance(v, str), "a string"),
    "object": (lambda v: isinstance(v, dict), "an object"),
    "null": (lambda v: v is None, "null"),
    "sha256": (
        lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None,
        "a SHA-256 (64 hex digits)",
    ),
}


def field_problem(obj, schema: dict, prefix: str = "") -> str | None:
    """What is wrong with the JSON object ``obj`` against ``schema``, in words, or None.

    A schema maps each field to what it must hold:

    - a kind of :data:`KINDS` by name (``"count"``, ``"text"``, ``"sha256"``, ...);
    - a dict: an object with those fields (a schema itself);
    - a list of one kind: a list whose every element is of that kind;
    - a tuple of kinds: any one of them (``("null", {...})``: null or such an object).

    A field whose name ends with ``?`` may be absent; the field ``"*"`` stands for every
    field of the object (a table keyed by names: ``{"*": {"bytes": "count"}}``). Fields the
    schema does not name are left alone. The answer names the field by its path
    (``optimizer.t``)."""
    if not isinstance(obj, dict):
        return f"{prefix.rstrip('.') or 'the file'} must be an object, got {_shown(obj)}"
    fields = [(key.rstrip("?"), kind, key.endswith("?")) for key, kind in schema.items()]
    fields = [field for field in fields if field[0] != "*"]
    if "*" in schema:
        named = {name for name, _, _ in fields}
        fields += [(name, schema["*"], False) for name in obj if name not in named]
    for name, kind, optional in fields:
        if name not in obj:
            if optional:
                continue
            return f"lacks the field {prefix + name!r}"
        problem = _value_problem(obj[name], kind, prefix + name)
        if problem:
            return problem
    return None


def _value_problem(value, kind, where: str) -> str | None:
    """What is wrong with one ``value`` (the field ``where``) against ``kind``, or None."""
    if isinstance(kind, tuple):
        problems = [_value_problem(value, k, where) for k in kind]
        if not all(problems):
            return None
        for k, problem in zip(kind, problems, strict=True):  # an object or a list inside
            if isinstance(k, (dict, list)) and isinstance(value, type(k)):
                return problem
        wanted = " or ".join(_described(k) for k in kind)
        return f"field {where!r} must be {wanted}, got {_shown(value)}"
    if isinstance(kind, dict):
        if not isinstance(value, dict):
            return f"field {where!r} must be an object, got {_shown(value)}"
        return field_problem(value, kind, where + ".")
    if isinstance(kind, list):
        if not isinstance(value, list):
            return f"field {where!r} must be a list, got {_shown(value)}"
        for i, item in enumerate(value):
            problem = _value_problem(item, kind[0], f"{where}[{i}]")
            if problem:
                return problem
        return None
    test, described = KINDS[kind]
    return None if test(value) else f"field {where!r} must be {described}, got {_shown(value)}"


def _described(kind) -> str:
    if isinstance(kind, dict):
        return "an object"
    if isinstance(kind, list):
        return "a list"
    return KINDS[kind][1]


def _shown(value) -> str:
    """A short description of a JSON value, for a message (never the whole of it)."""
    if isinstance(value, (dict, list)):
        return f"{'an object' if isinstance(value, dict) else 'a list'} of {len(value)}"
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --------------------------------------------------------------------------- arrays


def read_npz(path, fields: tuple[str, ...] | None = None) -> dict:
    """The arrays of an ``.npz`` file (``allow_pickle=False``), as ``{name: array}``.

    ``fields``: the names that must be there (None: take whatever is there). A missing,
    empty, truncated or non-zip file, an array that holds Python objects, or a missing field
    is a ValueError (FileNotFoundError for a missing file) that names the file and what is
    wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        raise ValueError(f"{path}: empty file, not an .npz archive")
    if head not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise ValueError(f"{path}: not an .npz archive (it does not start like a zip file)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ValueError(
                f"{path}: holds Python objects (pickled data), which minireason never loads"
            ) from None
        raise ValueError(f"{path}: not a readable .npz archive ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
        raise ValueError(
            f"{path}: not a readable .npz archive (truncated or damaged: {type(exc).__name__})"
        ) from None
    missing = [k for k in fields or () if k not in arrays]
    if missing:
        raise ValueError(f"{path}: lacks the arrays {missing}")
    return arrays if fields is None else {k: arrays[k] for k in fields}


# --------------------------------------------------------------------------- ownership of outputs

GENERATOR = "minireason"
HTML_MARK = f'<meta name="generator" content="{GENERATOR}">'  # in the head of every page
PNG_METADATA = {"Software": GENERATOR}  # a PNG text chunk (matplotlib's savefig metadata)
_HEAD_BYTES = 4096  # where a mark must be: the start of the file


@dataclass(frozen=True)
class Kind:
    """A kind of output a command writes.

    Attributes:
        what: its name in messages ("--out F: exists and is not ``a weights file``").
        is_ours: ``is_ours(path)`` is True when the existing ``path`` carries this project's
            mark for the kind, so the command may replace it (a directory: all it holds).
        directory: the output is a directory (else a file).
    """

    what: str
    is_ours: Callable[[Path], bool]
    directory: bool = False


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(_HEAD_BYTES)
    except OSError:
        return b""


def json_object(path: Path) -> dict | None:
    """The JSON object in ``path``, or None (unreadable, not JSON, not an object)."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def json_kind(fmt: str, what: str) -> Kind:
    """A JSON file ``{"format": fmt, ...}`` (a weights file, a benchmark's figures)."""
    return Kind(what, lambda p: (json_object(p) or {}).get("format") == fmt)


def csv_kind(columns: tuple[str, ...], what: str) -> Kind:
    """A CSV file whose header line starts with ``columns``."""
    return Kind(what, lambda p: _head(p).split(b"\n", 1)[0].startswith(",".join(columns).encode()))


HTML_PAGE = Kind("an HTML page minireason wrote", lambda p: HTML_MARK.encode() in _head(p))
PNG_FIGURE = Kind(
    "a PNG figure minireason wrote",
    lambda p: (
        (h := _head(p)).startswith(b"\x89PNG") and b"tEXtSoftware\x00" + GENERATOR.encode() in h
    ),
)


def write_png(path, figure, dpi: int = 120) -> Path:
    """Save a matplotlib ``figure`` to ``path`` as a PNG marked as this project's
    (:data:`PNG_METADATA`), atomically; returns the path."""
    return atomic_write(
        path, lambda fh: figure.savefig(fh, format="png", dpi=dpi, metadata=PNG_METADATA)
    )


def check_output(path, flag: str, kind: Kind, inputs=()) -> Path:
    """Refuse (ValueError, one line naming ``flag`` and ``path``) an output the command may
    not write, before any work; return ``path`` as a Path.

    A command writes ``path`` only where it proves the path its own: absent, an empty
    directory (for a ``kind.directory``), or an existing ``kind`` this project wrote
    (``kind.is_ours``). Anything else is refused, and so is a path that is one of
    ``inputs`` (files or directories the command reads), holds one or lies inside one.
    """
    path = Path(path)
    where = f"{flag} {path}"
    here = path.resolve()
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if source == here:
            raise ValueError(f"{where}: is an input of this command; choose another path")
        if here in source.parents:
            raise ValueError(
                f"{where}: holds an input of this command ({given}); choose another path"
            )
        if source in here.parents and source.is_dir():
            raise ValueError(
                f"{where}: lies inside an input of this command ({given}); choose another path"
            )
    if kind.directory:
        if path.exists() and not path.is_dir():
            raise ValueError(f"{where}: exists and is not a directory; choose another path")
        if path.is_dir() and any(path.iterdir()) and not kind.is_ours(path):
            raise ValueError(
                f"{where}: a non-empty directory that is not {kind.what}; choose another "
                "path (nothing in it was touched)"
            )
    else:
        if path.is_dir():
            raise ValueError(f"{where}: is a directory; give a file name")
        if path.exists() and not kind.is_ours(path):
            raise ValueError(
                f"{where}: exists and is not {kind.what}; choose another path (nothing was written)"
            )
    return path
