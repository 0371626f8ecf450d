//! A study on the user's own data (issue 17): `study --data` with a MulT pickle, the device in
//! every planned line and in slurm.sh, the dry run, and runs that cannot be mixed up (`eval
//! --data`, `--resume`, `study --collect`). The pickles are tests/fixtures/pickles/study_mult*.pkl
//! (tests/fixtures/make_study_pickles.py): two datasets of the same shape.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mmkd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mmkd")).args(args).env("RAYON_NUM_THREADS", "1").env_remove("MMKD_DEVICE").output().expect("run mmkd")
}

fn ok(args: &[&str]) -> Output {
    let out = mmkd(args);
    assert!(out.status.success(), "mmkd {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    out
}

/// Exit code 2 and one line of error naming every `needles`.
fn refused(args: &[&str], needles: &[&str]) {
    let out = mmkd(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "mmkd {}: {err}", args.join(" "));
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} not in: {err}");
    }
}

fn tempdir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("mmkd-study-data-{tag}-")).tempdir().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pickles").join(name)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn study_on_a_pickle_names_it_and_its_runs_cannot_be_mixed_up() {
    let tmp = tempdir("pickle");
    let out = tmp.path().join("study");
    let pickle = fixture("study_mult.pkl");
    ok(&["study", "--data", s(&pickle), "--preset", "smoke", "--seeds", "2", "--rows", "c5-attention", "--epochs", "1", "--out", s(&out)]);

    // The table names the pickle and the fingerprint of its converted data, never synthetic data.
    let manifest: serde_json::Value = serde_json::from_str(&read(&out.join("data/manifest.json"))).unwrap();
    let fingerprint = manifest["fingerprint"].as_str().expect("the converted data's fingerprint").to_string();
    assert!(fingerprint.starts_with("sha256:") && fingerprint.len() == 7 + 64, "{fingerprint}");
    let rows: serde_json::Value = serde_json::from_str(&read(&out.join("table.json"))).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 5, "teacher, no-KD student and three attention-map rows");
    for row in rows.as_array().unwrap() {
        assert!(row["dataset"].as_str().unwrap().starts_with("study_mult [MulT pickle "), "{row}");
        assert_eq!(row["dataset_fingerprint"], fingerprint.as_str());
        assert_eq!(row["synthetic"], false);
        assert_eq!(row["seeds"], serde_json::json!([1, 2]));
    }
    let short = &fingerprint[..7 + 12];
    for file in ["TABLE.md", "REPORT.md"] {
        let text = read(&out.join(file));
        assert!(text.contains("**study_mult [MulT pickle ") && text.contains(short), "{file}: {text}");
        assert!(!text.to_lowercase().contains("synthetic"), "{file} calls real data synthetic: {text}");
        assert!(!text.contains("event share"), "{file}: no events in real data, no event-share columns");
    }
    // No `data synth` anywhere: the pickle was converted once.
    let plan = read(&out.join("plan.txt"));
    assert!(plan.lines().next().unwrap().contains(&format!("data convert {}", pickle.display())) && !plan.contains("synth"), "{plan}");
    // A line per finished run in study.log: n of total, the run's time, the runs in flight, an ETA.
    let log = read(&out.join("study.log"));
    assert!(log.contains("11/11 done: ") && log.contains("1/11 done: data in ") && log.contains("; in flight: ") && log.contains("; ETA "), "{log}");

    // eval --data OTHER writes eval-<name>.json and leaves eval.json byte-identical.
    let run = out.join("runs/teacher-complete-s1");
    let before = std::fs::read(run.join("eval.json")).unwrap();
    let other = fixture("study_mult_other.pkl");
    ok(&["eval", s(&run), "--data", s(&other)]);
    assert_eq!(std::fs::read(run.join("eval.json")).unwrap(), before);
    let elsewhere: serde_json::Value = serde_json::from_str(&read(&run.join("eval-study_mult_other.json"))).unwrap();
    assert!(elsewhere["dataset"].as_str().unwrap().starts_with("study_mult_other"), "{elsewhere}");
    let custom = tmp.path().join("custom.json");
    ok(&["eval", s(&run), "--data", s(&other), "--out", s(&custom), "--drop", "audio"]);
    assert!(custom.exists());
    // On its own data eval rewrites eval.json with the same numbers (lengths in converted data
    // do not change a network trained without the key-padding mask).
    ok(&["eval", s(&run)]);
    assert_eq!(std::fs::read(run.join("eval.json")).unwrap(), before);

    // --resume refuses a setting that changes the result, naming the field and both values.
    let data = out.join("data");
    let teacher = ["train", "teacher", "--preset", "smoke", "--out", s(&run), "--resume", "--epochs", "2"];
    refused(&[&teacher[..], &["--data", s(&data), "--seed", "2"]].concat(), &["cannot --resume", "'train.seed'", "saved 1, new 2"]);
    refused(&[&teacher[..], &["--data", s(&data), "--seed", "1", "--lr", "0.01"]].concat(), &["'train.lr'", "saved 0.001, new 0.01"]);
    refused(&[&teacher[..], &["--data", s(&other), "--seed", "1"]].concat(), &["'dataset_fingerprint'", &fingerprint]);
    refused(&[&teacher[..], &["--data", s(&data), "--seed", "1", "--d-model", "8"]].concat(), &["'model.d_model'", "saved 16, new 8"]);
    let student = out.join("runs/student-c5-attention-map-edam-s-s1");
    let distill = ["distill", "--teacher", s(&run), "--config", "5", "--level", "attention-map", "--method", "edam-s", "--seed", "1", "--out", s(&student), "--resume", "--epochs", "2"];
    refused(&[&distill[..], &["--beta", "0.5"]].concat(), &["'role.distill.beta'", "saved 0.8, new 0.5"]);
    // More epochs continue a finished run (the documented exception).
    ok(&[&teacher[..], &["--data", s(&data), "--seed", "1"]].concat());
    let cfg: serde_json::Value = serde_json::from_str(&read(&run.join("config.json"))).unwrap();
    assert_eq!(cfg["train"]["epochs"], 2);
    assert_eq!(cfg["dataset_fingerprint"], fingerprint.as_str());
    assert_eq!(cfg["device"], "flex");

    // study --collect refuses a run of other data, of another preset, or outside the plan.
    ok(&["study", "--collect", s(&out)]);
    let intruder = out.join("runs/teacher-complete-s2");
    ok(&["train", "teacher", "--data", s(&other), "--preset", "smoke", "--epochs", "1", "--seed", "2", "--out", s(&intruder), "--force"]);
    refused(&["study", "--collect", s(&out)], &["teacher-complete-s2", "trained on dataset study_mult_other", &fingerprint[..7 + 12]]);
    ok(&["train", "teacher", "--data", s(&data), "--preset", "small", "--epochs", "1", "--seed", "2", "--out", s(&intruder), "--force"]);
    refused(&["study", "--collect", s(&out)], &["teacher-complete-s2", "preset small", "preset smoke"]);
    std::fs::remove_dir_all(&intruder).unwrap();
    ok(&["train", "teacher", "--data", s(&data), "--preset", "smoke", "--epochs", "1", "--seed", "9", "--out", s(&out.join("runs/teacher-complete-s9"))]);
    refused(&["study", "--collect", s(&out)], &["teacher-complete-s9", "not a run of this study's plan"]);
    refused(&["study", "--collect", s(&out), "--data", s(&other)], &["planned for the pickle", "study_mult_other.pkl"]);
}

#[test]
fn plan_for_a_gpu_cluster_carries_the_device_and_asks_slurm_for_gpus() {
    let tmp = tempdir("plan");
    let out = tmp.path().join("study");
    // Planned where no GPU is (and without the cuda feature): planning computes nothing.
    let o = ok(&["--device", "cuda", "study", "--data", s(&fixture("study_mult.pkl")), "--preset", "paper", "--plan", "--out", s(&out)]);
    let lines = String::from_utf8(o.stdout).unwrap();
    assert_eq!(lines.lines().count(), 1 + 5 * 4 + 5 + 5 * 14, "the conversion, 4 teachers and 15 student rows for 5 seeds");
    assert!(lines.lines().all(|l| l.ends_with(" --device cuda")), "{lines}");
    assert!(!lines.contains("data synth") && lines.lines().next().unwrap().contains(" data convert "), "{lines}");
    let slurm = read(&out.join("slurm.sh"));
    assert_eq!(slurm.matches("--gres=gpu:1").count(), 2, "teachers and students ask for a GPU each, the conversion none: {slurm}");
    assert!(slurm.contains("--dependency=afterok:$dep") && slurm.contains("prev=$(submit plan-2.txt"), "{slurm}");
    for flag in ["--cpus-per-task=4", "--mem=", "--time="] {
        assert!(slurm.contains(flag), "{flag}: {slurm}");
    }
    assert!(read(&out.join("plan-1.txt")).contains("train teacher"));
    let study: serde_json::Value = serde_json::from_str(&read(&out.join("study.json"))).unwrap();
    assert_eq!(study["device"], "cuda");
    assert_eq!(study["data"]["kind"], "pickle");

    // MMKD_DEVICE reaches the lines too; a native directory is read in place (no data step).
    let native = tmp.path().join("native");
    ok(&["data", "convert", s(&fixture("study_mult.pkl")), "--out", s(&native)]);
    let o = Command::new(env!("CARGO_BIN_EXE_mmkd"))
        .args(["study", "--data", s(&native), "--preset", "smoke", "--seeds", "1", "--rows", "c5-attention", "--plan", "--out", s(&tmp.path().join("native-study"))])
        .env("MMKD_DEVICE", "cuda")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = String::from_utf8(o.stdout).unwrap();
    assert_eq!(lines.lines().count(), 5, "no data step: {lines}");
    assert!(lines.lines().all(|l| l.ends_with(" --device cuda")) && lines.contains(&format!("--data {}", native.display())), "{lines}");
    // ... and run there: nothing is copied into the study folder, the table names the dataset.
    let study = tmp.path().join("native-run");
    ok(&["study", "--data", s(&native), "--preset", "smoke", "--seeds", "1", "--rows", "c5-attention", "--epochs", "1", "--out", s(&study)]);
    assert!(!study.join("data").exists(), "read in place");
    let table = read(&study.join("TABLE.md"));
    assert!(table.contains("**study_mult [MulT pickle ") && table.contains("the user's data"), "{table}");
    // A directory that is no dataset is refused before anything is planned.
    refused(&["study", "--data", s(tmp.path()), "--plan", "--out", s(&tmp.path().join("x"))], &["no manifest.json"]);
}

#[test]
fn dry_run_measures_every_run_kind_and_feeds_slurm_limits() {
    let tmp = tempdir("dry");
    let out = tmp.path().join("study");
    let o = ok(&["study", "--data", s(&fixture("study_mult.pkl")), "--preset", "smoke", "--seeds", "3", "--rows", "c5-attention", "--dry-run", "--dry-run-batches", "2", "--out", s(&out)]);
    let md = String::from_utf8(o.stdout).unwrap();
    assert_eq!(md, read(&out.join("DRY-RUN.md")));
    let report: serde_json::Value = serde_json::from_str(&read(&out.join("dry-run/report.json"))).unwrap();
    let kinds = report["kinds"].as_array().unwrap();
    let names: Vec<&str> = kinds.iter().map(|k| k["kind"].as_str().unwrap()).collect();
    assert_eq!(names, ["student-c5-nokd", "teacher-complete", "student-c5-attention-map-crd", "student-c5-attention-map-edam-s", "student-c5-attention-map-edam-t"]);
    for k in kinds {
        let m = &k["measured"];
        assert_eq!(m["step_s"].as_array().unwrap().len(), 2, "{k}");
        assert!(m["median_step_s"].as_f64().unwrap() > 0.0 && m["peak_rss_bytes"].as_u64().unwrap() > 1_000_000, "{k}");
        // 48 training clips at batch 16: 3 batches an epoch; the smoke recipe's 2 epochs.
        assert_eq!((m["train_batches"].as_u64(), m["epochs"].as_u64()), (Some(3), Some(2)), "{k}");
        let expected = 2.0 * (3.0 * m["median_step_s"].as_f64().unwrap() + m["valid_batches"].as_f64().unwrap() * m["eval_batch_s"].as_f64().unwrap())
            + m["test_batches"].as_f64().unwrap() * m["eval_batch_s"].as_f64().unwrap();
        assert!((m["estimated_run_s"].as_f64().unwrap() - expected).abs() < 1e-9, "{k}");
        assert_eq!(k["runs"], 3, "one teacher and one student per seed: {k}");
    }
    let serial: f64 = kinds.iter().map(|k| k["runs"].as_f64().unwrap() * k["measured"]["estimated_run_s"].as_f64().unwrap()).sum();
    assert!((report["serial_s"].as_f64().unwrap() - serial).abs() < 1e-9);
    assert_eq!(report["synthetic"], false);
    assert!(md.contains("study_mult") && md.contains("| teacher-complete | 3 | 16 |"), "{md}");
    // A dry run leaves no finished run behind, and slurm.sh now takes its limits from it.
    assert!(!out.join("runs").exists() && !out.join("dry-run/teacher-complete/eval.json").exists());
    assert!(read(&out.join("slurm.sh")).contains("the dry run's peak RSS"));
}
