//! Aftercare: connected-car telemetry and fault codes in, booked workshop visits out.
//!
//! Every module, by role (docs/architecture.md walks through them):
//!
//! - **Contract**, what the outside relies on: `wire` (MQTT topics and payloads, v1, and every
//!   rejection reason), `config` (settings and their `AFTERCARE_*` names), `metrics`
//!   (Prometheus names), `feeds` (foreign feeds such as Traccar's positions mapped onto the
//!   contract).
//! - **Pipeline**, the running process: `ingest` (MQTT session → batches → one transaction
//!   each → acks in order), `outbox` (signed webhooks and MQTT to vehicles), `service` (starts
//!   and stops every task of `aftercare serve`).
//! - **Links**, how it reaches the rest: `tls` (the one rustls stack with ring, client and
//!   reloading server configs), `mqtt` (broker connection settings, TLS included), `secret`
//!   (secrets from files, redacted wherever printed).
//! - **Domain**, what is known and decided: `component` (component groups), `catalog`
//!   (signals and fault codes), `vehicle` (a vehicle's powertrain, service kinds and
//!   history), `risk` (a score's reasons), `model` (features, training, scoring),
//!   `capacity` (workshops, slot search, demand preview), `offers` (policy, states, the offer
//!   worker), `visit` (one visit's jobs: grouping, prices, its state machine), `booking`
//!   (accepting, moving and completing a window).
//! - **Storage**: `store`, the schema and every SQL statement.
//! - **HTTP**: `api`, the axum routes, API keys and scopes, the OpenAPI document and the web
//!   console.
//! - **Tools**: `simulator` (a fleet with known ground truth, and hostile traffic), `backtest`
//!   (the demand preview against the work that came), `bench` (`aftercare bench
//!   ingest|fuzz|api|reads`, one file each), `certs`
//!   (`aftercare certs`: the fleet CA and certificates), `import` (`aftercare import`: a
//!   fleet's history from DMS, register, fault-code and logger files).
//!
//! Data moves forward: no module imports from a module that imports it back
//! (`tests/module_graph.rs` checks it, file by file and folder by folder).

// Contract
pub mod config;
pub mod feeds;
pub mod metrics;
pub mod wire;

// Pipeline
pub mod ingest;
pub mod outbox;
pub mod service;

// Links
pub mod mqtt;
pub mod secret;
pub mod tls;

// Domain
pub mod booking;
pub mod capacity;
pub mod catalog;
pub mod component;
pub mod model;
pub mod offers;
pub mod risk;
pub mod vehicle;
pub mod visit;

// Storage
pub mod store;

// HTTP
pub mod api;

// Tools
pub mod backtest;
pub mod bench;
pub mod certs;
pub mod import;
pub mod simulator;
