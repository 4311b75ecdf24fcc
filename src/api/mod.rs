//! The HTTP API (axum): routing, state and auth layers. One module per resource; handlers
//! read through `store` and never write SQL themselves.

mod auth;
mod capacity;
mod console;
pub mod error;
mod fields;
mod input;
mod kpis;
mod offers;
mod ops;
mod profiles;
mod risk;
mod service_records;
mod vehicles;
mod workshops;

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
        .route("/v1/vehicles/{vin}/risk", get(risk::vehicle_risk))
        .route("/v1/fleet/risk", get(risk::fleet_risk))
        .route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), Scope::FleetRead),
            auth::require_scope,
        ));
    let planner = Router::new()
        .route("/v1/workshops", get(workshops::list))
        .route(
            "/v1/workshops/{id}",
            get(workshops::get).put(workshops::put),
        )
        .route("/v1/workshops/{id}/bays/{bay}", put(workshops::put_bay))
        .route(
            "/v1/workshops/{id}/technicians/{technician}",
            put(workshops::put_technician),
        )
        .route("/v1/workshops/{id}/stock/{sku}", put(workshops::put_stock))
        .route("/v1/workshops/{id}/slots", get(workshops::slots))
        .route("/v1/jobs", get(workshops::list_jobs))
        .route("/v1/jobs/{code}", put(workshops::put_job))
        .route("/v1/parts/{sku}", put(workshops::put_part))
        .route("/v1/kpis", get(kpis::get))
        .route("/v1/capacity/preview", get(capacity::preview))
        .route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), Scope::Planner),
            auth::require_scope,
        ));
    let advisor = Router::new()
        .route("/v1/offers", get(offers::list))
        .route("/v1/offers/{id}", get(offers::get))
        .route("/v1/offers/{id}/accept", post(offers::accept))
        .route("/v1/offers/{id}/decline", post(offers::decline))
        .route("/v1/bookings", get(offers::list_bookings))
        .route("/v1/bookings/{id}", get(offers::get_booking))
        .route("/v1/bookings/{id}/reschedule", post(offers::reschedule))
        .route("/v1/bookings/{id}/cancel", post(offers::cancel))
        .route("/v1/bookings/{id}/complete", post(offers::complete))
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
        .route("/", get(console::root))
        .route("/console", get(console::root))
        .route("/console/", get(console::index))
        .route("/console/assets/{*path}", get(console::asset))
        .merge(fleet_read)
        .merge(planner)
        .merge(advisor)
        .merge(admin)
        .fallback(|| async { error::ApiError::NotFound("no such route".into()) })
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
