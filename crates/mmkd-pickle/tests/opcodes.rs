//! Hand-built byte streams for individual opcodes, the allow-list, numpy reconstruction and the limits.

use mmkd_pickle::pickle::{ArrayData, ByteOrder, DTypeKind, Limits, NdArray, PickleError, Value, allowed_globals, load, load_with_limits};

// ---- stream builders ---------------------------------------------------------------------------

/// A protocol-2 stream: PROTO 2, `body`, STOP.
fn p2(body: &[u8]) -> Vec<u8> {
    [b"\x80\x02".as_slice(), body, b"."].concat()
}

fn value(bytes: &[u8]) -> Value {
    load(bytes).unwrap_or_else(|e| panic!("{e}")).value
}

fn error(bytes: &[u8]) -> PickleError {
    let err = load(bytes).expect_err("the stream should be refused");
    assert!(!err.to_string().contains('\n'), "error messages are one line: {err}");
    err
}

/// SHORT_BINUNICODE.
fn s(text: &str) -> Vec<u8> {
    [&[0x8c, text.len() as u8][..], text.as_bytes()].concat()
}

/// BINUNICODE (protocol 2's only string opcode).
fn x(text: &str) -> Vec<u8> {
    [&b"X"[..], &(text.len() as u32).to_le_bytes(), text.as_bytes()].concat()
}

fn global(module: &str, name: &str) -> Vec<u8> {
    format!("c{module}\n{name}\n").into_bytes()
}

fn int(v: u8) -> Vec<u8> {
    vec![b'K', v]
}

fn str_(v: &str) -> Value {
    Value::Str(v.to_string())
}

/// `numpy.dtype(spec, False, True)` followed by BUILD with `(3, order, None, None, None, elsize, -1, 0)`.
fn dtype(spec: &str, order: &str, elsize: i32) -> Vec<u8> {
    [global("numpy", "dtype"), s(spec), b"\x89\x88\x87R(K\x03".to_vec(), s(order), b"NNNJ".to_vec(), elsize.to_le_bytes().to_vec(), b"J\xff\xff\xff\xffK\x00tb".to_vec()].concat()
}

/// numpy's array pickle: `_reconstruct(ndarray, (0,), b'b')`, BUILD `(1, shape, dtype, fortran, raw)`.
fn ndarray(dtype_ops: &[u8], shape: &[u8], fortran: bool, raw: &[u8]) -> Vec<u8> {
    let mut out = [global("numpy._core.multiarray", "_reconstruct"), global("numpy", "ndarray"), b"K\x00\x85C\x01b\x87R(K\x01(".to_vec()].concat();
    for &d in shape {
        out.extend(int(d));
    }
    out.push(b't');
    out.extend(dtype_ops);
    out.push(if fortran { 0x88 } else { 0x89 });
    out.push(b'B');
    out.extend((raw.len() as u32).to_le_bytes());
    out.extend(raw);
    out.extend(b"tb");
    out
}

fn array(v: &Value) -> &NdArray {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v:?}"))
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

// ---- scalars -----------------------------------------------------------------------------------

#[test]
fn scalar_opcodes() {
    assert_eq!(value(&p2(b"N")), Value::None);
    assert_eq!(value(&p2(b"\x88")), Value::Bool(true));
    assert_eq!(value(&p2(b"\x89")), Value::Bool(false));
    assert_eq!(value(&p2(b"J\xfb\xff\xff\xff")), Value::Int(-5));
    assert_eq!(value(&p2(b"J\x00\x00\x01\x00")), Value::Int(65536));
    assert_eq!(value(&p2(b"K\xff")), Value::Int(255));
    assert_eq!(value(&p2(b"M\x34\x12")), Value::Int(0x1234));
    assert_eq!(value(&p2(b"G\x3f\xf8\x00\x00\x00\x00\x00\x00")), Value::Float(1.5));
    // Text forms protocol 2 still allows.
    assert_eq!(value(&p2(b"I01\n")), Value::Bool(true));
    assert_eq!(value(&p2(b"I00\n")), Value::Bool(false));
    assert_eq!(value(&p2(b"I-7\n")), Value::Int(-7));
    assert_eq!(value(&p2(b"L123L\n")), Value::Int(123));
    assert_eq!(value(&p2(b"F0.25\n")), Value::Float(0.25));
    assert_eq!(error(&p2(b"Iabc\n")).kind(), "Malformed");
}

#[test]
fn long_integers() {
    assert_eq!(value(&p2(b"\x8a\x00")), Value::Int(0));
    assert_eq!(value(&p2(b"\x8a\x01\xff")), Value::Int(-1));
    assert_eq!(value(&p2(b"\x8a\x02\x00\x01")), Value::Int(256));
    assert_eq!(value(&p2(b"\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80")), Value::Int(i64::MIN));
    // Nine bytes that are still an i64 (sign extension), and one that is not (2**63).
    assert_eq!(value(&p2(b"\x8a\x09\xfe\xff\xff\xff\xff\xff\xff\xff\xff")), Value::Int(-2));
    let big = b"\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00";
    assert_eq!(value(&p2(big)), Value::BigInt(vec![0, 0, 0, 0, 0, 0, 0, 0x80, 0]));
    assert_eq!(value(&p2(b"\x8b\x02\x00\x00\x00\x00\x01")), Value::Int(256));
    assert_eq!(error(&p2(b"\x8b\xff\xff\xff\xff")).kind(), "Malformed");
    assert_eq!(error(&p2(b"\x8b\x00\x00\x00\x7f")).kind(), "Truncated");
}

// ---- strings and bytes -------------------------------------------------------------------------

#[test]
fn string_and_bytes_opcodes() {
    assert_eq!(value(&p2(&x("héllo"))), str_("héllo"));
    assert_eq!(value(&p2(&s("abc"))), str_("abc"));
    assert_eq!(value(&p2(b"\x8d\x02\x00\x00\x00\x00\x00\x00\x00hi")), str_("hi"));
    // Python 2 `str` is a byte string.
    assert_eq!(value(&p2(b"T\x03\x00\x00\x00\x00\xe9z")), Value::Bytes(vec![0, 0xe9, b'z']));
    assert_eq!(value(&p2(b"U\x02ab")), Value::Bytes(b"ab".to_vec()));
    assert_eq!(value(&p2(b"B\x02\x00\x00\x00\x01\x02")), Value::Bytes(vec![1, 2]));
    assert_eq!(value(&p2(b"C\x01\xff")), Value::Bytes(vec![0xff]));
    assert_eq!(value(&p2(b"\x8e\x01\x00\x00\x00\x00\x00\x00\x00z")), Value::Bytes(b"z".to_vec()));
    assert_eq!(value(&p2(b"\x96\x01\x00\x00\x00\x00\x00\x00\x00z")), Value::Bytes(b"z".to_vec()));
    // READONLY_BUFFER on an in-band buffer is a no-op.
    assert_eq!(value(&p2(b"C\x01z\x98")), Value::Bytes(b"z".to_vec()));
    // Lengths beyond the input are truncation, whatever their size.
    assert_eq!(error(&p2(b"X\xff\xff\xff\xff")).kind(), "Truncated");
    assert_eq!(error(&p2(b"\x8e\xff\xff\xff\xff\xff\xff\xff\xff")).kind(), "Truncated");
    assert_eq!(error(&p2(b"\x96\x00\x00\x00\x00\x00\x00\x00\x80")).kind(), "Truncated");
    assert_eq!(error(&p2(b"T\xff\xff\xff\xff")).kind(), "Malformed");
    // A lone surrogate (Python's 'surrogatepass') reads as a replacement character.
    assert_eq!(value(&p2(b"X\x03\x00\x00\x00\xed\xa0\x80")), str_("\u{fffd}\u{fffd}\u{fffd}"));
}

// ---- containers --------------------------------------------------------------------------------

#[test]
fn container_opcodes() {
    let list = Value::List(vec![Value::Int(1), Value::Int(2), Value::Int(3)]);
    assert_eq!(value(&p2(b"]K\x01a(K\x02K\x03e")), list);
    assert_eq!(value(&p2(b"(K\x01K\x02K\x03l")), list);
    let dict = value(&p2(&[b"}".to_vec(), s("a"), int(1), b"s(".to_vec(), s("b"), int(2), s("a"), int(3), b"u".to_vec()].concat()));
    assert_eq!(dict.get("a"), Some(&Value::Int(3)), "the last value of a repeated key wins");
    assert_eq!(dict.get("b"), Some(&Value::Int(2)));
    assert_eq!(dict.get("zz"), None);
    let dict = value(&p2(&[b"(".to_vec(), s("k"), b"Nd".to_vec()].concat()));
    assert_eq!(dict, Value::Dict(vec![(str_("k"), Value::None)]));
    assert_eq!(value(&p2(b")")), Value::Tuple(vec![]));
    assert_eq!(value(&p2(b"N\x85")), Value::Tuple(vec![Value::None]));
    assert_eq!(value(&p2(b"NK\x01\x86")), Value::Tuple(vec![Value::None, Value::Int(1)]));
    assert_eq!(value(&p2(b"NNN\x87")), Value::Tuple(vec![Value::None; 3]));
    assert_eq!(value(&p2(b"(NNNNt")), Value::Tuple(vec![Value::None; 4]));
    assert_eq!(value(&p2(b"\x8f(K\x01K\x02\x90")), Value::Set(vec![Value::Int(1), Value::Int(2)]));
    assert_eq!(value(&p2(b"(K\x01\x91")), Value::Set(vec![Value::Int(1)]));
    assert_eq!(error(&p2(b"(K\x01d")).kind(), "Malformed", "odd number of dict items");
    assert_eq!(error(&p2(b"NK\x01a")).kind(), "WrongType", "APPEND to a non-list");
    assert_eq!(error(&p2(b"]NNs")).kind(), "WrongType", "SETITEM on a list");
}

#[test]
fn stack_manipulation() {
    assert_eq!(value(&p2(b"K\x01K\x020")), Value::Int(1));
    assert_eq!(value(&p2(b"K\x01(K\x02K\x031")), Value::Int(1));
    assert_eq!(value(&p2(b"K\x01(0")), Value::Int(1), "POP with nothing above the mark pops the mark");
    assert_eq!(value(&p2(b"K\x012\x86")), Value::Tuple(vec![Value::Int(1), Value::Int(1)]));
    assert_eq!(error(b"\x80\x02.").kind(), "StackUnderflow");
    assert_eq!(error(&p2(b"]N(a")).kind(), "StackUnderflow", "items below a MARK are out of reach");
    assert_eq!(error(&p2(b"Nt")).kind(), "MissingMark");
    assert_eq!(error(&p2(b"N\x87")).kind(), "StackUnderflow");
}

// ---- memo --------------------------------------------------------------------------------------

#[test]
fn memo_opcodes() {
    assert_eq!(value(&p2(b"]p0\n0g0\n")), Value::List(vec![]));
    assert_eq!(value(&p2(b"]q\x070h\x07")), Value::List(vec![]));
    assert_eq!(value(&p2(b"]r\x05\x00\x01\x000j\x05\x00\x01\x00")), Value::List(vec![]));
    assert_eq!(value(&p2(b"K\x09\x940h\x00")), Value::Int(9));
    assert_eq!(error(&p2(b"h\x07")).kind(), "MissingMemo");
    assert_eq!(error(&p2(b"q\x00")).kind(), "StackUnderflow");
    assert_eq!(error(&p2(b"Ng99999999999\n")).kind(), "Malformed");
}

#[test]
fn memo_has_reference_semantics() {
    // A list is memoized, fetched twice into a tuple, then mutated through a third fetch: both tuple
    // slots must see the append, as in Python.
    let stream = p2(b"]q\x00h\x00\x86h\x00K\x05a0");
    let five = Value::List(vec![Value::Int(5)]);
    assert_eq!(value(&stream), Value::Tuple(vec![five.clone(), five]));
}

#[test]
fn numpy_dtype_memoized_before_build_is_shared() {
    // numpy memoizes a dtype before its BUILD sets the byte order; a second array fetches it with GET.
    let first_dtype = [dtype("f4", ">", -1), b"q\x01".to_vec()].concat();
    let first = ndarray(&first_dtype, &[1], false, &1.5f32.to_be_bytes());
    let second = ndarray(b"h\x01", &[1], false, &2.5f32.to_be_bytes());
    let v = value(&p2(&[first, second, b"\x86".to_vec()].concat()));
    let Value::Tuple(items) = v else { panic!("tuple") };
    assert_eq!(array(&items[0]).data, ArrayData::F32(vec![1.5]));
    assert_eq!(array(&items[1]).data, ArrayData::F32(vec![2.5]));
    assert_eq!(array(&items[1]).dtype.byte_order, ByteOrder::Big);
}

// ---- framing and protocol ----------------------------------------------------------------------

#[test]
fn frames_and_protocols() {
    let framed = b"\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00N.";
    assert_eq!(load(framed).unwrap(), mmkd_pickle::pickle::Pickle { protocol: 4, value: Value::None });
    assert_eq!(error(b"\x80\x04\x95\xff\x00\x00\x00\x00\x00\x00\x00N.").kind(), "Truncated");
    assert_eq!(error(b"\x80\x06N.").kind(), "UnsupportedProtocol");
    assert_eq!(load(b"N.").unwrap().protocol, 0, "no PROTO opcode");
    assert_eq!(error(b"").kind(), "MissingStop");
    assert_eq!(error(b"\x80\x02N").kind(), "MissingStop");
    assert_eq!(error(b"\x80").kind(), "Truncated");
    // Bytes after STOP are ignored, as Python does.
    assert_eq!(value(b"\x80\x02N.garbage"), Value::None);
}

#[test]
fn refused_opcodes_are_named() {
    assert!(matches!(error(&p2(b"\x97")), PickleError::OutOfBandBuffer { .. }));
    assert!(matches!(error(&p2(b"\xff")), PickleError::UnknownOpcode { op: 0xff, .. }));
    for (stream, name) in [
        (p2(b"Pid\n"), "PERSID"),
        (p2(b"NQ"), "BINPERSID"),
        (p2(b"(ios\nsystem\n"), "INST"),
        (p2(b"(o"), "OBJ"),
        (p2(b"\x82\x01"), "EXT1"),
        (p2(b"\x83\x01\x00"), "EXT2"),
        (p2(b"\x84\x01\x00\x00\x00"), "EXT4"),
        (p2(b"S'a'\n"), "STRING"),
        (p2(b"Va\n"), "UNICODE"),
    ] {
        match error(&stream) {
            PickleError::UnsupportedOpcode { name: got, .. } => assert_eq!(got, name),
            other => panic!("{name}: {other}"),
        }
    }
}

// ---- the allow-list ----------------------------------------------------------------------------

#[test]
fn every_allowed_global_loads_as_a_marker() {
    let mut count = 0;
    for name in allowed_globals() {
        let v = value(&p2(&global(name.module, name.name)));
        assert_eq!(v, Value::Global(name));
        let v = value(&[b"\x80\x04".to_vec(), s(name.module), s(name.name), b"\x93.".to_vec()].concat());
        assert_eq!(v, Value::Global(name));
        count += 1;
    }
    assert_eq!(count, 18);
}

#[test]
fn anything_else_is_a_forbidden_global() {
    for (module, name) in [
        ("os", "system"),
        ("posix", "system"),
        ("nt", "system"),
        ("subprocess", "Popen"),
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("builtins", "getattr"),
        ("builtins", "__import__"),
        ("__builtin__", "eval"),
        ("numpy", "load"),
        ("numpy.testing._private.utils", "runstring"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("numpy.core.multiarray", "_reconstruct "),
        ("numpy._core", "multiarray._reconstruct"),
        ("copyreg", "_reconstructor"),
        ("collections", "namedtuple"),
    ] {
        let err = error(&p2(&[global(module, name), b")R".to_vec()].concat()));
        assert_eq!(err, PickleError::ForbiddenGlobal { module: module.into(), name: name.into() });
        assert!(err.to_string().contains(&format!("'{module}.{name}'")), "{err}");
    }
    // STACK_GLOBAL names may contain newlines; the message escapes them.
    let err = error(&[b"\x80\x04".to_vec(), s("os\nx"), s("system"), b"\x93.".to_vec()].concat());
    assert!(err.to_string().contains("os\\nx.system"), "{err}");
    assert_eq!(error(&[b"\x80\x04".to_vec(), s("os"), b"K\x01\x93.".to_vec()].concat()).kind(), "WrongType");
}

#[test]
fn calls_of_allowed_functions() {
    // Protocol 2's spelling of bytes: _codecs.encode(str, 'latin1'), and bytes() for empty ones.
    let encode = |text: &str, encoding: &str| p2(&[global("_codecs", "encode"), x(text), x(encoding), b"\x86R".to_vec()].concat());
    assert_eq!(value(&encode("a\u{e9}\u{ff}", "latin1")), Value::Bytes(vec![b'a', 0xe9, 0xff]));
    assert_eq!(value(&encode("\u{e9}", "utf-8")), Value::Bytes("\u{e9}".as_bytes().to_vec()));
    assert_eq!(error(&encode("\u{100}", "latin1")).kind(), "BadCall");
    assert_eq!(error(&encode("a", "rot13")).kind(), "BadCall");
    assert_eq!(value(&p2(&[global("__builtin__", "bytes"), b")R".to_vec()].concat())), Value::Bytes(vec![]));
    assert_eq!(value(&p2(&[global("builtins", "bytearray"), b"C\x02xy\x85R".to_vec()].concat())), Value::Bytes(b"xy".to_vec()));
    let od = [global("collections", "OrderedDict"), b")R".to_vec(), s("a"), int(1), b"s".to_vec()].concat();
    assert_eq!(value(&p2(&od)), Value::Dict(vec![(str_("a"), Value::Int(1))]));
    assert_eq!(value(&p2(&[global("__builtin__", "set"), b"(K\x01K\x02l\x85R".to_vec()].concat())), Value::Set(vec![Value::Int(1), Value::Int(2)]));
    // Misuse of allowed names is an error, never a call of something else.
    assert_eq!(error(&p2(&[global("numpy", "ndarray"), b")R".to_vec()].concat())).kind(), "BadCall");
    assert_eq!(error(&p2(&[global("collections", "OrderedDict"), b"K\x01\x85R".to_vec()].concat())).kind(), "BadCall");
    assert_eq!(error(&p2(b"]NR")).kind(), "WrongType", "REDUCE needs a callable");
    assert_eq!(error(&p2(&[global("numpy", "dtype"), b"NR".to_vec()].concat())).kind(), "WrongType", "REDUCE needs a tuple");
    assert_eq!(error(&p2(&[global("numpy", "dtype"), b"(NNNNNt".to_vec(), b"R".to_vec()].concat())).kind(), "BadCall");
    // NEWOBJ behaves like REDUCE for the allowed classes.
    assert_eq!(value(&p2(&[global("collections", "OrderedDict"), b")\x81".to_vec()].concat())), Value::Dict(vec![]));
}

// ---- numpy -------------------------------------------------------------------------------------

#[test]
fn c_and_fortran_float_arrays() {
    let values = [0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0];
    let c = value(&p2(&ndarray(&dtype("f4", "<", -1), &[2, 3], false, &f32_bytes(&values))));
    let c = array(&c);
    assert_eq!(c.shape, vec![2, 3]);
    assert_eq!(c.data, ArrayData::F32(values.to_vec()));
    assert_eq!(c.dtype.to_string(), "<f4");
    // The same logical array stored column-major: [[0, 1, 2], [3, 4, 5]] -> 0 3 1 4 2 5.
    let f = value(&p2(&ndarray(&dtype("f4", "<", -1), &[2, 3], true, &f32_bytes(&[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]))));
    assert_eq!(array(&f).data, ArrayData::F32(values.to_vec()));
    // float64, big-endian, converted to f32 with the dtype recorded.
    let raw: Vec<u8> = [0.1f64, -2.0].iter().flat_map(|v| v.to_be_bytes()).collect();
    let d = value(&p2(&ndarray(&dtype("f8", ">", -1), &[2], false, &raw)));
    assert_eq!(array(&d).data, ArrayData::F32(vec![0.1f64 as f32, -2.0]));
    assert_eq!(array(&d).dtype.to_string(), ">f8");
    assert_eq!(array(&d).dtype.name(), "float64");
    let h = value(&p2(&ndarray(&dtype("f2", "<", -1), &[1], false, &[0x00, 0x3c])));
    assert_eq!(array(&h).data, ArrayData::F32(vec![1.0]));
}

#[test]
fn integer_bool_and_string_arrays() {
    let i = value(&p2(&ndarray(&dtype("i2", ">", -1), &[2], false, &[0xff, 0xfe, 0x01, 0x00])));
    assert_eq!(array(&i).data, ArrayData::I64(vec![-2, 256]));
    let i = value(&p2(&ndarray(&dtype("i8", "<", -1), &[1], false, &(-3i64).to_le_bytes())));
    assert_eq!(array(&i).data, ArrayData::I64(vec![-3]));
    let u = value(&p2(&ndarray(&dtype("u1", "|", -1), &[2], false, &[0, 255])));
    assert_eq!(array(&u).data, ArrayData::I64(vec![0, 255]));
    let b = value(&p2(&ndarray(&dtype("b1", "|", -1), &[3], false, &[0, 1, 2])));
    assert_eq!(array(&b).data, ArrayData::Bool(vec![false, true, true]));
    assert_eq!(array(&b).dtype.kind, DTypeKind::Bool);
    let ucs4: Vec<u8> = ['a', 'b', 'c', '\0'].iter().flat_map(|&c| (c as u32).to_le_bytes()).collect();
    let u = value(&p2(&ndarray(&dtype("U2", "<", 8), &[2], false, &ucs4)));
    assert_eq!(array(&u).data, ArrayData::Str(vec!["ab".into(), "c".into()]));
    assert_eq!(array(&u).dtype.to_string(), "<U2");
    let sb = value(&p2(&ndarray(&dtype("S3", "|", 3), &[2], false, b"ab\0xyz")));
    assert_eq!(array(&sb).data, ArrayData::Bytes(vec![b"ab".to_vec(), b"xyz".to_vec()]));
    // Object arrays carry a list (in C order whatever the flag says).
    let o = [
        global("numpy._core.multiarray", "_reconstruct"),
        global("numpy", "ndarray"),
        b"K\x00\x85C\x01b\x87R(K\x01(K\x02t".to_vec(),
        dtype("O8", "|", -1),
        b"\x88](".to_vec(),
        s("x"),
        int(7),
        b"etb".to_vec(),
    ]
    .concat();
    let o = value(&p2(&o));
    assert_eq!(array(&o).data, ArrayData::Object(vec![str_("x"), Value::Int(7)]));
}

#[test]
fn python2_numpy_stream() {
    // What numpy under Python 2 wrote: every str is a byte string (SHORT_BINSTRING / BINSTRING),
    // including dict keys, the dtype code, the byte order and the raw data.
    let u = |text: &[u8]| [&[b'U', text.len() as u8][..], text].concat();
    let raw = f32_bytes(&[1.0, -2.0]);
    let stream = [
        b"\x80\x02}q\x00".to_vec(),
        u(b"vision"),
        global("numpy.core.multiarray", "_reconstruct"),
        global("numpy", "ndarray"),
        b"K\x00\x85".to_vec(),
        u(b"b"),
        b"\x87R(K\x01K\x02\x85".to_vec(),
        global("numpy", "dtype"),
        u(b"f4"),
        b"K\x00K\x01\x87R(K\x03".to_vec(),
        u(b"<"),
        b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T".to_vec(),
        (raw.len() as u32).to_le_bytes().to_vec(),
        raw,
        b"tbs.".to_vec(),
    ]
    .concat();
    let v = value(&stream);
    let vision = v.get("vision").expect("byte-string keys match str lookups");
    assert_eq!(array(vision).data, ArrayData::F32(vec![1.0, -2.0]));
    assert_eq!(array(vision).dtype.to_string(), "<f4");
}

#[test]
fn numpy_scalars_and_frombuffer() {
    let scalar = |dtype_ops: Vec<u8>, payload: Vec<u8>| p2(&[global("numpy._core.multiarray", "scalar"), dtype_ops, payload, b"\x86R".to_vec()].concat());
    assert_eq!(value(&scalar(dtype("i8", "<", -1), [&b"C\x08"[..], &5i64.to_le_bytes()].concat())), Value::Int(5));
    assert_eq!(value(&scalar(dtype("f4", "<", -1), [&b"C\x04"[..], &1.5f32.to_le_bytes()].concat())), Value::Float(1.5));
    assert_eq!(value(&scalar(dtype("O8", "|", -1), s("obj"))), str_("obj"));
    assert_eq!(error(&scalar(dtype("i8", "<", -1), b"C\x02\x00\x00".to_vec())).kind(), "BadArray");

    // Protocol 5: _frombuffer(bytearray, dtype, shape, 'F').
    let raw = f32_bytes(&[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    let stream = [
        b"\x80\x05".to_vec(),
        global("numpy._core.numeric", "_frombuffer"),
        b"(\x96".to_vec(),
        (raw.len() as u64).to_le_bytes().to_vec(),
        raw,
        dtype("f4", "<", -1),
        b"K\x02K\x03\x86".to_vec(),
        s("F"),
        b"tR.".to_vec(),
    ]
    .concat();
    let v = value(&stream);
    assert_eq!(array(&v).data, ArrayData::F32(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));
    assert_eq!(array(&v).shape, vec![2, 3]);
}

#[test]
fn inconsistent_arrays_are_refused_without_allocating() {
    let f4 = dtype("f4", "<", -1);
    assert_eq!(error(&p2(&ndarray(&f4, &[2, 3], false, &[0; 20]))).kind(), "BadArray", "data too short");
    assert_eq!(error(&p2(&ndarray(&f4, &[1], false, &[0; 8]))).kind(), "BadArray", "data too long");
    // A shape of 2^60 x 2^60 elements backed by 4 bytes: refused before any allocation.
    let huge = [
        global("numpy._core.multiarray", "_reconstruct"),
        global("numpy", "ndarray"),
        b"K\x00\x85C\x01b\x87R(K\x01(".to_vec(),
        b"\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x10".repeat(2),
        b"t".to_vec(),
        f4.clone(),
        b"\x89C\x04\x00\x00\x00\x00tb".to_vec(),
    ]
    .concat();
    assert_eq!(error(&p2(&huge)).kind(), "BadArray");
    let negative =
        [global("numpy._core.multiarray", "_reconstruct"), global("numpy", "ndarray"), b"K\x00\x85C\x01b\x87R(K\x01(J\xff\xff\xff\xfft".to_vec(), f4.clone(), b"\x89C\x00tb".to_vec()].concat();
    assert_eq!(error(&p2(&negative)).kind(), "BadArray");
    let too_many_dims = ndarray(&f4, &[1; 65], false, &[0; 4]);
    assert_eq!(error(&p2(&too_many_dims)).kind(), "BadArray");
    assert_eq!(error(&p2(&ndarray(&dtype("S0", "|", 0), &[200], false, &[]))).kind(), "BadArray", "zero-width elements");
    // Unsupported dtypes are named.
    assert!(matches!(error(&p2(&dtype("c16", "<", -1))), PickleError::UnsupportedDtype { .. }));
    assert!(matches!(error(&p2(&dtype("M8", "<", -1))), PickleError::UnsupportedDtype { .. }));
    let structured = [global("numpy", "dtype"), s("V8"), b"\x89\x88\x87R".to_vec()].concat();
    assert!(matches!(error(&p2(&structured)), PickleError::UnsupportedDtype { .. }));
    let with_fields = [global("numpy", "dtype"), s("f4"), b"\x89\x88\x87R(K\x03".to_vec(), s("<"), b"N(NtNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb".to_vec()].concat();
    assert!(matches!(error(&p2(&with_fields)), PickleError::UnsupportedDtype { .. }));
    // _reconstruct of anything but numpy.ndarray.
    let subclass = [global("numpy._core.multiarray", "_reconstruct"), global("numpy", "dtype"), b"K\x00\x85C\x01b\x87R".to_vec()].concat();
    assert_eq!(error(&p2(&subclass)).kind(), "BadCall");
}

// ---- limits ------------------------------------------------------------------------------------

#[test]
fn nesting_and_recursion_are_limited() {
    let nested = |depth: usize| p2(&[b"]".repeat(depth), b"a".repeat(depth - 1)].concat());
    assert!(matches!(load(&nested(50)).unwrap().value, Value::List(_)));
    assert_eq!(error(&nested(500)), PickleError::TooDeep { limit: 100 });
    // A list that contains itself.
    assert_eq!(error(&p2(b"]q\x00h\x00a")), PickleError::TooDeep { limit: 100 });
    // Deep nesting is fine for the flat arena: dropping a million-deep stream must not overflow.
    assert_eq!(error(&p2(&[b"]".repeat(300_000), b"a".repeat(299_999)].concat())), PickleError::TooDeep { limit: 100 });
}

#[test]
fn stack_memo_and_object_counts_are_limited() {
    let limits = Limits { max_stack: 100, max_memo: 10, ..Limits::default() };
    let err = load_with_limits(&p2(&b"N".repeat(200)), &limits).unwrap_err();
    assert!(matches!(err, PickleError::LimitExceeded { what: "stack depth", .. }), "{err}");
    let err = load_with_limits(&p2(&b"(".repeat(200)), &limits).unwrap_err();
    assert!(matches!(err, PickleError::LimitExceeded { what: "stack depth", .. }), "{err}");
    let err = load_with_limits(&[b"\x80\x04N".to_vec(), b"\x94".repeat(20)].concat(), &limits).unwrap_err();
    assert!(matches!(err, PickleError::LimitExceeded { what: "memo entries", .. }), "{err}");
    // More objects than one per two input bytes (+4096) is not something any writer produces.
    let err = error(&p2(&b"]".repeat(20_000)));
    assert!(matches!(err, PickleError::LimitExceeded { what: "objects", .. }), "{err}");
}

#[test]
fn a_small_stream_cannot_expand_into_a_huge_allocation() {
    // One 64 KiB buffer, then the same memoized array state BUILT 2000 times: 500 MiB if unchecked.
    let raw = vec![0u8; 1 << 16];
    let state = [b"(K\x01(J\x00\x40\x00\x00t".to_vec(), dtype("f4", "<", -1), b"\x89B".to_vec(), (raw.len() as u32).to_le_bytes().to_vec(), raw, b"tq\x01".to_vec()].concat();
    let one = [global("numpy._core.multiarray", "_reconstruct"), global("numpy", "ndarray"), b"K\x00\x85C\x01b\x87R".to_vec()].concat();
    let mut body = [one.clone(), state, b"b0".to_vec()].concat();
    for _ in 0..2000 {
        body.extend(&one);
        body.extend(b"h\x01b0");
    }
    body.push(b'N');
    let err = error(&p2(&body));
    assert!(matches!(err, PickleError::LimitExceeded { .. }), "{err}");

    // A memoized 1000-item list referenced 100 000 times: the copies are budgeted too.
    let mut body = b"](".to_vec();
    body.extend(b"N".repeat(1000));
    body.extend(b"eq\x00](");
    body.extend(b"h\x00".repeat(100_000));
    body.push(b'e');
    let err = error(&p2(&body));
    assert!(matches!(err, PickleError::LimitExceeded { .. }), "{err}");

    // _codecs.encode of one memoized string, many times.
    let mut body = [global("_codecs", "encode"), b"q\x00".to_vec(), x(&"a".repeat(1 << 16)), b"q\x01".to_vec(), x("latin1"), b"q\x02\x86R0".to_vec()].concat();
    for _ in 0..2000 {
        body.extend(b"h\x00h\x01h\x02\x86R0");
    }
    body.push(b'N');
    let err = error(&p2(&body));
    assert!(matches!(err, PickleError::LimitExceeded { .. }), "{err}");
}
