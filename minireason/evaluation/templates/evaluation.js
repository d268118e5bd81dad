// The evaluation page (minireason.evaluation.render): metrics, chart, generations browser.

const SHOWN = ["model", "retrieval", "evidence", "template", "random"]; // side by side, in this order
const METRIC_NAMES = {
  bleu1: "BLEU-1", bleu4: "BLEU-4", rouge1_f: "ROUGE-1 F", rouge2_f: "ROUGE-2 F", rougeL_f: "ROUGE-L F",
  usr: "USR", fmr: "FMR", fcr: "FCR", div: "DIV", degenerate: "degenerate",
  item_specificity: "item-specificity", groundedness: "groundedness", copy_rate: "copy rate",
};

function metricsTable(m) {
  const head = el("tr", {}, el("th", {scope: "col"}, "system"),
    m.names.map((n) => el("th", {scope: "col", class: "num"}, METRIC_NAMES[n] || n)));
  const body = el("tbody");
  for (const row of m.rows) {
    body.append(el("tr", {"data-system": row.system}, el("th", {scope: "row"}, row.system),
      m.names.map((n) => {
        const interval = (row.interval || {})[n];
        const attrs = {class: "num", "data-metric": n};
        if (interval) { attrs.title = `95% bootstrap interval ${interval}`; attrs["data-interval"] = interval; }
        return el("td", attrs, row.shown[n]);
      })));
  }
  return el("table", {class: "metrics"},
    el("caption", {}, "Text metrics x100; USR, FMR, FCR and DIV are ratios (DIV: lower is better), as evaluation.md prints them. Hover BLEU-1, BLEU-4, ROUGE-L F or FMR for its 95% bootstrap interval over the records (evaluation.md lists them all)."),
    el("thead", {}, head), body);
}

function metricsChart(m) {
  const grid = el("div", {class: "chart", role: "group", "aria-label": "bar chart of the metrics"});
  for (const n of m.names) {
    const better = m.lower_is_better.includes(n) ? "lower is better" : "higher is better";
    grid.append(el("div", {class: "panel"},
      el("div", {class: "panel-head small"}, `${METRIC_NAMES[n] || n} (${better})`),
      bars(m.rows.map((r) => ({label: r.system, value: r.values[n], shown: r.shown[n]})), METRIC_NAMES[n] || n)));
  }
  return grid;
}

function groundingTable(g) {
  if (!g.rows.length) return null;
  const p = g.params;
  const body = el("tbody", {}, g.rows.map((row) => el("tr", {"data-system": row.system},
    el("th", {scope: "row"}, row.system),
    g.names.map((n) => el("td", {class: "num", "data-metric": n}, row.shown[n])))));
  return el("table", {class: "grounding narrow"},
    el("caption", {}, `Grounding in the item's training reviews: shares of the answers (reference: the real review sentences). Item-specificity: with a word of the item's training reviews that at most ${p.specific_max_items} of the ${p.n_items} items' training reviews use. Groundedness: every aspect and name (a capitalised word not starting its sentence, a word of letters and digits) in it is in the item's training reviews. Copy rate (lower is better): ${p.copy_words} consecutive words of it are in one training sentence.`),
    el("thead", {}, el("tr", {}, el("th", {scope: "col"}, "system"),
      g.names.map((n) => el("th", {scope: "col", class: "num"}, METRIC_NAMES[n])))),
    body);
}

function recommendationTable(rows) {
  if (!rows.length) return null;
  const body = el("tbody", {}, rows.map((r) => el("tr", {}, el("th", {scope: "row"}, r.name),
    el("td", {class: "num"}, r.shown.hr), el("td", {class: "num"}, r.shown.ndcg))));
  return el("table", {class: "recommenders narrow"},
    el("caption", {}, `Recommendation, leave-last-out${rows[0].n_users ? ", " + rows[0].n_users + " users" : ""}.`),
    el("thead", {}, el("tr", {}, el("th", {scope: "col"}, "recommender"), el("th", {scope: "col", class: "num"}, "HR@10"), el("th", {scope: "col", class: "num"}, "NDCG@10"))),
    body);
}

function answerCell(rec, system) {
  const a = rec.answers[system];
  return el("td", {"data-system": system, "data-rougel": a.rougeL_f.toFixed(4), "data-names": a.names_feature ? "1" : "0"},
    el("div", {class: "answer"}, a.text || "(empty)"),
    el("div", {class: "small"},
      el("span", {class: "badge", title: "ROUGE-L F of this answer against the reference (x100)"}, `ROUGE-L ${a.rougeL_f.toFixed(1)}`),
      el("span", {class: "badge", title: "ROUGE-1 F (x100)"}, `R-1 ${a.rouge1_f.toFixed(1)}`),
      el("span", {class: a.names_feature ? "badge yes" : "badge", title: "does it name the ground-truth feature, as FMR counts it?"},
        `${a.names_feature ? "names" : "misses"} "${rec.feature}"`),
      a.copies > 1 ? el("span", {class: "badge warn", title: "the same answer, token for token, given to this many records (what USR counts)"}, `same answer for ${a.copies} records`) : null));
}

function generations(data) {
  const records = data.records;
  const systems = SHOWN.filter((s) => data.systems.includes(s)).concat(data.systems.filter((s) => !SHOWN.includes(s)));
  const knownHistory = records.some((r) => r.n_history !== null);
  const state = {judge: "model", feature: "all", history: "all", repeat: "all", search: "", sort: "order"};

  const options = (pairs) => pairs.map(([value, text]) => el("option", {value}, text));
  const pick = (id, label, pairs, key) => {
    const s = el("select", {id, "aria-label": label}, options(pairs));
    s.addEventListener("change", () => { state[key] = s.value; update(); });
    return [el("label", {for: id}, label), s];
  };
  const search = el("input", {type: "search", id: "search", placeholder: "user, item, feature or words", "aria-label": "search the records"});
  search.addEventListener("input", () => { state.search = search.value.trim().toLowerCase(); update(); });
  const judge = pick("judge", "judge by", systems.map((s) => [s, s]), "judge");
  const sort = pick("sort", "sort", [
    ["order", "record order"], ["rougeL-asc", "ROUGE-L, worst first"], ["rougeL-desc", "ROUGE-L, best first"],
    ["rouge1-asc", "ROUGE-1, worst first"], ["copies-desc", "most repeated answer first"]], "sort");
  const controls = el("div", {class: "controls", role: "group", "aria-label": "filter and sort the generations"},
    ...judge,
    ...pick("feature", "feature", [["all", "any"], ["names", "names the ground-truth feature"], ["misses", "misses it"]], "feature"),
    ...(knownHistory ? pick("history", "history", [["all", "any"], ["0", "cold start (none)"], ["1-2", "1 or 2 past reviews"], ["3+", "3 or more"]], "history") : []),
    ...pick("repeat", "answers", [["all", "any"], ["repeated", "given to 2+ records"], ["unique", "unique"]], "repeat"),
    ...sort,
    el("label", {for: "search"}, "search"), search);
  const summary = el("p", {id: "count", class: "small", "aria-live": "polite"});

  const headButtons = {};
  const head = el("tr", {},
    el("th", {scope: "col", class: "num"}, "#"),
    el("th", {scope: "col"}, "record"),
    el("th", {scope: "col"}, "reference"),
    systems.map((s) => {
      const b = el("button", {type: "button", class: "sorter", title: `sort by ${s}'s ROUGE-L`}, s);
      b.addEventListener("click", () => {
        state.sort = state.judge === s && state.sort === "rougeL-asc" ? "rougeL-desc" : "rougeL-asc";
        state.judge = s;
        document.getElementById("judge").value = s;
        document.getElementById("sort").value = state.sort;
        update();
      });
      const th = el("th", {scope: "col", "data-system": s}, b);
      headButtons[s] = th;
      return th;
    }));
  const rowsEls = records.map((rec) => el("tr", {"data-i": rec.i},
    el("td", {class: "num"}, String(rec.i + 1)),
    el("td", {class: "small"},
      el("div", {class: "mono"}, rec.user), el("div", {class: "mono"}, rec.item),
      el("div", {}, `feature: ${rec.feature}`),
      rec.focus.length ? el("div", {class: "muted"}, `focus: ${rec.focus.join(", ")}`) : null,
      rec.n_history === null ? null : el("div", {class: "muted"}, rec.n_history ? `${rec.n_history} past reviews` : "cold start")),
    el("td", {class: "reference"}, rec.reference),
    systems.map((s) => answerCell(rec, s))));
  const body = el("tbody");
  const table = el("table", {class: "generations"}, el("thead", {}, head), body);
  const haystack = records.map((r) => [r.user, r.item, r.feature, r.reference, ...systems.map((s) => r.answers[s].text)].join("\n").toLowerCase());

  function keep(rec, i) {
    const a = rec.answers[state.judge];
    if (state.feature === "names" && !a.names_feature) return false;
    if (state.feature === "misses" && a.names_feature) return false;
    if (state.repeat === "repeated" && a.copies < 2) return false;
    if (state.repeat === "unique" && a.copies > 1) return false;
    if (state.history !== "all" && rec.n_history !== null) {
      const n = rec.n_history;
      if (state.history === "0" && n !== 0) return false;
      if (state.history === "1-2" && !(n >= 1 && n <= 2)) return false;
      if (state.history === "3+" && n < 3) return false;
    }
    return !state.search || haystack[i].includes(state.search);
  }

  function update() {
    let shown = records.filter(keep);
    const key = {"rougeL-asc": ["rougeL_f", 1], "rougeL-desc": ["rougeL_f", -1], "rouge1-asc": ["rouge1_f", 1], "copies-desc": ["copies", -1]}[state.sort];
    if (key) {
      const [field, sign] = key;
      shown = shown.slice().sort((x, y) => sign * (x.answers[state.judge][field] - y.answers[state.judge][field]) || x.i - y.i);
    }
    body.replaceChildren(...shown.map((r) => rowsEls[r.i]));
    for (const [s, th] of Object.entries(headButtons)) {
      const sorted = key && s === state.judge && key[0] === "rougeL_f";
      if (sorted) th.setAttribute("aria-sort", key[1] > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
      th.classList.toggle("judged", s === state.judge);
    }
    const n = shown.length;
    const named = shown.filter((r) => r.answers[state.judge].names_feature).length;
    const meanL = n ? shown.reduce((t, r) => t + r.answers[state.judge].rougeL_f, 0) / n : 0;
    summary.textContent = `Showing ${n} of ${records.length} records. On these, ${state.judge} names the ground-truth feature in ${named} (${n ? (100 * named / n).toFixed(1) : "0.0"}%), mean ROUGE-L F ${meanL.toFixed(2)}.`;
    summary.dataset.shown = String(n);
  }
  update();
  return [controls, summary, table];
}

function drawEvaluation(data) {
  const app = document.getElementById("app");
  app.textContent = "";
  const info = data.info;
  const ppl = data.metrics.perplexity;
  put(app,
    el("h1", {}, data.title),
    el("p", {}, `Reasons for ${info.n_records} records of the ${info.split} split, by the model and four baselines (random: a training sentence drawn at random; retrieval: the sentence of the most similar training record; evidence: the other user's sentence the prompt shows; template: "great {tag}"), scored against each record's reference sentence.`),
    info.focus_from === "target" ? el("p", {class: "oracle"}, info.protocol + ".") : null,
    aboutList(data.about),
    el("h2", {}, "Metrics"),
    metricsTable(data.metrics),
    ppl === null || ppl === undefined ? null : el("p", {class: "small"}, `Model perplexity on the reasons: ${ppl.toFixed(2)}.`),
    metricsChart(data.metrics),
    groundingTable(data.grounding),
    recommendationTable(data.recommendation),
    el("h2", {}, "Generations"),
    el("p", {class: "lesson"}, "How the metrics mislead (tutorial 08), on these outputs: sort by ROUGE-L to see what the worst and the best scored answers look like; keep only the answers that name the ground-truth feature and read whether they explain anything; look for answers given to many records (a template, or a generic sentence, scores on overlap but says nothing about the user: only USR counts it). Every number on a row is that answer's own: the table's ROUGE F values are their means, and FMR is the share that names the feature."),
    ...generations(data),
  );
  document.body.dataset.ready = "1";
}

drawEvaluation(DATA);
