//! The training loop: `fit` trains a task into a run folder (or continues it), in phases:
//! refusals and the config before anything is trained (`prepare`), a fresh or resumed state
//! (`start`), one epoch of optimiser steps with checkpoints inside it (`train_epoch`), and
//! validation with the epoch's checkpoints and log line (`close_epoch`).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use burn::module::Module;
use burn::prelude::*;

use super::checkpoint::{self, EpochProgress, ResumeState};
use super::curves::draw_curves;
use super::plateau::ReduceLrOnPlateau;
use super::progress::{PROGRESS_LINE_SECS, ProgressLog, progress};
use super::task::TrainTask;
use crate::data::{Dataset, epoch_order};
use crate::durable::write_atomic;
use crate::eval::inference::predict;
use crate::eval::{EvalReport, evaluate_predictions};
use crate::model::MultimodalNet;
use crate::run::{EpochLog, RunConfig, evaluate_run, files, prepare_run_dir, rewrite_metrics};
use burn::optim::ModuleOptimizer;

/// Plain-device copy of the network for evaluation (no autodiff graph, dropout off).
fn eval_net(net: &MultimodalNet) -> MultimodalNet {
    net.valid()
}

/// The backend seed for batch `batch` of epoch `epoch` (SplitMix64's finaliser over the three):
/// dropout masks depend on nothing but the run's seed and the batch's position.
pub(super) fn batch_seed(seed: u64, epoch: usize, batch: usize) -> u64 {
    let mut z = seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (batch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Before anything is written: a step that cannot fit is refused with the estimate (of host
/// memory, so only where the step runs on the CPU). Returns the estimate, bytes.
pub(super) fn refuse_unfitting_step<T: TrainTask>(run: &Path, cfg: &RunConfig, dataset: &Dataset, task: &T, device: &Device) -> Result<u64> {
    // The estimate needs the network's shapes only: build it on the CPU, never on a GPU.
    let net = cfg.build_net(&Device::flex());
    let batch = cfg.train.batch_size.min(dataset.train.len()).max(1);
    let kept = super::memory::attention_kept(&cfg.model, &task.mapped_transformers(), device);
    if crate::model::fused_attention::supported(device)
        && let Some(available) = super::memory::available_bytes()
        && let Err(msg) = super::memory::check(&net, batch, &cfg.model, &kept, available)
    {
        crate::bail_input!("{}: {msg}", run.display());
    }
    Ok(super::memory::step_bytes(&net, batch, &cfg.model, &kept))
}

/// Train `task` into `run`, or continue it with `resume`. Returns the test report of the best
/// checkpoint (also written to `RUN/eval.json`).
pub fn fit<T: TrainTask>(run: &Path, cfg: &RunConfig, dataset: &Dataset, task: &mut T, resume: bool, device: &Device) -> Result<EvalReport> {
    let cfg = &resumed_as_saved(run, cfg, resume)?;
    let saved = prepare(run, cfg, dataset, task, resume, device)?;
    let tc = &cfg.train;
    let ad = tc.autodiff_device(device);
    let (mut model, mut state) = start(run, cfg, dataset, task, saved.as_ref(), &ad)?;
    // A state saved inside an epoch continues that epoch where it stopped.
    let mut within = saved.and_then(|s| s.within_epoch);
    for epoch in state.next_epoch..tc.epochs {
        // Early stopping, checked before each epoch from the saved state, so a resumed run
        // stops where the uninterrupted one did.
        if let Some(patience) = tc.early_stop
            && state.best_epoch > 0
            && epoch - state.best_epoch >= patience
        {
            eprintln!("early stop after epoch {epoch}: validation loss not improved for {patience} epochs (best epoch {})", state.best_epoch);
            break;
        }
        let t0 = Instant::now();
        let sums;
        (model, sums) = train_epoch(run, cfg, dataset, task, model, &mut state, epoch, within.take(), &ad)?;
        close_epoch(run, cfg, dataset, task, &model, &mut state, epoch, sums, t0, device)?;
    }
    evaluate_run(run, Some(dataset), device)
}

/// `cfg`, except that a run resumed from a `config.json` written before `rows_per_part`
/// existed keeps computing its batches in one piece, as it began (the field changes results
/// by rounding; docs/DECISIONS.md, "A batch in parts").
fn resumed_as_saved(run: &Path, cfg: &RunConfig, resume: bool) -> Result<RunConfig> {
    let mut cfg = cfg.clone();
    if resume && run.join(files::CONFIG).exists() && RunConfig::load(run)?.train.rows_per_part.is_none() {
        cfg.train.rows_per_part = None;
    }
    Ok(cfg)
}

/// What the loop carries from epoch to epoch besides the model (which each optimiser step
/// takes by value).
struct LoopState {
    optim: ModuleOptimizer,
    plateau: ReduceLrOnPlateau,
    best_val: f64,
    best_epoch: usize,
    /// The first epoch (0-based) still to train.
    next_epoch: usize,
    /// When the last resumable checkpoint was written.
    last_save: Instant,
}

/// The refusals (a step that cannot fit, an unwritable folder, a run that is there or finished,
/// a resume with changed settings), then `config.json`. Returns the saved resume state.
fn prepare<T: TrainTask>(run: &Path, cfg: &RunConfig, dataset: &Dataset, task: &T, resume: bool, device: &Device) -> Result<Option<ResumeState>> {
    refuse_unfitting_step(run, cfg, dataset, task, device)?;
    prepare_run_dir(run)?;
    let config_path = run.join(files::CONFIG);
    let state = if resume { checkpoint::load_resume_state(run)? } else { None };
    if resume && config_path.exists() {
        let saved = RunConfig::load(run)?;
        if let Err(msg) = cfg.check_resumable_from(&saved) {
            crate::bail_input!("{}: cannot --resume: {msg} (start a new run with another --out, or --force to overwrite this one)", run.display());
        }
    } else if !resume && checkpoint::load_resume_state(run)?.is_some() {
        crate::bail_input!("{}: already holds a run; pass --resume to continue it, --force to overwrite it, or choose another --out", run.display());
    }
    if let Some(s) = &state
        && s.epoch >= cfg.train.epochs
        && run.join(files::EVAL).exists()
    {
        crate::bail_input!(
            "{}: already finished ({} of {} epochs, eval.json written); nothing to resume (raise --epochs to continue it, or --force to train it again)",
            run.display(),
            s.epoch,
            cfg.train.epochs
        );
    }
    write_atomic(&config_path, serde_json::to_string_pretty(cfg)?.as_bytes())?;
    Ok(state)
}

/// A fresh model, optimiser and scheduler, or those of the saved state; the epoch log cut to
/// the epochs the state has finished.
fn start<T: TrainTask>(run: &Path, cfg: &RunConfig, dataset: &Dataset, task: &mut T, saved: Option<&ResumeState>, ad: &Device) -> Result<(T::Model, LoopState)> {
    let tc = &cfg.train;
    crate::model::dropout::seed(ad, tc.seed);
    let sample_rows: Vec<usize> = (0..dataset.train.len().min(2)).collect();
    let model = task.init_model(ad, &dataset.train.batch(&dataset.shape, &sample_rows, ad))?;
    let optim = super::step::adam(tc);
    let fresh = LoopState { optim, plateau: ReduceLrOnPlateau::new(tc.lr, tc.plateau_factor, tc.plateau_patience), best_val: f64::INFINITY, best_epoch: 0, next_epoch: 0, last_save: Instant::now() };
    let Some(state) = saved else {
        rewrite_metrics(run, 0)?;
        return Ok((model, fresh));
    };
    let (model, optim) = checkpoint::load_resume(run, state, model, fresh.optim)?;
    task.load_extra(&run.join(&state.folder))?;
    rewrite_metrics(run, state.epoch)?;
    match &state.within_epoch {
        Some(p) => eprintln!("resuming {} in epoch {} after batch {}", run.display(), state.epoch + 1, p.batches),
        None => eprintln!("resuming {} after epoch {}", run.display(), state.epoch),
    }
    Ok((model, LoopState { optim, plateau: state.plateau.clone(), best_val: state.best_val_loss, best_epoch: state.best_epoch, next_epoch: state.epoch, last_save: Instant::now() }))
}

/// One epoch of optimiser steps (from batch `resumed.batches` when a state saved inside it is
/// resumed), with a resumable checkpoint every `checkpoint_secs`. Returns the model and the
/// epoch's sums.
#[allow(clippy::too_many_arguments)]
fn train_epoch<T: TrainTask>(
    run: &Path,
    cfg: &RunConfig,
    dataset: &Dataset,
    task: &mut T,
    mut model: T::Model,
    state: &mut LoopState,
    epoch: usize,
    resumed: Option<EpochProgress>,
    ad: &Device,
) -> Result<(T::Model, EpochProgress)> {
    let tc = &cfg.train;
    let n_batches = dataset.train.len().div_ceil(tc.batch_size);
    let bar = progress(n_batches, format!("epoch {}/{}", epoch + 1, tc.epochs));
    let mut sums = resumed.unwrap_or(EpochProgress { batches: 0, loss_sum: 0.0, clips: 0, parts_sum: Vec::new() });
    let mut log = ProgressLog::new(PROGRESS_LINE_SECS, sums.batches, sums.clips);
    bar.set_position(sums.batches as u64);
    let lr = state.plateau.lr;
    for (b, idx) in epoch_order(dataset.train.len(), tc.batch_size, tc.seed, epoch, true).into_iter().enumerate().skip(sums.batches) {
        // Seed per batch: dropout masks do not depend on where a run resumed, even inside
        // an epoch.
        crate::model::dropout::seed_for_step(ad, batch_seed(tc.seed, epoch, b), &model);
        let batch = dataset.train.batch(&dataset.shape, &idx, ad);
        let super::step::StepGradients { value, parts, grads, .. } = super::step::loss_and_gradients(task, &model, &batch, tc.step_rows_per_part())?;
        if !value.is_finite() {
            anyhow::bail!("training loss became {value} at epoch {} (lr {lr}); lower the learning rate", epoch + 1);
        }
        model = super::step::apply_gradients(model, &mut state.optim, grads, lr, tc.grad_clip).0;
        super::crash::reached(super::crash::Point::Step);
        sums.loss_sum += value as f64 * idx.len() as f64;
        sums.clips += idx.len();
        sums.batches = b + 1;
        for (i, (name, v)) in parts.into_iter().enumerate() {
            if sums.parts_sum.len() <= i {
                sums.parts_sum.push((name, 0.0));
            }
            sums.parts_sum[i].1 += v * idx.len() as f64;
        }
        let mean = sums.loss_sum / sums.clips as f64;
        bar.set_message(format!("loss {mean:.4}"));
        bar.inc(1);
        log.tick(epoch, tc.epochs, bar.position() as usize, n_batches, mean, sums.clips);
        // Inside the epoch (the epoch's end saves anyway): at the paper's scale an epoch is
        // hours on a CPU, and a kill should lose minutes.
        if b + 1 < n_batches && state.last_save.elapsed().as_secs() >= tc.checkpoint_secs {
            let saved = ResumeState { epoch, within_epoch: Some(sums.clone()), plateau: state.plateau.clone(), best_val_loss: state.best_val, best_epoch: state.best_epoch, folder: String::new() };
            checkpoint::save_resume(run, &model, &state.optim, saved, |dir| task.save_extra(dir))?;
            state.last_save = Instant::now();
        }
    }
    bar.finish_and_clear();
    Ok((model, sums))
}

/// Validation, the scheduler's step, the best and last weights, the epoch's log line, then the
/// resume state that says the epoch is done, and the curves.
#[allow(clippy::too_many_arguments)]
fn close_epoch<T: TrainTask>(
    run: &Path,
    cfg: &RunConfig,
    dataset: &Dataset,
    task: &mut T,
    model: &T::Model,
    state: &mut LoopState,
    epoch: usize,
    sums: EpochProgress,
    t0: Instant,
    device: &Device,
) -> Result<()> {
    let tc = &cfg.train;
    let lr = state.plateau.lr;
    let net = eval_net(T::net(model));
    let (probs, val_loss) = predict(&net, &dataset.valid, &dataset.shape, tc.batch_size, device);
    let val = evaluate_predictions(&dataset.name, "valid", &probs, &dataset.valid.labels);
    state.plateau.step(val_loss);
    if val_loss < state.best_val {
        state.best_val = val_loss;
        state.best_epoch = epoch + 1;
        crate::run::weights::save_safetensors(&net, &run.join(files::BEST_WEIGHTS))?;
    }
    crate::run::weights::save_safetensors(&net, &run.join(files::LAST_WEIGHTS))?;
    // The epoch's line goes into the log before the state that says the epoch is done: a
    // kill between the two resumes inside this epoch, and resuming drops lines past the
    // saved epoch (`rewrite_metrics`), so the line is neither lost nor doubled.
    let clips = sums.clips.max(1) as f64;
    let log = EpochLog {
        epoch: epoch + 1,
        lr,
        train_loss: sums.loss_sum / clips,
        train_parts: sums.parts_sum.into_iter().map(|(n, v)| (n, v / clips)).collect(),
        val_loss,
        val_acc7: val.acc7,
        val_f1: val.f1_weighted,
        seconds: t0.elapsed().as_secs_f64(),
    };
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(run.join(files::METRICS))?;
    writeln!(f, "{}", serde_json::to_string(&log)?)?;
    let done = ResumeState { epoch: epoch + 1, within_epoch: None, plateau: state.plateau.clone(), best_val_loss: state.best_val, best_epoch: state.best_epoch, folder: String::new() };
    checkpoint::save_resume(run, model, &state.optim, done, |dir| task.save_extra(dir))?;
    state.last_save = Instant::now();
    draw_curves(run)?;
    eprintln!(
        "epoch {:>3}/{}  train loss {:.4}  val loss {:.4}  val Acc-7 {:5.2} %  lr {:.2e}  {:.1}s{}",
        epoch + 1,
        tc.epochs,
        log.train_loss,
        val_loss,
        100.0 * val.acc7,
        lr,
        log.seconds,
        if state.best_epoch == epoch + 1 { "  *best" } else { "" }
    );
    Ok(())
}
