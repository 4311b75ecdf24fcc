//! Every kind of bad input becomes a dead letter with its specific reason; the stream goes on
//! and valid neighbours are stored.

mod common;

use bytes::Bytes;
use chrono::{Duration, Utc};
use common::*;
use sha2::{Digest, Sha256};

const VIN: &str = "1FTFW1ET5DFC10312";

fn sample(seq: i64, extra: &str) -> String {
    let ts = (Utc::now() - Duration::minutes(30) + Duration::seconds(seq)).to_rfc3339();
    format!(r#"{{"ts":"{ts}","seq":{seq},"signals":{{"Vehicle.Speed":{seq}{extra}}}}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_message_is_dead_lettered_with_its_reason() {
    let tel = format!("v1/vehicles/{VIN}/telemetry");
    let dtc = format!("v1/vehicles/{VIN}/dtc");
    let now = Utc::now();
    let ts = (now - Duration::minutes(5)).to_rfc3339();
    let big_batch = format!(
        "[{}]",
        (0..10_000)
            .map(|i| format!(r#"{{"ts":1795000000000,"seq":{i},"signals":{{}}}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    let over_limit = format!(
        r#"{{"ts":"{ts}","seq":1,"signals":{{}},"pad":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let cases: Vec<(&str, String, Vec<u8>, &str)> = vec![
        (
            "not JSON",
            tel.clone(),
            b"{\"ts\": nope".to_vec(),
            "invalid_json",
        ),
        (
            "not UTF-8",
            tel.clone(),
            vec![0x7b, 0xff, 0xfe, 0x7d],
            "not_utf8",
        ),
        (
            "ts of wrong type",
            tel.clone(),
            br#"{"ts":true,"seq":1,"signals":{}}"#.to_vec(),
            "wrong_type",
        ),
        (
            "signal value a string",
            tel.clone(),
            format!(r#"{{"ts":"{ts}","seq":2,"signals":{{"Vehicle.Speed":"fast"}}}}"#).into_bytes(),
            "wrong_type",
        ),
        (
            "sample not an object",
            tel.clone(),
            b"[1,2,3]".to_vec(),
            "wrong_type",
        ),
        (
            "missing ts",
            tel.clone(),
            br#"{"seq":3,"signals":{}}"#.to_vec(),
            "missing_field",
        ),
        (
            "missing seq",
            tel.clone(),
            format!(r#"{{"ts":"{ts}","signals":{{}}}}"#).into_bytes(),
            "missing_field",
        ),
        (
            "negative seq",
            tel.clone(),
            format!(r#"{{"ts":"{ts}","seq":-4,"signals":{{}}}}"#).into_bytes(),
            "invalid_seq",
        ),
        (
            "VIN too short",
            "v1/vehicles/1FTFW1ET5DFC1031/telemetry".into(),
            sample(5, "").into_bytes(),
            "invalid_vin",
        ),
        (
            "VIN with I",
            "v1/vehicles/1FTFW1ET5DFC1031I/telemetry".into(),
            sample(6, "").into_bytes(),
            "invalid_vin",
        ),
        (
            "VIN with O",
            "v1/vehicles/1FTFW1ET5DFC1031O/telemetry".into(),
            sample(7, "").into_bytes(),
            "invalid_vin",
        ),
        (
            "VIN with Q",
            "v1/vehicles/1FTFW1ET5DFC1031Q/dtc".into(),
            sample(8, "").into_bytes(),
            "invalid_vin",
        ),
        (
            "payload VIN differs",
            tel.clone(),
            format!(r#"{{"vin":"1FTFW1ET5DFC10313","ts":"{ts}","seq":9,"signals":{{}}}}"#)
                .into_bytes(),
            "vin_mismatch",
        ),
        (
            "malformed J2012",
            dtc.clone(),
            format!(r#"{{"ts":"{ts}","seq":10,"dtcs":[{{"code":"P4301","status":"pending"}}]}}"#)
                .into_bytes(),
            "invalid_dtc_code",
        ),
        (
            "lower-case J2012",
            dtc.clone(),
            format!(r#"{{"ts":"{ts}","seq":11,"dtcs":[{{"code":"p0301","status":"pending"}}]}}"#)
                .into_bytes(),
            "invalid_dtc_code",
        ),
        (
            "SPN out of range",
            dtc.clone(),
            format!(
                r#"{{"ts":"{ts}","seq":12,"dtcs":[{{"spn":524288,"fmi":1,"status":"active"}}]}}"#
            )
            .into_bytes(),
            "dtc_out_of_range",
        ),
        (
            "FMI out of range",
            dtc.clone(),
            format!(
                r#"{{"ts":"{ts}","seq":13,"dtcs":[{{"spn":110,"fmi":32,"status":"active"}}]}}"#
            )
            .into_bytes(),
            "dtc_out_of_range",
        ),
        (
            "unknown DTC status",
            dtc.clone(),
            format!(r#"{{"ts":"{ts}","seq":14,"dtcs":[{{"code":"P0301","status":"angry"}}]}}"#)
                .into_bytes(),
            "invalid_dtc_status",
        ),
        (
            "NaN",
            tel.clone(),
            format!(r#"{{"ts":"{ts}","seq":15,"signals":{{"Vehicle.Speed":NaN}}}}"#).into_bytes(),
            "non_finite_number",
        ),
        (
            "Infinity",
            tel.clone(),
            format!(r#"{{"ts":"{ts}","seq":16,"signals":{{"Vehicle.Speed":Infinity}}}}"#)
                .into_bytes(),
            "non_finite_number",
        ),
        (
            "overflowing number",
            tel.clone(),
            format!(r#"{{"ts":"{ts}","seq":17,"signals":{{"Vehicle.Speed":1e400}}}}"#).into_bytes(),
            "non_finite_number",
        ),
        (
            "ts far in the past",
            tel.clone(),
            br#"{"ts":"1980-01-01T00:00:00Z","seq":18,"signals":{}}"#.to_vec(),
            "timestamp_out_of_range",
        ),
        (
            "ts far in the future",
            tel.clone(),
            br#"{"ts":"2099-01-01T00:00:00Z","seq":19,"signals":{}}"#.to_vec(),
            "timestamp_out_of_range",
        ),
        (
            "ts not RFC 3339",
            tel.clone(),
            br#"{"ts":"23/11/2026 08:15","seq":20,"signals":{}}"#.to_vec(),
            "invalid_timestamp",
        ),
        (
            "signal name outside VSS",
            tel.clone(),
            format!(r#"{{"ts":"{ts}","seq":21,"signals":{{"speed":1}}}}"#).into_bytes(),
            "invalid_signal_name",
        ),
        (
            "payload over the limit",
            tel.clone(),
            over_limit.into_bytes(),
            "payload_too_large",
        ),
        ("empty batch", tel.clone(), b"[]".to_vec(), "empty_batch"),
        (
            "10,000-sample batch",
            tel.clone(),
            big_batch.into_bytes(),
            "batch_too_large",
        ),
        (
            "unknown message kind",
            format!("v1/vehicles/{VIN}/status"),
            sample(22, "").into_bytes(),
            "invalid_topic",
        ),
    ];

    let db = TestDb::new().await;
    let broker = TestBroker::start().await;
    let mut cfg = config(&db.url, &broker.url(), "bad-input");
    cfg.ingest.batch_max_messages = 8; // several batches, bad and good mixed in each
    let service = start_connected(cfg).await;
    // The unknown-kind topic is outside the subscription; publish it where ingest listens
    // only if a wildcard would catch it. It is checked through the parser instead (below).
    let mut messages: Vec<(String, Bytes)> = Vec::new();
    let mut valid = 0;
    for (i, (_, topic, payload, _)) in cases.iter().enumerate() {
        if topic.ends_with("/status") {
            continue;
        }
        messages.push((topic.clone(), Bytes::from(payload.clone())));
        messages.push((tel.clone(), Bytes::from(sample(1000 + i as i64, ""))));
        valid += 1;
    }
    let total = messages.len();
    publish(&broker, "pub-bad", messages).await;
    let metrics = service.metrics.clone();
    wait_until(
        std::time::Duration::from_secs(60),
        "all messages handled",
        || async {
            metric(&metrics.render(), "aftercare_ingest_messages_total", "") >= total as f64
        },
    )
    .await;

    let pool = db.pool().await;
    let text = service.metrics.render();
    for (name, topic, payload, reason) in &cases {
        if topic.ends_with("/status") {
            let err =
                aftercare::wire::parse_message(topic, payload, Utc::now(), &Default::default())
                    .unwrap_err();
            assert_eq!(err.reason.as_str(), *reason, "{name}");
            continue;
        }
        let row: Option<(String, String, i32, bool, i32, Vec<u8>)> = sqlx::query_as(
            "SELECT reason, detail, payload_size, truncated, length(payload), digest
             FROM dead_letters
             WHERE topic = $1 AND payload_size = $2 AND substr(payload, 1, 64) = substr($3, 1, 64)",
        )
        .bind(topic)
        .bind(payload.len() as i32)
        .bind(payload)
        .fetch_optional(&pool)
        .await
        .unwrap();
        let (got, detail, size, truncated, kept, digest) =
            row.unwrap_or_else(|| panic!("{name}: no dead letter"));
        assert_eq!(got, *reason, "{name}: {detail}");
        assert!(!detail.is_empty(), "{name}: a reason needs a detail");
        assert_eq!(size as usize, payload.len(), "{name}");
        // Kept whole up to the bound; past it a prefix, with the digest of the whole.
        let bound = aftercare::store::DEAD_LETTER_MAX_BYTES;
        assert_eq!(truncated, payload.len() > bound, "{name}");
        assert_eq!(kept as usize, payload.len().min(bound), "{name}");
        let mut h = Sha256::new();
        h.update(topic.as_bytes());
        h.update([0u8]);
        h.update(payload);
        assert_eq!(digest, h.finalize().to_vec(), "{name}");
    }
    let dead = cases.len() - 1;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM dead_letters").await,
        dead as i64
    );
    assert_eq!(
        metric(
            &text,
            "aftercare_ingest_messages_total",
            "outcome=\"dead_letter\""
        ),
        dead as f64
    );
    assert_eq!(
        metric(
            &text,
            "aftercare_dead_letters_total",
            "reason=\"invalid_vin\""
        ),
        4.0
    );
    assert_eq!(
        metric(
            &text,
            "aftercare_dead_letters_total",
            "reason=\"non_finite_number\""
        ),
        3.0
    );
    // Valid neighbours all stored.
    assert_eq!(
        count(&pool, "SELECT count(*) FROM samples").await,
        valid as i64
    );
    assert_eq!(
        metric(
            &text,
            "aftercare_ingest_messages_total",
            "outcome=\"stored\""
        ),
        valid as f64
    );
    service.shutdown().await.unwrap();
}
