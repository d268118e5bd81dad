// The explanations page (minireason.reason.explanations_page): one card per recommendation.
// Attention: ex.attention.mean[r][p] / mean_scale is the weight the model put on prompt token p
// while generating reason token r, averaged over layers and heads (the CLI's evidence matrix);
// ex.attention.heads[l][h][r][p] / head_scale is the same for layer l, head h.

const SHADE = "245, 158, 11"; // amber; a prompt token's alpha is its weight / the row's largest
const KIND_NAMES = {tag: "tag", aspect: "aspect the user mentioned", rating: "rating", focus: "focus", evidence: "what another user wrote"};
const COPIED = 0.5; // a reason token counts as copied from this share of its probability (explain.COPIED)
const PLACES = {hist: "history block", item: "item block", tag: "tag", aspect: "aspect", rating: "rating", focus: "focus", evidence: "evidence"};

// "past item B0002D0Q2W" for a history owner's label (free-form labels already say it).
function pastItem(label) {
  return /^past item/.test(label) ? label : "past item " + label;
}

function range(n) {
  return Array.from({length: n}, (_, i) => i);
}

// Weights over the P prompt tokens while generating reason token r (null: every reason token,
// averaged), for one layer and head (-1: averaged over them).
function weightsFor(att, r, layer, head) {
  const rows = r === null ? range(att.mean.length) : [r];
  const P = att.mean[0].length;
  const out = new Float64Array(P);
  if (layer < 0 && head < 0) {
    for (const i of rows) for (let p = 0; p < P; p++) out[p] += att.mean[i][p] / att.mean_scale;
    for (let p = 0; p < P; p++) out[p] /= rows.length;
    return out;
  }
  const layers = layer < 0 ? range(att.n_layers) : [layer];
  const heads = head < 0 ? range(att.n_heads) : [head];
  const n = rows.length * layers.length * heads.length;
  for (const l of layers) for (const h of heads) for (const i of rows) {
    const row = att.heads[l][h][i];
    for (let p = 0; p < P; p++) out[p] += row[p] / att.head_scale;
  }
  for (let p = 0; p < P; p++) out[p] /= n;
  return out;
}

// For each prompt position: its innermost segment (tag, aspect, rating, focus) and its block.
function positions(ex) {
  const P = ex.prompt.tokens.length;
  const where = range(P).map(() => ({block: null, piece: null}));
  for (const s of ex.prompt.segments) {
    for (let p = s.start; p < Math.min(s.end, P); p++) {
      if (s.kind === "hist" || s.kind === "item") where[p].block = s;
      else where[p].piece = s;
    }
  }
  return where;
}

function ownerName(ex, owner) {
  const hit = ex.shares.owners.find((s) => s.owner === owner);
  return hit ? hit.owner_name : owner;
}

function drawPrompt(ex, spans) {
  const box = el("div", {class: "prompt", role: "group", "aria-label": "the prompt, by segment"});
  const segs = ex.prompt.segments;
  const blocks = segs.filter((s) => s.kind === "hist" || s.kind === "item").sort((a, b) => a.start - b.start);
  const pieces = segs.filter((s) => !(s.kind === "hist" || s.kind === "item"));
  const P = ex.prompt.tokens.length;
  const token = (p) => {
    const text = ex.prompt.tokens[p];
    const special = /^<[a-z]+>$/.test(text);
    const span = el("span", {class: "ptok mono" + (special ? " special" : ""), "data-p": p}, text);
    spans[p] = span;
    return span;
  };
  const fill = (line, start, end) => {
    let p = start;
    while (p < end) {
      const piece = pieces.find((s) => s.start === p && s.end <= end && s.end > s.start);
      if (piece) {
        const group = el("span", {class: "piece " + piece.kind, title: `${KIND_NAMES[piece.kind] || piece.kind}: ${piece.label}`});
        for (let q = piece.start; q < piece.end; q++) group.append(token(q));
        line.append(group);
        p = piece.end;
      } else {
        line.append(token(p));
        p += 1;
      }
    }
  };
  let next = 0;
  const addBlock = (cls, head, start, end) => {
    const line = el("div", {class: "toks"});
    fill(line, start, end);
    box.append(el("div", {class: "block " + cls}, el("div", {class: "block-head small"}, head), line));
  };
  for (const b of blocks) {
    if (b.start > next) addBlock("other", "other tokens", next, b.start);
    const share = ex.shares.owners.find((s) => s.owner === b.owner);
    const shown = share ? ` · ${share.shown} of the reason's attention` : "";
    if (b.kind === "item") {
      addBlock("item", `this item${b.label ? " " + b.label : ""}: its tags, focus and evidence${shown}`, b.start, b.end);
    } else {
      const rating = pieces.find((s) => s.kind === "rating" && s.owner === b.owner);
      addBlock("hist", `${pastItem(b.label)}${rating ? ", rated " + rating.label : ""}${shown}`, b.start, b.end);
    }
    next = Math.max(next, b.end);
  }
  if (next < P) addBlock("other", "other tokens", next, P);
  return box;
}

function candidatesTable(ex) {
  const w = ex.weights;
  const hints = {
    total: "the sum of the parts",
    user: `${w.user} x the share of the user's profile aspects it mentions`,
    item: `${w.item} x the share of the item's tags it mentions`,
    focus: `${w.focus} x the share of the focus aspects it mentions`,
    phrasing: `${w.phrasing} x the share of its 3-token phrases the user has written before`,
    specific: `${w.specific} if it says a word particular to this item (its training reviews use it, few other items' do)`,
    logprob: `${w.logprob} x the mean log-probability of its tokens`,
    lowest: `${w.lowest} x the log-probability of its least likely token`,
    length: `${w.length} x its number of tokens`,
    consensus: `${w.consensus} x its mean word overlap with the other candidates`,
    repetition: `-${w.repetition} x its share of repeated word bigrams`,
    echo: `-${w.echo} x the uses of a content word beyond its first`,
    unknown: `-${w.unknown} x its words the training reviews never used twice`,
    degenerate: `-${w.degenerate} if it repeats a word 3-gram, doubles a word or has under 4 words`,
    unfinished: `-${w.unfinished} if it stopped without ending a sentence`,
    contradicts: `-${w.contradicts} if its sentiment goes against the rating expected`,
    duplicate: `-${w.duplicate} if it repeats an earlier candidate`,
    truncated: `-${w.truncated} if it was cut off before <eos>`,
    empty: `-${w.empty} if it has no word`,
  };
  const raw = {
    user: (t) => `coverage ${t.user_coverage.toFixed(3)}`,
    item: (t) => `coverage ${t.item_coverage.toFixed(3)}`,
    focus: (t) => `coverage ${t.focus_coverage.toFixed(3)}`,
    phrasing: (t) => `in the user's own words ${t.phrasing.toFixed(3)}`,
    specific: (t) => (t.specific_words.length ? `particular to this item: ${t.specific_words.join(", ")}` : "no word particular to this item"),
    logprob: (t) => `mean log-probability ${t.mean_logprob.toFixed(3)}`,
    lowest: (t) => `lowest log-probability ${t.lowest_logprob.toFixed(3)}`,
    length: (t) => `${t.length} tokens`,
    consensus: (t) => `overlap ${t.consensus.toFixed(3)}`,
    repetition: (t) => `repetition ${t.repetition.toFixed(3)}`,
    echo: (t) => (t.echoes === 1 ? "a content word said again once" : `content words said again ${t.echoes} times`),
    unknown: (t) => (t.unknown_words.length ? `unknown: ${t.unknown_words.join(", ")}` : "every word known"),
    degenerate: (t) => (t.degenerate.length ? t.degenerate.join("; ") : "not degenerate"),
    unfinished: (t) => (t.unfinished ? "no sentence end" : "ends a sentence (or cut off)"),
    contradicts: (t) => (t.contradicts ? "against the rating" : "agrees with the rating"),
    duplicate: (t) => (t.duplicate ? "a duplicate" : "not a duplicate"),
    truncated: (t) => (t.truncated ? "cut off" : "ended with <eos>"),
    empty: (t) => (t.empty ? "no word" : "has words"),
  };
  // The score and each part that is not 0 for some candidate are columns; the parts that
  // are 0 for every candidate are named in one line instead, so the table fits its card.
  const parts = Object.keys(ex.candidate_headers).filter((k) => k !== "total");
  const shown = parts.filter((k) => ex.candidates.some((row) => row.parts[k] !== 0));
  const zero = parts.filter((k) => !shown.includes(k));
  const keys = ["total", ...shown];
  const nameOf = (k) => ex.candidate_headers[k] + (w[k] === 0 ? " (weight 0)" : "");
  const head = el("tr", {},
    el("th", {scope: "col", class: "num"}, "#"),
    keys.map((k) => el("th", {scope: "col", class: "num", title: hints[k]}, ex.candidate_headers[k])),
    el("td", {class: "rest"}));
  // One <tbody> per candidate: its numbers (kept together on the left; an empty last column
  // takes the rest of the width), then its text on a line of its own.
  const groups = ex.candidates.map((row) => el("tbody", {class: row.chosen ? "cand-group chosen" : "cand-group", "data-rank": row.rank},
    el("tr", {class: "parts"},
      el("td", {class: "num"}, String(row.rank)),
      keys.map((k) => el("td", {class: k !== "total" && Number(row.shown[k]) === 0 ? "num zero" : "num", "data-key": k, title: k === "total" ? hints.total : raw[k](row.terms)}, row.shown[k])),
      el("td", {class: "rest"})),
    el("tr", {class: "text"},
      el("td", {colspan: keys.length + 2},
        el("div", {class: "cand-line"},
          row.chosen ? el("span", {class: "badge yes"}, "kept") : null,
          el("div", {class: "cand"}, row.text),
          el("div", {class: "meta small muted"},
            "finish: ", el("span", {class: "finish"}, row.finish),
            "; mentions: ", el("span", {class: "mentions"}, row.mentions.join(", ") || "-")))))));
  return el("table", {class: "candidates small"},
    el("caption", {},
      `Step 4: ${ex.candidates.length} candidates sampled and scored, best first, each with its text below its numbers. The score is the sum of the parts (hover a header for its formula, a number for its raw term).`,
      zero.length ? el("span", {class: "zero-parts", "data-keys": zero.join(" ")}, ` 0 for every candidate, so not shown: ${zero.map(nameOf).join(", ")}.`) : null),
    el("thead", {}, head), groups);
}

function drawCard(rec, id) {
  const ex = rec.explanation;
  const att = ex.attention;
  const state = {pinned: null, layer: -1, head: -1, prompt: null, weights: null};
  const spans = [];
  const where = positions(ex);
  const status = el("p", {class: "status small", "aria-live": "polite"});
  const buttons = [];

  const show = (r) => {
    const w = weightsFor(att, r, state.layer, state.head);
    let top = 0;
    for (const v of w) top = Math.max(top, v);
    spans.forEach((span, p) => {
      const alpha = top > 0 ? w[p] / top : 0;
      span.style.backgroundColor = `rgba(${SHADE}, ${alpha.toFixed(3)})`;
      span.dataset.weight = w[p].toFixed(4);
      span.title = `${ex.prompt.tokens[p]}: ${w[p].toFixed(3)}`;
    });
    buttons.forEach((b, i) => b.classList.toggle("current", i === r));
    const which = state.layer < 0 && state.head < 0
      ? "mean over layers and heads"
      : `${state.layer < 0 ? "every layer" : "layer " + (state.layer + 1)}, ${state.head < 0 ? "every head" : "head " + (state.head + 1)}`;
    const strongest = range(w.length).sort((a, b) => w[b] - w[a]).slice(0, 5).map((p) =>
      `${ex.prompt.tokens[p]} ${w[p].toFixed(3)} (${placeOf(p)})`);
    const what = r === null
      ? "Attention of the whole reason (mean over its tokens)"
      : `Attention while writing "${ex.reason_tokens[r].text}" (reason token ${r + 1} of ${ex.reason_tokens.length})`;
    const copy = r !== null && ex.reason_tokens[r].copied >= COPIED
      ? ` Copied (${Math.round(100 * ex.reason_tokens[r].copied)}% of its probability) from ${copiedFrom(ex.reason_tokens[r])}.` : "";
    spans.forEach((span, p) => span.classList.toggle("source", r !== null && ex.reason_tokens[r].from === p));
    status.textContent = `${what}, ${which}.${copy} Strongest prompt tokens: ${strongest.join("; ")}. Darkest shade = ${top.toFixed(3)} (attention spread evenly would give each of the ${w.length} prompt tokens ${(1 / w.length).toFixed(3)}).`;
    status.dataset.row = r === null ? "" : String(r);
    state.weights = w;
    if (state.prompt !== null) describeToken(state.prompt);
  };
  const nPrompt = ex.prompt.tokens.length;
  const copiedFrom = (t) => t.from < nPrompt
    ? `prompt token "${ex.prompt.tokens[t.from]}" (${placeOf(t.from)})`
    : `the reason's own token "${ex.reason_tokens[t.from - nPrompt].text}"`;
  const placeOf = (p) => {
    const at = where[p].piece || where[p].block;
    const owner = at && at.owner === "item" ? "this item" : at ? pastItem(ownerName(ex, at.owner)) : "";
    return at ? `${PLACES[at.kind] || at.kind} of ${owner}` : "prompt";
  };
  // One prompt token described (on hover or focus): its weight in the row shown.
  const pstatus = el("p", {class: "pstatus small", "aria-live": "polite"}, "Hover or focus a prompt token for its weight.");
  const describeToken = (p) => {
    pstatus.textContent = `Prompt token "${ex.prompt.tokens[p]}" (${placeOf(p)}, position ${p + 1} of ${spans.length}): weight ${state.weights[p].toFixed(3)} in the attention shown above.`;
    pstatus.dataset.p = String(p);
  };

  const reason = el("div", {class: "reason", role: "group", "aria-label": "the reason, token by token: hover, focus or click a token to see its attention"});
  ex.reason_tokens.forEach((t, r) => {
    const copied = t.copied >= COPIED;
    const b = el("button", {type: "button", class: "rtok mono" + (t.space ? " space" : "") + (copied ? " copied" : ""), "data-r": r, "aria-pressed": "false"}, t.text);
    if (copied) b.title = `copied (${Math.round(100 * t.copied)}% of its probability) from ${copiedFrom(t)}`;
    b.addEventListener("mouseenter", () => show(r));
    b.addEventListener("mouseleave", () => show(state.pinned));
    b.addEventListener("focus", () => show(r));
    b.addEventListener("blur", () => show(state.pinned));
    b.addEventListener("click", () => {
      state.pinned = state.pinned === r ? null : r;
      buttons.forEach((x, i) => x.setAttribute("aria-pressed", String(i === state.pinned)));
      show(r);
    });
    b.tabIndex = r === 0 ? 0 : -1; // one tab stop for the reason; the arrows move along it
    b.addEventListener("keydown", (e) => {
      const to = {ArrowRight: r + 1, ArrowLeft: r - 1, Home: 0, End: buttons.length - 1}[e.key];
      if (to !== undefined && buttons[to]) {
        e.preventDefault();
        b.tabIndex = -1;
        buttons[to].tabIndex = 0;
        buttons[to].focus();
      }
    });
    buttons.push(b);
    reason.append(b);
  });

  const select = (label, n, name, key) => {
    const s = el("select", {"aria-label": label, class: "pick-" + key},
      el("option", {value: "-1"}, `mean of all ${name}s`),
      range(n).map((i) => el("option", {value: String(i)}, `${name} ${i + 1}`)));
    s.addEventListener("change", () => {
      state[key] = Number(s.value);
      show(state.pinned);
    });
    return el("label", {}, label + " ", s);
  };
  const reset = el("button", {type: "button", class: "plain whole"}, "whole reason");
  reset.addEventListener("click", () => {
    state.pinned = null;
    buttons.forEach((x) => x.setAttribute("aria-pressed", "false"));
    show(null);
  });
  const controls = el("div", {class: "controls small"},
    att.heads ? select("layer", att.n_layers, "layer", "layer") : null,
    att.heads ? select("head", att.n_heads, "head", "head") : null,
    reset);

  const title = rec.item ? `${rec.rank}. ${rec.item}` : `${rec.rank}. the item`;
  const card = el("article", {class: "card rec", id, "data-item": rec.item, "data-reason": ex.reason, "aria-labelledby": id + "-h"},
    el("h3", {id: id + "-h"}, title, rec.title ? el("span", {class: "muted"}, ` "${rec.title}"`) : null,
      el("span", {class: "muted small"}, ` (${rec.tags.join(", ") || "no tags"})${rec.recommender_shown ? "  " + rec.recommender_shown : ""}`)),
    el("p", {class: "label small muted"}, "reason (hover, focus or click a token: the prompt below shades by the attention that token paid to it):"),
    reason,
    controls,
    status,
    drawPrompt(ex, spans),
    pstatus,
    el("p", {class: "small muted"}, "Share of the reason's attention on each part of the prompt (mean over its tokens, layers and heads), as 'minireason explain' prints it:"),
    el("div", {class: "shares"},
      bars(ex.shares.owners.map((s) => ({label: s.owner === "item" ? "this item" : pastItem(s.label), value: s.share, shown: s.shown})), "attention on each item"),
      bars(ex.shares.pieces.map((s) => ({label: `${KIND_NAMES[s.kind] || s.kind} "${s.label}" (${s.owner_name})`, value: s.share, shown: s.shown})), "the strongest single pieces")),
    ex.focus.length ? el("p", {class: "small"}, el("b", {}, "focus: "), ex.focus.join(", "), " (predicted from training data)") : null,
    el("p", {class: "small"}, el("b", {}, "mentions: "), ex.mentions.join(", ") || "none of the focus, profile aspects or item tags"),
    ex.copies.length ? el("p", {class: "small copies"}, el("b", {}, "copied: "),
      ex.copies.map((c) => `"${c.text}" from ${c.source} (${Math.round(100 * c.share)}%)`).join(", ")) : [],
    ex.notes.map((n) => el("p", {class: "small note"}, el("b", {}, "note: "), n)),
    candidatesTable(ex),
    el("p", {class: "decision"}, el("b", {}, "Why this reason: "), ex.decision),
    el("details", {}, el("summary", {class: "small"}, "the prompt in words"), el("pre", {class: "small"}, ex.prompt.text)),
  );
  // The prompt's tokens: one tab stop, the arrow keys move along them (a roving tabindex);
  // hovering or focusing one describes it.
  spans.forEach((span, p) => {
    span.tabIndex = p === 0 ? 0 : -1;
    const enter = () => {
      state.prompt = p;
      describeToken(p);
    };
    span.addEventListener("mouseenter", enter);
    span.addEventListener("focus", enter);
    span.addEventListener("keydown", (e) => {
      const to = {ArrowRight: p + 1, ArrowLeft: p - 1, Home: 0, End: spans.length - 1}[e.key];
      if (to !== undefined && spans[to]) {
        e.preventDefault();
        span.tabIndex = -1;
        spans[to].tabIndex = 0;
        spans[to].focus();
      }
    });
  });
  show(null);
  return card;
}

function drawUser(u, ui) {
  const section = el("section", {class: "user", "data-user": u.user === null ? "" : u.user});
  section.append(el("h2", {}, u.user === null ? "Free-form input" : `User ${u.user}`));
  const given = u.user === null ? " given with --history" : "";
  const intro = u.n_history ? `${u.n_history} past reviews${given}; the latest:` : `no past reviews${given} (cold start)`;
  section.append(el("p", {}, intro));
  if (u.latest.length) {
    section.append(el("ul", {class: "history"}, u.latest.map((h) =>
      el("li", {}, el("span", {class: "mono"}, h.item),
        ` (${h.tags.join(", ")}); said: ${h.aspects.join(", ") || "-"}; rated ${h.rating}/5`))));
  }
  for (const rec of u.recommendations) section.append(drawCard(rec, `u${ui}r${rec.rank}`));
  return section;
}

function drawReport(data) {
  const app = document.getElementById("app");
  app.textContent = "";
  put(app,
    el("h1", {}, data.title),
    el("p", {}, "Each card is one recommendation and the reason minireason wrote for it. The prompt is drawn as what the model read: past items (their tags, what the user said about them, the rating) and the item to explain (its tags and the focus, the aspects the reason was asked to talk about). Each prompt token is shaded by the attention the reason paid to it: the darkest is the largest weight of the row shown. Attention shows what the model looked at, not a proof of why it wrote what it did."),
    el("p", {class: "legend small"}, "Underlines: ",
      el("span", {class: "piece tag"}, "tag"), " ", el("span", {class: "piece aspect"}, "aspect the user mentioned"), " ",
      el("span", {class: "piece rating"}, "rating"), " ", el("span", {class: "piece focus"}, "focus"),
      ". Keys: Tab to a reason token, the arrows to move along the reason, Enter to pin it; Tab again to the prompt, whose tokens the arrows walk through."),
    aboutList(data.about),
  );
  data.users.forEach((u, i) => put(app, drawUser(u, i)));
  document.body.dataset.ready = "1";
}

drawReport(DATA);
