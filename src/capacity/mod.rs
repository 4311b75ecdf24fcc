//! Workshop capacity: what a workshop can do and when. Owns the workshop model (IANA time zone,
//! opening hours per weekday, holidays, bays with capabilities, technicians with skills and
//! weekly shift rosters), the job catalogue and parts, the seed-file format they are loaded
//! from (`aftercare workshops load FILE`, also the API's request bodies), the slot search
//! (`slots`), a visit's plan and its typed windows (`plan`) and the demand preview
//! (`preview`). All pure: `store::capacity` and `store::preview` load the inputs, and storage
//! depends on these types, never the other way round.

pub mod plan;
pub mod preview;
pub mod slots;

pub use plan::{Choose, PartNeed, Picked, Plan, PlanMissing, Window, WorkshopRef};

use crate::component::Component;
use chrono::{NaiveDate, NaiveTime};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid seed file: {source}")]
    Toml {
        path: String,
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> CapacityError {
    CapacityError::Invalid(msg.into())
}

pub const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Local intervals of the day per ISO weekday (index 0 = Monday).
pub type WeekPlan = [Vec<(NaiveTime, NaiveTime)>; 7];

/// `{"mon": ["08:00-12:00", "13:00-17:30"], ...}`: weekdays absent are closed / off.
pub fn parse_week(
    what: &str,
    raw: &BTreeMap<String, Vec<String>>,
) -> Result<WeekPlan, CapacityError> {
    let mut week: WeekPlan = Default::default();
    for (day, ranges) in raw {
        let i = WEEKDAYS
            .iter()
            .position(|d| d == day)
            .ok_or_else(|| invalid(format!("{what}: {day:?} is not a weekday (mon..sun)")))?;
        for r in ranges {
            let (a, b) = r
                .split_once('-')
                .ok_or_else(|| invalid(format!("{what}.{day}: {r:?} is not HH:MM-HH:MM")))?;
            let parse = |s: &str| {
                NaiveTime::parse_from_str(s.trim(), "%H:%M")
                    .map_err(|_| invalid(format!("{what}.{day}: {s:?} is not a time HH:MM")))
            };
            let (a, b) = (parse(a)?, parse(b)?);
            if b <= a {
                return Err(invalid(format!(
                    "{what}.{day}: {r:?} ends before it starts"
                )));
            }
            week[i].push((a, b));
        }
        week[i].sort();
        if week[i].windows(2).any(|w| w[1].0 < w[0].1) {
            return Err(invalid(format!("{what}.{day}: ranges overlap")));
        }
    }
    Ok(week)
}

pub fn format_week(week: &WeekPlan) -> BTreeMap<String, Vec<String>> {
    week.iter()
        .enumerate()
        .filter(|(_, r)| !r.is_empty())
        .map(|(i, r)| {
            let ranges = r
                .iter()
                .map(|(a, b)| format!("{}-{}", a.format("%H:%M"), b.format("%H:%M")))
                .collect();
            (WEEKDAYS[i].to_owned(), ranges)
        })
        .collect()
}

pub fn parse_time_zone(s: &str) -> Result<Tz, CapacityError> {
    s.parse::<Tz>()
        .map_err(|_| invalid(format!("time_zone {s:?} is not an IANA time zone name")))
}

/// The seed file: parts, the job catalogue and workshops.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    #[serde(default, rename = "part")]
    pub parts: Vec<PartSpec>,
    #[serde(default, rename = "job")]
    pub jobs: Vec<JobSpec>,
    #[serde(default, rename = "workshop")]
    pub workshops: Vec<WorkshopSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Part)]
pub struct PartSpec {
    pub sku: String,
    pub name: String,
    #[schema(minimum = 0)]
    pub price_cents: i64,
    /// Supplier lead time where a workshop keeps no stock of it.
    #[serde(default = "default_lead_time")]
    #[schema(minimum = 0, maximum = 365, default = 7)]
    pub lead_time_days: i32,
}

fn default_lead_time() -> i32 {
    7
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobPart {
    pub sku: String,
    #[schema(minimum = 1)]
    pub quantity: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Job)]
pub struct JobSpec {
    #[schema(pattern = "^[a-z0-9_]{1,64}$")]
    pub code: String,
    pub component: Component,
    pub name: String,
    #[schema(minimum = 5, maximum = 1440)]
    pub labour_minutes: i32,
    /// The technician skill it needs, e.g. brakes.
    pub skill: String,
    /// The bay capability it needs, e.g. lift.
    #[serde(default)]
    pub bay_capability: Option<String>,
    #[schema(minimum = 0)]
    pub labour_price_cents: i64,
    /// The job offers propose for its component (one per component).
    #[serde(default)]
    pub default: bool,
    #[serde(default)]
    pub parts: Vec<JobPart>,
    /// Set-up steps of its labour that other jobs need too (e.g. lift, wheels_off): a visit
    /// with several jobs does each step once, so its labour is less than their sum.
    #[serde(default)]
    pub setup: Vec<SetupStep>,
}

/// A set-up step and the minutes of a job's labour it takes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupStep {
    /// Lower-case words with '_', e.g. wheels_off.
    pub step: String,
    #[schema(minimum = 1)]
    pub minutes: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Holiday)]
pub struct HolidaySpec {
    pub day: NaiveDate,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Bay)]
pub struct BaySpec {
    pub code: String,
    /// E.g. lift, high_voltage.
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub active: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Technician)]
pub struct TechnicianSpec {
    pub code: String,
    pub name: String,
    #[serde(default)]
    /// E.g. brakes, tyres, diagnostics, engine, hv_battery.
    pub skills: Vec<String>,
    /// Weekly roster, as opening hours are written: weekday (mon..sun) to local time ranges
    /// HH:MM-HH:MM; absent days are off.
    #[serde(default)]
    pub shifts: BTreeMap<String, Vec<String>>,
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub active: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WorkshopStock)]
pub struct StockSpec {
    pub sku: String,
    pub on_hand: i32,
    pub lead_time_days: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Workshop)]
/// A workshop with its calendar, bays, technicians and stock; a PUT replaces all of them
/// (bays and technicians no longer listed are deactivated).
pub struct WorkshopSpec {
    /// E.g. WS-01.
    pub code: String,
    pub name: String,
    /// IANA name, e.g. Europe/Paris.
    pub time_zone: String,
    #[serde(default)]
    #[schema(minimum = -90, maximum = 90)]
    pub latitude: Option<f64>,
    #[serde(default)]
    #[schema(minimum = -180, maximum = 180)]
    pub longitude: Option<f64>,
    #[serde(default = "default_slot_minutes")]
    #[schema(minimum = 5, maximum = 240, default = 30)]
    pub slot_minutes: i32,
    /// Opening hours: weekday (mon..sun) to local time ranges HH:MM-HH:MM; absent days are
    /// closed.
    #[serde(default)]
    pub hours: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub holidays: Vec<HolidaySpec>,
    #[serde(default, rename = "bay")]
    pub bays: Vec<BaySpec>,
    #[serde(default, rename = "technician")]
    pub technicians: Vec<TechnicianSpec>,
    #[serde(default)]
    pub stock: Vec<StockSpec>,
}

fn default_slot_minutes() -> i32 {
    30
}

fn check_code(what: &str, code: &str) -> Result<(), CapacityError> {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} {code:?}: 1 to 64 letters, digits, '_', '-' or '.'"
        )))
    }
}

fn check_words(what: &str, words: &[String]) -> Result<(), CapacityError> {
    for w in words {
        if w.is_empty()
            || w.len() > 40
            || !w
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        {
            return Err(invalid(format!("{what} {w:?}: lower-case words with '_'")));
        }
    }
    Ok(())
}

pub fn is_workshop_code(code: &str) -> bool {
    code.strip_prefix("WS-")
        .is_some_and(|n| n.len() >= 2 && n.chars().all(|c| c.is_ascii_digit()))
}

impl PartSpec {
    pub fn validate(&self) -> Result<(), CapacityError> {
        check_code("part sku", &self.sku)?;
        if self.price_cents < 0 || !(0..=365).contains(&self.lead_time_days) {
            return Err(invalid(format!(
                "part {}: price must be >= 0 and lead_time_days 0..365",
                self.sku
            )));
        }
        Ok(())
    }
}

impl JobSpec {
    pub fn validate(&self) -> Result<(), CapacityError> {
        let ok_code = !self.code.is_empty()
            && self.code.len() <= 64
            && self
                .code
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok_code {
            return Err(invalid(format!(
                "job code {:?}: 1 to 64 lower-case letters, digits or '_'",
                self.code
            )));
        }
        if !(5..=1440).contains(&self.labour_minutes) {
            return Err(invalid(format!(
                "job {}: labour_minutes must be 5..1440",
                self.code
            )));
        }
        if self.labour_price_cents < 0 {
            return Err(invalid(format!("job {}: price must be >= 0", self.code)));
        }
        check_words("skill", std::slice::from_ref(&self.skill))?;
        if let Some(c) = &self.bay_capability {
            check_words("bay capability", std::slice::from_ref(c))?;
        }
        for p in &self.parts {
            if p.quantity <= 0 {
                return Err(invalid(format!(
                    "job {}: part quantities must be positive",
                    self.code
                )));
            }
        }
        let steps: Vec<String> = self.setup.iter().map(|s| s.step.clone()).collect();
        check_words("set-up step", &steps)?;
        let total: i64 = self.setup.iter().map(|s| i64::from(s.minutes)).sum();
        let unique: std::collections::BTreeSet<&String> = steps.iter().collect();
        if self.setup.iter().any(|s| s.minutes <= 0)
            || total > i64::from(self.labour_minutes)
            || unique.len() < steps.len()
        {
            return Err(invalid(format!(
                "job {}: set-up steps must be named once, take positive minutes and \
                 {} minutes at most together (the job's labour)",
                self.code, self.labour_minutes
            )));
        }
        Ok(())
    }
}

impl WorkshopSpec {
    pub fn validate(&self) -> Result<(), CapacityError> {
        if !is_workshop_code(&self.code) {
            return Err(invalid(format!(
                "workshop code {:?}: expected WS- and two or more digits",
                self.code
            )));
        }
        parse_time_zone(&self.time_zone)?;
        if self.latitude.is_some_and(|l| !(-90.0..=90.0).contains(&l))
            || self
                .longitude
                .is_some_and(|l| !(-180.0..=180.0).contains(&l))
        {
            return Err(invalid(format!(
                "workshop {}: latitude/longitude out of range",
                self.code
            )));
        }
        if !(5..=240).contains(&self.slot_minutes) {
            return Err(invalid(format!(
                "workshop {}: slot_minutes must be 5..240",
                self.code
            )));
        }
        parse_week(&format!("workshop {} hours", self.code), &self.hours)?;
        for b in &self.bays {
            b.validate()?;
        }
        for t in &self.technicians {
            t.validate()?;
        }
        for s in &self.stock {
            if s.on_hand < 0 || !(0..=365).contains(&s.lead_time_days) {
                return Err(invalid(format!(
                    "workshop {} stock {}: on_hand >= 0, lead_time_days 0..365",
                    self.code, s.sku
                )));
            }
        }
        Ok(())
    }
}

impl BaySpec {
    pub fn validate(&self) -> Result<(), CapacityError> {
        check_code("bay", &self.code)?;
        check_words("bay capability", &self.capabilities)
    }
}

impl TechnicianSpec {
    pub fn validate(&self) -> Result<(), CapacityError> {
        check_code("technician", &self.code)?;
        check_words("skill", &self.skills)?;
        parse_week(&format!("technician {} shifts", self.code), &self.shifts)?;
        Ok(())
    }
}

impl Seed {
    pub fn from_file(path: &std::path::Path) -> Result<Seed, CapacityError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CapacityError::Read {
            path: display.clone(),
            source,
        })?;
        let seed: Seed = toml::from_str(&text).map_err(|source| CapacityError::Toml {
            path: display,
            source,
        })?;
        seed.validate()?;
        Ok(seed)
    }

    /// Checks each item and that jobs name known parts.
    pub fn validate(&self) -> Result<(), CapacityError> {
        for p in &self.parts {
            p.validate()?;
        }
        for j in &self.jobs {
            j.validate()?;
            for p in &j.parts {
                if !self.parts.iter().any(|k| k.sku == p.sku) {
                    return Err(invalid(format!(
                        "job {} names unknown part {}",
                        j.code, p.sku
                    )));
                }
            }
        }
        for c in Component::ALL {
            if self
                .jobs
                .iter()
                .filter(|j| j.component == c && j.default)
                .count()
                > 1
            {
                return Err(invalid(format!("more than one default job for {c}")));
            }
        }
        for w in &self.workshops {
            w.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_parse_and_refuse_nonsense() {
        let mut raw = BTreeMap::new();
        raw.insert(
            "mon".to_owned(),
            vec!["13:00-17:30".to_owned(), "08:00-12:00".to_owned()],
        );
        let w = parse_week("h", &raw).unwrap();
        assert_eq!(w[0].len(), 2);
        assert!(w[0][0].0 < w[0][1].0, "sorted");
        assert_eq!(format_week(&w)["mon"], vec!["08:00-12:00", "13:00-17:30"]);
        for bad in [
            ("mon", "12:00-08:00"),
            ("mon", "8-9"),
            ("xyz", "08:00-09:00"),
        ] {
            let mut raw = BTreeMap::new();
            raw.insert(bad.0.to_owned(), vec![bad.1.to_owned()]);
            assert!(parse_week("h", &raw).is_err(), "{bad:?}");
        }
        raw.insert(
            "tue".to_owned(),
            vec!["08:00-12:00".to_owned(), "11:00-13:00".to_owned()],
        );
        assert!(parse_week("h", &raw).is_err(), "overlap");
    }

    #[test]
    fn the_demo_seed_covers_every_component() {
        let seed = Seed::from_file(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/workshops.toml"
        )))
        .unwrap();
        assert_eq!(seed.workshops.len(), 5);
        for c in Component::ALL {
            assert_eq!(
                seed.jobs
                    .iter()
                    .filter(|j| j.component == c && j.default)
                    .count(),
                1,
                "{c} has one default job"
            );
        }
        for (i, w) in seed.workshops.iter().enumerate() {
            assert_eq!(w.code, format!("WS-{:02}", i + 1));
        }
    }
}
