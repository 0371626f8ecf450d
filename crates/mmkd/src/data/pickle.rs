//! Import of the published MOSEI packagings (MulT and MMSA pickles) through `mmkd-pickle`,
//! which parses them without executing anything. The result is an ordinary `Dataset`; the
//! reader's repairs (NaN/-inf zeroed as MulT's loader does, labels clipped) are reported.

use std::path::Path;

use anyhow::Result;
use mmkd_pickle::safetensors_stream::{Dtype, StreamWriter, TensorSpec};
use mmkd_pickle::{Array3, ArrayView, FeatureArray, MappedFile, MoseiFile, MoseiView, ReadOptions, SplitData, read_mosei_file, read_mosei_file_with, read_mosei_view_with_progress};

use super::{Dataset, Lengths, Split};
use crate::bail_input;
use crate::config::DataShape;

/// Frames per sample that are not entirely zero (MulT files carry no lengths; their padding
/// frames are all-zero).
fn nonzero_frames(a: &Array3) -> Vec<usize> {
    let [n, l, d] = a.shape;
    (0..n)
        .map(|i| {
            let s = &a.data[i * l * d..(i + 1) * l * d];
            s.chunks_exact(d.max(1)).rposition(|f| f.iter().any(|&x| x != 0.0)).map_or(0, |p| p + 1)
        })
        .collect()
}

/// Every modality of a split has the first split's lengths and dims (either reader's arrays).
fn check_shapes<A: FeatureArray>(file: &Path, s: &SplitData<A>, shape: &DataShape) -> Result<()> {
    for (key, a, len, dim) in [
        ("text", s.text.as_ref(), shape.text_len, shape.text_dim),
        ("audio", s.audio.as_ref(), shape.audio_len, shape.audio_dim),
        ("vision", Some(&s.vision), shape.video_len, shape.video_dim),
    ] {
        if let Some(a) = a
            && (a.shape()[1] != len || a.shape()[2] != dim)
        {
            bail_input!("{}: split '{}', key '{key}': expected (N, {len}, {dim}) like the first split, found {:?}", file.display(), s.name, a.shape());
        }
    }
    Ok(())
}

/// Per-sample lengths: MMSA's own audio/vision lengths where the file has them, else the
/// non-zero frames `frames(i)` of modality i (0 text, 1 audio, 2 vision), clamped to the padded
/// length; an absent modality has no padding to find and gets the full length.
fn lengths_of<A: FeatureArray>(s: &SplitData<A>, shape: &DataShape, mut frames: impl FnMut(usize) -> Vec<usize>) -> Lengths {
    let n = s.n();
    let mut found = |i: usize, present: bool, full: usize| if present { frames(i) } else { vec![full; n] };
    let text = found(0, s.text.is_some(), shape.text_len);
    let audio = s.audio_lengths.clone().unwrap_or_else(|| found(1, s.audio.is_some(), shape.audio_len));
    let video = s.vision_lengths.clone().unwrap_or_else(|| found(2, true, shape.video_len));
    Lengths {
        text,
        audio: audio.into_iter().map(|l| l.min(shape.audio_len)).collect(),
        video: video.into_iter().map(|l| l.min(shape.video_len)).collect(),
        full: [shape.text_len, shape.audio_len, shape.video_len],
    }
}

fn to_split(file: &Path, s: SplitData, shape: &DataShape) -> Result<Split> {
    check_shapes(file, &s, shape)?;
    let lengths = lengths_of(&s, shape, |i| match i {
        0 => nonzero_frames(s.text.as_ref().expect("present")),
        1 => nonzero_frames(s.audio.as_ref().expect("present")),
        _ => nonzero_frames(&s.vision),
    });
    let n = s.n();
    Ok(Split {
        name: s.name,
        text: s.text.map(|a| a.data),
        audio: s.audio.map(|a| a.data),
        video: s.vision.data,
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

/// Read the named splits of a pickle for prediction: text, audio and labels may be absent.
pub fn load_pickle_for_prediction(path: &Path, names: &[&str], present_only: bool) -> Result<super::PredictionData> {
    let file = match read_mosei_file_with(path, &ReadOptions::VIDEO_ONLY) {
        Ok(f) => f,
        Err(e) => bail_input!("{e}"),
    };
    let first = file.splits.first().expect("the reader returns at least one split");
    let shape = shape_of(first, &file);
    let mut splits = Vec::new();
    for &name in names {
        match file.split(name) {
            Some(s) => splits.push(to_split(path, s.clone(), &shape)?),
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
    let mut splits = file.splits.clone().into_iter();
    let mut take = |name: &str| -> Result<Split> {
        match splits.find(|s| s.name == name) {
            Some(s) => to_split(path, s, &shape),
            None => bail_input!("{}: split '{name}': missing", path.display()),
        }
    };
    let (train, valid, test) = (take("train")?, take("valid")?, take("test")?);
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("mosei").to_string();
    let dataset = Dataset {
        name: stem,
        source: format!("{} pickle {} (real packaged features)", file.layout, path.display()),
        synthetic: false,
        shape,
        train,
        valid,
        test,
    };
    Ok((dataset, file))
}

/// Wraps a tensor writer that receives a `[N, len, dim]` array as little-endian f32 in C order,
/// and records, per sample, how many frames there are up to the last one that is not all zero
/// (what `nonzero_frames` computes on an array in memory).
struct FrameProbe<W> {
    inner: W,
    len: usize,
    dim: usize,
    element: usize,
    carry: Vec<u8>,
    frames: Vec<usize>,
}

impl<W: std::io::Write> FrameProbe<W> {
    fn new(inner: W, n: usize, len: usize, dim: usize) -> Self {
        FrameProbe { inner, len, dim: dim.max(1), element: 0, carry: Vec::new(), frames: vec![0; n] }
    }

    fn see(&mut self, bytes: [u8; 4]) {
        if f32::from_le_bytes(bytes) != 0.0 {
            let sample = self.element / (self.len * self.dim).max(1);
            let frame = (self.element / self.dim) % self.len.max(1);
            if let Some(f) = self.frames.get_mut(sample) {
                *f = (*f).max(frame + 1);
            }
        }
        self.element += 1;
    }
}

impl<W: std::io::Write> std::io::Write for FrameProbe<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let mut bytes = std::mem::take(&mut self.carry);
        bytes.extend_from_slice(&buf[..n]);
        let whole = bytes.len() / 4 * 4;
        for c in bytes[..whole].chunks_exact(4) {
            self.see([c[0], c[1], c[2], c[3]]);
        }
        self.carry = bytes[whole..].to_vec();
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
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
}

/// Convert a MulT/MMSA pickle to the native format without loading it: the file is memory-mapped,
/// read as zero-copy views, and every array streamed in chunks into its split's safetensors file
/// (written atomically), with the same repairs and the same lengths as `load_pickle` + `native::save`.
/// Peak resident memory is about the file's size, all of it mapped file pages the kernel can drop
/// (measured on a MOSEI-sized file: crates/mmkd-pickle/README.md). `progress(phase, done, total)`
/// is called as bytes are read and written.
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
    let mut done = 0u64;
    for split in &file.splits {
        let n = split.n();
        check_shapes(path, split, &shape)?;
        let features: [(&str, &ArrayView, usize, usize); 3] = [
            ("text", split.text.as_ref().expect("strict"), text_len, text_dim),
            ("audio", split.audio.as_ref().expect("strict"), audio_len, audio_dim),
            ("video", &split.vision, video_len, video_dim),
        ];
        let mut specs: Vec<TensorSpec> = features.iter().map(|(name, a, _, _)| TensorSpec::new(*name, Dtype::F32, a.shape().to_vec())).collect();
        specs.push(TensorSpec::new("labels", Dtype::F32, vec![n]));
        for name in ["lengths_text", "lengths_audio", "lengths_video"] {
            specs.push(TensorSpec::new(name, Dtype::I64, vec![n]));
        }
        let metadata = std::collections::BTreeMap::from([("ids".to_string(), serde_json::to_string(&split.ids)?)]);
        crate::error::write_atomic_with(&out.join(format!("{}.safetensors", split.name)), |tmp| {
            let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(tmp)?);
            let mut writer = StreamWriter::new(file, specs, &metadata)?;
            let mut frames = Vec::new();
            for (name, array, len, dim) in features {
                let mut probe = FrameProbe::new(writer.begin(name)?, n, len, dim);
                let base = done;
                array.write_f32_le(&mut probe, |b| progress("write", base + b, total))?;
                done += (n * len * dim * 4) as u64;
                frames.push(probe.frames);
                probe.inner.finish()?;
            }
            let mut labels = writer.begin("labels")?;
            for y in split.labels.as_ref().expect("strict") {
                std::io::Write::write_all(&mut labels, &y.to_le_bytes())?;
            }
            labels.finish()?;
            let l = lengths_of(split, &shape, |i| std::mem::take(&mut frames[i]));
            for (name, values) in ["lengths_text", "lengths_audio", "lengths_video"].into_iter().zip([l.text, l.audio, l.video]) {
                let mut t = writer.begin(name)?;
                for v in values {
                    std::io::Write::write_all(&mut t, &(v as i64).to_le_bytes())?;
                }
                t.finish()?;
            }
            writer.finish()?.into_inner().map_err(|e| e.into_error())?;
            Ok(())
        })?;
    }
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("mosei").to_string();
    Ok(StreamConversion { name, shape, layout: file.layout.to_string(), protocol: file.protocol, repairs: file.repairs.iter().map(|r| r.to_string()).collect() })
}

/// `convert_streaming`, then the manifest (written last: a directory with a manifest is
/// complete), recording where the data came from and the repairs made.
pub fn convert_to_native(path: &Path, out: &Path, progress: impl FnMut(&str, u64, u64)) -> Result<StreamConversion> {
    let conv = convert_streaming(path, out, progress)?;
    let manifest = super::native::Manifest {
        format: super::native::FORMAT.into(),
        version: super::native::VERSION,
        name: conv.name.clone(),
        source: format!("{} pickle {} (real packaged features)", conv.layout, path.display()),
        synthetic: false,
        shape: conv.shape.clone(),
        provenance: serde_json::json!({"converted_from": path.display().to_string(), "layout": conv.layout, "protocol": conv.protocol, "repairs": conv.repairs}),
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
        for name in ["mult_p2_f32.pkl", "mult_p4_defects.pkl", "mult_p4_f64.pkl", "mult_p5_mixed.pkl", "mmsa_p2_f64.pkl", "mmsa_p4_f32.pkl"] {
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
}
