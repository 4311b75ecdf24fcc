//! `aftercare bench reads`: the read paths over stored telemetry, on a database that already
//! holds a fleet (e.g. one `aftercare simulate --bulk` filled): one signal of one car (100
//! points), every signal of a car for a day, hourly buckets of a week, daily buckets of half a
//! year (the rollup), a car's latest values, and the scorer's history load for 1,000 cars.
//! Each read runs on cars chosen by a fixed seed, in rounds that alternate the reads, and
//! reports the median and 99th percentile. It also prints a digest of every answer, so two
//! builds (or layouts) filled with the same fleet can show they answer byte for byte alike.

use super::BenchError;
use crate::config::Config;
use crate::model::dataset;
use crate::store::read::{self, TelemetryQuery};
use crate::store::{self, history};
use chrono::{DateTime, Duration, DurationRound, Utc};
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::time::Instant;

#[derive(Debug, Clone, clap::Args)]
pub struct ReadsBenchArgs {
    /// Rounds; each times every read once per car drawn.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Cars drawn per round for the per-car reads.
    #[arg(long, default_value_t = 50)]
    pub cars: usize,
    /// Cars of the scorer's history load.
    #[arg(long, default_value_t = 1000)]
    pub history_cars: usize,
    /// The instant reads are made as of (defaults to the end of the stored history).
    #[arg(long)]
    pub until: Option<DateTime<Utc>>,
}

const READS: [&str; 6] = [
    "one signal, 100 points",
    "all signals of a car, one day",
    "hourly buckets, one signal, 7 days",
    "daily buckets, all signals, 180 days",
    "latest values of a car",
    "history load, scorer batch",
];

pub async fn reads(config: &Config, args: &ReadsBenchArgs) -> Result<(), BenchError> {
    let pool = store::pool(&config.database.url, 4).await?;
    let store = store::Store::open(pool.clone()).await?;
    let ids: Vec<i32> = history::vehicle_ids(&pool).await?;
    if ids.is_empty() {
        return Err(BenchError::Other(
            "the database holds no vehicles: fill it first (aftercare simulate --bulk)".into(),
        ));
    }
    let end: DateTime<Utc> = match args.until {
        Some(t) => t,
        None => sqlx::query_scalar::<_, Option<DateTime<Utc>>>(
            "SELECT max(day) + INTERVAL '1 day' FROM signal_daily",
        )
        .fetch_one(&pool)
        .await?
        .ok_or_else(|| BenchError::Other("no rollup rows".into()))?,
    };
    let noon = end.duration_trunc(Duration::days(1)).unwrap_or(end) - Duration::hours(12);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); READS.len()];
    let (mut digest, mut history_digest) = (Sha256::new(), Sha256::new());
    for round in 0..args.rounds.max(1) {
        let cars: Vec<i32> = (0..args.cars.max(1))
            .map(|_| ids[rng.gen_range(0..ids.len())])
            .collect();
        for &vehicle_id in &cars {
            // As the API reads one signal: its id from the store's cache, then the values.
            let one_signal = async {
                let signal = store.signal_ref(crate::catalog::ODOMETER).await?;
                let q = TelemetryQuery {
                    vehicle_id,
                    signal,
                    from: end - Duration::days(60),
                    to: end,
                    after: None,
                    limit: 100,
                };
                read::telemetry(&pool, &q).await
            };
            let answer = timed(&mut times[0], one_signal).await?;
            digest.update(serde_json::to_vec(&answer.0).unwrap_or_default());
            let q = TelemetryQuery {
                vehicle_id,
                signal: None,
                from: noon - Duration::hours(12),
                to: noon + Duration::hours(12),
                after: None,
                limit: 10_000,
            };
            let answer = timed(&mut times[1], read::telemetry(&pool, &q)).await?;
            digest.update(serde_json::to_vec(&answer.0).unwrap_or_default());
            let hourly = async {
                let signal = store.signal_ref(crate::catalog::ODOMETER).await?;
                let (from, secs) = (end - Duration::days(7), 3600);
                read::telemetry_buckets(&pool, vehicle_id, signal, from, end, secs, 10_000).await
            };
            let answer = timed(&mut times[2], hourly).await?;
            digest.update(serde_json::to_vec(&answer).unwrap_or_default());
            let answer = timed(
                &mut times[3],
                read::telemetry_buckets(
                    &pool,
                    vehicle_id,
                    None,
                    end - Duration::days(180),
                    end,
                    86_400,
                    100_000,
                ),
            )
            .await?;
            digest.update(serde_json::to_vec(&answer).unwrap_or_default());
            let answer = timed(&mut times[4], read::vehicle_profile(&pool, vehicle_id)).await?;
            digest.update(serde_json::to_vec(&answer.latest).unwrap_or_default());
        }
        let batch: Vec<i32> = ids.iter().copied().take(args.history_cars.max(1)).collect();
        let histories = timed(
            &mut times[5],
            history::load(&pool, &batch, &dataset::span(noon, noon)),
        )
        .await?;
        if round == 0 {
            history_digest.update(format!("{histories:?}").as_bytes());
        }
    }
    println!(
        "\nRead paths, {} rounds × {} cars ({} vehicles stored), as of {}",
        args.rounds,
        args.cars,
        ids.len(),
        end.to_rfc3339()
    );
    println!("{:<40} {:>10} {:>10}", "", "median ms", "p99 ms");
    for (label, t) in READS.iter().zip(&mut times) {
        t.sort_by(f64::total_cmp);
        let pct = |p: f64| t[((t.len() as f64 - 1.0) * p).round() as usize];
        println!("{label:<40} {:>10.3} {:>10.3}", pct(0.5), pct(0.99));
    }
    println!("answers digest: {}", hex::encode(digest.finalize()));
    // Separate: sums of today's raw values may differ in the last bits with summation order.
    println!("history digest: {}", hex::encode(history_digest.finalize()));
    Ok(())
}

async fn timed<T, E>(
    into: &mut Vec<f64>,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, BenchError>
where
    BenchError: From<E>,
{
    let started = Instant::now();
    let out = f.await?;
    into.push(started.elapsed().as_secs_f64() * 1000.0);
    Ok(out)
}
