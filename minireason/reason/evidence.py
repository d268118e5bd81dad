"""Seed step 4, the evidence: what the chosen reason attended to in its prompt.

One forward pass over ``prompt + chosen reason`` gives each layer's attention
``(H, T, T)``; we average over layers and heads. The rows we read are the positions whose
output *generated* a reason token: the prompt's last token (``<reason>``, which produced the
first reason token) up to the token before the final one; row ``i`` is the attention while
producing reason token ``i``. For each row, the weight on a prompt segment is the sum over
the segment's tokens; averaging the rows gives the segment's mass. Segments are then
aggregated by owner (``hist:i``, the i-th history item, or ``item``, the target item's
block), normalised to sum to 1 over the prompt, and ranked; the same is done for the single
tags and aspects inside them. Attention is a view into what the model looked at, not a proof
of why it said something; we show it as such.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minireason import backend
from minireason.files import write_png
from minireason.prep.prompts import Segment


@dataclass
class Share:
    """One evidence entry: a segment owner or a single tag/aspect, and its attention share."""

    kind: str  # "hist" / "item" for owners; "tag" / "aspect" / "rating" for pieces
    label: str  # item id, or the tag / aspect text
    owner: str  # "hist:i" or "item"
    share: float  # fraction of the attention paid to the prompt


@dataclass
class Evidence:
    owners: list[Share]  # history items and the target item, largest share first
    pieces: list[Share]  # single tags / aspects / ratings, largest share first (top_k)
    matrix: np.ndarray  # (R, P): rows = reason tokens generated, cols = prompt tokens
    row_tokens: list[str]  # the token each row generated
    prompt_tokens: list[str]
    segments: list[Segment]
    heads: np.ndarray | None = None  # (L, H, R, P): the rows of ``matrix`` per layer and head


# --------------------------------------------------------------------------- evidence


def segment_mass(attention, rows, segments: list[Segment]) -> np.ndarray:
    """Mean attention (over ``rows``) paid to each segment, summed over its tokens.

    Args:
        attention: ``(T, T)`` weights (row = query position, col = key position).
        rows: query positions to read.
        segments: spans ``start:end`` of key positions.

    Returns:
        ``(len(segments),)``.
    """
    read = attention[np.asarray(rows)]  # (R, T)
    return np.array([read[:, s.start : s.end].sum(axis=1).mean() for s in segments])


def rank_shares(segments: list[Segment], mass: np.ndarray, top_k: int | None = None):
    """``Share`` entries for ``segments`` with ``mass`` normalised to sum 1, largest first."""
    total = float(mass.sum())
    shares = [
        Share(s.kind, s.label, s.owner, float(m) / total if total > 0 else 0.0)
        for s, m in zip(segments, mass, strict=True)
    ]
    shares.sort(key=lambda s: -s.share)
    return shares if top_k is None else shares[:top_k]


def aggregate_evidence(attention, prompt_len: int, segments: list[Segment], top_k: int = 5):
    """Evidence from averaged attention ``(T, T)`` over a prompt of ``prompt_len`` tokens.

    The rows read are ``prompt_len - 1 .. T - 1`` (the positions that generated the reason).
    Owners are the top-level ``hist`` / ``item`` segments (they tile the prompt); pieces are
    the ``tag`` / ``aspect`` / ``rating`` segments, each normalised over its own group.

    Returns:
        ``(owners, pieces)``: lists of :class:`Share`.
    """
    rows = range(prompt_len - 1, attention.shape[0])
    top = [s for s in segments if s.kind in ("hist", "item")]
    inner = [s for s in segments if s.kind not in ("hist", "item")]
    owners = rank_shares(top, segment_mass(attention, rows, top))
    pieces = rank_shares(inner, segment_mass(attention, rows, inner), top_k) if inner else []
    return owners, pieces


def attention_evidence(
    model,
    tokenizer,
    prompt_ids: list[int],
    reason_ids: list[int],
    segments: list[Segment],
    top_k: int = 5,
) -> Evidence:
    """Forward ``prompt + reason`` once and read the evidence (see the module docstring).

    ``reason_ids`` are the generated ids, the stopping ``<eos>`` included; the sequence fed is
    the prompt and every reason id but the last (whose attention generated nothing). The
    model should be in eval mode (``checkpoint.load_model`` returns it so): dropout would
    perturb the weights read.
    """
    xp = backend.array_module(model.params["wte"])
    seq = prompt_ids + reason_ids[:-1]
    model.forward(xp.asarray([seq], dtype=xp.int64), keep_cache=False)
    layers = model.attention_weights()  # per layer (1, H, T, T)
    mean = backend.to_numpy(sum(a[0].mean(axis=0) for a in layers) / len(layers))  # (T, T)
    P = len(prompt_ids)
    heads = np.stack([backend.to_numpy(a[0, :, P - 1 :, :P]) for a in layers])  # (L, H, R, P)
    owners, pieces = aggregate_evidence(mean, P, segments, top_k)
    return Evidence(
        owners=owners,
        pieces=pieces,
        matrix=mean[P - 1 :, :P],  # rows: positions P-1 .. end, each generated a reason token
        row_tokens=[_token_text(tokenizer, t) for t in reason_ids],
        prompt_tokens=[_token_text(tokenizer, t) for t in prompt_ids],
        segments=segments,
        heads=heads,
    )


def _token_text(tokenizer, token_id: int) -> str:
    """A printable label for one token: its text without the leading space, else its ascii()
    (for whitespace, control characters and partial UTF-8 bytes)."""
    text = tokenizer.decode([token_id]).strip()
    return text if text and text.isprintable() and text.isascii() else ascii(text or " ")


# --------------------------------------------------------------------------- plot


def shorten(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` characters at a word boundary, with "..." when cut."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    cut = text[: width - 3].rsplit(" ", 1)[0] if " " in text[: width - 3] else text[: width - 3]
    return cut.rstrip(" ,;:") + "..."


def plot_evidence(explanation, path):
    """Write :func:`evidence_figure` to a PNG marked as this project's, atomically
    (:func:`minireason.files.write_png`); return the path."""
    return write_png(path, evidence_figure(explanation))


def evidence_figure(explanation, fig=None):
    """The chosen reason's attention over the prompt as a heatmap, drawn into ``fig`` (e.g.
    ``plt.figure()``, which a notebook shows inline) or into a new Matplotlib ``Figure``.

    Rows: the reason tokens (each row is the attention while generating that token); columns:
    the prompt tokens, labelled, with the history-item / item segment boundaries drawn as
    vertical lines and their owners written above; the focus tokens' labels are marked
    ``[focus]`` and drawn in bold; the colour bar says what its numbers are; the title quotes
    the reason, shortened at a word boundary. A new figure is a bare ``Figure`` (no pyplot,
    so a script's backend is left alone). Returns the figure.
    """
    from matplotlib.figure import Figure

    ev = explanation.evidence
    R, P = ev.matrix.shape
    fig = Figure() if fig is None else fig
    fig.set_size_inches(max(6.0, 0.22 * P + 2), max(3.0, 0.25 * R + 2.4))
    ax = fig.subplots()
    image = ax.imshow(ev.matrix, aspect="auto", cmap="viridis", interpolation="nearest")
    focus_cols = {
        c for seg in ev.segments if seg.kind == "focus" for c in range(seg.start, seg.end)
    }
    labels = [f"{t} [focus]" if c in focus_cols else t for c, t in enumerate(ev.prompt_tokens)]
    ax.set_xticks(range(P))
    ax.set_xticklabels(labels, rotation=90, fontsize=6)
    for c, tick in enumerate(ax.get_xticklabels()):
        if c in focus_cols:
            tick.set_fontweight("bold")
            tick.set_color("#b8336a")
    ax.set_yticks(range(R))
    ax.set_yticklabels(ev.row_tokens, fontsize=6)
    for seg in ev.segments:
        if seg.kind in ("hist", "item"):
            ax.axvline(seg.start - 0.5, color="white", linewidth=1.0)
            name = f"{seg.owner} {seg.label}".strip()
            ax.text(
                (seg.start + seg.end - 1) / 2,
                -0.7,
                name,
                ha="center",
                va="bottom",
                fontsize=7,
                clip_on=False,
            )
    ax.set_xlabel("prompt tokens (focus aspects marked [focus])")
    ax.set_ylabel("reason tokens generated")
    reason = "".join(ch if ch.isprintable() and ch.isascii() else " " for ch in explanation.reason)
    ax.set_title(
        f'attention (mean over layers and heads) while writing "{shorten(reason, 90)}"',
        fontsize=8,
        pad=18,
    )
    bar = fig.colorbar(image, ax=ax, fraction=0.03)
    bar.set_label("attention weight (share of the row)", fontsize=7)
    fig.tight_layout()
    return fig
