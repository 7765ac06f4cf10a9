// Calls to the REST API with the session cookie. Every call has a time limit,
// so a page never waits forever on a server or backend that does not answer;
// a 401 anywhere sends the user back to the login page.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** How long a call may take unless told otherwise (status probes backends for up to 5 s). */
export const TIMEOUT_MS = 8000;

let unauthorized = () => {};

/** What to do when the server says the session is not (or no longer) valid. */
export function onUnauthorized(f) {
  unauthorized = f;
}

/** Changes made with the cookie must carry this header (the server refuses them otherwise). */
export const CHANGE_HEADERS = { "X-Requested-With": "cloudraid" };

function isAbort(e) {
  return e && (e.name === "AbortError" || e.name === "TimeoutError");
}

export function aborted(e) {
  return e instanceof DOMException && e.name === "AbortError";
}

/**
 * One call: resolves to the parsed JSON (or text), rejects with an ApiError.
 * opts: method, body (an object is sent as JSON; a Blob as it is), timeout (ms;
 * 0: none), signal (aborts the call: rejects with an AbortError), auth (false:
 * a 401 is returned as an error without leaving the page), json (true: an
 * answer that is not JSON, such as a file's bytes, is not read but rejected
 * with the code "not_json").
 */
export async function api(path, opts = {}) {
  const { method = "GET", body, timeout = TIMEOUT_MS, signal, auth = true, json = false } = opts;
  const ctrl = new AbortController();
  let timedOut = false;
  const timer = timeout ? setTimeout(() => {
    timedOut = true;
    ctrl.abort();
  }, timeout) : null;
  const relay = () => ctrl.abort();
  if (signal) {
    if (signal.aborted) ctrl.abort();
    signal.addEventListener("abort", relay);
  }
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") Object.assign(headers, CHANGE_HEADERS);
  let payload = body;
  if (body !== undefined && !(body instanceof Blob) && typeof body !== "string") {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  try {
    const r = await fetch(path, {
      method, headers, body: payload, credentials: "same-origin", cache: "no-store", signal: ctrl.signal,
    });
    const type = r.headers.get("content-type") || "";
    if (json && r.ok && !type.includes("json")) {
      // A file where a listing was expected: not read (it may be large).
      await r.body?.cancel();
      throw new ApiError(r.status, "not_json", "a file, not a folder");
    }
    const data = type.includes("json") ? await r.json().catch(() => null) : await r.text();
    if (!r.ok) {
      const err = data && data.error;
      const e = new ApiError(r.status, err?.code || `http_${r.status}`,
        err?.message || (typeof data === "string" && data.trim()) || `${r.status} ${r.statusText}`);
      if (r.status === 401 && auth) unauthorized(e.message);
      throw e;
    }
    return data;
  } catch (e) {
    if (e instanceof ApiError) throw e;
    if (isAbort(e) || ctrl.signal.aborted) {
      if (timedOut) throw new ApiError(0, "timeout", `the server did not answer within ${Math.round(timeout / 1000)} s`);
      throw new DOMException("left the page", "AbortError");
    }
    throw new ApiError(0, "network", `the server could not be reached (${e.message})`);
  } finally {
    clearTimeout(timer);
    if (signal) signal.removeEventListener("abort", relay);
  }
}

/**
 * Uploads a File or Blob to a URL with PUT, reporting progress
 * (onProgress(sent, total)); resolves to the JSON answer. No time limit: a
 * large file takes as long as it takes, and the upload shows its progress.
 */
export function upload(url, blob, onProgress) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open("PUT", url);
    for (const [k, v] of Object.entries(CHANGE_HEADERS)) x.setRequestHeader(k, v);
    x.setRequestHeader("Content-Type", "application/octet-stream");
    x.responseType = "text";
    x.upload.onprogress = (e) => onProgress?.(e.loaded, e.lengthComputable ? e.total : blob.size);
    x.onload = () => {
      let data = null;
      try {
        data = JSON.parse(x.responseText);
      } catch {
        data = null;
      }
      if (x.status >= 200 && x.status < 300) {
        resolve(data);
        return;
      }
      const e = new ApiError(x.status, data?.error?.code || `http_${x.status}`,
        data?.error?.message || `${x.status} ${x.statusText}`);
      if (x.status === 401) unauthorized(e.message);
      reject(e);
    };
    x.onerror = () => reject(new ApiError(0, "network", "the upload was cut off (server unreachable)"));
    x.onabort = () => reject(new ApiError(0, "aborted", "the upload was cancelled"));
    x.send(blob);
  });
}
