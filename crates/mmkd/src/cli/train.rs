//! The flags of `train teacher|student` and `distill`, turned into the library's plain specs
//! (`train::launch`), which do the work.

use std::path::PathBuf;

use clap::Args;

use crate::config::Preset;
use crate::distill::{Level, Method, Orientation, TeacherSignal};
use crate::model::StudentConfig;
use crate::run::RunRole;
use crate::train::launch::{DistillSpec, ModelOverrides, RecipeOverrides, RunTarget, TrainSpec};

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
    /// Whose teacher outputs a clip is distilled from: its own (distillation) or, as a control
    /// that keeps the loss and removes the information, the next clip's of the batch.
    #[arg(long, value_enum, default_value = "matched")]
    pub(crate) teacher_signal: TeacherSignal,
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
    /// Stop when the validation loss has not improved for N epochs (early stopping; the best
    /// checkpoint is evaluated).
    #[arg(long, value_name = "N")]
    pub(crate) early_stop: Option<usize>,
    /// Recompute memory-bound activations in the backward instead of keeping them (Burn's
    /// balanced gradient checkpointing: less memory, more time).
    #[arg(long)]
    pub(crate) gradient_checkpointing: bool,
    /// On the CPU, compute a training batch of more rows than N in parts of at most N rows,
    /// each on a core of its own (default 32; 0: one piece). Changes results by rounding only.
    #[arg(long, value_name = "N")]
    pub(crate) rows_per_part: Option<usize>,
    /// Only time N training batches (after a warm-up batch) at the real shapes and write
    /// OUT/dry-run.json: step time, peak memory, the run's estimated wall time (no eval.json).
    #[arg(long, value_name = "N", conflicts_with = "resume")]
    pub(crate) dry_run: Option<usize>,
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

impl RunFlags {
    fn target(&self) -> RunTarget {
        RunTarget { out: self.out.clone(), resume: self.resume, force: self.force, dry_run: self.dry_run }
    }

    fn recipe(&self, grad_clip: Option<f32>) -> RecipeOverrides {
        RecipeOverrides {
            epochs: self.epochs,
            seed: self.seed,
            batch_size: self.batch_size,
            lr: self.lr,
            checkpoint_secs: self.checkpoint_secs,
            gradient_checkpointing: self.gradient_checkpointing,
            grad_clip,
            early_stop: self.early_stop,
            rows_per_part: self.rows_per_part,
        }
    }
}

impl CommonTrain {
    /// The spec of training `role` with these flags.
    pub(crate) fn spec(&self, role: RunRole) -> TrainSpec {
        TrainSpec {
            role,
            data: self.data.clone(),
            preset: self.preset,
            target: self.run.target(),
            recipe: self.run.recipe(self.grad_clip),
            model: ModelOverrides {
                d_model: self.d_model,
                layers: self.layers,
                heads: self.heads,
                causal_mask: self.causal_mask,
                temporal_width_2d: self.temporal_width_2d,
                key_padding_mask: self.key_padding_mask,
                branch_dropout: self.branch_dropout,
            },
        }
    }
}

impl DistillArgs {
    /// The spec of this distillation.
    pub(crate) fn spec(&self) -> DistillSpec {
        DistillSpec {
            teacher: self.teacher.clone(),
            config: self.config,
            level: self.level,
            method: self.method,
            alpha: self.alpha,
            beta: self.beta,
            temperature: self.temperature,
            orientation: self.orientation,
            teacher_signal: self.teacher_signal,
            data: self.data.clone(),
            preset: self.preset,
            target: self.run.target(),
            recipe: self.run.recipe(None),
        }
    }
}
