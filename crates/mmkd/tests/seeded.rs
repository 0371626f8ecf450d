//! Tests whose assertions depend on the sequence Burn's random generator yields after a seed.
//!
//! flex keeps one generator for the whole process (`burn_flex::backend::SEED`), and the unit
//! tests of the library, which run on parallel threads in one process, draw from it all the
//! time (every lazily initialised parameter, every `Tensor::random`, every active dropout).
//! A test that seeds and then expects a given draw can only run where nothing else draws: here,
//! its own process (each integration test file is one), and every test of this file takes
//! `SERIAL` for its whole body.

use burn::prelude::*;
use burn::tensor::Bool;
use burn::tensor::Distribution;
use mmkd::model::attention::{CrossModalAttentionConfig, Probe};
use mmkd::model::{dropout, fused_attention, masks};

/// Held by every test of this binary for its whole body: one seeded sequence at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// With dropout active (autodiff device, training mode), the fused path draws the mask Burn's
/// `Dropout` draws on the unfused path: the same seed gives the same output and gradients, with
/// the map (the distilled transformers) and without one (the teacher's text-keyed attention).
/// The fused dropout's arithmetic for a given mask is tested in `fused_attention`.
#[test]
fn fused_dropout_equals_the_unfused_dropout_under_the_same_seed() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    assert!(fused_attention::enabled_for(&device), "the fused path must be on (MMKD_FUSED_ATTENTION unset) for this comparison to mean anything");
    mmkd::model::dropout::seed(&device, 3);
    let attn = CrossModalAttentionConfig::new(8, 2).with_dropout(0.3).init(&device);
    let random = |dims: [usize; 3]| Tensor::<3>::random(dims, Distribution::Normal(0.0, 1.0), &device);
    let (q, kv, w, w_map) = (random([3, 5, 8]), random([3, 7, 8]), random([3, 5, 8]), random([3, 5, 7]));
    let mask = masks::future_mask(5, 7, &device).reshape([1, 1, 5, 7]);
    for probe in [Probe::NONE, Probe { map_temperature: Some(1.0), post_attention: false }] {
        let run = |fused: bool| {
            mmkd::model::dropout::seed(&device, 99);
            let (q, kv) = (q.clone().require_grad(), kv.clone().require_grad());
            let (out, trace) =
                if fused { attn.forward(q.clone(), kv.clone(), kv.clone(), Some(mask.clone()), probe) } else { attn.forward_unfused(q.clone(), kv.clone(), kv.clone(), Some(mask.clone()), probe) };
            let mut loss = (out.clone() * w.clone()).sum();
            if let Some(map) = trace.map {
                loss = loss + (map * w_map.clone()).sum();
            }
            let grads = loss.backward();
            (to_vec(out), to_vec(q.grad(&grads).unwrap()), to_vec(kv.grad(&grads).unwrap()))
        };
        let ((fo, fq, fk), (uo, uq, uk)) = (run(true), run(false));
        // Dropout zeroes some entries: the outputs differ from the no-dropout ones...
        let plain_mask = masks::future_mask(5, 7, &Device::flex()).reshape([1, 1, 5, 7]);
        let plain = to_vec(attn.valid().forward_unfused(q.clone().inner(), kv.clone().inner(), kv.clone().inner(), Some(plain_mask), Probe::NONE).0);
        assert!(fo.iter().zip(&plain).any(|(a, b)| (a - b).abs() > 1e-3), "{probe:?}: dropout must act");
        // ...and agree between the two paths, element by element.
        for (what, a, b) in [("output", &fo, &uo), ("dQ", &fq, &uq), ("dKV", &fk, &uk)] {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-5 * y.abs().max(1.0), "{probe:?} {what}: fused {x} vs unfused {y}");
            }
        }
    }
}

fn bools<const D: usize>(t: Tensor<D, Bool>) -> Vec<bool> {
    t.into_data().try_to_vec::<bool>().unwrap()
}

// `model::dropout`: masks drawn from the mirror of flex's generator are Burn's, bit for bit.

#[test]
fn the_mirror_draws_the_masks_burn_draws_after_the_same_seed() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    for (keep, dims) in [(0.9, [3, 4, 5, 7]), (0.5, [1, 1, 1, 1001]), (0.7, [2, 8, 20, 20])] {
        dropout::seed(&device, 42);
        let burn_masks: Vec<Vec<bool>> = (0..3).map(|_| bools(Tensor::<4>::random(dims, Distribution::Bernoulli(keep), &device).equal_elem(1.0))).collect();
        dropout::seed(&device, 42);
        let mirror_masks: Vec<Vec<bool>> = (0..3).map(|_| bools(dropout::keep_mask(keep, dims, &device))).collect();
        assert_eq!(burn_masks, mirror_masks, "keep {keep}, dims {dims:?}: three masks in a row");
        let kept = mirror_masks.concat().iter().filter(|&&k| k).count() as f64 / (3 * dims.iter().product::<usize>()) as f64;
        assert!((kept - keep).abs() < 0.05, "keep {keep}: kept share {kept}");
    }
}

#[test]
fn apply_equals_burns_dropout_after_the_same_seed_values_and_gradients() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    dropout::seed(&device, 5);
    let x = Tensor::<3>::random([4, 6, 9], Distribution::Normal(0.0, 1.0), &device);
    let w = Tensor::<3>::random([4, 6, 9], Distribution::Normal(0.0, 1.0), &device);
    let dropout = burn::nn::DropoutConfig::new(0.3).init();
    let run = |ours: bool| {
        dropout::seed(&device, 77);
        let x = x.clone().require_grad();
        // Two dropouts in a row: the second must continue the same stream.
        let y = if ours { dropout::apply(&dropout, dropout::apply(&dropout, x.clone())) } else { dropout.forward(dropout.forward(x.clone())) };
        let grads = (y.clone() * w.clone()).sum().backward();
        (y.into_data().try_to_vec::<f32>().unwrap(), x.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap())
    };
    let (burn_y, burn_g) = run(false);
    let (our_y, our_g) = run(true);
    assert_eq!(burn_y, our_y, "outputs, bit for bit");
    assert_eq!(burn_g, our_g, "gradients, bit for bit");
    assert!(burn_y.contains(&0.0) && burn_y.iter().any(|&v| v != 0.0), "the test must drop some and keep some");
}

#[test]
fn a_step_that_initialises_parameters_keeps_burns_masks() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    let fresh = || burn::nn::LinearConfig::new(5, 7).init(&device);
    let dropout = burn::nn::DropoutConfig::new(0.4).init();
    let x = Tensor::<2>::ones([3, 5], &device);
    // Lazy weights are drawn by the forward, between two dropout draws: Burn's order.
    let step = |model: &burn::nn::Linear, ours: bool| {
        let y = if ours { dropout::apply(&dropout, model.forward(dropout::apply(&dropout, x.clone()))) } else { dropout.forward(model.forward(dropout.forward(x.clone()))) };
        y.into_data().try_to_vec::<f32>().unwrap()
    };
    let model = fresh();
    dropout::seed(&device, 9);
    let burn = step(&model, false);
    let model = fresh();
    dropout::seed_for_step(&device, 9, &model);
    assert_eq!(step(&model, true), burn, "a fresh model: the same weights and masks as Burn's");
    // Once initialised, the mirror draws, still Burn's numbers.
    dropout::seed(&device, 10);
    let burn = step(&model, false);
    dropout::seed_for_step(&device, 10, &model);
    assert!(dropout::mirror_active(), "an initialised model's step uses the mirror");
    assert_eq!(step(&model, true), burn, "an initialised model");
}

// `model::dropout::BatchMasks`: a batch computed in parts draws the whole batch's masks.

/// The masks of a short sequence of dropout sites (a bool mask, a scaled mask, a site that
/// keeps everything and so draws nothing, another bool mask) for a batch of `rows` rows.
fn site_sequence(rows: usize, device: &Device) -> Vec<f32> {
    let dropout = burn::nn::DropoutConfig::new(0.4).init();
    let mut out = Vec::new();
    out.extend(bools(dropout::keep_mask(0.7, [rows, 3, 5], device)).iter().map(|&k| f32::from(u8::from(k))));
    out.extend(to_vec(dropout::apply(&dropout, Tensor::<2>::ones([rows, 4], device))));
    out.extend(bools(dropout::keep_mask(1.0, [rows, 2], device)).iter().map(|&k| f32::from(u8::from(k))));
    out.extend(bools(dropout::keep_mask(0.9, [rows, 2, 2], device)).iter().map(|&k| f32::from(u8::from(k))));
    out
}

/// The sequence above, one part of rows at a time, regrouped per site into whole-batch order.
fn in_parts(parts: &[std::ops::Range<usize>], order: &[usize], parallel: bool, device: &Device) -> Vec<f32> {
    let masks = dropout::BatchMasks::new(6);
    let run = |rows: std::ops::Range<usize>| dropout::in_part(&masks, rows.clone(), || site_sequence(rows.len(), device));
    let mut by_part: Vec<Vec<f32>> = vec![Vec::new(); parts.len()];
    if parallel {
        let results = mmkd::model::parts::run_parts(parts.iter().map(|r| (r.clone(), ())).collect(), |r, ()| run(r));
        by_part = results;
    } else {
        for &i in order {
            by_part[i] = run(parts[i].clone());
        }
    }
    masks.finish();
    // Per site, the parts' rows one after the other: the whole batch's layout.
    let widths = [15usize, 4, 2, 4];
    let mut whole = Vec::new();
    let mut offsets = vec![0usize; parts.len()];
    for w in widths {
        for (p, rows) in parts.iter().enumerate() {
            let n = rows.len() * w;
            whole.extend_from_slice(&by_part[p][offsets[p]..offsets[p] + n]);
            offsets[p] += n;
        }
    }
    whole
}

#[test]
fn a_batch_in_parts_draws_the_whole_batchs_masks_with_either_generator() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    let parts = [0..2, 2..3, 3..6];
    for mirror in [true, false] {
        dropout::use_mirror(mirror);
        dropout::seed(&device, 17);
        let whole = site_sequence(6, &device);
        let after_whole = bools(dropout::keep_mask(0.5, [64], &device));
        assert!(whole.contains(&0.0) && whole.contains(&1.0), "the test must drop some and keep some");
        // In parallel, and one after the other in two orders: the same masks, and the
        // generator continues where the undivided step left it.
        for (parallel, order) in [(true, vec![0, 1, 2]), (false, vec![2, 0, 1]), (false, vec![1, 2, 0])] {
            dropout::seed(&device, 17);
            assert_eq!(in_parts(&parts, &order, parallel, &device), whole, "mirror {mirror}, parallel {parallel}, order {order:?}");
            assert_eq!(bools(dropout::keep_mask(0.5, [64], &device)), after_whole, "mirror {mirror}: the draw after the step");
        }
    }
    dropout::use_mirror(true);
}
