//! Aftercare: connected-car telemetry and fault codes in, booked workshop visits out.
//!
//! The modules follow the pipeline; data flows forward through them:
//! `wire` (contract) → `ingest` (MQTT consumer) → `store` (PostgreSQL / TimescaleDB) → `api`.
//! `config`, `metrics` and `simulator` serve them all.

pub mod api;
pub mod backtest;
pub mod bench;
pub mod bench_api;
pub mod booking;
pub mod capacity;
pub mod catalog;
pub mod component;
pub mod config;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod offers;
pub mod outbox;
pub mod service;
pub mod simulator;
pub mod store;
pub mod visit;
pub mod wire;
