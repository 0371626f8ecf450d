//! Reading the published CMU-MOSEI packagings without Python.
//!
//! * [`pickle`]: a pickle reader (protocols 2 to 5) that rebuilds numpy arrays without executing
//!   anything: globals are resolved against a short allow-list, and every resource it uses is capped,
//!   so an untrusted file can only produce data or an error.
//! * [`mosei`]: the MulT and MMSA layouts on top of it, with the known data defects repaired and
//!   reported, and an [`mosei::inspect`] summary.
//!
//! This crate deliberately does not depend on burn: it stays quick to build, test and fuzz.

pub mod mosei;
pub mod pickle;

pub use mosei::{
    Array3, InspectReport, Layout, MoseiError, MoseiFile, NonFinite, ReadOptions, Repair,
    SplitData, inspect, read_mosei_bytes, read_mosei_bytes_with, read_mosei_file,
    read_mosei_file_with,
};
pub use pickle::{PickleError, Value};
