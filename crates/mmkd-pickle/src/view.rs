//! Arrays that stay in the file: an [`ArrayView`] is a float array whose elements are still the bytes
//! the pickle stored (usually a slice of a [`MappedFile`]), converted to little-endian `f32` only while
//! they are streamed out, one bounded chunk at a time ([`ArrayView::write_f32_le`]).
//!
//! This is what makes converting a multi-gigabyte MOSEI pickle cheap: the reader holds the map (which
//! the kernel pages in and out as it likes) plus chunk-sized buffers, never a decoded copy.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::file_name;
use crate::pickle::numpy::FloatFormat;
use crate::pickle::{ByteOrder, DType, DTypeKind};

/// Elements converted per chunk by [`ArrayView::write_f32_le`] and [`ArrayView::count_nonfinite`]:
/// the buffers they allocate never exceed this many `f32` plus as many output bytes (256 KiB each).
pub const CHUNK_ELEMENTS: usize = 1 << 16;

/// Non-finite values of one modality, counted before they were repaired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NonFinite {
    /// NaN values.
    pub nan: usize,
    /// `+inf` values.
    pub pos_inf: usize,
    /// `-inf` values.
    pub neg_inf: usize,
}

impl NonFinite {
    /// All non-finite values.
    pub fn total(&self) -> usize {
        self.nan + self.pos_inf + self.neg_inf
    }

    /// Counts `x` if it is NaN or infinite.
    pub fn count(&mut self, x: f32) {
        if !x.is_finite() {
            if x.is_nan() {
                self.nan += 1;
            } else if x > 0.0 {
                self.pos_inf += 1;
            } else {
                self.neg_inf += 1;
            }
        }
    }

    /// The repair every reader applies to features: a NaN or infinite `x` is counted and becomes 0;
    /// any other value is returned unchanged.
    pub fn repair(&mut self, x: f32) -> f32 {
        if x.is_finite() {
            x
        } else {
            self.count(x);
            0.0
        }
    }
}

/// A float array (`float16`, `float32` or `float64`, either byte order, C or Fortran order) whose
/// elements are the bytes the pickle stored, usually borrowed from the mapped file.
///
/// The bytes are owned only where the file does not hold them verbatim: protocol 2 carries array data
/// as Latin-1 text (`_codecs.encode`), and integer or bool features are widened to `f32` as the owning
/// reader does. [`ArrayView::is_borrowed`] tells which.
#[derive(Clone, PartialEq)]
pub struct ArrayView<'a, const N: usize = 3> {
    shape: [usize; N],
    dtype: DType,
    format: FloatFormat,
    fortran_order: bool,
    bytes: Cow<'a, [u8]>,
}

impl<'a, const N: usize> ArrayView<'a, N> {
    /// A view of `bytes` as an array of `shape` and `dtype`; `None` unless `dtype` is a float dtype of
    /// 2, 4 or 8 bytes and `bytes` holds exactly the product of `shape` elements of it.
    pub fn new(shape: [usize; N], dtype: DType, fortran_order: bool, bytes: impl Into<Cow<'a, [u8]>>) -> Option<Self> {
        let bytes = bytes.into();
        let format = FloatFormat::of(&dtype)?;
        let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))?;
        if count.checked_mul(format.size())? != bytes.len() {
            return None;
        }
        Some(ArrayView { shape, dtype, format, fortran_order, bytes })
    }

    /// An owned, C-order little-endian `float32` view of `values` (`None` when the counts differ).
    pub fn from_f32(shape: [usize; N], values: &[f32]) -> Option<ArrayView<'static, N>> {
        let mut bytes = Vec::with_capacity(values.len().checked_mul(4)?);
        for x in values {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        let dtype = DType { kind: DTypeKind::Float, itemsize: 4, byte_order: ByteOrder::Little };
        ArrayView::new(shape, dtype, false, bytes)
    }

    /// The dimensions, outermost first.
    pub fn shape(&self) -> [usize; N] {
        self.shape
    }

    /// The dtype of the bytes (the file's, except for owned widened data, which is `<f4`).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Whether the bytes are in Fortran (column-major) order; [`ArrayView::write_f32_le`] writes C
    /// order either way.
    pub fn fortran_order(&self) -> bool {
        self.fortran_order
    }

    /// The elements as stored.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether the bytes are borrowed (from the mapped file) rather than an owned copy.
    pub fn is_borrowed(&self) -> bool {
        matches!(self.bytes, Cow::Borrowed(_))
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.bytes.len() / self.format.size()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The number of bytes [`ArrayView::write_f32_le`] writes: 4 per element.
    pub fn f32_byte_len(&self) -> u64 {
        self.len() as u64 * 4
    }

    /// The same view with owned bytes (a copy when they were borrowed).
    pub fn into_owned(self) -> ArrayView<'static, N> {
        ArrayView { shape: self.shape, dtype: self.dtype, format: self.format, fortran_order: self.fortran_order, bytes: Cow::Owned(self.bytes.into_owned()) }
    }

    /// Counts the NaN / +inf / -inf elements, as `f32` (a finite `float64` beyond the `f32` range
    /// counts as infinite, as it is after the owning reader's conversion). Reads the bytes in storage
    /// order, one chunk at a time, calling `progress` with the number of *input* bytes read so far.
    pub fn count_nonfinite(&self, mut progress: impl FnMut(u64)) -> NonFinite {
        let mut counts = NonFinite::default();
        let mut values = Vec::with_capacity(CHUNK_ELEMENTS.min(self.len()));
        let mut done = 0u64;
        for raw in self.bytes.chunks(CHUNK_ELEMENTS * self.format.size()) {
            values.clear();
            self.format.extend_f32(raw, &mut values);
            for &x in &values {
                counts.count(x);
            }
            done += raw.len() as u64;
            progress(done);
        }
        counts
    }

    /// Writes the elements to `out` as little-endian `f32` in C order (whatever the stored dtype, byte
    /// order and memory order), with every NaN and ±inf replaced by 0 exactly as the owning reader
    /// repairs features, and returns how many of each it replaced.
    ///
    /// Works in chunks of [`CHUNK_ELEMENTS`]: nothing larger than one chunk is allocated, and each
    /// chunk is one `write_all`. `progress` is called after every chunk with the number of bytes
    /// written so far by this call (finally [`ArrayView::f32_byte_len`]). A Fortran-order array is
    /// read with a stride, which is slower but needs no more memory.
    pub fn write_f32_le(&self, out: &mut impl Write, mut progress: impl FnMut(u64)) -> io::Result<NonFinite> {
        let total = self.len();
        let mut counts = NonFinite::default();
        let mut values = Vec::with_capacity(CHUNK_ELEMENTS.min(total));
        let mut buf = Vec::with_capacity(4 * CHUNK_ELEMENTS.min(total));
        let mut written = 0u64;
        let mut emit = |values: &[f32], counts: &mut NonFinite| -> io::Result<()> {
            buf.clear();
            for &x in values {
                buf.extend_from_slice(&counts.repair(x).to_le_bytes());
            }
            out.write_all(&buf)?;
            written += buf.len() as u64;
            progress(written);
            Ok(())
        };
        let size = self.format.size();
        // With at most one axis longer than 1, both orders coincide.
        let strided = self.fortran_order && self.shape.iter().filter(|&&d| d > 1).count() > 1;
        if strided {
            let mut walk = FortranWalk::new(self.shape);
            let mut left = total;
            while left > 0 {
                let n = left.min(CHUNK_ELEMENTS);
                values.clear();
                for _ in 0..n {
                    let at = walk.next_offset() * size;
                    let element = self.bytes.get(at..at + size).unwrap_or_default();
                    values.push(self.format.to_f32(element));
                }
                emit(&values, &mut counts)?;
                left -= n;
            }
        } else {
            for raw in self.bytes.chunks(CHUNK_ELEMENTS * size) {
                values.clear();
                self.format.extend_f32(raw, &mut values);
                emit(&values, &mut counts)?;
            }
        }
        Ok(counts)
    }
}

/// The contents are gigabytes: `Debug` shows what the view is, not its bytes.
impl<const N: usize> fmt::Debug for ArrayView<'_, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayView")
            .field("shape", &self.shape)
            .field("dtype", &self.dtype.to_string())
            .field("fortran_order", &self.fortran_order)
            .field("bytes", &self.bytes.len())
            .field("borrowed", &self.is_borrowed())
            .finish()
    }
}

/// Element offsets of a Fortran-order array, visited in C order: a row-major odometer over
/// column-major strides (the same walk as the decoding reader's reordering).
struct FortranWalk<const N: usize> {
    shape: [usize; N],
    strides: [usize; N],
    index: [usize; N],
    offset: usize,
}

impl<const N: usize> FortranWalk<N> {
    fn new(shape: [usize; N]) -> Self {
        let mut strides = [0usize; N];
        let mut acc = 1usize;
        for (stride, &dim) in strides.iter_mut().zip(&shape) {
            *stride = acc;
            acc = acc.saturating_mul(dim);
        }
        FortranWalk { shape, strides, index: [0; N], offset: 0 }
    }

    /// The offset (in elements) of the current element; moves to the next one.
    fn next_offset(&mut self) -> usize {
        let current = self.offset;
        let axes = self.index.iter_mut().zip(&self.strides).zip(&self.shape).rev();
        for ((index, &stride), &dim) in axes {
            *index += 1;
            self.offset += stride;
            if *index < dim {
                break;
            }
            self.offset -= stride * *index;
            *index = 0;
        }
        current
    }
}

/// A pickle file mapped into memory, read-only, for [`crate::read_mosei_view`]: its pages are read
/// from disk when first touched and can be dropped again by the kernel at any time (they are clean),
/// so mapping a file costs no memory of its own, unlike reading it.
///
/// **The file must not be modified or truncated while it is mapped.** The views borrow its bytes;
/// another process writing to the file would change data this process believes immutable, and
/// truncating it makes reading the lost pages fail with SIGBUS. The dataset pickles this crate reads
/// are downloaded once and never rewritten in place, which is what makes mapping them sound enough.
pub struct MappedFile {
    path: PathBuf,
    map: memmap2::Mmap,
}

impl MappedFile {
    /// Maps `path` read-only. Errors name the file, like every reader error.
    pub fn open(path: &Path) -> std::io::Result<MappedFile> {
        // The message names the file, as the readers' errors do; the kind stays the system's.
        let io = |source: std::io::Error| std::io::Error::new(source.kind(), format!("{}: cannot read the file: {source}", file_name(path)));
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: memmap2 cannot rule out that the file changes while it is mapped (see the type's
        // documentation). The mapping is read-only, nothing in this process writes to the file, and
        // the caller's contract is that nobody else modifies or truncates it meanwhile. This is the
        // crate's only `unsafe`.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        // The readers go through the file front to back: ask for generous read-ahead. Only a hint.
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(MappedFile { path: path.to_path_buf(), map })
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}

impl Deref for MappedFile {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map
    }
}

impl fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MappedFile").field("path", &self.path).field("len", &self.map.len()).finish()
    }
}
