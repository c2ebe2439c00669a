// The console shell: header (config version, reload, token, language), the health banner on every
// page, hash routing between pages, and the live poll: every 2 s GET /status, /history and the last
// hour of /history/traffic, handed to the page on screen.

import { api, canAct, info, loadInfo, setToken, token } from "./api.js";
import { lang, setLang, t } from "./i18n.js";
import { fmtAge, fmtClock, fmtTime, h, mount, toast } from "./ui.js";
import overview from "./pages/overview.js";
import channels from "./pages/channels.js";
import destinations from "./pages/destinations.js";
import messages from "./pages/messages.js";
import dlq from "./pages/dlq.js";
import quality from "./pages/quality.js";

const PAGES = { overview, channels, destinations, messages, dlq, quality };
const STORE_NEARLY_FULL = 0.9; // share of engine.store.max_size at which the banner warns
const POLL_MS = 2000;

const ctx = {
  status: null,
  history: null,
  lastOk: 0,
  error: null,
  canAct,
  refresh: () => poll(),
};

let current = null;
let pollTimer = null;

function pageFromHash() {
  const name = (location.hash.replace(/^#\/?/, "").split(/[/?]/)[0]) || "overview";
  return PAGES[name] ? name : "overview";
}

function show(force = true) {
  const name = pageFromHash();
  if (!force && current === PAGES[name]) return; // e.g. #/messages → #/messages/<id>: the page handles it
  if (current && current.unmount) current.unmount();
  current = PAGES[name];
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === name);
  const root = document.getElementById("page");
  root.dataset.page = name;
  mount(root);
  current.mount(root, ctx);
  if (ctx.status) current.update(ctx);
}

function translateStatic() {
  document.title = t("app.title");
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  document.getElementById("lang-select").value = lang();
}

function renderHeader() {
  const cfg = ctx.status?.engine?.config;
  const infoEl = document.getElementById("config-info");
  if (cfg) {
    mount(infoEl, h("span", { class: "muted" }, `${t("hdr.config")} `),
      h("code", { id: "config-version", title: cfg.file || "" }, cfg.version || "?"),
      h("span", { class: "muted" }, ` · ${t("hdr.loaded")} `),
      h("span", { id: "config-loaded" }, fmtTime(cfg.loaded_at)),
      refusedChip());
  }
  const live = document.getElementById("live");
  const ok = ctx.lastOk && !ctx.error;
  live.className = `live ${ok ? "ok" : "bad"}`;
  live.textContent = ok ? `● ${t("hdr.live")}` : `● ${t("hdr.offline")}`;
  live.title = ctx.status?.engine
    ? `yonglink ${ctx.status.engine.version} · ${t("hdr.uptime")} ${fmtAge(ctx.status.engine.uptime_seconds)}`
    : "";
  document.getElementById("reload-btn").disabled = !canAct();
  renderBanner();
  renderHealth();
}

/** What needs attention, each with a link to its cause: destinations down or blocked, channels in
 * error, dead letters in the last hour, a store nearly full. */
export function healthItems(status, traffic) {
  const items = [];
  for (const d of status.destinations || []) {
    const why = d.last_error ? d.last_error.text : "";
    if (d.state === "down") {
      items.push({ level: "bad", key: `dest-${d.name}`, text: t("health.down", { name: d.name }), why,
        href: `#/destinations/${encodeURIComponent(d.name)}` });
    } else if (d.state === "blocked") {
      items.push({ level: "warn", key: `dest-${d.name}`, text: t("health.blocked", { name: d.name }), why,
        href: `#/messages/${encodeURIComponent(d.blocked_message_id || "")}` });
    }
  }
  for (const ch of status.channels || []) {
    if (ch.state === "error") {
      items.push({ level: "bad", key: `channel-${ch.name}`, href: "#/channels",
        text: t("health.channel", { name: ch.name }), why: ch.last_error ? ch.last_error.text : "" });
    }
  }
  const dead = traffic?.totals?.dead || 0;
  if (dead > 0) {
    const since = Math.floor(Date.now() / 1000 - 3600);
    items.push({ level: "warn", key: "dead", text: t("health.dead", { n: dead }), href: `#/dlq?since=${since}` });
  }
  const st = status.store || {};
  if (st.max_size_bytes && st.size_bytes >= STORE_NEARLY_FULL * st.max_size_bytes) {
    items.push({ level: "bad", key: "store", href: "#/overview",
      text: t("health.store", { pct: Math.round((100 * st.size_bytes) / st.max_size_bytes) }) });
  }
  return items;
}

function renderHealth() {
  const el = document.getElementById("health");
  if (!ctx.status || ctx.error) {
    el.hidden = true;
    return;
  }
  el.hidden = false;
  const items = healthItems(ctx.status, ctx.traffic);
  const level = items.some((i) => i.level === "bad") ? "bad" : items.length ? "warn" : "ok";
  el.className = `health ${level}`;
  el.dataset.level = level;
  mount(el, items.length
    ? items.map((i) => h("a", { class: `health-item ${i.level}`, href: i.href, "data-health": i.key },
      h("span", { class: "health-label" }, i.text), i.why ? h("span", { class: "health-why" }, `: ${i.why}`) : null))
    : h("span", { class: "health-item ok", "data-health": "ok" }, t("health.ok")));
}

function refusedChip() {
  const last = ctx.reload;
  if (!last || last.ok) return null;
  const text = (last.errors || []).join("\n");
  return h("button", { type: "button", class: "chip-bad", id: "reload-refused", title: text,
    onclick: () => toast(`${t("hdr.reload_refused")}: ${text}`, "error") },
  `${t("hdr.reload_refused")} ${fmtClock(last.at)}`);
}

function renderBanner() {
  const banner = document.getElementById("banner");
  if (ctx.error && ctx.error.status === 401) {
    banner.hidden = false;
    banner.className = "banner warn";
    banner.textContent = token() ? t("auth.rejected") : t("auth.required");
  } else if (ctx.error) {
    banner.hidden = false;
    banner.className = "banner bad";
    banner.textContent = `${t("hdr.offline")}: ${ctx.error.message}`;
  } else {
    banner.hidden = true;
  }
}

function renderTokenForm() {
  const form = document.getElementById("token-form");
  if (!info.token_required && !token()) {
    mount(form); // no token configured: nothing to enter
    return;
  }
  if (token()) {
    mount(form, h("span", { class: "token-set", id: "token-state" }, t("auth.unlocked")),
      h("button", { type: "button", class: "btn small", id: "token-clear", onclick: () => {
        setToken("");
        renderTokenForm();
        show();
        poll();
      } }, t("auth.logout")));
    return;
  }
  const input = h("input", { type: "password", id: "token-input", placeholder: t("auth.enter"),
    "aria-label": t("auth.token"), size: 14 });
  mount(form, input, h("button", { type: "submit", class: "btn small", id: "token-submit" }, t("auth.login")));
  if (info.token_required) form.classList.add("needed");
}

async function submitToken(event) {
  event.preventDefault();
  const input = document.getElementById("token-input");
  if (!input || !input.value) return;
  setToken(input.value.trim());
  try {
    await api("status");
  } catch (err) {
    if (err.status === 401) {
      setToken("");
      toast(t("auth.rejected"), "error");
      renderTokenForm();
      return;
    }
  }
  renderTokenForm();
  show();
  poll();
}

async function reloadConfig() {
  const btn = document.getElementById("reload-btn");
  btn.disabled = true;
  btn.textContent = t("hdr.reloading");
  try {
    const res = await api("reload", { method: "POST" });
    toast(`${t("hdr.reload_ok")}: ${res.version}`, "ok");
  } catch (err) {
    const errors = err.data && err.data.errors ? err.data.errors.join("\n") : err.message;
    toast(`${t("hdr.reload_refused")}: ${errors}`, "error");
  } finally {
    btn.textContent = t("hdr.reload");
    btn.disabled = !canAct();
    poll();
  }
}

async function poll() {
  clearTimeout(pollTimer);
  try {
    const [status, history, reload, traffic] = await Promise.all([
      api("status"), api("history").catch(() => null), api("reload").catch(() => null),
      api("history/traffic?range=1h").catch(() => null)]);
    ctx.status = status;
    ctx.history = history;
    ctx.traffic = traffic;
    ctx.reload = reload && reload.last;
    ctx.error = null;
    ctx.lastOk = Date.now();
  } catch (err) {
    ctx.error = err;
    if (err.status === 401 && !document.getElementById("token-input") && !token()) renderTokenForm();
  }
  renderHeader();
  if (current && ctx.status && !ctx.error) {
    try { current.update(ctx); } catch (err) { console.error(err); }
  }
  document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
  pollTimer = setTimeout(poll, document.hidden ? POLL_MS * 5 : POLL_MS);
}

async function main() {
  setLang(lang());
  translateStatic();
  await loadInfo();
  renderTokenForm();
  document.getElementById("token-form").addEventListener("submit", submitToken);
  document.getElementById("reload-btn").addEventListener("click", reloadConfig);
  document.getElementById("lang-select").addEventListener("change", (e) => {
    setLang(e.target.value);
    translateStatic();
    renderTokenForm();
    renderHeader();
    show();
  });
  window.addEventListener("hashchange", () => show(false));
  document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });
  show();
  await poll();
  document.body.dataset.ready = "1";
}

main();
