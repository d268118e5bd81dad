"""Fuzzing every file format minireason reads (issue 31): random bytes, truncations and
field mutations, generated with Hypothesis.

Each format is read by the function every command reads it with, in process (fast). A case
passes when the reader either returns (the mutation left a valid file) or raises the
errors the command line turns into one line (ValueError, OSError) naming the file; never
another exception (a KeyError, TypeError, OverflowError... would be a traceback). And
reading changes nothing: the directory tree is the same before and after. A few of the
cases also run the command itself (``main``), which must exit 1 with one line and no
traceback. The CSV reader is checked for the right result: any review text, line breaks,
quotes and commas included, comes back as written.

Examples are derandomized (the same cases every run) and few per format, so the whole
file takes seconds; raise ``FUZZ_EXAMPLES`` for a longer search.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minireason.cli import main
from minireason.data.accounting import LoadReport
from minireason.data.amazon import load_reviews
from minireason.data.clean import clean_text
from minireason.data.generic import load_generic
from minireason.nn.checkpoint import load_checkpoint
from minireason.prep.prepared import load_prepared
from minireason.reason import catalogue
from minireason.train.recipe import check_memory, load_preset
from minireason.train.run import load_run, load_weights, read_run_info

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CLEAN = (ValueError, OSError)  # what main() prints as one line

# --------------------------------------------------------------------------- mutations

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.just([]),
    st.just({}),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def paths_of(obj, prefix=(), depth: int = 4) -> list[tuple]:
    """Every path (a tuple of keys and indices) to a value inside a JSON object."""
    found = []
    if depth and isinstance(obj, dict):
        items = obj.items()
    elif depth and isinstance(obj, list):
        items = enumerate(obj[:4])
    else:
        return found
    for key, value in items:
        found.append((*prefix, key))
        found += paths_of(value, (*prefix, key), depth - 1)
    return found


@st.composite
def mutated(draw, obj):
    """``obj`` (a JSON object) with one to three values replaced by junk or deleted."""
    obj = json.loads(json.dumps(obj))
    for _ in range(draw(st.integers(1, 3))):
        paths = paths_of(obj)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JUNK)
    return obj


@st.composite
def damaged(draw, data: bytes):
    """``data`` truncated, with bytes flipped, or replaced by random bytes."""
    how = draw(st.sampled_from(["truncate", "flip", "random"]))
    if how == "truncate":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if how == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(out) - 1))
            out[i] = draw(st.integers(0, 255))
        return bytes(out)
    return draw(st.binary(max_size=200))


# --------------------------------------------------------------------------- the check


def snapshot(root: Path) -> dict:
    """``{relative path: (inode, size, modification time)}`` of everything under ``root``:
    a file written, replaced, added or removed changes it."""
    tree = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        tree[str(path.relative_to(root))] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return tree


def reads_cleanly(read, root: Path, name: str | None = None):
    """Call ``read()``: it returns, or raises ValueError/OSError whose message names
    ``name`` (a file); in both cases nothing under ``root`` changed."""
    before = snapshot(root)
    try:
        result = read()
    except CLEAN as exc:
        message = str(exc)
        assert "\n" not in message, message
        if name:
            assert name in message, message
        result = None
    assert snapshot(root) == before
    return result


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj), encoding="utf-8")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pristine(micro_run, tmp_path_factory) -> Path:
    """A copy of the micro prepared directory and run, never changed (``prep``, ``run``)."""
    prepared, run = micro_run
    root = tmp_path_factory.mktemp("fuzz_pristine")
    shutil.copytree(prepared, root / "prep")
    shutil.copytree(run, root / "run")
    return root


@pytest.fixture
def work(pristine, tmp_path) -> Path:
    """A directory for the cases of one test (each case restores what it changes)."""
    root = tmp_path / "w"
    shutil.copytree(pristine, root)
    return root


def restored(work: Path, pristine: Path, *rels: str) -> Path:
    """The files ``rels`` of ``work`` put back as the pristine copy has them; returns the
    path of the first."""
    for rel in rels:
        shutil.copyfile(pristine / rel, work / rel)
    return work / rels[0]


# --------------------------------------------------------------------------- the formats


@FUZZ
@given(data=st.data())
def test_checkpoint_json(work, pristine, data):
    rel = "run/finetune/checkpoint.json"
    original = json.loads((pristine / rel).read_text())
    path = restored(work, pristine, rel)
    if data.draw(st.booleans()):
        write_json(path, data.draw(mutated(original)))
    else:
        path.write_bytes(data.draw(damaged(path.read_bytes())))
    reads_cleanly(lambda: load_checkpoint(path.parent), work, "checkpoint")
    reads_cleanly(lambda: load_run(work / "run"), work)


@FUZZ
@given(data=st.data())
def test_checkpoint_npz_with_its_checksum_updated(work, pristine, data):
    """The arrays damaged, and the SHA-256 in checkpoint.json made to match them, so that
    the .npz reader itself sees the damage."""
    npz = restored(work, pristine, "run/pretrain/checkpoint.npz")
    meta_path = restored(work, pristine, "run/pretrain/checkpoint.json")
    npz.write_bytes(data.draw(damaged(npz.read_bytes())))
    meta = json.loads(meta_path.read_text())
    meta["npz_sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()
    write_json(meta_path, meta)
    reads_cleanly(lambda: load_checkpoint(npz.parent), work, "checkpoint")


@FUZZ
@given(data=st.data())
def test_prepared_manifest_and_config(work, pristine, data):
    rels = ["prep/manifest.json", "prep/config.json"]
    rel = data.draw(st.sampled_from(rels))
    original = json.loads((pristine / rel).read_text())
    path = restored(work, pristine, rel, *(r for r in rels if r != rel))
    if data.draw(st.booleans()):
        write_json(path, data.draw(mutated(original)))
    else:
        path.write_bytes(data.draw(damaged(path.read_bytes())))
    reads_cleanly(lambda: load_prepared(work / "prep"), work, "prep")


@FUZZ
@given(data=st.data())
def test_run_json(work, pristine, data):
    original = json.loads((pristine / "run/run.json").read_text())
    path = restored(work, pristine, "run/run.json")
    if data.draw(st.booleans()):
        write_json(path, data.draw(mutated(original)))
    else:
        path.write_bytes(data.draw(damaged(path.read_bytes())))
    reads_cleanly(lambda: read_run_info(work / "run"), work, "run")
    reads_cleanly(lambda: load_run(work / "run"), work)


@FUZZ
@given(data=st.data())
def test_run_tokenizer_and_features(work, pristine, data):
    rels = ["run/tokenizer.json", "run/features.json"]
    rel = data.draw(st.sampled_from(rels))
    path = restored(work, pristine, rel, *(r for r in rels if r != rel))
    if data.draw(st.booleans()) and rel.endswith("features.json"):
        write_json(path, data.draw(mutated(json.loads((pristine / rel).read_text()))))
    else:
        path.write_bytes(data.draw(damaged(path.read_bytes())))
    reads_cleanly(lambda: load_run(work / "run"), work, Path(rel).name)


@FUZZ
@given(data=st.data())
def test_presets_and_what_they_would_allocate(work, pristine, data):
    """A preset as load_preset reads it (also a run's preset.json), then checked against
    8 GiB of memory as train does before the first allocation."""
    from minireason.nn.model import GPTConfig

    original = json.loads((pristine / "run/preset.json").read_text())
    path = work / "preset.json"
    if data.draw(st.booleans()):
        write_json(path, data.draw(mutated(original)))
    else:
        path.write_bytes(data.draw(damaged(json.dumps(original).encode())))
    preset = reads_cleanly(lambda: load_preset(path), work, "preset")
    if preset is not None:
        config = GPTConfig(vocab_size=400, **preset["model"])
        reads_cleanly(lambda: check_memory(preset, config, 64, available=8 * 2**30), work)


def _catalogue_manifest() -> dict:
    entry = {
        "file": catalogue.chunk_file(0),
        "bytes": 10,
        "sha256": "0" * 64,
        "users": 2,
        "rows": 4,
        "cold_start": 0,
        "failures": [{"user": "u", "rank": 1, "item": "i", "error": "e"}],
    }
    return {
        "format": catalogue.FORMAT,
        "format_version": catalogue.FORMAT_VERSION,
        "inputs": {
            "prepared": {"path": "/p", "content": "a" * 64},
            "run": {"path": "/r", "content": "b" * 64},
        },
        "settings": {
            "users": {"given": "all", "n": 2, "sha256": "c" * 64},
            "top_k": 2,
            "recommender": "popular",
            "chunk_size": 2,
            "seed": 0,
            "decoding": {"n_candidates": 2},
            "score_weights": {"item": 1.0},
            "weights_from": "run.json",
        },
        "unknown_users": [],
        "duplicate_users": 0,
        "n_chunks": 1,
        "columns": [],
        "chunks": {"0": entry},
    }


@FUZZ
@given(data=st.data())
def test_explain_all_manifest(tmp_path, data):
    """What resuming explain-all reads of its manifest: the checks, the comparison with the
    new job and the finished chunks."""
    out = tmp_path / "cat"
    out.mkdir(exist_ok=True)
    path = out / catalogue.MANIFEST
    original = _catalogue_manifest()
    if data.draw(st.booleans()):
        write_json(path, data.draw(mutated(original)))
    else:
        path.write_bytes(data.draw(damaged(json.dumps(original).encode())))

    def resume():
        old = catalogue.read_manifest(out)
        catalogue.finished_chunks(out, old)
        catalogue.check_same_job(out, old, original)

    reads_cleanly(resume, tmp_path, "cat")


@FUZZ
@given(data=st.data())
def test_weights_file(tmp_path, data):
    from minireason.train.run import ScoreWeights, weights_file

    original = weights_file(ScoreWeights())
    path = tmp_path / "weights.json"
    if data.draw(st.booleans()):
        write_json(path, data.draw(mutated(original)))
    else:
        path.write_bytes(data.draw(damaged(json.dumps(original).encode())))
    reads_cleanly(lambda: load_weights(path), tmp_path, "weights")


REVIEW = {
    "reviewerID": "A1",
    "asin": "B1",
    "overall": 5.0,
    "unixReviewTime": 1400000000,
    "reviewText": "The strings stay in tune.",
    "summary": "good",
}


@FUZZ
@given(data=st.data())
def test_review_files(tmp_path, data):
    """Amazon JSON lines and generic JSON lines/CSV: random bytes, damaged or mutated
    records; every review returned has the fields a review needs."""
    lines = [json.dumps(data.draw(mutated(REVIEW))) for _ in range(3)] + [json.dumps(REVIEW)]
    raw = data.draw(
        st.one_of(st.just("\n".join(lines).encode()), damaged(json.dumps(REVIEW).encode()))
    )
    path = tmp_path / "reviews.json"
    path.write_bytes(raw)
    mapping = {"user": "reviewerID", "item": "asin", "rating": "overall", "time": "unixReviewTime"}
    for read in (
        lambda: list(load_reviews(path, LoadReport())),
        lambda: list(load_generic(path, "jsonl", mapping, LoadReport())),
        lambda: list(load_generic(path, "csv", mapping, LoadReport())),
    ):
        for review in reads_cleanly(read, tmp_path) or []:
            assert isinstance(review.user, str) and review.user
            assert isinstance(review.item, str) and review.item
            assert 0 <= review.rating <= 5


TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)


@FUZZ
@given(texts=st.lists(TEXT, min_size=1, max_size=5))
def test_csv_texts_come_back_as_written(tmp_path, texts):
    """Any review text (line breaks, quotes, commas, blank lines) written by a CSV writer is
    read back as one review, its text the written one (cleaned as every text is)."""
    buf = io.StringIO()
    writer = csv.writer(buf)  # RFC 4180: CRLF, a field with CR or LF quoted
    writer.writerow(["user", "item", "rating", "time", "text"])
    for i, text in enumerate(texts):
        writer.writerow([f"u{i}", f"i{i}", 4, 1000 + i, text])
    path = tmp_path / "r.csv"
    path.write_bytes(buf.getvalue().encode("utf-8"))
    mapping = {"user": "user", "item": "item", "rating": "rating", "time": "time", "text": "text"}
    reviews = list(load_generic(path, "csv", mapping, LoadReport()))
    assert [r.user for r in reviews] == [f"u{i}" for i in range(len(texts))]
    assert [r.text for r in reviews] == [clean_text(t) for t in texts]


# --------------------------------------------------------------------------- the commands


@pytest.mark.parametrize(
    "rel, junk",
    [
        ("run/finetune/checkpoint.json", b'{"format": "minireason-checkpoint", "format_v'),
        ("run/run.json", json.dumps({"format": "minireason-run", "format_version": 2}).encode()),
        ("run/tokenizer.json", b"\x00\xff" * 10),
        ("prep/manifest.json", b"[]"),
    ],
)
def test_commands_on_damaged_files_exit_1_with_one_line(work, capsys, rel, junk):
    (work / rel).write_bytes(junk)
    prep, run = str(work / "prep"), str(work / "run")
    commands = [
        ["explain", "--run", run, "--prepared", prep, "--user", "A2EZXIUIJD5Q0J"],
        ["evaluate", "--run", run, "--prepared", prep, "--limit", "2", "--out", str(work / "ev")],
        ["explain-all", "--run", run, "--prepared", prep, "--out", str(work / "cat")],
    ]
    before = snapshot(work)
    for argv in commands:
        with contextlib.redirect_stdout(io.StringIO()):
            status = main(argv)
        err = capsys.readouterr().err
        assert status == 1 and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
    assert snapshot(work) == before
