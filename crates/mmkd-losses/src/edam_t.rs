//! EDAM-T: a learned map from a teacher attention map to the student's map shape.
//!
//! In EDAM-T the student keeps its full-length sequences, so a teacher map `[B, m_t, n_t]`
//! (e.g. 50 language queries for `V<-L`, or 50 language keys for `L<-V`) must become
//! `[B, m_s, n_s]` (500 x 500) before EDAM compares rows. The map is trained with the student
//! and must keep every row a probability distribution, because EDAM reads rows as
//! distributions. The exact form:
//!
//! ```text
//! out = Q · A · K        Q = softmax_row(W_q)  [m_s, m_t]   (only if m_s != m_t, else Q = I)
//!                        K = softmax_row(W_k)  [n_t, n_s]   (only if n_s != n_t, else K = I)
//! ```
//!
//! * Query axis: each output row is `sum_r Q_ir A_r`, a convex combination of teacher rows,
//!   hence a distribution.
//! * Key axis: `K`'s rows sum to 1, so the row sums of `A · K` are
//!   `sum_j sum_k A_ik K_kj = sum_k A_ik = 1`; entries stay non-negative. Source key `k`
//!   hands its probability mass to student keys `j` in the proportions `K_kj`.
//!
//! Only the two logit matrices are parameters (`m_s * m_t + n_t * n_s`; a 50 -> 500 axis is
//! 25,000 parameters), and no bias is possible without breaking the row sums.
//!
//! # Initialisation: interpolation, not uniform
//! A uniform start would hand the student the teacher's *average* row for every query, i.e.
//! no positional information at all. Both matrices start instead as a softened linear
//! interpolation. For a softmax row indexed by `a` in a grid of size `A`, over columns `c` in
//! a grid of size `C` (query axis: `A = m_s`, `C = m_t`; key axis: `A = n_t`, `C = n_s`):
//!
//! ```text
//! p_a   = clamp((a + 0.5) * C / A - 0.5, 0, C - 1)      (half-pixel centres, like
//!                                                         PyTorch align_corners=False)
//! h     = max(1, C / A)                                  (tent half-width in C units)
//! w_ac  = max(0, 1 - |c - p_a| / h),   w~_ac = w_ac / sum_c w_ac
//! W_ac  = ln(w~_ac + floor / C)                          (floor = init_floor, default 0.01)
//! ```
//!
//! so the initial softmax row is exactly `(w~_a + floor / C) / (1 + floor)`: the
//! interpolation weights plus a total of `floor / (1 + floor)` (about 1 %) spread uniformly,
//! which keeps every logit finite and every entry trainable. On the query axis with
//! `m_s > m_t` this is linear interpolation of teacher rows (`h = 1`); with `m_s < m_t` it
//! averages the `~m_t / m_s` rows each output covers. On the key axis with `n_s > n_t` each
//! teacher key spreads its mass over the `~2 n_s / n_t` nearest student keys with tent
//! weights, so the output row is the linear interpolation of the teacher row scaled by
//! `n_t / n_s` (a density, not a copy: mass is conserved); with `n_s < n_t` each teacher key
//! splits its mass between the two nearest student keys (the adjoint of linear interpolation).

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{LossError, check_dims};

/// Shapes of the maps an [`EdamUpsampler`] connects, plus the initialisation floor.
#[derive(Config, Debug)]
pub struct EdamUpsamplerConfig {
    /// Teacher map rows (queries), `m_t`.
    pub teacher_rows: usize,
    /// Teacher map columns (keys), `n_t`.
    pub teacher_cols: usize,
    /// Student map rows (queries), `m_s`.
    pub student_rows: usize,
    /// Student map columns (keys), `n_s`.
    pub student_cols: usize,
    /// Probability mass spread uniformly at initialisation, relative to the interpolation
    /// weights (see the module documentation). Must be positive so every logit is finite.
    #[config(default = 0.01)]
    pub init_floor: f64,
}

/// Learned, row-stochastic resampling of a teacher attention map (module docs give the form).
#[derive(Module, Debug)]
pub struct EdamUpsampler {
    /// `W_q`, `[m_s, m_t]`; `None` when the query axes already agree.
    pub query_logits: Option<Param<Tensor<2>>>,
    /// `W_k`, `[n_t, n_s]`; `None` when the key axes already agree.
    pub key_logits: Option<Param<Tensor<2>>>,
    /// Teacher map shape `[m_t, n_t]` the module accepts.
    pub teacher_rows: usize,
    /// See `teacher_rows`.
    pub teacher_cols: usize,
    /// Student map shape `[m_s, n_s]` the module produces.
    pub student_rows: usize,
    /// See `student_rows`.
    pub student_cols: usize,
}

impl EdamUpsamplerConfig {
    /// Builds the module on `device` (use the training device: the logits are trained).
    pub fn init(&self, device: &Device) -> Result<EdamUpsampler, LossError> {
        let sizes = [self.teacher_rows, self.teacher_cols, self.student_rows, self.student_cols];
        if sizes.contains(&0) {
            return Err(LossError::InvalidConfig(format!("EDAM-T map sizes must be positive, got teacher {}x{}, student {}x{}", sizes[0], sizes[1], sizes[2], sizes[3])));
        }
        if !(self.init_floor.is_finite() && self.init_floor > 0.0) {
            return Err(LossError::InvalidConfig(format!("EDAM-T init_floor must be finite and positive, got {}", self.init_floor)));
        }
        let logits = |rows: usize, cols: usize| {
            let data = TensorData::new(interpolation_logits(rows, cols, self.init_floor), [rows, cols]);
            Param::from_data(data, device)
        };
        Ok(EdamUpsampler {
            query_logits: (self.student_rows != self.teacher_rows).then(|| logits(self.student_rows, self.teacher_rows)),
            key_logits: (self.student_cols != self.teacher_cols).then(|| logits(self.teacher_cols, self.student_cols)),
            teacher_rows: self.teacher_rows,
            teacher_cols: self.teacher_cols,
            student_rows: self.student_rows,
            student_cols: self.student_cols,
        })
    }
}

/// Row-major `[a_len, c_len]` logits: `ln(tent weights normalised per row + floor / c_len)`.
/// Module docs give the formula; row `a` is centred on its proportional position in `c`.
fn interpolation_logits(a_len: usize, c_len: usize, floor: f64) -> Vec<f32> {
    let ratio = c_len as f64 / a_len as f64;
    let half_width = ratio.max(1.0);
    let max_coord = (c_len - 1) as f64;
    let mut out = Vec::with_capacity(a_len * c_len);
    let mut weights = vec![0.0f64; c_len];
    for a in 0..a_len {
        let centre = ((a as f64 + 0.5) * ratio - 0.5).clamp(0.0, max_coord);
        for (c, w) in weights.iter_mut().enumerate() {
            *w = (1.0 - (c as f64 - centre).abs() / half_width).max(0.0);
        }
        // Never zero: the nearest c is within 0.5 of the clamped centre and half_width >= 1.
        let total: f64 = weights.iter().sum();
        out.extend(weights.iter().map(|w| (w / total + floor / c_len as f64).ln() as f32));
    }
    out
}

impl EdamUpsampler {
    /// The row-stochastic query mixing matrix `Q = softmax_row(W_q)`, `[m_s, m_t]`, if any.
    pub fn query_mixing(&self) -> Option<Tensor<2>> {
        self.query_logits.as_ref().map(|w| softmax(w.val(), 1))
    }

    /// The row-stochastic key redistribution matrix `K = softmax_row(W_k)`, `[n_t, n_s]`, if any.
    pub fn key_mixing(&self) -> Option<Tensor<2>> {
        self.key_logits.as_ref().map(|w| softmax(w.val(), 1))
    }

    /// Maps a (detached) teacher map `[B, m_t, n_t]` to `[B, m_s, n_s]`; rows stay
    /// distributions. Identity when both axes already agree.
    pub fn forward(&self, teacher: Tensor<3>) -> Result<Tensor<3>, LossError> {
        let [batch, rows, cols] = teacher.dims();
        check_dims("EDAM-T teacher map", [rows, cols], [self.teacher_rows, self.teacher_cols])?;
        let query = self.query_mixing();
        let key = self.key_mixing();
        // Q·(A·K) and (Q·A)·K are equal; do first whichever axis makes the map smaller.
        let key_first = {
            let (ms, mt, nt, ns) = (self.student_rows, self.teacher_rows, self.teacher_cols, self.student_cols);
            let query_first_cost = ms * mt * nt + ms * nt * ns;
            let key_first_cost = mt * nt * ns + ms * mt * ns;
            key_first_cost < query_first_cost
        };
        let mut map = teacher;
        if key_first {
            map = Self::mix_keys(map, key.as_ref(), batch);
            map = Self::mix_queries(map, query.as_ref(), batch);
        } else {
            map = Self::mix_queries(map, query.as_ref(), batch);
            map = Self::mix_keys(map, key.as_ref(), batch);
        }
        Ok(map)
    }

    /// `Q · A` for every map in the batch: `[m_s, m_t]` x `[B, m_t, n]` -> `[B, m_s, n]`.
    fn mix_queries(map: Tensor<3>, query: Option<&Tensor<2>>, batch: usize) -> Tensor<3> {
        match query {
            None => map,
            Some(q) => {
                let [m_s, m_t] = q.dims();
                q.clone().unsqueeze::<3>().expand([batch, m_s, m_t]).matmul(map)
            }
        }
    }

    /// `A · K`: `[B, m, n_t]` x `[n_t, n_s]` -> `[B, m, n_s]`, as one 2-D matmul.
    fn mix_keys(map: Tensor<3>, key: Option<&Tensor<2>>, batch: usize) -> Tensor<3> {
        match key {
            None => map,
            Some(k) => {
                let [_, rows, n_t] = map.dims();
                let [_, n_s] = k.dims();
                map.reshape([batch * rows, n_t]).matmul(k.clone()).reshape([batch, rows, n_s])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edam::{EdamOrientation, edam_loss};
    use crate::test_util::{autodiff_device, device, row_stochastic, tensor3, uniform, values};
    use burn::optim::{AdamConfig, GradientsParams};

    fn assert_rows_are_distributions(map: Tensor<3>, tol: f64) {
        let [_, _, n] = map.dims();
        let v = values(map);
        for (r, row) in v.chunks(n).enumerate() {
            assert!(row.iter().all(|&x| x >= 0.0), "row {r} has a negative entry");
            let s: f64 = row.iter().sum();
            assert!((s - 1.0).abs() < tol, "row {r} sums to {s}");
        }
    }

    #[test]
    fn shapes_and_rows_for_every_axis_combination() {
        let dev = device();
        // (m_t, n_t) -> (m_s, n_s): rows up, cols up, rows down, cols down, both.
        let cases = [([2, 4], [5, 4]), ([3, 2], [3, 7]), ([6, 3], [4, 3]), ([3, 8], [3, 3]), ([2, 3], [5, 7])];
        for ([mt, nt], [ms, ns]) in cases {
            let up = EdamUpsamplerConfig::new(mt, nt, ms, ns).init(&dev).unwrap();
            assert_eq!(up.query_logits.is_some(), ms != mt);
            assert_eq!(up.key_logits.is_some(), ns != nt);
            let teacher = tensor3(&row_stochastic([3, mt, nt], 5), [3, mt, nt], &dev);
            let out = up.forward(teacher).unwrap();
            assert_eq!(out.dims(), [3, ms, ns]);
            assert_rows_are_distributions(out, 1e-5);
        }
    }

    /// `forward` against the documented form computed by loops in f64,
    /// `out = softmax_row(W_q) . A . softmax_row(W_k)`, with random (not initial) logits on both
    /// axes, in both multiplication orders (upsampling and downsampling shapes).
    #[test]
    fn forward_is_the_explicit_softmax_product() {
        let device = device();
        for (case, (mt, nt, ms, ns)) in [(5usize, 3usize, 8usize, 9usize), (6, 7, 4, 2)].into_iter().enumerate() {
            let mut up = EdamUpsamplerConfig::new(mt, nt, ms, ns).init(&device).unwrap();
            let wq = uniform(ms * mt, -2.0, 2.0, 40 + case as u64);
            let wk = uniform(nt * ns, -2.0, 2.0, 50 + case as u64);
            let param = |v: &[f64], r: usize, c: usize| Param::from_data(TensorData::new(v.iter().map(|&x| x as f32).collect::<Vec<_>>(), [r, c]), &device);
            up.query_logits = Some(param(&wq, ms, mt));
            up.key_logits = Some(param(&wk, nt, ns));
            let b = 2;
            let a = row_stochastic([b, mt, nt], 60 + case as u64);
            let got: Vec<f32> = up.forward(Tensor::<3>::from_data(TensorData::new(a.iter().map(|&x| x as f32).collect::<Vec<_>>(), [b, mt, nt]), &device)).unwrap().into_data().try_to_vec().unwrap();
            // Row softmax of the f32-rounded logits, in f64.
            let softmax_rows = |w: &[f64], cols: usize| -> Vec<f64> {
                w.chunks(cols)
                    .flat_map(|r| {
                        let r: Vec<f64> = r.iter().map(|&x| f64::from(x as f32)).collect();
                        let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        let z: f64 = r.iter().map(|x| (x - m).exp()).sum();
                        r.into_iter().map(move |x| (x - m).exp() / z)
                    })
                    .collect()
            };
            let (q, k) = (softmax_rows(&wq, mt), softmax_rows(&wk, ns));
            for bi in 0..b {
                for i in 0..ms {
                    for j in 0..ns {
                        let mut want = 0.0;
                        for r in 0..mt {
                            for c in 0..nt {
                                want += q[i * mt + r] * a[(bi * mt + r) * nt + c] * k[c * ns + j];
                            }
                        }
                        let have = f64::from(got[(bi * ms + i) * ns + j]);
                        assert!((have - want).abs() < 1e-6, "case {case} [{bi},{i},{j}]: {have} vs {want}");
                    }
                }
            }
        }
    }

    #[test]
    fn identity_when_shapes_agree() {
        let dev = device();
        let up = EdamUpsamplerConfig::new(3, 4, 3, 4).init(&dev).unwrap();
        assert!(up.query_logits.is_none() && up.key_logits.is_none());
        assert_eq!(up.num_params(), 0);
        let raw = row_stochastic([2, 3, 4], 8);
        let out = values(up.forward(tensor3(&raw, [2, 3, 4], &dev)).unwrap());
        for (a, b) in out.iter().zip(&raw) {
            assert_eq!(*a as f32, *b as f32);
        }
    }

    #[test]
    fn init_is_documented_interpolation() {
        let dev = device();
        let floor = 0.01;
        // Query axis 2 -> 4: centres p = -0.25, 0.25, 0.75, 1.25 -> clamped 0, 0.25, 0.75, 1.
        let up = EdamUpsamplerConfig::new(2, 3, 4, 3).init(&dev).unwrap();
        let q = values(up.query_mixing().unwrap());
        let tent = [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]];
        for (i, row) in tent.iter().enumerate() {
            for (r, w) in row.iter().enumerate() {
                let want = (w + floor / 2.0) / (1.0 + floor);
                assert!((q[i * 2 + r] - want).abs() < 1e-6, "Q[{i},{r}]");
            }
        }
        // Key axis 2 -> 4 (upsampling keys): source k centred at q_k = 0.5, 2.5 in student
        // units with half-width 2: weights over j = 0..4 are tent(|j - q_k| / 2).
        let up = EdamUpsamplerConfig::new(3, 2, 3, 4).init(&dev).unwrap();
        let k = values(up.key_mixing().unwrap());
        let raw = [[0.75, 0.75, 0.25, 0.0], [0.0, 0.25, 0.75, 0.75]];
        for (src, row) in raw.iter().enumerate() {
            let total: f64 = row.iter().sum();
            for (j, w) in row.iter().enumerate() {
                let want = (w / total + floor / 4.0) / (1.0 + floor);
                assert!((k[src * 4 + j] - want).abs() < 1e-6, "K[{src},{j}]");
            }
        }
        // Upsampled key axis conserves mass: a one-hot teacher row on key 0 becomes
        // the tent over student keys 0..2.
        let one_hot = tensor3(&[1.0, 0.0, 1.0, 0.0, 1.0, 0.0], [1, 3, 2], &dev);
        let out = values(up.forward(one_hot).unwrap());
        assert!((out[0] - k[0]).abs() < 1e-6 && (out[3] - k[3]).abs() < 1e-6);
    }

    #[test]
    fn rejects_bad_config_and_shapes() {
        let dev = device();
        assert!(EdamUpsamplerConfig::new(0, 3, 4, 3).init(&dev).is_err());
        assert!(EdamUpsamplerConfig::new(2, 3, 4, 3).with_init_floor(0.0).init(&dev).is_err());
        let up = EdamUpsamplerConfig::new(2, 3, 4, 3).init(&dev).unwrap();
        let wrong = tensor3(&row_stochastic([1, 3, 3], 1), [1, 3, 3], &dev);
        assert!(matches!(up.forward(wrong), Err(LossError::ShapeMismatch { .. })));
    }

    /// Trained through EDAM with Adam, the logits move, the teacher input gets no gradient,
    /// and the output rows are still distributions afterwards.
    #[test]
    fn stays_row_stochastic_after_training_steps() {
        let dev = autodiff_device();
        let mut up = EdamUpsamplerConfig::new(2, 3, 4, 5).init(&dev).unwrap();
        let before = values(up.query_logits.as_ref().unwrap().val());
        let mut optim = AdamConfig::new().with_epsilon(1e-8).init();
        let student = tensor3(&row_stochastic([2, 4, 5], 30), [2, 4, 5], &dev);
        let raw_teacher = row_stochastic([2, 2, 3], 31);
        for _ in 0..5 {
            let teacher = tensor3(&raw_teacher, [2, 2, 3], &dev).detach();
            let mapped = up.forward(teacher.clone()).unwrap();
            let loss = edam_loss(&[(student.clone(), mapped)], EdamOrientation::Conventional).unwrap();
            let grads = loss.backward();
            assert!(teacher.grad(&grads).is_none());
            let grads = GradientsParams::from_grads(grads, &up);
            up = optim.step(0.1, up, grads);
        }
        let after = values(up.query_logits.as_ref().unwrap().val());
        assert!(before.iter().zip(&after).any(|(a, b)| (a - b).abs() > 1e-3));
        let fresh = tensor3(&row_stochastic([3, 2, 3], 40), [3, 2, 3], &dev);
        assert_rows_are_distributions(up.forward(fresh).unwrap(), 1e-5);
    }
}
