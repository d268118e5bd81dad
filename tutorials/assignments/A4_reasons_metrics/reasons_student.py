"""Assignment A4: reason extraction and the explanation metrics, on plain Python and NumPy.

Fill in the nine functions below (replace each ``raise NotImplementedError``), then grade
yourself:

    minireason grade A4 tutorials/assignments/A4_reasons_metrics/reasons_student.py

Rules: Python and NumPy only (no minireason); do not change the names or signatures. The
README gives every formula; tutorial 07 shows the package picking a reason and reading its
attention evidence, tutorial 08 computes the metrics by hand. Texts here are already lists of
lower-case word tokens (``["great", "tone", "for", "the", "price"]``); a phrase (an aspect, a
tag, a feature) is a string of one or more words separated by single spaces
(``"guitar strings"``).
"""

import numpy as np  # noqa: F401 (you will need it)

# --------------------------------------------------------------------------- reason extraction


def score_candidate(words, logprobs, aspects, tags, weights):
    """The score of one generated candidate.

    Args:
        words: the candidate's word tokens, e.g. ``["warm", "tone", "for", "the", "price"]``.
        logprobs: ``(n,)`` NumPy array, the log-probability of each generated token.
        aspects: the user's profile aspects (distinct phrases); tags: the item's tags (distinct
            phrases). A phrase is *mentioned* when its words occur consecutively in ``words``.
        weights: dict with keys ``"user"``, ``"item"``, ``"logprob"``, ``"repetition"``.

    Returns:
        ``w_user * user_cov + w_item * item_cov + w_logprob * mean(logprobs)
        - w_repetition * repetition`` as a float, with ``user_cov`` the fraction of aspects
        mentioned (0 when there are none), ``item_cov`` the same for tags, and
        ``repetition = 1 - distinct bigrams / bigrams`` (0 when there are fewer than 2 bigrams).
    """
    raise NotImplementedError("score_candidate: coverage + log-probability - repetition")


def pick_best(candidates, logprobs, aspects, tags, weights):
    """The index of the best-scoring candidate (the first one when several tie).

    Args:
        candidates: list of word-token lists; logprobs: list of ``(n_i,)`` arrays, one per
            candidate; aspects, tags, weights: as for :func:`score_candidate`.

    Returns:
        An int.
    """
    raise NotImplementedError("pick_best: score every candidate, keep the first best")


def segment_mass(attention, rows, segments):
    """Mean attention paid to each segment, summed over the segment's tokens.

    Args:
        attention: ``(T, T)`` NumPy array, row = query position, column = key position.
        rows: the query positions to read (a list or range of ints).
        segments: list of ``(start, end)`` key spans (``end`` excluded).

    Returns:
        ``(len(segments),)`` array: for each segment, the sum over its columns, averaged over
        the rows read.
    """
    raise NotImplementedError("segment_mass: sum over the segment's columns, mean over rows")


def evidence_shares(attention, prompt_len, segments):
    """The share of the prompt's attention that each segment receives while the reason is written.

    Args:
        attention: ``(T, T)`` attention over ``prompt + reason`` (averaged over layers and heads).
        prompt_len: P, the number of prompt tokens; the rows read are ``P - 1 .. T - 1`` (the
            positions whose outputs generated the reason tokens).
        segments: list of ``(start, end)`` spans that tile the prompt ``0 .. P``.

    Returns:
        ``(len(segments),)`` array that sums to 1: the segment masses divided by their total.
    """
    raise NotImplementedError("evidence_shares: segment masses over the reason rows, normalised")


# --------------------------------------------------------------------------- the metrics


def corpus_bleu(hyps, refs, max_n):
    """Corpus-level BLEU-``max_n`` (x100), one reference per hypothesis, no smoothing.

    Args:
        hyps, refs: N token lists each; max_n: 1 for BLEU-1, 4 for BLEU-4.

    Returns:
        ``100 * BP * exp(mean over n = 1..max_n of log p_n)``, where ``p_n`` = clipped n-gram
        matches summed over the corpus / hypothesis n-grams summed over the corpus, 0 if any
        ``p_n`` is 0, and ``BP = 1 if c > r else exp(1 - r / c)`` with c, r the total
        hypothesis and reference lengths.
    """
    raise NotImplementedError("corpus_bleu: clipped counts over the corpus, brevity penalty")


def rouge_l(hyp, ref):
    """ROUGE-L of one pair as PETER computes it: ``(P, R, F)`` as ratios in [0, 1].

    With l the length of the longest common subsequence: ``P = l / len(hyp)``,
    ``R = l / len(ref)``, ``F = (1 + beta^2) P R / (R + beta^2 P)`` with ``beta = P / R``;
    ``(0, 0, 0)`` when l is 0.
    """
    raise NotImplementedError("rouge_l: LCS by dynamic programming, then P, R and F")


def detect_features(tokens, features):
    """S_i: the set of features found in one sentence.

    Args:
        tokens: the sentence's tokens; features: list of feature phrases (``"tone"``,
            ``"guitar strings"``).

    Returns:
        The set of the features whose words occur consecutively in ``tokens``.
    """
    raise NotImplementedError("detect_features: contiguous match of each feature's words")


def feature_matching_ratio(feature_sets, features_gt):
    """FMR: the fraction of records i whose ground-truth feature ``features_gt[i]`` is in
    ``feature_sets[i]``. Returns a float."""
    raise NotImplementedError("feature_matching_ratio: mean of [ground truth in S_i]")


def feature_diversity(feature_sets):
    """DIV: ``2 / (N (N - 1)) * sum over pairs i < j of |S_i & S_j|`` (N >= 2), a float.

    Lower is better: the sentences share fewer features.
    """
    raise NotImplementedError("feature_diversity: mean overlap over pairs i < j")
