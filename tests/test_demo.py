"""``minireason demo``: finds the data, runs every stage, prints reasons and the table."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import MI_REVIEWS, LocalServer

from minireason.data import fetch
from minireason.data.fetch import Dataset, RemoteFile, find_reviews
from minireason.demo import DEMO_EVAL_RECORDS, run_demo
from minireason.evaluation.render import markdown_report


def test_find_reviews_search_order_and_message(mi_slice, tmp_path, monkeypatch):
    monkeypatch.delenv("MINIREASON_DATA_DIR", raising=False)
    monkeypatch.setenv("MINIREASON_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # no ../shared/data from here
    monkeypatch.setattr(fetch, "CHECKOUT_DATA", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="minireason data fetch musical-instruments"):
        find_reviews("musical-instruments")
    monkeypatch.setenv("MINIREASON_DATA_DIR", str(mi_slice))
    assert find_reviews("musical-instruments").is_relative_to(mi_slice)
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "reviews_Musical_Instruments_5.json.gz").write_bytes(b"")
    assert (
        find_reviews("musical-instruments", data_dir=flat)
        == flat / "reviews_Musical_Instruments_5.json.gz"
    )


def test_demo_end_to_end_then_reuse(mi_slice, micro_preset_file, tmp_path, monkeypatch):
    lines = []
    out = tmp_path / "demo"
    result = run_demo(
        data_dir=mi_slice,
        out=out,
        preset=str(micro_preset_file),
        n_users=2,
        n_candidates=2,
        progress=False,
        echo=lines.append,
    )
    text = "\n".join(lines)
    assert "[1/4] data" in text and "reviews: " in text and "skipped by reason" in text
    n_test = result["info"]["n_test_records_with_target"]
    assert n_test < DEMO_EVAL_RECORDS and result["info"]["n_records"] == n_test  # all of them
    assert f"[4/4] evaluation on the first {n_test} of the {n_test} test records" in text
    assert "the whole test split" not in text
    assert text.count("\nuser ") == 2
    assert text.count("reason:    ") == 2 * 3  # top-3 for each user
    assert "| model |" in text and "| retrieval |" in text and "HR@10" in text
    assert set(result["baselines"]) == {"random", "retrieval", "evidence", "template"}
    saved = json.loads((out / "eval" / "evaluation.json").read_text())
    assert saved["model"]["usr"] == result["model"]["usr"]
    assert len(list(out.glob("evidence_*.png"))) == 2
    assert f"(token-level attention, every step-4 candidate): {out / 'report.html'}" in text
    for page in (out / "report.html", out / "eval" / "evaluation.html"):
        assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    # the last two lines: the model against the best baselines, read off this evaluation,
    # and how to get the small model's reasons
    compared, small = lines[-2:]
    best = max(result["baselines"], key=lambda name: result["baselines"][name]["bleu4"])
    bleu4 = (result["model"]["bleu4"], result["baselines"][best]["bleu4"])
    assert compared.startswith("the micro model against the best baseline: BLEU-1 ")
    assert f"BLEU-4 {bleu4[0]:.2f} vs {bleu4[1]:.2f} ({best})" in compared
    assert f"minireason train --prepared {out / 'prepared'} --preset small --out runs" in small
    assert "(22.6 minutes on a 2-core AMD EPYC VM, measured 2026-12-07)" in small

    lines.clear()
    from minireason.evaluation import evaluate

    def no_evaluation(*args, **kwargs):
        raise AssertionError("evaluated again")

    with monkeypatch.context() as m:
        m.setattr(evaluate, "evaluate_run", no_evaluation)
        again = run_demo(
            data_dir=mi_slice,
            out=out,
            preset=str(micro_preset_file),
            n_users=1,
            n_candidates=2,
            progress=False,
            echo=lines.append,
        )
    text = "\n".join(lines)
    assert f"reusing {out / 'prepared'}" in text
    assert f"reusing {out / 'eval'}: made by this run, on this data, with these settings" in text
    assert again == saved and markdown_report(saved) in text
    assert text.count("already finished") == 4  # both training stages: skipped, then reported
    assert f"pretrain: already finished (3 of 3 steps, in {out / 'run' / 'pretrain'})" in text


@pytest.fixture()
def no_local_data(tmp_path, monkeypatch):
    """A machine without the data: no MINIREASON_DATA_DIR, no ../shared/data, an empty cache."""
    monkeypatch.delenv("MINIREASON_DATA_DIR", raising=False)
    monkeypatch.setenv("MINIREASON_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fetch, "CHECKOUT_DATA", tmp_path / "nowhere")
    return tmp_path


def test_demo_downloads_the_data_it_lacks_then_reuses_it(
    mi_slice, micro_preset_file, no_local_data, monkeypatch
):
    payload = (mi_slice / MI_REVIEWS).read_bytes()
    real = fetch.DATASETS["musical-instruments"]
    lines = []
    with LocalServer(payload) as srv:
        remote = RemoteFile(
            srv.url, real.files[0].name, len(payload), hashlib.sha256(payload).hexdigest()
        )
        dataset = Dataset(real.name, real.folder, (remote,), real.citation)
        monkeypatch.setitem(fetch.DATASETS, "musical-instruments", dataset)
        run_demo(
            out=no_local_data / "demo",
            preset=str(micro_preset_file),
            n_users=1,
            n_candidates=2,
            eval_limit=4,
            progress=False,
            echo=lines.append,
        )
    text = "\n".join(lines)
    assert "musical-instruments not found locally" in text and "downloading it into" in text
    cached = no_local_data / "cache" / real.folder / real.files[0].name
    assert cached.read_bytes() == payload and f"reviews: {cached}" in text
    assert srv.ranges == [None]  # one download
    lines.clear()
    run_demo(
        out=no_local_data / "demo",
        preset=str(micro_preset_file),
        n_users=1,
        n_candidates=2,
        eval_limit=4,
        progress=False,
        echo=lines.append,
    )
    assert "downloading" not in "\n".join(lines) and "reusing" in "\n".join(lines)


def test_demo_offline_refuses_to_download(no_local_data):
    with pytest.raises(
        FileNotFoundError, match=r"minireason data fetch .*\(--offline: not downloading\)"
    ):
        run_demo(out=no_local_data / "demo", offline=True, progress=False, echo=lambda _: None)
    assert not (no_local_data / "cache").exists()


def test_demo_after_an_interrupted_training_picks_up_where_it_stopped(
    mi_slice, micro_preset_file, tmp_path
):
    from minireason.nn.checkpoint import load_checkpoint

    out = tmp_path / "demo"
    run_demo(
        data_dir=mi_slice,
        out=out,
        preset=str(micro_preset_file),
        n_users=1,
        n_candidates=2,
        eval_limit=4,
        progress=False,
        echo=lambda _: None,
    )
    # as if Ctrl-C hit during fine-tuning: the fine-tune checkpoint and the report are gone
    for name in ("checkpoint.json", "checkpoint.npz"):
        (out / "run" / "finetune" / name).unlink()
    (out / "run" / "train_report.json").unlink()
    lines = []
    run_demo(
        data_dir=mi_slice,
        out=out,
        preset=str(micro_preset_file),
        n_users=1,
        n_candidates=2,
        eval_limit=4,
        progress=False,
        echo=lines.append,
    )
    text = "\n".join(lines)
    assert "pretrain: already finished" in text and "finetune: trained" in text
    assert f"finetune: no checkpoint in {out / 'run' / 'finetune'}; training from step 0" in text
    assert load_checkpoint(out / "run" / "finetune").step == 3


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--preset", "smal"], "--preset smal: neither a preset name"),
        (["--set", "finetune.learning_rat=1"], "--set finetune.learning_rat=1: unknown finetune"),
        (["--set", "model.n_layer=0"], "--set model.n_layer=0: model: GPTConfig.n_layer"),
        (["--data-dir", "NO-SUCH-DIR"], "--data-dir NO-SUCH-DIR: no such directory"),
        (["--out", "A-FILE"], "--out A-FILE: exists and is not a directory"),
        (["--out", "A-FILE/demo"], "--out A-FILE/demo: A-FILE is not a directory"),
    ],
)
def test_demo_checks_what_it_is_given_before_any_work(argv, message, tmp_path, monkeypatch, capsys):
    from minireason.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "A-FILE").write_text("not a directory")
    argv = [*argv] if "--out" in argv else [*argv, "--out", "demo"]
    assert main(["demo", "--offline", *argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # not even "[1/4] data"
    assert captured.err.count("\n") == 1 and message in captured.err, captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A-FILE"]  # nothing written


@pytest.mark.parametrize(
    "setup,argv,message",
    [
        ("report.html", [], "--out demo/report.html: exists and is not an HTML page"),
        ("evidence_U1.png", [], "--out demo/evidence_U1.png: exists and is not a PNG figure"),
        ("data/notes.txt", ["--out", "data/demo", "--data-dir", "data"], "lies inside an input"),
    ],
)
def test_demo_replaces_only_its_own_page_and_figures(
    setup, argv, message, tmp_path, monkeypatch, capsys
):
    from minireason.cli import main

    monkeypatch.chdir(tmp_path)
    theirs = Path("demo" if not setup.startswith("data") else ".") / setup
    theirs.parent.mkdir(parents=True, exist_ok=True)
    theirs.write_text("the user's own file")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    argv = argv or ["--out", "demo"]
    assert main(["demo", "--offline", *argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    assert message in captured.err, captured.err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written
    assert theirs.read_text() == "the user's own file"


def test_demo_refuses_other_set_values_than_its_run_was_trained_with(
    mi_slice, micro_preset_file, tmp_path
):
    out = tmp_path / "demo"
    common = dict(data_dir=mi_slice, out=out, preset=str(micro_preset_file), progress=False)
    lines = []
    run_demo(
        **common, overrides=("finetune.max_steps=2",), n_users=1, n_candidates=2, eval_limit=4,
        echo=lines.append,
    )  # fmt: skip
    assert "preset --set finetune.max_steps=2 (pretrain" in "\n".join(lines)
    with pytest.raises(ValueError, match=r"^--set: .* was trained with --set finetune.max_steps=2"):
        run_demo(**common, echo=lines.append)


def test_the_comparison_reads_the_evaluation_it_is_given():
    from minireason.demo import comparison

    def scores(bleu1, bleu4, rouge, fmr):
        return {"bleu1": bleu1, "bleu4": bleu4, "rougeL_f": rouge, "fmr": fmr}

    result = {
        "model": scores(20.0, 0.85, 15.0, 0.239),
        "baselines": {
            "retrieval": scores(18.0, 1.54, 16.0, 0.1),
            "evidence": scores(10.0, 0.5, 12.0, 0.311),
        },
    }
    assert comparison(result, "tiny") == (
        "the tiny model against the best baseline: BLEU-1 20.00 vs 18.00 (retrieval), "
        "BLEU-4 0.85 vs 1.54 (retrieval), ROUGE-L 15.00 vs 16.00 (retrieval), "
        "FMR 0.239 vs 0.311 (evidence); ahead on BLEU-1, behind (or level) on BLEU-4, ROUGE-L, "
        "FMR"
    )
    result["model"]["bleu1"] = 1.0
    assert comparison(result, "tiny").endswith("; behind it on all of them")


def test_demo_evaluates_again_with_other_settings_or_another_run(
    mi_slice, micro_preset_file, tmp_path
):
    out = tmp_path / "demo"
    common = dict(data_dir=mi_slice, out=out, preset=str(micro_preset_file), progress=False)
    first = run_demo(**common, n_users=1, n_candidates=2, eval_limit=4, echo=lambda _: None)
    lines = []
    other = run_demo(**common, n_users=1, n_candidates=2, eval_limit=5, echo=lines.append)
    assert f"reusing {out / 'eval'}" not in "\n".join(lines)
    assert (first["info"]["n_records"], other["info"]["n_records"]) == (4, 5)
    n_test = other["info"]["n_test_records_with_target"]
    assert f"[4/4] evaluation on the first 5 of the {n_test} test records" in "\n".join(lines)
    whole = f"the whole test split ({n_test} records): minireason evaluate --prepared "
    assert f"\n{whole}{out / 'prepared'} --run {out / 'run'}" in lines
    lines.clear()
    run_demo(**common, n_users=1, n_candidates=2, eval_limit=5, echo=lines.append)
    assert f"reusing {out / 'eval'}" in "\n".join(lines)
    # the same settings, another run (trained with another seed) in the same place
    shutil.rmtree(out / "run")
    lines.clear()
    run_demo(
        **common, overrides=("model.seed=1",), n_users=1, n_candidates=2, eval_limit=5,
        echo=lines.append,
    )  # fmt: skip
    assert f"reusing {out / 'eval'}" not in "\n".join(lines)
