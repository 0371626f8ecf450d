//! A run from a plain description: `TrainSpec` (a teacher or a student on labels) and
//! `DistillSpec` (a student distilled from a trained teacher) say what to train and where; the
//! preset with its overrides becomes the run's config, the data and the model are checked, and
//! `fit` trains (or `dry_run` times a few batches). The command line builds these specs from
//! its flags (`cli::train`); the demo, a test or another program builds them directly.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use burn::prelude::*;

use super::{SupervisedTask, TrainTask, fit};
use crate::choice::Choice;
use crate::config::{DeviceKind, ModelConfig, Preset, TrainConfig};
use crate::data::{self, Dataset};
use crate::distill::{DistillConfig, Level, Method, Orientation, TeacherSignal};
use crate::eval::EvalReport;
use crate::model::{StudentConfig, StudentStreams};
use crate::run::{RunConfig, RunRole, clear_run};

/// Where a run goes and what happens to a run already there.
#[derive(Clone, Debug)]
pub struct RunTarget {
    /// The run folder.
    pub out: PathBuf,
    /// Continue the interrupted run in `out`.
    pub resume: bool,
    /// Remove a run already in `out` first (its files only; refused for a folder that is no run).
    pub force: bool,
    /// Only time this many training batches (after a warm-up batch) and write `dry-run.json`.
    pub dry_run: Option<usize>,
}

impl RunTarget {
    /// A new run in `out`: no resume, no overwrite, trained in full.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        RunTarget { out: out.into(), resume: false, force: false, dry_run: None }
    }
}

/// Changes to a preset's training recipe; `None` (or `false`) keeps the preset's.
#[derive(Clone, Debug, Default)]
pub struct RecipeOverrides {
    /// Epochs.
    pub epochs: Option<usize>,
    /// Seed of initialisation, batch order and dropout.
    pub seed: Option<u64>,
    /// Clips per batch (at least 1).
    pub batch_size: Option<usize>,
    /// Initial learning rate.
    pub lr: Option<f64>,
    /// Seconds between resumable checkpoints inside an epoch.
    pub checkpoint_secs: Option<u64>,
    /// Recompute memory-bound activations in the backward.
    pub gradient_checkpointing: bool,
    /// Gradient norm clip; 0 disables.
    pub grad_clip: Option<f32>,
    /// Early stopping patience in epochs (validation loss).
    pub early_stop: Option<usize>,
    /// Rows per part of a training step on flex (0: one piece; `TrainConfig::rows_per_part`).
    pub rows_per_part: Option<usize>,
}

/// Changes to a preset's network; `None` keeps the preset's.
#[derive(Clone, Debug, Default)]
pub struct ModelOverrides {
    /// Width of the transformers.
    pub d_model: Option<usize>,
    /// Layers per transformer.
    pub layers: Option<usize>,
    /// Attention heads.
    pub heads: Option<usize>,
    /// MulT's future mask in every attention.
    pub causal_mask: Option<bool>,
    /// MulT's 2d width for the branches' temporal transformers.
    pub temporal_width_2d: Option<bool>,
    /// Mask keys past each clip's length (needs lengths in the data).
    pub key_padding_mask: Option<bool>,
    /// Branch dropout in training, 0 <= P < 1.
    pub branch_dropout: Option<f64>,
}

/// A teacher or a student trained on labels.
#[derive(Clone, Debug)]
pub struct TrainSpec {
    /// What is trained.
    pub role: RunRole,
    /// The dataset directory.
    pub data: PathBuf,
    /// Where the defaults come from.
    pub preset: Preset,
    /// The run folder.
    pub target: RunTarget,
    /// Changes to the preset's recipe.
    pub recipe: RecipeOverrides,
    /// Changes to the preset's network.
    pub model: ModelOverrides,
}

/// A student distilled from a trained teacher; the network's settings are the teacher's.
#[derive(Clone, Debug)]
pub struct DistillSpec {
    /// The teacher's run folder (its config names its branch and data).
    pub teacher: PathBuf,
    /// The student configuration; it fixes which teacher branch is needed.
    pub config: StudentConfig,
    /// What is distilled.
    pub level: Level,
    /// How.
    pub method: Method,
    /// Weight of the cross-entropy on labels.
    pub alpha: f64,
    /// Weight of the distillation loss.
    pub beta: f64,
    /// Softmax temperature of the attention maps.
    pub temperature: f32,
    /// EDAM's direction.
    pub orientation: Orientation,
    /// Whose teacher outputs each clip is distilled from (`Shuffled`: the control).
    pub teacher_signal: TeacherSignal,
    /// The dataset (default: the teacher's).
    pub data: Option<PathBuf>,
    /// The preset (default: the teacher's).
    pub preset: Option<Preset>,
    /// The run folder.
    pub target: RunTarget,
    /// Changes to the preset's recipe.
    pub recipe: RecipeOverrides,
}

/// What a run did: a trained run's test report, or a dry run's measurements.
#[derive(Debug)]
pub enum Outcome {
    /// The test report of the best checkpoint (also in RUN/eval.json).
    Trained(EvalReport),
    /// A dry run (RUN/dry-run.json).
    DryRun(super::dry_run::DryRunReport),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Trained(r) => write!(f, "{r}"),
            Outcome::DryRun(r) => write!(f, "{}", serde_json::to_string_pretty(r).map_err(|_| std::fmt::Error)?),
        }
    }
}

/// Train `spec` on `device` (`kind` is recorded in `config.json`).
pub fn train_run(spec: &TrainSpec, device: &Device, kind: DeviceKind) -> Result<Outcome> {
    let dataset = data::load_any(&spec.data)?;
    let cfg = run_config(spec, &dataset, kind)?;
    validate_model(&cfg, &dataset)?;
    dataset.check_trainable(&cfg.inputs())?;
    // Lengths stay in the data but are only used when asked for.
    let dataset = if cfg.model.key_padding_mask { dataset } else { strip_lengths(dataset) };
    let build_cfg = cfg.clone();
    let mut task = SupervisedTask { build: Box::new(move |d: &Device| build_cfg.build_net(d)) };
    fit_or_dry_run(&spec.target, &cfg, &dataset, &mut task, device)
}

/// Distil `spec` on `device` (`kind` is recorded in `config.json`). The frozen teacher runs on
/// `device` without autodiff.
pub fn distill_run(spec: &DistillSpec, device: &Device, kind: DeviceKind) -> Result<Outcome> {
    let teacher_cfg = RunConfig::load(&spec.teacher)?;
    let RunRole::Teacher { teacher: teacher_kind } = teacher_cfg.role else {
        crate::bail_input!("{}: is a student run; --teacher needs a teacher run", spec.teacher.display());
    };
    let needed = crate::distill::teacher_for_config(spec.config);
    if teacher_kind != needed {
        crate::bail_input!("{}: configuration {} distils the {} teacher, but this run is the {} teacher", spec.teacher.display(), spec.config, needed.name(), teacher_kind.name());
    }
    let dcfg = DistillConfig {
        teacher_run: std::path::absolute(&spec.teacher).unwrap_or_else(|_| spec.teacher.clone()),
        level: spec.level,
        method: spec.method,
        alpha: spec.alpha,
        beta: spec.beta,
        temperature: spec.temperature,
        orientation: spec.orientation,
        teacher_signal: spec.teacher_signal,
    };
    dcfg.validate().map_err(crate::error::input_error)?;
    let data_dir = spec.data.clone().unwrap_or_else(|| teacher_cfg.data.clone());
    let dataset = data::load_any(&data_dir)?;
    if !dataset.shape.same_inputs(&teacher_cfg.shape) {
        crate::bail_input!("dataset {}: dims/lengths {:?} differ from those the teacher was trained on {:?}", dataset.name, dataset.shape, teacher_cfg.shape);
    }
    let streams = spec.method.student_streams();
    // The student makes A_S and L_S from video by a Conv1D that can only shorten: where the
    // loss compares them row by row with the teacher's audio and text streams, those cannot be
    // longer than the video.
    let shape = &dataset.shape;
    if streams == StudentStreams::Downsampled && matches!(spec.level, Level::AttentionMap | Level::PostAttention) && (shape.audio_len > shape.video_len || shape.text_len > shape.video_len) {
        crate::bail_input!(
            "dataset {}: --level {} compares the student's streams made from video with the teacher's audio and text row by row, so the video length ({}) must be at least the audio length ({}) and the text length ({})",
            dataset.name,
            spec.level.name(),
            shape.video_len,
            shape.audio_len,
            shape.text_len
        );
    }
    let tm = &teacher_cfg.model;
    let student = TrainSpec {
        role: RunRole::Student { config: spec.config, streams, distill: Some(dcfg.clone()) },
        data: data_dir,
        preset: spec.preset.unwrap_or(teacher_cfg.preset),
        target: spec.target.clone(),
        recipe: spec.recipe.clone(),
        model: ModelOverrides {
            d_model: Some(tm.d_model),
            layers: Some(tm.layers),
            heads: Some(tm.heads),
            causal_mask: Some(tm.causal_mask),
            temporal_width_2d: Some(tm.temporal_width_2d),
            key_padding_mask: Some(tm.key_padding_mask),
            // A teacher's branch dropout is how it was trained, not part of the student.
            branch_dropout: None,
        },
    };
    let cfg = run_config(&student, &dataset, kind)?;
    validate_model(&cfg, &dataset)?;
    // The teacher reads all three modalities: the data must hold them, labelled.
    dataset.check_trainable(&teacher_cfg.inputs())?;
    let dataset = if cfg.model.key_padding_mask { dataset } else { strip_lengths(dataset) };
    // Frozen: loaded without an autodiff graph and switched to inference mode (`valid()`:
    // dropout off), outside the trained module, so it gets no gradient or optimizer state.
    let teacher = crate::run::Run::open(&spec.teacher)?.load_best(device)?.valid();
    let build_cfg = cfg.clone();
    let mut task = crate::distill::DistillTask::new(
        dcfg,
        teacher,
        crate::distill::distilled_pairs(spec.config),
        Box::new(move |d: &Device| build_cfg.build_net(d)),
        dataset.train.len(),
        cfg.train.seed,
        device.clone(),
    );
    fit_or_dry_run(&spec.target, &cfg, &dataset, &mut task, device)
}

/// Train `task` into `target.out` (`fit`), or only dry-run it.
fn fit_or_dry_run<T: TrainTask>(target: &RunTarget, cfg: &RunConfig, dataset: &Dataset, task: &mut T, device: &Device) -> Result<Outcome> {
    if target.force {
        clear_run(&target.out)?;
    }
    let t0 = Instant::now();
    let outcome = match target.dry_run {
        Some(batches) => Outcome::DryRun(super::dry_run::dry_run(&target.out, cfg, dataset, task, batches, device)?),
        None => Outcome::Trained(fit(&target.out, cfg, dataset, task, target.resume, device)?),
    };
    eprintln!("{} {} in {:.1}s", if target.dry_run.is_some() { "dry-ran" } else { "trained" }, target.out.display(), t0.elapsed().as_secs_f64());
    Ok(outcome)
}

/// The preset's training recipe with the overrides `r`, for a run on `kind`.
fn recipe(preset: Preset, r: &RecipeOverrides, kind: DeviceKind) -> Result<TrainConfig> {
    let mut train = TrainConfig::for_preset(preset);
    train.epochs = r.epochs.unwrap_or(train.epochs);
    train.seed = r.seed.unwrap_or(train.seed);
    train.batch_size = r.batch_size.map_or(train.batch_size, |v| v.max(1));
    train.lr = r.lr.unwrap_or(train.lr);
    train.checkpoint_secs = r.checkpoint_secs.unwrap_or(train.checkpoint_secs);
    train.gradient_checkpointing |= r.gradient_checkpointing;
    if r.early_stop == Some(0) {
        crate::bail_input!("--early-stop must be at least 1 epoch");
    }
    train.early_stop = r.early_stop.or(train.early_stop);
    if let Some(rows) = r.rows_per_part {
        train.rows_per_part = (rows > 0).then_some(rows);
    }
    // Parts are a CPU measure (flex runs small operations on one thread); the config says what
    // the run does, so a CUDA run records one piece.
    if kind == DeviceKind::Cuda {
        train.rows_per_part = None;
    }
    if let Some(v) = r.grad_clip {
        train.grad_clip = (v > 0.0).then_some(v);
    }
    Ok(train)
}

/// The preset with the spec's overrides, with the data's shape and fingerprint.
pub fn run_config(spec: &TrainSpec, dataset: &Dataset, kind: DeviceKind) -> Result<RunConfig> {
    let mut model = ModelConfig::for_preset(spec.preset);
    let train = recipe(spec.preset, &spec.recipe, kind)?;
    let m = &spec.model;
    model.d_model = m.d_model.unwrap_or(model.d_model);
    model.layers = m.layers.unwrap_or(model.layers);
    model.heads = m.heads.unwrap_or(model.heads);
    model.causal_mask = m.causal_mask.unwrap_or(model.causal_mask);
    model.temporal_width_2d = m.temporal_width_2d.unwrap_or(model.temporal_width_2d);
    model.key_padding_mask = m.key_padding_mask.unwrap_or(model.key_padding_mask);
    model.branch_dropout = m.branch_dropout.unwrap_or(model.branch_dropout);
    Ok(RunConfig {
        role: spec.role.clone(),
        preset: spec.preset,
        // Absolute, so `eval`, `maps` and `distill --teacher` find the data from any directory.
        data: std::path::absolute(&spec.data).unwrap_or_else(|_| spec.data.clone()),
        dataset: format!("{} [{}]", dataset.name, dataset.source),
        shape: dataset.shape.clone(),
        model,
        train,
        dataset_fingerprint: Some(data::identity::fingerprint(&spec.data)?),
        device: Some(kind),
    })
}

/// A branch-dropout probability given as `flag`: at least 0, below 1.
pub fn check_branch_dropout(flag: &str, p: f64) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        crate::bail_input!("{flag} must be at least 0 and below 1, got {p}");
    }
    Ok(())
}

/// The network's settings against each other and against the data.
fn validate_model(cfg: &RunConfig, dataset: &Dataset) -> Result<()> {
    let m = &cfg.model;
    if m.d_model == 0 || m.heads == 0 || !m.d_model.is_multiple_of(m.heads) {
        crate::bail_input!("--d-model ({}) must be a positive multiple of --heads ({})", m.d_model, m.heads);
    }
    check_branch_dropout("--branch-dropout", m.branch_dropout)?;
    if m.key_padding_mask && dataset.train.lengths.is_none() {
        crate::bail_input!("--key-padding-mask true needs per-sample lengths, and dataset {} has none", dataset.name);
    }
    Ok(())
}

/// The dataset without its per-clip lengths (a run trained without the key padding mask).
pub fn strip_lengths(mut d: Dataset) -> Dataset {
    d.train.lengths = None;
    d.valid.lengths = None;
    d.test.lengths = None;
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--rows-per-part`: the preset's 32, another number, 0 for one piece; a CUDA run records
    /// one piece, since parts are a CPU measure.
    #[test]
    fn rows_per_part_follows_the_flag_and_the_device() {
        let rows = |flag: Option<usize>, kind: DeviceKind| recipe(Preset::Small, &RecipeOverrides { rows_per_part: flag, ..Default::default() }, kind).unwrap().rows_per_part;
        assert_eq!(rows(None, DeviceKind::Flex), Some(32));
        assert_eq!(rows(Some(16), DeviceKind::Flex), Some(16));
        assert_eq!(rows(Some(0), DeviceKind::Flex), None);
        assert_eq!(rows(None, DeviceKind::Cuda), None);
    }
}
