"""The HTML pages' data and files, without a browser: the numbers are the CLI's, the JSON is
escaped, the files are written whole. (tests/test_report_browser.py opens them in Chromium.)"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re

import numpy as np
import pytest

from minireason.cli import main
from minireason.evaluation.metrics import explanation_metrics, format_metric
from minireason.evaluation.render import evaluation_about, evaluation_page_data, record_scores
from minireason.html_page import embed_json, render_page, write_page
from minireason.prep.prepared import load_prepared
from minireason.reason import explain as ex
from minireason.reason.explanations_page import (
    HEAD_SCALE,
    MEAN_SCALE,
    explanation_data,
    render_report,
    user_section,
    write_report,
)
from minireason.reason.scoring import ScoreWeights
from minireason.train.run import Decoding, load_run

HOSTILE = '</script><img src=x onerror="window.__pwned=1"><!-- & \u2028 \u2029'


@pytest.fixture(scope="module")
def explained(micro_run):
    """(prepared, run, user, recommendations) of the micro run, 4 candidates each."""
    prepared_dir, run_dir = micro_run
    prepared, run = load_prepared(prepared_dir), load_run(run_dir)
    user = prepared.test[0]["user"]
    decoding = run.info.decoding.replace(n_candidates=4)
    recs = ex.explain_for_user(run, prepared, user, k=2, decoding=decoding)
    return prepared, run, user, recs


# --------------------------------------------------------------------------- the page


def test_embedded_json_cannot_close_its_script_element():
    text = embed_json({"review": HOSTILE, "n": [1, 2.5]})
    for raw in ("<", ">", "&", "\u2028", "\u2029"):
        assert raw not in text
    assert json.loads(text) == {"review": HOSTILE, "n": [1, 2.5]}  # JSON escapes, same data
    with pytest.raises(ValueError, match="not valid JSON"):
        embed_json({"score": float("nan")})


def test_page_holds_its_script_by_hash_and_the_data_only_as_json():
    page = render_page(HOSTILE, {"text": HOSTILE}, ["common.js"])
    assert HOSTILE not in page and "<img" not in page
    assert "<title>&lt;/script&gt;&lt;img" in page  # the title is escaped
    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = re.search(r'Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert f"script-src 'sha256-{digest}'" in policy and "default-src 'none'" in policy
    data = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    assert json.loads(data.group(1)) == {"text": HOSTILE}


def test_write_page_replaces_whole_or_not_at_all(tmp_path):
    path = write_page(tmp_path / "sub" / "page.html", "first")
    assert path.read_text() == "first"
    write_page(path, "second")
    assert path.read_text() == "second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["page.html"]  # no temporary left
    with pytest.raises(ValueError):  # data that cannot be rendered leaves the old page
        write_report(path, [{"user": "u", "recommendations": [], "score": math.inf}])
    assert path.read_text() == "second"


# --------------------------------------------------------------------------- explanations


def test_score_parts_sum_to_the_score_and_the_table_lists_every_candidate(explained):
    *_, recs = explained
    for rec in recs:
        expl = rec.explanation
        rows = ex.candidate_table(expl)
        assert len(rows) == len(expl.candidates) == 4
        assert [r["total"] for r in rows] == [c.score.total for c in expl.candidates]
        for row in rows:
            assert sum(row["parts"].values()) == row["total"]  # the same sum, bit for bit
            assert row["shown"]["total"] == f"{row['total'] + 0.0:+.3f}"
        assert rows[0]["chosen"] and not any(r["chosen"] for r in rows[1:])
        assert rows[0]["text"] == expl.reason
        text = ex.format_candidates(expl)
        assert len(re.findall(r"^    [* ] +\d+ +[+-]\d+\.\d{3} ", text, re.M)) == 4
        assert "\n    *  1 " in text
        assert ex.decision_summary(rows) in text


def test_score_parts_follow_the_weights():
    from minireason.reason.scoring import score_candidate

    w = ScoreWeights(user=2.0, item=0.5, focus=3.0, logprob=0.1, truncated=0.25)
    b = score_candidate(
        "great strings and a fine tuner",
        np.array([-1.0, -2.0, -3.0]),
        "max_new_tokens",
        ["strings", "action"],
        ["tuner"],
        weights=w,
        focus=["strings", "tuner", "neck"],
    )
    parts = b.parts(w)
    assert parts["user"] == 2.0 * 0.5 and parts["item"] == 0.5 * 1.0
    assert parts["focus"] == pytest.approx(3.0 * 2 / 3) and parts["logprob"] == -0.2
    assert parts["truncated"] == -0.25 and parts["duplicate"] == 0.0 and parts["empty"] == 0.0
    assert sum(parts.values()) == b.total


def test_explanation_data_holds_the_evidence_matrix_and_every_head(explained):
    _, run, _, recs = explained
    expl = recs[0].explanation
    data = explanation_data(expl, run.tokenizer)
    ev = expl.evidence
    R, P = ev.matrix.shape
    cfg = run.model.config
    assert R == len(expl.candidates[0].token_ids) and P == len(expl.prompt_ids)
    mean = np.array(data["attention"]["mean"]) / MEAN_SCALE
    heads = np.array(data["attention"]["heads"]) / HEAD_SCALE
    assert mean.shape == (R, P) and heads.shape == (cfg.n_layer, cfg.n_head, R, P)
    assert np.abs(mean - ev.matrix).max() <= 0.5 / MEAN_SCALE + 1e-12
    assert np.abs(heads - ev.heads).max() <= 0.5 / HEAD_SCALE + 1e-12
    # the evidence matrix is the per-head weights averaged over layers and heads
    np.testing.assert_allclose(ev.heads.mean(axis=(0, 1)), ev.matrix, atol=1e-6)
    assert len(data["reason_tokens"]) == R and len(data["prompt"]["tokens"]) == P
    shares = [s["share"] for s in data["shares"]["owners"]]
    assert shares == [s.share for s in ev.owners] and sum(shares) == pytest.approx(1.0)
    assert data["candidates"] == ex.candidate_table(expl)
    json.dumps(data, allow_nan=False)  # JSON-ready


def test_user_section_is_what_the_cli_prints(explained):
    prepared, run, user, recs = explained
    section = user_section(prepared, user, recs, run.tokenizer)
    text = ex.format_user_report(prepared, user, recs)
    assert section["user"] == user
    assert [r["item"] for r in section["recommendations"]] == [r.item for r in recs]
    for row in section["recommendations"]:
        assert f" {row['rank']}. {row['item']} (" in text
        assert row["recommender_shown"] in text
        assert f'reason:    "{row["explanation"]["reason"]}"' in text
    for h in section["latest"]:
        assert f"  - {h['item']} (" in text
    page = render_report([section])
    assert page.startswith("<!DOCTYPE html>") and 'id="data"' in page


# --------------------------------------------------------------------------- CLI


def test_explain_html_and_show_candidates(micro_run, tmp_path, capsys):
    prepared_dir, run_dir = micro_run
    user = load_prepared(prepared_dir).test[0]["user"]
    page = tmp_path / "out" / "report.html"
    argv = ["explain", "--run", str(run_dir), "--prepared", str(prepared_dir), "--user", user]
    assert (
        main([*argv, "-k", "2", "--candidates", "3", "--show-candidates", "--html", str(page)]) == 0
    )
    out = capsys.readouterr().out
    assert out.count("  step 4:    3 candidates, best first") == 2
    assert len(re.findall(r"^    [* ]  [123] +[+-]\d+\.\d{3} ", out, re.M)) == 6
    assert f"report written to {page}" in out
    data = json.loads(re.search(r'id="data">(.*?)</script>', page.read_text(), re.S).group(1))
    assert [len(r["explanation"]["candidates"]) for r in data["users"][0]["recommendations"]] == [
        3,
        3,
    ]

    free = tmp_path / "free.html"
    history, tags = "strings, tuner (4); pedal", "capo, guitar"
    args = ["explain", "--run", str(run_dir), "--history", history, "--tags", tags]
    assert main([*args, "--candidates", "2", "--html", str(free)]) == 0
    data = json.loads(re.search(r'id="data">(.*?)</script>', free.read_text(), re.S).group(1))
    section = data["users"][0]
    assert section["user"] is None and section["n_history"] == 2
    assert section["recommendations"][0]["tags"] == ["capo", "guitar"]


# --------------------------------------------------------------------------- evaluation


def test_record_scores_average_to_the_corpus_metrics():
    hyps = [
        "great strings, they sound bright",
        "the tuner works",
        "great strings, they sound bright",
        "a capo that holds",
    ]
    refs = [
        "these strings sound bright and warm",
        "this tuner is accurate and works well",
        "the capo is fine",
        "a capo that holds well on my guitar",
    ]
    features = ["strings", "tuner", "capo", "capo"]
    feature_set = ["strings", "tuner", "capo", "guitar"]
    corpus = explanation_metrics(hyps, refs, features, feature_set)
    rows = [record_scores(h, r, f) for h, r, f in zip(hyps, refs, features, strict=True)]
    assert np.mean([r["rougeL_f"] for r in rows]) == pytest.approx(corpus["rougeL_f"])
    assert np.mean([r["rouge1_f"] for r in rows]) == pytest.approx(corpus["rouge1_f"])
    assert np.mean([r["names_feature"] for r in rows]) == pytest.approx(corpus["fmr"])
    assert [r["names_feature"] for r in rows] == [True, True, False, True]

    result = {
        "model": {**corpus, "perplexity": 12.5},
        "baselines": {"template": corpus},
        "recommendation": {"hybrid": {"hr@10": 0.5, "ndcg@10": 0.25, "n_users": 4}},
        "info": {"n_records": 4, "split": "test"},
    }
    answers = {"model": hyps, "template": ["great strings."] * 4}
    records = [
        {"user": f"u{i}", "item": f"i{i}", "feature": f, "target": r, "history": [None] * i}
        for i, (f, r) in enumerate(zip(features, refs, strict=True))
    ]
    data = evaluation_page_data(result, answers, records)
    assert data["systems"] == ["model", "template"]
    model = [r["answers"]["model"] for r in data["records"]]
    assert [a["copies"] for a in model] == [2, 1, 2, 1]
    assert [r["answers"]["template"]["copies"] for r in data["records"]] == [4] * 4
    assert [r["n_history"] for r in data["records"]] == [0, 1, 2, 3]
    shown = data["metrics"]["rows"][0]["shown"]
    assert shown["rougeL_f"] == f"{corpus['rougeL_f']:.2f}" and shown["fmr"] == format_metric(
        "fmr", corpus["fmr"]
    )


def test_the_evaluation_page_says_which_model_and_settings_made_it():
    info = {
        "prepared": "runs/prep",
        "run": "runs/tiny",
        "checkpoint_step": 800,
        "training_finished": True,
        "model_size": {"n_layer": 4, "n_head": 4, "n_embd": 128},
        "split": "test",
        "n_records": 6,
        "n_test_records_with_target": 1257,
        "random_seed": 0,
        "decode": "step4",
        "decoding": vars(Decoding()),
        "weights": {**ScoreWeights().to_dict(), "user": 0.0, "echo": 0.25},
        "weights_from": "tuned.json",
    }
    assert evaluation_about(info) == {
        "run": "runs/tiny (checkpoint step 800)",
        "prepared": "runs/prep",
        "model": "4 layers x 4 heads, 128 wide",
        "decoding": "step 4: the best-scored of 16 candidates, temperature 0.7, top-p 0.9, "
        "at most 40 tokens",
        "weights": ", ".join(f"{k} {v:g}" for k, v in info["weights"].items() if v)
        + " (from tuned.json)",
        "records": "6 of the 1257 test records with a target",
        "seed": 0,
    }
    greedy = {
        **info,
        "training_finished": False,
        "decode": "greedy",
        "decoding": {"greedy": True, "max_new_tokens": 40},
        "weights": None,
        "weights_from": None,
    }
    about = evaluation_about(greedy)
    assert about["run"] == "runs/tiny (checkpoint step 800, fine-tuning not finished)"
    assert about["decoding"] == "greedy, at most 40 tokens" and "weights" not in about
    assert evaluation_about({**info, "decode": "custom"})["decoding"].startswith("custom")
    # a result made by hand, with few keys: only what it says, no None to print
    assert evaluation_about({"n_records": 4, "split": "test"}) == {"records": "4"}
