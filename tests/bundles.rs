//! One visit with several jobs (issue 16) against a real database: a car with two components
//! due within a week gets one offer (labour summed less the shared set-up, one price with a
//! line per job, reasons per component); accepting it books one bay and one technician for
//! the whole visit with a work order line per job and every part reserved; an owner declines
//! one job and keeps the other; jobs no technician can do together, or due far apart, stay
//! separate offers; 50 racing accepts of visits at one workshop never double-book; and offers
//! and work orders from before visits become one-job visits.

mod booking_common;
mod common;

use aftercare::config::OffersConfig;
use aftercare::metrics::Metrics;
use aftercare::offers::run_once;
use aftercare::store::offers::{self, NewJob, NewOffer};
use booking_common::*;
use chrono::{DateTime, Duration, Utc};
use common::*;
use serde_json::{json, Value};
use sqlx::PgPool;

/// Brake pads (90 min, 108.00 labour, pads 69.00) and two tyres (60 min, 54.00 labour, tyres
/// 2 x 98.00) share lift (10 min) and wheels off (15 min): the tyres leave both to the brakes.
const VISIT_MINUTES: i64 = 90 + 60 - 25;
const BRAKES_CENTS: i64 = 10_800 + 6_900;
const TYRES_LABOUR_CENTS: i64 = 5_400 - 5_400 * 25 / 60;
const TYRES_CENTS: i64 = TYRES_LABOUR_CENTS + 2 * 9_800;

async fn offer(api: &Api, id: i64) -> Value {
    let (s, v) = api.get(&format!("/v1/offers/{id}"), &api.advisor).await;
    assert_eq!(s, 200, "{v}");
    v
}

async fn offer_ids(pool: &PgPool, vehicle: i32) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM offers WHERE vehicle_id = $1 ORDER BY id")
        .bind(vehicle)
        .fetch_all(pool)
        .await
        .unwrap()
}

fn minutes_between(w: &Value) -> i64 {
    let s: DateTime<Utc> = w["start"].as_str().unwrap().parse().unwrap();
    let e: DateTime<Utc> = w["end"].as_str().unwrap().parse().unwrap();
    (e - s).num_minutes()
}

/// A car at WS-01 with worn pads (failure likely in 10 days) and worn tyres (12 days).
async fn car_with_pads_and_tyres_due(api: &Api, n: usize) -> i32 {
    let v = vehicle(&api.pool, &vin(n)).await;
    profile(&api.pool, v, Some("WS-01"), true).await;
    score(&api.pool, v, "brakes", [0.2, 0.7, 0.9], Some(10.0)).await;
    score(&api.pool, v, "tyres", [0.1, 0.6, 0.8], Some(12.0)).await;
    v
}

async fn technician_skills(pool: &PgPool, workshop: &str, code: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT t.skills FROM technicians t JOIN workshops w ON w.id = t.workshop_id
         WHERE w.code = $1 AND t.code = $2",
    )
    .bind(workshop)
    .bind(code)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn two_components_due_within_a_week_become_one_visit_booked_in_one_piece() {
    let api = api().await;
    let pool = &api.pool;
    let v = car_with_pads_and_tyres_due(&api, 1).await;
    let p = run_once(pool, &OffersConfig::default(), &Metrics::new(), Utc::now())
        .await
        .unwrap();
    assert_eq!((p.created, p.jobs), (1, 2), "{p:?}");
    let ids = offer_ids(pool, v).await;
    assert_eq!(ids.len(), 1, "one offer, not two");
    let o = offer(&api, ids[0]).await;

    // The brakes are due first and lead; each job keeps its component's risk and reasons.
    assert_eq!(o["component"], "brakes");
    assert_eq!(o["job"], "brake_pads_front");
    let jobs = o["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(
        (jobs[0]["component"].as_str(), jobs[1]["component"].as_str()),
        (Some("brakes"), Some("tyres"))
    );
    assert!((jobs[1]["risk"].as_f64().unwrap() - 0.6).abs() < 1e-6);
    assert_eq!(jobs[1]["horizon"], "p30");
    assert!(!jobs[1]["reasons"].as_array().unwrap().is_empty());
    // Labour summed less the shared set-up; one price with a line per job.
    assert_eq!(o["duration_minutes"], VISIT_MINUTES);
    assert_eq!(
        (jobs[0]["minutes"].as_i64(), jobs[1]["minutes"].as_i64()),
        (Some(90), Some(35))
    );
    assert_eq!(jobs[1]["shared_setup_minutes"], 25);
    assert_eq!(jobs[0]["price_cents"], BRAKES_CENTS);
    assert_eq!(jobs[1]["labour_price_cents"], TYRES_LABOUR_CENTS);
    assert_eq!(jobs[1]["price_cents"], TYRES_CENTS);
    assert_eq!(o["estimated_cost_cents"], BRAKES_CENTS + TYRES_CENTS);
    // Windows long enough for both jobs, before the brakes' likely failure.
    let windows = o["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 4);
    for w in windows {
        assert_eq!(minutes_between(w), VISIT_MINUTES, "{w}");
        let s: DateTime<Utc> = w["start"].as_str().unwrap().parse().unwrap();
        assert!(s < Utc::now() + Duration::days(10));
        let skills = technician_skills(pool, "WS-01", w["technician"].as_str().unwrap()).await;
        assert!(skills.contains(&"brakes".into()) && skills.contains(&"tyres".into()));
    }

    // The planner sees each job's hours on its skill, weighted by the acceptance prior (50%).
    let skill_hours = |preview: &Value, skill: &str, what: &str| -> f64 {
        preview["workshops"][0]["cells"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["skill"] == skill)
            .map(|c| c[what].as_f64().unwrap())
            .sum()
    };
    let (s, preview) = api
        .get("/v1/capacity/preview?workshop=WS-01&days=14", &api.planner)
        .await;
    assert_eq!(s, 200, "{preview}");
    assert!((skill_hours(&preview, "brakes", "offer_hours") - 0.5 * 90.0 / 60.0).abs() < 0.05);
    assert!((skill_hours(&preview, "tyres", "offer_hours") - 0.5 * 35.0 / 60.0).abs() < 0.05);

    // Accepting books one bay and one technician for the whole visit.
    let w = &windows[0];
    let (s, b) = api
        .post(
            &format!("/v1/offers/{}/accept", ids[0]),
            &api.advisor,
            &json!({"start": w["start"]}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(minutes_between(&b), VISIT_MINUTES);
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM bookings WHERE status = 'booked'"
        )
        .await,
        1
    );
    let skills = technician_skills(pool, "WS-01", b["technician"].as_str().unwrap()).await;
    assert!(skills.contains(&"brakes".into()) && skills.contains(&"tyres".into()));
    let bay_caps: Vec<String> = sqlx::query_scalar(
        "SELECT y.capabilities FROM bays y JOIN workshops w ON w.id = y.workshop_id
         WHERE w.code = 'WS-01' AND y.code = $1",
    )
    .bind(b["bay"].as_str().unwrap())
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(bay_caps.contains(&"lift".into()));
    // One work order, a line per job, every part reserved.
    let lines = b["jobs"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["job"], "brake_pads_front");
    assert_eq!(lines[1]["job"], "tyres_replace_pair");
    assert_eq!(
        lines[1]["parts"],
        json!([{"sku": "TYRE-205-55R16", "quantity": 2}])
    );
    assert_eq!(b["estimated_cost_cents"], BRAKES_CENTS + TYRES_CENTS);
    assert_eq!(count(pool, "SELECT count(*) FROM work_orders").await, 1);
    let (s, slots) = api
        .get(
            "/v1/workshops/WS-01/slots?job=tyres_replace_pair",
            &api.planner,
        )
        .await;
    assert_eq!(s, 200);
    let reserved = |sku: &str| {
        slots["parts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["sku"] == sku)
            .map(|p| p["reserved"].as_i64().unwrap())
    };
    assert_eq!(reserved("TYRE-205-55R16"), Some(2));
    let (_, pads) = api
        .get(
            "/v1/workshops/WS-01/slots?job=brake_pads_front",
            &api.planner,
        )
        .await;
    assert_eq!(pads["parts"][0]["reserved"], 1);
    // Booked: each job's hours on its skill.
    let (_, preview) = api
        .get("/v1/capacity/preview?workshop=WS-01&days=14", &api.planner)
        .await;
    assert!((skill_hours(&preview, "brakes", "booked_hours") - 1.5).abs() < 0.011);
    assert!((skill_hours(&preview, "tyres", "booked_hours") - 35.0 / 60.0).abs() < 0.011);
    assert_eq!(skill_hours(&preview, "tyres", "offer_hours"), 0.0);
    // The booking event carries the lines.
    let event: Value = sqlx::query_scalar(
        "SELECT payload FROM outbox WHERE kind = 'booking.created' AND channel = 'webhook'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(event["data"]["jobs"].as_array().unwrap().len(), 2);

    // Moved to another of the offered windows: still the whole visit in one piece.
    let (s, moved) = api
        .post(
            &format!("/v1/bookings/{}/reschedule", b["id"]),
            &api.advisor,
            &json!({"start": windows[1]["start"]}),
        )
        .await;
    assert_eq!(s, 200, "{moved}");
    assert_eq!(moved["start"], windows[1]["start"]);
    assert_eq!(minutes_between(&moved), VISIT_MINUTES);
    assert_eq!(moved["jobs"].as_array().unwrap().len(), 2);

    // Done: one service record per job, one visit in the KPIs.
    let (s, _) = api
        .post(
            &format!("/v1/bookings/{}/complete", b["id"]),
            &api.advisor,
            &json!({"kind": "preventive"}),
        )
        .await;
    assert_eq!(s, 200);
    let records: Vec<(String, String)> = sqlx::query_as(
        "SELECT component, external_id FROM service_records WHERE source = 'aftercare' ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let booking = b["id"].as_i64().unwrap();
    assert_eq!(
        records,
        vec![
            ("brakes".to_owned(), format!("booking-{booking}")),
            ("tyres".to_owned(), format!("booking-{booking}-2")),
        ]
    );
    let (s, k) = api.get("/v1/kpis", &api.planner).await;
    assert_eq!(s, 200, "{k}");
    assert_eq!(
        (k["visits"]["visits"].as_i64(), k["visits"]["jobs"].as_i64()),
        (Some(1), Some(2))
    );
    assert_eq!(k["visits"]["booked_by_aftercare"], 1);
    assert_eq!(
        (
            k["conversion"]["offers"].as_i64(),
            k["conversion"]["booked"].as_i64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(
        k["conversion"]["jobs"],
        json!({"offered": 2, "booked": 2, "declined": 0})
    );
}

#[tokio::test]
async fn an_owner_declines_one_job_and_keeps_the_other() {
    let api = api().await;
    let pool = &api.pool;
    let cfg = OffersConfig::default();
    let m = Metrics::new();
    let v = car_with_pads_and_tyres_due(&api, 2).await;
    run_once(pool, &cfg, &m, Utc::now()).await.unwrap();
    let id = offer_ids(pool, v).await[0];
    let path = |c: &str| format!("/v1/offers/{id}/jobs/{c}/decline");

    // Declining the brakes (which lead): the tyres remain, now with their own set-up.
    let (s, o) = api.post(&path("brakes"), &api.advisor, &json!({})).await;
    assert_eq!(s, 200, "{o}");
    assert_eq!(o["state"], "proposed");
    assert_eq!(o["component"], "tyres", "the job that remains leads");
    assert_eq!(o["job"], "tyres_replace_pair");
    assert_eq!(o["duration_minutes"], 60);
    assert_eq!(o["estimated_cost_cents"], 5_400 + 2 * 9_800);
    let jobs = o["jobs"].as_array().unwrap();
    assert!(jobs[0]["declined_at"].is_string());
    assert!(jobs[1]["declined_at"].is_null());
    assert_eq!(
        (
            jobs[1]["minutes"].as_i64(),
            jobs[1]["shared_setup_minutes"].as_i64()
        ),
        (Some(60), Some(0))
    );
    for w in o["windows"].as_array().unwrap() {
        assert_eq!(minutes_between(w), 60, "{w}");
    }
    let event: Value = sqlx::query_scalar(
        "SELECT payload FROM outbox WHERE kind = 'offer.job_declined' AND channel = 'webhook'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(event["data"]["declined_job"], "brakes");
    // Twice is refused; a job the offer does not have, or no component at all, too.
    let (s, e) = api.post(&path("brakes"), &api.advisor, &json!({})).await;
    assert_eq!(
        (s.as_u16(), e["error"]["code"].as_str()),
        (409, Some("job_declined"))
    );
    let (s, _) = api.post(&path("oil"), &api.advisor, &json!({})).await;
    assert_eq!(s, 404);
    let (s, e) = api.post(&path("gearbox"), &api.advisor, &json!({})).await;
    assert_eq!(
        (s.as_u16(), e["error"]["code"].as_str()),
        (400, Some("invalid_parameter"))
    );
    let (s, _) = api
        .post(
            "/v1/offers/999999/jobs/brakes/decline",
            &api.advisor,
            &json!({}),
        )
        .await;
    assert_eq!(s, 404);

    // The declined brakes cool down; the tyres stay offered (no second offer for either).
    let p = run_once(pool, &cfg, &m, Utc::now()).await.unwrap();
    assert_eq!(p.created, 0, "{p:?}");
    assert_eq!(p.skipped.get("cooldown").copied(), Some(1));
    assert_eq!(p.skipped.get("open_offer").copied(), Some(1));

    // The tyres alone can be booked for their own hour.
    let start = o["windows"][0]["start"].clone();
    let (s, b) = api
        .post(
            &format!("/v1/offers/{id}/accept"),
            &api.advisor,
            &json!({"start": start}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(minutes_between(&b), 60);
    assert_eq!(b["jobs"].as_array().unwrap().len(), 1);
    // A booked visit's jobs are not declined one by one (cancel the booking first).
    let (s, e) = api.post(&path("tyres"), &api.advisor, &json!({})).await;
    assert_eq!(
        (s.as_u16(), e["error"]["code"].as_str()),
        (409, Some("illegal_transition"))
    );
}

#[tokio::test]
async fn declining_the_last_job_declines_the_offer() {
    let api = api().await;
    let pool = &api.pool;
    let m = Metrics::new();
    let v = car_with_pads_and_tyres_due(&api, 3).await;
    run_once(pool, &OffersConfig::default(), &m, Utc::now())
        .await
        .unwrap();
    let id = offer_ids(pool, v).await[0];
    for c in ["tyres", "brakes"] {
        let (s, o) = api
            .post(
                &format!("/v1/offers/{id}/jobs/{c}/decline"),
                &api.advisor,
                &json!({}),
            )
            .await;
        assert_eq!(s, 200, "{o}");
    }
    let o = offer(&api, id).await;
    assert_eq!(o["state"], "declined");
    assert!(o["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["declined_at"].is_string()));
    assert_eq!(
        count(pool, "SELECT count(*) FROM offer_jobs WHERE open").await,
        0
    );
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM outbox WHERE kind = 'offer.declined' AND channel = 'webhook'"
        )
        .await,
        1
    );
    let (s, k) = api.get("/v1/kpis", &api.planner).await;
    assert_eq!(s, 200);
    assert_eq!(
        k["conversion"]["jobs"],
        json!({"offered": 2, "booked": 0, "declined": 2})
    );
    assert_eq!(k["conversion"]["declined"], 1);
}

#[tokio::test]
async fn jobs_no_technician_can_do_together_or_due_far_apart_stay_separate_offers() {
    let api = api().await;
    let pool = &api.pool;
    // Oil (engine) and tyres: nobody at WS-01 has both skills.
    let a = vehicle(pool, &vin(10)).await;
    profile(pool, a, Some("WS-01"), true).await;
    score(pool, a, "oil", [0.1, 0.6, 0.9], Some(9.0)).await;
    score(pool, a, "tyres", [0.1, 0.6, 0.9], Some(10.0)).await;
    // Brakes due in 4 days, oil only at the 90-day horizon (windows up to 21 days).
    let b = vehicle(pool, &vin(11)).await;
    profile(pool, b, Some("WS-01"), true).await;
    score(pool, b, "brakes", [0.5, 0.8, 0.9], Some(4.0)).await;
    score(pool, b, "oil", [0.1, 0.2, 0.8], None).await;
    let p = run_once(pool, &OffersConfig::default(), &Metrics::new(), Utc::now())
        .await
        .unwrap();
    assert_eq!((p.created, p.jobs), (4, 4), "{p:?}");
    for v in [a, b] {
        let ids = offer_ids(pool, v).await;
        assert_eq!(ids.len(), 2);
        for id in ids {
            assert_eq!(offer(&api, id).await["jobs"].as_array().unwrap().len(), 1);
        }
    }
    // With no span, even jobs due together are separate offers.
    let c = car_with_pads_and_tyres_due(&api, 12).await;
    let cfg = OffersConfig {
        bundle_within_days: 0.0,
        ..OffersConfig::default()
    };
    run_once(pool, &cfg, &Metrics::new(), Utc::now())
        .await
        .unwrap();
    assert_eq!(offer_ids(pool, c).await.len(), 2);
}

/// WS-11, open every day 08:00-18:00 UTC: 4 lift bays; three technicians do brakes and
/// tyres, one brakes only; parts plentiful.
async fn bundle_race_workshop(pool: &PgPool) {
    load_open_all_week(
        pool,
        r#"
[[workshop]]
code = "WS-11"
name = "Visit race"
time_zone = "UTC"
stock = [{ sku = "BRK-PAD-FRONT", on_hand = 500, lead_time_days = 3 }, { sku = "TYRE-205-55R16", on_hand = 1000, lead_time_days = 2 }]
bay = [{ code = "B1", capabilities = ["lift"] }, { code = "B2", capabilities = ["lift"] }, { code = "B3", capabilities = ["lift"] }, { code = "B4", capabilities = ["lift"] }]
technician = [
  { code = "T1", name = "One", skills = ["brakes", "tyres"] },
  { code = "T2", name = "Two", skills = ["brakes", "tyres", "diagnostics"] },
  { code = "T3", name = "Three", skills = ["tyres", "brakes"] },
  { code = "T4", name = "Four", skills = ["brakes"] },
]
"#,
    )
    .await;
}

/// An open visit offer (brake pads and tyres) for test vehicle `n` at `workshop`.
async fn visit_offer(pool: &PgPool, n: usize, workshop: &str) -> i64 {
    let lead = brake_offer_for(pool, n, workshop).await;
    let job = |component: &str, code: &str, minutes, labour, parts| NewJob {
        component: component.into(),
        job_code: code.into(),
        horizon: "p30",
        risk: 0.7,
        urgency_days: Some(20.0),
        model_version: "test".into(),
        risk_scored_at: Utc::now(),
        reasons: json!([]),
        minutes,
        shared_setup_minutes: 0,
        labour_price_cents: labour,
        parts_price_cents: parts,
    };
    let jobs = [
        job("brakes", "brake_pads_front", 90, 10_800, 6_900),
        job(
            "tyres",
            "tyres_replace_pair",
            35,
            TYRES_LABOUR_CENTS,
            2 * 9_800,
        ),
    ];
    let o = NewOffer {
        duration_minutes: VISIT_MINUTES as i32,
        estimated_cost_cents: BRAKES_CENTS + TYRES_CENTS,
        ..lead
    };
    offers::create_visit(pool, &o, &jobs)
        .await
        .unwrap()
        .unwrap()
        .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_racing_accepts_of_visits_at_one_workshop_never_double_book() {
    let api = api().await;
    bundle_race_workshop(&api.pool).await;
    let mut ids = Vec::new();
    for n in 0..50 {
        ids.push(visit_offer(&api.pool, n, "WS-11").await);
    }
    // Starts an hour apart for a 125-minute visit: every window overlaps every other, so
    // each of the three technicians who do brakes and tyres takes one: 3 bookings.
    let (ok, lost) = accept_all_at_once(&api, &ids).await;
    assert_race_outcome(&api, &ok, &lost, 3).await;
    for body in &ok {
        assert_eq!(minutes_between(body), VISIT_MINUTES);
        assert_ne!(body["technician"], "T4", "T4 does no tyres");
        assert_eq!(body["jobs"].as_array().unwrap().len(), 2);
    }
    for alt in lost
        .iter()
        .flat_map(|b| b["alternatives"].as_array().unwrap())
    {
        assert_eq!(minutes_between(alt), VISIT_MINUTES, "{alt}");
    }
    let pool = &api.pool;
    assert_eq!(
        count(pool, "SELECT count(*) FROM work_order_lines").await,
        6
    );
    assert_eq!(
        count(pool, "SELECT count(*) FROM offer_jobs WHERE open").await,
        100,
        "booked and proposed visits keep their jobs open"
    );
}

#[tokio::test]
async fn offers_and_work_orders_from_before_visits_become_one_job_visits() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    load_demo_workshops(&pool).await;
    // Back to version 21: no visits yet.
    sqlx::raw_sql(
        "DROP TRIGGER offer_jobs_follow_offer ON offers;
         DROP FUNCTION offer_jobs_follow_offer();
         DROP TABLE offer_jobs, work_order_lines, job_setup;
         CREATE UNIQUE INDEX offers_one_open ON offers (vehicle_id, component)
             WHERE state IN ('proposed', 'notified', 'booked');
         DELETE FROM aftercare_migrations WHERE version = 41;",
    )
    .execute(&pool)
    .await
    .unwrap();
    let v = vehicle(&pool, &vin(1)).await;
    let insert = "INSERT INTO offers (vehicle_id, component, state, horizon, risk, model_version,
                      risk_scored_at, job_code, workshop_id, duration_minutes,
                      estimated_cost_cents, expires_at, decided_at)
                  SELECT $1, $2, $3, 'p30', 0.7, 'old', now(), $4, w.id, 90, 17700,
                         now() + interval '7 days', CASE WHEN $3 = 'declined' THEN now() END
                  FROM workshops w WHERE w.code = 'WS-01' RETURNING id";
    let mut ids = Vec::new();
    for (component, state, job) in [
        ("brakes", "booked", "brake_pads_front"),
        ("tyres", "declined", "tyres_replace_pair"),
    ] {
        let id: i64 = sqlx::query_scalar(insert)
            .bind(v)
            .bind(component)
            .bind(state)
            .bind(job)
            .fetch_one(&pool)
            .await
            .unwrap();
        ids.push(id);
    }
    let booking: i64 = sqlx::query_scalar(
        "INSERT INTO bookings (workshop_id, bay_id, technician_id, job_code, vehicle_id, offer_id,
                               during, status)
         SELECT w.id, (SELECT id FROM bays WHERE workshop_id = w.id AND code = 'B1'),
                (SELECT id FROM technicians WHERE workshop_id = w.id AND code = 'T1'),
                'brake_pads_front', $1, $2,
                tstzrange(now() + interval '1 day', now() + interval '1 day 90 minutes'), 'booked'
         FROM workshops w WHERE w.code = 'WS-01' RETURNING id",
    )
    .bind(v)
    .bind(ids[0])
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO work_orders (booking_id, number, status, estimated_cost_cents)
         VALUES ($1, 'WO-OLD', 'open', 17700)",
    )
    .bind(booking)
    .execute(&pool)
    .await
    .unwrap();

    aftercare::store::migrate(&pool).await.unwrap();
    let lines: Vec<(i64, String, i32, i64, i64, bool, bool)> = sqlx::query_as(
        "SELECT offer_id, component, minutes, labour_price_cents, parts_price_cents,
                declined_at IS NOT NULL, open
         FROM offer_jobs ORDER BY offer_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        lines,
        vec![
            (ids[0], "brakes".into(), 90, 10_800, 6_900, false, true),
            (ids[1], "tyres".into(), 90, 5_400, 12_300, true, false),
        ]
    );
    let work: Vec<(String, i32, i64, i64, Value)> = sqlx::query_as(
        "SELECT job_code, minutes, labour_price_cents, parts_price_cents, parts FROM work_order_lines",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        work,
        vec![(
            "brake_pads_front".into(),
            90,
            10_800,
            6_900,
            json!([{"sku": "BRK-PAD-FRONT", "quantity": 1}])
        )]
    );
    // The booked brakes stay the one open job for the component.
    let again = offers::create(&pool, &aftercare::bench::api::brake_offer(v, 1, "new"))
        .await
        .unwrap();
    assert!(again.is_none(), "one open job per vehicle and component");
}

#[tokio::test]
async fn the_planner_api_keeps_a_jobs_shared_set_up_and_refuses_nonsense() {
    let api = api().await;
    let (s, jobs) = api.get("/v1/jobs", &api.planner).await;
    assert_eq!(s, 200);
    let tyres = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["code"] == "tyres_replace_pair")
        .unwrap()
        .clone();
    assert_eq!(
        tyres["setup"],
        json!([{"step": "lift", "minutes": 10}, {"step": "wheels_off", "minutes": 15}]),
        "from deploy/workshops.toml"
    );
    let mut job = tyres.clone();
    job["setup"] = json!([{"step": "wheels_off", "minutes": 20}]);
    let (s, stored) = api
        .put("/v1/jobs/tyres_replace_pair", &api.planner, &job)
        .await;
    assert_eq!(s, 200, "{stored}");
    let (_, jobs) = api.get("/v1/jobs", &api.planner).await;
    let now: Vec<&Value> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["code"] == "tyres_replace_pair")
        .collect();
    assert_eq!(
        now[0]["setup"],
        json!([{"step": "wheels_off", "minutes": 20}])
    );
    for bad in [
        json!([{"step": "wheels_off", "minutes": 61}]),
        json!([{"step": "lift", "minutes": 40}, {"step": "wheels_off", "minutes": 30}]),
        json!([{"step": "lift", "minutes": 5}, {"step": "lift", "minutes": 5}]),
        json!([{"step": "Lift!", "minutes": 5}]),
        json!([{"step": "lift", "minutes": 0}]),
    ] {
        let mut job = tyres.clone();
        job["setup"] = bad.clone();
        let (s, e) = api
            .put("/v1/jobs/tyres_replace_pair", &api.planner, &job)
            .await;
        assert_eq!(s, 400, "{bad}: {e}");
        assert_eq!(e["error"]["code"], "invalid_body");
    }
}
