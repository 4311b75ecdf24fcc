//! Mapped JSON feeds (issue 18, test 2): the two shipped mappings (`deploy/feeds/`), an
//! ELM327 dongle read by python-OBD and a Teltonika tracker's MQTT JSON, fed through a real
//! broker as those devices publish. Exact counts; every mapped value read back through the
//! API under its VSS path in VSS units; fault codes as reports; a redelivery is a duplicate;
//! an unregistered device and a broken message are dead letters with their reasons.

mod common;

use aftercare::store::devices;
use aftercare::store::keys::{self, Scope};
use chrono::{DateTime, Duration, Utc};
use common::*;
use serde_json::{json, Value};

const VIN_E: &str = "WVWZZZ1KZ8W000201";
const VIN_F: &str = "WVWZZZ1KZ8W000202";
const PI: &str = "pi-van-7";
const IMEI: &str = "352093081234567";

fn mapping(name: &str) -> std::path::PathBuf {
    format!("{}/deploy/feeds/{name}.toml", env!("CARGO_MANIFEST_DIR")).into()
}

async fn dtcs(base: &str, key: &str, vin: &str) -> Vec<(String, String)> {
    let body = api_get(base, key, &format!("/v1/vehicles/{vin}/dtcs")).await;
    let mut out: Vec<(String, String)> = body["dtcs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap().to_owned(),
                d["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_mappings_store_what_the_devices_send() {
    let db = TestDb::new().await;
    let broker = TestBroker::start().await;
    let mut c = config(&db.url, &broker.url(), "feeds-it");
    c.feeds.mappings = vec![mapping("elm327"), mapping("teltonika")];
    let service = start_connected(c).await;
    let pool = db.pool().await;
    let base = format!("http://{}", service.http_addr);
    let reader = keys::create(&pool, "reader", &[Scope::FleetRead])
        .await
        .unwrap();
    let since = Utc::now() - Duration::days(1);
    devices::register(&pool, PI, VIN_E, since).await.unwrap();
    devices::register(&pool, IMEI, VIN_F, since).await.unwrap();

    // python-OBD: epoch seconds with a fraction, a round counter, magnitudes, GET_DTC pairs.
    let secs = (Utc::now() - Duration::hours(1)).timestamp();
    let t0 = DateTime::from_timestamp_millis(secs * 1000 + 250).unwrap();
    let t1 = t0 + Duration::seconds(5);
    let obd1 = json!({
        "time": secs as f64 + 0.25, "count": 1842, "SPEED": 62.0, "RPM": 2140.5,
        "COOLANT_TEMP": 91.0, "ENGINE_LOAD": 35.29, "THROTTLE_POS": 17.6, "FUEL_LEVEL": 54.1,
        "CONTROL_MODULE_VOLTAGE": 14.12, "INTAKE_TEMP": 28.0, "RUN_TIME": 3605,
        "DISTANCE_SINCE_DTC_CLEAR": 1520.0,
        "GET_DTC": [["P0301", "Cylinder 1 Misfire Detected"]]
    });
    let obd2 = json!({
        "time": secs as f64 + 5.25, "count": 1843, "SPEED": 64.0, "RPM": 2210.0,
        "COOLANT_TEMP": 92.0, "INTAKE_TEMP": "NO DATA", "GET_DTC": []
    });
    let obd_unknown = json!({"time": secs as f64, "count": 1, "SPEED": 10.0});
    // Teltonika: milliseconds, I/O elements by id, as text or numbers.
    let ms = (Utc::now() - Duration::minutes(30)).timestamp_millis();
    let u0 = DateTime::from_timestamp_millis(ms).unwrap();
    let u1 = u0 + Duration::seconds(10);
    let tel1 = json!({"state": {"reported": {
        "ts": ms, "pr": 0, "latlng": "52.520000,13.405000", "alt": "34", "ang": "90",
        "sat": "12", "sp": "62", "evt": "0", "239": "1", "240": "1", "66": "14120",
        "67": "4102", "16": "48213400", "31": "35", "32": "91", "36": "2140", "41": "17",
        "48": "54", "281": "P0420,P0171"
    }}});
    let tel2 = json!({"state": {"reported": {
        "ts": ms + 10_000, "sp": 0, "239": 0, "240": 0, "66": 12580, "16": 48213650
    }}});
    let obd_topic = format!("obd/{PI}/pids");
    let tel_topic = format!("{IMEI}/data");
    let b = |v: &Value| v.to_string().into_bytes();
    publish(
        &broker,
        "devices",
        owned(&[
            (obd_topic.as_str(), &b(&obd1)),
            (obd_topic.as_str(), &b(&obd2)),
            ("obd/pi-unknown/pids", &b(&obd_unknown)),
            (obd_topic.as_str(), b"{\"time\": 17"),
            (tel_topic.as_str(), &b(&tel1)),
            (tel_topic.as_str(), &b(&tel2)),
            (obd_topic.as_str(), &b(&obd1)),
        ]),
    )
    .await;
    let h = handled(&service, 7.0, std::time::Duration::from_secs(30)).await;
    assert_eq!((h.stored, h.duplicate, h.dead_letter), (4.0, 1.0, 2.0));
    let letters: Vec<(String, String)> =
        sqlx::query_as("SELECT topic, reason FROM dead_letters ORDER BY reason")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        letters,
        vec![
            (obd_topic.clone(), "invalid_json".to_owned()),
            (
                "obd/pi-unknown/pids".to_owned(),
                "unknown_device".to_owned()
            ),
        ]
    );

    assert_values(
        &api_values(&base, &reader, VIN_E, t0 - Duration::hours(1)).await,
        &[
            (t0, "Vehicle.Speed", 62.0),
            (t0, "Vehicle.Powertrain.CombustionEngine.Speed", 2140.5),
            (
                t0,
                "Vehicle.Powertrain.CombustionEngine.EngineCoolant.Temperature",
                91.0,
            ),
            (t0, "Vehicle.OBD.EngineLoad", 35.29),
            (t0, "Vehicle.OBD.ThrottlePosition", 17.6),
            (t0, "Vehicle.Powertrain.FuelSystem.RelativeLevel", 54.1),
            (t0, "Vehicle.LowVoltageBattery.CurrentVoltage", 14.12),
            (t0, "Vehicle.OBD.IntakeTemp", 28.0),
            (t0, "Vehicle.OBD.RunTime", 3605.0),
            (t0, "Vehicle.OBD.DistanceSinceDTCClear", 1520.0),
            (t1, "Vehicle.Speed", 64.0),
            (t1, "Vehicle.Powertrain.CombustionEngine.Speed", 2210.0),
            (
                t1,
                "Vehicle.Powertrain.CombustionEngine.EngineCoolant.Temperature",
                92.0,
            ),
        ],
    );
    assert_eq!(
        dtcs(&base, &reader, VIN_E).await,
        vec![("P0301".to_owned(), "confirmed".to_owned())]
    );
    assert_values(
        &api_values(&base, &reader, VIN_F, u0 - Duration::hours(1)).await,
        &[
            (u0, "Vehicle.Speed", 62.0),
            (u0, "Vehicle.CurrentLocation.Altitude", 34.0),
            (u0, "Vehicle.CurrentLocation.Heading", 90.0),
            (u0, "Vehicle.TraveledDistance", 48213.4),
            (u0, "Vehicle.LowVoltageBattery.CurrentVoltage", 14.12),
            (u0, "Vehicle.Teltonika.InternalBatteryVoltage", 4.102),
            (u0, "Vehicle.IsIgnitionOn", 1.0),
            (u0, "Vehicle.IsMoving", 1.0),
            (u0, "Vehicle.OBD.EngineLoad", 35.0),
            (
                u0,
                "Vehicle.Powertrain.CombustionEngine.EngineCoolant.Temperature",
                91.0,
            ),
            (u0, "Vehicle.Powertrain.CombustionEngine.Speed", 2140.0),
            (u0, "Vehicle.OBD.ThrottlePosition", 17.0),
            (u0, "Vehicle.Powertrain.FuelSystem.RelativeLevel", 54.0),
            (u1, "Vehicle.Speed", 0.0),
            (u1, "Vehicle.TraveledDistance", 48213.65),
            (u1, "Vehicle.LowVoltageBattery.CurrentVoltage", 12.58),
            (u1, "Vehicle.IsIgnitionOn", 0.0),
            (u1, "Vehicle.IsMoving", 0.0),
        ],
    );
    assert_eq!(
        dtcs(&base, &reader, VIN_F).await,
        vec![
            ("P0171".to_owned(), "confirmed".to_owned()),
            ("P0420".to_owned(), "confirmed".to_owned())
        ]
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, 4);
    assert_eq!(count(&pool, "SELECT count(*) FROM dtc_reports").await, 2);
    let sources: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT source FROM dtc_events ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(sources, ["elm327", "teltonika"]);
    service.shutdown().await.unwrap();
}

/// A mapping file that is not valid stops the service from starting, naming the file.
#[tokio::test]
async fn a_bad_mapping_file_stops_the_start() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\ntopic = \"v1/vehicles/+/telemetry\"\nts = \"/t\"\nvehicle = { topic_level = 2, is = \"vin\" }\n").unwrap();
    let mut c = config(&db.url, "mqtt://127.0.0.1:1", "unused");
    c.feeds.mappings = vec![bad.clone()];
    let e = aftercare::service::start(c).await.err().expect("refused");
    let text = e.to_string();
    assert!(
        text.contains("bad.toml") && text.contains("overlapping"),
        "{text}"
    );
}
