//! A training run and its directory:
//!
//! ```text
//! RUN/config.json        effective config (preset + overrides), written before training
//! RUN/metrics.jsonl      one line per epoch
//! RUN/best.safetensors   network weights with the lowest validation loss
//! RUN/last.safetensors   network weights after the last finished epoch
//! RUN/resume.json (+ resume-NNNN/)   what `--resume` needs: model, optimizer, scheduler state
//! RUN/eval.json          test metrics of the best checkpoint
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use burn::module::Module;
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::checkpoint::{self, EpochProgress, ResumeState};
use super::plateau::ReduceLrOnPlateau;
use super::task::{TrainTask, predict};
use crate::config::{DataShape, ModelConfig, Preset, TrainConfig};
use crate::data::{Dataset, epoch_order};
use crate::durable::write_atomic;
use crate::eval::{EvalReport, evaluate_predictions};
use crate::model::{MultimodalNet, StudentStreams, TeacherKind, build_student, build_teacher};

/// What a run trains.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum RunRole {
    /// A teacher network trained on labels.
    Teacher {
        /// Which teacher: complete or one branch.
        teacher: TeacherKind,
    },
    /// A video-only student, trained on labels alone or distilled.
    Student {
        /// Student configuration (1..=5, paper section 4.2).
        config: crate::model::StudentConfig,
        /// `A_S` / `L_S` downsampled to the teacher's lengths, or at full video length (EDAM-T only).
        streams: StudentStreams,
        /// The distillation setting; `None` for a student trained without KD.
        distill: Option<crate::distill::DistillConfig>,
    },
}

/// The effective configuration of a run, saved as `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// What the run trains.
    pub role: RunRole,
    /// The preset the defaults came from.
    pub preset: Preset,
    /// Dataset directory and the dataset's own description.
    pub data: PathBuf,
    /// The dataset's name and source line, as `name [source]`.
    pub dataset: String,
    /// Feature dimensions, sequence lengths and split sizes of the data.
    pub shape: DataShape,
    /// Network hyperparameters.
    pub model: ModelConfig,
    /// Training recipe (optimizer, schedule, epochs, seed, ...).
    pub train: TrainConfig,
    /// SHA-256 of the data the run trained on (`data::identity`); absent in runs made before
    /// fingerprints were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_fingerprint: Option<String>,
    /// Where the run computed (`--device`); absent in runs made before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<crate::config::DeviceKind>,
}

/// Fields of `config.json` that `--resume` lets differ from the saved run: more epochs continue
/// a run (a documented feature), how often it checkpoints and whether activations are
/// recomputed do not change its result beyond rounding, the data's path and description may
/// move while its fingerprint stays, and a run may continue on another device.
const RESUMABLE_CHANGES: [&str; 6] = ["train.epochs", "train.checkpoint_secs", "train.gradient_checkpointing", "data", "dataset", "device"];

/// The first field (as `a.b.c`) where two JSON values differ, with the saved and the new value.
fn first_difference(path: &str, saved: &serde_json::Value, new: &serde_json::Value) -> Option<(String, String, String)> {
    use serde_json::Value;
    if RESUMABLE_CHANGES.contains(&path) {
        return None;
    }
    match (saved, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            // A tagged enum's tag first: "a teacher, not a student" says more than the first
            // field the two variants do not share.
            keys.sort_by_key(|k| k.as_str() != "role");
            keys.into_iter().find_map(|k| {
                let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                first_difference(&child, a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null))
            })
        }
        _ if saved == new => None,
        _ => Some((path.to_string(), saved.to_string(), new.to_string())),
    }
}

impl RunConfig {
    /// `Err(message)` naming the first setting that changes the result and differs between the
    /// saved run and this config (`--resume` refuses those; `RESUMABLE_CHANGES` may differ). A
    /// run saved without a fingerprint cannot be checked for its data and is let through on it.
    pub fn check_resumable_from(&self, saved: &RunConfig) -> Result<(), String> {
        let mut new = self.clone();
        if saved.dataset_fingerprint.is_none() {
            new.dataset_fingerprint = None;
        }
        let (a, b) = (serde_json::to_value(saved).map_err(|e| e.to_string())?, serde_json::to_value(&new).map_err(|e| e.to_string())?);
        match first_difference("", &a, &b) {
            None => Ok(()),
            Some((field, old, new)) => Err(format!("field '{field}' differs from the saved run: saved {old}, new {new}")),
        }
    }
}

impl RunConfig {
    /// Build the (untrained) network this config describes.
    pub fn build_net(&self, device: &Device) -> MultimodalNet {
        match &self.role {
            RunRole::Teacher { teacher } => build_teacher(*teacher, &self.shape, &self.model, device),
            RunRole::Student { config, streams, .. } => build_student(*config, *streams, &self.shape, &self.model, device),
        }
    }

    /// The input modalities the network reads: all three for a teacher, video for a student.
    pub fn inputs(&self) -> Vec<crate::model::Modality> {
        match self.role {
            RunRole::Teacher { .. } => crate::model::Modality::ALL.to_vec(),
            RunRole::Student { .. } => vec![crate::model::Modality::Video],
        }
    }

    /// Read `RUN/config.json`; an input error when `run` is not a run directory.
    pub fn load(run: &Path) -> Result<RunConfig> {
        let path = run.join(files::CONFIG);
        if !path.exists() {
            crate::bail_input!("{}: not a run directory (no config.json)", run.display());
        }
        let text = std::fs::read_to_string(&path)?;
        serde_json::from_str(&text).map_err(|e| crate::error::input_error(format!("{}: {e}", path.display())))
    }
}

/// The names of the files in a run folder (the layout in this module's documentation).
pub mod files {
    /// The effective config (`RunConfig`), written before training.
    pub const CONFIG: &str = "config.json";
    /// One `EpochLog` line per epoch.
    pub const METRICS: &str = "metrics.jsonl";
    /// The weights with the lowest validation loss.
    pub const BEST_WEIGHTS: &str = "best.safetensors";
    /// The weights after the last finished epoch.
    pub const LAST_WEIGHTS: &str = "last.safetensors";
    /// What `--resume` needs (and the `resume-*` folders it names).
    pub const RESUME: &str = "resume.json";
    /// Test metrics of the best weights on the run's own data.
    pub const EVAL: &str = "eval.json";
    /// Loss, Acc-7 and learning rate per epoch, drawn from `METRICS`.
    pub const CURVES: &str = "curves.png";
}

/// A run folder: where it is and its config. Loading a trained network is `load_best`.
#[derive(Clone, Debug)]
pub struct Run {
    dir: PathBuf,
    config: RunConfig,
}

impl Run {
    /// Open the run in `dir` (it must hold `config.json`: an input error otherwise).
    pub fn open(dir: impl AsRef<Path>) -> Result<Run> {
        let dir = dir.as_ref().to_path_buf();
        let config = RunConfig::load(&dir)?;
        Ok(Run { dir, config })
    }

    /// The run's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The run's effective config.
    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// The path of one of its files (`files::*`).
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The network with its best weights, on `device` (an input error when the weights are
    /// missing or do not fit the config).
    pub fn load_best(&self, device: &Device) -> Result<MultimodalNet> {
        checkpoint::load_safetensors(self.config.build_net(device), &self.path(files::BEST_WEIGHTS))
    }

    /// Its best weights on the test split of the data it was trained on (nothing is written).
    pub fn eval(&self, device: &Device) -> Result<EvalReport> {
        evaluate_run_with(&self.dir, None, None, device)
    }
}

/// One line of `RUN/metrics.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochLog {
    /// Epoch number, 1-based.
    pub epoch: usize,
    /// Learning rate used during the epoch.
    pub lr: f64,
    /// Mean training loss over the epoch's clips.
    pub train_loss: f64,
    /// Named parts of the training loss (distillation: `ce`, `kd`), epoch means.
    pub train_parts: Vec<(String, f64)>,
    /// Mean cross-entropy on the validation split.
    pub val_loss: f64,
    /// Validation Acc-7, a fraction (0..1).
    pub val_acc7: f64,
    /// Validation F1 weighted by class support, a fraction (0..1).
    pub val_f1: f64,
    /// Wall time of the epoch in seconds (training, validation and checkpoints).
    pub seconds: f64,
}

/// Plain-device copy of the network for evaluation (no autodiff graph, dropout off).
fn eval_net(net: &MultimodalNet) -> MultimodalNet {
    net.valid()
}

fn rewrite_metrics(run: &Path, keep_epochs: usize) -> Result<()> {
    let path = run.join(files::METRICS);
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&path)?;
    let kept: String = text.lines().filter(|l| serde_json::from_str::<EpochLog>(l).map(|e| e.epoch <= keep_epochs).unwrap_or(false)).map(|l| format!("{l}\n")).collect();
    write_atomic(&path, kept.as_bytes())
}

fn progress(len: usize, prefix: String) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template("{prefix} [{bar:28}] {pos}/{len} {msg} ETA {eta}").expect("valid template").progress_chars("=> "));
    bar.set_prefix(prefix);
    bar
}

/// Create and remove a file: `create_dir_all` succeeds on an existing read-only folder.
fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(".mmkd-write-probe");
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(probe)
}

/// Remove what a run writes from `run` (`--force`), leaving any other file alone. Refuses a
/// folder that is not a run.
pub fn clear_run(run: &Path) -> Result<()> {
    if !run.exists() {
        return Ok(());
    }
    if !run.join(files::CONFIG).exists() {
        crate::bail_input!("{}: --force only overwrites an mmkd run (this folder has no config.json)", run.display());
    }
    for entry in std::fs::read_dir(run)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ours = matches!(name, "config.json" | "metrics.jsonl" | "best.safetensors" | "last.safetensors" | "resume.json" | "eval.json" | "curves.png" | "dry-run.json")
            || name.starts_with("resume-")
            || (name.starts_with("eval-") && name.ends_with(".json"))
            || (name.starts_with('.') && name.ends_with(".tmp"));
        if ours {
            if path.is_dir() { std::fs::remove_dir_all(&path)? } else { std::fs::remove_file(&path)? }
        }
    }
    Ok(())
}

/// Seconds between progress lines when stderr is not a terminal (a batch job's log): the bar
/// draws nothing there, and an epoch at the paper's scale takes hours.
const PROGRESS_LINE_SECS: u64 = 60;

/// Prints `epoch e/E batch b/B loss clips/s ETA` lines at most every `every` seconds, and only
/// when stderr is not a terminal (where the progress bar already shows the same).
struct ProgressLog {
    enabled: bool,
    every: std::time::Duration,
    start: Instant,
    last: Instant,
    /// Batches and clips already done when this log started (a run resumed inside an epoch):
    /// rates and the ETA count only what this process trained.
    batches_before: usize,
    clips_before: usize,
}

impl ProgressLog {
    fn new(every_secs: u64, batches_before: usize, clips_before: usize) -> Self {
        use std::io::IsTerminal;
        let now = Instant::now();
        ProgressLog { enabled: !std::io::stderr().is_terminal(), every: std::time::Duration::from_secs(every_secs), start: now, last: now, batches_before, clips_before }
    }

    fn tick(&mut self, epoch: usize, epochs: usize, batch: usize, batches: usize, loss: f64, clips: usize) {
        if !self.enabled || self.last.elapsed() < self.every {
            return;
        }
        self.last = Instant::now();
        let secs = self.start.elapsed().as_secs_f64();
        let done_here = batch.saturating_sub(self.batches_before).max(1);
        let eta = secs / done_here as f64 * (batches - batch) as f64;
        eprintln!("epoch {}/{epochs}  batch {batch}/{batches}  loss {loss:.4}  {:.1} clips/s  epoch ETA {:.0} s", epoch + 1, clips.saturating_sub(self.clips_before) as f64 / secs.max(1e-9), eta);
    }
}

/// `RUN/curves.png` from `RUN/metrics.jsonl`: train and validation loss, validation Acc-7, and
/// the learning rate, per epoch.
pub fn draw_curves(run: &Path) -> Result<()> {
    use crate::eval::plots::{Curve, Panel, draw_panels};
    let text = std::fs::read_to_string(run.join(files::METRICS))?;
    let logs: Vec<EpochLog> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let line = |label: &str, y: &dyn Fn(&EpochLog) -> f64| Curve { label: label.into(), points: logs.iter().map(|e| (e.epoch as f64, y(e))).collect() };
    let epoch = || "epoch".to_string();
    let panels = [
        Panel { title: "loss".into(), x_label: epoch(), y_label: "loss".into(), curves: vec![line("train (total)", &|e| e.train_loss), line("validation (CE)", &|e| e.val_loss)] },
        Panel { title: "validation Acc-7".into(), x_label: epoch(), y_label: "%".into(), curves: vec![line("Acc-7", &|e| 100.0 * e.val_acc7)] },
        Panel { title: "learning rate".into(), x_label: epoch(), y_label: "lr".into(), curves: vec![line("lr", &|e| e.lr)] },
    ];
    draw_panels(&run.join(files::CURVES), &panels)
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

/// Create the run folder, refusing (as bad input) one that cannot be written.
pub(super) fn prepare_run_dir(run: &Path) -> Result<()> {
    if let Err(e) = std::fs::create_dir_all(run).and_then(|_| probe_writable(run)) {
        crate::bail_input!("{}: cannot write the run directory here ({e})", run.display());
    }
    Ok(())
}

/// Train `task` into `run`, or continue it with `resume`. Returns the test report of the best
/// checkpoint (also written to `RUN/eval.json`).
pub fn fit<T: TrainTask>(run: &Path, cfg: &RunConfig, dataset: &Dataset, task: &mut T, resume: bool, device: &Device) -> Result<EvalReport> {
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

    let tc = &cfg.train;
    let ad = tc.autodiff_device(device);
    ad.seed(tc.seed);
    let probe_rows: Vec<usize> = (0..dataset.train.len().min(2)).collect();
    let mut model = task.init_model(&ad, &dataset.train.batch(&dataset.shape, &probe_rows, &ad))?;
    let mut optim = super::step::adam(tc);
    let mut plateau = ReduceLrOnPlateau::new(tc.lr, tc.plateau_factor, tc.plateau_patience);
    let (mut start_epoch, mut best_val, mut best_epoch) = (0, f64::INFINITY, 0);
    if let Some(state) = &state {
        let (m, o) = checkpoint::load_resume(run, state, model, optim)?;
        model = m;
        optim = o;
        plateau = state.plateau.clone();
        task.load_extra(&run.join(&state.folder))?;
        start_epoch = state.epoch;
        best_val = state.best_val_loss;
        best_epoch = state.best_epoch;
        rewrite_metrics(run, start_epoch)?;
        match &state.within_epoch {
            Some(p) => eprintln!("resuming {} in epoch {} after batch {}", run.display(), start_epoch + 1, p.batches),
            None => eprintln!("resuming {} after epoch {start_epoch}", run.display()),
        }
    } else {
        rewrite_metrics(run, 0)?;
    }

    let shape = &dataset.shape;
    let n_batches = dataset.train.len().div_ceil(tc.batch_size);
    // A state saved inside an epoch continues that epoch where it stopped.
    let mut within = state.as_ref().and_then(|s| s.within_epoch.clone());
    let mut last_save = Instant::now();
    for epoch in start_epoch..tc.epochs {
        let t0 = Instant::now();
        let bar = progress(n_batches, format!("epoch {}/{}", epoch + 1, tc.epochs));
        let resumed = within.take().unwrap_or(EpochProgress { batches: 0, loss_sum: 0.0, clips: 0, parts_sum: Vec::new() });
        let mut log = ProgressLog::new(PROGRESS_LINE_SECS, resumed.batches, resumed.clips);
        let (mut loss_sum, mut count, mut parts_sum) = (resumed.loss_sum, resumed.clips, resumed.parts_sum);
        bar.set_position(resumed.batches as u64);
        let lr = plateau.lr;
        for (b, idx) in epoch_order(dataset.train.len(), tc.batch_size, tc.seed, epoch, true).into_iter().enumerate().skip(resumed.batches) {
            // Seed per batch: dropout masks do not depend on where a run resumed, even inside
            // an epoch.
            ad.seed(batch_seed(tc.seed, epoch, b));
            let batch = dataset.train.batch(shape, &idx, &ad);
            let (loss, parts) = task.train_loss(&model, &batch)?;
            let value: f32 = loss.clone().into_scalar();
            if !value.is_finite() {
                anyhow::bail!("training loss became {value} at epoch {} (lr {lr}); lower the learning rate", epoch + 1);
            }
            model = super::step::optimizer_step(model, &mut optim, loss, lr, tc.grad_clip).0;
            loss_sum += value as f64 * idx.len() as f64;
            count += idx.len();
            for (i, (name, v)) in parts.into_iter().enumerate() {
                if parts_sum.len() <= i {
                    parts_sum.push((name, 0.0));
                }
                parts_sum[i].1 += v * idx.len() as f64;
            }
            bar.set_message(format!("loss {:.4}", loss_sum / count as f64));
            bar.inc(1);
            log.tick(epoch, tc.epochs, bar.position() as usize, n_batches, loss_sum / count as f64, count);
            // Inside the epoch (the epoch's end saves anyway): at the paper's scale an epoch is
            // hours on a CPU, and a kill should lose minutes.
            if b + 1 < n_batches && last_save.elapsed().as_secs() >= tc.checkpoint_secs {
                let progress = EpochProgress { batches: b + 1, loss_sum, clips: count, parts_sum: parts_sum.clone() };
                let state = ResumeState { epoch, within_epoch: Some(progress), plateau: plateau.clone(), best_val_loss: best_val, best_epoch, folder: String::new() };
                checkpoint::save_resume(run, &model, &optim, state, |dir| task.save_extra(dir))?;
                last_save = Instant::now();
            }
        }
        bar.finish_and_clear();

        let net = eval_net(T::net(&model));
        let (probs, val_loss) = predict(&net, &dataset.valid, shape, tc.batch_size, device);
        let val = evaluate_predictions(&dataset.name, "valid", &probs, &dataset.valid.labels);
        plateau.step(val_loss);
        if val_loss < best_val {
            best_val = val_loss;
            best_epoch = epoch + 1;
            checkpoint::save_safetensors(&net, &run.join(files::BEST_WEIGHTS))?;
        }
        checkpoint::save_safetensors(&net, &run.join(files::LAST_WEIGHTS))?;
        // The epoch's line goes into the log before the state that says the epoch is done: a
        // kill between the two resumes inside this epoch, and resuming drops lines past the
        // saved epoch (`rewrite_metrics`), so the line is neither lost nor doubled.
        let log = EpochLog {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / count.max(1) as f64,
            train_parts: parts_sum.into_iter().map(|(n, v)| (n, v / count.max(1) as f64)).collect(),
            val_loss,
            val_acc7: val.acc7,
            val_f1: val.f1_weighted,
            seconds: t0.elapsed().as_secs_f64(),
        };
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(run.join(files::METRICS))?;
        writeln!(f, "{}", serde_json::to_string(&log)?)?;
        checkpoint::save_resume(
            run,
            &model,
            &optim,
            ResumeState { epoch: epoch + 1, within_epoch: None, plateau: plateau.clone(), best_val_loss: best_val, best_epoch, folder: String::new() },
            |dir| task.save_extra(dir),
        )?;
        last_save = Instant::now();
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
            if best_epoch == epoch + 1 { "  *best" } else { "" }
        );
    }
    evaluate_run(run, Some(dataset), device)
}

/// Evaluate a run's best checkpoint on the test split and (re)write `RUN/eval.json`.
pub fn evaluate_run(run: &Path, dataset: Option<&Dataset>, device: &Device) -> Result<EvalReport> {
    let report = evaluate_run_with(run, dataset, None, device)?;
    write_atomic(&run.join(files::EVAL), serde_json::to_string_pretty(&report)?.as_bytes())?;
    Ok(report)
}

/// Evaluate a run's best checkpoint on the test split, with the `missing` modalities corrupted
/// (`None`: as they are). Writes nothing.
pub fn evaluate_run_with(run: &Path, dataset: Option<&Dataset>, missing: Option<&crate::data::missing::Missing>, device: &Device) -> Result<EvalReport> {
    let opened = Run::open(run)?;
    let cfg = opened.config();
    let loaded;
    let dataset = match dataset {
        Some(d) => d,
        None => {
            loaded = crate::data::load_any(&cfg.data)?;
            &loaded
        }
    };
    if !dataset.shape.same_inputs(&cfg.shape) {
        crate::bail_input!("dataset {}: dims/lengths {:?} differ from the run's {:?}", dataset.name, dataset.shape, cfg.shape);
    }
    dataset.check_trainable(&cfg.inputs())?;
    let net = opened.load_best(device)?;
    let corrupted;
    let (test, split_name) = match missing {
        Some(m) if !m.modalities.is_empty() => {
            corrupted = m.apply(&dataset.test, &dataset.shape, &dataset.train);
            (&corrupted, format!("test, missing {}", m.label()))
        }
        _ => (&dataset.test, "test".to_string()),
    };
    let (probs, _) = predict(&net, test, &dataset.shape, cfg.train.batch_size, device);
    Ok(evaluate_predictions(&format!("{} [{}]", dataset.name, dataset.source), &split_name, &probs, &dataset.test.labels))
}
