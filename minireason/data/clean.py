"""Text cleaning, field checks and de-duplication (seed step 1).

``clean_text`` turns raw review text into one readable line: HTML entities decoded, tags
and control characters removed, whitespace collapsed. Field checks (``require_*``) return
the value or a ``(reason, detail)`` problem that the loader counts in its report.
"""

from __future__ import annotations

import html
import re

from minireason.data.accounting import LoadReport
from minireason.data.records import Review

_TAG = re.compile(r"<[^<>]*(>|$)")  # a tag, or an unterminated tag at the end
_TAG_TAIL = re.compile(r'^[^<>]*"\s*/?>')  # the end of a tag cut off before the text
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
_SPACE = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """Decode HTML entities, strip tags and control characters, collapse whitespace.

    A tag becomes a space (so "one<br>two" stays two words); spaces before , . ; : ! ?
    are then removed (so "<b>strings</b>, tone" reads "strings, tone"). A text that starts
    with the tail of a cut-off tag (2018 titles such as ``Magazines" />``) loses that tail.
    """
    text = html.unescape(text)
    text = _TAG_TAIL.sub(" ", text)
    text = _TAG.sub(" ", text)
    return _SPACE_BEFORE_PUNCT.sub(r"\1", one_line(text))


def one_line(text: str) -> str:
    """``text`` with control characters and line breaks as spaces, whitespace collapsed.

    What a generated reason is shown as: a model can sample a carriage return or a form
    feed, which a terminal or a line-oriented reader would take for the end of the line.
    """
    return _SPACE.sub(" ", _CONTROL.sub(" ", text)).strip()


class FieldProblem(Exception):
    """A record field is missing or has the wrong type or value: ``(reason, detail)``."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def require_str(obj: dict, name: str) -> str:
    """The non-empty string ``obj[name]`` (numbers are accepted as ids), else FieldProblem."""
    if name not in obj or obj[name] is None:
        raise FieldProblem(f"missing field '{name}'")
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise FieldProblem(f"wrong type for '{name}'", f"{type(value).__name__}")
    value = str(value).strip()
    if not value:
        raise FieldProblem(f"empty field '{name}'")
    return value


def require_number(obj: dict, name: str, low: float, high: float) -> float:
    """``obj[name]`` as a float in ``[low, high]`` (numeric strings accepted), else FieldProblem."""
    if name not in obj or obj[name] is None:
        raise FieldProblem(f"missing field '{name}'")
    value = obj[name]
    if isinstance(value, bool):
        raise FieldProblem(f"wrong type for '{name}'", "bool")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FieldProblem(f"wrong type for '{name}'", repr(value)[:40]) from None
    if not low <= number <= high:
        raise FieldProblem(f"'{name}' out of range", f"{number} not in [{low}, {high}]")
    return number


def optional_text(obj: dict, name: str) -> str:
    """``obj[name]`` cleaned, or "" when absent; a non-string value is a FieldProblem."""
    value = obj.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FieldProblem(f"wrong type for '{name}'", type(value).__name__)
    return clean_text(value)


MAX_TIME = 4_102_444_800  # 2100-01-01: later timestamps are data errors


def require_time(obj: dict, name: str) -> int:
    """``obj[name]`` as Unix seconds (an integer-valued number), else FieldProblem."""
    return int(require_number(obj, name, 0, MAX_TIME))


def drop_duplicates(reviews: list[Review], report: LoadReport) -> list[Review]:
    """Keep the first review of each (user, item) pair; count the others by reason.

    "duplicate review": the same user, item, time and text again (a repeated line);
    "repeat review of the same item": the same user and item with another time or text
    (e.g. a print and a Kindle edition); one interaction per pair is kept, the first in file
    order.
    """
    seen: dict[tuple[str, str], Review] = {}
    kept = []
    for r in reviews:
        key = (r.user, r.item)
        first = seen.get(key)
        if first is None:
            seen[key] = r
            kept.append(r)
            continue
        same = first.time == r.time and first.text == r.text
        reason = "duplicate review" if same else "repeat review of the same item"
        report.skip(r.source, r.line, reason, f"first at line {first.line}", was_kept=True)
    return kept


def sort_histories(reviews: list[Review]) -> dict[str, list[Review]]:
    """Each user's reviews sorted by time (file order breaks ties): ``{user: [Review, ...]}``."""
    by_user: dict[str, list[Review]] = {}
    for r in reviews:
        by_user.setdefault(r.user, []).append(r)
    for history in by_user.values():
        history.sort(key=lambda r: (r.time, r.source, r.line))
    return by_user
