"""``minireason explain``: user histories, free-form input, recommendations with reasons."""

from __future__ import annotations

import json
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
