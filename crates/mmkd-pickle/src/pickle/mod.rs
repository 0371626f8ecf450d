//! A pickle reader that builds data and never runs code.
//!
//! Python's unpickler calls whatever `module.name` a stream asks for, so a pickle from the internet can
//! run anything. This reader interprets the same opcodes (protocols 2 to 5, plus the few protocol-0/1
//! forms that protocol-2 writers still emit) but resolves globals against a short allow-list of numpy
//! reconstruction helpers and plain container types, each implemented here as a pure function of its
//! arguments (see [`allowed_globals`]). Anything else is [`PickleError::ForbiddenGlobal`].
//!
//! # Design
//!
//! * Objects live in an arena and the stack and memo hold indices, because pickle has reference
//!   semantics: numpy memoizes a dtype *before* its BUILD sets the byte order and later arrays fetch it
//!   again with GET, so a copy-on-GET tree would see a half-built dtype.
//! * The arena is flat (fixed-size chunks, plus shared immutable singletons for None, the booleans,
//!   the empty tuple and small ints), so memory per input byte stays low and dropping a hostile,
//!   deeply nested stream cannot overflow the Rust stack. The nesting limit is enforced when the arena
//!   is turned into the owned [`Value`] tree at STOP; objects reached once are moved into it, objects
//!   reached several times (GET, DUP) are copied against the data budget.
//! * Bytes and strings borrow from the input, so raw array data is read once, straight into the
//!   `f32`/`i64` vectors. No allocation is sized from a length field before that length has been
//!   checked against the bytes that remain (or, for arrays, against the data that is actually present).
//! * The stack, memo and arena are capped, and so is the data derived from the input (decoded arrays,
//!   re-encoded strings, copies of shared objects), so a small stream cannot expand into a huge
//!   allocation by rebuilding one memoized buffer many times ([`Limits`]).
//!
//! # Views: [`load_view`]
//!
//! [`load`] decodes every array into owned `f32`/`i64`/... vectors, so a real MOSEI file costs its own
//! size again (twice over, with the file's bytes). [`load_view`] runs the same machine in a mode where
//! float arrays are *not* decoded: after the same checks (shape, dtype, data length), their elements
//! stay the stream's own bytes, borrowed from the input (BINBYTES, SHORT_BINBYTES, BINBYTES8,
//! BYTEARRAY8 and BINSTRING payloads, inside or outside FRAMEs, under `_reconstruct`+BUILD or protocol
//! 5's `_frombuffer`). The tree then holds [`ArrayData::Raw`] entries that index
//! [`PickleView::buffers`]. Only where a stream carries array data *encoded* (protocol 2 writes
//! Python 3 `bytes` as `_codecs.encode(text, 'latin1')`) is the buffer an owned copy. Every other
//! value, including integer, bool, string and object arrays, is decoded exactly as by [`load`].

mod arena;
mod arrays;
mod calls;
mod convert;
mod error;
mod globals;
mod interpreter;
mod limits;
mod machine;
mod memo;
pub(crate) mod numpy;
mod opcodes;
mod operands;
mod reader;
mod value;

pub use error::PickleError;
pub(crate) use error::shown;
pub use globals::allowed_globals;
pub use limits::Limits;
pub use reader::{Pickle, PickleView, load, load_view, load_view_with_limits, load_with_limits};
pub use value::{ArrayData, ByteOrder, DType, DTypeKind, GlobalName, NdArray, RawBuffer, Value};

type Result<T> = std::result::Result<T, PickleError>;
