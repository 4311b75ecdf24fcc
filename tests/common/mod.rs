//! Test harness: real PostgreSQL (a fresh database per test, cloned from a migrated template),
//! a private Mosquitto per test with the project's broker settings, a TCP path to PostgreSQL
//! that can be cut, and the service in-process or as a child process.
#![allow(dead_code)]

pub mod browser;
pub mod tls;

use aftercare::config::Config;
use aftercare::simulator::{publish_all, PublishStats};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection, PgPool};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn admin_url() -> String {
    std::env::var("AFTERCARE_TEST_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The `aftercare` binary, without the test harness's own settings in its environment (the
/// service refuses `AFTERCARE_*` variables that name no setting).
pub fn cli() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aftercare"));
    cmd.env_remove("AFTERCARE_TEST_ADMIN_URL");
    cmd
}

/// The flavour a new database gets on the test server (plain here; TimescaleDB where the
/// suite is pointed at one with `AFTERCARE_TEST_ADMIN_URL`).
pub async fn server_flavor() -> aftercare::store::Flavor {
    let mut admin = PgConnection::connect(&admin_url())
        .await
        .expect("connect to PostgreSQL");
    aftercare::store::ServerCapabilities::read(&mut admin)
        .await
        .expect("read the server's capabilities")
        .choose()
        .0
}

/// Host and port of the test server (`AFTERCARE_TEST_ADMIN_URL`).
pub fn server_addr() -> SocketAddr {
    use std::net::ToSocketAddrs;
    let opts: sqlx::postgres::PgConnectOptions = admin_url().parse().expect("admin URL");
    (opts.get_host(), opts.get_port())
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .expect("the test server's address")
}

/// Connection options as the service makes them (loopback without `sslmode`: plain).
pub fn connect_options(url: &str) -> sqlx::postgres::PgConnectOptions {
    aftercare::store::connect_options(url).expect("a valid database URL")
}

fn url_for(db: &str) -> String {
    let admin = admin_url();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{db}")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A database of its own for one test, dropped afterwards.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let mut admin = PgConnection::connect_with(&connect_options(&admin_url()))
            .await
            .expect("connect to PostgreSQL");
        let digest = Sha256::digest(
            aftercare::store::MIGRATIONS
                .iter()
                .map(|m| m.sql)
                .collect::<String>()
                .as_bytes(),
        );
        let template = format!("aftercare_tmpl_{}", &hex::encode(digest)[..12]);
        sqlx::query("SELECT pg_advisory_lock(hashtext('aftercare.test.template'))")
            .execute(&mut admin)
            .await
            .unwrap();
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&template)
                .fetch_one(&mut admin)
                .await
                .unwrap();
        if !exists {
            sqlx::query(&format!("CREATE DATABASE {template}"))
                .execute(&mut admin)
                .await
                .unwrap();
            let pool = PgPool::connect_with(connect_options(&url_for(&template)))
                .await
                .unwrap();
            aftercare::store::migrate(&pool)
                .await
                .expect("migrate template");
            pool.close().await;
            // Nothing connects to a template any more (TimescaleDB's scheduler would, and a
            // database cannot be copied while anyone is connected to it).
            sqlx::query(&format!(
                "ALTER DATABASE {template} WITH ALLOW_CONNECTIONS false IS_TEMPLATE true"
            ))
            .execute(&mut admin)
            .await
            .unwrap();
        }
        let name = format!("aftercare_test_{}_{}", std::process::id(), rand_suffix());
        let mut attempts = 0;
        loop {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            )
            .bind(&template)
            .execute(&mut admin)
            .await
            .unwrap();
            match sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
                .execute(&mut admin)
                .await
            {
                Ok(_) => break,
                // 55006: the template is being accessed (a connection not gone yet).
                Err(sqlx::Error::Database(e))
                    if e.code().as_deref() == Some("55006") && attempts < 50 =>
                {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("create {name}: {e}"),
            }
        }
        sqlx::query("SELECT pg_advisory_unlock(hashtext('aftercare.test.template'))")
            .execute(&mut admin)
            .await
            .unwrap();
        TestDb {
            url: url_for(&name),
            name,
        }
    }

    pub async fn pool(&self) -> PgPool {
        PgPool::connect_with(connect_options(&self.url))
            .await
            .unwrap()
    }

    /// An empty database of its own (nothing migrated), dropped afterwards.
    pub async fn empty() -> TestDb {
        let mut admin = PgConnection::connect(&admin_url())
            .await
            .expect("connect to PostgreSQL");
        let name = format!("aftercare_test_{}_{}", std::process::id(), rand_suffix());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        TestDb {
            url: url_for(&name),
            name,
        }
    }
}

fn rand_suffix() -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen();
    format!("{n:016x}")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut admin = PgConnection::connect_with(&connect_options(&admin_url()))
                    .await
                    .ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// A private Mosquitto with the project's settings (deploy/mosquitto.conf) on its own port.
pub struct TestBroker {
    pub port: u16,
    /// The TLS listener's port, for a broker from `start_tls`.
    pub tls_port: Option<u16>,
    /// Configuration lines after the project's (a TLS listener).
    extra: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        TestBroker::start_with("", None).await
    }

    /// With `extra` configuration lines after the project's and the plain listener's.
    pub async fn start_with(extra: &str, tls_port: Option<u16>) -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        // Mosquitto started as root drops to its own user; it must be able to write its
        // persistence file and log here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut broker = TestBroker {
            port: free_port(),
            tls_port,
            extra: extra.to_owned(),
            dir,
            child: None,
        };
        broker.launch().await;
        broker
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Connection settings for a plain client of this broker.
    pub fn mqtt_config(&self) -> aftercare::config::MqttConfig {
        aftercare::config::MqttConfig {
            url: self.url(),
            ..Default::default()
        }
    }

    /// The broker's log so far (every packet: `log_type all`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    async fn launch(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        let base = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/mosquitto.conf"
        ))
        .unwrap();
        std::fs::write(
            &conf,
            format!(
                "{base}\nlog_type all\nlistener {} 127.0.0.1\npersistence_location {}/\nlog_dest file {}/broker.log\n{}\n",
                self.port,
                self.dir.path().display(),
                self.dir.path().display(),
                self.extra
            ),
        )
        .unwrap();
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto (scripts/setup.sh installs it)");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10)).await;
    }

    /// Graceful stop (the broker saves its sessions and queues).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, nix::sys::signal::Signal::SIGTERM);
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failing test keeps the broker's log (every packet, `log_type all`) to say
        // whether a missing message ever left the broker.
        if std::thread::panicking() {
            let keep = PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/target/test-broker-logs"
            ));
            if std::fs::create_dir_all(&keep).is_ok() {
                let to = keep.join(format!("broker-{}.log", self.port));
                if std::fs::copy(self.dir.path().join("broker.log"), &to).is_ok() {
                    eprintln!("broker log kept at {}", to.display());
                }
            }
        }
    }
}

fn mosquitto_bin() -> PathBuf {
    for p in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if std::path::Path::new(p).exists() {
            return p.into();
        }
    }
    "mosquitto".into()
}

pub fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig);
}

pub async fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "port {port} did not open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` until it returns true; panics with `what` after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn config(db_url: &str, broker_url: &str, client_id: &str) -> Config {
    let mut c = Config::default();
    c.database.url = db_url.to_owned();
    c.mqtt.url = broker_url.to_owned();
    c.mqtt.client_id = client_id.to_owned();
    c.mqtt.share_group = "aftercare".into();
    c.http.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    // Tests wait for the rollup; fold often.
    c.ingest.rollup_interval_ms = 200;
    c
}

pub async fn publish(
    broker: &TestBroker,
    client_id: &str,
    messages: Vec<(String, Bytes)>,
) -> PublishStats {
    let n = messages.len() as u64;
    let stats = publish_all(&broker.url(), client_id, messages, None)
        .await
        .expect("publish");
    assert_eq!(
        stats.acked, n,
        "broker acknowledged every published message"
    );
    stats
}

pub fn owned(pairs: &[(&str, &[u8])]) -> Vec<(String, Bytes)> {
    pairs
        .iter()
        .map(|(t, p)| (t.to_string(), Bytes::copy_from_slice(p)))
        .collect()
}

/// Sums of a Prometheus counter family in text exposition, filtered by a label fragment.
pub fn metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name)
                && (l[name.len()..].starts_with(' ') || l[name.len()..].starts_with('{'))
        })
        .filter(|l| label.is_empty() || l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The service binary as a child process, configured through the environment.
pub struct ServiceProcess {
    pub child: Child,
    pub http_port: u16,
}

impl ServiceProcess {
    pub async fn start(
        db_url: &str,
        broker_url: &str,
        client_id: &str,
        extra_env: &[(&str, &str)],
    ) -> ServiceProcess {
        Self::start_at(db_url, broker_url, client_id, free_port(), extra_env).await
    }

    /// Like `start`, on a given HTTP port: a restarted service keeps its address, so clients
    /// configured with it (the simulator) reach it again.
    pub async fn start_at(
        db_url: &str,
        broker_url: &str,
        client_id: &str,
        http_port: u16,
        extra_env: &[(&str, &str)],
    ) -> ServiceProcess {
        let mut cmd = cli();
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AFTERCARE_DATABASE_URL", db_url)
            .env("AFTERCARE_MQTT_URL", broker_url)
            .env("AFTERCARE_MQTT_CLIENT_ID", client_id)
            .env("AFTERCARE_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
            .env("AFTERCARE_LOG_FILTER", "warn")
            .env("AFTERCARE_INGEST_ROLLUP_INTERVAL_MS", "200")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start aftercare serve");
        wait_for_port(http_port, Duration::from_secs(30)).await;
        ServiceProcess { child, http_port }
    }

    pub async fn metrics(&self) -> String {
        match reqwest::get(format!("http://127.0.0.1:{}/metrics", self.http_port)).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn rss_kib(&self) -> u64 {
        aftercare::bench::rss_kib(self.child.id())
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP path to PostgreSQL that a test can cut (connections reset, new ones refused) and
/// restore, to make the database unreachable without stopping the shared server.
pub struct CuttablePath {
    pub port: u16,
    target: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl CuttablePath {
    pub async fn new(target: SocketAddr) -> CuttablePath {
        let mut p = CuttablePath {
            port: free_port(),
            target,
            task: None,
        };
        p.restore().await;
        p
    }

    /// The test server's URL for `db_name`, through this path.
    pub fn url_for(&self, db_name: &str) -> String {
        let opts: sqlx::postgres::PgConnectOptions = url_for(db_name).parse().expect("URL");
        let user = opts.get_username();
        match std::env::var("AFTERCARE_TEST_ADMIN_URL")
            .ok()
            .and_then(|u| u.split_once("://").map(|(_, r)| r.to_owned()))
            .and_then(|r| r.split_once('@').map(|(cred, _)| cred.to_owned()))
        {
            Some(cred) => format!("postgres://{cred}@127.0.0.1:{}/{db_name}", self.port),
            None => format!("postgres://{user}@127.0.0.1:{}/{db_name}", self.port),
        }
    }

    pub async fn restore(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let target = self.target;
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    /// Drops the listener and every proxied connection (the JoinSet aborts them).
    pub async fn cut(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

/// A parsed message as the ingest batcher hands it to the store.
pub fn batch_item(
    topic: &str,
    payload: &serde_json::Value,
    now: chrono::DateTime<chrono::Utc>,
) -> aftercare::store::BatchItem {
    let message = aftercare::wire::parse_message(
        topic,
        payload.to_string().as_bytes(),
        now,
        &aftercare::wire::Limits::default(),
    )
    .unwrap();
    aftercare::store::BatchItem::Message {
        message,
        received_at: now,
    }
}

/// (vehicle, signal, day, n of the raw values, n in the rollup)
type RollupMismatch = (
    Option<i32>,
    Option<i32>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

/// Asserts that `signal_daily` equals the daily aggregates of the raw values: every (vehicle,
/// signal, day) present on both sides, n, min and max equal, sum and sum of squares equal up to
/// floating-point summation order (relative 1e-9).
pub async fn assert_rollup_matches_raw(pool: &PgPool) {
    let mismatches: Vec<RollupMismatch> = sqlx::query_as(
        "WITH raw AS (
                 SELECT vehicle_id, signal_id,
                        date_bin(INTERVAL '1 day', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS day,
                        count(*) AS n, min(value) AS min, max(value) AS max,
                        sum(value) AS sum, sum(value * value) AS sumsq
                 FROM telemetry GROUP BY 1, 2, 3)
             SELECT coalesce(r.vehicle_id, d.vehicle_id), coalesce(r.signal_id, d.signal_id),
                    coalesce(r.day, d.day)::text, r.n, d.n
             FROM raw r FULL JOIN signal_daily d
               ON d.vehicle_id = r.vehicle_id AND d.signal_id = r.signal_id AND d.day = r.day
             WHERE r.n IS DISTINCT FROM d.n OR r.min IS DISTINCT FROM d.min
                OR r.max IS DISTINCT FROM d.max
                OR abs(r.sum - d.sum) > 1e-9 * greatest(1, abs(r.sum))
                OR abs(r.sumsq - d.sumsq) > 1e-9 * greatest(1, abs(r.sumsq))
             LIMIT 5",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(
        mismatches.is_empty(),
        "signal_daily differs from the raw values (vehicle, signal, day, raw n, rollup n): {mismatches:?}"
    );
}

/// Waits until every rollup delta is folded. A fold deletes its deltas and adds them into
/// `signal_daily` in one statement, so no delta left means every fold has committed.
pub async fn rollup_settled(pool: &PgPool) {
    wait_until(Duration::from_secs(60), "rollup folded", || async {
        count(pool, "SELECT count(*) FROM rollup_delta").await == 0
    })
    .await;
}

/// Messages an in-process service has handled, by outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Handled {
    pub stored: f64,
    pub duplicate: f64,
    pub dead_letter: f64,
    pub received: f64,
}

/// Waits until the service has handled (committed and acknowledged) at least `n` messages.
pub async fn handled(
    service: &aftercare::service::RunningService,
    n: f64,
    timeout: Duration,
) -> Handled {
    let metrics = service.metrics.clone();
    wait_until(timeout, &format!("{n} messages handled"), || async {
        metric(&metrics.render(), "aftercare_ingest_messages_total", "") >= n
    })
    .await;
    let text = metrics.render();
    let outcome = |o: &str| {
        metric(
            &text,
            "aftercare_ingest_messages_total",
            &format!("outcome=\"{o}\""),
        )
    };
    Handled {
        stored: outcome("stored"),
        duplicate: outcome("duplicate"),
        dead_letter: outcome("dead_letter"),
        received: metric(&text, "aftercare_ingest_received_total", ""),
    }
}

/// Starts the service in-process and waits until it is connected to the broker.
pub async fn start_connected(config: Config) -> aftercare::service::RunningService {
    let service = aftercare::service::start(config).await.unwrap();
    let metrics = service.metrics.clone();
    wait_until(Duration::from_secs(10), "broker connection", || async {
        metrics.mqtt_connected.get() == 1
    })
    .await;
    service
}

/// Subscribes to every vehicle's offers topic; collects (topic, payload) as they arrive.
/// Returns once the broker has acknowledged the subscription.
pub async fn offers_subscriber(
    broker: &TestBroker,
    client_id: &str,
) -> std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>> {
    subscriber(&broker.mqtt_config(), client_id, "v1/vehicles/+/offers").await
}

/// Subscribes to `filter` with the given connection settings; collects (topic, payload) as
/// they arrive. Returns once the broker has acknowledged the subscription.
pub async fn subscriber(
    mqtt: &aftercare::config::MqttConfig,
    client_id: &str,
    filter: &str,
) -> std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>> {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event};
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut opts = aftercare::mqtt::options(mqtt, client_id).expect("subscriber options");
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let sink = got.clone();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    tokio::spawn(async move {
        let _client = client;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let topic = String::from_utf8_lossy(&p.topic).to_string();
                    let v: serde_json::Value =
                        serde_json::from_slice(&p.payload).unwrap_or_default();
                    sink.lock().expect("subscriber lock").push((topic, v));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    subscribed.await.expect("suback");
    got
}

/// A small fleet's last `days` days, with every delivery effect frequent enough to occur.
pub fn recent_fleet(seed: u64, vehicles: usize, days: u32) -> aftercare::simulator::SimConfig {
    let today = chrono::Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    aftercare::simulator::SimConfig {
        seed,
        vehicles,
        workshops: 5,
        start: today - chrono::Duration::days(i64::from(days)),
        days,
        realism: aftercare::simulator::Realism {
            duplicates: 0.05,
            late: 0.05,
            gaps: true,
            skew: true,
            malformed: 0.02,
        },
    }
}

/// A webhook delivery as a receiver reads it.
pub struct Webhook {
    /// The idempotency-key header.
    pub key: String,
    /// The body as JSON, if it is.
    pub payload: Option<serde_json::Value>,
    /// The signature header checks against `secret` for this body and timestamp.
    pub signed: bool,
}

pub fn read_webhook(secret: &str, headers: &axum::http::HeaderMap, body: &[u8]) -> Webhook {
    use aftercare::outbox::{verify, IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let ts: i64 = h(TIMESTAMP_HEADER).parse().unwrap_or(0);
    Webhook {
        key: h(IDEMPOTENCY_HEADER),
        payload: serde_json::from_slice(body).ok(),
        signed: verify(secret.as_bytes(), ts, body, &h(SIGNATURE_HEADER)),
    }
}

/// Loads the demo seed (`deploy/workshops.toml`): parts, jobs and workshops WS-01..WS-05.
pub async fn load_demo_workshops(pool: &PgPool) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/workshops.toml");
    let seed = aftercare::capacity::Seed::from_file(std::path::Path::new(path)).unwrap();
    aftercare::store::capacity::load_seed(pool, &seed)
        .await
        .unwrap();
}

/// Partitions for rows a test writes straight into a time-partitioned table (plain
/// PostgreSQL makes them only ahead of now; a no-op on TimescaleDB).
pub async fn ensure_partitions(
    pool: &PgPool,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) {
    let flavor = aftercare::store::Flavor::detect(pool).await.unwrap();
    aftercare::store::retention::ensure_partitions_between(pool, flavor, from, to)
        .await
        .unwrap();
}

/// Serves `app` on a free loopback port, in the background; returns the port.
pub async fn serve_on_free_port(app: axum::Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let port = listener.local_addr().expect("bound address").port();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    port
}

/// Stores raw values `(vehicle, signal, ts, value)` straight into the sample table, bypassing
/// ingest (no rollup delta, no score mark): one sample (seq 0) per vehicle and instant, and
/// the (vehicle, signal) pairs the reads list. A value at an instant already stored is skipped.
pub async fn insert_values(pool: &PgPool, rows: &[(i32, i32, chrono::DateTime<chrono::Utc>, f64)]) {
    use std::collections::BTreeMap;
    let times = || rows.iter().map(|r| r.2);
    if let (Some(from), Some(to)) = (times().min(), times().max()) {
        ensure_partitions(pool, from, to).await;
    }
    let mut samples: BTreeMap<(i32, chrono::DateTime<chrono::Utc>), BTreeMap<i32, f64>> =
        BTreeMap::new();
    for &(v, s, ts, x) in rows {
        samples.entry((v, ts)).or_default().entry(s).or_insert(x);
    }
    let all: Vec<_> = samples.into_iter().collect();
    for chunk in all.chunks(5_000) {
        let (mut vid, mut ts, mut offset, mut len) = (vec![], vec![], vec![], vec![]);
        let (mut ids, mut values) = (vec![], vec![]);
        for ((v, t), signals) in chunk {
            vid.push(*v);
            ts.push(*t);
            offset.push(ids.len() as i32);
            len.push(signals.len() as i32);
            for (s, x) in signals {
                ids.push(*s);
                values.push(*x);
            }
        }
        sqlx::query(
            "INSERT INTO samples (vehicle_id, ts, seq, received_at, signal_ids, signal_values)
             SELECT k.v, k.t, 0, k.t, ($5::int4[])[k.o + 1 : k.o + k.n],
                    ($6::float8[])[k.o + 1 : k.o + k.n]
             FROM UNNEST($1::int4[], $2::timestamptz[], $3::int4[], $4::int4[]) AS k (v, t, o, n)
             ON CONFLICT DO NOTHING",
        )
        .bind(&vid)
        .bind(&ts)
        .bind(&offset)
        .bind(&len)
        .bind(&ids)
        .bind(&values)
        .execute(pool)
        .await
        .unwrap();
    }
    let pairs: std::collections::BTreeSet<(i32, i32)> = rows.iter().map(|r| (r.0, r.1)).collect();
    let (pv, ps): (Vec<i32>, Vec<i32>) = pairs.into_iter().unzip();
    sqlx::query(
        "INSERT INTO vehicle_signals (vehicle_id, signal_id)
         SELECT * FROM UNNEST($1::int4[], $2::int4[]) ON CONFLICT DO NOTHING",
    )
    .bind(&pv)
    .bind(&ps)
    .execute(pool)
    .await
    .unwrap();
}

/// `GET {base}{path}` with an API key; the answer must be 200, and is returned as JSON.
pub async fn api_get(base: &str, key: &str, path: &str) -> serde_json::Value {
    let resp = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.unwrap()
}

/// (ts, signal) -> value, as the API returns a vehicle's stored values.
pub type Values = std::collections::BTreeMap<(chrono::DateTime<chrono::Utc>, String), f64>;

/// A vehicle's stored values from `from` on, read through `GET /v1/vehicles/{vin}/telemetry`
/// (each (ts, signal) once, or the test fails).
pub async fn api_values(
    base: &str,
    key: &str,
    vin: &str,
    from: chrono::DateTime<chrono::Utc>,
) -> Values {
    let path = format!(
        "/v1/vehicles/{vin}/telemetry?from={}&to={}",
        from.to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
            .replace('+', "%2B"),
        (chrono::Utc::now() + chrono::Duration::hours(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
            .replace('+', "%2B")
    );
    let body = api_get(base, key, &path).await;
    let mut out = Values::new();
    for p in body["points"].as_array().unwrap() {
        let ts: chrono::DateTime<chrono::Utc> = p["ts"].as_str().unwrap().parse().unwrap();
        let prev = out.insert(
            (ts, p["signal"].as_str().unwrap().to_owned()),
            p["value"].as_f64().unwrap(),
        );
        assert!(prev.is_none(), "a value stored twice: {p}");
    }
    out
}

/// `got` holds exactly `want`'s (ts, signal) pairs, with its values.
pub fn assert_values(got: &Values, want: &[(chrono::DateTime<chrono::Utc>, &str, f64)]) {
    let want: Values = want
        .iter()
        .map(|(t, s, x)| ((*t, (*s).to_owned()), *x))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the same values under the same paths"
    );
    for (k, x) in &want {
        let g = got[k];
        assert!((g - x).abs() < 1e-9, "{k:?}: stored {g}, expected {x}");
    }
}
