"""Prompts: the segment map, oldest-first dropping, cold start, and no target leakage."""

from __future__ import annotations

import gzip
import json
import re
import string

import pytest

from minireason.prep.features import HistoryItem
from minireason.prep.prepare import PrepareConfig, prepare
from minireason.prep.prepared import load_prepared
from minireason.prep.prompts import build_prompt, evidence_length, render_prompt
from minireason.prep.tokenizer import BPETokenizer


@pytest.fixture(scope="module")
def tok():
    text = ["guitar strings tuner gig bag cable pedal sound rated 1 2 3 4 5"] * 20
    return BPETokenizer.train(text, vocab_size=320)


def _history(n):
    return [
        HistoryItem(f"i{k}", ["guitar", f"tag{k}"], ["strings", "gig bag"], float(1 + k % 5))
        for k in range(n)
    ]


def test_segment_map_points_at_the_right_tokens(tok):
    history = _history(2)
    p = build_prompt(history, ["pedal", "cable"], 200, tok, item="target")
    for s in p.segments:
        span = p.ids[s.start : s.end]
        if s.kind in ("tag", "aspect"):
            assert tok.decode(span) == " " + s.label
        elif s.kind == "rating":
            assert tok.decode(span) == f" rated {s.label}"
        elif s.kind == "hist":
            index = int(s.owner.split(":")[1])
            assert span[0] == tok.special["<hist>"] and s.label == history[index].item
        elif s.kind == "item":
            assert span[0] == tok.special["<item>"] and span[-1] == tok.special["<reason>"]
            assert s.end == len(p.ids) and s.label == "target"
    kinds = [s.kind for s in p.segments]
    assert kinds.count("hist") == 2 and kinds.count("item") == 1
    item_tags = [s.label for s in p.segments if s.kind == "tag" and s.owner == "item"]
    assert item_tags == ["pedal", "cable"]
    assert tok.decode(p.ids).startswith(
        "<hist> guitar tag0<sep> strings gig bag<sep> rated 1<hist>"
    )


def test_oldest_history_is_dropped_first_to_fit(tok):
    history = _history(12)
    full = build_prompt(history, ["pedal"], 10_000, tok)
    block = (len(full.ids) - len(build_prompt([], ["pedal"], 10_000, tok).ids)) // 12
    limit = len(build_prompt([], ["pedal"], 10_000, tok).ids) + 3 * block + block // 2
    p = build_prompt(history, ["pedal"], limit, tok)
    assert len(p.ids) <= limit
    assert (p.n_history, p.n_dropped) == (3, 9)
    assert [s.label for s in p.segments if s.kind == "hist"] == ["i9", "i10", "i11"]
    assert p.ids == build_prompt(history[-3:], ["pedal"], 10_000, tok).ids


def test_cold_start_gives_the_item_segment_only(tok):
    p = build_prompt([], ["gig bag"], 64, tok, item="x")
    assert p.ids == [tok.special["<item>"]] + tok.encode(" gig bag") + [tok.special["<reason>"]]
    assert (p.n_history, p.n_dropped) == (0, 0)
    assert "cold start" in render_prompt([], ["gig bag"])


def test_item_tags_are_cut_when_even_the_item_does_not_fit(tok):
    p = build_prompt(_history(3), ["pedal", "cable", "tuner", "sound"], 4, tok)
    assert len(p.ids) <= 4 and p.n_history == 0 and p.n_tags_dropped >= 2
    with pytest.raises(ValueError, match="max_tokens must be >= 2"):
        build_prompt([], [], 1, tok)


def test_focus_part_follows_the_item_tags(tok):
    p = build_prompt(
        _history(1), ["pedal", "cable"], 200, tok, item="x", focus=["strings", "gig bag"]
    )
    assert tok.decode(p.ids).endswith("<item> pedal cable<sep> strings gig bag<reason>")
    focus = [s for s in p.segments if s.kind == "focus"]
    assert [s.label for s in focus] == ["strings", "gig bag"]
    assert all(
        s.owner == "item" and tok.decode(p.ids[s.start : s.end]) == " " + s.label for s in focus
    )
    assert (
        build_prompt([], ["pedal"], 64, tok, focus=[]).ids
        == build_prompt([], ["pedal"], 64, tok).ids
    )  # no focus: no <sep> either


def test_focus_is_kept_whole_and_tags_are_cut_first(tok):
    focus = ["strings"]
    full = build_prompt([], ["pedal", "cable", "tuner"], 200, tok, focus=focus)
    p = build_prompt(_history(2), ["pedal", "cable", "tuner"], len(full.ids) - 1, tok, focus=focus)
    assert p.n_history == 0 and p.n_tags_dropped >= 1
    assert [s.label for s in p.segments if s.kind == "focus"] == focus
    with pytest.raises(ValueError, match="the focus"):
        build_prompt([], ["pedal"], 3, tok, focus=["strings", "gig bag"])


def test_render_is_plain_language():
    text = render_prompt(_history(1), ["pedal", "cable"], item_title="Big Muff")
    assert "item i0 (guitar, tag0); you mentioned strings, gig bag; you rated it 1/5" in text
    assert 'Now consider "Big Muff": pedal, cable.' in text
    assert "Talk about" not in text
    assert render_prompt([], ["pedal"], focus=["tone", "noise"]).endswith(
        "Talk about: tone, noise.\nWhy you may like it:"
    )


def _secret(n: int) -> str:
    """A made-up word unique to review n (letters only, so it is one aspect)."""
    letters = string.ascii_lowercase
    return "zq" + letters[n % 26] + letters[n // 26 % 26] + letters[n // 676 % 26]


def _secret_in(text: str) -> str:
    (word,) = re.findall(r"zq[a-z]+", text)
    return word


def test_target_review_never_leaks_into_its_own_prompt(tmp_path):
    lines, n = [], 0
    for u in range(12):
        for k in range(6):
            item = (u * 3 + k) % 10
            lines.append(
                json.dumps(
                    {
                        "reviewerID": f"U{u}",
                        "asin": f"I{item}",
                        "overall": 1 + (u + k) % 5,
                        "unixReviewTime": 1_000_000 + 1000 * k + u,
                        "reviewText": f"It has {_secret(n)} inside the case. Bright tone.",
                        "summary": "ok",
                    }
                )
            )
            n += 1
    path = tmp_path / "r.json.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    prepare(
        PrepareConfig(
            reviews=str(path),
            out=str(tmp_path / "out"),
            vocab_size=300,
            n_unigrams=200,
            min_df=1,
            n_item_tags=100,
            progress=False,
            prompt_tokens=120,
            context=200,
        )
    )
    prepared = load_prepared(tmp_path / "out")
    for name in ("train", "valid", "test"):  # aspects are mined from training text only
        assert all(
            (_secret_in(rec["text"]) in prepared.features) == (name == "train")
            for rec in prepared.split(name)
        )
    tok = prepared.tokenizer
    by_user = {}
    for name in ("train", "valid", "test"):
        for rec in prepared.split(name):
            by_user.setdefault(rec["user"], []).append(rec)
    checked = with_evidence = 0
    for name in ("train", "valid", "test"):
        fin = prepared.finetune[name]
        for i, rec in enumerate(prepared.split(name)):
            ids = prepared.prompts[name].get(i).tolist()
            shown = rec["prompt"]["text"]  # the rendering for people
            focus = [s for s in rec["prompt"]["segments"] if s["kind"] == "focus"]
            assert [s["label"] for s in focus] == rec["focus"]
            if rec["focus_from"] == "target":  # by design: a training record's own target
                assert name == "train" and rec["focus"][0] == rec["feature"]
                assert set(rec["focus"]) <= set(rec["aspects"])
                ids = ids[: focus[0]["start"]] + ids[focus[-1]["end"] :]  # everything else
                shown = shown.split("Talk about")[0]
            else:
                assert rec["focus_from"] == "predicted" and len(rec["focus"]) >= 1
            prompt_text = tok.decode(ids)
            ids, mask = fin.get(rec["seq"])
            assert (
                ids[: fin.prompt_len[rec["seq"]]].tolist() == prepared.prompts[name].get(i).tolist()
            )
            own = _secret_in(rec["text"])
            future = {
                _secret_in(r["text"]) for r in by_user[rec["user"]] if r["time"] >= rec["time"]
            }
            assert own in future
            for secret in future:
                assert secret not in prompt_text and secret not in shown
                assert secret not in json.dumps(rec["history"]) + json.dumps(rec["item_tags"])
            for sentence in rec["evidence"]:  # other users' training reviews, never the user's
                assert not any(sentence in r["text"] for r in by_user[rec["user"]])
                assert any(
                    sentence in r["text"] for r in prepared.train if r["user"] != rec["user"]
                )
            with_evidence += bool(rec["evidence"])
            assert rec["target"] not in prompt_text
            checked += 1
    assert checked == n and with_evidence > n // 2


def test_evidence_part_follows_the_focus_and_is_kept_whole(tok):
    evidence = ["The strings sound bright."]
    p = build_prompt(
        _history(2), ["pedal"], 200, tok, item="x", focus=["strings"], evidence=evidence
    )
    assert tok.decode(p.ids).endswith(
        "<item> pedal<sep> strings<evidence> The strings sound bright.<reason>"
    )
    (seg,) = [s for s in p.segments if s.kind == "evidence"]
    assert seg.owner == "item" and seg.label == evidence[0]
    assert tok.decode(p.ids[seg.start : seg.end]) == " " + evidence[0]
    item = next(s for s in p.segments if s.kind == "item")
    assert item.start < seg.start and seg.end < item.end  # inside the item segment
    # the history gives way first; evidence that cannot fit at all names the options
    small = build_prompt(
        _history(2), ["pedal"], len(p.ids) - 1, tok, focus=["strings"], evidence=evidence
    )
    assert small.n_history < p.n_history
    assert [s.label for s in small.segments if s.kind == "evidence"] == evidence
    with pytest.raises(ValueError, match="--evidence-tokens"):
        build_prompt([], ["pedal"], 6, tok, focus=["strings"], evidence=evidence)
    assert evidence_length(tok, evidence[0]) == seg.end - seg.start


def test_render_quotes_the_evidence():
    text = render_prompt([], ["pedal"], focus=["tone"], evidence=["Warm tone, no hum."])
    assert text.endswith(
        'Talk about: tone.\nAnother reviewer wrote: "Warm tone, no hum."\nWhy you may like it:'
    )
