//! The demo as a new user runs it (issue 16: it used to end with no risk and no offers):
//! `scripts/demo.sh` itself, with the debug binary instead of a release build, against its
//! own database, broker and port. It must end (exit 0) with vehicles scored, offers made and
//! a preview that shows their demand; the test checks that against the database and the API
//! of the service the demo leaves running, then stops it with `scripts/demo.sh stop`.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Runs `scripts/demo.sh` with `args` in the demo's environment.
fn demo(env: &[(&str, String)], args: &[&str]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(Path::new(ROOT).join("scripts/demo.sh")).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run scripts/demo.sh")
}

/// Stops what the demo left running, however the test ends.
struct Stop(Vec<(&'static str, String)>);

impl Drop for Stop {
    fn drop(&mut self) {
        let out = demo(&self.0, &["stop"]);
        if !out.status.success() {
            eprintln!("demo stop: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_ends_with_risk_offers_and_their_demand() {
    let db = TestDb::new().await;
    let broker = TestBroker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env: Vec<(&'static str, String)> = vec![
        ("DEMO_BIN", env!("CARGO_BIN_EXE_aftercare").to_owned()),
        ("DEMO_DIR", dir.path().display().to_string()),
        ("AFTERCARE_DATABASE_URL", db.url.clone()),
        ("AFTERCARE_MQTT_URL", broker.url()),
        ("AFTERCARE_HTTP_ADDR", format!("127.0.0.1:{port}")),
        ("AFTERCARE_MQTT_CLIENT_ID", format!("demo-test-{port}")),
        ("AFTERCARE_LOG_FILTER", "warn".to_owned()),
    ];
    let _stop = Stop(env.clone());
    let run = {
        let env = env.clone();
        tokio::task::spawn_blocking(move || demo(&env, &[]))
            .await
            .unwrap()
    };
    let stdout = String::from_utf8_lossy(&run.stdout);
    let log: PathBuf = dir.path().join("serve.log");
    assert!(
        run.status.success(),
        "the demo failed\n--- stdout\n{stdout}\n--- stderr\n{}\n--- service log\n{}",
        String::from_utf8_lossy(&run.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // What it showed is what the database holds.
    let pool = db.pool().await;
    let vehicles = count(&pool, "SELECT count(*) FROM vehicles").await;
    assert_eq!(vehicles, 40);
    let scored = count(&pool, "SELECT count(DISTINCT vehicle_id) FROM risk_current").await;
    let unscored = count(
        &pool,
        "SELECT count(*) FROM score_dirty WHERE released_reason = 'no_recent_data'",
    )
    .await;
    assert!(scored > 0, "{stdout}");
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM score_dirty WHERE released_at IS NULL"
        )
        .await,
        0,
        "no car with new data waits for a score"
    );
    assert!(
        scored + unscored >= vehicles,
        "every car scored or kept with its reason"
    );
    let offers = count(&pool, "SELECT count(*) FROM offers").await;
    assert!(offers > 0, "{stdout}");
    assert!(
        stdout.contains(&format!("{scored} vehicles scored")),
        "{stdout}"
    );

    // The preview it printed, from the service it left running.
    let workshop: String = sqlx::query_scalar(
        "SELECT w.code FROM offers o JOIN workshops w ON w.id = o.workshop_id
         WHERE o.state IN ('proposed', 'notified') GROUP BY w.code
         ORDER BY count(*) DESC, w.code LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let key = std::fs::read_to_string(dir.path().join("api-key")).unwrap();
    let preview: Value = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{port}/v1/capacity/preview?workshop={workshop}&days=28"
        ))
        .bearer_auth(key.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let offer_hours = preview["workshops"][0]["totals"]["offer_hours"]
        .as_f64()
        .unwrap();
    assert!(offer_hours > 0.0, "{preview}");
    assert!(
        stdout.contains(&format!("the demand they bring to {workshop}")),
        "{stdout}"
    );
    assert!(stdout.contains("Stop it with: scripts/demo.sh stop"));
}
