//! What the readers return: [`MoseiFile`] and its [`SplitData`], generic over the feature array type
//! ([`Array3`] or [`ArrayView`], through [`FeatureArray`]), the [`Layout`] detected, the
//! [`ReadOptions`] read with and the [`Repair`]s made; and the constants every packaging shares.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::padding::{ZeroFrameScan, ZeroFrames};
use crate::view::{ArrayView, NonFinite};

/// The splits every packaging has, in this order.
pub const SPLITS: [&str; 3] = ["train", "valid", "test"];

/// The feature modalities, in the order reports list them.
pub const MODALITIES: [&str; 3] = ["text", "audio", "vision"];

/// MOSEI sentiment scores lie in [-3, 3]; the 7 classes are the integers in that range.
pub const LABEL_RANGE: (f32, f32) = (-3.0, 3.0);

/// A dense 3-d array in C order: `(N, L, D)` = samples, time steps, features.
#[derive(Debug, Clone, PartialEq)]
pub struct Array3 {
    /// `(N, L, D)`.
    pub shape: [usize; 3],
    /// The `N * L * D` elements, in C order.
    pub data: Vec<f32>,
}

impl Array3 {
    /// Number of samples (the first axis).
    pub fn n(&self) -> usize {
        self.shape[0]
    }

    /// The element at `(i, j, k)`, or `None` out of bounds.
    pub fn get(&self, i: usize, j: usize, k: usize) -> Option<f32> {
        let [n, l, d] = self.shape;
        if i >= n || j >= l || k >= d {
            return None;
        }
        self.data.get((i * l + j) * d + k).copied()
    }

    /// The `(L, D)` block of sample `i`.
    pub fn sample(&self, i: usize) -> Option<&[f32]> {
        let stride = self.shape[1].checked_mul(self.shape[2])?;
        let start = i.checked_mul(stride)?;
        self.data.get(start..start.checked_add(stride)?)
    }
}

/// A `(N, L, D)` feature array as the readers return it: decoded ([`Array3`], from
/// [`read_mosei_file`]) or a view of the file ([`ArrayView`], from [`read_mosei_view`]).
///
/// [`read_mosei_file`]: super::read_mosei_file
/// [`read_mosei_view`]: super::read_mosei_view
pub trait FeatureArray {
    /// `(N, L, D)`: samples, time steps, features.
    fn shape(&self) -> [usize; 3];

    /// Each clip's all-zero frames at either end, after the reader's repairs (one pass over the
    /// data; a view is read in chunks, nothing is kept).
    fn zero_frames(&self) -> Vec<ZeroFrames>;
}

impl FeatureArray for Array3 {
    fn shape(&self) -> [usize; 3] {
        self.shape
    }

    fn zero_frames(&self) -> Vec<ZeroFrames> {
        let mut scan = ZeroFrameScan::new(self.shape);
        scan.push(&self.data);
        scan.finish()
    }
}

impl FeatureArray for ArrayView<'_, 3> {
    fn shape(&self) -> [usize; 3] {
        ArrayView::shape(self)
    }

    fn zero_frames(&self) -> Vec<ZeroFrames> {
        let mut scan = ZeroFrameScan::new(ArrayView::shape(self));
        // Only the sink could fail to write, and a scan never does.
        let _repaired = self.write_f32_le(&mut scan, |_| {}).expect("writing into a ZeroFrameScan cannot fail");
        scan.finish()
    }
}

/// Which published packaging a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Layout {
    /// Yao-Hung Hubert Tsai et al.'s Multimodal Transformer packaging.
    #[serde(rename = "MulT")]
    MulT,
    /// THUIAR's MMSA packaging.
    #[serde(rename = "MMSA")]
    Mmsa,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::MulT => "MulT",
            Layout::Mmsa => "MMSA",
        })
    }
}

/// What [`read_mosei_file_with`] insists on. Each `false` turns a refusal into an absence; nothing
/// else changes: keys that are present are validated and repaired the same way, `vision` is always
/// required (it is the student's modality and the reference for the sample count), and so is at least
/// one of the splits.
///
/// [`read_mosei_file_with`]: super::read_mosei_file_with
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReadOptions {
    /// `text` and `audio` must be present in every split read; when `false`, an absent one is `None`
    /// (and an MMSA split with only `text_bert` gets `text: None` instead of `BertTokenIdsOnly`).
    pub require_text_audio: bool,
    /// `labels` (MulT) / `regression_labels` (MMSA) must be present in every split read; when `false`,
    /// absent labels are `None`, and a first split with `vision` but none of `labels`,
    /// `regression_labels`, `text_bert` is read as the MulT layout instead of `UnknownLayout`.
    pub require_labels: bool,
    /// `train`, `valid` and `test` must all be present; when `false`, absent ones are skipped (a file
    /// with none of them is still refused with `MissingSplit` for `train`).
    pub require_all_splits: bool,
}

impl ReadOptions {
    /// Everything required: what training needs, and what [`read_mosei_file`] uses.
    ///
    /// [`read_mosei_file`]: super::read_mosei_file
    pub const STRICT: ReadOptions = ReadOptions { require_text_audio: true, require_labels: true, require_all_splits: true };

    /// Only `vision` (and one split) required: what `predict` with a video-only student needs.
    pub const VIDEO_ONLY: ReadOptions = ReadOptions { require_text_audio: false, require_labels: false, require_all_splits: false };
}

impl Default for ReadOptions {
    /// [`ReadOptions::STRICT`].
    fn default() -> Self {
        ReadOptions::STRICT
    }
}

/// One split. The features are [`Array3`] (decoded, repaired) from the owning readers and
/// [`ArrayView`] (the file's bytes; repaired as they are written out) in a [`SplitView`].
#[derive(Debug, Clone, PartialEq)]
pub struct SplitData<A = Array3> {
    /// `train`, `valid` or `test`.
    pub name: String,
    /// `None` only when read with `require_text_audio: false` from a split without it.
    pub text: Option<A>,
    /// `None` only when read with `require_text_audio: false` from a split without it.
    pub audio: Option<A>,
    /// Always present; its first axis is the split's sample count.
    pub vision: A,
    /// One sentiment score per sample, already clipped to [-3, 3]; `None` only when read with
    /// `require_labels: false` from a split without labels.
    pub labels: Option<Vec<f32>>,
    /// One id per sample (synthesised as `split/index` when the file has none, see [`Repair`]).
    pub ids: Vec<String>,
    /// MMSA only: valid time steps per sample, at most the padded length.
    pub audio_lengths: Option<Vec<usize>>,
    /// MMSA only: like `audio_lengths`, for `vision`.
    pub vision_lengths: Option<Vec<usize>>,
    /// The file's dtype of every key read (numpy notation: `<f4`, `>f8`, `<U12`, `list`...).
    pub dtypes: BTreeMap<String, String>,
    /// Non-finite feature values per modality, as found in the file (before repair).
    pub nonfinite: BTreeMap<String, NonFinite>,
}

/// A split read by [`read_mosei_view`]: features are views of the file.
///
/// [`read_mosei_view`]: super::read_mosei_view
pub type SplitView<'a> = SplitData<ArrayView<'a>>;

impl<A: FeatureArray> SplitData<A> {
    /// The number of samples (the first axis of `vision`, which every other key matches).
    pub fn n(&self) -> usize {
        self.vision.shape()[0]
    }
}

impl<A> SplitData<A> {
    /// The features of `text`, `audio` or `vision`; `None` for another name or an absent modality.
    pub fn modality(&self, name: &str) -> Option<&A> {
        match name {
            "text" => self.text.as_ref(),
            "audio" => self.audio.as_ref(),
            "vision" => Some(&self.vision),
            _ => None,
        }
    }
}

/// A deliberate fix of a known data defect, e.g. `NaN set to 0` or `label clipped to [-3, 3]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Repair {
    /// The split repaired.
    pub split: String,
    /// The key repaired.
    pub key: String,
    /// What was done, e.g. `NaN set to 0`.
    pub what: String,
    /// How many values it was done to.
    pub count: usize,
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}: {} ({}x)", self.split, self.key, self.what, self.count)
    }
}

/// A read MOSEI file: decoded ([`Array3`] features) from the owning readers, or a [`MoseiView`].
#[derive(Debug, Clone, PartialEq)]
pub struct MoseiFile<A = Array3> {
    /// The path the file was read from (or named by, for the bytes readers).
    pub path: PathBuf,
    /// The packaging detected.
    pub layout: Layout,
    /// The pickle protocol (0 when the stream has no PROTO opcode).
    pub protocol: u8,
    /// `train`, `valid`, `test`, in that order (only those present, when read with
    /// `require_all_splits: false`).
    pub splits: Vec<SplitData<A>>,
    /// Every repair, including the zeroing of non-finite features: for a [`MoseiView`] the counts
    /// come from a scan at read time, and [`ArrayView::write_f32_le`] applies the repair.
    pub repairs: Vec<Repair>,
}

/// A MOSEI file read by [`read_mosei_view`]: features are [`ArrayView`]s borrowing the file's bytes.
///
/// [`read_mosei_view`]: super::read_mosei_view
pub type MoseiView<'a> = MoseiFile<ArrayView<'a>>;

impl<A> MoseiFile<A> {
    /// The split called `name`, if it was read.
    pub fn split(&self, name: &str) -> Option<&SplitData<A>> {
        self.splits.iter().find(|s| s.name == name)
    }
}
