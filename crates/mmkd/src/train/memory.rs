//! Fail early when a training step cannot fit in memory, with the estimate and a batch size that
//! would, instead of being killed by the kernel an hour into loading.
//!
//! The estimate counts what autodiff keeps for the backward pass, per transformer and layer:
//! about 24 activations of `B x Lq x d` (embeddings, norms, projections, the 4d feed-forward),
//! and for the attention either
//! - on the unfused path (off flex, or `MMKD_FUSED_ATTENTION=0`): the scores, probabilities and
//!   their dropout product, 3 tensors of `B x heads x Lq x Lk` floats; or
//! - with the fused op: its inputs and output (`4 x B x Lq x d`), four numbers per query row and
//!   head, the head-averaged map where the loss reads it (`B x Lq x Lk`), and a byte per
//!   probability where dropout acts on them.
//!
//! Measured anchor: before the fused op, the paper's complete teacher at B = 64 passed 22.8 GB in
//! its first step on a 24 GB machine before it was stopped (issue 8); the unfused formula gives
//! 32 GB for it (PyTorch needed 18.1 GB for the same step).

use crate::config::ModelConfig;
use crate::model::{MultimodalNet, TransformerId};

/// What one transformer's attention keeps for the backward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKept {
    /// Scores, probabilities and the dropped probabilities, per head.
    Unfused,
    /// The fused op's inputs, output and row statistics, plus what is asked for.
    Fused {
        /// The head-averaged map is returned (the loss reads it).
        map: bool,
        /// A dropout keep mask (one byte per probability).
        dropout: bool,
    },
}

/// Floats kept per sample: per (transformer, layer), 24 x Lq x d plus the attention's share.
fn floats_per_sample(net: &MultimodalNet, cfg: &ModelConfig, kept: &dyn Fn(TransformerId) -> AttentionKept) -> u64 {
    let len = |m| net.stream_len(m) as u64;
    let (heads, d) = (cfg.heads as u64, cfg.d_model as u64);
    net.transformers()
        .into_iter()
        .map(|id| {
            let (lq, lk) = match id {
                TransformerId::Cross { keys, queries } => (len(queries), len(keys)),
                TransformerId::Temporal(q) => (len(q), len(q)),
            };
            let attention = match kept(id) {
                AttentionKept::Unfused => 3 * heads * lq * lk,
                AttentionKept::Fused { map, dropout } => 4 * lq * d + 4 * heads * lq + if map { lq * lk } else { 0 } + if dropout { heads * lq * lk / 4 } else { 0 },
            };
            cfg.layers as u64 * (attention + 24 * lq * d)
        })
        .sum()
}

/// What each transformer of a network built from `cfg` keeps in a training step on `device`,
/// when the loss reads the maps of `mapped`.
pub fn attention_kept(cfg: &ModelConfig, mapped: &std::collections::BTreeSet<TransformerId>, device: &burn::prelude::Device) -> impl Fn(TransformerId) -> AttentionKept + use<> {
    let fused = crate::model::fused_attention::enabled_for(device);
    let (cfg, mapped) = (cfg.clone(), mapped.clone());
    move |id| {
        if fused { AttentionKept::Fused { map: mapped.contains(&id), dropout: crate::model::network::attention_dropout(&cfg, id) > 0.0 } } else { AttentionKept::Unfused }
    }
}

/// Bytes a training step of `net` at `batch` clips keeps for the backward pass (estimate).
pub fn step_bytes(net: &MultimodalNet, batch: usize, cfg: &ModelConfig, kept: &dyn Fn(TransformerId) -> AttentionKept) -> u64 {
    4 * batch as u64 * floats_per_sample(net, cfg, kept)
}

/// Memory the system can give without swapping (`MemAvailable`), when it can be read.
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// `Err(message)` when the estimate exceeds 90 % of `available`, naming both and the largest
/// batch size that fits.
pub fn check(net: &MultimodalNet, batch: usize, cfg: &ModelConfig, kept: &dyn Fn(TransformerId) -> AttentionKept, available: u64) -> Result<u64, String> {
    let need = step_bytes(net, batch, cfg, kept);
    let budget = available / 10 * 9;
    if need <= budget {
        return Ok(need);
    }
    let per_clip = step_bytes(net, 1, cfg, kept).max(1);
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
        let all = |_: TransformerId| AttentionKept::Unfused;
        let need = step_bytes(&net, 64, &cfg, &all);
        // 4 transformers of 500 x 500 and 4 of 500 x 50 or 50 x 500 and one 50 x 50, 4 layers.
        assert!(need > 22_800_000_000 && need < 40_000_000_000, "{need}");
        let msg = check(&net, 64, &cfg, &all, 24_000_000_000).unwrap_err();
        assert!(msg.contains("--batch-size 64 needs about") && msg.contains("--batch-size"), "{msg}");
        let fits: u64 = msg.split("--batch-size ").nth(2).unwrap().split(' ').next().unwrap().parse().unwrap();
        assert!(step_bytes(&net, fits as usize, &cfg, &all) <= 24_000_000_000 / 10 * 9);
        assert!(check(&net, 8, &cfg, &all, 24_000_000_000).is_ok());
    }

    /// With the fused op nothing keeps per-head float maps: the text-keyed transformers
    /// (attention dropout 0.1) keep a byte mask, a distilled student the maps its loss reads.
    #[test]
    fn fused_attention_keeps_masks_and_read_maps_only() {
        let device = Device::flex().autodiff();
        let (shape, cfg) = (DataShape::for_preset(Preset::Paper), ModelConfig::for_preset(Preset::Paper));
        let net = build_teacher(TeacherKind::Complete, &shape, &cfg, &device);
        let none = std::collections::BTreeSet::new();
        let kept = attention_kept(&cfg, &none, &device);
        for id in net.transformers() {
            let text_keys = id.to_string().starts_with('L');
            assert_eq!(kept(id), AttentionKept::Fused { map: false, dropout: text_keys }, "{id}");
        }
        let fused = step_bytes(&net, 64, &cfg, &kept);
        let unfused = step_bytes(&net, 64, &cfg, &|_| AttentionKept::Unfused);
        assert!(fused < unfused / 4 && fused < 6_000_000_000, "fused {fused} vs unfused {unfused}");
        let v_a: TransformerId = "V<-A".parse().unwrap();
        let mapped: std::collections::BTreeSet<TransformerId> = [v_a].into();
        assert_eq!(attention_kept(&cfg, &mapped, &device)(v_a), AttentionKept::Fused { map: true, dropout: false });
    }
}
