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
    /// The visit's labour in minutes.
    pub fn minutes(&self) -> i64 {
        self.jobs.iter().map(|j| i64::from(j.labour_minutes)).sum()
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

    pub fn estimated_cost_cents(&self) -> i64 {
        self.jobs.iter().map(|j| j.labour_price_cents).sum::<i64>()
            + self
                .parts
                .iter()
                .map(|p| p.price_cents * i64::from(p.quantity))
                .sum::<i64>()
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
