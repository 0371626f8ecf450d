//! Errors of the pickle reader. Every message is one line; text copied from the file is escaped and
//! shortened first (see [`shown`]), so a hostile file cannot forge extra lines in a log.

use thiserror::Error;

/// Why a stream could not be read. [`PickleError::kind`] names the variant for scripts and tests.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PickleError {
    /// An operand or FRAME runs past the end of the input.
    #[error("truncated pickle: {what} at byte {pos} needs {needed} bytes, only {available} remain")]
    Truncated {
        /// The opcode whose operand was cut off.
        what: &'static str,
        /// Where that opcode starts.
        pos: usize,
        /// Bytes it needs.
        needed: u64,
        /// Bytes left in the input.
        available: usize,
    },

    #[error("truncated pickle: the stream ends at byte {pos} without a STOP opcode")]
    /// The input ends without a STOP opcode.
    MissingStop {
        /// The input's length.
        pos: usize,
    },

    #[error("not a pickle (or a corrupt one): unknown opcode 0x{op:02x} at byte {pos}")]
    /// A byte that is not a pickle opcode where an opcode should be.
    UnknownOpcode {
        /// The byte.
        op: u8,
        /// Where it is.
        pos: usize,
    },

    #[error("unsupported pickle opcode {name} (0x{op:02x}) at byte {pos}: {why}")]
    /// A real opcode that this reader refuses (persistent ids, class instances, extension codes,
    /// protocol-0 quoted strings).
    UnsupportedOpcode {
        /// The opcode byte.
        op: u8,
        /// Its `pickletools` name.
        name: &'static str,
        /// Where it is.
        pos: usize,
        /// Why it is refused.
        why: &'static str,
    },

    #[error("unsupported pickle protocol {0} (this reader handles protocols 2 to 5)")]
    /// PROTO announces a protocol above 5; the field is the announced number.
    UnsupportedProtocol(u8),

    #[error(
        "forbidden global '{module}.{name}': only numpy array/dtype reconstruction and plain containers \
         may appear in a data pickle (anything else could run code when Python loads it)"
    )]
    /// GLOBAL or STACK_GLOBAL names something outside [`super::allowed_globals`].
    ForbiddenGlobal {
        /// The module, escaped and shortened.
        module: String,
        /// The name within it, escaped and shortened.
        name: String,
    },

    #[error(
        "protocol-5 out-of-band buffer at byte {pos}: the data is not inside this file; re-save it with \
         pickle.dump(obj, f, protocol=4) (or protocol 5 without buffer_callback)"
    )]
    /// NEXT_BUFFER: the array data were passed out of band and are not in the stream.
    OutOfBandBuffer {
        /// Where the opcode is.
        pos: usize,
    },

    #[error("malformed pickle: {opcode} at byte {pos} needs {needed} item(s) on the stack")]
    /// An opcode needs more stack items (above the last MARK) than there are.
    StackUnderflow {
        /// The opcode's name.
        opcode: &'static str,
        /// Where it is.
        pos: usize,
        /// Items it needs.
        needed: usize,
    },

    #[error("malformed pickle: {opcode} at byte {pos} has no MARK to pair with")]
    /// An opcode that closes a MARK finds none open.
    MissingMark {
        /// The opcode's name.
        opcode: &'static str,
        /// Where it is.
        pos: usize,
    },

    #[error("malformed pickle: memo entry {key} read at byte {pos} was never stored")]
    /// GET of a memo key that no PUT stored.
    MissingMemo {
        /// The key.
        key: u64,
        /// Where the GET is.
        pos: usize,
    },

    #[error("malformed pickle: {what} at byte {pos}: {detail}")]
    /// An operand or item sequence that cannot be what the opcode needs (a negative length, text
    /// that is not a number, an odd number of dict items...).
    Malformed {
        /// The opcode (or structure) concerned.
        what: &'static str,
        /// Where the opcode is.
        pos: usize,
        /// What is wrong.
        detail: String,
    },

    #[error("malformed pickle: {opcode} at byte {pos} expects {expected}, found {found}")]
    /// An opcode's stack operand has the wrong type (APPEND to a non-list, a call of a non-callable...).
    WrongType {
        /// The opcode's name.
        opcode: &'static str,
        /// Where it is.
        pos: usize,
        /// What it needs.
        expected: &'static str,
        /// The Python type it found.
        found: &'static str,
    },

    #[error("bad call to {callable} at byte {pos}: {reason}")]
    /// An allow-listed function is called with arguments it does not accept here.
    BadCall {
        /// The function, `module.name`.
        callable: String,
        /// Where the call opcode is.
        pos: usize,
        /// What is wrong with the arguments.
        reason: String,
    },

    #[error("unsupported numpy dtype '{dtype}': {reason}")]
    /// A numpy dtype this reader does not handle: structured, or a type code, size or byte order
    /// outside the plain numeric, string and object ones.
    UnsupportedDtype {
        /// The dtype as the stream wrote it (escaped), or in numpy's notation once parsed.
        dtype: String,
        /// Why it is not supported.
        reason: &'static str,
    },

    #[error("inconsistent numpy array at byte {pos}: {reason}")]
    /// An array whose shape, dtype and data do not agree.
    BadArray {
        /// Where the opcode that built it is.
        pos: usize,
        /// What does not agree.
        reason: String,
    },

    #[error("pickle exceeds the reader's limit on {what} ({limit}); refusing to go on")]
    /// The stream needs more of a resource than [`super::Limits`] allows.
    LimitExceeded {
        /// The resource.
        what: &'static str,
        /// The cap that was hit.
        limit: usize,
    },

    #[error("pickle nests deeper than {limit} levels (or contains a recursive structure)")]
    /// The result nests deeper than [`super::Limits::max_depth`].
    TooDeep {
        /// The depth limit.
        limit: usize,
    },
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
    let mut out: String = text.chars().take(MAX_CHARS).flat_map(char::escape_debug).collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        out.push_str("...");
    }
    out
}
