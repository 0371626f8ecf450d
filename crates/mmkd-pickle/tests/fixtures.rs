//! Reads every fixture written by `tests/fixtures/make_pickles.py` and compares it with the
//! `NAME.expected.json` the script wrote next to it (values computed by numpy itself): with the strict
//! reader, and for the video-only fixtures (a `video_only` entry) also with `ReadOptions::VIDEO_ONLY`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mmkd_pickle::mosei::{Array3, MoseiFile, SPLITS, SplitData};
use mmkd_pickle::{MoseiError, ReadOptions, inspect, read_mosei_bytes, read_mosei_bytes_with, read_mosei_file, read_mosei_file_with};
use serde_json::Value as Json;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pickles")
}

/// Every `(pickle path, expected json)` pair.
fn fixtures() -> Vec<(PathBuf, Json)> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(fixture_dir()).expect("tests/fixtures/pickles exists (run tests/fixtures/make_pickles.py)");
    for entry in entries {
        let path = entry.expect("readable directory entry").path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".expected.json") else {
            continue;
        };
        let expected: Json = serde_json::from_str(&std::fs::read_to_string(&path).expect("readable json")).expect("valid json");
        out.push((path.with_file_name(format!("{stem}.pkl")), expected));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn json_f32(v: &Json) -> f32 {
    v.as_f64().expect("a number") as f32
}

fn json_usize(v: &Json) -> usize {
    v.as_u64().expect("a count") as usize
}

fn modality<'s>(split: &'s SplitData, key: &str) -> &'s Array3 {
    split.modality(key).unwrap_or_else(|| panic!("unknown modality {key}"))
}

/// Compares one decoded split with its expected.json entry; returns a list of mismatches.
fn compare_split(file: &str, split: &SplitData, expected: &Json) -> Vec<String> {
    let mut errors = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            errors.push(format!("{file} {}: {what}", split.name));
        }
    };
    check(split.n() == json_usize(&expected["n"]), format!("n {} != {}", split.n(), expected["n"]));
    for (key, shape) in expected["shapes"].as_object().expect("shapes") {
        let shape: Vec<usize> = shape.as_array().expect("shape").iter().map(json_usize).collect();
        check(modality(split, key).shape.to_vec() == shape, format!("{key} shape {:?} != {shape:?}", modality(split, key).shape));
    }
    let dtypes: BTreeMap<String, String> = expected["dtypes"].as_object().expect("dtypes").iter().map(|(k, v)| (k.clone(), v.as_str().expect("dtype").to_string())).collect();
    check(split.dtypes == dtypes, format!("dtypes {:?} != {dtypes:?}", split.dtypes));
    for spot in expected["spot_checks"].as_array().expect("spot_checks") {
        let key = spot["key"].as_str().expect("spot check key");
        let index: Vec<usize> = spot["index"].as_array().expect("index").iter().map(json_usize).collect();
        let got = modality(split, key).get(index[0], index[1], index[2]);
        let want = json_f32(&spot["value"]);
        check(got == Some(want), format!("{key}{index:?} = {got:?}, expected {want}"));
    }
    for (key, sums) in expected["checksums"].as_object().expect("checksums") {
        let data = &modality(split, key).data;
        let sum: f64 = data.iter().map(|&x| f64::from(x)).sum();
        let weighted: f64 = data.iter().enumerate().map(|(i, &x)| f64::from(x) * (i + 1) as f64).sum();
        for (name, got) in [("sum", sum), ("weighted_sum", weighted)] {
            let want = sums[name].as_f64().expect("checksum");
            check((got - want).abs() <= 1e-9 * want.abs().max(1.0), format!("{key} {name} {got} != {want}"));
        }
    }
    for (key, counts) in expected["nonfinite"].as_object().expect("nonfinite") {
        let got = split.nonfinite.get(key).copied().unwrap_or_default();
        let want = (json_usize(&counts["nan"]), json_usize(&counts["pos_inf"]), json_usize(&counts["neg_inf"]));
        check((got.nan, got.pos_inf, got.neg_inf) == want, format!("{key} non-finite {got:?} != {want:?}"));
        check(modality(split, key).data.iter().all(|x| x.is_finite()), format!("{key} still has non-finite values"));
    }
    // null for a video-only split without labels.
    let labels: Option<Vec<f32>> = expected["labels"].as_array().map(|v| v.iter().map(json_f32).collect());
    check(split.labels == labels, format!("labels {:?} != {labels:?}", split.labels));
    let ids: Vec<String> = expected["ids"].as_array().expect("ids").iter().map(|v| v.as_str().expect("id").to_string()).collect();
    check(split.ids == ids, format!("ids {:?} != {ids:?}", split.ids));
    for (key, got) in [("audio_lengths", &split.audio_lengths), ("vision_lengths", &split.vision_lengths)] {
        let want: Option<Vec<usize>> = expected[key].as_array().map(|v| v.iter().map(json_usize).collect());
        check(got == &want, format!("{key} {got:?} != {want:?}"));
    }
    errors
}

fn compare_file(file: &MoseiFile, expected: &Json) -> Vec<String> {
    let name = file.path.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
    let mut errors = Vec::new();
    if file.layout.to_string() != expected["layout"].as_str().expect("layout") {
        errors.push(format!("{name}: layout {} != {}", file.layout, expected["layout"]));
    }
    if u64::from(file.protocol) != expected["protocol"].as_u64().expect("protocol") {
        errors.push(format!("{name}: protocol {} != {}", file.protocol, expected["protocol"]));
    }
    let names: Vec<&str> = file.splits.iter().map(|s| s.name.as_str()).collect();
    let want: Vec<&str> = SPLITS.into_iter().filter(|s| expected["splits"].get(s).is_some()).collect();
    if names != want {
        errors.push(format!("{name}: splits {names:?} != {want:?}"));
    }
    for split in &file.splits {
        errors.extend(compare_split(&name, split, &expected["splits"][&split.name]));
    }
    let repairs = serde_json::to_value(&file.repairs).expect("repairs serialize");
    if repairs != expected["repairs"] {
        errors.push(format!("{name}: repairs {repairs} != {}", expected["repairs"]));
    }
    // The inspect report agrees with the data and with numpy's 7-class histogram.
    let report = inspect(file);
    // Only the padding fixtures say where their zero frames are.
    if let Some(padding) = expected.get("padding") {
        let got = serde_json::to_value(&report.padding).expect("padding serializes");
        let got: BTreeMap<&str, &Json> = got.as_array().expect("a list").iter().map(|m| (m["name"].as_str().expect("name"), m)).collect();
        for (modality, want) in padding.as_object().expect("padding per modality") {
            for (key, value) in want.as_object().expect("counts and side") {
                if got.get(modality.as_str()).map(|m| &m[key]) != Some(value) {
                    errors.push(format!("{name}: padding of {modality}: {key} {:?} != {value}", got.get(modality.as_str()).map(|m| &m[key])));
                }
            }
        }
    }
    for (split, split_report) in file.splits.iter().zip(&report.splits) {
        // None (null) for a split without labels.
        let histogram: Option<BTreeMap<String, usize>> = split_report.labels.as_ref().map(|labels| labels.histogram.iter().map(|(c, n)| (c.to_string(), *n)).collect());
        let want: Option<BTreeMap<String, usize>> = expected["splits"][&split.name]["label_histogram"].as_object().map(|h| h.iter().map(|(c, n)| (c.clone(), json_usize(n))).collect());
        if histogram != want {
            errors.push(format!("{name} {}: histogram {histogram:?} != {want:?}", split.name));
        }
        for m in &split_report.modalities {
            let counts = &expected["splits"][&split.name]["nonfinite"][&m.name];
            if (m.nan, m.pos_inf, m.neg_inf) != (json_usize(&counts["nan"]), json_usize(&counts["pos_inf"]), json_usize(&counts["neg_inf"])) {
                errors.push(format!("{name} {}: inspect non-finite counts of {} differ", split.name, m.name));
            }
        }
    }
    errors
}

fn check_error(path: &Path, err: &MoseiError, expected: &Json) -> Vec<String> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
    let message = err.to_string();
    let mut errors = Vec::new();
    let want_kind = expected["error"].as_str().expect("error kind");
    if err.kind() != want_kind {
        errors.push(format!("{name}: error kind {} != {want_kind} ({message})", err.kind()));
    }
    if let Some(kind) = expected["pickle_error"].as_str() {
        let got = err.pickle_error().map(|e| e.kind());
        if got != Some(kind) {
            errors.push(format!("{name}: pickle error {got:?} != {kind} ({message})"));
        }
    }
    if let Some(split) = expected["split"].as_str()
        && err.split() != Some(split)
    {
        errors.push(format!("{name}: split {:?} != {split} ({message})", err.split()));
    }
    if let Some(key) = expected["key"].as_str()
        && err.key() != Some(key)
    {
        errors.push(format!("{name}: key {:?} != {key} ({message})", err.key()));
    }
    if let Some(part) = expected["message_contains"].as_str()
        && !message.contains(part)
    {
        errors.push(format!("{name}: message lacks {part:?}: {message}"));
    }
    if message.contains('\n') || !message.starts_with(&path.display().to_string()) {
        errors.push(format!("{name}: message must be one line starting with the file name: {message}"));
    }
    errors
}

#[test]
fn every_fixture_matches_its_expected_json() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 21, "expected the 21 fixtures of make_pickles.py, found {}", fixtures.len());
    let mut errors = Vec::new();
    let (mut valid, mut broken) = (0, 0);
    for (path, expected) in &fixtures {
        let result = read_mosei_file(path);
        match (result, expected.get("error")) {
            (Ok(file), None) => {
                valid += 1;
                errors.extend(compare_file(&file, expected));
            }
            (Err(err), Some(_)) => {
                broken += 1;
                errors.extend(check_error(path, &err, expected));
            }
            (Ok(_), Some(kind)) => errors.push(format!("{}: loaded, but expected error {kind}", path.display())),
            (Err(err), None) => errors.push(format!("{}: unexpected error: {err}", path.display())),
        }
    }
    assert!(errors.is_empty(), "{} mismatches:\n{}", errors.len(), errors.join("\n"));
    assert!(valid >= 6 && broken >= 15, "valid {valid}, broken {broken}");
}

#[test]
fn bytes_and_file_readers_agree() {
    for (path, expected) in fixtures() {
        if expected.get("error").is_some() {
            continue;
        }
        let bytes = std::fs::read(&path).expect("fixture readable");
        assert_eq!(read_mosei_bytes(&bytes, &path).expect("loads"), read_mosei_file(&path).expect("loads"));
    }
}

#[test]
fn missing_file_is_an_io_error() {
    let err = read_mosei_file(Path::new("/nonexistent/mosei.pkl")).unwrap_err();
    assert_eq!(err.kind(), "Io");
    assert!(err.to_string().starts_with("/nonexistent/mosei.pkl: cannot read the file"), "{err}");
}

#[test]
fn inspect_report_renders_and_serializes() {
    let path = fixture_dir().join("mult_p4_defects.pkl");
    let file = read_mosei_file(&path).expect("loads");
    let report = inspect(&file);
    let text = report.to_string();
    assert!(text.contains("MulT layout, pickle protocol 4"), "{text}");
    assert!(text.contains("train/audio: NaN set to 0 (2x)"), "{text}");
    assert!(text.contains("train/labels: label clipped to [-3, 3] (2x)"), "{text}");
    let json = serde_json::to_value(&report).expect("serializes");
    assert_eq!(json["format"], "MulT");
    assert_eq!(json["splits"][0]["modalities"][1]["name"], "audio");
    assert_eq!(json["splits"][0]["modalities"][1]["neg_inf"], 3);
    assert_eq!(json["splits"][0]["labels"]["histogram"]["3"], 1);

    let mmsa = inspect(&read_mosei_file(&fixture_dir().join("mmsa_p4_f32.pkl")).expect("loads"));
    assert_eq!(mmsa.splits[2].modalities[2].lengths.map(|l| l.max), Some(5), "clamped to the padded length");
    assert!(mmsa.to_string().contains("MMSA layout"));
}

#[test]
fn wrong_shape_message_is_the_documented_one() {
    let path = fixture_dir().join("broken_wrong_shape.pkl");
    let err = read_mosei_file(&path).unwrap_err();
    assert_eq!(err.to_string(), format!("{}: split 'valid', key 'audio': expected a 3-d array (N, L, D), found shape (3, 3)", path.display()));
}

/// Every fixture with a `video_only` entry: what `ReadOptions::VIDEO_ONLY` must return.
fn video_only_fixtures() -> Vec<(PathBuf, Json)> {
    fixtures().into_iter().filter_map(|(path, expected)| Some((path, expected.get("video_only")?.clone()))).collect()
}

#[test]
fn video_only_fixtures_match_their_expected_json_under_video_only() {
    let fixtures = video_only_fixtures();
    assert!(fixtures.len() >= 5, "expected the 5 video-only fixtures of make_pickles.py, found {}", fixtures.len());
    let mut errors = Vec::new();
    let (mut valid, mut broken) = (0, 0);
    for (path, expected) in &fixtures {
        let result = read_mosei_file_with(path, &ReadOptions::VIDEO_ONLY);
        match (result, expected.get("error")) {
            (Ok(file), None) => {
                valid += 1;
                errors.extend(compare_file(&file, expected));
                let bytes = std::fs::read(path).expect("fixture readable");
                let from_bytes = read_mosei_bytes_with(&bytes, path, &ReadOptions::VIDEO_ONLY);
                if from_bytes.as_ref().ok() != Some(&file) {
                    errors.push(format!("{}: bytes and file readers differ", path.display()));
                }
            }
            (Err(err), Some(_)) => {
                broken += 1;
                errors.extend(check_error(path, &err, expected));
            }
            (Ok(_), Some(kind)) => errors.push(format!("{}: loaded under VIDEO_ONLY, but expected error {kind}", path.display())),
            (Err(err), None) => errors.push(format!("{}: unexpected error under VIDEO_ONLY: {err}", path.display())),
        }
    }
    assert!(errors.is_empty(), "{} mismatches:\n{}", errors.len(), errors.join("\n"));
    assert!(valid >= 2 && broken >= 3, "valid {valid}, broken {broken}");
}

#[test]
fn video_only_test_fixture_has_only_test_vision_and_ids() {
    let path = fixture_dir().join("video_only_test_p4.pkl");
    let file = read_mosei_file_with(&path, &ReadOptions::VIDEO_ONLY).expect("loads");
    assert_eq!(file.layout.to_string(), "MulT");
    assert_eq!(file.protocol, 4);
    assert_eq!(file.splits.len(), 1);
    assert!(file.split("train").is_none() && file.split("valid").is_none());
    let test = file.split("test").expect("test split");
    assert_eq!(test.n(), 3);
    assert_eq!(test.vision.shape, [3, 5, 4]);
    assert_eq!(test.ids, ["deploy_0", "deploy_1", "deploy_2"]);
    assert_eq!(test.labels, None);
    assert_eq!((&test.text, &test.audio), (&None, &None));
    assert!(test.modality("text").is_none() && test.modality("audio").is_none());
    assert_eq!(test.modality("vision"), Some(&test.vision));
    // The NaN the file holds is zeroed and recorded, exactly as in a complete file.
    assert_eq!(test.vision.get(1, 2, 3), Some(0.0));
    assert_eq!(test.nonfinite["vision"].nan, 1);
    assert_eq!(file.repairs.len(), 1);
    assert_eq!(file.repairs[0].to_string(), "test/vision: NaN set to 0 (1x)");

    // inspect: only vision, and labels reported absent.
    let report = inspect(&file);
    assert_eq!(report.splits.len(), 1);
    assert_eq!(report.splits[0].modalities.len(), 1);
    assert_eq!(report.splits[0].modalities[0].name, "vision");
    assert!(report.splits[0].labels.is_none());
    let text = report.to_string();
    assert!(text.contains("test         3  vision   (3, 5, 4)"), "{text}");
    assert!(text.contains("labels   absent"), "{text}");
    let json = serde_json::to_value(&report).expect("serializes");
    assert_eq!(json["splits"][0]["labels"], Json::Null);

    // Refused by the strict reader, naming the file and the first missing split.
    let err = read_mosei_file(&path).unwrap_err();
    assert_eq!(err.kind(), "MissingSplit");
    assert_eq!(err.split(), Some("train"));
    assert_eq!(err.to_string(), format!("{}: missing split 'train' (found keys: test)", path.display()));
}

#[test]
fn video_only_labels_fixture_has_all_splits_with_labels() {
    let path = fixture_dir().join("video_only_labels_p2.pkl");
    let file = read_mosei_file_with(&path, &ReadOptions::VIDEO_ONLY).expect("loads");
    assert_eq!(file.protocol, 2);
    let names: Vec<&str> = file.splits.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["train", "valid", "test"]);
    for (split, n) in [("train", 6), ("valid", 3), ("test", 3)] {
        let data = file.split(split).expect("split present");
        assert_eq!(data.n(), n);
        assert_eq!(data.vision.shape, [n, 5, 4]);
        assert_eq!(data.labels.as_ref().map(Vec::len), Some(n));
        assert_eq!(data.ids.len(), n);
        assert!(data.text.is_none() && data.audio.is_none());
    }
    let test = file.split("test").expect("test");
    assert_eq!(test.labels, Some(vec![3.0, -0.4, 1.0]));
    assert_eq!(test.ids, ["vid230_0_0_1", "vid230_1_1_2", "vid230_2_2_3"], "(N, 3) byte rows joined with '_'");
    assert!(file.repairs.is_empty());
    let report = inspect(&file);
    assert_eq!(report.splits[0].labels.as_ref().map(|l| l.dtype.as_str()), Some("<f4"));

    // Refused by the strict reader, naming the file, the split and the missing key.
    let err = read_mosei_file(&path).unwrap_err();
    assert_eq!((err.kind(), err.split(), err.key()), ("MissingKey", Some("train"), Some("audio")));
    assert_eq!(err.to_string(), format!("{}: split 'train': missing key 'audio' (found keys: id, labels, vision)", path.display()));
}

#[test]
fn each_option_relaxes_only_its_own_requirement() {
    let only_test = fixture_dir().join("video_only_test_p4.pkl");
    let no_text_audio = fixture_dir().join("video_only_labels_p2.pkl");
    let with = |text_audio, labels, all_splits| ReadOptions { require_text_audio: text_audio, require_labels: labels, require_all_splits: all_splits };
    let kind = |path: &Path, opts: ReadOptions| read_mosei_file_with(path, &opts).map_or_else(|e| format!("{} {:?} {:?}", e.kind(), e.split(), e.key()), |f| format!("ok {}", f.splits.len()));
    assert_eq!(ReadOptions::default(), ReadOptions::STRICT);
    assert_eq!(ReadOptions::STRICT, with(true, true, true));
    assert_eq!(ReadOptions::VIDEO_ONLY, with(false, false, false));
    // Only the test split, without labels, text or audio: each requirement on its own refuses it.
    assert_eq!(kind(&only_test, with(false, false, false)), "ok 1");
    assert_eq!(kind(&only_test, with(false, false, true)), "MissingSplit Some(\"train\") None");
    assert_eq!(kind(&only_test, with(false, true, false)), "UnknownLayout Some(\"test\") None", "without labels the layout is only guessed when labels are optional");
    assert_eq!(kind(&only_test, with(true, false, false)), "MissingKey Some(\"test\") Some(\"audio\")");
    // All splits and labels, no text or audio: only require_text_audio refuses it.
    assert_eq!(kind(&no_text_audio, with(false, true, true)), "ok 3");
    assert_eq!(kind(&no_text_audio, with(true, false, false)), "MissingKey Some(\"train\") Some(\"audio\")");
}

#[test]
fn complete_fixtures_read_the_same_under_video_only() {
    let mut compared = 0;
    for (path, expected) in fixtures() {
        if expected.get("error").is_some() {
            continue;
        }
        let strict = read_mosei_file(&path).expect("loads");
        assert!(strict.splits.iter().all(|s| { s.text.is_some() && s.audio.is_some() && s.labels.as_ref().map(Vec::len) == Some(s.n()) }));
        let lenient = read_mosei_file_with(&path, &ReadOptions::VIDEO_ONLY).expect("loads");
        assert_eq!(lenient, strict, "{}", path.display());
        assert_eq!(inspect(&lenient).to_string(), inspect(&strict).to_string());
        compared += 1;
    }
    assert!(compared >= 6, "compared {compared}");
}

#[test]
fn broken_fixtures_stay_broken_under_video_only() {
    // What VIDEO_ONLY relaxes (a missing split, text given only as BERT token ids) is no longer an
    // error; every other defect of a present key is refused exactly as by the strict reader.
    const RELAXED: [&str; 2] = ["broken_missing_split.pkl", "broken_text_bert_only.pkl"];
    let mut errors = Vec::new();
    let mut checked = 0;
    for (path, expected) in fixtures() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        if expected.get("error").is_none() || expected.get("video_only").is_some() {
            continue;
        }
        let lenient = read_mosei_file_with(&path, &ReadOptions::VIDEO_ONLY);
        if RELAXED.contains(&name) {
            match lenient {
                Ok(file) => {
                    let names: Vec<&str> = file.splits.iter().map(|s| s.name.as_str()).collect();
                    let texts = file.splits.iter().filter(|s| s.text.is_some()).count();
                    let audios = file.splits.iter().filter(|s| s.audio.is_some()).count();
                    let labelled = file.splits.iter().filter(|s| s.labels.is_some()).count();
                    let want = if name == "broken_missing_split.pkl" { (vec!["train", "valid"], 2, 2, 2) } else { (vec!["train", "valid", "test"], 0, 3, 3) };
                    if (names.clone(), texts, audios, labelled) != want {
                        errors.push(format!(
                            "{name}: read as splits {names:?} with text/audio/labels in \
                             {texts}/{audios}/{labelled}, expected {want:?}"
                        ));
                    }
                }
                Err(err) => errors.push(format!("{name}: expected to load under VIDEO_ONLY: {err}")),
            }
            continue;
        }
        checked += 1;
        let strict = read_mosei_file(&path).unwrap_err().to_string();
        match lenient {
            Ok(_) => errors.push(format!("{name}: loaded under VIDEO_ONLY ({strict})")),
            Err(err) if err.to_string() != strict => {
                errors.push(format!("{name}: {err} != {strict}"));
            }
            Err(_) => {}
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert!(checked >= 13, "checked {checked}");
}
