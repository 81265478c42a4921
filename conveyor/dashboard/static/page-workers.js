// Workers: one row per registered worker; one that stopped heart-beating shows as lost.

import { el, fill, timeCell } from "./dom.js";
import { get } from "./api.js";
import { table } from "./ui.js";

const REFRESH_MS = 2000;

function workerRow(w, now) {
  const num = (text) => el("td", { class: "num" }, String(text ?? "—"));
  return el("tr", { "data-testid": `worker-row-${w.id}`, class: w.lost ? "lost" : "" },
    el("th", { scope: "row", class: "mono" }, w.id),
    el("td", {}, w.lost ? el("span", { class: "badge badge-lost" }, "lost")
      : el("span", { class: "badge badge-alive" }, "alive")),
    el("td", {}, w.host), num(w.pid), el("td", {}, (w.queues || []).join(", ")),
    num(w.concurrency), num(w.in_flight), num(w.processed), num(w.metrics_port),
    el("td", {}, timeCell(w.started_at, now)), el("td", {}, timeCell(w.heartbeat_at, now)));
}

export async function render(ctx) {
  const box = el("div", {}, el("p", { class: "muted" }, "Loading workers…"));
  fill(ctx.root, el("section", { class: "card" }, el("h1", {}, "Workers"), box));
  let shown = "";
  const load = async () => {
    const data = await get("api/workers");
    const text = JSON.stringify(data.workers);
    if (text === shown) return; // unchanged: leave the table (and any selection) alone
    shown = text;
    const headers = ["Worker", "Status", "Host", { num: "PID" }, "Queues", { num: "Concurrency" },
      { num: "In flight" }, { num: "Processed" }, { num: "Metrics port" }, "Started",
      "Last heartbeat"];
    fill(box, table(headers, data.workers.map((w) => workerRow(w, data.now)),
      { empty: "No worker is registered." }));
  };
  ctx.every(REFRESH_MS, () => load().catch(() => {}));
  await load();
}
