"""The second round of attacks (issue 27): reference code within reach, state that outlives a
test, crafted replies, secrets and classmates' work, reports that lie to a person.

Each attack is a malicious submission (the A1 or A2 reference solution or stub with lines
added or replaced). Each must earn exactly what its honest part deserves, leave the grader
alive, and leave nothing behind. The ones that need the sandbox user, or the jail, run only
where those hold (root; a system that permits mount namespaces), and skip saying so.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import pytest
from conftest import planted_file

from minireason.course import wire
from minireason.course.assignments import a1
from minireason.course.batch import grade_folder
from minireason.course.gradescope import grade_submission
from minireason.course.grading import grade
from minireason.course.sandbox import PACKAGE_DIR, Sandbox

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "tests" / "fixtures" / "a1_solution.py"
A2_SOLUTION = ROOT / "tests" / "fixtures" / "a2_solution.py"
STUB = ROOT / a1.STUDENT_FILE
POINTS = {t.name: t.points for t in a1.TESTS}
SOFTMAX = ["softmax_fixed_rows", "softmax_large_values"]
SOME = [*SOFTMAX, "forward_fixed", "backward_fixed"]
SOFTMAX_BODY = "    shifted = x - x.max(axis=-1, keepdims=True)\n"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the sandbox user")


def _passed(report) -> set[str]:
    return {r.name for r in report.results if r.status == "passed"}


# --------------------------------------------------------------------------- reference code in reach

REACH = '''
def _reach(name, *starts):
    """A package function called ``name`` reachable from ``starts``, then from the modules,
    then anywhere on the heap."""
    import collections, gc, sys, types
    def hit(obj):
        module = str(getattr(obj, "__module__", ""))
        return getattr(obj, "__name__", None) == name and module.startswith("minireason")
    for roots in (starts, list(sys.modules.values())):
        todo, seen = collections.deque(roots), set()
        while todo and len(seen) < 200_000:
            obj = todo.popleft()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if hit(obj) and callable(obj):
                return obj
            if isinstance(obj, types.FunctionType):
                todo += list(obj.__globals__.values())
                for cell in obj.__closure__ or ():
                    try:
                        todo.append(cell.cell_contents)
                    except ValueError:
                        pass
            elif isinstance(obj, type):
                todo += list(vars(obj).values())
            elif isinstance(obj, (dict, types.MappingProxyType)):
                todo += list(obj.values())
            elif isinstance(obj, (list, tuple, set, frozenset)):
                todo += list(obj)
                todo.append(type(obj))
            elif isinstance(obj, types.ModuleType):
                todo += list(vars(obj).values())
            elif hasattr(obj, "__dict__"):
                todo += list(vars(obj).values())
                todo.append(type(obj))
    for obj in gc.get_objects():
        if hit(obj) and callable(obj):
            return obj
    raise LookupError(f"no reference {name} within reach")
'''


def test_a1_without_attention_code_finds_no_reference(tmp_path):
    """Everything reachable from the provided softmax, the modules and the heap: no way to
    the package's attention_forward or attention_backward."""
    source = SOLUTION.read_text().split("def attention_forward")[0]
    cheat = tmp_path / "attention_student.py"
    cheat.write_text(
        source + REACH + "\n"
        "def attention_forward(q, k, v, is_causal=False):\n"
        "    return _reach('attention_forward', softmax)(q, k, v, is_causal=is_causal)\n\n"
        "def attention_backward(dout, cache):\n"
        "    return _reach('attention_backward', softmax, cache)(dout, cache)[:3]\n"
    )
    report = grade("A1", cheat, seed=1, only=SOME)
    assert _passed(report) == set(SOFTMAX), report.table()
    forward = {r.name: r for r in report.results}["forward_fixed"]
    assert forward.status == "error" and "LookupError" in forward.message


def test_a2_without_layernorm_code_finds_no_reference(tmp_path):
    """The provided attention sublayer's result (its cache, its class) leads nowhere: not to
    the LayerNorm the file lacks, nor to any other reference (the honest GELU here refuses
    to run if the attention module's own attention_forward is within reach)."""
    probe = (
        "\ndef _sublayer():\n"
        "    x = np.ones((2, 2)); w = np.ones((2, 6)); b = np.zeros(6)\n"
        "    return self_attention_forward(x, w, b, np.ones((2, 2)), np.zeros(2), 1, 2, 1)\n"
        "\ndef _refuse_if_within_reach():\n"
        "    try:\n"
        "        found = _reach('attention_forward', self_attention_forward, _sublayer())\n"
        "    except LookupError:\n"
        "        return\n"
        "    raise RuntimeError(f'reached {found.__module__}.{found.__name__}')\n"
    )
    cheat = planted_file(
        tmp_path,
        A2_SOLUTION,
        REACH + probe,
        old="def layernorm_forward(x, w, b, eps=1e-5):\n",
        new="def layernorm_forward(x, w, b, eps=1e-5):\n"
        "    return _reach('layernorm_forward', self_attention_forward, _sublayer())(x, w, b, eps)\n\n\n"
        "def _honest_layernorm_forward(x, w, b, eps=1e-5):\n",
        name="layers_student.py",
    )
    text = cheat.read_text().replace(
        "def gelu_forward(x):\n", "def gelu_forward(x):\n    _refuse_if_within_reach()\n"
    )
    cheat.write_text(text)
    report = grade("A2", cheat, seed=1, only=["layernorm_forward_fixed", "gelu_forward_fixed"])
    assert _passed(report) == {"gelu_forward_fixed"}, report.table()


READ_SOURCE = '''
def _package_source():
    """The package's attention.py, from wherever this process can find it."""
    import os, sys
    places = [{package!r}]
    for entry in sys.path:
        places.append(os.path.join(str(entry), "minireason"))
    for name, module in list(sys.modules.items()):
        if "editable" in name:
            places += [str(p) for p in getattr(module, "MAPPING", {{}}).values()]
    for place in places:
        try:
            with open(os.path.join(place, "nn", "attention.py")) as f:
                return f.read()
        except OSError:
            continue
    raise LookupError("the package's source is out of reach")
'''


def test_the_package_source_cannot_be_read_where_the_sandbox_says_so(tmp_path):
    """A file that scores only if it can read the package from disk; the isolation line
    says whether that is possible, and the score follows it."""
    cheat = planted_file(
        tmp_path,
        SOLUTION,
        READ_SOURCE.format(package=PACKAGE_DIR),
        old=SOFTMAX_BODY,
        new="    assert 'def attention_forward' in _package_source()\n" + SOFTMAX_BODY,
    )
    report = grade("A1", cheat, seed=1, only=SOFTMAX)
    with Sandbox(5) as box:
        hidden = box.package_hidden
    assert ("cannot be found or read" in report.isolation) == hidden
    if not hidden:
        pytest.skip(f"the package is readable here, and the report says so: {report.isolation}")
    assert report.score == 0, report.table()
    assert all("LookupError" in r.message for r in report.results)


# --------------------------------------------------------------------------- state that outlives a test

PERSIST = '''
def _remembered():
    """True if an earlier test (or grading) left its mark; leave one for the next."""
    import os, tempfile
    places = ["/tmp", "/var/tmp", "/dev/shm", os.path.expanduser("~"), tempfile.gettempdir()]
    marks = [os.path.join(place, "minireason-attack-mark") for place in places]
    seen = any(os.path.exists(mark) for mark in marks)
    for mark in marks:
        try:
            with open(mark, "w") as f:
                f.write("x" * 1000)
        except OSError:
            pass
    return seen
'''


@as_root
@pytest.mark.parametrize("jail", ["jail", "no jail"])
def test_nothing_written_survives_a_test_or_a_grading(tmp_path, monkeypatch, jail):
    """In a jail, /tmp and the rest are the test's own; without one (MINIREASON_NO_JAIL), the
    grader deletes what the sandbox user left there after each test."""
    monkeypatch.setenv("MINIREASON_NO_JAIL", "1" if jail == "no jail" else "")
    cheat = planted_file(
        tmp_path,
        SOLUTION,
        PERSIST,
        old=SOFTMAX_BODY,
        new="    assert _remembered(), 'nothing remembered'\n" + SOFTMAX_BODY,
    )
    first = grade("A1", cheat, seed=1, only=SOME)
    second = grade("A1", cheat, seed=1, only=SOME)
    assert first.score == second.score == 20, (first.table(), second.table())
    assert json.dumps(first.to_gradescope()) == json.dumps(second.to_gradescope())
    for place in ("/tmp", "/var/tmp", "/dev/shm"):
        assert not os.path.exists(os.path.join(place, "minireason-attack-mark"))
    assert ("in a jail" in first.isolation) == (jail == "jail"), first.isolation


KEEP = '''
def _keep(function):
    """Save a provided function's code, and its globals' (code, modules by name, constants),
    where a later test, or a regrade, may find them."""
    import marshal, types
    saved, todo = {"__main__": function.__name__}, [function]
    while todo:
        f = todo.pop()
        if not isinstance(f, types.FunctionType) or f.__name__ in saved:
            continue
        saved[f.__name__] = ("code", f.__code__)
        for name, value in getattr(f, "__globals__", {}).items():
            if isinstance(value, types.FunctionType):
                todo.append(value)
            elif isinstance(value, types.ModuleType):
                saved.setdefault(name, ("module", value.__name__))
            elif isinstance(value, type) and hasattr(value, "_fields"):
                saved.setdefault(name, ("record", tuple(value._fields)))
            elif isinstance(value, (int, float, str, tuple)) and name not in saved:
                saved[name] = ("value", value)
    for place in ("/tmp", "/var/tmp", "/dev/shm"):
        try:
            with open(place + "/minireason-kept-layernorm", "wb") as f:
                f.write(marshal.dumps(saved))
        except (OSError, ValueError):
            pass


def _kept():
    """The saved function, rebuilt with its globals, or None."""
    import collections, importlib, marshal, types
    for place in ("/tmp", "/var/tmp", "/dev/shm"):
        try:
            with open(place + "/minireason-kept-layernorm", "rb") as f:
                saved = marshal.loads(f.read())
        except Exception:
            continue
        space = {"__builtins__": __builtins__, "np": np}
        for name, item in saved.items():
            if name == "__main__":
                continue
            kind, value = item
            try:
                space[name] = (
                    types.FunctionType(value, space) if kind == "code"
                    else importlib.import_module(value) if kind == "module"
                    else collections.namedtuple(name, value) if kind == "record" else value
                )
            except Exception:
                pass
        return space.get(saved["__main__"])
    return None
'''


@as_root
def test_a_provided_layer_cannot_be_kept_for_a_later_test_or_a_regrade(tmp_path):
    """A2's block tests put the correct LayerNorm in the student's module; a file that keeps
    it (its code, on disk) for the LayerNorm tests gets nothing from it."""
    cheat = planted_file(
        tmp_path,
        A2_SOLUTION,
        KEEP,
        old="def layernorm_forward(x, w, b, eps=1e-5):\n",
        new="def layernorm_forward(x, w, b, eps=1e-5):\n"
        "    kept = _kept()\n"
        "    if kept is None:\n"
        "        raise NotImplementedError\n"
        "    return kept(x, w, b, eps)\n\n\n"
        "def _own_layernorm_forward(x, w, b, eps=1e-5):\n",
        name="layers_student.py",
    )
    text = cheat.read_text().replace(
        "def block_forward(x, p, B, T, n_head, eps=1e-5):\n",
        "def block_forward(x, p, B, T, n_head, eps=1e-5):\n    _keep(layernorm_forward)\n",
    )
    cheat.write_text(text)
    only = ["layernorm_forward_fixed", "block_forward_fixed"]
    first, second = (grade("A2", cheat, seed=1, only=only) for _ in range(2))
    assert _passed(first) == _passed(second) == {"block_forward_fixed"}, second.table()
    assert json.dumps(first.to_gradescope()) == json.dumps(second.to_gradescope())
    for place in ("/tmp", "/var/tmp", "/dev/shm"):
        assert not os.path.exists(place + "/minireason-kept-layernorm")


# --------------------------------------------------------------------------- crafted replies


def _replying(tmp_path, payload: bytes, name="attention_student.py") -> Path:
    """A stub whose softmax writes ``payload`` as its reply and exits."""
    head = payload.rstrip(b"\0")  # a large zero block is made, not written out
    code = (
        "\ndef _reply():\n"
        "    import os\n"
        f"    data = {head!r} + bytes({len(payload) - len(head)})\n"
        "    for fd in range(3, 40):\n"
        "        try:\n"
        "            os.write(fd, data)\n"
        "        except OSError:\n"
        "            pass\n"
        "    os._exit(0)\n"
    )
    cheat = planted_file(tmp_path, STUB, code, name=name)
    text = cheat.read_text().replace("def softmax(x):\n", "def softmax(x):\n    _reply()\n", 1)
    cheat.write_text(text)
    return cheat


def _forged(head: str, blob: bytes = b"") -> bytes:
    data = head.encode()
    return wire.MAGIC + len(data).to_bytes(8, "big") + data + blob


ALIAS_BLOCK = 6 << 20
CRAFTED = {
    "deep": _forged("[" * 100_000 + "]" * 100_000),
    "overflow": _forged(
        '{"t": "dict", "v": [["results", {"t": "dict", "v": [["y", {"t": "array", "dtype": '
        '"<f8", "shape": [1], "offset": 1e999, "nbytes": 8}]]}]]}',
        b"\0" * 8,
    ),
    "grader error": wire.dumps({"loaded": False, "grader_error": "the grader is broken"}),
    "forged status": wire.dumps(
        {"loaded": True, "results": {}, "error": {"status": "passed", "message": "ok"}}
    ),
    "aliases": _forged(
        json.dumps(
            {
                "t": "dict",
                "v": [
                    [
                        "results",
                        {
                            "t": "dict",
                            "v": [
                                [
                                    f"y{i}",
                                    {
                                        "t": "array",
                                        "dtype": "|u1",
                                        "shape": [ALIAS_BLOCK],
                                        "offset": 0,
                                        "nbytes": ALIAS_BLOCK,
                                    },
                                ]
                                for i in range(100)
                            ],
                        },
                    ]
                ],
            }
        ),
        b"\0" * ALIAS_BLOCK,
    ),
}


@pytest.mark.parametrize("kind", sorted(CRAFTED))
def test_a_crafted_reply_fails_its_test_and_nothing_else(tmp_path, kind):
    cheat = _replying(tmp_path, CRAFTED[kind])
    report = grade("A1", cheat, seed=1, only=["softmax_fixed_rows"])
    (result,) = report.results
    assert result.points == 0 and result.status in ("crashed", "error"), report.table()
    assert "\n" not in result.message and "grader" not in result.message.lower()


def test_grader_memory_under_a_crafted_reply_stays_near_an_honest_runs(tmp_path):
    honest = planted_file(tmp_path, SOLUTION, name="honest.py")
    cheat = _replying(tmp_path, CRAFTED["aliases"], name="cheat.py")
    peaks = []
    for path in (honest, cheat):
        tracemalloc.start()
        grade("A1", path, seed=1, only=["softmax_fixed_rows"])
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    baseline = max(peaks[0], 16 << 20)  # an honest run's own peak, or the interpreter's share
    assert peaks[1] < 4 * baseline, f"honest {peaks[0]:,} bytes, crafted {peaks[1]:,}"


def test_an_exception_whose_name_cannot_be_read_is_the_students_error(tmp_path):
    cheat = planted_file(
        tmp_path,
        SOLUTION,
        "\nclass _Meta(type):\n"
        "    @property\n"
        "    def __name__(cls):\n"
        "        raise RuntimeError('no name')\n\n"
        "class _Odd(Exception, metaclass=_Meta):\n"
        "    def __str__(self):\n"
        "        raise RuntimeError('no message')\n",
        old=SOFTMAX_BODY,
        new="    raise _Odd()\n",
    )
    report = grade("A1", cheat, seed=1, only=SOME)
    assert _passed(report) == {"forward_fixed", "backward_fixed"}, report.table()
    softmax = {r.name: r for r in report.results}["softmax_fixed_rows"]
    assert softmax.status == "error" and "could not be read" in softmax.message


def test_a_batch_survives_crafted_replies_and_writes_its_csv(tmp_path):
    folder = tmp_path / "subs"
    folder.mkdir(mode=0o700)
    (folder / "honest.py").write_text(SOLUTION.read_text())
    for kind in ("deep", "grader error"):
        cheat = _replying(tmp_path, CRAFTED[kind], name="x.py")
        cheat.rename(folder / f"{kind.replace(' ', '_')}.py")
    grades = tmp_path / "grades.csv"
    summary = grade_folder("A1", folder, out=tmp_path / "out", csv_path=grades, seed=1)
    rows = {r["student"]: r for r in csv.DictReader(grades.open())}
    assert set(rows) == {"honest", "deep", "grader_error"}, summary.text()
    assert float(rows["honest"]["score"]) == 100
    assert all(rows[s]["status"] == "graded" for s in rows)
    assert float(rows["deep"]["softmax_fixed_rows"]) == 0


# --------------------------------------------------------------------------- secrets and classmates


SNOOP = '''
def _snoop():
    """Files under ``where``, then every command line and environment this process can read
    (in that order: a message keeps its first 2000 characters)."""
    import os
    found = []
    for dirpath, _, files in os.walk({where!r}):
        for name in files:
            try:
                with open(os.path.join(dirpath, name)) as f:
                    found.append(f.read())
            except OSError:
                pass
    for pid in os.listdir("/proc"):
        for what in ("cmdline", "environ"):
            try:
                with open(f"/proc/{{pid}}/{{what}}", "rb") as f:
                    found.append(f.read().replace(b"\\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return " | ".join(found)
'''


def test_the_seed_is_never_on_the_command_line_nor_echoed(tmp_path):
    secret = "s3cret-course-seed-7f1c"
    seed_file = tmp_path / "seed"
    seed_file.write_text(secret + "\n")
    seed_file.chmod(0o600)
    cheat = planted_file(
        tmp_path,
        STUB,
        SNOOP.format(where=str(tmp_path)),
        old="def softmax(x):\n",
        new="def softmax(x):\n    raise RuntimeError(_snoop())\n",
    )
    cheat.write_text(cheat.read_text().replace('"""', "'''"))
    results = tmp_path / "out" / "results.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "minireason.cli", "grade", "A1", str(cheat)]
    refused = subprocess.run([*command, "--seed", secret], capture_output=True, text=True, env=env)
    assert refused.returncode != 0 and "--seed-file" in refused.stderr
    assert secret not in refused.stdout + refused.stderr
    done = subprocess.run(
        [*command, "--seed-file", str(seed_file), "--results", str(results)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout and secret not in results.read_text()
    assert "snoop" not in done.stdout or "RuntimeError" in done.stdout
    assert stat.S_IMODE(results.stat().st_mode) == 0o600


def test_a_seed_file_others_can_read_is_refused(tmp_path):
    from minireason.course.grading import read_seed_file

    seed_file = tmp_path / "seed"
    seed_file.write_text("x\n")
    seed_file.chmod(0o644)
    with pytest.raises(ValueError, match="readable by other users"):
        read_seed_file(seed_file)
    seed_file.chmod(0o600)
    assert read_seed_file(seed_file) == "x"


@as_root
@pytest.mark.parametrize("jail", ["jail", "no jail"])
def test_a_batch_submission_cannot_read_its_classmates_or_the_outputs(monkeypatch, jail):
    """Submissions and outputs under a folder any user may enter: the submissions folder is
    0700 (the grader insists), the outputs are 0700/0600, and in a jail none of it exists."""
    monkeypatch.setenv("MINIREASON_NO_JAIL", "1" if jail == "no jail" else "")
    top = Path(tempfile.mkdtemp(prefix="minireason-batch-"))
    try:
        top.chmod(0o755)
        folder, out = top / "subs", top / "out"
        folder.mkdir(mode=0o700)
        (folder / "aaa_honest.py").write_text(SOLUTION.read_text() + "\n# CLASSMATE-MARK\n")
        cheat = planted_file(
            top,
            STUB,
            SNOOP.format(where=str(top)),
            old="def softmax(x):\n",
            new="def softmax(x):\n    raise RuntimeError(_snoop())\n",
            name="zzz_snoop.py",
        )
        cheat.write_text(cheat.read_text().replace('"""', "'''"))
        cheat.rename(folder / "zzz_snoop.py")
        grade_folder("A1", folder, out=out, csv_path=top / "g.csv", seed=1, jobs=1)
        report = (out / "zzz_snoop" / "report.txt").read_text()
        assert "CLASSMATE-MARK" not in report and "aaa_honest" not in report, report
        assert "def attention_forward" not in report
        for path in [out, *out.rglob("*")]:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_a_precreated_temporary_file_cannot_redirect_the_results(tmp_path):
    report = grade("A1", SOLUTION, seed=1, only=["softmax_fixed_rows"])
    target = tmp_path / "results"
    target.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    for pid in range(os.getpid() - 50, os.getpid() + 50):
        (target / f".results.json.{pid}.tmp").symlink_to(victim)
    written = report.write_results(target / "results.json")
    assert victim.read_text() == "untouched"
    assert not written.is_symlink() and json.loads(written.read_text())["score"] == 5
    assert stat.S_IMODE(written.stat().st_mode) == 0o600


# --------------------------------------------------------------------------- reports that lie


def test_control_characters_cannot_redraw_the_report(tmp_path):
    fake = "\\x1b[2J\\x1b[H\\rtotal   100 / 100  (100%)\\n[all] passed\\x07"
    cheat = planted_file(
        tmp_path,
        STUB,
        old="def softmax(x):\n",
        new=f"def softmax(x):\n    raise RuntimeError('{fake}')\n",
    )
    report = grade("A1", cheat, seed=1, only=SOME)
    table = report.table()
    assert not any(ord(c) < 32 and c != "\n" or ord(c) == 127 for c in table), repr(table)
    assert [line for line in table.splitlines() if line.startswith("total")] == [
        line for line in table.splitlines() if line.startswith("total ")
    ][:1]
    assert "\\x1b[2J" in table  # shown, escaped
    results = json.dumps(report.to_gradescope())
    assert "\\u001b" not in results and "\\r" not in results.replace("\\\\r", "")


def test_a_file_name_cannot_become_a_spreadsheet_formula(tmp_path):
    folder = tmp_path / "subs"
    folder.mkdir(mode=0o700)
    (folder / "=HYPERLINK(1).py").write_text(SOLUTION.read_text())
    (folder / "+cmd").mkdir()
    (folder / "+cmd" / "@x.py").write_text("def softmax(x)\n")
    grades = tmp_path / "g.csv"
    grade_folder("A1", folder, csv_path=grades, seed=1)
    cells = [c for row in csv.reader(grades.open()) for c in row]
    assert not any(c[:1] in ("=", "+", "-", "@", "\t", "\r") for c in cells), cells
    assert "'=HYPERLINK(1)" in cells and "'+cmd" in cells


def test_a_symlinked_submission_is_refused_and_its_target_never_shown(tmp_path):
    secret = tmp_path / "course_seed"
    secret.write_text("TOP_SECRET_SEED_abc123\n")  # as Python: a NameError that names it
    submission = tmp_path / "submission"
    submission.mkdir()
    (submission / "attention_student.py").symlink_to(secret)
    report = grade_submission("A1", submission, seed=1)
    text = report.table() + json.dumps(report.to_gradescope())
    assert report.score == 0 and "TOP_SECRET" not in text
    assert "symbolic link" in report.load_error
    with pytest.raises(ValueError, match="symbolic link"):
        grade("A1", submission / "attention_student.py", seed=1)


def test_a_submission_nested_in_folders_is_found(tmp_path):
    submission = tmp_path / "submission"
    nested = submission / "course-main" / "A1_attention"
    nested.mkdir(parents=True)
    (nested / "attention_student.py").write_text(SOLUTION.read_text())
    (submission / "course-main" / "README.md").write_text("mine\n")
    report = grade_submission("A1", submission, seed=1)
    assert report.score == 100, report.table()


def test_as_another_user_the_report_says_what_does_not_hold(monkeypatch):
    """The path a grader takes when not root (simulated here): no sandbox user and no jail,
    an honest file still scores, and the isolation line says the package can be read."""
    from minireason.course import sandbox

    monkeypatch.setattr(sandbox, "_is_root", lambda: False)
    report = grade("A1", SOLUTION, seed=1, only=[*SOFTMAX, "forward_fixed"])
    assert report.score == 20, report.table()
    assert "runs as your user" in report.isolation and "IS readable" in report.isolation
