//! A network on a whole split: class probabilities and the mean cross-entropy (the validation
//! loss, and the test predictions every report is computed from).

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};

use crate::config::DataShape;
use crate::data::labels::NUM_CLASSES;
use crate::data::{Split, epoch_order};
use crate::model::MultimodalNet;
use crate::model::parts::{INFERENCE_ROWS_PER_PART, logits_in_parts};

/// Mean cross-entropy of logits [B, 7] against classes [B].
pub fn cross_entropy(logits: Tensor<2>, classes: Tensor<1, Int>) -> Tensor<1> {
    let targets = classes.one_hot::<2>(NUM_CLASSES).float();
    (log_softmax(logits, 1) * targets).sum_dim(1).mean().neg()
}

/// Class probabilities for a whole split and the mean cross-entropy, in inference mode
/// (`net` should come from `.valid()` on a plain device: no autodiff graph, no dropout).
pub fn predict(net: &MultimodalNet, split: &Split, shape: &DataShape, batch_size: usize, device: &Device) -> (Vec<[f32; NUM_CLASSES]>, f64) {
    let mut probs = Vec::with_capacity(split.len());
    let mut loss_sum = 0.0;
    for idx in epoch_order(split.len(), batch_size, 0, 0, false) {
        let batch = split.batch(shape, &idx, device);
        let logits = logits_in_parts(net, &batch.input, INFERENCE_ROWS_PER_PART);
        let loss: f32 = cross_entropy(logits.clone(), batch.classes.clone()).into_scalar();
        loss_sum += loss as f64 * idx.len() as f64;
        let p: Vec<f32> = softmax(logits, 1).into_data().try_to_vec().expect("f32 probabilities");
        probs.extend(p.chunks_exact(NUM_CLASSES).map(|c| <[f32; NUM_CLASSES]>::try_from(c).expect("7 classes")));
    }
    (probs, loss_sum / split.len().max(1) as f64)
}
