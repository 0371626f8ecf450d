//! The opcode loop, and the opcodes that build plain data: framing and stack manipulation, scalars,
//! strings and bytes, containers. The memo, globals and calls, and BUILD have their own modules.

use std::borrow::Cow;

use super::arena::{EMPTY_TUPLE_ID, FALSE_ID, Id, NONE_ID, Node, TRUE_ID};
use super::machine::Machine;
use super::opcodes::{self, *};
use super::{PickleError, Result, shown};

impl<'a> Machine<'a> {
    /// Runs until STOP and returns the object it leaves.
    pub(super) fn run(&mut self) -> Result<Id> {
        loop {
            self.op_pos = self.pos;
            let Some(&op) = self.input.get(self.pos) else {
                return Err(PickleError::MissingStop { pos: self.pos });
            };
            self.pos += 1;
            self.op = op;
            if op == STOP {
                return self.pop();
            }
            // The groups are disjoint, so the order they are tried in does not matter.
            let done = self.framing_op(op)? || self.scalar_op(op)? || self.string_op(op)? || self.container_op(op)? || self.memo_op(op)? || self.call_op(op)?;
            if !done {
                return Err(self.refused(op));
            }
        }
    }

    /// PROTO, FRAME, and the stack opcodes; `Ok(false)` for any other opcode.
    fn framing_op(&mut self, op: u8) -> Result<bool> {
        match op {
            PROTO => {
                let version = self.u8("PROTO")?;
                if version > 5 {
                    return Err(PickleError::UnsupportedProtocol(version));
                }
                self.protocol = version;
            }
            FRAME => {
                // FRAME only groups opcodes for buffered reading; its length is checked, not used.
                let len = self.u64("FRAME")?;
                if len > self.remaining() as u64 {
                    return Err(PickleError::Truncated { what: "FRAME", pos: self.op_pos, needed: len, available: self.remaining() });
                }
            }
            MARK => {
                self.check_stack_room()?;
                self.marks.push(self.stack.len());
            }
            POP => {
                if self.stack.len() > self.floor() {
                    self.pop()?;
                } else {
                    self.pop_mark()?; // Python pops the mark when nothing follows it.
                }
            }
            POP_MARK => {
                self.pop_mark()?;
            }
            DUP => {
                let top = self.top()?;
                self.push(top)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The opcodes that push a None, bool, int or float; `Ok(false)` for any other opcode.
    fn scalar_op(&mut self, op: u8) -> Result<bool> {
        match op {
            NONE => self.push(NONE_ID)?,
            NEWTRUE => self.push(TRUE_ID)?,
            NEWFALSE => self.push(FALSE_ID)?,
            BININT => {
                let v = i32::from_le_bytes(self.fixed("BININT")?);
                self.push_int(v.into())?;
            }
            BININT1 => {
                let v = self.u8("BININT1")?;
                self.push_int(v.into())?;
            }
            BININT2 => {
                let v = u16::from_le_bytes(self.fixed("BININT2")?);
                self.push_int(v.into())?;
            }
            LONG1 => {
                let n = self.u8("LONG1")?;
                let bytes = self.take(n.into(), "LONG1")?;
                self.push_long(bytes)?;
            }
            LONG4 => {
                let n = self.i32_len("LONG4")?;
                let bytes = self.take(n, "LONG4")?;
                self.push_long(bytes)?;
            }
            BINFLOAT => {
                let v = f64::from_be_bytes(self.fixed("BINFLOAT")?);
                self.push_new(Node::Float(v))?;
            }
            INT | LONG | FLOAT => self.text_number_op(op)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// INT, LONG and FLOAT, whose value is written out in decimal. Protocol 0 spells booleans as
    /// INT `00` and `01`.
    fn text_number_op(&mut self, op: u8) -> Result<()> {
        let not_an_int = |line: &str| format!("'{}' is not an integer that fits 64 bits", shown(line));
        match op {
            INT => {
                let line = self.line("INT")?;
                match line {
                    "00" => self.push(FALSE_ID),
                    "01" => self.push(TRUE_ID),
                    _ => {
                        let v = line.trim().parse().map_err(|_| self.malformed("INT", not_an_int(line)))?;
                        self.push_int(v)
                    }
                }
            }
            LONG => {
                let line = self.line("LONG")?;
                let v = line.trim().trim_end_matches('L').parse().map_err(|_| self.malformed("LONG", not_an_int(line)))?;
                self.push_int(v)
            }
            _ => {
                let line = self.line("FLOAT")?;
                let v = line.trim().parse().map_err(|_| self.malformed("FLOAT", format!("'{}' is not a float", shown(line))))?;
                self.push_new(Node::Float(v))
            }
        }
    }

    /// The opcodes that push a `str` or bytes, and the protocol-5 buffer opcodes; `Ok(false)` for any
    /// other opcode.
    fn string_op(&mut self, op: u8) -> Result<bool> {
        match op {
            BINUNICODE => {
                let n = self.u32("BINUNICODE")?;
                self.push_str(n.into(), "BINUNICODE")?;
            }
            SHORT_BINUNICODE => {
                let n = self.u8("SHORT_BINUNICODE")?;
                self.push_str(n.into(), "SHORT_BINUNICODE")?;
            }
            BINUNICODE8 => {
                let n = self.u64("BINUNICODE8")?;
                self.push_str(n, "BINUNICODE8")?;
            }
            BINSTRING => {
                // A Python 2 `str`: bytes (numpy's raw data under Python 2).
                let n = self.i32_len("BINSTRING")?;
                self.push_bytes(n, "BINSTRING")?;
            }
            SHORT_BINSTRING => {
                let n = self.u8("SHORT_BINSTRING")?;
                self.push_bytes(n.into(), "SHORT_BINSTRING")?;
            }
            BINBYTES => {
                let n = self.u32("BINBYTES")?;
                self.push_bytes(n.into(), "BINBYTES")?;
            }
            SHORT_BINBYTES => {
                let n = self.u8("SHORT_BINBYTES")?;
                self.push_bytes(n.into(), "SHORT_BINBYTES")?;
            }
            BINBYTES8 => {
                let n = self.u64("BINBYTES8")?;
                self.push_bytes(n, "BINBYTES8")?;
            }
            BYTEARRAY8 => {
                let n = self.u64("BYTEARRAY8")?;
                self.push_bytes(n, "BYTEARRAY8")?;
            }
            NEXT_BUFFER => return Err(PickleError::OutOfBandBuffer { pos: self.op_pos }),
            READONLY_BUFFER => {
                // READONLY_BUFFER marks the buffer on top as read-only; everything here already is.
                self.top()?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The opcodes that create or fill tuples, lists, dicts and sets; `Ok(false)` for any other
    /// opcode.
    fn container_op(&mut self, op: u8) -> Result<bool> {
        match op {
            EMPTY_TUPLE => self.push(EMPTY_TUPLE_ID)?,
            TUPLE1..=TUPLE3 => {
                let items = self.pop_n(usize::from(op - TUPLE1 + 1))?;
                self.push_new(Node::Tuple(items))?;
            }
            TUPLE => {
                let items = self.pop_mark()?;
                self.push_new(Node::Tuple(items))?;
            }
            EMPTY_LIST => self.push_new(Node::List(Vec::new()))?,
            LIST => {
                let items = self.pop_mark()?;
                self.push_new(Node::List(items))?;
            }
            EMPTY_DICT => self.push_new(Node::Dict(Vec::new()))?,
            DICT => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(&items)?;
                self.push_new(Node::Dict(pairs))?;
            }
            EMPTY_SET => self.push_new(Node::Set(Vec::new()))?,
            FROZENSET => {
                let items = self.pop_mark()?;
                self.push_new(Node::Set(items))?;
            }
            APPEND => {
                let item = self.pop()?;
                self.extend_list(&[item])?;
            }
            APPENDS => {
                let items = self.pop_mark()?;
                self.extend_list(&items)?;
            }
            SETITEM => {
                let items = self.pop_n(2)?;
                self.extend_dict(&items)?;
            }
            SETITEMS => {
                let items = self.pop_mark()?;
                self.extend_dict(&items)?;
            }
            ADDITEMS => {
                let items = self.pop_mark()?;
                let target = self.top()?;
                match self.nodes.get_mut(target) {
                    Some(Node::Set(set)) => set.extend(items),
                    _ => return Err(self.wrong_type("a set", target)),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The error for an opcode no group runs: known but refused (with the reason), or unknown.
    fn refused(&self, op: u8) -> PickleError {
        match op {
            PERSID | BINPERSID => self.unsupported("persistent ids need the writer's own loader (torch files use them)"),
            INST | OBJ => self.unsupported("it creates arbitrary class instances"),
            EXT1..=EXT4 => self.unsupported("the copyreg extension registry is not available"),
            STRING | UNICODE => self.unsupported("protocol-0 quoted strings are not supported; re-save with protocol 2 or later"),
            _ => PickleError::UnknownOpcode { op, pos: self.op_pos },
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
        let fits = high.is_empty() || (high.iter().all(|&b| b == fill) && eighth_sign == Some(negative));
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
            return Err(self.malformed(opcodes::name(self.op), format!("odd number of items ({}) for key/value pairs", items.len())));
        }
        Ok(items.chunks_exact(2).filter_map(|kv| Some((*kv.first()?, *kv.get(1)?))).collect())
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
}
