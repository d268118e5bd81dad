"""MovieLens (GroupLens) CSVs: behaviour and tags, no review text.

- ``ratings.csv``: ``userId,movieId,rating,timestamp`` -> Review with ``text=""``
  (ratings 0.5 to 5.0);
- ``movies.csv``: ``movieId,title,genres`` -> ItemMeta, genres split on ``|``
  ("(no genres listed)" is not a tag);
- ``tags.csv``: ``userId,movieId,tag,timestamp`` -> free-text tags added (lower-cased,
  once each) to the movie's tags; a tag for a movie missing from movies.csv is skipped.

Each line is parsed with the ``csv`` module (quoted titles may hold commas), and a row whose
quoted field holds line breaks is read across its lines (:func:`iter_csv_rows`, which the
generic CSV reader shares), so files are streamed.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from minireason.data.accounting import LoadReport
from minireason.data.clean import (
    FieldProblem,
    clean_text,
    require_number,
    require_str,
    require_time,
)
from minireason.data.io import iter_lines
from minireason.data.records import ItemMeta, Review

MAX_ROW_LINES = 1000  # lines one CSV row may span (a quoted field with line breaks)


def iter_csv_rows(path, report: LoadReport, columns: list[str] | None = None):
    """Yield ``(line_number, {column: value})`` for each data row of a CSV file with a header.

    ``columns``: the header names that must be present (a missing one is a ValueError).
    Rows with the wrong number of fields are skipped ("wrong number of fields"). A quoted
    field may hold line breaks (a review's paragraphs): its row is read across those lines
    and numbered by its first; a quote still open after :data:`MAX_ROW_LINES` lines or at
    the end of the file skips the row ("unclosed quote").
    """
    fr = report.file(path)
    header = None
    for lineno, row in _csv_records(path, report):
        if header is None:
            header = [h.strip() for h in row]
            missing = [c for c in (columns or []) if c not in header]
            if missing:
                raise ValueError(f"{path}:{lineno}: header lacks column(s) {missing}; has {header}")
            fr.header += 1
            continue
        if len(row) != len(header):
            report.skip(path, lineno, "wrong number of fields", f"{len(row)} != {len(header)}")
            continue
        yield lineno, dict(zip(header, row, strict=True))


def _csv_records(path, report: LoadReport):
    """Yield ``(first line number, fields)`` for each CSV record of ``path``, a record
    spanning lines where a quoted field holds line breaks (:func:`iter_csv_rows`)."""
    pending, start, spans = None, 0, 0
    for lineno, text in iter_lines(path, report, blank=True):
        if pending is None:
            if not text.strip():
                report.skip(path, lineno, "blank line")
                continue
            start, spans = lineno, 0
        else:
            text = pending + "\n" + text
        try:
            row = next(csv.reader([text], strict=True))
        except csv.Error as exc:
            if "unexpected end of data" in str(exc) and spans < MAX_ROW_LINES:
                pending, spans = text, spans + 1  # a quoted field goes on on the next line
                continue
            pending = None
            if "unexpected end of data" in str(exc):
                report.skip(path, start, "unclosed quote", f"still open after {spans} lines")
                continue
            try:
                row = next(csv.reader([text]))  # lenient: a stray quote inside a field is text
            except csv.Error as exc:
                report.skip(path, start, "bad CSV", str(exc))
                continue
        pending = None
        yield start, row
    if pending is not None:
        report.skip(path, start, "unclosed quote", "a quoted field runs to the end of the file")


def load_ratings(path, report: LoadReport) -> Iterator[Review]:
    """Stream ``ratings.csv`` as Reviews without text."""
    fr = report.file(path)
    for lineno, row in iter_csv_rows(path, report, ["userId", "movieId", "rating", "timestamp"]):
        try:
            review = Review(
                user=require_str(row, "userId"),
                item=require_str(row, "movieId"),
                rating=require_number(row, "rating", 0.5, 5.0),
                time=require_time(row, "timestamp"),
                source=str(path),
                line=lineno,
            )
        except FieldProblem as p:
            report.skip(path, lineno, p.reason, p.detail)
            continue
        fr.kept += 1
        yield review


def load_movies(path, report: LoadReport) -> dict[str, ItemMeta]:
    """``movies.csv`` -> ``{movieId: ItemMeta(title, genres as tags)}``."""
    fr = report.file(path)
    items: dict[str, ItemMeta] = {}
    for lineno, row in iter_csv_rows(path, report, ["movieId", "title", "genres"]):
        try:
            movie = require_str(row, "movieId")
        except FieldProblem as p:
            report.skip(path, lineno, p.reason, p.detail)
            continue
        genres = [g.strip().lower() for g in row["genres"].split("|")]
        tags = [g for g in genres if g and g != "(no genres listed)"]
        meta = ItemMeta(item=movie, title=clean_text(row["title"]), tags=tags)
        if movie in items:
            items[movie].merge(meta)
            fr.merged += 1
        else:
            items[movie] = meta
            fr.kept += 1
    return items


def add_tags(path, items: dict[str, ItemMeta], report: LoadReport) -> None:
    """Add the free-text tags of ``tags.csv`` to the movies in ``items`` (in place)."""
    fr = report.file(path)
    for lineno, row in iter_csv_rows(path, report, ["userId", "movieId", "tag", "timestamp"]):
        movie = row["movieId"].strip()
        tag = clean_text(row["tag"]).lower()
        if movie not in items:
            report.skip(path, lineno, "unknown movieId", movie)
            continue
        if not tag:
            report.skip(path, lineno, "empty field 'tag'")
            continue
        if tag not in items[movie].tags:
            items[movie].tags.append(tag)
        fr.kept += 1


def load_movielens(folder, report: LoadReport) -> tuple[list[Review], dict[str, ItemMeta]]:
    """A MovieLens folder (ratings.csv, movies.csv, tags.csv) -> (reviews, items)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"MovieLens folder not found: {folder}")
    items = load_movies(folder / "movies.csv", report)
    if (folder / "tags.csv").is_file():
        add_tags(folder / "tags.csv", items, report)
    reviews = list(load_ratings(folder / "ratings.csv", report))
    return reviews, items
