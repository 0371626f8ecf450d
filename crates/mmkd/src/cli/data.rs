//! `data synth|inspect|convert`.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use crate::config::{DataShape, Preset};
use crate::data::{self, labels, native, synth};

/// `data synth`: generate and save the synthetic dataset.
pub(crate) fn synth(preset: Preset, seed: u64, out: &Path) -> Result<()> {
    let t0 = Instant::now();
    let d = synth_to(preset, seed, out)?;
    println!("wrote {} ({} / {} / {} clips) to {} in {:.1}s", d.name, d.train.len(), d.valid.len(), d.test.len(), out.display(), t0.elapsed().as_secs_f64());
    Ok(())
}

/// `data convert`: streamed, the pickle is memory-mapped and never loaded (a MOSEI file is 6.4 GB).
pub(crate) fn convert(file: &Path, out: &Path) -> Result<()> {
    let t0 = Instant::now();
    let mut last = Instant::now();
    let conv = data::pickle::convert_to_native(file, out, |phase, done, total| {
        if last.elapsed().as_secs() >= 2 {
            last = Instant::now();
            eprintln!("{phase}: {:.2} / {:.2} GB ({:.0} %)", done as f64 / 1e9, total as f64 / 1e9, 100.0 * done as f64 / total.max(1) as f64);
        }
    })?;
    for r in &conv.repairs {
        eprintln!("repaired {r}");
    }
    println!("wrote {} ({} / {} / {} clips, {:?}) to {} in {:.1}s", conv.name, conv.shape.n_train, conv.shape.n_valid, conv.shape.n_test, conv.shape, out.display(), t0.elapsed().as_secs_f64());
    Ok(())
}

pub(crate) fn synth_to(preset: Preset, seed: u64, out: &Path) -> Result<data::Dataset> {
    let shape = DataShape::for_preset(preset);
    let params = synth::SynthParams::default();
    let (dataset, _) = synth::generate(preset, seed, &shape, &params);
    native::save(&dataset, out, serde_json::json!({"generator": "mmkd synth", "preset": preset.name(), "seed": seed, "params": params}))?;
    Ok(dataset)
}


/// `data inspect`: a pickle file through mmkd-pickle, a native directory through the loader.
pub(crate) fn inspect(path: &Path, json: bool) -> Result<()> {
    if path.is_file() {
        let file = match mmkd_pickle::read_mosei_file(path) {
            Ok(f) => f,
            Err(e) => crate::bail_input!("{e}"),
        };
        let report = mmkd_pickle::inspect(&file);
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{report}");
        }
        return Ok(());
    }
    let dataset = data::load_any(path)?;
    let mut splits = Vec::new();
    for split in [&dataset.train, &dataset.valid, &dataset.test] {
        let hist = labels::histogram(split.classes());
        splits.push(serde_json::json!({
            "split": split.name,
            "n": split.len(),
            "text": [split.len(), dataset.shape.text_len, dataset.shape.text_dim],
            "audio": [split.len(), dataset.shape.audio_len, dataset.shape.audio_dim],
            "video": [split.len(), dataset.shape.video_len, dataset.shape.video_dim],
            "label_histogram": hist,
            "has_lengths": split.lengths.is_some(),
        }));
    }
    let report = serde_json::json!({"format": "mmkd-native", "name": dataset.name, "source": dataset.source, "splits": splits});
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{} ({})\nsource: {}", path.display(), dataset.name, dataset.source);
        for s in &splits {
            println!(
                "  {:5}  n={:6}  text {}  audio {}  video {}  classes -3..3: {}",
                s["split"].as_str().unwrap_or(""),
                s["n"],
                s["text"],
                s["audio"],
                s["video"],
                s["label_histogram"]
            );
        }
    }
    Ok(())
}

