//! `TrainTask` for distillation: the training loop drives `distill::DistillTask` through this.

use std::path::Path;

use anyhow::Result;
use burn::prelude::*;
use mmkd_losses::{CrdMemoryBank, CrdMemoryState};

use super::task::{PartLoss, TrainTask};
use crate::data::Batch;
use crate::distill::DistillModel;
use crate::distill::task::{DistillTask, loss_err};
use crate::eval::inference::cross_entropy;
use crate::model::MultimodalNet;

impl TrainTask for DistillTask {
    type Model = DistillModel;

    fn mapped_transformers(&self) -> std::collections::BTreeSet<crate::model::TransformerId> {
        let request = self.request(false);
        if request.probe.map_temperature.is_some() { request.transformers } else { Default::default() }
    }

    fn init_model(&mut self, device: &Device, sample: &Batch) -> Result<DistillModel> {
        self.init_with(device, sample)
    }

    fn train_loss(&mut self, model: &DistillModel, batch: &Batch) -> Result<(Tensor<1>, Vec<(String, f64)>)> {
        let s_out = model.student.forward(&batch.input, &self.request(false));
        let t_out = self.teacher_side(&batch.first_rows_plain(batch.indices.len()).input);
        let ce = cross_entropy(s_out.logits.clone(), batch.classes.clone());
        let kd = self.kd_loss(model, &s_out, &t_out, batch)?;
        Ok(weighted_sum(self.cfg.alpha, ce, self.cfg.beta, kd))
    }

    fn part_loss<'a>(&'a self, batch: &Batch) -> Result<Option<Box<PartLoss<'a, DistillModel>>>> {
        if !self.kd_is_rowwise() {
            return Ok(None);
        }
        // The frozen teacher on each part's rows, in the part's thread; but once on the whole
        // batch for the shuffled control, which pairs each clip with the next clip of the whole
        // batch (each part then takes its rows).
        let whole = match self.cfg.teacher_signal {
            crate::distill::TeacherSignal::Matched => None,
            crate::distill::TeacherSignal::Shuffled => Some(self.teacher_side(&batch.first_rows_plain(batch.indices.len()).input)),
        };
        let request = self.request(false);
        Ok(Some(Box::new(move |model: &DistillModel, part: &Batch, rows| {
            let s_out = model.student.forward(&part.input, &request);
            let teacher = match &whole {
                Some(whole) => whole.rows(rows),
                None => self.teacher_side(&part.first_rows_plain(part.indices.len()).input),
            };
            let ce = cross_entropy(s_out.logits.clone(), part.classes.clone());
            let kd = self.edam_kd(model, &s_out, &teacher)?;
            Ok(weighted_sum(self.cfg.alpha, ce, self.cfg.beta, kd))
        })))
    }

    fn net(model: &DistillModel) -> &MultimodalNet {
        &model.student
    }

    fn save_extra(&self, dir: &Path) -> Result<()> {
        if let Some(bank) = &self.bank {
            let state = bank.to_state().map_err(loss_err)?;
            super::checkpoint::save_bank(dir, &state)?;
        }
        Ok(())
    }

    fn load_extra(&mut self, dir: &Path) -> Result<()> {
        if self.bank.is_some() {
            let state: CrdMemoryState = super::checkpoint::load_bank(dir)?;
            self.bank = Some(CrdMemoryBank::from_state(state, &self.plain).map_err(loss_err)?);
        }
        Ok(())
    }
}

/// `alpha * ce + beta * kd`, with the two terms' values for the log.
fn weighted_sum(alpha: f64, ce: Tensor<1>, beta: f64, kd: Tensor<1>) -> (Tensor<1>, Vec<(String, f64)>) {
    let ce_v: f32 = ce.clone().inner().into_scalar();
    let kd_v: f32 = kd.clone().inner().into_scalar();
    (ce.mul_scalar(alpha) + kd.mul_scalar(beta), vec![("ce".into(), ce_v as f64), ("kd".into(), kd_v as f64)])
}
