// Vehicle page: profile and latest values, signal charts over time, the DTC timeline with
// lifecycle, current risk with its reasons and its history, and the vehicle's offers and bookings.

import { api, el, fmtTime, fmtDay, fmtNum, riskBadge } from "./common.js";
import { lineChart, dtcTimeline } from "./charts.js";

const WHEELS = [["Row1.Wheel.Left", "front-left"], ["Row1.Wheel.Right", "front-right"],
  ["Row2.Wheel.Left", "rear-left"], ["Row2.Wheel.Right", "rear-right"]];
const wheels = (leaf) => WHEELS.map(([pos, label]) => [`Vehicle.Chassis.Axle.${pos}.${leaf}`, label]);

/** Which signals share a chart (names from src/catalog.rs). */
const CHARTS = [
  { title: "12 V battery", unit: "V", signals: [
    ["Vehicle.LowVoltageBattery.CurrentVoltage", "resting"],
    ["Vehicle.LowVoltageBattery.CrankingVoltage", "cranking"]] },
  { title: "Brake pad wear", unit: "%", signals: wheels("Brake.PadWear") },
  { title: "Tread depth", unit: "mm", signals: wheels("Tire.TreadDepth") },
  { title: "Tyre pressure", unit: "kPa", signals: wheels("Tire.Pressure") },
  { title: "Traction battery health", unit: "%", signals: [
    ["Vehicle.Powertrain.TractionBattery.StateOfHealth", "state of health"]] },
  { title: "Cell voltage spread", unit: "V", signals: [
    ["Vehicle.Powertrain.TractionBattery.CellVoltage.Max", "max"],
    ["Vehicle.Powertrain.TractionBattery.CellVoltage.Min", "min"]] },
  { title: "Coolant temperature", unit: "°C", stat: "max", signals: [
    ["Vehicle.Powertrain.CombustionEngine.EngineCoolant.Temperature", "daily max"]] },
  { title: "Oil life", unit: "%", signals: [
    ["Vehicle.Powertrain.CombustionEngine.EngineOil.LifeRemaining", "remaining"]] },
  { title: "Catalyst efficiency", unit: "%", signals: [["Vehicle.OBD.Catalyst.Bank1.Efficiency", "bank 1"]] },
];

const DAYS = 180;

export async function renderVehicle(vin, params) {
  const path = `/v1/vehicles/${encodeURIComponent(vin)}`;
  const [vehicle, dtcs, risk, offers] = await Promise.all([
    api(path),
    api(`${path}/dtcs`),
    api(`${path}/risk`).catch(() => null),
    api(`/v1/offers?vin=${encodeURIComponent(vin)}&limit=20`).catch(() => null),
  ]);
  const to = vehicle.last_sample_at ? new Date(new Date(vehicle.last_sample_at).getTime() + 86400e3) : new Date();
  const from = new Date(to.getTime() - DAYS * 86400e3);
  const buckets = await api(`${path}/telemetry?bucket=1d&from=${from.toISOString()}&to=${to.toISOString()}&limit=100000`);

  const bySignal = new Map();
  for (const b of buckets.buckets) {
    if (!bySignal.has(b.signal)) bySignal.set(b.signal, []);
    bySignal.get(b.signal).push(b);
  }
  const charts = CHARTS.filter((c) => c.signals.some(([name]) => bySignal.has(name))).map((c) =>
    lineChart(c.title, c.unit, c.signals.filter(([name]) => bySignal.has(name)).map(([name, label]) => ({
      label,
      points: bySignal.get(name).map((b) => [new Date(b.ts).getTime() / 1000, b[c.stat ?? "avg"]]),
    }))));

  const p = vehicle.profile ?? {};
  return el("section", { class: "page", id: "page-vehicle", dataset: { vin } },
    el("h1", {}, vin, " ", el("small", { class: "muted" }, [p.make, p.model, p.model_year].filter(Boolean).join(" "))),
    el("dl", { class: "facts" },
      fact("Powertrain", p.powertrain?.toUpperCase()),
      fact("Home workshop", p.home_workshop ? el("a", { href: `#/workshops/${encodeURIComponent(p.home_workshop)}` }, p.home_workshop) : null),
      fact("Offers consent", p.offers_consent === undefined ? null : p.offers_consent ? "yes" : "opted out"),
      fact("First seen", fmtTime(vehicle.first_seen)),
      fact("Last sample", fmtTime(vehicle.last_sample_at)),
      fact("Active DTCs", String(vehicle.active_dtcs?.length ?? 0))),
    riskSection(risk),
    el("h2", {}, `Signals, daily, last ${DAYS} days`),
    el("div", { class: "charts", id: "vehicle-charts" }, charts.length ? charts : el("p", { class: "muted" }, "No stored signals in this period.")),
    el("h2", {}, "Fault codes"),
    dtcs.dtcs.length
      ? el("div", { id: "dtc-timeline" }, dtcTimeline(dtcs.dtcs, from, to), dtcTable(dtcs.dtcs))
      : el("p", { class: "muted", id: "dtc-timeline" }, "No fault codes reported."),
    offersSection(offers),
    latestTable(vehicle.signals ?? []));
}

function fact(label, value) {
  return [el("dt", {}, label), el("dd", {}, value ?? "—")];
}

function riskSection(risk) {
  const rows = (risk?.components ?? []).slice().sort((a, b) => (b.p30 ?? 0) - (a.p30 ?? 0));
  if (rows.length === 0) return el("p", { class: "muted", id: "risk" }, "No risk scores yet.");
  // Each component carries the model and time of its score; the latest says when the car was scored.
  const latest = rows.reduce((a, b) => (new Date(b.scored_at) > new Date(a.scored_at) ? b : a));
  const history = (risk.history ?? []);
  return el("div", { id: "risk" },
    el("h2", {}, "Risk ", el("small", { class: "muted", id: "risk-scored" }, `model ${latest.model_version ?? "—"}, scored ${fmtTime(latest.scored_at)}`)),
    el("table", { class: "grid", id: "risk-table" },
      el("thead", {}, el("tr", {}, ["Component", "7 d", "30 d", "90 d", "Urgency", "Why"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.map((r) => el("tr", { dataset: { component: r.component } },
        el("td", {}, r.label ?? r.component),
        el("td", { class: "num" }, riskBadge(r.p7)),
        el("td", { class: "num" }, riskBadge(r.p30)),
        el("td", { class: "num" }, riskBadge(r.p90)),
        el("td", { class: "num" }, r.urgency_days == null ? "—" : `${fmtNum(r.urgency_days, 0)} d`),
        el("td", {}, el("ul", { class: "factors" }, (r.factors ?? []).map((f) => el("li", {}, f.text)))))))),
    history.length ? lineChart("Risk history (30 d horizon)", "probability",
      groupHistory(history)) : null);
}

function groupHistory(history) {
  const by = new Map();
  for (const h of history) {
    if (!by.has(h.component)) by.set(h.component, []);
    by.get(h.component).push([new Date(h.scored_at).getTime() / 1000, h.p30]);
  }
  return [...by].map(([label, points]) => ({ label, points }));
}

function dtcTable(dtcs) {
  return el("table", { class: "grid compact" },
    el("thead", {}, el("tr", {}, ["Code", "State", "First seen", "Last seen", "Cleared", "Reports"].map((h) => el("th", {}, h)))),
    el("tbody", {}, dtcs.map((d) => el("tr", { dataset: { code: d.code } },
      el("td", {}, d.code),
      el("td", {}, d.active ? el("strong", {}, `active (${d.status})`) : d.status),
      el("td", {}, fmtTime(d.first_seen)),
      el("td", {}, fmtTime(d.last_seen)),
      el("td", {}, fmtTime(d.cleared_at)),
      el("td", { class: "num" }, d.reports)))));
}

function offersSection(offers) {
  const list = offers?.offers ?? [];
  return el("div", { id: "vehicle-offers" },
    el("h2", {}, "Offers and bookings"),
    list.length === 0 ? el("p", { class: "muted" }, "None.") :
      el("table", { class: "grid compact" },
        el("thead", {}, el("tr", {}, ["Created", "Component", "Risk", "State", "Job", "Workshop", "Booking"].map((h) => el("th", {}, h)))),
        el("tbody", {}, list.map((o) => el("tr", { dataset: { offer: o.id } },
          el("td", {}, fmtDay(o.created_at)),
          el("td", {}, o.component),
          el("td", { class: "num" }, riskBadge(o.risk)),
          el("td", {}, o.state),
          el("td", {}, jobNames(o)),
          el("td", {}, o.workshop),
          el("td", {}, o.booking_id ? `#${o.booking_id}` : "—"))))));
}

/** An offer's jobs (a visit may have several); those the owner declined struck through. */
function jobNames(o) {
  const jobs = o.jobs?.length ? o.jobs : [{ job_name: o.job_name ?? o.job }];
  return jobs.flatMap((j, i) => [i ? el("br") : null, j.declined_at ? el("s", {}, j.job_name) : j.job_name]);
}

function latestTable(signals) {
  return el("details", { id: "latest" },
    el("summary", {}, `Latest value of each signal (${signals.length})`),
    el("table", { class: "grid compact" },
      el("tbody", {}, signals.map((s) => el("tr", {},
        el("td", {}, s.signal), el("td", { class: "num" }, fmtNum(s.value, 2)), el("td", {}, fmtTime(s.ts)))))));
}

