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

/// One transformer layer's statistics, over the probed clips.
#[derive(Clone, Debug, Serialize)]
pub struct MapStats {
    /// The transformer's name (`A<-V`, ...).
    pub transformer: String,
    /// Its layer's numbers.
    #[serde(flatten)]
    pub stats: LayerStats,
}

/// One map: rows x cols, row-major.
pub struct Map {
    /// Query positions.
    pub rows: usize,
    /// Key positions.
    pub cols: usize,
    /// `rows * cols` probabilities, row-major.
    pub data: Vec<f32>,
}

/// Where the clips' events are: the first event frame of every clip of the split, in video
/// frames, and the burst's length.
#[derive(Clone, Copy, Debug)]
pub struct EventFrames<'a> {
    /// First event frame per clip of the split.
    pub starts: &'a [usize],
    /// Frames per event.
    pub width: usize,
}

/// The split `mmkd maps` computes on: criteria are set on `Valid`, results reported on `Test`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MapSplit {
    /// The validation split.
    Valid,
    /// The test split.
    #[default]
    Test,
}
crate::choice::impl_choice!(MapSplit {
    Valid => "valid", "The validation split: where teachers and criteria are chosen";
    Test => "test", "The test split: reported once, after the choices";
});

/// Statistics over the first `n` clips of `split` (with the event shares when `events` says
/// where the events are), and the maps of the first clip. An empty split gives nothing.
pub fn attention_maps(
    net: &MultimodalNet,
    split: &Split,
    shape: &DataShape,
    n: usize,
    temperature: f32,
    events: Option<EventFrames>,
    device: &Device,
) -> (Vec<MapStats>, BTreeMap<TransformerId, Vec<Map>>) {
    if split.is_empty() {
        return (Vec::new(), BTreeMap::new());
    }
    let idx: Vec<usize> = (0..n.min(split.len())).collect();
    let batch = split.batch(shape, &idx, device);
    let request = TraceRequest { probe: Probe { map_temperature: Some(temperature), post_attention: false }, transformers: net.transformers().into_iter().collect() };
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
            // Every stream spans the clip's whole duration, so the key columns map onto
            // video time by their number alone.
            let visibility = net.key_visibility(id, rows, cols, batch.input.lengths.as_ref());
            let event = events.map(|e| {
                let mut mass = super::event_share::EventMass::default();
                for (clip, map) in v.chunks_exact(rows * cols).enumerate() {
                    let frames = super::event_share::event_frames(e.starts[clip], e.width, shape.video_len, cols);
                    mass.add(super::event_share::event_mass(map, cols, &frames, |r, c| visibility.visible(clip, r, c)));
                }
                mass
            });
            stats.push(MapStats {
                transformer: id.to_string(),
                stats: LayerStats {
                    layer: l + 1,
                    entropy: h / count,
                    uniform_entropy: hu / count,
                    mean_max: mx / count,
                    event_share: event.map(|m| m.mean_share()),
                    uniform_event_share: event.map(|m| m.mean_uniform_share()),
                },
            });
            maps.push(Map { rows, cols, data: v[..rows * cols].to_vec() });
        }
        first.insert(id, maps);
    }
    (stats, first)
}

/// How peaked one layer's head-averaged attention maps are, and (on synthetic data) how much
/// of their mass lies on the true event; a layer of `mmkd maps --json`.
#[derive(Clone, Debug, Serialize)]
pub struct LayerStats {
    /// Layer number, 1-based.
    pub layer: usize,
    /// Mean row entropy (nats).
    pub entropy: f64,
    /// Mean entropy of uniform rows over the same visible keys.
    pub uniform_entropy: f64,
    /// Mean of each row's largest probability.
    pub mean_max: f64,
    /// Mean share of attention mass on the true event frames (null without events).
    pub event_share: Option<f64>,
    /// The same share under uniform attention (null without events).
    pub uniform_event_share: Option<f64>,
}

/// One transformer's layers in `mmkd maps --json`.
#[derive(Clone, Debug, Serialize)]
pub struct TransformerStats {
    /// The transformer's name (`V<-A`, ...).
    pub id: String,
    /// Its layers, first to last.
    pub layers: Vec<LayerStats>,
}

/// The statistics of `attention_maps`, grouped by transformer: `{"transformers": [...]}`.
#[derive(Clone, Debug, Serialize)]
pub struct MapsReport {
    /// Every traced transformer.
    pub transformers: Vec<TransformerStats>,
}

/// Group per-layer statistics by transformer, keeping their order.
pub fn by_transformer(stats: &[MapStats]) -> MapsReport {
    let mut transformers: Vec<TransformerStats> = Vec::new();
    for s in stats {
        let layer = s.stats.clone();
        match transformers.iter_mut().find(|t| t.id == s.transformer) {
            Some(t) => t.layers.push(layer),
            None => transformers.push(TransformerStats { id: s.transformer.clone(), layers: vec![layer] }),
        }
    }
    MapsReport { transformers }
}

/// Draw a transformer's maps (one panel per layer, rows = queries top to bottom, columns =
/// keys, viridis colours scaled per panel) into a PNG, written atomically.
pub fn draw(maps: &[Map], path: &Path) -> Result<()> {
    let cell = 12u32.min((480 / maps.iter().map(|m| m.rows.max(m.cols)).max().unwrap_or(1).max(1)) as u32).max(1);
    let gap = 16u32;
    let width = maps.iter().map(|m| m.cols as u32 * cell + gap).sum::<u32>() + gap;
    let height = maps.iter().map(|m| m.rows as u32 * cell).max().unwrap_or(1) + 2 * gap;
    super::plots::save_png(path, width, height, |root| {
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
        Ok(())
    })
}

/// Mean over rows of KL(teacher row || student row) (nats), for maps of the same shape.
pub fn mean_row_kl(teacher: &Map, student: &Map) -> Option<f64> {
    if (teacher.rows, teacher.cols) != (student.rows, student.cols) || teacher.rows == 0 {
        return None;
    }
    let mut total = 0.0;
    for (t_row, s_row) in teacher.data.chunks_exact(teacher.cols).zip(student.data.chunks_exact(student.cols)) {
        total += t_row.iter().zip(s_row).filter(|(t, _)| **t > 0.0).map(|(&t, &s)| t as f64 * ((t as f64) / (s as f64).max(1e-12)).ln()).sum::<f64>();
    }
    Some(total / teacher.rows as f64)
}

/// One panel of a comparison picture.
pub struct Panel<'a> {
    /// Column title (`teacher V<-A`, `student (EDAM-S)`, ...).
    pub title: String,
    /// The map.
    pub map: &'a Map,
    /// Written under the map (the KL to the teacher's, for students).
    pub caption: String,
}

/// Maps of one clip side by side, one row per layer, one shared colour scale (viridis, 0 to the
/// largest probability of any panel), query steps down and key steps across, with the true
/// event's key columns outlined in red when known (`event`: the clip's first event frame and
/// width in video frames, and the video's length; each panel maps it onto its own key count).
pub fn draw_comparison(path: &Path, title: &str, queries: &str, keys: &str, layers: &[Vec<Panel>], event: Option<(usize, usize, usize)>) -> Result<()> {
    let columns = layers.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let largest = layers.iter().flatten().map(|p| p.map.rows.max(p.map.cols)).max().unwrap_or(1).max(1);
    let cell = (240 / largest as u32).clamp(2, 16);
    let (panel_w, panel_h) = (largest as u32 * cell, largest as u32 * cell);
    let (left, top, gap_x, gap_y) = (96u32, 56u32, 40u32, 64u32);
    let width = left + columns as u32 * (panel_w + gap_x) + 90;
    // Room for the colour bar (200 px) as well.
    let height = (top + layers.len() as u32 * (panel_h + gap_y) + 8).max(top + 216);
    let scale = layers.iter().flatten().flat_map(|p| p.map.data.iter().copied()).fold(f32::MIN_POSITIVE, f32::max);
    let font = |size: i32| (super::plots::FONT, size).into_font();
    super::plots::save_png(path, width, height, |root| {
        let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
        root.fill(&WHITE).map_err(|e| err(&e))?;
        root.draw(&Text::new(title.to_string(), (left as i32, 8), font(16))).map_err(|e| err(&e))?;
        for (l, row) in layers.iter().enumerate() {
            let y0 = (top + l as u32 * (panel_h + gap_y)) as i32;
            for (c, panel) in row.iter().enumerate() {
                let x0 = (left + c as u32 * (panel_w + gap_x)) as i32;
                let m = panel.map;
                root.draw(&Text::new(format!("{} (layer {})", panel.title, l + 1), (x0, y0 - 18), font(12))).map_err(|e| err(&e))?;
                for r in 0..m.rows {
                    for k in 0..m.cols {
                        let colour = ViridisRGB::get_color((m.data[r * m.cols + k] / scale) as f64);
                        let (x, y) = (x0 + (k as u32 * cell) as i32, y0 + (r as u32 * cell) as i32);
                        root.draw(&Rectangle::new([(x, y), (x + cell as i32, y + cell as i32)], colour.filled())).map_err(|e| err(&e))?;
                    }
                }
                let columns = event.map(|(start, width, video_len)| super::event_share::event_frames(start, width, video_len, m.cols));
                if let Some(ev) = columns.filter(|e| !e.is_empty()) {
                    let (xa, xb) = (x0 + (ev.start as u32 * cell) as i32, x0 + (ev.end as u32 * cell) as i32);
                    root.draw(&Rectangle::new([(xa, y0), (xb, y0 + (m.rows as u32 * cell) as i32)], RED.stroke_width(2))).map_err(|e| err(&e))?;
                }
                let below = y0 + (m.rows as u32 * cell) as i32;
                root.draw(&Text::new(format!("key: {keys} step 0..{}", m.cols), (x0, below + 4), font(11))).map_err(|e| err(&e))?;
                root.draw(&Text::new(panel.caption.clone(), (x0, below + 18), font(11))).map_err(|e| err(&e))?;
            }
            root.draw(&Text::new(format!("query: {queries}"), (4, y0 + 4), font(11))).map_err(|e| err(&e))?;
        }
        // The shared scale.
        let (bx, by) = ((width - 60) as i32, top as i32);
        for i in 0..100 {
            let colour = ViridisRGB::get_color(1.0 - i as f64 / 99.0);
            root.draw(&Rectangle::new([(bx, by + 2 * i), (bx + 14, by + 2 * i + 2)], colour.filled())).map_err(|e| err(&e))?;
        }
        root.draw(&Text::new(format!("{scale:.2}"), (bx + 18, by), font(11))).map_err(|e| err(&e))?;
        root.draw(&Text::new("0".to_string(), (bx + 18, by + 190), font(11))).map_err(|e| err(&e))?;
        Ok(())
    })
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
        let (stats, maps) = attention_maps(&net, &d.test, &shape, 3, 1.0, None, &device);
        assert_eq!(stats.len(), 3, "3 transformers x 1 layer");
        for s in &stats {
            assert!(s.stats.entropy >= 0.0 && s.stats.entropy <= s.stats.uniform_entropy + 1e-6, "{s:?}");
            assert!(s.stats.mean_max > 0.0 && s.stats.mean_max <= 1.0);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        draw(maps.values().next().unwrap(), &path).unwrap();
        assert!(std::fs::read(&path).unwrap().starts_with(b"\x89PNG"));
    }

    #[test]
    fn kl_of_identical_maps_is_zero_and_comparison_pictures_are_drawn() {
        let a = Map { rows: 2, cols: 4, data: vec![0.25; 8] };
        let b = Map { rows: 2, cols: 4, data: vec![0.7, 0.1, 0.1, 0.1, 0.25, 0.25, 0.25, 0.25] };
        assert_eq!(mean_row_kl(&a, &a), Some(0.0));
        // Row 1: KL(uniform || (0.7, 0.1, 0.1, 0.1)) by hand; row 2: 0.
        let by_hand = 0.25 * ((0.25f64 / 0.7).ln() + 3.0 * (0.25f64 / 0.1).ln()) / 2.0;
        assert!((mean_row_kl(&a, &b).unwrap() - by_hand).abs() < 1e-6);
        assert_eq!(mean_row_kl(&a, &Map { rows: 2, cols: 3, data: vec![1.0 / 3.0; 6] }), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("compare.png");
        let panels = vec![vec![Panel { title: "teacher".into(), map: &a, caption: String::new() }, Panel { title: "student".into(), map: &b, caption: "KL to teacher 0.210".into() }]];
        draw_comparison(&path, "V<-A, clip 0", "audio", "video", &panels, Some((2, 4, 8))).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        let (w, h) = img.dimensions();
        assert!(w > 300 && h > 200, "{w}x{h}");
        let red = img.pixels().filter(|p| p.0[0] > 200 && p.0[1] < 60 && p.0[2] < 60).count();
        let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 80)).count();
        assert!(red > 50 && dark > 200, "event outline {red}, text {dark}");
    }
}
