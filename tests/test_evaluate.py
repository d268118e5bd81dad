"""``minireason evaluate``: baselines, perplexity, the greedy decoder, outputs and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from minireason.cli import main
from minireason.data.clean import one_line
from minireason.evaluation.baselines import (
    BASELINES,
    baseline_answers,
    evidence_reasons,
    random_reasons,
    retrieval_reasons,
    template_reason,
)
from minireason.evaluation.evaluate import (
    SYSTEMS,
    evaluate_run,
    greedy_generate_fn,
    reason_perplexity,
)
from minireason.evaluation.metrics import GROUNDING_METRICS, METRICS, format_metric
from minireason.nn.checkpoint import load_model
from minireason.prep.prepared import load_prepared
from minireason.text import words
from minireason.train.batches import pad_batch
from minireason.train.run import Decoding, load_run


@pytest.fixture(scope="module")
def run(micro_run):
    """(prepared dir, run dir): 600 real reviews, a micro model trained for a few steps."""
    return micro_run


def result_answers(out, system: str) -> list[str]:
    """One system's answers, as an evaluation wrote them to ``generations.jsonl``."""
    lines = (out / "generations.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)[system] for line in lines]


# --------------------------------------------------------------------------- baselines


def test_template_reason():
    assert template_reason(["strings", "tone", "price"]) == "great strings and tone."
    assert template_reason(["tuner"]) == "great tuner."
    assert template_reason([]) == "great product."


def test_random_reasons_are_seeded_draws_from_the_pool():
    pool = [f"reason {i}" for i in range(50)]
    a, b = random_reasons(pool, 200, seed=3), random_reasons(pool, 200, seed=3)
    assert a == b and set(a) <= set(pool) and len(set(a)) > 30
    assert random_reasons(pool, 200, seed=4) != a


def test_retrieval_picks_the_most_similar_training_record():
    def rec(tags, aspects, item_tags, target=None):
        return {
            "profile": {"tags": tags, "aspects": aspects},
            "item_tags": item_tags,
            "target": target,
        }

    train = [
        rec(["guitar"], ["tone"], ["strings"], "t0"),
        rec(["mic"], ["noise"], ["cable", "xlr"], "t1"),
        rec([], [], ["strings", "tuner"], "t2"),
    ]
    test = [
        rec(["mic"], [], ["xlr"]),  # shares u:mic and i:xlr with record 1
        rec([], [], ["tuner", "strings"]),  # the same bag as record 2
        rec(["guitar"], ["tone"], []),  # user side equals record 0's
        rec(["banjo"], [], ["kazoo"]),
    ]  # nothing in common: first record, counted
    reasons, n_empty = retrieval_reasons(train, test)
    assert reasons == ["t1", "t2", "t0", "t0"]
    assert n_empty == 1
    # user terms and item terms are different terms: a tag on the user side does not match
    # the same tag on the item side
    reasons, _ = retrieval_reasons(train, [rec(["strings"], [], ["cable"])])
    assert reasons == ["t1"]


def test_evidence_baseline_falls_back_to_retrieval():
    records = [{"evidence": ["Warm tone."]}, {"evidence": []}, {}]
    assert evidence_reasons(records, ["a", "b", "c"]) == (["Warm tone.", "b", "c"], 2)


def test_every_baseline_answers_in_the_registry_order():
    train = [
        {"profile": {"tags": ["guitar"]}, "item_tags": ["strings"], "target": "t0"},
        {"profile": {"tags": ["mic"]}, "item_tags": ["xlr"], "target": "t1"},
    ]
    records = [
        {"profile": {"tags": ["mic"]}, "item_tags": ["xlr", "cable"], "evidence": ["Quiet."]},
        {"profile": {}, "item_tags": [], "evidence": []},
    ]
    answers, counts = baseline_answers(train, records, seed=3)
    assert list(answers) == list(BASELINES) == ["random", "retrieval", "evidence", "template"]
    assert SYSTEMS == ("model", *BASELINES)
    assert answers["random"] == random_reasons(["t0", "t1"], 2, seed=3)
    assert answers["retrieval"] == ["t1", "t0"] and answers["evidence"] == ["Quiet.", "t0"]
    assert answers["template"] == ["great xlr and cable.", "great product."]
    assert counts == {"retrieval_empty": 1, "evidence_missing": 1}


# --------------------------------------------------------------------------- the model


@pytest.mark.slow
def test_perplexity_matches_per_sequence_losses(run):
    prep_dir, run_dir = run
    prepared, model = load_prepared(prep_dir), load_model(run_dir / "finetune")
    seqs, pad = prepared.finetune["test"], prepared.tokenizer.pad_id
    rows = np.arange(7)
    ppl, n_tokens = reason_perplexity(model, seqs, rows, pad, batch_size=3, progress=False)
    nll = count = 0.0
    for r in rows:  # one sequence at a time: no padding at all
        idx, targets, mask = pad_batch(seqs, [r], pad)
        _, loss = model.forward(idx, targets, mask, keep_cache=False)
        nll, count = nll + loss * mask.sum(), count + mask.sum()
    assert n_tokens == count == sum(int(seqs.get(r)[1].sum()) for r in rows)
    assert ppl == pytest.approx(math.exp(nll / count), rel=1e-5)


@pytest.mark.slow
def test_greedy_reasons_batched_equal_one_by_one_and_recomputed(run):
    prep_dir, run_dir = run
    prepared, model = load_prepared(prep_dir), load_model(run_dir / "finetune")
    tok = prepared.tokenizer
    prompts = [prepared.prompts["test"].get(i).tolist() for i in range(6)]
    generate = greedy_generate_fn(model, tok, max_new_tokens=6, batch_size=4, progress=False)
    together = generate(prompts)
    assert together == [generate([p])[0] for p in prompts]
    # the same greedy choices by hand (full recomputation, no cache, no batching)
    for prompt, reason in zip(prompts, together):
        seq = list(prompt)
        for _ in range(6):
            logits, _ = model.forward(np.asarray([seq]), keep_cache=False)
            seq.append(int(logits[0, -1].argmax()))
            if seq[-1] == tok.eos_id:
                seq.pop()
                break
        assert reason == one_line(tok.decode(seq[len(prompt) :], skip_special=True))


def test_evaluate_with_a_perfect_generator(run, tmp_path):
    prep_dir, run_dir = run
    prepared = load_prepared(prep_dir)
    rows = [int(r) for r in prepared.finetune["test"].record]

    def oracle(prompts):  # answers each prompt, in record order, with its record's target
        assert prompts == [prepared.prompts["test"].get(r).tolist() for r in rows[: len(prompts)]]
        return [prepared.test[r]["target"] for r in rows[: len(prompts)]]

    out = tmp_path / "eval"
    result = evaluate_run(prep_dir, run_dir, out, limit=12, generate_fn=oracle, progress=False)
    assert set(result) == {
        "model",
        "baselines",
        "references",
        "uncertainty",
        "recommendation",
        "info",
        "examples",
    }
    assert set(result["baselines"]) == {"random", "retrieval", "evidence", "template"}
    for scores in (result["model"], *result["baselines"].values()):
        assert set(METRICS + GROUNDING_METRICS) <= set(scores) and scores["n"] == 12
    # the references' row: the model's answers are the references, so the same shares
    assert result["references"] == {m: result["model"][m] for m in GROUNDING_METRICS} | {"n": 12}
    assert result["info"]["grounding"]["copy_words"] == 8
    # random and retrieval return training sentences: copies whenever 8 words or longer
    long = [len(words(a)) >= 8 for a in result_answers(out, "random")]
    assert result["baselines"]["random"]["copy_rate"] == pytest.approx(np.mean(long))
    m = result["model"]
    assert m["bleu1"] == m["bleu4"] == m["rougeL_f"] == pytest.approx(100.0)
    assert m["fmr"] == 1.0 and m["perplexity"] > 1.0
    assert result["baselines"]["template"]["usr"] <= 1.0
    assert set(result["recommendation"]) == {"popularity", "itemcf", "content", "hybrid"}
    for r in result["recommendation"].values():
        assert 0.0 <= r["ndcg@10"] <= r["hr@10"] <= 1.0 and r["n_users"] == len(prepared.test)
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["model"]["bleu1"] == pytest.approx(100.0)
    cfg = load_run(run_dir).model.config  # the model that wrote the reasons, named
    assert saved["info"]["model_size"] == {
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_embd": cfg.n_embd,
    }
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and all(r["model"] == r["reference"] for r in rows)
    assert all(r["template"].startswith("great ") for r in rows)
    md = (out / "evaluation.md").read_text()
    assert "| model | 100.00 |" in md and "| hybrid |" in md
    grounding = md.split("### Grounding in the item's training reviews", 1)[1]
    shown = " | ".join(format_metric(m, result["references"][m]) for m in GROUNDING_METRICS)
    assert f"| reference | {shown} |" in grounding and f"| model | {shown} |" in grounding
    # 12 records, all shown (N_EXAMPLES is 20), each beside its reference
    assert len(result["examples"]) == 12 and "## 12 random records (seed 0), unedited" in md
    assert all(e["model"] == e["reference"] for e in result["examples"])
    assert md.count("- reference: ") == 12 and "ORACLE" not in md
    # the perfect generator: every resample scores 100, and it is ahead of every baseline
    u = result["uncertainty"]
    assert u["intervals"]["model"]["bleu4"] == pytest.approx([100.0, 100.0])
    assert u["intervals"]["model"]["fmr"] == [1.0, 1.0]
    assert set(u["model_ahead"]) == {"random", "retrieval", "evidence", "template"}
    assert all(u["model_ahead"][b]["rougeL_f"] == 1.0 for b in u["model_ahead"])
    assert "### How sure (95% bootstrap intervals: 1,000 resamples of the 12 records" in md
    assert "| model | 100.00-100.00 |" in md and saved["uncertainty"] == u
    evidence = result["baselines"]["evidence"]
    assert evidence["n"] == 12 and result["info"]["evidence_missing"] <= 12
    assert (out / "evaluation.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "evaluation.html").read_text(encoding="utf-8")
    data = json.loads(page.split('id="data">', 1)[1].split("</script>", 1)[0])
    model = [r["answers"]["model"] for r in data["records"]]  # the oracle: each its reference
    assert [a["rougeL_f"] for a in model] == pytest.approx([100.0] * 12)
    assert all(a["names_feature"] for a in model)


@pytest.mark.slow
def test_cli_evaluate(run, tmp_path, capsys):
    prep_dir, run_dir = run
    out = tmp_path / "cli_eval"
    argv = [
        "evaluate",
        "--prepared",
        str(prep_dir),
        "--run",
        str(run_dir),
        "--out",
        str(out),
        "--limit",
        "5",
        "--max-new-tokens",
        "4",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| model |" in printed and "| retrieval |" in printed and "HR@10" in printed
    info = json.loads((out / "evaluation.json").read_text())["info"]
    assert info["n_records"] == 5 and info["decode"] == "step4"
    assert info["decoding"] == {**vars(Decoding()), "max_new_tokens": 4}  # the run's, overridden
    assert main([*argv, "--decode", "greedy"]) == 0
    assert json.loads((out / "evaluation.json").read_text())["info"]["decode"] == "greedy"
    assert main([*argv, "--decode", "greedy", "--split", "valid"]) == 0
    assert "records of the valid split" in capsys.readouterr().out
    assert json.loads((out / "evaluation.json").read_text())["info"]["split"] == "valid"
    refs = [json.loads(line)["reference"] for line in (out / "generations.jsonl").open()]
    valid = load_prepared(prep_dir)
    assert refs == [valid.valid[int(r)]["target"] for r in valid.finetune["valid"].record[:5]]
    capsys.readouterr()
    assert main(["evaluate", "--prepared", str(prep_dir), "--run", str(tmp_path)]) == 1
    assert "no run.json, so this is not a run of this minireason" in capsys.readouterr().err
    assert main(argv[:-4] + ["--limit", "1"]) == 2
    assert "argument --limit: must be >= 2, got 1" in capsys.readouterr().err


def test_examples_are_seeded_and_complete():
    from minireason.evaluation.evaluate import examples
    from minireason.evaluation.render import examples_markdown

    records = [
        {
            "user": f"u{i}",
            "item": f"i{i}",
            "feature": "tone",
            "target": f"ref {i}",
            "focus": [],
            "evidence": [f"Quoted sentence {i}."] if i % 2 else [],
        }
        for i in range(50)
    ]
    answers = {name: [f"{name} {i}" for i in range(50)] for name in SYSTEMS}
    first = examples(records, answers, 20, seed=0)
    assert first == examples(records, answers, 20, seed=0)
    assert first != examples(records, answers, 20, seed=1)
    picked = [e["record"] for e in first]
    assert len(set(picked)) == 20 and picked == sorted(picked)
    for e in first:
        assert e["reference"] == f"ref {e['record']}"
        assert all(e[name] == f"{name} {e['record']}" for name in SYSTEMS)
        assert e["prompt_evidence"] == records[e["record"]]["evidence"]
    assert len(examples(records[:5], {k: v[:5] for k, v in answers.items()}, 20, 0)) == 5
    md = "\n".join(examples_markdown(first, {"random_seed": 0}))
    for e in first:  # each system's whole answer, the evidence baseline's too
        assert f"- evidence: evidence {e['record']}" in md
        assert f"- **model**: model {e['record']}\n" in md
    assert md.count("(no evidence: retrieval's answer)") == sum(
        not e["prompt_evidence"] for e in first
    )


@pytest.mark.slow
def test_the_oracle_protocol_gives_the_feature_and_says_so(run, tmp_path):
    from minireason.evaluation.evaluate import ORACLE_LABEL, oracle_records

    prep_dir, run_dir = run
    prepared = load_prepared(prep_dir)
    records = [prepared.test[int(r)] for r in prepared.finetune["test"].record[:6]]
    oracle, prompts = oracle_records(prepared, records)
    tok = prepared.tokenizer
    for rec, orc, ids in zip(records, oracle, prompts):
        assert orc["focus"] == [rec["feature"]] and orc["focus_from"] == "oracle"
        assert orc["evidence"] == prepared.evidence_for(rec["item"], [rec["feature"]], rec["user"])
        assert f"<sep> {rec['feature']}" in tok.decode(ids)
        assert rec["focus_from"] == "predicted"  # the prepared records are left alone
    out = tmp_path / "oracle"
    result = evaluate_run(
        prep_dir, run_dir, out, limit=6, progress=False, decode="greedy", focus_from="target"
    )
    assert result["info"]["focus_from"] == "target" and result["info"]["protocol"] == ORACLE_LABEL
    md = (out / "evaluation.md").read_text()
    assert ORACLE_LABEL in md and "| model (oracle: test feature) |" in md
    assert "random records (seed 0), unedited (ORACLE feature)" in md
    assert "tokens, after the prompts as prepared, not the oracle ones)." in md
    page = (out / "evaluation.html").read_text(encoding="utf-8")
    assert "model (oracle: test feature)" in page
    honest = evaluate_run(
        prep_dir, run_dir, tmp_path / "honest", limit=6, progress=False, decode="greedy"
    )
    honest_md = (tmp_path / "honest" / "evaluation.md").read_text()
    assert honest["info"]["focus_from"] == "predicted" and "ORACLE" not in honest_md
    assert "not the oracle ones" not in honest_md
    with pytest.raises(ValueError, match="focus_from must be one of"):
        evaluate_run(prep_dir, run_dir, tmp_path / "x", limit=6, focus_from="gold")
