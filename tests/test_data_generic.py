"""JSONL and CSV input with a column mapping."""

from __future__ import annotations

import json

import pytest

from minireason.data.accounting import LoadReport
from minireason.data.generic import load_generic, parse_columns

MAPPING = {"user": "who", "item": "what", "rating": "stars", "time": "when", "text": "body"}


def test_parse_columns_checks_fields():
    assert parse_columns("user=a,item=b,rating=c,time=d,text=e") == {
        "user": "a",
        "item": "b",
        "rating": "c",
        "time": "d",
        "text": "e",
    }
    with pytest.raises(ValueError, match=r"missing \['time'\]"):
        parse_columns("user=a,item=b,rating=c")
    with pytest.raises(ValueError, match="unknown field 'colour'"):
        parse_columns("user=a,item=b,rating=c,time=d,colour=e")
    with pytest.raises(ValueError, match="'user' is not FIELD=COLUMN"):
        parse_columns("user,item=b")


def test_jsonl_with_mapping(tmp_path):
    rows = [
        {"who": "u", "what": "i", "stars": 4, "when": 10, "body": "Nice <i>cable</i>."},
        {"who": "u", "what": "j", "stars": 4},
        {"who": "v", "what": "i", "stars": "3.5", "when": "20"},
    ]
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = LoadReport()
    reviews = list(load_generic(path, "jsonl", MAPPING, report))
    assert [(r.user, r.item, r.rating, r.time, r.text) for r in reviews] == [
        ("u", "i", 4.0, 10, "Nice cable."),
        ("v", "i", 3.5, 20, ""),
    ]
    assert report.file(path).skipped == {"missing field 'when'": 1}


def test_csv_with_mapping_and_bad_rows(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text('who,what,stars,when,body\nu,i,5,10,"Sturdy stand, good."\nu,i,5\nv,i,6,10,x\n')
    report = LoadReport()
    reviews = list(load_generic(path, "csv", MAPPING, report, rating_range=(1, 5)))
    assert [(r.user, r.text) for r in reviews] == [("u", "Sturdy stand, good.")]
    fr = report.file(path)
    assert fr.skipped == {"wrong number of fields": 1, "'stars' out of range": 1}
    assert fr.accounted == fr.lines_read == 4


def test_unknown_format_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="format must be"):
        list(load_generic(tmp_path / "x", "xml", MAPPING, LoadReport()))
