// Charts: uPlot (vendored) for signal series, hand-drawn SVG for the DTC timeline.

import { el, fmtDay } from "./common.js";

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];
const SVG = "http://www.w3.org/2000/svg";

/**
 * A line chart of several series sharing a time axis.
 * series: [{label, points: [[epochSeconds, value], ...]}]
 */
export function lineChart(title, unit, series, width = 560) {
  const box = el("figure", { class: "chart", dataset: { title } }, el("figcaption", {}, `${title} (${unit})`));
  const times = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  if (times.length === 0) {
    box.append(el("p", { class: "muted" }, "no data in this period"));
    return box;
  }
  const index = new Map(times.map((t, i) => [t, i]));
  const columns = series.map((s) => {
    const col = new Array(times.length).fill(null);
    for (const [t, v] of s.points) col[index.get(t)] = v;
    return col;
  });
  const opts = {
    width,
    height: 200,
    series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: true }))],
    axes: [{}, { size: 50 }],
    legend: { live: false },
  };
  // uPlot draws into a canvas once the node is attached; defer until then.
  queueMicrotask(() => new uPlot(opts, [times, ...columns], box));
  return box;
}

const STATUS_COLOURS = {
  pending: "#f59e0b", confirmed: "#dc2626", permanent: "#7f1d1d", active: "#dc2626", cleared: "#16a34a",
};

/** One row per code: a bar from first to last seen (to cleared when cleared), events as dots. */
export function dtcTimeline(dtcs, from, to, width = 900) {
  const rowH = 26, left = 150, right = 10, top = 20;
  const t0 = from.getTime(), t1 = Math.max(to.getTime(), t0 + 1);
  const x = (iso) => left + ((new Date(iso).getTime() - t0) / (t1 - t0)) * (width - left - right);
  const height = top + rowH * Math.max(dtcs.length, 1) + 10;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "timeline");
  svg.setAttribute("role", "img");
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n);
    return n;
  };
  add("text", { x: left, y: 12, class: "axis" }, fmtDay(from.toISOString()));
  add("text", { x: width - right, y: 12, class: "axis", "text-anchor": "end" }, fmtDay(to.toISOString()));
  dtcs.forEach((d, i) => {
    const y = top + i * rowH + rowH / 2;
    add("text", { x: 4, y: y + 4, class: d.active ? "code active" : "code" }, `${d.code}${d.active ? " ●" : ""}`);
    if (d.first_seen) {
      const end = d.cleared_at && (!d.last_seen || d.cleared_at > d.last_seen) ? d.cleared_at : d.last_seen ?? d.first_seen;
      const x0 = Math.max(left, x(d.first_seen)), x1 = Math.max(x0 + 2, Math.min(width - right, x(end)));
      add("rect", { x: x0, y: y - 5, width: x1 - x0, height: 10, rx: 3, class: d.active ? "bar active" : "bar" });
    }
    for (const e of d.events ?? []) {
      const cx = x(e.ts);
      if (cx < left || cx > width - right) continue;
      const dot = add("circle", { cx, cy: y, r: 4, fill: STATUS_COLOURS[e.status] ?? "#64748b" });
      const tip = document.createElementNS(SVG, "title");
      tip.textContent = `${d.code} ${e.status} ${e.ts}`;
      dot.append(tip);
    }
  });
  return svg;
}
