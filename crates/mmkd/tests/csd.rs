//! `mmkd data csd` against the SDK itself (issue 18). The fixtures are tests/fixtures/csd/
//! (tests/fixtures/make_csd_fixtures.py): four sequences written by h5py, once with its defaults
//! (old-style groups, contiguous datasets), and gzip-chunked with new-style groups in one chunk and
//! in chunks of 37 rows, and what
//! CMU-MultimodalSDK 0.0.6's `mmdataset.align` made of them in both align modes
//! (expected_none.json, expected_words.json). mmkd must give the same clips, ids, splits, labels,
//! frames and lengths; and refuse broken files (tests/fixtures/csd/bad/) with one line naming the
//! file, the video and the field.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mmkd::data::native;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/csd")
}

fn mmkd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mmkd")).args(args).env("RAYON_NUM_THREADS", "1").env_remove("MMKD_DEVICE").output().expect("run mmkd")
}

fn ok(args: &[&str]) -> Output {
    let out = mmkd(args);
    assert!(out.status.success(), "mmkd {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `data csd` on the set in `dir` (labels replaced by `labels` when given).
fn build(dir: &Path, labels: Option<&Path>, out: &Path, extra: &[&str]) -> Output {
    let labels = labels.map(Path::to_path_buf).unwrap_or_else(|| dir.join("labels.csd"));
    let (text, audio, video) = (dir.join("text.csd"), dir.join("audio.csd"), dir.join("video.csd"));
    let mut args = vec!["data", "csd", "--labels", s(&labels), "--text", s(&text), "--audio", s(&audio), "--video", s(&video), "--out", s(out)];
    args.extend_from_slice(extra);
    mmkd(&args)
}

fn expected(mode: &str) -> serde_json::Value {
    let path = fixtures().join(format!("expected_{mode}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Every clip of `expected` in `split_field`'s split `name`, in order, against the written split:
/// ids, labels, true lengths, the first `cut` rows of each modality and zeros after.
fn check_split(dataset: &mmkd::data::Dataset, expected: &serde_json::Value, split_field: &str, cuts: [usize; 3], tolerance: f64) {
    let shape = &dataset.shape;
    for name in native::SPLITS {
        let split = dataset.split(name).unwrap();
        let clips: Vec<&serde_json::Value> = expected["clips"].as_array().unwrap().iter().filter(|c| c[split_field].as_str() == Some(name)).collect();
        let ids: Vec<&str> = clips.iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert_eq!(split.ids, ids, "{name}: clip ids and order");
        let lengths = split.lengths.as_ref().expect("data csd stores lengths");
        for (i, clip) in clips.iter().enumerate() {
            assert_eq!(split.labels[i], clip["label"].as_f64().unwrap() as f32, "{}: label", ids[i]);
            let modalities = [
                ("text", "text", split.text.as_ref().unwrap(), shape.text_len, shape.text_dim, &lengths.text),
                ("audio", "audio", split.audio.as_ref().unwrap(), shape.audio_len, shape.audio_dim, &lengths.audio),
                ("video", "video_features", &split.video, shape.video_len, shape.video_dim, &lengths.video),
            ];
            for (m, ((modality, field, values, len, dim, lens), cut)) in modalities.into_iter().zip(cuts).enumerate() {
                assert_eq!(len, cut, "{modality}: cut length");
                let rows = clip[field].as_array().unwrap();
                assert_eq!(lens[i], rows.len().min(cut), "{}: {modality} length (modality {m})", ids[i]);
                let clip_values = &values[i * len * dim..(i + 1) * len * dim];
                for (t, frame) in clip_values.chunks(dim).enumerate() {
                    match rows.get(t) {
                        Some(row) => {
                            for (c, (&got, want)) in frame.iter().zip(row.as_array().unwrap()).enumerate() {
                                let want = want.as_f64().unwrap();
                                let err = (got as f64 - want).abs();
                                assert!(err <= tolerance * want.abs().max(1.0), "{} {modality} row {t} col {c}: {got} against the SDK's {want}", ids[i]);
                            }
                        }
                        None => assert!(frame.iter().all(|&x| x == 0.0), "{} {modality} row {t}: padding must be zeros", ids[i]),
                    }
                }
            }
        }
    }
}

/// Both align modes, both HDF5 layouts, whole clips: exactly the SDK's clips and frames (the
/// word means to float32 rounding: the SDK averages float32 in float32, mmkd in float64).
#[test]
fn data_csd_gives_the_sdks_clips_in_both_modes_and_layouts() {
    for mode in ["none", "words"] {
        let want = expected(mode);
        for layout in ["contiguous", "chunked", "small_chunks"] {
            let tmp = tempfile::tempdir().unwrap();
            let out = tmp.path().join("data");
            let folds = fixtures().join("folds.json");
            let built = build(&fixtures().join(layout), None, &out, &["--folds", s(&folds), "--align", mode, "--lengths", "400,400,400"]);
            assert!(built.status.success(), "{mode} {layout}: {}", String::from_utf8_lossy(&built.stderr));
            let dataset = native::load(&out).unwrap();
            let tolerance = if mode == "none" { 0.0 } else { 1e-6 };
            check_split(&dataset, &want, "split", [400, 400, 400], tolerance);
            // What was dropped, as the SDK drops it.
            let err = String::from_utf8_lossy(&built.stderr);
            let skipped = want["skipped_segments"].as_array().unwrap().len();
            assert!(err.contains(&format!("skipped {skipped} labels segments")), "{err}");
            assert!(err.contains("dropped 1 videos in no fold"), "{err}");
            let manifest = native::read_manifest(&out).unwrap();
            assert!(!manifest.synthetic);
            let log = std::fs::read_to_string(out.join("csd.log")).unwrap();
            assert!(log.contains("write: ") && log.contains(&format!("skipped {skipped} labels segments")) && log.contains("wrote 8 / 4 / 4 clips"), "{log}");
            assert_eq!(manifest.provenance["align"], mode);
            assert!(manifest.source.contains("COVAREP") && manifest.source.contains(&format!("align {mode}")), "{}", manifest.source);
        }
    }
}

/// Cut to a few steps: the first frames kept, the true (cut) lengths stored; and the standard
/// MOSEI folds shipped with mmkd split the fixture's real MOSEI ids as the SDK's fold lists do.
#[test]
fn data_csd_cuts_to_the_first_frames_and_uses_the_standard_folds() {
    let want = expected("none");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("data");
    let built = build(&fixtures().join("contiguous"), None, &out, &["--lengths", "1,40,12"]);
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let dataset = native::load(&out).unwrap();
    check_split(&dataset, &want, "split_mosei", [1, 40, 12], 0.0);
    let inspected = String::from_utf8_lossy(&ok(&["data", "inspect", s(&out), "--json"]).stdout).to_string();
    assert!(inspected.contains("\"has_lengths\": true"), "{inspected}");
}

/// `study --data DIR` runs on what `data csd` wrote.
#[test]
fn a_study_runs_on_a_csd_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let folds = fixtures().join("folds.json");
    let built = build(&fixtures().join("contiguous"), None, &data, &["--folds", s(&folds), "--lengths", "4,20,20"]);
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let out = tmp.path().join("study");
    ok(&["study", "--data", s(&data), "--preset", "smoke", "--seeds", "2", "--rows", "c5-attention", "--epochs", "1", "--out", s(&out)]);
    let table = std::fs::read_to_string(out.join("TABLE.md")).unwrap();
    assert!(table.contains("data") && !table.to_lowercase().contains("synthetic data"), "{table}");
    let rows: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("table.json")).unwrap()).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 5);
}

/// Exit code 2 and one line naming every needle.
fn refused(out: Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(lines.len(), 1, "one error line: {err}");
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} not in: {err}");
    }
}

/// Broken files: refused with the file, the video and the field named.
#[test]
fn broken_sequences_are_refused_naming_file_video_and_field() {
    let bad = fixtures().join("bad");
    let good = fixtures().join("contiguous");
    let cases: [(&str, &[&str]); 7] = [
        ("not_hdf5.csd", &["not_hdf5.csd", "not an HDF5 file"]),
        ("no_data_group.csd", &["no_data_group.csd", "\"All Labels\"", "no \"data\" group"]),
        ("rows_mismatch.csd", &["rows_mismatch.csd", "video \"GdFP_p4eQX0\"", "\"features\" has 5 rows but \"intervals\" has 4"]),
        ("nan_interval.csd", &["nan_interval.csd", "video \"hh04W3xXa5s\"", "field \"intervals\"", "row 0", "finite"]),
        ("reversed_interval.csd", &["reversed_interval.csd", "video \"hh04W3xXa5s\"", "field \"intervals\"", "row 0", "end is before the start"]),
        ("labels_3cols.csd", &["labels_3cols.csd", "field \"features\"", "7 columns", "got 3"]),
        ("truncated.csd", &["truncated.csd", "truncated", "ends at byte 17096", "has 8548 bytes"]),
    ];
    for (file, needles) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("data");
        let folds = fixtures().join("folds.json");
        refused(build(&good, Some(&bad.join(file)), &out, &["--folds", s(&folds)]), needles);
        assert!(!out.join("manifest.json").exists(), "{file}: no dataset may be left behind");
        let log = std::fs::read_to_string(out.join("csd.log")).unwrap();
        assert!(log.contains("error: ") && log.contains(file), "{file}: the log records the failure: {log}");
    }
    // Folds naming a video no file has (a typo), a bad --lengths, a missing file.
    let tmp = tempfile::tempdir().unwrap();
    let folds = tmp.path().join("folds.json");
    std::fs::write(&folds, r#"{"train": ["hh04W3xXa5s", "no_such_video"], "valid": [], "test": []}"#).unwrap();
    refused(build(&good, None, &tmp.path().join("a"), &["--folds", s(&folds)]), &["folds.json", "\"no_such_video\"", "none of the four .csd files"]);
    std::fs::write(&folds, r#"{"train": ["hh04W3xXa5s"], "valid": ["hh04W3xXa5s"], "test": []}"#).unwrap();
    refused(build(&good, None, &tmp.path().join("a"), &["--folds", s(&folds)]), &["folds.json", "\"hh04W3xXa5s\"", "both \"train\" and \"valid\""]);
    let bad_lengths = build(&good, None, &tmp.path().join("a"), &["--lengths", "50,500"]);
    assert_eq!(bad_lengths.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_lengths.stderr).contains("TEXT,AUDIO,VIDEO"));
    refused(build(&good, Some(&tmp.path().join("absent.csd")), &tmp.path().join("a"), &[]), &["absent.csd"]);
}

/// `data inspect FILE.csd`: root, metadata, counts, frame rate and problems, also as JSON.
#[test]
fn inspect_describes_a_sequence_and_counts_its_problems() {
    let audio = fixtures().join("chunked/audio.csd");
    let report: serde_json::Value = serde_json::from_slice(&ok(&["data", "inspect", s(&audio), "--json"]).stdout).unwrap();
    assert_eq!(report["root"], "COVAREP");
    assert_eq!(report["format"], "csd");
    assert_eq!(report["metadata"]["root name"], "COVAREP");
    assert_eq!(report["dtypes"]["float64"], report["videos"]);
    assert_eq!(report["feature_dims"]["4"], report["videos"]);
    let rate = report["frame_rate_hz"].as_f64().unwrap();
    assert!((rate - 100.0).abs() < 1.0, "COVAREP at 100 Hz: {rate}");
    assert_eq!(report["intervals"]["videos_out_of_order"], 1, "the fixture stores one audio video out of order");
    let text = String::from_utf8_lossy(&ok(&["data", "inspect", s(&fixtures().join("bad/reversed_interval.csd"))]).stdout).to_string();
    assert!(text.contains("1 reversed"), "{text}");
    let text = String::from_utf8_lossy(&ok(&["data", "inspect", s(&fixtures().join("bad/nan_interval.csd"))]).stdout).to_string();
    assert!(text.contains("1 non-finite"), "{text}");
    let text = String::from_utf8_lossy(&ok(&["data", "inspect", s(&fixtures().join("bad/rows_mismatch.csd"))]).stdout).to_string();
    assert!(text.contains("1 videos cannot be read") && text.contains("GdFP_p4eQX0"), "{text}");
}
