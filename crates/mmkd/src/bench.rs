//! `mmkd bench --case C`: time one case of the benchmark in this process and report its medians
//! and the process's peak resident memory as one JSON line. `bench/run.sh` runs every case in a
//! fresh process (so each peak is the case's own), alternating with the PyTorch reference
//! (`reference/bench.py`) at the same thread count, and writes the ratios.

use std::time::Instant;

use anyhow::Result;
use burn::module::Module;
use burn::prelude::*;
use serde::Serialize;

use crate::choice::Choice;
use crate::config::{DataShape, ModelConfig, Preset, TrainConfig};
use crate::data::Batch;
use crate::distill::{DistillConfig, Level, Method, Orientation};
use crate::model::{MultimodalNet, StudentConfig, StudentStreams, TeacherKind, build_student, build_teacher};
use crate::train::dry_run::median;
use crate::train::{SupervisedTask, TrainTask};

/// One measurement of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Case {
    /// Complete teacher: forward, cross-entropy, backward, global clipping, Adam.
    TeacherTrain,
    /// Config-5 student distilled with EDAM-S on the attention maps (the frozen teacher's
    /// forward included): forward, `CE + L_KD`, backward, clipping, Adam.
    StudentTrain,
    /// Complete teacher, inference (no autodiff, dropout off).
    TeacherInfer,
    /// Config-5 student, inference.
    StudentInfer,
    /// The machine's anchor: one f32 matrix product of `GEMM_SIZE` squared matrices through the
    /// backend (2 n^3 operations), on every thread the process may use.
    Gemm,
}
crate::choice::impl_choice!(Case {
    TeacherTrain => "teacher-train", "Complete teacher: forward, cross-entropy, backward, global clipping, Adam";
    StudentTrain => "student-train", "Config-5 student distilled with EDAM-S on the attention maps (the frozen teacher's forward included): forward, `CE + L_KD`, backward, clipping, Adam";
    TeacherInfer => "teacher-infer", "Complete teacher, inference (no autodiff, dropout off)";
    StudentInfer => "student-infer", "Config-5 student, inference";
    Gemm => "gemm", "The machine's anchor: one f32 matrix product of `GEMM_SIZE` squared matrices through the backend (2 n^3 operations), on every thread the process may use";
});

/// The side of the square matrices of `Case::Gemm` (1024: 2.1 GFLOP a step, large enough for
/// the backend's blocked kernel to reach its peak, small enough to time in a second).
pub const GEMM_SIZE: usize = 1024;

/// What one `mmkd bench` run measured.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    /// `mmkd`.
    pub implementation: &'static str,
    /// The case.
    pub case: Case,
    /// Preset of the shapes and the model.
    pub preset: &'static str,
    /// Clips per step.
    pub batch: usize,
    /// Worker threads (`RAYON_NUM_THREADS`, or every core).
    pub threads: usize,
    /// `fused` when attention that nobody probes took the fused op (the default on flex),
    /// `unfused` when `MMKD_FUSED_ATTENTION=0` turned it off.
    pub attention: &'static str,
    /// Whether training ran with Burn's balanced gradient checkpointing.
    pub gradient_checkpointing: bool,
    /// `flex` or `cuda`.
    pub device: &'static str,
    /// Median wall time of one step (ms), after one untimed warm-up step.
    pub median_ms: f64,
    /// Every timed step (ms).
    pub times_ms: Vec<f64>,
    /// Peak resident memory of this process (MB, `getrusage`), the case's own when run alone.
    pub peak_rss_mb: f64,
    /// Floating-point operations of one step (matrix products and convolutions, counted from the
    /// networks' shapes: `model::params::forward_flops`; a training step as three forward passes).
    pub flops_per_step: f64,
    /// `flops_per_step` over the median step time, in GFLOP/s.
    pub gflops: f64,
    /// `gflops` over the GEMM peak given in `MMKD_PEAK_GFLOPS` (bench/run.sh measures it first
    /// with `--case gemm`); absent without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction_of_peak: Option<f64>,
}

/// Floating-point operations of one step of `case` at `batch` clips.
pub fn flops_per_step(case: Case, preset: Preset, batch: usize) -> f64 {
    let device = Device::flex();
    let shape = DataShape::for_preset(preset);
    let model = ModelConfig::for_preset(preset);
    let teacher = || build_teacher(TeacherKind::Complete, &shape, &model, &device);
    let student = || build_student(StudentConfig::C5, StudentStreams::Downsampled, &shape, &model, &device);
    let forward = crate::model::params::forward_flops;
    match case {
        Case::Gemm => 2.0 * (GEMM_SIZE as f64).powi(3),
        Case::TeacherInfer => forward(&teacher(), batch, None),
        Case::StudentInfer => forward(&student(), batch, None),
        Case::TeacherTrain => 3.0 * forward(&teacher(), batch, None),
        Case::StudentTrain => {
            // The frozen teacher runs only the transformers it is distilled from, forward only.
            let taught: Vec<_> = crate::distill::distilled_pairs(StudentConfig::C5).into_iter().map(|(_, t)| t).collect();
            3.0 * forward(&student(), batch, None) + forward(&teacher(), batch, Some(&taught))
        }
    }
}

fn peak_rss_mb() -> f64 {
    // SAFETY: getrusage writes into the struct we pass and nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return f64::NAN;
    }
    usage.ru_maxrss as f64 / 1024.0 // kB on Linux
}

/// A batch of `batch` synthetic clips at the preset's shapes, on `device`.
fn batch_of(preset: Preset, batch: usize, device: &Device) -> (DataShape, Batch) {
    let shape = DataShape { n_train: batch, n_valid: 1, n_test: 1, ..DataShape::for_preset(preset) };
    let (data, _) = crate::data::synth::generate(preset, 0, &shape, &Default::default());
    let rows: Vec<usize> = (0..batch).collect();
    let b = data.train.batch(&shape, &rows, device);
    (shape, b)
}

/// Time training steps of `task` on one batch: the step `fit` takes (loss, backward, global
/// clipping, Adam).
fn time_training<T: TrainTask>(mut task: T, batch: &Batch, device: &Device, train: &TrainConfig, time: &mut dyn FnMut(&mut dyn FnMut() -> Result<()>) -> Result<()>) -> Result<()> {
    let mut model = task.init_model(device, batch)?;
    let mut optim = crate::train::step::adam(train);
    time(&mut || {
        let step = crate::train::step::loss_and_gradients(&mut task, &model, batch, train.step_rows_per_part())?;
        model = crate::train::step::apply_gradients(model.clone(), &mut optim, step.grads, train.lr, train.grad_clip).0;
        Ok(())
    })
}

/// Time `steps` repetitions of `case` after one warm-up.
pub fn run_case(case: Case, preset: Preset, batch: usize, steps: usize, gradient_checkpointing: bool, device: &Device) -> Result<BenchResult> {
    let model = ModelConfig::for_preset(preset);
    let train = TrainConfig { gradient_checkpointing, ..TrainConfig::for_preset(preset) };
    let plain = device.clone();
    // Seeded as training is, so that dropout masks take the path training takes
    // (`model::dropout`'s mirror on flex) and every run draws the same numbers.
    crate::model::dropout::seed(&plain, 0);
    let mut times = Vec::new();
    let mut time = |f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        f()?; // warm-up: allocations, kernel selection
        for _ in 0..steps.max(1) {
            let t = Instant::now();
            f()?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok(())
    };
    match case {
        Case::Gemm => {
            let a = Tensor::<2>::random([GEMM_SIZE, GEMM_SIZE], burn::tensor::Distribution::Uniform(-1.0, 1.0), &plain);
            let b = Tensor::<2>::random([GEMM_SIZE, GEMM_SIZE], burn::tensor::Distribution::Uniform(-1.0, 1.0), &plain);
            time(&mut || {
                // Reading one number back waits for the product.
                let _: f32 = a.clone().matmul(b.clone()).slice([0..1, 0..1]).into_scalar();
                Ok(())
            })?;
        }
        Case::TeacherInfer | Case::StudentInfer => {
            let (shape, b) = batch_of(preset, batch, &plain);
            let net: MultimodalNet = if case == Case::TeacherInfer {
                build_teacher(TeacherKind::Complete, &shape, &model, &plain)
            } else {
                build_student(StudentConfig::C5, StudentStreams::Downsampled, &shape, &model, &plain)
            };
            time(&mut || {
                // Reading the logits back waits for the device (a GPU queues its work).
                // As evaluation runs it: in parts on flex (`model::parts`).
                let logits = crate::model::parts::logits_in_parts(&net, &b.input, crate::model::parts::INFERENCE_ROWS_PER_PART);
                let _: Vec<f32> = logits.into_data().try_to_vec().map_err(|e| anyhow::anyhow!("{e:?}"))?;
                Ok(())
            })?;
        }
        Case::TeacherTrain => {
            let ad = train.autodiff_device(&plain);
            let (shape, b) = batch_of(preset, batch, &ad);
            let (shape2, model2) = (shape.clone(), model.clone());
            let task = SupervisedTask { build: Box::new(move |d: &Device| build_teacher(TeacherKind::Complete, &shape2, &model2, d)) };
            time_training(task, &b, &ad, &train, &mut time)?;
        }
        Case::StudentTrain => {
            let ad = train.autodiff_device(&plain);
            let (shape, b) = batch_of(preset, batch, &ad);
            let teacher = build_teacher(TeacherKind::Complete, &shape, &model, &plain).valid();
            let cfg = DistillConfig {
                teacher_run: std::path::PathBuf::new(),
                level: Level::AttentionMap,
                method: Method::EdamS,
                alpha: 1.0,
                beta: 0.8,
                temperature: 1.0,
                orientation: Orientation::Literal,
                teacher_signal: Default::default(),
            };
            let (shape2, model2) = (shape.clone(), model.clone());
            let build = Box::new(move |d: &Device| build_student(StudentConfig::C5, StudentStreams::Downsampled, &shape2, &model2, d));
            let task = crate::distill::DistillTask::new(cfg, teacher, crate::distill::distilled_pairs(StudentConfig::C5), build, batch, 1, plain.clone());
            time_training(task, &b, &ad, &train, &mut time)?;
        }
    }
    let flops = flops_per_step(case, preset, batch);
    let gflops = flops / (median(&times) / 1e3) / 1e9;
    let threads = std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let attention = if crate::model::fused_attention::enabled_for(&plain) { "fused" } else { "unfused" };
    Ok(BenchResult {
        implementation: "mmkd",
        case,
        preset: preset.name(),
        batch,
        threads,
        attention,
        gradient_checkpointing: train.gradient_checkpointing,
        device: if crate::model::fused_attention::supported(&plain) { "flex" } else { "cuda" },
        median_ms: median(&times),
        flops_per_step: flops,
        gflops,
        fraction_of_peak: std::env::var("MMKD_PEAK_GFLOPS").ok().and_then(|v| v.parse::<f64>().ok()).filter(|p| *p > 0.0).map(|p| gflops / p),
        times_ms: times,
        peak_rss_mb: peak_rss_mb(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_runs_on_the_smoke_preset_and_reports_its_steps() {
        for case in [Case::TeacherTrain, Case::StudentTrain, Case::TeacherInfer, Case::StudentInfer, Case::Gemm] {
            let r = run_case(case, Preset::Smoke, 2, 2, false, &Device::flex()).unwrap();
            assert_eq!(r.times_ms.len(), 2, "{case:?}");
            assert!(r.median_ms > 0.0 && r.peak_rss_mb > 1.0, "{r:?}");
            assert!(r.flops_per_step > 0.0 && (r.gflops - r.flops_per_step / r.median_ms / 1e6).abs() < 1e-9 * r.gflops.max(1.0), "{r:?}");
        }
        // Training counts three forward passes; the distilled student adds its teacher's traces.
        let infer = flops_per_step(Case::StudentInfer, Preset::Smoke, 4);
        assert!(flops_per_step(Case::StudentTrain, Preset::Smoke, 4) > 3.0 * infer);
        assert_eq!(flops_per_step(Case::TeacherTrain, Preset::Smoke, 4), 3.0 * flops_per_step(Case::TeacherInfer, Preset::Smoke, 4));
        assert_eq!(flops_per_step(Case::Gemm, Preset::Smoke, 1), 2.0 * 1024f64.powi(3));
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
