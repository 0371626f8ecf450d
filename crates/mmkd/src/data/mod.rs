//! Data: the in-memory dataset, labels, batches, the native on-disk format, the synthetic
//! MOSEI-shaped generator, the converter from the published MOSEI pickles and the builder from the
//! SDK's computational sequences (`.csd`).

pub mod baselines;
pub mod csd;
pub mod events;
pub mod features;
pub mod identity;
pub mod labels;
pub mod missing;
pub mod native;
pub mod pickle;
pub mod synth;

use burn::prelude::*;
use burn::tensor::{Int, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::config::DataShape;
pub use crate::input::Lengths;
use crate::input::{Modality, NetInput};
pub use features::Features;

/// One split, row-major: `text[i]` is `text_len x text_dim` floats, and so on. The features are
/// owned or read in place from a mapped native split file (`Features`); labels, ids and lengths
/// are always in memory (they are small). Text and audio may be absent (a video-only dataset for a deployed student); labels are NaN
/// where unknown. Training refuses both (`Dataset::check_trainable`).
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// The split's name: "train", "valid" or "test".
    pub name: String,
    /// Text features, `N x text_len x text_dim`; absent in video-only data.
    pub text: Option<Features>,
    /// Audio features, `N x audio_len x audio_dim`; absent in video-only data.
    pub audio: Option<Features>,
    /// Video features, `N x video_len x video_dim`.
    pub video: Features,
    /// Continuous sentiment in [-3, 3]; NaN when unknown.
    pub labels: Vec<f32>,
    /// Clip ids, one per clip.
    pub ids: Vec<String>,
    /// Valid lengths per sample, when the source knows them (MMSA files do).
    pub lengths: Option<Lengths>,
}

impl Split {
    /// Whether the split holds features of modality `m`.
    pub fn has(&self, m: Modality) -> bool {
        match m {
            Modality::Video => true,
            Modality::Audio => self.audio.is_some(),
            Modality::Text => self.text.is_some(),
        }
    }

    /// Whether every clip has a label.
    pub fn labelled(&self) -> bool {
        self.labels.iter().all(|y| y.is_finite())
    }

    /// Number of clips.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no clips.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// 7-class labels (-3..3 mapped to 0..6).
    pub fn classes(&self) -> Vec<usize> {
        self.labels.iter().map(|&y| labels::class_of(y)).collect()
    }

    /// Build the batch of the given rows on `device`. Only these rows are copied (into the
    /// tensors' buffers): from mapped features, the kernel pages in just the rows a batch reads.
    pub fn batch(&self, shape: &DataShape, idx: &[usize], device: &Device) -> Batch {
        let gather = |src: &[f32], len: usize, dim: usize| -> Tensor<3> {
            let row = len * dim;
            let mut out = Vec::with_capacity(idx.len() * row);
            for &i in idx {
                out.extend_from_slice(&src[i * row..(i + 1) * row]);
            }
            Tensor::from_data(TensorData::new(out, [idx.len(), len, dim]), device)
        };
        let scores: Vec<f32> = idx.iter().map(|&i| self.labels[i]).collect();
        let classes: Vec<i64> = scores.iter().map(|&y| labels::class_of(y) as i64).collect();
        Batch {
            input: NetInput {
                text: self.text.as_ref().map(|t| gather(t, shape.text_len, shape.text_dim)),
                audio: self.audio.as_ref().map(|a| gather(a, shape.audio_len, shape.audio_dim)),
                video: gather(&self.video, shape.video_len, shape.video_dim),
                lengths: self.lengths.as_ref().map(|l| l.select(idx)),
            },
            classes: Tensor::from_data(TensorData::new(classes, [idx.len()]), device),
            scores,
            indices: idx.to_vec(),
        }
    }
}

/// A mini-batch on a device. `indices` are the rows in the split (CRD's memory bank needs them).
#[derive(Clone, Debug)]
pub struct Batch {
    /// What the network reads.
    pub input: NetInput,
    /// 7-class labels.
    pub classes: Tensor<1, Int>,
    /// Continuous labels.
    pub scores: Vec<f32>,
    /// Rows in the split.
    pub indices: Vec<usize>,
}

impl Batch {
    /// Rows `rows` of the batch, on its own device: one part of a training step computed in
    /// parts (`train::step::training_step`).
    pub fn rows(&self, rows: std::ops::Range<usize>) -> Batch {
        Batch {
            input: self.input.rows(rows.clone()),
            classes: self.classes.clone().narrow(0, rows.start, rows.len()),
            scores: self.scores[rows.clone()].to_vec(),
            indices: self.indices[rows].to_vec(),
        }
    }

    /// The first `n` rows (at least one) on the plain device: for the frozen teacher and the linear baselines.
    pub fn first_rows_plain(&self, n: usize) -> Batch {
        let n = n.min(self.indices.len()).max(1);
        Batch { input: self.input.first_rows_plain(n), classes: self.classes.clone().inner().narrow(0, 0, n), scores: self.scores[..n].to_vec(), indices: self.indices[..n].to_vec() }
    }
}

/// A dataset: its shape, the three splits, and where it came from.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Short name (`synthetic-PRESET-seedN`, or a pickle's file stem).
    pub name: String,
    /// Human-readable origin, printed in every report ("synthetic (preset small, seed 1)" or
    /// the MOSEI file it was converted from).
    pub source: String,
    /// Whether the data comes from the synthetic generator rather than MOSEI.
    pub synthetic: bool,
    /// Feature dims, sequence lengths and split sizes.
    pub shape: DataShape,
    /// The training split.
    pub train: Split,
    /// The validation split (learning-rate schedule and model selection).
    pub valid: Split,
    /// The test split.
    pub test: Split,
}

impl Dataset {
    /// Refuse data a network cannot be trained or evaluated on: a split without labels, or
    /// without a modality the network reads.
    pub fn check_trainable(&self, needs: &[Modality]) -> anyhow::Result<()> {
        for split in [&self.train, &self.valid, &self.test] {
            if split.is_empty() {
                crate::bail_input!("dataset {}: split '{}' is empty; training and evaluation need clips in train, valid and test", self.name, split.name);
            }
            if let Some(m) = needs.iter().find(|&&m| !split.has(m)) {
                crate::bail_input!("dataset {}: split '{}' has no {} features, which this network reads", self.name, split.name, m.name());
            }
            if !split.labelled() {
                crate::bail_input!("dataset {}: split '{}' has clips without labels; training and evaluation need every label", self.name, split.name);
            }
        }
        Ok(())
    }

    /// The split named "train", "valid" or "test"; `None` for any other name.
    pub fn split(&self, name: &str) -> Option<&Split> {
        match name {
            "train" => Some(&self.train),
            "valid" => Some(&self.valid),
            "test" => Some(&self.test),
            _ => None,
        }
    }
}

/// Load a dataset: a native directory (see `native`) or a MulT/MMSA pickle file.
pub fn load_any(path: &std::path::Path) -> anyhow::Result<Dataset> {
    if path.is_dir() {
        return native::load(path);
    }
    if !path.exists() {
        crate::bail_input!("{}: no such dataset (make one with `mmkd data synth --out DIR`)", path.display());
    }
    Ok(pickle::load_pickle(path)?.0)
}

/// A dataset's name without loading it: the manifest's for a native directory, the file stem
/// for a pickle (as `load_any` names them).
pub fn dataset_name(path: &std::path::Path) -> anyhow::Result<String> {
    if path.is_dir() {
        return Ok(native::read_manifest(path)?.name);
    }
    Ok(path.file_stem().and_then(|s| s.to_str()).unwrap_or("mosei").to_string())
}

/// The splits `mmkd predict` reads, with the dataset's description.
#[derive(Clone, Debug)]
pub struct PredictionData {
    /// Dataset name.
    pub name: String,
    /// Where it came from.
    pub source: String,
    /// Dims and lengths (those of an absent modality are meaningless).
    pub shape: DataShape,
    /// The splits asked for, in the order asked.
    pub splits: Vec<Split>,
}

/// Load the named splits of a native directory or a MulT/MMSA pickle for prediction. Text,
/// audio and labels may be absent (video-only data for a student). With `present_only`, splits
/// the data does not hold are skipped (at least one must remain); otherwise each is required.
pub fn load_for_prediction(path: &std::path::Path, names: &[&str], present_only: bool) -> anyhow::Result<PredictionData> {
    if path.is_dir() {
        let names: Vec<&str> = if present_only { names.iter().copied().filter(|n| path.join(format!("{n}.safetensors")).exists()).collect() } else { names.to_vec() };
        if names.is_empty() {
            crate::bail_input!("{}: holds none of the splits train, valid, test", path.display());
        }
        let (m, splits) = native::load_splits(path, &names)?;
        return Ok(PredictionData { name: m.name, source: m.source, shape: m.shape, splits });
    }
    if !path.exists() {
        crate::bail_input!("{}: no such dataset", path.display());
    }
    pickle::load_pickle_for_prediction(path, names, present_only)
}

/// Batch order for one epoch: a shuffle seeded by (seed, epoch), so a resumed run sees the same
/// batches as an uninterrupted one.
pub fn epoch_order(n: usize, batch_size: usize, seed: u64, epoch: usize, shuffle: bool) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..n).collect();
    if shuffle {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        idx.shuffle(&mut rng);
    }
    idx.chunks(batch_size.max(1)).map(|c| c.to_vec()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(10, 4, 3, 0, true);
        assert_eq!(a, epoch_order(10, 4, 3, 0, true));
        assert_ne!(a, epoch_order(10, 4, 3, 1, true));
        assert_eq!(a.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
        let mut all: Vec<usize> = a.concat();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(epoch_order(5, 2, 0, 0, false).concat(), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn lengths_scale_onto_downsampled_streams() {
        let l = Lengths { video: vec![7, 20], audio: vec![10, 20], text: vec![5], full: [20, 20, 10] };
        assert_eq!(l.scaled(Modality::Video, 5), vec![2, 5]);
        assert_eq!(l.scaled(Modality::Audio, 20), vec![10, 20]);
    }
}
