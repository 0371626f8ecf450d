//! Commands that read finished runs: `eval` (optionally with modalities missing), `robustness`,
//! `maps`, `predict`, and `reference run`.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{MissingArgs, device};
use crate::data;
use crate::durable::write_atomic;
use crate::predict::{Format, SplitChoice};
use crate::run::{RunConfig, evaluate_run_with};

fn print_report(r: &crate::eval::EvalReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        println!("{r}");
    }
    Ok(())
}

/// Where `eval` writes its report: `--out` when given; RUN/`default_name` on the run's own data;
/// on other data (another fingerprint) RUN/eval-<dataset name>[-rest], so that the run's
/// eval.json, which `study --collect` reads, always describes the data the run trained on.
fn eval_report_path(run: &Path, data: Option<&Path>, out: Option<&Path>, default_name: &str) -> Result<PathBuf> {
    if let Some(out) = out {
        return Ok(out.to_path_buf());
    }
    let Some(data) = data else { return Ok(run.join(default_name)) };
    let cfg = RunConfig::load(run)?;
    let same_path = std::path::absolute(data).ok().as_deref() == Some(cfg.data.as_path());
    let same = match &cfg.dataset_fingerprint {
        Some(f) => *f == data::identity::fingerprint(data)?,
        // A run from before fingerprints: only its own path is known to be its data.
        None => same_path,
    };
    if same {
        return Ok(run.join(default_name));
    }
    let name = data::dataset_name(data)?;
    let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    Ok(run.join(default_name.replacen("eval", &format!("eval-{safe}"), 1)))
}

/// `eval RUN`: the best checkpoint on the test split; RUN/eval.json on the run's own data,
/// elsewhere on other data (`eval_report_path`).
pub(crate) fn eval(run: &Path, data: Option<&Path>, out: Option<&Path>, json: bool) -> Result<()> {
    let path = eval_report_path(run, data, out, "eval.json")?;
    let dataset = data.map(data::load_any).transpose()?;
    let report = evaluate_run_with(run, dataset.as_ref(), None, &device())?;
    write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    eprintln!("wrote {}", path.display());
    print_report(&report, json)
}

/// `eval RUN --drop LIST`: the same with modalities missing; writes RUN/eval-missing-*.json
/// (RUN/eval-<dataset name>-missing-*.json on other data).
pub(crate) fn eval_missing(run: &Path, data: Option<&Path>, out: Option<&Path>, json: bool, list: &str, missing: &MissingArgs) -> Result<()> {
    let modalities = data::missing::parse_modalities(list).map_err(|e| crate::error::input_error(format!("--drop: {e}")))?;
    let m = missing.missing(modalities)?;
    let path = eval_report_path(run, data, out, &format!("eval-missing-{}.json", m.label()))?;
    let dataset = data.map(data::load_any).transpose()?;
    let r = evaluate_run_with(run, dataset.as_ref(), Some(&m), &device())?;
    write_atomic(&path, serde_json::to_string_pretty(&r)?.as_bytes())?;
    print_report(&r, json)
}

/// `robustness`: the teacher with every subset of modalities missing next to the student.
pub(crate) fn robustness(teacher: &Path, student: &Path, out: Option<PathBuf>, missing: &MissingArgs) -> Result<()> {
    let how = missing.missing(Vec::new())?;
    let (dataset, rows) = crate::robustness::robustness(teacher, student, how.mode, how.fraction, how.seed, &device())?;
    let out = out.unwrap_or_else(|| teacher.join("robustness"));
    let md = crate::robustness::write_report(&out, &dataset, &how.describe(), teacher, student, &rows)?;
    print!("{md}");
    eprintln!("wrote {0}/ROBUSTNESS.md, robustness.csv, robustness.json", out.display());
    Ok(())
}

/// `maps RUN`: entropy (and, on synthetic data, the share on the true event) of every traced
/// map; pictures of the first test clip's maps; `--json` prints the statistics by transformer.
#[allow(clippy::too_many_arguments)]
pub(crate) fn maps(run: &Path, data: Option<&Path>, samples: usize, split: crate::eval::maps::MapSplit, temperature: f32, out: Option<PathBuf>, json: bool, baseline: Option<&Path>) -> Result<()> {
    let cfg = RunConfig::load(run)?;
    let data_dir = data.unwrap_or(&cfg.data);
    let dataset = data::load_any(data_dir)?;
    let events = if data_dir.is_dir() { data::events::Events::load(data_dir)? } else { None };
    let (clips, split_name) = match split {
        crate::eval::maps::MapSplit::Test => (&dataset.test, "test"),
        crate::eval::maps::MapSplit::Valid => (&dataset.valid, "valid"),
    };
    let starts = events.as_ref().and_then(|e| e.split(split_name));
    let frames = events.as_ref().zip(starts).map(|(e, starts)| crate::eval::maps::EventFrames { starts, width: e.burst_frames });
    if let (Some(e), Some(starts)) = (&events, starts)
        && (starts.len() != clips.len() || e.video_len != dataset.shape.video_len)
    {
        crate::bail_input!(
            "{}: events.json describes {} {split_name} clips of {} frames, the dataset has {} of {}",
            data_dir.display(),
            starts.len(),
            e.video_len,
            clips.len(),
            dataset.shape.video_len
        );
    }
    let dev = device();
    let net = crate::run::Run::open(run)?.load_best(&dev)?;
    let (stats, maps) = crate::eval::maps::attention_maps(&net, clips, &dataset.shape, samples, temperature, frames, &dev);
    let out = out.unwrap_or_else(|| run.join("maps"));
    std::fs::create_dir_all(&out)?;
    for (id, m) in &maps {
        let name = id.to_string().replace("<-", "_from_");
        crate::eval::maps::draw(m, &out.join(format!("{name}.png")))?;
    }
    if let crate::run::RunRole::Student { config, distill: Some(d), .. } = &cfg.role {
        crate::study::pictures::compare_with_teacher(&out, &dataset, events.as_ref(), temperature, *config, d, &maps, baseline)?;
    } else if baseline.is_some() {
        crate::bail_input!("{}: --baseline compares a distilled student's maps; this run is no distillation run", run.display());
    }
    let by_transformer = crate::eval::maps::by_transformer(&stats);
    write_atomic(&out.join("stats.json"), serde_json::to_string_pretty(&by_transformer)?.as_bytes())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&by_transformer)?);
        return Ok(());
    }
    println!("attention maps of {} on {} ({split_name}, {} clips, t = {temperature})", run.display(), dataset.name, samples.min(clips.len()));
    println!("{:<12} {:>5} {:>10} {:>10} {:>10} {:>12} {:>12}", "transformer", "layer", "entropy", "uniform", "mean max", "event share", "uniform");
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.3}"));
    for s in &stats {
        println!(
            "{:<12} {:>5} {:>10.3} {:>10.3} {:>10.3} {:>12} {:>12}",
            s.transformer,
            s.stats.layer,
            s.stats.entropy,
            s.stats.uniform_entropy,
            s.stats.mean_max,
            opt(s.stats.event_share),
            opt(s.stats.uniform_event_share)
        );
    }
    println!("pictures and stats.json in {}", out.display());
    Ok(())
}

/// `predict RUN`: one row per clip, to a file (atomically) or standard output.
pub(crate) fn predict(run: &Path, data: &Path, split: SplitChoice, out: Option<PathBuf>, format: Option<Format>, batch_size: usize) -> Result<()> {
    let rows = crate::predict::predict(run, data, split, batch_size.max(1), &device())?;
    let format = format.unwrap_or(match out.as_ref().and_then(|p| p.extension()) {
        Some(ext) if ext == "jsonl" => Format::Jsonl,
        _ => Format::Csv,
    });
    match out {
        Some(path) => {
            let mut buf = Vec::new();
            crate::predict::write(&rows, format, &mut buf)?;
            write_atomic(&path, &buf)?;
            eprintln!("wrote {} predictions to {}", rows.len(), path.display());
        }
        None => crate::predict::write(&rows, format, std::io::stdout().lock())?,
    }
    Ok(())
}

/// `reference run CASE...`: replay reference cases with mmkd's code.
pub(crate) fn reference_run(cases: &[PathBuf]) -> Result<()> {
    for case in cases {
        let outputs = crate::reference::run_case_on(case, &super::device())?;
        crate::reference::write_tensors(&case.join("mmkd.safetensors"), &outputs)?;
        eprintln!("{}: {} tensors", case.display(), outputs.len());
    }
    Ok(())
}
