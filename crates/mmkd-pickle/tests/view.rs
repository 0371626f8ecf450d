//! The view reader (`read_mosei_view`, `ArrayView`) against the owning reader: for every fixture of
//! `tests/fixtures/make_pickles.py`, under both `ReadOptions::STRICT` and `VIDEO_ONLY`, the same
//! arrays (after `write_f32_le`), labels, ids, lengths, dtypes, repairs and inspect report, or the same
//! error; plus `write_f32_le` itself on every float format and memory order, across chunk boundaries.

use std::borrow::Cow;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use mmkd_pickle::mosei::MODALITIES;
use mmkd_pickle::pickle::{self, ArrayData, ByteOrder, DType, DTypeKind, Value};
use mmkd_pickle::view::CHUNK_ELEMENTS;
use mmkd_pickle::{ArrayView, MappedFile, MoseiFile, MoseiView, NonFinite, ReadOptions, inspect, read_mosei_bytes_with, read_mosei_file, read_mosei_view, read_mosei_view_with_progress};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pickles")
}

/// Every fixture pickle, sorted.
fn fixtures() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .expect("tests/fixtures/pickles exists (run tests/fixtures/make_pickles.py)")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pkl"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 26, "found only {} fixtures", paths.len());
    paths
}

/// What `write_f32_le` writes, checked against its own promises (byte count, progress, chunking).
fn written(view: &ArrayView<'_>) -> (Vec<f32>, NonFinite) {
    let mut out = ChunkLog::default();
    let mut last = 0u64;
    let counts = view
        .write_f32_le(&mut out, |done| {
            assert!(done > last, "progress must grow: {done} after {last}");
            last = done;
        })
        .expect("writing to memory succeeds");
    assert_eq!(out.bytes.len() as u64, view.f32_byte_len());
    assert_eq!(last, view.f32_byte_len(), "the last progress call reports everything");
    assert!(out.largest <= 4 * CHUNK_ELEMENTS, "a write of {} bytes", out.largest);
    let values = out.bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    (values, counts)
}

/// A writer that keeps the bytes and the largest single write.
#[derive(Default)]
struct ChunkLog {
    bytes: Vec<u8>,
    largest: usize,
    writes: usize,
}

impl Write for ChunkLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.largest = self.largest.max(buf.len());
        self.writes += 1;
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|x| x.to_bits()).collect()
}

/// Compares a view with the owning reader's result; returns the mismatches.
fn compare(name: &str, input: &[u8], owned: &MoseiFile, view: &MoseiView<'_>) -> Vec<String> {
    let mut errors = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            errors.push(format!("{name}: {what}"));
        }
    };
    check((&view.path, view.layout, view.protocol) == (&owned.path, owned.layout, owned.protocol), "path, layout or protocol differ".into());
    check(view.repairs == owned.repairs, format!("repairs {:?} != {:?}", view.repairs, owned.repairs));
    check(inspect(view) == inspect(owned), "inspect reports differ".into());
    check(view.splits.len() == owned.splits.len(), "split count differs".into());
    let input_range = input.as_ptr_range();
    for (v, o) in view.splits.iter().zip(&owned.splits) {
        let split = &o.name;
        check(v.name == o.name, format!("split {} != {split}", v.name));
        check(v.n() == o.n(), format!("{split}: n differs"));
        check(v.labels == o.labels, format!("{split}: labels differ"));
        check(v.ids == o.ids, format!("{split}: ids differ"));
        check((&v.audio_lengths, &v.vision_lengths) == (&o.audio_lengths, &o.vision_lengths), format!("{split}: lengths differ"));
        check(v.dtypes == o.dtypes, format!("{split}: dtypes differ"));
        check(v.nonfinite == o.nonfinite, format!("{split}: non-finite counts differ"));
        for key in MODALITIES {
            let (vm, om) = match (v.modality(key), o.modality(key)) {
                (Some(vm), Some(om)) => (vm, om),
                (None, None) => continue,
                _ => {
                    check(false, format!("{split}/{key}: present in only one"));
                    continue;
                }
            };
            check(vm.shape() == om.shape, format!("{split}/{key}: shape {:?} != {:?}", vm.shape(), om.shape));
            let (values, counts) = written(vm);
            check(bits(&values) == bits(&om.data), format!("{split}/{key}: written values differ from the decoded ones"));
            check(Some(&counts) == o.nonfinite.get(key), format!("{split}/{key}: write_f32_le repaired {counts:?}"));
            check(vm.count_nonfinite(|_| {}) == counts, format!("{split}/{key}: count_nonfinite differs from write_f32_le"));
            // Zero copy: float data are slices of the input, except where protocol 2 encoded them.
            let float = o.dtypes.get(key).is_some_and(|d| d.contains('f'));
            let want_borrowed = float && owned.protocol >= 3;
            check(vm.is_borrowed() == want_borrowed, format!("{split}/{key}: borrowed {} (protocol {}, dtype {:?})", vm.is_borrowed(), owned.protocol, o.dtypes.get(key)));
            if vm.is_borrowed() {
                let range = vm.bytes().as_ptr_range();
                check(input_range.start <= range.start && range.end <= input_range.end, format!("{split}/{key}: borrowed bytes are not inside the input"));
            }
        }
    }
    errors
}

fn same_outcome(path: &Path, opts: &ReadOptions, label: &str) -> (Vec<String>, bool) {
    let name = format!("{} ({label})", path.file_name().and_then(|n| n.to_str()).unwrap_or("?"));
    let input = std::fs::read(path).expect("fixture readable");
    let owned = read_mosei_bytes_with(&input, path, opts);
    let view = read_mosei_view(&input, path, opts);
    match (owned, view) {
        (Ok(owned), Ok(view)) => (compare(&name, &input, &owned, &view), true),
        (Err(o), Err(v)) => {
            let same = (o.kind(), o.split(), o.key(), o.to_string()) == (v.kind(), v.split(), v.key(), v.to_string());
            let errors = if same { Vec::new() } else { vec![format!("{name}: error '{v}' != '{o}'")] };
            (errors, false)
        }
        (Ok(_), Err(v)) => (vec![format!("{name}: only the view reader fails: {v}")], true),
        (Err(o), Ok(_)) => (vec![format!("{name}: only the owning reader fails: {o}")], false),
    }
}

#[test]
fn view_reader_matches_owning_reader_on_every_fixture() {
    let mut errors = Vec::new();
    let mut counted = Vec::new();
    for (opts, label) in [(ReadOptions::STRICT, "STRICT"), (ReadOptions::VIDEO_ONLY, "VIDEO_ONLY")] {
        let (mut valid, mut broken) = (0, 0);
        for path in fixtures() {
            let (e, ok) = same_outcome(&path, &opts, label);
            errors.extend(e);
            if ok {
                valid += 1;
            } else {
                broken += 1;
            }
        }
        counted.push((label, valid, broken));
    }
    println!("(options, loaded, refused): {counted:?}");
    assert!(errors.is_empty(), "{} mismatches:\n{}", errors.len(), errors.join("\n"));
    // STRICT: the complete fixtures load (the 6 of make_pickles.py, its two padding ones, and any
    // other complete pickle in the folder), the rest are refused; VIDEO_ONLY also loads the
    // video-only ones and the two whose defect it relaxes.
    assert!(counted[0].1 >= 8, "{counted:?}");
    assert!(counted[0].2 >= 20, "{counted:?}");
    assert!(counted[1].1 >= 10, "{counted:?}");
}

#[test]
fn broken_fixtures_give_the_documented_errors_through_the_view_reader() {
    let path = fixture_dir().join("broken_wrong_shape.pkl");
    let input = std::fs::read(&path).expect("fixture readable");
    let err = read_mosei_view(&input, &path, &ReadOptions::STRICT).unwrap_err();
    assert_eq!(err.to_string(), format!("{}: split 'valid', key 'audio': expected a 3-d array (N, L, D), found shape (3, 3)", path.display()));
    for (file, kind, pickle_kind) in [
        ("broken_forbidden_global.pkl", "Pickle", Some("ForbiddenGlobal")),
        ("broken_out_of_band.pkl", "Pickle", Some("OutOfBandBuffer")),
        ("broken_truncated.pkl", "Pickle", Some("Truncated")),
        ("broken_nan_label.pkl", "NonFiniteLabel", None),
        ("broken_object_features.pkl", "UnsupportedDtype", None),
    ] {
        let path = fixture_dir().join(file);
        let input = std::fs::read(&path).expect("fixture readable");
        let err = read_mosei_view(&input, &path, &ReadOptions::STRICT).unwrap_err();
        assert_eq!(err.kind(), kind, "{file}: {err}");
        assert_eq!(err.pickle_error().map(|e| e.kind()), pickle_kind, "{file}: {err}");
    }
}

#[test]
fn mapped_file_reads_like_the_file_reader() {
    let path = fixture_dir().join("mult_p4_defects.pkl");
    let map = MappedFile::open(&path).expect("maps");
    assert_eq!(map.path(), path.as_path());
    assert_eq!(map.bytes(), std::fs::read(&path).expect("readable").as_slice());
    let mut scanned = 0;
    let view = read_mosei_view_with_progress(&map, &path, &ReadOptions::STRICT, |done| {
        assert!(done > scanned);
        scanned = done;
    })
    .expect("loads");
    let owned = read_mosei_file(&path).expect("loads");
    let feature_bytes: usize = view.splits.iter().flat_map(|s| MODALITIES.iter().filter_map(|k| s.modality(k))).map(|v| v.bytes().len()).sum();
    assert_eq!(scanned, feature_bytes as u64, "progress covers every feature byte");
    assert!(compare("mult_p4_defects.pkl", &map, &owned, &view).is_empty());
    assert_eq!(inspect(&view).to_string(), inspect(&owned).to_string());

    let missing = Path::new("/nonexistent/mosei.pkl");
    let err = MappedFile::open(missing).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "the system's kind, with the file named in the message");
    assert!(err.to_string().starts_with("/nonexistent/mosei.pkl: cannot read the file"), "{err}");

    // An empty file maps (to nothing) and is refused like any truncated pickle.
    let empty = tempfile::NamedTempFile::new().expect("temp file");
    let map = MappedFile::open(empty.path()).expect("maps an empty file");
    let err = read_mosei_view(&map, empty.path(), &ReadOptions::STRICT).unwrap_err();
    assert_eq!(err.pickle_error().map(|e| e.kind()), Some("MissingStop"));
}

#[test]
fn load_view_leaves_float_arrays_in_the_input() {
    let path = fixture_dir().join("mult_p4_f64.pkl");
    let input = std::fs::read(&path).expect("fixture readable");
    let view = pickle::load_view(&input).expect("loads");
    let owned = pickle::load(&input).expect("loads");
    assert_eq!(view.protocol, owned.protocol);
    let train = view.value.get("train").expect("train");
    let vision = train.get("vision").and_then(Value::as_array).expect("vision");
    let ArrayData::Raw(raw) = &vision.data else {
        panic!("vision should be raw, is {:?}", vision.dtype);
    };
    let bytes = view.raw(raw).expect("buffer");
    assert_eq!(raw.len * vision.dtype.itemsize, bytes.len());
    assert!(matches!(view.buffers[raw.index], Cow::Borrowed(_)));
    let range = input.as_ptr_range();
    assert!(range.contains(&bytes.as_ptr()));
    // The same array, decoded by `load`, has the same shape and dtype.
    let decoded = owned.value.get("train").and_then(|t| t.get("vision")).and_then(Value::as_array).expect("vision");
    assert_eq!((&decoded.shape, decoded.dtype), (&vision.shape, vision.dtype));
    assert_eq!(decoded.data.len(), raw.len);
    // Non-float values are decoded as usual: ids are strings in both.
    assert_eq!(train.get("id"), owned.value.get("train").and_then(|t| t.get("id")));
}

/// `numpy.dtype(spec, False, True)` + BUILD `(3, order, None, None, None, -1, -1, 0)`, protocol-0
/// globals (as in `tests/opcodes.rs`).
fn dtype_ops(spec: &str, order: &str) -> Vec<u8> {
    let s = |t: &str| [&[0x8c, t.len() as u8][..], t.as_bytes()].concat();
    [b"cnumpy\ndtype\n".to_vec(), s(spec), b"\x89\x88\x87R(K\x03".to_vec(), s(order), b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb".to_vec()].concat()
}

/// `_reconstruct(ndarray, (0,), b'b')` + BUILD `(1, (2, 3), dtype, fortran, <raw_ops>)`.
fn reconstruct(dtype: &[u8], fortran: bool, raw_ops: &[u8]) -> Vec<u8> {
    [&b"cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R(K\x01K\x02K\x03\x86"[..], dtype, if fortran { b"\x88" } else { b"\x89" }, raw_ops, b"tb"].concat()
}

#[test]
fn every_bytes_opcode_carrying_array_data_stays_in_the_input() {
    let values = [0.5f32, -1.0, 2.0, f32::NAN, 4.0, 5.0];
    let raw: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    let n = raw.len();
    let with_len = |op: &[u8], len: Vec<u8>| [op, &len, &raw].concat();
    let f4 = dtype_ops("f4", "<");
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("BINBYTES8", reconstruct(&f4, false, &with_len(b"\x8e", (n as u64).to_le_bytes().to_vec())), true),
        ("BINBYTES", reconstruct(&f4, false, &with_len(b"B", (n as u32).to_le_bytes().to_vec())), true),
        ("SHORT_BINBYTES", reconstruct(&f4, false, &with_len(b"C", vec![n as u8])), true),
        ("BYTEARRAY8 (bytearray)", reconstruct(&f4, false, &with_len(b"\x96", (n as u64).to_le_bytes().to_vec())), true),
        ("BINSTRING (Python 2)", reconstruct(&f4, false, &with_len(b"T", (n as u32).to_le_bytes().to_vec())), true),
        ("SHORT_BINSTRING (Python 2)", reconstruct(&f4, false, &with_len(b"U", vec![n as u8])), true),
        ("BINBYTES8 under _frombuffer, in a FRAME", [&b"cnumpy._core.numeric\n_frombuffer\n(\x8e"[..], &(n as u64).to_le_bytes(), &raw, &f4, b"K\x02K\x03\x86\x8c\x01CtR"].concat(), true),
        (
            "protocol 2: _codecs.encode(latin-1 text)",
            reconstruct(
                &f4,
                false,
                &[
                    &b"c_codecs\nencode\nX"[..],
                    &(raw.iter().map(|&b| char::from(b)).collect::<String>().len() as u32).to_le_bytes(),
                    raw.iter().map(|&b| char::from(b)).collect::<String>().as_bytes(),
                    b"\x8c\x06latin1\x86R",
                ]
                .concat(),
            ),
            false,
        ),
    ];
    for (what, body, borrowed) in cases {
        let mut stream = b"\x80\x04".to_vec();
        if what.contains("FRAME") {
            stream.push(0x95);
            stream.extend((body.len() as u64 + 1).to_le_bytes());
        }
        stream.extend(&body);
        stream.push(b'.');
        let view = pickle::load_view(&stream).unwrap_or_else(|e| panic!("{what}: {e}"));
        let Value::NdArray(array) = &view.value else {
            panic!("{what}: not an array");
        };
        let ArrayData::Raw(buffer) = array.data else {
            panic!("{what}: not raw: {:?}", array.data);
        };
        let bytes = view.raw(&buffer).expect("buffer");
        assert_eq!(bytes, raw.as_slice(), "{what}");
        assert_eq!(matches!(view.buffers[buffer.index], Cow::Borrowed(_)), borrowed, "{what}");
        if borrowed {
            assert!(stream.as_ptr_range().contains(&bytes.as_ptr()), "{what}");
        }
        // The same stream decoded by `load`: the same values.
        let decoded = pickle::load(&stream).expect("loads");
        let Value::NdArray(decoded) = decoded.value else {
            panic!("{what}: not an array");
        };
        let ArrayData::F32(decoded) = &decoded.data else {
            panic!("{what}: not f32");
        };
        assert_eq!(bits(decoded), bits(&values), "{what}");
        let debug = format!("{view:?}");
        assert!(debug.ends_with("buffers: 1, buffer_bytes: 24 }"), "{what}: Debug should summarise the buffers: {debug}");
    }

    // A length that does not match the shape is the same error in both modes.
    let short = [&b"C"[..], &[n as u8 - 4], &raw[..n - 4]].concat();
    let stream = [&b"\x80\x04"[..], &reconstruct(&f4, false, &short), b"."].concat();
    let err = pickle::load_view(&stream).unwrap_err();
    assert_eq!(err.kind(), "BadArray", "{err}");
    assert_eq!(err, pickle::load(&stream).unwrap_err());
}

// ---- write_f32_le on hand-made views ---------------------------------------------------------

fn dtype(itemsize: usize, byte_order: ByteOrder) -> DType {
    DType { kind: DTypeKind::Float, itemsize, byte_order }
}

/// A value for C index `i` exercising signs, fractions and every kind of non-finite value;
/// all exactly representable in float16.
fn value_at(i: usize) -> f32 {
    match i % 1009 {
        3 => f32::NAN,
        5 => f32::INFINITY,
        7 | 8 => f32::NEG_INFINITY,
        r => (r as f32 - 500.0) / 4.0,
    }
}

/// float16 bits of the values `value_at` produces (exact: |x| <= 127.25 in quarters).
fn f16_bits(x: f32) -> u16 {
    if x.is_nan() {
        return 0x7e00;
    }
    if x.is_infinite() {
        return if x > 0.0 { 0x7c00 } else { 0xfc00 };
    }
    if x == 0.0 {
        return 0;
    }
    let sign = if x < 0.0 { 0x8000 } else { 0 };
    let a = x.abs();
    let exponent = a.log2().floor() as i32;
    let mantissa = ((a / 2f32.powi(exponent) - 1.0) * 1024.0).round() as u16;
    sign | (((exponent + 15) as u16) << 10) | mantissa
}

fn encode(x: f32, itemsize: usize, big: bool) -> Vec<u8> {
    match (itemsize, big) {
        (2, false) => f16_bits(x).to_le_bytes().to_vec(),
        (2, true) => f16_bits(x).to_be_bytes().to_vec(),
        (4, false) => x.to_le_bytes().to_vec(),
        (4, true) => x.to_be_bytes().to_vec(),
        (8, false) => f64::from(x).to_le_bytes().to_vec(),
        _ => f64::from(x).to_be_bytes().to_vec(),
    }
}

#[test]
fn write_f32_le_handles_every_format_and_order_across_chunks() {
    // 147 000 elements: three chunks, the last one partial.
    let shape = [3, 700, 70];
    let [n, l, d] = shape;
    let count = n * l * d;
    assert!(count > 2 * CHUNK_ELEMENTS);
    let expected: Vec<f32> = (0..count)
        .map(|i| {
            let x = value_at(i);
            if x.is_finite() { x } else { 0.0 }
        })
        .collect();
    let mut want = NonFinite::default();
    (0..count).for_each(|i| want.count(value_at(i)));
    assert!(want.nan > 0 && want.pos_inf > 0 && want.neg_inf > 0);

    for itemsize in [2, 4, 8] {
        for big in [false, true] {
            for fortran in [false, true] {
                let order = if big { ByteOrder::Big } else { ByteOrder::Little };
                let mut bytes = vec![0u8; count * itemsize];
                for i in 0..n {
                    for j in 0..l {
                        for k in 0..d {
                            let c = (i * l + j) * d + k;
                            let at = if fortran { i + n * (j + l * k) } else { c };
                            bytes[at * itemsize..(at + 1) * itemsize].copy_from_slice(&encode(value_at(c), itemsize, big));
                        }
                    }
                }
                let view = ArrayView::new(shape, dtype(itemsize, order), fortran, &bytes[..]).expect("consistent view");
                let what = format!("f{itemsize} big={big} fortran={fortran}");
                assert!(view.is_borrowed(), "{what}");
                let (values, counts) = written(&view);
                assert_eq!(bits(&values), bits(&expected), "{what}");
                assert_eq!(counts, want, "{what}");
                assert_eq!(view.count_nonfinite(|_| {}), want, "{what}");
            }
        }
    }
}

#[test]
fn write_f32_le_rounds_float64_like_the_owning_reader() {
    // Beyond the f32 range a float64 becomes +-inf when converted, so it is counted and zeroed.
    let values = [1e300f64, -1e300, 0.1, f64::MIN_POSITIVE, 3.0];
    let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    let view = ArrayView::new([1, 1, 5], dtype(8, ByteOrder::Little), false, bytes).expect("consistent view");
    assert!(!view.is_borrowed());
    let (out, counts) = written(&view);
    assert_eq!(out, [0.0, 0.0, 0.1f64 as f32, 0.0, 3.0]);
    assert_eq!((counts.nan, counts.pos_inf, counts.neg_inf), (0, 1, 1), "{counts:?}");
}

#[test]
fn array_view_checks_its_parts() {
    let f4 = dtype(4, ByteOrder::Little);
    assert!(ArrayView::new([2, 2, 2], f4, false, &[0u8; 32][..]).is_some());
    assert!(ArrayView::new([2, 2, 2], f4, false, &[0u8; 31][..]).is_none());
    assert!(ArrayView::new([usize::MAX, 2, 2], f4, false, &[0u8; 32][..]).is_none());
    let int = DType { kind: DTypeKind::Int, ..f4 };
    assert!(ArrayView::new([2, 2, 2], int, false, &[0u8; 32][..]).is_none());
    let empty = ArrayView::new([0, 5, 3], f4, true, &[][..]).expect("empty");
    assert!(empty.is_empty());
    let (values, counts) = written(&empty);
    assert!(values.is_empty() && counts == NonFinite::default());
    // Other ranks.
    let one = ArrayView::<1>::from_f32([3], &[1.0, f32::NAN, 2.0]).expect("1-d");
    let mut out = Vec::new();
    let counts = one.write_f32_le(&mut out, |_| {}).expect("writes");
    assert_eq!(counts.nan, 1);
    assert_eq!(out.len(), 12);
    let debug = format!("{one:?}");
    assert!(debug.contains("shape: [3]") && debug.contains("<f4"), "{debug}");
}

#[test]
fn write_f32_le_reports_write_errors() {
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let view = ArrayView::<3>::from_f32([1, 1, 2], &[1.0, 2.0]).expect("view");
    let err = view.write_f32_le(&mut Full, |_| {}).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
}
