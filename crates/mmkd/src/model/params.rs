//! Parameter counts per module, for `mmkd params` and the study's table.

use std::collections::BTreeMap;

use burn::module::Module;
use serde::Serialize;

use super::network::{Body, MultimodalNet};

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
    let ids = net.spec.transformers();
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
        Body::Flat(encoders) => {
            for (enc, id) in encoders.iter().zip(&ids) {
                transformers.insert(id.to_string(), enc.num_params());
            }
        }
    }
    let head = net.head.num_params();
    let t: usize = transformers.values().sum();
    ParamCount { total: net.num_params(), front, transformers, reduce, head, transformers_and_head: t + head }
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
}
