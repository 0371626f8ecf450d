//! MulT's transformer encoder: pre-LayerNorm layers whose query and key/value inputs are both
//! scaled by sqrt(d) and get sinusoidal positions; one LayerNorm per layer normalises both.
//!
//! Two modes, as MulT's `TransformerEncoder.forward(x_in, x_in_k, x_in_v)`:
//! - cross-modal (`Some(keys_values)`): the key/value sequence is embedded once and every layer
//!   attends to that embedded input (MulT's `trans_l_with_a` and friends);
//! - self-attention (`None`): every layer attends to its own current input (MulT's
//!   `trans_l_mem`, the branches' temporal transformers).

use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear};
use burn::prelude::*;
use burn::tensor::Bool;
use burn::tensor::activation::relu;

use super::attention::{CrossModalAttention, CrossModalAttentionConfig, LayerTrace, Probe, xavier_linear};
use super::{dropout, fused_layer_norm, masks};

/// Configuration of a `CrossModalEncoder` (one transformer's share of `ModelConfig`).
#[derive(Config, Debug)]
pub struct CrossModalEncoderConfig {
    /// Width d of inputs and outputs.
    pub d_model: usize,
    /// Number of encoder layers.
    pub layers: usize,
    /// Attention heads per layer; must divide `d_model`.
    pub heads: usize,
    /// Dropout on the attention probabilities (default 0.0).
    #[config(default = 0.0)]
    pub attn_dropout: f64,
    /// Dropout after the feed-forward ReLU (default 0.0).
    #[config(default = 0.0)]
    pub relu_dropout: f64,
    /// Dropout on each sub-layer's output before its residual add (default 0.0).
    #[config(default = 0.0)]
    pub res_dropout: f64,
    /// Dropout on the embedded (scaled, position-added) inputs (default 0.0).
    #[config(default = 0.0)]
    pub embed_dropout: f64,
    /// Apply MulT's future mask in every layer (default off).
    #[config(default = false)]
    pub causal_mask: bool,
    /// Give frames whose first feature is 0 the zero position vector, as MulT does (default off).
    #[config(default = false)]
    pub positions_from_first_feature: bool,
}

/// One pre-LayerNorm layer: attention, then a d -> 4d -> d ReLU feed-forward, each with a residual.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    /// Attention of the normalised queries over the normalised keys/values.
    pub attention: CrossModalAttention,
    /// Shared by the query and the key/value stream (MulT's `layer_norms[0]`).
    pub attn_norm: LayerNorm,
    /// LayerNorm before the feed-forward block (MulT's `layer_norms[1]`).
    pub ffn_norm: LayerNorm,
    /// Feed-forward expansion, d -> 4d.
    pub fc1: Linear,
    /// Feed-forward projection, 4d -> d.
    pub fc2: Linear,
    /// Dropout after the feed-forward ReLU.
    pub relu_dropout: Dropout,
    /// Dropout on both sub-layer outputs before their residual adds.
    pub res_dropout: Dropout,
}

/// One MulT transformer `Y <- X`: X gives the queries, Y the keys and values. With X == Y it
/// is a self-attention encoder.
#[derive(Module, Debug)]
pub struct CrossModalEncoder {
    /// The layers, applied in order.
    pub layers: Vec<EncoderLayer>,
    /// LayerNorm on the last layer's output.
    pub final_norm: LayerNorm,
    /// Dropout on the embedded inputs (a separate mask for queries, keys and values).
    pub embed_dropout: Dropout,
    /// Width d; inputs are scaled by sqrt(d) before positions are added.
    pub d_model: usize,
    /// Whether every layer applies MulT's future mask.
    pub causal_mask: bool,
    /// Whether frames whose first feature is 0 get the zero position vector (MulT).
    pub positions_from_first_feature: bool,
}

impl CrossModalEncoderConfig {
    /// Build the encoder with MulT's initialisation (Xavier-uniform weights, zero biases).
    pub fn init(&self, device: &Device) -> CrossModalEncoder {
        let d = self.d_model;
        let layers = (0..self.layers)
            .map(|_| EncoderLayer {
                attention: CrossModalAttentionConfig::new(d, self.heads).with_dropout(self.attn_dropout).init(device),
                attn_norm: LayerNormConfig::new(d).with_epsilon(fused_layer_norm::EPSILON).init(device),
                ffn_norm: LayerNormConfig::new(d).with_epsilon(fused_layer_norm::EPSILON).init(device),
                // MulT's `Linear` helper: Xavier-uniform weights, zero biases.
                fc1: xavier_linear(d, 4 * d, device),
                fc2: xavier_linear(4 * d, d, device),
                relu_dropout: DropoutConfig::new(self.relu_dropout).init(),
                res_dropout: DropoutConfig::new(self.res_dropout).init(),
            })
            .collect();
        CrossModalEncoder {
            layers,
            final_norm: LayerNormConfig::new(d).with_epsilon(fused_layer_norm::EPSILON).init(device),
            embed_dropout: DropoutConfig::new(self.embed_dropout).init(),
            d_model: d,
            causal_mask: self.causal_mask,
            positions_from_first_feature: self.positions_from_first_feature,
        }
    }
}

/// What a layer attends to.
// One value per forward pass, borrowed by every layer: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum KeysValues {
    /// Self-attention: the layer's own input.
    Own,
    /// Cross-modal: the embedded key and value inputs (the same sequence, embedded twice so that
    /// each carries its own embedding-dropout mask in training, as in MulT).
    Cross { keys: Tensor<3>, values: Tensor<3> },
}

impl EncoderLayer {
    fn forward(&self, x: Tensor<3>, kv: &KeysValues, mask: Option<Tensor<4, Bool>>, probe: Probe) -> (Tensor<3>, LayerTrace) {
        let residual = x.clone();
        let q = fused_layer_norm::forward(&self.attn_norm, x);
        let (attn, trace) = match kv {
            KeysValues::Own => self.attention.forward(q.clone(), q.clone(), q, mask, probe),
            KeysValues::Cross { keys, values } => {
                let k = fused_layer_norm::forward(&self.attn_norm, keys.clone());
                let v = fused_layer_norm::forward(&self.attn_norm, values.clone());
                self.attention.forward(q, k, v, mask, probe)
            }
        };
        let x = residual + dropout::apply(&self.res_dropout, attn);
        let residual = x.clone();
        let h = relu(self.fc1.forward(fused_layer_norm::forward(&self.ffn_norm, x)));
        let h = self.fc2.forward(dropout::apply(&self.relu_dropout, h));
        (residual + dropout::apply(&self.res_dropout, h), trace)
    }
}

impl CrossModalEncoder {
    /// Scale by sqrt(d), add positions (MulT's encoder preamble); embedding dropout is applied
    /// by the caller, once per use of the result.
    fn embed(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, l, d] = x.dims();
        let device = x.device();
        let table = masks::sinusoidal_table(l, d, &device).unsqueeze_dim::<3>(0);
        let positions = if self.positions_from_first_feature {
            // MulT derives positions from the first feature: an exactly-zero frame is padding
            // and gets the zero vector.
            let nonzero = x.clone().narrow(2, 0, 1).not_equal_elem(0.0).float();
            table.expand([b, l, d]) * nonzero
        } else {
            table.expand([b, l, d])
        };
        x.mul_scalar((self.d_model as f64).sqrt()) + positions
    }

    /// `queries`: [B, Lq, d]; `keys_values`: [B, Lk, d] for a cross-modal transformer, `None` for
    /// self-attention over `queries`; `key_lengths`: per-sample valid key counts when key padding
    /// is masked. Returns the encoded queries [B, Lq, d] and one trace per layer (empty unless
    /// probed).
    pub fn forward(&self, queries: Tensor<3>, keys_values: Option<Tensor<3>>, key_lengths: Option<&[usize]>, probe: Probe) -> (Tensor<3>, Vec<LayerTrace>) {
        let [b, lq, _] = queries.dims();
        let lk = keys_values.as_ref().map_or(lq, |kv| kv.dims()[1]);
        let device = queries.device();
        let mut mask: Option<Tensor<4, Bool>> = None;
        if self.causal_mask {
            mask = Some(masks::future_mask(lq, lk, &device).reshape([1, 1, lq, lk]));
        }
        if let Some(lengths) = key_lengths {
            let pad = masks::key_padding_mask(lengths, lk, &device).reshape([b, 1, 1, lk]);
            mask = Some(match mask {
                Some(m) => m.expand([b, 1, lq, lk]).bool_or(pad.expand([b, 1, lq, lk])),
                None => pad,
            });
        }
        let mut x = dropout::apply(&self.embed_dropout, self.embed(queries));
        let kv = match keys_values {
            None => KeysValues::Own,
            Some(kv) => {
                let embedded = self.embed(kv);
                KeysValues::Cross { keys: dropout::apply(&self.embed_dropout, embedded.clone()), values: dropout::apply(&self.embed_dropout, embedded) }
            }
        };
        let mut traces = Vec::with_capacity(if probe.is_empty() { 0 } else { self.layers.len() });
        for layer in &self.layers {
            let (next, trace) = layer.forward(x, &kv, mask.clone(), probe);
            x = next;
            if !probe.is_empty() {
                traces.push(trace);
            }
        }
        (fused_layer_norm::forward(&self.final_norm, x), traces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_util::to_vec;
    use burn::tensor::{Distribution, TensorData};

    /// Loss = sum(encoder(q, kv) * w) for a fixed w; returns (loss, d loss / d q, d loss / d kv).
    fn loss_and_grads(enc: &CrossModalEncoder, q: &[f32], kv: &[f32], w: &Tensor<3>, dims: ([usize; 3], [usize; 3]), device: &Device) -> (f32, Vec<f32>, Vec<f32>) {
        let qt = Tensor::<3>::from_data(TensorData::new(q.to_vec(), dims.0), device).require_grad();
        let kt = Tensor::<3>::from_data(TensorData::new(kv.to_vec(), dims.1), device).require_grad();
        let (out, _) = enc.forward(qt.clone(), Some(kt.clone()), None, Probe::NONE);
        let loss = (out * w.clone()).sum();
        let grads = loss.backward();
        let gq = to_vec(qt.grad(&grads).expect("grad of queries"));
        let gk = to_vec(kt.grad(&grads).expect("grad of keys"));
        (to_vec(loss.inner())[0], gq, gk)
    }

    #[test]
    fn gradients_match_finite_differences() {
        let device = Device::flex().autodiff();
        crate::model::dropout::seed(&device, 11);
        // Causal mask and first-feature positions on: every code path of the encoder.
        let enc = CrossModalEncoderConfig::new(8, 2, 2).with_causal_mask(true).with_positions_from_first_feature(true).init(&device);
        let (qd, kd) = ([1, 3, 8], [1, 4, 8]);
        let plain = Device::flex();
        crate::model::dropout::seed(&plain, 12);
        let q = to_vec(Tensor::<3>::random(qd, Distribution::Normal(0.0, 0.5), &plain));
        let kv = to_vec(Tensor::<3>::random(kd, Distribution::Normal(0.0, 0.5), &plain));
        let w = Tensor::<3>::random(qd, Distribution::Normal(0.0, 1.0), &device);
        let (_, gq, gk) = loss_and_grads(&enc, &q, &kv, &w, (qd, kd), &device);
        let loss_at = |q: &[f32], kv: &[f32]| loss_and_grads(&enc, q, kv, &w, (qd, kd), &device).0 as f64;
        // Central difference for coordinate i of the query (or key) input at step eps.
        let fd = |is_q: bool, i: usize, eps: f32| -> f64 {
            let shifted = |sign: f32| {
                let (mut q2, mut k2) = (q.clone(), kv.clone());
                if is_q {
                    q2[i] += sign * eps
                } else {
                    k2[i] += sign * eps
                }
                loss_at(&q2, &k2)
            };
            (shifted(1.0) - shifted(-1.0)) / (2.0 * eps as f64)
        };
        let (mut checked, mut total) = (0, 0);
        for (input, grad, is_q) in [(&q, &gq, true), (&kv, &gk, false)] {
            for i in (0..input.len()).step_by(3) {
                total += 1;
                let (coarse, fine) = (fd(is_q, i, 2e-3), fd(is_q, i, 1e-3));
                // Weights are random, so a ReLU kink can sit inside the step: there the two
                // step sizes disagree and the function is not differentiable; skip it.
                if (coarse - fine).abs() > 5e-3 * (1.0 + fine.abs()) {
                    continue;
                }
                checked += 1;
                let err = (fine - grad[i] as f64).abs() / (1.0 + fine.abs());
                assert!(err < 1e-2, "{} input {i}: finite difference {fine} vs autodiff {}", if is_q { "query" } else { "key" }, grad[i]);
            }
        }
        assert!(checked * 5 >= total * 4, "only {checked} of {total} coordinates were smooth enough to check");
        assert!(gq.iter().any(|g| g.abs() > 1e-6), "queries must receive gradient");
        assert!(gk.iter().any(|g| g.abs() > 1e-6), "keys must receive gradient");
    }

    /// Issue 7: a 2-layer encoder against a naive loop implementation of MulT's encoder, in
    /// both modes. In self-attention the second layer must attend to the first layer's output;
    /// the old code (every layer attending to the layer-0 input) fails the self-attention case.
    #[test]
    fn two_layer_encoder_matches_a_naive_reference_in_both_modes() {
        use crate::model::test_util::{Rows, naive_encoder};
        let device = Device::flex();
        crate::model::dropout::seed(&device, 31);
        let enc = CrossModalEncoderConfig::new(8, 2, 2).with_causal_mask(true).with_positions_from_first_feature(true).init(&device);
        let mut x = to_vec(Tensor::<3>::random([1, 5, 8], Distribution::Normal(0.0, 1.0), &device));
        x[4 * 8..].iter_mut().for_each(|v| *v = 0.0); // a padding frame: zero position vector
        let kv = to_vec(Tensor::<3>::random([1, 3, 8], Distribution::Normal(0.0, 1.0), &device));
        let rows = |v: &[f32]| -> Rows { v.chunks(8).map(|r| r.iter().map(|&a| a as f64).collect()).collect() };
        let tensor = |v: &[f32], l: usize| Tensor::<3>::from_data(TensorData::new(v.to_vec(), [1, l, 8]), &device);
        for cross in [false, true] {
            let (out, _) = enc.forward(tensor(&x, 5), cross.then(|| tensor(&kv, 3)), None, Probe::NONE);
            let want = naive_encoder(&enc, &rows(&x), cross.then(|| rows(&kv)).as_ref());
            let got = to_vec(out);
            for (g, w) in got.iter().zip(want.iter().flatten()) {
                assert!((*g as f64 - w).abs() < 2e-5, "cross = {cross}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn traces_have_one_entry_per_layer_with_the_right_shapes() {
        let device = Device::flex();
        let enc = CrossModalEncoderConfig::new(8, 3, 2).init(&device);
        let q = Tensor::<3>::zeros([2, 5, 8], &device);
        let kv = Tensor::<3>::ones([2, 7, 8], &device);
        let (out, traces) = enc.forward(q.clone(), Some(kv.clone()), None, Probe { map_temperature: Some(2.0), post_attention: true });
        assert_eq!(out.dims(), [2, 5, 8]);
        assert_eq!(traces.len(), 3);
        for t in &traces {
            assert_eq!(t.map.as_ref().unwrap().dims(), [2, 5, 7]);
            assert_eq!(t.post_attention.as_ref().unwrap().dims(), [2, 5, 8]);
        }
        let (_, none) = enc.forward(q, Some(kv), None, Probe::NONE);
        assert!(none.is_empty(), "no probe, no traces");
    }
}
