//! The memo: PUT and GET in their text, 1-byte, 4-byte and implicit (MEMOIZE) forms.
//!
//! The memo holds arena ids, not copies, because numpy memoizes a dtype before its BUILD completes it
//! and later arrays GET it again: they must see the finished dtype.

use super::machine::Machine;
use super::opcodes::{BINGET, BINPUT, GET, LONG_BINGET, LONG_BINPUT, MEMOIZE, PUT};
use super::{PickleError, Result, shown};

impl Machine<'_> {
    /// Runs `op` if it is a memo opcode; `Ok(false)` when it is not one.
    pub(super) fn memo_op(&mut self, op: u8) -> Result<bool> {
        match op {
            PUT => {
                let key = self.memo_key("PUT")?;
                self.memo_put(key)?;
            }
            BINPUT => {
                let key = self.u8("BINPUT")?;
                self.memo_put(key.into())?;
            }
            LONG_BINPUT => {
                let key = self.u32("LONG_BINPUT")?;
                self.memo_put(key)?;
            }
            MEMOIZE => {
                // The memo never holds more than `max_memo` (< u32::MAX) entries.
                let key = u32::try_from(self.memo.len()).unwrap_or(u32::MAX);
                self.memo_put(key)?;
            }
            GET => {
                let key = self.memo_key("GET")?;
                self.memo_get(key)?;
            }
            BINGET => {
                let key = self.u8("BINGET")?;
                self.memo_get(key.into())?;
            }
            LONG_BINGET => {
                let key = self.u32("LONG_BINGET")?;
                self.memo_get(key)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The decimal key of PUT and GET.
    fn memo_key(&mut self, what: &'static str) -> Result<u32> {
        let line = self.line(what)?;
        line.trim().parse().map_err(|_| self.malformed(what, format!("'{}' is not a memo index", shown(line))))
    }

    fn memo_put(&mut self, key: u32) -> Result<()> {
        let top = self.top()?;
        if self.memo.len() >= self.limits.max_memo && !self.memo.contains_key(&key) {
            return Err(PickleError::LimitExceeded { what: "memo entries", limit: self.limits.max_memo });
        }
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<()> {
        let id = *self.memo.get(&key).ok_or(PickleError::MissingMemo { key: key.into(), pos: self.op_pos })?;
        self.push(id)
    }
}
