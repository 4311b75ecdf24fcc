//! Delivery realism: what happens to a vehicle's messages between the car and the broker.
//! Coverage gaps (the car buffers and later sends one late store-and-forward array), clock
//! skew, transport delays that reorder messages, duplicates (a retry after a lost ack), and a
//! small share of malformed payloads. Each effect is switchable, and all draws come from the
//! vehicle's own delivery stream, so switching them changes no vehicle's physics.

use super::rng::Sim;
use super::stream::{Generated, Kind};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

/// Which delivery effects are on, and how often they strike.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Realism {
    /// Share of messages delivered twice.
    pub duplicates: f64,
    /// Share of messages held up for minutes to hours in transit (arriving out of order).
    pub late: f64,
    /// Coverage gaps with store-and-forward batches afterwards.
    pub gaps: bool,
    /// Vehicle clocks off by seconds, minutes or whole hours.
    pub skew: bool,
    /// Share of messages whose payload arrives malformed (dead letters).
    pub malformed: f64,
}

impl Realism {
    pub const NONE: Realism = Realism {
        duplicates: 0.0,
        late: 0.0,
        gaps: false,
        skew: false,
        malformed: 0.0,
    };
}

impl Default for Realism {
    fn default() -> Realism {
        Realism {
            duplicates: 0.005,
            late: 0.01,
            gaps: true,
            skew: true,
            malformed: 0.001,
        }
    }
}

/// A message and when it reaches the broker.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub at: DateTime<Utc>,
    pub message: Generated,
    /// This copy is a redelivery of one sent before.
    pub duplicate: bool,
    /// The payload is malformed and will be dead-lettered.
    pub malformed: bool,
}

/// What a vehicle has sent and holds back.
#[derive(Debug)]
pub struct Outbox {
    r: Sim,
    realism: Realism,
    vin: String,
    skew: Duration,
    pub seq: i64,
    gap_until: Option<u32>,
    held_samples: Vec<Value>,
    held_reports: Vec<Generated>,
    gap_rate: f64,
}

/// Samples per store-and-forward array at most (the contract allows 1000).
const MAX_ARRAY: usize = 500;

impl Outbox {
    pub fn new(r: Sim, realism: Realism, vin: &str, skew_ms: i64, gap_rate: f64) -> Outbox {
        Outbox {
            r,
            realism,
            vin: vin.to_owned(),
            skew: Duration::milliseconds(if realism.skew { skew_ms } else { 0 }),
            seq: 0,
            gap_until: None,
            held_samples: Vec::new(),
            held_reports: Vec::new(),
            gap_rate,
        }
    }

    /// The vehicle's clock reading for a true instant.
    pub fn device_time(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        t + self.skew
    }

    pub fn next_seq(&mut self) -> i64 {
        self.seq += 1;
        self.seq
    }

    /// Starts a coverage gap now and then (parking garages, rural roads, a dead modem).
    pub fn start_day(&mut self, day: u32) {
        if !self.realism.gaps {
            return;
        }
        if self.gap_until.is_some_and(|until| day >= until) {
            self.gap_until = None;
        }
        if self.gap_until.is_none() && self.r.chance(self.gap_rate) {
            self.gap_until = Some(day + 1 + self.r.exponential(2.5) as u32);
        }
    }

    fn in_gap(&self) -> bool {
        self.gap_until.is_some()
    }

    /// A telemetry sample taken at true time `at`.
    pub fn sample(&mut self, at: DateTime<Utc>, sample: Value, out: &mut Vec<Delivery>) {
        if self.in_gap() {
            self.held_samples.push(sample);
            return;
        }
        self.flush(at, out);
        let message = telemetry(&self.vin, vec![sample]);
        self.send(at, message, out);
    }

    /// A diagnostic report taken at true time `at`.
    pub fn report(&mut self, at: DateTime<Utc>, message: Generated, out: &mut Vec<Delivery>) {
        if self.in_gap() {
            self.held_reports.push(message);
            return;
        }
        self.flush(at, out);
        self.send(at, message, out);
    }

    /// Sends what a coverage gap held back, at `at`: samples as store-and-forward arrays,
    /// reports one by one.
    pub fn flush(&mut self, at: DateTime<Utc>, out: &mut Vec<Delivery>) {
        let samples = std::mem::take(&mut self.held_samples);
        for chunk in samples.chunks(MAX_ARRAY) {
            let message = telemetry(&self.vin, chunk.to_vec());
            self.send(at, message, out);
        }
        for report in std::mem::take(&mut self.held_reports) {
            self.send(at, report, out);
        }
    }

    fn send(&mut self, at: DateTime<Utc>, mut message: Generated, out: &mut Vec<Delivery>) {
        let malformed = self.r.chance(self.realism.malformed);
        if malformed {
            corrupt(&mut self.r, &mut message);
        }
        let mut at = at + Duration::milliseconds(self.r.int(200, 3000));
        if self.r.chance(self.realism.late) {
            at += Duration::seconds(self.r.exponential(7200.0) as i64 + 60);
        }
        let again = (!malformed && self.r.chance(self.realism.duplicates))
            .then(|| at + Duration::seconds(self.r.exponential(600.0) as i64 + 1));
        if let Some(again) = again {
            out.push(Delivery {
                at: again,
                message: message.clone(),
                duplicate: true,
                malformed,
            });
        }
        out.push(Delivery {
            at,
            message,
            duplicate: false,
            malformed,
        });
    }
}

/// A telemetry message: one sample as an object, several (store-and-forward) as an array.
fn telemetry(vin: &str, mut samples: Vec<Value>) -> Generated {
    let values = samples
        .iter()
        .map(|s| s["signals"].as_object().map_or(0, |o| o.len()))
        .sum();
    let n = samples.len();
    let (payload, kind) = if n == 1 {
        (samples.remove(0).to_string(), Kind::Telemetry)
    } else {
        (Value::Array(samples).to_string(), Kind::TelemetryBatch)
    };
    Generated {
        topic: format!("v1/vehicles/{vin}/telemetry"),
        payload: payload.into_bytes(),
        kind,
        vin: vin.to_owned(),
        samples: n,
        values,
        dtcs: 0,
    }
}

/// Breaks a payload the ways real senders do: cut off mid-write, a number printed as NaN, a
/// counter sent as text, another vehicle's VIN in the payload. Each is a dead letter.
fn corrupt(r: &mut Sim, message: &mut Generated) {
    let text = String::from_utf8_lossy(&message.payload).into_owned();
    let broken = match r.int(0, 3) {
        0 => text[..text.len() / 2].to_owned(),
        1 => text.replacen("\"seq\":", "\"seq\":NaN,\"seq_was\":", 1),
        2 => quote_first_seq(&text),
        _ => text.replacen('{', "{\"vin\":\"WVWZZZ1KZ0W000000\",", 1),
    };
    message.payload = broken.into_bytes();
}

/// `"seq":17` becomes `"seq":"17"`.
fn quote_first_seq(text: &str) -> String {
    let Some(start) = text.find("\"seq\":").map(|i| i + 6) else {
        return text.to_owned();
    };
    let digits = text[start..]
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len() - start);
    format!(
        "{}\"{}\"{}",
        &text[..start],
        &text[start..start + digits],
        &text[start + digits..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::rng::{stream, Purpose};
    use crate::wire::{parse_message, Limits};

    #[test]
    fn every_corruption_is_refused_by_the_contract() {
        let vin = "VF1RFB00X56789012";
        let now = Utc::now();
        let sample = |seq: i64| serde_json::json!({"ts": now.to_rfc3339(), "seq": seq, "signals": {"Vehicle.Speed": 1.0}});
        let mut r = stream(1, 1, Purpose::Delivery);
        for i in 0..200 {
            let mut m = telemetry(vin, (0..1 + i % 3).map(sample).collect());
            assert!(parse_message(&m.topic, &m.payload, now, &Limits::default()).is_ok());
            corrupt(&mut r, &mut m);
            let text = String::from_utf8_lossy(&m.payload).into_owned();
            assert!(
                parse_message(&m.topic, &m.payload, now, &Limits::default()).is_err(),
                "{text}"
            );
        }
        assert_eq!(
            quote_first_seq("{\"seq\":17,\"a\":1}"),
            "{\"seq\":\"17\",\"a\":1}"
        );
    }
}
