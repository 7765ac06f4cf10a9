// Jobs: each backup job's schedule, last and next run, a "Run now" that shows
// the run going on until the server answers with its report, and the history.
import { api, aborted } from "./api.js";
import { el, fill, bytes, count, datetime, fromNs, duration, pill, notice } from "./ui.js";

const RESULT = { success: "ok", partial: "warn", failed: "bad", skipped: "warn" };

// Runs started from this page, by job: they go on when the user leaves the page.
const running = new Map();

function resultPill(r) {
  return r ? pill(r, RESULT[r] || "muted", { "data-test": "result" }) : el("span", { class: "muted" }, "never run");
}

export function render(root, ctx) {
  const canWrite = ctx.may("write");
  const leaving = new AbortController();
  const jobsBox = el("div", { id: "jobs", "aria-live": "polite" }, el("p", { class: "muted loading" }, "Loading…"));
  const historyBox = el("div", { id: "job-history" }, el("p", { class: "muted loading" }, "Loading…"));
  fill(root, el("div", { class: "page-head" }, el("h1", {}, "Backup jobs")),
    jobsBox,
    el("h2", {}, "History"), historyBox);

  async function load() {
    const [jobs, history] = await Promise.allSettled([
      api("/api/v1/jobs", { signal: leaving.signal, timeout: 15000 }),
      api("/api/v1/jobs/history", { signal: leaving.signal, timeout: 15000 }),
    ]);
    if (leaving.signal.aborted) return;
    const runs = history.status === "fulfilled" && Array.isArray(history.value) ? history.value : [];
    let list;
    if (jobs.status === "fulfilled" && Array.isArray(jobs.value)) {
      list = jobs.value;
    } else if (jobs.status === "rejected" && jobs.reason.status === 404 && jobs.reason.code === "no_route") {
      // A server without the jobs list: the jobs its history names.
      const seen = new Map();
      for (const r of runs) seen.set(r.job, { job: r.job, last_result: r.result, last_run: datetime(fromNs(r.started)) });
      list = [...seen.values()];
    } else {
      list = null;
    }
    drawJobs(list, jobs.status === "rejected" && !aborted(jobs.reason) ? jobs.reason.message : null);
    drawHistory(history.status === "fulfilled" ? runs : null, history.status === "rejected" ? history.reason.message : null);
  }

  function drawJobs(list, error) {
    if (!list) {
      fill(jobsBox, el("div", { class: "banner banner-bad", role: "alert" }, `Could not list the jobs: ${error} `,
        el("button", { class: "btn btn-small", type: "button", onclick: load }, "Try again")));
      return;
    }
    if (!list.length) {
      fill(jobsBox, el("p", { class: "muted", id: "jobs-empty" }, "This volume's config has no backup jobs ([[job]] tables)."));
      return;
    }
    fill(jobsBox, el("div", { class: "job-cards" }, list.map((j) => {
      const busy = running.has(j.job);
      const button = el("button", {
        class: "btn btn-primary", type: "button", "data-test": "run", "data-job": j.job, disabled: busy || !canWrite,
        title: canWrite ? null : "Your token has the read role.", "aria-busy": busy ? "true" : null,
      }, busy ? [el("span", { class: "spinner", "aria-hidden": "true" }), "Running…"] : "Run now");
      button.addEventListener("click", () => run(j.job));
      return el("article", { class: "card job", "data-test": "job", "data-job": j.job, "data-state": busy ? "running" : "idle" },
        el("header", {}, el("h3", {}, j.job), resultPill(j.last_result)),
        el("dl", { class: "facts" },
          j.sources ? [el("dt", {}, "copies"), el("dd", {}, (j.sources || []).join(", "), " → ", el("code", {}, j.destination || "—"))] : null,
          el("dt", {}, "schedule"), el("dd", {}, j.schedule === undefined ? "—" : j.schedule || "when asked", j.watch ? " and on changes (watch)" : ""),
          el("dt", {}, "last run"), el("dd", { "data-test": "last-run" }, j.last_run || "never"),
          el("dt", {}, "next run"), el("dd", { "data-test": "next-run" }, j.next_run || "—")),
        el("div", { class: "actions" }, button));
    })));
  }

  function drawHistory(runs, error) {
    if (!runs) {
      fill(historyBox, el("p", { class: "banner banner-bad" }, `Could not read the history: ${error}`));
      return;
    }
    if (!runs.length) {
      fill(historyBox, el("p", { class: "muted" }, "No run yet."));
      return;
    }
    const rows = [...runs].sort((a, b) => b.started - a.started).map((r) => el("tr", { "data-test": "run-row", "data-job": r.job, "data-result": r.result, "data-trigger": r.trigger },
      el("td", {}, r.job),
      el("td", {}, datetime(fromNs(r.started))),
      el("td", {}, r.trigger),
      el("td", {}, resultPill(r.result)),
      el("td", { class: "num" }, duration(r.duration_ms)),
      el("td", { class: "num" }, `${count(r.new)} / ${count(r.changed)} / ${count(r.deleted)} / ${count(r.unchanged)}`),
      el("td", { class: "num" }, `${bytes(r.bytes)} (${bytes(r.uploaded_bytes)} up)`),
      el("td", {}, r.snapshot ? el("a", { class: "mono", href: `#/snapshots/${encodeURIComponent(r.snapshot)}` }, r.snapshot) : "—"),
      el("td", {}, r.errors?.length
        ? el("details", {}, el("summary", {}, `${r.errors.length} error${r.errors.length === 1 ? "" : "s"}`),
          el("ul", { class: "plain" }, r.errors.map((e) => el("li", {}, typeof e === "string" ? e : JSON.stringify(e)))))
        : "none")));
    fill(historyBox, el("div", { class: "table-wrap" }, el("table", { id: "history-table" },
      el("thead", {}, el("tr", {}, ["Job", "Started", "Trigger", "Result", "Took", "New / changed / deleted / unchanged", "Bytes", "Snapshot", "Errors"]
        .map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows))));
  }

  async function run(job) {
    if (running.has(job)) return;
    const p = api(`/api/v1/jobs/${encodeURIComponent(job)}/run`, { method: "POST", timeout: 0 });
    running.set(job, p);
    load();
    try {
      const report = await p;
      const r = report?.run || report || {};
      notice(`Job ${job}: ${r.result || "done"}${r.errors?.length ? ` (${r.errors.length} errors)` : ""}.`,
        RESULT[r.result] === "ok" ? "ok" : "warn");
    } catch (err) {
      notice(`Job ${job} did not run: ${err.message}`, "bad");
    } finally {
      running.delete(job);
    }
    if (!leaving.signal.aborted) load();
  }

  load();
  return () => leaving.abort();
}
