// Offers: the booking queue by state. An advisor accepts one of an offer's windows (which
// books its whole visit atomically), declines it, or declines one job of a visit with
// several; a window someone else took comes back as a 409 with alternatives, shown in its place.

import { api, el, fmtDay, fmtLocal, fmtMoney, fmtNum, riskBadge, setParams, toast, ApiError } from "./common.js";

const STATES = ["proposed", "notified", "booked", "declined", "expired", "completed"];
const OPEN = new Set(["proposed", "notified"]);
const PAGE = 50;

export async function renderOffers(params) {
  const state = params.get("state") ?? "";
  const body = el("tbody", { id: "offer-rows" });
  const more = el("button", { type: "button", id: "offers-more", class: "secondary", hidden: true }, "Load more");
  const summary = el("p", { class: "muted", id: "offers-summary" });
  const tz = new Map((await api("/v1/workshops?limit=1000").catch(() => ({ workshops: [] }))).workshops
    .map((w) => [w.code, w.time_zone]));
  let cursor = null;
  let shown = 0;

  async function load() {
    const q = new URLSearchParams({ limit: PAGE });
    if (state) q.set("state", state);
    if (cursor) q.set("cursor", cursor);
    const data = await api(`/v1/offers?${q}`);
    for (const o of data.offers) {
      shown += 1;
      body.append(row(o, tz));
    }
    cursor = data.next_cursor ?? null;
    more.hidden = !cursor;
    summary.textContent = shown === 0 ? "No offers in this state." : `${shown} shown${cursor ? ", more below" : ""}.`;
  }

  const select = el("select", {
    id: "offer-state",
    onchange: (e) => {
      const next = new URLSearchParams();
      if (e.target.value) next.set("state", e.target.value);
      setParams(next);
      window.dispatchEvent(new HashChangeEvent("hashchange"));
    },
  }, el("option", { value: "" }, "all"), STATES.map((s) => el("option", { value: s, selected: s === state }, s)));
  more.addEventListener("click", () => load().catch((e) => toast(e.message, "error")));
  await load();
  return el("section", { class: "page", id: "page-offers" },
    el("h1", {}, "Offers"),
    el("form", { class: "filters" }, el("label", {}, "State ", select)),
    el("table", { class: "grid" },
      el("thead", {}, el("tr", {},
        ["#", "Vehicle", "Component", "Risk", "Urgency", "Why", "Job", "Cost", "State", "Windows"].map((h) => el("th", {}, h)))),
      body),
    summary, more);
}

function row(o, tz) {
  const tr = el("tr", { dataset: { offer: o.id, state: o.state } });
  const fill = (offer) => tr.replaceChildren(
    el("td", { class: "num" }, offer.id),
    el("td", {}, el("a", { href: `#/vehicle/${encodeURIComponent(offer.vin)}` }, offer.vin)),
    el("td", {}, offer.component),
    el("td", { class: "num" }, riskBadge(offer.risk), el("br"), el("small", { class: "muted" }, offer.horizon)),
    el("td", { class: "num" }, offer.urgency_days == null ? "—" : `${fmtNum(offer.urgency_days, 0)} d`),
    el("td", {}, el("ul", { class: "factors" }, (offer.reasons ?? []).map((r) => el("li", {}, r.text ?? r.feature)))),
    el("td", {}, jobsCell(offer), el("small", { class: "muted" }, `${fmtNum(offer.duration_minutes / 60, 1)} h at ${offer.workshop}`)),
    el("td", { class: "num" }, fmtMoney(offer.estimated_cost_cents)),
    el("td", { class: "offer-state" }, offer.state, offer.booking_id ? el("small", { class: "muted" }, ` #${offer.booking_id}`) : null),
    el("td", {}, OPEN.has(offer.state) ? actions(offer) : el("small", { class: "muted" }, fmtDay(offer.decided_at ?? offer.created_at))));

  const actions = (offer, windows = offer.windows ?? [], note = null) => el("div", { class: "windows" },
    note ? el("small", { class: "error" }, note) : null,
    windows.map((w) => el("button", {
      type: "button", class: "accept", dataset: { start: w.start, workshop: w.workshop ?? offer.workshop },
      title: `bay ${w.bay ?? "?"}, technician ${w.technician ?? "?"}`,
      onclick: () => accept(offer, w),
    }, `${fmtLocal(w.start, tz.get(w.workshop ?? offer.workshop))}${w.workshop && w.workshop !== offer.workshop ? ` (${w.workshop})` : ""}`)),
    el("button", { type: "button", class: "secondary decline", onclick: () => decline(offer) }, "Decline"));

  async function accept(offer, w) {
    for (const b of tr.querySelectorAll("button")) b.disabled = true;
    try {
      const booking = await api(`/v1/offers/${offer.id}/accept`, { method: "POST", body: { start: w.start, workshop: w.workshop ?? offer.workshop } });
      toast(`Booked ${booking.job} at ${booking.workshop}, ${fmtLocal(booking.start, tz.get(booking.workshop))} (work order ${booking.work_order ?? "—"})`);
      fill(await api(`/v1/offers/${offer.id}`));
    } catch (err) {
      if (err instanceof ApiError && err.status === 409 && Array.isArray(err.body?.alternatives)) {
        tr.lastChild.replaceChildren(actions(offer, err.body.alternatives, `${err.message}; other times:`));
      } else {
        toast(err.message, "error");
        for (const b of tr.querySelectorAll("button")) b.disabled = false;
      }
    }
  }

  // A visit's jobs; while it is open and has several, each can be declined on its own.
  const jobsCell = (offer) => {
    const jobs = offer.jobs?.length ? offer.jobs : [{ job_name: offer.job_name, component: offer.component }];
    const several = jobs.filter((j) => !j.declined_at).length > 1;
    return el("ul", { class: "jobs" }, jobs.map((j) => el("li", { dataset: { component: j.component } },
      j.declined_at ? el("s", {}, j.job_name) : j.job_name,
      OPEN.has(offer.state) && several && !j.declined_at
        ? el("button", { type: "button", class: "secondary decline-job", title: `Decline only the ${j.component} job`,
          onclick: () => declineJob(offer, j) }, "decline")
        : null)));
  };

  async function declineJob(offer, job) {
    try {
      fill(await api(`/v1/offers/${offer.id}/jobs/${encodeURIComponent(job.component)}/decline`, { method: "POST" }));
      toast(`The ${job.component} job of offer ${offer.id} declined`);
    } catch (err) {
      toast(err.message, "error");
    }
  }

  async function decline(offer) {
    try {
      fill(await api(`/v1/offers/${offer.id}/decline`, { method: "POST" }));
      toast(`Offer ${offer.id} declined`);
    } catch (err) {
      toast(err.message, "error");
    }
  }

  fill(o);
  return tr;
}
