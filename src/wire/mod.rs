//! Wire contract v1: topics, VINs, telemetry samples and diagnostic reports as they arrive over
//! MQTT. Pure parsing and validation, no I/O: everything downstream receives only values that
//! passed here, and everything rejected carries a specific [`RejectReason`].

mod dtc;
mod reject;
mod telemetry;
mod vin;

pub(crate) use dtc::check_j2012;
pub use dtc::{Dtc, DtcCode, DtcReport, DtcStatus};
pub use reject::{Reject, RejectReason};
pub(crate) use telemetry::check_signal_name;
pub use telemetry::Sample;
pub use vin::Vin;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::Value;

/// Policy limits applied while parsing; configured under `[ingest]`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_payload_bytes: usize,
    pub max_batch_samples: usize,
    /// Oldest accepted timestamp, relative to receipt (store-and-forward can be late).
    pub max_age: Duration,
    /// How far ahead of the receiver's clock a timestamp may be (sender clock skew).
    pub max_future: Duration,
    /// How long the store keeps what it is sent (`storage.retention_days` for telemetry, the
    /// DTC retention for reports): anything older would be dropped at once, so it is refused
    /// with its own reason.
    pub retention: Duration,
    pub dtc_retention: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 1024 * 1024,
            max_batch_samples: 1000,
            max_age: Duration::days(3 * 365),
            max_future: Duration::hours(24),
            retention: Duration::days(1095),
            dtc_retention: Duration::days(1095),
        }
    }
}

impl Limits {
    /// A payload over `max_payload_bytes` is refused whole, before it is read.
    pub fn check_payload_size(&self, payload: &[u8]) -> Result<(), Reject> {
        if payload.len() > self.max_payload_bytes {
            return Err(Reject::new(
                RejectReason::PayloadTooLarge,
                format!(
                    "payload is {} bytes, limit is {}",
                    payload.len(),
                    self.max_payload_bytes
                ),
            ));
        }
        Ok(())
    }

    /// The window a telemetry timestamp received at `now` must fall in.
    pub(crate) fn telemetry_window(&self, now: DateTime<Utc>) -> TimeWindow {
        TimeWindow {
            earliest: now - self.max_age,
            latest: now + self.max_future,
            retained_from: now - self.retention,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Telemetry,
    Dtc,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Telemetry => "telemetry",
            MessageKind::Dtc => "dtc",
        }
    }
}

/// A parsed inbound topic `v1/vehicles/{vin}/{telemetry|dtc}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub vin: Vin,
    pub kind: MessageKind,
}

impl Topic {
    pub fn parse(topic: &str) -> Result<Topic, Reject> {
        let mut parts = topic.split('/');
        let (Some("v1"), Some("vehicles"), Some(vin), Some(kind), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(Reject::new(
                RejectReason::InvalidTopic,
                format!("topic {topic:?} is not v1/vehicles/{{vin}}/telemetry or .../dtc"),
            ));
        };
        let kind = match kind {
            "telemetry" => MessageKind::Telemetry,
            "dtc" => MessageKind::Dtc,
            other => {
                return Err(Reject::new(
                    RejectReason::InvalidTopic,
                    format!("unknown message kind {other:?} in topic"),
                ))
            }
        };
        Ok(Topic {
            vin: Vin::parse(vin)?,
            kind,
        })
    }
}

/// Subscription filters for the inbound topics, as a shared subscription when a group is given.
pub fn subscription_filters(share_group: Option<&str>) -> [String; 2] {
    let prefix = match share_group {
        Some(group) => format!("$share/{group}/"),
        None => String::new(),
    };
    [
        format!("{prefix}v1/vehicles/+/telemetry"),
        format!("{prefix}v1/vehicles/+/dtc"),
    ]
}

/// A message that passed the contract.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Telemetry {
        vin: Vin,
        samples: Vec<Sample>,
    },
    Dtc {
        vin: Vin,
        report: DtcReport,
    },
    /// A foreign record (a Traccar position, a mapped feed's message) mapped to the contract:
    /// its samples and, when it reported fault codes, a diagnostic report, stored together
    /// under the same ledgers as the contract's own messages.
    Combined {
        vin: Vin,
        samples: Vec<Sample>,
        report: Option<DtcReport>,
    },
}

impl Message {
    pub fn vin(&self) -> &Vin {
        match self {
            Message::Telemetry { vin, .. }
            | Message::Dtc { vin, .. }
            | Message::Combined { vin, .. } => vin,
        }
    }

    /// The telemetry samples carried, if any kind of telemetry.
    pub fn samples(&self) -> Option<&[Sample]> {
        match self {
            Message::Telemetry { samples, .. } | Message::Combined { samples, .. } => Some(samples),
            Message::Dtc { .. } => None,
        }
    }

    /// The diagnostic report carried, if any.
    pub fn report(&self) -> Option<&DtcReport> {
        match self {
            Message::Dtc { report, .. } => Some(report),
            Message::Combined { report, .. } => report.as_ref(),
            Message::Telemetry { .. } => None,
        }
    }

    /// Number of signal values (telemetry) plus DTC entries (diagnostics) carried.
    pub fn value_count(&self) -> usize {
        let values: usize = self
            .samples()
            .map_or(0, |s| s.iter().map(|s| s.values.len()).sum());
        values + self.report().map_or(0, |r| r.dtcs.len())
    }
}

/// Parses and validates one MQTT message against the contract. `now` is the receiver's clock,
/// used for the timestamp plausibility window.
pub fn parse_message(
    topic: &str,
    payload: &[u8],
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<Message, Reject> {
    let topic = Topic::parse(topic)?;
    limits.check_payload_size(payload)?;
    let text = std::str::from_utf8(payload)
        .map_err(|e| Reject::new(RejectReason::NotUtf8, format!("payload is not UTF-8: {e}")))?;
    let value: Value = serde_json::from_str(text).map_err(|e| json_error(text, e))?;
    let window = |retention: Duration| TimeWindow {
        earliest: now - limits.max_age,
        latest: now + limits.max_future,
        retained_from: now - retention,
    };
    match topic.kind {
        MessageKind::Telemetry => {
            let window = window(limits.retention);
            let samples = telemetry::parse_samples(&topic.vin, value, &window, limits)?;
            Ok(Message::Telemetry {
                vin: topic.vin,
                samples,
            })
        }
        MessageKind::Dtc => {
            let report = dtc::parse_report(&topic.vin, value, &window(limits.dtc_retention))?;
            Ok(Message::Dtc {
                vin: topic.vin,
                report,
            })
        }
    }
}

/// JSON has no NaN or Infinity; senders that print them (or overflow a double) get a reason
/// that says so rather than a generic syntax error.
fn json_error(text: &str, err: serde_json::Error) -> Reject {
    let msg = err.to_string();
    let non_finite = msg.contains("number out of range")
        || ["NaN", "Infinity", "inf"].iter().any(|t| {
            text.match_indices(t).any(|(i, _)| {
                // Only bare tokens, not inside strings such as signal names.
                let before = text[..i].trim_end();
                before.ends_with(':')
                    || before.ends_with(',')
                    || before.ends_with('[')
                    || before.ends_with('-')
            })
        });
    if non_finite {
        Reject::new(
            RejectReason::NonFiniteNumber,
            format!("payload holds a non-finite number (NaN/Infinity are not JSON): {msg}"),
        )
    } else {
        Reject::new(
            RejectReason::InvalidJson,
            format!("payload is not valid JSON: {msg}"),
        )
    }
}

/// Accepted range for message timestamps.
pub(crate) struct TimeWindow {
    pub earliest: DateTime<Utc>,
    pub latest: DateTime<Utc>,
    /// The oldest instant the store still keeps.
    pub retained_from: DateTime<Utc>,
}

/// Reads a `ts` field: RFC 3339 text or integer epoch milliseconds.
pub(crate) fn parse_ts(
    value: Option<&Value>,
    window: &TimeWindow,
) -> Result<DateTime<Utc>, Reject> {
    let ts = match value {
        None | Some(Value::Null) => {
            return Err(Reject::new(RejectReason::MissingField, "missing \"ts\""))
        }
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                Reject::new(
                    RejectReason::InvalidTimestamp,
                    format!("\"ts\" {s:?} is not RFC 3339: {e}"),
                )
            })?,
        Some(Value::Number(n)) => {
            let Some(ms) = n.as_i64() else {
                return Err(Reject::new(
                    RejectReason::InvalidTimestamp,
                    format!("\"ts\" {n} is not integer epoch milliseconds"),
                ));
            };
            Utc.timestamp_millis_opt(ms).single().ok_or_else(|| {
                Reject::new(
                    RejectReason::InvalidTimestamp,
                    format!("\"ts\" {ms} is outside the representable range"),
                )
            })?
        }
        Some(other) => {
            return Err(Reject::new(
                RejectReason::WrongType,
                format!(
                    "\"ts\" must be RFC 3339 text or epoch milliseconds, got {}",
                    type_name(other)
                ),
            ))
        }
    };
    // PostgreSQL keeps microseconds; truncating here keeps a sample's identity the same in
    // memory and in the database.
    let ts = DateTime::from_timestamp_micros(ts.timestamp_micros()).unwrap_or(ts);
    if ts < window.earliest || ts > window.latest {
        return Err(Reject::new(
            RejectReason::TimestampOutOfRange,
            format!(
                "\"ts\" {} is outside the accepted window {} .. {}",
                ts.to_rfc3339(),
                window.earliest.to_rfc3339(),
                window.latest.to_rfc3339()
            ),
        ));
    }
    if ts < window.retained_from {
        return Err(Reject::new(
            RejectReason::PastRetention,
            format!(
                "\"ts\" {} is before {}, the oldest instant the store keeps (storage retention)",
                ts.to_rfc3339(),
                window.retained_from.to_rfc3339()
            ),
        ));
    }
    Ok(ts)
}

/// Reads a `seq` field: a non-negative integer.
pub(crate) fn parse_seq(value: Option<&Value>) -> Result<i64, Reject> {
    match value {
        None | Some(Value::Null) => Err(Reject::new(RejectReason::MissingField, "missing \"seq\"")),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(seq) if seq >= 0 => Ok(seq),
            _ => Err(Reject::new(
                RejectReason::InvalidSeq,
                format!("\"seq\" {n} is not a non-negative 63-bit integer"),
            )),
        },
        Some(other) => Err(Reject::new(
            RejectReason::WrongType,
            format!("\"seq\" must be an integer, got {}", type_name(other)),
        )),
    }
}

/// A payload `vin`, when present, must equal the topic's.
pub(crate) fn check_payload_vin(
    obj: &serde_json::Map<String, Value>,
    vin: &Vin,
) -> Result<(), Reject> {
    match obj.get("vin") {
        None => Ok(()),
        Some(Value::String(s)) if s == vin.as_str() => Ok(()),
        Some(other) => Err(Reject::new(
            RejectReason::VinMismatch,
            format!(
                "payload vin {other} does not match topic vin {}",
                vin.as_str()
            ),
        )),
    }
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIN: &str = "WVWZZZ1JZXW000001";

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn parse(kind: &str, payload: &str) -> Result<Message, Reject> {
        parse_message(
            &format!("v1/vehicles/{VIN}/{kind}"),
            payload.as_bytes(),
            now(),
            &Limits::default(),
        )
    }

    #[test]
    fn topics_parse_and_reject() {
        let t = Topic::parse(&format!("v1/vehicles/{VIN}/dtc")).unwrap();
        assert_eq!(t.kind, MessageKind::Dtc);
        assert_eq!(t.vin.as_str(), VIN);
        for bad in [
            "v1/vehicles",
            "v2/vehicles/WVWZZZ1JZXW000001/telemetry",
            "v1/vehicles/WVWZZZ1JZXW000001/offers",
            "v1/vehicles/WVWZZZ1JZXW000001/telemetry/x",
        ] {
            assert_eq!(
                Topic::parse(bad).unwrap_err().reason,
                RejectReason::InvalidTopic,
                "{bad}"
            );
        }
        assert_eq!(
            Topic::parse("v1/vehicles/WVWZZZ1JZXW00000I/telemetry")
                .unwrap_err()
                .reason,
            RejectReason::InvalidVin
        );
    }

    #[test]
    fn shared_subscription_filters() {
        assert_eq!(
            subscription_filters(Some("aftercare"))[0],
            "$share/aftercare/v1/vehicles/+/telemetry"
        );
        assert_eq!(subscription_filters(None)[1], "v1/vehicles/+/dtc");
    }

    #[test]
    fn the_design_examples_parse() {
        let m = parse(
            "telemetry",
            r#"{"ts":"2026-11-23T08:15:30.250Z","seq":1842,"signals":{
                "Vehicle.TraveledDistance":48213.4,"Vehicle.Speed":62.0,
                "Vehicle.Chassis.Axle.Row1.Wheel.Left.Brake.PadWear":38}}"#,
        )
        .unwrap();
        let Message::Telemetry { samples, .. } = &m else {
            panic!("kind")
        };
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].seq, 1842);
        assert_eq!(
            samples[0].ts.timestamp_millis(),
            1_763_885_730_250 + 31_536_000_000
        );
        assert_eq!(m.value_count(), 3);

        let m = parse(
            "dtc",
            r#"{"ts":"2026-11-23T08:15:31Z","seq":77,"source":"obd","mil":true,"dtcs":[
                {"code":"P0301","status":"confirmed"},
                {"spn":110,"fmi":0,"oc":3,"sa":0,"status":"active"}]}"#,
        )
        .unwrap();
        let Message::Dtc { report, .. } = m else {
            panic!("kind")
        };
        assert_eq!(report.dtcs.len(), 2);
        assert_eq!(report.dtcs[0].code.key(), "P0301");
        assert_eq!(report.dtcs[1].code.key(), "SPN110-FMI0");
        assert_eq!(report.dtcs[1].status, DtcStatus::Active);
        assert_eq!(report.mil, Some(true));
    }

    #[test]
    fn epoch_millis_and_batches() {
        let m = parse(
            "telemetry",
            r#"[{"ts":1795000000000,"seq":1,"signals":{"Vehicle.Speed":1}},
                {"ts":1795000001000,"seq":2,"signals":{"Vehicle.Speed":2,"Vehicle.IsMoving":true}}]"#,
        )
        .unwrap();
        assert_eq!(m.value_count(), 3);
    }

    #[test]
    fn non_finite_numbers_get_their_own_reason() {
        let e = parse(
            "telemetry",
            r#"{"ts":1795000000000,"seq":1,"signals":{"Vehicle.Speed":NaN}}"#,
        )
        .unwrap_err();
        assert_eq!(e.reason, RejectReason::NonFiniteNumber);
        let e = parse(
            "telemetry",
            r#"{"ts":1795000000000,"seq":1,"signals":{"Vehicle.Speed":1e999}}"#,
        )
        .unwrap_err();
        assert_eq!(e.reason, RejectReason::NonFiniteNumber);
        let e = parse(
            "telemetry",
            r#"{"ts":1795000000000,"seq":1,"signals":{"Vehicle.Speed":-Infinity}}"#,
        )
        .unwrap_err();
        assert_eq!(e.reason, RejectReason::NonFiniteNumber);
        let e = parse(
            "telemetry",
            r#"{"ts":1795000000000,"seq":1,"signals":{"Vehicle.NaNometer":}}"#,
        )
        .unwrap_err();
        assert_eq!(e.reason, RejectReason::InvalidJson);
    }

    #[test]
    fn timestamps_outside_the_window_are_rejected() {
        let e = parse(
            "telemetry",
            r#"{"ts":"1999-01-01T00:00:00Z","seq":1,"signals":{}}"#,
        )
        .unwrap_err();
        assert_eq!(e.reason, RejectReason::TimestampOutOfRange);
        let e = parse(
            "telemetry",
            r#"{"ts":"2030-01-01T00:00:00Z","seq":1,"signals":{}}"#,
        )
        .unwrap_err();
        assert_eq!(e.reason, RejectReason::TimestampOutOfRange);
        let e = parse("telemetry", r#"{"ts":"yesterday","seq":1,"signals":{}}"#).unwrap_err();
        assert_eq!(e.reason, RejectReason::InvalidTimestamp);
        let e = parse("telemetry", r#"{"ts":1.5,"seq":1,"signals":{}}"#).unwrap_err();
        assert_eq!(e.reason, RejectReason::InvalidTimestamp);
    }

    #[test]
    fn timestamps_are_kept_to_the_microsecond() {
        let m = parse(
            "telemetry",
            r#"{"ts":"2026-11-23T08:15:30.123456789Z","seq":1,"signals":{}}"#,
        )
        .unwrap();
        let Message::Telemetry { samples, .. } = m else {
            panic!("kind")
        };
        assert_eq!(samples[0].ts.timestamp_subsec_nanos(), 123_456_000);
    }

    #[test]
    fn size_limit_applies_before_parsing() {
        let limits = Limits {
            max_payload_bytes: 10,
            ..Limits::default()
        };
        let e = parse_message(
            &format!("v1/vehicles/{VIN}/telemetry"),
            b"{\"ts\":1,\"seq\":1,\"signals\":{}}",
            now(),
            &limits,
        )
        .unwrap_err();
        assert_eq!(e.reason, RejectReason::PayloadTooLarge);
    }
}
