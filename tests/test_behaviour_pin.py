"""A pin on behaviour: the same prepared directory and run give the same reasons and the
same evaluation, bit for bit, whatever the code around them is reorganised into.

The micro run of ``conftest`` (600 real reviews, a model trained for a few steps) explains
three users, a free-form input, and is evaluated on 12 records of each split; its prepared
directory (records, tables, tokenizer, arrays) is pinned too. Each output is
reduced to a canonical JSON text (floats to 7 significant digits, so that a BLAS of another
vendor, which differs in the last bits of a perplexity, gives the same text; timings and
temporary paths left out) and its SHA-256 is compared with ``fixtures/behaviour_pin.json``.
Only hashes are stored: no text of the data is committed.

When a change is *meant* to change what is chosen or measured, record the pin again and say
why in the commit::

    MINIREASON_RECORD_PIN=1 python -m pytest tests/test_behaviour_pin.py
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from minireason.cli import main

PIN = Path(__file__).with_name("fixtures") / "behaviour_pin.json"
RECORD = os.environ.get("MINIREASON_RECORD_PIN") == "1"
VOLATILE = {
    "seconds_generate",
    "seconds_grounding",
    "seconds_total",
    "prepared",
    "run",
}  # timings, tmp paths
ADDED = {  # evaluation info keys added after the pin was recorded
    "weights",
    "weights_from",
    "model_size",
    "run_content",
    "prepared_content",
    "batch_size",
}


def canonical(obj):
    """``obj`` with floats as 7-significant-digit strings and volatile keys dropped."""
    if isinstance(obj, float):
        return format(obj, ".7g")
    if isinstance(obj, dict):
        return {k: canonical(v) for k, v in obj.items() if k not in VOLATILE | ADDED}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


def digest(obj) -> str:
    text = json.dumps(canonical(obj), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prepared_view(prep: Path) -> dict:
    """What ``prepare`` wrote that a model learns from or a later stage reads, as digests:
    the records (without ``source``, the temporary path of the sample), the JSON tables, the
    tokenizer and every array of the ``.npz`` files."""
    import numpy as np

    view = {}
    for path in sorted(prep.iterdir()):
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
            view[path.name] = digest([{k: v for k, v in r.items() if k != "source"} for r in rows])
        elif path.name in ("features.json", "items.json", "users.json", "tokenizer.json"):
            view[path.name] = digest(json.loads(path.read_text(encoding="utf-8")))
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                view[path.name] = {
                    k: [str(a.dtype), a.shape, hashlib.sha256(a.tobytes()).hexdigest()]
                    for k, a in ((k, arrays[k]) for k in sorted(arrays.files))
                }
    return view


def explanation_view(expl) -> dict:
    return {
        "reason": expl.reason,
        "candidates": [[c.text, c.finish, c.score.total] for c in expl.candidates],
        "prompt_ids": list(expl.prompt_ids),
        "grounding": list(expl.grounding),
    }


@pytest.fixture(scope="module")
def outputs(micro_run, tmp_path_factory) -> dict:
    """Every pinned output of the micro run, as canonical-JSON digests."""
    from minireason.prep.prepared import load_prepared
    from minireason.reason.explain import explain_for_user, explain_free_form
    from minireason.train.run import load_run

    prep, run_dir = micro_run
    prepared, run = load_prepared(prep), load_run(run_dir)
    users = sorted({r["user"] for r in prepared.test})[:3]
    found = {"prepared": digest(prepared_view(prep))}
    for n, user in enumerate(users, 1):
        recs = explain_for_user(run, prepared, user, k=2, seed=5)
        found[f"explain user {n}"] = digest(
            [[r.item, r.score, explanation_view(r.explanation)] for r in recs]
        )
    free = explain_free_form(run, "strings, tuner (4); pedal, patch cables", "capo, guitar", 3)
    found["explain free-form"] = digest(explanation_view(free))
    for split in ("valid", "test"):
        out = tmp_path_factory.mktemp(f"pin-{split}") / "eval"
        argv = ["evaluate", "--prepared", str(prep), "--run", str(run_dir), "--out", str(out)]
        assert main([*argv, "--limit", "12", "--split", split]) == 0
        result = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
        rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
        found[f"evaluation.json {split}"] = digest(result)
        found[f"generations.jsonl {split}"] = digest(rows)
    return found


def test_the_same_run_gives_the_same_reasons_and_evaluation(outputs):
    if RECORD:
        PIN.write_text(json.dumps(outputs, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        pytest.skip(f"recorded {len(outputs)} digests in {PIN}")
    pinned = json.loads(PIN.read_text(encoding="utf-8"))
    assert set(outputs) == set(pinned), "the pinned outputs changed; record the pin again"
    changed = sorted(name for name in pinned if outputs[name] != pinned[name])
    assert not changed, f"these outputs are no longer what they were: {changed}"
