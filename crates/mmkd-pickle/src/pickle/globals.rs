//! The allow-list: the only globals a stream may name, and what each stands for here.

use super::GlobalName;

/// What an allow-listed global does when called (REDUCE, NEWOBJ) or how it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Callable {
    /// `_reconstruct(ndarray, shape, typecode)`: an empty array that the following BUILD fills.
    Reconstruct,
    /// `numpy.ndarray`: only ever an argument of `_reconstruct`.
    NdArrayType,
    /// `numpy.dtype(spec, align, copy)`, refined by BUILD.
    Dtype,
    /// `scalar(dtype, raw)`: a numpy scalar such as `np.int64(5)`.
    Scalar,
    /// `_frombuffer(buffer, dtype, shape, order)`: how numpy pickles arrays under protocol 5.
    FromBuffer,
    /// `_codecs.encode(text, 'latin1')`: how protocol 2 writes `bytes` from Python 3.
    CodecsEncode,
    /// `collections.OrderedDict()`, filled by SETITEMS like a dict.
    OrderedDict,
    /// `bytearray(...)`, read as bytes.
    ByteArray,
    /// `bytes()`: protocol 2's spelling of an empty `bytes`.
    Bytes,
    /// `set(list)` / `frozenset(list)`: protocol 2's spelling of sets.
    Set,
}

const fn g(module: &'static str, name: &'static str) -> GlobalName {
    GlobalName { module, name }
}

/// The globals a stream may name, with the function each stands for. Every entry is a pure data
/// constructor; nothing here can reach the file system, a shell or an import.
pub(super) static ALLOWED: [(GlobalName, Callable); 18] = [
    (g("numpy.core.multiarray", "_reconstruct"), Callable::Reconstruct),
    (g("numpy._core.multiarray", "_reconstruct"), Callable::Reconstruct),
    (g("numpy", "ndarray"), Callable::NdArrayType),
    (g("numpy", "dtype"), Callable::Dtype),
    (g("numpy.core.multiarray", "scalar"), Callable::Scalar),
    (g("numpy._core.multiarray", "scalar"), Callable::Scalar),
    (g("numpy.core.numeric", "_frombuffer"), Callable::FromBuffer),
    (g("numpy._core.numeric", "_frombuffer"), Callable::FromBuffer),
    (g("_codecs", "encode"), Callable::CodecsEncode),
    (g("collections", "OrderedDict"), Callable::OrderedDict),
    (g("builtins", "bytearray"), Callable::ByteArray),
    (g("__builtin__", "bytearray"), Callable::ByteArray),
    (g("builtins", "bytes"), Callable::Bytes),
    (g("__builtin__", "bytes"), Callable::Bytes),
    (g("builtins", "set"), Callable::Set),
    (g("__builtin__", "set"), Callable::Set),
    (g("builtins", "frozenset"), Callable::Set),
    (g("__builtin__", "frozenset"), Callable::Set),
];

/// The allow-list, for documentation and tests.
pub fn allowed_globals() -> impl Iterator<Item = &'static GlobalName> {
    ALLOWED.iter().map(|(name, _)| name)
}

/// The index in [`ALLOWED`] of `module.name`, if it is allowed.
pub(super) fn position(module: &str, name: &str) -> Option<usize> {
    ALLOWED.iter().position(|(g, _)| g.module == module && g.name == name)
}

/// What the global at `index` in [`ALLOWED`] stands for.
pub(super) fn callable(index: u8) -> Option<Callable> {
    ALLOWED.get(usize::from(index)).map(|(_, c)| *c)
}

/// The global at `index` in [`ALLOWED`].
pub(super) fn global_name(index: u8) -> Option<&'static GlobalName> {
    ALLOWED.get(usize::from(index)).map(|(name, _)| name)
}

/// The first name that stands for `callable`, for messages.
pub(super) fn callable_name(callable: Callable) -> String {
    ALLOWED.iter().find(|(_, c)| *c == callable).map_or_else(String::new, |(g, _)| g.to_string())
}
