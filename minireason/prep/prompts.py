"""Seed step 3: turn (user history, target item tags) into the token sequence the model reads.

The template (every piece is encoded on its own, so each span's tokens are known exactly)::

    <hist> TAG TAG ... <sep> ASPECT ASPECT ... <sep> rated R      one block per past item,
    <hist> ...                                                    oldest first
    <item> TAG TAG ... [<sep> FOCUS FOCUS ...]                     the item to explain
           [<evidence> WHAT ANOTHER USER WROTE ...] <reason>

For training, the reason sentence and ``<eos>`` follow ``<reason>`` (see
``minireason.prep.prepare``). Tags and aspects are encoded with a leading space (" strings").
A history block holds what the user said in *their own earlier* review of that item
(its aspects) and the rating they gave. The optional *focus* lists the aspects the reason
should talk about (``minireason.prep.features``: predicted from training data, or, for a
training record only, read off its target sentence, so the model learns to follow it);
without a focus the ``<sep>`` is left out too. The optional *evidence* is one or two
sentences other users wrote about the item that mention the focus
(:class:`minireason.prep.features.EvidenceIndex`), so the reason can rest on something
concrete about the item; it follows ``<evidence>``.

Fitting ``max_tokens``: the item segment is placed first (the focus and the evidence are
kept whole, and the tags are cut from the end if the segment alone is too long); then history blocks are
added newest first while they fit, so the *oldest* history is dropped first. An empty
history (cold start) gives the item segment only.

The *segment map* says which token span belongs to what, so attention can be read as
evidence: a ``Segment(kind, start, end, label, owner)`` per span, ``start:end`` into the
prompt ids, with kinds

- ``"hist"``: a whole history block (label: the item id; owner: ``"hist:i"``, i its index
  in the history, the same owner as the tags, aspects and rating inside it);
- ``"tag"``: one tag (owner: ``"hist:i"`` or ``"item"``);
- ``"focus"``: one focus aspect (owner: ``"item"``);
- ``"evidence"``: one evidence sentence (label: the sentence; owner: ``"item"``);
- ``"aspect"``: one aspect the user mentioned (owner: ``"hist:i"``);
- ``"rating"``: the rating piece (owner: ``"hist:i"``);
- ``"item"``: the target-item segment (label: the item id, or "").
"""

from __future__ import annotations

from dataclasses import dataclass

from minireason.prep.features import HistoryItem
from minireason.prep.tokenizer import BPETokenizer
from minireason.text import has_han, inert


@dataclass
class Segment:
    kind: str
    start: int
    end: int
    label: str
    owner: str


@dataclass
class Prompt:
    """Prompt token ids, their segment map, and how much history fitted."""

    ids: list[int]
    segments: list[Segment]
    n_history: int  # history blocks kept (the newest ones)
    n_dropped: int  # oldest history blocks dropped to fit
    n_tags_dropped: int  # target-item tags cut to fit

    def segments_as_dicts(self) -> list[dict]:
        """The segments as plain dicts (their fields are plain values: no deep copy)."""
        return [dict(vars(s)) for s in self.segments]


def _format_rating(rating: float) -> str:
    return f"{rating:g}"


def _history_block(h: HistoryItem, index: int, tok: BPETokenizer):
    """Token ids and (relative) segments of one history block."""
    owner = f"hist:{index}"
    ids = [tok.special["<hist>"]]
    segs = []
    for tag in h.tags:
        piece = tok.encode_piece(" " + tag)
        segs.append(Segment("tag", len(ids), len(ids) + len(piece), tag, owner))
        ids += piece
    ids.append(tok.special["<sep>"])
    for aspect in h.aspects:
        piece = tok.encode_piece(" " + aspect)
        segs.append(Segment("aspect", len(ids), len(ids) + len(piece), aspect, owner))
        ids += piece
    ids.append(tok.special["<sep>"])
    piece = tok.encode_piece(" rated " + _format_rating(h.rating))
    segs.append(Segment("rating", len(ids), len(ids) + len(piece), _format_rating(h.rating), owner))
    ids += piece
    segs.insert(0, Segment("hist", 0, len(ids), h.item, owner))
    return ids, segs


def evidence_ids(tok: BPETokenizer, sentence: str) -> list[int]:
    """The token ids one evidence sentence takes in a prompt (memoised: an item's sentences
    are the candidates of every record of the item)."""
    return tok.encode_piece(" " + sentence)


def evidence_length(tok: BPETokenizer, sentence: str) -> int:
    """How many prompt tokens one evidence sentence takes (what ``--evidence-tokens`` caps)."""
    return len(evidence_ids(tok, sentence))


def _item_block(
    item_tags: list[str],
    item: str,
    tok: BPETokenizer,
    max_tokens: int,
    focus: list[str],
    evidence: list[str],
):
    """Token ids, segments and the number of tags cut, for
    ``<item> TAGS [<sep> FOCUS] [<evidence> EVIDENCE] <reason>``."""
    focus_pieces = [tok.encode_piece(" " + a) for a in focus]
    evidence_pieces = [evidence_ids(tok, sentence) for sentence in evidence]
    focus_len = (1 + sum(len(p) for p in focus_pieces)) if focus else 0
    focus_len += (1 + sum(len(p) for p in evidence_pieces)) if evidence else 0
    if 2 + focus_len > max_tokens:
        raise ValueError(
            f"the focus {focus} and evidence need {2 + focus_len} prompt tokens with <item> "
            f"and <reason>; max_tokens is {max_tokens} (raise --prompt-tokens, or lower "
            "--focus, --evidence or --evidence-tokens)"
        )
    ids = [tok.special["<item>"]]
    segs = []
    kept = 0
    for tag in item_tags:
        piece = tok.encode_piece(" " + tag)
        if len(ids) + len(piece) + focus_len + 1 > max_tokens:
            break
        segs.append(Segment("tag", len(ids), len(ids) + len(piece), tag, "item"))
        ids += piece
        kept += 1
    if focus:
        ids.append(tok.special["<sep>"])
        for aspect, piece in zip(focus, focus_pieces, strict=True):
            segs.append(Segment("focus", len(ids), len(ids) + len(piece), aspect, "item"))
            ids += piece
    if evidence:
        ids.append(tok.special["<evidence>"])
        for sentence, piece in zip(evidence, evidence_pieces, strict=True):
            segs.append(Segment("evidence", len(ids), len(ids) + len(piece), sentence, "item"))
            ids += piece
    ids.append(tok.special["<reason>"])
    segs.insert(0, Segment("item", 0, len(ids), item, "item"))
    return ids, segs, len(item_tags) - kept


def _shift(segs: list[Segment], offset: int) -> list[Segment]:
    return [Segment(s.kind, s.start + offset, s.end + offset, s.label, s.owner) for s in segs]


def build_prompt(
    history: list[HistoryItem],
    item_tags: list[str],
    max_tokens: int,
    tokenizer: BPETokenizer,
    item: str = "",
    focus: list[str] | None = None,
    evidence: list[str] | None = None,
) -> Prompt:
    """Build the prompt for one (history, target item) pair, at most ``max_tokens`` long.

    history: past items, oldest first (may be empty). item_tags: the target item's tags.
    focus: the aspects the reason should talk about (None or empty: no focus part).
    evidence: sentences other users wrote about the item (None or empty: no evidence part).
    Returns a :class:`Prompt` whose ``ids`` has length <= max_tokens.
    """
    if max_tokens < 2:
        raise ValueError(f"max_tokens must be >= 2 (room for <item> <reason>), got {max_tokens}")
    item_ids, item_segs, n_tags_dropped = _item_block(
        item_tags, item, tokenizer, max_tokens, list(focus or []), list(evidence or [])
    )
    budget = max_tokens - len(item_ids)
    blocks = []
    for index in range(len(history) - 1, -1, -1):  # newest first
        ids, segs = _history_block(history[index], index, tokenizer)
        if len(ids) > budget:
            break
        budget -= len(ids)
        blocks.append((ids, segs))
    blocks.reverse()  # back to oldest first
    ids, segments = [], []
    for block_ids, block_segs in blocks:
        segments += _shift(block_segs, len(ids))
        ids += block_ids
    segments += _shift(item_segs, len(ids))
    ids += item_ids
    return Prompt(ids, segments, len(blocks), len(history) - len(blocks), n_tags_dropped)


PROMPT_WORDS = {  # the words of render_prompt's lines, by language (minireason.text.LANGUAGES)
    "en": {
        "history": "You recently reviewed:",
        "past": "  - item {item} ({tags}){about}; you rated it {rating}/5",
        "mentioned": "; you mentioned {aspects}",
        "cold": "No earlier reviews from you (cold start).",
        "consider": "Now consider {name}: {tags}.",
        "this item": "this item",
        "title": '"{title}"',
        "no tags": "no tags",
        "focus": "Talk about: {focus}.",
        "evidence": 'Another reviewer wrote: "{sentence}"',
        "why": "Why you may like it:",
        "comma": ", ",
    },
    "zh": {
        "history": "你最近评价过：",
        "past": "  - 物品 {item}（{tags}）{about}；你打了 {rating}/5 分",
        "mentioned": "；你提到了{aspects}",
        "cold": "你还没有评价过别的物品（冷启动）。",
        "consider": "现在看看{name}：{tags}。",
        "this item": "这个物品",
        "title": "《{title}》",
        "no tags": "没有标签",
        "focus": "请谈谈：{focus}。",
        "evidence": "另一位用户写道：“{sentence}”",
        "why": "你可能喜欢它的理由：",
        "comma": "、",
    },
}


def render_prompt(
    history: list[HistoryItem],
    item_tags: list[str],
    item_title: str = "",
    focus: list[str] | None = None,
    evidence: list[str] | None = None,
    lang: str | None = None,
) -> str:
    """A plain-language rendering of the same information, for people to read (each line
    :func:`~minireason.text.inert`: the data's control characters escaped), in ``lang``
    (``"en"`` or ``"zh"``; None: Chinese when the tags, aspects, focus, evidence or title
    hold a Han character, English otherwise)."""
    focus, evidence = list(focus or []), list(evidence or [])
    if lang is None:
        shown = [*item_tags, *focus, *evidence, item_title]
        shown += [x for h in history for x in (*h.tags, *h.aspects)]
        lang = "zh" if any(has_han(x) for x in shown) else "en"
    w = PROMPT_WORDS[lang]
    lines = []
    if history:
        lines.append(w["history"])
        for h in history:
            about = w["mentioned"].format(aspects=w["comma"].join(h.aspects)) if h.aspects else ""
            tags = w["comma"].join(h.tags) if h.tags else w["no tags"]
            rating = _format_rating(h.rating)
            lines.append(w["past"].format(item=h.item, tags=tags, about=about, rating=rating))
    else:
        lines.append(w["cold"])
    name = w["title"].format(title=item_title) if item_title else w["this item"]
    tags = w["comma"].join(item_tags) if item_tags else w["no tags"]
    lines.append(w["consider"].format(name=name, tags=tags))
    if focus:
        lines.append(w["focus"].format(focus=w["comma"].join(focus)))
    for sentence in evidence:
        lines.append(w["evidence"].format(sentence=sentence))
    lines.append(w["why"])
    return "\n".join(map(inert, lines))
