//! KPIs from known data: risk-to-offer time, conversion, booked share of visits, bay
//! utilisation (including a 23-hour DST day), fault hotspots, owners without a visit.

mod booking_common;
mod common;

use booking_common::*;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;

async fn record(pool: &PgPool, vehicle: i32, n: usize, kind: &str, days_ago: i64) {
    sqlx::query(
        "INSERT INTO service_records (vehicle_id, source, external_id, performed_at, component, kind, job)
         VALUES ($1, 'dealer-dms', $2, now() - $3 * interval '1 day', 'brakes', $4, 'brake_pads_front')",
    )
    .bind(vehicle)
    .bind(format!("job-{n}"))
    .bind(days_ago as f64)
    .bind(kind)
    .execute(pool)
    .await
    .unwrap();
}

fn enc_q(t: DateTime<Utc>) -> String {
    enc(t)
}

#[tokio::test]
async fn kpis_from_known_data() {
    let api = api().await;
    let pool = &api.pool;
    race_workshop(pool).await;
    // Four offers whose scores crossed 10, 20, 30 and 40 minutes before the offer.
    let mut ids = Vec::new();
    for n in 0..4 {
        let id = offer_for(pool, n, "WS-10").await;
        sqlx::query("UPDATE offers SET risk_scored_at = created_at - $2 * interval '1 minute' WHERE id = $1")
            .bind(id)
            .bind(10.0 * (n as f64 + 1.0))
            .execute(pool)
            .await
            .unwrap();
        ids.push(id);
    }
    let start = day_after_tomorrow_at(9);
    let (s, booked) = api
        .post(
            &format!("/v1/offers/{}/accept", ids[0]),
            &api.advisor,
            &json!({"start": start}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = api
        .post(
            &format!("/v1/offers/{}/decline", ids[1]),
            &api.advisor,
            &json!({}),
        )
        .await;
    assert_eq!(s, 200);
    sqlx::query("UPDATE offers SET state = 'expired' WHERE id = $1")
        .bind(ids[2])
        .execute(pool)
        .await
        .unwrap();
    // The booked visit is done (an Aftercare visit), and three repairs came from elsewhere.
    let (s, _) = api
        .post(
            &format!("/v1/bookings/{}/complete", booked["id"]),
            &api.advisor,
            &json!({}),
        )
        .await;
    assert_eq!(s, 200);
    // Owners: vehicles 0..3 are Megane, vehicle 4 a 208 (vehicles exist from offer_for).
    let vid = |n: usize| {
        let pool = pool.clone();
        async move { vehicle(&pool, &vin(n)).await }
    };
    for n in 0..5 {
        profile(pool, vid(n).await, Some("WS-10"), true).await;
    }
    sqlx::query(
        "UPDATE vehicle_profiles SET model = '208', make = 'Peugeot' WHERE vehicle_id = $1",
    )
    .bind(vid(4).await)
    .execute(pool)
    .await
    .unwrap();
    record(pool, vid(1).await, 1, "repair", 2).await;
    record(pool, vid(2).await, 2, "repair", 3).await;
    record(pool, vid(4).await, 3, "repair", 4).await;
    record(pool, vid(3).await, 4, "routine", 200).await;

    let from = Utc::now() - Duration::days(30);
    let to = Utc::now() + Duration::days(5);
    let (s, k) = api
        .get(
            &format!("/v1/kpis?from={}&to={}", enc_q(from), enc_q(to)),
            &api.planner,
        )
        .await;
    assert_eq!(s, 200, "{k}");
    let f = |v: &Value| v.as_f64().unwrap();
    assert_eq!(k["risk_to_offer"]["offers"], 4);
    assert!(
        (f(&k["risk_to_offer"]["mean_seconds"]) - 1500.0).abs() < 1.0,
        "{k}"
    );
    assert!((f(&k["risk_to_offer"]["median_seconds"]) - 1500.0).abs() < 1.0);
    assert_eq!(k["conversion"]["offers"], 4);
    assert_eq!(k["conversion"]["booked"], 1);
    assert_eq!(k["conversion"]["declined"], 1);
    assert_eq!(k["conversion"]["expired"], 1);
    assert!((f(&k["conversion"]["rate"]) - 0.25).abs() < 1e-9);
    // Visits (routine services aside): one booked here, three elsewhere.
    assert_eq!(k["visits"]["visits"], 4);
    assert!((f(&k["visits"]["share"]) - 0.25).abs() < 1e-9);
    // Hotspots: the 208's one repair in one car beats the Megane's two in four.
    let h = k["fault_hotspots"].as_array().unwrap();
    assert_eq!(
        (h[0]["model"].as_str(), f(&h[0]["failure_rate"])),
        (Some("208"), 1.0)
    );
    assert_eq!(h[1]["model"], "Megane");
    assert!((f(&h[1]["failure_rate"]) - 0.5).abs() < 1e-9);
    // Owners with no visit in 90 days: vehicle 3 (routine 200 days ago) only; 0 was
    // serviced by the completed booking.
    assert_eq!(k["owners_without_visit_90d"], 1);
    assert_eq!(k["owners_without_visit_90d_sample"][0], vin(3));

    // Bay utilisation over one UTC day at WS-10 (4 bays, 08:00-18:00): the 90-minute visit.
    let day = start - Duration::hours(9);
    let (_, k) = api
        .get(
            &format!(
                "/v1/kpis?from={}&to={}",
                enc_q(day),
                enc_q(day + Duration::days(1))
            ),
            &api.planner,
        )
        .await;
    let ws10 = k["bay_utilisation"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["workshop"] == "WS-10")
        .unwrap()
        .clone();
    assert_eq!(f(&ws10["open_bay_minutes"]), 4.0 * 600.0);
    assert_eq!(f(&ws10["booked_minutes"]), 90.0);
    assert!((f(&ws10["utilisation"]) - 90.0 / 2400.0).abs() < 1e-9);

    // A workshop open 00:00-06:00 local on Sundays in Berlin: 5 hours on the spring-forward
    // night, 7 on the fall-back night.
    let ws = json!({"code": "WS-11", "name": "Night shift", "time_zone": "Europe/Berlin",
                    "hours": {"sun": ["00:00-06:00"]}, "bay": [{"code": "B1"}]});
    let (s, _) = api.put("/v1/workshops/WS-11", &api.planner, &ws).await;
    assert_eq!(s, 200);
    for (from, to, minutes) in [
        ("2026-03-28T12:00:00Z", "2026-03-29T12:00:00Z", 300.0),
        ("2026-10-24T12:00:00Z", "2026-10-25T12:00:00Z", 420.0),
        ("2026-11-28T12:00:00Z", "2026-11-29T12:00:00Z", 360.0),
    ] {
        let (_, k) = api
            .get(
                &format!("/v1/kpis?from={}&to={}", from.replace('+', "%2B"), to),
                &api.planner,
            )
            .await;
        let u = k["bay_utilisation"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["workshop"] == "WS-11")
            .unwrap()
            .clone();
        assert_eq!(f(&u["open_bay_minutes"]), minutes, "{from}");
    }
    // Bad periods.
    for q in [
        "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
        "from=2024-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "from=yesterday",
    ] {
        let (s, b) = api.get(&format!("/v1/kpis?{q}"), &api.planner).await;
        assert_eq!(s, 400, "{q}: {b}");
    }
}
