//! A batch in parts, each part on a thread of its own.
//!
//! Why: on flex, an operation on fewer than about 256 K elements (a matrix product below
//! 192^3 multiply-adds) runs on one thread. At the `small` preset almost every operation of a
//! step is that small, so the second core idled: a teacher step took 225 ms on one thread and
//! 211 ms on two. Two halves of the batch, each on its own core, do what the backend cannot
//! (bench/NOTES.md, "A batch in parts").
//!
//! How the parts are cut depends only on the batch's size and `rows_per_part`, never on the
//! number of cores: a machine with one core computes the same parts one after the other and
//! gets the same numbers.

use std::ops::Range;

use burn::prelude::*;

use super::{MultimodalNet, TraceRequest};
use crate::input::NetInput;

/// Rows per part for inference on flex (`logits_in_parts`): at `small`, parts of 32 rows on
/// separate cores beat one batch of 64 (bench/NOTES.md).
pub const INFERENCE_ROWS_PER_PART: usize = 32;

/// The parts of a batch of `rows` rows: as few as keep each at most `rows_per_part` rows, of
/// sizes as even as they can be (64 rows at 32: two of 32; 40 rows: two of 20).
pub fn row_parts(rows: usize, rows_per_part: usize) -> Vec<Range<usize>> {
    let n = rows.div_ceil(rows_per_part.max(1)).max(1);
    let (base, extra) = (rows / n, rows % n);
    let mut start = 0;
    (0..n)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let part = start..start + len;
            start += len;
            part
        })
        .collect()
}

/// `f` on every part with its own input, each part a job on rayon's pool; the results in the
/// parts' order. A panic in a part reaches the caller. Rayon's threads rather than new ones:
/// they live on, and so do their allocator heaps (with a fresh thread per step, the kernel
/// zeroed a new heap's pages every step, 8.6 % of a `small` teacher step). All parts on the
/// pool, the caller waiting, rather than one on the caller's thread: that left an idle worker
/// spinning beside two busy threads on two cores (bench/NOTES.md, "A batch in parts").
pub fn run_parts<I: Send, R: Send>(parts: Vec<(Range<usize>, I)>, f: impl Fn(Range<usize>, I) -> R + Sync) -> Vec<R> {
    if parts.len() <= 1 {
        return parts.into_iter().map(|(rows, input)| f(rows, input)).collect();
    }
    let mut slots: Vec<Option<R>> = parts.iter().map(|_| None).collect();
    rayon::scope(|scope| {
        let f = &f;
        for ((rows, input), slot) in parts.into_iter().zip(slots.iter_mut()) {
            scope.spawn(move |_| *slot = Some(f(rows, input)));
        }
    });
    slots.into_iter().map(|r| r.expect("every part ran")).collect()
}

/// The logits of `net` for `input`, computed in parts of at most `rows_per_part` rows on flex
/// (elsewhere, and for a batch that fits in one part, in one piece). For inference: `net` on a
/// plain device, no dropout. Each row's logits are computed from that row alone, as in one piece.
pub fn logits_in_parts(net: &MultimodalNet, input: &NetInput, rows_per_part: usize) -> Tensor<2> {
    let rows = input.video.dims()[0];
    let parts = row_parts(rows, rows_per_part);
    if parts.len() == 1 || !super::fused_attention::supported(&input.video.device()) {
        return net.forward(input, &TraceRequest::none()).logits;
    }
    let logits = run_parts(parts.into_iter().map(|r| (r, ())).collect(), |rows, ()| net.forward(&input.rows(rows), &TraceRequest::none()).logits);
    Tensor::cat(logits, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inference in parts gives each row the logits of the batch in one piece.
    #[test]
    fn logits_in_parts_are_the_whole_batchs() {
        use crate::config::{DataShape, ModelConfig, Preset};
        let device = Device::flex();
        let shape = DataShape { n_train: 12, n_valid: 1, n_test: 1, ..DataShape::for_preset(Preset::Smoke) };
        let (data, _) = crate::data::synth::generate(Preset::Smoke, 0, &shape, &Default::default());
        let batch = data.train.batch(&shape, &(0..12).collect::<Vec<_>>(), &device);
        let net = super::super::build_teacher(super::super::TeacherKind::Complete, &shape, &ModelConfig::for_preset(Preset::Smoke), &device);
        let whole: Vec<f32> = net.forward(&batch.input, &TraceRequest::none()).logits.into_data().try_to_vec().unwrap();
        let parts: Vec<f32> = logits_in_parts(&net, &batch.input, 5).into_data().try_to_vec().unwrap();
        assert_eq!(whole.len(), 12 * crate::input::NUM_CLASSES);
        for (i, (a, b)) in whole.iter().zip(&parts).enumerate() {
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "logit {i}: {a} whole, {b} in parts");
        }
    }

    #[test]
    fn parts_are_even_and_cover_the_batch() {
        assert_eq!(row_parts(64, 32), vec![0..32, 32..64]);
        assert_eq!(row_parts(40, 32), vec![0..20, 20..40]);
        assert_eq!(row_parts(65, 32), vec![0..22, 22..44, 44..65]);
        assert_eq!(row_parts(16, 32), vec![0..16]);
        assert_eq!(row_parts(1, 32), vec![0..1]);
        assert_eq!(row_parts(0, 32), vec![0..0]);
    }

    #[test]
    fn parts_run_in_order_and_a_panic_reaches_the_caller() {
        // 10 rows at 3: four parts of 3, 3, 2, 2 rows; sums of squares by hand.
        let squares = run_parts(row_parts(10, 3).into_iter().map(|r| (r, ())).collect(), |r, ()| r.map(|i| i * i).sum::<usize>());
        assert_eq!(squares, vec![5, 50, 85, 145]);
        let caught = std::panic::catch_unwind(|| run_parts(vec![(0..1, ()), (1..2, ())], |r, ()| if r.start == 1 { panic!("part two") } else { 0 }));
        assert!(caught.is_err());
    }
}
