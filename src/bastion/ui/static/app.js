// The dashboards' shell: sign-in, navigation, and which views this role may open.
// Views live in views/*.js; each declares the permissions it needs and renders itself from
// API data with dom.js (text only).

import { api, ApiError, session, whenSignedOut } from "./api.js";
import { clear, h } from "./dom.js";
import executive from "./views/executive.js";
import oncall from "./views/oncall.js";
import debug from "./views/debug.js";
import governance from "./views/governance.js";

const VIEWS = [executive, oncall, debug, governance];
const REFRESH_MS = 15000;

const state = { who: null, timer: null, rendering: 0, notice: "" };

const main = () => document.getElementById("main");

function can(permission) {
  return Boolean(state.who && state.who.permissions.includes(permission));
}

function allowed(view) {
  return view.needs.every(can);
}

function parseHash() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  return { name: parts[0] || "", args: parts.slice(1) };
}

function go(name, ...args) {
  const target = `#/${[name, ...args].map(encodeURIComponent).join("/")}`;
  if (location.hash === target) render();
  else location.hash = target;
}

function stopRefresh() {
  if (state.timer !== null) clearInterval(state.timer);
  state.timer = null;
}

function showChrome(signedIn) {
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("who").hidden = !signedIn;
  if (!signedIn) return;
  document.getElementById("who-name").textContent = state.who.name;
  document.getElementById("who-roles").textContent = state.who.roles.join(", ") || "no role";
  const current = parseHash().name;
  for (const link of document.querySelectorAll("#nav a[data-view]")) {
    const view = VIEWS.find((v) => v.id === link.dataset.view);
    link.classList.toggle("locked", !allowed(view));
    if (allowed(view)) link.removeAttribute("title");
    else link.setAttribute("title", `your role cannot see this (needs ${view.needs.join(", ")})`);
    link.classList.toggle("current", link.dataset.view === current);
    if (link.dataset.view === current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function signInPage(message) {
  stopRefresh();
  showChrome(false);
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    placeholder: "bst_…",
    "aria-describedby": "token-help",
  });
  const error = h("p", { class: "error", role: "alert", testid: "signin-error" }, message || "");
  error.hidden = !message;
  const form = h(
    "form",
    { class: "signin", testid: "signin", novalidate: true },
    h("h1", null, "Sign in"),
    h("label", { for: "token" }, "API token"),
    input,
    h(
      "p",
      { id: "token-help", class: "help" },
      "Your token stays in this browser tab only and is removed when you sign out or close the tab.",
    ),
    h("button", { type: "submit", testid: "signin-submit" }, "Sign in"),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    input.value = "";
    if (!session.looksLikeToken(token)) {
      error.textContent = "That is not a Bastion token (bst_ followed by 72 letters and digits).";
      error.hidden = false;
      return;
    }
    try {
      state.who = await api("/v1/auth/whoami", { token });
    } catch (e) {
      error.textContent = e instanceof ApiError ? `Sign-in failed: ${e.message} (${e.code})` : String(e);
      error.hidden = false;
      return;
    }
    session.set(token);
    const first = VIEWS.find(allowed) || VIEWS[0];
    const wanted = VIEWS.find((v) => v.id === parseHash().name);
    go(wanted ? wanted.id : first.id);
  });
  clear(main()).appendChild(form);
  input.focus();
}

function forbidden(view) {
  const missing = view.needs.filter((p) => !can(p));
  return h(
    "section",
    { class: "panel forbidden", testid: "forbidden", role: "alert" },
    h("h1", null, `${view.title}: your role cannot see this`),
    h(
      "p",
      null,
      `You are signed in as ${state.who.name} (${state.who.roles.join(", ") || "no role"}). `,
      `The ${view.title.toLowerCase()} view needs the ${missing.join(" and ")} permission${missing.length > 1 ? "s" : ""}.`,
    ),
    h("p", null, "Ask an administrator for a role that grants it, or pick another view above."),
  );
}

function errorPanel(error) {
  const text = error instanceof ApiError ? `${error.message} (${error.code})` : String(error);
  return h("section", { class: "panel error-panel", role: "alert", testid: "view-error" }, h("h2", null, "Could not load this view"), h("p", null, text));
}

// Principal id -> name, for this tab's session (cleared on sign-out).
const names = new Map();

/** Replace the principal ids a view shows with names (one call for the ids not seen yet). */
async function showNames(root) {
  const spans = [...root.querySelectorAll("[data-principal]")];
  const missing = [...new Set(spans.map((el) => el.dataset.principal))].filter((id) => !names.has(id));
  if (missing.length && can("model.read")) {
    try {
      for (let i = 0; i < missing.length; i += 100) {
        const query = missing.slice(i, i + 100).map((id) => `id=${encodeURIComponent(id)}`).join("&");
        const found = (await api(`/v1/dashboards/names?${query}`)).names;
        for (const id of missing.slice(i, i + 100)) names.set(id, found[id] ?? null);
      }
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) throw e;
      // names are a courtesy: without them the ids stay
    }
  }
  for (const el of spans) {
    const name = names.get(el.dataset.principal);
    if (name) el.textContent = name;
  }
}

async function render() {
  stopRefresh();
  if (!session.token) {
    const notice = state.notice;
    state.notice = "";
    signInPage(notice);
    return;
  }
  if (state.who === null) {
    try {
      state.who = await api("/v1/auth/whoami");
    } catch (e) {
      session.clear();
      signInPage(e instanceof ApiError && e.status === 401 ? "Your session ended: sign in again." : String(e));
      return;
    }
  }
  const { name, args } = parseHash();
  const view = VIEWS.find((v) => v.id === name);
  if (!view) {
    go((VIEWS.find(allowed) || VIEWS[0]).id);
    return;
  }
  showChrome(true);
  document.title = `${view.title} — Bastion`;
  const root = clear(main());
  if (!allowed(view)) {
    root.appendChild(forbidden(view));
    return;
  }
  const ticket = ++state.rendering;
  const host = h("div", { class: "view", testid: `view-${view.id}` });
  const status = h("p", { class: "status", testid: "view-status", "aria-live": "polite" }, "Loading…");
  root.append(host, status);
  const ctx = {
    who: state.who,
    can,
    api,
    args,
    go,
    refresh: () => draw(),
  };
  const draw = async () => {
    try {
      const content = await view.render(ctx);
      if (ticket !== state.rendering) return;
      host.replaceChildren(content);
      await showNames(host);
      if (ticket !== state.rendering) return;
      status.textContent = `Updated ${new Date().toISOString().slice(11, 19)} UTC`;
      status.dataset.loaded = "true";
    } catch (e) {
      if (ticket !== state.rendering) return;
      if (e instanceof ApiError && e.status === 401) return;
      host.replaceChildren(errorPanel(e));
      status.textContent = "";
    }
  };
  await draw();
  if (view.refresh !== false && ticket === state.rendering) {
    state.timer = setInterval(() => {
      if (!document.hidden && !host.querySelector("[data-busy], input:focus, select:focus")) draw();
    }, REFRESH_MS);
  }
}

function endSession(notice) {
  stopRefresh();
  session.clear();
  names.clear();
  state.who = null;
  state.rendering += 1;
  state.notice = notice;
  if (location.hash === "#/signin") render();
  else location.hash = "#/signin";
}

whenSignedOut(() => endSession("Your session ended (the token expired or was revoked): sign in again."));

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("signout").addEventListener("click", () => endSession("Signed out."));
  window.addEventListener("hashchange", () => render());
  render();
});
