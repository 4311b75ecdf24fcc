//! Why a score is what it is, in a service advisor's words. The model's per-feature
//! contributions are summed per subject (one signal, the component's fault codes, its service
//! history, one fact about the vehicle), the subjects that push the risk up most are kept, and
//! each is rendered with the catalogue's labels and units: "front-left brake pad wear 86%,
//! rising 4%/1000 km".

use super::feature_list::{self, ContextStat, DtcStat, Kind, ServiceStat, Stat};
use super::features::Snapshot;
use super::rules;
use crate::catalog;
use crate::component::Component;
use crate::risk::Factor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Source(usize),
    Dtc,
    Service,
    Context(ContextStat),
}

/// The rule ratio is told as the reading that drives it, so its contribution joins that
/// reading's subject ("state of health 78%") rather than reading "a rule fired".
fn subject(component: Component, kind: Kind, snapshot: &Snapshot) -> Option<Subject> {
    Some(match kind {
        Kind::Signal { source, .. } | Kind::Missing { source } => Subject::Source(source),
        Kind::Dtc(_) => Subject::Dtc,
        Kind::Service(_) => Subject::Service,
        Kind::Context(c) => Subject::Context(c),
        Kind::Rule => {
            let driver = rules::strongest(component, &snapshot.values)?;
            match feature_list::all().get(driver)?.kind {
                Kind::Rule => return None,
                k => subject(component, k, snapshot)?,
            }
        }
    })
}

/// The `n` subjects with the largest positive summed contribution, strongest first.
/// `features[j]` is the global index of the model's j-th feature.
pub fn top_factors(
    component: Component,
    features: &[usize],
    contributions: &[f64],
    snapshot: &Snapshot,
    n: usize,
) -> Vec<Factor> {
    let defs = feature_list::all();
    // (subject, summed contribution, strongest feature, its contribution)
    let mut subjects: Vec<(Subject, f64, usize, f64)> = Vec::new();
    for (&g, &c) in features.iter().zip(contributions) {
        let Some(def) = defs.get(g) else { continue };
        if !c.is_finite() {
            continue;
        }
        let Some(s) = subject(component, def.kind, snapshot) else {
            continue;
        };
        match subjects.iter_mut().find(|e| e.0 == s) {
            Some(e) => {
                e.1 += c;
                if c > e.3 {
                    e.2 = g;
                    e.3 = c;
                }
            }
            None => subjects.push((s, c, g, c)),
        }
    }
    subjects.retain(|e| e.1 > 1e-9);
    subjects.sort_by(|a, b| b.1.total_cmp(&a.1));
    subjects
        .into_iter()
        .filter_map(|(s, total, g, _)| {
            let text = render(component, s, g, snapshot)?;
            Some(Factor {
                feature: defs[g].name.clone(),
                value: snapshot.values.get(g).copied().unwrap_or(f64::NAN),
                contribution: total,
                text,
            })
        })
        .take(n)
        .collect()
}

/// The component's own feature of that kind (or the vehicle's, for context).
fn value_of(snapshot: &Snapshot, component: Component, kind: Kind) -> f64 {
    feature_list::all()
        .iter()
        .position(|f| f.kind == kind && f.component.is_none_or(|c| c == component))
        .and_then(|i| snapshot.values.get(i).copied())
        .unwrap_or(f64::NAN)
}

fn render(component: Component, s: Subject, strongest: usize, snap: &Snapshot) -> Option<String> {
    let defs = feature_list::all();
    Some(match s {
        Subject::Source(source) => {
            let spec = snap
                .source_signal
                .get(source)
                .copied()
                .flatten()
                .or_else(|| match feature_list::SOURCES.get(source)?.1 {
                    feature_list::Source::Signal(name) => catalog::signal(name),
                    feature_list::Source::Worst { leaf, .. } => {
                        catalog::signal(&catalog::wheel_signal(0, leaf))
                    }
                    feature_list::Source::CellSpread => catalog::signal(catalog::TRACTION_CELL_MAX),
                })?;
            let (label, unit) = match feature_list::SOURCES.get(source)?.1 {
                feature_list::Source::CellSpread => ("cell voltage spread", "V"),
                feature_list::Source::Worst { .. } => (spec.label, spec.unit),
                feature_list::Source::Signal(_) => (spec.label, spec.unit),
            };
            let stat_value = |stat: Stat| value_of(snap, component, Kind::Signal { source, stat });
            if defs[strongest].kind == (Kind::Missing { source }) {
                return Some(format!("no {label} reported in the last 30 days"));
            }
            let strongest_stat = match defs[strongest].kind {
                Kind::Signal { stat, .. } => stat,
                _ => Stat::Level,
            };
            let head = match strongest_stat {
                Stat::LnDaysToLimit
                    if stat_value(Stat::Level).is_finite()
                        && feature_list::days_to_limit(stat_value(Stat::LnDaysToLimit)).round()
                            < feature_list::DAYS_TO_LIMIT_CAP =>
                {
                    let (limit, _) =
                        feature_list::end_of_life(feature_list::SOURCES.get(source)?.1)?;
                    let days = feature_list::days_to_limit(stat_value(Stat::LnDaysToLimit));
                    // One decimal: a pack at 70.4% is not yet at 70%.
                    let level = match unit {
                        "percent" => format!("{}%", number(stat_value(Stat::Level), 1)),
                        _ => quantity(stat_value(Stat::Level), unit),
                    };
                    let limit = quantity(limit, unit);
                    if days <= 0.0 {
                        format!("{label} {level}, at its end-of-life limit of {limit}")
                    } else {
                        format!(
                            "{label} {level}, at this rate at its end-of-life limit of {limit} in about {} days",
                            days.round()
                        )
                    }
                }
                Stat::Max7 if stat_value(Stat::Max7).is_finite() => {
                    format!(
                        "{label} up to {} in the last 7 days",
                        quantity(stat_value(Stat::Max7), unit)
                    )
                }
                Stat::Min7 if stat_value(Stat::Min7).is_finite() => format!(
                    "{label} down to {} in the last 7 days",
                    quantity(stat_value(Stat::Min7), unit)
                ),
                Stat::Std30 if stat_value(Stat::Std30).is_finite() => format!(
                    "{label} unsteady (±{} over 30 days)",
                    quantity(stat_value(Stat::Std30), unit)
                ),
                _ => {
                    let level = [Stat::Level, Stat::Mean30, Stat::Max7, Stat::Min7]
                        .into_iter()
                        .map(stat_value)
                        .find(|v| v.is_finite())?;
                    format!("{label} {}", quantity(level, unit))
                }
            };
            let per_km = stat_value(Stat::SlopeKm);
            let per_month = stat_value(Stat::Slope30);
            let trend = if per_km.is_finite() && per_km.abs() >= 0.05 {
                Some((per_km, "/1000 km"))
            } else if per_month.is_finite() && per_month.abs() >= 0.05 {
                Some((per_month, " a month"))
            } else {
                None
            };
            match trend {
                Some((v, per)) => format!(
                    "{head}, {} {}{per}",
                    if v > 0.0 { "rising" } else { "falling" },
                    quantity(v.abs(), unit)
                ),
                None => head,
            }
        }
        Subject::Dtc => {
            let mine: Vec<_> = snap
                .active_codes
                .iter()
                .filter(|a| a.component == component)
                .collect();
            match mine.as_slice() {
                [] => {
                    let cleared = value_of(snap, component, Kind::Dtc(DtcStat::Cleared90));
                    let reports = value_of(snap, component, Kind::Dtc(DtcStat::Reports30));
                    if cleared >= 1.0 {
                        format!(
                            "{} fault codes came and went ({} cleared in 90 days)",
                            component.label(),
                            cleared as i64
                        )
                    } else if reports >= 1.0 {
                        format!(
                            "{} fault reported {} times in 30 days",
                            component.label(),
                            reports as i64
                        )
                    } else {
                        return None;
                    }
                }
                [one] => {
                    let days = (snap.at - one.since).num_days();
                    let meaning = catalog::dtc_component(&one.code)
                        .map(|d| format!(" ({})", d.meaning))
                        .unwrap_or_default();
                    format!(
                        "fault code {}{meaning} {}, active for {days} day{}",
                        one.code,
                        one.status.as_str(),
                        if days == 1 { "" } else { "s" }
                    )
                }
                many => format!(
                    "{} {} fault codes active: {}",
                    many.len(),
                    component.label(),
                    many.iter()
                        .map(|a| a.code.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
        Subject::Service => {
            let never = value_of(snap, component, Kind::Service(ServiceStat::Never)) >= 1.0;
            let days = value_of(snap, component, Kind::Service(ServiceStat::DaysSince));
            let km = value_of(snap, component, Kind::Service(ServiceStat::KmSince));
            let repairs = value_of(snap, component, Kind::Service(ServiceStat::Repairs365));
            if defs[strongest].kind == Kind::Service(ServiceStat::Repairs365) && repairs >= 1.0 {
                format!(
                    "{} repaired {} time{} in the last 12 months",
                    component.label(),
                    repairs as i64,
                    if repairs >= 2.0 { "s" } else { "" }
                )
            } else if never {
                format!("no {} service on record", component.label())
            } else {
                let mut text = format!("last {} service {} ago", component.label(), span(days));
                if km.is_finite() {
                    text.push_str(&format!(" ({})", quantity(km, "km")));
                }
                text
            }
        }
        Subject::Context(c) => {
            let v = value_of(snap, component, Kind::Context(c));
            match c {
                ContextStat::OdometerKm => format!("odometer {}", quantity(v, "km")),
                ContextStat::KmPerDay => format!("drives {} a day", quantity(v, "km")),
                ContextStat::MeanSpeed30 => {
                    format!("average speed {} over 30 days", quantity(v, "km/h"))
                }
                ContextStat::AgeYears if v.is_finite() => {
                    format!("vehicle {} years old", number(v, 0))
                }
                ContextStat::Powertrain(p) if v >= 1.0 => p.label().to_owned(),
                _ => return None,
            }
        }
    })
}

/// "3 weeks", "14 months", "2.5 years".
fn span(days: f64) -> String {
    if !days.is_finite() {
        "an unknown time".into()
    } else if days < 14.0 {
        format!("{} days", days.round() as i64)
    } else if days < 60.0 {
        format!("{} weeks", (days / 7.0).round() as i64)
    } else if days < 730.0 {
        format!("{} months", (days / 30.44).round() as i64)
    } else {
        format!("{} years", number(days / 365.25, 0))
    }
}

/// A number rounded for people: `decimals` places from 10 up (thousands separated), at least
/// one below 10 (a trailing ".0" dropped), two below 1.
pub fn number(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "unknown".into();
    }
    let a = v.abs();
    if a < 1.0 {
        return format!("{v:.2}");
    }
    if a < 10.0 {
        let s = format!("{v:.*}", decimals.max(1));
        return s.strip_suffix(".0").map(str::to_owned).unwrap_or(s);
    }
    let s = format!("{a:.decimals$}");
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    let mut out = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// A value with its catalogue unit written as people write it.
pub fn quantity(v: f64, unit: &str) -> String {
    let decimals = match unit {
        "V" | "mm" => 1,
        _ => 0,
    };
    let n = number(v, decimals);
    match unit {
        "percent" => format!("{n}%"),
        "celsius" => format!("{n} °C"),
        "count" | "" => n,
        u => format!("{n} {u}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_units_read_naturally() {
        assert_eq!(quantity(86.4, "percent"), "86%");
        assert_eq!(quantity(4.0, "percent"), "4%");
        assert_eq!(quantity(12.18, "V"), "12.2 V");
        assert_eq!(quantity(0.052, "V"), "0.05 V");
        assert_eq!(quantity(38_214.0, "km"), "38,214 km");
        assert_eq!(quantity(-1234.0, "km"), "-1,234 km");
        assert_eq!(quantity(118.0, "celsius"), "118 °C");
        assert_eq!(quantity(4.3, "percent"), "4.3%");
        assert_eq!(quantity(0.4, "percent"), "0.40%");
        assert_eq!(quantity(3.0, "mm"), "3 mm");
        assert_eq!(span(400.0), "13 months");
        assert_eq!(span(21.0), "3 weeks");
    }

    fn blank_snapshot() -> Snapshot {
        let n = feature_list::all().len();
        Snapshot {
            at: chrono::DateTime::UNIX_EPOCH + chrono::Duration::days(20_000),
            values: vec![f64::NAN; n],
            source_signal: vec![None; feature_list::SOURCES.len()],
            active_codes: Vec::new(),
            powertrain: None,
            active: true,
        }
    }

    #[test]
    fn the_rule_ratio_is_told_as_the_reading_behind_it() {
        let mut snap = blank_snapshot();
        let i = |n: &str| feature_list::index_of(n).expect(n);
        snap.values[i("brakes.worst_brake_padwear.level")] = 88.0;
        snap.values[i("brakes.rule.ratio")] = rules::score(Component::Brakes, &snap.values);
        let model = [
            i("brakes.rule.ratio"),
            i("brakes.worst_brake_padwear.level"),
        ];
        let factors = top_factors(Component::Brakes, &model, &[1.5, 0.5], &snap, 3);
        assert_eq!(factors.len(), 1, "{factors:?}");
        assert!(factors[0].text.contains("88%"), "{}", factors[0].text);
        assert!((factors[0].contribution - 2.0).abs() < 1e-12);
    }

    #[test]
    fn days_to_the_end_of_life_are_told_with_the_level_and_the_limit() {
        let mut snap = blank_snapshot();
        let i = |n: &str| feature_list::index_of(n).expect(n);
        let soh = "traction_battery.tractionbattery_stateofhealth";
        snap.values[i(&format!("{soh}.level"))] = 70.6;
        snap.values[i(&format!("{soh}.ln_days_to_limit"))] = 24.6f64.ln_1p();
        let model = [i(&format!("{soh}.ln_days_to_limit"))];
        let factors = top_factors(Component::TractionBattery, &model, &[1.5], &snap, 3);
        assert_eq!(factors.len(), 1, "{factors:?}");
        let text = &factors[0].text;
        assert!(
            text.ends_with("70.6%, at this rate at its end-of-life limit of 70% in about 25 days"),
            "{text}"
        );
        // Already there.
        snap.values[i(&format!("{soh}.level"))] = 69.8;
        snap.values[i(&format!("{soh}.ln_days_to_limit"))] = 0.0;
        let factors = top_factors(Component::TractionBattery, &model, &[1.5], &snap, 3);
        assert!(
            factors[0]
                .text
                .ends_with("69.8%, at its end-of-life limit of 70%"),
            "{}",
            factors[0].text
        );
    }

    #[test]
    fn service_reasons_read_the_component_own_record() {
        let mut snap = blank_snapshot();
        let i = |n: &str| feature_list::index_of(n).expect(n);
        // The 12 V battery (first in the list) was serviced recently, the brakes long ago.
        snap.values[i("battery_12v.service.days_since")] = 10.0;
        snap.values[i("battery_12v.service.never")] = 0.0;
        snap.values[i("brakes.service.days_since")] = 800.0;
        snap.values[i("brakes.service.never")] = 0.0;
        let model = [i("brakes.service.days_since")];
        let factors = top_factors(Component::Brakes, &model, &[1.0], &snap, 3);
        assert_eq!(factors.len(), 1, "{factors:?}");
        assert!(factors[0].text.contains("2.2 years"), "{}", factors[0].text);
    }
}
