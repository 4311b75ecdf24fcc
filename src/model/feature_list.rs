//! The feature list: every feature the model knows, by name, in one fixed order, and what
//! each reads (a signal source and its statistics, a component's fault codes or service
//! history, a fact about the vehicle, the rule ratio), with how far back each source reads.
//! The rule baseline names its readings from this list and `features` computes the values,
//! so both depend on it and not on each other.

use crate::catalog;
use crate::component::Component;
use crate::vehicle::Powertrain;
use std::sync::OnceLock;

/// Where a signal feature's series comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source {
    Signal(&'static str),
    /// The worst of the four wheels (highest or lowest level at the instant).
    Worst {
        leaf: &'static str,
        high_is_bad: bool,
    },
    /// Highest minus lowest cell voltage of the traction battery.
    CellSpread,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Level,
    Mean30,
    Min7,
    Max7,
    /// Change per 30 days.
    Slope30,
    /// Change per 1000 km driven.
    SlopeKm,
    Std30,
    /// ln(1 + days) until the part reaches its end-of-life limit (`end_of_life`), from the
    /// least-squares line of the last `LIMIT_TREND_DAYS`: where the line stands today (the
    /// readings' noise averaged out) and its slope. 0 once reached, ln(1 + cap) when not
    /// heading there. Fade is slow and the limit sharp, so how far off it is says more than
    /// the level. In log days because an estimate of the time left errs in proportion to
    /// it: "reaches the limit within h days" is then a logistic function of ln(days) − ln(h),
    /// a shape a linear model can fit, where in days it would be a step.
    LnDaysToLimit,
}

impl Stat {
    fn name(self) -> &'static str {
        match self {
            Stat::Level => "level",
            Stat::Mean30 => "mean_30d",
            Stat::Min7 => "min_7d",
            Stat::Max7 => "max_7d",
            Stat::Slope30 => "slope_30d",
            Stat::SlopeKm => "slope_1000km",
            Stat::Std30 => "std_30d",
            Stat::LnDaysToLimit => "ln_days_to_limit",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtcStat {
    /// Codes whose latest report before the instant did not clear them (seen in 30 days).
    Active,
    /// Of those, confirmed, permanent or active (not merely pending).
    Severe,
    /// Reports of the component's codes in the last 30 days.
    Reports30,
    /// Days since the oldest active code's current episode began.
    ActiveDays,
    /// Clears in the last 90 days: faults that come and go.
    Cleared90,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceStat {
    /// Days since the last record of the component (since the first data when none).
    DaysSince,
    KmSince,
    /// Repairs and preventive jobs in the last 365 days.
    Repairs365,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextStat {
    OdometerKm,
    KmPerDay,
    MeanSpeed30,
    AgeYears,
    Powertrain(Powertrain),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Signal {
        source: usize,
        stat: Stat,
    },
    Missing {
        source: usize,
    },
    Dtc(DtcStat),
    Service(ServiceStat),
    Context(ContextStat),
    /// The rule baseline's reading-to-threshold ratio (`rules::score`): what a reminder
    /// rule knows, given to the learner so a model on few failures starts from it.
    Rule,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FeatureDef {
    pub name: String,
    pub kind: Kind,
    /// `None`: vehicle context, used by every component's model.
    pub component: Option<Component>,
}

use Component::*;
use Stat::*;

/// Signal sources per component and the statistics taken of each.
pub const SOURCES: &[(Component, Source, &[Stat])] = &[
    (
        Battery12v,
        Source::Signal(catalog::BATTERY_12V_VOLTAGE),
        &[Level, Min7, Slope30, Std30],
    ),
    (
        Battery12v,
        Source::Signal(catalog::BATTERY_12V_CRANKING_VOLTAGE),
        &[Level, Min7, Slope30],
    ),
    (
        Battery12v,
        Source::Signal(catalog::AMBIENT_TEMPERATURE),
        &[Min7],
    ),
    (
        TractionBattery,
        Source::Signal(catalog::TRACTION_SOH),
        &[Level, Slope30, SlopeKm, LnDaysToLimit],
    ),
    (TractionBattery, Source::CellSpread, &[Level, Max7, Slope30]),
    (
        TractionBattery,
        Source::Signal(catalog::TRACTION_TEMPERATURE),
        &[Mean30, Max7],
    ),
    (
        TractionBattery,
        Source::Signal(catalog::TRACTION_FAST_CHARGES),
        &[Slope30],
    ),
    (
        Brakes,
        Source::Worst {
            leaf: catalog::PAD_WEAR_LEAF,
            high_is_bad: true,
        },
        &[Level, SlopeKm, Slope30],
    ),
    (
        Tyres,
        Source::Worst {
            leaf: catalog::TREAD_DEPTH_LEAF,
            high_is_bad: false,
        },
        &[Level, SlopeKm],
    ),
    (
        Tyres,
        Source::Worst {
            leaf: catalog::TIRE_PRESSURE_LEAF,
            high_is_bad: false,
        },
        &[Level, Min7, Slope30],
    ),
    (
        Cooling,
        Source::Signal(catalog::COOLANT_TEMPERATURE),
        &[Mean30, Max7, Std30, Slope30],
    ),
    (
        Ignition,
        Source::Signal(catalog::MISFIRE_COUNT),
        &[Level, Max7, Slope30],
    ),
    (
        Emissions,
        Source::Signal(catalog::CATALYST_EFFICIENCY),
        &[Level, Min7, Slope30],
    ),
    (Oil, Source::Signal(catalog::OIL_LIFE), &[Level, SlopeKm]),
    (Oil, Source::Signal(catalog::DISTANCE_TO_SERVICE), &[Level]),
];

const DTC_STATS: [(DtcStat, &str); 5] = [
    (DtcStat::Active, "active"),
    (DtcStat::Severe, "severe"),
    (DtcStat::Reports30, "reports_30d"),
    (DtcStat::ActiveDays, "active_days"),
    (DtcStat::Cleared90, "cleared_90d"),
];

const SERVICE_STATS: [(ServiceStat, &str); 4] = [
    (ServiceStat::DaysSince, "days_since"),
    (ServiceStat::KmSince, "km_since"),
    (ServiceStat::Repairs365, "repairs_365d"),
    (ServiceStat::Never, "never"),
];

/// Short stable name of a source, used in feature names.
pub fn source_key(source: Source) -> String {
    match source {
        Source::Signal(name) => name
            .rsplit('.')
            .take(2)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("_")
            .to_ascii_lowercase(),
        Source::Worst { leaf, .. } => {
            format!("worst_{}", leaf.replace('.', "_").to_ascii_lowercase())
        }
        Source::CellSpread => "cell_voltage_spread".into(),
    }
}

/// Every feature, in a fixed order.
pub fn all() -> &'static [FeatureDef] {
    static ALL: OnceLock<Vec<FeatureDef>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut out = Vec::new();
        for (i, (component, source, stats)) in SOURCES.iter().enumerate() {
            let key = source_key(*source);
            for &stat in *stats {
                out.push(FeatureDef {
                    name: format!("{component}.{key}.{}", stat.name()),
                    kind: Kind::Signal { source: i, stat },
                    component: Some(*component),
                });
            }
            out.push(FeatureDef {
                name: format!("{component}.{key}.missing"),
                kind: Kind::Missing { source: i },
                component: Some(*component),
            });
        }
        for component in Component::ALL {
            for (stat, name) in DTC_STATS {
                out.push(FeatureDef {
                    name: format!("{component}.dtc.{name}"),
                    kind: Kind::Dtc(stat),
                    component: Some(component),
                });
            }
            for (stat, name) in SERVICE_STATS {
                out.push(FeatureDef {
                    name: format!("{component}.service.{name}"),
                    kind: Kind::Service(stat),
                    component: Some(component),
                });
            }
            out.push(FeatureDef {
                name: format!("{component}.rule.ratio"),
                kind: Kind::Rule,
                component: Some(component),
            });
        }
        let mut context = vec![
            (ContextStat::OdometerKm, "vehicle.odometer_km".to_owned()),
            (ContextStat::KmPerDay, "vehicle.km_per_day".to_owned()),
            (
                ContextStat::MeanSpeed30,
                "vehicle.mean_speed_30d".to_owned(),
            ),
            (ContextStat::AgeYears, "vehicle.age_years".to_owned()),
        ];
        for p in Powertrain::ALL {
            context.push((
                ContextStat::Powertrain(p),
                format!("vehicle.powertrain_{}", p.as_str()),
            ));
        }
        for (stat, name) in context {
            out.push(FeatureDef {
                name,
                kind: Kind::Context(stat),
                component: None,
            });
        }
        out
    })
}

/// Indices (into `all()`) of the features a component's model uses.
pub fn for_component(component: Component) -> Vec<usize> {
    all()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.component.is_none() || f.component == Some(component))
        .map(|(i, _)| i)
        .collect()
}

pub fn index_of(name: &str) -> Option<usize> {
    all().iter().position(|f| f.name == name)
}

/// The end-of-life limit of a source, and whether readings rise towards it. 70% state of
/// health is the usual end of life (and warranty floor) of a traction pack.
pub fn end_of_life(source: Source) -> Option<(f64, bool)> {
    match source {
        Source::Signal(catalog::TRACTION_SOH) => Some((70.0, false)),
        _ => None,
    }
}

/// Days to the limit of a part not heading for it, and the most `LnDaysToLimit` reports.
pub const DAYS_TO_LIMIT_CAP: f64 = 365.0;
/// The trend behind `LnDaysToLimit`: half a year of weekly readings puts today's level
/// within about 0.1 of a state-of-health point and the fade rate within about a tenth,
/// where the last reading alone is off by its noise (0.2 points: a month at a typical fade).
pub const LIMIT_TREND_DAYS: i64 = 180;

/// Days to the limit from an `LnDaysToLimit` value.
pub fn days_to_limit(ln_days: f64) -> f64 {
    ln_days.exp_m1()
}

/// Distance slopes read this many days.
pub const KM_SLOPE_DAYS: i64 = 90;
/// The longest window a statistic reads, but for end-of-life trends
/// (`long_window_signals`); `dataset::SIGNAL_LOOKBACK_DAYS` loads a day more.
pub const WINDOW_DAYS: i64 = KM_SLOPE_DAYS;

/// The longest window a source's statistics read: the end-of-life trend for a part that has
/// a limit, else `WINDOW_DAYS`.
pub fn window_days(source: Source) -> i64 {
    if end_of_life(source).is_some() {
        LIMIT_TREND_DAYS.max(WINDOW_DAYS)
    } else {
        WINDOW_DAYS
    }
}

/// The signals a snapshot reads further back than `WINDOW_DAYS` (end-of-life trends), so
/// that loaders fetch only those that far.
pub fn long_window_signals() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        SOURCES
            .iter()
            .filter(|(_, source, _)| window_days(*source) > WINDOW_DAYS)
            .filter_map(|(_, source, _)| match source {
                Source::Signal(name) => Some(*name),
                _ => None,
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_read_beyond_the_common_window_is_loaded_that_far() {
        // Loaders read only `long_window_signals` further back than `WINDOW_DAYS`: a source
        // with a longer window must be one of them, or its trend would see half its data.
        for (_, source, _) in SOURCES {
            if window_days(*source) > WINDOW_DAYS {
                let Source::Signal(name) = source else {
                    panic!("{source:?}: a long window needs a single named signal");
                };
                assert!(long_window_signals().contains(name), "{name}");
            }
        }
        assert_eq!(long_window_signals(), &[catalog::TRACTION_SOH]);
    }

    #[test]
    fn feature_names_are_unique_and_components_get_context() {
        let names: std::collections::HashSet<_> = all().iter().map(|f| &f.name).collect();
        assert_eq!(names.len(), all().len());
        let brakes = for_component(Brakes);
        assert!(brakes
            .iter()
            .any(|&i| all()[i].name == "vehicle.odometer_km"));
        assert!(!brakes.iter().any(|&i| all()[i].name.starts_with("oil.")));
    }
}
