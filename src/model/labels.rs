//! Outcomes a snapshot is judged by: from service records (training, and evaluation without a
//! ground-truth file) or from the simulator's ground truth.
//!
//! What counts as positive ("the component needed fixing within h days"):
//! - `repair`: fixed after it failed. Positive.
//! - `preventive`: a workshop found it worn or failing and fixed it before it failed. Positive:
//!   the part was at the end of its life, which is exactly what the model should flag.
//! - `routine`: scheduled work done at an interval whatever the condition (oil change,
//!   inspection). Not positive: it says nothing about whether the part was failing. It does
//!   reset wear, and the features see it through "time and distance since last service".
//!
//! Ground truth adds what service records cannot know: when a failure actually happened and
//! until when the part stayed broken. Snapshots taken while it was broken are excluded (the
//! failure is no longer ahead of them), and lead times are measured to the failure itself.

use crate::component::Component;
use crate::vehicle::{History, ServiceKind};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Failure,
    Preventive,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    pub at: DateTime<Utc>,
    pub kind: EventKind,
    /// For failures known from ground truth: when the part was working again (`None`: not
    /// repaired within the data).
    pub fixed_at: Option<DateTime<Utc>>,
    /// When the truth says precursors began, if it says.
    pub precursor_start: Option<DateTime<Utc>>,
}

/// Repairs and preventive jobs of `component` from the vehicle's service records.
pub fn service_events(history: &History, component: Component) -> Vec<Event> {
    history
        .service
        .iter()
        .filter(|s| s.component == component)
        .filter_map(|s| {
            let kind = match s.kind {
                ServiceKind::Repair => EventKind::Failure,
                ServiceKind::Preventive => EventKind::Preventive,
                ServiceKind::Routine => return None,
            };
            Some(Event {
                at: s.performed_at,
                kind,
                fixed_at: Some(s.performed_at),
                precursor_start: None,
            })
        })
        .collect()
}

/// An event falls in [at, at + horizon).
pub fn positive(events: &[Event], at: DateTime<Utc>, horizon_days: i64) -> bool {
    let end = at + Duration::days(horizon_days);
    events.iter().any(|e| e.at >= at && e.at < end)
}

/// The component is broken at `at`: a failure happened and was not yet repaired. A failure
/// without a repair time is taken as never repaired when it is the component's last event,
/// and as repaired at once when another event follows (its repair time is unknown, and
/// excluding the whole gap would drop every snapshot before the next failure). `events` are
/// in time order.
pub fn broken(events: &[Event], at: DateTime<Utc>) -> bool {
    events.iter().enumerate().any(|(i, e)| {
        let fixed = match (e.fixed_at, events.get(i + 1)) {
            (Some(f), _) => Some(f),
            (None, Some(_)) => Some(e.at),
            (None, None) => None,
        };
        e.kind == EventKind::Failure && e.at <= at && fixed.is_none_or(|f| at < f)
    })
}

#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    #[error("cannot read ground truth {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("ground truth {path} line {line}: {reason}")]
    Line {
        path: String,
        line: usize,
        reason: String,
    },
}

/// One line of `aftercare simulate --truth`: a failure, a part fixed early (`"event":
/// "preventive"`, timed by `found_at`), or a part still degrading when the run ended
/// (`"event": "degraded"`: censored, neither positive nor broken, so skipped). Unknown fields
/// are ignored.
#[derive(Debug, Deserialize)]
struct TruthLine {
    vin: String,
    component: String,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    failed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    found_at: Option<DateTime<Utc>>,
    #[serde(default)]
    performed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    at: Option<DateTime<Utc>>,
    #[serde(default)]
    precursor_start: Option<DateTime<Utc>>,
    #[serde(default)]
    repaired_at: Option<DateTime<Utc>>,
}

/// Ground-truth events by VIN and component, each list in time order.
#[derive(Debug, Default)]
pub struct Truth {
    pub events: HashMap<(String, Component), Vec<Event>>,
    /// Lines naming a component this build does not know (counted, not fatal).
    pub unknown_components: usize,
}

impl Truth {
    pub fn read(path: &Path) -> Result<Truth, TruthError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TruthError::Read {
            path: display.clone(),
            source,
        })?;
        Truth::parse(&text, &display)
    }

    pub fn parse(text: &str, path: &str) -> Result<Truth, TruthError> {
        let mut truth = Truth::default();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let err = |reason: String| TruthError::Line {
                path: path.to_owned(),
                line: i + 1,
                reason,
            };
            let l: TruthLine = serde_json::from_str(line).map_err(|e| err(e.to_string()))?;
            let Ok(component) = l.component.parse::<Component>() else {
                truth.unknown_components += 1;
                continue;
            };
            let kind = match l.event.as_deref() {
                None | Some("failure") => EventKind::Failure,
                Some("preventive") => EventKind::Preventive,
                Some("degraded") => continue,
                Some(other) => return Err(err(format!("unknown event {other:?}"))),
            };
            let at = match kind {
                EventKind::Failure => l.failed_at,
                EventKind::Preventive => l
                    .found_at
                    .or(l.performed_at)
                    .or(l.at)
                    .or(l.repaired_at)
                    .or(l.failed_at),
            }
            .ok_or_else(|| {
                err("no time: expected failed_at (or found_at for preventive)".into())
            })?;
            truth
                .events
                .entry((l.vin, component))
                .or_default()
                .push(Event {
                    at,
                    kind,
                    fixed_at: l.repaired_at,
                    precursor_start: l.precursor_start,
                });
        }
        for list in truth.events.values_mut() {
            list.sort_by_key(|e| e.at);
        }
        Ok(truth)
    }

    pub fn for_vehicle(&self, vin: &str, component: Component) -> Vec<Event> {
        self.events
            .get(&(vin.to_owned(), component))
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn truth_lines_failures_and_preventive_with_unknown_fields() {
        let text = r#"
{"vin":"V1","component":"brakes","failed_at":"2026-03-10T08:00:00Z","odometer_km":41000,"precursor_start":"2026-02-01T00:00:00Z","cause":"pad wear","repaired_at":"2026-03-12T10:00:00Z","extra":1}
{"vin":"V1","component":"brakes","event":"preventive","performed_at":"2026-01-05T09:00:00Z"}
{"event":"preventive","vin":"V1","component":"brakes","found_at":"2026-02-10T08:31:00Z","odometer_km":51022.0,"precursor_start":null,"cause":"pads 78% worn","job":"brake_pads_front","visit":"routine"}
{"event":"degraded","vin":"V1","component":"brakes","precursor_start":"2026-02-20T00:00:00Z","as_of":"2026-05-01T00:00:00Z"}
{"vin":"V2","component":"gearbox","failed_at":"2026-03-10T08:00:00Z"}
{"vin":"V2","component":"oil","failed_at":"2026-04-01T00:00:00Z","precursor_start":null,"repaired_at":null}
"#;
        let t = Truth::parse(text, "t.jsonl").unwrap();
        assert_eq!(t.unknown_components, 1);
        let brakes = t.for_vehicle("V1", Component::Brakes);
        // The degraded (censored) line is no event.
        assert_eq!(brakes.len(), 3);
        assert_eq!(brakes[0].kind, EventKind::Preventive);
        assert_eq!(
            brakes[1].at,
            Utc.with_ymd_and_hms(2026, 2, 10, 8, 31, 0).unwrap()
        );
        assert_eq!(brakes[2].kind, EventKind::Failure);
        let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        assert!(positive(&brakes, t0, 30));
        assert!(!positive(&brakes, t0, 7));
        assert!(!broken(&brakes, t0));
        assert!(broken(&brakes, t0 + Duration::days(10)));
        assert!(!broken(&brakes, t0 + Duration::days(12)));
        // Never repaired: broken ever after.
        let oil = t.for_vehicle("V2", Component::Oil);
        assert!(broken(&oil, t0 + Duration::days(365)));
        // No repair time, but a later failure: repaired at some unknown point, so no
        // snapshot before the next failure is dropped; after the last one it stays broken.
        let twice = [t0, t0 + Duration::days(20)].map(|at| Event {
            at,
            kind: EventKind::Failure,
            fixed_at: None,
            precursor_start: None,
        });
        assert!(!broken(&twice, t0 + Duration::days(5)));
        assert!(!broken(&twice, t0 + Duration::days(19)));
        assert!(broken(&twice, t0 + Duration::days(25)));
        assert!(Truth::parse("{\"vin\":\"V\"}", "t").is_err());
        assert!(Truth::parse("{\"vin\":\"V\",\"component\":\"oil\"}", "t").is_err());
    }
}
