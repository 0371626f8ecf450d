//! Training behaviour: checkpoints round-trip, a resumed run matches an uninterrupted one,
//! distillation trains the student and never the teacher.

use std::path::PathBuf;

use burn::module::Module;
use burn::prelude::*;
use mmkd::choice::Choice;
use mmkd::config::{DataShape, ModelConfig, Preset, TrainConfig};
use mmkd::data::Dataset;
use mmkd::data::synth::{SynthParams, generate};
use mmkd::model::{StudentStreams, TeacherKind};
use mmkd::run::EpochLog;
use mmkd::run::weights;
use mmkd::run::{RunConfig, RunRole};
use mmkd::train::{SupervisedTask, fit};

/// The backend's random generator is process-wide: tests that seed it must not interleave.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn tempdir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("mmkd-it-{tag}-")).tempdir().unwrap()
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
        dataset_fingerprint: None,
        device: None,
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
    mmkd::model::dropout::seed(&device, 5);
    let net = cfg.build_net(&device);
    let dir_guard = tempdir("ckpt");
    let dir = dir_guard.path();
    let path = dir.join("w.safetensors");
    weights::save_safetensors(&net, &path).unwrap();
    mmkd::model::dropout::seed(&device, 6);
    let fresh = cfg.build_net(&device);
    let loaded = weights::load_safetensors(fresh, &path).unwrap();
    let batch = data.test.batch(&data.shape, &[0, 1, 2], &device);
    let a: Vec<f32> = net.forward(&batch.input, &Default::default()).logits.into_data().try_to_vec().unwrap();
    let b: Vec<f32> = loaded.forward(&batch.input, &Default::default()).logits.into_data().try_to_vec().unwrap();
    assert_eq!(a, b);
    assert_eq!(net.num_params(), loaded.num_params());
    // A student checkpoint does not fit a teacher: a clear error, not a panic.
    let student = mmkd::model::build_student(mmkd::model::StudentConfig::C5, StudentStreams::Downsampled, &data.shape, &cfg.model, &device);
    let err = weights::load_safetensors(student, &path).unwrap_err();
    assert!(err.to_string().contains("does not fit this architecture"), "{err}");
}

/// Dropout masks drawn by mmkd's mirror of flex's generator (`model::dropout`) and by Burn's
/// own sampler give the same training, bit for bit: a teacher (attention, residual, ReLU and
/// embedding dropout) trained both ways ends with identical weights.
#[test]
fn the_dropout_mirror_trains_exactly_as_burns_sampler() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = tiny_data();
    // In one piece, and in parts of 8 rows (batches of 16: two parts on two threads).
    for rows_per_part in [None, Some(8)] {
        let mut cfg = config(RunRole::Teacher { teacher: TeacherKind::Complete }, &data, 2);
        cfg.train.rows_per_part = rows_per_part;
        let model = &cfg.model;
        assert!(model.attn_dropout_text > 0.0 && model.res_dropout > 0.0 && model.relu_dropout > 0.0 && model.embed_dropout > 0.0, "the comparison needs active dropout");
        let device = Device::flex();
        let run = |mirror: bool| {
            mmkd::model::dropout::use_mirror(mirror);
            let dir = tempdir(if mirror { "mirror" } else { "burn" });
            fit(dir.path(), &cfg, &data, &mut task(&cfg), false, &device).unwrap();
            mmkd::model::dropout::use_mirror(true);
            (tensors(&dir.path().join("last.safetensors")), metrics(dir.path()))
        };
        let (burn_weights, burn_log) = run(false);
        let (mirror_weights, mirror_log) = run(true);
        assert_eq!(burn_weights.len(), mirror_weights.len());
        for (name, bytes) in &burn_weights {
            assert!(mirror_weights[name] == *bytes, "{name}: the mirror's training differs from Burn's (rows per part {rows_per_part:?})");
        }
        let losses = |log: &[EpochLog]| log.iter().map(|e| (e.train_loss, e.val_loss)).collect::<Vec<_>>();
        assert_eq!(losses(&burn_log), losses(&mirror_log), "rows per part {rows_per_part:?}");
    }
}

#[test]
fn resumed_run_gives_the_same_next_epoch_metrics() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = tiny_data();
    let device = Device::flex();
    let role = RunRole::Student { config: mmkd::model::StudentConfig::C5, streams: StudentStreams::Downsampled, distill: None };

    let full_guard = tempdir("full");
    let full = full_guard.path();
    let cfg3 = config(role.clone(), &data, 3);
    fit(full, &cfg3, &data, &mut task(&cfg3), false, &device).unwrap();

    let part_guard = tempdir("part");
    let part = part_guard.path();
    let cfg2 = config(role, &data, 2);
    fit(part, &cfg2, &data, &mut task(&cfg2), false, &device).unwrap();
    // Continue to 3 epochs, as a user would after an interruption.
    fit(part, &cfg3, &data, &mut task(&cfg3), true, &device).unwrap();

    let (a, b) = (metrics(full), metrics(part));
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
    let err = fit(part, &cfg3, &data, &mut task(&cfg3), false, &device).unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");
}

#[test]
fn distillation_trains_the_student_and_never_the_teacher() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use mmkd::distill::{DistillConfig, DistillTask, Level, Method, Orientation, distilled_pairs};
    let data = tiny_data();
    let device = Device::flex();
    mmkd::model::dropout::seed(&device, 21);
    let tcfg = config(RunRole::Teacher { teacher: TeacherKind::Complete }, &data, 1);
    let teacher = tcfg.build_net(&device);
    let dir_guard = tempdir("frozen");
    let dir = dir_guard.path();
    let before_path = dir.join("teacher.safetensors");
    weights::save_safetensors(&teacher, &before_path).unwrap();
    let before = tensors(&before_path);

    for (level, method) in [(Level::AttentionMap, Method::EdamS), (Level::Penultimate, Method::Crd), (Level::AttentionMap, Method::EdamT), (Level::PostAttention, Method::Crd)] {
        let dcfg = DistillConfig { teacher_run: dir.to_path_buf(), level, method, alpha: 1.0, beta: 1.0, temperature: 2.0, orientation: Orientation::Conventional, teacher_signal: Default::default() };
        let streams = if method == Method::EdamT { StudentStreams::FullLength } else { StudentStreams::Downsampled };
        let scfg = config(RunRole::Student { config: mmkd::model::StudentConfig::C5, streams, distill: Some(dcfg.clone()) }, &data, 1);
        let build = scfg.clone();
        let mut task =
            DistillTask::new(dcfg.clone(), teacher.clone(), distilled_pairs(mmkd::model::StudentConfig::C5), Box::new(move |d: &Device| build.build_net(d)), data.train.len(), 1, device.clone());
        let run = dir.join(format!("{}-{}", level.name(), method.name()));
        fit(&run, &scfg, &data, &mut task, false, &device).unwrap();
        // The teacher inside the task is bit-identical to what it was before training.
        let after_path = dir.join("teacher-after.safetensors");
        weights::save_safetensors(&task.teacher, &after_path).unwrap();
        let after = tensors(&after_path);
        assert_eq!(after.len(), before.len());
        assert!(after == before, "{level:?}/{method:?} changed the teacher");
        // The KD term was computed and logged, and the student moved away from its initialisation.
        let log = &metrics(&run)[0];
        let kd = log.train_parts.iter().find(|(n, _)| n == "kd").map(|(_, v)| *v).unwrap();
        assert!(kd.is_finite() && kd != 0.0, "{level:?}/{method:?}: kd = {kd}");
        // Against the same run with zero loss weights (its weights stay at initialisation; a
        // rebuilt network would not reproduce them, Burn initialises parameters lazily).
        let still = DistillConfig { alpha: 0.0, beta: 0.0, ..dcfg.clone() };
        let still_cfg = config(RunRole::Student { config: mmkd::model::StudentConfig::C5, streams, distill: Some(still.clone()) }, &data, 1);
        let build = still_cfg.clone();
        let mut still_task =
            DistillTask::new(still, teacher.clone(), distilled_pairs(mmkd::model::StudentConfig::C5), Box::new(move |d: &Device| build.build_net(d)), data.train.len(), 1, device.clone());
        let untrained = dir.join(format!("{}-{}-untrained", level.name(), method.name()));
        fit(&untrained, &still_cfg, &data, &mut still_task, false, &device).unwrap();
        assert_ne!(tensors(&run.join("last.safetensors")), tensors(&untrained.join("last.safetensors")), "{level:?}/{method:?}: the student must train");
    }
}

/// Issue 7, item 3: `plain_batch` cut the rows but not `lengths`, so EDAM-T with a key-padding
/// mask (lengths in the data, as MMSA pickles have) panicked in the encoder while sizing its
/// upsamplers from a one-row probe.
#[test]
fn edam_t_with_key_padding_mask_trains() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use mmkd::data::Lengths;
    use mmkd::distill::{DistillConfig, DistillTask, Level, Method, Orientation, distilled_pairs};
    let mut data = tiny_data();
    let s = data.shape.clone();
    for split in [&mut data.train, &mut data.valid, &mut data.test] {
        let n = split.len();
        let varied = |full: usize| (0..n).map(|i| full - (i % 3).min(full - 1)).collect::<Vec<_>>();
        split.lengths = Some(Lengths { text: varied(s.text_len), audio: varied(s.audio_len), video: varied(s.video_len), full: [s.video_len, s.audio_len, s.text_len] });
    }
    let device = Device::flex();
    mmkd::model::dropout::seed(&device, 4);
    let mut tcfg = config(RunRole::Teacher { teacher: TeacherKind::Complete }, &data, 1);
    tcfg.model.key_padding_mask = true;
    let teacher = tcfg.build_net(&device);
    let dir_guard = tempdir("keypad-edamt");
    let dir = dir_guard.path();
    let dcfg = DistillConfig {
        teacher_run: dir.to_path_buf(),
        level: Level::AttentionMap,
        method: Method::EdamT,
        alpha: 1.0,
        beta: 1.0,
        temperature: 1.0,
        orientation: Orientation::Conventional,
        teacher_signal: Default::default(),
    };
    let mut scfg = config(RunRole::Student { config: mmkd::model::StudentConfig::C5, streams: StudentStreams::FullLength, distill: Some(dcfg.clone()) }, &data, 1);
    scfg.model.key_padding_mask = true;
    let build = scfg.clone();
    let mut task = DistillTask::new(dcfg, teacher, distilled_pairs(mmkd::model::StudentConfig::C5), Box::new(move |d: &Device| build.build_net(d)), data.train.len(), 1, device.clone());
    let report = fit(&dir.join("run"), &scfg, &data, &mut task, false, &device).unwrap();
    assert!(report.acc7.is_finite());
    let kd = metrics(&dir.join("run"))[0].train_parts.iter().find(|(n, _)| n == "kd").unwrap().1;
    assert!(kd.is_finite() && kd > 0.0, "kd = {kd}");
}

fn distill_task(teacher: &mmkd::model::MultimodalNet, dcfg: &mmkd::distill::DistillConfig, scfg: &RunConfig, data: &Dataset, device: &Device) -> mmkd::distill::DistillTask {
    let build = scfg.clone();
    mmkd::distill::DistillTask::new(
        dcfg.clone(),
        teacher.clone(),
        mmkd::distill::distilled_pairs(mmkd::model::StudentConfig::C5),
        Box::new(move |d: &Device| build.build_net(d)),
        data.train.len(),
        scfg.train.seed,
        device.clone(),
    )
}

/// With alpha = 0 the loss is the KD term alone: attention-map distillation must move the
/// student's attention weights, and must leave untouched what it cannot reach (the head's
/// output layer, which only the cross-entropy trains, and the undistilled `V<-V`).
///
/// The untrained weights come from a second run with the same seed and alpha = beta = 0: its
/// gradient is zero, so Adam leaves every weight where initialisation put it. (Rebuilding the
/// network with the same seed does not reproduce them: Burn initialises parameters lazily, in
/// the order they are first used.)
#[test]
fn kd_term_alone_moves_the_student_where_it_reaches() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use mmkd::distill::{DistillConfig, Level, Method, Orientation};
    let data = tiny_data();
    let device = Device::flex();
    mmkd::model::dropout::seed(&device, 8);
    let teacher = config(RunRole::Teacher { teacher: TeacherKind::Complete }, &data, 1).build_net(&device);
    let dir_guard = tempdir("alpha0");
    let dir = dir_guard.path();
    let run = |beta: f64, name: &str| {
        let dcfg = DistillConfig {
            teacher_run: dir.to_path_buf(),
            level: Level::AttentionMap,
            method: Method::EdamS,
            alpha: 0.0,
            beta,
            temperature: 1.0,
            orientation: Orientation::Conventional,
            teacher_signal: Default::default(),
        };
        let scfg = config(RunRole::Student { config: mmkd::model::StudentConfig::C5, streams: StudentStreams::Downsampled, distill: Some(dcfg.clone()) }, &data, 1);
        fit(&dir.join(name), &scfg, &data, &mut distill_task(&teacher, &dcfg, &scfg, &data, &device), false, &device).unwrap();
        tensors(&dir.join(name).join("last.safetensors"))
    };
    let (untrained, kd_only) = (run(0.0, "untrained"), run(1.0, "kd-only"));
    let moved = |prefix: &str| untrained.iter().filter(|(k, _)| k.starts_with(prefix)).any(|(k, v)| kd_only[k] != *v);
    // Config 5's body is [V<-V, V<-L, V<-A]: flat.1 and flat.2 are the distilled pairs.
    assert!(moved("flat.2.layers.0.attention.query") && moved("flat.1.layers.0.attention.key"), "the KD term must train the distilled transformers' attention");
    assert!(moved("front.0.conv") && moved("front.1.conv"), "the KD gradient reaches the streams feeding the distilled maps");
    assert!(!moved("head."), "nothing but the cross-entropy reaches the head, and alpha = 0");
    assert!(!moved("flat.0."), "V<-V is not distilled in configuration 5 and must not move");
    assert!(!moved("flat.2.layers.0.ffn_norm") && !moved("flat.2.final_norm"), "a one-layer map does not depend on what follows the attention");
}

/// A distillation run resumed after its first epoch ends like an uninterrupted one, including
/// the state outside the student: CRD's memory banks, EDAM-T's learned maps.
#[test]
fn resumed_distillation_matches_an_uninterrupted_run() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use mmkd::distill::{DistillConfig, Level, Method, Orientation};
    let data = tiny_data();
    let device = Device::flex();
    mmkd::model::dropout::seed(&device, 9);
    let teacher = config(RunRole::Teacher { teacher: TeacherKind::Complete }, &data, 1).build_net(&device);
    let dir_guard = tempdir("resume-kd");
    let dir = dir_guard.path();
    for (level, method) in [(Level::Final, Method::Crd), (Level::AttentionMap, Method::EdamT)] {
        let dcfg = DistillConfig { teacher_run: dir.to_path_buf(), level, method, alpha: 1.0, beta: 1.0, temperature: 1.0, orientation: Orientation::Conventional, teacher_signal: Default::default() };
        let streams = if method == Method::EdamT { StudentStreams::FullLength } else { StudentStreams::Downsampled };
        let role = RunRole::Student { config: mmkd::model::StudentConfig::C5, streams, distill: Some(dcfg.clone()) };
        let (cfg2, cfg3) = (config(role.clone(), &data, 2), config(role, &data, 3));
        let full = dir.join(format!("{}-full", method.name()));
        fit(&full, &cfg3, &data, &mut distill_task(&teacher, &dcfg, &cfg3, &data, &device), false, &device).unwrap();
        let part = dir.join(format!("{}-part", method.name()));
        fit(&part, &cfg2, &data, &mut distill_task(&teacher, &dcfg, &cfg2, &data, &device), false, &device).unwrap();
        fit(&part, &cfg3, &data, &mut distill_task(&teacher, &dcfg, &cfg3, &data, &device), true, &device).unwrap();
        let (a, b) = (metrics(&full), metrics(&part));
        assert_eq!((a.len(), b.len()), (3, 3));
        for (x, y) in a.iter().zip(&b) {
            assert!((x.train_loss - y.train_loss).abs() < 1e-6, "{}: epoch {}: {} vs {}", method.name(), x.epoch, x.train_loss, y.train_loss);
            assert_eq!(x.train_parts.len(), y.train_parts.len());
            for ((n, u), (_, v)) in x.train_parts.iter().zip(&y.train_parts) {
                assert!((u - v).abs() < 1e-6, "{}: epoch {} {n}: {u} vs {v}", method.name(), x.epoch);
            }
            assert!((x.val_loss - y.val_loss).abs() < 1e-6);
        }
        assert_eq!(tensors(&full.join("last.safetensors")), tensors(&part.join("last.safetensors")), "{}: final weights", method.name());
    }
}

/// Every parameter's gradient of every tensor, in visiting order.
struct CollectGrads<'a> {
    grads: &'a burn::optim::GradientsParams,
    out: Vec<Vec<f32>>,
}

impl burn::module::ModuleVisitor for CollectGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<burn::prelude::Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.out.push(g.into_data().try_to_vec::<f32>().unwrap());
        }
    }
}

/// Every parameter gradient `model` has in `grads`, tensor by tensor in visiting order.
fn gradients_of<M: Module>(model: &M, grads: &burn::optim::GradientsParams) -> Vec<Vec<f32>> {
    let mut visitor = CollectGrads { grads, out: Vec::new() };
    model.visit(&mut visitor);
    visitor.out
}

/// Two gradient sets agree tensor by tensor, element by element:
/// `|a - b| <= 1e-5 * max(|a|, |b|) + 1e-7`.
fn assert_same_gradients(what: &str, a: &[Vec<f32>], b: &[Vec<f32>]) {
    assert_eq!(a.len(), b.len(), "{what}: gradient tensors");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.len(), y.len(), "{what}: tensor {i}");
        for (j, (u, v)) in x.iter().zip(y).enumerate() {
            assert!(u.is_finite() && (u - v).abs() <= 1e-5 * u.abs().max(v.abs()) + 1e-7, "{what}: tensor {i}[{j}]: {u} vs {v}");
        }
    }
}

/// Whether two gradient sets differ somewhere beyond `assert_same_gradients`' tolerance.
fn gradients_differ(a: &[Vec<f32>], b: &[Vec<f32>]) -> bool {
    a.iter().zip(b).any(|(x, y)| x.iter().zip(y).any(|(u, v)| (u - v).abs() > 1e-5 * u.abs().max(v.abs()) + 1e-7))
}

/// The gradients are worth comparing: (nearly) every parameter tensor has some non-zero element.
fn assert_mostly_nonzero(what: &str, grads: &[Vec<f32>]) {
    let nonzero = grads.iter().filter(|g| g.iter().any(|&x| x != 0.0)).count();
    assert!(grads.len() > 20 && nonzero * 10 >= grads.len() * 9, "{what}: only {nonzero} of {} gradient tensors are non-zero", grads.len());
}

/// `--gradient-checkpointing` (`TrainConfig::autodiff_device`: Burn's balanced checkpointing)
/// recomputes activations in the backward instead of keeping them; the gradients must be the
/// same, element by element up to float rounding, with dropout on (the same seed on both
/// devices: a recomputed forward must not draw new masks). The same weights on both devices come
/// from one weight file. The teacher under cross-entropy, and the config-5 student distilled at
/// the attention-map level (EDAM-S: the fused attention with the map, and its backward). A third
/// run with other dropout masks shows the comparison can fail.
#[test]
fn gradient_checkpointing_gives_the_same_gradients() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use burn::tensor::GradientCheckpointingStrategy as Strategy;
    use mmkd::distill::{DistillConfig, Level, Method, Orientation};
    use mmkd::train::TrainTask;
    let data = tiny_data();
    let rows: Vec<usize> = (0..16).collect();
    let dir_guard = tempdir("ckpt-grads");
    let dir = dir_guard.path();
    let plain = Device::flex();
    mmkd::model::dropout::seed(&plain, 11);
    let tcfg = config(RunRole::Teacher { teacher: TeacherKind::Complete }, &data, 1);
    let teacher_path = dir.join("teacher.safetensors");
    weights::save_safetensors(&tcfg.build_net(&plain), &teacher_path).unwrap();
    let dcfg = DistillConfig {
        teacher_run: dir.to_path_buf(),
        level: Level::AttentionMap,
        method: Method::EdamS,
        alpha: 1.0,
        beta: 1.0,
        temperature: 2.0,
        orientation: Orientation::Conventional,
        teacher_signal: Default::default(),
    };
    let scfg = config(RunRole::Student { config: mmkd::model::StudentConfig::C5, streams: StudentStreams::Downsampled, distill: Some(dcfg.clone()) }, &data, 1);
    let student_path = dir.join("student.safetensors");
    weights::save_safetensors(&scfg.build_net(&plain), &student_path).unwrap();
    assert!(scfg.model.attn_dropout_text > 0.0 && scfg.model.embed_dropout > 0.0 && scfg.model.res_dropout > 0.0, "dropout must be on");

    // The teacher on its own, under cross-entropy.
    let teacher_grads = |checkpointing: bool, dropout_seed: u64| -> (f32, Vec<Vec<f32>>) {
        let mut cfg = tcfg.clone();
        cfg.train.gradient_checkpointing = checkpointing;
        let ad = cfg.train.autodiff_device(&plain);
        assert_eq!(ad.gradient_checkpointing_strategy(), Some(if checkpointing { Strategy::Balanced } else { Strategy::Disabled }));
        let net = weights::load_safetensors(cfg.build_net(&ad), &teacher_path).unwrap();
        let batch = data.train.batch(&data.shape, &rows, &ad);
        mmkd::model::dropout::seed(&ad, dropout_seed);
        let logits = net.forward(&batch.input, &mmkd::model::TraceRequest::none()).logits;
        let loss = mmkd::eval::inference::cross_entropy(logits, batch.classes.clone());
        let value: f32 = loss.clone().into_scalar();
        (value, gradients_of(&net, &burn::optim::GradientsParams::from_grads(loss.backward(), &net)))
    };
    let (loss_plain, plain_grads) = teacher_grads(false, 12);
    let (loss_ckpt, ckpt_grads) = teacher_grads(true, 12);
    assert_eq!(loss_plain, loss_ckpt, "teacher: the same forward");
    assert_mostly_nonzero("teacher", &plain_grads);
    assert_same_gradients("teacher", &plain_grads, &ckpt_grads);
    let (_, other_masks) = teacher_grads(true, 13);
    assert!(gradients_differ(&plain_grads, &other_masks), "teacher: other dropout masks must give other gradients");

    // The distilled student: alpha * CE + beta * EDAM-S on the maps of V<-A and V<-L at t = 2,
    // the frozen teacher on the plain device.
    let student_grads = |checkpointing: bool, dropout_seed: u64| -> (f32, Vec<Vec<f32>>) {
        let mut cfg = scfg.clone();
        cfg.train.gradient_checkpointing = checkpointing;
        let ad = cfg.train.autodiff_device(&plain);
        assert_eq!(ad.gradient_checkpointing_strategy(), Some(if checkpointing { Strategy::Balanced } else { Strategy::Disabled }));
        let teacher = weights::load_safetensors(tcfg.build_net(&plain), &teacher_path).unwrap();
        let mut task = distill_task(&teacher, &dcfg, &cfg, &data, &plain);
        let batch = data.train.batch(&data.shape, &rows, &ad);
        let mut model = task.init_with(&ad, &batch).unwrap();
        model.student = weights::load_safetensors(model.student, &student_path).unwrap();
        mmkd::model::dropout::seed(&ad, dropout_seed);
        let (loss, parts) = task.train_loss(&model, &batch).unwrap();
        let kd = parts.iter().find(|(n, _)| n == "kd").unwrap().1;
        assert!(kd.is_finite() && kd > 0.0, "kd = {kd}");
        let value: f32 = loss.clone().into_scalar();
        (value, gradients_of(&model, &burn::optim::GradientsParams::from_grads(loss.backward(), &model)))
    };
    let (loss_plain, plain_grads) = student_grads(false, 14);
    let (loss_ckpt, ckpt_grads) = student_grads(true, 14);
    assert_eq!(loss_plain, loss_ckpt, "student: the same forward");
    assert_mostly_nonzero("student", &plain_grads);
    assert_same_gradients("student", &plain_grads, &ckpt_grads);
    let (_, other_masks) = student_grads(true, 15);
    assert!(gradients_differ(&plain_grads, &other_masks), "student: other dropout masks must give other gradients");
}

/// Every gradient of `model` in `grads`, by parameter, as f32 vectors.
fn gradient_values<M: Module>(model: &M, grads: &burn::optim::GradientsParams) -> Vec<Vec<f32>> {
    struct Collect<'a>(&'a burn::optim::GradientsParams, Vec<Vec<f32>>);
    impl burn::module::ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            if let Some(g) = self.0.get::<D>(param.id) {
                self.1.push(g.into_data().try_to_vec::<f32>().unwrap());
            }
        }
    }
    let mut c = Collect(grads, Vec::new());
    model.visit(&mut c);
    c.1
}

/// A training step in parts (`train::step::loss_and_gradients`, each part on its own thread
/// with the whole batch's dropout masks) gives the loss and the gradients of the batch in one
/// piece, up to the rounding of sums taken in another order: for a teacher (cross-entropy) and
/// an EDAM-S student (cross-entropy plus the map term, its frozen teacher on each part's rows).
/// A CRD step (its negatives are other rows) stays whole.
#[test]
fn a_step_in_parts_gives_the_whole_batchs_loss_and_gradients() {
    use mmkd::distill::{DistillConfig, DistillTask, Level, Method, Orientation};
    use mmkd::train::TrainTask;
    use mmkd::train::step::loss_and_gradients;
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = tiny_data();
    let cfg = config(RunRole::Teacher { teacher: TeacherKind::Complete }, &data, 1);
    let plain = Device::flex();
    let ad = plain.clone().autodiff();
    let batch = data.train.batch(&data.shape, &(0..12).collect::<Vec<_>>(), &ad);

    fn compare<T: TrainTask>(task: &mut T, model: &T::Model, batch: &mmkd::data::Batch, device: &Device, what: &str) -> usize {
        mmkd::model::dropout::seed(device, 3);
        let whole = loss_and_gradients(task, model, batch, None).unwrap();
        mmkd::model::dropout::seed(device, 3);
        // 12 rows at 5 per part: three parts of 4.
        let parts = loss_and_gradients(task, model, batch, Some(5)).unwrap();
        assert_eq!((whole.pieces, parts.pieces), (1, 3), "{what}: the step ran whole, then in three parts");
        assert!((whole.value - parts.value).abs() <= 1e-6 * whole.value.abs().max(1.0), "{what}: loss {} whole vs {} in parts", whole.value, parts.value);
        for ((name, a), (_, b)) in whole.parts.iter().zip(&parts.parts) {
            assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "{what}: {name} {a} vs {b}");
        }
        let (gw, gp) = (gradient_values(model, &whole.grads), gradient_values(model, &parts.grads));
        assert_eq!(gw.len(), gp.len(), "{what}: the same parameters have gradients");
        for (i, (a, b)) in gw.iter().zip(&gp).enumerate() {
            // Relative to the parameter's largest gradient; a floor for parameters whose
            // gradients are all close to zero (rounding there is of the order of 1e-10).
            let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(worst <= 1e-4 * scale + 1e-8, "{what}: parameter {i}: largest difference {worst} against largest gradient {scale}");
        }
        assert!(whole.value > 0.0 && gw.iter().flatten().any(|&g| g != 0.0), "{what}: a real loss and real gradients");
        gw.len()
    }

    // The teacher: initialised by a first forward pass (lazily initialised parameters keep a
    // step whole, see `model::dropout`).
    let mut teacher_task = task(&cfg);
    let teacher = teacher_task.init_model(&ad, &batch).unwrap();
    let _ = teacher.forward(&batch.input, &Default::default());
    assert!(mmkd::model::dropout::all_initialised(&teacher));
    assert!(compare(&mut teacher_task, &teacher, &batch, &ad, "teacher") > 10);

    // An EDAM-S student of configuration 5, taught by a (random) teacher.
    let frozen = cfg.build_net(&plain).valid();
    let student_cfg = config(RunRole::Student { config: mmkd::model::StudentConfig::C5, streams: StudentStreams::Downsampled, distill: None }, &data, 1);
    let distill = |method| DistillConfig {
        teacher_run: PathBuf::new(),
        level: Level::AttentionMap,
        method,
        alpha: 1.0,
        beta: 0.8,
        temperature: 1.0,
        orientation: Orientation::Literal,
        teacher_signal: Default::default(),
    };
    let build = |c: &RunConfig| {
        let c = c.clone();
        Box::new(move |d: &Device| c.build_net(d)) as Box<dyn Fn(&Device) -> mmkd::model::MultimodalNet + Send + Sync>
    };
    let pairs = mmkd::distill::distilled_pairs(mmkd::model::StudentConfig::C5);
    let mut edam = DistillTask::new(distill(Method::EdamS), frozen.clone(), pairs.clone(), build(&student_cfg), data.train.len(), 1, plain.clone());
    let student = edam.init_model(&ad, &batch).unwrap();
    let _ = student.student.forward(&batch.input, &edam.request(false));
    assert!(compare(&mut edam, &student, &batch, &ad, "EDAM-S student") > 10);

    // CRD: no part loss, so the step stays whole.
    let crd = DistillTask::new(distill(Method::Crd), frozen, pairs, build(&student_cfg), data.train.len(), 1, plain.clone());
    assert!(crd.part_loss(&batch).unwrap().is_none(), "CRD's loss couples rows");
    // A model with lazily initialised parameters (a fresh one) keeps its first step whole.
    let fresh = task(&cfg).init_model(&ad, &batch).unwrap();
    assert!(!mmkd::model::dropout::all_initialised(&fresh));
    mmkd::model::dropout::seed(&ad, 3);
    assert_eq!(loss_and_gradients(&mut task(&cfg), &fresh, &batch, Some(5)).unwrap().pieces, 1);
}

/// A run whose config.json was written before `rows_per_part` existed resumes with its batches
/// in one piece, as it began: resumed with today's preset (parts of 8 here), it ends as the same
/// run trained in one piece throughout, and its config keeps saying so. A run saved with parts
/// refuses a resume that changes them, naming the field.
#[test]
fn a_run_from_before_parts_resumes_in_one_piece() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = tiny_data();
    let device = Device::flex();
    let role = RunRole::Teacher { teacher: TeacherKind::Complete };
    let with = |epochs: usize, rows: Option<usize>| {
        let mut c = config(role.clone(), &data, epochs);
        c.train.rows_per_part = rows;
        c
    };
    let whole_guard = tempdir("whole");
    let whole = whole_guard.path();
    fit(whole, &with(2, None), &data, &mut task(&with(2, None)), false, &device).unwrap();

    let old_guard = tempdir("old");
    let old = old_guard.path();
    fit(old, &with(1, None), &data, &mut task(&with(1, None)), false, &device).unwrap();
    assert!(!std::fs::read_to_string(old.join("config.json")).unwrap().contains("rows_per_part"), "an old run's config has no such field");
    fit(old, &with(2, Some(8)), &data, &mut task(&with(2, Some(8))), true, &device).unwrap();
    assert!(!std::fs::read_to_string(old.join("config.json")).unwrap().contains("rows_per_part"), "the resumed run still says one piece");
    assert_eq!(tensors(&whole.join("last.safetensors")), tensors(&old.join("last.safetensors")), "resumed in one piece, as it began");

    let parts_guard = tempdir("parts");
    let parts = parts_guard.path();
    fit(parts, &with(1, Some(8)), &data, &mut task(&with(1, Some(8))), false, &device).unwrap();
    let err = fit(parts, &with(2, Some(4)), &data, &mut task(&with(2, Some(4))), true, &device).unwrap_err();
    assert!(err.to_string().contains("rows_per_part"), "{err}");
}
