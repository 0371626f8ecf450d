//! Converts a MulT/MMSA pickle to plain safetensors while holding almost nothing in memory: the
//! pickle is memory-mapped, read as views (`read_mosei_view`) and each feature array is streamed into
//! its safetensors file (`safetensors_stream`) chunk by chunk.
//!
//! ```text
//! cargo run --release -p mmkd-pickle --example convert_stream -- PICKLE OUT_DIR [--video-only] [--owning]
//! ```
//!
//! writes one self-describing file per split, `OUT_DIR/{train,valid,test}.safetensors` (those
//! present), with the pickle's own names: `text`, `audio`, `vision` as F32 `[N, L, D]` (after the
//! reader's repairs), `labels` as F32 `[N]` (clipped to [-3, 3]) and the ids as a JSON list in the
//! metadata under `"ids"` (lengths are not written). Nothing else: to get mmkd's dataset from a pickle,
//! use `mmkd data convert`. Progress goes to stderr every two seconds, then the elapsed time and the
//! process's peak resident memory.
//!
//! `--owning` reads with the decoding reader (`read_mosei_file_with`) instead, for comparing the
//! memory the two need; the output is the same. `--video-only` reads with `ReadOptions::VIDEO_ONLY`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mmkd_pickle::safetensors_stream::{Dtype, StreamWriter, TensorSpec};
use mmkd_pickle::{Array3, ArrayView, FeatureArray, MappedFile, MoseiFile, ReadOptions, SplitData, inspect, read_mosei_file_with, read_mosei_view_with_progress};

/// Prints `label: done / total GB (x%), y MB/s` at most every `EVERY`, and once at the end.
struct Progress {
    label: &'static str,
    total: u64,
    started: Instant,
    last: Instant,
}

const EVERY: Duration = Duration::from_secs(2);

impl Progress {
    fn new(label: &'static str, total: u64) -> Self {
        let now = Instant::now();
        Progress { label, total, started: now, last: now }
    }

    fn update(&mut self, done: u64) {
        if self.last.elapsed() >= EVERY {
            self.last = Instant::now();
            self.print(done);
        }
    }

    fn print(&self, done: u64) {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-9);
        eprintln!("{}: {:.2} / {:.2} GB ({:.0}%), {:.0} MB/s", self.label, done as f64 / 1e9, self.total as f64 / 1e9, 100.0 * done as f64 / self.total.max(1) as f64, done as f64 / 1e6 / seconds);
    }
}

/// A feature array either reader returns, written as little-endian f32 in C order.
trait Features: FeatureArray {
    fn write_to(&self, out: &mut impl Write, progress: impl FnMut(u64)) -> io::Result<()>;
}

impl Features for ArrayView<'_> {
    fn write_to(&self, out: &mut impl Write, progress: impl FnMut(u64)) -> io::Result<()> {
        self.write_f32_le(out, progress).map(|_| ())
    }
}

impl Features for Array3 {
    /// The owning reader has repaired the data already; converted in chunks, as for views.
    fn write_to(&self, out: &mut impl Write, mut progress: impl FnMut(u64)) -> io::Result<()> {
        let mut buf = Vec::with_capacity(1 << 18);
        let mut done = 0u64;
        for chunk in self.data.chunks(1 << 16) {
            buf.clear();
            for x in chunk {
                buf.extend_from_slice(&x.to_le_bytes());
            }
            out.write_all(&buf)?;
            done += buf.len() as u64;
            progress(done);
        }
        Ok(())
    }
}

/// The feature tensors of a split, by the pickle's names.
fn tensors<A>(split: &SplitData<A>) -> Vec<(&'static str, &A)> {
    [("text", split.text.as_ref()), ("audio", split.audio.as_ref()), ("vision", Some(&split.vision))].into_iter().filter_map(|(name, array)| Some((name, array?))).collect()
}

/// Writes every split of `file` to `out_dir`; returns the bytes written.
fn write_splits<A: Features>(file: &MoseiFile<A>, out_dir: &Path) -> io::Result<u64> {
    let total: u64 = file
        .splits
        .iter()
        .map(|s| {
            let features: u64 = tensors(s).iter().map(|(_, a)| a.shape().iter().product::<usize>() as u64 * 4).sum();
            features + s.labels.as_ref().map_or(0, |l| l.len() as u64 * 4)
        })
        .sum();
    let mut progress = Progress::new("write", total);
    let mut done = 0u64;
    for split in &file.splits {
        let n = split.n();
        let features = tensors(split);
        let mut specs: Vec<TensorSpec> = features.iter().map(|(name, a)| TensorSpec::new(*name, Dtype::F32, a.shape().to_vec())).collect();
        if split.labels.is_some() {
            specs.push(TensorSpec::new("labels", Dtype::F32, vec![n]));
        }
        let ids = serde_json::to_string(&split.ids).map_err(io::Error::other)?;
        let metadata = BTreeMap::from([("ids".to_string(), ids)]);
        let path = out_dir.join(format!("{}.safetensors", split.name));
        let out = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        let mut writer = StreamWriter::new(out, specs, &metadata)?;
        for (name, array) in features {
            let mut tensor = writer.begin(name)?;
            let base = done;
            array.write_to(&mut tensor, |n| progress.update(base + n))?;
            tensor.finish()?;
            done += array.shape().iter().product::<usize>() as u64 * 4;
        }
        if let Some(labels) = &split.labels {
            let mut tensor = writer.begin("labels")?;
            for x in labels {
                tensor.write_all(&x.to_le_bytes())?;
            }
            tensor.finish()?;
            done += labels.len() as u64 * 4;
        }
        writer.finish()?.into_inner().map_err(|e| e.into_error())?;
        eprintln!("wrote {}", path.display());
    }
    progress.print(done);
    Ok(done)
}

/// A `/proc/self/status` field such as `VmHWM` (peak resident set size), where /proc exists.
fn status(field: &str) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    Some(line.get(field.len() + 1..)?.trim().to_string())
}

/// What is resident now: mapped file pages are clean, so the kernel drops them whenever it needs
/// the memory; only the anonymous part is memory this process really holds.
fn print_resident(when: &str) {
    eprintln!("resident {when}: {} anonymous, {} file-backed", status("RssAnon").unwrap_or_default(), status("RssFile").unwrap_or_default());
}

/// The peak resident set size so far.
fn peak_rss() -> Option<String> {
    status("VmHWM")
}

fn run(pickle: &Path, out_dir: &Path, opts: &ReadOptions, owning: bool) -> Result<(), String> {
    let started = Instant::now();
    std::fs::create_dir_all(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let file_len = std::fs::metadata(pickle).map_err(|e| format!("{}: {e}", pickle.display()))?.len();
    let error = |e: &dyn std::fmt::Display| e.to_string();
    let written = if owning {
        eprintln!("reading {} with the owning reader (no progress)...", pickle.display());
        let file = read_mosei_file_with(pickle, opts).map_err(|e| error(&e))?;
        eprintln!("read in {:.1} s, peak RSS {}", started.elapsed().as_secs_f64(), peak_rss().unwrap_or_default());
        eprint!("{}", inspect(&file));
        let written = write_splits(&file, out_dir).map_err(|e| error(&e))?;
        print_resident("after writing");
        written
    } else {
        let map = MappedFile::open(pickle).map_err(|e| error(&e))?;
        // Validating means scanning every feature for NaN/inf: report it like the writing.
        let mut scan = Progress::new("scan", file_len);
        let view = read_mosei_view_with_progress(&map, pickle, opts, |done| scan.update(done)).map_err(|e| error(&e))?;
        eprintln!("read and scanned in {:.1} s, peak RSS {}", started.elapsed().as_secs_f64(), peak_rss().unwrap_or_default());
        eprint!("{}", inspect(&view));
        let written = write_splits(&view, out_dir).map_err(|e| error(&e))?;
        print_resident("after writing (the map is still open)");
        written
    };
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "done: {:.2} GB pickle -> {:.2} GB of tensors in {}, {seconds:.1} s elapsed ({:.0} MB/s), peak RSS {}",
        file_len as f64 / 1e9,
        written as f64 / 1e9,
        out_dir.display(),
        file_len as f64 / 1e6 / seconds.max(1e-9),
        peak_rss().unwrap_or_else(|| "unknown".into())
    );
    Ok(())
}

fn main() -> ExitCode {
    let mut paths: Vec<PathBuf> = Vec::new();
    let (mut owning, mut opts) = (false, ReadOptions::STRICT);
    for arg in std::env::args_os().skip(1) {
        match arg.to_str() {
            Some("--owning") => owning = true,
            Some("--video-only") => opts = ReadOptions::VIDEO_ONLY,
            _ => paths.push(arg.into()),
        }
    }
    let [pickle, out_dir] = paths.as_slice() else {
        eprintln!("usage: convert_stream PICKLE OUT_DIR [--video-only] [--owning]");
        return ExitCode::from(2);
    };
    match run(pickle, out_dir, &opts, owning) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("convert_stream: {message}");
            ExitCode::FAILURE
        }
    }
}
