//! Operational endpoints, open without a key: liveness, readiness, metrics, the API document.

use super::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

/// Liveness
#[utoipa::path(
    get, path = "/healthz", tag = "ops", operation_id = "healthz",
    responses((status = 200, description = "The process is up", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// The database answered.
    pub database: bool,
    /// Whether the MQTT connection is up, or `"disabled"` when ingest does not run here.
    #[schema(value_type = serde_json::Value)]
    pub broker: serde_json::Value,
    /// Storage upkeep: partitions and retention, and TimescaleDB's compression and retention
    /// jobs. A failing job needs an operator but does not stop this instance serving, so it
    /// shows here without making the instance unready.
    pub storage: StorageHealth,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StorageHealth {
    pub ok: bool,
    /// What failed or has not succeeded for `storage.job_stale_after_hours`.
    pub problems: Vec<String>,
}

/// Readiness: database and broker reachable
///
/// Ready when the database answers and, if ingest runs in this process, the broker
/// connection is up.
#[utoipa::path(
    get, path = "/readyz", tag = "ops", operation_id = "readyz",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready; the body says which dependency is down", body = Readiness),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let database = state.store.ping().await.is_ok();
    let broker = !state.ingest_enabled || state.metrics.mqtt_connected.get() == 1;
    let status = if database && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let problems = state.metrics.storage_problems();
    let readiness = Readiness {
        database,
        broker: if state.ingest_enabled {
            serde_json::Value::Bool(broker)
        } else {
            "disabled".into()
        },
        storage: StorageHealth {
            ok: problems.is_empty(),
            problems,
        },
    };
    (status, Json(readiness))
}

/// Prometheus metrics (text format)
#[utoipa::path(
    get, path = "/metrics", tag = "ops", operation_id = "metrics",
    responses((status = 200, description = "Metrics in the Prometheus text format 0.0.4", body = String, content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// The generated document, serialised once when the router is built.
#[derive(Clone)]
pub struct OpenApiJson(pub bytes::Bytes);

/// This document
#[utoipa::path(
    get, path = "/openapi.json", tag = "ops", operation_id = "openapi",
    responses((status = 200, description = "OpenAPI 3.1, generated from the code by utoipa", content_type = "application/json"))
)]
pub async fn openapi(Extension(OpenApiJson(doc)): Extension<OpenApiJson>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], doc)
}
