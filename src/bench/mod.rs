//! `aftercare bench`: end-to-end figures measured on this machine, each as a ratio to a
//! baseline measured in the same run. `ingest` (broker vs pipeline vs COPY), `fuzz` (hostile
//! traffic, every outcome checked, peak memory), `api` (HTTP latency at a fixed rate) and
//! `reads` (the read paths over stored telemetry). This file holds what they share: the
//! error type, a fresh database, the service as a child process and /proc readings.

pub mod api;
pub mod fuzz;
pub mod ingest;
pub mod reads;

use crate::simulator::PublishError;
use crate::store::{self, StoreError};
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use sqlx::ConnectOptions;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("{0}")]
    Other(String),
}

/// Drops and creates `name` next to the configured database; returns its URL, migrated.
pub(crate) async fn fresh_database(url: &str, name: &str) -> Result<String, BenchError> {
    // The database is the URL's path: its query (TLS parameters) stays.
    let with_db = |db: &str| -> Result<String, BenchError> {
        let mut u = url::Url::parse(url).map_err(|e| BenchError::Other(e.to_string()))?;
        u.set_path(&format!("/{db}"));
        Ok(u.into())
    };
    let mut admin = store::connect_options(&with_db("postgres")?)?
        .connect()
        .await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let db_url = with_db(name)?;
    let pool = store::pool(&db_url, 2).await?;
    store::migrate(&pool).await?;
    pool.close().await;
    Ok(db_url)
}

/// Sum of a metric family's samples in Prometheus text.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `aftercare serve` as a child process.
struct Service {
    child: tokio::process::Child,
    port: u16,
}

impl Service {
    async fn start(
        db_url: &str,
        mqtt_url: &str,
        client_id: &str,
        method: &str,
        env: &[(&str, String)],
    ) -> Result<Service, BenchError> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")
                .map_err(|e| BenchError::Other(e.to_string()))?;
            l.local_addr()
                .map_err(|e| BenchError::Other(e.to_string()))?
                .port()
        };
        let exe = std::env::current_exe().map_err(|e| BenchError::Other(e.to_string()))?;
        let child = tokio::process::Command::new(exe)
            .arg("serve")
            .env("AFTERCARE_DATABASE_URL", db_url)
            .env("AFTERCARE_MQTT_URL", mqtt_url)
            .env("AFTERCARE_MQTT_CLIENT_ID", client_id)
            // A group of its own: an earlier run's offline session in the same group would
            // keep receiving its round-robin share.
            .env("AFTERCARE_MQTT_SHARE_GROUP", client_id)
            .env("AFTERCARE_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("AFTERCARE_INGEST_WRITE_METHOD", method)
            .env("AFTERCARE_LOG_FILTER", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BenchError::Other(format!("cannot start aftercare serve: {e}")))?;
        Ok(Service { child, port })
    }

    async fn metrics(&self) -> Option<String> {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        Some(out)
    }

    async fn counter(&self, name: &str) -> Option<f64> {
        Some(metric_sum(&self.metrics().await?, name))
    }

    /// Values of one metric family by the value of one label, in exposition order.
    async fn labelled(&self, name: &str, label: &str) -> Vec<(String, f64)> {
        let text = self.metrics().await.unwrap_or_default();
        let prefix = format!("{name}{{{label}=\"");
        text.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(&prefix)?;
                let (key, rest) = rest.split_once('"')?;
                Some((key.to_owned(), rest.rsplit(' ').next()?.parse().ok()?))
            })
            .collect()
    }

    /// Returns within about 10 ms of the service's CONNACK (a resumed session's backlog starts
    /// flowing right after it).
    async fn connected(&self) -> Result<(), BenchError> {
        for _ in 0..3000 {
            if self.counter("aftercare_mqtt_connected").await == Some(1.0) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(BenchError::Other(
            "service did not connect to the broker".into(),
        ))
    }

    /// Connected, and its subscription acknowledged (first start, which creates the session).
    async fn wait_subscribed(&self) -> Result<(), BenchError> {
        self.connected().await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(())
    }

    /// Seconds from connecting to `n` messages committed and acknowledged; peak RSS (KiB);
    /// most messages seen in flight (received, not yet acknowledged).
    async fn drain(&self, n: usize) -> Result<(f64, u64, u64), BenchError> {
        self.connected().await?;
        let started = Instant::now();
        let (mut peak, mut inflight) = (0u64, 0u64);
        loop {
            peak = peak.max(self.rss_kib());
            let text = self.metrics().await.unwrap_or_default();
            inflight = inflight.max(metric_sum(&text, "aftercare_ingest_inflight_messages") as u64);
            let done = metric_sum(&text, "aftercare_ingest_messages_total");
            if done as usize >= n {
                return Ok((started.elapsed().as_secs_f64(), peak, inflight));
            }
            if started.elapsed() > Duration::from_secs(3600) {
                return Err(BenchError::Other(format!(
                    "pipeline stalled at {done} of {n}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn rss_kib(&self) -> u64 {
        self.child.id().map_or(0, rss_kib)
    }

    /// User + system CPU seconds the process has used, from /proc (0 when unavailable).
    fn cpu_secs(&self) -> f64 {
        self.child
            .id()
            .map_or(0.0, |pid| proc_cpu_secs(&pid.to_string()))
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

/// Deletes a persistent session: connect with clean start and no expiry, then leave.
async fn end_session(url: &str, client_id: &str) {
    let Ok(mut opts) = MqttOptions::parse_url(format!("{url}?client_id={client_id}")) else {
        return;
    };
    opts.set_clean_start(true)
        .set_session_expiry_interval(Some(0));
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::ConnAck(_)) = event {
                let _ = client.try_disconnect();
            }
            if let Event::Outgoing(rumqttc::Outgoing::Disconnect) = event {
                break;
            }
        }
    })
    .await;
}

/// Machine-wide CPU time from /proc/stat, in USER_HZ ticks.
#[derive(Debug, Clone, Copy, Default)]
struct CpuTicks {
    busy: u64,
    total: u64,
}

impl CpuTicks {
    fn since(self, before: CpuTicks) -> CpuTicks {
        CpuTicks {
            busy: self.busy.saturating_sub(before.busy),
            total: self.total.saturating_sub(before.total),
        }
    }

    fn busy(self) -> f64 {
        self.busy as f64 / self.total.max(1) as f64
    }

    /// Busy CPU seconds, all cores together.
    fn busy_secs(self) -> f64 {
        self.busy as f64 / USER_HZ
    }
}

/// /proc's tick rate on Linux.
const USER_HZ: f64 = 100.0;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// User + system CPU seconds of a process, from /proc/<pid>/stat (0 when unavailable).
fn proc_cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): utime and stime are the 12th
    // and 13th, in USER_HZ ticks.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / USER_HZ
}

fn own_cpu_secs() -> f64 {
    proc_cpu_secs("self")
}

/// CPU seconds of every process whose command is `comm`.
fn named_cpu_secs(comm: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm)
        })
        .map(|pid| proc_cpu_secs(&pid))
        .sum()
}

fn machine_cpu_ticks() -> CpuTicks {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next().and_then(|l| l.strip_prefix("cpu ")) else {
        return CpuTicks::default();
    };
    let t: Vec<u64> = cpu
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...; idle and iowait are not busy.
    let total: u64 = t.iter().take(8).sum();
    let idle = t.get(3).copied().unwrap_or(0) + t.get(4).copied().unwrap_or(0);
    CpuTicks {
        busy: total - idle.min(total),
        total,
    }
}

/// Resident set size of a process in KiB, from /proc (0 when unavailable).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
