// Snapshots: the list, a snapshot taken now, a snapshot's tree to browse and
// download from, and restores of a file or folder back to its place in the
// live tree (asking before overwriting what is there).
import { api, aborted } from "./api.js";
import {
  el, fill, bytes, count, datetime, fromNs, fromSecs, encodePath, decodeParts, notice, ask, confirm, table,
} from "./ui.js";
import { sortEntries, crumbs, kindIcon } from "./files.js";

function when(s) {
  if (s.time_ns !== undefined) return fromNs(s.time_ns);
  const t = s.time_utc || s.time;
  if (typeof t === "number") return t > 1e12 ? fromNs(t) : fromSecs(t);
  const d = t ? new Date(t) : null;
  return d && !Number.isNaN(d.getTime()) ? d : null;
}

export function render(root, ctx) {
  const [id, ...rest] = decodeParts(ctx.tail);
  return id ? browse(root, ctx, id, rest) : list(root, ctx);
}

function list(root, ctx) {
  const canWrite = ctx.may("write");
  const leaving = new AbortController();
  const body = el("div", { id: "snapshot-list-wrap", "aria-live": "polite" }, el("p", { class: "muted loading" }, "Loading…"));
  const tags = el("input", { id: "snapshot-tags", type: "text", placeholder: "tags, comma-separated (optional)", "aria-label": "Tags of the new snapshot", autocomplete: "off" });
  const take = el("button", {
    id: "snapshot-take", class: "btn btn-primary", type: "submit", disabled: !canWrite,
    title: canWrite ? null : "Your token has the read role.",
  }, "Take a snapshot now");
  const form = el("form", { class: "inline-form", id: "snapshot-form" }, tags, take);
  fill(root, el("div", { class: "page-head" }, el("h1", {}, "Snapshots")), form, body);

  async function load() {
    try {
      const d = await api("/api/v1/snapshots", { signal: leaving.signal, timeout: 15000 });
      const snaps = [...(d.snapshots || [])].sort((a, b) => (when(b)?.getTime() || 0) - (when(a)?.getTime() || 0));
      const rows = snaps.map((s) => el("tr", { "data-test": "snapshot", "data-id": s.id },
        el("th", { scope: "row" }, el("a", { href: `#/snapshots/${encodeURIComponent(s.id)}`, "data-test": "browse", class: "mono" }, s.id)),
        el("td", {}, datetime(when(s))),
        el("td", {}, (s.tags || []).map((t) => el("span", { class: "tag" }, t))),
        el("td", {}, s.origin || "—"),
        el("td", {}, (s.paths || []).join(", ") || "/"),
        el("td", { class: "num" }, count(s.files)),
        el("td", { class: "num" }, bytes(s.bytes)),
        el("td", { class: "num" }, bytes(s.added_bytes)),
        el("td", {}, el("a", { class: "btn btn-small", href: `#/snapshots/${encodeURIComponent(s.id)}` }, "Browse"))));
      fill(body,
        d.protected ? el("p", { class: "muted" }, "Snapshots of this volume are protected: deleting them needs the volume's key.") : null,
        rows.length ? el("div", { class: "table-wrap" }, el("table", { id: "snapshot-list" },
          el("thead", {}, el("tr", {}, ["ID", "Taken", "Tags", "Made by", "Paths", "Files", "Size", "New data", ""].map((h) => el("th", { scope: "col" }, h)))),
          el("tbody", {}, rows)))
          : el("p", { class: "muted", id: "snapshots-empty" }, "No snapshots yet."));
    } catch (e) {
      if (aborted(e)) return;
      fill(body, el("div", { class: "banner banner-bad", role: "alert" }, `Could not list the snapshots: ${e.message} `,
        el("button", { class: "btn btn-small", type: "button", onclick: load }, "Try again")));
    }
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const t = tags.value.split(",").map((s) => s.trim()).filter(Boolean);
    take.disabled = true;
    take.textContent = "Taking a snapshot…";
    try {
      const s = await api("/api/v1/snapshots", { method: "POST", body: t.length ? { tags: t } : {}, timeout: 120000 });
      notice(`Snapshot ${s?.id || s?.snapshot?.id || ""} taken.`);
      tags.value = "";
    } catch (err) {
      notice(`No snapshot was taken: ${err.message}`, "bad");
    } finally {
      take.disabled = false;
      take.textContent = "Take a snapshot now";
    }
    if (!leaving.signal.aborted) load();
  });

  load();
  return () => leaving.abort();
}

function browse(root, ctx, id, path) {
  const canWrite = ctx.may("write");
  const leaving = new AbortController();
  const base = `/api/v1/snapshots/${encodeURIComponent(id)}/files`;
  const here = `/${path.join("/")}`;
  const listing = el("div", { id: "snapshot-files", "aria-live": "polite" }, el("p", { class: "muted loading" }, "Loading…"));
  fill(root,
    el("div", { class: "page-head" }, el("h1", {}, "Snapshot ", el("span", { class: "mono" }, id)),
      crumbs(`Snapshot ${id}`, path, (p) => `#/snapshots/${encodeURIComponent(id)}${p.length ? `/${encodePath(p)}` : ""}`)),
    el("p", {}, el("a", { href: "#/snapshots", id: "back-to-snapshots" }, "← All snapshots")),
    listing);

  async function load() {
    try {
      const d = await api(path.length ? `${base}/${encodePath(path)}` : base, { signal: leaving.signal, timeout: 15000, json: true });
      const entries = sortEntries(d?.entries || []);
      if (!entries.length) {
        fill(listing, el("p", { class: "muted" }, "This folder of the snapshot is empty."));
        return;
      }
      fill(listing, table(["Name", "Size", "Modified", ""], entries.map((e) => {
        const p = [...path, e.name];
        const isDir = e.kind === "Dir";
        return el("tr", { "data-test": "snapshot-entry", "data-name": e.name, "data-kind": e.kind },
          el("th", { scope: "row" }, isDir
            ? el("a", { href: `#/snapshots/${encodeURIComponent(id)}/${encodePath(p)}`, class: "entry-name", "data-test": "open" }, kindIcon(e.kind), e.name)
            : el("span", { class: "entry-name" }, kindIcon(e.kind), e.name)),
          el("td", { class: "num" }, isDir ? "—" : bytes(e.size)),
          el("td", {}, datetime(fromSecs(e.mtime))),
          el("td", {}, el("div", { class: "actions" },
            e.kind === "File" ? el("a", {
              class: "btn btn-small", href: `${base}/${encodePath(p)}`, download: e.name, "data-test": "download", "aria-label": `Download ${e.name} from the snapshot`,
            }, "Download") : null,
            el("button", {
              class: "btn btn-small", type: "button", "data-test": "restore", disabled: !canWrite,
              title: canWrite ? `Put ${e.name} back at /${p.join("/")}` : "Your token has the read role.",
              "aria-label": `Restore ${e.name}`, onclick: () => restore(p, isDir),
            }, "Restore"))));
      }), { class: "files" }));
    } catch (e) {
      if (aborted(e)) return;
      if (e.code === "not_json") {
        fill(listing, el("p", {}, `${here} is a file: `, el("a", { href: `${base}/${encodePath(path)}`, download: path[path.length - 1] }, "download it"), "."));
        return;
      }
      fill(listing, el("div", { class: "banner banner-bad", role: "alert", id: "snapshot-error" },
        e.status === 404 ? `The snapshot ${id} has no ${here}.` : `Could not list the snapshot: ${e.message}`, " ",
        el("button", { class: "btn btn-small", type: "button", onclick: load }, "Try again")));
    }
  }

  async function restore(p, isDir) {
    const target = `/${p.join("/")}`;
    const ok = await confirm(isDir ? "Restore this folder?" : "Restore this file?",
      `Put ${target} back into the live tree, at ${target}, as it was in snapshot ${id}?`, "Restore");
    if (!ok) return;
    let overwrite = false;
    for (;;) {
      try {
        await api(`/api/v1/snapshots/${encodeURIComponent(id)}/restore`, {
          method: "POST", body: { paths: [p.join("/")], overwrite }, timeout: 300000,
        });
        notice(`Restored ${target} from snapshot ${id}.`);
        return;
      } catch (err) {
        if (err.status === 409 && err.code === "exists" && !overwrite) {
          const choice = await ask({
            title: `${target} exists`,
            message: `The live tree already has ${target}. Overwrite it with the snapshot's version?`,
            detail: err.message,
            buttons: [{ label: "Overwrite", value: "overwrite", danger: true }],
          });
          if (choice !== "overwrite") {
            notice(`Nothing restored: ${target} was left as it is.`, "warn");
            return;
          }
          overwrite = true;
          continue;
        }
        notice(`Could not restore ${target}: ${err.message}`, "bad");
        return;
      }
    }
  }

  load();
  return () => leaving.abort();
}
