//! One vehicle as the domain knows it, shared by storage, the model and the simulator: its
//! powertrain, why a workshop serviced it, and its history up to an instant (daily
//! aggregates of each catalogued signal, DTC events, service events, what the registry says
//! of it). `store::history` fills a `History` from the database; `model` cuts it again at
//! each snapshot instant, so nothing observed after a snapshot reaches its features. Depends
//! only on the contract (`wire`), the component groups and the signal catalogue.

use crate::catalog;
use crate::component::Component;
use crate::wire::DtcStatus;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Powertrain {
    /// Battery-electric.
    Bev,
    /// Plug-in hybrid.
    Phev,
    /// Hybrid (not plug-in).
    Hev,
    /// Combustion engine only.
    Ice,
}

impl Powertrain {
    pub const ALL: [Powertrain; 4] = [
        Powertrain::Bev,
        Powertrain::Phev,
        Powertrain::Hev,
        Powertrain::Ice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Powertrain::Bev => "bev",
            Powertrain::Phev => "phev",
            Powertrain::Hev => "hev",
            Powertrain::Ice => "ice",
        }
    }

    /// In a service advisor's words.
    pub fn label(self) -> &'static str {
        match self {
            Powertrain::Bev => "battery-electric",
            Powertrain::Phev => "plug-in hybrid",
            Powertrain::Hev => "hybrid",
            Powertrain::Ice => "combustion engine",
        }
    }

    /// Has a combustion engine (coolant, ignition, catalyst, oil).
    pub fn has_engine(self) -> bool {
        self != Powertrain::Bev
    }

    /// Has a high-voltage traction battery.
    pub fn has_traction_battery(self) -> bool {
        self != Powertrain::Ice
    }
}

impl fmt::Display for Powertrain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Powertrain {
    type Err = String;
    fn from_str(s: &str) -> Result<Powertrain, String> {
        Powertrain::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown powertrain {s:?} (expected bev, phev, hev or ice)"))
    }
}

/// Why the workshop did the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// Scheduled maintenance (oil service, spark plugs, brake fluid).
    Routine,
    /// Fixed after a failure.
    Repair,
    /// Found worn or faulty and fixed before it failed.
    Preventive,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 3] = [
        ServiceKind::Routine,
        ServiceKind::Repair,
        ServiceKind::Preventive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Routine => "routine",
            ServiceKind::Repair => "repair",
            ServiceKind::Preventive => "preventive",
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ServiceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<ServiceKind, String> {
        ServiceKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown kind {s:?} (expected routine, repair or preventive)"))
    }
}

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

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceEvent {
    pub performed_at: DateTime<Utc>,
    pub odometer_km: Option<f64>,
    pub component: Component,
    pub kind: ServiceKind,
}

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
