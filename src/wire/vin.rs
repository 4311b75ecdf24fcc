//! The vehicle identification number (ISO 3779): 17 characters, digits and capital letters
//! except I, O and Q. The check digit is not enforced: it is mandatory only in North America.

use super::{Reject, RejectReason};
use std::fmt;

#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, utoipa::ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = String, pattern = "^[A-HJ-NPR-Z0-9]{17}$", example = "VF1RFB00X56789012")]
pub struct Vin(String);

impl Vin {
    pub fn parse(s: &str) -> Result<Vin, Reject> {
        if s.len() != 17 {
            return Err(Reject::new(
                RejectReason::InvalidVin,
                format!(
                    "VIN {s:?} has {} characters, expected 17",
                    s.chars().count()
                ),
            ));
        }
        if let Some(c) = s.chars().find(|c| {
            !(c.is_ascii_digit() || c.is_ascii_uppercase()) || matches!(c, 'I' | 'O' | 'Q')
        }) {
            return Err(Reject::new(
                RejectReason::InvalidVin,
                format!("VIN {s:?} contains {c:?}: only digits and capital letters except I, O, Q"),
            ));
        }
        Ok(Vin(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Vin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_and_refuses_the_rest() {
        assert!(Vin::parse("1HGCM82633A004352").is_ok());
        for bad in [
            "1HGCM82633A00435",
            "1HGCM82633A0043522",
            "1HGCM82633A00435I",
            "1HGCM82633A00435O",
            "1HGCM82633A00435Q",
            "1hgcm82633a004352",
            "1HGCM82633A00435-",
            "1HGCM82633A00435Ä",
        ] {
            assert_eq!(
                Vin::parse(bad).unwrap_err().reason,
                RejectReason::InvalidVin,
                "{bad}"
            );
        }
    }
}
