//! The offer worker against a real database: every policy rule (thresholds per component and
//! horizon, one open offer, cooldown, consent and opt-out, expiry, reminders by time,
//! distance or risk with soft and hard levels, the silent-vehicle alarm), idempotence with
//! two workers at once, and windows that avoid holidays and come before the likely failure.

mod booking_common;
mod common;

use aftercare::config::OffersConfig;
use aftercare::metrics::Metrics;
use aftercare::offers::run_once;
use booking_common::*;
use chrono::{DateTime, Duration, Utc};
use common::*;
use serde_json::Value;
use sqlx::PgPool;

async fn offers_of(pool: &PgPool, vehicle: i32) -> Vec<(i64, String, String)> {
    sqlx::query_as("SELECT id, component, state FROM offers WHERE vehicle_id = $1 ORDER BY id")
        .bind(vehicle)
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn offer_json(api: &Api, id: i64) -> Value {
    let (s, v) = api.get(&format!("/v1/offers/{id}"), &api.advisor).await;
    assert_eq!(s, 200);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_turns_risk_into_offers_once_and_follows_the_policy() {
    let api = api().await;
    let pool = &api.pool;
    let m = Metrics::new();
    let cfg = OffersConfig::default();
    let v: Vec<i32> = {
        let mut v = Vec::new();
        for n in 0..6 {
            v.push(vehicle(pool, &vin(n)).await);
        }
        v
    };
    profile(pool, v[0], Some("WS-01"), true).await;
    profile(pool, v[1], Some("WS-01"), true).await;
    profile(pool, v[2], Some("WS-01"), false).await; // opted out
                                                     // v[3]: no profile at all
    profile(pool, v[4], Some("WS-02"), true).await;
    profile(pool, v[5], None, true).await; // no home workshop, no default configured
    score(pool, v[0], "brakes", [0.2, 0.7, 0.9], Some(20.0)).await;
    score(pool, v[1], "brakes", [0.1, 0.2, 0.3], None).await; // below every threshold
    score(pool, v[2], "brakes", [0.9, 0.9, 0.9], Some(3.0)).await;
    score(pool, v[3], "brakes", [0.9, 0.9, 0.9], Some(3.0)).await;
    score(pool, v[4], "tyres", [0.5, 0.8, 0.9], Some(5.0)).await;
    score(pool, v[5], "oil", [0.9, 0.9, 0.9], Some(5.0)).await;
    let now = Utc::now();
    // Two workers at once create each offer once.
    let (a, b) = tokio::join!(run_once(pool, &cfg, &m, now), run_once(pool, &cfg, &m, now));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.created + b.created, 2, "{a:?} {b:?}");
    assert_eq!(count(pool, "SELECT count(*) FROM offers").await, 2);
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM outbox WHERE kind = 'offer.created'"
        )
        .await,
        4,
        "webhook + MQTT per offer"
    );
    let skipped = |why: &str| {
        a.skipped.get(why).copied().unwrap_or(0) + b.skipped.get(why).copied().unwrap_or(0)
    };
    assert_eq!(skipped("opted_out"), 2);
    assert_eq!(skipped("no_profile"), 2);
    assert_eq!(skipped("no_workshop"), 2);

    // v0: brakes at p30 (p7 0.2 < 0.35): the offer says what, why, how long, how much, when.
    let o = offers_of(pool, v[0]).await;
    assert_eq!(o.len(), 1);
    let offer = offer_json(&api, o[0].0).await;
    assert_eq!(offer["component"], "brakes");
    assert_eq!(offer["horizon"], "p30");
    assert!((offer["risk"].as_f64().unwrap() - 0.7).abs() < 1e-6);
    assert_eq!(offer["job"], "brake_pads_front");
    assert_eq!(offer["duration_minutes"], 90);
    assert_eq!(offer["estimated_cost_cents"], 10_800 + 6_900);
    let reasons: Vec<&str> = offer["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["feature"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        vec!["dtc_C1A20", "pad_wear_max", "km_since_service"],
        "top three factors, strongest first"
    );
    let windows = offer["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 4);
    let days: std::collections::BTreeSet<&str> = windows
        .iter()
        .map(|w| &w["local_start"].as_str().unwrap()[..10])
        .collect();
    assert_eq!(days.len(), 4, "spread over four days");
    // v4: failure likely in 5 days: every window starts before then.
    let o4 = offers_of(pool, v[4]).await;
    let offer4 = offer_json(&api, o4[0].0).await;
    for w in offer4["windows"].as_array().unwrap() {
        let s: DateTime<Utc> = w["start"].as_str().unwrap().parse().unwrap();
        assert!(s >= now && s < now + Duration::days(5), "{w}");
    }

    // Running again: one open offer per vehicle and component.
    let p = run_once(pool, &cfg, &m, Utc::now()).await.unwrap();
    assert_eq!(p.created, 0);
    assert_eq!(p.skipped.get("open_offer").copied(), Some(2));

    // Decline, then the cooldown holds; with no cooldown a new offer follows.
    let (s, _) = api
        .post(
            &format!("/v1/offers/{}/decline", o[0].0),
            &api.advisor,
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(s, 200);
    let p = run_once(pool, &cfg, &m, Utc::now()).await.unwrap();
    assert_eq!(p.created, 0);
    assert_eq!(p.skipped.get("cooldown").copied(), Some(1));
    // Fifteen days on: the cooldown is over (a new offer for v0), and v4's unanswered
    // offer expired after its 14 days, so v4 gets a fresh one.
    let p = run_once(pool, &cfg, &m, Utc::now() + Duration::days(15))
        .await
        .unwrap();
    assert_eq!((p.created, p.expired), (2, 1), "{p:?}");
    assert_eq!(offers_of(pool, v[0]).await.len(), 2);
    assert_eq!(offers_of(pool, v[4]).await[0].2, "expired");

    // Opting out expires the open offer and stops new ones.
    profile(pool, v[4], Some("WS-02"), false).await;
    let p = run_once(pool, &cfg, &m, Utc::now()).await.unwrap();
    assert_eq!((p.created, p.expired), (0, 1));
    assert!(offers_of(pool, v[4]).await.iter().all(|o| o.2 == "expired"));
    let p = run_once(pool, &cfg, &m, Utc::now() + Duration::days(31))
        .await
        .unwrap();
    assert_eq!(
        (p.created, p.expired),
        (1, 1),
        "v0's second offer expired, a third follows; v4 none"
    );
    assert_eq!(offers_of(pool, v[4]).await.len(), 2);
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM outbox WHERE kind = 'offer.expired' AND channel = 'webhook'"
        )
        .await,
        3
    );
    // A thresholds override per component.
    let mut strict = cfg.clone();
    strict.thresholds.insert(
        "brakes".into(),
        aftercare::config::Thresholds {
            p7: None,
            p30: Some(0.95),
            p90: None,
        },
    );
    sqlx::query("DELETE FROM outbox")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE offers SET state = 'declined', decided_at = now() - interval '30 days'")
        .execute(pool)
        .await
        .unwrap();
    let p = run_once(pool, &strict, &m, Utc::now()).await.unwrap();
    assert_eq!(p.created, 0, "brakes need p30 0.95 now; tyres opted out");
}

#[tokio::test]
async fn windows_skip_holidays_at_the_home_workshop() {
    let api = api().await;
    let pool = &api.pool;
    // WS-03 closes for the next five local days; the offer's windows come after.
    let tz: chrono_tz::Tz = "Europe/Paris".parse().unwrap();
    let today = Utc::now().with_timezone(&tz).date_naive();
    let closed: Vec<_> = today.iter_days().take(5).collect();
    for d in &closed {
        sqlx::query("INSERT INTO workshop_holidays (workshop_id, day, name) SELECT id, $1, 'closed' FROM workshops WHERE code = 'WS-03'")
            .bind(d)
            .execute(pool)
            .await
            .unwrap();
    }
    let cfg = OffersConfig {
        nearby_workshops: 0,
        ..OffersConfig::default()
    };
    let v = vehicle(pool, &vin(1)).await;
    profile(pool, v, Some("WS-03"), true).await;
    score(pool, v, "oil", [0.1, 0.6, 0.9], Some(12.0)).await;
    let p = run_once(pool, &cfg, &Metrics::new(), Utc::now())
        .await
        .unwrap();
    assert_eq!(p.created, 1, "{p:?}");
    let id = offers_of(pool, v).await[0].0;
    let offer = offer_json(&api, id).await;
    let windows = offer["windows"].as_array().unwrap();
    assert!(!windows.is_empty());
    for w in windows {
        assert_eq!(w["workshop"], "WS-03");
        let s: DateTime<Utc> = w["start"].as_str().unwrap().parse().unwrap();
        assert!(!closed.contains(&s.with_timezone(&tz).date_naive()), "{w}");
    }
    // With nearby workshops allowed, a home workshop that is closed for the whole search
    // period is topped up from its neighbours.
    let far: Vec<_> = today.iter_days().take(30).collect();
    for d in &far {
        sqlx::query("INSERT INTO workshop_holidays (workshop_id, day, name) SELECT id, $1, 'closed' FROM workshops WHERE code = 'WS-03' ON CONFLICT DO NOTHING")
            .bind(d)
            .execute(pool)
            .await
            .unwrap();
    }
    let (_, windows) = aftercare::offers::windows_for(
        pool,
        "WS-03",
        &["oil_service"],
        Utc::now(),
        Utc::now() + Duration::days(12),
        4,
        2,
    )
    .await
    .unwrap();
    assert_eq!(windows.len(), 4);
    assert!(windows.iter().all(|w| w.workshop != "WS-03"));
}

#[tokio::test]
async fn reminders_escalate_and_silent_vehicles_raise_one_alarm() {
    let api = api().await;
    let pool = &api.pool;
    let cfg = OffersConfig::default();
    let m = Metrics::new();
    let v = vehicle(pool, &vin(7)).await;
    profile(pool, v, Some("WS-01"), true).await;
    score(pool, v, "brakes", [0.1, 0.6, 0.8], Some(25.0)).await;
    run_once(pool, &cfg, &m, Utc::now()).await.unwrap();
    let id = offers_of(pool, v).await[0].0;
    // Proposed offers get no reminders: the owner has not been told yet.
    let p = run_once(pool, &cfg, &m, Utc::now() + Duration::days(5))
        .await
        .unwrap();
    assert_eq!(p.reminded, 0);
    // Delivered: notified at a known odometer.
    let odo: i32 = sqlx::query_scalar("INSERT INTO signals (name) VALUES ($1) RETURNING id")
        .bind(aftercare::catalog::ODOMETER)
        .fetch_one(pool)
        .await
        .unwrap();
    let km = |value: f64, ago_minutes: i64| {
        let ts = Utc::now() - Duration::minutes(ago_minutes);
        async move { insert_values(pool, &[(v, odo, ts, value)]).await }
    };
    km(10_000.0, 60).await;
    sqlx::query("UPDATE offers SET state = 'notified', last_notice_at = now(), odometer_km = 10000 WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
    let p = run_once(pool, &cfg, &m, Utc::now()).await.unwrap();
    assert_eq!(p.reminded, 0, "nothing has happened yet");
    // 350 km later: a soft reminder, by distance.
    km(10_350.0, 1).await;
    let p = run_once(pool, &cfg, &m, Utc::now()).await.unwrap();
    assert_eq!(p.reminded, 1);
    let payload: Value = sqlx::query_scalar(
        "SELECT payload FROM outbox WHERE event_key = $1 AND channel = 'webhook'",
    )
    .bind(format!("offer.reminder:{id}:soft"))
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(payload["data"]["trigger"], "distance");
    assert_eq!(payload["data"]["level"], "soft");
    // Not again for the same distance.
    assert_eq!(
        run_once(pool, &cfg, &m, Utc::now()).await.unwrap().reminded,
        0
    );
    // Risk jumps: the next is hard, by risk.
    score(pool, v, "brakes", [0.7, 0.9, 0.95], Some(4.0)).await;
    assert_eq!(
        run_once(pool, &cfg, &m, Utc::now()).await.unwrap().reminded,
        1
    );
    let payload: Value =
        sqlx::query_scalar("SELECT payload FROM outbox WHERE event_key = $1 AND channel = 'mqtt'")
            .bind(format!("offer.reminder:{id}:hard"))
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(payload["data"]["trigger"], "risk");
    // After a hard reminder, silence — however long.
    assert_eq!(
        run_once(pool, &cfg, &m, Utc::now() + Duration::days(10))
            .await
            .unwrap()
            .reminded,
        0
    );

    // The vehicle last sent a sample three days ago: one alarm, however many passes.
    // The odometer readings above are samples too, so the pass ten days ahead already found
    // the vehicle silent: this part starts afresh.
    sqlx::raw_sql(&format!(
        "DELETE FROM samples WHERE vehicle_id = {v};
         DELETE FROM vehicle_alarms WHERE vehicle_id = {v};
         DELETE FROM outbox WHERE kind = 'vehicle.silent';"
    ))
    .execute(pool)
    .await
    .unwrap();
    insert_values(pool, &[(v, odo, Utc::now() - Duration::days(3), 10_400.0)]).await;
    let p = run_once(pool, &cfg, &m, Utc::now()).await.unwrap();
    assert_eq!((p.alarms_raised, p.alarms_cleared), (1, 0));
    let p = run_once(pool, &cfg, &m, Utc::now()).await.unwrap();
    assert_eq!((p.alarms_raised, p.alarms_cleared), (0, 0));
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM outbox WHERE kind = 'vehicle.silent'"
        )
        .await,
        1,
        "webhook only"
    );
    // It reports again: the alarm clears.
    insert_values(pool, &[(v, odo, Utc::now(), 10_500.0)]).await;
    let p = run_once(pool, &cfg, &m, Utc::now()).await.unwrap();
    assert_eq!((p.alarms_raised, p.alarms_cleared), (0, 1));
}
