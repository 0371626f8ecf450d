//! Parameter counts per module, for `mmkd params` and the study's table, and the floating-point
//! operations of a forward pass, for `mmkd bench`'s throughput figures.

use std::collections::BTreeMap;

use burn::module::Module;
use serde::Serialize;

use super::encoder::CrossModalEncoder;
use super::network::{Body, MultimodalNet};
use super::{Modality, TransformerId};

/// Parameter counts of one network, by part.
#[derive(Clone, Debug, Serialize)]
pub struct ParamCount {
    /// Every parameter of the network.
    pub total: usize,
    /// Conv1D front end.
    pub front: usize,
    /// Per transformer (by name, e.g. "A<-V", "V-temporal").
    pub transformers: BTreeMap<String, usize>,
    /// The branch's 2d -> d linear layers.
    pub reduce: usize,
    /// MulT's output head.
    pub head: usize,
    /// Transformers plus head: what the paper's 1.802 M / 0.675 M appear to count.
    pub transformers_and_head: usize,
}

/// Count the parameters of `net` by part.
pub fn count(net: &MultimodalNet) -> ParamCount {
    let front = net.front.iter().map(|c| c.num_params()).sum();
    let mut transformers = BTreeMap::new();
    let mut reduce = 0;
    let ids = net.transformers();
    match &net.body {
        Body::Branches(branches) => {
            let mut i = 0;
            for b in branches {
                for enc in &b.cross {
                    transformers.insert(ids[i].to_string(), enc.num_params());
                    i += 1;
                }
                transformers.insert(ids[i].to_string(), b.temporal.num_params());
                i += 1;
                reduce += b.reduce.as_ref().map_or(0, |r| r.num_params());
            }
        }
        Body::Flat(flat) => {
            for t in flat {
                transformers.insert(t.sides.id().to_string(), t.encoder.num_params());
            }
        }
    }
    let head = net.head.num_params();
    let t: usize = transformers.values().sum();
    ParamCount { total: net.num_params(), front, transformers, reduce, head, transformers_and_head: t + head }
}

/// Floating-point operations of one transformer over `batch` clips: queries of length `lq`, keys
/// of length `lk` (`lk == lq` for self-attention). Multiply-adds count 2; only the matrix products
/// are counted (projections, scores, weighted values, feed-forward): LayerNorm, softmax and the
/// element-wise work are O(L d), a few per cent at these widths.
fn encoder_flops(enc: &CrossModalEncoder, batch: usize, lq: usize, lk: usize) -> f64 {
    let (b, d, lq, lk) = (batch as f64, enc.d_model as f64, lq as f64, lk as f64);
    let per_layer = 2.0 * b * d * d * (2.0 * lq + 2.0 * lk) // Q and output on the queries, K and V on the keys
        + 4.0 * b * lq * lk * d // scores and weighted values, all heads
        + 16.0 * b * lq * d * d; // d -> 4d -> d
    per_layer * enc.layers.len() as f64
}

/// Floating-point operations of `net`'s forward pass over `batch` clips (matrix products and
/// convolutions, multiply-adds counting 2). With `only`, just what `MultimodalNet::traces` runs
/// for those transformers (the front end, and a branch's cross transformers when its temporal
/// one is asked for) and no head. A training step costs about three forward passes (the backward
/// pass computes two products for each one of the forward).
pub fn forward_flops(net: &MultimodalNet, batch: usize, only: Option<&[TransformerId]>) -> f64 {
    let needed = |id: TransformerId| only.is_none_or(|ids| ids.contains(&id));
    let b = batch as f64;
    let mut flops: f64 = net
        .front
        .iter()
        .map(|c| {
            let [d_out, d_in, k] = c.conv.weight.val().dims();
            2.0 * b * (c.out_len * d_out * d_in * k) as f64
        })
        .sum();
    let len = |m: Modality| net.stream_len(m);
    let mut head_in = 0usize;
    match &net.body {
        Body::Branches(branches) => {
            for branch in branches {
                let q = branch.query;
                let temporal = needed(TransformerId::Temporal(q));
                for (enc, k) in branch.cross.iter().zip(q.others()) {
                    if temporal || needed(TransformerId::cross(k, q)) {
                        flops += encoder_flops(enc, batch, len(q), len(k));
                    }
                }
                if temporal {
                    if let Some(r) = &branch.reduce {
                        let [i, o] = r.weight.val().dims();
                        flops += 2.0 * b * (len(q) * i * o) as f64;
                    }
                    flops += encoder_flops(&branch.temporal, batch, len(q), len(q));
                    head_in += branch.temporal.d_model;
                }
            }
        }
        Body::Flat(flat) => {
            for t in flat.iter().filter(|t| needed(t.sides.id())) {
                flops += encoder_flops(&t.encoder, batch, len(t.sides.queries), len(t.sides.keys));
                head_in += t.encoder.d_model;
            }
        }
    }
    if only.is_none() {
        // proj1, proj2 (head_in x head_in) and the output layer.
        let classes = crate::input::NUM_CLASSES;
        flops += 2.0 * b * (2 * head_in * head_in + head_in * classes) as f64;
    }
    flops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DataShape, ModelConfig, Preset};
    use crate::model::{StudentStreams, TeacherKind, build_student, build_teacher};
    use burn::prelude::Device;

    #[test]
    fn paper_encoder_has_200064_parameters_and_totals_add_up() {
        let device = Device::flex();
        let shape = DataShape::for_preset(Preset::Paper);
        let cfg = ModelConfig::for_preset(Preset::Paper);
        let teacher = count(&build_teacher(TeacherKind::Complete, &shape, &cfg, &device));
        assert_eq!(teacher.transformers.len(), 9);
        assert!(teacher.transformers.values().all(|&n| n == 200_064));
        assert_eq!(teacher.total, teacher.front + teacher.reduce + teacher.head + 9 * 200_064);
        let student = count(&build_student(crate::model::StudentConfig::C5, StudentStreams::Downsampled, &shape, &cfg, &device));
        assert_eq!(student.transformers.len(), 3);
        // 3 encoders + MulT head over 3d = 192: 600,192 + 75,463, the paper's 0.675 M.
        assert_eq!(student.transformers_and_head, 675_655);
    }

    /// The count by hand for a config-5 student at the smoke shapes, one layer's terms spelt out.
    #[test]
    fn forward_flops_add_up_by_hand() {
        let device = Device::flex();
        let shape = DataShape::for_preset(Preset::Smoke);
        let cfg = ModelConfig::for_preset(Preset::Smoke);
        let student = build_student(crate::model::StudentConfig::C5, StudentStreams::Downsampled, &shape, &cfg, &device);
        let b = 3.0;
        let d = cfg.d_model as f64;
        let layers = cfg.layers as f64;
        let (lv, la, lt) = (student.stream_len(Modality::Video) as f64, student.stream_len(Modality::Audio) as f64, student.stream_len(Modality::Text) as f64);
        let enc = |lq: f64, lk: f64| layers * (2.0 * b * d * d * (2.0 * lq + 2.0 * lk) + 4.0 * b * lq * lk * d + 16.0 * b * lq * d * d);
        let front: f64 = student.front.iter().map(|c| 2.0 * b * c.out_len as f64 * c.conv.weight.val().dims().iter().product::<usize>() as f64).sum();
        // Config 5: V<-V (self), A_S<-V_S... as its spec lists; count from the spec.
        let body: f64 = student
            .transformers()
            .iter()
            .map(|id| match *id {
                TransformerId::Cross { keys, queries } => {
                    let l = |m: Modality| match m {
                        Modality::Video => lv,
                        Modality::Audio => la,
                        Modality::Text => lt,
                    };
                    enc(l(queries), l(keys))
                }
                TransformerId::Temporal(_) => unreachable!("a student has no temporal transformers"),
            })
            .sum();
        let h = 3.0 * d;
        let head = 2.0 * b * (2.0 * h * h + h * 7.0);
        let got = forward_flops(&student, 3, None);
        assert!((got - (front + body + head)).abs() < 1e-6 * got, "{got} vs {}", front + body + head);
        // The teacher's traces for configuration 5's pairs run only V<-A and V<-L.
        let teacher = build_teacher(TeacherKind::Complete, &shape, &cfg, &device);
        let pairs = [TransformerId::cross(Modality::Audio, Modality::Video), TransformerId::cross(Modality::Text, Modality::Video)];
        let traced = forward_flops(&teacher, 3, Some(&pairs));
        let tl = |m: Modality| teacher.stream_len(m) as f64;
        let teacher_front: f64 = teacher.front.iter().map(|c| 2.0 * b * c.out_len as f64 * c.conv.weight.val().dims().iter().product::<usize>() as f64).sum();
        let want = teacher_front + enc(tl(Modality::Video), tl(Modality::Audio)) + enc(tl(Modality::Video), tl(Modality::Text));
        assert!((traced - want).abs() < 1e-6 * want, "the front end, V<-A and V<-L only: {traced} vs {want}");
    }
}
