//! numpy's side of unpickling: dtype descriptions, raw buffers to typed elements, Fortran to C order.
//!
//! numpy pickles an array as `_reconstruct(ndarray, (0,), b'b')` followed by a BUILD whose state is
//! `(version, shape, dtype, is_fortran, raw)`, where `raw` is the memory image of the elements (or, for
//! object arrays, a list of the elements in C order). Protocol 5 instead calls
//! `_frombuffer(buffer, dtype, shape, order)`. Both end up in [`decode_elements`].

use super::error::{PickleError, shown};
use super::value::{ArrayData, ByteOrder, DType, DTypeKind};

/// numpy's own limit on the number of dimensions (NPY_MAXDIMS in numpy 2).
pub const MAX_DIMS: usize = 64;

/// The byte order numpy means by `=` on the machine reading the file.
const NATIVE: ByteOrder = if cfg!(target_endian = "big") { ByteOrder::Big } else { ByteOrder::Little };

/// Parses the first argument of `numpy.dtype(...)` as numpy writes it when pickling (`'f4'`, `'U5'`,
/// `'O8'`, `'b1'`), also accepting an explicit byte-order prefix (`'<f8'`) and the one-letter aliases.
pub fn parse_dtype_spec(spec: &str) -> Result<DType, PickleError> {
    let unsupported = |reason| PickleError::UnsupportedDtype { dtype: shown(spec), reason };
    let (order, rest) = match spec.chars().next() {
        Some('<') => (Some(ByteOrder::Little), &spec[1..]),
        Some('>') => (Some(ByteOrder::Big), &spec[1..]),
        Some('=') => (Some(NATIVE), &spec[1..]),
        Some('|') => (Some(ByteOrder::NotApplicable), &spec[1..]),
        _ => (None, spec),
    };
    let mut chars = rest.chars();
    let code = chars.next().ok_or_else(|| unsupported("empty dtype string"))?;
    let digits = chars.as_str();
    let size: Option<usize> = if digits.is_empty() {
        None
    } else if digits.len() <= 6 && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        return Err(unsupported("not a simple numeric, string or object dtype"));
    };
    let (kind, itemsize) = match (code, size) {
        ('f', Some(n @ (2 | 4 | 8))) => (DTypeKind::Float, n),
        ('e', None) => (DTypeKind::Float, 2),
        ('d', None) => (DTypeKind::Float, 8),
        ('f', None) => (DTypeKind::Float, 4),
        ('i', Some(n @ (1 | 2 | 4 | 8))) => (DTypeKind::Int, n),
        ('u', Some(n @ (1 | 2 | 4 | 8))) => (DTypeKind::UInt, n),
        ('b', Some(1)) | ('?', None) => (DTypeKind::Bool, 1),
        ('b', None) => (DTypeKind::Int, 1),
        ('B', None) => (DTypeKind::UInt, 1),
        ('h', None) => (DTypeKind::Int, 2),
        ('H', None) => (DTypeKind::UInt, 2),
        ('l' | 'q', None) => (DTypeKind::Int, 8),
        ('L' | 'Q', None) => (DTypeKind::UInt, 8),
        // `U` counts characters, `S`/`a` bytes; the BUILD state's elsize (in bytes) normally overrides it.
        ('U', n) => (DTypeKind::Unicode, n.unwrap_or(0).checked_mul(4).ok_or_else(|| unsupported("too wide"))?),
        ('S' | 'a', n) => (DTypeKind::Bytes, n.unwrap_or(0)),
        ('O', Some(4 | 8) | None) => (DTypeKind::Object, 8),
        ('c' | 'F' | 'D' | 'G', _) => return Err(unsupported("complex numbers are not supported")),
        ('M' | 'm', _) => return Err(unsupported("datetimes are not supported")),
        ('V', _) => return Err(unsupported("void/structured dtypes are not supported")),
        ('f', Some(_)) => {
            return Err(unsupported("only float16, float32 and float64 are supported"));
        }
        _ => return Err(unsupported("unknown dtype code")),
    };
    let byte_order = if itemsize_needs_order(kind, itemsize) {
        match order {
            Some(ByteOrder::NotApplicable) | None => NATIVE,
            Some(o) => o,
        }
    } else {
        ByteOrder::NotApplicable
    };
    Ok(DType { kind, itemsize, byte_order })
}

fn itemsize_needs_order(kind: DTypeKind, itemsize: usize) -> bool {
    match kind {
        DTypeKind::Unicode => true,
        DTypeKind::Bytes | DTypeKind::Object | DTypeKind::Bool => false,
        DTypeKind::Int | DTypeKind::UInt | DTypeKind::Float => itemsize > 1,
    }
}

/// The parts of a dtype's pickled state (`(3, '<', None, None, None, elsize, alignment, flags)`) that
/// matter here, already checked by the caller for their Python types.
pub struct DtypeState<'s> {
    pub byte_order: &'s str,
    /// `subarray`, `names` and `fields` are None for every plain dtype.
    pub structured: bool,
    pub elsize: i64,
}

pub fn apply_dtype_state(dtype: &mut DType, state: DtypeState<'_>) -> Result<(), PickleError> {
    let name = dtype.to_string();
    if state.structured {
        return Err(PickleError::UnsupportedDtype { dtype: name, reason: "structured and sub-array dtypes are not supported" });
    }
    let order = match state.byte_order {
        "<" => ByteOrder::Little,
        ">" => ByteOrder::Big,
        "=" => NATIVE,
        "|" => ByteOrder::NotApplicable,
        _ => {
            return Err(PickleError::UnsupportedDtype { dtype: name, reason: "unknown byte-order character" });
        }
    };
    if itemsize_needs_order(dtype.kind, dtype.itemsize) && order != ByteOrder::NotApplicable {
        dtype.byte_order = order;
    }
    // numpy writes -1 for fixed-size types and the real width for the flexible ones.
    if matches!(dtype.kind, DTypeKind::Bytes | DTypeKind::Unicode) {
        let elsize = usize::try_from(state.elsize).map_err(|_| PickleError::UnsupportedDtype { dtype: name.clone(), reason: "negative string width" })?;
        if dtype.kind == DTypeKind::Unicode && elsize % 4 != 0 {
            return Err(PickleError::UnsupportedDtype { dtype: name, reason: "unicode width not a multiple of 4 bytes" });
        }
        dtype.itemsize = elsize;
    }
    Ok(())
}

/// Number of elements of `shape`, or an error when the product overflows.
pub fn element_count(shape: &[usize], pos: usize) -> Result<usize, PickleError> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| PickleError::BadArray { pos, reason: format!("shape {shape:?} has too many elements") })
}

/// Checks that `raw` holds exactly `count` elements of `dtype`, the check every array passes before
/// its data are used (decoded by [`decode_elements`], or kept as a view by `load_view`).
pub fn check_data_len(dtype: &DType, count: usize, raw: &[u8], pos: usize) -> Result<(), PickleError> {
    if dtype.kind == DTypeKind::Object {
        return Err(PickleError::BadArray { pos, reason: "object arrays carry a list, not raw bytes".into() });
    }
    if dtype.itemsize == 0 {
        // Zero-width strings would let a tiny file declare billions of elements.
        return if count == 0 { Ok(()) } else { Err(PickleError::BadArray { pos, reason: format!("dtype {dtype} has zero-width elements") }) };
    }
    let expected = count.checked_mul(dtype.itemsize);
    if expected != Some(raw.len()) {
        return Err(PickleError::BadArray {
            pos,
            reason: format!("{count} elements of {dtype} need {} bytes of data, found {}", expected.map_or_else(|| "too many".to_string(), |n| n.to_string()), raw.len()),
        });
    }
    Ok(())
}

/// Decodes `count` elements of `dtype` from the memory image `raw` (in the file's order, C or Fortran).
///
/// The length check comes first, so no allocation is ever sized from `shape` alone: every element has
/// its bytes in `raw`, which is part of the input.
pub fn decode_elements(dtype: &DType, count: usize, raw: &[u8], pos: usize) -> Result<ArrayData, PickleError> {
    check_data_len(dtype, count, raw, pos)?;
    if dtype.itemsize == 0 {
        return Ok(match dtype.kind {
            DTypeKind::Unicode => ArrayData::Str(Vec::new()),
            _ => ArrayData::Bytes(Vec::new()),
        });
    }
    if let Some(format) = FloatFormat::of(dtype) {
        let mut values = Vec::with_capacity(count);
        format.extend_f32(raw, &mut values);
        return Ok(ArrayData::F32(values));
    }
    let big = dtype.byte_order == ByteOrder::Big;
    let chunks = raw.chunks_exact(dtype.itemsize);
    Ok(match (dtype.kind, dtype.itemsize) {
        (DTypeKind::Int, n @ (1 | 2 | 4 | 8)) => {
            let shift = 64 - 8 * n as u32;
            // Sign-extend by shifting the value to the top of the word and back.
            ArrayData::I64(chunks.map(|c| ((word_n(c, big) << shift) as i64) >> shift).collect())
        }
        (DTypeKind::UInt, 1 | 2 | 4 | 8) => {
            let values =
                chunks.map(|c| i64::try_from(word_n(c, big))).collect::<Result<Vec<i64>, _>>().map_err(|_| PickleError::BadArray { pos, reason: "uint64 value above the i64 range".into() })?;
            ArrayData::I64(values)
        }
        (DTypeKind::Bool, 1) => ArrayData::Bool(raw.iter().map(|&b| b != 0).collect()),
        (DTypeKind::Bytes, _) => ArrayData::Bytes(chunks.map(|c| trim_nuls(c).to_vec()).collect()),
        (DTypeKind::Unicode, _) => {
            let strings =
                chunks.map(|c| ucs4_to_string(c, big)).collect::<Option<Vec<String>>>().ok_or_else(|| PickleError::BadArray { pos, reason: "unicode array holds an invalid code point".into() })?;
            ArrayData::Str(strings)
        }
        _ => {
            return Err(PickleError::UnsupportedDtype { dtype: dtype.to_string(), reason: "unsupported element size" });
        }
    })
}

/// The float element formats, and their conversion to `f32`: the one conversion both the decoding
/// reader and array views use, so both give bit-identical values (f64 is rounded to nearest, values
/// beyond the f32 range become ±inf, exactly like numpy's `astype(np.float32)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatFormat {
    F16 { big: bool },
    F32 { big: bool },
    F64 { big: bool },
}

impl FloatFormat {
    /// The format of a float dtype; `None` for anything else.
    pub fn of(dtype: &DType) -> Option<FloatFormat> {
        // Floats always carry a byte order (see `parse_dtype_spec`); anything else reads as little.
        let big = dtype.byte_order == ByteOrder::Big;
        match (dtype.kind, dtype.itemsize) {
            (DTypeKind::Float, 2) => Some(FloatFormat::F16 { big }),
            (DTypeKind::Float, 4) => Some(FloatFormat::F32 { big }),
            (DTypeKind::Float, 8) => Some(FloatFormat::F64 { big }),
            _ => None,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            FloatFormat::F16 { .. } => 2,
            FloatFormat::F32 { .. } => 4,
            FloatFormat::F64 { .. } => 8,
        }
    }

    /// Appends the elements of `raw` (whole elements; a partial one at the end is ignored) as `f32`.
    /// The match is outside the loops: these run over gigabytes of MOSEI features.
    pub fn extend_f32(self, raw: &[u8], out: &mut Vec<f32>) {
        let chunks = raw.chunks_exact(self.size());
        match self {
            FloatFormat::F32 { big: true } => {
                out.extend(chunks.map(|c| f32::from_be_bytes(fixed(c))));
            }
            FloatFormat::F32 { big: false } => {
                out.extend(chunks.map(|c| f32::from_le_bytes(fixed(c))));
            }
            FloatFormat::F64 { big: true } => {
                out.extend(chunks.map(|c| f64::from_be_bytes(fixed(c)) as f32));
            }
            FloatFormat::F64 { big: false } => {
                out.extend(chunks.map(|c| f64::from_le_bytes(fixed(c)) as f32));
            }
            FloatFormat::F16 { big } => {
                out.extend(chunks.map(|c| f16_to_f32(word_n(c, big) as u16)));
            }
        }
    }

    /// One element (`bytes` is exactly [`FloatFormat::size`] long; anything else reads as 0).
    pub fn to_f32(self, bytes: &[u8]) -> f32 {
        match self {
            FloatFormat::F32 { big: true } => f32::from_be_bytes(fixed(bytes)),
            FloatFormat::F32 { big: false } => f32::from_le_bytes(fixed(bytes)),
            FloatFormat::F64 { big: true } => f64::from_be_bytes(fixed(bytes)) as f32,
            FloatFormat::F64 { big: false } => f64::from_le_bytes(fixed(bytes)) as f32,
            FloatFormat::F16 { big } => {
                if bytes.len() == 2 {
                    f16_to_f32(word_n(bytes, big) as u16)
                } else {
                    0.0
                }
            }
        }
    }
}

/// A `chunks_exact` piece as a fixed-size array (the fallback is unreachable, and avoids a panic path).
fn fixed<const N: usize>(chunk: &[u8]) -> [u8; N] {
    chunk.try_into().unwrap_or([0; N])
}

/// Reads an element of 1 to 8 bytes as an unsigned word (callers pass `chunks_exact` pieces).
fn word_n(chunk: &[u8], big: bool) -> u64 {
    let fold = |acc: u64, &b: &u8| (acc << 8) | u64::from(b);
    if big { chunk.iter().fold(0, fold) } else { chunk.iter().rev().fold(0, fold) }
}

fn trim_nuls(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &bytes[..end]
}

/// One `U` element: UCS-4 code units with NUL padding at the end (numpy strips it on read).
fn ucs4_to_string(chunk: &[u8], big: bool) -> Option<String> {
    let mut units: Vec<u32> = chunk.chunks_exact(4).map(|c| word_n(c, big) as u32).collect();
    while units.last() == Some(&0) {
        units.pop();
    }
    units.into_iter().map(char::from_u32).collect()
}

/// IEEE half to single precision (numpy `float16`).
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exponent = u32::from((bits >> 10) & 0x1f);
    let mantissa = u32::from(bits & 0x3ff);
    let magnitude = match (exponent, mantissa) {
        (0, 0) => 0,
        // Subnormal half: value = mantissa * 2^-24, exact in f32.
        (0, m) => (m as f32 * f32::from_bits(0x3380_0000)).to_bits(),
        (0x1f, 0) => 0x7f80_0000,
        (0x1f, m) => 0x7fc0_0000 | (m << 13),
        (e, m) => ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(sign | magnitude)
}

/// Reorders elements stored in Fortran (column-major) order into C (row-major) order.
///
/// `data.len()` must equal the product of `shape` (the callers check it).
pub fn fortran_to_c<T: Clone>(data: Vec<T>, shape: &[usize]) -> Vec<T> {
    if shape.iter().filter(|&&d| d > 1).count() <= 1 {
        return data; // With at most one non-trivial axis both orders coincide.
    }
    // Column-major strides, walked with a row-major odometer.
    let mut strides = vec![0usize; shape.len()];
    let mut acc = 1usize;
    for (stride, &dim) in strides.iter_mut().zip(shape) {
        *stride = acc;
        acc = acc.saturating_mul(dim);
    }
    let mut index = vec![0usize; shape.len()];
    let mut offset = 0usize;
    let mut out = Vec::with_capacity(data.len());
    for _ in 0..data.len() {
        match data.get(offset) {
            Some(v) => out.push(v.clone()),
            None => break, // Unreachable when the caller's length check holds; never index out of bounds.
        }
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            offset += strides[axis];
            if index[axis] < shape[axis] {
                break;
            }
            offset -= strides[axis] * index[axis];
            index[axis] = 0;
        }
    }
    out
}

/// Applies [`fortran_to_c`] to whichever element type the array holds.
pub fn reorder_fortran(data: ArrayData, shape: &[usize]) -> ArrayData {
    match data {
        ArrayData::F32(v) => ArrayData::F32(fortran_to_c(v, shape)),
        ArrayData::I64(v) => ArrayData::I64(fortran_to_c(v, shape)),
        ArrayData::Bool(v) => ArrayData::Bool(fortran_to_c(v, shape)),
        ArrayData::Bytes(v) => ArrayData::Bytes(fortran_to_c(v, shape)),
        ArrayData::Str(v) => ArrayData::Str(fortran_to_c(v, shape)),
        // Object arrays are pickled as a list in C order whatever their memory layout.
        ArrayData::Object(v) => ArrayData::Object(v),
        // Raw elements stay in the file's order; whoever reads them knows it (`RawBuffer::fortran_order`).
        ArrayData::Raw(raw) => ArrayData::Raw(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_specs() {
        let d = parse_dtype_spec("f4").unwrap();
        assert_eq!((d.kind, d.itemsize), (DTypeKind::Float, 4));
        assert_eq!(parse_dtype_spec(">f8").unwrap().to_string(), ">f8");
        assert_eq!(parse_dtype_spec("b1").unwrap().to_string(), "|b1");
        assert_eq!(parse_dtype_spec("U5").unwrap().to_string(), "<U5");
        assert_eq!(parse_dtype_spec("O8").unwrap().to_string(), "|O");
        assert_eq!(parse_dtype_spec("u1").unwrap().to_string(), "|u1");
        for bad in ["", "c16", "M8[ns]", "V4", "f16", "x", "f4f", "S99999999999"] {
            assert!(parse_dtype_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn half_floats() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn fortran_order_3d() {
        // C-order values 0..24 of shape (2, 3, 4), laid out column-major.
        let shape = [2, 3, 4];
        let mut fortran = vec![0; 24];
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    fortran[i + 2 * (j + 3 * k)] = i * 12 + j * 4 + k;
                }
            }
        }
        assert_eq!(fortran_to_c(fortran, &shape), (0..24).collect::<Vec<_>>());
    }

    #[test]
    fn integer_sign_extension_and_order() {
        let d = parse_dtype_spec(">i2").unwrap();
        assert_eq!(decode_elements(&d, 2, &[0xff, 0xfe, 0x00, 0x05], 0).unwrap(), ArrayData::I64(vec![-2, 5]));
        let d = parse_dtype_spec("<i4").unwrap();
        assert_eq!(decode_elements(&d, 1, &[0xff, 0xff, 0xff, 0xff], 0).unwrap(), ArrayData::I64(vec![-1]));
        let d = parse_dtype_spec("<u8").unwrap();
        assert!(decode_elements(&d, 1, &[0xff; 8], 0).is_err());
        assert!(decode_elements(&d, 2, &[0; 8], 0).is_err());
    }
}
