//! The SDK's `mmdataset.align` on one video, exactly (CMU-MultimodalSDK 0.0.6,
//! `mmsdk/mmdatasdk/dataset/dataset.py`):
//!
//! - A reference row (a labels segment, or a word) whose length is below `EPSILON` is skipped.
//! - The other sequence's rows are put in time order (a stable sort by start).
//! - A row `[s0, s1]` intersects the reference `[r0, r1]` when `r1 - s0 > -EPSILON` and
//!   `s1 - r0 > -EPSILON`; it is clipped to `[max(s0, r0), min(s1, r1)]` and kept when the
//!   clipped length exceeds `EPSILON`. Features are copied unchanged.
//! - `Align::Words` first collapses the audio and video rows intersecting each word into one row:
//!   the interval `[min, max]` of the clipped intervals and the mean of the features (the SDK's
//!   documented recipe, `align(words, collapse_functions=[avg])`), then aligns to the labels.
//!
//! Reading `EPSILON` right matters: the SDK writes `epsilon=10e-4`, which is 1e-3 s, not 1e-4 (or
//! the 1e-5 issue 18 guessed).

use super::read::Sequence;

/// The SDK's `epsilon` (`10e-4` in dataset.py), in seconds.
pub const EPSILON: f64 = 10e-4;

/// How audio and video rows relate to the words before the cut per labels segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Align {
    /// Every frame as it is (the unaligned data the paper uses).
    None,
    /// Audio and video averaged over each word first (the SDK's "aligned" MOSEI).
    Words,
}
crate::choice::impl_choice!(Align {
    None => "none", "Every frame as it is (the unaligned data the paper uses)";
    Words => "words", "Audio and video averaged over each word first (the SDK's \"aligned\" MOSEI)";
});

/// One modality of one video with its rows in time order, ready to be cut per segment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TimeOrdered {
    /// Intervals, sorted by start (stable).
    pub intervals: Vec<[f64; 2]>,
    /// Row-major features in the same order (empty when only intervals were read).
    pub features: Vec<f32>,
    /// Feature columns.
    pub dim: usize,
    /// The longest row, for the search window (`overlapping`).
    longest: f64,
}

impl TimeOrdered {
    /// `seq`'s rows sorted stably by start, as the SDK's `__get_relevant_entries` (without a
    /// copy when they already are, as in every MOSEI file).
    pub fn new(seq: Sequence) -> TimeOrdered {
        if seq.intervals.is_sorted_by(|a, b| a[0] <= b[0]) {
            return TimeOrdered::from_sorted(seq.intervals, seq.features, seq.dim);
        }
        let mut order: Vec<usize> = (0..seq.rows()).collect();
        order.sort_by(|&a, &b| seq.intervals[a][0].total_cmp(&seq.intervals[b][0]));
        let intervals: Vec<[f64; 2]> = order.iter().map(|&i| seq.intervals[i]).collect();
        let features = if seq.features.is_empty() { Vec::new() } else { order.iter().flat_map(|&i| seq.row(i).iter().copied()).collect() };
        TimeOrdered::from_sorted(intervals, features, seq.dim)
    }

    fn from_sorted(intervals: Vec<[f64; 2]>, features: Vec<f32>, dim: usize) -> TimeOrdered {
        let longest = intervals.iter().map(|[s, e]| e - s).fold(0.0, f64::max);
        TimeOrdered { intervals, features, dim, longest }
    }

    /// Row `i`'s features.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.dim..(i + 1) * self.dim]
    }

    /// The rows intersecting `reference`, in time order: (row index, clipped interval).
    pub fn overlapping(&self, reference: [f64; 2]) -> Vec<(usize, [f64; 2])> {
        let [r0, r1] = reference;
        // Rows whose start is past `r1 + EPSILON` fail the first test, and the test is monotone in
        // the start: a prefix. Rows that end before `r0 - EPSILON` fail the second; a row ends at
        // most `longest` after it starts, so none starting before `r0 - EPSILON - longest` can
        // pass (one more second keeps rounding out of it). Inside the window the test is exact.
        let hi = self.intervals.partition_point(|&[s0, _]| r1 - s0 > -EPSILON);
        let lo = self.intervals[..hi].partition_point(|&[s0, _]| s0 < r0 - EPSILON - self.longest - 1.0);
        let mut hits = Vec::new();
        for (i, &[s0, s1]) in self.intervals.iter().enumerate().take(hi).skip(lo) {
            if r1 - s0 > -EPSILON && s1 - r0 > -EPSILON {
                let clipped = [s0.max(r0), s1.min(r1)];
                if (clipped[0] - clipped[1]).abs() > EPSILON {
                    hits.push((i, clipped));
                }
            }
        }
        hits
    }

    /// Collapse onto `words` (intervals in file order): for each word of non-negligible length
    /// with at least one intersecting row, one row with the clipped rows' `[min, max]` interval
    /// and mean features. Needs the features. The result is in time order.
    pub fn collapse_to(&self, words: &[[f64; 2]]) -> TimeOrdered {
        let mut intervals = Vec::new();
        let mut features = Vec::new();
        for &word in words {
            if (word[0] - word[1]).abs() < EPSILON {
                continue;
            }
            let hits = self.overlapping(word);
            if hits.is_empty() {
                continue;
            }
            let lo = hits.iter().map(|(_, c)| c[0]).fold(f64::INFINITY, f64::min);
            let hi = hits.iter().map(|(_, c)| c[1]).fold(f64::NEG_INFINITY, f64::max);
            intervals.push([lo, hi]);
            if !self.features.is_empty() {
                let mut sum = vec![0.0f64; self.dim];
                for (i, _) in &hits {
                    for (acc, &x) in sum.iter_mut().zip(self.row(*i)) {
                        *acc += x as f64;
                    }
                }
                features.extend(sum.iter().map(|s| (s / hits.len() as f64) as f32));
            }
        }
        // The SDK gathers the collapsed rows word by word and sorts them by start again.
        TimeOrdered::new(Sequence { intervals, features, dim: self.dim })
    }
}

/// Whether the SDK aligns anything to `segment` (it skips near-zero-length reference rows).
pub fn is_segment(segment: [f64; 2]) -> bool {
    (segment[0] - segment[1]).abs() >= EPSILON
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(intervals: &[[f64; 2]], features: &[f32]) -> Sequence {
        Sequence { intervals: intervals.to_vec(), features: features.to_vec(), dim: 1 }
    }

    /// Hand-worked cases of the SDK's rule, including its epsilon of 1e-3 s.
    #[test]
    fn intersection_follows_the_sdk_rule() {
        let rows = TimeOrdered::new(seq(&[[0.0, 1.0], [1.0, 2.0], [1.9995, 3.0], [2.0, 2.0005], [0.5, 4.0]], &[]));
        // Sorted by start: [0,1], [0.5,4], [1,2], [1.9995,3], [2,2.0005].
        let hits = rows.overlapping([1.0, 2.0]);
        let got: Vec<(usize, [f64; 2])> = hits;
        // [0,1] clips to [1,1] (zero length, dropped); [0.5,4] to [1,2]; [1,2] stays;
        // [1.9995,3] clips to [1.9995,2] (0.0005 < eps, dropped); [2,2.0005] starts within eps of
        // the end, clips to [2,2] (dropped).
        assert_eq!(got, vec![(1, [1.0, 2.0]), (2, [1.0, 2.0])]);
        // A row overlapping by 0.002 s is kept, clipped.
        let rows = TimeOrdered::new(seq(&[[0.0, 1.002]], &[]));
        assert_eq!(rows.overlapping([1.0, 2.0]), vec![(0, [1.0, 1.002])]);
    }

    /// Out-of-order rows are sorted stably by start; equal starts keep file order.
    #[test]
    fn rows_are_put_in_time_order_stably() {
        let rows = TimeOrdered::new(seq(&[[2.0, 3.0], [0.0, 1.0], [2.0, 2.5]], &[20.0, 0.0, 25.0]));
        assert_eq!(rows.intervals, vec![[0.0, 1.0], [2.0, 3.0], [2.0, 2.5]]);
        assert_eq!(rows.features, vec![0.0, 20.0, 25.0]);
    }

    /// The window search finds exactly what a scan of every row finds.
    #[test]
    fn window_search_equals_a_full_scan() {
        let mut state = 7u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let intervals: Vec<[f64; 2]> = (0..400)
            .map(|_| {
                let s = next() * 20.0;
                [s, s + next() * next() * 3.0]
            })
            .collect();
        let rows = TimeOrdered::new(seq(&intervals, &[]));
        for _ in 0..300 {
            let s = next() * 21.0 - 0.5;
            let reference = [s, s + next() * 4.0];
            let scan: Vec<(usize, [f64; 2])> = rows
                .intervals
                .iter()
                .enumerate()
                .filter(|(_, [s0, s1])| reference[1] - s0 > -EPSILON && s1 - reference[0] > -EPSILON)
                .map(|(i, &[s0, s1])| (i, [s0.max(reference[0]), s1.min(reference[1])]))
                .filter(|(_, c)| (c[0] - c[1]).abs() > EPSILON)
                .collect();
            assert_eq!(rows.overlapping(reference), scan);
        }
    }

    /// Collapsing to words: clipped [min, max] and the mean, words without rows left out.
    #[test]
    fn collapse_averages_over_each_word() {
        let frames = TimeOrdered::new(seq(&[[0.0, 0.1], [0.1, 0.2], [0.2, 0.3], [0.6, 0.7]], &[1.0, 2.0, 6.0, 10.0]));
        let words = [[0.05, 0.25], [0.3, 0.6], [0.6, 0.6], [0.65, 0.9]];
        let got = frames.collapse_to(&words);
        // Word 1 has [0.05,0.1], [0.1,0.2], [0.2,0.25]: mean of 1, 2, 6 = 3. Word 2 touches
        // [0.2,0.3] and [0.6,0.7] only at its ends: nothing. Word 3 is zero-length. Word 4 clips
        // [0.6,0.7] to [0.65,0.7].
        assert_eq!(got.intervals, vec![[0.05, 0.25], [0.65, 0.7]]);
        assert_eq!(got.features, vec![3.0, 10.0]);
        // (1.001 - 1.0 is just below 1e-3 in f64, so the SDK skips that segment too.)
        assert!(!is_segment([1.0, 1.0005]) && !is_segment([1.0, 1.001]) && is_segment([1.0, 1.0011]));
    }
}
