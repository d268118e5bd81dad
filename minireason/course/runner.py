"""The child's side of the grader: run a student's functions on given inputs, return the outputs.

:mod:`minireason.course.sandbox` starts this program in a fresh process, one per test, and
writes one request to its standard input (:mod:`minireason.course.wire`, no pickle). The
program::

    1. reads the request: the student's file (name and bytes), the functions the assignment
       provides, the calls to make, the limits, the user to run as and, as root, the jail;
    2. as root with a jail: enters a private mount namespace whose root is a fresh tmpfs
       holding only read-only views of the interpreter, its libraries and NumPy (the
       package's copies among them hidden), a fresh /tmp, /var/tmp and /dev/shm, a /proc
       that shows only the sandbox user's processes, and the working directory /work
       (:func:`enter_jail`); all of it vanishes with the process;
    3. writes the student's file into its working directory, and makes the provided
       functions: stand-ins that send their arguments, as data, to a separate reference
       process and return what it answers (:class:`Channel`); no reference code is ever
       loaded here;
    4. forgets every ``minireason`` module (``sys.modules``), sets the resource limits and,
       when started as root, becomes the unprivileged user it was given (for good);
    5. installs the import guard: ``minireason`` modules are refused, except stand-ins that
       hold exactly the provided names (A2's ``from minireason.nn.layers import
       self_attention_forward`` still works); so is anything that is neither the standard
       library nor an allowed package (NumPy);
    6. imports the student's file, puts the provided functions in place, makes the calls in
       order (arguments decoded afresh for each call; a :class:`~minireason.course.wire.Ref`
       passes an earlier result on, e.g. a forward pass's cache);
    7. writes ``{"loaded", "defined", "results", "error"}`` to the output descriptor it was
       given, and exits.

:func:`serve_reference` is the other program: the reference process of one test, started by
the grader as its own user. It loads the package functions the test provides, reads calls
from the student's process and answers with their results, as data; whatever in a result is
not data (a cache object) stays there and travels as a handle (a ``Ref``), which it resolves
when the handle comes back.

Neither compares anything: they are not told the expected values, the grader's seed or where
the results file goes, and nothing they write is a verdict. Whatever the student's process
returns is taken as the student's outputs, which the grader then checks in its own process.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import traceback
import types
from pathlib import Path

import numpy as np

from minireason.course import wire

STUDENT_MODULE = "student_submission"
CHILD_STATUSES = ("not implemented", "error", "missing")  # all a child can report about a call
MESSAGE_LIMIT = 2000
CALL_LIMIT = 8 * 1024 * 1024  # bytes of one call to, or answer from, the reference process
HANDLE_LIMIT = 10_000  # non-data values the reference process keeps for one test


# --------------------------------------------------------------------------- provided functions


class ProvidedError(Exception):
    """A provided function failed in the reference process (the message says how)."""


class Channel:
    """The student's process's end of the pipes to the reference process."""

    def __init__(self, send_fd: int, receive_fd: int):
        self.send_fd, self.receive_fd = send_fd, receive_fd

    def call(self, name: str, args: tuple, kwargs: dict):
        send(self.send_fd, wire.dumps({"name": name, "args": list(args), "kwargs": kwargs}))
        answer = wire.loads(receive(self.receive_fd))
        if not isinstance(answer, dict) or "value" not in answer:
            error = answer.get("error") if isinstance(answer, dict) else None
            raise ProvidedError(f"{name.rpartition(':')[2]} failed: {error}")
        return answer["value"]


def provided_function(name: str, channel: Channel):
    """A stand-in for the package's ``name``: its arguments go to the reference process as
    data, and its result comes back as data (with handles for what is not)."""

    def provided(*args, **kwargs):
        return channel.call(name, args, kwargs)

    provided.__name__ = provided.__qualname__ = name.rpartition(":")[2]
    provided.__doc__ = f"{name}, computed by the grader's reference process"
    return provided


def send(fd: int, data: bytes) -> None:
    """Write one message: its length (8 bytes, big-endian), then the bytes."""
    view = memoryview(len(data).to_bytes(8, "big") + data)
    while view:
        view = view[os.write(fd, view) :]


def receive(fd: int, limit: int = CALL_LIMIT) -> bytes:
    """Read one message written by :func:`send`; EOFError at the end, ValueError if too long."""
    size = int.from_bytes(_read_exactly(fd, 8), "big")
    if size > limit:
        raise ValueError(f"a message of {size} bytes (at most {limit})")
    return _read_exactly(fd, size)


def _read_exactly(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("the other end closed the channel")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def serve_reference() -> None:
    """The reference process: ``argv[1:3]`` are the calls' and the answers' descriptors; the
    request on stdin is ``{"functions": {name: "module:attribute"}, "limits": {...}}``."""
    calls_fd, answers_fd = int(sys.argv[1]), int(sys.argv[2])
    request = wire.loads(sys.stdin.buffer.read())
    functions = {}
    for name, spec in request["functions"].items():
        module_name, _, attribute = spec.partition(":")
        functions[name] = getattr(importlib.import_module(module_name), attribute)
    apply_limits(request.get("limits", {}))
    handles: list = []
    while True:
        try:
            data = receive(calls_fd)
        except (EOFError, OSError, ValueError):
            os._exit(0)
        try:
            answer = {"value": _export(_answer(functions, handles, data), handles)}
        except Exception as exc:  # noqa: BLE001 - the student's arguments may break anything
            answer = {"error": f"{type(exc).__name__}: {exc}"[:MESSAGE_LIMIT]}
        try:
            send(answers_fd, wire.dumps(answer))
        except OSError:
            os._exit(0)


def _answer(functions: dict, handles: list, data: bytes):
    """Decode one call from the student's process (handles resolved) and make it."""

    def resolve(ref: wire.Ref):
        if ref.call != "provided" or not isinstance(ref.item, int):
            raise wire.WireError("not a handle of a provided function")
        if not 0 <= ref.item < len(handles):
            raise wire.WireError(f"no handle {ref.item}")
        return handles[ref.item]

    message = wire.loads(data, resolve=resolve)
    name = message.get("name") if isinstance(message, dict) else None
    args, kwargs = message.get("args"), message.get("kwargs")
    if name not in functions or not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError("not a call of a provided function")
    if not all(isinstance(k, str) for k in kwargs):
        raise ValueError("keyword names must be strings")
    return functions[name](*args, **kwargs)


def _export(value, handles: list):
    """``value`` as data: arrays, numbers, strings and plain tuples, lists and dicts of them;
    anything else is kept in ``handles`` and replaced by ``Ref("provided", index)``."""
    if value is None or isinstance(value, (bool, int, float, str, np.ndarray, np.generic)):
        return value
    if type(value) in (tuple, list):
        return type(value)(_export(v, handles) for v in value)
    if type(value) is dict:
        return {k: _export(v, handles) for k, v in value.items()}
    if len(handles) >= HANDLE_LIMIT:
        raise ValueError(f"more than {HANDLE_LIMIT} results kept for this test")
    handles.append(value)
    return wire.Ref("provided", len(handles) - 1)


def _is_package(name: str | None) -> bool:
    return bool(name) and (name == "minireason" or name.startswith("minireason."))


def forget_package() -> None:
    """Drop every ``minireason`` module from ``sys.modules`` (only the runner and the wire
    format were loaded: no reference code)."""
    for name in list(sys.modules):
        if _is_package(name):
            del sys.modules[name]
    importlib.invalidate_caches()


# --------------------------------------------------------------------------- the import guard


class ImportGuard(importlib.abc.MetaPathFinder):
    """Refuse the package (but for its stand-ins) and anything outside the allowed set."""

    def __init__(self, standins: dict[str, types.ModuleType], allowed: set[str]):
        self.standins = standins
        self.allowed = allowed

    def find_spec(self, name, path=None, target=None):
        if name in self.standins:
            return importlib.machinery.ModuleSpec(name, _StandinLoader(self.standins[name]))
        top = name.partition(".")[0]
        if top == "minireason":
            provided = ", ".join(
                f"{m} ({', '.join(sorted(k for k in vars(s) if not k.startswith('__')))})"
                for m, s in self.standins.items()
                if not hasattr(s, "__path__")
            )
            raise ImportError(
                f"{name} cannot be imported while grading: the package's reference code is "
                "not available to submissions"
                + (f"; the grader provides {provided}" if provided else "")
            )
        if top in self.allowed or _is_stdlib(top) or top in sys.modules:
            return None  # the ordinary finders take it from here
        raise ImportError(
            f"{name} cannot be imported while grading: only the standard library and "
            f"{', '.join(sorted(self.allowed))} are available"
        )


def _is_stdlib(top: str) -> bool:
    """A standard-library module (``sysconfig``'s generated data module included)."""
    return top in sys.stdlib_module_names or top.startswith("_sysconfigdata")


class _StandinLoader(importlib.abc.Loader):
    def __init__(self, module: types.ModuleType):
        self.module = module

    def create_module(self, spec):
        return self.module

    def exec_module(self, module):
        pass


def standin_modules(provide: dict[str, dict[str, object]]) -> dict[str, types.ModuleType]:
    """Stand-in modules (and their parent packages) holding exactly the provided names."""
    modules: dict[str, types.ModuleType] = {}
    for dotted, names in provide.items():
        parts = dotted.split(".")
        for i in range(1, len(parts)):
            package = ".".join(parts[:i])
            if package not in modules:
                modules[package] = types.ModuleType(package, "provided by the grader")
                modules[package].__path__ = []
        module = types.ModuleType(dotted, "provided by the grader: only these names")
        for key, value in names.items():
            setattr(module, key, value)
        modules[dotted] = module
    return modules


# --------------------------------------------------------------------------- limits and user


def apply_limits(limits: dict[str, int]) -> list[str]:
    """Set each ``{"RLIMIT_AS": n, ...}`` as both soft and hard limit; return those that failed."""
    try:
        import resource
    except ImportError:
        return sorted(limits)
    failed = []
    for name, value in limits.items():
        which = getattr(resource, name, None)
        try:
            resource.setrlimit(which, (value, value))
        except (TypeError, ValueError, OSError):
            failed.append(name)
    return failed


def keep_import_path() -> None:
    """Keep the import path readable after the switch of user: each directory on ``sys.path``
    (and under the packages already imported) is opened now and reached from then on through
    ``/proc/self/fd/N``, so an interpreter installed where the sandbox user may not look (for
    example under ``/root``) still serves the standard library. Nothing else of those
    directories' surroundings becomes reachable."""
    if not os.path.isdir("/proc/self/fd"):
        return
    remap = {}
    for i, entry in enumerate(sys.path):
        if not entry or not os.path.isdir(entry):
            continue
        real = os.path.realpath(entry)
        if real not in remap:
            remap[real] = f"/proc/self/fd/{os.open(real, os.O_RDONLY | os.O_DIRECTORY)}"
        sys.path[i] = remap[real]
    for module in list(sys.modules.values()):
        paths = getattr(module, "__path__", None)
        if isinstance(paths, list):
            paths[:] = [_remapped(p, remap) for p in paths]
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()


def _remapped(path: str, remap: dict[str, str]) -> str:
    real = os.path.realpath(path)
    for prefix, fd_path in remap.items():
        if real == prefix or real.startswith(prefix + os.sep):
            return fd_path + real[len(prefix) :]
    return path


def become(user: list[int] | None, keep_path: bool = True) -> None:
    """Switch to ``[uid, gid]`` for good (groups first, then gid, then uid); ``keep_path``:
    first keep the import path readable (:func:`keep_import_path`; a jail needs no help)."""
    if user is None:
        return
    if keep_path:
        keep_import_path()
    uid, gid = user
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise OSError(f"could not become uid {uid}")


# --------------------------------------------------------------------------- the jail

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
DEVICES = ("null", "zero", "random", "urandom")


def _libc():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    return libc


def _mount(libc, source, target, fstype, flags: int, data: str | None = None) -> None:
    import ctypes

    args = [None if a is None else str(a).encode() for a in (source, target, fstype)]
    if libc.mount(*args, flags, None if data is None else data.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def package_copies() -> list[str]:
    """Every directory this interpreter could import ``minireason`` from: on ``sys.path``, and
    where an import hook (an editable install's) maps it."""
    found = set()
    for entry in sys.path:
        if entry and os.path.isdir(os.path.join(entry, "minireason")):
            found.add(os.path.realpath(os.path.join(entry, "minireason")))
    for finder in sys.meta_path:
        try:
            spec = finder.find_spec("minireason", None)
        except Exception:  # noqa: BLE001 - a third-party finder
            continue
        for location in getattr(spec, "submodule_search_locations", None) or ():
            found.add(os.path.realpath(location))
    return sorted(found)


def enter_jail(jail: dict, user: list[int]) -> None:
    """As root: a private mount namespace whose root is a fresh tmpfs (``jail["tmp_mb"]`` MB)
    on the working directory, holding read-only binds of ``jail["binds"]`` (the interpreter,
    its libraries, NumPy) with every copy of the package in them covered, a few devices, a
    fresh /tmp, /var/tmp and /dev/shm, /proc showing only the user's own processes, and
    /work, the user's working directory. Then chroot into it and go to /work."""
    libc = _libc()
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError("unshare(CLONE_NEWNS) is not permitted")
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    root = os.getcwd()
    hide = package_copies()
    _mount(libc, "tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, f"size={jail['tmp_mb']}m,mode=755")
    for path in jail["binds"]:
        _bind(libc, path, root + path)
    for path in hide:
        if os.path.isdir(root + path):
            _mount(libc, "tmpfs", root + path, "tmpfs", MS_RDONLY | MS_NOSUID, "size=4k,mode=0")
    os.makedirs(root + "/dev", exist_ok=True)
    for name in DEVICES:
        Path(f"{root}/dev/{name}").touch()
        _mount(libc, f"/dev/{name}", f"{root}/dev/{name}", None, MS_BIND)
    for path in ("/tmp", "/var/tmp", "/dev/shm"):
        os.makedirs(root + path, exist_ok=True)
        os.chmod(root + path, 0o1777)
    os.makedirs(root + "/work", mode=0o700)
    os.chown(root + "/work", *user)
    os.makedirs(root + "/proc")
    _mount(libc, "proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
    os.chroot(root)
    os.chdir("/work")
    os.environ.update(HOME="/work", TMPDIR="/tmp")


def _bind(libc, source: str, target: str) -> None:
    """A read-only view of ``source`` at ``target`` (a symbolic link is copied as one)."""
    if os.path.islink(source):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.symlink(os.readlink(source), target)
        return
    os.makedirs(target, exist_ok=True)
    _mount(libc, source, target, None, MS_BIND | MS_REC)
    _mount(libc, None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def readable(paths: list[str]) -> list[str]:
    """Those of ``paths`` this process can list."""
    found = []
    for path in paths:
        try:
            os.listdir(path)
            found.append(path)
        except OSError:
            continue
    return found


# --------------------------------------------------------------------------- running the calls


def _student_frame(exc: BaseException, path: str) -> str:
    """``" (file.py, line N, in func)"`` for the deepest frame in the student's file, or ``""``."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
    if not frames:
        return ""
    f = frames[-1]
    return f" ({Path(path).name}, line {f.lineno}, in {f.name})"


def describe(exc: BaseException, path: str) -> dict:
    """``{"status", "message"}`` for an exception raised by the student's code (whose class
    name and message may themselves raise: then they are said to be unreadable)."""
    where = _student_frame(exc, path)
    try:
        name = str(type(exc).__name__)
    except Exception:  # noqa: BLE001 - a student's metaclass may raise
        name = "(an exception whose name could not be read)"
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a student's __str__ may raise
        text = "(the exception's message could not be read)"
    if isinstance(exc, NotImplementedError):
        status, message = "not implemented", f"NotImplementedError{where}: {text}".rstrip(": ")
    elif isinstance(exc, SyntaxError):
        status, message = "error", f"SyntaxError in {Path(path).name}, line {exc.lineno}: {exc.msg}"
    else:
        status, message = "error", f"{name}{where}: {text}"
    return {"status": status, "message": message[:MESSAGE_LIMIT]}


def _materialise(value, results: dict):
    """A fresh copy of a decoded argument, with references replaced by live results."""
    if isinstance(value, wire.Ref):
        result = results[value.call]
        return result if value.item is None else result[value.item]
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, list):
        return [_materialise(v, results) for v in value]
    if isinstance(value, tuple):
        return tuple(_materialise(v, results) for v in value)
    if isinstance(value, dict):
        return {k: _materialise(v, results) for k, v in value.items()}
    if isinstance(value, set):
        return set(value)
    return value


def import_student(path: str):
    spec = importlib.util.spec_from_file_location(STUDENT_MODULE, path)
    student = importlib.util.module_from_spec(spec)
    sys.modules[STUDENT_MODULE] = student
    spec.loader.exec_module(student)
    return student


def prepare(request: dict) -> dict:
    """Steps 2-4 of the module docstring; returns the provided stand-ins by name."""
    copies = package_copies()
    user = request.get("user")
    if request.get("jail"):
        enter_jail(request["jail"], user)
    student = Path(request["file"])
    student.write_bytes(request["source"].tobytes())
    if user is not None:
        os.chown(student, *user)
    channel = request.get("channel")
    channel = Channel(*channel) if channel else None
    provided = {name: provided_function(name, channel) for name in request.get("provided", ())}
    sys.path[:] = [p for p in sys.path if p not in request.get("forget_paths", [])]
    forget_package()
    request["package_dirs"] = sorted({*copies, *request.get("package_dirs", [])})
    return provided


def run_request(request: dict) -> dict:
    """Steps 2-6 of the module docstring; returns the reply (step 7 writes it)."""
    provided = prepare(request)
    provide = {
        module: {name: provided[key] for name, key in names.items()}
        for module, names in request.get("provide", {}).items()
    }
    replace = {name: provided[key] for name, key in request.get("replace", {}).items()}
    reply: dict = {"loaded": False, "limits_failed": apply_limits(request.get("limits", {}))}
    become(request.get("user"), keep_path=not request.get("jail"))
    if request.get("probe"):
        return {"probe": {"package_readable": readable(request["package_dirs"])}}
    guard = ImportGuard(standin_modules(provide), set(request.get("allowed_imports", ())))
    sys.meta_path.insert(0, guard)
    path = str(Path(request["file"]).resolve())
    try:
        student = import_student(path)
    except BaseException as exc:  # noqa: BLE001 - a SystemExit at import is the student's too
        reply["error"] = describe(exc, path)
        return reply
    reply["loaded"] = True
    reply["defined"] = [f for f in request.get("api", ()) if callable(getattr(student, f, None))]
    for name, function in replace.items():
        setattr(student, name, function)
    results: dict = {}
    reply["results"] = results
    for call in request.get("calls", ()):
        function = getattr(student, call["function"], None)
        if not callable(function):
            reply["error"] = {
                "status": "missing",
                "message": f"the file defines no function {call['function']}",
            }
            break
        try:
            args = _materialise(call.get("args", []), results)
            kwargs = _materialise(call.get("kwargs", {}), results)
        except (KeyError, IndexError, TypeError) as exc:
            reply["error"] = {
                "status": "error",
                "message": f"{call['function']} could not be called: an earlier result has no "
                f"item {exc} (see the test's message)",
            }
            break
        try:
            results[call["name"]] = function(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt too
            reply["error"] = describe(exc, path)
            break
    return reply


def main() -> None:
    """Read a request from stdin, run it, write the reply to the descriptor in argv[1].

    A failure of this side (before the student's file is imported) is reported as the file not
    loading, with the reason: a child cannot tell the grader that the grader failed."""
    out_fd = int(sys.argv[1])
    os.set_inheritable(out_fd, False)
    request = wire.loads(sys.stdin.buffer.read())
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    try:
        reply = run_request(request)
    except BaseException as exc:  # noqa: BLE001 - a failure of the grader's side of the child
        reply = {"loaded": False, "error": {"status": "error", "message": _setup_failed(exc)}}
    try:
        data = wire.dumps(reply)
    except BaseException as exc:  # noqa: BLE001 - e.g. a student's object that breaks encoding
        message = f"unencodable: {describe(exc, '')['message']}"
        data = wire.dumps({"loaded": True, "error": {"status": "error", "message": message}})
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - the student may have closed or replaced it
            pass
    view = memoryview(data)
    while view:
        view = view[os.write(out_fd, view) :]
    os._exit(0)


def _setup_failed(exc: BaseException) -> str:
    try:
        return f"the test process could not start: {type(exc).__name__}: {exc}"[:MESSAGE_LIMIT]
    except Exception:  # noqa: BLE001 - an exception raised from the student's code
        return "the test process could not start"
