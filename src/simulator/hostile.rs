//! Hostile traffic with known outcomes, for the ingest fuzz test and `aftercare bench fuzz`:
//! a seeded mix of valid telemetry and reports, redeliveries, samples sharing an instant, and
//! malformed, oversized and out-of-contract messages. Each message carries the outcome the
//! contract gives it (stored, duplicate, or dead-lettered with a reason), decided by the wire
//! parser and the keys seen so far, and `verify` checks a database and a service's metrics
//! against every one of them.

use crate::wire::{self, Limits, Message};
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap, HashSet};

/// What the contract makes of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Stored,
    Duplicate,
    DeadLetter(&'static str),
}

/// One generated message.
#[derive(Debug, Clone)]
pub struct Hostile {
    pub topic: String,
    pub payload: Bytes,
    pub expect: Expect,
    /// Sample keys (VIN, seq, ts) a stored telemetry message brings.
    pub samples: Vec<(String, i64, DateTime<Utc>)>,
    /// Values it brings.
    pub values: u64,
}

/// A seeded generator of hostile traffic for `vehicles` cars.
pub struct Generator {
    rng: ChaCha8Rng,
    vins: Vec<String>,
    seq: Vec<i64>,
    now: DateTime<Utc>,
    limits: Limits,
    /// Keys of telemetry samples and reports already sent (a resend is a duplicate).
    sent: HashSet<(String, i64, DateTime<Utc>, bool)>,
    /// Valid messages sent, for resending.
    valid: Vec<(String, Bytes)>,
    /// Per vehicle, the instant of its last stored sample.
    last_ts: Vec<Option<DateTime<Utc>>>,
}

const VIN_CHARS: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXYZ0123456789";
const SIGNALS: [&str; 6] = [
    "Vehicle.Speed",
    "Vehicle.TraveledDistance",
    "Vehicle.LowVoltageBattery.CurrentVoltage",
    "Vehicle.Powertrain.CombustionEngine.EngineCoolant.Temperature",
    "Vehicle.Chassis.Axle.Row1.Wheel.Left.Brake.PadWear",
    "Vehicle.Cabin.Door.Row1.Left.IsOpen",
];

impl Generator {
    /// `limits` must be the service's (its payload limit decides what is oversized).
    pub fn new(seed: u64, vehicles: usize, now: DateTime<Utc>, limits: Limits) -> Generator {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let vins = (0..vehicles.max(1))
            .map(|_| {
                (0..17)
                    .map(|_| VIN_CHARS[rng.gen_range(0..VIN_CHARS.len())] as char)
                    .collect()
            })
            .collect::<Vec<String>>();
        Generator {
            seq: vec![0; vins.len()],
            last_ts: vec![None; vins.len()],
            vins,
            rng,
            now,
            limits,
            sent: HashSet::new(),
            valid: Vec::new(),
        }
    }

    fn ts(&mut self) -> DateTime<Utc> {
        // Whole milliseconds within the last two days: inside every window.
        let ms = self.rng.gen_range(60_000..2 * 86_400_000);
        let t = self.now - Duration::milliseconds(ms);
        DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
    }

    fn sample_json(&mut self, seq: i64, ts: DateTime<Utc>) -> serde_json::Value {
        let n = self.rng.gen_range(1..=SIGNALS.len());
        let mut signals = serde_json::Map::new();
        for name in &SIGNALS[..n] {
            let v = if name.ends_with("IsOpen") {
                serde_json::Value::Bool(self.rng.gen())
            } else {
                serde_json::json!((self.rng.gen_range(-1000.0..100_000.0f64) * 10.0).round() / 10.0)
            };
            signals.insert((*name).to_owned(), v);
        }
        serde_json::json!({"ts": ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                           "seq": seq, "signals": signals})
    }

    /// The next message.
    pub fn next_message(&mut self) -> Hostile {
        let i = self.rng.gen_range(0..self.vins.len());
        let vin = self.vins[i].clone();
        let tel = format!("v1/vehicles/{vin}/telemetry");
        let dtc = format!("v1/vehicles/{vin}/dtc");
        let roll = self.rng.gen_range(0..100);
        let (topic, payload): (String, Vec<u8>) = match roll {
            // Valid telemetry: one sample or a store-and-forward batch.
            0..=34 => {
                let n = if self.rng.gen_bool(0.3) {
                    self.rng.gen_range(2..20)
                } else {
                    1
                };
                let samples: Vec<serde_json::Value> = (0..n)
                    .map(|_| {
                        self.seq[i] += 1;
                        let (seq, ts) = (self.seq[i], self.ts());
                        self.sample_json(seq, ts)
                    })
                    .collect();
                let body = if n == 1 {
                    samples[0].clone()
                } else {
                    serde_json::Value::Array(samples)
                };
                (tel, body.to_string().into_bytes())
            }
            // A second sample at the instant of an earlier one: another seq, both kept.
            35..=39 => {
                self.seq[i] += 1;
                let seq = self.seq[i];
                let ts = self.last_ts[i].unwrap_or_else(|| self.now - Duration::hours(1));
                (tel, self.sample_json(seq, ts).to_string().into_bytes())
            }
            // A redelivery of an earlier valid message.
            40..=49 if !self.valid.is_empty() => {
                let k = self.rng.gen_range(0..self.valid.len());
                let (t, p) = self.valid[k].clone();
                (t, p.to_vec())
            }
            // A valid diagnostic report.
            40..=54 => {
                self.seq[i] += 1;
                let (seq, ts) = (self.seq[i], self.ts());
                let body = serde_json::json!({"ts": ts.to_rfc3339(), "seq": seq,
                    "source": "obd", "mil": true,
                    "dtcs": [{"code": "P0301", "status": "confirmed"}]});
                (dtc, body.to_string().into_bytes())
            }
            // Random bytes.
            55..=59 => {
                let n = self.rng.gen_range(0..200);
                (tel, (0..n).map(|_| self.rng.gen()).collect())
            }
            // Valid JSON cut short.
            60..=64 => {
                self.seq[i] += 1;
                let (seq, ts) = (self.seq[i], self.ts());
                let mut p = self.sample_json(seq, ts).to_string().into_bytes();
                let cut = self.rng.gen_range(0..p.len());
                p.truncate(cut);
                (tel, p)
            }
            // Wrong types, missing fields, bad numbers.
            65..=72 => {
                let ts = self.ts().to_rfc3339();
                let bodies = [
                    format!(r#"{{"ts":"{ts}","seq":"1","signals":{{}}}}"#),
                    format!(r#"{{"ts":"{ts}","signals":{{}}}}"#),
                    format!(r#"{{"ts":"{ts}","seq":1,"signals":{{"Vehicle.Speed":"fast"}}}}"#),
                    format!(r#"{{"ts":"{ts}","seq":1,"signals":{{"Vehicle.Speed":NaN}}}}"#),
                    format!(r#"{{"ts":"{ts}","seq":1,"signals":{{"Vehicle.Speed":1e999}}}}"#),
                    format!(r#"{{"ts":"{ts}","seq":-1,"signals":{{}}}}"#),
                    format!(r#"{{"ts":"{ts}","seq":1,"signals":{{"bad name":1}}}}"#),
                    r#"{"ts":"yesterday","seq":1,"signals":{}}"#.to_owned(),
                    format!(
                        r#"{{"ts":"{}","seq":1,"signals":{{}}}}"#,
                        (self.now + Duration::days(30)).to_rfc3339()
                    ),
                    "[]".to_owned(),
                    "null".to_owned(),
                    "[".repeat(5_000),
                ];
                let k = self.rng.gen_range(0..bodies.len());
                (tel, bodies[k].clone().into_bytes())
            }
            // A NUL in a report's source, and bad codes.
            73..=77 => {
                let ts = self.ts().to_rfc3339();
                let bodies = [
                    format!(r#"{{"ts":"{ts}","seq":1,"source":"ob\u0000d","dtcs":[]}}"#),
                    format!(
                        r#"{{"ts":"{ts}","seq":1,"dtcs":[{{"code":"X9999","status":"active"}}]}}"#
                    ),
                    format!(
                        r#"{{"ts":"{ts}","seq":1,"dtcs":[{{"spn":600000,"fmi":1,"status":"active"}}]}}"#
                    ),
                    format!(
                        r#"{{"ts":"{ts}","seq":1,"dtcs":[{{"code":"P0301","status":"maybe"}}]}}"#
                    ),
                ];
                let k = self.rng.gen_range(0..bodies.len());
                (dtc, bodies[k].clone().into_bytes())
            }
            // A VIN the contract refuses, or one the payload contradicts.
            78..=82 => {
                let ts = self.ts().to_rfc3339();
                if self.rng.gen_bool(0.5) {
                    (
                        "v1/vehicles/IOQ4567890ABCDEFG/telemetry".to_owned(),
                        format!(r#"{{"ts":"{ts}","seq":1,"signals":{{}}}}"#).into_bytes(),
                    )
                } else {
                    let other = &self.vins[(i + 1) % self.vins.len()];
                    (
                        tel,
                        format!(r#"{{"vin":"{other}","ts":"{ts}","seq":1,"signals":{{}}}}"#)
                            .into_bytes(),
                    )
                }
            }
            // Over the payload limit.
            83..=85 => {
                let n = self.limits.max_payload_bytes + self.rng.gen_range(1..4096);
                (tel, vec![b' '; n])
            }
            // Not UTF-8, and empty.
            86..=89 => {
                if self.rng.gen_bool(0.5) {
                    (tel, vec![0x7b, 0xc3, 0x28, 0x7d])
                } else {
                    (tel, Vec::new())
                }
            }
            // Valid again.
            _ => {
                self.seq[i] += 1;
                let (seq, ts) = (self.seq[i], self.ts());
                (tel, self.sample_json(seq, ts).to_string().into_bytes())
            }
        };
        self.judge(topic, payload)
    }

    /// The outcome the contract gives the message, given what was sent before.
    fn judge(&mut self, topic: String, payload: Vec<u8>) -> Hostile {
        let payload = Bytes::from(payload);
        match wire::parse_message(&topic, &payload, self.now, &self.limits) {
            Err(reject) => Hostile {
                topic,
                payload,
                expect: Expect::DeadLetter(reject.reason.as_str()),
                samples: Vec::new(),
                values: 0,
            },
            // The contract's parser never makes a combined message; it would count as
            // telemetry.
            Ok(Message::Telemetry { vin, samples } | Message::Combined { vin, samples, .. }) => {
                let mut new = Vec::new();
                let mut values = 0;
                for s in &samples {
                    if self
                        .sent
                        .insert((vin.as_str().to_owned(), s.seq, s.ts, false))
                    {
                        new.push((vin.as_str().to_owned(), s.seq, s.ts));
                        values += s.values.len() as u64;
                    }
                }
                let expect = if new.is_empty() {
                    Expect::Duplicate
                } else {
                    self.valid.push((topic.clone(), payload.clone()));
                    if let Some(i) = self.vins.iter().position(|v| v == vin.as_str()) {
                        self.last_ts[i] = new.last().map(|k| k.2);
                    }
                    Expect::Stored
                };
                Hostile {
                    topic,
                    payload,
                    expect,
                    samples: new,
                    values,
                }
            }
            Ok(Message::Dtc { vin, report }) => {
                let fresh =
                    self.sent
                        .insert((vin.as_str().to_owned(), report.seq, report.ts, true));
                if fresh {
                    self.valid.push((topic.clone(), payload.clone()));
                }
                Hostile {
                    topic,
                    payload,
                    expect: if fresh {
                        Expect::Stored
                    } else {
                        Expect::Duplicate
                    },
                    samples: Vec::new(),
                    values: 0,
                }
            }
        }
    }
}

/// Outcome counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub stored: u64,
    pub duplicate: u64,
    pub dead_letter: u64,
    pub values: u64,
}

impl Tally {
    pub fn of(messages: &[Hostile]) -> Tally {
        let mut t = Tally::default();
        for m in messages {
            match m.expect {
                Expect::Stored => t.stored += 1,
                Expect::Duplicate => t.duplicate += 1,
                Expect::DeadLetter(_) => t.dead_letter += 1,
            }
            t.values += m.values;
        }
        t
    }
}

/// Checks the database against every message: each expected sample is stored once, each
/// dead letter is there with its reason and delivery count, nothing else is; and the metrics
/// (`aftercare_*` text) agree with the tables. Returns what is wrong, empty when all holds.
pub async fn verify(
    pool: &PgPool,
    messages: &[Hostile],
    metrics: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let mut wrong = Vec::new();
    let want = Tally::of(messages);
    let metric = |name: &str, label: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.starts_with(name)
                    && (l[name.len()..].starts_with(' ') || l[name.len()..].starts_with('{'))
            })
            .filter(|l| label.is_empty() || l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    for (outcome, n) in [
        ("stored", want.stored),
        ("duplicate", want.duplicate),
        ("dead_letter", want.dead_letter),
    ] {
        let got = metric(
            "aftercare_ingest_messages_total",
            &format!("outcome=\"{outcome}\""),
        );
        if got != n as f64 {
            wrong.push(format!("{outcome}: the metric says {got}, expected {n}"));
        }
    }
    // Every stored sample, once.
    let stored: Vec<(String, i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT v.vin, s.seq, s.ts FROM samples s JOIN vehicles v ON v.id = s.vehicle_id",
    )
    .fetch_all(pool)
    .await?;
    let stored: HashMap<(String, i64, DateTime<Utc>), usize> =
        stored.into_iter().fold(HashMap::new(), |mut m, k| {
            *m.entry(k).or_default() += 1;
            m
        });
    let expected: HashSet<&(String, i64, DateTime<Utc>)> =
        messages.iter().flat_map(|m| &m.samples).collect();
    for key in &expected {
        if stored.get(*key) != Some(&1) {
            wrong.push(format!(
                "sample {key:?} stored {:?} times",
                stored.get(*key)
            ));
        }
    }
    if stored.len() != expected.len() {
        wrong.push(format!(
            "{} samples stored, {} expected",
            stored.len(),
            expected.len()
        ));
    }
    let values: i64 = sqlx::query_scalar("SELECT count(*) FROM telemetry")
        .fetch_one(pool)
        .await?;
    if values as u64 != want.values
        || metric("aftercare_ingest_values_total", "") != want.values as f64
    {
        wrong.push(format!(
            "values: table {values}, metric {}, expected {}",
            metric("aftercare_ingest_values_total", ""),
            want.values
        ));
    }
    // Every dead letter by its digest, with its reason and deliveries.
    let mut letters: BTreeMap<Vec<u8>, (&str, i64)> = BTreeMap::new();
    for m in messages {
        if let Expect::DeadLetter(reason) = m.expect {
            let mut h = Sha256::new();
            h.update(m.topic.as_bytes());
            h.update([0u8]);
            h.update(&m.payload);
            letters
                .entry(h.finalize().to_vec())
                .or_insert((reason, 0))
                .1 += 1;
        }
    }
    let rows: Vec<(Vec<u8>, String, i32)> =
        sqlx::query_as("SELECT digest, reason, deliveries FROM dead_letters")
            .fetch_all(pool)
            .await?;
    let rows: HashMap<Vec<u8>, (String, i32)> =
        rows.into_iter().map(|(d, r, n)| (d, (r, n))).collect();
    for (digest, (reason, n)) in &letters {
        match rows.get(digest) {
            Some((r, got)) if r == reason && i64::from(*got) == *n => {}
            other => wrong.push(format!("dead letter {reason} ×{n}: table has {other:?}")),
        }
    }
    if rows.len() != letters.len() {
        wrong.push(format!(
            "{} dead letters stored, {} expected",
            rows.len(),
            letters.len()
        ));
    }
    let by_reason: Vec<(String, i64)> =
        sqlx::query_as("SELECT reason, sum(deliveries)::int8 FROM dead_letters GROUP BY reason")
            .fetch_all(pool)
            .await?;
    for (reason, n) in by_reason {
        let got = metric(
            "aftercare_dead_letters_total",
            &format!("reason=\"{reason}\""),
        );
        if got != n as f64 {
            wrong.push(format!("dead letters {reason}: metric {got}, table {n}"));
        }
    }
    Ok(wrong)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_has_every_outcome_and_repeats_with_its_seed() {
        let now = Utc::now();
        let gen = |seed| {
            let mut g = Generator::new(seed, 5, now, Limits::default());
            (0..2_000).map(|_| g.next_message()).collect::<Vec<_>>()
        };
        let a = gen(7);
        let t = Tally::of(&a);
        assert!(
            t.stored > 500 && t.duplicate > 100 && t.dead_letter > 300,
            "{t:?}"
        );
        let reasons: HashSet<&str> = a
            .iter()
            .filter_map(|m| match m.expect {
                Expect::DeadLetter(r) => Some(r),
                _ => None,
            })
            .collect();
        for r in [
            "invalid_json",
            "not_utf8",
            "wrong_type",
            "invalid_text",
            "payload_too_large",
            "invalid_vin",
            "vin_mismatch",
            "non_finite_number",
            "invalid_dtc_code",
        ] {
            assert!(reasons.contains(r), "{r} among {reasons:?}");
        }
        let b = gen(7);
        assert!(a
            .iter()
            .zip(&b)
            .all(|(x, y)| x.payload == y.payload && x.expect == y.expect));
    }
}
