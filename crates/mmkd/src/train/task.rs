//! What a training run optimises. The loop in `fit.rs` is generic over a `TrainTask`: the
//! supervised task here trains a network on labels; distillation adds a frozen teacher and a
//! distillation term in its own task.

use burn::prelude::*;

use crate::data::Batch;
use crate::eval::inference::cross_entropy;
use crate::model::{MultimodalNet, TraceRequest};

/// The loss of one part of a batch: (the part's model, the part's rows, their range in the
/// whole batch) -> the part's mean loss and its named parts (`TrainTask::part_loss`).
pub type PartLoss<'a, M> = dyn Fn(&M, &Batch, std::ops::Range<usize>) -> anyhow::Result<(Tensor<1>, Vec<(String, f64)>)> + Sync + 'a;

/// A trainable objective. `Model` holds every trained parameter (the network and, for
/// distillation, its auxiliary heads); state outside the parameters (a memory bank) is saved
/// through `save_extra` and `load_extra`.
pub trait TrainTask {
    /// Every trained parameter of the task.
    type Model: Module + Clone + Send;

    /// Build the model. `sample` holds a few training rows, for models whose shape depends on
    /// the data (distillation heads size themselves from a forward pass).
    fn init_model(&mut self, device: &Device, sample: &Batch) -> anyhow::Result<Self::Model>;

    /// The training loss for one batch and named scalar parts for the log.
    fn train_loss(&mut self, model: &Self::Model, batch: &Batch) -> anyhow::Result<(Tensor<1>, Vec<(String, f64)>)>;

    /// The loss as a function of a part of the batch, where it is a mean over the batch's rows
    /// of terms that each read their own row, and a step changes no state but the parameters:
    /// `step::loss_and_gradients` then computes it in parts on separate threads. Called with
    /// the whole batch, to compute once what the parts share (distillation: the frozen
    /// teacher's side); the function gets a part's model, the part's rows as a `Batch`, and
    /// their range in the whole batch. `None` (the default): the loss couples rows (CRD's
    /// negatives and memory bank), and the batch stays whole.
    fn part_loss<'a>(&'a self, _batch: &Batch) -> anyhow::Result<Option<Box<PartLoss<'a, Self::Model>>>> {
        Ok(None)
    }

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
        Ok(supervised_loss(model, batch))
    }

    fn part_loss<'a>(&'a self, _batch: &Batch) -> anyhow::Result<Option<Box<PartLoss<'a, MultimodalNet>>>> {
        // The mean cross-entropy over rows: each part's is its rows' mean.
        Ok(Some(Box::new(|model: &MultimodalNet, part: &Batch, _rows| Ok(supervised_loss(model, part)))))
    }

    fn net(model: &MultimodalNet) -> &MultimodalNet {
        model
    }
}

/// The mean cross-entropy of `model` on `batch` (no named parts).
fn supervised_loss(model: &MultimodalNet, batch: &Batch) -> (Tensor<1>, Vec<(String, f64)>) {
    let out = model.forward(&batch.input, &TraceRequest::none());
    (cross_entropy(out.logits, batch.classes.clone()), Vec::new())
}
