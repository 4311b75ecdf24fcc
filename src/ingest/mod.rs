//! Ingest: the MQTT consumer. It receives messages on a persistent shared subscription, parses
//! them against the wire contract, batches them, has the store commit each batch, and only then
//! acknowledges them, in arrival order. Three tasks joined by bounded channels:
//!
//! ```text
//! broker ─▶ mqtt (poll, parse) ─▶ batcher (size/time) ─▶ writer (commit, then ack)
//! ```
//!
//! Back-pressure: at most `receive_maximum` messages are held unacknowledged. MQTT 5 asks the
//! broker to respect that window, and a semaphore enforces it here too (Mosquitto 2.0.11 was
//! seen exceeding it): with no permit left, the MQTT task stops reading and TCP flow control
//! holds the broker back, so a slow database never grows memory.

mod batcher;
mod pipeline;

pub use batcher::{BatchLimits, Batcher};

use crate::config::{Config, WriteMethod};
use crate::metrics::{Metrics, OutcomeLabel, ReasonLabel, StageLabel};
use crate::store::{BatchItem, BatchResult, DeadLetter, Store};
use crate::wire::{self, Limits};
use chrono::Utc;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish, RetainForwardRule};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Mqtt(#[from] crate::mqtt::MqttError),
}

/// A message as the MQTT task hands it on, before parsing.
struct Received {
    publish: Publish,
    epoch: u64,
    received: Instant,
    permit: OwnedSemaphorePermit,
}

/// One received message on its way to being stored and acknowledged.
struct Delivery {
    publish: Publish,
    /// Which broker connection it came on; acks for a connection that is gone are not sent.
    epoch: u64,
    received: Instant,
    item: BatchItem,
    values: usize,
    /// One of `receive_maximum` permits, released once the message is acknowledged.
    _permit: OwnedSemaphorePermit,
}

/// Builds the client options: persistent session, manual acks, bounded in-flight window.
pub fn mqtt_options(config: &Config) -> Result<MqttOptions, IngestError> {
    let m = &config.mqtt;
    let mut opts = crate::mqtt::options(m, &m.client_id)?;
    opts.set_clean_start(false)
        .set_session_expiry_interval(Some(m.session_expiry_secs))
        .set_manual_acks(true)
        .set_receive_maximum(Some(m.receive_maximum))
        .set_max_packet_size(Some(m.max_packet_bytes))
        .set_keep_alive(Duration::from_secs(m.keep_alive_secs))
        .set_request_channel_capacity(usize::from(m.receive_maximum) + 16);
    Ok(opts)
}

/// An acknowledgement owed to the broker, handed from the writer to the MQTT task.
struct AckTicket {
    epoch: u64,
    pkid: u16,
    qos: QoS,
}

/// Runs ingest until `shutdown` turns true, then commits and acknowledges what it holds and
/// disconnects (keeping the session).
///
/// Only this task touches the MQTT client: it polls the event loop and issues the acks the
/// writer hands it, with `try_ack`, in order. The writer never waits on MQTT and this task
/// waits on the writer only for a permit, so the two cannot deadlock.
pub async fn run(
    config: &Config,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), IngestError> {
    let opts = mqtt_options(config)?;
    let window = usize::from(config.mqtt.receive_maximum);
    let (client, mut eventloop) = AsyncClient::new(opts, window + 16);
    let permits = Arc::new(Semaphore::new(window));
    let (deliveries_tx, deliveries_rx) = mpsc::channel::<Received>(window + 1);
    let (batches_tx, batches_rx) = mpsc::channel::<Vec<Delivery>>(1);
    // Unbounded, but each ticket is a few bytes and stands for a message that held a permit.
    let (acks_tx, mut acks_rx) = mpsc::unbounded_channel::<AckTicket>();
    let batch_limits = BatchLimits {
        max_messages: config.ingest.batch_max_messages.min(window.max(1)),
        max_values: config.ingest.batch_max_values,
        max_delay: config.batch_max_delay(),
    };
    let batcher = tokio::spawn(run_batcher(
        deliveries_rx,
        batches_tx,
        batch_limits,
        config.limits(),
    ));
    let mut writer = tokio::spawn(run_writer(
        batches_rx,
        store,
        acks_tx,
        metrics.clone(),
        config.ingest.write_method,
        config.ingest.writers,
        shutdown.clone(),
    ));
    let filters = wire::subscription_filters(
        Some(config.mqtt.share_group.as_str()).filter(|g| !g.is_empty()),
    );
    let mut deliveries_tx = Some(deliveries_tx);
    let mut backoff = Duration::from_millis(100);
    let mut epoch = 0u64;
    let mut pending_acks: std::collections::VecDeque<Publish> = Default::default();
    let mut writer_done = false;
    let mut acks_open = true;
    loop {
        // Hand rumqttc as many owed acks as its request queue takes; the rest wait a poll.
        while let Some(ack) = pending_acks.front() {
            if client.try_ack(ack).is_err() {
                break;
            }
            pending_acks.pop_front();
        }
        if writer_done && !acks_open && pending_acks.is_empty() {
            break;
        }
        tokio::select! {
            _ = shutdown.changed(), if deliveries_tx.is_some() => {
                // Stop taking messages; what arrives from now on is not acknowledged and comes
                // back on the next connection.
                deliveries_tx = None;
            }
            res = &mut writer, if !writer_done => {
                writer_done = true;
                if let Err(e) = res {
                    tracing::error!(error = %e, "ingest writer failed");
                }
            }
            ticket = acks_rx.recv(), if acks_open => match ticket {
                Some(first) => {
                    // Take every ticket waiting, not one per turn of this loop.
                    let mut next = Some(first);
                    while let Some(t) = next {
                        if t.epoch == epoch {
                            pending_acks.push_back(ack_for(t));
                        } else {
                            metrics.stale_acks_skipped.inc();
                        }
                        next = acks_rx.try_recv().ok();
                    }
                }
                None => acks_open = false,
            },
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    epoch += 1;
                    // Acks owed on the previous connection are void: with a session the broker
                    // redelivers those messages, and the copies are acknowledged instead.
                    metrics.stale_acks_skipped.inc_by(pending_acks.len() as u64);
                    pending_acks.clear();
                    metrics.mqtt_connected.set(1);
                    metrics.mqtt_connects.inc();
                    backoff = Duration::from_millis(100);
                    if !ack.session_present {
                        metrics.mqtt_session_lost.inc();
                    }
                    tracing::info!(epoch, session_present = ack.session_present, "connected to broker");
                    // Subscribing again is harmless with a session and required without one.
                    // Sent from a task: this loop must keep polling for the request to go out.
                    let client = client.clone();
                    let filters: Vec<Filter> = filters
                        .iter()
                        .map(|f| Filter {
                            retain_forward_rule: RetainForwardRule::Never,
                            ..Filter::new(f.clone(), QoS::AtLeastOnce)
                        })
                        .collect();
                    tokio::spawn(async move {
                        if let Err(e) = client.subscribe_many(filters).await {
                            tracing::error!(error = %e, "cannot send subscription");
                        }
                    });
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    for code in &ack.return_codes {
                        if !matches!(code, rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)) {
                            tracing::error!(?code, "broker refused a subscription");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    metrics.received.inc();
                    let Some(tx) = &deliveries_tx else { continue };
                    // No permit: stop reading until the writer releases one (TCP back-pressure).
                    let permit = tokio::select! {
                        p = permits.clone().acquire_owned() => match p {
                            Ok(p) => p,
                            Err(_) => break,
                        },
                        res = &mut writer, if !writer_done => {
                            writer_done = true;
                            if let Err(e) = res {
                                tracing::error!(error = %e, "ingest writer failed");
                            }
                            continue;
                        }
                    };
                    metrics.inflight.inc();
                    let received = Received { publish, epoch, received: Instant::now(), permit };
                    if tx.send(received).await.is_err() {
                        deliveries_tx = None;
                    }
                }
                Ok(Event::Incoming(Packet::Disconnect(d))) => {
                    tracing::warn!(reason = ?d.reason_code, "broker disconnected us");
                }
                Ok(_) => {}
                Err(e) => {
                    metrics.mqtt_connected.set(0);
                    if writer_done {
                        break;
                    }
                    tracing::warn!(error = %e, retry_in = ?backoff, "broker connection failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed(), if deliveries_tx.is_some() => { deliveries_tx = None; }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
    // The writer is done and its acks are queued in rumqttc: send them, then disconnect,
    // keeping the session.
    let _ = batcher.await;
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Outgoing(rumqttc::Outgoing::Disconnect) = event {
                break;
            }
        }
    })
    .await;
    metrics.mqtt_connected.set(0);
    Ok(())
}

/// rumqttc builds a PUBACK from a publish's packet id and QoS; nothing else is needed.
fn ack_for(t: AckTicket) -> Publish {
    let mut p = Publish::new("", t.qos, bytes::Bytes::new(), None);
    p.pkid = t.pkid;
    p
}

/// Parses one publish into what the store should do with it.
fn parse(r: Received, limits: &Limits) -> Delivery {
    let Received {
        publish,
        epoch,
        received,
        permit,
    } = r;
    let received_at = Utc::now();
    let topic = String::from_utf8_lossy(&publish.topic).into_owned();
    let (item, values) = if publish.retain {
        (BatchItem::Ignored, 0)
    } else {
        match wire::parse_message(&topic, &publish.payload, received_at, limits) {
            Ok(message) => {
                let values = message.value_count();
                (
                    BatchItem::Message {
                        message,
                        received_at,
                    },
                    values,
                )
            }
            Err(reject) => (
                BatchItem::DeadLetter {
                    letter: DeadLetter {
                        topic,
                        payload: publish.payload.clone(),
                        reason: reject.reason.as_str().to_owned(),
                        detail: reject.detail,
                    },
                    received_at,
                },
                1,
            ),
        }
    };
    Delivery {
        publish,
        epoch,
        received,
        item,
        values,
        _permit: permit,
    }
}

/// Parses what the MQTT task received (on its own task, so parsing runs beside MQTT I/O)
/// and cuts batches.
async fn run_batcher(
    mut rx: mpsc::Receiver<Received>,
    tx: mpsc::Sender<Vec<Delivery>>,
    limits: BatchLimits,
    wire_limits: Limits,
) {
    let mut batch = Batcher::new(limits);
    loop {
        let deadline = batch.deadline();
        let flush = tokio::select! {
            r = rx.recv() => match r {
                Some(r) => {
                    let d = parse(r, &wire_limits);
                    let values = d.values;
                    batch.push(d, values, Instant::now())
                }
                None => break,
            },
            _ = sleep_until(deadline), if deadline.is_some() => true,
        };
        if flush && tx.send(batch.take()).await.is_err() {
            return;
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch.take()).await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d.into()).await;
    }
}

/// Writes batches, up to `writers` at once on their own connections, and hands out their acks
/// strictly in arrival order, each batch's only after it committed.
async fn run_writer(
    rx: mpsc::Receiver<Vec<Delivery>>,
    store: Arc<Store>,
    acks: mpsc::UnboundedSender<AckTicket>,
    metrics: Arc<Metrics>,
    method: WriteMethod,
    writers: usize,
    shutdown: watch::Receiver<bool>,
) {
    // `writers` transactions at once; twice as many batches in the pipeline, so the next
    // ones resolve ids and encode rows while the database works on the current ones.
    let gate = Arc::new(Semaphore::new(writers));
    let write = |mut batch: Vec<Delivery>| {
        let (store, metrics, shutdown) = (store.clone(), metrics.clone(), shutdown.clone());
        let gate = gate.clone();
        async move {
            let started = Instant::now();
            // The parsed items move out to be written (copying them cost more than encoding
            // their rows); the deliveries stay for the acks.
            let items: Vec<BatchItem> = batch
                .iter_mut()
                .map(|d| std::mem::replace(&mut d.item, BatchItem::Ignored))
                .collect();
            let result =
                write_with_retry(&store, &batch, &items, method, &metrics, &shutdown, &gate).await;
            (batch, items, result, started.elapsed())
        }
    };
    type Written = (Vec<Delivery>, Vec<BatchItem>, Option<BatchResult>, Duration);
    let release = |(batch, items, result, took): Written| {
        // None: shutting down with the database away; nothing committed, nothing acknowledged.
        let Some(result) = result else { return false };
        metrics.flush_seconds.observe(took.as_secs_f64());
        metrics.batch_messages.observe(batch.len() as f64);
        metrics.values.inc_by(result.values_stored);
        for (stage, took) in &result.stages {
            metrics
                .stage_seconds
                .get_or_create(&StageLabel { stage })
                .inc_by(took.as_secs_f64());
        }
        for ((delivery, item), outcome) in batch
            .iter()
            .zip(&items)
            .zip(result.outcomes.iter().copied())
        {
            metrics
                .messages
                .get_or_create(&OutcomeLabel {
                    outcome: outcome.as_str(),
                })
                .inc();
            if let BatchItem::DeadLetter { letter, .. } = item {
                metrics
                    .dead_letters
                    .get_or_create(&ReasonLabel {
                        reason: letter.reason.clone(),
                    })
                    .inc();
            }
            let _ = acks.send(AckTicket {
                epoch: delivery.epoch,
                pkid: delivery.publish.pkid,
                qos: delivery.publish.qos,
            });
            metrics
                .ack_lag_seconds
                .observe(delivery.received.elapsed().as_secs_f64());
            metrics.inflight.dec();
        }
        true
    };
    pipeline::in_order(rx, 2 * writers, write, release).await;
}

/// Commits the batch, retrying transient failures with backoff. When the database refuses
/// the data itself, items are written one at a time and the one it refuses becomes a dead
/// letter, so one bad message cannot stall the stream. `None` if shutdown came first.
async fn write_with_retry(
    store: &Store,
    batch: &[Delivery],
    items: &[BatchItem],
    method: WriteMethod,
    metrics: &Metrics,
    shutdown: &watch::Receiver<bool>,
    gate: &Semaphore,
) -> Option<BatchResult> {
    match write_transient_retry(store, items, method, metrics, shutdown, gate).await? {
        Ok(result) => Some(result),
        Err(e) => {
            tracing::warn!(error = %e, messages = items.len(), "batch refused; writing one by one");
            let mut total = BatchResult::default();
            for (delivery, item) in batch.iter().zip(items) {
                let single = match write_transient_retry(
                    store,
                    std::slice::from_ref(item),
                    method,
                    metrics,
                    shutdown,
                    gate,
                )
                .await?
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "message refused by the database; dead-lettered");
                        let letter = BatchItem::DeadLetter {
                            letter: DeadLetter {
                                topic: String::from_utf8_lossy(&delivery.publish.topic)
                                    .into_owned(),
                                payload: delivery.publish.payload.clone(),
                                reason: "storage_rejected".into(),
                                detail: e.to_string(),
                            },
                            received_at: Utc::now(),
                        };
                        loop {
                            match write_transient_retry(
                                store,
                                std::slice::from_ref(&letter),
                                method,
                                metrics,
                                shutdown,
                                gate,
                            )
                            .await?
                            {
                                Ok(r) => break r,
                                Err(e) => {
                                    tracing::error!(error = %e, "cannot store dead letter; retrying");
                                    tokio::time::sleep(Duration::from_secs(1)).await;
                                }
                            }
                        }
                    }
                };
                total.outcomes.extend(single.outcomes);
                total.values_stored += single.values_stored;
                total.samples_stored += single.samples_stored;
                total.dtc_reports_stored += single.dtc_reports_stored;
                total.dead_letters += single.dead_letters;
                total.stages.extend(single.stages);
            }
            Some(total)
        }
    }
}

/// `None`: shutdown while waiting; `Some(Err)`: a non-transient error.
async fn write_transient_retry(
    store: &Store,
    items: &[BatchItem],
    method: WriteMethod,
    metrics: &Metrics,
    shutdown: &watch::Receiver<bool>,
    gate: &Semaphore,
) -> Option<Result<BatchResult, crate::store::StoreError>> {
    let mut backoff = Duration::from_millis(50);
    loop {
        match store.write_batch_gated(items, method, Some(gate)).await {
            Ok(r) => return Some(Ok(r)),
            Err(e) if e.is_transient() => {
                metrics.db_write_errors.inc();
                tracing::warn!(error = %e, retry_in = ?backoff, "batch write failed; retrying");
                let stopping = *shutdown.borrow();
                if stopping {
                    return None;
                }
                let mut shutdown = shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return None,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                metrics.db_write_errors.inc();
                return Some(Err(e));
            }
        }
    }
}
