//! Reading the published CMU-MOSEI packagings without Python.
//!
//! * [`pickle`]: a pickle reader (protocols 2 to 5) that rebuilds numpy arrays without executing
//!   anything: globals are resolved against a short allow-list, and every resource it uses is capped,
//!   so an untrusted file can only produce data or an error.
//! * [`mosei`]: the MulT and MMSA layouts on top of it, with the known data defects repaired and
//!   reported, and an [`mosei::inspect`] summary; decoded ([`read_mosei_file`]) or as views of a
//!   memory-mapped file ([`read_mosei_view`]).
//! * [`view`]: [`ArrayView`], float arrays left in the file and streamed out as little-endian `f32`
//!   in bounded chunks, and [`MappedFile`].
//! * [`safetensors_stream`]: a safetensors writer that takes each tensor's bytes as a stream, so a
//!   dataset far larger than memory can be converted.
//!
//! This crate deliberately does not depend on burn: it stays quick to build, test and fuzz.

// The one exception is mapping a file (`view::MappedFile::open`), documented where it is.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod mosei;
pub mod pickle;
pub mod safetensors_stream;
pub mod view;

pub use mosei::{
    Array3, FeatureArray, InspectReport, Layout, MoseiError, MoseiFile, MoseiView, NonFinite, ReadOptions, Repair, SplitData, SplitView, inspect, read_mosei_bytes, read_mosei_bytes_with,
    read_mosei_file, read_mosei_file_with, read_mosei_view, read_mosei_view_with_progress,
};
pub use pickle::{PickleError, Value};
pub use view::{ArrayView, MappedFile};

/// The path as it goes into messages: control characters escaped, so a message stays one line.
pub(crate) fn file_name(path: &std::path::Path) -> String {
    path.display().to_string().chars().flat_map(|c| if c.is_control() { c.escape_debug().collect::<Vec<_>>() } else { vec![c] }).collect()
}
