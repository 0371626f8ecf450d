//! Looking inside the attention: how peaked each transformer's head-averaged maps are, and
//! pictures of them. Used to check whether a teacher's maps hold anything to distil.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, anyhow};
use burn::prelude::*;
use plotters::prelude::*;
use serde::Serialize;

use crate::config::DataShape;
use crate::data::Split;
use crate::model::{MultimodalNet, Probe, TraceRequest, TransformerId};

#[derive(Clone, Debug, Serialize)]
pub struct MapStats {
    pub transformer: String,
    pub layer: usize,
    /// Mean entropy of the rows (nats).
    pub mean_entropy: f64,
    /// Mean entropy a uniform row over the same visible (unmasked) keys would have.
    pub uniform_entropy: f64,
    /// Mean of each row's largest probability.
    pub mean_max: f64,
}

/// One map: rows x cols, row-major.
pub struct Map {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

/// Statistics over the first `n` clips of `split`, and the maps of the first clip.
pub fn attention_maps(net: &MultimodalNet, split: &Split, shape: &DataShape, n: usize, temperature: f32, device: &Device) -> (Vec<MapStats>, BTreeMap<TransformerId, Vec<Map>>) {
    let idx: Vec<usize> = (0..n.min(split.len()).max(1)).collect();
    let batch = split.batch(shape, &idx, device);
    let request = TraceRequest { probe: Probe { map_temperature: Some(temperature), post_attention: false }, transformers: net.spec.transformers().into_iter().collect() };
    let out = net.forward(&batch.input, &request);
    let mut stats = Vec::new();
    let mut first = BTreeMap::new();
    for (id, layers) in out.traces {
        let mut maps = Vec::new();
        for (l, trace) in layers.into_iter().enumerate() {
            let map = trace.map.expect("maps were requested");
            let [b, rows, cols] = map.dims();
            let v: Vec<f32> = map.into_data().try_to_vec().expect("f32 map");
            let (mut h, mut hu, mut mx) = (0.0, 0.0, 0.0);
            for row in v.chunks_exact(cols) {
                h -= row.iter().filter(|&&p| p > 0.0).map(|&p| p as f64 * (p as f64).ln()).sum::<f64>();
                hu += (row.iter().filter(|&&p| p > 0.0).count().max(1) as f64).ln();
                mx += row.iter().cloned().fold(0.0f32, f32::max) as f64;
            }
            let count = (b * rows) as f64;
            stats.push(MapStats { transformer: id.to_string(), layer: l + 1, mean_entropy: h / count, uniform_entropy: hu / count, mean_max: mx / count });
            maps.push(Map { rows, cols, data: v[..rows * cols].to_vec() });
        }
        first.insert(id, maps);
    }
    (stats, first)
}

/// Draw a transformer's maps (one panel per layer, rows = queries top to bottom, columns =
/// keys, viridis colours scaled per panel) into a PNG.
pub fn draw(maps: &[Map], path: &Path) -> Result<()> {
    let cell = 12u32.min((480 / maps.iter().map(|m| m.rows.max(m.cols)).max().unwrap_or(1).max(1)) as u32).max(1);
    let gap = 16u32;
    let width = maps.iter().map(|m| m.cols as u32 * cell + gap).sum::<u32>() + gap;
    let height = maps.iter().map(|m| m.rows as u32 * cell).max().unwrap_or(1) + 2 * gap;
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("drawing {}: {e}", path.display()))?;
    let mut x0 = gap as i32;
    for m in maps {
        let max = m.data.iter().cloned().fold(f32::MIN_POSITIVE, f32::max);
        for r in 0..m.rows {
            for c in 0..m.cols {
                let v = (m.data[r * m.cols + c] / max) as f64;
                let colour = ViridisRGB::get_color(v);
                let (x, y) = (x0 + (c as u32 * cell) as i32, gap as i32 + (r as u32 * cell) as i32);
                root.draw(&Rectangle::new([(x, y), (x + cell as i32, y + cell as i32)], colour.filled())).map_err(|e| anyhow!("drawing {}: {e}", path.display()))?;
            }
        }
        x0 += (m.cols as u32 * cell + gap) as i32;
    }
    root.present().map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ModelConfig, Preset};
    use crate::data::synth::{SynthParams, generate};
    use crate::model::{TeacherKind, build_teacher};

    #[test]
    fn entropies_are_bounded_by_uniform_and_pictures_are_written() {
        let shape = DataShape { n_train: 2, n_valid: 1, n_test: 3, ..DataShape::for_preset(Preset::Smoke) };
        let (d, _) = generate(Preset::Smoke, 1, &shape, &SynthParams::default());
        let device = Device::flex();
        let net = build_teacher(TeacherKind::Video, &shape, &ModelConfig::for_preset(Preset::Smoke), &device);
        let (stats, maps) = attention_maps(&net, &d.test, &shape, 3, 1.0, &device);
        assert_eq!(stats.len(), 3, "3 transformers x 1 layer");
        for s in &stats {
            assert!(s.mean_entropy >= 0.0 && s.mean_entropy <= s.uniform_entropy + 1e-6, "{s:?}");
            assert!(s.mean_max > 0.0 && s.mean_max <= 1.0);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        draw(maps.values().next().unwrap(), &path).unwrap();
        assert!(std::fs::read(&path).unwrap().starts_with(b"\x89PNG"));
    }
}
