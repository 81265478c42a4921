// Small building blocks the pages share: tables, a pager, action buttons.

import { el } from "./dom.js";
import { describe } from "./api.js";

/** A table with a header row; `rows` are <tr> elements. Wrapped so it scrolls on a phone.
 * A header is text or a node; `{num: "Pending"}` right-aligns a column of numbers. */
export function table(headers, rows, { empty = "Nothing here.", caption = null } = {}) {
  const body = rows.length
    ? rows.map((row) => labelCells(row, headers))
    : [el("tr", {}, el("td", { colspan: headers.length, class: "muted empty" }, empty))];
  return el("div", { class: "table-wrap" },
    el("table", { class: "stack" }, caption ? el("caption", {}, caption) : null,
      el("thead", {}, el("tr", {}, headers.map(headerCell))),
      el("tbody", {}, body)));
}

function headerText(h) {
  if (typeof h === "string") return h;
  return h && typeof h === "object" && "num" in h ? h.num : "";
}

/** On a phone each row shows as a card of "label value" lines (CSS reads data-label). */
function labelCells(row, headers) {
  [...row.children].forEach((cell, i) => {
    const label = headerText(headers[i]);
    if (label) cell.dataset.label = label;
  });
  return row;
}

function headerCell(h) {
  if (h && typeof h === "object" && "num" in h) return el("th", { scope: "col", class: "num" }, h.num);
  return el("th", { scope: "col" }, h);
}

/** "1–50 of 123" with previous/next buttons; `go(offset)` loads another page. */
export function pager({ offset, limit, total }, go) {
  if (total <= limit && offset === 0) {
    return el("p", { class: "pager muted" }, `${total} ${total === 1 ? "item" : "items"}`);
  }
  const last = Math.min(offset + limit, total);
  return el("nav", { class: "pager", "aria-label": "Pages" },
    el("button", { type: "button", disabled: offset <= 0, "data-testid": "page-prev",
      onclick: () => go(Math.max(0, offset - limit)) }, "← Newer page"),
    el("span", {}, total ? `${offset + 1}–${last} of ${total}` : "0 items"),
    el("button", { type: "button", disabled: last >= total, "data-testid": "page-next",
      onclick: () => go(offset + limit) }, "Older page →"));
}

/** A button that runs `act()` once at a time, and reports its failure through `notify`. */
export function actionButton(label, testid, act, notify, { kind = "" } = {}) {
  const button = el("button", { type: "button", class: `action ${kind}`, "data-testid": testid });
  button.textContent = label;
  button.addEventListener("click", async () => {
    if (button.disabled) return;
    button.disabled = true;
    button.classList.add("busy");
    try {
      await act();
    } catch (error) {
      notify(describe(error), "error");
    } finally {
      button.disabled = false;
      button.classList.remove("busy");
    }
  });
  return button;
}

/** A destructive action asks once more on the button itself: the first click arms it
 * ("Click again to …") for a few seconds, the second acts. No modal, nothing to dismiss. */
export function armedButton(label, testid, act, notify) {
  let armedUntil = 0;
  const button = actionButton(label, testid, async () => {
    if (Date.now() > armedUntil) {
      armedUntil = Date.now() + 5000;
      button.textContent = `Click again to ${label.toLowerCase()}`;
      button.classList.add("armed");
      setTimeout(() => {
        button.textContent = label;
        button.classList.remove("armed");
      }, 5000);
      return;
    }
    armedUntil = 0;
    await act();
  }, notify, { kind: "danger" });
  return button;
}

/** A labelled form field. */
export function field(label, input) {
  return el("label", { class: "field" }, el("span", {}, label), input);
}
