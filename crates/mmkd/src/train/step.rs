//! One optimiser step of the recipe: backward, gradient clipping by one global norm, Adam.
//!
//! Burn's `GradientClippingConfig::Norm` clips every parameter tensor on its own; MulT (and
//! PyTorch's `clip_grad_norm_`) scale all gradients by one factor computed from the norm of all
//! of them together. The two differ whenever more than one tensor has gradient, so mmkd clips
//! here, before the optimizer, and configures Adam without clipping.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;

use crate::config::TrainConfig;

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
