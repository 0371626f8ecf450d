//! Linear baselines of a synthetic dataset: what a ridge regression of the score on simple
//! features reaches on the test split (Acc-7 of the rounded prediction). They document each
//! regime of the generator: where the label information is, and how hard it is to get at.

use serde::Serialize;

use super::events::Events;
use super::{Dataset, Split, labels};
use crate::config::DataShape;

/// One baseline's result.
#[derive(Clone, Debug, Serialize)]
pub struct BaselineResult {
    /// What the baseline reads.
    pub baseline: String,
    /// Features per clip.
    pub features: usize,
    /// Test Acc-7 (fraction, 0..1).
    pub acc7: f64,
    /// Ridge penalty chosen on the validation split.
    pub ridge: f64,
}

/// Which features a baseline reads from a clip.
#[derive(Clone, Copy, Debug)]
enum Features {
    TextMean,
    AudioMean,
    VideoMean,
    AllMeans,
    VideoAtEvent,
}

impl Features {
    fn name(self) -> &'static str {
        match self {
            Features::TextMean => "text, time-averaged",
            Features::AudioMean => "audio, time-averaged",
            Features::VideoMean => "video, time-averaged",
            Features::AllMeans => "all three, time-averaged",
            Features::VideoAtEvent => "video at the true event frames (oracle)",
        }
    }

    fn of(self, split: &Split, shape: &DataShape, events: &[usize], burst: usize, i: usize) -> Vec<f64> {
        let mean = |data: &[f32], len: usize, dim: usize| -> Vec<f64> {
            let clip = &data[i * len * dim..(i + 1) * len * dim];
            (0..dim).map(|k| (0..len).map(|t| clip[t * dim + k] as f64).sum::<f64>() / len as f64).collect()
        };
        let text = || mean(split.text.as_deref().unwrap_or(&[]), shape.text_len, shape.text_dim);
        let audio = || mean(split.audio.as_deref().unwrap_or(&[]), shape.audio_len, shape.audio_dim);
        let video = || mean(&split.video, shape.video_len, shape.video_dim);
        match self {
            Features::TextMean => text(),
            Features::AudioMean => audio(),
            Features::VideoMean => video(),
            Features::AllMeans => [text(), audio(), video()].concat(),
            Features::VideoAtEvent => {
                let row = shape.video_len * shape.video_dim;
                let start = (i * row) + events[i] * shape.video_dim;
                split.video[start..start + burst * shape.video_dim].iter().map(|&x| x as f64).collect()
            }
        }
    }
}

/// Solve `a x = b` for symmetric positive definite `a` (n x n, row-major) by Cholesky.
fn solve_spd(mut a: Vec<f64>, mut b: Vec<f64>, n: usize) -> Vec<f64> {
    for j in 0..n {
        let d = (a[j * n + j] - (0..j).map(|k| a[j * n + k] * a[j * n + k]).sum::<f64>()).max(1e-12).sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let s = a[i * n + j] - (0..j).map(|k| a[i * n + k] * a[j * n + k]).sum::<f64>();
            a[i * n + j] = s / d;
        }
    }
    for i in 0..n {
        b[i] = (b[i] - (0..i).map(|k| a[i * n + k] * b[k]).sum::<f64>()) / a[i * n + i];
    }
    for i in (0..n).rev() {
        b[i] = (b[i] - (i + 1..n).map(|k| a[k * n + i] * b[k]).sum::<f64>()) / a[i * n + i];
    }
    b
}

/// Ridge regression with an unpenalised intercept (features centred on the training mean).
struct Ridge {
    mean: Vec<f64>,
    weights: Vec<f64>,
    intercept: f64,
}

impl Ridge {
    fn fit(x: &[Vec<f64>], y: &[f64], lambda: f64) -> Ridge {
        let (n, d) = (x.len(), x[0].len());
        let mean: Vec<f64> = (0..d).map(|k| x.iter().map(|r| r[k]).sum::<f64>() / n as f64).collect();
        let y_mean = y.iter().sum::<f64>() / n as f64;
        let mut gram = vec![0.0; d * d];
        let mut rhs = vec![0.0; d];
        for (r, &t) in x.iter().zip(y) {
            let c: Vec<f64> = r.iter().zip(&mean).map(|(v, m)| v - m).collect();
            for i in 0..d {
                rhs[i] += c[i] * (t - y_mean);
                for j in 0..=i {
                    gram[i * d + j] += c[i] * c[j];
                }
            }
        }
        for i in 0..d {
            for j in 0..i {
                gram[j * d + i] = gram[i * d + j];
            }
            gram[i * d + i] += lambda;
        }
        Ridge { weights: solve_spd(gram, rhs, d), mean, intercept: y_mean }
    }

    fn predict(&self, r: &[f64]) -> f64 {
        self.intercept + r.iter().zip(&self.mean).zip(&self.weights).map(|((v, m), w)| (v - m) * w).sum::<f64>()
    }
}

fn acc7(model: &Ridge, x: &[Vec<f64>], y: &[f32]) -> f64 {
    let hits = x.iter().zip(y).filter(|(r, t)| labels::class_of(model.predict(r) as f32) == labels::class_of(**t)).count();
    hits as f64 / y.len().max(1) as f64
}

/// Every baseline on a synthetic dataset with its events: majority class, the time-averaged
/// features of each modality and of all three, and the oracle that reads the video at the true
/// event frames. The ridge penalty is chosen on the validation split from a fixed grid.
pub fn run_baselines(dataset: &Dataset, events: &Events) -> Vec<BaselineResult> {
    let shape = &dataset.shape;
    let majority = {
        let h = labels::histogram(dataset.train.classes());
        let c = (0..labels::NUM_CLASSES).max_by_key(|&c| h[c]).unwrap_or(3);
        dataset.test.classes().iter().filter(|&&k| k == c).count() as f64 / dataset.test.len().max(1) as f64
    };
    let mut out = vec![BaselineResult { baseline: "majority class".into(), features: 0, acc7: majority, ridge: 0.0 }];
    for f in [Features::TextMean, Features::AudioMean, Features::VideoMean, Features::AllMeans, Features::VideoAtEvent] {
        let rows = |split: &Split, ev: &[usize]| -> Vec<Vec<f64>> { (0..split.len()).map(|i| f.of(split, shape, ev, events.burst_frames, i)).collect() };
        let (xt, xv, xs) = (rows(&dataset.train, &events.train), rows(&dataset.valid, &events.valid), rows(&dataset.test, &events.test));
        let yt: Vec<f64> = dataset.train.labels.iter().map(|&y| y as f64).collect();
        let mut best: Option<(f64, f64, Ridge)> = None;
        for lambda in [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0] {
            let model = Ridge::fit(&xt, &yt, lambda);
            let valid = acc7(&model, &xv, &dataset.valid.labels);
            if best.as_ref().is_none_or(|(v, _, _)| valid > *v) {
                best = Some((valid, lambda, model));
            }
        }
        let (_, lambda, model) = best.expect("a non-empty grid");
        out.push(BaselineResult { baseline: f.name().into(), features: xt[0].len(), acc7: acc7(&model, &xs, &dataset.test.labels), ridge: lambda });
    }
    out
}

/// What a key detector reaches: attention whose score for a video frame is a linear function of
/// that frame alone (ridge regression of "is an event frame" on the frame's features, fitted on
/// the training split), softmax at the sharpness chosen on the validation split, over the keys a
/// query row may see. `V<-A` and `V<-L` have raw video frames as keys, so apart from what the
/// query row knows about *when* (only rows at the event do), this bounds the event share such
/// an attention can reach by recognising the event in the keys: for the teacher and the
/// student alike.
#[derive(Clone, Debug, Serialize)]
pub struct KeyDetectorResult {
    /// Which rows see which keys.
    pub rows: String,
    /// Mean share of attention mass on the event frames (test split).
    pub event_share: f64,
    /// The same share under uniform attention over the visible keys.
    pub uniform_event_share: f64,
    /// Softmax sharpness (score multiplier) chosen on the validation split.
    pub sharpness: f64,
}

/// The detector's features of frame `t` of clip `i`: frames `t - w .. t + w` (zeros beyond the
/// clip), what a length-keeping conv of kernel `2w + 1` in front of the keys sees.
fn window(split: &Split, shape: &DataShape, i: usize, t: usize, w: usize) -> Vec<f64> {
    let (lv, dim) = (shape.video_len, shape.video_dim);
    let mut f = Vec::with_capacity((2 * w + 1) * dim);
    for j in t as isize - w as isize..=(t + w) as isize {
        if j < 0 || j >= lv as isize {
            f.extend(std::iter::repeat_n(0.0, dim));
        } else {
            let j = j as usize;
            f.extend(split.video[(i * lv + j) * dim..(i * lv + j + 1) * dim].iter().map(|&x| x as f64));
        }
    }
    f
}

/// Per-frame detector scores of a split: `[clip][frame]`.
fn frame_scores(model: &Ridge, split: &Split, shape: &DataShape, w: usize) -> Vec<Vec<f64>> {
    (0..split.len()).map(|i| (0..shape.video_len).map(|t| model.predict(&window(split, shape, i, t, w))).collect()).collect()
}

/// Mean event share and uniform share of softmax(`sharpness` * scores) over the visible keys of
/// every row (`causal`: row t sees keys 0..=t, MulT's future mask at equal lengths).
fn detector_shares(scores: &[Vec<f64>], events: &[usize], burst: usize, sharpness: f64, causal: bool) -> (f64, f64) {
    let (mut share, mut uniform, mut rows) = (0.0, 0.0, 0usize);
    for (clip, &start) in scores.iter().zip(events) {
        let len = clip.len();
        let first_rows = if causal { 0..len } else { len - 1..len };
        for t in first_rows {
            let visible = if causal { t + 1 } else { len };
            let max = clip[..visible].iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = clip[..visible].iter().map(|&x| (sharpness * (x - max)).exp()).collect();
            let total: f64 = w.iter().sum();
            let ev = start.min(visible)..(start + burst).min(visible);
            share += w[ev.clone()].iter().sum::<f64>() / total;
            uniform += ev.len() as f64 / visible as f64;
            rows += 1;
        }
    }
    (share / rows.max(1) as f64, uniform / rows.max(1) as f64)
}

/// The key detector on a synthetic dataset, reading each frame with its neighbours out to
/// `half_window` (the models' conv front end of kernel 3 sees one on each side): causal rows (as
/// in every MulT attention) and one row that sees every key.
pub fn key_detectors(dataset: &Dataset, events: &Events, half_window: usize) -> Vec<KeyDetectorResult> {
    let shape = &dataset.shape;
    let lv = shape.video_len;
    let burst = events.burst_frames;
    let mut x = Vec::with_capacity(dataset.train.len() * lv);
    let mut y = Vec::with_capacity(dataset.train.len() * lv);
    for (i, &start) in events.train.iter().enumerate().take(dataset.train.len()) {
        for t in 0..lv {
            x.push(window(&dataset.train, shape, i, t, half_window));
            y.push(if (start..start + burst).contains(&t) { 1.0 } else { 0.0 });
        }
    }
    let model = Ridge::fit(&x, &y, 1.0);
    let (valid, test) = (frame_scores(&model, &dataset.valid, shape, half_window), frame_scores(&model, &dataset.test, shape, half_window));
    let rows = |what: &str| format!("{what}, frames read {} at a time", 2 * half_window + 1);
    [(true, rows("causal rows (row t sees frames 0..=t)")), (false, rows("one row over every frame"))]
        .into_iter()
        .map(|(causal, rows)| {
            let grid = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];
            let ratio = |(s, u): (f64, f64)| s / u.max(1e-12);
            // Each sharpness evaluated once on the validation split; ties keep the last, as before.
            let (sharpness, _) = grid.into_iter().map(|a| (a, ratio(detector_shares(&valid, &events.valid, burst, a, causal)))).max_by(|a, b| a.1.total_cmp(&b.1)).expect("a non-empty grid");
            let (event_share, uniform_event_share) = detector_shares(&test, &events.test, burst, sharpness, causal);
            KeyDetectorResult { rows, event_share, uniform_event_share, sharpness }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_hand_made_system() {
        // [[4, 2], [2, 3]] x = [2, 1] -> x = [0.5, 0].
        let x = solve_spd(vec![4.0, 2.0, 2.0, 3.0], vec![2.0, 1.0], 2);
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12, "{x:?}");
    }

    #[test]
    fn detector_shares_are_exact_on_hand_made_scores() {
        // One clip of 4 frames, event at frames 1..3. Scores that single out the event:
        // at high sharpness every row that sees it puts all its mass there.
        let scores = vec![vec![0.0, 10.0, 10.0, 0.0]];
        let (share, uniform) = detector_shares(&scores, &[1], 2, 64.0, true);
        // Rows 0..4 see 1, 2, 3, 4 frames; event frames visible 0, 1, 2, 2.
        assert!((share - 3.0 / 4.0).abs() < 1e-9, "{share}");
        assert!((uniform - (0.0 + 0.5 + 2.0 / 3.0 + 0.5) / 4.0).abs() < 1e-12, "{uniform}");
        // Flat scores give the uniform share.
        let (share, uniform) = detector_shares(&[vec![1.0; 4]], &[1], 2, 8.0, false);
        assert!((share - 0.5).abs() < 1e-12 && (uniform - 0.5).abs() < 1e-12);
    }

    #[test]
    fn ridge_recovers_a_noiseless_line() {
        let x: Vec<Vec<f64>> = (0..20).map(|i| vec![i as f64, (i * i % 7) as f64]).collect();
        let y: Vec<f64> = x.iter().map(|r| 1.5 + 2.0 * r[0] - 0.5 * r[1]).collect();
        let m = Ridge::fit(&x, &y, 1e-9);
        for (r, t) in x.iter().zip(&y) {
            assert!((m.predict(r) - t).abs() < 1e-6);
        }
    }
}
