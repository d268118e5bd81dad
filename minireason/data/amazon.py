"""Amazon review data: the 2014 and 2018 releases (McAuley lab).

Reviews (both years) are JSON lines with ``reviewerID, asin, overall, unixReviewTime,
reviewText, summary`` (2018 adds ``verified, vote, style, image``; some 2018 records lack
``reviewText``). Metadata differs by year:

- 2014: each line is a *Python dict literal* (single quotes), parsed with
  ``ast.literal_eval`` (never ``eval``); tags come from ``categories`` (a list of category
  paths) and ``brand``;
- 2018: JSON; tags come from ``category`` (one path) and ``brand``; some asins appear more
  than once (merged into the first row, counted as ``merged``); titles can hold HTML
  (stripped; a title that is only markup becomes "").

The first element of a category path is the store root ("Musical Instruments", "Magazine
Subscriptions"): it is the same for every item, so it is not a useful tag and is dropped.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator

from minireason.data.accounting import LoadReport
from minireason.data.clean import (
    FieldProblem,
    clean_text,
    optional_text,
    require_number,
    require_str,
    require_time,
)
from minireason.data.io import iter_lines, refuse_json_array
from minireason.data.records import ItemMeta, Review

_LITERAL_ERRORS = (ValueError, SyntaxError, TypeError, MemoryError, RecursionError)


def parse_object(text: str, allow_literal: bool = False) -> dict:
    """Parse one line as a JSON object (or, if allowed, a Python dict literal).

    Raises FieldProblem("bad JSON" / "bad JSON or Python literal" / "not an object").
    """
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        if not allow_literal:
            raise FieldProblem("bad JSON") from None
        try:
            obj = ast.literal_eval(text)
        except _LITERAL_ERRORS:
            raise FieldProblem("bad JSON or Python literal") from None
    if not isinstance(obj, dict):
        raise FieldProblem("not an object", type(obj).__name__)
    return obj


def review_from_object(obj: dict) -> Review:
    """An Amazon review dict -> Review; FieldProblem names the bad field. Names are dropped."""
    text = obj.get("reviewText")
    if text is None:
        raise FieldProblem("missing field 'reviewText'")
    if not isinstance(text, str):
        raise FieldProblem("wrong type for 'reviewText'", type(text).__name__)
    review = Review(
        user=require_str(obj, "reviewerID"),
        item=require_str(obj, "asin"),
        rating=require_number(obj, "overall", 1.0, 5.0),
        time=require_time(obj, "unixReviewTime"),
        text=clean_text(text),
        summary=optional_text(obj, "summary"),
    )
    if not review.text:
        raise FieldProblem("empty text")
    return review


def load_reviews(path, report: LoadReport) -> Iterator[Review]:
    """Stream the valid reviews of an Amazon 2014/2018 review file (gzip or plain).
    A JSON array instead of JSON Lines is a ValueError, before any line is read."""
    refuse_json_array(path)
    fr = report.file(path)
    for lineno, text in iter_lines(path, report):
        try:
            review = review_from_object(parse_object(text))
        except FieldProblem as p:
            report.skip(path, lineno, p.reason, p.detail)
            continue
        review.source, review.line = str(path), lineno
        fr.kept += 1
        yield review


def _category_tags(obj: dict) -> list[str]:
    """Tags from 2014 ``categories`` (list of paths) or 2018 ``category`` (one path)."""
    paths = obj.get("categories")
    if paths is None:
        paths = [obj.get("category") or []]
    if not isinstance(paths, list):
        raise FieldProblem("wrong type for 'categories'", type(paths).__name__)
    tags: list[str] = []
    for path in paths:
        if not isinstance(path, list):
            raise FieldProblem("wrong type for 'category'", type(path).__name__)
        for name in path[1:]:
            tag = clean_text(str(name)).lower()
            if tag and tag not in tags:
                tags.append(tag)
    return tags


def meta_from_object(obj: dict) -> ItemMeta:
    """An Amazon metadata dict (2014 or 2018) -> ItemMeta."""
    meta = ItemMeta(
        item=require_str(obj, "asin"),
        title=optional_text(obj, "title"),
        tags=_category_tags(obj),
        brand=optional_text(obj, "brand"),
    )
    if meta.brand and meta.brand.lower() not in meta.tags:
        meta.tags.append(meta.brand.lower())
    return meta


def load_meta(path, report: LoadReport) -> dict[str, ItemMeta]:
    """All item metadata of a 2014 (dict literal) or 2018 (JSON) file: ``{asin: ItemMeta}``."""
    refuse_json_array(path)
    fr = report.file(path)
    items: dict[str, ItemMeta] = {}
    for lineno, text in iter_lines(path, report):
        try:
            meta = meta_from_object(parse_object(text, allow_literal=True))
        except FieldProblem as p:
            report.skip(path, lineno, p.reason, p.detail)
            continue
        if meta.item in items:
            items[meta.item].merge(meta)
            fr.merged += 1
        else:
            items[meta.item] = meta
            fr.kept += 1
    return items
