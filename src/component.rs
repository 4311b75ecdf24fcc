//! The component groups that risk is scored for, offers are made for and service records name.
//! One list, shared by the simulator, the model, offers and capacity, so a label written by a
//! workshop and a score computed by the model always mean the same part of the car.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// 12 V starter/auxiliary battery.
    #[serde(rename = "battery_12v")]
    Battery12v,
    /// High-voltage traction battery (battery-electric and hybrid vehicles).
    TractionBattery,
    Brakes,
    Tyres,
    Cooling,
    /// Ignition coils and plugs (misfire).
    Ignition,
    /// Catalyst and exhaust after-treatment.
    Emissions,
    /// Engine oil and oil service.
    Oil,
}

impl Component {
    pub const ALL: [Component; 8] = [
        Component::Battery12v,
        Component::TractionBattery,
        Component::Brakes,
        Component::Tyres,
        Component::Cooling,
        Component::Ignition,
        Component::Emissions,
        Component::Oil,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Component::Battery12v => "battery_12v",
            Component::TractionBattery => "traction_battery",
            Component::Brakes => "brakes",
            Component::Tyres => "tyres",
            Component::Cooling => "cooling",
            Component::Ignition => "ignition",
            Component::Emissions => "emissions",
            Component::Oil => "oil",
        }
    }

    /// Words for owners and service advisors.
    pub fn label(self) -> &'static str {
        match self {
            Component::Battery12v => "12 V battery",
            Component::TractionBattery => "traction battery",
            Component::Brakes => "brakes",
            Component::Tyres => "tyres",
            Component::Cooling => "cooling system",
            Component::Ignition => "ignition (misfire)",
            Component::Emissions => "emissions (catalyst)",
            Component::Oil => "engine oil",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown component {0:?} (expected one of battery_12v, traction_battery, brakes, tyres, cooling, ignition, emissions, oil)")]
pub struct UnknownComponent(pub String);

impl FromStr for Component {
    type Err = UnknownComponent;
    fn from_str(s: &str) -> Result<Component, UnknownComponent> {
        Component::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownComponent(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for c in Component::ALL {
            assert_eq!(c.as_str().parse::<Component>().ok(), Some(c));
            let json = serde_json::to_string(&c).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
        assert!("gearbox".parse::<Component>().is_err());
    }
}
