# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · Evaluating explanations, and how the metrics mislead
#
# **Goal.** Compute the metrics the explainable-recommendation literature reports (BLEU,
# ROUGE, USR, FMR, FCR, DIV, as in the PETER / PEPLER reference code: `minireason.evaluation.metrics`)
# by hand on examples small enough to check on paper; then on the real test set for simple
# baselines; then break them: show, with numbers and a plot, answers that score well while
# explaining nothing.
#
# **Time:** about 10 to 30 seconds on a 2-core CPU (it prepares the Musical Instruments data,
# about 10 s, unless tutorial 06 left it in `$MINIREASON_TUTORIAL_OUT/06_prepared`). No model
# is trained here: the systems compared are baselines, which is the point (a trained model is
# evaluated the same way by `minireason evaluate`). `MINIREASON_FAST=1` uses a 600-review
# slice. **Prerequisites:** tutorial 07. Assignment A4 asks you to write BLEU, ROUGE-L, FMR
# and DIV yourself.

# %%
import math
import os
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from minireason.data.fetch import find_reviews
from minireason.evaluation import metrics
from minireason.evaluation.baselines import random_reasons, retrieval_reasons, template_reason
from minireason.evaluation.bootstrap import bootstrap_intervals
from minireason.prep.prepare import PrepareConfig, prepare, prepare_sample
from minireason.prep.prepared import load_prepared
from minireason.text import tokens

FAST = os.environ.get("MINIREASON_FAST") == "1"
OUT = Path(os.environ.get("MINIREASON_TUTORIAL_OUT", "runs/tutorials"))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. Tokens first
#
# Every metric compares tokens, so the tokenisation is part of the metric: lower-case,
# punctuation and clitics ("'s", "n't") split off words (`minireason.text`, the same tokens the
# step-4 reranker and aspect mining read). Two papers that tokenise differently report incomparable
# numbers even on the same outputs.

# %%
print(tokens("Great tone, GREAT price!"))

# %% [markdown]
# ## 2. BLEU by hand
#
# BLEU is a *precision*: how many of the hypothesis's n-grams appear in the reference,
# each match **clipped** to the count in the reference (so "the the the" does not get three
# matches for one "the"), summed over the whole corpus before dividing. Precision alone
# rewards saying little, so a **brevity penalty** `BP = exp(1 - r/c)` applies when the total
# hypothesis length c is below the reference length r. BLEU-4 is the geometric mean of
# p_1..p_4 times BP; any p_n = 0 gives 0 (no smoothing).

# %%
hyps = [tokens("the tone is great"), tokens("the the the strings")]
refs = [tokens("the tone is great and warm"), tokens("good strings for the price")]
matches, possible = [], []
for n in (1, 2):
    m = sum(
        sum((metrics.ngram_counts(h, n) & metrics.ngram_counts(r, n)).values())
        for h, r in zip(hyps, refs, strict=True)
    )
    p = sum(max(len(h) - n + 1, 0) for h in hyps)
    matches.append(m)
    possible.append(p)
    print(f"p_{n} = {m}/{p}")
c, r = sum(map(len, hyps)), sum(map(len, refs))
bp = 1.0 if c > r else math.exp(1 - r / c)
by_hand = 100 * bp * math.exp(sum(math.log(m / p) for m, p in zip(matches, possible)) / 2)
print(
    f"c = {c}, r = {r}, BP = {bp:.4f}; BLEU-2 by hand {by_hand:.3f}, "
    f"metrics.corpus_bleu {metrics.corpus_bleu(hyps, refs, 2):.3f}"
)
unclipped = sum(
    count
    for h, rf in zip(hyps, refs, strict=True)
    for (word,), count in metrics.ngram_counts(h, 1).items()
    if word in rf
)
print(f"without clipping, 'the the the' would count three times: p_1 = {unclipped}/{possible[0]}")

# %% [markdown]
# ## 3. ROUGE by hand, and PETER's unusual ROUGE-L
#
# ROUGE-1/2 here work on *sets* of n-grams (a repeat counts once); ROUGE-L on the longest
# common subsequence (LCS), in order but not necessarily contiguous. The reference code's
# ROUGE-L F-measure uses `beta = P / R`, not the usual beta = 1. The F-measure weights
# recall beta times as much as precision, so when P > R (a short hypothesis) it weights the
# *smaller* number, recall, and the F lands close to R: a short answer scores well below
# its usual F1 (and a long one, with R > P, close to P). It simplifies to
# `F = P R (P² + R²) / (P³ + R³)`. We keep it to be comparable with published numbers, and
# show the difference.

# %%
hyp, ref = tokens("great strings"), tokens("these are great strings for the price and they last")
lcs = metrics.lcs_length(hyp, ref)
P, R = lcs / len(hyp), lcs / len(ref)
beta2 = (P / R) ** 2
print(f"LCS = {lcs}: P = {P:.2f}, R = {R:.2f}")
print(
    f"F with beta = P/R: {(1 + beta2) * P * R / (R + beta2 * P):.3f}   "
    f"usual F1: {2 * P * R / (P + R):.3f}   metrics.rouge_l: {metrics.rouge_l(hyp, ref)[2]:.3f}"
)
print("ROUGE-1 (P, R, F) on sets:", tuple(round(x, 3) for x in metrics.rouge_n(hyp, ref, 1)))

# %% [markdown]
# ## 4. USR, FMR, FCR, DIV by hand
#
# These look at what is *said*, not at overlap with the reference. **USR**: distinct
# sentences / N (a model that says the same thing to everyone has USR 1/N). With F the
# feature words of the dataset and S_i those in sentence i: **FMR**: how often the
# ground-truth feature of record i is in S_i; **FCR**: how much of F is ever used;
# **DIV**: the mean `|S_i ∩ S_j|` over pairs i < j (lower = more diverse).

# %%
features = ["tone", "price", "strings", "neck"]
said = ["great tone for the price", "great tone", "nice neck", "great tone"]
gt = ["tone", "price", "neck", "strings"]
sets = [metrics.detect_features(tokens(s), features) for s in said]
pairs = [(i, j) for i in range(len(sets)) for j in range(i + 1, len(sets))]
div_by_hand = sum(len(sets[i] & sets[j]) for i, j in pairs) / len(pairs)
print("S_i:", [sorted(s) for s in sets])
print(
    f"USR = {len(set(said))}/{len(said)}; FMR = "
    f"{sum(g in s for g, s in zip(gt, sets))}/{len(sets)}; FCR = "
    f"{len(set().union(*sets))}/{len(features)}; DIV by hand = {div_by_hand:.3f}"
)
m = metrics.feature_matrix(sets, features)
print(
    f"metrics: USR {metrics.unique_sentence_ratio([tokens(s) for s in said]):.2f}, FMR "
    f"{metrics.feature_matching_ratio(sets, gt):.2f}, FCR {metrics.feature_coverage_ratio(m):.2f},"
    f" DIV {metrics.feature_diversity(m):.3f}"
)

# %% [markdown]
# ## 5. The real test set
#
# Now the prepared Musical Instruments data (each test record: a user's held-out review,
# its explanation target sentence, its ground-truth feature). The systems see only what a
# model would see (the user's history and the item's tags), never the test review:
#
# - `random`: a random training target sentence;
# - `retrieval`: the target of the most similar training record (profile and tags);
# - `template`: "great {tag1} and {tag2}." from the item's first two tags;
#
# and two deliberately bad systems, built to fool the metrics:
#
# - `generic`: one sentence for everyone, made of the most frequent words of the training
#   targets: "the guitar sound is great and the strings are good for the price.";
# - `feature stuffing`: the ten most frequent features, listed, for everyone.
#
# and, for scale, `reference`: the answer itself (every text metric at its maximum).

# %%
prepared_dir = OUT / ("06_prepared_fast" if FAST else "06_prepared")  # as tutorial 06
if not (prepared_dir / "report.json").is_file():
    REVIEWS = find_reviews(
        "musical-instruments"
    )  # $MINIREASON_DATA_DIR, ../shared/data, fetch cache
    if FAST:
        prepare_sample(REVIEWS, prepared_dir, n_lines=600)
    else:
        prepare(PrepareConfig(reviews=str(REVIEWS), out=str(prepared_dir), progress=False))
prep = load_prepared(prepared_dir)
test = [r for r in prep.test if r["target"]]
train = [r for r in prep.train if r["target"]]
refs_text = [r["target"] for r in test]
gt_features = [r["feature"] for r in test]
print(f"{len(test)} test records with a target; {len(prep.features)} feature words")

top_words = Counter(w for r in train for w in tokens(r["target"]))
print("most frequent words of training targets:", [w for w, _ in top_words.most_common(15)])
top_features = [f for f, _ in Counter(r["feature"] for r in train).most_common(10)]
generic = "the guitar sound is great and the strings are good for the price."
stuffing = "great " + ", ".join(top_features) + "."
systems = {
    "random": random_reasons([r["target"] for r in train], len(test), seed=0),
    "retrieval": retrieval_reasons(train, test)[0],
    "template": [template_reason(r.get("item_tags") or []) for r in test],
    "generic": [generic] * len(test),
    "feature stuffing": [stuffing] * len(test),
    "reference": list(refs_text),
}
scores = {
    name: metrics.explanation_metrics(hyps, refs_text, gt_features, prep.features)
    for name, hyps in systems.items()
}
cols = ("bleu1", "bleu4", "rougeL_f", "usr", "fmr", "fcr", "div")
print(f"{'system':>17} " + " ".join(f"{c:>8}" for c in cols))
for name, s in scores.items():
    print(f"{name:>17} " + " ".join(f"{s[c]:8.3f}" for c in cols))

# %% [markdown]
# ## 6. How these metrics mislead
#
# Read the table row by row against what each system *does*:
#
# - **One sentence for everyone** (`generic`) is no explanation at all, yet its BLEU-1 and
#   ROUGE-L stand close to or above the honest baselines: it is made of the words every
#   review uses ("the", "great", "guitar"), so every reference shares some of them. Only
#   **USR** (1/N, essentially 0) gives it away. This is the known failure of generation
#   models (PETER's logs show it): a model that learns the safe generic sentence wins on
#   overlap metrics. Always report USR next to BLEU/ROUGE.
# - **The template** says "great {tag}" from the item alone: every user who buys the item
#   gets the same words, nothing about *them*. Its FMR is nonetheless high, because item
#   tags are mined from the same reviews as the ground-truth features: the template names
#   the features people mention for this item. FMR measures "names the likely feature", not
#   "personalised".
# - **Feature stuffing** lists ten features for everyone: FMR jumps (often the most
#   frequent feature is the answer), FCR stays tiny (always the same ten), and DIV is at its
#   worst (every pair shares ten features). It is not a sentence, and BLEU-4 says so.
# - **The reference** shows the ceiling: BLEU/ROUGE 100, and an FMR near 1 only because the
#   ground-truth feature was taken *from* that sentence (not exactly 1: the feature was
#   found by the data pipeline's own matching, the metric re-detects it on metric tokens).
#
# No single number is enough: overlap (BLEU/ROUGE) without USR rewards blandness; FMR
# without DIV/FCR rewards listing features; none of them asks a user whether the reason
# helped. The plot puts them side by side.

# %%
panels = [
    ("bleu1", "BLEU-1 (x100)"),
    ("rougeL_f", "ROUGE-L F (x100)"),
    ("usr", "USR"),
    ("fmr", "FMR"),
    ("div", "DIV (lower = more diverse)"),
]
names = list(scores)
colours = ["#7f7f7f", "#1f77b4", "#2ca02c", "#d62728", "#ff7f0e", "#9467bd"]
fig, axes = plt.subplots(1, len(panels), figsize=(15, 3.6), sharey=True)
for ax, (key, title) in zip(axes, panels, strict=True):
    values = [scores[n][key] for n in names]
    ax.barh(names, values, color=colours)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.2f}", va="center", fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_xlim(0, max(values) * 1.3 if max(values) > 0 else 1)
axes[0].invert_yaxis()
fig.suptitle(
    "Baselines and deliberately bad systems on the test set: the generic sentence "
    "keeps BLEU/ROUGE but USR ~ 0; stuffing and templates buy FMR",
    fontsize=10,
)
fig.tight_layout()
fig.savefig(OUT / "08_metrics_mislead.png", dpi=120)
plt.show()
print("saved", OUT / "08_metrics_mislead.png")

# %% [markdown]
# ## 7. Two more traps, in numbers
#
# Without the brevity penalty, a system that answers with one safe word gets, as BLEU-1,
# the share of references that contain that word. The penalty (c = N tokens against
# thousands) sends it to 0. ROUGE-L with `beta = P/R` is also hard on it, harder than F1.

# %%
one_word = [["the"]] * len(test)
ref_toks = [tokens(t) for t in refs_text]
bleu1 = metrics.corpus_bleu(one_word, ref_toks, 1)
share = sum("the" in r for r in ref_toks) / len(ref_toks)
print(
    f"answer 'the' to everyone: BLEU-1 {bleu1:.4f} with the brevity penalty, "
    f"{100 * share:.1f} without it (the share of references containing 'the')"
)
rl = np.mean([metrics.rouge_l(["the"], r) for r in ref_toks if "the" in r], axis=0)
print(
    f"...and its ROUGE-L where it matches: P {rl[0]:.2f}, R {rl[1]:.3f}, F(beta=P/R) "
    f"{rl[2]:.3f} vs usual F1 {2 * rl[0] * rl[1] / (rl[0] + rl[1]):.3f}"
)

# %% [markdown]
# ## 8. How sure is a difference?
#
# A corpus score is one draw: other test records would give another number. The bootstrap
# asks how far it moves. Draw as many records as there are, with replacement, score every
# system on the draw, repeat a thousand times, and read the 2.5th and 97.5th percentiles.
# Every system is scored on the *same* draws, so "how often is retrieval ahead of random"
# is a paired question (`minireason evaluate` prints the same table for the model).
#
# BLEU-4 moves most. It is made of a few dozen matched 4-grams in the whole corpus, and a
# handful of records bring many of them (a user who writes the same sentence in two
# reviews hands retrieval a whole matching sentence).

# %%
compared = {name: systems[name] for name in ("retrieval", "random", "template", "generic")}
sure = bootstrap_intervals(compared, refs_text, gt_features, prep.features, "retrieval")
for name, iv in sure["intervals"].items():
    print(
        f"{name:>10}  BLEU-4 {scores[name]['bleu4']:5.2f} [{iv['bleu4'][0]:5.2f}, "
        f"{iv['bleu4'][1]:5.2f}]   ROUGE-L {scores[name]['rougeL_f']:5.2f} "
        f"[{iv['rougeL_f'][0]:5.2f}, {iv['rougeL_f'][1]:5.2f}]"
    )
for name, ahead in sure["model_ahead"].items():
    print(f"retrieval ahead of {name} on {100 * ahead['bleu4']:.1f}% of the draws (BLEU-4)")
counts = metrics.bleu_counts([tokens(h) for h in systems["retrieval"]], ref_toks, 4)
matched = np.sort(counts[:, 8])[::-1]  # matched 4-grams, record by record
print(
    f"retrieval's matched 4-grams: {matched.sum()} in all, from {np.count_nonzero(matched)} "
    f"of {len(matched)} records; the top 3 records bring {matched[:3].sum()}"
)

# %% [markdown]
# ## What to take away
#
# - Compute metrics the way the papers do (tokenisation, corpus-level BLEU with BP, the
#   ROUGE-L beta), or the numbers are not comparable.
# - Report overlap *and* diversity: a generic sentence wins BLEU/ROUGE; USR exposes it.
# - FMR rewards naming likely features, which templates and lists do without any
#   personalisation; look at FCR and DIV beside it, and read the outputs.
# - Put an interval on every score you compare: a BLEU-4 lead that a few records make can
#   vanish on other records.
