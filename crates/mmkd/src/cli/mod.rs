//! The command line: argument types (clap) and one function per command. `main.rs` only parses
//! and calls `run`; everything here is testable in process (`Cli::try_parse_from` + `run`).

mod choices;
mod data;
mod demo;
mod evaluate;
mod train;

use std::path::PathBuf;

use anyhow::Result;
use burn::prelude::Device;
use clap::{Args, Parser, Subcommand};

use crate::config::{DeviceKind, Preset};
use crate::error::InputError;
use crate::model::{StudentConfig, StudentStreams, TeacherKind};
use crate::run::RunRole;
use train::{CommonTrain, DistillArgs};

/// The `mmkd` command line.
#[derive(Parser)]
#[command(name = "mmkd", version, about = "Distil a multimodal cross-attention transformer into a video-only student")]
pub struct Cli {
    /// Where to compute: `flex` (the CPU, the default) or `cuda` (GPU 0; needs a build with
    /// `--features cuda`, see bench/gpu.sh). A study passes it to every run it starts or plans.
    #[arg(long, global = true, value_enum, default_value = "flex", env = "MMKD_DEVICE")]
    device: DeviceKind,
    #[command(subcommand)]
    command: Command,
}

static DEVICE: std::sync::OnceLock<DeviceKind> = std::sync::OnceLock::new();

/// The Burn device of `kind`; an input error when it cannot be used here.
fn open_device(kind: DeviceKind) -> Result<Device> {
    match kind {
        DeviceKind::Flex => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => {
            // Burn opens the driver lazily and panics on a thread of its own when it is
            // missing; ask the loader first, so the answer is an input error.
            let loadable = [c"libcuda.so.1", c"libcuda.so"].iter().any(|name| {
                // SAFETY: dlopen with a valid C string; the handle is closed at once.
                let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
                if !handle.is_null() {
                    // SAFETY: a handle dlopen returned.
                    unsafe { libc::dlclose(handle) };
                }
                !handle.is_null()
            });
            if !loadable {
                crate::bail_input!("--device cuda: no NVIDIA driver here (libcuda.so.1 cannot be loaded; check nvidia-smi and LD_LIBRARY_PATH)");
            }
            Ok(Device::cuda(0))
        }
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => crate::bail_input!("--device cuda: this mmkd was built without the cuda feature (cargo build -p mmkd --features cuda; bench/cuda-offline.sh sets up the build)"),
    }
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Make, inspect or convert datasets.
    #[command(subcommand)]
    Data(DataCmd),
    /// Train a teacher or a student (without distillation).
    #[command(subcommand)]
    Train(TrainCmd),
    /// Export a run's best checkpoint as an ONNX graph (opset 17, dynamic batch): inputs
    /// `video` (a teacher also `audio`, `text`) [N, length, features], outputs `logits` and
    /// `probs` [N, 7] for the scores -3..3.
    Export {
        run: PathBuf,
        #[arg(long, value_enum, default_value = "onnx")]
        format: ExportFormat,
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the study of Table 1 over seeds and write TABLE.md, table.csv, table.json.
    Study {
        #[arg(long, value_enum, default_value = "small")]
        preset: Preset,
        /// Number of seeds (1..=N). Five by default: with three, a 95 % t-interval is 4.3
        /// standard errors wide on each side, with five 2.8.
        #[arg(long, default_value_t = 5)]
        seeds: u64,
        #[arg(long)]
        out: Option<PathBuf>,
        /// Runs at a time (default: the number of cores).
        #[arg(long)]
        jobs: Option<usize>,
        #[arg(long)]
        epochs: Option<usize>,
        #[command(flatten)]
        data: demo::StudyArgs,
        /// Only print every run as one command line and write plan files and slurm.sh.
        #[arg(long)]
        plan: bool,
        /// Only assemble the table from finished run directories below DIR.
        #[arg(long, value_name = "DIR")]
        collect: Option<PathBuf>,
    },
    /// Train a student with knowledge distillation from a trained teacher run.
    Distill(DistillArgs),
    /// Evaluate a run's best checkpoint on the test split; rewrites RUN/eval.json, or with
    /// --data of another dataset writes RUN/eval-<dataset name>.json and leaves eval.json alone.
    Eval {
        run: PathBuf,
        /// Dataset to evaluate on (default: the one the run was trained on). Data whose
        /// fingerprint differs from the run's is reported in RUN/eval-<dataset name>.json.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Write the report here instead (never RUN/eval.json, which `study --collect` reads).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Modalities to treat as missing, e.g. `audio,text` (writes RUN/eval-missing-*.json
        /// instead of eval.json).
        #[arg(long, value_name = "LIST")]
        drop: Option<String>,
        #[command(flatten)]
        missing: MissingArgs,
    },
    /// The teacher with every subset of modalities missing next to the video-only student:
    /// OUT/ROBUSTNESS.md, robustness.csv, robustness.json.
    Robustness {
        #[arg(long)]
        teacher: PathBuf,
        #[arg(long)]
        student: PathBuf,
        /// Default: TEACHER/robustness.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        missing: MissingArgs,
    },
    /// How peaked a run's attention maps are (entropy per transformer and layer) and PNG
    /// pictures of them for the first test clip.
    Maps {
        run: PathBuf,
        #[arg(long)]
        data: Option<PathBuf>,
        /// Clips to average the statistics over.
        #[arg(long, default_value_t = 64)]
        samples: usize,
        /// The split the statistics and the per-transformer pictures are computed on: choose
        /// and set criteria on `valid`, report `test` once afterwards (the comparison with the
        /// teacher is always drawn on the first test clip).
        #[arg(long, value_enum, default_value = "test")]
        split: crate::eval::maps::MapSplit,
        #[arg(long, default_value_t = 1.0)]
        temperature: f32,
        /// Folder for the pictures (default: RUN/maps).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the statistics as JSON: {"transformers": [{"id", "layers": [{"entropy", ...}]}]}.
        #[arg(long)]
        json: bool,
        /// For a distilled student: also draw the no-KD student's maps (this run) beside the
        /// teacher's and the student's in OUT/compare-<pair>.png.
        #[arg(long, value_name = "RUN")]
        baseline: Option<PathBuf>,
    },
    /// Predict every clip with a run's best checkpoint: id, true score (empty when unknown),
    /// the 7 class probabilities, expected score and class. A student needs video only.
    Predict {
        run: PathBuf,
        /// Native dataset directory or MulT/MMSA pickle (video-only data works for students).
        #[arg(long)]
        data: PathBuf,
        #[arg(long, value_enum, default_value = "test")]
        split: crate::predict::SplitChoice,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Default: jsonl when --out ends in .jsonl, csv otherwise.
        #[arg(long, value_enum)]
        format: Option<crate::predict::Format>,
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
    },
    /// Replay reference cases (reference/cases.py) with mmkd's code: writes CASE/mmkd.safetensors
    /// for reference/parity.py to compare.
    #[command(subcommand)]
    Reference(ReferenceCmd),
    /// Time one benchmark case in this process and print one JSON line (medians, peak memory);
    /// bench/run.sh runs every case against the PyTorch reference.
    Bench {
        #[arg(long, value_enum)]
        case: crate::bench::Case,
        #[arg(long, value_enum, default_value = "small")]
        preset: Preset,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Timed steps after one warm-up step.
        #[arg(long, default_value_t = 5)]
        steps: usize,
        /// Training cases: Burn's balanced gradient checkpointing.
        #[arg(long)]
        gradient_checkpointing: bool,
    },
    /// Parameter counts of the teacher and the student, per module.
    Params {
        #[arg(long, value_enum, default_value = "paper")]
        preset: Preset,
        #[arg(long, value_enum, default_value = "complete")]
        teacher: TeacherKind,
        #[arg(long, default_value = "5")]
        config: StudentConfig,
        #[arg(long)]
        json: bool,
    },
    /// The main job: synthesise data, train the complete teacher and the student without KD,
    /// print both evaluations.
    Demo {
        #[arg(long, value_enum, default_value = "small")]
        preset: Preset,
        #[arg(long, default_value = "runs/demo")]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        epochs: Option<usize>,
    },
}

/// How a missing modality is simulated.
#[derive(Args, Clone)]
pub(crate) struct MissingArgs {
    /// zeros: all features 0; noise: Gaussian at the training split's per-feature statistics;
    /// steps: a fraction (--fraction) of each clip's time steps set to 0.
    #[arg(long, value_enum, default_value = "zeros")]
    missing_mode: crate::data::missing::MissingMode,
    /// For --missing-mode steps: the fraction of time steps zeroed.
    #[arg(long, default_value_t = 0.5)]
    fraction: f64,
    /// Seeds the noise and the choice of steps.
    #[arg(long, default_value_t = 1)]
    missing_seed: u64,
}

impl MissingArgs {
    pub(crate) fn missing(&self, modalities: Vec<crate::model::Modality>) -> Result<crate::data::missing::Missing> {
        if !(0.0..=1.0).contains(&self.fraction) {
            crate::bail_input!("--fraction must be in [0, 1], got {}", self.fraction);
        }
        Ok(crate::data::missing::Missing { modalities, mode: self.missing_mode, fraction: self.fraction, seed: self.missing_seed })
    }
}

#[derive(Subcommand)]
pub(crate) enum ReferenceCmd {
    /// Run every case folder given and write its outputs to CASE/mmkd.safetensors.
    Run {
        #[arg(required = true)]
        cases: Vec<PathBuf>,
    },
}

/// What `mmkd export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// ONNX (opset 17), for ONNX Runtime and other ONNX readers.
    Onnx,
}

#[derive(Subcommand)]
pub(crate) enum DataCmd {
    /// Generate the synthetic MOSEI-shaped dataset (docs/DATA.md).
    Synth {
        #[arg(long, value_enum, default_value = "small")]
        preset: Preset,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// content: label information mostly in clip-level content; lookup: readable cleanly
        /// only at the video event, whose time audio and text mark (docs/DATA.md).
        #[arg(long, value_enum, default_value = "content")]
        regime: crate::data::synth::Regime,
        /// Training clips (default: the preset's); validation and test keep the preset's sizes.
        #[arg(long)]
        n_train: Option<usize>,
        /// Amplitude of the faint video marker on the event's frames, instead of the regime's
        /// (content 0.6, lookup 2.0): for designing a regime with `data baselines`, as the
        /// lookup regime's marker was chosen (docs/DECISIONS.md). Recorded in the manifest.
        #[arg(long, value_name = "AMP", allow_negative_numbers = true)]
        video_marker: Option<f64>,
        #[arg(long)]
        out: PathBuf,
    },
    /// What linear baselines reach on a synthetic dataset: majority class, time-averaged
    /// features of each modality, and the video at the true event frames (oracle).
    #[command(alias = "probes")]
    Baselines {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Describe a dataset (native directory, MulT/MMSA pickle, or one SDK computational
    /// sequence .csd): format, splits, shapes, dtypes, label histogram, NaN and infinite values.
    Inspect {
        path: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Convert a MulT or MMSA pickle to the native format.
    Convert {
        file: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Build a native dataset from CMU-MultimodalSDK computational sequences (.csd), aligned
    /// as the SDK's `mmdataset.align(labels)` does, one video at a time (docs/DATA.md).
    Csd(CsdArgs),
}

/// `data csd`.
#[derive(Args)]
pub(crate) struct CsdArgs {
    /// Labels sequence: 7 columns (sentiment, six emotions; "All Labels") or sentiment alone.
    #[arg(long)]
    labels: PathBuf,
    /// Word vectors (e.g. glove_vectors).
    #[arg(long)]
    text: PathBuf,
    /// Acoustic features (e.g. COVAREP).
    #[arg(long)]
    audio: PathBuf,
    /// Visual features (e.g. FACET 4.2 or OpenFace).
    #[arg(long)]
    video: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// `mosei` (the SDK's standard folds, shipped with mmkd) or a JSON file
    /// {"train": [ids], "valid": [ids], "test": [ids]}. Videos in no fold are dropped and counted.
    #[arg(long, default_value = "mosei")]
    folds: String,
    /// Steps kept per clip: TEXT,AUDIO,VIDEO (first steps kept, zeros after).
    #[arg(long, default_value = "50,500,500", value_parser = crate::data::csd::build::parse_lengths)]
    lengths: [usize; 3],
    /// none: frames as they are (the paper's unaligned data); words: audio and video averaged
    /// over each word first (the SDK's "aligned" MOSEI).
    #[arg(long, value_enum, default_value = "none")]
    align: crate::data::csd::Align,
    /// Write NaN and infinite feature values as 0 and count them, instead of refusing the data.
    #[arg(long)]
    zero_nonfinite: bool,
}

impl CsdArgs {
    fn into_options(self) -> crate::data::csd::BuildOptions {
        let folds = if self.folds == "mosei" { crate::data::csd::Folds::Mosei } else { crate::data::csd::Folds::File(self.folds.into()) };
        crate::data::csd::BuildOptions {
            labels: self.labels,
            text: self.text,
            audio: self.audio,
            video: self.video,
            out: self.out,
            folds,
            lengths: self.lengths,
            align: self.align,
            zero_nonfinite: self.zero_nonfinite,
        }
    }
}

#[derive(Subcommand)]
pub(crate) enum TrainCmd {
    Teacher {
        #[command(flatten)]
        common: CommonTrain,
        #[arg(long, value_enum, default_value = "complete")]
        branch: TeacherKind,
    },
    Student {
        #[command(flatten)]
        common: CommonTrain,
        /// Student configuration of the paper's section 4.2.
        #[arg(long, default_value = "5")]
        config: StudentConfig,
        #[arg(long, value_enum, default_value = "downsampled")]
        streams: StudentStreams,
    },
}

/// The kind of device commands run on (`--device`, flex unless told otherwise).
pub(crate) fn device_kind() -> DeviceKind {
    DEVICE.get().copied().unwrap_or(DeviceKind::Flex)
}

/// The device commands run on (`--device`, flex unless told otherwise).
pub(crate) fn device() -> Device {
    open_device(device_kind()).unwrap_or_else(|_| Device::flex())
}

/// Run one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    // Refuse an unusable device before any work (a first `run` in a process decides it); a
    // study's plan or table is made where no run computes (a login node without a GPU).
    let computes = !matches!(&cli.command, Command::Study { plan: true, .. } | Command::Study { collect: Some(_), .. });
    if computes {
        open_device(cli.device)?;
    }
    let _ = DEVICE.set(cli.device);
    match cli.command {
        Command::Data(DataCmd::Synth { preset, seed, regime, n_train, video_marker, out }) => data::synth(preset, seed, regime, n_train, video_marker, &out),
        Command::Data(DataCmd::Baselines { dir, json }) => data::baselines(&dir, json),
        Command::Data(DataCmd::Inspect { path, json }) => data::inspect(&path, json),
        Command::Data(DataCmd::Convert { file, out }) => data::convert(&file, &out),
        Command::Data(DataCmd::Csd(args)) => data::csd(args.into_options()),
        Command::Train(TrainCmd::Teacher { common, branch }) => {
            println!("{}", crate::train::launch::train_run(&common.spec(RunRole::Teacher { teacher: branch }), &device(), device_kind())?);
            Ok(())
        }
        Command::Train(TrainCmd::Student { common, config, streams }) => {
            println!("{}", crate::train::launch::train_run(&common.spec(RunRole::Student { config, streams, distill: None }), &device(), device_kind())?);
            Ok(())
        }
        Command::Export { run, format: ExportFormat::Onnx, out } => {
            let run = crate::run::Run::open(&run)?;
            let model = crate::export::export_run(&run, &out)?;
            let graph = model.graph.as_ref().expect("export writes a graph");
            println!("wrote {} ({} nodes, {} initializers, opset {}) from {}", out.display(), graph.node.len(), graph.initializer.len(), crate::export::OPSET, run.dir().display());
            Ok(())
        }
        Command::Study { preset, seeds, out, jobs, epochs, data, plan, collect } => demo::study(preset, seeds, out, jobs, epochs, data, plan, collect),
        Command::Distill(args) => {
            println!("{}", crate::train::launch::distill_run(&args.spec(), &device(), device_kind())?);
            Ok(())
        }
        Command::Eval { run, data, out, json, drop: Some(list), missing } => evaluate::eval_missing(&run, data.as_deref(), out.as_deref(), json, &list, &missing),
        Command::Eval { run, data, out, json, drop: None, .. } => evaluate::eval(&run, data.as_deref(), out.as_deref(), json),
        Command::Robustness { teacher, student, out, missing } => evaluate::robustness(&teacher, &student, out, &missing),
        Command::Maps { run, data, samples, split, temperature, out, json, baseline } => evaluate::maps(&run, data.as_deref(), samples, split, temperature, out, json, baseline.as_deref()),
        Command::Predict { run, data, split, out, format, batch_size } => evaluate::predict(&run, &data, split, out, format, batch_size),
        Command::Reference(ReferenceCmd::Run { cases }) => evaluate::reference_run(&cases),
        Command::Bench { case, preset, batch, steps, gradient_checkpointing } => {
            println!("{}", serde_json::to_string(&crate::bench::run_case(case, preset, batch.max(1), steps, gradient_checkpointing, &device())?)?);
            Ok(())
        }
        Command::Params { preset, teacher, config, json } => demo::print_params(preset, teacher, config, json),
        Command::Demo { preset, out, seed, epochs } => demo::demo(preset, &out, seed, epochs),
    }
}

/// The process exit code for an error: 2 for bad input or usage (the message names the file,
/// field or flag), 1 for an internal failure.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<InputError>().is_some() { 2 } else { 1 }
}
