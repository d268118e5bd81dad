"""Run one child of the grader: its own directory, session, limits and (as root) its own user.

:class:`Sandbox` is the grader's side of :mod:`minireason.course.runner`. For each test::

    sandbox.run(request, "attention_student.py", source, provided)
      1. a private directory (0700); the student's file travels in the request, and the
         child writes it there;
      2. a fresh Python in its own session, with a clean environment (no course seed, no
         paths of the grader), that runs the runner; the request goes to its stdin;
      3. if the test provides package functions (A1's softmax in the forward tests), a second
         process, the reference process, runs them for the student's process: only data
         crosses between the two, over a pair of pipes; no reference code is in the
         student's process;
      4. stdout and stderr are read in chunks and only the first OUTPUT_KEEP bytes kept (the
         rest is counted); the reply comes back on a pipe of its own, at most REPLY_LIMIT
         bytes, and is decoded within the bounds of :func:`minireason.course.wire.loads` and
         checked field by field (:func:`validated`): whatever is wrong with it is the
         student's failed test, with a one-line reason;
      5. after the reply, the end of the process or the time limit, whichever comes first,
         both process groups are killed, and as root every process of the sandbox user too;
         then the directory is removed, and without a jail every file the sandbox user left
         in /tmp, /var/tmp and /dev/shm.

The limits (:class:`Limits`) are set by the runner before it imports the student's file:
address space, CPU seconds, processes, size of a written file, open files, no core dumps.

Isolation depends on who runs the grader and what the system permits; :attr:`Sandbox.isolation`
says what holds, as measured by a probe child when the sandbox opens:

- as root, student code runs as a sandbox user of its own (a uid with no account, one per
  concurrent grading run, taken with a lock from ``MINIREASON_SANDBOX_UID``, default 60100,
  onwards): it cannot signal the grader, read its private files or the other submissions'
  copies, or start other processes (the process limit of that uid is 1); after each test
  every process of that uid is killed;
- as root where mount namespaces are permitted, each child also runs in a jail
  (:func:`minireason.course.runner.enter_jail`): a root holding only the interpreter, its
  libraries and NumPy, read-only, with the package hidden, and a fresh private /tmp,
  /var/tmp, /dev/shm and working directory that vanish with the child;
- ``MINIREASON_NO_JAIL=1`` turns the jail off (to see, or test, what holds without one);
- as any other user, student code runs as that user: the limits, the private directory and
  the group kill apply, but it can read that user's files (the package among them), write
  where that user can, and signal that user's processes.
"""

from __future__ import annotations

import contextlib
import getpass
import math
import os
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minireason.course import wire

OUTPUT_KEEP = 64 * 1024  # bytes of printed output kept per test; the rest is counted only
REPLY_LIMIT = 8 * 1024 * 1024  # bytes a child may return
UID_BASE = 60100
UID_COUNT = 64
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
PACKAGE_DIR = str(Path(__file__).resolve().parents[1])
SHARED_TMP = ("/tmp", "/var/tmp", "/dev/shm")  # where any user may write, cleaned without a jail
JAIL_TMP_MB = 64  # the jail's tmpfs: the student's /tmp, /var/tmp, /dev/shm and /work together


@dataclass(frozen=True)
class Limits:
    """What one test's child may use.

    Attributes:
        memory_mb: address space (``RLIMIT_AS``); a larger allocation raises MemoryError.
        file_mb: largest file it may write (``RLIMIT_FSIZE``; beyond it the process is killed).
        open_files: descriptors (``RLIMIT_NOFILE``).
        processes: processes beyond itself, as the sandbox user (``RLIMIT_NPROC``; as another
            user the limit counts that user's processes, so it is their number plus this).
    """

    memory_mb: int = 1024
    file_mb: int = 16
    open_files: int = 64
    processes: int = 0

    def rlimits(self, timeout: float, own_user: bool) -> dict[str, int]:
        cpu = math.ceil(timeout) + 1
        procs = 1 + self.processes if own_user else _count_processes(os.getuid()) + 8
        return {
            "RLIMIT_AS": self.memory_mb * 1024 * 1024,
            "RLIMIT_CPU": cpu,
            "RLIMIT_FSIZE": self.file_mb * 1024 * 1024,
            "RLIMIT_NOFILE": self.open_files,
            "RLIMIT_NPROC": procs,
            "RLIMIT_CORE": 0,
        }


@dataclass
class ChildRun:
    """What came back from one child.

    Attributes:
        reply: the decoded reply, or None (then ``problem`` says why).
        output: what it printed (stdout and stderr), at most OUTPUT_KEEP bytes of it.
        output_bytes: how much it printed in all.
        seconds: wall time, process start included.
        timed_out: it was stopped at the time limit.
        problem: why there is no reply (exit status or signal, oversized or unreadable reply).
    """

    reply: dict | None
    output: str
    output_bytes: int
    seconds: float
    timed_out: bool
    problem: str | None = None


class Sandbox:
    """Children for one grading run (a context manager: it holds a sandbox uid as root).

    Opening one runs a probe child (no student code) that measures what holds: whether the
    jail could be entered and whether the package can be found or read as the student's
    user. :attr:`isolation` says it in one line; :attr:`package_hidden` is the last part.
    """

    def __init__(self, timeout: float, limits: Limits | None = None):
        self.timeout = float(timeout)
        self.limits = limits or Limits()
        self.user: tuple[int, int] | None = None
        self._lock = None
        if _is_root():
            self.user, self._lock = _acquire_uid()
        self.jail = self.user is not None and os.environ.get("MINIREASON_NO_JAIL", "") == ""
        try:
            self.package_readable = self._probe()
        except BaseException:
            self.close()
            raise
        self.package_hidden = not self.package_readable
        self.isolation = self._describe()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        if self.user is not None:
            _kill_user(self.user[0])
            if not self.jail:
                remove_files_of(self.user[0])
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _probe(self) -> list[str]:
        """The package directories the student's user can list (jail or not); a jail that
        cannot be entered is given up here, and the probe runs again without it."""
        request = {"probe": True, "package_dirs": [PACKAGE_DIR]}
        run = self.run(request, "probe.py", b"")
        if self.jail and (run.reply is None or "probe" not in run.reply):
            self.jail, self.jail_problem = False, _tail_line(run)
            run = self.run(request, "probe.py", b"")
        probe = (run.reply or {}).get("probe")
        if not isinstance(probe, dict):
            raise GraderError(f"the sandbox does not start: {_tail_line(run)}")
        return [str(p) for p in probe.get("package_readable", [])]

    jail_problem = ""

    def _describe(self) -> str:
        limits = (
            f"limits per test: {self.timeout:g} s, {self.limits.memory_mb} MB of memory, "
            f"files up to {self.limits.file_mb} MB"
        )
        if self.package_readable:
            package = (
                "the package's source IS readable by student code at "
                + ", ".join(self.package_readable)
                + " (a submission could copy the references: make it unreadable to other "
                "users, or grade as root where mount namespaces are permitted)"
            )
        else:
            package = "the package's source cannot be found or read by student code"
        if self.user is None:
            return (
                f"student code runs as your user {getpass.getuser()} (not root): it cannot "
                f"import the references or forge a result, but it can read your files, write "
                f"where you can and signal your processes; {package}; {limits}"
            )
        who = f"student code runs as sandbox user {self.user[0]} (no other processes)"
        if self.jail:
            where = (
                "in a jail (private mount namespace: only the interpreter and NumPy, "
                "read-only; fresh private /tmp, /var/tmp, /dev/shm and working directory per "
                "test; other users' processes invisible)"
            )
        else:
            why = f" ({self.jail_problem})" if self.jail_problem else ""
            where = (
                f"without a jail{why}: it sees the system's files as any other user does; "
                "its files in /tmp, /var/tmp and /dev/shm are deleted after each test"
            )
        return f"{who}, {where}; {package}; {limits}"

    def run(self, request: dict, filename: str, source: bytes, provided=None) -> ChildRun:
        """Run the runner on ``request`` with a fresh copy of the student's file;
        ``provided``: ``{name: "module:function"}`` served by a reference process."""
        workdir = Path(tempfile.mkdtemp(prefix="minireason-test-"))
        reference = None
        try:
            if self.user is not None and not self.jail:
                os.chown(workdir, *self.user)
            request = dict(
                request,
                file=filename,
                source=np.frombuffer(source, dtype=np.uint8),
                user=list(self.user) if self.user else None,
                limits=self.limits.rlimits(self.timeout, own_user=self.user is not None),
                forget_paths=[PACKAGE_ROOT],
                jail={"tmp_mb": JAIL_TMP_MB, "binds": jail_binds()} if self.jail else None,
                provided=sorted(provided or {}),
            )
            fds = []
            if provided:
                reference, fds = self._reference(provided)
            return self._spawn(request, workdir, fds)
        finally:
            if reference is not None:
                _kill_group(reference)
                reference.wait()
            if self.user is not None and not self.jail:
                _kill_user(self.user[0])
                remove_files_of(self.user[0])
            shutil.rmtree(workdir, ignore_errors=True)

    def _reference(self, provided: dict) -> tuple[subprocess.Popen, list[int]]:
        """Start the reference process for ``provided``; return it and the student's ends of
        the two pipes (calls out, answers in)."""
        calls_r, calls_w = os.pipe()
        answers_r, answers_w = os.pipe()
        fds = (calls_r, answers_w)
        request = {
            "functions": dict(provided),
            "limits": self.limits.rlimits(self.timeout, own_user=False),
        }
        request["limits"].pop("RLIMIT_NPROC")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-s", "-c", _launcher("serve_reference"), *map(str, fds)],
                env=_child_env(tempfile.gettempdir()),
                cwd="/",
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=fds,
                start_new_session=True,
            )
        finally:
            for fd in fds:
                os.close(fd)
        try:
            proc.stdin.write(wire.dumps(request))
            proc.stdin.close()
        except OSError:
            pass
        return proc, [calls_w, answers_r]

    def _spawn(self, request: dict, workdir: Path, channel: list[int]) -> ChildRun:
        read_fd, write_fd = os.pipe()
        if channel:
            request["channel"] = channel
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-s", "-c", _launcher("main"), str(write_fd)],
                cwd=workdir,
                env=_child_env(str(workdir)),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd, *channel),
                start_new_session=True,
            )
        finally:
            for fd in (write_fd, *channel):
                os.close(fd)
        try:
            output, output_bytes, reply_bytes, timed_out, problem = _talk(
                proc, wire.dumps(request), read_fd, start + self.timeout
            )
        finally:
            os.close(read_fd)
            _kill_group(proc)
            if self.user is not None:
                _kill_user(self.user[0])
            proc.wait()
        seconds = time.perf_counter() - start
        reply = None
        if problem is None and not timed_out:
            if not reply_bytes:
                problem = _exit_problem(proc.returncode, self.limits)
            else:
                reply, problem = validated(reply_bytes)
        text = output.decode("utf-8", errors="replace")
        return ChildRun(reply, text, output_bytes, seconds, timed_out, problem)


class GraderError(RuntimeError):
    """The grader itself could not run a test (not the student's fault): the sandbox could not
    start a child that runs no student code."""


def _launcher(function: str) -> str:
    """The child's program: the runner, from this package, with the working directory (which
    holds the student's file) out of the import path."""
    return (
        "import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
        f"sys.path.insert(0, {PACKAGE_ROOT!r}); "
        f"from minireason.course.runner import {function}; {function}()"
    )


def _child_env(home: str) -> dict[str, str]:
    """A clean environment: nothing of the grader's (no course seed, no paths)."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }


def jail_binds() -> list[str]:
    """What a jail shows, read-only: the system's libraries and this interpreter with its
    packages (NumPy's included); the package's copies in them are covered in the jail."""
    paths = ["/usr", "/bin", "/lib", "/lib32", "/lib64", "/sbin"]
    paths += [sys.base_prefix, sys.prefix, os.path.dirname(os.path.dirname(np.__file__))]
    paths = [os.path.realpath(p) if not os.path.islink(p) else p for p in paths]
    paths = sorted({p for p in paths if os.path.lexists(p)})
    return [p for p in paths if not any(p.startswith(q + os.sep) for q in paths)]


def _tail_line(run: ChildRun) -> str:
    text = run.problem or ((run.reply or {}).get("error") or {}).get("message") or run.output
    return " ".join(str(text).split())[-300:] or "no reply"


REPLY_FIELDS = {"loaded", "limits_failed", "defined", "results", "error", "probe"}


def validated(data: bytes) -> tuple[dict | None, str | None]:
    """``(reply, None)`` if ``data`` is a well-formed reply, else ``(None, one-line reason)``.

    A reply is a dict of REPLY_FIELDS: ``loaded`` a bool, ``defined`` and ``limits_failed``
    lists of strings, ``results`` a dict keyed by strings, ``error`` a dict with a status
    the child may report (CHILD_STATUSES) and a string message."""
    from minireason.course.runner import CHILD_STATUSES

    try:
        reply = wire.loads(data, refs=False, opaque_refs=True)
    except wire.WireError as exc:
        return None, f"the test process returned unreadable data ({exc})"
    if not isinstance(reply, dict) or not set(reply) <= REPLY_FIELDS:
        return None, "the test process returned unreadable data (not a reply)"
    error = reply.get("error")
    checks = [
        isinstance(reply.get("loaded", False), bool),
        all(
            isinstance(reply.get(k, []), list) and all(isinstance(v, str) for v in reply.get(k, []))
            for k in ("defined", "limits_failed")
        ),
        isinstance(reply.get("results", {}), dict)
        and all(isinstance(k, str) for k in reply.get("results", {})),
        error is None
        or (
            isinstance(error, dict)
            and error.get("status") in CHILD_STATUSES
            and isinstance(error.get("message"), str)
        ),
    ]
    if not all(checks):
        return None, "the test process returned unreadable data (a malformed reply)"
    return reply, None


def _talk(proc, request: bytes, read_fd: int, deadline: float):
    """Feed the request and drain stdout (keeping OUTPUT_KEEP bytes) and the reply pipe until
    the child exits or the deadline passes.

    Returns ``(output, output_bytes, reply, timed_out, problem)``.
    """
    captured = {"out": bytearray(), "reply": bytearray()}
    count = {"out": 0, "reply": 0}
    pending = memoryview(request)
    sel = selectors.DefaultSelector()
    for f in (proc.stdin, proc.stdout, read_fd):
        os.set_blocking(f if isinstance(f, int) else f.fileno(), False)
    sel.register(proc.stdin, selectors.EVENT_WRITE, "in")
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(read_fd, selectors.EVENT_READ, "reply")

    def read(key) -> bool:
        """Read what is there; False at end of file."""
        while True:
            try:
                chunk = os.read(key.fd, 65536)
            except BlockingIOError:
                return True
            if not chunk:
                sel.unregister(key.fileobj)
                return False
            count[key.data] += len(chunk)
            keep = OUTPUT_KEEP if key.data == "out" else REPLY_LIMIT + 1
            room = keep - len(captured[key.data])
            if room > 0:
                captured[key.data] += chunk[:room]

    timed_out = False
    try:
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                timed_out = True
                break
            for key, _ in sel.select(timeout=min(0.05, left)):
                if key.data != "in":
                    read(key)
                    continue
                try:
                    pending = pending[os.write(proc.stdin.fileno(), pending) :]
                except OSError:
                    pending = pending[:0]
                if not pending:
                    sel.unregister(proc.stdin)
                    proc.stdin.close()
            if count["reply"] > REPLY_LIMIT:
                break
            if proc.poll() is not None:  # it has exited: take what is buffered, and stop
                for key in list(sel.get_map().values()):
                    if key.data != "in":
                        read(key)
                break
    finally:
        sel.close()
        with contextlib.suppress(OSError):
            proc.stdin.close()
    problem = None
    if count["reply"] > REPLY_LIMIT:
        problem = f"the test process returned more than {REPLY_LIMIT >> 20} MB"
    reply = bytes(captured["reply"]) if not timed_out else b""
    return bytes(captured["out"]), count["out"], reply, timed_out, problem


def _exit_problem(returncode: int | None, limits: Limits) -> str:
    """Why a child that returned nothing stopped, in words."""
    if returncode is not None and returncode < 0:
        sig = -returncode
        why = {
            signal.SIGXCPU: "it used up its CPU time",
            signal.SIGXFSZ: f"it wrote a file larger than {limits.file_mb} MB",
            signal.SIGKILL: "it was killed",
            signal.SIGSEGV: "it crashed (segmentation fault)",
        }.get(sig, "")
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else sig
        return f"the test process was stopped by {name}" + (f": {why}" if why else "")
    return f"the test process ended without a result (exit code {returncode})"


# --------------------------------------------------------------------------- processes and users


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill a child and every process of its session's group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def _user_processes(uid: int) -> list[int]:
    """Live (not zombie) processes of ``uid``, from /proc."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("State", "").strip().startswith("Z"):
            continue
        if int(fields.get("Uid", "-1").split()[0]) == uid:
            pids.append(int(entry))
    return pids


def remove_files_of(uid: int) -> None:
    """Delete what ``uid`` left in SHARED_TMP: its files and folders, and its files inside
    folders any user may write to (nothing else of that uid can be there)."""
    for top in SHARED_TMP:
        with contextlib.suppress(OSError):
            _remove_in(Path(top), uid, 0)


def _remove_in(folder: Path, uid: int, depth: int) -> None:
    for entry in os.scandir(folder):
        with contextlib.suppress(OSError):
            st = entry.stat(follow_symlinks=False)
            if st.st_uid == uid:
                if stat.S_ISDIR(st.st_mode):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            elif stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_IWOTH and depth < 8:
                _remove_in(Path(entry.path), uid, depth + 1)


def _count_processes(uid: int) -> int:
    try:
        return len(_user_processes(uid))
    except OSError:
        return 64  # no /proc (not Linux): a margin


def _kill_user(uid: int) -> None:
    """Kill every process of ``uid`` (a sandbox uid: nothing else runs as it)."""
    if not os.path.isdir("/proc"):
        return
    for _ in range(200):
        pids = _user_processes(uid)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.005)


def _acquire_uid() -> tuple[tuple[int, int], object]:
    """A sandbox ``(uid, gid)`` that no account and no other grading run uses, with its lock."""
    import fcntl

    base = int(os.environ.get("MINIREASON_SANDBOX_UID", UID_BASE))
    locks = Path(tempfile.gettempdir()) / "minireason-sandbox-uids"
    with contextlib.suppress(FileExistsError):
        locks.mkdir(mode=0o700)
    st = os.lstat(locks)
    if not os.path.isdir(locks) or os.path.islink(locks) or st.st_uid != 0 or st.st_mode & 0o077:
        raise OSError(f"{locks} must be a directory owned by root with mode 0700")
    import pwd

    for uid in range(base, base + UID_COUNT):
        try:
            pwd.getpwuid(uid)
            continue  # a real account: never run student code as it
        except KeyError:
            pass
        fd = os.open(locks / str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        handle = os.fdopen(fd, "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _kill_user(uid)  # leftovers of a grading run that was killed
        return (uid, uid), handle
    raise OSError(
        f"no free sandbox uid in {base}..{base + UID_COUNT - 1} (set MINIREASON_SANDBOX_UID)"
    )
