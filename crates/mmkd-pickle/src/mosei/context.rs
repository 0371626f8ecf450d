//! What every step of reading a split shares: [`Ctx`] (where the reader is, to build one-line errors
//! and record repairs), [`numeric`] and [`python_shape`]. Below both the decoders and the split
//! reading, so that neither imports the other's helpers.

use super::error::MoseiError;
use super::types::Repair;
use crate::pickle::NdArray;

/// Where we are, for error messages.
pub(super) struct Ctx<'f> {
    pub(super) file: &'f str,
    pub(super) split: &'static str,
    /// The split's keys as found, for "missing key" messages.
    pub(super) keys: String,
}

impl Ctx<'_> {
    pub(super) fn missing(&self, key: &'static str) -> MoseiError {
        MoseiError::MissingKey { file: self.file.to_string(), split: self.split, key, found: self.keys.clone() }
    }

    pub(super) fn wrong_type(&self, key: &'static str, expected: &'static str, found: impl Into<String>) -> MoseiError {
        MoseiError::WrongType { file: self.file.to_string(), split: self.split, key, expected, found: found.into() }
    }

    pub(super) fn wrong_rank(&self, key: &'static str, expected: &'static str, shape: &[usize]) -> MoseiError {
        MoseiError::WrongRank { file: self.file.to_string(), split: self.split, key, expected, shape: python_shape(shape) }
    }

    pub(super) fn count(&self, key: &'static str, expected: usize, found: usize) -> MoseiError {
        MoseiError::CountMismatch { file: self.file.to_string(), split: self.split, key, reference: "vision", expected, found }
    }

    pub(super) fn repair(&self, repairs: &mut Vec<Repair>, key: &str, what: impl Into<String>, count: usize) {
        if count > 0 {
            repairs.push(Repair { split: self.split.to_string(), key: key.to_string(), what: what.into(), count });
        }
    }
}

/// The elements of a numeric array as `f32`, moving rather than copying when they already are.
pub(super) fn numeric(ctx: &Ctx<'_>, key: &'static str, array: NdArray) -> Result<Vec<f32>, MoseiError> {
    array.into_f32().map_err(|array| MoseiError::UnsupportedDtype { file: ctx.file.to_string(), split: ctx.split, key, dtype: array.dtype.to_string() })
}

/// A shape as Python prints it: `(12, 74)`, `(12,)`, `()`.
pub(crate) fn python_shape(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    }
}
