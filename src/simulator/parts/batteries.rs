//! The 12 V battery and the high-voltage traction battery.

use super::{code, Code, DayCtx, DayObs, Failure, Finding, YEAR};
use crate::component::Component;
use crate::simulator::fleet::VehicleSpec;
use crate::simulator::rng::Sim;
use crate::vehicle::Powertrain;

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
