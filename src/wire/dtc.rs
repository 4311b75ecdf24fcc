//! Diagnostic reports: SAE J2012 codes (OBD-II / UDS) and SAE J1939 SPN/FMI pairs, each with a
//! lifecycle status.

use super::{
    check_payload_vin, parse_seq, parse_ts, type_name, Reject, RejectReason, TimeWindow, Vin,
};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct DtcReport {
    pub seq: i64,
    pub ts: DateTime<Utc>,
    pub source: Option<String>,
    pub mil: Option<bool>,
    pub dtcs: Vec<Dtc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dtc {
    pub code: DtcCode,
    pub status: DtcStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtcCode {
    /// `[PCBU][0-3][0-9A-F]{3}`, e.g. P0301.
    J2012(String),
    J1939 {
        spn: u32,
        fmi: u8,
        oc: Option<u8>,
        sa: Option<u8>,
    },
}

impl DtcCode {
    /// The identity of a fault across reports: the J2012 code, or `SPN{spn}-FMI{fmi}`.
    pub fn key(&self) -> String {
        match self {
            DtcCode::J2012(code) => code.clone(),
            DtcCode::J1939 { spn, fmi, .. } => format!("SPN{spn}-FMI{fmi}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtcStatus {
    Pending,
    Confirmed,
    Permanent,
    Active,
    Cleared,
}

impl DtcStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DtcStatus::Pending => "pending",
            DtcStatus::Confirmed => "confirmed",
            DtcStatus::Permanent => "permanent",
            DtcStatus::Active => "active",
            DtcStatus::Cleared => "cleared",
        }
    }

    pub fn parse(s: &str) -> Option<DtcStatus> {
        Some(match s {
            "pending" => DtcStatus::Pending,
            "confirmed" => DtcStatus::Confirmed,
            "permanent" => DtcStatus::Permanent,
            "active" => DtcStatus::Active,
            "cleared" => DtcStatus::Cleared,
            _ => return None,
        })
    }
}

pub(crate) fn parse_report(
    vin: &Vin,
    value: Value,
    window: &TimeWindow,
) -> Result<DtcReport, Reject> {
    let Value::Object(obj) = value else {
        return Err(Reject::new(
            RejectReason::WrongType,
            format!(
                "a diagnostic report must be an object, got {}",
                type_name(&value)
            ),
        ));
    };
    check_payload_vin(&obj, vin)?;
    let ts = parse_ts(obj.get("ts"), window)?;
    let seq = parse_seq(obj.get("seq"))?;
    let source = match obj.get("source") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.contains('\0') => {
            return Err(Reject::new(
                RejectReason::InvalidText,
                "\"source\" holds a NUL character, which no text column can keep",
            ))
        }
        Some(Value::String(s)) if s.len() <= 64 => Some(s.clone()),
        Some(other) => {
            return Err(Reject::new(
                RejectReason::WrongType,
                format!(
                    "\"source\" must be a string of at most 64 bytes, got {}",
                    type_name(other)
                ),
            ))
        }
    };
    let mil = match obj.get("mil") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            return Err(Reject::new(
                RejectReason::WrongType,
                format!("\"mil\" must be a boolean, got {}", type_name(other)),
            ))
        }
    };
    let dtcs = match obj.get("dtcs") {
        None | Some(Value::Null) => {
            return Err(Reject::new(RejectReason::MissingField, "missing \"dtcs\""))
        }
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                parse_dtc(item).map_err(|mut e| {
                    e.detail = format!("dtcs[{i}]: {}", e.detail);
                    e
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(Reject::new(
                RejectReason::WrongType,
                format!("\"dtcs\" must be an array, got {}", type_name(other)),
            ))
        }
    };
    Ok(DtcReport {
        seq,
        ts,
        source,
        mil,
        dtcs,
    })
}

fn parse_dtc(value: &Value) -> Result<Dtc, Reject> {
    let Value::Object(obj) = value else {
        return Err(Reject::new(
            RejectReason::WrongType,
            format!("a DTC must be an object, got {}", type_name(value)),
        ));
    };
    let status = match obj.get("status") {
        None | Some(Value::Null) => {
            return Err(Reject::new(
                RejectReason::MissingField,
                "missing \"status\"",
            ))
        }
        Some(Value::String(s)) => DtcStatus::parse(s).ok_or_else(|| {
            Reject::new(
                RejectReason::InvalidDtcStatus,
                format!("status {s:?} is not pending, confirmed, permanent, active or cleared"),
            )
        })?,
        Some(other) => {
            return Err(Reject::new(
                RejectReason::WrongType,
                format!("\"status\" must be a string, got {}", type_name(other)),
            ))
        }
    };
    let code = match obj.get("code") {
        Some(Value::String(code)) => {
            if obj.contains_key("spn") {
                return Err(Reject::new(
                    RejectReason::InvalidDtcCode,
                    "a DTC has either \"code\" (J2012) or \"spn\"/\"fmi\" (J1939), not both",
                ));
            }
            check_j2012(code)?;
            DtcCode::J2012(code.clone())
        }
        Some(other) => {
            return Err(Reject::new(
                RejectReason::WrongType,
                format!("\"code\" must be a string, got {}", type_name(other)),
            ))
        }
        None => DtcCode::J1939 {
            spn: required_int(obj, "spn", 524_287)? as u32,
            fmi: required_int(obj, "fmi", 31)? as u8,
            oc: optional_int(obj, "oc", 126)?.map(|v| v as u8),
            sa: optional_int(obj, "sa", 255)?.map(|v| v as u8),
        },
    };
    Ok(Dtc { code, status })
}

/// SAE J2012: system letter, then a digit 0-3, then three hex digits (upper case).
pub(crate) fn check_j2012(code: &str) -> Result<(), Reject> {
    let b = code.as_bytes();
    let valid = b.len() == 5
        && matches!(b[0], b'P' | b'C' | b'B' | b'U')
        && (b'0'..=b'3').contains(&b[1])
        && b[2..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c));
    if valid {
        Ok(())
    } else {
        Err(Reject::new(
            RejectReason::InvalidDtcCode,
            format!("code {code:?} is not SAE J2012 [PCBU][0-3][0-9A-F]{{3}}"),
        ))
    }
}

fn required_int(obj: &Map<String, Value>, field: &str, max: u64) -> Result<u64, Reject> {
    optional_int(obj, field, max)?.ok_or_else(|| {
        Reject::new(
            RejectReason::MissingField,
            format!("a DTC needs \"code\" or \"spn\" and \"fmi\"; missing \"{field}\""),
        )
    })
}

fn optional_int(obj: &Map<String, Value>, field: &str, max: u64) -> Result<Option<u64>, Reject> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v <= max => Ok(Some(v)),
            _ => Err(Reject::new(
                RejectReason::DtcOutOfRange,
                format!("\"{field}\" {n} is outside 0..={max}"),
            )),
        },
        Some(other) => Err(Reject::new(
            RejectReason::WrongType,
            format!("\"{field}\" must be an integer, got {}", type_name(other)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn j2012_codes() {
        for ok in ["P0301", "P0420", "C1234", "B0AFF", "U3000"] {
            assert!(check_j2012(ok).is_ok(), "{ok}");
        }
        for bad in [
            "P4301", "X0301", "P030", "P03011", "p0301", "P030g", "P030a",
        ] {
            assert_eq!(
                check_j2012(bad).unwrap_err().reason,
                RejectReason::InvalidDtcCode,
                "{bad}"
            );
        }
    }

    #[test]
    fn j1939_ranges() {
        let ok = serde_json::json!({"spn": 524287, "fmi": 31, "oc": 126, "status": "active"});
        assert!(parse_dtc(&ok).is_ok());
        for bad in [
            serde_json::json!({"spn": 524288, "fmi": 0, "status": "active"}),
            serde_json::json!({"spn": 1, "fmi": 32, "status": "active"}),
            serde_json::json!({"spn": 1, "fmi": 0, "oc": 127, "status": "active"}),
            serde_json::json!({"spn": -1, "fmi": 0, "status": "active"}),
        ] {
            assert_eq!(
                parse_dtc(&bad).unwrap_err().reason,
                RejectReason::DtcOutOfRange,
                "{bad}"
            );
        }
    }
}
