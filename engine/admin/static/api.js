// The admin API as the console uses it: relative URLs (so a reverse-proxy prefix works), the bearer
// token from sessionStorage (gone when the tab closes), and one error type carrying the HTTP status.

const TOKEN_KEY = "yonglink.token";

export class ApiError extends Error {
  constructor(status, text) {
    super(text || `HTTP ${status}`);
    this.status = status;
  }
}

export function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** Server facts the console needs before anything else (public: holds no data). */
export const info = { token_required: false };

export async function loadInfo() {
  try {
    const res = await fetch("console/info.json", { cache: "no-store" });
    if (res.ok) Object.assign(info, await res.json());
  } catch (_) { /* engine unreachable: the status poll reports it */ }
  return info;
}

/** True when actions may be attempted: no token configured, or one entered. */
export function canAct() { return !info.token_required || Boolean(token()); }

/** Drop empty values so `?channel=&state=` filters are not sent as empty strings. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

export async function api(path, { method = "GET", body } = {}) {
  // X-Requested-With: no cross-site HTML form can send it, so the engine accepts state changes that carry
  // it even without a token (engine/admin/auth.py, CSRF check).
  const headers = { Accept: "application/json", "X-Requested-With": "yonglink-console" };
  const tok = token();
  if (tok) headers.Authorization = `Bearer ${tok}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path.replace(/^\//, ""), {
    method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!res.ok) {
    if (res.status === 401) info.token_required = true;
    const detail = data && typeof data === "object"
      ? (data.error || (data.errors && data.errors.join("\n")) || data.message || text) : text;
    const err = new ApiError(res.status, detail);
    err.data = data;
    throw err;
  }
  return data;
}
