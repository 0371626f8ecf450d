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

mod error;
mod inspect;
pub mod padding;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub(crate) use crate::file_name;

use serde::Serialize;

pub use error::MoseiError;
pub use inspect::{InspectReport, LabelReport, LengthReport, ModalityPadding, ModalityReport, SplitReport, inspect};
pub use padding::{ClipPadding, PaddingCounts, PaddingSide, ZeroFrameScan, ZeroFrames};

pub use crate::view::{ArrayView, MappedFile, NonFinite};

use crate::pickle::{self, ArrayData, NdArray, PickleError, Value, numpy, shown};

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
pub type MoseiView<'a> = MoseiFile<ArrayView<'a>>;

impl<A> MoseiFile<A> {
    /// The split called `name`, if it was read.
    pub fn split(&self, name: &str) -> Option<&SplitData<A>> {
        self.splits.iter().find(|s| s.name == name)
    }
}

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

/// A decoded pickle on its way to a [`MoseiFile`].
struct Tree<'p> {
    /// The file's name for messages.
    file: String,
    path: &'p Path,
    protocol: u8,
    value: Value,
}

/// The part of reading that differs between [`read_mosei_file`] and [`read_mosei_view`]: how a
/// checked `(N, L, D)` feature array becomes the result's array type, and how arrays that are read
/// in full (labels, ids, lengths) get decoded. Everything else is shared.
trait Decoder {
    type Array: FeatureArray;

    /// The features of a numeric 3-d `array` (`shape` already checked), with their non-finite values
    /// counted. Non-numeric data is `UnsupportedDtype`, through [`numeric`].
    fn features(&mut self, ctx: &Ctx<'_>, key: &'static str, array: NdArray, shape: [usize; 3]) -> Result<(Self::Array, NonFinite), MoseiError>;

    /// `value` with its array decoded, for keys whose contents are read.
    fn decoded(&mut self, ctx: &Ctx<'_>, value: Value) -> Result<Value, MoseiError>;
}

/// The owning readers: everything is decoded by [`pickle::load`]; features are zeroed in place.
struct Decode;

impl Decoder for Decode {
    type Array = Array3;

    fn features(&mut self, ctx: &Ctx<'_>, key: &'static str, array: NdArray, shape: [usize; 3]) -> Result<(Array3, NonFinite), MoseiError> {
        let mut data = numeric(ctx, key, array)?;
        let mut counts = NonFinite::default();
        for x in &mut data {
            *x = counts.repair(*x);
        }
        Ok((Array3 { shape, data }, counts))
    }

    fn decoded(&mut self, _ctx: &Ctx<'_>, value: Value) -> Result<Value, MoseiError> {
        Ok(value)
    }
}

/// The view reader: float arrays come from [`pickle::load_view`] as [`ArrayData::Raw`] buffers.
struct ViewDecoder<'a, P> {
    /// [`pickle::PickleView::buffers`]; each is taken by the one array that refers to it.
    buffers: Vec<Cow<'a, [u8]>>,
    /// Feature bytes scanned so far, for `progress`.
    scanned: u64,
    progress: P,
}

impl<'a, P> ViewDecoder<'a, P> {
    /// The bytes of a raw array: a slice of the map is shared, an owned buffer is moved out (every
    /// buffer belongs to exactly one array of the tree).
    fn take(&mut self, index: usize) -> Cow<'a, [u8]> {
        match self.buffers.get_mut(index) {
            Some(Cow::Borrowed(bytes)) => Cow::Borrowed(*bytes),
            Some(Cow::Owned(bytes)) => Cow::Owned(std::mem::take(bytes)),
            None => Cow::Borrowed(&[]),
        }
    }
}

/// An array whose data do not match its shape after all: unreachable after the pickle reader's
/// checks, reported rather than assumed.
fn inconsistent(ctx: &Ctx<'_>, dtype: &str, shape: &[usize]) -> MoseiError {
    MoseiError::Pickle {
        file: ctx.file.to_string(),
        source: PickleError::BadArray { pos: 0, reason: format!("split '{}': the data of a {dtype} array of shape {} do not match it", ctx.split, python_shape(shape)) },
    }
}

impl<'a, P: FnMut(u64)> Decoder for ViewDecoder<'a, P> {
    type Array = ArrayView<'a>;

    fn features(&mut self, ctx: &Ctx<'_>, key: &'static str, array: NdArray, shape: [usize; 3]) -> Result<(ArrayView<'a>, NonFinite), MoseiError> {
        let dtype = array.dtype;
        let view = match array.data {
            ArrayData::Raw(raw) => {
                let bytes = self.take(raw.index);
                ArrayView::new(shape, dtype, raw.fortran_order, bytes)
            }
            // Integer or bool features: widened to f32 as by the owning reader (owned, C order).
            _ => ArrayView::from_f32(shape, &numeric(ctx, key, array)?),
        };
        let view = view.ok_or_else(|| inconsistent(ctx, &dtype.to_string(), &shape))?;
        let (base, progress) = (self.scanned, &mut self.progress);
        let counts = view.count_nonfinite(|done| progress(base + done));
        self.scanned += view.bytes().len() as u64;
        Ok((view, counts))
    }

    fn decoded(&mut self, ctx: &Ctx<'_>, value: Value) -> Result<Value, MoseiError> {
        let Value::NdArray(mut array) = value else {
            return Ok(value);
        };
        if let ArrayData::Raw(raw) = array.data {
            let bytes = self.take(raw.index);
            let data = numpy::decode_elements(&array.dtype, raw.len, &bytes, 0).map_err(|source| MoseiError::Pickle { file: ctx.file.to_string(), source })?;
            array.data = if raw.fortran_order { numpy::reorder_fortran(data, &array.shape) } else { data };
        }
        Ok(Value::NdArray(array))
    }
}

/// Layouts, splits, validation and repairs: the same for every [`Decoder`].
fn read_tree<D: Decoder>(tree: Tree<'_>, opts: &ReadOptions, decoder: &mut D) -> Result<MoseiFile<D::Array>, MoseiError> {
    let Tree { file, path: path_for_messages, protocol, value } = tree;
    let Value::Dict(mut top) = value else {
        return Err(MoseiError::NotADict { file, found: value.type_name() });
    };
    let top_keys = key_list(&top);
    let mut layout = None;
    let mut splits = Vec::with_capacity(SPLITS.len());
    let mut repairs = Vec::new();
    let missing_split = |split| MoseiError::MissingSplit { file: file.clone(), split, found: top_keys.clone() };
    for split in SPLITS {
        let Some(value) = take_key(&mut top, split) else {
            if opts.require_all_splits {
                return Err(missing_split(split));
            }
            continue;
        };
        let Value::Dict(fields) = value else {
            return Err(MoseiError::SplitNotADict { file, split, found: value.type_name() });
        };
        let ctx = Ctx { file: &file, split, keys: key_list(&fields) };
        // The first split decides; later splits must then have that layout's keys.
        let layout = match layout {
            Some(l) => l,
            None => *layout.insert(detect_layout(&fields, opts).ok_or_else(|| MoseiError::UnknownLayout { file: file.clone(), split, found: ctx.keys.clone() })?),
        };
        splits.push(read_split(&ctx, layout, opts, fields, decoder, &mut repairs)?);
    }
    if splits.is_empty() {
        // Only reachable with `require_all_splits: false`: nothing to read at all.
        return Err(missing_split(SPLITS[0]));
    }
    Ok(MoseiFile { path: path_for_messages.to_path_buf(), layout: layout.unwrap_or(Layout::MulT), protocol, splits, repairs })
}

fn detect_layout(fields: &[(Value, Value)], opts: &ReadOptions) -> Option<Layout> {
    let has = |key: &str| fields.iter().any(|(k, _)| k.is_key(key));
    if has("regression_labels") || has("text_bert") {
        Some(Layout::Mmsa)
    } else if has("labels") {
        Some(Layout::MulT)
    } else if !opts.require_labels && has("vision") {
        // Unlabelled features: the MulT layout is the plain one (MMSA always has `text_bert`).
        Some(Layout::MulT)
    } else {
        None
    }
}

/// Where we are, for error messages.
struct Ctx<'f> {
    file: &'f str,
    split: &'static str,
    /// The split's keys as found, for "missing key" messages.
    keys: String,
}

impl Ctx<'_> {
    fn missing(&self, key: &'static str) -> MoseiError {
        MoseiError::MissingKey { file: self.file.to_string(), split: self.split, key, found: self.keys.clone() }
    }

    fn wrong_type(&self, key: &'static str, expected: &'static str, found: impl Into<String>) -> MoseiError {
        MoseiError::WrongType { file: self.file.to_string(), split: self.split, key, expected, found: found.into() }
    }

    fn wrong_rank(&self, key: &'static str, expected: &'static str, shape: &[usize]) -> MoseiError {
        MoseiError::WrongRank { file: self.file.to_string(), split: self.split, key, expected, shape: python_shape(shape) }
    }

    fn count(&self, key: &'static str, expected: usize, found: usize) -> MoseiError {
        MoseiError::CountMismatch { file: self.file.to_string(), split: self.split, key, reference: "vision", expected, found }
    }

    fn repair(&self, repairs: &mut Vec<Repair>, key: &str, what: impl Into<String>, count: usize) {
        if count > 0 {
            repairs.push(Repair { split: self.split.to_string(), key: key.to_string(), what: what.into(), count });
        }
    }
}

fn read_split<D: Decoder>(ctx: &Ctx<'_>, layout: Layout, opts: &ReadOptions, mut fields: Vec<(Value, Value)>, decoder: &mut D, repairs: &mut Vec<Repair>) -> Result<SplitData<D::Array>, MoseiError> {
    let mut dtypes = BTreeMap::new();
    let mut nonfinite = BTreeMap::new();
    let mut modality = |fields: &mut Vec<(Value, Value)>, decoder: &mut D, key: &'static str| -> Result<D::Array, MoseiError> {
        let value = take_key(fields, key).ok_or_else(|| ctx.missing(key))?;
        let (array, dtype, counts) = features(ctx, key, value, decoder, repairs)?;
        dtypes.insert(key.to_string(), dtype);
        nonfinite.insert(key.to_string(), counts);
        Ok(array)
    };

    let has = |fields: &[(Value, Value)], key: &str| fields.iter().any(|(k, _)| k.is_key(key));
    // Read when present; when absent, refused (by `modality`) only if text and audio are required.
    let wanted = |fields: &[(Value, Value)], key: &str| opts.require_text_audio || has(fields, key);

    // 'vision' first: it is the student's modality and the reference for the sample count.
    let vision = modality(&mut fields, decoder, "vision")?;
    let audio = if wanted(&fields, "audio") { Some(modality(&mut fields, decoder, "audio")?) } else { None };
    // MMSA files always carry `text_bert`; only when `text` is absent too is there nothing to use.
    if opts.require_text_audio && layout == Layout::Mmsa && !has(&fields, "text") && has(&fields, "text_bert") {
        return Err(MoseiError::BertTokenIdsOnly { file: ctx.file.to_string(), split: ctx.split });
    }
    let text = if wanted(&fields, "text") { Some(modality(&mut fields, decoder, "text")?) } else { None };
    let n = vision.shape()[0];
    for (key, array) in [("audio", &audio), ("text", &text)] {
        if let Some(array) = array
            && array.shape()[0] != n
        {
            return Err(ctx.count(key, n, array.shape()[0]));
        }
    }

    let label_key = match layout {
        Layout::MulT => "labels",
        Layout::Mmsa => "regression_labels",
    };
    let labels = match take_key(&mut fields, label_key) {
        Some(value) => {
            let value = decoder.decoded(ctx, value)?;
            let (labels, label_dtype) = read_labels(ctx, label_key, value, n, repairs)?;
            dtypes.insert(label_key.to_string(), label_dtype);
            Some(labels)
        }
        None if opts.require_labels => return Err(ctx.missing(label_key)),
        None => None,
    };

    let ids = match take_key(&mut fields, "id") {
        Some(value) => {
            let value = decoder.decoded(ctx, value)?;
            let (ids, dtype) = read_ids(ctx, value, n)?;
            dtypes.insert("id".to_string(), dtype);
            ids
        }
        None => {
            // MulT's own loader treats 'id' as optional; keep samples addressable anyway.
            ctx.repair(repairs, "id", format!("missing: synthesised as '{}/<index>'", ctx.split), n);
            (0..n).map(|i| format!("{}/{i}", ctx.split)).collect()
        }
    };

    let mut lengths = |key: &'static str, padded: usize| -> Result<Option<Vec<usize>>, MoseiError> {
        let Some(value) = take_key(&mut fields, key) else {
            return Ok(None);
        };
        let value = decoder.decoded(ctx, value)?;
        let (lengths, dtype) = read_lengths(ctx, key, value, n, padded, repairs)?;
        dtypes.insert(key.to_string(), dtype);
        Ok(Some(lengths))
    };
    // Lengths of an absent modality describe nothing: they are ignored like any other unused key.
    let audio_lengths = match &audio {
        Some(audio) => lengths("audio_lengths", audio.shape()[1])?,
        None => None,
    };
    let vision_lengths = lengths("vision_lengths", vision.shape()[1])?;

    Ok(SplitData { name: ctx.split.to_string(), text, audio, vision, labels, ids, audio_lengths, vision_lengths, dtypes, nonfinite })
}

/// A `(N, L, D)` feature array, with NaN and ±inf counted and zeroed ([`NonFinite::repair`]; by the
/// owning reader right away, for a view when it is written out).
///
/// MulT's loader zeroes `-inf` in audio (COVAREP writes it for log-energies of silence); NaN and `+inf`
/// occur in the same features and would poison any gradient, so every non-finite value in every
/// modality is zeroed, and each kind is recorded as a [`Repair`].
fn features<D: Decoder>(ctx: &Ctx<'_>, key: &'static str, value: Value, decoder: &mut D, repairs: &mut Vec<Repair>) -> Result<(D::Array, String, NonFinite), MoseiError> {
    const EXPECTED: &str = "a 3-d array (N, L, D)";
    let array = expect_array(ctx, key, value, EXPECTED)?;
    let shape = <[usize; 3]>::try_from(array.shape.as_slice()).map_err(|_| ctx.wrong_rank(key, EXPECTED, &array.shape))?;
    let dtype = array.dtype.to_string();
    let (features, counts) = decoder.features(ctx, key, *array, shape)?;
    ctx.repair(repairs, key, "NaN set to 0", counts.nan);
    ctx.repair(repairs, key, "+inf set to 0", counts.pos_inf);
    ctx.repair(repairs, key, "-inf set to 0", counts.neg_inf);
    Ok((features, dtype, counts))
}

fn expect_array(ctx: &Ctx<'_>, key: &'static str, value: Value, expected: &'static str) -> Result<Box<NdArray>, MoseiError> {
    match value {
        Value::NdArray(array) => Ok(array),
        other => Err(ctx.wrong_type(key, expected, other.type_name())),
    }
}

/// The elements of a numeric array as `f32`, moving rather than copying when they already are.
fn numeric(ctx: &Ctx<'_>, key: &'static str, array: NdArray) -> Result<Vec<f32>, MoseiError> {
    array.into_f32().map_err(|array| MoseiError::UnsupportedDtype { file: ctx.file.to_string(), split: ctx.split, key, dtype: array.dtype.to_string() })
}

/// Sentiment scores: NaN/inf refused, values outside [-3, 3] clipped (and recorded).
fn read_labels(ctx: &Ctx<'_>, key: &'static str, value: Value, n: usize, repairs: &mut Vec<Repair>) -> Result<(Vec<f32>, String), MoseiError> {
    let (labels, dtype) = match value {
        Value::NdArray(array) => {
            // One score per sample, possibly with trailing singleton axes (MulT writes (N, 1, 1)).
            let single = matches!(array.shape.as_slice(), [_] | [_, 1] | [_, 1, 1]);
            if !single {
                let hint = if matches!(array.shape.as_slice(), [_, 4, 2]) { " (IEMOCAP's 4 emotions x 2 classes; 7-class sentiment needs MOSEI or MOSI)" } else { "" };
                return Err(MoseiError::UnsupportedLabels { file: ctx.file.to_string(), split: ctx.split, key, shape: python_shape(&array.shape), hint });
            }
            let dtype = array.dtype.to_string();
            (numeric(ctx, key, *array)?, dtype)
        }
        Value::List(items) | Value::Tuple(items) => {
            let labels = items
                .iter()
                .map(|item| match item {
                    Value::Float(v) => Some(*v as f32),
                    Value::Int(v) => Some(*v as f32),
                    _ => None,
                })
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| ctx.wrong_type(key, "a list of numbers", "a list with non-numeric items"))?;
            (labels, "list".to_string())
        }
        other => return Err(ctx.wrong_type(key, "an array of scores", other.type_name())),
    };
    if labels.len() != n {
        return Err(ctx.count(key, n, labels.len()));
    }
    if let Some((index, &value)) = labels.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(MoseiError::NonFiniteLabel { file: ctx.file.to_string(), split: ctx.split, key, index, value });
    }
    let (lo, hi) = LABEL_RANGE;
    let clipped = labels.iter().filter(|&&v| !(lo..=hi).contains(&v)).count();
    ctx.repair(repairs, key, "label clipped to [-3, 3]", clipped);
    Ok((labels.into_iter().map(|v| v.clamp(lo, hi)).collect(), dtype))
}

/// Sample ids: 1-d arrays or lists of strings/numbers; 2-d arrays (MulT stores `(N, 3)` rows such as
/// video, start, end) become their parts joined with `_`.
fn read_ids(ctx: &Ctx<'_>, value: Value, n: usize) -> Result<(Vec<String>, String), MoseiError> {
    const KEY: &str = "id";
    let (ids, dtype) = match value {
        Value::NdArray(array) => {
            let dtype = array.dtype.to_string();
            let NdArray { shape, data, .. } = *array;
            let parts: Vec<String> = match data {
                ArrayData::Str(v) => v,
                ArrayData::Bytes(v) => v.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect(),
                ArrayData::I64(v) => v.iter().map(i64::to_string).collect(),
                ArrayData::F32(v) => v.iter().map(f32::to_string).collect(),
                ArrayData::Bool(v) => v.iter().map(bool::to_string).collect(),
                ArrayData::Object(v) => v.iter().enumerate().map(|(i, item)| id_text(item).ok_or_else(|| bad_id(ctx, i, item))).collect::<Result<_, _>>()?,
                // Decoded before it gets here (`Decoder::decoded`).
                ArrayData::Raw(_) => {
                    return Err(ctx.wrong_type(KEY, "a decoded array", "raw array data"));
                }
            };
            let ids = match shape.as_slice() {
                [_] => parts,
                [rows, cols] if *cols > 0 => parts.chunks(*cols).take(*rows).map(|row| row.join("_")).collect(),
                [rows, _] => vec![String::new(); *rows],
                _ => return Err(ctx.wrong_rank(KEY, "a 1-d or 2-d array of ids", &shape)),
            };
            (ids, dtype)
        }
        Value::List(items) | Value::Tuple(items) => {
            let ids = items.iter().enumerate().map(|(i, item)| id_text(item).ok_or_else(|| bad_id(ctx, i, item))).collect::<Result<Vec<_>, _>>()?;
            (ids, "list".to_string())
        }
        other => return Err(ctx.wrong_type(KEY, "an array or list of ids", other.type_name())),
    };
    if ids.len() != n {
        return Err(ctx.count(KEY, n, ids.len()));
    }
    Ok((ids, dtype))
}

fn bad_id(ctx: &Ctx<'_>, index: usize, item: &Value) -> MoseiError {
    MoseiError::BadId { file: ctx.file.to_string(), split: ctx.split, key: "id", index, found: item.type_name() }
}

/// One id as text; a row of parts (tuple, list, 1-d array) is joined with `_`.
fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::Str(s) => Some(s.clone()),
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(v) => Some(v.to_string()),
        Value::Float(v) => Some(v.to_string()),
        Value::List(parts) | Value::Tuple(parts) => {
            // Only flat rows: a nested row is not an id.
            let flat = parts.iter().all(|p| !matches!(p, Value::List(_) | Value::Tuple(_) | Value::NdArray(_)));
            if !flat {
                return None;
            }
            parts.iter().map(id_text).collect::<Option<Vec<_>>>().map(|p| p.join("_"))
        }
        Value::NdArray(array) if array.shape.len() <= 1 => match &array.data {
            ArrayData::Str(v) => Some(v.join("_")),
            ArrayData::Bytes(v) => Some(v.iter().map(|b| String::from_utf8_lossy(b)).collect::<Vec<_>>().join("_")),
            _ => None,
        },
        _ => None,
    }
}

/// MMSA's valid-length vectors: integers in `[0, padded]`; larger values are clamped (and recorded).
fn read_lengths(ctx: &Ctx<'_>, key: &'static str, value: Value, n: usize, padded: usize, repairs: &mut Vec<Repair>) -> Result<(Vec<usize>, String), MoseiError> {
    let bad = |index: usize, value: String| MoseiError::BadLength { file: ctx.file.to_string(), split: ctx.split, key, index, value };
    let integral =
        |index: usize, v: f64| -> Result<usize, MoseiError> { if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= usize::MAX as f64 { Ok(v as usize) } else { Err(bad(index, v.to_string())) } };
    let (lengths, dtype) = match value {
        Value::NdArray(array) => {
            if !matches!(array.shape.as_slice(), [_] | [_, 1]) {
                return Err(ctx.wrong_rank(key, "a 1-d array of lengths", &array.shape));
            }
            let dtype = array.dtype.to_string();
            let lengths = match &array.data {
                ArrayData::I64(v) => v.iter().enumerate().map(|(i, &x)| usize::try_from(x).map_err(|_| bad(i, x.to_string()))).collect::<Result<Vec<_>, _>>()?,
                ArrayData::F32(v) => v.iter().enumerate().map(|(i, &x)| integral(i, x.into())).collect::<Result<Vec<_>, _>>()?,
                _ => {
                    return Err(MoseiError::UnsupportedDtype { file: ctx.file.to_string(), split: ctx.split, key, dtype });
                }
            };
            (lengths, dtype)
        }
        Value::List(items) | Value::Tuple(items) => {
            let lengths = items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Int(x) => usize::try_from(*x).map_err(|_| bad(i, x.to_string())),
                    Value::Float(x) => integral(i, *x),
                    other => Err(bad(i, other.type_name().to_string())),
                })
                .collect::<Result<Vec<_>, _>>()?;
            (lengths, "list".to_string())
        }
        other => return Err(ctx.wrong_type(key, "an array or list of lengths", other.type_name())),
    };
    if lengths.len() != n {
        return Err(ctx.count(key, n, lengths.len()));
    }
    let too_long = lengths.iter().filter(|&&len| len > padded).count();
    ctx.repair(repairs, key, format!("length clamped to the padded length {padded}"), too_long);
    Ok((lengths.into_iter().map(|len| len.min(padded)).collect(), dtype))
}

/// Removes and returns the value of a string key (the last one, as Python would have kept).
fn take_key(pairs: &mut Vec<(Value, Value)>, key: &str) -> Option<Value> {
    let index = pairs.iter().rposition(|(k, _)| k.is_key(key))?;
    Some(pairs.swap_remove(index).1)
}

/// The keys of a dict, sorted and escaped, for messages (at most 20).
fn key_list(pairs: &[(Value, Value)]) -> String {
    const MAX_KEYS: usize = 20;
    let mut keys: Vec<String> = pairs
        .iter()
        .map(|(k, _)| match k.as_text() {
            Some(text) => shown(&text),
            None => format!("<{}>", k.type_name()),
        })
        .collect();
    keys.sort();
    keys.dedup();
    let more = keys.len().saturating_sub(MAX_KEYS);
    keys.truncate(MAX_KEYS);
    let mut list = if keys.is_empty() { "none".to_string() } else { keys.join(", ") };
    if more > 0 {
        list.push_str(&format!(", ... ({more} more)"));
    }
    list
}

/// A shape as Python prints it: `(12, 74)`, `(12,)`, `()`.
pub(crate) fn python_shape(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    }
}
