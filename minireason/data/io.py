"""Reading input files line by line, gzip or plain, without loading them whole.

Gzip is recognised by its two magic bytes (``1f 8b``), not by the file name. Lines are
yielded one at a time as ``(line_number, text)`` (1-based), so a 1 GB file needs only the
memory of its longest line. Problems are counted in a
:class:`~minireason.data.accounting.LoadReport`:

- a line that is not valid UTF-8: skipped, reason "not UTF-8";
- a byte-order mark opening the file (``EF BB BF``, as Excel and Notepad write UTF-8): dropped;
- a blank line: skipped, reason "blank line";
- a gzip stream cut short (a partial download): the complete lines before the cut are
  yielded, the partial last line is lost, and the report says
  "truncated gzip stream after line N".
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

from minireason.data.accounting import LoadReport

GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path) -> bool:
    """True when the file starts with the gzip magic bytes."""
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def open_binary(path):
    """Open ``path`` for binary reading, decompressing gzip transparently."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def refuse_json_array(path) -> None:
    """Raise ValueError when ``path`` (gzip or plain) holds one JSON array rather than JSON
    Lines: an array over several lines (its first line does not parse alone), or an array of
    objects on the file's only line. Read line by line, it would look like one long malformed
    review. (A line that is an array among other lines is just a bad line, counted later.)"""
    with open_binary(path) as fh:
        try:
            first = fh.readline(1 << 24).strip()
            second = fh.readline(1 << 16).strip()
        except (EOFError, OSError, zlib.error):
            return  # a damaged stream: iter_lines reports it
    if not first.startswith(b"["):
        return
    try:
        value = json.loads(first)
    except ValueError:
        value = None  # the array goes on past the first line
    one_line_array = isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
    if value is None or (one_line_array and not second):
        raise ValueError(
            f"{path}: this is a JSON array; minireason reads one JSON object a line (JSON "
            f"Lines). Convert it first, e.g. jq -c '.[]' {Path(path).name} > reviews.jsonl"
        )


def iter_lines(path, report: LoadReport, blank: bool = False) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each non-blank UTF-8 line of ``path`` (and, with
    ``blank``, each blank one too: the caller then counts it).

    Every line read is counted in ``report.file(path).lines_read``; the caller counts the
    yielded lines as kept, merged or skipped.
    """
    fr = report.file(path)
    lineno = 0
    with open_binary(path) as fh:
        lines = iter(fh)
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                break
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                report.truncated(path, lineno, str(exc))
                break
            lineno += 1
            fr.lines_read += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                report.skip(path, lineno, "not UTF-8", f"byte {exc.start}")
                continue
            text = text.rstrip("\r\n")
            if lineno == 1:
                text = text.removeprefix("\ufeff")
            if not blank and not text.strip():
                report.skip(path, lineno, "blank line")
                continue
            yield lineno, text


def cut_short(path) -> str | None:
    """Why ``path`` is incomplete (a gzip stream that ends before its end marker), or None.
    Reads the whole file once, a line at a time."""
    report = LoadReport()
    for _ in iter_lines(path, report):
        pass
    return report.file(path).to_dict().get("truncated")


def write_head(src, dst, n_lines: int) -> Path:
    """Copy the first ``n_lines`` lines of ``src`` (gzip or plain) to ``dst``, gzipped.

    A small sample of a real file, for tests and quick runs; the source is only read.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open_binary(src) as fin, gzip.open(dst, "wb") as fout:
        for _, line in zip(range(n_lines), fin):
            fout.write(line)
    return dst
