//! Acc-7, weighted and macro F1, MAE and Pearson correlation of the expected score, binary
//! accuracy/F1 (negative vs non-negative; negative vs positive without zeros), confusion matrix.
//!
//! Conventions follow scikit-learn (which MulT and MMSA use): per-class F1 is 0 when a class has
//! no true or no predicted samples; weighted F1 weights by true support; macro F1 averages over
//! the classes present in the truth or the predictions.

use serde::{Deserialize, Serialize};

use crate::data::labels::{self, NUM_CLASSES};

/// The metrics of one split's predictions (`eval.json`). Rates and F1 scores are fractions (0..1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// What the numbers were computed on: dataset name and its source line.
    pub dataset: String,
    /// Which split, and any corruption applied to it (`test, missing ...`).
    pub split: String,
    /// Number of clips.
    pub n: usize,
    /// 7-class accuracy.
    pub acc7: f64,
    /// 7-class F1 weighted by true class support (the paper's F1).
    pub f1_weighted: f64,
    /// 7-class F1 averaged over the classes present in truth or predictions.
    pub f1_macro: f64,
    /// Mean absolute error of the expected score against the true score (score units, -3..3).
    pub mae: f64,
    /// Pearson correlation of the expected score with the true score.
    pub corr: f64,
    /// Negative vs non-negative.
    pub acc2: f64,
    /// Weighted F1 of negative vs non-negative.
    pub f1_binary: f64,
    /// Negative vs positive, zeros excluded.
    pub acc2_nonzero: f64,
    /// Weighted F1 of negative vs positive, zeros excluded.
    pub f1_binary_nonzero: f64,
    /// Share of the most frequent class in this split.
    pub majority_rate: f64,
    /// Rows: true class (-3..3), columns: predicted class.
    pub confusion: Vec<Vec<usize>>,
}

/// Per-class F1 scores and supports of a labelling with `k` classes.
fn f1_per_class(truth: &[usize], pred: &[usize], k: usize) -> (Vec<f64>, Vec<usize>, Vec<bool>) {
    let mut tp = vec![0usize; k];
    let mut n_true = vec![0usize; k];
    let mut n_pred = vec![0usize; k];
    for (&t, &p) in truth.iter().zip(pred) {
        n_true[t] += 1;
        n_pred[p] += 1;
        if t == p {
            tp[t] += 1;
        }
    }
    let f1 = (0..k)
        .map(|c| {
            let denom = n_true[c] + n_pred[c];
            if denom == 0 { 0.0 } else { 2.0 * tp[c] as f64 / denom as f64 }
        })
        .collect();
    let present = (0..k).map(|c| n_true[c] + n_pred[c] > 0).collect();
    (f1, n_true, present)
}

/// Weighted F1 (by true support) and macro F1 (over present classes).
pub fn f1_scores(truth: &[usize], pred: &[usize], k: usize) -> (f64, f64) {
    let (f1, support, present) = f1_per_class(truth, pred, k);
    let total: usize = support.iter().sum();
    let weighted = if total == 0 { 0.0 } else { f1.iter().zip(&support).map(|(f, &s)| f * s as f64).sum::<f64>() / total as f64 };
    let n_present = present.iter().filter(|&&p| p).count();
    let macro_ = if n_present == 0 { 0.0 } else { f1.iter().zip(&present).filter(|(_, p)| **p).map(|(f, _)| f).sum::<f64>() / n_present as f64 };
    (weighted, macro_)
}

/// Pearson correlation of `x` and `y`; 0 with fewer than two points or a constant input.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    if x.len() < 2 {
        return 0.0;
    }
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 { 0.0 } else { sxy / (sxx * syy).sqrt() }
}

/// `probs`: [n][7] class probabilities; `scores`: true continuous labels.
pub fn evaluate_predictions(dataset: &str, split: &str, probs: &[[f32; NUM_CLASSES]], scores: &[f32]) -> EvalReport {
    assert_eq!(probs.len(), scores.len(), "one prediction per label");
    let n = scores.len();
    let truth: Vec<usize> = scores.iter().map(|&y| labels::class_of(y)).collect();
    let pred: Vec<usize> = probs.iter().map(|p| p.iter().enumerate().fold(0, |best, (i, v)| if *v > p[best] { i } else { best })).collect();
    // The expected score under the predicted distribution: a regression output for MAE/corr.
    let expected: Vec<f64> = probs.iter().map(|p| p.iter().enumerate().map(|(c, v)| *v as f64 * labels::score_of(c) as f64).sum()).collect();
    let y: Vec<f64> = scores.iter().map(|&s| s as f64).collect();

    let acc7 = truth.iter().zip(&pred).filter(|(t, p)| t == p).count() as f64 / n.max(1) as f64;
    let (f1_weighted, f1_macro) = f1_scores(&truth, &pred, NUM_CLASSES);
    let mae = expected.iter().zip(&y).map(|(a, b)| (a - b).abs()).sum::<f64>() / n.max(1) as f64;
    let corr = pearson(&expected, &y);

    // MulT's binary metrics: truth >= 0 vs prediction >= 0, and > 0 among non-zero truths.
    let bt: Vec<usize> = y.iter().map(|&v| (v >= 0.0) as usize).collect();
    let bp: Vec<usize> = expected.iter().map(|&v| (v >= 0.0) as usize).collect();
    let acc2 = bt.iter().zip(&bp).filter(|(a, b)| a == b).count() as f64 / n.max(1) as f64;
    let f1_binary = f1_scores(&bt, &bp, 2).0;
    let nz: Vec<usize> = (0..n).filter(|&i| y[i] != 0.0).collect();
    let nzt: Vec<usize> = nz.iter().map(|&i| (y[i] > 0.0) as usize).collect();
    let nzp: Vec<usize> = nz.iter().map(|&i| (expected[i] > 0.0) as usize).collect();
    let acc2_nonzero = nzt.iter().zip(&nzp).filter(|(a, b)| a == b).count() as f64 / nz.len().max(1) as f64;
    let f1_binary_nonzero = f1_scores(&nzt, &nzp, 2).0;

    let hist = labels::histogram(truth.iter().copied());
    let majority_rate = *hist.iter().max().unwrap_or(&0) as f64 / n.max(1) as f64;
    let mut confusion = vec![vec![0usize; NUM_CLASSES]; NUM_CLASSES];
    for (&t, &p) in truth.iter().zip(&pred) {
        confusion[t][p] += 1;
    }
    EvalReport { dataset: dataset.to_string(), split: split.to_string(), n, acc7, f1_weighted, f1_macro, mae, corr, acc2, f1_binary, acc2_nonzero, f1_binary_nonzero, majority_rate, confusion }
}

impl std::fmt::Display for EvalReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "dataset: {} ({} split, n = {})", self.dataset, self.split, self.n)?;
        writeln!(
            f,
            "  Acc-7 {:6.2} %   F1-w {:6.2}   F1-macro {:6.2}   (majority class rate {:5.2} %)",
            100.0 * self.acc7,
            100.0 * self.f1_weighted,
            100.0 * self.f1_macro,
            100.0 * self.majority_rate
        )?;
        writeln!(
            f,
            "  MAE {:.3}   Corr {:.3}   Acc-2 {:5.2} % / F1 {:5.2} (neg vs non-neg)   Acc-2 {:5.2} % / F1 {:5.2} (non-zero)",
            self.mae,
            self.corr,
            100.0 * self.acc2,
            100.0 * self.f1_binary,
            100.0 * self.acc2_nonzero,
            100.0 * self.f1_binary_nonzero
        )?;
        writeln!(f, "  confusion (rows true -3..3, cols predicted):")?;
        for row in &self.confusion {
            writeln!(f, "    {}", row.iter().map(|v| format!("{v:5}")).collect::<String>())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_hot(c: usize) -> [f32; 7] {
        let mut p = [0.0; 7];
        p[c] = 1.0;
        p
    }

    #[test]
    fn f1_matches_hand_computation() {
        // truth 0 0 1 1 2, pred 0 1 1 1 0.
        // class 0: tp 1, true 2, pred 2 -> F1 0.5; class 1: tp 2, true 2, pred 3 -> 0.8;
        // class 2: tp 0, true 1, pred 0 -> 0.
        let (w, m) = f1_scores(&[0, 0, 1, 1, 2], &[0, 1, 1, 1, 0], 3);
        assert!((w - (0.5 * 2.0 + 0.8 * 2.0 + 0.0) / 5.0).abs() < 1e-12);
        assert!((m - (0.5 + 0.8 + 0.0) / 3.0).abs() < 1e-12);
        // A class absent from both truth and prediction does not count in macro F1.
        let (_, m) = f1_scores(&[0, 1], &[0, 1], 7);
        assert!((m - 1.0).abs() < 1e-12);
    }

    #[test]
    fn report_matches_hand_computed_values() {
        // Scores -2, 0, 1, 1.3333; predicted classes -2, 1, 1, 0 (one-hot, so expected = class).
        let scores = [-2.0f32, 0.0, 1.0, 4.0 / 3.0];
        let probs = [one_hot(1), one_hot(4), one_hot(4), one_hot(3)];
        let r = evaluate_predictions("t", "test", &probs, &scores);
        assert_eq!(r.acc7, 0.5);
        // MAE: |(-2)-(-2)| + |1-0| + |1-1| + |0-4/3| = 1 + 4/3, over 4.
        assert!((r.mae - (1.0 + 4.0 / 3.0) / 4.0).abs() < 1e-6);
        // Binary (>= 0): truth 0 1 1 1, pred 0 1 1 1 -> 1.0.
        assert_eq!(r.acc2, 1.0);
        // Non-zero: truths -2, 1, 4/3 -> 0 1 1; preds -2, 1, 0 -> 0 1 0 -> 2/3.
        assert!((r.acc2_nonzero - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.majority_rate, 0.5);
        assert_eq!(r.confusion[4][4], 1);
        assert_eq!(r.confusion[3][4], 1);
        assert_eq!(r.confusion[4][3], 1);
        // Pearson of expected (-2, 1, 1, 0) against truth.
        let x = [-2.0, 1.0, 1.0, 0.0];
        let y = [-2.0, 0.0, 1.0, 4.0 / 3.0];
        let (mx, my) = (0.0, (-2.0 + 0.0 + 1.0 + 4.0 / 3.0) / 4.0);
        let sxy: f64 = x.iter().zip(&y).map(|(a, b)| (a - mx) * (b - my)).sum();
        let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
        let syy: f64 = y.iter().map(|b| (b - my) * (b - my)).sum();
        assert!((r.corr - sxy / (sxx * syy).sqrt()).abs() < 1e-6);
    }
}
