"""Hostile submissions: each attack fails, the grader finishes, the score is what the honest
part of the file earns, and the results file is the grader's own.

Every attack is the A1 reference solution (or stub) with lines added or replaced. The attacks
that need the sandbox user (signalling the grader, a daemon that outlives it) run only as
root, which is how CI and Gradescope run the grader; elsewhere they skip and say so.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import pytest
from conftest import planted_file, seed_file

from minireason.cli import main
from minireason.course import wire
from minireason.course.assignments import a1, a2
from minireason.course.grading import grade

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "tests" / "fixtures" / "a1_solution.py"
STUB = ROOT / a1.STUDENT_FILE
POINTS = {t.name: t.points for t in a1.TESTS}
SOFTMAX = ["softmax_fixed_rows", "softmax_large_values"]
FORWARD = ["forward_fixed"]
BACKWARD = ["backward_fixed"]
SOME = SOFTMAX + FORWARD + BACKWARD  # 30 points, enough to see what each attack costs
as_root = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="needs root: only then does student code run as a sandbox user that cannot "
    "signal the grader or leave a process behind",
)


_file = functools.partial(planted_file, name="attention_student.py")


def _score(report, names) -> float:
    return sum(POINTS[n] for n in names)


def _passed(report) -> set[str]:
    return {r.name for r in report.results if r.status == "passed"}


BACKWARD_BODY = "    q, k, v, weights, scale = cache\n"


def test_importing_the_reference_at_the_top_loads_nothing(tmp_path):
    cheat = _file(
        tmp_path,
        STUB,
        "from minireason.nn.attention import attention_backward, attention_forward\n"
        "from minireason.nn.attention import masked_softmax as softmax\n",
    )
    report = grade("A1", cheat, seed=1, only=SOME)
    assert report.score == 0
    assert "cannot be imported while grading" in report.load_error
    assert any("line 14: imports minireason.nn.attention" in n for n in report.notes)


def test_a2_stub_cannot_import_more_than_the_attention_sublayer(tmp_path):
    stub = ROOT / a2.STUDENT_FILE
    cheat = tmp_path / stub.name
    names = ", ".join(a2.STUDENT_API)
    cheat.write_text(stub.read_text() + f"\nfrom minireason.nn.layers import {names}\n")
    report = grade("A2", cheat, seed=1, only=["layernorm_forward_fixed", "gelu_forward_fixed"])
    assert report.score == 0, report.table()
    assert "cannot import name 'layernorm_forward'" in report.load_error
    assert any("provides only self_attention_forward" in n for n in report.notes)


def test_what_the_grader_loads_for_a2s_stand_in_stays_out_of_reach(tmp_path):
    solution = (ROOT / "tests" / "fixtures" / "a2_solution.py").read_text()
    only = ["block_forward_fixed"]  # runs the attention stand-in, products and all
    honest = tmp_path / "honest" / "layers_student.py"
    honest.parent.mkdir()
    honest.write_text(solution)
    assert _passed(grade("A2", honest, seed=1, only=only)) == set(only)
    cheat = tmp_path / "layers_student.py"
    cheat.write_text("import threadpoolctl\n" + solution)
    report = grade("A2", cheat, seed=1, only=only)
    assert report.score == 0, report.table()
    assert "threadpoolctl cannot be imported while grading" in report.load_error


def test_delegating_inside_one_function_costs_that_function_only(tmp_path):
    cheat = _file(
        tmp_path,
        SOLUTION,
        old=BACKWARD_BODY,
        new="    from minireason.nn import attention\n"
        "    return attention.attention_backward(dout, cache)[:3]\n",
    )
    report = grade("A1", cheat, seed=2, only=SOME)
    assert _passed(report) == set(SOFTMAX + FORWARD), report.table()
    (backward,) = [r for r in report.results if r.name in BACKWARD]
    assert backward.status == "error" and "cannot be imported while grading" in backward.message


def test_the_reference_cannot_be_found_in_memory(tmp_path):
    """sys.modules, the garbage collector and the provided softmax's globals: no way back to
    the package's attention_forward in the child."""
    search = """
def _find_reference():
    import gc, sys
    for m in list(sys.modules.values()):
        f = getattr(m, "attention_forward", None)
        if f is not None and getattr(f, "__module__", "").startswith("minireason"):
            return f
    found = softmax.__globals__.get("attention_forward")
    if found is not None:
        return found
    for obj in gc.get_objects():
        if callable(obj) and getattr(obj, "__module__", "") == "minireason.nn.attention" and getattr(obj, "__name__", "") == "attention_forward":
            return obj
    raise LookupError("no reference attention_forward in this process")
"""
    cheat = _file(
        tmp_path,
        SOLUTION,
        search,
        old="    scale = 1.0 / np.sqrt(q.shape[-1])\n",
        new="    out, cache = _find_reference()(q, k, v, is_causal=is_causal)\n"
        "    return out, (q, k, v, cache.weights, cache.scale)\n",
    )
    report = grade("A1", cheat, seed=3, only=SOME)
    assert _passed(report) == set(SOFTMAX), report.table()
    forward = {r.name: r for r in report.results}["forward_fixed"]
    assert forward.status == "error" and "LookupError" in forward.message


CLAIM = wire.dumps(  # a well-formed reply that claims every verdict it can
    {
        "loaded": True,
        "defined": list(a1.STUDENT_API),
        "results": {},
        "error": {"status": "passed", "message": "all good"},
        "status": "passed",
        "score": 100,
    }
)
FORGED = (
    "\nimport json as _json, os as _os\n"
    f"_payload = {CLAIM!r}\n"
    "for _fd in range(3, 30):\n"
    "    try:\n"
    "        _os.write(_fd, _payload)\n"
    "    except OSError:\n"
    "        pass\n"
    "open('verdict.json', 'w').write(_json.dumps({'status': 'passed', 'message': 'ok'}))\n"
    "_os._exit(0)\n"
)


def test_a_forged_verdict_scores_nothing(tmp_path):
    cheat = _file(tmp_path, STUB, FORGED)
    report = grade("A1", cheat, seed=4, only=SOME)
    assert report.score == 0, report.table()
    assert {r.status for r in report.results} == {"not run"}  # its claim is not a verdict
    assert "unreadable data" in report.load_error


def test_patching_numpy_and_the_grader_changes_nothing(tmp_path):
    patches = (
        "import builtins, sys\n"
        "np.allclose = lambda *a, **k: True\n"
        "np.isfinite = lambda x: np.ones(np.shape(x), dtype=bool)\n"
        "np.testing.assert_allclose = lambda *a, **k: None\n"
        "builtins.AssertionError = type('Never', (BaseException,), {})\n"
        "for _name in ('minireason.course.grading', 'minireason.course.runner'):\n"
        "    try:\n"
        "        _g = __import__(_name, fromlist=['x'])\n"
        "        _g.expect_array = lambda *a, **k: None\n"
        "    except ImportError:\n"
        "        pass\n"
        "_m = sys.modules.get('minireason.course.grading')\n"
        "if _m is not None:\n"
        "    _m.expect_array = lambda *a, **k: None\n"
    )
    cheat = _file(
        tmp_path,
        SOLUTION,
        patches,
        old="    return e / e.sum(axis=-1, keepdims=True)\n",
        new="    return np.zeros_like(x)\n",
    )
    report = grade("A1", cheat, seed=5, only=SOME)
    assert _passed(report) == set(FORWARD + BACKWARD), report.table()  # these use the reference
    softmax = {r.name: r for r in report.results}["softmax_fixed_rows"]
    assert softmax.status == "failed" and "wrong values" in softmax.message


def test_a_memory_bomb_costs_its_tests_only(tmp_path):
    bomb = _file(
        tmp_path,
        SOLUTION,
        old="    shifted = x - x.max(axis=-1, keepdims=True)\n",
        new="    hog = bytearray(8 * 1024**3)\n    shifted = x - x.max(axis=-1, keepdims=True)\n",
    )
    report = grade("A1", bomb, seed=6, only=SOME)
    assert _passed(report) == set(FORWARD + BACKWARD), report.table()
    softmax = {r.name: r for r in report.results}["softmax_fixed_rows"]
    assert softmax.status == "error" and softmax.message.startswith("MemoryError")


def test_a_fork_bomb_costs_its_tests_only(tmp_path):
    bomb = _file(
        tmp_path,
        SOLUTION,
        old="    shifted = x - x.max(axis=-1, keepdims=True)\n",
        new="    import os\n    while True:\n        os.fork()\n",
    )
    report = grade("A1", bomb, seed=7, only=SOME, timeout=5)
    assert _passed(report) == set(FORWARD + BACKWARD), report.table()
    assert {r.points for r in report.results if r.name in SOFTMAX} == {0.0}


def test_100_mb_of_output_is_counted_not_kept(tmp_path):
    loud = _file(
        tmp_path,
        SOLUTION,
        old="    shifted = x - x.max(axis=-1, keepdims=True)\n",
        new="    import sys\n    for _ in range(100):\n        sys.stdout.write('x' * 1_000_000)\n"
        "    shifted = x - x.max(axis=-1, keepdims=True)\n",
    )
    results = tmp_path / "results.json"
    report = grade("A1", loud, seed=8, only=SOFTMAX + FORWARD, timeout=30)
    report.write_results(results)
    assert _passed(report) == set(SOFTMAX + FORWARD), report.table()  # honest, only loud
    softmax = {r.name: r for r in report.results}["softmax_fixed_rows"]
    assert "printed 100,000,000 bytes" in softmax.message
    assert results.stat().st_size < 100_000


def test_writing_a_huge_file_is_stopped(tmp_path):
    writer = _file(
        tmp_path,
        SOLUTION,
        old="    shifted = x - x.max(axis=-1, keepdims=True)\n",
        new="    with open('big.bin', 'wb') as f:\n        f.write(bytes(100_000_000))\n"
        "    shifted = x - x.max(axis=-1, keepdims=True)\n",
    )
    report = grade("A1", writer, seed=9, only=SOFTMAX + FORWARD)
    assert _passed(report) == set(FORWARD), report.table()
    softmax = {r.name: r for r in report.results}["softmax_fixed_rows"]
    assert softmax.status in ("crashed", "error")
    assert "larger than 16 MB" in softmax.message or "File too large" in softmax.message


@as_root
def test_killing_the_grader_fails(tmp_path):
    killer = _file(
        tmp_path,
        SOLUTION,
        old="    shifted = x - x.max(axis=-1, keepdims=True)\n",
        new="    import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)\n"
        "    os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)\n"
        "    shifted = x - x.max(axis=-1, keepdims=True)\n",
    )
    report = grade("A1", killer, seed=10, only=SOME)  # this process survives to look
    assert _passed(report) == set(FORWARD + BACKWARD), report.table()
    softmax = {r.name: r for r in report.results}["softmax_fixed_rows"]
    assert softmax.status == "error" and "PermissionError" in softmax.message


@as_root
def test_no_process_outlives_the_grader_to_rewrite_the_results(tmp_path):
    daemon = (
        "import os as _os, time as _time, json as _json, glob as _glob\n"
        "try:\n"
        "    if _os.fork() == 0:\n"
        "        _os.setsid()\n"
        "        _time.sleep(2)\n"
        "        for _p in _glob.glob('/tmp/**/results.json', recursive=True):\n"
        "            try:\n"
        "                open(_p, 'w').write(_json.dumps({'score': 100, 'tests': []}))\n"
        "            except OSError:\n"
        "                pass\n"
        "        _os._exit(0)\n"
        "except OSError:\n"
        "    pass\n"
    )
    cheat = _file(
        tmp_path, SOLUTION, daemon, old=BACKWARD_BODY, new="    raise RuntimeError('no')\n"
    )
    results = tmp_path / "out" / "results.json"
    assert (
        main(
            [
                "grade",
                "A1",
                str(cheat),
                "--results",
                str(results),
                "--seed-file",
                seed_file(tmp_path, "11"),
            ]
        )
        == 0
    )
    time.sleep(3)  # longer than the daemon would wait
    data = json.loads(results.read_text())
    backward = {"backward_fixed", "backward_dq_random", "backward_dk_random", "backward_dv_random"}
    assert data["score"] == 100 - sum(POINTS[n] for n in backward)
    assert len(data["tests"]) == len(a1.TESTS)


@as_root
def test_a_file_named_like_a_module_never_runs_as_root(tmp_path):
    """The child starts as root to load the grader's side; a submission called numpy.py or
    minireason.py must not be what it imports. Each file refuses to load as root, so a full
    score says it ran, and only as the sandbox user."""
    for name in ("numpy.py", "minireason.py", "sitecustomize.py"):
        path = tmp_path / name
        path.write_text(
            "import os\n"
            "if os.getuid() == 0:\n"
            "    raise SystemExit('ran as root')\n" + SOLUTION.read_text()
        )
        report = grade("A1", path, seed=12, only=SOFTMAX)
        assert report.score == _score(report, SOFTMAX), report.table()
