"""A self-contained HTML page: data embedded as JSON, drawn by inline JavaScript.

The pages of :mod:`minireason.reason.explanations_page` (explanations) and
:mod:`minireason.evaluation.render` (the evaluation) are one file each, with no network:
inline CSS (``minireason/templates/page.css``, shared, plus the page's own), the page's
script (``minireason/templates/common.js`` and the page's own ``.js``) and its data as JSON
in ``<script type="application/json">``, which the script reads with ``JSON.parse`` and
draws with ``textContent`` (never ``innerHTML``), so a review that contains ``</script>`` or
``<img src=x onerror=...>`` shows as text.

The JSON is escaped twice over: ``<``, ``>`` and ``&`` become ``\\u003c``, ``\\u003e`` and
``\\u0026`` (so no ``</script>`` or ``<!--`` can close or bend the element), as do U+2028 and
U+2029. A Content-Security-Policy allows only the page's own script (by its SHA-256),
inline styles and ``data:`` images: nothing is fetched, and no injected handler would run.
The head carries :data:`minireason.files.HTML_MARK`, so a command may replace a page this
project wrote and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from pathlib import Path

from minireason.files import HTML_MARK, atomic_write_text

TEMPLATES = Path(__file__).with_name("templates")

_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def embed_json(data) -> str:
    """``data`` as JSON text safe inside a ``<script>`` element (module docstring).

    NaN and infinities are refused (JSON has none): a ValueError names the problem.
    """
    try:
        text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError as exc:
        raise ValueError(f"page data is not valid JSON: {exc}") from None
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def template(name) -> str:
    """The text of ``minireason/templates/NAME`` (package data), or of the file at a
    ``Path`` (a page's own templates)."""
    path = name if isinstance(name, Path) else TEMPLATES / name
    return path.read_text(encoding="utf-8")


def render_page(title: str, data, scripts: list, css: str = "") -> str:
    """The whole page: ``title`` (escaped), the shared stylesheet plus ``css``, ``data``
    embedded as JSON (element id ``data``), and the ``scripts`` (names in
    ``minireason/templates/``, or paths: e.g. ``["common.js", TEMPLATES / "explanations.js"]``
    with the page's own ``TEMPLATES``) as one inline script."""
    script = "\n".join(template(name) for name in scripts)
    if "</script" in script.lower() or "<!--" in script:
        raise ValueError("a page script must not contain '</script' or '<!--'")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    policy = (
        f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            HTML_MARK,  # what lets a later --html replace this page (minireason.files)
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(title)}</title>",
            "<style>",
            template("page.css") + css,
            "</style>",
            "</head>",
            "<body>",
            '<main id="app"><noscript>This page draws itself with JavaScript; '
            "please allow scripts for this file.</noscript></main>",
            f'<script type="application/json" id="data">{embed_json(data)}</script>',
            f"<script>{script}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )


def write_page(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`minireason.files.atomic_write_text`), so
    an interrupted write never leaves a half page; the folder is made if missing. Returns
    the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, text)
