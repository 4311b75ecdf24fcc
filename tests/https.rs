//! The native HTTPS listener: the API and the web console (headless Chromium) over HTTPS
//! beside a plain listener for a proxy, a certificate renewed on disk served without a
//! restart, bad TLS configuration refused at start-up in one line, and no secret in the
//! service's whole (trace-level) log, its metrics or its configuration dump.

mod booking_common;
mod common;

use aftercare::store::keys::{self, Scope};
use common::browser::Browser;
use common::tls::*;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Puts `<name>.pem`/`.key` of `pki` at `dir/api.pem` and `dir/api.key`, each by a rename.
fn install_pair(pki: &Pki, name: &str, dir: &Path, files: &[&str]) {
    let (cert, key) = pki.pair(name);
    for (from, to) in [(cert, "api.pem"), (key, "api.key")] {
        if !files.contains(&to) {
            continue;
        }
        let tmp = dir.join(format!("{to}.new"));
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, dir.join(to)).unwrap();
    }
}

struct Https {
    service: aftercare::service::RunningService,
    pki: Pki,
    dir: tempfile::TempDir,
    key: String,
    pool: sqlx::PgPool,
    _db: TestDb,
}

impl Https {
    fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.service.http_addr.port())
    }
}

/// The service (API and console, no ingest) over HTTPS with the PKI's server certificate,
/// a plain listener beside it, and three vehicles at risk.
async fn https_service() -> Https {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    booking_common::load_demo_workshops(&pool).await;
    for i in 0..3 {
        let id = booking_common::vehicle(&pool, &booking_common::vin(i)).await;
        booking_common::profile(&pool, id, Some("WS-01"), true).await;
        let p = 0.9 - 0.2 * i as f32;
        booking_common::score(&pool, id, "brakes", [p / 2.0, p, p], Some(10.0)).await;
    }
    let key = keys::create(&pool, "https", &[Scope::Admin]).await.unwrap();
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    install_pair(&pki, "server", dir.path(), &["api.pem", "api.key"]);
    let mut c = config(&db.url, "mqtt://127.0.0.1:1", "https-test");
    c.ingest.enabled = false;
    c.offers.enabled = false;
    c.notify.mqtt = false;
    c.http.tls_cert_file = Some(dir.path().join("api.pem"));
    c.http.tls_key_file = Some(dir.path().join("api.key"));
    c.http.plain_addr = Some("127.0.0.1:0".parse().unwrap());
    let service = aftercare::service::start(c).await.unwrap();
    Https {
        service,
        pki,
        dir,
        key,
        pool,
        _db: db,
    }
}

/// Chromium's flag value trusting exactly the key of `key_file`: base64(SHA-256(SPKI)).
fn spki_pin(key_file: &Path) -> String {
    use base64::Engine;
    use sha2::Digest;
    let pem = std::fs::read_to_string(key_file).unwrap();
    let key = rcgen::KeyPair::from_pem(&pem).unwrap();
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(key.public_key_der()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_the_console_are_served_over_https_beside_a_plain_listener() {
    let s = https_service().await;
    let client = https_client(&s.pki.ca());
    let get = |path: &str, key: Option<&str>| {
        let mut req = client.get(format!("{}{path}", s.base()));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        req.send()
    };
    assert_eq!(get("/healthz", None).await.unwrap().status(), 200);
    let unauthorized = get("/v1/fleet/risk", None).await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    let body: Value = unauthorized.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let ranked: Value = get("/v1/fleet/risk?limit=10", Some(&s.key))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let vins: Vec<String> = ranked["vehicles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["vin"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(vins.len(), 3);
    // The HTTPS port speaks nothing but TLS; the plain listener is plain HTTP.
    let plain_to_tls = reqwest::get(format!("http://{}/healthz", s.service.http_addr)).await;
    assert!(plain_to_tls.is_err(), "{plain_to_tls:?}");
    let plain = s.service.plain_http_addr.expect("a plain listener");
    let answer = reqwest::get(format!("http://{plain}/healthz"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    // The console in Chromium, trusting the server's key, over HTTPS.
    let pin = spki_pin(&s.dir.path().join("api.key"));
    let browser =
        Browser::start_with(&[format!("--ignore-certificate-errors-spki-list={pin}")]).await;
    browser.goto(&format!("{}/console/", s.base())).await;
    browser
        .wait_for("login form", "return !!document.getElementById('api-key')")
        .await;
    browser.type_into("#api-key", &s.key).await;
    browser.click("#login-submit").await;
    browser.wait_rendered("page-fleet").await;
    assert_eq!(
        browser.eval("return location.protocol", json!([])).await,
        json!("https:")
    );
    assert_eq!(browser.texts("#fleet-rows tr td:nth-child(2)").await, vins);
    browser.screenshot("https-fleet").await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
    s.service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_renewed_on_disk_is_served_without_a_restart() {
    let s = https_service().await;
    let (port, ca) = (s.service.http_addr.port(), s.pki.ca());
    let first = cert_der(&s.dir.path().join("api.pem"));
    assert_eq!(served_certificate(port, &ca).await.unwrap(), first);
    s.pki.certs(&[
        "service",
        "--name",
        "renewed",
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
    ]);
    let renewed = cert_der(&s.pki.pair("renewed").0);
    assert_ne!(renewed, first);
    // The new certificate alone does not match the key in place: the old pair stays.
    install_pair(&s.pki, "renewed", s.dir.path(), &["api.pem"]);
    assert_eq!(served_certificate(port, &ca).await.unwrap(), first);
    // With its key, the renewed pair is served from the next handshake on.
    install_pair(&s.pki, "renewed", s.dir.path(), &["api.key"]);
    assert_eq!(served_certificate(port, &ca).await.unwrap(), renewed);
    let health = https_client(&ca)
        .get(format!("{}/healthz", s.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    s.service.shutdown().await.unwrap();
    drop(s.pool);
}

/// `aftercare serve` with only `env` (and PATH); returns its exit status and stderr.
fn serve_fails(env: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_aftercare"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AFTERCARE_LOG_FILTER", "warn")
        .env("AFTERCARE_HTTP_ADDR", "127.0.0.1:0")
        .envs(env.iter().copied())
        .output()
        .expect("run aftercare serve");
    assert!(!out.status.success(), "{env:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn bad_tls_configuration_is_one_clear_line_at_start_up() {
    let pki = Pki::new();
    let (cert, key) = pki.pair("server");
    let (_, other_key) = pki.pair("aftercare");
    let p = |p: &PathBuf| p.display().to_string();
    let (cert, key, other_key) = (p(&cert), p(&key), p(&other_key));
    // (environment, what the one line must say)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 6] = [
        (
            &[
                ("AFTERCARE_HTTP_TLS_CERT_FILE", &cert),
                ("AFTERCARE_HTTP_TLS_KEY_FILE", "/nonexistent/api.key"),
            ],
            &[
                "http.tls_key_file /nonexistent/api.key: cannot read",
                "No such file",
            ],
        ),
        (
            &[
                ("AFTERCARE_HTTP_TLS_CERT_FILE", &cert),
                ("AFTERCARE_HTTP_TLS_KEY_FILE", &other_key),
            ],
            &["do not belong together", "the key is not the certificate's"],
        ),
        (
            &[("AFTERCARE_HTTP_TLS_CERT_FILE", &cert)],
            &["http.tls_cert_file and http.tls_key_file must be given together"],
        ),
        (
            &[(
                "AFTERCARE_DATABASE_URL",
                "postgres://postgres@127.0.0.1/aftercare?sslmode=verify-everything",
            )],
            &["unknown sslmode \"verify-everything\""],
        ),
        (
            &[
                ("AFTERCARE_MQTT_URL", "mqtts://127.0.0.1:8883"),
                ("AFTERCARE_MQTT_CA_FILE", "/nonexistent/ca.pem"),
            ],
            &["mqtt.ca_file /nonexistent/ca.pem: cannot read"],
        ),
        (
            &[
                ("AFTERCARE_MQTT_URL", "mqtt://127.0.0.1:1883"),
                ("AFTERCARE_MQTT_CERT_FILE", &cert),
                ("AFTERCARE_MQTT_KEY_FILE", &key),
            ],
            &["need a TLS url (mqtts://)"],
        ),
    ];
    for (env, expected) in cases {
        let stderr = serve_fails(env);
        assert_eq!(stderr.lines().count(), 1, "one line for {env:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        for part in expected {
            assert!(stderr.contains(part), "{env:?}: {stderr}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_log_the_metrics_or_the_config_dump() {
    let pki = Pki::new();
    let pg = TlsPostgres::start(&pki).await;
    let broker = TestBroker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = |name: &str, value: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{value}\n")).unwrap();
        path.display().to_string()
    };
    let (mqtt_password, webhook_secret) = ("mqtt-pw-93b1f0c7d2", "hook-key-5e08a7c1b4");
    let files = [
        secret_file("db-password", PG_PASSWORD),
        secret_file("mqtt-password", mqtt_password),
        secret_file("webhook-secret", webhook_secret),
    ];
    // A webhook receiver over HTTPS that checks each signature with the secret.
    let hooks = std::sync::Arc::new(std::sync::Mutex::new(Vec::<bool>::new()));
    let seen = hooks.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let hook = read_webhook(webhook_secret, &headers, &body);
                    seen.lock().unwrap().push(hook.signed);
                    axum::http::StatusCode::NO_CONTENT
                }
            },
        ),
    );
    let (server_cert, server_key) = pki.pair("server");
    let hook_port = serve_https(app, &server_cert, &server_key).await;
    let db_url = pg.url(
        "127.0.0.1",
        "aftercare",
        "aftercare",
        &format!("sslmode=verify-full&sslrootcert={}", pki.ca().display()),
    );
    let http_port = free_port();
    let (ca, cert, key) = (
        pki.ca().display().to_string(),
        server_cert.display().to_string(),
        server_key.display().to_string(),
    );
    let hook_url = format!("https://127.0.0.1:{hook_port}/hook");
    let http_addr = format!("127.0.0.1:{http_port}");
    let broker_url = broker.url();
    let env: Vec<(&str, &str)> = vec![
        ("AFTERCARE_DATABASE_URL", &db_url),
        ("AFTERCARE_DATABASE_PASSWORD_FILE", &files[0]),
        ("AFTERCARE_MQTT_URL", &broker_url),
        ("AFTERCARE_MQTT_CLIENT_ID", "secrets-test"),
        ("AFTERCARE_MQTT_USERNAME", "aftercare"),
        ("AFTERCARE_MQTT_PASSWORD_FILE", &files[1]),
        ("AFTERCARE_NOTIFY_WEBHOOK_URL", &hook_url),
        ("AFTERCARE_NOTIFY_WEBHOOK_SECRET_FILE", &files[2]),
        ("AFTERCARE_NOTIFY_WEBHOOK_CA_FILE", &ca),
        ("AFTERCARE_NOTIFY_INTERVAL_MS", "100"),
        ("AFTERCARE_OFFERS_INTERVAL_MS", "200"),
        ("AFTERCARE_HTTP_ADDR", &http_addr),
        ("AFTERCARE_HTTP_TLS_CERT_FILE", &cert),
        ("AFTERCARE_HTTP_TLS_KEY_FILE", &key),
        ("AFTERCARE_LOG_FILTER", "trace"),
    ];
    let aftercare = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_aftercare"))
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let mut log = String::new();
    log += &aftercare(&["migrate"]).1;
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/workshops.toml");
    log += &aftercare(&["workshops", "load", seed]).1;
    let (api_key, stderr) = aftercare(&["keys", "create", "--name", "ops", "--scope", "admin"]);
    let api_key = api_key.trim().to_owned();
    log += &stderr;
    // A vehicle at risk, so an offer goes out as a signed webhook.
    let pool = aftercare::store::pool(
        &db_url.replacen("aftercare@", &format!("aftercare:{PG_PASSWORD}@"), 1),
        2,
    )
    .await
    .unwrap();
    let id = booking_common::vehicle(&pool, &booking_common::vin(0)).await;
    booking_common::profile(&pool, id, Some("WS-01"), true).await;
    booking_common::score(&pool, id, "brakes", [0.2, 0.8, 0.9], Some(15.0)).await;

    let log_path = dir.path().join("serve.log");
    let mut service = Command::new(env!("CARGO_BIN_EXE_aftercare"))
        .arg("serve")
        .env_clear()
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    wait_for_port(http_port, Duration::from_secs(30)).await;
    let client = https_client(&pki.ca());
    let base = format!("https://127.0.0.1:{http_port}");
    let vin = booking_common::vin(0);
    for (key, status) in [(api_key.as_str(), 200), ("ac_wrong_key", 401)] {
        let r = client
            .get(format!("{base}/v1/vehicles/{vin}"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
    }
    let body = sample_now(1, json!({"Vehicle.Speed": 3.0}));
    let topic = format!("v1/vehicles/{vin}/telemetry");
    publish(&broker, "car", owned(&[(&topic, &body)])).await;
    wait_until(Duration::from_secs(30), "a signed webhook", || async {
        hooks.lock().unwrap().iter().any(|signed| *signed)
    })
    .await;
    let metrics_text = || async {
        let r = client.get(format!("{base}/metrics")).send().await.unwrap();
        r.text().await.unwrap()
    };
    wait_until(Duration::from_secs(30), "the message stored", || async {
        metric(
            &metrics_text().await,
            "aftercare_ingest_messages_total",
            "stored",
        ) >= 1.0
    })
    .await;
    let metrics = metrics_text().await;
    let _ = service.kill();
    let _ = service.wait();
    log += &std::fs::read_to_string(&log_path).unwrap();
    let (dump, _) = aftercare(&["config"]);

    // The log is the verbose one, and it shows the work done with each secret.
    assert!(log.contains("TRACE"), "a trace-level log");
    assert!(log.contains("listening (HTTPS)"));
    let key_pem = std::fs::read_to_string(&server_key).unwrap();
    let key_body: Vec<&str> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for (what, secret) in [
        ("database password", PG_PASSWORD),
        ("MQTT password", mqtt_password),
        ("webhook secret", webhook_secret),
        ("API key", api_key.as_str()),
        ("TLS private key", key_body[1]),
    ] {
        assert!(!log.contains(secret), "the {what} is in the log");
        assert!(!metrics.contains(secret), "the {what} is in /metrics");
        assert!(!dump.contains(secret), "the {what} is in the config dump");
    }
    assert!(
        dump.contains("password = \"[redacted]\"")
            && dump.contains("webhook_secret = \"[redacted]\""),
        "{dump}"
    );
    drop(pg);
}
