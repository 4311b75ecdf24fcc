//! `aftercare import` (issue 18, tests 3 and 4), run as the binary against a real database:
//! a DMS export of 100,000 job lines with 1% broken in different ways (every good row
//! imported once, every broken row in the rejects file with its line and reason, a second run
//! imports nothing new), and a wide logger CSV of a million rows (every value stored once,
//! the daily rollup equal to a direct aggregate of the file, rows/s printed beside the bulk
//! path's on the same machine).

mod common;

use chrono::{Duration, NaiveDate, Utc};
use common::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

const JOB_CODES: [&str; 5] = ["BRK-PAD-F", "OIL-SVC", "BAT-12V-R", "COOL-SVC", "IGN-COIL"];

fn deploy(file: &str) -> String {
    format!("{}/deploy/imports/{file}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `aftercare ARGS` against `db`; its stderr.
fn aftercare(db: &TestDb, args: &[&str]) -> String {
    let out = cli()
        .args(args)
        .env("AFTERCARE_DATABASE_URL", &db.url)
        .env("AFTERCARE_LOG_FILTER", "warn")
        .output()
        .expect("run aftercare");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "aftercare {args:?}: {stderr}");
    stderr
}

fn vin(i: usize) -> String {
    format!("WVWZZZ1KZ8W{:06}", i % 500)
}

/// The rejects file's (line, reason) rows.
fn rejects(path: &Path) -> Vec<(u64, String)> {
    let mut r = csv::Reader::from_path(path).unwrap();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[0].parse().unwrap(), rec[1].to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dms_export_is_imported_once_and_its_broken_rows_are_rejected_with_reasons() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dms.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    writeln!(
        out,
        "RO_Number,Line,VIN,Date,Odometer_km,Job_Code,Workshop,Parts,Notes"
    )
    .unwrap();
    let kinds = [
        "invalid_vin",
        "invalid_date",
        "unknown_job_code",
        "invalid_odometer",
        "missing_field",
        "bad_row",
        "invalid_text",
    ];
    let mut broken: Vec<(u64, String)> = Vec::new();
    let day0 = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    for i in 0..100_000usize {
        let line = i as u64 + 2;
        let date = day0 + Duration::days((i % 700) as i64);
        let job = JOB_CODES[i % JOB_CODES.len()];
        let ro = format!("RO{:07}", i / 2);
        let l = i % 2 + 1;
        let odo = 10_000.0 + (i % 90_000) as f64 * 1.5;
        let mut row = format!(
            "{ro},{l},{},{date},{odo},{job},WS-0{},\"pads, clips\",\"customer said: \"\"noise\"\"\"",
            vin(i),
            i % 5 + 1
        );
        if i % 100 == 37 {
            let kind = kinds[(i / 100) % kinds.len()];
            row = match kind {
                "invalid_vin" => row.replace(&vin(i), "WVWZZZ1KZ8W00000I"),
                "invalid_date" => row.replace(&date.to_string(), "31/12/2024"),
                "unknown_job_code" => row.replace(job, "XX-99"),
                "invalid_odometer" => row.replace(&format!(",{odo},"), ",-5,"),
                "missing_field" => row.replace(&format!(",{},", vin(i)), ",,"),
                "bad_row" => format!("{ro},{l},{}", vin(i)),
                "invalid_text" => row.replace("clips", "cl\0ips"),
                _ => unreachable!(),
            };
            broken.push((line, kind.to_owned()));
        }
        writeln!(out, "{row}").unwrap();
    }
    out.flush().unwrap();
    drop(out);
    assert_eq!(broken.len(), 1000);
    let file_s = file.to_str().unwrap();
    let jobs = deploy("dms-jobs.toml");
    let stderr = aftercare(&db, &["import", "service-records", file_s, "--jobs", &jobs]);
    assert!(
        stderr.contains("100000 rows: 99000 imported, 0 already there, 1000 rejected"),
        "{stderr}"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM service_records").await,
        99_000
    );
    let rejected = rejects(&dir.path().join("dms.csv.rejects.csv"));
    assert_eq!(
        rejected, broken,
        "every broken row, with its line and reason"
    );
    // A good row as stored: identity, mapping and the parts kept in the notes.
    let (external_id, component, kind, job, odometer, notes): (
        String,
        String,
        String,
        String,
        f64,
        String,
    ) = sqlx::query_as(
        "SELECT external_id, component, kind, job, odometer_km, notes FROM service_records
         WHERE source = 'dms' AND external_id = 'RO0000001/2'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (
            external_id.as_str(),
            component.as_str(),
            kind.as_str(),
            job.as_str()
        ),
        ("RO0000001/2", "cooling", "preventive", "cooling_service")
    );
    assert_eq!(odometer, 10_004.5);
    assert_eq!(notes, "customer said: \"noise\" (parts: pads, clips)");

    // Run again (as after a stop): nothing new, the same rejects.
    let stderr = aftercare(&db, &["import", "service-records", file_s, "--jobs", &jobs]);
    assert!(
        stderr.contains("100000 rows: 0 imported, 99000 already there, 1000 rejected"),
        "{stderr}"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM service_records").await,
        99_000
    );
    assert_eq!(rejects(&dir.path().join("dms.csv.rejects.csv")), broken);
}

/// Profiles and long telemetry, small: every good row once (read back through the API and
/// the database), refused rows with their reasons, a re-run changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_and_long_telemetry_are_imported_once() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    load_demo_workshops(&pool).await;
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("register.csv");
    std::fs::write(
        &profiles,
        "VIN,Make,Model,Model_Year,Powertrain,Home_Workshop,Offers_Consent
WVWZZZ1KZ8W000301,Volkswagen,Golf,2019,ICE,WS-01,yes
WVWZZZ1KZ8W000302,Volkswagen,ID.3,2022,bev,WS-02,no
WVWZZZ1KZ8W000303,Skoda,Octavia,1975,ice,WS-01,yes
WVWZZZ1KZ8W000304,Seat,Leon,2020,ice,WS-99,yes
",
    )
    .unwrap();
    let p = profiles.to_str().unwrap();
    let stderr = aftercare(&db, &["import", "profiles", p]);
    assert!(
        stderr.contains("4 rows: 2 imported, 0 already there, 2 rejected"),
        "{stderr}"
    );
    assert_eq!(
        rejects(&dir.path().join("register.csv.rejects.csv")),
        vec![
            (4, "invalid_field".to_owned()),
            (5, "unknown_workshop".to_owned())
        ]
    );
    let row: (String, String, i16, String, String, bool) = sqlx::query_as(
        "SELECT make, model, model_year, powertrain, home_workshop, offers_consent
         FROM vehicle_profiles p JOIN vehicles v ON v.id = p.vehicle_id
         WHERE v.vin = 'WVWZZZ1KZ8W000302'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "Volkswagen".into(),
            "ID.3".into(),
            2022,
            "bev".into(),
            "WS-02".into(),
            false
        )
    );
    let stderr = aftercare(&db, &["import", "profiles", p]);
    assert!(
        stderr.contains("4 rows: 0 imported, 2 already there, 2 rejected"),
        "{stderr}"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM vehicle_profiles").await,
        2
    );

    // Long telemetry: rows of one instant apart from each other, a bad signal name, a value
    // that is not a number, a time outside the contract's window.
    let t0 = Utc::now() - Duration::days(2);
    let t0 = chrono::DateTime::from_timestamp(t0.timestamp(), 0).unwrap();
    let t1 = t0 + Duration::minutes(1);
    let long = dir.path().join("values.csv");
    let ms = |t: chrono::DateTime<Utc>| t.timestamp_millis().to_string();
    std::fs::write(
        &long,
        format!(
            "vin,ts,signal,value
WVWZZZ1KZ8W000301,{a},Vehicle.Speed,50.5
WVWZZZ1KZ8W000301,{a},Vehicle.TraveledDistance,48213.4
WVWZZZ1KZ8W000302,{b},Vehicle.Powertrain.TractionBattery.StateOfHealth,91.3
WVWZZZ1KZ8W000301,{c},Vehicle.Speed,55
WVWZZZ1KZ8W000301,{a},Vehicle.LowVoltageBattery.CurrentVoltage,12.4
WVWZZZ1KZ8W000301,{a},Speed,1
WVWZZZ1KZ8W000301,{c},Vehicle.Speed,fast
WVWZZZ1KZ8W000301,1999-01-01T00:00:00Z,Vehicle.Speed,1
",
            a = t0.to_rfc3339(),
            b = ms(t0),
            c = ms(t1),
        ),
    )
    .unwrap();
    let l = long.to_str().unwrap();
    let stderr = aftercare(&db, &["import", "telemetry", l]);
    assert!(
        stderr.contains("8 rows: 5 imported, 0 already there, 3 rejected (5 values)"),
        "{stderr}"
    );
    assert_eq!(
        rejects(&dir.path().join("values.csv.rejects.csv")),
        vec![
            (7, "invalid_signal_name".to_owned()),
            (8, "invalid_value".to_owned()),
            (9, "timestamp_out_of_range".to_owned())
        ]
    );
    let reader = aftercare::store::keys::create(
        &pool,
        "reader",
        &[aftercare::store::keys::Scope::FleetRead],
    )
    .await
    .unwrap();
    let port = serve_on_free_port(aftercare::api::router(aftercare::api::AppState {
        store: std::sync::Arc::new(aftercare::store::Store::open(pool.clone()).await.unwrap()),
        metrics: std::sync::Arc::new(aftercare::metrics::Metrics::new()),
        ingest_enabled: false,
    }))
    .await;
    let base = format!("http://127.0.0.1:{port}");
    assert_values(
        &api_values(&base, &reader, "WVWZZZ1KZ8W000301", t0 - Duration::hours(1)).await,
        &[
            (t0, "Vehicle.Speed", 50.5),
            (t0, "Vehicle.TraveledDistance", 48213.4),
            (t0, "Vehicle.LowVoltageBattery.CurrentVoltage", 12.4),
            (t1, "Vehicle.Speed", 55.0),
        ],
    );
    let stderr = aftercare(&db, &["import", "telemetry", l]);
    assert!(
        stderr.contains("8 rows: 0 imported, 5 already there, 3 rejected"),
        "{stderr}"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, 5);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM rollup_delta").await,
        0,
        "folded"
    );
    assert_rollup_matches_raw(&pool).await;
}

/// Fault-code history: rows of one report become one report, lifecycles as from live
/// reports, J1939 codes too; a bad code, an unknown status and a row that goes back in time
/// are refused with their reasons; a re-run stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtc_history_is_imported_once_with_lifecycles() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let t = |d: i64| {
        (Utc::now() - Duration::days(d))
            .format("%Y-%m-%dT12:00:00Z")
            .to_string()
    };
    let file = dir.path().join("faults.csv");
    std::fs::write(
        &file,
        format!(
            "vin,ts,seq,code,spn,fmi,oc,sa,status,source
WVWZZZ1KZ8W000501,{a},1,P0301,,,,,pending,obd
WVWZZZ1KZ8W000501,{a},1,P0420,,,,,confirmed,obd
WVWZZZ1KZ8W000501,{b},2,P0301,,,,,confirmed,obd
WVWZZZ1KZ8W000501,{c},3,P0301,,,,,cleared,obd
WVWZZZ1KZ8W000501,{b},9,P0171,,,,,confirmed,obd
WVWZZZ1KZ8W000502,{a},1,,110,0,3,0,active,j1939
WVWZZZ1KZ8W000502,{b},2,X0301,,,,,active,obd
WVWZZZ1KZ8W000502,{b},3,P0300,,,,,broken,obd
",
            a = t(30),
            b = t(20),
            c = t(10)
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let out = aftercare(&db, &["import", "dtcs", f]);
    assert!(
        out.contains("8 rows: 4 imported, 0 already there, 3 rejected"),
        "{out}"
    );
    assert_eq!(
        rejects(&dir.path().join("faults.csv.rejects.csv")),
        vec![
            (6, "unsorted".to_owned()),
            (8, "invalid_dtc_code".to_owned()),
            (9, "invalid_dtc_status".to_owned())
        ]
    );
    let lifecycles: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT v.vin || ' ' || d.code, d.last_status, d.cleared_at IS NOT NULL
         FROM dtcs d JOIN vehicles v ON v.id = d.vehicle_id ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        lifecycles,
        vec![
            ("WVWZZZ1KZ8W000501 P0301".into(), "cleared".into(), true),
            ("WVWZZZ1KZ8W000501 P0420".into(), "confirmed".into(), false),
            (
                "WVWZZZ1KZ8W000502 SPN110-FMI0".into(),
                "active".into(),
                false
            ),
        ]
    );
    let out = aftercare(&db, &["import", "dtcs", f]);
    assert!(
        out.contains("8 rows: 0 imported, 4 already there, 3 rejected"),
        "{out}"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM dtc_reports").await, 4);
    assert_eq!(count(&pool, "SELECT count(*) FROM dtc_events").await, 5);
}

/// The same imports over HTTP as NDJSON: counts, refused lines with their line and reason,
/// a re-post imports nothing, a body with nothing importable is a 4xx in the error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_imports_over_http() {
    use aftercare::store::keys::{self, Scope};
    let db = TestDb::new().await;
    let pool = db.pool().await;
    load_demo_workshops(&pool).await;
    let port = serve_on_free_port(aftercare::api::router(aftercare::api::AppState {
        store: std::sync::Arc::new(aftercare::store::Store::open(pool.clone()).await.unwrap()),
        metrics: std::sync::Arc::new(aftercare::metrics::Metrics::new()),
        ingest_enabled: false,
    }))
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let pusher = keys::create(&pool, "platform", &[Scope::Ingest])
        .await
        .unwrap();
    let admin = keys::create(&pool, "admin", &[Scope::Admin]).await.unwrap();
    let http = reqwest::Client::new();
    let post = |path: &str, key: &str, body: String| {
        http.post(format!("{base}{path}"))
            .bearer_auth(key)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
    };
    let t0 =
        chrono::DateTime::from_timestamp((Utc::now() - Duration::days(1)).timestamp(), 0).unwrap();
    let body = format!(
        r#"{{"vin":"WVWZZZ1KZ8W000401","ts":"{t}","signal":"Vehicle.Speed","value":42.5}}
{{"vin":"WVWZZZ1KZ8W000401","ts":{ms},"signal":"Vehicle.TraveledDistance","value":"1200.5"}}

{{"vin":"WVWZZZ1KZ8W000401","ts":"{t}","signal":"Vehicle.Speed","value":"fast"}}
{{"vin":"WVWZZZ1KZ8W000401","ts":"{t}","signal":"Vehicle.Speed","value":1,"unit":"km/h"}}
not json
"#,
        t = t0.to_rfc3339(),
        ms = t0.timestamp_millis()
    );
    let resp = post("/v1/import/telemetry", &pusher, body.clone())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let a: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        (&a["rows"], &a["imported"], &a["already"], &a["rejected"]),
        (&5.into(), &2.into(), &0.into(), &3.into())
    );
    let reasons: Vec<(u64, String)> = a["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            (4, "invalid_value".into()),
            (5, "bad_row".into()),
            (6, "bad_row".into())
        ]
    );
    let reader = keys::create(&pool, "reader", &[Scope::FleetRead])
        .await
        .unwrap();
    assert_values(
        &api_values(&base, &reader, "WVWZZZ1KZ8W000401", t0 - Duration::hours(1)).await,
        &[
            (t0, "Vehicle.Speed", 42.5),
            (t0, "Vehicle.TraveledDistance", 1200.5),
        ],
    );
    let a: serde_json::Value = post("/v1/import/telemetry", &pusher, body)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((&a["imported"], &a["already"]), (&0.into(), &2.into()));
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, 2);

    let resp = post(
        "/v1/import/profiles",
        &admin,
        r#"{"vin":"WVWZZZ1KZ8W000401","make":"Opel","model":"Corsa","model_year":2021,"powertrain":"ice","home_workshop":"WS-03","offers_consent":false}
{"vin":"WVWZZZ1KZ8W000402","home_workshop":"WS-77"}"#
            .to_owned(),
    )
    .await
    .unwrap();
    let a: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        (&a["imported"], &a["already"], &a["rejected"]),
        (&0.into(), &1.into(), &1.into()),
        "{a}"
    );
    assert_eq!(a["rejects"][0]["reason"], "unknown_workshop");
    let make: String = sqlx::query_scalar(
        "SELECT make FROM vehicle_profiles p JOIN vehicles v ON v.id = p.vehicle_id
         WHERE v.vin = 'WVWZZZ1KZ8W000401'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(make, "Opel");

    // Nothing importable: a 4xx in the error shape; the wrong scope: 403.
    let resp = post(
        "/v1/import/telemetry",
        &pusher,
        "{\"vin\":\"x\"}".to_owned(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 422);
    let e: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["code"], "invalid_rows");
    let resp = post("/v1/import/telemetry", &pusher, "\n \n".to_owned())
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = post("/v1/import/profiles", &pusher, "{}".to_owned())
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

/// Per (signal, day): n, min, max, sum, straight from the file's values.
type Aggregate = BTreeMap<(String, String), (i64, f64, f64, f64)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_row_logger_file_is_stored_once_with_its_daily_rollup() {
    const ROWS: usize = 1_000_000;
    const VIN: &str = "WVWZZZ1KZ8W000777";
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trackLog.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    // Torque Pro's header: GPS columns first (not mapped), then PIDs with their units.
    writeln!(
        out,
        "GPS Time, Device Time, Longitude, Latitude,Engine RPM(rpm),Speed (OBD)(km/h),Engine Coolant Temperature(°C)"
    )
    .unwrap();
    let start = (Utc::now() - Duration::days(20))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let signals = [
        "Vehicle.Powertrain.CombustionEngine.Speed",
        "Vehicle.Speed",
        "Vehicle.Powertrain.CombustionEngine.EngineCoolant.Temperature",
    ];
    let mut want: Aggregate = BTreeMap::new();
    let mut values = 0i64;
    for i in 0..ROWS {
        // One row a second.
        let t = start + Duration::milliseconds(i as i64 * 1000 + 250);
        let rpm = 800.0 + (i % 4000) as f64 * 0.5;
        let speed = (i % 130) as f64;
        // The coolant PID is not read on every poll: Torque writes "-".
        let coolant = (i % 7 != 0).then_some(60.0 + (i % 45) as f64 * 0.25);
        let coolant_s = coolant.map_or("-".to_owned(), |c| c.to_string());
        writeln!(
            out,
            "{},{},13.405,52.52,{rpm},{speed},{coolant_s}",
            t.format("%a %b %d %H:%M:%S UTC %Y"),
            t.format("%d-%b-%Y %H:%M:%S%.3f")
        )
        .unwrap();
        let day = t.date().to_string();
        for (s, x) in signals.iter().zip([Some(rpm), Some(speed), coolant]) {
            let Some(x) = x else { continue };
            values += 1;
            let e = want.entry((s.to_string(), day.clone())).or_insert((
                0,
                f64::INFINITY,
                f64::NEG_INFINITY,
                0.0,
            ));
            e.0 += 1;
            e.1 = e.1.min(x);
            e.2 = e.2.max(x);
            e.3 += x;
        }
    }
    out.flush().unwrap();
    drop(out);

    let started = Instant::now();
    let stderr = aftercare(
        &db,
        &[
            "import",
            "telemetry",
            file.to_str().unwrap(),
            "--mapping",
            &deploy("torque.toml"),
            "--vin",
            VIN,
        ],
    );
    let import_secs = started.elapsed().as_secs_f64();
    assert!(
        stderr.contains(&format!(
            "{ROWS} rows: {ROWS} imported, 0 already there, 0 rejected ({values} values)"
        )),
        "{stderr}"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM samples").await,
        ROWS as i64
    );
    assert_eq!(
        count(
            &pool,
            "SELECT sum(cardinality(signal_ids))::int8 FROM samples"
        )
        .await,
        values
    );
    // The rollup, folded by the import, equals the file's own daily aggregate.
    let got: Vec<(String, String, i64, f64, f64, f64)> = sqlx::query_as(
        "SELECT s.name, (d.day AT TIME ZONE 'UTC')::date::text, d.n::int8, d.min, d.max, d.sum
         FROM signal_daily d JOIN signals s ON s.id = d.signal_id ORDER BY 1, 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let got: Aggregate = got
        .into_iter()
        .map(|(s, d, n, lo, hi, sum)| ((s, d), (n, lo, hi, sum)))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, w) in &want {
        let g = got[k];
        assert_eq!((g.0, g.1, g.2), (w.0, w.1, w.2), "{k:?}");
        assert!(
            (g.3 - w.3).abs() <= 1e-9 * w.3.abs().max(1.0),
            "{k:?}: {} vs {}",
            g.3,
            w.3
        );
    }
    assert_rollup_matches_raw(&pool).await;

    // The bulk path on the same machine, for the figure: a simulated fleet's year, written
    // the fast way.
    let bulk_db = TestDb::new().await;
    let started = Instant::now();
    aftercare(
        &bulk_db,
        &[
            "simulate",
            "--bulk",
            "--vehicles",
            "500",
            "--days",
            "365",
            "--seed",
            "3",
        ],
    );
    let bulk_secs = started.elapsed().as_secs_f64();
    let bulk_pool = bulk_db.pool().await;
    let bulk_values = count(
        &bulk_pool,
        "SELECT coalesce(sum(cardinality(signal_ids)), 0)::int8 FROM samples",
    )
    .await;
    let bulk_samples = count(&bulk_pool, "SELECT count(*) FROM samples").await;
    assert!(bulk_values > 0);
    eprintln!(
        "import telemetry (wide CSV): {ROWS} rows, {values} values in {import_secs:.1} s = \
         {:.0} rows/s, {:.0} values/s; bulk path (simulate --bulk): {bulk_samples} samples, \
         {bulk_values} values in {bulk_secs:.1} s = {:.0} samples/s, {:.0} values/s \
         (both the debug binary, whole process including start-up)",
        ROWS as f64 / import_secs,
        values as f64 / import_secs,
        bulk_samples as f64 / bulk_secs,
        bulk_values as f64 / bulk_secs
    );
}

/// Writes the rows `sql` returns (all text) as CSV with `header`.
async fn export(pool: &sqlx::PgPool, sql: &str, header: &[&str], path: &Path) {
    let rows: Vec<Vec<Option<String>>> = sqlx::query_scalar::<_, Vec<Option<String>>>(sql)
        .fetch_all(pool)
        .await
        .unwrap();
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record(header).unwrap();
    for r in rows {
        w.write_record(r.iter().map(|f| f.as_deref().unwrap_or("")))
            .unwrap();
    }
    w.flush().unwrap();
}

/// (component, horizon) -> the evaluation's JSON for it.
fn evaluation(dir: &Path) -> BTreeMap<(String, u64), serde_json::Value> {
    let file = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("evaluation-") && name.ends_with(".json")
        })
        .expect("an evaluation report");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let mut out = BTreeMap::new();
    for c in report["components"].as_array().unwrap() {
        for h in c["horizons"].as_array().unwrap() {
            out.insert(
                (
                    c["component"].as_str().unwrap().to_owned(),
                    h["days"].as_u64().unwrap(),
                ),
                h.clone(),
            );
        }
    }
    out
}

fn train_and_evaluate(
    db: &TestDb,
    out: &Path,
    seed: &str,
    truth: &str,
) -> BTreeMap<(String, u64), serde_json::Value> {
    let o = out.to_str().unwrap();
    aftercare(
        db,
        &[
            "model", "train", "--out", o, "--trees", "20", "--seed", seed,
        ],
    );
    let current = out.join("current.json");
    aftercare(
        db,
        &[
            "model",
            "evaluate",
            "--artifact",
            current.to_str().unwrap(),
            "--truth",
            truth,
            "--out",
            o,
        ],
    );
    evaluation(out)
}

/// Issue 18, test 5: a simulated fleet exported to CSV (profiles, DMS service records, long
/// telemetry, diagnostic history), imported into an empty database, trained and evaluated:
/// everything deterministic in the evaluation (snapshots, positives, the rule baseline, its
/// alerts) is equal to the simulator's database's, and the model's figures differ by no more
/// than the learners' run-to-run noise, measured here as twice the largest difference
/// between two seeds on the simulator's own database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_fleet_imported_from_csv_evaluates_as_on_the_simulators_database() {
    let sim = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let truth = d.join("truth.jsonl");
    let truth_s = truth.to_str().unwrap();
    aftercare(
        &sim,
        &[
            "simulate",
            "--bulk",
            "--vehicles",
            "200",
            "--days",
            "730",
            "--seed",
            "5",
            "--truth",
            truth_s,
        ],
    );
    let pool = sim.pool().await;
    let ts = |col: &str| {
        format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
    };
    export(
        &pool,
        "SELECT ARRAY[v.vin, p.make, p.model, p.model_year::text, p.powertrain, p.home_workshop,
                      p.owner_ref, p.offers_consent::text]
         FROM vehicle_profiles p JOIN vehicles v ON v.id = p.vehicle_id",
        &[
            "vin",
            "make",
            "model",
            "model_year",
            "powertrain",
            "home_workshop",
            "owner_ref",
            "offers_consent",
        ],
        &d.join("profiles.csv"),
    )
    .await;
    export(
        &pool,
        &format!(
            "SELECT ARRAY[s.external_id, v.vin, {}, s.odometer_km::text,
                          s.component || ':' || s.kind || ':' || s.job, s.workshop, s.notes]
             FROM service_records s JOIN vehicles v ON v.id = s.vehicle_id ORDER BY s.id",
            ts("s.performed_at")
        ),
        &[
            "ro_number",
            "vin",
            "date",
            "odometer_km",
            "job_code",
            "workshop",
            "notes",
        ],
        &d.join("dms.csv"),
    )
    .await;
    let combos: Vec<(String, String, String)> =
        sqlx::query_as("SELECT DISTINCT component, kind, job FROM service_records")
            .fetch_all(&pool)
            .await
            .unwrap();
    let jobs: String = combos
        .iter()
        .map(|(c, k, j)| {
            format!("\"{c}:{k}:{j}\" = {{ component = \"{c}\", kind = \"{k}\", job = \"{j}\" }}\n")
        })
        .collect();
    std::fs::write(
        d.join("jobs.toml"),
        format!("source = \"export\"\n[jobs]\n{jobs}"),
    )
    .unwrap();
    export(
        &pool,
        &format!(
            "SELECT ARRAY[v.vin, {}, e.seq::text, CASE WHEN e.spn IS NULL THEN e.code END,
                          e.spn::text, e.fmi::text, e.oc::text, e.sa::text, e.status, e.source]
             FROM dtc_events e JOIN vehicles v ON v.id = e.vehicle_id
             ORDER BY v.vin COLLATE \"C\", e.ts, e.seq",
            ts("e.ts")
        ),
        &[
            "vin", "ts", "seq", "code", "spn", "fmi", "oc", "sa", "status", "source",
        ],
        &d.join("dtcs.csv"),
    )
    .await;
    export(
        &pool,
        &format!(
            "SELECT ARRAY[v.vin, {}, g.name, u.value::text]
             FROM samples s JOIN vehicles v ON v.id = s.vehicle_id
             CROSS JOIN LATERAL unnest(s.signal_ids, s.signal_values) AS u (sid, value)
             JOIN signals g ON g.id = u.sid",
            ts("s.ts")
        ),
        &["vin", "ts", "signal", "value"],
        &d.join("telemetry.csv"),
    )
    .await;
    let values = count(
        &pool,
        "SELECT sum(cardinality(signal_ids))::int8 FROM samples",
    )
    .await;
    let records = count(&pool, "SELECT count(*) FROM service_records").await;
    let reports = count(&pool, "SELECT count(*) FROM dtc_reports").await;

    let imported = TestDb::new().await;
    let f = |n: &str| d.join(n).to_str().unwrap().to_owned();
    aftercare(
        &imported,
        &["workshops", "load", &deploy("../workshops.toml")],
    );
    let out = aftercare(&imported, &["import", "profiles", &f("profiles.csv")]);
    assert!(
        out.contains("200 rows: 200 imported, 0 already there, 0 rejected"),
        "{out}"
    );
    let out = aftercare(
        &imported,
        &[
            "import",
            "service-records",
            &f("dms.csv"),
            "--jobs",
            &f("jobs.toml"),
        ],
    );
    assert!(
        out.contains(&format!(
            "{records} rows: {records} imported, 0 already there, 0 rejected"
        )),
        "{out}"
    );
    let out = aftercare(&imported, &["import", "dtcs", &f("dtcs.csv")]);
    assert!(
        out.contains(&format!("{reports} imported, 0 already there, 0 rejected")),
        "{out}"
    );
    let out = aftercare(&imported, &["import", "telemetry", &f("telemetry.csv")]);
    assert!(
        out.contains(&format!(
            "{values} rows: {values} imported, 0 already there, 0 rejected"
        )),
        "{out}"
    );

    let on_sim = train_and_evaluate(&sim, &d.join("sim"), "7", truth_s);
    let on_sim_other_seed = train_and_evaluate(&sim, &d.join("sim-seed8"), "8", truth_s);
    let on_import = train_and_evaluate(&imported, &d.join("imported"), "7", truth_s);
    assert_eq!(
        on_sim.keys().collect::<Vec<_>>(),
        on_import.keys().collect::<Vec<_>>()
    );
    let metric = |e: &serde_json::Value, side: &str, m: &str| e[side][m].as_f64();
    let mut noise: f64 = 0.0;
    for (k, a) in &on_sim {
        let b = &on_sim_other_seed[k];
        for m in ["roc_auc", "pr_auc"] {
            if let (Some(x), Some(y)) = (metric(a, "model", m), metric(b, "model", m)) {
                noise = noise.max((x - y).abs());
            }
        }
    }
    let mut worst: f64 = 0.0;
    for (k, a) in &on_sim {
        let b = &on_import[k];
        for field in ["snapshots", "positives", "alerts", "warned_failures"] {
            assert_eq!(a[field], b[field], "{k:?} {field}");
        }
        assert_eq!(
            a["rules"], b["rules"],
            "{k:?}: the rule baseline on the same data"
        );
        for m in ["roc_auc", "pr_auc"] {
            let (x, y) = (metric(a, "model", m), metric(b, "model", m));
            assert_eq!(x.is_some(), y.is_some(), "{k:?} {m}");
            if let (Some(x), Some(y)) = (x, y) {
                worst = worst.max((x - y).abs());
                eprintln!("{k:?} {m}: simulator {x:.3}, imported {y:.3}");
            }
        }
    }
    eprintln!(
        "model figures: largest difference simulator vs imported {worst:.3}; between two seeds \
         on the simulator's database {noise:.3}"
    );
    assert!(
        worst <= 2.0 * noise,
        "imported history evaluates differently: {worst:.3} against seed noise {noise:.3}"
    );
}
