//! The failure-risk model: features from stored history as of any instant, labels from service
//! records, training with linfa, evaluation against a rule baseline, the versioned artifact and
//! its model card, and online scoring with reasons. SQL lives in `store::history` and
//! `store::risk`; this module computes.

pub mod forest;
pub mod learn;
pub mod metrics;
pub mod window;
