//! Fail early when a training step cannot fit in memory, with the estimate and a batch size that
//! would, instead of being killed by the kernel an hour into loading.
//!
//! The estimate counts what autodiff keeps for the backward pass, per transformer and layer:
//! about 24 activations of `B x Lq x d` (embeddings, norms, projections, the 4d feed-forward),
//! and for the attention either
//! - the scores, probabilities and their dropout product (3 tensors of `B x heads x Lq x Lk`
//!   floats) where the map is materialised: the unfused path, taken when the loss reads the map,
//!   when dropout acts on the probabilities, or off flex; or
//! - the fused op's inputs, output and two row statistics (`4 x B x Lq x d + 2 x B x heads x Lq`)
//!   everywhere else.
//!
//! Measured anchor: before the fused op, the paper's complete teacher at B = 64 passed 22.8 GB in
//! its first step on a 24 GB machine before it was stopped (issue 8); the all-materialised
//! formula gives 32 GB for it (PyTorch needed 18.1 GB for the same step).

use crate::config::ModelConfig;
use crate::model::{MultimodalNet, TransformerId};

/// Floats kept per sample: per (transformer, layer), 24 x Lq x d plus the attention's share.
fn floats_per_sample(net: &MultimodalNet, cfg: &ModelConfig, materialised: &dyn Fn(TransformerId) -> bool) -> u64 {
    let len = |m| net.stream_len(m) as u64;
    let (heads, d) = (cfg.heads as u64, cfg.d_model as u64);
    net.spec
        .transformers()
        .into_iter()
        .map(|id| {
            let (lq, lk) = match id {
                TransformerId::Cross { keys, queries } => (len(queries), len(keys)),
                TransformerId::Temporal(q) => (len(q), len(q)),
            };
            let attention = if materialised(id) { 3 * heads * lq * lk } else { 4 * lq * d + 2 * heads * lq };
            cfg.layers as u64 * (attention + 24 * lq * d)
        })
        .sum()
}

/// Which transformers of `net` materialise their maps in a training step on `device`: those
/// in `mapped` (the loss reads them), those with dropout on the probabilities, and all of them
/// where the fused op does not run.
pub fn materialised_maps(cfg: &ModelConfig, mapped: &std::collections::BTreeSet<TransformerId>, device: &burn::prelude::Device) -> impl Fn(TransformerId) -> bool + use<> {
    let fused = crate::model::fused_attention::enabled_for(device);
    let (cfg, mapped) = (cfg.clone(), mapped.clone());
    move |id| !fused || mapped.contains(&id) || crate::model::network::attention_dropout(&cfg, id) > 0.0
}

/// Bytes a training step of `net` at `batch` clips keeps for the backward pass (estimate).
pub fn step_bytes(net: &MultimodalNet, batch: usize, cfg: &ModelConfig, materialised: &dyn Fn(TransformerId) -> bool) -> u64 {
    4 * batch as u64 * floats_per_sample(net, cfg, materialised)
}

/// Memory the system can give without swapping (`MemAvailable`), when it can be read.
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// `Err(message)` when the estimate exceeds 90 % of `available`, naming both and the largest
/// batch size that fits.
pub fn check(net: &MultimodalNet, batch: usize, cfg: &ModelConfig, materialised: &dyn Fn(TransformerId) -> bool, available: u64) -> Result<u64, String> {
    let need = step_bytes(net, batch, cfg, materialised);
    let budget = available / 10 * 9;
    if need <= budget {
        return Ok(need);
    }
    let per_clip = step_bytes(net, 1, cfg, materialised).max(1);
    let fits = budget / per_clip;
    let gb = |b: u64| b as f64 / 1e9;
    Err(if fits == 0 {
        format!("a training step needs about {:.1} GB per clip, more than the {:.1} GB available; use shorter sequences or a smaller model", gb(per_clip), gb(available))
    } else {
        format!(
            "a training step at --batch-size {batch} needs about {:.1} GB, but {:.1} GB are available; --batch-size {fits} would fit (about {:.1} GB)",
            gb(need),
            gb(available),
            gb(fits * per_clip)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DataShape, ModelConfig, Preset};
    use crate::model::{TeacherKind, build_teacher};
    use burn::prelude::Device;

    #[test]
    fn paper_teacher_at_64_is_about_what_was_measured_and_refused_on_24_gb_when_every_map_is_kept() {
        let device = Device::flex();
        let (shape, cfg) = (DataShape::for_preset(Preset::Paper), ModelConfig::for_preset(Preset::Paper));
        let net = build_teacher(TeacherKind::Complete, &shape, &cfg, &device);
        let all = |_: TransformerId| true;
        let need = step_bytes(&net, 64, &cfg, &all);
        // 4 transformers of 500 x 500 and 4 of 500 x 50 or 50 x 500 and one 50 x 50, 4 layers.
        assert!(need > 22_800_000_000 && need < 40_000_000_000, "{need}");
        let msg = check(&net, 64, &cfg, &all, 24_000_000_000).unwrap_err();
        assert!(msg.contains("--batch-size 64 needs about") && msg.contains("--batch-size"), "{msg}");
        let fits: u64 = msg.split("--batch-size ").nth(2).unwrap().split(' ').next().unwrap().parse().unwrap();
        assert!(step_bytes(&net, fits as usize, &cfg, &all) <= 24_000_000_000 / 10 * 9);
        assert!(check(&net, 8, &cfg, &all, 24_000_000_000).is_ok());
    }

    /// With the fused op only the text-keyed transformers (attention dropout 0.1) keep maps, and
    /// a distilled student adds the transformers whose maps its loss reads.
    #[test]
    fn fused_attention_keeps_only_the_maps_that_dropout_or_the_loss_needs() {
        let device = Device::flex().autodiff();
        let (shape, cfg) = (DataShape::for_preset(Preset::Paper), ModelConfig::for_preset(Preset::Paper));
        let net = build_teacher(TeacherKind::Complete, &shape, &cfg, &device);
        let none = std::collections::BTreeSet::new();
        let kept = materialised_maps(&cfg, &none, &device);
        let ids = net.spec.transformers();
        let kept_ids: Vec<String> = ids.iter().filter(|id| kept(**id)).map(|id| id.to_string()).collect();
        assert!(!kept_ids.is_empty() && kept_ids.iter().all(|id| id.starts_with('L')), "text keys (L<-.., L-temporal) only: {kept_ids:?}");
        let fused = step_bytes(&net, 64, &cfg, &kept);
        assert!(fused < step_bytes(&net, 64, &cfg, &|_| true) / 4, "{fused}");
        let v_a: TransformerId = "V<-A".parse().unwrap();
        let mapped: std::collections::BTreeSet<TransformerId> = [v_a].into();
        assert!(materialised_maps(&cfg, &mapped, &device)(v_a) && !kept(v_a));
    }
}
