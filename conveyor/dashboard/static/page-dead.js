// Dead letters: filter by task name, error text and age; retry or delete the selected ones
// or all that match; purge with a typed confirmation.

import { el, fill, timeCell, shortId, taskPath } from "./dom.js";
import { get, post, query, describe } from "./api.js";
import { table, pager, actionButton, armedButton, field } from "./ui.js";

const LIMIT = 50;
const REFRESH_MS = 3000;
const UNITS = { s: 1, m: 60, h: 3600, d: 86400 };

/** Seconds from "90", "90s", "5m", "2h" or "1d"; null for empty; NaN if unreadable. */
export function parseAge(text) {
  const value = text.trim().toLowerCase();
  if (!value) return null;
  const found = /^(\d+(?:\.\d+)?)\s*([smhd]?)$/.exec(value);
  return found ? Number(found[1]) * UNITS[found[2] || "s"] : Number.NaN;
}

function filterForm(current, apply) {
  const input = (testid, name, value, placeholder) =>
    el("input", { "data-testid": testid, name, value: value ?? "", placeholder, autocomplete: "off" });
  const task = input("dead-filter-task", "task", current.task, "exact task name");
  const text = input("dead-filter-text", "text", current.text, "part of the error");
  const minAge = input("dead-filter-min-age", "min_age", current.min_age, "e.g. 90, 5m, 2h");
  const maxAge = input("dead-filter-max-age", "max_age", current.max_age, "e.g. 1d");
  const queue = input("dead-filter-queue", "queue", current.queue, "any queue");
  const message = el("p", { class: "field-error", role: "alert", hidden: true });
  const form = el("form", { class: "filters" },
    field("Task name", task), field("Error text", text), field("Dead for at least", minAge),
    field("Dead for at most", maxAge), field("Queue", queue),
    el("button", { type: "submit", "data-testid": "dead-filter-apply" }, "Apply filter"), message);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const ages = [parseAge(minAge.value), parseAge(maxAge.value)];
    if (ages.some((a) => Number.isNaN(a))) {
      fill(message, "Ages are a number of seconds, or a number with m, h or d (5m, 2h, 1d).");
      message.hidden = false;
      return;
    }
    message.hidden = true;
    apply({ task: task.value.trim(), text: text.value.trim(), queue: queue.value.trim(),
      min_age: ages[0], max_age: ages[1] });
  });
  return form;
}

/** The filter as the API takes it: only what is set. */
function apiFilter(filter) {
  const out = {};
  for (const key of ["task", "text", "queue", "min_age", "max_age"]) {
    if (filter[key] !== null && filter[key] !== undefined && filter[key] !== "") out[key] = filter[key];
  }
  return out;
}

/** A task id is "queue:ULID" (see conveyor/ids.py): the summary names no queue, the id does. */
function queueOf(id) {
  return id.includes(":") ? id.slice(0, id.indexOf(":")) : null;
}

function deadRow(t, selection, onToggle, canAct) {
  const queue = queueOf(t.id);
  const box = canAct ? el("input", { type: "checkbox", "data-testid": `dead-select-${t.id}`,
    "aria-label": `Select ${t.id}`, checked: selection.has(t.id),
    onchange: (e) => onToggle(t.id, e.target.checked) }) : null;
  return el("tr", { "data-testid": `dead-row-${t.id}` },
    canAct ? el("td", { class: "check" }, box) : null,
    el("th", { scope: "row", class: "mono" }, el("a", { href: taskPath(t.id), title: t.id }, shortId(t.id))),
    el("td", {}, t.name),
    el("td", {}, queue ? el("a", { href: `queues/${encodeURIComponent(queue)}` }, queue) : "—"),
    el("td", { class: "error-text" }, t.error || t.reason || ""),
    el("td", { class: "num" }, String(t.attempts ?? 0)),
    el("td", {}, timeCell(t.finished_at, Date.now())));
}

function purgePanel(ctx, done) {
  const input = el("input", { "data-testid": "purge-confirm-input", autocomplete: "off",
    placeholder: "purge", "aria-label": "Type purge to confirm" });
  const button = actionButton("Delete every dead letter", "purge-confirm-button", async () => {
    const answer = await post("api/dead/purge", { confirm: "purge" });
    ctx.notify(`Purged ${answer.deleted} dead letters.`);
    await done();
  }, ctx.notify, { kind: "danger" });
  button.disabled = true;
  input.addEventListener("input", () => { button.disabled = input.value.trim() !== "purge"; });
  return el("div", { class: "purge-panel", role: "group", "aria-label": "Purge" },
    el("p", {}, "This deletes every dead letter, whatever the filter. Type ",
      el("strong", { class: "mono" }, "purge"), " to confirm."), input, button);
}

/** The filter and page offset kept in the address bar. */
function fromQuery(q) {
  const age = (key) => (q.get(key) ? Number(q.get(key)) : null);
  return {
    filter: { task: q.get("task") || "", text: q.get("text") || "", queue: q.get("queue") || "",
      min_age: age("min_age"), max_age: age("max_age") },
    offset: Math.max(0, Number.parseInt(q.get("offset") || "0", 10) || 0),
  };
}

/** The page's state: filter, page, selection; and its parts, redrawn separately so that
 * ticking a box does not rebuild the list. */
class DeadLetters {
  constructor(ctx) {
    this.ctx = ctx;
    this.canAct = ctx.session.can_act;
    Object.assign(this, fromQuery(ctx.query));
    this.selection = new Set();
    this.data = { total: 0, offset: 0, limit: LIMIT, items: [] };
    this.shown = "";
    this.bar = el("div", { class: "actions bulk" });
    this.purgeBox = el("div", {});
    this.list = el("div", {}, el("p", { class: "muted" }, "Loading dead letters…"));
  }

  /** The operator is choosing or confirming: the list must not change under them. */
  busy() {
    return this.selection.size > 0 || this.purgeBox.firstChild !== null;
  }

  async load(force) {
    const { filter, offset } = this;
    const answer = await get(`api/dead${query({ ...apiFilter(filter), offset, limit: LIMIT })}`);
    const text = JSON.stringify(answer);
    if (!force && text === this.shown) return;
    this.shown = text;
    this.data = answer;
    const present = new Set(answer.items.map((t) => t.id));
    for (const id of [...this.selection]) if (!present.has(id)) this.selection.delete(id);
    this.drawList();
  }

  reload() {
    return this.load(true).catch((error) => this.ctx.notify(describe(error), "error"));
  }

  applyFilter(next) {
    Object.assign(this.filter, next);
    this.offset = 0;
    this.selection.clear();
    this.ctx.setQuery(apiFilter(this.filter));
    this.reload();
  }

  goTo(offset) {
    this.offset = offset;
    this.ctx.setQuery({ ...apiFilter(this.filter), ...(offset ? { offset } : {}) });
    this.reload();
  }

  toggle(id, on) {
    if (on) this.selection.add(id);
    else this.selection.delete(id);
    this.drawBar();
  }

  drawList() {
    const { data, selection, canAct } = this;
    const allBox = canAct ? el("input", { type: "checkbox", "aria-label": "Select all on this page",
      checked: data.items.length > 0 && data.items.every((t) => selection.has(t.id)),
      onchange: (e) => { data.items.forEach((t) => this.toggle(t.id, e.target.checked)); this.drawList(); },
    }) : null;
    const headers = [allBox, "Task", "Name", "Queue", "Error", { num: "Attempts" }, "Died"]
      .filter((h) => h !== null);
    const rows = data.items.map((t) => deadRow(t, selection, (id, on) => this.toggle(id, on), canAct));
    fill(this.list, el("p", { class: "muted", "data-testid": "dead-total" }, `${data.total} matching`),
      table(headers, rows, { empty: "No dead letter matches." }),
      pager(data, (o) => this.goTo(o)));
    this.drawBar();
  }

  /** Run a bulk action, say what it did, and show the list as it is now. */
  async bulk(path, body, done) {
    const answer = await post(path, body);
    this.ctx.notify(done(answer));
    await this.reload();
  }

  drawBar() {
    if (!this.canAct) return; // read-only: no action control at all
    const { ctx, selection } = this;
    const ids = () => ({ ids: [...selection] });
    const requeued = (a) => `Requeued ${a.requeued} dead letters.`;
    const none = selection.size === 0;
    fill(this.bar,
      actionButton(`Retry selected (${selection.size})`, "dead-retry-selected",
        () => this.bulk("api/dead/retry", ids(), requeued), ctx.notify, { kind: "primary" }),
      actionButton(`Retry all ${this.data.total} matching`, "dead-retry-matching",
        () => this.bulk("api/dead/retry", { filter: apiFilter(this.filter) }, requeued), ctx.notify),
      armedButton(`Delete selected (${selection.size})`, "dead-delete-selected",
        () => this.bulk("api/dead/delete", ids(), (a) => `Deleted ${a.deleted} dead letters.`), ctx.notify),
      el("button", { type: "button", class: "action danger", "data-testid": "dead-purge",
        onclick: () => this.togglePurge() }, "Purge…"));
    this.bar.querySelector("[data-testid=dead-retry-selected]").disabled = none;
    this.bar.querySelector("[data-testid=dead-delete-selected]").disabled = none;
    this.bar.querySelector("[data-testid=dead-retry-matching]").disabled = this.data.total === 0;
  }

  togglePurge() {
    if (this.purgeBox.firstChild) return this.purgeBox.replaceChildren();
    return fill(this.purgeBox, purgePanel(this.ctx, async () => {
      this.purgeBox.replaceChildren();
      await this.reload();
    }));
  }
}

export async function render(ctx) {
  const page = new DeadLetters(ctx);
  fill(ctx.root, el("section", { class: "card" }, el("h1", {}, "Dead letters"),
    filterForm(page.filter, (next) => page.applyFilter(next)), page.bar, page.purgeBox, page.list));
  // follow new dead letters, but not while the operator is choosing or confirming
  ctx.every(REFRESH_MS, () => {
    if (!page.busy()) page.load(false).catch(() => {});
  });
  await page.load(true);
}
