//! Declarative mappings for other JSON feeds (`feeds.mappings`, TOML files such as
//! `deploy/feeds/*.toml`): a topic filter, where the vehicle is (a topic level or a JSON
//! pointer; a VIN or a device id for the register), JSON pointers to the timestamp, the
//! sequence, each value (with its VSS path and a linear unit conversion) and the fault codes.

use super::{segment, Mapped};
use crate::wire::{
    check_j2012, check_signal_name, parse_ts, Dtc, DtcCode, DtcStatus, Limits, Reject,
    RejectReason, Vin,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("cannot read feed mapping {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("feed mapping {path} is not valid: {message}")]
    Invalid { path: String, message: String },
}

/// One feed's mapping, as written in its TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Names the feed: the `source` of its diagnostic reports.
    pub name: String,
    /// MQTT topic filter the feed publishes on (`+` and `#` allowed).
    pub topic: String,
    pub vehicle: VehicleRef,
    /// JSON pointer to the timestamp.
    pub ts: String,
    #[serde(default)]
    pub ts_unit: TsUnit,
    /// JSON pointer to a per-vehicle counter; without one, the timestamp in milliseconds
    /// identifies the message.
    pub seq: Option<String>,
    #[serde(default, rename = "value")]
    pub values: Vec<ValueMap>,
    pub dtcs: Option<DtcMap>,
}

/// Where the vehicle is named: `topic_level` (0-based) or `pointer`, holding a VIN or a
/// device id (`is`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VehicleRef {
    pub topic_level: Option<usize>,
    pub pointer: Option<String>,
    pub is: VehicleKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VehicleKind {
    Vin,
    Device,
}

/// How a numeric timestamp counts; text is always RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TsUnit {
    /// Epoch milliseconds.
    #[default]
    Ms,
    /// Epoch seconds, fractions allowed.
    S,
}

/// One value: `signal = value × scale + offset`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueMap {
    pub pointer: String,
    pub signal: String,
    #[serde(default = "one")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
}

fn one() -> f64 {
    1.0
}

/// Fault codes: an array of codes, of `[code, description]` pairs (python-OBD), or text
/// with codes separated by spaces or commas.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DtcMap {
    pub pointer: String,
    /// The status each reported code gets (default `confirmed`).
    pub status: Option<String>,
}

impl Mapping {
    /// Reads and checks a mapping file.
    pub fn from_file(path: &Path) -> Result<Mapping, MappingError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| MappingError::Read {
            path: shown.clone(),
            source,
        })?;
        Mapping::from_toml(&text).map_err(|message| MappingError::Invalid {
            path: shown,
            message,
        })
    }

    /// Parses and checks a mapping; the error says what is wrong.
    pub fn from_toml(text: &str) -> Result<Mapping, String> {
        let m: Mapping = toml::from_str(text).map_err(|e| e.to_string())?;
        m.check()?;
        Ok(m)
    }

    fn check(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.len() > 64 || segment(&self.name) != self.name {
            return Err(format!(
                "name {:?} must be 1 to 64 letters, digits or _",
                self.name
            ));
        }
        let t = &self.topic;
        if t.is_empty()
            || t.starts_with('$')
            || super::topic_matches(t, "v1/vehicles/x/telemetry")
            || super::topic_matches(t, "v1/vehicles/x/dtc")
        {
            return Err(format!(
                "topic {t:?} must be a topic filter of its own, not overlapping v1/vehicles"
            ));
        }
        match (&self.vehicle.topic_level, &self.vehicle.pointer) {
            (Some(level), None) => {
                let levels = t.split('/').count();
                if *level >= levels || t.split('/').nth(*level) == Some("#") {
                    return Err(format!(
                        "vehicle.topic_level {level} is not a level of {t:?}"
                    ));
                }
            }
            (None, Some(p)) => pointer(p, "vehicle.pointer")?,
            _ => return Err("vehicle needs one of topic_level or pointer".into()),
        }
        pointer(&self.ts, "ts")?;
        if let Some(p) = &self.seq {
            pointer(p, "seq")?;
        }
        for v in &self.values {
            pointer(&v.pointer, "value.pointer")?;
            check_signal_name(&v.signal)
                .map_err(|e| format!("value {}: {}", v.pointer, e.detail))?;
            if !v.scale.is_finite() || !v.offset.is_finite() {
                return Err(format!(
                    "value {}: scale and offset must be finite",
                    v.pointer
                ));
            }
        }
        if let Some(d) = &self.dtcs {
            pointer(&d.pointer, "dtcs.pointer")?;
            self.dtc_status()?;
        }
        Ok(())
    }

    fn dtc_status(&self) -> Result<DtcStatus, String> {
        match self.dtcs.as_ref().and_then(|d| d.status.as_deref()) {
            None => Ok(DtcStatus::Confirmed),
            Some(s) => DtcStatus::parse(s).ok_or_else(|| {
                format!("dtcs.status {s:?} is not pending, confirmed, permanent, active or cleared")
            }),
        }
    }

    /// Whether a message on `topic` is this feed's.
    pub fn matches(&self, topic: &str) -> bool {
        super::topic_matches(&self.topic, topic)
    }

    /// Maps one message of this feed. Values absent from a message are skipped (feeds send
    /// what they read); a value that is there but not a number (`"NO DATA"`) too.
    pub fn map(
        &self,
        topic: &str,
        payload: &[u8],
        now: DateTime<Utc>,
        limits: &Limits,
    ) -> Result<Mapped, Reject> {
        limits.check_payload_size(payload)?;
        let doc: Value = serde_json::from_slice(payload).map_err(|e| {
            Reject::new(
                RejectReason::InvalidJson,
                format!("payload is not valid JSON: {e}"),
            )
        })?;
        let id = match (self.vehicle.topic_level, &self.vehicle.pointer) {
            (Some(level), _) => topic.split('/').nth(level).map(str::to_owned),
            (None, Some(p)) => doc.pointer(p).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }),
            (None, None) => None,
        };
        let Some(id) = id.filter(|s| !s.is_empty() && s.len() <= 128 && !s.contains('\0')) else {
            return Err(Reject::new(
                RejectReason::MissingField,
                format!("feed {}: no vehicle id in the message", self.name),
            ));
        };
        let (vin, device) = match self.vehicle.is {
            VehicleKind::Vin => (Some(Vin::parse(&id)?), None),
            VehicleKind::Device => (None, Some(id)),
        };
        let raw_ts = doc.pointer(&self.ts);
        let ts_value = match (raw_ts, self.ts_unit) {
            (Some(Value::Number(n)), TsUnit::S) => n
                .as_f64()
                .filter(|s| s.is_finite() && s.abs() < 1e13)
                .map(|s| Value::from((s * 1000.0).round() as i64)),
            (Some(Value::String(s)), _) if s.trim().parse::<f64>().is_ok() => {
                let x = s.trim().parse::<f64>().unwrap_or(f64::NAN);
                let ms = match self.ts_unit {
                    TsUnit::S => x * 1000.0,
                    TsUnit::Ms => x,
                };
                (ms.is_finite() && ms.abs() < 1e16).then(|| Value::from(ms.round() as i64))
            }
            (other, _) => other.cloned(),
        };
        let ts = parse_ts(ts_value.as_ref(), &limits.telemetry_window(now)).map_err(|mut e| {
            e.detail = format!("feed {} timestamp {}: {}", self.name, self.ts, e.detail);
            e
        })?;
        let seq = match &self.seq {
            None => ts.timestamp_millis().max(0),
            Some(p) => match doc.pointer(p).and_then(Value::as_i64) {
                Some(n) if n >= 0 => n,
                _ => {
                    return Err(Reject::new(
                        RejectReason::InvalidSeq,
                        format!("feed {}: {p} is not a non-negative integer", self.name),
                    ))
                }
            },
        };
        let mut values = Vec::new();
        for v in &self.values {
            if let Some(x) = doc.pointer(&v.pointer).and_then(number) {
                let y = x * v.scale + v.offset;
                if y.is_finite() && !values.iter().any(|(n, _)| n == &v.signal) {
                    values.push((v.signal.clone(), y));
                }
            }
        }
        let dtcs = match &self.dtcs {
            None => Vec::new(),
            Some(d) => {
                // Checked when the mapping was loaded.
                let status = self.dtc_status().unwrap_or(DtcStatus::Confirmed);
                parse_dtcs(doc.pointer(&d.pointer), status)?
            }
        };
        Ok(Mapped {
            device,
            vin,
            ts,
            seq,
            values,
            dtcs,
            source: self.name.clone(),
        })
    }
}

fn pointer(p: &str, what: &str) -> Result<(), String> {
    if p.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "{what} {p:?} must be a JSON pointer (starting with /)"
        ))
    }
}

/// A number, a boolean (0/1) or numeric text, finite.
fn number(v: &Value) -> Option<f64> {
    let x = match v {
        Value::Number(n) => n.as_f64()?,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    x.is_finite().then_some(x)
}

fn parse_dtcs(v: Option<&Value>, status: DtcStatus) -> Result<Vec<Dtc>, Reject> {
    let mut codes: Vec<String> = Vec::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => codes.extend(
            s.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|c| !c.is_empty())
                .map(str::to_owned),
        ),
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(s) => codes.push(s.clone()),
                    Value::Array(pair) => match pair.first() {
                        Some(Value::String(s)) => codes.push(s.clone()),
                        _ => {
                            return Err(Reject::new(
                                RejectReason::WrongType,
                                "a DTC pair must start with the code as text",
                            ))
                        }
                    },
                    _ => {
                        return Err(Reject::new(
                            RejectReason::WrongType,
                            "DTCs must be codes as text or [code, description] pairs",
                        ))
                    }
                }
            }
        }
        Some(_) => {
            return Err(Reject::new(
                RejectReason::WrongType,
                "DTCs must be text or an array",
            ))
        }
    }
    let mut out: Vec<Dtc> = Vec::new();
    for code in codes {
        let code = code.trim().to_ascii_uppercase();
        check_j2012(&code)?;
        if out.iter().all(|d| d.code.key() != code) {
            out.push(Dtc {
                code: DtcCode::J2012(code),
                status,
            });
        }
    }
    Ok(out)
}

/// Every mapping file in `paths`, checked; two feeds may not claim one topic filter.
pub fn load_all(paths: &[std::path::PathBuf]) -> Result<Vec<Mapping>, MappingError> {
    let mut out: Vec<Mapping> = Vec::new();
    for path in paths {
        let m = Mapping::from_file(path)?;
        if let Some(other) = out.iter().find(|o| o.topic == m.topic || o.name == m.name) {
            return Err(MappingError::Invalid {
                path: path.display().to_string(),
                message: format!(
                    "feed {} (topic {}) has the name or topic of feed {}",
                    m.name, m.topic, other.name
                ),
            });
        }
        out.push(m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(name: &str) -> Mapping {
        let path = format!("{}/deploy/feeds/{name}.toml", env!("CARGO_MANIFEST_DIR"));
        Mapping::from_file(Path::new(&path)).unwrap()
    }

    #[test]
    fn the_shipped_mappings_load() {
        let all = load_all(&[
            format!("{}/deploy/feeds/elm327.toml", env!("CARGO_MANIFEST_DIR")).into(),
            format!("{}/deploy/feeds/teltonika.toml", env!("CARGO_MANIFEST_DIR")).into(),
        ])
        .unwrap();
        assert_eq!(all.len(), 2);
        assert!(shipped("elm327").matches("obd/dongle-7/pids"));
        assert!(shipped("teltonika").matches("356307042441013/data"));
    }

    #[test]
    fn bad_mappings_say_what_is_wrong() {
        let base = r#"name = "x"
            topic = "feed/+"
            ts = "/t"
            vehicle = { topic_level = 1, is = "device" }
        "#;
        assert!(Mapping::from_toml(base).is_ok());
        for (bad, says) in [
            (
                base.replace("feed/+", "v1/vehicles/+/telemetry"),
                "overlapping",
            ),
            (base.replace("feed/+", "#"), "overlapping"),
            (
                base.replace("topic_level = 1", "topic_level = 2"),
                "not a level",
            ),
            (base.replace("\"/t\"", "\"t\""), "JSON pointer"),
            (
                format!("{base}\n[[value]]\npointer = \"/a\"\nsignal = \"Speed\"\n"),
                "VSS path",
            ),
            (format!("{base}\ncolour = 1\n"), "unknown field"),
            (
                format!("{base}\n[dtcs]\npointer = \"/d\"\nstatus = \"on\"\n"),
                "dtcs.status",
            ),
        ] {
            let e = Mapping::from_toml(&bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn numeric_text_seconds_and_pairs_are_read() {
        let m = Mapping::from_toml(
            r#"name = "t"
            topic = "t/+"
            ts = "/time"
            ts_unit = "s"
            vehicle = { pointer = "/vin", is = "vin" }
            [[value]]
            pointer = "/v"
            signal = "Vehicle.Speed"
            scale = 2.0
            offset = 1.0
            [dtcs]
            pointer = "/d"
        "#,
        )
        .unwrap();
        let now = DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let got = m
            .map(
                "t/x",
                br#"{"vin":"WVWZZZ1JZXW000001","time":"1795000000.5","v":"3","d":[["p0301","Misfire"]]}"#,
                now,
                &Limits::default(),
            )
            .unwrap();
        assert_eq!(got.ts.timestamp_millis(), 1_795_000_000_500);
        assert_eq!(got.seq, 1_795_000_000_500);
        assert_eq!(got.values, vec![("Vehicle.Speed".to_owned(), 7.0)]);
        assert_eq!(got.dtcs[0].code.key(), "P0301");
        assert_eq!(
            m.map("t/x", br#"{"time":1795000000}"#, now, &Limits::default())
                .unwrap_err()
                .reason,
            RejectReason::MissingField
        );
    }
}
