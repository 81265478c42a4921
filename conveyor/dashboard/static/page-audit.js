// Audit log: every operator action, newest first.

import { el, fill, timeCell, taskPath } from "./dom.js";
import { get, query, describe } from "./api.js";
import { table, pager } from "./ui.js";

const LIMIT = 50;
const REFRESH_MS = 3000;

const TASK_ID = /^[A-Za-z0-9_.-]+(~[1-9][0-9]{0,2})?:[0-9A-HJKMNP-TV-Z]{26}$/; // "queue:ULID" (conveyor/ids.py)

/** A target that is one task id links to its page; others (queues, filters, lists) are text. */
function target(text) {
  return TASK_ID.test(text || "") ? el("a", { href: taskPath(text) }, text) : text;
}

function auditRow(e) {
  return el("tr", { "data-testid": "audit-row", "data-action": e.action },
    el("td", {}, timeCell(e.at)), el("td", {}, e.actor),
    el("td", {}, el("span", { class: "badge badge-action" }, e.action)),
    el("td", { class: "mono target" }, target(e.target)), el("td", { class: "num" }, String(e.count ?? "")),
    el("td", {}, e.via || ""), el("td", { class: "mono" }, e.address || "—"));
}

export async function render(ctx) {
  let offset = Math.max(0, Number.parseInt(ctx.query.get("offset") || "0", 10) || 0);
  const list = el("div", {}, el("p", { class: "muted" }, "Loading the audit log…"));
  fill(ctx.root, el("section", { class: "card" }, el("h1", {}, "Audit log"),
    el("p", { class: "muted" }, "Every operator action, from the dashboard, the API and the CLI."), list));
  let shown = "";
  const load = async (force = false) => {
    const data = await get(`api/audit${query({ offset, limit: LIMIT })}`);
    const text = JSON.stringify(data);
    if (!force && text === shown) return;
    shown = text;
    fill(list, table(["When", "Who", "Action", "Target", { num: "Count" }, "Via", "From"],
      data.items.map(auditRow), { empty: "No action recorded yet." }),
    pager(data, (o) => {
      offset = o;
      ctx.setQuery(offset ? { offset } : {});
      load(true).catch((error) => ctx.notify(describe(error), "error"));
    }));
  };
  ctx.every(REFRESH_MS, () => load().catch(() => {}));
  await load(true);
}
