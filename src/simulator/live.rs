//! Live mode: the fleet drives in compressed simulated time and publishes through the broker
//! (QoS 1, every PUBACK awaited), at most `rate` messages a second; it registers the fleet's
//! profiles and posts service records to the API as their jobs complete, as a telematics
//! platform and dealer systems would.

use super::delivery::Delivery;
use super::engine::{DayOutput, Simulation};
use super::progress::Progress;
use super::publish::{publish_stream_with, PublishStats};
use super::summary::Summary;
use super::truth::Truth;
use super::SimulateError;
use crate::store::profiles::Profile;
use crate::store::service_records::NewServiceRecord;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::time::Instant;

/// How long a failing API request is retried before the run gives up.
const RETRY_FOR: Duration = Duration::from_secs(120);

/// The HTTP API the simulator registers profiles and posts service records to.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(base: &str, key: &str) -> ApiClient {
        ApiClient {
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// Sends a request, retrying transport errors and 5xx answers for up to `RETRY_FOR`
    /// (the service restarting, its database briefly away), as a platform's uplink would.
    /// Profiles and service records are idempotent, so a repeat changes nothing.
    async fn send(
        &self,
        request: impl Fn() -> reqwest::RequestBuilder,
        what: &str,
    ) -> Result<serde_json::Value, SimulateError> {
        let deadline = Instant::now() + RETRY_FOR;
        let mut pause = Duration::from_millis(100);
        loop {
            let error = match request().bearer_auth(&self.key).send().await {
                Err(e) => format!("{what}: {e}"),
                Ok(response) => {
                    let status = response.status();
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    if status.is_success() {
                        return Ok(body);
                    }
                    let error = format!("{what}: HTTP {status}: {body}");
                    if !status.is_server_error() {
                        return Err(SimulateError::Api(error));
                    }
                    error
                }
            };
            if Instant::now() + pause > deadline {
                return Err(SimulateError::Api(error));
            }
            tracing::warn!(%error, "API request failed; retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    pub async fn put_profile(&self, vin: &str, profile: &Profile) -> Result<(), SimulateError> {
        let url = format!("{}/v1/vehicles/{vin}", self.base);
        self.send(
            || self.http.put(&url).json(profile),
            &format!("PUT profile of {vin}"),
        )
        .await
        .map(|_| ())
    }

    /// Posts records as one array; returns how many were new.
    pub async fn post_records(&self, records: &[NewServiceRecord]) -> Result<u64, SimulateError> {
        if records.is_empty() {
            return Ok(0);
        }
        let url = format!("{}/v1/service-records", self.base);
        let answer = self
            .send(
                || self.http.post(&url).json(records),
                "POST service records",
            )
            .await?;
        Ok(answer["created"].as_u64().unwrap_or(0))
    }
}

pub struct LiveOptions {
    pub mqtt: crate::config::MqttConfig,
    pub client_id: String,
    /// Simulated seconds per wall-clock second (infinite: as fast as allowed).
    pub compression: f64,
    /// Messages per second at most.
    pub rate: Option<f64>,
    /// Stop after this long (wall clock).
    pub duration: Option<Duration>,
    /// Stop after this many messages.
    pub max_messages: Option<u64>,
    pub api: Option<ApiClient>,
}

pub struct LiveReport {
    pub summary: Summary,
    pub truth: Truth,
    pub publish: PublishStats,
    pub records_created: u64,
}

/// Runs `sim` live until it ends or a limit is reached.
pub async fn run(
    sim: Simulation,
    opts: LiveOptions,
    progress: &Progress,
) -> Result<LiveReport, SimulateError> {
    let mut summary = Summary {
        vehicles: sim.config().vehicles,
        ..Summary::default()
    };
    let sim_start = sim.config().start;
    let days = sim.config().days;
    if let Some(api) = &opts.api {
        for (vin, profile) in sim.profiles() {
            api.put_profile(&vin, &profile).await?;
        }
    }
    let (publish_tx, publish_rx) = tokio::sync::mpsc::channel::<(String, Bytes)>(1024);
    let (mqtt, client_id) = (opts.mqtt.clone(), opts.client_id.clone());
    let publisher =
        tokio::spawn(async move { publish_stream_with(&mqtt, &client_id, publish_rx).await });
    let (days_tx, mut days_rx) = tokio::sync::mpsc::channel::<DayOutput>(2);
    let generator = std::thread::spawn(move || {
        let mut sim = sim;
        while let Some(day) = sim.next_day() {
            if days_tx.blocking_send(day).is_err() {
                break;
            }
        }
        sim.into_truth()
    });

    let started = Instant::now();
    let mut pacer = Pacer {
        started,
        sim_start,
        compression: opts.compression,
        interval: opts
            .rate
            .map(|r| Duration::from_secs_f64(1.0 / r.max(1e-6))),
        next_slot: started,
    };
    let mut records_created = 0;
    let mut stopped_at: Option<DateTime<Utc>> = None;
    'days: while let Some(day) = days_rx.recv().await {
        let mut records = day.records.into_iter().peekable();
        for d in day.deliveries {
            let out_of_budget = opts.max_messages.is_some_and(|m| summary.messages >= m)
                || opts
                    .duration
                    .is_some_and(|limit| started.elapsed() >= limit);
            if out_of_budget {
                stopped_at = Some(d.at);
                break 'days;
            }
            pacer.wait(d.at).await;
            // Jobs completed by now are posted first.
            let mut due = Vec::new();
            while let Some(r) = records.next_if(|r| r.performed_at <= d.at) {
                due.push(r);
            }
            records_created += post(&opts.api, &due, &mut summary).await?;
            send(&publish_tx, &d).await?;
            summary.add_delivery(&d);
        }
        let rest: Vec<NewServiceRecord> = records.collect();
        records_created += post(&opts.api, &rest, &mut summary).await?;
        summary.days = summary.days.max((day.day + 1).min(days));
        progress.day(day.day, summary.values);
    }
    drop(days_rx);
    drop(publish_tx);
    let publish = publisher
        .await
        .map_err(|e| SimulateError::Other(format!("publisher task: {e}")))??;
    let mut truth = generator
        .join()
        .map_err(|_| SimulateError::Other("the generator thread panicked".into()))?;
    if let Some(stop) = stopped_at {
        truth.failures.retain(|f| f.failed_at <= stop);
        for f in &mut truth.failures {
            f.repaired_at = f.repaired_at.filter(|r| *r <= stop);
        }
        truth.preventive.retain(|p| p.found_at <= stop);
    }
    summary.add_truth(&truth);
    Ok(LiveReport {
        summary,
        truth,
        publish,
        records_created,
    })
}

async fn post(
    api: &Option<ApiClient>,
    records: &[NewServiceRecord],
    summary: &mut Summary,
) -> Result<u64, SimulateError> {
    let Some(api) = api else {
        return Ok(0);
    };
    let mut created = 0;
    for chunk in records.chunks(500) {
        created += api.post_records(chunk).await?;
        summary.add_records(chunk);
    }
    Ok(created)
}

async fn send(
    tx: &tokio::sync::mpsc::Sender<(String, Bytes)>,
    d: &Delivery,
) -> Result<(), SimulateError> {
    tx.send((
        d.message.topic.clone(),
        Bytes::from(d.message.payload.clone()),
    ))
    .await
    .map_err(|_| SimulateError::Other("the publisher stopped".into()))
}

/// Maps simulated time to wall time and spaces messages to the rate limit.
struct Pacer {
    started: Instant,
    sim_start: DateTime<Utc>,
    compression: f64,
    interval: Option<Duration>,
    next_slot: Instant,
}

impl Pacer {
    async fn wait(&mut self, at: DateTime<Utc>) {
        if self.compression.is_finite() && self.compression > 0.0 {
            let sim_secs = (at - self.sim_start).num_milliseconds().max(0) as f64 / 1000.0;
            let due = self.started + Duration::from_secs_f64(sim_secs / self.compression);
            tokio::time::sleep_until(due).await;
        }
        if let Some(interval) = self.interval {
            let now = Instant::now();
            if self.next_slot > now {
                tokio::time::sleep_until(self.next_slot).await;
            }
            self.next_slot = self.next_slot.max(now) + interval;
        }
    }
}
