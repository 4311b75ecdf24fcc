//! Demand preview for capacity planners: per workshop, local day and skill, the hours already
//! booked, the hours open offers will probably bring (weighted by how often offers of that
//! component are accepted), and the hours at-risk vehicles without an offer will probably bring
//! (weighted by their risk and its horizon), against the hours rostered technicians with that
//! skill can work. Pure computation: the store gathers the inputs, for now or as of a past
//! date (the backtest), and this decides nothing else.

use super::slots::{day_intervals, Calendar, Span, Technician};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// A booked job: it holds a technician with `skill` for `[start, end)`.
#[derive(Debug, Clone)]
pub struct BookedJob {
    pub vin: String,
    pub job: String,
    pub skill: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// An offer still waiting for the owner: it may become a booking in one of its windows.
#[derive(Debug, Clone)]
pub struct OpenOffer {
    pub vin: String,
    pub component: String,
    pub job: String,
    pub skill: String,
    pub minutes: f64,
    pub windows: Vec<DateTime<Utc>>,
}

/// A vehicle at risk whose home is this workshop and that has no open offer for the component.
#[derive(Debug, Clone)]
pub struct AtRisk {
    pub vin: String,
    pub job: String,
    pub skill: String,
    pub minutes: f64,
    /// Probability of a failure or repair within 7, 30 and 90 days of `as_of`.
    pub p7: f64,
    pub p30: f64,
    pub p90: f64,
}

#[derive(Debug, Clone)]
pub struct PreviewInput {
    pub calendar: Calendar,
    pub technicians: Vec<Technician>,
    pub booked: Vec<BookedJob>,
    pub offers: Vec<OpenOffer>,
    pub at_risk: Vec<AtRisk>,
    /// Share of decided offers that were booked, per component (smoothed; see `acceptance`).
    pub acceptance: HashMap<String, f64>,
    /// When the risks were scored: day 0 of their horizons.
    pub as_of: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DemandKind {
    Booked,
    Offer,
    Risk,
}

/// One contribution to a cell, for "what drives this day".
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Driver {
    pub kind: DemandKind,
    pub vin: String,
    pub job: String,
    pub hours: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Cell {
    pub day: NaiveDate,
    pub skill: String,
    pub capacity_hours: f64,
    pub booked_hours: f64,
    pub offer_hours: f64,
    pub risk_hours: f64,
    pub demand_hours: f64,
    /// demand / capacity; `None` when nobody with the skill works that day.
    pub utilisation: Option<f64>,
    /// Demand above capacity.
    pub over: bool,
    /// The largest contributions, most hours first (at most `MAX_DRIVERS`).
    pub drivers: Vec<Driver>,
}

pub const MAX_DRIVERS: usize = 5;
/// Prior for the acceptance rate of a component with little history: 50%, worth 4 offers.
pub const PRIOR_RATE: f64 = 0.5;
pub const PRIOR_WEIGHT: f64 = 4.0;

/// Smoothed acceptance rate from `booked` of `decided` offers.
pub fn acceptance(booked: u64, decided: u64) -> f64 {
    (booked as f64 + PRIOR_RATE * PRIOR_WEIGHT) / (decided as f64 + PRIOR_WEIGHT)
}

/// Share of a risk's probability mass that falls on day `k` after it was scored: the 7-day
/// probability spread over days 0..7, what the 30-day adds over 7..30, the 90-day over 30..90.
pub fn risk_mass(r: &AtRisk, k: i64) -> f64 {
    let (p7, p30, p90) = (r.p7, r.p30.max(r.p7), r.p90.max(r.p30).max(r.p7));
    match k {
        0..7 => p7 / 7.0,
        7..30 => (p30 - p7) / 23.0,
        30..90 => (p90 - p30) / 60.0,
        _ => 0.0,
    }
}

/// Hours of `intervals` inside `open`.
fn overlap_hours(intervals: &[Span], open: &[Span]) -> f64 {
    let mut minutes = 0;
    for (a, b) in intervals {
        for (x, y) in open {
            minutes += ((*b).min(*y) - (*a).max(*x)).num_minutes().max(0);
        }
    }
    minutes as f64 / 60.0
}

/// The preview for `days` local days from `from`, one cell per day and skill that has either
/// capacity or demand, days in order and skills by name.
pub fn preview<'a>(input: &'a PreviewInput, from: NaiveDate, days: u32) -> Vec<Cell> {
    let cal = &input.calendar;
    let dates: Vec<NaiveDate> = from.iter_days().take(days as usize).collect();
    let open: Vec<Vec<Span>> = dates
        .iter()
        .map(|d| {
            if cal.holidays.contains(d) {
                Vec::new()
            } else {
                day_intervals(cal.tz, &cal.hours, *d)
            }
        })
        .collect();
    let index: HashMap<NaiveDate, usize> = dates.iter().enumerate().map(|(i, d)| (*d, i)).collect();
    let local_day = |t: DateTime<Utc>| t.with_timezone(&cal.tz).date_naive();

    #[derive(Default)]
    struct Acc<'a> {
        capacity: f64,
        booked: f64,
        offer: f64,
        risk: f64,
        /// (hours, kind, vin, job), borrowed from the input: only the top few become `Driver`s.
        drivers: Vec<(f64, DemandKind, &'a str, &'a str)>,
    }
    let mut cells: BTreeMap<(usize, String), Acc> = BTreeMap::new();

    for t in &input.technicians {
        for (i, d) in dates.iter().enumerate() {
            let hours = overlap_hours(&day_intervals(cal.tz, &t.shifts, *d), &open[i]);
            if hours > 0.0 {
                for skill in &t.skills {
                    cells.entry((i, skill.clone())).or_default().capacity += hours;
                }
            }
        }
    }
    // Work that is only likely (not booked) lands on the next day someone with the skill works
    // (capacity is already counted, per day and skill, above).
    let mut staffed: HashMap<&str, Vec<bool>> = HashMap::new();
    for r in &input.at_risk {
        staffed.entry(r.skill.as_str()).or_insert_with(|| {
            (0..dates.len())
                .map(|i| {
                    cells
                        .get(&(i, r.skill.clone()))
                        .is_some_and(|acc| acc.capacity > 0.0)
                })
                .collect()
        });
    }
    let mut add =
        |i: usize, skill: &str, kind: DemandKind, vin: &'a str, job: &'a str, hours: f64| {
            if hours <= 0.0 {
                return;
            }
            let acc = cells.entry((i, skill.to_owned())).or_default();
            match kind {
                DemandKind::Booked => acc.booked += hours,
                DemandKind::Offer => acc.offer += hours,
                DemandKind::Risk => acc.risk += hours,
            }
            acc.drivers.push((hours, kind, vin, job));
        };
    for b in &input.booked {
        if let Some(&i) = index.get(&local_day(b.start)) {
            let hours = (b.end - b.start).num_minutes() as f64 / 60.0;
            add(i, &b.skill, DemandKind::Booked, &b.vin, &b.job, hours);
        }
    }
    for o in &input.offers {
        if o.windows.is_empty() {
            continue;
        }
        let rate = input
            .acceptance
            .get(&o.component)
            .copied()
            .unwrap_or(PRIOR_RATE);
        // The owner picks one window; each is equally likely as far as we know.
        let share = o.minutes / 60.0 * rate / o.windows.len() as f64;
        for w in &o.windows {
            if let Some(&i) = index.get(&local_day(*w)) {
                add(i, &o.skill, DemandKind::Offer, &o.vin, &o.job, share);
            }
        }
    }
    let day0 = local_day(input.as_of);
    for r in &input.at_risk {
        let hours = r.minutes / 60.0;
        let worked = &staffed[r.skill.as_str()];
        let mut per_day: BTreeMap<usize, f64> = BTreeMap::new();
        for (i, d) in dates.iter().enumerate() {
            let k = (*d - day0).num_days();
            let mass = risk_mass(r, k);
            if mass > 0.0 {
                if let Some(j) = (i..dates.len()).find(|j| worked[*j]) {
                    *per_day.entry(j).or_default() += mass * hours;
                }
            }
        }
        for (i, h) in per_day {
            add(i, &r.skill, DemandKind::Risk, &r.vin, &r.job, h);
        }
    }

    cells
        .into_iter()
        .map(|((i, skill), mut acc)| {
            let demand = acc.booked + acc.offer + acc.risk;
            acc.drivers.sort_by(|a, b| {
                b.0.total_cmp(&a.0)
                    .then_with(|| a.1.cmp(&b.1))
                    .then_with(|| a.2.cmp(b.2))
            });
            acc.drivers.truncate(MAX_DRIVERS);
            Cell {
                day: dates[i],
                skill,
                capacity_hours: round2(acc.capacity),
                booked_hours: round2(acc.booked),
                offer_hours: round2(acc.offer),
                risk_hours: round2(acc.risk),
                demand_hours: round2(demand),
                utilisation: (acc.capacity > 0.0).then(|| round2(demand / acc.capacity)),
                over: demand > acc.capacity + 1e-9,
                drivers: acc
                    .drivers
                    .into_iter()
                    .map(|(hours, kind, vin, job)| Driver {
                        kind,
                        vin: vin.to_owned(),
                        job: job.to_owned(),
                        hours: round2(hours),
                    })
                    .collect(),
            }
        })
        .collect()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The whole period's expected demand in hours per skill, unrounded (for the backtest).
pub fn demand_by_skill(input: &PreviewInput, from: NaiveDate, days: u32) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for c in preview(input, from, days) {
        *out.entry(c.skill).or_default() += c.demand_hours;
    }
    out
}

/// `from` plus `days`, as instants in the workshop's zone (for the store's range queries).
pub fn period(tz: chrono_tz::Tz, from: NaiveDate, days: u32) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = super::slots::local_instant(tz, from, chrono::NaiveTime::MIN)
        .unwrap_or_else(|| from.and_time(chrono::NaiveTime::MIN).and_utc());
    let end_date = from + Duration::days(i64::from(days));
    let end = super::slots::local_instant(tz, end_date, chrono::NaiveTime::MIN)
        .unwrap_or_else(|| end_date.and_time(chrono::NaiveTime::MIN).and_utc());
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, NaiveTime, TimeZone};
    use chrono_tz::Europe::Berlin;

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    /// Open Mon–Fri 08:00–17:00; Sat 08:00–12:00.
    fn calendar() -> Calendar {
        let mut hours: super::super::WeekPlan = Default::default();
        for d in hours.iter_mut().take(5) {
            d.push((t(8, 0), t(17, 0)));
        }
        hours[5].push((t(8, 0), t(12, 0)));
        Calendar {
            tz: Berlin,
            slot_minutes: 30,
            hours,
            holidays: [NaiveDate::from_ymd_opt(2026, 12, 25).unwrap()]
                .into_iter()
                .collect(),
        }
    }

    fn tech(id: i32, skills: &[&str], from: (u32, u32), to: (u32, u32)) -> Technician {
        let mut shifts: super::super::WeekPlan = Default::default();
        for d in shifts.iter_mut().take(6) {
            d.push((t(from.0, from.1), t(to.0, to.1)));
        }
        Technician {
            id,
            code: format!("T{id}"),
            skills: skills.iter().map(|s| s.to_string()).collect(),
            shifts,
        }
    }

    fn local(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
        Berlin
            .with_ymd_and_hms(y, mo, d, h, 0, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn input() -> PreviewInput {
        PreviewInput {
            calendar: calendar(),
            // Two brake technicians, one also on tyres; the shift runs past closing time.
            technicians: vec![
                tech(1, &["brakes"], (7, 0), (16, 0)),
                tech(2, &["brakes", "tyres"], (9, 0), (18, 0)),
            ],
            booked: vec![],
            offers: vec![],
            at_risk: vec![],
            acceptance: HashMap::new(),
            as_of: local(2026, 12, 21, 6), // a Monday
        }
    }

    fn cell<'a>(cells: &'a [Cell], day: u32, skill: &str) -> &'a Cell {
        cells
            .iter()
            .find(|c| c.day == NaiveDate::from_ymd_opt(2026, 12, day).unwrap() && c.skill == skill)
            .unwrap_or_else(|| panic!("no cell for {day} {skill}"))
    }

    #[test]
    fn capacity_is_shift_time_inside_opening_hours_and_none_on_holidays_or_sundays() {
        let cells = preview(&input(), NaiveDate::from_ymd_opt(2026, 12, 21).unwrap(), 7);
        // Mon: tech 1 08–16 (8 h), tech 2 09–17 (8 h).
        assert_eq!(cell(&cells, 21, "brakes").capacity_hours, 16.0);
        assert_eq!(cell(&cells, 21, "tyres").capacity_hours, 8.0);
        // Sat: open 08–12: tech 1 4 h, tech 2 3 h.
        assert_eq!(cell(&cells, 26, "brakes").capacity_hours, 7.0);
        // Christmas Day (a Friday, holiday) and Sunday: no cells at all without demand.
        assert!(cells.iter().all(|c| c.day.day() != 25 && c.day.day() != 27));
    }

    #[test]
    fn bookings_offers_and_risk_add_up_with_their_weights() {
        let mut input = input();
        input.booked.push(BookedJob {
            vin: "B".into(),
            job: "brake_pads_front".into(),
            skill: "brakes".into(),
            start: local(2026, 12, 21, 9),
            end: local(2026, 12, 21, 11),
        });
        input.acceptance.insert("brakes".into(), 0.5);
        input.offers.push(OpenOffer {
            vin: "O".into(),
            component: "brakes".into(),
            job: "brake_pads_front".into(),
            skill: "brakes".into(),
            minutes: 120.0,
            windows: vec![local(2026, 12, 21, 13), local(2026, 12, 22, 8)],
        });
        // p7 = 0.7: 0.1 a day over the first week.
        input.at_risk.push(AtRisk {
            vin: "R".into(),
            job: "tyre_replace".into(),
            skill: "tyres".into(),
            minutes: 60.0,
            p7: 0.7,
            p30: 0.7,
            p90: 0.7,
        });
        let cells = preview(&input, NaiveDate::from_ymd_opt(2026, 12, 21).unwrap(), 7);
        let mon = cell(&cells, 21, "brakes");
        assert_eq!(mon.booked_hours, 2.0);
        assert_eq!(mon.offer_hours, 0.5); // 2 h × 0.5 accepted ÷ 2 windows
        assert_eq!(mon.demand_hours, 2.5);
        assert_eq!(mon.drivers[0].kind, DemandKind::Booked);
        assert_eq!(cell(&cells, 22, "brakes").offer_hours, 0.5);
        // Risk: 0.1 h a day; Thursday 24th is open, Friday 25th a holiday so its share moves
        // to Saturday (the tyre technician works Saturday mornings), Sunday's share falls
        // beyond the 7-day preview's last staffed day.
        assert_eq!(cell(&cells, 21, "tyres").risk_hours, 0.1);
        assert_eq!(cell(&cells, 26, "tyres").risk_hours, 0.2);
        let total: f64 = cells.iter().map(|c| c.risk_hours).sum();
        assert!((total - 0.6).abs() < 1e-9, "{total}");
    }

    #[test]
    fn likely_work_lands_only_on_days_someone_with_the_skill_works() {
        let mut input = input();
        // The only HV technician works Mondays and Tuesdays.
        let mut shifts: super::super::WeekPlan = Default::default();
        shifts[0].push((t(8, 0), t(17, 0)));
        shifts[1].push((t(8, 0), t(17, 0)));
        input.technicians.push(Technician {
            id: 3,
            code: "T3".into(),
            skills: vec!["hv_battery".into()],
            shifts,
        });
        input.at_risk.push(AtRisk {
            vin: "E".into(),
            job: "hv_check".into(),
            skill: "hv_battery".into(),
            minutes: 60.0,
            p7: 0.7,
            p30: 0.7,
            p90: 0.7,
        });
        let cells = preview(&input, NaiveDate::from_ymd_opt(2026, 12, 21).unwrap(), 14);
        let hv: Vec<&Cell> = cells.iter().filter(|c| c.skill == "hv_battery").collect();
        assert!(hv
            .iter()
            .all(|c| c.risk_hours == 0.0 || c.capacity_hours > 0.0));
        assert!(hv.iter().all(|c| !c.over));
        // Mon 0.1, Tue 0.1, Wed–Sun (0.5) the next Monday: the whole 0.7 h is placed.
        let total: f64 = hv.iter().map(|c| c.risk_hours).sum();
        assert!((total - 0.7).abs() < 1e-9, "{total}");
        assert_eq!(cell(&cells, 28, "hv_battery").risk_hours, 0.5);
    }

    #[test]
    fn a_day_over_capacity_is_flagged_with_what_drives_it() {
        let mut input = input();
        for i in 0..3 {
            input.booked.push(BookedJob {
                vin: format!("V{i}"),
                job: "tyre_replace".into(),
                skill: "tyres".into(),
                start: local(2026, 12, 22, 8 + i),
                end: local(2026, 12, 22, 11 + i),
            });
        }
        let cells = preview(&input, NaiveDate::from_ymd_opt(2026, 12, 21).unwrap(), 7);
        let tue = cell(&cells, 22, "tyres");
        assert_eq!((tue.demand_hours, tue.capacity_hours), (9.0, 8.0));
        assert!(tue.over);
        assert_eq!(tue.utilisation, Some(1.13));
        assert_eq!(tue.drivers.len(), 3);
        assert!(!cell(&cells, 22, "brakes").over);
    }

    #[test]
    fn risk_mass_follows_the_horizons_and_never_goes_negative() {
        let r = AtRisk {
            vin: String::new(),
            job: String::new(),
            skill: String::new(),
            minutes: 60.0,
            p7: 0.07,
            p30: 0.30,
            p90: 0.90,
        };
        let total: f64 = (0..120).map(|k| risk_mass(&r, k)).sum();
        assert!((total - 0.90).abs() < 1e-9);
        // Inconsistent horizons (p30 < p7) are read as monotone, not as negative mass.
        let odd = AtRisk { p30: 0.01, ..r };
        assert!((0..120).all(|k| risk_mass(&odd, k) >= 0.0));
    }

    #[test]
    fn acceptance_is_smoothed_towards_the_prior() {
        assert_eq!(acceptance(0, 0), 0.5);
        assert!((acceptance(9, 10) - 11.0 / 14.0).abs() < 1e-12);
    }
}
