//! The `mmkd` command line. Exit codes: 0 success, 2 bad input or usage, 1 internal failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use burn::module::Module;
use burn::prelude::Device;
use clap::{Args, Parser, Subcommand};

use mmkd::config::{DataShape, ModelConfig, Preset, TrainConfig};
use mmkd::data::{self, labels, native, synth};
use mmkd::distill::{DistillConfig, Level, Method, Orientation};
use mmkd::error::InputError;
use mmkd::model::{StudentConfig, StudentStreams, TeacherKind, build_student, build_teacher, params};
use mmkd::train::{RunConfig, RunRole, SupervisedTask, evaluate_run, fit};

// Fresh pages from the system allocator are zeroed by the kernel on every large tensor; mimalloc
// reuses them (measured: see docs/DECISIONS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "mmkd", version, about = "Distil a multimodal cross-attention transformer into a video-only student")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make, inspect or convert datasets.
    #[command(subcommand)]
    Data(DataCmd),
    /// Train a teacher or a student (without distillation).
    #[command(subcommand)]
    Train(TrainCmd),
    /// Run the study of Table 1 over seeds and write TABLE.md, table.csv, table.json.
    Study {
        #[arg(long, value_enum, default_value = "small")]
        preset: Preset,
        /// Number of seeds (1..=N).
        #[arg(long, default_value_t = 3)]
        seeds: u64,
        #[arg(long)]
        out: Option<PathBuf>,
        /// Runs at a time (default: the number of cores).
        #[arg(long)]
        jobs: Option<usize>,
        #[arg(long)]
        epochs: Option<usize>,
        /// Only print every run as one command line and write plan files and slurm.sh.
        #[arg(long)]
        plan: bool,
        /// Only assemble the table from finished run directories below DIR.
        #[arg(long, value_name = "DIR")]
        collect: Option<PathBuf>,
    },
    /// Train a student with knowledge distillation from a trained teacher run.
    Distill(DistillArgs),
    /// Evaluate a run's best checkpoint on the test split; rewrites RUN/eval.json.
    Eval {
        run: PathBuf,
        /// Dataset to evaluate on (default: the one the run was trained on).
        #[arg(long)]
        data: Option<PathBuf>,
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
        /// Test clips to average the statistics over.
        #[arg(long, default_value_t = 64)]
        samples: usize,
        #[arg(long, default_value_t = 1.0)]
        temperature: f32,
        /// Folder for the pictures (default: RUN/maps).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Predict every clip with a run's best checkpoint: id, true score (empty when unknown),
    /// the 7 class probabilities, expected score and class. A student needs video only.
    Predict {
        run: PathBuf,
        /// Native dataset directory or MulT/MMSA pickle (video-only data works for students).
        #[arg(long)]
        data: PathBuf,
        #[arg(long, value_enum, default_value = "test")]
        split: mmkd::predict::SplitChoice,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Default: jsonl when --out ends in .jsonl, csv otherwise.
        #[arg(long, value_enum)]
        format: Option<mmkd::predict::Format>,
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
    },
    /// Replay reference cases (reference/cases.py) with mmkd's code: writes CASE/mmkd.safetensors
    /// for reference/parity.py to compare.
    #[command(subcommand)]
    Reference(ReferenceCmd),
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
struct MissingArgs {
    /// zeros: all features 0; noise: Gaussian at the training split's per-feature statistics;
    /// steps: a fraction (--fraction) of each clip's time steps set to 0.
    #[arg(long, value_enum, default_value = "zeros")]
    missing_mode: mmkd::data::missing::MissingMode,
    /// For --missing-mode steps: the fraction of time steps zeroed.
    #[arg(long, default_value_t = 0.5)]
    fraction: f64,
    /// Seeds the noise and the choice of steps.
    #[arg(long, default_value_t = 1)]
    missing_seed: u64,
}

impl MissingArgs {
    fn missing(&self, modalities: Vec<mmkd::model::Modality>) -> Result<mmkd::data::missing::Missing> {
        if !(0.0..=1.0).contains(&self.fraction) {
            mmkd::bail_input!("--fraction must be in [0, 1], got {}", self.fraction);
        }
        Ok(mmkd::data::missing::Missing { modalities, mode: self.missing_mode, fraction: self.fraction, seed: self.missing_seed })
    }
}

#[derive(Subcommand)]
enum ReferenceCmd {
    /// Run every case folder given and write its outputs to CASE/mmkd.safetensors.
    Run {
        #[arg(required = true)]
        cases: Vec<PathBuf>,
    },
}

#[derive(Args)]
struct DistillArgs {
    /// The teacher's run directory (its config names its branch and data).
    #[arg(long)]
    teacher: PathBuf,
    /// Student configuration (section 4.2); it fixes which teacher branch is needed.
    #[arg(long, default_value = "5")]
    config: StudentConfig,
    #[arg(long, value_enum)]
    level: Level,
    #[arg(long, value_enum)]
    method: Method,
    /// Weight of the cross-entropy on labels.
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// Weight of the distillation loss (CRD's own default, 0.8; the paper gives no value).
    #[arg(long, default_value_t = 0.8)]
    beta: f64,
    /// Softmax temperature of the attention maps (eq. 10-11).
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// EDAM direction: literal = eq. 13 as printed (-student log teacher).
    #[arg(long, default_value = "literal", value_parser = |s: &str| s.parse::<Orientation>().map_err(|e| e.to_string()))]
    orientation: Orientation,
    /// Dataset (default: the teacher's).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Preset (default: the teacher's).
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    #[command(flatten)]
    run: RunFlags,
}

/// Flags every training command takes: where the run goes and the recipe overrides.
#[derive(Args, Clone)]
struct RunFlags {
    /// Run directory.
    #[arg(long)]
    out: PathBuf,
    /// Continue an interrupted run in --out.
    #[arg(long)]
    resume: bool,
    /// Overwrite a run already in --out (its files only; refused for a folder that is no run).
    #[arg(long, conflicts_with = "resume")]
    force: bool,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    /// Seconds between resumable checkpoints inside an epoch (default 300; 0: every batch).
    #[arg(long)]
    checkpoint_secs: Option<u64>,
}

#[derive(Subcommand)]
enum DataCmd {
    /// Generate the synthetic MOSEI-shaped dataset (docs/DATA.md).
    Synth {
        #[arg(long, value_enum, default_value = "small")]
        preset: Preset,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Describe a dataset (native directory or MulT/MMSA pickle): format, splits, shapes,
    /// dtypes, label histogram, NaN and infinite values.
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
}

#[derive(Args, Clone)]
struct CommonTrain {
    /// Dataset directory (`mmkd data synth` or `mmkd data convert`).
    #[arg(long)]
    data: PathBuf,
    #[arg(long, value_enum, default_value = "small")]
    preset: Preset,
    #[command(flatten)]
    run: RunFlags,
    #[arg(long)]
    d_model: Option<usize>,
    #[arg(long)]
    layers: Option<usize>,
    #[arg(long)]
    heads: Option<usize>,
    /// MulT's future mask in every attention (true in all presets).
    #[arg(long)]
    causal_mask: Option<bool>,
    /// Gradient norm clip; 0 disables.
    #[arg(long)]
    grad_clip: Option<f32>,
    /// Use MulT's 2d width for the branches' temporal transformers.
    #[arg(long)]
    temporal_width_2d: Option<bool>,
    /// Mask keys past each sample's length (needs lengths in the data).
    #[arg(long)]
    key_padding_mask: Option<bool>,
}

#[derive(Subcommand)]
enum TrainCmd {
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

fn device() -> Device {
    Device::flex()
}

/// Preset plus command-line overrides, with the data's shape.
fn run_config(common: &CommonTrain, role: RunRole, dataset: &data::Dataset) -> RunConfig {
    let mut model = ModelConfig::for_preset(common.preset);
    let mut train = TrainConfig::for_preset(common.preset);
    let run = &common.run;
    if let Some(v) = run.epochs { train.epochs = v; }
    if let Some(v) = run.seed { train.seed = v; }
    if let Some(v) = run.batch_size { train.batch_size = v.max(1); }
    if let Some(v) = run.lr { train.lr = v; }
    if let Some(v) = run.checkpoint_secs { train.checkpoint_secs = v; }
    if let Some(v) = common.grad_clip { train.grad_clip = (v > 0.0).then_some(v); }
    if let Some(v) = common.d_model { model.d_model = v; }
    if let Some(v) = common.layers { model.layers = v; }
    if let Some(v) = common.heads { model.heads = v; }
    if let Some(v) = common.causal_mask { model.causal_mask = v; }
    if let Some(v) = common.temporal_width_2d { model.temporal_width_2d = v; }
    if let Some(v) = common.key_padding_mask { model.key_padding_mask = v; }
    RunConfig {
        role,
        preset: common.preset,
        // Absolute, so `eval`, `maps` and `distill --teacher` find the data from any directory.
        data: std::path::absolute(&common.data).unwrap_or_else(|_| common.data.clone()),
        dataset: format!("{} [{}]", dataset.name, dataset.source),
        shape: dataset.shape.clone(),
        model,
        train,
    }
}

fn validate_model(cfg: &RunConfig, dataset: &data::Dataset) -> Result<()> {
    let m = &cfg.model;
    if m.d_model == 0 || m.heads == 0 || !m.d_model.is_multiple_of(m.heads) {
        mmkd::bail_input!("--d-model ({}) must be a positive multiple of --heads ({})", m.d_model, m.heads);
    }
    if m.key_padding_mask && dataset.train.lengths.is_none() {
        mmkd::bail_input!("--key-padding-mask true needs per-sample lengths, and dataset {} has none", dataset.name);
    }
    Ok(())
}

fn train_one(common: &CommonTrain, role: RunRole) -> Result<mmkd::eval::EvalReport> {
    let dataset = data::load_any(&common.data)?;
    let cfg = run_config(common, role, &dataset);
    validate_model(&cfg, &dataset)?;
    dataset.check_trainable(&cfg.inputs())?;
    // Lengths stay in the data but are only used when asked for.
    let dataset = if cfg.model.key_padding_mask { dataset } else { strip_lengths(dataset) };
    let build_cfg = cfg.clone();
    let mut task = SupervisedTask { build: Box::new(move |d: &Device| build_cfg.build_net(d)) };
    if common.run.force {
        mmkd::train::run::clear_run(&common.run.out)?;
    }
    let t0 = Instant::now();
    let report = fit(&common.run.out, &cfg, &dataset, &mut task, common.run.resume, &device())?;
    eprintln!("trained {} in {:.1}s", common.run.out.display(), t0.elapsed().as_secs_f64());
    Ok(report)
}

fn distill(args: DistillArgs) -> Result<mmkd::eval::EvalReport> {
    let teacher_cfg = RunConfig::load(&args.teacher)?;
    let RunRole::Teacher { teacher: kind } = teacher_cfg.role else {
        mmkd::bail_input!("{}: is a student run; --teacher needs a teacher run", args.teacher.display());
    };
    let needed = mmkd::distill::teacher_for_config(args.config);
    if kind != needed {
        mmkd::bail_input!(
            "{}: configuration {} distils the {} teacher, but this run is the {} teacher",
            args.teacher.display(),
            args.config,
            needed.name(),
            kind.name()
        );
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
    dcfg.validate().map_err(mmkd::error::input_error)?;
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
    };
    let dataset = data::load_any(&common.data)?;
    if !dataset.shape.same_inputs(&teacher_cfg.shape) {
        mmkd::bail_input!("dataset {}: dims/lengths {:?} differ from those the teacher was trained on {:?}", dataset.name, dataset.shape, teacher_cfg.shape);
    }
    let streams = if args.method == Method::EdamT { StudentStreams::FullLength } else { StudentStreams::Downsampled };
    let role = RunRole::Student { config: args.config, streams, distill: Some(dcfg.clone()) };
    let cfg = run_config(&common, role, &dataset);
    validate_model(&cfg, &dataset)?;
    // The teacher reads all three modalities: the data must hold them, labelled.
    dataset.check_trainable(&teacher_cfg.inputs())?;
    let dataset = if cfg.model.key_padding_mask { dataset } else { strip_lengths(dataset) };
    let plain = device();
    // Frozen: loaded on the plain device (no autodiff graph) and switched to inference mode
    // (`valid()`: dropout off), outside the trained module, so it gets no gradient or optimizer state.
    let teacher = mmkd::train::checkpoint::load_safetensors(teacher_cfg.build_net(&plain), &args.teacher.join("best.safetensors"))?.valid();
    let build_cfg = cfg.clone();
    let mut task = mmkd::distill::DistillTask::new(
        dcfg,
        teacher,
        mmkd::distill::distilled_pairs(args.config),
        Box::new(move |d: &Device| build_cfg.build_net(d)),
        dataset.train.len(),
        cfg.train.seed,
        plain.clone(),
    );
    if common.run.force {
        mmkd::train::run::clear_run(&common.run.out)?;
    }
    let t0 = Instant::now();
    let report = fit(&common.run.out, &cfg, &dataset, &mut task, common.run.resume, &plain)?;
    eprintln!("trained {} in {:.1}s", common.run.out.display(), t0.elapsed().as_secs_f64());
    Ok(report)
}

fn strip_lengths(mut d: data::Dataset) -> data::Dataset {
    d.train.lengths = None;
    d.valid.lengths = None;
    d.test.lengths = None;
    d
}

fn synth_to(preset: Preset, seed: u64, out: &Path) -> Result<data::Dataset> {
    let shape = DataShape::for_preset(preset);
    let params = synth::SynthParams::default();
    let (dataset, _) = synth::generate(preset, seed, &shape, &params);
    native::save(&dataset, out, serde_json::json!({"generator": "mmkd synth", "preset": preset.name(), "seed": seed, "params": params}))?;
    Ok(dataset)
}

fn inspect(path: &Path, json: bool) -> Result<()> {
    if path.is_file() {
        let file = match mmkd_pickle::read_mosei_file(path) {
            Ok(f) => f,
            Err(e) => mmkd::bail_input!("{e}"),
        };
        let report = mmkd_pickle::inspect(&file);
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{report}");
        }
        return Ok(());
    }
    let dataset = data::load_any(path)?;
    let mut splits = Vec::new();
    for split in [&dataset.train, &dataset.valid, &dataset.test] {
        let hist = labels::histogram(split.classes());
        splits.push(serde_json::json!({
            "split": split.name,
            "n": split.len(),
            "text": [split.len(), dataset.shape.text_len, dataset.shape.text_dim],
            "audio": [split.len(), dataset.shape.audio_len, dataset.shape.audio_dim],
            "video": [split.len(), dataset.shape.video_len, dataset.shape.video_dim],
            "label_histogram": hist,
            "has_lengths": split.lengths.is_some(),
        }));
    }
    let report = serde_json::json!({"format": "mmkd-native", "name": dataset.name, "source": dataset.source, "splits": splits});
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{} ({})\nsource: {}", path.display(), dataset.name, dataset.source);
        for s in &splits {
            println!(
                "  {:5}  n={:6}  text {}  audio {}  video {}  classes -3..3: {}",
                s["split"].as_str().unwrap_or(""),
                s["n"],
                s["text"],
                s["audio"],
                s["video"],
                s["label_histogram"]
            );
        }
    }
    Ok(())
}

fn print_params(preset: Preset, teacher: TeacherKind, config: StudentConfig, json: bool) -> Result<()> {
    let dev = device();
    let shape = DataShape::for_preset(preset);
    let model = ModelConfig::for_preset(preset);
    let t = params::count(&build_teacher(teacher, &shape, &model, &dev));
    let s = params::count(&build_student(config, StudentStreams::Downsampled, &shape, &model, &dev));
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"teacher": t, "student": s}))?);
        return Ok(());
    }
    for (name, c, paper) in [(format!("teacher ({})", teacher.name()), &t, 1_802_000.0), (format!("student (config {config})"), &s, 675_000.0)] {
        println!("{name}: {} parameters", c.total);
        println!("  front-end convs  {:>9}", c.front);
        for (k, v) in &c.transformers {
            println!("  {:<16} {:>9}", k, v);
        }
        if c.reduce > 0 {
            println!("  branch 2d->d     {:>9}", c.reduce);
        }
        println!("  head             {:>9}", c.head);
        if preset == Preset::Paper && ((teacher == TeacherKind::Complete && name.starts_with("teacher")) || (config == StudentConfig::C5 && name.starts_with("student"))) {
            println!(
                "  vs the paper's {:.3} M: total {:+.1} %, transformers + head {:+.1} %",
                paper / 1e6,
                100.0 * (c.total as f64 / paper - 1.0),
                100.0 * (c.transformers_and_head as f64 / paper - 1.0)
            );
        }
    }
    Ok(())
}

fn demo(preset: Preset, out: &Path, seed: u64, epochs: Option<usize>) -> Result<()> {
    let t0 = Instant::now();
    let data_dir = out.join("data");
    let dataset = synth_to(preset, seed, &data_dir)?;
    eprintln!("synthesised {} in {:.1}s -> {}", dataset.name, t0.elapsed().as_secs_f64(), data_dir.display());
    let common = |name: &str| CommonTrain {
        data: data_dir.clone(),
        preset,
        run: RunFlags {
            out: out.join(name),
            resume: out.join(name).join("resume.json").exists(),
            force: false,
            epochs,
            seed: Some(seed),
            batch_size: None,
            lr: None,
            checkpoint_secs: None,
        },
        d_model: None,
        layers: None,
        heads: None,
        causal_mask: None,
        grad_clip: None,
        temporal_width_2d: None,
        key_padding_mask: None,
    };
    let t1 = Instant::now();
    // A finished run (from an earlier demo) is evaluated again, not retrained.
    let train_or_eval = |name: &str, role: RunRole| -> Result<mmkd::eval::EvalReport> {
        let c = common(name);
        if c.run.out.join("eval.json").exists() { evaluate_run(&c.run.out, None, &device()) } else { train_one(&c, role) }
    };
    let teacher = train_or_eval("teacher-complete", RunRole::Teacher { teacher: TeacherKind::Complete })?;
    let tt = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let student = train_or_eval("student-nokd", RunRole::Student { config: StudentConfig::C5, streams: StudentStreams::Downsampled, distill: None })?;
    let ts = t2.elapsed().as_secs_f64();
    println!("\n== complete teacher (video + audio + text), {tt:.0}s ==\n{teacher}");
    println!("== student, config 5, no distillation (video only), {ts:.0}s ==\n{student}");
    println!(
        "teacher Acc-7 {:.2} % vs student {:.2} % ({:+.2} points); majority-class rate {:.2} %. Dataset: {} (synthetic, not CMU-MOSEI).",
        100.0 * teacher.acc7,
        100.0 * student.acc7,
        100.0 * (teacher.acc7 - student.acc7),
        100.0 * teacher.majority_rate,
        dataset.name
    );
    println!("total {:.0}s", t0.elapsed().as_secs_f64());
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Data(DataCmd::Synth { preset, seed, out }) => {
            let t0 = Instant::now();
            let d = synth_to(preset, seed, &out)?;
            println!("wrote {} ({} / {} / {} clips) to {} in {:.1}s", d.name, d.train.len(), d.valid.len(), d.test.len(), out.display(), t0.elapsed().as_secs_f64());
        }
        Command::Data(DataCmd::Inspect { path, json }) => inspect(&path, json)?,
        Command::Data(DataCmd::Convert { file, out }) => {
            // Streamed: the pickle is memory-mapped and never loaded (a MOSEI file is 6.4 GB).
            let t0 = Instant::now();
            let mut last = Instant::now();
            let conv = data::pickle::convert_to_native(&file, &out, |phase, done, total| {
                if last.elapsed().as_secs() >= 2 {
                    last = Instant::now();
                    eprintln!("{phase}: {:.2} / {:.2} GB ({:.0} %)", done as f64 / 1e9, total as f64 / 1e9, 100.0 * done as f64 / total.max(1) as f64);
                }
            })?;
            for r in &conv.repairs {
                eprintln!("repaired {r}");
            }
            println!("wrote {} ({} / {} / {} clips, {:?}) to {} in {:.1}s", conv.name, conv.shape.n_train, conv.shape.n_valid, conv.shape.n_test, conv.shape, out.display(), t0.elapsed().as_secs_f64());
        }
        Command::Train(TrainCmd::Teacher { common, branch }) => {
            let r = train_one(&common, RunRole::Teacher { teacher: branch })?;
            println!("{r}");
        }
        Command::Train(TrainCmd::Student { common, config, streams }) => {
            let r = train_one(&common, RunRole::Student { config, streams, distill: None })?;
            println!("{r}");
        }
        Command::Study { preset, seeds, out, jobs, epochs, plan, collect } => {
            if let Some(dir) = collect {
                mmkd::study::write_report(&dir, None)?;
                print!("{}", std::fs::read_to_string(dir.join("TABLE.md"))?);
                return Ok(());
            }
            if seeds == 0 {
                mmkd::bail_input!("--seeds must be at least 1");
            }
            let opts = mmkd::study::plan::StudyOptions {
                preset,
                seeds: (1..=seeds).collect(),
                out: out.unwrap_or_else(|| mmkd::study::default_out(preset)),
                epochs,
                data_seed: 1,
            };
            if plan {
                let exe = std::env::args().next().unwrap_or_else(|| "mmkd".into());
                for line in mmkd::study::write_plan(&opts, &exe)? {
                    println!("{line}");
                }
                eprintln!("wrote {0}/plan.txt, {0}/plan-{{0,1,2}}.txt and {0}/slurm.sh", opts.out.display());
                return Ok(());
            }
            let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
            mmkd::study::run_study(&opts, jobs)?;
            print!("{}", std::fs::read_to_string(opts.out.join("TABLE.md"))?);
        }
        Command::Distill(args) => {
            let r = distill(args)?;
            println!("{r}");
        }
        Command::Eval { run, data, json, drop: Some(list), missing } => {
            let modalities = mmkd::data::missing::parse_modalities(&list).map_err(|e| mmkd::error::input_error(format!("--drop: {e}")))?;
            let m = missing.missing(modalities)?;
            let dataset = data.as_deref().map(data::load_any).transpose()?;
            let r = mmkd::train::evaluate_run_with(&run, dataset.as_ref(), Some(&m), &device())?;
            mmkd::error::write_atomic(&run.join(format!("eval-missing-{}.json", m.label())), serde_json::to_string_pretty(&r)?.as_bytes())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("{r}");
            }
        }
        Command::Robustness { teacher, student, out, missing } => {
            let how = missing.missing(Vec::new())?;
            let (dataset, rows) = mmkd::robustness::robustness(&teacher, &student, how.mode, how.fraction, how.seed, &device())?;
            let out = out.unwrap_or_else(|| teacher.join("robustness"));
            let md = mmkd::robustness::write_report(&out, &dataset, &how.describe(), &teacher, &student, &rows)?;
            print!("{md}");
            eprintln!("wrote {0}/ROBUSTNESS.md, robustness.csv, robustness.json", out.display());
        }
        Command::Eval { run, data, json, drop: None, .. } => {
            let dataset = data.as_deref().map(data::load_any).transpose()?;
            let r = evaluate_run(&run, dataset.as_ref(), &device())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("{r}");
            }
        }
        Command::Maps { run, data, samples, temperature, out } => {
            let cfg = RunConfig::load(&run)?;
            let dataset = data::load_any(data.as_deref().unwrap_or(&cfg.data))?;
            let dev = device();
            let net = mmkd::train::checkpoint::load_safetensors(cfg.build_net(&dev), &run.join("best.safetensors"))?;
            let (stats, maps) = mmkd::eval::maps::attention_maps(&net, &dataset.test, &dataset.shape, samples, temperature, &dev);
            let out = out.unwrap_or_else(|| run.join("maps"));
            std::fs::create_dir_all(&out)?;
            println!("attention maps of {} on {} (test, {} clips, t = {temperature})", run.display(), dataset.name, samples.min(dataset.test.len()));
            println!("{:<12} {:>5} {:>10} {:>10} {:>10}", "transformer", "layer", "entropy", "uniform", "mean max");
            for s in &stats {
                println!("{:<12} {:>5} {:>10.3} {:>10.3} {:>10.3}", s.transformer, s.layer, s.mean_entropy, s.uniform_entropy, s.mean_max);
            }
            for (id, m) in &maps {
                let name = id.to_string().replace("<-", "_from_");
                mmkd::eval::maps::draw(m, &out.join(format!("{name}.png")))?;
            }
            mmkd::error::write_atomic(&out.join("stats.json"), serde_json::to_string_pretty(&stats)?.as_bytes())?;
            println!("pictures and stats.json in {}", out.display());
        }
        Command::Predict { run, data, split, out, format, batch_size } => {
            let rows = mmkd::predict::predict(&run, &data, split, batch_size.max(1), &device())?;
            let format = format.unwrap_or(match out.as_ref().and_then(|p| p.extension()) {
                Some(ext) if ext == "jsonl" => mmkd::predict::Format::Jsonl,
                _ => mmkd::predict::Format::Csv,
            });
            match out {
                Some(path) => {
                    let mut buf = Vec::new();
                    mmkd::predict::write(&rows, format, &mut buf)?;
                    mmkd::error::write_atomic(&path, &buf)?;
                    eprintln!("wrote {} predictions to {}", rows.len(), path.display());
                }
                None => mmkd::predict::write(&rows, format, std::io::stdout().lock())?,
            }
        }
        Command::Reference(ReferenceCmd::Run { cases }) => {
            for case in &cases {
                let outputs = mmkd::reference::run_case(case)?;
                mmkd::reference::write_tensors(&case.join("mmkd.safetensors"), &outputs)?;
                eprintln!("{}: {} tensors", case.display(), outputs.len());
            }
        }
        Command::Params { preset, teacher, config, json } => print_params(preset, teacher, config, json)?,
        Command::Demo { preset, out, seed, epochs } => demo(preset, &out, seed, epochs)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    // Like any Unix tool, stop quietly when the reader of our output goes away (`| head`).
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.downcast_ref::<InputError>().is_some() {
                eprintln!("error: {e}");
                ExitCode::from(2)
            } else {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        }
    }
}
