//! `aftercare bench fuzz`: hostile traffic through the broker into a service process.

use super::{end_session, fresh_database, BenchError, Service};
use crate::config::Config;
use crate::simulator::publish_all;
use crate::store;
use chrono::Utc;

#[derive(Debug, Clone, clap::Args)]
pub struct FuzzBenchArgs {
    /// Hostile messages to publish (the CI test sends 3,000).
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: usize,
    #[arg(long, default_value_t = 200)]
    pub vehicles: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The service's payload limit during the run (oversized messages are this plus a little).
    #[arg(long, default_value_t = 4096)]
    pub max_payload_bytes: usize,
    /// The service's bound on payload bytes in flight.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub max_inflight_bytes: usize,
    /// Database for the run (dropped and created afresh).
    #[arg(long, default_value = "aftercare_bench_fuzz")]
    pub database: String,
}

/// `aftercare bench fuzz`: the hostile mix of `simulator::hostile` through the broker into a
/// service process; then every message's outcome is checked against the tables and metrics,
/// and the service's peak RSS is reported against its bound.
pub async fn fuzz(config: &Config, args: &FuzzBenchArgs) -> Result<(), BenchError> {
    use crate::simulator::hostile::{verify, Generator, Tally};
    let db = fresh_database(&config.database.url, &args.database).await?;
    let run = Utc::now().timestamp();
    let client = format!("bench-fuzz-{run}");
    let env = [
        (
            "AFTERCARE_INGEST_MAX_PAYLOAD_BYTES",
            args.max_payload_bytes.to_string(),
        ),
        (
            "AFTERCARE_INGEST_MAX_INFLIGHT_BYTES",
            args.max_inflight_bytes.to_string(),
        ),
        ("AFTERCARE_MODEL_ENABLED", "false".to_owned()),
        ("AFTERCARE_OFFERS_ENABLED", "false".to_owned()),
    ];
    let svc = Service::start(&db, &config.mqtt.url, &client, "copy", &env).await?;
    svc.wait_subscribed().await?;
    let idle_kib = svc.rss_kib();
    svc.stop().await;
    let limits = crate::wire::Limits {
        max_payload_bytes: args.max_payload_bytes,
        ..config.limits()
    };
    let mut generator = Generator::new(args.seed, args.vehicles, Utc::now(), limits);
    let messages: Vec<_> = (0..args.messages)
        .map(|_| generator.next_message())
        .collect();
    let want = Tally::of(&messages);
    eprintln!(
        "bench: fuzz: {} messages, expected {want:?}",
        messages.len()
    );
    let published = publish_all(
        &config.mqtt.url,
        &format!("bench-fuzz-pub-{run}"),
        messages
            .iter()
            .map(|m| (m.topic.clone(), m.payload.clone()))
            .collect(),
        None,
    )
    .await?;
    eprintln!(
        "bench: fuzz: published {} in {:.1}s",
        published.acked,
        published.elapsed.as_secs_f64()
    );
    let svc = Service::start(&db, &config.mqtt.url, &client, "copy", &env).await?;
    let (secs, peak_kib, _) = svc.drain(messages.len()).await?;
    let text = svc.metrics().await.unwrap_or_default();
    svc.stop().await;
    end_session(&config.mqtt.url, &client).await;
    let pool = store::pool(&db, 2).await?;
    let wrong = verify(&pool, &messages, &text).await?;
    let bound_mib = (args.max_inflight_bytes + (16 << 20) + (64 << 10) + (96 << 20)) >> 20;
    println!(
        "\nFuzz: {} messages in {secs:.1}s ({:.0} msg/s): {} stored, {} duplicates, {} dead \
         letters, {} values",
        messages.len(),
        messages.len() as f64 / secs,
        want.stored,
        want.duplicate,
        want.dead_letter,
        want.values
    );
    println!(
        "RSS idle {} MiB, peak {} MiB (bound: idle + {bound_mib} MiB)",
        idle_kib / 1024,
        peak_kib / 1024
    );
    if wrong.is_empty() {
        println!("every message's outcome, every dead letter and every metric as expected");
        Ok(())
    } else {
        for w in wrong.iter().take(20) {
            println!("WRONG: {w}");
        }
        Err(BenchError::Other(format!("{} checks failed", wrong.len())))
    }
}
