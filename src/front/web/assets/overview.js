// Overview: the providers' health, what the volume survives, capacity, ratios,
// cost and recent events; redrawn every few seconds in place. A provider that
// is down turns the page amber and is named in the banner; a status call that
// fails or times out shows an error with a retry, never an endless spinner.
import { api, aborted } from "./api.js";
import {
  el, fill, bytes, ratio, count, datetime, fromNs, card, facts, pill, table, ago,
} from "./ui.js";

const REFRESH_MS = 5000;
const COST_EVERY_MS = 60000;
const EVENTS_SHOWN = 20;

function money(v, currency) {
  if (v === null || v === undefined) return "—";
  if (v > 0 && v < 0.01) return `< ${money(0.01, currency)}`;
  try {
    return new Intl.NumberFormat("en-US", { style: "currency", currency: currency || "USD" }).format(v);
  } catch {
    return `${v.toFixed(2)} ${currency || ""}`.trim();
  }
}

function isDown(b) {
  return Boolean(b.health?.down) || b.reachable === false;
}

function latency(ms) {
  return ms === null || ms === undefined ? "—" : `${Math.round(ms)} ms`;
}

/** The health of the volume: ok, warn (something to act on) or bad (writes refused). */
function assess(s) {
  const down = s.backends.filter(isDown);
  const problems = [];
  let state = "ok";
  if (s.writes?.blocked) {
    state = "bad";
    problems.push(["Writes are refused: ",
      `only ${s.writes.answering} of ${s.writes.backends} providers answer and ${s.writes.quorum} are needed.`,
      s.writes.last_failure ? ` Last failure: ${s.writes.last_failure}` : ""]);
  }
  if (down.length) {
    if (state === "ok") state = "warn";
    const names = down.map((b, i) => [i ? ", " : "", el("strong", { class: "down-name", "data-test": "down-name" }, b.name)]);
    const why = down.map((b) => b.error || b.health?.last_error).filter(Boolean)[0];
    problems.push([down.length === 1 ? "Provider down: " : "Providers down: ", names,
      why ? ` (${why})` : "", ". ",
      s.writes?.blocked ? "" : "The others keep the files readable and writable; once it is back, a repair rebuilds the shards it missed."]);
  }
  if (s.degraded_chunks > 0) {
    if (state === "ok") state = "warn";
    problems.push([`${count(s.degraded_chunks)} chunk(s) are missing shards: `, el("a", { href: "#/maintenance" }, "run a repair"), "."]);
  }
  if (s.local_disk?.problem) {
    if (state === "ok") state = "warn";
    problems.push(["State disk: ", s.local_disk.problem]);
  }
  return { state, down, problems };
}

function providers(s, domains) {
  return el("div", { class: "tiles", id: "backends" }, s.backends.map((b) => {
    const down = isDown(b);
    const h = b.health || {};
    const domain = domains.get(b.name);
    return el("article", {
      class: `tile ${down ? "tile-down" : "tile-up"}`, "data-test": "backend", "data-name": b.name, "data-state": down ? "down" : "up",
      "aria-label": `Provider ${b.name}: ${down ? "down" : "up"}`,
    },
    el("header", {}, el("h3", {}, b.name), pill(down ? "down" : "up", down ? "bad" : "ok", { "data-test": "backend-state" })),
    el("p", { class: "muted url" }, b.url),
    down ? el("p", { class: "tile-error" },
      (b.error || h.last_error || "not answering") + (h.down_since ? ` — since ${datetime(new Date(h.down_since))}` : "")) : null,
    facts([
      domain ? ["domain", domain] : null,
      ["latency p50 / p99", `${latency(h.p50_ms)} / ${latency(h.p99_ms)}`],
      ["errors", count(h.errors ?? 0)],
      ["shards", count(b.shards)],
      ["stored", bytes(b.bytes)],
    ]));
  }));
}

function domainCard(s, domains) {
  if (![...domains.values()].some(Boolean)) return null;
  const groups = new Map();
  for (const b of s.backends) {
    const d = domains.get(b.name) || "(none)";
    if (!groups.has(d)) groups.set(d, []);
    groups.get(d).push(b);
  }
  return card("Failure domains", "domains", table(["domain", "state", "providers", "up", "shards", "stored"],
    [...groups].map(([d, bs]) => {
      const up = bs.filter((b) => !isDown(b)).length;
      const state = up === bs.length ? ["up", "ok"] : up === 0 ? ["down", "bad"] : ["partly down", "warn"];
      return el("tr", { "data-test": "domain", "data-name": d, "data-state": state[0] },
        el("td", {}, d), el("td", {}, pill(state[0], state[1])), el("td", {}, bs.map((b) => b.name).join(", ")),
        el("td", {}, `${up} of ${bs.length}`), el("td", {}, count(bs.reduce((a, b) => a + (b.shards || 0), 0))),
        el("td", {}, bytes(bs.reduce((a, b) => a + (b.bytes || 0), 0))));
    })));
}

function protection(s) {
  const w = s.writes || {};
  return card("Protection", "protection",
    el("p", { class: "big" }, `${s.data_shards} + ${s.parity_shards}`),
    el("p", { class: "muted" }, `${s.data_shards} data and ${s.parity_shards} parity shards a chunk`),
    el("ul", { class: "plain", id: "survives" }, (s.rules || []).map((r) => el("li", { "data-test": "rule" },
      el("strong", {}, r.name), ` (${r.layout} on ${(r.backends || []).join(", ")}): survives `,
      el("span", { class: "survives" }, r.survives)))),
    facts([
      ["writes", w.blocked ? pill("refused", "bad") : pill("accepted", "ok")],
      ["providers answering", `${w.answering ?? "—"} of ${w.backends ?? "—"} (quorum ${w.quorum ?? "—"})`],
    ]));
}

function capacity(s) {
  const d = s.local_disk || {};
  const used = d.total_bytes ? d.total_bytes - d.free_bytes : 0;
  return card("Capacity", "capacity",
    el("p", {}, "State disk ", el("code", {}, d.path || "—"), `: ${bytes(d.free_bytes)} free of ${bytes(d.total_bytes)}`),
    d.total_bytes ? el("meter", {
      min: "0", max: String(d.total_bytes), value: String(used), low: String(d.total_bytes * 0.8), high: String(d.total_bytes * 0.9),
      optimum: "0", "aria-label": "state disk used",
    }) : null,
    facts([
      ["stored on providers", bytes(s.stored_bytes), { "data-test": "stored-bytes" }],
      ["files' size", bytes(s.logical_bytes)],
      ["files / folders", `${count(s.files)} / ${count(s.directories)}`],
      ["chunks", `${count(s.chunks)} (${count(s.inline_chunks)} inline)`],
      ["snapshots", count(s.snapshots)],
    ]));
}

function efficiency(s) {
  const c = s.cache || {};
  const reads = (c.hits || 0) + (c.misses || 0);
  return card("Efficiency", "efficiency", facts([
    ["deduplication", ratio(s.logical_bytes, s.unique_bytes), { "data-test": "dedup-ratio", title: "files' size ÷ distinct chunks" }],
    ["compression", ratio(s.unique_bytes, s.sealed_bytes), { "data-test": "compression-ratio", title: "distinct chunks ÷ after compression" }],
    ["redundancy overhead", ratio((s.stored_bytes || 0) + (s.inline_bytes || 0), s.sealed_bytes),
      { "data-test": "overhead-ratio", title: "stored (all shards, parity included) ÷ compressed" }],
    ["cache", `${bytes(c.bytes)} of ${bytes(c.capacity)}`],
    ["cache hits", reads ? `${Math.round((100 * c.hits) / reads)} % of ${count(reads)} reads` : "no reads yet"],
  ]));
}

function costCard(cost, error) {
  if (!cost || typeof cost.monthly !== "number") {
    const why = error || (cost ? "the server's answer has no monthly total" : null);
    return card("Cost", "cost", el("p", { class: "muted", "data-test": "cost-missing" }, why ? `Not available: ${why}` : "Loading…"));
  }
  const rows = (cost.backends || []).map((b) => [b.backend, b.provider, bytes(b.bytes), money(b.monthly, cost.currency)]);
  return card("Cost", "cost",
    el("p", { class: "big", "data-test": "cost-monthly" }, money(cost.monthly, cost.currency), el("small", {}, " per month")),
    el("p", { class: "muted" }, `storage at list prices of ${cost.prices_as_of || "—"}`,
      cost.requests_cost ? `; requests so far ${money(cost.requests_cost, cost.currency)}` : "",
      cost.restore?.total !== undefined ? `; a full restore would cost ${money(cost.restore.total, cost.currency)}` : ""),
    rows.length ? table(["provider", "kind", "stored", "a month"], rows) : null);
}

function work(s) {
  return card("Pending work", "work", facts([
    ["degraded chunks", count(s.degraded_chunks), { "data-test": "degraded-chunks", class: s.degraded_chunks ? "warn-text" : "" }],
    ["uploads pending", `${count(s.pending_files)} file(s), ${bytes(s.pending_bytes)}`, { "data-test": "pending-uploads" }],
    ["index changes not yet in the log", count(s.metadata_pending)],
  ]));
}

function warnings(s) {
  if (!s.warnings?.length) return null;
  return card("Warnings", "warnings", el("ul", { class: "plain warn-list" }, s.warnings.map((w) => el("li", {}, w))));
}

const SEVERITY = { info: "muted", warning: "warn", error: "bad" };

function eventsCard(events, error) {
  if (!events) return card("Recent events", "events", el("p", { class: "muted" }, error ? `Not available: ${error}` : "Loading…"));
  const recent = events.slice(-EVENTS_SHOWN).reverse();
  return card("Recent events", "events",
    recent.length ? el("ol", { class: "events", id: "event-list" }, recent.map((e) => el("li", { "data-test": "event", "data-kind": e.kind },
      el("time", { datetime: fromNs(e.at)?.toISOString() }, datetime(fromNs(e.at))),
      pill(e.severity, SEVERITY[e.severity] || "muted"),
      el("span", { class: "event-message" }, e.message))))
      : el("p", { class: "muted" }, "Nothing happened in the last 7 days."));
}

export function render(root) {
  const banner = el("div", { id: "health-banner", class: "banner banner-muted", role: "status", "data-state": "loading" }, "Loading the volume's status…");
  const retry = el("button", { id: "overview-retry", class: "btn btn-small", type: "button" }, "Retry now");
  const errorText = el("span", { id: "overview-error-text" });
  const errorBox = el("div", { id: "overview-error", class: "banner banner-bad", role: "alert", hidden: true }, errorText, " ", retry);
  const updated = el("span", { id: "overview-updated", class: "muted" });
  const title = el("h1", {}, "Overview");
  const grid = el("div", { id: "overview-grid", class: "grid" },
    el("p", { id: "overview-loading", class: "muted loading" }, "Asking the server for the volume's status…"));
  fill(root, el("div", { class: "page-head" }, title, updated), banner, errorBox, grid);
  root.classList.add("overview");
  root.dataset.state = "loading";

  const leaving = new AbortController();
  let timer = null;
  let busy = false;
  let status = null;
  let lastOk = null;
  let events = null;
  let eventsError = null;
  let cost = null;
  let costError = null;
  let costAt = 0;
  let domains = new Map();

  function draw() {
    if (!status) return;
    const { state, down, problems } = assess(status);
    root.dataset.state = state;
    banner.className = `banner banner-${state}`;
    banner.dataset.state = state;
    if (problems.length) {
      fill(banner, problems.map((p) => el("p", {}, p)));
    } else {
      const n = status.backends.length;
      const survives = (status.rules || []).map((r) => r.survives).filter(Boolean);
      fill(banner, el("p", {}, `All ${n} provider${n === 1 ? " is" : "s are"} up`,
        survives.length ? `; the volume survives ${survives.join(", ")}.` : "."));
    }
    banner.dataset.down = down.map((b) => b.name).join(",");
    title.textContent = `Overview — ${status.volume_name}`;
    fill(grid,
      card("Providers", "providers", providers(status, domains)),
      domainCard(status, domains),
      protection(status),
      capacity(status),
      efficiency(status),
      costCard(cost, costError),
      work(status),
      warnings(status),
      eventsCard(events, eventsError));
  }

  function stamp() {
    updated.textContent = lastOk ? `updated ${datetime(lastOk)} (${ago(lastOk)}), every ${REFRESH_MS / 1000} s` : "";
  }

  async function refresh() {
    if (busy) return;
    busy = true;
    clearTimeout(timer);
    retry.disabled = true;
    const signal = leaving.signal;
    const wantCost = Date.now() - costAt > COST_EVERY_MS;
    const calls = [
      api("/api/v1/status", { signal }),
      api("/api/v1/events?since=7days", { signal }),
      api("/api/v1/backends", { signal }),
      wantCost ? api("/api/v1/cost", { signal, timeout: 15000 }) : Promise.resolve(null),
    ];
    const [st, ev, be, co] = await Promise.allSettled(calls);
    busy = false;
    if (signal.aborted) return;
    retry.disabled = false;
    if (ev.status === "fulfilled") {
      events = Array.isArray(ev.value) ? ev.value : [];
      eventsError = null;
    } else if (!aborted(ev.reason)) {
      eventsError = ev.reason.message;
    }
    if (be.status === "fulfilled") {
      domains = new Map((be.value?.backends || []).map((b) => [b.name, b.domain || null]));
    }
    if (wantCost) {
      if (co.status === "fulfilled") {
        cost = co.value;
        costError = null;
        costAt = Date.now();
      } else if (!aborted(co.reason)) {
        costError = co.reason.status === 404 ? "this server has no cost endpoint" : co.reason.message;
        costAt = Date.now() - COST_EVERY_MS + 15000; // try again in 15 s
      }
    }
    if (st.status === "fulfilled") {
      status = st.value;
      lastOk = new Date();
      errorBox.hidden = true;
      root.classList.remove("stale");
      draw();
    } else if (!aborted(st.reason)) {
      errorText.textContent = `Could not get the volume's status: ${st.reason.message}.${status ? " The figures below are from the last answer." : ""}`;
      errorBox.hidden = false;
      if (status) {
        root.classList.add("stale");
      } else {
        root.dataset.state = "error";
        banner.className = "banner banner-bad";
        banner.dataset.state = "error";
        fill(banner, el("p", {}, "The volume's health is unknown until the server answers."));
        fill(grid, el("p", { class: "muted", id: "overview-empty" }, "No figures yet."));
      }
    }
    stamp();
    timer = setTimeout(refresh, REFRESH_MS);
  }

  retry.addEventListener("click", refresh);
  const ticker = setInterval(stamp, 1000);
  refresh();
  return () => {
    leaving.abort();
    clearTimeout(timer);
    clearInterval(ticker);
  };
}
