//! The HTTP API against a real database: auth on every /v1 route, reads of what ingest stored,
//! cursor paging, bucketed aggregates from the rollup, and 4xx with a message for bad input.

mod common;

use aftercare::api::{router, AppState};
use aftercare::config::WriteMethod;
use aftercare::metrics::Metrics;
use aftercare::store::keys::{self, Scope};
use aftercare::store::Store;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Duration, DurationRound, TimeDelta, Utc};
use common::*;
use http_body_util::BodyExt;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use tower::ServiceExt;

const VIN: &str = "VF1RFB00X56789012";

struct Api {
    app: axum::Router,
    key: String,
    _db: TestDb,
    t0: DateTime<Utc>,
}

async fn api_with_data() -> Api {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store = Arc::new(Store::open(pool.clone()).await.unwrap());
    // Two hours of samples a minute apart, two signals each, starting at a day boundary.
    let t0 = (Utc::now() - Duration::days(2))
        .duration_trunc(TimeDelta::days(1))
        .unwrap();
    let now = Utc::now();
    let mut items = Vec::new();
    for i in 0..120i64 {
        let payload = serde_json::json!({
            "ts": (t0 + Duration::minutes(i)).to_rfc3339(), "seq": i,
            "signals": {"Vehicle.Speed": i as f64, "Vehicle.LowVoltageBattery.CurrentVoltage": 12.0 + i as f64 / 100.0}
        });
        items.push(batch_item(
            &format!("v1/vehicles/{VIN}/telemetry"),
            &payload,
            now,
        ));
    }
    for (seq, status, minutes) in [
        (1000, "pending", 10),
        (1001, "confirmed", 20),
        (1002, "cleared", 90),
    ] {
        let payload = serde_json::json!({
            "ts": (t0 + Duration::minutes(minutes)).to_rfc3339(), "seq": seq, "source": "obd",
            "dtcs": [{"code": "P0302", "status": status}, {"spn": 110, "fmi": 0, "oc": 2, "status": "active"}]
        });
        items.push(batch_item(&format!("v1/vehicles/{VIN}/dtc"), &payload, now));
    }
    let r = store.write_batch(&items, WriteMethod::Copy).await.unwrap();
    assert_eq!(r.values_stored, 240);
    store.fold_rollup_all().await.unwrap();
    let key = keys::create(&pool, "test", &[Scope::FleetRead])
        .await
        .unwrap();
    let app = router(AppState {
        store,
        metrics: Arc::new(Metrics::new()),
        ingest_enabled: false,
    });
    Api {
        app,
        key,
        _db: db,
        t0,
    }
}

async fn get(api: &Api, path: &str, key: Option<&str>) -> (StatusCode, Value) {
    call(api, "GET", path, key, None).await
}

/// Sends a request with an optional bearer key and JSON body; returns status and JSON body.
async fn call(
    api: &Api,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let body = match (body, method) {
        (Some(b), _) => Body::from(b.to_string()),
        (None, "GET") => Body::empty(),
        (None, _) => Body::from("{}"),
    };
    if method != "GET" {
        req = req.header("content-type", "application/json");
    }
    let resp = api
        .app
        .clone()
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Every /v1 operation in the OpenAPI document refuses a missing, wrong, revoked or under-scoped key,
/// and lets the scope it documents (and admin) through: the scope comes from the document
/// (`x-required-scope`, the same as the security requirement's), so the document and the
/// route layer must agree.
#[tokio::test]
async fn every_v1_route_refuses_missing_wrong_and_underscoped_keys() {
    let api = api_with_data().await;
    let pool = api._db.pool().await;
    let mut keys_by_scope = std::collections::HashMap::new();
    for scope in Scope::ALL {
        let key = keys::create(&pool, scope.as_str(), &[scope]).await.unwrap();
        keys_by_scope.insert(scope.as_str().to_owned(), key);
    }
    let admin = keys_by_scope["admin"].clone();
    // An admin key that was revoked opens nothing.
    let revoked = keys::create(&pool, "revoked", &[Scope::Admin])
        .await
        .unwrap();
    sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE name = 'revoked'")
        .execute(&pool)
        .await
        .unwrap();
    let (status, doc) = get(&api, "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, ops) in paths.iter().filter(|(p, _)| p.starts_with("/v1/")) {
        for (method, op) in ops.as_object().unwrap() {
            let method = method.to_uppercase();
            let scope = op["x-required-scope"].as_str().unwrap();
            assert_eq!(
                op["security"],
                serde_json::json!([{"apiKey": [scope]}]),
                "{method} {path}: the security requirement names the scope"
            );
            for status in ["401", "403"] {
                assert_eq!(
                    op["responses"][status]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Error",
                    "{method} {path} documents {status}"
                );
            }
            let mut concrete = path.replace("{vin}", VIN);
            while let (Some(a), Some(z)) = (concrete.find('{'), concrete.find('}')) {
                concrete.replace_range(a..=z, "1");
            }
            let what = format!("{method} {path}");
            let (s, body) = call(&api, &method, &concrete, None, None).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{what} without a key");
            assert_eq!(body["error"]["code"], "unauthorized");
            let (s, _) = call(&api, &method, &concrete, Some("ack_not-a-real-key"), None).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{what} with a wrong key");
            let (s, _) = call(&api, &method, &concrete, Some(&revoked), None).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{what} with a revoked key");
            for (other, key) in keys_by_scope
                .iter()
                .filter(|(o, _)| *o != scope && *o != "admin")
            {
                let (s, body) = call(&api, &method, &concrete, Some(key), None).await;
                assert_eq!(s, StatusCode::FORBIDDEN, "{what} with a {other} key");
                assert!(body["error"]["message"].as_str().unwrap().contains(scope));
            }
            // Past auth: a fleet read answers (the vehicle exists); anything else gets past the
            // key (ids that do not exist and bodies are other tests' business).
            for key in [&keys_by_scope[scope], &admin] {
                let (s, _) = call(&api, &method, &concrete, Some(key), None).await;
                if method == "GET" && scope == "fleet-read" {
                    assert_eq!(s, StatusCode::OK, "{what} with a {scope} or admin key");
                } else {
                    assert!(
                        s != StatusCode::UNAUTHORIZED && s != StatusCode::FORBIDDEN,
                        "{what} with a {scope} or admin key: {s}"
                    );
                }
            }
            operations += 1;
        }
    }
    assert!(operations >= 28, "every operation walked ({operations})");
    let scoped = doc["components"]["securitySchemes"]["apiKey"].clone();
    assert_eq!(scoped["type"], "http");
    assert_eq!(scoped["scheme"], "bearer");
    // A revoked key is refused.
    sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE name = 'admin'")
        .execute(&pool)
        .await
        .unwrap();
    let (s, _) = get(&api, &format!("/v1/vehicles/{VIN}"), Some(&admin)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Keys are stored hashed, never in the clear.
    let stored: i64 = count(&pool, &format!("SELECT count(*) FROM api_keys WHERE position('{}' in encode(secret_hash, 'escape')) > 0", &admin[4..20])).await;
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn telemetry_pages_with_a_cursor_and_aggregates_per_bucket() {
    let api = api_with_data().await;
    let from = api.t0.to_rfc3339().replace('+', "%2B");
    let to = (api.t0 + Duration::days(1))
        .to_rfc3339()
        .replace('+', "%2B");
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let mut path = format!("/v1/vehicles/{VIN}/telemetry?from={from}&to={to}&limit=50");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (s, body) = get(&api, &path, Some(&api.key)).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let points = body["points"].as_array().unwrap();
        assert!(points.len() <= 50);
        seen.extend(points.iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 240, "every value exactly once across pages");
    // One signal only.
    let (_, body) = get(
        &api,
        &format!("/v1/vehicles/{VIN}/telemetry?from={from}&to={to}&signal=Vehicle.Speed"),
        Some(&api.key),
    )
    .await;
    let speeds: Vec<f64> = body["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_f64().unwrap())
        .collect();
    assert_eq!(speeds, (0..120).map(|i| i as f64).collect::<Vec<_>>());
    // A signal never stored has no points (not every signal).
    let (status, body) = get(
        &api,
        &format!("/v1/vehicles/{VIN}/telemetry?from={from}&to={to}&signal=Vehicle.Nothing"),
        Some(&api.key),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["points"], serde_json::json!([]));
    assert_eq!(body["next_cursor"], serde_json::Value::Null);
    // Hourly buckets from raw values.
    let (_, body) = get(
        &api,
        &format!("/v1/vehicles/{VIN}/telemetry?from={from}&to={to}&signal=Vehicle.Speed&bucket=1h"),
        Some(&api.key),
    )
    .await;
    let b = body["buckets"].as_array().unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b[0]["n"], 60);
    assert_eq!(b[0]["min"], 0.0);
    assert_eq!(b[0]["max"], 59.0);
    assert_eq!(b[1]["avg"], 89.5);
    // Daily buckets come from the rollup and agree with the raw values.
    let (_, body) = get(
        &api,
        &format!("/v1/vehicles/{VIN}/telemetry?from={from}&to={to}&signal=Vehicle.Speed&bucket=1d"),
        Some(&api.key),
    )
    .await;
    let b = body["buckets"].as_array().unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0]["n"], 120);
    assert_eq!(b[0]["avg"], 59.5);
    // Without a signal, the rollup's days of every signal the car sent, by day then name.
    let (_, body) = get(
        &api,
        &format!("/v1/vehicles/{VIN}/telemetry?from={from}&to={to}&bucket=1d"),
        Some(&api.key),
    )
    .await;
    let names: Vec<&str> = body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["signal"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{body}");
    assert!(names.contains(&"Vehicle.Speed") && names.windows(2).all(|w| w[0] <= w[1]));
    // A signal never stored has no buckets, raw or from the rollup; a bad bucket is still
    // refused before the signal is looked up.
    for bucket in ["1h", "1d"] {
        let (status, body) = get(
            &api,
            &format!(
                "/v1/vehicles/{VIN}/telemetry?from={from}&to={to}&signal=Vehicle.Nothing&bucket={bucket}"
            ),
            Some(&api.key),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["buckets"], serde_json::json!([]));
        assert_eq!(body["bucket"], bucket);
    }
    let (status, body) = get(
        &api,
        &format!(
            "/v1/vehicles/{VIN}/telemetry?from={from}&to={to}&signal=Vehicle.Nothing&bucket=7x"
        ),
        Some(&api.key),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn profile_and_dtc_lifecycle() {
    let api = api_with_data().await;
    let (s, body) = get(&api, &format!("/v1/vehicles/{VIN}"), Some(&api.key)).await;
    assert_eq!(s, StatusCode::OK);
    let signals = body["signals"].as_array().unwrap();
    assert_eq!(signals.len(), 2);
    let speed = signals
        .iter()
        .find(|s| s["signal"] == "Vehicle.Speed")
        .unwrap();
    assert_eq!(speed["value"], 119.0);
    let active: Vec<&str> = body["active_dtcs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    assert_eq!(active, vec!["SPN110-FMI0"], "P0302 was cleared");

    let (s, body) = get(&api, &format!("/v1/vehicles/{VIN}/dtcs"), Some(&api.key)).await;
    assert_eq!(s, StatusCode::OK);
    let dtcs = body["dtcs"].as_array().unwrap();
    let p0302 = dtcs.iter().find(|d| d["code"] == "P0302").unwrap();
    assert_eq!(p0302["active"], false);
    assert_eq!(p0302["status"], "cleared");
    assert_eq!(p0302["reports"], 3);
    let ts = |m: i64| {
        (api.t0 + Duration::minutes(m)).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    };
    assert_eq!(p0302["first_seen"], ts(10));
    assert_eq!(p0302["last_seen"], ts(20));
    assert_eq!(p0302["cleared_at"], ts(90));
    let statuses: Vec<&str> = p0302["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["cleared", "confirmed", "pending"]);
    let spn = dtcs.iter().find(|d| d["code"] == "SPN110-FMI0").unwrap();
    assert_eq!(spn["spn"], 110);
    assert_eq!(spn["events"][0]["occurrence_count"], 2);
}

#[tokio::test]
async fn bad_requests_get_a_4xx_with_a_message() {
    let api = api_with_data().await;
    let k = Some(api.key.as_str());
    for (path, status, code) in [
        (
            "/v1/vehicles/NOTAVIN/telemetry".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_vin",
        ),
        (
            "/v1/vehicles/1HGCM82633A00435I".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_vin",
        ),
        (
            "/v1/vehicles/1HGCM82633A004352".to_owned(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            format!("/v1/vehicles/{VIN}/telemetry?from=yesterday"),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            format!("/v1/vehicles/{VIN}/telemetry?bucket=7w"),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            format!("/v1/vehicles/{VIN}/telemetry?limit=0"),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            format!("/v1/vehicles/{VIN}/telemetry?limit=1000001"),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            format!("/v1/vehicles/{VIN}/telemetry?cursor=garbage"),
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        (
            format!(
                "/v1/vehicles/{VIN}/telemetry?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"
            ),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            "/v1/nothing-here".to_owned(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ] {
        let (s, body) = get(&api, &path, k).await;
        assert_eq!(s, status, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}");
        assert!(
            !body["error"]["message"].as_str().unwrap().is_empty(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn health_readiness_and_metrics_are_open() {
    let api = api_with_data().await;
    let (s, _) = get(&api, "/healthz", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = get(&api, "/readyz", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["database"], true);
    let resp = api
        .app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains("# TYPE aftercare_ingest_values counter"));
}

/// `aftercare keys create` prints the key alone on stdout, and the key works.
#[tokio::test]
async fn keys_create_prints_a_working_key() {
    let db = TestDb::new().await;
    let out = cli()
        .args([
            "keys",
            "create",
            "--name",
            "ops",
            "--scope",
            "fleet-read",
            "--scope",
            "planner",
        ])
        .env("AFTERCARE_DATABASE_URL", &db.url)
        .env("AFTERCARE_LOG_FILTER", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "only the key on stdout: {stdout:?}");
    let pool = db.pool().await;
    let key = keys::verify(&pool, lines[0])
        .await
        .unwrap()
        .expect("the printed key verifies");
    assert!(
        key.allows(Scope::FleetRead) && key.allows(Scope::Planner) && !key.allows(Scope::Advisor)
    );
    let bad = cli()
        .args(["keys", "create", "--name", "x", "--scope", "root"])
        .env("AFTERCARE_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown scope"));
}

/// The paths the router holds. axum offers no way to list them but its `Debug` output, which
/// shows the path router's `RouteId(n): "/path"` table; the fallback router's part is left out.
fn router_paths(app: &axum::Router) -> BTreeSet<String> {
    let debug = format!("{app:?}");
    let routes = debug.split("fallback_router").next().unwrap_or("");
    let mut paths = BTreeSet::new();
    for part in routes.split("RouteId(").skip(1) {
        if let Some((_, rest)) = part.split_once("): \"") {
            if let Some((path, _)) = rest.split_once('"') {
                paths.insert(path.to_owned());
            }
        }
    }
    paths
}

/// Every route the router serves is in the OpenAPI document with the same methods, and every
/// documented operation is served: a route registered without its `#[utoipa::path]` (or a
/// documented one that is not routed) fails here. The methods of a path come from the
/// router itself: the `Allow` header of its 405 answer to OPTIONS, which no route takes.
#[tokio::test]
async fn router_and_openapi_document_list_the_same_operations() {
    let api = api_with_data().await;
    let (status, doc) = get(&api, "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((path.clone(), method.to_uppercase()));
        }
    }
    let paths = router_paths(&api.app);
    assert!(paths.len() >= 30, "the router's paths were read: {paths:?}");
    let undocumented: BTreeSet<String> = aftercare::api::UNDOCUMENTED_PATHS
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert!(
        undocumented.is_subset(&paths),
        "the console routes are there"
    );
    let mut routed = BTreeSet::new();
    for path in paths.difference(&undocumented) {
        let mut concrete = path.replace("{vin}", VIN);
        while let (Some(a), Some(z)) = (concrete.find('{'), concrete.find('}')) {
            concrete.replace_range(a..=z, "1");
        }
        let req = Request::builder()
            .method("OPTIONS")
            .uri(&concrete)
            .body(Body::empty())
            .unwrap();
        let resp = api.app.clone().oneshot(req).await.unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "OPTIONS {path}"
        );
        let allow = resp.headers()["allow"].to_str().unwrap().to_owned();
        for method in allow.split(',').map(str::trim).filter(|m| *m != "HEAD") {
            routed.insert((path.clone(), method.to_owned()));
        }
    }
    let missing: Vec<_> = routed.difference(&documented).collect();
    assert!(missing.is_empty(), "routed but not documented: {missing:?}");
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:?}"
    );
    assert!(routed.len() >= 32, "{routed:?}");
}

/// The generated document keeps what clients rely on: unique operationIds and a tag on every
/// operation, the shared error schema, 4xx answers where they apply, and request bodies.
#[tokio::test]
async fn openapi_document_describes_operations_and_errors() {
    let api = api_with_data().await;
    let (_, doc) = get(&api, "/openapi.json", None).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(error["required"], serde_json::json!(["error"]));
    let mut ids = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_owned()), "operationId {id} is unique");
            assert!(op["tags"][0].is_string(), "{method} {path} has a tag");
            assert!(op["summary"].is_string(), "{method} {path} has a summary");
            if path.contains('{') {
                assert!(op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["in"] == "path"));
            }
            if path.contains("{vin}") {
                let vin = op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["name"] == "vin")
                    .unwrap_or_else(|| panic!("{method} {path} documents vin"));
                assert_eq!(vin["in"], "path");
                assert_eq!(vin["required"], true);
                assert_eq!(vin["schema"]["pattern"], "^[A-HJ-NPR-Z0-9]{17}$");
                assert!(vin["description"].as_str().unwrap().contains("ISO 3779"));
            }
            if method == "put" || path.ends_with("/accept") || path.ends_with("/reschedule") {
                assert!(op["requestBody"].is_object(), "{method} {path} has a body");
            }
        }
    }
    let op = |m: &str, p: &str| doc["paths"][p][m].clone();
    assert!(op("post", "/v1/offers/{id}/accept")["responses"]["409"].is_object());
    assert!(op("post", "/v1/service-records")["responses"]["422"].is_object());
    assert!(op("put", "/v1/vehicles/{vin}")["responses"]["201"].is_object());
    assert!(op("get", "/v1/vehicles/{vin}")["responses"]["404"].is_object());
    assert_eq!(op("get", "/healthz")["security"], Value::Null);
}
