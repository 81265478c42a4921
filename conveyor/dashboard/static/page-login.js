// Login: a token in, an HttpOnly cookie back (the page never sees or stores the token).

import { el, fill } from "./dom.js";
import { post, describe } from "./api.js";

/** Where to go after signing in: the page asked for, if it is one of ours (an address
 * like "//elsewhere.example" in `next` must not lead out of the dashboard). */
function nextPath(ctx) {
  const base = new URL(document.baseURI);
  const url = new URL(ctx.query.get("next") || "", base);
  if (url.origin !== base.origin || !url.pathname.startsWith(base.pathname)) return "";
  const path = url.pathname.slice(base.pathname.length) + url.search;
  return path.startsWith("login") ? "" : path;
}

export async function render(ctx) {
  const token = el("input", { id: "login-token", type: "password", "data-testid": "login-token",
    autocomplete: "current-password", required: true, spellcheck: "false" });
  const message = el("p", { class: "field-error", role: "alert", "data-testid": "login-error", hidden: true });
  const submit = el("button", { type: "submit", "data-testid": "login-submit", class: "primary" }, "Sign in");
  const form = el("form", { class: "login" },
    el("label", { class: "field", for: "login-token" }, el("span", {}, "Access token"), token),
    submit, message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      await post("api/login", { token: token.value.trim() });
      token.value = "";
      await ctx.refreshSession();
      ctx.openLive();
      ctx.navigate(nextPath(ctx) || "./");
    } catch (error) {
      fill(message, error.status === 401 ? "That token is not valid." : describe(error));
      message.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
  const session = ctx.session;
  fill(ctx.root, el("section", { class: "card narrow" }, el("h1", {}, "Sign in"),
    session.auth ? el("p", {}, "Paste an access token: a read token lets you look, a write token lets you act.")
      : el("p", { class: "muted" }, "This dashboard has no tokens configured: everyone may use it."),
    session.user ? el("p", { class: "muted" }, `Signed in as ${session.user}.`) : null,
    form));
  token.focus();
}
