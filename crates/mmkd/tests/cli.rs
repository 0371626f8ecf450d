//! The command line end to end on the smoke preset: exit codes, files, error messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mmkd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mmkd")).args(args).env("RAYON_NUM_THREADS", "1").output().expect("run mmkd")
}

fn tempdir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("mmkd-cli-{tag}-")).tempdir().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn synth_train_eval_params_end_to_end() {
    let dir_guard = tempdir("e2e");
    let dir = dir_guard.path();
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

    // `eval` evaluates the saved best weights again: the same report as the one training wrote
    // (read before `eval` rewrites the file), metric for metric.
    let trained = json(&run_s.join("eval.json"));
    let out = mmkd(&["eval", s(&run_s), "--json"]);
    assert!(out.status.success());
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again, trained);
    // And independently of `eval`'s code: Acc-7 from `predict`'s classes and the true scores
    // (rounded and clipped to -3..3, as the 7 classes are defined).
    let csv_path = dir.join("predictions.csv");
    let out = mmkd(&["predict", s(&run_s), "--data", s(&data), "--out", s(&csv_path)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    let (score, class) = (col("score"), col("class"));
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let hits = records.iter().filter(|r| r[score].parse::<f64>().unwrap().round().clamp(-3.0, 3.0) as i64 == r[class].parse::<i64>().unwrap()).count();
    let acc7 = hits as f64 / records.len() as f64;
    assert!((acc7 - trained["acc7"].as_f64().unwrap()).abs() < 1e-12, "predict gives Acc-7 {acc7}, eval {}", trained["acc7"]);

    let out = mmkd(&["params", "--preset", "paper", "--json"]);
    assert!(out.status.success());
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (t, st) = (p["teacher"]["total"].as_f64().unwrap(), p["student"]["total"].as_f64().unwrap());
    assert!(t > st && t > 1.7e6 && st > 0.6e6);
}

#[test]
fn bad_input_exits_2_with_a_named_error() {
    let dir_guard = tempdir("bad");
    let dir = dir_guard.path();
    let out = mmkd(&["train", "teacher", "--data", s(&dir.join("nope")), "--out", s(&dir.join("r"))]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope") && err.contains("no such dataset"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");

    let out = mmkd(&["train", "student", "--data", "x", "--out", "y", "--config", "7"]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");

    let out = mmkd(&["eval", s(dir)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no config.json"));
}

#[test]
fn lookup_study_with_one_teacher_pairs_event_shares_over_seeds() {
    let dir_guard = tempdir("study-lookup");
    let dir = dir_guard.path();
    let args = [
        "study",
        "--preset",
        "smoke",
        "--seeds",
        "2",
        "--regime",
        "lookup",
        "--n-train",
        "200",
        "--rows",
        "c5-attention",
        "--teacher-seed",
        "1",
        "--teacher-epochs",
        "2",
        "--epochs",
        "1",
        "--jobs",
        "2",
        "--out",
        s(dir),
    ];
    let out = mmkd(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The data, one teacher, two no-KD students and three distilled rows per seed.
    assert!(String::from_utf8_lossy(&out.stderr).contains(": 10 runs, 0 already finished, 10 to do"), "{}", String::from_utf8_lossy(&out.stderr));
    let runs: Vec<String> = std::fs::read_dir(dir.join("runs")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(runs.contains(&"teacher-complete-s1".to_string()) && !runs.iter().any(|r| r == "teacher-complete-s2"), "{runs:?}");
    let teacher_cfg = json(&dir.join("runs/teacher-complete-s1/config.json"));
    assert_eq!(teacher_cfg["train"]["epochs"], 2, "--teacher-epochs");
    let rows = json(&dir.join("table.json"));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 5, "teacher, no KD, c5 CRD / EDAM-S / EDAM-T on attention maps");
    for r in rows.iter().filter(|r| r["level"] == "attention-map") {
        assert_eq!(r["seeds"], serde_json::json!([1, 2]), "{r}");
        let (share, base) = (r["event_share_mean"].as_f64().unwrap(), r["nokd_event_share_mean"].as_f64().unwrap());
        let diff = r["event_share_diff_mean"].as_f64().unwrap_or_else(|| panic!("no paired event-share difference: {r}"));
        // The mean of paired differences over the same seeds is the difference of the means.
        assert!((diff - (share - base)).abs() < 1e-9, "{r}");
        // The event-share interval is a t-interval: symmetric about the mean, of positive width.
        let ci = r["event_share_diff_ci95"].as_array().unwrap_or_else(|| panic!("no interval with 2 seeds: {r}"));
        let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
        assert!((lo + hi - 2.0 * diff).abs() < 1e-12 && hi > lo, "{r}");
        // The Acc-7 interval, recomputed from the per-seed figures of this row and the no-KD row
        // (2 seeds: 1 degree of freedom, t(0.975, 1) = 12.706205).
        let nokd = rows.iter().find(|x| x["role"] == "student" && x["level"] == "none").unwrap();
        let per_seed = |row: &serde_json::Value| -> Vec<f64> { row["acc7_per_seed"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect() };
        let (mine, base) = (per_seed(r), per_seed(nokd));
        let d = [mine[0] - base[0], mine[1] - base[1]];
        let (m, half) = ((d[0] + d[1]) / 2.0, 12.706205 * (d[0] - d[1]).abs() / 2f64.sqrt() / 2f64.sqrt());
        let acc_ci = r["acc7_diff_ci95"].as_array().unwrap();
        assert!((r["acc7_diff_mean"].as_f64().unwrap() - m).abs() < 1e-9, "{r}");
        assert!((acc_ci[0].as_f64().unwrap() - (m - half)).abs() < 1e-6 && (acc_ci[1].as_f64().unwrap() - (m + half)).abs() < 1e-6, "{r}");
        let teacher = r["teacher_event_share_mean"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&teacher), "{r}");
    }
    let report = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    assert!(report.contains("regime lookup") && report.contains("the teacher's own share"), "{report}");
    let md = std::fs::read_to_string(dir.join("TABLE.md")).unwrap();
    assert!(md.contains("event share vs no KD (95 % CI)") && md.contains("teacher's event share"), "{md}");
}

#[test]
fn smoke_study_writes_every_row_of_table1() {
    let dir_guard = tempdir("study");
    let dir = dir_guard.path();
    let out = mmkd(&["study", "--preset", "smoke", "--seeds", "1", "--epochs", "1", "--jobs", "2", "--out", s(dir)]);
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
    // The generator's events give every distilled row its transformers' event share, next to
    // the no-KD student's (config 5 has V<-A and V<-L too) and the uniform share.
    for r in rows.iter().filter(|r| r["level"] != "none") {
        let share = r["event_share_mean"].as_f64().unwrap_or_else(|| panic!("no event share: {r}"));
        let uniform = r["uniform_event_share"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&share) && uniform > 0.0 && uniform < 1.0, "{r}");
        if r["config"] == 5 {
            assert!(r["nokd_event_share_mean"].as_f64().is_some(), "{r}");
        }
        // Configuration 1 distils nine transformers; against the no-KD student it is compared
        // over the two that student has too.
        if r["config"] == 1 {
            assert_eq!(r["event_share_compared"], serde_json::json!(["V<-A", "V<-L"]), "{r}");
            assert!(r["event_share_diff_mean"].as_f64().is_some(), "{r}");
        }
    }
    let md = std::fs::read_to_string(dir.join("TABLE.md")).unwrap();
    assert!(md.contains("synthetic") && md.contains("paper MOSEI"));
    assert!(md.contains("CI excludes 0") && md.contains("event share"), "{md}");
    // REPORT.md: the bar chart, each attention-level row, the best one's maps beside the teacher's.
    let report = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    assert!(report.contains("## Attention-level distillation") && report.contains("Student c5: EDAM-S on attention-map") && report.contains("acc7.png"), "{report}");
    assert!(std::fs::read(dir.join("acc7.png")).unwrap().starts_with(b"\x89PNG"));
    let maps = std::fs::read_dir(dir.join("report-maps")).unwrap().count();
    assert!(maps >= 1 && report.contains("report-maps/compare-"), "{report}");
    assert!(dir.join("table.csv").exists() && dir.join("slurm.sh").exists());

    // Started again, the study skips finished runs and writes the same table.
    let again = mmkd(&["study", "--preset", "smoke", "--seeds", "1", "--epochs", "1", "--out", s(dir)]);
    assert!(again.status.success());
    // One seed: the data plus 19 training runs, all finished the first time.
    assert!(String::from_utf8_lossy(&again.stderr).contains(": 20 runs, 20 already finished, 0 to do"), "{}", String::from_utf8_lossy(&again.stderr));

    // --plan prints one command per run, teachers before students; --collect rebuilds the table.
    let plan = mmkd(&["study", "--preset", "smoke", "--seeds", "2", "--plan", "--out", s(&dir.join("p"))]);
    let text = String::from_utf8_lossy(&plan.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 8 + 30);
    assert!(lines[0].contains(" data synth ") && lines[0].contains("--regime content"), "{}", lines[0]);
    let lookup = mmkd(&["study", "--preset", "smoke", "--seeds", "1", "--regime", "lookup", "--n-train", "200", "--plan", "--out", s(&dir.join("q"))]);
    let first = String::from_utf8_lossy(&lookup.stdout).lines().next().unwrap_or_default().to_string();
    assert!(first.contains("--regime lookup --n-train 200"), "{first}");
    let first_distill = lines.iter().position(|l| l.contains(" distill ")).unwrap();
    let last_teacher = lines.iter().rposition(|l| l.contains(" train teacher ")).unwrap();
    assert!(last_teacher < first_distill);
    let collect = mmkd(&["study", "--collect", s(dir)]);
    assert!(collect.status.success());
    assert!(String::from_utf8_lossy(&collect.stdout).contains("Student c5: EDAM-T"));
}

/// The design of issue 19 at smoke scale: two teachers, each teaching students of both seeds;
/// the control row distilled from another clip's maps; teachers with early stopping. The
/// intervals of distilled rows are t-intervals over the teachers of each teacher's mean paired
/// difference, recomputed here from the per-run numbers.
#[test]
fn study_with_several_teachers_controls_and_early_stopping() {
    let dir_guard = tempdir("teachers");
    let dir = dir_guard.path();
    let args = [
        "study",
        "--preset",
        "smoke",
        "--regime",
        "lookup",
        "--rows",
        "c5-attention",
        "--seeds",
        "2",
        "--teachers",
        "2",
        "--controls",
        "--teacher-early-stop",
        "1",
        "--teacher-epochs",
        "3",
        "--epochs",
        "1",
        "--jobs",
        "2",
        "--out",
        s(dir),
    ];
    let out = mmkd(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = json(&dir.join("table.json"));
    let rows = rows.as_array().unwrap();
    let teacher = rows.iter().find(|r| r["role"] == "teacher").unwrap();
    assert_eq!(teacher["seeds"], serde_json::json!([1, 2]));
    for t in [1, 2] {
        let cfg = json(&dir.join(format!("runs/teacher-complete-s{t}/config.json")));
        assert_eq!(cfg["train"]["early_stop"], 1, "{cfg}");
        let epochs = std::fs::read_to_string(dir.join(format!("runs/teacher-complete-s{t}/metrics.jsonl"))).unwrap().lines().count();
        assert!((1..=3).contains(&epochs));
    }
    let nokd = rows.iter().find(|r| r["role"] == "student" && r["level"] == "none").unwrap();
    let distilled: Vec<&serde_json::Value> = rows.iter().filter(|r| r["level"] != "none" && r["role"] == "student").collect();
    assert_eq!(distilled.len(), 4, "three attention-map rows and the control");
    for r in &distilled {
        assert_eq!(r["run_teachers"], serde_json::json!([1, 1, 2, 2]), "{r}");
        assert_eq!(r["seeds"], serde_json::json!([1, 2, 1, 2]), "{r}");
        // Per teacher: the mean over its students of the paired difference to no KD.
        let acc: Vec<f64> = r["acc7_per_seed"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let base: Vec<f64> = nokd["acc7_per_seed"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let per_teacher = [((acc[0] - base[0]) + (acc[1] - base[1])) / 2.0, ((acc[2] - base[0]) + (acc[3] - base[1])) / 2.0];
        let got: Vec<f64> = r["acc7_diff_per_teacher"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert!(got.iter().zip(per_teacher).all(|(a, b)| (a - b).abs() < 1e-9), "{got:?} vs {per_teacher:?}");
        // Two teachers: 1 degree of freedom, t(0.975, 1) = 12.706205.
        let m = (per_teacher[0] + per_teacher[1]) / 2.0;
        let sd = (per_teacher[0] - per_teacher[1]).abs() / 2f64.sqrt();
        let half = 12.706205 * sd / 2f64.sqrt();
        let ci = r["acc7_diff_ci95"].as_array().unwrap();
        assert!((ci[0].as_f64().unwrap() - (m - half)).abs() < 1e-6 && (ci[1].as_f64().unwrap() - (m + half)).abs() < 1e-6, "{r}");
        assert!(r["acc7_diff_p"].as_f64().is_some_and(|p| (0.0..=1.0).contains(&p)), "{r}");
        assert_eq!(r["event_share_diff_per_teacher"].as_array().map(|v| v.len()), Some(2), "{r}");
    }
    let control = distilled.iter().find(|r| r["control"] == true).expect("the control row");
    assert_eq!((control["method"].as_str(), control["level"].as_str()), (Some("edam-s"), Some("attention-map")));
    let cfg = json(&dir.join("runs/control-c5-attention-map-edam-s-shuffled-t2-s1/config.json"));
    assert_eq!(cfg["role"]["distill"]["teacher_signal"], "shuffled", "{cfg}");
    assert!(cfg["role"]["distill"]["teacher_run"].as_str().unwrap().ends_with("teacher-complete-s2"), "{cfg}");
    let report = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    assert!(report.contains("2 complete teachers (seeds 1, 2) each taught students of every seed"), "{report}");
    assert!(report.contains("Holm-adjusted across these 4 rows") && report.contains("Control c5: EDAM-S on attention-map"), "{report}");
    assert!(report.contains("trained with early stopping (patience 1 epochs"), "{report}");
    assert!(report.contains("over 2 teachers"), "{report}");
}

/// With `--controls` and configuration 1 in the rows, configuration 1's student without KD is
/// trained and configuration 1's distilled row is compared with it, seed by seed (issue 19:
/// within configuration); configuration 5's rows keep configuration 5's baseline.
#[test]
fn configuration_1_is_compared_with_its_own_student_without_kd() {
    let dir_guard = tempdir("c1");
    let dir = dir_guard.path();
    let out = mmkd(&["study", "--preset", "smoke", "--regime", "lookup", "--rows", "attention", "--controls", "--seeds", "2", "--teacher-seed", "1", "--epochs", "1", "--jobs", "2", "--out", s(dir)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = json(&dir.join("table.json"));
    let rows = rows.as_array().unwrap();
    let per_seed = |r: &serde_json::Value| -> Vec<f64> { r["acc7_per_seed"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect() };
    let nokd = |config: u64| rows.iter().find(|r| r["role"] == "student" && r["level"] == "none" && r["config"] == config).unwrap_or_else(|| panic!("no c{config} student without KD"));
    let c1 = rows.iter().find(|r| r["config"] == 1 && r["method"] == "edam-s").unwrap();
    assert_eq!(c1["nokd_config"], 1, "{c1}");
    let (mine, base) = (per_seed(c1), per_seed(nokd(1)));
    let want = ((mine[0] - base[0]) + (mine[1] - base[1])) / 2.0;
    assert!((c1["acc7_diff_mean"].as_f64().unwrap() - want).abs() < 1e-9, "{c1}");
    // Configuration 1's own baseline has all nine transformers: the event share is compared over all.
    assert_eq!(c1["event_share_compared"].as_array().unwrap().len(), 9, "{c1}");
    let c5 = rows.iter().find(|r| r["config"] == 5 && r["method"] == "edam-s" && r.get("control").is_none()).unwrap();
    assert!(c5.get("nokd_config").is_none(), "{c5}");
    let (mine, base) = (per_seed(c5), per_seed(nokd(5)));
    assert!((c5["acc7_diff_mean"].as_f64().unwrap() - ((mine[0] - base[0]) + (mine[1] - base[1])) / 2.0).abs() < 1e-9, "{c5}");
    let report = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    assert!(report.contains("vs configuration 1's student without KD"), "{report}");
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pickles").join(name)
}

#[test]
fn mosei_pickles_inspect_convert_and_train() {
    let dir_guard = tempdir("pickle");
    let dir = dir_guard.path();
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

/// Synthesise smoke data and train one run for one epoch; returns (data dir, run dir).
fn trained(dir: &Path, what: &[&str]) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    if !data.join("manifest.json").exists() {
        let out = mmkd(&["data", "synth", "--preset", "smoke", "--seed", "2", "--out", s(&data)]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let run = dir.join(what.join("-"));
    let mut args = vec!["train"];
    args.extend_from_slice(what);
    args.extend(["--data", s(&data), "--preset", "smoke", "--epochs", "1", "--out", s(&run)]);
    let out = mmkd(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (data, run)
}

/// Every refusal of `mmkd distill` exits 2 with one line naming the problem, before it writes
/// anything to --out.
#[test]
fn distill_refuses_bad_input_with_exit_2() {
    let dir_guard = tempdir("distill-bad");
    let dir = dir_guard.path();
    let (_, teacher) = trained(dir, &["teacher"]);
    let (_, student) = trained(dir, &["student"]);
    let out_dir = dir.join("never");
    let t = s(&teacher);
    let (nope, nodata) = (dir.join("nope"), dir.join("nodata"));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--teacher", s(&student), "--level", "final", "--method", "crd"], "is a student run"),
        (vec!["--teacher", t, "--config", "2", "--level", "final", "--method", "crd"], "distils the video teacher"),
        (vec!["--teacher", t, "--level", "final", "--method", "edam-s"], "works on attention maps only"),
        (vec!["--teacher", t, "--level", "attention-map", "--method", "edam-s", "--temperature", "0"], "--temperature must be positive"),
        (vec!["--teacher", s(&nope), "--level", "final", "--method", "crd"], "no config.json"),
        (vec!["--teacher", t, "--level", "final", "--method", "crd", "--data", s(&nodata)], "no such dataset"),
    ];
    for (args, message) in cases {
        let mut full = vec!["distill"];
        full.extend(args.iter().copied());
        full.extend(["--out", s(&out_dir)]);
        let out = mmkd(&full);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: expected '{message}' in: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: one line: {err}");
        assert!(!out_dir.exists(), "{args:?}: a refused run must not create --out");
    }
}

/// A deployed student predicts from video alone; a teacher refuses video-only data.
#[test]
fn predict_from_video_only_data() {
    let dir_guard = tempdir("predict");
    let dir = dir_guard.path();
    let (data, student) = trained(dir, &["student"]);
    let (_, teacher) = trained(dir, &["teacher", "--branch", "video"]);
    // A video-only dataset: the synthetic one without text, audio and labels, test split only.
    let mut d = mmkd::data::native::load(&data).unwrap();
    for split in [&mut d.train, &mut d.valid, &mut d.test] {
        split.text = None;
        split.audio = None;
        split.labels.iter_mut().for_each(|y| *y = f32::NAN);
    }
    let video_only = dir.join("video-only");
    mmkd::data::native::save(&d, &video_only, serde_json::Value::Null).unwrap();
    std::fs::remove_file(video_only.join("train.safetensors")).unwrap();
    std::fs::remove_file(video_only.join("valid.safetensors")).unwrap();

    let csv_path = dir.join("pred.csv");
    let out = mmkd(&["predict", s(&student), "--data", s(&video_only), "--out", s(&csv_path)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&csv_path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "id,score,p_-3,p_-2,p_-1,p_0,p_1,p_2,p_3,expected,class");
    assert_eq!(lines.len(), 1 + d.test.len(), "one row per test clip");
    for (line, id) in lines[1..].iter().zip(&d.test.ids) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 11);
        assert_eq!(f[0], id);
        assert_eq!(f[1], "", "the score is unknown in this data");
        let p: Vec<f64> = f[2..9].iter().map(|x| x.parse().unwrap()).collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-4);
        let expected: f64 = p.iter().enumerate().map(|(k, q)| (k as f64 - 3.0) * q).sum();
        assert!((f[9].parse::<f64>().unwrap() - expected).abs() < 1e-4);
        let best = (0..7).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap() as i64 - 3;
        assert_eq!(f[10].parse::<i64>().unwrap(), best);
    }

    // The same predictions from the full labelled data carry the true scores; JSON lines on stdout.
    let out = mmkd(&["predict", s(&student), "--data", s(&data), "--format", "jsonl", "--split", "all"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), d.train.len() + d.valid.len() + d.test.len());
    assert!(rows.iter().all(|r| r["score"].is_number()));

    // A teacher reads audio and text too: refused, with the reason.
    let out = mmkd(&["predict", s(&teacher), "--data", s(&video_only), "--out", s(&dir.join("t.csv"))]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("has no audio features") && err.contains("video-only data serves students"), "{err}");
    assert!(!dir.join("t.csv").exists());
    // Training on it is refused too.
    let out = mmkd(&["train", "student", "--data", s(&video_only), "--preset", "smoke", "--out", s(&dir.join("x"))]);
    assert_eq!(out.status.code(), Some(2));
}

/// `predict` reads video-only MulT pickles: one with only a test split and no labels, one with
/// labels in every split.
#[test]
fn predict_from_video_only_pickles() {
    use mmkd::config::DataShape;
    use mmkd::data::{Dataset, Split};
    let dir_guard = tempdir("predict-pkl");
    let dir = dir_guard.path();
    // A tiny labelled dataset with the fixtures' video shape (5 steps x 4 features).
    let shape = DataShape { text_dim: 2, audio_dim: 2, video_dim: 4, text_len: 3, audio_len: 4, video_len: 5, n_train: 8, n_valid: 4, n_test: 4 };
    let split = |name: &str, n: usize| {
        let wave = |len: usize, dim: usize, k: usize| (0..n * len * dim).map(|i| ((i * 7 + k) % 11) as f32 / 5.0 - 1.0).collect::<Vec<f32>>();
        Split {
            name: name.into(),
            text: Some(wave(3, 2, 1).into()),
            audio: Some(wave(4, 2, 2).into()),
            video: wave(5, 4, 3).into(),
            labels: (0..n).map(|i| i as f32 % 7.0 - 3.0).collect(),
            ids: (0..n).map(|i| format!("{name}{i}")).collect(),
            lengths: None,
        }
    };
    let d = Dataset { name: "tiny".into(), source: "test".into(), synthetic: true, shape, train: split("train", 8), valid: split("valid", 4), test: split("test", 4) };
    let data = dir.join("data");
    mmkd::data::native::save(&d, &data, serde_json::Value::Null).unwrap();
    let run = dir.join("student");
    let out = mmkd(&["train", "student", "--data", s(&data), "--preset", "smoke", "--epochs", "1", "--out", s(&run)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let out = mmkd(&["predict", s(&run), "--data", s(&fixture("video_only_test_p4.pkl"))]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let ids: Vec<&str> = text.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(ids, ["deploy_0", "deploy_1", "deploy_2"]);
    assert!(text.lines().skip(1).all(|l| l.split(',').nth(1) == Some("")), "no labels in this file: {text}");

    let out = mmkd(&["predict", s(&run), "--data", s(&fixture("video_only_labels_p2.pkl")), "--split", "all", "--format", "jsonl"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 6 + 3 + 3);
    assert_eq!(rows[9]["score"], 3.0, "the first test clip's label");

    // A split the file does not hold, asked for by name: exit 2, named.
    let out = mmkd(&["predict", s(&run), "--data", s(&fixture("video_only_test_p4.pkl")), "--split", "train"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("video_only_test_p4.pkl") && err.contains("split 'train'"), "{err}");
}

/// Missing modalities: `eval --drop` and the robustness table of every subset.
#[test]
fn robustness_table_and_eval_with_missing_modalities() {
    let dir_guard = tempdir("robust");
    let dir = dir_guard.path();
    let (_, teacher) = trained(dir, &["teacher"]);
    let (_, student) = trained(dir, &["student"]);
    let out = mmkd(&["eval", s(&teacher), "--drop", "audio,text", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["split"].as_str().unwrap().contains("missing audio+text-zeros"), "{}", r["split"]);
    assert!(teacher.join("eval-missing-audio+text-zeros.json").exists());
    // Dropping nothing the student reads changes nothing for it.
    let plain: serde_json::Value = serde_json::from_slice(&mmkd(&["eval", s(&student), "--json"]).stdout).unwrap();
    let dropped: serde_json::Value = serde_json::from_slice(&mmkd(&["eval", s(&student), "--drop", "audio,text", "--json"]).stdout).unwrap();
    assert_eq!(plain["acc7"], dropped["acc7"]);
    let bad = mmkd(&["eval", s(&student), "--drop", "smell"]);
    assert_eq!(bad.status.code(), Some(2));

    let table = dir.join("robustness");
    let out = mmkd(&["robustness", "--teacher", s(&teacher), "--student", s(&student), "--out", s(&table), "--missing-mode", "noise"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.contains("synthetic") && md.contains("The teacher still wins with missing"), "{md}");
    let rows = json(&table.join("robustness.json"))["rows"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 8, "every subset of three modalities");
    assert_eq!(rows[0]["missing"].as_array().unwrap().len(), 0);
    // The student's score only changes in rows where video is missing.
    let student_acc = |r: &serde_json::Value| r["student"]["acc7"].as_f64().unwrap();
    for r in &rows {
        let video_missing = r["missing"].as_array().unwrap().iter().any(|m| m == "Video");
        if !video_missing {
            assert_eq!(student_acc(r), student_acc(&rows[0]), "{r}");
        }
    }
    let csv = std::fs::read_to_string(table.join("robustness.csv")).unwrap();
    assert_eq!(csv.lines().count(), 9);
    // Roles are checked.
    let out = mmkd(&["robustness", "--teacher", s(&student), "--student", s(&student)]);
    assert_eq!(out.status.code(), Some(2));
}

/// A training run crashed at chosen points (`MMKD_CRASH_AT`: after an optimiser step, inside a
/// checkpoint before its commit, right after a commit; checkpoints after every batch, so inside
/// epochs) resumes with --resume and ends with the same test metrics and epoch log as an
/// uninterrupted run with the same seed, and leaves only whole files under their final names.
#[test]
fn crashed_run_resumes_to_the_same_result_at_every_crash_point() {
    let dir_guard = tempdir("kill");
    let dir = dir_guard.path();
    let data = dir.join("data");
    let out = mmkd(&["data", "synth", "--preset", "smoke", "--seed", "3", "--out", s(&data)]);
    assert!(out.status.success());
    let args = |run: &Path, checkpoint_secs: &str| -> Vec<String> {
        ["train", "student", "--data", s(&data), "--preset", "smoke", "--epochs", "6", "--seed", "5", "--out", s(run), "--checkpoint-secs", checkpoint_secs].iter().map(|a| a.to_string()).collect()
    };
    // The uninterrupted run saves at epoch ends only: where checkpoints are taken changes nothing.
    let whole = dir.join("whole");
    assert!(mmkd(&args(&whole, "300").iter().map(String::as_str).collect::<Vec<_>>()).status.success());
    let epochs = |run: &Path| -> Vec<(serde_json::Value, serde_json::Value)> {
        let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).map(|e| (e["train_loss"].clone(), e["val_loss"].clone())).collect()
    };
    // Smoke: 6 batches an epoch, a checkpoint after each. Points in epochs 1, 2 and 3.
    for point in ["step:3", "saving:4", "saved:9", "step:14"] {
        let killed = dir.join(format!("killed-{}", point.replace(':', "-")));
        let crashed = Command::new(env!("CARGO_BIN_EXE_mmkd")).args(args(&killed, "0")).env("MMKD_CRASH_AT", point).output().unwrap();
        assert!(!crashed.status.success(), "{point}: the run must abort");
        assert!(String::from_utf8_lossy(&crashed.stderr).contains(&format!("MMKD_CRASH_AT: aborting at {point}")), "{point}");
        assert!(!killed.join("eval.json").exists(), "{point}: crashed before the end");
        let mut resume = args(&killed, "0");
        resume.push("--resume".into());
        let out = mmkd(&resume.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{point}: {}", String::from_utf8_lossy(&out.stderr));
        let (a, b) = (json(&whole.join("eval.json")), json(&killed.join("eval.json")));
        for key in ["acc7", "f1_weighted", "mae", "corr"] {
            assert_eq!(a[key], b[key], "{point}: {key}");
        }
        // The epoch log too: an epoch continued after a crash reports the same training loss.
        assert_eq!(epochs(&whole), epochs(&killed), "{point}");
        // Every file under its final name is whole (a crash can leave only hidden *.tmp siblings).
        for f in ["config.json", "resume.json", "eval.json"] {
            json(&killed.join(f));
        }
        for f in ["best.safetensors", "last.safetensors"] {
            let bytes = std::fs::read(killed.join(f)).unwrap();
            safetensors::SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{point}: {f}: {e}"));
        }
    }
}

/// A corpus of bad input: each case exits 2 with one line naming the problem, and leaves no
/// half-written run behind.
#[test]
fn bad_input_corpus_exits_2_with_one_line() {
    use mmkd::config::DataShape;
    let dir_guard = tempdir("corpus");
    let dir = dir_guard.path();
    let (data, run) = trained(dir, &["student"]);
    let fresh = |name: &str| dir.join(name);
    let check = |args: Vec<&str>, needle: &str, out: Option<&Path>| {
        let o = mmkd(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: expected '{needle}' in: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: one line: {err}");
        if let Some(out) = out {
            assert!(!out.exists(), "{args:?}: {} must not be created", out.display());
        }
    };
    let train = |data: &Path, out: &Path| -> Vec<String> { ["train", "student", "--data", s(data), "--preset", "smoke", "--epochs", "1", "--out", s(out)].iter().map(|a| a.to_string()).collect() };

    // Corrupted and truncated native files.
    let broken = fresh("broken");
    copy_dir(&data, &broken);
    let f = broken.join("train.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let out = fresh("r-trunc");
    check(args(&train(&broken, &out)), "train.safetensors", Some(&out));
    std::fs::write(&f, b"not a safetensors file at all").unwrap();
    check(args(&train(&broken, &out)), "not a valid safetensors file", Some(&out));

    // A manifest that lies about shapes, and about split sizes.
    let liar = fresh("liar");
    copy_dir(&data, &liar);
    let mut m = json(&liar.join("manifest.json"));
    m["shape"]["audio_len"] = serde_json::json!(13);
    std::fs::write(liar.join("manifest.json"), m.to_string()).unwrap();
    check(args(&train(&liar, &out)), "'audio': expected shape", Some(&out));
    m["shape"]["audio_len"] = serde_json::json!(12);
    m["shape"]["n_valid"] = serde_json::json!(5);
    std::fs::write(liar.join("manifest.json"), m.to_string()).unwrap();
    check(args(&train(&liar, &out)), "expected 5 samples (manifest)", Some(&out));

    // NaN features and NaN labels; an empty split.
    let mut d = mmkd::data::native::load(&data).unwrap();
    d.train.video.make_mut()[7] = f32::NAN;
    let nan = fresh("nan-features");
    mmkd::data::native::save(&d, &nan, serde_json::Value::Null).unwrap();
    check(args(&train(&nan, &out)), "'video': expected finite values", Some(&out));
    let mut d = mmkd::data::native::load(&data).unwrap();
    d.valid.labels[0] = f32::INFINITY;
    let nan = fresh("nan-labels");
    mmkd::data::native::save(&d, &nan, serde_json::Value::Null).unwrap();
    check(args(&train(&nan, &out)), "'labels': expected finite values", Some(&out));
    let mut d = mmkd::data::native::load(&data).unwrap();
    d.valid = mmkd::data::Split { text: Some(vec![].into()), audio: Some(vec![].into()), video: vec![].into(), labels: vec![], ids: vec![], ..d.valid.clone() };
    d.shape.n_valid = 0;
    let empty = fresh("empty");
    mmkd::data::native::save(&d, &empty, serde_json::Value::Null).unwrap();
    check(args(&train(&empty, &out)), "split 'valid' is empty", Some(&out));

    // A checkpoint from another configuration; --resume on a finished or a foreign run.
    // (A config-3 student has the same parameter names and shapes as config 5; a teacher does not.)
    let mut cfg = json(&run.join("config.json"));
    cfg["role"] = serde_json::json!({"role": "teacher", "teacher": "complete"});
    let foreign = fresh("foreign");
    copy_dir(&run, &foreign);
    std::fs::write(foreign.join("config.json"), cfg.to_string()).unwrap();
    check(vec!["eval", s(&foreign)], "does not fit this architecture", None);
    let mut resume = train(&data, &run);
    resume.push("--resume".into());
    check(args(&resume), "already finished", None);
    let mut other = train(&data, &run);
    other[1] = "teacher".into();
    other.push("--resume".into());
    check(args(&other), "cannot --resume: field 'role.role' differs from the saved run: saved \"student\", new \"teacher\"", None);

    // --out on a finished run: refused, then overwritten with --force.
    check(args(&train(&data, &run)), "--resume", None);
    let mut force = train(&data, &run);
    force.push("--force".into());
    let o = mmkd(&args(&force));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut force_other = train(&data, &data);
    force_other.push("--force".into());
    check(args(&force_other), "only overwrites an mmkd run", None);

    // An unknown preset; an output folder that cannot be written.
    let o = mmkd(&["train", "student", "--data", s(&data), "--preset", "huge", "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("huge"));
    let file = fresh("a-file");
    std::fs::write(&file, b"").unwrap();
    check(args(&train(&data, &file.join("run"))), "cannot write the run directory", None);

    // A batch that cannot fit in memory: refused before anything is written, with the estimate.
    // The unfused path (MMKD_FUSED_ATTENTION=0) keeps every 8000 x 8000 map of the student.
    let shape = DataShape { text_dim: 2, audio_dim: 2, video_dim: 2, text_len: 4, audio_len: 4, video_len: 8000, n_train: 64, n_valid: 2, n_test: 2 };
    let long = |name: &str, n: usize| mmkd::data::Split {
        name: name.into(),
        text: Some(vec![0.5; n * 4 * 2].into()),
        audio: Some(vec![0.5; n * 4 * 2].into()),
        video: vec![0.5; n * 8000 * 2].into(),
        labels: vec![1.0; n],
        ids: (0..n).map(|i| i.to_string()).collect(),
        lengths: None,
    };
    let big = mmkd::data::Dataset { name: "long".into(), source: "test".into(), synthetic: true, shape, train: long("train", 64), valid: long("valid", 2), test: long("test", 2) };
    let long_dir = fresh("long");
    mmkd::data::native::save(&big, &long_dir, serde_json::Value::Null).unwrap();
    let mut huge = train(&long_dir, &out);
    huge.extend(["--batch-size".into(), "64".into()]);
    let o = Command::new(env!("CARGO_BIN_EXE_mmkd")).args(args(&huge)).env("RAYON_NUM_THREADS", "1").env("MMKD_FUSED_ATTENTION", "0").output().expect("run mmkd");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("would fit") && err.trim_end().lines().count() == 1, "{err}");
    assert!(!out.exists(), "{} must not be created", out.display());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        } else {
            copy_dir(&p, &to.join(p.file_name().unwrap()));
        }
    }
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Start `args` in its own process group, SIGKILL the whole group (a study's child runs too) as
/// soon as `marker` exists, and return whether it was still running then.
fn kill_when(args: &[String], marker: &Path, cwd: Option<&Path>) -> bool {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mmkd"));
    cmd.args(args).env("RAYON_NUM_THREADS", "1").stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).process_group(0);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().unwrap();
    let t0 = std::time::Instant::now();
    while !marker.exists() && t0.elapsed().as_secs() < 300 {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let running = child.try_wait().unwrap().is_none();
    // SAFETY: a plain syscall on the process group this test created.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    child.wait().unwrap();
    // The group's other processes (a study's runs) are gone once signal 0 finds none of them
    // (bounded: an unreaped zombie, where no init reaps orphans, still counts as one).
    let t1 = std::time::Instant::now();
    // SAFETY: as above; signal 0 only checks that the group exists.
    while unsafe { libc::kill(-(child.id() as i32), 0) } == 0 && t1.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    running
}

/// A distillation run (CRD on the final layer: a memory bank outside the model) crashed inside
/// a checkpoint within an epoch (checkpoints after every batch) resumes to the same test metrics
/// as an uninterrupted one.
#[test]
fn crashed_distillation_resumes_to_the_same_result() {
    let dir_guard = tempdir("kill-kd");
    let dir = dir_guard.path();
    let (_, teacher) = trained(dir, &["teacher"]);
    let distill = |out: &Path| -> Vec<String> {
        ["distill", "--teacher", s(&teacher), "--config", "5", "--level", "final", "--method", "crd", "--epochs", "6", "--seed", "2", "--checkpoint-secs", "0", "--out", s(out)]
            .iter()
            .map(|a| a.to_string())
            .collect()
    };
    let whole = dir.join("whole");
    assert!(mmkd(&args(&distill(&whole))).status.success());
    // Crashed inside the 4th checkpoint of the first epoch: the memory bank saved in the new
    // folder, resume.json still naming the old one.
    let killed = dir.join("killed");
    let crashed = Command::new(env!("CARGO_BIN_EXE_mmkd")).args(distill(&killed)).env("MMKD_CRASH_AT", "saving:4").output().unwrap();
    assert!(!crashed.status.success() && !killed.join("eval.json").exists());
    let mut resume = distill(&killed);
    resume.push("--resume".into());
    let out = mmkd(&args(&resume));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (a, b) = (json(&whole.join("eval.json")), json(&killed.join("eval.json")));
    for key in ["acc7", "f1_weighted", "mae", "corr"] {
        assert_eq!(a[key], b[key], "{key}");
    }
}

/// A study killed mid-way, started again from another working directory, resumes run by run and
/// writes the same table; run configs hold absolute paths, so `eval` works from anywhere.
#[test]
fn sigkilled_study_resumes_run_by_run_from_any_directory() {
    let dir_guard = tempdir("kill-study");
    let dir = dir_guard.path();
    let (elsewhere, study) = (dir.join("elsewhere"), dir.join("study"));
    std::fs::create_dir_all(&elsewhere).unwrap();
    let args: Vec<String> = ["study", "--preset", "smoke", "--seeds", "1", "--epochs", "2", "--jobs", "1", "--out", "study"].iter().map(|a| a.to_string()).collect();
    // Kill once the first teacher has finished.
    let first = study.join("runs/teacher-complete-s1/eval.json");
    let killed = kill_when(&args, &first, Some(dir));
    assert!(killed, "the study finished before the kill");
    // `kill_when` returns once no process of the killed group is left; start again from elsewhere.
    let out = Command::new(env!("CARGO_BIN_EXE_mmkd"))
        .args(["study", "--preset", "smoke", "--seeds", "1", "--epochs", "2", "--jobs", "1", "--out", s(&study)])
        .env("RAYON_NUM_THREADS", "1")
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let done: usize = err.split(" already finished").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(done >= 2, "the data and the first teacher were kept: {err}");
    // The resumed study's table is the one an uninterrupted study writes, row for row and
    // figure for figure (training is deterministic for a seed, wherever a run was stopped).
    let resumed = json(&study.join("table.json"));
    assert_eq!(resumed.as_array().unwrap().len(), 19);
    let whole = dir.join("whole");
    let out = mmkd(&["study", "--preset", "smoke", "--seeds", "1", "--epochs", "2", "--jobs", "1", "--out", s(&whole)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(resumed, json(&whole.join("table.json")));
    // Paths in run configs are absolute: eval works from an unrelated directory.
    let run = study.join("runs/student-c5-nokd-s1");
    let o = Command::new(env!("CARGO_BIN_EXE_mmkd")).args(["eval", s(&run), "--json"]).current_dir(&elsewhere).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `--device cuda` in a build without the feature is refused up front with one line (exit 2);
/// a build with it refuses the same way on a machine without an NVIDIA driver.
#[test]
fn device_cuda_is_an_input_error_without_the_feature_or_a_driver() {
    let o = mmkd(&["--device", "cuda", "bench", "--case", "student-infer", "--preset", "smoke", "--batch", "1", "--steps", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("--device cuda"), "{err}");
    // The environment variable is the same switch.
    let o = Command::new(env!("CARGO_BIN_EXE_mmkd")).args(["params", "--preset", "smoke"]).env("MMKD_DEVICE", "cuda").output().expect("run mmkd");
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
}
