// Channels: one row per inbound channel, live counters, a one-minute msg/s sparkline, and the
// start / stop / pause / resume buttons (POST /channels/{name}/{action}).

import { api } from "../api.js";
import { stateLabel, t } from "../i18n.js";
import { badge, fmtClock, fmtNum, h, mount, sparkline, toast } from "../ui.js";

const COUNTERS = ["received", "rejected", "duplicate", "filtered", "mapped", "failed"];
const ACTIONS = {
  start: (s) => ["stopped", "error"].includes(s),
  stop: (s) => ["started", "starting", "paused", "reconnecting", "error"].includes(s),
  pause: (s) => ["started", "reconnecting"].includes(s),
  resume: (s) => s === "paused",
};

let tbody = null;
let note = null;
let busy = new Set();

function listenOf(ch) {
  if (ch.listen) return ch.listen;
  if (ch.url) return ch.url;
  if (ch.broker) return `${ch.broker}${ch.queue ? ` → ${ch.queue}` : ""}`;
  return t("common.none");
}

async function act(ctx, name, action) {
  busy.add(name);
  ctx.refresh();
  try {
    const res = await api(`channels/${encodeURIComponent(name)}/${action}`, { method: "POST" });
    const state = res && (res.state || res.channel?.state);
    toast(t("act.done", { name, state: state ? stateLabel(state) : action }), "ok");
  } catch (err) {
    toast(`${t("act.failed")}: ${err.message}`, "error");
  } finally {
    busy.delete(name);
    ctx.refresh();
  }
}

function rateCell(pts) {
  const last = pts.length ? pts[pts.length - 1][1] : 0;
  return [sparkline(pts, { width: 96 }), h("span", { class: "rate-now" }, last.toFixed(1))];
}

function row(ch, ctx, rates) {
  const pts = rates[ch.name] || [];
  const allowed = ctx.canAct();
  const buttons = Object.entries(ACTIONS).map(([action, ok]) => h("button", {
    type: "button", class: `btn small act-${action}`, "data-action": action,
    disabled: !allowed || busy.has(ch.name) || !ok(ch.state),
    title: allowed ? "" : t("auth.needed_for_actions"),
    onclick: () => act(ctx, ch.name, action),
  }, t(`act.${action}`)));
  const err = ch.last_error;
  return h("tr", { "data-channel": ch.name, "data-state": ch.state },
    h("td", { class: "name" }, ch.name),
    h("td", {}, ch.type),
    h("td", { class: "mono" }, listenOf(ch)),
    h("td", {}, badge(ch.state)),
    COUNTERS.map((c) => h("td", { class: `num c-${c}`, "data-counter": c }, fmtNum(ch.counters?.[c] ?? 0))),
    h("td", { class: "rate" }, rateCell(pts)),
    h("td", { class: "num", "data-counter": "connections" }, fmtNum(ch.connections_open ?? 0)),
    h("td", { class: err ? "err" : "err none", title: err ? err.text : "" },
      err ? [h("span", { class: "muted" }, `${fmtClock(err.at)} `), err.text] : t("common.none")),
    h("td", { class: "actions" }, buttons));
}

export default {
  mount(root) {
    tbody = h("tbody", {});
    note = h("p", { class: "muted note" });
    mount(root,
      h("h1", {}, t("ch.title")),
      note,
      h("div", { class: "table-wrap" }, h("table", { class: "grid-table", id: "channels-table" },
        h("thead", {}, h("tr", {},
          h("th", {}, t("common.name")), h("th", {}, t("common.type")), h("th", {}, t("ch.listen")),
          h("th", {}, t("common.state")),
          COUNTERS.map((c) => h("th", { class: "num" }, t(`ch.${c}`))),
          h("th", {}, t("ch.rate")), h("th", { class: "num" }, t("ch.conns")),
          h("th", {}, t("common.last_error")), h("th", {}, t("common.actions")))),
        tbody)));
  },
  update(ctx) {
    const rates = ctx.history?.channels?.messages_per_second || {};
    const chans = ctx.status.channels || [];
    note.textContent = ctx.canAct() ? "" : t("auth.needed_for_actions");
    if (!chans.length) {
      mount(tbody, h("tr", {}, h("td", { colspan: 15, class: "empty" }, t("common.no_rows"))));
      return;
    }
    // Rebuild a row only when its data changed, so a button is not swapped under the pointer;
    // the sparkline cell moves every poll.
    const old = new Map([...tbody.querySelectorAll("tr[data-channel]")].map((tr) => [tr.dataset.channel, tr]));
    const sameOrder = old.size === chans.length
      && chans.every((ch, i) => tbody.children[i]?.dataset.channel === ch.name);
    const rows = chans.map((ch) => {
      const sig = JSON.stringify([ch, busy.has(ch.name), ctx.canAct()]);
      const prev = old.get(ch.name);
      if (prev && prev.dataset.sig === sig) {
        mount(prev.querySelector("td.rate"), rateCell(rates[ch.name] || []));
        return prev;
      }
      const tr = row(ch, ctx, rates);
      tr.dataset.sig = sig;
      if (sameOrder) prev.replaceWith(tr);
      return tr;
    });
    if (!sameOrder) mount(tbody, rows);
  },
  unmount() { busy = new Set(); },
};
