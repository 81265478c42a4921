// Schedules: every periodic schedule, its timing, next and last run; read-only (the CLI
// and the API change them).

import { el, fill, timeCell, taskPath } from "./dom.js";
import { get } from "./api.js";
import { table } from "./ui.js";

const REFRESH_MS = 3000;

function timing(s) {
  return s.cron ? `${s.cron} (${s.tz})` : `every ${s.every}s`;
}

function scheduleRow(s, now) {
  const last = s.last_task ? el("a", { href: taskPath(s.last_task) }, timeCell(s.last_run, now))
    : timeCell(s.last_run, now);
  return el("tr", { "data-testid": `schedule-row-${s.id}`, class: s.paused ? "lost" : "" },
    el("th", { scope: "row", class: "mono" }, s.id),
    el("td", { class: "mono" }, timing(s)), el("td", {}, s.task), el("td", {}, s.queue),
    el("td", {}, s.paused ? el("span", { class: "badge badge-lost" }, "paused")
      : el("span", { class: "badge badge-alive" }, "active")),
    el("td", {}, timeCell(s.next_run)), el("td", {}, last),
    el("td", { class: "num" }, String(s.runs)), el("td", {}, s.misfire), el("td", {}, s.origin));
}

export async function render(ctx) {
  const box = el("div", {}, el("p", { class: "muted" }, "Loading schedules…"));
  fill(ctx.root, el("section", { class: "card" }, el("h1", {}, "Schedules"),
    el("p", { class: "muted" }, "Periodic tasks; change them with the conveyor schedules command or /v1/schedules."),
    box));
  let shown = "";
  const load = async () => {
    const data = await get("api/schedules");
    const text = JSON.stringify(data.schedules);
    if (text === shown) return; // unchanged: leave the table (and any selection) alone
    shown = text;
    const headers = ["Schedule", "Timing", "Task", "Queue", "Status", "Next run", "Last run",
      { num: "Runs" }, "Misfire", "Origin"];
    fill(box, table(headers, data.schedules.map((s) => scheduleRow(s, data.now)),
      { empty: "No schedule yet." }));
  };
  ctx.every(REFRESH_MS, () => load().catch(() => {}));
  await load();
}
