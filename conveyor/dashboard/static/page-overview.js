// Overview: every queue's depth per state, workers alive/lost, and four charts.
// Numbers and the 15-minute charts follow the live snapshots; the 24-hour charts are polled.

import { el, fill, formatSeconds, formatTime } from "./dom.js";
import { get } from "./api.js";
import { table } from "./ui.js";
import { LineChart, THROUGHPUT, LATENCY } from "./charts.js";

const STATES = ["pending", "scheduled", "active", "retrying", "dead"];
const DAY_POLL_MS = 60_000;

function queueRow(q) {
  const cell = (col, text) => el("td", { "data-col": col, class: "num" }, text);
  return el("tr", { "data-testid": `queue-row-${q.name}`, class: q.paused ? "paused" : "" },
    el("th", { scope: "row" }, el("a", { href: `queues/${encodeURIComponent(q.name)}` }, q.name)),
    STATES.map((s) => cell(s, String(q[s] ?? 0))),
    el("td", { "data-col": "paused" }, q.paused ? el("span", { class: "badge badge-paused" }, "paused")
      : el("span", { class: "muted" }, "running")),
    cell("lag", formatSeconds(q.lag_seconds)));
}

function queuesTable(queues) {
  const headers = ["Queue", ...STATES.map((s) => ({ num: s })), "State", { num: "Lag" }];
  return table(headers, queues.map(queueRow), { empty: "No queues yet: enqueue a task to see one." });
}

function workersSummary(workers) {
  return el("p", { class: "workers-summary" },
    el("a", { href: "workers" }, "Workers"), ": ",
    el("strong", { "data-testid": "workers-alive" }, String(workers.alive)), " alive, ",
    el("strong", { "data-testid": "workers-lost", class: workers.lost ? "bad" : "" },
      String(workers.lost)), " lost");
}

function chartPair(window) {
  return {
    throughput: new LineChart({ title: `Throughput, last ${window.label}`,
      testid: `chart-throughput-${window.key}`, series: THROUGHPUT, unit: "/s" }),
    latency: new LineChart({ title: `Latency, last ${window.label}`,
      testid: `chart-latency-${window.key}`, series: LATENCY, unit: "s" }),
  };
}

export async function render(ctx) {
  const queuesBox = el("div", {}, el("p", { class: "muted" }, "Loading queues…"));
  const workersBox = el("div", {});
  const stamp = el("p", { class: "muted stamp", "data-testid": "updated-at" });
  const recent = chartPair({ key: "15m", label: "15 minutes" });
  const day = chartPair({ key: "24h", label: "24 hours" });
  fill(ctx.root,
    el("section", { class: "card" }, el("h1", {}, "Queues"), queuesBox, workersBox, stamp),
    el("section", { class: "charts" },
      recent.throughput.node, recent.latency.node, day.throughput.node, day.latency.node));

  const showOverview = (overview) => {
    fill(queuesBox, queuesTable(overview.queues));
    fill(workersBox, workersSummary(overview.workers));
    fill(stamp, `Updated ${formatTime(overview.now)}`);
  };
  const showHistory = (pair, history) => {
    pair.throughput.update(history.points);
    pair.latency.update(history.points);
  };
  const loadDay = async () => showHistory(day, await get("api/history?window=24h"));

  // charts are drawn at their box's width: redraw when it changes
  const redraw = () => [recent, day].forEach((p) => { p.throughput.draw(); p.latency.draw(); });
  window.addEventListener("resize", redraw);
  ctx.onCleanup(() => window.removeEventListener("resize", redraw));

  ctx.onSnapshot((snapshot) => {
    if (snapshot.redis === "down") return; // keep the last numbers under the banner
    if (snapshot.overview) showOverview(snapshot.overview);
    if (snapshot.history) showHistory(recent, snapshot.history);
  });
  // failures of these show as the banner (503) and heal with the stream or the next poll
  const quietly = (promise) => promise.catch(() => {});
  ctx.every(DAY_POLL_MS, () => quietly(loadDay()));
  // draw at once from plain GETs rather than wait for the first snapshot
  await Promise.all([
    quietly(get("api/overview").then(showOverview)),
    quietly(get("api/history?window=15m").then((h) => showHistory(recent, h))),
    quietly(loadDay()),
  ]);
}
