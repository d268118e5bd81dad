"""minireason.files: atomic files and directories, the one-writer lock, arrays without pickle."""

from __future__ import annotations

import gzip
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from minireason.files import (
    atomic_write_json,
    atomic_write_text,
    directory_in_place,
    read_npz,
    writer_lock,
)


def test_atomic_write_replaces_whole_or_leaves_the_old_file(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_text(path, "old")
    atomic_write_json(path, {"v": 2})

    def explode(fh):
        fh.write(b"half")
        raise OSError("disk full")

    from minireason.files import atomic_write

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, explode)
    assert path.read_text() == '{\n "v": 2\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary file left


def test_directory_in_place_swaps_whole_directories(tmp_path):
    out = tmp_path / "out"
    with directory_in_place(out) as d:
        (d / "one").write_text("1")
    with pytest.raises(ValueError), directory_in_place(out) as d:
        (d / "two").write_text("2")
        raise ValueError("stop")
    assert [p.name for p in out.iterdir()] == ["one"]  # the failed write changed nothing
    with directory_in_place(out) as d:
        (d / "three").write_text("3")
    assert [p.name for p in out.iterdir()] == ["three"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing hidden left


def test_a_second_writer_is_refused_until_the_first_dies(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sys, time
        from minireason.files import writer_lock
        with writer_lock({str(out)!r}, "test"):
            print("locked", flush=True)
            time.sleep(60)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=r"--out .*out: another test is writing it now"):
            with writer_lock(out, "test"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with writer_lock(out, "test"):  # the system released the dead writer's lock
        pass


def test_a_writer_leaves_no_lock_file_and_no_empty_directory_it_made(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(ValueError, match="refused"):
        with writer_lock(out, "test"):
            assert (out.parent / ".out.lock").exists()
            raise ValueError("refused")  # a command that refuses after taking the lock
    assert list(tmp_path.iterdir()) == []  # neither the lock nor a/b
    with writer_lock(out, "test"):
        out.mkdir()
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]  # what it wrote, only
    (tmp_path / ".x.lock").write_text("")  # left by a writer that was killed
    with writer_lock(tmp_path / "x", "test"):
        pass
    assert not (tmp_path / ".x.lock").exists()  # taken over, then removed


def test_read_npz_refuses_everything_but_plain_arrays(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, ids=np.arange(5))
    assert read_npz(good, ("ids",))["ids"].tolist() == [0, 1, 2, 3, 4]
    cases = {
        "empty.npz": (b"", "empty file"),
        "readme.npz": (b"# README\nhello\n", "not an .npz archive"),
        "gzip.npz": (gzip.compress(b"[1, 2]"), "not an .npz archive"),
        "cut.npz": (good.read_bytes()[: good.stat().st_size // 2], "truncated or damaged"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=message) as err:
            read_npz(tmp_path / name, ("ids",))
        assert name in str(err.value) and "allow_pickle" not in str(err.value)
    objects = tmp_path / "objects.npz"
    np.savez(objects, ids=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="holds Python objects .*never loads") as err:
        read_npz(objects, ("ids",))
    assert "allow_pickle" not in str(err.value)
    with pytest.raises(ValueError, match=r"lacks the arrays \['offsets'\]"):
        read_npz(good, ("ids", "offsets"))
    with pytest.raises(FileNotFoundError, match="missing"):
        read_npz(tmp_path / "absent.npz")
