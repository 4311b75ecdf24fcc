//! Brakes and tyres: wear per km and per wheel.

use super::{Code, DayCtx, DayObs, Failure, Finding, YEAR};
use crate::catalog::WHEEL_LABELS;
use crate::component::Component;
use crate::simulator::fleet::VehicleSpec;
use crate::simulator::rng::Sim;
use crate::vehicle::Powertrain;

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
                    WHEEL_LABELS[worst]
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
                    WHEEL_LABELS[w], measured[w]
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
