//! Fail early when a training step cannot fit in memory, with the estimate and a batch size that
//! would, instead of being killed by the kernel an hour into loading.
//!
//! The estimate counts what autodiff keeps for the backward pass, per transformer and layer:
//! the attention scores, probabilities and their dropout product (3 tensors of
//! `B x heads x Lq x Lk` floats), and about 24 activations of `B x Lq x d` (embeddings, norms,
//! projections, the 4d feed-forward). Measured anchor: the paper's complete teacher at B = 64
//! passed 22.8 GB in its first step on a 24 GB machine before it was stopped (issue 8); this
//! formula gives 32 GB for it (PyTorch needed 18.1 GB for the same step).

use crate::model::{MultimodalNet, TransformerId};

/// Floats kept per (transformer, layer): 3 x heads x Lq x Lk + 24 x Lq x d, per sample.
fn floats_per_sample(net: &MultimodalNet, heads: usize, layers: usize, d: usize) -> u64 {
    let len = |m| net.stream_len(m) as u64;
    net.spec
        .transformers()
        .into_iter()
        .map(|id| {
            let (lq, lk) = match id {
                TransformerId::Cross { keys, queries } => (len(queries), len(keys)),
                TransformerId::Temporal(q) => (len(q), len(q)),
            };
            layers as u64 * (3 * heads as u64 * lq * lk + 24 * lq * d as u64)
        })
        .sum()
}

/// Bytes a training step of `net` at `batch` clips keeps for the backward pass (estimate).
pub fn step_bytes(net: &MultimodalNet, batch: usize, heads: usize, layers: usize, d: usize) -> u64 {
    4 * batch as u64 * floats_per_sample(net, heads, layers, d)
}

/// Memory the system can give without swapping (`MemAvailable`), when it can be read.
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// `Err(message)` when the estimate exceeds 90 % of `available`, naming both and the largest
/// batch size that fits.
pub fn check(net: &MultimodalNet, batch: usize, heads: usize, layers: usize, d: usize, available: u64) -> Result<u64, String> {
    let need = step_bytes(net, batch, heads, layers, d);
    let budget = available / 10 * 9;
    if need <= budget {
        return Ok(need);
    }
    let per_clip = step_bytes(net, 1, heads, layers, d).max(1);
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
    fn paper_teacher_at_64_is_about_what_was_measured_and_refused_on_24_gb() {
        let device = Device::flex();
        let (shape, cfg) = (DataShape::for_preset(Preset::Paper), ModelConfig::for_preset(Preset::Paper));
        let net = build_teacher(TeacherKind::Complete, &shape, &cfg, &device);
        let need = step_bytes(&net, 64, cfg.heads, cfg.layers, cfg.d_model);
        // 4 transformers of 500 x 500 and 4 of 500 x 50 or 50 x 500 and one 50 x 50, 4 layers.
        assert!(need > 22_800_000_000 && need < 40_000_000_000, "{need}");
        let msg = check(&net, 64, cfg.heads, cfg.layers, cfg.d_model, 24_000_000_000).unwrap_err();
        assert!(msg.contains("--batch-size 64 needs about") && msg.contains("--batch-size"), "{msg}");
        let fits: u64 = msg.split("--batch-size ").nth(2).unwrap().split(' ').next().unwrap().parse().unwrap();
        assert!(step_bytes(&net, fits as usize, cfg.heads, cfg.layers, cfg.d_model) <= 24_000_000_000 / 10 * 9);
        assert!(check(&net, 8, cfg.heads, cfg.layers, cfg.d_model, 24_000_000_000).is_ok());
    }
}
