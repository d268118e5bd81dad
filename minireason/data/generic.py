"""Your own data: JSON lines or CSV, with a column mapping.

The mapping says which input column holds each record field, e.g.::

    {"user": "customer", "item": "product", "rating": "stars", "time": "ts",
     "text": "body", "summary": "title"}

``user``, ``item``, ``rating`` and ``time`` are required; ``text`` and ``summary`` are
optional (absent: ""). On the command line: ``--columns user=customer,item=product,...``.
Ratings must lie in ``[rating_min, rating_max]``; times are Unix seconds.
CSV files need a header line; a quoted field may hold line breaks.
"""

from __future__ import annotations

from collections.abc import Iterator

from minireason.data.accounting import LoadReport
from minireason.data.amazon import parse_object
from minireason.data.clean import (
    FieldProblem,
    optional_text,
    require_number,
    require_str,
    require_time,
)
from minireason.data.io import iter_lines, refuse_json_array
from minireason.data.movielens import iter_csv_rows
from minireason.data.records import Review

REQUIRED = ("user", "item", "rating", "time")
OPTIONAL = ("text", "summary")


def parse_columns(spec: str) -> dict[str, str]:
    """``"user=a,item=b,..."`` -> ``{"user": "a", "item": "b", ...}`` (checked)."""
    mapping = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise ValueError(f"--columns: '{part}' is not FIELD=COLUMN")
        if key not in REQUIRED + OPTIONAL:
            raise ValueError(f"--columns: unknown field '{key}'; fields: {REQUIRED + OPTIONAL}")
        mapping[key] = value
    missing = [k for k in REQUIRED if k not in mapping]
    if missing:
        raise ValueError(f"--columns: missing {missing} (required: {list(REQUIRED)})")
    return mapping


def review_from_mapping(obj: dict, mapping: dict[str, str], rating_range) -> Review:
    low, high = rating_range
    col = mapping.get
    return Review(
        user=require_str(obj, col("user")),
        item=require_str(obj, col("item")),
        rating=require_number(obj, col("rating"), low, high),
        time=require_time(obj, col("time")),
        text=optional_text(obj, col("text")) if "text" in mapping else "",
        summary=optional_text(obj, col("summary")) if "summary" in mapping else "",
    )


def load_generic(
    path, fmt: str, mapping: dict[str, str], report: LoadReport, rating_range=(0.0, 5.0)
) -> Iterator[Review]:
    """Stream Reviews from a ``jsonl`` or ``csv`` file using ``mapping`` (see module doc)."""
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"format must be 'jsonl' or 'csv', not {fmt!r}")
    fr = report.file(path)
    if fmt == "jsonl":
        refuse_json_array(path)
        rows = ((n, text) for n, text in iter_lines(path, report))
    else:
        rows = iter_csv_rows(path, report, list(mapping.values()))
    for lineno, row in rows:
        try:
            obj = parse_object(row) if fmt == "jsonl" else row
            review = review_from_mapping(obj, mapping, rating_range)
        except FieldProblem as p:
            report.skip(path, lineno, p.reason, p.detail)
            continue
        review.source, review.line = str(path), lineno
        fr.kept += 1
        yield review
