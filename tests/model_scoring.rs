//! Online scoring against a real database: a marked vehicle is scored once; one marked again
//! while being scored is scored again; marks settle (debounce) but busy vehicles are not
//! starved; two workers never score the same mark; the running service swaps in a new
//! artifact without restart and re-scores the fleet with it; and the risk API pages each
//! vehicle once and refuses bad parameters.

mod common;
mod model_common;

use aftercare::api::{router, AppState};
use aftercare::metrics::Metrics;
use aftercare::model::score::Scorer;
use aftercare::model::worker;
use aftercare::store::keys::{self, Scope};
use aftercare::store::risk::{self, NewScore};
use aftercare::store::Store;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{Duration as ChronoDuration, Utc};
use common::*;
use http_body_util::BodyExt;
use model_common::*;
use serde_json::Value;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// `n` vehicles that reported every day of the last ten.
async fn active_fleet(pool: &PgPool, n: usize) -> Vec<i32> {
    brake_fleet(pool, n, 10, midnight(Utc::now()), |_| 0.1)
        .await
        .ids
}

/// Score rows per (vehicle, component).
async fn scores_per_pair(pool: &PgPool) -> BTreeMap<(i32, String), i64> {
    let rows: Vec<(i32, String, i64)> =
        sqlx::query_as("SELECT vehicle_id, component, count(*) FROM risk_scores GROUP BY 1, 2")
            .fetch_all(pool)
            .await
            .unwrap();
    rows.into_iter().map(|(v, c, n)| ((v, c), n)).collect()
}

#[tokio::test]
async fn a_marked_vehicle_is_scored_once_for_every_component_it_has() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let ids = active_fleet(&pool, 3).await;
    let scorer = Scorer::new(constant_artifact("v1", 0.2)).unwrap();
    mark(&pool, &ids).await;
    let cfg = worker_config(100);
    assert_eq!(
        worker::score_due(&pool, &scorer, &cfg)
            .await
            .unwrap()
            .claimed,
        3
    );
    assert_eq!(
        worker::score_due(&pool, &scorer, &cfg)
            .await
            .unwrap()
            .claimed,
        0
    );
    let pairs = scores_per_pair(&pool).await;
    // Combustion cars: every component but the traction battery.
    assert_eq!(pairs.len(), 3 * 7);
    assert!(pairs.values().all(|&n| n == 1));
    assert!(!pairs.keys().any(|(_, c)| c == "traction_battery"));
    assert_eq!(count(&pool, "SELECT count(*) FROM risk_current").await, 21);
    assert_eq!(count(&pool, "SELECT count(*) FROM score_dirty").await, 0);
    let (version, p30): (String, f32) =
        sqlx::query_as("SELECT DISTINCT model_version, p30 FROM risk_current")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((version.as_str(), p30), ("v1", 0.2));
}

#[tokio::test]
async fn a_vehicle_marked_again_while_being_scored_is_scored_again() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let ids = active_fleet(&pool, 1).await;
    let scorer = Scorer::new(constant_artifact("v1", 0.2)).unwrap();
    let cfg = worker_config(100);
    mark(&pool, &ids).await;

    // The steps of `score_due`, with new data arriving in the middle.
    let claimed_at = Utc::now();
    let claims = risk::claim_marks(&pool, 100, cfg.debounce, cfg.max_delay, cfg.lease)
        .await
        .unwrap();
    assert_eq!(claims.len(), 1);
    // While the lease holds, no other worker gets the mark.
    let other = risk::claim_marks(&pool, 100, cfg.debounce, cfg.max_delay, cfg.lease)
        .await
        .unwrap();
    assert!(other.is_empty());
    // The ingest writer marks the vehicle again.
    sqlx::query(
        "INSERT INTO score_dirty (vehicle_id, marked_at) VALUES ($1, now())
         ON CONFLICT (vehicle_id) DO UPDATE SET marked_at = EXCLUDED.marked_at",
    )
    .bind(ids[0])
    .execute(&pool)
    .await
    .unwrap();
    worker::score_vehicles(&pool, &scorer, &ids).await.unwrap();
    let deleted = risk::release_marks(&pool, &claims, claimed_at, &[])
        .await
        .unwrap();
    assert_eq!(deleted, 0, "the re-marked vehicle keeps its mark");
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM score_dirty WHERE claimed_until IS NULL"
        )
        .await,
        1
    );

    // So it is scored again, once.
    assert_eq!(
        worker::score_due(&pool, &scorer, &cfg)
            .await
            .unwrap()
            .claimed,
        1
    );
    assert_eq!(
        worker::score_due(&pool, &scorer, &cfg)
            .await
            .unwrap()
            .claimed,
        0
    );
    let pairs = scores_per_pair(&pool).await;
    assert!(pairs.values().all(|&n| n == 2), "{pairs:?}");
    assert_eq!(count(&pool, "SELECT count(*) FROM score_dirty").await, 0);
}

#[tokio::test]
async fn marks_settle_before_scoring_but_busy_vehicles_are_not_starved() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let ids = active_fleet(&pool, 2).await;
    // Vehicle 0 has just been marked, and was first marked a moment ago; vehicle 1 has just
    // been marked too, but has been dirty for two minutes (it keeps sending).
    sqlx::query(
        "INSERT INTO score_dirty (vehicle_id, marked_at, first_marked_at)
         VALUES ($1, now(), now()), ($2, now(), now() - INTERVAL '2 minutes')",
    )
    .bind(ids[0])
    .bind(ids[1])
    .execute(&pool)
    .await
    .unwrap();
    let settle = Duration::from_secs(30);
    let max_delay = Duration::from_secs(60);
    let lease = Duration::from_secs(60);
    let claims = risk::claim_marks(&pool, 10, settle, max_delay, lease)
        .await
        .unwrap();
    let claimed: Vec<i32> = claims.iter().map(|c| c.vehicle_id).collect();
    assert_eq!(claimed, vec![ids[1]]);
    // A lease that ran out (a crashed worker) gives the mark back.
    sqlx::query("UPDATE score_dirty SET claimed_until = now() - INTERVAL '1 second'")
        .execute(&pool)
        .await
        .unwrap();
    let again = risk::claim_marks(&pool, 10, settle, max_delay, lease)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].vehicle_id, ids[1]);
}

#[tokio::test]
async fn two_workers_never_score_the_same_mark() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let ids = active_fleet(&pool, 60).await;
    mark(&pool, &ids).await;
    let scorer = Arc::new(Scorer::new(constant_artifact("v1", 0.2)).unwrap());
    let mut workers = Vec::new();
    for _ in 0..2 {
        let (pool, scorer) = (db.pool().await, scorer.clone());
        workers.push(tokio::spawn(async move {
            let cfg = worker_config(7);
            let mut claimed = 0;
            loop {
                match worker::score_due(&pool, &scorer, &cfg)
                    .await
                    .unwrap()
                    .claimed
                {
                    0 => return claimed,
                    n => claimed += n,
                }
            }
        }));
    }
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    assert_eq!(total, 60, "every mark claimed exactly once");
    let pairs = scores_per_pair(&pool).await;
    assert_eq!(pairs.len(), 60 * 7);
    assert!(
        pairs.values().all(|&n| n == 1),
        "a vehicle was scored twice"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM score_dirty").await, 0);
}

#[tokio::test]
async fn the_service_swaps_in_a_new_artifact_and_rescores_the_fleet_with_it() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let ids = active_fleet(&pool, 4).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&db.url, "mqtt://127.0.0.1:1", "unused");
    config.ingest.enabled = false;
    config.model.artifact = dir.path().join("current.json");
    config.model.reload_check_ms = 100;
    config.model.poll_ms = 100;
    config.model.debounce_ms = 0;
    let service = aftercare::service::start(config).await.unwrap();
    assert_eq!(service.model.version(), None);

    let expected = ids.len() * 7;
    let current = |version: &'static str, p30: f32| {
        let pool = pool.clone();
        async move {
            let rows: Vec<(String, f32)> =
                sqlx::query_as("SELECT model_version, p30 FROM risk_current")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            rows.len() == expected && rows.iter().all(|(v, p)| v == version && *p == p30)
        }
    };
    constant_artifact("model-a", 0.2).save(dir.path()).unwrap();
    wait_until(Duration::from_secs(30), "model a scores", || {
        current("model-a", 0.2)
    })
    .await;
    assert_eq!(service.model.version().as_deref(), Some("model-a"));

    // A new artifact renamed over the old one: picked up, and the whole fleet re-scored.
    constant_artifact("model-b", 0.6).save(dir.path()).unwrap();
    wait_until(Duration::from_secs(30), "model b scores", || {
        current("model-b", 0.6)
    })
    .await;
    assert_eq!(service.model.version().as_deref(), Some("model-b"));
    // History keeps both.
    assert_eq!(
        count(
            &pool,
            "SELECT count(DISTINCT model_version) FROM risk_scores"
        )
        .await,
        2
    );
    service.shutdown().await.unwrap();
}

struct Api {
    app: axum::Router,
    key: String,
    pool: PgPool,
    _db: TestDb,
}

async fn get(api: &Api, path: &str) -> (StatusCode, Value) {
    let req = Request::get(path)
        .header("authorization", format!("Bearer {}", api.key))
        .body(Body::empty())
        .unwrap();
    let resp = api.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// 25 vehicles with brake and oil scores; p30 repeats every five vehicles, so pages cut
/// through ties.
async fn api_with_scores() -> Api {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(vehicle(&pool, &vin(i), "ice", 2020).await);
    }
    let mut scores = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        let brakes = (i % 5) as f32 / 10.0;
        for (component, p30) in [("brakes", brakes), ("oil", 0.25)] {
            scores.push(NewScore {
                vehicle_id: id,
                component,
                p: [p30 / 2.0, p30, p30.max(0.5)],
                urgency_days: (p30 > 0.3).then_some(20.0),
                factors: serde_json::json!([{"feature": "f", "value": 1.0, "contribution": 0.5, "text": "why"}]),
            });
        }
    }
    risk::write_scores(
        &pool,
        &ids,
        "v1",
        Utc::now() - ChronoDuration::minutes(1),
        &scores,
    )
    .await
    .unwrap();
    let key = keys::create(&pool, "t", &[Scope::FleetRead]).await.unwrap();
    let app = router(AppState {
        store: Arc::new(Store::open(pool.clone()).await.unwrap()),
        metrics: Arc::new(Metrics::new()),
        ingest_enabled: false,
    });
    Api {
        app,
        key,
        pool,
        _db: db,
    }
}

async fn all_pages(api: &Api, query: &str, limit: usize) -> Vec<Value> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/fleet/risk?limit={limit}{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (s, body) = get(api, &path).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let page = body["vehicles"].as_array().unwrap();
        assert!(page.len() <= limit);
        seen.extend(page.iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return seen,
        }
    }
}

fn p30s(rows: &[Value]) -> Vec<f64> {
    rows.iter().map(|r| r["p30"].as_f64().unwrap()).collect()
}

#[tokio::test]
async fn fleet_ranking_pages_every_vehicle_once_in_risk_order() {
    let api = api_with_scores().await;
    let brakes = all_pages(&api, "&component=brakes", 4).await;
    let vins: HashSet<&str> = brakes.iter().map(|r| r["vin"].as_str().unwrap()).collect();
    assert_eq!(
        (brakes.len(), vins.len()),
        (25, 25),
        "each vehicle exactly once"
    );
    let p = p30s(&brakes);
    assert!(p.windows(2).all(|w| w[0] >= w[1]), "ranked: {p:?}");
    assert!(brakes.iter().all(|r| r["component"] == "brakes"));

    // Without a component: each vehicle once, with its riskiest component.
    let any = all_pages(&api, "", 7).await;
    assert_eq!(any.len(), 25);
    let oil = any.iter().filter(|r| r["component"] == "oil").count();
    assert_eq!(
        oil, 15,
        "vehicles whose brake risk (0, 0.1 or 0.2) is below their oil risk (0.25)"
    );

    // A floor on the risk.
    let high = all_pages(&api, "&component=brakes&min=0.3", 2).await;
    assert_eq!(high.len(), 10);
    assert!(p30s(&high).iter().all(|&p| p >= 0.3 - 1e-6));
}

#[tokio::test]
async fn vehicle_risk_and_profile_show_current_risk_with_reasons() {
    let api = api_with_scores().await;
    let (s, body) = get(&api, &format!("/v1/vehicles/{}/risk", vin(4))).await;
    assert_eq!(s, StatusCode::OK);
    let comps = body["components"].as_array().unwrap();
    let names: Vec<&str> = comps
        .iter()
        .map(|c| c["component"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["brakes", "oil"], "highest 30-day risk first");
    assert_eq!(comps[0]["p30"].as_f64().unwrap() as f32, 0.4);
    assert_eq!(comps[0]["urgency_days"], 20.0);
    assert_eq!(comps[0]["model_version"], "v1");
    assert_eq!(comps[0]["factors"][0]["text"], "why");
    assert_eq!(comps[1]["urgency_days"], Value::Null);
    // A vehicle without scores: an empty list, not an error.
    let fresh = vehicle(&api.pool, &vin(99), "bev", 2024).await;
    assert!(fresh > 0);
    let (s, body) = get(&api, &format!("/v1/vehicles/{}/risk", vin(99))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["components"], serde_json::json!([]));
    // The vehicle profile carries the same current risk.
    let (s, body) = get(&api, &format!("/v1/vehicles/{}", vin(4))).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["risk"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_risk_requests_get_a_4xx_with_a_message() {
    let api = api_with_scores().await;
    for (path, status, code) in [
        (
            "/v1/fleet/risk?component=gearbox",
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            "/v1/fleet/risk?min=1.5",
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            "/v1/fleet/risk?min=high",
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            "/v1/fleet/risk?limit=0",
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            "/v1/fleet/risk?limit=1001",
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            "/v1/fleet/risk?cursor=garbage",
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        (
            "/v1/vehicles/NOTAVIN/risk",
            StatusCode::BAD_REQUEST,
            "invalid_vin",
        ),
        (
            "/v1/vehicles/1HGCM82633A004352/risk",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ] {
        let (s, body) = get(&api, path).await;
        assert_eq!(s, status, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    // Without a key.
    let resp = api
        .app
        .clone()
        .oneshot(Request::get("/v1/fleet/risk").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}
