//! mmkd: distil a multimodal MulT-style cross-attention teacher (video, audio, text) into a
//! video-only transformer student.
//!
//! Modules depend one way: `study -> train -> distill -> model -> data` (and `eval` beside
//! `train`); the CLI (`main.rs`) sits on top. See docs/ARCHITECTURE.md.

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
