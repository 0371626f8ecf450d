//! A safetensors writer that never holds a tensor in memory.
//!
//! The `safetensors` crate serializes from in-memory tensor views, which for a MOSEI split means
//! gigabytes of `f32` that exist only to be written. Here the tensors are declared up front (name,
//! dtype, shape), the header goes out immediately, and the caller then streams each tensor's bytes in
//! declaration order, e.g. with [`crate::ArrayView::write_f32_le`]:
//!
//! ```no_run
//! # use std::collections::BTreeMap;
//! # use mmkd_pickle::safetensors_stream::{Dtype, StreamWriter, TensorSpec};
//! # fn main() -> std::io::Result<()> {
//! let out = std::io::BufWriter::new(std::fs::File::create("train.safetensors")?);
//! let tensors = vec![TensorSpec::new("labels", Dtype::F32, vec![2])];
//! let metadata = BTreeMap::from([("ids".to_string(), r#"["a","b"]"#.to_string())]);
//! let mut writer = StreamWriter::new(out, tensors, &metadata)?;
//! let mut labels = writer.begin("labels")?;
//! std::io::Write::write_all(&mut labels, &[0u8; 8])?;
//! labels.finish()?;
//! writer.finish()?;
//! # Ok(())
//! # }
//! ```
//!
//! The file is standard safetensors: an 8-byte little-endian header length, a JSON header (each
//! tensor's `dtype`, `shape` and `data_offsets`, plus string-to-string `__metadata__`), padded with
//! spaces so the data start at a multiple of 8, then the tensors back to back in declaration order.
//! Byte counts are checked: a tensor receives exactly `product(shape) * dtype size` bytes, in order,
//! or the writer returns an error naming the tensor.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Write};

/// The element types this writer declares: features and labels as `F32`, integer data as `I64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// Little-endian `f32`.
    F32,
    /// Little-endian `i64`.
    I64,
}

impl Dtype {
    /// The name in the safetensors header.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::I64 => "I64",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::I64 => 8,
        }
    }
}

/// A tensor to be written: its name, element type and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// The tensor's key in the header; unique, not empty, not `__metadata__`.
    pub name: String,
    /// The element type.
    pub dtype: Dtype,
    /// The dimensions, outermost first.
    pub shape: Vec<usize>,
}

impl TensorSpec {
    /// A spec from its parts.
    pub fn new(name: impl Into<String>, dtype: Dtype, shape: Vec<usize>) -> Self {
        TensorSpec { name: name.into(), dtype, shape }
    }

    /// `product(shape) * dtype size`, or `None` when that overflows.
    pub fn byte_len(&self) -> Option<u64> {
        self.shape.iter().try_fold(self.dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64))
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// The header (length prefix included) for `tensors` laid out back to back in this order, and each
/// tensor's byte length.
///
/// Refuses empty or duplicate names, the reserved name `__metadata__`, and sizes that overflow.
pub fn header(tensors: &[TensorSpec], metadata: &BTreeMap<String, String>) -> io::Result<(Vec<u8>, Vec<u64>)> {
    let mut json = String::from("{");
    let mut first = true;
    let mut entry = |json: &mut String, key: &str, value: String| -> io::Result<()> {
        if !first {
            json.push(',');
        }
        first = false;
        json.push_str(&serde_json::to_string(key).map_err(io::Error::other)?);
        json.push(':');
        json.push_str(&value);
        Ok(())
    };
    if !metadata.is_empty() {
        let value = serde_json::to_string(metadata).map_err(io::Error::other)?;
        entry(&mut json, "__metadata__", value)?;
    }
    let mut names = HashSet::new();
    let mut lengths = Vec::with_capacity(tensors.len());
    let mut offset = 0u64;
    for tensor in tensors {
        let name = &tensor.name;
        if name.is_empty() || name == "__metadata__" {
            return Err(invalid(format!("safetensors: tensor name '{name}' is reserved or empty")));
        }
        if !names.insert(name.as_str()) {
            return Err(invalid(format!("safetensors: tensor '{name}' is declared twice")));
        }
        let len = tensor.byte_len().ok_or_else(|| invalid(format!("safetensors: tensor '{name}': shape {:?} is too large", tensor.shape)))?;
        let end = offset.checked_add(len).ok_or_else(|| invalid(format!("safetensors: tensor '{name}': the file would exceed 2^64 bytes")))?;
        let shape: Vec<String> = tensor.shape.iter().map(usize::to_string).collect();
        let value = format!(r#"{{"dtype":"{}","shape":[{}],"data_offsets":[{offset},{end}]}}"#, tensor.dtype.name(), shape.join(","));
        entry(&mut json, name, value)?;
        lengths.push(len);
        offset = end;
    }
    json.push('}');
    // The data start right after the header; pad it with spaces to a multiple of 8 (8 + len is then
    // one too), as the safetensors serializer does, so every tensor of these dtypes is aligned.
    while !json.len().is_multiple_of(8) {
        json.push(' ');
    }
    let mut out = Vec::with_capacity(8 + json.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    Ok((out, lengths))
}

/// Writes a safetensors file whose tensors are streamed one after the other (see the module docs).
#[derive(Debug)]
pub struct StreamWriter<W: Write> {
    out: W,
    tensors: Vec<TensorSpec>,
    lengths: Vec<u64>,
    /// Index of the tensor being written (or next to be begun).
    next: usize,
    /// Whether tensor `next` was begun, and how many of its bytes were written.
    begun: bool,
    written: u64,
    /// Header plus data bytes in the whole file.
    total: u64,
}

impl<W: Write> StreamWriter<W> {
    /// Writes the header for `tensors` (in this order) and `metadata` to `out`.
    pub fn new(mut out: W, tensors: Vec<TensorSpec>, metadata: &BTreeMap<String, String>) -> io::Result<Self> {
        let (head, lengths) = header(&tensors, metadata)?;
        out.write_all(&head)?;
        let total = lengths.iter().try_fold(head.len() as u64, |acc, &l| acc.checked_add(l)).ok_or_else(|| invalid("safetensors: the file would exceed 2^64 bytes".into()))?;
        Ok(StreamWriter { out, tensors, lengths, next: 0, begun: false, written: 0, total })
    }

    /// The size of the finished file, header included.
    pub fn file_len(&self) -> u64 {
        self.total
    }

    /// Starts (or resumes) the tensor `name`, which must be the next one declared; the previous one
    /// must be complete. Write its bytes to the returned writer, then call [`TensorWriter::finish`].
    pub fn begin(&mut self, name: &str) -> io::Result<TensorWriter<'_, W>> {
        self.complete_current()?;
        match self.tensors.get(self.next) {
            Some(spec) if spec.name == name => {
                self.begun = true;
                Ok(TensorWriter { parent: self })
            }
            Some(spec) => Err(invalid(format!("safetensors: tensor '{name}' begun, but '{}' is next in the declared order", spec.name))),
            None => Err(invalid(format!("safetensors: tensor '{name}' begun, but every declared tensor is written"))),
        }
    }

    /// Checks that every declared tensor was written in full, flushes, and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.complete_current()?;
        if let Some(spec) = self.tensors.get(self.next) {
            return Err(invalid(format!("safetensors: tensor '{}' was declared but not written", spec.name)));
        }
        self.out.flush()?;
        Ok(self.out)
    }

    /// Moves on from a begun tensor that has all its bytes; one that lacks some is an error.
    fn complete_current(&mut self) -> io::Result<()> {
        if !self.begun {
            return Ok(());
        }
        let (Some(spec), Some(&len)) = (self.tensors.get(self.next), self.lengths.get(self.next)) else {
            return Ok(());
        };
        if self.written != len {
            return Err(invalid(format!("safetensors: tensor '{}' ({} {:?}) needs {len} bytes, only {} were written", spec.name, spec.dtype.name(), spec.shape, self.written)));
        }
        self.next += 1;
        self.begun = false;
        self.written = 0;
        Ok(())
    }
}

/// The bytes of one tensor, from [`StreamWriter::begin`]. Refuses to write more than the tensor's
/// declared size.
#[derive(Debug)]
pub struct TensorWriter<'w, W: Write> {
    parent: &'w mut StreamWriter<W>,
}

impl<W: Write> TensorWriter<'_, W> {
    /// The bytes this tensor still needs.
    pub fn remaining(&self) -> u64 {
        let len = self.parent.lengths.get(self.parent.next).copied();
        len.unwrap_or(0).saturating_sub(self.parent.written)
    }

    /// Checks that the tensor received exactly its declared size.
    pub fn finish(self) -> io::Result<()> {
        if self.remaining() == 0 {
            self.parent.complete_current()
        } else {
            let spec = self.parent.tensors.get(self.parent.next);
            Err(invalid(format!("safetensors: tensor '{}' needs {} more bytes", spec.map_or("?", |s| s.name.as_str()), self.remaining())))
        }
    }
}

impl<W: Write> Write for TensorWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.remaining() {
            let spec = self.parent.tensors.get(self.parent.next);
            return Err(invalid(format!(
                "safetensors: tensor '{}' ({} {:?}) needs {} bytes, {} were written and {} more offered",
                spec.map_or("?", |s| s.name.as_str()),
                spec.map_or("?", |s| s.dtype.name()),
                spec.map_or(&[][..], |s| s.shape.as_slice()),
                self.parent.lengths.get(self.parent.next).copied().unwrap_or(0),
                self.parent.written,
                buf.len()
            )));
        }
        let n = self.parent.out.write(buf)?;
        self.parent.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.parent.out.flush()
    }
}
