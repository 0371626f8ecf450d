//! `TrainTask` for distillation: the training loop drives `distill::DistillTask` through this.

use std::path::Path;

use anyhow::Result;
use burn::prelude::*;
use mmkd_losses::{CrdMemoryBank, CrdMemoryState};

use super::task::TrainTask;
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
        let ce_v: f32 = ce.clone().inner().into_scalar();
        let kd_v: f32 = kd.clone().inner().into_scalar();
        let loss = ce.mul_scalar(self.cfg.alpha) + kd.mul_scalar(self.cfg.beta);
        Ok((loss, vec![("ce".into(), ce_v as f64), ("kd".into(), kd_v as f64)]))
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
