// Line charts in SVG, drawn by our own code: axes with labels, a grid, a legend.
// A chart is redrawn whole on each update (a few hundred points at most: cheap), at the
// pixel size of its box so text stays legible on a phone as on a laptop.

import { el, svg, fill } from "./dom.js";

const HEIGHT = 190;
const PAD = { left: 52, right: 14, top: 24, bottom: 34 };

/** The series of the two kinds of chart; `key` is a field of a history point. */
export const THROUGHPUT = [
  { key: "succeeded", label: "succeeded" },
  { key: "failed", label: "failed" },
  { key: "retried", label: "retried" },
  { key: "dead", label: "dead" },
];
export const LATENCY = [
  { key: "run_p50", label: "run p50" },
  { key: "run_p95", label: "run p95" },
  { key: "wait_p50", label: "wait p50" },
  { key: "wait_p95", label: "wait p95" },
];

/** The smallest "round" number (1, 2, 2.5, 5 × 10^n) at or above `value`. */
export function niceCeil(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value * 0.999999) return step * power;
  }
  return 10 * power;
}

/** A y axis for values up to `max`: a round step and the top (at most 5 intervals). */
export function yTicks(max) {
  const step = niceCeil((max > 0 ? max : 1) / 4);
  const count = Math.max(1, Math.ceil((max > 0 ? max : 1) / step - 1e-9));
  return { step, count, top: step * count };
}

function tickLabel(value, unit) {
  if (unit === "s") {
    if (value === 0) return "0";
    return value < 1 ? `${+(value * 1000).toFixed(0)} ms` : `${+value.toFixed(2)} s`;
  }
  return value >= 100 ? value.toFixed(0) : String(+value.toFixed(2));
}

function timeLabel(ms, seconds = false) {
  const d = new Date(ms);
  const two = (n) => String(n).padStart(2, "0");
  return `${two(d.getHours())}:${two(d.getMinutes())}${seconds ? `:${two(d.getSeconds())}` : ""}`;
}

/** Maps data to pixels for a box of `width`. */
function scales(points, seriesList, width) {
  const t0 = points[0].t;
  const t1 = Math.max(points[points.length - 1].t, t0 + 1);
  let max = 0;
  for (const p of points) {
    for (const s of seriesList) if (p[s.key] > max) max = p[s.key];
  }
  const ticks = yTicks(max);
  const top = ticks.top;
  const innerW = width - PAD.left - PAD.right;
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  return {
    top, ticks, t0, t1,
    x: (t) => PAD.left + ((t - t0) / (t1 - t0)) * innerW,
    y: (v) => PAD.top + innerH - (v / top) * innerH,
  };
}

function yAxis(sc, width, unit) {
  const parts = [];
  for (let i = 0; i <= sc.ticks.count; i += 1) {
    const value = sc.ticks.step * i;
    const y = sc.y(value);
    parts.push(svg("line", { class: "grid", x1: PAD.left, x2: width - PAD.right, y1: y, y2: y }));
    parts.push(svg("text", { class: "tick", x: PAD.left - 6, y: y + 4, "text-anchor": "end" },
      tickLabel(value, unit)));
  }
  return parts;
}

function xAxis(sc, width) {
  const count = Math.max(2, Math.floor((width - PAD.left - PAD.right) / 90));
  const parts = [];
  const base = HEIGHT - PAD.bottom;
  parts.push(svg("line", { class: "axis", x1: PAD.left, x2: width - PAD.right, y1: base, y2: base }));
  for (let i = 0; i <= count; i += 1) {
    const t = sc.t0 + ((sc.t1 - sc.t0) * i) / count;
    const anchor = i === 0 ? "start" : i === count ? "end" : "middle";
    parts.push(svg("text", { class: "tick", x: sc.x(t), y: base + 15, "text-anchor": anchor },
      timeLabel(t)));
  }
  return parts;
}

/** One path per series; a null value (no sample in that step) breaks the line. */
function seriesPath(points, key, sc) {
  let d = "";
  const dots = [];
  points.forEach((p, i) => {
    const v = p[key];
    if (v === null || v === undefined) return;
    const prev = points[i - 1];
    const next = points[i + 1];
    const joined = prev && prev[key] !== null && prev[key] !== undefined;
    d += `${joined ? "L" : "M"}${sc.x(p.t).toFixed(1)},${sc.y(v).toFixed(1)}`;
    // a sample with no neighbour would draw nothing as a line: show it as a dot
    if (!joined && !(next && next[key] !== null && next[key] !== undefined)) {
      dots.push(svg("circle", { class: `dot s-${key}`, cx: sc.x(p.t), cy: sc.y(v), r: 2.5 }));
    }
  });
  return [d ? svg("path", { class: `line s-${key}`, d }) : null, ...dots];
}

function latest(points, key) {
  for (let i = points.length - 1; i >= 0; i -= 1) {
    const v = points[i][key];
    if (v !== null && v !== undefined) return v;
  }
  return null;
}

function formatValue(value, unit) {
  if (value === null || value === undefined) return "—";
  return unit === "s" ? tickLabel(value, "s") : `${+value.toFixed(2)}/s`;
}

function peak(points, key) {
  let max = null;
  for (const p of points) if (p[key] !== null && p[key] !== undefined && (max === null || p[key] > max)) max = p[key];
  return max;
}

/** What the chart shows, in words (for screen readers; the tests read it too). */
function summary(points, seriesList, unit) {
  return seriesList.map((s) =>
    `${s.label}: latest ${formatValue(latest(points, s.key), unit)}, peak ${formatValue(peak(points, s.key), unit)}`)
    .join("; ");
}

/** The legend names each series with its latest value, or the value at the hovered time. */
function legend(points, seriesList, unit, hovered) {
  const at = hovered === null ? null : points[hovered];
  const items = seriesList.map((s) => el("li", {}, el("span", { class: `swatch s-${s.key}` }),
    `${s.label} `, el("span", { class: "legend-value" },
      formatValue(at ? at[s.key] : latest(points, s.key), unit))));
  const when = at ? el("li", { class: "legend-when" }, `at ${timeLabel(at.t, true)}`) : null;
  return el("ul", { class: "legend" }, items, when);
}

function drawing(points, seriesList, unit, width, axisTitle) {
  const sc = scales(points, seriesList, width);
  const yTitle = svg("text", { class: "axis-title", x: 4, y: 11, "text-anchor": "start" }, axisTitle);
  const xTitle = svg("text", { class: "axis-title", x: PAD.left + (width - PAD.left - PAD.right) / 2,
    y: HEIGHT - 3, "text-anchor": "middle" }, "local time");
  const cursor = svg("line", { class: "cursor", y1: PAD.top, y2: HEIGHT - PAD.bottom, x1: 0, x2: 0,
    visibility: "hidden" });
  const plot = svg("svg", { class: "plot", width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`,
    role: "img", "aria-label": summary(points, seriesList, unit) },
    yAxis(sc, width, unit), xAxis(sc, width), yTitle, xTitle,
    // the first series (succeeded, run p50) is drawn last: on top where lines overlap at 0
    [...seriesList].reverse().map((s) => seriesPath(points, s.key, sc)), cursor);
  return { plot, sc, cursor };
}

/** The index of the point nearest to time `t` (points are oldest first, evenly spaced). */
function nearest(points, t) {
  const span = points[points.length - 1].t - points[0].t || 1;
  const guess = Math.round(((t - points[0].t) / span) * (points.length - 1));
  return Math.min(points.length - 1, Math.max(0, guess));
}

/** A chart in a <figure> that stays in place (tests and people keep their eyes on it)
 * while `update(points)` redraws its contents. */
export class LineChart {
  constructor({ title, testid, series, unit }) {
    this.series = series;
    this.unit = unit; // "s" for latency, "/s" for throughput
    this.points = [];
    this.hovered = null; // index of the point under the pointer, if any
    this.body = el("div", { class: "chart-body" });
    this.legend = el("div", {});
    this.node = el("figure", { class: "chart", "data-testid": testid },
      el("figcaption", {}, title), this.body, this.legend);
  }

  update(points) {
    this.points = Array.isArray(points) ? points : [];
    if (this.hovered !== null && this.hovered >= this.points.length) this.hovered = null;
    this.draw();
  }

  draw() {
    const width = Math.max(260, Math.floor(this.body.clientWidth || 560));
    const axisTitle = this.unit === "s" ? "seconds" : "tasks per second";
    if (this.points.length < 2) {
      this.hovered = null;
      fill(this.body, el("p", { class: "muted empty-chart" }, "No data yet."));
    } else {
      const { plot, sc, cursor } = drawing(this.points, this.series, this.unit, width, axisTitle);
      this.follow(plot, sc, cursor);
      fill(this.body, plot);
    }
    this.drawLegend();
  }

  drawLegend() {
    fill(this.legend, legend(this.points, this.series, this.unit, this.hovered));
  }

  /** Hovering shows a vertical line and the values at that time in the legend. */
  follow(plot, sc, cursor) {
    const place = () => {
      if (this.hovered === null) return cursor.setAttribute("visibility", "hidden");
      const x = sc.x(this.points[this.hovered].t);
      cursor.setAttribute("x1", x);
      cursor.setAttribute("x2", x);
      cursor.setAttribute("visibility", "visible");
    };
    plot.addEventListener("pointermove", (event) => {
      const box = plot.getBoundingClientRect();
      const x = event.clientX - box.left;
      const t = sc.t0 + ((x - PAD.left) / (box.width - PAD.left - PAD.right)) * (sc.t1 - sc.t0);
      this.hovered = nearest(this.points, t);
      place();
      this.drawLegend();
    });
    plot.addEventListener("pointerleave", () => {
      this.hovered = null;
      place();
      this.drawLegend();
    });
    place();
  }
}
