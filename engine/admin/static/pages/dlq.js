// Dead letters: the GET /dlq filters, a selectable list, replay (re-send the stored payload, or re-map
// from the raw message) and purge after an in-page confirmation. The list refreshes with the poll and
// keeps the selection.

import { api, query } from "../api.js";
import { t } from "../i18n.js";
import { confirmDialog, epochOf, fmtTime, h, mount, toast } from "../ui.js";

let form = null;
let tbody = null;
let bar = null;
let selected = new Set();
let items = [];
let listSig = "";
let filters = {};
let loading = false;

function field(label, input) {
  return h("label", { class: "field" }, h("span", {}, label), input);
}

function options(names) {
  return [h("option", { value: "" }, t("common.any")), ...names.map((n) => h("option", { value: n }, n))];
}

function syncOptions(name, names) {
  const select = form?.querySelector(`select[name=${name}]`);
  if (!select || select.options.length === names.length + 1) return;
  const value = select.value;
  mount(select, options(names));
  select.value = value;
}

function readFilters() {
  const fd = new FormData(form);
  filters = {
    channel: fd.get("channel"), destination: fd.get("destination"), kind: fd.get("kind"),
    error: fd.get("error")?.trim(), since: epochOf(fd.get("since")), until: epochOf(fd.get("until")),
  };
}

async function load(ctx) {
  if (loading) return;
  loading = true;
  try {
    const data = await api(`dlq${query({ ...filters, limit: 200 })}`);
    items = Array.isArray(data) ? data : (data?.items || []);
  } catch (err) {
    items = [];
    mount(tbody, h("tr", {}, h("td", { colspan: 9, class: "error-text" }, err.message)));
    listSig = "";
    return;
  } finally {
    loading = false;
  }
  const ids = new Set(items.map((i) => i.id));
  for (const id of [...selected]) if (!ids.has(id)) selected.delete(id);
  const sig = JSON.stringify(items);
  if (sig !== listSig) {
    listSig = sig;
    renderRows();
  }
  renderBar(ctx);
}

function renderRows() {
  if (!items.length) {
    mount(tbody, h("tr", {}, h("td", { colspan: 9, class: "empty" }, t("common.no_rows"))));
    return;
  }
  mount(tbody, items.map((d) => h("tr", { "data-dead": d.id, "data-message": d.message_id },
    h("td", {}, h("input", { type: "checkbox", class: "pick", "aria-label": d.id, checked: selected.has(d.id),
      onchange: (e) => { if (e.target.checked) selected.add(d.id); else selected.delete(d.id); renderBar(); } })),
    h("td", { class: "nowrap" }, fmtTime(d.created_at)),
    h("td", {}, h("span", { class: `badge kind-${d.kind}` }, d.kind)),
    h("td", {}, d.channel || ""),
    h("td", {}, d.destination || ""),
    h("td", {}, d.route_id || ""),
    h("td", { class: "num" }, d.attempts ?? ""),
    h("td", { class: "err", title: d.error || "" }, d.error || ""),
    h("td", {}, h("a", { class: "mono", href: `#/messages/${encodeURIComponent(d.message_id)}` },
      d.message_id)))));
}

let lastCtx = null;

function renderBar(ctx) {
  ctx = ctx || lastCtx;
  lastCtx = ctx;
  const allowed = ctx ? ctx.canAct() : false;
  const n = selected.size;
  bar.querySelector("#dlq-count").textContent = t("dlq.selected", { n });
  bar.querySelector("#dlq-replay").disabled = !allowed || n === 0;
  bar.querySelector("#dlq-purge").disabled = !allowed || n === 0;
  bar.querySelector("#dlq-replay-all").disabled = !allowed || items.length === 0;
  const all = document.getElementById("dlq-all");
  if (all) all.checked = items.length > 0 && n === items.length;
}

async function replaySelected() {
  const remap = bar.querySelector("#dlq-remap").checked;
  let requeued = 0;
  let remapped = 0;
  const errors = [];
  for (const id of [...selected]) {
    try {
      const res = await api(`dlq/${encodeURIComponent(id)}/replay`, { method: "POST", body: { remap } });
      requeued += res.requeued || 0;
      remapped += res.remapped || 0;
      selected.delete(id);
    } catch (err) {
      errors.push(`${id}: ${err.message}`);
    }
  }
  report(t("dlq.replayed", { requeued, remapped }), errors);
}

async function replayAll() {
  if (!(await confirmDialog(t("dlq.replay_all_confirm")))) return;
  const remap = bar.querySelector("#dlq-remap").checked;
  try {
    const res = await api("dlq/replay", { method: "POST", body: { ...dropEmpty(filters), remap } });
    selected.clear();
    report(t("dlq.replayed", { requeued: res.requeued || 0, remapped: res.remapped || 0 }), res.skipped || []);
  } catch (err) {
    report("", [err.message]);
  }
}

async function purgeSelected() {
  const ids = [...selected];
  if (!(await confirmDialog(t("dlq.purge_confirm", { n: ids.length })))) return;
  let n = 0;
  const errors = [];
  for (const id of ids) {
    try {
      await api(`dlq/${encodeURIComponent(id)}`, { method: "DELETE" });
      selected.delete(id);
      n += 1;
    } catch (err) {
      errors.push(`${id}: ${err.message}`);
    }
  }
  report(t("dlq.purged", { n }), errors);
}

function dropEmpty(obj) {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== "" && v !== null && v !== undefined));
}

function report(text, errors) {
  toast([text, ...errors].filter(Boolean).join("\n"), errors.length ? "error" : "ok");
  listSig = "";
  load(lastCtx);
  lastCtx?.refresh();
}

export default {
  mount(root, ctx) {
    lastCtx = ctx;
    const chans = (ctx.status?.channels || []).map((c) => c.name);
    const dests = (ctx.status?.destinations || []).map((d) => d.name);
    form = h("form", { class: "filters", id: "dlq-form", onsubmit: (e) => {
      e.preventDefault(); readFilters(); selected.clear(); listSig = ""; load(ctx);
    } },
    field(t("common.channel"), h("select", { name: "channel" }, options(chans))),
    field(t("common.destination"), h("select", { name: "destination" }, options(dests))),
    field(t("dlq.kind"), h("select", { name: "kind" }, options(["delivery", "mapping"]))),
    field(t("dlq.error_text"), h("input", { name: "error" })),
    field(t("common.since"), h("input", { name: "since", type: "datetime-local" })),
    field(t("common.until"), h("input", { name: "until", type: "datetime-local" })),
    h("div", { class: "field buttons" }, h("button", { type: "submit", class: "btn primary" }, t("common.search"))));
    bar = h("div", { class: "action-bar" },
      h("span", { id: "dlq-count", class: "muted" }),
      h("label", { class: "check" }, h("input", { type: "checkbox", id: "dlq-remap" }), ` ${t("dlq.remap")}`),
      h("button", { type: "button", class: "btn primary", id: "dlq-replay", onclick: replaySelected }, t("dlq.replay")),
      h("button", { type: "button", class: "btn", id: "dlq-replay-all", onclick: replayAll }, t("dlq.replay_all")),
      h("button", { type: "button", class: "btn danger", id: "dlq-purge", onclick: purgeSelected }, t("dlq.purge")));
    tbody = h("tbody", {});
    const all = h("input", { type: "checkbox", id: "dlq-all", "aria-label": t("dlq.select_all"), onchange: (e) => {
      selected = e.target.checked ? new Set(items.map((i) => i.id)) : new Set();
      for (const box of tbody.querySelectorAll("input.pick")) box.checked = e.target.checked;
      renderBar();
    } });
    mount(root, h("h1", {}, t("dlq.title")), form, bar,
      h("div", { class: "table-wrap" }, h("table", { class: "grid-table", id: "dlq-table" },
        h("thead", {}, h("tr", {}, h("th", {}, all), h("th", {}, t("dlq.created")), h("th", {}, t("dlq.kind")),
          h("th", {}, t("common.channel")), h("th", {}, t("common.destination")), h("th", {}, t("dlq.route")),
          h("th", { class: "num" }, t("dlq.attempts")), h("th", {}, t("common.error")), h("th", {}, t("msg.id")))),
        tbody)));
    listSig = "";
    readFilters();
    renderBar(ctx);
    load(ctx);
  },
  update(ctx) {
    syncOptions("channel", (ctx.status.channels || []).map((c) => c.name));
    syncOptions("destination", (ctx.status.destinations || []).map((d) => d.name));
    load(ctx);
  },
  unmount() { selected = new Set(); },
};
