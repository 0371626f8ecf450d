//! The objects a running stream creates, kept in a flat arena and referred to by [`Id`].

use std::borrow::Cow;

use super::{ArrayData, DType};

/// An object's index in the [`Arena`]; the stack and the memo hold these, never objects.
pub(super) type Id = u32;

/// An arena object. Strings and bytes borrow from the input where they can.
#[derive(Debug)]
pub(super) enum Node<'a> {
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
    /// Index into [`super::globals::ALLOWED`].
    Global(u8),
    Dtype(DType),
    Array(Box<ArrayNode<'a>>),
    /// Left behind when an object has been moved into the result tree.
    Taken,
}

#[derive(Debug)]
pub(super) struct ArrayNode<'a> {
    pub(super) shape: Vec<usize>,
    pub(super) dtype: DType,
    pub(super) data: ArrayStore<'a>,
}

#[derive(Debug)]
pub(super) enum ArrayStore<'a> {
    Plain(ArrayData),
    /// Elements of an object array, still as arena objects.
    Objects(Vec<Id>),
    /// [`super::machine::Mode::View`]: the float elements as the stream stored them (length already
    /// checked).
    Raw {
        bytes: Cow<'a, [u8]>,
        fortran: bool,
    },
}

impl Node<'_> {
    /// The Python type name, for messages.
    pub(super) fn type_name(&self) -> &'static str {
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

    /// The objects this one refers to, except a dict's (which are pairs).
    pub(super) fn children(&self) -> &[Id] {
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

/// What an [`Id`] outside the arena reads as, so that lookups need not fail.
pub(super) static NONE_NODE: Node<'static> = Node::None;

// Immutable singletons, created once so that the commonest scalars do not grow the arena: Python's
// NONE/NEWTRUE/NEWFALSE/EMPTY_TUPLE, and the small ints of BININT1 (ids `SMALL_INT..SMALL_INT + 256`).
pub(super) const NONE_ID: Id = 0;
pub(super) const TRUE_ID: Id = 1;
pub(super) const FALSE_ID: Id = 2;
pub(super) const EMPTY_TUPLE_ID: Id = 3;
pub(super) const SMALL_INT: Id = 4;

/// Objects are stored in fixed-size chunks: unlike one growing `Vec`, the arena never holds twice the
/// memory it uses, which keeps the worst-case memory per input byte low.
pub(super) struct Arena<'a> {
    chunks: Vec<Vec<Node<'a>>>,
    len: usize,
}

const CHUNK: usize = 1024;

impl<'a> Arena<'a> {
    /// An arena holding the singletons, at the ids the `*_ID` constants and [`SMALL_INT`] give them.
    pub(super) fn with_singletons() -> Self {
        let mut arena = Arena { chunks: Vec::new(), len: 0 };
        for node in [Node::None, Node::Bool(true), Node::Bool(false), Node::Tuple(Vec::new())] {
            arena.push(node);
        }
        for v in 0..=255 {
            arena.push(Node::Int(v));
        }
        arena
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn push(&mut self, node: Node<'a>) {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(node);
            self.len += 1;
        }
    }

    pub(super) fn get(&self, id: Id) -> Option<&Node<'a>> {
        let id = id as usize;
        self.chunks.get(id / CHUNK)?.get(id % CHUNK)
    }

    pub(super) fn get_mut(&mut self, id: Id) -> Option<&mut Node<'a>> {
        let id = id as usize;
        self.chunks.get_mut(id / CHUNK)?.get_mut(id % CHUNK)
    }
}
