//! Import of the published MOSEI packagings (MulT and MMSA pickles) through `mmkd-pickle`,
//! which parses them without executing anything. The result is an ordinary `Dataset`; the
//! reader's repairs (NaN/-inf zeroed as MulT's loader does, labels clipped) are reported.

use std::path::Path;

use anyhow::Result;
use mmkd_pickle::{Array3, MoseiFile, SplitData, read_mosei_file};

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
        ("text", &s.text, shape.text_len, shape.text_dim),
        ("audio", &s.audio, shape.audio_len, shape.audio_dim),
        ("vision", &s.vision, shape.video_len, shape.video_dim),
    ] {
        if a.shape[1] != len || a.shape[2] != dim {
            bail_input!(
                "{}: split '{}', key '{key}': expected (N, {len}, {dim}) like the 'train' split, found {:?}",
                file.display(),
                s.name,
                a.shape
            );
        }
    }
    let lengths = Lengths {
        text: nonzero_frames(&s.text),
        audio: s.audio_lengths.clone().unwrap_or_else(|| nonzero_frames(&s.audio)).into_iter().map(|l| l.min(shape.audio_len)).collect(),
        video: s.vision_lengths.clone().unwrap_or_else(|| nonzero_frames(&s.vision)).into_iter().map(|l| l.min(shape.video_len)).collect(),
        full: [shape.text_len, shape.audio_len, shape.video_len],
    };
    Ok(Split { name: s.name, text: s.text.data, audio: s.audio.data, video: s.vision.data, labels: s.labels, ids: s.ids, lengths: Some(lengths) })
}

/// Read a MulT or MMSA pickle into a dataset; the second value lists the repairs made.
pub fn load_pickle(path: &Path) -> Result<(Dataset, MoseiFile)> {
    let file = match read_mosei_file(path) {
        Ok(f) => f,
        Err(e) => bail_input!("{e}"),
    };
    let train = file.split("train").expect("the reader guarantees the three splits");
    let shape = DataShape {
        text_dim: train.text.shape[2],
        audio_dim: train.audio.shape[2],
        video_dim: train.vision.shape[2],
        text_len: train.text.shape[1],
        audio_len: train.audio.shape[1],
        video_len: train.vision.shape[1],
        n_train: train.n(),
        n_valid: file.split("valid").map_or(0, |s| s.n()),
        n_test: file.split("test").map_or(0, |s| s.n()),
    };
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
