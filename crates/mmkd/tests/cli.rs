//! The command line end to end on the smoke preset: exit codes, files, error messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mmkd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mmkd")).args(args).env("RAYON_NUM_THREADS", "1").output().expect("run mmkd")
}

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mmkd-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn synth_train_eval_params_end_to_end() {
    let dir = tempdir("e2e");
    let data = dir.join("data");
    let out = mmkd(&["data", "synth", "--preset", "smoke", "--seed", "4", "--out", s(&data)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest = json(&data.join("manifest.json"));
    assert_eq!(manifest["synthetic"], true);

    let out = mmkd(&["data", "inspect", s(&data), "--json"]);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["splits"][0]["video"], serde_json::json!([96, 12, 35]));

    let run = dir.join("teacher");
    let out = mmkd(&["train", "teacher", "--data", s(&data), "--preset", "smoke", "--out", s(&run), "--epochs", "1", "--branch", "audio"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let eval = json(&run.join("eval.json"));
    for key in ["acc7", "f1_weighted", "f1_macro", "mae", "corr", "acc2", "f1_binary", "majority_rate"] {
        assert!(eval[key].is_number(), "eval.json lacks {key}");
    }
    assert!(eval["dataset"].as_str().unwrap().contains("synthetic"), "reports name their dataset");
    let cfg = json(&run.join("config.json"));
    assert_eq!(cfg["role"]["teacher"], "audio");
    assert_eq!(cfg["train"]["epochs"], 1);

    let run_s = dir.join("student");
    let out = mmkd(&["train", "student", "--data", s(&data), "--preset", "smoke", "--out", s(&run_s), "--epochs", "1", "--config", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let out = mmkd(&["eval", s(&run_s), "--json"]);
    assert!(out.status.success());
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["acc7"], json(&run_s.join("eval.json"))["acc7"]);

    let out = mmkd(&["params", "--preset", "paper", "--json"]);
    assert!(out.status.success());
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (t, st) = (p["teacher"]["total"].as_f64().unwrap(), p["student"]["total"].as_f64().unwrap());
    assert!(t > st && t > 1.7e6 && st > 0.6e6);
}

#[test]
fn bad_input_exits_2_with_a_named_error() {
    let dir = tempdir("bad");
    let out = mmkd(&["train", "teacher", "--data", s(&dir.join("nope")), "--out", s(&dir.join("r"))]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope") && err.contains("no such dataset"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");

    let out = mmkd(&["train", "student", "--data", "x", "--out", "y", "--config", "7"]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");

    let out = mmkd(&["eval", s(&dir)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no config.json"));
}

#[test]
fn smoke_study_writes_every_row_of_table1() {
    let dir = tempdir("study");
    let out = mmkd(&["study", "--preset", "smoke", "--seeds", "1", "--epochs", "1", "--jobs", "2", "--out", s(&dir)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = json(&dir.join("table.json"));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 19, "every row of Table 1");
    for r in rows {
        for key in ["role", "config", "teacher", "level", "method", "acc7_mean", "acc7_std", "f1_mean", "f1_std", "params", "seeds", "dataset"] {
            assert!(r.get(key).is_some(), "row lacks {key}: {r}");
        }
        assert!(r["dataset"].as_str().unwrap().contains("synthetic"));
    }
    let kd: Vec<_> = rows.iter().filter(|r| r["level"] != "none").map(|r| (r["config"].as_u64().unwrap(), r["level"].as_str().unwrap(), r["method"].as_str().unwrap())).collect();
    assert!(kd.contains(&(5, "attention-map", "edam-t")) && kd.contains(&(1, "attention-map", "edam-s")) && kd.contains(&(4, "penultimate", "crd")));
    let md = std::fs::read_to_string(dir.join("TABLE.md")).unwrap();
    assert!(md.contains("synthetic") && md.contains("paper MOSEI"));
    assert!(dir.join("table.csv").exists() && dir.join("slurm.sh").exists());

    // Started again, the study skips finished runs and writes the same table.
    let again = mmkd(&["study", "--preset", "smoke", "--seeds", "1", "--epochs", "1", "--out", s(&dir)]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("39 already finished") || String::from_utf8_lossy(&again.stderr).contains("20 already finished"), "{}", String::from_utf8_lossy(&again.stderr));

    // --plan prints one command per run, teachers before students; --collect rebuilds the table.
    let plan = mmkd(&["study", "--preset", "smoke", "--seeds", "2", "--plan", "--out", s(&dir.join("p"))]);
    let text = String::from_utf8_lossy(&plan.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 8 + 30);
    let first_distill = lines.iter().position(|l| l.contains(" distill ")).unwrap();
    let last_teacher = lines.iter().rposition(|l| l.contains(" train teacher ")).unwrap();
    assert!(last_teacher < first_distill);
    let collect = mmkd(&["study", "--collect", s(&dir)]);
    assert!(collect.status.success());
    assert!(String::from_utf8_lossy(&collect.stdout).contains("Student c5: EDAM-T"));
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pickles").join(name)
}

#[test]
fn mosei_pickles_inspect_convert_and_train() {
    let dir = tempdir("pickle");
    let out = mmkd(&["data", "inspect", s(&fixture("mult_p4_defects.pkl")), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["format"], "MulT");
    let train = &r["splits"][0];
    assert_eq!(train["name"], "train");
    let audio = train["modalities"].as_array().unwrap().iter().find(|m| m["name"] == "audio").unwrap();
    assert_eq!((audio["nan"].as_u64(), audio["neg_inf"].as_u64()), (Some(2), Some(3)));

    // Training reads the MulT pickle directly.
    let run = dir.join("t");
    let out = mmkd(&["train", "teacher", "--data", s(&fixture("mult_p2_f32.pkl")), "--preset", "smoke", "--out", s(&run), "--epochs", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let eval = json(&run.join("eval.json"));
    assert!(eval["dataset"].as_str().unwrap().contains("MulT pickle"), "{}", eval["dataset"]);

    // Conversion writes the native format, with the repairs recorded.
    let native = dir.join("native");
    let out = mmkd(&["data", "convert", s(&fixture("mult_p4_defects.pkl")), "--out", s(&native)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m = json(&native.join("manifest.json"));
    assert_eq!(m["synthetic"], false);
    assert!(!m["provenance"]["repairs"].as_array().unwrap().is_empty());
    let out = mmkd(&["data", "inspect", s(&native), "--json"]);
    assert!(out.status.success());

    for broken in ["broken_truncated.pkl", "broken_wrong_key.pkl", "broken_wrong_shape.pkl", "broken_forbidden_global.pkl", "broken_mismatched_n.pkl"] {
        for args in [vec!["data", "inspect", s(&fixture(broken))], vec!["train", "teacher", "--data", s(&fixture(broken)), "--out", s(&dir.join("x"))]] {
            let out = mmkd(&args);
            assert_eq!(out.status.code(), Some(2), "{broken}: {}", String::from_utf8_lossy(&out.stderr));
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(err.trim_end().lines().count(), 1, "{broken}: one line: {err}");
            assert!(err.contains(broken), "{broken}: the error names the file: {err}");
        }
    }
}
