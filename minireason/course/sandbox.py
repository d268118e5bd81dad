"""Run one child of the grader: its own directory, session, limits and (as root) its own user.

:class:`Sandbox` is the grader's side of :mod:`minireason.course.runner`. For each test::

    sandbox.run(request, "attention_student.py", source)
      1. a private directory (0700) with a fresh copy of the student's file, and nothing else;
      2. a fresh Python in its own session, with a clean environment (no course seed, no
         paths of the grader), that runs the runner; the request goes to its stdin;
      3. stdout and stderr are read in chunks and only the first OUTPUT_KEEP bytes kept (the
         rest is counted); the reply comes back on a pipe of its own, at most REPLY_LIMIT bytes;
      4. after the reply, the end of the process or the time limit, whichever comes first,
         the whole process group is killed, and as root every process of the sandbox user
         too; then the directory is removed.

The limits (:class:`Limits`) are set by the runner before it imports the student's file:
address space, CPU seconds, processes, size of a written file, open files, no core dumps.

Isolation depends on who runs the grader (:attr:`Sandbox.isolation` says which applies):

- as root, student code runs as a sandbox user of its own (a uid with no account, one per
  concurrent grading run, taken with a lock from ``MINIREASON_SANDBOX_UID``, default 60100,
  onwards): it cannot signal the grader, read its files or the other submissions' copies, or
  start other processes (the process limit of that uid is 1); after each test every process of
  that uid is killed;
- as any other user, student code runs as that user: the limits, the private directory and
  the group kill apply, but it can read that user's files and signal its processes.
"""

from __future__ import annotations

import contextlib
import getpass
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from minireason.course import wire

OUTPUT_KEEP = 64 * 1024  # bytes of printed output kept per test; the rest is counted only
REPLY_LIMIT = 32 * 1024 * 1024  # bytes a child may return
UID_BASE = 60100
UID_COUNT = 64
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


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
    """Children for one grading run (a context manager: it holds a sandbox uid as root)."""

    def __init__(self, timeout: float, limits: Limits | None = None):
        self.timeout = float(timeout)
        self.limits = limits or Limits()
        self.user: tuple[int, int] | None = None
        self._lock = None
        if _is_root():
            self.user, self._lock = _acquire_uid()
        self.isolation = self._describe()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        if self.user is not None:
            _kill_user(self.user[0])
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _describe(self) -> str:
        limits = (
            f"limits per test: {self.timeout:g} s, {self.limits.memory_mb} MB of memory, "
            f"files up to {self.limits.file_mb} MB"
        )
        if self.user is not None:
            return (
                f"student code runs as sandbox user {self.user[0]} (no other processes, "
                f"no access to the grader's or other submissions' files); {limits}"
            )
        return (
            f"student code runs as your user {getpass.getuser()} (not root): "
            f"it cannot import the references or forge a result, but it can read your files "
            f"and signal your processes; {limits}"
        )

    def run(self, request: dict, filename: str, source: bytes) -> ChildRun:
        """Run the runner on ``request`` with a fresh copy of the student's file."""
        workdir = Path(tempfile.mkdtemp(prefix="minireason-test-"))
        try:
            student = workdir / filename
            student.write_bytes(source)
            if self.user is not None:
                for p in (workdir, student):
                    os.chown(p, *self.user)
            request = dict(
                request,
                file=filename,
                user=list(self.user) if self.user else None,
                limits=self.limits.rlimits(self.timeout, own_user=self.user is not None),
                forget_paths=[PACKAGE_ROOT],
            )
            return self._spawn(wire.dumps(request), workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _spawn(self, request: bytes, workdir: Path) -> ChildRun:
        read_fd, write_fd = os.pipe()
        launcher = (  # the working directory leaves the path first: it holds the student's file
            "import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
            f"sys.path.insert(0, {PACKAGE_ROOT!r}); "
            "from minireason.course.runner import main; main()"
        )
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(workdir),
            "TMPDIR": str(workdir),
            "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONIOENCODING": "utf-8",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "MPLBACKEND": "Agg",
        }
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-s", "-c", launcher, str(write_fd)],
                cwd=workdir,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,),
                start_new_session=True,
            )
        finally:
            os.close(write_fd)
        try:
            output, output_bytes, reply_bytes, timed_out, problem = _talk(
                proc, request, read_fd, start + self.timeout
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
                try:
                    reply = wire.loads(reply_bytes)
                except wire.WireError as exc:
                    problem = f"the test process returned unreadable data ({exc})"
                if reply is not None and not isinstance(reply, dict):
                    reply, problem = None, "the test process returned unreadable data"
        text = output.decode("utf-8", errors="replace")
        return ChildRun(reply, text, output_bytes, seconds, timed_out, problem)


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
