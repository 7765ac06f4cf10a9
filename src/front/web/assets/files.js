// Files: browse the live tree, download (plain links: the cookie authenticates
// them, the browser streams the file), upload by drag-and-drop or a file
// picker, make folders, delete with a confirmation.
import { api, upload, aborted } from "./api.js";
import {
  el, fill, bytes, datetime, fromSecs, encodePath, decodeParts, pill, redundancyState, notice, confirm,
} from "./ui.js";

const LIST_TIMEOUT_MS = 15000;

export function sortEntries(entries) {
  return [...entries].sort((a, b) => {
    const da = a.kind === "Dir" ? 0 : 1;
    const db = b.kind === "Dir" ? 0 : 1;
    return da - db || a.name.localeCompare(b.name);
  });
}

/** Breadcrumbs: the root, then each folder of `path`, each a link made by href(partsSoFar). */
export function crumbs(rootLabel, path, href) {
  const items = [el("li", {}, path.length ? el("a", { href: href([]), "data-test": "crumb" }, rootLabel)
    : el("span", { "aria-current": "page", "data-test": "crumb" }, rootLabel))];
  path.forEach((p, i) => {
    const last = i === path.length - 1;
    items.push(el("li", {}, last ? el("span", { "aria-current": "page", "data-test": "crumb" }, p)
      : el("a", { href: href(path.slice(0, i + 1)), "data-test": "crumb" }, p)));
  });
  return el("nav", { class: "crumbs", id: "breadcrumbs", "aria-label": "Folder" }, el("ol", {}, items));
}

export function kindIcon(kind) {
  const k = { Dir: "folder", File: "file", Symlink: "link" }[kind] || "other";
  return el("span", { class: `icon icon-${k}`, "aria-hidden": "true" });
}

export function render(root, ctx) {
  const path = decodeParts(ctx.tail);
  const here = `/${path.join("/")}`;
  const canWrite = ctx.may("write");
  const readOnly = canWrite ? null : "Your token has the read role: it can browse and download only.";
  const leaving = new AbortController();
  let entries = [];

  const listing = el("div", { id: "file-list", class: "listing", "aria-live": "polite" },
    el("p", { class: "muted loading" }, "Loading…"));
  const uploads = el("ul", { id: "uploads", class: "uploads plain" });
  const picker = el("input", {
    id: "upload-input", class: "visually-hidden", type: "file", multiple: true, disabled: !canWrite, "aria-label": "Files to upload",
  });
  const pick = el("label", { for: "upload-input", id: "upload-button", class: `btn btn-primary${canWrite ? "" : " disabled"}`, title: readOnly },
    "Upload files…");
  const folderName = el("input", { id: "mkdir-name", type: "text", required: true, placeholder: "folder name", "aria-label": "New folder name", autocomplete: "off" });
  const mkdirForm = el("form", { id: "mkdir-form", class: "inline-form", hidden: true },
    folderName,
    el("button", { class: "btn btn-primary", type: "submit", id: "mkdir-submit" }, "Create"),
    el("button", { class: "btn", type: "button", id: "mkdir-cancel", onclick: () => { mkdirForm.hidden = true; } }, "Cancel"));
  const mkdirButton = el("button", {
    id: "mkdir-button", class: "btn", type: "button", disabled: !canWrite, title: readOnly,
    onclick: () => {
      mkdirForm.hidden = false;
      folderName.value = "";
      folderName.focus();
    },
  }, "New folder");
  const refreshButton = el("button", { id: "files-refresh", class: "btn", type: "button", onclick: () => load() }, "Refresh");
  const dropHint = el("div", { id: "drop-overlay", class: "drop-overlay", "aria-hidden": "true" }, `Drop files to upload them into ${here}`);

  fill(root,
    el("div", { class: "page-head" }, el("h1", {}, "Files"),
      crumbs("Volume", path, (p) => `#/files/${encodePath(p)}`)),
    el("div", { class: "toolbar" }, picker, pick, mkdirButton, refreshButton, mkdirForm),
    el("p", { class: "muted hint" }, canWrite ? `Drop files anywhere on this page to upload them into ${here}.` : readOnly),
    uploads,
    listing,
    dropHint);
  root.id = "page-files";
  root.classList.add("dropzone");

  function entryPath(name) {
    return encodePath([...path, name]);
  }

  async function load() {
    try {
      const url = path.length ? `/api/v1/files/${encodePath(path)}` : "/api/v1/files";
      const d = await api(url, { signal: leaving.signal, timeout: LIST_TIMEOUT_MS, json: true });
      entries = sortEntries(d?.entries || []);
      draw();
    } catch (e) {
      if (aborted(e)) return;
      if (e.code === "not_json") {
        fill(listing, el("p", { id: "files-is-file" }, `${here} is a file: `,
          el("a", { href: `/api/v1/files/${encodePath(path)}`, download: path[path.length - 1] || "file" }, "download it"),
          " or ", el("a", { href: `#/files/${encodePath(path.slice(0, -1))}` }, "see its folder"), "."));
        return;
      }
      fill(listing, el("div", { class: "banner banner-bad", role: "alert", id: "files-error" },
        el("p", {}, e.status === 404 ? `There is no folder ${here}.` : `Could not list ${here}: ${e.message}`),
        el("p", {}, el("button", { class: "btn btn-small", type: "button", onclick: () => load() }, "Try again"), " ",
          el("a", { href: "#/files" }, "Go to the volume's root"))));
    }
  }

  function draw() {
    if (!entries.length) {
      fill(listing, el("p", { class: "muted empty", id: "files-empty" }, "This folder is empty."));
      return;
    }
    const rows = entries.map((e) => {
      const isDir = e.kind === "Dir";
      const name = isDir
        ? el("a", { href: `#/files/${entryPath(e.name)}`, class: "entry-name", "data-test": "open" }, kindIcon(e.kind), e.name)
        : el("span", { class: "entry-name" }, kindIcon(e.kind), e.name);
      const actions = el("div", { class: "actions" },
        e.kind === "File" ? el("a", {
          class: "btn btn-small", href: `/api/v1/files/${entryPath(e.name)}`, download: e.name, "data-test": "download",
          "aria-label": `Download ${e.name}`,
        }, "Download") : null,
        el("button", {
          class: "btn btn-small btn-danger", type: "button", "data-test": "delete", disabled: !canWrite, title: readOnly,
          "aria-label": `Delete ${e.name}`, onclick: () => remove(e),
        }, "Delete"));
      return el("tr", { "data-test": "entry", "data-name": e.name, "data-kind": e.kind },
        el("th", { scope: "row" }, name),
        el("td", { class: "num", "data-test": "size" }, isDir ? "—" : bytes(e.size)),
        el("td", { "data-test": "mtime" }, datetime(fromSecs(e.mtime))),
        el("td", {}, isDir ? "" : pill(e.redundancy, redundancyState(e.redundancy), { "data-test": "redundancy" })),
        el("td", {}, actions));
    });
    fill(listing, el("div", { class: "table-wrap" }, el("table", { class: "files" },
      el("thead", {}, el("tr", {}, ["Name", "Size", "Modified", "Redundancy", ""].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows))));
  }

  async function remove(e) {
    const isDir = e.kind === "Dir";
    const target = `${here === "/" ? "" : here}/${e.name}`;
    const ok = await confirm(isDir ? "Delete this folder?" : "Delete this file?",
      isDir ? `Delete the folder ${target} and everything in it? Snapshots keep what they hold.`
        : `Delete ${target}? Snapshots that hold it keep it.`,
      "Delete", true);
    if (!ok) return;
    try {
      await api(`/api/v1/files/${entryPath(e.name)}${isDir ? "?recursive=true" : ""}`, { method: "DELETE", timeout: 60000 });
      notice(`Deleted ${target}.`);
    } catch (err) {
      notice(`Could not delete ${target}: ${err.message}`, "bad");
    }
    load();
  }

  mkdirForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const name = folderName.value.trim();
    if (!name || name.includes("/") || name === "." || name === "..") {
      notice("A folder name is one component: no “/”, not “.” or “..”.", "bad");
      return;
    }
    try {
      await api(`/api/v1/dirs/${entryPath(name)}`, { method: "POST" });
      mkdirForm.hidden = true;
      notice(`Made the folder ${here === "/" ? "" : here}/${name}.`);
      load();
    } catch (err) {
      notice(`Could not make the folder: ${err.message}`, "bad");
    }
  });

  async function send(files) {
    if (!canWrite) {
      notice(readOnly, "bad");
      return;
    }
    if (!files.length) return;
    const existing = new Set(entries.map((e) => e.name));
    const clashes = files.filter((f) => existing.has(f.name));
    if (clashes.length) {
      const ok = await confirm("Replace files?",
        `${clashes.map((f) => f.name).join(", ")} already ${clashes.length === 1 ? "exists" : "exist"} in ${here}. Replace ${clashes.length === 1 ? "it" : "them"}?`,
        "Replace", true);
      if (!ok) return;
    }
    let done = 0;
    for (const f of files) {
      const bar = el("progress", { max: String(Math.max(f.size, 1)), value: "0", "aria-label": `Upload of ${f.name}` });
      const state = el("span", { class: "muted upload-state" }, "waiting");
      const item = el("li", { "data-test": "upload", "data-name": f.name, "data-state": "running" }, el("span", { class: "upload-name" }, f.name), bar, state);
      uploads.append(item);
      try {
        await upload(`/api/v1/files/${entryPath(f.name)}`, f, (sent, total) => {
          bar.max = Math.max(total, 1);
          bar.value = sent;
          state.textContent = `${bytes(sent)} of ${bytes(total)}`;
        });
        bar.value = bar.max;
        state.textContent = `uploaded, ${bytes(f.size)}`;
        item.dataset.state = "done";
        done++;
        setTimeout(() => item.remove(), 8000);
      } catch (err) {
        state.textContent = `failed: ${err.message}`;
        state.className = "bad-text upload-state";
        item.dataset.state = "failed";
      }
    }
    if (done) notice(`Uploaded ${done} file${done === 1 ? "" : "s"} into ${here}.`);
    if (!leaving.signal.aborted) load();
  }

  picker.addEventListener("change", () => {
    const files = [...picker.files];
    picker.value = "";
    send(files);
  });

  // Drag and drop: the whole page is the target. A counter, as dragleave fires
  // when the pointer moves over a child.
  let depth = 0;
  const hasFiles = (e) => [...(e.dataTransfer?.types || [])].includes("Files");
  root.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth++;
    root.classList.add("dragging");
  });
  root.addEventListener("dragover", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = canWrite ? "copy" : "none";
  });
  root.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) root.classList.remove("dragging");
  });
  root.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    root.classList.remove("dragging");
    const items = [...(e.dataTransfer?.items || [])];
    const folders = items.filter((i) => i.kind === "file" && i.webkitGetAsEntry?.()?.isDirectory).length;
    const files = items.length
      ? items.filter((i) => i.kind === "file" && !i.webkitGetAsEntry?.()?.isDirectory).map((i) => i.getAsFile()).filter(Boolean)
      : [...(e.dataTransfer?.files || [])];
    if (folders) notice(`Folders cannot be dropped here (${folders} skipped): make the folder, then drop its files into it.`, "warn");
    send(files);
  });

  load();
  return () => leaving.abort();
}
