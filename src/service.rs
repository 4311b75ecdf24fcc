//! Wires the pipeline into one running service: database pools, migrations, ingest, risk
//! scoring, the offer worker, the outbox dispatcher and the HTTP API, with a graceful shutdown
//! that commits and acknowledges what is in flight.

use crate::api::{self, AppState};
use crate::config::Config;
use crate::ingest::{self, IngestError};
use crate::metrics::Metrics;
use crate::model::worker::{self, ModelSlot};
use crate::store::{self, Store, StoreError};
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
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Rollup deltas (one per batch) folded per transaction.
const ROLLUP_FOLD_DELTAS: i64 = 50;

pub struct RunningService {
    pub http_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    pub store: Arc<Store>,
    /// The risk model in use (none until an artifact is loaded).
    pub model: Arc<ModelSlot>,
    shutdown: watch::Sender<bool>,
    ingest: Option<JoinHandle<Result<(), IngestError>>>,
    rollup: Option<JoinHandle<()>>,
    scoring: Option<JoinHandle<()>>,
    offers: Option<JoinHandle<()>>,
    outbox: Option<JoinHandle<Result<(), crate::outbox::OutboxError>>>,
    http: JoinHandle<()>,
}

/// Migrates, then starts ingest (if enabled) and the API. Returns once both are running.
pub async fn start(config: Config) -> Result<RunningService, ServiceError> {
    let api_pool = store::pool(&config.database.url, config.database.max_connections).await?;
    store::migrate(&api_pool).await?;
    let store = Arc::new(Store::open(api_pool).await?);
    tracing::info!(flavor = ?store.flavor(), "database ready");
    let metrics = Arc::new(Metrics::new());
    let (shutdown, shutdown_rx) = watch::channel(false);

    let ingest = if config.ingest.enabled {
        // Its own pool, so API load never starves the write path.
        let connections = u32::try_from(config.ingest.writers).unwrap_or(u32::MAX);
        let ingest_store =
            Arc::new(Store::open(store::pool(&config.database.url, connections).await?).await?);
        ingest::mqtt_options(&config)?;
        let (config, metrics, rx) = (config.clone(), metrics.clone(), shutdown_rx.clone());
        Some(tokio::spawn(async move {
            ingest::run(&config, ingest_store, metrics, rx).await
        }))
    } else {
        None
    };

    let rollup_every = std::time::Duration::from_millis(config.ingest.rollup_interval_ms);
    let rollup = if store.flavor().writes_rollup() && !rollup_every.is_zero() {
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

    let model = Arc::new(ModelSlot::default());
    let scoring = config.model.enabled.then(|| {
        let (pool, cfg, slot, metrics, rx) = (
            store.pool().clone(),
            config.model.worker(),
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
    let outbox = config.notify.enabled.then(|| {
        let (pool, config, metrics, rx) = (
            store.pool().clone(),
            config.clone(),
            metrics.clone(),
            shutdown_rx.clone(),
        );
        tokio::spawn(crate::outbox::run(pool, config, metrics, rx))
    });

    let listener = tokio::net::TcpListener::bind(config.http.addr)
        .await
        .map_err(|source| ServiceError::Bind {
            addr: config.http.addr,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| ServiceError::Bind {
        addr: config.http.addr,
        source,
    })?;
    let app = api::router(AppState {
        store: store.clone(),
        metrics: metrics.clone(),
        ingest_enabled: config.ingest.enabled,
    });
    let mut rx = shutdown_rx;
    let http = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = rx.wait_for(|stop| *stop).await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    tracing::info!(%http_addr, "listening");
    Ok(RunningService {
        http_addr,
        metrics,
        store,
        model,
        shutdown,
        ingest,
        rollup,
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
        if let Some(rollup) = self.rollup {
            let _ = rollup.await;
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
        let _ = self.http.await;
        Ok(ingest?)
    }
}
