//! The booking queue's state machine. Every state change of an offer goes through `next`,
//! which refuses illegal transitions (an expired offer cannot be accepted, a booked one
//! cannot be declined without cancelling its booking first).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OfferState {
    /// Created by the policy; the owner has not been told yet.
    Proposed,
    /// The notification was delivered.
    Notified,
    /// A window was accepted: bay and technician are held, the work order exists.
    Booked,
    Declined,
    Expired,
    /// The booked job was done.
    Completed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferEvent {
    Notify,
    Accept,
    Decline,
    Expire,
    /// The booking was cancelled; the offer is open again.
    CancelBooking,
    Complete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an offer that is {from} cannot be {}", event.past())]
pub struct IllegalTransition {
    pub from: OfferState,
    pub event: OfferEvent,
}

impl OfferEvent {
    fn past(self) -> &'static str {
        match self {
            OfferEvent::Notify => "notified",
            OfferEvent::Accept => "accepted",
            OfferEvent::Decline => "declined",
            OfferEvent::Expire => "expired",
            OfferEvent::CancelBooking => "cancelled",
            OfferEvent::Complete => "completed",
        }
    }
}

impl OfferState {
    pub const ALL: [OfferState; 6] = [
        OfferState::Proposed,
        OfferState::Notified,
        OfferState::Booked,
        OfferState::Declined,
        OfferState::Expired,
        OfferState::Completed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OfferState::Proposed => "proposed",
            OfferState::Notified => "notified",
            OfferState::Booked => "booked",
            OfferState::Declined => "declined",
            OfferState::Expired => "expired",
            OfferState::Completed => "completed",
        }
    }

    /// Open offers block a new one for the same vehicle and component.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            OfferState::Proposed | OfferState::Notified | OfferState::Booked
        )
    }

    pub fn next(self, event: OfferEvent) -> Result<OfferState, IllegalTransition> {
        use OfferEvent as E;
        use OfferState as S;
        match (self, event) {
            (S::Proposed, E::Notify) => Ok(S::Notified),
            (S::Proposed | S::Notified, E::Accept) => Ok(S::Booked),
            (S::Proposed | S::Notified, E::Decline) => Ok(S::Declined),
            (S::Proposed | S::Notified, E::Expire) => Ok(S::Expired),
            (S::Booked, E::CancelBooking) => Ok(S::Notified),
            (S::Booked, E::Complete) => Ok(S::Completed),
            (from, event) => Err(IllegalTransition { from, event }),
        }
    }
}

impl fmt::Display for OfferState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown offer state {0:?} (expected proposed, notified, booked, declined, expired or completed)")]
pub struct UnknownState(pub String);

impl FromStr for OfferState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<OfferState, UnknownState> {
        OfferState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OfferEvent as E;
    use OfferState as S;

    #[test]
    fn legal_paths() {
        assert_eq!(S::Proposed.next(E::Notify), Ok(S::Notified));
        assert_eq!(S::Notified.next(E::Accept), Ok(S::Booked));
        assert_eq!(S::Booked.next(E::CancelBooking), Ok(S::Notified));
        assert_eq!(S::Booked.next(E::Complete), Ok(S::Completed));
        assert_eq!(S::Notified.next(E::Decline), Ok(S::Declined));
        assert_eq!(S::Proposed.next(E::Expire), Ok(S::Expired));
    }

    #[test]
    fn every_other_transition_is_refused() {
        let events = [
            E::Notify,
            E::Accept,
            E::Decline,
            E::Expire,
            E::CancelBooking,
            E::Complete,
        ];
        let mut legal = 0;
        for s in S::ALL {
            for e in events {
                match s.next(e) {
                    Ok(_) => legal += 1,
                    Err(err) => {
                        assert_eq!(err, IllegalTransition { from: s, event: e });
                        assert!(err.to_string().contains(s.as_str()));
                    }
                }
            }
        }
        assert_eq!(legal, 9, "exactly the nine transitions listed in next()");
        // Terminal states go nowhere.
        for s in [S::Declined, S::Expired, S::Completed] {
            assert!(events.iter().all(|e| s.next(*e).is_err()), "{s}");
            assert!(!s.is_open());
        }
        for s in S::ALL {
            assert_eq!(s.as_str().parse::<S>().ok(), Some(s));
        }
    }
}
