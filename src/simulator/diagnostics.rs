//! On-board diagnostics: turns the fault conditions parts detect each drive cycle into the
//! code lifecycle a car reports. A code is pending on first detection and confirmed on the
//! second drive cycle (some, like wear sensors, TPMS and J1939 codes, at once); a pending code
//! not seen for 3 cycles, or a confirmed one for 40, clears itself; a workshop clears codes.

use super::parts::Code;
use crate::component::Component;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Confirmed,
    Cleared,
}

impl Status {
    /// The contract's status word (J1939 has no pending state: its codes are "active").
    pub fn word(self, code: &Code) -> &'static str {
        match (self, code) {
            (Status::Cleared, _) => "cleared",
            (_, Code::J1939 { .. }) => "active",
            (Status::Pending, _) => "pending",
            (Status::Confirmed, _) => "confirmed",
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    component: Component,
    confirmed: bool,
    seen_cycles: u32,
    missed_cycles: u32,
}

/// A change to report: the code, its new status, and whom it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub component: Component,
    pub code: Code,
    pub status: Status,
}

#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    codes: BTreeMap<Code, Entry>,
}

const PENDING_HEALS: u32 = 3;
const CONFIRMED_AGES_OUT: u32 = 40;

fn confirms_at_once(code: &Code) -> bool {
    match code {
        Code::J1939 { .. } => true,
        Code::Obd(c) => c.starts_with("C07") || *c == "C1A20" || *c == "P0217" || *c == "P0A7F",
    }
}

impl Diagnostics {
    /// One drive cycle with these conditions detected; returns the status changes.
    pub fn drive_cycle(&mut self, detected: &[(Component, Code)]) -> Vec<Change> {
        let mut changes = Vec::new();
        for (component, code) in detected {
            match self.codes.get_mut(code) {
                Some(e) => {
                    e.missed_cycles = 0;
                    e.seen_cycles += 1;
                    if !e.confirmed && e.seen_cycles >= 2 {
                        e.confirmed = true;
                        changes.push(Change {
                            component: *component,
                            code: code.clone(),
                            status: Status::Confirmed,
                        });
                    }
                }
                None => {
                    let confirmed = confirms_at_once(code);
                    self.codes.insert(
                        code.clone(),
                        Entry {
                            component: *component,
                            confirmed,
                            seen_cycles: 1,
                            missed_cycles: 0,
                        },
                    );
                    changes.push(Change {
                        component: *component,
                        code: code.clone(),
                        status: if confirmed {
                            Status::Confirmed
                        } else {
                            Status::Pending
                        },
                    });
                }
            }
        }
        let mut healed = Vec::new();
        for (code, e) in self.codes.iter_mut() {
            if detected.iter().any(|(_, c)| c == code) {
                continue;
            }
            e.missed_cycles += 1;
            let limit = if e.confirmed {
                CONFIRMED_AGES_OUT
            } else {
                PENDING_HEALS
            };
            if e.missed_cycles >= limit {
                healed.push(code.clone());
            }
        }
        for code in healed {
            if let Some(e) = self.codes.remove(&code) {
                changes.push(Change {
                    component: e.component,
                    code,
                    status: Status::Cleared,
                });
            }
        }
        changes
    }

    /// A workshop's scan tool clears every stored code.
    pub fn clear_all(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.codes)
            .into_iter()
            .map(|(code, e)| Change {
                component: e.component,
                code,
                status: Status::Cleared,
            })
            .collect()
    }

    /// Confirmed codes, for the periodic full report.
    pub fn confirmed(&self) -> Vec<Change> {
        self.codes
            .iter()
            .filter(|(_, e)| e.confirmed)
            .map(|(code, e)| Change {
                component: e.component,
                code: code.clone(),
                status: Status::Confirmed,
            })
            .collect()
    }

    /// The malfunction indicator: lit while an engine, emissions or battery code is confirmed.
    pub fn mil(&self) -> bool {
        self.codes.values().any(|e| {
            e.confirmed
                && matches!(
                    e.component,
                    Component::Ignition
                        | Component::Emissions
                        | Component::Cooling
                        | Component::Oil
                        | Component::TractionBattery
                )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_then_confirmed_then_aged_out() {
        let mut d = Diagnostics::default();
        let misfire = [(Component::Ignition, Code::Obd("P0301"))];
        assert_eq!(d.drive_cycle(&misfire)[0].status, Status::Pending);
        assert_eq!(d.drive_cycle(&misfire)[0].status, Status::Confirmed);
        assert!(d.drive_cycle(&misfire).is_empty());
        assert!(d.mil());
        for _ in 0..CONFIRMED_AGES_OUT - 1 {
            assert!(d.drive_cycle(&[]).is_empty());
        }
        assert_eq!(d.drive_cycle(&[])[0].status, Status::Cleared);
        assert!(!d.mil());
    }

    #[test]
    fn a_pending_code_heals_and_sensors_confirm_at_once() {
        let mut d = Diagnostics::default();
        d.drive_cycle(&[(Component::Emissions, Code::Obd("P0420"))]);
        d.drive_cycle(&[]);
        d.drive_cycle(&[]);
        assert_eq!(d.drive_cycle(&[])[0].status, Status::Cleared);
        let tpms = d.drive_cycle(&[(Component::Tyres, Code::Obd("C0750"))]);
        assert_eq!(tpms[0].status, Status::Confirmed);
        assert_eq!(d.clear_all().len(), 1);
        assert!(d.confirmed().is_empty());
    }
}
