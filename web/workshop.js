// Workshops: the list; per workshop the demand-vs-capacity heatmap by day and skill (from the
// capacity preview) and the booking board of one day, one lane per bay.

import { api, el, fmtNum, localParts, setParams } from "./common.js";

export async function renderWorkshops() {
  const data = await api("/v1/workshops?limit=1000");
  return el("section", { class: "page", id: "page-workshops" },
    el("h1", {}, "Workshops"),
    el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, ["Code", "Name", "Time zone"].map((h) => el("th", {}, h)))),
      el("tbody", {}, (data.workshops ?? []).map((w) => el("tr", { dataset: { workshop: w.code } },
        el("td", {}, el("a", { href: `#/workshops/${encodeURIComponent(w.code)}` }, w.code)),
        el("td", {}, w.name ?? "—"),
        el("td", {}, w.time_zone ?? "—"))))));
}

export async function renderWorkshop(code, params) {
  const days = Number(params.get("days") ?? 28);
  const from = params.get("from") ?? "";
  const q = new URLSearchParams({ workshop: code, days });
  if (from) q.set("from", from);
  const [spec, preview] = await Promise.all([
    api(`/v1/workshops/${encodeURIComponent(code)}`),
    api(`/v1/capacity/preview?${q}`),
  ]);
  const p = preview.workshops[0];
  const boardDay = params.get("day") ?? p.from;
  const board = await bookingBoard(spec, boardDay);
  return el("section", { class: "page", id: "page-workshop", dataset: { workshop: code } },
    el("h1", {}, `${spec.code} `, el("small", { class: "muted" }, `${spec.name}, ${spec.time_zone}`)),
    el("dl", { class: "facts", id: "preview-totals" },
      fact("Capacity", `${fmtNum(p.totals.capacity_hours, 0)} h`),
      fact("Booked", `${fmtNum(p.totals.booked_hours, 1)} h`),
      fact("From offers", `${fmtNum(p.totals.offer_hours, 1)} h`),
      fact("From risk", `${fmtNum(p.totals.risk_hours, 1)} h`),
      fact("Demand", `${fmtNum(p.totals.demand_hours, 1)} h`),
      fact("Days over capacity", String(new Set(p.over_capacity.map((o) => o.day)).size))),
    el("h2", {}, `Demand vs capacity, ${p.days} days from ${p.from}`),
    heatmap(p, (day) => {
      const next = new URLSearchParams(params);
      next.set("day", day);
      setParams(next);
      window.dispatchEvent(new HashChangeEvent("hashchange"));
    }),
    el("p", { class: "muted" }, "Each cell: expected hours / rostered hours of technicians with the skill. Outlined: over capacity. Hover for the jobs that drive it; click a day for its board."),
    el("h2", {}, `Booking board, ${boardDay}`),
    board);
}

function fact(label, value) {
  return [el("dt", {}, label), el("dd", {}, value)];
}

/** Days across, skills down; colour by utilisation. */
function heatmap(p, onDay) {
  const days = [...new Set(p.cells.map((c) => c.day))].sort();
  const skills = [...new Set(p.cells.map((c) => c.skill))].sort();
  const byKey = new Map(p.cells.map((c) => [`${c.day}|${c.skill}`, c]));
  const shade = (u) => {
    if (u == null) return "#f1f5f9";
    const x = Math.min(u, 1.5) / 1.5; // 0 → white, 1.5+ → deep red
    return `hsl(${Math.round(140 - 140 * x)}, 70%, ${Math.round(92 - 40 * x)}%)`;
  };
  return el("div", { class: "scroll" }, el("table", { class: "grid heatmap", id: "heatmap" },
    el("thead", {}, el("tr", {}, el("th", {}, "Skill"),
      days.map((d) => el("th", { class: "num" }, el("button", { type: "button", class: "link", dataset: { day: d }, onclick: () => onDay(d) }, d.slice(5)))))),
    el("tbody", {}, skills.map((s) => el("tr", { dataset: { skill: s } }, el("th", {}, s),
      days.map((d) => {
        const c = byKey.get(`${d}|${s}`);
        if (!c) return el("td", { class: "empty" }, "");
        const tip = [`${s} on ${d}: ${c.demand_hours} h expected of ${c.capacity_hours} h`,
          `booked ${c.booked_hours} h, offers ${c.offer_hours} h, risk ${c.risk_hours} h`,
          ...c.drivers.map((x) => `${x.kind}: ${x.job} ${x.vin} ${x.hours} h`)].join("\n");
        return el("td", {
          class: c.over ? "over" : "", title: tip, style: `background:${shade(c.utilisation)}`,
          dataset: { day: d, demand: c.demand_hours, capacity: c.capacity_hours },
        }, `${fmtNum(c.demand_hours, 1)}/${fmtNum(c.capacity_hours, 0)}`);
      }))))));
}

/** One lane per bay for `day` (local), bookings placed by their local start and end. */
async function bookingBoard(spec, day) {
  const tz = spec.time_zone;
  // A local day is at most 26 hours of UTC either side; filter to the local date below.
  const from = new Date(`${day}T00:00:00Z`).getTime() - 14 * 3600e3;
  const to = from + 52 * 3600e3;
  const q = new URLSearchParams({ workshop: spec.code, status: "booked", from: new Date(from).toISOString(), to: new Date(to).toISOString(), limit: 1000 });
  const data = await api(`/v1/bookings?${q}`);
  const bookings = data.bookings.filter((b) => localParts(b.start, tz).date === day);
  const open = 6 * 60, close = 20 * 60; // the board shows 06:00–20:00 local
  const pct = (m) => `${(100 * (Math.min(Math.max(m, open), close) - open)) / (close - open)}%`;
  const lanes = (spec.bay ?? spec.bays ?? []).map((bay) => {
    const track = el("div", { class: "track" });
    for (const b of bookings.filter((x) => x.bay === bay.code)) {
      const s = localParts(b.start, tz).minutes, e = localParts(b.end, tz).minutes || 24 * 60;
      track.append(el("div", {
        class: "booking", style: `left:${pct(s)};width:calc(${pct(e)} - ${pct(s)})`,
        title: `${b.job} ${b.vin} with ${b.technician}, ${b.start} – ${b.end}`,
        dataset: { booking: b.id },
      }, `${b.job} ${b.vin.slice(-6)}`));
    }
    return el("div", { class: "lane", dataset: { bay: bay.code } },
      el("span", {}, bay.code, " ", el("small", { class: "muted" }, (bay.capabilities ?? []).join(", "))), track);
  });
  return el("div", { class: "board", id: "board", dataset: { day, bookings: bookings.length } },
    lanes.length ? lanes : el("p", { class: "muted" }, "This workshop has no bays."),
    el("p", { class: "muted" }, `${bookings.length} bookings; lanes show 06:00–20:00 ${tz}.`));
}
