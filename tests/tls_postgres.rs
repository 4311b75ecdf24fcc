//! PostgreSQL over TLS against a throwaway cluster of the test's own that takes TLS
//! connections only: libpq's `sslmode` grammar with `sslrootcert`, `sslcert` and `sslkey`
//! in the database URL, for the service's pools and the CLI alike; each failure (wrong CA,
//! wrong host name, no TLS, no client certificate) says its cause; the password from a file.

mod common;

use common::tls::*;
use common::*;
use std::process::Command;
use std::time::Duration;

/// The error of a first query through `store::pool`, as the service would report it.
async fn connect_error(url: &str) -> String {
    let pool = aftercare::store::pool(url, 1).await.expect("options");
    let err = sqlx::query("SELECT 1")
        .execute(&pool)
        .await
        .map(|_| ())
        .map_err(aftercare::store::StoreError::from)
        .expect_err("refused");
    err.to_string()
}

/// Whether the first query's connection is encrypted, and with what.
async fn tls_version(url: &str) -> Option<String> {
    let pool = aftercare::store::pool(url, 1).await.expect("options");
    sqlx::query_scalar("SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl")
        .fetch_optional(&pool)
        .await
        .expect("connected")
}

#[tokio::test]
async fn sslmodes_connect_as_libpq_does_and_failures_name_their_cause() {
    let pki = Pki::new();
    let pg = TlsPostgres::start(&pki).await;
    let other = Pki::new();
    let (cert, key) = pki.pair("postgres");
    let files = |ca: &std::path::Path| {
        format!(
            "sslrootcert={}&sslcert={}&sslkey={}",
            ca.display(),
            cert.display(),
            key.display()
        )
    };
    let url = |host: &str, query: &str| pg.url(host, "postgres", "postgres", query);

    // verify-full: the CA signed the server's certificate, which names 127.0.0.1.
    let full = url(
        "127.0.0.1",
        &format!("sslmode=verify-full&{}", files(&pki.ca())),
    );
    assert_eq!(tls_version(&full).await.as_deref(), Some("TLSv1.3"));
    // The wrong CA.
    let err = connect_error(&url(
        "127.0.0.1",
        &format!("sslmode=verify-full&{}", files(&other.ca())),
    ))
    .await;
    assert!(err.contains("invalid peer certificate"), "{err}");
    assert!(err.contains("not signed by a CA in sslrootcert"), "{err}");
    // The wrong host name. libpq's verify-ca would not check it; sqlx 0.8 does (its verifier
    // misses rustls's newer form of the error; fixed in sqlx 0.9): stricter, never weaker.
    for mode in ["verify-full", "verify-ca"] {
        let u = url("localhost", &format!("sslmode={mode}&{}", files(&pki.ca())));
        let err = connect_error(&u).await;
        assert!(
            err.contains("does not name the host in the URL"),
            "{mode}: {err}"
        );
    }
    // require and prefer encrypt without checking the certificate (libpq's meaning).
    for mode in ["require", "prefer"] {
        let u = url(
            "127.0.0.1",
            &format!("sslmode={mode}&{}", files(&other.ca())),
        );
        assert_eq!(tls_version(&u).await.as_deref(), Some("TLSv1.3"), "{mode}");
    }
    // Plain against a TLS-only server.
    let err = connect_error(&url("127.0.0.1", "sslmode=disable")).await;
    assert!(err.contains("no encryption"), "{err}");
    assert!(err.contains("accepts only TLS connections"), "{err}");
    // TLS, but no client certificate for a user the server authenticates by certificate.
    let u = url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", pki.ca().display()),
    );
    let err = connect_error(&u).await;
    assert!(err.contains("wants a client certificate"), "{err}");
}

/// `aftercare <args>` with the database URL and extra environment; (success, stdout, stderr).
fn cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aftercare"))
        .args(args)
        .env_clear()
        .env("AFTERCARE_LOG_FILTER", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("run aftercare");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_every_pool_of_the_service_use_tls_and_the_password_file() {
    let pki = Pki::new();
    let pg = TlsPostgres::start(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("db-password");
    std::fs::write(&password_file, format!("{PG_PASSWORD}\n")).unwrap();
    let url = pg.url(
        "127.0.0.1",
        "aftercare",
        "aftercare",
        &format!("sslmode=verify-full&sslrootcert={}", pki.ca().display()),
    );
    let pw = password_file.display().to_string();
    let env = [
        ("AFTERCARE_DATABASE_URL", url.as_str()),
        ("AFTERCARE_DATABASE_PASSWORD_FILE", pw.as_str()),
    ];
    let (ok, _, stderr) = cli(&["migrate"], &env);
    assert!(ok, "migrate over TLS with the password file: {stderr}");
    let (ok, key, stderr) = cli(
        &["keys", "create", "--name", "ops", "--scope", "admin"],
        &env,
    );
    assert!(ok && key.trim().len() > 20, "keys create: {stderr}");
    // A wrong password is one clear line, and the password it read is not in it.
    std::fs::write(&password_file, "not-the-password").unwrap();
    let (ok, _, stderr) = cli(&["migrate"], &env);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");
    std::fs::write(&password_file, PG_PASSWORD).unwrap();

    // The service: its API pool and its ingest pool both on TLS.
    let broker = TestBroker::start().await;
    let c = config(&url, &broker.url(), "tls-db");
    let c = {
        // As Config::load would: the password file fills in the URL's password.
        let file = dir.path().join("aftercare.toml");
        std::fs::write(
            &file,
            format!("[database]\nurl = {url:?}\npassword_file = {pw:?}\n"),
        )
        .unwrap();
        let loaded = aftercare::config::Config::load(Some(&file)).unwrap();
        aftercare::config::Config {
            database: loaded.database,
            ..c
        }
    };
    let service = start_connected(c).await;
    let vin = "1HGCM82633A004352";
    let body = sample_now(1, serde_json::json!({"Vehicle.Speed": 12.5}));
    let topic = format!("v1/vehicles/{vin}/telemetry");
    publish(&broker, "pub-tls-db", owned(&[(&topic, &body)])).await;
    let h = handled(&service, 1.0, Duration::from_secs(30)).await;
    assert_eq!(h.stored, 1.0);
    // Every connection the service holds is encrypted.
    let (total, encrypted): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'aftercare' AND a.pid <> pg_backend_pid()",
    )
    .fetch_one(service.store.pool())
    .await
    .unwrap();
    assert!(total >= 2, "the API pool and the ingest pool: {total}");
    assert_eq!(encrypted, total);
    service.shutdown().await.unwrap();
    drop(pg);
}
