//! Traccar's forwarded positions (`forward.type` json or mqtt: `{"position": {...},
//! "device": {...}}`) mapped to VSS signals in VSS units. Traccar keeps speeds in knots,
//! distances in metres and engine hours in milliseconds; each known attribute is converted
//! here, and every other numeric or boolean attribute is kept as `Vehicle.Traccar.<key>`.

use super::{segment, Mapped};
use crate::catalog;
use crate::wire::{
    check_j2012, parse_ts, type_name, Dtc, DtcCode, DtcStatus, Limits, Reject, RejectReason, Vin,
};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// Knots to km/h.
const KNOTS_KMH: f64 = 1.852;
/// Where `source` of a report from Traccar says it came from.
pub const SOURCE: &str = "traccar";

/// How one known attribute is stored.
struct Known {
    key: &'static str,
    path: &'static str,
    scale: f64,
}

/// Known attributes, in order of preference for a path several can fill (the first present
/// fills it; the others are kept under `Vehicle.Traccar.<key>` unconverted).
const KNOWN: &[Known] = &[
    k("obdSpeed", catalog::SPEED, KNOTS_KMH),
    k("obdOdometer", catalog::ODOMETER, 0.001),
    k("odometer", catalog::ODOMETER, 0.001),
    k("totalDistance", catalog::ODOMETER, 0.001),
    k("coolantTemp", catalog::COOLANT_TEMPERATURE, 1.0),
    k("power", catalog::BATTERY_12V_VOLTAGE, 1.0),
    k("battery", catalog::BATTERY_12V_VOLTAGE, 1.0),
    k("rpm", "Vehicle.Powertrain.CombustionEngine.Speed", 1.0),
    k("engineLoad", "Vehicle.OBD.EngineLoad", 1.0),
    k("throttle", "Vehicle.OBD.ThrottlePosition", 1.0),
    k("fuel", "Vehicle.Powertrain.FuelSystem.AbsoluteLevel", 1.0),
    k(
        "fuelLevel",
        "Vehicle.Powertrain.FuelSystem.RelativeLevel",
        1.0,
    ),
    k(
        "fuelConsumption",
        "Vehicle.Powertrain.FuelSystem.InstantConsumption",
        1.0,
    ),
    // Milliseconds of engine time to hours.
    k(
        "hours",
        "Vehicle.Powertrain.CombustionEngine.EngineHours",
        1.0 / 3_600_000.0,
    ),
    k("ignition", "Vehicle.IsIgnitionOn", 1.0),
    k("motion", "Vehicle.IsMoving", 1.0),
];

const fn k(key: &'static str, path: &'static str, scale: f64) -> Known {
    Known { key, path, scale }
}

/// Attributes that are not values: the VIN, the fault codes.
const NOT_VALUES: &[&str] = &["vin", "dtcs"];

/// Maps one forwarded position. `now` and `limits` bound its time as the contract does.
pub fn parse(payload: &[u8], now: DateTime<Utc>, limits: &Limits) -> Result<Mapped, Reject> {
    limits.check_payload_size(payload)?;
    let value: Value = serde_json::from_slice(payload).map_err(|e| {
        Reject::new(
            RejectReason::InvalidJson,
            format!("payload is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(mut root) = value else {
        return Err(Reject::new(
            RejectReason::WrongType,
            format!(
                "a Traccar forward must be an object, got {}",
                type_name(&value)
            ),
        ));
    };
    let position = match root.remove("position") {
        Some(Value::Object(p)) => p,
        None | Some(Value::Null) => {
            return Err(Reject::new(
                RejectReason::MissingField,
                "missing \"position\"",
            ))
        }
        Some(other) => {
            return Err(Reject::new(
                RejectReason::WrongType,
                format!("\"position\" must be an object, got {}", type_name(&other)),
            ))
        }
    };
    let device = match root.get("device") {
        Some(Value::Object(d)) => unique_id(d)?,
        None | Some(Value::Null) => None,
        Some(other) => {
            return Err(Reject::new(
                RejectReason::WrongType,
                format!("\"device\" must be an object, got {}", type_name(other)),
            ))
        }
    };
    let window = limits.telemetry_window(now);
    let time = ["fixTime", "deviceTime", "serverTime"]
        .into_iter()
        .find_map(|f| position.get(f).filter(|v| !v.is_null()));
    let ts = parse_ts(time, &window).map_err(|mut e| {
        e.detail = format!("position fixTime: {}", e.detail);
        e
    })?;
    // Traccar's position id is unique on its server; without one, the fix time identifies it.
    let seq = match position.get("id").and_then(Value::as_i64) {
        Some(id) if id > 0 => id,
        _ => ts.timestamp_millis().max(0),
    };
    let empty = Map::new();
    let attributes = match position.get("attributes") {
        Some(Value::Object(a)) => a,
        None | Some(Value::Null) => &empty,
        Some(other) => {
            return Err(Reject::new(
                RejectReason::WrongType,
                format!(
                    "\"position.attributes\" must be an object, got {}",
                    type_name(other)
                ),
            ))
        }
    };
    let mut values = Vec::new();
    for (field, path) in [
        ("latitude", "Vehicle.CurrentLocation.Latitude"),
        ("longitude", "Vehicle.CurrentLocation.Longitude"),
        ("altitude", "Vehicle.CurrentLocation.Altitude"),
        ("course", "Vehicle.CurrentLocation.Heading"),
    ] {
        if let Some(x) = position.get(field).and_then(Value::as_f64) {
            values.push((path.to_owned(), x));
        }
    }
    let mut filled: Vec<&str> = Vec::new();
    for known in KNOWN {
        let Some(x) = attributes.get(known.key).and_then(number) else {
            continue;
        };
        if filled.contains(&known.path) {
            values.push((format!("Vehicle.Traccar.{}", known.key), x));
        } else {
            filled.push(known.path);
            values.push((known.path.to_owned(), x * known.scale));
        }
    }
    // The GPS speed when the vehicle reported none of its own.
    if let Some(x) = position.get("speed").and_then(Value::as_f64) {
        if filled.contains(&catalog::SPEED) {
            values.push(("Vehicle.Traccar.speed".to_owned(), x));
        } else {
            values.push((catalog::SPEED.to_owned(), x * KNOTS_KMH));
        }
    }
    for (key, v) in attributes {
        if KNOWN.iter().any(|k| k.key == key) || NOT_VALUES.contains(&key.as_str()) {
            continue;
        }
        // Text attributes (alarms, events, addresses) are not signals.
        if let Some(x) = number(v) {
            values.push((format!("Vehicle.Traccar.{}", segment(key)), x));
        }
    }
    dedup_names(&mut values);
    let dtcs = match attributes.get("dtcs") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => parse_dtcs(s)?,
        Some(other) => {
            return Err(Reject::new(
                RejectReason::WrongType,
                format!(
                    "attribute \"dtcs\" must be a string of codes, got {}",
                    type_name(other)
                ),
            ))
        }
    };
    // A VIN the vehicle reports wins over the register; one that is not a VIN (OBD readers
    // report zeros or partial ones) is ignored and the register decides.
    let vin = match attributes.get("vin") {
        // Readers that cannot get the VIN report zeros.
        Some(Value::String(s)) if !s.trim().bytes().all(|b| b == b'0') => Vin::parse(s.trim()).ok(),
        _ => None,
    };
    Ok(Mapped {
        device,
        vin,
        ts,
        seq,
        values,
        dtcs,
        source: SOURCE.to_owned(),
    })
}

/// `device.uniqueId`: text (an IMEI), or a number some setups send.
fn unique_id(device: &Map<String, Value>) -> Result<Option<String>, Reject> {
    match device.get("uniqueId") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 && !s.contains('\0') => {
            Ok(Some(s.clone()))
        }
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(Reject::new(
            RejectReason::WrongType,
            format!(
                "\"device.uniqueId\" must be text of 1 to 128 bytes without NUL, got {}",
                type_name(other)
            ),
        )),
    }
}

/// A numeric or boolean attribute as a value (booleans 0/1); numeric text too, which some
/// protocols decode into.
fn number(v: &Value) -> Option<f64> {
    let x = match v {
        Value::Number(n) => n.as_f64()?,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    x.is_finite().then_some(x)
}

/// Two keys that sanitise to one name keep the first value.
fn dedup_names(values: &mut Vec<(String, f64)>) {
    let mut seen = std::collections::HashSet::new();
    values.retain(|(name, _)| seen.insert(name.clone()));
}

/// Traccar's `dtcs`: OBD codes separated by spaces or commas, each reported as confirmed.
fn parse_dtcs(s: &str) -> Result<Vec<Dtc>, Reject> {
    let mut out: Vec<Dtc> = Vec::new();
    for code in s
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|c| !c.is_empty())
    {
        let code = code.to_ascii_uppercase();
        check_j2012(&code).map_err(|mut e| {
            e.detail = format!("attribute \"dtcs\": {}", e.detail);
            e
        })?;
        if out.iter().all(|d| d.code.key() != code) {
            out.push(Dtc {
                code: DtcCode::J2012(code),
                status: DtcStatus::Confirmed,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn map(json: &str) -> Result<Mapped, Reject> {
        parse(json.as_bytes(), now(), &Limits::default())
    }

    fn value(m: &Mapped, name: &str) -> Option<f64> {
        m.values.iter().find(|(n, _)| n == name).map(|(_, x)| *x)
    }

    #[test]
    fn a_position_maps_to_vss_in_vss_units() {
        let m = map(
            r#"{"position":{"id":981,"deviceId":7,"fixTime":"2026-11-23T08:15:30.000+00:00",
            "latitude":52.52,"longitude":13.405,"altitude":34.0,"course":90.0,"speed":10.0,
            "attributes":{"obdSpeed":20.0,"odometer":48213400,"totalDistance":1000,
              "coolantTemp":92,"power":12.4,"battery":3.9,"rpm":2100,"engineLoad":41.5,
              "throttle":17,"fuel":38.5,"hours":7200000,"ignition":true,"motion":false,
              "io239":1,"alarm":"sos","dtcs":"P0301 p0420,P0301"}},
            "device":{"id":7,"name":"Van 7","uniqueId":"356307042441013"}}"#,
        )
        .unwrap();
        assert_eq!(m.device.as_deref(), Some("356307042441013"));
        assert_eq!(m.vin, None);
        assert_eq!(m.seq, 981);
        assert_eq!(m.ts.to_rfc3339(), "2026-11-23T08:15:30+00:00");
        let close = |name: &str, want: f64| {
            let got = value(&m, name).unwrap_or_else(|| panic!("{name} missing"));
            assert!((got - want).abs() < 1e-9, "{name}: {got} != {want}");
        };
        close(catalog::SPEED, 37.04);
        close("Vehicle.Traccar.speed", 10.0);
        close(catalog::ODOMETER, 48213.4);
        close("Vehicle.Traccar.totalDistance", 1000.0);
        close(catalog::COOLANT_TEMPERATURE, 92.0);
        close(catalog::BATTERY_12V_VOLTAGE, 12.4);
        close("Vehicle.Traccar.battery", 3.9);
        close("Vehicle.Powertrain.CombustionEngine.Speed", 2100.0);
        close("Vehicle.OBD.EngineLoad", 41.5);
        close("Vehicle.OBD.ThrottlePosition", 17.0);
        close("Vehicle.Powertrain.FuelSystem.AbsoluteLevel", 38.5);
        close("Vehicle.Powertrain.CombustionEngine.EngineHours", 2.0);
        close("Vehicle.IsIgnitionOn", 1.0);
        close("Vehicle.IsMoving", 0.0);
        close("Vehicle.Traccar.io239", 1.0);
        close("Vehicle.CurrentLocation.Latitude", 52.52);
        assert_eq!(
            value(&m, "Vehicle.Traccar.alarm"),
            None,
            "text is no signal"
        );
        let codes: Vec<String> = m.dtcs.iter().map(|d| d.code.key()).collect();
        assert_eq!(codes, ["P0301", "P0420"]);
    }

    #[test]
    fn the_vin_attribute_wins_and_a_bad_one_is_ignored() {
        let m = map(
            r#"{"position":{"id":1,"fixTime":"2026-11-23T08:00:00Z","speed":0,
            "attributes":{"vin":"WVWZZZ1JZXW000001"}},"device":{"uniqueId":"x"}}"#,
        )
        .unwrap();
        assert_eq!(m.vin.as_ref().map(Vin::as_str), Some("WVWZZZ1JZXW000001"));
        let msg = m.into_message(Some("WVWZZZ1JZXW000002")).unwrap();
        assert_eq!(msg.vin().as_str(), "WVWZZZ1JZXW000001");
        let m = map(r#"{"position":{"id":1,"fixTime":"2026-11-23T08:00:00Z",
            "attributes":{"vin":"00000000000000000"}},"device":{"uniqueId":"x"}}"#)
        .unwrap();
        assert_eq!(m.vin, None);
        assert_eq!(
            m.into_message(None).unwrap_err().reason,
            RejectReason::UnknownDevice
        );
    }

    #[test]
    fn without_a_position_id_the_fix_time_identifies_it() {
        let m = map(r#"{"position":{"fixTime":1795000000000},"device":{"uniqueId":"a"}}"#).unwrap();
        assert_eq!(m.seq, 1_795_000_000_000);
    }

    #[test]
    fn bad_positions_are_refused_with_reasons() {
        for (json, reason) in [
            ("[]", RejectReason::WrongType),
            ("{", RejectReason::InvalidJson),
            (r#"{"device":{}}"#, RejectReason::MissingField),
            (r#"{"position":{}}"#, RejectReason::MissingField),
            (
                r#"{"position":{"fixTime":"1999-01-01T00:00:00Z"}}"#,
                RejectReason::TimestampOutOfRange,
            ),
            (
                r#"{"position":{"fixTime":"2026-11-23T08:00:00Z","attributes":{"dtcs":"X123"}}}"#,
                RejectReason::InvalidDtcCode,
            ),
            (
                r#"{"position":{"fixTime":"2026-11-23T08:00:00Z","attributes":{"dtcs":5}}}"#,
                RejectReason::WrongType,
            ),
        ] {
            assert_eq!(map(json).unwrap_err().reason, reason, "{json}");
        }
    }
}
