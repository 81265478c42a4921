// Talking to the dashboard's JSON API: relative URLs, the one error shape, the Redis banner.

import { href } from "./dom.js";

/** An error answer of the server: {"error": {"code", "message"}} with its status. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const listeners = { redis: [], unauthorized: [] };

/** Subscribe to "redis" (up: bool) or "unauthorized" (no argument). */
export function on(event, fn) {
  listeners[event].push(fn);
}

function emit(event, value) {
  for (const fn of listeners[event]) fn(value);
}

/** Report Redis state to whoever shows the banner (SSE snapshots call this too). */
export function redisState(up) {
  emit("redis", up);
}

async function errorFrom(response) {
  let code = `http_${response.status}`;
  let message = `The server answered ${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // not JSON (a proxy's page, say): keep the status line as the message
  }
  return new ApiError(response.status, code, message);
}

const NO_REDIS = ["api/session", "api/login", "api/logout"];

/** GET/POST/DELETE `path` (relative to the dashboard root); the parsed JSON, or null (204).
 * Writes always carry Content-Type: application/json: the server refuses others (CSRF guard). */
export async function request(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method !== "GET") {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body === undefined ? {} : body);
  }
  let response;
  try {
    response = await fetch(href(path), init);
  } catch {
    throw new ApiError(0, "network", "The dashboard server cannot be reached.");
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 503) redisState(false);
    if (response.status === 401) emit("unauthorized");
    throw error;
  }
  // an answer that needed Redis and got it means Redis is back (the session calls do not)
  if (!NO_REDIS.some((p) => path.startsWith(p))) redisState(true);
  return response.status === 204 ? null : response.json();
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body);
export const del = (path) => request("DELETE", path);

/** "a=1&b=x" from an object, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** A message for people from any error thrown by `request` (or elsewhere). */
export function describe(error) {
  if (error instanceof ApiError) {
    return error.status ? `${error.message} (${error.status} ${error.code})` : error.message;
  }
  return String(error && error.message ? error.message : error);
}
