// Queue: its tasks by state (tabs), newest or oldest first, paginated; pause and resume.

import { el, fill, formatSeconds, timeCell, shortId, taskPath, badge } from "./dom.js";
import { get, post, query, describe } from "./api.js";
import { table, pager, actionButton } from "./ui.js";

const STATES = ["pending", "scheduled", "active", "retrying", "dead"];
const LIMIT = 50;
const REFRESH_MS = 2000;

/** The time that matters in each state: when it was enqueued, is due, started or ended. */
const WHEN = {
  pending: ["Enqueued", "enqueued_at"],
  scheduled: ["Due", "due_at"],
  retrying: ["Retry due", "due_at"],
  active: ["Started", "started_at"],
  dead: ["Died", "finished_at"],
};

function taskRow(t, state) {
  return el("tr", { "data-testid": `task-row-${t.id}` },
    el("th", { scope: "row", class: "mono" }, el("a", { href: taskPath(t.id), title: t.id }, shortId(t.id))),
    el("td", {}, t.name), el("td", {}, badge(t.state)), el("td", { class: "num" }, String(t.attempts ?? 0)),
    el("td", {}, timeCell(t[WHEN[state][1]])),
    el("td", { class: "mono" }, t.worker || "—"),
    el("td", { class: "error-text" }, t.error || t.reason || ""));
}

/** Flow control in use: slots and waiting tasks per concurrency key, rate bookings, groups. */
function flowLine(flow) {
  const parts = [
    ...flow.concurrency.map((c) => `${c.key}: ${c.in_use} running, ${c.waiting} waiting for a slot`),
    ...flow.rates.map((r) => `rate ${r.key}: ${r.booked_seconds > 0
      ? `booked ${formatSeconds(r.booked_seconds)} ahead` : "free"}`),
    ...(flow.groups ? [`${flow.groups} fair groups with tasks ahead`] : []),
  ];
  return parts.length
    ? el("p", { class: "muted", "data-testid": "queue-flow" }, `Flow control: ${parts.join(" · ")}`)
    : null;
}

function header(ctx, q, onChange, flow) {
  const controls = [];
  if (ctx.session.can_act) {
    const act = async (verb) => {
      const updated = await post(`api/queues/${encodeURIComponent(q.name)}/${verb}`, {});
      ctx.notify(`Queue ${q.name} ${verb === "pause" ? "paused" : "resumed"}.`);
      onChange(updated);
    };
    controls.push(q.paused
      ? actionButton("Resume", "resume-button", () => act("resume"), ctx.notify)
      : actionButton("Pause", "pause-button", () => act("pause"), ctx.notify, { kind: "warn" }));
  }
  return el("div", { class: "page-head" },
    el("h1", {}, "Queue ", el("span", { class: "mono" }, q.name), " ",
      q.paused ? el("span", { class: "badge badge-paused", "data-testid": "queue-paused" }, "paused")
        : el("span", { class: "badge badge-alive" }, "running")),
    el("p", { class: "muted" }, `Lag ${formatSeconds(q.lag_seconds)}`),
    flowLine(flow),
    el("div", { class: "actions" }, controls));
}

function tabs(q, current, choose) {
  return el("div", { class: "tabs", role: "tablist" }, STATES.map((s) =>
    el("button", { type: "button", role: "tab", "aria-selected": String(s === current),
      class: s === current ? "tab current" : "tab", "data-testid": `queue-state-tab-${s}`,
      onclick: () => choose(s) }, `${s} `, el("span", { class: "count" }, String(q[s] ?? 0)))));
}

function orderPicker(order, choose) {
  const select = el("select", { "data-testid": "queue-order", onchange: () => choose(select.value) },
    el("option", { value: "newest", selected: order === "newest" }, "Newest first"),
    el("option", { value: "oldest", selected: order === "oldest" }, "Oldest first"));
  return el("label", { class: "field inline" }, el("span", {}, "Order"), select);
}

export async function render(ctx, { name }) {
  const view = {
    state: STATES.includes(ctx.query.get("state")) ? ctx.query.get("state") : "pending",
    order: ctx.query.get("order") === "oldest" ? "oldest" : "newest",
    offset: Math.max(0, Number.parseInt(ctx.query.get("offset") || "0", 10) || 0),
  };
  const head = el("div", {});
  const list = el("div", {}, el("p", { class: "muted" }, "Loading tasks…"));
  fill(ctx.root, el("section", { class: "card" }, head, list));
  let shown = "";

  const draw = (data) => {
    fill(head, header(ctx, data.queue, () => load(true), data.flow));
    fill(list,
      el("div", { class: "toolbar" }, tabs(data.queue, view.state, (s) => go({ state: s, offset: 0 })),
        orderPicker(view.order, (o) => go({ order: o, offset: 0 }))),
      table(["Task", "Name", "State", { num: "Attempts" }, WHEN[view.state][0], "Worker", "Error"],
        data.items.map((t) => taskRow(t, view.state)), { empty: `No ${view.state} tasks.` }),
      pager(data, (offset) => go({ offset })));
  };
  const load = async (force = false) => {
    const data = await get(`api/queues/${encodeURIComponent(name)}${query({ ...view, limit: LIMIT })}`);
    const text = JSON.stringify([data.queue, data.items, data.total]);
    if (force || text !== shown) draw(data);
    shown = text;
  };
  const go = (changes) => {
    Object.assign(view, changes);
    ctx.setQuery(view);
    load(true).catch((error) => ctx.notify(describe(error), "error"));
  };
  ctx.every(REFRESH_MS, () => load().catch(() => {}));
  await load(true);
}
