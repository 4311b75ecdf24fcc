//! The HTTP API (axum): routing, state and the layers every request passes (edge limits,
//! auth, the one error shape). One module per resource; handlers read through `store` and
//! never write SQL themselves. `serve` runs the router on connections.

mod auth;
mod bookings;
mod capacity;
mod console;
mod devices;
pub(crate) mod doc;
pub mod edge;
pub mod error;
mod fields;
mod imports;
mod ingest;
mod input;
mod kpis;
mod offers;
mod ops;
mod profiles;
mod risk;
pub mod serve;
mod service_records;
mod vehicles;
mod workshops;

use crate::metrics::Metrics;
use crate::store::keys::Scope;
use crate::store::Store;
use axum::routing::get;
use axum::{Extension, Router};
use doc::scoped;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub ingest_enabled: bool,
}

/// Paths served outside the OpenAPI document: the web console's pages and assets.
pub const UNDOCUMENTED_PATHS: &[&str] = &["/", "/console", "/console/", "/console/assets/{*path}"];

/// The documented API: every route registered here is in the document, because `routes!`
/// adds a handler's `#[utoipa::path]` to both (one `routes!` per path).
fn api(state: &AppState) -> OpenApiRouter<AppState> {
    let s = |scope, r| scoped(state, scope, r);
    OpenApiRouter::with_openapi(doc::ApiDoc::openapi())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi))
        // fleet-read
        .routes(s(Scope::FleetRead, routes!(vehicles::profile)))
        .routes(s(Scope::FleetRead, routes!(vehicles::telemetry)))
        .routes(s(Scope::FleetRead, routes!(vehicles::dtcs)))
        .routes(s(Scope::FleetRead, routes!(risk::vehicle_risk)))
        .routes(s(Scope::FleetRead, routes!(risk::fleet_risk)))
        // planner
        .routes(s(Scope::Planner, routes!(workshops::list)))
        .routes(s(Scope::Planner, routes!(workshops::get, workshops::put)))
        .routes(s(Scope::Planner, routes!(workshops::put_bay)))
        .routes(s(Scope::Planner, routes!(workshops::put_technician)))
        .routes(s(Scope::Planner, routes!(workshops::put_stock)))
        .routes(s(Scope::Planner, routes!(workshops::slots)))
        .routes(s(Scope::Planner, routes!(workshops::list_jobs)))
        .routes(s(Scope::Planner, routes!(workshops::put_job)))
        .routes(s(Scope::Planner, routes!(workshops::put_part)))
        .routes(s(Scope::Planner, routes!(kpis::get)))
        .routes(s(Scope::Planner, routes!(capacity::preview)))
        // advisor
        .routes(s(Scope::Advisor, routes!(offers::list)))
        .routes(s(Scope::Advisor, routes!(offers::get)))
        .routes(s(Scope::Advisor, routes!(offers::accept)))
        .routes(s(Scope::Advisor, routes!(offers::decline)))
        .routes(s(Scope::Advisor, routes!(offers::decline_job)))
        .routes(s(Scope::Advisor, routes!(bookings::list)))
        .routes(s(Scope::Advisor, routes!(bookings::get)))
        .routes(s(Scope::Advisor, routes!(bookings::reschedule)))
        .routes(s(Scope::Advisor, routes!(bookings::cancel)))
        .routes(s(Scope::Advisor, routes!(bookings::complete)))
        .routes(s(Scope::Advisor, routes!(service_records::create)))
        // ingest
        .routes(s(Scope::Ingest, routes!(ingest::traccar)))
        .routes(s(Scope::Ingest, routes!(imports::telemetry)))
        // admin
        .routes(s(Scope::Admin, routes!(profiles::put)))
        .routes(s(Scope::Admin, routes!(devices::put)))
        .routes(s(Scope::Admin, routes!(imports::profiles)))
}

/// The OpenAPI document as served at `/openapi.json`.
fn openapi_json(doc: &utoipa::openapi::OpenApi) -> bytes::Bytes {
    // Serialising plain data cannot fail; an empty object would still be served as JSON.
    doc.to_json().unwrap_or_else(|_| "{}".into()).into()
}

/// The API with the limits the service runs with.
pub fn router(state: AppState) -> Router {
    router_with(state, edge::Limits::default())
}

/// The API with other limits (tests use short ones).
pub fn router_with(state: AppState, limits: edge::Limits) -> Router {
    let (api, doc) = api(&state).split_for_parts();
    let console = Router::new()
        .route("/", get(console::root))
        .route("/console", get(console::root))
        .route("/console/", get(console::index))
        .route("/console/assets/{*path}", get(console::asset));
    api.merge(console)
        .fallback(|| async { error::ApiError::NotFound("no such route".into()) })
        .layer(axum::middleware::from_fn_with_state(limits, edge::head))
        .layer(axum::middleware::map_response(error::shape))
        .layer(Extension(ops::OpenApiJson(openapi_json(&doc))))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
