//! The fused op at sizes where the kernel runs on rayon (`batch * heads * lq * lk >=
//! PARALLEL_MIN_SCORES`), through the Burn op on `Autodiff<Flex>` (and plain `Flex` for the
//! values), against a naive f64 computation written here from the textbook formulas:
//!
//! - scores `s = scale * q.k`, forbidden keys left out of the softmax (probability 0, no
//!   gradient); a row whose every key is forbidden is uniform over all `Lk` keys (the kernel's
//!   and `docs/DECISIONS.md`'s specification: the masked scores are all -1e9, as on the unfused
//!   path) and passes no gradient to its scores;
//! - `O = (P * keep / (1 - p)) V` (without dropout, `keep / (1 - p)` = 1);
//! - the map `mean_h softmax(s / t)`, before dropout;
//! - backward: `dP = dO V^T * keep / (1 - p)`, `dS = P * (dP - rowsum(dP * P))`, plus the map's
//!   `(1 / t) P_t * (dM / H - rowsum(P_t * dM / H))`; `dQ = scale dS K`, `dK = scale dS^T Q`,
//!   `dV = (P * keep / (1 - p))^T dO`.
//!
//! Inputs come from a local xorshift generator, not from Burn's process-wide one, so these tests
//! neither race other tests nor depend on their order. Every gradient is taken of
//! `sum(O * R) (+ sum(M * R_m))` for fixed random `R`, `R_m`, so every element matters.
//!
//! Tolerance, per element: `|fused - reference| <= tol * max(1, |reference|)`, with
//! `VALUE_TOL` for outputs and maps and `GRAD_TOL` for gradients.

use burn::prelude::*;
use burn::tensor::{Bool, TensorData};

use super::kernel::{PARALLEL_MIN_SCORES, pseudo_random};
use super::{AttentionDropout, fused_attention, fused_attention_with_map};

/// Per-element tolerance of outputs and maps (relative above 1, absolute below). The worst
/// error measured was 6.5e-7 (AVX2 + FMA code, x86-64).
const VALUE_TOL: f64 = 5e-6;
/// Per-element tolerance of gradients (relative above 1, absolute below). The worst error
/// measured was 2.7e-6 (dK with dropout).
const GRAD_TOL: f64 = 2e-5;

/// Sizes of the parallel cases: 16 * 4 * 32 * 40 = 81,920 scores.
const B: usize = 16;
const H: usize = 4;
const LQ: usize = 32;
const LK: usize = 40;
const DH: usize = 8;

/// One fused call's inputs: shapes, data, mask (true = forbidden, `[mask_batch, 1, mask_rows,
/// Lk]`), dropout (keep mask `[B, H, Lq, Lk]`, rate) and the map's temperature if one is asked.
struct Case {
    b: usize,
    h: usize,
    lq: usize,
    lk: usize,
    dh: usize,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// The upstream gradient of the output, `[B, Lq, H, dh]`.
    g_out: Vec<f32>,
    /// The upstream gradient of the map, `[B, Lq, Lk]` (used when `temperature` is set).
    g_map: Vec<f32>,
    mask: Option<(Vec<bool>, [usize; 4])>,
    dropout: Option<(Vec<bool>, f64)>,
    temperature: Option<f64>,
}

impl Case {
    fn new(b: usize, h: usize, lq: usize, lk: usize, dh: usize, seed: u64) -> Case {
        Case {
            b,
            h,
            lq,
            lk,
            dh,
            q: pseudo_random(b * lq * h * dh, seed),
            k: pseudo_random(b * lk * h * dh, seed + 1),
            v: pseudo_random(b * lk * h * dh, seed + 2),
            g_out: pseudo_random(b * lq * h * dh, seed + 3),
            g_map: pseudo_random(b * lq * lk, seed + 4),
            mask: None,
            dropout: None,
            temperature: None,
        }
    }

    /// The standard parallel-sized case.
    fn parallel(seed: u64) -> Case {
        let c = Case::new(B, H, LQ, LK, DH, seed);
        assert!(c.b * c.h * c.lq * c.lk >= PARALLEL_MIN_SCORES, "the case must take the kernel's parallel path");
        c
    }

    fn scale(&self) -> f64 {
        1.0 / (self.dh as f64).sqrt()
    }

    /// Whether key `j` is forbidden for query `i` of sample `b` (broadcast like the op does).
    fn masked(&self, b: usize, i: usize, j: usize) -> bool {
        self.mask.as_ref().is_some_and(|(m, [mb, _, mq, lk])| m[((if *mb == 1 { 0 } else { b }) * mq + if *mq == 1 { 0 } else { i }) * lk + j])
    }

    /// `keep / (1 - p)` of one probability (1 without dropout).
    fn keep_factor(&self, b: usize, h: usize, i: usize, j: usize) -> f64 {
        match &self.dropout {
            None => 1.0,
            Some((keep, rate)) => {
                if keep[((b * self.h + h) * self.lq + i) * self.lk + j] {
                    1.0 / (1.0 - rate)
                } else {
                    0.0
                }
            }
        }
    }

    /// Rows `(b, i)` whose every key is forbidden.
    fn fully_masked_rows(&self) -> Vec<(usize, usize)> {
        (0..self.b).flat_map(|b| (0..self.lq).map(move |i| (b, i))).filter(|&(b, i)| (0..self.lk).all(|j| self.masked(b, i, j))).collect()
    }
}

/// What the naive computation gives: output, map (empty without one), dQ, dK, dV.
struct Reference {
    out: Vec<f64>,
    map: Vec<f64>,
    dq: Vec<f64>,
    dk: Vec<f64>,
    dv: Vec<f64>,
}

/// Softmax of `x` over the entries `allowed` marks (0 elsewhere); uniform over every entry when
/// none is allowed.
fn masked_softmax(x: &[f64], allowed: &[bool]) -> Vec<f64> {
    if !allowed.iter().any(|&a| a) {
        return vec![1.0 / x.len() as f64; x.len()];
    }
    let max = x.iter().zip(allowed).filter(|(_, a)| **a).map(|(s, _)| *s).fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().zip(allowed).map(|(s, &a)| if a { (s - max).exp() } else { 0.0 }).collect();
    let z: f64 = e.iter().sum();
    e.into_iter().map(|x| x / z).collect()
}

/// The naive computation, index by index as the formulas are written.
#[allow(clippy::needless_range_loop)]
fn reference(c: &Case) -> Reference {
    let (b_n, h_n, lq, lk, dh) = (c.b, c.h, c.lq, c.lk, c.dh);
    let at = |l: usize, b: usize, t: usize, h: usize| ((b * l + t) * h_n + h) * dh;
    let scale = c.scale();
    let mut r =
        Reference { out: vec![0.0; c.q.len()], map: vec![0.0; if c.temperature.is_some() { b_n * lq * lk } else { 0 }], dq: vec![0.0; c.q.len()], dk: vec![0.0; c.k.len()], dv: vec![0.0; c.v.len()] };
    for b in 0..b_n {
        for h in 0..h_n {
            for i in 0..lq {
                let qi = &c.q[at(lq, b, i, h)..at(lq, b, i, h) + dh];
                let gi = &c.g_out[at(lq, b, i, h)..at(lq, b, i, h) + dh];
                let allowed: Vec<bool> = (0..lk).map(|j| !c.masked(b, i, j)).collect();
                let s: Vec<f64> = (0..lk)
                    .map(|j| {
                        let kj = &c.k[at(lk, b, j, h)..at(lk, b, j, h) + dh];
                        scale * qi.iter().zip(kj).map(|(&x, &y)| x as f64 * y as f64).sum::<f64>()
                    })
                    .collect();
                let p = masked_softmax(&s, &allowed);
                let w: Vec<f64> = (0..lk).map(|j| p[j] * c.keep_factor(b, h, i, j)).collect();
                for j in 0..lk {
                    let vj = &c.v[at(lk, b, j, h)..at(lk, b, j, h) + dh];
                    for d in 0..dh {
                        r.out[at(lq, b, i, h) + d] += w[j] * vj[d] as f64;
                        r.dv[at(lk, b, j, h) + d] += w[j] * gi[d] as f64;
                    }
                }
                // dP through the dropout, then the softmax's backward.
                let dp: Vec<f64> = (0..lk)
                    .map(|j| {
                        let vj = &c.v[at(lk, b, j, h)..at(lk, b, j, h) + dh];
                        gi.iter().zip(vj).map(|(&g, &v)| g as f64 * v as f64).sum::<f64>() * c.keep_factor(b, h, i, j)
                    })
                    .collect();
                let row: f64 = (0..lk).map(|j| p[j] * dp[j]).sum();
                let mut ds: Vec<f64> = (0..lk).map(|j| p[j] * (dp[j] - row)).collect();
                if let Some(t) = c.temperature {
                    let st: Vec<f64> = s.iter().map(|x| x / t).collect();
                    let pt = masked_softmax(&st, &allowed);
                    let gm: Vec<f64> = (0..lk).map(|j| c.g_map[(b * lq + i) * lk + j] as f64 / h_n as f64).collect();
                    let row_t: f64 = (0..lk).map(|j| pt[j] * gm[j]).sum();
                    for j in 0..lk {
                        r.map[(b * lq + i) * lk + j] += pt[j] / h_n as f64;
                        ds[j] += pt[j] * (gm[j] - row_t) / t;
                    }
                }
                for j in 0..lk {
                    // No gradient through a forbidden score (in a fully masked row: none at all).
                    if !allowed[j] {
                        continue;
                    }
                    for d in 0..dh {
                        r.dq[at(lq, b, i, h) + d] += scale * ds[j] * c.k[at(lk, b, j, h) + d] as f64;
                        r.dk[at(lk, b, j, h) + d] += scale * ds[j] * qi[d] as f64;
                    }
                }
            }
        }
    }
    r
}

/// What the fused op gives on `device`: output, map (empty without one), and, on an autodiff
/// device, dQ, dK, dV of `sum(O * g_out) + sum(M * g_map)`.
struct Fused {
    out: Vec<f32>,
    map: Vec<f32>,
    grads: Option<[Vec<f32>; 3]>,
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

fn fused(c: &Case, device: &Device) -> Fused {
    let tensor = |x: &[f32], shape: [usize; 4]| Tensor::<4>::from_data(TensorData::new(x.to_vec(), shape), device);
    let autodiff = device.is_autodiff();
    let track = |t: Tensor<4>| if autodiff { t.require_grad() } else { t };
    let q = track(tensor(&c.q, [c.b, c.lq, c.h, c.dh]));
    let k = track(tensor(&c.k, [c.b, c.lk, c.h, c.dh]));
    let v = track(tensor(&c.v, [c.b, c.lk, c.h, c.dh]));
    let mask = c.mask.as_ref().map(|(m, shape)| Tensor::<4, Bool>::from_data(TensorData::new(m.clone(), *shape), device));
    let dropout = c.dropout.as_ref().map(|(keep, rate)| AttentionDropout { rate: *rate, keep: Tensor::<4, Bool>::from_data(TensorData::new(keep.clone(), [c.b, c.h, c.lq, c.lk]), device) });
    let (out, map) = match c.temperature {
        None => (fused_attention(q.clone(), k.clone(), v.clone(), mask, dropout, c.scale()), None),
        Some(t) => {
            let (out, map) = fused_attention_with_map(q.clone(), k.clone(), v.clone(), mask, dropout, c.scale(), t);
            (out, Some(map))
        }
    };
    let grads = autodiff.then(|| {
        let mut loss = (out.clone() * tensor(&c.g_out, [c.b, c.lq, c.h, c.dh])).sum();
        if let Some(map) = &map {
            loss = loss + (map.clone() * Tensor::<3>::from_data(TensorData::new(c.g_map.clone(), [c.b, c.lq, c.lk]), device)).sum();
        }
        let grads = loss.backward();
        let g = |x: &Tensor<4>| values(x.grad(&grads).expect("gradient"));
        [g(&q), g(&k), g(&v)]
    });
    Fused { out: values(out), map: map.map(values).unwrap_or_default(), grads }
}

/// `|got - want| <= tol * max(1, |want|)` for every element, and every element finite.
fn assert_close(name: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite(), "{name}[{i}]: {g} is not finite");
        assert!((g as f64 - w).abs() <= tol * w.abs().max(1.0), "{name}[{i}]: fused {g} vs reference {w}");
    }
}

/// The fused op on `Autodiff<Flex>` (values and gradients) and on plain `Flex` (values)
/// against the reference; returns the autodiff run.
fn check(name: &str, c: &Case) -> Fused {
    let want = reference(c);
    let plain = fused(c, &Device::flex());
    assert_close(&format!("{name}: output (flex)"), &plain.out, &want.out, VALUE_TOL);
    assert_close(&format!("{name}: map (flex)"), &plain.map, &want.map, VALUE_TOL);
    let run = fused(c, &Device::flex().autodiff());
    assert_close(&format!("{name}: output"), &run.out, &want.out, VALUE_TOL);
    assert_close(&format!("{name}: map"), &run.map, &want.map, VALUE_TOL);
    let [dq, dk, dv] = run.grads.as_ref().expect("autodiff gradients");
    assert_close(&format!("{name}: dQ"), dq, &want.dq, GRAD_TOL);
    assert_close(&format!("{name}: dK"), dk, &want.dk, GRAD_TOL);
    assert_close(&format!("{name}: dV"), dv, &want.dv, GRAD_TOL);
    run
}

/// Key padding `[B, 1, 1, Lk]`: clip `b` sees its first `lengths[b]` keys.
fn padding(lengths: &[usize], lk: usize) -> (Vec<bool>, [usize; 4]) {
    (lengths.iter().flat_map(|&len| (0..lk).map(move |j| j >= len)).collect(), [lengths.len(), 1, 1, lk])
}

/// MulT's future mask (`masks::future_mask`), `[1, 1, Lq, Lk]`.
fn causal(lq: usize, lk: usize) -> (Vec<bool>, [usize; 4]) {
    let m = super::super::masks::future_mask(lq, lk, &Device::flex()).into_data().try_into_vec::<bool>().unwrap();
    (m, [1, 1, lq, lk])
}

/// Lengths 1..=Lk, all different where B <= Lk.
fn varied_lengths(b: usize, lk: usize) -> Vec<usize> {
    (0..b).map(|i| 1 + (i * 7) % lk).collect()
}

/// A keep mask with about `rate` of the entries dropped.
fn keep_mask(n: usize, rate: f64, seed: u64) -> Vec<bool> {
    pseudo_random(n, seed).into_iter().map(|x| (x as f64 + 2.0) / 4.0 >= rate).collect()
}

#[test]
fn parallel_plain_op_matches_naive_f64() {
    check("plain", &Case::parallel(100));
}

#[test]
fn parallel_key_padding_matches_naive_f64() {
    let mut c = Case::parallel(200);
    let lengths = varied_lengths(c.b, c.lk);
    assert!(lengths.iter().collect::<std::collections::BTreeSet<_>>().len() == c.b && lengths.contains(&1), "every clip has its own length, down to one key");
    c.mask = Some(padding(&lengths, c.lk));
    let run = check("key padding", &c);
    // Padded keys of a clip receive no gradient at all.
    let [_, dk, dv] = run.grads.as_ref().unwrap();
    for (b, &len) in lengths.iter().enumerate() {
        let padded = (b * c.lk + len) * c.h * c.dh..(b + 1) * c.lk * c.h * c.dh;
        assert!(dk[padded.clone()].iter().chain(&dv[padded]).all(|&g| g == 0.0), "clip {b}: padded keys must get no gradient");
    }
}

#[test]
fn parallel_causal_mask_matches_naive_f64() {
    let mut c = Case::parallel(300);
    c.mask = Some(causal(c.lq, c.lk));
    assert!(c.fully_masked_rows().is_empty());
    check("causal", &c);
}

/// The specification for a row whose every key is forbidden: uniform weights over all `Lk` keys
/// (the output is the mean of the values, the map row is `1 / Lk`), no gradient to the query of
/// that row, and finite gradients everywhere. Whole clips (length 0) and single rows inside
/// otherwise visible clips, under a causal mask, with the map at t = 2 and without one.
#[test]
fn parallel_fully_masked_rows_are_uniform_with_finite_gradients() {
    let mut c = Case::parallel(400);
    let (causal, _) = causal(c.lq, c.lk);
    let lengths: Vec<usize> = (0..c.b).map(|b| if b % 5 == 2 { 0 } else { 1 + (b * 11) % c.lk }).collect();
    let mut mask = Vec::with_capacity(c.b * c.lq * c.lk);
    for (b, &len) in lengths.iter().enumerate() {
        for i in 0..c.lq {
            let row_forbidden = (b + 3 * i) % 13 == 0;
            mask.extend((0..c.lk).map(|j| row_forbidden || j >= len || causal[i * c.lk + j]));
        }
    }
    c.mask = Some((mask, [c.b, 1, c.lq, c.lk]));
    let rows = c.fully_masked_rows();
    assert!(rows.len() > c.lq * 3 && rows.iter().any(|&(b, _)| lengths[b] > 0), "whole clips and single rows: {} rows", rows.len());
    for temperature in [None, Some(2.0)] {
        c.temperature = temperature;
        let run = check(&format!("fully masked rows, map at {temperature:?}"), &c);
        let [dq, dk, dv] = run.grads.as_ref().unwrap();
        assert!(dk.iter().chain(dv).all(|g| g.is_finite()));
        for &(b, i) in &rows {
            for h in 0..c.h {
                let at = ((b * c.lq + i) * c.h + h) * c.dh;
                assert!(dq[at..at + c.dh].iter().all(|&g| g == 0.0), "row ({b}, {i}) head {h}: a fully masked row passes no gradient to its query");
                for d in 0..c.dh {
                    let mean: f64 = (0..c.lk).map(|j| c.v[((b * c.lk + j) * c.h + h) * c.dh + d] as f64).sum::<f64>() / c.lk as f64;
                    assert!((run.out[at + d] as f64 - mean).abs() <= VALUE_TOL * mean.abs().max(1.0), "row ({b}, {i}): output {} vs mean value {mean}", run.out[at + d]);
                }
            }
            if temperature.is_some() {
                let map_row = &run.map[(b * c.lq + i) * c.lk..(b * c.lq + i + 1) * c.lk];
                assert!(map_row.iter().all(|&m| (m as f64 - 1.0 / c.lk as f64).abs() <= VALUE_TOL), "row ({b}, {i}): the map is uniform");
            }
        }
    }
}

/// The head-averaged map at temperatures other than 1 (sharper and softer), its gradient
/// included, with causal and padding masks.
#[test]
fn parallel_map_at_temperature_matches_naive_f64() {
    let mut c = Case::parallel(500);
    let (causal, _) = causal(c.lq, c.lk);
    let (padding, _) = padding(&varied_lengths(c.b, c.lk), c.lk);
    let mut mask = Vec::with_capacity(c.b * c.lq * c.lk);
    for b in 0..c.b {
        for i in 0..c.lq {
            mask.extend((0..c.lk).map(|j| causal[i * c.lk + j] || padding[b * c.lk + j]));
        }
    }
    c.mask = Some((mask, [c.b, 1, c.lq, c.lk]));
    for t in [0.5, 2.5] {
        c.temperature = Some(t);
        check(&format!("map at t = {t}"), &c);
    }
}

/// Attention dropout with a given keep mask: without a map (the teacher's text-keyed
/// attention), and with the map at t = 1 and t = 2 (taken before dropout), under key padding.
#[test]
fn parallel_dropout_with_a_given_mask_matches_naive_f64() {
    let mut c = Case::parallel(600);
    c.mask = Some(padding(&varied_lengths(c.b, c.lk), c.lk));
    let rate = 0.3;
    let keep = keep_mask(c.b * c.h * c.lq * c.lk, rate, 601);
    let dropped = keep.iter().filter(|&&k| !k).count() as f64 / keep.len() as f64;
    assert!((dropped - rate).abs() < 0.02, "dropped share {dropped}");
    c.dropout = Some((keep, rate));
    for t in [None, Some(1.0), Some(2.0)] {
        c.temperature = t;
        check(&format!("dropout, map at {t:?}"), &c);
    }
}
