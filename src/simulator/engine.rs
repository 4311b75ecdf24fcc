//! The simulation clock: steps every vehicle through each day under shared weather, queues
//! their messages by the time they reach the broker (so delayed and late ones arrive out of
//! order), and hands out one day of deliveries and service records at a time. Live and bulk
//! mode consume the same days, so they send the same messages.

use super::delivery::{Delivery, Realism};
use super::fleet::{self, Climate, VehicleSpec};
use super::rng::{stream, Purpose, Sim};
use super::truth::Truth;
use super::vehicle::{Produced, VehicleSim};
use crate::store::profiles::Profile;
use crate::store::service_records::NewServiceRecord;
use chrono::{DateTime, Datelike, Duration, Utc};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub vehicles: usize,
    /// Home workshops `WS-01`..`WS-NN`.
    pub workshops: usize,
    /// Midnight UTC of the first day.
    pub start: DateTime<Utc>,
    pub days: u32,
    pub realism: Realism,
}

/// One simulated day's output: deliveries in arrival order, and completed workshop jobs.
#[derive(Debug, Default)]
pub struct DayOutput {
    pub day: u32,
    pub date: DateTime<Utc>,
    pub deliveries: Vec<Delivery>,
    pub records: Vec<NewServiceRecord>,
}

struct Queued {
    at: DateTime<Utc>,
    order: u64,
    delivery: Delivery,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// Day-to-day weather of one climate zone: the seasonal curve plus persistent spells.
struct Weather {
    climate: Climate,
    r: Sim,
    anomaly: f64,
}

impl Weather {
    fn temperature(&mut self, date: DateTime<Utc>) -> f64 {
        let (mean, amplitude) = self.climate.temperature_curve();
        // Coldest around 20 January.
        let phase = std::f64::consts::TAU * (f64::from(date.ordinal()) - 20.0) / 365.25;
        self.anomaly = 0.75 * self.anomaly + self.r.normal(0.0, 2.6);
        mean - amplitude * libm::cos(phase) + self.anomaly
    }
}

/// One weather generator per climate zone (in `Climate::ALL` order), each on its own stream.
fn weather_zones(seed: u64) -> Vec<Weather> {
    Climate::ALL
        .iter()
        .enumerate()
        .map(|(i, climate)| Weather {
            climate: *climate,
            r: stream(seed, u64::MAX - i as u64, Purpose::Weather),
            anomaly: 0.0,
        })
        .collect()
}

/// The whole run's temperatures, day by day per climate zone (in `Climate::ALL` order).
/// Weather is the only thing vehicles share, so with it computed once any range of the
/// fleet can be simulated on its own.
pub fn weather(config: &SimConfig) -> Vec<[f64; 3]> {
    let mut zones = weather_zones(config.seed);
    (0..config.days)
        .map(|day| {
            let date = config.start + Duration::days(i64::from(day));
            let mut t = [0.0; 3];
            for (slot, zone) in t.iter_mut().zip(zones.iter_mut()) {
                *slot = zone.temperature(date);
            }
            t
        })
        .collect()
}

/// One vehicle's whole run: every delivery in arrival order.
#[derive(Debug)]
pub struct VehicleRun {
    pub vin: String,
    pub deliveries: Vec<Delivery>,
}

/// A range of the fleet simulated over the whole run.
#[derive(Debug, Default)]
pub struct RangeOutput {
    /// In fleet order.
    pub vehicles: Vec<VehicleRun>,
    pub records: Vec<NewServiceRecord>,
    /// Unordered; `Truth::sort` orders it.
    pub truth: Truth,
}

/// Simulates fleet members `range` over every day of `config`, given the run's `weather`.
/// Each vehicle gets exactly the messages, records and truth `Simulation` gives it, and its
/// deliveries in the order `Simulation` hands them out (by arrival time, ties in the order
/// they were sent).
pub fn simulate_range(
    config: &SimConfig,
    weather: &[[f64; 3]],
    range: std::ops::Range<usize>,
) -> RangeOutput {
    let mut out = RangeOutput::default();
    let mut produced = Produced::default();
    for index in range {
        let spec = fleet::vehicle(config.seed, index, config.workshops, config.start);
        let climate = Climate::ALL
            .iter()
            .position(|c| *c == spec.climate)
            .unwrap_or(0);
        let mut v = VehicleSim::new(spec, config.seed, config.realism, config.workshops);
        for (day, temperatures) in (0..config.days).zip(weather) {
            let date = config.start + Duration::days(i64::from(day));
            v.step(
                day,
                date,
                temperatures[climate],
                &mut out.truth,
                &mut produced,
            );
        }
        let end = config.start + Duration::days(i64::from(config.days));
        v.finish(config.days, end, &mut out.truth, &mut produced.deliveries);
        let mut deliveries = std::mem::take(&mut produced.deliveries);
        // Stable: equal arrival times keep the order they were sent in, as in the queue.
        deliveries.sort_by_key(|d| d.at);
        out.records.append(&mut produced.records);
        out.vehicles.push(VehicleRun {
            vin: v.spec.vin.clone(),
            deliveries,
        });
    }
    out
}

pub struct Simulation {
    config: SimConfig,
    vehicles: Vec<VehicleSim>,
    weather: Vec<Weather>,
    day: u32,
    queue: BinaryHeap<Reverse<Queued>>,
    order: u64,
    truth: Truth,
    finished: bool,
}

impl Simulation {
    pub fn new(config: SimConfig) -> Simulation {
        let vehicles =
            fleet::generate(config.seed, config.vehicles, config.workshops, config.start)
                .into_iter()
                .map(|spec| VehicleSim::new(spec, config.seed, config.realism, config.workshops))
                .collect();
        let weather = weather_zones(config.seed);
        Simulation {
            config,
            vehicles,
            weather,
            day: 0,
            queue: BinaryHeap::new(),
            order: 0,
            truth: Truth::default(),
            finished: false,
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    pub fn specs(&self) -> impl Iterator<Item = &VehicleSpec> {
        self.vehicles.iter().map(|v| &v.spec)
    }

    /// Every vehicle's registry profile, in fleet order.
    pub fn profiles(&self) -> Vec<(String, Profile)> {
        self.specs().map(|s| (s.vin.clone(), s.profile())).collect()
    }

    /// The truth, ordered.
    pub fn into_truth(mut self) -> Truth {
        self.truth.sort();
        self.truth
    }

    fn enqueue(&mut self, deliveries: Vec<Delivery>) {
        for delivery in deliveries {
            self.order += 1;
            self.queue.push(Reverse(Queued {
                at: delivery.at,
                order: self.order,
                delivery,
            }));
        }
    }

    fn drain_until(&mut self, until: Option<DateTime<Utc>>) -> Vec<Delivery> {
        let mut out = Vec::new();
        while let Some(Reverse(q)) = self.queue.peek() {
            if until.is_some_and(|u| q.at >= u) {
                break;
            }
            if let Some(Reverse(q)) = self.queue.pop() {
                out.push(q.delivery);
            }
        }
        out
    }

    /// Simulates the next day. After the last day, one more output carries what was still
    /// held back or in transit; then `None`.
    pub fn next_day(&mut self) -> Option<DayOutput> {
        if self.finished {
            return None;
        }
        let date = self.config.start + Duration::days(i64::from(self.day));
        if self.day >= self.config.days {
            self.finished = true;
            let mut held = Vec::new();
            for v in &mut self.vehicles {
                v.finish(self.day, date, &mut self.truth, &mut held);
            }
            self.enqueue(held);
            return Some(DayOutput {
                day: self.day,
                date,
                deliveries: self.drain_until(None),
                records: Vec::new(),
            });
        }
        let temperatures: Vec<f64> = self
            .weather
            .iter_mut()
            .map(|w| w.temperature(date))
            .collect();
        let mut produced = Produced::default();
        for v in &mut self.vehicles {
            let climate = Climate::ALL
                .iter()
                .position(|c| *c == v.spec.climate)
                .unwrap_or(0);
            v.step(
                self.day,
                date,
                temperatures[climate],
                &mut self.truth,
                &mut produced,
            );
        }
        self.enqueue(std::mem::take(&mut produced.deliveries));
        let mut records = produced.records;
        records.sort_by(|a, b| {
            (a.performed_at, &a.external_id).cmp(&(b.performed_at, &b.external_id))
        });
        let day = self.day;
        self.day += 1;
        Some(DayOutput {
            day,
            date,
            deliveries: self.drain_until(Some(date + Duration::days(1))),
            records,
        })
    }
}
