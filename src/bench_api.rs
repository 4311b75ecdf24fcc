//! `aftercare bench api`: HTTP API latency under load on loopback. A fresh database with the
//! demo workshops and N open offers, the service in-process (API only), and a load generator
//! of C concurrent clients per scenario: `/healthz` (the HTTP stack alone, the baseline),
//! listing offers (auth + a read), a 4-week slot search, and accepting windows (the booking
//! transaction; a window another client took is a 409 with alternatives, also timed).

use crate::bench::{fresh_database, BenchError};
use crate::capacity::Seed;
use crate::config::Config;
use crate::store::keys::{self, Scope};
use crate::store::offers::{self, NewOffer};
use chrono::{Duration, Utc};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, clap::Args)]
pub struct ApiBenchArgs {
    /// Requests per scenario.
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Open offers to accept (the accept scenario makes this many requests at most).
    #[arg(long, default_value_t = 500)]
    pub offers: usize,
    #[arg(long, default_value = "deploy/workshops.toml")]
    pub seed: std::path::PathBuf,
    /// Database for the run (dropped and created afresh).
    #[arg(long, default_value = "aftercare_bench_api")]
    pub database: String,
}

struct Timing {
    label: &'static str,
    latencies: Vec<f64>,
    statuses: BTreeMap<u16, usize>,
    secs: f64,
}

impl Timing {
    fn pct(&self, p: f64) -> f64 {
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(i).copied().unwrap_or(f64::NAN)
    }
}

/// Sends `n` requests from `c` clients; `make(i)` builds request i.
async fn load<F>(label: &'static str, n: usize, c: usize, make: F) -> Timing
where
    F: Fn(usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let make = Arc::new(make);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..c {
        let (next, make) = (next.clone(), make.clone());
        tasks.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return out;
                }
                let t = Instant::now();
                let status = match make(i).send().await {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                out.push((t.elapsed().as_secs_f64() * 1000.0, status));
            }
        });
    }
    let mut latencies = Vec::with_capacity(n);
    let mut statuses = BTreeMap::new();
    while let Some(Ok(part)) = tasks.join_next().await {
        for (ms, s) in part {
            latencies.push(ms);
            *statuses.entry(s).or_insert(0) += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    Timing {
        label,
        latencies,
        statuses,
        secs,
    }
}

/// An open brake-pad offer at a workshop, as the offer worker would make it (benches and
/// tests).
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

pub async fn api(config: &Config, args: &ApiBenchArgs) -> Result<(), BenchError> {
    let db_url = fresh_database(&config.database.url, &args.database).await?;
    let pool = crate::store::pool(&db_url, 4).await?;
    let seed = Seed::from_file(&args.seed).map_err(|e| BenchError::Other(e.to_string()))?;
    crate::store::capacity::load_seed(&pool, &seed).await?;
    let advisor = keys::create(&pool, "bench-advisor", &[Scope::Advisor]).await?;
    let planner = keys::create(&pool, "bench-planner", &[Scope::Planner]).await?;
    let ws: i32 = crate::store::capacity::workshop_by_code(&pool, "WS-01")
        .await?
        .map(|w| w.id)
        .ok_or_else(|| BenchError::Other("the seed has no WS-01".into()))?;
    let mut offer_ids = Vec::new();
    for i in 0..args.offers {
        let vehicle = offers::ensure_vehicle(&pool, &format!("BENCH0000{i:08}")).await?;
        let o = brake_offer(vehicle, ws, "bench");
        if let Some(v) = offers::create(&pool, &o).await? {
            offer_ids.push(v.id);
        }
    }
    pool.close().await;

    let mut c = config.clone();
    c.database.url = db_url;
    c.database.max_connections = 16;
    c.ingest.enabled = false;
    c.offers.enabled = false;
    c.notify.enabled = false;
    c.http.addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let service = crate::service::start(c)
        .await
        .map_err(|e| BenchError::Other(e.to_string()))?;
    let base = format!("http://{}", service.http_addr);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .map_err(|e| BenchError::Other(e.to_string()))?;
    let from = Utc::now();
    let to = from + Duration::days(28);
    let enc = |t: chrono::DateTime<Utc>| t.to_rfc3339().replace('+', "%2B");
    let slots_url = format!(
        "{base}/v1/workshops/WS-01/slots?job=brake_pads_front&from={}&to={}&limit=1000",
        enc(from),
        enc(to)
    );
    let windows: Vec<Value> = client
        .get(&slots_url)
        .bearer_auth(&planner)
        .send()
        .await
        .map_err(|e| BenchError::Other(e.to_string()))?
        .json::<Value>()
        .await
        .map_err(|e| BenchError::Other(e.to_string()))?["windows"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    eprintln!(
        "bench api: {} requests per scenario, {} clients, {} offers, {} windows at WS-01 over 4 weeks",
        args.requests,
        args.concurrency,
        offer_ids.len(),
        windows.len()
    );
    let (n, cc) = (args.requests, args.concurrency);
    let mut runs = Vec::new();
    let (cl, b) = (client.clone(), base.clone());
    runs.push(
        load("GET /healthz (baseline)", n, cc, move |_| {
            cl.get(format!("{b}/healthz"))
        })
        .await,
    );
    let (cl, b, k) = (client.clone(), base.clone(), advisor.clone());
    runs.push(
        load("GET /v1/offers?limit=20", n, cc, move |i| {
            cl.get(format!("{b}/v1/offers?limit=20&cursor={}", i % 400))
                .bearer_auth(&k)
        })
        .await,
    );
    let (cl, k, u) = (client.clone(), planner.clone(), slots_url.clone());
    runs.push(
        load(
            "GET /v1/workshops/WS-01/slots (4 weeks)",
            n,
            cc,
            move |_| cl.get(&u).bearer_auth(&k),
        )
        .await,
    );
    let (cl, b, k) = (client.clone(), base.clone(), advisor.clone());
    let ids = Arc::new(offer_ids);
    let starts: Arc<Vec<Value>> = Arc::new(windows.iter().map(|w| w["start"].clone()).collect());
    let accepts = ids.len().min(n);
    runs.push(
        load("POST /v1/offers/{id}/accept", accepts, cc, move |i| {
            let start = starts
                .get(i % starts.len().max(1))
                .cloned()
                .unwrap_or(Value::Null);
            cl.post(format!("{b}/v1/offers/{}/accept", ids[i]))
                .bearer_auth(&k)
                .json(&json!({"start": start}))
        })
        .await,
    );
    let _ = service.shutdown().await;

    let base_p50 = runs[0].pct(0.5);
    println!(
        "| scenario | requests | req/s | p50 ms | p99 ms | max ms | p50 vs baseline | statuses |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for r in &runs {
        let statuses: Vec<String> = r
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} × | {} |",
            r.label,
            r.latencies.len(),
            r.latencies.len() as f64 / r.secs,
            r.pct(0.5),
            r.pct(0.99),
            r.latencies.last().copied().unwrap_or(f64::NAN),
            r.pct(0.5) / base_p50,
            statuses.join(", ")
        );
    }
    Ok(())
}
