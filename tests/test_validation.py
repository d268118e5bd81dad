"""Issue 31, validation: each defect an outside tester found, as the case that showed it.

Files a command reads are checked as a whole (one line naming the file and the field);
presets that cannot train are refused before the first step; text from data is inert on
the terminal; a CSV field may hold line breaks; network and cluster calls time out naming
the address. The broad, generated cases are in ``test_fuzz.py``.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from test_bad_input import one_line

from minireason.cli import main
from minireason.data.accounting import LoadReport
from minireason.data.generic import load_generic
from minireason.files import field_problem
from minireason.nn.checkpoint import CheckpointError, load_checkpoint
from minireason.nn.model import GPTConfig, training_bytes
from minireason.prep.prepared import load_prepared
from minireason.text import _is_control, inert
from minireason.train.loop import TrainConfig
from minireason.train.recipe import check_memory, load_preset

# --------------------------------------------------------------------------- schemas


def test_field_problem_names_the_field_by_its_path():
    schema = {"step": "count", "optimizer": ("null", {"t": "count"}), "rows?": ["point"]}
    assert field_problem({"step": 3, "optimizer": None}, schema) is None
    assert "'step' must be a non-negative integer, got Infinity" in field_problem(
        {"step": float("inf"), "optimizer": None}, schema
    )
    assert field_problem({"step": 1, "optimizer": {}}, schema) == "lacks the field 'optimizer.t'"
    assert "'optimizer' must be null or an object, got a list of 0" in field_problem(
        {"step": 1, "optimizer": []}, schema
    )
    assert "'rows[1]'" in field_problem(
        {"step": 1, "optimizer": None, "rows": [[1, 2], [1]]}, schema
    )
    assert "'files.a.bytes'" in field_problem(
        {"files": {"a": {"bytes": -1}}}, {"files": {"*": {"bytes": "count"}}}
    )


def _corrupt_checkpoint(run: Path, tmp_path: Path, change) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    path = copy / "finetune" / "checkpoint.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))
    return copy


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda m: m.pop("step"), "'step'"),
        (lambda m: m.update(step=float("inf")), "'step'"),
        (lambda m: m.update(model_config=[]), "'model_config'"),
        (lambda m: m.update(optimizer=[]), "'optimizer'"),
        (lambda m: m["optimizer"].pop("t"), "'optimizer.t'"),
        (lambda m: m.update(rng_state=[]), "'rng_state'"),
        (lambda m: m.update(rng_state={"bit_generator": "MT19937"}), "rng_state"),
        (lambda m: m.update(extra=[]), "'extra'"),
        (lambda m: m["extra"].update(train_config=[]), "'extra.train_config'"),
        (lambda m: m["model_config"].update(n_layer=2**60), "asks for 1152921504606846976 layers"),
    ],
)
def test_a_corrupt_checkpoint_field_is_one_line_naming_it(
    micro_run, tmp_path, capsys, change, field
):
    """Were tracebacks: OverflowError (infinite step), TypeError, KeyError, AttributeError."""
    prepared, run = micro_run
    copy = _corrupt_checkpoint(run, tmp_path, change)
    with pytest.raises(CheckpointError, match="checkpoint.json") as err:
        load_checkpoint(copy / "finetune")
    assert field in str(err.value)
    assert main(["explain", "--run", str(copy), "--history", "B00TEST", "--tags", "strings"]) == 1
    one_line(capsys, "checkpoint.json", field)


def test_a_prepared_manifest_with_missing_fields_is_one_line(micro_prepared, tmp_path):
    copy = tmp_path / "prep"
    shutil.copytree(micro_prepared, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["files"]["config.json"]["sha256"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"manifest.json: .*'files.config.json.sha256'"):
        load_prepared(copy)
    del manifest["content"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="lacks the field 'content'"):
        load_prepared(copy)


def test_a_malformed_explain_all_manifest_is_one_line(tmp_path):
    from minireason.reason import catalogue

    out = tmp_path / "cat"
    out.mkdir()
    manifest = {
        "format": catalogue.FORMAT,
        "format_version": catalogue.FORMAT_VERSION,
        "inputs": {"prepared": {"path": "p", "content": "c"}, "run": {"path": "r", "content": "c"}},
        "settings": {"users": {"sha256": "x"}, "decoding": {}, "score_weights": {}},
        "chunks": {"0": {"file": "../../etc/passwd"}},
    }
    (out / catalogue.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="'chunks.0.bytes'"):
        catalogue.read_manifest(out)
    entry = {"bytes": 1, "sha256": "0" * 64, "rows": 0, "cold_start": 0, "failures": []}
    manifest["chunks"] = {"0": {"file": "../../etc/passwd", **entry}}
    (out / catalogue.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="not a chunk of this output"):
        catalogue.read_manifest(out)


# --------------------------------------------------------------------------- presets


def test_evaluation_with_zero_iterations_is_refused():
    """Was: 'val loss nan', printed and recorded."""
    with pytest.raises(ValueError, match="eval_iters must be >= 1 when eval_interval"):
        TrainConfig(eval_interval=10, eval_iters=0)
    assert TrainConfig(eval_interval=0, eval_iters=0).eval_iters == 0  # no validation at all


def test_a_layernorm_epsilon_that_is_zero_in_the_dtype_is_refused():
    with pytest.raises(ValueError, match="layernorm_eps"):
        GPTConfig(layernorm_eps=0)
    with pytest.raises(ValueError, match="is 0 in float32"):
        GPTConfig(layernorm_eps=1e-50)
    assert GPTConfig(layernorm_eps=1e-50, dtype="float64").layernorm_eps == 1e-50


def test_a_preset_that_needs_terabytes_is_refused_before_allocating(micro_preset_file):
    preset = load_preset(micro_preset_file, ["pretrain.batch_size=100000000"])
    config = GPTConfig(vocab_size=400, **preset["model"])
    assert training_bytes(config, 10**8, 32) > 2**40
    with pytest.raises(ValueError, match=r"a pretrain step needs at least .* GiB.*batch_size"):
        check_memory(preset, config, context=64, available=8 * 2**30)
    small = load_preset(micro_preset_file)
    check_memory(small, GPTConfig(vocab_size=400, **small["model"]), 64, available=8 * 2**30)


def test_train_with_a_huge_width_or_learning_rate_is_one_line(
    micro_prepared, micro_preset_file, tmp_path, capsys
):
    """Were: NumPy's MemoryError for terabytes, and a RuntimeError traceback for a
    non-finite loss."""
    base = ["train", "--prepared", str(micro_prepared), "--preset", str(micro_preset_file)]
    assert main([*base, "--out", str(tmp_path / "a"), "--set", "model.n_embd=1000000"]) == 1
    one_line(capsys, "needs at least", "GiB", "n_embd")
    assert not (tmp_path / "a").exists()
    assert main([*base, "--out", str(tmp_path / "b"), "--set", "pretrain.learning_rate=1e30"]) == 1
    err = capsys.readouterr().err  # progress lines, then the error's one line
    last = err.splitlines()[-1]
    assert "Traceback" not in err and last.startswith("minireason train: error:"), err
    assert "non-finite loss" in last and "lower pretrain.learning_rate" in last


# --------------------------------------------------------------------------- inert text


def test_inert_escapes_every_control_character_and_keeps_the_rest():
    assert inert("A1\x1b[2J\nminireason: done") == "A1\\x1b[2J\\nminireason: done"
    assert inert("\r\t\x00\x7f\x85\u2028\u202e") == "\\r\\t\\x00\\x7f\\x85\\u2028\\u202e"
    assert inert('café 中文 "quoted" \\ ok') == 'café 中文 "quoted" \\ ok'
    assert inert("a\u00a0b\u3000c") == "a\u00a0b\u3000c"  # spaces other than " " are kept
    assert inert(12) == "12"


def test_inert_returns_printable_text_as_it_is_and_that_shortcut_escapes_nothing_it_should():
    """``inert`` skips its per-character pass for ``str.isprintable()`` text, which holds
    when no code point that is printable is one the pass escapes."""
    everything = map(chr, range(sys.maxunicode + 1))
    assert not [c for c in everything if c.isprintable() and _is_control(c)]
    text = "plain text"
    assert inert(text) is text


def test_ids_and_text_from_data_reach_the_terminal_escaped(micro_run, capsys):
    """Were: a user id could clear the screen or forge an output line (explain, evaluate,
    explain-all's summary and every error line)."""
    prepared, run = micro_run
    hostile = "B00X\x1b[2J\nminireason explain: done"
    argv = ["explain", "--run", str(run), "--history", hostile, "--tags", "strings\x07"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[2j\\nminireason explain: done" in out  # lower-cased, as the focus
    assert "\nminireason explain: done" not in out
    argv = ["explain", "--run", str(run), "--prepared", str(prepared), "--user", hostile]
    assert main(argv) == 1
    err = one_line(capsys, "\\x1b[2J\\n")
    assert "\x1b" not in err


def test_the_evaluate_examples_and_the_explain_all_summary_are_inert():
    from minireason.evaluation.render import examples_markdown
    from minireason.reason.catalogue import CatalogueSummary, format_summary

    row = dict.fromkeys(
        ["record", "user", "item", "feature", "reference", "model", "retrieval", "evidence"],
        "x\x1b]0;title\x07\ny",
    )
    row.update(focus=["f\r"], template="t", prompt_evidence=True)
    text = "\n".join(examples_markdown([row], {"random_seed": 1}))
    assert "\x1b" not in text and "\r" not in text and "\\x1b]0;title\\x07\\ny" in text
    summary = CatalogueSummary(
        out=Path("o"), users_given="list", n_users=1, unknown_users=["u\x1b[1A\rforged"],
        duplicate_users=0, n_chunks=1, chunks_before=0, chunks_now=1, chunk_failures=[],
        n_reasons=0, n_cold_start=0, reasons_now=0, seconds=1.0,
        pair_failures=[{"user": "a\nb", "rank": 1, "item": "i", "error": "e"}],
    )  # fmt: skip
    shown = format_summary(summary)
    assert "\x1b" not in shown and "\r" not in shown and "a\\nb" in shown


def test_a_student_folder_name_is_inert_in_the_grades_csv_and_summary(tmp_path):
    from minireason.course.batch import BatchSummary, StudentGrade, write_csv

    row = StudentGrade("eve\x1b[2J\nbob", "eve.py", 0.0, 10.0, "crashed", {})
    text = write_csv(tmp_path / "grades.csv", [row], []).read_text()
    assert "\x1b" not in text and "eve\\x1b[2J\\nbob" in text
    shown = BatchSummary("A1", [row], 1.0, 1, "none").text()
    assert "\x1b" not in shown and "eve\\x1b[2J\\nbob: crashed" in shown


# --------------------------------------------------------------------------- data readers


def test_a_csv_field_with_line_breaks_is_one_review(tmp_path):
    """Was: a review invented from the continuation line, and the text cut."""
    path = tmp_path / "r.csv"
    path.write_text(
        "user,item,rating,time,text\n"
        'u1,i1,5,1000,"First line\n\nu2 fake,i9,1,1001,second para"\n'
        "u3,i2,4,1002,plain\n"
        'u4,i3,3,1003,"never closed\n'
    )
    report = LoadReport()
    mapping = {"user": "user", "item": "item", "rating": "rating", "time": "time", "text": "text"}
    reviews = list(load_generic(path, "csv", mapping, report))
    assert [(r.user, r.line) for r in reviews] == [("u1", 2), ("u3", 5)]
    assert reviews[0].text == "First line u2 fake,i9,1,1001,second para"
    assert report.to_dict()["files"][0]["skipped"] == {"unclosed quote": 1}


# --------------------------------------------------------------------------- time-outs


def _silent_server():
    """A TCP server that accepts connections and never says anything; (address, stop)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()

    def stop():
        server.close()
        for conn in held:
            conn.close()

    return server.getsockname(), stop


def test_a_scheduler_address_that_is_not_dask_times_out_naming_it():
    """Was: explain-all --scheduler hung until killed."""
    distributed = pytest.importorskip("distributed")
    from minireason.reason.catalogue import _connect

    (host, port), stop = _silent_server()
    address = f"tcp://{host}:{port}"
    try:
        started = time.monotonic()
        with pytest.raises(OSError, match=f"--scheduler {address}: no Dask scheduler answered"):
            _connect(distributed, address, timeout=1.0)
        assert time.monotonic() - started < 10
    finally:
        stop()


def test_a_worker_that_dies_as_the_cluster_starts_is_one_line(monkeypatch):
    """Was: Dask's RuntimeError traceback ('Nanny failed to start') when a local worker
    process was killed as it started."""
    distributed = pytest.importorskip("distributed")
    from minireason.reason import catalogue

    def dies(*args, **kwargs):
        raise RuntimeError("Nanny failed to start.")

    monkeypatch.setattr(distributed, "LocalCluster", dies)
    with pytest.raises(OSError, match="the local cluster did not start: a worker process died"):
        with catalogue._cluster(1, None, None):
            pass


def test_a_silent_data_server_times_out_naming_the_url(tmp_path):
    from minireason.data.fetch import FetchError, RemoteFile, download

    (host, port), stop = _silent_server()
    url = f"http://{host}:{port}/reviews.json.gz"
    try:
        with pytest.raises(FetchError, match=f"{url}: silent for 0.5 s"):
            download(RemoteFile(url, "r.gz", 10, None), tmp_path / "r.gz", 0.5, progress=False)
    finally:
        stop()
