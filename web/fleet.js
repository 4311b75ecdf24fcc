// Fleet page: vehicles ranked by risk, filtered by component and workshop, paged by cursor so
// it stays fast on a fleet of any size (one page of rows per request).

import { api, el, fmtTime, fmtNum, riskBadge, setParams, COMPONENTS } from "./common.js";

const PAGE = 50;

export async function renderFleet(params) {
  const component = params.get("component") ?? "";
  const workshop = params.get("workshop") ?? "";
  const min = params.get("min") ?? "";
  const workshops = await api("/v1/workshops").then((d) => d.workshops ?? []).catch(() => []);

  const filters = el("form", { class: "filters", id: "fleet-filters", onchange: apply, onsubmit: (e) => { e.preventDefault(); apply(); } },
    el("label", {}, "Component ",
      el("select", { name: "component" },
        el("option", { value: "" }, "any"),
        COMPONENTS.map(([value, label]) => el("option", { value, selected: value === component }, label)))),
    el("label", {}, "Workshop ",
      el("select", { name: "workshop" },
        el("option", { value: "" }, "any"),
        workshops.map((w) => el("option", { value: w.code, selected: w.code === workshop }, `${w.code} ${w.name ?? ""}`)))),
    el("label", {}, "Risk (30 d) at least ",
      el("input", { name: "min", type: "number", min: 0, max: 1, step: 0.05, value: min, size: 4 })));

  const body = el("tbody", { id: "fleet-rows" });
  const more = el("button", { type: "button", id: "fleet-more", hidden: true }, "Load more");
  const summary = el("p", { class: "muted", id: "fleet-summary" });
  let cursor = null;
  let shown = 0;

  async function load() {
    const q = new URLSearchParams({ limit: PAGE });
    if (component) q.set("component", component);
    if (workshop) q.set("workshop", workshop);
    if (min) q.set("min", min);
    if (cursor) q.set("cursor", cursor);
    const data = await api(`/v1/fleet/risk?${q}`);
    for (const r of data.vehicles) {
      shown += 1;
      body.append(el("tr", { dataset: { vin: r.vin, component: r.component } },
        el("td", { class: "num" }, shown),
        el("td", {}, el("a", { href: `#/vehicle/${encodeURIComponent(r.vin)}` }, r.vin)),
        el("td", {}, [r.make, r.model].filter(Boolean).join(" ") || "—"),
        el("td", {}, r.home_workshop ?? "—"),
        el("td", {}, r.component_label ?? r.component),
        el("td", { class: "num" }, riskBadge(r.p30)),
        el("td", { class: "num" }, r.urgency_days == null ? "—" : `${fmtNum(r.urgency_days, 0)} d`),
        el("td", {}, r.factors?.[0]?.text ?? "—"),
        el("td", {}, fmtTime(r.scored_at))));
    }
    cursor = data.next_cursor ?? null;
    more.hidden = !cursor;
    summary.textContent = shown === 0 ? "No vehicle matches." : `${shown} shown${cursor ? ", more below" : ""}.`;
  }

  function apply() {
    const form = new FormData(filters);
    const next = new URLSearchParams();
    for (const [k, v] of form) if (v) next.set(k, v);
    setParams(next);
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  }

  more.addEventListener("click", () => load().catch((e) => summary.replaceChildren(String(e.message))));
  await load();
  return el("section", { class: "page", id: "page-fleet" },
    el("h1", {}, "Fleet risk"),
    filters,
    el("table", { class: "grid" },
      el("thead", {}, el("tr", {},
        ["#", "VIN", "Vehicle", "Workshop", "Component", "Risk 30 d", "Urgency", "Top reason", "Scored"].map((h) => el("th", {}, h)))),
      body),
    summary, more);
}
