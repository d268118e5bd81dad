"""Step 4: scoring candidates, evidence from attention, explain end to end on a tiny model."""

import numpy as np
import pytest

from minireason.nn.model import GPT, GPTConfig
from minireason.prep.features import HistoryItem
from minireason.prep.prompts import Segment
from minireason.prep.tokenizer import BPETokenizer
from minireason.reason.evidence import aggregate_evidence, plot_evidence
from minireason.reason.explain import explain
from minireason.reason.scoring import SCORE_PARTS, ScoreWeights, repetition, score_candidate
from minireason.text import mentions, tokens, vocabulary, words
from minireason.train.run import Decoding, Run, RunInfo

SENTENCES = [
    "the guitar strings sound bright and the tuning stays stable",
    "great cable, no noise, solid connectors and a long cord",
    "this pedal gives a warm tone and the build quality is great",
    "the strap is comfortable and the price is fair",
    "sound quality is clear, easy to set up, works with my amp",
] * 4

HISTORY = [
    HistoryItem("B001", ["strings", "guitar"], ["tone", "sound quality"], 5.0),
    HistoryItem("B002", ["cable"], ["noise"], 4.0),
]
ITEM_TAGS = ["pedal", "tone", "build quality"]
PROFILE = ["tone", "sound quality", "noise"]


BUDGET = 80  # the prompt budget of these tests (the model's block_size is 96)


def dec(n, new):
    return Decoding(n_candidates=n, max_new_tokens=new)


@pytest.fixture(scope="module")
def tokenizer():
    return BPETokenizer.train(SENTENCES, vocab_size=300, min_frequency=1)


@pytest.fixture(scope="module")
def model(tokenizer):
    cfg = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=96, n_layer=2, n_head=2, n_embd=32, seed=1
    )
    return GPT(cfg).eval()


# --------------------------------------------------------------------------- scoring


def test_words_and_literal_mentions():
    text_words = words("Great TONE, and the sound quality's fine!")
    assert text_words == ["great", "tone", "and", "the", "sound", "quality", "fine"]
    assert mentions(tokens("sound quality is great"), ["sound quality", "quality", "tone"]) == [
        "sound quality",
        "quality",
    ]
    assert mentions(tokens("the soundquality"), ["sound quality"]) == []  # words, not substrings


def test_relevant_candidate_beats_generic_one():
    lp = np.full(8, -2.0)  # same fluency for both
    relevant = score_candidate(
        "the pedal has a warm tone with low noise", lp, "eos", PROFILE, ITEM_TAGS
    )
    generic = score_candidate("i like it a lot and would buy again", lp, "eos", PROFILE, ITEM_TAGS)
    assert relevant.mentioned_aspects == ["tone", "noise"]
    assert relevant.mentioned_tags == ["pedal", "tone"]
    assert relevant.user_coverage == pytest.approx(2 / 3)
    assert relevant.item_coverage == pytest.approx(2 / 3)
    assert generic.user_coverage == generic.item_coverage == 0.0
    assert relevant.total > generic.total


def test_score_formula_with_documented_weights():
    w = ScoreWeights(
        user=2.0,
        item=3.0,
        focus=4.0,
        logprob=0.5,
        repetition=1.0,
        degenerate=1.5,
        contradicts=0.75,
        duplicate=1.0,
        truncated=0.25,
        empty=10.0,
    )
    s = score_candidate(
        "great tone",
        np.array([-1.0, -3.0]),
        "max_new_tokens",
        PROFILE,
        ITEM_TAGS,
        duplicate=True,
        weights=w,
        focus=["tone", "strap"],
    )
    # two words: degenerate (fewer than 4 words); positive, as the rating expected: no contradiction
    expected = 2.0 * (1 / 3) + 3.0 * (1 / 3) + 4.0 * (1 / 2) + 0.5 * (-2.0) - 0.0 - 1.5 - 1.0 - 0.25
    assert s.total == pytest.approx(expected)
    assert s.degenerate == ["fewer than 4 words"] and not s.contradicts
    assert s.focus_coverage == 0.5 and s.mentioned_focus == ["tone"]
    assert s.truncated and s.duplicate and not s.empty
    no_focus = score_candidate(
        "great tone",
        np.array([-1.0, -3.0]),
        "max_new_tokens",
        PROFILE,
        ITEM_TAGS,
        duplicate=True,
        weights=w,
    )
    assert no_focus.focus_coverage == 0.0
    assert no_focus.total == pytest.approx(expected - 4.0 * (1 / 2))
    # the lowest token log-probability and the length: 0 weight in the defaults
    assert (s.lowest_logprob, s.length) == (-3.0, 2)
    assert ScoreWeights().lowest == ScoreWeights().length == 0.0
    both = ScoreWeights(**{**w.to_dict(), "lowest": 0.5, "length": -0.2})
    again = score_candidate("great tone", np.array([-1.0, -3.0]), "max_new_tokens", PROFILE,
                            ITEM_TAGS, duplicate=True, weights=both, focus=["tone", "strap"])  # fmt: skip
    assert again.total == pytest.approx(expected + 0.5 * -3.0 - 0.2 * 2)
    assert again.parts(both)["lowest"] == -1.5 and again.parts(both)["length"] == pytest.approx(
        -0.4
    )


def test_degenerate_duplicate_and_empty_are_penalised():
    lp = np.full(10, -1.0)
    clean = score_candidate("a warm tone for the pedal", lp, "eos", PROFILE, ITEM_TAGS)
    loop = score_candidate(
        "tone pedal tone pedal tone pedal tone pedal", lp, "eos", PROFILE, ITEM_TAGS
    )
    dup = score_candidate(
        "a warm tone for the pedal", lp, "eos", PROFILE, ITEM_TAGS, duplicate=True
    )
    empty = score_candidate("  ", np.array([-0.1]), "eos", PROFILE, ITEM_TAGS)
    assert repetition(words("a b a b a b")) == pytest.approx(1 - 2 / 5)
    assert repetition(words("one two three")) == 0.0
    assert loop.repetition > 0.5
    assert loop.total < clean.total  # same mentions, but a loop
    assert dup.total == pytest.approx(clean.total - ScoreWeights().duplicate)
    assert empty.empty and empty.total < -5


def test_what_a_reader_punishes_is_detected():
    from minireason.reason.scoring import contradicts, ends_sentence, expected_rating, sentiment

    assert sentiment(tokens("Great strings, I love them.")) == 1
    assert sentiment(tokens("It broke in a week and I returned it.")) == -1
    assert sentiment(tokens("Not great, and the tuner is not good.")) == -1  # negated praise
    assert sentiment(tokens("No problems so far, you won't be disappointed.")) == 1
    assert sentiment(tokens("The strings are nickel.")) == 0
    assert sentiment(tokens("I'm not a fan of this amp.")) == -1
    assert sentiment(tokens("I've been a big fan of these picks.")) == 1
    assert contradicts(tokens("It broke in a week."), 4.5)
    assert not contradicts(tokens("It broke in a week."), 2.0)
    assert contradicts(tokens("I love it."), 1.5) and not contradicts(tokens("I love it."), 3.0)
    assert expected_rating([5.0, 3.0]) == 4.0 and expected_rating([]) == 4.0
    assert ends_sentence("Works fine.") and ends_sentence('He said "great!"')
    assert ends_sentence("Is it loud?)") and not ends_sentence("I use it for my")


def test_echoes_count_content_words_said_again():
    from minireason.reason.scoring import echoes

    assert echoes(words("This is a great tuner for the price.")) == 0
    assert echoes(words("These strings sound great on your string with a string bass string.")) == 3
    # plurals fold into the singular; stop words and short words never count
    assert echoes(words("I love these straps and this strap.")) == 1
    assert echoes(words("It is what it is, and it is on my amp and my amp.")) == 1
    lp = np.full(8, -1.0)
    w = ScoreWeights(echo=0.75)
    plain = score_candidate("a warm tone for the pedal.", lp, "eos", PROFILE, ITEM_TAGS, weights=w)
    echoed = score_candidate(
        "a warm tone for the pedal and the pedals.", lp, "eos", PROFILE, ITEM_TAGS, weights=w
    )
    assert plain.echoes == 0 and echoed.echoes == 1
    assert echoed.parts(w)["echo"] == -0.75 and plain.parts(w)["echo"] == 0.0
    assert echoed.total == pytest.approx(sum(echoed.parts(w).values()))
    assert tuple(echoed.parts(w)) == SCORE_PARTS  # every term, in the formula's order
    assert all(str(v) != "-0.0" for v in plain.parts(w).values())  # no penalty reads -0.0


def test_phrasing_is_the_share_of_the_users_own_3_grams(tokenizer):
    from minireason.reason.scoring import phrase_set, phrasing, rank_candidates

    past = ["I have been using these strings for years.", "Works great for my acoustic guitar!"]
    phrases = phrase_set(past)
    assert ("works", "great", "for") in phrases and phrase_set([]) == frozenset()
    # 4 token 3-grams, 2 of them the user's ("works great for", "great for my")
    assert phrasing(tokens("works great for my bass."), phrases) == pytest.approx(0.5)
    assert phrasing(tokens("cheap strap, no tone."), phrases) == 0.0
    assert phrasing(tokens("works great"), phrases) == 0.0  # no 3-gram at all
    assert phrasing(tokens("works great for my bass."), frozenset()) == 0.0  # nothing written

    texts = ["the tone is warm and clear.", "works great for my acoustic guitar."]
    ids = [tokenizer.encode(t) for t in texts]
    lps = [np.full(len(i), -1.0) for i in ids]
    w = ScoreWeights(phrasing=2.0)
    plain = rank_candidates(tokenizer, ids, lps, ["eos"] * 2, [], [], w)
    assert [c.index for c in plain] == [0, 1]  # a tie: the sampling order
    own = rank_candidates(tokenizer, ids, lps, ["eos"] * 2, [], [], w, phrases=phrases)
    assert [c.index for c in own] == [1, 0]
    # 4 of its 5 token 3-grams are the user's ("acoustic guitar ." is not: they wrote "!")
    assert own[0].score.phrasing == pytest.approx(0.8)
    assert own[0].score.parts(w)["phrasing"] == pytest.approx(1.6)
    assert own[0].score.total == pytest.approx(sum(own[0].score.parts(w).values()))


def test_a_word_particular_to_the_item_earns_the_specific_weight_once(tokenizer):
    from minireason.reason.scoring import rank_candidates

    particular = frozenset({"snark", "clip"})
    w = ScoreWeights(specific=0.75)
    named = score_candidate(
        "The Snark clip holds on my Snark headstock.",
        np.full(9, -1.0),
        "eos",
        [],
        [],
        weights=w,
        particular=particular,
    )
    assert named.specific_words == ["snark", "clip"]
    assert named.parts(w)["specific"] == pytest.approx(0.75)  # a reward, not a count
    assert named.total == pytest.approx(sum(named.parts(w).values()))
    generic = score_candidate(
        "This is a great tuner.", np.full(5, -1.0), "eos", [], [], weights=w, particular=particular
    )
    assert generic.specific_words == [] and generic.parts(w)["specific"] == 0.0

    texts = ["this is a great tuner.", "this snark is a great tuner."]
    ids = [tokenizer.encode(t) for t in texts]
    lps = [np.full(len(i), -1.0) for i in ids]
    off = rank_candidates(tokenizer, ids, lps, ["eos"] * 2, [], [], w)
    assert off[0].index == 0  # no particular words (free-form input): the sampling order
    on = rank_candidates(tokenizer, ids, lps, ["eos"] * 2, [], [], w, particular=particular)
    assert on[0].index == 1


def test_particular_words_are_those_few_items_use():
    from minireason.text import particular_words

    items = {f"i{k}": frozenset({"guitar", "tuner"} if k % 2 else {"guitar"}) for k in range(40)}
    items["i0"] = frozenset({"guitar", "snark"})
    items["i1"] = frozenset({"guitar", "snark", "tuner", "capo"})
    items["i2"] = frozenset({"guitar", "capo", "kyser"})
    found = particular_words(items)  # 40 items: at most max(1, floor(0.05 * 40)) = 2 each
    assert found["i0"] == {"snark"} and found["i1"] == {"snark", "capo"}
    assert found["i2"] == {"capo", "kyser"} and found["i3"] == frozenset()


def test_unknown_words_are_charged_once_each_and_only_with_a_vocabulary(tokenizer):
    from minireason.reason.scoring import rank_candidates

    known = vocabulary(["these strings sound great on my guitar."] * 2)
    w = ScoreWeights(unknown=1.5)
    made_up = score_candidate(
        "These Satoiknica strings sound great on my XDXDX-00 guitar.",
        np.full(12, -1.0),
        "eos",
        [],
        [],
        weights=w,
        known_words=known,
    )
    assert made_up.unknown_words == ["satoiknica", "xdxdx-00"]
    assert made_up.parts(w)["unknown"] == pytest.approx(-3.0)
    assert made_up.total == pytest.approx(sum(made_up.parts(w).values()))
    free_form = score_candidate(
        "These Satoiknica strings sound great.", np.full(7, -1.0), "eos", [], [], weights=w
    )
    assert free_form.unknown_words == [] and free_form.parts(w)["unknown"] == 0.0

    texts = ["these xdxdx strings sound great.", "these strings sound great."]
    ids = [tokenizer.encode(t) for t in texts]
    lps = [np.full(len(i), -1.0) for i in ids]
    plain = rank_candidates(tokenizer, ids, lps, ["eos"] * 2, [], [], w)
    assert [c.index for c in plain] == [0, 1]  # no vocabulary: a tie, the sampling order
    ranked = rank_candidates(tokenizer, ids, lps, ["eos"] * 2, [], [], w, known_words=known)
    assert [c.index for c in ranked] == [1, 0] and ranked[1].score.unknown_words == ["xdxdx"]


def test_explain_scores_candidates_against_the_users_past_reviews(model, tokenizer):
    from minireason.reason.scoring import PHRASE_N
    from minireason.text import ngrams

    args = dict(prompt_tokens=BUDGET, decoding=dec(6, 8), seed=5)
    before = explain(model, tokenizer, HISTORY, ITEM_TAGS, **args)
    assert all(c.score.phrasing == 0.0 for c in before.candidates)  # no past reviews given
    longest = max(before.candidates, key=lambda c: len(ngrams(tokens(c.text), PHRASE_N)))
    assert ngrams(tokens(longest.text), PHRASE_N)
    after = explain(
        model,
        tokenizer,
        HISTORY,
        ITEM_TAGS,
        past_reviews=[longest.text],
        weights=ScoreWeights(phrasing=100.0),
        **args,
    )
    assert [c.text for c in after.candidates].count(longest.text) >= 1  # same samples
    assert after.score.phrasing == pytest.approx(1.0)  # the one in the user's own words won
    assert ngrams(tokens(after.reason), PHRASE_N) <= ngrams(tokens(longest.text), PHRASE_N)


def test_new_penalties_enter_the_score_with_their_weights():
    lp = np.full(6, -1.0)
    w = ScoreWeights(degenerate=2.0, unfinished=0.5, contradicts=3.0)
    base = score_candidate("a warm tone for the pedal.", lp, "eos", PROFILE, ITEM_TAGS, weights=w)
    cases = {
        "degenerate": ("a warm warm tone for the pedal.", 2.0),
        "unfinished": ("a warm tone for the pedal", 0.5),
        "contradicts": ("a warm tone for the pedal, but it broke.", 3.0),
    }
    for field_name, (text, weight) in cases.items():
        s = score_candidate(text, lp, "eos", PROFILE, ITEM_TAGS, weights=w)
        assert bool(getattr(s, field_name)), field_name
        assert s.parts(w)[field_name] == -weight
        assert s.total == pytest.approx(sum(s.parts(w).values()))
        assert s.total < base.total
    cut = score_candidate("a warm tone for the", lp, "max_new_tokens", PROFILE, ITEM_TAGS)
    assert cut.truncated and not cut.unfinished  # a cut-off text is 'truncated' only
    assert not base.degenerate and not base.unfinished and not base.contradicts


def test_consensus_is_the_mean_overlap_with_the_other_candidates():
    from minireason.reason.scoring import consensus, overlap

    a, b, c = words("the tone is warm"), words("the tone is bright"), words("cheap strap")
    assert overlap(a, a) == 1.0 and overlap(a, c) == 0.0
    # unigrams: 3 of 4 shared each side -> F1 3/4; bigrams: 2 of 3 -> F1 2/3
    assert overlap(a, b) == pytest.approx((3 / 4 + 2 / 3) / 2)
    got = consensus([a, b, c])
    assert got == pytest.approx([overlap(a, b) / 2, overlap(a, b) / 2, 0.0])
    assert consensus([a]) == [0.0] and consensus([]) == []
    # counts are clipped: "a a b" and "a b b" share one "a", one "b" and one "a b"
    assert overlap(["a", "a", "b"], ["a", "b", "b"]) == pytest.approx((4 / 6 + 2 / 4) / 2)


# --------------------------------------------------------------------------- evidence


def synthetic_case():
    """A 7-token prompt (history block 0:3, item block 3:7) and 3 reason tokens, T = 9."""
    segments = [
        Segment("hist", 0, 3, "B001", "hist:0"),
        Segment("tag", 1, 2, "strings", "hist:0"),
        Segment("aspect", 2, 3, "tone", "hist:0"),
        Segment("item", 3, 7, "B009", "item"),
        Segment("tag", 4, 6, "pedal", "item"),
    ]
    att = np.zeros((9, 9))
    # rows 6, 7, 8 generate the reason. Row 6 (<reason>, the prompt's last token) sees only
    # the prompt: 0.75 on the history's tag (position 1), 0.25 on the item's tag (position 5).
    # Rows 7, 8 put 0.3 and 0.1 there and the rest on themselves (reason tokens, not prompt).
    att[6, 1], att[6, 5] = 0.75, 0.25
    for row in (7, 8):
        att[row, 1], att[row, 5], att[row, row] = 0.3, 0.1, 0.6
    for row in range(6):  # prompt rows: irrelevant to the evidence, all on position 0
        att[row, 0] = 1.0
    return att, segments


def test_aggregation_on_known_attention():
    att, segments = synthetic_case()
    owners, pieces = aggregate_evidence(att, prompt_len=7, segments=segments, top_k=2)
    assert [(s.owner, s.label) for s in owners] == [("hist:0", "B001"), ("item", "B009")]
    assert [s.share for s in owners] == pytest.approx([0.75, 0.25])
    assert [(s.kind, s.label) for s in pieces] == [("tag", "strings"), ("tag", "pedal")]
    assert [s.share for s in pieces] == pytest.approx([0.75, 0.25])


def test_aggregation_reads_only_reason_rows():
    att, segments = synthetic_case()
    att[6] = 0.0
    att[6, 4] = 1.0  # the <reason> row now looks only at the item block
    owners, _ = aggregate_evidence(att, prompt_len=7, segments=segments)
    # rows 6..8: item gets (1.0 + 0.1 + 0.1) / 3, history (0 + 0.3 + 0.3) / 3
    assert {s.owner: s.share for s in owners} == pytest.approx(
        {"item": 1.2 / 1.8, "hist:0": 0.6 / 1.8}
    )


# --------------------------------------------------------------------------- explain


def test_explain_returns_best_candidate_with_evidence(model, tokenizer):
    ex = explain(
        model,
        tokenizer,
        HISTORY,
        ITEM_TAGS,
        profile_aspects=PROFILE,
        seed=3,
        item="B009",
        prompt_tokens=BUDGET,
        decoding=dec(5, 10),
    )
    assert len(ex.candidates) == 5
    totals = [c.score.total for c in ex.candidates]
    assert totals == sorted(totals, reverse=True)
    assert ex.reason == ex.candidates[0].text and ex.score is ex.candidates[0].score
    ev = ex.evidence
    assert {s.owner for s in ev.owners} == {"hist:0", "hist:1", "item"}
    assert sum(s.share for s in ev.owners) == pytest.approx(1.0)
    assert 0 < len(ev.pieces) <= 5
    assert ev.matrix.shape == (len(ex.candidates[0].token_ids), len(ex.prompt_ids))
    assert np.all(ev.matrix.sum(axis=1) <= 1 + 1e-5)  # rows of a softmax, prompt part only
    assert ex.history_used == 2 and "B009" in [s.label for s in ev.owners]
    assert "You recently reviewed" in ex.prompt_text


def test_explain_puts_the_focus_in_the_prompt_and_scores_it(model, tokenizer):
    ex = explain(
        model,
        tokenizer,
        HISTORY,
        ITEM_TAGS,
        profile_aspects=PROFILE,
        seed=3,
        focus=["tone", " ", "noise"],
        prompt_tokens=BUDGET,
        decoding=dec(4, 10),
    )
    focus = [s for s in ex.evidence.segments if s.kind == "focus"]
    assert [s.label for s in focus] == ["tone", "noise"]
    assert "Talk about: tone, noise." in ex.prompt_text
    for c in ex.candidates:
        assert c.score.focus_coverage == len(c.score.mentioned_focus) / 2
    plain = explain(
        model,
        tokenizer,
        HISTORY,
        ITEM_TAGS,
        profile_aspects=PROFILE,
        seed=3,
        prompt_tokens=BUDGET,
        decoding=dec(4, 10),
    )
    assert len(plain.prompt_ids) < len(ex.prompt_ids)
    assert all(c.score.focus_coverage == 0.0 for c in plain.candidates)


def test_explain_is_deterministic_with_a_seed(model, tokenizer):
    runs = [
        explain(
            model, tokenizer, HISTORY, ITEM_TAGS, seed=s, prompt_tokens=BUDGET, decoding=dec(4, 8)
        )
        for s in (5, 5, 6)
    ]
    texts = [[c.text for c in r.candidates] for r in runs]
    assert texts[0] == texts[1]
    assert texts[0] != texts[2]
    np.testing.assert_array_equal(runs[0].evidence.matrix, runs[1].evidence.matrix)


def test_cold_start_and_missing_tags(model, tokenizer):
    cold = explain(model, tokenizer, [], ITEM_TAGS, prompt_tokens=BUDGET, decoding=dec(3, 6))
    assert [s.owner for s in cold.evidence.owners] == ["item"]
    assert all(c.score.user_coverage == 0.0 for c in cold.candidates)
    assert any("cold start" in n for n in cold.notes)
    untagged = explain(
        model, tokenizer, HISTORY, ["", "  "], prompt_tokens=BUDGET, decoding=dec(3, 6)
    )
    assert any("no tags" in n for n in untagged.notes)
    with pytest.raises(ValueError, match="nothing to explain"):
        explain(model, tokenizer, [], [], prompt_tokens=BUDGET, decoding=dec(2, 8))


def test_long_history_is_cut_to_fit(model, tokenizer):
    history = [HistoryItem(f"B{i:03d}", ["guitar", "strings"], ["tone"], 4.0) for i in range(30)]
    ex = explain(model, tokenizer, history, ITEM_TAGS, prompt_tokens=BUDGET, decoding=dec(2, 8))
    assert len(ex.prompt_ids) <= BUDGET
    assert 0 < ex.history_used < 30
    assert any("oldest history items dropped" in n for n in ex.notes)


def test_plot_evidence_writes_png(model, tokenizer, tmp_path):
    ex = explain(model, tokenizer, HISTORY, ITEM_TAGS, prompt_tokens=BUDGET, decoding=dec(2, 6))
    path = plot_evidence(ex, tmp_path / "evidence.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 1000


# --------------------------------------------------------------------------- benchmark


class FakePrepared:
    """The parts of ``minireason.prep.prepared.Prepared`` that the benchmark reads."""

    def __init__(self, tokenizer, records, content="fake-content"):
        self.tokenizer, self.records, self.path, self.content = tokenizer, records, "fake", content

    def split(self, name):
        return self.records

    def reviews_by(self, user):
        return {"U1": ["my strings sound great on my guitar ."]}.get(user, [])

    known_words = frozenset()

    def particular_words(self, item):
        return frozenset()


def fake_run(model, tokenizer, content="fake-content"):
    info = RunInfo("fake", content, BUDGET, 96, 0, 10, tokenizer.vocab_size, dec(3, 5))
    return Run("fake-run", info, model, tokenizer, {"df": {}})


def test_bench_explain_reports_times(model, tokenizer):
    from minireason.bench.explain import STAGES, format_report, run_bench_explain
    from minireason.nn.threads import threads

    record = {
        "history": [vars(h) for h in HISTORY],
        "item_tags": ITEM_TAGS,
        "profile": {"aspects": PROFILE},
        "item": "B009",
        "user": "U1",
    }
    cold = {**record, "history": []}
    empty = {**cold, "item_tags": []}  # nothing to explain: left out, not an error
    prepared = FakePrepared(tokenizer, [empty, record, cold, record])
    before = threads()
    run = fake_run(model, tokenizer)
    result = run_bench_explain(run, prepared, n_pairs=5, warmup=1, threads=1, progress=False)
    assert threads() == before  # restored
    assert result["threads"] == 1
    assert result["n_pairs"] == 3 and len(result["times_s"]) == 3
    assert result["n_candidates"] == 3 and result["prompt_tokens"] == BUDGET  # the run's
    assert 0 < result["median_s"] <= result["p90_s"] <= max(result["times_s"])
    assert result["mean_candidate_tokens"] <= 5
    assert "median" in format_report(result) and "breakdown_ms" not in result
    timed = run_bench_explain(run, prepared, n_pairs=5, warmup=0, progress=False, breakdown=True)
    ms = timed["breakdown_ms"]
    assert set(ms) == {*STAGES, "instrumented total"}
    assert all(ms[s] > 0 for s in STAGES)  # each stage ran and was timed
    assert ms["decode products"] < ms["decode steps"]
    parts = sum(ms[s] for s in STAGES if s != "decode products")
    assert parts < ms["instrumented total"]
    assert 0 < timed["decode_steps_per_pair"] <= 4  # max_new_tokens 5: the first is from prefill
    assert "where a pair's time goes" in format_report(timed)
    # the wrappers are gone: explain's collaborators are the originals again
    from minireason.nn import layers
    from minireason.nn.threads import matmul
    from minireason.reason import generate

    assert layers.matmul is matmul and generate.decode_step.__module__ == generate.__name__
    with pytest.raises(ValueError, match="the run was trained on fake"):
        run_bench_explain(fake_run(model, tokenizer, "other"), prepared, progress=False)


def test_bench_explain_cli_is_registered_and_checks_arguments(capsys):
    from minireason.cli import main

    assert main(["bench", "explain", "--run", "x", "--prepared", "y", "--pairs", "0"]) == 2
    assert "argument --pairs: must be >= 1, got 0" in capsys.readouterr().err


def test_identical_candidates_are_marked_duplicate(model, tokenizer):
    # a nucleus this small keeps only the most probable token: every sample is the greedy one
    ex = explain(
        model,
        tokenizer,
        HISTORY,
        ITEM_TAGS,
        prompt_tokens=BUDGET,
        decoding=Decoding(n_candidates=3, max_new_tokens=6, top_p=1e-9),
    )
    assert len({c.text for c in ex.candidates}) == 1
    assert [c.score.duplicate for c in ex.candidates] == [False, True, True]
    assert ex.candidates[1].score.total == pytest.approx(ex.score.total - 1.0)


def test_rank_candidates_adds_consensus_and_keeps_the_sampling_order_on_ties(tokenizer):
    from minireason.reason.scoring import rank_candidates

    texts = [
        "cheap strap, no tone.",
        "the tone is warm and clear.",
        "the tone is warm and bright.",
        "the tone is warm and clear.",
    ]
    ids = [tokenizer.encode(t) for t in texts]
    lps = [np.full(len(i), -1.0) for i in ids]
    finishes = ["eos"] * 4
    plain = rank_candidates(tokenizer, ids, lps, finishes, [], [], ScoreWeights(consensus=0.0))
    assert [c.index for c in plain] == [0, 1, 2, 3]  # all tie but the duplicate: sampling order
    mbr = rank_candidates(tokenizer, ids, lps, finishes, [], [], ScoreWeights(consensus=5.0))
    assert mbr[0].index == 1  # the candidate that agrees most with the others
    assert mbr[-1].index == 0
    for c in mbr:
        assert c.score.consensus > 0 or c.index == 0
        assert c.score.total == pytest.approx(
            sum(c.score.parts(ScoreWeights(consensus=5.0)).values())
        )
