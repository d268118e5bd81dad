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
# # 04 · Byte-level BPE on review text
#
# **Goal.** Train the package's byte-level BPE tokenizer (`minireason.prep.tokenizer`, built on
# the `tokenizers` library) on real Amazon reviews; read its first merges; watch how the
# vocabulary grows from bytes to words; measure tokens per word against vocabulary size on
# held-out reviews; see the special tokens of the prompt template; and check that accented
# and Chinese text round-trips exactly.
#
# **Time:** well under a minute on a 2-core CPU (`MINIREASON_FAST=1` reads 500 reviews).
# **Prerequisites:** none. The data: the Amazon 2014 Musical Instruments 5-core reviews
# (McAuley et al., SIGIR 2015), read from `$MINIREASON_DATA_DIR` or `../shared/data`.

# %%
import itertools
import json
import os
from pathlib import Path

import matplotlib.pyplot as plt

from minireason.data import amazon
from minireason.data.accounting import LoadReport
from minireason.data.fetch import find_reviews
from minireason.prep.tokenizer import SPECIAL_TOKENS, BPETokenizer

FAST = os.environ.get("MINIREASON_FAST") == "1"
OUT = Path(os.environ.get("MINIREASON_TUTORIAL_OUT", "runs/tutorials"))
OUT.mkdir(parents=True, exist_ok=True)
# the reviews: under $MINIREASON_DATA_DIR, ../shared/data, or the cache of `minireason data fetch`
REVIEWS = find_reviews("musical-instruments")

# %% [markdown]
# ## 1. Review text, split before training
#
# The tokenizer is trained on training text only; the last 10% of the reviews we read are
# held out to measure how well it compresses text it has not seen (a tokenizer that peeks at
# test text flatters every later number a little).

# %%
report = LoadReport()
limit = 500 if FAST else None
reviews = list(itertools.islice(amazon.load_reviews(REVIEWS, report), limit))
texts = [r.text for r in reviews]
cut = int(0.9 * len(texts))
train_texts, heldout_texts = texts[:cut], texts[cut:]
n_words = sum(len(t.split()) for t in heldout_texts)
skipped = sum(report.file(REVIEWS).skipped.values())
print(
    f"{len(texts)} reviews read ({skipped} lines skipped, e.g. empty text), "
    f"{len(train_texts)} to train on, {len(heldout_texts)} held out ({n_words} words)"
)
print("example:", texts[0][:160])

# %% [markdown]
# ## 2. Merges: bytes become words
#
# Byte-level BPE starts from the 256 byte values (so nothing is ever out of vocabulary) plus
# our special tokens, then repeatedly *merges* the most frequent adjacent pair into a new
# token. The first merges are the commonest pairs of English: a space plus a letter (shown as
# `Ġ`, the byte-level stand-in for a space), `th`, `in`, then whole frequent words.

# %%
tok = BPETokenizer.train(train_texts, vocab_size=1024 if FAST else 4096)
merges = json.loads(tok.tokenizer.to_str())["model"]["merges"]
print("first 20 merges:", [" + ".join(m) if isinstance(m, list) else m for m in merges[:20]])
first_new = 256 + len(SPECIAL_TOKENS)
for start in (first_new, first_new + 200, tok.vocab_size - 10):
    print(f"ids {start}..{start + 9}:", [tok.id_to_token(i) for i in range(start, start + 10)])

# %% [markdown]
# ## 3. Tokens per word against vocabulary size
#
# A larger vocabulary means fewer tokens per word (shorter sequences, so more text fits in
# the model's context) but a larger embedding and output layer (`V x C` parameters each, and
# rarer tokens with fewer training examples). The curve flattens: the first few hundred
# merges buy most of the compression.

# %%
smallest = 256 + len(SPECIAL_TOKENS)  # bytes + special tokens only
sizes = [smallest, 300, 512, 1024] if FAST else [smallest, 300, 512, 1024, 2048, 4096, 8192]
ratios = []
for size in sizes:
    t = BPETokenizer.train(train_texts, vocab_size=size)
    n_tokens = sum(len(ids) for ids in t.encode_batch(heldout_texts))
    ratios.append(n_tokens / n_words)
    print(f"vocab {t.vocab_size:>5} (asked {size:>5}): {ratios[-1]:.2f} tokens per held-out word")

fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(sizes, ratios, "o-")
ax.set_xscale("log", base=2)
ax.set_xlabel(f"vocabulary size ({smallest} = bytes + special tokens only)")
ax.set_ylabel("tokens per held-out word")
ax.set_title(f"byte-level BPE on {len(train_texts)} instrument reviews")
ax.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(OUT / "04_tokens_per_word.png", dpi=100)
plt.show()
print("saved", OUT / "04_tokens_per_word.png")

# %% [markdown]
# (With few training reviews, the trainer may stop short of the asked size: a pair must
# occur at least twice to be merged. The printed "vocab" is the size actually reached.)
#
# ## 4. Special tokens
#
# The prompt template (tutorial 05) needs tokens that no review can produce by accident.
# They are registered first, so their ids are small and fixed, and their strings map to one
# id each instead of being split into bytes.

# %%
print({t: tok.special[t] for t in SPECIAL_TOKENS})
ids = tok.encode("<hist> strings<sep> tone<sep> rated 5<item> cable<reason>")
print(ids)
print([tok.id_to_token(i) for i in ids])

# %% [markdown]
# ## 5. Round trip on accented and Chinese text
#
# Byte level means any UTF-8 string encodes and decodes back exactly. Text unlike the
# training data costs more tokens: an accented letter is two bytes, a Chinese character three,
# and neither was merged during training on English reviews.

# %%
for text in [
    "Great strings, crisp tone.",
    "Crème brûlée, naïve café: très bien!",
    "这把吉他的音色很好。",
    "Sounds great 🎸 10/10",
]:
    ids = tok.encode(text)
    back = tok.decode(ids)
    print(
        f"{len(ids):>3} tokens, {len(text.encode('utf-8')):>3} bytes, round trip "
        f"{'ok' if back == text else 'FAILED'}: {text}"
    )
    assert back == text
