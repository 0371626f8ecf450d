//! Predictions of a trained run, one row per clip: how a deployed student is used.
//!
//! A student reads video alone, so a dataset (native directory or pickle) that holds only video
//! features and ids is enough for it; a teacher refuses such data with a message that says which
//! modality is missing. Rows carry the clip id, the true score when the data has one, the seven
//! class probabilities, the expected score under them, and the most probable class.

use std::path::Path;

use anyhow::Result;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use serde::Serialize;

use crate::data::labels::{NUM_CLASSES, score_of};
use crate::data::{self, Split, epoch_order};
use crate::model::TraceRequest;
use crate::run::RunConfig;
use crate::run::weights;

/// Which splits to predict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitChoice {
    /// The test split.
    Test,
    /// The validation split.
    Valid,
    /// The training split.
    Train,
    /// Every split the data holds, in the order train, valid, test.
    All,
}
crate::choice::impl_choice!(SplitChoice {
    Test => "test", "The test split";
    Valid => "valid", "The validation split";
    Train => "train", "The training split";
    All => "all", "Every split the data holds, in the order train, valid, test";
});

/// Output format of `mmkd predict`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated, with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}
crate::choice::impl_choice!(Format {
    Csv => "csv", "Comma-separated, with a header row";
    Jsonl => "jsonl", "One JSON object per line";
});

/// One clip's prediction.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    /// The clip id from the data.
    pub id: String,
    /// The true sentiment score, when the data has it.
    pub score: Option<f32>,
    /// Class probabilities for the scores -3..=3.
    pub probs: [f32; NUM_CLASSES],
    /// Expected score under `probs`.
    pub expected: f32,
    /// The most probable class, as its score (-3..=3).
    pub class: i32,
}

impl Prediction {
    fn new(id: String, label: f32, probs: [f32; NUM_CLASSES]) -> Self {
        let expected = probs.iter().enumerate().map(|(k, p)| p * score_of(k)).sum();
        let best = probs.iter().enumerate().fold(0, |best, (k, p)| if *p > probs[best] { k } else { best });
        Prediction { id, score: label.is_finite().then_some(label), probs, expected, class: score_of(best) as i32 }
    }
}

/// A trained network loaded for prediction: what a program that deploys a student holds (the
/// crate's documentation has the five-line example).
pub struct Predictor {
    run: crate::run::Run,
    net: crate::model::MultimodalNet,
    device: Device,
}

impl Predictor {
    /// The best weights of the run in `run`, on `device`, in inference mode.
    pub fn load(run: impl AsRef<Path>, device: &Device) -> Result<Predictor> {
        let run = crate::run::Run::open(run)?;
        let net = run.load_best(device)?.valid();
        Ok(Predictor { run, net, device: device.clone() })
    }

    /// The run it was loaded from.
    pub fn run(&self) -> &crate::run::Run {
        &self.run
    }

    /// `[frames, features]` of the video a clip must have (the shape the run was trained on).
    pub fn video_shape(&self) -> [usize; 2] {
        let shape = &self.run.config().shape;
        [shape.video_len, shape.video_dim]
    }

    /// Predict clips from their video features, `[clips, frames, features]` (a student; a
    /// teacher also needs audio and text and is refused). The shape is checked: an input error
    /// names the expected and the actual one.
    pub fn predict_video(&self, video: Tensor<3>) -> Result<Vec<Prediction>> {
        let needs = self.net.inputs();
        if needs.iter().any(|m| *m != crate::model::Modality::Video) {
            crate::bail_input!("{}: is a teacher, which reads {}; only a student predicts from video alone", self.run.dir().display(), needs.iter().map(|m| m.name()).collect::<Vec<_>>().join(", "));
        }
        let [clips, frames, features] = video.dims();
        let [want_frames, want_features] = self.video_shape();
        if (frames, features) != (want_frames, want_features) {
            crate::bail_input!("video: expected [clips, {want_frames}, {want_features}] (the shape {} was trained on), got [{clips}, {frames}, {features}]", self.run.dir().display());
        }
        let input = crate::input::NetInput { text: None, audio: None, video: video.to_device(&self.device), lengths: None };
        let probs = softmax(self.net.forward(&input, &TraceRequest::none()).logits, 1);
        let values: Vec<f32> = probs.into_data().try_to_vec().map_err(|e| anyhow::anyhow!("reading probabilities: {e:?}"))?;
        Ok(values.chunks_exact(NUM_CLASSES).enumerate().map(|(i, p)| Prediction::new(i.to_string(), f32::NAN, p.try_into().expect("NUM_CLASSES values"))).collect())
    }
}

/// A run folder holding an untrained smoke-preset student (config 5) in `dir`/student: the
/// setting of the `Predictor` example.
#[doc(hidden)]
pub fn example_student_run(dir: &Path) -> Result<std::path::PathBuf> {
    use crate::config::{DataShape, ModelConfig, Preset, TrainConfig};
    let run = dir.join("student");
    std::fs::create_dir_all(&run)?;
    let cfg = RunConfig {
        role: crate::run::RunRole::Student { config: crate::model::StudentConfig::C5, streams: crate::model::StudentStreams::Downsampled, distill: None },
        preset: Preset::Smoke,
        data: dir.join("data"),
        dataset: "example".into(),
        shape: DataShape::for_preset(Preset::Smoke),
        model: ModelConfig::for_preset(Preset::Smoke),
        train: TrainConfig::for_preset(Preset::Smoke),
        dataset_fingerprint: None,
        device: None,
    };
    crate::durable::write_atomic(&run.join(crate::run::files::CONFIG), serde_json::to_string_pretty(&cfg)?.as_bytes())?;
    weights::save_safetensors(&cfg.build_net(&Device::flex()), &run.join(crate::run::files::BEST_WEIGHTS))?;
    Ok(run)
}

/// Predict every clip of the chosen splits of `data` with the best checkpoint of `run`.
pub fn predict(run: &Path, data_path: &Path, choice: SplitChoice, batch_size: usize, device: &Device) -> Result<Vec<Prediction>> {
    let opened = crate::run::Run::open(run)?;
    let cfg = opened.config();
    let net = opened.load_best(device)?;
    let names: &[&str] = match choice {
        SplitChoice::Test => &["test"],
        SplitChoice::Valid => &["valid"],
        SplitChoice::Train => &["train"],
        SplitChoice::All => &["train", "valid", "test"],
    };
    let loaded = data::load_for_prediction(data_path, names, choice == SplitChoice::All)?;
    // The network is built for the run's shape; the data must match it in what the network reads.
    let needs = net.inputs();
    for split in &loaded.splits {
        if let Some(m) = needs.iter().find(|&&m| !split.has(m)) {
            let reads: Vec<&str> = needs.iter().map(|m| m.name()).collect();
            crate::bail_input!(
                "{}: the run reads {}, but split '{}' of {} has no {} features (video-only data serves students)",
                run.display(),
                reads.join(", "),
                split.name,
                data_path.display(),
                m.name()
            );
        }
    }
    let (have, want) = (&loaded.shape, &cfg.shape);
    for m in &needs {
        let (got, expect) = match m {
            crate::model::Modality::Video => ((have.video_len, have.video_dim), (want.video_len, want.video_dim)),
            crate::model::Modality::Audio => ((have.audio_len, have.audio_dim), (want.audio_len, want.audio_dim)),
            crate::model::Modality::Text => ((have.text_len, have.text_dim), (want.text_len, want.text_dim)),
        };
        if got != expect {
            crate::bail_input!("{}: {} features are {} steps x {} dims per clip, but run {} was trained on {} x {}", data_path.display(), m.name(), got.0, got.1, run.display(), expect.0, expect.1);
        }
    }
    let mut rows = Vec::new();
    for split in &loaded.splits {
        rows.extend(predict_split(&net, split, want, batch_size, device));
    }
    Ok(rows)
}

fn predict_split(net: &crate::model::MultimodalNet, split: &Split, shape: &crate::config::DataShape, batch_size: usize, device: &Device) -> Vec<Prediction> {
    let mut out = Vec::with_capacity(split.len());
    for idx in epoch_order(split.len(), batch_size, 0, 0, false) {
        let batch = split.batch(shape, &idx, device);
        let logits = crate::model::parts::logits_in_parts(net, &batch.input, crate::model::parts::INFERENCE_ROWS_PER_PART);
        let probs: Vec<f32> = softmax(logits, 1).into_data().try_to_vec().expect("f32 probabilities");
        for (&i, p) in idx.iter().zip(probs.chunks_exact(NUM_CLASSES)) {
            out.push(Prediction::new(split.ids[i].clone(), split.labels[i], p.try_into().expect("7 classes")));
        }
    }
    out
}

/// Write predictions as CSV (header `id,score,p_-3,...,p_3,expected,class`) or JSON lines.
pub fn write(rows: &[Prediction], format: Format, out: impl std::io::Write) -> Result<()> {
    match format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            let mut header = vec!["id".to_string(), "score".to_string()];
            header.extend((0..NUM_CLASSES).map(|k| format!("p_{}", score_of(k))));
            header.extend(["expected".to_string(), "class".to_string()]);
            w.write_record(&header)?;
            for r in rows {
                let mut rec = vec![r.id.clone(), r.score.map(|s| s.to_string()).unwrap_or_default()];
                rec.extend(r.probs.iter().map(|p| p.to_string()));
                rec.extend([r.expected.to_string(), r.class.to_string()]);
                w.write_record(&rec)?;
            }
            w.flush()?;
        }
        Format::Jsonl => {
            let mut out = out;
            for r in rows {
                let mut obj = serde_json::json!({"id": r.id, "score": r.score});
                for (k, p) in r.probs.iter().enumerate() {
                    obj[format!("p_{}", score_of(k))] = serde_json::json!(p);
                }
                obj["expected"] = serde_json::json!(r.expected);
                obj["class"] = serde_json::json!(r.class);
                writeln!(out, "{obj}")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_holds_expected_score_and_argmax_class() {
        let p = [0.0, 0.1, 0.2, 0.0, 0.0, 0.6, 0.1];
        let r = Prediction::new("c".into(), f32::NAN, p);
        // -2 * 0.1 - 1 * 0.2 + 2 * 0.6 + 3 * 0.1 = 1.1
        assert!((r.expected - 1.1).abs() < 1e-6, "{}", r.expected);
        assert_eq!(r.class, 2);
        assert_eq!(r.score, None);
        let mut buf = Vec::new();
        write(&[r.clone(), Prediction::new("d".into(), -1.5, p)], Format::Csv, &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "id,score,p_-3,p_-2,p_-1,p_0,p_1,p_2,p_3,expected,class");
        assert!(lines[1].starts_with("c,,0,0.1,0.2,"), "{}", lines[1]);
        assert!(lines[2].starts_with("d,-1.5,"), "{}", lines[2]);
        let mut buf = Vec::new();
        write(&[r], Format::Jsonl, &mut buf).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["class"], 2);
        assert!(v["score"].is_null() && v["p_2"].as_f64().unwrap() > 0.59);
    }
}
