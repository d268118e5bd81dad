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
# # 01（中文版）· 手算注意力：重做文档 4.3 节的例子
#
# 这是教程 01（`01_attention_by_hand.py`）的中文版，写给读过种子文档《基于大语言模型的推荐理由生成技术》
# 的读者。文档第 4.2 节给出了自注意力机制的公式，第 4.3 节“案例分析与讲解”用句子
# "I like to read books and watch movies" 演示了一遍计算，但印出来的算式和结果是错的。
#
# **目标。** 只用 NumPy，沿用文档自己的记号（查询 $Q$、键 $K$、值 $V$、键向量的维度 $d_k$、
# 相似度矩阵 $QK^T$、加权输出 Output），一步一步重算 4.3 节的例子：相似度、除以 $\sqrt{d_k}$、
# softmax、加权求和；每个数都与本项目的参考实现 `minireason.nn.attention` 以及
# `minireason.course.worked_example`（例子的输入和正确结果在包里只有这一处）对照断言。
# 然后逐条列出勘误：文档印了什么、正确的是什么、为什么。最后看本项目的字节级 BPE 分词器
# 怎样切分中文句子，以及这对提示（prompt）的 token 预算意味着什么。
#
# **时间：** 2 核 CPU 上几秒钟；本教程没有可以缩小的数据，`MINIREASON_FAST=1` 不改变任何内容。
# **预备知识：** 矩阵乘法、softmax。
#
# 作为脚本运行（`python tutorials/01_attention_by_hand_zh.py`），或作为笔记本打开
# （`jupytext --to notebook tutorials/01_attention_by_hand_zh.py`）。图保存在 `runs/tutorials/`
# （或 `$MINIREASON_TUTORIAL_OUT`）下。图中的文字是英文和数学符号：不是每台机器都装了中文字体，
# 这样 Matplotlib 在哪里都能画出完整的图。

# %%
import math
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from tokenizers import pre_tokenizers

from minireason.course import worked_example as we
from minireason.nn.attention import attention_forward
from minireason.prep.features import HistoryItem
from minireason.prep.prepare import PrepareConfig
from minireason.prep.prompts import build_prompt
from minireason.prep.tokenizer import BPETokenizer

OUT = Path(os.environ.get("MINIREASON_TUTORIAL_OUT", "runs/tutorials"))
OUT.mkdir(parents=True, exist_ok=True)
np.set_printoptions(precision=4, suppress=True)
E = math.e

# %% [markdown]
# ## 1. 公式（文档 4.2 节）
#
# $$\text{Attention}(Q, K, V) = \text{softmax}\left(\frac{QK^T}{\sqrt{d_k}}\right) V$$
#
# 这就是通常所说的**缩放点积注意力**（scaled dot-product attention）：点积 $QK^T$ 衡量查询和键的相似度，
# 除以 $\sqrt{d_k}$ 是“缩放”。文档没有写出的是形状，而形状正是整个计算的关键：
# $Q$ 是 $(T_q, d_k)$，每行一个查询；$K$ 是 $(T_k, d_k)$，每行一个键；所以 $QK^T$ 是
# $(T_q, T_k)$，**每个（查询，键）对一个相似度**。softmax 对每一行（一个查询）在所有键上归一化，
# 再乘以 $V$ $(T_k, d_v)$，得到 $(T_q, d_v)$ 的加权输出，每个查询一行。

# %% [markdown]
# ## 2. 例子的输入（文档 4.3 节）
#
# 文档把句子中的每个单词转换为一个三维向量；查询是 $[1, 0, 0]$；键和值都是这八个向量，
# 按句子顺序排成 $8 \times 3$ 的矩阵。包里的 `worked_example` 保存了这些输入：

# %%
Q = we.QUERY[None, :]  # 查询（Query），1×3
K = we.VECTORS  # 键（Key），8×3，每行一个单词
V = we.VECTORS  # 值（Value），8×3，与键相同
d_k = K.shape[1]  # 键向量的维度
for word, vec in zip(we.WORDS, K):
    print(f"{word:>7}: {vec.astype(int)}")
print("查询 Q =", Q[0].astype(int), "  d_k =", d_k)
assert d_k == we.D_K == 3

# %% [markdown]
# ## 3. 单个查询，一步一步
#
# **第一步：相似度 $QK^T$。** $Q$ 是 $1 \times 3$，$K^T$ 是 $3 \times 8$，乘积是 $1 \times 8$：
# 查询和每个键的点积。因为查询是 $[1, 0, 0]$，点积就是每个单词向量的第一个分量：
# I、read、watch 得 1，其余得 0。

# %%
scores = Q @ K.T  # 相似度 QK^T，1×8
print("QK^T =", scores[0])
np.testing.assert_array_equal(scores[0], [1, 0, 0, 1, 0, 0, 1, 0])

# %% [markdown]
# **第二步：除以 $\sqrt{d_k}$。** $d_k = 3$，相似度乘以 $1/\sqrt 3 \approx 0.5774$。文档的例子漏掉了这一步；
# 下面两种都算：先按文档的做法不缩放，再按公式缩放。
#
# **第三步：softmax。** 对每一行（一个查询）在八个键上做 softmax：
# $\text{softmax}(s)_j = e^{s_j} / \sum_{k=1}^{8} e^{s_k}$，求和是**沿着一行、对所有键**。
# 先减去行最大值再取指数，结果不变（softmax 对平移不敏感），但不会溢出。
#
# **第四步：加权求和。** 权重（$1 \times 8$）乘以值 $V$（$8 \times 3$），得到 $1 \times 3$ 的加权输出。


# %%
def softmax_rows(s):
    """每一行在所有键上归一化，每行之和为 1。"""
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def attention_by_hand(Q, K, V, scale):
    """缩放点积注意力的四步：相似度、缩放、softmax、加权求和。返回 (权重, 加权输出)。"""
    s = (Q @ K.T) * scale  # (T_q, T_k)
    w = softmax_rows(s)  # (T_q, T_k)
    return w, w @ V  # (T_q, d_v)


w_raw, out_raw = attention_by_hand(Q, K, V, scale=1.0)  # 文档的做法：不缩放
w_sc, out_sc = attention_by_hand(Q, K, V, scale=1 / math.sqrt(d_k))  # 公式的做法

print(f"{'单词':>6} {'QK^T':>5} {'e^(QK^T)':>9} {'权重(不缩放)':>12} {'权重(缩放)':>10}")
for j, word in enumerate(we.WORDS):
    print(
        f"{word:>7} {scores[0, j]:>5.0f} {math.exp(scores[0, j]):>9.4f} "
        f"{w_raw[0, j]:>14.4f} {w_sc[0, j]:>12.4f}"
    )
print("分母（不缩放）Σe^(QK^T) = 3e + 5 =", f"{np.exp(scores).sum():.4f}")
print("加权输出（不缩放）:", out_raw[0])
print("加权输出（缩放）:  ", out_sc[0])

# %% [markdown]
# 不缩放时，权重是 $e/(3e+5)$（I、read、watch）和 $1/(3e+5)$（其余五个），加权输出是
# $(e \cdot (\text{I} + \text{read} + \text{watch}) + \text{like} + \text{to} + \text{books} + \text{and} + \text{movies}) / (3e+5) = [3e,\ e+4,\ e+3]/(3e+5)$。
# 缩放时把 $e$ 换成 $a = e^{1/\sqrt 3}$。核对这两个闭式解，再核对包里的结果：
# `we.single_query` 和 `attention_forward`（模型用的就是它，默认 `scale` 为 $1/\sqrt{d_k}$）。

# %%
Z = 3 * E + 5
assert math.isclose(w_raw[0, 0], E / Z) and math.isclose(w_raw[0, 1], 1 / Z)
np.testing.assert_allclose(out_raw[0], np.array([3 * E, E + 4, E + 3]) / Z, rtol=1e-14)
a = math.exp(1 / math.sqrt(3))
np.testing.assert_allclose(out_sc[0], np.array([3 * a, a + 4, a + 3]) / (3 * a + 5), rtol=1e-14)

for scaled, w_mine, out_mine in ((False, w_raw, out_raw), (True, w_sc, out_sc)):
    ref = we.single_query(scaled)  # 包里保存的正确结果
    np.testing.assert_allclose(w_mine, ref.weights, rtol=1e-14)
    np.testing.assert_allclose(out_mine, ref.output, rtol=1e-14)
pkg_out, cache = attention_forward(Q, K, V)  # 默认缩放 1/sqrt(d_k)
np.testing.assert_allclose(pkg_out, out_sc, rtol=1e-14)
np.testing.assert_allclose(cache.weights, w_sc, rtol=1e-14)
pkg_raw, _ = attention_forward(Q, K, V, scale=1.0)
np.testing.assert_allclose(pkg_raw, out_raw, rtol=1e-14)
print("与 worked_example 和 minireason.nn.attention 一致：", pkg_out[0])

# %% [markdown]
# 缩放让相似度变小，权重变得更平缓：I、read、watch 的权重下降，其余五个单词的权重上升。

# %%
print(f"对 I 的权重：不缩放 {w_raw[0, 0]:.4f}，缩放 {w_sc[0, 0]:.4f}")
print(f"对 like 的权重：不缩放 {w_raw[0, 1]:.4f}，缩放 {w_sc[0, 1]:.4f}")
assert w_sc[0, 0] < w_raw[0, 0] and w_sc[0, 1] > w_raw[0, 1]

# %% [markdown]
# ## 4. 让每个单词都当一次查询：完整的自注意力
#
# 文档说要“计算句子中每个单词的重要性”，它印出的也是八行的结果，看来想算的是完整的自注意力：
# 每个单词的向量同时当查询、键和值，即 $Q = K = V$（$8 \times 3$）。这时相似度矩阵
# $QK^T$ 是 $8 \times 8$：第 $i$ 行第 $j$ 列是单词 $i$（查询）与单词 $j$（键）的点积。
# softmax 仍然逐行做，每行有自己的分母；加权输出是 $8 \times 3$，每个单词一行。

# %%
S = K @ K.T  # 相似度矩阵 QK^T（Q = K），8×8
print("相似度矩阵 QK^T（行 = 查询，列 = 键）:")
print(" " * 8 + " ".join(f"{w:>6}" for w in we.WORDS))
for word, row in zip(we.WORDS, S):
    print(f"{word:>7} " + " ".join(f"{v:>6.0f}" for v in row))

for scaled in (False, True):
    scale = 1 / math.sqrt(d_k) if scaled else 1.0
    w_sa, out_sa = attention_by_hand(K, K, V, scale)
    ref = we.self_attention(scaled)
    np.testing.assert_allclose(w_sa, ref.weights, rtol=1e-14)
    np.testing.assert_allclose(out_sa, ref.output, rtol=1e-14)
    np.testing.assert_allclose(attention_forward(K, K, V, scale=scale)[0], out_sa, rtol=1e-14)
    assert np.allclose(w_sa.sum(axis=1), 1.0)
    print(f"\n加权输出（{'缩放' if scaled else '不缩放'}，8×3，每个单词一行）:")
    for word, row in zip(we.WORDS, out_sa):
        print(f"{word:>7}: {row}")

# %% [markdown]
# 以 read $= [1, 1, 0]$ 这一行为例：相似度是 $[1, 1, 0, 2, 1, 1, 1, 1]$，不缩放时分母是
# $e^2 + 6e + 1$，对自己的权重是 $e^2/(e^2 + 6e + 1)$。like 和 movies、books 和 and 的向量相同，
# 所以它们的行完全一样。

# %%
w_sa_raw = we.self_attention(False).weights
assert math.isclose(w_sa_raw[3, 3], E**2 / (E**2 + 6 * E + 1))
assert np.allclose(w_sa_raw.diagonal(), w_sa_raw.max(axis=1))  # 每行最大的是自己
np.testing.assert_array_equal(w_sa_raw[1], w_sa_raw[7])  # like, movies
np.testing.assert_array_equal(w_sa_raw[4], w_sa_raw[5])  # books, and
print("read 对自己的权重 e²/(e² + 6e + 1) =", f"{w_sa_raw[3, 3]:.4f}")

# %% [markdown]
# ## 5. 文档算错在哪里
#
# 先用文档自己印出的数（包里按原样抄录在 `DOC_QKT`、`DOC_SOFTMAX_EXPONENTS`、`DOC_OUTPUT`）
# 复现它的分母：文档写
# $\text{softmax}(QK^T) = e^{QK^T} / \sum_{i=1}^{n} e^{QK^T_i}$，并说“$n$ 是相似度矩阵的行数”，
# 也就是沿着**列**往下、对所有行求和。它唯一的分母
# $e^1 + e^0 + e^0 + e^2 + e^0 + e^0 + e^2 + e^0$ 正是它那个 $8 \times 3$ “$QK^T$”第一列的指数和：

# %%
D = we.doc_denominator()
col = next(j for j in range(3) if np.array_equal(we.DOC_QKT[:, j], we.DOC_DENOMINATOR_EXPONENTS))
row_denoms = np.exp(S).sum(axis=1)  # 完整自注意力每行的分母（不缩放）
row_denoms_sc = np.exp(S / math.sqrt(d_k)).sum(axis=1)
print("文档的 QK^T 第", col + 1, "列:", we.DOC_QKT[:, col].astype(int))
print(f"文档的分母 e + 2e² + 5 = {D:.4f}")
print(f"单个查询的分母 3e + 5 = {np.exp(scores).sum():.4f}")
print("自注意力各行的分母:", "，".join(f"{w} {z:.4f}" for w, z in zip(we.WORDS, row_denoms)))
assert col == 0 and math.isclose(D, E + 2 * E**2 + 5)
assert not np.isclose(row_denoms, D).any() and not np.isclose(row_denoms_sc, D).any()
assert not np.isclose(np.exp(scores).sum(), D)

# %% [markdown]
# 下面是勘误表。表里的数都由包里的数组算出，与英文版教程的勘误（`we.errata()`）逐条对应，
# 关键的数和行号用断言与英文版核对。

# %%
sq_raw, sq_sc = we.single_query(False), we.single_query(True)
sa_raw, sa_sc = we.self_attention(False), we.self_attention(True)
doc_rows_differ = [
    str(i + 1)
    for i in range(len(we.DOC_SOFTMAX_EXPONENTS))
    if not np.array_equal(we.DOC_SOFTMAX_EXPONENTS[i], we.DOC_QKT[i])
]
gram_rows_differ = [
    we.WORDS[i] for i in range(8) if not np.array_equal(we.DOC_QKT[i], sa_raw.scores[i, :3])
]
doc_row_sums = np.exp(we.DOC_SOFTMAX_EXPONENTS).sum(axis=1) / D
gap_raw = float(np.abs(sa_raw.output - we.DOC_OUTPUT).max())
gap_sc = float(np.abs(sa_sc.output - we.DOC_OUTPUT).max())
doc_values = np.unique(we.DOC_OUTPUT)
closest = min((gap_raw, "自注意力，不缩放"), (gap_sc, "自注意力，按 1/√3 缩放"))


def fmt(values, digits=0):
    return ", ".join(f"{v:.{digits}f}" for v in values)


ERRATA_ZH = {  # 英文版勘误的标题 -> (标题, 文档印的, 正确的, 原因)
    "the product QK^T": (
        "相似度矩阵 QK^T 的乘法",
        "左边不是查询 [1, 0, 0]，而是 8×3 的键矩阵；右边是同一个 8×3 矩阵，没有转置；结果印成 8×3",
        f"单个查询：QK^T = [{fmt(sq_raw.scores[0])}]（1×8）；完整自注意力（Q = K）：QK^T 是 8×8",
        "(8×3)(8×3) 没有定义：内维 3 和 8 不相等。K 必须转置成 3×8，每个（查询，键）对得到一个相似度",
    ),
    "the printed 'QK^T' values": (
        "印出的 QK^T 数值",
        "8 行 3 列：" + "；".join(" ".join(f"{v:g}" for v in row) for row in we.DOC_QKT),
        "自注意力的相似度是 8×8 矩阵 QK^T（每个查询-键对一个数）；不存在 8×3 的相似度矩阵",
        "它也不是 8×8 矩阵的一部分：与 QK^T 的前三列相比，"
        + "、".join(gram_rows_differ)
        + " 这几行都不同",
    ),
    "the softmax denominator": (
        "softmax 的分母",
        f"所有元素共用一个分母 e^1+e^0+e^0+e^2+e^0+e^0+e^2+e^0 = e + 2e² + 5 = {D:.4f}",
        f"每个查询（每一行）有自己的分母：单个查询 3e + 5 = {np.exp(sq_raw.scores).sum():.4f}；"
        "自注意力各行 " + "，".join(f"{w} {z:.4f}" for w, z in zip(we.WORDS, row_denoms)),
        f"它是沿着自己那个 8×3“QK^T”的第 {col + 1} 列往下求和（“n 是相似度矩阵的行数”），"
        "而不是对同一个查询的所有键求和；它不等于任何一行的分母，缩放或不缩放都不等于",
    ),
    "the softmax matrix": (
        "softmax(QK^T) 矩阵",
        f"{len(we.DOC_SOFTMAX_EXPONENTS)} 行 3 列；第 {'、'.join(doc_rows_differ)} 行的指数"
        "与它自己的“QK^T”的同一行不一致",
        "权重是 1×8（单个查询）或 8×8（自注意力），每行之和为 1",
        "softmax 对每个查询在所有键上归一化；文档各行之和只有 "
        f"{doc_row_sums.min():.3f} 到 {doc_row_sums.max():.3f}，不是 1；而且八个单词只有七行",
    ),
    "the 1/sqrt(d_k) scale": (
        "缩放因子 1/√d_k",
        "4.2 节的公式除以 √d_k，4.3 节的例子从头到尾没有除",
        f"d_k = {d_k}：相似度乘以 {1 / math.sqrt(d_k):.4f}；查询对 I 的权重缩放后是 "
        f"{sq_sc.weights[0, 0]:.4f}，不缩放是 {sq_raw.weights[0, 0]:.4f}",
        "若查询和键的各分量是均值 0、方差 1 的独立随机数，点积的方差是 d_k；除以 √d_k 让它回到 1，"
        "softmax 不会随 d_k 增大而饱和。d_k = 3 时，缩放让权重更平缓",
    ),
    "the output": (
        "加权输出 Output",
        f"8×3 矩阵，元素只有 {' / '.join(f'{v:.2f}' for v in doc_values)} 三种",
        f"单个查询：[{fmt(sq_raw.output[0], 4)}] = [3e, e+4, e+3] / (3e+5)；"
        "自注意力：8×3，每个单词一行，不缩放或缩放（见第 4 节）",
        f"它用 {len(we.DOC_SOFTMAX_EXPONENTS)}×3 的 softmax 矩阵乘 8×3 的值矩阵，同样没有定义；"
        f"最接近的正确 8×3 输出（{closest[1]}）与它仍差到 {closest[0]:.2f}",
    ),
}

# 与英文版的勘误逐条对应，关键的数一致
errata_en = we.errata()
assert [e.what for e in errata_en] == list(ERRATA_ZH)
by_what = {e.what: e for e in errata_en}
assert f"{D:.4f}" in by_what["the softmax denominator"].document
assert f"{np.exp(sq_raw.scores).sum():.4f}" in by_what["the softmax denominator"].correct
assert f"column {col + 1}" in by_what["the softmax denominator"].why
assert ", ".join(gram_rows_differ) in by_what["the printed 'QK^T' values"].why
assert ", ".join(doc_rows_differ) in by_what["the softmax matrix"].document
assert f"{closest[0]:.2f}" in by_what["the output"].why
assert len(doc_values) == 3
assert doc_row_sums.max() < 1 and len(we.DOC_SOFTMAX_EXPONENTS) == 7

for i, (title, doc, right, why) in enumerate(ERRATA_ZH.values(), 1):
    print(f"{i}. {title}\n   文档：{doc}\n   正确：{right}\n   原因：{why}\n")

# %% [markdown]
# 文档的加权输出与两种正确的自注意力输出并排（每行一个单词）：

# %%
print(f"{'':>7}   文档印的{'':>8}不缩放{'':>18}缩放")
for word, d_row, r_row, s_row in zip(we.WORDS, we.DOC_OUTPUT, sa_raw.output, sa_sc.output):
    print(f"{word:>7}   {fmt(d_row, 2)}  |  {fmt(r_row, 4)}  |  {fmt(s_row, 4)}")

# %% [markdown]
# ## 6. 权重的热图
#
# 上面两格是单个查询 $[1, 0, 0]$，下面两格是完整自注意力；左边不缩放，右边缩放。
# 每一行里权重最大的是单词自己（有时与共有同样分量的单词并列）；缩放让每一行都更平缓。图由包里的
# `we.figure` 画在一个 pyplot 图上（笔记本里直接显示），与英文版教程用的是同一个函数。

# %%
fig = we.figure(plt.figure())
fig.savefig(OUT / "01_zh_worked_example_heatmap.png", dpi=120)
print("已保存", OUT / "01_zh_worked_example_heatmap.png")
plt.show()

# %% [markdown]
# ## 7. 字节级 BPE 怎样切分中文，以及提示的 token 预算
#
# 模型读的不是单词向量，而是 token id。本项目的分词器（`minireason.prep.tokenizer`）是
# **字节级 BPE**：先把文本变成 UTF-8 字节（一个汉字通常 3 个字节，一个英文字母 1 个字节），
# 从 256 个字节出发，反复把训练文本里最常见的相邻一对合并成新 token。所以任何字符串都能编码，
# 也都能原样解码；训练时见得少的字符只是多花几个 token。
#
# 下面用几句本教程自己写的中英对照句子（同一个意思各写一遍）训练两个小分词器：
# 一个只用英文句子（好比用英文评论训练出来的分词器），一个用中英两种句子。
# 教程 04 在真实的英文评论上讲了英文这一边。

# %%
PAIRS = [  # (中文, English)：同一个意思
    ("这把吉他的音色很温暖。", "This guitar has a warm tone."),
    ("琴弦很好弹，音色明亮。", "The strings are easy to play and sound bright."),
    ("这根线很结实，没有杂音。", "This cable is sturdy and has no noise."),
    ("调音器反应很快，屏幕也清楚。", "The tuner responds quickly and the screen is clear."),
    ("价格便宜，质量也不错。", "The price is low and the quality is good."),
    ("这个效果器的声音很自然，我很喜欢。", "This pedal sounds natural, I like it a lot."),
    ("包装很好，送货也很快。", "The packaging was good and delivery was fast."),
    ("音箱的声音太小了，有点失望。", "The amp is too quiet, a bit disappointing."),
    ("这个话筒适合在家里录音。", "This microphone is good for recording at home."),
    ("琴弦用了一个月就生锈了。", "The strings rusted after one month."),
    ("适合初学者，手感很舒服。", "Good for beginners, it feels comfortable."),
    ("我喜欢读书和看电影。", "I like to read books and watch movies."),
    ("我给它打了五星。", "I rated it five stars."),
    ("我给这个音箱打了两星。", "I rated this amp two stars."),
]
HELD_OUT = [  # 训练时没见过的句子
    (
        "这把吉他的琴弦音色明亮，适合初学者。",
        "The strings of this guitar sound bright, good for beginners.",
    ),
    ("音箱很结实，声音也很自然。", "The amp is sturdy and sounds natural too."),
    ("送货太慢了，包装也不好。", "Delivery was too slow and the packaging was bad."),
]
zh_train, en_train = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
tok_en = BPETokenizer.train(en_train, vocab_size=1024)
tok_bi = BPETokenizer.train(zh_train + en_train, vocab_size=1024)
print("只用英文训练的词表大小:", tok_en.vocab_size, "  中英训练的词表大小:", tok_bi.vocab_size)


# %% [markdown]
# 两个词表都远小于要求的 1024：一对相邻 token 至少出现两次才会被合并，这么少的句子很快就合并完了。
#
# 要看一个 token 覆盖了哪些字节，需要字节级 BPE 的约定：词表里的每个字节用一个可打印字符表示
# （例如空格写成 `Ġ`）。下面把这张表还原出来，并与 `tokenizers` 库的字母表核对；
# 一个 token 的字节若是完整的 UTF-8 字符就照原样显示，不完整的字节显示成 `\xe5` 这样。


# %%
def byte_of_symbol():
    """字节级 BPE 的字母表：可打印字符 -> 它代表的字节。"""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    symbol = {b: chr(b) for b in printable}
    for n, b in enumerate(b for b in range(256) if b not in symbol):
        symbol[b] = chr(256 + n)
    return {s: b for b, s in symbol.items()}


BYTE_OF = byte_of_symbol()
assert set(BYTE_OF) == set(pre_tokenizers.ByteLevel.alphabet()) and len(BYTE_OF) == 256


def pieces(tok, text):
    """text 的每个 token 所覆盖的字节，能解码的部分显示为文字。"""
    out = []
    for i in tok.encode(text):
        raw = bytes(BYTE_OF[s] for s in tok.id_to_token(i))
        out.append(raw.decode("utf-8", errors="backslashreplace"))
    return out


for text in [PAIRS[0][0], HELD_OUT[0][0], PAIRS[11][1]]:
    print(text, f"（{len(text)} 个字符，{len(text.encode('utf-8'))} 个字节）")
    print("  只用英文训练:", " | ".join(pieces(tok_en, text)))
    print("  中英训练:    ", " | ".join(pieces(tok_bi, text)))

# %% [markdown]
# 读这几行输出：
#
# - 只用英文训练的分词器从没见过汉字的字节组合，每个汉字和中文标点都切成 3 个单字节 token。
# - 中英训练的分词器把训练句子里常见的字（如“的”“很”）和词（如“音色”“琴弦”）合成了一个 token，
#   出现不到两次的字仍是 2 到 3 个 token。
# - BPE 合并的是字节，不是字：有的 token 在一个汉字中间结束，例如完整的字后面跟着下一个字的
#   第一个字节（下面列出）。单独解码这样的 token 得不到完整的文字，只有把整串 id 一起解码才行。
# - 字节级的预分词按空格和标点切开文本：英文的每个词（连同前面的空格）是一段；中文没有空格，
#   逗号、句号之间的一整串汉字都是一段，所以合并可以跨过字与字的边界。

# %%
for ch in ("的", "很", "音色", "琴弦"):
    assert len(tok_bi.encode(ch)) == 1, ch
straddling = sorted(
    {p for t in zh_train for p in pieces(tok_bi, t) if "\\x" in p and not p.startswith("\\x")}
)
print("以完整的字开头、在下一个字中间结束的 token:", "  ".join(straddling))
assert straddling

# %% [markdown]
# **往返是精确的。** 训练里没有的生僻字、表情符号、中英混排都能原样解码：

# %%
for text in [*zh_train, *(p[0] for p in HELD_OUT), "龘", "音色 warm 🎸 10/10"]:
    for tok in (tok_en, tok_bi):
        assert tok.decode(tok.encode(text)) == text
print("往返全部精确；训练中没见过的“龘”是", len(tok_bi.encode("龘")), "个 token，即它的 3 个字节")

# %% [markdown]
# **每个汉字几个 token，每个英文单词几个 token。** 同样的意思，中文按字符数（包括标点）、
# 英文按空格分出的单词数来算；训练过的句子和没见过的句子分开统计。


# %%
def rate(tok, texts, unit):
    """平均每个单位几个 token；unit(text) 是一句话的字符数或单词数。"""
    return sum(len(tok.encode(t)) for t in texts) / sum(unit(t) for t in texts)


def n_words(text):
    return len(text.split())


rates = {}
for name, tok in (("English-trained", tok_en), ("bilingual", tok_bi)):
    for split, pairs in (("trained-on", PAIRS), ("held-out", HELD_OUT)):
        per_char = rate(tok, [p[0] for p in pairs], len)
        per_word = rate(tok, [p[1] for p in pairs], n_words)
        rates[name, split] = (per_char, per_word)
        print(
            f"{name:>16} {split:>10}：每个汉字 {per_char:.2f} 个 token，"
            f"每个英文单词 {per_word:.2f} 个 token"
        )
assert rates["English-trained", "held-out"][0] == 3.0  # 没有任何合并：每个字符 3 个字节
assert rates["bilingual", "held-out"][0] < 3.0

# %% [markdown]
# 一个汉字（以及“，”“。”）在 UTF-8 里是 3 个字节，所以在字节级 BPE 里**最多** 3 个 token。
# 没见过中文的分词器基本上总是用满这 3 个，不管它的英文训练集多大；见过中文的分词器把常见的字
# 和词合并，没见过的句子也便宜了许多。
#
# 这里英文单词要 2 到 3 个 token，只是因为十几句英文太少、词表只有几百个条目；在真实评论上训练、
# 词表为 4096 的分词器会把常见的英文单词合并成一个 token（教程 04 画出了每个单词的 token 数
# 怎样随词表变大而下降）。所以这个小例子里中英两边的比较只说明方向；能确定的是：
# 对没见过中文的分词器，一个汉字就是 3 个 token。

# %% [markdown]
# ## 8. 这对提示预算意味着什么
#
# `prepare` 用 `--prompt-tokens`（默认值在 `PrepareConfig.prompt_tokens`）限制提示的长度：
# 物品部分先放，然后从最新的历史开始往前放，放不下的**最旧**的历史被丢掉（`build_prompt`）。
# 微调序列的总长度是 `--context`（`PrepareConfig.context`）；提示之后留给推荐理由和 `<eos>`
# 的只有 `context - 提示长度` 个 token，更长的理由会被截断。预算按 token 计，不按字或词计。
#
# 下面是同一段中文历史（六次购买，标签和用户提到的方面都是中文），分别用两个分词器放进默认预算：

# %%
budget, context = PrepareConfig.prompt_tokens, PrepareConfig.context
history = [
    HistoryItem("B01", ["吉他", "琴弦"], ["音色"], 5),
    HistoryItem("B02", ["调音器"], ["屏幕", "反应"], 4),
    HistoryItem("B03", ["线材"], ["杂音"], 3),
    HistoryItem("B04", ["效果器"], ["声音", "自然"], 5),
    HistoryItem("B05", ["话筒"], ["录音"], 4),
    HistoryItem("B06", ["音箱"], ["声音"], 2),
]
item_tags = ["吉他", "琴弦", "初学者"]
print(f"提示预算 {budget} 个 token，context {context} 个 token")
kept = {}
for name, tok in (("English-trained", tok_en), ("bilingual", tok_bi)):
    p = build_prompt(history, item_tags, budget, tok, item="B07")
    blocks = [s.end - s.start for s in p.segments if s.kind == "hist"]
    item_len = next(s.end - s.start for s in p.segments if s.kind == "item")
    kept[name] = p.n_history
    print(
        f"{name:>16}：提示 {len(p.ids)} 个 token（物品部分 {item_len}，保留的历史每条 {blocks}），"
        f"保留最新的 {p.n_history} 条历史，丢掉最旧的 {p.n_dropped} 条"
    )
    assert len(p.ids) <= budget and p.n_history + p.n_dropped == len(history)
assert kept["English-trained"] < kept["bilingual"]

# %% [markdown]
# 模板在每个标签和方面词前加一个空格（`" 琴弦"`），这是为英文设计的：英文训练文本里空格和后面的词
# 常常一起出现，`" strings"` 可以合并成一个 token。中文训练文本里词前面几乎没有空格，
# 所以中文标签前的空格单独占一个 token：

# %%
for word in ("琴弦", "音色"):
    with_space, without = pieces(tok_bi, " " + word), pieces(tok_bi, word)
    print(f"{word!r}: {without}   {' ' + word!r}: {with_space}")
    assert len(with_space) == len(without) + 1

# %% [markdown]
# 理由也一样：提示用满预算时，留给理由的是 `context - prompt_tokens - 1` 个 token（减去的 1 是
# `<eos>`）。按上面没见过的句子测得的比率，中文理由能写多少个字：

# %%
room = context - budget - 1
fit = {name: int(room / rates[name, "held-out"][0]) for name in ("English-trained", "bilingual")}
for name, n in fit.items():
    print(f"{name:>16}：{room} 个 token 约能写 {n} 个汉字")
assert fit["English-trained"] == room // 3

fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
names = ["English-trained", "bilingual"]
x = np.arange(len(names))
for k, split in enumerate(("trained-on", "held-out")):
    axes[0].bar(
        x + (k - 0.5) * 0.4,
        [rates[n, split][0] for n in names],
        0.4,
        label=f"Chinese, {split} sentences",
    )
axes[0].axhline(3, color="grey", ls="--", label="3 = UTF-8 bytes per character")
axes[0].set_ylabel("tokens per Chinese character")
axes[0].set_title("one Chinese character, in tokens")
axes[1].bar(x, [fit[n] for n in names], 0.5, color="tab:green")
axes[1].set_ylabel("Chinese characters (held-out rate)")
axes[1].set_title(f"a reason's room: {context} - {budget} - 1 (<eos>) = {room} tokens")
for ax in axes:
    ax.set_xticks(x, ["BPE trained on\nEnglish only", "BPE trained on\nChinese + English"])
axes[0].set_ylim(0, 4)
axes[0].legend(loc="upper right")
fig.savefig(OUT / "01_zh_tokens_per_character.png", dpi=100)
print("已保存", OUT / "01_zh_tokens_per_character.png")
plt.show()

# %% [markdown]
# **结论。** 只在英文评论上训练的分词器（本项目在英文数据上 `prepare` 出来的就是这种）处理中文时，
# 每个汉字要 3 个 token：同样的预算里放得下的历史更少，理由也更短。要认真处理中文评论，
# 就要让分词器的训练文本里有中文，让常见的字和词合并成单个 token；而往返无论如何都是精确的。
#
# **试一试。** 把几句中文加进只用英文训练的分词器的训练句子，再看每个汉字的 token 数、
# 保留的历史条数和理由能写的字数怎样变化。
