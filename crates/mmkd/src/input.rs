//! What a network reads: the modalities, a batch of input tensors with its per-sample lengths,
//! and the label space. `data` makes these and `model` consumes them; this module imports
//! neither, so the two do not depend on each other.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// MOSEI's 7 sentiment classes (-3..=3): the width of every network's output.
pub const NUM_CLASSES: usize = 7;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
/// One input modality. The paper's L (language) is `Text`, as in files and messages; the
/// teacher of the language branch keeps its name (`TeacherKind::Language`).
pub enum Modality {
    /// Facial features (MOSEI: Facet, 35 per frame).
    Video,
    /// Acoustic features (MOSEI: COVAREP, 74 per frame).
    Audio,
    /// Word embeddings (MOSEI: GloVe, 300 per word).
    #[serde(alias = "Language")]
    Text,
}

impl Modality {
    /// Every modality, in mmkd's order V, A, L (MulT writes L, A, V; only the head's concatenation order differs, see docs/DECISIONS.md).
    pub const ALL: [Modality; 3] = [Modality::Video, Modality::Audio, Modality::Text];

    /// The paper's letter (V, A, L).
    pub fn letter(self) -> char {
        match self {
            Modality::Video => 'V',
            Modality::Audio => 'A',
            Modality::Text => 'L',
        }
    }

    /// Lower-case name, as in messages and file formats ("video", "audio", "text").
    pub fn name(self) -> &'static str {
        match self {
            Modality::Video => "video",
            Modality::Audio => "audio",
            Modality::Text => "text",
        }
    }

    /// The two other modalities, in the order of `ALL` (V, A, L minus self).
    pub fn others(self) -> [Modality; 2] {
        match self {
            Modality::Video => [Modality::Audio, Modality::Text],
            Modality::Audio => [Modality::Video, Modality::Text],
            Modality::Text => [Modality::Video, Modality::Audio],
        }
    }
}

/// Per-sample valid lengths of each modality, in `Modality::ALL`'s order (V, A, T), as the
/// networks' streams are.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Lengths {
    /// Valid video frames per sample.
    pub video: Vec<usize>,
    /// Valid audio frames per sample.
    pub audio: Vec<usize>,
    /// Valid text steps per sample.
    pub text: Vec<usize>,
    /// Full (padded) lengths in the order video, audio, text, to rescale lengths onto a
    /// downsampled stream.
    pub full: [usize; 3],
}

impl Lengths {
    /// Lengths of modality `m` mapped onto a stream of `out_len` steps (ceil of the ratio).
    pub fn scaled(&self, m: Modality, out_len: usize) -> Vec<usize> {
        let (v, full) = match m {
            Modality::Video => (&self.video, self.full[0]),
            Modality::Audio => (&self.audio, self.full[1]),
            Modality::Text => (&self.text, self.full[2]),
        };
        v.iter().map(|&l| (l * out_len).div_ceil(full.max(1)).clamp(1, out_len)).collect()
    }

    /// The lengths of the first `n` samples.
    pub fn first(&self, n: usize) -> Lengths {
        self.select(&(0..n.min(self.video.len())).collect::<Vec<_>>())
    }

    /// The lengths of the rows `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Lengths {
        let pick = |v: &Vec<usize>| idx.iter().map(|&i| v[i]).collect();
        Lengths { text: pick(&self.text), audio: pick(&self.audio), video: pick(&self.video), full: self.full }
    }
}

/// The input tensors of one batch, `[batch, time, features]` each. Text and audio are absent in
/// video-only data (a student needs neither).
#[derive(Clone, Debug)]
pub struct NetInput {
    /// Absent in a video-only dataset.
    pub text: Option<Tensor<3>>,
    /// Absent in a video-only dataset.
    pub audio: Option<Tensor<3>>,
    /// Always present.
    pub video: Tensor<3>,
    /// Per-sample valid lengths, when the network masks padded keys.
    pub lengths: Option<Lengths>,
}

impl NetInput {
    /// The features of modality `m`, if the batch has them.
    pub fn get(&self, m: Modality) -> Option<&Tensor<3>> {
        match m {
            Modality::Video => Some(&self.video),
            Modality::Audio => self.audio.as_ref(),
            Modality::Text => self.text.as_ref(),
        }
    }

    /// Rows `rows` of the batch, on its own device (the parts of a batch computed in parallel:
    /// `model::parts`).
    pub fn rows(&self, rows: std::ops::Range<usize>) -> NetInput {
        let take = |t: &Tensor<3>| t.clone().narrow(0, rows.start, rows.len());
        NetInput {
            text: self.text.as_ref().map(take),
            audio: self.audio.as_ref().map(take),
            video: take(&self.video),
            lengths: self.lengths.as_ref().map(|l| l.select(&rows.clone().collect::<Vec<_>>())),
        }
    }

    /// The first `n` rows, on the plain (non-autodiff) device.
    pub fn first_rows_plain(&self, n: usize) -> NetInput {
        let take = |t: &Tensor<3>| t.clone().inner().narrow(0, 0, n);
        NetInput {
            text: self.text.as_ref().map(take),
            audio: self.audio.as_ref().map(take),
            video: take(&self.video),
            // The same rows of the lengths, or the key-padding mask would not fit the batch.
            lengths: self.lengths.as_ref().map(|l| l.first(n)),
        }
    }
}
