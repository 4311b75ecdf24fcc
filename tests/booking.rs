//! Booking against a real database: the exclusion constraints hold under a race of 50
//! accepts, losers get a 409 with alternatives, and the booking lifecycle (accept,
//! reschedule, cancel, complete) keeps offers, work orders, service records and the outbox
//! in step.

mod booking_common;
mod common;

use booking_common::*;
use chrono::{DateTime, Duration, Utc};
use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_accepts_book_exactly_the_feasible_number() {
    let api = api().await;
    race_workshop(&api.pool).await;
    let mut ids = Vec::new();
    for n in 0..50 {
        ids.push(offer_for(&api.pool, n, "WS-10").await);
    }
    // Two starts an hour apart for a 90-minute job: every window overlaps every other, so
    // each technician can take one of them; 3 brake technicians, 4 bays: 3 bookings.
    let (ok, lost) = accept_all_at_once(&api, &ids).await;
    assert_race_outcome(&api, &ok, &lost, 3).await;
    assert_eq!(lost.len(), 47);
    let techs: std::collections::BTreeSet<&str> = ok
        .iter()
        .map(|b| b["technician"].as_str().unwrap())
        .collect();
    assert_eq!(techs.len(), 3);
    assert!(
        ok.iter().all(|b| b["technician"] != "T4"),
        "only brake technicians"
    );
    assert!(ok
        .iter()
        .all(|b| b["work_order"].as_str().unwrap().starts_with("WO-")));
    assert_eq!(
        count(
            &api.pool,
            "SELECT count(*) FROM offers WHERE state = 'proposed'"
        )
        .await,
        47
    );
}

#[tokio::test]
async fn the_database_refuses_overlaps_whatever_the_application_does() {
    let api = api().await;
    race_workshop(&api.pool).await;
    let id = offer_for(&api.pool, 1, "WS-10").await;
    let start = day_after_tomorrow_at(9);
    let (s, b) = api
        .post(
            &format!("/v1/offers/{id}/accept"),
            &api.advisor,
            &json!({"start": start}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let vehicle = vehicle(&api.pool, &vin(2)).await;
    let insert = |bay: &'static str, tech: &'static str, from: DateTime<Utc>| {
        let pool = api.pool.clone();
        async move {
            sqlx::query(
                "INSERT INTO bookings (workshop_id, bay_id, technician_id, job_code, vehicle_id, during, status)
                 SELECT w.id, y.id, t.id, 'brake_pads_front', $4, tstzrange($5, $5 + interval '30 minutes'), 'booked'
                 FROM workshops w JOIN bays y ON y.workshop_id = w.id AND y.code = $1
                 JOIN technicians t ON t.workshop_id = w.id AND t.code = $2 WHERE w.code = $3",
            )
            .bind(bay)
            .bind(tech)
            .bind("WS-10")
            .bind(vehicle)
            .bind(from)
            .execute(&pool)
            .await
        }
    };
    let (bay, tech) = (
        b["bay"].as_str().unwrap().to_owned(),
        b["technician"].as_str().unwrap().to_owned(),
    );
    let other_bay = if bay == "B1" { "B2" } else { "B1" };
    let other_tech = if tech == "T1" { "T3" } else { "T1" };
    let bay: &'static str = Box::leak(bay.into_boxed_str());
    let tech: &'static str = Box::leak(tech.into_boxed_str());
    let code = |r: Result<_, sqlx::Error>| match r {
        Err(sqlx::Error::Database(e)) => e.code().map(|c| c.to_string()),
        _ => None,
    };
    // Same bay, other technician; other bay, same technician: both refused.
    assert_eq!(
        code(insert(bay, other_tech, start + Duration::minutes(30)).await).as_deref(),
        Some("23P01")
    );
    assert_eq!(
        code(insert(other_bay, tech, start + Duration::minutes(60)).await).as_deref(),
        Some("23P01")
    );
    // Back to back is fine: [start, end) ranges.
    assert!(insert(bay, tech, start + Duration::minutes(90))
        .await
        .is_ok());
    // A cancelled booking holds nothing.
    sqlx::query("UPDATE bookings SET status = 'cancelled'")
        .execute(&api.pool)
        .await
        .unwrap();
    assert!(insert(bay, tech, start).await.is_ok());
}

fn at(body: &Value, field: &str) -> DateTime<Utc> {
    body[field].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn accept_reschedule_cancel_complete() {
    let api = api().await;
    race_workshop(&api.pool).await;
    let id = offer_for(&api.pool, 1, "WS-10").await;
    let other = offer_for(&api.pool, 2, "WS-10").await;
    let start = day_after_tomorrow_at(9);
    let accept = |id: i64, start: DateTime<Utc>| {
        let api = &api;
        async move {
            api.post(
                &format!("/v1/offers/{id}/accept"),
                &api.advisor,
                &json!({"start": start}),
            )
            .await
        }
    };
    // Closed at 03:00 and off the half-hour grid: 409 with alternatives inside opening hours.
    for bad in [day_after_tomorrow_at(3), start + Duration::minutes(10)] {
        let (s, body) = accept(id, bad).await;
        assert_eq!(s, 409, "{body}");
        assert_eq!(body["error"]["code"], "window_unavailable");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("closed then"));
        for alt in body["alternatives"].as_array().unwrap() {
            let s: DateTime<Utc> = alt["start"].as_str().unwrap().parse().unwrap();
            assert!((8..18).contains(&chrono::Timelike::hour(&s)), "{alt}");
        }
        assert!(!body["alternatives"].as_array().unwrap().is_empty());
    }
    // In the past: refused with a reason.
    let (s, body) = accept(id, Utc::now() - Duration::hours(1)).await;
    assert_eq!(s, 409);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("past"),
        "{body}"
    );
    let (s, booked) = accept(id, start).await;
    assert_eq!(s, 200, "{booked}");
    assert_eq!(
        at(&booked, "end") - at(&booked, "start"),
        Duration::minutes(90)
    );
    // An offer is accepted once.
    let (s, body) = accept(id, start + Duration::hours(3)).await;
    assert_eq!(s, 409);
    assert_eq!(body["error"]["code"], "illegal_transition");
    let (s, body) = api
        .post(
            &format!("/v1/offers/{id}/decline"),
            &api.advisor,
            &json!({}),
        )
        .await;
    assert_eq!(
        (s.as_u16(), body["error"]["code"].as_str()),
        (409, Some("illegal_transition"))
    );
    let bid = booked["id"].as_i64().unwrap();
    // Reschedule to a free time.
    let later = start + Duration::hours(4);
    let (s, moved) = api
        .post(
            &format!("/v1/bookings/{bid}/reschedule"),
            &api.advisor,
            &json!({"start": later}),
        )
        .await;
    assert_eq!(s, 200, "{moved}");
    assert_eq!(at(&moved, "start"), later);
    assert_eq!(
        count(&api.pool, "SELECT count(*) FROM bookings").await,
        1,
        "moved, not copied"
    );
    // Fill the other technicians at 09:00 and move there: the slot is gone.
    let (s, _) = accept(other, start).await;
    assert_eq!(s, 200);
    let third = offer_for(&api.pool, 3, "WS-10").await;
    let (s, _) = accept(third, start).await;
    assert_eq!(s, 200);
    let fourth = offer_for(&api.pool, 4, "WS-10").await;
    let (s, _) = accept(fourth, start).await;
    assert_eq!(
        s, 200,
        "three brake technicians, one was free at 09:00 after the move"
    );
    let (s, body) = api
        .post(
            &format!("/v1/bookings/{bid}/reschedule"),
            &api.advisor,
            &json!({"start": start}),
        )
        .await;
    assert_eq!(s, 409, "{body}");
    assert_eq!(body["error"]["code"], "window_taken");
    assert!(!body["alternatives"].as_array().unwrap().is_empty());
    // Cancel: the offer is open again and can be booked anew.
    let (s, c) = api
        .post(
            &format!("/v1/bookings/{bid}/cancel"),
            &api.advisor,
            &json!({}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(c["status"], "cancelled");
    let (_, o) = api.get(&format!("/v1/offers/{id}"), &api.advisor).await;
    assert_eq!(o["state"], "notified");
    let (s, body) = api
        .post(
            &format!("/v1/bookings/{bid}/cancel"),
            &api.advisor,
            &json!({}),
        )
        .await;
    assert_eq!(
        (s.as_u16(), body["error"]["code"].as_str()),
        (409, Some("not_booked"))
    );
    let (s, again) = accept(id, later).await;
    assert_eq!(s, 200, "{again}");
    // Complete: the offer is done and the model gets its label.
    let again_id = again["id"].as_i64().unwrap();
    let (s, done) = api
        .post(
            &format!("/v1/bookings/{again_id}/complete"),
            &api.advisor,
            &json!({"kind": "repair"}),
        )
        .await;
    assert_eq!(s, 200, "{done}");
    let (_, o) = api.get(&format!("/v1/offers/{id}"), &api.advisor).await;
    assert_eq!(o["state"], "completed");
    let rec: (String, String, String, String) = sqlx::query_as(
        "SELECT source, kind, component, workshop FROM service_records WHERE external_id = $1",
    )
    .bind(format!("booking-{again_id}"))
    .fetch_one(&api.pool)
    .await
    .unwrap();
    assert_eq!(
        rec,
        (
            "aftercare".into(),
            "repair".into(),
            "brakes".into(),
            "WS-10".into()
        )
    );
    assert_eq!(
        count(
            &api.pool,
            "SELECT count(*) FROM work_orders WHERE status = 'completed'"
        )
        .await,
        1
    );
    let (s, _) = api
        .post(
            &format!("/v1/bookings/{again_id}/complete"),
            &api.advisor,
            &json!({}),
        )
        .await;
    assert_eq!(s, 409, "a visit is completed once");
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM outbox WHERE channel = 'webhook' ORDER BY id")
            .fetch_all(&api.pool)
            .await
            .unwrap();
    for k in [
        "booking.created",
        "booking.rescheduled",
        "booking.cancelled",
        "booking.completed",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
    // Bad input.
    for (path, body, status) in [
        (format!("/v1/offers/{id}/accept"), "{}".to_owned(), 400),
        (
            format!("/v1/offers/{id}/accept"),
            "{\"start\": \"tomorrow\"}".to_owned(),
            400,
        ),
        (
            format!("/v1/offers/{id}/accept"),
            "not json".to_owned(),
            400,
        ),
        ("/v1/offers/abc/accept".to_owned(), "{}".to_owned(), 400),
        (
            "/v1/offers/999999/accept".to_owned(),
            json!({"start": start}).to_string(),
            404,
        ),
        (
            format!("/v1/bookings/{again_id}/complete"),
            "{\"kind\": \"miracle\"}".to_owned(),
            400,
        ),
        ("/v1/bookings/0/cancel".to_owned(), "{}".to_owned(), 400),
    ] {
        let (s, b) = api
            .call(
                axum::http::Method::POST,
                &path,
                Some(&api.advisor),
                Some(&body),
            )
            .await;
        assert_eq!(s.as_u16(), status, "{path} {body}: {b}");
        assert!(!b["error"]["message"].as_str().unwrap().is_empty());
    }
    // Listing with a cursor.
    let (_, page) = api.get("/v1/bookings?limit=2", &api.advisor).await;
    assert_eq!(page["bookings"].as_array().unwrap().len(), 2);
    let (_, rest) = api
        .get(
            &format!(
                "/v1/bookings?limit=10&cursor={}",
                page["next_cursor"].as_str().unwrap()
            ),
            &api.advisor,
        )
        .await;
    assert_eq!(
        rest["bookings"].as_array().unwrap().len(),
        3,
        "5 bookings in all"
    );
    let (s, _) = api.get("/v1/offers?state=nonsense", &api.advisor).await;
    assert_eq!(s, 400);
}

/// Twenty writers racing raw INSERTs for one bay and technician, no application code in the
/// way: the database lets exactly one through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_raw_inserts_leave_one_booking() {
    let api = api().await;
    race_workshop(&api.pool).await;
    let v = vehicle(&api.pool, &vin(1)).await;
    let start = day_after_tomorrow_at(10);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(20)
        .connect(&api.db.url)
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20i64 {
        let pool = pool.clone();
        tasks.spawn(async move {
            sqlx::query(
                "INSERT INTO bookings (workshop_id, bay_id, technician_id, job_code, vehicle_id, during, status)
                 SELECT w.id, y.id, t.id, 'brake_pads_front', $1, tstzrange($2, $2 + interval '90 minutes'), 'booked'
                 FROM workshops w JOIN bays y ON y.workshop_id = w.id AND y.code = 'B1'
                 JOIN technicians t ON t.workshop_id = w.id AND t.code = 'T1' WHERE w.code = 'WS-10'",
            )
            .bind(v)
            .bind(start + Duration::minutes(i))
            .execute(&pool)
            .await
        });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(_) => ok += 1,
            Err(sqlx::Error::Database(e)) => {
                let code = e.code().unwrap_or_default().to_string();
                assert!(
                    code == "23P01" || code == "40P01",
                    "{code}: {}",
                    e.message()
                );
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(
        aftercare::store::booking::overlaps(&api.pool)
            .await
            .unwrap(),
        0
    );
    assert_eq!(count(&api.pool, "SELECT count(*) FROM bookings").await, 1);
}
