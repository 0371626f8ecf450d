//! A summary of a MOSEI file for people and scripts: `Display` gives a table, `serde` gives JSON.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::context::python_shape;
use super::padding::{PaddingCounts, PaddingSide};
use super::types::{FeatureArray, LABEL_RANGE, Layout, MODALITIES, MoseiFile, Repair, SplitData};
use crate::view::NonFinite;

/// What [`inspect`] reports about a file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InspectReport {
    /// The file's path, as displayed.
    pub path: String,
    /// The packaging detected.
    pub format: Layout,
    /// The pickle protocol (0 when the stream has no PROTO opcode).
    pub protocol: u8,
    /// One report per split read: `train`, `valid`, `test`, in that order.
    pub splits: Vec<SplitReport>,
    /// Every repair the reader made.
    pub repairs: Vec<Repair>,
    /// Per modality present (text, audio, vision), where the clips of every split have their
    /// all-zero frames, and the side the modality is therefore padded at.
    pub padding: Vec<ModalityPadding>,
}

/// Where one modality's clips have their all-zero frames, over every split of a file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModalityPadding {
    /// `text`, `audio` or `vision`.
    pub name: String,
    /// [`PaddingCounts::side`] of `counts`: `start` when start-only clips outnumber end-only ones.
    pub side: PaddingSide,
    /// Clips per place of their zero frames (`start`, `end`, `both`, `none`, `empty`).
    #[serde(flatten)]
    pub counts: PaddingCounts,
}

/// One split of an [`InspectReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitReport {
    /// `train`, `valid` or `test`.
    pub name: String,
    /// The number of samples.
    pub n: usize,
    /// text, audio, vision: those present (only `vision` is always there).
    pub modalities: Vec<ModalityReport>,
    /// `None` when the split has no labels (read with `require_labels: false`).
    pub labels: Option<LabelReport>,
}

/// One modality of a [`SplitReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModalityReport {
    /// `text`, `audio` or `vision`.
    pub name: String,
    /// `(N, L, D)`: samples, time steps, features.
    pub shape: [usize; 3],
    /// The dtype in the file, numpy notation (`<f4`, `>f8`).
    pub dtype: String,
    /// NaN values found in the file, before they were zeroed.
    pub nan: usize,
    /// `+inf` values found in the file, before they were zeroed.
    pub pos_inf: usize,
    /// `-inf` values found in the file, before they were zeroed.
    pub neg_inf: usize,
    /// MMSA's per-sample valid lengths, when the file has them.
    pub lengths: Option<LengthReport>,
    /// Clips of this split per place of their all-zero frames.
    pub padding: PaddingCounts,
}

/// The range of a modality's per-sample valid lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LengthReport {
    /// The shortest.
    pub min: usize,
    /// The longest.
    pub max: usize,
}

/// The labels of a [`SplitReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelReport {
    /// The labels' dtype in the file, numpy notation.
    pub dtype: String,
    /// The lowest score, after clipping to [-3, 3]; `None` for an empty split.
    pub min: Option<f32>,
    /// The highest score, after clipping to [-3, 3]; `None` for an empty split.
    pub max: Option<f32>,
    /// Samples per sentiment class -3..=3: the score clipped to [-3, 3], then rounded half away from
    /// zero (the usual MOSEI 7-class protocol; note numpy's `round` would round half to even).
    pub histogram: BTreeMap<i8, usize>,
}

/// The 7-class sentiment label of a score.
pub fn sentiment_class(score: f32) -> i8 {
    let (lo, hi) = LABEL_RANGE;
    // `f32::round` rounds half away from zero; the clamp keeps the cast in -3..=3.
    score.clamp(lo, hi).round() as i8
}

/// The report of a file read by any reader (a [`super::MoseiView`] gives the same report as the
/// decoded file).
pub fn inspect<A: FeatureArray>(file: &MoseiFile<A>) -> InspectReport {
    let splits: Vec<SplitReport> = file.splits.iter().map(split_report).collect();
    InspectReport { path: file.path.display().to_string(), format: file.layout, protocol: file.protocol, padding: padding_report(&splits), splits, repairs: file.repairs.clone() }
}

/// The splits' padding counts summed per modality (a modality absent from every split is left out).
fn padding_report(splits: &[SplitReport]) -> Vec<ModalityPadding> {
    MODALITIES
        .iter()
        .filter_map(|&name| {
            let counts = splits.iter().flat_map(|s| s.modalities.iter().filter(|m| m.name == name)).map(|m| m.padding).reduce(PaddingCounts::plus)?;
            Some(ModalityPadding { name: name.to_string(), side: counts.side(), counts })
        })
        .collect()
}

fn split_report<A: FeatureArray>(split: &SplitData<A>) -> SplitReport {
    let modalities = MODALITIES.iter().filter_map(|&name| Some((name, split.modality(name)?))).map(|(name, array)| modality_report(split, name, array)).collect();
    SplitReport { name: split.name.clone(), n: split.n(), modalities, labels: split.labels.as_deref().map(|labels| label_report(split, labels)) }
}

fn label_report<A>(split: &SplitData<A>, labels: &[f32]) -> LabelReport {
    let mut histogram: BTreeMap<i8, usize> = (-3..=3).map(|c| (c, 0)).collect();
    for &label in labels {
        *histogram.entry(sentiment_class(label)).or_default() += 1;
    }
    let label_key = if split.dtypes.contains_key("regression_labels") { "regression_labels" } else { "labels" };
    LabelReport { dtype: split.dtypes.get(label_key).cloned().unwrap_or_default(), min: labels.iter().copied().reduce(f32::min), max: labels.iter().copied().reduce(f32::max), histogram }
}

fn modality_report<A: FeatureArray>(split: &SplitData<A>, name: &str, array: &A) -> ModalityReport {
    let counts = split.nonfinite.get(name).copied().unwrap_or(NonFinite::default());
    let lengths = match name {
        "audio" => split.audio_lengths.as_deref(),
        "vision" => split.vision_lengths.as_deref(),
        _ => None,
    };
    ModalityReport {
        name: name.to_string(),
        shape: array.shape(),
        dtype: split.dtypes.get(name).cloned().unwrap_or_default(),
        nan: counts.nan,
        pos_inf: counts.pos_inf,
        neg_inf: counts.neg_inf,
        lengths: lengths.and_then(|l| Some(LengthReport { min: l.iter().copied().min()?, max: l.iter().copied().max()? })),
        padding: PaddingCounts::of(&array.zero_frames()),
    }
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {} layout, pickle protocol {}", self.path, self.format, self.protocol)?;
        writeln!(f, "split        n  modality shape              dtype       NaN     +inf     -inf  lengths")?;
        for split in &self.splits {
            for (i, m) in split.modalities.iter().enumerate() {
                let (name, n) = if i == 0 { (split.name.as_str(), split.n.to_string()) } else { ("", String::new()) };
                let lengths = m.lengths.map_or_else(|| "-".to_string(), |l| format!("{}..{}", l.min, l.max));
                writeln!(f, "{:<6} {:>7}  {:<8} {:<18} {:<6} {:>8} {:>8} {:>8}  {}", name, n, m.name, python_shape(&m.shape), m.dtype, m.nan, m.pos_inf, m.neg_inf, lengths)?;
            }
            let Some(labels) = &split.labels else {
                writeln!(f, "{:<6} {:>7}  labels   absent", "", "")?;
                continue;
            };
            let classes: Vec<String> = labels.histogram.iter().map(|(c, n)| format!("{c}:{n}")).collect();
            let range = match (labels.min, labels.max) {
                (Some(lo), Some(hi)) => format!("{lo:.2}..{hi:.2}"),
                _ => "empty".to_string(),
            };
            writeln!(f, "{:<6} {:>7}  labels   {} range {range}, classes {}", "", "", labels.dtype, classes.join(" "))?;
        }
        writeln!(f, "padding (all-zero frames at the ends of each clip, all splits):")?;
        writeln!(f, "modality side     start      end     both     none    empty")?;
        for m in &self.padding {
            let c = m.counts;
            writeln!(f, "{:<8} {:<5} {:>8} {:>8} {:>8} {:>8} {:>8}", m.name, m.side.to_string(), c.start, c.end, c.both, c.none, c.empty)?;
        }
        if self.repairs.is_empty() {
            writeln!(f, "repairs: none")?;
        } else {
            writeln!(f, "repairs:")?;
            for repair in &self.repairs {
                writeln!(f, "  {repair}")?;
            }
        }
        Ok(())
    }
}
