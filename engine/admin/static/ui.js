// Small DOM helpers and hand-drawn SVG charts. Everything is built with textContent / attributes,
// never innerHTML, so message content can never become markup.

import { lang, stateLabel, t } from "./i18n.js";

const SVG = "http://www.w3.org/2000/svg";

/** h("div", {class: "x", onclick: fn}, child, "text", [more]) → element. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value") el.value = v;
    else if (k === "checked" || k === "disabled" || k === "selected") el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

/** Replace a container's children. */
export function mount(container, ...children) {
  container.replaceChildren();
  append(container, children);
}

export function fmtTime(epoch) {
  if (!epoch) return t("common.none");
  const d = new Date(epoch * 1000);
  return d.toLocaleString(lang() === "zh" ? "zh-CN" : "en-GB", { hour12: false });
}

export function fmtClock(epoch) {
  if (!epoch) return t("common.none");
  return new Date(epoch * 1000).toLocaleTimeString(lang() === "zh" ? "zh-CN" : "en-GB", { hour12: false });
}

export function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return t("common.none");
  const s = Math.max(0, Math.round(seconds));
  const [us, um, uh, ud] = ["unit.s", "unit.m", "unit.h", "unit.d"].map((k) => t(k));
  if (s < 60) return `${s}${us}`;
  if (s < 3600) return `${Math.floor(s / 60)}${um} ${s % 60}${us}`;
  if (s < 86400) return `${Math.floor(s / 3600)}${uh} ${Math.floor((s % 3600) / 60)}${um}`;
  return `${Math.floor(s / 86400)}${ud} ${Math.floor((s % 86400) / 3600)}${uh}`;
}

export function fmtNum(n) {
  if (n === null || n === undefined) return t("common.none");
  return Number(n).toLocaleString(lang() === "zh" ? "zh-CN" : "en-GB");
}

/** A coloured state pill; the colour comes from the state name (see app.css `.st-*`). */
export function badge(state, extra = "") {
  return h("span", { class: `badge st-${String(state || "unknown").replace(/[^a-z_]/g, "")} ${extra}`.trim(),
    "data-state": state }, stateLabel(state));
}

/** A status light (a coloured dot) for a channel or destination state, with the state as its title. */
export function light(state) {
  return h("span", { class: `light st-${String(state || "unknown").replace(/[^a-z_]/g, "")}`,
    "data-light": state, title: stateLabel(state), role: "img", "aria-label": stateLabel(state) });
}

/** Bytes in KiB / MiB / GiB. */
export function fmtBytes(n) {
  if (n === null || n === undefined) return t("common.none");
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** A chart of per-step counts: `points` [[t, received, failed, dead], ...] over `span` seconds to now. */
export function trafficChart(points, { span, step, names, width = 900, height = 200 }) {
  const pad = { l: 44, r: 12, t: 10, b: 22 };
  const el = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "chart traffic", role: "img" });
  const now = Date.now() / 1000;
  const start = now - span;
  const max = Math.max(1, ...points.flatMap((p) => [p[1], p[2], p[3]]));
  const W = width - pad.l - pad.r;
  const H = height - pad.t - pad.b;
  const x = (tt) => pad.l + Math.min(W, Math.max(0, ((tt - start) / span) * W));
  const y = (v) => pad.t + H - (v / max) * H;
  for (const frac of [0, 0.5, 1]) {
    const v = Math.round(max * frac);
    el.append(svg("line", { x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v), class: "grid" }));
    const label = svg("text", { x: pad.l - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" });
    label.textContent = String(v);
    el.append(label);
  }
  for (const frac of [0, 0.25, 0.5, 0.75, 1]) {
    const tt = start + span * frac;
    const label = svg("text", { x: x(tt), y: height - 6, class: "axis",
      "text-anchor": frac === 0 ? "start" : frac === 1 ? "end" : "middle" });
    const d = new Date(tt * 1000);
    const loc = lang() === "zh" ? "zh-CN" : "en-GB";
    label.textContent = span > 86400
      ? d.toLocaleDateString(loc, { month: "numeric", day: "numeric" })
      : d.toLocaleTimeString(loc, { hour: "2-digit", minute: "2-digit", hour12: false });
    el.append(label);
  }
  const barW = Math.max(1, (step / span) * W);
  names.forEach((name, i) => {
    const cls = `series k${i}`;
    const pts = points.filter((p) => p[0] + step > start).sort((a, b) => a[0] - b[0]);
    if (!pts.length) return;
    // a step line: each bucket's count held across its width (a gap in the data is drawn as zero)
    let d = "";
    let prevEnd = null;
    for (const p of pts) {
      const x0 = x(p[0]);
      const x1 = Math.min(x(p[0] + step), x0 + barW);
      if (prevEnd !== null && x0 - prevEnd > 0.5) d += `L${prevEnd.toFixed(1)},${y(0)}L${x0.toFixed(1)},${y(0)}`;
      d += `${d ? "L" : "M"}${x0.toFixed(1)},${y(p[i + 1]).toFixed(1)}L${x1.toFixed(1)},${y(p[i + 1]).toFixed(1)}`;
      prevEnd = x1;
    }
    const path = svg("path", { d, class: cls, "data-series": name,
      "data-total": pts.reduce((n, p) => n + p[i + 1], 0) });
    const title = svg("title", {});
    title.textContent = name;
    path.append(title);
    el.append(path);
  });
  return el;
}

/** A datetime-local input value → epoch seconds (empty → ""). */
export function epochOf(value) {
  if (!value) return "";
  const ms = new Date(value).getTime();
  return Number.isFinite(ms) ? ms / 1000 : "";
}

/** A sparkline of [[t, v], ...] over `windowSec` seconds ending now. */
export function sparkline(points, { width = 120, height = 28, windowSec = 60 } = {}) {
  const el = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "spark",
    role: "img" });
  const pts = points || [];
  const now = Date.now() / 1000;
  const max = Math.max(1, ...pts.map((p) => p[1]));
  const x = (tt) => Math.max(0, width - ((now - tt) / windowSec) * width);
  const y = (v) => height - 2 - (v / max) * (height - 4);
  el.append(svg("line", { x1: 0, y1: height - 1.5, x2: width, y2: height - 1.5, class: "spark-base" }));
  if (pts.length > 1) {
    const d = pts.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    const area = `${d}L${x(pts[pts.length - 1][0]).toFixed(1)},${height}L${x(pts[0][0]).toFixed(1)},${height}Z`;
    el.append(svg("path", { d: area, class: "spark-area" }), svg("path", { d, class: "spark-line" }));
  }
  const last = pts.length ? pts[pts.length - 1][1] : 0;
  const title = svg("title", {});
  const peak = Math.max(0, ...pts.map((p) => p[1]));
  title.textContent = t("chart.spark_title", { last, peak });
  el.append(title);
  return el;
}

/** A line chart of several named series [[t, v], ...] over the last `windowSec` seconds. */
export function lineChart(series, { width = 640, height = 180, windowSec = 3600 } = {}) {
  const pad = { l: 44, r: 12, t: 10, b: 22 };
  const el = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img" });
  const now = Date.now() / 1000;
  const all = Object.values(series).flat();
  const max = Math.max(1, ...all.map((p) => p[1]));
  const W = width - pad.l - pad.r;
  const H = height - pad.t - pad.b;
  const x = (tt) => pad.l + Math.max(0, W - ((now - tt) / windowSec) * W);
  const y = (v) => pad.t + H - (v / max) * H;
  for (const frac of [0, 0.5, 1]) {
    const v = Math.round(max * frac);
    el.append(svg("line", { x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v), class: "grid" }));
    const label = svg("text", { x: pad.l - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" });
    label.textContent = String(v);
    el.append(label);
  }
  for (const mins of [60, 45, 30, 15, 0]) {
    const tx = x(now - mins * 60);
    const label = svg("text", { x: tx, y: height - 6, class: "axis",
      "text-anchor": mins === 60 ? "start" : mins === 0 ? "end" : "middle" });
    label.textContent = mins ? t("chart.minutes_ago", { n: mins }) : t("chart.now");
    el.append(label);
  }
  let i = 0;
  for (const [name, pts] of Object.entries(series)) {
    const cls = `series s${i % 6}`;
    i += 1;
    if (!pts.length) continue;
    const d = pts.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    const path = svg("path", { d, class: cls, "data-series": name });
    const title = svg("title", {});
    title.textContent = name;
    path.append(title);
    el.append(path);
  }
  return el;
}

let toastTimer = null;

/** A short message at the bottom of the screen; `kind` is "ok" or "error". */
export function toast(text, kind = "ok") {
  const el = document.getElementById("toast");
  el.textContent = text;
  el.className = `toast show ${kind}`;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.className = "toast"; }, kind === "error" ? 8000 : 3500);
}

/** An in-page confirmation dialog; resolves true on confirm. */
export function confirmDialog(text) {
  return new Promise((resolve) => {
    const close = (answer) => { back.remove(); resolve(answer); };
    const back = h("div", { class: "modal-back", role: "dialog", "aria-modal": "true" },
      h("div", { class: "modal" },
        h("p", { class: "modal-text" }, text),
        h("div", { class: "modal-buttons" },
          h("button", { type: "button", class: "btn", onclick: () => close(false) }, t("common.cancel")),
          h("button", { type: "button", class: "btn danger", "data-confirm": "yes",
            onclick: () => close(true) }, t("common.confirm")))));
    document.body.append(back);
    back.querySelector("[data-confirm]").focus();
  });
}
