//! The demand preview's backtest against a real database: what the preview made as of a past
//! date expects (from a model whose scores are known) is compared, cell by cell, with the work
//! that then arrived and with the naive average of the weeks before.

mod booking_common;
mod common;
mod model_common;

use chrono::{Duration, NaiveDate};
use common::*;
use sqlx::PgPool;

async fn record(
    pool: &PgPool,
    vehicle: i32,
    at: chrono::DateTime<chrono::Utc>,
    component: &str,
    kind: &str,
) {
    sqlx::query(
        "INSERT INTO service_records (vehicle_id, source, external_id, performed_at, workshop,
                                      component, kind, job)
         VALUES ($1, 'test', gen_random_uuid()::text, $2, 'WS-01', $3, $4, 'job')",
    )
    .bind(vehicle)
    .bind(at)
    .bind(component)
    .bind(kind)
    .execute(pool)
    .await
    .unwrap();
}

async fn job_hours(pool: &PgPool, component: &str) -> f64 {
    let minutes: i32 =
        sqlx::query_scalar("SELECT labour_minutes FROM jobs WHERE component = $1 AND is_default")
            .bind(component)
            .fetch_one(pool)
            .await
            .unwrap();
    f64::from(minutes) / 60.0
}

#[tokio::test]
async fn backtest_compares_the_preview_and_a_naive_forecast_with_the_work_that_arrived() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    booking_common::load_demo_workshops(&pool).await;
    // A Monday, so the first week is a whole working week at every demo workshop.
    let as_of = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
    let at = as_of.and_hms_opt(0, 0, 0).unwrap().and_utc();
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = model_common::vehicle(&pool, &model_common::vin(i), "ice", 2019).await;
        sqlx::query("UPDATE vehicle_profiles SET home_workshop = 'WS-01' WHERE vehicle_id = $1")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        ids.push(id);
    }
    // Before the date: one battery repair (the naive forecast's whole history) and a routine
    // service, which the preview does not forecast and the backtest does not count.
    record(
        &pool,
        ids[0],
        at - Duration::days(20),
        "battery_12v",
        "repair",
    )
    .await;
    record(&pool, ids[1], at - Duration::days(3), "oil", "routine").await;
    // After: two brake jobs in the first week, one preventive battery job in the third, and
    // one beyond the four weeks.
    record(&pool, ids[0], at + Duration::days(2), "brakes", "repair").await;
    record(
        &pool,
        ids[1],
        at + Duration::days(4),
        "brakes",
        "preventive",
    )
    .await;
    record(
        &pool,
        ids[2],
        at + Duration::days(15),
        "battery_12v",
        "preventive",
    )
    .await;
    record(&pool, ids[2], at + Duration::days(40), "brakes", "repair").await;

    // Every component scores 0.5 for every horizon: half a job per vehicle and component,
    // all of it in the first week (p30 and p90 add nothing beyond p7).
    let dir = tempfile::tempdir().unwrap();
    let artifact = model_common::constant_artifact("backtest-1", 0.5);
    let path = artifact.save(dir.path()).unwrap();

    let report = aftercare::backtest::run(&pool, &path, as_of, 4)
        .await
        .unwrap();
    let brakes = job_hours(&pool, "brakes").await;
    let battery = job_hours(&pool, "battery_12v").await;
    assert_eq!(report.vehicles_scored, 3);
    assert!((report.actual_hours - (2.0 * brakes + battery)).abs() < 1e-9);
    // Naive: one battery job in 8 weeks, so an eighth of one a week, for 4 weeks.
    assert!((report.naive_hours - battery / 2.0).abs() < 1e-9);
    let skill: String =
        sqlx::query_scalar("SELECT skill FROM jobs WHERE component = 'brakes' AND is_default")
            .fetch_one(&pool)
            .await
            .unwrap();
    let cell = |week: i64| {
        report
            .cells
            .iter()
            .find(|c| c.workshop == "WS-01" && c.skill == skill && c.week == week)
            .cloned()
            .unwrap_or_default()
    };
    // Brakes: 3 vehicles × 0.5 × the job, spread over the first 7 days; WS-01 is closed on
    // Sundays, so that day's seventh comes in on the next Monday, in week 1 (cells and days
    // are rounded to 0.01 h).
    let expected = 1.5 * brakes;
    assert!(
        (cell(0).preview_hours - expected * 6.0 / 7.0).abs() < 0.05,
        "{:?}",
        cell(0)
    );
    assert!(
        (cell(1).preview_hours - expected / 7.0).abs() < 0.05,
        "{:?}",
        cell(1)
    );
    assert!((cell(0).actual_hours - 2.0 * brakes).abs() < 1e-9);
    assert_eq!(cell(2).preview_hours, 0.0);
    let expected_wape = report
        .cells
        .iter()
        .map(|c| (c.preview_hours - c.actual_hours).abs())
        .sum::<f64>()
        / report.actual_hours;
    assert!((report.preview_wape - expected_wape).abs() < 1e-9);
    assert!(report.preview_wape.is_finite() && report.naive_wape.is_finite());
}

#[tokio::test]
async fn a_backtest_without_jobs_or_known_home_workshops_is_refused_with_the_fix() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let path = model_common::constant_artifact("backtest-2", 0.5)
        .save(dir.path())
        .unwrap();
    let as_of = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
    let refusal = |r: Result<_, aftercare::backtest::BacktestError>| match r {
        Ok(report) => panic!("expected a refusal, got {report:?}"),
        Err(e) => e.to_string(),
    };
    // Nothing loaded: no job can be priced.
    let id = model_common::vehicle(&pool, &model_common::vin(0), "ice", 2019).await;
    let e = refusal(aftercare::backtest::run(&pool, &path, as_of, 4).await);
    assert!(e.contains("aftercare workshops load"), "{e}");

    // Jobs loaded, but no vehicle has a home workshop.
    booking_common::load_demo_workshops(&pool).await;
    sqlx::query("UPDATE vehicle_profiles SET home_workshop = NULL")
        .execute(&pool)
        .await
        .unwrap();
    let e = refusal(aftercare::backtest::run(&pool, &path, as_of, 4).await);
    assert!(e.contains("no vehicle has a home workshop"), "{e}");

    // A home workshop the capacity model does not know.
    sqlx::query("UPDATE vehicle_profiles SET home_workshop = 'WS-99' WHERE vehicle_id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    let e = refusal(aftercare::backtest::run(&pool, &path, as_of, 4).await);
    assert!(e.contains("(WS-99) is configured"), "{e}");
}
