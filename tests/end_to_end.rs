//! The whole chain through the real processes (issue 5): a simulated fleet published live
//! through a real Mosquitto → `aftercare serve` as a child process (ingest, scoring with the
//! committed model, offers, outbox) → offers accepted through the HTTP API → bookings, and
//! signed webhooks delivered to a real HTTP receiver in this test and offers on the vehicles'
//! MQTT topics. The service is SIGKILLed twice: while telemetry streams, and while booking
//! webhooks wait for a receiver that is down. Afterwards every published message is stored
//! exactly once, every event reached its receiver with a valid signature, and no offer or
//! booking was lost or doubled.

mod common;

use aftercare::simulator::{live, Progress, Realism, SimConfig, Simulation, Summary};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use common::*;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "end-to-end-webhook-secret";
const SEED_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/workshops.toml");
const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/current.json");
/// Offers to accept at most (the rest stay notified).
const ACCEPTS: usize = 5;

/// 60 vehicles over their last 90 days: with the committed model, about a fifth of them
/// cross an offer threshold by today (12 to 16 offers in trial runs on three seeds), in a
/// stream of about 4,400 messages. Every delivery effect is on, often enough to occur.
fn fleet() -> SimConfig {
    let days = 90;
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    SimConfig {
        seed: 5,
        vehicles: 60,
        workshops: 5,
        start: today - chrono::Duration::days(days),
        days: days as u32,
        realism: Realism {
            duplicates: 0.02,
            late: 0.02,
            gaps: true,
            skew: true,
            malformed: 0.005,
        },
    }
}

/// What the simulation will publish, computed offline (it is deterministic by seed).
fn expected(sim: &SimConfig) -> Summary {
    let mut s = Simulation::new(sim.clone());
    let mut summary = Summary {
        vehicles: sim.vehicles,
        ..Summary::default()
    };
    while let Some(day) = s.next_day() {
        for d in &day.deliveries {
            summary.add_delivery(d);
        }
        summary.add_records(&day.records);
    }
    summary
}

/// A webhook receiver: checks every signature, answers 503 while `up` is false, and records
/// the idempotency key and body of each delivery it accepted.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    up: Arc<AtomicBool>,
    bad_signatures: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let Webhook {
        key,
        payload,
        signed,
    } = read_webhook(SECRET, &headers, &body);
    let valid = signed && payload.as_ref().is_some_and(|p| p["id"] == key.as_str());
    if !valid {
        r.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    if !r.up.load(Ordering::SeqCst) {
        r.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    r.seen
        .lock()
        .expect("receiver lock")
        .push((key, payload.unwrap_or_default()));
    StatusCode::NO_CONTENT
}

async fn start_receiver(r: Receiver) -> u16 {
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r);
    serve_on_free_port(app).await
}

/// Runs an `aftercare` command against the test database; returns its stdout.
async fn cli(db_url: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::from(common::cli())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AFTERCARE_DATABASE_URL", db_url)
        .env("AFTERCARE_LOG_FILTER", "warn")
        .output()
        .await
        .expect("run aftercare");
    assert!(
        out.status.success(),
        "aftercare {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn n(pool: &PgPool, sql: &str) -> u64 {
    count(pool, sql).await as u64
}

/// Every table the stream writes, counted.
async fn stored(pool: &PgPool) -> [u64; 6] {
    [
        n(pool, "SELECT count(*) FROM samples").await,
        n(pool, "SELECT count(*) FROM telemetry").await,
        n(pool, "SELECT count(*) FROM dtc_reports").await,
        n(pool, "SELECT count(*) FROM dtc_events").await,
        n(pool, "SELECT count(*) FROM dead_letters").await,
        n(pool, "SELECT count(*) FROM service_records").await,
    ]
}

fn want(s: &Summary) -> [u64; 6] {
    [
        s.samples,
        s.values,
        s.dtc_reports,
        s.dtc_entries,
        s.dead_letters_expected,
        s.service_records(),
    ]
}

/// Accepts `offer`: its first window, else the alternatives a 409 names, else its other
/// windows. Returns the booking.
async fn accept(http: &reqwest::Client, base: &str, key: &str, offer: &Value) -> Option<Value> {
    let mut candidates: Vec<Value> = offer["windows"].as_array().cloned().unwrap_or_default();
    let mut tried = 0;
    while tried < candidates.len() && tried < 12 {
        let w = candidates[tried].clone();
        tried += 1;
        let resp = http
            .post(format!("{base}/v1/offers/{}/accept", offer["id"]))
            .bearer_auth(key)
            .json(&json!({"start": w["start"], "workshop": w["workshop"]}))
            .send()
            .await
            .expect("accept request");
        let status = resp.status();
        let body: Value = resp.json().await.expect("accept answer");
        match status.as_u16() {
            200 => return Some(body),
            409 => {
                let alternatives = body["alternatives"].as_array().cloned().unwrap_or_default();
                for (i, a) in alternatives.into_iter().enumerate() {
                    candidates.insert(tried + i, a);
                }
            }
            _ => panic!("accept of offer {}: {status} {body}", offer["id"]),
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_to_bookings_and_webhooks_through_two_crashes() {
    let db = TestDb::new().await;
    let t0 = std::time::Instant::now();
    let step = |what: &str| eprintln!("[end_to_end {:6.1}s] {what}", t0.elapsed().as_secs_f64());
    let pool = db.pool().await;
    let broker = TestBroker::start().await;

    // Workshops and keys the way an operator sets them up.
    cli(&db.url, &["workshops", "load", SEED_FILE]).await;
    let advisor = cli(
        &db.url,
        &["keys", "create", "--name", "advisor", "--scope", "advisor"],
    )
    .await;
    let admin = cli(
        &db.url,
        &["keys", "create", "--name", "simulator", "--scope", "admin"],
    )
    .await;

    let receiver = Receiver::default();
    receiver.up.store(true, Ordering::SeqCst);
    let hook = format!(
        "http://127.0.0.1:{}/hook",
        start_receiver(receiver.clone()).await
    );
    let mqtt = offers_subscriber(&broker, "e2e-offers-subscriber").await;

    let env = [
        // One instance on Mosquitto: a plain subscription (docs/operations.md, broker requirements).
        ("AFTERCARE_MQTT_SHARE_GROUP", ""),
        ("AFTERCARE_MODEL_ARTIFACT", MODEL),
        ("AFTERCARE_MODEL_DEBOUNCE_MS", "300"),
        ("AFTERCARE_MODEL_MAX_DELAY_MS", "3000"),
        ("AFTERCARE_MODEL_POLL_MS", "200"),
        // Marks a killed worker had claimed come back when their lease ends.
        ("AFTERCARE_MODEL_LEASE_SECS", "5"),
        ("AFTERCARE_OFFERS_INTERVAL_MS", "300"),
        ("AFTERCARE_NOTIFY_INTERVAL_MS", "100"),
        ("AFTERCARE_NOTIFY_RETRY_BASE_MS", "200"),
        ("AFTERCARE_NOTIFY_RETRY_MAX_MS", "2000"),
        ("AFTERCARE_NOTIFY_WEBHOOK_URL", hook.as_str()),
        ("AFTERCARE_NOTIFY_WEBHOOK_SECRET", SECRET),
    ];
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client_id = "e2e-service";
    let service = ServiceProcess::start_at(&db.url, &broker.url(), client_id, port, &env).await;

    // 1. The fleet streams live; the service is killed a third of the way in.
    let sim = fleet();
    let expect = expected(&sim);
    let opts = live::LiveOptions {
        mqtt: broker.mqtt_config(),
        client_id: "e2e-fleet".into(),
        compression: f64::INFINITY,
        rate: Some(250.0),
        duration: None,
        max_messages: None,
        api: Some(live::ApiClient::new(&base, &admin)),
    };
    let days = sim.days;
    let simulator = tokio::spawn(async move {
        live::run(Simulation::new(sim), opts, &Progress::new(days, false)).await
    });
    wait_until(
        Duration::from_secs(120),
        "a third of the stream stored",
        || async { n(&pool, "SELECT count(*) FROM samples").await > expect.samples / 3 },
    )
    .await;
    service.kill();
    let at_kill = n(&pool, "SELECT count(*) FROM samples").await;
    step(&format!(
        "killed mid-stream at {at_kill} of {} samples",
        expect.samples
    ));
    assert!(at_kill < expect.samples, "killed mid-stream");
    let service = ServiceProcess::start_at(&db.url, &broker.url(), client_id, port, &env).await;
    let report = simulator
        .await
        .expect("simulator task")
        .expect("simulator run");
    step("simulator done");
    let s = &report.summary;
    assert_eq!(
        (s.messages, s.samples, s.values, s.dtc_reports),
        (
            expect.messages,
            expect.samples,
            expect.values,
            expect.dtc_reports
        ),
        "the live run published the whole simulation"
    );
    assert_eq!(report.publish.sent, s.messages);
    assert_eq!(report.publish.acked, s.messages, "the broker took it all");
    assert!(s.duplicates > 0 && s.dead_letters_expected > 0, "{s}");

    // Every published message stored exactly once, duplicates and redeliveries included.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while stored(&pool).await != want(s) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // (samples, values, DTC reports, DTC entries, dead letters, service records)
    assert_eq!(stored(&pool).await, want(s));
    rollup_settled(&pool).await;
    assert_rollup_matches_raw(&pool).await;
    step("stream stored exactly once");
    assert_eq!(n(&pool, "SELECT count(*) FROM vehicle_profiles").await, 60);

    // 2. Scores cross the policy's thresholds and become offers.
    wait_until(
        Duration::from_secs(180),
        "scoring settled with offers made",
        || async {
            n(
                &pool,
                "SELECT count(*) FROM score_dirty WHERE released_at IS NULL",
            )
            .await
                == 0
                && n(&pool, "SELECT count(*) FROM offers").await >= 3
        },
    )
    .await;
    // Scored with the committed model.
    step("offers made");
    let versions: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT model_version FROM risk_current")
            .fetch_all(&pool)
            .await
            .expect("model versions");
    let artifact: Value =
        serde_json::from_slice(&std::fs::read(MODEL).expect("read model")).expect("model JSON");
    assert_eq!(versions, [artifact["version"].as_str().expect("version")]);
    assert_eq!(
        n(
            &pool,
            &format!(
                "SELECT count(*) FROM offers WHERE model_version <> '{}'",
                versions[0]
            )
        )
        .await,
        0
    );

    // 3. The receiver goes down; an advisor books offers through the API.
    receiver.up.store(false, Ordering::SeqCst);
    let http = reqwest::Client::new();
    let listed: Value = http
        .get(format!("{base}/v1/offers?limit=100"))
        .bearer_auth(&advisor)
        .send()
        .await
        .expect("list offers")
        .json()
        .await
        .expect("offers JSON");
    let offers = listed["offers"].as_array().cloned().unwrap_or_default();
    assert!(offers.len() >= 3, "{listed}");
    let mut bookings = Vec::new();
    for offer in offers.iter().take(ACCEPTS) {
        if let Some(b) = accept(&http, &base, &advisor, offer).await {
            assert_eq!(b["offer_id"], offer["id"]);
            assert!(b["bay"].as_str().is_some_and(|x| !x.is_empty()), "{b}");
            assert!(b["technician"].as_str().is_some_and(|x| !x.is_empty()));
            assert!(b["work_order"].as_str().is_some_and(|x| !x.is_empty()));
            bookings.push(b);
        }
    }
    assert!(bookings.len() >= 3, "booked {} offers", bookings.len());
    step(&format!(
        "booked {} of {} offers",
        bookings.len(),
        offers.len()
    ));
    let booking_ids: BTreeSet<i64> = bookings.iter().filter_map(|b| b["id"].as_i64()).collect();

    // Killed while the booking webhooks wait for the receiver.
    wait_until(Duration::from_secs(30), "webhooks refused", || async {
        receiver.refused.load(Ordering::SeqCst) > 0
    })
    .await;
    let pending = n(
        &pool,
        "SELECT count(*) FROM outbox WHERE channel = 'webhook' AND kind = 'booking.created'
           AND delivered_at IS NULL",
    )
    .await;
    assert!(pending > 0, "booking webhooks pending at the kill");
    service.kill();
    let service = ServiceProcess::start_at(&db.url, &broker.url(), client_id, port, &env).await;
    receiver.up.store(true, Ordering::SeqCst);
    step("restarted with booking webhooks pending");

    // 4. After the restart everything is delivered and nothing is lost or doubled.
    wait_until(
        Duration::from_secs(120),
        "every event delivered",
        || async {
            n(
                &pool,
                "SELECT count(*) FROM outbox WHERE delivered_at IS NULL",
            )
            .await
                == 0
        },
    )
    .await;
    let kinds: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT channel, kind, count(*), sum(attempts)::int8 FROM outbox GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(&pool)
    .await
    .expect("outbox summary");
    step(&format!(
        "every event delivered (channel, kind, events, attempts): {kinds:?}; {} webhook deliveries accepted",
        receiver.seen.lock().expect("receiver lock").len()
    ));
    // Silent-vehicle alarms may still be raised as the last samples age past 48 hours, so
    // the receivers are checked against what was delivered (a delivered row was received
    // before its commit) and against every key written (nothing unknown arrives).
    let keys = |channel: &'static str, delivered_only: bool| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT event_key FROM outbox
                 WHERE channel = $1 AND (delivered_at IS NOT NULL OR NOT $2)",
            )
            .bind(channel)
            .bind(delivered_only)
            .fetch_all(&pool)
            .await
            .expect("outbox keys")
            .into_iter()
            .collect::<BTreeSet<String>>()
        }
    };
    let delivered = keys("webhook", true).await;
    let seen = receiver.seen.lock().expect("receiver lock").clone();
    let written = keys("webhook", false).await;
    let mut per_key: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for (k, p) in &seen {
        per_key.entry(k.as_str()).or_default().push(p);
    }
    let received: BTreeSet<String> = per_key.keys().map(|k| k.to_string()).collect();
    let missing: Vec<&String> = delivered.difference(&received).collect();
    assert!(
        missing.is_empty(),
        "delivered but never received: {missing:?}"
    );
    let unknown: Vec<&String> = received.difference(&written).collect();
    assert!(unknown.is_empty(), "received unknown keys: {unknown:?}");
    for (k, ps) in &per_key {
        assert!(
            ps.iter().all(|p| p["data"] == ps[0]["data"]),
            "{k}: a repeat carries the same event"
        );
    }
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
    for b in &bookings {
        let key = format!("booking.created:{}", b["id"]);
        assert!(received.contains(&key), "{key} announced");
    }

    // Offers on the vehicles' MQTT topics: every delivered MQTT event, on its vehicle's topic.
    let delivered = keys("mqtt", true).await;
    let mqtt_ids = || -> BTreeSet<String> {
        mqtt.lock()
            .expect("subscriber lock")
            .iter()
            .filter_map(|(_, p)| p["id"].as_str().map(str::to_owned))
            .collect()
    };
    wait_until(Duration::from_secs(30), "MQTT events received", || {
        let got = mqtt_ids();
        let all = delivered.is_subset(&got);
        async move { all }
    })
    .await;
    let written = keys("mqtt", false).await;
    assert!(mqtt_ids().is_subset(&written), "only known events on MQTT");
    let offer_vins: BTreeSet<String> =
        sqlx::query_scalar("SELECT v.vin FROM offers o JOIN vehicles v ON v.id = o.vehicle_id")
            .fetch_all(&pool)
            .await
            .expect("offer VINs")
            .into_iter()
            .collect();
    let mut offered_on_mqtt = BTreeSet::new();
    for (topic, p) in mqtt.lock().expect("subscriber lock").iter() {
        let vin = p["vin"].as_str().expect("event VIN");
        assert_eq!(topic, &format!("v1/vehicles/{vin}/offers"));
        if p["kind"] == "offer.created" {
            offered_on_mqtt.insert(vin.to_owned());
        }
    }
    assert_eq!(
        offered_on_mqtt, offer_vins,
        "each offer reached its vehicle"
    );

    // Bookings survived the kill, each with its work order, none overlapping.
    let live_bookings: BTreeSet<i64> =
        sqlx::query_scalar("SELECT id FROM bookings WHERE status = 'booked'")
            .fetch_all(&pool)
            .await
            .expect("bookings")
            .into_iter()
            .collect();
    assert_eq!(live_bookings, booking_ids);
    assert_eq!(
        n(
            &pool,
            "SELECT count(*) FROM work_orders w JOIN bookings b ON b.id = w.booking_id
             WHERE w.status = 'open'"
        )
        .await,
        booking_ids.len() as u64
    );
    assert_eq!(
        n(
            &pool,
            "SELECT count(*) FROM bookings a JOIN bookings b ON a.id < b.id
               AND (a.bay_id = b.bay_id OR a.technician_id = b.technician_id)
               AND a.during && b.during"
        )
        .await,
        0,
        "no bay or technician double-booked"
    );
    assert_eq!(
        n(&pool, "SELECT count(*) FROM offers WHERE state = 'booked'").await,
        booking_ids.len() as u64
    );
    for b in &bookings {
        let state: String = sqlx::query_scalar("SELECT state FROM offers WHERE id = $1")
            .bind(b["offer_id"].as_i64())
            .fetch_one(&pool)
            .await
            .expect("offer");
        assert_eq!(state, "booked");
    }
    // Every other offer was announced, so it is notified; none was made twice.
    assert_eq!(
        n(
            &pool,
            "SELECT count(*) FROM offers WHERE state NOT IN ('booked', 'notified')"
        )
        .await,
        0
    );
    assert_eq!(
        n(
            &pool,
            "SELECT count(*) FROM (SELECT 1 FROM offers GROUP BY vehicle_id, component
                                   HAVING count(*) > 1) d"
        )
        .await,
        0,
        "one offer per vehicle and component"
    );
    // And the stream's tables are still exact after the second crash.
    assert_eq!(stored(&pool).await, want(s));
    service.kill();
}
