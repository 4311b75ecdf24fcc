//! The web console in headless Chromium against the real service and database: each page
//! loads without console errors, shows the numbers the API gives, and the offers page books a
//! slot. Screenshots of each page land in target/console-screenshots/.

mod booking_common;
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
    store.fold_rollup_all().await.unwrap();
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
    // Scored by a known model at a known time.
    let pool = sqlx::PgPool::connect(&console._db.url).await.unwrap();
    let id: i32 = sqlx::query_scalar("SELECT id FROM vehicles WHERE vin = $1")
        .bind(VIN)
        .fetch_one(&pool)
        .await
        .unwrap();
    let scored_at: DateTime<Utc> = "2026-12-01T08:30:00Z".parse().unwrap();
    let score = |component| aftercare::store::risk::NewScore {
        vehicle_id: id,
        component,
        p: [0.1, 0.3, 0.5],
        urgency_days: None,
        factors: json!([{"feature": "f", "value": 1.0, "contribution": 0.5, "text": "why"}]),
    };
    aftercare::store::risk::write_scores(
        &pool,
        &[id],
        "console-model-7",
        scored_at,
        &[score("brakes"), score("battery_12v")],
    )
    .await
    .unwrap();
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
    // Which model scored the car, and when.
    assert_eq!(
        browser.texts("#risk-scored").await,
        vec!["model console-model-7, scored 2026-12-01 08:30Z"]
    );
    assert_eq!(browser.texts("#risk-table tbody tr").await.len(), 2);
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

/// The service (API and console; the offer worker runs when `offers` is on) over a database
/// with the demo workshops and `n` at-risk vehicles homed at WS-01, brakes first.
async fn console_with_fleet(n: usize, offers: bool) -> (Console, sqlx::PgPool) {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    fleet(&pool, n).await;
    console_on(db, pool, offers).await
}

/// The demo workshops and `n` at-risk vehicles homed at WS-01, brakes first.
async fn fleet(pool: &sqlx::PgPool, n: usize) {
    booking_common::load_demo_workshops(pool).await;
    let components = ["brakes", "battery_12v", "tyres", "cooling"];
    for i in 0..n {
        let id = booking_common::vehicle(pool, &booking_common::vin(i)).await;
        booking_common::profile(pool, id, Some("WS-01"), true).await;
        // Falling risk down the fleet, so the ranking is known.
        let p30 = 0.95 - i as f32 * 0.9 / n as f32;
        booking_common::score(
            pool,
            id,
            components[i % 4],
            [p30 * 0.6, p30, (p30 * 1.2).min(1.0)],
            Some(10.0 + i as f32),
        )
        .await;
    }
}

/// The service (API and console; the offer worker runs when `offers` is on) over `db`.
async fn console_on(db: TestDb, pool: sqlx::PgPool, offers: bool) -> (Console, sqlx::PgPool) {
    let key = keys::create(&pool, "console", &[Scope::Admin])
        .await
        .unwrap();
    let mut config = config(&db.url, "mqtt://127.0.0.1:1", "console-test");
    config.ingest.enabled = false;
    config.offers.enabled = offers;
    config.offers.interval_ms = 200;
    config.notify.mqtt = false;
    let service = aftercare::service::start(config).await.unwrap();
    let base = format!("http://{}", service.http_addr);
    (
        Console {
            service,
            base,
            key,
            _db: db,
        },
        pool,
    )
}

async fn get_json(console: &Console, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", console.base))
        .bearer_auth(&console.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The VINs `GET /v1/fleet/risk?{query}` ranks, in its order.
async fn ranked_vins(console: &Console, query: &str) -> Vec<String> {
    get_json(console, &format!("/v1/fleet/risk?{query}")).await["vehicles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["vin"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn fleet_page_ranks_like_the_api_and_filters_by_component() {
    let (console, pool) = console_with_fleet(60, false).await;
    // Every fifth vehicle calls WS-02 home.
    sqlx::query("UPDATE vehicle_profiles SET home_workshop = 'WS-02' WHERE vehicle_id % 5 = 0")
        .execute(&pool)
        .await
        .unwrap();
    let browser = Browser::start().await;
    sign_in(&browser, &console).await;
    browser.wait_rendered("page-fleet").await;
    let expected = ranked_vins(&console, "limit=50").await;
    assert_eq!(expected.len(), 50);
    assert_eq!(
        browser.texts("#fleet-rows tr td:nth-child(2)").await,
        expected
    );
    // The rest is one click away.
    browser.click("#fleet-more").await;
    browser
        .wait_for(
            "second page",
            "return document.querySelectorAll('#fleet-rows tr').length === 60",
        )
        .await;
    browser.screenshot("fleet").await;
    // Filtering by component shows exactly that component's vehicles, in the API's order.
    browser
        .goto(&format!("{}/console/#/fleet?component=tyres", console.base))
        .await;
    browser.wait_rendered("page-fleet").await;
    let expected = ranked_vins(&console, "limit=50&component=tyres").await;
    assert_eq!(expected.len(), 15);
    assert_eq!(
        browser.texts("#fleet-rows tr td:nth-child(2)").await,
        expected
    );
    // And by home workshop: the page shows the API's vehicles, each with that workshop.
    browser
        .goto(&format!("{}/console/#/fleet?workshop=WS-02", console.base))
        .await;
    browser.wait_rendered("page-fleet").await;
    let expected = ranked_vins(&console, "limit=50&workshop=WS-02").await;
    assert_eq!(expected.len(), 12);
    assert_eq!(
        browser.texts("#fleet-rows tr td:nth-child(2)").await,
        expected
    );
    let workshops = browser.texts("#fleet-rows tr td:nth-child(4)").await;
    assert!(workshops.iter().all(|w| w == "WS-02"), "{workshops:?}");
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
    console.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn accepting_a_window_on_the_offers_page_books_it_and_the_workshop_page_shows_it() {
    let (console, pool) = console_with_fleet(8, true).await;
    // The offer worker turns the risks above threshold into offers with windows.
    wait_until(std::time::Duration::from_secs(30), "offers", || async {
        count(
            &pool,
            "SELECT count(*) FROM offers WHERE jsonb_array_length(windows) > 0",
        )
        .await
            >= 3
    })
    .await;
    let browser = Browser::start().await;
    sign_in(&browser, &console).await;
    browser
        .goto(&format!("{}/console/#/offers?state=proposed", console.base))
        .await;
    browser.wait_rendered("page-offers").await;
    let offer_id: i64 = browser
        .eval(
            "return Number(document.querySelector('#offer-rows tr').dataset.offer)",
            json!([]),
        )
        .await
        .as_i64()
        .unwrap();
    let start = browser
        .eval(
            "return document.querySelector('#offer-rows tr button.accept').dataset.start",
            json!([]),
        )
        .await;
    browser.click("#offer-rows tr button.accept").await;
    browser
        .wait_for("booked", "return document.querySelector('#offer-rows tr .offer-state')?.textContent.startsWith('booked')")
        .await;
    browser.screenshot("offers").await;
    // The database holds the booking at the clicked time, and the API agrees.
    let booked_start: chrono::DateTime<Utc> = sqlx::query_scalar(
        "SELECT lower(during) FROM bookings WHERE offer_id = $1 AND status = 'booked'",
    )
    .bind(offer_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    let clicked: chrono::DateTime<Utc> = start.as_str().unwrap().parse().unwrap();
    assert_eq!(booked_start, clicked);
    assert_eq!(
        get_json(&console, &format!("/v1/offers/{offer_id}")).await["state"],
        "booked"
    );

    // The workshop page: the heatmap says what the preview API says, and the board of the
    // booked day shows the booking.
    let day = {
        let tz: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let spec = get_json(&console, "/v1/workshops/WS-01").await;
        let tz: chrono_tz::Tz = spec["time_zone"].as_str().unwrap().parse().unwrap_or(tz);
        booked_start.with_timezone(&tz).date_naive()
    };
    browser
        .goto(&format!(
            "{}/console/#/workshops/WS-01?day={day}",
            console.base
        ))
        .await;
    browser.wait_rendered("page-workshop").await;
    let preview = get_json(&console, "/v1/capacity/preview?workshop=WS-01&days=28").await;
    let cells = preview["workshops"][0]["cells"].as_array().unwrap();
    let shown = browser
        .eval(
            "return [...document.querySelectorAll('#heatmap td[data-day]')].map(td => [td.dataset.day, td.closest('tr').dataset.skill, Number(td.dataset.demand), Number(td.dataset.capacity)])",
            json!([]),
        )
        .await;
    // Every cell of the API's preview is on the page with its numbers, and nothing else is.
    let mut shown: Vec<(String, String, f64, f64)> = serde_json::from_value(shown).unwrap();
    let mut expected: Vec<(String, String, f64, f64)> = cells
        .iter()
        .map(|c| {
            (
                c["day"].as_str().unwrap().to_owned(),
                c["skill"].as_str().unwrap().to_owned(),
                c["demand_hours"].as_f64().unwrap(),
                c["capacity_hours"].as_f64().unwrap(),
            )
        })
        .collect();
    shown.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    expected.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(shown, expected);
    let booked_hours: f64 = cells
        .iter()
        .map(|c| c["booked_hours"].as_f64().unwrap())
        .sum();
    assert!(booked_hours > 0.0, "the booking counts in the preview");
    let on_board = browser
        .eval(
            "return document.querySelectorAll('#board .booking').length",
            json!([]),
        )
        .await;
    assert_eq!(on_board, json!(1));
    browser.screenshot("workshop").await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
    console.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn declining_one_job_of_a_visit_on_the_offers_page_keeps_the_other() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    fleet(&pool, 1).await;
    // The car's tyres are due two days after its brakes: one visit with both.
    let id: i32 = sqlx::query_scalar("SELECT id FROM vehicles")
        .fetch_one(&pool)
        .await
        .unwrap();
    booking_common::score(&pool, id, "tyres", [0.3, 0.8, 0.9], Some(12.0)).await;
    let (console, pool) = console_on(db, pool, true).await;
    wait_until(
        std::time::Duration::from_secs(30),
        "a visit offer",
        || async { count(&pool, "SELECT count(*) FROM offer_jobs").await == 2 },
    )
    .await;
    let offer_id: i64 = sqlx::query_scalar("SELECT id FROM offers")
        .fetch_one(&pool)
        .await
        .unwrap();
    let browser = Browser::start().await;
    sign_in(&browser, &console).await;
    browser
        .goto(&format!("{}/console/#/offers?state=proposed", console.base))
        .await;
    browser.wait_rendered("page-offers").await;
    assert_eq!(
        browser
            .texts("#offer-rows tr ul.jobs li button.decline-job")
            .await
            .len(),
        2,
        "each job of the visit can be declined"
    );
    browser
        .click("#offer-rows tr li[data-component='tyres'] button.decline-job")
        .await;
    browser
        .wait_for(
            "tyres struck through",
            "return !!document.querySelector('#offer-rows tr li[data-component=tyres] s')",
        )
        .await;
    let offer = get_json(&console, &format!("/v1/offers/{offer_id}")).await;
    assert_eq!(offer["state"], "proposed");
    assert!(offer["jobs"][0]["declined_at"].is_null());
    assert!(offer["jobs"][1]["declined_at"].is_string());
    // One job left: it can still be accepted or declined with the offer, not on its own.
    assert!(browser
        .texts("#offer-rows tr ul.jobs li button.decline-job")
        .await
        .is_empty());
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
    console.service.shutdown().await.unwrap();
}
