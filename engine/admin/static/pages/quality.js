// Data quality: per sending organisation and dataset, records mapped / failed / filtered and the
// fields most often invalid or missing (from `quality` in GET /status: counts since the engine started).

import { t } from "../i18n.js";
import { fmtNum, fmtTime, h, mount } from "../ui.js";

const TOP = 5;
let body = null;
let since = null;

function top(fields, what) {
  const rows = Object.entries(fields || {}).filter(([, c]) => (c[what] || 0) > 0)
    .sort((a, b) => b[1][what] - a[1][what]).slice(0, TOP);
  if (!rows.length) return h("span", { class: "muted" }, t("common.none"));
  return h("ul", { class: "field-list" }, rows.map(([name, c]) => h("li", {},
    h("code", {}, name), h("span", { class: "count" }, ` ×${c[what]}`))));
}

function rate(slot) {
  const total = (slot.mapped || 0) + (slot.failed || 0);
  if (!total) return t("common.none");
  return `${((100 * (slot.failed || 0)) / total).toFixed(1)}%`;
}

export default {
  mount(root) {
    body = h("tbody", {});
    since = h("p", { class: "muted" });
    mount(root, h("h1", {}, t("q.title")), since,
      h("div", { class: "table-wrap" }, h("table", { class: "grid-table", id: "quality-table" },
        h("thead", {}, h("tr", {},
          h("th", {}, t("q.org")), h("th", {}, t("q.dataset")), h("th", { class: "num" }, t("q.mapped")),
          h("th", { class: "num" }, t("q.failed")), h("th", { class: "num" }, t("q.filtered")),
          h("th", { class: "num" }, t("q.fail_rate")), h("th", {}, t("q.invalid")), h("th", {}, t("q.missing")))),
        body)));
  },
  update(ctx) {
    const q = ctx.status.quality || {};
    since.textContent = q.since ? `${t("q.since")} ${fmtTime(q.since)}` : "";
    const rows = [];
    for (const [org, byDs] of Object.entries(q.organisations || {})) {
      for (const [ds, slot] of Object.entries(byDs)) {
        if (!(slot.mapped || slot.failed || slot.filtered)) continue;
        rows.push(h("tr", { "data-org": org, "data-dataset": ds, class: slot.failed ? "has-failures" : "" },
          h("td", {}, org), h("td", { class: "mono" }, ds),
          h("td", { class: "num" }, fmtNum(slot.mapped)),
          h("td", { class: `num ${slot.failed ? "bad-text" : ""}` }, fmtNum(slot.failed)),
          h("td", { class: "num" }, fmtNum(slot.filtered)),
          h("td", { class: "num" }, rate(slot)),
          h("td", {}, top(slot.fields, "invalid")),
          h("td", {}, top(slot.fields, "missing"))));
      }
    }
    mount(body, rows.length ? rows : h("tr", {}, h("td", { colspan: 8, class: "empty" }, t("common.no_rows"))));
  },
};
