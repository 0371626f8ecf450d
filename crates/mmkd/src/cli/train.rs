//! `train teacher|student` and `distill`: the effective run config from preset and flags,
//! checks of data and model, then `train::fit`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use burn::module::Module;
use burn::prelude::Device;
use clap::Args;

use super::device;
use crate::config::{ModelConfig, Preset, TrainConfig};
use crate::data;
use crate::distill::{DistillConfig, Level, Method, Orientation};
use crate::model::{StudentConfig, StudentStreams};
use crate::train::{RunConfig, RunRole, SupervisedTask, fit};

#[derive(Args)]
pub(crate) struct DistillArgs {
    /// The teacher's run directory (its config names its branch and data).
    #[arg(long)]
    pub(crate) teacher: PathBuf,
    /// Student configuration (section 4.2); it fixes which teacher branch is needed.
    #[arg(long, default_value = "5")]
    pub(crate) config: StudentConfig,
    #[arg(long, value_enum)]
    pub(crate) level: Level,
    #[arg(long, value_enum)]
    pub(crate) method: Method,
    /// Weight of the cross-entropy on labels.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) alpha: f64,
    /// Weight of the distillation loss (CRD's own default, 0.8; the paper gives no value).
    #[arg(long, default_value_t = 0.8)]
    pub(crate) beta: f64,
    /// Softmax temperature of the attention maps (eq. 10-11).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) temperature: f32,
    /// EDAM direction: literal = eq. 13 as printed (-student log teacher).
    #[arg(long, default_value = "literal", value_parser = |s: &str| s.parse::<Orientation>().map_err(|e| e.to_string()))]
    pub(crate) orientation: Orientation,
    /// Dataset (default: the teacher's).
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Preset (default: the teacher's).
    #[arg(long, value_enum)]
    pub(crate) preset: Option<Preset>,
    #[command(flatten)]
    pub(crate) run: RunFlags,
}

/// Flags every training command takes: where the run goes and the recipe overrides.

#[derive(Args, Clone)]
pub(crate) struct RunFlags {
    /// Run directory.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Continue an interrupted run in --out.
    #[arg(long)]
    pub(crate) resume: bool,
    /// Overwrite a run already in --out (its files only; refused for a folder that is no run).
    #[arg(long, conflicts_with = "resume")]
    pub(crate) force: bool,
    #[arg(long)]
    pub(crate) epochs: Option<usize>,
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    #[arg(long)]
    pub(crate) batch_size: Option<usize>,
    #[arg(long)]
    pub(crate) lr: Option<f64>,
    /// Seconds between resumable checkpoints inside an epoch (default 300; 0: every batch).
    #[arg(long)]
    pub(crate) checkpoint_secs: Option<u64>,
    /// Recompute memory-bound activations in the backward instead of keeping them (Burn's
    /// balanced gradient checkpointing: less memory, more time).
    #[arg(long)]
    pub(crate) gradient_checkpointing: bool,
    /// Only time N training batches (after a warm-up batch) at the real shapes and write
    /// OUT/dry-run.json: step time, peak memory, the run's estimated wall time (no eval.json).
    #[arg(long, value_name = "N", conflicts_with = "resume")]
    pub(crate) dry_run: Option<usize>,
}

/// What a training command did: a trained run's test report, or a dry run's measurements.
pub(crate) enum Outcome {
    /// The test report of the best checkpoint (also in RUN/eval.json).
    Trained(crate::eval::EvalReport),
    /// A dry run (RUN/dry-run.json).
    DryRun(crate::train::dry_run::DryRunReport),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Trained(r) => write!(f, "{r}"),
            Outcome::DryRun(r) => write!(f, "{}", serde_json::to_string_pretty(r).map_err(|_| std::fmt::Error)?),
        }
    }
}

/// Train `task` into `--out` (`fit`), or only dry-run it with `--dry-run N`.
fn fit_or_dry_run<T: crate::train::TrainTask>(flags: &RunFlags, cfg: &RunConfig, dataset: &data::Dataset, task: &mut T, device: &Device) -> Result<Outcome> {
    if flags.force {
        crate::train::clear_run(&flags.out)?;
    }
    let t0 = Instant::now();
    let outcome = match flags.dry_run {
        Some(batches) => Outcome::DryRun(crate::train::dry_run::dry_run(&flags.out, cfg, dataset, task, batches, device)?),
        None => Outcome::Trained(fit(&flags.out, cfg, dataset, task, flags.resume, device)?),
    };
    eprintln!("{} {} in {:.1}s", if flags.dry_run.is_some() { "dry-ran" } else { "trained" }, flags.out.display(), t0.elapsed().as_secs_f64());
    Ok(outcome)
}

#[derive(Args, Clone)]
pub(crate) struct CommonTrain {
    /// Dataset directory (`mmkd data synth` or `mmkd data convert`).
    #[arg(long)]
    pub(crate) data: PathBuf,
    #[arg(long, value_enum, default_value = "small")]
    pub(crate) preset: Preset,
    #[command(flatten)]
    pub(crate) run: RunFlags,
    #[arg(long)]
    pub(crate) d_model: Option<usize>,
    #[arg(long)]
    pub(crate) layers: Option<usize>,
    #[arg(long)]
    pub(crate) heads: Option<usize>,
    /// MulT's future mask in every attention (true in all presets).
    #[arg(long)]
    pub(crate) causal_mask: Option<bool>,
    /// Gradient norm clip; 0 disables.
    #[arg(long)]
    pub(crate) grad_clip: Option<f32>,
    /// Use MulT's 2d width for the branches' temporal transformers.
    #[arg(long)]
    pub(crate) temporal_width_2d: Option<bool>,
    /// Mask keys past each sample's length (needs lengths in the data).
    #[arg(long)]
    pub(crate) key_padding_mask: Option<bool>,
    /// Branch dropout in training, 0 <= P < 1 (not in MulT; default 0): each clip drops each
    /// branch's last step with probability P, so every branch must predict alone.
    #[arg(long)]
    pub(crate) branch_dropout: Option<f64>,
}

/// Preset plus command-line overrides, with the data's shape and fingerprint.
pub(crate) fn run_config(common: &CommonTrain, role: RunRole, dataset: &data::Dataset) -> Result<RunConfig> {
    let mut model = ModelConfig::for_preset(common.preset);
    let mut train = TrainConfig::for_preset(common.preset);
    let run = &common.run;
    if let Some(v) = run.epochs {
        train.epochs = v;
    }
    if let Some(v) = run.seed {
        train.seed = v;
    }
    if let Some(v) = run.batch_size {
        train.batch_size = v.max(1);
    }
    if let Some(v) = run.lr {
        train.lr = v;
    }
    if let Some(v) = run.checkpoint_secs {
        train.checkpoint_secs = v;
    }
    if run.gradient_checkpointing {
        train.gradient_checkpointing = true;
    }
    if let Some(v) = common.grad_clip {
        train.grad_clip = (v > 0.0).then_some(v);
    }
    if let Some(v) = common.d_model {
        model.d_model = v;
    }
    if let Some(v) = common.layers {
        model.layers = v;
    }
    if let Some(v) = common.heads {
        model.heads = v;
    }
    if let Some(v) = common.causal_mask {
        model.causal_mask = v;
    }
    if let Some(v) = common.temporal_width_2d {
        model.temporal_width_2d = v;
    }
    if let Some(v) = common.key_padding_mask {
        model.key_padding_mask = v;
    }
    if let Some(v) = common.branch_dropout {
        model.branch_dropout = v;
    }
    Ok(RunConfig {
        role,
        preset: common.preset,
        // Absolute, so `eval`, `maps` and `distill --teacher` find the data from any directory.
        data: std::path::absolute(&common.data).unwrap_or_else(|_| common.data.clone()),
        dataset: format!("{} [{}]", dataset.name, dataset.source),
        shape: dataset.shape.clone(),
        model,
        train,
        dataset_fingerprint: Some(data::identity::fingerprint(&common.data)?),
        device: Some(super::device_kind()),
    })
}

/// A branch-dropout probability given as `flag`: at least 0, below 1.
pub(crate) fn check_branch_dropout(flag: &str, p: f64) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        crate::bail_input!("{flag} must be at least 0 and below 1, got {p}");
    }
    Ok(())
}

pub(crate) fn validate_model(cfg: &RunConfig, dataset: &data::Dataset) -> Result<()> {
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

pub(crate) fn train_one(common: &CommonTrain, role: RunRole) -> Result<Outcome> {
    let dataset = data::load_any(&common.data)?;
    let cfg = run_config(common, role, &dataset)?;
    validate_model(&cfg, &dataset)?;
    dataset.check_trainable(&cfg.inputs())?;
    // Lengths stay in the data but are only used when asked for.
    let dataset = if cfg.model.key_padding_mask { dataset } else { strip_lengths(dataset) };
    let build_cfg = cfg.clone();
    let mut task = SupervisedTask { build: Box::new(move |d: &Device| build_cfg.build_net(d)) };
    fit_or_dry_run(&common.run, &cfg, &dataset, &mut task, &device())
}

pub(crate) fn distill(args: DistillArgs) -> Result<Outcome> {
    let teacher_cfg = RunConfig::load(&args.teacher)?;
    let RunRole::Teacher { teacher: kind } = teacher_cfg.role else {
        crate::bail_input!("{}: is a student run; --teacher needs a teacher run", args.teacher.display());
    };
    let needed = crate::distill::teacher_for_config(args.config);
    if kind != needed {
        crate::bail_input!("{}: configuration {} distils the {} teacher, but this run is the {} teacher", args.teacher.display(), args.config, needed.name(), kind.name());
    }
    let dcfg = DistillConfig {
        teacher_run: std::path::absolute(&args.teacher).unwrap_or_else(|_| args.teacher.clone()),
        level: args.level,
        method: args.method,
        alpha: args.alpha,
        beta: args.beta,
        temperature: args.temperature,
        orientation: args.orientation,
    };
    dcfg.validate().map_err(crate::error::input_error)?;
    let common = CommonTrain {
        data: args.data.clone().unwrap_or_else(|| teacher_cfg.data.clone()),
        preset: args.preset.unwrap_or(teacher_cfg.preset),
        run: args.run.clone(),
        d_model: Some(teacher_cfg.model.d_model),
        layers: Some(teacher_cfg.model.layers),
        heads: Some(teacher_cfg.model.heads),
        causal_mask: Some(teacher_cfg.model.causal_mask),
        grad_clip: None,
        temporal_width_2d: Some(teacher_cfg.model.temporal_width_2d),
        key_padding_mask: Some(teacher_cfg.model.key_padding_mask),
        // A teacher's branch dropout is how it was trained, not part of the student.
        branch_dropout: None,
    };
    let dataset = data::load_any(&common.data)?;
    if !dataset.shape.same_inputs(&teacher_cfg.shape) {
        crate::bail_input!("dataset {}: dims/lengths {:?} differ from those the teacher was trained on {:?}", dataset.name, dataset.shape, teacher_cfg.shape);
    }
    let streams = args.method.student_streams();
    // The student makes A_S and L_S from video by a Conv1D that can only shorten: where the
    // loss compares them row by row with the teacher's audio and text streams, those cannot be
    // longer than the video.
    let shape = &dataset.shape;
    if streams == StudentStreams::Downsampled && matches!(args.level, Level::AttentionMap | Level::PostAttention) && (shape.audio_len > shape.video_len || shape.text_len > shape.video_len) {
        crate::bail_input!(
            "dataset {}: --level {} compares the student's streams made from video with the teacher's audio and text row by row, so the video length ({}) must be at least the audio length ({}) and the text length ({})",
            dataset.name,
            args.level.name(),
            shape.video_len,
            shape.audio_len,
            shape.text_len
        );
    }
    let role = RunRole::Student { config: args.config, streams, distill: Some(dcfg.clone()) };
    let cfg = run_config(&common, role, &dataset)?;
    validate_model(&cfg, &dataset)?;
    // The teacher reads all three modalities: the data must hold them, labelled.
    dataset.check_trainable(&teacher_cfg.inputs())?;
    let dataset = if cfg.model.key_padding_mask { dataset } else { strip_lengths(dataset) };
    let plain = device();
    // Frozen: loaded on the plain device (no autodiff graph) and switched to inference mode
    // (`valid()`: dropout off), outside the trained module, so it gets no gradient or optimizer state.
    let teacher = crate::train::Run::open(&args.teacher)?.load_best(&plain)?.valid();
    let build_cfg = cfg.clone();
    let mut task = crate::distill::DistillTask::new(
        dcfg,
        teacher,
        crate::distill::distilled_pairs(args.config),
        Box::new(move |d: &Device| build_cfg.build_net(d)),
        dataset.train.len(),
        cfg.train.seed,
        plain.clone(),
    );
    fit_or_dry_run(&common.run, &cfg, &dataset, &mut task, &plain)
}

pub(crate) fn strip_lengths(mut d: data::Dataset) -> data::Dataset {
    d.train.lengths = None;
    d.valid.lengths = None;
    d.test.lengths = None;
    d
}
