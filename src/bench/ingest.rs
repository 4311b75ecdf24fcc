//! `aftercare bench ingest`: end-to-end ingest throughput against its two limits, in one run
//! on the same messages:
//! (a) the broker's limit: a consumer that acknowledges and discards drains the backlog;
//! (b) the full pipeline: `aftercare serve` (a child process) drains the same backlog into
//!     the database, with its peak RSS sampled;
//! (c) the database's limit: the same rows COPYed (binary) straight into a sample table.
//! Each drains a backlog already queued at the broker, so the publisher is not in the timing.

use super::{
    cores, end_session, fresh_database, machine_cpu_ticks, named_cpu_secs, own_cpu_secs,
    BenchError, Service,
};
use crate::config::Config;
use crate::simulator::{owned, publish_all, Fleet};
use crate::store;
use crate::store::copy::SampleCopyEncoder;
use chrono::{Duration as ChronoDuration, Utc};
use rumqttc::v5::mqttbytes::v5::{Filter, Packet};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use sqlx::{ConnectOptions, Connection};
use std::collections::HashMap;
use std::time::{Duration, Instant};

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
    #[arg(long, default_value = "copy")]
    pub write_method: String,
    /// Repeat the whole measurement (a, b, c) this many times and print medians: the machine
    /// is shared, so single runs are noisy.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Also run (b) with the service connected over TLS to this listener of the same broker
    /// (e.g. mqtts://127.0.0.1:8884), and print its throughput as a ratio to plain TCP.
    #[arg(long, requires = "tls_certs")]
    pub tls_url: Option<String>,
    /// With --tls-url: the directory `aftercare certs` wrote: ca.pem, and aftercare.pem and
    /// aftercare.key (the service's client certificate).
    #[arg(long)]
    pub tls_certs: Option<std::path::PathBuf>,
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

/// What one run measured.
struct RunFigures {
    broker: Rate,
    /// Binary COPY on 1, 2, .. connections at once, up to the pipeline's writers (at least 2).
    copy: Vec<Rate>,
    /// CPU seconds the machine spent on each COPY drain, this process's own excluded.
    copy_cpu: Vec<f64>,
    pipeline: Vec<Pipeline>,
}

struct Pipeline {
    rate: Rate,
    peak_rss_kib: u64,
    /// CPU time of the service process, seconds.
    service_cpu: f64,
    /// Share of the machine's CPU time that was busy (all processes, both cores).
    machine_busy: f64,
    /// CPU seconds of the broker (every `mosquitto` process) during the drain.
    broker_cpu: f64,
    /// CPU seconds of the rest of the machine (the database, mostly) during the drain.
    database_cpu: f64,
}

impl RunFigures {
    /// The database's limit: the faster of the COPY variants.
    fn database(&self) -> &Rate {
        self.copy
            .iter()
            .max_by(|a, b| a.msgs().total_cmp(&b.msgs()))
            .unwrap_or(&self.broker)
    }

    fn limit(&self) -> f64 {
        self.broker.msgs().min(self.database().msgs())
    }
}

pub async fn ingest(config: &Config, args: &IngestBenchArgs) -> Result<(), BenchError> {
    let start = Utc::now() - ChronoDuration::days(20);
    let mut fleet = Fleet::new(42, args.vehicles, start);
    let messages: Vec<_> = (0..args.messages).map(|_| fleet.next_message()).collect();
    let values: usize = messages.iter().map(|m| m.values).sum();
    eprintln!(
        "bench: {} messages, {} signal values, {} vehicles; broker {}; {} run(s)",
        messages.len(),
        values,
        args.vehicles,
        crate::secret::redact_url(&config.mqtt.url),
        args.runs
    );
    let mut runs = Vec::new();
    for run in 1..=args.runs.max(1) {
        let figures = one_run(config, args, &messages, values).await?;
        print_run(run, &figures, &messages, values, args.vehicles);
        runs.push(figures);
    }
    if runs.len() > 1 {
        print_medians(&runs);
    }
    Ok(())
}

/// One measurement of (a), (b) and (c). Every persistent session it creates is ended as soon
/// as its drain is measured, and again on the way out whatever happened: an offline session
/// keeps receiving (and the broker keeps queueing and saving) everything published later,
/// which would load the broker during the next drains.
async fn one_run(
    config: &Config,
    args: &IngestBenchArgs,
    messages: &[crate::simulator::Generated],
    values: usize,
) -> Result<RunFigures, BenchError> {
    let run = Utc::now().timestamp();
    let mut sessions = vec![format!("bench-discard-{run}")];
    sessions.extend(
        pipelines(args)
            .iter()
            .map(|(m, tls)| format!("bench-pipeline-{m}{}-{run}", if *tls { "-tls" } else { "" })),
    );
    let figures = measure(config, args, messages, values, &sessions).await;
    for id in &sessions {
        end_session(&config.mqtt.url, id).await;
    }
    figures
}

fn methods(args: &IngestBenchArgs) -> Vec<&str> {
    match args.write_method.as_str() {
        "both" => vec!["unnest", "copy"],
        m => vec![m],
    }
}

/// The (b) runs: each write method over plain TCP, then over TLS with `--tls-url`.
fn pipelines(args: &IngestBenchArgs) -> Vec<(&str, bool)> {
    let plain = methods(args).into_iter().map(|m| (m, false));
    let tls = methods(args)
        .into_iter()
        .filter(|_| args.tls_url.is_some())
        .map(|m| (m, true));
    plain.chain(tls).collect()
}

/// How the service child connects over TLS: the URL and `aftercare certs`' files, as env.
fn tls_env(args: &IngestBenchArgs) -> Vec<(&'static str, String)> {
    let (Some(url), Some(dir)) = (&args.tls_url, &args.tls_certs) else {
        return Vec::new();
    };
    let file = |name: &str| dir.join(name).display().to_string();
    vec![
        ("AFTERCARE_MQTT_URL", url.clone()),
        ("AFTERCARE_MQTT_CA_FILE", file("ca.pem")),
        ("AFTERCARE_MQTT_CERT_FILE", file("aftercare.pem")),
        ("AFTERCARE_MQTT_KEY_FILE", file("aftercare.key")),
    ]
}

async fn measure(
    config: &Config,
    args: &IngestBenchArgs,
    messages: &[crate::simulator::Generated],
    values: usize,
    sessions: &[String],
) -> Result<RunFigures, BenchError> {
    let db_url = fresh_database(&config.database.url, &args.database).await?;
    let run = Utc::now().timestamp();
    let rate = |label: String, secs: f64| Rate {
        label,
        secs,
        messages: messages.len(),
        values,
    };

    // (a) broker limit
    let sub_id = &sessions[0];
    drain_discard(&config.mqtt.url, sub_id, None).await?; // creates the session
    let published = publish_all(
        &config.mqtt.url,
        &format!("bench-pub-a-{run}"),
        owned(messages),
        None,
    )
    .await?;
    eprintln!(
        "bench: published {} in {:.1}s ({:.0} msg/s)",
        published.acked,
        published.elapsed.as_secs_f64(),
        published.acked as f64 / published.elapsed.as_secs_f64()
    );
    let secs = drain_discard(&config.mqtt.url, sub_id, Some(messages.len())).await?;
    end_session(&config.mqtt.url, sub_id).await;
    let broker = rate("(a) broker: consume + ack, discard".into(), secs);
    eprintln!("bench: (a) {:.0} msg/s", broker.msgs());

    // (b) full pipeline, per write method
    let mut pipeline = Vec::new();
    for (i, (method, tls)) in pipelines(args).into_iter().enumerate() {
        let env = if tls { tls_env(args) } else { Vec::new() };
        let db = if i == 0 {
            db_url.clone()
        } else {
            fresh_database(&config.database.url, &format!("{}_{method}", args.database)).await?
        };
        let client_id = &sessions[1 + i];
        // First start creates the session; stop it, queue the backlog, start again and time.
        let svc = Service::start(&db, &config.mqtt.url, client_id, method, &env).await?;
        svc.wait_subscribed().await?;
        svc.stop().await;
        publish_all(
            &config.mqtt.url,
            &format!("bench-pub-b-{method}-{run}"),
            owned(messages),
            None,
        )
        .await?;
        let svc = Service::start(&db, &config.mqtt.url, client_id, method, &env).await?;
        let machine_before = machine_cpu_ticks();
        let (service_before, broker_before, own_before) =
            (svc.cpu_secs(), named_cpu_secs("mosquitto"), own_cpu_secs());
        let (secs, peak_rss_kib, peak_inflight) = svc.drain(messages.len()).await?;
        let machine = machine_cpu_ticks().since(machine_before);
        let service_cpu = svc.cpu_secs() - service_before;
        let broker_cpu = named_cpu_secs("mosquitto") - broker_before;
        let database_cpu =
            (machine.busy_secs() - service_cpu - broker_cpu - (own_cpu_secs() - own_before))
                .max(0.0);
        let batches = svc
            .counter("aftercare_ingest_flush_seconds_count")
            .await
            .unwrap_or(0.0);
        let fold = svc
            .counter("aftercare_rollup_fold_seconds_total")
            .await
            .unwrap_or(0.0);
        let stages = svc
            .labelled("aftercare_ingest_stage_seconds_total", "stage")
            .await;
        // Resolving ids and encoding rows happen before a batch takes a writer slot, and
        // "queued" is the wait for one: the rest is time spent holding a slot.
        let off_slot = ["resolve", "prepare", "queued"];
        let in_slot: f64 = stages
            .iter()
            .filter(|(stage, _)| !off_slot.contains(&stage.as_str()))
            .map(|(_, s)| s)
            .sum();
        let writers = config.ingest.writers as f64;
        eprintln!(
            "bench: (b) {method}: {batches} batches; writer slots busy {:.0}% ({in_slot:.2}s of \
             {writers} × {secs:.2}s); in flight at most {peak_inflight} messages; service CPU \
             {service_cpu:.2}s; machine CPU busy {:.0}%; rollup fold busy {fold:.2}s",
            100.0 * in_slot / (writers * secs),
            100.0 * machine.busy()
        );
        for (stage, took) in &stages {
            let share = if off_slot.contains(&stage.as_str()) {
                "off the writer slot".to_owned()
            } else {
                format!("{:>4.1}% of slot time", 100.0 * took / in_slot.max(1e-9))
            };
            eprintln!("bench: (b) {method}: stage {stage:<14} {took:>7.2}s ({share})");
        }
        svc.stop().await;
        end_session(&config.mqtt.url, client_id).await;
        match sample_table_bytes(&db).await {
            Ok((bytes, stored)) => eprintln!(
                "bench: (b) {method}: sample table {:.1} MiB (heap, index and TOAST) for \
                 {stored} stored values: {:.1} bytes per value",
                bytes as f64 / 1048576.0,
                bytes as f64 / stored.max(1) as f64
            ),
            Err(e) => eprintln!("bench: cannot size the sample table: {e}"),
        }
        let over = if tls { ", TLS" } else { "" };
        let r = rate(format!("(b) pipeline, write_method={method}{over}"), secs);
        eprintln!(
            "bench: {} {:.0} msg/s, peak RSS {} MiB",
            r.label,
            r.msgs(),
            peak_rss_kib / 1024
        );
        pipeline.push(Pipeline {
            rate: r,
            peak_rss_kib,
            service_cpu,
            machine_busy: machine.busy(),
            broker_cpu,
            database_cpu,
        });
    }

    // (c) database limit: the same rows, COPY straight in, on one connection and on several.
    let mut copy = Vec::new();
    let mut copy_cpu = Vec::new();
    for streams in 1..=config.ingest.writers.max(2) {
        let (machine_before, own_before) = (machine_cpu_ticks(), own_cpu_secs());
        let secs = copy_straight_in(&db_url, messages, streams).await?;
        let machine = machine_cpu_ticks().since(machine_before);
        copy_cpu.push((machine.busy_secs() - (own_cpu_secs() - own_before)).max(0.0));
        let label = match streams {
            1 => "(c) database: binary COPY, 1 connection".to_owned(),
            n => format!("(c) database: binary COPY, {n} connections"),
        };
        let r = rate(label, secs);
        eprintln!("bench: {} {:.0} msg/s", r.label, r.msgs());
        copy.push(r);
    }

    Ok(RunFigures {
        broker,
        copy,
        copy_cpu,
        pipeline,
    })
}

fn print_run(
    run: usize,
    f: &RunFigures,
    messages: &[crate::simulator::Generated],
    values: usize,
    vehicles: usize,
) {
    println!(
        "\nIngest benchmark, run {run}: {} messages, {} values, {} vehicles",
        messages.len(),
        values,
        vehicles
    );
    println!(
        "{:<46} {:>10} {:>12} {:>9}",
        "", "msg/s", "values/s", "seconds"
    );
    for r in std::iter::once(&f.broker)
        .chain(&f.copy)
        .chain(f.pipeline.iter().map(|p| &p.rate))
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
    for (tls, plain) in tls_pairs(&f.pipeline) {
        println!(
            "{}: {:.2} of the plain-TCP pipeline's throughput (service CPU {:.1}s vs {:.1}s)",
            tls.rate.label,
            tls.rate.msgs() / plain.rate.msgs(),
            tls.service_cpu,
            plain.service_cpu
        );
    }
    for p in &f.pipeline {
        println!(
            "{}: {:.2} of min(a, c) (c = {}); peak RSS {} MiB; service CPU {:.1}s; \
             machine CPU busy {:.0}%",
            p.rate.label,
            p.rate.msgs() / f.limit(),
            f.database().label,
            p.peak_rss_kib / 1024,
            p.service_cpu,
            100.0 * p.machine_busy
        );
        // What one message costs in CPU, and so the most this machine could drain.
        let per_msg = |secs: f64| 1e6 * secs / messages.len() as f64;
        let total = p.service_cpu + p.broker_cpu + p.database_cpu;
        let copy_best = f.copy_cpu.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "{}: CPU per message {:.0} µs (service {:.0}, broker {:.0}, database and the rest \
             {:.0}); COPY alone {:.0} µs. On {} cores the pipeline cannot beat {:.0} msg/s, \
             COPY alone {:.0} msg/s.",
            p.rate.label,
            per_msg(total),
            per_msg(p.service_cpu),
            per_msg(p.broker_cpu),
            per_msg(p.database_cpu),
            per_msg(copy_best),
            cores(),
            cores() as f64 * messages.len() as f64 / total.max(1e-9),
            cores() as f64 * messages.len() as f64 / copy_best.max(1e-9),
        );
    }
}

/// Each TLS pipeline with the plain one of the same write method.
fn tls_pairs(pipeline: &[Pipeline]) -> Vec<(&Pipeline, &Pipeline)> {
    pipeline
        .iter()
        .filter_map(|t| {
            let plain_label = t.rate.label.strip_suffix(", TLS")?;
            let plain = pipeline.iter().find(|p| p.rate.label == plain_label)?;
            Some((t, plain))
        })
        .collect()
}

fn print_medians(runs: &[RunFigures]) {
    fn median(mut xs: Vec<f64>) -> f64 {
        xs.sort_by(f64::total_cmp);
        let n = xs.len();
        if n % 2 == 1 {
            xs[n / 2]
        } else {
            (xs[n / 2 - 1] + xs[n / 2]) / 2.0
        }
    }
    println!(
        "\nMedians of {} runs (each ratio taken within its own run):",
        runs.len()
    );
    println!("{:<46} {:>10}", "", "msg/s");
    println!(
        "{:<46} {:>10.0}",
        runs[0].broker.label,
        median(runs.iter().map(|r| r.broker.msgs()).collect())
    );
    for (i, c) in runs[0].copy.iter().enumerate() {
        println!(
            "{:<46} {:>10.0}",
            c.label,
            median(runs.iter().map(|r| r.copy[i].msgs()).collect())
        );
    }
    for (i, p) in runs[0].pipeline.iter().enumerate() {
        let ratio = median(
            runs.iter()
                .map(|r| r.pipeline[i].rate.msgs() / r.limit())
                .collect(),
        );
        let ratio_c1 = median(
            runs.iter()
                .map(|r| r.pipeline[i].rate.msgs() / r.broker.msgs().min(r.copy[0].msgs()))
                .collect(),
        );
        println!(
            "{:<46} {:>10.0}   {:.2} of min(a, c); {:.2} of min(a, c on 1 connection); \
             peak RSS {} MiB (max)",
            p.rate.label,
            median(runs.iter().map(|r| r.pipeline[i].rate.msgs()).collect()),
            ratio,
            ratio_c1,
            runs.iter()
                .map(|r| r.pipeline[i].peak_rss_kib)
                .max()
                .unwrap_or(0)
                / 1024
        );
    }
    let pairs = tls_pairs(&runs[0].pipeline).len();
    for k in 0..pairs {
        let ratio = median(
            runs.iter()
                .map(|r| {
                    let (tls, plain) = tls_pairs(&r.pipeline)[k];
                    tls.rate.msgs() / plain.rate.msgs()
                })
                .collect(),
        );
        let (tls, _) = tls_pairs(&runs[0].pipeline)[k];
        println!(
            "{}: {ratio:.2} of plain TCP (median of per-run ratios)",
            tls.rate.label
        );
    }
}

/// Bytes of the sample table (every partition with its indexes and TOAST), and the values it
/// holds.
async fn sample_table_bytes(db_url: &str) -> Result<(i64, i64), BenchError> {
    let mut conn = sqlx::PgConnection::connect(db_url).await?;
    Ok(sqlx::query_as(
        "SELECT pg_total_relation_size('samples')
                + coalesce((SELECT sum(pg_total_relation_size(inhrelid))::int8
                            FROM pg_inherits WHERE inhparent = 'samples'::regclass), 0),
                (SELECT coalesce(sum(cardinality(signal_ids)), 0)::int8 FROM samples)",
    )
    .fetch_one(&mut conn)
    .await?)
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

/// Binary COPY of every telemetry sample into a fresh copy of the sample table (same key), in
/// chunks of one transaction each (larger than the pipeline's batches, sorted like them),
/// dealt round-robin to `streams` connections working at once. Returns seconds.
async fn copy_straight_in(
    db_url: &str,
    messages: &[crate::simulator::Generated],
    streams: usize,
) -> Result<f64, BenchError> {
    // The pipeline's own connection options (TLS mode included), for a like-for-like limit.
    let options = store::connect_options(db_url)?;
    let mut conn = options.connect().await?;
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS bench_copy;
         CREATE TABLE bench_copy (LIKE samples INCLUDING ALL);",
    )
    .execute(&mut conn)
    .await?;
    // Ids as the pipeline would assign them: one per VIN and per signal name.
    let mut vehicles: HashMap<String, i32> = HashMap::new();
    let mut signals: HashMap<String, i32> = HashMap::new();
    let limits = crate::wire::Limits {
        max_age: ChronoDuration::days(3650),
        retention: ChronoDuration::days(3650),
        ..Default::default()
    };
    let now = Utc::now();
    type Row = (i32, chrono::DateTime<Utc>, i64, Vec<i32>, Vec<f64>);
    let mut rows: Vec<Row> = Vec::new();
    for m in messages {
        if let Ok(crate::wire::Message::Telemetry { vin, samples }) =
            crate::wire::parse_message(&m.topic, &m.payload, now, &limits)
        {
            let next = vehicles.len() as i32 + 1;
            let v = *vehicles.entry(vin.as_str().to_owned()).or_insert(next);
            for s in samples {
                let mut pairs: Vec<(i32, f64)> = s
                    .values
                    .into_iter()
                    .map(|(name, value)| {
                        let next = signals.len() as i32 + 1;
                        (*signals.entry(name).or_insert(next), value)
                    })
                    .collect();
                pairs.sort_unstable_by_key(|p| p.0);
                let (ids, values) = pairs.into_iter().unzip();
                rows.push((v, s.ts, s.seq, ids, values));
            }
        }
    }
    // The generator repeats some keys (redeliveries): the first copy is kept, as ingest would.
    let mut seen = std::collections::HashSet::new();
    rows.retain(|r| seen.insert((r.0, r.1, r.2)));
    // Chunk i goes to connection i mod streams.
    let streams = streams.max(1);
    let mut dealt: Vec<Vec<Vec<u8>>> = (0..streams).map(|_| Vec::new()).collect();
    for (i, chunk) in rows.chunks_mut(2_500).enumerate() {
        // In key order, as the pipeline sends its rows: index inserts land side by side.
        chunk.sort_unstable_by_key(|r| (r.0, r.1, r.2));
        let values = chunk.iter().map(|r| r.4.len()).sum();
        let mut enc = SampleCopyEncoder::with_capacity(chunk.len(), values);
        for (v, ts, seq, ids, values) in chunk.iter() {
            enc.push(*v, *ts, *seq, now, ids, values);
        }
        dealt[i % streams].push(enc.finish());
    }
    let mut conns = Vec::new();
    for _ in 0..streams {
        conns.push(options.connect().await?);
    }
    let started = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .zip(dealt)
        .map(|(mut c, chunks)| {
            tokio::spawn(async move {
                for data in chunks {
                    let mut tx = c.begin().await?;
                    let mut copy = tx
                        .copy_in_raw("COPY bench_copy FROM STDIN (FORMAT binary)")
                        .await?;
                    copy.send(data).await?;
                    copy.finish().await?;
                    tx.commit().await?;
                }
                Ok::<_, sqlx::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| BenchError::Other(format!("COPY task failed: {e}")))??;
    }
    let secs = started.elapsed().as_secs_f64();
    sqlx::query("DROP TABLE bench_copy")
        .execute(&mut conn)
        .await?;
    Ok(secs)
}
