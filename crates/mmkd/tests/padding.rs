//! The padding side end to end: the same clips zero-padded at the start (`mult_pad_start.pkl`)
//! and at the end (`mult_pad_end.pkl`) are inspected, converted and trained on by the `mmkd`
//! binary, and give identical datasets.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value as Json;

fn mmkd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mmkd")).args(args).env("RAYON_NUM_THREADS", "1").output().expect("run mmkd")
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pickles").join(name)
}

fn json(path: &Path) -> Json {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const SIDES: [(&str, &str); 2] = [("start", "mult_pad_start.pkl"), ("end", "mult_pad_end.pkl")];

#[test]
fn inspect_reports_each_fixtures_padding_side() {
    for (side, name) in SIDES {
        let out = ok(mmkd(&["data", "inspect", s(&fixture(name)), "--json"]));
        let report: Json = serde_json::from_slice(&out.stdout).unwrap();
        let padding = report["padding"].as_array().expect("a padding list");
        let names: Vec<&str> = padding.iter().map(|m| m["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["text", "audio", "vision"], "{name}");
        let expected = json(&fixture(name).with_extension("expected.json"));
        for m in padding {
            let want = &expected["padding"][m["name"].as_str().unwrap()];
            assert_eq!(m["side"], side, "{name}");
            for key in ["side", "start", "end", "both", "none", "empty"] {
                assert_eq!(m[key], want[key], "{name} {} {key}", m["name"]);
            }
        }

        let out = ok(mmkd(&["data", "inspect", s(&fixture(name))]));
        let text = String::from_utf8_lossy(&out.stdout);
        let vision = text.lines().skip_while(|l| !l.starts_with("padding")).find(|l| l.starts_with("vision")).expect("a vision padding line");
        assert_eq!(vision.split_whitespace().nth(1), Some(side), "{text}");
    }
}

/// Every tensor of a converted split file, by name, as raw bytes with its shape.
fn tensors(path: &Path) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<_> = st.tensors().into_iter().map(|(name, t)| (name, t.shape().to_vec(), t.data().to_vec())).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn i64s(bytes: &[u8]) -> Vec<u64> {
    bytes.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u64).collect()
}

#[test]
fn converted_start_and_end_padding_are_identical_and_train_alike() {
    let tmp = tempfile::Builder::new().prefix("mmkd-padding-").tempdir().unwrap();
    let dirs: Vec<PathBuf> = SIDES.iter().map(|(side, _)| tmp.path().join(side)).collect();
    for ((side, name), dir) in SIDES.iter().zip(&dirs) {
        ok(mmkd(&["data", "convert", s(&fixture(name)), "--out", s(dir)]));
        let recorded = &json(&dir.join("manifest.json"))["provenance"]["padding"];
        for modality in ["text", "audio", "vision"] {
            assert_eq!(recorded[modality]["side"], *side, "{name} {modality}");
            assert_eq!(recorded[modality]["moved_to_end"], *side == "start", "{name} {modality}");
        }

        let out = ok(mmkd(&["data", "inspect", s(dir), "--json"]));
        let report: Json = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(&report["padding"], recorded, "inspect DIR shows the manifest's padding");
        let out = ok(mmkd(&["data", "inspect", s(dir)]));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("padding in the pickle"), "{text}");
        assert_eq!(text.contains("real frames moved first"), *side == "start", "{text}");
    }

    let expected = json(&fixture("mult_pad_end.pkl").with_extension("expected.json"));
    for split in ["train", "valid", "test"] {
        let file = format!("{split}.safetensors");
        let (start, end) = (tensors(&dirs[0].join(&file)), tensors(&dirs[1].join(&file)));
        let names: Vec<&str> = start.iter().map(|t| t.0.as_str()).collect();
        for name in ["video", "audio", "text", "lengths_video", "lengths_audio", "lengths_text"] {
            assert!(names.contains(&name), "{split}: {name} missing from {names:?}");
        }
        assert_eq!(start, end, "{split}: every tensor identical");
        for (tensor, modality) in [("lengths_text", "text"), ("lengths_audio", "audio"), ("lengths_video", "vision")] {
            let got = i64s(&start.iter().find(|t| t.0 == tensor).unwrap().2);
            let want: Vec<u64> = expected["real_lengths"][split][modality].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            assert_eq!(got, want, "{split} {tensor}: the real frames");
        }
    }

    // A student with the key-padding mask sees the same data, so it trains to the same result.
    let mut acc7 = Vec::new();
    for dir in &dirs {
        let run = dir.join("run");
        ok(mmkd(&["train", "student", "--data", s(dir), "--preset", "smoke", "--out", s(&run), "--epochs", "1", "--config", "3", "--key-padding-mask", "true"]));
        let eval = json(&run.join("eval.json"));
        assert!(eval["acc7"].is_number(), "{eval}");
        acc7.push((eval["acc7"].clone(), eval["mae"].clone()));
    }
    assert_eq!(acc7[0], acc7[1], "start- and end-padded data train alike");
}
