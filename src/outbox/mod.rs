//! The outbox dispatcher: delivers the events that state changes wrote to `outbox` — signed
//! webhooks (HMAC-SHA256 over timestamp and body, an idempotency key per event, exponential
//! backoff) and QoS 1 MQTT messages to `v1/vehicles/{vin}/offers`. A row is marked delivered
//! in the transaction that claimed it, only after the receiver acknowledged it: a crash
//! before that sends it again with the same key, so nothing is lost and receivers that keep
//! the keys they saw never act twice.

use crate::config::{Config, NotifyConfig};
use crate::metrics::{ChannelLabel, Metrics};
use crate::store::outbox::{self as store, Pending};
use crate::store::StoreError;
use chrono::{Duration, Utc};
use hmac::{Hmac, Mac};
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use sha2::Sha256;
use sqlx::PgPool;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

pub const SIGNATURE_HEADER: &str = "aftercare-signature";
pub const TIMESTAMP_HEADER: &str = "aftercare-timestamp";
pub const EVENT_HEADER: &str = "aftercare-event";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox publisher: {0}")]
    Mqtt(#[from] crate::mqtt::MqttError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot build the webhook client: {0}")]
    Http(String),
}

/// `v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`: what receivers recompute.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature in constant time.
pub fn verify(secret: &[u8], timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(sig) = header.strip_prefix("v1=").and_then(|h| hex::decode(h).ok()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Delay before attempt `attempts + 1`: base doubled per failed attempt, capped.
pub fn backoff(cfg: &NotifyConfig, attempts: i32) -> Duration {
    let exp = attempts.clamp(0, 30) as u32;
    let ms = cfg
        .retry_base_ms
        .saturating_mul(1u64 << exp)
        .min(cfg.retry_max_ms);
    Duration::milliseconds(ms as i64)
}

struct Webhook {
    client: reqwest::Client,
    url: String,
    secret: crate::secret::Secret,
}

/// The webhook client: verifies `https://` receivers against the system's roots plus
/// `notify.webhook_ca_file` (on the process's one TLS stack), and follows no redirect (one to
/// elsewhere, or to plain HTTP, would take the signed payload with it).
fn webhook_client(cfg: &NotifyConfig) -> Result<reqwest::Client, OutboxError> {
    let tls = crate::tls::client_config(crate::tls::ClientFiles {
        link: "webhooks (notify.webhook_url)",
        ca: ("notify.webhook_ca_file", cfg.webhook_ca_file.as_deref()),
        cert: ("", None),
        key: ("", None),
    })?;
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(cfg.webhook_timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .use_preconfigured_tls(tls)
        .build()
        .map_err(|e| OutboxError::Http(e.to_string()))
}

/// An error and its causes on one line (a TLS failure is a cause of "error sending request"),
/// without the URL, which may carry a token.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Webhook {
    async fn send(&self, row: &Pending) -> Result<(), String> {
        let body = serde_json::to_vec(&row.payload).map_err(|e| e.to_string())?;
        let ts = Utc::now().timestamp();
        let resp = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header(EVENT_HEADER, &row.kind)
            .header(IDEMPOTENCY_HEADER, &row.event_key)
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(
                SIGNATURE_HEADER,
                signature(self.secret.expose().as_bytes(), ts, &body),
            )
            .body(body)
            .send()
            .await
            .map_err(describe)?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("receiver answered {}", resp.status()))
        }
    }
}

/// A QoS 1 publisher that sends one message at a time and waits for its PUBACK. PUBACKs
/// carry no reference to the event, so a publish that fails or times out ends the
/// connection: a late PUBACK of it can never be taken for the next event's (which would
/// mark that one delivered unsent).
struct Publisher {
    // Boxed: the options are large next to the webhook channel.
    options: Box<MqttOptions>,
    client: AsyncClient,
    acks: mpsc::Receiver<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    fn start(config: &Config) -> Result<Publisher, OutboxError> {
        let m = &config.mqtt;
        let mut options = crate::mqtt::options(m, &format!("{}-outbox", m.client_id))?;
        options.set_keep_alive(std::time::Duration::from_secs(30));
        let (client, acks, task) = Self::connect(options.clone());
        Ok(Publisher {
            options: Box::new(options),
            client,
            acks,
            task,
        })
    }

    fn connect(
        options: MqttOptions,
    ) -> (AsyncClient, mpsc::Receiver<()>, tokio::task::JoinHandle<()>) {
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, acks) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        if tx.send(()).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "outbox MQTT connection; reconnecting");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        });
        (client, acks, task)
    }

    /// A fresh client and connection; the old one's pending publish and acks are dropped.
    fn reconnect(&mut self) {
        self.task.abort();
        let (client, acks, task) = Self::connect((*self.options).clone());
        self.client = client;
        self.acks = acks;
        self.task = task;
    }

    async fn send(&mut self, row: &Pending) -> Result<(), String> {
        let vin = row.vin.as_deref().ok_or("event has no VIN")?;
        let body = serde_json::to_vec(&row.payload).map_err(|e| e.to_string())?;
        let published = self
            .client
            .publish(
                format!("v1/vehicles/{vin}/offers"),
                QoS::AtLeastOnce,
                false,
                body,
            )
            .await;
        let outcome = match published {
            Err(e) => Err(e.to_string()),
            Ok(()) => {
                match tokio::time::timeout(std::time::Duration::from_secs(10), self.acks.recv())
                    .await
                {
                    Ok(Some(())) => Ok(()),
                    _ => Err("no PUBACK from the broker within 10 s".into()),
                }
            }
        };
        if outcome.is_err() {
            self.reconnect();
        }
        outcome
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum Channel {
    Webhook(Webhook),
    Mqtt(Publisher),
}

impl Channel {
    fn name(&self) -> &'static str {
        match self {
            Channel::Webhook(_) => "webhook",
            Channel::Mqtt(_) => "mqtt",
        }
    }

    async fn send(&mut self, row: &Pending) -> Result<(), String> {
        match self {
            Channel::Webhook(w) => w.send(row).await,
            Channel::Mqtt(p) => p.send(row).await,
        }
    }
}

/// Delivers one batch of due rows of a channel. Returns how many rows it took.
async fn dispatch(
    pool: &PgPool,
    cfg: &NotifyConfig,
    metrics: &Metrics,
    channel: &mut Channel,
) -> Result<usize, StoreError> {
    let mut tx = pool.begin().await?;
    let rows = store::claim(&mut tx, channel.name(), cfg.batch).await?;
    let label = ChannelLabel {
        channel: channel.name(),
    };
    for row in &rows {
        match channel.send(row).await {
            Ok(()) => {
                store::delivered(&mut tx, row).await?;
                metrics.outbox_delivered.get_or_create(&label).inc();
                if row.kind == "offer.created" {
                    metrics.offer_entered("notified");
                }
            }
            Err(e) => {
                tracing::warn!(event = %row.event_key, channel = channel.name(), attempts = row.attempts + 1, error = %e, "notification failed; will retry");
                metrics.outbox_failures.get_or_create(&label).inc();
                store::failed(&mut tx, row.id, &e, Utc::now() + backoff(cfg, row.attempts)).await?;
                // The receiver is likely down: the rest of the batch waits for the next pass
                // rather than each timing out now.
                break;
            }
        }
    }
    tx.commit().await?;
    Ok(rows.len())
}

/// The configured delivery channels, their TLS material loaded: errors here are start-up
/// errors. Must be called on the runtime (the MQTT publisher starts its connection).
pub struct Channels(Vec<Channel>);

impl Channels {
    pub fn open(config: &Config) -> Result<Channels, OutboxError> {
        let cfg = &config.notify;
        let mut channels = Vec::new();
        if !cfg.webhook_url.is_empty() {
            channels.push(Channel::Webhook(Webhook {
                client: webhook_client(cfg)?,
                url: cfg.webhook_url.clone(),
                secret: cfg.webhook_secret.clone(),
            }));
        }
        if cfg.mqtt {
            channels.push(Channel::Mqtt(Publisher::start(config)?));
        }
        Ok(Channels(channels))
    }
}

/// Runs the dispatcher until `shutdown` turns true.
pub async fn run(
    pool: PgPool,
    cfg: NotifyConfig,
    Channels(mut channels): Channels,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), OutboxError> {
    let every = std::time::Duration::from_millis(cfg.interval_ms.max(10));
    loop {
        let mut full = false;
        for ch in channels.iter_mut() {
            match dispatch(&pool, &cfg, &metrics, ch).await {
                Ok(n) => full |= n as i64 == cfg.batch,
                Err(e) => tracing::warn!(error = %e, "outbox dispatch failed; retrying"),
            }
        }
        if *shutdown.borrow() {
            return Ok(());
        }
        if !full {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_refuse_tampering() {
        let s = signature(b"secret", 1_795_000_000, b"{\"a\":1}");
        assert!(s.starts_with("v1=") && s.len() == 3 + 64);
        assert!(verify(b"secret", 1_795_000_000, b"{\"a\":1}", &s));
        assert!(
            !verify(b"secret", 1_795_000_001, b"{\"a\":1}", &s),
            "timestamp is signed"
        );
        assert!(
            !verify(b"secret", 1_795_000_000, b"{\"a\":2}", &s),
            "body is signed"
        );
        assert!(!verify(b"other", 1_795_000_000, b"{\"a\":1}", &s));
        assert!(!verify(b"secret", 1_795_000_000, b"{\"a\":1}", "v1=zz"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let cfg = NotifyConfig {
            retry_base_ms: 1000,
            retry_max_ms: 60_000,
            ..NotifyConfig::default()
        };
        let ms: Vec<i64> = (0..8)
            .map(|a| backoff(&cfg, a).num_milliseconds())
            .collect();
        assert_eq!(
            ms,
            vec![1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]
        );
        assert_eq!(backoff(&cfg, 1000).num_milliseconds(), 60_000);
    }
}
