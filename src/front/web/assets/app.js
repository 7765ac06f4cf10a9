// The dashboard: login, the page frame and hash routing (#/overview,
// #/files/PATH, #/snapshots[/ID/PATH], #/jobs, #/maintenance[/TASK]).
// Each page is a module whose render(root, ctx) returns its cleanup function.
import { api, onUnauthorized, ApiError } from "./api.js";
import { el, fill } from "./ui.js";
import * as overview from "./overview.js";
import * as files from "./files.js";
import * as snapshots from "./snapshots.js";
import * as jobs from "./jobs.js";
import * as maintenance from "./maintenance.js";

const PAGES = { overview, files, snapshots, jobs, maintenance };
const TITLES = { overview: "Overview", files: "Files", snapshots: "Snapshots", jobs: "Jobs", maintenance: "Maintenance" };

const app = document.getElementById("app");
const topbar = document.getElementById("topbar");
const nav = document.getElementById("nav");
const navToggle = document.getElementById("nav-toggle");

let user = null; // {name, role} once logged in
let leave = null; // the current page's cleanup
let shown = null; // the hash the current page was drawn for

const ROLES = ["read", "write", "admin"];

/** May the logged-in token do what `role` allows? */
function may(role) {
  return user !== null && ROLES.indexOf(user.role) >= ROLES.indexOf(role);
}

function route() {
  const h = location.hash.replace(/^#\/?/, "");
  const [page, ...rest] = h.split("/");
  return { page: PAGES[page] ? page : "overview", tail: rest.join("/") };
}

function closePage() {
  if (leave) {
    try {
      leave();
    } catch (e) {
      console.error(e);
    }
  }
  leave = null;
  shown = null;
}

function render() {
  if (!user) return;
  if (location.hash === shown) return;
  closePage();
  shown = location.hash;
  const { page, tail } = route();
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  setNav(false);
  document.title = `${TITLES[page]} · cloudraid`;
  const root = el("div", { class: `page page-${page}`, id: `page-${page}` });
  fill(app, root);
  const ctx = { user, may, tail, go: (hash) => { location.hash = hash; } };
  try {
    leave = PAGES[page].render(root, ctx) || null;
  } catch (e) {
    console.error(e);
    fill(root, el("p", { class: "banner banner-bad", role: "alert" }, `This page failed to draw: ${e.message}`));
  }
}

function setNav(open) {
  nav.classList.toggle("open", open);
  navToggle.setAttribute("aria-expanded", String(open));
}

/** The login form; message: why it is shown (a refused token, an ended session). */
function login(message) {
  closePage();
  user = null;
  topbar.hidden = true;
  document.title = "Log in · cloudraid";
  const token = el("input", {
    id: "token", name: "token", type: "password", autocomplete: "current-password", required: true,
    spellcheck: "false", placeholder: "crd_…", "aria-describedby": "login-help",
  });
  const error = el("p", { id: "login-error", class: "login-error", role: "alert", hidden: !message }, message || "");
  const button = el("button", { id: "login-submit", class: "btn btn-primary", type: "submit" }, "Log in");
  const form = el("form", { id: "login", class: "login", novalidate: true },
    el("div", { class: "login-brand" }, el("img", { src: "/assets/icon.svg", alt: "", width: "40", height: "40" }),
      el("h1", {}, "cloudraid")),
    el("label", { for: "token" }, "API token"),
    token,
    el("p", { id: "login-help", class: "muted" }, "Make one with ",
      el("code", {}, "cloudraid token create --config FILE --name NAME --role read|write|admin"),
      ". It is kept in a cookie this browser sends only to this server."),
    error,
    button);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const t = token.value.trim();
    if (!t) {
      error.textContent = "Enter a token.";
      error.hidden = false;
      return;
    }
    button.disabled = true;
    button.textContent = "Logging in…";
    try {
      const who = await api("/api/v1/session", { method: "POST", body: { token: t }, auth: false });
      start(who);
    } catch (err) {
      error.textContent = err.status === 401 ? `That token was refused: ${err.message}` : `Could not log in: ${err.message}`;
      error.hidden = false;
      button.disabled = false;
      button.textContent = "Log in";
      token.select();
    }
  });
  fill(app, el("div", { class: "page page-login", id: "page-login" }, form));
  token.focus();
}

function start(who) {
  user = who;
  topbar.hidden = false;
  document.getElementById("whoami").textContent = `${who.name} (${who.role})`;
  if (!location.hash || location.hash === "#" || location.hash === "#/login") {
    history.replaceState(null, "", "#/overview");
  }
  shown = null;
  render();
}

async function logout() {
  try {
    await api("/api/v1/session", { method: "DELETE", auth: false });
  } catch {
    // The cookie is gone from this page's point of view either way.
  }
  login("You are logged out.");
}

onUnauthorized((message) => {
  if (user) login(`Your session has ended: log in again. (The server said: ${message})`);
});

navToggle.addEventListener("click", () => setNav(!nav.classList.contains("open")));
document.getElementById("logout").addEventListener("click", logout);
window.addEventListener("hashchange", render);

(async () => {
  try {
    start(await api("/api/v1/session", { auth: false }));
  } catch (e) {
    login(e instanceof ApiError && e.status === 401 ? "" : `The server did not answer: ${e.message}`);
  }
})();
