"use strict";
// Shared by the minireason pages. The data is JSON in <script id="data">; everything from it
// is put into the page with textContent or setAttribute (never innerHTML), so review text
// shows as text whatever it contains.
const DATA = JSON.parse(document.getElementById("data").textContent);

// el("td", {class: "num", title: "..."}, "text", child, ...): an element; strings become
// text nodes; "on..." keys are event listeners; null, undefined and false are skipped.
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  return put(node, ...children);
}

// put(parent, "text", child, [more], null, ...): appends the children to parent (nested
// arrays flattened; strings and numbers as text nodes) and returns parent. null, undefined
// and false are skipped: the DOM's own append would write them as the text "null",
// "undefined" or "false", so pages append through here.
function put(parent, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return parent;
}

// Horizontal bars: rows [{label, value (0..1 of the longest bar), shown}].
function bars(rows, caption) {
  const grid = el("div", {class: "bars", role: "list", "aria-label": caption});
  const top = Math.max(1e-12, ...rows.map((r) => r.value));
  for (const r of rows) {
    const width = (100 * Math.max(0, r.value) / top).toFixed(1) + "%";
    const fill = el("div", {class: "fill"});
    fill.style.width = width;
    grid.append(
      el("div", {class: "label", role: "listitem"}, r.label),
      el("div", {class: "track", "aria-hidden": "true"}, fill),
      el("div", {class: "value"}, r.shown),
    );
  }
  return grid;
}

// A definition list of {key: value}; a key whose value is null or undefined is left out.
function aboutList(about) {
  const list = el("dl", {class: "about small"});
  for (const [key, value] of Object.entries(about || {})) {
    if (value === null || value === undefined) continue;
    put(list, el("dt", {}, key), el("dd", {}, String(value)));
  }
  return list;
}

// Printing shows everything: closed <details> open before the print dialog.
window.addEventListener("beforeprint", () => {
  for (const d of document.querySelectorAll("details")) d.open = true;
});
