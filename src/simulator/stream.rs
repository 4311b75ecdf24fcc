//! A fast message stream for ingest benchmarks and tests: vehicles take turns, each message
//! 10 s after the vehicle's last, about 22 signal values each, a mix of single samples,
//! store-and-forward arrays and DTC reports, all valid under the contract. No physics and no
//! ground truth: for that, see the rest of the simulator.

use crate::catalog;
use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::fmt::Write;

/// Which message kind a generated message is, and how much it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Telemetry,
    TelemetryBatch,
    Dtc,
}

#[derive(Debug, Clone)]
pub struct Generated {
    pub topic: String,
    pub payload: Vec<u8>,
    pub kind: Kind,
    pub vin: String,
    pub samples: usize,
    pub values: usize,
    pub dtcs: usize,
}

struct Vehicle {
    vin: String,
    ev: bool,
    seq: i64,
    ts: DateTime<Utc>,
    odometer_km: f64,
    battery_v: f64,
    soh: f64,
    coolant_c: f64,
    pad_wear: [f64; 4],
    tread_mm: [f64; 4],
    misfire: Option<u8>,
}

const VIN_CHARS: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXYZ0123456789";

/// A seeded fleet whose messages are all valid under the contract.
pub struct Fleet {
    rng: StdRng,
    vehicles: Vec<Vehicle>,
    next: usize,
    /// Share of telemetry messages sent as store-and-forward batches.
    pub batch_share: f64,
    /// Share of messages that are diagnostic reports.
    pub dtc_share: f64,
}

impl Fleet {
    /// `start` is the timestamp of each vehicle's first sample; samples are 10 s apart.
    pub fn new(seed: u64, vehicles: usize, start: DateTime<Utc>) -> Fleet {
        let mut rng = StdRng::seed_from_u64(seed);
        let vehicles = (0..vehicles.max(1))
            .map(|i| {
                let mut vin: String = (0..11)
                    .map(|_| VIN_CHARS[rng.gen_range(0..VIN_CHARS.len())] as char)
                    .collect();
                let _ = write!(vin, "{:06}", i % 1_000_000);
                Vehicle {
                    vin,
                    ev: rng.gen_bool(0.3),
                    seq: 0,
                    ts: start + Duration::milliseconds(rng.gen_range(0..10_000)),
                    odometer_km: rng.gen_range(1_000.0..150_000.0),
                    battery_v: rng.gen_range(12.2..12.8),
                    soh: rng.gen_range(80.0..100.0),
                    coolant_c: 90.0,
                    pad_wear: [(); 4].map(|_| rng.gen_range(0.0..60.0)),
                    tread_mm: [(); 4].map(|_| rng.gen_range(3.0..8.0)),
                    misfire: None,
                }
            })
            .collect();
        Fleet {
            rng,
            vehicles,
            next: 0,
            batch_share: 0.1,
            dtc_share: 0.1,
        }
    }

    pub fn vins(&self) -> impl Iterator<Item = &str> {
        self.vehicles.iter().map(|v| v.vin.as_str())
    }

    /// The next message, vehicles taking turns.
    pub fn next_message(&mut self) -> Generated {
        let i = self.next;
        self.next = (self.next + 1) % self.vehicles.len();
        let roll: f64 = self.rng.gen();
        if roll < self.dtc_share {
            self.dtc_report(i)
        } else if roll < self.dtc_share + self.batch_share {
            let n = self.rng.gen_range(2..=20);
            let samples: Vec<serde_json::Value> = (0..n).map(|_| self.sample(i)).collect();
            self.telemetry(
                i,
                serde_json::Value::Array(samples),
                Kind::TelemetryBatch,
                n,
            )
        } else {
            let s = self.sample(i);
            self.telemetry(i, s, Kind::Telemetry, 1)
        }
    }

    fn telemetry(
        &mut self,
        i: usize,
        body: serde_json::Value,
        kind: Kind,
        samples: usize,
    ) -> Generated {
        let values = match &body {
            serde_json::Value::Array(a) => a
                .iter()
                .map(|s| s["signals"].as_object().map_or(0, |o| o.len()))
                .sum(),
            s => s["signals"].as_object().map_or(0, |o| o.len()),
        };
        let vin = self.vehicles[i].vin.clone();
        Generated {
            topic: format!("v1/vehicles/{vin}/telemetry"),
            payload: body.to_string().into_bytes(),
            kind,
            vin,
            samples,
            values,
            dtcs: 0,
        }
    }

    fn sample(&mut self, i: usize) -> serde_json::Value {
        let rng = &mut self.rng;
        let v = &mut self.vehicles[i];
        v.seq += 1;
        v.ts += Duration::seconds(10);
        let speed: f64 = rng.gen_range(0.0..130.0);
        v.odometer_km += speed / 360.0;
        v.battery_v = (v.battery_v + rng.gen_range(-0.02..0.02)).clamp(11.0, 14.8);
        v.coolant_c = (v.coolant_c + rng.gen_range(-1.0..1.0)).clamp(60.0, 125.0);
        let mut signals = serde_json::Map::new();
        signals.insert(
            catalog::ODOMETER.into(),
            json!((v.odometer_km * 10.0).round() / 10.0),
        );
        signals.insert(catalog::SPEED.into(), json!((speed * 10.0).round() / 10.0));
        signals.insert(
            catalog::BATTERY_12V_VOLTAGE.into(),
            json!((v.battery_v * 100.0).round() / 100.0),
        );
        if v.ev {
            v.soh = (v.soh - rng.gen_range(0.0..0.0005)).max(50.0);
            signals.insert(
                catalog::TRACTION_SOH.into(),
                json!((v.soh * 100.0).round() / 100.0),
            );
        } else {
            signals.insert(
                catalog::COOLANT_TEMPERATURE.into(),
                json!(v.coolant_c.round()),
            );
        }
        for w in 0..catalog::WHEELS.len() {
            v.pad_wear[w] = (v.pad_wear[w] + rng.gen_range(0.0..0.01)).min(100.0);
            v.tread_mm[w] = (v.tread_mm[w] - rng.gen_range(0.0..0.0005)).max(0.5);
            signals.insert(
                catalog::wheel_signal(w, catalog::PAD_WEAR_LEAF),
                json!(v.pad_wear[w].round()),
            );
            signals.insert(
                catalog::wheel_signal(w, catalog::TREAD_DEPTH_LEAF),
                json!((v.tread_mm[w] * 100.0).round() / 100.0),
            );
        }
        json!({"ts": v.ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "seq": v.seq, "signals": signals})
    }

    fn dtc_report(&mut self, i: usize) -> Generated {
        let rng = &mut self.rng;
        let v = &mut self.vehicles[i];
        v.seq += 1;
        v.ts += Duration::seconds(1);
        let mut dtcs = Vec::new();
        // A misfire episode: pending, then confirmed, then cleared after repair.
        match v.misfire {
            None if rng.gen_bool(0.5) => {
                let cyl = rng.gen_range(1..=6u8);
                v.misfire = Some(cyl);
                dtcs.push(json!({"code": format!("P030{cyl}"), "status": "pending"}));
            }
            Some(cyl) if rng.gen_bool(0.3) => {
                v.misfire = None;
                dtcs.push(json!({"code": format!("P030{cyl}"), "status": "cleared"}));
            }
            Some(cyl) => dtcs.push(json!({"code": format!("P030{cyl}"), "status": "confirmed"})),
            None => {}
        }
        if rng.gen_bool(0.3) {
            dtcs.push(json!({"spn": 110, "fmi": rng.gen_range(0..=2), "oc": rng.gen_range(1..=10), "sa": 0, "status": "active"}));
        }
        if rng.gen_bool(0.2) {
            dtcs.push(json!({"code": "P0420", "status": "confirmed"}));
        }
        let n = dtcs.len();
        let vin = v.vin.clone();
        let body = json!({
            "ts": v.ts.timestamp_millis(), "seq": v.seq, "source": "obd",
            "mil": n > 0, "dtcs": dtcs,
        });
        Generated {
            topic: format!("v1/vehicles/{vin}/dtc"),
            payload: body.to_string().into_bytes(),
            kind: Kind::Dtc,
            vin,
            samples: 0,
            values: 0,
            dtcs: n,
        }
    }
}

/// Topic and payload pairs for [`super::publish_all`].
pub fn owned(messages: &[Generated]) -> Vec<(String, bytes::Bytes)> {
    messages
        .iter()
        .map(|m| (m.topic.clone(), bytes::Bytes::from(m.payload.clone())))
        .collect()
}
