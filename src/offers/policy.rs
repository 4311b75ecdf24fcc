//! The offer policy, pure: whether a risk score warrants an offer now, which horizon it is
//! for, when a reminder is due and how loud, and how far ahead to look for windows. The
//! worker feeds it rows; tests feed it edge cases.

use crate::component::Component;
use crate::config::{OffersConfig, Thresholds};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Horizon {
    P7,
    P30,
    P90,
}

impl Horizon {
    pub fn as_str(self) -> &'static str {
        match self {
            Horizon::P7 => "p7",
            Horizon::P30 => "p30",
            Horizon::P90 => "p90",
        }
    }

    pub fn parse(s: &str) -> Option<Horizon> {
        [Horizon::P7, Horizon::P30, Horizon::P90]
            .into_iter()
            .find(|h| h.as_str() == s)
    }
}

/// A component's current score, as `risk_current` holds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Risk {
    pub p7: f64,
    pub p30: f64,
    pub p90: f64,
    pub urgency_days: Option<f64>,
}

impl Risk {
    pub fn at(&self, h: Horizon) -> f64 {
        match h {
            Horizon::P7 => self.p7,
            Horizon::P30 => self.p30,
            Horizon::P90 => self.p90,
        }
    }
}

/// What the policy knows about a vehicle and component besides the score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Context {
    /// None: no owner profile (no consent known, no home workshop).
    pub consent: Option<bool>,
    pub has_home_workshop: bool,
    pub open_offer: bool,
    pub last_declined_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    BelowThreshold,
    OpenOffer,
    Cooldown,
    OptedOut,
    NoProfile,
    NoWorkshop,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Offer { horizon: Horizon, risk: f64 },
    Skip(Skip),
}

pub fn thresholds(cfg: &OffersConfig, c: Component) -> Thresholds {
    cfg.thresholds
        .get(c.as_str())
        .or_else(|| cfg.thresholds.get("default"))
        .copied()
        .unwrap_or(Thresholds {
            p7: None,
            p30: None,
            p90: None,
        })
}

/// The most urgent horizon whose probability reaches its threshold.
pub fn crossing(t: &Thresholds, r: &Risk) -> Option<Horizon> {
    [
        (Horizon::P7, t.p7),
        (Horizon::P30, t.p30),
        (Horizon::P90, t.p90),
    ]
    .into_iter()
    .find(|(h, th)| th.is_some_and(|th| r.at(*h) >= th))
    .map(|(h, _)| h)
}

pub fn decide(
    cfg: &OffersConfig,
    component: Component,
    risk: &Risk,
    ctx: &Context,
    now: DateTime<Utc>,
) -> Decision {
    let Some(horizon) = crossing(&thresholds(cfg, component), risk) else {
        return Decision::Skip(Skip::BelowThreshold);
    };
    match ctx.consent {
        None => return Decision::Skip(Skip::NoProfile),
        Some(false) => return Decision::Skip(Skip::OptedOut),
        Some(true) => {}
    }
    if ctx.open_offer {
        return Decision::Skip(Skip::OpenOffer);
    }
    let cooldown = Duration::seconds((cfg.cooldown_days * 86_400.0) as i64);
    if ctx.last_declined_at.is_some_and(|d| now < d + cooldown) {
        return Decision::Skip(Skip::Cooldown);
    }
    if !ctx.has_home_workshop && cfg.default_workshop.is_empty() {
        return Decision::Skip(Skip::NoWorkshop);
    }
    Decision::Offer {
        horizon,
        risk: risk.at(horizon),
    }
}

/// Windows are sought until the likely failure, within `[min_search_days, search_days]`.
pub fn search_until(cfg: &OffersConfig, risk: &Risk, now: DateTime<Utc>) -> DateTime<Utc> {
    let max = cfg.search_days as f64;
    let days = risk
        .urgency_days
        .filter(|d| d.is_finite())
        .unwrap_or(max)
        .clamp(
            cfg.min_search_days as f64,
            max.max(cfg.min_search_days as f64),
        );
    now + Duration::minutes((days * 1440.0) as i64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Soft = 1,
    Hard = 2,
}

/// A notified offer's state as reminders see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Notice {
    /// 0 none yet, 1 soft, 2 hard.
    pub level: i16,
    pub last_notice_at: DateTime<Utc>,
    pub last_notice_risk: f64,
    pub odometer_at_notice: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Time,
    Distance,
    Risk,
}

/// The reminder due now, if any: triggered by time, distance or a rise in risk since the
/// last notice, whichever comes first. The first is soft unless the risk is already urgent;
/// the next is hard; after a hard one there are no more.
pub fn reminder(
    cfg: &OffersConfig,
    notice: &Notice,
    horizon: Horizon,
    risk: &Risk,
    odometer_now: Option<f64>,
    now: DateTime<Utc>,
) -> Option<(Level, Trigger)> {
    if notice.level >= Level::Hard as i16 {
        return None;
    }
    let after = Duration::seconds((cfg.reminder_after_hours * 3600.0) as i64);
    let driven = match (notice.odometer_at_notice, odometer_now) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    let trigger = if risk.at(horizon) - notice.last_notice_risk >= cfg.reminder_risk_rise {
        Trigger::Risk
    } else if driven >= cfg.reminder_km {
        Trigger::Distance
    } else if now - notice.last_notice_at >= after {
        Trigger::Time
    } else {
        return None;
    };
    let urgent = risk.p7 >= cfg.hard_p7
        || risk
            .urgency_days
            .is_some_and(|d| d <= cfg.hard_urgency_days);
    let level = if urgent || notice.level >= Level::Soft as i16 {
        Level::Hard
    } else {
        Level::Soft
    };
    Some((level, trigger))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn cfg() -> OffersConfig {
        let mut c = OffersConfig::default();
        c.thresholds.insert(
            "brakes".into(),
            Thresholds {
                p7: None,
                p30: Some(0.4),
                p90: None,
            },
        );
        c
    }

    fn risk(p7: f64, p30: f64, p90: f64) -> Risk {
        Risk {
            p7,
            p30,
            p90,
            urgency_days: Some(20.0),
        }
    }

    const OK: Context = Context {
        consent: Some(true),
        has_home_workshop: true,
        open_offer: false,
        last_declined_at: None,
    };

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
    }

    #[test]
    fn thresholds_are_per_component_and_horizon() {
        let c = cfg();
        // Brakes: only p30 counts, at 0.4.
        assert_eq!(
            decide(&c, Component::Brakes, &risk(0.9, 0.39, 0.99), &OK, now()),
            Decision::Skip(Skip::BelowThreshold)
        );
        assert_eq!(
            decide(&c, Component::Brakes, &risk(0.0, 0.4, 0.0), &OK, now()),
            Decision::Offer {
                horizon: Horizon::P30,
                risk: 0.4
            }
        );
        // Others use the default (p7 0.35, p30 0.5, p90 0.75); the most urgent horizon wins.
        assert_eq!(
            decide(&c, Component::Oil, &risk(0.36, 0.6, 0.8), &OK, now()),
            Decision::Offer {
                horizon: Horizon::P7,
                risk: 0.36
            }
        );
        assert_eq!(
            decide(&c, Component::Oil, &risk(0.1, 0.2, 0.75), &OK, now()),
            Decision::Offer {
                horizon: Horizon::P90,
                risk: 0.75
            }
        );
        assert_eq!(
            decide(&c, Component::Oil, &risk(0.34, 0.49, 0.74), &OK, now()),
            Decision::Skip(Skip::BelowThreshold)
        );
    }

    #[test]
    fn one_open_offer_consent_and_opt_out() {
        let c = cfg();
        let r = risk(0.9, 0.9, 0.9);
        let d = |ctx: Context| decide(&c, Component::Tyres, &r, &ctx, now());
        assert_eq!(
            d(Context {
                open_offer: true,
                ..OK
            }),
            Decision::Skip(Skip::OpenOffer)
        );
        assert_eq!(
            d(Context {
                consent: Some(false),
                ..OK
            }),
            Decision::Skip(Skip::OptedOut)
        );
        assert_eq!(
            d(Context {
                consent: None,
                ..OK
            }),
            Decision::Skip(Skip::NoProfile)
        );
        assert_eq!(
            d(Context {
                has_home_workshop: false,
                ..OK
            }),
            Decision::Skip(Skip::NoWorkshop)
        );
        let mut with_default = c.clone();
        with_default.default_workshop = "WS-01".into();
        assert!(matches!(
            decide(
                &with_default,
                Component::Tyres,
                &r,
                &Context {
                    has_home_workshop: false,
                    ..OK
                },
                now()
            ),
            Decision::Offer { .. }
        ));
    }

    #[test]
    fn cooldown_after_a_decline_ends_to_the_second() {
        let c = cfg(); // 14 days
        let r = risk(0.9, 0.9, 0.9);
        let declined = now() - Duration::days(14);
        let at = |t: DateTime<Utc>| {
            decide(
                &c,
                Component::Tyres,
                &r,
                &Context {
                    last_declined_at: Some(declined),
                    ..OK
                },
                t,
            )
        };
        assert_eq!(
            at(now() - Duration::seconds(1)),
            Decision::Skip(Skip::Cooldown)
        );
        assert!(matches!(at(now()), Decision::Offer { .. }));
    }

    #[test]
    fn windows_are_sought_until_the_likely_failure() {
        let c = cfg(); // 3 ..= 21 days
        let mut r = risk(0.9, 0.9, 0.9);
        r.urgency_days = Some(10.0);
        assert_eq!(search_until(&c, &r, now()), now() + Duration::days(10));
        r.urgency_days = Some(0.5);
        assert_eq!(
            search_until(&c, &r, now()),
            now() + Duration::days(3),
            "never less than the minimum"
        );
        r.urgency_days = None;
        assert_eq!(search_until(&c, &r, now()), now() + Duration::days(21));
        r.urgency_days = Some(f64::INFINITY);
        assert_eq!(search_until(&c, &r, now()), now() + Duration::days(21));
    }

    #[test]
    fn reminders_by_time_distance_or_risk_whichever_first_soft_then_hard() {
        let c = cfg(); // 72 h, 300 km, +0.15, hard at p7 0.6 or 7 days
        let notice = Notice {
            level: 0,
            last_notice_at: now(),
            last_notice_risk: 0.5,
            odometer_at_notice: Some(10_000.0),
        };
        let calm = Risk {
            p7: 0.1,
            p30: 0.5,
            p90: 0.6,
            urgency_days: Some(30.0),
        };
        let rem = |n: &Notice, r: &Risk, odo: f64, t: DateTime<Utc>| {
            reminder(&c, n, Horizon::P30, r, Some(odo), t)
        };
        // Nothing yet.
        assert_eq!(
            rem(&notice, &calm, 10_299.0, now() + Duration::hours(71)),
            None
        );
        // Time.
        assert_eq!(
            rem(&notice, &calm, 10_000.0, now() + Duration::hours(72)),
            Some((Level::Soft, Trigger::Time))
        );
        // Distance first.
        assert_eq!(
            rem(&notice, &calm, 10_300.0, now() + Duration::hours(1)),
            Some((Level::Soft, Trigger::Distance))
        );
        // Risk first.
        let risen = Risk { p30: 0.65, ..calm };
        assert_eq!(
            rem(&notice, &risen, 10_000.0, now() + Duration::hours(1)),
            Some((Level::Soft, Trigger::Risk))
        );
        // Urgent risk makes the first reminder hard.
        let urgent = Risk { p7: 0.6, ..risen };
        assert_eq!(
            rem(&notice, &urgent, 10_000.0, now()),
            Some((Level::Hard, Trigger::Risk))
        );
        let close = Risk {
            urgency_days: Some(7.0),
            ..calm
        };
        assert_eq!(
            rem(&notice, &close, 10_300.0, now()),
            Some((Level::Hard, Trigger::Distance))
        );
        // After a soft one, the next is hard; after a hard one, none.
        let soft = Notice { level: 1, ..notice };
        assert_eq!(
            rem(&soft, &calm, 10_000.0, now() + Duration::hours(72)),
            Some((Level::Hard, Trigger::Time))
        );
        let hard = Notice { level: 2, ..notice };
        assert_eq!(
            rem(&hard, &urgent, 99_999.0, now() + Duration::days(30)),
            None
        );
        // No odometer: distance never triggers.
        assert_eq!(
            reminder(
                &c,
                &notice,
                Horizon::P30,
                &calm,
                None,
                now() + Duration::hours(1)
            ),
            None
        );
    }
}
