//! What the service knows about signals and fault codes: the COVESA VSS paths (and overlay
//! names for what VSS lacks) with their units, and which component group each signal and DTC
//! speaks about. The simulator emits these names, the model builds features from them, offers
//! quote them to owners. Signals not listed here are still stored (the wire contract says so);
//! they just inform no component.

use crate::component::Component;

/// A signal the service understands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignalSpec {
    /// VSS path (v4) or overlay name under the same tree.
    pub name: &'static str,
    pub unit: &'static str,
    /// Words for a service advisor, e.g. "front-left brake pad wear".
    pub label: &'static str,
    /// The component group it tells about; `None` for context (speed, odometer, climate).
    pub component: Option<Component>,
    /// True when the name is an overlay rather than standard VSS.
    pub overlay: bool,
}

const fn spec(
    name: &'static str,
    unit: &'static str,
    label: &'static str,
    component: Option<Component>,
    overlay: bool,
) -> SignalSpec {
    SignalSpec {
        name,
        unit,
        label,
        component,
        overlay,
    }
}

use Component::*;

pub const ODOMETER: &str = "Vehicle.TraveledDistance";
pub const SPEED: &str = "Vehicle.Speed";
pub const AMBIENT_TEMPERATURE: &str = "Vehicle.Exterior.AirTemperature";
pub const BATTERY_12V_VOLTAGE: &str = "Vehicle.LowVoltageBattery.CurrentVoltage";
pub const BATTERY_12V_CRANKING_VOLTAGE: &str = "Vehicle.LowVoltageBattery.CrankingVoltage";
pub const TRACTION_SOH: &str = "Vehicle.Powertrain.TractionBattery.StateOfHealth";
pub const TRACTION_CELL_MAX: &str = "Vehicle.Powertrain.TractionBattery.CellVoltage.Max";
pub const TRACTION_CELL_MIN: &str = "Vehicle.Powertrain.TractionBattery.CellVoltage.Min";
pub const TRACTION_TEMPERATURE: &str = "Vehicle.Powertrain.TractionBattery.Temperature.Average";
pub const TRACTION_FAST_CHARGES: &str = "Vehicle.Powertrain.TractionBattery.FastChargeCount";
pub const COOLANT_TEMPERATURE: &str =
    "Vehicle.Powertrain.CombustionEngine.EngineCoolant.Temperature";
pub const OIL_LIFE: &str = "Vehicle.Powertrain.CombustionEngine.EngineOil.LifeRemaining";
pub const DISTANCE_TO_SERVICE: &str = "Vehicle.Service.DistanceToService";
pub const CATALYST_EFFICIENCY: &str = "Vehicle.OBD.Catalyst.Bank1.Efficiency";
pub const MISFIRE_COUNT: &str = "Vehicle.OBD.MisfireCount";

/// Wheel positions as VSS names them, front to back, left to right.
pub const WHEELS: [&str; 4] = [
    "Row1.Wheel.Left",
    "Row1.Wheel.Right",
    "Row2.Wheel.Left",
    "Row2.Wheel.Right",
];
/// The same positions in an advisor's words.
pub const WHEEL_LABELS: [&str; 4] = ["front-left", "front-right", "rear-left", "rear-right"];

/// Per-wheel signal names, e.g. `wheel_signal(0, "Brake.PadWear")`.
pub fn wheel_signal(wheel: usize, leaf: &str) -> String {
    let position = WHEELS.get(wheel).copied().unwrap_or(WHEELS[0]);
    format!("Vehicle.Chassis.Axle.{position}.{leaf}")
}
pub const PAD_WEAR_LEAF: &str = "Brake.PadWear"; // %, 0 new .. 100 worn out
pub const TIRE_PRESSURE_LEAF: &str = "Tire.Pressure"; // kPa
pub const TREAD_DEPTH_LEAF: &str = "Tire.TreadDepth"; // mm (overlay)

pub const SIGNALS: &[SignalSpec] = &[
    spec(ODOMETER, "km", "odometer", None, false),
    spec(SPEED, "km/h", "speed", None, false),
    spec(
        AMBIENT_TEMPERATURE,
        "celsius",
        "outside temperature",
        None,
        false,
    ),
    spec(
        BATTERY_12V_VOLTAGE,
        "V",
        "12 V battery resting voltage",
        Some(Battery12v),
        false,
    ),
    spec(
        BATTERY_12V_CRANKING_VOLTAGE,
        "V",
        "12 V battery cranking voltage",
        Some(Battery12v),
        true,
    ),
    spec(
        TRACTION_SOH,
        "percent",
        "traction battery state of health",
        Some(TractionBattery),
        false,
    ),
    spec(
        TRACTION_CELL_MAX,
        "V",
        "highest cell voltage",
        Some(TractionBattery),
        false,
    ),
    spec(
        TRACTION_CELL_MIN,
        "V",
        "lowest cell voltage",
        Some(TractionBattery),
        false,
    ),
    spec(
        TRACTION_TEMPERATURE,
        "celsius",
        "traction battery temperature",
        Some(TractionBattery),
        false,
    ),
    spec(
        TRACTION_FAST_CHARGES,
        "count",
        "DC fast charges",
        Some(TractionBattery),
        true,
    ),
    spec(
        COOLANT_TEMPERATURE,
        "celsius",
        "coolant temperature",
        Some(Cooling),
        false,
    ),
    spec(OIL_LIFE, "percent", "oil life remaining", Some(Oil), true),
    spec(
        DISTANCE_TO_SERVICE,
        "km",
        "distance to next service",
        Some(Oil),
        false,
    ),
    spec(
        CATALYST_EFFICIENCY,
        "percent",
        "catalyst efficiency",
        Some(Emissions),
        true,
    ),
    spec(
        MISFIRE_COUNT,
        "count",
        "misfires counted",
        Some(Ignition),
        true,
    ),
    spec(
        "Vehicle.Chassis.Axle.Row1.Wheel.Left.Brake.PadWear",
        "percent",
        "front-left brake pad wear",
        Some(Brakes),
        false,
    ),
    spec(
        "Vehicle.Chassis.Axle.Row1.Wheel.Right.Brake.PadWear",
        "percent",
        "front-right brake pad wear",
        Some(Brakes),
        false,
    ),
    spec(
        "Vehicle.Chassis.Axle.Row2.Wheel.Left.Brake.PadWear",
        "percent",
        "rear-left brake pad wear",
        Some(Brakes),
        false,
    ),
    spec(
        "Vehicle.Chassis.Axle.Row2.Wheel.Right.Brake.PadWear",
        "percent",
        "rear-right brake pad wear",
        Some(Brakes),
        false,
    ),
    spec(
        "Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure",
        "kPa",
        "front-left tyre pressure",
        Some(Tyres),
        false,
    ),
    spec(
        "Vehicle.Chassis.Axle.Row1.Wheel.Right.Tire.Pressure",
        "kPa",
        "front-right tyre pressure",
        Some(Tyres),
        false,
    ),
    spec(
        "Vehicle.Chassis.Axle.Row2.Wheel.Left.Tire.Pressure",
        "kPa",
        "rear-left tyre pressure",
        Some(Tyres),
        false,
    ),
    spec(
        "Vehicle.Chassis.Axle.Row2.Wheel.Right.Tire.Pressure",
        "kPa",
        "rear-right tyre pressure",
        Some(Tyres),
        false,
    ),
    spec(
        "Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.TreadDepth",
        "mm",
        "front-left tread depth",
        Some(Tyres),
        true,
    ),
    spec(
        "Vehicle.Chassis.Axle.Row1.Wheel.Right.Tire.TreadDepth",
        "mm",
        "front-right tread depth",
        Some(Tyres),
        true,
    ),
    spec(
        "Vehicle.Chassis.Axle.Row2.Wheel.Left.Tire.TreadDepth",
        "mm",
        "rear-left tread depth",
        Some(Tyres),
        true,
    ),
    spec(
        "Vehicle.Chassis.Axle.Row2.Wheel.Right.Tire.TreadDepth",
        "mm",
        "rear-right tread depth",
        Some(Tyres),
        true,
    ),
];

pub fn signal(name: &str) -> Option<&'static SignalSpec> {
    SIGNALS.iter().find(|s| s.name == name)
}

/// Signals that inform `component`.
pub fn signals_for(component: Component) -> impl Iterator<Item = &'static SignalSpec> {
    SIGNALS
        .iter()
        .filter(move |s| s.component == Some(component))
}

/// A fault code the service attributes to a component, with its meaning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DtcSpec {
    /// SAE J2012 code, or `SPN<n>` for J1939 suspect parameter numbers (any FMI).
    pub code: &'static str,
    pub component: Component,
    pub meaning: &'static str,
}

const fn dtc(code: &'static str, component: Component, meaning: &'static str) -> DtcSpec {
    DtcSpec {
        code,
        component,
        meaning,
    }
}

pub const DTCS: &[DtcSpec] = &[
    dtc("P0562", Battery12v, "system voltage low"),
    dtc("U3003", Battery12v, "battery voltage out of range"),
    dtc("SPN168", Battery12v, "battery potential (J1939)"),
    dtc(
        "P0A7F",
        TractionBattery,
        "hybrid/EV battery pack deterioration",
    ),
    dtc("P0B24", TractionBattery, "battery cell voltage imbalance"),
    dtc("P0AFA", TractionBattery, "battery system voltage low"),
    dtc("C1A20", Brakes, "brake pad wear sensor: pads at limit"),
    dtc("C0750", Tyres, "TPMS: front-left sensor / low pressure"),
    dtc("C0755", Tyres, "TPMS: front-right sensor / low pressure"),
    dtc("C0760", Tyres, "TPMS: rear-left sensor / low pressure"),
    dtc("C0765", Tyres, "TPMS: rear-right sensor / low pressure"),
    dtc(
        "P0128",
        Cooling,
        "coolant below thermostat regulating temperature",
    ),
    dtc("P0217", Cooling, "engine over-temperature"),
    dtc("P2181", Cooling, "cooling system performance"),
    dtc("SPN110", Cooling, "engine coolant temperature (J1939)"),
    dtc("P0300", Ignition, "random/multiple cylinder misfire"),
    dtc("P0301", Ignition, "cylinder 1 misfire"),
    dtc("P0302", Ignition, "cylinder 2 misfire"),
    dtc("P0303", Ignition, "cylinder 3 misfire"),
    dtc("P0304", Ignition, "cylinder 4 misfire"),
    dtc("P0305", Ignition, "cylinder 5 misfire"),
    dtc("P0306", Ignition, "cylinder 6 misfire"),
    dtc(
        "P0420",
        Emissions,
        "catalyst efficiency below threshold (bank 1)",
    ),
    dtc("P0520", Oil, "oil pressure sensor circuit"),
    dtc("P0521", Oil, "oil pressure sensor range/performance"),
    dtc("SPN100", Oil, "engine oil pressure (J1939)"),
];

/// The component a stored DTC key speaks about (`code` column of `dtcs`/`dtc_events`:
/// J2012 codes as they are, J1939 as `SPN<spn>-FMI<fmi>`).
pub fn dtc_component(code: &str) -> Option<&'static DtcSpec> {
    DTCS.iter().find(|d| {
        code == d.code
            || (d.code.starts_with("SPN")
                && code
                    .strip_prefix(d.code)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('-')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_component_has_signals_or_codes() {
        for c in Component::ALL {
            assert!(
                signals_for(c).next().is_some() || DTCS.iter().any(|d| d.component == c),
                "{c} has neither signals nor DTCs"
            );
        }
    }

    #[test]
    fn wheel_signals_are_catalogued() {
        for w in 0..4 {
            for leaf in [PAD_WEAR_LEAF, TIRE_PRESSURE_LEAF, TREAD_DEPTH_LEAF] {
                assert!(signal(&wheel_signal(w, leaf)).is_some());
            }
        }
    }

    #[test]
    fn dtc_lookup_handles_j1939_keys() {
        assert_eq!(dtc_component("P0301").map(|d| d.component), Some(Ignition));
        assert_eq!(
            dtc_component("SPN110-FMI0").map(|d| d.component),
            Some(Cooling)
        );
        assert!(dtc_component("SPN1100-FMI0").is_none());
        assert!(dtc_component("P9999").is_none());
    }
}
