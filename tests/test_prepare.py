"""``minireason prepare`` end to end: the real Musical Instruments file, and the CLI."""

from __future__ import annotations

import gzip
import json
import zipfile

import numpy as np
import pytest

from minireason.cli import main
from minireason.prep.features import AspectVocabulary, target_focus
from minireason.prep.prepare import PrepareConfig, prepare
from minireason.prep.prepared import load_prepared
from minireason.text import mentions, tokens, words

MI = "amazon-musical-instruments-2014/reviews_Musical_Instruments_5.json.gz"


@pytest.fixture(scope="module")
def mi_prepared(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("mi")
    report = prepare(PrepareConfig(reviews=str(data_dir / MI), out=str(out), progress=False))
    return report, load_prepared(out)


@pytest.mark.slow
def test_real_report_counts_every_line(mi_prepared):
    report, prepared = mi_prepared
    (f,) = report["load"]["files"]
    assert f["lines_read"] == 10_261
    assert f["skipped"] == {"empty text": 7} and f["kept"] == 10_254
    assert len(f["examples"]["empty text"]) == 5  # the first five, as file:line
    assert all(ex.endswith(": empty text") and MI in ex for ex in f["examples"]["empty text"])
    assert report["stages"]["users"] == 1429 and report["stages"]["items"] == 900
    n = sum(len(prepared.split(s)) for s in ("train", "valid", "test"))
    assert n == report["stages"]["after de-duplication"] == 10_254
    assert len(prepared.valid) == len(prepared.test) == 1429
    md = (prepared.path / "report.md").read_text()
    assert "empty text: 7" in md and ":2928: empty text" in md
    assert (prepared.path / "prompt_lengths.png").read_bytes()[:4] == b"\x89PNG"
    assert report["tokenizer"]["vocab_size"] == prepared.tokenizer.vocab_size == 4096
    assert sum(report["prompts"]["histogram"]) == n


@pytest.mark.slow
def test_real_records_targets_and_sequences(mi_prepared):
    report, p = mi_prepared
    feats = set(p.features)
    assert {"strings", "tuner", "cable", "pedal"} <= feats
    for name in ("train", "valid", "test"):
        records, fin, prompts = p.split(name), p.finetune[name], p.prompts[name]
        with_target = [(i, r) for i, r in enumerate(records) if r["target"] is not None]
        assert len(fin) == len(with_target) == report["targets"][name]["with_target"]
        assert len(prompts) == len(records)
        assert len(records) - len(with_target) == sum(report["targets"][name]["without"].values())
        for i, rec in with_target[:200]:
            assert rec["feature"] in feats
            assert mentions(tokens(rec["target"]), [rec["feature"]]) == [rec["feature"]]
            assert rec["target"] in rec["text"] and len(words(rec["target"])) <= 25
            ids, mask = fin.get(rec["seq"])
            plen = fin.prompt_len[rec["seq"]]
            assert len(ids) <= p.context and plen <= p.prompt_tokens
            assert not mask[:plen].any() and mask[plen:].all()
            assert ids[-1] == p.tokenizer.eos_id
            assert p.tokenizer.decode(ids[plen:-1]) == rec["target"]
            assert ids[:plen].tolist() == prompts.get(i).tolist()
    assert p.pretrain.dtype == np.int32 and (p.pretrain == p.tokenizer.eos_id).sum() > 10_000


@pytest.mark.slow
def test_real_history_is_only_the_past(mi_prepared):
    _, p = mi_prepared
    train_time = {(r["user"], r["item"]): r["time"] for r in p.train}
    for name in ("train", "valid", "test"):
        for rec in p.split(name):
            for h in rec["history"]:
                assert train_time[(rec["user"], h["item"])] <= rec["time"]
            assert rec["item"] not in {h["item"] for h in rec["history"]}
    cold = [r for r in p.train if not r["history"]]
    assert len(cold) == 1429  # each user's first review has no past
    assert all(not r["profile"]["aspects"] for r in cold)
    assert set(p.users) == {r["user"] for r in p.train}


@pytest.mark.slow
def test_real_focus_from_targets_in_training_predicted_elsewhere(mi_prepared):
    _, p = mi_prepared
    vocab = AspectVocabulary(df=p.feature_df)
    assert (
        p.config["focus"] == 3
        and 0 < min(p.feature_rates.values()) <= max(p.feature_rates.values()) < 1
    )
    for name in ("train", "valid", "test"):
        for rec in p.split(name):
            focus = [s["label"] for s in rec["prompt"]["segments"] if s["kind"] == "focus"]
            assert focus == rec["focus"]
            if name == "train" and rec["target"] is not None:
                assert rec["focus_from"] == "target"
                assert rec["focus"] == target_focus(rec["target"], vocab)
            else:
                assert rec["focus_from"] == "predicted"
                assert 1 <= len(rec["focus"]) <= 3
    # at test time the focus is what Prepared.focus_for predicts from training data only,
    # and it holds the ground-truth feature more often than the item's top aspects do
    test = [r for r in p.test if r["target"] is not None]
    assert all(r["focus"] == p.focus_for(r["item"], r["profile"]["aspects"]) for r in test)
    hit = np.mean([r["feature"] in r["focus"] for r in test])
    top = np.mean([r["feature"] in [a for a, _ in p.items[r["item"]]["aspects"][:3]] for r in test])
    assert hit > top + 0.02, (hit, top)


def test_training_targets_can_prefer_what_is_particular_to_the_item(mi_slice, tmp_path):
    from minireason.prep.prepare import SAMPLE_OPTIONS

    def prepared(name, **options):
        out = tmp_path / name
        cfg = PrepareConfig(
            reviews=str(mi_slice / MI), out=str(out), progress=False, **SAMPLE_OPTIONS, **options
        )
        prepare(cfg)
        return load_prepared(out)

    first, named = prepared("first"), prepared("named", target_prefer="particular")
    for split in ("valid", "test"):
        assert [r["target"] for r in first.split(split)] == [
            r["target"] for r in named.split(split)
        ]
    changed = [(a, b) for a, b in zip(first.train, named.train) if a["target"] != b["target"]]
    assert changed  # some training reviews had a later, more particular sentence
    for a, b in changed:
        assert set(words(b["target"])) & named.particular_words(b["item"])
        assert not set(words(a["target"])) & named.particular_words(a["item"])


def test_focus_zero_leaves_the_prompts_without_focus(tmp_path):
    out = tmp_path / "prep"
    prepare(
        PrepareConfig(
            reviews=str(_toy_reviews(tmp_path / "r.json.gz")),
            out=str(out),
            vocab_size=300,
            min_df=1,
            focus=0,
            progress=False,
        )
    )
    p = load_prepared(out)
    assert all(r["focus"] == [] and r["focus_from"] is None for r in p.train + p.test)
    assert not any(s["kind"] == "focus" for r in p.train for s in r["prompt"]["segments"])
    assert p.focus_for(p.test[0]["item"], ["strings"]) == []
    with pytest.raises(ValueError, match="--focus must be >= 0"):
        prepare(
            PrepareConfig(
                reviews=str(tmp_path / "r.json.gz"), out=str(out), focus=-1, progress=False
            )
        )


@pytest.mark.slow
def test_arrays_load_without_pickle(mi_prepared):
    _, p = mi_prepared
    for f in p.path.glob("*.npz"):
        with zipfile.ZipFile(f) as z:
            for member in z.namelist():
                with z.open(member) as arr:
                    header = arr.read(128)
                assert b"'descr': '|O'" not in header, f"{f}:{member} holds objects"
        with np.load(f, allow_pickle=False) as z:
            assert z.files


def _toy_reviews(path, n_users=8, extra=()):
    rows = []
    for u in range(n_users):
        for k in range(5):
            rows.append(
                json.dumps(
                    {
                        "reviewerID": f"U{u}",
                        "asin": f"I{(u + k) % 7}",
                        "overall": 1 + (u * k) % 5,
                        "unixReviewTime": 1_300_000_000 + 86400 * (k * 10 + u),
                        "reviewText": f"The strings sound bright on my guitar. The tuner clip {u} {k} works.",
                        "summary": "fine",
                    }
                )
            )
    rows[3:3] = list(extra)
    data = ("\n".join(rows) + "\n").encode()
    path.write_bytes(gzip.compress(data))
    return path


def test_cli_prepare_writes_a_loadable_directory(tmp_path, capsys):
    reviews = _toy_reviews(tmp_path / "toy.gz", extra=['{"broken', '{"reviewerID": "U1"}'])
    out = tmp_path / "out"
    code = main(
        [
            "prepare",
            "--reviews",
            str(reviews),
            "--out",
            str(out),
            "--vocab-size",
            "300",
            "--min-df",
            "2",
            "--split",
            "random",
            "--seed",
            "3",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "skipped lines: 2" in printed
    p = load_prepared(out)
    assert len(p.train) + len(p.valid) + len(p.test) == 40
    assert (len(p.train), len(p.valid), len(p.test)) == (32, 4, 4)
    assert p.config["split"] == "random" and p.config["inputs"][0]["bytes"] > 0
    skipped = p.report["load"]["files"][0]["skipped"]
    assert skipped == {"bad JSON": 1, "missing field 'reviewText'": 1}


def test_cli_strict_stops_at_the_first_bad_line(tmp_path, capsys):
    reviews = _toy_reviews(tmp_path / "toy.gz", extra=['{"broken'])
    code = main(["prepare", "--reviews", str(reviews), "--out", str(tmp_path / "o"), "--strict"])
    assert code == 1
    assert f"{reviews}:4: bad JSON" in capsys.readouterr().err


def test_cli_reports_a_truncated_download(tmp_path, capsys):
    full = _toy_reviews(tmp_path / "full.gz", n_users=60).read_bytes()
    cut = tmp_path / "cut.gz"
    cut.write_bytes(full[: int(len(full) * 0.7)])
    code = main(
        [
            "prepare",
            "--reviews",
            str(cut),
            "--out",
            str(tmp_path / "o"),
            "--vocab-size",
            "300",
            "--min-df",
            "2",
        ]
    )
    assert code == 0
    assert "warning: truncated gzip stream after line" in capsys.readouterr().out
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    (f,) = report["load"]["files"]
    assert f["lines_read"] == f["kept"] > 0 and "truncated gzip stream after line" in f["truncated"]
    assert "truncated gzip stream" in (tmp_path / "o" / "report.md").read_text()


def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MINIREASON_DATA_DIR", raising=False)
    assert main(["prepare", "--reviews", str(tmp_path / "nope.gz"), "--out", str(tmp_path)]) == 1
    assert "--reviews" in capsys.readouterr().err
    ml = tmp_path / "ml"
    ml.mkdir()
    (ml / "movies.csv").write_text("movieId,title,genres\n1,A,Drama\n")
    (ml / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4,5\n")
    assert (
        main(
            ["prepare", "--format", "movielens", "--reviews", str(ml), "--out", str(tmp_path / "o")]
        )
        == 1
    )
    assert "no training review has text" in capsys.readouterr().err


def test_data_dir_variable_resolves_relative_paths(tmp_path, monkeypatch):
    _toy_reviews(tmp_path / "toy.gz")
    monkeypatch.setenv("MINIREASON_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path / "..")
    assert (
        main(
            [
                "prepare",
                "--reviews",
                "toy.gz",
                "--out",
                str(tmp_path / "o"),
                "--vocab-size",
                "300",
                "--min-df",
                "2",
            ]
        )
        == 0
    )


def test_load_prepared_refuses_a_directory_without_manifest(tmp_path):
    with pytest.raises(ValueError, match="not a complete prepared directory: no manifest.json"):
        load_prepared(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such prepared directory"):
        load_prepared(tmp_path / "absent")


def test_cli_prepare_csv_with_a_column_mapping(tmp_path):
    rows = ["who,what,stars,when,body"]
    for u in range(6):
        for k in range(4):
            rows.append(
                f'u{u},i{(u + k) % 5},{1 + k},{100 * k + u},"The cable and the tuner {k} work."'
            )
    path = tmp_path / "mine.csv"
    path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    code = main(
        [
            "prepare",
            "--format",
            "csv",
            "--reviews",
            str(path),
            "--out",
            str(out),
            "--columns",
            "user=who,item=what,rating=stars,time=when,text=body",
            "--vocab-size",
            "300",
            "--min-df",
            "2",
        ]
    )
    assert code == 0
    p = load_prepared(out)
    assert (len(p.train), len(p.valid), len(p.test)) == (12, 6, 6)
    assert {"cable", "tuner"} <= set(p.features)
    assert all(r["feature"] in ("cable", "tuner") for r in p.test)


@pytest.mark.slow
def test_real_magazines_prepare_uses_metadata_tags(data_dir, tmp_path):
    folder = data_dir / "amazon2018-magazines"
    report = prepare(
        PrepareConfig(
            reviews=str(folder / "Magazine_Subscriptions_5.json.gz"),
            meta=str(folder / "meta_Magazine_Subscriptions.json.gz"),
            out=str(tmp_path),
            vocab_size=1024,
            progress=False,
        )
    )
    reviews_file, meta_file = report["load"]["files"]
    assert reviews_file["lines_read"] == 2375 and meta_file["lines_read"] == 3385
    assert reviews_file["skipped"]["missing field 'reviewText'"] >= 1
    assert meta_file["merged"] > 0
    assert report["stages"]["items with metadata"] > 140
    p = load_prepared(tmp_path)
    with_meta = [i for i, v in p.items.items() if v["meta_tags"]]
    assert all(p.items[i]["tags"] == p.items[i]["meta_tags"] for i in with_meta)
    rec = next(r for r in p.test if p.items[r["item"]]["meta_tags"])
    assert rec["item_tags"] == p.items[rec["item"]]["meta_tags"][: len(rec["item_tags"])]
