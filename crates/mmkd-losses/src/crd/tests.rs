//! Tests of the CRD pieces against plain f64 loops.

use super::*;
use crate::test_util::{autodiff_device, device, tensor2, tensor3, uniform, unit_rows, values};

/// `ContrastLoss` in f64: rows of `probs` are `[positive, negatives...]`.
fn naive_nce(probs: &[f64], cols: usize, n_data: usize) -> f64 {
    let m = (cols - 1) as f64;
    let pn = 1.0 / n_data as f64;
    let batch = probs.len() / cols;
    let mut acc = 0.0;
    for row in probs.chunks(cols) {
        acc += (row[0] / (row[0] + m * pn + NCE_EPS)).ln();
        for &p in &row[1..] {
            acc += (m * pn / (p + m * pn + NCE_EPS)).ln();
        }
    }
    -acc / batch as f64
}

/// One direction of the bank loss in f64; returns (loss, Z used).
fn naive_direction(v: &[f64], bank: &[f64], contrast: &[usize], dim: usize, temperature: f64, z: Option<f64>, n_data: usize) -> (f64, f64) {
    let batch = v.len() / dim;
    let cols = contrast.len() / batch;
    let mut out = Vec::with_capacity(contrast.len());
    for b in 0..batch {
        for c in 0..cols {
            let row = contrast[b * cols + c];
            let dot: f64 = (0..dim).map(|d| v[b * dim + d] * bank[row * dim + d]).sum();
            out.push((dot / temperature).exp());
        }
    }
    let z = z.unwrap_or_else(|| out.iter().sum::<f64>() / out.len() as f64 * n_data as f64);
    let probs: Vec<f64> = out.iter().map(|o| o / z).collect();
    (naive_nce(&probs, cols, n_data), z)
}

/// The symmetric in-batch InfoNCE in f64.
fn naive_in_batch(s: &[f64], t: &[f64], dims: [usize; 3], temperature: f64) -> f64 {
    let [g, b, d] = dims;
    let logit = |gi: usize, i: usize, j: usize| -> f64 { (0..d).map(|k| s[(gi * b + i) * d + k] * t[(gi * b + j) * d + k]).sum::<f64>() / temperature };
    let mut acc = 0.0;
    for gi in 0..g {
        for i in 0..b {
            let row_lse = (0..b).map(|j| logit(gi, i, j).exp()).sum::<f64>().ln();
            let col_lse = (0..b).map(|j| logit(gi, j, i).exp()).sum::<f64>().ln();
            acc += (logit(gi, i, i) - row_lse) + (logit(gi, i, i) - col_lse);
        }
    }
    -acc / (g * b) as f64
}

fn small_config() -> CrdMemoryBankConfig {
    CrdMemoryBankConfig::new(6).with_dim(4).with_nce_k(3).with_seed(11)
}

#[test]
fn nce_loss_matches_naive_loop() {
    let dev = device();
    let probs = uniform(12, 1e-4, 0.5, 3);
    let got = values(nce_contrast_loss(tensor2(&probs, [3, 4], &dev), 10).unwrap())[0];
    let want = naive_nce(&probs.iter().map(|&x| f64::from(x as f32)).collect::<Vec<_>>(), 4, 10);
    assert!((got - want).abs() < 1e-4 * want.abs().max(1.0), "{got} vs {want}");
}

#[test]
fn nce_loss_rejects_rows_without_negatives() {
    let dev = device();
    let probs = tensor2(&[0.1, 0.2], [2, 1], &dev);
    assert!(matches!(nce_contrast_loss(probs, 10), Err(LossError::ShapeMismatch { .. })));
}

#[test]
fn embed_outputs_unit_vectors_for_any_rank() {
    let dev = device();
    let embed = CrdEmbedConfig::new(5).init(&dev).unwrap();
    let x2 = tensor2(&uniform(15, -1.0, 1.0, 1), [3, 5], &dev);
    let y2 = embed.forward(x2).unwrap();
    assert_eq!(y2.dims(), [3, CRD_FEAT_DIM]);
    let x3 = tensor3(&uniform(30, -1.0, 1.0, 2), [2, 3, 5], &dev);
    let y3 = embed.forward(x3).unwrap();
    assert_eq!(y3.dims(), [2, 3, CRD_FEAT_DIM]);
    for row in values(y3).chunks(CRD_FEAT_DIM) {
        let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
    let wrong = tensor2(&uniform(12, -1.0, 1.0, 1), [3, 4], &dev);
    assert!(matches!(embed.forward(wrong), Err(LossError::ShapeMismatch { .. })));
    assert!(CrdEmbedConfig::new(0).init(&dev).is_err());
}

#[test]
fn l2_normalize_survives_zero_vectors() {
    let dev = device();
    let out = values(l2_normalize(tensor2(&[0.0, 0.0, 3.0, 4.0], [2, 2], &dev)));
    assert_eq!(out[..2], [0.0, 0.0]);
    assert!((out[2] - 0.6).abs() < 1e-6 && (out[3] - 0.8).abs() < 1e-6);
}

#[test]
fn bank_init_is_uniform_in_stdv_range() {
    let dev = device();
    let bank = CrdMemoryBank::new(&CrdMemoryBankConfig::new(50).with_dim(12), &dev).unwrap();
    let stdv = 1.0 / (12.0f64 / 3.0).sqrt();
    for v in [values(bank.student_bank()), values(bank.teacher_bank())] {
        assert_eq!(v.len(), 600);
        assert!(v.iter().all(|x| x.abs() <= stdv + 1e-6));
        // Mean squared value of U(-s, s) is s^2 / 3; 600 draws land well within 20 %.
        let ms = v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64;
        assert!((ms / (stdv * stdv / 3.0) - 1.0).abs() < 0.2, "{ms}");
    }
    assert_ne!(values(bank.student_bank()), values(bank.teacher_bank()));
    assert_eq!(bank.normalizers(), (None, None));
}

#[test]
fn negatives_exclude_the_positive_stay_in_range_and_follow_the_seed() {
    let dev = device();
    let config = CrdMemoryBankConfig::new(7).with_dim(2);
    let mut bank = CrdMemoryBank::new(&config, &dev).unwrap();
    // The original's 16,384 is capped at n_data - 1.
    assert_eq!(bank.n_negatives(), 6);
    let positives = [0, 3, 6, 3];
    let mut counts = [0usize; 7];
    let mut first = Vec::new();
    for draw in 0..200 {
        let contrast = bank.sample_contrast_indices(&positives).unwrap();
        assert_eq!(contrast.len(), positives.len() * 7);
        for (row, &positive) in contrast.chunks(7).zip(&positives) {
            assert_eq!(row[0], positive);
            for &negative in &row[1..] {
                assert!(negative < 7 && negative != positive);
                if positive == 0 {
                    counts[negative] += 1;
                }
            }
        }
        if draw == 0 {
            first = contrast;
        }
    }
    // Every other index is drawn for positive 0: 1200 draws over 6 indices, 200 expected each.
    assert_eq!(counts[0], 0);
    assert!(counts[1..].iter().all(|&c| c > 120), "{counts:?}");
    // Same seed, same first draw; another seed, another draw.
    let mut again = CrdMemoryBank::new(&config, &dev).unwrap();
    assert_eq!(again.sample_contrast_indices(&positives).unwrap(), first);
    let mut other = CrdMemoryBank::new(&config.clone().with_seed(1), &dev).unwrap();
    assert_ne!(other.sample_contrast_indices(&positives).unwrap(), first);
    assert_eq!(bank.sample_contrast_indices(&[7]).unwrap_err(), LossError::IndexOutOfRange { index: 7, n_data: 7 });
}

/// Loss value, Z and the bank update against f64 loops, over two batches (Z set, then fixed),
/// with the original momentum and an asymmetric one (0.5 cannot tell `m` from `1 - m`).
#[test]
fn bank_loss_z_and_update_match_naive_loops() {
    for momentum in [CRD_MOMENTUM, 0.8] {
        check_bank_against_naive(small_config().with_momentum(momentum));
    }
}

fn check_bank_against_naive(config: CrdMemoryBankConfig) {
    let dev = device();
    let (n, dim, t, m) = (config.n_data, config.dim, config.temperature, config.momentum);
    let mut bank = CrdMemoryBank::new(&config, &dev).unwrap();
    let mut s_bank = values(bank.student_bank());
    let mut t_bank = values(bank.teacher_bank());
    let mut z = (None, None);
    for step in 0..2u64 {
        let s = unit_rows(2, dim, 100 + step);
        let te = unit_rows(2, dim, 200 + step);
        let contrast = [1usize, 0, 2, 5, 4, 2, 1, 3];
        let loss = bank.loss_with_contrast_indices(tensor2(&s, [2, dim], &dev), tensor2(&te, [2, dim], &dev), &contrast).unwrap();
        let (l1, z1) = naive_direction(&s, &t_bank, &contrast, dim, t, z.0, n);
        let (l2, z2) = naive_direction(&te, &s_bank, &contrast, dim, t, z.1, n);
        let got = values(loss)[0];
        assert!((got - (l1 + l2)).abs() < 1e-4 * (l1 + l2).abs(), "step {step}: {got} vs {}", l1 + l2);
        let (gz1, gz2) = bank.normalizers();
        let (gz1, gz2) = (gz1.unwrap(), gz2.unwrap());
        assert!((gz1 / z1 - 1.0).abs() < 1e-5 && (gz2 / z2 - 1.0).abs() < 1e-5);
        if step == 0 {
            z = (Some(gz1), Some(gz2));
        } else {
            // Fixed after the first batch.
            assert_eq!((Some(gz1), Some(gz2)), z);
        }
        // Expected update: rows 1 and 4 become normalize(m old + (1 - m) new); others stay.
        for (bank_vals, emb) in [(&mut s_bank, &s), (&mut t_bank, &te)] {
            for (b, row) in [1usize, 4].into_iter().enumerate() {
                let mixed: Vec<f64> = (0..dim).map(|d| m * bank_vals[row * dim + d] + (1.0 - m) * emb[b * dim + d]).collect();
                let norm = mixed.iter().map(|x| x * x).sum::<f64>().sqrt();
                for d in 0..dim {
                    bank_vals[row * dim + d] = mixed[d] / norm;
                }
            }
        }
        for (got, want) in [(values(bank.student_bank()), &s_bank), (values(bank.teacher_bank()), &t_bank)] {
            for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
                assert!((g - w).abs() < 1e-5, "step {step} bank entry {i}: {g} vs {w}");
            }
        }
    }
}

#[test]
fn repeated_index_in_a_batch_keeps_the_last_occurrence() {
    let dev = device();
    let config = small_config();
    let dim = config.dim;
    let mut bank = CrdMemoryBank::new(&config, &dev).unwrap();
    let old = values(bank.student_bank());
    let s = unit_rows(2, dim, 5);
    let te = unit_rows(2, dim, 6);
    bank.loss(tensor2(&s, [2, dim], &dev), tensor2(&te, [2, dim], &dev), &[2, 2]).unwrap();
    let mixed: Vec<f64> = (0..dim).map(|d| 0.5 * old[2 * dim + d] + 0.5 * s[dim + d]).collect();
    let norm = mixed.iter().map(|x| x * x).sum::<f64>().sqrt();
    let got = values(bank.student_bank());
    for d in 0..dim {
        assert!((got[2 * dim + d] - mixed[d] / norm).abs() < 1e-5);
    }
}

/// Both embeddings get gradients equal to central differences of the f64 loss (Z fixed, as
/// it is after the first batch); the banks are plain values and never join the graph.
#[test]
fn bank_gradients_reach_both_embeddings_and_match_finite_differences() {
    let dev = autodiff_device();
    let config = small_config();
    let (n, dim, t) = (config.n_data, config.dim, config.temperature);
    let mut bank = CrdMemoryBank::new(&config, &dev).unwrap();
    // First batch fixes Z.
    bank.loss(tensor2(&unit_rows(2, dim, 1), [2, dim], &dev), tensor2(&unit_rows(2, dim, 2), [2, dim], &dev), &[0, 5]).unwrap();
    let (z1, z2) = bank.normalizers();
    let s_bank = values(bank.student_bank());
    let t_bank = values(bank.teacher_bank());
    assert!(!bank.student_bank().is_autodiff() && !bank.teacher_bank().is_autodiff());

    let s = unit_rows(2, dim, 3);
    let te = unit_rows(2, dim, 4);
    let contrast = [3usize, 1, 5, 0, 2, 2, 4, 1];
    let student = tensor2(&s, [2, dim], &dev).require_grad();
    let teacher = tensor2(&te, [2, dim], &dev).require_grad();
    let loss = bank.loss_with_contrast_indices(student.clone(), teacher.clone(), &contrast).unwrap();
    let grads = loss.backward();
    let gs = values(student.grad(&grads).expect("student embedding gets a gradient"));
    let gt = values(teacher.grad(&grads).expect("teacher embedding head trains too"));

    let h = 1e-6;
    for (x, g, bank_vals, z) in [(&s, &gs, &t_bank, z1), (&te, &gt, &s_bank, z2)] {
        for i in 0..x.len() {
            let (mut up, mut down) = (x.clone(), x.clone());
            up[i] += h;
            down[i] -= h;
            let f = |v: &[f64]| naive_direction(v, bank_vals, &contrast, dim, t, z, n).0;
            let fd = (f(&up) - f(&down)) / (2.0 * h);
            assert!((g[i] - fd).abs() < 2e-3 * (1.0 + fd.abs()), "entry {i}: {} vs {fd}", g[i]);
        }
    }
}

#[test]
fn state_round_trip_resumes_identically() {
    let dev = device();
    let config = small_config();
    let dim = config.dim;
    let mut bank = CrdMemoryBank::new(&config, &dev).unwrap();
    let batch = |seed: u64| (tensor2(&unit_rows(3, dim, seed), [3, dim], &dev), tensor2(&unit_rows(3, dim, seed + 1), [3, dim], &dev));
    let (s, t) = batch(10);
    bank.loss(s, t, &[0, 1, 2]).unwrap();
    let state = bank.to_state().unwrap();
    let mut restored = CrdMemoryBank::from_state(state.clone(), &dev).unwrap();
    assert_eq!(restored.to_state().unwrap(), state);
    let (s, t) = batch(20);
    let a = values(bank.loss(s.clone(), t.clone(), &[3, 4, 5]).unwrap());
    let b = values(restored.loss(s, t, &[3, 4, 5]).unwrap());
    assert_eq!(a, b);
    assert_eq!(bank.to_state().unwrap(), restored.to_state().unwrap());

    let mut broken = state;
    broken.student_bank.pop();
    assert!(matches!(CrdMemoryBank::from_state(broken, &dev), Err(LossError::ShapeMismatch { .. })));
}

#[test]
fn bank_rejects_bad_input_without_touching_state() {
    let dev = device();
    let config = small_config();
    let dim = config.dim;
    let mut bank = CrdMemoryBank::new(&config, &dev).unwrap();
    let before = bank.to_state().unwrap();
    let s = tensor2(&unit_rows(2, dim, 1), [2, dim], &dev);
    let t = tensor2(&unit_rows(2, dim, 2), [2, dim], &dev);
    assert!(matches!(bank.loss(s.clone(), t.clone(), &[0, 6]), Err(LossError::IndexOutOfRange { index: 6, n_data: 6 })));
    assert!(matches!(bank.loss(s.clone(), t.clone(), &[0]), Err(LossError::ShapeMismatch { .. })));
    let wide = tensor2(&unit_rows(2, dim + 1, 3), [2, dim + 1], &dev);
    assert!(matches!(bank.loss(wide, t, &[0, 1]), Err(LossError::ShapeMismatch { .. })));
    assert_eq!(bank.to_state().unwrap(), before);
    for bad in [CrdMemoryBankConfig::new(1), small_config().with_temperature(0.0), small_config().with_momentum(1.5), small_config().with_dim(0)] {
        assert!(matches!(CrdMemoryBank::new(&bad, &dev), Err(LossError::InvalidConfig(_))));
    }
}

#[test]
fn in_batch_loss_matches_naive_loop() {
    let dev = device();
    let dims = [2, 3, 4];
    let s = unit_rows(6, 4, 7);
    let t = unit_rows(6, 4, 8);
    let got = values(crd_in_batch_loss(tensor3(&s, dims, &dev), tensor3(&t, dims, &dev), CRD_TEMPERATURE).unwrap())[0];
    let want = naive_in_batch(&s, &t, dims, CRD_TEMPERATURE);
    assert!((got - want).abs() < 1e-4 * want.abs().max(1.0), "{got} vs {want}");
}

#[test]
fn in_batch_loss_prefers_matched_pairs_and_handles_a_batch_of_one() {
    let dev = device();
    let dims = [3, 4, 8];
    let s = unit_rows(12, 8, 9);
    let matched = values(crd_in_batch_loss(tensor3(&s, dims, &dev), tensor3(&s, dims, &dev), 0.07).unwrap())[0];
    let other = unit_rows(12, 8, 10);
    let unmatched = values(crd_in_batch_loss(tensor3(&s, dims, &dev), tensor3(&other, dims, &dev), 0.07).unwrap())[0];
    assert!(matched < unmatched, "{matched} vs {unmatched}");
    let one = values(crd_in_batch_loss(tensor3(&s[..8], [1, 1, 8], &dev), tensor3(&other[..8], [1, 1, 8], &dev), 0.07).unwrap())[0];
    assert!(one.abs() < 1e-6);
    assert!(crd_in_batch_loss(tensor3(&s, dims, &dev), tensor3(&s, [3, 8, 4], &dev), 0.07).is_err());
}

#[test]
fn in_batch_gradient_matches_finite_differences() {
    let dev = autodiff_device();
    let dims = [2, 3, 4];
    let s = unit_rows(6, 4, 11);
    let t = unit_rows(6, 4, 12);
    let student = tensor3(&s, dims, &dev).require_grad();
    let teacher = tensor3(&t, dims, &dev).require_grad();
    let grads = crd_in_batch_loss(student.clone(), teacher.clone(), CRD_TEMPERATURE).unwrap().backward();
    let gs = values(student.grad(&grads).expect("student gets a gradient"));
    assert!(teacher.grad(&grads).is_some());
    let h = 1e-6;
    for i in 0..s.len() {
        let (mut up, mut down) = (s.clone(), s.clone());
        up[i] += h;
        down[i] -= h;
        let fd = (naive_in_batch(&up, &t, dims, CRD_TEMPERATURE) - naive_in_batch(&down, &t, dims, CRD_TEMPERATURE)) / (2.0 * h);
        assert!((gs[i] - fd).abs() < 2e-3 * (1.0 + fd.abs()), "entry {i}: {} vs {fd}", gs[i]);
    }
}

/// MOSEI-sized bank step (16,326 rows, K = 16,325, batch 64), to check the arithmetic holds at
/// scale: finite loss, Z set, gradients finite. Slow-ish on 2 cores, so opt-in:
/// `cargo test -p mmkd-losses -- --ignored`.
#[test]
#[ignore = "full-size check, run on demand"]
fn mosei_sized_bank_step_is_finite() {
    let dev = autodiff_device();
    let config = CrdMemoryBankConfig::new(16_326);
    let mut bank = CrdMemoryBank::new(&config, &dev).unwrap();
    assert_eq!(bank.n_negatives(), 16_325);
    for step in 0..3u64 {
        let student = tensor2(&unit_rows(64, 128, 2 * step), [64, 128], &dev).require_grad();
        let teacher = tensor2(&unit_rows(64, 128, 2 * step + 1), [64, 128], &dev).require_grad();
        let indices: Vec<usize> = (0..64).map(|i| (i * 251 + step as usize * 64) % 16_326).collect();
        let start = std::time::Instant::now();
        let loss = bank.loss(student.clone(), teacher.clone(), &indices).unwrap();
        let grads = loss.backward();
        let value = values(loss)[0];
        let g = values(student.grad(&grads).unwrap());
        eprintln!("step {step}: loss {value:.4}, {:?}", start.elapsed());
        assert!(value.is_finite() && g.iter().all(|x| x.is_finite()));
    }
    let (z1, z2) = bank.normalizers();
    eprintln!("Z = {z1:?}, {z2:?}");
    assert!(z1.is_some_and(f64::is_finite) && z2.is_some_and(f64::is_finite));
}
