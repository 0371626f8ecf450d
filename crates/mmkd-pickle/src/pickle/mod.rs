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

mod error;
pub(crate) mod numpy;
mod value;

use std::borrow::Cow;
use std::collections::HashMap;

pub use error::PickleError;
pub(crate) use error::shown;
pub use value::{ArrayData, ByteOrder, DType, DTypeKind, GlobalName, NdArray, RawBuffer, Value};

use numpy::DtypeState;

/// Resource caps for one load. The defaults fit the real MOSEI packagings with a wide margin.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Items on the stack plus open MARKs. Python batches APPENDS/SETITEMS by 1000, so real streams
    /// stay tiny; the cap only stops hostile ones.
    pub max_stack: usize,
    /// Memo entries.
    pub max_memo: usize,
    /// Objects created. The effective cap is also at most one per two input bytes (+4096): every
    /// writer spends at least that much per object (a memoized container is already three opcodes).
    pub max_nodes: usize,
    /// Container nesting in the result.
    pub max_depth: usize,
    /// Data derived from the input (decoded arrays, re-encoded strings, copies of objects reachable
    /// twice) may total this many times the input size, plus 64 KiB. It stops a small stream from
    /// rebuilding one buffer over and over, or a self-referencing one from being copied level after
    /// level; the real files need about 1x (3x under protocol 2, whose bytes travel as text).
    pub data_factor: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stack: 1 << 20,
            max_memo: 1 << 22,
            max_nodes: 1 << 26,
            max_depth: 100,
            data_factor: 16,
        }
    }
}

/// A decoded pickle.
#[derive(Debug, Clone, PartialEq)]
pub struct Pickle {
    /// The protocol announced by the PROTO opcode; 0 for a stream without one (protocol 0 or 1).
    pub protocol: u8,
    pub value: Value,
}

/// Decodes a pickle with the default [`Limits`].
pub fn load(input: &[u8]) -> Result<Pickle> {
    load_with_limits(input, &Limits::default())
}

/// Decodes a pickle. Every failure, including resource exhaustion, is an error value; nothing panics.
pub fn load_with_limits(input: &[u8], limits: &Limits) -> Result<Pickle> {
    let mut machine = Machine::new(input, limits.clone(), Mode::Decode);
    let root = machine.run()?;
    let (value, _) = machine.build_value(root)?;
    Ok(Pickle {
        protocol: machine.protocol,
        value,
    })
}

/// A pickle decoded by [`load_view`]: float arrays are [`ArrayData::Raw`] entries of `value` whose
/// elements are `buffers[index]`.
#[derive(Clone, PartialEq)]
pub struct PickleView<'a> {
    /// The protocol announced by the PROTO opcode; 0 for a stream without one.
    pub protocol: u8,
    pub value: Value,
    /// The elements of every [`ArrayData::Raw`] in `value`, by [`RawBuffer::index`], in the file's
    /// dtype, byte order and memory order: slices of the input, except for data the stream carried
    /// encoded (protocol 2's `_codecs.encode`), which are owned.
    pub buffers: Vec<Cow<'a, [u8]>>,
}

/// The buffers are gigabytes: `Debug` shows their number and total size, not their bytes.
impl std::fmt::Debug for PickleView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PickleView")
            .field("protocol", &self.protocol)
            .field("value", &self.value)
            .field("buffers", &self.buffers.len())
            .field(
                "buffer_bytes",
                &self.buffers.iter().map(|b| b.len()).sum::<usize>(),
            )
            .finish()
    }
}

impl PickleView<'_> {
    /// The bytes of a raw array; `None` for an index this view does not have.
    pub fn raw(&self, buffer: &RawBuffer) -> Option<&[u8]> {
        self.buffers.get(buffer.index).map(|b| &**b)
    }
}

/// Decodes a pickle with the default [`Limits`], leaving float arrays as views of `input` (see the
/// module documentation). The checks and errors are those of [`load`]; the only difference is that
/// a view costs no data budget, so a stream that [`load`] refuses for decoding too much
/// (`LimitExceeded`) may be accepted here.
pub fn load_view(input: &[u8]) -> Result<PickleView<'_>> {
    load_view_with_limits(input, &Limits::default())
}

/// [`load_view`] with explicit [`Limits`].
pub fn load_view_with_limits<'a>(input: &'a [u8], limits: &Limits) -> Result<PickleView<'a>> {
    let mut machine = Machine::new(input, limits.clone(), Mode::View);
    let root = machine.run()?;
    let (value, buffers) = machine.build_value(root)?;
    Ok(PickleView {
        protocol: machine.protocol,
        value,
        buffers,
    })
}

/// Whether float arrays are decoded ([`load`]) or kept as the input's bytes ([`load_view`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Decode,
    View,
}

/// What an allow-listed global does when called (REDUCE, NEWOBJ) or how it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Callable {
    /// `_reconstruct(ndarray, shape, typecode)`: an empty array that the following BUILD fills.
    Reconstruct,
    /// `numpy.ndarray`: only ever an argument of `_reconstruct`.
    NdArrayType,
    /// `numpy.dtype(spec, align, copy)`, refined by BUILD.
    Dtype,
    /// `scalar(dtype, raw)`: a numpy scalar such as `np.int64(5)`.
    Scalar,
    /// `_frombuffer(buffer, dtype, shape, order)`: how numpy pickles arrays under protocol 5.
    FromBuffer,
    /// `_codecs.encode(text, 'latin1')`: how protocol 2 writes `bytes` from Python 3.
    CodecsEncode,
    OrderedDict,
    ByteArray,
    /// `bytes()`: protocol 2's spelling of an empty `bytes`.
    Bytes,
    /// `set(list)` / `frozenset(list)`: protocol 2's spelling of sets.
    Set,
}

const fn g(module: &'static str, name: &'static str) -> GlobalName {
    GlobalName { module, name }
}

/// The globals a stream may name, with the function each stands for. Every entry is a pure data
/// constructor; nothing here can reach the file system, a shell or an import.
static ALLOWED: [(GlobalName, Callable); 18] = [
    (
        g("numpy.core.multiarray", "_reconstruct"),
        Callable::Reconstruct,
    ),
    (
        g("numpy._core.multiarray", "_reconstruct"),
        Callable::Reconstruct,
    ),
    (g("numpy", "ndarray"), Callable::NdArrayType),
    (g("numpy", "dtype"), Callable::Dtype),
    (g("numpy.core.multiarray", "scalar"), Callable::Scalar),
    (g("numpy._core.multiarray", "scalar"), Callable::Scalar),
    (g("numpy.core.numeric", "_frombuffer"), Callable::FromBuffer),
    (
        g("numpy._core.numeric", "_frombuffer"),
        Callable::FromBuffer,
    ),
    (g("_codecs", "encode"), Callable::CodecsEncode),
    (g("collections", "OrderedDict"), Callable::OrderedDict),
    (g("builtins", "bytearray"), Callable::ByteArray),
    (g("__builtin__", "bytearray"), Callable::ByteArray),
    (g("builtins", "bytes"), Callable::Bytes),
    (g("__builtin__", "bytes"), Callable::Bytes),
    (g("builtins", "set"), Callable::Set),
    (g("__builtin__", "set"), Callable::Set),
    (g("builtins", "frozenset"), Callable::Set),
    (g("__builtin__", "frozenset"), Callable::Set),
];

/// The allow-list, for documentation and tests.
pub fn allowed_globals() -> impl Iterator<Item = &'static GlobalName> {
    ALLOWED.iter().map(|(name, _)| name)
}

type Id = u32;

/// An arena object. Strings and bytes borrow from the input where they can.
#[derive(Debug)]
enum Node<'a> {
    None,
    Bool(bool),
    Int(i64),
    BigInt(&'a [u8]),
    Float(f64),
    Str(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Set(Vec<Id>),
    /// Index into [`ALLOWED`].
    Global(u8),
    Dtype(DType),
    Array(Box<ArrayNode<'a>>),
    /// Left behind when an object has been moved into the result tree.
    Taken,
}

#[derive(Debug)]
struct ArrayNode<'a> {
    shape: Vec<usize>,
    dtype: DType,
    data: ArrayStore<'a>,
}

#[derive(Debug)]
enum ArrayStore<'a> {
    Plain(ArrayData),
    /// Elements of an object array, still as arena objects.
    Objects(Vec<Id>),
    /// [`Mode::View`]: the float elements as the stream stored them (length already checked).
    Raw {
        bytes: Cow<'a, [u8]>,
        fortran: bool,
    },
}

impl Node<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Node::None => "None",
            Node::Bool(_) => "bool",
            Node::Int(_) | Node::BigInt(_) => "int",
            Node::Float(_) => "float",
            Node::Str(_) => "str",
            Node::Bytes(_) => "bytes",
            Node::List(_) => "list",
            Node::Tuple(_) => "tuple",
            Node::Dict(_) => "dict",
            Node::Set(_) => "set",
            Node::Global(_) => "global",
            Node::Dtype(_) => "numpy dtype",
            Node::Array(_) => "numpy array",
            Node::Taken => "moved object",
        }
    }

    /// The objects this one refers to.
    fn children(&self) -> &[Id] {
        match self {
            Node::List(v) | Node::Tuple(v) | Node::Set(v) => v,
            Node::Array(array) => match &array.data {
                ArrayStore::Objects(v) => v,
                ArrayStore::Plain(_) | ArrayStore::Raw { .. } => &[],
            },
            _ => &[],
        }
    }
}

static NONE_NODE: Node<'static> = Node::None;

/// Objects are stored in fixed-size chunks: unlike one growing `Vec`, the arena never holds twice the
/// memory it uses, which keeps the worst-case memory per input byte low.
struct Arena<'a> {
    chunks: Vec<Vec<Node<'a>>>,
    len: usize,
}

const CHUNK: usize = 1024;

impl<'a> Arena<'a> {
    fn new() -> Self {
        Arena {
            chunks: Vec::new(),
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, node: Node<'a>) {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(node);
            self.len += 1;
        }
    }

    fn get(&self, id: Id) -> Option<&Node<'a>> {
        let id = id as usize;
        self.chunks.get(id / CHUNK)?.get(id % CHUNK)
    }

    fn get_mut(&mut self, id: Id) -> Option<&mut Node<'a>> {
        let id = id as usize;
        self.chunks.get_mut(id / CHUNK)?.get_mut(id % CHUNK)
    }
}

// Immutable singletons, created once so that the commonest scalars do not grow the arena: Python's
// NONE/NEWTRUE/NEWFALSE/EMPTY_TUPLE, and the small ints of BININT1 (ids `SMALL_INT..SMALL_INT + 256`).
const NONE_ID: Id = 0;
const TRUE_ID: Id = 1;
const FALSE_ID: Id = 2;
const EMPTY_TUPLE_ID: Id = 3;
const SMALL_INT: Id = 4;

fn op_name(op: u8) -> &'static str {
    match op {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'a' => "APPEND",
        b'e' => "APPENDS",
        b's' => "SETITEM",
        b'u' => "SETITEMS",
        b'R' => "REDUCE",
        b'b' => "BUILD",
        b't' => "TUPLE",
        b'l' => "LIST",
        b'd' => "DICT",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        0x94 => "MEMOIZE",
        0x81 => "NEWOBJ",
        0x92 => "NEWOBJ_EX",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x93 => "STACK_GLOBAL",
        0x98 => "READONLY_BUFFER",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'i' => "INST",
        b'o' => "OBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        b'S' => "STRING",
        b'V' => "UNICODE",
        _ => "opcode",
    }
}

type Result<T> = std::result::Result<T, PickleError>;

struct Machine<'a> {
    input: &'a [u8],
    /// Next byte to read; always `<= input.len()`.
    pos: usize,
    /// Where the current opcode started, for messages.
    op_pos: usize,
    op: u8,
    nodes: Arena<'a>,
    max_nodes: usize,
    stack: Vec<Id>,
    /// Stack heights at each open MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Id>,
    protocol: u8,
    /// Bytes of derived data still allowed (see [`Limits::data_factor`]).
    budget: usize,
    budget_total: usize,
    limits: Limits,
    mode: Mode,
}

impl<'a> Machine<'a> {
    fn new(input: &'a [u8], limits: Limits, mode: Mode) -> Self {
        let mut nodes = Arena::new();
        for node in [
            Node::None,
            Node::Bool(true),
            Node::Bool(false),
            Node::Tuple(Vec::new()),
        ] {
            nodes.push(node);
        }
        for v in 0..=255 {
            nodes.push(Node::Int(v));
        }
        let budget = input
            .len()
            .saturating_mul(limits.data_factor)
            .saturating_add(64 << 10);
        Machine {
            input,
            pos: 0,
            op_pos: 0,
            op: 0,
            max_nodes: limits.max_nodes.min(input.len() / 2 + 4096),
            nodes,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            protocol: 0,
            budget,
            budget_total: budget,
            limits,
            mode,
        }
    }

    /// Reserves `bytes` of derived data against the budget, before allocating it.
    fn charge(&mut self, bytes: usize) -> Result<()> {
        self.budget = self
            .budget
            .checked_sub(bytes)
            .ok_or(PickleError::LimitExceeded {
                what: "data derived from the input (bytes)",
                limit: self.budget_total,
            })?;
        Ok(())
    }

    // ---- reading the input -------------------------------------------------------------------------

    fn remaining(&self) -> usize {
        self.input.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes; `n` comes from the file, so it is compared with what is left before use.
    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8]> {
        let available = self.remaining();
        let truncated = PickleError::Truncated {
            what,
            pos: self.op_pos,
            needed: n,
            available,
        };
        let Some(end) = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
        else {
            return Err(truncated);
        };
        let bytes = self.input.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        for (o, &b) in out.iter_mut().zip(bytes) {
            *o = b;
        }
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(u8::from_le_bytes(self.fixed(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.fixed(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.fixed(what)?))
    }

    /// A signed 4-byte length (BINSTRING, LONG4); negative is malformed.
    fn i32_len(&mut self, what: &'static str) -> Result<u64> {
        let n = i32::from_le_bytes(self.fixed(what)?);
        u64::try_from(n).map_err(|_| self.malformed(what, format!("negative length {n}")))
    }

    /// A newline-terminated argument of the text opcodes (GLOBAL, PUT, GET, INT, LONG, FLOAT).
    fn line(&mut self, what: &'static str) -> Result<&'a str> {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let Some(len) = rest.iter().position(|&b| b == b'\n') else {
            return Err(PickleError::Truncated {
                what,
                pos: self.op_pos,
                needed: rest.len() as u64 + 1,
                available: rest.len(),
            });
        };
        let bytes = self.take(len as u64 + 1, what)?;
        let text = bytes.get(..len).unwrap_or_default();
        std::str::from_utf8(text)
            .map_err(|_| self.malformed(what, "argument is not UTF-8 text".into()))
    }

    fn memo_key(&mut self, what: &'static str) -> Result<u32> {
        let line = self.line(what)?;
        line.trim()
            .parse()
            .map_err(|_| self.malformed(what, format!("'{}' is not a memo index", shown(line))))
    }

    fn malformed(&self, what: &'static str, detail: String) -> PickleError {
        PickleError::Malformed {
            what,
            pos: self.op_pos,
            detail,
        }
    }

    // ---- arena and stack ---------------------------------------------------------------------------

    fn node(&self, id: Id) -> &Node<'a> {
        self.nodes.get(id).unwrap_or(&NONE_NODE)
    }

    fn alloc(&mut self, node: Node<'a>) -> Result<Id> {
        if self.nodes.len() >= self.max_nodes {
            return Err(PickleError::LimitExceeded {
                what: "objects",
                limit: self.max_nodes,
            });
        }
        let id = Id::try_from(self.nodes.len()).map_err(|_| PickleError::LimitExceeded {
            what: "objects",
            limit: self.max_nodes,
        })?;
        self.nodes.push(node);
        Ok(id)
    }

    fn push(&mut self, id: Id) -> Result<()> {
        if self.stack.len() + self.marks.len() >= self.limits.max_stack {
            return Err(PickleError::LimitExceeded {
                what: "stack depth",
                limit: self.limits.max_stack,
            });
        }
        self.stack.push(id);
        Ok(())
    }

    fn push_new(&mut self, node: Node<'a>) -> Result<()> {
        let id = self.alloc(node)?;
        self.push(id)
    }

    fn push_int(&mut self, v: i64) -> Result<()> {
        match u8::try_from(v) {
            Ok(small) => self.push(SMALL_INT + Id::from(small)),
            Err(_) => self.push_new(Node::Int(v)),
        }
    }

    /// The lowest stack index the current opcode may touch: items below the last MARK belong to an
    /// enclosing construct (Python keeps them on a separate "metastack").
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn underflow(&self, needed: usize) -> PickleError {
        PickleError::StackUnderflow {
            opcode: op_name(self.op),
            pos: self.op_pos,
            needed,
        }
    }

    fn pop(&mut self) -> Result<Id> {
        if self.stack.len() <= self.floor() {
            return Err(self.underflow(1));
        }
        self.stack.pop().ok_or_else(|| self.underflow(1))
    }

    fn top(&self) -> Result<Id> {
        if self.stack.len() <= self.floor() {
            return Err(self.underflow(1));
        }
        self.stack.last().copied().ok_or_else(|| self.underflow(1))
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Id>> {
        if self.stack.len() < self.floor() + n {
            return Err(self.underflow(n));
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    /// Everything pushed since the last MARK, which is closed.
    fn pop_mark(&mut self) -> Result<Vec<Id>> {
        let mark = self.marks.pop().ok_or(PickleError::MissingMark {
            opcode: op_name(self.op),
            pos: self.op_pos,
        })?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn wrong_type(&self, expected: &'static str, found: Id) -> PickleError {
        PickleError::WrongType {
            opcode: op_name(self.op),
            pos: self.op_pos,
            expected,
            found: self.node(found).type_name(),
        }
    }

    fn memo_put(&mut self, key: u32) -> Result<()> {
        let top = self.top()?;
        if self.memo.len() >= self.limits.max_memo && !self.memo.contains_key(&key) {
            return Err(PickleError::LimitExceeded {
                what: "memo entries",
                limit: self.limits.max_memo,
            });
        }
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<()> {
        let id = *self.memo.get(&key).ok_or(PickleError::MissingMemo {
            key: key.into(),
            pos: self.op_pos,
        })?;
        self.push(id)
    }

    // ---- the interpreter ---------------------------------------------------------------------------

    /// Runs until STOP and returns the object it leaves.
    fn run(&mut self) -> Result<Id> {
        loop {
            self.op_pos = self.pos;
            let Some(&op) = self.input.get(self.pos) else {
                return Err(PickleError::MissingStop { pos: self.pos });
            };
            self.pos += 1;
            self.op = op;
            match op {
                b'.' => return self.pop(),
                0x80 => {
                    let version = self.u8("PROTO")?;
                    if version > 5 {
                        return Err(PickleError::UnsupportedProtocol(version));
                    }
                    self.protocol = version;
                }
                0x95 => {
                    // FRAME only groups opcodes for buffered reading; its length is checked, not used.
                    let len = self.u64("FRAME")?;
                    if len > self.remaining() as u64 {
                        return Err(PickleError::Truncated {
                            what: "FRAME",
                            pos: self.op_pos,
                            needed: len,
                            available: self.remaining(),
                        });
                    }
                }
                b'(' => {
                    if self.stack.len() + self.marks.len() >= self.limits.max_stack {
                        return Err(PickleError::LimitExceeded {
                            what: "stack depth",
                            limit: self.limits.max_stack,
                        });
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    if self.stack.len() > self.floor() {
                        self.pop()?;
                    } else {
                        self.pop_mark()?; // Python pops the mark when nothing follows it.
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?;
                    self.push(top)?;
                }

                // Scalars.
                b'N' => self.push(NONE_ID)?,
                0x88 => self.push(TRUE_ID)?,
                0x89 => self.push(FALSE_ID)?,
                b'J' => {
                    let v = i32::from_le_bytes(self.fixed("BININT")?);
                    self.push_int(v.into())?;
                }
                b'K' => {
                    let v = self.u8("BININT1")?;
                    self.push_int(v.into())?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.fixed("BININT2")?);
                    self.push_int(v.into())?;
                }
                0x8a => {
                    let n = self.u8("LONG1")?;
                    let bytes = self.take(n.into(), "LONG1")?;
                    self.push_long(bytes)?;
                }
                0x8b => {
                    let n = self.i32_len("LONG4")?;
                    let bytes = self.take(n, "LONG4")?;
                    self.push_long(bytes)?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.fixed("BINFLOAT")?);
                    self.push_new(Node::Float(v))?;
                }
                b'I' => {
                    let line = self.line("INT")?;
                    match line {
                        "00" => self.push(FALSE_ID)?,
                        "01" => self.push(TRUE_ID)?,
                        _ => {
                            let v = line.trim().parse().map_err(|_| {
                                self.malformed(
                                    "INT",
                                    format!(
                                        "'{}' is not an integer that fits 64 bits",
                                        shown(line)
                                    ),
                                )
                            })?;
                            self.push_int(v)?;
                        }
                    }
                }
                b'L' => {
                    let line = self.line("LONG")?;
                    let v = line.trim().trim_end_matches('L').parse().map_err(|_| {
                        self.malformed(
                            "LONG",
                            format!("'{}' is not an integer that fits 64 bits", shown(line)),
                        )
                    })?;
                    self.push_int(v)?;
                }
                b'F' => {
                    let line = self.line("FLOAT")?;
                    let v = line.trim().parse().map_err(|_| {
                        self.malformed("FLOAT", format!("'{}' is not a float", shown(line)))
                    })?;
                    self.push_new(Node::Float(v))?;
                }

                // Strings and bytes.
                b'X' => {
                    let n = self.u32("BINUNICODE")?;
                    self.push_str(n.into(), "BINUNICODE")?;
                }
                0x8c => {
                    let n = self.u8("SHORT_BINUNICODE")?;
                    self.push_str(n.into(), "SHORT_BINUNICODE")?;
                }
                0x8d => {
                    let n = self.u64("BINUNICODE8")?;
                    self.push_str(n, "BINUNICODE8")?;
                }
                b'T' => {
                    // A Python 2 `str`: bytes (numpy's raw data under Python 2).
                    let n = self.i32_len("BINSTRING")?;
                    self.push_bytes(n, "BINSTRING")?;
                }
                b'U' => {
                    let n = self.u8("SHORT_BINSTRING")?;
                    self.push_bytes(n.into(), "SHORT_BINSTRING")?;
                }
                b'B' => {
                    let n = self.u32("BINBYTES")?;
                    self.push_bytes(n.into(), "BINBYTES")?;
                }
                b'C' => {
                    let n = self.u8("SHORT_BINBYTES")?;
                    self.push_bytes(n.into(), "SHORT_BINBYTES")?;
                }
                0x8e => {
                    let n = self.u64("BINBYTES8")?;
                    self.push_bytes(n, "BINBYTES8")?;
                }
                0x96 => {
                    let n = self.u64("BYTEARRAY8")?;
                    self.push_bytes(n, "BYTEARRAY8")?;
                }
                0x97 => return Err(PickleError::OutOfBandBuffer { pos: self.op_pos }),
                0x98 => {
                    // READONLY_BUFFER marks the buffer on top as read-only; everything here already is.
                    self.top()?;
                }

                // Containers.
                b')' => self.push(EMPTY_TUPLE_ID)?,
                0x85..=0x87 => {
                    let items = self.pop_n(usize::from(op - 0x84))?;
                    self.push_new(Node::Tuple(items))?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_new(Node::Tuple(items))?;
                }
                b']' => self.push_new(Node::List(Vec::new()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push_new(Node::List(items))?;
                }
                b'}' => self.push_new(Node::Dict(Vec::new()))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(&items)?;
                    self.push_new(Node::Dict(pairs))?;
                }
                0x8f => self.push_new(Node::Set(Vec::new()))?,
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push_new(Node::Set(items))?;
                }
                b'a' => {
                    let item = self.pop()?;
                    self.extend_list(&[item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.extend_list(&items)?;
                }
                b's' => {
                    let items = self.pop_n(2)?;
                    self.extend_dict(&items)?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.extend_dict(&items)?;
                }
                0x90 => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    match self.nodes.get_mut(target) {
                        Some(Node::Set(set)) => set.extend(items),
                        _ => return Err(self.wrong_type("a set", target)),
                    }
                }

                // Memo.
                b'p' => {
                    let key = self.memo_key("PUT")?;
                    self.memo_put(key)?;
                }
                b'q' => {
                    let key = self.u8("BINPUT")?;
                    self.memo_put(key.into())?;
                }
                b'r' => {
                    let key = self.u32("LONG_BINPUT")?;
                    self.memo_put(key)?;
                }
                0x94 => {
                    // The memo never holds more than `max_memo` (< u32::MAX) entries.
                    let key = u32::try_from(self.memo.len()).unwrap_or(u32::MAX);
                    self.memo_put(key)?;
                }
                b'g' => {
                    let key = self.memo_key("GET")?;
                    self.memo_get(key)?;
                }
                b'h' => {
                    let key = self.u8("BINGET")?;
                    self.memo_get(key.into())?;
                }
                b'j' => {
                    let key = self.u32("LONG_BINGET")?;
                    self.memo_get(key)?;
                }

                // Globals and calls: only the allow-list, each implemented here as plain data.
                b'c' => {
                    let module = self.line("GLOBAL")?;
                    let name = self.line("GLOBAL")?;
                    let id = self.resolve(module, name)?;
                    self.push(id)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let id = match (self.node(module), self.node(name)) {
                        (Node::Str(m), Node::Str(n)) => {
                            let (m, n) = (m.clone(), n.clone());
                            self.resolve(&m, &n)?
                        }
                        (Node::Str(_), _) => return Err(self.wrong_type("a name string", name)),
                        _ => return Err(self.wrong_type("a module string", module)),
                    };
                    self.push(id)?;
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let result = self.call(callable, args)?;
                    self.push(result)?;
                }
                0x92 => {
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    if !matches!(self.node(kwargs), Node::Dict(d) if d.is_empty()) {
                        return Err(self.wrong_type("no keyword arguments", kwargs));
                    }
                    let result = self.call(callable, args)?;
                    self.push(result)?;
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    self.build(target, state)?;
                }

                b'P' | b'Q' => {
                    return Err(self.unsupported(
                        "persistent ids need the writer's own loader (torch files use them)",
                    ));
                }
                b'i' | b'o' => return Err(self.unsupported("it creates arbitrary class instances")),
                0x82..=0x84 => {
                    return Err(self.unsupported("the copyreg extension registry is not available"));
                }
                b'S' | b'V' => return Err(self.unsupported(
                    "protocol-0 quoted strings are not supported; re-save with protocol 2 or later",
                )),
                _ => {
                    return Err(PickleError::UnknownOpcode {
                        op,
                        pos: self.op_pos,
                    });
                }
            }
        }
    }

    fn unsupported(&self, why: &'static str) -> PickleError {
        PickleError::UnsupportedOpcode {
            op: self.op,
            name: op_name(self.op),
            pos: self.op_pos,
            why,
        }
    }

    fn push_str(&mut self, n: u64, what: &'static str) -> Result<()> {
        let bytes = self.take(n, what)?;
        // Python writes strings with 'surrogatepass', so a lone surrogate can occur; keep going with a
        // replacement character rather than reject a whole data file over one odd character.
        let text = String::from_utf8_lossy(bytes);
        self.push_new(Node::Str(text))
    }

    fn push_bytes(&mut self, n: u64, what: &'static str) -> Result<()> {
        let bytes = self.take(n, what)?;
        self.push_new(Node::Bytes(Cow::Borrowed(bytes)))
    }

    /// Python `int` from LONG1/LONG4's little-endian two's complement.
    fn push_long(&mut self, bytes: &'a [u8]) -> Result<()> {
        let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
        let fill = if negative { 0xff } else { 0x00 };
        // It fits an i64 when every byte past the eighth is sign extension of the eighth.
        let (low, high) = bytes.split_at(bytes.len().min(8));
        let eighth_sign = low.get(7).map(|&b| b & 0x80 != 0);
        let fits =
            high.is_empty() || (high.iter().all(|&b| b == fill) && eighth_sign == Some(negative));
        if !fits {
            return self.push_new(Node::BigInt(bytes));
        }
        let mut word = [fill; 8];
        for (w, &b) in word.iter_mut().zip(low) {
            *w = b;
        }
        self.push_int(i64::from_le_bytes(word))
    }

    fn pairs(&self, items: &[Id]) -> Result<Vec<(Id, Id)>> {
        if !items.len().is_multiple_of(2) {
            return Err(self.malformed(
                op_name(self.op),
                format!("odd number of items ({}) for key/value pairs", items.len()),
            ));
        }
        Ok(items
            .chunks_exact(2)
            .filter_map(|kv| Some((*kv.first()?, *kv.get(1)?)))
            .collect())
    }

    fn extend_list(&mut self, items: &[Id]) -> Result<()> {
        let target = self.top()?;
        match self.nodes.get_mut(target) {
            Some(Node::List(list)) => {
                list.extend_from_slice(items);
                Ok(())
            }
            _ => Err(self.wrong_type("a list", target)),
        }
    }

    fn extend_dict(&mut self, items: &[Id]) -> Result<()> {
        let pairs = self.pairs(items)?;
        let target = self.top()?;
        match self.nodes.get_mut(target) {
            Some(Node::Dict(dict)) => {
                dict.extend(pairs);
                Ok(())
            }
            _ => Err(self.wrong_type("a dict", target)),
        }
    }

    fn resolve(&mut self, module: &str, name: &str) -> Result<Id> {
        match ALLOWED
            .iter()
            .position(|(g, _)| g.module == module && g.name == name)
        {
            Some(index) => self.alloc(Node::Global(index as u8)),
            None => Err(PickleError::ForbiddenGlobal {
                module: shown(module),
                name: shown(name),
            }),
        }
    }

    // ---- calls ------------------------------------------------------------------------------------

    /// A `str`, or a Python 2 byte string read as Latin-1 (dtype codes and byte orders in old files).
    fn text(&self, id: Id) -> Option<Cow<'a, str>> {
        match self.node(id) {
            Node::Str(s) => Some(s.clone()),
            Node::Bytes(b) if b.len() <= 64 => {
                Some(Cow::Owned(b.iter().map(|&c| char::from(c)).collect()))
            }
            _ => None,
        }
    }

    fn int(&self, id: Id) -> Option<i64> {
        match self.node(id) {
            Node::Int(v) => Some(*v),
            Node::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    fn bytes(&self, id: Id) -> Option<&[u8]> {
        match self.node(id) {
            Node::Bytes(b) => Some(b),
            _ => None,
        }
    }

    fn bad_call(&self, callable: Callable, reason: impl Into<String>) -> PickleError {
        let name = ALLOWED
            .iter()
            .find(|(_, c)| *c == callable)
            .map_or_else(String::new, |(g, _)| g.to_string());
        PickleError::BadCall {
            callable: name,
            pos: self.op_pos,
            reason: reason.into(),
        }
    }

    fn call(&mut self, callable: Id, args: Id) -> Result<Id> {
        let function = match self.node(callable) {
            Node::Global(index) => ALLOWED.get(usize::from(*index)).map(|(_, f)| *f),
            _ => None,
        };
        let Some(function) = function else {
            return Err(self.wrong_type("an allow-listed callable", callable));
        };
        let Node::Tuple(all_args) = self.node(args) else {
            return Err(self.wrong_type("an argument tuple", args));
        };
        // No allow-listed function takes more than four arguments: copy those, never the whole tuple
        // (a hostile stream could pass one huge memoized tuple to many calls).
        if all_args.len() > 4 {
            return Err(self.bad_call(function, format!("too many arguments ({})", all_args.len())));
        }
        let args: Vec<Id> = all_args.clone();
        match function {
            Callable::Reconstruct => {
                // numpy passes (ndarray, (0,), b'b'); the real shape and dtype arrive with BUILD.
                let is_ndarray = |me: &Self, id: Id| match me.node(id) {
                    Node::Global(i) => {
                        ALLOWED.get(usize::from(*i)).map(|(_, c)| *c) == Some(Callable::NdArrayType)
                    }
                    _ => false,
                };
                if !args.first().is_some_and(|&a| is_ndarray(self, a)) {
                    return Err(self.bad_call(
                        function,
                        "the first argument must be numpy.ndarray (subclasses are not supported)",
                    ));
                }
                let placeholder = numpy::parse_dtype_spec("i1")?;
                self.alloc(Node::Array(Box::new(ArrayNode {
                    shape: vec![0],
                    dtype: placeholder,
                    data: ArrayStore::Plain(ArrayData::I64(Vec::new())),
                })))
            }
            Callable::NdArrayType => Err(self.bad_call(
                function,
                "only usable as the first argument of _reconstruct",
            )),
            Callable::Dtype => {
                let first = args.first().copied().unwrap_or(NONE_ID);
                let dtype = match (self.text(first), self.node(first)) {
                    (Some(spec), _) => numpy::parse_dtype_spec(&spec)?,
                    (None, Node::Dtype(d)) => *d,
                    _ => return Err(self.bad_call(function, "expects a dtype string such as 'f4'")),
                };
                self.alloc(Node::Dtype(dtype))
            }
            Callable::Scalar => {
                let [dtype, payload] = args.as_slice() else {
                    return Err(self.bad_call(function, "expects (dtype, value)"));
                };
                let Node::Dtype(dtype) = self.node(*dtype) else {
                    return Err(self.bad_call(function, "the first argument must be a dtype"));
                };
                let dtype = *dtype;
                if dtype.kind == DTypeKind::Object {
                    return Ok(*payload); // An object scalar is the object itself.
                }
                let raw = self
                    .bytes(*payload)
                    .ok_or_else(|| self.bad_call(function, "the value must be bytes"))?;
                let element = numpy::decode_elements(&dtype, 1, raw, self.op_pos)?;
                let node = scalar_node(element);
                self.alloc(node)
            }
            Callable::FromBuffer => self.call_frombuffer(&args),
            Callable::CodecsEncode => {
                let text = match args.first().map(|&a| self.node(a)) {
                    Some(Node::Str(s)) => s.clone(),
                    _ => return Err(self.bad_call(function, "the first argument must be a str")),
                };
                let encoding = match args.get(1) {
                    Some(&e) => self
                        .text(e)
                        .ok_or_else(|| self.bad_call(function, "the encoding must be a str"))?,
                    None => Cow::Borrowed("utf-8"),
                };
                let bytes = self.encode(function, &text, &encoding)?;
                self.alloc(Node::Bytes(Cow::Owned(bytes)))
            }
            Callable::OrderedDict => {
                if !args.is_empty() {
                    return Err(self.bad_call(
                        function,
                        "only the empty constructor is supported (items follow with SETITEMS)",
                    ));
                }
                self.alloc(Node::Dict(Vec::new()))
            }
            Callable::ByteArray | Callable::Bytes => match args.as_slice() {
                [] => self.alloc(Node::Bytes(Cow::Borrowed(&[]))),
                // Bytes are never mutated here, so `bytearray(b)` can be `b` itself: no copy to pay for.
                [b] if matches!(self.node(*b), Node::Bytes(_)) => Ok(*b),
                [s, e] => {
                    let text = match self.node(*s) {
                        Node::Str(s) => s.clone(),
                        _ => return Err(self.bad_call(function, "expects (str, encoding)")),
                    };
                    let encoding = self
                        .text(*e)
                        .ok_or_else(|| self.bad_call(function, "the encoding must be a str"))?;
                    let bytes = self.encode(function, &text, &encoding)?;
                    self.alloc(Node::Bytes(Cow::Owned(bytes)))
                }
                _ => Err(self.bad_call(function, "expects no argument, bytes, or (str, encoding)")),
            },
            Callable::Set => {
                let source = match args.as_slice() {
                    [] => None,
                    [items] => Some(*items),
                    _ => return Err(self.bad_call(function, "expects one list of items")),
                };
                let items = match source.map(|id| self.node(id)) {
                    None => Vec::new(),
                    Some(Node::List(v) | Node::Tuple(v) | Node::Set(v)) => {
                        let v = v.clone();
                        self.charge(v.len() * size_of::<Id>())?;
                        v
                    }
                    Some(_) => return Err(self.bad_call(function, "expects a list of items")),
                };
                self.alloc(Node::Set(items))
            }
        }
    }

    /// `str.encode` for the encodings pickle writers use. Latin-1 is how protocol 2 carries bytes.
    fn encode(&mut self, function: Callable, text: &str, encoding: &str) -> Result<Vec<u8>> {
        self.charge(text.len())?;
        match encoding.to_ascii_lowercase().replace('_', "-").as_str() {
            "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "l1" => text
                .chars()
                .map(|c| u8::try_from(u32::from(c)).ok())
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| self.bad_call(function, "text has characters outside Latin-1")),
            "utf-8" | "utf8" => Ok(text.as_bytes().to_vec()),
            "ascii" if text.is_ascii() => Ok(text.as_bytes().to_vec()),
            other => {
                Err(self.bad_call(function, format!("unsupported encoding '{}'", shown(other))))
            }
        }
    }

    /// Protocol 5: `_frombuffer(buffer, dtype, shape, order)`.
    fn call_frombuffer(&mut self, args: &[Id]) -> Result<Id> {
        let function = Callable::FromBuffer;
        let [buffer, dtype, shape, order] = args else {
            return Err(self.bad_call(function, format!("expects 4 arguments, got {}", args.len())));
        };
        let Node::Dtype(dtype) = self.node(*dtype) else {
            return Err(self.bad_call(function, "the second argument must be a dtype"));
        };
        let dtype = *dtype;
        if dtype.kind == DTypeKind::Object {
            return Err(self.bad_call(function, "object arrays cannot come from a buffer"));
        }
        let shape = self.shape(*shape)?;
        let fortran = match self.text(*order).as_deref() {
            Some("C") => false,
            Some("F") => true,
            _ => return Err(self.bad_call(function, "order must be 'C' or 'F'")),
        };
        let buffer = *buffer;
        if self.bytes(buffer).is_none() {
            return Err(self.bad_call(function, "the buffer must be bytes"));
        }
        let data = self.array_store(&dtype, &shape, fortran, buffer)?;
        self.alloc(Node::Array(Box::new(ArrayNode { shape, dtype, data })))
    }

    /// A shape tuple: non-negative ints, at most numpy's maximum number of dimensions.
    fn shape(&self, id: Id) -> Result<Vec<usize>> {
        let bad = |reason: String| PickleError::BadArray {
            pos: self.op_pos,
            reason,
        };
        let (Node::Tuple(dims) | Node::List(dims)) = self.node(id) else {
            return Err(bad(format!(
                "the shape must be a tuple, found {}",
                self.node(id).type_name()
            )));
        };
        if dims.len() > numpy::MAX_DIMS {
            return Err(bad(format!(
                "{} dimensions (numpy allows {})",
                dims.len(),
                numpy::MAX_DIMS
            )));
        }
        dims.iter()
            .map(|&d| {
                let v = self
                    .int(d)
                    .ok_or_else(|| bad("shape entries must be ints".into()))?;
                usize::try_from(v).map_err(|_| bad(format!("negative dimension {v}")))
            })
            .collect()
    }

    /// The elements of an array from the bytes object `raw`: decoded, charging the result against the
    /// data budget first, or in [`Mode::View`] (float arrays only) checked and kept as they are.
    fn array_store(
        &mut self,
        dtype: &DType,
        shape: &[usize],
        fortran: bool,
        raw: Id,
    ) -> Result<ArrayStore<'a>> {
        let count = numpy::element_count(shape, self.op_pos)?;
        if self.mode == Mode::View && dtype.kind == DTypeKind::Float {
            // A slice of the input costs nothing; bytes the stream had to encode (protocol 2) are
            // copied, which is charged like any derived data.
            let owned_len = match self.node(raw) {
                Node::Bytes(b) => {
                    numpy::check_data_len(dtype, count, b, self.op_pos)?;
                    matches!(b, Cow::Owned(_)).then_some(b.len())
                }
                _ => {
                    return Err(PickleError::BadArray {
                        pos: self.op_pos,
                        reason: "array data must be bytes".into(),
                    });
                }
            };
            if let Some(len) = owned_len {
                self.charge(len)?;
            }
            let bytes = match self.node(raw) {
                Node::Bytes(b) => b.clone(),
                _ => Cow::Borrowed(&[][..]),
            };
            return Ok(ArrayStore::Raw { bytes, fortran });
        }
        let per_element = match dtype.kind {
            DTypeKind::Float => size_of::<f32>(),
            DTypeKind::Int | DTypeKind::UInt => size_of::<i64>(),
            DTypeKind::Bool => size_of::<bool>(),
            DTypeKind::Bytes | DTypeKind::Unicode => size_of::<String>() + dtype.itemsize,
            DTypeKind::Object => size_of::<Value>(),
        };
        // A Fortran-order array briefly exists twice while it is reordered.
        let copies = if fortran { 2 } else { 1 };
        // Only charge what the buffer can actually hold: a count the data cannot back fails below.
        let backed = count.min(self.bytes(raw).map_or(0, <[u8]>::len));
        self.charge(backed.saturating_mul(per_element).saturating_mul(copies))?;
        let data = numpy::decode_elements(
            dtype,
            count,
            self.bytes(raw).unwrap_or_default(),
            self.op_pos,
        )?;
        Ok(ArrayStore::Plain(if fortran {
            numpy::reorder_fortran(data, shape)
        } else {
            data
        }))
    }

    // ---- BUILD ------------------------------------------------------------------------------------

    fn build(&mut self, target: Id, state: Id) -> Result<()> {
        match self.node(target) {
            Node::Array(_) => self.build_array(target, state),
            Node::Dtype(_) => self.build_dtype(target, state),
            // An OrderedDict's instance __dict__: nothing to set in practice.
            Node::Dict(_)
                if matches!(self.node(state), Node::None)
                    || matches!(self.node(state), Node::Dict(d) if d.is_empty()) =>
            {
                Ok(())
            }
            _ => Err(self.wrong_type("a numpy array or dtype to BUILD", target)),
        }
    }

    /// `ndarray.__setstate__((version, shape, dtype, is_fortran, raw))`; the oldest format has no version.
    fn build_array(&mut self, target: Id, state: Id) -> Result<()> {
        let bad = |me: &Self, reason: &str| PickleError::BadArray {
            pos: me.op_pos,
            reason: reason.to_string(),
        };
        let Node::Tuple(items) = self.node(state) else {
            return Err(bad(self, "array state must be a tuple"));
        };
        let (shape, dtype, fortran, raw) = match items.as_slice() {
            [_, shape, dtype, fortran, raw] | [shape, dtype, fortran, raw] => {
                (*shape, *dtype, *fortran, *raw)
            }
            _ => return Err(bad(self, "array state must have 4 or 5 items")),
        };
        let shape = self.shape(shape)?;
        let Node::Dtype(dtype) = self.node(dtype) else {
            return Err(bad(self, "array state has no dtype"));
        };
        let dtype = *dtype;
        let fortran = self
            .int(fortran)
            .ok_or_else(|| bad(self, "is_fortran must be a bool"))?
            != 0;
        let data = if dtype.kind == DTypeKind::Object {
            let (Node::List(elements) | Node::Tuple(elements)) = self.node(raw) else {
                return Err(bad(self, "an object array's data must be a list"));
            };
            let count = numpy::element_count(&shape, self.op_pos)?;
            if elements.len() != count {
                return Err(PickleError::BadArray {
                    pos: self.op_pos,
                    reason: format!(
                        "shape {shape:?} needs {count} objects, found {}",
                        elements.len()
                    ),
                });
            }
            let elements = elements.clone();
            self.charge(elements.len() * size_of::<Id>())?;
            ArrayStore::Objects(elements)
        } else {
            if self.bytes(raw).is_none() {
                return Err(bad(self, "array data must be bytes"));
            }
            self.array_store(&dtype, &shape, fortran, raw)?
        };
        if let Some(node) = self.nodes.get_mut(target) {
            *node = Node::Array(Box::new(ArrayNode { shape, dtype, data }));
        }
        Ok(())
    }

    /// `dtype.__setstate__((3, '<', None, None, None, elsize, alignment, flags[, metadata]))`.
    fn build_dtype(&mut self, target: Id, state: Id) -> Result<()> {
        let Node::Dtype(mut dtype) = *self.node(target) else {
            return Err(self.wrong_type("a dtype", target));
        };
        let unsupported = |reason| PickleError::UnsupportedDtype {
            dtype: dtype.to_string(),
            reason,
        };
        let Node::Tuple(items) = self.node(state) else {
            return Err(unsupported("dtype state must be a tuple"));
        };
        if !(8..=9).contains(&items.len()) {
            return Err(unsupported(
                "only dtype state versions 3 and 4 (numpy >= 1.0) are supported",
            ));
        }
        let item = |i: usize| items.get(i).copied().unwrap_or(NONE_ID);
        let byte_order = self
            .text(item(1))
            .ok_or_else(|| unsupported("byte order must be a string"))?;
        let structured = (2..=4).any(|i| !matches!(self.node(item(i)), Node::None));
        let elsize = self
            .int(item(5))
            .ok_or_else(|| unsupported("element size must be an int"))?;
        numpy::apply_dtype_state(
            &mut dtype,
            DtypeState {
                byte_order: &byte_order,
                structured,
                elsize,
            },
        )?;
        if let Some(node) = self.nodes.get_mut(target) {
            *node = Node::Dtype(dtype);
        }
        Ok(())
    }

    // ---- turning the arena into the result ---------------------------------------------------------

    /// Builds the owned tree, and the buffers its [`ArrayData::Raw`] arrays refer to. Objects reached
    /// once are moved; objects reached several times (through GET/DUP) are copied on every visit but
    /// the last, against the data budget.
    fn build_value(&mut self, root: Id) -> Result<(Value, Vec<Cow<'a, [u8]>>)> {
        let mut remaining = self.count_references(root);
        let mut convert = Convert {
            remaining: &mut remaining,
            budget: self.budget,
            budget_total: self.budget_total,
            max_depth: self.limits.max_depth,
            buffers: Vec::new(),
        };
        let value = convert.value(&mut self.nodes, root, 0, false)?;
        Ok((value, convert.buffers))
    }

    /// In-degree of every object reachable from `root` (plus one for the root itself); zero means
    /// not reached yet, so the same vector doubles as the "seen" set of this iterative walk.
    fn count_references(&self, root: Id) -> Vec<u32> {
        let mut refs = vec![0u32; self.nodes.len()];
        let mut pending = Vec::new();
        if let Some(r) = refs.get_mut(root as usize) {
            *r = 1;
            pending.push(root);
        }
        while let Some(id) = pending.pop() {
            let node = self.node(id);
            let dict_children = match node {
                Node::Dict(pairs) => pairs.as_slice(),
                _ => &[],
            };
            let children = node
                .children()
                .iter()
                .copied()
                .chain(dict_children.iter().flat_map(|&(k, v)| [k, v]));
            for child in children {
                if let Some(r) = refs.get_mut(child as usize) {
                    if *r == 0 {
                        pending.push(child);
                    }
                    *r = r.saturating_add(1);
                }
            }
        }
        refs
    }
}

fn scalar_node<'a>(data: ArrayData) -> Node<'a> {
    match data {
        ArrayData::F32(v) => Node::Float(v.first().copied().map_or(0.0, f64::from)),
        ArrayData::I64(v) => Node::Int(v.first().copied().unwrap_or(0)),
        ArrayData::Bool(v) => Node::Bool(v.first().copied().unwrap_or(false)),
        ArrayData::Bytes(mut v) => Node::Bytes(Cow::Owned(v.pop().unwrap_or_default())),
        ArrayData::Str(mut v) => Node::Str(Cow::Owned(v.pop().unwrap_or_default())),
        ArrayData::Object(_) | ArrayData::Raw(_) => Node::None,
    }
}

/// State of the arena-to-tree conversion.
struct Convert<'r, 'a> {
    /// Moving visits left per object; the last one moves instead of copying.
    remaining: &'r mut [u32],
    budget: usize,
    budget_total: usize,
    max_depth: usize,
    /// The elements of the [`ArrayData::Raw`] arrays built so far: one entry per array in the tree
    /// (a copied array gets its own entry), so each is referred to exactly once.
    buffers: Vec<Cow<'a, [u8]>>,
}

impl<'a> Convert<'_, 'a> {
    fn charge(&mut self, bytes: usize) -> Result<()> {
        self.budget = self
            .budget
            .checked_sub(bytes)
            .ok_or(PickleError::LimitExceeded {
                what: "data derived from the input (bytes)",
                limit: self.budget_total,
            })?;
        Ok(())
    }

    /// Converts object `id`. `copying` is set below an object that is being copied: everything under
    /// it is copied too and the visit counts are left alone, since they count moving visits only
    /// (each edge of the object graph is walked exactly once in moving mode).
    fn value(
        &mut self,
        nodes: &mut Arena<'a>,
        id: Id,
        depth: usize,
        copying: bool,
    ) -> Result<Value> {
        if depth > self.max_depth {
            return Err(PickleError::TooDeep {
                limit: self.max_depth,
            });
        }
        let last_visit = !copying
            && self.remaining.get_mut(id as usize).is_some_and(|r| {
                *r = r.saturating_sub(1);
                *r == 0
            });
        let copying = !last_visit;
        let Some(slot) = nodes.get_mut(id) else {
            return Ok(Value::None);
        };
        let node = if copying {
            // Only heap payloads cost anything extra; scalars are copied for free.
            let payload = match &*slot {
                Node::Str(s) => s.len(),
                Node::Bytes(b) => b.len(),
                Node::BigInt(b) => b.len(),
                Node::List(v) | Node::Tuple(v) | Node::Set(v) => v.len() * size_of::<Value>(),
                Node::Dict(p) => p.len() * 2 * size_of::<Value>(),
                Node::Array(a) => array_bytes(a),
                _ => 0,
            };
            self.charge(payload)?;
            copy_node(slot)
        } else {
            std::mem::replace(slot, Node::Taken)
        };
        let depth = depth + 1;
        Ok(match node {
            Node::None => Value::None,
            Node::Bool(b) => Value::Bool(b),
            Node::Int(v) => Value::Int(v),
            Node::BigInt(b) => Value::BigInt(b.to_vec()),
            Node::Float(v) => Value::Float(v),
            Node::Str(s) => Value::Str(s.into_owned()),
            Node::Bytes(b) => Value::Bytes(b.into_owned()),
            Node::List(v) => Value::List(self.values(nodes, &v, depth, copying)?),
            Node::Tuple(v) => Value::Tuple(self.values(nodes, &v, depth, copying)?),
            Node::Set(v) => Value::Set(self.values(nodes, &v, depth, copying)?),
            Node::Dict(pairs) => {
                let mut out = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    out.push((
                        self.value(nodes, k, depth, copying)?,
                        self.value(nodes, v, depth, copying)?,
                    ));
                }
                Value::Dict(out)
            }
            Node::Global(i) => match ALLOWED.get(usize::from(i)) {
                Some((name, _)) => Value::Global(name),
                None => Value::None,
            },
            Node::Dtype(d) => Value::Dtype(d),
            Node::Array(array) => {
                let ArrayNode { shape, dtype, data } = *array;
                let data = match data {
                    ArrayStore::Plain(d) => d,
                    ArrayStore::Objects(v) => {
                        ArrayData::Object(self.values(nodes, &v, depth, copying)?)
                    }
                    ArrayStore::Raw { bytes, fortran } => {
                        let len = bytes.len().checked_div(dtype.itemsize).unwrap_or(0);
                        self.buffers.push(bytes);
                        ArrayData::Raw(RawBuffer {
                            index: self.buffers.len() - 1,
                            len,
                            fortran_order: fortran,
                        })
                    }
                };
                Value::NdArray(Box::new(NdArray { shape, dtype, data }))
            }
            Node::Taken => {
                // Only reachable if the visit counts were wrong; report it rather than guess.
                return Err(PickleError::Malformed {
                    what: "object graph",
                    pos: 0,
                    detail: "object used after being moved".into(),
                });
            }
        })
    }

    fn values(
        &mut self,
        nodes: &mut Arena<'a>,
        ids: &[Id],
        depth: usize,
        copying: bool,
    ) -> Result<Vec<Value>> {
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            out.push(self.value(nodes, id, depth, copying)?);
        }
        Ok(out)
    }
}

fn copy_node<'a>(node: &Node<'a>) -> Node<'a> {
    match node {
        Node::None => Node::None,
        Node::Bool(b) => Node::Bool(*b),
        Node::Int(v) => Node::Int(*v),
        Node::BigInt(b) => Node::BigInt(b),
        Node::Float(v) => Node::Float(*v),
        Node::Str(s) => Node::Str(s.clone()),
        Node::Bytes(b) => Node::Bytes(b.clone()),
        Node::List(v) => Node::List(v.clone()),
        Node::Tuple(v) => Node::Tuple(v.clone()),
        Node::Set(v) => Node::Set(v.clone()),
        Node::Dict(p) => Node::Dict(p.clone()),
        Node::Global(i) => Node::Global(*i),
        Node::Dtype(d) => Node::Dtype(*d),
        Node::Array(a) => Node::Array(Box::new(ArrayNode {
            shape: a.shape.clone(),
            dtype: a.dtype,
            data: match &a.data {
                ArrayStore::Plain(d) => ArrayStore::Plain(d.clone()),
                ArrayStore::Objects(v) => ArrayStore::Objects(v.clone()),
                ArrayStore::Raw { bytes, fortran } => ArrayStore::Raw {
                    bytes: bytes.clone(),
                    fortran: *fortran,
                },
            },
        })),
        Node::Taken => Node::Taken,
    }
}

fn array_bytes(array: &ArrayNode<'_>) -> usize {
    match &array.data {
        ArrayStore::Plain(ArrayData::F32(v)) => v.len() * size_of::<f32>(),
        ArrayStore::Plain(ArrayData::I64(v)) => v.len() * size_of::<i64>(),
        ArrayStore::Plain(ArrayData::Bool(v)) => v.len(),
        ArrayStore::Plain(ArrayData::Bytes(v)) => {
            v.iter().map(|b| b.len() + size_of::<Vec<u8>>()).sum()
        }
        ArrayStore::Plain(ArrayData::Str(v)) => {
            v.iter().map(|s| s.len() + size_of::<String>()).sum()
        }
        ArrayStore::Plain(ArrayData::Object(v)) => v.len() * size_of::<Value>(),
        ArrayStore::Plain(ArrayData::Raw(_)) => 0, // Never stored in the arena.
        ArrayStore::Objects(v) => v.len() * (size_of::<Value>() + size_of::<Id>()),
        // A borrowed slice is free to copy (its buffer entry is not); owned bytes are copied.
        ArrayStore::Raw { bytes, .. } => {
            size_of::<Cow<'_, [u8]>>()
                + match bytes {
                    Cow::Borrowed(_) => 0,
                    Cow::Owned(v) => v.len(),
                }
        }
    }
}
