//! Multi-head attention that can hand out what distillation needs.
//!
//! burn-nn's `MultiHeadAttention` returns per-head probabilities but has no temperature and
//! always computes them; the fused `attention` op returns none. This module computes the
//! attention once and, only when asked, also returns the head-averaged map (optionally through a
//! temperature softmax on the same scores, eq. 10-11 of the paper) and the post-attention output.

use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::Bool;
use burn::tensor::activation::softmax;

use super::fused_attention;

/// What a forward pass should record for distillation. The default records nothing, so
/// inference pays for no maps.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Probe {
    /// Record the head-averaged attention map, computed with this softmax temperature.
    pub map_temperature: Option<f32>,
    /// Record the post-attention output (heads concatenated and projected).
    pub post_attention: bool,
}

impl Probe {
    /// Records nothing (the default): plain inference.
    pub const NONE: Probe = Probe { map_temperature: None, post_attention: false };

    /// Whether the probe records nothing.
    pub fn is_empty(&self) -> bool {
        self.map_temperature.is_none() && !self.post_attention
    }
}

/// What one attention layer recorded.
#[derive(Clone, Debug, Default)]
pub struct LayerTrace {
    /// [batch, queries, keys], rows sum to one.
    pub map: Option<Tensor<3>>,
    /// [batch, queries, d_model].
    pub post_attention: Option<Tensor<3>>,
}

/// Configuration of a `CrossModalAttention`.
#[derive(Config, Debug)]
pub struct CrossModalAttentionConfig {
    /// Width d of queries, keys, values and output.
    pub d_model: usize,
    /// Number of heads; must divide `d_model`.
    pub heads: usize,
    /// Dropout on the attention probabilities (default 0.0).
    #[config(default = 0.0)]
    pub dropout: f64,
}

/// Scaled dot-product attention over `heads` heads; queries and keys may come from different
/// modalities (cross-modal) or the same one (self-attention).
#[derive(Module, Debug)]
pub struct CrossModalAttention {
    /// Query projection, d -> d.
    pub query: Linear,
    /// Key projection, d -> d.
    pub key: Linear,
    /// Value projection, d -> d.
    pub value: Linear,
    /// Output projection of the concatenated heads, d -> d.
    pub output: Linear,
    /// Dropout on the attention probabilities.
    pub dropout: Dropout,
    /// Number of heads (each of width d / heads).
    pub heads: usize,
}

impl CrossModalAttentionConfig {
    /// MulT's initialisation (fairseq's `MultiheadAttention.reset_parameters`): the query, key
    /// and value projections are one `[3d, d]` matrix initialised Xavier-uniform as a whole, so
    /// each third is uniform in +-sqrt(6 / (d + 3d)); the output projection is Xavier-uniform
    /// over `[d, d]`; every bias starts at zero.
    pub fn init(&self, device: &Device) -> CrossModalAttention {
        assert!(self.d_model.is_multiple_of(self.heads), "d_model ({}) must be divisible by heads ({})", self.d_model, self.heads);
        let d = self.d_model;
        let in_bound = (6.0 / (d + 3 * d) as f64).sqrt();
        let in_proj = || zero_bias(LinearConfig::new(d, d).with_initializer(Initializer::Uniform { min: -in_bound, max: in_bound }).init(device));
        CrossModalAttention { query: in_proj(), key: in_proj(), value: in_proj(), output: xavier_linear(d, d, device), dropout: DropoutConfig::new(self.dropout).init(), heads: self.heads }
    }
}

/// A linear layer initialised as MulT's `Linear` helper does: Xavier-uniform weight, zero bias.
pub fn xavier_linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
    zero_bias(LinearConfig::new(d_in, d_out).with_initializer(Initializer::XavierUniform { gain: 1.0 }).init(device))
}

/// Burn draws a bias from the weight's initializer; MulT starts biases at zero.
fn zero_bias(mut linear: Linear) -> Linear {
    if let Some(bias) = &linear.bias {
        let [n] = bias.val().dims();
        let device = bias.val().device();
        linear.bias = Some(Param::from_tensor(Tensor::zeros([n], &device)));
    }
    linear
}

impl CrossModalAttention {
    /// Whether dropout on the probabilities does anything in this call (Burn's `Dropout` rule:
    /// a rate above zero, the layer in training mode, and a device that records a backward).
    fn dropout_active(&self, x: &Tensor<3>) -> bool {
        self.dropout.prob > 0.0 && self.dropout.training.is_enabled() && x.device().is_autodiff()
    }

    /// `query`: [B, Lq, d]; `key`, `value`: [B, Lk, d] (MulT feeds them separately: in training
    /// they carry different embedding-dropout masks); `mask`: true where attention is
    /// forbidden, broadcastable to [B, heads, Lq, Lk] (given as [B or 1, 1, Lq or 1, Lk]).
    pub fn forward(&self, query: Tensor<3>, key: Tensor<3>, value: Tensor<3>, mask: Option<Tensor<4, Bool>>, probe: Probe) -> (Tensor<3>, LayerTrace) {
        let [b, lq, d] = query.dims();
        let lk = key.dims()[1];
        let h = self.heads;
        let dh = d / h;
        if fused_attention::enabled_for(&query.device()) {
            // One fused op: no per-head [B, h, Lq, Lk] float tensor in memory or in the autodiff
            // graph (a probed map is one [B, Lq, Lk]; active dropout keeps a byte mask).
            let dropout = self.dropout_active(&query).then(|| fused_attention::AttentionDropout::draw(self.dropout.prob, [b, h, lq, lk], &query.device()));
            let q = self.query.forward(query).reshape([b, lq, h, dh]);
            let k = self.key.forward(key).reshape([b, lk, h, dh]);
            let v = self.value.forward(value).reshape([b, lk, h, dh]);
            let scale = 1.0 / (dh as f64).sqrt();
            let (context, map) = match probe.map_temperature {
                None => (fused_attention::fused_attention(q, k, v, mask, dropout, scale), None),
                Some(t) => {
                    let (context, map) = fused_attention::fused_attention_with_map(q, k, v, mask, dropout, scale, t as f64);
                    (context, Some(map))
                }
            };
            let out = self.output.forward(context.reshape([b, lq, d]));
            let trace = LayerTrace { map, post_attention: probe.post_attention.then(|| out.clone()) };
            return (out, trace);
        }
        self.forward_unfused(query, key, value, mask, probe)
    }

    /// The attention written out: scores, softmax, dropout, weighted values (and the map from
    /// the same scores). Taken where the fused op does not run (other backends, or
    /// `MMKD_FUSED_ATTENTION=0`); the fused path must agree with it (tests here, in
    /// `fused_attention` and in `tests/seeded.rs`). Public so that an integration test can
    /// compare both paths under the same seed.
    pub fn forward_unfused(&self, query: Tensor<3>, key: Tensor<3>, value: Tensor<3>, mask: Option<Tensor<4, Bool>>, probe: Probe) -> (Tensor<3>, LayerTrace) {
        let [b, lq, d] = query.dims();
        let lk = key.dims()[1];
        let h = self.heads;
        let dh = d / h;
        let split = |x: Tensor<3>, l: usize| x.reshape([b, l, h, dh]).swap_dims(1, 2);
        let q = split(self.query.forward(query), lq);
        let k = split(self.key.forward(key), lk);
        let v = split(self.value.forward(value), lk);

        let mut scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (dh as f64).sqrt());
        if let Some(mask) = mask {
            // A large negative rather than -inf: a fully masked row then stays finite.
            scores = scores.mask_fill(mask.expand([b, h, lq, lk]), -1.0e9);
        }
        let probs = softmax(scores.clone(), 3);

        let mut trace = LayerTrace::default();
        if let Some(t) = probe.map_temperature {
            // With t == 1 this is the attention itself; otherwise eq. 11 on the same scores.
            let tempered = if (t - 1.0).abs() < f32::EPSILON { probs.clone() } else { softmax(scores.div_scalar(t as f64), 3) };
            trace.map = Some(tempered.mean_dim(1).squeeze_dim(1));
        }

        let context = super::dropout::apply(&self.dropout, probs).matmul(v); // [B, h, Lq, dh]
        let context = context.swap_dims(1, 2).reshape([b, lq, d]);
        let out = self.output.forward(context);
        if probe.post_attention {
            trace.post_attention = Some(out.clone());
        }
        (out, trace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_util::{naive_attention, to_vec};

    #[test]
    fn matches_naive_f64_reference_with_maps_and_post_attention() {
        let device = Device::flex();
        crate::model::dropout::seed(&device, 7);
        let attn = CrossModalAttentionConfig::new(8, 2).init(&device);
        let q = Tensor::<3>::random([2, 3, 8], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let kv = Tensor::<3>::random([2, 5, 8], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        for (t, fused) in [(1.0f32, true), (2.5, true), (1.0, false), (2.5, false)] {
            let probe = Probe { map_temperature: Some(t), post_attention: true };
            let (out, trace) = if fused { attn.forward(q.clone(), kv.clone(), kv.clone(), None, probe) } else { attn.forward_unfused(q.clone(), kv.clone(), kv.clone(), None, probe) };
            let (ref_out, ref_map) = naive_attention(&attn, &q, &kv, None, t as f64);
            let out_v = to_vec(out.clone());
            let post_v = to_vec(trace.post_attention.unwrap());
            let map_v = to_vec(trace.map.unwrap());
            assert_eq!(out_v.len(), ref_out.len());
            for (a, b) in out_v.iter().zip(&ref_out) {
                assert!((*a as f64 - b).abs() < 1e-5, "output {a} vs {b}");
            }
            assert_eq!(out_v, post_v, "post-attention output is the projected attention output");
            for (a, b) in map_v.iter().zip(&ref_map) {
                assert!((*a as f64 - b).abs() < 1e-6, "map {a} vs {b} at t={t}");
            }
        }
    }

    /// MulT's initialisation: in-projections uniform within sqrt(6 / 4d) (one Xavier-uniform
    /// [3d, d] matrix), output projection within sqrt(6 / 2d), zero biases.
    #[test]
    fn initialised_like_mult() {
        let device = Device::flex();
        let d = 64;
        let attn = CrossModalAttentionConfig::new(d, 8).init(&device);
        for (layer, bound) in
            [(&attn.query, (6.0 / (4 * d) as f64).sqrt()), (&attn.key, (6.0 / (4 * d) as f64).sqrt()), (&attn.value, (6.0 / (4 * d) as f64).sqrt()), (&attn.output, (6.0 / (2 * d) as f64).sqrt())]
        {
            let w = to_vec(layer.weight.val());
            let max = w.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
            // 4,096 uniform draws: the largest lies within 0.2 % of the bound, almost surely.
            assert!(max <= bound && max > 0.99 * bound, "max |w| {max} vs bound {bound}");
            assert!(to_vec(layer.bias.as_ref().unwrap().val()).iter().all(|&b| b == 0.0), "bias must start at zero");
        }
    }

    #[test]
    fn masked_keys_get_no_weight_and_rows_sum_to_one() {
        let device = Device::flex();
        crate::model::dropout::seed(&device, 3);
        let attn = CrossModalAttentionConfig::new(8, 4).init(&device);
        let q = Tensor::<3>::random([1, 4, 8], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let kv = Tensor::<3>::random([1, 4, 8], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let mask = crate::model::masks::future_mask(4, 4, &device).unsqueeze_dims::<4>(&[0, 1]);
        let probe = Probe { map_temperature: Some(1.0), post_attention: false };
        for fused in [true, false] {
            let (out, trace) =
                if fused { attn.forward(q.clone(), kv.clone(), kv.clone(), Some(mask.clone()), probe) } else { attn.forward_unfused(q.clone(), kv.clone(), kv.clone(), Some(mask.clone()), probe) };
            let map = to_vec(trace.map.unwrap());
            for i in 0..4 {
                let row = &map[i * 4..i * 4 + 4];
                let s: f32 = row.iter().sum();
                assert!((s - 1.0).abs() < 1e-5);
                for (j, p) in row.iter().enumerate() {
                    if j > i {
                        assert_eq!(*p, 0.0, "future key {j} of query {i} must get no weight");
                    }
                }
            }
            let causal: Vec<Vec<bool>> = (0..4).map(|i| (0..4).map(|j| j > i).collect()).collect();
            let (ref_out, _) = naive_attention(&attn, &q, &kv, Some(&causal), 1.0);
            for (a, b) in to_vec(out).iter().zip(&ref_out) {
                assert!((*a as f64 - b).abs() < 1e-5);
            }
        }
    }
}
