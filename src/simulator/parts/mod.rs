//! Component physics: the hidden state of each component group, how a day of driving and
//! weather changes it, what the car's sensors and diagnostics can see of it (readings and
//! fault-code conditions), and when it fails. Failures come from state-dependent hazards and
//! thresholds, so most are preceded by observable precursors; each part also has a small
//! rate of failures without warning, so a model never gets a perfect oracle.
//!
//! Rates are per day unless named otherwise; `YEAR` converts annual rates.

mod batteries;
mod chassis;
mod engine;

pub use batteries::{Battery12v, TractionBattery};
pub use chassis::{Brakes, Tyres};
pub use engine::{Cooling, Emissions, Ignition, Oil};

use crate::component::Component;

pub(crate) const YEAR: f64 = 365.25;

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

pub(crate) fn code(j1939: bool, obd: &'static str, spn: u32, fmi: u8) -> Code {
    if j1939 {
        Code::J1939 { spn, fmi }
    } else {
        Code::Obd(obd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::fleet::{self, VehicleSpec};
    use crate::simulator::rng::{stream, Purpose, Sim};
    use crate::vehicle::Powertrain;
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
        tyres.tread = [8.0; 4];
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
