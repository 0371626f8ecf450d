//! `mmkd data inspect FILE.csd`: what one computational sequence holds and what is wrong with it,
//! read video by video (counts, never a refusal, except for a file that is not a sequence).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::align::EPSILON;
use super::read::CsdFile;

/// Most problems listed one by one; the rest are counted.
const LISTED: usize = 20;

/// Interval problems, counted over all rows.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IntervalProblems {
    /// Rows with a NaN or infinite start or end.
    pub non_finite: u64,
    /// Rows whose end is before their start.
    pub reversed: u64,
    /// Rows shorter than the SDK's epsilon (never aligned to anything).
    pub shorter_than_epsilon: u64,
    /// Videos whose rows are not in time order in the file (the SDK sorts them).
    pub videos_out_of_order: u64,
}

/// `data inspect` on a `.csd` file.
#[derive(Clone, Debug, Serialize)]
pub struct CsdReport {
    /// The file.
    pub file: String,
    /// Always "csd".
    pub format: &'static str,
    /// The root group's name.
    pub root: String,
    /// `metadata/<key>` strings.
    pub metadata: BTreeMap<String, String>,
    /// Videos under `data`.
    pub videos: usize,
    /// Feature columns, with how many videos have each (one entry when consistent).
    pub feature_dims: BTreeMap<usize, usize>,
    /// Feature types, with how many videos have each.
    pub dtypes: BTreeMap<String, usize>,
    /// Rows over all videos.
    pub rows: u64,
    /// Rows per video: smallest, median, largest.
    pub rows_per_video: [usize; 3],
    /// Median over videos of rows per second of the video's span (first start to last end).
    pub frame_rate_hz: Option<f64>,
    /// NaN feature values.
    pub nan_values: u64,
    /// Infinite feature values.
    pub inf_values: u64,
    /// Videos with any non-finite feature value.
    pub videos_with_nonfinite: usize,
    /// What is wrong with the intervals.
    pub intervals: IntervalProblems,
    /// Videos that cannot be read at all (shape or type problems): the first few, and a count.
    pub unreadable_videos: Vec<String>,
    /// How many videos cannot be read.
    pub unreadable_count: usize,
}

/// Describe `path`, reading every video once.
pub fn inspect(path: &Path, mut progress: impl FnMut(usize, usize)) -> Result<CsdReport> {
    let file = CsdFile::open(path)?;
    let videos = file.videos()?;
    let mut report = CsdReport {
        file: path.display().to_string(),
        format: "csd",
        root: file.root().to_string(),
        metadata: file.metadata().into_iter().collect(),
        videos: videos.len(),
        feature_dims: BTreeMap::new(),
        dtypes: BTreeMap::new(),
        rows: 0,
        rows_per_video: [0; 3],
        frame_rate_hz: None,
        nan_values: 0,
        inf_values: 0,
        videos_with_nonfinite: 0,
        intervals: IntervalProblems::default(),
        unreadable_videos: Vec::new(),
        unreadable_count: 0,
    };
    let mut rows_per_video = Vec::new();
    let mut rates = Vec::new();
    for (k, video) in videos.iter().enumerate() {
        let read = file.layout(video).and_then(|layout| Ok((layout, file.read_unchecked(video, true)?)));
        let (layout, seq) = match read {
            Ok(r) => r,
            Err(e) => {
                report.unreadable_count += 1;
                if report.unreadable_videos.len() < LISTED {
                    report.unreadable_videos.push(e.to_string());
                }
                continue;
            }
        };
        *report.feature_dims.entry(layout.dim).or_default() += 1;
        *report.dtypes.entry(layout.dtype.to_string()).or_default() += 1;
        report.rows += seq.rows() as u64;
        rows_per_video.push(seq.rows());
        let nan = seq.features.iter().filter(|x| x.is_nan()).count() as u64;
        let inf = seq.features.iter().filter(|x| x.is_infinite()).count() as u64;
        report.nan_values += nan;
        report.inf_values += inf;
        report.videos_with_nonfinite += usize::from(nan + inf > 0);
        let problems = &mut report.intervals;
        for &[s, e] in &seq.intervals {
            if !s.is_finite() || !e.is_finite() {
                problems.non_finite += 1;
            } else if e < s {
                problems.reversed += 1;
            } else if e - s < EPSILON {
                problems.shorter_than_epsilon += 1;
            }
        }
        if seq.intervals.windows(2).any(|w| w[1][0] < w[0][0]) {
            problems.videos_out_of_order += 1;
        }
        let finite: Vec<[f64; 2]> = seq.intervals.iter().copied().filter(|[s, e]| s.is_finite() && e.is_finite()).collect();
        let start = finite.iter().map(|r| r[0]).fold(f64::INFINITY, f64::min);
        let end = finite.iter().map(|r| r[1]).fold(f64::NEG_INFINITY, f64::max);
        if finite.len() > 1 && end > start {
            rates.push(finite.len() as f64 / (end - start));
        }
        progress(k + 1, videos.len());
    }
    rows_per_video.sort_unstable();
    if let (Some(&lo), Some(&hi)) = (rows_per_video.first(), rows_per_video.last()) {
        report.rows_per_video = [lo, rows_per_video[rows_per_video.len() / 2], hi];
    }
    rates.sort_by(f64::total_cmp);
    report.frame_rate_hz = rates.get(rates.len() / 2).copied();
    Ok(report)
}

impl fmt::Display for CsdReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} (computational sequence, root \"{}\")", self.file, self.root)?;
        for (k, v) in &self.metadata {
            let v = v.replace('\n', " ");
            let short: String = v.chars().take(100).collect();
            writeln!(f, "  metadata {k}: {short}{}", if short.len() < v.len() { "..." } else { "" })?;
        }
        let dims: Vec<String> = self.feature_dims.iter().map(|(d, n)| format!("{d} ({n} videos)")).collect();
        let dtypes: Vec<String> = self.dtypes.iter().map(|(d, n)| format!("{d} ({n} videos)")).collect();
        writeln!(f, "  videos {}  feature dim {}  dtype {}", self.videos, dims.join(", "), dtypes.join(", "))?;
        let [lo, med, hi] = self.rows_per_video;
        writeln!(f, "  rows {}  per video min {lo} median {med} max {hi}", self.rows)?;
        match self.frame_rate_hz {
            Some(r) => writeln!(f, "  frame rate about {r:.2} Hz (median over videos of rows per second of span)")?,
            None => writeln!(f, "  frame rate unknown (no video with two rows and a positive span)")?,
        }
        writeln!(f, "  features: {} NaN, {} infinite values in {} videos", self.nan_values, self.inf_values, self.videos_with_nonfinite)?;
        let p = &self.intervals;
        writeln!(f, "  intervals: {} non-finite, {} reversed, {} shorter than {EPSILON} s, {} videos out of time order", p.non_finite, p.reversed, p.shorter_than_epsilon, p.videos_out_of_order)?;
        if self.unreadable_count > 0 {
            writeln!(f, "  {} videos cannot be read:", self.unreadable_count)?;
            for e in &self.unreadable_videos {
                writeln!(f, "    {e}")?;
            }
        }
        Ok(())
    }
}
