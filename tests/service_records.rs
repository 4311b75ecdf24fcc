//! `POST /v1/service-records` and `PUT /v1/vehicles/{vin}` against a real database: records
//! are stored once however often they are posted (also by racing clients), every bad field is
//! a 4xx that names it and stores nothing, and profiles create vehicles and show up in
//! `GET /v1/vehicles/{vin}`. (Auth on both routes is walked by the API test.)

mod common;

use aftercare::api::{router, AppState};
use aftercare::metrics::Metrics;
use aftercare::store::keys::{self, Scope};
use aftercare::store::Store;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

const VIN: &str = "WVWZZZ1KZ8W000001";

struct Api {
    app: axum::Router,
    advisor: String,
    admin: String,
    db: TestDb,
}

async fn api() -> Api {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    load_demo_workshops(&pool).await;
    let store = Arc::new(Store::open(pool.clone()).await.unwrap());
    let app = router(AppState {
        store,
        metrics: Arc::new(Metrics::new()),
        ingest_enabled: false,
    });
    Api {
        app,
        advisor: keys::create(&pool, "advisor", &[Scope::Advisor])
            .await
            .unwrap(),
        admin: keys::create(&pool, "admin", &[Scope::Admin]).await.unwrap(),
        db,
    }
}

async fn call(api: &Api, method: &str, path: &str, key: &str, body: &str) -> (StatusCode, Value) {
    send(api.app.clone(), method, path, key, body).await
}

async fn send(
    app: axum::Router,
    method: &str,
    path: &str,
    key: &str,
    body: &str,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn record(external_id: &str) -> Value {
    json!({
        "vin": VIN, "source": "dms-north", "external_id": external_id,
        "performed_at": "2026-03-02T09:30:00Z", "odometer_km": 48213.4, "workshop": "WS-02",
        "component": "brakes", "kind": "preventive", "job": "brake_pads_front",
        "notes": "pads 74% worn"
    })
}

async fn rows(api: &Api) -> i64 {
    count(&api.db.pool().await, "SELECT count(*) FROM service_records").await
}

#[tokio::test]
async fn a_record_is_stored_once_however_often_it_is_posted() {
    let api = api().await;
    let (s, first) = call(
        &api,
        "POST",
        "/v1/service-records",
        &api.advisor,
        &record("J-1").to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!(first["created"], true);
    let (s, again) = call(
        &api,
        "POST",
        "/v1/service-records",
        &api.advisor,
        &record("J-1").to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again, json!({"id": first["id"], "created": false}));
    assert_eq!(rows(&api).await, 1);

    // An array: one known, two new, one repeated inside the array.
    let batch = json!([record("J-1"), record("J-2"), record("J-3"), record("J-2")]);
    let (s, body) = call(
        &api,
        "POST",
        "/v1/service-records",
        &api.advisor,
        &batch.to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["created"], 2);
    assert_eq!(body["existing"], 2);
    let recs = body["records"].as_array().unwrap();
    assert_eq!(recs[0]["id"], first["id"]);
    assert_eq!(recs[0]["created"], false);
    assert_eq!(
        (recs[1]["created"].clone(), recs[3]["created"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(recs[1]["id"], recs[3]["id"]);
    assert_eq!(rows(&api).await, 3);

    // Stored as sent; the vehicle was created on first sight.
    let pool = api.db.pool().await;
    let (vin, odometer, workshop, component, kind, job, notes): (String, f64, String, String, String, String, String) =
        sqlx::query_as(
            "SELECT v.vin, s.odometer_km, s.workshop, s.component, s.kind, s.job, s.notes
             FROM service_records s JOIN vehicles v ON v.id = s.vehicle_id WHERE external_id = 'J-1'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        (
            vin.as_str(),
            odometer,
            workshop.as_str(),
            component.as_str(),
            kind.as_str(),
            job.as_str(),
            notes.as_str()
        ),
        (
            VIN,
            48213.4,
            "WS-02",
            "brakes",
            "preventive",
            "brake_pads_front",
            "pads 74% worn"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_posts_of_one_record_store_one_row() {
    let api = api().await;
    let body = record("RACE-1").to_string();
    let mut posts = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (app, key, body) = (api.app.clone(), api.advisor.clone(), body.clone());
        posts.spawn(async move { send(app, "POST", "/v1/service-records", &key, &body).await });
    }
    let answers: Vec<(StatusCode, Value)> = posts.join_all().await;
    let created = answers.iter().filter(|(_, b)| b["created"] == true).count();
    assert_eq!(created, 1, "{answers:?}");
    assert!(answers
        .iter()
        .all(|(s, b)| s.is_success() && b["id"] == answers[0].1["id"]));
    assert_eq!(rows(&api).await, 1);
}

#[tokio::test]
async fn bad_records_are_refused_with_a_message_that_names_the_field() {
    let api = api().await;
    let with = |key: &str, value: Value| {
        let mut r = record("BAD");
        r[key] = value;
        r.to_string()
    };
    let without = |key: &str| {
        let mut r = record("BAD");
        r.as_object_mut().unwrap().remove(key);
        r.to_string()
    };
    let cases: Vec<(String, StatusCode, &str)> = vec![
        (
            "{not json".into(),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        ("42".into(), StatusCode::UNPROCESSABLE_ENTITY, "JSON object"),
        ("[]".into(), StatusCode::UNPROCESSABLE_ENTITY, "1 to 1000"),
        (
            without("external_id"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "external_id is required",
        ),
        (
            without("odometer_km"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "odometer_km is required",
        ),
        (
            with("vin", json!("WVWZZZ1KZ8W00000I")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "vin",
        ),
        (
            with("component", json!("gearbox")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown component",
        ),
        (
            with("kind", json!("warranty")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "kind: unknown kind",
        ),
        (
            with("performed_at", json!("2026-13-01")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "performed_at",
        ),
        (
            with("performed_at", json!("2999-01-01T00:00:00Z")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "tomorrow",
        ),
        (
            with("odometer_km", json!(-5)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "odometer_km must be between",
        ),
        (
            with("odometer_km", json!("48213")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "odometer_km must be a number",
        ),
        (
            with("job", json!("")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "job must not be empty",
        ),
        (
            with("mileage", json!(1)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field \"mileage\"",
        ),
        // One bad record refuses the whole array, and says which.
        (
            json!([record("OK-1"), {"vin": VIN}]).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "[1].source is required",
        ),
    ];
    for (body, status, says) in cases {
        let (s, answer) = call(&api, "POST", "/v1/service-records", &api.advisor, &body).await;
        assert_eq!(s, status, "{body} -> {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(says),
            "{body}: {message:?} should say {says:?}"
        );
        assert!(answer["error"]["code"].is_string());
    }
    assert_eq!(rows(&api).await, 0, "nothing stored from a refused request");
}

#[tokio::test]
async fn a_profile_creates_the_vehicle_replaces_and_shows_in_the_vehicle_view() {
    let api = api().await;
    let path = format!("/v1/vehicles/{VIN}");
    let profile = json!({
        "make": "Volkswagen", "model": "Golf", "model_year": 2021, "powertrain": "phev",
        "home_workshop": "WS-03", "owner_ref": "OWN-0000042", "offers_consent": false
    });
    let (s, body) = call(&api, "PUT", &path, &api.admin, &profile.to_string()).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, view) = call(&api, "GET", &path, &api.admin, "").await;
    assert_eq!(s, StatusCode::OK);
    for key in [
        "make",
        "model",
        "model_year",
        "powertrain",
        "home_workshop",
        "owner_ref",
        "offers_consent",
    ] {
        assert_eq!(view["profile"][key], profile[key], "{key}");
    }
    // A PUT replaces the whole profile; consent defaults to true.
    let (s, _) = call(
        &api,
        "PUT",
        &path,
        &api.admin,
        &json!({"make": "Volkswagen", "powertrain": "ice"}).to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, view) = call(&api, "GET", &path, &api.admin, "").await;
    assert_eq!(view["profile"]["powertrain"], "ice");
    assert_eq!(view["profile"]["model"], Value::Null);
    assert_eq!(view["profile"]["offers_consent"], true);
    let pool = api.db.pool().await;
    assert_eq!(count(&pool, "SELECT count(*) FROM vehicles").await, 1);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM vehicle_profiles").await,
        1
    );

    for (body, status, says) in [
        (
            json!({"powertrain": "diesel"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown powertrain",
        ),
        (
            json!({"model_year": 1970}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "model_year must be between",
        ),
        (
            json!({"model_year": 2020.5}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "whole year",
        ),
        (
            json!({"offers_consent": "yes"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "true or false",
        ),
        (
            json!({"colour": "red"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field",
        ),
    ] {
        let (s, answer) = call(&api, "PUT", &path, &api.admin, &body.to_string()).await;
        assert_eq!(s, status, "{body}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(says),
            "{answer}"
        );
    }
    let (s, answer) = call(&api, "PUT", "/v1/vehicles/NOT-A-VIN", &api.admin, "{}").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["code"], "invalid_vin");
    // The refused PUTs changed nothing.
    let (_, view) = call(&api, "GET", &path, &api.admin, "").await;
    assert_eq!(view["profile"]["powertrain"], "ice");
}
