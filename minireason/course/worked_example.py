"""The seed document's worked attention example (section 4.3), computed correctly, with errata.

The document takes the sentence "I like to read books and watch movies", gives each word a
3-d vector, and asks how a query ``q = [1, 0, 0]`` attends over the eight words with
keys = values = those vectors. Its inputs are clear; its arithmetic is not. This module

1. rebuilds the inputs (:data:`WORDS`, :data:`VECTORS`, :data:`QUERY`);
2. computes the single-query case and full self-attention (Q = K = V = the vectors), each with
   and without the ``1/sqrt(d_k)`` scale of the document's own formula, through
   :func:`minireason.nn.attention.attention_forward`;
3. keeps what the document printed (:data:`DOC_QKT`, :data:`DOC_SOFTMAX_EXPONENTS`,
   :data:`DOC_OUTPUT`) and lists, in :func:`errata`, what is wrong with it and why.

``minireason attention-example`` prints :func:`report`; ``--plot`` calls :func:`plot`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from minireason.files import write_png
from minireason.nn.attention import attention_forward
from minireason.options import option

WORDS = ("I", "like", "to", "read", "books", "and", "watch", "movies")

# (8, 3): the document's word vectors, in sentence order.
VECTORS = np.array(
    [
        [1, 0, 0],  # I
        [0, 1, 0],  # like
        [0, 0, 1],  # to
        [1, 1, 0],  # read
        [0, 1, 1],  # books
        [0, 1, 1],  # and
        [1, 0, 1],  # watch
        [0, 1, 0],  # movies
    ],
    dtype=np.float64,
)

# (3,): the document's query.
QUERY = np.array([1.0, 0.0, 0.0])

D_K = VECTORS.shape[1]

# ---- what the document printed (section 4.3), transcribed as printed

# Its "QK^T" (8, 3): claimed to be the product of the (8, 3) key matrix with itself.
DOC_QKT = np.array(
    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [2, 1, 1], [0, 2, 1], [0, 2, 1], [2, 0, 1], [0, 2, 0]],
    dtype=np.float64,
)

# Its "softmax(QK^T)" has 7 rows of 3 entries e^a / D, all over one denominator D;
# these are the exponents a, row by row.
DOC_SOFTMAX_EXPONENTS = np.array(
    [[1, 0, 0], [0, 1, 0], [0, 2, 1], [2, 0, 0], [0, 1, 2], [2, 0, 0], [2, 0, 1]], dtype=np.float64
)

# The exponents of its one denominator, e^1 + e^0 + e^0 + e^2 + e^0 + e^0 + e^2 + e^0.
DOC_DENOMINATOR_EXPONENTS = np.array([1, 0, 0, 2, 0, 0, 2, 0], dtype=np.float64)

# Its "Output" (8, 3).
DOC_OUTPUT = np.array(
    [
        [0.26, 0.20, 0.14],
        [0.20, 0.26, 0.14],
        [0.14, 0.26, 0.20],
        [0.26, 0.26, 0.14],
        [0.14, 0.20, 0.26],
        [0.20, 0.14, 0.26],
        [0.26, 0.14, 0.20],
        [0.20, 0.26, 0.14],
    ]
)


# --------------------------------------------------------------------------- the correct maths


@dataclass
class AttentionResult:
    """One attention computation of the example.

    scores: ``(Tq, 8)`` scaled scores ``Q K^T * scale``; weights: ``(Tq, 8)``; output: ``(Tq, 3)``.
    """

    name: str
    scale: float
    scores: np.ndarray
    weights: np.ndarray
    output: np.ndarray


def single_query(scaled: bool) -> AttentionResult:
    """The query ``[1, 0, 0]`` over the eight words (keys = values = :data:`VECTORS`).

    Returns scores/weights of shape ``(1, 8)`` and output ``(1, 3)``.
    """
    scale = 1 / math.sqrt(D_K) if scaled else 1.0
    q = QUERY[None, :]  # (1, 3)
    out, cache = attention_forward(q, VECTORS, VECTORS, scale=scale)
    name = "single query, scaled by 1/sqrt(3)" if scaled else "single query, unscaled"
    return AttentionResult(name, scale, (q @ VECTORS.T) * scale, cache.weights, out)


def self_attention(scaled: bool) -> AttentionResult:
    """Full self-attention, Q = K = V = :data:`VECTORS`: scores/weights ``(8, 8)``, output ``(8, 3)``."""
    scale = 1 / math.sqrt(D_K) if scaled else 1.0
    out, cache = attention_forward(VECTORS, VECTORS, VECTORS, scale=scale)
    name = "self-attention, scaled by 1/sqrt(3)" if scaled else "self-attention, unscaled"
    return AttentionResult(name, scale, (VECTORS @ VECTORS.T) * scale, cache.weights, out)


def all_results() -> list[AttentionResult]:
    """The four computations: single query and self-attention, unscaled and scaled."""
    return [single_query(False), single_query(True), self_attention(False), self_attention(True)]


# --------------------------------------------------------------------------- errata


@dataclass
class Erratum:
    """One row of the errata table."""

    what: str
    document: str
    correct: str
    why: str


def doc_denominator() -> float:
    """The document's single softmax denominator, ``e + 2 e^2 + 5``."""
    return float(np.exp(DOC_DENOMINATOR_EXPONENTS).sum())


def errata() -> list[Erratum]:
    """What the document printed, what is right, and why, computed from the arrays of this module."""
    sq = single_query(False)
    sa = self_attention(False)
    sa_scaled = self_attention(True)
    D = doc_denominator()
    row_denominators = np.exp(sa.scores).sum(axis=1)  # unscaled self-attention rows
    scaled_row_denominators = np.exp(sa_scaled.scores).sum(axis=1)
    matches_a_row = bool(
        np.isclose(row_denominators, D).any()
        or np.isclose(scaled_row_denominators, D).any()
        or np.isclose(np.exp(sq.scores).sum(), D)
    )
    column_match = [
        j
        for j in range(DOC_QKT.shape[1])
        if np.array_equal(DOC_QKT[:, j], DOC_DENOMINATOR_EXPONENTS)
    ]
    own_rows_differ = [
        str(i + 1)
        for i in range(len(DOC_SOFTMAX_EXPONENTS))
        if not np.array_equal(DOC_SOFTMAX_EXPONENTS[i], DOC_QKT[i])
    ]
    doc_row_sums = np.exp(DOC_SOFTMAX_EXPONENTS).sum(axis=1) / D
    gram_rows_differ = [
        WORDS[i] for i in range(8) if not np.array_equal(DOC_QKT[i], sa.scores[i, :3])
    ]
    closest = min(
        (float(np.abs(r.output - DOC_OUTPUT).max()), r.name)
        for r in all_results()
        if r.output.shape == DOC_OUTPUT.shape
    )
    fmt = ", ".join
    return [
        Erratum(
            "the product QK^T",
            "K (8x3) times K (8x3) printed as an 8x3 matrix",
            "q K^T = ["
            + fmt(f"{s:g}" for s in sq.scores[0])
            + "] (1x8); for self-attention X X^T is 8x8",
            "an (8x3)(8x3) product is undefined: inner dimensions 3 and 8 differ; K must be "
            "transposed to 3x8, giving one score per (query, key) pair",
        ),
        Erratum(
            "the printed 'QK^T' values",
            "rows " + "; ".join(" ".join(f"{v:g}" for v in row) for row in DOC_QKT),
            "the scores of self-attention form the 8x8 matrix X X^T (one per query-key pair); no 8x3 matrix of scores exists",
            "it is not even a block of X X^T: compared with X X^T's first three columns, the rows "
            + fmt(gram_rows_differ)
            + " differ",
        ),
        Erratum(
            "the softmax denominator",
            f"one denominator for every entry: e^1+e^0+e^0+e^2+e^0+e^0+e^2+e^0 = e + 2e^2 + 5 = {D:.4f}",
            f"each query row has its own: single query 3e + 5 = {np.exp(sq.scores).sum():.4f}; "
            "self-attention rows " + fmt(f"{w}: {z:.4f}" for w, z in zip(WORDS, row_denominators)),
            (
                f"it sums exp over column {column_match[0] + 1} of its own 8x3 'QK^T' (down the rows, "
                "'n is the number of rows'), not across one query's keys"
                if column_match
                else "it matches no column of its own matrix either"
            )
            + ("; it equals no row's denominator, scaled or unscaled" if not matches_a_row else ""),
        ),
        Erratum(
            "the softmax matrix",
            f"{DOC_SOFTMAX_EXPONENTS.shape[0]} rows x 3 columns; the exponents of rows "
            + fmt(own_rows_differ)
            + " are not those of the same rows of its own 'QK^T'",
            "weights are 1x8 (single query) or 8x8 (self-attention), each row summing to 1",
            "softmax normalises each query's scores over the keys; the printed rows sum to "
            f"{doc_row_sums.min():.3f}..{doc_row_sums.max():.3f}, not 1, and there is one row too "
            "few for eight words",
        ),
        Erratum(
            "the 1/sqrt(d_k) scale",
            "its formula divides by sqrt(d_k); the example never does",
            f"d_k = 3: scores x {1 / math.sqrt(3):.4f}; weight on 'I' is {single_query(True).weights[0, 0]:.4f} "
            f"scaled vs {sq.weights[0, 0]:.4f} unscaled",
            "the scale keeps the scores' variance near 1 as d_k grows; with d_k = 3 it softens the weights",
        ),
        Erratum(
            "the output",
            "an 8x3 matrix of 0.14 / 0.20 / 0.26",
            "single query: ["
            + fmt(f"{v:.4f}" for v in sq.output[0])
            + "] = [3e, e+4, e+3] / (3e+5); self-attention: an 8x3 output, one row per word, "
            "unscaled or scaled (self_attention(False / True).output)",
            f"(7x3)(8x3) is undefined too; the closest correct 8x3 output ({closest[1]}) "
            f"still differs from it by up to {closest[0]:.2f}",
        ),
    ]


# --------------------------------------------------------------------------- printing


def _table(row_labels, col_labels, values, decimals) -> str:
    """A plain-text table with labelled rows and columns."""
    width = max(decimals + 4, max(len(c) for c in col_labels))
    lw = max(len(r) for r in row_labels)
    lines = [" " * lw + "  " + " ".join(c.rjust(width) for c in col_labels)]
    for label, row in zip(row_labels, values):
        lines.append(label.rjust(lw) + "  " + " ".join(f"{v:{width}.{decimals}f}" for v in row))
    return "\n".join(lines)


@dataclass
class ExampleConfig:
    """The options of ``minireason attention-example``."""

    description: ClassVar[str] = (  # its --help
        "The eight-word example of the seed document's section 4.3: one query and full "
        "self-attention, with and without 1/sqrt(d_k), beside what the document printed."
    )

    plot: str | None = option(
        None, metavar="FILE.png", help="also save a labelled heatmap of the weights"
    )
    decimals: int = option(4, min=0, metavar="N", help="digits after the point")


def report(decimals: int = ExampleConfig.decimals) -> str:
    """The whole example as text: inputs, the four computations, and the errata table."""
    dims = ["d1", "d2", "d3"]
    out = [
        "The seed document's worked example (section 4.3), computed correctly",
        "=" * 68,
        "",
        "Inputs: eight words as 3-d vectors; keys = values = these vectors.",
        _table(WORDS, dims, VECTORS, 0),
        f"query q = {QUERY.astype(int).tolist()}   d_k = {D_K}   scale = 1/sqrt(d_k) = {1 / math.sqrt(D_K):.{decimals}f}",
    ]
    for r in all_results():
        rows = ["q"] if r.weights.shape[0] == 1 else list(WORDS)
        out += [
            "",
            f"--- {r.name} (scale = {r.scale:.{decimals}f})",
            "scores = Q K^T x scale",
            _table(rows, WORDS, r.scores, decimals),
            "weights = softmax(scores), each row sums to 1",
            _table(rows, WORDS, r.weights, decimals),
            "output = weights V",
            _table(rows, dims, r.output, decimals),
        ]
    out += ["", "Errata: what the document printed, what is right, and why", "-" * 68]
    for i, e in enumerate(errata(), 1):
        out += [
            f"{i}. {e.what}",
            f"   document: {e.document}",
            f"   correct:  {e.correct}",
            f"   why:      {e.why}",
        ]
    out += ["", "The document's output next to the correct self-attention outputs (rows = words):"]
    side = np.hstack([DOC_OUTPUT, self_attention(False).output, self_attention(True).output])
    out.append(
        _table(
            WORDS, ["doc1", "doc2", "doc3", "raw1", "raw2", "raw3", "sc1", "sc2", "sc3"], side, 2
        )
    )
    out.append("(doc = as printed; raw = unscaled; sc = scaled by 1/sqrt(3))")
    return "\n".join(out)


def figure(fig=None):
    """A labelled heatmap of the attention weights (single query and self-attention, unscaled
    and scaled), drawn into ``fig`` (e.g. ``plt.figure()``, which a notebook shows inline) or
    into a new Matplotlib ``Figure`` (no pyplot, so a script's backend is left alone).
    Returns the figure; :func:`plot` saves it."""
    from matplotlib.figure import Figure

    results = all_results()
    fig = Figure() if fig is None else fig
    fig.set_size_inches(12, 8.5)
    fig.set_layout_engine("constrained")
    axes = fig.subplots(2, 2, gridspec_kw={"height_ratios": [1, 6]})
    for col in range(2):
        for row, r in enumerate((results[col], results[2 + col])):
            ax = axes[row, col]
            im = ax.imshow(r.weights, cmap="viridis", vmin=0, vmax=r.weights.max(), aspect="auto")
            ax.set_xticks(range(8), WORDS, rotation=45, ha="right")
            labels = ["q=[1,0,0]"] if r.weights.shape[0] == 1 else list(WORDS)
            ax.set_yticks(range(len(labels)), labels)
            for (i, j), w in np.ndenumerate(r.weights):
                ax.text(
                    j,
                    i,
                    f"{w:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if w < 0.6 * r.weights.max() else "black",
                )
            ax.set_title(r.name)
            fig.colorbar(im, ax=ax, shrink=0.8)
    axes[1, 0].set_ylabel("query word")
    axes[1, 0].set_xlabel("key word")
    axes[1, 1].set_xlabel("key word")
    fig.suptitle("Seed document section 4.3: attention weights, computed correctly")
    return fig


def plot(path) -> str:
    """Save :func:`figure` to ``path`` as a PNG marked as this project's, atomically
    (:func:`minireason.files.write_png`). Returns the path."""
    return str(write_png(path, figure()))
