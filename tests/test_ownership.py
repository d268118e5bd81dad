"""A command replaces or deletes only what it can prove it wrote, and one that refuses
changes nothing: every output path is checked before any work
(:func:`minireason.files.check_output`), and each refusal here leaves the whole tree as it
was (a snapshot of every file's bytes before and after)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from conftest import MICRO_PRESET

from minireason.cli import main
from minireason.files import HTML_PAGE, PNG_FIGURE, check_output, json_kind
from minireason.html_page import render_page, write_page


def snapshot(root: Path) -> dict:
    """Every file and directory under ``root``: its relative path and bytes' SHA-256."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "/"
        for p in sorted(root.rglob("*"))
    }


def refused(capsys, argv, root: Path, *words: str) -> None:
    """``minireason ARGV`` exits 1 with one line holding ``words``, and nothing under
    ``root`` changed."""
    before = snapshot(root)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    assert snapshot(root) == before


# --------------------------------------------------------------------------- prepare --out


def test_prepare_never_replaces_a_directory_holding_its_input(capsys, micro_prepared, tmp_path):
    own = tmp_path / "p"
    shutil.copytree(micro_prepared, own)  # a prepared directory of prepare's own making ...
    shutil.copy(micro_prepared / "train.jsonl", own / "reviews.json")  # ... holding the input
    argv = ["prepare", "--reviews", str(own / "reviews.json"), "--out", str(own)]
    refused(capsys, argv, tmp_path, f"--out {own}: holds an input")


def test_prepare_never_deletes_files_it_did_not_write(capsys, micro_prepared, tmp_path):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "config.json").write_text('{"mine": true}')  # a user's own config.json
    (thesis / "thesis.tex").write_text("\\documentclass{article}")
    reviews = tmp_path / "reviews.json"
    reviews.write_text("")
    refused(
        capsys,
        ["prepare", "--reviews", str(reviews), "--out", str(thesis)],
        tmp_path,
        f"--out {thesis}: a non-empty directory that is not a prepared directory",
    )
    own = tmp_path / "prepared"
    shutil.copytree(micro_prepared, own)
    (own / "notes.txt").write_text("my notes")  # a file its manifest does not list
    refused(capsys, ["prepare", "--reviews", str(reviews), "--out", str(own)], tmp_path, str(own))


# --------------------------------------------------------------------------- train --out


def test_train_never_writes_into_its_prepared_directory(capsys, micro_prepared, tmp_path):
    prepared = tmp_path / "prep"
    shutil.copytree(micro_prepared, prepared)
    refused(
        capsys,
        ["train", "--prepared", str(prepared), "--preset", "tiny", "--out", str(prepared)],
        tmp_path,
        f"--out {prepared}: is an input",
    )
    refused(
        capsys,
        ["train", "--prepared", str(prepared), "--preset", "tiny", "--out", str(tmp_path)],
        tmp_path,
        "holds an input",
    )
    refused(
        capsys,
        ["train", "--prepared", str(prepared), "--preset", "tiny", "--out", str(prepared / "run")],
        tmp_path,
        "lies inside an input",
    )


# --------------------------------------------------------------------------- file flags


def test_explain_html_and_plot_replace_only_their_own_files(capsys, micro_run, tmp_path):
    prepared, run = micro_run
    snapshot_root = prepared.parent  # the prepared directory and the run
    base = ["explain", "--run", str(run), "--prepared", str(prepared), "--user", "A"]
    for flag in ("--html", "--plot"):
        refused(capsys, [*base, flag, str(prepared / "items.json")], snapshot_root, "lies inside")
        refused(capsys, [*base, flag, str(run)], snapshot_root, "is an input")
        refused(capsys, [*base, flag, str(tmp_path)], tmp_path, "is a directory")
        refused(capsys, [*base, flag, str(prepared)], snapshot_root, "is an input")
    thesis = tmp_path / "thesis.html"
    thesis.write_text("<html>my own page</html>")
    refused(capsys, [*base, "--html", str(thesis)], tmp_path, "not an HTML page minireason wrote")


def test_an_html_or_png_of_this_project_may_be_replaced(tmp_path):
    page = write_page(tmp_path / "page.html", render_page("t", {}, ["common.js"]))
    assert check_output(page, "--html", HTML_PAGE) == page
    assert main(["attention-example", "--plot", str(tmp_path / "a.png")]) == 0
    assert main(["attention-example", "--plot", str(tmp_path / "a.png")]) == 0  # its own
    with pytest.raises(ValueError, match="not a PNG figure minireason wrote"):
        check_output(page, "--plot", PNG_FIGURE)


def test_attention_example_plot_refuses_a_directory_or_a_foreign_file(capsys, tmp_path):
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n not ours")
    refused(capsys, ["attention-example", "--plot", str(tmp_path)], tmp_path, "is a directory")
    refused(
        capsys,
        ["attention-example", "--plot", str(tmp_path / "photo.png")],
        tmp_path,
        "not a PNG figure minireason wrote",
    )


def test_benchmark_json_replaces_only_its_own_figures(capsys, micro_prepared, tmp_path):
    mine = tmp_path / "mine.json"
    mine.write_text('{"thesis": "chapter 1"}')
    argv = ["bench", "focus", "--prepared", str(micro_prepared), "--json"]
    refused(capsys, [*argv, str(mine)], tmp_path, "not a benchmark's figures file")
    assert json_kind("minireason-bench", "x").is_ours(mine) is False
    (tmp_path / "kernel_bench.md").write_text("# my notes on kernels")
    argv = ["bench", "kernels", "--out-dir", str(tmp_path)]
    refused(capsys, argv, tmp_path, "not a kernel benchmark table")


def test_grade_outputs_replace_only_their_own_files(capsys, tmp_path):
    stub = tmp_path / "a1.py"
    stub.write_text("")
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    refused(capsys, ["grade", "A1", str(stub), "--results", str(notes)], tmp_path, "results file")
    refused(capsys, ["grade", "A1", str(stub), "--results", str(stub)], tmp_path, "is an input")
    folder = tmp_path / "subs"
    folder.mkdir()
    refused(capsys, ["grade", "A1", str(folder), "--csv", str(notes)], tmp_path, "grades table")
    refused(
        capsys, ["grade", "A1", str(folder), "--out", str(tmp_path)], tmp_path, "holds an input"
    )
    refused(
        capsys, ["grade", "A1", "--gradescope-kit", str(notes)], tmp_path, "not a Gradescope kit"
    )


def test_tune_evaluate_and_explain_all_never_write_over_their_inputs(capsys, micro_run, tmp_path):
    prepared, run = micro_run
    root = prepared.parent
    both = ["--prepared", str(prepared), "--run", str(run)]
    refused(capsys, ["tune", *both, "--out", str(run / "run.json")], root, "is an input")
    refused(capsys, ["evaluate", *both, "--out", str(run)], root, "holds an input")
    refused(capsys, ["evaluate", *both, "--out", str(prepared)], root, "is an input")
    if importlib.util.find_spec("dask") is not None:  # explain-all needs the [scale] extra
        cat = ["explain-all", *both, "--out"]
        refused(capsys, [*cat, str(prepared / "catalogue")], root, "lies inside an input")
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    (evaluation / "evaluation.json").write_text("{}")
    (evaluation / "thesis.tex").write_text("mine")
    refused(capsys, ["evaluate", *both, "--out", str(evaluation)], tmp_path, "not an evaluation")


# --------------------------------------------------------------------------- train: refusals change nothing


def _preset(tmp_path, name, **changes) -> Path:
    preset = json.loads(json.dumps(MICRO_PRESET))
    for key, value in changes.items():
        section, field = key.split("__")
        preset[section][field] = value
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(preset))
    return path


@pytest.fixture()
def finished_run(micro_prepared, tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--prepared", str(micro_prepared), "--out", str(run)]
    assert main([*argv, "--preset", str(_preset(tmp_path, "micro"))]) == 0
    return argv, run


def test_a_refused_train_changes_nothing(capsys, finished_run, tmp_path):
    argv, run = finished_run
    capsys.readouterr()
    wider = _preset(tmp_path, "wider", model__n_embd=64)
    refused(capsys, [*argv, "--preset", str(wider)], run, "already holds a checkpoint")
    refused(capsys, [*argv, "--preset", str(wider), "--resume"], run, "another model")
    other = _preset(tmp_path, "other", finetune__learning_rate=0.5)
    refused(capsys, [*argv, "--preset", str(other), "--resume"], run, "train config differs")


def test_resuming_a_finished_run_writes_nothing(capsys, finished_run, tmp_path):
    argv, run = finished_run
    capsys.readouterr()
    before = snapshot(run)
    assert main([*argv, "--preset", str(tmp_path / "micro.json"), "--resume"]) == 0
    assert "pretrain: already finished" in capsys.readouterr().out
    assert snapshot(run) == before


def test_a_longer_pretraining_after_fine_tuning_is_refused(capsys, finished_run, tmp_path):
    argv, run = finished_run
    capsys.readouterr()
    longer = _preset(tmp_path, "longer", pretrain__max_steps=6)
    refused(capsys, [*argv, "--preset", str(longer), "--resume"], run, "needs a new fine-tuning")
    shorter = _preset(tmp_path, "shorter", finetune__max_steps=2)
    refused(
        capsys, [*argv, "--preset", str(shorter), "--resume"], run, "more than finetune.max_steps"
    )
