//! Slot search latency for a large workshop: 20 bays, 40 technicians, 4 weeks, with a third
//! of the bay time already booked, for one job and for a visit with two. Run:
//! `cargo bench --bench slots`.

use aftercare::capacity::parse_week;
use aftercare::capacity::slots::{
    search, Bay, Busy, Calendar, Capacity, JobNeed, Search, Technician,
};
use chrono::{DateTime, Duration, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use std::collections::{BTreeMap, BTreeSet};

fn week(ranges: &[&str]) -> aftercare::capacity::WeekPlan {
    let raw: BTreeMap<String, Vec<String>> = ["mon", "tue", "wed", "thu", "fri"]
        .iter()
        .map(|d| {
            (
                d.to_string(),
                ranges.iter().map(|r| r.to_string()).collect(),
            )
        })
        .collect();
    parse_week("bench", &raw).expect("valid week")
}

fn workshop(from: DateTime<Utc>) -> Capacity {
    let bays: Vec<Bay> = (0..20)
        .map(|i| Bay {
            id: i,
            code: format!("B{i}"),
            capabilities: if i % 5 == 0 {
                vec!["lift".into(), "high_voltage".into()]
            } else {
                vec!["lift".into()]
            },
        })
        .collect();
    let technicians: Vec<Technician> = (0..40)
        .map(|i| Technician {
            id: 100 + i,
            code: format!("T{i}"),
            skills: if i % 4 == 0 {
                vec!["brakes".into(), "hv_battery".into()]
            } else {
                vec!["brakes".into()]
            },
            shifts: if i % 2 == 0 {
                week(&["07:00-15:30"])
            } else {
                week(&["10:00-18:30"])
            },
        })
        .collect();
    // A third of the bay time booked: every bay busy two hours of each morning and one of
    // each afternoon, with its own technician.
    let mut busy = Vec::new();
    let mut id = 0;
    for day in 0..28 {
        for bay in 0..20 {
            for (h, len) in [(8 + bay as i64 % 3, 2), (14, 1)] {
                id += 1;
                let start = from + Duration::days(day) + Duration::hours(h);
                busy.push(Busy {
                    booking_id: id,
                    bay_id: bay,
                    technician_id: 100 + bay + if h >= 14 { 20 } else { 0 },
                    start,
                    end: start + Duration::hours(len),
                });
            }
        }
    }
    Capacity {
        workshop_id: 1,
        calendar: Calendar {
            tz: chrono_tz::Europe::Paris,
            slot_minutes: 30,
            hours: week(&["07:00-18:30"]),
            holidays: BTreeSet::new(),
        },
        bays,
        technicians,
        busy,
    }
}

fn slot_search(c: &mut Criterion) {
    let from = DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z")
        .expect("date")
        .with_timezone(&Utc);
    let cap = workshop(from);
    let q = Search {
        from,
        to: from + Duration::days(28),
        earliest: from,
        ignore_booking: None,
    };
    let mut group = c.benchmark_group("slot_search_20_bays_40_technicians_4_weeks");
    let brakes = JobNeed {
        minutes: 90,
        skills: vec!["brakes".into()],
        bay_capabilities: vec!["lift".into()],
    };
    let hv = JobNeed {
        minutes: 120,
        skills: vec!["hv_battery".into()],
        bay_capabilities: vec!["high_voltage".into()],
    };
    // One visit with both jobs: a bay with both capabilities, a technician with both skills.
    let visit = JobNeed {
        minutes: 210,
        skills: vec!["brakes".into(), "hv_battery".into()],
        bay_capabilities: vec!["high_voltage".into(), "lift".into()],
    };
    // Baseline: the same workshop with nothing booked.
    let empty = Capacity {
        busy: Vec::new(),
        ..cap.clone()
    };
    for (name, cap, job) in [
        ("brake_pads_90min_empty_baseline", &empty, &brakes),
        ("brake_pads_90min_third_booked", &cap, &brakes),
        ("hv_check_120min_third_booked", &cap, &hv),
        ("visit_brakes_and_hv_210min_third_booked", &cap, &visit),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let w = search(cap, job, &q);
                assert!(!w.is_empty());
                w
            })
        });
    }
    group.finish();
}

criterion_group!(benches, slot_search);
criterion_main!(benches);
