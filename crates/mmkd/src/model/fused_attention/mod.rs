//! Fused scaled dot-product attention with its own backward, as a Burn backend extension.
//!
//! Burn's fused `attention` op exists on flex for inference, but burn-autodiff falls back to the
//! unfused decomposition, so training through it keeps every `[B, H, Lq, Lk]` score, probability
//! and their gradients (at MOSEI lengths 500 x 500 that is what made the paper's teacher step
//! need more than 24 GB). `FusedAttentionBackend::fused_attention` is one op with a hand-written
//! backward (`kernel.rs`): the autodiff graph holds its inputs, its output and four numbers per
//! query row and head (the softmax's row maximum and sum, and the same at the map's
//! temperature), and the backward recomputes the scores row by row.
//!
//! Implemented for `Flex` and `Autodiff<Flex>`; `supported` says whether a device can use it.
//! Maps at any temperature and attention dropout run inside the op; `CrossModalAttention` keeps
//! the unfused path only for other backends and for `MMKD_FUSED_ATTENTION=0`.

mod kernel;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::{BoolTensor, FloatTensor};
use burn::backend::{Autodiff, Backend, DispatchDevice, DispatchTensor, Flex, backend_extension};
use burn::prelude::*;
use burn::tensor::{Bool, TensorData};
use std::borrow::Cow;

pub use kernel::MASKED_SCORE;
use kernel::{Dims, DropView, MapSpec, MaskView};

/// Attention computed in one pass without materialising probabilities.
#[backend_extension(Flex, Autodiff)]
pub trait FusedAttentionBackend: Backend {
    /// `softmax(scale * q k^T, masked to -1e9) v` per head. `query`: `[B, Lq, H, dh]`; `key`,
    /// `value`: `[B, Lk, H, dh]`; `mask` (true = forbidden): `[B or 1, 1, Lq or 1, Lk]` (the
    /// extension macro takes no optional tensors: an all-false mask means none). Returns
    /// `[B, Lq, H, dh]`.
    ///
    /// `keep` (`[B, H, Lq, Lk]`, true = kept) is the dropout mask on the probabilities when
    /// `dropout > 0` (kept values are scaled by `1 / (1 - dropout)`, as Burn's `Dropout` does);
    /// with `dropout == 0` it is ignored (any shape).
    fn fused_attention(query: FloatTensor<Self>, key: FloatTensor<Self>, value: FloatTensor<Self>, mask: BoolTensor<Self>, keep: BoolTensor<Self>, dropout: f64, scale: f64) -> FloatTensor<Self>;

    /// `fused_attention` that also returns the head-averaged map `mean_h softmax(s_h / t)`
    /// (eq. 10-11), differentiable, without keeping per-head probabilities: the output
    /// (`[B, Lq, H * dh]`) and the map (`[B, Lq, Lk]`) side by side, `[B, Lq, H * dh + Lk]`
    /// (one tensor, so one backward receives both gradients).
    /// The map is taken before dropout (as on the unfused path).
    fn fused_attention_with_map(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
        mask: BoolTensor<Self>,
        keep: BoolTensor<Self>,
        dropout: f64,
        scale: f64,
        temperature: f64,
    ) -> FloatTensor<Self>;
}

/// Whether `device` runs the fused op (flex, with or without autodiff).
pub fn supported(device: &Device) -> bool {
    matches!(device.clone().inner().as_dispatch(), DispatchDevice::Flex(_))
}

/// The environment variable that turns the fused path off (`MMKD_FUSED_ATTENTION=0`), for
/// benchmarks of the unfused path and as an escape hatch; read once per process.
pub const DISABLE_VAR: &str = "MMKD_FUSED_ATTENTION";

/// Whether attention on `device` should take the fused path: supported, and not turned off.
pub fn enabled_for(device: &Device) -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| !matches!(std::env::var(DISABLE_VAR).as_deref(), Ok("0" | "false" | "off"))) && supported(device)
}

/// Dropout on the probabilities inside the fused op: the rate and the keep mask
/// (`[B, H, Lq, Lk]`, true = kept), drawn by the caller from the device's generator.
#[derive(Clone, Debug)]
pub struct AttentionDropout {
    /// The dropout rate p (kept values are scaled by 1 / (1 - p)).
    pub rate: f64,
    /// True where a probability is kept.
    pub keep: Tensor<4, Bool>,
}

impl AttentionDropout {
    /// The mask Burn's `Dropout` would draw at this point for probabilities of `dims` on
    /// `device` (the same numbers: a Bernoulli draw of the keep probability per element, from
    /// `model::dropout`), so the fused and the unfused path drop the same entries.
    pub fn draw(rate: f64, dims: [usize; 4], device: &Device) -> AttentionDropout {
        let keep = super::dropout::keep_mask(1.0 - rate, dims, device);
        AttentionDropout { rate, keep }
    }
}

fn no_mask(lk: usize, device: &Device) -> Tensor<4, Bool> {
    Tensor::from_data(TensorData::new(vec![false; lk], [1, 1, 1, lk]), device)
}

fn dropout_parts(dropout: Option<AttentionDropout>, device: &Device) -> (DispatchTensor, f64) {
    match dropout {
        Some(d) => (d.keep.into_dispatch(), d.rate),
        None => (no_mask(1, device).into_dispatch(), 0.0),
    }
}

/// The fused attention on high-level tensors (see `FusedAttentionBackend::fused_attention`).
pub fn fused_attention(query: Tensor<4>, key: Tensor<4>, value: Tensor<4>, mask: Option<Tensor<4, Bool>>, dropout: Option<AttentionDropout>, scale: f64) -> Tensor<4> {
    let lk = key.dims()[1];
    let device = query.device();
    let mask = mask.unwrap_or_else(|| no_mask(lk, &device));
    let (keep, rate) = dropout_parts(dropout, &device);
    let out = <burn::backend::Dispatch as FusedAttentionBackend>::fused_attention(query.into_dispatch(), key.into_dispatch(), value.into_dispatch(), mask.into_dispatch(), keep, rate, scale);
    Tensor::from_dispatch(out)
}

/// `fused_attention` with the head-averaged map at `temperature`: returns the output
/// `[B, Lq, H, dh]` and the map `[B, Lq, Lk]` (rows sum to one).
pub fn fused_attention_with_map(
    query: Tensor<4>,
    key: Tensor<4>,
    value: Tensor<4>,
    mask: Option<Tensor<4, Bool>>,
    dropout: Option<AttentionDropout>,
    scale: f64,
    temperature: f64,
) -> (Tensor<4>, Tensor<3>) {
    let [b, lq, h, dh] = query.dims();
    let lk = key.dims()[1];
    let device = query.device();
    let mask = mask.unwrap_or_else(|| no_mask(lk, &device));
    let (keep, rate) = dropout_parts(dropout, &device);
    let joined = <burn::backend::Dispatch as FusedAttentionBackend>::fused_attention_with_map(
        query.into_dispatch(),
        key.into_dispatch(),
        value.into_dispatch(),
        mask.into_dispatch(),
        keep,
        rate,
        scale,
        temperature,
    );
    let joined = Tensor::<3>::from_dispatch(joined);
    let out = joined.clone().narrow(2, 0, h * dh).reshape([b, lq, h, dh]);
    let map = joined.narrow(2, h * dh, lk);
    (out, map)
}

/// A float tensor's values, contiguous (borrowed, without a copy, when they already are).
/// A flex tensor's values as a contiguous f32 slice (borrowed where it already is one); shared
/// with `fused_layer_norm`.
pub(super) fn f32_values(t: &FlexTensor) -> Cow<'_, [f32]> {
    assert_eq!(t.dtype(), burn::tensor::DType::F32, "fused ops: only f32 tensors");
    match t.as_slice::<f32>() {
        Some(values) => Cow::Borrowed(values),
        None => Cow::Owned(t.to_contiguous().as_slice::<f32>().expect("contiguous after to_contiguous").to_vec()),
    }
}

fn dims_of(query: &FlexTensor, key: &FlexTensor) -> Dims {
    let (qs, ks) = (query.layout().shape(), key.layout().shape());
    assert!(qs.num_dims() == 4 && ks.num_dims() == 4, "fused attention: query and key must be [B, L, H, dh]");
    assert!(qs[0] == ks[0] && qs[2] == ks[2] && qs[3] == ks[3], "fused attention: query {qs:?} and key {ks:?} disagree");
    Dims { batch: qs[0], lq: qs[1], lk: ks[1], heads: qs[2], dh: qs[3] }
}

/// A mask's bytes and its broadcast steps.
struct HostMask {
    data: Vec<u8>,
    batch_step: usize,
    row_step: usize,
}

impl HostMask {
    /// The mask's bytes, or `None` when nothing is forbidden.
    fn new(mask: &FlexTensor, d: &Dims) -> Option<HostMask> {
        let s = mask.layout().shape();
        assert!(
            s.num_dims() == 4 && (s[0] == 1 || s[0] == d.batch) && s[1] == 1 && (s[2] == 1 || s[2] == d.lq) && s[3] == d.lk,
            "fused attention: mask {s:?} is not [B or 1, 1, Lq or 1, Lk] for B={}, Lq={}, Lk={}",
            d.batch,
            d.lq,
            d.lk
        );
        let data: Vec<u8> = mask.clone().into_data().try_into_vec::<bool>().expect("fused attention: bool mask").into_iter().map(u8::from).collect();
        if data.iter().all(|&m| m == 0) {
            return None;
        }
        let row_step = if s[2] == 1 { 0 } else { d.lk };
        let batch_step = if s[0] == 1 { 0 } else { s[2] * d.lk };
        Some(HostMask { data, batch_step, row_step })
    }

    fn view(&self) -> MaskView<'_> {
        MaskView { data: &self.data, batch_step: self.batch_step, row_step: self.row_step }
    }
}

/// A dropout keep mask's bytes and scale, or `None` without dropout. Read once in the forward
/// and kept for the backward (the mask is unique to its call, so nothing is shared).
#[derive(Clone, Debug)]
struct HostDrop {
    keep: Vec<u8>,
    scale: f32,
}

impl HostDrop {
    fn new(keep: &FlexTensor, rate: f64, d: &Dims) -> Option<HostDrop> {
        if rate <= 0.0 {
            return None;
        }
        let s = keep.layout().shape();
        assert!(s.num_dims() == 4 && s[0] == d.batch && s[1] == d.heads && s[2] == d.lq && s[3] == d.lk, "fused attention: dropout mask {s:?} is not [B, H, Lq, Lk]");
        let keep: Vec<u8> = keep.clone().into_data().try_into_vec::<bool>().expect("fused attention: bool keep mask").into_iter().map(u8::from).collect();
        Some(HostDrop { keep, scale: (1.0 / (1.0 - rate)) as f32 })
    }

    fn view(&self) -> DropView<'_> {
        DropView { keep: &self.keep, scale: self.scale }
    }
}

/// A flex tensor of `values` in `shape`; shared with `fused_layer_norm`.
pub(super) fn flex_tensor(values: Vec<f32>, shape: impl Into<burn::tensor::Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// The forward on flex primitives. Without a map: the output `[B, Lq, H, dh]`; with one: the
/// output and the map side by side, `[B, Lq, H * dh + Lk]`. Also the row statistics.
fn forward_flex(query: &FlexTensor, key: &FlexTensor, value: &FlexTensor, mask: &FlexTensor, drop: Option<&HostDrop>, scale: f64, map: Option<MapSpec>) -> (FlexTensor, FlexTensor) {
    let d = dims_of(query, key);
    let mask = HostMask::new(mask, &d);
    let (q, k, v) = (f32_values(query), f32_values(key), f32_values(value));
    let f = kernel::forward(&q, &k, &v, mask.as_ref().map(HostMask::view), drop.map(HostDrop::view), scale as f32, map, d);
    let stats = flex_tensor(f.stats, [d.batch, d.heads, d.lq, 4]);
    let out = match f.map {
        None => flex_tensor(f.output, [d.batch, d.lq, d.heads, d.dh]),
        Some(m) => flex_tensor(join_rows(&f.output, d.heads * d.dh, &m, d.lk), [d.batch, d.lq, d.heads * d.dh + d.lk]),
    };
    (out, stats)
}

/// Rows of `a` (width `wa`) and `b` (width `wb`) side by side.
fn join_rows(a: &[f32], wa: usize, b: &[f32], wb: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    for (ra, rb) in a.chunks_exact(wa).zip(b.chunks_exact(wb)) {
        out.extend_from_slice(ra);
        out.extend_from_slice(rb);
    }
    out
}

/// The inverse of `join_rows`.
fn split_rows(x: &[f32], wa: usize, wb: usize) -> (Vec<f32>, Vec<f32>) {
    let rows = x.len() / (wa + wb);
    let (mut a, mut b) = (Vec::with_capacity(rows * wa), Vec::with_capacity(rows * wb));
    for r in x.chunks_exact(wa + wb) {
        a.extend_from_slice(&r[..wa]);
        b.extend_from_slice(&r[wa..]);
    }
    (a, b)
}

impl FusedAttentionBackend for Flex {
    fn fused_attention(query: FlexTensor, key: FlexTensor, value: FlexTensor, mask: FlexTensor, keep: FlexTensor, dropout: f64, scale: f64) -> FlexTensor {
        let drop = HostDrop::new(&keep, dropout, &dims_of(&query, &key));
        forward_flex(&query, &key, &value, &mask, drop.as_ref(), scale, None).0
    }

    fn fused_attention_with_map(query: FlexTensor, key: FlexTensor, value: FlexTensor, mask: FlexTensor, keep: FlexTensor, dropout: f64, scale: f64, temperature: f64) -> FlexTensor {
        let drop = HostDrop::new(&keep, dropout, &dims_of(&query, &key));
        forward_flex(&query, &key, &value, &mask, drop.as_ref(), scale, Some(MapSpec { temperature: temperature as f32 })).0
    }
}

/// What the backward needs: the inputs, the output, the row statistics, the map's spec.
#[derive(Clone, Debug)]
struct SavedAttention {
    query: FlexTensor,
    key: FlexTensor,
    value: FlexTensor,
    mask: FlexTensor,
    drop: Option<HostDrop>,
    output: FlexTensor,
    stats: FlexTensor,
    scale: f64,
    map: Option<MapSpec>,
}

#[derive(Debug)]
struct FusedAttentionBackward;

impl Backward<Flex, 3> for FusedAttentionBackward {
    type State = SavedAttention;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_q, node_k, node_v] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let s = ops.state;
        let d = dims_of(&s.query, &s.key);
        let mask = HostMask::new(&s.mask, &d);
        let (q, k, v) = (f32_values(&s.query), f32_values(&s.key), f32_values(&s.value));
        let (o, st, g) = (f32_values(&s.output), f32_values(&s.stats), f32_values(&grad));
        let width = d.heads * d.dh;
        let (o, g, grad_map) = match s.map {
            None => (o, g, None),
            Some(spec) => {
                let (o, _) = split_rows(&o, width, d.lk);
                let (g, gm) = split_rows(&g, width, d.lk);
                (Cow::Owned(o), Cow::Owned(g), Some((spec, gm)))
            }
        };
        let b = kernel::backward(
            &q,
            &k,
            &v,
            &o,
            &st,
            &g,
            mask.as_ref().map(HostMask::view),
            s.drop.as_ref().map(HostDrop::view),
            s.scale as f32,
            grad_map.as_ref().map(|(spec, gm)| (*spec, gm.as_slice())),
            d,
        );
        if let Some(node) = node_q {
            grads.register::<Flex>(node.id, flex_tensor(b.d_query, [d.batch, d.lq, d.heads, d.dh]));
        }
        if let Some(node) = node_k {
            grads.register::<Flex>(node.id, flex_tensor(b.d_key, [d.batch, d.lk, d.heads, d.dh]));
        }
        if let Some(node) = node_v {
            grads.register::<Flex>(node.id, flex_tensor(b.d_value, [d.batch, d.lk, d.heads, d.dh]));
        }
    }
}

/// The forward with its backward registered (both ops of the trait share it).
#[allow(clippy::too_many_arguments)]
fn tracked<C: CheckpointStrategy>(
    query: FloatTensor<Autodiff<Flex, C>>,
    key: FloatTensor<Autodiff<Flex, C>>,
    value: FloatTensor<Autodiff<Flex, C>>,
    mask: FlexTensor,
    keep: FlexTensor,
    dropout: f64,
    scale: f64,
    map: Option<MapSpec>,
) -> FloatTensor<Autodiff<Flex, C>> {
    let nodes = [query.node(), key.node(), value.node()];
    let (q, k, v) = (query.into_primitive(), key.into_primitive(), value.into_primitive());
    let drop = HostDrop::new(&keep, dropout, &dims_of(&q, &k));
    let (output, stats) = forward_flex(&q, &k, &v, &mask, drop.as_ref(), scale, map);
    // Compute-bound: checkpointing strategies recompute rather than keep it when they can.
    match FusedAttentionBackward.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let state = SavedAttention { query: q, key: k, value: v, mask, drop, output: output.clone(), stats, scale, map };
            prep.finish(state, output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}

impl<C: CheckpointStrategy> FusedAttentionBackend for Autodiff<Flex, C> {
    fn fused_attention(query: FloatTensor<Self>, key: FloatTensor<Self>, value: FloatTensor<Self>, mask: BoolTensor<Self>, keep: BoolTensor<Self>, dropout: f64, scale: f64) -> FloatTensor<Self> {
        tracked::<C>(query, key, value, mask, keep, dropout, scale, None)
    }

    fn fused_attention_with_map(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
        mask: BoolTensor<Self>,
        keep: BoolTensor<Self>,
        dropout: f64,
        scale: f64,
        temperature: f64,
    ) -> FloatTensor<Self> {
        tracked::<C>(query, key, value, mask, keep, dropout, scale, Some(MapSpec { temperature: temperature as f32 }))
    }
}

#[cfg(test)]
mod parallel_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use burn::tensor::activation::softmax;

    /// The unfused computation `attention.rs` does, on `[B, L, H, dh]` inputs.
    fn unfused(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Option<Tensor<4, Bool>>, scale: f64) -> Tensor<4> {
        let [b, lq, h, _] = q.dims();
        let lk = k.dims()[1];
        let (q, k, v) = (q.swap_dims(1, 2), k.swap_dims(1, 2), v.swap_dims(1, 2));
        let mut scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
        if let Some(mask) = mask {
            scores = scores.mask_fill(mask.expand([b, h, lq, lk]), MASKED_SCORE as f64);
        }
        softmax(scores, 3).matmul(v).swap_dims(1, 2)
    }

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
    }

    /// Output, map, dQ, dK, dV of one run.
    type Run = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

    /// Random q, k, v ([B, L, H, dh]), a weight for the output and one for the map, drawn in
    /// that order: the inputs of a loss that reads both the output and the map.
    fn random_map_case(device: &Device, b: usize, lq: usize, lk: usize, h: usize, dh: usize) -> (Tensor<4>, Tensor<4>, Tensor<4>, Tensor<4>, Tensor<3>) {
        let rand = |dims: [usize; 4]| Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), device);
        let (q, k, v, w_out) = (rand([b, lq, h, dh]), rand([b, lk, h, dh]), rand([b, lk, h, dh]), rand([b, lq, h, dh]));
        (q, k, v, w_out, Tensor::<3>::random([b, lq, lk], Distribution::Normal(0.0, 1.0), device))
    }

    /// Every tensor of a fused run against the unfused one: values at 1e-5, gradients at 1e-4.
    fn assert_runs_close(name: &str, fused: Run, unfused: Run) {
        assert_close(&format!("{name}: output"), fused.0, unfused.0, 1e-5);
        assert_close(&format!("{name}: map"), fused.1, unfused.1, 1e-5);
        assert_close(&format!("{name}: dQ"), fused.2, unfused.2, 1e-4);
        assert_close(&format!("{name}: dK"), fused.3, unfused.3, 1e-4);
        assert_close(&format!("{name}: dV"), fused.4, unfused.4, 1e-4);
    }

    fn assert_close(name: &str, a: Vec<f32>, b: Vec<f32>, tol: f32) {
        assert_eq!(a.len(), b.len(), "{name}: length");
        let scale = b.iter().fold(1e-3f32, |m, x| m.max(x.abs()));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!((x - y).abs() <= tol * scale, "{name}[{i}]: fused {x} vs unfused {y}");
        }
    }

    /// On flex with autodiff, the fused op's output and the gradients of query, key and value
    /// (under a loss that weights every output element differently) equal the unfused path's,
    /// with a causal mask, with key padding (one sample down to a single key:
    /// `key_padding_mask` keeps at least one) and with none. Fully masked rows, and sizes that
    /// run on rayon, are in `parallel_tests`.
    #[test]
    fn values_and_gradients_match_the_unfused_path() {
        let device = Device::flex().autodiff();
        crate::model::dropout::seed(&device, 11);
        let (b, lq, lk, h, dh) = (3, 7, 11, 2, 4);
        let rand = |dims: [usize; 4]| Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
        let q0 = rand([b, lq, h, dh]);
        let k0 = rand([b, lk, h, dh]);
        let v0 = rand([b, lk, h, dh]);
        let weights = rand([b, lq, h, dh]);
        let causal = crate::model::masks::future_mask(lq, lk, &device).reshape([1, 1, lq, lk]);
        let padding = crate::model::masks::key_padding_mask(&[3, 1, lk], lk, &device).reshape([b, 1, 1, lk]);
        let both = causal.clone().expand([b, 1, lq, lk]).bool_or(padding.clone().expand([b, 1, lq, lk]));
        let scale = 1.0 / (dh as f64).sqrt();
        for (name, mask) in [("no mask", None), ("causal", Some(causal)), ("padding", Some(padding)), ("both", Some(both))] {
            let run = |fused: bool| {
                let (q, k, v) = (q0.clone().require_grad(), k0.clone().require_grad(), v0.clone().require_grad());
                let out = if fused { fused_attention(q.clone(), k.clone(), v.clone(), mask.clone(), None, scale) } else { unfused(q.clone(), k.clone(), v.clone(), mask.clone(), scale) };
                let grads = (out.clone() * weights.clone()).sum().backward();
                let g = |t: &Tensor<4>| values(t.grad(&grads).expect("gradient"));
                (values(out), g(&q), g(&k), g(&v))
            };
            let (fo, fq, fk, fv) = run(true);
            let (uo, uq, uk, uv) = run(false);
            assert_close(&format!("{name}: output"), fo, uo, 1e-5);
            assert_close(&format!("{name}: dQ"), fq, uq, 1e-4);
            assert_close(&format!("{name}: dK"), fk, uk, 1e-4);
            assert_close(&format!("{name}: dV"), fv, uv, 1e-4);
        }
    }

    /// The map variant: output, head-averaged map and every gradient under a loss that weights
    /// both (each element differently) equal the unfused path's `softmax(s / t).mean(heads)`, at
    /// t = 1 and t = 2.5, with and without masks (one sample down to a single key).
    #[test]
    fn map_values_and_gradients_match_the_unfused_path() {
        let device = Device::flex().autodiff();
        crate::model::dropout::seed(&device, 23);
        let (b, lq, lk, h, dh) = (3, 6, 9, 2, 8);
        let (q0, k0, v0, w_out, w_map) = random_map_case(&device, b, lq, lk, h, dh);
        let causal = crate::model::masks::future_mask(lq, lk, &device).reshape([1, 1, lq, lk]);
        let padding = crate::model::masks::key_padding_mask(&[3, 0, lk], lk, &device).reshape([b, 1, 1, lk]);
        let scale = 1.0 / (dh as f64).sqrt();
        for t in [1.0, 2.5] {
            for (name, mask) in [("no mask", None), ("causal", Some(causal.clone())), ("padding", Some(padding.clone()))] {
                let run = |fused: bool| {
                    let (q, k, v) = (q0.clone().require_grad(), k0.clone().require_grad(), v0.clone().require_grad());
                    let (out, map) = if fused {
                        fused_attention_with_map(q.clone(), k.clone(), v.clone(), mask.clone(), None, scale, t)
                    } else {
                        let [bb, _, hh, _] = q.dims();
                        let (qs, ks) = (q.clone().swap_dims(1, 2), k.clone().swap_dims(1, 2));
                        let mut scores = qs.matmul(ks.swap_dims(2, 3)).mul_scalar(scale);
                        if let Some(m) = mask.clone() {
                            scores = scores.mask_fill(m.expand([bb, hh, lq, lk]), MASKED_SCORE as f64);
                        }
                        let map = softmax(scores.div_scalar(t), 3).mean_dim(1).squeeze_dim::<3>(1);
                        (unfused(q.clone(), k.clone(), v.clone(), mask.clone(), scale), map)
                    };
                    let loss = (out.clone() * w_out.clone()).sum() + (map.clone() * w_map.clone()).sum();
                    let grads = loss.backward();
                    let g = |x: &Tensor<4>| values(x.grad(&grads).expect("gradient"));
                    (values(out), map.into_data().convert::<f32>().try_into_vec::<f32>().unwrap(), g(&q), g(&k), g(&v))
                };
                assert_runs_close(&format!("t={t} {name}"), run(true), run(false));
            }
        }
    }

    /// Dropout inside the op: with a given keep mask (no random draw), output, map and
    /// gradients equal the unfused `softmax(s) * keep / (1 - p)` computation; the map is taken
    /// before dropout, as on the unfused path.
    #[test]
    fn dropout_matches_the_unfused_computation_with_the_same_mask() {
        let device = Device::flex().autodiff();
        crate::model::dropout::seed(&device, 31);
        let (b, lq, lk, h, dh) = (2, 5, 8, 2, 8);
        let (q0, k0, v0, w_out, w_map) = random_map_case(&device, b, lq, lk, h, dh);
        let keep_values: Vec<bool> = (0..b * h * lq * lk).map(|i| (i * 7) % 5 != 0).collect();
        let keep = Tensor::<4, Bool>::from_data(TensorData::new(keep_values, [b, h, lq, lk]), &device);
        let rate = 0.2;
        let mask = crate::model::masks::future_mask(lq, lk, &device).reshape([1, 1, lq, lk]);
        let scale = 1.0 / (dh as f64).sqrt();
        let run = |fused: bool| {
            let (q, k, v) = (q0.clone().require_grad(), k0.clone().require_grad(), v0.clone().require_grad());
            let (out, map) = if fused {
                fused_attention_with_map(q.clone(), k.clone(), v.clone(), Some(mask.clone()), Some(AttentionDropout { rate, keep: keep.clone() }), scale, 1.0)
            } else {
                let (qs, ks, vs) = (q.clone().swap_dims(1, 2), k.clone().swap_dims(1, 2), v.clone().swap_dims(1, 2));
                let scores = qs.matmul(ks.swap_dims(2, 3)).mul_scalar(scale).mask_fill(mask.clone().expand([b, h, lq, lk]), MASKED_SCORE as f64);
                let probs = softmax(scores, 3);
                let map = probs.clone().mean_dim(1).squeeze_dim::<3>(1);
                let dropped = probs * keep.clone().float() * (1.0 / (1.0 - rate));
                (dropped.matmul(vs).swap_dims(1, 2), map)
            };
            let grads = ((out.clone() * w_out.clone()).sum() + (map.clone() * w_map.clone()).sum()).backward();
            let g = |x: &Tensor<4>| values(x.grad(&grads).expect("gradient"));
            (values(out), map.into_data().convert::<f32>().try_into_vec::<f32>().unwrap(), g(&q), g(&k), g(&v))
        };
        assert_runs_close("dropout", run(true), run(false));
    }

    /// Without autodiff (inference) the op runs on plain flex tensors and gives the same values.
    #[test]
    fn inference_on_plain_flex_matches_unfused() {
        let device = Device::flex();
        crate::model::dropout::seed(&device, 5);
        let rand = |dims: [usize; 4]| Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (rand([2, 5, 2, 3]), rand([2, 9, 2, 3]), rand([2, 9, 2, 3]));
        let mask = crate::model::masks::future_mask(5, 9, &device).reshape([1, 1, 5, 9]);
        let fused = fused_attention(q.clone(), k.clone(), v.clone(), Some(mask.clone()), None, 0.5);
        assert_close("inference", values(fused), values(unfused(q, k, v, Some(mask), 0.5)), 1e-5);
        assert!(supported(&device) && supported(&device.autodiff()));
    }
}
