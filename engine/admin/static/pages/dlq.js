// Dead letters: the GET /dlq filters, a selectable list (with each message's control id, sending
// organisation and the whole error), replay (re-send the stored payload, or re-map from the raw
// message; "replay all" runs in rounds and shows its progress) and purge after an in-page
// confirmation. The list refreshes with the poll and keeps the selection. `#/dlq?destination=x&since=t`
// (the health banner's links) pre-fills the filters.

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
let progress = null;
let wanted = {}; // filters from the hash, kept until the selects have their options

const REPLAY_ROUND = 25; // dead letters per POST /dlq/replay round of "replay all"
const COUNT_LIMIT = 1000; // the most one GET /dlq page lists (engine/delivery/dead_letters.py MAX_PAGE)

function field(label, input) {
  return h("label", { class: "field" }, h("span", {}, label), input);
}

function options(names, label = (n) => n) {
  return [h("option", { value: "" }, t("common.any")), ...names.map((n) => h("option", { value: n }, label(n)))];
}

/** Filters given in the hash (`#/dlq?destination=x&since=<epoch>`), as form values. */
function hashFilters() {
  const q = new URLSearchParams(location.hash.split("?")[1] || "");
  const out = {};
  for (const key of ["channel", "destination", "kind", "error"]) if (q.get(key)) out[key] = q.get(key);
  for (const key of ["since", "until"]) {
    const epoch = Number(q.get(key));
    if (epoch) {
      const d = new Date(epoch * 1000);
      d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
      out[key] = d.toISOString().slice(0, 16); // datetime-local, local time
    }
  }
  return out;
}

function syncOptions(name, names) {
  const select = form?.querySelector(`select[name=${name}]`);
  if (!select || select.options.length === names.length + 1) return;
  const value = select.value;
  mount(select, options(names));
  select.value = value || wanted[name] || "";
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
    mount(tbody, h("tr", {}, h("td", { colspan: 11, class: "error-text" }, err.message)));
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
    mount(tbody, h("tr", {}, h("td", { colspan: 11, class: "empty" }, t("common.no_rows"))));
    return;
  }
  mount(tbody, items.map((d) => h("tr", { "data-dead": d.id, "data-message": d.message_id },
    h("td", {}, h("input", { type: "checkbox", class: "pick", "aria-label": d.id, checked: selected.has(d.id),
      onchange: (e) => { if (e.target.checked) selected.add(d.id); else selected.delete(d.id); renderBar(); } })),
    h("td", { class: "nowrap" }, fmtTime(d.created_at)),
    h("td", {}, h("span", { class: `badge kind-${d.kind}` }, t(`kind.${d.kind}`))),
    h("td", {}, d.channel || ""),
    h("td", {}, d.destination || ""),
    h("td", { class: "mono", "data-field": "control_id" }, d.control_id || ""),
    h("td", { "data-field": "sending_facility" }, d.sending_facility || ""),
    h("td", {}, d.route_id || ""),
    h("td", { class: "num" }, d.attempts ?? ""),
    h("td", { class: "err wrap", "data-field": "error" }, d.error || ""),
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

function showProgress(done, total, finished) {
  mount(progress, h("progress", { max: total || 1, value: done }),
    h("span", { id: "dlq-progress-text" }, t(finished ? "dlq.progress_done" : "dlq.progress", { done, total })));
  progress.hidden = false;
}

/** Replay every dead letter matching the filters in rounds of REPLAY_ROUND, showing the progress.
 * Stops when a round replays nothing (what is left cannot be replayed) or the count is reached. */
async function replayAll() {
  if (!(await confirmDialog(t("dlq.replay_all_confirm")))) return;
  const remap = bar.querySelector("#dlq-remap").checked;
  const button = bar.querySelector("#dlq-replay-all");
  button.disabled = true;
  let requeued = 0;
  let remapped = 0;
  const skipped = [];
  try {
    const listed = await api(`dlq${query({ ...filters, limit: COUNT_LIMIT })}`);
    const total = (Array.isArray(listed) ? listed : (listed?.items || [])).length;
    showProgress(0, total, false);
    for (let round = 0; requeued + remapped < total && round <= Math.ceil(total / REPLAY_ROUND); round += 1) {
      const res = await api("dlq/replay", { method: "POST",
        body: { ...dropEmpty(filters), remap, limit: Math.min(REPLAY_ROUND, total - requeued - remapped) } });
      const n = (res.requeued || 0) + (res.remapped || 0);
      requeued += res.requeued || 0;
      remapped += res.remapped || 0;
      skipped.push(...(res.skipped || []));
      showProgress(requeued + remapped, total, false);
      if (n === 0) break;
    }
    showProgress(requeued + remapped, total, true);
    selected.clear();
    report(t("dlq.replayed", { requeued, remapped }), skipped);
  } catch (err) {
    report("", [err.message]);
  } finally {
    renderBar();
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
    field(t("dlq.kind"), h("select", { name: "kind" }, options(["delivery", "mapping"], (k) => t(`kind.${k}`)))),
    field(t("dlq.error_text"), h("input", { name: "error" })),
    field(t("common.since"), h("input", { name: "since", type: "datetime-local" })),
    field(t("common.until"), h("input", { name: "until", type: "datetime-local" })),
    h("div", { class: "field buttons" }, h("button", { type: "submit", class: "btn primary" }, t("common.search"))));
    bar = h("div", { class: "action-bar" },
      h("span", { id: "dlq-count", class: "muted" }),
      h("label", { class: "check" }, h("input", { type: "checkbox", id: "dlq-remap" }), ` ${t("dlq.remap")}`),
      h("button", { type: "button", class: "btn primary", id: "dlq-replay", onclick: replaySelected }, t("dlq.replay")),
      h("button", { type: "button", class: "btn", id: "dlq-replay-all", onclick: replayAll }, t("dlq.replay_all")),
      h("button", { type: "button", class: "btn danger", id: "dlq-purge", onclick: purgeSelected }, t("dlq.purge")),
      progress = h("span", { class: "progress", id: "dlq-progress", hidden: true }));
    tbody = h("tbody", {});
    const all = h("input", { type: "checkbox", id: "dlq-all", "aria-label": t("dlq.select_all"), onchange: (e) => {
      selected = e.target.checked ? new Set(items.map((i) => i.id)) : new Set();
      for (const box of tbody.querySelectorAll("input.pick")) box.checked = e.target.checked;
      renderBar();
    } });
    mount(root, h("h1", {}, t("dlq.title")), form, bar,
      h("div", { class: "table-wrap" }, h("table", { class: "grid-table", id: "dlq-table" },
        h("thead", {}, h("tr", {}, h("th", {}, all), h("th", {}, t("dlq.created")), h("th", {}, t("dlq.kind")),
          h("th", {}, t("common.channel")), h("th", {}, t("common.destination")),
          h("th", {}, t("dlq.control_id")), h("th", {}, t("dlq.org")), h("th", {}, t("dlq.route")),
          h("th", { class: "num" }, t("dlq.attempts")), h("th", {}, t("common.error")), h("th", {}, t("msg.id")))),
        tbody)));
    listSig = "";
    wanted = hashFilters();
    for (const [key, value] of Object.entries(wanted)) {
      const input = form.querySelector(`[name=${key}]`);
      if (input) input.value = value;
    }
    readFilters();
    for (const key of ["channel", "destination", "kind"]) if (wanted[key]) filters[key] = wanted[key];
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
