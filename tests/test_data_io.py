"""Streaming line reader: gzip by magic bytes, bad bytes, truncated gzip, every line counted."""

from __future__ import annotations

import gzip
import io
import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from minireason.data.accounting import DataError, LoadReport
from minireason.data.io import GZIP_MAGIC, is_gzip, iter_lines


def _gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def _expected_lines(data: bytes) -> int:
    """How many lines a binary line iterator sees in ``data``."""
    parts = data.split(b"\n")
    return len(parts) - (1 if parts[-1] == b"" else 0)


def test_gzip_is_detected_from_content_not_name(tmp_path):
    gz_named_txt = tmp_path / "reviews.txt"
    gz_named_txt.write_bytes(_gzip_bytes(b"one\ntwo\n"))
    plain_named_gz = tmp_path / "reviews.json.gz"
    plain_named_gz.write_bytes(b"three\nfour\n")
    assert is_gzip(gz_named_txt) and not is_gzip(plain_named_gz)
    report = LoadReport()
    assert [t for _, t in iter_lines(gz_named_txt, report)] == ["one", "two"]
    assert [t for _, t in iter_lines(plain_named_gz, report)] == ["three", "four"]


def test_bad_utf8_and_blank_lines_are_counted_with_line_numbers(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"good\n\xff\xfebad\n   \nlast without newline")
    report = LoadReport()
    lines = list(iter_lines(path, report))
    assert lines == [(1, "good"), (4, "last without newline")]
    fr = report.file(path)
    assert fr.lines_read == 4
    assert fr.skipped == {"not UTF-8": 1, "blank line": 1}
    assert fr.examples["not UTF-8"] == [f"{path}:2: not UTF-8 (byte 0)"]


def test_truncated_gzip_keeps_complete_lines_and_says_where(tmp_path):
    data = b"".join(b"line %05d with some padding text\n" % i for i in range(2000))
    packed = _gzip_bytes(data)
    path = tmp_path / "cut.json.gz"
    path.write_bytes(packed[: len(packed) // 2])
    report = LoadReport()
    lines = list(iter_lines(path, report))
    fr = report.file(path)
    assert 0 < len(lines) < 2000
    assert [t for _, t in lines] == [
        f"line {i:05d} with some padding text" for i in range(len(lines))
    ]
    assert fr.truncated_after == len(lines) == fr.lines_read
    assert f"truncated gzip stream after line {len(lines)}" in fr.to_dict()["truncated"]


def test_truncated_gzip_is_an_error_in_strict_mode(tmp_path):
    packed = _gzip_bytes(b"a\n" * 5000)
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[:-12])
    with pytest.raises(DataError, match=r"cut\.gz: truncated gzip stream after line \d+"):
        list(iter_lines(path, LoadReport(strict=True)))


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        list(iter_lines(tmp_path / "nope.json", LoadReport()))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=400))
def test_fuzz_plain_bytes_every_line_accounted(tmp_path, data):
    assume(not data.startswith(GZIP_MAGIC))  # that would be (broken) gzip: next test
    path = tmp_path / "fuzz.bin"
    path.write_bytes(data)
    report = LoadReport()
    yielded = list(iter_lines(path, report))
    fr = report.file(path)
    assert fr.lines_read == _expected_lines(data)
    assert fr.lines_read == len(yielded) + sum(fr.skipped.values())


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(min_size=1, max_size=400), cut=st.floats(0.0, 1.0))
def test_fuzz_cut_gzip_never_crashes(tmp_path, data, cut):
    packed = _gzip_bytes(data)
    path = tmp_path / "fuzz.gz"
    path.write_bytes(packed[: max(2, int(len(packed) * cut))])
    report = LoadReport()
    yielded = list(iter_lines(path, report))
    fr = report.file(path)
    assert fr.lines_read == len(yielded) + sum(fr.skipped.values())
    assert fr.lines_read <= _expected_lines(data)
    if fr.lines_read < _expected_lines(data):
        assert fr.truncated_after == fr.lines_read


def test_streaming_memory_does_not_grow_with_the_file(tmp_path):
    import tracemalloc

    from minireason.data.amazon import load_reviews

    line = (
        json.dumps(
            {
                "reviewerID": "U",
                "asin": "I",
                "overall": 4.0,
                "unixReviewTime": 1,
                "reviewText": "strings " * 40,
            }
        )
        + "\n"
    )
    path = tmp_path / "big.json.gz"
    with gzip.open(path, "wt", compresslevel=1) as fh:
        for _ in range(40_000):
            fh.write(line)
    size = 40_000 * len(line)  # ~15 MB of text
    tracemalloc.start()
    n = sum(1 for _ in (r.user for r in load_reviews(path, LoadReport())))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == 40_000
    assert peak < size / 20, f"peak {peak} bytes for a {size}-byte file"


def test_write_head_copies_the_first_lines_gzipped(tmp_path):
    from minireason.data.io import write_head

    lines = [f'{{"n": {i}}}\n'.encode() for i in range(5)]
    plain = tmp_path / "in.jsonl"
    plain.write_bytes(b"".join(lines))
    packed = tmp_path / "in.jsonl.gz"
    packed.write_bytes(gzip.compress(b"".join(lines)))
    for src in (plain, packed):
        out = write_head(src, tmp_path / "sub" / f"{src.name}.head.gz", 3)
        assert gzip.decompress(out.read_bytes()) == b"".join(lines[:3])
    assert (
        gzip.decompress(write_head(plain, tmp_path / "all.gz", 99).read_bytes())
        == plain.read_bytes()
    )
