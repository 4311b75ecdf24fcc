//! Helpers for the capacity, booking and offer tests: a database with the demo workshops,
//! API keys, and requests straight into the router.
#![allow(dead_code)]

use crate::common::TestDb;
use aftercare::api::{router, AppState};
use aftercare::metrics::Metrics;
use aftercare::store::keys::{self, Scope};
use aftercare::store::Store;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use sqlx::PgPool;
use std::sync::Arc;
use tower::ServiceExt;

pub const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/workshops.toml");

pub struct Api {
    pub app: axum::Router,
    pub pool: PgPool,
    pub store: Arc<Store>,
    pub advisor: String,
    pub planner: String,
    pub db: TestDb,
}

/// A fresh database with the demo seed loaded, the router, and advisor and planner keys.
pub async fn api() -> Api {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let seed = aftercare::capacity::Seed::from_file(std::path::Path::new(SEED)).unwrap();
    aftercare::store::capacity::load_seed(&pool, &seed)
        .await
        .unwrap();
    let store = Arc::new(Store::open(pool.clone()).await.unwrap());
    let app = router(AppState {
        store: store.clone(),
        metrics: Arc::new(Metrics::new()),
        ingest_enabled: false,
    });
    Api {
        app,
        advisor: keys::create(&pool, "advisor", &[Scope::Advisor])
            .await
            .unwrap(),
        planner: keys::create(&pool, "planner", &[Scope::Planner])
            .await
            .unwrap(),
        pool,
        store,
        db,
    }
}

impl Api {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        call(&self.app, method, path, key, body).await
    }

    pub async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(key), Some(&body.to_string()))
            .await
    }

    pub async fn put(&self, path: &str, key: &str, body: &Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(key), Some(&body.to_string()))
            .await
    }
}

pub async fn call(
    app: &axum::Router,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_owned())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Query-string encoding of an RFC 3339 instant.
pub fn enc(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339().replace('+', "%2B")
}

/// A vehicle row (what ingest would have created) and its id.
pub async fn vehicle(pool: &PgPool, vin: &str) -> i32 {
    sqlx::query_scalar("INSERT INTO vehicles (vin) VALUES ($1) ON CONFLICT (vin) DO UPDATE SET vin = $1 RETURNING id")
        .bind(vin)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A VIN for the n-th test vehicle (valid ISO 3779 characters).
pub fn vin(n: usize) -> String {
    format!("WAUZZZ8V{n:09}")
}
