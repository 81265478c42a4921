// The dashboard's shell: session, routing (history.pushState), header, theme, banner, notices.
// Pages live in page-*.js; each exports `render(ctx)` and draws into `ctx.root`.

import { el, fill, href, taskPath } from "./dom.js";
import { get, post, on, describe } from "./api.js";
import * as live from "./live.js";
import * as overview from "./page-overview.js";
import * as workers from "./page-workers.js";
import * as queue from "./page-queue.js";
import * as task from "./page-task.js";
import * as dead from "./page-dead.js";
import * as audit from "./page-audit.js";
import * as schedules from "./page-schedules.js";
import * as login from "./page-login.js";

const THEME_KEY = "conveyor-theme";
const state = { session: { auth: false, user: null, scope: null, can_act: false }, page: null };
const $ = (id) => document.getElementById(id);

/* ---- theme: prefers-color-scheme unless the operator chose, kept in localStorage ---- */

function effectiveTheme() {
  const chosen = document.documentElement.dataset.theme;
  if (chosen) return chosen;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

function applyTheme(theme) {
  if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
  const other = effectiveTheme() === "dark" ? "light" : "dark";
  $("theme-toggle").textContent = other === "dark" ? "Dark" : "Light";
  $("theme-toggle").title = `Switch to the ${other} theme`;
}

function toggleTheme() {
  const next = effectiveTheme() === "dark" ? "light" : "dark";
  try {
    localStorage.setItem(THEME_KEY, next);
  } catch {
    // storage refused (private mode): the choice lasts for this page only
  }
  applyTheme(next);
}

/* ---- banner and notices ---- */

function showRedis(up) {
  $("redis-banner").hidden = up;
}

let noticeTimer = null;

/** A message under the header: kind "ok" fades after a while, "error" stays until replaced. */
function notify(text, kind = "ok") {
  const box = $("notice");
  clearTimeout(noticeTimer);
  box.className = `notice notice-${kind}`;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  fill(box, el("span", {}, text),
    el("button", { type: "button", class: "link", "aria-label": "Dismiss", onclick: clearNotice }, "×"));
  box.hidden = false;
  if (kind === "ok") noticeTimer = setTimeout(clearNotice, 8000);
}

function clearNotice() {
  $("notice").hidden = true;
}

/* ---- routing ---- */

/** The path below the dashboard's root, e.g. "queues/emails" ("" for the overview). */
function routePath() {
  const base = new URL(document.baseURI).pathname;
  const path = location.pathname;
  return path.startsWith(base) ? path.slice(base.length) : path.replace(/^\//, "");
}

function match(path) {
  const [head, ...rest] = path.split("/");
  const tail = rest.join("/");
  const decode = (s) => { try { return decodeURIComponent(s); } catch { return s; } };
  const table = { "": overview, workers, schedules, dead, audit, login };
  if (!tail && head in table) return { page: table[head], name: head || "overview", params: {} };
  if (head === "queues" && tail) return { page: queue, name: "queues", params: { name: decode(tail) } };
  if (head === "tasks" && tail) return { page: task, name: "tasks", params: { id: decode(tail) } };
  return null;
}

function markNav(name) {
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

/** What a page may use. What it starts (timers, subscriptions) stops when it is left,
 * even if it starts them after that: a slow page may still be loading when left. */
function context(root) {
  const page = { left: false, stops: [] };
  state.page = page;
  const keep = (stop) => (page.left ? stop() : page.stops.push(stop));
  return {
    root,
    session: state.session,
    query: new URLSearchParams(location.search),
    navigate,
    notify,
    refreshSession,
    openLive: live.open,
    /** Run `fn(snapshot)` on each live snapshot while this page is shown. */
    onSnapshot: (fn) => keep(live.subscribe(fn)),
    /** Run `fn` when this page is left. */
    onCleanup: keep,
    /** Run `fn` every `ms` while this page is shown. */
    every: (ms, fn) => { const id = setInterval(fn, ms); keep(() => clearInterval(id)); },
    /** Keep the page's own query (filters, tab, offset) in the address bar. */
    setQuery: (params) => {
      const search = new URLSearchParams(params).toString();
      history.replaceState(history.state, "", `${location.pathname}${search ? `?${search}` : ""}`);
    },
  };
}

function leavePage() {
  const page = state.page;
  if (!page) return;
  page.left = true;
  for (const stop of page.stops.splice(0)) stop();
}

function render() {
  leavePage();
  const path = routePath();
  const found = match(path);
  if (!found) {
    markNav(null);
    fill($("view"), el("section", { class: "card" }, el("h1", {}, "Page not found"),
      el("p", {}, "Nothing lives at this address. "), el("a", { href: "./" }, "Back to the overview")));
    return;
  }
  if (needsLogin() && found.name !== "login") {
    navigate(`login?next=${encodeURIComponent(path + location.search)}`, { replace: true });
    return;
  }
  markNav(found.name);
  const root = el("div", { class: `page page-${found.name}` });
  fill($("view"), root);
  const ctx = context(root);
  // a page left before its data arrived keeps writing into its own detached root: harmless
  Promise.resolve(found.page.render(ctx, found.params)).catch((error) => {
    fill(root, el("section", { class: "card error" }, el("h1", {}, "Could not load this page"),
      el("p", {}, describe(error))));
    // Redis (or the server) away: try again while the operator stays on this page
    if (error.status === 503 || error.status === 0) {
      const timer = setTimeout(render, 3000);
      ctx.onCleanup(() => clearTimeout(timer));
    }
  });
}

/** Go to `path` (relative to the dashboard's root) without reloading the page. */
function navigate(path, { replace = false, keepNotice = false } = {}) {
  const url = href(path);
  if (replace) history.replaceState({}, "", url);
  else history.pushState({}, "", url);
  if (!keepNotice) clearNotice();
  window.scrollTo(0, 0);
  render();
}

/** Same-origin links under the root are handled here; others (new tab, download) are not. */
function onLinkClick(event) {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest("a[href]");
  if (!link || link.target || link.hasAttribute("download")) return;
  const url = new URL(link.href);
  const base = new URL(document.baseURI);
  if (url.origin !== location.origin || !url.pathname.startsWith(base.pathname)) return;
  event.preventDefault();
  navigate(url.pathname.slice(base.pathname.length) + url.search);
}

/* ---- session ---- */

function needsLogin() {
  return state.session.auth && !state.session.user;
}

function showSession() {
  const s = state.session;
  const who = s.user ? `${s.user}${s.scope ? ` (${s.scope})` : ""}` : s.auth ? "signed out" : "open access";
  const readOnly = !s.can_act && (s.user || !s.auth); // signed in (or open) but may not act
  fill($("user-name"), who, readOnly ? [" ", el("span", { class: "badge badge-readonly" }, "read-only")] : null);
  $("logout").hidden = !s.user;
}

const SIGNED_OUT = { auth: true, user: null, scope: null, can_act: false };

async function refreshSession() {
  try {
    state.session = await get("api/session");
  } catch (error) {
    // the server answers 401 rather than {"auth": true, "user": null} to a visitor without
    // a token: either way the visitor is signed out
    if (error.status === 401) state.session = { ...SIGNED_OUT };
    else notify(`Could not read the session: ${describe(error)}`, "error");
  }
  showSession();
  return state.session;
}

async function logout() {
  try {
    await post("api/logout", {});
  } catch (error) {
    notify(describe(error), "error");
    return;
  }
  await refreshSession();
  live.close();
  navigate("login");
}

function onSearch(event) {
  event.preventDefault();
  const id = $("search-input").value.trim();
  if (id) navigate(taskPath(id));
}

async function start() {
  try {
    applyTheme(localStorage.getItem(THEME_KEY));
  } catch {
    applyTheme(null);
  }
  $("theme-toggle").addEventListener("click", toggleTheme);
  // the system's scheme may change (sunset); the toggle's label follows unless one was chosen
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => applyTheme(null));
  $("logout").addEventListener("click", logout);
  $("search").addEventListener("submit", onSearch);
  document.addEventListener("click", onLinkClick);
  window.addEventListener("popstate", render);
  on("redis", showRedis);
  on("unauthorized", () => {
    if (routePath() !== "login") {
      state.session = { ...SIGNED_OUT };
      showSession();
      navigate(`login?next=${encodeURIComponent(routePath() + location.search)}`, { replace: true });
    }
  });
  await refreshSession();
  if (!needsLogin()) live.open();
  render();
}

start();
