"""Explanation metrics, computed the way the explainable-recommendation literature does.

The definitions follow the PETER / PEPLER reference code (Li, Zhang, Chen; ACL 2021 and
TOIS 2023), so our numbers are comparable with theirs (see ``../shared/DESIGN.md``):

==========  ===========================================================  ============
metric      definition                                                   reported as
==========  ===========================================================  ============
BLEU-1/4    corpus-level, clipped n-gram counts summed over the corpus,  x 100
            uniform weights, no smoothing, brevity penalty
ROUGE-1/2   per pair on SETS of n-grams, P/R/F averaged over pairs       x 100
ROUGE-L     per pair, LCS-based, F-measure with beta = P/R (see below)   x 100
USR         distinct generated sentences / N                             ratio
FMR         share of records whose ground-truth feature is generated     ratio
FCR         distinct features generated / size of the feature set        ratio
DIV         mean feature overlap over all pairs of generated sentences   ratio (lower
                                                                         is better)
degenerate  share with a repeated 3-gram, a doubled word or < 4 words   ratio (lower
            (:func:`degenerate_rate`; ours, not PETER's)                 is better)
==========  ===========================================================  ============

Three more, ours too, judge a reason against the item's *training* reviews instead of the
reference (so the real reference sentences get them as well), each a share of the reasons
(:data:`GROUNDING_METRICS`, defined in :mod:`minireason.evaluation.grounding`):
``item_specificity`` (it holds a word of the item's training reviews that at most 5% of
the items' reviews use), ``groundedness`` (every aspect and name it holds is attested in
the item's training reviews) and ``copy_rate`` (8 consecutive words of it are in one
training sentence; lower is better).

Every text is first turned into tokens by :func:`minireason.text.tokens` (lower-case,
punctuation and clitics split off words, as PETER's post-processing does), so hypotheses and
references are always compared the same way whatever produced them, and the same way the
step-4 reranker and aspect mining read text.

Feature words. ``feature_set`` is every feature of the dataset (e.g. ``"tone"``,
``"guitar strings"``). A feature is *in* a sentence when the sentence mentions it
(:func:`minireason.text.mentions`: its tokens occur contiguously; a one-word feature is a
token, "guitar strings" is a token bigram; "strings" alone does not match "guitar strings").
The reference code only matches single tokens; for one-word features the two rules agree.

Where our code departs from the reference code (on purpose):

- It divides with exact formulas and defines 0/0 as 0, where the reference adds 1e-8 (ROUGE-N)
  or 1e-12 (ROUGE-L) to denominators; the difference is below 1e-6 on the x100 scale.
- An empty hypothesis gets precision 0 instead of a ZeroDivisionError; corpus BLEU with no
  hypothesis tokens at all is 0.

The reports' names for them (``evaluation.json``'s keys, in the tables' order):
:data:`TEXT_METRICS` (x100) and :data:`RATIO_METRICS` make :data:`METRICS`;
:data:`GROUNDING_METRICS` (ratios) have a table of their own, with the references' row;
:data:`UNCERTAIN_METRICS` are those given bootstrap intervals, with their printed labels;
:data:`LOWER_IS_BETTER` are DIV, degenerate and copy_rate; :func:`format_metric` prints a
value as every report does.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from minireason.text import PhraseSet, degeneracies, tokens

TEXT_METRICS = ("bleu1", "bleu4", "rouge1_f", "rouge2_f", "rougeL_f")  # x100
RATIO_METRICS = ("usr", "fmr", "fcr", "div", "degenerate")
METRICS = TEXT_METRICS + RATIO_METRICS
GROUNDING_METRICS = ("item_specificity", "groundedness", "copy_rate")  # ratios
UNCERTAIN_METRICS = {"bleu1": "BLEU-1", "bleu4": "BLEU-4", "rougeL_f": "ROUGE-L", "fmr": "FMR"}
LOWER_IS_BETTER = ("div", "degenerate", "copy_rate")


def format_metric(name: str, value: float) -> str:
    """A metric as the reports print it: text metrics (x100) with 2 decimals, ratios with 3."""
    return f"{value:.2f}" if name in TEXT_METRICS else f"{value:.3f}"


def ngram_counts(tokens: Sequence[str], n: int) -> Counter:
    """Counter of the contiguous n-grams (tuples of n tokens) of ``tokens``."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


# ---------------------------------------------------------------------------------------------
# BLEU
# ---------------------------------------------------------------------------------------------


def corpus_bleu(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]], max_n: int) -> float:
    """Corpus-level BLEU-``max_n`` with one reference per hypothesis, x100.

    Args:
        hyps, refs: N token lists each (hypothesis i is scored against reference i).
        max_n: highest n-gram order (1 for BLEU-1, 4 for BLEU-4); weights are 1/max_n each.

    For each order n, matches are clipped counts ``min(count_hyp(g), count_ref(g))`` summed over
    n-grams g and over the corpus; ``p_n = matches_n / sum_i max(len(hyp_i) - n + 1, 0)``.
    Then, with c = total hypothesis length and r = total reference length::

        BLEU = BP * exp(sum_n log(p_n) / max_n)        (0 when any p_n is 0: no smoothing)
        BP   = 1 if c > r else exp(1 - r / c)
    """
    return float(bleu_from_counts(bleu_counts(hyps, refs, max_n).sum(axis=0)))


def bleu_counts(
    hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]], max_n: int
) -> np.ndarray:
    """What corpus BLEU sums, record by record: ``(N, 2 + 2 * max_n)`` integers, row i being
    ``[len(hyp_i), len(ref_i), matches_1, possible_1, ..., matches_max_n, possible_max_n]``
    (clipped matches and the hypothesis's n-grams, order by order; :func:`corpus_bleu`).
    The sum of any subset of rows gives that subset's BLEU through :func:`bleu_from_counts`,
    which is what a bootstrap over records needs (:mod:`minireason.evaluation.bootstrap`)."""
    _check_pairs(hyps, refs)
    out = np.zeros((len(hyps), 2 + 2 * max_n), dtype=np.int64)
    for i, (hyp, ref) in enumerate(zip(hyps, refs, strict=True)):
        out[i, 0], out[i, 1] = len(hyp), len(ref)
        for n in range(1, max_n + 1):
            overlap = ngram_counts(hyp, n) & ngram_counts(ref, n)  # & keeps the min count
            out[i, 2 * n] = sum(overlap.values())
            out[i, 2 * n + 1] = max(len(hyp) - n + 1, 0)
    return out


def bleu_from_counts(totals: np.ndarray) -> np.ndarray:
    """BLEU (x100) from summed :func:`bleu_counts` rows: ``totals`` ``(..., 2 + 2 * max_n)``
    gives ``(...)``, one BLEU per leading index (0 where a total is 0, as in
    :func:`corpus_bleu`)."""
    totals = np.asarray(totals, dtype=np.float64)
    c, r = totals[..., 0], totals[..., 1]
    matches, possible = totals[..., 2::2], totals[..., 3::2]
    zero = (c == 0) | (possible.min(axis=-1) == 0) | (matches.min(axis=-1) == 0)
    safe = np.where(zero[..., None], 1.0, matches / np.where(possible == 0, 1.0, possible))
    log_mean = np.log(safe).mean(axis=-1)
    bp = np.where(c > r, 1.0, np.exp(1.0 - r / np.where(c == 0, 1.0, c)))
    return np.where(zero, 0.0, 100.0 * bp * np.exp(log_mean))


# ---------------------------------------------------------------------------------------------
# ROUGE
# ---------------------------------------------------------------------------------------------


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2.0 * p * r / (p + r)


def rouge_n(hyp: Sequence[str], ref: Sequence[str], n: int) -> tuple[float, float, float]:
    """ROUGE-N of one pair on SETS of n-grams: ``(P, R, F)`` as ratios in [0, 1].

    ``P = |H & R| / |H|``, ``R = |H & R| / |R|``, ``F = 2PR / (P + R)`` with H, R the sets of
    n-grams of hypothesis and reference (a repeated n-gram counts once).
    """
    h = set(ngram_counts(hyp, n))
    g = set(ngram_counts(ref, n))
    common = len(h & g)
    p = common / len(h) if h else 0.0
    r = common / len(g) if g else 0.0
    return p, r, _f1(p, r)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (O(len(a) len(b)) DP)."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1]


def rouge_l(hyp: Sequence[str], ref: Sequence[str]) -> tuple[float, float, float]:
    """ROUGE-L of one pair: ``(P, R, F)`` as ratios, with the reference code's beta = P/R.

    With l = LCS length: ``R = l / |ref|``, ``P = l / |hyp|`` and the F-measure::

        F = (1 + beta^2) P R / (R + beta^2 P),   beta = P / R

    which simplifies to ``F = P R (P^2 + R^2) / (P^3 + R^3)``. This is NOT the usual ROUGE-L
    (which fixes beta, e.g. beta = 1 gives ``2PR / (P + R)``): with beta = P/R the F-measure
    weights whichever of P and R is smaller more, so it leans towards the smaller one and is
    never above the usual F1 (P = 1, R = 0.2 gives F = 0.206 where F1 = 0.333). We keep it
    because PETER/PEPLER report it.
    """
    lcs = lcs_length(hyp, ref)
    if lcs == 0:
        return 0.0, 0.0, 0.0
    p = lcs / len(hyp)
    r = lcs / len(ref)
    beta2 = (p / r) ** 2
    f = (1.0 + beta2) * p * r / (r + beta2 * p)
    return p, r, f


def corpus_rouge(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> dict[str, float]:
    """ROUGE-1/2/L P, R and F averaged over the N pairs, x100.

    Keys: ``rouge1_p, rouge1_r, rouge1_f, rouge2_*, rougeL_*``.
    """
    _check_pairs(hyps, refs)
    rows = {"rouge1": [], "rouge2": [], "rougeL": []}
    for hyp, ref in zip(hyps, refs, strict=True):
        rows["rouge1"].append(rouge_n(hyp, ref, 1))
        rows["rouge2"].append(rouge_n(hyp, ref, 2))
        rows["rougeL"].append(rouge_l(hyp, ref))
    out = {}
    for name, prf in rows.items():
        mean_p, mean_r, mean_f = np.mean(np.asarray(prf, dtype=np.float64), axis=0)
        out[f"{name}_p"] = 100.0 * float(mean_p)
        out[f"{name}_r"] = 100.0 * float(mean_r)
        out[f"{name}_f"] = 100.0 * float(mean_f)
    return out


# ---------------------------------------------------------------------------------------------
# USR and the feature metrics (FMR, FCR, DIV)
# ---------------------------------------------------------------------------------------------


def unique_sentence_ratio(hyps: Sequence[Sequence[str]]) -> float:
    """USR: number of distinct token sequences among the N hypotheses, divided by N."""
    if len(hyps) == 0:
        raise ValueError("unique_sentence_ratio: no hypotheses")
    return len({tuple(h) for h in hyps}) / len(hyps)


def normalize_features(feature_set) -> list[str]:
    """The feature set as sorted distinct strings of metric tokens joined by one space.

    ``"Guitar  Strings"`` and ``"guitar strings"`` become the same feature. A feature with no
    token (empty or blank) is a ValueError naming it.
    """
    out = set()
    for f in feature_set:
        toks = tokens(f)
        if not toks:
            raise ValueError(f"feature_set: feature {f!r} has no tokens")
        out.add(" ".join(toks))
    if not out:
        raise ValueError("feature_set is empty")
    return sorted(out)


def detect_features(text_tokens: Sequence[str], features) -> set[str]:
    """S_i: the features (normalised, as from :func:`normalize_features`) that the text given
    as ``text_tokens`` mentions (:func:`minireason.text.mentions`: a feature of n tokens is
    found when those n tokens occur contiguously). ``features`` may be a
    :class:`minireason.text.PhraseSet` of them, built once for many texts."""
    index = features if isinstance(features, PhraseSet) else PhraseSet(features)
    return set(index.mentioned_in(text_tokens, ordered=False))


def feature_matrix(feature_sets: Sequence[set[str]], features: Sequence[str]) -> np.ndarray:
    """Binary matrix M of shape (N, |F|): ``M[i, j] = 1`` when feature j is in S_i."""
    column = {f: j for j, f in enumerate(features)}
    m = np.zeros((len(feature_sets), len(features)), dtype=np.int64)
    for i, s in enumerate(feature_sets):
        m[i, [column[f] for f in s]] = 1
    return m


def feature_matching_ratio(feature_sets: Sequence[set[str]], features_gt: Sequence[str]) -> float:
    """FMR = mean over i of [ground-truth feature of record i is in S_i]."""
    if len(feature_sets) != len(features_gt) or not feature_sets:
        raise ValueError(
            f"FMR: need one ground-truth feature per hypothesis, got {len(features_gt)} "
            f"features for {len(feature_sets)} hypotheses"
        )
    return sum(gt in s for s, gt in zip(feature_sets, features_gt, strict=True)) / len(feature_sets)


def feature_coverage_ratio(m: np.ndarray) -> float:
    """FCR = |union of S_i| / |F| from the (N, |F|) feature matrix: columns with any 1."""
    return float(np.count_nonzero(m.any(axis=0))) / m.shape[1]


def feature_diversity(m: np.ndarray) -> float:
    """DIV = 2 / (N (N-1)) * sum over pairs i < j of |S_i & S_j|, from the (N, |F|) matrix.

    ``|S_i & S_j|`` is entry (i, j) of the Gram matrix ``G = M M^T``, so the pair sum is
    ``(sum(G) - trace(G)) / 2``. We never build the N x N matrix G: its entries sum to
    ``sum_f c_f^2`` where ``c = M.sum(0)`` counts the sentences holding each feature (each
    feature f is shared by c_f (c_f - 1) / 2 pairs), and ``trace(G) = sum(c)``. Hence::

        DIV = sum_f c_f (c_f - 1) / (N (N - 1))            O(N |F|) time, O(|F|) extra memory

    Lower is better (sentences share fewer features).
    """
    n = m.shape[0]
    if n < 2:
        raise ValueError(f"DIV needs at least 2 hypotheses, got {n}")
    c = m.sum(axis=0).astype(np.float64)
    return float(np.sum(c * (c - 1.0)) / (n * (n - 1)))


# ---------------------------------------------------------------------------------------------
# Perplexity and the one-call summary
# ---------------------------------------------------------------------------------------------


def degenerate_rate(hyps: Sequence[str]) -> float:
    """Share of the sentences with any :func:`minireason.text.degeneracies` (a repeated word
    3-gram, a word twice in a row, fewer than 4 words, a broken character): what a reader
    notices first. Lower is
    better. Not in the PETER/PEPLER code; reported beside their metrics."""
    if not hyps:
        raise ValueError("degenerate_rate: no hypotheses")
    return sum(bool(degeneracies(h)) for h in hyps) / len(hyps)


def perplexity(total_nll: float, n_tokens: int) -> float:
    """``exp(total_nll / n_tokens)``: total_nll is the summed natural-log NLL over n_tokens."""
    if n_tokens <= 0:
        raise ValueError(f"perplexity: n_tokens must be positive, got {n_tokens}")
    if not math.isfinite(total_nll) or total_nll < 0:
        raise ValueError(f"perplexity: total_nll must be finite and >= 0, got {total_nll}")
    return math.exp(total_nll / n_tokens)


def explanation_metrics(
    hyps: Sequence[str],
    refs: Sequence[str],
    features_gt: Sequence[str],
    feature_set,
) -> dict[str, float]:
    """All explanation metrics for N generated sentences against their references.

    Args:
        hyps: N generated sentences (strings).
        refs: N reference sentences (strings), ``refs[i]`` is the truth for ``hyps[i]``.
        features_gt: N ground-truth feature strings, one per record (each must be in F).
        feature_set: iterable of the dataset's feature strings F.

    Returns:
        ``bleu1, bleu4, rouge1_f, rouge2_f, rougeL_f`` (x100), ``usr, fmr, fcr, div`` (ratios),
        plus ``rouge{1,2,L}_{p,r}`` (x100) and ``n`` (number of records).
    """
    if len(hyps) != len(refs) or len(hyps) != len(features_gt):
        raise ValueError(
            f"explanation_metrics: hyps, refs and features_gt must have the same length, got "
            f"{len(hyps)}, {len(refs)}, {len(features_gt)}"
        )
    if len(hyps) < 2:
        raise ValueError(f"explanation_metrics needs at least 2 records (for DIV), got {len(hyps)}")
    features = normalize_features(feature_set)
    known = set(features)
    gt = []
    for i, f in enumerate(features_gt):
        norm = " ".join(tokens(f))
        if norm not in known:
            raise ValueError(f"features_gt[{i}] = {f!r} is not in feature_set")
        gt.append(norm)
    hyp_toks = [_tokens(h, "hyps", i) for i, h in enumerate(hyps)]
    ref_toks = [_tokens(r, "refs", i) for i, r in enumerate(refs)]
    index = PhraseSet(features)
    sets = [detect_features(t, index) for t in hyp_toks]
    m = feature_matrix(sets, features)
    out = {
        "bleu1": corpus_bleu(hyp_toks, ref_toks, 1),
        "bleu4": corpus_bleu(hyp_toks, ref_toks, 4),
        **corpus_rouge(hyp_toks, ref_toks),
        "usr": unique_sentence_ratio(hyp_toks),
        "fmr": feature_matching_ratio(sets, gt),
        "fcr": feature_coverage_ratio(m),
        "div": feature_diversity(m),
        "degenerate": degenerate_rate(hyps),
        "n": len(hyps),
    }
    return out


def _tokens(text, name: str, i: int) -> list[str]:
    if not isinstance(text, str):
        raise TypeError(f"{name}[{i}] must be a str, got {type(text).__name__}")
    return tokens(text)


def _check_pairs(hyps, refs) -> None:
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if len(hyps) == 0:
        raise ValueError("no hypotheses to score")
