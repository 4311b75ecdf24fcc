//! Helpers for the capacity, booking and offer tests: a database with the demo workshops,
//! API keys, and requests straight into the router.
#![allow(dead_code)]

pub use crate::common::load_demo_workshops;
use crate::common::TestDb;
use aftercare::api::{router, AppState};
use aftercare::capacity::{Seed, WorkshopSpec};
use aftercare::metrics::Metrics;
use aftercare::store::keys::{self, Scope};
use aftercare::store::offers;
use aftercare::store::Store;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use chrono::{DateTime, Duration, DurationRound, TimeDelta, Utc};
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
    load_demo_workshops(&pool).await;
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

/// An owner profile (what the registry PUT would store).
pub async fn profile(pool: &PgPool, vehicle: i32, home: Option<&str>, consent: bool) {
    sqlx::query(
        "INSERT INTO vehicle_profiles (vehicle_id, make, model, model_year, powertrain, home_workshop, owner_ref, offers_consent)
         VALUES ($1, 'Renault', 'Megane', 2019, 'ice', $2, 'owner-' || $1, $3)
         ON CONFLICT (vehicle_id) DO UPDATE SET home_workshop = $2, offers_consent = $3",
    )
    .bind(vehicle)
    .bind(home)
    .bind(consent)
    .execute(pool)
    .await
    .unwrap();
}

/// A current score, as the model's scoring worker writes it.
pub async fn score(
    pool: &PgPool,
    vehicle: i32,
    component: &str,
    p: [f32; 3],
    urgency: Option<f32>,
) {
    let factors = serde_json::json!([
        {"feature": "pad_wear_max", "value": 81.0, "contribution": 0.9, "text": "front-left pads 81% worn"},
        {"feature": "km_since_service", "value": 31000.0, "contribution": 0.3, "text": "31,000 km since the last service"},
        {"feature": "dtc_C1A20", "value": 1.0, "contribution": 1.4, "text": "pad wear sensor at limit (C1A20)"},
        {"feature": "ambient_cold_days", "value": 4.0, "contribution": -0.05, "text": "4 cold days"}
    ]);
    sqlx::query(
        "INSERT INTO risk_current (vehicle_id, component, scored_at, model_version, p7, p30, p90, urgency_days, factors)
         VALUES ($1, $2, now(), 'test-1', $3, $4, $5, $6, $7)
         ON CONFLICT (vehicle_id, component) DO UPDATE SET scored_at = now(), p7 = $3, p30 = $4, p90 = $5, urgency_days = $6",
    )
    .bind(vehicle)
    .bind(component)
    .bind(p[0])
    .bind(p[1])
    .bind(p[2])
    .bind(urgency)
    .bind(factors)
    .execute(pool)
    .await
    .unwrap();
}

/// A workshop open every day 08:00-18:00 UTC: 4 lift bays, 3 brake technicians and one
/// tyre specialist, brake pads in stock.
pub async fn race_workshop(pool: &PgPool) {
    load_open_all_week(
        pool,
        r#"
[[workshop]]
code = "WS-10"
name = "Race track"
time_zone = "UTC"
stock = [{ sku = "BRK-PAD-FRONT", on_hand = 500, lead_time_days = 3 }]
[[workshop.bay]]
code = "B1"
capabilities = ["lift"]
[[workshop.bay]]
code = "B2"
capabilities = ["lift"]
[[workshop.bay]]
code = "B3"
capabilities = ["lift"]
[[workshop.bay]]
code = "B4"
capabilities = ["lift"]
[[workshop.technician]]
code = "T1"
name = "One"
skills = ["brakes"]
[[workshop.technician]]
code = "T2"
name = "Two"
skills = ["brakes", "diagnostics"]
[[workshop.technician]]
code = "T3"
name = "Three"
skills = ["brakes"]
[[workshop.technician]]
code = "T4"
name = "Four"
skills = ["tyres"]
"#,
    )
    .await;
}

/// Loads the workshop of a seed file (TOML), open and every technician on shift every day
/// 08:00-18:00 in its time zone.
pub async fn load_open_all_week(pool: &PgPool, toml: &str) {
    let all_week = |r: &str| {
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .map(|d| (d.to_string(), vec![r.to_string()]))
            .collect()
    };
    let mut seed: Seed = toml::from_str(toml).unwrap();
    let w: &mut WorkshopSpec = &mut seed.workshops[0];
    w.hours = all_week("08:00-18:00");
    for t in &mut w.technicians {
        t.shifts = all_week("08:00-18:00");
    }
    seed.validate().unwrap();
    aftercare::store::capacity::load_seed(pool, &seed)
        .await
        .unwrap();
}

/// Accepts every offer of `ids` at once, half of them at 10:00 the day after tomorrow and
/// an hour later (UTC), so that every window overlaps every other of a job longer than
/// an hour; returns the bodies of the 200s and of the 409s (anything else fails).
pub async fn accept_all_at_once(api: &Api, ids: &[i64]) -> (Vec<Value>, Vec<Value>) {
    let a = day_after_tomorrow_at(10);
    let starts = (a, a + Duration::hours(1));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, id) in ids.iter().enumerate() {
        let (app, key, id) = (api.app.clone(), api.advisor.clone(), *id);
        let start = if i % 2 == 0 { starts.0 } else { starts.1 };
        tasks.spawn(async move {
            let body = serde_json::json!({"start": start}).to_string();
            call(
                &app,
                Method::POST,
                &format!("/v1/offers/{id}/accept"),
                Some(&key),
                Some(&body),
            )
            .await
        });
    }
    let (mut ok, mut lost) = (Vec::new(), Vec::new());
    while let Some(r) = tasks.join_next().await {
        let (status, body) = r.unwrap();
        match status.as_u16() {
            200 => ok.push(body),
            409 => lost.push(body),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    (ok, lost)
}

/// An open brake-pad offer for test vehicle `n` at `workshop`.
pub async fn offer_for(pool: &PgPool, n: usize, workshop: &str) -> i64 {
    let o = brake_offer_for(pool, n, workshop).await;
    offers::create(pool, &o).await.unwrap().unwrap().id
}

/// A new brake-pad offer (not stored) for test vehicle `n` at `workshop`.
pub async fn brake_offer_for(pool: &PgPool, n: usize, workshop: &str) -> offers::NewOffer {
    let vehicle = vehicle(pool, &vin(n)).await;
    let ws: i32 = sqlx::query_scalar("SELECT id FROM workshops WHERE code = $1")
        .bind(workshop)
        .fetch_one(pool)
        .await
        .unwrap();
    aftercare::bench::api::brake_offer(vehicle, ws, "test")
}

/// What a race of accepts must leave: exactly `booked` bookings (and offers booked), no two
/// on one bay or technician at once, and each loser a `window_taken` whose alternatives are
/// free of every booking made.
pub async fn assert_race_outcome(api: &Api, ok: &[Value], lost: &[Value], booked: usize) {
    assert_eq!(ok.len(), booked, "exactly the feasible number succeed");
    let span = |w: &Value| -> (DateTime<Utc>, DateTime<Utc>) {
        (
            w["start"].as_str().unwrap().parse().unwrap(),
            w["end"].as_str().unwrap().parse().unwrap(),
        )
    };
    for body in lost {
        assert_eq!(body["error"]["code"], "window_taken", "{body}");
        let alts = body["alternatives"].as_array().unwrap();
        assert!(!alts.is_empty(), "each loser gets alternatives");
        for alt in alts {
            let (s, e) = span(alt);
            for b in ok {
                let (bs, be) = span(b);
                let shares = b["bay"] == alt["bay"] || b["technician"] == alt["technician"];
                assert!(
                    !shares || e <= bs || s >= be,
                    "alternative {alt} collides with {b}"
                );
            }
        }
    }
    let pool = &api.pool;
    assert_eq!(aftercare::store::booking::overlaps(pool).await.unwrap(), 0);
    for (sql, what) in [
        (
            "SELECT count(*) FROM bookings WHERE status = 'booked'",
            "bookings",
        ),
        ("SELECT count(*) FROM work_orders", "work orders"),
        (
            "SELECT count(*) FROM offers WHERE state = 'booked'",
            "offers booked",
        ),
        (
            "SELECT count(*) FROM outbox WHERE kind = 'booking.created' AND channel = 'webhook'",
            "booking events",
        ),
    ] {
        let n: i64 = sqlx::query_scalar(sql).fetch_one(pool).await.unwrap();
        assert_eq!(n, booked as i64, "{what}");
    }
}

pub fn day_after_tomorrow_at(hour: i64) -> DateTime<Utc> {
    (Utc::now() + Duration::days(2))
        .duration_trunc(TimeDelta::days(1))
        .unwrap()
        + Duration::hours(hour)
}
