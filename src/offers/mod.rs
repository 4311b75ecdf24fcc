//! Offers: turning risk into proposals an owner can accept. Owns the policy (`policy`, pure)
//! and the worker that reads `risk_current`, puts the jobs a car needs at about the same
//! time into one visit (`visit::group_by_deadline`), creates offers with windows at the home
//! workshop (or nearby ones) before the likely failure, lets an owner decline one job of a
//! visit, sends reminders, expires unanswered offers and raises alarms for silent vehicles.

pub mod policy;

use crate::capacity::{Choose, JobSpec, Plan, Window};
use crate::component::Component;
use crate::config::OffersConfig;
use crate::metrics::Metrics;
use crate::store::capacity as cap;
use crate::store::offers::{self as store, Candidate, NewJob, NewOffer};
use crate::store::stats::{self, BulkTable};
use crate::store::StoreError;
use crate::visit::group_by_deadline;
use chrono::{DateTime, Duration, Utc};
use policy::{Context, Decision, Horizon, Notice, Risk};
use serde_json::Value;
use sqlx::PgPool;
use std::collections::HashMap;
use tokio::sync::watch;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Offers made (visits).
    pub created: u64,
    /// Jobs in them (more than `created` where a visit has several).
    pub jobs: u64,
    pub skipped: HashMap<&'static str, u64>,
    pub reminded: u64,
    pub expired: u64,
    pub alarms_raised: u64,
    pub alarms_cleared: u64,
}

/// The best windows for a visit's jobs at `workshop`, topped up from nearby workshops when
/// it has fewer than `n` before `until`.
pub async fn windows_for(
    pool: &PgPool,
    workshop: &str,
    jobs: &[&str],
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    n: usize,
    nearby: i64,
) -> Result<(Option<Plan>, Vec<Window>), StoreError> {
    let home = match cap::plan(pool, workshop, jobs, now, until).await? {
        Ok(s) => s,
        Err(_) => return Ok((None, Vec::new())),
    };
    let best = |plan: &Plan, n| {
        plan.windows(now, until, now, None, Choose::SpreadOverDays(n))
            .windows
    };
    let mut out = best(&home, n);
    if out.len() < n && nearby > 0 {
        for other in cap::nearby_workshops(pool, home.capacity.workshop_id, nearby).await? {
            if let Ok(plan) = cap::plan(pool, &other.code, jobs, now, until).await? {
                out.extend(best(&plan, n - out.len()));
            }
            if out.len() >= n {
                break;
            }
        }
    }
    Ok((Some(home), out))
}

/// The score's top factors, most contributing first, as the offer's reasons.
pub fn reasons(factors: &Value) -> Value {
    let mut list: Vec<Value> = factors.as_array().cloned().unwrap_or_default();
    list.sort_by(|a, b| {
        let c = |v: &Value| v["contribution"].as_f64().unwrap_or(0.0).abs();
        c(b).total_cmp(&c(a))
    });
    list.truncate(3);
    Value::Array(list)
}

fn risk(c: &Candidate) -> Risk {
    Risk {
        p7: f64::from(c.p7),
        p30: f64::from(c.p30),
        p90: f64::from(c.p90),
        urgency_days: c.urgency_days.map(f64::from),
    }
}

/// The lowest threshold of each horizon across components: the worker's SQL prefilter.
fn min_thresholds(cfg: &OffersConfig) -> [f64; 3] {
    let mut min = [f64::INFINITY; 3];
    let all = Component::ALL.map(|c| policy::thresholds(cfg, c));
    for t in all {
        for (i, p) in [t.p7, t.p30, t.p90].into_iter().enumerate() {
            if let Some(p) = p {
                min[i] = min[i].min(p);
            }
        }
    }
    // A horizon nobody uses never matches.
    min.map(|m| if m.is_finite() { m } else { 2.0 })
}

fn skip(pass: &mut Pass, why: &'static str) {
    *pass.skipped.entry(why).or_default() += 1;
}

/// A job the policy decided to offer, with the latest date it should be done by.
struct Due {
    candidate: Candidate,
    component: Component,
    horizon: Horizon,
    /// The risk at `horizon`.
    p: f64,
    job: JobSpec,
}

/// One pass of the policy over the current scores and open offers.
pub async fn run_once(
    pool: &PgPool,
    cfg: &OffersConfig,
    metrics: &Metrics,
    now: DateTime<Utc>,
) -> Result<Pass, StoreError> {
    let mut pass = Pass {
        expired: store::expire_due(pool, now).await?,
        ..Pass::default()
    };
    for _ in 0..pass.expired {
        metrics.offer_entered("expired");
    }
    let min = min_thresholds(cfg);
    let mut after = (0, String::new());
    // Candidates come in vehicle order: one car's due jobs are proposed together.
    let mut due: Vec<(Due, DateTime<Utc>)> = Vec::new();
    loop {
        let page = store::candidates(pool, min, (after.0, &after.1), cfg.batch).await?;
        for c in &page {
            if due
                .first()
                .is_some_and(|(d, _)| d.candidate.vehicle_id != c.vehicle_id)
            {
                propose_visits(pool, cfg, metrics, &mut pass, std::mem::take(&mut due), now)
                    .await?;
            }
            let Ok(component) = c.component.parse::<Component>() else {
                skip(&mut pass, "unknown_component");
                continue;
            };
            let ctx = Context {
                consent: c.has_profile.then_some(c.offers_consent.unwrap_or(true)),
                has_home_workshop: c.home_workshop.as_deref().is_some_and(|w| !w.is_empty()),
                open_offer: c.open_offer,
                last_declined_at: c.last_declined_at,
            };
            let r = risk(c);
            let (horizon, p) = match policy::decide(cfg, component, &r, &ctx, now) {
                Decision::Offer { horizon, risk } => (horizon, risk),
                Decision::Skip(s) => {
                    skip(&mut pass, skip_name(s));
                    continue;
                }
            };
            let Some(job) = cap::default_job(pool, component).await? else {
                skip(&mut pass, "no_job");
                continue;
            };
            let by = policy::search_until(cfg, &r, now);
            due.push((
                Due {
                    candidate: c.clone(),
                    component,
                    horizon,
                    p,
                    job,
                },
                by,
            ));
        }
        match page.last() {
            Some(last) if page.len() as i64 == cfg.batch => {
                after = (last.vehicle_id, last.component.clone())
            }
            _ => break,
        }
    }
    propose_visits(pool, cfg, metrics, &mut pass, due, now).await?;
    pass.reminded = reminders(pool, cfg, now).await?;
    let silent_since = now - Duration::seconds((cfg.silent_after_hours * 3600.0) as i64);
    (pass.alarms_raised, pass.alarms_cleared) = store::silent_alarms(pool, silent_since).await?;
    Ok(pass)
}

/// Proposes one car's due jobs: those due about the same time as one visit each, and a
/// visit the workshop cannot take in one piece (no bay or technician for all its jobs, or
/// no time) as one offer per job instead.
async fn propose_visits(
    pool: &PgPool,
    cfg: &OffersConfig,
    metrics: &Metrics,
    pass: &mut Pass,
    due: Vec<(Due, DateTime<Utc>)>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let within = Duration::minutes((cfg.bundle_within_days * 1440.0) as i64);
    for visit in group_by_deadline(due, within) {
        let mut tries: Vec<Vec<(Due, DateTime<Utc>)>> = vec![visit];
        while let Some(jobs) = tries.pop() {
            let n = jobs.len();
            match propose(pool, cfg, &jobs, now).await? {
                Ok(()) => {
                    pass.created += 1;
                    pass.jobs += n as u64;
                    metrics.offer_entered("proposed");
                }
                Err("no_capacity") if n > 1 => tries.extend(jobs.into_iter().map(|j| vec![j])),
                Err(why) => skip(pass, why),
            }
        }
    }
    Ok(())
}

fn skip_name(s: policy::Skip) -> &'static str {
    match s {
        policy::Skip::BelowThreshold => "below_threshold",
        policy::Skip::OpenOffer => "open_offer",
        policy::Skip::Cooldown => "cooldown",
        policy::Skip::OptedOut => "opted_out",
        policy::Skip::NoProfile => "no_profile",
        policy::Skip::NoWorkshop => "no_workshop",
    }
}

/// One offer for a visit with `jobs` (the most urgent first, with the date it bounds the
/// windows by).
async fn propose(
    pool: &PgPool,
    cfg: &OffersConfig,
    jobs: &[(Due, DateTime<Utc>)],
    now: DateTime<Utc>,
) -> Result<Result<(), &'static str>, StoreError> {
    let Some((lead, until)) = jobs.first() else {
        return Ok(Ok(()));
    };
    let c = &lead.candidate;
    let workshop = c
        .home_workshop
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| cfg.default_workshop.clone());
    let codes: Vec<&str> = jobs.iter().map(|(d, _)| d.job.code.as_str()).collect();
    let (home, windows) = windows_for(
        pool,
        &workshop,
        &codes,
        now,
        *until,
        cfg.windows,
        cfg.nearby_workshops,
    )
    .await?;
    let Some(home) = home else {
        return Ok(Err("unknown_workshop"));
    };
    if windows.is_empty() {
        return Ok(Err("no_capacity"));
    }
    let lines: Vec<NewJob> = jobs
        .iter()
        .zip(home.job_costs())
        .map(|((d, _), cost)| NewJob {
            component: d.component.as_str().to_owned(),
            job_code: d.job.code.clone(),
            horizon: d.horizon.as_str(),
            risk: d.p,
            urgency_days: d.candidate.urgency_days,
            model_version: d.candidate.model_version.clone(),
            risk_scored_at: d.candidate.scored_at,
            reasons: reasons(&d.candidate.factors),
            minutes: cost.minutes,
            shared_setup_minutes: cost.shared_setup_minutes,
            labour_price_cents: cost.labour_cents,
            parts_price_cents: cost.parts_cents,
        })
        .collect();
    let offer = NewOffer {
        vehicle_id: c.vehicle_id,
        component: lead.component.as_str().to_owned(),
        horizon: lead.horizon.as_str(),
        risk: lead.p,
        urgency_days: c.urgency_days,
        model_version: c.model_version.clone(),
        risk_scored_at: c.scored_at,
        reasons: reasons(&c.factors),
        job_code: lead.job.code.clone(),
        workshop_id: home.capacity.workshop_id,
        duration_minutes: i32::try_from(home.minutes()).unwrap_or(i32::MAX),
        estimated_cost_cents: home.estimated_cost_cents(),
        windows,
        odometer_km: c.odometer_km,
        expires_at: now + Duration::seconds((cfg.ttl_days * 86_400.0) as i64),
    };
    Ok(match store::create_visit(pool, &offer, &lines).await? {
        Some(_) => Ok(()),
        None => Err("open_offer"),
    })
}

async fn reminders(
    pool: &PgPool,
    cfg: &OffersConfig,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let mut sent = 0;
    let mut after = 0;
    loop {
        let page = store::reminding(pool, after, cfg.batch).await?;
        for o in &page {
            let (Some(horizon), Some(at)) = (Horizon::parse(&o.horizon), o.last_notice_at) else {
                continue;
            };
            let r = Risk {
                p7: f64::from(o.p7),
                p30: f64::from(o.p30),
                p90: f64::from(o.p90),
                urgency_days: o.urgency_days.map(f64::from),
            };
            let notice = Notice {
                level: o.reminder_level,
                last_notice_at: at,
                last_notice_risk: o.last_notice_risk.map(f64::from).unwrap_or(r.at(horizon)),
                odometer_at_notice: o.odometer_at_notice,
            };
            if let Some((level, trigger)) =
                policy::reminder(cfg, &notice, horizon, &r, o.odometer_km, now)
            {
                let trigger = serde_json::to_value(trigger)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                if store::remind(
                    pool,
                    o.id,
                    level as i16,
                    &trigger,
                    r.at(horizon),
                    o.odometer_km,
                )
                .await?
                {
                    sent += 1;
                }
            }
        }
        match page.last() {
            Some(last) if page.len() as i64 == cfg.batch => after = last.id,
            _ => return Ok(sent),
        }
    }
}

/// Runs passes every `interval_ms` until `shutdown` turns true.
pub async fn run(
    pool: PgPool,
    cfg: OffersConfig,
    metrics: std::sync::Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = std::time::Duration::from_millis(cfg.interval_ms.max(100));
    loop {
        match run_once(&pool, &cfg, &metrics, Utc::now()).await {
            Ok(p) if p.created + p.reminded + p.expired + p.alarms_raised > 0 => {
                if p.created > 0 {
                    stats::keep_fresh(&pool, &[BulkTable::Offers]).await;
                }
                tracing::info!(
                    created = p.created,
                    reminded = p.reminded,
                    expired = p.expired,
                    alarms = p.alarms_raised,
                    "offer pass"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "offer pass failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
