//! Resume checkpoints (the weights users read, safetensors, are `run::weights`): the resume state is Burn's burnpack format, because it keeps the parameter ids that the
//! optimizer state is keyed by. Every file is written to a temporary name and renamed, and the
//! resume state is committed by one atomic rename of `resume.json`, so a crash at any point
//! leaves either the old or the new state, never a mix.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use crate::durable::write_atomic;

/// Everything but tensors that a resumed run needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResumeState {
    /// Epochs completed.
    pub epoch: usize,
    /// Batches of epoch `epoch + 1` already trained (0 at an epoch boundary), with their running
    /// sums, so a run saved inside an epoch continues it and logs the same epoch loss.
    #[serde(default)]
    pub within_epoch: Option<EpochProgress>,
    /// Scheduler state (its learning rate is the next epoch's).
    pub plateau: super::plateau::ReduceLrOnPlateau,
    /// Infinite until the first validation (a state saved inside the first epoch).
    #[serde(with = "infinity_as_null")]
    pub best_val_loss: f64,
    /// Epoch (1-based) of `best_val_loss`; 0 before the first validation.
    pub best_epoch: usize,
    /// Folder (inside the run) holding `model.bpk` and `optimizer.bpk` for this state.
    pub folder: String,
}

/// JSON has no infinity: an infinite "best so far" (nothing validated yet) is written as null.
pub(crate) mod infinity_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() { s.serialize_f64(*v) } else { s.serialize_none() }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}

/// How far into an epoch a checkpoint was taken.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochProgress {
    /// Batches trained in this epoch.
    pub batches: usize,
    /// Sum of batch loss x batch size over those batches.
    pub loss_sum: f64,
    /// Clips trained in this epoch.
    pub clips: usize,
    /// Named loss parts, summed like `loss_sum`.
    pub parts_sum: Vec<(String, f64)>,
}

/// Save a resumable state: model and optimizer in `resume-EEEE[-bBBBBB]/`, then commit it by
/// renaming `resume.json` over the old one, then drop the old folder.
pub fn save_resume<M: Module + Clone>(run: &Path, model: &M, optim: &ModuleOptimizer, mut state: ResumeState, save_extra: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let folder = match &state.within_epoch {
        Some(p) => format!("resume-{:04}-b{:06}", state.epoch, p.batches),
        None => format!("resume-{:04}", state.epoch),
    };
    let dir = run.join(&folder);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    model.clone().save_file(dir.join("model.bpk")).map_err(|e| anyhow!("saving model state: {e}"))?;
    optim.save(dir.join("optimizer.bpk")).map_err(|e| anyhow!("saving optimizer state: {e}"))?;
    save_extra(&dir)?;
    let previous = load_resume_state(run).ok().flatten().map(|s| s.folder);
    state.folder = folder.clone();
    super::crash::reached(super::crash::Point::Saving);
    write_atomic(&run.join("resume.json"), serde_json::to_string_pretty(&state)?.as_bytes())?;
    super::crash::reached(super::crash::Point::Saved);
    if let Some(prev) = previous.filter(|p| *p != folder) {
        let _ = std::fs::remove_dir_all(run.join(prev));
    }
    Ok(())
}

/// Read `RUN/resume.json`; `None` when the run has no resumable state.
pub fn load_resume_state(run: &Path) -> Result<Option<ResumeState>> {
    let path = run.join("resume.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)?;
    Ok(Some(serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?))
}

/// Load the model and optimizer state of `state` (from its folder) into `model` and `optim`.
pub fn load_resume<M: Module>(run: &Path, state: &ResumeState, model: M, optim: ModuleOptimizer) -> Result<(M, ModuleOptimizer)> {
    let dir = run.join(&state.folder);
    let model = model.try_load_file(dir.join("model.bpk")).map_err(|e| anyhow!("loading {}: {e}", dir.display()))?;
    let optim = optim.load(dir.join("optimizer.bpk")).map_err(|e| anyhow!("loading optimizer state: {e}"))?;
    Ok((model, optim))
}

/// Save a CRD memory bank: the two banks as safetensors, the rest as JSON.
pub fn save_bank(dir: &Path, state: &mmkd_losses::CrdMemoryState) -> Result<()> {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let (sb, tb) = (bytes(&state.student_bank), bytes(&state.teacher_bank));
    let shape = vec![state.config.n_data, state.config.dim];
    let views = vec![("student_bank".to_string(), TensorView::new(Dtype::F32, shape.clone(), &sb)?), ("teacher_bank".to_string(), TensorView::new(Dtype::F32, shape, &tb)?)];
    write_atomic(&dir.join("crd_bank.safetensors"), &safetensors::tensor::serialize(views, &None)?)?;
    let mut meta = state.clone();
    meta.student_bank = Vec::new();
    meta.teacher_bank = Vec::new();
    write_atomic(&dir.join("crd_bank.json"), serde_json::to_string_pretty(&meta)?.as_bytes())
}

/// Load a CRD memory bank saved by `save_bank`.
pub fn load_bank(dir: &Path) -> Result<mmkd_losses::CrdMemoryState> {
    use safetensors::tensor::SafeTensors;
    let mut state: mmkd_losses::CrdMemoryState = serde_json::from_str(&std::fs::read_to_string(dir.join("crd_bank.json"))?)?;
    let bytes = std::fs::read(dir.join("crd_bank.safetensors"))?;
    let st = SafeTensors::deserialize(&bytes)?;
    let read = |name: &str| -> Result<Vec<f32>> { Ok(st.tensor(name)?.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()) };
    state.student_bank = read("student_bank")?;
    state.teacher_bank = read("teacher_bank")?;
    Ok(state)
}
