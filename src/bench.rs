//! `aftercare bench ingest`: end-to-end ingest throughput against its two limits, in one run
//! on the same messages:
//! (a) the broker's limit: a consumer that acknowledges and discards drains the backlog;
//! (b) the full pipeline: `aftercare serve` (a child process) drains the same backlog into
//!     the database, with its peak RSS sampled;
//! (c) the database's limit: the same rows COPYed (binary) straight into a telemetry table.
//! Each drains a backlog already queued at the broker, so the publisher is not in the timing.

use crate::config::Config;
use crate::simulator::{owned, publish_all, Fleet, PublishError};
use crate::store::copy::TelemetryCopyEncoder;
use crate::store::{self, StoreError};
use chrono::{Duration as ChronoDuration, Utc};
use rumqttc::v5::mqttbytes::v5::{Filter, Packet};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use sqlx::Connection;
use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, clap::Args)]
pub struct IngestBenchArgs {
    /// Messages in the backlog (mixed: single samples, store-and-forward batches, DTC reports).
    #[arg(long, default_value_t = 200_000)]
    pub messages: usize,
    #[arg(long, default_value_t = 2_000)]
    pub vehicles: usize,
    /// Database for the run (dropped and created afresh).
    #[arg(long, default_value = "aftercare_bench")]
    pub database: String,
    /// Write methods to measure for (b): unnest, copy, or both.
    #[arg(long, default_value = "both")]
    pub write_method: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("{0}")]
    Other(String),
}

struct Rate {
    label: String,
    secs: f64,
    messages: usize,
    values: usize,
}

impl Rate {
    fn msgs(&self) -> f64 {
        self.messages as f64 / self.secs
    }
    fn vals(&self) -> f64 {
        self.values as f64 / self.secs
    }
}

pub async fn ingest(config: &Config, args: &IngestBenchArgs) -> Result<(), BenchError> {
    let start = Utc::now() - ChronoDuration::days(20);
    let mut fleet = Fleet::new(42, args.vehicles, start);
    let messages: Vec<_> = (0..args.messages).map(|_| fleet.next_message()).collect();
    let values: usize = messages.iter().map(|m| m.values).sum();
    eprintln!(
        "bench: {} messages, {} signal values, {} vehicles; broker {}",
        messages.len(),
        values,
        args.vehicles,
        config.mqtt.url
    );
    let db_url = fresh_database(&config.database.url, &args.database).await?;
    let run = Utc::now().timestamp();

    // (a) broker limit
    let sub_id = format!("bench-discard-{run}");
    drain_discard(&config.mqtt.url, &sub_id, None).await?; // creates the session
    let published = publish_all(
        &config.mqtt.url,
        &format!("bench-pub-a-{run}"),
        owned(&messages),
        None,
    )
    .await?;
    eprintln!(
        "bench: published {} in {:.1}s ({:.0} msg/s)",
        published.acked,
        published.elapsed.as_secs_f64(),
        published.acked as f64 / published.elapsed.as_secs_f64()
    );
    let secs = drain_discard(&config.mqtt.url, &sub_id, Some(messages.len())).await?;
    let broker = Rate {
        label: "(a) broker: consume + ack, discard".into(),
        secs,
        messages: messages.len(),
        values,
    };
    eprintln!("bench: (a) {:.0} msg/s", broker.msgs());

    // (b) full pipeline, per write method
    let methods: Vec<&str> = match args.write_method.as_str() {
        "both" => vec!["unnest", "copy"],
        m => vec![m],
    };
    let mut pipeline = Vec::new();
    for (i, method) in methods.iter().enumerate() {
        let db = if i == 0 {
            db_url.clone()
        } else {
            fresh_database(&config.database.url, &format!("{}_{method}", args.database)).await?
        };
        let client_id = format!("bench-pipeline-{method}-{run}");
        // First start creates the session; stop it, queue the backlog, start again and time.
        let svc = Service::start(&db, &config.mqtt.url, &client_id, method).await?;
        svc.wait_connected().await?;
        svc.stop().await;
        publish_all(
            &config.mqtt.url,
            &format!("bench-pub-b-{method}-{run}"),
            owned(&messages),
            None,
        )
        .await?;
        let svc = Service::start(&db, &config.mqtt.url, &client_id, method).await?;
        let (secs, peak_rss_kib) = svc.drain(messages.len()).await?;
        let flush = svc
            .counter("aftercare_ingest_flush_seconds_sum")
            .await
            .unwrap_or(0.0);
        let batches = svc
            .counter("aftercare_ingest_flush_seconds_count")
            .await
            .unwrap_or(0.0);
        eprintln!(
            "bench: (b) {method}: {batches} batches, writer busy {flush:.2}s of {secs:.2}s ({:.0}%)",
            100.0 * flush / secs
        );
        svc.stop().await;
        let rate = Rate {
            label: format!("(b) pipeline, write_method={method}"),
            secs,
            messages: messages.len(),
            values,
        };
        eprintln!(
            "bench: {} {:.0} msg/s, peak RSS {} MiB",
            rate.label,
            rate.msgs(),
            peak_rss_kib / 1024
        );
        pipeline.push((rate, peak_rss_kib));
    }

    // (c) database limit: the same rows, COPY straight in.
    let secs = copy_straight_in(&db_url, &messages).await?;
    let database = Rate {
        label: "(c) database: binary COPY of the same rows".into(),
        secs,
        messages: messages.len(),
        values,
    };

    // Leave no sessions behind: an offline session keeps receiving (and the broker keeps
    // queueing) everything published later.
    let mut ids = vec![sub_id.clone()];
    ids.extend(methods.iter().map(|m| format!("bench-pipeline-{m}-{run}")));
    for id in ids {
        end_session(&config.mqtt.url, &id).await;
    }

    println!(
        "\nIngest benchmark: {} messages, {} values, {} vehicles",
        messages.len(),
        values,
        args.vehicles
    );
    println!(
        "{:<46} {:>10} {:>12} {:>9}",
        "", "msg/s", "values/s", "seconds"
    );
    let limit = broker.msgs().min(database.msgs());
    for r in [&broker, &database]
        .into_iter()
        .chain(pipeline.iter().map(|(r, _)| r))
    {
        println!(
            "{:<46} {:>10.0} {:>12.0} {:>9.2}",
            r.label,
            r.msgs(),
            r.vals(),
            r.secs
        );
    }
    println!();
    for (r, rss) in &pipeline {
        println!(
            "{}: {:.0}% of min(a, c); peak RSS {} MiB draining a backlog of {} messages",
            r.label,
            100.0 * r.msgs() / limit,
            rss / 1024,
            r.messages
        );
    }
    Ok(())
}

/// Drops and creates `name` next to the configured database; returns its URL, migrated.
pub(crate) async fn fresh_database(url: &str, name: &str) -> Result<String, BenchError> {
    let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(url);
    let mut admin = sqlx::PgConnection::connect(&format!("{base}/postgres")).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let db_url = format!("{base}/{name}");
    let pool = store::pool(&db_url, 2).await?;
    store::migrate(&pool).await?;
    pool.close().await;
    Ok(db_url)
}

/// Connects with a persistent session and acknowledges everything it receives. With `None`
/// it only creates the session (subscribes) and leaves; with `Some(n)` it returns the seconds
/// taken to receive `n` messages.
async fn drain_discard(
    url: &str,
    client_id: &str,
    expect: Option<usize>,
) -> Result<f64, BenchError> {
    let mut opts = MqttOptions::parse_url(format!("{url}?client_id={client_id}"))
        .map_err(|e| BenchError::Other(e.to_string()))?;
    opts.set_clean_start(false)
        .set_session_expiry_interval(Some(3600))
        .set_manual_acks(true)
        .set_receive_maximum(Some(4096))
        .set_max_packet_size(Some(32 * 1024 * 1024));
    let (client, mut eventloop) = AsyncClient::new(opts, 8192);
    let filters = crate::wire::subscription_filters(None)
        .map(|f| Filter::new(f, QoS::AtLeastOnce))
        .to_vec();
    let mut started: Option<Instant> = None;
    let mut received = 0usize;
    let mut pending: std::collections::VecDeque<rumqttc::v5::mqttbytes::v5::Publish> =
        Default::default();
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        while let Some(p) = pending.front() {
            if client.try_ack(p).is_err() {
                break;
            }
            pending.pop_front();
        }
        if Instant::now() > deadline {
            return Err(BenchError::Other("broker drain did not finish".into()));
        }
        let event = match tokio::time::timeout(Duration::from_secs(10), eventloop.poll()).await {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => return Err(BenchError::Other(format!("broker: {e}"))),
            Err(_) => {
                return Err(BenchError::Other(format!(
                    "broker went quiet after {received} messages"
                )))
            }
        };
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                client
                    .subscribe_many(filters.clone())
                    .await
                    .map_err(|e| BenchError::Other(e.to_string()))?;
            }
            Event::Incoming(Packet::SubAck(_)) if expect.is_none() => break,
            Event::Incoming(Packet::Publish(p)) => {
                started.get_or_insert_with(Instant::now);
                received += 1;
                let mut ack =
                    rumqttc::v5::mqttbytes::v5::Publish::new("", p.qos, bytes::Bytes::new(), None);
                ack.pkid = p.pkid;
                pending.push_back(ack);
                if Some(received) == expect {
                    break;
                }
            }
            _ => {}
        }
    }
    let secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    // Flush the remaining acks before leaving.
    let flush_until = Instant::now() + Duration::from_secs(5);
    while !pending.is_empty() && Instant::now() < flush_until {
        while let Some(p) = pending.front() {
            if client.try_ack(p).is_err() {
                break;
            }
            pending.pop_front();
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), eventloop.poll()).await;
    }
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
    Ok(secs)
}

/// `aftercare serve` as a child process.
struct Service {
    child: tokio::process::Child,
    port: u16,
}

impl Service {
    async fn start(
        db_url: &str,
        mqtt_url: &str,
        client_id: &str,
        method: &str,
    ) -> Result<Service, BenchError> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")
                .map_err(|e| BenchError::Other(e.to_string()))?;
            l.local_addr()
                .map_err(|e| BenchError::Other(e.to_string()))?
                .port()
        };
        let exe = std::env::current_exe().map_err(|e| BenchError::Other(e.to_string()))?;
        let child = tokio::process::Command::new(exe)
            .arg("serve")
            .env("AFTERCARE_DATABASE_URL", db_url)
            .env("AFTERCARE_MQTT_URL", mqtt_url)
            .env("AFTERCARE_MQTT_CLIENT_ID", client_id)
            // A group of its own: an earlier run's offline session in the same group would
            // keep receiving its round-robin share.
            .env("AFTERCARE_MQTT_SHARE_GROUP", client_id)
            .env("AFTERCARE_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("AFTERCARE_INGEST_WRITE_METHOD", method)
            .env(
                "AFTERCARE_INGEST_ROLLUP_INTERVAL_MS",
                std::env::var("AFTERCARE_INGEST_ROLLUP_INTERVAL_MS")
                    .unwrap_or_else(|_| "2000".into()),
            )
            .env("AFTERCARE_LOG_FILTER", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BenchError::Other(format!("cannot start aftercare serve: {e}")))?;
        Ok(Service { child, port })
    }

    async fn metrics(&self) -> Option<String> {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        Some(out)
    }

    async fn counter(&self, name: &str) -> Option<f64> {
        let text = self.metrics().await?;
        Some(
            text.lines()
                .filter(|l| l.starts_with(name) && !l.starts_with('#'))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        )
    }

    async fn wait_connected(&self) -> Result<(), BenchError> {
        for _ in 0..600 {
            if self.counter("aftercare_mqtt_connected").await == Some(1.0) {
                // Give the subscription a moment to be acknowledged.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(BenchError::Other(
            "service did not connect to the broker".into(),
        ))
    }

    /// Seconds from connecting to `n` messages committed and acknowledged; peak RSS (KiB).
    async fn drain(&self, n: usize) -> Result<(f64, u64), BenchError> {
        self.wait_connected().await?;
        let started = Instant::now();
        let mut peak = 0u64;
        loop {
            peak = peak.max(self.rss_kib());
            let done = self
                .counter("aftercare_ingest_messages_total")
                .await
                .unwrap_or(0.0);
            if done as usize >= n {
                return Ok((started.elapsed().as_secs_f64(), peak));
            }
            if started.elapsed() > Duration::from_secs(3600) {
                return Err(BenchError::Other(format!(
                    "pipeline stalled at {done} of {n}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn rss_kib(&self) -> u64 {
        self.child.id().map_or(0, rss_kib)
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

/// Binary COPY of every telemetry value into a fresh copy of the telemetry table (same key),
/// in chunks like the pipeline's batches. Returns seconds.
async fn copy_straight_in(
    db_url: &str,
    messages: &[crate::simulator::Generated],
) -> Result<f64, BenchError> {
    let mut conn = sqlx::PgConnection::connect(db_url).await?;
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS bench_copy;
         CREATE TABLE bench_copy (LIKE telemetry INCLUDING ALL);",
    )
    .execute(&mut conn)
    .await?;
    // Ids as the pipeline would assign them: one per VIN and per signal name.
    let mut vehicles: HashMap<String, i32> = HashMap::new();
    let mut signals: HashMap<String, i32> = HashMap::new();
    let limits = crate::wire::Limits {
        max_age: ChronoDuration::days(3650),
        ..Default::default()
    };
    let now = Utc::now();
    let mut rows: Vec<(i32, i32, chrono::DateTime<Utc>, f64)> = Vec::new();
    for m in messages {
        if let Ok(crate::wire::Message::Telemetry { vin, samples }) =
            crate::wire::parse_message(&m.topic, &m.payload, now, &limits)
        {
            let next = vehicles.len() as i32 + 1;
            let v = *vehicles.entry(vin.as_str().to_owned()).or_insert(next);
            for s in samples {
                for (name, value) in s.values {
                    let next = signals.len() as i32 + 1;
                    let sig = *signals.entry(name).or_insert(next);
                    rows.push((v, sig, s.ts, value));
                }
            }
        }
    }
    let started = Instant::now();
    for chunk in rows.chunks(50_000) {
        let mut enc = TelemetryCopyEncoder::with_capacity(chunk.len());
        for (v, s, ts, value) in chunk {
            enc.push(*v, *s, *ts, *value);
        }
        let mut tx = conn.begin().await?;
        let mut copy = tx
            .copy_in_raw("COPY bench_copy FROM STDIN (FORMAT binary)")
            .await?;
        copy.send(enc.finish()).await?;
        copy.finish().await?;
        tx.commit().await?;
    }
    let secs = started.elapsed().as_secs_f64();
    sqlx::query("DROP TABLE bench_copy")
        .execute(&mut conn)
        .await?;
    Ok(secs)
}

/// Deletes a persistent session: connect with clean start and no expiry, then leave.
async fn end_session(url: &str, client_id: &str) {
    let Ok(mut opts) = MqttOptions::parse_url(format!("{url}?client_id={client_id}")) else {
        return;
    };
    opts.set_clean_start(true)
        .set_session_expiry_interval(Some(0));
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::ConnAck(_)) = event {
                let _ = client.try_disconnect();
            }
            if let Event::Outgoing(rumqttc::Outgoing::Disconnect) = event {
                break;
            }
        }
    })
    .await;
}

/// Resident set size of a process in KiB, from /proc (0 when unavailable).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
