//! mmkd: distil a multimodal MulT-style cross-attention teacher (video, audio, text) into a
//! video-only transformer student.
//!
//! Modules depend one way: `cli -> study -> train -> distill -> model -> input` (and `eval`
//! beside `train`; `data` below `train` and above `input`); `main.rs` only parses and calls
//! `cli::run`. See docs/ARCHITECTURE.md.
//!
//! # Deploying a student
//!
//! A trained student (a run folder written by `mmkd train student` or `mmkd distill`) predicts
//! sentiment from video features alone:
//!
//! ```
//! # fn main() -> anyhow::Result<()> {
//! # let tmp = tempfile::tempdir()?;
//! # let run_dir = mmkd::predict::example_student_run(tmp.path())?;
//! let device = mmkd::Device::flex();
//! let student = mmkd::Predictor::load(&run_dir, &device)?;
//! let [frames, features] = student.video_shape();
//! let video = mmkd::Tensor::<3>::zeros([2, frames, features], &device); // [clips, frames, features]
//! let predictions = student.predict_video(video)?; // per clip: 7 probabilities, expected score, class
//! # assert_eq!(predictions.len(), 2);
//! # assert!((predictions[0].probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
//! # let wrong = mmkd::Tensor::<3>::zeros([2, frames + 1, features], &device);
//! # assert!(student.predict_video(wrong).unwrap_err().to_string().contains(&format!("expected [clips, {frames}, {features}]")));
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod bench;
pub mod choice;
pub mod cli;
pub mod config;
pub mod data;
pub mod distill;
pub mod durable;
pub mod error;
pub mod eval;
pub mod export;
pub mod input;
pub mod model;
pub mod predict;
pub mod reference;
pub mod robustness;
pub mod run;
pub mod study;
pub mod train;

// The deployment façade: a trained student predicts from a video tensor in five lines (see
// `Predictor`).
pub use burn::prelude::{Device, Tensor};
pub use predict::Predictor;
pub use run::Run;
