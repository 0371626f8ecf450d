//! Reading an opcode's operands from the input. Every length comes from the file, so each is
//! compared with what is left before it is used.

use super::machine::Machine;
use super::{PickleError, Result};

impl<'a> Machine<'a> {
    pub(super) fn remaining(&self) -> usize {
        self.input.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes.
    pub(super) fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8]> {
        let available = self.remaining();
        let truncated = PickleError::Truncated { what, pos: self.op_pos, needed: n, available };
        let Some(end) = usize::try_from(n).ok().and_then(|n| self.pos.checked_add(n)) else {
            return Err(truncated);
        };
        let bytes = self.input.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    pub(super) fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        for (o, &b) in out.iter_mut().zip(bytes) {
            *o = b;
        }
        Ok(out)
    }

    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(u8::from_le_bytes(self.fixed(what)?))
    }

    pub(super) fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.fixed(what)?))
    }

    pub(super) fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.fixed(what)?))
    }

    /// A signed 4-byte length (BINSTRING, LONG4); negative is malformed.
    pub(super) fn i32_len(&mut self, what: &'static str) -> Result<u64> {
        let n = i32::from_le_bytes(self.fixed(what)?);
        u64::try_from(n).map_err(|_| self.malformed(what, format!("negative length {n}")))
    }

    /// A newline-terminated argument of the text opcodes (GLOBAL, PUT, GET, INT, LONG, FLOAT).
    pub(super) fn line(&mut self, what: &'static str) -> Result<&'a str> {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let Some(len) = rest.iter().position(|&b| b == b'\n') else {
            return Err(PickleError::Truncated { what, pos: self.op_pos, needed: rest.len() as u64 + 1, available: rest.len() });
        };
        let bytes = self.take(len as u64 + 1, what)?;
        let text = bytes.get(..len).unwrap_or_default();
        std::str::from_utf8(text).map_err(|_| self.malformed(what, "argument is not UTF-8 text".into()))
    }
}
