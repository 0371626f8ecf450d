//! The native dataset format: one safetensors file per split plus `manifest.json`.
//!
//! ```text
//! DIR/manifest.json         format, version, name, source, shape, split sizes, generator params
//! DIR/{train,valid,test}.safetensors
//!     text  f32 [N, text_len, text_dim]     audio f32 [N, audio_len, audio_dim]
//!     video f32 [N, video_len, video_dim]   labels f32 [N] (sentiment in [-3, 3])
//!     (text, audio and labels may be absent: a video-only dataset for `mmkd predict` on a
//!     student; training refuses it)
//!     optional lengths_text / lengths_audio / lengths_video  i64 [N]
//!     metadata "ids": JSON list of N clip ids
//! ```
//! Files are written atomically and the manifest last, so a directory with a manifest is
//! complete. Loading validates every field against the manifest and names the file, the field,
//! the expected and the actual value when something is off. A loaded split's features are read
//! in place from the mapped file (`data::features`), so they cost page cache, not process memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use super::features::{Features, MappedSplitFile};
use super::{Dataset, Lengths, Split};
use crate::bail_input;
use crate::config::DataShape;
use crate::durable::write_atomic;

/// The manifest's `format` value.
pub const FORMAT: &str = "mmkd-dataset";
/// The version of the format this code reads and writes.
pub const VERSION: u32 = 1;
/// The split names; each is one `{name}.safetensors` file.
pub const SPLITS: [&str; 3] = ["train", "valid", "test"];

/// The contents of `manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `FORMAT`.
    pub format: String,
    /// Always `VERSION`.
    pub version: u32,
    /// Dataset name.
    pub name: String,
    /// Human-readable origin (as `Dataset::source`).
    pub source: String,
    /// Whether the data is synthetic.
    pub synthetic: bool,
    /// Dims, lengths and split sizes the split files are checked against.
    pub shape: DataShape,
    /// Anything the producer wants to record (generator parameters, repairs made on import).
    #[serde(default)]
    pub provenance: serde_json::Value,
    /// SHA-256 of the split files (`identity::compute_native`), computed when the manifest is
    /// written; absent in datasets written before fingerprints (then computed when asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn write_split(path: &Path, split: &Split, shape: &DataShape) -> Result<()> {
    let n = split.len();
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = vec![("video".into(), Dtype::F32, vec![n, shape.video_len, shape.video_dim], f32_bytes(&split.video))];
    if let Some(text) = &split.text {
        owned.push(("text".into(), Dtype::F32, vec![n, shape.text_len, shape.text_dim], f32_bytes(text)));
    }
    if let Some(audio) = &split.audio {
        owned.push(("audio".into(), Dtype::F32, vec![n, shape.audio_len, shape.audio_dim], f32_bytes(audio)));
    }
    // All NaN is how "no labels" is held in memory; anything else is written as it is (and a
    // non-finite label is then refused on loading, not silently dropped here).
    if !split.labels.iter().all(|y| y.is_nan()) || n == 0 {
        owned.push(("labels".into(), Dtype::F32, vec![n], f32_bytes(&split.labels)));
    }
    if let Some(l) = &split.lengths {
        for (name, v) in [("lengths_text", &l.text), ("lengths_audio", &l.audio), ("lengths_video", &l.video)] {
            owned.push((name.into(), Dtype::I64, vec![n], v.iter().flat_map(|&x| (x as i64).to_le_bytes()).collect()));
        }
    }
    let views: Vec<(String, TensorView)> = owned.iter().map(|(name, dt, shape, bytes)| Ok((name.clone(), TensorView::new(*dt, shape.clone(), bytes)?))).collect::<Result<_>>()?;
    let mut meta = HashMap::new();
    meta.insert("ids".to_string(), serde_json::to_string(&split.ids)?);
    let bytes = safetensors::tensor::serialize(views, &Some(meta))?;
    write_atomic(path, &bytes)
}

/// Write a dataset to `dir` (created if needed).
pub fn save(dataset: &Dataset, dir: &Path, provenance: serde_json::Value) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Remove an old manifest first: until the new one is written the directory is incomplete.
    let manifest_path = dir.join("manifest.json");
    // Events describe the clips they were generated with: a rewritten dataset drops them
    // (the generator writes its own after saving).
    let events_path = dir.join(super::events::EVENTS_FILE);
    if events_path.exists() {
        std::fs::remove_file(&events_path)?;
    }
    if manifest_path.exists() {
        std::fs::remove_file(&manifest_path)?;
    }
    for name in SPLITS {
        let split = dataset.split(name).expect("known split");
        write_split(&dir.join(format!("{name}.safetensors")), split, &dataset.shape)?;
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        name: dataset.name.clone(),
        source: dataset.source.clone(),
        synthetic: dataset.synthetic,
        shape: dataset.shape.clone(),
        provenance,
        fingerprint: None,
    };
    write_manifest(dir, &manifest)
}

/// Read `dir/manifest.json` and check its format and version.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join("manifest.json");
    if !path.exists() {
        bail_input!("{}: not an mmkd dataset (no manifest.json; make one with `mmkd data synth` or `mmkd data convert`)", dir.display());
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let m: Manifest = match serde_json::from_str(&text) {
        Ok(m) => m,
        Err(e) => bail_input!("{}: invalid manifest: {e}", path.display()),
    };
    if m.format != FORMAT {
        bail_input!("{}: field 'format': expected '{FORMAT}', found '{}'", path.display(), m.format);
    }
    if m.version != VERSION {
        bail_input!("{}: field 'version': expected {VERSION}, found {}", path.display(), m.version);
    }
    Ok(m)
}

/// The f32 field `name` of `file`, checked against the expected shape and for finite values, read
/// in place from the map when it can be (`Features::in_place`).
fn read_f32(st: &SafeTensors, map: &Arc<MappedSplitFile>, file: &Path, name: &str, expect: &[usize]) -> Result<Features> {
    let t = match st.tensor(name) {
        Ok(t) => t,
        Err(_) => bail_input!("{}: field '{name}': missing", file.display()),
    };
    if t.dtype() != Dtype::F32 {
        bail_input!("{}: field '{name}': expected dtype F32, found {:?}", file.display(), t.dtype());
    }
    if t.shape() != expect {
        bail_input!("{}: field '{name}': expected shape {:?}, found {:?}", file.display(), expect, t.shape());
    }
    // `t.data()` is a slice of the map (safetensors validated its range): where it starts in the file.
    let offset = t.data().as_ptr() as usize - map.bytes().as_ptr() as usize;
    let features = match Features::in_place(map, offset, t.data().len() / 4) {
        Ok(features) => features,
        // Not an error: the values are still right, they just cannot be viewed where they lie
        // (a big-endian platform, or a file from another writer that does not align the data).
        // Decoding them costs their size in memory, which is what the warning is for.
        Err(why) => {
            eprintln!("warning: {}: field '{name}': read into memory ({:.2} GB) instead of in place: {why}", file.display(), t.data().len() as f64 / 1e9);
            Features::owned(t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
        }
    };
    // One pass over the values: this pages the whole field in once (page cache, which the kernel
    // may drop again), a small price for refusing a corrupt file before hours of training.
    let bad = features.iter().filter(|x| !x.is_finite()).count();
    if bad > 0 {
        bail_input!("{}: field '{name}': expected finite values, found {bad} NaN or infinite", file.display());
    }
    Ok(features)
}

/// Why `bytes` (the contents of `file`) is not a valid safetensors file, naming the field when one
/// is cut off: safetensors' own error for a truncated file ("metadata incomplete buffer") names none.
fn describe_invalid(file: &Path, bytes: &[u8], error: &safetensors::SafeTensorError) -> String {
    let generic = format!("{}: not a valid safetensors file: {error}", file.display());
    if !matches!(error, safetensors::SafeTensorError::MetadataIncompleteBuffer) {
        return generic;
    }
    // The header parsed (or the error would be another), so its length and JSON are readable.
    let Some(header_len) = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize) else { return generic };
    let Some(Ok(header)) = bytes.get(8..8 + header_len).map(serde_json::from_slice::<HashMap<String, serde_json::Value>>) else { return generic };
    let data_len = bytes.len() - 8 - header_len;
    let end_of = |v: &serde_json::Value| v.get("data_offsets").and_then(|o| o.get(1)).and_then(serde_json::Value::as_u64).map(|e| e as usize);
    let mut fields: Vec<(&String, usize)> = header.iter().filter_map(|(name, v)| Some((name, end_of(v)?))).collect();
    fields.sort_by_key(|&(_, end)| end);
    match fields.iter().find(|&&(_, end)| end > data_len) {
        Some((name, end)) => format!("{}: field '{name}': expected its data to end at byte {} of the file, found a file of {} bytes (truncated?)", file.display(), 8 + header_len + end, bytes.len()),
        None => match fields.last() {
            Some((_, end)) => format!("{}: expected {} bytes (header and data), found {} (extra bytes after the last field)", file.display(), 8 + header_len + end, bytes.len()),
            None => generic,
        },
    }
}

fn read_lengths(st: &SafeTensors, file: &Path, name: &str, n: usize, max: usize) -> Result<Option<Vec<usize>>> {
    let Ok(t) = st.tensor(name) else { return Ok(None) };
    if t.dtype() != Dtype::I64 || t.shape() != [n] {
        bail_input!("{}: field '{name}': expected I64 [{n}], found {:?} {:?}", file.display(), t.dtype(), t.shape());
    }
    let v: Vec<i64> = t.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes"))).collect();
    if let Some(bad) = v.iter().find(|&&x| x < 0 || x as usize > max) {
        bail_input!("{}: field '{name}': expected lengths in 0..={max}, found {bad}", file.display());
    }
    Ok(Some(v.into_iter().map(|x| x as usize).collect()))
}

fn read_split(dir: &Path, name: &str, shape: &DataShape) -> Result<Split> {
    let file: PathBuf = dir.join(format!("{name}.safetensors"));
    if !file.exists() {
        bail_input!("{}: missing", file.display());
    }
    // Memory-mapped, and the features read in place (`data::features`): a MOSEI train split is
    // 4.7 GB, which stays page cache instead of becoming anonymous memory.
    let map = match MappedSplitFile::open(&file) {
        Ok(map) => map,
        Err(e) => bail_input!("{e}"),
    };
    let bytes = map.bytes();
    let st = match SafeTensors::deserialize(bytes) {
        Ok(st) => st,
        Err(e) => bail_input!("{}", describe_invalid(&file, bytes, &e)),
    };
    // The sample count comes from the labels, or from the video in a video-only file.
    let (count_field, rank) = if st.tensor("labels").is_ok() { ("labels", 1) } else { ("video", 3) };
    let n = match st.tensor(count_field) {
        Ok(t) if t.shape().len() == rank => t.shape()[0],
        Ok(t) => bail_input!("{}: field '{count_field}': expected rank {rank} with N first, found shape {:?}", file.display(), t.shape()),
        Err(_) => bail_input!("{}: field '{count_field}': missing", file.display()),
    };
    let expected_n = match name {
        "train" => shape.n_train,
        "valid" => shape.n_valid,
        _ => shape.n_test,
    };
    if n != expected_n {
        bail_input!("{}: field '{count_field}': expected {expected_n} samples (manifest), found {n}", file.display());
    }
    let optional = |field: &str, dims: &[usize]| -> Result<Option<Features>> { if st.tensor(field).is_err() { Ok(None) } else { read_f32(&st, &map, &file, field, dims).map(Some) } };
    let text = optional("text", &[n, shape.text_len, shape.text_dim])?;
    let audio = optional("audio", &[n, shape.audio_len, shape.audio_dim])?;
    let video = read_f32(&st, &map, &file, "video", &[n, shape.video_len, shape.video_dim])?;
    // Labels are N floats: held in memory like ids and lengths.
    let labels = optional("labels", &[n])?.map_or_else(|| vec![f32::NAN; n], |l| l.to_vec());
    let (_, meta) = SafeTensors::read_metadata(bytes)?;
    let ids: Vec<String> = match meta.metadata().as_ref().and_then(|m| m.get("ids")) {
        Some(s) => serde_json::from_str(s).map_err(|e| crate::error::input_error(format!("{}: metadata 'ids': {e}", file.display())))?,
        None => (0..n).map(|i| format!("{name}-{i}")).collect(),
    };
    if ids.len() != n {
        bail_input!("{}: metadata 'ids': expected {n} ids, found {}", file.display(), ids.len());
    }
    let lengths = match (
        read_lengths(&st, &file, "lengths_text", n, shape.text_len)?,
        read_lengths(&st, &file, "lengths_audio", n, shape.audio_len)?,
        read_lengths(&st, &file, "lengths_video", n, shape.video_len)?,
    ) {
        (Some(text), Some(audio), Some(video)) => Some(Lengths { text, audio, video, full: [shape.video_len, shape.audio_len, shape.text_len] }),
        (None, None, None) => None,
        _ => bail_input!("{}: lengths: expected all of lengths_text/audio/video or none", file.display()),
    };
    Ok(Split { name: name.to_string(), text, audio, video, labels, ids, lengths })
}

/// Load the named splits of a dataset directory (for prediction: a video-only dataset may hold
/// just the split it is for). Every split asked for must exist.
pub fn load_splits(dir: &Path, names: &[&str]) -> Result<(Manifest, Vec<Split>)> {
    let m = read_manifest(dir)?;
    if let Some(name) = names.iter().find(|n| !dir.join(format!("{n}.safetensors")).exists()) {
        bail_input!("{}: split '{name}': missing ({name}.safetensors)", dir.display());
    }
    let splits = read_splits(dir, names, &m.shape)?;
    Ok((m, splits))
}

/// Read the named split files of a directory against a known shape (the manifest's, or one
/// being written).
pub fn read_splits(dir: &Path, names: &[&str], shape: &DataShape) -> Result<Vec<Split>> {
    names.iter().map(|n| read_split(dir, n, shape)).collect()
}

/// Write the manifest last: a directory with a manifest is complete. A manifest without a
/// fingerprint gets the one of the split files now in `dir`.
pub fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<()> {
    let mut manifest = manifest.clone();
    if manifest.fingerprint.is_none() {
        manifest.fingerprint = Some(super::identity::compute_native(dir)?);
    }
    write_atomic(&dir.join("manifest.json"), serde_json::to_string_pretty(&manifest)?.as_bytes())
}

/// Load and validate a dataset directory.
pub fn load(dir: &Path) -> Result<Dataset> {
    let m = read_manifest(dir)?;
    Ok(Dataset {
        name: m.name.clone(),
        source: m.source.clone(),
        synthetic: m.synthetic,
        train: read_split(dir, "train", &m.shape)?,
        valid: read_split(dir, "valid", &m.shape)?,
        test: read_split(dir, "test", &m.shape)?,
        shape: m.shape,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;
    use crate::data::synth::{SynthParams, generate};

    fn tiny() -> Dataset {
        let shape = DataShape { n_train: 6, n_valid: 3, n_test: 4, ..DataShape::for_preset(Preset::Smoke) };
        generate(Preset::Smoke, 2, &shape, &SynthParams::default()).0
    }

    #[test]
    fn round_trip_is_exact() {
        let dir_guard = tempdir("native-rt");
        let dir = dir_guard.path();
        let mut d = tiny();
        d.test.lengths = Some(Lengths { text: vec![1, 2, 3, 6], audio: vec![12; 4], video: vec![5; 4], full: [12, 12, 6] });
        save(&d, dir, serde_json::json!({"k": 1})).unwrap();
        let back = load(dir).unwrap();
        assert_eq!(back.train, d.train);
        assert_eq!(back.test, d.test);
        assert_eq!(back.shape, d.shape);
        assert_eq!(back.source, d.source);
    }

    #[test]
    fn wrong_shape_names_file_field_expected_and_found() {
        let dir_guard = tempdir("native-bad");
        let dir = dir_guard.path();
        let d = tiny();
        save(&d, dir, serde_json::Value::Null).unwrap();
        // Claim a different video dim in the manifest.
        let mut m = read_manifest(dir).unwrap();
        m.shape.video_dim = 36;
        std::fs::write(dir.join("manifest.json"), serde_json::to_string(&m).unwrap()).unwrap();
        let err = load(dir).unwrap_err();
        let msg = err.to_string();
        assert!(err.downcast_ref::<crate::error::InputError>().is_some());
        assert!(msg.contains("train.safetensors") && msg.contains("'video'"), "{msg}");
        assert!(msg.contains("[6, 12, 36]") && msg.contains("[6, 12, 35]"), "{msg}");
    }

    fn bits(f: &[f32]) -> Vec<u32> {
        f.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn loaded_features_are_mapped_and_bit_exact() {
        let dir_guard = tempdir("native-mapped");
        let dir = dir_guard.path();
        let d = tiny();
        save(&d, dir, serde_json::Value::Null).unwrap();
        let back = load(dir).unwrap();
        for (owned, mapped) in [(&d.train, &back.train), (&d.valid, &back.valid), (&d.test, &back.test)] {
            let (t, a) = (mapped.text.as_ref().unwrap(), mapped.audio.as_ref().unwrap());
            assert!(t.is_mapped() && a.is_mapped() && mapped.video.is_mapped(), "split '{}' is read in place", mapped.name);
            assert!(!owned.video.is_mapped());
            assert_eq!(bits(t), bits(owned.text.as_ref().unwrap()));
            assert_eq!(bits(a), bits(owned.audio.as_ref().unwrap()));
            assert_eq!(bits(&mapped.video), bits(&owned.video));
        }
        // A mapped dataset saves like an owned one: the same bytes on disk.
        let again_guard = tempdir("native-mapped-again");
        save(&back, again_guard.path(), serde_json::Value::Null).unwrap();
        for name in SPLITS {
            let file = format!("{name}.safetensors");
            assert_eq!(std::fs::read(dir.join(&file)).unwrap(), std::fs::read(again_guard.path().join(&file)).unwrap(), "{file}");
        }
    }

    #[test]
    fn batches_from_mapped_features_equal_batches_from_owned_ones() {
        let dir_guard = tempdir("native-batch");
        let dir = dir_guard.path();
        let d = tiny();
        save(&d, dir, serde_json::Value::Null).unwrap();
        let back = load(dir).unwrap();
        assert!(back.train.video.is_mapped());
        let device = burn::prelude::Device::flex();
        let values = |t: burn::prelude::Tensor<3>| -> Vec<u32> { bits(&t.into_data().try_to_vec::<f32>().unwrap()) };
        for rows in [vec![0, 1, 2], vec![5, 0, 3], vec![4]] {
            let (a, b) = (d.train.batch(&d.shape, &rows, &device), back.train.batch(&back.shape, &rows, &device));
            assert_eq!(values(a.input.video), values(b.input.video), "rows {rows:?}");
            assert_eq!(values(a.input.audio.unwrap()), values(b.input.audio.unwrap()), "rows {rows:?}");
            assert_eq!(values(a.input.text.unwrap()), values(b.input.text.unwrap()), "rows {rows:?}");
            assert_eq!(a.scores, b.scores);
            assert_eq!(a.indices, b.indices);
        }
    }

    #[test]
    fn editing_mapped_features_copies_them_and_leaves_the_file() {
        let dir_guard = tempdir("native-edit");
        let dir = dir_guard.path();
        save(&tiny(), dir, serde_json::Value::Null).unwrap();
        let back = load(dir).unwrap();
        let missing = crate::data::missing::Missing { modalities: vec![crate::input::Modality::Audio], mode: crate::data::missing::MissingMode::Zeros, fraction: 0.0, seed: 0 };
        let out = missing.apply(&back.test, &back.shape, &back.train);
        assert!(!out.audio.as_ref().unwrap().is_mapped() && out.audio.as_ref().unwrap().iter().all(|&x| x == 0.0));
        assert!(out.video.is_mapped() && out.text.as_ref().unwrap().is_mapped(), "the modalities kept stay in the file");
        assert_eq!(load(dir).unwrap().test, back.test, "the file is unchanged");
        assert!(back.test.audio.as_ref().unwrap().iter().any(|&x| x != 0.0));
    }

    #[test]
    fn a_truncated_file_names_the_file_and_the_field_cut_off() {
        let dir_guard = tempdir("native-trunc");
        let dir = dir_guard.path();
        save(&tiny(), dir, serde_json::Value::Null).unwrap();
        let file = dir.join("valid.safetensors");
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() - 100]).unwrap();
        let err = load(dir).unwrap_err();
        let msg = err.to_string();
        assert!(err.downcast_ref::<crate::error::InputError>().is_some(), "{msg}");
        // safetensors writes the largest-aligned dtype first, then by name: the last field is the video.
        assert!(msg.contains("valid.safetensors") && msg.contains("field 'video'"), "{msg}");
        assert!(msg.contains(&format!("end at byte {}", bytes.len())) && msg.contains(&format!("a file of {} bytes", bytes.len() - 100)), "{msg}");
        std::fs::write(&file, [&bytes[..], &[0u8; 4]].concat()).unwrap();
        let msg = load(dir).unwrap_err().to_string();
        assert!(msg.contains("valid.safetensors") && msg.contains(&format!("expected {} bytes", bytes.len())) && msg.contains("extra bytes"), "{msg}");
    }

    #[test]
    fn a_misaligned_file_is_read_into_memory_with_the_same_values() {
        let dir_guard = tempdir("native-misaligned");
        let dir = dir_guard.path();
        let d = tiny();
        save(&d, dir, serde_json::Value::Null).unwrap();
        // Another writer's file: the same header one space longer, so the data section starts at
        // an odd offset (still a valid safetensors file).
        let file = dir.join("train.safetensors");
        let bytes = std::fs::read(&file).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let mut shifted = ((n + 1) as u64).to_le_bytes().to_vec();
        shifted.extend_from_slice(&bytes[8..8 + n]);
        shifted.push(b' ');
        shifted.extend_from_slice(&bytes[8 + n..]);
        std::fs::write(&file, shifted).unwrap();
        let back = load(dir).unwrap();
        assert!(!back.train.video.is_mapped() && !back.train.text.as_ref().unwrap().is_mapped(), "decoded, not viewed misaligned");
        assert!(back.valid.video.is_mapped(), "the other files are still read in place");
        assert_eq!(bits(&back.train.video), bits(&d.train.video));
        assert_eq!(back.train, d.train);
    }

    #[test]
    fn missing_manifest_is_an_input_error() {
        let dir_guard = tempdir("native-none");
        let dir = dir_guard.path();
        let err = load(dir).unwrap_err();
        assert!(err.to_string().contains("no manifest.json"));
    }

    pub(crate) fn tempdir(tag: &str) -> tempfile::TempDir {
        tempfile::Builder::new().prefix(&format!("mmkd-test-{tag}-")).tempdir().unwrap()
    }
}
