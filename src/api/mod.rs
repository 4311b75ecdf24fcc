//! The HTTP API (axum): routing, state and auth layers. One module per resource; handlers
//! read through `store` and never write SQL themselves.

mod auth;
pub mod error;
mod fields;
mod ops;
mod profiles;
mod service_records;
mod vehicles;

use crate::metrics::Metrics;
use crate::store::keys::Scope;
use crate::store::Store;
use axum::routing::{get, post, put};
use axum::Router;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub ingest_enabled: bool,
}

pub fn router(state: AppState) -> Router {
    let fleet_read = Router::new()
        .route("/v1/vehicles/{vin}", get(vehicles::profile))
        .route("/v1/vehicles/{vin}/telemetry", get(vehicles::telemetry))
        .route("/v1/vehicles/{vin}/dtcs", get(vehicles::dtcs))
        .route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), Scope::FleetRead),
            auth::require_scope,
        ));
    let advisor = Router::new()
        .route("/v1/service-records", post(service_records::create))
        .route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), Scope::Advisor),
            auth::require_scope,
        ));
    let admin = Router::new()
        .route("/v1/vehicles/{vin}", put(profiles::put))
        .route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), Scope::Admin),
            auth::require_scope,
        ));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .merge(fleet_read)
        .merge(advisor)
        .merge(admin)
        .fallback(|| async { error::ApiError::NotFound("no such route".into()) })
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
