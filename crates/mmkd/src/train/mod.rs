//! Training: the hand-written loop (Adam, ReduceLROnPlateau on validation loss, gradient
//! clipping, best-validation checkpoint, resumable runs) and the run directory it fills.
//!
//! We use a hand-written loop rather than burn-train's Learner: it keeps the build smaller
//! (no `train` feature), the progress output is ours (indicatif, readable when not a TTY), and
//! a distillation step (a frozen teacher beside the trained student) is an ordinary function.

pub mod checkpoint;
pub mod crash;
pub mod curves;
pub mod distill;
pub mod dry_run;
pub mod fit;
pub mod launch;
pub mod memory;
pub mod plateau;
mod progress;
pub mod step;
pub mod task;

pub use fit::fit;
pub use task::{SupervisedTask, TrainTask};
