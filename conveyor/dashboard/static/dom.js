// Building DOM safely, and formatting values for display.
// Every piece of data (task payloads, errors, names) reaches the page as text nodes or
// attribute values, never through innerHTML: task payloads and tracebacks are untrusted.

const SVG_NS = "http://www.w3.org/2000/svg";

/** Set one attribute: on* become listeners, booleans toggle, `value`/`checked` are properties. */
function setAttr(node, name, value) {
  if (value === null || value === undefined || value === false) return;
  if (name.startsWith("on") && typeof value === "function") {
    node.addEventListener(name.slice(2), value);
  } else if (name === "value" || name === "checked") {
    node[name] = value;
  } else if (value === true) {
    node.setAttribute(name, "");
  } else {
    node.setAttribute(name, String(value));
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** el("a", {href: "x", class: "y"}, "text", otherNode): an HTML element. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) setAttr(node, name, value);
  return append(node, children);
}

/** The same for SVG elements (charts). */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) setAttr(node, name, value);
  return append(node, children);
}

/** Replace every child of `node`. */
export function fill(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

/** A URL relative to the dashboard's root (the page's <base>), never to the site's root. */
export function href(path) {
  return new URL(path, document.baseURI).href;
}

const pad = (n) => String(n).padStart(2, "0");

/** "2026-12-06 22:53:01" in local time, or "—". */
export function formatTime(value) {
  if (value === null || value === undefined || value === "") return "—";
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** "4.2 s", "3 min", "2.5 h": a duration in seconds for people. */
export function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  const s = Math.abs(seconds);
  if (s < 1) return `${Math.round(seconds * 1000)} ms`;
  if (s < 60) return `${seconds.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${(seconds / 60).toFixed(s < 600 ? 1 : 0)} min`;
  if (s < 86400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

/** "12 s ago" relative to `nowMs` (the server's clock when it sent one). */
export function ago(value, nowMs = Date.now()) {
  if (!value) return "";
  const then = new Date(value).getTime();
  if (Number.isNaN(then)) return "";
  const seconds = (nowMs - then) / 1000;
  return seconds >= 0 ? `${formatSeconds(seconds)} ago` : `in ${formatSeconds(-seconds)}`;
}

/** A <time> with the local time and, when asked, how long ago it was. */
export function timeCell(value, nowMs) {
  if (!value) return el("span", { class: "muted" }, "—");
  const rel = nowMs ? ago(value, nowMs) : "";
  return el("time", { datetime: value, title: value }, formatTime(value),
    rel ? el("span", { class: "muted rel" }, ` (${rel})`) : null);
}

/** Pretty JSON for payloads and results. */
export function prettyJson(value) {
  return JSON.stringify(value === undefined ? null : value, null, 2);
}

/** A short task id for tables; the full id stays in the title and the link.
 * Ids are "queue:ULID" and ULIDs start with the time, so the tail is what tells tasks apart. */
export function shortId(id) {
  const ulid = id.includes(":") ? id.slice(id.lastIndexOf(":") + 1) : id;
  return ulid.length > 12 ? `…${ulid.slice(-10)}` : ulid;
}

/** The page path of a task (":" kept readable in the address bar). */
export function taskPath(id) {
  return `tasks/${encodeURIComponent(id).replaceAll("%3A", ":")}`;
}

export function badge(text, kind = text) {
  return el("span", { class: `badge badge-${kind}` }, text);
}
