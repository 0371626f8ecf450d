//! `safetensors_stream` writes files that the `safetensors` crate reads back byte for byte, and refuses
//! streams whose byte counts do not match what was declared.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use mmkd_pickle::safetensors_stream::{Dtype, StreamWriter, TensorSpec, header};
use mmkd_pickle::{ReadOptions, read_mosei_file, read_mosei_view};
use safetensors::SafeTensors;
use safetensors::tensor::Dtype as StDtype;

fn metadata(ids: &[&str]) -> BTreeMap<String, String> {
    BTreeMap::from([("ids".to_string(), serde_json::to_string(ids).expect("json"))])
}

#[test]
fn written_file_reads_back_with_the_safetensors_crate() {
    let f32_data: Vec<u8> = (0..6u32).flat_map(|i| (i as f32 * 0.5 - 1.0).to_le_bytes()).collect();
    let i64_data: Vec<u8> = [-1i64, 0, 7, i64::MAX].iter().flat_map(|x| x.to_le_bytes()).collect();
    let labels: Vec<u8> = [3.0f32, -0.25].iter().flat_map(|x| x.to_le_bytes()).collect();
    let tensors = vec![
        TensorSpec::new("video", Dtype::F32, vec![2, 3]),
        TensorSpec::new("lengths_video", Dtype::I64, vec![4]),
        TensorSpec::new("empty", Dtype::F32, vec![0, 5]),
        // Names that need escaping in JSON.
        TensorSpec::new("lab\"els\\ü", Dtype::F32, vec![2]),
    ];
    let meta = metadata(&["vid\"1_0", "vid/2"]);
    let mut writer = StreamWriter::new(Vec::new(), tensors, &meta).expect("header");
    let file_len = writer.file_len();
    {
        let mut t = writer.begin("video").expect("begin");
        // In uneven pieces, as a streaming producer would.
        t.write_all(&f32_data[..5]).expect("write");
        assert_eq!(t.remaining(), 19);
        t.write_all(&f32_data[5..]).expect("write");
        t.finish().expect("complete");
    }
    let mut t = writer.begin("lengths_video").expect("begin");
    t.write_all(&i64_data).expect("write");
    t.finish().expect("complete");
    writer.begin("empty").expect("begin").finish().expect("complete");
    let mut t = writer.begin("lab\"els\\ü").expect("begin");
    t.write_all(&labels).expect("write");
    t.finish().expect("complete");
    let bytes = writer.finish().expect("finished");
    assert_eq!(bytes.len() as u64, file_len);

    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    assert_eq!(header_len % 8, 0, "data start aligned to 8");
    let header_text = std::str::from_utf8(&bytes[8..8 + header_len]).expect("utf-8 header");
    assert!(header_text.starts_with('{'));

    let st = SafeTensors::deserialize(&bytes).expect("the safetensors crate accepts it");
    let mut names = st.names();
    names.sort();
    assert_eq!(names, ["empty", "lab\"els\\ü", "lengths_video", "video"]);
    for (name, dtype, shape, data) in [
        ("video", StDtype::F32, vec![2, 3], &f32_data[..]),
        ("lengths_video", StDtype::I64, vec![4], &i64_data[..]),
        ("empty", StDtype::F32, vec![0, 5], &[][..]),
        ("lab\"els\\ü", StDtype::F32, vec![2], &labels[..]),
    ] {
        let t = st.tensor(name).expect("tensor");
        assert_eq!(t.dtype(), dtype, "{name}");
        assert_eq!(t.shape(), shape.as_slice(), "{name}");
        assert_eq!(t.data(), data, "{name}: byte-exact");
    }
    let (_, read_meta) = SafeTensors::read_metadata(&bytes).expect("metadata");
    let read_meta = read_meta.metadata().clone().expect("has metadata");
    let ids: Vec<String> = serde_json::from_str(&read_meta["ids"]).expect("ids are a JSON list");
    assert_eq!(ids, ["vid\"1_0", "vid/2"]);
}

#[test]
fn without_metadata_there_is_no_metadata_entry() {
    let (head, lengths) = header(&[TensorSpec::new("a", Dtype::I64, vec![1])], &BTreeMap::new()).expect("header");
    assert_eq!(lengths, [8]);
    let text = std::str::from_utf8(&head[8..]).expect("utf-8");
    assert!(!text.contains("__metadata__"), "{text}");
    let mut file = head.clone();
    file.extend(5i64.to_le_bytes());
    let st = SafeTensors::deserialize(&file).expect("valid");
    assert_eq!(st.tensor("a").expect("a").data(), 5i64.to_le_bytes());
}

#[test]
fn byte_counts_and_order_are_checked() {
    let specs = || vec![TensorSpec::new("a", Dtype::F32, vec![2]), TensorSpec::new("b", Dtype::I64, vec![1])];
    let none = BTreeMap::new();
    let message = |e: std::io::Error| e.to_string();

    // Too many bytes for a tensor.
    let mut w = StreamWriter::new(Vec::new(), specs(), &none).expect("header");
    let mut t = w.begin("a").expect("begin");
    let err = message(t.write_all(&[0; 9]).unwrap_err());
    assert!(err.contains("tensor 'a'") && err.contains("needs 8 bytes"), "{err}");

    // Too few: finishing the tensor, beginning the next or finishing the file fails.
    let mut w = StreamWriter::new(Vec::new(), specs(), &none).expect("header");
    let mut t = w.begin("a").expect("begin");
    t.write_all(&[0; 4]).expect("write");
    let err = message(t.finish().unwrap_err());
    assert!(err.contains("tensor 'a' needs 4 more bytes"), "{err}");
    let err = message(w.begin("b").unwrap_err());
    assert!(err.contains("only 4 were written"), "{err}");

    // Out of order, unknown, or missing at the end.
    let mut w = StreamWriter::new(Vec::new(), specs(), &none).expect("header");
    let err = message(w.begin("b").unwrap_err());
    assert!(err.contains("'a' is next"), "{err}");
    let mut t = w.begin("a").expect("begin");
    t.write_all(&[0; 8]).expect("write");
    t.finish().expect("complete");
    let err = message(w.finish().unwrap_err());
    assert!(err.contains("tensor 'b' was declared but not written"), "{err}");

    // Declarations.
    for (bad, what) in [
        (vec![TensorSpec::new("x", Dtype::F32, vec![1]), TensorSpec::new("x", Dtype::F32, vec![1])], "declared twice"),
        (vec![TensorSpec::new("__metadata__", Dtype::F32, vec![1])], "reserved"),
        (vec![TensorSpec::new("", Dtype::F32, vec![1])], "reserved"),
        (vec![TensorSpec::new("huge", Dtype::I64, vec![usize::MAX, 4])], "too large"),
    ] {
        let err = message(StreamWriter::new(Vec::new(), bad, &none).unwrap_err());
        assert!(err.contains(what), "{err}");
    }
}

#[test]
fn a_streamed_fixture_equals_the_decoded_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pickles/mmsa_p2_f64.pkl");
    let input = std::fs::read(&path).expect("fixture");
    let view = read_mosei_view(&input, &path, &ReadOptions::STRICT).expect("loads");
    let owned = read_mosei_file(&path).expect("loads");
    for (split, decoded) in view.splits.iter().zip(&owned.splits) {
        let n = split.n();
        let mut specs = Vec::new();
        let mut arrays = Vec::new();
        for (name, array) in [("text", split.text.as_ref()), ("audio", split.audio.as_ref()), ("video", Some(&split.vision))] {
            let array = array.expect("complete file");
            specs.push(TensorSpec::new(name, Dtype::F32, array.shape().to_vec()));
            arrays.push((name, array));
        }
        specs.push(TensorSpec::new("labels", Dtype::F32, vec![n]));
        let ids: Vec<&str> = split.ids.iter().map(String::as_str).collect();
        let mut w = StreamWriter::new(Vec::new(), specs, &metadata(&ids)).expect("header");
        for (name, array) in arrays {
            let mut t = w.begin(name).expect("begin");
            array.write_f32_le(&mut t, |_| {}).expect("streams");
            t.finish().expect("complete");
        }
        let mut t = w.begin("labels").expect("begin");
        for x in split.labels.as_deref().expect("labels") {
            t.write_all(&x.to_le_bytes()).expect("write");
        }
        t.finish().expect("complete");
        let bytes = w.finish().expect("finished");

        let st = SafeTensors::deserialize(&bytes).expect("valid");
        for (name, want) in [("text", &decoded.text.as_ref().expect("text").data), ("audio", &decoded.audio.as_ref().expect("audio").data), ("video", &decoded.vision.data)] {
            let want: Vec<u8> = want.iter().flat_map(|x| x.to_le_bytes()).collect();
            assert_eq!(st.tensor(name).expect("tensor").data(), want, "{name}");
        }
    }
}
