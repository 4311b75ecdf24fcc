//! The HTTP API under hostile input, against a real database: every operation in the OpenAPI
//! document walked with hostile path, query, header and body values and every method, each
//! answered with a 4xx in the one error shape and never a 5xx; the reproductions of issue 14
//! (NUL bytes, error shapes, body limits, the Bearer scheme's case, unknown workshops); and
//! the connection-level limits through a real listener.

mod booking_common;
mod common;

use aftercare::api::edge::Limits;
use aftercare::api::{router_with, AppState};
use aftercare::metrics::Metrics;
use aftercare::store::keys::{self, Scope};
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use common::*;
use http_body_util::BodyExt;
use serde_json::{json, Map, Value};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const VIN: &str = "WVWZZZ1KZ8W000001";

struct Api {
    app: axum::Router,
    admin: String,
    pool: PgPool,
    base: booking_common::Api,
}

/// The demo workshops and an admin key: every hostile request gets past auth.
async fn api() -> Api {
    let base = booking_common::api().await;
    let admin = keys::create(&base.pool, "admin", &[Scope::Admin])
        .await
        .unwrap();
    Api {
        app: base.app.clone(),
        admin,
        pool: base.pool.clone(),
        base,
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A 4xx whose body is `{"error": {"code", "message"}}` served as JSON.
    fn assert_refusal(&self, what: &str) {
        assert!(
            self.status.is_client_error(),
            "{what}: {} {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        self.assert_shape(what);
    }

    fn assert_shape(&self, what: &str) {
        let ct = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            ct.starts_with("application/json"),
            "{what}: content-type {ct:?}"
        );
        let v = self.json();
        let code = v["error"]["code"].as_str().unwrap_or("");
        let message = v["error"]["message"].as_str().unwrap_or("");
        assert!(
            !code.is_empty() && !message.is_empty(),
            "{what}: not the error shape: {}",
            String::from_utf8_lossy(&self.body)
        );
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

async fn send(
    app: &axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let req = req
        .body(body.map(Body::from).unwrap_or_else(Body::empty))
        .unwrap_or_else(|e| panic!("{method} {uri}: {e}"));
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

/// `method uri` with the admin key and a JSON body.
async fn send_json(api: &Api, method: &str, uri: &str, body: &Value) -> Answer {
    let headers = [auth(&api.admin), json_type()];
    send(
        &api.app,
        method,
        uri,
        &headers,
        Some(body.to_string().into_bytes()),
    )
    .await
}

fn auth(key: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {key}"))
}

fn json_type() -> (&'static str, String) {
    ("content-type", "application/json".to_owned())
}

/// Resolves a `$ref` into the document's components.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap_or_default();
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// The schema's type, ignoring `null` in a type list.
fn type_of(schema: &Value) -> &str {
    match &schema["type"] {
        Value::String(t) => t.as_str(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or(""),
        _ => "",
    }
}

/// A value of the schema's shape: every property filled, strings as "text".
fn example(doc: &Value, schema: &Value, depth: usize) -> Value {
    let s = resolve(doc, schema);
    if depth > 6 {
        return Value::Null;
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(first) = s[key].as_array().and_then(|a| {
            a.iter()
                .find(|x| type_of(resolve(doc, x)) != "null" && resolve(doc, x)["type"] != "null")
        }) {
            return example(doc, first, depth + 1);
        }
    }
    if let Some(all) = s["allOf"].as_array() {
        let mut out = Map::new();
        for part in all {
            if let Value::Object(m) = example(doc, part, depth + 1) {
                out.extend(m);
            }
        }
        return Value::Object(out);
    }
    if let Some(first) = s["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    match type_of(s) {
        "object" => Value::Object(
            s["properties"]
                .as_object()
                .map(|props| {
                    props
                        .iter()
                        .map(|(k, v)| (k.clone(), example(doc, v, depth + 1)))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        "array" => json!([example(doc, &s["items"], depth + 1)]),
        "integer" => json!(s["minimum"].as_i64().unwrap_or(1).max(1)),
        "number" => json!(s["minimum"].as_f64().unwrap_or(1.0).max(1.0)),
        "boolean" => json!(true),
        "string" => match s["format"].as_str() {
            Some("date-time") => json!("2026-06-01T08:00:00Z"),
            Some("date") => json!("2026-06-01"),
            _ => json!("text"),
        },
        _ => json!("text"),
    }
}

/// Every string leaf of a value, as a path of keys and indices.
fn string_leaves(v: &Value, at: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::String(_) => out.push(at.clone()),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                at.push(json!(i));
                string_leaves(item, at, out);
                at.pop();
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                at.push(json!(k));
                string_leaves(item, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn set(v: &mut Value, path: &[Value], to: Value) {
    let mut cur = v;
    for step in path {
        cur = match step {
            Value::String(k) => &mut cur[k.as_str()],
            Value::Number(i) => &mut cur[i.as_u64().unwrap_or(0) as usize],
            _ => return,
        };
    }
    *cur = to;
}

/// A value of another type than the schema's.
fn wrong_type(doc: &Value, schema: &Value) -> Value {
    match type_of(resolve(doc, schema)) {
        "string" => json!(12345),
        "integer" | "number" => json!("not a number"),
        "boolean" => json!("maybe"),
        "array" => json!({"not": "an array"}),
        _ => json!([1, 2, 3]),
    }
}

/// Hostile values for a path or query parameter of this schema, each expected to be refused.
fn hostile_values(doc: &Value, schema: &Value) -> Vec<String> {
    let s = resolve(doc, schema);
    let mut values = vec![
        "%00".to_owned(),
        "a%00b".to_owned(),
        "%ff".to_owned(),
        "%C3%28".to_owned(),
        "A".repeat(300),
    ];
    let typed: &[&str] = match type_of(s) {
        "integer" => &["abc", "1.5", "99999999999999999999999"],
        "number" => &["abc", "1e999"],
        "boolean" => &["maybe"],
        _ => &[],
    };
    values.extend(typed.iter().map(|v| v.to_string()));
    if let Some(max) = s["maximum"].as_f64() {
        values.push(format!("{}", max + 1.0));
    }
    if let Some(min) = s["minimum"].as_f64() {
        values.push(format!("{}", min - 1.0));
    }
    if s["enum"].is_array() {
        values.push("no_such_value".into());
    }
    if s["pattern"].is_string() {
        values.push("!not-matching!".into());
    }
    if matches!(s["format"].as_str(), Some("date-time") | Some("date")) {
        values.push("yesterday".into());
    }
    values
}

/// A concrete value for each path parameter (the hostile one replaces one at a time).
fn plain(name: &str) -> &'static str {
    match name {
        "vin" => VIN,
        "id" | "code" => "1",
        _ => "x1",
    }
}

fn fill(path: &str, params: &[(String, String)]) -> String {
    let mut out = path.to_owned();
    for (name, value) in params {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// What a hostile request is: a description, the target, headers and a body.
type Case = (String, String, Vec<(&'static str, String)>, Option<Vec<u8>>);

/// Walks every operation of the document with hostile values in every position and every
/// method, as a client with an admin key: each answer is a 4xx in the error shape.
#[tokio::test]
async fn every_operation_refuses_hostile_input_with_a_4xx_in_the_error_shape() {
    let api = api().await;
    let doc = send(&api.app, "GET", "/openapi.json", &[], None)
        .await
        .json();
    let key = auth(&api.admin);
    let mut operations = 0;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let paths = doc["paths"].as_object().unwrap();
    for (path, ops) in paths {
        let ops = ops.as_object().unwrap();
        for (method, op) in ops {
            let method = method.to_uppercase();
            operations += 1;
            let params: Vec<&Value> = op["parameters"]
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            let path_params: Vec<(String, String)> = params
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    let n = p["name"].as_str().unwrap().to_owned();
                    let v = plain(&n).to_owned();
                    (n, v)
                })
                .collect();
            let concrete = fill(path, &path_params);
            let mut cases: Vec<Case> = Vec::new();

            // Path parameters, one at a time.
            for p in params.iter().filter(|p| p["in"] == "path") {
                let name = p["name"].as_str().unwrap();
                for v in hostile_values(&doc, &p["schema"]) {
                    let mut with = path_params.clone();
                    for (n, value) in with.iter_mut() {
                        if n == name {
                            *value = v.clone();
                        }
                    }
                    cases.push((
                        format!("path {name}={v:.40}"),
                        fill(path, &with),
                        vec![key.clone()],
                        None,
                    ));
                }
            }
            // Query parameters, one at a time, and a NUL in a parameter nobody declared.
            for p in params.iter().filter(|p| p["in"] == "query") {
                let name = p["name"].as_str().unwrap();
                for v in hostile_values(&doc, &p["schema"]) {
                    cases.push((
                        format!("query {name}={v:.40}"),
                        format!("{concrete}?{name}={v}"),
                        vec![key.clone()],
                        None,
                    ));
                }
            }
            cases.push((
                "a 9 KiB target".into(),
                format!("{concrete}?pad={}", "a".repeat(9 * 1024)),
                vec![key.clone()],
                None,
            ));
            for q in ["zzz=%00", "%00=1", "zzz=%ff", "a=%e2%82"] {
                cases.push((
                    format!("query {q}"),
                    format!("{concrete}?{q}"),
                    vec![key.clone()],
                    None,
                ));
            }
            // Headers.
            let many: Vec<(&str, String)> = (0..150).map(|_| ("x-filler", "1".into())).collect();
            for (what, headers) in [
                (
                    "a huge header",
                    vec![key.clone(), ("x-big", "a".repeat(40_000))],
                ),
                ("150 headers", [vec![key.clone()], many].concat()),
            ] {
                cases.push((what.into(), concrete.clone(), headers, None));
            }
            if path.starts_with("/v1/") {
                for bad in [
                    "Bearer",
                    "Bearer ",
                    "Basic YWRtaW46YWRtaW4=",
                    "bearer ack_not-a-real-key",
                ] {
                    cases.push((
                        format!("authorization {bad:?}"),
                        concrete.clone(),
                        vec![("authorization", bad.to_owned())],
                        None,
                    ));
                }
                let long = format!("Bearer {}", "k".repeat(20_000));
                cases.push((
                    "an overlong key".into(),
                    concrete.clone(),
                    vec![("authorization", long)],
                    None,
                ));
                // Bodies the edge refuses whatever the operation: not JSON, NUL, too large.
                for (what, ct, body) in [
                    ("a text body", "text/plain", b"hello".to_vec()),
                    (
                        "a form body",
                        "application/x-www-form-urlencoded",
                        b"a=1".to_vec(),
                    ),
                    ("a raw NUL", "application/json", b"{\"a\":\"\0\"}".to_vec()),
                    (
                        "an escaped NUL",
                        "application/json",
                        br#"{"a":"\u0000"}"#.to_vec(),
                    ),
                    (
                        "NUL in a key",
                        "application/json",
                        br#"{"a\u0000":1}"#.to_vec(),
                    ),
                    (
                        "3 MB",
                        "application/json",
                        format!("\"{}\"", "x".repeat(3 * 1024 * 1024)).into_bytes(),
                    ),
                ] {
                    cases.push((
                        format!("body: {what}"),
                        concrete.clone(),
                        vec![key.clone(), ("content-type", ct.to_owned())],
                        Some(body),
                    ));
                }
            }
            // Bodies the operation's schema rules out.
            if let Some(schema) = op["requestBody"]["content"]["application/json"]["schema"]
                .as_object()
                .map(|_| &op["requestBody"]["content"]["application/json"]["schema"])
            {
                for bad in [
                    "{",
                    "[1,",
                    "nul",
                    "{\"a\":1}}",
                    "\u{feff}{}",
                    "[]",
                    "42",
                    "\"s\"",
                ] {
                    cases.push((
                        format!("body {bad:?}"),
                        concrete.clone(),
                        vec![key.clone(), json_type()],
                        Some(bad.as_bytes().to_vec()),
                    ));
                }
                let good = example(&doc, schema, 0);
                let s = resolve(&doc, schema);
                if let Some(props) = s["properties"].as_object() {
                    for (name, prop) in props {
                        let mut body = good.clone();
                        body[name.as_str()] = wrong_type(&doc, prop);
                        cases.push((
                            format!("body {name} of the wrong type"),
                            concrete.clone(),
                            vec![key.clone(), json_type()],
                            Some(body.to_string().into_bytes()),
                        ));
                        if let Some(max) = resolve(&doc, prop)["maxLength"].as_u64() {
                            let mut body = good.clone();
                            body[name.as_str()] = json!("x".repeat(max as usize + 1));
                            cases.push((
                                format!("body {name} overlong"),
                                concrete.clone(),
                                vec![key.clone(), json_type()],
                                Some(body.to_string().into_bytes()),
                            ));
                        }
                    }
                }
                let mut leaves = Vec::new();
                string_leaves(&good, &mut Vec::new(), &mut leaves);
                for leaf in leaves {
                    let mut body = good.clone();
                    set(&mut body, &leaf, json!("a\u{0}b"));
                    cases.push((
                        format!("body NUL at {leaf:?}"),
                        concrete.clone(),
                        vec![key.clone(), json_type()],
                        Some(body.to_string().into_bytes()),
                    ));
                }
            }
            for (what, uri, headers, body) in cases {
                let answer = send(&api.app, &method, &uri, &headers, body).await;
                answer.assert_refusal(&format!("{method} {path}: {what}"));
                *statuses.entry(answer.status.as_u16()).or_insert(0) += 1;
            }
        }
        // Every method the path does not take.
        let concrete = fill(
            path,
            &[
                ("vin".into(), VIN.into()),
                ("id".into(), "1".into()),
                ("code".into(), "1".into()),
                ("bay".into(), "b".into()),
                ("technician".into(), "t".into()),
                ("sku".into(), "s".into()),
            ],
        );
        for method in [
            "GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "TRACE", "PURGE",
        ] {
            if ops.contains_key(&method.to_lowercase()) {
                continue;
            }
            let answer = send(&api.app, method, &concrete, &[auth(&api.admin)], None).await;
            answer.assert_refusal(&format!("{method} {path}"));
            assert_eq!(
                answer.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(answer.code(), "method_not_allowed");
            assert!(answer.headers.contains_key("allow"), "{method} {path}");
            *statuses.entry(answer.status.as_u16()).or_insert(0) += 1;
        }
    }
    assert!(operations >= 32, "every operation walked ({operations})");
    let requests: usize = statuses.values().sum();
    assert!(requests >= 1200, "{requests} hostile requests");
    // The walk met every refusal the edge and the handlers make.
    for status in [400, 401, 404, 405, 413, 414, 415, 422, 431] {
        assert!(
            statuses.contains_key(&status),
            "no {status} in {statuses:?}"
        );
    }
    // Nothing the walk sent was stored.
    for table in [
        "vehicles",
        "service_records",
        "vehicle_profiles",
        "bookings",
        "offers",
    ] {
        let n = count(&api.pool, &format!("SELECT count(*) FROM {table}")).await;
        assert_eq!(n, 0, "{table}");
    }
    assert_eq!(count(&api.pool, "SELECT count(*) FROM workshops").await, 5);
}

/// The reproductions of issue 14, item 5: a NUL byte anywhere a client puts text gave a 500
/// ("invalid byte sequence for encoding UTF8: 0x00"); now a 400 that names where, before any
/// SQL, and nothing is stored.
#[tokio::test]
async fn nul_bytes_are_refused_at_the_edge_and_nothing_is_stored() {
    let api = api().await;
    let key = auth(&api.admin);
    for (uri, names) in [
        ("/v1/workshops/%00".to_owned(), "path segment"),
        ("/v1/offers?vin=%00".to_owned(), "query parameter vin"),
        (
            format!("/v1/vehicles/{VIN}/telemetry?signal=%00"),
            "query parameter signal",
        ),
        (
            "/v1/fleet/risk?workshop=%00".to_owned(),
            "query parameter workshop",
        ),
        (
            "/v1/bookings?workshop=WS%0001".to_owned(),
            "query parameter workshop",
        ),
    ] {
        let a = send(&api.app, "GET", &uri, std::slice::from_ref(&key), None).await;
        a.assert_refusal(&uri);
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(a.code(), "invalid_text", "{uri}");
        let message = a.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains(names) && message.contains("NUL"),
            "{uri}: {message}"
        );
    }
    let record = |external_id: &str, notes: &str| {
        json!({
            "vin": VIN, "source": "dms", "external_id": external_id,
            "performed_at": "2026-03-02T09:30:00Z", "odometer_km": 48213.4, "workshop": "WS-02",
            "component": "brakes", "kind": "repair", "job": "brake_pads_front", "notes": notes
        })
    };
    let profile = |make: &str| json!({"make": make, "home_workshop": "WS-01"});
    for (method, uri, body, field) in [
        (
            "POST",
            "/v1/service-records".to_owned(),
            record("J\u{0}1", "ok"),
            "external_id",
        ),
        (
            "POST",
            "/v1/service-records".to_owned(),
            record("J-1", "pads\u{0}"),
            "notes",
        ),
        (
            "POST",
            "/v1/service-records".to_owned(),
            json!([record("J-1", "ok"), record("J-2", "\u{0}")]),
            "[1].notes",
        ),
        (
            "PUT",
            format!("/v1/vehicles/{VIN}"),
            profile("V\u{0}W"),
            "make",
        ),
    ] {
        let a = send_json(&api, method, &uri, &body).await;
        a.assert_refusal(&uri);
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{method} {uri} {field}");
        assert_eq!(a.code(), "invalid_text");
        let message = a.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains(&format!("body field {field} ")),
            "{message}"
        );
    }
    // The same requests without the NUL are stored: the refusals were about the NUL alone.
    let a = send_json(&api, "PUT", &format!("/v1/vehicles/{VIN}"), &profile("VW")).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = send_json(&api, "POST", "/v1/service-records", &record("J-1", "ok")).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(
        count(&api.pool, "SELECT count(*) FROM service_records").await,
        1
    );
    let makes: Vec<String> = sqlx::query_scalar("SELECT make FROM vehicle_profiles")
        .fetch_all(&api.pool)
        .await
        .unwrap();
    assert_eq!(makes, vec!["VW".to_owned()]);
}

/// Issue 14, item 6: 405 answered an empty body, `%ff` in a path text/plain, and bodies over
/// 2 MB on the two routes that read raw bytes 413 text/plain. Every error is the JSON shape.
#[tokio::test]
async fn every_error_status_has_the_json_shape() {
    let api = api().await;
    let key = auth(&api.admin);
    let big = format!("[\"{}\"]", "x".repeat(2 * 1024 * 1024 + 1)).into_bytes();
    for (method, uri, headers, body, status, code) in [
        (
            "DELETE",
            "/v1/offers".to_owned(),
            vec![key.clone()],
            None,
            405,
            "method_not_allowed",
        ),
        (
            "GET",
            "/v1/workshops/%ff".to_owned(),
            vec![key.clone()],
            None,
            400,
            "invalid_path",
        ),
        (
            "GET",
            "/v1/vehicles/%ff%fe".to_owned(),
            vec![key.clone()],
            None,
            400,
            "invalid_path",
        ),
        ("GET", "/nowhere".to_owned(), vec![], None, 404, "not_found"),
        (
            "POST",
            "/v1/service-records".to_owned(),
            vec![key.clone(), json_type()],
            Some(big.clone()),
            413,
            "payload_too_large",
        ),
        (
            "PUT",
            format!("/v1/vehicles/{VIN}"),
            vec![key.clone(), json_type()],
            Some(big.clone()),
            413,
            "payload_too_large",
        ),
        (
            "PUT",
            format!("/v1/vehicles/{VIN}"),
            vec![key.clone(), ("content-length", "3000000".into())],
            None,
            413,
            "payload_too_large",
        ),
        (
            "POST",
            "/v1/service-records".to_owned(),
            vec![key.clone(), ("content-type", "text/csv".into())],
            Some(b"vin,source".to_vec()),
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/v1/offers/1/accept".to_owned(),
            vec![key.clone(), json_type()],
            Some(b"{\"start\": 1".to_vec()),
            400,
            "invalid_body",
        ),
    ] {
        let what = format!("{method} {uri}");
        let a = send(&api.app, method, &uri, &headers, body).await;
        a.assert_refusal(&what);
        assert_eq!(a.status.as_u16(), status, "{what}");
        assert_eq!(a.code(), code, "{what}");
    }
}

/// Issue 14, item 7: `bearer`, `BEARER` are the same scheme as `Bearer` (RFC 7235).
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let api = api().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let header = ("authorization", format!("{scheme} {}", api.admin));
        let a = send(&api.app, "GET", "/v1/workshops", &[header], None).await;
        assert_eq!(a.status, StatusCode::OK, "{scheme}");
        assert_eq!(a.json()["workshops"].as_array().map(Vec::len), Some(5));
    }
    let a = send(
        &api.app,
        "GET",
        "/v1/workshops",
        &[("authorization", format!("Basic {}", api.admin))],
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

/// Issue 14, item 7: a workshop that does not exist (`WS-99`) was accepted in service records
/// and profiles; now a 422 that names the field, and nothing stored.
#[tokio::test]
async fn an_unknown_workshop_is_refused_in_records_and_profiles() {
    let api = api().await;
    let record = |id: &str, workshop: &str| {
        json!({
            "vin": VIN, "source": "dms", "external_id": id, "performed_at": "2026-03-02T09:30:00Z",
            "odometer_km": 1000.0, "workshop": workshop, "component": "brakes", "kind": "repair",
            "job": "brake_pads_front"
        })
    };
    for (body, field) in [
        (record("J-1", "WS-99"), "workshop"),
        (
            json!([
                record("J-1", "WS-01"),
                record("J-2", "WS-01"),
                record("J-3", "WS-99")
            ]),
            "[2].workshop",
        ),
    ] {
        let a = send_json(&api, "POST", "/v1/service-records", &body).await;
        a.assert_refusal("records");
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(a.code(), "unknown_workshop");
        let message = a.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            message.starts_with(&format!("{field}: ")) && message.contains("WS-99"),
            "{message}"
        );
    }
    let profile = json!({"make": "VW", "home_workshop": "WS-99"});
    let a = send_json(&api, "PUT", &format!("/v1/vehicles/{VIN}"), &profile).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.code(), "unknown_workshop");
    for table in ["vehicles", "service_records", "vehicle_profiles"] {
        let n = count(&api.pool, &format!("SELECT count(*) FROM {table}")).await;
        assert_eq!(n, 0, "{table}");
    }
}

/// An HTTP/1.1 exchange on a fresh connection (`Connection: close`): the request bytes as
/// given, then everything until the server closes. Returns the parsed answer.
async fn exchange(port: u16, request: &[u8], pause_after: Option<usize>) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    match pause_after {
        // Sends the first bytes and stalls: the server must answer on its own.
        Some(n) => stream.write_all(&request[..n]).await.unwrap(),
        None => stream.write_all(request).await.unwrap(),
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            headers.append(
                axum::http::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                v.trim().parse().unwrap(),
            );
        }
    }
    Answer {
        status: StatusCode::from_u16(status).unwrap(),
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn request(method: &str, target: &str, headers: &[String], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Issue 14, item 6, at the connection: the running service answered 414 and 431 with an
/// empty body (hyper's own limits). Its limits are now above the API's, which answer JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_service_answers_connection_level_errors_in_the_json_shape() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let key = keys::create(&pool, "admin", &[Scope::Admin]).await.unwrap();
    let mut config = config(&db.url, "mqtt://127.0.0.1:1", "unused");
    config.ingest.enabled = false;
    config.model.enabled = false;
    config.offers.enabled = false;
    config.notify.enabled = false;
    let service = aftercare::service::start(config).await.unwrap();
    let port = service.http_addr.port();
    let bearer = format!("authorization: bearer {key}");
    let many: Vec<String> = (0..120).map(|i| format!("x-h{i}: 1")).collect();
    let big = format!("x-big: {}", "a".repeat(40 * 1024));
    for (what, req, status) in [
        (
            "a 20 KiB target",
            request(
                "GET",
                &format!("/healthz?p={}", "a".repeat(20 * 1024)),
                &[],
                b"",
            ),
            414,
        ),
        ("120 headers", request("GET", "/healthz", &many, b""), 431),
        (
            "40 KiB of headers",
            request("GET", "/healthz", &[big], b""),
            431,
        ),
        ("DELETE", request("DELETE", "/healthz", &[], b""), 405),
        (
            "%ff",
            request(
                "GET",
                "/v1/workshops/%ff",
                std::slice::from_ref(&bearer),
                b"",
            ),
            400,
        ),
        (
            "NUL",
            request(
                "GET",
                "/v1/offers?vin=%00",
                std::slice::from_ref(&bearer),
                b"",
            ),
            400,
        ),
        (
            "3 MB declared",
            request(
                "PUT",
                &format!("/v1/vehicles/{VIN}"),
                &[bearer.clone(), "content-length: 3000000".into()],
                b"",
            ),
            413,
        ),
    ] {
        let a = exchange(port, &req, None).await;
        a.assert_refusal(what);
        assert_eq!(a.status.as_u16(), status, "{what}");
    }
    // And a lower-case scheme over the wire opens the API.
    let a = exchange(port, &request("GET", "/v1/workshops", &[bearer], b""), None).await;
    assert_eq!(a.status, StatusCode::OK);
    service.shutdown().await.unwrap();
}

/// A body that stops arriving is a 408 in the shape once the body timeout passes (a short one
/// here), and a chunked body over the limit a 413: both through `serve` on a real listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_oversized_bodies_get_408_and_413_through_a_real_listener() {
    let api = api().await;
    let limits = Limits {
        body_timeout: Duration::from_millis(300),
        body_bytes: 64 * 1024,
        ..Limits::default()
    };
    let app = router_with(
        AppState {
            store: api.base.store.clone(),
            metrics: Arc::new(Metrics::new()),
            ingest_enabled: false,
        },
        limits,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(aftercare::api::serve::serve(listener, app, stopped));
    let bearer = format!("authorization: Bearer {}", api.admin);
    let body = br#"{"make": "VW", "model": "Golf"}"#;
    let slow = request(
        "PUT",
        &format!("/v1/vehicles/{VIN}"),
        &[
            bearer.clone(),
            "content-type: application/json".into(),
            format!("content-length: {}", body.len()),
        ],
        body,
    );
    let head_and_some = slow.len() - body.len() + 5;
    let a = exchange(port, &slow, Some(head_and_some)).await;
    a.assert_refusal("a stalled body");
    assert_eq!(a.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(a.code(), "request_timeout");

    let mut chunked = Vec::new();
    for _ in 0..20 {
        let chunk = vec![b' '; 8 * 1024];
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let big = request(
        "POST",
        "/v1/service-records",
        &[
            bearer,
            "content-type: application/json".into(),
            "transfer-encoding: chunked".into(),
        ],
        &chunked,
    );
    let a = exchange(port, &big, None).await;
    a.assert_refusal("a chunked body over the limit");
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        count(&api.pool, "SELECT count(*) FROM vehicle_profiles").await,
        0
    );
    let _ = stop.send(true);
    server.await.unwrap();
}
