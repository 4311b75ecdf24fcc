//! The rule baseline the model must beat: fixed thresholds on wear levels, service intervals
//! and active fault codes, the way fleet tools set maintenance reminders. Its score is the
//! largest ratio of a reading to its threshold (≥ 1 means the reminder fires), so it can be
//! ranked like a probability for PR-AUC and cut at its own alert volume.

use super::feature_list;
use crate::component::Component;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// Fires when the feature is at or above the threshold.
    AtLeast(&'static str, f64),
    /// Fires when the feature is at or below the threshold.
    AtMost(&'static str, f64),
}

use Component::*;
use Rule::*;

/// Reminder thresholds per component (feature names as in `feature_list::all`).
pub fn rules(component: Component) -> &'static [Rule] {
    match component {
        Battery12v => &[
            AtMost("battery_12v.lowvoltagebattery_currentvoltage.level", 12.2),
            AtMost("battery_12v.lowvoltagebattery_crankingvoltage.min_7d", 9.6),
            AtLeast("battery_12v.dtc.active", 1.0),
            AtLeast("battery_12v.service.days_since", 4.0 * 365.0),
        ],
        TractionBattery => &[
            AtMost("traction_battery.tractionbattery_stateofhealth.level", 80.0),
            AtLeast("traction_battery.dtc.active", 1.0),
        ],
        Brakes => &[
            AtLeast("brakes.worst_brake_padwear.level", 80.0),
            AtLeast("brakes.dtc.active", 1.0),
        ],
        Tyres => &[
            AtMost("tyres.worst_tire_treaddepth.level", 3.0),
            AtMost("tyres.worst_tire_pressure.min_7d", 190.0),
            AtLeast("tyres.dtc.active", 1.0),
        ],
        Cooling => &[
            AtLeast("cooling.enginecoolant_temperature.max_7d", 110.0),
            AtLeast("cooling.dtc.active", 1.0),
        ],
        Ignition => &[AtLeast("ignition.dtc.active", 1.0)],
        Emissions => &[
            AtMost("emissions.bank1_efficiency.level", 70.0),
            AtLeast("emissions.dtc.active", 1.0),
        ],
        Oil => &[
            AtMost("oil.engineoil_liferemaining.level", 10.0),
            AtMost("oil.service_distancetoservice.level", 1000.0),
            AtLeast("oil.service.days_since", 365.0),
            AtLeast("oil.dtc.active", 1.0),
        ],
    }
}

/// The rules with feature names resolved to indices into `feature_list::all()`.
fn compiled(component: Component) -> &'static [(bool, usize, f64)] {
    static COMPILED: OnceLock<Vec<Vec<(bool, usize, f64)>>> = OnceLock::new();
    let all = COMPILED.get_or_init(|| {
        Component::ALL
            .iter()
            .map(|&c| {
                rules(c)
                    .iter()
                    .filter_map(|r| match *r {
                        AtLeast(n, t) => Some((true, feature_list::index_of(n)?, t)),
                        AtMost(n, t) => Some((false, feature_list::index_of(n)?, t)),
                    })
                    .collect()
            })
            .collect()
    });
    let i = Component::ALL
        .iter()
        .position(|&c| c == component)
        .unwrap_or(0);
    all.get(i).map(Vec::as_slice).unwrap_or(&[])
}

/// Each rule's reading-to-threshold ratio, with the feature it reads (rules without a
/// reading are left out: they cannot fire).
fn ratios(component: Component, values: &[f64]) -> impl Iterator<Item = (usize, f64)> + '_ {
    compiled(component).iter().filter_map(|&(at_least, i, t)| {
        let v = values.get(i).copied().filter(|v| v.is_finite())?;
        Some((i, if at_least { v / t } else { t / v.max(t * 1e-3) }))
    })
}

/// Largest reading-to-threshold ratio over the component's rules (0 with no readings);
/// the reminder fires at ≥ 1. `values` is a global feature vector (`Snapshot::values`).
pub fn score(component: Component, values: &[f64]) -> f64 {
    ratios(component, values).fold(0.0, |m, (_, r)| m.max(r))
}

/// The feature (global index) of the rule closest to firing, if any rule has a reading
/// above zero.
pub fn strongest(component: Component, values: &[f64]) -> Option<usize> {
    ratios(component, values)
        .filter(|&(_, r)| r > 0.0)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// Every rule names a real feature (checked by a test, so a renamed feature cannot silently
/// disable a rule).
pub fn unknown_rule_features() -> Vec<&'static str> {
    Component::ALL
        .iter()
        .flat_map(|&c| rules(c).iter())
        .map(|r| match *r {
            AtLeast(n, _) | AtMost(n, _) => n,
        })
        .filter(|n| feature_list::index_of(n).is_none())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_reads_an_existing_feature() {
        assert_eq!(unknown_rule_features(), Vec::<&str>::new());
    }

    #[test]
    fn ratios_fire_at_one_and_missing_readings_never_fire() {
        let mut values = vec![f64::NAN; feature_list::all().len()];
        assert_eq!(score(Component::Oil, &values), 0.0);
        let i = |n: &str| feature_list::index_of(n).unwrap();
        values[i("brakes.worst_brake_padwear.level")] = 88.0;
        assert!((score(Component::Brakes, &values) - 1.1).abs() < 1e-12);
        values[i("oil.engineoil_liferemaining.level")] = 20.0;
        assert!((score(Component::Oil, &values) - 0.5).abs() < 1e-12);
        values[i("oil.dtc.active")] = 2.0;
        assert!((score(Component::Oil, &values) - 2.0).abs() < 1e-12);
    }
}
