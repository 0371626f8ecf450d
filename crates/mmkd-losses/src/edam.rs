//! EDAM: Entropy Distillation in Attention Maps (paper section 4.3, eqs. 12-13).
//!
//! Each attention map is `[batch, m, n]`, head-averaged and computed with the temperature
//! softmax of eqs. 10-11, so every row is a distribution over the `n` keys. For one row,
//! `F(a, b) = -sum_k a_k log b_k` (eq. 13). The loss averages `F` over the rows of a map
//! (eq. 12 divides by `m`), over the batch, over the layers (eq. 12 divides by `l`) and over
//! the distilled transformer pairs. Every pair has the same number of layers, so averaging all
//! (pair, layer) maps at once equals averaging over layers and then over pairs.
//!
//! # Orientation
//! Eq. 13 is printed as `F(student row, teacher row)`: the student distribution weights the
//! teacher's log-probabilities, and the gradient reaches the student through `a` only
//! ([`EdamOrientation::Literal`], the default, as METHOD.md requires). Note what it optimises:
//! for a fixed teacher row `b`, `-sum_k a_k log b_k` is linear in `a`, so over the simplex it is
//! minimised by putting all of `a`'s mass on `argmax_k b_k` (the teacher's mode), not by
//! `a = b`. [`EdamOrientation::Conventional`] is the usual distillation cross-entropy
//! `F(teacher row, student row)`, minimised by `student = teacher`. Report which one ran.
//!
//! # Epsilon
//! `log b` is evaluated as `log(max(b, EDAM_LOG_EPS))` with `EDAM_LOG_EPS = 1e-8`. A softmax
//! over 500 keys in f32 can underflow to exactly 0 (e.g. a sharp low-temperature teacher), and
//! `log 0 = -inf` would turn the whole batch into NaN. 1e-8 is far below any probability that
//! carries information here (a uniform row over 500 keys is 2e-3), it is a normal f32, and it
//! caps one entry's contribution at `-log(1e-8) = 18.4` nats. Below the clamp the gradient
//! through `b` is zero, which only matters for the conventional orientation.

use burn::tensor::Tensor;

use crate::error::{LossError, check_dims};

/// Lower clamp applied inside `log` (see the module documentation for why 1e-8).
pub const EDAM_LOG_EPS: f64 = 1e-8;

/// Which row plays `a` and which plays `b` in `F(a, b) = -sum_k a_k log b_k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EdamOrientation {
    /// Eq. 13 as printed: `a` = student row, `b` = teacher row. The default.
    #[default]
    Literal,
    /// Distillation cross-entropy: `a` = teacher row, `b` = student row.
    Conventional,
}

impl EdamOrientation {
    /// A short name for logs and run records; [`str::parse`] accepts it back.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Literal => "literal",
            Self::Conventional => "conventional",
        }
    }

    /// What the orientation computes, for run records.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Literal => "-student * log(teacher), eq. 13 as printed",
            Self::Conventional => "-teacher * log(student), distillation cross-entropy",
        }
    }
}

impl std::str::FromStr for EdamOrientation {
    type Err = LossError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "literal" => Ok(Self::Literal),
            "conventional" => Ok(Self::Conventional),
            other => Err(LossError::InvalidConfig(format!("EDAM orientation must be `literal` or `conventional`, got `{other}`"))),
        }
    }
}

/// `F` for one (student, teacher) map of shape `[batch, m, n]`, averaged over rows and batch.
///
/// The teacher map is expected to be detached already; the student map is not detached here,
/// so the gradient reaches the student in either orientation. Returns a `[1]` tensor.
pub fn edam_map_loss(student: Tensor<3>, teacher: Tensor<3>, orientation: EdamOrientation) -> Result<Tensor<1>, LossError> {
    check_dims("EDAM student and teacher maps (after EDAM-S/EDAM-T alignment)", student.dims(), teacher.dims())?;
    let (weights, probs) = match orientation {
        EdamOrientation::Literal => (student, teacher),
        EdamOrientation::Conventional => (teacher, student),
    };
    // Sum over keys gives F per row, [batch, m, 1]; the mean over batch and rows follows.
    let per_row = weights.mul(probs.clamp_min(EDAM_LOG_EPS).log()).sum_dim(2).neg();
    Ok(per_row.mean())
}

/// EDAM over every (student map, teacher map) entry: one entry per distilled pair and layer.
///
/// Each entry is averaged over its rows and batch first, because pairs may have maps of
/// different sizes (a `V<-L` map has 50 rows, a `V<-A` map 500) and eq. 12 normalises each by
/// its own `m`. The entries are then averaged with equal weight. Returns a `[1]` tensor for
/// `alpha * CE + beta * L_KD`.
pub fn edam_loss(pairs: &[(Tensor<3>, Tensor<3>)], orientation: EdamOrientation) -> Result<Tensor<1>, LossError> {
    let mut total: Option<Tensor<1>> = None;
    for (student, teacher) in pairs {
        let entry = edam_map_loss(student.clone(), teacher.clone(), orientation)?;
        total = Some(match total {
            Some(sum) => sum + entry,
            None => entry,
        });
    }
    let total = total.ok_or(LossError::Empty("the list of EDAM attention-map pairs"))?;
    Ok(total.div_scalar(pairs.len() as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{autodiff_device, device, row_stochastic, tensor3, values};

    /// F averaged the way eq. 12 does, in f64 with plain loops.
    fn naive_entry(s: &[f64], t: &[f64], dims: [usize; 3], orientation: EdamOrientation) -> f64 {
        let [b, m, n] = dims;
        let mut acc = 0.0;
        for bi in 0..b {
            for i in 0..m {
                let mut f = 0.0;
                for k in 0..n {
                    let at = (bi * m + i) * n + k;
                    let (a, p) = match orientation {
                        EdamOrientation::Literal => (s[at], t[at]),
                        EdamOrientation::Conventional => (t[at], s[at]),
                    };
                    f -= a * p.max(EDAM_LOG_EPS).ln();
                }
                acc += f;
            }
        }
        acc / (b * m) as f64
    }

    #[test]
    fn matches_naive_loop_both_orientations_and_mixed_shapes() {
        let dev = device();
        // Two pairs x two layers, with different map sizes per pair.
        let shapes = [[2, 2, 3], [2, 2, 3], [2, 3, 4], [2, 3, 4]];
        let mut pairs = Vec::new();
        let mut raw = Vec::new();
        for (i, &dims) in shapes.iter().enumerate() {
            let s = row_stochastic(dims, 10 + i as u64);
            let t = row_stochastic(dims, 20 + i as u64);
            pairs.push((tensor3(&s, dims, &dev), tensor3(&t, dims, &dev)));
            raw.push((s, t, dims));
        }
        for orientation in [EdamOrientation::Literal, EdamOrientation::Conventional] {
            let got = values(edam_loss(&pairs, orientation).expect("valid pairs"))[0];
            let want = raw.iter().map(|(s, t, d)| naive_entry(s, t, *d, orientation)).sum::<f64>() / raw.len() as f64;
            assert!((got - want).abs() < 1e-5, "{orientation:?}: {got} vs {want}");
        }
    }

    #[test]
    fn orientation_names_round_trip() {
        for o in [EdamOrientation::Literal, EdamOrientation::Conventional] {
            assert_eq!(o.as_str().parse::<EdamOrientation>(), Ok(o));
        }
        assert_eq!(EdamOrientation::default(), EdamOrientation::Literal);
        assert!("student".parse::<EdamOrientation>().is_err());
    }

    #[test]
    fn hand_computed_single_row() {
        // One row: student (0.5, 0.5), teacher (0.25, 0.75).
        let dev = device();
        let s = tensor3(&[0.5, 0.5], [1, 1, 2], &dev);
        let t = tensor3(&[0.25, 0.75], [1, 1, 2], &dev);
        let literal = values(edam_loss(&[(s.clone(), t.clone())], EdamOrientation::Literal).unwrap())[0];
        let want = -(0.5 * 0.25f64.ln() + 0.5 * 0.75f64.ln());
        assert!((literal - want).abs() < 1e-6);
        let conventional = values(edam_loss(&[(s, t)], EdamOrientation::Conventional).unwrap())[0];
        let want = -(0.25 * 0.5f64.ln() + 0.75 * 0.5f64.ln());
        assert!((conventional - want).abs() < 1e-6);
    }

    #[test]
    fn zero_probabilities_are_clamped_not_nan() {
        let dev = device();
        let s = tensor3(&[1.0, 0.0], [1, 1, 2], &dev);
        let t = tensor3(&[0.0, 1.0], [1, 1, 2], &dev);
        let v = values(edam_loss(&[(s, t)], EdamOrientation::Literal).unwrap())[0];
        assert!((v - (-(EDAM_LOG_EPS.ln()))).abs() < 1e-3, "{v}");
    }

    #[test]
    fn rejects_empty_and_mismatched_input() {
        let dev = device();
        assert_eq!(edam_loss(&[], EdamOrientation::Literal).unwrap_err(), LossError::Empty("the list of EDAM attention-map pairs"));
        let s = tensor3(&[0.5; 6], [1, 3, 2], &dev);
        let t = tensor3(&[0.5; 4], [1, 2, 2], &dev);
        assert!(matches!(edam_loss(&[(s, t)], EdamOrientation::Literal), Err(LossError::ShapeMismatch { .. })));
    }

    /// Autodiff gradient against central differences of the f64 reference, for both
    /// orientations; the detached teacher gets no gradient.
    #[test]
    fn gradient_matches_finite_differences_and_skips_teacher() {
        let dev = autodiff_device();
        let dims = [2, 2, 3];
        let s = row_stochastic(dims, 3);
        let t = row_stochastic(dims, 4);
        for orientation in [EdamOrientation::Literal, EdamOrientation::Conventional] {
            let student = tensor3(&s, dims, &dev).require_grad();
            let teacher = tensor3(&t, dims, &dev).detach();
            let loss = edam_loss(&[(student.clone(), teacher.clone())], orientation).unwrap();
            let grads = loss.backward();
            let g = values(student.grad(&grads).expect("student receives a gradient"));
            assert!(teacher.grad(&grads).is_none(), "teacher must get no gradient");
            let h = 1e-6;
            for i in 0..s.len() {
                let (mut up, mut down) = (s.clone(), s.clone());
                up[i] += h;
                down[i] -= h;
                let fd = (naive_entry(&up, &t, dims, orientation) - naive_entry(&down, &t, dims, orientation)) / (2.0 * h);
                assert!((g[i] - fd).abs() < 1e-4 * (1.0 + fd.abs()), "{orientation:?} entry {i}: autodiff {} vs finite difference {fd}", g[i]);
            }
        }
    }
}
