//! Errors of the pickle reader. Every message is one line; text copied from the file is escaped and
//! shortened first (see [`shown`]), so a hostile file cannot forge extra lines in a log.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PickleError {
    #[error("truncated pickle: {what} at byte {pos} needs {needed} bytes, only {available} remain")]
    Truncated {
        what: &'static str,
        pos: usize,
        needed: u64,
        available: usize,
    },

    #[error("truncated pickle: the stream ends at byte {pos} without a STOP opcode")]
    MissingStop { pos: usize },

    #[error("not a pickle (or a corrupt one): unknown opcode 0x{op:02x} at byte {pos}")]
    UnknownOpcode { op: u8, pos: usize },

    #[error("unsupported pickle opcode {name} (0x{op:02x}) at byte {pos}: {why}")]
    UnsupportedOpcode {
        op: u8,
        name: &'static str,
        pos: usize,
        why: &'static str,
    },

    #[error("unsupported pickle protocol {0} (this reader handles protocols 2 to 5)")]
    UnsupportedProtocol(u8),

    #[error(
        "forbidden global '{module}.{name}': only numpy array/dtype reconstruction and plain containers \
         may appear in a data pickle (anything else could run code when Python loads it)"
    )]
    ForbiddenGlobal { module: String, name: String },

    #[error(
        "protocol-5 out-of-band buffer at byte {pos}: the data is not inside this file; re-save it with \
         pickle.dump(obj, f, protocol=4) (or protocol 5 without buffer_callback)"
    )]
    OutOfBandBuffer { pos: usize },

    #[error("malformed pickle: {opcode} at byte {pos} needs {needed} item(s) on the stack")]
    StackUnderflow {
        opcode: &'static str,
        pos: usize,
        needed: usize,
    },

    #[error("malformed pickle: {opcode} at byte {pos} has no MARK to pair with")]
    MissingMark { opcode: &'static str, pos: usize },

    #[error("malformed pickle: memo entry {key} read at byte {pos} was never stored")]
    MissingMemo { key: u64, pos: usize },

    #[error("malformed pickle: {what} at byte {pos}: {detail}")]
    Malformed {
        what: &'static str,
        pos: usize,
        detail: String,
    },

    #[error("malformed pickle: {opcode} at byte {pos} expects {expected}, found {found}")]
    WrongType {
        opcode: &'static str,
        pos: usize,
        expected: &'static str,
        found: &'static str,
    },

    #[error("bad call to {callable} at byte {pos}: {reason}")]
    BadCall {
        callable: String,
        pos: usize,
        reason: String,
    },

    #[error("unsupported numpy dtype '{dtype}': {reason}")]
    UnsupportedDtype { dtype: String, reason: &'static str },

    #[error("inconsistent numpy array at byte {pos}: {reason}")]
    BadArray { pos: usize, reason: String },

    #[error("pickle exceeds the reader's limit on {what} ({limit}); refusing to go on")]
    LimitExceeded { what: &'static str, limit: usize },

    #[error("pickle nests deeper than {limit} levels (or contains a recursive structure)")]
    TooDeep { limit: usize },
}

impl PickleError {
    /// The variant's name, stable for scripts and tests (`"ForbiddenGlobal"`, `"Truncated"`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            PickleError::Truncated { .. } => "Truncated",
            PickleError::MissingStop { .. } => "MissingStop",
            PickleError::UnknownOpcode { .. } => "UnknownOpcode",
            PickleError::UnsupportedOpcode { .. } => "UnsupportedOpcode",
            PickleError::UnsupportedProtocol(_) => "UnsupportedProtocol",
            PickleError::ForbiddenGlobal { .. } => "ForbiddenGlobal",
            PickleError::OutOfBandBuffer { .. } => "OutOfBandBuffer",
            PickleError::StackUnderflow { .. } => "StackUnderflow",
            PickleError::MissingMark { .. } => "MissingMark",
            PickleError::MissingMemo { .. } => "MissingMemo",
            PickleError::Malformed { .. } => "Malformed",
            PickleError::WrongType { .. } => "WrongType",
            PickleError::BadCall { .. } => "BadCall",
            PickleError::UnsupportedDtype { .. } => "UnsupportedDtype",
            PickleError::BadArray { .. } => "BadArray",
            PickleError::LimitExceeded { .. } => "LimitExceeded",
            PickleError::TooDeep { .. } => "TooDeep",
        }
    }
}

/// Escapes control characters and shortens text taken from a file before it goes into a message.
pub fn shown(text: &str) -> String {
    const MAX_CHARS: usize = 60;
    let mut out: String = text
        .chars()
        .take(MAX_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        out.push_str("...");
    }
    out
}
