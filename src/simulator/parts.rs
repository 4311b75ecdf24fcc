//! Component physics: the hidden state of each component group, how a day of driving and
//! weather changes it, what the car's sensors and diagnostics can see of it (readings and
//! fault-code conditions), and when it fails. Failures come from state-dependent hazards and
//! thresholds, so most are preceded by observable precursors; each part also has a small
//! rate of failures without warning, so a model never gets a perfect oracle.
//!
//! Rates are per day unless named otherwise; `YEAR` converts annual rates.

use super::fleet::VehicleSpec;
use super::rng::Sim;
use crate::component::Component;
use crate::store::profiles::Powertrain;

const YEAR: f64 = 365.25;

/// What a day was like for one vehicle.
#[derive(Debug, Clone, Copy)]
pub struct DayCtx {
    pub day: u32,
    pub ambient_c: f64,
    pub driving: bool,
    pub km: f64,
    /// Share of today's distance on the combustion engine.
    pub engine_km: f64,
    pub trips: u32,
    pub urban_share: f64,
    pub style: f64,
    pub age_years: f64,
}

/// What the vehicle's sensors report for the day (`None`: this car has no such sensor, or the
/// reading was not taken today).
#[derive(Debug, Clone, Default)]
pub struct Readings {
    pub ambient_c: f64,
    pub battery_v: f64,
    pub cranking_v: Option<f64>,
    pub coolant_max_c: Option<f64>,
    pub misfires: Option<u32>,
    pub traction_temp_c: Option<f64>,
    pub cell_max_v: Option<f64>,
    pub cell_min_v: Option<f64>,
    pub soh: Option<f64>,
    pub fast_charges: Option<u32>,
    pub oil_life: Option<f64>,
    pub catalyst_eff: Option<f64>,
    pub pad_wear: [f64; 4],
    pub tyre_kpa: [f64; 4],
    pub tread_mm: [f64; 4],
}

/// A fault code whose condition the on-board diagnostics detected today.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Code {
    /// SAE J2012, e.g. P0301.
    Obd(&'static str),
    /// J1939 suspect parameter number and failure mode.
    J1939 { spn: u32, fmi: u8 },
}

impl Code {
    /// The key the store keeps (`SPN<spn>-FMI<fmi>` for J1939).
    pub fn key(&self) -> String {
        match self {
            Code::Obd(c) => (*c).to_owned(),
            Code::J1939 { spn, fmi } => format!("SPN{spn}-FMI{fmi}"),
        }
    }
}

/// A component that stopped working.
#[derive(Debug, Clone)]
pub struct Failure {
    pub component: Component,
    pub cause: String,
    /// Day the precursors began; `None` for a failure without warning.
    pub precursor_since: Option<u32>,
    /// The car cannot be driven until repaired.
    pub immobilized: bool,
    pub job: &'static str,
}

/// Wear or a fault found at a workshop visit, fixed before it failed.
#[derive(Debug, Clone)]
pub struct Finding {
    pub component: Component,
    pub job: &'static str,
    pub cause: String,
    pub precursor_since: Option<u32>,
}

/// Today's observations and events of one vehicle.
#[derive(Debug, Default)]
pub struct DayObs {
    pub readings: Readings,
    pub codes: Vec<(Component, Code)>,
    pub failures: Vec<Failure>,
}

fn code(j1939: bool, obd: &'static str, spn: u32, fmi: u8) -> Code {
    if j1939 {
        Code::J1939 { spn, fmi }
    } else {
        Code::Obd(obd)
    }
}

const WHEEL_NAMES: [&str; 4] = ["front-left", "front-right", "rear-left", "rear-right"];

// ---------------------------------------------------------------------------------------
// 12 V battery

/// 12 V battery: capacity fades with age, heat, short trips and idle days; the voltage sag it
/// causes is worst on cold mornings, which is when no-starts happen.
#[derive(Debug, Clone)]
pub struct Battery12v {
    /// 0 new .. 1 dead.
    pub deficit: f64,
    quality: f64,
    starter: bool,
    since: Option<u32>,
}

const BATTERY_FADE: f64 = 0.68 / (4.0 * YEAR);
const BATTERY_SUDDEN: f64 = 0.006 / YEAR;
const BATTERY_PRECURSOR: f64 = 0.5;

impl Battery12v {
    pub fn new(spec: &VehicleSpec, r: &mut Sim) -> Battery12v {
        let quality = r.lognormal(1.0, 0.3);
        // Batteries are replaced every few years: the fitted one is up to 6 years old.
        let age_days = r.uniform(0.0, spec.age_years.min(6.0)) * YEAR;
        Battery12v {
            deficit: (age_days * BATTERY_FADE * quality * 1.1).min(0.6),
            quality,
            starter: spec.powertrain == Powertrain::Ice,
            since: None,
        }
    }

    pub fn day(&mut self, ctx: &DayCtx, r: &mut Sim, obs: &mut DayObs, j1939: bool) {
        let heat = 1.0 + 0.08 * (ctx.ambient_c - 25.0).max(0.0);
        let strain = match ctx.driving {
            false => 1.15,
            true if ctx.km / f64::from(ctx.trips.max(1)) < 8.0 => 1.3,
            true => 1.0,
        };
        self.deficit = (self.deficit + BATTERY_FADE * self.quality * heat * strain).min(1.0);
        if self.deficit >= BATTERY_PRECURSOR && self.since.is_none() {
            self.since = Some(ctx.day);
        }
        let d = self.deficit;
        let cold = (10.0 - ctx.ambient_c).max(0.0);
        let rest = 12.7 - 0.8 * libm::pow(d, 1.6) - 0.004 * cold * (0.5 + d) + r.normal(0.0, 0.04);
        obs.readings.battery_v = rest;
        let (low, failed) = if self.starter {
            let crank =
                10.8 - 3.0 * libm::pow(d, 1.4) - 0.035 * cold * (0.4 + d) + r.normal(0.0, 0.12);
            obs.readings.cranking_v = Some(crank);
            (rest < 12.1 || crank < 9.3, ctx.driving && crank < 8.3)
        } else {
            (rest < 12.25, ctx.driving && rest < 12.0)
        };
        if low {
            obs.codes
                .push((Component::Battery12v, code(j1939, "P0562", 168, 1)));
        }
        let sudden = ctx.driving && r.hazard(BATTERY_SUDDEN, 1.0);
        if failed || sudden {
            obs.failures.push(Failure {
                component: Component::Battery12v,
                cause: if failed {
                    format!(
                        "12 V battery flat at {:.0} °C: no start (capacity fade {:.0}%)",
                        ctx.ambient_c,
                        d * 100.0
                    )
                } else {
                    "12 V battery internal short: no start without warning".into()
                },
                precursor_since: if failed { self.since } else { None },
                immobilized: true,
                job: "battery_12v_replace",
            });
        }
    }

    pub fn inspect(&self, r: &mut Sim) -> Option<Finding> {
        (self.deficit >= 0.6 && r.chance(0.7)).then(|| Finding {
            component: Component::Battery12v,
            job: "battery_12v_replace",
            cause: format!("battery test: capacity fade {:.0}%", self.deficit * 100.0),
            precursor_since: self.since,
        })
    }

    /// Day its precursors began, while it is degraded.
    pub fn degraded_since(&self) -> Option<u32> {
        self.since
    }

    pub fn replace(&mut self, r: &mut Sim) {
        self.deficit = 0.0;
        self.quality = r.lognormal(1.0, 0.3);
        self.since = None;
    }
}

// ---------------------------------------------------------------------------------------
// Traction battery

/// Traction battery: state of health fades with calendar time (faster when hot), cycles and
/// DC fast charging. A weak cell shows as a growing spread between the highest and lowest
/// cell voltage, with cell-imbalance codes, before the pack limits power.
#[derive(Debug, Clone)]
pub struct TractionBattery {
    pub soh: f64,
    pub imbalance_mv: f64,
    defect: Option<(u32, f64)>,
    pub fast_charges: u32,
    fast_share: f64,
    range_km: f64,
    per_cycle: f64,
    quality: f64,
}

const CALENDAR_FADE: f64 = 1.5 / YEAR;
const CELL_DEFECT: f64 = 0.003 / YEAR;
const PACK_SUDDEN: f64 = 0.001 / YEAR;
const IMBALANCE_CODE_MV: f64 = 60.0;
const IMBALANCE_FAIL_MV: f64 = 200.0;

impl TractionBattery {
    pub fn new(spec: &VehicleSpec, r: &mut Sim) -> TractionBattery {
        let (range_km, per_cycle) = match spec.powertrain {
            Powertrain::Phev => (60.0, 0.004),
            Powertrain::Hev => (200.0, 0.004),
            _ => (400.0, 0.010),
        };
        let quality = r.lognormal(1.0, 0.2);
        TractionBattery {
            // Packs this far gone were replaced before the run.
            soh: (100.0 - spec.age_years * 1.8 * quality + r.normal(0.0, 0.5)).clamp(76.0, 100.0),
            imbalance_mv: 8.0,
            defect: None,
            fast_charges: (spec.age_years * spec.annual_km / range_km * spec.fast_charge_share)
                as u32,
            fast_share: spec.fast_charge_share,
            range_km,
            per_cycle,
            quality,
        }
    }

    pub fn day(&mut self, ctx: &DayCtx, r: &mut Sim, obs: &mut DayObs) {
        let pack_c = ctx.ambient_c.max(15.0) + 5.0;
        let arrhenius = libm::exp2((pack_c - 25.0) / 10.0);
        let cycles = ctx.km / self.range_km;
        let fast = if ctx.driving && r.chance((cycles * self.fast_share * 1.2).min(1.0)) {
            1
        } else {
            0
        };
        self.fast_charges += fast;
        let fade = CALENDAR_FADE * arrhenius * self.quality
            + cycles * self.per_cycle * libm::sqrt(arrhenius)
            + f64::from(fast) * 0.02;
        self.soh -= fade;
        if self.defect.is_none() && r.hazard(CELL_DEFECT * (1.0 + self.fast_share), 1.0) {
            self.defect = Some((ctx.day, r.lognormal(1.5, 0.5)));
        }
        if let Some((_, growth)) = self.defect {
            self.imbalance_mv += growth;
        }
        let spread = self.imbalance_mv + 0.5 * (100.0 - self.soh) + r.normal(0.0, 3.0).abs();
        let cell_max = 4.02 + r.normal(0.0, 0.02);
        let readings = &mut obs.readings;
        readings.soh = Some(self.soh + r.normal(0.0, 0.2));
        readings.cell_max_v = Some(cell_max);
        readings.cell_min_v = Some(cell_max - spread / 1000.0);
        readings.traction_temp_c = Some(pack_c + r.normal(0.0, 1.5));
        readings.fast_charges = Some(self.fast_charges);
        if spread > IMBALANCE_CODE_MV {
            obs.codes
                .push((Component::TractionBattery, Code::Obd("P0B24")));
        }
        let failure = if spread > IMBALANCE_FAIL_MV {
            Some(Failure {
                component: Component::TractionBattery,
                cause: format!("weak cell module: {spread:.0} mV imbalance, power limited"),
                precursor_since: self.defect.map(|(d, _)| d),
                immobilized: false,
                job: "hv_module_replace",
            })
        } else if self.soh < 70.0 {
            Some(Failure {
                component: Component::TractionBattery,
                cause: format!("pack capacity at {:.1}% state of health", self.soh),
                precursor_since: Some(ctx.day.saturating_sub(180)),
                immobilized: false,
                job: "hv_pack_replace",
            })
        } else if r.hazard(PACK_SUDDEN, 1.0) {
            Some(Failure {
                component: Component::TractionBattery,
                cause: "high-voltage contactor failed without warning".into(),
                precursor_since: None,
                immobilized: true,
                job: "hv_contactor_replace",
            })
        } else {
            None
        };
        if let Some(f) = failure {
            obs.codes
                .push((Component::TractionBattery, Code::Obd("P0A7F")));
            obs.failures.push(f);
        }
    }

    pub fn inspect(&self, r: &mut Sim) -> Option<Finding> {
        (self.imbalance_mv > 40.0 && r.chance(0.7)).then(|| Finding {
            component: Component::TractionBattery,
            job: "hv_module_replace",
            cause: format!("BMS read-out: {:.0} mV cell imbalance", self.imbalance_mv),
            precursor_since: self.defect.map(|(d, _)| d),
        })
    }

    pub fn degraded_since(&self) -> Option<u32> {
        self.defect.map(|(d, _)| d)
    }

    pub fn repair(&mut self, job: &str) {
        self.imbalance_mv = 8.0;
        self.defect = None;
        match job {
            "hv_pack_replace" => self.soh = 100.0,
            "hv_module_replace" => self.soh += (100.0 - self.soh) * 0.2,
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Brakes

/// Brake pads per wheel: wear per km rises with harder style and urban stop-and-go, falls
/// with regenerative braking. The wear sensor sets a code near the end.
#[derive(Debug, Clone)]
pub struct Brakes {
    /// Percent worn, 0 new .. 100 gone.
    pub wear: [f64; 4],
    rate: [f64; 4],
    since: Option<u32>,
}

const PAD_LIFE_FRONT_KM: f64 = 55_000.0;
const PAD_LIFE_REAR_KM: f64 = 95_000.0;
const PAD_SENSOR: f64 = 90.0;
const PAD_PRECURSOR: f64 = 80.0;
const BRAKE_SUDDEN: f64 = 0.0015 / YEAR;

impl Brakes {
    pub fn new(spec: &VehicleSpec, r: &mut Sim) -> Brakes {
        let regen = match spec.powertrain {
            Powertrain::Bev => 0.45,
            Powertrain::Phev => 0.6,
            Powertrain::Hev => 0.65,
            Powertrain::Ice => 1.0,
        };
        let van = if spec.j1939 { 1.3 } else { 1.0 };
        let base = libm::pow(spec.style, 1.5) * (0.5 + spec.urban_share) * regen * van;
        let rate = [0, 1, 2, 3].map(|w| {
            let life = if w < 2 {
                PAD_LIFE_FRONT_KM
            } else {
                PAD_LIFE_REAR_KM
            };
            100.0 / life * base * r.lognormal(1.0, 0.08)
        });
        // Where in their life the fitted pads are.
        let wear = rate.map(|rate| {
            let life_km = 100.0 / rate;
            let km = spec.start_odometer_km % (life_km * r.uniform(0.7, 1.0));
            (km * rate).min(75.0)
        });
        Brakes {
            wear,
            rate,
            since: None,
        }
    }

    pub fn day(&mut self, ctx: &DayCtx, r: &mut Sim, obs: &mut DayObs) {
        for w in 0..4 {
            self.wear[w] = (self.wear[w] + ctx.km * self.rate[w]).min(100.0);
        }
        obs.readings.pad_wear = self.wear;
        let (worst, &max) = self
            .wear
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap_or((0, &0.0));
        if max >= PAD_PRECURSOR && self.since.is_none() {
            self.since = Some(ctx.day);
        }
        if max >= PAD_SENSOR {
            obs.codes.push((Component::Brakes, Code::Obd("C1A20")));
        }
        if ctx.driving && max >= 100.0 {
            obs.failures.push(Failure {
                component: Component::Brakes,
                cause: format!(
                    "{} pad worn to the backing plate: metal on metal, disc damaged",
                    WHEEL_NAMES[worst]
                ),
                precursor_since: self.since,
                immobilized: false,
                job: if worst < 2 {
                    "brake_pads_discs_front"
                } else {
                    "brake_pads_discs_rear"
                },
            });
        } else if ctx.driving && r.hazard(BRAKE_SUDDEN, 1.0) {
            obs.failures.push(Failure {
                component: Component::Brakes,
                cause: "brake caliper seized without warning".into(),
                precursor_since: None,
                immobilized: true,
                job: "brake_caliper_replace",
            });
        }
    }

    /// Each axle whose pads are worn past 70%.
    pub fn inspect(&self, r: &mut Sim) -> Vec<Finding> {
        [("brake_pads_front", 0), ("brake_pads_rear", 2)]
            .into_iter()
            .filter_map(|(job, w)| {
                let wear = self.wear[w].max(self.wear[w + 1]);
                (wear >= 70.0 && r.chance(0.95)).then(|| Finding {
                    component: Component::Brakes,
                    job,
                    cause: format!("pads {wear:.0}% worn"),
                    precursor_since: self.since.filter(|_| wear >= PAD_PRECURSOR),
                })
            })
            .collect()
    }

    pub fn degraded_since(&self) -> Option<u32> {
        self.since
    }

    /// New pads on the axle the job names (both axles for other brake jobs).
    pub fn repair(&mut self, job: &str) {
        let wheels: &[usize] = match job {
            "brake_pads_front" | "brake_pads_discs_front" => &[0, 1],
            "brake_pads_rear" | "brake_pads_discs_rear" => &[2, 3],
            _ => &[],
        };
        for &w in wheels {
            self.wear[w] = 0.0;
        }
        if self.wear.iter().all(|w| *w < PAD_PRECURSOR) {
            self.since = None;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Tyres

/// Tyres: tread wears per km (style, urban share, vehicle weight); pressure drops slowly,
/// follows the temperature, and falls fast with a slow leak (a nail), which the TPMS reports.
#[derive(Debug, Clone)]
pub struct Tyres {
    pub tread: [f64; 4],
    /// Cold inflation pressure at 20 °C, kPa.
    pub kpa: [f64; 4],
    pub leak: [Option<(u32, f64)>; 4],
    nominal: f64,
    rate: [f64; 4],
    tread_since: Option<u32>,
}

const TREAD_NEW: f64 = 8.0;
const TREAD_LEGAL: f64 = 1.6;
const TREAD_PRECURSOR: f64 = 3.0;
const TYRE_LIFE_KM: f64 = 60_000.0;
const SLOW_LEAK_KM: f64 = 80_000.0;
const BLOWOUT_KM: f64 = 3_000_000.0;
const TPMS_SHARE: f64 = 0.75;
const FLAT_KPA: f64 = 120.0;

impl Tyres {
    pub fn new(spec: &VehicleSpec, r: &mut Sim) -> Tyres {
        let weight = if spec.powertrain == Powertrain::Bev {
            1.2
        } else {
            1.0
        };
        let base = (TREAD_NEW - TREAD_LEGAL) / TYRE_LIFE_KM
            * libm::pow(spec.style, 1.3)
            * (1.0 + 0.3 * spec.urban_share)
            * weight
            * r.lognormal(1.0, 0.12);
        let rate = [1.15, 1.15, 0.8, 0.8].map(|axle| base * axle * r.lognormal(1.0, 0.04));
        let nominal = if spec.j1939 { 350.0 } else { 250.0 };
        let tread = rate.map(|rate| {
            let life_km = (TREAD_NEW - TREAD_LEGAL) / rate;
            let km = spec.start_odometer_km % (life_km * r.uniform(0.6, 0.9));
            (TREAD_NEW - km * rate).max(3.2)
        });
        Tyres {
            tread,
            kpa: [(); 4].map(|_| nominal - r.uniform(0.0, 20.0)),
            leak: [None; 4],
            nominal,
            rate,
            tread_since: None,
        }
    }

    /// Pressure the TPMS sees: cold inflation scaled by absolute temperature.
    fn measured(&self, w: usize, ambient_c: f64) -> f64 {
        self.kpa[w] * (273.15 + ambient_c) / 293.15
    }

    pub fn day(&mut self, ctx: &DayCtx, r: &mut Sim, obs: &mut DayObs) {
        for w in 0..4 {
            self.tread[w] = (self.tread[w] - ctx.km * self.rate[w]).max(0.5);
            let leak = self.leak[w].map_or(0.0, |(_, rate)| rate);
            self.kpa[w] = (self.kpa[w] - 0.25 - leak).max(0.0);
        }
        if ctx.driving && r.hazard(ctx.km / SLOW_LEAK_KM, 1.0) {
            let w = r.int(0, 3) as usize;
            if self.leak[w].is_none() {
                self.leak[w] = Some((ctx.day, r.lognormal(3.0, 0.6)));
            }
        }
        let measured = [0, 1, 2, 3].map(|w| self.measured(w, ctx.ambient_c));
        // Owners top up when a tyre looks low (the leak goes on).
        if measured.iter().any(|p| *p < 0.85 * self.nominal) && r.chance(0.15) {
            self.kpa = [self.nominal; 4];
        }
        let measured = [0, 1, 2, 3].map(|w| self.measured(w, ctx.ambient_c));
        obs.readings.tyre_kpa = measured;
        obs.readings.tread_mm = self.tread;
        const TPMS: [&str; 4] = ["C0750", "C0755", "C0760", "C0765"];
        for w in 0..4 {
            if measured[w] < TPMS_SHARE * self.nominal {
                obs.codes.push((Component::Tyres, Code::Obd(TPMS[w])));
            }
        }
        let min_tread = self.tread.iter().copied().fold(f64::MAX, f64::min);
        if min_tread < TREAD_PRECURSOR && self.tread_since.is_none() {
            self.tread_since = Some(ctx.day);
        }
        if !ctx.driving {
            return;
        }
        if let Some(w) = (0..4).find(|w| measured[*w] < FLAT_KPA) {
            obs.failures.push(Failure {
                component: Component::Tyres,
                cause: format!(
                    "{} tyre driven flat after a slow leak ({:.0} kPa)",
                    WHEEL_NAMES[w], measured[w]
                ),
                precursor_since: self.leak[w].map(|(d, _)| d),
                immobilized: true,
                job: "tyre_replace",
            });
        } else if r.hazard(ctx.km / BLOWOUT_KM, 1.0) {
            obs.failures.push(Failure {
                component: Component::Tyres,
                cause: "tyre burst after road damage, without warning".into(),
                precursor_since: None,
                immobilized: true,
                job: "tyre_replace",
            });
        } else if min_tread < TREAD_LEGAL && r.chance(0.002) {
            obs.failures.push(Failure {
                component: Component::Tyres,
                cause: format!("tread {min_tread:.1} mm, below the legal 1.6 mm: tyre unfit"),
                precursor_since: self.tread_since,
                immobilized: false,
                job: "tyres_replace",
            });
        }
    }

    pub fn inspect(&self, r: &mut Sim) -> Option<Finding> {
        let min_tread = self.tread.iter().copied().fold(f64::MAX, f64::min);
        if min_tread < TREAD_PRECURSOR && r.chance(0.95) {
            return Some(Finding {
                component: Component::Tyres,
                job: "tyres_replace",
                cause: format!("tread {min_tread:.1} mm"),
                precursor_since: self.tread_since,
            });
        }
        let leaking = self.leak.iter().flatten().next();
        leaking
            .filter(|_| r.chance(0.9))
            .map(|(since, rate)| Finding {
                component: Component::Tyres,
                job: "tyre_puncture_repair",
                cause: format!("slow leak, {rate:.1} kPa a day"),
                precursor_since: Some(*since),
            })
    }

    pub fn degraded_since(&self) -> Option<u32> {
        self.leak
            .iter()
            .flatten()
            .map(|(d, _)| *d)
            .chain(self.tread_since)
            .min()
    }

    /// Fixes leaks, renews worn tyres for `tyres_replace`, and sets the pressures.
    pub fn repair(&mut self, job: &str) {
        for w in 0..4 {
            if job == "tyres_replace" && self.tread[w] < TREAD_PRECURSOR + 0.5
                || job == "tyre_replace" && (self.leak[w].is_some() || self.kpa[w] < FLAT_KPA)
            {
                self.tread[w] = TREAD_NEW;
            }
            self.leak[w] = None;
        }
        if self.tread.iter().all(|t| *t >= TREAD_PRECURSOR) {
            self.tread_since = None;
        }
        self.inflate();
    }

    /// Worn far enough that an owner who looks would book new tyres.
    pub fn look_worn(&self) -> bool {
        self.tread.iter().any(|t| *t < 2.8)
    }

    pub fn inflate(&mut self) {
        self.kpa = [self.nominal; 4];
    }
}

// ---------------------------------------------------------------------------------------
// Cooling

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

// ---------------------------------------------------------------------------------------
// Ignition

/// Ignition: plugs wear with distance; a failing coil misfires more each day on its cylinder,
/// setting pending then confirmed P030x codes before it dies.
#[derive(Debug, Clone)]
pub struct Ignition {
    cylinders: u8,
    pub plug_km: f64,
    pub plug_interval_km: f64,
    coil: Option<(u8, u32, f64)>,
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

// ---------------------------------------------------------------------------------------
// Emissions

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

// ---------------------------------------------------------------------------------------
// Oil

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::fleet;
    use crate::simulator::rng::{stream, Purpose};
    use chrono::TimeZone;

    fn spec(powertrain: Powertrain) -> VehicleSpec {
        let start = chrono::Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        (0..200)
            .map(|i| fleet::vehicle(1, i, 5, start))
            .find(|s| s.powertrain == powertrain)
            .unwrap()
    }

    fn ctx(day: u32, ambient_c: f64, km: f64) -> DayCtx {
        DayCtx {
            day,
            ambient_c,
            driving: km > 0.0,
            km,
            engine_km: km,
            trips: 3,
            urban_share: 0.5,
            style: 1.0,
            age_years: 3.0,
        }
    }

    /// A part in new condition is never fixed early: workshops only replace what is worn.
    #[test]
    fn new_parts_are_never_found_worn() {
        let s = spec(Powertrain::Phev);
        let mut r = stream(1, 1, Purpose::Life);
        let mut battery = Battery12v::new(&s, &mut r);
        battery.replace(&mut r);
        let mut traction = TractionBattery::new(&s, &mut r);
        traction.repair("hv_pack_replace");
        let mut brakes = Brakes::new(&s, &mut r);
        brakes.repair("brake_pads_front");
        brakes.repair("brake_pads_rear");
        let mut tyres = Tyres::new(&s, &mut r);
        tyres.tread = [TREAD_NEW; 4];
        tyres.repair("tyres_replace");
        let cooling = Cooling::default();
        let mut ignition = Ignition::new(&s, &mut r);
        ignition.repair();
        let mut emissions = Emissions::new(&s, &mut r);
        emissions.repair(&mut r);
        for _ in 0..1000 {
            assert!(battery.inspect(&mut r).is_none());
            assert!(traction.inspect(&mut r).is_none());
            assert!(brakes.inspect(&mut r).is_empty());
            assert!(tyres.inspect(&mut r).is_none());
            assert!(cooling.inspect(&mut r).is_none());
            assert!(ignition.inspect(&mut r).is_none());
            assert!(emissions.inspect(&mut r).is_none());
        }
    }

    #[test]
    fn a_weak_battery_sags_more_in_the_cold_and_fails_on_a_cold_morning() {
        let s = spec(Powertrain::Ice);
        let mut r = stream(2, 1, Purpose::Life);
        let mut b = Battery12v::new(&s, &mut r);
        b.deficit = 0.62;
        let crank = |b: &mut Battery12v, r: &mut Sim, t: f64| {
            let mut obs = DayObs::default();
            b.day(&ctx(0, t, 0.0), r, &mut obs, false);
            obs.readings.cranking_v.unwrap()
        };
        let mild: f64 = (0..200)
            .map(|_| crank(&mut b.clone(), &mut r, 15.0))
            .sum::<f64>()
            / 200.0;
        let cold: f64 = (0..200)
            .map(|_| crank(&mut b.clone(), &mut r, -15.0))
            .sum::<f64>()
            / 200.0;
        assert!(
            cold < mild - 0.5,
            "cranking {cold:.2} V at -15 °C vs {mild:.2} V at 15 °C"
        );
        let mut obs = DayObs::default();
        b.clone().day(&ctx(0, -18.0, 20.0), &mut r, &mut obs, false);
        assert_eq!(obs.failures.len(), 1, "no start at -18 °C");
        assert!(obs.codes.iter().any(|(_, c)| *c == Code::Obd("P0562")));
        let mut obs = DayObs::default();
        b.day(&ctx(0, 18.0, 20.0), &mut r, &mut obs, false);
        assert!(obs.failures.is_empty(), "starts at 18 °C");
    }

    #[test]
    fn a_failing_coil_goes_from_misfire_codes_to_failure() {
        let s = spec(Powertrain::Ice);
        let mut r = stream(3, 1, Purpose::Life);
        let mut ign = Ignition::new(&s, &mut r);
        ign.plug_km = 0.0;
        ign.coil = Some((2, 0, 1.0 / 30.0));
        let mut first_code = None;
        let mut failed = None;
        for day in 0..120 {
            let mut obs = DayObs::default();
            ign.day(&ctx(day, 10.0, 50.0), &mut r, &mut obs);
            if first_code.is_none() && obs.codes.iter().any(|(_, c)| *c == Code::Obd("P0302")) {
                first_code = Some(day);
            }
            if let Some(f) = obs.failures.first() {
                assert_eq!(f.precursor_since, Some(0));
                failed = Some(day);
                break;
            }
        }
        let (code, failed) = (first_code.unwrap(), failed.unwrap());
        assert!(
            code + 5 < failed,
            "P0302 on day {code}, failure on day {failed}"
        );
    }
}
