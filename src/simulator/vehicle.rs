//! One vehicle's life, a day at a time: whether and how far it is driven, what the day does to
//! each part, what its diagnostics and sensors report (a trip-end sample each driving day, a
//! full health snapshot weekly, diagnostic reports when a code changes), failures, and
//! workshop visits (routine service by distance or time, repairs after failures, visits when
//! the owner reacts to a warning light), each of which produces service records.

use super::delivery::{Delivery, Outbox, Realism};
use super::diagnostics::{Change, Diagnostics};
use super::fleet::VehicleSpec;
use super::parts::{
    Battery12v, Brakes, Code, Cooling, DayCtx, DayObs, Emissions, Failure, Finding, Ignition, Oil,
    Readings, TractionBattery, Tyres,
};
use super::rng::{stream, Purpose, Sim};
use super::stream::{Generated, Kind};
use super::truth::{DegradedTruth, FailureTruth, PreventiveTruth, Truth};
use crate::catalog;
use crate::component::Component;
use crate::store::service_records::NewServiceRecord;
use crate::vehicle::Powertrain;
use crate::vehicle::ServiceKind;
use chrono::{DateTime, Datelike, Duration, SecondsFormat, Utc, Weekday};
use serde_json::{json, Map, Value};

/// Everything a vehicle produced on one day.
#[derive(Debug, Default)]
pub struct Produced {
    pub deliveries: Vec<Delivery>,
    pub records: Vec<NewServiceRecord>,
}

#[derive(Debug)]
struct Parts {
    battery: Battery12v,
    traction: Option<TractionBattery>,
    brakes: Brakes,
    tyres: Tyres,
    cooling: Option<Cooling>,
    ignition: Option<Ignition>,
    emissions: Option<Emissions>,
    oil: Option<Oil>,
}

#[derive(Debug, Clone)]
struct OpenFailure {
    component: Component,
    job: &'static str,
    truth: usize,
    immobilized: bool,
}

/// The source name of the simulator's service records.
pub const RECORD_SOURCE: &str = "simulator";

#[derive(Debug)]
pub struct VehicleSim {
    pub spec: VehicleSpec,
    r: Sim,
    parts: Parts,
    diag: Diagnostics,
    outbox: Outbox,
    pub odometer_km: f64,
    km_since_service: f64,
    days_since_service: i64,
    days_since_brake_fluid: i64,
    next_visit: Option<u32>,
    failed: Vec<OpenFailure>,
    snapshot_due: bool,
    jobs: u32,
    start_hour: f64,
    workshops: usize,
}

fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

impl VehicleSim {
    pub fn new(spec: VehicleSpec, seed: u64, realism: Realism, workshops: usize) -> VehicleSim {
        let index = spec.index as u64;
        let mut r = stream(seed, index, Purpose::Life);
        let engine = spec.powertrain.has_engine();
        let parts = Parts {
            battery: Battery12v::new(&spec, &mut r),
            traction: spec
                .powertrain
                .has_traction_battery()
                .then(|| TractionBattery::new(&spec, &mut r)),
            brakes: Brakes::new(&spec, &mut r),
            tyres: Tyres::new(&spec, &mut r),
            cooling: engine.then(Cooling::default),
            ignition: engine.then(|| Ignition::new(&spec, &mut r)),
            emissions: engine.then(|| Emissions::new(&spec, &mut r)),
            oil: engine.then(|| Oil::new(&spec, &mut r)),
        };
        let km_since_service = r.uniform(0.0, 0.9) * spec.service_km;
        let days_since_service = (r.uniform(0.0, 0.9) * spec.service_days as f64) as i64;
        let days_since_brake_fluid = r.int(0, 700);
        let start_hour = match spec.usage {
            super::fleet::Usage::Commuter => r.uniform(6.0, 8.5),
            super::fleet::Usage::TaxiDelivery => r.uniform(5.5, 8.0),
            _ => r.uniform(8.0, 11.0),
        };
        let outbox = Outbox::new(
            stream(seed, index, Purpose::Delivery),
            realism,
            &spec.vin,
            spec.clock_skew_ms,
            spec.gap_rate,
        );
        VehicleSim {
            odometer_km: spec.start_odometer_km,
            r,
            parts,
            diag: Diagnostics::default(),
            outbox,
            km_since_service,
            days_since_service,
            days_since_brake_fluid,
            next_visit: None,
            failed: Vec::new(),
            snapshot_due: true,
            jobs: 0,
            start_hour,
            workshops,
            spec,
        }
    }

    fn is_failed(&self, c: Component) -> bool {
        self.failed.iter().any(|f| f.component == c)
    }

    fn schedule_visit(&mut self, day: u32) {
        if self.next_visit.is_none_or(|d| day < d) {
            self.next_visit = Some(day);
        }
    }

    fn routine_due(&self, slack: f64) -> bool {
        self.km_since_service >= self.spec.service_km * (1.0 - slack)
            || self.days_since_service as f64 >= self.spec.service_days as f64 * (1.0 - slack)
    }

    /// Simulates day `day` (starting at midnight `date`) with outside temperature `ambient_c`.
    pub fn step(
        &mut self,
        day: u32,
        date: DateTime<Utc>,
        ambient_c: f64,
        truth: &mut Truth,
        out: &mut Produced,
    ) {
        self.outbox.start_day(day);
        let mut first_start = date + minutes(self.start_hour * 60.0 + self.r.normal(0.0, 20.0));
        if self.next_visit.is_some_and(|d| d <= day) {
            self.next_visit = None;
            let back = self.visit(day, date, truth, out);
            first_start = first_start.max(back + Duration::minutes(15));
        }
        if day % 7 == self.spec.index as u32 % 7 {
            self.snapshot_due = true;
        }

        // Driving.
        let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
        let usage = self.spec.usage;
        let mean_p =
            (5.0 * usage.drive_probability(false) + 2.0 * usage.drive_probability(true)) / 7.0;
        let immobile = self.failed.iter().any(|f| f.immobilized);
        let driving = !immobile && self.r.chance(usage.drive_probability(weekend));
        let km = if driving {
            // Median below the mean of a log-normal with sigma 0.5 by exp(0.125).
            let median = self.spec.annual_km / (365.0 * mean_p) / 1.133;
            self.r.lognormal(median, 0.5).min(900.0)
        } else {
            0.0
        };
        let trips = if driving {
            1 + self.r.poisson(usage.trips() - 1.0)
        } else {
            0
        };
        let engine_share = match self.spec.powertrain {
            Powertrain::Ice => 1.0,
            Powertrain::Hev => 0.6,
            Powertrain::Phev => 0.35,
            Powertrain::Bev => 0.0,
        };
        let ambient_c = ambient_c + self.r.normal(0.0, 1.5);
        let ctx = DayCtx {
            day,
            ambient_c,
            driving,
            km,
            engine_km: km * engine_share,
            trips,
            urban_share: self.spec.urban_share,
            style: self.spec.style,
            age_years: self.spec.age_years + f64::from(day) / 365.25,
        };
        let span_h = (km / 35.0 + f64::from(trips) * 0.5).min(14.0) + 1.0;
        let last_end = first_start + minutes(span_h * 60.0);

        // Parts.
        let mut obs = DayObs::default();
        self.parts_day(&ctx, &mut obs);
        let changes = if driving {
            self.diag.drive_cycle(&obs.codes)
        } else {
            Vec::new()
        };

        // Failures (one per component; a failed part waits for its repair).
        // A failure that immobilises the car ends its day there; nothing fails after it.
        let odometer_start = self.odometer_km;
        let mut timed = Vec::new();
        for f in std::mem::take(&mut obs.failures) {
            if self.is_failed(f.component)
                || timed
                    .iter()
                    .any(|(g, ..): &(Failure, _, _)| g.component == f.component)
            {
                continue;
            }
            let at = if f.immobilized && f.component == Component::Battery12v {
                first_start
            } else {
                first_start + minutes(self.r.uniform(0.0, span_h * 60.0))
            };
            let share =
                ((at - first_start).num_seconds() as f64 / (span_h * 3600.0)).clamp(0.0, 1.0);
            timed.push((f, at, share));
        }
        let stopped = timed
            .iter()
            .filter(|(f, ..)| f.immobilized)
            .map(|(_, at, share)| (*at, *share))
            .min_by(|a, b| a.0.cmp(&b.0));
        for (f, at, share) in timed {
            if stopped.is_none_or(|(stop, _)| at <= stop) {
                self.fail(f, at, odometer_start + km * share, date, truth, day);
            }
        }
        let (last_end, km) = match stopped {
            Some((at, share)) => (at, km * share),
            None => (last_end, km),
        };

        // A lit warning light brings some owners in, sooner for a tyre; worn tyres too.
        if driving && self.next_visit.is_none_or(|d| d > day + 3) {
            let lit: Vec<Component> = self.diag.confirmed().iter().map(|c| c.component).collect();
            let urgency = if lit.contains(&Component::Tyres) {
                0.5
            } else if lit.contains(&Component::Brakes) {
                0.2
            } else if !lit.is_empty() {
                0.1
            } else if self.parts.tyres.look_worn() {
                0.05
            } else {
                0.0
            };
            if urgency > 0.0 && self.r.chance(urgency * self.spec.reacts_to_warnings) {
                let delay = 1 + self.r.exponential(3.0) as u32;
                self.schedule_visit(day + delay);
            }
        }

        self.odometer_km += km;
        self.km_since_service += km;
        self.days_since_service += 1;
        self.days_since_brake_fluid += 1;
        if self.routine_due(0.0) && self.next_visit.is_none() {
            let delay = 1 + self.r.exponential(self.spec.service_delay_days) as u32;
            self.schedule_visit(day + delay);
        }

        // What the car reports.
        let full = std::mem::take(&mut self.snapshot_due);
        if !driving {
            self.snapshot_due = full;
            return;
        }
        let mut report: Vec<Change> = changes;
        if full {
            let confirmed = self.diag.confirmed();
            for c in confirmed {
                if !report.iter().any(|r| r.code == c.code) {
                    report.push(c);
                }
            }
        }
        if !report.is_empty() {
            let at = first_start + Duration::minutes(10);
            self.emit_report(at, &report, &mut out.deliveries);
        }
        let sample = self.sample(last_end, &obs.readings, full);
        self.outbox.sample(last_end, sample, &mut out.deliveries);
    }

    fn parts_day(&mut self, ctx: &DayCtx, obs: &mut DayObs) {
        let j1939 = self.spec.j1939;
        let failed: Vec<Component> = self.failed.iter().map(|f| f.component).collect();
        let ok = |c: Component| !failed.contains(&c);
        let r = &mut self.r;
        let p = &mut self.parts;
        if ok(Component::Battery12v) {
            p.battery.day(ctx, r, obs, j1939);
        }
        if let Some(t) = p
            .traction
            .as_mut()
            .filter(|_| ok(Component::TractionBattery))
        {
            t.day(ctx, r, obs);
        }
        if ok(Component::Brakes) {
            p.brakes.day(ctx, r, obs);
        }
        if ok(Component::Tyres) {
            p.tyres.day(ctx, r, obs);
        }
        if let Some(c) = p.cooling.as_mut().filter(|_| ok(Component::Cooling)) {
            c.day(ctx, r, obs, j1939);
        }
        if let Some(i) = p.ignition.as_mut().filter(|_| ok(Component::Ignition)) {
            i.day(ctx, r, obs);
        }
        if let Some(e) = p.emissions.as_mut().filter(|_| ok(Component::Emissions)) {
            e.day(ctx, r, obs);
        }
        if let Some(o) = p.oil.as_mut().filter(|_| ok(Component::Oil)) {
            o.day(ctx, r, obs, j1939);
        }
        obs.readings.ambient_c = ctx.ambient_c;
        // Frozen parts still show their last state.
        obs.readings.pad_wear = p.brakes.wear;
        obs.readings.tread_mm = p.tyres.tread;
    }

    fn fail(
        &mut self,
        f: Failure,
        at: DateTime<Utc>,
        odometer_km: f64,
        date: DateTime<Utc>,
        truth: &mut Truth,
        day: u32,
    ) {
        let precursor_start = f.precursor_since.map(|since| day_start(date, day, since));
        truth.failures.push(FailureTruth {
            event: "failure",
            vin: self.spec.vin.clone(),
            component: f.component,
            failed_at: at,
            odometer_km: round(odometer_km, 1),
            precursor_start,
            cause: f.cause,
            repaired_at: None,
        });
        self.failed.push(OpenFailure {
            component: f.component,
            job: f.job,
            truth: truth.failures.len() - 1,
            immobilized: f.immobilized,
        });
        // Towed in the next day or two; otherwise booked within the week.
        let delay = if f.immobilized {
            self.r.int(1, 2)
        } else {
            self.r.int(1, 7)
        } as u32;
        self.schedule_visit(day + delay);
    }

    /// A workshop visit on the morning of `date`: repairs what failed, does the routine
    /// service when due, inspects everything, clears the codes. Returns when the car is back.
    fn visit(
        &mut self,
        day: u32,
        date: DateTime<Utc>,
        truth: &mut Truth,
        out: &mut Produced,
    ) -> DateTime<Utc> {
        let start = date + minutes(self.r.uniform(7.5 * 60.0, 10.0 * 60.0));
        let done = start + minutes(self.r.uniform(90.0, 300.0));
        let workshop = if self.r.chance(0.9) {
            self.spec.home_workshop.clone()
        } else {
            super::fleet::workshop_code(self.r.int(0, self.workshops.max(1) as i64 - 1) as usize)
        };
        let routine = self.routine_due(0.15);
        let kind = if !self.failed.is_empty() {
            "repair"
        } else if routine {
            "routine"
        } else {
            "warning"
        };
        let mut jobs: Vec<(Component, ServiceKind, &'static str, Option<String>)> = Vec::new();
        for f in std::mem::take(&mut self.failed) {
            truth.failures[f.truth].repaired_at = Some(done);
            self.fix(f.component, f.job);
            jobs.push((
                f.component,
                ServiceKind::Repair,
                f.job,
                Some(truth.failures[f.truth].cause.clone()),
            ));
        }
        if routine {
            self.km_since_service = 0.0;
            self.days_since_service = 0;
            if let Some(oil) = self.parts.oil.as_mut() {
                oil.service();
                jobs.push((Component::Oil, ServiceKind::Routine, "oil_service", None));
            }
            if let Some(ign) = self.parts.ignition.as_mut().filter(|i| i.plugs_due()) {
                ign.plug_km = 0.0;
                jobs.push((
                    Component::Ignition,
                    ServiceKind::Routine,
                    "spark_plugs",
                    None,
                ));
            }
            if self.days_since_brake_fluid >= 700 {
                self.days_since_brake_fluid = 0;
                jobs.push((Component::Brakes, ServiceKind::Routine, "brake_fluid", None));
            }
        }
        for finding in self.inspect() {
            if jobs.iter().any(|(c, ..)| *c == finding.component)
                && finding.component != Component::Oil
            {
                continue;
            }
            self.fix(finding.component, finding.job);
            let precursor_start = finding
                .precursor_since
                .map(|since| day_start(date, day, since));
            truth.preventive.push(PreventiveTruth {
                event: "preventive",
                vin: self.spec.vin.clone(),
                component: finding.component,
                found_at: start,
                odometer_km: round(self.odometer_km, 1),
                precursor_start,
                cause: finding.cause.clone(),
                job: finding.job,
                visit: kind,
            });
            jobs.push((
                finding.component,
                ServiceKind::Preventive,
                finding.job,
                Some(finding.cause),
            ));
        }
        self.parts.tyres.inflate();
        for (component, kind, job, notes) in jobs {
            self.jobs += 1;
            out.records.push(NewServiceRecord {
                vin: self.spec.vin.clone(),
                source: RECORD_SOURCE.to_owned(),
                external_id: format!("{}-{:04}", self.spec.vin, self.jobs),
                performed_at: done,
                odometer_km: Some(round(self.odometer_km, 1)),
                workshop: Some(workshop.clone()),
                component,
                kind,
                job: job.to_owned(),
                notes,
            });
        }
        let cleared = self.diag.clear_all();
        if !cleared.is_empty() {
            self.emit_report(done, &cleared, &mut out.deliveries);
        }
        done
    }

    fn inspect(&mut self) -> Vec<Finding> {
        let r = &mut self.r;
        let p = &self.parts;
        [
            p.battery.inspect(r),
            p.traction.as_ref().and_then(|t| t.inspect(r)),
            p.tyres.inspect(r),
            p.cooling.as_ref().and_then(|c| c.inspect(r)),
            p.ignition.as_ref().and_then(|i| i.inspect(r)),
            p.emissions.as_ref().and_then(|e| e.inspect(r)),
            p.oil.as_ref().and_then(|o| o.inspect(r)),
        ]
        .into_iter()
        .flatten()
        .chain(p.brakes.inspect(r))
        .collect()
    }

    fn fix(&mut self, component: Component, job: &str) {
        let r = &mut self.r;
        let p = &mut self.parts;
        match component {
            Component::Battery12v => p.battery.replace(r),
            Component::TractionBattery => {
                if let Some(t) = p.traction.as_mut() {
                    t.repair(job)
                }
            }
            Component::Brakes => p.brakes.repair(job),
            Component::Tyres => p.tyres.repair(job),
            Component::Cooling => {
                if let Some(c) = p.cooling.as_mut() {
                    c.repair()
                }
            }
            Component::Ignition => {
                if let Some(i) = p.ignition.as_mut() {
                    i.repair()
                }
            }
            Component::Emissions => {
                if let Some(e) = p.emissions.as_mut() {
                    e.repair(r)
                }
            }
            Component::Oil => {
                if let Some(o) = p.oil.as_mut() {
                    o.repair(r)
                }
            }
        }
    }

    /// The trip-end sample; `full` adds the weekly health snapshot.
    fn sample(&mut self, at: DateTime<Utc>, r: &Readings, full: bool) -> Value {
        let mut s = Map::new();
        let mut put = |name: &str, v: f64| {
            s.insert(name.to_owned(), json!(v));
        };
        put(catalog::ODOMETER, round(self.odometer_km, 1));
        put(catalog::AMBIENT_TEMPERATURE, round(r.ambient_c, 1));
        put(catalog::BATTERY_12V_VOLTAGE, round(r.battery_v, 2));
        if let Some(v) = r.cranking_v {
            put(catalog::BATTERY_12V_CRANKING_VOLTAGE, round(v, 2));
        }
        if let Some(v) = r.coolant_max_c {
            put(catalog::COOLANT_TEMPERATURE, round(v, 1));
        }
        if let Some(v) = r.misfires {
            put(catalog::MISFIRE_COUNT, f64::from(v));
        }
        if let Some(v) = r.traction_temp_c {
            put(catalog::TRACTION_TEMPERATURE, round(v, 1));
        }
        if let (Some(max), Some(min)) = (r.cell_max_v, r.cell_min_v) {
            put(catalog::TRACTION_CELL_MAX, round(max, 3));
            put(catalog::TRACTION_CELL_MIN, round(min, 3));
        }
        // Pressures go out weekly, and daily while one is low (reporting on change).
        let low = r.tyre_kpa.iter().any(|p| *p < 0.9 * self.nominal_kpa());
        if full || low {
            for w in 0..4 {
                put(
                    &catalog::wheel_signal(w, catalog::TIRE_PRESSURE_LEAF),
                    r.tyre_kpa[w].round(),
                );
            }
        }
        if full {
            for w in 0..4 {
                put(
                    &catalog::wheel_signal(w, catalog::PAD_WEAR_LEAF),
                    r.pad_wear[w].round(),
                );
                put(
                    &catalog::wheel_signal(w, catalog::TREAD_DEPTH_LEAF),
                    round(r.tread_mm[w], 1),
                );
            }
            if let Some(v) = r.soh {
                put(catalog::TRACTION_SOH, round(v, 1));
            }
            if let Some(v) = r.fast_charges {
                put(catalog::TRACTION_FAST_CHARGES, f64::from(v));
            }
            if let Some(v) = r.oil_life {
                put(catalog::OIL_LIFE, v.round());
            }
            if self.spec.powertrain.has_engine() {
                put(
                    catalog::DISTANCE_TO_SERVICE,
                    (self.spec.service_km - self.km_since_service).round(),
                );
            }
            if let Some(v) = r.catalyst_eff {
                put(catalog::CATALYST_EFFICIENCY, round(v, 1));
            }
        }
        let seq = self.outbox.next_seq();
        let ts = self
            .outbox
            .device_time(at)
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        json!({"ts": ts, "seq": seq, "signals": s})
    }

    fn nominal_kpa(&self) -> f64 {
        if self.spec.j1939 {
            350.0
        } else {
            250.0
        }
    }

    fn emit_report(&mut self, at: DateTime<Utc>, changes: &[Change], out: &mut Vec<Delivery>) {
        let dtcs: Vec<Value> = changes
            .iter()
            .map(|c| {
                let status = c.status.word(&c.code);
                match &c.code {
                    Code::Obd(code) => json!({"code": code, "status": status}),
                    Code::J1939 { spn, fmi } => {
                        json!({"spn": spn, "fmi": fmi, "oc": 1, "sa": 0, "status": status})
                    }
                }
            })
            .collect();
        let n = dtcs.len();
        let seq = self.outbox.next_seq();
        let body = json!({
            "ts": self.outbox.device_time(at).timestamp_millis(),
            "seq": seq,
            "source": if self.spec.j1939 { "j1939" } else { "obd" },
            "mil": self.diag.mil(),
            "dtcs": dtcs,
        });
        let message = Generated {
            topic: format!("v1/vehicles/{}/dtc", self.spec.vin),
            payload: body.to_string().into_bytes(),
            kind: Kind::Dtc,
            vin: self.spec.vin.clone(),
            samples: 0,
            values: 0,
            dtcs: n,
        };
        self.outbox.report(at, message, out);
    }

    /// Ends the run at `end` (midnight after day `day - 1`): sends whatever a coverage gap
    /// still holds and records the parts still degrading that have not failed.
    pub fn finish(
        &mut self,
        day: u32,
        end: DateTime<Utc>,
        truth: &mut Truth,
        out: &mut Vec<Delivery>,
    ) {
        self.outbox.flush(end, out);
        let p = &self.parts;
        let degraded = [
            (Component::Battery12v, p.battery.degraded_since()),
            (
                Component::TractionBattery,
                p.traction.as_ref().and_then(|t| t.degraded_since()),
            ),
            (Component::Brakes, p.brakes.degraded_since()),
            (Component::Tyres, p.tyres.degraded_since()),
            (
                Component::Cooling,
                p.cooling.as_ref().and_then(|c| c.degraded_since()),
            ),
            (
                Component::Ignition,
                p.ignition.as_ref().and_then(|i| i.degraded_since()),
            ),
            (
                Component::Emissions,
                p.emissions.as_ref().and_then(|e| e.degraded_since()),
            ),
            (
                Component::Oil,
                p.oil.as_ref().and_then(|o| o.degraded_since()),
            ),
        ];
        for (component, since) in degraded {
            let Some(since) = since else { continue };
            if self.is_failed(component) {
                continue;
            }
            truth.degraded.push(DegradedTruth {
                event: "degraded",
                vin: self.spec.vin.clone(),
                component,
                precursor_start: day_start(end, day, since),
                as_of: end,
            });
        }
    }
}

/// Midnight of day `since`, given that day `day` began at `date`.
fn day_start(date: DateTime<Utc>, day: u32, since: u32) -> DateTime<Utc> {
    date - Duration::days(i64::from(day.saturating_sub(since)))
}

fn minutes(m: f64) -> Duration {
    Duration::seconds((m * 60.0) as i64)
}
