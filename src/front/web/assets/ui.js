// DOM and formatting helpers. Everything shown comes from the API, so nothing is
// ever parsed as HTML: elements are made with createElement and text set as text.

/** An element: el("a", {href, class, text, onclick, "data-test": ...}, ...children). */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = String(v);
    else if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
    else if (k === "hidden" || k === "disabled" || k === "checked" || k === "multiple") e[k] = Boolean(v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  append(e, children);
  return e;
}

function append(e, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children in one step (no flash of an empty element). */
export function fill(e, ...children) {
  const f = document.createDocumentFragment();
  append(f, children);
  e.replaceChildren(f);
  return e;
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/** 1536 → "1.5 KiB" (binary units, as the command line prints them). */
export function bytes(n) {
  if (n === null || n === undefined || Number.isNaN(Number(n))) return "—";
  let v = Number(n);
  let i = 0;
  while (Math.abs(v) >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${UNITS[i]}`;
}

/** a / b as "1.23×", or "—" when b is 0. */
export function ratio(a, b) {
  if (!b || a === null || a === undefined) return "—";
  return `${(a / b).toFixed(2)}×`;
}

export function count(n) {
  if (n === null || n === undefined) return "—";
  return Number(n).toLocaleString("en-US");
}

function pad(n) {
  return String(n).padStart(2, "0");
}

/** A local date and time, "2026-12-03 13:01:12", from a Date. */
export function datetime(d) {
  if (!(d instanceof Date) || Number.isNaN(d.getTime())) return "—";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Nanoseconds since the epoch (as the API's events and runs give) to a Date. */
export function fromNs(ns) {
  return ns === null || ns === undefined ? null : new Date(Number(ns) / 1e6);
}

/** Seconds since the epoch to a Date. */
export function fromSecs(s) {
  return s === null || s === undefined ? null : new Date(Number(s) * 1000);
}

export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** "3 min ago" for a Date. */
export function ago(d) {
  if (!d) return "—";
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} days ago`;
}

/** A volume path's components: "/a/b c/" → ["a", "b c"]. */
export function parts(path) {
  return String(path || "").split("/").filter((p) => p !== "");
}

/** Each component percent-encoded for a URL: names may hold spaces, #, ?, %. */
export function encodePath(path) {
  return (Array.isArray(path) ? path : parts(path)).map(encodeURIComponent).join("/");
}

/** The components of an encoded route tail, decoded (a malformed one kept as it is). */
export function decodeParts(tail) {
  return parts(tail).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
}

/** A small status pill. */
export function pill(text, state, attrs = {}) {
  return el("span", { class: `pill pill-${state}`, ...attrs }, text);
}

/** What a redundancy string of a listing means for its pill's colour. */
export function redundancyState(r) {
  const s = String(r || "");
  if (s === "full") return "ok";
  if (s === "inline") return "muted";
  if (s.startsWith("degraded")) return "warn";
  if (s === "UNREADABLE") return "bad";
  return "muted";
}

let noticeTimer = null;

/** A short message at the bottom of the page, read out by screen readers. */
export function notice(text, state = "ok") {
  const n = document.getElementById("notice");
  if (!n) return;
  fill(n, el("div", { class: `toast toast-${state}`, "data-test": "notice", "data-state": state }, text));
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => n.replaceChildren(), state === "ok" ? 5000 : 12000);
}

/**
 * A modal question in the page: resolves to the value of the button chosen
 * (null for Cancel or Escape). buttons: [{label, value, danger}], the first
 * being the default action.
 */
export function ask({ title, message, buttons, detail }) {
  return new Promise((resolve) => {
    const d = el("dialog", { id: "confirm-dialog", class: "dialog", "aria-labelledby": "confirm-title" });
    const done = (v) => {
      d.close();
      d.remove();
      resolve(v);
    };
    const actions = el("div", { class: "dialog-actions" },
      el("button", { type: "button", id: "confirm-cancel", class: "btn", onclick: () => done(null) }, "Cancel"),
      buttons.map((b, i) => el("button", {
        type: "button",
        id: i === 0 ? "confirm-ok" : `confirm-${b.value}`,
        class: b.danger ? "btn btn-danger" : "btn btn-primary",
        "data-value": b.value,
        onclick: () => done(b.value),
      }, b.label)));
    d.append(
      el("h2", { id: "confirm-title" }, title),
      el("p", { id: "confirm-message" }, message),
      detail ? el("p", { class: "muted" }, detail) : null,
      actions,
    );
    d.addEventListener("cancel", (e) => {
      e.preventDefault();
      done(null);
    });
    document.getElementById("confirm-dialog")?.remove();
    document.body.append(d);
    d.showModal();
    d.querySelector("#confirm-cancel").focus();
  });
}

/** ask() with one action: true when confirmed. */
export async function confirm(title, message, label = "OK", danger = false) {
  return (await ask({ title, message, buttons: [{ label, value: "ok", danger }] })) === "ok";
}

/** A table with a header row; rows are arrays of cells (nodes or text) or <tr> elements. */
export function table(headers, rows, attrs = {}) {
  return el("div", { class: "table-wrap" },
    el("table", attrs,
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows.map((r) => (r instanceof Node ? r : el("tr", {}, r.map((c) => el("td", {}, c))))))));
}

/** A titled card of the overview and other pages. */
export function card(title, id, ...body) {
  return el("section", { class: "card", id, "aria-labelledby": `${id}-title` },
    el("h2", { id: `${id}-title` }, title), ...body);
}

/** Label/value pairs. */
export function facts(pairs) {
  return el("dl", { class: "facts" }, pairs.filter(Boolean).map(([k, v, attrs]) => [
    el("dt", {}, k), el("dd", attrs || {}, v)]));
}
