//! `mmkd data csd`: four computational sequences (labels, text, audio, video) to a native
//! dataset, streaming one video at a time.
//!
//! Two passes over the videos. The index pass reads only intervals (and the small labels file)
//! and decides the clips: one per labels row of a video in all four files and in a fold, whose
//! segment the SDK aligns (length at least `EPSILON`) and in which every modality has a row. The
//! write pass reads each modality's features video by video and streams each clip, cut to its
//! length (first frames kept, zeros after), into its split's safetensors file. Memory is bounded
//! by the largest video, never by the files.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use mmkd_pickle::safetensors_stream::{Dtype, StreamWriter, TensorSpec};
use serde::Serialize;

use super::align::{Align, EPSILON, TimeOrdered, is_segment};
use super::read::{CsdFile, Sequence};
use crate::bail_input;
use crate::choice::Choice;
use crate::config::DataShape;
use crate::data::native;

/// The standard CMU-MOSEI folds by video id, from the SDK (`cmu_mosei_std_folds.py`).
const MOSEI_FOLDS: &str = include_str!("../../../data/mosei_folds.json");

/// The modalities in the order of the native format's tensors.
const MODALITIES: [&str; 3] = ["text", "audio", "video"];

/// Which videos go to which split.
#[derive(Clone, Debug, PartialEq)]
pub enum Folds {
    /// The SDK's standard MOSEI folds (shipped in crates/mmkd/data/mosei_folds.json).
    Mosei,
    /// A JSON file `{"train": [...], "valid": [...], "test": [...]}` of video ids.
    File(PathBuf),
}

/// What `data csd` reads and how it cuts.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The labels sequence (7 columns: sentiment, then six emotions; or sentiment alone).
    pub labels: PathBuf,
    /// Word vectors.
    pub text: PathBuf,
    /// Acoustic features.
    pub audio: PathBuf,
    /// Visual features.
    pub video: PathBuf,
    /// Output directory (a native dataset).
    pub out: PathBuf,
    /// Split assignment.
    pub folds: Folds,
    /// Steps kept per clip: text, audio, video (the paper's 50, 500, 500).
    pub lengths: [usize; 3],
    /// Frames as they are, or averaged over words first.
    pub align: Align,
    /// Write NaN and infinite feature values as 0 (counted) instead of refusing the data.
    pub zero_nonfinite: bool,
}

/// What `build_native` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BuildSummary {
    /// Videos in all four files.
    pub videos_in_all_files: usize,
    /// Per file (labels, text, audio, video): videos dropped because another file lacks them.
    pub videos_dropped: BTreeMap<String, usize>,
    /// Videos in all four files but in no fold.
    pub videos_in_no_fold: usize,
    /// Videos in a fold but in no file (only counted for the standard folds).
    pub fold_videos_missing: usize,
    /// Labels rows the SDK skips (segment shorter than its epsilon).
    pub segments_skipped: usize,
    /// Segments dropped because a modality has no row in them, per modality.
    pub clips_without: BTreeMap<String, usize>,
    /// Clips written per split.
    pub clips: BTreeMap<String, usize>,
    /// Clips longer than the cut, per modality.
    pub clips_cut: BTreeMap<String, usize>,
    /// Non-finite feature values written as 0 (with `zero_nonfinite`), per modality.
    pub nonfinite_zeroed: BTreeMap<String, usize>,
    /// Dims and lengths written (None until written).
    pub shape: Option<DataShape>,
}

/// One clip: labels row `segment` of `video`.
struct Clip {
    segment: usize,
    interval: [f64; 2],
    label: f32,
    rows: [usize; 3],
}

/// One video of a split and its clips.
struct VideoClips {
    id: String,
    clips: Vec<Clip>,
}

struct FoldMap {
    split_of: HashMap<String, usize>,
    source: String,
}

fn load_folds(folds: &Folds) -> Result<FoldMap> {
    let (text, source) = match folds {
        Folds::Mosei => (MOSEI_FOLDS.to_string(), "the SDK's standard CMU-MOSEI folds".to_string()),
        Folds::File(path) => match std::fs::read_to_string(path) {
            Ok(t) => (t, path.display().to_string()),
            Err(e) => bail_input!("{}: cannot read the folds file: {e}", path.display()),
        },
    };
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => bail_input!("{source}: not JSON: {e}"),
    };
    let mut split_of = HashMap::new();
    for (s, name) in native::SPLITS.iter().enumerate() {
        let Some(list) = value.get(name).and_then(|v| v.as_array()) else {
            bail_input!("{source}: field \"{name}\": expected a list of video ids");
        };
        for id in list {
            let Some(id) = id.as_str() else {
                bail_input!("{source}: field \"{name}\": expected video ids as strings, got {id}");
            };
            if let Some(other) = split_of.insert(id.to_string(), s) {
                bail_input!("{source}: video \"{id}\" is in both \"{}\" and \"{name}\"", native::SPLITS[other]);
            }
        }
    }
    Ok(FoldMap { split_of, source })
}

/// The SDK's clip id for labels row `segment` of `video`.
pub fn clip_id(video: &str, segment: usize) -> String {
    format!("{video}[{segment}]")
}

/// One modality of one video, in time order as the alignment sees it: its own rows with
/// `Align::None` and for text; for audio and video with `Align::Words`, one row per word.
fn modality_rows(seq: Sequence, m: usize, words: Option<&Sequence>, align: Align) -> TimeOrdered {
    let own = TimeOrdered::new(seq);
    match (align, m, words) {
        (Align::Words, 1 | 2, Some(words)) => own.collapse_to(&words.intervals),
        _ => own,
    }
}

/// Read four computational sequences and write the native dataset `opts.out` (the manifest last,
/// after the split files, each written atomically). `progress(phase, done, total)` counts videos.
pub fn build_native(opts: &BuildOptions, mut progress: impl FnMut(&str, usize, usize)) -> Result<BuildSummary> {
    let paths = [&opts.labels, &opts.text, &opts.audio, &opts.video];
    let names = ["labels", "text", "audio", "video"];
    let files: Vec<CsdFile> = paths.iter().map(|p| CsdFile::open(p)).collect::<Result<_>>()?;
    let ids: Vec<BTreeSet<String>> = files.iter().map(|f| f.videos().map(|v| v.into_iter().collect())).collect::<Result<_>>()?;
    let common: BTreeSet<String> = ids[0].iter().filter(|v| ids[1..].iter().all(|s| s.contains(*v))).cloned().collect();
    let mut summary = BuildSummary { videos_in_all_files: common.len(), ..Default::default() };
    for (name, set) in names.iter().zip(&ids) {
        summary.videos_dropped.insert(name.to_string(), set.len() - common.len());
    }
    if common.is_empty() {
        bail_input!("no video is in all four files ({} labels, {} text, {} audio, {} video videos): do the files come from the same dataset?", ids[0].len(), ids[1].len(), ids[2].len(), ids[3].len());
    }
    let folds = load_folds(&opts.folds)?;
    let everywhere: BTreeSet<&String> = ids.iter().flatten().collect();
    let missing: Vec<&String> = folds.split_of.keys().filter(|v| !everywhere.contains(v)).collect();
    if let (Folds::File(_), Some(first)) = (&opts.folds, missing.iter().min()) {
        bail_input!("{}: video \"{first}\" is in a fold but in none of the four .csd files ({} such videos in all)", folds.source, missing.len());
    }
    summary.fold_videos_missing = missing.len();
    let mut split_videos: [Vec<String>; 3] = Default::default();
    for v in &common {
        match folds.split_of.get(v) {
            Some(&s) => split_videos[s].push(v.clone()),
            None => summary.videos_in_no_fold += 1,
        }
    }

    // Index pass: intervals only.
    let total_videos: usize = split_videos.iter().map(Vec::len).sum();
    let mut dims: [Option<(usize, String)>; 3] = Default::default();
    let mut labels_dim: Option<usize> = None;
    let mut splits: [Vec<VideoClips>; 3] = Default::default();
    let mut done = 0;
    for (s, videos) in split_videos.iter().enumerate() {
        for video in videos {
            let labels = files[0].read(video, true)?;
            let shown = files[0].path().display();
            if labels.dim != 7 && labels.dim != 1 {
                bail_input!("{shown}: video \"{video}\": field \"features\": a labels file has 7 columns (sentiment, then six emotions) or 1 (sentiment), got {}", labels.dim);
            }
            if *labels_dim.get_or_insert(labels.dim) != labels.dim {
                bail_input!("{shown}: video \"{video}\": field \"features\": {} columns, but earlier videos have {}", labels.dim, labels_dim.unwrap_or(0));
            }
            let mut seqs: Vec<Sequence> = files[1..].iter().map(|f| f.read(video, false)).collect::<Result<_>>()?;
            for (m, seq) in seqs.iter().enumerate() {
                let (dim, first) = dims[m].get_or_insert_with(|| (seq.dim, video.clone()));
                if *dim != seq.dim {
                    bail_input!("{}: video \"{video}\": field \"features\": {} columns, but video \"{first}\" has {dim}", files[m + 1].path().display(), seq.dim);
                }
            }
            let words = Sequence { intervals: seqs[0].intervals.clone(), features: Vec::new(), dim: seqs[0].dim };
            let ordered: Vec<TimeOrdered> = seqs.drain(..).enumerate().map(|(m, seq)| modality_rows(seq, m, Some(&words), opts.align)).collect();
            let mut clips = Vec::new();
            for (i, &interval) in labels.intervals.iter().enumerate() {
                if !is_segment(interval) {
                    summary.segments_skipped += 1;
                    continue;
                }
                let label = labels.row(i)[0];
                if !label.is_finite() {
                    bail_input!("{shown}: video \"{video}\": field \"features\": row {i} has sentiment {label}: expected a finite value");
                }
                let rows = [0, 1, 2].map(|m| ordered[m].overlapping(interval).len());
                let mut complete = true;
                for m in (0..3).filter(|&m| rows[m] == 0) {
                    *summary.clips_without.entry(MODALITIES[m].to_string()).or_default() += 1;
                    complete = false;
                }
                if complete {
                    clips.push(Clip { segment: i, interval, label, rows });
                }
            }
            splits[s].push(VideoClips { id: video.clone(), clips });
            done += 1;
            progress("index", done, total_videos);
        }
    }
    let dims = dims.map(|d| d.map(|(dim, _)| dim).unwrap_or(0));
    let [text_len, audio_len, video_len] = opts.lengths;
    let counts: Vec<usize> = splits.iter().map(|s| s.iter().map(|v| v.clips.len()).sum()).collect();
    let shape = DataShape { text_dim: dims[0], audio_dim: dims[1], video_dim: dims[2], text_len, audio_len, video_len, n_train: counts[0], n_valid: counts[1], n_test: counts[2] };
    for (name, n) in native::SPLITS.iter().zip(&counts) {
        summary.clips.insert(name.to_string(), *n);
    }
    for (m, name) in MODALITIES.iter().enumerate() {
        let cut = splits.iter().flatten().flat_map(|v| &v.clips).filter(|c| c.rows[m] > opts.lengths[m]).count();
        summary.clips_cut.insert(name.to_string(), cut);
    }

    // Write pass: features, one split file at a time, each tensor video by video.
    std::fs::create_dir_all(&opts.out).map_err(|e| crate::error::input_error(format!("{}: {e}", opts.out.display())))?;
    let _ = std::fs::remove_file(opts.out.join("manifest.json"));
    let _ = std::fs::remove_file(opts.out.join(crate::data::events::EVENTS_FILE));
    let mut written = 0;
    for (s, videos) in splits.iter().enumerate() {
        let n = counts[s];
        let mut specs: Vec<TensorSpec> = (0..3).map(|m| TensorSpec::new(MODALITIES[m], Dtype::F32, vec![n, opts.lengths[m], dims[m]])).collect();
        specs.push(TensorSpec::new("labels", Dtype::F32, vec![n]));
        for m in MODALITIES {
            specs.push(TensorSpec::new(format!("lengths_{m}"), Dtype::I64, vec![n]));
        }
        let ids: Vec<String> = videos.iter().flat_map(|v| v.clips.iter().map(|c| clip_id(&v.id, c.segment))).collect();
        let metadata = BTreeMap::from([("ids".to_string(), serde_json::to_string(&ids)?)]);
        let path = opts.out.join(format!("{}.safetensors", native::SPLITS[s]));
        crate::durable::write_atomic_with(&path, |tmp| {
            let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(tmp)?);
            let mut writer = StreamWriter::new(file, specs, &metadata)?;
            for m in 0..3 {
                let mut tensor = writer.begin(MODALITIES[m])?;
                for v in videos {
                    if v.clips.is_empty() {
                        continue;
                    }
                    let seq = files[m + 1].read(&v.id, true)?;
                    let words = if opts.align == Align::Words && m > 0 { Some(files[1].read(&v.id, false)?) } else { None };
                    let ordered = modality_rows(seq, m, words.as_ref(), opts.align);
                    for clip in &v.clips {
                        let hits = ordered.overlapping(clip.interval);
                        anyhow::ensure!(
                            hits.len() == clip.rows[m],
                            "internal: {} rows of {} in clip {} on the second pass, {} on the first",
                            hits.len(),
                            MODALITIES[m],
                            clip_id(&v.id, clip.segment),
                            clip.rows[m]
                        );
                        let mut buf = Vec::with_capacity(opts.lengths[m] * dims[m] * 4);
                        for (row, _) in hits.iter().take(opts.lengths[m]) {
                            for (c, &x) in ordered.row(*row).iter().enumerate() {
                                let x = if x.is_finite() {
                                    x
                                } else if opts.zero_nonfinite {
                                    *summary.nonfinite_zeroed.entry(MODALITIES[m].to_string()).or_default() += 1;
                                    0.0
                                } else {
                                    bail_input!(
                                        "{}: video \"{}\": field \"features\": clip {} has {x} in column {c}: expected finite values (--zero-nonfinite writes them as 0 and counts them)",
                                        files[m + 1].path().display(),
                                        v.id,
                                        clip_id(&v.id, clip.segment)
                                    );
                                };
                                buf.extend_from_slice(&x.to_le_bytes());
                            }
                        }
                        buf.resize(opts.lengths[m] * dims[m] * 4, 0);
                        tensor.write_all(&buf)?;
                    }
                    written += 1;
                    progress("write", written, 3 * total_videos);
                }
                tensor.finish()?;
            }
            let mut labels = writer.begin("labels")?;
            for clip in videos.iter().flat_map(|v| &v.clips) {
                labels.write_all(&clip.label.to_le_bytes())?;
            }
            labels.finish()?;
            for (m, name) in MODALITIES.iter().enumerate() {
                let mut t = writer.begin(&format!("lengths_{name}"))?;
                for clip in videos.iter().flat_map(|v| &v.clips) {
                    t.write_all(&(clip.rows[m].min(opts.lengths[m]) as i64).to_le_bytes())?;
                }
                t.finish()?;
            }
            writer.finish()?.into_inner().map_err(|e| e.into_error())?;
            Ok(())
        })?;
    }
    summary.shape = Some(shape.clone());
    let roots: Vec<String> = files.iter().map(|f| f.root().to_string()).collect();
    let name = opts.out.file_name().and_then(|s| s.to_str()).unwrap_or("csd").to_string();
    let manifest = native::Manifest {
        format: native::FORMAT.into(),
        version: native::VERSION,
        name,
        source: format!("CMU-MultimodalSDK computational sequences ({}), align {}", roots.join(", "), opts.align.name()),
        synthetic: false,
        shape,
        provenance: serde_json::json!({
            "converted_from": {"labels": opts.labels, "text": opts.text, "audio": opts.audio, "video": opts.video},
            "roots": roots,
            "align": opts.align.name(),
            "epsilon_s": EPSILON,
            "folds": folds.source,
            "lengths": {"text": text_len, "audio": audio_len, "video": video_len},
            "padding": "first steps kept, zeros after (lengths_* hold the true lengths)",
            "summary": &summary,
        }),
        fingerprint: None,
    };
    native::write_manifest(&opts.out, &manifest)?;
    Ok(summary)
}

/// Parse `--lengths T,A,V`.
pub fn parse_lengths(s: &str) -> std::result::Result<[usize; 3], String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let values: Vec<usize> = parts.iter().filter_map(|p| p.parse().ok()).filter(|&v| v > 0).collect();
    match (parts.len(), values.as_slice()) {
        (3, &[t, a, v]) => Ok([t, a, v]),
        _ => Err(format!("expected three positive step counts TEXT,AUDIO,VIDEO (e.g. 50,500,500), got \"{s}\"")),
    }
}
