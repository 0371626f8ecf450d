//! `demo` (the quick main job), `study` and `params`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;

use super::device;
use crate::choice::Choice;
use crate::config::{DataShape, ModelConfig, Preset};
use crate::model::{StudentConfig, StudentStreams, TeacherKind, build_student, build_teacher, params};
use crate::run::{RunRole, evaluate_run};
use crate::train::launch::{Outcome, RecipeOverrides, RunTarget, TrainSpec, check_branch_dropout, train_run};

/// What a study trains on and which of its runs it makes.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct StudyArgs {
    /// The user's data: a MulT or MMSA pickle (converted once into OUT/data) or a native
    /// dataset directory (read in place). Default: synthetic data generated into OUT/data.
    #[arg(long, value_name = "FILE.pkl|DIR", conflicts_with_all = ["regime", "n_train"])]
    pub(crate) data: Option<PathBuf>,
    /// Regime of the synthetic data (docs/DATA.md).
    #[arg(long, value_enum)]
    pub(crate) regime: Option<crate::data::synth::Regime>,
    /// Training clips of the synthetic data (default: the preset's).
    #[arg(long)]
    pub(crate) n_train: Option<usize>,
    /// all: every row of Table 1; attention: the complete teacher, the student without KD and
    /// the attention-map rows that distil the complete teacher.
    #[arg(long, value_enum, default_value = "all")]
    pub(crate) rows: crate::study::plan::RowSet,
    /// Train each teacher once with this seed and distil every seed's students from it
    /// (default: one teacher per seed).
    #[arg(long, value_name = "SEED")]
    pub(crate) teacher_seed: Option<u64>,
    /// Train K teachers of each kind (seeds 1..=K), each teaching its own students of every
    /// seed: intervals then hold the teacher-to-teacher variation (a t-interval over teachers of
    /// each teacher's mean paired difference).
    #[arg(long, value_name = "K", conflicts_with = "teacher_seed")]
    pub(crate) teachers: Option<u64>,
    /// Stop each teacher when its validation loss has not improved for N epochs.
    #[arg(long, value_name = "N")]
    pub(crate) teacher_early_stop: Option<usize>,
    /// Add the control row: configuration 5's EDAM-S on the attention maps distilled from
    /// another clip's maps (`--teacher-signal shuffled`).
    #[arg(long)]
    pub(crate) controls: bool,
    /// Epochs for the teachers (default: --epochs, else the preset's).
    #[arg(long)]
    pub(crate) teacher_epochs: Option<usize>,
    /// Train the teachers with branch dropout P (not in MulT; default 0; docs/DECISIONS.md).
    #[arg(long, value_name = "P")]
    pub(crate) teacher_branch_dropout: Option<f64>,
    /// EDAM's direction in the EDAM rows: literal = eq. 13 as printed (-student log teacher),
    /// conventional = -teacher log student. The table names a conventional row as such.
    #[arg(long, default_value = "literal", value_parser = |s: &str| s.parse::<crate::distill::Orientation>().map_err(|e| e.to_string()))]
    pub(crate) edam_orientation: crate::distill::Orientation,
    /// Before hours are spent: make the data, then run one run of each kind for a few batches at
    /// the real shapes on the chosen device and report step times, peak memory and the
    /// estimated wall time of the whole study (OUT/DRY-RUN.md); slurm.sh then takes its limits
    /// from these measurements.
    #[arg(long, conflicts_with_all = ["plan", "collect"])]
    pub(crate) dry_run: bool,
    /// Timed training batches per run kind in --dry-run (after one warm-up batch).
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub(crate) dry_run_batches: usize,
}

/// The options of a study from its command line.
fn study_options(preset: Preset, seeds: u64, out: Option<PathBuf>, epochs: Option<usize>, args: &StudyArgs) -> Result<crate::study::plan::StudyOptions> {
    use crate::study::plan::StudyData;
    if seeds == 0 {
        crate::bail_input!("--seeds must be at least 1");
    }
    if let Some(p) = args.teacher_branch_dropout {
        check_branch_dropout("--teacher-branch-dropout", p)?;
    }
    if args.n_train == Some(0) {
        crate::bail_input!("--n-train must be at least 1");
    }
    let data = match &args.data {
        None => StudyData::Synthetic { seed: 1, regime: args.regime.unwrap_or_default(), n_train: args.n_train },
        Some(path) => {
            if !path.exists() {
                crate::bail_input!("--data {}: no such file or directory (a MulT/MMSA pickle or a native dataset directory)", path.display());
            }
            if path.is_dir() {
                // Refused now, not in every run: a directory must be a native dataset.
                crate::data::native::read_manifest(path)?;
            }
            StudyData::from_path(path)?
        }
    };
    Ok(crate::study::plan::StudyOptions {
        preset,
        seeds: (1..=seeds).collect(),
        out: out.unwrap_or_else(|| crate::study::default_out(preset)),
        epochs,
        data,
        rows: args.rows,
        teacher_seed: args.teacher_seed,
        teachers: args.teachers,
        teacher_early_stop: args.teacher_early_stop,
        controls: args.controls,
        teacher_epochs: args.teacher_epochs,
        teacher_branch_dropout: args.teacher_branch_dropout,
        edam_orientation: args.edam_orientation,
        device: super::device_kind(),
    })
}

/// `study`: plan, dry-run, run or collect the study of Table 1.
#[allow(clippy::too_many_arguments)]
pub(crate) fn study(preset: Preset, seeds: u64, out: Option<PathBuf>, jobs: Option<usize>, epochs: Option<usize>, args: StudyArgs, plan: bool, collect: Option<PathBuf>) -> Result<()> {
    if let Some(dir) = collect {
        // With --data, the study's plan must be of that data.
        if let (Some(path), Some(saved)) = (&args.data, crate::study::plan::StudyOptions::load(&dir)?) {
            let given = crate::study::plan::StudyData::from_path(path)?;
            if given != saved.data {
                crate::bail_input!("{}: the study was planned for {}, not --data {}", dir.display(), saved.data, path.display());
            }
        }
        crate::study::write_report(&dir, None)?;
        print!("{}", std::fs::read_to_string(dir.join("TABLE.md"))?);
        return Ok(());
    }
    let opts = study_options(preset, seeds, out, epochs, &args)?;
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    if plan {
        // The running binary's absolute path: the plan's lines run from any directory.
        let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "mmkd".into());
        for line in crate::study::write_plan(&opts, &exe)? {
            println!("{line}");
        }
        eprintln!("wrote {0}/plan.txt, {0}/plan-{{0,1,2}}.txt, {0}/study.json and {0}/slurm.sh", opts.out.display());
        return Ok(());
    }
    if args.dry_run {
        if args.dry_run_batches == 0 {
            crate::bail_input!("--dry-run-batches must be at least 1");
        }
        print!("{}", crate::study::dry_run_study(&opts, args.dry_run_batches, jobs)?);
        return Ok(());
    }
    crate::study::run_study(&opts, jobs)?;
    print!("{}", std::fs::read_to_string(opts.out.join("TABLE.md"))?);
    Ok(())
}

/// `params`: parameter counts per module, against the paper's.
pub(crate) fn print_params(preset: Preset, teacher: TeacherKind, config: StudentConfig, json: bool) -> Result<()> {
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

/// `demo`: synthesise data, train the complete teacher and the student without KD, compare.
pub(crate) fn demo(preset: Preset, out: &Path, seed: u64, epochs: Option<usize>) -> Result<()> {
    let t0 = Instant::now();
    let data_dir = out.join("data");
    let dataset = super::data::synth_to(preset, seed, crate::data::synth::Regime::Content, None, &data_dir)?;
    eprintln!("synthesised {} in {:.1}s -> {}", dataset.name, t0.elapsed().as_secs_f64(), data_dir.display());
    let spec = |name: &str, role: RunRole| TrainSpec {
        role,
        data: data_dir.clone(),
        preset,
        target: RunTarget { resume: out.join(name).join(crate::run::files::RESUME).exists(), ..RunTarget::new(out.join(name)) },
        recipe: RecipeOverrides { epochs, seed: Some(seed), ..Default::default() },
        model: Default::default(),
    };
    let t1 = Instant::now();
    // A finished run (from an earlier demo) is evaluated again, not retrained.
    let train_or_eval = |name: &str, role: RunRole| -> Result<crate::eval::EvalReport> {
        let spec = spec(name, role);
        if spec.target.out.join(crate::run::files::EVAL).exists() {
            return evaluate_run(&spec.target.out, None, &device());
        }
        match train_run(&spec, &device(), super::device_kind())? {
            Outcome::Trained(report) => Ok(report),
            Outcome::DryRun(_) => unreachable!("the demo never dry-runs"),
        }
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
