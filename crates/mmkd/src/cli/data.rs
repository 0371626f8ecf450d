//! `data synth|inspect|convert`.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use crate::choice::Choice;
use crate::config::{DataShape, Preset};
use crate::data::{self, labels, native, synth};

/// `data synth`: generate and save the synthetic dataset.
pub(crate) fn synth(preset: Preset, seed: u64, regime: synth::Regime, n_train: Option<usize>, video_marker: Option<f64>, out: &Path) -> Result<()> {
    let t0 = Instant::now();
    if n_train == Some(0) {
        crate::bail_input!("--n-train must be at least 1");
    }
    if let Some(amp) = video_marker
        && !(amp.is_finite() && amp >= 0.0)
    {
        crate::bail_input!("--video-marker must be a finite amplitude >= 0, got {amp}");
    }
    let mut params = synth::SynthParams::for_regime(regime);
    params.video_marker_amp = video_marker.unwrap_or(params.video_marker_amp);
    let d = synth_with(preset, seed, regime, n_train, &params, out)?;
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

pub(crate) fn synth_to(preset: Preset, seed: u64, regime: synth::Regime, n_train: Option<usize>, out: &Path) -> Result<data::Dataset> {
    synth_with(preset, seed, regime, n_train, &synth::SynthParams::for_regime(regime), out)
}

/// `synth_to` with the generator's parameters given (the regime's, or changed by a flag).
fn synth_with(preset: Preset, seed: u64, regime: synth::Regime, n_train: Option<usize>, params: &synth::SynthParams, out: &Path) -> Result<data::Dataset> {
    let preset_shape = DataShape::for_preset(preset);
    let shape = DataShape { n_train: n_train.unwrap_or(preset_shape.n_train), ..preset_shape };
    let (dataset, latents) = synth::generate(preset, seed, &shape, params);
    let manifest = serde_json::json!({"generator": "mmkd synth", "preset": preset.name(), "regime": regime.name(), "seed": seed, "params": params});
    native::save(&dataset, out, manifest)?;
    synth::events(&latents, &shape, params).save(out)?;
    Ok(dataset)
}

/// `data baselines DIR`: what linear baselines and a key detector reach on a synthetic dataset
/// (needs its events.json).
pub(crate) fn baselines(dir: &Path, json: bool) -> Result<()> {
    let dataset = data::load_any(dir)?;
    let Some(events) = data::events::Events::load(dir)? else {
        crate::bail_input!("{}: has no {} (baselines need a synthetic dataset written by this version of `mmkd data synth`)", dir.display(), data::events::EVENTS_FILE);
    };
    let results = data::baselines::run_baselines(&dataset, &events);
    let detector = [0, 1].into_iter().flat_map(|w| data::baselines::key_detectors(&dataset, &events, w)).collect::<Vec<_>>();
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"acc7_baselines": results, "key_detector": detector}))?);
        return Ok(());
    }
    println!("linear baselines (ridge on the score, rounded; penalty chosen on valid) on {} [{}], test split:", dataset.name, dataset.source);
    for r in &results {
        println!("  {:<42} {:>4} features  Acc-7 {:5.1} %", r.baseline, r.features, 100.0 * r.acc7);
    }
    println!("key detector (attention scoring each video frame linearly by its content; the best event share an attention with video keys reaches without knowing when):");
    for d in &detector {
        println!(
            "  {:<62} event share {:.3} against {:.3} uniform ({:.2}x, sharpness {})",
            d.rows,
            d.event_share,
            d.uniform_event_share,
            d.event_share / d.uniform_event_share.max(1e-12),
            d.sharpness
        );
    }
    Ok(())
}

/// `data csd`: four computational sequences to a native dataset. Progress and the summary go to
/// the terminal and to `OUT/csd.log` (appended, with times), which also records a failure.
pub(crate) fn csd(opts: data::csd::BuildOptions) -> Result<()> {
    let t0 = Instant::now();
    std::fs::create_dir_all(&opts.out).map_err(|e| crate::error::input_error(format!("{}: {e}", opts.out.display())))?;
    let log_path = opts.out.join("csd.log");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(|e| crate::error::input_error(format!("{}: {e}", log_path.display())))?;
    let log = std::cell::RefCell::new(log);
    // The log is a convenience: a full disk shows up when the dataset is written.
    let write_log = |line: &str| {
        let _ = std::io::Write::write_all(&mut *log.borrow_mut(), format!("[{:8.1} s] {line}\n", t0.elapsed().as_secs_f64()).as_bytes());
    };
    let say = |line: String| {
        eprintln!("{line}");
        write_log(&line);
    };
    say(format!(
        "data csd: labels {}, text {}, audio {}, video {}, align {}, lengths {:?}",
        opts.labels.display(),
        opts.text.display(),
        opts.audio.display(),
        opts.video.display(),
        opts.align.name(),
        opts.lengths
    ));
    let mut last = Instant::now();
    let result = data::csd::build_native(&opts, |phase, done, total| {
        if last.elapsed().as_secs() >= 2 || done == total {
            last = Instant::now();
            say(format!("{phase}: {done} / {total} videos"));
        }
    });
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            // The terminal gets the error from main, once.
            write_log(&format!("error: {e}"));
            return Err(e);
        }
    };
    for (file, n) in summary.videos_dropped.iter().filter(|(_, n)| **n > 0) {
        say(format!("dropped {n} videos of the {file} file: not in all four files"));
    }
    if summary.videos_in_no_fold > 0 {
        say(format!("dropped {} videos in no fold", summary.videos_in_no_fold));
    }
    if summary.fold_videos_missing > 0 {
        say(format!("{} videos of the folds are in none of the files", summary.fold_videos_missing));
    }
    if summary.segments_skipped > 0 {
        say(format!("skipped {} labels segments shorter than the SDK's epsilon ({} s)", summary.segments_skipped, data::csd::EPSILON));
    }
    for (m, n) in &summary.clips_without {
        say(format!("dropped {n} segments with no {m} row"));
    }
    for (m, n) in &summary.nonfinite_zeroed {
        say(format!("wrote {n} non-finite {m} values as 0"));
    }
    let s = summary.shape.as_ref().expect("build_native sets the shape");
    let done = format!(
        "wrote {} / {} / {} clips (text {}x{}, audio {}x{}, video {}x{}, align {}) to {} in {:.1}s",
        s.n_train,
        s.n_valid,
        s.n_test,
        s.text_len,
        s.text_dim,
        s.audio_len,
        s.audio_dim,
        s.video_len,
        s.video_dim,
        opts.align.name(),
        opts.out.display(),
        t0.elapsed().as_secs_f64()
    );
    write_log(&done);
    println!("{done}");
    Ok(())
}

/// `data inspect`: a .csd through the HDF5 reader, a pickle file through mmkd-pickle, a native
/// directory through the loader.
pub(crate) fn inspect(path: &Path, json: bool) -> Result<()> {
    if path.is_file() && (data::csd::read::is_hdf5(path) || path.extension().is_some_and(|e| e == "csd")) {
        let mut last = Instant::now();
        let report = data::csd::inspect(path, |done, total| {
            if last.elapsed().as_secs() >= 2 {
                last = Instant::now();
                eprintln!("inspect: {done} / {total} videos");
            }
        })?;
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{report}");
        }
        return Ok(());
    }
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
    // Converted pickles record where each modality was padded (`data::pickle::PaddingRecord`).
    let padding = native::read_manifest(path)?.provenance.get("padding").cloned();
    let mut report = serde_json::json!({"format": "mmkd-native", "name": dataset.name, "source": dataset.source, "splits": splits});
    if let Some(padding) = &padding {
        report["padding"] = padding.clone();
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{} ({})\nsource: {}", path.display(), dataset.name, dataset.source);
        for s in &splits {
            println!("  {:5}  n={:6}  text {}  audio {}  video {}  classes -3..3: {}", s["split"].as_str().unwrap_or(""), s["n"], s["text"], s["audio"], s["video"], s["label_histogram"]);
        }
        if let Some(padding) = padding.as_ref().and_then(|p| p.as_object()) {
            println!("padding in the pickle (all-zero frames at the ends of each clip, all splits):");
            for (modality, p) in ["text", "audio", "vision"].into_iter().filter_map(|m| Some((m, padding.get(m)?))) {
                let moved = if p["moved_to_end"].as_bool() == Some(true) { ", real frames moved first" } else { "" };
                println!("  {modality:6}  side {}  start {}  end {}  both {}  none {}  empty {}{moved}", p["side"].as_str().unwrap_or("?"), p["start"], p["end"], p["both"], p["none"], p["empty"]);
            }
        }
    }
    Ok(())
}
