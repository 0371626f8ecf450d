//! The study: every run of Table 1 over several seeds, executed as independent `mmkd`
//! processes (a small pool, or any batch system via `--plan`), then one report.

pub mod dry_run;
pub mod pictures;
pub mod plan;
pub mod progress;
pub mod report;
pub mod slurm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;

use crate::config::{DataShape, ModelConfig};
use crate::durable::write_atomic;
use crate::model::{StudentStreams, TeacherKind, TraceRequest, build_student, build_teacher};
use crate::train::dry_run::{DRY_RUN_FILE, DryRunReport};
use plan::{PlannedRun, RowSpec, STUDY_FILE, StudyOptions, command_line};
use progress::StudyLog;
use report::{Latency, TableRow};

/// A run is finished when its eval.json exists (the data step: its manifest).
fn is_finished(run: &PlannedRun) -> bool {
    if run.phase == 0 { run.dir.join("manifest.json").exists() } else { run.dir.join("eval.json").exists() }
}

/// The shape of the study's data without loading it: the manifest's once the data exists, else
/// (a pickle not converted yet) read from the pickle's structure, else (synthetic data not
/// generated yet) the preset's.
fn planned_shape(opts: &StudyOptions) -> Result<DataShape> {
    let dir = opts.data_dir();
    if dir.join("manifest.json").exists() {
        return Ok(crate::data::native::read_manifest(&dir)?.shape);
    }
    Ok(match &opts.data {
        plan::StudyData::Synthetic { n_train, .. } => {
            let shape = DataShape::for_preset(opts.preset);
            DataShape { n_train: n_train.unwrap_or(shape.n_train), ..shape }
        }
        plan::StudyData::Pickle { file } => crate::data::pickle::pickle_shape(file)?,
        plan::StudyData::Native { .. } => crate::data::native::read_manifest(&dir)?.shape,
    })
}

/// Dry-run reports already measured for this study, by row slug (`OUT/dry-run/<slug>/`).
fn measured_dry_runs(out: &Path) -> BTreeMap<String, DryRunReport> {
    let mut found = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(out.join("dry-run")) else { return found };
    for entry in entries.flatten() {
        let path = entry.path().join(DRY_RUN_FILE);
        if let Some(r) = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str::<DryRunReport>(&t).ok()) {
            found.insert(entry.file_name().to_string_lossy().into_owned(), r);
        }
    }
    found
}

/// Write study.json, plan-<phase>.txt, plan.txt and slurm.sh into the study directory; return
/// the lines.
pub fn write_plan(opts: &StudyOptions, exe: &str) -> Result<Vec<String>> {
    std::fs::create_dir_all(&opts.out).map_err(|e| crate::error::input_error(format!("{}: {e}", opts.out.display())))?;
    // Absolute paths: slurm.sh changes into the study folder, and batch jobs may start anywhere.
    let opts = &StudyOptions { out: std::path::absolute(&opts.out)?, ..opts.clone() };
    if let Some(saved) = StudyOptions::load(&opts.out)?
        && saved.data != opts.data
    {
        crate::bail_input!("{}: this study folder was planned for {}, not {}; choose another --out", opts.out.display(), saved.data, opts.data);
    }
    write_atomic(&opts.out.join(STUDY_FILE), serde_json::to_string_pretty(opts)?.as_bytes())?;
    let runs = plan::plan(opts);
    let mut all = Vec::new();
    for phase in 0..3 {
        let lines: Vec<String> = runs.iter().filter(|r| r.phase == phase).map(|r| command_line(exe, r)).collect();
        let text = if lines.is_empty() { String::new() } else { lines.join("\n") + "\n" };
        write_atomic(&opts.out.join(format!("plan-{phase}.txt")), text.as_bytes())?;
        all.extend(lines);
    }
    write_atomic(&opts.out.join("plan.txt"), (all.join("\n") + "\n").as_bytes())?;
    let requests = slurm::requests(opts, &runs, &planned_shape(opts)?, &measured_dry_runs(&opts.out));
    let path = opts.out.join("slurm.sh");
    write_atomic(&path, slurm::script(&opts.out, &requests).as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(all)
}

/// Run `args` as a child `mmkd`; its output goes to `log`.
fn execute_args(exe: &Path, name: &str, args: &[String], log: &Path, single_thread: bool) -> Result<()> {
    let file = std::fs::File::create(log)?;
    let mut cmd = Command::new(exe);
    cmd.args(args).stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file);
    if single_thread {
        // Measured: at these sizes one thread per run is as fast as two, so two runs at once
        // double throughput on 2 cores.
        cmd.env("RAYON_NUM_THREADS", "1");
    }
    let status = cmd.status().with_context(|| format!("starting {}", exe.display()))?;
    if !status.success() {
        bail!("{name} failed ({status}); see {}", log.display());
    }
    Ok(())
}

fn run_name(run: &PlannedRun) -> String {
    run.dir.file_name().and_then(|n| n.to_str()).unwrap_or("run").to_string()
}

/// Run one planned command as a child process; its output goes to `out/logs/<name>.log`.
fn execute(exe: &Path, run: &PlannedRun, logs: &Path, single_thread: bool) -> Result<()> {
    let name = run_name(run);
    let mut args = run.args.clone();
    // An interrupted run continues where it stopped.
    if run.phase > 0 && run.dir.join("resume.json").exists() {
        args.push("--resume".into());
    }
    execute_args(exe, &name, &args, &logs.join(format!("{name}.log")), single_thread)
}

/// Run the whole study with `jobs` runs at a time, skipping finished runs, then report. A line
/// per finished run (and the study's end) goes to the terminal and to `OUT/study.log`.
pub fn run_study(opts: &StudyOptions, jobs: usize) -> Result<Vec<TableRow>> {
    let exe = std::env::current_exe().context("locating the mmkd executable")?;
    write_plan(opts, &exe.display().to_string())?;
    let logs = opts.out.join("logs");
    std::fs::create_dir_all(&logs)?;
    let runs = plan::plan(opts);
    let todo = runs.iter().filter(|r| !is_finished(r)).count();
    let log = StudyLog::open(&opts.out, todo, jobs.max(1))?;
    log.line(&format!("study {}: {} runs, {} already finished, {} to do, {} at a time, device {}", opts.out.display(), runs.len(), runs.len() - todo, todo, jobs.max(1), opts.device.name()));
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
                        let name = run_name(run);
                        let started = log.start(&name);
                        let result = execute(&exe, run, &logs, jobs > 1);
                        let error = result.as_ref().err().map(|e| e.to_string());
                        if run.phase == 0 {
                            log.finish_data_step(&name, started, error)
                        } else {
                            log.finish(&name, started, error)
                        }
                        if let Err(e) = result {
                            failures.lock().expect("failure lock").push(e.to_string());
                        }
                    }
                });
            }
        });
        let failures = failures.into_inner().expect("failure lock");
        if !failures.is_empty() {
            log.line(&format!("study stopped: {} run(s) failed in phase {phase}", failures.len()));
            bail!("{} run(s) failed in phase {phase}:\n  {}", failures.len(), failures.join("\n  "));
        }
    }
    log.line(&format!("study runs done in {:.0} s", t0.elapsed().as_secs_f64()));
    let shape = crate::data::native::read_manifest(&opts.data_dir())?.shape;
    let latency = measure_latency(&shape, &ModelConfig::for_preset(opts.preset), 1);
    write_report(&opts.out, Some(latency))
}

/// The dry run of a study: the data step for real (converting or generating is needed anyway),
/// then one run of each kind (each row, first seed) for `batches` training batches at the real
/// shapes on the study's device, one at a time so that each peak is the run's own, in
/// `OUT/dry-run/<row>/`; then `OUT/DRY-RUN.md` and `OUT/dry-run/report.json` with the step
/// times, peak memory and estimated wall time of the full study. Returns the markdown.
pub fn dry_run_study(opts: &StudyOptions, batches: usize, jobs: usize) -> Result<String> {
    let exe = std::env::current_exe().context("locating the mmkd executable")?;
    write_plan(opts, &exe.display().to_string())?;
    let runs = plan::plan(opts);
    let root = opts.out.join("dry-run");
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs)?;
    // One run of each kind, teachers first: a distillation dry run reads its teacher's dry-run
    // weights.
    let mut kinds: Vec<&PlannedRun> = opts.rows.rows().into_iter().filter_map(|row| runs.iter().find(|r| r.row == Some(row))).collect();
    kinds.sort_by_key(|r| r.phase);
    let log = StudyLog::open(&opts.out, kinds.len() + runs.iter().filter(|r| r.phase == 0 && !is_finished(r)).count(), 1)?;
    std::fs::create_dir_all(opts.out.join("logs"))?;
    for data_step in runs.iter().filter(|r| r.phase == 0 && !is_finished(r)) {
        let name = run_name(data_step);
        let started = log.start(&name);
        let result = execute(&exe, data_step, &opts.out.join("logs"), false);
        log.finish_data_step(&name, started, result.as_ref().err().map(|e| e.to_string()));
        result?;
    }
    for run in kinds {
        let row = run.row.expect("study rows");
        let dir = root.join(row.slug());
        let mut args = replace_flag(&run.args, "--out", &dir.display().to_string());
        if let Some(teacher) = row.teacher() {
            args = replace_flag(&args, "--teacher", &root.join(RowSpec::Teacher(teacher).slug()).display().to_string());
        }
        if dir.join("config.json").exists() {
            args.push("--force".into());
        }
        args.extend(["--dry-run".into(), batches.to_string()]);
        let started = log.start(&row.slug());
        let result = execute_args(&exe, &row.slug(), &args, &logs.join(format!("{}.log", row.slug())), false);
        log.finish(&row.slug(), started, result.as_ref().err().map(|e| e.to_string()));
        result?;
    }
    let shape = crate::data::native::read_manifest(&opts.data_dir())?.shape;
    let measured = measured_dry_runs(&opts.out);
    let summary = dry_run::summary(opts, &runs, &measured, &shape, jobs)?;
    write_atomic(&root.join("report.json"), serde_json::to_string_pretty(&summary)?.as_bytes())?;
    let md = dry_run::markdown(&summary);
    write_atomic(&opts.out.join("DRY-RUN.md"), md.as_bytes())?;
    // Plan again: slurm.sh now takes its limits from the measurements.
    write_plan(opts, &exe.display().to_string())?;
    Ok(md)
}

/// `args` with the value after `flag` replaced by `value`.
fn replace_flag(args: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut out = args.to_vec();
    if let Some(i) = out.iter().position(|a| a == flag)
        && i + 1 < out.len()
    {
        out[i + 1] = value.to_string();
    }
    out
}

/// Collect finished runs below `study` and write table.json, table.csv and TABLE.md. Runs that
/// do not belong to the study's plan (`study.json`: another dataset, another preset, a run the
/// plan does not name) are refused, each by name.
pub fn write_report(study: &Path, latency: Option<Latency>) -> Result<Vec<TableRow>> {
    report::check_runs_against_plan(study)?;
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
    let table = report::to_markdown(&rows, latency.as_ref());
    write_atomic(&study.join("TABLE.md"), table.as_bytes())?;
    write_atomic(&study.join("REPORT.md"), study_report(study, &rows, &table, latency.as_ref())?.as_bytes())?;
    Ok(rows)
}

/// REPORT.md: the table, a bar chart of Acc-7 per row with intervals (`acc7.png`), what each
/// attention-level method did to Acc-7 and to the event share, the maps of the best
/// attention-level student beside its teacher's and the no-KD student's (`report-maps/`), and
/// teacher against student in parameters and latency.
fn study_report(study: &Path, rows: &[TableRow], table: &str, latency: Option<&Latency>) -> Result<String> {
    use clap::ValueEnum;
    let label = |r: &TableRow| report::row_label(r);
    let labelled: Vec<(String, &TableRow)> = rows.iter().map(|r| (label(r), r)).collect();
    pictures::draw_acc7_bars(&study.join("acc7.png"), &labelled)?;
    let mut s = format!("# Study report\n\n{}\n\n", report::dataset_line(rows));
    let student_seeds = rows.iter().filter(|r| r.role == "student").map(|r| r.seeds.len()).max().unwrap_or(0);
    let complete_teacher = rows.iter().find(|r| r.is_complete_teacher());
    if let Some(t) = complete_teacher
        && t.seeds.len() == 1
        && student_seeds > 1
    {
        s += &format!("One complete teacher (seed {}) taught the students of every seed, so the intervals below hold the students' seed-to-seed variation, not the teacher's.\n\n", t.seeds[0]);
    }
    // A teacher trained with branch dropout is not MulT's; the report says so.
    if let Some(t) = complete_teacher
        && let Some(&seed) = t.seeds.first()
        && let Ok(cfg) = crate::train::RunConfig::load(&plan::run_dir(study, &RowSpec::Teacher(TeacherKind::Complete), seed))
        && cfg.model.branch_dropout > 0.0
    {
        s += &format!("The complete teacher was trained with branch dropout p = {} (each branch's last step dropped whole; not in MulT; docs/DECISIONS.md).\n\n", cfg.model.branch_dropout);
    }
    s += "## Acc-7 per row\n\n![Acc-7 per row with 95 % intervals of the mean](acc7.png)\n\n";
    s += "## Attention-level distillation\n\n";
    let attention: Vec<&TableRow> = rows.iter().filter(|r| r.level == "attention-map").collect();
    if attention.is_empty() {
        s += "No attention-level row has finished runs.\n\n";
    }
    for r in &attention {
        let acc = match (r.acc7_diff_mean, r.acc7_diff_ci95) {
            (Some(d), Some([lo, hi])) => format!(
                "Acc-7 {d:+.2} points vs no KD, 95 % CI [{lo:+.2}, {hi:+.2}] ({})",
                if lo > 0.0 {
                    "a firm gain"
                } else if hi < 0.0 {
                    "a firm loss"
                } else {
                    "not firm: the interval contains 0"
                }
            ),
            (Some(d), None) => format!("Acc-7 {d:+.2} points vs no KD (one seed: no interval)"),
            _ => "no paired no-KD runs".to_string(),
        };
        let share = match (r.event_share_mean, r.uniform_event_share) {
            (Some(e), Some(u)) => format!(
                "; event share in {} {e:.3} against {} without KD and {u:.3} under uniform attention{}{}",
                r.event_transformers.join(", "),
                r.nokd_event_share_mean.map_or("(not comparable)".to_string(), |n| format!("{n:.3}")),
                match (r.event_share_diff_mean, r.event_share_diff_ci95) {
                    (Some(d), Some([lo, hi])) => format!(
                        ", a difference of {d:+.3}{}, 95 % CI [{lo:+.3}, {hi:+.3}] ({})",
                        if r.event_share_compared.len() < r.event_transformers.len() {
                            format!(" in {} (the transformers the no-KD student has too)", r.event_share_compared.join(", "))
                        } else {
                            String::new()
                        },
                        if lo > 0.0 {
                            "a firm rise"
                        } else if hi < 0.0 {
                            "a firm fall"
                        } else {
                            "not firm"
                        }
                    ),
                    _ => String::new(),
                },
                r.teacher_event_share_mean.map_or(String::new(), |t| format!("; the teacher's own share in the transformers distilled: {t:.3} ({:.2}x uniform)", t / u.max(1e-12)))
            ),
            _ => String::new(),
        };
        s += &format!("- **{}**: {acc}{share}.\n", label(r));
    }
    // The attention-level row with the largest mean gain, seed of its first run.
    let best = attention.iter().filter(|r| r.acc7_diff_mean.is_some()).max_by(|a, b| a.acc7_diff_mean.partial_cmp(&b.acc7_diff_mean).unwrap_or(std::cmp::Ordering::Equal));
    if let Some(r) = best
        && let (Some(config), Ok(level), Ok(method), Some(&seed)) = (r.config, crate::distill::Level::from_str(&r.level, true), crate::distill::Method::from_str(&r.method, true), r.seeds.first())
    {
        let run = plan::run_dir(study, &RowSpec::Distilled { config, level, method }, seed);
        let baseline = plan::run_dir(study, &RowSpec::StudentNoKd, seed);
        let cfg = crate::train::RunConfig::load(&run)?;
        if let crate::train::RunRole::Student { distill: Some(d), .. } = &cfg.role {
            let dataset = crate::data::load_any(&cfg.data)?;
            let events = crate::data::events::Events::load(&cfg.data)?;
            let device = Device::flex();
            let net = crate::train::Run::open(&run)?.load_best(&device)?;
            let (_, maps) = crate::eval::maps::attention_maps(&net, &dataset.test, &dataset.shape, 1, d.temperature, None, &device);
            let out = study.join("report-maps");
            std::fs::create_dir_all(&out)?;
            pictures::compare_with_teacher(&out, &dataset, events.as_ref(), d.temperature, config, d, &maps, baseline.exists().then_some(baseline.as_path()))?;
            s += &format!(
                "\n## Maps of the best attention-level student ({}, seed {seed})\n\nThe first test clip; teacher, distilled student and student without KD share one colour scale; the red outline marks the true event's key steps; under each student map its mean row KL divergence to the teacher's.\n\n",
                label(r)
            );
            for (_, s_id) in crate::distill::distilled_pairs(config) {
                let name = format!("compare-{}.png", s_id.to_string().replace("<-", "_from_"));
                if out.join(&name).exists() {
                    s += &format!("![{s_id}](report-maps/{name})\n\n");
                }
            }
        }
    }
    s += "## Teacher and student\n\n";
    let params = |f: &dyn Fn(&TableRow) -> bool| rows.iter().find(|r| f(r)).map(|r| r.params);
    if let (Some(t), Some(st)) = (params(&|r| r.is_complete_teacher()), params(&|r| r.role == "student" && r.level == "none")) {
        s += &format!("- Parameters: complete teacher {t}, config-5 student {st} ({:.0} % of the teacher).\n", 100.0 * st as f64 / t as f64);
    }
    if let Some(l) = latency {
        s += &format!(
            "- Inference latency on {} (batch {}, median): teacher {:.2} ms, student {:.2} ms ({:.0} % of the teacher).\n",
            l.device,
            l.batch,
            l.teacher_ms,
            l.student_ms,
            100.0 * l.student_ms / l.teacher_ms
        );
    }
    s += "\n## The table\n\n";
    s += table.split_once("\n\n").map_or(table, |(_, rest)| rest);
    Ok(s)
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
