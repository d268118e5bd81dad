"""``minireason explain``: user histories, free-form input, recommendations with reasons."""

from __future__ import annotations

import pytest

from minireason.cli import main
from minireason.nn.checkpoint import load_model
from minireason.prep.features import predict_focus, profile
from minireason.prep.prepared import load_prepared
from minireason.reason import explain as ex


@pytest.fixture(scope="module")
def loaded(micro_run):
    prepared_dir, run_dir = micro_run
    return load_prepared(prepared_dir), load_model(run_dir / "finetune"), run_dir


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
    prepared, model, _ = loaded
    with pytest.raises(ValueError, match="unknown user id 'nobody'"):
        ex.user_history(prepared, "nobody")
    user = prepared.test[0]["user"]
    with pytest.raises(ValueError, match="unknown item id 'no-such-item'"):
        ex.explain_for_user(model, prepared, user, item="no-such-item")


def test_recommend_then_explain_each(loaded):
    prepared, model, _ = loaded
    user = prepared.test[0]["user"]
    recs = ex.explain_for_user(model, prepared, user, k=2, n_candidates=3, max_new_tokens=8)
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
        assert len(focus) == prepared.config["focus"] == 3
        got = [s.label for s in rec.explanation.evidence.segments if s.kind == "focus"]
        assert got == focus and f"Talk about: {', '.join(focus)}." in rec.explanation.prompt_text
        assert f"  focus:     {', '.join(focus)} (predicted" in text
    assert recs[0].score >= recs[1].score


def test_free_form_focus_comes_from_the_runs_feature_file(loaded, tmp_path):
    prepared, _, run_dir = loaded
    known = [a for a in prepared.features if " " not in a][:2]
    history = ex.parse_history(f"{known[1]} (4)")
    focus = ex.free_form_focus(run_dir, history, ["not-an-aspect", *known])
    assert focus == predict_focus(
        [(known[0], 2), (known[1], 1)], [known[1]], prepared.feature_rates, 3
    )
    assert ex.free_form_focus(tmp_path, history, known) == []  # a run from before focus
    (tmp_path / "features.json").write_text("{not json")
    with pytest.raises(ValueError, match="features.json: corrupt feature file"):
        ex.free_form_focus(tmp_path, history, known)


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
    assert out.startswith(f"user {user}:") and "2. " in out and "reason:" in out
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
        (["--tags", "a", "-k", "0"], "-k must be >= 1"),
        (["--user", "nobody", "--prepared", "PREP"], "unknown user id 'nobody'"),
    ],
)
def test_cli_explain_bad_input_is_one_line(micro_run, capsys, argv, message):
    prepared_dir, run_dir = micro_run
    argv = [str(prepared_dir) if a == "PREP" else a for a in argv]
    assert main(["explain", "--run", str(run_dir), *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
