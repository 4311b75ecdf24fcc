//! Slot search, pure: given a workshop's calendar, bays, technicians and live bookings for a
//! period, which windows can take a job, and which are best. No I/O; `store::capacity`
//! loads a `Capacity` with one query. Local times are turned into instants per day in the
//! workshop's time zone, so DST days have 23 or 25 hours and a window is always its job's
//! real length.

use super::WeekPlan;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Clone)]
pub struct Calendar {
    pub tz: Tz,
    pub slot_minutes: i64,
    pub hours: WeekPlan,
    pub holidays: BTreeSet<NaiveDate>,
}

#[derive(Debug, Clone)]
pub struct Bay {
    pub id: i32,
    pub code: String,
    pub capabilities: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Technician {
    pub id: i32,
    pub code: String,
    pub skills: Vec<String>,
    pub shifts: WeekPlan,
}

/// A live booking: it holds its bay and technician for `[start, end)`.
#[derive(Debug, Clone, Copy)]
pub struct Busy {
    pub booking_id: i64,
    pub bay_id: i32,
    pub technician_id: i32,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Everything the search needs about one workshop for one period.
#[derive(Debug, Clone)]
pub struct Capacity {
    pub workshop_id: i32,
    pub calendar: Calendar,
    pub bays: Vec<Bay>,
    pub technicians: Vec<Technician>,
    pub busy: Vec<Busy>,
}

/// What a visit needs: one bay with every capability and one technician with every skill,
/// for `minutes` in one piece.
#[derive(Debug, Clone)]
pub struct JobNeed {
    pub minutes: i64,
    pub skills: Vec<String>,
    pub bay_capabilities: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Search {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// No window starts before this (now, or when the parts can be there).
    pub earliest: DateTime<Utc>,
    /// A booking being rescheduled: its own time does not count as busy.
    pub ignore_booking: Option<i64>,
}

/// A feasible start for a job, with the best-fit bay and technician (`plan::Window` is how
/// offers and the API show it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slot {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub bay_id: i32,
    pub technician_id: i32,
    /// Lower is better: days waited, plus the day's load, minus a bonus for packing bays.
    pub score: f64,
}

/// Weight of a day's load (0..1) against one day of waiting.
const LOAD_WEIGHT: f64 = 2.0;
/// Bonus for a window that starts or ends against a booking or the day's edge: no idle gap.
const PACKING_BONUS: f64 = 0.25;

/// The instant a local date and time stands for. An ambiguous time (clocks going back) is the
/// earlier one; a time that does not exist (clocks going forward) moves forward to the first
/// that does.
pub fn local_instant(tz: Tz, date: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
    let mut ndt = date.and_time(time);
    for _ in 0..8 {
        if let Some(t) = tz.from_local_datetime(&ndt).earliest() {
            return Some(t.with_timezone(&Utc));
        }
        ndt += Duration::minutes(15);
    }
    None
}

/// Local intervals of one weekday plan on `date`, as instants.
pub fn day_intervals(tz: Tz, plan: &WeekPlan, date: NaiveDate) -> Vec<Span> {
    let idx = date.weekday().num_days_from_monday() as usize;
    plan[idx]
        .iter()
        .filter_map(|(a, b)| Some((local_instant(tz, date, *a)?, local_instant(tz, date, *b)?)))
        .filter(|(a, b)| a < b)
        .collect()
}

/// Local dates touched by `[from, to)` in `tz`.
fn local_dates(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> impl Iterator<Item = NaiveDate> {
    let first = from.with_timezone(&tz).date_naive();
    let last = (to - Duration::nanoseconds(1))
        .with_timezone(&tz)
        .date_naive();
    first.iter_days().take_while(move |d| *d <= last)
}

/// An interval of instants, `[start, end)`.
pub type Span = (DateTime<Utc>, DateTime<Utc>);

/// Per resource, the busy intervals sorted by start.
struct Ledger(HashMap<i32, Vec<Span>>);

impl Ledger {
    fn new(items: impl Iterator<Item = (i32, DateTime<Utc>, DateTime<Utc>)>) -> Ledger {
        let mut map: HashMap<i32, Vec<_>> = HashMap::new();
        for (id, a, b) in items {
            map.entry(id).or_default().push((a, b));
        }
        for v in map.values_mut() {
            v.sort();
        }
        Ledger(map)
    }

    fn free(&self, id: i32, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        let Some(v) = self.0.get(&id) else {
            return true;
        };
        // First interval starting at or after `end` cannot overlap; check the ones before it.
        let i = v.partition_point(|(a, _)| *a < end);
        v[..i].iter().rev().all(|(_, b)| *b <= start)
    }

    fn touches(&self, id: i32, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        self.0
            .get(&id)
            .is_some_and(|v| v.iter().any(|(a, b)| *b == start || *a == end))
    }
}

/// One local day: its open intervals and how loaded its bays are.
struct Day {
    open: Vec<Span>,
    load: f64,
}

struct Prepared<'a> {
    cap: &'a Capacity,
    bays: Vec<&'a Bay>,
    techs: Vec<&'a Technician>,
    bay_busy: Ledger,
    tech_busy: Ledger,
}

impl<'a> Prepared<'a> {
    fn new(cap: &'a Capacity, job: &JobNeed, ignore: Option<i64>) -> Prepared<'a> {
        let mut bays: Vec<&Bay> = cap
            .bays
            .iter()
            .filter(|b| {
                job.bay_capabilities
                    .iter()
                    .all(|c| b.capabilities.contains(c))
            })
            .collect();
        // Best fit first: keep the specially equipped bays and the broadly skilled
        // technicians for the jobs only they can do.
        bays.sort_by_key(|b| (b.capabilities.len(), b.id));
        let mut techs: Vec<&Technician> = cap
            .technicians
            .iter()
            .filter(|t| job.skills.iter().all(|s| t.skills.contains(s)))
            .collect();
        techs.sort_by_key(|t| (t.skills.len(), t.id));
        let live = || cap.busy.iter().filter(|b| Some(b.booking_id) != ignore);
        Prepared {
            cap,
            bays,
            techs,
            bay_busy: Ledger::new(live().map(|b| (b.bay_id, b.start, b.end))),
            tech_busy: Ledger::new(live().map(|b| (b.technician_id, b.start, b.end))),
        }
    }

    fn day(&self, date: NaiveDate) -> Option<Day> {
        let cal = &self.cap.calendar;
        if cal.holidays.contains(&date) {
            return None;
        }
        let open = day_intervals(cal.tz, &cal.hours, date);
        if open.is_empty() {
            return None;
        }
        let open_minutes: i64 = open.iter().map(|(a, b)| (*b - *a).num_minutes()).sum();
        let capacity = (open_minutes * self.cap.bays.len() as i64).max(1) as f64;
        let booked: i64 = self
            .cap
            .busy
            .iter()
            .map(|b| {
                open.iter()
                    .map(|(a, z)| (b.end.min(*z) - b.start.max(*a)).num_minutes().max(0))
                    .sum::<i64>()
            })
            .sum();
        Some(Day {
            open,
            load: booked as f64 / capacity,
        })
    }

    /// Each eligible technician's shifts on `date`, as instants (once per day, not per start).
    fn shifts_on(&self, date: NaiveDate) -> Vec<Vec<Span>> {
        let tz = self.cap.calendar.tz;
        self.techs
            .iter()
            .map(|t| day_intervals(tz, &t.shifts, date))
            .collect()
    }

    fn free_bays(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> impl Iterator<Item = i32> + '_ {
        self.bays
            .iter()
            .filter(move |b| self.bay_busy.free(b.id, start, end))
            .map(|b| b.id)
    }

    fn free_techs<'s>(
        &'s self,
        shifts: &'s [Vec<Span>],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> impl Iterator<Item = i32> + 's {
        self.techs
            .iter()
            .zip(shifts)
            .filter(move |(t, sh)| {
                sh.iter().any(|(a, b)| *a <= start && end <= *b)
                    && self.tech_busy.free(t.id, start, end)
            })
            .map(|(t, _)| t.id)
    }

    /// Free (bay, technician) pairs for `[start, end)`, best fit first.
    fn pairs(
        &self,
        shifts: &[Vec<Span>],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Vec<(i32, i32)> {
        let techs: Vec<i32> = self.free_techs(shifts, start, end).collect();
        self.free_bays(start, end)
            .flat_map(|b| techs.iter().map(move |t| (b, *t)))
            .collect()
    }

    /// The best-fit free pair, without listing the others.
    fn first_pair(
        &self,
        shifts: &[Vec<Span>],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Option<(i32, i32)> {
        let bay = self.free_bays(start, end).next()?;
        Some((bay, self.free_techs(shifts, start, end).next()?))
    }
}

/// Every feasible window in the period, one per start time (with the best-fit bay and
/// technician), ranked best first.
pub fn search(cap: &Capacity, job: &JobNeed, q: &Search) -> Vec<Slot> {
    let p = Prepared::new(cap, job, q.ignore_booking);
    let tz = cap.calendar.tz;
    let step = Duration::minutes(cap.calendar.slot_minutes.max(1));
    let len = Duration::minutes(job.minutes);
    let earliest = q.earliest.max(q.from);
    let mut out = Vec::new();
    if p.bays.is_empty() || p.techs.is_empty() {
        return out;
    }
    for date in local_dates(tz, q.from, q.to) {
        let Some(day) = p.day(date) else { continue };
        let shifts = p.shifts_on(date);
        for (open, close) in &day.open {
            let mut start = *open;
            while start + len <= *close && start + len <= q.to {
                let end = start + len;
                if start >= earliest {
                    if let Some((bay, tech)) = p.first_pair(&shifts, start, end) {
                        let waited = (start - earliest).num_minutes() as f64 / 1440.0;
                        let packs =
                            start == *open || end == *close || p.bay_busy.touches(bay, start, end);
                        let score = waited + LOAD_WEIGHT * day.load
                            - if packs { PACKING_BONUS } else { 0.0 };
                        out.push(Slot {
                            start,
                            end,
                            bay_id: bay,
                            technician_id: tech,
                            score,
                        });
                    }
                }
                start += step;
            }
        }
    }
    out.sort_by(|a, b| a.score.total_cmp(&b.score).then(a.start.cmp(&b.start)));
    out
}

/// Whether the workshop takes a job starting exactly at `start`: open (not a holiday) for
/// the whole job, and `start` on the grid of slots from an opening time.
pub fn open_for(cap: &Capacity, job: &JobNeed, start: DateTime<Utc>) -> bool {
    let cal = &cap.calendar;
    let date = start.with_timezone(&cal.tz).date_naive();
    if cal.holidays.contains(&date) {
        return false;
    }
    let end = start + Duration::minutes(job.minutes);
    let step = cal.slot_minutes.max(1);
    day_intervals(cal.tz, &cal.hours, date)
        .iter()
        .any(|(a, b)| *a <= start && end <= *b && (start - *a).num_minutes() % step == 0)
}

/// Free (bay, technician) pairs for a job starting exactly at `start`, best fit first; empty
/// when the workshop is not open for it (`open_for`) or nothing is free.
pub fn pairs_at(
    cap: &Capacity,
    job: &JobNeed,
    start: DateTime<Utc>,
    ignore: Option<i64>,
) -> Vec<(i32, i32)> {
    if !open_for(cap, job, start) {
        return Vec::new();
    }
    let p = Prepared::new(cap, job, ignore);
    let date = start.with_timezone(&cap.calendar.tz).date_naive();
    p.pairs(
        &p.shifts_on(date),
        start,
        start + Duration::minutes(job.minutes),
    )
}

/// The best `n` windows, spread over days: first the best window of each day, then the
/// rest, so an owner is offered a choice of days rather than one crowded morning.
pub fn spread(ranked: &[Slot], tz: Tz, n: usize) -> Vec<Slot> {
    let mut days = BTreeSet::new();
    let mut chosen: Vec<Slot> = Vec::new();
    for w in ranked {
        if chosen.len() == n {
            break;
        }
        if days.insert(w.start.with_timezone(&tz).date_naive()) {
            chosen.push(w.clone());
        }
    }
    for w in ranked {
        if chosen.len() == n {
            break;
        }
        if !chosen.iter().any(|c| c.start == w.start) {
            chosen.push(w.clone());
        }
    }
    chosen.sort_by(|a, b| a.score.total_cmp(&b.score).then(a.start.cmp(&b.start)));
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::parse_week;
    use std::collections::BTreeMap;

    fn week(spec: &[(&str, &str)]) -> WeekPlan {
        let mut raw: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (d, r) in spec {
            raw.entry(d.to_string()).or_default().push(r.to_string());
        }
        parse_week("t", &raw).unwrap()
    }

    const WEEKDAYS_8_TO_17: &[(&str, &str)] = &[
        ("mon", "08:00-17:00"),
        ("tue", "08:00-17:00"),
        ("wed", "08:00-17:00"),
        ("thu", "08:00-17:00"),
        ("fri", "08:00-17:00"),
    ];

    fn cap(tz: &str, hours: &[(&str, &str)], bays: usize, techs: usize) -> Capacity {
        Capacity {
            workshop_id: 1,
            calendar: Calendar {
                tz: tz.parse().unwrap(),
                slot_minutes: 60,
                hours: week(hours),
                holidays: BTreeSet::new(),
            },
            bays: (0..bays)
                .map(|i| Bay {
                    id: i as i32 + 1,
                    code: format!("B{i}"),
                    capabilities: vec!["lift".into()],
                })
                .collect(),
            technicians: (0..techs)
                .map(|i| Technician {
                    id: i as i32 + 100,
                    code: format!("T{i}"),
                    skills: vec!["brakes".into()],
                    shifts: week(hours),
                })
                .collect(),
            busy: Vec::new(),
        }
    }

    fn job(minutes: i64) -> JobNeed {
        JobNeed {
            minutes,
            skills: vec!["brakes".into()],
            bay_capabilities: vec!["lift".into()],
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn q(from: &str, to: &str) -> Search {
        Search {
            from: t(from),
            to: t(to),
            earliest: t(from),
            ignore_booking: None,
        }
    }

    fn starts(w: &[Slot]) -> Vec<DateTime<Utc>> {
        let mut s: Vec<_> = w.iter().map(|w| w.start).collect();
        s.sort();
        s
    }

    #[test]
    fn windows_lie_inside_opening_hours_in_local_time() {
        // Monday 2026-11-23 in Paris (UTC+1): open 07:00Z..16:00Z; a 2 h job on a 1 h grid.
        let c = cap("Europe/Paris", WEEKDAYS_8_TO_17, 1, 1);
        let w = search(
            &c,
            &job(120),
            &q("2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z"),
        );
        let s = starts(&w);
        assert_eq!(s.len(), 8, "08:00 .. 15:00 local");
        assert_eq!(s[0], t("2026-11-23T07:00:00Z"));
        assert_eq!(*s.last().unwrap(), t("2026-11-23T14:00:00Z"));
        assert!(w.iter().all(|w| w.end - w.start == Duration::minutes(120)));
    }

    #[test]
    fn dst_days_have_23_and_25_hours() {
        // Open around the clock's change: 00:00-06:00 local in Berlin.
        let hours = [("sun", "00:00-06:00")];
        let c = cap("Europe/Berlin", &hours, 1, 1);
        let count = |from: &str, to: &str| search(&c, &job(60), &q(from, to)).len();
        // An ordinary Sunday: six one-hour windows.
        assert_eq!(count("2026-03-21T12:00:00Z", "2026-03-22T12:00:00Z"), 6);
        // Spring forward (2026-03-29): 02:00 does not exist, the night has 5 hours.
        assert_eq!(count("2026-03-28T12:00:00Z", "2026-03-29T12:00:00Z"), 5);
        // Fall back (2026-10-25): 02:00-03:00 happens twice, the night has 7 hours.
        assert_eq!(count("2026-10-24T12:00:00Z", "2026-10-25T12:00:00Z"), 7);
        // Local 08:00 is 07:00Z in winter and 06:00Z in summer.
        let c = cap("Europe/Berlin", WEEKDAYS_8_TO_17, 1, 1);
        let w = search(
            &c,
            &job(60),
            &q("2026-03-27T00:00:00Z", "2026-03-31T00:00:00Z"),
        );
        let s = starts(&w);
        assert_eq!(s[0], t("2026-03-27T07:00:00Z"), "Friday, winter time");
        assert!(
            s.contains(&t("2026-03-30T06:00:00Z")),
            "Monday, summer time"
        );
        assert!(
            !s.contains(&t("2026-03-30T15:00:00Z")),
            "17:00 CEST is closing"
        );
    }

    #[test]
    fn holidays_and_closed_days_have_no_windows() {
        let mut c = cap("Europe/Paris", WEEKDAYS_8_TO_17, 1, 1);
        c.calendar
            .holidays
            .insert(NaiveDate::from_ymd_opt(2026, 12, 25).unwrap());
        // Thu 24 .. Mon 28 December: Friday is a holiday, the weekend is closed.
        let w = search(
            &c,
            &job(60),
            &q("2026-12-24T00:00:00Z", "2026-12-29T00:00:00Z"),
        );
        let days: BTreeSet<NaiveDate> = w
            .iter()
            .map(|w| w.start.with_timezone(&c.calendar.tz).date_naive())
            .collect();
        let d = |day| NaiveDate::from_ymd_opt(2026, 12, day).unwrap();
        assert_eq!(days, [d(24), d(28)].into_iter().collect());
        assert!(pairs_at(&c, &job(60), t("2026-12-25T09:00:00Z"), None).is_empty());
    }

    #[test]
    fn a_window_needs_a_capable_bay_and_a_skilled_technician_on_shift() {
        let mut c = cap("UTC", WEEKDAYS_8_TO_17, 2, 2);
        c.bays[0].capabilities.clear();
        c.technicians[0].skills = vec!["tyres".into()];
        // The skilled technician works mornings only.
        c.technicians[1].shifts = week(&[("mon", "08:00-12:00")]);
        let w = search(
            &c,
            &job(120),
            &q("2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z"),
        );
        assert_eq!(
            starts(&w),
            vec![
                t("2026-11-23T08:00:00Z"),
                t("2026-11-23T09:00:00Z"),
                t("2026-11-23T10:00:00Z")
            ]
        );
        assert!(w.iter().all(|w| w.bay_id == 2 && w.technician_id == 101));
        let mut none = c.clone();
        none.technicians.remove(1);
        assert!(search(
            &none,
            &job(60),
            &q("2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z")
        )
        .is_empty());
    }

    #[test]
    fn bookings_block_their_bay_and_technician_and_earliest_is_respected() {
        let mut c = cap("UTC", WEEKDAYS_8_TO_17, 2, 1);
        c.busy.push(Busy {
            booking_id: 7,
            bay_id: 1,
            technician_id: 100,
            start: t("2026-11-23T10:00:00Z"),
            end: t("2026-11-23T12:00:00Z"),
        });
        let mut search_q = q("2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z");
        let w = search(&c, &job(60), &search_q);
        let s = starts(&w);
        // One technician: 10:00 and 11:00 are gone, though a bay is free.
        assert!(!s.contains(&t("2026-11-23T10:00:00Z")) && !s.contains(&t("2026-11-23T11:00:00Z")));
        assert!(s.contains(&t("2026-11-23T09:00:00Z")) && s.contains(&t("2026-11-23T12:00:00Z")));
        assert_eq!(s.len(), 7);
        // Rescheduling that booking: its own time is free again.
        search_q.ignore_booking = Some(7);
        assert_eq!(search(&c, &job(60), &search_q).len(), 9);
        // Parts arrive at 14:00.
        search_q.earliest = t("2026-11-23T14:00:00Z");
        assert_eq!(
            starts(&search(&c, &job(60), &search_q))[0],
            t("2026-11-23T14:00:00Z")
        );
        assert!(pairs_at(&c, &job(60), t("2026-11-23T10:00:00Z"), None).is_empty());
        assert_eq!(
            pairs_at(&c, &job(60), t("2026-11-23T10:00:00Z"), Some(7)).len(),
            2
        );
        assert!(
            pairs_at(&c, &job(60), t("2026-11-23T10:30:00Z"), Some(7)).is_empty(),
            "off grid"
        );
    }

    #[test]
    fn ranking_prefers_soon_and_spreads_load_across_the_week() {
        let mut c = cap("UTC", WEEKDAYS_8_TO_17, 2, 2);
        // Monday is nearly full: 15 of 18 bay-hours booked.
        c.busy.push(Busy {
            booking_id: 1,
            bay_id: 1,
            technician_id: 100,
            start: t("2026-11-23T08:00:00Z"),
            end: t("2026-11-23T16:00:00Z"),
        });
        c.busy.push(Busy {
            booking_id: 2,
            bay_id: 2,
            technician_id: 101,
            start: t("2026-11-23T08:00:00Z"),
            end: t("2026-11-23T15:00:00Z"),
        });
        let w = search(
            &c,
            &job(60),
            &q("2026-11-23T00:00:00Z", "2026-11-28T00:00:00Z"),
        );
        // Every window is scored; best first.
        assert!(w.windows(2).all(|p| p[0].score <= p[1].score));
        // The best Monday window packs against the booking's end or a day edge.
        let monday_best = w
            .iter()
            .find(|w| w.start < t("2026-11-24T00:00:00Z"))
            .unwrap();
        let tuesday_best = w
            .iter()
            .find(|w| w.start >= t("2026-11-24T00:00:00Z"))
            .unwrap();
        // Monday's load costs more than a day's wait: Tuesday wins.
        assert!(tuesday_best.score < monday_best.score);
        let picked = spread(&w, c.calendar.tz, 4);
        assert_eq!(picked.len(), 4);
        let days: BTreeSet<_> = picked.iter().map(|w| w.start.date_naive()).collect();
        assert_eq!(days.len(), 4, "four windows on four days");
    }
}
