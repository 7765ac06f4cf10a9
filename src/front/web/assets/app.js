// The dashboard: log in with a token, then the volume's status.
const app = document.getElementById("app");

async function api(path, opts = {}) {
  const r = await fetch(path, { credentials: "same-origin", ...opts,
    headers: { "X-Requested-With": "cloudraid", ...(opts.headers || {}) } });
  const body = r.headers.get("content-type")?.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error(body?.error?.message || r.statusText);
  return body;
}

function login(message) {
  app.innerHTML = `<form id="login"><h1>cloudraid</h1><p>${message || ""}</p>
    <label>Token <input id="token" type="password" autocomplete="off"></label>
    <button>Log in</button></form>`;
  document.getElementById("login").onsubmit = async (e) => {
    e.preventDefault();
    try {
      await api("/api/v1/session", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: document.getElementById("token").value }) });
      overview();
    } catch (err) { login(err.message); }
  };
}

async function overview() {
  try {
    const s = await api("/api/v1/status");
    app.textContent = `${s.volume_name}: ${s.files} files`;
  } catch (err) { login(err.message); }
}

overview();
