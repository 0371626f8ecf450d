//! LayerNorm in training as one autodiff op with its own backward, on flex.
//!
//! Why: Burn's autodiff has no LayerNorm of its own and records the backend's default
//! decomposition (mean, subtract, square, mean, add, square root, divide, scale, shift: nine
//! tracked ops forward, each a pass over the activations, a fresh buffer and a graph node, and
//! more backward). MulT's layers normalise four inputs per cross-modal layer, so at the `small`
//! preset, where every tensor is small, those ops are a large share of the step's element-wise,
//! memory and bookkeeping time (bench/NOTES.md). Here the forward is one pass that also keeps
//! each row's mean and reciprocal standard deviation, and the backward one pass for the input's
//! gradient plus the sums for gamma and beta.
//!
//! Inference (a device without autodiff) keeps Burn's `LayerNorm::forward`, which flex already
//! runs as one fused kernel; other backends keep Burn's path everywhere.
//!
//! The arithmetic: with `x̂ = (x - μ) r`, `r = 1 / sqrt(σ² + ε)` (σ² the biased variance, as in
//! PyTorch and Burn), `y = γ x̂ + β`; backward `dβ = Σ dy`, `dγ = Σ dy x̂` over rows, and
//! `dx = r (g - mean(g) - x̂ mean(g x̂))` with `g = γ dy`. Row sums are accumulated in f64.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension};
use burn::nn::LayerNorm;
use burn::prelude::*;
use rayon::prelude::*;

use super::fused_attention::{f32_values, flex_tensor};

/// The epsilon of every LayerNorm in mmkd (MulT's `nn.LayerNorm` default, and Burn's):
/// `encoder` builds its norms with it, and Burn keeps a built norm's epsilon private.
pub const EPSILON: f64 = 1e-5;

/// Rows per rayon task; below two tasks' worth a call stays on one thread.
const ROWS_PER_TASK: usize = 256;

/// LayerNorm over the last dimension as one op.
#[backend_extension(Flex, Autodiff)]
pub trait FusedLayerNormBackend: Backend {
    /// `gamma * (x - mean) / sqrt(var + epsilon) + beta` over the last dimension of `x`
    /// (`[..., d]`); `gamma`, `beta`: `[d]`.
    fn fused_layer_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, epsilon: f64) -> FloatTensor<Self>;
}

/// `norm.forward(x)` for a norm built with `EPSILON`, through the fused op where it runs (flex with autodiff, the fused path
/// not turned off by `MMKD_FUSED_ATTENTION=0`, which turns off every fused op) and through Burn
/// elsewhere.
pub fn forward<const D: usize>(norm: &LayerNorm, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    let Some(beta) = norm.beta.as_ref().filter(|_| device.is_autodiff() && super::fused_attention::enabled_for(&device)) else {
        return norm.forward(x);
    };
    let out = <burn::backend::Dispatch as FusedLayerNormBackend>::fused_layer_norm(x.into_dispatch(), norm.gamma.val().into_dispatch(), beta.val().into_dispatch(), EPSILON);
    Tensor::from_dispatch(out)
}

/// Normalise rows of width `d`: the output, and per row (mean, reciprocal std).
fn forward_rows(x: &[f32], gamma: &[f32], beta: &[f32], epsilon: f64) -> (Vec<f32>, Vec<[f32; 2]>) {
    let d = gamma.len();
    let rows = x.len() / d;
    let mut y = vec![0.0f32; x.len()];
    let mut stats = vec![[0.0f32; 2]; rows];
    let one = |(xr, (yr, st)): (&[f32], (&mut [f32], &mut [f32; 2]))| {
        let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let (mean, r) = (mean as f32, (1.0 / (var + epsilon).sqrt()) as f32);
        for (((yv, &xv), &g), &b) in yr.iter_mut().zip(xr).zip(gamma).zip(beta) {
            *yv = (xv - mean) * r * g + b;
        }
        *st = [mean, r];
    };
    if rows >= 2 * ROWS_PER_TASK {
        x.par_chunks(d * ROWS_PER_TASK).zip(y.par_chunks_mut(d * ROWS_PER_TASK).zip(stats.par_chunks_mut(ROWS_PER_TASK))).for_each(|(xc, (yc, sc))| {
            xc.chunks_exact(d).zip(yc.chunks_exact_mut(d).zip(sc.iter_mut())).for_each(one);
        });
    } else {
        x.chunks_exact(d).zip(y.chunks_exact_mut(d).zip(stats.iter_mut())).for_each(one);
    }
    (y, stats)
}

/// The backward over rows: `dx`, and the row sums `dgamma`, `dbeta` (f64 inside).
fn backward_rows(x: &[f32], gamma: &[f32], stats: &[[f32; 2]], dy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let d = gamma.len();
    let mut dx = vec![0.0f32; x.len()];
    // One block of rows: its dx rows, and its partial sums for gamma and beta.
    let block = |xc: &[f32], dyc: &[f32], sc: &[[f32; 2]], dxc: &mut [f32]| -> (Vec<f64>, Vec<f64>) {
        let (mut dgamma, mut dbeta) = (vec![0.0f64; d], vec![0.0f64; d]);
        let mut xhat = vec![0.0f32; d];
        for (((xr, dyr), &[mean, r]), dxr) in xc.chunks_exact(d).zip(dyc.chunks_exact(d)).zip(sc).zip(dxc.chunks_exact_mut(d)) {
            let (mut sum_g, mut sum_gx) = (0.0f64, 0.0f64);
            for j in 0..d {
                xhat[j] = (xr[j] - mean) * r;
                let g = gamma[j] * dyr[j];
                sum_g += g as f64;
                sum_gx += (g * xhat[j]) as f64;
                dgamma[j] += (dyr[j] * xhat[j]) as f64;
                dbeta[j] += dyr[j] as f64;
            }
            let (mean_g, mean_gx) = ((sum_g / d as f64) as f32, (sum_gx / d as f64) as f32);
            for j in 0..d {
                dxr[j] = r * (gamma[j] * dyr[j] - mean_g - xhat[j] * mean_gx);
            }
        }
        (dgamma, dbeta)
    };
    let rows = x.len() / d;
    let (dgamma, dbeta) = if rows >= 2 * ROWS_PER_TASK {
        let span = d * ROWS_PER_TASK;
        x.par_chunks(span).zip(dy.par_chunks(span)).zip(stats.par_chunks(ROWS_PER_TASK)).zip(dx.par_chunks_mut(span)).map(|(((xc, dyc), sc), dxc)| block(xc, dyc, sc, dxc)).reduce(
            || (vec![0.0; d], vec![0.0; d]),
            |(mut ga, mut ba), (gb, bb)| {
                ga.iter_mut().zip(gb).for_each(|(a, b)| *a += b);
                ba.iter_mut().zip(bb).for_each(|(a, b)| *a += b);
                (ga, ba)
            },
        )
    } else {
        block(x, dy, stats, &mut dx)
    };
    (dx, dgamma.into_iter().map(|v| v as f32).collect(), dbeta.into_iter().map(|v| v as f32).collect())
}

fn forward_flex(x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor, epsilon: f64) -> (FlexTensor, Vec<[f32; 2]>) {
    let shape = x.layout().shape().clone();
    let d = shape[shape.num_dims() - 1];
    let (gv, bv) = (f32_values(gamma), f32_values(beta));
    assert!(gv.len() == d && bv.len() == d, "fused layer norm: gamma {} and beta {} values for rows of {d}", gv.len(), bv.len());
    let (y, stats) = forward_rows(&f32_values(x), &gv, &bv, epsilon);
    (flex_tensor(y, shape), stats)
}

impl FusedLayerNormBackend for Flex {
    fn fused_layer_norm(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, epsilon: f64) -> FlexTensor {
        forward_flex(&x, &gamma, &beta, epsilon).0
    }
}

/// What the backward needs: the input, gamma, each row's (mean, reciprocal std).
#[derive(Clone, Debug)]
struct SavedNorm {
    x: FlexTensor,
    gamma: FlexTensor,
    stats: Vec<[f32; 2]>,
}

#[derive(Debug)]
struct FusedLayerNormBackward;

impl Backward<Flex, 3> for FusedLayerNormBackward {
    type State = SavedNorm;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let s = ops.state;
        let shape = s.x.layout().shape().clone();
        let d = shape[shape.num_dims() - 1];
        let (dx, dgamma, dbeta) = backward_rows(&f32_values(&s.x), &f32_values(&s.gamma), &s.stats, &f32_values(&dy));
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, flex_tensor(dx, shape));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, flex_tensor(dgamma, [d]));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, flex_tensor(dbeta, [d]));
        }
    }
}

impl<C: CheckpointStrategy> FusedLayerNormBackend for Autodiff<Flex, C> {
    fn fused_layer_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, epsilon: f64) -> FloatTensor<Self> {
        let nodes = [x.node(), gamma.node(), beta.node()];
        let (x, gamma, beta) = (x.into_primitive(), gamma.into_primitive(), beta.into_primitive());
        let (y, stats) = forward_flex(&x, &gamma, &beta, epsilon);
        // Kept, not recomputed, under a checkpointing strategy (as the fused attention).
        match FusedLayerNormBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(SavedNorm { x, gamma, stats }, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LayerNormConfig;
    use burn::tensor::Distribution;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    fn assert_close(name: &str, a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len(), "{name}: lengths");
        let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst <= tol * scale, "{name}: worst difference {worst} (scale {scale})");
    }

    /// Values and the gradients of x, gamma and beta against Burn's decomposed LayerNorm on the
    /// same device, for a small case (one thread) and one above the parallel threshold, with a
    /// non-contiguous input.
    #[test]
    fn matches_burns_layer_norm_in_values_and_gradients() {
        let device = Device::flex().autodiff();
        // Rows of spread 2 and of spread 0.01, where epsilon moves the result by a few per cent.
        for (dims, spread) in [([3, 5, 8], 2.0), ([4, 300, 16], 2.0), ([2, 7, 8], 0.01)] {
            let mut norm = LayerNormConfig::new(dims[2]).with_epsilon(EPSILON).init(&device);
            // Non-trivial gamma and beta (Burn initialises ones and zeros).
            norm.gamma = burn::module::Param::from_tensor(Tensor::<1>::random([dims[2]], Distribution::Uniform(0.5, 1.5), &device));
            norm.beta = Some(burn::module::Param::from_tensor(Tensor::<1>::random([dims[2]], Distribution::Normal(0.0, 0.5), &device)));
            let x = Tensor::<3>::random([dims[0], dims[2], dims[1]], Distribution::Normal(1.0, spread), &device).swap_dims(1, 2);
            let w = Tensor::<3>::random(dims, Distribution::Normal(0.0, 1.0), &device);
            let run = |fused: bool| {
                let x = x.clone().require_grad();
                let y = if fused { forward(&norm, x.clone()) } else { norm.forward(x.clone()) };
                let grads = (y.clone() * w.clone()).sum().backward();
                let g = |p: &burn::module::Param<Tensor<1>>| values(p.val().grad(&grads).unwrap());
                (values(y), values(x.grad(&grads).unwrap()), g(&norm.gamma), g(norm.beta.as_ref().unwrap()))
            };
            let (fused, burn) = (run(true), run(false));
            assert_close(&format!("{dims:?}: output"), &fused.0, &burn.0, 1e-5);
            assert_close(&format!("{dims:?}: dx"), &fused.1, &burn.1, 1e-4);
            assert_close(&format!("{dims:?}: dgamma"), &fused.2, &burn.2, 1e-4);
            assert_close(&format!("{dims:?}: dbeta"), &fused.3, &burn.3, 1e-5);
        }
    }

    /// The input's gradient against central finite differences of the op itself (f64 sums).
    #[test]
    fn input_gradient_matches_finite_differences() {
        let (d, rows) = (6, 3);
        let x: Vec<f32> = (0..rows * d).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.3).collect();
        let gamma: Vec<f32> = (0..d).map(|j| 0.5 + 0.1 * j as f32).collect();
        let beta: Vec<f32> = (0..d).map(|j| 0.05 * j as f32).collect();
        let w: Vec<f32> = (0..rows * d).map(|i| ((i * 13 % 7) as f32 - 3.0) * 0.25).collect();
        let loss = |x: &[f32]| forward_rows(x, &gamma, &beta, 1e-5).0.iter().zip(&w).map(|(y, w)| (*y as f64) * (*w as f64)).sum::<f64>();
        let (_, stats) = forward_rows(&x, &gamma, &beta, 1e-5);
        let (dx, _, _) = backward_rows(&x, &gamma, &stats, &w);
        for i in 0..x.len() {
            let h = 1e-2f32;
            let (mut up, mut down) = (x.clone(), x.clone());
            up[i] += h;
            down[i] -= h;
            let numeric = (loss(&up) - loss(&down)) / (2.0 * h as f64);
            assert!((dx[i] as f64 - numeric).abs() < 2e-3, "dx[{i}]: {} against {numeric}", dx[i]);
        }
    }

    #[test]
    fn inference_and_other_paths_are_burns() {
        let plain = Device::flex();
        let norm = LayerNormConfig::new(4).with_epsilon(EPSILON).init(&plain);
        let x = Tensor::<2>::random([3, 4], Distribution::Normal(0.0, 1.0), &plain);
        assert_eq!(values(forward(&norm, x.clone())), values(norm.forward(x)), "no autodiff: Burn's own LayerNorm");
    }
}
