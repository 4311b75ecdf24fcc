//! A visit to a workshop: the jobs one offer proposes and one booking holds. Owns the offer
//! state machine (`state`) and the rule that puts a car's due jobs into visits
//! (`group_by_deadline`). Pure types and rules: storage records visits with them, and the
//! offer and booking logic decide with them, so neither reaches into the other.

pub mod state;

pub use state::{IllegalTransition, OfferEvent, OfferState, UnknownState};

use chrono::{DateTime, Duration, Utc};

/// Puts one car's due jobs into visits. Each job comes with the latest date it should be done
/// by; taken most urgent first, a job joins the visit whose most urgent date is at most
/// `within` before its own, or starts a new one. Each visit lists its jobs most urgent first
/// (equals in the order given), so the first leads and its date bounds the visit's windows.
pub fn group_by_deadline<T>(
    mut due: Vec<(T, DateTime<Utc>)>,
    within: Duration,
) -> Vec<Vec<(T, DateTime<Utc>)>> {
    due.sort_by_key(|(_, by)| *by);
    let mut visits: Vec<Vec<(T, DateTime<Utc>)>> = Vec::new();
    for (job, by) in due {
        match visits.last_mut() {
            Some(v) if v.first().is_some_and(|(_, first)| by - *first <= within) => {
                v.push((job, by))
            }
            _ => visits.push(vec![(job, by)]),
        }
    }
    visits
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, d, 12, 0, 0).unwrap()
    }

    #[test]
    fn jobs_due_within_the_span_of_the_most_urgent_share_a_visit() {
        let due = vec![
            ("tyres", day(12)),
            ("brakes", day(8)),
            ("oil", day(20)),
            ("battery", day(15)),
            ("cooling", day(27)),
        ];
        let visits = group_by_deadline(due, Duration::days(7));
        let names: Vec<Vec<&str>> = visits
            .iter()
            .map(|v| v.iter().map(|(j, _)| *j).collect())
            .collect();
        // Brakes (8th) lead; tyres (12th) and battery (15th) are within a week of the 8th;
        // oil (20th) is not, and leads the next visit with cooling (27th).
        assert_eq!(
            names,
            vec![vec!["brakes", "tyres", "battery"], vec!["oil", "cooling"]]
        );
    }

    #[test]
    fn no_span_means_one_visit_per_job_unless_due_together() {
        let due = vec![("a", day(8)), ("b", day(9)), ("c", day(8))];
        let visits = group_by_deadline(due, Duration::zero());
        let sizes: Vec<usize> = visits.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 1], "a and c are due the same day");
        assert_eq!(visits[0][0].0, "a", "equals keep their order");
        assert!(group_by_deadline(Vec::<((), DateTime<Utc>)>::new(), Duration::days(1)).is_empty());
    }
}
