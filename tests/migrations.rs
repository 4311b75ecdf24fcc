//! Both schema flavors. The plain-PostgreSQL path runs for real (every other test uses it).
//! TimescaleDB is not packaged for this machine, so its migrations are checked statement by
//! statement against the real PostgreSQL parser and catalog: each may fail only because the
//! extension is missing (unknown function, unknown `timescaledb.*` option, missing extension),
//! never on syntax or on a table or column that does not exist.

mod common;

use aftercare::store::{Flavor, MIGRATIONS};
use common::*;
use sqlx::Connection;

const ALLOWED: &[&str] = &[
    "42883", // undefined_function: create_hypertable, time_bucket, add_*_policy
    "22023", // invalid_parameter_value: unrecognized parameter namespace "timescaledb"
    "58P01", // undefined_file: extension control file not found
    "0A000", // feature_not_supported
    "42704", // undefined_object: unrecognized configuration parameter / extension
];

#[tokio::test]
async fn plain_postgres_flavor_is_detected_and_migrations_are_idempotent() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    assert_eq!(Flavor::detect(&pool).await.unwrap(), Flavor::Plain);
    // A second run applies nothing and finds every checksum intact.
    assert_eq!(
        aftercare::store::migrate(&pool).await.unwrap(),
        Flavor::Plain
    );
    let applied: Vec<String> =
        sqlx::query_scalar("SELECT name FROM aftercare_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        applied,
        vec![
            "core",
            "rollup_table",
            "service_and_risk",
            "rollup_deltas",
            "score_queue",
            "fleet_rank",
            "capacity",
            "booking",
            "score_marks_released",
            "visits",
        ]
    );
}

#[tokio::test]
async fn timescale_migrations_parse_and_reference_real_tables() {
    let db = TestDb::new().await;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    // Start from the core schema only, as a TimescaleDB server would see it.
    sqlx::raw_sql("DROP TABLE signal_daily, rollup_delta")
        .execute(&mut conn)
        .await
        .unwrap();
    let timescale: Vec<_> = MIGRATIONS
        .iter()
        .filter(|m| m.name == "hypertables" || m.name == "rollup_continuous_aggregate")
        .collect();
    assert_eq!(timescale.len(), 2);
    let mut checked = 0;
    for m in timescale {
        for stmt in split_statements(m.sql) {
            let mut tx = conn.begin().await.unwrap();
            match sqlx::raw_sql(&stmt).execute(&mut *tx).await {
                Ok(_) => {}
                Err(sqlx::Error::Database(e)) => {
                    let code = e.code().unwrap_or_default().to_string();
                    assert!(
                        ALLOWED.contains(&code.as_str()),
                        "{}: {stmt}\n-> {code} {}",
                        m.name,
                        e.message()
                    );
                }
                Err(e) => panic!("{stmt}: {e}"),
            }
            tx.rollback().await.unwrap();
            checked += 1;
        }
    }
    assert_eq!(
        checked, 13,
        "every statement of both TimescaleDB migrations checked"
    );
}

#[tokio::test]
async fn upgrading_to_rollup_deltas_recomputes_the_days_still_marked_dirty() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    // Back to version 4, as an older build left it: dirty marks, no delta table.
    sqlx::raw_sql(
        "DROP TABLE rollup_delta;
         DELETE FROM aftercare_migrations WHERE version = 5;
         CREATE TABLE rollup_dirty (
             vehicle_id integer NOT NULL,
             day timestamptz NOT NULL,
             marked_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (vehicle_id, day));
         INSERT INTO vehicles (vin) VALUES ('WDB1240221A000001');
         INSERT INTO signals (name) VALUES ('Vehicle.Speed');
         -- Day 1 refreshed; day 2 got more values after its refresh and is marked dirty.
         INSERT INTO telemetry (vehicle_id, signal_id, ts, value) VALUES
             (1, 1, '2026-03-01 08:00+00', 10), (1, 1, '2026-03-01 09:00+00', 20),
             (1, 1, '2026-03-02 08:00+00', 30), (1, 1, '2026-03-02 09:00+00', -5),
             (1, 1, '2026-03-02 23:59:59+00', 7);
         INSERT INTO signal_daily VALUES
             (1, 1, '2026-03-01 00:00+00', 2, 10, 20, 30, 500),
             (1, 1, '2026-03-02 00:00+00', 1, 30, 30, 30, 900);
         INSERT INTO rollup_dirty (vehicle_id, day) VALUES (1, '2026-03-02 00:00+00');",
    )
    .execute(&pool)
    .await
    .unwrap();
    aftercare::store::migrate(&pool).await.unwrap();
    assert_rollup_matches_raw(&pool).await;
    assert_eq!(
        count(
            &pool,
            "SELECT n FROM signal_daily WHERE day = '2026-03-02 00:00+00'"
        )
        .await,
        3
    );
    let gone: bool = sqlx::query_scalar("SELECT to_regclass('rollup_dirty') IS NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(gone);
    assert_eq!(count(&pool, "SELECT count(*) FROM rollup_delta").await, 0);
}

/// Splits on `;` at the end of a line (the migration files keep one statement per `;`).
fn split_statements(sql: &str) -> Vec<String> {
    let body: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    body.split(";\n")
        .map(|s| s.trim().trim_end_matches(';').to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn statement_splitting() {
    let s = split_statements("-- c\nSELECT 1;\nSELECT f(\n  2);\n");
    assert_eq!(s, vec!["SELECT 1", "SELECT f(\n  2)"]);
}
