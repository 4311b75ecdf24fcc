//! Features of a vehicle as of an instant, from its `History` cut at that instant. Training
//! snapshots and live scoring call the same `compute`, so a model is scored on exactly what it
//! was trained on, and no value observed after the instant can leak in.
//!
//! The list of features is `feature_list`; each component's model uses the features of that
//! component plus the vehicle context. Per signal: level (last day's mean), 30-day mean, 7-day extremes,
//! slope per 30 days, slope per 1000 km (against the odometer, 90 days), 30-day volatility,
//! and, where the part has a published end of life, the (log) days to reach it at its
//! half-year trend; per component:
//! DTC counts and lifecycle (as replayed from events before the instant), time and distance
//! since its last service record and its recent repairs; and the vehicle's odometer, usage,
//! age and powertrain. A component's signal series start after its last service (a new part
//! is a new series). Missing values are NaN (imputed by the trained model); a per-source
//! indicator says when a signal is absent.

use super::feature_list::{
    all, end_of_life, index_of, window_days, ContextStat, DtcStat, Kind, ServiceStat, Source, Stat,
    DAYS_TO_LIMIT_CAP, KM_SLOPE_DAYS, LIMIT_TREND_DAYS, SOURCES,
};
use super::rules;
use super::window::{line, slope, Moments};
use crate::catalog::{self, SignalSpec};
use crate::component::Component;
use crate::vehicle::{
    age_years, day_index, days_between, DayAgg, History, Powertrain, ServiceKind,
};
use crate::wire::DtcStatus;
use chrono::{DateTime, Duration, Utc};
use Stat::*;

/// A DTC code active at the instant, for explanations.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveCode {
    pub code: String,
    pub component: Component,
    pub status: DtcStatus,
    pub since: DateTime<Utc>,
}

/// Feature values at one instant, plus what explanations need to name things.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub at: DateTime<Utc>,
    pub values: Vec<f64>,
    /// Per source: the catalogued signal the values came from (the worst wheel's, for
    /// wheel sources).
    pub source_signal: Vec<Option<&'static SignalSpec>>,
    pub active_codes: Vec<ActiveCode>,
    pub powertrain: Option<Powertrain>,
    /// The vehicle reported some catalogued signal in the 30 days before the instant.
    pub active: bool,
}

impl Snapshot {
    pub fn value(&self, name: &str) -> f64 {
        index_of(name)
            .and_then(|i| self.values.get(i).copied())
            .unwrap_or(f64::NAN)
    }
}

fn signal_index(name: &str) -> Option<usize> {
    catalog::SIGNALS.iter().position(|s| s.name == name)
}

/// Daily series of one source up to `as_of`, and the signal it came from.
fn source_series(
    history: &History,
    source: Source,
    as_of: DateTime<Utc>,
) -> (Vec<DayAgg>, Option<&'static SignalSpec>) {
    let days_of = |name: &str| -> (Vec<DayAgg>, Option<&'static SignalSpec>) {
        match signal_index(name) {
            Some(i) => (
                recent(history, i, as_of, window_days(source)).to_vec(),
                catalog::SIGNALS.get(i),
            ),
            None => (Vec::new(), None),
        }
    };
    match source {
        Source::Signal(name) => days_of(name),
        Source::Worst { leaf, high_is_bad } => {
            let recent = day_index(as_of) - LOOKBACK_LEVEL_DAYS;
            (0..catalog::WHEELS.len())
                .map(|w| days_of(&catalog::wheel_signal(w, leaf)))
                .filter_map(|(d, s)| {
                    let last = d.last().filter(|l| l.day >= recent)?.mean();
                    last.is_finite().then_some((last, d, s))
                })
                .max_by(|a, b| {
                    let o = a.0.total_cmp(&b.0);
                    if high_is_bad {
                        o
                    } else {
                        o.reverse()
                    }
                })
                .map(|(_, d, s)| (d, s))
                .unwrap_or_default()
        }
        Source::CellSpread => {
            let (max, spec) = days_of(catalog::TRACTION_CELL_MAX);
            let (min, _) = days_of(catalog::TRACTION_CELL_MIN);
            let spread = max
                .iter()
                .filter_map(|hi| {
                    let lo = min.iter().find(|lo| lo.day == hi.day)?;
                    let v = hi.mean() - lo.mean();
                    Some(DayAgg {
                        n: 1.0,
                        min: hi.min - lo.max,
                        max: hi.max - lo.min,
                        sum: v,
                        sumsq: v * v,
                        ..*hi
                    })
                })
                .collect();
            (spread, spec)
        }
    }
}

/// Readings a trend line needs before its value replaces the last reading as today's level.
const MIN_POINTS_FOR_TREND: usize = 4;

/// A level older than this is not current.
const LOOKBACK_LEVEL_DAYS: i64 = 30;
const MIN_KM_FOR_SLOPE: f64 = 100.0;

fn within(days: &[DayAgg], from_day: i64) -> &[DayAgg] {
    &days[days.partition_point(|d| d.day < from_day)..]
}

fn pooled(days: &[DayAgg]) -> Moments {
    let mut m = Moments::default();
    for d in days {
        m.add(d.n, d.sum, d.sumsq, d.min, d.max);
    }
    m
}

/// The aggregates of signal `i` in the last `days` days before `as_of`.
fn recent(history: &History, i: usize, as_of: DateTime<Utc>, days: i64) -> &[DayAgg] {
    within(history.signal_until(i, as_of), day_index(as_of) - days)
}

/// Daily maximum odometer by day, for slopes against distance.
fn odometer_by_day(history: &History, as_of: DateTime<Utc>) -> Vec<(i64, f64)> {
    signal_index(catalog::ODOMETER)
        .map(|i| {
            recent(history, i, as_of, KM_SLOPE_DAYS)
                .iter()
                .map(|d| (d.day, d.max))
                .collect()
        })
        .unwrap_or_default()
}

fn stat(
    days: &[DayAgg],
    stat: Stat,
    today: i64,
    odometer: &[(i64, f64)],
    limit: Option<(f64, bool)>,
) -> f64 {
    match stat {
        LnDaysToLimit => {
            let Some((limit, rising)) = limit else {
                return f64::NAN;
            };
            let level = self::stat(days, Level, today, odometer, None);
            if !level.is_finite() {
                return f64::NAN;
            }
            let trend = line(
                within(days, today - LIMIT_TREND_DAYS)
                    .iter()
                    .map(|d| (d.day as f64, d.mean())),
            );
            // Today's level from the line when enough readings pin it down, else the last
            // reading; the daily change only from the line.
            let (level, per_day) = match trend {
                Some(l) if l.n >= MIN_POINTS_FOR_TREND => (l.at(today as f64), l.slope),
                Some(l) => (level, l.slope),
                None => (level, f64::NAN),
            };
            // Distance to the limit and the daily change towards it, both signed so that
            // positive means "not there yet" and "heading there".
            let (headroom, per_day) = if rising {
                (limit - level, per_day)
            } else {
                (level - limit, -per_day)
            };
            let days = if headroom <= 0.0 {
                0.0
            } else if per_day.is_finite() && per_day > 0.0 {
                (headroom / per_day).min(DAYS_TO_LIMIT_CAP)
            } else {
                DAYS_TO_LIMIT_CAP
            };
            days.ln_1p()
        }
        Level => days
            .last()
            .filter(|d| d.day >= today - LOOKBACK_LEVEL_DAYS)
            .map(DayAgg::mean)
            .unwrap_or(f64::NAN),
        Mean30 => pooled(within(days, today - 30)).mean(),
        Std30 => pooled(within(days, today - 30)).std(),
        Min7 => pooled(within(days, today - 7)).min_or_nan(),
        Max7 => pooled(within(days, today - 7)).max_or_nan(),
        Slope30 => {
            30.0 * slope(
                within(days, today - 30)
                    .iter()
                    .map(|d| (d.day as f64, d.mean())),
            )
        }
        SlopeKm => {
            let recent = within(days, today - KM_SLOPE_DAYS);
            let points: Vec<(f64, f64)> = recent
                .iter()
                .filter_map(|d| {
                    let i = odometer.binary_search_by_key(&d.day, |o| o.0).ok()?;
                    Some((odometer[i].1, d.mean()))
                })
                .collect();
            let span = points.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max)
                - points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
            if span < MIN_KM_FOR_SLOPE {
                f64::NAN
            } else {
                1000.0 * slope(points)
            }
        }
    }
}

fn last_service_day(history: &History, component: Component, as_of: DateTime<Utc>) -> Option<i64> {
    history
        .service
        .iter()
        .take_while(|e| e.performed_at < as_of)
        .filter(|e| e.component == component)
        .last()
        .map(|e| day_index(e.performed_at))
}

/// DTC lifecycles replayed from events before `as_of`.
fn dtc_state(history: &History, as_of: DateTime<Utc>) -> Vec<(ActiveCode, DateTime<Utc>)> {
    use std::collections::BTreeMap;
    // code → (component, episode start, last status, last report)
    type Lifecycle = (Component, Option<DateTime<Utc>>, DtcStatus, DateTime<Utc>);
    let mut codes: BTreeMap<&str, Lifecycle> = BTreeMap::new();
    for e in history.dtcs.iter().take_while(|e| e.ts < as_of) {
        let Some(component) = e.component else {
            continue;
        };
        let entry = codes
            .entry(e.code.as_str())
            .or_insert((component, None, e.status, e.ts));
        if e.status == DtcStatus::Cleared {
            entry.1 = None;
        } else if entry.1.is_none() {
            entry.1 = Some(e.ts);
        }
        entry.2 = e.status;
        entry.3 = e.ts;
    }
    codes
        .into_iter()
        .filter_map(|(code, (component, since, status, last))| {
            let since = since?;
            (status != DtcStatus::Cleared && last >= as_of - Duration::days(30)).then(|| {
                (
                    ActiveCode {
                        code: code.to_owned(),
                        component,
                        status,
                        since,
                    },
                    last,
                )
            })
        })
        .collect()
}

/// The features of `history` as of `as_of`.
pub fn compute(history: &History, as_of: DateTime<Utc>) -> Snapshot {
    let defs = all();
    let today = day_index(as_of);
    let odometer = odometer_by_day(history, as_of);
    // A service of the component resets what its signals measure (new pads read 10 %): each
    // source's series starts the day after the component's last service before the instant,
    // so levels, windows and slopes never mix the old part with the new one.
    let series: Vec<(Vec<DayAgg>, Option<&'static SignalSpec>)> = SOURCES
        .iter()
        .map(|(component, source, _)| {
            let (mut days, spec) = source_series(history, *source, as_of);
            if let Some(serviced) = last_service_day(history, *component, as_of) {
                days.drain(..days.partition_point(|d| d.day <= serviced));
            }
            (days, spec)
        })
        .collect();
    let active: Vec<ActiveCode> = dtc_state(history, as_of)
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    let odometer_now = odometer
        .last()
        .filter(|o| o.0 >= today - LOOKBACK_LEVEL_DAYS)
        .map(|o| o.1)
        .unwrap_or(f64::NAN);
    // Known at the instant only if it lies before it.
    let first_data = history.first_data.filter(|(day, _)| *day <= today);
    let mut values = Vec::with_capacity(defs.len());
    for def in defs {
        let v = match (def.kind, def.component) {
            (Kind::Signal { source, stat: s }, _) => stat(
                &series[source].0,
                s,
                today,
                &odometer,
                end_of_life(SOURCES[source].1),
            ),
            (Kind::Missing { source }, _) => {
                let recent = within(&series[source].0, today - LOOKBACK_LEVEL_DAYS);
                f64::from(u8::from(recent.is_empty()))
            }
            (Kind::Dtc(s), Some(c)) => dtc_value(history, &active, c, s, as_of),
            (Kind::Service(s), Some(c)) => {
                service_value(history, c, s, as_of, odometer_now, first_data)
            }
            (Kind::Context(s), _) => {
                context_value(history, s, as_of, today, odometer_now, &odometer)
            }
            _ => f64::NAN,
        };
        values.push(v);
    }
    // Rule ratios read the features above (never each other), so they come last.
    for (i, def) in defs.iter().enumerate() {
        if let (Kind::Rule, Some(c)) = (def.kind, def.component) {
            values[i] = rules::score(c, &values);
        }
    }
    let reporting = (0..history.signals.len()).any(|i| {
        history
            .signal_until(i, as_of)
            .last()
            .is_some_and(|d| d.day >= today - LOOKBACK_LEVEL_DAYS)
    });
    Snapshot {
        at: as_of,
        active: reporting,
        values,
        source_signal: series.into_iter().map(|(_, s)| s).collect(),
        active_codes: active,
        powertrain: history.profile.powertrain,
    }
}

fn dtc_value(
    history: &History,
    active: &[ActiveCode],
    component: Component,
    s: DtcStat,
    as_of: DateTime<Utc>,
) -> f64 {
    let mine = active.iter().filter(|a| a.component == component);
    let recent = |days: i64| {
        let from = as_of - Duration::days(days);
        history
            .dtcs
            .iter()
            .take_while(|e| e.ts < as_of)
            .filter(move |e| e.ts >= from && e.component == Some(component))
    };
    match s {
        DtcStat::Active => mine.count() as f64,
        DtcStat::Severe => mine.filter(|a| a.status != DtcStatus::Pending).count() as f64,
        DtcStat::Reports30 => recent(30)
            .filter(|e| e.status != DtcStatus::Cleared)
            .count() as f64,
        DtcStat::ActiveDays => mine
            .map(|a| days_between(a.since, as_of))
            .fold(0.0, f64::max),
        DtcStat::Cleared90 => recent(90)
            .filter(|e| e.status == DtcStatus::Cleared)
            .count() as f64,
    }
}

fn service_value(
    history: &History,
    component: Component,
    s: ServiceStat,
    as_of: DateTime<Utc>,
    odometer_now: f64,
    first_data: Option<(i64, f64)>,
) -> f64 {
    let past = history
        .service
        .iter()
        .take_while(|e| e.performed_at < as_of)
        .filter(|e| e.component == component);
    let last = past.clone().last();
    match (s, last) {
        (ServiceStat::Never, _) => f64::from(u8::from(last.is_none())),
        (ServiceStat::Repairs365, _) => past
            .filter(|e| {
                e.kind != ServiceKind::Routine && e.performed_at >= as_of - Duration::days(365)
            })
            .count() as f64,
        (ServiceStat::DaysSince, Some(e)) => days_between(e.performed_at, as_of),
        (ServiceStat::DaysSince, None) => first_data
            .map(|(d, _)| (day_index(as_of) - d) as f64)
            .unwrap_or(f64::NAN),
        (ServiceStat::KmSince, Some(e)) => e
            .odometer_km
            .map(|km| odometer_now - km)
            .unwrap_or(f64::NAN),
        (ServiceStat::KmSince, None) => {
            odometer_now - first_data.map(|(_, km)| km).unwrap_or(f64::NAN)
        }
    }
}

fn context_value(
    history: &History,
    s: ContextStat,
    as_of: DateTime<Utc>,
    today: i64,
    odometer_now: f64,
    odometer: &[(i64, f64)],
) -> f64 {
    match s {
        ContextStat::OdometerKm => odometer_now,
        ContextStat::KmPerDay => {
            let from = odometer.partition_point(|o| o.0 < today - 30);
            slope(odometer[from..].iter().map(|&(d, km)| (d as f64, km)))
        }
        ContextStat::MeanSpeed30 => signal_index(catalog::SPEED)
            .map(|i| pooled(within(history.signal_until(i, as_of), today - 30)).mean())
            .unwrap_or(f64::NAN),
        ContextStat::AgeYears => history
            .profile
            .model_year
            .map(|y| age_years(y, as_of))
            .unwrap_or(f64::NAN),
        ContextStat::Powertrain(p) => f64::from(u8::from(history.profile.powertrain == Some(p))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::feature_list::days_to_limit;
    use crate::vehicle::{day_start, DtcEvent, Profile, ServiceEvent};
    use chrono::TimeZone;
    use Component::*;

    fn daily(history: &mut History, signal: &str, day: i64, v: f64) {
        let i = signal_index(signal).unwrap();
        history.signals[i].push(DayAgg {
            day,
            end: day_start(day + 1),
            n: 2.0,
            min: v - 1.0,
            max: v + 1.0,
            sum: 2.0 * v,
            sumsq: (v - 1.0).powi(2) + (v + 1.0).powi(2),
        });
    }

    /// 60 days: 100 km a day, front-left pads wearing 0.5 %/day (5 %/1000 km), the other
    /// wheels slower; a misfire code pending then confirmed; a brake repair on day 20.
    fn sample() -> (History, DateTime<Utc>) {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let d0 = day_index(t0);
        let mut h = History::new(1, "V".into());
        h.profile = Profile {
            powertrain: Some(Powertrain::Ice),
            model_year: Some(2020),
        };
        h.first_data = Some((d0, 10_000.0));
        for d in 0..60 {
            daily(
                &mut h,
                catalog::ODOMETER,
                d0 + d,
                10_000.0 + 100.0 * d as f64,
            );
            for w in 0..4 {
                let rate = if w == 0 { 0.5 } else { 0.1 };
                daily(
                    &mut h,
                    &catalog::wheel_signal(w, catalog::PAD_WEAR_LEAF),
                    d0 + d,
                    20.0 + rate * d as f64,
                );
            }
        }
        let code = |ts, status| DtcEvent {
            ts,
            code: "P0301".into(),
            status,
            component: Some(Ignition),
        };
        h.dtcs = vec![
            code(t0 + Duration::days(40), DtcStatus::Pending),
            code(t0 + Duration::days(50), DtcStatus::Confirmed),
        ];
        h.service = vec![ServiceEvent {
            performed_at: t0 + Duration::days(20),
            odometer_km: Some(12_000.0),
            component: Brakes,
            kind: ServiceKind::Repair,
        }];
        (h, t0 + Duration::days(60))
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-6, "{a} != {b}");
    }

    #[test]
    fn levels_slopes_dtcs_and_service_as_of_an_instant() {
        let (h, at) = sample();
        let s = compute(&h, at);
        close(
            s.value("brakes.worst_brake_padwear.level"),
            20.0 + 0.5 * 59.0,
        );
        close(s.value("brakes.worst_brake_padwear.slope_1000km"), 5.0);
        close(s.value("brakes.worst_brake_padwear.slope_30d"), 15.0);
        close(s.value("brakes.worst_brake_padwear.missing"), 0.0);
        assert_eq!(
            s.source_signal[7].map(|spec| spec.label),
            Some("front-left brake pad wear")
        );
        close(s.value("vehicle.odometer_km"), 15_901.0); // the day's highest reading
        close(s.value("vehicle.km_per_day"), 100.0);
        close(s.value("vehicle.powertrain_ice"), 1.0);
        close(s.value("ignition.dtc.active"), 1.0);
        close(s.value("ignition.dtc.severe"), 1.0);
        close(s.value("ignition.dtc.active_days"), 20.0);
        close(s.value("brakes.service.days_since"), 40.0);
        close(s.value("brakes.service.km_since"), 3_901.0);
        close(s.value("brakes.service.repairs_365d"), 1.0);
        close(s.value("oil.service.never"), 1.0);
        close(s.value("oil.service.days_since"), 60.0);
        assert!(s.value("cooling.enginecoolant_temperature.max_7d").is_nan());
        close(s.value("cooling.enginecoolant_temperature.missing"), 1.0);

        // On day 15: no code yet, no repair yet, lower wear.
        let before = compute(&h, at - Duration::days(45));
        close(before.value("ignition.dtc.active"), 0.0);
        close(before.value("brakes.service.repairs_365d"), 0.0);
        close(
            before.value("brakes.worst_brake_padwear.level"),
            20.0 + 0.5 * 14.0,
        );
    }

    #[test]
    fn days_to_the_end_of_life_limit_follow_the_half_year_trend() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let d0 = day_index(t0);
        let name = "traction_battery.tractionbattery_stateofhealth.ln_days_to_limit";
        let days = |s: &Snapshot| days_to_limit(s.value(name));
        // 200 days of a pack fading 0.02 points a day from 73%: 71.0% on day 100, so 50
        // days to 70% at that rate; below 70% from day 151.
        let mut h = History::new(1, "V".into());
        for d in 0..200 {
            daily(
                &mut h,
                catalog::TRACTION_SOH,
                d0 + d,
                73.0 - 0.02 * d as f64,
            );
        }
        // As of day 100's midnight the line through days 0..99 stands at 71.0.
        let at = t0 + Duration::days(100);
        close(days(&compute(&h, at)), 50.0);
        close(compute(&h, at).value(name), 51f64.ln());
        // Weekly readings 0.2 points off the same fade, alternately high and low (the
        // simulator's reading noise): the last reading (day 98, high) alone would say 62
        // days; the line says about 50.
        let mut noisy = History::new(4, "N".into());
        for d in (0..100).step_by(7) {
            let noise = if (d / 7) % 2 == 0 { 0.2 } else { -0.2 };
            daily(
                &mut noisy,
                catalog::TRACTION_SOH,
                d0 + d,
                73.0 - 0.02 * d as f64 + noise,
            );
        }
        let estimate = days(&compute(&noisy, at));
        assert!((estimate - 50.0).abs() < 5.0, "{estimate}");
        // Fewer readings than a line needs: today's level is the last reading.
        let mut young = History::new(5, "Y".into());
        for d in [90, 97] {
            daily(
                &mut young,
                catalog::TRACTION_SOH,
                d0 + d,
                73.0 - 0.02 * d as f64,
            );
        }
        close(
            days(&compute(&young, at)),
            (73.0 - 0.02 * 97.0 - 70.0) / 0.02,
        );
        // Past the limit: none left.
        close(days(&compute(&h, t0 + Duration::days(200))), 0.0);
        // Not fading: the cap, never a negative or infinite count.
        let mut steady = History::new(2, "W".into());
        for d in 0..120 {
            daily(&mut steady, catalog::TRACTION_SOH, d0 + d, 90.0);
        }
        close(days(&compute(&steady, at)), DAYS_TO_LIMIT_CAP);
        // No reading: unknown.
        assert!(compute(&History::new(3, "X".into()), at)
            .value(name)
            .is_nan());
        // Sources without a published limit have no such feature.
        assert!(end_of_life(Source::Signal(catalog::OIL_LIFE)).is_none());
    }

    #[test]
    fn cleared_codes_are_no_longer_active() {
        let (mut h, at) = sample();
        h.dtcs.push(DtcEvent {
            ts: at - Duration::days(2),
            code: "P0301".into(),
            status: DtcStatus::Cleared,
            component: Some(Ignition),
        });
        let s = compute(&h, at);
        close(s.value("ignition.dtc.active"), 0.0);
        close(s.value("ignition.dtc.cleared_90d"), 1.0);
        close(s.value("ignition.dtc.reports_30d"), 2.0);
    }
}
