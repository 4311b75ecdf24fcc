//! Telemetry samples: one object or a store-and-forward array of them, each with `ts`, `seq` and
//! a map of COVESA VSS signal paths to numeric (or boolean) values.

use super::{
    check_payload_vin, parse_seq, parse_ts, type_name, Limits, Reject, RejectReason, TimeWindow,
    Vin,
};
use chrono::{DateTime, Utc};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub seq: i64,
    pub ts: DateTime<Utc>,
    /// Signal path and value, in payload order. Booleans are stored as 0.0 / 1.0.
    pub values: Vec<(String, f64)>,
}

pub(crate) fn parse_samples(
    vin: &Vin,
    value: Value,
    window: &TimeWindow,
    limits: &Limits,
) -> Result<Vec<Sample>, Reject> {
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(Reject::new(
                    RejectReason::EmptyBatch,
                    "telemetry batch is an empty array",
                ));
            }
            if items.len() > limits.max_batch_samples {
                return Err(Reject::new(
                    RejectReason::BatchTooLarge,
                    format!(
                        "telemetry batch has {} samples, limit is {}",
                        items.len(),
                        limits.max_batch_samples
                    ),
                ));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    parse_sample(vin, item, window).map_err(|mut e| {
                        e.detail = format!("sample {i}: {}", e.detail);
                        e
                    })
                })
                .collect()
        }
        other => Ok(vec![parse_sample(vin, other, window)?]),
    }
}

fn parse_sample(vin: &Vin, value: Value, window: &TimeWindow) -> Result<Sample, Reject> {
    let Value::Object(mut obj) = value else {
        return Err(Reject::new(
            RejectReason::WrongType,
            format!(
                "a telemetry sample must be an object, got {}",
                type_name(&value)
            ),
        ));
    };
    check_payload_vin(&obj, vin)?;
    let ts = parse_ts(obj.get("ts"), window)?;
    let seq = parse_seq(obj.get("seq"))?;
    // Taken out of the object so the names move into the sample instead of being copied.
    let signals = match obj.remove("signals") {
        None | Some(Value::Null) => {
            return Err(Reject::new(
                RejectReason::MissingField,
                "missing \"signals\"",
            ))
        }
        Some(Value::Object(signals)) => signals,
        Some(other) => {
            return Err(Reject::new(
                RejectReason::WrongType,
                format!("\"signals\" must be an object, got {}", type_name(&other)),
            ))
        }
    };
    let mut values = Vec::with_capacity(signals.len());
    for (name, v) in signals {
        check_signal_name(&name)?;
        let x = match v {
            Value::Number(n) => match n.as_f64() {
                Some(x) if x.is_finite() => x,
                _ => {
                    return Err(Reject::new(
                        RejectReason::NonFiniteNumber,
                        format!("signal {name} value {n} is not a finite number"),
                    ))
                }
            },
            Value::Bool(b) => f64::from(u8::from(b)),
            other => {
                return Err(Reject::new(
                    RejectReason::WrongType,
                    format!(
                        "signal {name} must be a number or boolean, got {}",
                        type_name(&other)
                    ),
                ))
            }
        };
        values.push((name, x));
    }
    Ok(Sample { seq, ts, values })
}

/// VSS paths: dot-separated identifiers under the `Vehicle` root, at most 256 bytes.
pub(crate) fn check_signal_name(name: &str) -> Result<(), Reject> {
    // One pass over the bytes (it runs for every value of every message): segments of ASCII
    // letters, digits and '_', none empty.
    let valid = name.len() <= 256
        && name.strip_prefix("Vehicle.").is_some_and(|rest| {
            let mut segment_empty = true;
            for &c in rest.as_bytes() {
                if c == b'.' {
                    if segment_empty {
                        return false;
                    }
                    segment_empty = true;
                } else if c.is_ascii_alphanumeric() || c == b'_' {
                    segment_empty = false;
                } else {
                    return false;
                }
            }
            !segment_empty
        });
    if valid {
        Ok(())
    } else {
        Err(Reject::new(
            RejectReason::InvalidSignalName,
            format!("signal name {name:?} is not a VSS path under Vehicle."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert!(check_signal_name("Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.TreadDepth").is_ok());
        assert!(check_signal_name("Vehicle.OBD.Custom_Signal_2").is_ok());
        assert!(check_signal_name(&format!("Vehicle.{}", "A".repeat(248))).is_ok());
        assert!(check_signal_name(&format!("Vehicle.{}", "A".repeat(249))).is_err());
        for bad in [
            "Speed",
            "Vehicle.",
            "Vehicle..Speed",
            "Vehicle.Spe ed",
            "vehicle.Speed",
            "Vehicle.Speed.",
            "Vehicle.Sp-eed",
            "Vehicle.Spéed",
            "VehicleX.Speed",
        ] {
            assert!(check_signal_name(bad).is_err(), "{bad}");
        }
    }
}
