"""``minireason explain``: user histories, free-form input, recommendations with reasons."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minireason.cli import main
from minireason.prep.features import predict_focus, profile
from minireason.prep.prepare import PrepareConfig
from minireason.prep.prepared import load_prepared
from minireason.reason import explain as ex
from minireason.train.run import Decoding, load_run


@pytest.fixture(scope="module")
def loaded(micro_run):
    prepared_dir, run_dir = micro_run
    return load_prepared(prepared_dir), load_run(run_dir), run_dir


def test_parse_history_blocks_terms_and_ratings():
    h = ex.parse_history("Strings, tuner (4); pedal, patch cables ; ")
    assert [b.tags for b in h] == [["strings", "tuner"], ["pedal", "patch cables"]]
    assert [b.rating for b in h] == [4.0, 5.0]
    assert h[1].aspects == ["pedal", "patch cables"]
    assert ex.parse_history("") == []
    with pytest.raises(ValueError, match="block 2 has a rating but no terms"):
        ex.parse_history("strings; (3)")
    assert ex.parse_tags(" Capo, , guitar ") == ["capo", "guitar"]


def test_user_history_is_the_users_training_reviews_oldest_first(loaded):
    prepared, _, _ = loaded
    user = prepared.test[0]["user"]
    history = ex.user_history(prepared, user)
    train = sorted((r for r in prepared.train if r["user"] == user), key=lambda r: r["time"])
    assert [h.item for h in history] == [r["item"] for r in train][-len(history) :]
    assert all(h.tags == prepared.items[h.item]["tags"] for h in history)
    # the user's held-out test item is not in the history (no leakage into the prompt)
    assert prepared.test[0]["item"] not in [h.item for h in history] or any(
        r["item"] == prepared.test[0]["item"] for r in train
    )


def test_unknown_ids_are_clear_errors(loaded):
    prepared, run, _ = loaded
    with pytest.raises(ValueError, match="unknown user id 'nobody'"):
        ex.user_history(prepared, "nobody")
    user = prepared.test[0]["user"]
    with pytest.raises(ValueError, match="unknown item id 'no-such-item'"):
        ex.explain_for_user(run, prepared, user, item="no-such-item")


def test_recommend_then_explain_each(loaded):
    prepared, run, _ = loaded
    user = prepared.test[0]["user"]
    decoding = Decoding(n_candidates=3, max_new_tokens=8)
    recs = ex.explain_for_user(run, prepared, user, k=2, decoding=decoding)
    assert len(recs) == 2
    seen = {r["item"] for r in prepared.train if r["user"] == user}
    for rec in recs:
        assert rec.item not in seen  # recommendations exclude what the user already has
        assert len(rec.explanation.candidates) == 3
        assert rec.explanation.evidence.owners  # attention shares over the prompt
        text = ex.format_explanation(rec.explanation)
        assert text.startswith('  reason:    "') and "evidence:  attention on" in text
        # the prompt asks for the focus prepare would predict for this pair
        focus = prepared.focus_for(rec.item, profile(ex.user_history(prepared, user))["aspects"])
        assert len(focus) == prepared.focus_size == run.info.focus == 3
        got = [s.label for s in rec.explanation.evidence.segments if s.kind == "focus"]
        assert got == focus and f"Talk about: {', '.join(focus)}." in rec.explanation.prompt_text
        assert f"  focus:     {', '.join(focus)} (predicted" in text
    assert recs[0].score >= recs[1].score


def test_free_form_focus_comes_from_the_runs_feature_file(loaded, tmp_path):
    prepared, run, run_dir = loaded
    known = [a for a in prepared.features if " " not in a][:2]
    history = ex.parse_history(f"{known[1]} (4)")
    focus = ex.free_form_focus(run.feature_info, history, ["not-an-aspect", *known], 3)
    assert focus == predict_focus(
        [(known[0], 2), (known[1], 1)], [known[1]], prepared.feature_rates, 3
    )
    assert ex.free_form_focus(run.feature_info, history, known, 0) == []  # focus size 0
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "features.json").write_text("{not json")
    with pytest.raises(ValueError, match="features.json: unreadable feature file"):
        load_run(copy)


WORDS = st.text(alphabet="abcdefghij tuner", min_size=1, max_size=12).filter(str.strip)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    history=st.lists(st.lists(WORDS, min_size=1, max_size=8), max_size=25),
    tags=st.lists(WORDS, max_size=30),
)
def test_free_form_prompt_never_exceeds_the_fine_tuned_budget(loaded, history, tags):
    _, run, _ = loaded
    history_text = "; ".join(", ".join(block) + " (4)" for block in history)
    tags_text = ", ".join(tags)
    if not history_text and not tags_text:
        return
    expl = ex.explain_free_form(
        run, history_text, tags_text, decoding=Decoding(n_candidates=1, max_new_tokens=2)
    )
    assert len(expl.prompt_ids) <= run.info.prompt_tokens == PrepareConfig.prompt_tokens


def test_cli_explain_user_and_free_form(micro_run, capsys, tmp_path):
    prepared_dir, run_dir = micro_run
    prepared = load_prepared(prepared_dir)
    user = prepared.test[0]["user"]
    png = tmp_path / "ev.png"
    argv = [
        "explain",
        "--run",
        str(run_dir),
        "--prepared",
        str(prepared_dir),
        "--user",
        user,
        "-k",
        "2",
        "--candidates",
        "2",
        "--plot",
        str(png),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    first, second = out.splitlines()[:2]
    assert (
        first == f"model: {run_dir / 'finetune'} at step 3 of 3 (finished); weights from run.json"
    )
    assert second.startswith(f"user {user}:") and "2. " in out and "reason:" in out
    assert png.read_bytes()[:4] == b"\x89PNG"

    assert (
        main(
            ["explain", "--run", str(run_dir), "--history", "strings, tuner (4)", "--tags", "capo"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "capo" in out and "reason:" in out

    # cold start: item tags only
    assert main(["explain", "--run", str(run_dir), "--tags", "strings, guitar"]) == 0
    assert "cold start" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--user", "x"], "--user needs --prepared"),
        (["--user", "x", "--tags", "a"], "either --user"),
        ([], "either --user"),
        (["--user", "nobody", "--prepared", "PREP"], "unknown user id 'nobody'"),
    ],
)
def test_cli_explain_bad_input_is_one_line(micro_run, capsys, argv, message):
    prepared_dir, run_dir = micro_run
    argv = [str(prepared_dir) if a == "PREP" else a for a in argv]
    assert main(["explain", "--run", str(run_dir), *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_cli_option_errors_name_the_option(micro_run, capsys):
    _, run_dir = micro_run
    assert main(["explain", "--run", str(run_dir), "--tags", "a", "-k", "0"]) == 2
    err = capsys.readouterr().err
    assert "argument -k: must be >= 1, got 0" in err and err.count("\n") == 1


def test_explain_decodes_with_the_runs_recorded_settings(micro_run, tmp_path):
    prepared_dir, run_dir = micro_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    info = json.loads((copy / "run.json").read_text())
    assert info["decoding"] == {
        "n_candidates": 16,
        "temperature": 0.7,
        "top_p": 0.9,
        "max_new_tokens": 40,
    }
    info["decoding"].update(n_candidates=2, max_new_tokens=5)
    (copy / "run.json").write_text(json.dumps(info))
    run = load_run(copy)
    expl = ex.explain_free_form(run, "strings, tuner (4)", "capo")
    assert len(expl.candidates) == 2 and all(len(c.token_ids) <= 5 for c in expl.candidates)
    wider = ex.explain_free_form(run, "strings, tuner (4)", "capo", decoding=Decoding(3, 0.7))
    assert len(wider.candidates) == 3


def test_a_runs_identity_follows_its_files_not_its_place(micro_run, tmp_path):
    from minireason.train.run import run_content

    _, run_dir = micro_run
    copy = tmp_path / "elsewhere"
    shutil.copytree(run_dir, copy)
    assert run_content(copy) == run_content(run_dir)  # moved: the same run
    (copy / "finetune" / "loss.png").write_bytes(b"not what explanations depend on")
    assert run_content(copy) == run_content(run_dir)
    info = json.loads((copy / "run.json").read_text())
    info["decoding"]["n_candidates"] = 2
    (copy / "run.json").write_text(json.dumps(info))
    assert run_content(copy) != run_content(run_dir)  # other settings: another run
    (copy / "finetune" / "checkpoint.npz").unlink()
    with pytest.raises(ValueError, match="no finetune/checkpoint.npz"):
        run_content(copy)


# --------------------------------------------------------------------------- --show-candidates

CANDIDATE_ROW = re.compile(r"^    [* ] +\d+  ((?: *[+-]\d+\.\d{3})+)(?:  (\S+) +(.*))?$")
TEXT_LINE = re.compile(r"^ {11}(eos|max_new_tokens|length) +(['\"].*)$")  # below the numbers


def candidate_blocks(out: str) -> list[list[str]]:
    """The lines of each step-4 table in ``out``: from its header to its summary line."""
    blocks, block = [], None
    for line in out.splitlines():
        if line.startswith("  step 4:"):
            block = []
            blocks.append(block)
        if block is not None:
            block.append(line)
            if line.lstrip().startswith(("kept ", "#1 and #2 tie")):
                block = None
    return blocks


ESCAPE_AT_MOST = len("\\U0010ffff")  # the longest a character's repr() can be


def check_candidate_table(lines: list[str], width: int = 120) -> list[str]:
    """Every line within ``width``; each row's parts sum to its score (to the 3 decimals
    shown); each text whole or cut with '...' after at least 40 characters, less what an
    escape at the cut (``\\\\``, ``\\x85``, up to ``\\U0010ffff``) would have taken past the
    room. Returns the column names."""
    assert all(len(line) <= width for line in lines), max(lines, key=len)
    header = next(line for line in lines if line.startswith("       #  "))
    columns = header.split()[1:]
    columns = columns[: columns.index("finish")] if "finish" in columns else columns
    assert columns[0] == "score"
    rows = [m for m in map(CANDIDATE_ROW.match, lines) if m]
    assert rows
    for m in rows:
        score, *parts = (float(x) for x in m.group(1).split())
        assert sum(parts) == pytest.approx(score, abs=0.0005 * (len(parts) + 1)), m.group(0)
    texts = [m.group(3) for m in rows if m.group(3)]
    below = [TEXT_LINE.match(line) for line in lines]
    texts += [m.group(2) for m in below if m]
    assert len(texts) == len(rows)
    for text in texts:
        assert text[0] in "'\"" and text[-1] == text[0]
        assert not text.endswith("...'") or len(text) >= 40 - ESCAPE_AT_MOST + 1, text
    return columns[1:]


def test_show_candidates_fits_120_columns_without_parts_that_weigh_0(micro_run, capsys):
    prepared_dir, run_dir = micro_run
    user = load_prepared(prepared_dir).test[0]["user"]
    argv = ["explain", "--run", run_dir, "--prepared", prepared_dir, "--user", user]
    assert main([*map(str, argv), "-k", "2", "--show-candidates"]) == 0  # the run's 16
    blocks = candidate_blocks(capsys.readouterr().out)
    assert len(blocks) == 2
    for block in blocks:
        shown = check_candidate_table(block)
        assert "user" not in shown and "logprob" not in shown  # a new run's weights: 0
        assert any("not shown, weight 0: user, logprob" in line for line in block)
        rows = [CANDIDATE_ROW.match(line) for line in block]
        numbers = [m.group(1).split()[1:] for m in rows if m]
        for i, name in enumerate(shown):  # a column shown is not 0 for every candidate
            assert any(float(row[i]) != 0 for row in numbers), name


def test_show_candidates_with_every_part_at_work(loaded):
    """A new run's weights, and every part they weigh at work in every candidate: the
    lines still keep within 120 columns (each text below its numbers, whole or cut), and the
    parts shown still sum to the score."""
    import dataclasses

    from minireason.reason.scoring import SCORE_PARTS
    from minireason.train.run import ScoreWeights

    prepared, run, _ = loaded
    user = prepared.test[0]["user"]
    weights = ScoreWeights()
    recs = ex.explain_for_user(run, prepared, user, k=1, weights=weights)
    expl = recs[0].explanation
    every = dict.fromkeys(["user_coverage", "item_coverage", "focus_coverage", "phrasing"], 0.5)
    every |= dict.fromkeys(["mean_logprob", "consensus", "repetition", "echoes"], 1)
    every |= dict.fromkeys(["duplicate", "truncated", "empty", "unfinished", "contradicts"], True)
    every |= {"degenerate": ["loop"], "unknown_words": ["zzq"]}
    active = []
    for i, c in enumerate(expl.candidates):  # each term of the score at work, in every one
        score = dataclasses.replace(c.score, **every)
        score.total = sum(score.parts(weights).values())
        active.append(
            dataclasses.replace(c, score=score, text="a reason " * 30 if i == 0 else c.text)
        )
    expl.candidates = active
    text = ex.format_candidates(expl)
    lines = text.splitlines()
    weighed = [p for p in SCORE_PARTS if getattr(weights, p) != 0]
    assert check_candidate_table(lines) == [ex.CANDIDATE_HEADERS[p] for p in weighed]
    assert "0 for every candidate" not in text
    kept = lines.index(next(x for x in lines if x.startswith("    *  1")))
    first_text = TEXT_LINE.match(lines[kept + 1])
    assert first_text and first_text.group(2).startswith("'a reason a reason")
    assert first_text.group(2).endswith("...'") and len(lines[kept + 1]) == 120


def test_a_copy_head_reason_says_what_it_copied_and_from_where(loaded):
    """A copy-head model whose gate is shut copies every token: the explanation names the
    copied runs and their places, the CLI prints them and the page marks every token."""
    from dataclasses import replace

    from minireason.nn.model import GPT, GPTConfig
    from minireason.reason.explanations_page import explanation_data

    _, run, _ = loaded
    config = GPTConfig(
        vocab_size=run.tokenizer.vocab_size,
        block_size=run.model.config.block_size,
        n_layer=1,
        n_head=2,
        n_embd=16,
        copy=True,
    )
    model = GPT(config).eval()
    model.params["copy.b_gate"][:] = -30.0  # P(generate) ~ 1e-13: every token is copied
    copying = replace(run, model=model)
    expl = ex.explain_free_form(copying, "strings, tuner (4)", "capo, guitar")
    best = expl.candidates[0]
    assert best.copied.min() > 0.99
    assert expl.copies and sum(len(c.rows) for c in expl.copies) == len(best.token_ids)
    context = expl.prompt_ids + best.token_ids
    for r, source in enumerate(best.copied_from):
        assert context[source] == best.token_ids[r]
    assert {c.source for c in expl.copies} <= set(ex.PLACES.values()) | {"the reason"}
    text = ex.format_explanation(expl)
    assert "  copied:    " + repr(expl.copies[0].text) in text
    data = explanation_data(expl, run.tokenizer)
    assert all(t["copied"] > 0.99 for t in data["reason_tokens"])
    assert [t["from"] for t in data["reason_tokens"]] == best.copied_from.tolist()
    assert data["copies"][0]["source"] == expl.copies[0].source


def test_a_plain_model_copies_nothing(loaded):
    _, run, _ = loaded
    expl = ex.explain_free_form(run, "strings, tuner (4)", "capo")
    assert expl.copies == [] and "copied:" not in ex.format_explanation(expl)
