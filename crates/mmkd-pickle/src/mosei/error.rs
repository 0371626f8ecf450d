//! Errors of the MOSEI layer: one line each, naming the file, the split, the key, what was expected and
//! what was found, e.g. `mosei.pkl: split 'valid', key 'audio': expected a 3-d array (N, L, D), found
//! shape (12, 74)`.

use thiserror::Error;

use crate::pickle::PickleError;

/// Why a file could not be read as MOSEI. [`MoseiError::kind`] names the variant for scripts and
/// tests; every message starts with the file's name.
#[derive(Debug, Error)]
pub enum MoseiError {
    /// The file could not be opened, mapped or read.
    #[error("{file}: cannot read the file: {source}")]
    Io {
        /// The file, as named to the reader (control characters escaped).
        file: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The file is not a pickle this reader accepts.
    #[error("{file}: {source}")]
    Pickle {
        /// The file, as named to the reader (control characters escaped).
        file: String,
        /// The underlying error.
        #[source]
        source: PickleError,
    },

    /// The top-level object is not a dict of splits.
    #[error("{file}: expected a dict of splits (train, valid, test) at the top level, found {found}")]
    NotADict {
        /// The file, as named to the reader (control characters escaped).
        file: String,
        /// The Python type of the top-level object.
        found: &'static str,
    },

    /// A required split is absent.
    #[error("{file}: missing split '{split}' (found keys: {found})")]
    MissingSplit {
        /// The file, as named to the reader (control characters escaped).
        file: String,
        /// The split: `train`, `valid` or `test`.
        split: &'static str,
        /// The top-level keys that are there.
        found: String,
    },

    /// A split is not a dict of arrays.
    #[error("{file}: split '{split}': expected a dict of arrays, found {found}")]
    SplitNotADict {
        /// The file, as named to the reader (control characters escaped).
        file: String,
        /// The split: `train`, `valid` or `test`.
        split: &'static str,
        /// The Python type of the split.
        found: &'static str,
    },

    /// The first split read has neither MulT's nor MMSA's keys.
    #[error(
        "{file}: split '{split}': unknown layout: expected MulT keys (vision, audio, text, labels, id) or MMSA keys \
         (text, audio, vision, regression_labels, id, ...), found keys: {found}"
    )]
    UnknownLayout {
        /// The file, as named to the reader (control characters escaped).
        file: String,
        /// The split: `train`, `valid` or `test`.
        split: &'static str,
        /// The split's keys.
        found: String,
    },

    /// A required key is absent from a split.
    #[error("{file}: split '{split}': missing key '{key}' (found keys: {found})")]
    MissingKey {
        /// The file, as named to the reader (control characters escaped).
        file: String,
        /// The split: `train`, `valid` or `test`.
        split: &'static str,
        /// The key within the split.
        key: &'static str,
        /// The split's keys.
        found: String,
    },

    /// An MMSA split has BERT token ids (`text_bert`) but no `text` features.
    #[error(
        "{file}: split '{split}', key 'text_bert': expected text features under 'text', found only BERT token ids \
         (N, 3, L), which are not features; use a packaging that also stores 'text' (e.g. MMSA's unaligned_50.pkl)"
    )]
    BertTokenIdsOnly {
        /// The file, as named to the reader (control characters escaped).
        file: String,
        /// The split: `train`, `valid` or `test`.
        split: &'static str,
    },

    /// A key holds the wrong kind of value (e.g. a list where an array belongs).
    #[error("{file}: split '{split}', key '{key}': expected {expected}, found {found}")]
    WrongType {
        /// The file, as named to the reader (control characters escaped).
        file: String,
        /// The split: `train`, `valid` or `test`.
        split: &'static str,
        /// The key within the split.
        key: &'static str,
        /// What the key should hold.
        expected: &'static str,
        /// What the key holds instead.
        found: String,
    },

    /// An array has the wrong number of dimensions.
    #[error("{file}: split '{split}', key '{key}': expected {expected}, found shape {shape}")]
    WrongRank {
        /// The file, as named to the reader (control characters escaped).
        file: String,
        /// The split: `train`, `valid` or `test`.
        split: &'static str,
        /// The key within the split.
        key: &'static str,
        /// What the key should hold.
        expected: &'static str,
        /// The array's shape, in Python notation.
        shape: String,
    },

    /// An array that must be numeric is not.
    #[error("{file}: split '{split}', key '{key}': expected a numeric dtype, found {dtype}")]
    UnsupportedDtype {
        /// The file, as named to the reader (control characters escaped).
        file: String,
        /// The split: `train`, `valid` or `test`.
        split: &'static str,
        /// The key within the split.
        key: &'static str,
        /// The array's dtype, in numpy notation.
        dtype: String,
    },

    /// A key has a different number of samples than the split's reference key.
    #[error("{file}: split '{split}', key '{key}': expected {expected} samples (as in '{reference}'), found {found}")]
    CountMismatch {
        /// The file, as named to the reader (control characters escaped).
        file: String,
        /// The split: `train`, `valid` or `test`.
        split: &'static str,
        /// The key within the split.
        key: &'static str,
        /// The key whose sample count the others must match.
        reference: &'static str,
        /// The reference key's sample count.
        expected: usize,
        /// This key's sample count.
        found: usize,
    },

    /// Labels are not one sentiment score per sample.
    #[error(
        "{file}: split '{split}', key '{key}': expected one sentiment score per sample, shaped (N,), (N, 1) or \
         (N, 1, 1), found shape {shape}{hint}"
    )]
    UnsupportedLabels {
        /// The file, as named to the reader (control characters escaped).
        file: String,
        /// The split: `train`, `valid` or `test`.
        split: &'static str,
        /// The key within the split.
        key: &'static str,
        /// The array's shape, in Python notation.
        shape: String,
        /// An explanation appended to the message when the shape suggests one (may be empty).
        hint: &'static str,
    },

    /// A label is NaN or infinite (refused rather than repaired: it would train on a made-up target).
    #[error("{file}: split '{split}', key '{key}': expected finite labels, found {value} at sample {index}")]
    NonFiniteLabel {
        /// The file, as named to the reader (control characters escaped).
        file: String,
        /// The split: `train`, `valid` or `test`.
        split: &'static str,
        /// The key within the split.
        key: &'static str,
        /// The sample.
        index: usize,
        /// The label.
        value: f32,
    },

    /// A valid-length entry is not a non-negative integer.
    #[error("{file}: split '{split}', key '{key}': expected non-negative integer lengths, found {value} at sample {index}")]
    BadLength {
        /// The file, as named to the reader (control characters escaped).
        file: String,
        /// The split: `train`, `valid` or `test`.
        split: &'static str,
        /// The key within the split.
        key: &'static str,
        /// The sample.
        index: usize,
        /// The offending length, as text.
        value: String,
    },

    /// A sample id is neither a string nor a number.
    #[error("{file}: split '{split}', key '{key}': expected string or number ids, found {found} at sample {index}")]
    BadId {
        /// The file, as named to the reader (control characters escaped).
        file: String,
        /// The split: `train`, `valid` or `test`.
        split: &'static str,
        /// The key within the split.
        key: &'static str,
        /// The sample.
        index: usize,
        /// The Python type of the offending id.
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
