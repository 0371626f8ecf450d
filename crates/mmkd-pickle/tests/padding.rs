//! Where the zero frames of a clip sit: the padding fixtures hold the same clips zero-padded at the
//! start (`mult_pad_start.pkl`) and at the end (`mult_pad_end.pkl`), see `make_pickles.py`.

use std::path::{Path, PathBuf};

use mmkd_pickle::mosei::{PaddingSide, SPLITS};
use mmkd_pickle::{FeatureArray, MappedFile, ReadOptions, inspect, read_mosei_file, read_mosei_view};
use serde_json::Value as Json;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pickles").join(name)
}

fn expected(name: &str) -> Json {
    let path = fixture(name).with_extension("expected.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("readable")).expect("json")
}

#[test]
fn inspect_reports_the_side_of_each_fixture() {
    for (name, side) in [("mult_pad_start.pkl", "start"), ("mult_pad_end.pkl", "end")] {
        let report = inspect(&read_mosei_file(&fixture(name)).expect("loads"));
        let names: Vec<&str> = report.padding.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["text", "audio", "vision"], "{name}");
        for m in &report.padding {
            assert_eq!(m.side.to_string(), side, "{name} {}", m.name);
            let c = m.counts;
            // Every clip of the fixtures is full (none), padded at `side` only, or empty.
            let padded = if side == "start" { c.start } else { c.end };
            assert_eq!((c.both, if side == "start" { c.end } else { c.start }), (0, 0), "{name} {}", m.name);
            assert_eq!(c.none + padded + c.empty, 12, "{name} {}: {c:?}", m.name);
            assert!(padded > c.none, "{name} {}: {c:?}", m.name);
        }
        // The counts of the splits add up to the file's.
        let vision: usize = report.splits.iter().map(|s| s.modalities[2].padding.start + s.modalities[2].padding.end).sum();
        assert_eq!(vision, report.padding[2].counts.start + report.padding[2].counts.end);

        let text = report.to_string();
        assert!(text.contains("padding (all-zero frames at the ends of each clip, all splits):"), "{text}");
        let audio_line = text.lines().find(|l| l.starts_with("audio ")).expect("an audio padding line");
        let fields: Vec<&str> = audio_line.split_whitespace().collect();
        assert_eq!(fields[1], side, "{audio_line}");
        assert_eq!(fields[6], "1", "the valid split's empty audio clip: {audio_line}");

        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["padding"][1]["name"], "audio");
        assert_eq!(json["padding"][1]["side"], side);
        assert_eq!(json["padding"][1]["empty"], 1);
    }
}

#[test]
fn real_frames_at_the_detected_side_are_the_fixture_lengths() {
    for name in ["mult_pad_start.pkl", "mult_pad_end.pkl"] {
        let want = &expected(name)["real_lengths"];
        let path = fixture(name);
        let file = read_mosei_file(&path).expect("loads");
        let map = MappedFile::open(&path).expect("maps");
        let view = read_mosei_view(&map, &path, &ReadOptions::STRICT).expect("views");
        let side = inspect(&file).padding[0].side;
        for split in SPLITS {
            for modality in ["text", "audio", "vision"] {
                let owned = file.split(split).and_then(|s| s.modality(modality)).expect("present").zero_frames();
                let viewed = view.split(split).and_then(|s| s.modality(modality)).expect("present").zero_frames();
                assert_eq!(owned, viewed, "{name} {split} {modality}: both readers see the same zero frames");
                let real: Vec<u64> = owned.iter().map(|z| z.real_frames(side) as u64).collect();
                let want: Vec<u64> = want[split][modality].as_array().expect("lengths").iter().map(|v| v.as_u64().expect("a length")).collect();
                assert_eq!(real, want, "{name} {split} {modality}");
            }
        }
    }
}

#[test]
fn end_padding_read_as_start_would_count_zeros_as_real() {
    // The interior zero frame never counts as padding, but reading an end-padded file as start-padded
    // (or the other way round) gets the lengths wrong: the side matters.
    let file = read_mosei_file(&fixture("mult_pad_end.pkl")).expect("loads");
    let text = file.split("train").and_then(|s| s.text.as_ref()).expect("text");
    let zeros = text.zero_frames();
    let as_end: Vec<usize> = zeros.iter().map(|z| z.real_frames(PaddingSide::End)).collect();
    let as_start: Vec<usize> = zeros.iter().map(|z| z.real_frames(PaddingSide::Start)).collect();
    assert_eq!(as_end, [4, 3, 2, 1, 4, 3]);
    assert_eq!(as_start, [4, 4, 4, 4, 4, 4]);
}
