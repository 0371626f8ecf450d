//! Reading the splits of a decoded pickle, the same for every [`Decoder`]: the layout detected
//! ([`read_tree`], [`detect_layout`]), then each split's features, labels, ids and lengths checked
//! and repaired ([`read_split`]).

use std::collections::BTreeMap;
use std::path::Path;

use super::context::{Ctx, numeric, python_shape};
use super::decoders::Decoder;
use super::error::MoseiError;
use super::types::{FeatureArray, LABEL_RANGE, Layout, MoseiFile, ReadOptions, Repair, SPLITS, SplitData};
use crate::pickle::{ArrayData, NdArray, Value, shown};
use crate::view::NonFinite;

/// A decoded pickle on its way to a [`MoseiFile`].
pub(super) struct Tree<'p> {
    /// The file's name for messages.
    pub(super) file: String,
    pub(super) path: &'p Path,
    pub(super) protocol: u8,
    pub(super) value: Value,
}

/// Layouts, splits, validation and repairs: the same for every [`Decoder`].
pub(super) fn read_tree<D: Decoder>(tree: Tree<'_>, opts: &ReadOptions, decoder: &mut D) -> Result<MoseiFile<D::Array>, MoseiError> {
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
