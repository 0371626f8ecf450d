//! `mmkd export RUN --format onnx`: a trained network as an ONNX graph, for ONNX Runtime and
//! anything else that reads ONNX.
//!
//! The graph is written op by op from the network's modules (there is no ONNX exporter for
//! Burn 0.22; `burn-import` reads ONNX, it does not write it), with the messages of
//! `onnx.proto` declared in `onnx_proto` (prost). Opset 17 (LayerNormalization), IR version 8.
//!
//! Inputs: `video` `[N, Lv, Dv]` float32 (a teacher also `audio` and `text`), `N` dynamic.
//! The lengths are fixed: a downsampling stream's convolution makes its length from the
//! trained input length. Outputs: `logits` `[N, 7]` and `probs` `[N, 7]` (softmax), classes
//! for the scores -3..3. What the graph computes is `MultimodalNet::forward` in inference
//! (dropout off), checked in tests/export.rs against mmkd's own forward pass.

#[allow(missing_docs)] // the fields are onnx.proto's, documented there
pub mod onnx_proto;

use std::path::Path;

use anyhow::Result;
use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use prost::Message;

use crate::bail_input;
use crate::model::encoder::CrossModalEncoder;
use crate::model::network::{Body, MultimodalNet, StreamConv};
use crate::model::{CrossSides, Modality, masks};
use onnx_proto::tensor_shape_proto::{Dimension, dimension};
use onnx_proto::{
    AttributeProto, AttributeType, DataType, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, type_proto,
};

/// The ONNX opset the graph imports (LayerNormalization needs 17).
pub const OPSET: i64 = 17;
/// The IR version written (ONNX 1.12's, the one that goes with opset 17).
pub const IR_VERSION: i64 = 8;
/// Burn's `LayerNormConfig` default, which every LayerNorm of mmkd uses.
const LAYER_NORM_EPSILON: f32 = crate::model::fused_layer_norm::EPSILON as f32;
/// What masked attention scores are set to (as `CrossModalAttention::forward_unfused`).
const MASKED_SCORE: f32 = -1.0e9;

/// An attribute value.
enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
}

/// The graph under construction: nodes, initializers, and unique names.
struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    next: usize,
}

impl GraphBuilder {
    fn fresh(&mut self, hint: &str) -> String {
        self.next += 1;
        format!("{hint}_{}", self.next)
    }

    fn init_f32(&mut self, hint: &str, dims: &[usize], data: Vec<f32>) -> String {
        assert_eq!(dims.iter().product::<usize>(), data.len(), "{hint}: shape and data disagree");
        let name = self.fresh(hint);
        let raw_data = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.initializers.push(TensorProto { name: name.clone(), dims: dims.iter().map(|&d| d as i64).collect(), data_type: DataType::Float as i32, raw_data, ..Default::default() });
        name
    }

    fn init_i64(&mut self, hint: &str, dims: &[usize], data: &[i64]) -> String {
        let name = self.fresh(hint);
        let raw_data = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.initializers.push(TensorProto { name: name.clone(), dims: dims.iter().map(|&d| d as i64).collect(), data_type: DataType::Int64 as i32, raw_data, ..Default::default() });
        name
    }

    fn init_bool(&mut self, hint: &str, dims: &[usize], data: &[bool]) -> String {
        let name = self.fresh(hint);
        let raw_data = data.iter().map(|&b| u8::from(b)).collect();
        self.initializers.push(TensorProto { name: name.clone(), dims: dims.iter().map(|&d| d as i64).collect(), data_type: DataType::Bool as i32, raw_data, ..Default::default() });
        name
    }

    fn param<const D: usize>(&mut self, hint: &str, p: &Param<Tensor<D>>) -> String {
        let t = p.val();
        let dims = t.dims().to_vec();
        let data = t.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 parameters");
        self.init_f32(hint, &dims, data)
    }

    /// One node with one output; returns the output's name.
    fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        let out = self.fresh(&op.to_lowercase());
        let attribute = attrs
            .into_iter()
            .map(|(name, value)| {
                let mut a = AttributeProto { name: name.to_string(), ..Default::default() };
                a.r#type = match value {
                    Attr::Int(i) => {
                        a.i = i;
                        AttributeType::Int
                    }
                    Attr::Float(f) => {
                        a.f = f;
                        AttributeType::Float
                    }
                    Attr::Ints(v) => {
                        a.ints = v;
                        AttributeType::Ints
                    }
                } as i32;
                a
            })
            .collect();
        self.nodes.push(NodeProto {
            op_type: op.to_string(),
            name: format!("n_{out}"),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute,
            ..Default::default()
        });
        out
    }

    fn linear(&mut self, x: &str, linear: &Linear) -> String {
        // Burn keeps a Linear's weight as [d_in, d_out] and computes x W + b.
        let w = self.param("weight", &linear.weight);
        let y = self.op("MatMul", &[x, &w], vec![]);
        match &linear.bias {
            Some(b) => {
                let b = self.param("bias", b);
                self.op("Add", &[&y, &b], vec![])
            }
            None => y,
        }
    }

    /// Initializers of a LayerNorm (shared where mmkd applies one norm to several inputs).
    fn layer_norm_params(&mut self, norm: &LayerNorm) -> (String, String) {
        let gamma = self.param("ln_scale", &norm.gamma);
        let beta = match &norm.beta {
            Some(b) => self.param("ln_bias", b),
            None => {
                let [d] = norm.gamma.val().dims();
                self.init_f32("ln_bias", &[d], vec![0.0; d])
            }
        };
        (gamma, beta)
    }

    fn layer_norm(&mut self, x: &str, (gamma, beta): &(String, String)) -> String {
        self.op("LayerNormalization", &[x, gamma, beta], vec![("axis", Attr::Int(-1)), ("epsilon", Attr::Float(LAYER_NORM_EPSILON))])
    }

    /// [N, L, D_in] -> [N, out_len, d], as `StreamConv::forward`.
    fn stream_conv(&mut self, x: &str, conv: &StreamConv) -> Result<String> {
        let c = &conv.conv;
        let [left, right] = match c.padding {
            burn::nn::PaddingConfig1d::Explicit(l, r) => [l, r],
            burn::nn::PaddingConfig1d::Valid => [0, 0],
            burn::nn::PaddingConfig1d::Same => bail_input!("a stream convolution with `Same` padding cannot be exported (mmkd builds explicit padding)"),
        };
        let xt = self.op("Transpose", &[x], vec![("perm", Attr::Ints(vec![0, 2, 1]))]);
        let w = self.param("conv_weight", &c.weight);
        let mut inputs = vec![xt.as_str(), w.as_str()];
        let bias = c.bias.as_ref().map(|b| self.param("conv_bias", b));
        if let Some(b) = &bias {
            inputs.push(b);
        }
        let attrs = vec![
            ("kernel_shape", Attr::Ints(vec![c.kernel_size as i64])),
            ("strides", Attr::Ints(vec![c.stride as i64])),
            ("dilations", Attr::Ints(vec![c.dilation as i64])),
            ("group", Attr::Int(c.groups as i64)),
            ("pads", Attr::Ints(vec![left as i64, right as i64])),
        ];
        let y = self.op("Conv", &inputs, attrs);
        Ok(self.op("Transpose", &[&y], vec![("perm", Attr::Ints(vec![0, 2, 1]))]))
    }

    /// MulT's encoder preamble: scale by sqrt(d), add positions (zero for frames whose first
    /// feature is 0, when the encoder says so).
    fn embed(&mut self, x: &str, enc: &CrossModalEncoder, len: usize) -> String {
        let d = enc.d_model;
        let table = masks::sinusoidal_table(len, d, &Device::flex());
        let table = table.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 table");
        let table = self.init_f32("positions", &[len, d], table);
        let scale = self.init_f32("sqrt_d", &[], vec![(d as f32).sqrt()]);
        let scaled = self.op("Mul", &[x, &scale], vec![]);
        let positions = if enc.positions_from_first_feature {
            let zero_index = self.init_i64("index0", &[], &[0]);
            let first = self.op("Gather", &[x, &zero_index], vec![("axis", Attr::Int(2))]); // [N, L]
            let zero = self.init_f32("zero", &[], vec![0.0]);
            let is_zero = self.op("Equal", &[&first, &zero], vec![]);
            let nonzero = self.op("Not", &[&is_zero], vec![]);
            let nonzero = self.op("Cast", &[&nonzero], vec![("to", Attr::Int(DataType::Float as i64))]);
            let axes = self.init_i64("axes", &[1], &[2]);
            let nonzero = self.op("Unsqueeze", &[&nonzero, &axes], vec![]); // [N, L, 1]
            self.op("Mul", &[&table, &nonzero], vec![])
        } else {
            table
        };
        self.op("Add", &[&scaled, &positions], vec![])
    }

    /// One transformer, as `CrossModalEncoder::forward` with no key lengths: `queries`
    /// [N, lq, d]; `keys_values` [N, lk, d] for a cross-modal one.
    fn encoder(&mut self, enc: &CrossModalEncoder, queries: &str, lq: usize, keys_values: Option<(&str, usize)>) -> String {
        let d = enc.d_model;
        let lk = keys_values.map_or(lq, |(_, l)| l);
        let mask = enc.causal_mask.then(|| {
            let m = masks::future_mask(lq, lk, &Device::flex()).into_data().try_to_vec::<bool>().expect("bool mask");
            self.init_bool("future_mask", &[lq, lk], &m)
        });
        let mut x = self.embed(queries, enc, lq);
        let kv = keys_values.map(|(kv, lk)| self.embed(kv, enc, lk));
        for layer in &enc.layers {
            let attention = &layer.attention;
            let heads = attention.heads;
            let dh = d / heads;
            let norm = self.layer_norm_params(&layer.attn_norm);
            let q = self.layer_norm(&x, &norm);
            // Keys and values are one tensor at inference (no embedding dropout): normalise once.
            let kv_normed = match &kv {
                Some(kv) => self.layer_norm(kv, &norm),
                None => q.clone(),
            };
            let heads_of = |b: &mut GraphBuilder, t: &str, len: usize, perm: Vec<i64>| {
                let shape = b.init_i64("shape", &[4], &[0, len as i64, heads as i64, dh as i64]);
                let r = b.op("Reshape", &[t, &shape], vec![]);
                b.op("Transpose", &[&r], vec![("perm", Attr::Ints(perm))])
            };
            let qp = self.linear(&q, &attention.query);
            let kp = self.linear(&kv_normed, &attention.key);
            let vp = self.linear(&kv_normed, &attention.value);
            let qh = heads_of(self, &qp, lq, vec![0, 2, 1, 3]); // [N, h, lq, dh]
            let kh = heads_of(self, &kp, lk, vec![0, 2, 3, 1]); // [N, h, dh, lk]
            let vh = heads_of(self, &vp, lk, vec![0, 2, 1, 3]); // [N, h, lk, dh]
            let scores = self.op("MatMul", &[&qh, &kh], vec![]);
            let scale = self.init_f32("attn_scale", &[], vec![(1.0 / (dh as f64).sqrt()) as f32]);
            let mut scores = self.op("Mul", &[&scores, &scale], vec![]);
            if let Some(mask) = &mask {
                let fill = self.init_f32("masked", &[], vec![MASKED_SCORE]);
                scores = self.op("Where", &[mask, &fill, &scores], vec![]);
            }
            let probs = self.op("Softmax", &[&scores], vec![("axis", Attr::Int(-1))]);
            let context = self.op("MatMul", &[&probs, &vh], vec![]); // [N, h, lq, dh]
            let context = self.op("Transpose", &[&context], vec![("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
            let shape = self.init_i64("shape", &[3], &[0, lq as i64, d as i64]);
            let context = self.op("Reshape", &[&context, &shape], vec![]);
            let attended = self.linear(&context, &attention.output);
            x = self.op("Add", &[&x, &attended], vec![]);
            let ffn_norm = self.layer_norm_params(&layer.ffn_norm);
            let h = self.layer_norm(&x, &ffn_norm);
            let h = self.linear(&h, &layer.fc1);
            let h = self.op("Relu", &[&h], vec![]);
            let h = self.linear(&h, &layer.fc2);
            x = self.op("Add", &[&x, &h], vec![]);
        }
        let final_norm = self.layer_norm_params(&enc.final_norm);
        self.layer_norm(&x, &final_norm)
    }

    /// `[N, L, d]` -> its last step `[N, d]`.
    fn last_step(&mut self, x: &str, len: usize) -> String {
        let index = self.init_i64("last", &[], &[len as i64 - 1]);
        self.op("Gather", &[x, &index], vec![("axis", Attr::Int(1))])
    }
}

fn value_info(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(n) => dimension::Value::DimValue(*n as i64),
                None => dimension::Value::DimParam("N".to_string()),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = type_proto::Tensor { elem_type: DataType::Float as i32, shape: Some(TensorShapeProto { dim }) };
    ValueInfoProto { name: name.to_string(), r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }), ..Default::default() }
}

/// The graph input name of a modality.
pub fn input_name(m: Modality) -> &'static str {
    match m {
        Modality::Video => "video",
        Modality::Audio => "audio",
        Modality::Text => "text",
    }
}

/// The network as an ONNX model. `input_dims` gives each input modality's `[length, features]`
/// (the shape the network was trained on); `metadata` goes into the model's metadata_props.
pub fn to_onnx(net: &MultimodalNet, input_dims: &[(Modality, [usize; 2])], metadata: &[(&str, String)]) -> Result<ModelProto> {
    if net.key_padding_mask {
        bail_input!("this network masks padded keys from per-clip lengths (--key-padding-mask true); the ONNX export has no lengths input, so it exports only networks trained without it");
    }
    let mut g = GraphBuilder { nodes: Vec::new(), initializers: Vec::new(), next: 0 };
    let mut inputs = Vec::new();
    for m in net.inputs() {
        let Some((_, [len, dim])) = input_dims.iter().find(|(im, _)| *im == m) else {
            bail_input!("no input shape for {} (the network reads it)", m.name());
        };
        inputs.push(value_info(input_name(m), &[None, Some(*len), Some(*dim)]));
    }
    // The streams in the order V, A, L, each from its source input.
    let mut streams = Vec::new();
    for conv in &net.front {
        streams.push(g.stream_conv(input_name(conv.source), conv)?);
    }
    let stream = |m: Modality| -> (String, usize) {
        let i = match m {
            Modality::Video => 0,
            Modality::Audio => 1,
            Modality::Text => 2,
        };
        (streams[i].clone(), net.front[i].out_len)
    };
    let mut lasts = Vec::new();
    match &net.body {
        Body::Branches(branches) => {
            for branch in branches {
                let q = branch.query;
                let (qs, lq) = stream(q);
                let mut outs = Vec::new();
                for (enc, k) in branch.cross.iter().zip(q.others()) {
                    let (ks, lk) = stream(k);
                    outs.push(g.encoder(enc, &qs, lq, Some((&ks, lk))));
                }
                let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
                let mut h = g.op("Concat", &refs, vec![("axis", Attr::Int(2))]);
                if let Some(reduce) = &branch.reduce {
                    h = g.linear(&h, reduce);
                }
                let h = g.encoder(&branch.temporal, &h, lq, None);
                lasts.push(g.last_step(&h, lq));
            }
        }
        Body::Flat(flat) => {
            for t in flat {
                let (enc, CrossSides { keys, queries }) = (&t.encoder, t.sides);
                let (qs, lq) = stream(queries);
                // One stream on both sides is self-attention (as MultimodalNet::forward).
                let h = if keys == queries {
                    g.encoder(enc, &qs, lq, None)
                } else {
                    let (ks, lk) = stream(keys);
                    g.encoder(enc, &qs, lq, Some((&ks, lk)))
                };
                lasts.push(g.last_step(&h, lq));
            }
        }
    }
    let refs: Vec<&str> = lasts.iter().map(String::as_str).collect();
    let x = if refs.len() == 1 { lasts[0].clone() } else { g.op("Concat", &refs, vec![("axis", Attr::Int(1))]) };
    let h = g.linear(&x, &net.head.proj1);
    let h = g.op("Relu", &[&h], vec![]);
    let h = g.linear(&h, &net.head.proj2);
    let penultimate = g.op("Add", &[&h, &x], vec![]);
    let logits = g.linear(&penultimate, &net.head.out);
    let classes = crate::input::NUM_CLASSES;
    g.nodes.push(NodeProto { op_type: "Identity".into(), name: "n_logits".into(), input: vec![logits], output: vec!["logits".into()], ..Default::default() });
    g.nodes.push(NodeProto {
        op_type: "Softmax".into(),
        name: "n_probs".into(),
        input: vec!["logits".into()],
        output: vec!["probs".into()],
        attribute: vec![AttributeProto { name: "axis".into(), i: 1, r#type: AttributeType::Int as i32, ..Default::default() }],
        ..Default::default()
    });
    let graph = GraphProto {
        name: "mmkd".into(),
        node: g.nodes,
        initializer: g.initializers,
        input: inputs,
        output: vec![value_info("logits", &[None, Some(classes)]), value_info("probs", &[None, Some(classes)])],
        ..Default::default()
    };
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        producer_name: "mmkd".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        metadata_props: metadata.iter().map(|(k, v)| StringStringEntryProto { key: k.to_string(), value: v.clone() }).collect(),
        ..Default::default()
    })
}

/// Export `run`'s best checkpoint to `out` (written atomically). Returns the model.
pub fn export_run(run: &crate::run::Run, out: &Path) -> Result<ModelProto> {
    let device = Device::flex();
    let net = run.load_best(&device)?;
    let cfg = run.config();
    let shape = &cfg.shape;
    let dims = [(Modality::Video, [shape.video_len, shape.video_dim]), (Modality::Audio, [shape.audio_len, shape.audio_dim]), (Modality::Text, [shape.text_len, shape.text_dim])];
    let scores: Vec<String> = (-3..=3).map(|k: i32| k.to_string()).collect();
    let metadata = [
        ("mmkd_run", run.dir().display().to_string()),
        ("mmkd_role", serde_json::to_string(&cfg.role)?),
        ("classes", format!("sentiment scores {} (probs and logits in this order)", scores.join(","))),
        ("inputs", dims.iter().filter(|(m, _)| net.inputs().contains(m)).map(|(m, [len, dim])| format!("{} [N, {len}, {dim}]", input_name(*m))).collect::<Vec<_>>().join("; ")),
    ];
    let model = to_onnx(&net, &dims, &metadata)?;
    crate::durable::write_atomic(out, &model.encode_to_vec())?;
    Ok(model)
}
