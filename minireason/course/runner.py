"""The child's side of the grader: run a student's functions on given inputs, return the outputs.

:mod:`minireason.course.sandbox` starts this program in a fresh process, one per test, and
writes one request to its standard input (:mod:`minireason.course.wire`, no pickle). The
program::

    1. reads the request: the student's file name (in its working directory), the functions
       the assignment provides, the calls to make, the limits and the user to run as;
    2. runs the package's matrix products on one thread, then loads the provided functions
       (e.g. the reference softmax that A1's forward tests put in place of the student's),
       each as a copy whose globals hold only the names it uses, so that no reference the
       assignment is about can be reached through them;
    3. forgets every ``minireason`` module (``sys.modules``) and collects the garbage;
    4. sets the resource limits and, when started as root, becomes the unprivileged user it
       was given (after this it cannot become root again);
    5. installs the import guard: ``minireason`` modules are refused, except stand-ins that
       hold exactly the provided names (A2's ``from minireason.nn.layers import
       self_attention_forward`` still works); so is anything that is neither the standard
       library nor an allowed package (NumPy);
    6. imports the student's file, puts the provided functions in place, makes the calls in
       order (arguments decoded afresh for each call; a :class:`~minireason.course.wire.Ref`
       passes an earlier result on, e.g. a forward pass's cache);
    7. writes ``{"loaded", "defined", "results", "error"}`` to the output descriptor it was
       given, and exits.

It never compares anything: it is not told the expected values, the grader's seed or where
the results file goes, and nothing it writes is a verdict. Whatever it returns is taken as the
student's outputs, which the grader then checks in its own process.
"""

from __future__ import annotations

import builtins
import gc
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


# --------------------------------------------------------------------------- provided functions


def _code_names(code: types.CodeType) -> set[str]:
    """Every global name a code object (and the code nested in it) may look up."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def seal(func, memo: dict | None = None):
    """A copy of a package function whose globals hold only the names its code uses.

    Package functions those names refer to are sealed in turn; other values (NumPy, ``math``,
    classes, constants) are kept. So a sealed ``masked_softmax`` reaches ``array_module`` and
    nothing else of the package: not ``attention_forward``, which lives in the same module.

    Raises:
        TypeError: the function refers to a whole package module (it cannot be sealed).
    """
    memo = {} if memo is None else memo
    if id(func) in memo:
        return memo[id(func)]
    sealed_globals = {"__builtins__": builtins, "__name__": func.__module__}
    sealed = types.FunctionType(
        func.__code__, sealed_globals, func.__name__, func.__defaults__, func.__closure__
    )
    sealed.__kwdefaults__ = func.__kwdefaults__
    sealed.__qualname__, sealed.__doc__ = func.__qualname__, func.__doc__
    sealed.__module__ = func.__module__
    memo[id(func)] = sealed
    for name in _code_names(func.__code__):
        if name not in func.__globals__:
            continue
        value = func.__globals__[name]
        if isinstance(value, types.ModuleType) and _is_package(value.__name__):
            raise TypeError(f"{func.__qualname__} uses the module {value.__name__}")
        if isinstance(value, types.FunctionType) and _is_package(value.__module__):
            value = seal(value, memo)
        sealed_globals[name] = value
    return sealed


def _is_package(name: str | None) -> bool:
    return bool(name) and (name == "minireason" or name.startswith("minireason."))


def single_threaded_products() -> None:
    """Run the package's matrix products on the calling thread, BLAS's included.

    Called before the provided functions are sealed, so their copies keep these settings: a
    child may start no threads (``RLIMIT_NPROC``), and threadpoolctl, which limits BLAS, is
    not importable once the import guard is in place. BLAS keeps its limit after
    threadpoolctl is forgotten here, so a submission cannot import it either (the guard lets
    through what is already loaded).
    """
    from minireason.nn import threads

    threads.set_threads(1)
    threads.prepare_process()
    for name in list(sys.modules):
        if name.partition(".")[0] == "threadpoolctl":
            del sys.modules[name]


def load_provided(specs: dict[str, str]) -> dict[str, object]:
    """``{name: "module:attribute"}`` -> ``{name: sealed function}``."""
    memo: dict = {}
    out = {}
    for name, spec in specs.items():
        module_name, _, attribute = spec.partition(":")
        out[name] = seal(getattr(importlib.import_module(module_name), attribute), memo)
    return out


def forget_package() -> None:
    """Drop every ``minireason`` module from ``sys.modules``, then collect the garbage."""
    for name in list(sys.modules):
        if _is_package(name):
            del sys.modules[name]
    importlib.invalidate_caches()
    gc.collect()


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


def become(user: list[int] | None) -> None:
    """Switch to ``[uid, gid]`` for good (groups first, then gid, then uid)."""
    if user is None:
        return
    keep_import_path()
    uid, gid = user
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise OSError(f"could not become uid {uid}")


# --------------------------------------------------------------------------- running the calls


def _student_frame(exc: BaseException, path: str) -> str:
    """``" (file.py, line N, in func)"`` for the deepest frame in the student's file, or ``""``."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
    if not frames:
        return ""
    f = frames[-1]
    return f" ({Path(path).name}, line {f.lineno}, in {f.name})"


def describe(exc: BaseException, path: str) -> dict:
    """``{"status", "message"}`` for an exception raised by the student's code."""
    where = _student_frame(exc, path)
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a student's __str__ may raise
        text = "(the exception's message could not be read)"
    if isinstance(exc, NotImplementedError):
        status, message = "not implemented", f"NotImplementedError{where}: {text}".rstrip(": ")
    elif isinstance(exc, SyntaxError):
        status, message = "error", f"SyntaxError in {Path(path).name}, line {exc.lineno}: {exc.msg}"
    else:
        status, message = "error", f"{type(exc).__name__}{where}: {text}"
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


def run_request(request: dict) -> dict:
    """Steps 2-6 of the module docstring; returns the reply (step 7 writes it)."""
    single_threaded_products()
    provided = load_provided(request.get("provided", {}))
    provide = {
        module: {name: provided[key] for name, key in names.items()}
        for module, names in request.get("provide", {}).items()
    }
    replace = {name: provided[key] for name, key in request.get("replace", {}).items()}
    sys.path[:] = [p for p in sys.path if p not in request.get("forget_paths", [])]
    del provided
    forget_package()
    reply: dict = {"loaded": False, "limits_failed": apply_limits(request.get("limits", {}))}
    become(request.get("user"))
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
    """Read a request from stdin, run it, write the reply to the descriptor in argv[1]."""
    out_fd = int(sys.argv[1])
    os.set_inheritable(out_fd, False)
    request = wire.loads(sys.stdin.buffer.read())
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    try:
        reply = run_request(request)
    except BaseException as exc:  # noqa: BLE001 - a failure of the grader's side of the child
        reply = {"loaded": False, "grader_error": f"{type(exc).__name__}: {exc}"}
    try:
        data = wire.dumps(reply)
    except BaseException as exc:  # noqa: BLE001 - e.g. a student's object that breaks encoding
        data = wire.dumps(
            {"loaded": True, "error": {"status": "error", "message": f"unencodable: {exc}"}}
        )
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - the student may have closed or replaced it
            pass
    view = memoryview(data)
    while view:
        view = view[os.write(out_fd, view) :]
    os._exit(0)
