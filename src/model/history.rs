//! A vehicle's stored history as the model sees it: daily aggregates of each catalogued
//! signal, DTC events, service records and the registry profile. `store::history` fills it
//! from the database up to an instant; features then cut it again at the snapshot time, so
//! nothing observed after a snapshot can reach that snapshot's features.

use crate::catalog;
use crate::component::Component;
pub use crate::wire::DtcStatus;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// One day (or the part of today before the load instant) of one signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DayAgg {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// When this aggregate was complete: the end of the day, or the load instant for today.
    pub end: DateTime<Utc>,
    pub n: f64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub sumsq: f64,
}

impl DayAgg {
    pub fn mean(&self) -> f64 {
        if self.n > 0.0 {
            self.sum / self.n
        } else {
            f64::NAN
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DtcEvent {
    pub ts: DateTime<Utc>,
    pub code: String,
    pub status: DtcStatus,
    /// The catalogued component, resolved once at load.
    pub component: Option<Component>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// Scheduled work done whatever the condition (oil change at the interval, inspection).
    Routine,
    /// Fixed after it failed.
    Repair,
    /// Found worn or failing and fixed before it failed.
    Preventive,
}

impl FromStr for ServiceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "routine" => ServiceKind::Routine,
            "repair" => ServiceKind::Repair,
            "preventive" => ServiceKind::Preventive,
            _ => return Err(format!("unknown service kind {s:?}")),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceEvent {
    pub performed_at: DateTime<Utc>,
    pub odometer_km: Option<f64>,
    pub component: Component,
    pub kind: ServiceKind,
}

pub use crate::store::profiles::Powertrain;

/// Whether a vehicle with this powertrain has the component at all (unknown: assume it may).
pub fn has_component(powertrain: Option<Powertrain>, component: Component) -> bool {
    use Component::*;
    powertrain.is_none_or(|p| match component {
        Cooling | Ignition | Emissions | Oil => p.has_engine(),
        TractionBattery => p.has_traction_battery(),
        Battery12v | Brakes | Tyres => true,
    })
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Profile {
    pub powertrain: Option<Powertrain>,
    pub model_year: Option<i32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub vehicle_id: i32,
    pub vin: String,
    pub profile: Profile,
    /// Per catalogued signal (index into `catalog::SIGNALS`), ordered by day.
    pub signals: Vec<Vec<DayAgg>>,
    /// Ordered by time.
    pub dtcs: Vec<DtcEvent>,
    /// Ordered by time.
    pub service: Vec<ServiceEvent>,
    /// The vehicle's first day with an odometer reading, and that reading: the reference for
    /// "since" features of components never serviced. Loaded whatever the signal window, so
    /// training and live scoring agree.
    pub first_data: Option<(i64, f64)>,
}

impl History {
    pub fn new(vehicle_id: i32, vin: String) -> History {
        History {
            vehicle_id,
            vin,
            profile: Profile::default(),
            signals: vec![Vec::new(); catalog::SIGNALS.len()],
            dtcs: Vec::new(),
            service: Vec::new(),
            first_data: None,
        }
    }

    /// Puts loaded rows in time order (the loader may deliver them in any order).
    pub fn sort(&mut self) {
        for s in &mut self.signals {
            s.sort_by_key(|d| d.day);
        }
        self.dtcs.sort_by_key(|e| e.ts);
        self.service.sort_by_key(|e| e.performed_at);
    }

    /// The aggregates of signal `index` observed by `as_of`.
    pub fn signal_until(&self, index: usize, as_of: DateTime<Utc>) -> &[DayAgg] {
        let days = self.signals.get(index).map(Vec::as_slice).unwrap_or(&[]);
        &days[..days.partition_point(|d| d.end <= as_of)]
    }
}

pub fn day_index(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(86_400)
}

pub fn day_start(day: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(day * 86_400, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Midnight UTC at or before `t`.
pub fn floor_day(t: DateTime<Utc>) -> DateTime<Utc> {
    day_start(day_index(t))
}

/// Years from the start of the model year to `t`.
pub fn age_years(model_year: i32, t: DateTime<Utc>) -> f64 {
    let start = Utc
        .with_ymd_and_hms(model_year, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(t);
    (t - start).num_seconds() as f64 / (365.25 * 86_400.0)
}

pub fn days_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_seconds() as f64 / 86_400.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn cut_keeps_only_aggregates_complete_by_the_instant() {
        let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let mut h = History::new(1, "V".into());
        for d in 0..5 {
            let day = day_index(t0) + d;
            h.signals[0].push(DayAgg {
                day,
                end: day_start(day + 1),
                n: 1.0,
                min: d as f64,
                max: d as f64,
                sum: d as f64,
                sumsq: (d * d) as f64,
            });
        }
        assert_eq!(h.signal_until(0, t0 + Duration::days(3)).len(), 3);
        // Mid-day: that day is not complete yet.
        assert_eq!(
            h.signal_until(0, t0 + Duration::days(3) + Duration::hours(12))
                .len(),
            3
        );
        assert_eq!(h.signal_until(0, t0).len(), 0);
        assert_eq!(floor_day(t0 + Duration::hours(5)), t0);
        assert!((age_years(2020, t0) - 6.16).abs() < 0.01);
    }

    #[test]
    fn components_by_powertrain() {
        assert!(!has_component(Some(Powertrain::Bev), Component::Oil));
        assert!(has_component(
            Some(Powertrain::Bev),
            Component::TractionBattery
        ));
        assert!(!has_component(
            Some(Powertrain::Ice),
            Component::TractionBattery
        ));
        assert!(has_component(Some(Powertrain::Phev), Component::Ignition));
        assert!(has_component(None, Component::Cooling));
    }
}
