//! A QoS 1 publisher that counts a message as sent only when the broker has acknowledged it,
//! and survives broker restarts (persistent session: unacknowledged messages are resent).

use crate::config::MqttConfig;
use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Mqtt(#[from] crate::mqtt::MqttError),
    #[error("gave up after {acked} of {sent} acknowledgements: {reason}")]
    Incomplete {
        sent: u64,
        acked: u64,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct PublishStats {
    pub sent: u64,
    pub acked: u64,
    pub elapsed: Duration,
}

/// Publishes every message at QoS 1 (optionally paced to `rate` per second) and returns when
/// the broker has acknowledged all of them. Gives up after 60 s without progress.
pub async fn publish_all(
    url: &str,
    client_id: &str,
    messages: Vec<(String, Bytes)>,
    rate: Option<f64>,
) -> Result<PublishStats, PublishError> {
    publish_all_with(&plain(url), client_id, messages, rate).await
}

/// Connection settings of a plain URL (no TLS files, no credentials beyond the URL's).
fn plain(url: &str) -> MqttConfig {
    MqttConfig {
        url: url.to_owned(),
        ..MqttConfig::default()
    }
}

/// `publish_all` with full connection settings (TLS, client certificate, credentials).
pub async fn publish_all_with(
    mqtt: &MqttConfig,
    client_id: &str,
    messages: Vec<(String, Bytes)>,
    rate: Option<f64>,
) -> Result<PublishStats, PublishError> {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let feeder = tokio::spawn(async move {
        let interval = rate.map(|r| Duration::from_secs_f64(1.0 / r.max(1e-6)));
        let mut next_at = tokio::time::Instant::now();
        for message in messages {
            if let Some(i) = interval {
                tokio::time::sleep_until(next_at).await;
                next_at += i;
            }
            if tx.send(message).await.is_err() {
                return;
            }
        }
    });
    let stats = publish_stream_with(mqtt, client_id, rx).await;
    feeder.abort();
    stats
}

/// Publishes at QoS 1 what arrives on `messages` until the channel closes, and returns when
/// the broker has acknowledged every one. Gives up after 60 s in which acknowledgements are
/// owed but none arrives (connected or not); a quiet channel is not a stall.
pub async fn publish_stream(
    url: &str,
    client_id: &str,
    messages: tokio::sync::mpsc::Receiver<(String, Bytes)>,
) -> Result<PublishStats, PublishError> {
    publish_stream_with(&plain(url), client_id, messages).await
}

/// `publish_stream` with full connection settings.
pub async fn publish_stream_with(
    mqtt: &MqttConfig,
    client_id: &str,
    mut messages: tokio::sync::mpsc::Receiver<(String, Bytes)>,
) -> Result<PublishStats, PublishError> {
    let mut opts = crate::mqtt::options(mqtt, client_id)?;
    opts.set_clean_start(false)
        .set_session_expiry_interval(Some(600))
        .set_keep_alive(Duration::from_secs(30))
        .set_outgoing_inflight_upper_limit(1000)
        .set_max_packet_size(Some(64 * 1024 * 1024));
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    let started = Instant::now();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    // The request channel is the pacing: this task waits while the event loop is busy.
    let publisher = {
        let sent = sent.clone();
        tokio::spawn(async move {
            while let Some((topic, payload)) = messages.recv().await {
                if client
                    .publish(topic, QoS::AtLeastOnce, false, payload)
                    .await
                    .is_err()
                {
                    return (client, false);
                }
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            (client, true)
        })
    };
    const STALL: Duration = Duration::from_secs(60);
    let mut acked = 0u64;
    let mut last_error = String::from("no acknowledgement");
    let mut last_progress = Instant::now();
    let sent_now = || sent.load(std::sync::atomic::Ordering::SeqCst);
    loop {
        let owed = sent_now() > acked;
        if !owed && publisher.is_finished() {
            break;
        }
        if !owed {
            last_progress = Instant::now();
        } else if last_progress.elapsed() > STALL {
            publisher.abort();
            return Err(PublishError::Incomplete {
                sent: sent_now(),
                acked,
                reason: last_error,
            });
        }
        match tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => {
                acked += 1;
                last_progress = Instant::now();
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => {
                last_error = e.to_string();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    match publisher.await {
        Ok((client, true)) => {
            let _ = client.try_disconnect();
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                while eventloop.poll().await.is_ok() {}
            })
            .await;
        }
        _ => {
            return Err(PublishError::Incomplete {
                sent: sent_now(),
                acked,
                reason: last_error,
            })
        }
    }
    Ok(PublishStats {
        sent: sent_now(),
        acked,
        elapsed: started.elapsed(),
    })
}
