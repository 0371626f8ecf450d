//! The one error type of this crate.
//!
//! Shapes, indices and configuration values reach these losses from data files and command
//! lines, so a mismatch is reported as a value the caller can print, never as a panic.

use std::fmt;

/// Why a loss, a module or the memory bank refused its input.
#[derive(Debug, Clone, PartialEq)]
pub enum LossError {
    /// A list that must hold at least one element was empty (e.g. no attention-map pairs).
    Empty(&'static str),
    /// Two tensors (or a tensor and a configuration) disagree on a shape.
    ShapeMismatch {
        /// What was being checked, in words.
        what: &'static str,
        /// The shape that was required.
        expected: Vec<usize>,
        /// The shape that arrived.
        got: Vec<usize>,
    },
    /// A dataset index is not smaller than the number of training samples the bank holds.
    IndexOutOfRange {
        /// The offending index.
        index: usize,
        /// The number of rows of the memory bank.
        n_data: usize,
    },
    /// A configuration value is outside its valid range.
    InvalidConfig(String),
    /// Reading a tensor back to the host failed (device error, unexpected dtype).
    Read(String),
}

impl fmt::Display for LossError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty(what) => write!(f, "{what} is empty"),
            Self::ShapeMismatch { what, expected, got } => write!(f, "{what}: expected shape {expected:?}, got {got:?}"),
            Self::IndexOutOfRange { index, n_data } => write!(f, "sample index {index} is out of range for a memory bank of {n_data} rows"),
            Self::InvalidConfig(msg) => write!(f, "invalid configuration: {msg}"),
            Self::Read(msg) => write!(f, "could not read a tensor back to the host: {msg}"),
        }
    }
}

impl std::error::Error for LossError {}

/// Checks that a tensor's dims equal `expected`, naming the check in the error.
pub(crate) fn check_dims<const D: usize>(what: &'static str, got: [usize; D], expected: [usize; D]) -> Result<(), LossError> {
    if got == expected { Ok(()) } else { Err(LossError::ShapeMismatch { what, expected: expected.to_vec(), got: got.to_vec() }) }
}
