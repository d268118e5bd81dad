"""Chinese review text through the whole pipeline: words cut by jieba, aspects mined in
Chinese, prompts and the template baseline in Chinese, every metric on Chinese words; and
English text never reaching jieba.

The data is a file of Chinese movie comments the tests write themselves
(``tests/chinese_reviews.py``), prepared in the generic JSONL (and CSV) format and trained
with the micro preset of ``conftest``.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from chinese_reviews import write_reviews
from conftest import Opened

from minireason import text
from minireason.cli import main
from minireason.evaluation.metrics import explanation_metrics
from minireason.prep.features import mine_aspects, split_sentences
from minireason.prep.prepared import load_prepared
from minireason.reason.explain import parse_history, parse_tags

pytest.importorskip("jieba", reason="Chinese text needs the [zh] extra (jieba)")

COLUMNS = "user=user,item=item,rating=rating,time=time,text=text"


@pytest.fixture(scope="module")
def zh_prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("zh")
    reviews = write_reviews(root / "comments.jsonl")
    out = root / "prep"
    argv = ["prepare", "--reviews", str(reviews), "--out", str(out), "--format", "jsonl"]
    assert main([*argv, "--columns", COLUMNS]) == 0
    return out


@pytest.fixture(scope="module")
def zh_run(zh_prepared, micro_preset_file):
    run = zh_prepared.parent / "run"
    argv = ["train", "--prepared", str(zh_prepared), "--preset", str(micro_preset_file)]
    assert main([*argv, "--out", str(run)]) == 0
    return zh_prepared, run


def test_han_runs_are_cut_into_words_and_english_is_cut_as_before():
    assert text.tokens("这部电影的剧情很精彩，演员也很好！") == [
        "这部",
        "电影",
        "的",
        "剧情",
        "很",
        "精彩",
        "，",
        "演员",
        "也",
        "很",
        "好",
        "！",
    ]
    assert text.tokens("3个iPhone手机") == ["3", "个", "iphone", "手机"]
    assert text.words("剧情很精彩，演员也很好！") == [
        "剧情",
        "很",
        "精彩",
        "演员",
        "也",
        "很",
        "好",
    ]
    assert text.tokens("The neck's fine, don't buy!") == [
        *["the", "neck", "'s", "fine", ",", "do", "n't", "buy", "!"]
    ]


def test_english_text_never_imports_jieba():
    code = (
        "import sys; from minireason import text; "
        "from minireason.prep.features import mine_aspects; "
        "text.tokens('Great tone, well-made; the neck is fine.'); "
        "mine_aspects(['great strings', 'new strings'] * 3, min_df=1); "
        "print('jieba' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_language_of_a_dataset_is_the_share_of_han_letters():
    assert text.language_of(["Great strings.", "The tuner works well."]) == "en"
    assert text.language_of(["剧情很精彩。", "演员也很好。", "Great."]) == "zh"
    assert text.language_of(["I watched 你好 once with my friends at home."]) == "en"
    assert text.language_of([]) == "en"


def test_chinese_sentences_end_at_chinese_stops():
    assert split_sentences("剧情很精彩！演员很好。画面呢？Great tone. Yes") == [
        "剧情很精彩！",
        "演员很好。",
        "画面呢？",
        "Great tone.",
        "Yes",
    ]


def test_aspects_of_chinese_reviews_are_chinese_nouns_not_evaluations():
    texts = ["剧情很精彩，演员很出色。", "画面非常漂亮，剧情紧凑。", "演员很一般，画面不错。"] * 3
    vocab = mine_aspects(texts, min_df=2)
    assert set(vocab.aspects) == {"剧情", "演员", "画面"}
    assert vocab.find("这部电影的画面和剧情都很好") == ["剧情", "画面"]


def test_metrics_are_computed_on_chinese_words():
    hyps = ["剧情很精彩，演员很出色。", "画面很一般。"]
    refs = ["剧情很精彩，演员很出色。", "音乐很好听。"]
    m = explanation_metrics(hyps, refs, ["剧情", "音乐"], ["剧情", "演员", "画面", "音乐"])
    assert m["fmr"] == 0.5  # the first names its feature, the second does not
    assert m["fcr"] == 0.75  # 剧情, 演员, 画面 of four
    assert 0 < m["bleu1"] < 100 and m["usr"] == 1.0


def test_free_form_input_takes_chinese_separators():
    history = parse_history("剧情，演员（4）；画面、音乐")
    assert [(h.tags, h.rating) for h in history] == [
        (["剧情", "演员"], 4.0),
        (["画面", "音乐"], 5.0),
    ]
    assert parse_tags("音乐、配乐，特效") == ["音乐", "配乐", "特效"]


def test_prepare_detects_chinese_and_mines_chinese_aspects(zh_prepared, capsys):
    prepared = load_prepared(zh_prepared)
    assert prepared.lang == "zh"
    assert json.loads((zh_prepared / "config.json").read_text())["lang"] == "zh"
    assert {"剧情", "演员", "画面"} <= set(prepared.features[:15])
    record = next(r for r in prepared.test if r["evidence"])
    shown = record["prompt"]["text"]
    assert shown.endswith("你可能喜欢它的理由：") and "另一位用户写道" in shown
    assert all(text.has_han(e) for e in record["evidence"])
    assert prepared.report["targets"]["test"]["with_target"] >= 40


def test_lang_en_keeps_chinese_words_and_writes_english_prompt_text(tmp_path):
    reviews = write_reviews(tmp_path / "c.jsonl", n_users=12, per_user=12)
    out = tmp_path / "prep"
    argv = ["prepare", "--reviews", str(reviews), "--out", str(out), "--format", "jsonl"]
    assert main([*argv, "--columns", COLUMNS, "--lang", "en", "--min-df", "2"]) == 0
    prepared = load_prepared(out)
    assert prepared.lang == "en" and "剧情" in prepared.features
    assert prepared.test[0]["prompt"]["text"].endswith("Why you may like it:")


def test_the_same_comments_as_csv_prepare_the_same_way(zh_prepared, tmp_path):
    rows = [json.loads(line) for line in (zh_prepared.parent / "comments.jsonl").open()]
    path = tmp_path / "comments.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "prep"
    argv = ["prepare", "--reviews", str(path), "--out", str(out), "--format", "csv"]
    assert main([*argv, "--columns", COLUMNS]) == 0
    assert load_prepared(out).features == load_prepared(zh_prepared).features


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gbk"])
def test_a_csv_saved_with_a_bom_reads_and_a_gbk_one_says_what_to_do(
    zh_prepared, tmp_path, encoding, capsys
):
    rows = [json.loads(line) for line in (zh_prepared.parent / "comments.jsonl").open()]
    path = tmp_path / "comments.csv"
    with path.open("w", newline="", encoding=encoding) as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[:200])
    argv = ["prepare", "--reviews", str(path), "--out", str(tmp_path / "p"), "--format", "csv"]
    code = main([*argv, "--columns", COLUMNS, "--min-df", "2"])
    err = capsys.readouterr().err
    if encoding == "gbk":
        assert code == 1 and "iconv -f gbk -t utf-8" in err and "Traceback" not in err
    else:
        assert code == 0 and load_prepared(tmp_path / "p").lang == "zh"


def test_explain_prints_chinese_evidence_and_a_page(zh_run, tmp_path, capsys):
    prepared_dir, run_dir = zh_run
    user = load_prepared(prepared_dir).test[0]["user"]
    page = tmp_path / "page.html"
    argv = ["explain", "--run", str(run_dir), "--prepared", str(prepared_dir), "--user", user]
    assert main([*argv, "-k", "1", "--candidates", "2", "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "reason:" in out and "Traceback" not in out
    grounded = next(line for line in out.splitlines() if "grounded:" in line)
    assert text.has_han(grounded)
    html = page.read_text(encoding="utf-8")
    assert "Noto Sans CJK SC" in html and text.has_han(html)

    argv = [
        "explain",
        "--run",
        str(run_dir),
        "--history",
        "剧情，演员（4）",
        "--tags",
        "音乐、配乐",
    ]
    assert main([*argv, "--candidates", "2"]) == 0
    out = capsys.readouterr().out
    assert "reason:" in out and "past item 1" in out and "past item 2" not in out
    assert "focus:     音乐, 配乐" in out  # the Chinese tags are the run's aspects


def test_the_chinese_page_loads_clean_and_shows_its_chinese_text(zh_run, tmp_path, browser):
    prepared_dir, run_dir = zh_run
    prepared = load_prepared(prepared_dir)
    record = next(r for r in prepared.test if r["evidence"])
    page = tmp_path / "page.html"
    argv = ["explain", "--run", str(run_dir), "--prepared", str(prepared_dir)]
    argv += ["--user", record["user"], "--item", record["item"], "--html", str(page)]
    assert main([*argv, "--candidates", "2"]) == 0
    view = Opened(browser, page)
    shown = view.page.inner_text("#app")
    assert record["evidence"][0] in shown  # the Chinese evidence sentence, as text
    assert any(tag in shown for tag in record["item_tags"])
    view.clean()
    view.page.close()


def test_evaluate_reports_every_metric_with_chinese_baselines(zh_run, tmp_path):
    prepared_dir, run_dir = zh_run
    out = tmp_path / "ev"
    argv = ["evaluate", "--prepared", str(prepared_dir), "--run", str(run_dir)]
    assert main([*argv, "--out", str(out), "--candidates", "2", "--limit", "12"]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    for name in ("bleu1", "bleu4", "rougeL_f", "usr", "fmr", "fcr", "div", "degenerate"):
        assert name in report["model"]
        assert all(name in scores for scores in report["baselines"].values())
    rows = [json.loads(line) for line in (out / "generations.jsonl").open()]
    assert all(row["template"].endswith("都很好。") for row in rows)
    assert report["baselines"]["evidence"]["fmr"] > 0  # Chinese features found in Chinese text


def test_chinese_text_without_jieba_is_one_clear_error(tmp_path, monkeypatch, capsys):
    reviews = write_reviews(tmp_path / "c.jsonl", n_users=6, per_user=6)
    monkeypatch.setitem(sys.modules, "jieba", None)  # as if the [zh] extra were missing
    text._jieba.cache_clear()
    text.han_words.cache_clear()
    try:
        argv = ["prepare", "--reviews", str(reviews), "--out", str(tmp_path / "p")]
        assert main([*argv, "--format", "jsonl", "--columns", COLUMNS]) == 1
    finally:
        text._jieba.cache_clear()
        text.han_words.cache_clear()
    err = capsys.readouterr().err
    assert "pip install 'minireason[zh]'" in err and "Traceback" not in err
    assert not (tmp_path / "p").exists()
