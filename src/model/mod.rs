//! The failure-risk model: features from stored history as of any instant, labels from service
//! records, training with linfa, evaluation against a rule baseline, the versioned artifact and
//! its model card, and online scoring with reasons. SQL lives in `store::history` and
//! `store::risk`; this module computes.

pub mod artifact;
pub mod cli;
pub mod cmapss;
pub mod dataset;
pub mod evaluate;
pub mod explain;
pub mod feature_list;
pub mod features;
pub mod forest;
pub mod labels;
pub mod learn;
pub mod metrics;
pub mod rules;
pub mod score;
pub mod train;
pub mod window;
pub mod worker;
