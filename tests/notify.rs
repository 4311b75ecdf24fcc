//! Notifications end to end, with a real HTTP receiver (axum, in the test) and a real MQTT
//! subscriber: webhooks are signed, carry an idempotency key and are retried with backoff;
//! offers reach `v1/vehicles/{vin}/offers`; a service killed mid-delivery and restarted
//! loses none and every repeat carries the key already seen. Accepting through the API of
//! the restarted service books and notifies.

mod booking_common;
mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use booking_common::*;
use common::*;
use serde_json::Value;
use sqlx::PgPool;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "test-webhook-secret";

#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    /// Answer 500 to this many requests first.
    fail_first: Arc<Mutex<usize>>,
    delay_ms: u64,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let hook = read_webhook(SECRET, &headers, &body);
    assert!(hook.signed, "bad signature");
    let payload: Value = hook.payload.expect("a JSON body");
    assert_eq!(payload["id"], hook.key, "idempotency key is the event id");
    tokio::time::sleep(Duration::from_millis(r.delay_ms)).await;
    {
        let mut fail = r.fail_first.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    r.seen.lock().unwrap().push((hook.key, payload));
    StatusCode::NO_CONTENT
}

async fn start_receiver(r: Receiver) -> u16 {
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r);
    serve_on_free_port(app).await
}

async fn at_risk_fleet(pool: &PgPool, n: usize) {
    for i in 0..n {
        let v = vehicle(pool, &vin(i)).await;
        let home = format!("WS-0{}", 1 + i % 5);
        profile(pool, v, Some(&home), true).await;
        score(pool, v, "brakes", [0.2, 0.8, 0.9], Some(15.0)).await;
    }
}

async fn delivered_everything(pool: &PgPool) -> bool {
    count(
        pool,
        "SELECT count(*) FROM outbox WHERE delivered_at IS NULL",
    )
    .await
        == 0
        && count(pool, "SELECT count(*) FROM outbox").await > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_and_retried_and_offers_reach_the_vehicle_topic() {
    let api = api().await;
    let broker = TestBroker::start().await;
    at_risk_fleet(&api.pool, 6).await;
    let receiver = Receiver {
        fail_first: Arc::new(Mutex::new(3)),
        ..Receiver::default()
    };
    let port = start_receiver(receiver.clone()).await;
    let mqtt = offers_subscriber(&broker, "offers-subscriber").await;
    let mut c = config(&api.db.url, &broker.url(), "notify-test");
    c.ingest.enabled = false;
    c.offers.interval_ms = 200;
    c.notify.webhook_url = format!("http://127.0.0.1:{port}/hook");
    c.notify.webhook_secret = SECRET.into();
    c.notify.interval_ms = 50;
    c.notify.retry_base_ms = 100;
    let service = aftercare::service::start(c).await.unwrap();
    wait_until(Duration::from_secs(30), "every event delivered", || {
        delivered_everything(&api.pool)
    })
    .await;
    wait_until(Duration::from_secs(10), "MQTT offers", || async {
        mqtt.lock().unwrap().len() >= 6
    })
    .await;
    service.shutdown().await.unwrap();

    let seen = receiver.seen.lock().unwrap().clone();
    let keys: BTreeSet<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), 6, "six offers, one webhook each");
    assert_eq!(seen.len(), 6, "accepted once each");
    assert!(seen.iter().all(|(_, p)| p["kind"] == "offer.created"));
    // The first three attempts were refused and retried with backoff.
    let retried = count(
        &api.pool,
        "SELECT count(*) FROM outbox WHERE channel = 'webhook' AND attempts > 1",
    )
    .await;
    assert!(retried >= 1, "a refused delivery was retried");
    assert_eq!(
        count(
            &api.pool,
            "SELECT count(*) FROM offers WHERE state = 'notified'"
        )
        .await,
        6,
        "delivered offers are notified"
    );
    // Each offer on its vehicle's topic, with the same event id.
    let got = mqtt.lock().unwrap().clone();
    let mqtt_ids: BTreeSet<&str> = got.iter().map(|(_, p)| p["id"].as_str().unwrap()).collect();
    assert_eq!(mqtt_ids, keys);
    for (topic, p) in &got {
        assert_eq!(
            *topic,
            format!("v1/vehicles/{}/offers", p["vin"].as_str().unwrap())
        );
        assert_eq!(p["data"]["windows"].as_array().unwrap().len(), 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_delivery_loses_nothing_and_repeats_only_known_keys() {
    let api = api().await;
    let broker = TestBroker::start().await;
    at_risk_fleet(&api.pool, 30).await;
    let receiver = Receiver {
        delay_ms: 60,
        ..Receiver::default()
    };
    let port = start_receiver(receiver.clone()).await;
    let url = format!("http://127.0.0.1:{port}/hook");
    let env = [
        ("AFTERCARE_INGEST_ENABLED", "false"),
        ("AFTERCARE_OFFERS_INTERVAL_MS", "200"),
        ("AFTERCARE_NOTIFY_INTERVAL_MS", "50"),
        ("AFTERCARE_NOTIFY_RETRY_BASE_MS", "100"),
        ("AFTERCARE_NOTIFY_WEBHOOK_URL", url.as_str()),
        ("AFTERCARE_NOTIFY_WEBHOOK_SECRET", SECRET),
    ];
    let first = ServiceProcess::start(&api.db.url, &broker.url(), "crash-test", &env).await;
    // Kill it (SIGKILL) once a third of the webhooks are through: mid-batch.
    let seen = receiver.seen.clone();
    wait_until(Duration::from_secs(30), "deliveries under way", || async {
        seen.lock().unwrap().len() >= 10
    })
    .await;
    first.kill();
    let before = receiver.seen.lock().unwrap().len();
    assert!(before < 30, "killed before it finished ({before})");
    let second = ServiceProcess::start(&api.db.url, &broker.url(), "crash-test", &env).await;
    wait_until(Duration::from_secs(60), "every event delivered", || {
        delivered_everything(&api.pool)
    })
    .await;

    let events: BTreeSet<String> =
        sqlx::query_scalar("SELECT event_key FROM outbox WHERE channel = 'webhook'")
            .fetch_all(&api.pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(events.len(), 30);
    let seen = receiver.seen.lock().unwrap().clone();
    let mut per_key: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for (k, p) in &seen {
        per_key.entry(k.as_str()).or_default().push(p);
    }
    let received: BTreeSet<String> = per_key.keys().map(|k| k.to_string()).collect();
    assert_eq!(received, events, "nothing lost");
    // A repeat (the batch in flight at the kill) carries the same key and the same event.
    for (k, ps) in &per_key {
        assert!(ps.len() <= 2, "{k} delivered {} times", ps.len());
        assert!(
            ps.iter().all(|p| p["data"] == ps[0]["data"]),
            "{k}: same event each time"
        );
    }
    let effects: BTreeSet<&str> = per_key.keys().copied().collect();
    assert_eq!(
        effects.len(),
        30,
        "a receiver deduplicating on the key acts once per event"
    );

    // The restarted service books through its API and announces the booking.
    let pool = api.pool.clone();
    let offer: (i64, Value) = sqlx::query_as("SELECT id, windows FROM offers ORDER BY id LIMIT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    let window = &offer.1[0];
    let resp = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/v1/offers/{}/accept",
            second.http_port, offer.0
        ))
        .bearer_auth(&api.advisor)
        .json(&serde_json::json!({"start": window["start"], "workshop": window["workshop"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let booking: Value = resp.json().await.unwrap();
    let key = format!("booking.created:{}", booking["id"]);
    let seen = receiver.seen.clone();
    wait_until(Duration::from_secs(20), "booking webhook", || {
        let key = key.clone();
        let seen = seen.clone();
        async move { seen.lock().unwrap().iter().any(|(k, _)| *k == key) }
    })
    .await;
    second.kill();
}

/// Replaces `to`'s certificate and key with `from`'s, each by a rename (as a renewal does).
fn swap_pair(
    (from_cert, from_key): &(std::path::PathBuf, std::path::PathBuf),
    dir: &std::path::Path,
) {
    for (from, name) in [(from_cert, "hook.pem"), (from_key, "hook.key")] {
        let tmp = dir.join(format!("{name}.new"));
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_webhooks_are_verified_and_an_untrusted_receiver_is_retried_never_delivered() {
    use common::tls::{serve_https, Pki};
    let api = api().await;
    at_risk_fleet(&api.pool, 4).await;
    let (fleet_pki, stranger) = (Pki::new(), Pki::new());
    // The receiver starts with a certificate of a CA the service does not trust; its files
    // are then renewed with one the service's webhook CA signed, without a restart.
    let dir = tempfile::tempdir().unwrap();
    swap_pair(&stranger.pair("server"), dir.path());
    let receiver = Receiver::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receiver.clone());
    let port = serve_https(
        app,
        &dir.path().join("hook.pem"),
        &dir.path().join("hook.key"),
    )
    .await;
    let mut c = config(&api.db.url, "mqtt://127.0.0.1:1", "notify-https");
    c.ingest.enabled = false;
    c.notify.mqtt = false;
    c.offers.interval_ms = 200;
    c.notify.webhook_url = format!("https://127.0.0.1:{port}/hook");
    c.notify.webhook_secret = SECRET.into();
    c.notify.webhook_ca_file = Some(fleet_pki.ca());
    c.notify.interval_ms = 50;
    c.notify.retry_base_ms = 100;
    c.notify.retry_max_ms = 400;
    let service = aftercare::service::start(c).await.unwrap();

    // Refused at the handshake, retried, never marked delivered; the receiver saw nothing.
    wait_until(Duration::from_secs(30), "repeated refusals", || async {
        count(
            &api.pool,
            "SELECT count(*) FROM outbox WHERE channel = 'webhook' AND attempts >= 3 \
             AND last_error LIKE '%invalid peer certificate%'",
        )
        .await
            >= 1
    })
    .await;
    assert_eq!(
        count(
            &api.pool,
            "SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL"
        )
        .await,
        0
    );
    assert!(receiver.seen.lock().unwrap().is_empty());

    // Renewed with a trusted certificate: everything goes through, once each, signed.
    swap_pair(&fleet_pki.pair("server"), dir.path());
    wait_until(
        Duration::from_secs(30),
        "every webhook delivered",
        || async {
            count(
                &api.pool,
                "SELECT count(*) FROM outbox WHERE channel = 'webhook' AND delivered_at IS NULL",
            )
            .await
                == 0
        },
    )
    .await;
    service.shutdown().await.unwrap();
    let seen = receiver.seen.lock().unwrap().clone();
    let keys: BTreeSet<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(seen.len(), 4, "four offers, delivered once each");
    assert_eq!(keys.len(), 4);
}

#[tokio::test]
async fn plain_http_webhooks_go_only_to_loopback_unless_allowed() {
    let load = |url: &str, allow: bool| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            format!(
                "[notify]\nwebhook_url = {url:?}\nwebhook_secret = \"s\"\nwebhook_allow_http = {allow}\n"
            ),
        )
        .unwrap();
        aftercare::config::Config::load(Some(&file)).map(|_| ())
    };
    assert!(load("http://127.0.0.1:9000/hook", false).is_ok());
    assert!(load("http://localhost:9000/hook", false).is_ok());
    assert!(load("https://hooks.example/x", false).is_ok());
    let err = load("http://hooks.example/x", false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("http:// only to a loopback address"), "{err}");
    assert!(load("http://hooks.example/x", true).is_ok());
    assert!(load("ftp://hooks.example/x", true).is_err());
}
