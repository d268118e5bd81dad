"""Step 1 bookkeeping: every input line is accounted for.

A :class:`LoadReport` counts, per file, the lines read and what became of each one::

    lines_read == header + kept + merged + sum(skipped.values())

``skipped`` is keyed by a short reason ("bad JSON", "missing field 'reviewText'", ...), and
the first few examples of each reason are kept as ``"file:line: detail"`` strings. A gzip
stream cut short is recorded as ``truncated_after`` (the last complete line). With
``strict=True`` the first problem raises :class:`DataError` naming file, line and field
instead of being counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


class DataError(ValueError):
    """A malformed input in strict mode; the message names file:line and the field."""


@dataclass
class FileReport:
    """What happened to the lines of one input file."""

    path: str
    lines_read: int = 0
    header: int = 0
    kept: int = 0
    merged: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)
    truncated_after: int | None = None
    truncated_detail: str = ""

    @property
    def accounted(self) -> int:
        """header + kept + merged + skipped: equals ``lines_read`` when nothing is lost."""
        return self.header + self.kept + self.merged + sum(self.skipped.values())

    def to_dict(self) -> dict:
        out = {
            "path": self.path,
            "lines_read": self.lines_read,
            "header": self.header,
            "kept": self.kept,
            "merged": self.merged,
            "skipped": dict(sorted(self.skipped.items())),
            "examples": {k: list(v) for k, v in sorted(self.examples.items())},
        }
        if self.truncated_after is not None:
            out["truncated"] = (
                f"truncated gzip stream after line {self.truncated_after} ({self.truncated_detail})"
            )
        return out


class LoadReport:
    """Counts per file; ``strict`` turns the first problem into a :class:`DataError`."""

    def __init__(self, strict: bool = False, max_examples: int = 5):
        self.strict = strict
        self.max_examples = max_examples
        self.files: dict[str, FileReport] = {}

    def file(self, path) -> FileReport:
        key = str(path)
        if key not in self.files:
            self.files[key] = FileReport(key)
        return self.files[key]

    def skip(self, path, line: int, reason: str, detail: str = "", was_kept: bool = False):
        """Count line ``line`` of ``path`` as skipped for ``reason`` (raise if strict).

        ``was_kept`` moves a line that a loader had kept (a duplicate found later) to skipped.
        """
        where = f"{path}:{line}"
        message = f"{where}: {reason}" + (f" ({detail})" if detail else "")
        if self.strict:
            raise DataError(message)
        fr = self.file(path)
        if was_kept:
            fr.kept -= 1
        fr.skipped[reason] += 1
        examples = fr.examples.setdefault(reason, [])
        if len(examples) < self.max_examples:
            examples.append(message)

    def truncated(self, path, after_line: int, detail: str):
        """Record a gzip stream that ends before its end marker (raise if strict)."""
        if self.strict:
            raise DataError(f"{path}: truncated gzip stream after line {after_line} ({detail})")
        fr = self.file(path)
        fr.truncated_after = after_line
        fr.truncated_detail = detail

    def to_dict(self) -> dict:
        return {"strict": self.strict, "files": [fr.to_dict() for fr in self.files.values()]}

    def summary(self) -> str:
        """One line: per file, lines read and kept, what was skipped and why (the commonest
        reasons with a file:line example each), and any cut-short gzip stream."""
        parts = []
        for fr in self.files.values():
            bits = [f"{fr.lines_read} lines read, {fr.kept} kept"]
            for reason, n in fr.skipped.most_common(3):
                example = fr.examples.get(reason, [""])[0].split(": ", 1)[0]
                bits.append(f"{n} skipped for {reason} (first at {example})")
            if fr.truncated_after is not None:
                bits.append(f"the gzip stream is cut short after line {fr.truncated_after}")
            parts.append(f"{fr.path}: " + ", ".join(bits))
        return "; ".join(parts) or "no file was read"
