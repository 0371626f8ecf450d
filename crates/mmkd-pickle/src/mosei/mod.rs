//! The two published pickled packagings of CMU-MOSEI (and its MOSI/IEMOCAP siblings), read into plain
//! `f32` arrays without Python.
//!
//! * **MulT** (`mosei_senti_data_noalign.pkl`, `mosei_senti_data.pkl`): `{split: {vision, audio, text,
//!   labels, id}}` with `labels` shaped `(N, 1, 1)`.
//! * **MMSA** (`unaligned_50.pkl`, `aligned_50.pkl`): `{split: {text, text_bert, audio, vision,
//!   regression_labels, audio_lengths, vision_lengths, id, raw_text, annotations, ...}}`.
//!
//! The layout is detected from the keys of the first split. Known defects of the real files are repaired
//! on purpose and recorded as [`Repair`]s (non-finite features zeroed, labels clipped to [-3, 3]);
//! anything that would silently train on wrong data (NaN labels, mismatched sample counts, wrong ranks,
//! missing keys) is refused with a one-line [`MoseiError`].
//!
//! [`read_mosei_file`] requires everything a training run needs: the three splits, the three modalities
//! and the labels. [`read_mosei_file_with`] and [`ReadOptions::VIDEO_ONLY`] also accept what a deployed
//! video-only student is fed, e.g. `{"test": {"vision": (N, L, D), "id": ...}}`: absent splits are
//! skipped, absent `text`/`audio`/labels become `None`; whatever is present is validated and repaired
//! exactly as under [`ReadOptions::STRICT`].
//!
//! [`read_mosei_view`] reads the same files without decoding the features: it takes the bytes of a
//! [`MappedFile`] and returns a [`MoseiView`], whose `text`/`audio`/`vision` are [`ArrayView`]s into
//! them (labels, ids and lengths are small and decoded as usual). Layout detection, validation,
//! repairs and errors are the same code as the owning reader's: [`MoseiFile`] and [`SplitData`] are
//! generic over the feature array type ([`Array3`] or [`ArrayView`]), and only the step that turns a
//! checked `(N, L, D)` array into that type differs ([`FeatureArray`]).

mod context;
mod decoders;
mod error;
mod inspect;
pub mod padding;
mod read;
mod types;

use std::path::Path;

pub(crate) use crate::file_name;

pub use error::MoseiError;
pub use inspect::{InspectReport, LabelReport, LengthReport, ModalityPadding, ModalityReport, SplitReport, inspect};
pub use padding::{ClipPadding, PaddingCounts, PaddingSide, ZeroFrameScan, ZeroFrames};
pub use types::{Array3, FeatureArray, LABEL_RANGE, Layout, MODALITIES, MoseiFile, MoseiView, ReadOptions, Repair, SPLITS, SplitData, SplitView};

pub use crate::view::{ArrayView, MappedFile, NonFinite};

use crate::pickle;
use decoders::{Decode, ViewDecoder};
use read::{Tree, read_tree};

/// Reads a MulT or MMSA pickle from disk, requiring every split, modality and label
/// ([`ReadOptions::STRICT`]).
pub fn read_mosei_file(path: &Path) -> Result<MoseiFile, MoseiError> {
    read_mosei_file_with(path, &ReadOptions::STRICT)
}

/// Reads a MulT or MMSA pickle from memory, requiring every split, modality and label
/// ([`ReadOptions::STRICT`]); `path_for_messages` names it in errors and the result.
pub fn read_mosei_bytes(bytes: &[u8], path_for_messages: &Path) -> Result<MoseiFile, MoseiError> {
    read_mosei_bytes_with(bytes, path_for_messages, &ReadOptions::STRICT)
}

/// Reads a MulT or MMSA pickle from disk, requiring what `opts` says (see [`ReadOptions`]).
pub fn read_mosei_file_with(path: &Path, opts: &ReadOptions) -> Result<MoseiFile, MoseiError> {
    let bytes = std::fs::read(path).map_err(|source| MoseiError::Io { file: file_name(path), source })?;
    read_mosei_bytes_with(&bytes, path, opts)
}

/// Reads a MulT or MMSA pickle from memory, requiring what `opts` says (see [`ReadOptions`]);
/// `path_for_messages` names it in errors and the result.
pub fn read_mosei_bytes_with(bytes: &[u8], path_for_messages: &Path, opts: &ReadOptions) -> Result<MoseiFile, MoseiError> {
    let file = file_name(path_for_messages);
    let decoded = pickle::load(bytes).map_err(|source| MoseiError::Pickle { file: file.clone(), source })?;
    let tree = Tree { file, path: path_for_messages, protocol: decoded.protocol, value: decoded.value };
    read_tree(tree, opts, &mut Decode)
}

/// Reads a MulT or MMSA pickle from its bytes, typically a [`MappedFile`], without decoding the
/// features: `text`, `audio` and `vision` are [`ArrayView`]s of `map` (see [`ArrayView`] for the rare
/// owned ones). Labels, ids and lengths are decoded, and everything is validated, repaired and
/// reported exactly as by [`read_mosei_bytes_with`] with the same `opts`, with the same errors; the
/// zeroing of non-finite features is counted here (one pass over the features, in file order) and
/// applied by [`ArrayView::write_f32_le`].
pub fn read_mosei_view<'a>(map: &'a [u8], path_for_messages: &Path, opts: &ReadOptions) -> Result<MoseiView<'a>, MoseiError> {
    read_mosei_view_with_progress(map, path_for_messages, opts, |_| {})
}

/// [`read_mosei_view`], calling `progress` with the number of feature bytes scanned so far (for a
/// large file read from disk, the scan for non-finite values is what takes time).
pub fn read_mosei_view_with_progress<'a>(map: &'a [u8], path_for_messages: &Path, opts: &ReadOptions, progress: impl FnMut(u64)) -> Result<MoseiView<'a>, MoseiError> {
    let file = file_name(path_for_messages);
    let decoded = pickle::load_view(map).map_err(|source| MoseiError::Pickle { file: file.clone(), source })?;
    let tree = Tree { file, path: path_for_messages, protocol: decoded.protocol, value: decoded.value };
    let mut decoder = ViewDecoder { buffers: decoded.buffers, scanned: 0, progress };
    read_tree(tree, opts, &mut decoder)
}
