//! One optimiser step of the recipe: backward, gradient clipping by one global norm, Adam.
//!
//! Burn's `GradientClippingConfig::Norm` clips every parameter tensor on its own; MulT (and
//! PyTorch's `clip_grad_norm_`) scale all gradients by one factor computed from the norm of all
//! of them together. The two differ whenever more than one tensor has gradient, so mmkd clips
//! here, before the optimizer, and configures Adam without clipping.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;

use std::ops::Range;

use anyhow::Result;

use super::task::{PartLoss, TrainTask};
use crate::config::TrainConfig;
use crate::data::Batch;
use crate::model::parts::{row_parts, run_parts};

/// Adam as the recipe sets it up (PyTorch's epsilon; betas 0.9 / 0.999; no weight decay). Its
/// own clipping stays off: see [`clip_global_norm`].
pub fn adam(tc: &TrainConfig) -> ModuleOptimizer {
    AdamConfig::new().with_epsilon(tc.adam_epsilon).init()
}

/// Sum of squares of every gradient that belongs to a parameter of the module.
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s = (g.clone() * g).sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

/// Multiplies every gradient of the module's parameters by one factor.
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register::<D>(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// The global L2 norm of all gradients of `module`'s parameters.
pub fn global_grad_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    let mut visitor = SquaredNorm { grads, total: None };
    module.visit(&mut visitor);
    visitor.total.map_or(0.0, |t| (t.into_scalar::<f32>() as f64).sqrt())
}

/// PyTorch's `clip_grad_norm_(parameters, max_norm)`: when the global norm exceeds `max_norm`,
/// scale every gradient by `max_norm / (norm + 1e-6)`. Returns the gradients and the norm
/// before clipping (what PyTorch returns, and what the training log records).
pub fn clip_global_norm<M: Module>(module: &M, mut grads: GradientsParams, max_norm: Option<f32>) -> (GradientsParams, f64) {
    let norm = global_grad_norm(module, &grads);
    if let Some(max) = max_norm {
        let factor = max as f64 / (norm + 1e-6);
        if factor < 1.0 {
            module.visit(&mut Scale { grads: &mut grads, factor });
        }
    }
    (grads, norm)
}

/// Backward through `loss`, clip by the global norm, and take one optimizer step at `lr`.
/// Returns the updated module and the gradient norm before clipping.
pub fn optimizer_step<M: Module>(module: M, optim: &mut ModuleOptimizer, loss: Tensor<1>, lr: f64, max_norm: Option<f32>) -> (M, f64) {
    let grads = GradientsParams::from_grads(loss.backward(), &module);
    apply_gradients(module, optim, grads, lr, max_norm)
}

/// What one training step's loss gave: its value (the batch's mean), the named parts for the
/// log, and the gradients of the trained parameters.
pub struct StepGradients {
    /// The loss, as a mean over the batch's rows.
    pub value: f32,
    /// Named parts of the loss (distillation: `ce`, `kd`), batch means.
    pub parts: Vec<(String, f64)>,
    /// The gradients, keyed by parameter.
    pub grads: GradientsParams,
    /// How many parts the batch was computed in (1: in one piece).
    pub pieces: usize,
}

/// The loss of `task` on `batch` and its gradients with respect to `model`. Where
/// `rows_per_part` cuts the batch into several parts (`model::parts::row_parts`), the device is
/// flex, every parameter is initialised, and the task's loss is a mean over rows
/// (`TrainTask::part_loss`), each part runs on a thread of its own with its own copy of the
/// parameters' leaves, drawing the whole batch's dropout masks (`dropout::BatchMasks`); the
/// parts' gradients are then summed, each weighted by its share of the rows. Otherwise the batch
/// is one piece. The two differ only by rounding: the sums over rows run in another order.
pub fn loss_and_gradients<T: TrainTask>(task: &mut T, model: &T::Model, batch: &Batch, rows_per_part: Option<usize>) -> Result<StepGradients> {
    let rows = batch.indices.len();
    let parts = rows_per_part.map(|r| row_parts(rows, r)).unwrap_or_default();
    let device = batch.input.video.device();
    if parts.len() > 1
        && crate::model::fused_attention::supported(&device)
        && crate::model::dropout::all_initialised(model)
        && let Some(part_loss) = task.part_loss(batch)?
    {
        return in_parts(model, batch, &parts, part_loss.as_ref());
    }
    let (loss, parts) = task.train_loss(model, batch)?;
    let value: f32 = loss.clone().into_scalar();
    let grads = GradientsParams::from_grads(loss.backward(), model);
    Ok(StepGradients { value, parts, grads, pieces: 1 })
}

/// `loss_and_gradients` in parts (see there).
fn in_parts<M: Module + Clone + Send>(model: &M, batch: &Batch, parts: &[Range<usize>], part_loss: &PartLoss<'_, M>) -> Result<StepGradients> {
    let rows = batch.indices.len();
    let masks = crate::model::dropout::BatchMasks::new(rows);
    // Each part gets fresh leaves made here, on this thread: its graph shares no node with
    // another part's, so the parts' backward passes are independent.
    let inputs: Vec<(Range<usize>, M)> = parts.iter().map(|r| (r.clone(), model.clone().map(&mut FreshLeaves))).collect();
    let results = run_parts(inputs, |rows, local: M| -> Result<(f32, Vec<(String, f64)>, GradientsParams)> {
        let part = batch.rows(rows.clone());
        let (loss, named) = crate::model::dropout::in_part(&masks, rows.clone(), || part_loss(&local, &part, rows))?;
        let value: f32 = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &local);
        Ok((value, named, grads))
    });
    masks.finish();
    let mut value = 0.0f64;
    let mut named: Vec<(String, f64)> = Vec::new();
    let mut weighted = Vec::with_capacity(parts.len());
    for (range, result) in parts.iter().zip(results) {
        let (v, part_named, grads) = result?;
        let weight = range.len() as f64 / rows as f64;
        value += weight * v as f64;
        for (i, (name, x)) in part_named.into_iter().enumerate() {
            if named.len() <= i {
                named.push((name, 0.0));
            }
            named[i].1 += weight * x;
        }
        weighted.push((weight, grads));
    }
    let mut sum = WeightedSum { parts: weighted, out: GradientsParams::new() };
    model.visit(&mut sum);
    Ok(StepGradients { value: value as f32, parts: named, grads: sum.out, pieces: parts.len() })
}

/// Every parameter as a new autodiff leaf (the same value and id, a new graph node).
struct FreshLeaves;

impl ModuleMapper for FreshLeaves {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| {
            let grad = t.is_require_grad();
            Tensor::from_inner(t.inner()).set_require_grad(grad)
        })
    }
}

/// The parts' gradients summed per parameter, each weighted by its share of the rows.
struct WeightedSum {
    parts: Vec<(f64, GradientsParams)>,
    out: GradientsParams,
}

impl ModuleVisitor for WeightedSum {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let mut total: Option<Tensor<D>> = None;
        for (weight, grads) in &mut self.parts {
            if let Some(g) = grads.remove::<D>(param.id) {
                let g = g.mul_scalar(*weight);
                total = Some(match total {
                    Some(acc) => acc + g,
                    None => g,
                });
            }
        }
        if let Some(total) = total {
            self.out.register::<D>(param.id, total);
        }
    }
}

/// The second half of `optimizer_step`, for a caller that reads the gradients first (the
/// reference cases record them): clipping, then the optimiser's step.
pub fn apply_gradients<M: Module>(module: M, optim: &mut ModuleOptimizer, grads: GradientsParams, lr: f64, max_norm: Option<f32>) -> (M, f64) {
    let (grads, norm) = clip_global_norm(&module, grads, max_norm);
    (optim.step(lr, module, grads), norm)
}

/// A copy of `module` whose parameters hold their gradients (zero where a parameter has none),
/// so the gradients can be saved under the parameters' names.
pub fn gradients_as_module<M: Module>(module: M, grads: &GradientsParams) -> M {
    struct GradientValues<'a> {
        grads: &'a GradientsParams,
    }
    impl ModuleMapper for GradientValues<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let id = param.id;
            let grad = self.grads.get::<D>(id);
            param.map(|value| match grad {
                Some(g) => g.to_device(&value.device()),
                None => value.zeros_like(),
            })
        }
    }
    module.map(&mut GradientValues { grads })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::TensorData;

    fn vec(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap()
    }

    /// Two layers whose gradients are known in closed form: loss = sum(x W1) + 3 sum(x W2) with
    /// x = [1, 2] gives dW1 = [[1,1],[2,2]] (bias grads [1, 1]) and dW2 = 3 x that.
    #[test]
    fn clips_by_one_global_norm_like_pytorch() {
        #[derive(Module, Debug)]
        struct Two {
            a: Linear,
            b: Linear,
        }
        let device = Device::flex().autodiff();
        let model = Two { a: LinearConfig::new(2, 2).init(&device), b: LinearConfig::new(2, 2).init(&device) };
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0], [1, 2]), &device);
        let loss = model.a.forward(x.clone()).sum() + model.b.forward(x).sum().mul_scalar(3.0);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        // Hand computation: squares of layer a: 1+1+4+4 (weight) + 1+1 (bias) = 12; layer b: 9 x 12.
        let expected_norm = (12.0f64 + 108.0).sqrt();
        let (clipped, norm) = clip_global_norm(&model, grads, Some(1.0));
        assert!((norm - expected_norm).abs() < 1e-5, "norm {norm} vs {expected_norm}");
        let factor = 1.0 / (expected_norm + 1e-6);
        let ga = vec(clipped.get::<2>(model.a.weight.id).unwrap());
        let gb = vec(clipped.get::<2>(model.b.weight.id).unwrap());
        for (g, want) in ga.iter().zip([1.0, 1.0, 2.0, 2.0]) {
            assert!((*g as f64 - want * factor).abs() < 1e-6, "{g} vs {}", want * factor);
        }
        for (g, want) in gb.iter().zip([3.0, 3.0, 6.0, 6.0]) {
            assert!((*g as f64 - want * factor).abs() < 1e-6, "{g} vs {}", want * factor);
        }
        // The clipped gradients have norm max_norm, and their ratio is kept (per-tensor clipping
        // would give each tensor norm 1 and change it).
        assert!((global_grad_norm(&model, &clipped) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn leaves_gradients_below_the_threshold_alone() {
        let device = Device::flex().autodiff();
        let layer = LinearConfig::new(2, 1).init(&device);
        let x = Tensor::<2>::from_data(TensorData::new(vec![0.1f32, 0.2], [1, 2]), &device);
        let grads = GradientsParams::from_grads(layer.forward(x).sum().backward(), &layer);
        let before = vec(grads.get::<2>(layer.weight.id).unwrap());
        let (after, norm) = clip_global_norm(&layer, grads, Some(10.0));
        assert!((norm - (0.01f64 + 0.04 + 1.0).sqrt()).abs() < 1e-6);
        assert_eq!(vec(after.get::<2>(layer.weight.id).unwrap()), before);
    }
}
