"""Ctrl-C: one line on stderr and exit status 130, whatever the command is doing, and
``explain-all`` resumes what it had finished.

Each command runs in a process group of its own, signalled as a terminal signals its
foreground job: SIGINT to every process of the group (``explain-all``'s Dask workers too).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import MI_REVIEWS, MICRO_PRESET

ROOT = Path(__file__).resolve().parents[1]
# A tqdm progress bar's line: "[elapsed<remaining" or "[elapsed, rate]".
PROGRESS_BAR = re.compile(r"\[\d+:\d\d(?:<|,)")


class Command:
    """``python -m minireason.cli ARGS`` in a new process group, its output read as it comes."""

    def __init__(self, args: list[str]):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "minireason.cli", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(s, sink), daemon=True)
            for s, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for t in self.readers:
            t.start()

    @staticmethod
    def _read(stream, sink):
        for chunk in iter(lambda: stream.read(1), ""):
            sink.append(chunk)

    def interrupt_when(self, ready, timeout: float = 120.0) -> None:
        """Wait until ``ready()`` (or fail), then send SIGINT to the whole process group."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None:
                pytest.fail(f"ended by itself (status {self.proc.returncode}): {self.stderr}")
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail("never got ready to be interrupted")
            time.sleep(0.02)
        os.killpg(self.proc.pid, signal.SIGINT)

    def wait(self, timeout: float = 120.0) -> int:
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            pytest.fail(f"still running {timeout} s after Ctrl-C: {self.stderr[-2000:]}")
        for t in self.readers:
            t.join(10)
        return status

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)


def the_one_line(stderr: str, command: str, notes: str | None = None) -> str:
    """The interrupted line, checked to be the only line of ``stderr`` besides progress
    bars (and the command's own progress ``notes``: lines starting with them)."""
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    assert " - WARNING - " not in stderr and "distributed." not in stderr, stderr[-3000:]
    lines = [line for line in re.split(r"[\r\n]+", stderr) if line.strip()]
    lines = [line for line in lines if not PROGRESS_BAR.search(line)]
    lines = [line for line in lines if not (notes and line.startswith(notes))]
    assert len(lines) == 1, stderr[-3000:]
    assert lines[0].startswith(f"minireason {command}: interrupted"), lines
    assert stderr.rstrip("\n").endswith(lines[0]), "the line is not the last one"
    return lines[0]


def lock_of(out: Path) -> Path:
    """The one-writer lock a command takes on ``out`` once it starts its work."""
    return out.parent / f".{out.name}.lock"


# --------------------------------------------------------------------------- explain-all

N_USERS, TOP_K = 12, 2


@pytest.mark.slow
def test_ctrl_c_in_explain_all_is_one_line_and_the_rerun_resumes(micro_run, tmp_path):
    distributed = pytest.importorskip("distributed", reason="explain-all needs [scale]")
    pytest.importorskip("pyarrow", reason="explain-all needs [scale]")
    from minireason.prep.prepared import load_prepared
    from minireason.reason import catalogue as cat

    prepared_dir, run_dir = micro_run
    users = tmp_path / "users.txt"
    users.write_text("\n".join(cat.known_users(load_prepared(prepared_dir))[:N_USERS]) + "\n")
    out = tmp_path / "out"
    args = ["explain-all", "--prepared", prepared_dir, "--run", run_dir, "--out", out]
    args += ["--users", users, "--top-k", TOP_K, "--chunk-size", 1, "--workers", 2]
    manifest = out / cat.MANIFEST

    def recorded() -> int:
        try:
            return len(json.loads(manifest.read_text())["chunks"])
        except (OSError, ValueError):
            return 0

    command = Command(args)
    command.interrupt_when(lambda: recorded() >= 1)
    assert command.wait() == 130, command.stderr[-3000:]
    line = the_one_line(command.stderr, "explain-all", notes="explain-all:")
    kept = recorded()
    assert 0 < kept < N_USERS, "not interrupted mid-run"
    assert f"{kept} of {N_USERS} chunks finished" in line and "resumes" in line, line

    rerun = Command(args)
    assert rerun.wait(300) == 0, rerun.stderr[-3000:]
    assert f"{kept} chunks finished before, skipped" in rerun.stderr
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, dashboard_address=":0", env=cat.ONE_BLAS_THREAD
    ) as cluster:
        fresh = cat.explain_all(
            prepared_dir,
            run_dir,
            tmp_path / "fresh",
            users=users,
            top_k=TOP_K,
            chunk_size=N_USERS,
            scheduler=cluster.scheduler_address,
            progress=False,
        )
    assert fresh.complete

    def rows(where):
        table = cat.read_catalogue(where).to_pylist()
        return sorted(table, key=lambda r: (r["user"], r["rank"]))

    assert rows(out) == rows(tmp_path / "fresh")


# --------------------------------------------------------------------------- the others


def test_an_interrupt_caught_inside_exec_still_exits_130(tmp_path):
    """CPython leaves a flag when a KeyboardInterrupt leaves exec() of a string (as when a
    dataclass is made: the Ctrl-C lands during an import), and ``python -m`` then ends by
    SIGINT even though main() caught it; main() resets the flag."""
    (tmp_path / "interrupted_cli.py").write_text(
        "import sys\n"
        "from minireason import cli\n"
        "def declare(p, add):\n"
        "    p.set_defaults(func=lambda args: exec('raise KeyboardInterrupt'))\n"
        "cli.COMMANDS['boom'] = ('a KeyboardInterrupt out of exec()', declare)\n"
        "sys.exit(cli.run())\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    argv = [sys.executable, "-m", "interrupted_cli", "boom"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (130, "minireason boom: interrupted\n")


def test_ctrl_c_in_prepare_is_one_line(data_dir, tmp_path):
    out = tmp_path / "prep"
    command = Command(["prepare", "--reviews", data_dir / MI_REVIEWS, "--out", out])
    command.interrupt_when(lock_of(out).exists)
    assert command.wait() == 130, command.stderr[-3000:]
    the_one_line(command.stderr, "prepare")
    assert not out.exists()  # a prepared directory appears whole or not at all


def test_ctrl_c_in_train_is_one_line(micro_prepared, tmp_path):
    preset = json.loads(json.dumps(MICRO_PRESET))
    preset["pretrain"]["max_steps"] = preset["finetune"]["max_steps"] = 1_000_000
    (tmp_path / "long.json").write_text(json.dumps(preset))
    out = tmp_path / "run"
    args = ["train", "--prepared", micro_prepared, "--preset", tmp_path / "long.json"]
    command = Command([*args, "--out", out])
    command.interrupt_when(lambda: (out / "pretrain").is_dir())
    assert command.wait() == 130, command.stderr[-3000:]
    the_one_line(command.stderr, "train")


def test_ctrl_c_in_evaluate_is_one_line(micro_run, tmp_path):
    prepared_dir, run_dir = micro_run
    args = ["evaluate", "--prepared", prepared_dir, "--run", run_dir, "--out", tmp_path / "ev"]
    command = Command([*args, "--candidates", 64])
    command.interrupt_when(lambda: "candidates: batch" in command.stderr)  # a plain line
    assert command.wait() == 130, command.stderr[-3000:]
    the_one_line(command.stderr, "evaluate", notes="candidates: batch")


def test_ctrl_c_in_explain_is_one_line(micro_run):
    from minireason.prep.prepared import load_prepared

    prepared_dir, run_dir = micro_run
    user = sorted(load_prepared(prepared_dir).users)[0]
    args = ["explain", "--prepared", prepared_dir, "--run", run_dir, "--user", user]
    command = Command([*args, "-k", 10, "--candidates", 5000])
    command.interrupt_when(lambda: "model: " in command.stdout)  # loaded; explaining
    assert command.wait() == 130, command.stderr[-3000:]
    the_one_line(command.stderr, "explain")
