//! `demo` (the quick main job), `study` and `params`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;

use super::device;
use super::train::{CommonTrain, RunFlags, check_branch_dropout, train_one};
use crate::config::{DataShape, ModelConfig, Preset};
use crate::model::{StudentConfig, StudentStreams, TeacherKind, build_student, build_teacher, params};
use crate::train::{RunRole, evaluate_run};

/// The synthetic data a study generates.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct StudyData {
    /// Regime of the synthetic data (docs/DATA.md).
    #[arg(long, value_enum, default_value = "content")]
    pub(crate) regime: crate::data::synth::Regime,
    /// Training clips (default: the preset's).
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
    /// Epochs for the teachers (default: --epochs, else the preset's).
    #[arg(long)]
    pub(crate) teacher_epochs: Option<usize>,
    /// Train the teachers with branch dropout P (not in MulT; default 0; docs/DECISIONS.md).
    #[arg(long, value_name = "P")]
    pub(crate) teacher_branch_dropout: Option<f64>,
}

/// `study`: plan, run or collect the study of Table 1.
pub(crate) fn study(preset: Preset, seeds: u64, out: Option<PathBuf>, jobs: Option<usize>, epochs: Option<usize>, data: StudyData, plan: bool, collect: Option<PathBuf>) -> Result<()> {
    if let Some(dir) = collect {
        crate::study::write_report(&dir, None)?;
        print!("{}", std::fs::read_to_string(dir.join("TABLE.md"))?);
        return Ok(());
    }
    if seeds == 0 {
        crate::bail_input!("--seeds must be at least 1");
    }
    if let Some(p) = data.teacher_branch_dropout {
        check_branch_dropout("--teacher-branch-dropout", p)?;
    }
    let opts = crate::study::plan::StudyOptions {
        preset,
        seeds: (1..=seeds).collect(),
        out: out.unwrap_or_else(|| crate::study::default_out(preset)),
        epochs,
        data_seed: 1,
        regime: data.regime,
        n_train: data.n_train,
        rows: data.rows,
        teacher_seed: data.teacher_seed,
        teacher_epochs: data.teacher_epochs,
        teacher_branch_dropout: data.teacher_branch_dropout,
    };
    if plan {
        // The running binary's absolute path: the plan's lines run from any directory.
        let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "mmkd".into());
        for line in crate::study::write_plan(&opts, &exe)? {
            println!("{line}");
        }
        eprintln!("wrote {0}/plan.txt, {0}/plan-{{0,1,2}}.txt and {0}/slurm.sh", opts.out.display());
        return Ok(());
    }
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
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
            gradient_checkpointing: false,
        },
        d_model: None,
        layers: None,
        heads: None,
        causal_mask: None,
        grad_clip: None,
        temporal_width_2d: None,
        key_padding_mask: None,
        branch_dropout: None,
    };
    let t1 = Instant::now();
    // A finished run (from an earlier demo) is evaluated again, not retrained.
    let train_or_eval = |name: &str, role: RunRole| -> Result<crate::eval::EvalReport> {
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

