//! Errors of the MOSEI layer: one line each, naming the file, the split, the key, what was expected and
//! what was found, e.g. `mosei.pkl: split 'valid', key 'audio': expected a 3-d array (N, L, D), found
//! shape (12, 74)`.

use thiserror::Error;

use crate::pickle::PickleError;

#[derive(Debug, Error)]
pub enum MoseiError {
    #[error("{file}: cannot read the file: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{file}: {source}")]
    Pickle {
        file: String,
        #[source]
        source: PickleError,
    },

    #[error(
        "{file}: expected a dict of splits (train, valid, test) at the top level, found {found}"
    )]
    NotADict { file: String, found: &'static str },

    #[error("{file}: missing split '{split}' (found keys: {found})")]
    MissingSplit {
        file: String,
        split: &'static str,
        found: String,
    },

    #[error("{file}: split '{split}': expected a dict of arrays, found {found}")]
    SplitNotADict {
        file: String,
        split: &'static str,
        found: &'static str,
    },

    #[error(
        "{file}: split '{split}': unknown layout: expected MulT keys (vision, audio, text, labels, id) or MMSA keys \
         (text, audio, vision, regression_labels, id, ...), found keys: {found}"
    )]
    UnknownLayout {
        file: String,
        split: &'static str,
        found: String,
    },

    #[error("{file}: split '{split}': missing key '{key}' (found keys: {found})")]
    MissingKey {
        file: String,
        split: &'static str,
        key: &'static str,
        found: String,
    },

    #[error(
        "{file}: split '{split}', key 'text_bert': expected text features under 'text', found only BERT token ids \
         (N, 3, L), which are not features; use a packaging that also stores 'text' (e.g. MMSA's unaligned_50.pkl)"
    )]
    BertTokenIdsOnly { file: String, split: &'static str },

    #[error("{file}: split '{split}', key '{key}': expected {expected}, found {found}")]
    WrongType {
        file: String,
        split: &'static str,
        key: &'static str,
        expected: &'static str,
        found: String,
    },

    #[error("{file}: split '{split}', key '{key}': expected {expected}, found shape {shape}")]
    WrongRank {
        file: String,
        split: &'static str,
        key: &'static str,
        expected: &'static str,
        shape: String,
    },

    #[error("{file}: split '{split}', key '{key}': expected a numeric dtype, found {dtype}")]
    UnsupportedDtype {
        file: String,
        split: &'static str,
        key: &'static str,
        dtype: String,
    },

    #[error(
        "{file}: split '{split}', key '{key}': expected {expected} samples (as in '{reference}'), found {found}"
    )]
    CountMismatch {
        file: String,
        split: &'static str,
        key: &'static str,
        reference: &'static str,
        expected: usize,
        found: usize,
    },

    #[error(
        "{file}: split '{split}', key '{key}': expected one sentiment score per sample, shaped (N,), (N, 1) or \
         (N, 1, 1), found shape {shape}{hint}"
    )]
    UnsupportedLabels {
        file: String,
        split: &'static str,
        key: &'static str,
        shape: String,
        hint: &'static str,
    },

    #[error(
        "{file}: split '{split}', key '{key}': expected finite labels, found {value} at sample {index}"
    )]
    NonFiniteLabel {
        file: String,
        split: &'static str,
        key: &'static str,
        index: usize,
        value: f32,
    },

    #[error(
        "{file}: split '{split}', key '{key}': expected non-negative integer lengths, found {value} at sample {index}"
    )]
    BadLength {
        file: String,
        split: &'static str,
        key: &'static str,
        index: usize,
        value: String,
    },

    #[error(
        "{file}: split '{split}', key '{key}': expected string or number ids, found {found} at sample {index}"
    )]
    BadId {
        file: String,
        split: &'static str,
        key: &'static str,
        index: usize,
        found: &'static str,
    },
}

impl MoseiError {
    /// The variant's name, stable for scripts and tests (`"MissingKey"`, `"CountMismatch"`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            MoseiError::Io { .. } => "Io",
            MoseiError::Pickle { .. } => "Pickle",
            MoseiError::NotADict { .. } => "NotADict",
            MoseiError::MissingSplit { .. } => "MissingSplit",
            MoseiError::SplitNotADict { .. } => "SplitNotADict",
            MoseiError::UnknownLayout { .. } => "UnknownLayout",
            MoseiError::MissingKey { .. } => "MissingKey",
            MoseiError::BertTokenIdsOnly { .. } => "BertTokenIdsOnly",
            MoseiError::WrongType { .. } => "WrongType",
            MoseiError::WrongRank { .. } => "WrongRank",
            MoseiError::UnsupportedDtype { .. } => "UnsupportedDtype",
            MoseiError::CountMismatch { .. } => "CountMismatch",
            MoseiError::UnsupportedLabels { .. } => "UnsupportedLabels",
            MoseiError::NonFiniteLabel { .. } => "NonFiniteLabel",
            MoseiError::BadLength { .. } => "BadLength",
            MoseiError::BadId { .. } => "BadId",
        }
    }

    /// The split the error is about, when it is about one.
    pub fn split(&self) -> Option<&'static str> {
        match self {
            MoseiError::MissingSplit { split, .. }
            | MoseiError::SplitNotADict { split, .. }
            | MoseiError::UnknownLayout { split, .. }
            | MoseiError::MissingKey { split, .. }
            | MoseiError::BertTokenIdsOnly { split, .. }
            | MoseiError::WrongType { split, .. }
            | MoseiError::WrongRank { split, .. }
            | MoseiError::UnsupportedDtype { split, .. }
            | MoseiError::CountMismatch { split, .. }
            | MoseiError::UnsupportedLabels { split, .. }
            | MoseiError::NonFiniteLabel { split, .. }
            | MoseiError::BadLength { split, .. }
            | MoseiError::BadId { split, .. } => Some(split),
            MoseiError::Io { .. } | MoseiError::Pickle { .. } | MoseiError::NotADict { .. } => None,
        }
    }

    /// The key the error is about, when it is about one.
    pub fn key(&self) -> Option<&'static str> {
        match self {
            MoseiError::MissingKey { key, .. }
            | MoseiError::WrongType { key, .. }
            | MoseiError::WrongRank { key, .. }
            | MoseiError::UnsupportedDtype { key, .. }
            | MoseiError::CountMismatch { key, .. }
            | MoseiError::UnsupportedLabels { key, .. }
            | MoseiError::NonFiniteLabel { key, .. }
            | MoseiError::BadLength { key, .. }
            | MoseiError::BadId { key, .. } => Some(key),
            MoseiError::BertTokenIdsOnly { .. } => Some("text_bert"),
            _ => None,
        }
    }

    /// The underlying pickle error, for a file that is not a readable pickle.
    pub fn pickle_error(&self) -> Option<&PickleError> {
        match self {
            MoseiError::Pickle { source, .. } => Some(source),
            _ => None,
        }
    }
}
