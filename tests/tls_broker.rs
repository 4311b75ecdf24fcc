//! A per-vehicle identity at the broker, against a real Mosquitto with the project's TLS
//! listener and ACL (deploy/) and certificates from `aftercare certs`: the service ingests
//! over mqtts:// with its client certificate and publishes offers over the same settings; a
//! vehicle may publish only below its own VIN and reads only its own offers; certificates of
//! another CA, expired ones and none at all are refused at the handshake.

mod booking_common;
mod common;

use common::tls::*;
use common::*;
use rumqttc::v5::mqttbytes::v5::PubAckReason;
use serde_json::json;
use std::time::Duration;

fn telemetry(seq: i64) -> Vec<u8> {
    sample_now(
        seq,
        json!({"Vehicle.Speed": 50.0, "Vehicle.TraveledDistance": 1200.5}),
    )
}

/// The vehicle's stored values of the last hour, by signal name, through the API's read path.
async fn points(pool: &sqlx::PgPool, vin: &str) -> Vec<(String, f64)> {
    use aftercare::store::read;
    let Some(id) = read::vehicle_id(pool, vin).await.unwrap() else {
        return Vec::new();
    };
    let now = chrono::Utc::now();
    let query = read::TelemetryQuery {
        vehicle_id: id,
        signal: None,
        from: now - chrono::Duration::hours(1),
        to: now + chrono::Duration::hours(1),
        after: None,
        limit: 100,
    };
    let (points, _) = read::telemetry(pool, &query).await.unwrap();
    let mut values: Vec<(String, f64)> = points.into_iter().map(|p| (p.signal, p.value)).collect();
    values.sort_by(|a, b| a.0.cmp(&b.0));
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vehicles_reach_only_their_own_topics_and_the_service_works_over_mqtts() {
    let api = booking_common::api().await;
    let pki = Pki::new();
    let broker = TestBroker::start_tls(&pki).await;
    // Two vehicles at risk: the offer worker offers both, the outbox publishes both offers.
    let (vin_a, vin_b) = (booking_common::vin(0), booking_common::vin(1));
    for vin in [&vin_a, &vin_b] {
        let id = booking_common::vehicle(&api.pool, vin).await;
        booking_common::profile(&api.pool, id, Some("WS-01"), true).await;
        booking_common::score(&api.pool, id, "brakes", [0.2, 0.8, 0.9], Some(15.0)).await;
    }
    pki.vehicle(&vin_a);
    pki.vehicle(&vin_b);
    let offers_a = subscriber(
        &pki.mqtt(&broker.tls_url(), &vin_a),
        "car-a-head-unit",
        "v1/vehicles/+/offers",
    )
    .await;
    let offers_b = subscriber(
        &pki.mqtt(&broker.tls_url(), &vin_b),
        "car-b-head-unit",
        "v1/vehicles/+/offers",
    )
    .await;

    let mut c = config(&api.db.url, &broker.tls_url(), "tls-service");
    c.mqtt = aftercare::config::MqttConfig {
        client_id: "tls-service".into(),
        share_group: "aftercare".into(),
        ..pki.mqtt(&broker.tls_url(), "aftercare")
    };
    c.offers.interval_ms = 200;
    c.notify.interval_ms = 50;
    let service = start_connected(c).await;

    // A spoofs B: the broker answers "not authorized" and delivers nothing.
    let a = pki.mqtt(&broker.tls_url(), &vin_a);
    for kind in ["telemetry", "dtc"] {
        let spoof = publish_once(
            &a,
            "car-a-spoof",
            &format!("v1/vehicles/{vin_b}/{kind}"),
            &telemetry(1),
        )
        .await;
        assert_eq!(spoof, Ok(PubAckReason::NotAuthorized), "{kind}");
    }
    // A's own message, sent after the spoofs on the same listener, is stored.
    let own = publish_once(
        &a,
        "car-a",
        &format!("v1/vehicles/{vin_a}/telemetry"),
        &telemetry(2),
    )
    .await;
    assert!(
        matches!(
            own,
            Ok(PubAckReason::Success | PubAckReason::NoMatchingSubscribers)
        ),
        "{own:?}"
    );
    let handled = handled(&service, 1.0, Duration::from_secs(30)).await;
    assert_eq!((handled.stored, handled.dead_letter), (1.0, 0.0));
    assert_eq!(
        points(&api.pool, &vin_b).await,
        vec![],
        "nothing stored for B"
    );
    assert_eq!(
        points(&api.pool, &vin_a).await,
        vec![
            ("Vehicle.Speed".to_owned(), 50.0),
            ("Vehicle.TraveledDistance".to_owned(), 1200.5)
        ]
    );
    assert_eq!(
        broker
            .log()
            .matches("Denied PUBLISH from car-a-spoof")
            .count(),
        2,
        "the broker's own account of the refusals"
    );

    // The outbox publishes each vehicle's offer over TLS as `aftercare`; each head unit, though
    // subscribed to every vehicle's offers, receives its own only.
    wait_until(Duration::from_secs(30), "both offers published", || async {
        !offers_a.lock().unwrap().is_empty() && !offers_b.lock().unwrap().is_empty()
    })
    .await;
    service.shutdown().await.unwrap();
    for (vin, got) in [(&vin_a, &offers_a), (&vin_b, &offers_b)] {
        let got = got.lock().unwrap().clone();
        assert!(
            got.iter().all(
                |(topic, p)| *topic == format!("v1/vehicles/{vin}/offers") && p["vin"] == **vin
            ),
            "{vin} received another vehicle's offer: {got:?}"
        );
    }
    // The service may not publish telemetry in a vehicle's name either.
    let svc = pki.mqtt(&broker.tls_url(), "aftercare");
    let forged = publish_once(
        &svc,
        "svc-forge",
        &format!("v1/vehicles/{vin_a}/telemetry"),
        &telemetry(3),
    )
    .await;
    assert_eq!(forged, Ok(PubAckReason::NotAuthorized));
}

#[tokio::test]
async fn the_tls_listener_refuses_foreign_expired_and_missing_client_certificates() {
    let pki = Pki::new();
    let broker = TestBroker::start_tls(&pki).await;
    let url = broker.tls_url();
    let vin = "1HGCM82633A004352";
    pki.vehicle(vin);
    assert_eq!(
        connect_once(&pki.mqtt(&url, vin), "car-valid").await,
        Ok(())
    );

    // A certificate for the same VIN from another CA.
    let other = Pki::new();
    other.vehicle(vin);
    let foreign = aftercare::config::MqttConfig {
        ca_file: Some(pki.ca()),
        ..other.mqtt(&url, vin)
    };
    let err = connect_once(&foreign, "car-foreign").await.unwrap_err();
    assert!(err.contains("UnknownCA"), "foreign CA: {err}");

    // This CA's certificate, expired yesterday.
    let (cert, key) = pki.expired_vehicle(vin);
    let expired = aftercare::config::MqttConfig {
        cert_file: Some(cert),
        key_file: Some(key),
        ..pki.mqtt(&url, vin)
    };
    let err = connect_once(&expired, "car-expired").await.unwrap_err();
    assert!(err.contains("CertificateExpired"), "expired: {err}");

    // No certificate at all.
    let anonymous = aftercare::config::MqttConfig {
        cert_file: None,
        key_file: None,
        ..pki.mqtt(&url, vin)
    };
    let err = connect_once(&anonymous, "car-anonymous").await.unwrap_err();
    assert!(err.contains("CertificateRequired"), "no certificate: {err}");

    // And the client side: a broker whose certificate the client's CA did not sign.
    let distrusting = other.mqtt(&url, vin);
    let err = connect_once(&distrusting, "car-distrusting")
        .await
        .unwrap_err();
    assert!(
        err.contains("invalid peer certificate"),
        "untrusted broker: {err}"
    );
}
