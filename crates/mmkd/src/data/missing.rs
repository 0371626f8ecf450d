//! Missing modalities: the paper's motivation is that a modality can be absent at inference. This
//! replaces the features of chosen modalities in a split by what a deployed system would see:
//! zeros (the modality is gone), noise at the training split's per-feature statistics (a broken
//! sensor), or a fraction of time steps zeroed (drop-outs).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use super::Split;
use crate::config::DataShape;
use crate::input::Modality;

/// What replaces a missing modality's features.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissingMode {
    /// All features 0 (with MulT's positions, an all-zero frame also loses its position).
    Zeros,
    /// Gaussian noise with each feature's mean and standard deviation on the training split.
    Noise,
    /// A fraction of the time steps of each clip set to 0, the rest kept.
    Steps,
}
crate::choice::impl_choice!(MissingMode {
    Zeros => "zeros", "All features 0 (with MulT's positions, an all-zero frame also loses its position)";
    Noise => "noise", "Gaussian noise with each feature's mean and standard deviation on the training split";
    Steps => "steps", "A fraction of the time steps of each clip set to 0, the rest kept";
});

/// Which modalities are missing, and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Missing {
    /// The modalities to corrupt.
    pub modalities: Vec<Modality>,
    /// How.
    pub mode: MissingMode,
    /// For `Steps`: the fraction of time steps zeroed in each clip (rounded to whole steps).
    pub fraction: f64,
    /// Seeds the noise and the choice of steps.
    pub seed: u64,
}

impl Missing {
    /// A short label for reports and file names: `audio+text-zeros`, `video-steps0.5`.
    pub fn label(&self) -> String {
        let mods: Vec<&str> = self.modalities.iter().map(|m| m.name()).collect();
        let mode = match self.mode {
            MissingMode::Zeros => "zeros".to_string(),
            MissingMode::Noise => "noise".to_string(),
            MissingMode::Steps => format!("steps{}", self.fraction),
        };
        if mods.is_empty() { "none".to_string() } else { format!("{}-{mode}", mods.join("+")) }
    }

    /// What replaces a missing modality, in words, for reports.
    pub fn describe(&self) -> String {
        match self.mode {
            MissingMode::Zeros => "zeros".into(),
            MissingMode::Noise => "Gaussian noise at the training split's per-feature mean and std".into(),
            MissingMode::Steps => format!("zeros in {:.0} % of each clip's time steps", 100.0 * self.fraction),
        }
    }

    /// A copy of `split` with the missing modalities replaced; `train` gives the statistics
    /// for `Noise`. Modalities the split does not hold stay absent. The copy shares the features
    /// it keeps with `split` (a clone of mapped features is a view of the same file); only the
    /// replaced modalities are held in memory.
    pub fn apply(&self, split: &Split, shape: &DataShape, train: &Split) -> Split {
        let mut out = split.clone();
        for (k, &m) in self.modalities.iter().enumerate() {
            let (len, dim) = match m {
                Modality::Video => (shape.video_len, shape.video_dim),
                Modality::Audio => (shape.audio_len, shape.audio_dim),
                Modality::Text => (shape.text_len, shape.text_dim),
            };
            let seed = self.seed.wrapping_mul(31).wrapping_add(k as u64);
            let stats = |train: &Split| feature_stats(modality(train, m), dim);
            let Some(features) = modality_mut(&mut out, m) else { continue };
            match self.mode {
                MissingMode::Zeros => features.iter_mut().for_each(|x| *x = 0.0),
                MissingMode::Noise => {
                    let (mean, std) = stats(train);
                    let mut rng = ChaCha8Rng::seed_from_u64(seed);
                    for frame in features.chunks_exact_mut(dim) {
                        for (f, x) in frame.iter_mut().enumerate() {
                            *x = Normal::new(mean[f], std[f].max(1e-12)).expect("finite std").sample(&mut rng) as f32;
                        }
                    }
                }
                MissingMode::Steps => {
                    let drop = ((self.fraction.clamp(0.0, 1.0) * len as f64).round() as usize).min(len);
                    let mut rng = ChaCha8Rng::seed_from_u64(seed);
                    for clip in features.chunks_exact_mut(len * dim) {
                        // A uniform choice of `drop` distinct steps (partial Fisher-Yates).
                        let mut steps: Vec<usize> = (0..len).collect();
                        for i in 0..drop {
                            let j = rng.random_range(i..len);
                            steps.swap(i, j);
                            clip[steps[i] * dim..(steps[i] + 1) * dim].iter_mut().for_each(|x| *x = 0.0);
                        }
                    }
                }
            }
        }
        out
    }
}

fn modality(split: &Split, m: Modality) -> &[f32] {
    match m {
        Modality::Video => &split.video,
        Modality::Audio => split.audio.as_deref().unwrap_or(&[]),
        Modality::Text => split.text.as_deref().unwrap_or(&[]),
    }
}

/// The features of modality `m`, writable: features read in place from a mapped file are copied
/// into memory first (`Features::make_mut`), so the dataset on disk is never changed; the other
/// modalities of the copy stay mapped.
fn modality_mut(split: &mut Split, m: Modality) -> Option<&mut [f32]> {
    match m {
        Modality::Video => Some(split.video.make_mut()),
        Modality::Audio => split.audio.as_mut().map(|f| f.make_mut()),
        Modality::Text => split.text.as_mut().map(|f| f.make_mut()),
    }
}

/// Per-feature mean and (population) standard deviation over every frame.
fn feature_stats(features: &[f32], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let frames = (features.len() / dim.max(1)).max(1) as f64;
    let mut mean = vec![0.0; dim];
    let mut sq = vec![0.0; dim];
    for frame in features.chunks_exact(dim) {
        for (f, &x) in frame.iter().enumerate() {
            mean[f] += x as f64;
            sq[f] += (x as f64) * (x as f64);
        }
    }
    let mean: Vec<f64> = mean.iter().map(|s| s / frames).collect();
    let std = sq.iter().zip(&mean).map(|(s, m)| (s / frames - m * m).max(0.0).sqrt()).collect();
    (mean, std)
}

/// Parse `audio,text` (also `video`, `language`/`text`, `a`, `l`, `v`) into modalities.
pub fn parse_modalities(list: &str) -> Result<Vec<Modality>, String> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let m = match name.to_ascii_lowercase().as_str() {
            "video" | "vision" | "v" => Modality::Video,
            "audio" | "a" => Modality::Audio,
            "text" | "language" | "l" => Modality::Text,
            other => return Err(format!("unknown modality '{other}' (use video, audio, text)")),
        };
        if !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(n: usize, shape: &DataShape) -> Split {
        let fill = |len: usize, dim: usize, k: f32| (0..n * len * dim).map(|i| k + i as f32 * 0.01).collect::<Vec<_>>();
        Split {
            name: "t".into(),
            text: Some(fill(shape.text_len, shape.text_dim, 1.0).into()),
            audio: Some(fill(shape.audio_len, shape.audio_dim, 2.0).into()),
            video: fill(shape.video_len, shape.video_dim, 3.0).into(),
            labels: vec![0.0; n],
            ids: (0..n).map(|i| i.to_string()).collect(),
            lengths: None,
        }
    }

    fn shape() -> DataShape {
        DataShape { text_dim: 2, audio_dim: 3, video_dim: 2, text_len: 4, audio_len: 10, video_len: 5, n_train: 50, n_valid: 1, n_test: 3 }
    }

    #[test]
    fn zeros_touch_only_the_named_modalities() {
        let (s, shape) = (split(3, &shape()), shape());
        let m = Missing { modalities: vec![Modality::Audio, Modality::Text], mode: MissingMode::Zeros, fraction: 0.0, seed: 1 };
        let out = m.apply(&s, &shape, &s);
        assert!(out.audio.unwrap().iter().all(|&x| x == 0.0) && out.text.unwrap().iter().all(|&x| x == 0.0));
        assert_eq!(out.video, s.video);
        assert_eq!(m.label(), "audio+text-zeros");
    }

    #[test]
    fn steps_zero_exactly_the_fraction_of_frames_per_clip() {
        let (s, shape) = (split(3, &shape()), shape());
        let m = Missing { modalities: vec![Modality::Audio], mode: MissingMode::Steps, fraction: 0.3, seed: 7 };
        let out = m.apply(&s, &shape, &s);
        for clip in out.audio.as_ref().unwrap().chunks(10 * 3) {
            let zero_frames = clip.chunks(3).filter(|f| f.iter().all(|&x| x == 0.0)).count();
            assert_eq!(zero_frames, 3, "round(0.3 x 10) frames per clip");
        }
        assert_eq!(out.audio, m.apply(&s, &shape, &s).audio, "seeded");
    }

    #[test]
    fn noise_follows_the_training_statistics() {
        let shape = shape();
        let train = split(50, &shape);
        let m = Missing { modalities: vec![Modality::Video], mode: MissingMode::Noise, fraction: 0.0, seed: 3 };
        let out = m.apply(&train, &shape, &train);
        let (mean_in, std_in) = feature_stats(&train.video, 2);
        let (mean_out, std_out) = feature_stats(&out.video, 2);
        for f in 0..2 {
            assert!((mean_in[f] - mean_out[f]).abs() < 0.15 * std_in[f], "mean {} vs {}", mean_out[f], mean_in[f]);
            assert!((std_in[f] / std_out[f] - 1.0).abs() < 0.15, "std {} vs {}", std_out[f], std_in[f]);
        }
        assert_ne!(out.video, train.video);
    }

    #[test]
    fn parses_lists_and_refuses_unknown_names() {
        assert_eq!(parse_modalities("audio, text").unwrap(), vec![Modality::Audio, Modality::Text]);
        assert!(parse_modalities("smell").unwrap_err().contains("smell"));
    }
}
