"""The prepared directory's contract: manifest, format version, checksums, atomic replacement."""

from __future__ import annotations

import json
import shutil

import pytest

from minireason.prep import prepared as pd
from minireason.prep.prepared import FORMAT_VERSION, MANIFEST, load_prepared, write_prepared


@pytest.fixture()
def copy(micro_prepared, tmp_path):
    """A private copy of the micro prepared directory, to damage."""
    target = tmp_path / "prep"
    shutil.copytree(micro_prepared, target)
    return target


def test_manifest_lists_every_file_and_the_identity(micro_prepared):
    manifest = json.loads((micro_prepared / MANIFEST).read_text())
    assert manifest["format"] == "minireason-prepared"
    assert manifest["format_version"] == FORMAT_VERSION
    on_disk = {p.name for p in micro_prepared.iterdir()} - {MANIFEST}
    assert set(manifest["files"]) == on_disk
    sha = {name: entry["sha256"] for name, entry in manifest["files"].items()}
    assert manifest["content"] == pd.content_id(sha)
    assert load_prepared(micro_prepared).content == manifest["content"]


def test_identity_ignores_reports_but_not_data(copy):
    manifest = json.loads((copy / MANIFEST).read_text())
    sha = {name: entry["sha256"] for name, entry in manifest["files"].items()}
    assert pd.content_id({**sha, "report.json": "0" * 64}) == manifest["content"]
    assert pd.content_id({**sha, "train.jsonl": "0" * 64}) != manifest["content"]


def test_another_format_version_is_refused(copy):
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(
        ValueError,
        match=rf"manifest format version {FORMAT_VERSION + 1}.*reads version {FORMAT_VERSION}",
    ):
        load_prepared(copy)


@pytest.mark.parametrize(
    "name", ["train.jsonl", "finetune_test.npz", "tokenizer.json", "config.json"]
)
def test_a_changed_file_is_named(copy, name):
    with open(copy / name, "ab") as fh:
        fh.write(b"\n")
    with pytest.raises(ValueError, match=rf"{name}: changed since prepare wrote it"):
        load_prepared(copy)


def test_a_missing_file_is_named(copy):
    (copy / "users.json").unlink()
    with pytest.raises(ValueError, match=r"users.json: missing \(listed in manifest.json\)"):
        load_prepared(copy)


def test_rewriting_replaces_the_directory_whole(copy, tmp_path):
    prepared = load_prepared(copy)
    (copy / "stray.txt").write_text("left by hand")
    prepared.test = prepared.test[:1]
    with pytest.raises(ValueError, match="not a prepared directory"):  # not all prepare's
        write_prepared(prepared, copy, {})
    assert (copy / "stray.txt").read_text() == "left by hand"
    (copy / "stray.txt").unlink()
    write_prepared(prepared, copy, {})  # no attachments this time
    again = load_prepared(copy)
    assert len(again.test) == 1
    assert not (copy / "report.md").exists()  # the old directory went as a whole
    assert not list(tmp_path.glob(".prep.*"))  # no partial or old copies left beside it


def test_out_that_is_a_file_or_a_foreign_directory_is_refused(tmp_path, micro_prepared):
    prepared = load_prepared(micro_prepared)
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        write_prepared(prepared, afile, {})
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ValueError, match="not a prepared directory; choose another path"):
        write_prepared(prepared, foreign, {})
    assert (foreign / "cat.jpg").read_bytes() == b"\xff\xd8"


def test_evidence_and_prompts_rebuild_as_prepare_made_them(micro_prepared):
    prepared = load_prepared(micro_prepared)
    assert prepared.evidence_size == 1
    with_evidence = 0
    for split in ("valid", "test"):
        for i, rec in enumerate(prepared.split(split)):
            assert prepared.evidence_for(rec["item"], rec["focus"], rec["user"]) == rec["evidence"]
            ids = prepared.prompt_for(rec, rec["focus"], rec["evidence"])
            assert ids == prepared.prompts[split].get(i).tolist()
            with_evidence += bool(rec["evidence"])
    assert with_evidence > 0


def test_reviews_by_gives_a_users_training_reviews_only(micro_prepared):
    p = load_prepared(micro_prepared)
    user = p.test[0]["user"]
    mine = p.reviews_by(user)
    assert mine == [r["text"] for r in p.train if r["user"] == user] and mine
    assert not {r["text"] for r in p.valid + p.test if r["user"] == user} & set(mine)
    mine.append("changed by the caller")
    assert p.reviews_by(user) == mine[:-1]  # a copy each time
    assert p.reviews_by("no such user") == []


def test_known_words_are_the_training_reviews_words_used_twice(micro_prepared):
    from collections import Counter

    from minireason.text import words

    p = load_prepared(micro_prepared)
    counts = Counter(w for r in p.train for w in words(r["text"]))
    assert p.known_words == {w for w, n in counts.items() if n >= 2} and p.known_words
    only_held_out = {w for r in p.valid + p.test for w in words(r["text"])} - set(counts)
    assert only_held_out and not only_held_out & p.known_words  # never validation or test text
