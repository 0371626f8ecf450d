//! Import of the published MOSEI packagings (MulT and MMSA pickles) through `mmkd-pickle`,
//! which parses them without executing anything. The result is an ordinary `Dataset`; the
//! reader's repairs (NaN/-inf zeroed as MulT's loader does, labels clipped) are reported.

use std::path::Path;

use anyhow::Result;
use mmkd_pickle::{Array3, MoseiFile, ReadOptions, SplitData, read_mosei_file, read_mosei_file_with};

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

fn to_split(file: &Path, s: SplitData, shape: &DataShape) -> Result<Split> {
    for (key, a, len, dim) in [
        ("text", s.text.as_ref(), shape.text_len, shape.text_dim),
        ("audio", s.audio.as_ref(), shape.audio_len, shape.audio_dim),
        ("vision", Some(&s.vision), shape.video_len, shape.video_dim),
    ] {
        if let Some(a) = a
            && (a.shape[1] != len || a.shape[2] != dim)
        {
            bail_input!(
                "{}: split '{}', key '{key}': expected (N, {len}, {dim}) like the first split, found {:?}",
                file.display(),
                s.name,
                a.shape
            );
        }
    }
    let n = s.n();
    // An absent modality has no padding to find: its lengths are the full length.
    let frames = |a: Option<&Array3>, full: usize| a.map_or_else(|| vec![full; n], nonzero_frames);
    let lengths = Lengths {
        text: frames(s.text.as_ref(), shape.text_len),
        audio: s.audio_lengths.clone().unwrap_or_else(|| frames(s.audio.as_ref(), shape.audio_len)).into_iter().map(|l| l.min(shape.audio_len)).collect(),
        video: s.vision_lengths.clone().unwrap_or_else(|| nonzero_frames(&s.vision)).into_iter().map(|l| l.min(shape.video_len)).collect(),
        full: [shape.text_len, shape.audio_len, shape.video_len],
    };
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

/// Dims and lengths from a split (those of an absent modality are 0).
fn shape_of(first: &SplitData, file: &MoseiFile) -> DataShape {
    let dims = |a: Option<&Array3>| a.map_or((0, 0), |a| (a.shape[1], a.shape[2]));
    let ((text_len, text_dim), (audio_len, audio_dim)) = (dims(first.text.as_ref()), dims(first.audio.as_ref()));
    DataShape {
        text_dim,
        audio_dim,
        video_dim: first.vision.shape[2],
        text_len,
        audio_len,
        video_len: first.vision.shape[1],
        n_train: file.split("train").map_or(0, |s| s.n()),
        n_valid: file.split("valid").map_or(0, |s| s.n()),
        n_test: file.split("test").map_or(0, |s| s.n()),
    }
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

/// Read a MulT or MMSA pickle into a dataset; the second value lists the repairs made.
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
