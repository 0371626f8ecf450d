//! A run folder: what a training run writes, and what reads it back (training, evaluation,
//! prediction, export):
//!
//! ```text
//! RUN/config.json        effective config (preset + overrides), written before training
//! RUN/metrics.jsonl      one line per epoch
//! RUN/best.safetensors   network weights with the lowest validation loss
//! RUN/last.safetensors   network weights after the last finished epoch
//! RUN/resume.json (+ resume-NNNN/)   what `--resume` needs: model, optimizer, scheduler state
//! RUN/eval.json          test metrics of the best checkpoint
//! ```

use std::path::{Path, PathBuf};

use anyhow::Result;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub mod weights;

use crate::config::{DataShape, ModelConfig, Preset, TrainConfig};
use crate::data::Dataset;
use crate::durable::write_atomic;
use crate::eval::inference::predict;
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
        weights::load_safetensors(self.config.build_net(device), &self.path(files::BEST_WEIGHTS))
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

/// Keep the first `keep_epochs` lines of `RUN/metrics.jsonl` (a resumed run drops the epochs
/// it trains again).
pub fn rewrite_metrics(run: &Path, keep_epochs: usize) -> Result<()> {
    let path = run.join(files::METRICS);
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&path)?;
    let kept: String = text.lines().filter(|l| serde_json::from_str::<EpochLog>(l).map(|e| e.epoch <= keep_epochs).unwrap_or(false)).map(|l| format!("{l}\n")).collect();
    write_atomic(&path, kept.as_bytes())
}

/// Create and remove a file: `create_dir_all` succeeds on an existing read-only folder.
fn check_writable(dir: &Path) -> std::io::Result<()> {
    let test_file = dir.join(".mmkd-write-test");
    std::fs::write(&test_file, b"")?;
    std::fs::remove_file(test_file)
}

/// Create the run folder, refusing (as bad input) one that cannot be written.
pub fn prepare_run_dir(run: &Path) -> Result<()> {
    if let Err(e) = std::fs::create_dir_all(run).and_then(|_| check_writable(run)) {
        crate::bail_input!("{}: cannot write the run directory here ({e})", run.display());
    }
    Ok(())
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
