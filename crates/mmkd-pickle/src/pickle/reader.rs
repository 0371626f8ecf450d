//! The public entry points: [`load`] decodes everything, [`load_view`] leaves float arrays in the
//! input. Both run the same machine; only [`Mode`] differs.

use std::borrow::Cow;

use super::machine::{Machine, Mode};
use super::{Limits, RawBuffer, Result, Value};

/// A decoded pickle.
#[derive(Debug, Clone, PartialEq)]
pub struct Pickle {
    /// The protocol announced by the PROTO opcode; 0 for a stream without one (protocol 0 or 1).
    pub protocol: u8,
    /// The object the stream leaves at STOP.
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
    Ok(Pickle { protocol: machine.protocol, value })
}

/// A pickle decoded by [`load_view`]: float arrays are [`super::ArrayData::Raw`] entries of `value`
/// whose elements are `buffers[index]`.
#[derive(Clone, PartialEq)]
pub struct PickleView<'a> {
    /// The protocol announced by the PROTO opcode; 0 for a stream without one.
    pub protocol: u8,
    /// The object the stream leaves at STOP, with float arrays as [`super::ArrayData::Raw`].
    pub value: Value,
    /// The elements of every [`super::ArrayData::Raw`] in `value`, by [`RawBuffer::index`], in the
    /// file's dtype, byte order and memory order: slices of the input, except for data the stream
    /// carried encoded (protocol 2's `_codecs.encode`), which are owned.
    pub buffers: Vec<Cow<'a, [u8]>>,
}

/// The buffers are gigabytes: `Debug` shows their number and total size, not their bytes.
impl std::fmt::Debug for PickleView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PickleView")
            .field("protocol", &self.protocol)
            .field("value", &self.value)
            .field("buffers", &self.buffers.len())
            .field("buffer_bytes", &self.buffers.iter().map(|b| b.len()).sum::<usize>())
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
    Ok(PickleView { protocol: machine.protocol, value, buffers })
}
