// The API client of the web app: the session, authenticated requests, uploads, downloads.
//
// Tokens: the access token is kept in this module's memory only (never in
// localStorage, never in a cookie a script could read). The refresh token is an
// HttpOnly cookie that only /api/auth/session and /api/auth/session/refresh ever
// see; to use it, the page sends the value of the readable csrf_refresh_token
// cookie in the X-CSRF-TOKEN header (double submit). A reload signs in again
// silently from the cookie. See docs/web.md.

const SESSION = "/api/auth/session";

/** The API path of one job, or of something under it: jobPath(id, "/export?format=csv"). */
export function jobPath(id, rest = "") {
  return `/api/jobs/${encodeURIComponent(id)}${rest}`;
}
const CSRF_COOKIE = "csrf_refresh_token";
const CSRF_HEADER = "X-CSRF-TOKEN";

/** An answer of the API that is not a success: its status, error code and message. */
export class ApiError extends Error {
  constructor(status, code, message, body = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

// The API's error body is {"error": "<code>", "message": "<text>"}; an error
// object under "error" ({"error": {"code", "message"}}) is understood as well.
function errorFromBody(status, body, fallback) {
  if (body && typeof body === "object") {
    const inner = body.error && typeof body.error === "object" ? body.error : body;
    const code = typeof inner.code === "string" ? inner.code : typeof body.error === "string" ? body.error : "error";
    const message = typeof inner.message === "string" && inner.message ? inner.message : fallback;
    return new ApiError(status, code, message, body);
  }
  return new ApiError(status, "error", fallback, body);
}

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's error page): say the status.
  }
  return errorFromBody(response.status, body, `the server answered ${response.status} ${response.statusText}`.trim());
}

function networkError(error) {
  if (error && error.name === "AbortError") return error;
  return new ApiError(0, "network", "the service could not be reached (is it running?)");
}

function readCookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

// --- The session ---------------------------------------------------------------------

const session = { token: null, expiresAt: 0, user: null };
let refreshing = null;
let refreshTimer = null;
const listeners = new Set();

/** Call ``listener(signedIn)`` whenever the user signs in or out (also when a session ends by itself). */
export function onSessionChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function notify() {
  for (const listener of listeners) listener(signedIn());
}

export function signedIn() {
  return session.token !== null;
}

export function currentUser() {
  return session.user;
}

function keepToken(answer) {
  session.token = answer.access_token;
  const lifetime = Math.max(1, Number(answer.expires_in) || 60) * 1000;
  session.expiresAt = Date.now() + lifetime;
  clearTimeout(refreshTimer);
  // Renew before it expires: a minute early, or at four fifths of a short lifetime.
  const lead = Math.min(60_000, lifetime / 5);
  refreshTimer = setTimeout(() => refreshSession().catch(() => {}), Math.max(1000, lifetime - lead));
}

function forget() {
  const was = signedIn();
  session.token = null;
  session.expiresAt = 0;
  session.user = null;
  clearTimeout(refreshTimer);
  if (was) notify();
}

/**
 * A new access token from the session cookie. True when there is one; false when
 * there is no session (no cookie, or it was revoked or expired). Concurrent
 * callers share one request. A network failure throws and keeps the session.
 */
export function refreshSession() {
  if (!refreshing) {
    refreshing = (async () => {
      const csrf = readCookie(CSRF_COOKIE);
      if (!csrf) {
        forget();
        return false;
      }
      let response;
      try {
        response = await fetch(`${SESSION}/refresh`, {
          method: "POST",
          credentials: "same-origin",
          headers: { [CSRF_HEADER]: csrf },
        });
      } catch (error) {
        throw networkError(error);
      }
      if (response.status === 401) {
        forget();
        return false;
      }
      if (!response.ok) throw await errorFrom(response);
      const wasSignedIn = signedIn();
      keepToken(await response.json());
      if (!session.user) session.user = await loadUser();
      if (!wasSignedIn) notify();
      return true;
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/** On page load: sign in silently from the session cookie, if there is one. */
export async function restoreSession() {
  try {
    return await refreshSession();
  } catch {
    return false;
  }
}

async function loadUser() {
  try {
    return await api("/api/auth/me");
  } catch {
    return null;
  }
}

export async function signIn(username, password) {
  // A sign-out still on its way would clear the new session's cookies when it lands.
  await signingOut;
  const response = await send(SESSION, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username, password }),
  });
  if (!response.ok) throw await errorFrom(response);
  keepToken(await response.json());
  session.user = await loadUser();
  notify();
}

export async function register(username, password) {
  const response = await send("/api/auth/register", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username, password }),
  });
  if (!response.ok) throw await errorFrom(response);
  await signIn(username, password);
}

let signingOut = Promise.resolve();

/**
 * Sign out: the page forgets the access token at once (listeners hear of it), then the
 * access token and the session's refresh token (and its cookies) are revoked, in that
 * order: ending the session revokes its whole login, this access token with it, so a
 * logout sent after it, or beside it, could be refused.
 */
export async function signOut() {
  const token = session.token;
  const csrf = readCookie(CSRF_COOKIE);
  forget();
  signingOut = (async () => {
    if (token) {
      await fetch("/api/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${token}` } }).catch(
        () => {},
      );
    }
    if (csrf) {
      await fetch(SESSION, { method: "DELETE", credentials: "same-origin", headers: { [CSRF_HEADER]: csrf } }).catch(
        () => {},
      );
    }
  })();
  await signingOut;
}

// --- Requests ------------------------------------------------------------------------

async function send(url, init) {
  try {
    return await fetch(url, init);
  } catch (error) {
    throw networkError(error);
  }
}

async function freshToken() {
  if (session.token && Date.now() > session.expiresAt - 5000) await refreshSession();
  return session.token;
}

/**
 * An authenticated request. ``json`` is sent as a JSON body; ``raw`` answers the
 * Response itself (for downloads). A 401 renews the access token once and retries;
 * when the session is gone the page falls back to its sign-in form.
 */
export async function api(path, { method = "GET", json, body, headers = {}, signal, raw = false } = {}) {
  const build = (token) => {
    const all = { ...headers };
    if (token) all.Authorization = `Bearer ${token}`;
    if (json !== undefined) all["Content-Type"] = "application/json";
    return { method, headers: all, signal, body: json !== undefined ? JSON.stringify(json) : body };
  };
  let response = await send(path, build(await freshToken()));
  if (response.status === 401 && session.token) {
    if (await refreshSession()) response = await send(path, build(session.token));
  }
  if (!response.ok) throw await errorFrom(response);
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

/**
 * Upload a job (multipart form) with XMLHttpRequest, for its upload progress.
 * ``onProgress(loaded, total)``; ``signal`` aborts it. One Idempotency-Key per
 * upload, so the retry after a renewed token never makes a second job.
 */
export function upload(form, { onProgress, signal } = {}) {
  const key = crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2) + Date.now();
  const once = (token) =>
    new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/api/jobs");
      if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
      xhr.setRequestHeader("Idempotency-Key", key);
      xhr.upload.addEventListener("progress", (event) => {
        if (onProgress) onProgress(event.loaded, event.lengthComputable ? event.total : null);
      });
      xhr.addEventListener("load", () => {
        let parsed = null;
        try {
          parsed = JSON.parse(xhr.responseText);
        } catch {
          // Not JSON.
        }
        resolve({ status: xhr.status, body: parsed, statusText: xhr.statusText });
      });
      xhr.addEventListener("error", () => reject(new ApiError(0, "network", "the upload failed: the connection to the service was lost")));
      xhr.addEventListener("abort", () => reject(new DOMException("the upload was cancelled", "AbortError")));
      if (signal) {
        if (signal.aborted) return xhr.abort();
        signal.addEventListener("abort", () => xhr.abort(), { once: true });
      }
      xhr.send(form);
    });
  return (async () => {
    let answer = await once(await freshToken());
    if (answer.status === 401 && (await refreshSession())) answer = await once(session.token);
    if (answer.status >= 200 && answer.status < 300) return answer.body;
    throw errorFromBody(answer.status, answer.body, `the upload was refused (${answer.status} ${answer.statusText})`.trim());
  })();
}

/** The file name a Content-Disposition header gives (RFC 6266: filename* first). */
export function filenameOf(disposition, fallback) {
  if (disposition) {
    const star = /filename\*\s*=\s*([^']*)'[^']*'([^;]+)/i.exec(disposition);
    if (star) {
      try {
        return decodeURIComponent(star[2].trim());
      } catch {
        // A malformed encoding: try the plain filename.
      }
    }
    const plain = /filename\s*=\s*("((?:[^"\\]|\\.)*)"|[^;]+)/i.exec(disposition);
    if (plain) return (plain[2] !== undefined ? plain[2].replace(/\\(.)/g, "$1") : plain[1]).trim();
  }
  return fallback;
}

/** Fetch an authenticated download into a Blob: {url (an object URL), filename, size}. */
export async function download(path, fallbackName) {
  const response = await api(path, { raw: true });
  const blob = await response.blob();
  const filename = filenameOf(response.headers.get("Content-Disposition"), fallbackName);
  return { url: URL.createObjectURL(blob), filename, size: blob.size };
}
