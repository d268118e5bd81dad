"""Amazon loaders: hand-made bad lines, fuzzed JSON-ish lines, and the real files."""

from __future__ import annotations

import gzip
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minireason.data import amazon
from minireason.data.accounting import DataError, LoadReport
from minireason.data.clean import clean_text, drop_duplicates, one_line
from minireason.data.generic import REQUIRED, load_generic
from minireason.data.movielens import load_ratings

GOOD = {
    "reviewerID": "U1",
    "asin": "I1",
    "reviewerName": "Jane Doe",
    "overall": 5.0,
    "unixReviewTime": 1393545600,
    "reviewText": "Great <b>strings</b>, bright tone.",
    "summary": "good",
}


def _line(**changes) -> str:
    obj = {**GOOD, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not ...})


def _write(tmp_path, lines, name="reviews.json"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_one_line_leaves_no_line_break_a_reader_would_split_on():
    text = "Great\r tone\x0c and\x85 feel\u2028 <b>&amp;\n\tstrings\x1e "
    assert one_line(text) == "Great tone and feel <b>&amp; strings"
    assert one_line(text).splitlines() == [one_line(text)]
    assert one_line("") == ""


def test_clean_text_strips_html_entities_control_chars_and_spaces():
    assert clean_text("  A&amp;B <i>nice</i>\x00 \t tone\u200b\n") == "A&B nice tone"
    assert clean_text('<span class="a-size-medium a-color-secondary"') == ""
    assert clean_text(' Magazines" />') == ""
    assert clean_text("one<br/>two <b>strings</b>, tone") == "one two strings, tone"


def test_good_review_is_cleaned_and_the_reviewer_name_dropped(tmp_path):
    path = _write(tmp_path, [_line()])
    (review,) = list(amazon.load_reviews(path, LoadReport()))
    assert (review.user, review.item, review.rating, review.time) == ("U1", "I1", 5.0, 1393545600)
    assert review.text == "Great strings, bright tone."
    assert "Jane" not in json.dumps(vars(review))
    assert (review.source, review.line) == (str(path), 1)


BAD_LINES = [
    ("{not json", "bad JSON"),
    ("[1, 2]", "not an object"),
    (_line(reviewerID=...), "missing field 'reviewerID'"),
    (_line(asin=["x"]), "wrong type for 'asin'"),
    (_line(overall="five"), "wrong type for 'overall'"),
    (_line(overall=9), "'overall' out of range"),
    (_line(overall=True), "wrong type for 'overall'"),
    (_line(unixReviewTime=-5), "'unixReviewTime' out of range"),
    (_line(reviewText=...), "missing field 'reviewText'"),
    (_line(reviewText=17), "wrong type for 'reviewText'"),
    (_line(reviewText="  <br/> "), "empty text"),
    (_line(summary=3), "wrong type for 'summary'"),
]


def test_each_bad_line_is_counted_by_reason_with_its_line_number(tmp_path):
    lines = [_line()] + [text for text, _ in BAD_LINES] + [_line(asin="I2")]
    path = _write(tmp_path, lines)
    report = LoadReport()
    kept = list(amazon.load_reviews(path, report))
    fr = report.file(path)
    assert [r.item for r in kept] == ["I1", "I2"]
    assert fr.lines_read == len(lines) == fr.accounted
    for lineno, (_, reason) in enumerate(BAD_LINES, start=2):
        assert any(ex.startswith(f"{path}:{lineno}: {reason}") for ex in fr.examples[reason]), (
            reason
        )


@pytest.mark.parametrize("text, reason", BAD_LINES)
def test_strict_mode_names_file_line_and_field(tmp_path, text, reason):
    path = _write(tmp_path, [_line(), text])
    with pytest.raises(DataError) as err:
        list(amazon.load_reviews(path, LoadReport(strict=True)))
    assert str(err.value).startswith(f"{path}:2: {reason}")


def test_duplicates_and_repeats_are_counted_not_silently_dropped(tmp_path):
    lines = [_line(), _line(), _line(unixReviewTime=1400000000), _line(reviewerID="U2")]
    path = _write(tmp_path, lines)
    report = LoadReport()
    reviews = drop_duplicates(list(amazon.load_reviews(path, report)), report)
    fr = report.file(path)
    assert [(r.user, r.line) for r in reviews] == [("U1", 1), ("U2", 4)]
    assert fr.kept == 2
    assert fr.skipped == {"duplicate review": 1, "repeat review of the same item": 1}
    assert fr.examples["duplicate review"] == [f"{path}:2: duplicate review (first at line 1)"]
    assert fr.accounted == fr.lines_read == 4


def test_2014_metadata_uses_literal_eval_never_eval(tmp_path):
    lines = [
        "{'asin': 'B1', 'title': 'Tuner &amp; Clip', 'brand': 'Snark', "
        "'categories': [['Musical Instruments', 'Instrument Accessories', 'Tuners']]}",
        "__import__('os').system('touch PWNED')",
        "{'asin': 'B1', 'categories': [['Musical Instruments', 'Clips']]}",
        "{'title': 'no asin'}",
    ]
    path = _write(tmp_path, lines, "meta.json")
    report = LoadReport()
    items = amazon.load_meta(path, report)
    assert not (tmp_path / "PWNED").exists()
    assert items["B1"].title == "Tuner & Clip"
    assert items["B1"].tags == ["instrument accessories", "tuners", "snark", "clips"]
    fr = report.file(path)
    assert (fr.kept, fr.merged) == (1, 1)
    assert fr.skipped == {"bad JSON or Python literal": 1, "missing field 'asin'": 1}


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "reviewerID": JSONISH,
        "asin": JSONISH,
        "overall": JSONISH,
        "unixReviewTime": JSONISH,
        "reviewText": JSONISH,
        "summary": JSONISH,
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    objs=st.lists(FIELDS | JSONISH, min_size=1, max_size=8),
    junk=st.lists(st.text(max_size=20), max_size=3),
    gz=st.booleans(),
)
def test_fuzz_jsonish_lines_every_line_accounted(tmp_path, objs, junk, gz):
    lines = [json.dumps(o) for o in objs] + [j.replace("\n", " ").replace("\r", " ") for j in junk]
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
    path = tmp_path / "fuzz.json"
    path.write_bytes(gzip.compress(data) if gz else data)
    report = LoadReport()
    first = objs[0]
    if (
        isinstance(first, list)
        and first
        and all(isinstance(v, dict) for v in first)
        and (len(lines) == 1 or not lines[1].encode("utf-8", "surrogatepass").strip())
    ):  # a file that is one JSON array of objects: refused as a whole, with what to do
        with pytest.raises(ValueError, match="this is a JSON array; minireason reads one JSON"):
            list(amazon.load_reviews(path, report))
        return
    kept = list(amazon.load_reviews(path, report))
    meta_report = LoadReport()
    amazon.load_meta(path, meta_report)
    fr, mr = report.file(path), meta_report.file(path)
    assert fr.lines_read == len(data.split(b"\n")) - 1
    assert fr.lines_read == fr.accounted and fr.kept == len(kept)
    assert mr.lines_read == mr.accounted


def test_real_musical_instruments_every_line_accounted(data_dir):
    path = data_dir / "amazon-musical-instruments-2014" / "reviews_Musical_Instruments_5.json.gz"
    report = LoadReport(max_examples=10)
    reviews = list(amazon.load_reviews(path, report))
    fr = report.file(path)
    assert fr.lines_read == 10_261
    assert fr.skipped == {"empty text": 7}
    assert len(reviews) == fr.kept == 10_254
    empty_lines = sorted(int(ex.split(":")[1]) for ex in fr.examples["empty text"])
    assert len(empty_lines) == 7 and all(1 <= n <= 10_261 for n in empty_lines)
    assert {r.line for r in reviews}.isdisjoint(empty_lines)
    assert len({r.user for r in reviews}) == 1429 and len({r.item for r in reviews}) == 900


def test_real_magazines_reviews_and_metadata(data_dir):
    folder = data_dir / "amazon2018-magazines"
    report = LoadReport()
    reviews = list(amazon.load_reviews(folder / "Magazine_Subscriptions_5.json.gz", report))
    items = amazon.load_meta(folder / "meta_Magazine_Subscriptions.json.gz", report)
    rf = report.file(folder / "Magazine_Subscriptions_5.json.gz")
    mf = report.file(folder / "meta_Magazine_Subscriptions.json.gz")
    assert rf.lines_read == 2375 == rf.accounted
    assert rf.skipped["missing field 'reviewText'"] >= 1
    assert mf.lines_read == 3385 == mf.kept + mf.merged
    assert mf.merged > 0 and len(items) == mf.kept
    assert all("<" not in m.title and ">" not in m.title for m in items.values())
    assert all("magazine subscriptions" not in m.tags for m in items.values())
    reviewed = {r.item for r in reviews}
    assert sum(1 for i in reviewed if items.get(i) and items[i].tags) > 0.9 * len(reviewed)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=300), gz=st.booleans())
def test_fuzz_random_bytes_through_every_loader(tmp_path, data, gz):
    path = tmp_path / "fuzz.bin"
    path.write_bytes(gzip.compress(data) if gz else data)
    n_lines = len(data.split(b"\n")) - (1 if data.endswith(b"\n") or not data else 0)
    header = "userId,movieId,rating,timestamp"
    json_refusal = "this is a JSON array"  # a JSON Lines file that starts with "["
    csv_refusal = "header lacks column"  # a CSV whose first line is not the expected header
    loaders = [
        (lambda rep: list(amazon.load_reviews(path, rep)), json_refusal),
        (lambda rep: amazon.load_meta(path, rep), json_refusal),
        (lambda rep: list(load_ratings(path, rep)), csv_refusal),
        (
            lambda rep: list(
                load_generic(path, "csv", dict(zip(REQUIRED, header.split(","))), rep)
            ),
            csv_refusal,
        ),
    ]
    for load, refusal in loaders:
        report = LoadReport()
        try:
            load(report)
        except ValueError as exc:
            assert str(exc).startswith(f"{path}:") and refusal in str(exc)
            continue
        fr = report.file(path)
        assert fr.lines_read == fr.accounted
        assert fr.lines_read == n_lines or fr.truncated_after == fr.lines_read < n_lines
