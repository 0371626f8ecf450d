//! mmkd: distil a multimodal MulT-style cross-attention teacher (video, audio, text) into a
//! video-only transformer student.
//!
//! Modules depend one way: `cli -> study -> train -> distill -> model -> input` (and `eval`
//! beside `train`; `data` below `train` and above `input`); `main.rs` only parses and calls
//! `cli::run`. See docs/ARCHITECTURE.md.

#![warn(missing_docs)]

pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod distill;
pub mod error;
pub mod eval;
pub mod input;
pub mod model;
pub mod predict;
pub mod reference;
pub mod robustness;
pub mod study;
pub mod train;
