// Data quality. Top: the monthly bulletin (数据质量月度通报) for a month picked here, from
// GET /quality/monthly (computed from the store: ranking, score, change against the previous month,
// completeness, validity, timeliness, duplicates, worst fields), with links to the printable HTML and CSV.
// Below: per sending organisation and dataset, records mapped / failed / filtered and the fields most
// often invalid or missing (from `quality` in GET /status: counts since the engine started).

import { api, query } from "../api.js";
import { lang, t } from "../i18n.js";
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

let monthly = null;
let links = null;

function thisMonth() {
  // the platform's months are Beijing calendar months (UTC+8)
  return new Date(Date.now() + 8 * 3600 * 1000).toISOString().slice(0, 7);
}

function pct(v) { return v === null || v === undefined ? "—" : `${(100 * v).toFixed(1)}%`; }

function change(o) {
  if (!o.change) return t("q.new");
  const r = o.change.rank;
  return `${o.change.score >= 0 ? "+" : ""}${o.change.score.toFixed(1)} (${r > 0 ? "▲" : r < 0 ? "▼" : "="}${Math.abs(r) || ""})`;
}

async function loadMonth(month) {
  mount(monthly, h("p", { class: "muted" }, t("q.loading")));
  const params = { month, lang: lang() === "zh" ? "zh" : "en" };
  mount(links,
    h("a", { href: `quality/monthly${query({ ...params, format: "html" })}`, target: "_blank", id: "q-print" },
      t("q.print")), " · ",
    h("a", { href: `quality/monthly${query({ month, format: "csv" })}`, id: "q-csv" }, t("q.csv")));
  let report;
  try {
    report = await api(`/quality/monthly${query({ month })}`);
  } catch (err) {
    mount(monthly, h("p", { class: "bad-text" }, String(err.message || err)));
    return;
  }
  const rows = report.organisations.map((o) => h("tr", { "data-org": o.org },
    h("td", { class: "num" }, o.rank), h("td", {}, o.org), h("td", { class: "num score" }, o.score.toFixed(1)),
    h("td", { class: "num" }, change(o)), h("td", { class: "num" }, fmtNum(o.messages.received)),
    h("td", { class: "num" }, fmtNum(o.messages.rejected)), h("td", { class: "num" }, fmtNum(o.messages.unrouted)),
    h("td", { class: "num" }, fmtNum(o.messages.mapped)), h("td", { class: "num" }, fmtNum(o.messages.failed)),
    h("td", { class: "num" }, pct(o.completeness.required.rate)),
    h("td", { class: "num" }, pct(o.completeness.optional_mapped.rate)),
    h("td", { class: "num" }, pct(o.validity.rate)), h("td", { class: "num" }, pct(o.timeliness.within_24h)),
    h("td", { class: "num" }, o.timeliness.p95_hours ?? "—"), h("td", { class: "num" }, fmtNum(o.duplicates)),
    h("td", {}, o.worst_fields.length ? h("ul", { class: "field-list" }, o.worst_fields.map((f) =>
      h("li", {}, h("code", {}, f.field), h("span", { class: "count" }, ` ${f.missing}/${f.invalid}`))))
      : h("span", { class: "muted" }, t("common.none")))));
  const head = ["q.rank", "q.org", "q.score", "q.change", "q.received", "q.rejected", "q.unrouted", "q.mapped",
    "q.failed", "q.req", "q.opt", "q.valid", "q.within", "q.p95", "q.dups", "q.worst"];
  mount(monthly, h("div", { class: "table-wrap" }, h("table", { class: "grid-table", id: "monthly-table" },
    h("thead", {}, h("tr", {}, head.map((k) => h("th", {}, t(k))))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: head.length, class: "empty" },
      t("common.no_rows")))))));
}

export default {
  mount(root) {
    body = h("tbody", {});
    since = h("p", { class: "muted" });
    monthly = h("div", { id: "monthly" });
    links = h("span", { class: "links" });
    const picker = h("input", { type: "month", id: "q-month", value: thisMonth(),
      onchange: (e) => loadMonth(e.target.value || thisMonth()) });
    mount(root, h("h1", {}, t("q.title")),
      h("h2", {}, t("q.monthly")),
      h("p", {}, h("label", {}, `${t("q.month")} `, picker), " ", links),
      monthly,
      h("h2", {}, t("q.live")), since,
      h("div", { class: "table-wrap" }, h("table", { class: "grid-table", id: "quality-table" },
        h("thead", {}, h("tr", {},
          h("th", {}, t("q.org")), h("th", {}, t("q.dataset")), h("th", { class: "num" }, t("q.mapped")),
          h("th", { class: "num" }, t("q.failed")), h("th", { class: "num" }, t("q.filtered")),
          h("th", { class: "num" }, t("q.fail_rate")), h("th", {}, t("q.invalid")), h("th", {}, t("q.missing")))),
        body)));
    loadMonth(picker.value);
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
