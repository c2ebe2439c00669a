// Messages: a search form over GET /messages (each message with its delivery state per destination:
// a message mapped but still queued on a down destination is not shown as done) and a detail view of
// one message's path
// (received → processed with each route's result → each delivery and its attempts). Raw content and
// mapped records are shown only when the admin token has been entered (the API decides what it sends).

import { api, info, query, token } from "../api.js";
import { stateLabel, t } from "../i18n.js";
import { badge, epochOf, fmtTime, h, mount } from "../ui.js";

const STATES = ["received", "mapped", "filtered", "failed", "rejected"];
let form = null;
let results = null;
let detail = null;
let pages = [];   // `before` cursors of pages shown so far (for "newest")
let lastQuery = {};

function field(name, label, input) {
  return h("label", { class: "field" }, h("span", {}, label), input);
}

function channelOptions(ctx) {
  const names = (ctx.status?.channels || []).map((c) => c.name);
  return [h("option", { value: "" }, t("common.any")), ...names.map((n) => h("option", { value: n }, n))];
}

/** A delivery's state as the list shows it: queued with attempts is `retrying`; queued on a down
 * destination is `waiting`. */
function deliveryState(d, down) {
  if (d.state !== "queued") return d.state;
  if (down.has(d.destination)) return "waiting";
  return d.attempts > 0 ? "retrying" : "queued";
}

function deliveriesCell(m, down) {
  const ds = m.deliveries || [];
  if (!ds.length) return h("td", { class: "deliveries muted" }, t("msg.no_deliveries"));
  return h("td", { class: "deliveries" }, ds.map((d) => {
    const state = deliveryState(d, down);
    return h("span", { class: `dpill st-${state}`, "data-destination": d.destination, "data-delivery": state,
      title: d.attempts ? `${t("dlq.attempts")} ${d.attempts}` : "" },
    h("span", { class: "dpill-dest" }, d.destination), " ", h("span", { class: "dpill-state" }, stateLabel(state)));
  }));
}

/** The message's state pill: `mapped` is green only once every delivery is sent. */
function stateBadge(m) {
  const pending = (m.deliveries || []).some((d) => d.state !== "sent");
  return badge(m.state, m.state === "mapped" && pending ? "pending" : "");
}

let lastCtx = null;
let shown = null; // the last search's answer: { items, next }
let shownDown = ""; // the down destinations it was drawn with

function itemsOf(data) {
  if (Array.isArray(data)) return { items: data, next: null };
  return { items: data?.items || data?.messages || [], next: data?.next_before ?? null };
}

async function search(before) {
  const fd = new FormData(form);
  lastQuery = {
    channel: fd.get("channel"), control_id: fd.get("control_id")?.trim(), state: fd.get("state"),
    facility: fd.get("facility")?.trim(), since: epochOf(fd.get("since")), until: epochOf(fd.get("until")),
    limit: 50,
  };
  mount(results, h("p", { class: "muted" }, t("common.loading")));
  let data;
  try {
    data = await api(`messages${query({ ...lastQuery, before })}`);
  } catch (err) {
    mount(results, h("p", { class: "error-text" }, err.message));
    return;
  }
  shown = itemsOf(data);
  renderResults();
}

function downNow() {
  return (lastCtx?.status?.destinations || []).filter((d) => d.state === "down").map((d) => d.name).sort();
}

/** The result table; drawn again when a destination goes down or recovers (its pills change). */
function renderResults() {
  if (!shown) return;
  const { items, next } = shown;
  shownDown = downNow().join("\n");
  const down = new Set(downNow());
  const table = h("table", { class: "grid-table clickable", id: "messages-table" },
    h("thead", {}, h("tr", {},
      h("th", {}, t("msg.received_at")), h("th", {}, t("common.channel")), h("th", {}, t("msg.control_id")),
      h("th", {}, t("msg.type")), h("th", {}, t("msg.facility")), h("th", {}, t("common.state")),
      h("th", {}, t("msg.deliveries")), h("th", {}, t("common.error")))),
    h("tbody", {}, items.length ? items.map((m) => h("tr", {
      "data-message": m.id, tabindex: 0,
      onclick: () => { location.hash = `#/messages/${encodeURIComponent(m.id)}`; },
      onkeydown: (e) => { if (e.key === "Enter") location.hash = `#/messages/${encodeURIComponent(m.id)}`; },
    },
    h("td", { class: "nowrap" }, fmtTime(m.received_at)), h("td", {}, m.channel),
    h("td", { class: "mono" }, m.control_id || ""), h("td", {}, m.message_type || ""),
    h("td", {}, m.sending_facility || ""), h("td", {}, stateBadge(m)), deliveriesCell(m, down),
    h("td", { class: "err" }, m.error || ""))) : h("tr", {}, h("td", { colspan: 8, class: "empty" },
      t("common.no_rows")))));
  const nav = h("div", { class: "pager" },
    pages.length ? h("button", { type: "button", class: "btn small", onclick: () => { pages = []; search(); } },
      t("common.newest")) : null,
    next ? h("button", { type: "button", class: "btn small", onclick: () => { pages.push(next); search(next); } },
      t("common.older")) : null);
  mount(results, h("div", { class: "table-wrap" }, table), nav);
}

function attemptsOf(d) {
  for (const key of ["attempt_log", "history", "log", "attempts"]) {
    if (Array.isArray(d[key])) return d[key];
  }
  return [];
}

function step(kind, title, time, body) {
  return h("li", { class: `step step-${kind}` }, h("div", { class: "step-head" },
    h("span", { class: "step-title" }, title), h("span", { class: "muted" }, time ? fmtTime(time) : "")), body);
}

function pre(text, id) {
  return h("pre", { class: "payload", id }, text);
}

async function showDetail(id) {
  mount(detail, h("p", { class: "muted" }, t("common.loading")));
  detail.hidden = false;
  let data;
  try {
    data = await api(`messages/${encodeURIComponent(id)}`);
  } catch (err) {
    mount(detail, h("p", { class: "error-text" }, err.status === 404 ? t("msg.not_found") : err.message));
    return;
  }
  const m = data.message || data;
  const res = data.results || m.results || [];
  const deliveries = data.deliveries || m.deliveries || [];
  // The API decides (token, or a loopback client when no token is configured); with a token configured
  // nothing is shown before it is entered.
  const unlocked = Boolean(token()) || !info.token_required;
  const steps = [
    step("received", `${t("msg.received")} · ${m.channel}`, m.received_at,
      h("div", { class: "small" }, [
        m.peer ? `${t("msg.peer")} ${m.peer}` : null, m.message_type, m.control_id && `MSH-10 ${m.control_id}`,
        m.sending_facility && `MSH-4 ${m.sending_facility}`, m.charset].filter(Boolean).join(" · "))),
  ];
  if (m.state && m.state !== "received") {
    steps.push(step(m.state, [badge(m.state), " ", t("msg.processed")], m.processed_at,
      [m.error ? h("div", { class: "error-text" }, m.error) : null,
        res.map((r) => h("div", { class: "route-result", "data-route": r.route_id },
          h("strong", {}, r.route_id), r.dataset ? ` → ${r.dataset}` : "",
          r.filtered ? h("span", { class: "muted" }, ` (${r.filtered})`) : null,
          r.error ? h("div", { class: "error-text" }, r.error) : null,
          unlocked && r.record ? h("details", {}, h("summary", {}, t("msg.record")),
            pre(JSON.stringify(r.record, null, 2))) : null))]));
  }
  for (const d of deliveries) {
    const attempts = attemptsOf(d);
    steps.push(step(d.state || "queued", [badge(d.state), ` ${t("msg.delivery")} → ${d.destination}`],
      d.last_attempt_at || d.updated_at || d.created_at,
      [h("div", { class: "small" }, [d.route_id && `${t("msg.route")} ${d.route_id}`,
        typeof d.attempts === "number" ? `${t("dlq.attempts")} ${d.attempts}` : null,
        d.last_error || d.error].filter(Boolean).join(" · ")),
      attempts.length ? h("table", { class: "attempts" }, h("tbody", {}, attempts.map((a, i) => h("tr", {},
        h("td", {}, `#${a.attempt ?? i + 1}`),
        h("td", { class: "nowrap" }, fmtTime(a.at ?? a.attempted_at ?? a.time ?? a.started_at)),
        h("td", {}, badge(a.result ?? a.outcome ?? a.state ?? "")),
        h("td", { class: "err" }, a.error ?? a.response ?? a.text ?? ""))))) : null]));
  }
  const raw = data.raw ?? m.raw;
  mount(detail,
    h("div", { class: "detail-head" }, h("h2", {}, `${t("msg.detail")} `, h("code", {}, m.id)),
      h("button", { type: "button", class: "btn small", onclick: () => { location.hash = "#/messages"; } },
        t("common.close"))),
    h("h3", {}, t("msg.path")),
    h("ol", { class: "timeline", id: "message-path" }, steps),
    unlocked && raw ? [h("h3", {}, t("msg.raw")), pre(String(raw).replace(/\r\n?/g, "\n"), "message-raw")]
      : h("p", { class: "muted locked", id: "raw-locked", title: data.raw_hidden || "" }, t("msg.token_to_view")));
  for (const tr of document.querySelectorAll("#messages-table tr[data-message]")) {
    tr.classList.toggle("selected", tr.dataset.message === m.id);
  }
}

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  if (parts[0] === "messages" && parts[1]) showDetail(decodeURIComponent(parts[1]));
  else if (detail) detail.hidden = true;
}

export default {
  mount(root, ctx) {
    lastCtx = ctx;
    form = h("form", { class: "filters", id: "messages-form", onsubmit: (e) => { e.preventDefault(); pages = []; search(); } },
      field("control_id", t("msg.control_id"), h("input", { name: "control_id", value: lastQuery.control_id || "" })),
      field("channel", t("common.channel"), h("select", { name: "channel" }, channelOptions(ctx))),
      field("state", t("common.state"), h("select", { name: "state" },
        h("option", { value: "" }, t("common.any")), STATES.map((s) => h("option", { value: s }, stateLabel(s))))),
      field("facility", t("msg.facility"), h("input", { name: "facility", value: lastQuery.facility || "" })),
      field("since", t("common.since"), h("input", { name: "since", type: "datetime-local" })),
      field("until", t("common.until"), h("input", { name: "until", type: "datetime-local" })),
      h("div", { class: "field buttons" }, h("button", { type: "submit", class: "btn primary" }, t("common.search")),
        h("button", { type: "reset", class: "btn" }, t("common.clear"))));
    results = h("div", { id: "messages-results" });
    detail = h("section", { class: "card detail", id: "message-detail", hidden: true });
    mount(root, h("h1", {}, t("msg.title")), form, h("div", { class: "split" }, results, detail));
    window.addEventListener("hashchange", route);
    route();
    search();
  },
  update(ctx) {
    lastCtx = ctx;
    if (downNow().join("\n") !== shownDown) renderResults();
    const select = form?.querySelector("select[name=channel]");
    if (select && select.options.length !== (ctx.status.channels || []).length + 1) {
      const value = select.value;
      mount(select, channelOptions(ctx));
      select.value = value;
    }
  },
  unmount() { window.removeEventListener("hashchange", route); },
};
