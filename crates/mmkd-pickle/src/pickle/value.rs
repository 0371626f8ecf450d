//! The owned value tree a pickle decodes to.
//!
//! The tree is deliberately plain data: there are no callables in it, only a [`Value::Global`] marker for
//! the few allow-listed names a stream may mention, so nothing a file contains can ever run.

use std::fmt;

/// A module-qualified name that the loader accepted from its allow-list (see [`super::allowed_globals`]).
///
/// Only static names exist: a global outside the allow-list is an error, so a `Value` can never name one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GlobalName {
    /// The module, e.g. `numpy.core.multiarray`.
    pub module: &'static str,
    /// The name within the module, e.g. `_reconstruct`.
    pub name: &'static str,
}

impl fmt::Display for GlobalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.module, self.name)
    }
}

/// A decoded Python object.
///
/// Dicts keep their pairs in insertion order; like Python, a key set twice keeps the last value, which
/// [`Value::get`] returns (deduplicating while loading would cost a quadratic scan on hostile input).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` or `False`.
    Bool(bool),
    /// An `int` that fits `i64`.
    Int(i64),
    /// An integer outside `i64`, kept as the little-endian two's-complement bytes LONG1/LONG4 carried.
    BigInt(Vec<u8>),
    /// A `float`.
    Float(f64),
    /// A `str`; invalid UTF-8 (such as a lone surrogate) is replaced by U+FFFD.
    Str(String),
    /// `bytes`, `bytearray` and Python 2 `str` (which is a byte string; numpy stored raw data in it).
    Bytes(Vec<u8>),
    /// A `list`.
    List(Vec<Value>),
    /// A `tuple`.
    Tuple(Vec<Value>),
    /// A `dict` or `OrderedDict`, as its pairs in insertion order.
    Dict(Vec<(Value, Value)>),
    /// `set` or `frozenset`, in stream order (no deduplication).
    Set(Vec<Value>),
    /// A `numpy.ndarray`.
    NdArray(Box<NdArray>),
    /// A `numpy.dtype` that appeared on its own rather than inside an array.
    Dtype(DType),
    /// An allow-listed global that was loaded but never called (e.g. a bare `numpy.ndarray`).
    Global(&'static GlobalName),
}

impl Value {
    /// A short Python-flavoured name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::NdArray(_) => "numpy array",
            Value::Dtype(_) => "numpy dtype",
            Value::Global(_) => "global",
        }
    }

    /// The text of a `str`, or of a byte string decoded as Latin-1 (how Python 2 `str` keys read back).
    pub fn as_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            Value::Str(s) => Some(std::borrow::Cow::Borrowed(s)),
            Value::Bytes(b) => Some(std::borrow::Cow::Owned(b.iter().map(|&c| char::from(c)).collect())),
            _ => None,
        }
    }

    /// Whether this value is the string key `key` (a `str`, or Python 2 byte string with the same bytes).
    pub fn is_key(&self, key: &str) -> bool {
        match self {
            Value::Str(s) => s == key,
            Value::Bytes(b) => b.as_slice() == key.as_bytes(),
            _ => false,
        }
    }

    /// Looks up a string key in a dict; the last pair with that key wins, as in Python.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(pairs) => pairs.iter().rev().find(|(k, _)| k.is_key(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The array, if this is a numpy array.
    pub fn as_array(&self) -> Option<&NdArray> {
        match self {
            Value::NdArray(a) => Some(a),
            _ => None,
        }
    }
}

/// The element kinds this reader understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DTypeKind {
    /// numpy `b1` / `?`.
    Bool,
    /// Signed integers, numpy `i1` to `i8`.
    Int,
    /// Unsigned integers, numpy `u1` to `u8`.
    UInt,
    /// Floats, numpy `f2`, `f4` and `f8`.
    Float,
    /// numpy `S`: fixed-width, NUL-padded byte strings.
    Bytes,
    /// numpy `U`: fixed-width UCS-4 strings.
    Unicode,
    /// numpy `O`: Python objects, pickled as a list.
    Object,
}

/// The byte order of a dtype's elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    /// numpy's `<`.
    Little,
    /// numpy's `>`.
    Big,
    /// Single-byte and object types, numpy's `|`.
    NotApplicable,
}

/// A numpy dtype as the file described it: the original element type is kept so consumers can report it
/// even after float data were converted to `f32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DType {
    /// The element type.
    pub kind: DTypeKind,
    /// Bytes per element (for `U`, four per character; for `O`, the pointer size the writer used).
    pub itemsize: usize,
    /// The byte order of the elements; numpy's native `=` is resolved to this machine's.
    pub byte_order: ByteOrder,
}

impl DType {
    /// numpy's short name, e.g. `float32`, `int64`, `bool`, `<U12`.
    pub fn name(&self) -> String {
        let bits = self.itemsize * 8;
        match self.kind {
            DTypeKind::Bool => "bool".to_string(),
            DTypeKind::Int => format!("int{bits}"),
            DTypeKind::UInt => format!("uint{bits}"),
            DTypeKind::Float => format!("float{bits}"),
            DTypeKind::Bytes | DTypeKind::Unicode => self.to_string(),
            DTypeKind::Object => "object".to_string(),
        }
    }

    /// Whether the elements are bools, integers or floats.
    pub fn is_numeric(&self) -> bool {
        matches!(self.kind, DTypeKind::Bool | DTypeKind::Int | DTypeKind::UInt | DTypeKind::Float)
    }
}

/// Formats like numpy's `dtype.str`: `<f4`, `>f8`, `|b1`, `<U5`, `|S3`, `|O`.
impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let order = match self.byte_order {
            ByteOrder::Little => '<',
            ByteOrder::Big => '>',
            ByteOrder::NotApplicable => '|',
        };
        match self.kind {
            DTypeKind::Bool => write!(f, "{order}b{}", self.itemsize),
            DTypeKind::Int => write!(f, "{order}i{}", self.itemsize),
            DTypeKind::UInt => write!(f, "{order}u{}", self.itemsize),
            DTypeKind::Float => write!(f, "{order}f{}", self.itemsize),
            DTypeKind::Bytes => write!(f, "{order}S{}", self.itemsize),
            DTypeKind::Unicode => write!(f, "{order}U{}", self.itemsize / 4),
            DTypeKind::Object => write!(f, "{order}O"),
        }
    }
}

/// Array elements, always in C (row-major) order whatever order the file stored them in.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    /// Every float dtype (`f2`, `f4`, `f8`, either byte order), converted to `f32` for the consumer.
    F32(Vec<f32>),
    /// Every signed or unsigned integer dtype that fits `i64`.
    I64(Vec<i64>),
    /// numpy `b1` elements.
    Bool(Vec<bool>),
    /// numpy `S` elements with their trailing NUL padding removed.
    Bytes(Vec<Vec<u8>>),
    /// numpy `U` elements with their trailing NUL padding removed.
    Str(Vec<String>),
    /// numpy `O` elements.
    Object(Vec<Value>),
    /// Float elements left undecoded, as the stream's own bytes: only [`super::load_view`] produces
    /// this (never [`super::load`]); the bytes are [`super::PickleView::buffers`]`[index]`, in the file's
    /// dtype, byte order and memory order (see [`RawBuffer`]).
    Raw(RawBuffer),
}

/// Where the elements of an undecoded float array are: an entry of [`super::PickleView::buffers`],
/// already checked to hold exactly `len` elements of the array's dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawBuffer {
    /// The index in [`super::PickleView::buffers`].
    pub index: usize,
    /// Number of elements (the product of the shape).
    pub len: usize,
    /// Whether the elements are in Fortran (column-major) order; C (row-major) otherwise.
    pub fortran_order: bool,
}

impl ArrayData {
    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            ArrayData::F32(v) => v.len(),
            ArrayData::I64(v) => v.len(),
            ArrayData::Bool(v) => v.len(),
            ArrayData::Bytes(v) => v.len(),
            ArrayData::Str(v) => v.len(),
            ArrayData::Object(v) => v.len(),
            ArrayData::Raw(raw) => raw.len,
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A rebuilt numpy array.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    /// The dimensions, outermost first.
    pub shape: Vec<usize>,
    /// The dtype the file declared (the data may have been widened or narrowed, see [`ArrayData`]).
    pub dtype: DType,
    /// The elements, in C order (or, for [`ArrayData::Raw`], as the file stored them).
    pub data: ArrayData,
}

impl NdArray {
    /// The elements as `f32` when the array is numeric (floats as stored, integers and bools converted);
    /// `None` for other elements, and for [`ArrayData::Raw`] (whose bytes are not in the array).
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        match &self.data {
            ArrayData::F32(v) => Some(v.clone()),
            ArrayData::I64(v) => Some(v.iter().map(|&x| x as f32).collect()),
            ArrayData::Bool(v) => Some(v.iter().map(|&x| f32::from(u8::from(x))).collect()),
            _ => None,
        }
    }

    /// Like [`NdArray::to_f32`], but moves `f32` data out instead of copying it (the MOSEI arrays are
    /// gigabytes; a copy would double the peak memory). Returns the array itself when its elements are
    /// not numeric or are [`ArrayData::Raw`].
    pub fn into_f32(self) -> Result<Vec<f32>, NdArray> {
        match self.data {
            ArrayData::F32(v) => Ok(v),
            ArrayData::I64(v) => Ok(v.into_iter().map(|x| x as f32).collect()),
            ArrayData::Bool(v) => Ok(v.into_iter().map(|x| f32::from(u8::from(x))).collect()),
            data => Err(NdArray { data, ..self }),
        }
    }
}
