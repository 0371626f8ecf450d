//! The study: every run of Table 1 over several seeds, executed as independent `mmkd`
//! processes (a small pool, or any batch system via `--plan`), then one report.

pub mod plan;
pub mod report;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{DataShape, ModelConfig};
use crate::error::write_atomic;
use crate::model::{StudentStreams, TeacherKind, TraceRequest, build_student, build_teacher};
use plan::{PlannedRun, StudyOptions, command_line, slurm_script};
use report::{Latency, TableRow};

/// A run is finished when its eval.json exists (the data step: its manifest).
fn is_finished(run: &PlannedRun) -> bool {
    if run.phase == 0 { run.dir.join("manifest.json").exists() } else { run.dir.join("eval.json").exists() }
}

/// Write plan-<phase>.txt, plan.txt and slurm.sh into the study directory; return the lines.
pub fn write_plan(opts: &StudyOptions, exe: &str) -> Result<Vec<String>> {
    std::fs::create_dir_all(&opts.out)?;
    // Absolute paths: slurm.sh changes into the study folder, and batch jobs may start anywhere.
    let opts = &StudyOptions { out: std::path::absolute(&opts.out)?, ..opts.clone() };
    let runs = plan::plan(opts);
    let mut all = Vec::new();
    for phase in 0..3 {
        let lines: Vec<String> = runs.iter().filter(|r| r.phase == phase).map(|r| command_line(exe, r)).collect();
        write_atomic(&opts.out.join(format!("plan-{phase}.txt")), (lines.join("\n") + "\n").as_bytes())?;
        all.extend(lines);
    }
    write_atomic(&opts.out.join("plan.txt"), (all.join("\n") + "\n").as_bytes())?;
    let slurm = opts.out.join("slurm.sh");
    write_atomic(&slurm, slurm_script(&opts.out).as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&slurm, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(all)
}

/// Run one planned command as a child process; its output goes to `out/logs/<name>.log`.
fn execute(exe: &Path, run: &PlannedRun, logs: &Path, single_thread: bool) -> Result<()> {
    let name = run.dir.file_name().and_then(|n| n.to_str()).unwrap_or("run").to_string();
    let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
    let mut args = run.args.clone();
    // An interrupted run continues where it stopped.
    if run.phase > 0 && run.dir.join("resume.json").exists() {
        args.push("--resume".into());
    }
    let mut cmd = Command::new(exe);
    cmd.args(&args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    if single_thread {
        // Measured: at these sizes one thread per run is as fast as two, so two runs at once
        // double throughput on 2 cores.
        cmd.env("RAYON_NUM_THREADS", "1");
    }
    let status = cmd.status().with_context(|| format!("starting {}", exe.display()))?;
    if !status.success() {
        bail!("{name} failed ({status}); see {}", logs.join(format!("{name}.log")).display());
    }
    Ok(())
}

/// Run the whole study with `jobs` runs at a time, skipping finished runs, then report.
pub fn run_study(opts: &StudyOptions, jobs: usize) -> Result<Vec<TableRow>> {
    let exe = std::env::current_exe().context("locating the mmkd executable")?;
    write_plan(opts, &exe.display().to_string())?;
    let logs = opts.out.join("logs");
    std::fs::create_dir_all(&logs)?;
    let runs = plan::plan(opts);
    let todo = runs.iter().filter(|r| !is_finished(r)).count();
    eprintln!("study: {} runs, {} already finished, {} to do, {} at a time", runs.len(), runs.len() - todo, todo, jobs.max(1));
    let bar = ProgressBar::new(todo as u64);
    bar.set_style(ProgressStyle::with_template("study [{bar:30}] {pos}/{len} runs {msg} ETA {eta}").expect("valid template").progress_chars("=> "));
    let t0 = Instant::now();
    for phase in 0..3 {
        let queue: Mutex<Vec<&PlannedRun>> = Mutex::new(runs.iter().filter(|r| r.phase == phase && !is_finished(r)).rev().collect());
        let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..jobs.max(1) {
                scope.spawn(|| {
                    loop {
                        let next = queue.lock().expect("queue lock").pop();
                        let Some(run) = next else { break };
                        bar.set_message(run.dir.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string());
                        if let Err(e) = execute(&exe, run, &logs, jobs > 1) {
                            failures.lock().expect("failure lock").push(e.to_string());
                        }
                        bar.inc(1);
                    }
                });
            }
        });
        let failures = failures.into_inner().expect("failure lock");
        if !failures.is_empty() {
            bar.abandon();
            bail!("{} run(s) failed in phase {phase}:\n  {}", failures.len(), failures.join("\n  "));
        }
    }
    bar.finish_and_clear();
    eprintln!("study runs done in {:.0}s", t0.elapsed().as_secs_f64());
    let shape = crate::data::native::read_manifest(&plan::data_dir(&opts.out))?.shape;
    let latency = measure_latency(&shape, &ModelConfig::for_preset(opts.preset), 1);
    write_report(&opts.out, Some(latency))
}

/// Collect finished runs below `study` and write table.json, table.csv and TABLE.md.
pub fn write_report(study: &Path, latency: Option<Latency>) -> Result<Vec<TableRow>> {
    let rows = report::collect(study)?;
    if rows.is_empty() {
        crate::bail_input!("{}: no finished runs (no runs/*/eval.json)", study.display());
    }
    write_atomic(&study.join("table.json"), serde_json::to_string_pretty(&rows)?.as_bytes())?;
    write_atomic(&study.join("table.csv"), report::to_csv(&rows).as_bytes())?;
    if let Some(l) = &latency {
        write_atomic(&study.join("latency.json"), serde_json::to_string_pretty(l)?.as_bytes())?;
    }
    let latency = latency.or_else(|| std::fs::read_to_string(study.join("latency.json")).ok().and_then(|s| serde_json::from_str(&s).ok()));
    write_atomic(&study.join("TABLE.md"), report::to_markdown(&rows, latency.as_ref()).as_bytes())?;
    Ok(rows)
}

/// Median inference time of the complete teacher and the config-5 student, batch `batch`,
/// on the flex CPU device (weights do not change the time).
pub fn measure_latency(shape: &DataShape, model: &ModelConfig, batch: usize) -> Latency {
    let device = Device::flex();
    let teacher = build_teacher(TeacherKind::Complete, shape, model, &device);
    let student = build_student(crate::model::StudentConfig::C5, StudentStreams::Downsampled, shape, model, &device);
    let small = DataShape { n_train: batch, n_valid: 1, n_test: 1, ..shape.clone() };
    let (data, _) = crate::data::synth::generate(crate::config::Preset::Smoke, 0, &small, &Default::default());
    let idx: Vec<usize> = (0..batch).collect();
    let b = data.train.batch(&small, &idx, &device);
    let time = |net: &crate::model::MultimodalNet| -> f64 {
        let mut v: Vec<f64> = (0..23)
            .map(|_| {
                let t = Instant::now();
                let out = net.forward(&b.input, &TraceRequest::none());
                let _: Vec<f32> = out.logits.into_data().try_to_vec().expect("logits");
                t.elapsed().as_secs_f64() * 1e3
            })
            .skip(3)
            .collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Latency { device: "CPU (burn flex)".into(), batch, teacher_ms: time(&teacher), student_ms: time(&student) }
}

/// The study directory when none is given: `runs/study-<preset>`.
pub fn default_out(preset: crate::config::Preset) -> PathBuf {
    PathBuf::from(format!("runs/study-{}", preset.name()))
}
