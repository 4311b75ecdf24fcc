//! TLS for tests: a fleet PKI made by `aftercare certs` (the binary, as an operator runs it),
//! Mosquitto with the project's TLS listener and ACL (deploy/mosquitto-tls.conf and
//! deploy/mosquitto.acl), a throwaway PostgreSQL cluster that takes TLS connections only,
//! and clients that see what a TLS server presents.

use super::{free_port, wait_for_port, TestBroker};
use aftercare::config::MqttConfig;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A fleet CA with a broker/server certificate (localhost, 127.0.0.1) and the service's
/// identity (CN `aftercare`), in a directory of its own.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        // Servers started as root drop to their own user and must reach their files.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let pki = Pki { dir };
        pki.certs(&["ca"]);
        pki.certs(&[
            "service",
            "--name",
            "server",
            "--dns",
            "localhost",
            "--ip",
            "127.0.0.1",
        ]);
        pki.certs(&["service"]);
        pki
    }

    /// Runs `aftercare certs <args> --dir <this PKI>`; panics with its stderr on failure.
    pub fn certs(&self, args: &[&str]) {
        let out = Command::new(env!("CARGO_BIN_EXE_aftercare"))
            .arg("certs")
            .args(args)
            .arg("--dir")
            .arg(self.dir.path())
            .env_clear()
            .output()
            .expect("run aftercare certs");
        assert!(
            out.status.success(),
            "aftercare certs {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// `<name>.pem` and `<name>.key`.
    pub fn pair(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        )
    }

    /// A vehicle certificate (CN = VIN) issued by `aftercare certs vehicle`.
    pub fn vehicle(&self, vin: &str) -> (PathBuf, PathBuf) {
        self.certs(&["vehicle", "--vin", vin]);
        self.pair(vin)
    }

    /// A vehicle certificate from this CA that expired yesterday (`expired-<VIN>`).
    pub fn expired_vehicle(&self, vin: &str) -> (PathBuf, PathBuf) {
        use aftercare::certs::{self, Ca, Validity};
        let ca = Ca::load(&self.ca(), &self.path("ca.key")).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let validity = Validity {
            not_before: now - time::Duration::days(30),
            not_after: now - time::Duration::days(1),
        };
        let vin = aftercare::wire::Vin::parse(vin).unwrap();
        let issued = certs::vehicle(&ca, &vin, validity).unwrap();
        certs::write(
            self.dir.path(),
            &format!("expired-{}", vin.as_str()),
            &issued,
            false,
        )
        .unwrap()
    }

    /// Client settings for `url` trusting this CA and presenting `<identity>.pem`/`.key`.
    pub fn mqtt(&self, url: &str, identity: &str) -> MqttConfig {
        let (cert, key) = self.pair(identity);
        MqttConfig {
            url: url.to_owned(),
            ca_file: Some(self.ca()),
            cert_file: Some(cert),
            key_file: Some(key),
            ..MqttConfig::default()
        }
    }

    /// Gives `file` to an OS user (a server that reads its key after dropping root).
    pub fn give_to(&self, file: &Path, user: &str) {
        let (uid, gid) = os_user(user);
        std::os::unix::fs::chown(file, Some(uid), Some(gid)).unwrap();
    }
}

/// Uid and gid of an OS user, from `id`.
pub fn os_user(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").arg(flag).arg(user).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

/// Settings lines of deploy/mosquitto-tls.conf for a listener on `port` using `pki`'s files
/// and the project's ACL, exactly as shipped except for those paths.
pub fn broker_tls_conf(pki: &Pki, port: u16) -> String {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/mosquitto-tls.conf"
    ))
    .unwrap();
    let (cert, key) = pki.pair("server");
    // Mosquitto reads its key after dropping to its own user.
    pki.give_to(&key, "mosquitto");
    let acl = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/mosquitto.acl");
    let conf = shipped
        .replace("listener 8883", &format!("listener {port} 127.0.0.1"))
        .replace("/certs/ca.pem", &pki.ca().display().to_string())
        .replace("/certs/broker.pem", &cert.display().to_string())
        .replace("/certs/broker.key", &key.display().to_string())
        .replace("/mosquitto/config/mosquitto.acl", acl);
    assert!(!conf.contains("/certs/") && conf.contains(acl), "{conf}");
    conf
}

impl TestBroker {
    /// A broker with the project's TLS listener (client certificates required, CN as user
    /// name, the shipped ACL) beside its plain one.
    pub async fn start_tls(pki: &Pki) -> TestBroker {
        let port = free_port();
        let broker = TestBroker::start_with(&broker_tls_conf(pki, port), Some(port)).await;
        wait_for_port(port, Duration::from_secs(10)).await;
        broker
    }

    pub fn tls_url(&self) -> String {
        format!(
            "mqtts://127.0.0.1:{}",
            self.tls_port.expect("a broker started with start_tls")
        )
    }
}

/// One telemetry sample stamped now, as a vehicle sends it.
pub fn sample_now(seq: i64, signals: serde_json::Value) -> Vec<u8> {
    serde_json::json!({"ts": chrono::Utc::now().to_rfc3339(), "seq": seq, "signals": signals})
        .to_string()
        .into_bytes()
}

/// Publishes one QoS 1 message with a fresh clean session and returns the broker's PUBACK
/// reason, or the connection error when the broker refused the client. Mosquitto 2.0.11
/// answers a refused PUBLISH from an MQTT 5 client with PUBACK "not authorized" (0x87) and
/// then closes the connection: the PUBACK read just before the close still counts.
pub async fn publish_once(
    mqtt: &MqttConfig,
    client_id: &str,
    topic: &str,
    payload: &[u8],
) -> Result<PubAckReason, String> {
    let mut opts = aftercare::mqtt::options(mqtt, client_id).map_err(|e| e.to_string())?;
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
        .await
        .map_err(|e| e.to_string())?;
    let outcome = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(ack))) => return Ok(ack.reason),
                Ok(_) => {}
                Err(e) => {
                    let read_before_close = eventloop.state.events.iter().find_map(|ev| match ev {
                        Event::Incoming(Packet::PubAck(ack)) => Some(ack.reason),
                        _ => None,
                    });
                    return read_before_close.ok_or_else(|| e.to_string());
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err("no answer within 20 s".into()));
    let _ = client.try_disconnect();
    outcome
}

/// Connects once; Ok when the broker accepted the session (CONNACK), Err with the error text
/// (and its causes) otherwise.
pub async fn connect_once(mqtt: &MqttConfig, client_id: &str) -> Result<(), String> {
    let opts = aftercare::mqtt::options(mqtt, client_id).map_err(|e| e.to_string())?;
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    let outcome = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(error_chain(&e)),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err("no answer within 20 s".into()));
    let _ = client.try_disconnect();
    outcome
}

/// An error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The certificate a TLS server at 127.0.0.1:`port` presents, verified against `ca`.
pub async fn served_certificate(port: u16, ca: &Path) -> Result<Vec<u8>, String> {
    let config = aftercare::tls::client_config(aftercare::tls::ClientFiles {
        link: "test",
        ca: ("ca", Some(ca)),
        cert: ("", None),
        key: ("", None),
    })
    .map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| error_chain(&e))?;
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or_else(|| "no certificate".into())
}

/// The DER of the first certificate in a PEM file.
pub fn cert_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(path)
        .unwrap()
        .to_vec()
}

/// A reqwest client that trusts `ca` (on the process's one TLS stack).
pub fn https_client(ca: &Path) -> reqwest::Client {
    let config = aftercare::tls::client_config(aftercare::tls::ClientFiles {
        link: "test",
        ca: ("ca", Some(ca)),
        cert: ("", None),
        key: ("", None),
    })
    .unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .build()
        .unwrap()
}

/// Serves `app` over HTTPS with `cert`/`key` on a free loopback port, in the background.
pub async fn serve_https(app: axum::Router, cert: &Path, key: &Path) -> u16 {
    use aftercare::tls::server::{server_config, ReloadingCert, TlsListener};
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let config =
        server_config(std::sync::Arc::new(ReloadingCert::load(cert, key).unwrap())).unwrap();
    let listener = TlsListener::new(tcp, config).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// A PostgreSQL cluster of its own (initdb + pg_ctl, run as the `postgres` OS user) that
/// accepts TCP connections over TLS only: user `postgres` with a client certificate (CN
/// `postgres`, `<pki>/postgres.pem`), user `aftercare` with a password (SCRAM, `PG_PASSWORD`).
pub struct TlsPostgres {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

pub const PG_PASSWORD: &str = "pg-pass-4a8d1c77e0";

impl TlsPostgres {
    pub async fn start(pki: &Pki) -> TlsPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries (scripts/setup.sh installs them)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("an initdb under /usr/lib/postgresql");
        let dir = tempfile::tempdir().unwrap();
        let (uid, gid) = os_user("postgres");
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        let data = dir.path().join("data");
        run_as_postgres(Command::new(bin.join("initdb")).arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]));
        // The server's certificate (for 127.0.0.1 only: `localhost` is a wrong host name
        // here) and key, readable by the server alone.
        pki.certs(&["service", "--name", "pg-server", "--ip", "127.0.0.1"]);
        let (cert, key) = pki.pair("pg-server");
        for (from, to) in [
            (&cert, "server.pem"),
            (&key, "server.key"),
            (&pki.ca(), "ca.pem"),
        ] {
            let to = data.join(to);
            std::fs::copy(from, &to).unwrap();
            std::os::unix::fs::chown(&to, Some(uid), Some(gid)).unwrap();
        }
        let port = free_port();
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n\
             ssl_ca_file = 'ca.pem'\nfsync = off\nshared_buffers = 16MB\nmax_connections = 40\n\
             password_encryption = 'scram-sha-256'\n",
            dir.path().display()
        );
        append(&data.join("postgresql.conf"), &conf);
        // TCP only with TLS; the Unix socket (trust) is for setting up.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all postgres 127.0.0.1/32 cert\n\
             hostssl all aftercare 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        let pg = TlsPostgres { port, dir, bin };
        run_as_postgres(
            Command::new(pg.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(pg.dir.path().join("log"))
                .args(["-w", "-t", "60", "start"]),
        );
        wait_for_port(port, Duration::from_secs(30)).await;
        pg.psql(&format!(
            "CREATE ROLE aftercare LOGIN PASSWORD '{PG_PASSWORD}'"
        ));
        // Not in a transaction block, so not in the same command.
        pg.psql("CREATE DATABASE aftercare OWNER aftercare");
        pki.certs(&["service", "--name", "postgres"]);
        pg
    }

    /// Runs SQL through the Unix socket as `postgres`.
    pub fn psql(&self, sql: &str) {
        let psql = [
            "/usr/bin/psql",
            &self.bin.join("psql").display().to_string(),
        ]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .map(PathBuf::from)
        .expect("psql");
        run_as_postgres(
            Command::new(psql)
                .arg("-h")
                .arg(self.dir.path())
                .arg("-p")
                .arg(self.port.to_string())
                .args([
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-qc",
                ])
                .arg(sql),
        );
    }

    /// A URL for `user` and `database` with the given query (sslmode and files).
    pub fn url(&self, host: &str, user: &str, database: &str, query: &str) -> String {
        format!("postgres://{user}@{host}:{}/{database}?{query}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Runs a command as the `postgres` OS user (initdb and the server refuse root).
fn run_as_postgres(cmd: &mut Command) {
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(&program)
        .args(&args)
        .current_dir("/")
        .output()
        .expect("runuser");
    assert!(
        out.status.success(),
        "{} {:?}: {}{}",
        program.to_string_lossy(),
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
