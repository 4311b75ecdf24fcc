//! Foreign feeds mapped onto the wire contract: Traccar's forwarded positions (`traccar`) and
//! any JSON feed described by a mapping file (`mapping`).
//! Pure, no I/O: a record becomes a [`Mapped`] that names its vehicle by a VIN of its own or
//! by a device id, which the caller resolves through the device register
//! (`store::devices`) before [`Mapped::into_message`] makes the contract's message of it.
//! From there it takes the contract's own path: ledgers, dead letters, rollups, score marks.

pub mod mapping;
pub mod traccar;

use crate::wire::{check_signal_name, Dtc, DtcReport, Message, Reject, RejectReason, Sample, Vin};
use chrono::{DateTime, Utc};

/// One foreign record, mapped to VSS signals and fault codes, its vehicle not yet resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// The tracker's id in the device register (a Traccar `uniqueId`).
    pub device: Option<String>,
    /// A VIN the record carries itself; it wins over the register.
    pub vin: Option<Vin>,
    pub ts: DateTime<Utc>,
    /// With the vehicle and `ts`, the record's identity: a redelivery is a duplicate.
    pub seq: i64,
    /// VSS path and value, in VSS units.
    pub values: Vec<(String, f64)>,
    pub dtcs: Vec<Dtc>,
    /// The report's `source` when it carries fault codes (`traccar`, a feed's name).
    pub source: String,
}

impl Mapped {
    /// The contract's message for this record, once `registered` (the VIN the register holds
    /// for `device` at `ts`, if any) is known. The record's own VIN wins.
    pub fn into_message(self, registered: Option<&str>) -> Result<Message, Reject> {
        let vin = match (self.vin, registered) {
            (Some(vin), _) => vin,
            (None, Some(vin)) => Vin::parse(vin)?,
            (None, None) => {
                return Err(Reject::new(
                    RejectReason::UnknownDevice,
                    match &self.device {
                        Some(d) => format!(
                            "device {d:?} is not in the device register and sent no VIN \
                             (PUT /v1/devices/{{device_id}} registers it)"
                        ),
                        None => "the record names neither a VIN nor a device".to_owned(),
                    },
                ))
            }
        };
        for (name, value) in &self.values {
            check_signal_name(name)?;
            if !value.is_finite() {
                return Err(Reject::new(
                    RejectReason::NonFiniteNumber,
                    format!("signal {name} maps to a non-finite value"),
                ));
            }
        }
        let report = if self.dtcs.is_empty() {
            None
        } else {
            Some(DtcReport {
                seq: self.seq,
                ts: self.ts,
                source: Some(self.source),
                mil: None,
                dtcs: self.dtcs,
            })
        };
        Ok(Message::Combined {
            vin,
            samples: vec![Sample {
                seq: self.seq,
                ts: self.ts,
                values: self.values,
            }],
            report,
        })
    }
}

/// A VSS path segment made of a foreign key: characters VSS names cannot hold become `_`,
/// so `Vehicle.Traccar.<key>` is always a valid signal name (at most 64 characters).
pub fn segment(key: &str) -> String {
    let mut s: String = key
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.is_empty() {
        s.push('_');
    }
    s
}

/// Whether MQTT topic `topic` matches `filter` (`+` one level, `#` the rest).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_like_mqtt() {
        assert!(topic_matches("traccar/positions", "traccar/positions"));
        assert!(!topic_matches("traccar/positions", "traccar/positions/x"));
        assert!(topic_matches("obd/+/pids", "obd/dev1/pids"));
        assert!(!topic_matches("obd/+/pids", "obd/dev1/other"));
        assert!(topic_matches("fleet/#", "fleet/a/b/c"));
        assert!(!topic_matches("fleet/a", "fleet"));
    }

    #[test]
    fn segments_are_valid_signal_names() {
        for key in ["io239", "fuel-level", "", "ünï", "a.b"] {
            let name = format!("Vehicle.Traccar.{}", segment(key));
            assert!(check_signal_name(&name).is_ok(), "{name}");
        }
    }
}
