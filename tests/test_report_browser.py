"""The demo's HTML pages in a real browser (Chromium driven by Playwright for Python).

The pages come from the demo's fast path (the micro preset on the real-data slice, two users,
three candidates each). They must load with no console error and no network request; show
one card per recommendation the CLI printed; shade each prompt token by the attention weight
that Python computes from the model (clicked, hovered or focused reason token; mean or one
layer and head); list every step-4 candidate with the CLI's scores, its text readable in full;
fit 1280 and 1920 px wide windows, nothing reaching out of its card; name the model that wrote
the evaluated reasons and print no null; render hostile review text as text; work from the
keyboard; print; and keep readable contrast. Skips, saying what is missing, without
Playwright or Chromium (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import json
import re
import struct

import numpy as np
import pytest
from conftest import Opened

from minireason.cli import main
from minireason.demo import pick_users, run_demo
from minireason.evaluation.metrics import rouge_l
from minireason.evaluation.render import write_evaluation_page
from minireason.prep.prepared import load_prepared
from minireason.reason.explain import CANDIDATE_HEADERS, explain_for_user, fit_recommender
from minireason.reason.explanations_page import user_section, write_report
from minireason.text import mentions, tokens
from minireason.train.run import load_run

N_USERS, N_CANDIDATES, EVAL_LIMIT = 2, 3, 6
WIDTHS = (1280, 1920)  # the window widths every element must fit
HOSTILE = '</script><img src=x onerror="window.__pwned=1"><i id="pwned">bold</i> & <!-- \u2028'


@pytest.fixture(scope="module")
def demo(mi_slice, micro_preset_file, tmp_path_factory):
    """The demo's fast path: (output directory, everything it printed)."""
    lines: list[str] = []
    out = tmp_path_factory.mktemp("browser") / "demo"
    run_demo(
        data_dir=mi_slice,
        out=out,
        preset=str(micro_preset_file),
        n_users=N_USERS,
        n_candidates=N_CANDIDATES,
        eval_limit=EVAL_LIMIT,
        progress=False,
        echo=lines.append,
    )
    return out, "\n".join(lines)


@pytest.fixture(scope="module")
def again(demo):
    """The demo's explanations made again in Python: {user: [Recommendation]}, and the run."""
    out, _ = demo
    prepared, run = load_prepared(out / "prepared"), load_run(out / "run")
    decoding = run.info.decoding.replace(n_candidates=N_CANDIDATES)
    recommender = fit_recommender(prepared)
    recs = {
        u: explain_for_user(
            run, prepared, u, k=3, seed=0, recommender=recommender, decoding=decoding
        )
        for u in pick_users(prepared, N_USERS)
    }
    return prepared, run, recs


def attention_rows(model, prompt_ids, reason_ids) -> np.ndarray:
    """``(L, H, R, P)``: straight from the model, the attention of each position that
    generated a reason token (P-1 .. end) over the prompt."""
    seq = prompt_ids + reason_ids[:-1]
    model.forward(np.asarray([seq], dtype=np.int64), keep_cache=False)
    w = np.stack([np.asarray(a[0], dtype=np.float64) for a in model.attention_weights()])
    P = len(prompt_ids)
    return w[:, :, P - 1 :, :P]


def alpha(css_colour: str) -> float:
    parts = re.findall(r"[\d.]+", css_colour)
    return float(parts[3]) if len(parts) == 4 else 1.0


def contrast(fg: str, bg: str) -> float:
    """WCAG contrast ratio of two CSS colours, ``bg`` composited over white."""

    def rgb(css):
        v = [float(x) for x in re.findall(r"[\d.]+", css)]
        a = v[3] if len(v) == 4 else 1.0
        return [a * c + (1 - a) * 255 for c in v[:3]]

    def lum(c):
        lin = [
            (x / 255) / 12.92 if x / 255 <= 0.03928 else ((x / 255 + 0.055) / 1.055) ** 2.4
            for x in c
        ]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted([lum(rgb(fg)), lum(rgb(bg))], reverse=True)
    return (hi + 0.05) / (lo + 0.05)


# Everything on the page that does not fit, with every <details> opened: the page wider than
# the window, a card (or any element) wider than its box, an element reaching out of its card
# (or, outside the cards, out of the page's column); each named with its tag, class and how
# far it reaches.
OVERFLOWS = """() => {
  for (const d of document.querySelectorAll("details")) d.open = true;
  const out = [];
  const name = (e) => e.tagName.toLowerCase() + (e.className ? "." + String(e.className).trim().replace(/ +/g, ".") : "");
  const doc = document.documentElement;
  if (doc.scrollWidth > window.innerWidth) out.push(`the page: ${doc.scrollWidth} > ${window.innerWidth}`);
  const app = document.getElementById("app");
  for (const e of [app, ...app.querySelectorAll("*")]) {
    const box = e.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue; // not rendered (a closed <details>)
    if (e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1) out.push(`${name(e)}: scrollWidth ${e.scrollWidth} > clientWidth ${e.clientWidth}`);
    const frame = (e.parentElement.closest(".card") || app).getBoundingClientRect();
    if (e !== app && (box.left < frame.left - 1 || box.right > frame.right + 1)) out.push(`${name(e)}: ${Math.round(box.left)}..${Math.round(box.right)} outside ${Math.round(frame.left)}..${Math.round(frame.right)}`);
  }
  return out;
}"""


def prompt_shading(page, card: str) -> list[tuple[float, float]]:
    """(data-weight, background alpha) of every prompt token of a card, by position."""
    rows = page.eval_on_selector_all(
        f"#{card} .ptok",
        "els => els.map(e => [Number(e.dataset.p), Number(e.dataset.weight),"
        " getComputedStyle(e).backgroundColor])",
    )
    rows.sort()
    assert [p for p, *_ in rows] == list(range(len(rows)))
    return [(w, alpha(bg)) for _, w, bg in rows]


# --------------------------------------------------------------------------- the report


def test_report_loads_clean_with_one_card_per_printed_recommendation(browser, demo):
    out, text = demo
    page_path = out / "report.html"
    assert (
        f"the explanations as a page (token-level attention, every step-4 candidate): {page_path}"
        in text
    )
    size = page_path.stat().st_size
    assert 10_000 < size < 1_000_000, f"report.html is {size} bytes"
    printed, user = [], None
    for line in text.splitlines():
        if m := re.match(r"user (\S+): ", line):
            user = m.group(1)
        elif m := re.match(r" (\d+)\. (\S+) \(", line):
            printed.append([user, m.group(2)])
        elif m := re.match(r'  reason:    "(.*)"$', line):
            printed[-1].append(m.group(1))
    assert len(printed) == N_USERS * 3
    view = Opened(browser, page_path)
    cards = view.page.eval_on_selector_all(
        "article.rec",
        "els => els.map(a => [a.closest('section').dataset.user, a.dataset.item, a.dataset.reason])",
    )
    assert cards == printed
    view.clean()
    view.page.close()


def test_clicking_a_reason_token_shades_the_prompt_by_its_attention(browser, demo, again):
    out, _ = demo
    _, run, recs = again
    expl = next(iter(recs.values()))[0].explanation
    heads = attention_rows(run.model, expl.prompt_ids, expl.candidates[0].token_ids)
    R = heads.shape[2]
    r = min(2, R - 1)
    view = Opened(browser, out / "report.html")
    page = view.page
    assert page.get_attribute("#u0r1", "data-reason") == expl.reason
    page.click(f'#u0r1 .rtok[data-r="{r}"]')
    assert page.get_attribute(f'#u0r1 .rtok[data-r="{r}"]', "aria-pressed") == "true"
    assert page.get_attribute("#u0r1 .status", "data-row") == str(r)

    want = heads.mean(axis=(0, 1))[r]  # mean over layers and heads, as the page's default
    shading = prompt_shading(page, "u0r1")
    got = np.array([w for w, _ in shading])
    assert got.shape == want.shape
    chosen = int(np.argmax(want))
    assert abs(got[chosen] - want[chosen]) < 5e-4  # the chosen token, to 3 decimals
    np.testing.assert_allclose(got, want, atol=1e-4)  # and every other token
    shades = np.array([a for _, a in shading])
    np.testing.assert_allclose(shades, want / want.max(), atol=0.01)  # darkest = largest weight
    assert shades[chosen] == pytest.approx(1.0, abs=0.01)

    # one layer and head: that head's own weights (stored to 3 decimals)
    L, H = heads.shape[:2]
    page.select_option("#u0r1 .pick-layer", str(L - 1))
    page.select_option("#u0r1 .pick-head", str(H - 1))
    got = np.array([w for w, _ in prompt_shading(page, "u0r1")])
    np.testing.assert_allclose(got, heads[L - 1, H - 1, r], atol=5e-4 + 1e-9)
    assert page.get_attribute("#u0r1 .status", "data-row") == str(r)  # still the pinned one

    # hovering another token shows its row; leaving it goes back to the pinned one
    page.select_option("#u0r1 .pick-layer", "-1")
    page.select_option("#u0r1 .pick-head", "-1")
    page.hover('#u0r1 .rtok[data-r="0"]')
    assert page.get_attribute("#u0r1 .status", "data-row") == "0"
    np.testing.assert_allclose(
        [w for w, _ in prompt_shading(page, "u0r1")], heads.mean(axis=(0, 1))[0], atol=1e-4
    )
    page.mouse.move(1, 1)
    assert page.get_attribute("#u0r1 .status", "data-row") == str(r)
    page.click("#u0r1 button.whole")
    assert page.get_attribute("#u0r1 .status", "data-row") == ""
    np.testing.assert_allclose(
        [w for w, _ in prompt_shading(page, "u0r1")], heads.mean(axis=(0, 1, 2)), atol=1e-4
    )
    view.clean()
    page.close()


def test_the_keyboard_does_what_the_mouse_does(browser, demo):
    out, _ = demo
    view = Opened(browser, out / "report.html")
    page = view.page
    page.keyboard.press("Tab")  # the first thing to focus is the first reason token
    focused = (
        "() => [document.activeElement.closest('article').id, document.activeElement.dataset.r]"
    )
    assert page.evaluate(focused) == ["u0r1", "0"]
    assert page.get_attribute("#u0r1 .status", "data-row") == "0"
    page.keyboard.press("ArrowRight")
    assert page.evaluate(focused) == ["u0r1", "1"]
    assert page.get_attribute("#u0r1 .status", "data-row") == "1"
    page.keyboard.press("Enter")  # pins it
    assert page.get_attribute('#u0r1 .rtok[data-r="1"]', "aria-pressed") == "true"
    page.keyboard.press("ArrowRight")  # focus previews the next token...
    assert page.get_attribute("#u0r1 .status", "data-row") == "2"
    page.keyboard.press("Tab")  # ...and leaving the reason shows the pinned one again
    assert page.evaluate("() => document.activeElement.matches('#u0r1 .pick-layer')")
    assert page.get_attribute("#u0r1 .status", "data-row") == "1"

    # the prompt's tokens: one tab stop on, the arrows walk through them, each described
    for _ in range(3):  # layer, head, "whole reason"
        page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.dataset.p") == "0"
    page.keyboard.press("ArrowRight")
    assert page.evaluate("() => document.activeElement.dataset.p") == "1"
    weight = float(page.get_attribute('#u0r1 .ptok[data-p="1"]', "data-weight"))
    described = page.text_content("#u0r1 .pstatus")
    assert page.get_attribute("#u0r1 .pstatus", "data-p") == "1"
    said = float(re.search(r"weight (\d\.\d{3}) in the attention shown", described).group(1))
    assert abs(said - weight) <= 5e-4 + 1e-9
    page.hover('#u0r1 .ptok[data-p="4"]')  # hovering does the same
    assert page.get_attribute("#u0r1 .pstatus", "data-p") == "4"
    view.clean()
    page.close()


def test_candidates_table_has_every_candidate_with_the_clis_scores(browser, demo, capsys):
    out, _ = demo
    user = load_prepared(out / "prepared")
    user = pick_users(user, N_USERS)[0]
    argv = ["explain", "--run", str(out / "run"), "--prepared", str(out / "prepared")]
    assert (
        main(
            [
                *argv,
                "--user",
                user,
                "-k",
                "3",
                "--candidates",
                str(N_CANDIDATES),
                "--show-candidates",
            ]
        )
        == 0
    )
    cli = capsys.readouterr().out
    # the CLI prints the score and the parts that are not 0 (the others are 0 for every
    # candidate); how a candidate stopped ends its line, or starts the line below it
    label_of = {label: key for key, label in CANDIDATE_HEADERS.items()}
    tables, keys = [], []
    for line in cli.splitlines():
        if line.startswith("  step 4:"):
            tables.append([])
        elif line.startswith("       #  "):
            keys = [label_of[h] for h in line.split()[1:] if h in label_of]
        elif m := re.match(r"    [* ] +(\d+)  (.*)$", line):
            cells = m.group(2).split()
            shown = dict(zip(keys, cells))
            finish = cells[len(keys)] if len(cells) > len(keys) else None
            row = [shown.get(key, "+0.000") for key in CANDIDATE_HEADERS]
            tables[-1].append([m.group(1), *row, finish])
        elif tables and tables[-1] and tables[-1][-1][-1] is None and line.strip():
            tables[-1][-1][-1] = line.split()[0]
    assert len(tables) == 3 and all(len(t) == N_CANDIDATES for t in tables)
    reasons = re.findall(r'^  reason:    "(.*)"$', cli, re.M)
    view = Opened(browser, out / "report.html")
    for k, table in enumerate(tables, 1):
        card = f"#u0r{k}"
        assert view.page.get_attribute(card, "data-reason") == reasons[k - 1]
        # each part a column, or named among those that are 0 for every candidate
        zero = view.page.eval_on_selector_all(
            f"{card} .zero-parts", "els => els.flatMap(e => e.dataset.keys.split(' '))"
        )
        groups = view.page.eval_on_selector_all(
            f"{card} table.candidates tbody",
            "tbs => tbs.map(tb => [tb.dataset.rank,"
            " Object.fromEntries([...tb.querySelectorAll('td[data-key]')]"
            ".map(td => [td.dataset.key, td.textContent])),"
            " tb.querySelector('.finish').textContent])",
        )
        rows = [
            [
                rank,
                *(cells.get(key, "+0.000" if key in zero else None) for key in CANDIDATE_HEADERS),
                fin,
            ]
            for rank, cells, fin in groups
        ]
        assert rows == table
        assert not set(zero) & {k for _, cells, _ in groups for k in cells}
        chosen = view.page.eval_on_selector_all(
            f"{card} table.candidates tbody.chosen", "tbs => tbs.map(tb => tb.dataset.rank)"
        )
        assert chosen == ["1"]
    view.clean()
    view.page.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_every_candidate_reads_in_full_and_nothing_overflows(browser, demo, again, width):
    out, _ = demo
    _, _, recs = again
    view = Opened(browser, out / "report.html", width)
    page = view.page
    for k, rec in enumerate(next(iter(recs.values())), 1):
        shown = page.eval_on_selector_all(
            f"#u0r{k} table.candidates .cand", "els => els.map(e => e.textContent)"
        )
        assert shown == [c.text for c in rec.explanation.candidates]
    # each candidate's text: inside its card, not clipped, at least half the card wide
    squeezed = page.eval_on_selector_all(
        "table.candidates .cand",
        """els => els.flatMap(e => {
          const card = e.closest(".card"), box = e.getBoundingClientRect();
          const frame = card.getBoundingClientRect();
          const fits = box.left >= frame.left - 1 && box.right <= frame.right + 1;
          const clipped = e.scrollWidth > e.clientWidth + 1;
          const wide = box.width >= 0.5 * card.clientWidth;
          return fits && !clipped && wide ? [] : [[card.id, e.textContent, Math.round(box.width), card.clientWidth]];
        })""",
    )
    assert squeezed == []
    assert page.evaluate(OVERFLOWS) == []
    view.clean()
    page.close()


def test_hostile_text_renders_as_text(browser, again, tmp_path):
    prepared, run, recs = again
    user, user_recs = next(iter(recs.items()))
    section = user_section(prepared, user, user_recs, run.tokenizer)
    rec = section["recommendations"][0]
    rec["title"] = HOSTILE
    rec["tags"] = [HOSTILE]
    rec["explanation"]["reason"] = HOSTILE
    rec["explanation"]["prompt"]["tokens"][0] = HOSTILE
    rec["explanation"]["candidates"][-1]["text"] = HOSTILE
    section["latest"].append(
        {"item": HOSTILE, "tags": [HOSTILE], "aspects": [HOSTILE], "rating": 5}
    )
    view = Opened(browser, write_report(tmp_path / "hostile.html", [section], {HOSTILE: HOSTILE}))
    page = view.page
    assert page.evaluate("() => window.__pwned") is None
    assert page.evaluate("() => document.querySelectorAll('img, #pwned, #app script').length") == 0
    text = page.inner_text("#app")
    assert text.count("window.__pwned") >= 6  # title, tags, history x3, candidate, about
    assert page.get_attribute("#u0r1", "data-reason") == HOSTILE
    assert page.text_content('#u0r1 .ptok[data-p="0"]') == HOSTILE
    view.clean()
    page.close()


def test_print_shows_the_content_without_the_controls(browser, demo):
    out, _ = demo
    for name in ("report.html", "eval/evaluation.html"):
        view = Opened(browser, out / name)
        page = view.page
        page.emulate_media(media="print")
        assert (
            page.eval_on_selector_all(
                ".controls", "els => els.map(e => getComputedStyle(e).display)"
            )
            == ["none"] * page.locator(".controls").count()
        )
        pdf = page.pdf()
        assert pdf.startswith(b"%PDF") and len(pdf) > 5_000
        view.clean()
        page.close()


def test_readable_contrast(browser, demo):
    out, _ = demo
    view = Opened(browser, out / "report.html")
    page = view.page
    page.click('#u0r1 .rtok[data-r="0"]')
    style = "e => [getComputedStyle(e).color, getComputedStyle(e).backgroundColor]"
    darkest = page.eval_on_selector_all(
        "#u0r1 .ptok",
        f"els => els.filter(e => getComputedStyle(e).backgroundColor.startsWith('rgb(')).map({style})",
    )
    assert darkest, "no prompt token at the darkest shade"
    for fg, bg in darkest:
        assert contrast(fg, bg) >= 4.5, (fg, bg)
    fg, bg = page.eval_on_selector('#u0r1 .rtok[aria-pressed="true"]', style)
    assert contrast(fg, bg) >= 4.5
    for fg, _ in page.eval_on_selector_all(".muted", f"els => els.map({style})"):
        assert contrast(fg, "rgb(255, 255, 255)") >= 4.5
    view.clean()
    page.close()


def test_screenshot_is_written(browser, demo, tmp_path):
    out, _ = demo
    view = Opened(browser, out / "report.html")
    view.page.click('#u0r1 .rtok[data-r="1"]')
    shot = tmp_path / "report.png"
    view.page.screenshot(path=str(shot))
    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", head[16:24]) == (1200, 900)
    view.clean()
    view.page.close()


# --------------------------------------------------------------------------- the evaluation page


def test_evaluation_page_sorts_and_filters_the_generations(browser, demo):
    out, _ = demo
    result = json.loads((out / "eval" / "evaluation.json").read_text())
    rows = [
        json.loads(line) for line in (out / "eval" / "generations.jsonl").read_text().splitlines()
    ]
    n = len(rows)
    assert n == EVAL_LIMIT
    view = Opened(browser, out / "eval" / "evaluation.html")
    page = view.page
    assert page.get_attribute("#count", "data-shown") == str(n)
    assert page.locator("table.generations tbody tr").count() == n

    # the metrics table says what evaluation.md says
    md = (out / "eval" / "evaluation.md").read_text()
    for system in ("model", "random", "retrieval", "template"):
        cells = re.search(rf"^\| {system} \| (.*) \|$", md, re.M).group(1).split(" | ")
        shown = page.eval_on_selector_all(
            f'table.metrics tr[data-system="{system}"] td', "tds => tds.map(t => t.textContent)"
        )
        assert shown == cells
    # each with its bootstrap interval, as evaluation.md's "How sure" table prints it
    sure = md.split("### How sure", 1)[1]
    for system in ("model", "retrieval"):
        cells = re.search(rf"^\| {system} \| (.*) \|$", sure, re.M).group(1).split(" | ")
        shown = [
            page.get_attribute(
                f'table.metrics tr[data-system="{system}"] td[data-metric="{m}"]', "data-interval"
            )
            for m in ("bleu1", "bleu4", "rougeL_f", "fmr")
        ]
        assert shown == cells

    # the grounding table too, with the real sentences' row
    grounding = md.split("### Grounding in the item's training reviews", 1)[1]
    for system in ("model", "retrieval", "evidence", "reference"):
        cells = re.search(rf"^\| {system} \| (.*) \|$", grounding, re.M).group(1).split(" | ")
        shown = page.eval_on_selector_all(
            f'table.grounding tr[data-system="{system}"] td', "tds => tds.map(t => t.textContent)"
        )
        assert shown == cells

    # only the model's answers that name the ground-truth feature: FMR x N of them
    page.select_option("#feature", "names")
    named = [i for i, r in enumerate(rows) if mentions(tokens(r["model"]), [r["feature"]])]
    assert len(named) == round(result["model"]["fmr"] * n)
    assert page.get_attribute("#count", "data-shown") == str(len(named))
    shown = page.eval_on_selector_all(
        "table.generations tbody tr", "trs => trs.map(t => Number(t.dataset.i))"
    )
    assert shown == named
    page.select_option("#feature", "all")

    # the worst by ROUGE-L first, as the metric computes it
    page.select_option("#sort", "rougeL-asc")
    want = [100 * rouge_l(tokens(r["model"]), tokens(r["reference"]))[2] for r in rows]
    assert np.mean(want) == pytest.approx(result["model"]["rougeL_f"])
    got = page.eval_on_selector_all(
        'table.generations tbody td[data-system="model"]',
        "tds => tds.map(t => Number(t.dataset.rougel))",
    )
    np.testing.assert_allclose(got, sorted(want), atol=1e-4)
    order = page.eval_on_selector_all(
        "table.generations tbody tr", "trs => trs.map(t => Number(t.dataset.i))"
    )
    assert order == sorted(range(n), key=lambda i: (want[i], i))

    # by a baseline's ROUGE-L, from its column header
    page.click('th[data-system="retrieval"] button')
    want = [100 * rouge_l(tokens(r["retrieval"]), tokens(r["reference"]))[2] for r in rows]
    got = page.eval_on_selector_all(
        'table.generations tbody td[data-system="retrieval"]',
        "tds => tds.map(t => Number(t.dataset.rougel))",
    )
    np.testing.assert_allclose(got, sorted(want), atol=1e-4)
    assert page.get_attribute('th[data-system="retrieval"]', "aria-sort") == "ascending"

    # cold-start users and longer histories, as the evaluated records have them
    prepared = load_prepared(out / "prepared")
    records = [prepared.split("test")[int(r)] for r in prepared.finetune["test"].record[:n]]
    assert [r["user"] for r in records] == [r["user"] for r in rows]
    for choice, keep in (("0", lambda h: h == 0), ("3+", lambda h: h >= 3)):
        page.select_option("#history", choice)
        want_n = sum(keep(len(r["history"])) for r in records)
        assert page.get_attribute("#count", "data-shown") == str(want_n)
    page.select_option("#history", "all")

    page.fill("#search", rows[0]["user"].lower())
    assert page.get_attribute("#count", "data-shown") == str(
        sum(r["user"] == rows[0]["user"] for r in rows)
    )
    view.clean()
    page.close()


def test_a_hostile_review_on_the_evaluation_page_renders_as_text(browser, demo, tmp_path):
    out, _ = demo
    result = json.loads((out / "eval" / "evaluation.json").read_text())
    rows = [
        json.loads(line) for line in (out / "eval" / "generations.jsonl").read_text().splitlines()
    ]
    answers = {s: [r[s] for r in rows] for s in ["model", *result["baselines"]]}
    answers["retrieval"][1] = HOSTILE
    records = [
        {"user": r["user"], "item": r["item"], "feature": r["feature"], "target": r["reference"]}
        for r in rows
    ]
    records[0]["target"] = HOSTILE
    records[2]["user"] = HOSTILE
    path = write_evaluation_page(result, answers, records, tmp_path / "evaluation.html")
    view = Opened(browser, path)
    page = view.page
    assert page.evaluate("() => window.__pwned") is None
    assert page.evaluate("() => document.querySelectorAll('img, #pwned, #app script').length") == 0
    assert page.text_content('tr[data-i="0"] td.reference') == HOSTILE
    assert page.text_content('tr[data-i="1"] td[data-system="retrieval"] .answer') == HOSTILE
    assert HOSTILE in page.text_content('tr[data-i="2"]')
    view.clean()
    page.close()


def test_evaluation_page_prints_no_null_or_undefined(browser, demo):
    out, _ = demo
    view = Opened(browser, out / "eval" / "evaluation.html")
    missing = view.page.evaluate(
        """() => {
          const walk = document.createTreeWalker(document.getElementById("app"), NodeFilter.SHOW_TEXT);
          const out = [];
          for (let n = walk.nextNode(); n; n = walk.nextNode()) {
            const inRecord = n.parentElement.closest("table.generations tbody");
            if (/^\\s*(null|undefined|NaN)\\s*$/.test(n.data) || (!inRecord && /\\b(null|undefined|NaN)\\b/.test(n.data))) out.push(n.data);
          }
          return out;
        }"""
    )
    assert missing == []  # a value missing from the data, written as text
    view.clean()
    view.page.close()


def test_evaluation_page_names_the_model_that_wrote_the_reasons(browser, demo):
    out, _ = demo
    info = json.loads((out / "eval" / "evaluation.json").read_text())["info"]
    cfg = load_run(out / "run").model.config
    view = Opened(browser, out / "eval" / "evaluation.html")
    page = view.page
    about = dict(
        zip(
            page.eval_on_selector_all("dl.about dt", "els => els.map(e => e.textContent)"),
            page.eval_on_selector_all("dl.about dd", "els => els.map(e => e.textContent)"),
            strict=True,
        )
    )
    assert about["run"] == f"{info['run']} (checkpoint step {info['checkpoint_step']})"
    assert about["model"] == f"{cfg.n_layer} layers x {cfg.n_head} heads, {cfg.n_embd} wide"
    d = info["decoding"]
    assert about["decoding"] == (
        f"step 4: the best-scored of {d['n_candidates']} candidates, temperature "
        f"{d['temperature']:g}, top-p {d['top_p']:g}, at most {d['max_new_tokens']} tokens"
    )
    weights = ", ".join(f"{k} {v:g}" for k, v in info["weights"].items() if v)
    assert about["weights"] == f"{weights} (from {info['weights_from']})"
    view.clean()
    page.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_evaluation_page_fits_the_window(browser, demo, width):
    out, _ = demo
    view = Opened(browser, out / "eval" / "evaluation.html", width)
    assert view.page.evaluate(OVERFLOWS) == []
    view.clean()
    view.page.close()
