//! The commands run in process, without spawning the binary: `mmkd::cli::run` on a parsed line.

use clap::Parser;
use mmkd::cli::{Cli, exit_code, run};

fn line(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("mmkd").chain(args.iter().copied())).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn synth_train_and_eval_in_process() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, run_dir) = (tmp.path().join("data"), tmp.path().join("student"));
    let (data_s, run_s) = (data.to_str().unwrap(), run_dir.to_str().unwrap());
    run(line(&["data", "synth", "--preset", "smoke", "--seed", "2", "--out", data_s])).unwrap();
    assert!(data.join("manifest.json").exists());
    run(line(&["train", "student", "--data", data_s, "--preset", "smoke", "--epochs", "1", "--out", run_s])).unwrap();
    let eval: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("eval.json")).unwrap()).unwrap();
    assert!(eval["acc7"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)), "{eval}");
    // The configuration is written as its number.
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["role"]["config"], 5);
    // Bad input is an error with exit code 2, not a panic.
    let e = run(line(&["train", "student", "--data", data_s, "--preset", "smoke", "--out", run_s])).unwrap_err();
    assert_eq!(exit_code(&e), 2, "{e}");
    assert!(e.to_string().contains("already holds a run"), "{e}");
    let e = run(line(&["eval", tmp.path().join("nothing").to_str().unwrap()])).unwrap_err();
    assert_eq!(exit_code(&e), 2, "{e}");
    // Branch dropout: out of range is refused before anything is written; in range, the run's
    // config records it.
    let teacher = tmp.path().join("teacher");
    let teacher_s = teacher.to_str().unwrap();
    let e = run(line(&["train", "teacher", "--data", data_s, "--preset", "smoke", "--branch-dropout", "1", "--out", teacher_s])).unwrap_err();
    assert_eq!(exit_code(&e), 2, "{e}");
    assert!(e.to_string().contains("--branch-dropout must be at least 0 and below 1, got 1"), "{e}");
    assert!(!teacher.exists(), "nothing written for a refused run");
    run(line(&["train", "teacher", "--data", data_s, "--preset", "smoke", "--epochs", "1", "--branch-dropout", "0.5", "--out", teacher_s])).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(teacher.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["model"]["branch_dropout"], 0.5);
}

#[test]
fn a_student_configuration_outside_1_to_5_is_refused_when_parsing() {
    let e = Cli::try_parse_from(["mmkd", "params", "--config", "7"]).err().expect("refused");
    assert!(e.to_string().contains("student configuration 7 does not exist (1..=5)"), "{e}");
}

/// `data synth --video-marker` changes only the marker: the manifest records the amplitude,
/// the video of the event frames moves while text, audio and labels stay the regime's, and a
/// negative amplitude is refused.
#[test]
fn a_video_marker_flag_changes_the_marker_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let synth = |name: &str, marker: Option<&str>| {
        let out = tmp.path().join(name);
        let mut args = vec!["data", "synth", "--preset", "smoke", "--regime", "lookup", "--out", out.to_str().unwrap()];
        args.extend(marker.map(|m| ["--video-marker", m]).into_iter().flatten());
        run(line(&args)).map(|_| out)
    };
    let (plain, faint) = (synth("plain", None).unwrap(), synth("faint", Some("1.0")).unwrap());
    let manifest = |dir: &std::path::Path| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap() };
    assert_eq!(manifest(&plain)["provenance"]["params"]["video_marker_amp"], 2.0);
    assert_eq!(manifest(&faint)["provenance"]["params"]["video_marker_amp"], 1.0);
    let (a, b) = (mmkd::data::load_any(&plain).unwrap(), mmkd::data::load_any(&faint).unwrap());
    assert_eq!((&a.train.text, &a.train.audio, &a.train.labels), (&b.train.text, &b.train.audio, &b.train.labels));
    assert_ne!(a.train.video, b.train.video);
    let e = synth("bad", Some("-1")).unwrap_err().to_string();
    assert!(e.contains("--video-marker must be a finite amplitude >= 0, got -1"), "{e}");
}

#[test]
fn lookup_data_has_events_baselines_and_event_shares_in_maps() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, teacher) = (tmp.path().join("data"), tmp.path().join("teacher"));
    let (data_s, teacher_s) = (data.to_str().unwrap(), teacher.to_str().unwrap());
    run(line(&["data", "synth", "--preset", "smoke", "--regime", "lookup", "--out", data_s])).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(data.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["provenance"]["regime"], "lookup", "{manifest}");
    let events = mmkd::data::events::Events::load(&data).unwrap().expect("events.json");
    assert_eq!(events.test.len(), 48);
    run(line(&["data", "baselines", data_s])).unwrap();
    run(line(&["train", "teacher", "--data", data_s, "--preset", "smoke", "--epochs", "1", "--out", teacher_s])).unwrap();
    run(line(&["maps", teacher_s, "--json"])).unwrap();
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(teacher.join("maps/stats.json")).unwrap()).unwrap();
    let va = stats["transformers"].as_array().unwrap().iter().find(|t| t["id"] == "V<-A").expect("V<-A traced");
    for layer in va["layers"].as_array().unwrap() {
        let (share, uniform) = (layer["event_share"].as_f64().unwrap(), layer["uniform_event_share"].as_f64().unwrap());
        assert!((0.0..=1.0).contains(&share) && uniform > 0.0 && uniform < 1.0, "{layer}");
        assert!(layer["entropy"].as_f64().unwrap() <= layer["uniform_entropy"].as_f64().unwrap() + 1e-6);
    }
    // --split valid: the statistics of the validation clips with their own events (where
    // criteria are set), not the test split's.
    run(line(&["maps", teacher_s, "--split", "valid", "--samples", "16", "--json"])).unwrap();
    let valid: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(teacher.join("maps/stats.json")).unwrap()).unwrap();
    let dataset = mmkd::data::load_any(&data).unwrap();
    let net = mmkd::Run::open(&teacher).unwrap().load_best(&mmkd::Device::flex()).unwrap();
    let share = |split: &mmkd::data::Split, starts: &[usize]| {
        let frames = mmkd::eval::maps::EventFrames { starts, width: events.burst_frames };
        let (stats, _) = mmkd::eval::maps::attention_maps(&net, split, &dataset.shape, 16, 1.0, Some(frames), &mmkd::Device::flex());
        serde_json::to_value(mmkd::eval::maps::by_transformer(&stats)).unwrap()
    };
    // (serde_json's text round trip may move the last bit: compare the event shares to 1e-12.)
    let shares =
        |v: &serde_json::Value| -> Vec<f64> { v["transformers"].as_array().unwrap().iter().flat_map(|t| t["layers"].as_array().unwrap().iter().map(|l| l["event_share"].as_f64().unwrap())).collect() };
    let close = |a: &[f64], b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
    assert!(close(&shares(&valid), &shares(&share(&dataset.valid, &events.valid))));
    assert!(!close(&shares(&valid), &shares(&share(&dataset.test, &events.test))));
}

/// Early stopping: with a learning rate of 0 the validation loss never improves on epoch 1, so
/// patience 1 ends training after epoch 2 of 6; resuming the stopped run trains nothing more.
/// The shuffled control is refused where the loss does not compare clip by clip.
#[test]
fn early_stopping_ends_a_run_whose_validation_loss_stalls() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, teacher) = (tmp.path().join("data"), tmp.path().join("teacher"));
    let (data_s, teacher_s) = (data.to_str().unwrap(), teacher.to_str().unwrap());
    run(line(&["data", "synth", "--preset", "smoke", "--out", data_s])).unwrap();
    run(line(&["train", "teacher", "--data", data_s, "--preset", "smoke", "--epochs", "6", "--lr", "0", "--early-stop", "1", "--out", teacher_s])).unwrap();
    let epochs = || std::fs::read_to_string(teacher.join("metrics.jsonl")).unwrap().lines().count();
    assert_eq!(epochs(), 2);
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(teacher.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["train"]["early_stop"], 1);
    run(line(&["train", "teacher", "--data", data_s, "--preset", "smoke", "--epochs", "6", "--lr", "0", "--early-stop", "1", "--resume", "--out", teacher_s])).unwrap();
    assert_eq!(epochs(), 2, "a resumed early-stopped run stays stopped");
    let e = run(line(&["train", "teacher", "--data", data_s, "--preset", "smoke", "--early-stop", "0", "--out", tmp.path().join("t0").to_str().unwrap()])).unwrap_err();
    assert_eq!(exit_code(&e), 2, "{e}");
    let student = tmp.path().join("student");
    let e = run(line(&["distill", "--teacher", teacher_s, "--level", "final", "--method", "crd", "--teacher-signal", "shuffled", "--out", student.to_str().unwrap()])).unwrap_err();
    assert_eq!(exit_code(&e), 2, "{e}");
    assert!(e.to_string().contains("--teacher-signal shuffled works at the attention-map and post-attention levels"), "{e}");
}
