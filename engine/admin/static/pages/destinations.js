// Destinations: delivery counts and state per destination (ok / down / blocked with the blocking
// message; down since, next probe, when the oldest item will be dead-lettered, or when it recovered),
// and the queue depth over the last hour from GET /history. `#/destinations/<name>` highlights one.

import { t } from "../i18n.js";
import { badge, fmtAge, fmtNum, h, lineChart, mount } from "../ui.js";
import { destinationNote } from "./overview.js";

let tbody = null;
let chartBox = null;
let legend = null;

function stateCell(d) {
  const parts = [badge(d.state)];
  if (d.blocked_message_id) {
    parts.push(h("div", { class: "small" }, `${t("dst.blocked_by")} `,
      h("a", { href: `#/messages/${encodeURIComponent(d.blocked_message_id)}`, class: "mono",
        "data-blocked": d.blocked_message_id }, d.blocked_message_id)));
  }
  return parts;
}

function focused() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  return parts[0] === "destinations" && parts[1] ? decodeURIComponent(parts[1]) : null;
}

function row(d) {
  const age = d.oldest_queued_age_seconds;
  return h("tr", { "data-destination": d.name, "data-state": d.state, class: focused() === d.name ? "selected" : "" },
    h("td", { class: "name" }, d.name),
    h("td", {}, d.type),
    h("td", {}, d.ordering || ""),
    h("td", {}, stateCell(d)),
    h("td", { class: "num", "data-counter": "queued" }, fmtNum(d.queued ?? 0)),
    h("td", { class: "num", "data-counter": "in_flight" }, fmtNum(d.in_flight ?? 0)),
    h("td", { class: "num", "data-counter": "retrying" }, fmtNum(d.retrying ?? 0)),
    h("td", { class: "num", "data-counter": "sent" }, fmtNum(d.sent ?? 0)),
    h("td", { class: `num ${d.dead ? "bad-text" : ""}`, "data-counter": "dead" }, fmtNum(d.dead ?? 0)),
    h("td", { class: `num ${age > 300 ? "warn-text" : ""}` }, fmtAge(age)),
    h("td", { class: "note" }, destinationNote(d, { blocked: false })));
}

export default {
  mount(root) {
    tbody = h("tbody", {});
    chartBox = h("div", { class: "chart-box", id: "queue-chart" });
    legend = h("div", { class: "legend" });
    mount(root,
      h("h1", {}, t("dst.title")),
      h("div", { class: "table-wrap" }, h("table", { class: "grid-table", id: "destinations-table" },
        h("thead", {}, h("tr", {},
          h("th", {}, t("common.name")), h("th", {}, t("common.type")), h("th", {}, t("dst.ordering")),
          h("th", {}, t("common.state")), h("th", { class: "num" }, t("dst.queued")),
          h("th", { class: "num" }, t("dst.in_flight")), h("th", { class: "num" }, t("dst.retrying")),
          h("th", { class: "num" }, t("dst.sent")), h("th", { class: "num" }, t("dst.dead")),
          h("th", { class: "num" }, t("dst.oldest")), h("th", {}, t("dst.note")))),
        tbody)),
      h("section", { class: "card" }, h("h2", {}, t("dst.chart")), chartBox, legend));
  },
  update(ctx) {
    const dests = ctx.status.destinations || [];
    mount(tbody, dests.length ? dests.map(row)
      : h("tr", {}, h("td", { colspan: 11, class: "empty" }, t("common.no_rows"))));
    const series = ctx.history?.destinations?.queue_depth || {};
    mount(chartBox, lineChart(series, { width: Math.max(320, chartBox.clientWidth || 640), height: 200,
      windowSec: ctx.history?.destinations?.window_seconds || 3600 }));
    mount(legend, Object.keys(series).map((name, i) => {
      const pts = series[name];
      const last = pts.length ? pts[pts.length - 1][1] : 0;
      return h("span", { class: "legend-item" }, h("span", { class: `swatch s${i % 6}` }), `${name} (${last})`);
    }));
  },
};
