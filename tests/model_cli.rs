//! `aftercare model train` and `aftercare model evaluate` as an operator runs them: defaults
//! taken from the data in the database, the artifact, card and report written, the
//! side-by-side table printed, and a clear failure for a missing ground-truth file.

mod common;
mod model_common;

use aftercare::model::artifact::Artifact;
use chrono::{Duration, Utc};
use common::TestDb;
use model_common::*;
use std::process::Output;

fn aftercare(db: &TestDb, args: &[&str]) -> Output {
    common::cli()
        .args(args)
        .env("AFTERCARE_DATABASE_URL", &db.url)
        .env("AFTERCARE_LOG_FILTER", "warn")
        .output()
        .unwrap()
}

#[tokio::test]
async fn train_then_evaluate_from_the_command_line() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let end = midnight(Utc::now()) - Duration::days(1);
    let fleet = brake_fleet(&pool, 30, 300, end, |i| if i % 2 == 0 { 1.2 } else { 0.05 }).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();

    let train = aftercare(
        &db,
        &[
            "model",
            "train",
            "--out",
            out,
            "--cadence-days",
            "3",
            "--trees",
            "10",
        ],
    );
    let stderr = String::from_utf8_lossy(&train.stderr);
    assert!(train.status.success(), "{stderr}");
    let stdout = String::from_utf8(train.stdout).unwrap();
    assert!(stdout.starts_with("# Model card: risk-"), "{stdout}");
    // The default window keeps the last 90 days of data back for evaluation.
    let artifact = Artifact::load(&dir.path().join("current.json")).unwrap();
    assert_eq!(artifact.training.window.to, end - Duration::days(90));
    assert_eq!(artifact.data.vehicles, 30);
    assert!(dir
        .path()
        .join(format!("{}.md", artifact.version))
        .is_file());

    let truth = dir.path().join("truth.jsonl");
    let lines: String = fleet
        .failures
        .iter()
        .map(|(i, at)| {
            format!(
                "{{\"vin\":\"{}\",\"component\":\"brakes\",\"failed_at\":\"{}\",\"repaired_at\":null}}\n",
                vin(*i),
                at.to_rfc3339()
            )
        })
        .collect();
    std::fs::write(&truth, lines).unwrap();
    let current = dir.path().join("current.json");
    let eval = aftercare(
        &db,
        &[
            "model",
            "evaluate",
            "--artifact",
            current.to_str().unwrap(),
            "--truth",
            truth.to_str().unwrap(),
            "--out",
            out,
        ],
    );
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    let table = String::from_utf8(eval.stdout).unwrap();
    assert!(table.contains("| brakes | 30 d |"), "{table}");
    assert!(table.contains("model beats rules"));
    let stem = format!(
        "evaluation-{}-{}-{}",
        artifact.version,
        (end - Duration::days(90)).format("%Y%m%d"),
        end.format("%Y%m%d")
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(format!("{stem}.json"))).unwrap())
            .unwrap();
    assert_eq!(report["model_version"], artifact.version.as_str());
    assert!(dir.path().join(format!("{stem}.md")).is_file());

    let missing = aftercare(
        &db,
        &[
            "model",
            "evaluate",
            "--artifact",
            current.to_str().unwrap(),
            "--truth",
            "/nonexistent/truth.jsonl",
        ],
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read ground truth"));
}
