//! The resource caps of one load, and the data budget that enforces [`Limits::data_factor`].

use super::{PickleError, Result};

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
        Limits { max_stack: 1 << 20, max_memo: 1 << 22, max_nodes: 1 << 26, max_depth: 100, data_factor: 16 }
    }
}

/// Bytes of derived data still allowed. The interpreter and the final conversion draw on the same
/// budget, so a stream cannot spend it once while running and again while being turned into a tree.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    left: usize,
    total: usize,
}

impl Budget {
    /// The budget for an input of `input_len` bytes (see [`Limits::data_factor`]).
    pub(super) fn new(input_len: usize, limits: &Limits) -> Self {
        let total = input_len.saturating_mul(limits.data_factor).saturating_add(64 << 10);
        Budget { left: total, total }
    }

    /// Reserves `bytes` of derived data, before allocating it.
    pub(super) fn charge(&mut self, bytes: usize) -> Result<()> {
        self.left = self.left.checked_sub(bytes).ok_or(PickleError::LimitExceeded { what: "data derived from the input (bytes)", limit: self.total })?;
        Ok(())
    }
}
