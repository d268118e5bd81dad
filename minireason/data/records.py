"""The two records every loader produces, whatever the source format.

Reviewer names are never kept (privacy, seed section 9.1): a user is an opaque id.
``source`` and ``line`` say where a record came from, so later stages can report problems
as ``file:line``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Review:
    """One behaviour event: ``user`` rated ``item`` at ``time`` (Unix seconds), with text.

    ``text`` and ``summary`` are cleaned (no HTML, no control characters, single spaces);
    ``text`` is "" for sources without review text (MovieLens ratings).
    """

    user: str
    item: str
    rating: float
    time: int
    text: str = ""
    summary: str = ""
    source: str = ""
    line: int = 0


@dataclass
class ItemMeta:
    """Item metadata: a display title, tags (categories, genres, user tags) and a brand."""

    item: str
    title: str = ""
    tags: list[str] = field(default_factory=list)
    brand: str = ""

    def merge(self, other: ItemMeta) -> None:
        """Fold a duplicate row for the same item into this one (first non-empty wins)."""
        self.title = self.title or other.title
        self.brand = self.brand or other.brand
        for tag in other.tags:
            if tag not in self.tags:
                self.tags.append(tag)
