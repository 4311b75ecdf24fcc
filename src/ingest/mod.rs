//! Ingest: the MQTT consumer. It receives messages on a persistent shared subscription, parses
//! them against the wire contract, batches them, has the store commit each batch, and only then
//! acknowledges them, in arrival order. Three tasks joined by bounded channels:
//!
//! ```text
//! broker ─▶ mqtt (poll, parse) ─▶ batcher (size/time) ─▶ writer (commit, then ack)
//! ```
//!
//! Back-pressure, in messages and in bytes: at most `receive_maximum` messages, and at most
//! `max_inflight_bytes` of them (each counted as `MEMORY_PER_PAYLOAD_BYTE` times its payload,
//! for the payload kept for a possible dead letter and its parsed form), are held
//! unacknowledged. MQTT 5 asks the broker to respect the message window, and semaphores
//! enforce both here (Mosquitto 2.0.11 was seen exceeding the window): with no permit left,
//! the MQTT task stops reading and TCP flow control holds the broker back, so neither a slow
//! database nor large payloads grow memory past the bound.

mod batcher;
mod pipeline;

pub use batcher::{BatchLimits, Batcher};

use crate::config::{Config, WriteMethod};
use crate::feeds::{self, Mapped};
use crate::metrics::{Metrics, OutcomeLabel, ReasonLabel, StageLabel};
use crate::store::{Admission, BatchItem, BatchResult, DeadLetter, Store, StoreError};
use crate::wire::{self, Limits, Reject};
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
    #[error(transparent)]
    Feed(#[from] crate::feeds::mapping::MappingError),
}

/// The foreign feeds ingest takes besides the contract: Traccar's topic and mapped feeds.
#[derive(Debug, Clone, Default)]
pub struct Feeds {
    pub traccar_topic: Option<String>,
    pub mappings: Vec<crate::feeds::mapping::Mapping>,
}

impl Feeds {
    /// The feeds `config` names, their mapping files read and checked.
    pub fn load(config: &Config) -> Result<Feeds, IngestError> {
        Ok(Feeds {
            traccar_topic: Some(config.traccar.topic.clone()).filter(|t| !t.is_empty()),
            mappings: crate::feeds::mapping::load_all(&config.feeds.mappings)?,
        })
    }

    /// The topic filters to subscribe to besides the contract's.
    fn topics(&self) -> impl Iterator<Item = &str> {
        self.traccar_topic
            .as_deref()
            .into_iter()
            .chain(self.mappings.iter().map(|m| m.topic.as_str()))
    }
}

/// Memory a held message is counted for, per byte of payload: the payload itself (kept for a
/// possible dead letter) and its parsed form (names as strings, values), which measured under
/// twice the JSON's size.
pub const MEMORY_PER_PAYLOAD_BYTE: usize = 3;

/// The permits a held message takes: one of `receive_maximum`, and its bytes.
struct Permits {
    _message: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
    /// The bytes it is counted for.
    charge: usize,
}

/// A message as the MQTT task hands it on, before parsing.
struct Received {
    publish: Publish,
    epoch: u64,
    received: Instant,
    permits: Permits,
}

/// One received message on its way to being stored and acknowledged.
struct Delivery {
    publish: Publish,
    /// Which broker connection it came on; acks for a connection that is gone are not sent.
    epoch: u64,
    received: Instant,
    item: BatchItem,
    /// A foreign record (a Traccar position) whose vehicle the writer resolves through the
    /// device register, and when it arrived; `item` stays `Ignored` until then.
    pending: Option<(Mapped, chrono::DateTime<Utc>)>,
    values: usize,
    /// Released once the message is acknowledged.
    _permits: Permits,
}

impl Delivery {
    /// The message as a dead letter, for `reject`.
    fn dead_letter(&self, reason: &str, detail: String) -> BatchItem {
        BatchItem::DeadLetter {
            letter: DeadLetter {
                topic: String::from_utf8_lossy(&self.publish.topic).into_owned(),
                payload: self.publish.payload.clone(),
                reason: reason.to_owned(),
                detail,
            },
            received_at: Utc::now(),
        }
    }
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
/// waits on the writer only for permits, so the two cannot deadlock.
pub async fn run(
    config: &Config,
    feeds: Feeds,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), IngestError> {
    let opts = mqtt_options(config)?;
    let window = usize::from(config.mqtt.receive_maximum);
    let (client, eventloop) = AsyncClient::new(opts, window + 16);
    let (deliveries_tx, deliveries_rx) = mpsc::channel::<Received>(window + 1);
    let (batches_tx, batches_rx) = mpsc::channel::<Vec<Delivery>>(1);
    // Unbounded, but each ticket is a few bytes and stands for a message that held a permit.
    let (acks_tx, acks_rx) = mpsc::unbounded_channel::<AckTicket>();
    let batch_limits = BatchLimits {
        max_messages: config.ingest.batch_max_messages.min(window.max(1)),
        max_values: config.ingest.batch_max_values,
        max_delay: config.batch_max_delay(),
    };
    let share_group = Some(config.mqtt.share_group.as_str()).filter(|g| !g.is_empty());
    let mut filters = wire::subscription_filters(share_group).to_vec();
    for topic in feeds.topics() {
        filters.push(match share_group {
            Some(group) => format!("$share/{group}/{topic}"),
            None => topic.to_owned(),
        });
    }
    let batcher = tokio::spawn(run_batcher(
        deliveries_rx,
        batches_tx,
        batch_limits,
        config.limits(),
        feeds,
    ));
    let writer = tokio::spawn(run_writer(
        batches_rx,
        store,
        acks_tx,
        metrics.clone(),
        config.ingest.write_method,
        config.ingest.writers,
        shutdown.clone(),
    ));
    let task = MqttTask {
        client,
        metrics,
        filters,
        messages: Arc::new(Semaphore::new(window)),
        bytes: Arc::new(Semaphore::new(config.ingest.max_inflight_bytes)),
        max_inflight_bytes: config.ingest.max_inflight_bytes,
        deliveries: Some(deliveries_tx),
        epoch: 0,
        backoff: Duration::from_millis(100),
        pending_acks: Default::default(),
        shutdown,
    };
    task.run(eventloop, writer, acks_rx).await;
    let _ = batcher.await;
    Ok(())
}

/// The MQTT side of ingest: connection, subscription, permits, acks.
struct MqttTask {
    client: AsyncClient,
    metrics: Arc<Metrics>,
    filters: Vec<String>,
    /// `receive_maximum` permits: messages held unacknowledged.
    messages: Arc<Semaphore>,
    /// `max_inflight_bytes` permits: their memory.
    bytes: Arc<Semaphore>,
    max_inflight_bytes: usize,
    /// To the batcher; none once shutting down (what arrives then is not acknowledged and
    /// comes back on the next connection).
    deliveries: Option<mpsc::Sender<Received>>,
    /// Which connection we are on; acks for an earlier one are void.
    epoch: u64,
    backoff: Duration,
    pending_acks: std::collections::VecDeque<Publish>,
    shutdown: watch::Receiver<bool>,
}

type WriterHandle = tokio::task::JoinHandle<()>;

impl MqttTask {
    async fn run(
        mut self,
        mut eventloop: rumqttc::v5::EventLoop,
        mut writer: WriterHandle,
        mut acks: mpsc::UnboundedReceiver<AckTicket>,
    ) {
        let mut writer_done = false;
        let mut acks_open = true;
        loop {
            // Hand rumqttc as many owed acks as its request queue takes; the rest wait a poll.
            while let Some(ack) = self.pending_acks.front() {
                if self.client.try_ack(ack).is_err() {
                    break;
                }
                self.pending_acks.pop_front();
            }
            if writer_done && !acks_open && self.pending_acks.is_empty() {
                break;
            }
            tokio::select! {
                _ = self.shutdown.changed(), if self.deliveries.is_some() => {
                    self.deliveries = None;
                }
                res = &mut writer, if !writer_done => {
                    writer_done = true;
                    if let Err(e) = res {
                        tracing::error!(error = %e, "ingest writer failed");
                    }
                }
                ticket = acks.recv(), if acks_open => match ticket {
                    Some(first) => self.take_acks(first, &mut acks),
                    None => acks_open = false,
                },
                event = eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => self.connected(ack.session_present),
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        for code in &ack.return_codes {
                            if !matches!(code, rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)) {
                                tracing::error!(?code, "broker refused a subscription");
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        if !self.received(publish, &mut writer, &mut writer_done).await {
                            break;
                        }
                    }
                    Ok(Event::Incoming(Packet::Disconnect(d))) => {
                        tracing::warn!(reason = ?d.reason_code, "broker disconnected us");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        self.metrics.mqtt_connected.set(0);
                        if writer_done {
                            break;
                        }
                        self.connection_failed(e).await;
                    }
                }
            }
        }
        // The writer is done and its acks are queued in rumqttc: send them, then disconnect,
        // keeping the session.
        let _ = self.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(event) = eventloop.poll().await {
                if let Event::Outgoing(rumqttc::Outgoing::Disconnect) = event {
                    break;
                }
            }
        })
        .await;
        self.metrics.mqtt_connected.set(0);
    }

    /// Queues every ticket waiting, not one per turn of the loop.
    fn take_acks(&mut self, first: AckTicket, acks: &mut mpsc::UnboundedReceiver<AckTicket>) {
        let mut next = Some(first);
        while let Some(t) = next {
            if t.epoch == self.epoch {
                self.pending_acks.push_back(ack_for(t));
            } else {
                self.metrics.stale_acks_skipped.inc();
            }
            next = acks.try_recv().ok();
        }
    }

    fn connected(&mut self, session_present: bool) {
        self.epoch += 1;
        // Acks owed on the previous connection are void: with a session the broker redelivers
        // those messages, and the copies are acknowledged instead.
        self.metrics
            .stale_acks_skipped
            .inc_by(self.pending_acks.len() as u64);
        self.pending_acks.clear();
        self.metrics.mqtt_connected.set(1);
        self.metrics.mqtt_connects.inc();
        self.backoff = Duration::from_millis(100);
        if !session_present {
            self.metrics.mqtt_session_lost.inc();
        }
        tracing::info!(epoch = self.epoch, session_present, "connected to broker");
        // Subscribing again is harmless with a session and required without one. Sent from a
        // task: this loop must keep polling for the request to go out. Retained messages are
        // not sent on subscribing, and the retain flag of live ones is kept, so that they
        // (and a retained message being cleared, an empty payload) are ignored.
        let client = self.client.clone();
        let filters: Vec<Filter> = self
            .filters
            .iter()
            .map(|f| Filter {
                retain_forward_rule: RetainForwardRule::Never,
                preserve_retain: true,
                ..Filter::new(f.clone(), QoS::AtLeastOnce)
            })
            .collect();
        tokio::spawn(async move {
            if let Err(e) = client.subscribe_many(filters).await {
                tracing::error!(error = %e, "cannot send subscription");
            }
        });
    }

    /// Takes permits for a received message (waiting, and not reading on, while there are
    /// none) and hands it to the batcher. False when ingest should stop.
    async fn received(
        &mut self,
        publish: Publish,
        writer: &mut WriterHandle,
        writer_done: &mut bool,
    ) -> bool {
        self.metrics.received.inc();
        if self.deliveries.is_none() {
            return true;
        }
        let charge = publish
            .payload
            .len()
            .saturating_mul(MEMORY_PER_PAYLOAD_BYTE)
            .saturating_add(256)
            .min(self.max_inflight_bytes);
        let permits = tokio::select! {
            p = take_permits(self.messages.clone(), self.bytes.clone(), charge) => match p {
                Some(p) => p,
                None => return false,
            },
            res = &mut *writer, if !*writer_done => {
                *writer_done = true;
                if let Err(e) = res {
                    tracing::error!(error = %e, "ingest writer failed");
                }
                return true;
            }
        };
        self.metrics.inflight.inc();
        self.metrics.inflight_bytes.inc_by(charge as i64);
        let received = Received {
            publish,
            epoch: self.epoch,
            received: Instant::now(),
            permits,
        };
        if let Some(tx) = &self.deliveries {
            if tx.send(received).await.is_err() {
                self.deliveries = None;
            }
        }
        true
    }

    async fn connection_failed(&mut self, e: rumqttc::v5::ConnectionError) {
        tracing::warn!(error = %e, retry_in = ?self.backoff, "broker connection failed");
        tokio::select! {
            _ = tokio::time::sleep(self.backoff) => {}
            _ = self.shutdown.changed(), if self.deliveries.is_some() => { self.deliveries = None; }
        }
        self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
    }
}

/// One message permit and `bytes` byte permits (held by the message until it is
/// acknowledged). None when the semaphores are closed.
async fn take_permits(
    messages: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    charge: usize,
) -> Option<Permits> {
    let message = messages.acquire_owned().await.ok()?;
    let n = u32::try_from(charge).unwrap_or(u32::MAX);
    let bytes = bytes.acquire_many_owned(n).await.ok()?;
    Some(Permits {
        _message: message,
        _bytes: bytes,
        charge,
    })
}

/// rumqttc builds a PUBACK from a publish's packet id and QoS; nothing else is needed.
fn ack_for(t: AckTicket) -> Publish {
    let mut p = Publish::new("", t.qos, bytes::Bytes::new(), None);
    p.pkid = t.pkid;
    p
}

/// Parses one publish into what the store should do with it: a contract message, or on a
/// feed's topic (Traccar's, a mapped feed's) a record mapped to one, its vehicle resolved by
/// the writer.
fn parse(r: Received, limits: &Limits, feeds: &Feeds) -> Delivery {
    let Received {
        publish,
        epoch,
        received,
        permits,
    } = r;
    let received_at = Utc::now();
    let mut delivery = Delivery {
        item: BatchItem::Ignored,
        pending: None,
        values: 0,
        publish,
        epoch,
        received,
        _permits: permits,
    };
    // Retained messages (and a retained message being cleared) are not part of the stream.
    if delivery.publish.retain {
        return delivery;
    }
    let topic = String::from_utf8_lossy(&delivery.publish.topic);
    let payload = &delivery.publish.payload;
    let mapped = if feeds
        .traccar_topic
        .as_deref()
        .is_some_and(|filter| feeds::topic_matches(filter, &topic))
    {
        Some(feeds::traccar::parse(payload, received_at, limits))
    } else {
        feeds
            .mappings
            .iter()
            .find(|m| m.matches(&topic))
            .map(|m| m.map(&topic, payload, received_at, limits))
    };
    if let Some(mapped) = mapped {
        match mapped {
            Ok(mapped) => {
                delivery.values = mapped.values.len() + mapped.dtcs.len();
                delivery.pending = Some((mapped, received_at));
            }
            Err(reject) => {
                delivery.values = 1;
                delivery.item = delivery.dead_letter(reject.reason.as_str(), reject.detail);
            }
        }
        return delivery;
    }
    match wire::parse_message(&topic, &delivery.publish.payload, received_at, limits) {
        Ok(message) => {
            delivery.values = message.value_count();
            delivery.item = BatchItem::Message {
                message,
                received_at,
            };
        }
        Err(reject) => {
            delivery.values = 1;
            delivery.item = delivery.dead_letter(reject.reason.as_str(), reject.detail);
        }
    }
    delivery
}

/// Parses what the MQTT task received (on its own task, so parsing runs beside MQTT I/O)
/// and cuts batches.
async fn run_batcher(
    mut rx: mpsc::Receiver<Received>,
    tx: mpsc::Sender<Vec<Delivery>>,
    limits: BatchLimits,
    wire_limits: Limits,
    feeds: Feeds,
) {
    let mut batch = Batcher::new(limits);
    loop {
        let deadline = batch.deadline();
        let flush = tokio::select! {
            r = rx.recv() => match r {
                Some(r) => {
                    let d = parse(r, &wire_limits, &feeds);
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
    let writer = Arc::new(Writer {
        store,
        metrics: metrics.clone(),
        method,
        gate: Semaphore::new(writers),
        shutdown,
    });
    let write = |mut batch: Vec<Delivery>| {
        let writer = writer.clone();
        async move {
            let started = Instant::now();
            // The parsed items move out to be written (copying them cost more than encoding
            // their rows); the deliveries stay for the acks.
            let mut items: Vec<BatchItem> = batch
                .iter_mut()
                .map(|d| std::mem::replace(&mut d.item, BatchItem::Ignored))
                .collect();
            let pending: Vec<(usize, Mapped, chrono::DateTime<Utc>)> = batch
                .iter_mut()
                .enumerate()
                .filter_map(|(i, d)| d.pending.take().map(|(m, at)| (i, m, at)))
                .collect();
            let result = match writer.resolve(&batch, &mut items, pending).await {
                Some(()) => writer.write(&batch, &mut items).await,
                None => None,
            };
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
            // Every dead letter: rejected by the contract, by a bound, or by the database.
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
            metrics
                .inflight_bytes
                .dec_by(delivery._permits.charge as i64);
        }
        true
    };
    pipeline::in_order(rx, 2 * writers, write, release).await;
}

/// Commits batches: admission (ids, bounds on distinct signals), then the write, each retried
/// on transient failures with backoff. When the database refuses the data itself, items are
/// written one at a time and the one it refuses becomes a dead letter (`storage_rejected`), so
/// one bad message cannot stall the stream.
struct Writer {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    method: WriteMethod,
    /// `writers` permits: batch transactions at once.
    gate: Semaphore,
    shutdown: watch::Receiver<bool>,
}

impl Writer {
    /// Makes the contract's messages of the batch's foreign records: each record's vehicle
    /// is the VIN it carries or the one the device register holds for its device at its time;
    /// one with neither becomes its dead letter (`unknown_device`). `None` if shutdown came
    /// first.
    async fn resolve(
        &self,
        batch: &[Delivery],
        items: &mut [BatchItem],
        pending: Vec<(usize, Mapped, chrono::DateTime<Utc>)>,
    ) -> Option<()> {
        if pending.is_empty() {
            return Some(());
        }
        let lookups: Vec<(&str, chrono::DateTime<Utc>)> = pending
            .iter()
            .filter(|(_, m, _)| m.vin.is_none())
            .filter_map(|(_, m, _)| m.device.as_deref().map(|d| (d, m.ts)))
            .collect();
        let vins = match self
            .retry(|| crate::store::devices::vins_at(self.store.pool(), &lookups))
            .await?
        {
            Ok(vins) => vins,
            Err(e) => {
                tracing::warn!(error = %e, "device register lookup refused; dead-lettered");
                for (i, _, _) in &pending {
                    if let (Some(item), Some(d)) = (items.get_mut(*i), batch.get(*i)) {
                        *item = d.dead_letter("storage_rejected", e.to_string());
                    }
                }
                return Some(());
            }
        };
        let mut vins = vins.into_iter();
        for (i, mapped, received_at) in pending {
            let registered = if mapped.vin.is_none() && mapped.device.is_some() {
                vins.next().flatten()
            } else {
                None
            };
            let (Some(item), Some(delivery)) = (items.get_mut(i), batch.get(i)) else {
                continue;
            };
            *item = match mapped.into_message(registered.as_deref()) {
                Ok(message) => BatchItem::Message {
                    message,
                    received_at,
                },
                Err(reject) => delivery.dead_letter(reject.reason.as_str(), reject.detail),
            };
        }
        Some(())
    }

    /// Writes `items` (one per delivery of `batch`; refused ones are replaced by their dead
    /// letters in place). `None` if shutdown came first.
    async fn write(&self, batch: &[Delivery], items: &mut [BatchItem]) -> Option<BatchResult> {
        match self.admit_and_write(batch, items).await? {
            Ok(result) => Some(result),
            Err(e) => {
                tracing::warn!(error = %e, messages = items.len(), "batch refused; writing one by one");
                let mut total = BatchResult::default();
                for (delivery, item) in batch.iter().zip(items.iter_mut()) {
                    let single = std::slice::from_ref(delivery);
                    let part = match self
                        .admit_and_write(single, std::slice::from_mut(item))
                        .await?
                    {
                        Ok(part) => part,
                        Err(e) => {
                            tracing::warn!(error = %e, "message refused by the database; dead-lettered");
                            *item = delivery.dead_letter("storage_rejected", e.to_string());
                            self.write_dead_letter(item).await?
                        }
                    };
                    total.absorb(part);
                }
                Some(total)
            }
        }
    }

    /// Admits the items (a message over a bound becomes its dead letter) and writes them.
    async fn admit_and_write(
        &self,
        batch: &[Delivery],
        items: &mut [BatchItem],
    ) -> Option<Result<BatchResult, StoreError>> {
        let admission = match self.retry(|| self.store.admit(items)).await? {
            Ok(a) => a,
            Err(e) => return Some(Err(e)),
        };
        replace_refused(batch, items, &admission.refused);
        let items = &*items;
        self.retry(|| {
            self.store
                .write_admitted(items, &admission, self.method, Some(&self.gate))
        })
        .await
    }

    /// A dead letter must be stored before its message is acknowledged: retried until it is.
    async fn write_dead_letter(&self, item: &BatchItem) -> Option<BatchResult> {
        let items = std::slice::from_ref(item);
        let admission = Admission::default();
        loop {
            match self
                .retry(|| {
                    self.store
                        .write_admitted(items, &admission, self.method, Some(&self.gate))
                })
                .await?
            {
                Ok(r) => return Some(r),
                Err(e) => {
                    tracing::error!(error = %e, "cannot store dead letter; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Runs `op` until it succeeds or fails for good. `None`: shutdown while waiting;
    /// `Some(Err)`: an error that would come again.
    async fn retry<T, F, Fut>(&self, mut op: F) -> Option<Result<T, StoreError>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut backoff = Duration::from_millis(50);
        loop {
            match op().await {
                Ok(r) => return Some(Ok(r)),
                Err(e) if e.is_transient() => {
                    self.metrics.db_write_errors.inc();
                    tracing::warn!(error = %e, retry_in = ?backoff, "batch write failed; retrying");
                    if *self.shutdown.borrow() {
                        return None;
                    }
                    let mut shutdown = self.shutdown.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return None,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    self.metrics.db_write_errors.inc();
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Turns the messages admission refused into their dead letters.
fn replace_refused(batch: &[Delivery], items: &mut [BatchItem], refused: &[(usize, Reject)]) {
    for (i, reject) in refused {
        if let (Some(item), Some(delivery)) = (items.get_mut(*i), batch.get(*i)) {
            *item = delivery.dead_letter(reject.reason.as_str(), reject.detail.clone());
        }
    }
}
