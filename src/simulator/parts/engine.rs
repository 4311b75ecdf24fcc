//! The combustion engine's parts: cooling, ignition, catalyst, oil.

use super::{code, Code, DayCtx, DayObs, Failure, Finding, YEAR};
use crate::component::Component;
use crate::simulator::fleet::VehicleSpec;
use crate::simulator::rng::Sim;

#[derive(Debug, Clone, Copy, PartialEq)]
enum CoolingFault {
    Pump,
    ThermostatClosed,
    Leak,
}

/// Cooling: a developing fault (pump wear, thermostat sticking closed, a coolant leak) shows
/// as coolant temperature excursions and performance codes before the engine overheats. A
/// thermostat stuck open only keeps the engine cold (P0128).
#[derive(Debug, Clone, Default)]
pub struct Cooling {
    fault: Option<(CoolingFault, u32, f64)>,
    pub severity: f64,
    stuck_open: Option<u32>,
}

const COOLING_FAULT: f64 = 0.008 / YEAR;
const STUCK_OPEN: f64 = 0.004 / YEAR;
const HOSE_BURST: f64 = 0.003 / YEAR;

impl Cooling {
    pub fn day(&mut self, ctx: &DayCtx, r: &mut Sim, obs: &mut DayObs, j1939: bool) {
        if self.fault.is_none() && r.hazard(COOLING_FAULT * (1.0 + ctx.age_years / 8.0), 1.0) {
            let kind = [
                CoolingFault::Pump,
                CoolingFault::ThermostatClosed,
                CoolingFault::Leak,
            ][r.weighted(&[0.45, 0.25, 0.3])];
            self.fault = Some((kind, ctx.day, r.lognormal(1.0 / 35.0, 0.5)));
        }
        if self.stuck_open.is_none() && r.hazard(STUCK_OPEN, 1.0) {
            self.stuck_open = Some(ctx.day);
        }
        if let Some((_, _, growth)) = self.fault {
            self.severity += growth;
        }
        if ctx.engine_km <= 0.0 {
            return;
        }
        let s = self.severity;
        let load = 2.0 * (ctx.km / 150.0).min(2.0) + 0.15 * (ctx.ambient_c - 20.0).max(0.0);
        let mut max_c = 90.0 + load + r.normal(0.0, 1.5) + 28.0 * s * s;
        if s > 0.0 && r.chance((s * 0.5).min(0.5)) {
            max_c += r.uniform(5.0, 15.0);
        }
        if self.stuck_open.is_some() && self.fault.is_none() {
            max_c = (70.0 + 0.3 * ctx.ambient_c + r.normal(0.0, 2.0)).min(max_c);
            if ctx.ambient_c < 15.0 {
                obs.codes
                    .push((Component::Cooling, code(j1939, "P0128", 110, 18)));
            }
        }
        obs.readings.coolant_max_c = Some(max_c);
        if max_c > 104.0 {
            obs.codes
                .push((Component::Cooling, code(j1939, "P2181", 110, 16)));
        }
        if max_c > 115.0 {
            obs.codes
                .push((Component::Cooling, code(j1939, "P0217", 110, 0)));
        }
        if max_c > 121.0 {
            let what = match self.fault.map(|(k, ..)| k) {
                Some(CoolingFault::Pump) => "water pump failing",
                Some(CoolingFault::ThermostatClosed) => "thermostat stuck closed",
                Some(CoolingFault::Leak) => "coolant lost through a leak",
                None => "cooling fault",
            };
            obs.failures.push(Failure {
                component: Component::Cooling,
                cause: format!("{what}: engine overheated ({max_c:.0} °C)"),
                precursor_since: self.fault.map(|(_, d, _)| d),
                immobilized: true,
                job: self.job(),
            });
        } else if r.hazard(HOSE_BURST, 1.0) {
            obs.codes
                .push((Component::Cooling, code(j1939, "P0217", 110, 0)));
            obs.failures.push(Failure {
                component: Component::Cooling,
                cause: "coolant hose burst without warning".into(),
                precursor_since: None,
                immobilized: true,
                job: "coolant_hose_replace",
            });
        }
    }

    fn job(&self) -> &'static str {
        match self.fault.map(|(k, ..)| k) {
            Some(CoolingFault::Pump) => "water_pump_replace",
            Some(CoolingFault::Leak) => "coolant_leak_repair",
            _ => "thermostat_replace",
        }
    }

    pub fn inspect(&self, r: &mut Sim) -> Option<Finding> {
        if let Some((kind, since, _)) = self.fault {
            if self.severity > 0.15 && r.chance((0.4 + self.severity).min(0.95)) {
                return Some(Finding {
                    component: Component::Cooling,
                    job: self.job(),
                    cause: format!("{kind:?} fault found, severity {:.2}", self.severity),
                    precursor_since: Some(since),
                });
            }
        }
        self.stuck_open
            .filter(|_| r.chance(0.8))
            .map(|since| Finding {
                component: Component::Cooling,
                job: "thermostat_replace",
                cause: "thermostat stuck open: engine does not warm up".into(),
                precursor_since: Some(since),
            })
    }

    pub fn degraded_since(&self) -> Option<u32> {
        self.fault.map(|(_, d, _)| d).or(self.stuck_open)
    }

    pub fn repair(&mut self) {
        *self = Cooling::default();
    }
}

/// Ignition: plugs wear with distance; a failing coil misfires more each day on its cylinder,
/// setting pending then confirmed P030x codes before it dies.
#[derive(Debug, Clone)]
pub struct Ignition {
    cylinders: u8,
    pub plug_km: f64,
    pub plug_interval_km: f64,
    pub(super) coil: Option<(u8, u32, f64)>,
    pub severity: f64,
}

const COIL_FAULT: f64 = 0.010 / YEAR;
const COIL_SUDDEN: f64 = 0.002 / YEAR;
const MISFIRE_CODE: u32 = 20;

impl Ignition {
    pub fn new(spec: &VehicleSpec, r: &mut Sim) -> Ignition {
        let plug_interval_km = if spec.service_km > 20_000.0 {
            90_000.0
        } else {
            60_000.0
        };
        Ignition {
            cylinders: spec.cylinders.max(1),
            plug_km: spec.start_odometer_km % (plug_interval_km * r.uniform(0.8, 1.0)),
            plug_interval_km,
            coil: None,
            severity: 0.0,
        }
    }

    pub fn day(&mut self, ctx: &DayCtx, r: &mut Sim, obs: &mut DayObs) {
        let plug_age = self.plug_km / self.plug_interval_km;
        if self.coil.is_none() && r.hazard(COIL_FAULT * (1.0 + plug_age), 1.0) {
            let cyl = r.int(1, i64::from(self.cylinders)) as u8;
            self.coil = Some((cyl, ctx.day, r.lognormal(1.0 / 30.0, 0.5)));
        }
        if let Some((.., growth)) = self.coil {
            self.severity += growth;
        }
        if ctx.engine_km <= 0.0 {
            return;
        }
        self.plug_km += ctx.engine_km;
        let per_100km = 0.3 * libm::pow(plug_age, 4.0);
        let mut total = 0;
        let mut flagged = Vec::new();
        for cyl in 1..=self.cylinders {
            let coil = match self.coil {
                Some((c, ..)) if c == cyl => 200.0 * self.severity * self.severity,
                _ => 0.0,
            };
            let n = r.poisson(ctx.engine_km / 100.0 * (per_100km + coil));
            total += n;
            if n >= MISFIRE_CODE {
                flagged.push(cyl);
            }
        }
        obs.readings.misfires = Some(total);
        const CYLINDER_CODES: [&str; 7] = [
            "P0300", "P0301", "P0302", "P0303", "P0304", "P0305", "P0306",
        ];
        for cyl in &flagged {
            let c = CYLINDER_CODES
                .get(usize::from(*cyl))
                .copied()
                .unwrap_or("P0300");
            obs.codes.push((Component::Ignition, Code::Obd(c)));
        }
        if flagged.len() > 1 {
            obs.codes.push((Component::Ignition, Code::Obd("P0300")));
        }
        if self.severity >= 1.0 {
            let cyl = self.coil.map_or(1, |(c, ..)| c);
            obs.failures.push(Failure {
                component: Component::Ignition,
                cause: format!("ignition coil of cylinder {cyl} failed: engine in limp mode"),
                precursor_since: self.coil.map(|(_, d, _)| d),
                immobilized: false,
                job: "ignition_coil_replace",
            });
        } else if r.hazard(COIL_SUDDEN, 1.0) {
            obs.failures.push(Failure {
                component: Component::Ignition,
                cause: "ignition coil failed without warning".into(),
                precursor_since: None,
                immobilized: false,
                job: "ignition_coil_replace",
            });
        }
    }

    pub fn inspect(&self, r: &mut Sim) -> Option<Finding> {
        let (_, since, _) = self.coil?;
        (self.severity > 0.2 && r.chance((0.3 + self.severity).min(0.9))).then(|| Finding {
            component: Component::Ignition,
            job: "ignition_coil_replace",
            cause: format!("misfiring coil found, severity {:.2}", self.severity),
            precursor_since: Some(since),
        })
    }

    pub fn degraded_since(&self) -> Option<u32> {
        self.coil.map(|(_, d, _)| d)
    }

    pub fn repair(&mut self) {
        self.coil = None;
        self.severity = 0.0;
    }

    pub fn plugs_due(&self) -> bool {
        self.plug_km >= 0.9 * self.plug_interval_km
    }
}

/// Catalyst: efficiency drifts down with distance and misfires (unburnt fuel); a damaged
/// substrate drifts fast. P0420 sets below 90%; below 80% it has failed.
#[derive(Debug, Clone)]
pub struct Emissions {
    pub efficiency: f64,
    drift_per_1000km: f64,
    fault: Option<(u32, f64)>,
    since: Option<u32>,
}

const CATALYST_FAULT: f64 = 0.003 / YEAR;
const CATALYST_CODE: f64 = 90.0;
const CATALYST_FAILED: f64 = 80.0;

impl Emissions {
    pub fn new(spec: &VehicleSpec, r: &mut Sim) -> Emissions {
        let drift = r.lognormal(0.035, 0.5);
        Emissions {
            efficiency: (99.0 - spec.start_odometer_km / 1000.0 * drift).max(91.0),
            drift_per_1000km: drift,
            fault: None,
            since: None,
        }
    }

    pub fn day(&mut self, ctx: &DayCtx, r: &mut Sim, obs: &mut DayObs) {
        if self.fault.is_none() && r.hazard(CATALYST_FAULT * (1.0 + ctx.age_years / 6.0), 1.0) {
            self.fault = Some((ctx.day, r.lognormal(0.06, 0.4)));
        }
        let misfires = f64::from(obs.readings.misfires.unwrap_or(0));
        self.efficiency -= ctx.engine_km / 1000.0 * self.drift_per_1000km
            + misfires * 0.002
            + self.fault.map_or(0.0, |(_, rate)| rate);
        if self.efficiency < 92.0 && self.since.is_none() {
            self.since = Some(self.fault.map_or(ctx.day, |(d, _)| d));
        }
        if ctx.engine_km <= 0.0 {
            return;
        }
        let monitor = self.efficiency + r.normal(0.0, 0.8);
        obs.readings.catalyst_eff = Some(monitor);
        if monitor < CATALYST_CODE {
            obs.codes.push((Component::Emissions, Code::Obd("P0420")));
        }
        if self.efficiency < CATALYST_FAILED {
            obs.failures.push(Failure {
                component: Component::Emissions,
                cause: format!(
                    "catalyst failed ({:.0}% efficiency): exhaust restricted, power reduced",
                    self.efficiency
                ),
                precursor_since: self.since,
                immobilized: false,
                job: "catalyst_replace",
            });
        }
    }

    pub fn inspect(&self, r: &mut Sim) -> Option<Finding> {
        (self.efficiency < 88.0 && r.chance(0.5)).then(|| Finding {
            component: Component::Emissions,
            job: "catalyst_replace",
            cause: format!("catalyst efficiency {:.0}% (P0420)", self.efficiency),
            precursor_since: self.since,
        })
    }

    pub fn degraded_since(&self) -> Option<u32> {
        self.since
    }

    pub fn repair(&mut self, r: &mut Sim) {
        self.efficiency = 99.0;
        self.drift_per_1000km = r.lognormal(0.035, 0.5);
        self.fault = None;
        self.since = None;
    }
}

/// Engine oil: the oil-life monitor counts down with distance and harsh use; engines burn
/// some oil, a few a lot. Running low drops the oil pressure (P0521) before the engine is
/// starved.
#[derive(Debug, Clone)]
pub struct Oil {
    pub life: f64,
    pub deficit_l: f64,
    litres_per_1000km: f64,
    service_km: f64,
    since: Option<u32>,
}

const OIL_WARN_L: f64 = 1.0;
const OIL_CODE_L: f64 = 1.5;
const OIL_FAIL_L: f64 = 2.5;

impl Oil {
    pub fn new(spec: &VehicleSpec, r: &mut Sim) -> Oil {
        let burner = r.chance(0.05);
        Oil {
            life: r.uniform(10.0, 100.0),
            deficit_l: r.uniform(0.0, 0.5),
            litres_per_1000km: if burner {
                r.lognormal(0.5, 0.3)
            } else {
                r.lognormal(0.03, 0.6)
            },
            service_km: spec.service_km,
            since: None,
        }
    }

    pub fn day(&mut self, ctx: &DayCtx, r: &mut Sim, obs: &mut DayObs, j1939: bool) {
        if ctx.engine_km <= 0.0 {
            return;
        }
        let harsh = 1.0 + 0.3 * ctx.urban_share + if ctx.ambient_c < 0.0 { 0.2 } else { 0.0 };
        self.life -= ctx.engine_km / self.service_km * 100.0 * harsh;
        self.deficit_l += ctx.engine_km / 1000.0 * self.litres_per_1000km;
        // Owners top up when the level warning shows, some sooner than others.
        if self.deficit_l > OIL_WARN_L && r.chance(0.06) {
            self.deficit_l = 0.0;
        }
        if self.deficit_l >= OIL_WARN_L && self.since.is_none() {
            self.since = Some(ctx.day);
        } else if self.deficit_l < OIL_WARN_L {
            self.since = None;
        }
        obs.readings.oil_life = Some(self.life.clamp(0.0, 100.0));
        if self.deficit_l > OIL_CODE_L {
            obs.codes
                .push((Component::Oil, code(j1939, "P0521", 100, 1)));
        }
        if self.deficit_l > OIL_FAIL_L {
            obs.failures.push(Failure {
                component: Component::Oil,
                cause: format!(
                    "oil {:.1} l low: oil pressure lost, engine stopped",
                    self.deficit_l
                ),
                precursor_since: self.since,
                immobilized: true,
                job: "engine_oil_pressure_repair",
            });
        }
    }

    pub fn inspect(&self, r: &mut Sim) -> Option<Finding> {
        (self.litres_per_1000km > 0.3 && r.chance(0.3)).then(|| Finding {
            component: Component::Oil,
            job: "oil_consumption_repair",
            cause: format!("engine burns {:.2} l per 1000 km", self.litres_per_1000km),
            precursor_since: self.since,
        })
    }

    pub fn degraded_since(&self) -> Option<u32> {
        self.since
    }

    pub fn service(&mut self) {
        self.life = 100.0;
        self.deficit_l = 0.0;
        self.since = None;
    }

    pub fn repair(&mut self, r: &mut Sim) {
        self.service();
        self.litres_per_1000km = r.lognormal(0.03, 0.6);
    }
}
