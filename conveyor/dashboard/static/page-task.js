// Task: what it is, where it is in its life (timeline), its payload and result, and the
// actions its state allows. A dead task's payload can be edited and replayed.

import { el, fill, timeCell, prettyJson, badge, formatSeconds, taskPath, href } from "./dom.js";
import { get, post, del, describe } from "./api.js";
import { actionButton, armedButton } from "./ui.js";

const FALLBACK_MS = 15000;
const FAILING = new Set(["dead", "failed", "retrying"]);

function facts(task) {
  const row = (label, value) => [el("dt", {}, label), el("dd", {}, value ?? "—")];
  const retries = task.max_retries === null || task.max_retries === undefined ? "" : ` of ${task.max_retries + 1}`;
  return el("dl", { class: "facts" },
    row("Queue", el("a", { href: `queues/${encodeURIComponent(task.queue)}` }, task.queue)),
    row("Name", el("span", { class: "mono" }, task.name)),
    row("Attempts", `${task.attempts ?? 0}${retries}` +
      `${task.failures ? `, ${task.failures} failed` : ""}${task.crashes ? `, ${task.crashes} crashed` : ""}`),
    row("Priority", String(task.priority ?? 0)),
    row("Timeout", task.timeout ? formatSeconds(task.timeout) : "—"),
    row("Enqueued", timeCell(task.enqueued_at)),
    row("Due", timeCell(task.due_at)),
    row("Started", timeCell(task.started_at)),
    row("Finished", timeCell(task.finished_at)),
    row("Worker", task.worker ? el("span", { class: "mono" }, task.worker) : "—"),
    task.progress ? row("Progress", progressText(task.progress)) : null,
    task.checkpoint !== null && task.checkpoint !== undefined
      ? row("Checkpoint", el("span", { class: "mono" }, JSON.stringify(task.checkpoint))) : null,
    task.reason ? row("Reason", task.reason) : null);
}

// what the handler last reported with ctx.progress: {fraction, message, at (ms)}
function progressText(progress) {
  const percent = `${Math.round((progress.fraction ?? 0) * 100)}%`;
  const at = progress.at ? ` (${new Date(progress.at).toISOString()})` : "";
  return `${percent}${progress.message ? `: ${progress.message}` : ""}${at}`;
}

function errorBlock(error, open = false) {
  if (!error) return null;
  return el("div", { class: "error-block" },
    el("p", {}, el("strong", {}, error.type || "Error"), ": ", error.message || ""),
    error.traceback ? el("details", { open }, el("summary", {}, "Traceback"),
      el("pre", { class: "traceback" }, error.traceback)) : null);
}

function timeline(events) {
  if (!events.length) return el("p", { class: "muted", "data-testid": "timeline" }, "No events recorded.");
  return el("ol", { class: "timeline", "data-testid": "timeline" }, events.map((e) =>
    el("li", { class: `event event-${e.kind}`, "data-kind": e.kind },
      el("div", { class: "event-head" }, timeCell(e.at), " ", badge(e.kind, e.kind),
        e.attempt ? el("span", { class: "muted" }, ` attempt ${e.attempt}`) : null,
        e.worker ? el("span", { class: "muted mono" }, ` on ${e.worker}`) : null),
      e.text ? el("p", { class: "event-text" }, e.text) : null,
      errorBlock(e.error))));
}

/** {args, kwargs} from the editor's text, or an Error whose message tells what to fix. */
export function parsePayload(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`The payload is not valid JSON: ${error.message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Error('The payload must be a JSON object like {"args": [...], "kwargs": {...}}.');
  }
  const extra = Object.keys(value).filter((k) => k !== "args" && k !== "kwargs");
  if (extra.length) throw new Error(`Only "args" and "kwargs" can be edited; remove ${extra.map((k) => `"${k}"`).join(", ")}.`);
  const args = value.args ?? [];
  const kwargs = value.kwargs ?? {};
  if (!Array.isArray(args)) throw new Error('"args" must be a JSON array (a list), e.g. [1, "two"].');
  if (kwargs === null || typeof kwargs !== "object" || Array.isArray(kwargs)) {
    throw new Error('"kwargs" must be a JSON object, e.g. {"name": "value"}.');
  }
  return { args, kwargs };
}

function editor(ctx, task) {
  const area = el("textarea", { "data-testid": "payload-editor", rows: 10, spellcheck: "false",
    "aria-label": "Payload (JSON)" });
  area.value = prettyJson({ args: task.args ?? [], kwargs: task.kwargs ?? {} });
  const message = el("p", { class: "field-error", "data-testid": "payload-error", role: "alert", hidden: true });
  const check = () => {
    try {
      parsePayload(area.value);
      message.hidden = true;
      return true;
    } catch (error) {
      fill(message, error.message);
      message.hidden = false;
      return false;
    }
  };
  area.addEventListener("input", check);
  const replay = actionButton("Replay with this payload", "replay-edited", async () => {
    if (!check()) return;
    const answer = await post(`api/dead/${encodeURIComponent(task.id)}/replay`, parsePayload(area.value));
    ctx.notify("Replayed with the edited payload.");
    ctx.navigate(taskPath(answer.task ? answer.task.id : task.id), { keepNotice: true });
  }, ctx.notify, { kind: "primary" });
  return el("div", { class: "editor" }, el("h2", {}, "Edit the payload and replay"),
    el("p", { class: "muted" }, 'A JSON object with "args" (a list) and "kwargs" (an object).'),
    area, message, el("div", { class: "actions" }, replay));
}

function actions(ctx, data, editorBox, reload) {
  if (!ctx.session.can_act) return null; // read-only: no action control at all
  const { task } = data;
  const path = `api/tasks/${encodeURIComponent(task.id)}`;
  const buttons = [];
  const allowed = new Set(data.actions || []);
  if (allowed.has("cancel")) {
    buttons.push(actionButton("Cancel", "action-cancel", async () => {
      const answer = await post(`${path}/cancel`, {});
      const stopping = answer && answer.task && answer.task.state === "cancelling";
      ctx.notify(stopping ? "Cancelling: its worker is stopping it." : "Task cancelled.");
      await reload();
    }, ctx.notify, { kind: "warn" }));
  }
  if (allowed.has("retry")) {
    const label = task.state === "dead" ? "Replay" : "Retry now";
    buttons.push(actionButton(label, "action-retry", async () => {
      await post(`${path}/retry`, {});
      ctx.notify(task.state === "dead" ? "Dead letter replayed." : "The task will run now.");
      await reload();
    }, ctx.notify, { kind: "primary" }));
  }
  if (task.state === "dead") {
    buttons.push(el("button", { type: "button", class: "action", "data-testid": "edit-payload",
      onclick: () => fill(editorBox, editor(ctx, task)) }, "Edit payload…"));
  }
  if (allowed.has("delete")) {
    buttons.push(armedButton("Delete", "action-delete", async () => {
      await del(path);
      ctx.notify(`Task ${task.id} deleted.`);
      ctx.navigate(`queues/${encodeURIComponent(task.queue)}`, { keepNotice: true });
    }, ctx.notify));
  }
  return buttons.length ? el("div", { class: "actions" }, buttons) : null;
}

function draw(ctx, data, parts, reload) {
  const { task } = data;
  fill(parts.head,
    el("p", { class: "muted mono task-id" }, task.id),
    el("h1", {}, el("span", { class: "mono" }, task.name), " ",
      el("span", { class: `badge badge-${task.state}`, "data-testid": "task-state" }, task.state)),
    actions(ctx, data, parts.editor, reload));
  fill(parts.body,
    el("section", { class: "card" }, el("h2", {}, "Details"), facts(task)),
    el("section", { class: "card" }, el("h2", {}, "Payload"),
      el("pre", { class: "json", "data-testid": "payload" }, prettyJson({ args: task.args, kwargs: task.kwargs }))),
    el("section", { class: "card" }, el("h2", {}, "Result"),
      task.result === null || task.result === undefined ? el("p", { class: "muted" }, "No result.")
        : el("pre", { class: "json", "data-testid": "result" }, prettyJson(task.result)),
      // a replayed task keeps its old error: show it only while it is what the task ended on
      FAILING.has(task.state) && task.error ? [el("h3", {}, "Last error"), errorBlock(task.error)] : null),
    el("section", { class: "card" }, el("h2", {}, "Timeline"), timeline(data.timeline || [])));
  if (task.state !== "dead") parts.editor.replaceChildren();
}

export async function render(ctx, { id }) {
  const parts = { head: el("div", { class: "page-head" }), editor: el("div", {}), body: el("div", {}) };
  fill(ctx.root, el("section", { class: "card" }, parts.head, parts.editor), parts.body);
  let shown = "";
  const load = async (force = false) => {
    const data = await get(`api/tasks/${encodeURIComponent(id)}`);
    const text = JSON.stringify(data);
    if (force || text !== shown) draw(ctx, data, parts, () => load(true));
    shown = text;
  };
  try {
    await load(true);
  } catch (error) {
    if (error.code !== "not_found") throw error;
    fill(ctx.root, el("section", { class: "card" }, el("h1", {}, "No such task"),
      el("p", {}, `No task has the id `, el("span", { class: "mono" }, id), "."),
      el("p", { class: "muted" }, describe(error))));
    return;
  }
  // each state change reloads the task at once; the slow poll is the fallback for a
  // stream that is down
  const changes = new EventSource(href(`api/tasks/${encodeURIComponent(id)}/events`));
  changes.addEventListener("change", () => load().catch(() => {}));
  ctx.onCleanup(() => changes.close());
  ctx.every(FALLBACK_MS, () => load().catch(() => {}));
}
