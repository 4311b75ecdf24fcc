//! Synthetic fleet: deterministic (seeded) vehicles that produce contract-v1 messages, and a
//! QoS 1 publisher that waits for every PUBACK. Feeds the demo, the tests and the benchmarks.

mod publish;

pub use publish::{publish_all, PublishError, PublishStats};

use crate::config::Config;
use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::fmt::Write;

#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Vehicles in the fleet.
    #[arg(long, default_value_t = 20)]
    pub vehicles: usize,
    /// Messages to publish.
    #[arg(long, default_value_t = 2000)]
    pub messages: usize,
    /// Messages per second (0: as fast as the broker takes them).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// MQTT client id of the publisher.
    #[arg(long, default_value = "aftercare-simulator")]
    pub client_id: String,
}

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
const WHEELS: [&str; 4] = [
    "Row1.Wheel.Left",
    "Row1.Wheel.Right",
    "Row2.Wheel.Left",
    "Row2.Wheel.Right",
];

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
            "Vehicle.TraveledDistance".into(),
            json!((v.odometer_km * 10.0).round() / 10.0),
        );
        signals.insert("Vehicle.Speed".into(), json!((speed * 10.0).round() / 10.0));
        signals.insert(
            "Vehicle.LowVoltageBattery.CurrentVoltage".into(),
            json!((v.battery_v * 100.0).round() / 100.0),
        );
        if v.ev {
            v.soh = (v.soh - rng.gen_range(0.0..0.0005)).max(50.0);
            signals.insert(
                "Vehicle.Powertrain.TractionBattery.StateOfHealth".into(),
                json!((v.soh * 100.0).round() / 100.0),
            );
        } else {
            signals.insert(
                "Vehicle.Powertrain.CombustionEngine.EngineCoolant.Temperature".into(),
                json!(v.coolant_c.round()),
            );
        }
        for (w, name) in WHEELS.iter().enumerate() {
            v.pad_wear[w] = (v.pad_wear[w] + rng.gen_range(0.0..0.01)).min(100.0);
            v.tread_mm[w] = (v.tread_mm[w] - rng.gen_range(0.0..0.0005)).max(0.5);
            signals.insert(
                format!("Vehicle.Chassis.Axle.{name}.Brake.PadWear"),
                json!(v.pad_wear[w].round()),
            );
            signals.insert(
                format!("Vehicle.Chassis.Axle.{name}.Tire.TreadDepth"),
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

/// `aftercare simulate`: publish a small fleet's messages through the broker.
pub async fn run_live(config: &Config, args: &SimulateArgs) -> Result<String, PublishError> {
    // Samples are 10 s apart and a store-and-forward array carries up to 20, so start early
    // enough that the fleet's clocks end before now.
    let per_vehicle = (args.messages / args.vehicles.max(1)) as i64;
    let start = Utc::now() - Duration::seconds(10 * 4 * per_vehicle + 60);
    let mut fleet = Fleet::new(args.seed, args.vehicles, start);
    let messages: Vec<Generated> = (0..args.messages).map(|_| fleet.next_message()).collect();
    let values: usize = messages.iter().map(|m| m.values).sum();
    let dtcs: usize = messages.iter().map(|m| m.dtcs).sum();
    let rate = (args.rate > 0.0).then_some(args.rate);
    let stats = publish_all(&config.mqtt.url, &args.client_id, owned(&messages), rate).await?;
    Ok(format!(
        "published {} messages ({} signal values, {} DTC entries) from {} vehicles in {:.2}s ({:.0} msg/s)",
        stats.acked,
        values,
        dtcs,
        args.vehicles,
        stats.elapsed.as_secs_f64(),
        stats.acked as f64 / stats.elapsed.as_secs_f64().max(1e-9)
    ))
}

/// Topic and payload pairs for [`publish_all`].
pub fn owned(messages: &[Generated]) -> Vec<(String, bytes::Bytes)> {
    messages
        .iter()
        .map(|m| (m.topic.clone(), bytes::Bytes::from(m.payload.clone())))
        .collect()
}
