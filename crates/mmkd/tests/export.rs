//! `mmkd export --format onnx` (issue 20). The exported graph is decoded (prost) and checked for
//! structure (inputs, outputs, dynamic batch, opset, every node's inputs defined before use,
//! only the ops documented), then run by a small ONNX interpreter written here in f64, op by op
//! from the ONNX operator specifications, and compared with mmkd's own forward pass: every student
//! configuration in both stream modes and the complete teacher, random weights, at the `small`
//! preset's shapes, with all-zero frames in the input (MulT gives those the zero position).
//! reference/onnx_check.py does the same with ONNX Runtime (not in CI).

use std::collections::{HashMap, HashSet};

use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use mmkd::config::{DataShape, ModelConfig, Preset, TrainConfig};
use mmkd::export::onnx_proto::{AttributeProto, ModelProto, TensorProto, tensor_shape_proto::dimension, type_proto};
use mmkd::export::{OPSET, to_onnx};
use mmkd::input::NetInput;
use mmkd::model::{Modality, StudentConfig, StudentStreams, TeacherKind, TraceRequest};
use mmkd::run::{RunConfig, RunRole};
use prost::Message;

/// An N-d array of f64 (booleans as 0/1, int64 as whole numbers).
#[derive(Clone, Debug)]
struct Array {
    shape: Vec<usize>,
    data: Vec<f64>,
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

fn broadcast_shape(a: &[usize], b: &[usize]) -> Vec<usize> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
            let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
            assert!(da == db || da == 1 || db == 1, "cannot broadcast {a:?} with {b:?}");
            da.max(db)
        })
        .collect()
}

/// Value of `x` at the multi-index `idx` of a broadcast result of rank `idx.len()`.
fn at(x: &Array, idx: &[usize]) -> f64 {
    let off = idx.len() - x.shape.len();
    let st = strides(&x.shape);
    let mut flat = 0;
    for (k, (&d, s)) in x.shape.iter().zip(st).enumerate() {
        flat += if d == 1 { 0 } else { idx[off + k] * s };
    }
    x.data[flat]
}

fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for k in (0..shape.len()).rev() {
        idx[k] = i % shape[k];
        i /= shape[k];
    }
    idx
}

fn elementwise(inputs: &[&Array], f: impl Fn(&[f64]) -> f64) -> Array {
    let shape = inputs.iter().fold(Vec::new(), |s, x| broadcast_shape(&s, &x.shape));
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| {
            let idx = unravel(i, &shape);
            let vals: Vec<f64> = inputs.iter().map(|x| at(x, &idx)).collect();
            f(&vals)
        })
        .collect();
    Array { shape, data }
}

fn attr<'a>(node: &'a [AttributeProto], name: &str) -> Option<&'a AttributeProto> {
    node.iter().find(|a| a.name == name)
}

fn axis(a: i64, rank: usize) -> usize {
    if a < 0 { (a + rank as i64) as usize } else { a as usize }
}

fn from_tensor(t: &TensorProto) -> Array {
    let shape: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let data: Vec<f64> = match t.data_type {
        1 => t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect(),
        7 => t.raw_data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64).collect(),
        9 => t.raw_data.iter().map(|&b| b as f64).collect(),
        other => panic!("initializer {} of data type {other}", t.name),
    };
    assert_eq!(data.len(), shape.iter().product::<usize>(), "{}", t.name);
    Array { shape, data }
}

fn matmul(a: &Array, b: &Array) -> Array {
    let (ra, rb) = (a.shape.len(), b.shape.len());
    let (m, k) = (a.shape[ra - 2], a.shape[ra - 1]);
    let n = b.shape[rb - 1];
    assert_eq!(b.shape[rb - 2], k, "MatMul {:?} x {:?}", a.shape, b.shape);
    let batch = broadcast_shape(&a.shape[..ra - 2], &b.shape[..rb - 2]);
    let nb: usize = batch.iter().product();
    let mut data = vec![0.0; nb * m * n];
    for bi in 0..nb {
        let bidx = unravel(bi, &batch);
        let a_off = {
            let sub = Array { shape: a.shape[..ra - 2].to_vec(), data: (0..a.shape[..ra - 2].iter().product::<usize>()).map(|x| x as f64).collect() };
            if sub.shape.is_empty() { 0 } else { at(&sub, &bidx) as usize }
        } * m
            * k;
        let b_off = {
            let sub = Array { shape: b.shape[..rb - 2].to_vec(), data: (0..b.shape[..rb - 2].iter().product::<usize>()).map(|x| x as f64).collect() };
            if sub.shape.is_empty() { 0 } else { at(&sub, &bidx) as usize }
        } * k
            * n;
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for t in 0..k {
                    s += a.data[a_off + i * k + t] * b.data[b_off + t * n + j];
                }
                data[bi * m * n + i * n + j] = s;
            }
        }
    }
    let mut shape = batch;
    shape.extend([m, n]);
    Array { shape, data }
}

fn transpose(x: &Array, perm: &[usize]) -> Array {
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let st = strides(&x.shape);
    let n = x.data.len();
    let data = (0..n)
        .map(|i| {
            let idx = unravel(i, &shape);
            x.data[perm.iter().enumerate().map(|(k, &p)| idx[k] * st[p]).sum::<usize>()]
        })
        .collect();
    Array { shape, data }
}

/// Softmax or LayerNorm over the last axis.
fn last_axis(x: &Array, f: impl Fn(&[f64]) -> Vec<f64>) -> Array {
    let d = *x.shape.last().unwrap();
    Array { shape: x.shape.clone(), data: x.data.chunks(d).flat_map(f).collect() }
}

/// Run `model` on `inputs` and return its outputs by name.
fn interpret(model: &ModelProto, inputs: HashMap<String, Array>) -> HashMap<String, Array> {
    let graph = model.graph.as_ref().unwrap();
    let mut env: HashMap<String, Array> = inputs;
    for t in &graph.initializer {
        env.insert(t.name.clone(), from_tensor(t));
    }
    for node in &graph.node {
        let x = |i: usize| -> &Array { env.get(&node.input[i]).unwrap_or_else(|| panic!("{} reads undefined {}", node.name, node.input[i])) };
        let a = &node.attribute;
        let out = match node.op_type.as_str() {
            "Identity" | "Cast" => x(0).clone(),
            "Add" => elementwise(&[x(0), x(1)], |v| v[0] + v[1]),
            "Mul" => elementwise(&[x(0), x(1)], |v| v[0] * v[1]),
            "Equal" => elementwise(&[x(0), x(1)], |v| f64::from(u8::from(v[0] == v[1]))),
            "Not" => elementwise(&[x(0)], |v| 1.0 - v[0]),
            "Where" => elementwise(&[x(0), x(1), x(2)], |v| if v[0] != 0.0 { v[1] } else { v[2] }),
            "Relu" => elementwise(&[x(0)], |v| v[0].max(0.0)),
            "MatMul" => matmul(x(0), x(1)),
            "Transpose" => transpose(x(0), &attr(a, "perm").unwrap().ints.iter().map(|&p| p as usize).collect::<Vec<_>>()),
            "Softmax" => {
                assert_eq!(axis(attr(a, "axis").map_or(-1, |t| t.i), x(0).shape.len()), x(0).shape.len() - 1, "softmax over the last axis");
                last_axis(x(0), |r| {
                    let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = r.iter().map(|v| (v - m).exp()).collect();
                    let s: f64 = e.iter().sum();
                    e.iter().map(|v| v / s).collect()
                })
            }
            "LayerNormalization" => {
                assert_eq!(attr(a, "axis").unwrap().i, -1);
                let eps = attr(a, "epsilon").unwrap().f as f64;
                let (g, b) = (x(1).data.clone(), x(2).data.clone());
                last_axis(x(0), |r| {
                    let n = r.len() as f64;
                    let mean = r.iter().sum::<f64>() / n;
                    let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                    r.iter().enumerate().map(|(i, v)| (v - mean) / (var + eps).sqrt() * g[i] + b[i]).collect()
                })
            }
            "Reshape" => {
                let src = x(0);
                let mut shape: Vec<i64> = x(1).data.iter().map(|&v| v as i64).collect();
                for (i, s) in shape.iter_mut().enumerate() {
                    if *s == 0 {
                        *s = src.shape[i] as i64;
                    }
                }
                let known: i64 = shape.iter().filter(|&&s| s > 0).product();
                let shape: Vec<usize> = shape.iter().map(|&s| if s < 0 { src.data.len() / known as usize } else { s as usize }).collect();
                assert_eq!(shape.iter().product::<usize>(), src.data.len(), "{}: reshape {:?} to {shape:?}", node.name, src.shape);
                Array { shape, data: src.data.clone() }
            }
            "Unsqueeze" => {
                let mut shape = x(0).shape.clone();
                for &ax in &x(1).data {
                    shape.insert(ax as usize, 1);
                }
                Array { shape, data: x(0).data.clone() }
            }
            "Gather" => {
                let src = x(0);
                let ax = axis(attr(a, "axis").unwrap().i, src.shape.len());
                assert!(x(1).shape.is_empty(), "scalar indices only");
                let index = x(1).data[0] as usize;
                let mut shape = src.shape.clone();
                shape.remove(ax);
                let n = shape.iter().product();
                let data = (0..n)
                    .map(|i| {
                        let mut idx = unravel(i, &shape);
                        idx.insert(ax, index);
                        at(src, &idx)
                    })
                    .collect();
                Array { shape, data }
            }
            "Concat" => {
                let parts: Vec<&Array> = (0..node.input.len()).map(x).collect();
                let rank = parts[0].shape.len();
                let ax = axis(attr(a, "axis").unwrap().i, rank);
                let mut shape = parts[0].shape.clone();
                shape[ax] = parts.iter().map(|p| p.shape[ax]).sum();
                let n = shape.iter().product();
                let data = (0..n)
                    .map(|i| {
                        let mut idx = unravel(i, &shape);
                        let mut p = 0;
                        while idx[ax] >= parts[p].shape[ax] {
                            idx[ax] -= parts[p].shape[ax];
                            p += 1;
                        }
                        at(parts[p], &idx)
                    })
                    .collect();
                Array { shape, data }
            }
            "Conv" => {
                let (input, w) = (x(0), x(1));
                let ints = |n: &str| attr(a, n).unwrap().ints.clone();
                let (stride, pads, dilation) = (ints("strides")[0] as usize, ints("pads"), ints("dilations")[0] as usize);
                assert_eq!(attr(a, "group").unwrap().i, 1);
                let (nb, c, l) = (input.shape[0], input.shape[1], input.shape[2]);
                let (o, kc, k) = (w.shape[0], w.shape[1], w.shape[2]);
                assert_eq!(kc, c);
                let padded = l + pads[0] as usize + pads[1] as usize;
                let out_len = (padded - dilation * (k - 1) - 1) / stride + 1;
                let mut data = vec![0.0; nb * o * out_len];
                for b in 0..nb {
                    for oc in 0..o {
                        for t in 0..out_len {
                            let mut s = if node.input.len() > 2 { x(2).data[oc] } else { 0.0 };
                            for ic in 0..c {
                                for j in 0..k {
                                    let pos = (t * stride + j * dilation) as i64 - pads[0];
                                    if pos >= 0 && (pos as usize) < l {
                                        s += input.data[(b * c + ic) * l + pos as usize] * w.data[(oc * c + ic) * k + j];
                                    }
                                }
                            }
                            data[(b * o + oc) * out_len + t] = s;
                        }
                    }
                }
                Array { shape: vec![nb, o, out_len], data }
            }
            other => panic!("op {other} is not one the exporter is documented to write"),
        };
        env.insert(node.output[0].clone(), out);
    }
    graph.output.iter().map(|o| (o.name.clone(), env[&o.name].clone())).collect()
}

fn dims_of(v: &mmkd::export::onnx_proto::ValueInfoProto) -> Vec<String> {
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.clone()) else { panic!("{} is not a tensor", v.name) };
    t.shape
        .unwrap()
        .dim
        .iter()
        .map(|d| match d.value.as_ref().unwrap() {
            dimension::Value::DimValue(n) => n.to_string(),
            dimension::Value::DimParam(p) => p.clone(),
        })
        .collect()
}

/// Structure: the documented interface, and a graph in topological order over defined names.
fn check_structure(model: &ModelProto, inputs: &[(&str, [usize; 2])]) {
    assert_eq!(model.opset_import[0].version, OPSET);
    let graph = model.graph.as_ref().unwrap();
    let got: Vec<(String, Vec<String>)> = graph.input.iter().map(|i| (i.name.clone(), dims_of(i))).collect();
    let want: Vec<(String, Vec<String>)> = inputs.iter().map(|(n, [l, d])| (n.to_string(), vec!["N".to_string(), l.to_string(), d.to_string()])).collect();
    assert_eq!(got, want, "inputs: a dynamic batch N and the trained length and width");
    let outs: Vec<(String, Vec<String>)> = graph.output.iter().map(|o| (o.name.clone(), dims_of(o))).collect();
    assert_eq!(outs, vec![("logits".to_string(), vec!["N".into(), "7".into()]), ("probs".to_string(), vec!["N".into(), "7".into()])]);
    let mut defined: HashSet<&str> = graph.input.iter().map(|i| i.name.as_str()).chain(graph.initializer.iter().map(|t| t.name.as_str())).collect();
    assert_eq!(defined.len(), graph.input.len() + graph.initializer.len(), "unique initializer names");
    let documented = ["Identity", "Cast", "Add", "Mul", "Equal", "Not", "Where", "Relu", "MatMul", "Transpose", "Softmax", "LayerNormalization", "Reshape", "Unsqueeze", "Gather", "Concat", "Conv"];
    for node in &graph.node {
        assert!(documented.contains(&node.op_type.as_str()), "{}", node.op_type);
        for i in &node.input {
            assert!(defined.contains(i.as_str()), "{} reads {i} before it is defined", node.name);
        }
        for o in &node.output {
            assert!(defined.insert(o.as_str()), "{o} defined twice");
        }
    }
}

fn random(shape: [usize; 3], seed: u64, device: &Device) -> Tensor<3> {
    mmkd::model::dropout::seed(device, seed);
    let t = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), device);
    // The last two frames of the first clip all zero: MulT's zero positions must be exported.
    let mut data: Vec<f32> = t.into_data().try_to_vec().unwrap();
    let frame = shape[2];
    for v in &mut data[(shape[1] - 2) * frame..shape[1] * frame] {
        *v = 0.0;
    }
    Tensor::from_data(TensorData::new(data, shape), device)
}

#[test]
fn exported_graphs_compute_what_mmkd_computes() {
    let device = Device::flex();
    let shape = DataShape::for_preset(Preset::Small);
    let mut roles: Vec<RunRole> = [StudentConfig::C1, StudentConfig::C2, StudentConfig::C3, StudentConfig::C4, StudentConfig::C5]
        .into_iter()
        .flat_map(|config| [StudentStreams::Downsampled, StudentStreams::FullLength].map(|streams| RunRole::Student { config, streams, distill: None }))
        .collect();
    roles.push(RunRole::Teacher { teacher: TeacherKind::Complete });
    let batch = 3;
    let dims = [(Modality::Video, [shape.video_len, shape.video_dim]), (Modality::Audio, [shape.audio_len, shape.audio_dim]), (Modality::Text, [shape.text_len, shape.text_dim])];
    let video = random([batch, shape.video_len, shape.video_dim], 5, &device);
    let audio = random([batch, shape.audio_len, shape.audio_dim], 6, &device);
    let text = random([batch, shape.text_len, shape.text_dim], 7, &device);
    let array = |t: &Tensor<3>| Array { shape: t.dims().to_vec(), data: t.clone().into_data().try_to_vec::<f32>().unwrap().into_iter().map(f64::from).collect() };
    for (k, role) in roles.into_iter().enumerate() {
        let cfg = RunConfig {
            role: role.clone(),
            preset: Preset::Small,
            data: "unused".into(),
            dataset: "random".into(),
            shape: shape.clone(),
            model: ModelConfig::for_preset(Preset::Small),
            train: TrainConfig::for_preset(Preset::Small),
            dataset_fingerprint: None,
            device: None,
        };
        mmkd::model::dropout::seed(&device, 100 + k as u64);
        let net = cfg.build_net(&device).valid();
        let model = to_onnx(&net, &dims, &[]).unwrap();
        let model = ModelProto::decode(model.encode_to_vec().as_slice()).expect("the bytes decode");
        let is_teacher = matches!(role, RunRole::Teacher { .. });
        let names: Vec<(&str, [usize; 2])> = if is_teacher { vec![("video", dims[0].1), ("audio", dims[1].1), ("text", dims[2].1)] } else { vec![("video", dims[0].1)] };
        check_structure(&model, &names);
        let input = NetInput { text: is_teacher.then(|| text.clone()), audio: is_teacher.then(|| audio.clone()), video: video.clone(), lengths: None };
        let logits: Vec<f32> = net.forward(&input, &TraceRequest::none()).logits.into_data().try_to_vec().unwrap();
        let mut feeds = HashMap::from([("video".to_string(), array(&video))]);
        if is_teacher {
            feeds.insert("audio".into(), array(&audio));
            feeds.insert("text".into(), array(&text));
        }
        let outs = interpret(&model, feeds);
        assert_eq!(outs["logits"].shape, vec![batch, 7]);
        let worst = outs["logits"].data.iter().zip(&logits).map(|(a, b)| (a - *b as f64).abs()).fold(0.0, f64::max);
        let scale = logits.iter().map(|v| v.abs() as f64).fold(1.0, f64::max);
        assert!(worst <= 1e-4 * scale, "{role:?}: the ONNX graph's logits differ from mmkd's by {worst}");
        let probs = &outs["probs"].data;
        for row in probs.chunks(7) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
        println!("{role:?}: {} nodes, max |logits - mmkd| = {worst:.2e}", model.graph.as_ref().unwrap().node.len());
    }
}

/// The CLI: `mmkd export` on a run folder writes a file that decodes, names its run and classes,
/// and refuses what it cannot export.
#[test]
fn export_command_writes_a_decodable_model() {
    let tmp = tempfile::tempdir().unwrap();
    let run = mmkd::predict::example_student_run(tmp.path()).unwrap();
    let out = tmp.path().join("student.onnx");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_mmkd")).args(["export", run.to_str().unwrap(), "--format", "onnx", "--out", out.to_str().unwrap()]).output().unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let model = ModelProto::decode(std::fs::read(&out).unwrap().as_slice()).unwrap();
    let meta: HashMap<&str, &str> = model.metadata_props.iter().map(|p| (p.key.as_str(), p.value.as_str())).collect();
    assert!(meta["classes"].contains("-3,-2,-1,0,1,2,3"), "{meta:?}");
    assert!(meta["inputs"].starts_with("video [N, "), "{meta:?}");
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_mmkd")).args(["export", tmp.path().join("nothing").to_str().unwrap(), "--out", out.to_str().unwrap()]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2), "{}", String::from_utf8_lossy(&missing.stderr));
}
