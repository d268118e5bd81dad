"""Bad input and half-done work: every case gets one line naming the file, field or option,
with the right exit status, and nothing half-done is ever trusted.

Each CLI case asserts the exit status, that stderr is one line (no traceback) naming what
is wrong, and that nothing was written that a later command would trust.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import MI_REVIEWS

from minireason.cli import main
from minireason.prep.prepared import load_prepared

SMALL = ["--vocab-size", "300", "--min-df", "2", "--n-unigrams", "40", "--n-bigrams", "5"]


def one_line(capsys, *needles) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def reviews_file(path: Path, n_users: int = 30, per_user: int = 5, text=None) -> Path:
    """A small, valid Amazon-format review file (gzip)."""
    lines = []
    for u in range(n_users):
        for k in range(per_user):
            body = text or (
                f"The guitar strings and the tuner work well. I used the cable {k} times with "
                "my amp and the pedal, and the strings stay in tune."
            )
            lines.append(
                json.dumps(
                    {
                        "reviewerID": f"U{u:03d}",
                        "asin": f"I{(u + k) % 12:03d}",
                        "overall": 4.0,
                        "unixReviewTime": 1_400_000_000 + 1000 * k + u,
                        "reviewText": body,
                        "summary": "good",
                    }
                )
            )
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def prepare_argv(reviews, out, *extra):
    return ["prepare", "--reviews", str(reviews), "--out", str(out), *SMALL, *extra]


# --------------------------------------------------------------------------- inputs nothing parses


def _garbage_gzip(p):
    p.write_bytes(b"\x1f\x8b" + os.urandom(200))


def _cut_gzip(p):
    lines = [
        json.dumps({"reviewerID": f"u{i}", "reviewText": os.urandom(8).hex()}) for i in range(50)
    ]
    full = gzip.compress("\n".join(lines).encode())
    assert len(full) > 500
    p.write_bytes(full[:100])


INPUTS_THAT_GIVE_NOTHING = {
    "empty file": (lambda p: p.write_bytes(b""), "0 lines read, 0 kept; the file is empty"),
    "plain text named .gz": (
        lambda p: p.write_text("just some words\nand more\n"),
        "2 skipped for bad JSON (first at",
    ),
    "gzip magic then garbage": (_garbage_gzip, "the gzip stream is damaged"),
    "gzip cut after 100 bytes": (_cut_gzip, "the gzip stream is damaged"),
    "a renamed README": (
        lambda p: p.write_text("# minireason\n\nFrom-scratch recommendation reasons.\n"),
        "is it a amazon file (one JSON object a line",
    ),
}


@pytest.mark.parametrize("case", list(INPUTS_THAT_GIVE_NOTHING))
def test_an_input_with_no_review_says_what_happened(tmp_path, capsys, case):
    make, message = INPUTS_THAT_GIVE_NOTHING[case]
    path = tmp_path / "reviews.json.gz"
    make(path)
    assert main(prepare_argv(path, tmp_path / "out")) == 1
    one_line(capsys, "no review could be read", str(path), message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("indent", [None, 2])
def test_a_json_array_is_named_as_such(tmp_path, capsys, indent):
    path = tmp_path / "reviews.json"
    path.write_text(json.dumps([{"reviewerID": "u", "asin": "i", "overall": 5}] * 3, indent=indent))
    assert main(prepare_argv(path, tmp_path / "out")) == 1
    one_line(capsys, f"{path}: this is a JSON array; minireason reads one JSON object a line")


def test_a_kcore_that_removes_everything(tmp_path, capsys):
    path = reviews_file(tmp_path / "r.json.gz")
    assert main(prepare_argv(path, tmp_path / "out", "--kcore", "50")) == 1
    one_line(capsys, "--kcore 50: the filter removed all 150 reviews", "lower --kcore")


def test_no_aspect_at_all(tmp_path, capsys):
    path = reviews_file(tmp_path / "r.json.gz")
    argv = prepare_argv(path, tmp_path / "out")
    argv[argv.index("--n-unigrams") + 1] = "0"
    argv[argv.index("--n-bigrams") + 1] = "0"
    assert main(argv) == 1
    one_line(capsys, "--n-unigrams 0 and --n-bigrams 0 keep no aspect")
    argv = prepare_argv(path, tmp_path / "out")
    argv[argv.index("--min-df") + 1] = "999"
    assert main(argv) == 1
    one_line(capsys, "--min-df 999: no candidate aspect is in that many of the", "lower --min-df")


@pytest.mark.parametrize(
    "flag,value,message",
    [
        ("--max-history", "-1", "argument --max-history: must be >= 1, got -1"),
        ("--prompt-tokens", "1", "argument --prompt-tokens: must be >= 2, got 1"),
        ("--focus", "x", "argument --focus: expected int, got 'x'"),
        ("--vocab-size", "100", "argument --vocab-size: must be >= 263, got 100"),
        ("--context", "2", "argument --context: must be >= 3, got 2"),
    ],
)
def test_bad_options_are_one_line_before_any_work(tmp_path, capsys, flag, value, message):
    assert main(prepare_argv(tmp_path / "absent.gz", tmp_path / "out", flag, value)) == 2
    one_line(capsys, message)


def test_the_api_checks_options_too(tmp_path):
    from minireason.prep.prepare import PrepareConfig, prepare

    with pytest.raises(ValueError, match="--max-history must be >= 1, got -1"):
        prepare(PrepareConfig(reviews="x", out=str(tmp_path / "o"), max_history=-1))
    with pytest.raises(ValueError, match="--vocab-size must be >= 263, got 100"):
        prepare(PrepareConfig(reviews="x", out=str(tmp_path / "o"), vocab_size=100))
    with pytest.raises(ValueError, match="--context must be >= 3, got 2"):
        prepare(PrepareConfig(reviews="x", out=str(tmp_path / "o"), context=2, prompt_tokens=2))
    with pytest.raises(ValueError, match=r"--split must be one of \('time', 'random'\), not 'x'"):
        prepare(PrepareConfig(reviews="x", out=str(tmp_path / "o"), split="x"))


def test_an_out_that_is_a_file_is_refused_before_reading_anything(tmp_path, capsys):
    afile = tmp_path / "taken"
    afile.write_text("keep me")
    assert main(prepare_argv(reviews_file(tmp_path / "r.json.gz"), afile)) == 1
    one_line(capsys, f"--out {afile}: exists and is not a directory")
    assert afile.read_text() == "keep me"


def test_one_huge_review_cannot_dominate_pretraining(tmp_path):
    from minireason.prep.prepare import PrepareConfig, prepare

    path = reviews_file(tmp_path / "r.json.gz")
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    huge = json.loads(lines[0])
    huge["reviewText"] = " ".join(["The strings sound bright and the tuner works."] * 20_000)
    lines[0] = json.dumps(huge)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    cfg = PrepareConfig(
        reviews=str(path),
        out=str(tmp_path / "out"),
        progress=False,
        vocab_size=300,
        min_df=2,
        n_unigrams=40,
        n_bigrams=5,
        max_review_tokens=2000,
    )
    report = prepare(cfg)
    cut = report["sequences"]["pretrain_cut"]
    assert cut["reviews"] == 1 and cut["longest"] > 100_000 and cut["tokens"] > 100_000
    stream = load_prepared(tmp_path / "out").pretrain
    assert stream.size < 2000 + 149 * 60  # the huge review gave at most 2,000 tokens
    assert "reviews cut to 2000 tokens: 1" in (tmp_path / "out" / "report.md").read_text()


# --------------------------------------------------------------------------- prepare is all or nothing


def _prepare_process(reviews, out, **kw):
    argv = [sys.executable, "-m", "minireason.cli", *prepare_argv(reviews, out)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_prepare_killed_at_any_point_leaves_the_old_or_the_new_directory(tmp_path, data_dir):
    from minireason.data.io import write_head

    old_input = reviews_file(tmp_path / "old.json.gz")
    new_input = write_head(data_dir / MI_REVIEWS, tmp_path / "new.json.gz", 600)
    out = tmp_path / "prep"
    assert main(prepare_argv(old_input, out)) == 0
    old_id = load_prepared(out).content
    start = time.perf_counter()
    proc = _prepare_process(new_input, tmp_path / "reference")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    full = time.perf_counter() - start
    new_id = load_prepared(tmp_path / "reference").content
    seen = set()
    for fraction in (0.15, 0.35, 0.55, 0.75, 0.9, 0.97):
        proc = _prepare_process(new_input, out)
        time.sleep(full * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        content = load_prepared(out).content  # always a complete directory ...
        assert content in (old_id, new_id)  # ... the old one or the new one, never a mix
        seen.add(content)
        if content == new_id:  # bring the old one back for the next kill
            assert main(prepare_argv(old_input, out)) == 0
    assert old_id in seen
    assert main(prepare_argv(new_input, out)) == 0  # a later prepare clears what the kills left
    assert load_prepared(out).content == new_id
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".prep")) == []


def _wait_until_flocked(path: Path, timeout: float = 120.0) -> None:
    """Return once some process holds a ``flock`` on ``path`` (read from ``/proc/locks``);
    where that file cannot be read, after a second."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            inode = path.stat().st_ino
            with open("/proc/locks") as fh:
                held = [line.split() for line in fh if " FLOCK " in line]
        except FileNotFoundError:
            time.sleep(0.02)  # the lock file is not there yet
            continue
        except OSError:
            time.sleep(1.0)
            return
        if any(int(f[5].split(":")[-1]) == inode for f in held if len(f) > 5):
            return
        time.sleep(0.02)
    raise AssertionError(f"nothing locked {path} within {timeout} s")


@pytest.mark.slow
def test_two_prepares_into_one_out_at_once(tmp_path, data_dir):
    from minireason.data.io import write_head

    # 3,000 reviews: the first holds the lock for seconds, longer than the second's start-up
    a = write_head(data_dir / MI_REVIEWS, tmp_path / "a.json.gz", 3000)
    b = reviews_file(tmp_path / "b.json.gz")
    out = tmp_path / "prep"
    first = _prepare_process(a, out)
    _wait_until_flocked(tmp_path / ".prep.lock")
    second = _prepare_process(b, out)
    err2 = second.communicate(timeout=120)[1]
    assert second.returncode == 1 and err2.count("\n") == 1
    assert "another minireason prepare is writing it now" in err2
    assert first.wait(timeout=300) == 0
    prepared = load_prepared(out)
    assert prepared.config["inputs"][0]["path"] == str(a)  # only the first input is in it


# --------------------------------------------------------------------------- runs and their data


@pytest.fixture(scope="module")
def other_prepared(tmp_path_factory, data_dir):
    """A prepared directory with the micro run's vocabulary size but other data."""
    from minireason.data.io import write_head
    from minireason.prep.prepare import SAMPLE_OPTIONS, PrepareConfig, prepare

    root = tmp_path_factory.mktemp("other")
    src = write_head(data_dir / MI_REVIEWS, root / "later.json.gz", 900)
    lines = gzip.decompress(src.read_bytes()).splitlines()[300:]
    src.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    prepare(
        PrepareConfig(reviews=str(src), out=str(root / "prep"), progress=False, **SAMPLE_OPTIONS)
    )
    return root / "prep"


def test_a_run_paired_with_other_data_is_refused(micro_run, other_prepared, capsys):
    prep, run = micro_run
    other = load_prepared(other_prepared)
    assert other.tokenizer.vocab_size == load_prepared(prep).tokenizer.vocab_size
    user = other.test[0]["user"]
    argv = [
        "explain",
        "--run",
        str(run),
        "--prepared",
        str(other_prepared),
        "--user",
        user,
        "--candidates",
        "1",
        "--max-new-tokens",
        "3",
    ]
    assert main(argv) == 1
    one_line(
        capsys, f"the run was trained on {prep}", f"not on {other_prepared}", "--allow-other-data"
    )
    assert main([*argv, "--allow-other-data"]) == 0
    capsys.readouterr()
    assert (
        main(["evaluate", "--prepared", str(other_prepared), "--run", str(run), "--limit", "2"])
        == 1
    )
    one_line(capsys, f"the run was trained on {prep}")


def test_resume_with_other_data_is_refused_and_keeps_the_run(
    micro_run, other_prepared, tmp_path, micro_preset_file, capsys
):
    _, run = micro_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    argv = [
        "train",
        "--prepared",
        str(other_prepared),
        "--preset",
        str(micro_preset_file),
        "--out",
        str(copy),
        "--resume",
    ]
    assert main(argv) == 1
    one_line(capsys, f"not on {other_prepared}", "choose another --out")
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before


@pytest.fixture()
def unfinished_run(micro_run, tmp_path):
    """The micro run, with its fine-tuning made to look stopped at step 3 of 10."""
    prep, run = micro_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    path = copy / "finetune" / "checkpoint.json"
    meta = json.loads(path.read_text())
    meta["extra"]["train_config"]["max_steps"] = 10
    path.write_text(json.dumps(meta))
    return prep, copy


def test_an_unfinished_run_is_refused_unless_asked(unfinished_run, capsys, tmp_path):
    prep, run = unfinished_run
    free = [
        "explain",
        "--run",
        str(run),
        "--tags",
        "strings",
        "--candidates",
        "1",
        "--max-new-tokens",
        "3",
    ]
    assert main(free) == 1
    one_line(capsys, "fine-tuning stopped at step 3 of 10", "--allow-unfinished")
    assert main([*free, "--allow-unfinished"]) == 0
    assert "at step 3 of 10 (UNFINISHED)" in capsys.readouterr().out
    out = tmp_path / "eval"
    argv = [
        "evaluate",
        "--prepared",
        str(prep),
        "--run",
        str(run),
        "--out",
        str(out),
        "--limit",
        "2",
        "--candidates",
        "1",
        "--max-new-tokens",
        "3",
    ]
    assert main(argv) == 1
    one_line(capsys, "unfinished run")
    assert main([*argv, "--allow-unfinished"]) == 0
    info = json.loads((out / "evaluation.json").read_text())["info"]
    assert info["checkpoint_step"] == 3 and info["training_finished"] is False


def test_a_finished_run_says_so(micro_run, capsys):
    _, run = micro_run
    assert (
        main(
            [
                "explain",
                "--run",
                str(run),
                "--tags",
                "strings",
                "--candidates",
                "1",
                "--max-new-tokens",
                "3",
            ]
        )
        == 0
    )
    assert "at step 3 of 3 (finished)" in capsys.readouterr().out


# --------------------------------------------------------------------------- damaged files


DAMAGES = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "renamed text": lambda p: p.write_text("# notes\n"),
    "foreign (objects)": lambda p: np.savez(p, ids=np.array([{"x": 1}], dtype=object)),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_prepared_array_is_named(micro_prepared, micro_run, tmp_path, capsys, damage):
    copy = tmp_path / "prep"
    shutil.copytree(micro_prepared, copy)
    target = copy / "finetune_test.npz"
    DAMAGES[damage](target)
    argv = [
        "evaluate",
        "--prepared",
        str(copy),
        "--run",
        str(micro_run[1]),
        "--out",
        str(tmp_path / "e"),
    ]
    assert main(argv) == 1
    err = one_line(capsys, str(target))
    assert "pickle" not in err.replace("pickled data), which minireason never loads", "")


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_checkpoint_is_named(micro_run, tmp_path, capsys, damage):
    from minireason.files import sha256_file

    _, run = micro_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    npz, meta_path = copy / "finetune" / "checkpoint.npz", copy / "finetune" / "checkpoint.json"
    DAMAGES[damage](npz)
    argv = ["explain", "--run", str(copy), "--tags", "strings"]
    assert main(argv) == 1  # the checksum in checkpoint.json catches it first
    one_line(capsys, str(npz), "SHA-256 does not match")
    meta = json.loads(meta_path.read_text())  # a crafted JSON that vouches for the bad file
    meta["npz_sha256"] = sha256_file(npz)
    meta_path.write_text(json.dumps(meta))
    assert main(argv) == 1
    err = one_line(capsys, str(npz))
    assert "allow_pickle" not in err


def test_a_checkpoint_asking_for_a_huge_model_is_refused_without_allocating(
    micro_run, tmp_path, capsys
):
    _, run = micro_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    path = copy / "finetune" / "checkpoint.json"
    meta = json.loads(path.read_text())
    meta["model_config"].update(n_embd=65536, n_head=1)  # a 96 GiB model's shapes ...
    path.write_text(json.dumps(meta))
    assert main(["explain", "--run", str(copy), "--tags", "strings"]) == 1
    one_line(capsys, "model_config asks for wte of shape", "checkpoint.npz holds")
    meta["model_config"].update(n_layer=48)  # ... and its 48 layers
    path.write_text(json.dumps(meta))
    assert main(["explain", "--run", str(copy), "--tags", "strings"]) == 1
    one_line(capsys, "model_config asks for 48 layers", "holds 16 parameter arrays in all")


# --------------------------------------------------------------------------- outputs and presets


def test_evaluate_out_that_is_a_file_fails_before_any_generation(
    micro_run, tmp_path, capsys, monkeypatch
):
    from minireason.train import run as run_module

    prep, run = micro_run
    monkeypatch.setattr(run_module, "load_run", lambda *a, **k: pytest.fail("work started"))
    afile = tmp_path / "taken"
    afile.write_text("x")
    assert main(["evaluate", "--prepared", str(prep), "--run", str(run), "--out", str(afile)]) == 1
    one_line(capsys, f"--out {afile}: exists and is not a directory")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"\xff\xd8")
    assert main(["evaluate", "--prepared", str(prep), "--run", str(run), "--out", str(photos)]) == 1
    one_line(capsys, "not an evaluation")


def test_train_out_that_is_a_file_fails_at_once(micro_prepared, tmp_path, capsys):
    afile = tmp_path / "taken"
    afile.write_text("x")
    argv = ["train", "--prepared", str(micro_prepared), "--preset", "tiny", "--out", str(afile)]
    assert main(argv) == 1
    one_line(capsys, f"--out {afile}: exists and is not a directory")


PRESET_MISTAKES = [
    ({"model": {"dropout": None}}, "model: GPTConfig.dropout must be a number in [0, 1), got None"),
    ({"pretrain": {"learning_rate": "0.001"}}, "pretrain: TrainConfig.learning_rate must be"),
    ({"finetune": {"max_steps": "800"}}, "finetune: TrainConfig.max_steps must be"),
    ({"finetune": {"beta1": 2}}, "finetune: TrainConfig.beta1 must be a number in [0, 1), got 2"),
    ({"finetune": {"eval_interval": True}}, "finetune: TrainConfig.eval_interval must be"),
]


@pytest.mark.parametrize("change,message", PRESET_MISTAKES)
def test_a_preset_mistake_anywhere_stops_before_the_first_step(
    micro_prepared, micro_preset_file, tmp_path, capsys, change, message
):
    preset = json.loads(Path(micro_preset_file).read_text())
    for section, fields in change.items():
        preset[section].update(fields)
    path = tmp_path / "preset.json"
    path.write_text(json.dumps(preset))
    out = tmp_path / "run"
    argv = ["train", "--prepared", str(micro_prepared), "--preset", str(path), "--out", str(out)]
    assert main(argv) == 1
    one_line(capsys, str(path), message)
    assert not out.exists()  # nothing was trained, not even pretraining


# --------------------------------------------------------------------------- the demo's output


def test_the_demo_warns_first_about_a_cut_short_file(mi_slice, micro_preset_file, tmp_path):
    from minireason.demo import run_demo

    full = (mi_slice / MI_REVIEWS).read_bytes()
    cut_root = tmp_path / "data"
    (cut_root / Path(MI_REVIEWS).parent).mkdir(parents=True)
    (cut_root / MI_REVIEWS).write_bytes(full[: int(len(full) * 0.8)])
    lines = []
    run_demo(
        data_dir=cut_root,
        out=tmp_path / "demo",
        preset=str(micro_preset_file),
        n_users=1,
        n_candidates=1,
        eval_limit=2,
        progress=False,
        echo=lines.append,
    )
    assert lines[0] == "[1/4] data"
    assert lines[1].startswith("WARNING: ") and "truncated gzip stream after line" in lines[1]
    assert "minireason data fetch musical-instruments" in lines[1]


def test_training_bars_are_named_after_their_stage(
    micro_prepared, micro_preset_file, tmp_path, capsys, monkeypatch
):
    from minireason.train.recipe import run_recipe

    with monkeypatch.context() as m:
        m.setattr(sys.stderr, "isatty", lambda: True)  # a terminal: tqdm bars
        run_recipe(micro_prepared, micro_preset_file, tmp_path / "run", progress=True)
    err = capsys.readouterr().err
    assert "pretrain: 100%" in err and "finetune: 100%" in err
    run_recipe(micro_prepared, micro_preset_file, tmp_path / "other", progress=True)
    err = capsys.readouterr().err  # not a terminal: plain lines, no bar
    assert "pretrain: step 3/3 (100%)" in err and "finetune: step 3/3 (100%)" in err
    assert "\r" not in err


def test_the_fine_tune_plot_marks_where_fine_tuning_starts():
    from minireason.train.loop import loss_figure

    pre = ([(1, 5.0), (2, 4.5), (3, 4.0)], [(3, 4.2)])
    fig = loss_figure([(1, 3.0), (2, 2.5)], [(2, 2.6)], before=(*pre, "pretrain"))
    ax = fig.axes[0]
    boundary = [ln for ln in ax.lines if list(ln.get_xdata()) == [3, 3]]
    assert boundary and boundary[0].get_linestyle() == "--"
    assert any(t.get_text() == "this stage starts" for t in ax.texts)
    fine = [ln for ln in ax.lines if ln.get_label() == "train"][0]
    assert list(fine.get_xdata()) == [4, 5]  # fine-tuning steps drawn after pretraining's
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["pretrain: train", "pretrain: validation", "train", "validation"]


def test_the_evidence_heatmap_labels_focus_and_colour_bar(micro_run):
    from minireason.reason.evidence import evidence_figure, shorten
    from minireason.reason.explain import explain_free_form
    from minireason.train.run import Decoding, load_run

    run = load_run(micro_run[1])
    expl = explain_free_form(
        run,
        "strings, tuner (4)",
        "strings, guitar",
        decoding=Decoding(n_candidates=1, max_new_tokens=30),
    )
    expl.reason = "word " * 40  # a reason longer than the title holds
    fig = evidence_figure(expl)
    heat, bar = fig.axes
    focus = [s for s in expl.evidence.segments if s.kind == "focus"]
    assert focus, "the micro run's prompts have a focus"
    ticks = heat.get_xticklabels()
    for seg in focus:
        for col in range(seg.start, seg.end):
            assert ticks[col].get_text().endswith("[focus]")
            assert ticks[col].get_fontweight() == "bold"
    assert bar.get_ylabel() == "attention weight (share of the row)"
    title = heat.get_title()
    assert title.endswith('word word..."') and "wor..." not in title
    assert shorten("great tone and a solid neck", 18) == "great tone and..."
