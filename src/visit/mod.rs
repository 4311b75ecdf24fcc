//! A visit to a workshop: the jobs one offer proposes and one booking holds. Owns the offer
//! state machine (`state`). Pure types and rules: storage records visits with them, and the
//! offer and booking logic decide with them, so neither reaches into the other.

pub mod state;

pub use state::{IllegalTransition, OfferEvent, OfferState, UnknownState};
