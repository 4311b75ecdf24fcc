//! Wires the pipeline into one running service: database pools, migrations, ingest, risk
//! scoring, the offer worker, the outbox dispatcher and the HTTP API, with a graceful shutdown
//! that commits and acknowledges what is in flight.

use crate::api::{self, AppState};
use crate::config::Config;
use crate::ingest::{self, IngestError};
use crate::metrics::Metrics;
use crate::model::worker::{self, ModelSlot};
use crate::store::{self, Store, StoreError};
use axum::serve::ListenerExt;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Outbox(#[from] crate::outbox::OutboxError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Rollup deltas (one per batch) folded per transaction.
const ROLLUP_FOLD_DELTAS: i64 = 50;

pub struct RunningService {
    /// The API: HTTPS when `http.tls_cert_file` is set, plain HTTP otherwise.
    pub http_addr: SocketAddr,
    /// The plain listener beside HTTPS (`http.plain_addr`), if any.
    pub plain_http_addr: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    pub store: Arc<Store>,
    /// The risk model in use (none until an artifact is loaded).
    pub model: Arc<ModelSlot>,
    shutdown: watch::Sender<bool>,
    ingest: Option<JoinHandle<Result<(), IngestError>>>,
    rollup: Option<JoinHandle<()>>,
    maintenance: Option<JoinHandle<()>>,
    relayout: Option<JoinHandle<()>>,
    scoring: Option<JoinHandle<()>>,
    offers: Option<JoinHandle<()>>,
    outbox: Option<JoinHandle<Result<(), crate::outbox::OutboxError>>>,
    http: Vec<JoinHandle<()>>,
}

async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), ServiceError> {
    let bind_error = |source| ServiceError::Bind { addr, source };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok((listener, local))
}

/// Small responses go out at once rather than wait for an ACK.
fn nodelay(tcp: &mut tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
}

/// Serves the API on one listener (plain TCP or TLS) until shutdown.
fn serve<L>(listener: L, app: axum::Router, rx: watch::Receiver<bool>) -> JoinHandle<()>
where
    L: axum::serve::Listener,
{
    tokio::spawn(api::serve::serve(listener, app, rx))
}

/// Migrates, then starts ingest (if enabled) and the API. Returns once both are running.
pub async fn start(config: Config) -> Result<RunningService, ServiceError> {
    // TLS material and connection settings first: a missing or mismatched file is one clear
    // error before anything connects.
    let https = match (&config.http.tls_cert_file, &config.http.tls_key_file) {
        (Some(cert), Some(key)) => {
            let cert = Arc::new(crate::tls::server::ReloadingCert::load(cert, key)?);
            Some(crate::tls::server::server_config(cert)?)
        }
        _ => None,
    };
    if config.ingest.enabled {
        ingest::mqtt_options(&config)?;
    }
    let outbox_channels = if config.notify.enabled {
        Some(crate::outbox::Channels::open(&config)?)
    } else {
        None
    };
    let api_pool = store::pool(&config.database.url, config.database.max_connections).await?;
    let flavor = store::migrate(&api_pool).await?;
    store::retention::apply_policy(&api_pool, flavor, &(&config.storage).into()).await?;
    store::retention::ensure_partitions(&api_pool, flavor, chrono::Utc::now()).await?;
    let limits = store::SignalLimits::from(&config.storage);
    let store = Arc::new(
        Store::open_with(api_pool, limits)
            .await?
            .with_wire_limits(config.limits()),
    );
    tracing::info!(%flavor, "database ready");
    let metrics = Arc::new(Metrics::new());
    let (shutdown, shutdown_rx) = watch::channel(false);

    let ingest = if config.ingest.enabled {
        // Mapping files are read before anything runs: a bad one stops the start.
        let feeds = ingest::Feeds::load(&config)?;
        // Its own pool, so API load never starves the write path.
        let connections = u32::try_from(config.ingest.writers).unwrap_or(u32::MAX);
        let ingest_store = Arc::new(
            Store::open_with(
                store::pool(&config.database.url, connections).await?,
                limits,
            )
            .await?,
        );
        let (config, metrics, rx) = (config.clone(), metrics.clone(), shutdown_rx.clone());
        Some(tokio::spawn(async move {
            ingest::run(&config, feeds, ingest_store, metrics, rx).await
        }))
    } else {
        None
    };

    let rollup_every = std::time::Duration::from_millis(config.ingest.rollup_interval_ms);
    let rollup = if !rollup_every.is_zero() {
        let (store, metrics, mut rx) = (store.clone(), metrics.clone(), shutdown_rx.clone());
        Some(tokio::spawn(async move {
            loop {
                let started = std::time::Instant::now();
                let folded = store.fold_rollup(ROLLUP_FOLD_DELTAS).await;
                metrics
                    .rollup_fold_seconds
                    .inc_by(started.elapsed().as_secs_f64());
                match folded {
                    Ok(n) => {
                        metrics.rollup_deltas_folded.inc_by(n);
                        if n == ROLLUP_FOLD_DELTAS as u64 {
                            continue;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "rollup fold failed; retrying"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(rollup_every) => {}
                    _ = rx.wait_for(|stop| *stop) => return,
                }
            }
        }))
    } else {
        None
    };

    let maintenance = (config.storage.maintenance_interval_secs > 0).then(|| {
        tokio::spawn(store::retention::run(
            store.pool().clone(),
            flavor,
            std::time::Duration::from_secs(config.storage.maintenance_interval_secs),
            chrono::Duration::hours(config.storage.job_stale_after_hours),
            metrics.clone(),
            shutdown_rx.clone(),
        ))
    });
    // Rows of an older storage layout move over while the service runs (one instance at a
    // time does it).
    let relayout = if store::relayout::legacy_present(store.pool()).await? {
        Some(tokio::spawn(store::relayout::run(
            store.pool().clone(),
            std::time::Duration::from_millis(config.storage.relayout_pause_ms),
            shutdown_rx.clone(),
        )))
    } else {
        None
    };

    let model = Arc::new(ModelSlot::default());
    let scoring = config.model.enabled.then(|| {
        let (pool, cfg, slot, metrics, rx) = (
            store.pool().clone(),
            worker::WorkerConfig::from(&config.model),
            model.clone(),
            metrics.clone(),
            shutdown_rx.clone(),
        );
        tokio::spawn(worker::run(pool, cfg, slot, metrics, rx))
    });
    let offers = config.offers.enabled.then(|| {
        let (pool, cfg, metrics, rx) = (
            store.pool().clone(),
            config.offers.clone(),
            metrics.clone(),
            shutdown_rx.clone(),
        );
        tokio::spawn(crate::offers::run(pool, cfg, metrics, rx))
    });
    let outbox = outbox_channels.map(|channels| {
        let (pool, cfg, metrics, rx) = (
            store.pool().clone(),
            config.notify.clone(),
            metrics.clone(),
            shutdown_rx.clone(),
        );
        tokio::spawn(crate::outbox::run(pool, cfg, channels, metrics, rx))
    });

    let app = api::router(AppState {
        store: store.clone(),
        metrics: metrics.clone(),
        ingest_enabled: config.ingest.enabled,
    });
    let (listener, http_addr) = bind(config.http.addr).await?;
    let mut http = Vec::new();
    let mut plain_http_addr = None;
    match https {
        Some(tls) => {
            let listener =
                crate::tls::server::TlsListener::new(listener, tls).map_err(|source| {
                    ServiceError::Bind {
                        addr: config.http.addr,
                        source,
                    }
                })?;
            http.push(serve(listener, app.clone(), shutdown_rx.clone()));
            tracing::info!(%http_addr, "listening (HTTPS)");
            if let Some(addr) = config.http.plain_addr {
                let (plain, local) = bind(addr).await?;
                http.push(serve(plain.tap_io(nodelay), app, shutdown_rx));
                tracing::info!(http_addr = %local, "listening (plain HTTP, for a TLS proxy)");
                plain_http_addr = Some(local);
            }
        }
        None => {
            http.push(serve(listener.tap_io(nodelay), app, shutdown_rx));
            tracing::info!(%http_addr, "listening");
        }
    }
    Ok(RunningService {
        http_addr,
        plain_http_addr,
        metrics,
        store,
        model,
        shutdown,
        ingest,
        rollup,
        maintenance,
        relayout,
        scoring,
        offers,
        outbox,
        http,
    })
}

impl RunningService {
    /// Stops taking messages, commits and acknowledges what is held, and stops the API.
    pub async fn shutdown(self) -> Result<(), ServiceError> {
        let _ = self.shutdown.send(true);
        let ingest = match self.ingest {
            Some(handle) => handle.await.unwrap_or(Ok(())),
            None => Ok(()),
        };
        for task in [self.rollup, self.maintenance, self.relayout]
            .into_iter()
            .flatten()
        {
            let _ = task.await;
        }
        if let Some(scoring) = self.scoring {
            let _ = scoring.await;
        }
        if let Some(offers) = self.offers {
            let _ = offers.await;
        }
        if let Some(outbox) = self.outbox {
            if let Ok(Err(e)) = outbox.await {
                tracing::error!(error = %e, "outbox dispatcher stopped");
            }
        }
        for http in self.http {
            let _ = http.await;
        }
        Ok(ingest?)
    }
}
