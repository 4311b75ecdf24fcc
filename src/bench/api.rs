//! `aftercare bench api`: HTTP API latency at a fixed request rate on a fleet of N cars. Fills
//! a fresh database the way the service would (the demo workshops; the cars' recent history
//! in bulk; every car scored with the model; one offer pass; some offers booked), serves the
//! API in-process and drives each endpoint open-loop: requests leave on a schedule whatever
//! the answers, so a latency counts from when the request was due and includes time queued
//! behind slow ones. The reads run twice on the same data: as bulk-written (no planner
//! statistics, what the service served before it analysed after bulk writes) and after
//! `store::stats::analyze_if_stale`; `/healthz` (the HTTP stack alone) is the baseline of
//! each phase. A slot search and accepting windows follow at a lower rate.

use super::{fresh_database, BenchError};
use crate::capacity::Seed;
use crate::config::Config;
use crate::model::artifact::Artifact;
use crate::model::score::Scorer;
use crate::simulator::{bulk, fleet, Progress, Realism, SimConfig};
use crate::store::keys::{self, Scope};
use crate::store::offers::{self, NewOffer};
use crate::store::stats::{self, BulkTable};
use crate::store::{history, Store};
use crate::visit::OfferState;
use chrono::{DateTime, Duration, DurationRound, TimeDelta, Utc};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::time::Instant;

#[derive(Debug, Clone, clap::Args)]
pub struct ApiBenchArgs {
    /// Cars in the fleet.
    #[arg(long, default_value_t = 10_000)]
    pub vehicles: usize,
    /// Days of history per car, ending today.
    #[arg(long, default_value_t = 120)]
    pub days: u32,
    /// Requests per second to each read endpoint (fixed rate, open loop).
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Seconds per endpoint and phase.
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// Requests per second for the slot search and for accepts.
    #[arg(long, default_value_t = 20)]
    pub slow_rate: u32,
    /// Offers booked while filling (the bookings list reads them).
    #[arg(long, default_value_t = 300)]
    pub bookings: usize,
    /// The model that scores the fleet.
    #[arg(long, default_value = "models/current.json")]
    pub artifact: PathBuf,
    #[arg(long, default_value = "deploy/workshops.toml")]
    pub seed: PathBuf,
    /// Database for the run (dropped and created afresh; kept afterwards for EXPLAIN).
    #[arg(long, default_value = "aftercare_bench_api")]
    pub database: String,
    /// Measure the fleet a previous run left in `database` (same --vehicles and --days, the
    /// same day) instead of filling a fresh one; only the analysed phase runs.
    #[arg(long)]
    pub reuse: bool,
    /// Only the endpoints whose label contains this (the baseline always runs).
    #[arg(long)]
    pub only: Option<String>,
}

/// The simulated fleet's seed: the same cars on every run.
const FLEET_SEED: u64 = 1;
const WORKSHOPS: usize = 5;
const SCORE_BATCH: usize = 500;

fn other(e: impl std::fmt::Display) -> BenchError {
    BenchError::Other(e.to_string())
}

/// One endpoint's run: latencies in ms from when each request was due.
struct Run {
    label: String,
    phase: &'static str,
    latencies: Vec<f64>,
    statuses: BTreeMap<u16, usize>,
    secs: f64,
}

impl Run {
    fn pct(&self, p: f64) -> f64 {
        let n = self.latencies.len();
        if n == 0 {
            return f64::NAN;
        }
        let i = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
        self.latencies[i]
    }
}

/// Sends `rate` requests a second for `seconds`, request i built by `make(i)` and sent when
/// due whether or not earlier ones have been answered.
async fn open_loop<F>(label: String, phase: &'static str, rate: u32, seconds: u32, make: F) -> Run
where
    F: Fn(usize) -> reqwest::RequestBuilder,
{
    let n = rate as usize * seconds as usize;
    let interval = std::time::Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut done = Vec::with_capacity(n);
    for i in 0..n {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        let request = make(i);
        tasks.spawn(async move {
            let status = match request.send().await {
                Ok(r) => {
                    let s = r.status().as_u16();
                    let _ = r.bytes().await;
                    s
                }
                Err(_) => 0,
            };
            (due.elapsed().as_secs_f64() * 1000.0, status)
        });
        while let Some(Ok(d)) = tasks.try_join_next() {
            done.push(d);
        }
    }
    while let Some(r) = tasks.join_next().await {
        if let Ok(d) = r {
            done.push(d);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let mut statuses = BTreeMap::new();
    let mut latencies: Vec<f64> = done
        .into_iter()
        .map(|(ms, s)| {
            *statuses.entry(s).or_insert(0) += 1;
            ms
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    Run {
        label,
        phase,
        latencies,
        statuses,
        secs,
    }
}

/// An open brake-pad offer at a workshop, as the offer worker would make it (tests).
pub fn brake_offer(vehicle_id: i32, workshop_id: i32, model_version: &str) -> NewOffer {
    NewOffer {
        vehicle_id,
        component: "brakes".into(),
        horizon: "p30",
        risk: 0.7,
        urgency_days: Some(20.0),
        model_version: model_version.into(),
        risk_scored_at: Utc::now(),
        reasons: json!([]),
        job_code: "brake_pads_front".into(),
        workshop_id,
        duration_minutes: 90,
        estimated_cost_cents: 17_700,
        windows: Vec::new(),
        odometer_km: None,
        expires_at: Utc::now() + Duration::days(14),
    }
}

/// What the fill made.
struct Fleet {
    vins: Vec<String>,
    scored: usize,
    offers: Vec<offers::OfferView>,
    booked: usize,
}

fn start_of_history(days: u32) -> Result<DateTime<Utc>, BenchError> {
    let today = Utc::now()
        .duration_trunc(TimeDelta::days(1))
        .map_err(other)?;
    Ok(today - Duration::days(i64::from(days)))
}

/// The fleet, as the service would have it after ingest, a scoring round and an offer pass.
async fn fill(config: &Config, db_url: &str, args: &ApiBenchArgs) -> Result<Fleet, BenchError> {
    let pool = crate::store::pool(db_url, 6).await?;
    let seed = Seed::from_file(&args.seed).map_err(other)?;
    crate::store::capacity::load_seed(&pool, &seed).await?;
    let store = Arc::new(Store::open(pool.clone()).await?);
    let start = start_of_history(args.days)?;
    let sim = SimConfig {
        seed: FLEET_SEED,
        vehicles: args.vehicles,
        workshops: WORKSHOPS,
        start,
        days: args.days,
        realism: Realism::default(),
    };
    let t = std::time::Instant::now();
    bulk::run_with(
        store,
        sim,
        bulk::BulkPath::Auto,
        config.ingest.write_method,
        config.limits(),
        &Progress::new(args.days, false),
    )
    .await
    .map_err(other)?;
    eprintln!(
        "bench api: {} cars x {} days of history in {:.0} s",
        args.vehicles,
        args.days,
        t.elapsed().as_secs_f64()
    );

    let t = std::time::Instant::now();
    let scorer = Artifact::load(&args.artifact)
        .and_then(Scorer::new)
        .map_err(other)?;
    let ids = history::vehicle_ids(&pool).await?;
    let mut scored = 0;
    for chunk in ids.chunks(SCORE_BATCH) {
        scored += crate::model::worker::score_vehicles(&pool, &scorer, chunk)
            .await?
            .0;
    }
    let pass = crate::offers::run_once(
        &pool,
        &config.offers,
        &crate::metrics::Metrics::new(),
        Utc::now(),
    )
    .await?;
    eprintln!(
        "bench api: {scored} cars scored and {} offers made in {:.0} s",
        pass.created,
        t.elapsed().as_secs_f64()
    );
    let open = open_offers(&pool).await?;
    let mut booked = 0;
    for o in open.iter().take(args.bookings) {
        if book(&pool, o).await? {
            booked += 1;
        }
    }
    pool.close().await;
    Ok(Fleet {
        vins: vins(args)?,
        scored,
        offers: open.into_iter().skip(args.bookings).collect(),
        booked,
    })
}

/// The fleet's VINs (the simulation is deterministic by seed and start).
fn vins(args: &ApiBenchArgs) -> Result<Vec<String>, BenchError> {
    let start = start_of_history(args.days)?;
    Ok((0..args.vehicles)
        .map(|i| fleet::vehicle(FLEET_SEED, i, WORKSHOPS, start).vin)
        .collect())
}

/// Every proposed offer, in id order.
async fn open_offers(pool: &sqlx::PgPool) -> Result<Vec<offers::OfferView>, BenchError> {
    let mut open = Vec::new();
    let mut after = None;
    loop {
        let page = offers::list(pool, Some(OfferState::Proposed), None, after, 1000).await?;
        after = page.last().map(|o| o.id);
        let more = page.len() == 1000;
        open.extend(page);
        if !more {
            return Ok(open);
        }
    }
}

/// Books the offer's first window, or when another offer took it, the first alternative,
/// as an advisor would.
async fn book(pool: &sqlx::PgPool, o: &offers::OfferView) -> Result<bool, BenchError> {
    use crate::booking::{accept, BookingError};
    let Some(start) = o.windows.first().map(|w| w.start) else {
        return Ok(false);
    };
    let alternative = match accept(pool, o.id, None, start).await {
        Ok(_) => return Ok(true),
        Err(BookingError::Store(e)) => return Err(e.into()),
        Err(BookingError::Unavailable { alternatives, .. }) => alternatives.into_iter().next(),
        Err(BookingError::Refused(_)) => None,
    };
    let Some(w) = alternative else {
        return Ok(false);
    };
    Ok(accept(pool, o.id, Some(w.workshop.as_str()), w.start)
        .await
        .is_ok())
}

/// Which bulk-written tables the planner has statistics for.
async fn statistics(pool: &sqlx::PgPool) -> Result<String, BenchError> {
    let mut with = Vec::new();
    for t in BulkTable::ALL {
        if stats::has_statistics(pool, t).await? {
            with.push(t.as_str());
        }
    }
    Ok(if with.is_empty() {
        "none".into()
    } else {
        with.join(", ")
    })
}

type Endpoint = (String, String, Box<dyn Fn(usize) -> String>);

pub async fn api(config: &Config, args: &ApiBenchArgs) -> Result<(), BenchError> {
    let (db_url, fleet) = if args.reuse {
        let base = config.database.url.rsplit_once('/').map_or("", |(b, _)| b);
        let db_url = format!("{base}/{}", args.database);
        let pool = crate::store::pool(&db_url, 2).await?;
        crate::store::migrate(&pool).await?;
        let fleet = Fleet {
            vins: vins(args)?,
            scored: 0,
            offers: open_offers(&pool).await?,
            booked: 0,
        };
        (db_url, fleet)
    } else {
        let db_url = fresh_database(&config.database.url, &args.database).await?;
        let fleet = fill(config, &db_url, args).await?;
        (db_url, fleet)
    };
    let pool = crate::store::pool(&db_url, 2).await?;
    let advisor = keys::create(&pool, "bench-advisor", &[Scope::Advisor]).await?;
    let planner = keys::create(&pool, "bench-planner", &[Scope::Planner]).await?;
    let reader = keys::create(&pool, "bench-fleet", &[Scope::FleetRead]).await?;

    let mut c = config.clone();
    c.database.url = db_url;
    c.database.max_connections = 16;
    c.ingest.enabled = false;
    c.model.enabled = false;
    c.offers.enabled = false;
    c.notify.enabled = false;
    c.http.addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let service = crate::service::start(c).await.map_err(other)?;
    let base = format!("http://{}", service.http_addr);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()
        .map_err(other)?;
    eprintln!(
        "bench api: {} cars, {} scored, {} open offers, {} booked; {} req/s for {} s per endpoint",
        fleet.vins.len(),
        fleet.scored,
        fleet.offers.len(),
        fleet.booked,
        args.rate,
        args.seconds
    );

    let vins = Arc::new(fleet.vins);
    let offer_ids: Arc<Vec<i64>> = Arc::new(fleet.offers.iter().map(|o| o.id).collect());
    // Scattered but repeatable picks: request i reads car (i * a prime) mod N.
    let vin = {
        let vins = vins.clone();
        move |i: usize| vins[(i * 7919) % vins.len().max(1)].clone()
    };
    let endpoints: Vec<Endpoint> = vec![
        (
            "GET /healthz (baseline)".into(),
            String::new(),
            Box::new(|_| "/healthz".into()),
        ),
        (
            "GET /v1/offers?state=proposed&limit=50 (advisor)".into(),
            advisor.clone(),
            Box::new({
                let ids = offer_ids.clone();
                move |i| {
                    let cursor = ids
                        .get((i * 7919) % ids.len().max(1))
                        .map_or(0, |id| id - 1);
                    format!("/v1/offers?state=proposed&limit=50&cursor={cursor}")
                }
            }),
        ),
        (
            "GET /v1/bookings?limit=50 (advisor)".into(),
            advisor.clone(),
            Box::new(|_| "/v1/bookings?limit=50".into()),
        ),
        (
            "GET /v1/fleet/risk?limit=50 (planner)".into(),
            reader.clone(),
            Box::new(|_| "/v1/fleet/risk?limit=50".into()),
        ),
        (
            "GET /v1/fleet/risk?workshop=WS-0n&limit=50 (planner)".into(),
            reader.clone(),
            Box::new(|i| format!("/v1/fleet/risk?workshop=WS-0{}&limit=50", 1 + i % 5)),
        ),
        (
            "GET /v1/vehicles/{vin}".into(),
            reader.clone(),
            Box::new({
                let vin = vin.clone();
                move |i| format!("/v1/vehicles/{}", vin(i))
            }),
        ),
        (
            "GET /v1/vehicles/{vin}/risk".into(),
            reader.clone(),
            Box::new(move |i| format!("/v1/vehicles/{}/risk", vin(i))),
        ),
    ];

    let mut runs = Vec::new();
    eprintln!("bench api: statistics before: {}", statistics(&pool).await?);
    // A reused database was analysed by the run that filled it: only the second phase.
    let phases: &[&'static str] = if args.reuse {
        &["analysed"]
    } else {
        &["as written", "analysed"]
    };
    for &phase in phases {
        if phase == "analysed" {
            eprintln!(
                "bench api: statistics after the first phase (autovacuum's): {}",
                statistics(&pool).await?
            );
            let analysed = stats::analyze_if_stale(&pool, &BulkTable::ALL).await?;
            let names: Vec<&str> = analysed.iter().map(|t| t.as_str()).collect();
            eprintln!("bench api: analysed {}", names.join(", "));
        }
        let chosen = endpoints.iter().enumerate().filter(|(i, (label, ..))| {
            *i == 0 || args.only.as_deref().is_none_or(|o| label.contains(o))
        });
        for (_, (label, key, path)) in chosen {
            let (cl, b) = (client.clone(), base.clone());
            let run = open_loop(label.clone(), phase, args.rate, args.seconds, |i| {
                let r = cl.get(format!("{b}{}", path(i)));
                if key.is_empty() {
                    r
                } else {
                    r.bearer_auth(key)
                }
            })
            .await;
            eprintln!("bench api: {phase}: {label}: p99 {:.2} ms", run.pct(0.99));
            runs.push(run);
        }
    }

    // The slot search and accepts, at the slow rate, after the analysis.
    let slow = |label: &str| args.only.as_deref().is_none_or(|o| label.contains(o));
    let from = Utc::now();
    let enc = |t: DateTime<Utc>| t.to_rfc3339().replace('+', "%2B");
    let slots = format!(
        "{base}/v1/workshops/WS-01/slots?job=brake_pads_front&from={}&to={}&limit=5",
        enc(from),
        enc(from + Duration::days(28))
    );
    let (cl, k) = (client.clone(), planner.clone());
    let label = "GET /v1/workshops/WS-01/slots (4 weeks)";
    if slow(label) {
        let run = open_loop(
            label.into(),
            "analysed",
            args.slow_rate,
            args.seconds,
            |_| cl.get(&slots).bearer_auth(&k),
        );
        runs.push(run.await);
    }
    let accepts = (args.slow_rate as usize * args.seconds as usize).min(fleet.offers.len());
    let seconds = (accepts as u32).div_ceil(args.slow_rate.max(1));
    let (cl, b, k) = (client.clone(), base.clone(), advisor.clone());
    let to_accept = Arc::new(fleet.offers);
    let label = "POST /v1/offers/{id}/accept";
    if slow(label) && !to_accept.is_empty() {
        let run = open_loop(label.into(), "analysed", args.slow_rate, seconds, |i| {
            let o = &to_accept[i % to_accept.len()];
            let start = o.windows.first().map(|w| w.start.to_rfc3339());
            cl.post(format!("{b}/v1/offers/{}/accept", o.id))
                .bearer_auth(&k)
                .json(&json!({ "start": start }))
        });
        runs.push(run.await);
    }
    let _ = service.shutdown().await;
    pool.close().await;
    print_table(&runs, args);
    Ok(())
}

fn print_table(runs: &[Run], args: &ApiBenchArgs) {
    let baseline = |phase: &str| {
        runs.iter()
            .find(|r| r.phase == phase && r.label.starts_with("GET /healthz"))
            .map_or(f64::NAN, |r| r.pct(0.99))
    };
    let before = |label: &str| {
        runs.iter()
            .find(|r| r.phase == "as written" && r.label == label)
            .map(|r| r.pct(0.99))
    };
    println!(
        "{} cars, {} req/s per read endpoint for {} s (slot search and accepts at {} req/s)\n",
        args.vehicles, args.rate, args.seconds, args.slow_rate
    );
    println!("| endpoint | statistics | req/s | p50 ms | p99 ms | p99.9 ms | max ms | p99 vs /healthz | p99 analysed / as written | statuses |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for r in runs {
        let statuses: Vec<String> = r
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        let versus = match (r.phase, before(&r.label)) {
            ("analysed", Some(b)) => format!("{:.2} ×", r.pct(0.99) / b),
            _ => String::new(),
        };
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} × | {} | {} |",
            r.label,
            r.phase,
            r.latencies.len() as f64 / r.secs,
            r.pct(0.5),
            r.pct(0.99),
            r.pct(0.999),
            r.latencies.last().copied().unwrap_or(f64::NAN),
            r.pct(0.99) / baseline(r.phase),
            versus,
            statuses.join(", ")
        );
    }
}
