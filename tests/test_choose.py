"""Choosing a reason has one home (``minireason.reason.choose``), and its weights are data:
recorded in ``run.json``, tuned into a file, adopted with ``--weights FILE``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minireason.bench.explain import pair_inputs
from minireason.cli import main
from minireason.data.clean import one_line
from minireason.prep.prepared import load_prepared
from minireason.reason.choose import (
    CandidatePool,
    ScoringContext,
    choose_reasons,
    rank,
    record_streams,
    sample_batches,
)
from minireason.reason.explain import explain
from minireason.train.run import (
    RUN_JSON,
    WEIGHTS_0_2,
    Decoding,
    ScoreWeights,
    load_run,
    load_weights,
    read_run_info,
)


@pytest.fixture(scope="module")
def loaded(micro_run):
    prep_dir, run_dir = micro_run
    return prep_dir, run_dir, load_prepared(prep_dir), load_run(run_dir)


def contexts_of(prepared, records):
    return [
        ScoringContext.of_record(
            r, prepared.reviews_by, prepared.known_words, prepared.particular_words
        )
        for r in records
    ]


def test_the_chosen_reason_is_the_best_scored_sample(loaded):
    """Batch 1 redone by hand: sample with its seed, score every candidate, keep the best."""
    from minireason.reason.generate import generate
    from minireason.reason.scoring import consensus, expected_rating, score_candidate
    from minireason.text import words

    _, _, prepared, run = loaded
    tok, model = run.tokenizer, run.model
    records = prepared.test[:5]
    prompts = [prepared.prompts["test"].get(i).tolist() for i in range(5)]
    decoding = Decoding(n_candidates=4, max_new_tokens=6)
    w = ScoreWeights()
    contexts = [ScoringContext.of_record(r) for r in records]  # no phrases, no vocabulary
    chosen = choose_reasons(model, tok, prompts, contexts, decoding, w, 3, 2, False)
    assert chosen == choose_reasons(model, tok, prompts, contexts, decoding, w, 3, 2, False)
    assert len(chosen) == 5
    gen = generate(
        model,
        prompts[2:4],
        max_new_tokens=6,
        top_p=decoding.top_p,
        temperature=decoding.temperature,
        eos_id=tok.eos_id,
        rng=np.random.default_rng([3, 1]),
        n_samples=4,
    )
    for j, rec in enumerate(records[2:4]):
        rows = range(4 * j, 4 * j + 4)
        texts = [one_line(tok.decode(gen.tokens[r], skip_special=True)) for r in rows]
        rating = expected_rating([h["rating"] for h in rec["history"]])
        agree = consensus([words(t) for t in texts])
        scores = [
            score_candidate(
                texts[i],
                gen.logprobs[r],
                gen.finish[r],
                rec["profile"]["aspects"],
                rec["item_tags"],
                duplicate=words(texts[i]) in [words(t) for t in texts[:i]],
                focus=rec["focus"],
                rating=rating,
            ).total
            + w.consensus * agree[i]
            for i, r in enumerate(rows)
        ]
        assert chosen[2 + j] == texts[int(np.argmax(scores))]
    with pytest.raises(ValueError, match="3 prompts for 5 contexts"):
        choose_reasons(model, tok, prompts[:3], contexts, decoding, w, 3, 2, False)


def test_record_streams_are_the_batches_seeds():
    """Record j of batch b draws from the streams ``default_rng([seed, b])`` spawns for it."""
    streams = record_streams(7, 5, 2, 3)
    assert [len(s) for s in streams] == [3] * 5
    expected = np.random.default_rng([7, 1]).spawn(6)[3:6]  # record 3: batch 1, second
    assert [g.random() for g in streams[3]] == [g.random() for g in expected]


def test_the_tuners_pool_chooses_what_rank_keeps(loaded):
    from minireason.evaluation.tuning import GRID, objective

    _, _, prepared, run = loaded
    tok = run.tokenizer
    records = prepared.valid[:6]
    prompts = [prepared.prompts["valid"].get(i).tolist() for i in range(6)]
    samples = sample_batches(
        run.model, tok, prompts, Decoding(n_candidates=4, max_new_tokens=8), 0, 2, False
    )
    contexts = contexts_of(prepared, records)
    pool = CandidatePool(tok, samples, contexts)
    for w in (
        ScoreWeights(),
        ScoreWeights(consensus=4.0, logprob=1.0),
        ScoreWeights(focus=0.0, degenerate=4.0),
        ScoreWeights(phrasing=8.0),
        ScoreWeights(unknown=0.0),
        ScoreWeights(unknown=8.0, consensus=0.0),
    ):
        assert pool.choose(w) == [rank(tok, s, c, w)[0].text for s, c in zip(samples, contexts)]
    assert set(GRID) <= set(ScoreWeights().to_dict())
    good = {"bleu4": 1.6, "rougeL_f": 19.0, "bleu1": 20.0, "fmr": 0.36, "usr": 0.9}
    good["degenerate"] = 0.0
    assert objective(good) == pytest.approx(4.0)
    assert objective({**good, "degenerate": 0.015}) == pytest.approx(3.5)
    assert objective({**good, "degenerate": 0.05}) == float("-inf")
    assert objective({**good, "usr": 0.4}) == float("-inf")


def test_explain_and_evaluate_choose_identically_with_the_same_streams_and_weights(
    loaded, tmp_path
):
    """``evaluate`` (batched) and ``explain`` (one prompt, rebuilt from the record's parts)
    keep the same reason for a record when given its streams and the same weights."""
    prep_dir, run_dir, prepared, run = loaded
    weights = ScoreWeights(consensus=2.0, unknown=0.5)
    path = tmp_path / "weights.json"
    path.write_text(json.dumps({"format": "minireason-weights", "format_version": 1,
                                "weights": weights.to_dict()}))  # fmt: skip
    out = tmp_path / "eval"
    argv = ["evaluate", "--prepared", str(prep_dir), "--run", str(run_dir), "--out", str(out)]
    argv += ["--split", "valid", "--limit", "6", "--seed", "4", "--weights", str(path)]
    assert main(argv) == 0
    info = json.loads((out / "evaluation.json").read_text())["info"]
    assert info["weights"] == weights.to_dict() and info["weights_from"] == str(path)
    answers = [json.loads(line)["model"] for line in (out / "generations.jsonl").open()]
    decoding = run.info.decoding
    per_batch = max(1, 64 // decoding.n_candidates)  # evaluate's default batch of 64
    streams = record_streams(4, 6, per_batch, decoding.n_candidates)
    sequences = prepared.finetune["valid"]
    for j in range(6):
        record = prepared.valid[int(sequences.record[j])]
        expl = explain(
            run.model,
            run.tokenizer,
            **pair_inputs(record, prepared),
            prompt_tokens=run.info.prompt_tokens,
            decoding=decoding,
            seed=streams[j],
            weights=weights,
        )
        assert expl.prompt_ids == prepared.prompts["valid"].get(int(sequences.record[j])).tolist()
        assert expl.reason == answers[j]


def test_weights_round_trip_from_tune_to_every_command(loaded, tmp_path, capsys):
    """tune -> weights file -> --weights -> recorded in the outputs -> the same choices."""
    prep_dir, run_dir, prepared, run = loaded
    out = tmp_path / "tuned.json"
    argv = ["tune", "--prepared", str(prep_dir), "--run", str(run_dir), "--out", str(out)]
    assert main([*argv, "--limit", "6", "--passes", "1"]) == 0
    printed = capsys.readouterr().out
    assert "validation (6 records)" in printed and f"--weights {out}" in printed
    tuned = json.loads(out.read_text())
    weights = load_weights(out)
    assert weights.to_dict() == tuned["weights"] == tuned["validation"]["tuned"]["weights"]
    assert tuned["validation"]["run"]["weights"] == run.info.weights.to_dict()
    assert tuned["inputs"]["run"]["content"] and tuned["chosen_on"]["split"] == "valid"
    # explain with the file and explain with the weights given in Python agree
    user = prepared.test[0]["user"]
    html = tmp_path / "page.html"
    explain_argv = ["explain", "--run", str(run_dir), "--prepared", str(prep_dir)]
    explain_argv += ["--user", user, "-k", "1", "--show-candidates", "--html", str(html)]
    assert main([*explain_argv, "--weights", str(out)]) == 0
    shown = capsys.readouterr().out
    from minireason.reason.explain import explain_for_user

    (rec,) = explain_for_user(run, prepared, user, k=1, weights=weights)
    assert f'reason:    "{rec.explanation.reason}"' in shown
    assert f"weights from {out}" in shown
    assert str(out) in html.read_text()
    # a second tune into the same file replaces its own file; a foreign file is refused
    assert main([*argv, "--limit", "6", "--passes", "1"]) == 0
    foreign = tmp_path / "notes.json"
    foreign.write_text('{"mine": true}')
    capsys.readouterr()
    assert main(["tune", "--prepared", str(prep_dir), "--run", str(run_dir),
                 "--out", str(foreign), "--limit", "6"]) == 1  # fmt: skip
    assert "not a weights file" in capsys.readouterr().err
    assert foreign.read_text() == '{"mine": true}'


def test_run_json_records_the_weights_and_old_runs_read_the_release_weights(loaded, tmp_path):
    _, run_dir, _, run = loaded
    recorded = json.loads((run_dir / RUN_JSON).read_text())
    assert recorded["format_version"] == 2
    assert recorded["weights"] == ScoreWeights().to_dict() == run.info.weights.to_dict()
    old = tmp_path / "old-run"
    old.mkdir()
    v1 = {k: v for k, v in recorded.items() if k != "weights"} | {"format_version": 1}
    (old / RUN_JSON).write_text(json.dumps(v1))
    assert read_run_info(old).weights == WEIGHTS_0_2
    before_specific = {k: v for k, v in recorded["weights"].items() if k != "specific"}
    (old / RUN_JSON).write_text(json.dumps({**recorded, "weights": before_specific}))
    assert read_run_info(old).weights == ScoreWeights(specific=0.0)  # a later term is off
    broken = {**recorded, "weights": {**recorded["weights"], "item": "lots"}}
    (old / RUN_JSON).write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="item must be a number"):
        read_run_info(old)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{", "not valid JSON"),
        ('{"format": "other"}', "not a minireason weights file"),
        ('{"format": "minireason-weights", "format_version": 9}', "version 9"),
        ('{"format": "minireason-weights", "format_version": 1}', "lacks the field 'weights'"),
        ('{"format": "minireason-weights", "format_version": 1, "weights": {"item": 1}}',
         "no weight 'user'"),
        ('{"format": "minireason-weights", "format_version": 1, "weights": [1]}',
         "expected an object"),
    ],
)  # fmt: skip
def test_a_bad_weights_file_is_one_line_naming_it(loaded, tmp_path, capsys, content, message):
    prep_dir, run_dir, _, _ = loaded
    path = tmp_path / "w.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_weights(path)
    argv = ["evaluate", "--prepared", str(prep_dir), "--run", str(run_dir), "--limit", "2"]
    assert main([*argv, "--out", str(tmp_path / "e"), "--weights", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "e").exists()


def test_step_4_and_the_evaluation_read_the_same_particular_words(loaded):
    from minireason.evaluation.grounding import GroundingIndex

    prepared = loaded[2]
    index = GroundingIndex(prepared.train, prepared.features)
    items = sorted({r["item"] for r in prepared.train})
    assert any(prepared.particular_words(i) for i in items)
    for item in items:
        assert prepared.particular_words(item) == index.particular[item]
    assert prepared.particular_words("no-such-item") == frozenset()
