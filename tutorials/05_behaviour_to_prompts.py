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
# # 05 · From behaviour logs and item tags to prompts (seed steps 1 to 3)
#
# **Goal.** Walk the seed document's first three steps on real reviews, with the package's
# own functions: (1) load and validate behaviour logs, accounting for every skipped line,
# and split them by time so that no model sees a user's future; (2) mine *aspects* (the
# features reviews talk about), pick explanation targets, and give items tags; (3) build a
# prompt from a user's history and an item's tags, render it for people, and read its
# segment map (which tokens came from which history item: the basis of "attention as
# evidence" in tutorial 07).
#
# **Time:** under a minute on a 2-core CPU (`MINIREASON_FAST=1` reads 500 reviews).
# **Prerequisites:** tutorial 04 (the tokenizer). The data: Amazon 2014 Musical Instruments
# 5-core (McAuley et al., SIGIR 2015), from `$MINIREASON_DATA_DIR` or `../shared/data`.
# Assignment A3 asks you to write the prompt builder and the fine-tuning loss mask yourself.

# %%
import itertools
import os
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt

from minireason.data import amazon
from minireason.data.accounting import LoadReport
from minireason.data.clean import drop_duplicates, sort_histories
from minireason.data.fetch import find_reviews
from minireason.data.split import leave_last_out
from minireason.prep.features import (
    ItemFeatures,
    Target,
    explanation_target,
    feature_rates,
    history_items,
    mine_aspects,
    predict_focus,
    profile,
    target_focus,
)
from minireason.prep.prompts import build_prompt, render_prompt
from minireason.prep.tokenizer import BPETokenizer

FAST = os.environ.get("MINIREASON_FAST") == "1"
OUT = Path(os.environ.get("MINIREASON_TUTORIAL_OUT", "runs/tutorials"))
OUT.mkdir(parents=True, exist_ok=True)
# the reviews: under $MINIREASON_DATA_DIR, ../shared/data, or the cache of `minireason data fetch`
REVIEWS = find_reviews("musical-instruments")

# %% [markdown]
# ## Step 1a. Load and validate: every line is accounted for
#
# Real logs have bad lines. A loader that crashes on the first one is useless; one that
# silently drops them hides how much data was lost. The package's loaders count every line
# as kept or skipped *by reason*, with `file:line` examples. To see that at work, we first
# feed it a small file of our own (written to the output folder) with typical problems.

# %%
bad = OUT / "05_bad_reviews.jsonl"
bad.write_text(
    "\n".join(
        [
            '{"reviewerID": "u1", "asin": "i1", "overall": 5.0, "unixReviewTime": 1400000000, '
            '"reviewText": "Good strings."}',
            '{"reviewerID": "u1", "asin": "i2", "overall": 5.0, "unixReviewTime": 1400000000',
            '{"reviewerID": "u2", "asin": "i1", "overall": 9.0, "unixReviewTime": 1400000000, '
            '"reviewText": "Nine stars?"}',
            '{"reviewerID": "u3", "asin": "i1", "overall": 4.0, "unixReviewTime": 1400000000, '
            '"reviewText": ""}',
            '{"asin": "i3", "overall": 4.0, "unixReviewTime": 1400000000, "reviewText": "Who?"}',
        ]
    )
    + "\n",
    encoding="utf-8",
)
bad_report = LoadReport()
kept = list(amazon.load_reviews(bad, bad_report))
file_report = bad_report.file(bad)
print(f"{file_report.lines_read} lines read, {len(kept)} kept; skipped by reason:")
for reason, examples in file_report.examples.items():
    print(f"  {reason}: {file_report.skipped[reason]}  e.g. {examples[0].split('/')[-1]}")

# %% [markdown]
# Now the real file. Reviews whose text is empty are skipped (they cannot be explained), and
# a second review of the same item by the same user is dropped as a repeat.

# %%
report = LoadReport()
limit = 500 if FAST else None
reviews = list(itertools.islice(amazon.load_reviews(REVIEWS, report), limit))
reviews = drop_duplicates(reviews, report)
fr = report.file(REVIEWS)
print(f"{fr.lines_read} lines read, {len(reviews)} reviews kept, skipped: {dict(fr.skipped)}")
for reason, examples in fr.examples.items():
    print(f"  {reason}: e.g. {examples[0].split('/')[-1]}")

# %% [markdown]
# ## Step 1b. Split by time
#
# *Leave-last-out*: each user's reviews sorted by time; the last goes to test, the one before
# to validation, the rest to training. Everything learned later (aspects, tokenizer, item
# tags) comes from the training split only, so test reviews stay unseen.

# %%
splits = leave_last_out(reviews)
print({name: len(rs) for name, rs in splits.items()})
train = splits["train"]
last_train = {}
for r in train:
    last_train[r.user] = max(last_train.get(r.user, r.time), r.time)
future_in_train = sum(r.time < last_train.get(r.user, r.time) for r in splits["test"])
print("test reviews older than some training review of the same user:", future_in_train)

# %% [markdown]
# ## Step 2. Aspects, explanation targets and item tags
#
# An *aspect* is a thing reviews talk about (strings, tuner, cable, sound ...), mined as the
# most frequent noun-like words and word pairs across training reviews. An *explanation
# target* is one review sentence that mentions an aspect (the PETER/PEPLER definition):
# what the model will learn to write. Reviews without one are counted by reason.

# %%
vocab = mine_aspects((r.text for r in train), n_unigrams=150, n_bigrams=50, min_df=2 if FAST else 5)
print(f"{len(vocab.df)} aspects; the 15 most frequent:", vocab.aspects[:15])
targets = [explanation_target(r, vocab) for r in train]
found = [t for t in targets if isinstance(t, Target)]
print(
    f"{len(found)} of {len(train)} training reviews have a target;",
    "no target:",
    dict(Counter(t for t in targets if not isinstance(t, Target))),
)
print("example target:", found[0].sentence, "| feature:", found[0].feature)

features = ItemFeatures(train, vocab, n_item_tags=5)
item = max(features.counts, key=lambda i: sum(features.counts[i].values()))
print(f"item {item}: tags {features.tags(item)}; aspects {features.item_aspects(item, 5)}")

# %% [markdown]
# ## Step 3. A prompt, for people and for the model
#
# For a test review we take the user's *training* reviews before it (their history: the
# aspects they mentioned, the tags of those items, their ratings) and the item's tags. The
# review itself never enters its own prompt: its text is what we want the model to explain.
#
# The prompt ends with a *focus*: the few aspects the reason should talk about (PETER feeds
# its generator a feature word the same way). A training record's focus is read off its own
# target sentence, so fine-tuning teaches the model to write about the focus it is given.
# At test time the target is unknown, so the focus is *predicted* from training data only:
# aspects the item's reviews mention often, that the user talks about, and that tend to be
# the feature of the sentences that mention them (`feature_rates`).

# %%
tok = BPETokenizer.train((r.text for r in train), vocab_size=1024 if FAST else 4096)
histories = sort_histories(train)
record = max(splits["test"], key=lambda r: len(histories.get(r.user, [])))
# ``record`` is a test review, so it is not in ``train``; training reviews with the same
# timestamp precede it in the user's time-sorted sequence (as in ``minireason.prep.prepare``).
past = [r for r in histories.get(record.user, []) if r.time <= record.time]
history = history_items(past, features, max_items=5)
item_tags = features.tags(record.item)
rates = feature_rates(
    [
        (features.aspects_of_review(r), t.feature)
        for r, t in zip(train, targets)
        if isinstance(t, Target)
    ]
)
focus = predict_focus(features.item_aspects(record.item), profile(history)["aspects"], rates, 3)
print(render_prompt(history, item_tags, focus=focus))
print("profile:", profile(history))
target = explanation_target(record, vocab)
if isinstance(target, Target):
    print(
        f"what the user wrote: {target.sentence!r} (feature {target.feature!r}); "
        f"as a training record its focus would be {target_focus(target.sentence, vocab)}"
    )

prompt = build_prompt(
    history, item_tags, max_tokens=64, tokenizer=tok, item=record.item, focus=focus
)
print(
    f"\n{len(prompt.ids)} tokens, {prompt.n_history} history blocks kept, "
    f"{prompt.n_dropped} oldest dropped to fit 64 tokens"
)
print(tok.decode(prompt.ids))
print("\nsegment map (kind, owner, label -> the tokens of that span):")
for seg in prompt.segments[:12]:
    span = tok.decode(prompt.ids[seg.start : seg.end])
    print(
        f"  {seg.kind:<7} {seg.owner:<7} {seg.label!s:<12} [{seg.start:>2}:{seg.end:>2}] {span!r}"
    )

# %% [markdown]
# ## A picture: what reviews talk about, and how long prompts are
#
# Left, the document frequency of the top aspects (a long tail: a few aspects dominate, which
# is why a model that always says "great strings" scores deceptively well on some metrics;
# tutorial 08). Right, the prompt length of every test review with a 64-token budget: where
# the histogram piles up at the budget, history was dropped.

# %%
lengths = []
for r in splits["test"]:
    past = [p for p in histories.get(r.user, []) if p.time <= r.time]
    h = history_items(past, features, max_items=5)
    lengths.append(len(build_prompt(h, features.tags(r.item), 64, tok).ids))
top = vocab.aspects[:20]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
ax1.barh(top[::-1], [vocab.df[a] for a in top[::-1]])
ax1.set_xlabel("training reviews mentioning it")
ax1.set_title("top 20 aspects")
ax2.hist(lengths, bins=range(0, 68, 4))
ax2.axvline(64, color="red", linestyle="--", label="budget (64)")
ax2.set_xlabel("prompt tokens")
ax2.set_ylabel("test reviews")
ax2.set_title(f"prompt lengths, {len(lengths)} test reviews")
ax2.legend()
fig.tight_layout()
fig.savefig(OUT / "05_aspects_and_prompt_lengths.png", dpi=100)
plt.show()
print("saved", OUT / "05_aspects_and_prompt_lengths.png")
