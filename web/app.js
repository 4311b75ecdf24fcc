// Aftercare console: a hash-routed single page over the same /v1 API and API keys as every
// other client. No build step and no CDN: plain ES modules and a vendored chart library.

import { api, apiKey, el, errorBox, parseHash, KEY_STORAGE } from "./common.js";
import { renderFleet } from "./fleet.js";
import { renderVehicle } from "./vehicle.js";
import { renderWorkshops, renderWorkshop } from "./workshop.js";
import { renderOffers } from "./offers.js";

function signOut(message) {
  sessionStorage.removeItem(KEY_STORAGE);
  renderLogin(message);
}

function renderLogin(message) {
  document.getElementById("logout").hidden = true;
  document.getElementById("whoami").textContent = "";
  const view = document.getElementById("view");
  const input = el("input", {
    id: "api-key", type: "password", autocomplete: "off", required: true,
    placeholder: "ac_…", "aria-label": "API key",
  });
  const status = el("p", { class: "muted", id: "login-status" }, message ?? "");
  const form = el("form", {
    class: "login",
    onsubmit: async (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY_STORAGE, key);
      try {
        // Any fleet-read call proves the key; an under-scoped key still signs in (403 later).
        await api("/v1/fleet/risk?limit=1", { allowUnauthorized: true });
      } catch (err) {
        if (err.status === 401) {
          sessionStorage.removeItem(KEY_STORAGE);
          status.textContent = "That key was refused.";
          return;
        }
      }
      if (!location.hash || location.hash === "#/login") location.hash = "#/fleet";
      route();
    },
  },
  el("h1", {}, "Sign in"),
  el("p", {}, "Paste an API key (", el("code", {}, "aftercare keys create"), " prints one). It is kept for this tab only."),
  el("label", { for: "api-key" }, "API key"), input,
  el("button", { type: "submit", id: "login-submit" }, "Sign in"),
  status);
  view.replaceChildren(form);
  input.focus();
}

const routes = {
  fleet: (args, params) => renderFleet(params),
  vehicle: (args, params) => renderVehicle(args[0], params),
  workshops: (args, params) => (args[0] ? renderWorkshop(args[0], params) : renderWorkshops(params)),
  offers: (args, params) => renderOffers(params),
};

let generation = 0;

/** Renders the current route; a newer navigation wins over a slower older one. */
async function route() {
  if (!apiKey()) {
    renderLogin();
    return;
  }
  document.getElementById("logout").hidden = false;
  const { parts, params } = parseHash();
  const [section = "fleet", ...args] = parts;
  const render = routes[section] ?? routes.fleet;
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.section === section);
  }
  const mine = ++generation;
  const view = document.getElementById("view");
  view.setAttribute("aria-busy", "true");
  try {
    const content = await render(args, params);
    if (mine === generation) view.replaceChildren(content);
  } catch (err) {
    if (mine === generation) view.replaceChildren(errorBox(err));
  } finally {
    if (mine === generation) view.removeAttribute("aria-busy");
  }
}

document.getElementById("logout").addEventListener("click", () => signOut("Signed out."));
window.addEventListener("hashchange", route);
window.addEventListener("aftercare:signout", (e) => signOut(e.detail));
route();
