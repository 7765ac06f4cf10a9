// Maintenance: start a scrub (every chunk or a sample) or a repair, follow it
// live (Server-Sent Events from /api/v1/tasks/ID/events; polling if the stream
// breaks), see its result, and the recent tasks.
import { api, aborted } from "./api.js";
import { el, fill, count, bytes, datetime, pill, notice, table, facts, duration } from "./ui.js";

const STATE = { running: "warn", done: "ok", failed: "bad" };
const POLL_MS = 2000;

function date(s) {
  return s ? datetime(new Date(s)) : "—";
}

function elapsed(t) {
  if (!t.started) return "—";
  const end = t.ended ? new Date(t.ended) : new Date();
  return duration(Math.max(0, end - new Date(t.started)));
}

/** The scrub part of a result: a scrub's report, or the one inside a repair's. */
function scrubOf(t) {
  if (!t.result) return null;
  return t.kind === "repair" ? t.result.scrub || null : t.result;
}

function totals(scrub) {
  const sum = { ok: 0, missing: 0, corrupt: 0, unreachable: 0 };
  for (const b of scrub.backends || []) for (const k of Object.keys(sum)) sum[k] += b[k] || 0;
  return sum;
}

/** One line saying how a finished task went. */
function summary(t) {
  if (t.state === "running") return `${count(t.done)} of ${count(t.total)}`;
  if (t.state === "failed") return t.error || "failed";
  const s = scrubOf(t);
  const parts = [];
  if (s) {
    const n = totals(s);
    const bad = (s.bad?.length || 0) + (s.damaged_inline?.length || 0);
    parts.push(`${count(s.chunks_checked)} of ${count(s.chunks_total)} chunks checked: ${count(n.ok)} shards ok, ${count(n.missing)} missing, ${count(n.corrupt)} corrupt, ${count(n.unreachable)} unreachable`);
    parts.push(bad ? `${count(bad)} damaged` : "no damage");
  }
  if (t.kind === "repair" && t.result) {
    parts.push(`${count(t.result.chunks_repaired)} chunks repaired, ${count(t.result.shards_rewritten)} shards rewritten, ${count(t.result.failed?.length || 0)} failed`);
  }
  return parts.join("; ");
}

function resultView(t) {
  if (t.state === "failed") return el("p", { class: "banner banner-bad", role: "alert", "data-test": "task-error" }, `Failed: ${t.error || "no reason given"}`);
  if (t.state !== "done" || !t.result) return null;
  const s = scrubOf(t);
  const out = [];
  if (s) {
    const n = totals(s);
    const bad = (s.bad?.length || 0) + (s.damaged_inline?.length || 0);
    out.push(el("p", { class: `banner banner-${bad || n.missing || n.corrupt ? "warn" : "ok"}`, "data-test": "task-verdict" },
      bad || n.missing || n.corrupt
        ? `Damage found: ${count(n.missing)} missing and ${count(n.corrupt)} corrupt shard(s), ${count(bad)} chunk(s) need a repair.`
        : `Clean: every shard checked is where it should be and reads back intact.`));
    out.push(el("div", { class: "counts" },
      ["ok", "missing", "corrupt", "unreachable"].map((k) => el("div", { class: `count count-${k}` },
        el("span", { class: "count-value", "data-test": `count-${k}` }, count(n[k])), el("span", { class: "count-label" }, `shards ${k}`))),
      el("div", { class: "count" }, el("span", { class: "count-value", "data-test": "count-checked" }, `${count(s.chunks_checked)} / ${count(s.chunks_total)}`),
        el("span", { class: "count-label" }, "chunks checked"))));
    out.push(table(["provider", "ok", "missing", "corrupt", "unreachable", "bytes"], (s.backends || []).map((b) => el("tr", { "data-test": "task-backend", "data-name": b.name },
      el("td", {}, b.name), el("td", { class: "num" }, count(b.ok)), el("td", { class: "num" }, count(b.missing)),
      el("td", { class: "num" }, count(b.corrupt)), el("td", { class: "num" }, count(b.unreachable)), el("td", { class: "num" }, bytes(b.bytes))))));
    if (s.bad?.length) {
      out.push(el("details", {}, el("summary", {}, `${s.bad.length} damaged chunk(s)`),
        el("ul", { class: "plain mono" }, s.bad.slice(0, 200).map((b) => el("li", {}, typeof b === "string" ? b : JSON.stringify(b))))));
    }
  }
  if (t.kind === "repair") {
    out.push(facts([
      ["chunks repaired", count(t.result.chunks_repaired)],
      ["shards rewritten", count(t.result.shards_rewritten)],
      ["shards skipped", count(t.result.shards_skipped)],
      ["chunks not rebuilt", count(t.result.failed?.length || 0)],
    ]));
  }
  return out;
}

export function render(root, ctx) {
  const canRun = ctx.may("write");
  const why = canRun ? null : "Your token has the read role: scrubs and repairs need write.";
  const leaving = new AbortController();
  const followId = ctx.tail ? decodeURIComponent(ctx.tail.split("/")[0]) : null;
  let stream = null;
  let poll = null;

  const sample = el("select", { id: "scrub-sample", "aria-label": "How much to scrub" },
    el("option", { value: "" }, "every chunk"),
    el("option", { value: "10" }, "a 10 % sample"),
    el("option", { value: "1" }, "a 1 % sample"));
  const scrubButton = el("button", { id: "start-scrub", class: "btn btn-primary", type: "button", disabled: !canRun, title: why }, "Start scrub");
  const repairButton = el("button", { id: "start-repair", class: "btn", type: "button", disabled: !canRun, title: why }, "Start repair");
  const current = el("section", { id: "task", class: "card task", hidden: !followId, "aria-live": "polite" });
  const recent = el("div", { id: "task-list" }, el("p", { class: "muted loading" }, "Loading…"));

  fill(root,
    el("div", { class: "page-head" }, el("h1", {}, "Maintenance")),
    el("div", { class: "grid grid-2" },
      el("section", { class: "card" }, el("h2", {}, "Scrub"),
        el("p", { class: "muted" }, "Reads shards back from every provider and checks them: finds missing and damaged shards without changing anything."),
        el("div", { class: "inline-form" }, el("label", { for: "scrub-sample" }, "Check"), sample, scrubButton)),
      el("section", { class: "card" }, el("h2", {}, "Repair"),
        el("p", { class: "muted" }, "Scrubs, then rebuilds every missing or damaged shard from the good ones and writes it back."),
        el("div", { class: "inline-form" }, repairButton))),
    current,
    el("h2", {}, "Recent tasks"),
    recent);

  function drawTask(t) {
    current.hidden = false;
    current.dataset.state = t.state;
    current.dataset.taskId = t.id;
    const bar = el("progress", { id: "task-progress", max: String(Math.max(t.total || 0, 1)), value: String(t.total ? t.done : 0), "aria-label": "Progress" });
    if (t.state === "running" && !t.total) bar.removeAttribute("value"); // not known yet: indeterminate
    fill(current,
      el("header", {}, el("h2", {}, `${t.kind === "repair" ? "Repair" : "Scrub"} `, el("span", { class: "mono" }, t.id)),
        pill(t.state, STATE[t.state] || "muted", { id: "task-state", "data-test": "task-state" })),
      bar,
      el("p", { class: "muted", id: "task-counts" },
        t.state === "running" ? `${count(t.done)} of ${t.total ? count(t.total) : "?"} checked — running for ${elapsed(t)}`
          : `started ${date(t.started)}, ended ${date(t.ended)} (${elapsed(t)})`),
      resultView(t));
  }

  function stop() {
    if (stream) stream.close();
    stream = null;
    clearTimeout(poll);
    poll = null;
  }

  async function pollTask(id) {
    try {
      const t = await api(`/api/v1/tasks/${encodeURIComponent(id)}`, { signal: leaving.signal });
      drawTask(t);
      if (t.state === "running") {
        poll = setTimeout(() => pollTask(id), POLL_MS);
      } else {
        loadList();
      }
    } catch (e) {
      if (aborted(e)) return;
      current.hidden = false;
      fill(current, el("p", { class: "banner banner-bad", role: "alert" }, `Could not follow task ${id}: ${e.message} `,
        el("button", { class: "btn btn-small", type: "button", onclick: () => pollTask(id) }, "Try again")));
    }
  }

  function follow(id) {
    stop();
    if (typeof EventSource === "undefined") {
      pollTask(id);
      return;
    }
    const es = new EventSource(`/api/v1/tasks/${encodeURIComponent(id)}/events`);
    stream = es;
    let got = false;
    const on = (ev) => {
      got = true;
      try {
        drawTask(JSON.parse(ev.data));
      } catch {
        // a malformed message: the next one (or the poll) draws it
      }
    };
    es.addEventListener("progress", on);
    es.addEventListener("end", (ev) => {
      on(ev);
      stop();
      loadList();
    });
    es.onerror = () => {
      // A stream that broke (or never opened: an ended session, a restart):
      // ask for the task instead, which also notices a 401.
      if (stream !== es) return;
      stop();
      poll = setTimeout(() => pollTask(id), got ? 0 : 200);
    };
  }

  async function loadList() {
    try {
      const d = await api("/api/v1/tasks", { signal: leaving.signal });
      const tasks = d?.tasks || [];
      if (!tasks.length) {
        fill(recent, el("p", { class: "muted", id: "tasks-empty" }, "No scrub or repair since the server started."));
        return;
      }
      fill(recent, table(["Task", "Kind", "State", "Started", "Took", "Result"], tasks.slice(0, 20).map((t) => el("tr", { "data-test": "task", "data-id": t.id, "data-state": t.state },
        el("td", {}, el("a", { class: "mono", href: `#/maintenance/${encodeURIComponent(t.id)}` }, t.id)),
        el("td", {}, t.kind),
        el("td", {}, pill(t.state, STATE[t.state] || "muted")),
        el("td", {}, date(t.started)),
        el("td", {}, elapsed(t)),
        el("td", { class: "summary" }, summary(t))))));
    } catch (e) {
      if (aborted(e)) return;
      fill(recent, el("p", { class: "banner banner-bad" }, e.status === 404 ? "This server does not run tasks." : `Could not list the tasks: ${e.message}`));
    }
  }

  async function start(kind) {
    const body = { kind };
    if (kind === "scrub" && sample.value) body.sample = Number(sample.value);
    scrubButton.disabled = repairButton.disabled = true;
    try {
      const t = await api("/api/v1/tasks", { method: "POST", body, timeout: 15000 });
      notice(`${kind === "repair" ? "Repair" : "Scrub"} ${t.id} started.`);
      if (followId === t.id) follow(t.id);
      else ctx.go(`#/maintenance/${encodeURIComponent(t.id)}`);
    } catch (e) {
      notice(`Could not start the ${kind}: ${e.message}`, "bad");
    } finally {
      scrubButton.disabled = repairButton.disabled = !canRun;
    }
  }

  scrubButton.addEventListener("click", () => start("scrub"));
  repairButton.addEventListener("click", () => start("repair"));

  loadList();
  if (followId) {
    fill(current, el("p", { class: "muted loading" }, `Loading task ${followId}…`));
    follow(followId);
  }
  return () => {
    leaving.abort();
    stop();
  };
}
