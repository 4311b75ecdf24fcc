//! Fleet generation: who the vehicles are. Make, model and model year, powertrain (about 30%
//! battery-electric), a VIN with a valid ISO 3779 check digit, the owner and home workshop,
//! and what drives wear: usage profile (mileage, trips, urban share), climate zone, driving
//! style, service habits, telematics coverage and clock skew.

use super::rng::{stream, Purpose, Sim};
use crate::store::profiles::Profile;
use crate::vehicle::Powertrain;
use chrono::{DateTime, Datelike, Utc};

/// How a vehicle is used; sets mileage, trips per day and urban share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Usage {
    Commuter,
    LongDistance,
    /// Urban stop-and-go, short trips.
    Urban,
    /// Taxi and delivery: high mileage, many stops.
    TaxiDelivery,
}

impl Usage {
    pub const ALL: [Usage; 4] = [
        Usage::Commuter,
        Usage::LongDistance,
        Usage::Urban,
        Usage::TaxiDelivery,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Usage::Commuter => "commuter",
            Usage::LongDistance => "long_distance",
            Usage::Urban => "urban",
            Usage::TaxiDelivery => "taxi_delivery",
        }
    }

    /// Median km a year.
    fn annual_km(self) -> f64 {
        match self {
            Usage::Commuter => 14_000.0,
            Usage::LongDistance => 32_000.0,
            Usage::Urban => 7_500.0,
            Usage::TaxiDelivery => 60_000.0,
        }
    }

    /// Share of distance driven in stop-and-go traffic.
    fn urban_share(self) -> f64 {
        match self {
            Usage::Commuter => 0.4,
            Usage::LongDistance => 0.15,
            Usage::Urban => 0.8,
            Usage::TaxiDelivery => 0.65,
        }
    }

    /// Probability of driving on a weekday and on a weekend day.
    pub fn drive_probability(self, weekend: bool) -> f64 {
        match (self, weekend) {
            (Usage::Commuter, false) => 0.93,
            (Usage::Commuter, true) => 0.55,
            (Usage::LongDistance, false) => 0.8,
            (Usage::LongDistance, true) => 0.5,
            (Usage::Urban, _) => 0.75,
            (Usage::TaxiDelivery, false) => 0.97,
            (Usage::TaxiDelivery, true) => 0.7,
        }
    }

    /// Trips a driving day (mean).
    pub fn trips(self) -> f64 {
        match self {
            Usage::Commuter => 2.5,
            Usage::LongDistance => 2.0,
            Usage::Urban => 3.5,
            Usage::TaxiDelivery => 14.0,
        }
    }
}

/// Climate zone: sets the seasonal temperature curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Climate {
    /// Nordic / continental winters.
    Cold,
    Temperate,
    /// Mediterranean / desert summers.
    Hot,
}

impl Climate {
    pub const ALL: [Climate; 3] = [Climate::Cold, Climate::Temperate, Climate::Hot];

    pub fn as_str(self) -> &'static str {
        match self {
            Climate::Cold => "cold",
            Climate::Temperate => "temperate",
            Climate::Hot => "hot",
        }
    }

    /// (annual mean, seasonal half-amplitude) in °C.
    pub fn temperature_curve(self) -> (f64, f64) {
        match self {
            Climate::Cold => (3.0, 13.0),
            Climate::Temperate => (10.0, 8.5),
            Climate::Hot => (19.0, 9.0),
        }
    }
}

struct ModelSpec {
    make: &'static str,
    model: &'static str,
    /// World manufacturer identifier (VIN positions 1–3).
    wmi: &'static str,
    powertrains: &'static [Powertrain],
    /// Cylinders of the combustion engine (0 for battery-electric only models).
    cylinders: u8,
    /// A van whose telematics box reports J1939 codes.
    van: bool,
}

const fn m(
    make: &'static str,
    model: &'static str,
    wmi: &'static str,
    powertrains: &'static [Powertrain],
    cylinders: u8,
) -> ModelSpec {
    ModelSpec {
        make,
        model,
        wmi,
        powertrains,
        cylinders,
        van: false,
    }
}

use Powertrain::{Bev, Hev, Ice, Phev};

const MODELS: &[ModelSpec] = &[
    m("Volkswagen", "Golf", "WVW", &[Ice, Phev], 4),
    m("Volkswagen", "ID.3", "WVW", &[Bev], 0),
    m("Volkswagen", "ID.4", "WVG", &[Bev], 0),
    m("Tesla", "Model 3", "5YJ", &[Bev], 0),
    m("Tesla", "Model Y", "7SA", &[Bev], 0),
    m("Toyota", "Corolla", "SB1", &[Hev], 4),
    m("Toyota", "RAV4", "JTM", &[Hev, Phev], 4),
    m("BMW", "3 Series", "WBA", &[Ice, Phev], 4),
    m("BMW", "5 Series", "WBA", &[Ice], 6),
    m("BMW", "i4", "WBY", &[Bev], 0),
    m("Renault", "Clio", "VF1", &[Ice, Hev], 4),
    m("Renault", "Megane E-Tech", "VF1", &[Bev], 0),
    m("Hyundai", "Ioniq 5", "KMH", &[Bev], 0),
    m("Hyundai", "Tucson", "TMA", &[Ice, Hev, Phev], 4),
    m("Kia", "Niro", "KNA", &[Hev, Phev, Bev], 4),
    m("Skoda", "Octavia", "TMB", &[Ice], 4),
    m("Skoda", "Enyaq", "TMB", &[Bev], 0),
    m("Mercedes-Benz", "C-Class", "W1K", &[Ice, Phev], 4),
    m("Mercedes-Benz", "E-Class", "W1K", &[Ice], 6),
    m("Audi", "A6", "WAU", &[Ice], 6),
    m("Ford", "Focus", "WF0", &[Ice], 4),
    ModelSpec {
        van: true,
        ..m("Ford", "Transit Custom", "WF0", &[Ice], 4)
    },
    ModelSpec {
        van: true,
        ..m("Mercedes-Benz", "Sprinter", "W1V", &[Ice], 4)
    },
    m("Opel", "Corsa", "W0V", &[Ice, Bev], 4),
    m("Fiat", "500", "ZFA", &[Hev, Bev], 4),
    m("Volvo", "XC60", "YV1", &[Ice, Phev], 4),
];

/// Powertrain shares: 30% battery-electric, the rest combustion or hybrid.
const POWERTRAIN_SHARES: [(Powertrain, f64); 4] =
    [(Bev, 0.30), (Ice, 0.44), (Hev, 0.16), (Phev, 0.10)];

/// One simulated vehicle's fixed attributes.
#[derive(Debug, Clone)]
pub struct VehicleSpec {
    pub index: usize,
    pub vin: String,
    pub make: &'static str,
    pub model: &'static str,
    pub model_year: i32,
    pub powertrain: Powertrain,
    pub cylinders: u8,
    /// Reports J1939 codes (vans with a fleet telematics box).
    pub j1939: bool,
    pub usage: Usage,
    pub climate: Climate,
    /// 1.0 average; above 1 brakes and accelerates harder.
    pub style: f64,
    pub annual_km: f64,
    pub urban_share: f64,
    pub home_workshop: String,
    pub owner_ref: String,
    pub offers_consent: bool,
    /// Routine service interval.
    pub service_km: f64,
    pub service_days: i64,
    /// Mean days an owner lets a due service slip.
    pub service_delay_days: f64,
    /// Probability that the owner acts on a warning light soon.
    pub reacts_to_warnings: f64,
    /// Share of charging done on DC fast chargers (traction battery).
    pub fast_charge_share: f64,
    /// Odometer at the start of the simulation.
    pub start_odometer_km: f64,
    /// Vehicle age in years at the start.
    pub age_years: f64,
    /// Constant offset of the vehicle's clock, milliseconds.
    pub clock_skew_ms: i64,
    /// Daily probability of entering a coverage gap.
    pub gap_rate: f64,
}

impl VehicleSpec {
    pub fn profile(&self) -> Profile {
        Profile {
            make: Some(self.make.to_owned()),
            model: Some(self.model.to_owned()),
            model_year: i16::try_from(self.model_year).ok(),
            powertrain: Some(self.powertrain),
            home_workshop: Some(self.home_workshop.clone()),
            owner_ref: Some(self.owner_ref.clone()),
            offers_consent: self.offers_consent,
        }
    }
}

/// Workshop code `WS-01` .. `WS-NN`.
pub fn workshop_code(i: usize) -> String {
    format!("WS-{:02}", i + 1)
}

/// Generates vehicle `index` of the fleet; independent of fleet size.
pub fn vehicle(seed: u64, index: usize, workshops: usize, start: DateTime<Utc>) -> VehicleSpec {
    let mut r = stream(seed, index as u64, Purpose::Fleet);
    let shares: Vec<f64> = POWERTRAIN_SHARES.iter().map(|(_, s)| *s).collect();
    let powertrain = POWERTRAIN_SHARES[r.weighted(&shares)].0;
    let usage = Usage::ALL[r.weighted(&[0.45, 0.2, 0.25, 0.1])];
    let candidates: Vec<&ModelSpec> = MODELS
        .iter()
        .filter(|m| m.powertrains.contains(&powertrain))
        .filter(|m| !m.van || usage == Usage::TaxiDelivery)
        .collect();
    let spec = candidates[r.int(0, candidates.len() as i64 - 1) as usize];
    // Electric cars are younger on average.
    let max_age = if powertrain == Bev { 6.0 } else { 12.0 };
    let age_years = libm::pow(r.unit(), 1.3) * max_age;
    let model_year = start.year() - age_years.floor() as i32;
    let median_km = usage.annual_km();
    let annual_km = r
        .lognormal(median_km, 0.3)
        .clamp(0.4 * median_km, 2.0 * median_km);
    let climate = Climate::ALL[r.weighted(&[0.25, 0.5, 0.25])];
    let style = r.lognormal(1.0, 0.18).clamp(0.6, 1.8);
    let neglectful = r.chance(0.12);
    let (service_km, service_days) = match powertrain {
        Bev => (30_000.0, 730),
        _ if r.chance(0.4) => (30_000.0, 730), // long-life service
        _ => (15_000.0, 365),
    };
    let skew_kind = r.unit();
    let clock_skew_ms = if skew_kind < 0.90 {
        r.int(-2_000, 2_000)
    } else if skew_kind < 0.98 {
        r.int(-600_000, 600_000)
    } else {
        // A head unit set to local time but reporting it as UTC.
        3_600_000 * r.int(-3, 3)
    };
    VehicleSpec {
        index,
        vin: vin(&mut r, spec.wmi, model_year, index),
        make: spec.make,
        model: spec.model,
        model_year,
        powertrain,
        cylinders: if powertrain == Bev { 0 } else { spec.cylinders },
        j1939: spec.van,
        usage,
        climate,
        style,
        annual_km,
        urban_share: (usage.urban_share() + r.normal(0.0, 0.08)).clamp(0.05, 0.95),
        home_workshop: workshop_code(r.int(0, workshops.max(1) as i64 - 1) as usize),
        owner_ref: format!("OWN-{:07}", r.int(0, 9_999_999)),
        offers_consent: r.chance(0.85),
        service_km,
        service_days,
        service_delay_days: if neglectful {
            120.0
        } else {
            r.uniform(3.0, 40.0)
        },
        reacts_to_warnings: if neglectful {
            0.15
        } else {
            r.uniform(0.4, 0.9)
        },
        fast_charge_share: match (powertrain, usage) {
            (Bev, Usage::TaxiDelivery | Usage::LongDistance) => r.uniform(0.3, 0.8),
            (Bev, _) => r.uniform(0.0, 0.35),
            _ => 0.0,
        },
        // High-mileage cars leave the fleet before half a million km.
        start_odometer_km: (age_years * annual_km * r.lognormal(1.0, 0.15)).clamp(5.0, 450_000.0),
        age_years,
        clock_skew_ms,
        gap_rate: if r.chance(0.15) { 0.03 } else { 0.004 },
    }
}

/// The whole fleet.
pub fn generate(
    seed: u64,
    vehicles: usize,
    workshops: usize,
    start: DateTime<Utc>,
) -> Vec<VehicleSpec> {
    (0..vehicles)
        .map(|i| vehicle(seed, i, workshops, start))
        .collect()
}

const VIN_CHARS: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXYZ0123456789";

/// ISO 3779 / North American model-year letter (A = 2010; I, O, Q, U, Z and 0 are skipped).
fn year_code(year: i32) -> char {
    const CODES: &[u8] = b"ABCDEFGHJKLMNPRSTVWXY123456789";
    CODES[(year - 2010).rem_euclid(30) as usize] as char
}

fn transliterate(c: u8) -> u32 {
    match c {
        b'0'..=b'9' => u32::from(c - b'0'),
        b'A'..=b'H' => u32::from(c - b'A') + 1,
        b'J'..=b'R' => u32::from(c - b'J') + 1,
        b'S'..=b'Z' => u32::from(c - b'S') + 2,
        _ => 0,
    }
}

/// Check digit (position 9) as North American VINs carry it.
fn check_digit(vin: &[u8; 17]) -> u8 {
    const WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
    let sum: u32 = vin
        .iter()
        .zip(WEIGHTS)
        .map(|(c, w)| transliterate(*c) * w)
        .sum();
    match sum % 11 {
        10 => b'X',
        d => b'0' + d as u8,
    }
}

/// WMI, five random descriptor characters, check digit, model year, plant, serial. The plant
/// and serial encode the fleet index, so VINs are unique across a fleet.
fn vin(r: &mut Sim, wmi: &str, model_year: i32, index: usize) -> String {
    let mut v = [b'0'; 17];
    v[..3].copy_from_slice(&wmi.as_bytes()[..3]);
    for c in &mut v[3..8] {
        *c = VIN_CHARS[r.int(0, VIN_CHARS.len() as i64 - 1) as usize];
    }
    v[9] = year_code(model_year) as u8;
    v[10] = VIN_CHARS[(index / 1_000_000) % VIN_CHARS.len()];
    let serial = format!("{:06}", index % 1_000_000);
    v[11..].copy_from_slice(serial.as_bytes());
    v[8] = check_digit(&v);
    String::from_utf8_lossy(&v).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Vin;
    use chrono::TimeZone;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn vins_are_valid_unique_and_carry_a_correct_check_digit() {
        let fleet = generate(5, 3000, 5, start());
        let mut seen = std::collections::HashSet::new();
        for v in &fleet {
            assert!(Vin::parse(&v.vin).is_ok(), "{}", v.vin);
            assert!(seen.insert(v.vin.clone()), "duplicate {}", v.vin);
            let bytes: [u8; 17] = v.vin.as_bytes().try_into().unwrap();
            assert_eq!(check_digit(&bytes), bytes[8], "{}", v.vin);
        }
        // The textbook example VIN 1M8GDM9AXKP042788 has check digit X.
        let example: [u8; 17] = *b"1M8GDM9AXKP042788";
        assert_eq!(check_digit(&example), b'X');
    }

    #[test]
    fn fleet_mix_matches_the_stated_shares() {
        let fleet = generate(11, 10_000, 5, start());
        let share = |p: Powertrain| {
            fleet.iter().filter(|v| v.powertrain == p).count() as f64 / fleet.len() as f64
        };
        // 10,000 draws: a share's standard error is below 0.5 percentage points.
        assert!((share(Bev) - 0.30).abs() < 0.02, "bev {}", share(Bev));
        assert!((share(Ice) - 0.44).abs() < 0.02);
        for v in &fleet {
            assert_eq!(
                v.cylinders == 0,
                v.powertrain == Bev,
                "{} {}",
                v.make,
                v.model
            );
            assert!(v.home_workshop.starts_with("WS-0") && v.home_workshop.as_str() <= "WS-05");
        }
        for u in Usage::ALL {
            assert!(fleet.iter().any(|v| v.usage == u));
        }
        for c in Climate::ALL {
            assert!(fleet.iter().any(|v| v.climate == c));
        }
    }

    #[test]
    fn a_vehicle_does_not_depend_on_fleet_size() {
        let small = generate(3, 10, 5, start());
        let large = generate(3, 100, 5, start());
        assert_eq!(small[7].vin, large[7].vin);
        assert_eq!(small[7].annual_km, large[7].annual_km);
    }
}
