//! `OUT/slurm.sh`: the study as Slurm job arrays (data, then teachers and no-KD students, then
//! distilled students, each after the previous one succeeded), with what each array asks for
//! computed by mmkd: GPUs and CPUs from the device, memory from the data's size and mmkd's own
//! step-memory estimate (or a dry run's measured peak), and a time limit from the epoch count
//! and a time per epoch (a dry run's measurement, or a stated CPU upper bound).

use std::path::Path;

use crate::config::{DataShape, DeviceKind, ModelConfig, Preset, TrainConfig};
use crate::model::{StudentStreams, TransformerId, build_student, build_teacher};
use crate::train::dry_run::DryRunReport;
use crate::train::memory::{AttentionKept, step_bytes};

use super::plan::{PlannedRun, RowSpec, StudyOptions};

/// What one job array asks for, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct ArrayRequest {
    /// The plan file whose lines the array runs (`plan-1.txt`).
    pub plan_file: String,
    /// What the array holds, for the script's comments and job names.
    pub name: &'static str,
    /// Array tasks (lines of the plan file).
    pub tasks: usize,
    /// GPUs per task (`--gres=gpu:N`; 0: none asked for).
    pub gpus: u32,
    /// `--cpus-per-task`.
    pub cpus: u32,
    /// `--mem`, GB.
    pub mem_gb: u64,
    /// `--time`, minutes.
    pub time_minutes: u64,
    /// One comment line: where `mem_gb` and `time_minutes` come from.
    pub basis: String,
}

/// Bytes of a dataset held in memory (every split's features as f32; labels and ids are small).
pub fn dataset_bytes(shape: &DataShape) -> u64 {
    let per_clip = shape.text_len * shape.text_dim + shape.audio_len * shape.audio_dim + shape.video_len * shape.video_dim;
    4 * (shape.n_train + shape.n_valid + shape.n_test) as u64 * per_clip as u64
}

/// mmkd's estimate of what a training step of `row` keeps for its backward on `device`
/// (`train::memory`): on cuda the unfused attention, on flex the fused op with the maps a
/// distillation loss reads.
pub fn row_step_bytes(row: &RowSpec, shape: &DataShape, model: &ModelConfig, batch: usize, device: DeviceKind) -> u64 {
    let plain = burn::prelude::Device::flex();
    let net = match row {
        RowSpec::Teacher(kind) => build_teacher(*kind, shape, model, &plain),
        RowSpec::StudentNoKd(config) => build_student(*config, StudentStreams::Downsampled, shape, model, &plain),
        RowSpec::Distilled { config, method, .. } | RowSpec::Control { config, method, .. } => build_student(*config, method.student_streams(), shape, model, &plain),
    };
    let mapped: Vec<TransformerId> = match row {
        RowSpec::Distilled { config, level: crate::distill::Level::AttentionMap, .. } | RowSpec::Control { config, level: crate::distill::Level::AttentionMap, .. } => {
            crate::distill::distilled_pairs(*config).into_iter().map(|(_, s)| s).collect()
        }
        _ => Vec::new(),
    };
    let kept = |id: TransformerId| match device {
        DeviceKind::Cuda => AttentionKept::Unfused,
        DeviceKind::Flex => AttentionKept::Fused { map: mapped.contains(&id), dropout: crate::model::network::attention_dropout(model, id) > 0.0 },
    };
    step_bytes(&net, batch, model, &kept)
}

/// Upper bounds of one epoch's wall time on a 2-core CPU, seconds, for a training split of the
/// preset's size, used only when no dry run was measured (paper: bench/README's measured steps,
/// rounded up: teacher 3.3 h, student 1.6 h per epoch; smoke and small: generous).
fn fallback_epoch_secs(preset: Preset, teacher: bool) -> f64 {
    match (preset, teacher) {
        (Preset::Paper, true) => 4.0 * 3600.0,
        (Preset::Paper, false) => 2.0 * 3600.0,
        (Preset::Small, _) => 300.0,
        (Preset::Smoke, _) => 60.0,
    }
}

/// The time limit of GPU runs that no dry run has measured: 7 days, a common cluster maximum.
const UNMEASURED_GPU_LIMIT_MINUTES: u64 = 7 * 1440;

fn gb_ceil(bytes: f64) -> u64 {
    (bytes / 1e9).ceil().max(1.0) as u64
}

/// The requests of the arrays of `runs` (phases 0, 1, 2; empty phases left out). `measured`
/// holds dry-run reports by the row's slug.
pub fn requests(opts: &StudyOptions, runs: &[PlannedRun], shape: &DataShape, measured: &std::collections::BTreeMap<String, DryRunReport>) -> Vec<ArrayRequest> {
    let model = ModelConfig::for_preset(opts.preset);
    let recipe = TrainConfig::for_preset(opts.preset);
    let (gpus, cpus) = match opts.device {
        DeviceKind::Cuda => (1, 4),
        DeviceKind::Flex => (0, 8),
    };
    let data_gb = dataset_bytes(shape) as f64;
    let mut out = Vec::new();
    for (phase, name) in [(0, "data"), (1, "teachers and no-KD students"), (2, "distilled students")] {
        let in_phase: Vec<&PlannedRun> = runs.iter().filter(|r| r.phase == phase).collect();
        if in_phase.is_empty() {
            continue;
        }
        let (mut mem, mut secs, mut from_dry_run, mut estimated) = (0f64, 0f64, 0, 0);
        for run in &in_phase {
            let Some(row) = run.row else {
                // The data step: the generator holds the dataset in memory; the converter
                // streams through mapped pages (reclaimable). Both take minutes at MOSEI's size.
                mem = mem.max(2.0 * data_gb + 2e9);
                secs = secs.max(3600.0);
                continue;
            };
            let teacher = matches!(row, RowSpec::Teacher(_));
            let epochs = if teacher { opts.teacher_epochs.or(opts.epochs) } else { opts.epochs }.unwrap_or(recipe.epochs);
            match measured.get(&row.slug()) {
                Some(d) => {
                    from_dry_run += 1;
                    mem = mem.max(1.25 * d.peak_rss_bytes as f64);
                    let per_epoch = d.train_batches as f64 * d.median_step_s + d.valid_batches as f64 * d.eval_batch_s;
                    secs = secs.max(epochs as f64 * per_epoch + d.test_batches as f64 * d.eval_batch_s);
                }
                None => {
                    estimated += 1;
                    let step = match opts.device {
                        DeviceKind::Flex => row_step_bytes(&row, shape, &model, recipe.batch_size, opts.device) as f64,
                        DeviceKind::Cuda => 0.0, // the step lives in the GPU's memory
                    };
                    mem = mem.max(data_gb + step + 2e9);
                    let scale = shape.n_train as f64 / DataShape::for_preset(opts.preset).n_train.max(1) as f64;
                    secs = secs.max(epochs as f64 * fallback_epoch_secs(opts.preset, teacher) * scale);
                }
            }
        }
        // A margin over the estimate: a limit that is hit kills the run (it resumes, but the
        // array has to be resubmitted). A CPU bound says nothing about a GPU: unmeasured GPU
        // runs get a common cluster maximum instead of weeks.
        let mut time_minutes = ((secs * 1.5) / 60.0).ceil() as u64 + 15;
        let unmeasured_gpu = opts.device == DeviceKind::Cuda && estimated > 0 && phase > 0;
        if unmeasured_gpu {
            time_minutes = time_minutes.min(UNMEASURED_GPU_LIMIT_MINUTES);
        }
        let basis = match (from_dry_run, estimated) {
            _ if phase == 0 => "memory: twice the data in memory + 2 GB; time: 1 h".to_string(),
            (_, 0) => "memory: 1.25x the dry run's peak RSS; time: 1.5x the dry run's epoch time x epochs + 15 min".to_string(),
            (0, _) => "no dry run: memory = data in memory + mmkd's step estimate + 2 GB; time = epochs x a CPU upper bound per epoch (bench/README) x 1.5 + 15 min; run `mmkd study ... --dry-run` and plan again for measured limits".to_string(),
            _ => "partly from the dry run, partly estimated (rows without a dry run); run the dry run again for all rows".to_string(),
        };
        let basis = if unmeasured_gpu { format!("{basis}; on cuda at most {} days until a dry run on a GPU node measures it", UNMEASURED_GPU_LIMIT_MINUTES / 1440) } else { basis };
        // The data step computes nothing on a GPU.
        let (gpus, cpus) = if phase == 0 { (0, 2) } else { (gpus, cpus) };
        out.push(ArrayRequest { plan_file: format!("plan-{phase}.txt"), name, tasks: in_phase.len(), gpus, cpus, mem_gb: gb_ceil(mem), time_minutes, basis });
    }
    out
}

/// `--time` in Slurm's `D-HH:MM:SS`.
fn slurm_time(minutes: u64) -> String {
    format!("{}-{:02}:{:02}:00", minutes / 1440, (minutes % 1440) / 60, minutes % 60)
}

/// The script: one `sbatch --array` per request, each after the previous one succeeded
/// (`--dependency=afterok`), then the command that assembles the table.
pub fn script(out: &Path, requests: &[ArrayRequest]) -> String {
    let mut s = format!(
        r#"#!/usr/bin/env bash
# Submit the study in {out} as Slurm job arrays, each after the previous one succeeded.
# Each array task runs one line of a plan file (every line names its --device).
# Submit from a login node:   bash {out}/slurm.sh
# Add site options (partition, account) through SBATCH_* variables, e.g. SBATCH_PARTITION=gpu.
set -euo pipefail
cd "$(dirname "$0")"
submit() {{ # plan file, job name, dependency, then sbatch options
  local file=$1 name=$2 dep=$3; shift 3
  local n; n=$(wc -l < "$file")
  sbatch --parsable --job-name="$name" --array=1-"$n" ${{dep:+--dependency=afterok:$dep}} "$@" \
    --output=logs/%x-%A_%a.out --wrap "bash -c \"\$(sed -n \${{SLURM_ARRAY_TASK_ID}}p $file)\""
}}
mkdir -p logs
prev=""
"#,
        out = out.display()
    );
    for r in requests {
        s += &format!("# {}: {} run(s). {}\n", r.name, r.tasks, r.basis);
        let gres = if r.gpus > 0 { format!(" --gres=gpu:{}", r.gpus) } else { String::new() };
        let job = format!("mmkd-{}", r.plan_file.trim_end_matches(".txt"));
        s += &format!(
            "prev=$(submit {} {job} \"$prev\"{gres} --cpus-per-task={} --mem={}G --time={})\necho \"submitted {}: job $prev\"\n",
            r.plan_file,
            r.cpus,
            r.mem_gb,
            slurm_time(r.time_minutes),
            r.name
        );
    }
    s += &format!("echo \"when the last array has finished: mmkd study --collect {}\"\n", out.display());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::study::plan::{RowSet, StudyData, plan};

    fn options(device: DeviceKind) -> StudyOptions {
        StudyOptions {
            preset: Preset::Paper,
            seeds: vec![1, 2],
            out: std::path::PathBuf::from("/s"),
            epochs: None,
            data: StudyData::Pickle { file: std::path::PathBuf::from("/d/mosei.pkl") },
            rows: RowSet::C5Attention,
            teacher_seed: None,
            teachers: None,
            teacher_early_stop: None,
            controls: false,
            teacher_epochs: Some(10),
            teacher_branch_dropout: None,
            edam_orientation: Default::default(),
            device,
        }
    }

    fn measured(slug: &str, peak_gb: f64, step_s: f64) -> DryRunReport {
        DryRunReport {
            run: slug.into(),
            device: "cuda".into(),
            batch_size: 64,
            warmup_step_s: 9.0,
            step_s: vec![step_s, step_s],
            median_step_s: step_s,
            eval_batch_s: 0.5,
            train_batches: 256,
            valid_batches: 30,
            test_batches: 73,
            epochs: 100,
            estimated_run_s: 0.0,
            peak_rss_bytes: (peak_gb * 1e9) as u64,
            step_memory_estimate_bytes: 0,
        }
    }

    /// Limits from a dry run: memory 1.25x the largest peak of the array's runs, time 1.5x the
    /// longest run (its own epochs: the teachers' 10, the students' 100) + 15 min, by hand.
    #[test]
    fn requests_take_limits_from_the_dry_run() {
        let opts = options(DeviceKind::Cuda);
        let runs = plan(&opts);
        let shape = DataShape::for_preset(Preset::Paper);
        let m: std::collections::BTreeMap<String, DryRunReport> = [
            measured("teacher-complete", 8.0, 2.0),
            measured("student-c5-nokd", 4.0, 0.5),
            measured("student-c5-attention-map-crd", 5.0, 1.0),
            measured("student-c5-attention-map-edam-s", 6.0, 0.8),
            measured("student-c5-attention-map-edam-t", 5.5, 1.2),
        ]
        .into_iter()
        .map(|r| (r.run.clone(), r))
        .collect();
        let r = requests(&opts, &runs, &shape, &m);
        assert_eq!(r.iter().map(|r| r.plan_file.as_str()).collect::<Vec<_>>(), ["plan-0.txt", "plan-1.txt", "plan-2.txt"]);
        assert_eq!((r[0].gpus, r[0].cpus, r[0].tasks), (0, 2, 1), "the conversion needs no GPU");
        // Teachers (10 epochs of 256 x 2 s + 30 x 0.5 s, then 73 x 0.5 s) and no-KD students
        // (100 epochs of 256 x 0.5 s + 15 s, then 36.5 s): the student is longer.
        let (teacher, nokd) = (10.0 * (512.0 + 15.0) + 36.5, 100.0 * (128.0 + 15.0) + 36.5);
        assert!(nokd > teacher);
        assert_eq!((r[1].gpus, r[1].cpus, r[1].tasks, r[1].mem_gb), (1, 4, 4, 10), "1.25 x 8 GB");
        assert_eq!(r[1].time_minutes, (1.5 * nokd / 60.0_f64).ceil() as u64 + 15);
        let edam_t = 100.0 * (256.0 * 1.2 + 15.0) + 36.5;
        assert_eq!((r[2].tasks, r[2].mem_gb, r[2].time_minutes), (6, 8, (1.5 * edam_t / 60.0_f64).ceil() as u64 + 15), "1.25 x 6 GB; EDAM-T is the longest");
        assert!(r[2].basis.contains("dry run's peak"));
        let script = script(std::path::Path::new("/s"), &r);
        assert_eq!(script.matches("--gres=gpu:1").count(), 2);
        assert!(script.contains(&format!("--mem=8G --time={}", slurm_time(r[2].time_minutes))), "{script}");
    }

    /// Without a dry run: on flex the data in memory + the step estimate + 2 GB, and a CPU
    /// bound on the time; on cuda no step in host memory, and at most 7 days.
    #[test]
    fn requests_without_a_dry_run_say_they_are_estimates() {
        let shape = DataShape::for_preset(Preset::Paper);
        let none = std::collections::BTreeMap::new();
        let flex = options(DeviceKind::Flex);
        let r = requests(&flex, &plan(&flex), &shape, &none);
        let model = ModelConfig::for_preset(Preset::Paper);
        let teacher_step = row_step_bytes(&RowSpec::Teacher(crate::model::TeacherKind::Complete), &shape, &model, 64, DeviceKind::Flex);
        assert_eq!(r[1].mem_gb, gb_ceil(dataset_bytes(&shape) as f64 + teacher_step as f64 + 2e9), "the teacher's step is the largest of phase 1");
        assert_eq!((r[1].gpus, r[1].cpus), (0, 8));
        assert_eq!(r[1].time_minutes, (1.5 * 100.0 * 2.0 * 3600.0 / 60.0_f64).ceil() as u64 + 15, "students: 100 epochs x 2 h");
        assert!(r[1].basis.starts_with("no dry run"));
        let cuda = options(DeviceKind::Cuda);
        let r = requests(&cuda, &plan(&cuda), &shape, &none);
        assert_eq!(r[1].mem_gb, gb_ceil(dataset_bytes(&shape) as f64 + 2e9));
        assert_eq!(r[1].time_minutes, 7 * 1440);
        assert!(r[1].basis.contains("at most 7 days"), "{}", r[1].basis);
    }

    #[test]
    fn slurm_time_and_dataset_bytes() {
        assert_eq!(slurm_time(61), "0-01:01:00");
        assert_eq!(slurm_time(3 * 1440 + 5), "3-00:05:00");
        // MOSEI at the paper's lengths: 22,856 clips x (50 x 300 + 500 x 74 + 500 x 35) floats.
        assert_eq!(dataset_bytes(&DataShape::for_preset(Preset::Paper)), 4 * 22_856 * (15_000 + 37_000 + 17_500));
    }
}
