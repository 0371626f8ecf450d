//! A dry run of one training run: a few batches at the run's real shapes, on its device, timed,
//! with the process's peak memory, and the wall time of the whole run extrapolated from them.
//! `study --dry-run` runs one of each run kind before hours are spent on the real study.
//!
//! The run folder gets `config.json`, `dry-run.json` and the weights after those batches as
//! `best.safetensors`, so a teacher's dry run can stand in for the teacher that a distillation
//! dry run reads. It gets no `eval.json`: a dry run is never mistaken for a finished run.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::task::TrainTask;
use crate::data::{Dataset, epoch_order};
use crate::durable::write_atomic;
use crate::run::RunConfig;

/// The file a dry run writes into its run folder.
pub const DRY_RUN_FILE: &str = "dry-run.json";

/// What one dry run measured, and the run's cost extrapolated from it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DryRunReport {
    /// The run folder's name.
    pub run: String,
    /// `flex` or `cuda`.
    pub device: String,
    /// Clips per training batch.
    pub batch_size: usize,
    /// The first step (allocations, kernel selection), seconds; not in the median.
    pub warmup_step_s: f64,
    /// Every timed training step after it, seconds.
    pub step_s: Vec<f64>,
    /// Median of `step_s`.
    pub median_step_s: f64,
    /// Median time of one inference batch of the validation split, seconds.
    pub eval_batch_s: f64,
    /// Training batches per epoch.
    pub train_batches: usize,
    /// Inference batches per validation pass.
    pub valid_batches: usize,
    /// Inference batches of the final test evaluation.
    pub test_batches: usize,
    /// Epochs of the run.
    pub epochs: usize,
    /// `epochs x (train_batches x median_step_s + valid_batches x eval_batch_s) + test_batches x
    /// eval_batch_s`, seconds (loading data and checkpoints not counted).
    pub estimated_run_s: f64,
    /// Peak resident memory of the process (`VmHWM`): the data in memory, the network, the
    /// optimizer and the step. On cuda the step's device memory is not in it.
    pub peak_rss_bytes: u64,
    /// mmkd's own estimate of what a training step keeps for its backward (`train::memory`).
    pub step_memory_estimate_bytes: u64,
}

/// Peak resident memory of this process (`VmHWM` in /proc/self/status), bytes; 0 when it
/// cannot be read.
pub fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<u64>().ok()).map_or(0, |kb| kb * 1024)
}

/// The median of `v` (the mean of the middle two for an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => 0.5 * (s[n / 2 - 1] + s[n / 2]),
    }
}

/// Train `batches` timed batches (after one warm-up batch) of the run `cfg` describes into
/// `run`, time one validation batch of inference, and write `RUN/dry-run.json`.
pub fn dry_run<T: TrainTask>(run: &Path, cfg: &RunConfig, dataset: &Dataset, task: &mut T, batches: usize, device: &Device) -> Result<DryRunReport> {
    let step_memory = super::fit::refuse_unfitting_step(run, cfg, dataset, task, device)?;
    crate::run::prepare_run_dir(run)?;
    write_atomic(&run.join("config.json"), serde_json::to_string_pretty(cfg)?.as_bytes())?;
    let tc = &cfg.train;
    let ad = tc.autodiff_device(device);
    crate::model::dropout::seed(&ad, tc.seed);
    let shape = &dataset.shape;
    let sample_rows: Vec<usize> = (0..dataset.train.len().min(2)).collect();
    let mut model = task.init_model(&ad, &dataset.train.batch(shape, &sample_rows, &ad))?;
    let mut optim = super::step::adam(tc);
    let order = epoch_order(dataset.train.len(), tc.batch_size, tc.seed, 0, true);
    let mut times = Vec::new();
    for b in 0..=batches.max(1) {
        let idx = &order[b % order.len()];
        let t = Instant::now();
        crate::model::dropout::seed_for_step(&ad, super::fit::batch_seed(tc.seed, 0, b), &model);
        let batch = dataset.train.batch(shape, idx, &ad);
        // The step `fit` takes (in parts where the config says so). Reading the loss waits for
        // the device; a queued backward is waited for by the next step's read, so the median
        // of several steps is the step's time on a GPU too.
        let step = super::step::loss_and_gradients(task, &model, &batch, tc.step_rows_per_part())?;
        if !step.value.is_finite() {
            anyhow::bail!("training loss became {} in the dry run's batch {b}", step.value);
        }
        model = super::step::apply_gradients(model, &mut optim, step.grads, tc.lr, tc.grad_clip).0;
        times.push(t.elapsed().as_secs_f64());
    }
    let net = T::net(&model).valid();
    let rows: Vec<usize> = (0..dataset.valid.len().min(tc.batch_size)).collect();
    let eval_times: Vec<f64> = (0..2)
        .map(|_| {
            let t = Instant::now();
            let batch = dataset.valid.batch(shape, &rows, device);
            // As evaluation runs it (in parts on flex).
            let logits = crate::model::parts::logits_in_parts(&net, &batch.input, crate::model::parts::INFERENCE_ROWS_PER_PART);
            let _: Vec<f32> = logits.into_data().try_to_vec().unwrap_or_default();
            t.elapsed().as_secs_f64()
        })
        .collect();
    crate::run::weights::save_safetensors(&net, &run.join("best.safetensors"))?;
    let (train_batches, valid_batches, test_batches) = (dataset.train.len().div_ceil(tc.batch_size), dataset.valid.len().div_ceil(tc.batch_size), dataset.test.len().div_ceil(tc.batch_size));
    let (step, eval) = (median(&times[1..]), median(&eval_times));
    let report = DryRunReport {
        run: run.file_name().and_then(|n| n.to_str()).unwrap_or("run").to_string(),
        device: if crate::model::fused_attention::supported(device) { "flex" } else { "cuda" }.into(),
        batch_size: tc.batch_size,
        warmup_step_s: times[0],
        step_s: times[1..].to_vec(),
        median_step_s: step,
        eval_batch_s: eval,
        train_batches,
        valid_batches,
        test_batches,
        epochs: tc.epochs,
        estimated_run_s: tc.epochs as f64 * (train_batches as f64 * step + valid_batches as f64 * eval) + test_batches as f64 * eval,
        peak_rss_bytes: peak_rss_bytes(),
        step_memory_estimate_bytes: step_memory,
    };
    write_atomic(&run.join(DRY_RUN_FILE), serde_json::to_string_pretty(&report)?.as_bytes())?;
    Ok(report)
}
