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
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function fmtNum(n) {
  if (n === null || n === undefined) return t("common.none");
  return Number(n).toLocaleString(lang() === "zh" ? "zh-CN" : "en-GB");
}

/** A coloured state pill; the colour comes from the state name (see app.css `.st-*`). */
export function badge(state) {
  return h("span", { class: `badge st-${String(state || "unknown").replace(/[^a-z_]/g, "")}`,
    "data-state": state }, stateLabel(state));
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
