//! Evaluation: the metrics the paper and the field report for MOSEI, from class probabilities.

pub mod event_share;
pub mod inference;
pub mod maps;
pub mod metrics;
pub mod plots;

pub use metrics::{EvalReport, evaluate_predictions};
