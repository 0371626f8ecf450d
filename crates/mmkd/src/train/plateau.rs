//! ReduceLROnPlateau as in PyTorch (mode "min", relative threshold 1e-4, no cooldown):
//! Burn's schedulers take no metric, so this one is written here.

use serde::{Deserialize, Serialize};

/// The scheduler's state (saved in `resume.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReduceLrOnPlateau {
    /// Current learning rate.
    pub lr: f64,
    /// Multiplier applied to `lr` on a plateau (paper preset: 0.5).
    pub factor: f64,
    /// Epochs without improvement tolerated before `lr` is reduced (paper preset: 10).
    pub patience: usize,
    /// Relative improvement that counts: `metric < best * (1 - threshold)` (1e-4).
    pub threshold: f64,
    /// Floor for `lr` (0).
    pub min_lr: f64,
    /// Lowest validation loss so far (infinite before the first; null in JSON).
    #[serde(with = "super::checkpoint::infinity_as_null")]
    pub best: f64,
    /// Epochs since the last improvement or reduction.
    pub bad_epochs: usize,
}

impl ReduceLrOnPlateau {
    /// Start at `lr`, with PyTorch's defaults for the threshold (1e-4) and floor (0).
    pub fn new(lr: f64, factor: f64, patience: usize) -> Self {
        ReduceLrOnPlateau { lr, factor, patience, threshold: 1e-4, min_lr: 0.0, best: f64::INFINITY, bad_epochs: 0 }
    }

    /// Record one epoch's validation loss; returns the learning rate for the next epoch.
    pub fn step(&mut self, metric: f64) -> f64 {
        if metric < self.best * (1.0 - self.threshold) {
            self.best = metric;
            self.bad_epochs = 0;
        } else {
            self.bad_epochs += 1;
        }
        if self.bad_epochs > self.patience {
            self.lr = (self.lr * self.factor).max(self.min_lr);
            self.bad_epochs = 0;
        }
        self.lr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_after_patience_bad_epochs_like_pytorch() {
        // PyTorch ReduceLROnPlateau(patience=2, factor=0.5) on this sequence gives these lrs.
        let mut s = ReduceLrOnPlateau::new(1.0, 0.5, 2);
        let losses = [1.0, 0.9, 0.9, 0.95, 0.91, 0.8, 0.8, 0.8, 0.8, 0.7999999];
        let lrs: Vec<f64> = losses.iter().map(|&l| s.step(l)).collect();
        assert_eq!(lrs, vec![1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25]);
        assert_eq!(s.best, 0.8);
    }
}
