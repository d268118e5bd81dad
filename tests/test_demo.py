"""``minireason demo``: finds the data, runs every stage, prints reasons and the table."""

from __future__ import annotations

import json

import pytest

from minireason.data import fetch
from minireason.data.fetch import find_reviews
from minireason.demo import run_demo


def test_find_reviews_search_order_and_message(mi_slice, tmp_path, monkeypatch):
    monkeypatch.delenv("MINIREASON_DATA_DIR", raising=False)
    monkeypatch.setenv("MINIREASON_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # no ../shared/data from here
    monkeypatch.setattr(fetch, "CHECKOUT_DATA", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="minireason data fetch musical-instruments"):
        find_reviews("musical-instruments")
    monkeypatch.setenv("MINIREASON_DATA_DIR", str(mi_slice))
    assert find_reviews("musical-instruments").is_relative_to(mi_slice)
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "reviews_Musical_Instruments_5.json.gz").write_bytes(b"")
    assert (
        find_reviews("musical-instruments", data_dir=flat)
        == flat / "reviews_Musical_Instruments_5.json.gz"
    )


def test_demo_end_to_end_then_reuse(mi_slice, micro_preset_file, tmp_path):
    lines = []
    out = tmp_path / "demo"
    result = run_demo(
        data_dir=mi_slice,
        out=out,
        preset=str(micro_preset_file),
        n_users=2,
        n_candidates=2,
        progress=False,
        echo=lines.append,
    )
    text = "\n".join(lines)
    assert "[1/4] data:" in text and "skipped by reason" in text
    assert text.count("\nuser ") == 2
    assert text.count("reason:    ") == 2 * 3  # top-3 for each user
    assert "| model |" in text and "| retrieval |" in text and "HR@10" in text
    assert set(result["baselines"]) == {"random", "retrieval", "template"}
    saved = json.loads((out / "eval" / "evaluation.json").read_text())
    assert saved["model"]["usr"] == result["model"]["usr"]
    assert len(list(out.glob("evidence_*.png"))) == 2

    lines.clear()
    run_demo(
        data_dir=mi_slice,
        out=out,
        preset=str(micro_preset_file),
        n_users=1,
        n_candidates=2,
        progress=False,
        echo=lines.append,
    )
    text = "\n".join(lines)
    assert "reusing" in text
    assert text.count("already finished") == 2  # both training stages are skipped
