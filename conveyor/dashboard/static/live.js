// The live stream: one EventSource on api/events for the whole app. Each `snapshot` carries
// the Redis state, the overview and the 15-minute history; pages subscribe while shown.

import { href } from "./dom.js";
import { redisState } from "./api.js";

const subscribers = new Set();
let source = null;
let reopenTimer = null;
let lastSnapshot = null;

function onSnapshot(event) {
  let snapshot;
  try {
    snapshot = JSON.parse(event.data);
  } catch {
    return; // a torn message: the next one comes within a second
  }
  lastSnapshot = snapshot;
  redisState(snapshot.redis !== "down");
  for (const fn of subscribers) fn(snapshot);
}

/** EventSource retries a dropped connection by itself, but gives up for good on an HTTP
 * error (a 401 after the session expired, a 503): then we open a new one a bit later. */
function onError() {
  if (source && source.readyState === EventSource.CLOSED && !reopenTimer) {
    reopenTimer = setTimeout(() => {
      reopenTimer = null;
      open();
    }, 3000);
  }
}

/** Open the stream (again); safe to call when it is already open. */
export function open() {
  if (source && source.readyState !== EventSource.CLOSED) return;
  source = new EventSource(href("api/events"));
  source.addEventListener("snapshot", onSnapshot);
  source.addEventListener("error", onError);
}

export function close() {
  if (source) source.close();
  source = null;
}

/** Call `fn(snapshot)` on every snapshot until the returned function is called. */
export function subscribe(fn) {
  subscribers.add(fn);
  if (lastSnapshot) fn(lastSnapshot);
  return () => subscribers.delete(fn);
}
