//! A network's weights as safetensors (`best.safetensors`, `last.safetensors`, the reference
//! cases' weights), with the tensor names of the first layout.

use std::path::Path;

use anyhow::{Result, anyhow};
use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};

use crate::durable::write_atomic_with;

/// Names in weight files stay those of the first layout (`branches.N.`, `flat.N.`), which the
/// PyTorch reference and every earlier checkpoint use; in memory Burn names the body enum's
/// variant (`body.Branches.N.`) and a flat transformer's encoder field (`body.Flat.N.encoder.`).
/// Saving maps one way, loading the other (regular expressions; `$1` is the index).
const SAVED_NAMES: [(&str, &str, &str, &str); 2] =
    [(r"^body\.Branches\.", "branches.", r"^branches\.", "body.Branches."), (r"^body\.Flat\.(\d+)\.encoder\.", "flat.$1.", r"^flat\.(\d+)\.", "body.Flat.$1.encoder.")];

fn saved_names(store: SafetensorsStore) -> SafetensorsStore {
    SAVED_NAMES.iter().fold(store, |s, (memory, file, _, _)| s.with_key_remapping(*memory, *file))
}

fn memory_names(store: SafetensorsStore) -> SafetensorsStore {
    SAVED_NAMES.iter().fold(store, |s, (_, _, file, memory)| s.with_key_remapping(*file, *memory))
}

/// Save a module's weights as safetensors, atomically (`durable::write_atomic_with`).
pub fn save_safetensors<M: Module>(module: &M, path: &Path) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut store = saved_names(SafetensorsStore::from_file(tmp));
        module.save_into(&mut store).map_err(|e| anyhow!("saving {}: {e}", tmp.display()))
    })
}

/// Load weights saved by `save_safetensors` into `module` (which fixes the architecture).
pub fn load_safetensors<M: Module>(mut module: M, path: &Path) -> Result<M> {
    if !path.exists() {
        crate::bail_input!("{}: no such checkpoint", path.display());
    }
    let mut store = memory_names(SafetensorsStore::from_file(path));
    let result = match module.load_from(&mut store) {
        Ok(r) => r,
        Err(e) => crate::bail_input!("{}: does not fit this architecture ({e}); was it trained with another config?", path.display()),
    };
    if !result.missing.is_empty() || !result.errors.is_empty() {
        crate::bail_input!(
            "{}: does not fit this architecture (missing {:?}, errors {:?}); was it trained with another config?",
            path.display(),
            result.missing.iter().take(5).collect::<Vec<_>>(),
            result.errors.iter().take(5).collect::<Vec<_>>()
        );
    }
    Ok(module)
}
