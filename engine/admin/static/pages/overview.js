// Overview, the landing page: each channel with the routes that take its messages and the destinations
// they feed (status lights; queued / retrying / dead; down since, next probe, when the oldest item
// will be dead-lettered, or when it recovered), the store, and received / failed / dead per minute or
// hour for 1 h, 24 h, 7 d and 30 d (GET /history/traffic, kept in the store so it survives restarts).

import { api } from "../api.js";
import { t } from "../i18n.js";
import { badge, fmtBytes, fmtClock, fmtNum, fmtTime, h, light, mount, trafficChart } from "../ui.js";

const RANGES = ["1h", "24h", "7d", "30d"];
const SERIES = ["received", "failed", "dead"];
const SLOW_REFRESH_MS = 60_000; // long ranges change once a minute at most

let range = "1h";
let chartBox = null;
let chartHead = null;
let legend = null;
let rangeBar = null;
let channelsBox = null;
let storeBox = null;
let loadedAt = 0;
let loading = false;

function when(epoch) {
  if (!epoch) return t("common.none");
  return Math.abs(epoch * 1000 - Date.now()) < 86_400_000 ? fmtClock(epoch) : fmtTime(epoch);
}

/** What an operator needs to know about a destination beyond its counts. */
export function destinationNote(d, { blocked = true } = {}) {
  const parts = [];
  if (d.state === "down") {
    if (d.down_since) parts.push(h("span", { class: "bad-text", "data-note": "down" }, t("ov.down_since", { time: when(d.down_since) })));
    if (d.next_probe_at) parts.push(h("span", { "data-note": "next-probe" }, t("ov.next_probe", { time: when(d.next_probe_at) })));
  } else if (d.next_probe_at && d.retrying) {
    parts.push(h("span", { "data-note": "next-retry" }, t("ov.next_retry", { time: when(d.next_probe_at) })));
  }
  if (d.dead_letter_due_at) {
    parts.push(h("span", { class: "warn-text", "data-note": "dead-due" }, t("ov.dead_due", { time: when(d.dead_letter_due_at) })));
  }
  if (blocked && d.blocked_message_id) {
    parts.push(h("span", {}, `${t("ov.blocked_by")} `, h("a", { class: "mono", "data-blocked": d.blocked_message_id,
      href: `#/messages/${encodeURIComponent(d.blocked_message_id)}` }, d.blocked_message_id)));
  }
  if (d.last_error) {
    parts.push(h("span", { class: "err-text", "data-note": "error" }, `${fmtClock(d.last_error.at)} ${d.last_error.text}`));
  } else if (d.recovered_at) {
    parts.push(h("span", { class: "ok-text", "data-note": "recovered" }, t("ov.recovered", { time: when(d.recovered_at) })));
  }
  return parts;
}

function destinationRow(d, routeCell) {
  return h("tr", { "data-destination": d.name, "data-state": d.state },
    routeCell,
    h("td", { class: "name" }, light(d.state), " ",
      h("a", { href: `#/destinations/${encodeURIComponent(d.name)}` }, d.name),
      h("span", { class: "muted type" }, ` ${d.type || ""}`)),
    h("td", {}, badge(d.state)),
    h("td", { class: "num", "data-counter": "queued" }, fmtNum(d.queued ?? 0)),
    h("td", { class: `num ${d.retrying ? "warn-text" : ""}`, "data-counter": "retrying" }, fmtNum(d.retrying ?? 0)),
    h("td", { class: `num ${d.dead ? "bad-text" : ""}`, "data-counter": "dead" },
      d.dead ? h("a", { href: `#/dlq?destination=${encodeURIComponent(d.name)}` }, fmtNum(d.dead)) : "0"),
    h("td", { class: "note" }, destinationNote(d)));
}

function head(first) {
  return h("thead", {}, h("tr", {}, h("th", {}, first), h("th", {}, t("common.destination")),
    h("th", {}, t("common.state")), h("th", { class: "num" }, t("dst.queued")),
    h("th", { class: "num" }, t("dst.retrying")), h("th", { class: "num" }, t("dst.dead")), h("th", {}, "")));
}

function channelCard(ch, routes, byName) {
  const c = ch.counters || {};
  const rows = [];
  for (const r of routes) {
    const names = r.destinations.length ? r.destinations : [null];
    names.forEach((name, i) => {
      const routeCell = i > 0 ? null : h("td", { class: "route", "data-route": r.route, rowspan: names.length },
        r.route, r.dataset ? h("span", { class: "muted" }, ` → ${r.dataset}`) : null);
      const d = name && byName.get(name);
      rows.push(d ? destinationRow(d, routeCell)
        : h("tr", {}, routeCell, h("td", { colspan: 6, class: "muted" }, name || t("common.none"))));
    });
  }
  return h("section", { class: "card channel-card", "data-channel": ch.name, "data-state": ch.state },
    h("div", { class: "channel-head" },
      h("h2", {}, light(ch.state), " ", ch.name), h("span", { class: "muted" }, ch.type), badge(ch.state),
      h("span", { class: "counts" },
        h("span", { "data-counter": "received" }, `${t("ov.received")} ${fmtNum(c.received ?? 0)}`),
        h("span", { class: (c.failed || c.rejected) ? "bad-text" : "", "data-counter": "failed" },
          `${t("ov.failed")} ${fmtNum((c.failed ?? 0) + (c.rejected ?? 0))}`)),
      ch.last_error ? h("span", { class: "err-text" }, `${fmtClock(ch.last_error.at)} ${ch.last_error.text}`) : null),
    rows.length ? h("table", { class: "grid-table nested" }, head(t("ov.route")), h("tbody", {}, rows))
      : h("p", { class: "muted" }, t("ov.no_routes")));
}

function renderChannels(ctx) {
  const status = ctx.status;
  const dests = status.destinations || [];
  const byName = new Map(dests.map((d) => [d.name, d]));
  const topo = status.topology || {};
  const fed = new Set(Object.values(topo).flat().flatMap((r) => r.destinations));
  const cards = (status.channels || []).map((ch) => channelCard(ch, topo[ch.name] || [], byName));
  const loose = dests.filter((d) => !fed.has(d.name));
  if (loose.length) {
    cards.push(h("section", { class: "card channel-card", id: "unrouted" }, h("h2", {}, t("ov.unrouted")),
      h("table", { class: "grid-table nested" }, head(""), h("tbody", {},
        loose.map((d) => destinationRow(d, h("td", {})))))));
  }
  mount(channelsBox, cards.length ? cards : h("p", { class: "muted" }, t("common.no_rows")));
  const st = status.store || {};
  const pct = st.max_size_bytes ? Math.round((100 * st.size_bytes) / st.max_size_bytes) : null;
  mount(storeBox, h("span", { class: "muted" }, `${t("ov.store")} `),
    h("span", { id: "store-size" }, st.max_size_bytes
      ? t("ov.store_size", { size: fmtBytes(st.size_bytes), max: fmtBytes(st.max_size_bytes) }) : fmtBytes(st.size_bytes)),
    pct !== null ? h("meter", { min: 0, max: 100, low: 80, high: 90, optimum: 0, value: pct }) : null);
}

async function loadChart(force) {
  if (loading || (!force && range !== "1h" && Date.now() - loadedAt < SLOW_REFRESH_MS)) return;
  loading = true;
  try {
    const data = await api(`history/traffic?range=${range}`);
    loadedAt = Date.now();
    const step = data.step_seconds === 3600 ? t("ov.step_hour") : t("ov.step_minute");
    chartHead.textContent = t("ov.traffic", { step });
    mount(chartBox, trafficChart(data.points || [], { span: data.span_seconds, step: data.step_seconds,
      names: SERIES, width: Math.max(420, chartBox.clientWidth || 900) }));
    chartBox.dataset.range = data.range;
    mount(legend, SERIES.map((name, i) => h("span", { class: "legend-item", "data-total": name },
      h("span", { class: `swatch k${i}` }), `${t(`ov.${name}`)} ${fmtNum(data.totals?.[name] ?? 0)}`)),
    h("span", { class: "muted" }, t("ov.totals")));
  } catch (err) {
    mount(chartBox, h("p", { class: "error-text" }, err.message));
  } finally {
    loading = false;
  }
}

function renderRanges() {
  mount(rangeBar, RANGES.map((r) => h("button", { type: "button", class: `btn small ${r === range ? "primary" : ""}`,
    "data-range": r, "aria-pressed": r === range ? "true" : "false",
    onclick: () => { range = r; renderRanges(); loadChart(true); } }, t(`range.${r}`))));
}

export default {
  mount(root) {
    chartBox = h("div", { class: "chart-box", id: "traffic-chart" });
    chartHead = h("h2", {}, t("ov.traffic", { step: t("ov.step_minute") }));
    legend = h("div", { class: "legend", id: "traffic-legend" });
    rangeBar = h("div", { class: "range-bar", id: "traffic-range", role: "group" });
    channelsBox = h("div", { id: "overview-channels" });
    storeBox = h("div", { class: "store-line", id: "overview-store" });
    renderRanges();
    mount(root, h("h1", {}, t("ov.title")), storeBox, channelsBox,
      h("section", { class: "card", id: "traffic" }, h("div", { class: "card-head" }, chartHead, rangeBar),
        chartBox, legend));
    loadChart(true);
  },
  update(ctx) {
    renderChannels(ctx);
    loadChart(false);
  },
};
