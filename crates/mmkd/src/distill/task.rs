//! The distillation training task: `alpha * CE + beta * L_KD` on a video-only student, with a
//! frozen teacher.

use std::collections::BTreeSet;

use anyhow::{Result, anyhow};
use burn::prelude::*;
use mmkd_losses::{CrdEmbed, CrdEmbedConfig, CrdMemoryBank, CrdMemoryBankConfig, EdamUpsampler, EdamUpsamplerConfig, crd_in_batch_loss, edam_loss};

use super::{DistillConfig, Level, Method};
use crate::choice::Choice;
use crate::data::Batch;
use crate::model::{LayerTrace, MultimodalNet, Probe, TraceRequest, TransformerId};

/// Everything the distillation run trains: the student and the distillation heads.
#[derive(Module, Debug)]
pub struct DistillModel {
    /// The video-only student network.
    pub student: MultimodalNet,
    /// CRD embedding heads (one per side, per distilled pair for in-network levels).
    pub crd_student: Vec<CrdEmbed>,
    /// CRD embedding heads on the teacher's side (trained; they see the frozen teacher's outputs).
    pub crd_teacher: Vec<CrdEmbed>,
    /// EDAM-T: one learned map per distilled pair (shared by its layers).
    pub upsamplers: Vec<EdamUpsampler>,
}

/// The frozen teacher's side of one batch (`DistillTask::teacher_side`).
// One value per batch, moved once: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum TeacherSide {
    /// The whole forward pass (final and penultimate levels).
    Outputs(crate::model::NetOutput),
    /// Only the distilled transformers' traces (post-attention and attention-map levels).
    Traces(std::collections::BTreeMap<TransformerId, Vec<LayerTrace>>),
}

impl TeacherSide {
    /// Rows `rows` of every tensor (the teacher's side of one part of a batch).
    pub fn rows(&self, rows: std::ops::Range<usize>) -> TeacherSide {
        let take3 = |t: &Tensor<3>| t.clone().narrow(0, rows.start, rows.len());
        let take_traces = |traces: &std::collections::BTreeMap<TransformerId, Vec<LayerTrace>>| {
            traces.iter().map(|(id, layers)| (*id, layers.iter().map(|l| LayerTrace { map: l.map.as_ref().map(take3), post_attention: l.post_attention.as_ref().map(take3) }).collect())).collect()
        };
        match self {
            TeacherSide::Outputs(out) => TeacherSide::Outputs(crate::model::NetOutput {
                logits: out.logits.clone().narrow(0, rows.start, rows.len()),
                penultimate: out.penultimate.clone().narrow(0, rows.start, rows.len()),
                traces: take_traces(&out.traces),
            }),
            TeacherSide::Traces(traces) => TeacherSide::Traces(take_traces(traces)),
        }
    }

    /// The traces, whichever way they were computed.
    pub fn traces(&self) -> &std::collections::BTreeMap<TransformerId, Vec<LayerTrace>> {
        match self {
            TeacherSide::Outputs(out) => &out.traces,
            TeacherSide::Traces(traces) => traces,
        }
    }
}

/// The distillation objective: a frozen teacher, the distilled pairs and the CRD memory bank;
/// drives training through `TrainTask` (train/distill.rs).
pub struct DistillTask {
    /// The distillation setting.
    pub cfg: DistillConfig,
    /// Frozen teacher on the plain device.
    pub teacher: MultimodalNet,
    /// Distilled (teacher transformer, student transformer) pairs.
    pub pairs: Vec<(TransformerId, TransformerId)>,
    /// Builds an untrained student on a device.
    pub build_student: Box<dyn Fn(&Device) -> MultimodalNet + Send + Sync>,
    /// Training-set size (CRD memory bank rows).
    pub n_train: usize,
    /// Seed of the CRD memory bank.
    pub seed: u64,
    /// CRD memory bank (CRD at the final or penultimate level only); set by `init_with`.
    pub bank: Option<CrdMemoryBank>,
    /// Plain (non-autodiff) device of the teacher and the memory bank.
    pub plain: Device,
}

/// A trace whose clip `i` holds clip `i + 1`'s values (the last clip the first's): the shuffled
/// control's teacher signal.
pub fn next_clips(trace: LayerTrace) -> LayerTrace {
    let roll = |t: Tensor<3>| {
        let [b, _, _] = t.dims();
        if b < 2 { t } else { Tensor::cat(vec![t.clone().narrow(0, 1, b - 1), t.narrow(0, 0, 1)], 0) }
    };
    LayerTrace { map: trace.map.map(roll), post_attention: trace.post_attention.map(roll) }
}

/// Wraps an error of the loss crate as a distillation-loss error.
pub fn loss_err(e: mmkd_losses::LossError) -> anyhow::Error {
    anyhow!("distillation loss: {e}")
}

/// Width of the vector a level compares, per distilled pair (or one entry for vector levels).
struct Widths {
    student: Vec<usize>,
    teacher: Vec<usize>,
}

impl DistillTask {
    /// A task with no memory bank yet (`init_with` creates it when CRD needs one).
    pub fn new(
        cfg: DistillConfig,
        teacher: MultimodalNet,
        pairs: Vec<(TransformerId, TransformerId)>,
        build_student: Box<dyn Fn(&Device) -> MultimodalNet + Send + Sync>,
        n_train: usize,
        seed: u64,
        plain: Device,
    ) -> Self {
        DistillTask { cfg, teacher, pairs, build_student, n_train, seed, bank: None, plain }
    }

    fn probe(&self) -> Probe {
        match self.cfg.level {
            Level::AttentionMap => Probe { map_temperature: Some(self.cfg.temperature), post_attention: false },
            Level::PostAttention => Probe { map_temperature: None, post_attention: true },
            Level::Final | Level::Penultimate => Probe::NONE,
        }
    }

    /// What to trace in the forward pass of the teacher (`teacher_side`) or the student: the
    /// level's probe on the distilled transformers, or nothing for the final/penultimate levels.
    pub fn request(&self, teacher_side: bool) -> TraceRequest {
        let probe = self.probe();
        if probe.is_empty() {
            return TraceRequest::none();
        }
        let transformers: BTreeSet<TransformerId> = self.pairs.iter().map(|(t, s)| if teacher_side { *t } else { *s }).collect();
        TraceRequest { probe, transformers }
    }

    /// What the frozen teacher gives a batch: its whole output at the final and penultimate
    /// levels; at the others, only the traces of the distilled transformers (the rest of its
    /// forward is skipped: the same values, less work).
    pub fn teacher_side(&self, input: &crate::input::NetInput) -> TeacherSide {
        let request = self.request(true);
        match self.cfg.level {
            Level::Final | Level::Penultimate => TeacherSide::Outputs(self.teacher.forward(input, &request)),
            Level::PostAttention | Level::AttentionMap => {
                let traces = self.teacher.traces(input, &request);
                TeacherSide::Traces(match self.cfg.teacher_signal {
                    super::TeacherSignal::Matched => traces,
                    super::TeacherSignal::Shuffled => traces.into_iter().map(|(id, layers)| (id, layers.into_iter().map(next_clips).collect())).collect(),
                })
            }
        }
    }

    /// Discover the compared widths with one tiny forward pass of each network.
    fn widths(&self, student: &MultimodalNet, sample_batch: &Batch) -> Widths {
        let s_out = student.valid().forward(&sample_batch.first_rows_plain(2).input, &self.request(false));
        let t_out = self.teacher.forward(&sample_batch.first_rows_plain(2).input, &self.request(true));
        let last_dim = |t: &Tensor<3>| t.dims()[2];
        match self.cfg.level {
            Level::Final => Widths { student: vec![s_out.logits.dims()[1]], teacher: vec![t_out.logits.dims()[1]] },
            Level::Penultimate => Widths { student: vec![s_out.penultimate.dims()[1]], teacher: vec![t_out.penultimate.dims()[1]] },
            Level::PostAttention => Widths {
                student: self.pairs.iter().map(|(_, s)| last_dim(s_out.traces[s][0].post_attention.as_ref().expect("probed"))).collect(),
                teacher: self.pairs.iter().map(|(t, _)| last_dim(t_out.traces[t][0].post_attention.as_ref().expect("probed"))).collect(),
            },
            Level::AttentionMap => Widths {
                student: self.pairs.iter().map(|(_, s)| last_dim(s_out.traces[s][0].map.as_ref().expect("probed"))).collect(),
                teacher: self.pairs.iter().map(|(t, _)| last_dim(t_out.traces[t][0].map.as_ref().expect("probed"))).collect(),
            },
        }
    }

    /// Build the trainable model; `sample_batch` (a few training rows) fixes the heads' widths.
    pub fn init_with(&mut self, device: &Device, sample_batch: &Batch) -> Result<DistillModel> {
        let student = (self.build_student)(device);
        let mut model = DistillModel { student, crd_student: Vec::new(), crd_teacher: Vec::new(), upsamplers: Vec::new() };
        match self.cfg.method {
            Method::Crd => {
                let w = self.widths(&model.student, sample_batch);
                for (&ds, &dt) in w.student.iter().zip(&w.teacher) {
                    model.crd_student.push(CrdEmbedConfig::new(ds).init(device).map_err(loss_err)?);
                    model.crd_teacher.push(CrdEmbedConfig::new(dt).init(device).map_err(loss_err)?);
                }
                if matches!(self.cfg.level, Level::Final | Level::Penultimate) {
                    let cfg = CrdMemoryBankConfig::new(self.n_train).with_seed(self.seed);
                    self.bank = Some(CrdMemoryBank::new(&cfg, &self.plain).map_err(loss_err)?);
                }
            }
            Method::EdamT => {
                let s_out = model.student.valid().forward(&sample_batch.first_rows_plain(1).input, &self.request(false));
                let t_out = self.teacher.forward(&sample_batch.first_rows_plain(1).input, &self.request(true));
                for (t, s) in &self.pairs {
                    let [_, tm, tn] = t_out.traces[t][0].map.as_ref().expect("probed").dims();
                    let [_, sm, sn] = s_out.traces[s][0].map.as_ref().expect("probed").dims();
                    model.upsamplers.push(EdamUpsamplerConfig::new(tm, tn, sm, sn).init(device).map_err(loss_err)?);
                }
            }
            Method::EdamS => {}
        }
        Ok(model)
    }

    /// The distillation loss `L_KD` for one batch from the student's and the teacher's outputs:
    /// CRD with the memory bank (final/penultimate), CRD with in-batch negatives averaged over
    /// pairs (post-attention/attention-map), or EDAM over the maps of every distilled layer
    /// (EDAM-T upsamples the teacher's maps first).
    pub fn kd_loss(&mut self, model: &DistillModel, s_out: &crate::model::NetOutput, teacher: &TeacherSide, batch: &Batch) -> Result<Tensor<1>> {
        let student_traces = |id: &TransformerId| -> Vec<LayerTrace> { s_out.traces.get(id).cloned().unwrap_or_default() };
        let teacher_traces = |id: &TransformerId| -> Vec<LayerTrace> { teacher.traces().get(id).cloned().unwrap_or_default() };
        match (self.cfg.method, self.cfg.level) {
            (Method::Crd, Level::Final | Level::Penultimate) => {
                let TeacherSide::Outputs(t_out) = teacher else { anyhow::bail!("the {} level needs the teacher's whole output", self.cfg.level.name()) };
                let (s, t) = if self.cfg.level == Level::Final { (s_out.logits.clone(), t_out.logits.clone()) } else { (s_out.penultimate.clone(), t_out.penultimate.clone()) };
                let se = model.crd_student[0].forward(s).map_err(loss_err)?;
                let te = model.crd_teacher[0].forward(t).map_err(loss_err)?;
                let bank = self.bank.as_mut().ok_or_else(|| anyhow!("CRD memory bank not initialised"))?;
                bank.loss(se, te, &batch.indices).map_err(loss_err)
            }
            (Method::Crd, level) => {
                // Per layer and per row (query position), in-batch negatives: groups = layers x rows.
                let mut total: Option<Tensor<1>> = None;
                for (p, (tid, sid)) in self.pairs.iter().enumerate() {
                    let pick = |tr: &LayerTrace| -> Tensor<3> { if level == Level::AttentionMap { tr.map.clone().expect("probed map") } else { tr.post_attention.clone().expect("probed output") } };
                    let s_layers: Vec<Tensor<3>> = student_traces(sid).iter().map(pick).collect();
                    let t_layers: Vec<Tensor<3>> = teacher_traces(tid).iter().map(pick).collect();
                    // [B, L*rows, w] -> [L*rows, B, w]
                    let s = Tensor::cat(s_layers, 1).swap_dims(0, 1);
                    let t = Tensor::cat(t_layers, 1).swap_dims(0, 1);
                    if s.dims()[0] != t.dims()[0] {
                        anyhow::bail!("CRD at {}: pair {sid} has {} student rows but {} teacher rows; use downsampled student streams", level.name(), s.dims()[0], t.dims()[0]);
                    }
                    let se = model.crd_student[p].forward(s).map_err(loss_err)?;
                    let te = model.crd_teacher[p].forward(t).map_err(loss_err)?;
                    let l = crd_in_batch_loss(se, te, mmkd_losses::CRD_TEMPERATURE).map_err(loss_err)?;
                    total = Some(match total {
                        Some(acc) => acc + l,
                        None => l,
                    });
                }
                Ok(total.ok_or_else(|| anyhow!("no pairs to distil"))?.div_scalar(self.pairs.len() as f64))
            }
            (Method::EdamS | Method::EdamT, _) => self.edam_kd(model, s_out, teacher),
        }
    }

    /// Whether the distillation term is a mean over the batch's rows of terms that each read
    /// one row (EDAM: yes; CRD: no, its negatives are other rows, and its memory bank changes
    /// with every step). A match without a wildcard: a new method must decide.
    pub fn kd_is_rowwise(&self) -> bool {
        match self.cfg.method {
            Method::Crd => false,
            Method::EdamS | Method::EdamT => true,
        }
    }

    /// The EDAM term: one entry per distilled layer pair, each a mean over rows and queries.
    pub fn edam_kd(&self, model: &DistillModel, s_out: &crate::model::NetOutput, teacher: &TeacherSide) -> Result<Tensor<1>> {
        let student_traces = |id: &TransformerId| -> Vec<LayerTrace> { s_out.traces.get(id).cloned().unwrap_or_default() };
        let teacher_traces = |id: &TransformerId| -> Vec<LayerTrace> { teacher.traces().get(id).cloned().unwrap_or_default() };
        match self.cfg.method {
            Method::Crd => anyhow::bail!("edam_kd called for CRD"),
            Method::EdamS | Method::EdamT => {
                let orientation = self.cfg.orientation;
                let mut maps = Vec::new();
                for (p, (tid, sid)) in self.pairs.iter().enumerate() {
                    for (st, tt) in student_traces(sid).iter().zip(teacher_traces(tid).iter()) {
                        let s = st.map.clone().expect("probed map");
                        let mut t = tt.map.clone().expect("probed map");
                        if self.cfg.method == Method::EdamT {
                            t = model.upsamplers[p].forward(t).map_err(loss_err)?;
                        }
                        maps.push((s, t));
                    }
                }
                edam_loss(&maps, orientation).map_err(loss_err)
            }
        }
    }
}

#[cfg(test)]
mod control_tests {
    use super::*;

    /// Clip i takes clip i + 1's map and output, the last clip the first's; one clip stays.
    #[test]
    fn next_clips_rolls_the_batch_by_one() {
        let device = Device::flex();
        let t = Tensor::<3>::from_floats([[[0.0, 1.0]], [[2.0, 3.0]], [[4.0, 5.0]]], &device);
        let rolled = next_clips(LayerTrace { map: Some(t.clone()), post_attention: Some(t * 10.0) });
        let map: Vec<f32> = rolled.map.unwrap().into_data().try_to_vec().unwrap();
        assert_eq!(map, [2.0, 3.0, 4.0, 5.0, 0.0, 1.0]);
        let post: Vec<f32> = rolled.post_attention.unwrap().into_data().try_to_vec().unwrap();
        assert_eq!(post, [20.0, 30.0, 40.0, 50.0, 0.0, 10.0]);
        let one = Tensor::<3>::from_floats([[[7.0]]], &device);
        let same: Vec<f32> = next_clips(LayerTrace { map: Some(one), post_attention: None }).map.unwrap().into_data().try_to_vec().unwrap();
        assert_eq!(same, [7.0]);
    }
}
