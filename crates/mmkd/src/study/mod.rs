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

use crate::choice::Choice;
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

/// The folder inside a study's output that holds the copy of the mmkd executable its runs use.
pub const PINNED_DIR: &str = ".mmkd-bin";

/// Copy the running executable into `OUT/.mmkd-bin/` (atomically) and return the copy's path.
/// Why: every run of a study is a child process started from a path; if the binary at that path
/// is rebuilt while the study runs (`cargo build` in the same target folder), later runs would
/// silently be another version of mmkd, and one table would mix two (seen on 2026-12-04). A
/// study started again after a rebuild takes a new copy and says so in `study.log`.
pub fn pin_executable(exe: &Path, out: &Path) -> Result<PathBuf> {
    let dir = std::path::absolute(out)?.join(PINNED_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = exe.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "mmkd".into());
    let pinned = dir.join(name);
    crate::durable::write_atomic_with(&pinned, |tmp| {
        std::fs::copy(exe, tmp).with_context(|| format!("copying {} to {}", exe.display(), tmp.display()))?;
        Ok(())
    })?;
    Ok(pinned)
}

/// Run the whole study with `jobs` runs at a time, skipping finished runs, then report. A line
/// per finished run (and the study's end) goes to the terminal and to `OUT/study.log`.
pub fn run_study(opts: &StudyOptions, jobs: usize) -> Result<Vec<TableRow>> {
    let current = std::env::current_exe().context("locating the mmkd executable")?;
    write_plan(opts, &current.display().to_string())?;
    let exe = pin_executable(&current, &opts.out)?;
    let logs = opts.out.join("logs");
    std::fs::create_dir_all(&logs)?;
    let runs = plan::plan(opts);
    let todo = runs.iter().filter(|r| !is_finished(r)).count();
    let log = StudyLog::open(&opts.out, todo, jobs.max(1))?;
    log.line(&format!("study {}: {} runs, {} already finished, {} to do, {} at a time, device {}", opts.out.display(), runs.len(), runs.len() - todo, todo, jobs.max(1), opts.device.name()));
    log.line(&format!("runs execute {}, a copy of {} taken now", exe.display(), current.display()));
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
    let mut kinds: Vec<&PlannedRun> = opts.planned_rows().into_iter().filter_map(|row| runs.iter().find(|r| r.row == Some(row))).collect();
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

/// REPORT.md from what `gather_report` draws and reads (`report::render_report` writes it).
fn study_report(study: &Path, rows: &[TableRow], table: &str, latency: Option<&Latency>) -> Result<String> {
    let facts = gather_report(study, rows)?;
    Ok(report::render_report(rows, table, latency, &facts))
}

/// What REPORT.md needs beyond the table, from the study's files: `acc7.png` (Acc-7 per row
/// with intervals), the complete teacher's branch dropout from its config, and the maps of the
/// best attention-level student beside its teacher's and the no-KD student's (`report-maps/`).
fn gather_report(study: &Path, rows: &[TableRow]) -> Result<report::ReportFacts> {
    let labelled: Vec<(String, &TableRow)> = rows.iter().map(|r| (report::row_label(r), r)).collect();
    pictures::draw_acc7_bars(&study.join("acc7.png"), &labelled)?;
    let mut facts = report::ReportFacts { acc7_picture: "acc7.png".into(), ..Default::default() };
    // A teacher trained with branch dropout is not MulT's; the report says so.
    if let Some(&seed) = rows.iter().find(|r| r.is_complete_teacher()).and_then(|t| t.seeds.first())
        && let Ok(cfg) = crate::run::RunConfig::load(&plan::run_dir(study, &RowSpec::Teacher(TeacherKind::Complete), seed))
        && cfg.model.branch_dropout > 0.0
    {
        facts.teacher_branch_dropout = Some(cfg.model.branch_dropout);
    }
    // Teachers trained with early stopping: how long each trained, and its best epoch.
    for &seed in rows.iter().find(|r| r.is_complete_teacher()).map_or(&[][..], |t| &t.seeds[..]) {
        let dir = plan::run_dir(study, &RowSpec::Teacher(TeacherKind::Complete), seed);
        if let Ok(cfg) = crate::run::RunConfig::load(&dir)
            && let Some(patience) = cfg.train.early_stop
        {
            let text = std::fs::read_to_string(dir.join(crate::run::files::METRICS))?;
            let logs: Vec<crate::run::EpochLog> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
            let best = logs.iter().min_by(|a, b| a.val_loss.total_cmp(&b.val_loss)).map_or(0, |e| e.epoch);
            facts.teacher_early_stops.push((seed, patience, logs.len(), best));
        }
    }
    // The attention-level row with the largest mean gain, seed of its first run.
    let Some(best) = report::best_attention_row(rows) else { return Ok(facts) };
    let (RowSpec::Distilled { config, .. }, Some(&seed)) = (best.spec(), best.seeds.first()) else { return Ok(facts) };
    // With several teachers (`--teachers`) the run of the first teacher; otherwise the seed's.
    let run = match best.run_teachers.first() {
        Some(&teacher) => plan::student_run_dir(study, &best.spec(), teacher, seed),
        None => plan::run_dir(study, &best.spec(), seed),
    };
    if !run.exists() {
        return Ok(facts);
    }
    // Beside the student without KD of the same configuration where the study has one.
    let own = plan::run_dir(study, &RowSpec::StudentNoKd(config), seed);
    let baseline = if own.exists() { own } else { plan::run_dir(study, &RowSpec::StudentNoKd(crate::model::StudentConfig::C5), seed) };
    let cfg = crate::run::RunConfig::load(&run)?;
    let crate::run::RunRole::Student { distill: Some(d), .. } = &cfg.role else { return Ok(facts) };
    let dataset = crate::data::load_any(&cfg.data)?;
    let events = crate::data::events::Events::load(&cfg.data)?;
    let device = Device::flex();
    let net = crate::run::Run::open(&run)?.load_best(&device)?;
    let (_, maps) = crate::eval::maps::attention_maps(&net, &dataset.test, &dataset.shape, 1, d.temperature, None, &device);
    let out = study.join("report-maps");
    std::fs::create_dir_all(&out)?;
    pictures::compare_with_teacher(&out, &dataset, events.as_ref(), d.temperature, config, d, &maps, baseline.exists().then_some(baseline.as_path()))?;
    let pictures = crate::distill::distilled_pairs(config)
        .into_iter()
        .map(|(_, s_id)| (s_id.to_string(), format!("compare-{}.png", s_id.to_string().replace("<-", "_from_"))))
        .filter(|(_, name)| out.join(name).exists())
        .map(|(id, name)| (id, format!("report-maps/{name}")))
        .collect();
    facts.best_maps = Some(report::BestMaps { label: report::row_label(best), seed, pictures });
    Ok(facts)
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

#[cfg(test)]
mod tests {
    #[test]
    fn pinned_executable_survives_a_rebuild_of_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("mmkd");
        std::fs::write(&exe, b"version 1").unwrap();
        let out = dir.path().join("study");
        let pinned = super::pin_executable(&exe, &out).unwrap();
        assert_eq!(pinned, std::path::absolute(&out).unwrap().join(super::PINNED_DIR).join("mmkd"));
        // A rebuild: the linker writes a new file and cargo puts it at the old path.
        let rebuilt = dir.path().join("mmkd.new");
        std::fs::write(&rebuilt, b"version 2").unwrap();
        std::fs::rename(&rebuilt, &exe).unwrap();
        assert_eq!(std::fs::read(&pinned).unwrap(), b"version 1", "the study keeps the binary it started with");
        // Started again, the study takes the new binary.
        let again = super::pin_executable(&exe, &out).unwrap();
        assert_eq!(std::fs::read(&again).unwrap(), b"version 2");
        assert_eq!(std::fs::read_dir(again.parent().unwrap()).unwrap().count(), 1, "no temporary file left behind");
    }
}
