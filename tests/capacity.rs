//! Workshops and slots against a real database: the seed loads idempotently, workshops are
//! managed through the API, and the slot search respects stock lead times, holidays and bad
//! input.

mod booking_common;
mod common;

use booking_common::*;
use chrono::{DateTime, Datelike, Duration, Utc};
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn the_seed_loads_idempotently_through_the_command() {
    let db = TestDb::new().await;
    let load = || {
        cli()
            .args(["workshops", "load", SEED])
            .env("AFTERCARE_DATABASE_URL", &db.url)
            .env("AFTERCARE_LOG_FILTER", "warn")
            .output()
            .unwrap()
    };
    let pool = db.pool().await;
    let tables = [
        "workshops",
        "workshop_hours",
        "workshop_holidays",
        "bays",
        "technicians",
        "technician_shifts",
        "jobs",
        "parts",
        "job_parts",
        "parts_stock",
    ];
    let mut counts = Vec::new();
    for round in 0..2 {
        let out = load();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut c = Vec::new();
        for t in tables {
            c.push(count(&pool, &format!("SELECT count(*) FROM {t}")).await);
        }
        if round == 1 {
            assert_eq!(c, counts, "loading twice changes nothing");
        }
        counts = c;
    }
    assert_eq!(counts[0], 5);
    assert_eq!(counts[3], 19, "bays 5+4+3+3+4");
    assert_eq!(counts[4], 30, "technicians 8+6+5+5+6");
    assert_eq!(
        count(
            &pool,
            "SELECT count(DISTINCT component) FROM jobs WHERE is_default"
        )
        .await,
        8
    );
    // A broken file is refused with the reason, and nothing is written.
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        bad.path(),
        "[[workshop]]\ncode = \"WS-9\"\nname = \"x\"\ntime_zone = \"Mars/Base\"\n",
    )
    .unwrap();
    let out = cli()
        .args(["workshops", "load"])
        .arg(bad.path())
        .env("AFTERCARE_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("WS-9"));
}

#[tokio::test]
async fn workshops_are_managed_through_the_api() {
    let api = api().await;
    let (s, ws) = api.get("/v1/workshops/WS-03", &api.planner).await;
    assert_eq!(s, 200, "{ws}");
    assert_eq!(ws["time_zone"], "Europe/Paris");
    assert_eq!(ws["bay"].as_array().unwrap().len(), 3);
    // A round trip through PUT changes nothing.
    let (s, again) = api.put("/v1/workshops/WS-03", &api.planner, &ws).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again, ws);
    // A new workshop in another time zone, with a bay and a technician added one by one.
    let new = json!({"code": "WS-06", "name": "Aftercare Auckland", "time_zone": "Pacific/Auckland",
                     "hours": {"mon": ["08:00-17:00"]}});
    let (s, body) = api.put("/v1/workshops/WS-06", &api.planner, &new).await;
    assert_eq!(s, 200, "{body}");
    let (s, _) = api
        .put(
            "/v1/workshops/WS-06/bays/B1",
            &api.planner,
            &json!({"code": "B1", "capabilities": ["lift"]}),
        )
        .await;
    assert_eq!(s, 200);
    let tech = json!({"code": "T1", "name": "Aroha", "skills": ["brakes"], "shifts": {"mon": ["08:00-17:00"]}});
    let (s, _) = api
        .put("/v1/workshops/WS-06/technicians/T1", &api.planner, &tech)
        .await;
    assert_eq!(s, 200);
    let (s, _) = api
        .put(
            "/v1/workshops/WS-06/stock/BRK-PAD-FRONT",
            &api.planner,
            &json!({"on_hand": 3, "lead_time_days": 2}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, ws6) = api.get("/v1/workshops/WS-06", &api.planner).await;
    assert_eq!(ws6["technician"][0]["shifts"]["mon"][0], "08:00-17:00");
    let (_, list) = api.get("/v1/workshops?limit=4", &api.planner).await;
    assert_eq!(list["workshops"].as_array().unwrap().len(), 4);
    let (_, rest) = api
        .get(
            &format!(
                "/v1/workshops?limit=4&cursor={}",
                list["next_cursor"].as_str().unwrap()
            ),
            &api.planner,
        )
        .await;
    let codes: Vec<&str> = rest["workshops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, vec!["WS-05", "WS-06"]);
    // Jobs and parts.
    let (_, jobs) = api.get("/v1/jobs", &api.planner).await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 10);
    let mut job = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["code"] == "oil_service")
        .unwrap()
        .clone();
    job["labour_minutes"] = json!(60);
    let (s, _) = api.put("/v1/jobs/oil_service", &api.planner, &job).await;
    assert_eq!(s, 200);
    let (s, _) = api
        .put(
            "/v1/parts/WIPER",
            &api.planner,
            &json!({"sku": "WIPER", "name": "Wiper blade", "price_cents": 1500}),
        )
        .await;
    assert_eq!(s, 200);

    // Bad input: a 4xx with a message that says what is wrong.
    for (path, body, needle) in [
        (
            "/v1/workshops/WS-07",
            json!({"code": "WS-07", "name": "x", "time_zone": "Mars/Olympus"}),
            "IANA",
        ),
        (
            "/v1/workshops/WS-07",
            json!({"code": "WS-08", "name": "x", "time_zone": "UTC"}),
            "differs",
        ),
        (
            "/v1/workshops/WS-07",
            json!({"code": "WS-07", "name": "x", "time_zone": "UTC", "hours": {"mon": ["18:00-08:00"]}}),
            "ends before",
        ),
        (
            "/v1/workshops/WS-07",
            json!({"code": "WS-07", "name": "x", "time_zone": "UTC", "slot_minutes": 0}),
            "slot_minutes",
        ),
        (
            "/v1/workshops/X",
            json!({"code": "X", "name": "x", "time_zone": "UTC"}),
            "WS-",
        ),
        (
            "/v1/workshops/WS-07",
            json!({"code": "WS-07", "name": "x", "time_zone": "UTC", "stock": [{"sku": "NOPE", "on_hand": 1, "lead_time_days": 1}]}),
            "NOPE",
        ),
        (
            "/v1/jobs/oil_service",
            json!({"code": "oil_service"}),
            "missing field",
        ),
        (
            "/v1/jobs/x",
            json!({"code": "x", "component": "gearbox", "name": "x", "labour_minutes": 5, "skill": "x", "labour_price_cents": 1}),
            "gearbox",
        ),
        (
            "/v1/jobs/x",
            json!({"code": "x", "component": "oil", "name": "x", "labour_minutes": 0, "skill": "x", "labour_price_cents": 1}),
            "labour_minutes",
        ),
        (
            "/v1/workshops/WS-01/stock/BRK-PAD-FRONT",
            json!({"on_hand": -1, "lead_time_days": 1}),
            "on_hand",
        ),
    ] {
        let (s, body) = api.put(path, &api.planner, &body).await;
        assert_eq!(s, 400, "{path}: {body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{path}: {msg}");
    }
    let (s, body) = api
        .call(
            axum::http::Method::PUT,
            "/v1/workshops/WS-01",
            Some(&api.planner),
            Some("{not json"),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(body["error"]["code"], "invalid_body");
    let (s, _) = api
        .put(
            "/v1/workshops/WS-99/bays/B1",
            &api.planner,
            &json!({"code": "B1"}),
        )
        .await;
    assert_eq!(s, 404);
}

fn starts(body: &Value) -> Vec<DateTime<Utc>> {
    body["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["start"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn slots_respect_stock_lead_times_and_holidays() {
    let api = api().await;
    let now = Utc::now();
    let to = now + Duration::days(28);
    let path = |ws: &str, job: &str| {
        format!(
            "/v1/workshops/{ws}/slots?job={job}&from={}&to={}&limit=1000",
            enc(now),
            enc(to)
        )
    };
    let (s, body) = api
        .get(&path("WS-01", "brake_pads_front"), &api.planner)
        .await;
    assert_eq!(s, 200, "{body}");
    let st = starts(&body);
    assert!(!st.is_empty());
    assert_eq!(body["feasible"].as_u64().unwrap() as usize, st.len());
    assert!(st
        .iter()
        .all(|t| *t >= now && *t + Duration::minutes(90) <= to));
    // WS-01 keeps brake pads: the first window can be today or tomorrow.
    assert!(st.iter().min().unwrap() < &(now + Duration::days(4)));
    // Take the stock away: pads arrive after their 3-day lead time.
    let (s, _) = api
        .put(
            "/v1/workshops/WS-01/stock/BRK-PAD-FRONT",
            &api.planner,
            &json!({"on_hand": 0, "lead_time_days": 3}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, body) = api
        .get(&path("WS-01", "brake_pads_front"), &api.planner)
        .await;
    let st = starts(&body);
    assert!(!st.is_empty());
    assert!(
        st.iter().all(|t| *t >= now + Duration::days(3)),
        "nothing before the parts arrive"
    );
    // Every window avoids the workshop's holidays and Sundays (local time).
    let tz: chrono_tz::Tz = "Europe/Paris".parse().unwrap();
    let holidays = ["2026-12-25", "2027-01-01", "2027-03-29", "2027-05-01"];
    for t in &st {
        let local = t.with_timezone(&tz);
        assert_ne!(local.weekday(), chrono::Weekday::Sun);
        assert!(!holidays.contains(&local.date_naive().to_string().as_str()));
    }
    // High-voltage jobs need the HV bay and an HV technician.
    let (_, body) = api
        .get(&path("WS-02", "traction_battery_check"), &api.planner)
        .await;
    let bays: std::collections::BTreeSet<&str> = body["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["bay"].as_str().unwrap())
        .collect();
    assert_eq!(bays.into_iter().collect::<Vec<_>>(), vec!["B4"]);
    // Bad input.
    for (p, status) in [
        ("/v1/workshops/WS-01/slots".to_owned(), 400),
        ("/v1/workshops/WS-01/slots?job=nope".to_owned(), 400),
        ("/v1/workshops/WS-99/slots?job=oil_service".to_owned(), 404),
        (
            "/v1/workshops/WS-01/slots?job=oil_service&from=soon".to_owned(),
            400,
        ),
        (
            format!(
                "/v1/workshops/WS-01/slots?job=oil_service&from={}&to={}",
                enc(now),
                enc(now + Duration::days(90))
            ),
            400,
        ),
        (
            format!(
                "/v1/workshops/WS-01/slots?job=oil_service&from={}&to={}",
                enc(now),
                enc(now - Duration::days(1))
            ),
            400,
        ),
        (
            "/v1/workshops/WS-01/slots?job=oil_service&limit=0".to_owned(),
            400,
        ),
    ] {
        let (s, body) = api.get(&p, &api.planner).await;
        assert_eq!(s, status, "{p}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
}
