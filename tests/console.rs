//! The web console in headless Chromium against the real service and database: each page
//! loads without console errors, shows the numbers the API gives, and the offers page books a
//! slot. Screenshots of each page land in target/console-screenshots/.

mod common;

use aftercare::config::WriteMethod;
use aftercare::store::keys::{self, Scope};
use aftercare::store::{BatchItem, Store};
use aftercare::wire::{parse_message, Limits};
use chrono::{DateTime, Duration, DurationRound, TimeDelta, Utc};
use common::browser::Browser;
use common::*;
use serde_json::{json, Value};

const VIN: &str = "WVWZZZ1JZ3W386752";

struct Console {
    service: aftercare::service::RunningService,
    base: String,
    key: String,
    _db: TestDb,
}

fn item(topic: &str, payload: &Value, now: DateTime<Utc>) -> BatchItem {
    let message = parse_message(
        topic,
        payload.to_string().as_bytes(),
        now,
        &Limits::default(),
    )
    .unwrap();
    BatchItem::Message {
        message,
        received_at: now,
    }
}

/// A service (API and console, no ingest) over a database holding 30 days of one vehicle's
/// brake and battery signals and a misfire code that went pending, confirmed, then cleared.
async fn console_with_data() -> Console {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store = Store::open(pool.clone()).await.unwrap();
    let t0 = (Utc::now() - Duration::days(30))
        .duration_trunc(TimeDelta::days(1))
        .unwrap();
    let now = Utc::now();
    let mut items = Vec::new();
    for day in 0..30i64 {
        let payload = json!({
            "ts": (t0 + Duration::days(day) + Duration::hours(8)).to_rfc3339(), "seq": day,
            "signals": {
                "Vehicle.Chassis.Axle.Row1.Wheel.Left.Brake.PadWear": 50.0 + day as f64,
                "Vehicle.LowVoltageBattery.CurrentVoltage": 12.6 - day as f64 * 0.01,
            }
        });
        items.push(item(&format!("v1/vehicles/{VIN}/telemetry"), &payload, now));
    }
    for (seq, status, day) in [
        (100, "pending", 5),
        (101, "confirmed", 9),
        (102, "cleared", 20),
    ] {
        let payload = json!({
            "ts": (t0 + Duration::days(day)).to_rfc3339(), "seq": seq, "source": "obd",
            "dtcs": [{"code": "P0302", "status": status}]
        });
        items.push(item(&format!("v1/vehicles/{VIN}/dtc"), &payload, now));
    }
    store.write_batch(&items, WriteMethod::Copy).await.unwrap();
    store.refresh_rollup_all().await.unwrap();
    let key = keys::create(&pool, "console", &[Scope::Admin])
        .await
        .unwrap();
    let mut config = config(&db.url, "mqtt://127.0.0.1:1", "console-test");
    config.ingest.enabled = false;
    let service = aftercare::service::start(config).await.unwrap();
    let base = format!("http://{}", service.http_addr);
    Console {
        service,
        base,
        key,
        _db: db,
    }
}

async fn sign_in(browser: &Browser, console: &Console) {
    browser.goto(&format!("{}/console/", console.base)).await;
    browser
        .wait_for("login form", "return !!document.getElementById('api-key')")
        .await;
    browser.type_into("#api-key", &console.key).await;
    browser.click("#login-submit").await;
}

#[tokio::test]
async fn vehicle_page_shows_stored_signals_and_dtc_lifecycle() {
    let console = console_with_data().await;
    let browser = Browser::start().await;
    sign_in(&browser, &console).await;
    browser
        .goto(&format!("{}/console/#/vehicle/{VIN}", console.base))
        .await;
    browser.wait_rendered("page-vehicle").await;
    // One chart per signal group that has data: the battery and the brake pads.
    let charts = browser.texts("#vehicle-charts figcaption").await;
    assert_eq!(charts, vec!["12 V battery (V)", "Brake pad wear (%)"]);
    // uPlot drew a canvas in each.
    browser
        .wait_for(
            "charts drawn",
            "return document.querySelectorAll('#vehicle-charts canvas').length === 2",
        )
        .await;
    // The DTC table says what the API says.
    let api: Value = reqwest::Client::new()
        .get(format!("{}/v1/vehicles/{VIN}/dtcs", console.base))
        .bearer_auth(&console.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reports = api["dtcs"][0]["reports"].as_i64().unwrap();
    let row = browser
        .texts("#dtc-timeline tr[data-code='P0302'] td")
        .await;
    assert_eq!(row[0], "P0302");
    assert_eq!(row[1], "cleared");
    assert_eq!(row[5], reports.to_string());
    // Three lifecycle events drawn on the timeline.
    let dots = browser
        .eval(
            "return document.querySelectorAll('#dtc-timeline svg circle').length",
            json!([]),
        )
        .await;
    assert_eq!(dots, json!(3));
    browser.screenshot("vehicle").await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
    console.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_refused_key_stays_on_the_login_page() {
    let console = console_with_data().await;
    let browser = Browser::start().await;
    browser.goto(&format!("{}/console/", console.base)).await;
    browser
        .wait_for("login form", "return !!document.getElementById('api-key')")
        .await;
    browser.type_into("#api-key", "ac_not_a_key").await;
    browser.click("#login-submit").await;
    let status = browser
        .wait_for(
            "refusal",
            "return document.getElementById('login-status')?.textContent",
        )
        .await;
    assert_eq!(status, json!("That key was refused."));
    browser.close().await;
    console.service.shutdown().await.unwrap();
}
