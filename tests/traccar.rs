//! Traccar as an input (issue 18, test 1): a recorded forward stream, written by hand from
//! Traccar's documented `{"position": {...}, "device": {...}}`, through a real broker and
//! through `POST /v1/ingest/traccar`. Every value lands once under its VSS path in VSS units
//! (read back through the API), DTCs become reports with a lifecycle, a redelivery stores
//! nothing twice (also across the two paths), an unregistered device is a dead letter with
//! `unknown_device`, and a tracker re-registered to another car files its positions under
//! that car from then on.

mod common;

use aftercare::store::devices;
use aftercare::store::keys::{self, Scope};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use common::*;
use serde_json::{json, Value};

const VIN_A: &str = "WVWZZZ1KZ8W000101";
const VIN_B: &str = "WVWZZZ1KZ8W000102";
const VIN_C: &str = "WVWZZZ1KZ8W000103";
const VIN_D: &str = "WVWZZZ1KZ8W000104";
const TOPIC: &str = "traccar/positions";

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// A forwarded position as Traccar's `forward.json` writes it.
fn position(id: i64, unique_id: &str, at: DateTime<Utc>, speed: f64, attributes: Value) -> Value {
    json!({
        "position": {
            "id": id, "deviceId": 7, "protocol": "teltonika",
            "serverTime": rfc(at + Duration::seconds(2)), "deviceTime": rfc(at),
            "fixTime": rfc(at), "outdated": false, "valid": true,
            "latitude": 52.52, "longitude": 13.405, "altitude": 34.0, "speed": speed,
            "course": 90.0, "address": null, "accuracy": 0.0, "network": null,
            "attributes": attributes
        },
        "device": {
            "id": 7, "name": "Van 7", "uniqueId": unique_id, "status": "online",
            "lastUpdate": rfc(at), "positionId": id, "groupId": 0, "phone": null,
            "model": "FMB003", "contact": null, "category": "van", "disabled": false,
            "attributes": {}
        }
    })
}

/// The values a position with the test's OBD attributes stores, in VSS units.
fn obd_values(
    t: DateTime<Utc>,
    knots: f64,
    odo_m: f64,
    coolant: f64,
) -> Vec<(DateTime<Utc>, &'static str, f64)> {
    vec![
        (t, "Vehicle.CurrentLocation.Latitude", 52.52),
        (t, "Vehicle.CurrentLocation.Longitude", 13.405),
        (t, "Vehicle.CurrentLocation.Altitude", 34.0),
        (t, "Vehicle.CurrentLocation.Heading", 90.0),
        (t, "Vehicle.Speed", knots * 1.852),
        (t, "Vehicle.Traccar.speed", 5.0),
        (t, "Vehicle.TraveledDistance", odo_m / 1000.0),
        (
            t,
            "Vehicle.Powertrain.CombustionEngine.EngineCoolant.Temperature",
            coolant,
        ),
        (t, "Vehicle.LowVoltageBattery.CurrentVoltage", 12.6),
        (t, "Vehicle.Traccar.battery", 4.1),
        (t, "Vehicle.Powertrain.CombustionEngine.Speed", 1800.0),
        (t, "Vehicle.OBD.EngineLoad", 35.5),
        (t, "Vehicle.OBD.ThrottlePosition", 12.0),
        (t, "Vehicle.Powertrain.FuelSystem.AbsoluteLevel", 40.5),
        (t, "Vehicle.Powertrain.FuelSystem.InstantConsumption", 7.2),
        (t, "Vehicle.Powertrain.CombustionEngine.EngineHours", 10.0),
        (t, "Vehicle.IsIgnitionOn", 1.0),
        (t, "Vehicle.IsMoving", 0.0),
        (t, "Vehicle.Traccar.io239", 1.0),
    ]
}

fn obd_attributes(knots: f64, odo_m: f64, coolant: f64, dtcs: Option<&str>) -> Value {
    let mut a = json!({
        "obdSpeed": knots, "odometer": odo_m, "coolantTemp": coolant, "power": 12.6,
        "battery": 4.1, "rpm": 1800, "engineLoad": 35.5, "throttle": 12, "fuel": 40.5,
        "fuelConsumption": 7.2, "hours": 36_000_000, "ignition": true, "motion": false,
        "io239": 1, "sat": null, "alarm": "powerCut", "event": "ignitionOn"
    });
    if let Some(d) = dtcs {
        a["dtcs"] = json!(d);
    }
    a
}

/// A time as positions carry it: to the millisecond.
fn millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traccar_stream_lands_once_in_vss_units_over_mqtt_and_http() {
    let db = TestDb::new().await;
    let broker = TestBroker::start().await;
    let mut c = config(&db.url, &broker.url(), "traccar-it");
    // Score marks stay where ingest left them, to be counted.
    c.model.enabled = false;
    // The service's own limits apply over HTTP too (checked at the end).
    c.storage.retention_days = 30;
    let service = start_connected(c).await;
    let pool = db.pool().await;
    let base = format!("http://{}", service.http_addr);
    let reader = keys::create(&pool, "reader", &[Scope::FleetRead])
        .await
        .unwrap();
    let pusher = keys::create(&pool, "traccar", &[Scope::Ingest])
        .await
        .unwrap();
    let admin = keys::create(&pool, "admin", &[Scope::Admin]).await.unwrap();
    let http = reqwest::Client::new();

    // The tracker 356307042441013 is registered to car A with the CLI.
    let out = cli()
        .args(["devices", "set", "356307042441013", VIN_A])
        .env("AFTERCARE_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let t0 = millis(Utc::now() - Duration::hours(2));
    let t1 = t0 + Duration::seconds(30);
    let p1 = position(
        1001,
        "356307042441013",
        t0,
        5.0,
        obd_attributes(27.0, 48_213_400.0, 91.0, Some("P0301,p0420 P0301")),
    );
    let p2 = position(
        1002,
        "356307042441013",
        t1,
        5.0,
        obd_attributes(30.0, 48_213_650.0, 92.5, None),
    );
    // Unregistered, no VIN of its own.
    let p3 = position(1003, "861230043901111", t1, 5.0, json!({"ignition": true}));
    // Unregistered but the car reports its VIN, which is all it needs.
    let p4 = position(
        1004,
        "861230043902222",
        t1,
        0.0,
        json!({"vin": VIN_C, "coolantTemp": 80}),
    );
    publish(
        &broker,
        "traccar-forwarder",
        owned(&[
            (TOPIC, &bytes(&p1)),
            (TOPIC, &bytes(&p2)),
            (TOPIC, &bytes(&p3)),
            (TOPIC, &bytes(&p4)),
        ]),
    )
    .await;
    let h = handled(&service, 4.0, std::time::Duration::from_secs(30)).await;
    assert_eq!((h.stored, h.duplicate, h.dead_letter), (3.0, 0.0, 1.0));
    let (reason, topic, payload): (String, String, Vec<u8>) =
        sqlx::query_as("SELECT reason, topic, payload FROM dead_letters")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(reason, "unknown_device");
    assert_eq!(topic, TOPIC);
    assert_eq!(payload, bytes(&p3), "the position is kept whole");

    let mut want_a = obd_values(t0, 27.0, 48_213_400.0, 91.0);
    want_a.extend(obd_values(t1, 30.0, 48_213_650.0, 92.5));
    assert_values(
        &api_values(&base, &reader, VIN_A, t0 - Duration::hours(1)).await,
        &want_a,
    );
    assert_values(
        &api_values(&base, &reader, VIN_C, t0 - Duration::hours(1)).await,
        &[
            (t1, "Vehicle.CurrentLocation.Latitude", 52.52),
            (t1, "Vehicle.CurrentLocation.Longitude", 13.405),
            (t1, "Vehicle.CurrentLocation.Altitude", 34.0),
            (t1, "Vehicle.CurrentLocation.Heading", 90.0),
            (t1, "Vehicle.Speed", 0.0),
            (
                t1,
                "Vehicle.Powertrain.CombustionEngine.EngineCoolant.Temperature",
                80.0,
            ),
        ],
    );
    // The DTCs became one report with two codes, each with its lifecycle.
    let dtcs = api_get(&base, &reader, &format!("/v1/vehicles/{VIN_A}/dtcs")).await;
    let mut codes: Vec<(String, String, String)> = dtcs["dtcs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap().to_owned(),
                d["status"].as_str().unwrap().to_owned(),
                d["first_seen"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    codes.sort();
    let seen = |c: &str| (c.to_owned(), "confirmed".to_owned(), t0);
    assert_eq!(
        codes
            .iter()
            .map(|(c, s, f)| (c.clone(), s.clone(), f.parse::<DateTime<Utc>>().unwrap()))
            .collect::<Vec<_>>(),
        vec![seen("P0301"), seen("P0420")]
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM dtc_reports").await, 1);

    // Traccar retries: the same positions again store nothing.
    publish(
        &broker,
        "traccar-forwarder",
        owned(&[(TOPIC, &bytes(&p1)), (TOPIC, &bytes(&p2))]),
    )
    .await;
    let h = handled(&service, 6.0, std::time::Duration::from_secs(30)).await;
    assert_eq!((h.stored, h.duplicate, h.dead_letter), (3.0, 2.0, 1.0));
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, 3);
    assert_eq!(count(&pool, "SELECT count(*) FROM dtc_reports").await, 1);

    // The tracker moves to car B: registered over HTTP from now on.
    let moved_at = millis(Utc::now());
    let resp = http
        .put(format!("{base}/v1/devices/356307042441013"))
        .bearer_auth(&admin)
        .json(&json!({"vin": VIN_B, "from": rfc(moved_at)}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["registered"], "moved");
    // The same registration again changes nothing.
    let resp = http
        .put(format!("{base}/v1/devices/356307042441013"))
        .bearer_auth(&admin)
        .json(&json!({"vin": VIN_B, "from": rfc(moved_at)}))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["registered"], "unchanged");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM device_register").await,
        2
    );

    // A position from after the move goes to car B; one recorded before it and forwarded
    // late (store-and-forward) still goes to car A.
    let t2 = moved_at + Duration::seconds(1);
    let t_late = t1 + Duration::seconds(30);
    let p5 = position(
        1005,
        "356307042441013",
        t2,
        5.0,
        obd_attributes(10.0, 12_000_000.0, 85.0, None),
    );
    let p6 = position(
        1006,
        "356307042441013",
        t_late,
        5.0,
        json!({"coolantTemp": 93}),
    );
    publish(
        &broker,
        "traccar-forwarder",
        owned(&[(TOPIC, &bytes(&p5)), (TOPIC, &bytes(&p6))]),
    )
    .await;
    let h = handled(&service, 8.0, std::time::Duration::from_secs(30)).await;
    assert_eq!((h.stored, h.duplicate, h.dead_letter), (5.0, 2.0, 1.0));
    assert_values(
        &api_values(&base, &reader, VIN_B, t0 - Duration::hours(1)).await,
        &obd_values(t2, 10.0, 12_000_000.0, 85.0),
    );
    let mut want_a_late = want_a.clone();
    want_a_late.extend([
        (t_late, "Vehicle.CurrentLocation.Latitude", 52.52),
        (t_late, "Vehicle.CurrentLocation.Longitude", 13.405),
        (t_late, "Vehicle.CurrentLocation.Altitude", 34.0),
        (t_late, "Vehicle.CurrentLocation.Heading", 90.0),
        (t_late, "Vehicle.Speed", 5.0 * 1.852),
        (
            t_late,
            "Vehicle.Powertrain.CombustionEngine.EngineCoolant.Temperature",
            93.0,
        ),
    ]);
    assert_values(
        &api_values(&base, &reader, VIN_A, t0 - Duration::hours(1)).await,
        &want_a_late,
    );

    // Over HTTP: tracker 2 registered to car D; NDJSON with two good positions, one from an
    // unknown device, one line that is not JSON, and one position already sent over MQTT.
    let resp = http
        .put(format!("{base}/v1/devices/861230043909999"))
        .bearer_auth(&admin)
        .json(&json!({"vin": VIN_D}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let t3 = millis(Utc::now() - Duration::minutes(10));
    let t4 = t3 + Duration::seconds(10);
    let h1 = position(
        2001,
        "861230043909999",
        t3,
        20.0,
        json!({"odometer": 1_500_000, "dtcs": "P0171"}),
    );
    let h2 = position(2002, "861230043909999", t4, 0.0, json!({"motion": true}));
    let h3 = position(2003, "861230043908888", t4, 0.0, json!({}));
    let ndjson = format!("{}\n{}\n\n{}\nnot json at all\n{}\n", h1, h2, h3, p2);
    let post = |body: String| {
        http.post(format!("{base}/v1/ingest/traccar"))
            .bearer_auth(&pusher)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
    };
    let resp = post(ndjson.clone()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["stored"], 2, "{answer}");
    assert_eq!(answer["duplicate"], 1, "p2 came over MQTT before: {answer}");
    assert_eq!(answer["rejected"], 2, "{answer}");
    let rejects: Vec<(u64, String)> = answer["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rejects,
        vec![
            (4, "unknown_device".to_owned()),
            (5, "invalid_json".to_owned())
        ]
    );
    assert_values(
        &api_values(&base, &reader, VIN_D, t3 - Duration::hours(1)).await,
        &[
            (t3, "Vehicle.CurrentLocation.Latitude", 52.52),
            (t3, "Vehicle.CurrentLocation.Longitude", 13.405),
            (t3, "Vehicle.CurrentLocation.Altitude", 34.0),
            (t3, "Vehicle.CurrentLocation.Heading", 90.0),
            (t3, "Vehicle.Speed", 20.0 * 1.852),
            (t3, "Vehicle.TraveledDistance", 1500.0),
            (t4, "Vehicle.CurrentLocation.Latitude", 52.52),
            (t4, "Vehicle.CurrentLocation.Longitude", 13.405),
            (t4, "Vehicle.CurrentLocation.Altitude", 34.0),
            (t4, "Vehicle.CurrentLocation.Heading", 90.0),
            (t4, "Vehicle.Speed", 0.0),
            (t4, "Vehicle.IsMoving", 1.0),
        ],
    );
    // Posted again: nothing new; the refused lines are still refused (and their dead
    // letters counted as delivered again, not duplicated).
    let answer: Value = post(ndjson).await.unwrap().json().await.unwrap();
    assert_eq!(
        (&answer["stored"], &answer["duplicate"], &answer["rejected"]),
        (&json!(0), &json!(3), &json!(2))
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, 7);
    assert_eq!(count(&pool, "SELECT count(*) FROM dtc_reports").await, 2);
    let letters: Vec<(String, String, i32)> =
        sqlx::query_as("SELECT topic, reason, deliveries FROM dead_letters ORDER BY topic, reason")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        letters,
        vec![
            ("POST /v1/ingest/traccar".into(), "invalid_json".into(), 2),
            ("POST /v1/ingest/traccar".into(), "unknown_device".into(), 2),
            (TOPIC.into(), "unknown_device".into(), 1),
        ]
    );
    // A request none of whose positions can be stored is refused as a whole (a client sending
    // one position at a time sees a 4xx), and the position is still kept as a dead letter.
    let resp = post(h3.to_string()).await.unwrap();
    assert_eq!(resp.status(), 422);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["code"], "invalid_position");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown_device"));
    let deliveries: i32 = sqlx::query_scalar(
        "SELECT deliveries FROM dead_letters
         WHERE topic = 'POST /v1/ingest/traccar' AND reason = 'unknown_device'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        deliveries, 3,
        "the same position's dead letter, delivered a third time"
    );
    // A position older than the configured retention is refused over HTTP as over MQTT.
    let old = position(
        2010,
        "861230043909999",
        millis(Utc::now() - Duration::days(40)),
        0.0,
        json!({}),
    );
    let resp = post(old.to_string()).await.unwrap();
    assert_eq!(resp.status(), 422);
    let e: Value = resp.json().await.unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("past_retention"),
        "{e}"
    );
    // Every vehicle that got new data is marked for scoring.
    assert_eq!(count(&pool, "SELECT count(*) FROM score_dirty").await, 4);
    service.shutdown().await.unwrap();
}

/// The register on its own: a device's VIN at a time is the registration then in force, and
/// before its first registration that first one; an unknown device has none.
#[tokio::test]
async fn the_register_answers_by_time() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let t = |h: i64| Utc::now() - Duration::hours(h);
    let (a, b) = (t(48), t(24));
    assert_eq!(
        devices::register(&pool, "imei-1", VIN_A, a).await.unwrap(),
        devices::Registered::New
    );
    assert_eq!(
        devices::register(&pool, "imei-1", VIN_B, b).await.unwrap(),
        devices::Registered::Moved
    );
    assert_eq!(
        devices::register(&pool, "imei-1", VIN_B, t(12))
            .await
            .unwrap(),
        devices::Registered::Unchanged
    );
    let got = devices::vins_at(
        &pool,
        &[
            ("imei-1", t(72)),
            ("imei-1", t(36)),
            ("imei-1", t(1)),
            ("imei-2", t(1)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        got,
        vec![
            Some(VIN_A.into()),
            Some(VIN_A.into()),
            Some(VIN_B.into()),
            None
        ]
    );
}

/// HTTP refusals of the whole request are 4xx in the JSON error shape; a device PUT with a
/// bad VIN is a 422 that names the field and registers nothing.
#[tokio::test]
async fn http_refusals_are_in_the_error_shape() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store = std::sync::Arc::new(aftercare::store::Store::open(pool.clone()).await.unwrap());
    let port = serve_on_free_port(aftercare::api::router(aftercare::api::AppState {
        store,
        metrics: std::sync::Arc::new(aftercare::metrics::Metrics::new()),
        ingest_enabled: false,
    }))
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let admin = keys::create(&pool, "admin", &[Scope::Admin]).await.unwrap();
    let reader = keys::create(&pool, "reader", &[Scope::FleetRead])
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let put = |body: Value| {
        http.put(format!("{base}/v1/devices/imei-9"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    for body in [
        json!({"vin": "WVWZZZ1KZ8W00010I"}),
        json!({}),
        json!({"vin": VIN_A, "colour": "red"}),
        json!({"vin": VIN_A, "from": "yesterday"}),
    ] {
        let resp = put(body.clone()).await.unwrap();
        assert_eq!(resp.status(), 422, "{body}");
        let e: Value = resp.json().await.unwrap();
        assert_eq!(e["error"]["code"], "invalid_field", "{body}");
    }
    assert_eq!(
        count(&pool, "SELECT count(*) FROM device_register").await,
        0
    );
    let post = |key: &str, body: &'static str| {
        http.post(format!("{base}/v1/ingest/traccar"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let resp = post(&admin, " \n ").await.unwrap();
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["code"], "invalid_body");
    let resp = post(&reader, "{}").await.unwrap();
    assert_eq!(resp.status(), 403, "a fleet-read key cannot push");
}
