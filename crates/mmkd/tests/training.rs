//! Training behaviour: checkpoints round-trip, a resumed run matches an uninterrupted one,
//! distillation trains the student and never the teacher.

use std::path::PathBuf;

use burn::module::Module;
use burn::prelude::*;
use mmkd::config::{DataShape, ModelConfig, Preset, TrainConfig};
use mmkd::data::Dataset;
use mmkd::data::synth::{SynthParams, generate};
use mmkd::model::{StudentStreams, TeacherKind};
use mmkd::train::run::EpochLog;
use mmkd::train::{RunConfig, RunRole, SupervisedTask, checkpoint, fit};

/// The backend's random generator is process-wide: tests that seed it must not interleave.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mmkd-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tiny_data() -> Dataset {
    let shape = DataShape { n_train: 48, n_valid: 16, n_test: 16, ..DataShape::for_preset(Preset::Smoke) };
    generate(Preset::Smoke, 3, &shape, &SynthParams::default()).0
}

fn config(role: RunRole, data: &Dataset, epochs: usize) -> RunConfig {
    RunConfig {
        role,
        preset: Preset::Smoke,
        data: PathBuf::from("unused"),
        dataset: data.name.clone(),
        shape: data.shape.clone(),
        model: ModelConfig::for_preset(Preset::Smoke),
        train: TrainConfig { epochs, batch_size: 16, ..TrainConfig::for_preset(Preset::Smoke) },
    }
}

fn task(cfg: &RunConfig) -> SupervisedTask {
    let c = cfg.clone();
    SupervisedTask { build: Box::new(move |d: &Device| c.build_net(d)) }
}

/// Tensor name -> raw bytes of a safetensors file (the header's key order is not fixed).
fn tensors(path: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors().into_iter().map(|(name, view)| (name, view.data().to_vec())).collect()
}

fn metrics(run: &std::path::Path) -> Vec<EpochLog> {
    std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn safetensors_checkpoint_round_trip_is_exact() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = tiny_data();
    let cfg = config(RunRole::Teacher { teacher: TeacherKind::Complete }, &data, 1);
    let device = Device::flex();
    device.seed(5);
    let net = cfg.build_net(&device);
    let dir = tempdir("ckpt");
    let path = dir.join("w.safetensors");
    checkpoint::save_safetensors(&net, &path).unwrap();
    device.seed(6);
    let fresh = cfg.build_net(&device);
    let loaded = checkpoint::load_safetensors(fresh, &path).unwrap();
    let batch = data.test.batch(&data.shape, &[0, 1, 2], &device);
    let a: Vec<f32> = net.forward(&batch, &Default::default()).logits.into_data().try_to_vec().unwrap();
    let b: Vec<f32> = loaded.forward(&batch, &Default::default()).logits.into_data().try_to_vec().unwrap();
    assert_eq!(a, b);
    assert_eq!(net.num_params(), loaded.num_params());
    // A student checkpoint does not fit a teacher: a clear error, not a panic.
    let student = mmkd::model::build_student(5, StudentStreams::Downsampled, &data.shape, &cfg.model, &device);
    let err = checkpoint::load_safetensors(student, &path).unwrap_err();
    assert!(err.to_string().contains("does not fit this architecture"), "{err}");
}

#[test]
fn resumed_run_gives_the_same_next_epoch_metrics() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = tiny_data();
    let device = Device::flex();
    let role = RunRole::Student { config: 5, streams: StudentStreams::Downsampled, distill: None };

    let full = tempdir("full");
    let cfg3 = config(role.clone(), &data, 3);
    fit(&full, &cfg3, &data, &mut task(&cfg3), false, &device).unwrap();

    let part = tempdir("part");
    let cfg2 = config(role, &data, 2);
    fit(&part, &cfg2, &data, &mut task(&cfg2), false, &device).unwrap();
    // Continue to 3 epochs, as a user would after an interruption.
    fit(&part, &cfg3, &data, &mut task(&cfg3), true, &device).unwrap();

    let (a, b) = (metrics(&full), metrics(&part));
    assert_eq!(a.len(), 3);
    assert_eq!(b.len(), 3);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.epoch, y.epoch);
        assert!((x.train_loss - y.train_loss).abs() < 1e-6, "epoch {}: {} vs {}", x.epoch, x.train_loss, y.train_loss);
        assert!((x.val_loss - y.val_loss).abs() < 1e-6, "epoch {}: {} vs {}", x.epoch, x.val_loss, y.val_loss);
        assert_eq!(x.lr, y.lr);
    }
    for f in ["config.json", "metrics.jsonl", "best.safetensors", "last.safetensors", "eval.json", "resume.json"] {
        assert!(part.join(f).exists(), "{f} missing");
    }
    // Starting again in a used run directory without --resume is refused.
    let err = fit(&part, &cfg3, &data, &mut task(&cfg3), false, &device).unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");
}

#[test]
fn distillation_trains_the_student_and_never_the_teacher() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use mmkd::distill::{DistillConfig, DistillTask, Level, Method, Orientation, distilled_pairs};
    let data = tiny_data();
    let device = Device::flex();
    device.seed(21);
    let tcfg = config(RunRole::Teacher { teacher: TeacherKind::Complete }, &data, 1);
    let teacher = tcfg.build_net(&device);
    let dir = tempdir("frozen");
    let before_path = dir.join("teacher.safetensors");
    checkpoint::save_safetensors(&teacher, &before_path).unwrap();
    let before = tensors(&before_path);

    for (level, method) in [(Level::AttentionMap, Method::EdamS), (Level::Penultimate, Method::Crd), (Level::AttentionMap, Method::EdamT), (Level::PostAttention, Method::Crd)] {
        let dcfg = DistillConfig { teacher_run: dir.clone(), level, method, alpha: 1.0, beta: 1.0, temperature: 2.0, orientation: Orientation::Conventional };
        let streams = if method == Method::EdamT { StudentStreams::FullLength } else { StudentStreams::Downsampled };
        let scfg = config(RunRole::Student { config: 5, streams, distill: Some(dcfg.clone()) }, &data, 1);
        let build = scfg.clone();
        let mut task = DistillTask::new(dcfg, teacher.clone(), distilled_pairs(5), Box::new(move |d: &Device| build.build_net(d)), data.train.len(), 1, device.clone());
        let run = dir.join(format!("{}-{}", level.name(), method.name()));
        fit(&run, &scfg, &data, &mut task, false, &device).unwrap();
        // The teacher inside the task is bit-identical to what it was before training.
        let after_path = dir.join("teacher-after.safetensors");
        checkpoint::save_safetensors(&task.teacher, &after_path).unwrap();
        let after = tensors(&after_path);
        assert_eq!(after.len(), before.len());
        assert!(after == before, "{level:?}/{method:?} changed the teacher");
        // The KD term was computed and logged, and the student moved away from its initialisation.
        let log = &metrics(&run)[0];
        let kd = log.train_parts.iter().find(|(n, _)| n == "kd").map(|(_, v)| *v).unwrap();
        assert!(kd.is_finite() && kd != 0.0, "{level:?}/{method:?}: kd = {kd}");
        device.seed(scfg.train.seed);
        let init = scfg.build_net(&device);
        let trained = checkpoint::load_safetensors(scfg.build_net(&device), &run.join("last.safetensors")).unwrap();
        let b = data.test.batch(&data.shape, &[0, 1], &device);
        let x: Vec<f32> = init.forward(&b, &Default::default()).logits.into_data().try_to_vec().unwrap();
        let y: Vec<f32> = trained.forward(&b, &Default::default()).logits.into_data().try_to_vec().unwrap();
        assert_ne!(x, y, "the student must train");
    }
}
