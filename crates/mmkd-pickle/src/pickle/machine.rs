//! The stack machine's state, and the primitives every opcode is built from: allocating objects,
//! pushing and popping within the current MARK, and the errors that name the current opcode.
//!
//! The opcodes themselves are in [`super::interpreter`] (the loop and most opcodes),
//! [`super::memo`], [`super::calls`] and [`super::arrays`]; reading their operands is in
//! [`super::operands`].

use std::borrow::Cow;
use std::collections::HashMap;

use super::arena::{Arena, Id, NONE_NODE, Node, SMALL_INT};
use super::limits::{Budget, Limits};
use super::{PickleError, Result, opcodes};

pub(super) struct Machine<'a> {
    pub(super) input: &'a [u8],
    /// Next byte to read; always `<= input.len()`.
    pub(super) pos: usize,
    /// Where the current opcode started, for messages.
    pub(super) op_pos: usize,
    pub(super) op: u8,
    pub(super) nodes: Arena<'a>,
    pub(super) max_nodes: usize,
    pub(super) stack: Vec<Id>,
    /// Stack heights at each open MARK.
    pub(super) marks: Vec<usize>,
    pub(super) memo: HashMap<u32, Id>,
    pub(super) protocol: u8,
    pub(super) budget: Budget,
    pub(super) limits: Limits,
    pub(super) mode: Mode,
}

impl<'a> Machine<'a> {
    pub(super) fn new(input: &'a [u8], limits: Limits, mode: Mode) -> Self {
        Machine {
            input,
            pos: 0,
            op_pos: 0,
            op: 0,
            max_nodes: limits.max_nodes.min(input.len() / 2 + 4096),
            nodes: Arena::with_singletons(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            protocol: 0,
            budget: Budget::new(input.len(), &limits),
            limits,
            mode,
        }
    }

    /// Reserves `bytes` of derived data against the budget, before allocating it.
    pub(super) fn charge(&mut self, bytes: usize) -> Result<()> {
        self.budget.charge(bytes)
    }

    // ---- the arena ---------------------------------------------------------------------------------

    pub(super) fn node(&self, id: Id) -> &Node<'a> {
        self.nodes.get(id).unwrap_or(&NONE_NODE)
    }

    pub(super) fn alloc(&mut self, node: Node<'a>) -> Result<Id> {
        if self.nodes.len() >= self.max_nodes {
            return Err(PickleError::LimitExceeded { what: "objects", limit: self.max_nodes });
        }
        let id = Id::try_from(self.nodes.len()).map_err(|_| PickleError::LimitExceeded { what: "objects", limit: self.max_nodes })?;
        self.nodes.push(node);
        Ok(id)
    }

    /// A `str`, or a Python 2 byte string read as Latin-1 (dtype codes and byte orders in old files).
    pub(super) fn text(&self, id: Id) -> Option<Cow<'a, str>> {
        match self.node(id) {
            Node::Str(s) => Some(s.clone()),
            Node::Bytes(b) if b.len() <= 64 => Some(Cow::Owned(b.iter().map(|&c| char::from(c)).collect())),
            _ => None,
        }
    }

    /// An `int` or `bool`.
    pub(super) fn int(&self, id: Id) -> Option<i64> {
        match self.node(id) {
            Node::Int(v) => Some(*v),
            Node::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    pub(super) fn bytes(&self, id: Id) -> Option<&[u8]> {
        match self.node(id) {
            Node::Bytes(b) => Some(b),
            _ => None,
        }
    }

    // ---- the stack ---------------------------------------------------------------------------------

    /// Room for one more stack item or MARK.
    pub(super) fn check_stack_room(&self) -> Result<()> {
        if self.stack.len() + self.marks.len() >= self.limits.max_stack {
            return Err(PickleError::LimitExceeded { what: "stack depth", limit: self.limits.max_stack });
        }
        Ok(())
    }

    pub(super) fn push(&mut self, id: Id) -> Result<()> {
        self.check_stack_room()?;
        self.stack.push(id);
        Ok(())
    }

    pub(super) fn push_new(&mut self, node: Node<'a>) -> Result<()> {
        let id = self.alloc(node)?;
        self.push(id)
    }

    pub(super) fn push_int(&mut self, v: i64) -> Result<()> {
        match u8::try_from(v) {
            Ok(small) => self.push(SMALL_INT + Id::from(small)),
            Err(_) => self.push_new(Node::Int(v)),
        }
    }

    /// The lowest stack index the current opcode may touch: items below the last MARK belong to an
    /// enclosing construct (Python keeps them on a separate "metastack").
    pub(super) fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    pub(super) fn pop(&mut self) -> Result<Id> {
        if self.stack.len() <= self.floor() {
            return Err(self.underflow(1));
        }
        self.stack.pop().ok_or_else(|| self.underflow(1))
    }

    pub(super) fn top(&self) -> Result<Id> {
        if self.stack.len() <= self.floor() {
            return Err(self.underflow(1));
        }
        self.stack.last().copied().ok_or_else(|| self.underflow(1))
    }

    pub(super) fn pop_n(&mut self, n: usize) -> Result<Vec<Id>> {
        if self.stack.len() < self.floor() + n {
            return Err(self.underflow(n));
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    /// Everything pushed since the last MARK, which is closed.
    pub(super) fn pop_mark(&mut self) -> Result<Vec<Id>> {
        let mark = self.marks.pop().ok_or(PickleError::MissingMark { opcode: opcodes::name(self.op), pos: self.op_pos })?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    // ---- errors about the current opcode -----------------------------------------------------------

    pub(super) fn malformed(&self, what: &'static str, detail: String) -> PickleError {
        PickleError::Malformed { what, pos: self.op_pos, detail }
    }

    pub(super) fn underflow(&self, needed: usize) -> PickleError {
        PickleError::StackUnderflow { opcode: opcodes::name(self.op), pos: self.op_pos, needed }
    }

    pub(super) fn wrong_type(&self, expected: &'static str, found: Id) -> PickleError {
        PickleError::WrongType { opcode: opcodes::name(self.op), pos: self.op_pos, expected, found: self.node(found).type_name() }
    }

    pub(super) fn unsupported(&self, why: &'static str) -> PickleError {
        PickleError::UnsupportedOpcode { op: self.op, name: opcodes::name(self.op), pos: self.op_pos, why }
    }
}

/// Whether float arrays are decoded (`reader::load`) or kept as the input's bytes
/// (`reader::load_view`). Here, beside the machine that holds it, so that `arrays` and `reader`
/// do not import each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Floats decoded into owned arrays.
    Decode,
    /// Floats kept as borrowed bytes of the input.
    View,
}
