//! A plan for one visit at one workshop: its capacity over a period, the jobs of the visit
//! (done one after the other in one bay by one technician), the parts they need with the
//! workshop's stock, and the windows that can take them, typed as offers store them and the
//! API shows them. `store::capacity::plan` loads one with one query; `Plan::windows` is the
//! one place windows are picked (search, then the best or a spread over days).

use super::slots::{search, spread, Capacity, JobNeed, Search, Slot};
use super::JobSpec;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkshopRef {
    pub id: i32,
    pub code: String,
    pub name: String,
    pub time_zone: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

/// A part a job needs at a workshop, with what the workshop has of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PartNeed {
    pub sku: String,
    pub name: String,
    pub quantity: i32,
    pub price_cents: i64,
    pub on_hand: i32,
    /// Held by live bookings at this workshop.
    pub reserved: i64,
    pub lead_time_days: i32,
}

/// A bookable window: a bay and a technician free for the job's duration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Window {
    pub workshop: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// `start` in the workshop's time zone (RFC 3339 with its offset).
    pub local_start: String,
    pub bay: String,
    pub technician: String,
    /// Lower is better: days waited + 2 x the day's load - 0.25 when it packs against a
    /// booking or the day's edge.
    pub score: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanMissing {
    #[error("no workshop {0}")]
    Workshop(String),
    #[error("no job {0}")]
    Job(String),
}

/// One job of a visit with its share of the visit's labour and price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCost {
    pub code: String,
    /// Its labour in this visit: the catalogue's less the set-up another job of the visit
    /// does.
    pub minutes: i64,
    /// The set-up minutes it leaves to another job of the visit.
    pub shared_setup_minutes: i64,
    /// Its labour price less the price of those minutes.
    pub labour_cents: i64,
    pub parts_cents: i64,
}

/// Each job's share of a visit (same order). A set-up step several jobs need is done once,
/// by the job that spends longest on it (the earliest of equals); each other job saves its
/// minutes for that step, and their share of its labour price.
pub fn job_costs(jobs: &[JobSpec], part_price: impl Fn(&str) -> i64) -> Vec<JobCost> {
    let doer = |step: &str| {
        let mut best: Option<(usize, i32)> = None;
        for (i, j) in jobs.iter().enumerate() {
            if let Some(s) = j.setup.iter().find(|s| s.step == step) {
                if best.is_none_or(|(_, m)| s.minutes > m) {
                    best = Some((i, s.minutes));
                }
            }
        }
        best.map(|(i, _)| i)
    };
    jobs.iter()
        .enumerate()
        .map(|(i, j)| {
            let saved: i64 = j
                .setup
                .iter()
                .filter(|s| doer(&s.step) != Some(i))
                .map(|s| i64::from(s.minutes))
                .sum();
            let labour = i64::from(j.labour_minutes);
            // Whole cents, rounded; the saving never exceeds the price (saved <= labour).
            let saving = (j.labour_price_cents * saved + labour / 2) / labour.max(1);
            JobCost {
                code: j.code.clone(),
                minutes: labour - saved,
                shared_setup_minutes: saved,
                labour_cents: j.labour_price_cents - saving,
                parts_cents: j
                    .parts
                    .iter()
                    .map(|p| part_price(&p.sku) * i64::from(p.quantity))
                    .sum(),
            }
        })
        .collect()
}

/// What the slot search needs to plan one visit at one workshop for one period.
#[derive(Debug, Clone)]
pub struct Plan {
    pub workshop: WorkshopRef,
    pub capacity: Capacity,
    /// The visit's jobs, the leading one first.
    pub jobs: Vec<JobSpec>,
    /// What the jobs need together, one line per part.
    pub parts: Vec<PartNeed>,
}

/// Which of the feasible windows to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choose {
    /// The best `n`.
    Best(usize),
    /// The best `n` spread over days (an owner gets a choice of days).
    SpreadOverDays(usize),
}

/// Windows picked from a search.
#[derive(Debug, Clone)]
pub struct Picked {
    /// How many windows are feasible in the period.
    pub feasible: usize,
    /// No window starts before this: now, or when the parts can be there.
    pub earliest: DateTime<Utc>,
    pub windows: Vec<Window>,
}

impl Plan {
    /// Each job's share of the visit's labour and price.
    pub fn job_costs(&self) -> Vec<JobCost> {
        job_costs(&self.jobs, |sku| {
            self.parts
                .iter()
                .find(|p| p.sku == sku)
                .map_or(0, |p| p.price_cents)
        })
    }

    /// The visit's labour in minutes (shared set-up counted once).
    pub fn minutes(&self) -> i64 {
        self.job_costs().iter().map(|c| c.minutes).sum()
    }

    /// One bay with every capability and one technician with every skill the jobs need.
    pub fn need(&self) -> JobNeed {
        let mut skills: Vec<String> = self.jobs.iter().map(|j| j.skill.clone()).collect();
        let mut bay_capabilities: Vec<String> = self
            .jobs
            .iter()
            .filter_map(|j| j.bay_capability.clone())
            .collect();
        for list in [&mut skills, &mut bay_capabilities] {
            list.sort();
            list.dedup();
        }
        JobNeed {
            minutes: self.minutes(),
            skills,
            bay_capabilities,
        }
    }

    /// When the parts can be there: now if stock covers them, else after the longest lead time.
    pub fn parts_ready_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let days = self
            .parts
            .iter()
            .filter(|p| i64::from(p.on_hand) - p.reserved < i64::from(p.quantity))
            .map(|p| p.lead_time_days)
            .max()
            .unwrap_or(0);
        now + Duration::days(i64::from(days))
    }

    /// Labour and parts of every job.
    pub fn estimated_cost_cents(&self) -> i64 {
        self.job_costs()
            .iter()
            .map(|c| c.labour_cents + c.parts_cents)
            .sum()
    }

    /// A slot as offers and the API show it: with workshop, bay and technician codes.
    pub fn window(&self, s: &Slot) -> Window {
        let code = |found: Option<&String>| found.cloned().unwrap_or_default();
        Window {
            workshop: self.workshop.code.clone(),
            start: s.start,
            end: s.end,
            local_start: s
                .start
                .with_timezone(&self.capacity.calendar.tz)
                .to_rfc3339(),
            bay: code(
                self.capacity
                    .bays
                    .iter()
                    .find(|b| b.id == s.bay_id)
                    .map(|b| &b.code),
            ),
            technician: code(
                self.capacity
                    .technicians
                    .iter()
                    .find(|t| t.id == s.technician_id)
                    .map(|t| &t.code),
            ),
            score: (s.score * 1000.0).round() / 1000.0,
        }
    }

    /// The windows for the visit in `[from, to)`, none before `now` or before the parts can
    /// be there; `ignore` is a booking being moved (its own time is free).
    pub fn windows(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
        ignore: Option<i64>,
        choose: Choose,
    ) -> Picked {
        let earliest = self.parts_ready_at(now).max(now);
        let ranked = search(
            &self.capacity,
            &self.need(),
            &Search {
                from,
                to,
                earliest,
                ignore_booking: ignore,
            },
        );
        let chosen = match choose {
            Choose::Best(n) => ranked.iter().take(n).cloned().collect(),
            Choose::SpreadOverDays(n) => spread(&ranked, self.capacity.calendar.tz, n),
        };
        Picked {
            feasible: ranked.len(),
            earliest,
            windows: chosen.iter().map(|s| self.window(s)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::{JobPart, SetupStep};
    use crate::component::Component;

    fn job(
        code: &str,
        minutes: i32,
        cents: i64,
        setup: &[(&str, i32)],
        parts: &[(&str, i32)],
    ) -> JobSpec {
        JobSpec {
            code: code.into(),
            component: Component::Brakes,
            name: code.into(),
            labour_minutes: minutes,
            skill: "brakes".into(),
            bay_capability: Some("lift".into()),
            labour_price_cents: cents,
            default: true,
            parts: parts
                .iter()
                .map(|(sku, quantity)| JobPart {
                    sku: (*sku).into(),
                    quantity: *quantity,
                })
                .collect(),
            setup: setup
                .iter()
                .map(|(step, minutes)| SetupStep {
                    step: (*step).into(),
                    minutes: *minutes,
                })
                .collect(),
        }
    }

    fn price(sku: &str) -> i64 {
        match sku {
            "PAD" => 6_900,
            "TYRE" => 9_800,
            _ => 0,
        }
    }

    #[test]
    fn a_set_up_step_jobs_share_is_done_once_by_the_job_that_takes_longest() {
        let pads = job(
            "pads",
            90,
            10_800,
            &[("lift", 10), ("wheels_off", 15)],
            &[("PAD", 1)],
        );
        let tyres = job(
            "tyres",
            60,
            5_400,
            &[("lift", 10), ("wheels_off", 20)],
            &[("TYRE", 2)],
        );
        let oil = job("oil", 45, 5_400, &[("lift", 10)], &[]);
        let costs = job_costs(&[pads, tyres, oil], price);
        // Lift: 10 minutes for all three, done by the first (pads). Wheels off: the tyres
        // take longer (20), so the pads leave theirs (15) to the tyres.
        let got: Vec<(i64, i64, i64, i64)> = costs
            .iter()
            .map(|c| {
                (
                    c.minutes,
                    c.shared_setup_minutes,
                    c.labour_cents,
                    c.parts_cents,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (75, 15, 10_800 - 1_800, 6_900),
                (50, 10, 5_400 - 900, 19_600),
                (35, 10, 5_400 - 1_200, 0),
            ]
        );
        // A job alone shares nothing.
        let alone = job_costs(&[job("pads", 90, 10_800, &[("lift", 10)], &[])], price);
        assert_eq!((alone[0].minutes, alone[0].labour_cents), (90, 10_800));
    }
}
