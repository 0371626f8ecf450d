//! Replaying reference cases: mmkd's side of the parity check against the independent PyTorch
//! implementation in `reference/`.
//!
//! A case folder (written by `reference/cases.py`) holds a network description, its weights
//! under mmkd's parameter names, inputs, and the reference's outputs:
//!
//! ```text
//! CASE/case.json             network, ModelConfig, DataShape, map temperatures, training steps
//! CASE/weights.safetensors   parameters (mmkd names and layouts)
//! CASE/inputs.safetensors    text, audio, video, scores; optional lengths_text/audio/video
//! CASE/expected.safetensors  what the reference computed (same names as `run_case` returns)
//! ```
//!
//! `run_case` computes, with mmkd's own code paths, the logits, penultimate features, every
//! head-averaged attention map (`map.t<T>.<transformer>.<layer>`) and post-attention output
//! (`post.<transformer>.<layer>`) in eval mode; for a training case also the loss and global
//! gradient norm of each optimiser step (`loss`, `grad_norm`) and every weight after the first
//! and after the last step (`step1.<name>`, `weight.<name>`) and the first step's gradients
//! (`grad1.<name>`), through `train::step`'s `optimizer_step` halves, the function `fit` uses.
//!
//! A distillation case (written by `reference/distill_ref.py`) also has `distill` in case.json,
//! the teacher's weights in `CASE/teacher.safetensors` and the initial CRD heads and EDAM-T
//! logits in `CASE/heads.safetensors`; `run_case` then takes its optimiser steps through
//! `DistillTask` (the task `mmkd distill` trains) and returns `loss`, `ce`, `kd`, `grad_norm`, the
//! first step's gradients (`grad1.*`), the student's and the heads' weights after the last step
//! (`weight.*`, `head.*`), the CRD banks (`bank.*`) and EDAM-T's own initial logits (`init.*`).
//!
//! `mmkd reference run CASE...` writes them to `CASE/mmkd.safetensors` for `reference/parity.py`;
//! the golden test (crates/mmkd/tests/golden.rs) compares them with the committed fixtures.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use burn::module::Param;
use burn::optim::GradientsParams;
use burn::prelude::*;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::Deserialize;

use crate::config::{DataShape, ModelConfig, TrainConfig};
use crate::data::{Lengths, Split};
use crate::distill::{DistillConfig, DistillModel, DistillTask, Level, Method, Orientation, TeacherSignal, distilled_pairs, teacher_for_config};
use crate::eval::inference::cross_entropy;
use crate::model::{MultimodalNet, Probe, StudentConfig, StudentStreams, TeacherKind, TraceRequest, build_student, build_teacher};
use crate::train::step::{adam, apply_gradients, gradients_as_module};
use crate::train::task::TrainTask;

/// Which network a case describes.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum CaseNetwork {
    /// One of the four teachers.
    Teacher {
        /// complete, video, audio or language.
        teacher: TeacherKind,
    },
    /// A student configuration with its stream mode.
    Student {
        /// Configuration 1..=5 of the paper's section 4.2.
        student: StudentConfig,
        /// Downsampled or full-length `A_S`/`L_S`.
        streams: StudentStreams,
    },
}

/// Optimiser steps a training case takes, each on the listed rows of the inputs.
#[derive(Clone, Debug, Deserialize)]
pub struct CaseTraining {
    /// Learning rate of every step.
    pub lr: f64,
    /// Adam's epsilon.
    pub adam_epsilon: f32,
    /// Global gradient-norm clip.
    pub grad_clip: f32,
    /// Rows of the inputs for each step.
    pub steps: Vec<Vec<usize>>,
}

/// The distillation setting of a distillation case (`reference/distill_ref.py`): the student of
/// `Case::network` distils from its configuration's teacher (`teacher.safetensors`) with the
/// heads' initial values in `heads.safetensors`.
#[derive(Clone, Debug, Deserialize)]
pub struct CaseDistill {
    /// Where knowledge is distilled.
    pub level: Level,
    /// CRD, EDAM-S or EDAM-T.
    pub method: Method,
    /// EDAM's direction.
    pub orientation: Orientation,
    /// Map temperature (eq. 10-11).
    pub temperature: f32,
    /// Weight of the cross-entropy.
    pub alpha: f64,
    /// Weight of `L_KD`.
    pub beta: f64,
    /// Its own clip's teacher outputs, or the shuffled control's.
    #[serde(default)]
    pub teacher_signal: TeacherSignal,
    /// Seed of the CRD memory bank (initial rows and negatives).
    pub bank_seed: u64,
}

/// `case.json`.
#[derive(Clone, Debug, Deserialize)]
pub struct Case {
    /// Case name (the folder's name when written by cases.py).
    pub name: String,
    /// The network.
    pub network: CaseNetwork,
    /// Every hyper-parameter of the network (dropouts are 0 in reference cases).
    pub model: ModelConfig,
    /// Input dims and lengths.
    pub shape: DataShape,
    /// Number of input rows.
    pub samples: usize,
    /// Map temperatures to record (eq. 10-11).
    pub temperatures: Vec<f32>,
    /// Optimiser steps, for training and distillation cases.
    pub train: Option<CaseTraining>,
    /// Distillation cases: the steps are `alpha * CE + beta * L_KD` steps of `DistillTask`.
    #[serde(default)]
    pub distill: Option<CaseDistill>,
}

/// Named outputs: shape and row-major values.
pub type Outputs = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Read `case.json` of a case folder.
pub fn load_case(dir: &Path) -> Result<Case> {
    let path = dir.join("case.json");
    let text = std::fs::read_to_string(&path).map_err(|e| crate::error::input_error(format!("{}: {e}", path.display())))?;
    // A configuration outside 1..=5 is refused by `StudentConfig`'s parser, named in `e`.
    serde_json::from_str(&text).map_err(|e| crate::error::input_error(format!("{}: {e}", path.display())))
}

/// Every tensor of a safetensors file as f32 (I64 tensors converted), by name.
pub fn read_tensors(path: &Path) -> Result<Outputs> {
    let bytes = std::fs::read(path).map_err(|e| crate::error::input_error(format!("{}: {e}", path.display())))?;
    let st = SafeTensors::deserialize(&bytes).with_context(|| format!("{}: not a safetensors file", path.display()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::I64 => view.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32).collect(),
            other => crate::bail_input!("{}: tensor '{name}': expected F32 or I64, found {other:?}", path.display()),
        };
        out.insert(name, (view.shape().to_vec(), values));
    }
    Ok(out)
}

/// Write named f32 tensors as safetensors.
pub fn write_tensors(path: &Path, tensors: &Outputs) -> Result<()> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors.iter().map(|(k, (shape, v))| (k.clone(), shape.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
    let views = bytes.iter().map(|(k, shape, b)| Ok((k.clone(), TensorView::new(Dtype::F32, shape.clone(), b)?))).collect::<Result<Vec<_>>>()?;
    crate::durable::write_atomic(path, &safetensors::tensor::serialize(views, &None)?)
}

fn build(case: &Case, device: &Device) -> MultimodalNet {
    match case.network {
        CaseNetwork::Teacher { teacher } => build_teacher(teacher, &case.shape, &case.model, device),
        CaseNetwork::Student { student, streams } => build_student(student, streams, &case.shape, &case.model, device),
    }
}

/// The case's inputs as a split (labels are the scores; lengths when the file has them).
fn inputs(dir: &Path, case: &Case) -> Result<Split> {
    let mut t = read_tensors(&dir.join("inputs.safetensors"))?;
    let mut take = |name: &str| t.remove(name).map(|(_, v)| v);
    let missing = |name: &str| crate::error::input_error(format!("{}: tensor '{name}': missing", dir.join("inputs.safetensors").display()));
    let video = take("video").ok_or_else(|| missing("video"))?;
    let labels = take("scores").ok_or_else(|| missing("scores"))?;
    let (text, audio) = (take("text"), take("audio"));
    let s = &case.shape;
    let as_lengths = |v: Option<Vec<f32>>| v.map(|v| v.into_iter().map(|x| x as usize).collect::<Vec<_>>());
    let lengths = match (as_lengths(take("lengths_text")), as_lengths(take("lengths_audio")), as_lengths(take("lengths_video"))) {
        (Some(text), Some(audio), Some(video)) => Some(Lengths { text, audio, video, full: [s.video_len, s.audio_len, s.text_len] }),
        _ => None,
    };
    let n = labels.len();
    Ok(Split { name: case.name.clone(), text: text.map(Into::into), audio: audio.map(Into::into), video: video.into(), labels, ids: (0..n).map(|i| i.to_string()).collect(), lengths })
}

fn values<const D: usize>(t: Tensor<D>) -> (Vec<usize>, Vec<f32>) {
    let shape = t.dims().to_vec();
    (shape, t.into_data().convert::<f32>().try_to_vec().expect("f32 tensor"))
}

/// Run one case folder with mmkd's code and return its named outputs (module docs).
pub fn run_case(dir: &Path) -> Result<Outputs> {
    run_case_on(dir, &Device::flex())
}

/// `run_case` on `device` (the flex CPU backend, or a GPU for `bench/gpu.sh`).
pub fn run_case_on(dir: &Path, device: &Device) -> Result<Outputs> {
    let case = load_case(dir)?;
    let split = inputs(dir, &case)?;
    if let Some(distill) = &case.distill {
        let train = case.train.as_ref().ok_or_else(|| crate::error::input_error(format!("{}: a distillation case needs `train` (its optimiser steps)", dir.join("case.json").display())))?;
        let mut out = Outputs::new();
        distill_case(dir, &case, distill, train, &split, &mut out, device)?;
        return Ok(out);
    }
    let plain = device.clone();
    let net = crate::run::weights::load_safetensors(build(&case, &plain), &dir.join("weights.safetensors"))?;
    let rows: Vec<usize> = (0..split.len()).collect();
    let batch = split.batch(&case.shape, &rows, &plain);
    let mut out = Outputs::new();
    let all: std::collections::BTreeSet<_> = net.transformers().into_iter().collect();
    // One pass per map temperature; post-attention outputs do not depend on it.
    let temperatures: Vec<Option<f32>> = if case.temperatures.is_empty() { vec![None] } else { case.temperatures.iter().map(|&t| Some(t)).collect() };
    for t in temperatures {
        let request = TraceRequest { probe: Probe { map_temperature: t, post_attention: true }, transformers: all.clone() };
        let o = net.forward(&batch.input, &request);
        out.insert("logits".into(), values(o.logits));
        out.insert("penultimate".into(), values(o.penultimate));
        for (id, layers) in o.traces {
            for (i, layer) in layers.into_iter().enumerate() {
                if let (Some(t), Some(map)) = (t, layer.map) {
                    out.insert(format!("map.t{t}.{id}.{i}"), values(map));
                }
                if let Some(post) = layer.post_attention {
                    out.insert(format!("post.{id}.{i}"), values(post));
                }
            }
        }
    }
    if let Some(train) = &case.train {
        train_case(dir, &case, train, &split, &mut out, &plain)?;
    }
    Ok(out)
}

/// The recipe's optimiser steps on the case's rows; appends `loss`, `grad_norm`, the first
/// step's gradients (`grad1.*`, before clipping), `step1.*` and `weight.*`.
fn train_case(dir: &Path, case: &Case, train: &CaseTraining, split: &Split, out: &mut Outputs, device: &Device) -> Result<()> {
    let ad = device.clone().autodiff();
    let mut net = crate::run::weights::load_safetensors(build(case, &ad), &dir.join("weights.safetensors"))?;
    let tc = TrainConfig { adam_epsilon: train.adam_epsilon, ..TrainConfig::for_preset(crate::config::Preset::Smoke) };
    let mut optim = adam(&tc);
    let (mut losses, mut norms) = (Vec::new(), Vec::new());
    for (step, rows) in train.steps.iter().enumerate() {
        let batch = split.batch(&case.shape, rows, &ad);
        let o = net.forward(&batch.input, &TraceRequest::none());
        let loss = cross_entropy(o.logits, batch.classes.clone());
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        if step == 0 {
            insert_weights(&gradients_as_module(net.valid(), &grads), case, "grad1", out)?;
        }
        let (next, norm) = apply_gradients(net, &mut optim, grads, train.lr, Some(train.grad_clip));
        net = next;
        norms.push(norm as f32);
        if step == 0 {
            insert_weights(&net, case, "step1", out)?;
        }
    }
    out.insert("loss".into(), (vec![losses.len()], losses));
    out.insert("grad_norm".into(), (vec![norms.len()], norms));
    insert_weights(&net, case, "weight", out)
}

/// Every weight of `net` as `<prefix>.<name>`, read back through a temporary safetensors file.
fn insert_weights(net: &MultimodalNet, case: &Case, prefix: &str, out: &mut Outputs) -> Result<()> {
    // Removed when dropped, also on an early return.
    let tmp = tempfile::Builder::new().prefix(&format!("mmkd-reference-{}-", case.name)).tempdir()?;
    let path = tmp.path().join("weights.safetensors");
    crate::run::weights::save_safetensors(&net.valid(), &path)?;
    for (name, v) in read_tensors(&path)? {
        out.insert(format!("{prefix}.{name}"), v);
    }
    Ok(())
}

/// A distillation case: `train.steps` steps of `alpha * CE + beta * L_KD` through `DistillTask`
/// (the task `mmkd distill` trains with) and `optimizer_step`. Appends `loss`, `ce`, `kd`,
/// `grad_norm`, the student's weights after the last step (`weight.*`), the heads' (`head.*`),
/// the CRD banks and normalisers (`bank.student`, `bank.teacher`, `bank.z`) where the level has
/// a bank, and EDAM-T's own initial logits (`init.upsamplers.*`) before the case's are loaded.
fn distill_case(dir: &Path, case: &Case, d: &CaseDistill, train: &CaseTraining, split: &Split, out: &mut Outputs, device: &Device) -> Result<()> {
    let CaseNetwork::Student { student: config, streams } = case.network else {
        crate::bail_input!("{}: a distillation case distils into a student, found {:?}", dir.join("case.json").display(), case.network);
    };
    let plain = device.clone();
    let ad = device.clone().autodiff();
    let teacher = crate::run::weights::load_safetensors(build_teacher(teacher_for_config(config), &case.shape, &case.model, &plain), &dir.join("teacher.safetensors"))?;
    let cfg = DistillConfig {
        teacher_run: dir.to_path_buf(),
        level: d.level,
        method: d.method,
        alpha: d.alpha,
        beta: d.beta,
        temperature: d.temperature,
        orientation: d.orientation,
        teacher_signal: d.teacher_signal,
    };
    cfg.validate().map_err(|e| crate::error::input_error(format!("{}: {e}", dir.join("case.json").display())))?;
    let (shape, model) = (case.shape.clone(), case.model.clone());
    let student = Box::new(move |dev: &Device| build_student(config, streams, &shape, &model, dev));
    let mut task = DistillTask::new(cfg, teacher.valid(), distilled_pairs(config), student, split.len(), d.bank_seed, plain);
    let all: Vec<usize> = (0..split.len()).collect();
    let mut net = task.init_with(&ad, &split.batch(&case.shape, &all, &ad))?;
    for (name, t) in head_tensors(&net).into_iter().filter(|(name, _)| name.starts_with("upsamplers.")) {
        out.insert(format!("init.{name}"), t);
    }
    net.student = crate::run::weights::load_safetensors(net.student, &dir.join("weights.safetensors"))?;
    load_heads(&mut net, &dir.join("heads.safetensors"), &ad)?;

    let tc = TrainConfig { adam_epsilon: train.adam_epsilon, ..TrainConfig::for_preset(crate::config::Preset::Smoke) };
    let mut optim = adam(&tc);
    let mut series: BTreeMap<&str, Vec<f32>> = BTreeMap::new();
    for (step, rows) in train.steps.iter().enumerate() {
        let batch = split.batch(&case.shape, rows, &ad);
        let (loss, parts) = task.train_loss(&net, &batch)?;
        series.entry("loss").or_default().push(loss.clone().into_scalar::<f32>());
        for (name, v) in parts {
            let key = if name == "ce" {
                "ce"
            } else if name == "kd" {
                "kd"
            } else {
                continue;
            };
            series.entry(key).or_default().push(v as f32);
        }
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        if step == 0 {
            // The first step's gradients, before clipping: the loss's backward, free of Adam.
            let gradients = gradients_as_module(net.valid(), &grads);
            insert_weights(&gradients.student, case, "grad1", out)?;
            for (name, t) in head_tensors(&gradients) {
                out.insert(format!("grad1.head.{name}"), t);
            }
        }
        let (next, norm) = apply_gradients(net, &mut optim, grads, train.lr, Some(train.grad_clip));
        net = next;
        series.entry("grad_norm").or_default().push(norm as f32);
    }
    for (name, v) in series {
        out.insert(name.into(), (vec![v.len()], v));
    }
    insert_weights(&net.student, case, "weight", out)?;
    for (name, t) in head_tensors(&net) {
        out.insert(format!("head.{name}"), t);
    }
    if let Some(bank) = &task.bank {
        let state = bank.to_state().map_err(crate::distill::task::loss_err)?;
        let (n, dim) = (state.config.n_data, state.config.dim);
        out.insert("bank.student".into(), (vec![n, dim], state.student_bank));
        out.insert("bank.teacher".into(), (vec![n, dim], state.teacher_bank));
        let z = [state.z_student, state.z_teacher].map(|z| z.map_or(f32::NAN, |z| z as f32));
        out.insert("bank.z".into(), (vec![2], z.to_vec()));
    }
    Ok(())
}

/// The trained heads of a distillation model under the names `distill_ref.py` writes
/// (`crd_student.P.linear.weight` `[d_in, d_out]`, `upsamplers.P.key_logits`, ...).
fn head_tensors(net: &DistillModel) -> Outputs {
    let mut out = Outputs::new();
    for (side, heads) in [("crd_student", &net.crd_student), ("crd_teacher", &net.crd_teacher)] {
        for (p, head) in heads.iter().enumerate() {
            out.insert(format!("{side}.{p}.linear.weight"), values(head.linear.weight.val()));
            if let Some(bias) = &head.linear.bias {
                out.insert(format!("{side}.{p}.linear.bias"), values(bias.val()));
            }
        }
    }
    for (p, up) in net.upsamplers.iter().enumerate() {
        for (which, logits) in [("query_logits", &up.query_logits), ("key_logits", &up.key_logits)] {
            if let Some(w) = logits {
                out.insert(format!("upsamplers.{p}.{which}"), values(w.val()));
            }
        }
    }
    out
}

/// Replaces the heads' initial values with the case's; the file must name exactly the heads the
/// task built, with their shapes.
fn load_heads(net: &mut DistillModel, path: &Path, device: &Device) -> Result<()> {
    let mut file = read_tensors(path)?;
    let built = head_tensors(net);
    let names_file: Vec<&String> = file.keys().collect();
    let names_built: Vec<&String> = built.keys().collect();
    if names_file != names_built {
        crate::bail_input!("{}: heads {:?}, but the task built {:?}", path.display(), names_file, names_built);
    }
    for (name, (shape, _)) in &built {
        if &file[name].0 != shape {
            crate::bail_input!("{}: tensor '{name}': expected shape {shape:?}, found {:?}", path.display(), file[name].0);
        }
    }
    // Every name and shape is checked above: each `take` finds its tensor.
    let mut take = |name: String| file.remove(&name).expect("checked above");
    let matrix = |(shape, v): (Vec<usize>, Vec<f32>)| Param::from_data(TensorData::new(v, [shape[0], shape[1]]), device);
    for (side, heads) in [("crd_student", &mut net.crd_student), ("crd_teacher", &mut net.crd_teacher)] {
        for (p, head) in heads.iter_mut().enumerate() {
            head.linear.weight = matrix(take(format!("{side}.{p}.linear.weight")));
            if head.linear.bias.is_some() {
                let (shape, v) = take(format!("{side}.{p}.linear.bias"));
                head.linear.bias = Some(Param::from_data(TensorData::new(v, [shape[0]]), device));
            }
        }
    }
    for (p, up) in net.upsamplers.iter_mut().enumerate() {
        if up.query_logits.is_some() {
            up.query_logits = Some(matrix(take(format!("upsamplers.{p}.query_logits"))));
        }
        if up.key_logits.is_some() {
            up.key_logits = Some(matrix(take(format!("upsamplers.{p}.key_logits"))));
        }
    }
    Ok(())
}
