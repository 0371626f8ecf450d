//! What a training run optimises. The loop in `fit.rs` is generic over a `TrainTask`: the
//! supervised task here trains a network on labels; distillation adds a frozen teacher and a
//! distillation term in its own task.

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};

use crate::config::DataShape;
use crate::data::labels::NUM_CLASSES;
use crate::data::{Batch, Split, epoch_order};
use crate::model::{MultimodalNet, TraceRequest};

/// A trainable objective. `Model` holds every trained parameter (the network and, for
/// distillation, its auxiliary heads); state outside the parameters (a memory bank) is saved
/// through `save_extra` and `load_extra`.
pub trait TrainTask {
    /// Every trained parameter of the task.
    type Model: Module + Clone;

    /// Build the model. `sample` holds a few training rows, for models whose shape depends on
    /// the data (distillation heads size themselves from a forward pass).
    fn init_model(&mut self, device: &Device, sample: &Batch) -> anyhow::Result<Self::Model>;

    /// The training loss for one batch and named scalar parts for the log.
    fn train_loss(&mut self, model: &Self::Model, batch: &Batch) -> anyhow::Result<(Tensor<1>, Vec<(String, f64)>)>;

    /// The network that is evaluated and saved as `best.safetensors`.
    fn net(model: &Self::Model) -> &MultimodalNet;

    /// The trained network's transformers whose attention maps the loss reads: each keeps its
    /// head-averaged `[B, Lq, Lk]` map for the backward with the fused op (per-head tensors on
    /// the unfused path); the memory estimate (`memory::attention_kept`) counts them.
    fn mapped_transformers(&self) -> std::collections::BTreeSet<crate::model::TransformerId> {
        Default::default()
    }

    /// Save state that is not a parameter (a CRD memory bank) into the resume folder.
    fn save_extra(&self, _dir: &std::path::Path) -> anyhow::Result<()> {
        Ok(())
    }

    /// Restore what `save_extra` wrote, from the resume folder.
    fn load_extra(&mut self, _dir: &std::path::Path) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Mean cross-entropy of logits [B, 7] against classes [B].
pub fn cross_entropy(logits: Tensor<2>, classes: Tensor<1, Int>) -> Tensor<1> {
    let targets = classes.one_hot::<2>(NUM_CLASSES).float();
    (log_softmax(logits, 1) * targets).sum_dim(1).mean().neg()
}

/// Train a network on labels alone (teachers, and the student without distillation).
pub struct SupervisedTask {
    /// Builds the untrained network on a device.
    pub build: Box<dyn Fn(&Device) -> MultimodalNet>,
}

impl TrainTask for SupervisedTask {
    type Model = MultimodalNet;

    fn init_model(&mut self, device: &Device, _sample: &Batch) -> anyhow::Result<MultimodalNet> {
        Ok((self.build)(device))
    }

    fn train_loss(&mut self, model: &MultimodalNet, batch: &Batch) -> anyhow::Result<(Tensor<1>, Vec<(String, f64)>)> {
        let out = model.forward(&batch.input, &TraceRequest::none());
        let loss = cross_entropy(out.logits, batch.classes.clone());
        Ok((loss, Vec::new()))
    }

    fn net(model: &MultimodalNet) -> &MultimodalNet {
        model
    }
}

/// Class probabilities for a whole split and the mean cross-entropy, in inference mode
/// (`net` should come from `.valid()` on a plain device: no autodiff graph, no dropout).
pub fn predict(net: &MultimodalNet, split: &Split, shape: &DataShape, batch_size: usize, device: &Device) -> (Vec<[f32; NUM_CLASSES]>, f64) {
    let mut probs = Vec::with_capacity(split.len());
    let mut loss_sum = 0.0;
    for idx in epoch_order(split.len(), batch_size, 0, 0, false) {
        let batch = split.batch(shape, &idx, device);
        let out = net.forward(&batch.input, &TraceRequest::none());
        let loss: f32 = cross_entropy(out.logits.clone(), batch.classes.clone()).into_scalar();
        loss_sum += loss as f64 * idx.len() as f64;
        let p: Vec<f32> = softmax(out.logits, 1).into_data().try_to_vec().expect("f32 probabilities");
        probs.extend(p.chunks_exact(NUM_CLASSES).map(|c| <[f32; NUM_CLASSES]>::try_from(c).expect("7 classes")));
    }
    (probs, loss_sum / split.len().max(1) as f64)
}
