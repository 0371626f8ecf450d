//! Import of the published MOSEI packagings (MulT and MMSA pickles) through `mmkd-pickle`,
//! which parses them without executing anything. The result is an ordinary `Dataset`; the
//! reader's repairs (NaN/-inf zeroed as MulT's loader does, labels clipped) are reported.
//!
//! MulT's files carry no lengths: each clip is zero-padded to the common length, at an end the
//! file does not name. The side is found per modality over every split (`Padding`), lengths count
//! the real frames at that side, and a modality padded at the start is stored with each clip's
//! real frames moved first (`move_real_frames_first`), the layout the key-padding mask
//! (`j >= len`), `Lengths::scaled` and MulT's positions (zero frames get position 0) assume.

use std::io::{self, Write};
use std::path::Path;

use anyhow::Result;
use mmkd_pickle::mosei::{PaddingCounts, PaddingSide, ZeroFrameScan, ZeroFrames};
use mmkd_pickle::safetensors_stream::{Dtype, StreamWriter, TensorSpec};
use mmkd_pickle::{Array3, ArrayView, FeatureArray, MappedFile, MoseiFile, MoseiView, ReadOptions, SplitData, read_mosei_file, read_mosei_file_with, read_mosei_view_with_progress};
use serde::Serialize;

use super::{Dataset, Lengths, Split};
use crate::bail_input;
use crate::config::DataShape;

/// The feature modalities in the reader's names, in the order of `ModalityZeros`.
const MODALITIES: [&str; 3] = ["text", "audio", "vision"];

/// One split's zero frames per clip, per modality in the order of `MODALITIES` (`None`: absent).
type ModalityZeros = [Option<Vec<ZeroFrames>>; 3];

/// Where one modality of a file is padded, as recorded in a converted dataset's provenance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PaddingRecord {
    /// The side the clips are padded at (`PaddingCounts::side` of `counts`).
    pub side: PaddingSide,
    /// Clips per place of their all-zero frames, over every split.
    #[serde(flatten)]
    pub counts: PaddingCounts,
    /// Whether the clips were stored with their real frames first (a `start` side).
    pub moved_to_end: bool,
}

/// Where each modality of a file is padded, found over every split (detection needs them all:
/// a split could hold only full clips).
struct Padding {
    /// Per split of the file, in its order.
    zeros: Vec<ModalityZeros>,
    /// Per modality of `MODALITIES` (an absent one: `end`, no clip counted).
    modalities: [PaddingRecord; 3],
}

impl Padding {
    fn from_zeros(zeros: Vec<ModalityZeros>) -> Padding {
        let modalities = std::array::from_fn(|m| {
            let counts = zeros.iter().filter_map(|z| z[m].as_deref()).map(PaddingCounts::of).fold(PaddingCounts::default(), PaddingCounts::plus);
            PaddingRecord { side: counts.side(), counts, moved_to_end: counts.side() == PaddingSide::Start }
        });
        Padding { zeros, modalities }
    }

    /// The in-memory reader's arrays, scanned.
    fn of(file: &MoseiFile) -> Padding {
        Padding::from_zeros(file.splits.iter().map(|s| MODALITIES.map(|m| s.modality(m).map(FeatureArray::zero_frames))).collect())
    }

    fn sides(&self) -> [PaddingSide; 3] {
        self.modalities.map(|m| m.side)
    }

    /// `{"text": {"side": .., "start": .., .., "moved_to_end": ..}, ..}` for the modalities present.
    fn provenance(&self) -> serde_json::Map<String, serde_json::Value> {
        let present = |m: usize| self.zeros.iter().any(|z| z[m].is_some());
        MODALITIES.iter().enumerate().filter(|&(m, _)| present(m)).map(|(m, name)| (name.to_string(), serde_json::to_value(self.modalities[m]).expect("plain data serializes"))).collect()
    }
}

/// Moves a clip's last `real` frames (of `frame` elements each) to its start and fills the rest
/// with `zero`: frames [L-real, L) go to [0, real).
fn move_real_frames_first<T: Copy>(clip: &mut [T], frame: usize, real: usize, zero: T) {
    let first_real = clip.len() - real * frame;
    clip.copy_within(first_real.., 0);
    clip[real * frame..].fill(zero);
}

/// `move_real_frames_first` on every clip of an array in memory.
fn move_padding_to_end(a: &mut Array3, lengths: &[usize]) {
    let [_, l, d] = a.shape;
    if l * d == 0 {
        return;
    }
    for (clip, &real) in a.data.chunks_exact_mut(l * d).zip(lengths) {
        move_real_frames_first(clip, d, real, 0.0);
    }
}

/// Every modality of a split has the first split's lengths and dims (either reader's arrays).
fn check_shapes<A: FeatureArray>(file: &Path, s: &SplitData<A>, shape: &DataShape) -> Result<()> {
    for (key, a, len, dim) in
        [("text", s.text.as_ref(), shape.text_len, shape.text_dim), ("audio", s.audio.as_ref(), shape.audio_len, shape.audio_dim), ("vision", Some(&s.vision), shape.video_len, shape.video_dim)]
    {
        if let Some(a) = a
            && (a.shape()[1] != len || a.shape()[2] != dim)
        {
            bail_input!("{}: split '{}', key '{key}': expected (N, {len}, {dim}) like the first split, found {:?}", file.display(), s.name, a.shape());
        }
    }
    Ok(())
}

/// Per-sample lengths: MMSA's own audio/vision lengths where the file has them, else the real
/// frames of each clip at its modality's padding side (`zeros` and `sides` in the order of
/// `MODALITIES`), clamped to the padded length; an absent modality has no padding to find and
/// gets the full length.
fn lengths_of<A: FeatureArray>(s: &SplitData<A>, shape: &DataShape, zeros: &ModalityZeros, sides: [PaddingSide; 3]) -> Lengths {
    let n = s.n();
    let found = |m: usize, full: usize| zeros[m].as_ref().map_or_else(|| vec![full; n], |z| z.iter().map(|z| z.real_frames(sides[m])).collect());
    let text = found(0, shape.text_len);
    let audio = s.audio_lengths.clone().unwrap_or_else(|| found(1, shape.audio_len));
    let video = s.vision_lengths.clone().unwrap_or_else(|| found(2, shape.video_len));
    Lengths {
        text,
        audio: audio.into_iter().map(|l| l.min(shape.audio_len)).collect(),
        video: video.into_iter().map(|l| l.min(shape.video_len)).collect(),
        full: [shape.video_len, shape.audio_len, shape.text_len],
    }
}

/// A split in the native layout: lengths from `zeros` at each modality's side, and a modality
/// padded at the start stored with its real frames first.
fn to_split(file: &Path, mut s: SplitData, shape: &DataShape, zeros: &ModalityZeros, sides: [PaddingSide; 3]) -> Result<Split> {
    check_shapes(file, &s, shape)?;
    let lengths = lengths_of(&s, shape, zeros, sides);
    for (array, real, side) in [(s.text.as_mut(), &lengths.text, sides[0]), (s.audio.as_mut(), &lengths.audio, sides[1]), (Some(&mut s.vision), &lengths.video, sides[2])] {
        if let Some(array) = array
            && side == PaddingSide::Start
        {
            move_padding_to_end(array, real);
        }
    }
    let n = s.n();
    Ok(Split {
        name: s.name,
        text: s.text.map(|a| a.data.into()),
        audio: s.audio.map(|a| a.data.into()),
        video: s.vision.data.into(),
        labels: s.labels.unwrap_or_else(|| vec![f32::NAN; n]),
        ids: s.ids,
        lengths: Some(lengths),
    })
}

/// Dims and lengths from a split (those of an absent modality are 0), split sizes from the file.
fn shape_of<A: FeatureArray>(first: &SplitData<A>, file: &MoseiFile<A>) -> DataShape {
    let dims = |a: Option<&A>| a.map_or([0, 0, 0], |a| a.shape());
    let ([_, text_len, text_dim], [_, audio_len, audio_dim], [_, video_len, video_dim]) = (dims(first.text.as_ref()), dims(first.audio.as_ref()), first.vision.shape());
    let n = |name: &str| file.split(name).map_or(0, |s| s.n());
    DataShape { text_dim, audio_dim, video_dim, text_len, audio_len, video_len, n_train: n("train"), n_valid: n("valid"), n_test: n("test") }
}

/// The shape of a MulT/MMSA pickle without loading it: the file is memory-mapped and read as
/// views (`shape_of`, as the loaders and the converter take it).
pub fn pickle_shape(path: &Path) -> Result<DataShape> {
    let map = match MappedFile::open(path) {
        Ok(m) => m,
        Err(e) => bail_input!("{e}"),
    };
    let file: MoseiView = match read_mosei_view_with_progress(&map, path, &ReadOptions::STRICT, |_| {}) {
        Ok(f) => f,
        Err(e) => bail_input!("{e}"),
    };
    Ok(shape_of(file.split("train").expect("the strict reader guarantees the three splits"), &file))
}

/// Read the named splits of a pickle for prediction: text, audio and labels may be absent.
pub fn load_pickle_for_prediction(path: &Path, names: &[&str], present_only: bool) -> Result<super::PredictionData> {
    let file = match read_mosei_file_with(path, &ReadOptions::VIDEO_ONLY) {
        Ok(f) => f,
        Err(e) => bail_input!("{e}"),
    };
    let first = file.splits.first().expect("the reader returns at least one split");
    let shape = shape_of(first, &file);
    let padding = Padding::of(&file);
    let mut splits = Vec::new();
    for &name in names {
        match file.splits.iter().position(|s| s.name == name) {
            Some(k) => splits.push(to_split(path, file.splits[k].clone(), &shape, &padding.zeros[k], padding.sides())?),
            None if present_only => {}
            None => bail_input!("{}: split '{name}': missing", path.display()),
        }
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("mosei").to_string();
    Ok(super::PredictionData { name: stem, source: format!("{} pickle {}", file.layout, path.display()), shape, splits })
}

/// Read a MulT or MMSA pickle into a dataset; the second value is the parsed file, whose `repairs` list what was fixed.
pub fn load_pickle(path: &Path) -> Result<(Dataset, MoseiFile)> {
    let file = match read_mosei_file(path) {
        Ok(f) => f,
        Err(e) => bail_input!("{e}"),
    };
    let train = file.split("train").expect("the reader guarantees the three splits");
    let shape = shape_of(train, &file);
    let padding = Padding::of(&file);
    let take = |name: &str| -> Result<Split> {
        match file.splits.iter().position(|s| s.name == name) {
            Some(k) => to_split(path, file.splits[k].clone(), &shape, &padding.zeros[k], padding.sides()),
            None => bail_input!("{}: split '{name}': missing", path.display()),
        }
    };
    let (train, valid, test) = (take("train")?, take("valid")?, take("test")?);
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("mosei").to_string();
    let dataset = Dataset { name: stem, source: format!("{} pickle {}", file.layout, path.display()), synthetic: false, shape, train, valid, test };
    Ok((dataset, file))
}

/// Wraps a tensor writer that receives a `[N, L, D]` array as little-endian f32 in C order. For a
/// modality padded at the start it holds one clip (`L * D` values) at a time and passes it on with
/// its real frames first (`move_real_frames_first`), so the stream never holds more than a clip;
/// otherwise it passes the bytes straight through.
struct RealFramesFirst<'a, W> {
    inner: W,
    /// Per clip, the real frames to move first; `None` when nothing moves.
    lengths: Option<std::slice::Iter<'a, usize>>,
    frame_bytes: usize,
    clip_bytes: usize,
    clip: Vec<u8>,
}

impl<'a, W: Write> RealFramesFirst<'a, W> {
    fn new(inner: W, [_, l, d]: [usize; 3], side: PaddingSide, lengths: &'a [usize]) -> Self {
        let moves = side == PaddingSide::Start && l * d > 0;
        let clip_bytes = l * d * 4;
        RealFramesFirst { inner, lengths: moves.then(|| lengths.iter()), frame_bytes: d * 4, clip_bytes, clip: Vec::with_capacity(if moves { clip_bytes } else { 0 }) }
    }

    /// The inner writer, once every clip has gone through.
    fn into_inner(self) -> io::Result<W> {
        if !self.clip.is_empty() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a clip was cut short"));
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for RealFramesFirst<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(lengths) = self.lengths.as_mut() else {
            return self.inner.write(buf);
        };
        let take = (self.clip_bytes - self.clip.len()).min(buf.len());
        self.clip.extend_from_slice(&buf[..take]);
        if self.clip.len() == self.clip_bytes {
            let &real = lengths.next().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "more clips than lengths"))?;
            move_real_frames_first(&mut self.clip, self.frame_bytes, real, 0u8);
            self.inner.write_all(&self.clip)?;
            self.clip.clear();
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What `convert_streaming` did, for the manifest and the user.
pub struct StreamConversion {
    /// The dataset's name (the pickle's file stem).
    pub name: String,
    /// Dims and lengths of the first split, split sizes of the file.
    pub shape: DataShape,
    /// MulT or MMSA.
    pub layout: String,
    /// Pickle protocol.
    pub protocol: u8,
    /// Repairs made (as `MoseiFile::repairs`).
    pub repairs: Vec<String>,
    /// Where each modality was padded (`{"text": PaddingRecord, ..}`), for the provenance.
    pub padding: serde_json::Map<String, serde_json::Value>,
}

/// Convert a MulT/MMSA pickle to the native format without loading it: the file is memory-mapped,
/// read as zero-copy views, and every array streamed in chunks into its split's safetensors file
/// (written atomically), with the same repairs, lengths and padding side as `load_pickle` +
/// `native::save`. The side needs every split, so each array is streamed twice: once into a
/// `ZeroFrameScan` (phase `scan`), once into its file. Peak resident memory is about the file's
/// size, all of it mapped file pages the kernel can drop (measured on a MOSEI-sized file:
/// crates/mmkd-pickle/README.md). `progress(phase, done, total)` is called as bytes are read, scanned
/// and written.
pub fn convert_streaming(path: &Path, out: &Path, mut progress: impl FnMut(&str, u64, u64)) -> Result<StreamConversion> {
    let map = match MappedFile::open(path) {
        Ok(m) => m,
        Err(e) => bail_input!("{e}"),
    };
    let size = map.len() as u64;
    let file: MoseiView = match read_mosei_view_with_progress(&map, path, &ReadOptions::STRICT, |done| progress("read", done, size)) {
        Ok(f) => f,
        Err(e) => bail_input!("{e}"),
    };
    let shape = shape_of(file.split("train").expect("the strict reader guarantees the three splits"), &file);
    let DataShape { text_dim, audio_dim, video_dim, text_len, audio_len, video_len, .. } = shape;
    let total: u64 = file.splits.iter().map(|s| s.n() as u64 * 4 * (text_len * text_dim + audio_len * audio_dim + video_len * video_dim) as u64).sum();
    std::fs::create_dir_all(out).map_err(|e| crate::error::input_error(format!("{}: {e}", out.display())))?;
    // Until the new manifest is written the directory is incomplete.
    let _ = std::fs::remove_file(out.join("manifest.json"));
    for split in &file.splits {
        check_shapes(path, split, &shape)?;
    }
    let padding = scan_padding(&file, total, &mut progress)?;
    let mut done = 0u64;
    for (split, zeros) in file.splits.iter().zip(&padding.zeros) {
        let n = split.n();
        let lengths = lengths_of(split, &shape, zeros, padding.sides());
        let sides = padding.sides();
        let features: [(&str, &ArrayView, &[usize], PaddingSide); 3] = [
            ("text", split.text.as_ref().expect("strict"), &lengths.text, sides[0]),
            ("audio", split.audio.as_ref().expect("strict"), &lengths.audio, sides[1]),
            ("video", &split.vision, &lengths.video, sides[2]),
        ];
        let mut specs: Vec<TensorSpec> = features.iter().map(|(name, a, _, _)| TensorSpec::new(*name, Dtype::F32, a.shape().to_vec())).collect();
        specs.push(TensorSpec::new("labels", Dtype::F32, vec![n]));
        for name in ["lengths_text", "lengths_audio", "lengths_video"] {
            specs.push(TensorSpec::new(name, Dtype::I64, vec![n]));
        }
        let metadata = std::collections::BTreeMap::from([("ids".to_string(), serde_json::to_string(&split.ids)?)]);
        crate::durable::write_atomic_with(&out.join(format!("{}.safetensors", split.name)), |tmp| {
            let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(tmp)?);
            let mut writer = StreamWriter::new(file, specs, &metadata)?;
            for (name, array, real, side) in features {
                let mut tensor = RealFramesFirst::new(writer.begin(name)?, array.shape(), side, real);
                let base = done;
                array.write_f32_le(&mut tensor, |b| progress("write", base + b, total))?;
                done += array.f32_byte_len();
                tensor.into_inner()?.finish()?;
            }
            let mut labels = writer.begin("labels")?;
            for y in split.labels.as_ref().expect("strict") {
                std::io::Write::write_all(&mut labels, &y.to_le_bytes())?;
            }
            labels.finish()?;
            for (name, values) in ["lengths_text", "lengths_audio", "lengths_video"].into_iter().zip([&lengths.text, &lengths.audio, &lengths.video]) {
                let mut t = writer.begin(name)?;
                for &v in values {
                    std::io::Write::write_all(&mut t, &(v as i64).to_le_bytes())?;
                }
                t.finish()?;
            }
            writer.finish()?.into_inner().map_err(|e| e.into_error())?;
            Ok(())
        })?;
    }
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("mosei").to_string();
    Ok(StreamConversion { name, shape, layout: file.layout.to_string(), protocol: file.protocol, repairs: file.repairs.iter().map(|r| r.to_string()).collect(), padding: padding.provenance() })
}

/// The first pass of `convert_streaming`: every array of every split streamed into a
/// `ZeroFrameScan` (nothing is kept but each clip's zero-frame counts).
fn scan_padding(file: &MoseiView, total: u64, progress: &mut impl FnMut(&str, u64, u64)) -> Result<Padding> {
    let mut done = 0u64;
    let mut zeros = Vec::with_capacity(file.splits.len());
    for split in &file.splits {
        let mut split_zeros: ModalityZeros = [None, None, None];
        for (m, name) in MODALITIES.iter().enumerate() {
            let Some(array) = split.modality(name) else { continue };
            let mut scan = ZeroFrameScan::new(array.shape());
            let base = done;
            array.write_f32_le(&mut scan, |b| progress("scan", base + b, total))?;
            done += array.f32_byte_len();
            split_zeros[m] = Some(scan.finish());
        }
        zeros.push(split_zeros);
    }
    Ok(Padding::from_zeros(zeros))
}

/// `convert_streaming`, then the manifest (written last: a directory with a manifest is
/// complete), recording where the data came from and the repairs made.
pub fn convert_to_native(path: &Path, out: &Path, progress: impl FnMut(&str, u64, u64)) -> Result<StreamConversion> {
    let conv = convert_streaming(path, out, progress)?;
    let manifest = super::native::Manifest {
        format: super::native::FORMAT.into(),
        version: super::native::VERSION,
        name: conv.name.clone(),
        source: format!("{} pickle {}", conv.layout, path.display()),
        synthetic: false,
        shape: conv.shape.clone(),
        provenance: serde_json::json!({"converted_from": path.display().to_string(), "layout": conv.layout, "protocol": conv.protocol, "repairs": conv.repairs, "padding": conv.padding}),
        fingerprint: None,
    };
    super::native::write_manifest(out, &manifest)?;
    Ok(conv)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streaming converter writes exactly what loading the pickle and saving it does.
    #[test]
    fn streaming_conversion_equals_load_and_save() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pickles");
        for name in ["mult_p2_f32.pkl", "mult_p4_defects.pkl", "mult_p4_f64.pkl", "mult_p5_mixed.pkl", "mmsa_p2_f64.pkl", "mmsa_p4_f32.pkl", "mult_pad_start.pkl", "mult_pad_end.pkl"] {
            let path = fixtures.join(name);
            let (loaded, parsed) = load_pickle(&path).unwrap();
            let tmp = tempfile::tempdir().unwrap();
            let out = tmp.path().join(name);
            let conv = convert_streaming(&path, &out, |_, _, _| {}).unwrap();
            assert_eq!(conv.shape, loaded.shape, "{name}");
            assert_eq!(conv.repairs.len(), parsed.repairs.len(), "{name}");
            for split in ["train", "valid", "test"] {
                let got = crate::data::native::read_splits(&out, &[split], &conv.shape).unwrap();
                let want = loaded.split(split).unwrap();
                assert_eq!(&got[0], want, "{name} {split}");
            }
        }
    }

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pickles").join(name)
    }

    /// `real_lengths[split][modality]` of a padding fixture's expected.json (numpy's count).
    fn real_lengths(name: &str, split: &str, modality: &str) -> Vec<usize> {
        let path = fixture(name).with_extension("expected.json");
        let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        expected["real_lengths"][split][modality].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect()
    }

    /// The same clips padded at the start and at the end import identically, by either path, with
    /// lengths equal to the real frames (an interior zero frame counts, an empty clip has none).
    #[test]
    fn start_and_end_padding_import_identically() {
        let (start, _) = load_pickle(&fixture("mult_pad_start.pkl")).unwrap();
        let (end, _) = load_pickle(&fixture("mult_pad_end.pkl")).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let start_conv = convert_streaming(&fixture("mult_pad_start.pkl"), &tmp.path().join("start"), |_, _, _| {}).unwrap();
        let end_conv = convert_streaming(&fixture("mult_pad_end.pkl"), &tmp.path().join("end"), |_, _, _| {}).unwrap();
        for split in ["train", "valid", "test"] {
            let (a, b) = (start.split(split).unwrap(), end.split(split).unwrap());
            assert_eq!(a, b, "{split}: loaded in memory");
            let streamed = crate::data::native::read_splits(&tmp.path().join("start"), &[split], &start_conv.shape).unwrap();
            assert_eq!(&streamed[0], b, "{split}: streamed from the start-padded file");
            let lengths = a.lengths.as_ref().unwrap();
            assert_eq!(lengths.text, real_lengths("mult_pad_end.pkl", split, "text"), "{split}");
            assert_eq!(lengths.audio, real_lengths("mult_pad_end.pkl", split, "audio"), "{split}");
            assert_eq!(lengths.video, real_lengths("mult_pad_end.pkl", split, "vision"), "{split}");
            // Real frames first: every frame from a clip's length on is zero, the last real one is not.
            let d = start.shape.video_dim;
            for (clip, &len) in a.video.chunks_exact(start.shape.video_len * d).zip(&lengths.video) {
                assert!(clip[len * d..].iter().all(|&x| x == 0.0), "{split}");
                assert!(len == 0 || clip[(len - 1) * d..len * d].iter().any(|&x| x != 0.0), "{split}");
            }
        }
        assert!(start.train.lengths.as_ref().unwrap().text.iter().any(|&l| l < start.shape.text_len), "the fixture pads some clips");
        for (conv, side, moved) in [(&start_conv, "start", true), (&end_conv, "end", false)] {
            for modality in ["text", "audio", "vision"] {
                let record = &conv.padding[modality];
                assert_eq!(record["side"], side, "{modality}");
                assert_eq!(record["moved_to_end"], moved, "{modality}");
                assert_eq!(record["both"], 0, "{modality}");
            }
            assert_eq!(conv.padding["audio"]["empty"], 1);
            assert_eq!(conv.padding["text"][side], 8);
            assert_eq!(conv.padding["text"]["none"], 4);
        }
    }

    /// A clip's last `real` frames move to its start, the rest becomes zero; for bytes as for floats.
    #[test]
    fn real_frames_move_first() {
        let mut clip = [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 3.0, 4.0];
        move_real_frames_first(&mut clip, 2, 3, 0.0);
        assert_eq!(clip, [1.0, 2.0, 0.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]);
        let mut full = [1u8, 2, 3, 4];
        move_real_frames_first(&mut full, 2, 2, 0);
        assert_eq!(full, [1, 2, 3, 4]);
        let mut empty = [5u8, 6];
        move_real_frames_first(&mut empty, 1, 0, 0);
        assert_eq!(empty, [0, 0]);
    }

    /// The streaming shifter gives the same bytes whatever pieces the array arrives in.
    #[test]
    fn shifter_is_independent_of_write_sizes() {
        let values: Vec<f32> = (0..24).map(|i| if i % 8 < 3 { 0.0 } else { i as f32 }).collect();
        let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut want = values.clone();
        let mut array = Array3 { shape: [3, 4, 2], data: want.clone() };
        move_padding_to_end(&mut array, &[2, 2, 2]);
        want.clone_from(&array.data);
        for piece in [1, 3, 8, 13, 96] {
            let mut out = RealFramesFirst::new(Vec::new(), [3, 4, 2], PaddingSide::Start, &[2, 2, 2]);
            for chunk in bytes.chunks(piece) {
                out.write_all(chunk).unwrap();
            }
            let got: Vec<f32> = out.into_inner().unwrap().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            assert_eq!(got, want, "pieces of {piece} bytes");
        }
        assert_eq!(&want[..8], &[4.0, 5.0, 6.0, 7.0, 0.0, 0.0, 0.0, 0.0]);
        let mut cut = RealFramesFirst::new(Vec::new(), [3, 4, 2], PaddingSide::Start, &[2, 2, 2]);
        cut.write_all(&bytes[..12]).unwrap();
        assert!(cut.into_inner().is_err(), "a partial clip is an error");
    }
}
