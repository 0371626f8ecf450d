//! The documents quote their data files (issue 19: "a check in CI holds the documents to the
//! data"): each claim below is formatted from a committed data file exactly as the document
//! writes it, and must appear there. Rerunning a benchmark and forgetting the document (or the
//! other way round) fails here.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A document with every run of whitespace made one space, so a quote may wrap across lines.
fn flatten(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn json(rel: &str) -> serde_json::Value {
    serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn assert_quoted(doc: &str, text: &str, claim: &str, data: &str) {
    assert!(text.contains(claim), "{doc} must quote {data} as:\n{claim}\n(rerun the benchmark's formatting, or fix the document)");
}

/// docs/DATA.md, "mmkd against the SDK": the table rows and the clip count from
/// bench/results/csd-mosei-sized-2026-12-03.json.
#[test]
fn data_md_quotes_the_csd_benchmark() {
    let (doc, data) = ("docs/DATA.md", "bench/results/csd-mosei-sized-2026-12-03.json");
    let text = read(doc);
    let bench = json(data);
    for mode in ["none", "words"] {
        let e = &bench[mode];
        let f = |v: &serde_json::Value| v.as_f64().unwrap_or_else(|| panic!("{data}: {mode}: {v} is not a number"));
        let (m, s) = (&e["mmkd"], &e["sdk"]);
        assert_eq!(s["completed"], true, "{data}: the SDK's {mode} run must have finished for a ratio");
        let row = format!(
            "| `--align {mode}` | {:.1} s | {:.2} GB | {:.1} s | {:.1} GB | {:.2}x | {:.0}x |",
            f(&m["wall_s"]),
            f(&m["peak_rss_mb"]) / 1024.0,
            f(&s["wall_s"]),
            f(&s["peak_rss_mb"]) / 1024.0,
            f(&e["speedup"]),
            f(&e["memory_ratio"])
        );
        assert_quoted(doc, &text, &row, data);
        let clips = s["summary"]["clips"].as_u64().unwrap();
        assert_quoted(doc, &text, &format!("{},{:03} clips", clips / 1000, clips % 1000), data);
        for m in ["text", "audio", "video"] {
            let agree = &e["agree"][m];
            assert!(agree["clips"] == true && agree["cut_rows"] == true, "{data}: {mode} {m}: mmkd and the SDK disagree: {agree}");
            let bound = if mode == "none" { 1e-13 } else { 4e-7 };
            assert!(f(&agree["cut_sum_rel_diff"]) <= bound, "{data}: {mode} {m}: the document says the sums agree to {bound}");
        }
    }
}

/// README.md and bench/README.md quote reference/results/onnx-check-small-2026-12-03.json: the
/// worst difference between ONNX Runtime and `mmkd predict`, and the latency row.
#[test]
fn readmes_quote_the_onnx_check() {
    let data = "reference/results/onnx-check-small-2026-12-03.json";
    let check = json(data);
    let worst = check["worst_max_abs_diff"].as_f64().unwrap();
    assert!(worst <= 4e-7, "{data}: README.md says ONNX Runtime agrees with mmkd predict to within 4e-7, the data says {worst}");
    assert_quoted("README.md", &read("README.md"), "to within 4e-7 for every student configuration", data);
    let networks = check["networks"].as_object().unwrap();
    assert_eq!(networks.len(), 11, "{data}: five configurations in two stream modes and the teacher");
    let latency = &check["latency_b1_one_thread_ms"];
    let (ort, mmkd) = (latency["onnxruntime_student_c5"].as_f64().unwrap(), latency["mmkd_bench_student_infer"].as_f64().unwrap());
    let row = format!("| `small` preset | {ort:.3} ms | {mmkd:.3} ms | {:.2}x |", mmkd / ort);
    assert_quoted("bench/README.md", &read("bench/README.md"), &row, data);
}

/// bench/NOTES.md quotes bench/results/devbox-2cpu-24g-peak-2026-12-03.json: the GEMM peak and
/// every row of the table.
#[test]
fn notes_quote_the_peak_table() {
    let (doc, data) = ("bench/NOTES.md", "bench/results/devbox-2cpu-24g-peak-2026-12-03.json");
    let text = read(doc);
    let peak = json(data);
    assert_quoted(doc, &text, &format!("**{:.1} GFLOP/s**", peak["gemm_peak_gflops"].as_f64().unwrap()), data);
    let names = |case: &str| match case {
        "teacher-train" => "complete teacher, train step",
        "student-train" => "config-5 student + EDAM-S, train step",
        "teacher-infer" => "complete teacher, inference",
        "student-infer" => "config-5 student, inference",
        other => panic!("{data}: unknown case {other}"),
    };
    let cases = peak["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 10);
    for r in cases {
        let f = |k: &str| r[k].as_f64().unwrap();
        let row = format!(
            "| {}, `{}`, B = {} | {:.2} ms | {:.3} | {:.1} | {:.1} % |",
            names(r["case"].as_str().unwrap()),
            r["preset"].as_str().unwrap(),
            r["batch"],
            f("median_ms"),
            f("flops_per_step") / 1e9,
            f("gflops"),
            100.0 * f("fraction_of_peak")
        );
        assert_quoted(doc, &text, &row, data);
    }
}

/// The row of a study's table.json that a results table's first cell names.
fn table_row<'a>(rows: &'a [serde_json::Value], label: &str) -> Option<&'a serde_json::Value> {
    let label = label.trim();
    // A row labelled "conventional" must be one distilled in that direction, and only such a row.
    let conventional = label.contains("conventional");
    let student = |config: u64, method: &str, control: bool| {
        rows.iter().find(|r| {
            r["role"] == "student"
                && r["config"] == config
                && r["level"] == "attention-map"
                && r["method"] == method
                && r.get("control").and_then(|c| c.as_bool()).unwrap_or(false) == control
                && (r.get("edam_orientation").and_then(|o| o.as_str()) == Some("conventional")) == conventional
        })
    };
    if label.starts_with("student without KD") {
        return rows.iter().find(|r| r["role"] == "student" && r["level"] == "none" && r["config"] == 5);
    }
    if let Some(config) = label.strip_prefix("c").and_then(|l| l.strip_suffix(" student without KD").or_else(|| l.split_once(" student without KD").map(|(c, _)| c))) {
        return rows.iter().find(|r| r["role"] == "student" && r["level"] == "none" && r["config"] == config.parse::<u64>().unwrap_or(0));
    }
    if label.starts_with("complete teacher") {
        return rows.iter().find(|r| r["role"] == "teacher" && r["teacher"] == "complete");
    }
    let control = label.starts_with("control");
    let rest = label.trim_start_matches("control ").trim_start_matches("c");
    let (config, rest) = rest.split_once(' ')?;
    let method = rest.split(',').next()?.trim().to_lowercase();
    if !rest.contains("attention maps") {
        return None;
    }
    student(config.parse().ok()?, &method, control)
}

/// The lines of an A/B file after its first, which says what was compared.
fn ab_lines(file: &str) -> Vec<serde_json::Value> {
    read(file).lines().skip(1).map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{file}: {e}"))).collect()
}

/// The middle of an odd number of runs (the upper middle of an even number), as the A/B tables
/// in bench/NOTES.md report them.
fn middle(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn interval(v: &serde_json::Value) -> Option<(f64, f64)> {
    let a = v.as_array()?;
    Some((num(&a[0]), num(&a[1])))
}

/// Every results table announced by `<!-- data: FILE -->` in docs/RESULTS-*.md is checked
/// cell by cell against that study's table.json: Acc-7 mean +- std, the difference to no KD and
/// its interval, the event share and its difference, and the verdict (bold exactly when the
/// interval excludes 0); the "Per seed" line below a table, seed by seed.
#[test]
fn results_tables_match_their_studies() {
    let mut checked = 0;
    for doc in ["docs/RESULTS-synthetic-lookup.md", "docs/RESULTS-synthetic-small.md"] {
        let text = read(doc);
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(file) = line.trim().strip_prefix("<!-- data: ").and_then(|l| l.strip_suffix(" -->")) else { continue };
            let data = json(file);
            let rows = data.as_array().unwrap_or_else(|| panic!("{file}: not a table.json"));
            let table: Vec<&str> = lines[i + 1..].iter().map(|l| l.trim()).skip_while(|l| l.is_empty()).take_while(|l| l.starts_with('|')).collect();
            assert!(table.len() > 2, "{doc}:{}: no table after the data comment", i + 1);
            let header: Vec<&str> = table[0].trim_matches('|').split('|').map(str::trim).collect();
            let col = |name: &str| header.iter().position(|h| h.starts_with(name));
            for row in &table[2..] {
                let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
                let r = table_row(rows, cells[0]).unwrap_or_else(|| panic!("{doc}: row '{}' names no row of {file}", cells[0]));
                let at = |c: Option<usize>| c.and_then(|c| cells.get(c)).copied().unwrap_or("-");
                let acc = at(col("test Acc-7"));
                let want_acc = if r["role"] == "teacher" { format!("{:.2}", num(&r["acc7_mean"])) } else { format!("{:.2} +- {:.2}", num(&r["acc7_mean"]), num(&r["acc7_std"])) };
                assert!(acc.starts_with(&want_acc), "{doc}: '{}' Acc-7 '{acc}', {file} has {want_acc}", cells[0]);
                for (name, mean_key, ci_key, digits) in [("Acc-7 vs no KD", "acc7_diff_mean", "acc7_diff_ci95", 2), ("event share vs no KD", "event_share_diff_mean", "event_share_diff_ci95", 3)] {
                    let cell = at(col(name));
                    match (r.get(mean_key).map(num).filter(|m| m.is_finite()), interval(&r[ci_key])) {
                        (Some(m), Some((lo, hi))) => {
                            let want = format!("{m:+.digits$} [{lo:+.digits$}, {hi:+.digits$}]");
                            assert!(cell.replace("**", "").starts_with(&want), "{doc}: '{}' {name} '{cell}', {file} has {want}", cells[0]);
                            assert_eq!(cell.contains("**"), lo > 0.0 || hi < 0.0, "{doc}: '{}' {name} '{cell}': bold exactly when the interval excludes 0", cells[0]);
                        }
                        _ => assert!(cell == "-" || cell.is_empty(), "{doc}: '{}' {name} '{cell}' but {file} has no interval", cells[0]),
                    }
                }
                if let Some(c) = header.iter().position(|h| *h == "event share")
                    && r["role"] == "student"
                {
                    // The no-KD student's share is held by the distilled rows it is compared with.
                    let share = if r["level"] == "none" {
                        rows.iter().filter(|x| x["config"] == r["config"]).find_map(|x| x["nokd_event_share_mean"].as_f64()).unwrap_or(f64::NAN)
                    } else {
                        num(&r["event_share_mean"])
                    };
                    let want = format!("{share:.3}");
                    assert!(cells[c].starts_with(&want), "{doc}: '{}' event share '{}', {file} has {want}", cells[0], cells[c]);
                }
                checked += 1;
            }
            // The "Per seed" line after the table, when there is one.
            let after = lines[i + 1..].iter().skip_while(|l| !l.trim().starts_with('|')).skip_while(|l| l.trim().starts_with('|')).map(|l| l.trim()).find(|l| !l.is_empty()).unwrap_or_default();
            // A "Per teacher" line: each row's per-teacher mean paired differences.
            if let Some(per_teacher) = after.strip_prefix("Per teacher (Acc-7 vs no KD, points): ") {
                for part in per_teacher.split(';') {
                    let part = part.trim().trim_end_matches('.');
                    // Values start at the first sign after a space ("EDAM-S" has a hyphen).
                    let Some(at) = part.find(" +").into_iter().chain(part.find(" -")).min() else { continue };
                    let (label, values) = (part[..at].trim(), &part[at..]);
                    let name = match label {
                        "CRD" | "EDAM-S" | "EDAM-T" => format!("c5 {label}, attention maps"),
                        "control EDAM-S" => "control c5 EDAM-S, attention maps".to_string(),
                        "c1 EDAM-S" => "c1 EDAM-S, attention maps".to_string(),
                        other => panic!("{doc}: per-teacher label '{other}'"),
                    };
                    let r = table_row(rows, &name).unwrap_or_else(|| panic!("{doc}: per-teacher label '{label}' names no row of {file}"));
                    let want: Vec<String> = r["acc7_diff_per_teacher"].as_array().unwrap_or_else(|| panic!("{file}: no per-teacher figures")).iter().map(|v| format!("{:+.2}", num(v))).collect();
                    let got: Vec<&str> = values.split(',').map(|v| v.trim()).collect();
                    assert_eq!(got, want, "{doc}: per-teacher Acc-7 differences of {label} against {file}");
                    checked += 1;
                }
            }
            if let Some(per_seed) = after.strip_prefix("Per seed (Acc-7 %): ") {
                let mut paragraph = per_seed.to_string();
                for l in lines[i + 1..].iter().skip_while(|l| !l.trim().starts_with("Per seed")).skip(1).take_while(|l| !l.trim().is_empty()) {
                    paragraph.push(' ');
                    paragraph.push_str(l.trim());
                }
                for part in paragraph.split(';') {
                    let part = part.trim().trim_end_matches('.');
                    let Some((label, values)) = part.split_once(|c: char| c.is_ascii_digit()).map(|(l, _)| (l.trim(), &part[l.len()..])) else { continue };
                    let r = match label {
                        "no KD" => rows.iter().find(|r| r["role"] == "student" && r["level"] == "none" && r["config"] == 5),
                        "CRD" | "EDAM-S" | "EDAM-T" => table_row(rows, &format!("c5 {label}, attention maps")),
                        _ => continue,
                    };
                    let Some(r) = r else { continue };
                    let want: Vec<String> = r["acc7_per_seed"].as_array().unwrap().iter().map(|v| format!("{:.1}", num(v))).collect();
                    let got: Vec<&str> =
                        values.split(',').map(|v| v.trim().split(|c: char| !(c.is_ascii_digit() || c == '.')).next().unwrap_or_default().trim_end_matches('.')).take(want.len()).collect();
                    assert_eq!(got, want, "{doc}: per-seed Acc-7 of {label} against {file}");
                }
            }
        }
    }
    assert!(checked >= 5, "the results documents announce their tables' data (<!-- data: FILE -->); {checked} rows checked");
}

/// docs/DATA.md's table of linear baselines and the key detector's 2.0 row, from
/// docs/results/baselines/ (`mmkd data baselines DIR --json`).
#[test]
fn data_md_quotes_the_linear_baselines() {
    let (doc, text) = ("docs/DATA.md", read("docs/DATA.md"));
    let acc = |file: &str, i: usize| format!("{:.1} %", 100.0 * json(file)["acc7_baselines"][i]["acc7"].as_f64().unwrap());
    let names = ["majority class", "text, time-averaged", "audio, time-averaged", "video, time-averaged", "all three, time-averaged", "video at the true event frames (oracle)"];
    for (i, name) in names.iter().enumerate() {
        let row = format!(
            "| {name} | {} | {} | {} |",
            json("docs/results/baselines/content-n2000.json")["acc7_baselines"][i]["features"],
            acc("docs/results/baselines/content-n2000.json", i),
            acc("docs/results/baselines/lookup-n8000.json", i)
        );
        assert_quoted(doc, &text, &row, "docs/results/baselines/{content-n2000,lookup-n8000}.json");
    }
    let small: Vec<String> = (1..6).map(|i| acc("docs/results/baselines/lookup-n2000.json", i).trim_end_matches(" %").to_string()).collect();
    let flat = flatten(&text);
    let content = json("docs/results/content/table.json");
    let teacher = content.as_array().unwrap().iter().find(|r| r["role"] == "teacher").unwrap();
    assert_quoted(doc, &flat, &format!("beats the trained complete teacher ({:.1} %, docs/results/content/)", teacher["acc7_mean"].as_f64().unwrap()), "docs/results/content/table.json");
    assert_quoted(doc, &flat, &format!("{} %", small.join(" / ")), "docs/results/baselines/lookup-n2000.json");
    let cell = |r: &serde_json::Value| {
        let (e, u) = (r["event_share"].as_f64().unwrap(), r["uniform_event_share"].as_f64().unwrap());
        (format!("{e:.3} / {u:.3}"), format!("{:.2}x", e / u))
    };
    for file in ["docs/results/baselines/lookup-n2000.json", "docs/results/baselines/lookup-n8000.json"] {
        let kd = &json(file)["key_detector"];
        let ((c, cx), (a, ax)) = (cell(&kd[0]), cell(&kd[1]));
        assert_quoted(doc, &text, &format!("| {c} = **{cx}** | {a} = {ax} |"), file);
    }
    // The first design's markers, regenerated with `data synth --video-marker`.
    for (marker, label) in [("1.0", "1.0 (first design, 2,000 clips)"), ("1.5", "1.5 (2,000 clips)")] {
        let file = format!("docs/results/baselines/lookup-marker{marker}-n2000.json");
        let kd = &json(&file)["key_detector"];
        let ((c, cx), (a, ax)) = (cell(&kd[0]), cell(&kd[1]));
        assert_quoted(doc, &text, &format!("| {label} | {c} = {cx} | {a} = {ax} |"), &file);
        assert_quoted("docs/DECISIONS.md", &read("docs/DECISIONS.md"), &format!("{cx} {}", if marker == "1.0" { "the uniform event share at marker 1.0" } else { "at 1.5" }), &file);
    }
}

/// RESULTS-synthetic-lookup.md's comparison of the two single teachers at 8 epochs: EDAM-S with
/// the branch-dropout teacher minus with MulT's, paired over the student seeds (t-interval,
/// 4 degrees of freedom), from the two committed 8-epoch studies.
#[test]
fn results_quote_the_two_teacher_difference_from_their_studies() {
    let edam_s = |file: &str| -> Vec<f64> {
        let rows = json(file);
        let row = rows.as_array().unwrap().iter().find(|r| r["method"] == "edam-s" && r["config"] == 5).unwrap().clone();
        row["acc7_per_seed"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
    };
    let (a, b) = (edam_s("docs/results/lookup-8-epochs/table.json"), edam_s("docs/results/lookup-plain-teacher-8-epochs/table.json"));
    let d: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
    let n = d.len() as f64;
    let m = d.iter().sum::<f64>() / n;
    let sd = (d.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let half = 2.776445 * sd / n.sqrt();
    let text = flatten(&read("docs/RESULTS-synthetic-lookup.md"));
    assert_quoted("docs/RESULTS-synthetic-lookup.md", &text, &format!("is {m:+.2} [{:+.2}, {:+.2}]", m - half, m + half), "docs/results/lookup{,-plain-teacher}-8-epochs/table.json");
}

/// The layer-2 event share of transformer `id` over its uniform share, from a `mmkd maps --json`
/// file, as the documents write it ("3.06x").
fn layer2_ratio(file: &str, id: &str) -> String {
    share_ratio(file, id, 1)
}

/// A transformer's event share over the uniform share in one layer (0-based) of a maps file
/// (`mmkd maps --json`'s stats.json), as the documents write it: "3.06x".
fn share_ratio(file: &str, id: &str, layer: usize) -> String {
    let maps = json(file);
    let t = maps["transformers"].as_array().unwrap().iter().find(|t| t["id"] == id).unwrap_or_else(|| panic!("{file}: no {id}"));
    let l = &t["layers"][layer];
    format!("{:.2}x", num(&l["event_share"]) / num(&l["uniform_event_share"]))
}

/// RESULTS-synthetic-lookup.md's three-teacher section: Holm's p-values, the teachers' Acc-7 and
/// validation shares, and the teacher choice remade on the validation split, from their files.
#[test]
fn results_quote_the_three_teacher_study_and_the_validation_choice() {
    let doc = "docs/RESULTS-synthetic-lookup.md";
    let text = flatten(&read(doc));
    let rows = json("docs/results/lookup-k3/table.json");
    let rows = rows.as_array().unwrap();
    // Configuration 5's CRD, EDAM-S, EDAM-T, then the control, in that order.
    let distilled: Vec<&serde_json::Value> = rows.iter().filter(|r| r["role"] == "student" && r["level"] != "none" && r["config"] == 5).collect();
    let p = |key: &str| distilled.iter().map(|r| format!("{:.4}", num(&r[key]))).collect::<Vec<_>>();
    let acc = p("acc7_diff_p");
    assert_quoted(doc, &text, &format!("(p = {}, {}, {} and {} for CRD, EDAM-S, EDAM-T and the control", acc[0], acc[1], acc[2], acc[3]), "docs/results/lookup-k3/table.json");
    let c1 = rows.iter().find(|r| r["config"] == 1 && r["level"] != "none").unwrap();
    assert_quoted(doc, &text, &format!(", {:.4} for configuration 1)", num(&c1["acc7_diff_p"])), "docs/results/lookup-k3/table.json");
    let share = p("event_share_diff_p");
    assert_quoted(doc, &text, &format!("(p = {}, {}, {}), CRD is not (p = {:.2})", share[1], share[2], share[3], num(&distilled[0]["event_share_diff_p"])), "docs/results/lookup-k3/table.json");
    let teacher = rows.iter().find(|r| r["role"] == "teacher").unwrap();
    let accs: Vec<String> = teacher["acc7_per_seed"].as_array().unwrap().iter().map(|v| format!("{:.1}", num(v))).collect();
    assert_quoted(doc, &text, &format!("The teachers reached {}, {} and {} % test Acc-7", accs[0], accs[1], accs[2]), "docs/results/lookup-k3/table.json");
    let valid = |id: &str| (1..=3).map(|s| layer2_ratio(&format!("docs/results/lookup-k3/teacher-maps/teacher-s{s}-valid.json"), id)).collect::<Vec<_>>();
    let (vl, va) = (valid("V<-L"), valid("V<-A"));
    assert_quoted(doc, &text, &format!("puts {}, {} and {} the uniform share", vl[0], vl[1], vl[2]), "docs/results/lookup-k3/teacher-maps/");
    assert_quoted(doc, &text, &format!("their `V<-A` {}, {} and {}.", va[0], va[1], va[2]), "docs/results/lookup-k3/teacher-maps/");
    let choice = |split: &str, p: &str| layer2_ratio(&format!("docs/results/teacher-choice-valid/maps-{split}-bd{p}.json"), "V<-L");
    assert_quoted(doc, &text, &format!("reaches {} on the 1,000 validation clips, the p = 0.5 teacher's {}", choice("valid", "0.25"), choice("valid", "0.5")), "docs/results/teacher-choice-valid/");
    assert_quoted(
        doc,
        &text,
        &format!(
            "are {} and {} (this machine's float rounding gives {:.1} % test Acc-7",
            choice("test", "0.25"),
            choice("test", "0.5"),
            100.0 * num(&json("docs/results/teacher-choice-valid/eval-bd0.25.json")["acc7"])
        ),
        "docs/results/teacher-choice-valid/",
    );
}

/// README's 2026-12-04 rerun of the main job: its study time from its study.log, and its table
/// equal to 2026-12-03's in every field that table has.
#[test]
fn readme_quotes_the_main_job_rerun() {
    let log = read("docs/results/lookup-rerun-2026-12-04/study.log");
    let done = log.lines().find_map(|l| l.split("study runs done in ").nth(1)).expect("the study log's last line");
    let text = flatten(&read("README.md"));
    assert_quoted("README.md", &text, &format!("lookup-rerun-2026-12-04/, {}, which repeated 2026-12-03's in every figure", done.trim()), "docs/results/lookup-rerun-2026-12-04/study.log");
    let (new, old) = (json("docs/results/lookup-rerun-2026-12-04/table.json"), json("docs/results/lookup-rerun-2026-12-03/table.json"));
    for (a, b) in new.as_array().unwrap().iter().zip(old.as_array().unwrap()) {
        for (key, value) in b.as_object().unwrap() {
            assert_eq!(&a[key], value, "{key}");
        }
    }
}

/// bench/NOTES.md's profile table, row by row, from bench/results/profile-devbox-2cpu-24g-2026-12-04.jsonl.
#[test]
fn notes_quote_the_profile_by_kind() {
    let data = "bench/results/profile-devbox-2cpu-24g-2026-12-04.jsonl";
    let cases: Vec<serde_json::Value> = read(data).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let text = read("bench/NOTES.md");
    for kind in cases[0]["by_kind_percent"].as_object().unwrap().keys() {
        let row = format!("| {kind} | {} |", cases.iter().map(|c| format!("{:.1} %", num(&c["by_kind_percent"][kind]))).collect::<Vec<_>>().join(" | "));
        assert_quoted("bench/NOTES.md", &text, &row, data);
    }
}

/// bench/NOTES.md's table of peak memory before and after mapped features (issue 21, item 5), row
/// by row, from bench/results/rss-devbox-2cpu-24g-2026-12-04.jsonl; and the target it claims: the
/// mapped run's anonymous peak within 1 GB of the step's own.
#[test]
fn notes_quote_the_memory_of_mapped_features() {
    let data = "bench/results/rss-devbox-2cpu-24g-2026-12-04.jsonl";
    let runs: Vec<serde_json::Value> = read(data).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let text = read("bench/NOTES.md");
    let gb = |v: &serde_json::Value| format!("{:.2} GB", num(v) / 1e9);
    for r in &runs {
        let row = format!(
            "| {} | {} | {} | {} | {} | {} | {:.1} s |",
            r["label"].as_str().unwrap(),
            r["commit"].as_str().unwrap(),
            gb(&r["split_files_bytes"]),
            gb(&r["vm_hwm_bytes"]),
            gb(&r["max_rss_anon_bytes"]),
            gb(&r["max_rss_file_bytes"]),
            num(&r["median_step_s"])
        );
        assert_quoted("bench/NOTES.md", &text, &row, data);
    }
    let anon = |label: &str| num(&runs.iter().find(|r| r["label"] == label).unwrap_or_else(|| panic!("{data}: no run {label}"))["max_rss_anon_bytes"]);
    assert!(anon("after-mosei-sized") <= anon("after-tiny-step-only").max(anon("before-tiny-step-only")) + 1e9, "{data}: the mapped run's anonymous peak is more than 1 GB over the step's own");
    // bench/README.md's issue-21 target row quotes the latest MOSEI-sized run.
    let latest = runs.iter().rev().find(|r| r["label"].as_str().unwrap().ends_with("mosei-sized")).unwrap();
    let claim = format!("**met**: {} at {}", gb(&latest["max_rss_anon_bytes"]), latest["commit"].as_str().unwrap());
    assert_quoted("bench/README.md", &read("bench/README.md"), &claim, data);
}

/// bench/README's 2026-12-04 rerun of the `small` preset, row by row, from its result file.
#[test]
fn bench_readme_quotes_the_small_rerun() {
    let data = "bench/results/devbox-2cpu-24g-small-2026-12-04.json";
    let m = &json(data)["medians_ms"];
    let text = read("bench/README.md");
    for (name, case) in [
        ("complete teacher, train step, B = 64", "teacher-train/b64"),
        ("config-5 student + EDAM-S, train step, B = 64", "student-train/b64"),
        ("config-5 student, inference, B = 1", "student-infer/b1"),
    ] {
        let (a, b) = (num(&m[format!("mmkd/{case}")]), num(&m[format!("pytorch/{case}")]));
        assert_quoted("bench/README.md", &text, &format!("| {name} | {a:.2} ms | {b:.2} ms | {:.2}x |", a / b), data);
    }
}

/// reference/README.md's parity figures at both shapes, from the committed parity runs
/// (`reference/parity.py --json`): forward outputs, the first step's gradients, the key-bias
/// gradients, and that both passed; for the reruns on the fused kernel and after the fused
/// LayerNorm.
#[test]
fn reference_readme_quotes_the_parity_reruns() {
    let (doc, text) = ("reference/README.md", read("reference/README.md"));
    let flat = flatten(&text);
    for run in ["2026-12-04", "2026-12-04-fused-norm"] {
        let figures = |shape: &str| {
            let file = format!("reference/results/parity-{shape}-{run}.json");
            let d = json(&file);
            assert_eq!(d["pass"], true, "{file}: the rerun the README quotes passed");
            let worst = |group: &str| d["cases"].as_array().unwrap().iter().filter_map(|c| c["max_err"][group].as_f64()).fold(0.0f64, f64::max);
            let sci = |v: f64| format!("{v:.1e}");
            (sci(d["forward_worst"].as_f64().unwrap()), sci(worst("gradients, step 1")), sci(worst("key-bias grad")), file)
        };
        let (small, paper) = (figures("small"), figures("paper"));
        assert_quoted(doc, &flat, &format!("forward outputs within {} (small) and {} (paper)", small.0, paper.0), &format!("{} and {}", small.3, paper.3));
        assert_quoted(doc, &flat, &format!("the first step's gradients within {} and {}", small.1, paper.1), &format!("{} and {}", small.3, paper.3));
        assert_quoted(doc, &flat, &format!("key-bias gradients {} and {}", small.2, paper.2), &format!("{} and {}", small.3, paper.3));
    }
}

/// RESULTS-synthetic-lookup.md's second branch-dropout teacher (training seed 2), from
/// docs/results/teacher-seed2/ (its run.sh made the files).
#[test]
fn results_quote_the_seed_2_teacher() {
    let (doc, text) = ("docs/RESULTS-synthetic-lookup.md", read("docs/RESULTS-synthetic-lookup.md"));
    let flat = flatten(&text);
    let dir = "docs/results/teacher-seed2";
    let acc = 100.0 * num(&json(&format!("{dir}/eval.json"))["acc7"]);
    let maps = format!("{dir}/maps-test.json");
    let ratio = |id: &str, layer: usize| share_ratio(&maps, id, layer);
    let quoted = format!(
        "reaches {acc:.1} % and {} / {} in the second layers of `V<-A` / `V<-L` ({} / {} in layer 1, 1,000 test clips)",
        ratio("V<-A", 1),
        ratio("V<-L", 1),
        ratio("V<-A", 0),
        ratio("V<-L", 0)
    );
    assert_quoted(doc, &flat, &quoted, &maps);
}

/// RESULTS-synthetic-lookup.md's per-layer shares of MulT's teacher, retrained alone
/// (docs/results/teacher-plain/, its run.sh made the files).
#[test]
fn results_quote_the_plain_teacher_shares() {
    let (doc, text) = ("docs/RESULTS-synthetic-lookup.md", read("docs/RESULTS-synthetic-lookup.md"));
    let flat = flatten(&text);
    let dir = "docs/results/teacher-plain";
    let ratio = |file: &str, id: &str, layer: usize| share_ratio(&format!("{dir}/{file}"), id, layer);
    let acc = 100.0 * num(&json(&format!("{dir}/eval.json"))["acc7"]);
    let big = "maps-test-1000.json";
    assert_quoted(
        doc,
        &flat,
        &format!(
            "{acc:.1} % test Acc-7 against this study's 61.50 %: {} / {} and {} / {} in its two layers, 1,000 test clips",
            ratio(big, "V<-A", 0),
            ratio(big, "V<-A", 1),
            ratio(big, "V<-L", 0),
            ratio(big, "V<-L", 1)
        ),
        dir,
    );
    assert_quoted(doc, &flat, &format!("`V-temporal` puts {} and {} the uniform share there", ratio(big, "V-temporal", 0), ratio(big, "V-temporal", 1)), dir);
    let small = "maps-test-200.json";
    assert_quoted(doc, &flat, &format!("{} / {} the uniform share in layers 1 / 2 on 200 test clips", ratio(small, "V-temporal", 0), ratio(small, "V-temporal", 1)), dir);
}

/// RESULTS-synthetic-small.md: its table is the one `study` renders from the committed
/// table.json (line for line, and the committed TABLE.md's), and its reading quotes that file:
/// the teachers' range, the CRD penultimate differences, the teacher's event share, the study's
/// time from its log, and that no distilled row's interval excludes 0.
#[test]
fn results_small_is_its_study() {
    let (doc, text) = ("docs/RESULTS-synthetic-small.md", read("docs/RESULTS-synthetic-small.md"));
    let dir = "docs/results/small-content";
    let rows: Vec<mmkd::study::report::TableRow> = serde_json::from_str(&read(&format!("{dir}/table.json"))).unwrap();
    let rendered = mmkd::study::report::to_markdown(&rows, None);
    let table = |md: &str| md.lines().filter(|l| l.starts_with('|')).map(String::from).collect::<Vec<_>>();
    assert_eq!(table(&text), table(&rendered), "{doc}: the table differs from {dir}/table.json rendered");
    assert_eq!(table(&read(&format!("{dir}/TABLE.md"))), table(&rendered), "{dir}/TABLE.md differs from its table.json");
    let flat = flatten(&text);
    let data = format!("{dir}/table.json");
    let json_rows = json(&data);
    let json_rows = json_rows.as_array().unwrap();
    let teachers: Vec<f64> = json_rows.iter().filter(|r| r["role"] == "teacher").map(|r| num(&r["acc7_mean"])).collect();
    let (lo, hi) = (teachers.iter().cloned().fold(f64::MAX, f64::min), teachers.iter().cloned().fold(f64::MIN, f64::max));
    assert_quoted(doc, &flat, &format!("**Teachers** ({lo:.2}-{hi:.2} % Acc-7)"), &data);
    let diff = |config: u64, level: &str| {
        let r = json_rows.iter().find(|r| r["config"] == config && r["level"] == level && r["method"] == "crd").unwrap();
        format!("c{config} {:+.2}", num(&r["acc7_diff_mean"]))
    };
    assert_quoted(doc, &flat, &format!("({}, {}, {}, {})", diff(2, "penultimate"), diff(3, "penultimate"), diff(4, "penultimate"), diff(5, "penultimate")), &data);
    let edam_s = json_rows.iter().find(|r| r["config"] == 5 && r["method"] == "edam-s").unwrap();
    assert_quoted(doc, &flat, &format!("in `V<-A` and `V<-L` is {:.3}, the uniform share", num(&edam_s["teacher_event_share_mean"])), &data);
    assert_eq!(format!("{:.3}", num(&edam_s["teacher_event_share_mean"])), format!("{:.3}", num(&edam_s["uniform_event_share"])));
    let distilled: Vec<&serde_json::Value> = json_rows.iter().filter(|r| r["level"] != "none").collect();
    assert!(distilled.iter().all(|r| interval(&r["acc7_diff_ci95"]).is_some_and(|(lo, hi)| lo <= 0.0 && hi >= 0.0)), "{data}: a distilled row is firm; the page says none is");
    assert_quoted(doc, &flat, &format!("Holm's adjustment across the {} distilled rows", distilled.len()), &data);
    let log = read(&format!("{dir}/study.log"));
    let secs = log.lines().find_map(|l| l.split("study runs done in ").nth(1)).expect("the study's time in its log").trim().to_string();
    assert_quoted(doc, &flat, &format!("{secs} of study runs"), &format!("{dir}/study.log"));
}

/// docs/DATA.md's accuracies over three seeds, from the `small` study's table.json.
#[test]
fn data_md_quotes_the_small_study() {
    let (doc, text) = ("docs/DATA.md", read("docs/DATA.md"));
    let flat = flatten(&text);
    let data = "docs/results/small-content/table.json";
    let rows = json(data);
    let rows = rows.as_array().unwrap();
    let teacher = |kind: &str| {
        let r = rows.iter().find(|r| r["role"] == "teacher" && r["teacher"] == kind).unwrap();
        format!("{:.1} +- {:.1}", num(&r["acc7_mean"]), num(&r["acc7_std"]))
    };
    let nokd = rows.iter().find(|r| r["role"] == "student" && r["level"] == "none").unwrap();
    let quoted = format!(
        "complete teacher {} %, video / language / audio branch {} / {} / {} %, student without KD {:.1} +- {:.1} %",
        teacher("complete"),
        teacher("video"),
        teacher("language"),
        teacher("audio"),
        num(&nokd["acc7_mean"]),
        num(&nokd["acc7_std"])
    );
    assert_quoted(doc, &flat, &quoted, data);
}

/// RESULTS-synthetic-lookup.md's per-layer shares of the main job's teacher, from the same
/// recipe retrained for the validation choice (docs/results/teacher-choice-valid/).
#[test]
fn results_quote_the_main_teachers_layers() {
    let (doc, text) = ("docs/RESULTS-synthetic-lookup.md", read("docs/RESULTS-synthetic-lookup.md"));
    let flat = flatten(&text);
    let file = "docs/results/teacher-choice-valid/maps-test-bd0.25.json";
    let ratio = |id: &str, layer: usize| share_ratio(file, id, layer);
    let quoted = format!(
        "puts {} the uniform share on the event in the second layer of `V<-L` (issue 9's item 3; {} in layer 1) and {} / {} in `V<-A`",
        ratio("V<-L", 1),
        ratio("V<-L", 0),
        ratio("V<-A", 0),
        ratio("V<-A", 1)
    );
    assert_quoted(doc, &flat, &quoted, file);
}

/// bench/README.md's gradient-checkpointing row and paragraph, from the pair of runs.
#[test]
fn bench_readme_quotes_the_checkpointing_pair() {
    let (doc, text) = ("bench/README.md", read("bench/README.md"));
    let flat = flatten(&text);
    let file = "bench/results/checkpointing-devbox-2cpu-24g-2026-12-04.jsonl";
    let lines: Vec<serde_json::Value> = read(file).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let run = |gc: bool| {
        lines.iter().find(|l| l["gradient_checkpointing"] == gc && l["case"] == "teacher-train" && l["preset"] == "paper").unwrap_or_else(|| panic!("{file}: no run with checkpointing {gc}"))
    };
    let (with, without) = (run(true), run(false));
    let gb = |r: &serde_json::Value| format!("{:.2} GB", num(&r["peak_rss_mb"]) / 1000.0);
    let s = |r: &serde_json::Value| format!("{:.1} s", num(&r["median_ms"]) / 1000.0);
    assert_quoted(doc, &flat, &format!("({} against {} without, in that pair)", s(with), s(without)), file);
    assert_quoted(doc, &flat, &format!("the step peaks at {} against {} without, and takes {} against {} without", gb(with), gb(without), s(with), s(without)), file);
}

/// docs/DATA.md's table of teachers with and without branch dropout: every cell from the
/// retrained teachers' files (1,000 test clips; each folder's run.sh made them).
#[test]
fn data_md_quotes_the_branch_dropout_teachers() {
    let (doc, text) = ("docs/DATA.md", read("docs/DATA.md"));
    // Both layers, or "-" for a transformer the teacher does not have.
    let ratios = |file: &str, id: &str| -> String {
        let m = json(file);
        match m["transformers"].as_array().unwrap().iter().find(|t| t["id"] == id) {
            None => "-".to_string(),
            Some(t) => (0..t["layers"].as_array().unwrap().len()).map(|layer| share_ratio(file, id, layer)).collect::<Vec<_>>().join(", "),
        }
    };
    let rows = [
        ("complete, no branch dropout (above)", "docs/results/teacher-plain/eval.json", "docs/results/teacher-plain/maps-test-1000.json"),
        ("audio branch alone (the limit case: `V<-A` is its only route)", "docs/results/teacher-audio/eval.json", "docs/results/teacher-audio/maps-test-1000.json"),
        ("complete, branch dropout 0.25", "docs/results/teacher-choice-valid/eval-bd0.25.json", "docs/results/teacher-choice-valid/maps-test-bd0.25.json"),
        ("complete, branch dropout 0.5", "docs/results/teacher-choice-valid/eval-bd0.5.json", "docs/results/teacher-choice-valid/maps-test-bd0.5.json"),
        ("complete, branch dropout 0.25, training seed 2 (measured after the choice; no study uses it)", "docs/results/teacher-seed2/eval.json", "docs/results/teacher-seed2/maps-test.json"),
    ];
    for (label, eval, maps) in rows {
        let acc = 100.0 * num(&json(eval)["acc7"]);
        let line = format!("| {label} | {acc:.1} % | {} | {} | {} |", ratios(maps, "V<-A"), ratios(maps, "V<-L"), ratios(maps, "V-temporal"));
        // The criterion's cell is bold in the table.
        assert_quoted(doc, &text.replace("**3.06x**", "3.06x"), &line, maps);
    }
}

/// docs/DATA.md's "Accuracies reached" table: the seed-1 runs of the `small` study and the
/// majority class of the content baselines.
#[test]
fn data_md_quotes_the_seed_1_accuracies() {
    let (doc, text) = ("docs/DATA.md", read("docs/DATA.md"));
    let data = "docs/results/small-content/table.json";
    let rows = json(data);
    let rows = rows.as_array().unwrap();
    let seed1 = |r: &serde_json::Value| (num(&r["acc7_per_seed"][0]), num(&r["f1_per_seed"][0]));
    assert_eq!(rows[0]["seeds"][0], 1, "{data}: the first run of each row is seed 1");
    let (t_acc, t_f1) = seed1(rows.iter().find(|r| r["role"] == "teacher" && r["teacher"] == "complete").unwrap());
    let (s_acc, s_f1) = seed1(rows.iter().find(|r| r["role"] == "student" && r["level"] == "none").unwrap());
    assert_quoted(doc, &text, &format!("| complete teacher (video + audio + text) | {t_acc:.1} % | {t_f1:.1} |"), data);
    assert_quoted(doc, &text, &format!("| student, config 5, no distillation (video only) | {s_acc:.1} % | {s_f1:.1} |"), data);
    let majority = 100.0 * num(&json("docs/results/baselines/content-n2000.json")["acc7_baselines"][0]["acc7"]);
    assert_quoted(doc, &text, &format!("| majority class | {majority:.1} % | - |"), "docs/results/baselines/content-n2000.json");
}

/// docs/DECISIONS.md's "Lookup study size" pilots, from docs/results/pilots-lookup-size/.
#[test]
fn decisions_quote_the_lookup_size_pilots() {
    let (doc, text) = ("docs/DECISIONS.md", read("docs/DECISIONS.md"));
    let dir = "docs/results/pilots-lookup-size";
    let pct = |v: &serde_json::Value| format!("{:.1} %", 100.0 * num(v));
    let val = |file: &str, epoch: usize| {
        let line = read(&format!("{dir}/{file}")).lines().nth(epoch - 1).map(String::from).unwrap_or_else(|| panic!("{dir}/{file}: no epoch {epoch}"));
        pct(&serde_json::from_str::<serde_json::Value>(&line).unwrap()["val_acc7"])
    };
    let test = |file: &str| pct(&json(&format!("{dir}/{file}"))["acc7"]);
    let maps = |n: &str| format!("{dir}/student-{n}-maps-test.json");
    let quoted = format!(
        "with 4,000 clips a student without KD trained 4 epochs scores {} (it hardly finds the event: {} / {} the uniform share in the second layers of `V<-A` / `V<-L`), with 8,000 clips {} ({} / {}) in 4 epochs and {} validation after 3; the complete teacher reaches {} validation in 6 epochs and {} in 7 ({} test from its best of 8 epochs)",
        test("student-4000-eval.json"),
        share_ratio(&maps("4000"), "V<-A", 1),
        share_ratio(&maps("4000"), "V<-L", 1),
        test("student-8000-eval.json"),
        share_ratio(&maps("8000"), "V<-A", 1),
        share_ratio(&maps("8000"), "V<-L", 1),
        val("student-8000-metrics.jsonl", 3),
        val("teacher-8000-metrics.jsonl", 6),
        val("teacher-8000-metrics.jsonl", 7),
        test("teacher-8000-eval.json"),
    );
    assert_quoted(doc, &text, &quoted, dir);
}

/// docs/DECISIONS.md's peak memory and time of `data convert` on the MOSEI-sized pickle, from
/// GNU time's output in bench/results/.
#[test]
fn decisions_quote_the_convert_measurement() {
    let file = "bench/results/convert-mosei-sized-2026-12-04.txt";
    let log = read(file);
    let field = |name: &str| log.lines().find_map(|l| l.trim().strip_prefix(name)).unwrap_or_else(|| panic!("{file}: no '{name}'")).trim().to_string();
    let kib: f64 = field("Maximum resident set size (kbytes):").parse().unwrap();
    let bytes = 6_358_449_987.0;
    let seconds = log.lines().find_map(|l| l.split(" in ").nth(1).and_then(|t| t.strip_suffix('s'))).expect("the convert's own time");
    let (doc, text) = ("docs/DECISIONS.md", read("docs/DECISIONS.md"));
    let flat = flatten(&text);
    assert_quoted(doc, &flat, &format!("peak RSS {:.2} GB = {:.2}x the file", kib * 1024.0 / 1e9, kib * 1024.0 / bytes), file);
    assert_quoted(doc, &flat, &format!("{seconds} s on 2 cores while a build shared them"), file);
}

/// RESULTS-synthetic-lookup.md's three-teacher `content` study: the teachers' accuracies and
/// epochs (their metrics.jsonl, committed), their event share and the uniform one.
#[test]
fn results_quote_the_three_teacher_content_study() {
    let (doc, text) = ("docs/RESULTS-synthetic-lookup.md", read("docs/RESULTS-synthetic-lookup.md"));
    let flat = flatten(&text);
    let data = "docs/results/content-k3/table.json";
    let rows = json(data);
    let rows = rows.as_array().unwrap();
    let teacher = rows.iter().find(|r| r["role"] == "teacher").unwrap();
    let accs: Vec<String> = teacher["acc7_per_seed"].as_array().unwrap().iter().map(|v| format!("{:.1}", num(v))).collect();
    let epochs: Vec<String> = (1..=3).map(|s| read(&format!("docs/results/content-k3/teacher-metrics/teacher-s{s}.jsonl")).lines().count().to_string()).collect();
    assert_quoted(doc, &flat, &format!("({}, {} and {} %; they stopped after {}, {} and {} epochs)", accs[0], accs[1], accs[2], epochs[0], epochs[1], epochs[2]), data);
    let edam_s = rows.iter().find(|r| r["method"] == "edam-s" && r.get("control").is_none()).unwrap();
    assert_quoted(doc, &flat, &format!("their share in `V<-A` and `V<-L` is {:.3}, the uniform share ({:.3})", num(&edam_s["teacher_event_share_mean"]), num(&edam_s["uniform_event_share"])), data);
    let log = read("docs/results/content-k3/study.log");
    let secs = log.lines().find_map(|l| l.split("study runs done in ").nth(1)).expect("the study's time").trim().trim_end_matches(" s").to_string();
    let secs = format!("{},{}", &secs[..secs.len() - 3], &secs[secs.len() - 3..]);
    assert_quoted(doc, &flat, &format!("69 runs, {secs} s of study runs"), "docs/results/content-k3/study.log");
}

/// bench/NOTES.md's reverted dropout experiment, from its A/B lines.
#[test]
fn notes_quote_the_dropout_ab() {
    let file = "bench/results/ab-scaled-mask-dropout-2026-12-04.jsonl";
    let lines = ab_lines(file);
    let median = |preset: &str, case: &str, binary: &str| {
        let v: Vec<f64> = lines.iter().filter(|l| l["preset"] == preset && l["case"] == case && l["binary"] == binary).map(|l| num(&l["median_ms"])).collect();
        middle(v)
    };
    let paper = |binary: &str| lines.iter().find(|l| l["preset"] == "paper" && l["binary"] == binary).unwrap();
    let (doc, text) = ("bench/NOTES.md", read("bench/NOTES.md"));
    let flat = flatten(&text);
    let quoted = format!(
        "`small` teacher step {:.1} -> {:.1} ms, student step {:.1} -> {:.1} ms, and one `paper` teacher step each, {:.1} -> {:.1} s at {:.2} -> {:.2} GB",
        median("small", "teacher-train", "before"),
        median("small", "teacher-train", "after"),
        median("small", "student-train", "before"),
        median("small", "student-train", "after"),
        num(&paper("before")["median_ms"]) / 1000.0,
        num(&paper("after")["median_ms"]) / 1000.0,
        num(&paper("before")["peak_rss_mb"]) / 1000.0,
        num(&paper("after")["peak_rss_mb"]) / 1000.0,
    );
    assert_quoted(doc, &flat, &quoted, file);
}

/// bench/NOTES.md's dropout-mirror A/B table and the profile after it (issue 21, item 3), from
/// their data files.
#[test]
fn notes_quote_the_dropout_mirror() {
    let file = "bench/results/ab-dropout-mirror-2026-12-04.jsonl";
    let lines = ab_lines(file);
    let median = |case: &str, binary: &str| {
        let v: Vec<f64> = lines.iter().filter(|l| l["preset"] == "small" && l["case"] == case && l["binary"] == binary).map(|l| num(&l["median_ms"])).collect();
        assert_eq!(v.len(), 5, "{file}: five rounds of {case} {binary}");
        middle(v)
    };
    let (doc, text) = ("bench/NOTES.md", read("bench/NOTES.md"));
    for (case, label) in [("teacher-train", "`small` teacher train step, B = 64"), ("student-train", "`small` student (EDAM-S) train step, B = 64")] {
        let (before, after) = (median(case, "before"), median(case, "after"));
        let row = format!("| {label} | {before:.1} ms | {after:.1} ms | {:.1} % |", 100.0 * (after / before - 1.0));
        assert_quoted(doc, &text, &row, file);
    }
    let profile = "bench/results/profile-dropout-mirror-devbox-2cpu-24g-2026-12-04.jsonl";
    let cases: Vec<serde_json::Value> = read(profile).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let share = |case: &str| num(&cases.iter().find(|c| c["case"] == case).unwrap()["by_kind_percent"]["random numbers (dropout masks)"]);
    let quoted = format!("random numbers are {:.1} % of the teacher process and {:.1} % of the student's", share("teacher-train"), share("student-train"));
    assert_quoted(doc, &flatten(&text), &quoted, profile);
    let decisions = flatten(&read("docs/DECISIONS.md"));
    let quoted = format!("ChaCha12 itself: {:.0} % of a `small` teacher step, {:.0} % of a student's", share("teacher-train"), share("student-train"));
    assert_quoted("docs/DECISIONS.md", &decisions, &quoted, profile);
}

/// bench/NOTES.md's fused LayerNorm A/B table (issue 21, item 3), from its data file.
#[test]
fn notes_quote_the_fused_layer_norm_ab() {
    let file = "bench/results/ab-fused-layer-norm-2026-12-04.jsonl";
    let lines = ab_lines(file);
    let pick = |preset: &str, case: &str, binary: &str| lines.iter().filter(|l| l["preset"] == preset && l["case"] == case && l["binary"] == binary).collect::<Vec<_>>();
    let median = |case: &str, binary: &str| {
        let v: Vec<f64> = pick("small", case, binary).iter().map(|l| num(&l["median_ms"])).collect();
        assert_eq!(v.len(), 5, "{file}: five rounds of {case} {binary}");
        middle(v)
    };
    let paper = |binary: &str, key: &str| pick("paper", "teacher-train", binary).iter().map(|l| format!("{:.2}", num(&l[key]) / 1000.0)).collect::<Vec<_>>();
    let seconds = |binary: &str| pick("paper", "teacher-train", binary).iter().map(|l| format!("{:.1}", num(&l["median_ms"]) / 1000.0)).collect::<Vec<_>>().join(" and ");
    let (doc, text) = ("bench/NOTES.md", read("bench/NOTES.md"));
    for (case, label) in [("teacher-train", "`small` teacher train step, B = 64 (median of 5)"), ("student-train", "`small` student (EDAM-S) train step, B = 64 (median of 5)")] {
        assert_quoted(doc, &text, &format!("| {label} | {:.1} ms | {:.1} ms |", median(case, "before"), median(case, "after")), file);
    }
    let row = format!(
        "| `paper` teacher train step, B = 64 (two runs each) | {} s, {} GB | {} s, {} GB |",
        seconds("before"),
        paper("before", "peak_rss_mb").join(" and "),
        seconds("after"),
        paper("after", "peak_rss_mb").join(" and ")
    );
    assert_quoted(doc, &text, &row, file);
    let fell = paper("before", "peak_rss_mb").iter().zip(paper("after", "peak_rss_mb")).map(|(b, a)| b.parse::<f64>().unwrap() - a.parse::<f64>().unwrap()).fold(f64::INFINITY, f64::min);
    assert!((fell - 0.9).abs() < 0.05, "{file}: NOTES says the peak fell by 0.9 GB; the runs say {fell:.2}");
    assert!(paper("after", "peak_rss_mb").iter().all(|v| v.parse::<f64>().unwrap() < 6.0), "{file}: NOTES says the step is under 6 GB");
}

/// bench/README.md's tables of issue 21's side-by-side runs, row by row, from
/// bench/results/devbox-2cpu-24g-2026-12-04-{d4a536c,a5922ae}-{small,paper}.json (`bench/run.sh`),
/// and the ratios the targets table quotes from the last one.
#[test]
fn bench_readme_quotes_the_final_side_by_side_runs() {
    let (doc, text) = ("bench/README.md", read("bench/README.md"));
    let time = |ms: f64| if ms >= 1000.0 { format!("{:.2} s", ms / 1000.0) } else { format!("{ms:.2} ms") };
    let memory = |mb: f64| if mb >= 1000.0 { format!("{:.2} GB", mb / 1000.0) } else { format!("{mb:.0} MB") };
    let labels = [
        ("teacher-train", "b64", "complete teacher, train step, B = 64"),
        ("student-train", "b64", "config-5 student + EDAM-S, train step, B = 64"),
        ("teacher-infer", "b64", "complete teacher, inference, B = 64"),
        ("student-infer", "b64", "config-5 student, inference, B = 64"),
        ("teacher-infer", "b1", "complete teacher, inference, B = 1"),
        ("student-infer", "b1", "config-5 student, inference, B = 1"),
    ];
    for (commit, preset) in [("d4a536c", "small"), ("d4a536c", "paper"), ("a5922ae", "small"), ("a5922ae", "paper")] {
        let file = format!("bench/results/devbox-2cpu-24g-2026-12-04-{commit}-{preset}.json");
        let d = json(&file);
        let (m, r) = (&d["medians_ms"], &d["peak_rss_mb"]);
        for (case, batch, label) in labels {
            let (k, p) = (format!("mmkd/{case}/{batch}"), format!("pytorch/{case}/{batch}"));
            let row = format!(
                "| {label} | {} | {} | {:.2}x | {:.1} ({:.1} %) | {} / {} |",
                time(num(&m[&k])),
                time(num(&m[&p])),
                num(&m[&k]) / num(&m[&p]),
                num(&d["gflops"][&k]),
                100.0 * num(&d["fraction_of_peak"][&k]),
                memory(num(&r[&k])),
                memory(num(&r[&p]))
            );
            assert_quoted(doc, &text, &row, &file);
        }
    }
    let flat = flatten(&text);
    let (small, paper) = (json("bench/results/devbox-2cpu-24g-2026-12-04-a5922ae-small.json"), json("bench/results/devbox-2cpu-24g-2026-12-04-a5922ae-paper.json"));
    let ratio = |d: &serde_json::Value, case: &str| num(&d["medians_ms"][&format!("mmkd/{case}")]) / num(&d["medians_ms"][&format!("pytorch/{case}")]);
    let file = "bench/results/devbox-2cpu-24g-2026-12-04-a5922ae-{small,paper}.json";
    assert_quoted(
        doc,
        &flat,
        &format!("GEMM peak measured first: {:.1} GFLOP/s before the `small` run, {:.1} before the `paper` run", num(&small["gemm_peak_gflops"]), num(&paper["gemm_peak_gflops"])),
        file,
    );
    assert_quoted(doc, &flat, &format!("| `small` teacher train step <= 0.8x | **missed**: {:.2}x", ratio(&small, "teacher-train/b64")), file);
    assert_quoted(doc, &flat, &format!("| `small` student (EDAM-S) train step <= 0.8x | **met**: {:.2}x", ratio(&small, "student-train/b64")), file);
    assert_quoted(
        doc,
        &flat,
        &format!(
            "teacher **at the line**: {:.2}x ({:.2} against {:.2} ms, {:.4}); student **missed**: {:.2}x",
            ratio(&small, "teacher-infer/b64"),
            num(&small["medians_ms"]["mmkd/teacher-infer/b64"]),
            num(&small["medians_ms"]["pytorch/teacher-infer/b64"]),
            ratio(&small, "teacher-infer/b64"),
            ratio(&small, "student-infer/b64")
        ),
        file,
    );
    assert_quoted(
        doc,
        &flat,
        &format!(
            "**met**: {:.2}x ({:.2} s against {:.2} s), {:.2} GB",
            ratio(&paper, "teacher-train/b64"),
            num(&paper["medians_ms"]["mmkd/teacher-train/b64"]) / 1000.0,
            num(&paper["medians_ms"]["pytorch/teacher-train/b64"]) / 1000.0,
            num(&paper["peak_rss_mb"]["mmkd/teacher-train/b64"]) / 1000.0
        ),
        file,
    );
    assert_quoted(doc, &flat, &format!("**missed**: {:.2}x (a batch of one row cannot be cut in parts)", ratio(&paper, "student-infer/b1")), file);
    assert_quoted(
        doc,
        &flat,
        &format!(
            "**met**: {:.1} % ({:.1} GFLOP/s against {:.1})",
            100.0 * num(&paper["fraction_of_peak"]["mmkd/teacher-train/b64"]),
            num(&paper["gflops"]["mmkd/teacher-train/b64"]),
            num(&paper["gemm_peak_gflops"])
        ),
        file,
    );
    assert!(ratio(&small, "teacher-train/b64") > 0.8 && ratio(&small, "student-train/b64") <= 0.8 && ratio(&small, "student-infer/b64") > 0.8, "{file}: the verdicts in the targets table");
    assert!(
        ratio(&paper, "teacher-train/b64") <= 0.4 && num(&paper["peak_rss_mb"]["mmkd/teacher-train/b64"]) <= 6000.0 && ratio(&paper, "student-infer/b1") > 0.4,
        "{file}: the verdicts in the targets table"
    );
}

/// README.md's main-job reruns after the fused LayerNorm and after the batch in parts: each one's
/// study time, the largest move of a mean Acc-7 against the rerun before it, and that every
/// verdict is the same.
#[test]
fn readme_quotes_the_main_job_after_the_fused_layer_norm_and_the_batch_in_parts() {
    check_rerun("docs/results/lookup-rerun-2026-12-04-fused-norm", "docs/results/lookup-rerun-2026-12-04");
    check_rerun("docs/results/lookup-rerun-2026-12-04-parts", "docs/results/lookup-rerun-2026-12-04-fused-norm");
    // The same study one run at a time: its time, and the same table byte for byte.
    let dir = "docs/results/lookup-rerun-2026-12-04-parts-jobs1";
    let log = read(&format!("{dir}/study.log"));
    let done = log.lines().find_map(|l| l.split("study runs done in ").nth(1)).expect("the study log's last line");
    assert!(log.lines().next().unwrap().contains("1 at a time"), "{dir}/study.log: one run at a time");
    assert_quoted("README.md", &flatten(&read("README.md")), &format!("One run at a time (`--jobs 1`, each run on both cores) took {}, with a byte-identical table", done.trim()), dir);
    assert_eq!(read(&format!("{dir}/table.json")), read("docs/results/lookup-rerun-2026-12-04-parts/table.json"), "README says the tables are byte-identical");
}

fn check_rerun(dir: &str, before: &str) {
    let log = read(&format!("{dir}/study.log"));
    let done = log.lines().find_map(|l| l.split("study runs done in ").nth(1)).expect("the study log's last line");
    let text = flatten(&read("README.md"));
    assert_quoted("README.md", &text, &format!("in {} of study runs", done.trim()), &format!("{dir}/study.log"));
    let (new, old) = (json(&format!("{dir}/table.json")), json(&format!("{before}/table.json")));
    let (new, old) = (new.as_array().unwrap(), old.as_array().unwrap());
    assert_eq!(new.len(), old.len());
    let largest = new.iter().zip(old).map(|(a, b)| (num(&a["acc7_mean"]) - num(&b["acc7_mean"])).abs()).fold(0.0, f64::max);
    assert_quoted("README.md", &text, &format!("mean Acc-7 moves by at most {largest:.2} points"), dir);
    // A verdict: whether an interval excludes 0 and on which side.
    let side = |ci: &serde_json::Value| ci.as_array().map(|v| (num(&v[0]) > 0.0, num(&v[1]) < 0.0));
    for (a, b) in new.iter().zip(old) {
        for key in ["acc7_diff_ci95", "event_share_diff_ci95"] {
            assert_eq!(side(&a[key]), side(&b[key]), "{dir}: {key} of {} {}: README says every verdict is the same", a["role"], a["method"]);
        }
    }
    // Holm's step-down at 5 % over the distilled rows: which rows are firm.
    let holm = |rows: &[serde_json::Value], key: &str| {
        let mut p: Vec<(f64, usize)> = rows.iter().enumerate().filter_map(|(i, r)| r[key].as_f64().map(|p| (p, i))).collect();
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        let m = p.len();
        let mut firm = Vec::new();
        for (rank, (p, i)) in p.into_iter().enumerate() {
            if p > 0.05 / (m - rank) as f64 {
                break;
            }
            firm.push(i);
        }
        firm.sort();
        firm
    };
    for key in ["acc7_diff_p", "event_share_diff_p"] {
        assert_eq!(holm(new, key), holm(old, key), "{dir}: {key}: README says Holm's verdicts are the same");
    }
}

/// bench/NOTES.md's reverted score-blocking experiment, from its A/B lines.
#[test]
fn notes_quote_the_score_blocking_ab() {
    let file = "bench/results/ab-score-blocking-2026-12-04.jsonl";
    let lines = ab_lines(file);
    let median = |binary: &str| {
        let v: Vec<f64> = lines.iter().filter(|l| l["binary"] == binary).map(|l| num(&l["median_ms"])).collect();
        assert_eq!(v.len(), 3, "{file}: three runs of {binary}");
        middle(v)
    };
    let quoted = format!(
        "before {:.1} ms; 8-key blocks {:.1} ms; 8-key blocks over row slices {:.1} ms; 32-key blocks (four independent chains) {:.1} ms",
        median("before"),
        median("block8"),
        median("chunk8"),
        median("chunk32")
    );
    assert_quoted("bench/NOTES.md", &flatten(&read("bench/NOTES.md")), &quoted, file);
    let quoted = format!("{:.1} ms before, {:.1} ms with it", median("before-rows4"), median("rows4"));
    assert_quoted("bench/NOTES.md", &flatten(&read("bench/NOTES.md")), &quoted, file);
}

/// bench/NOTES.md's share of the fused attention in the `paper` student's B = 1 inference.
#[test]
fn notes_quote_the_student_inference_profile() {
    let file = "bench/results/profile-student-infer-paper-b1-devbox-2cpu-24g-2026-12-04.jsonl";
    let line: serde_json::Value = serde_json::from_str(read(file).lines().next().unwrap()).unwrap();
    let share = num(&line["by_kind_percent"]["attention kernel (fused op)"]);
    let quoted = format!("inference spends {share:.1} % of its process in the fused attention");
    assert_quoted("bench/NOTES.md", &flatten(&read("bench/NOTES.md")), &quoted, file);
}

/// bench/NOTES.md's batch-in-parts A/B table and `paper` line, and the purge-delay sweep (also
/// quoted by docs/DECISIONS.md and main.rs's reasoning), from their data files (issue 21).
#[test]
fn notes_quote_the_batch_in_parts_ab_and_the_purge_sweep() {
    let (doc, text) = ("bench/NOTES.md", read("bench/NOTES.md"));
    let flat = flatten(&text);
    let file = "bench/results/ab-batch-in-parts-2026-12-04.jsonl";
    let lines = ab_lines(file);
    let median = |preset: &str, case: &str, binary: &str| middle(lines.iter().filter(|l| l["preset"] == preset && l["case"] == case && l["binary"] == binary).map(|l| num(&l["median_ms"])).collect());
    for (case, name) in [
        ("teacher-train", "`small` teacher train step, B = 64"),
        ("student-train", "`small` student (EDAM-S) train step, B = 64"),
        ("teacher-infer", "`small` teacher inference, B = 64"),
        ("student-infer", "`small` student inference, B = 64"),
    ] {
        let row = format!("| {name} | {:.1} ms | {:.1} ms | {:.1} ms |", median("small", case, "before"), median("small", case, "parts"), median("small", case, "after"));
        assert_quoted(doc, &text, &row, file);
    }
    let paper = |case: &str, binary: &str| lines.iter().filter(|l| l["preset"] == "paper" && l["case"] == case && l["binary"] == binary).collect::<Vec<_>>();
    let secs = |l: &[&serde_json::Value]| format!("{:.1} and {:.1} s", num(&l[0]["median_ms"]) / 1000.0, num(&l[1]["median_ms"]) / 1000.0);
    let peak = |l: &[&serde_json::Value]| l.iter().map(|x| num(&x["peak_rss_mb"])).fold(0.0, f64::max) / 1000.0;
    let (tb, ta, sb, sa) = (paper("teacher-train", "before"), paper("teacher-train", "after"), paper("student-train", "before"), paper("student-train", "after"));
    let quoted = format!("teacher {} at {:.2} GB -> {} at {:.2} GB; student {} -> {}", secs(&tb), peak(&tb), secs(&ta), peak(&ta), secs(&sb), secs(&sa));
    assert_quoted(doc, &flat, &quoted, file);

    let file = "bench/results/purge-delay-sweep-2026-12-04.jsonl";
    let sweep = ab_lines(file);
    let small = |delay: i64, field: &str| middle(sweep.iter().filter(|l| l["preset"] == "small" && l["purge_delay_ms"] == delay).map(|l| num(&l[field])).collect());
    let paper = |delay: i64| sweep.iter().find(|l| l["preset"] == "paper" && l["purge_delay_ms"] == delay).unwrap();
    let thousands = |n: f64| {
        let s = format!("{}", n as u64);
        if s.len() > 3 { format!("{},{}", &s[..s.len() - 3], &s[s.len() - 3..]) } else { s }
    };
    for (delay, label) in [(1000, "1 s (mimalloc v3 default)"), (3000, "3 s"), (10000, "**10 s (shipped)**"), (-1, "never")] {
        let p = paper(delay);
        let row = format!(
            "| {label} | {:.1} ms | {} | {:.1} s | {:.2} GB |",
            small(delay, "median_ms"),
            thousands(small(delay, "page_faults")),
            num(&p["median_ms"]) / 1000.0,
            num(&p["peak_rss_mb"]) / 1000.0
        );
        assert_quoted(doc, &text, &row, file);
    }
    let gb = |delay: i64| format!("{:.2}", num(&paper(delay)["peak_rss_mb"]) / 1000.0);
    let s = |delay: i64| format!("{:.1} s", num(&paper(delay)["median_ms"]) / 1000.0);
    let decisions = flatten(&read("docs/DECISIONS.md"));
    let claim = format!("the `paper` teacher step {} at 1 s, {} at 10 s, {} never returning, with peaks {}, {} and {} GB", s(1000), s(10000), s(-1), gb(1000), gb(10000), gb(-1));
    assert_quoted("docs/DECISIONS.md", &decisions, &claim, file);
    assert!(num(&paper(10000)["peak_rss_mb"]) < 6000.0 && num(&paper(-1)["peak_rss_mb"]) > 6000.0, "{file}: the reason for 10 s is that it stays under 6 GB and never returning does not");
    let main = flatten(&read("crates/mmkd/src/main.rs"));
    let claim = format!("the `paper` teacher step {} -> {}, its peak {} -> {} GB; /// never returning it was faster still ({})", s(1000), s(10000), gb(1000), gb(10000), s(-1));
    assert_quoted("crates/mmkd/src/main.rs", &main, &claim, file);
}

/// The profile after the batch in parts (bench/NOTES.md and bench/README.md) and the
/// MOSEI-sized memory rows after it, from their data files (issue 21).
#[test]
fn notes_quote_the_profile_and_memory_after_the_batch_in_parts() {
    let profile = "bench/results/profile-parts-devbox-2cpu-24g-2026-12-04.jsonl";
    let kinds = |file: &str, case: &str| read(file).lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).find(|c| c["case"] == case).unwrap()["by_kind_percent"].clone();
    let k = kinds(profile, "teacher-train");
    let before = kinds("bench/results/profile-dropout-mirror-devbox-2cpu-24g-2026-12-04.jsonl", "teacher-train");
    let pct = |v: &serde_json::Value, kind: &str| format!("{:.1} %", num(&v[kind]));
    let (gemm, attention, memory, random, threads, closures) = (
        pct(&k, "matmul (gemm)"),
        pct(&k, "attention kernel (fused op)"),
        pct(&k, "memory: page zeroing, copies, allocation"),
        pct(&k, "random numbers (dropout masks)"),
        pct(&k, "threads: scheduling, waking, spinning"),
        pct(&k, "unattributed closures (FnOnce::call_once)"),
    );
    let notes = flatten(&read("bench/NOTES.md"));
    let claim = format!(
        "matmul is {gemm}, the fused attention {attention}, memory {memory}, random numbers {random} and threads {threads} ({} in the profile after the dropout change)",
        pct(&before, "threads: scheduling, waking, spinning")
    );
    assert_quoted("bench/NOTES.md", &notes, &claim, profile);
    let readme = flatten(&read("bench/README.md"));
    let claim = format!(
        "has matmul at {gemm}, the fused attention at {attention}, memory at {memory}, the dropout masks' generator (ChaCha12, the numbers Burn draws) at {random}, and {closures} in unattributed closures"
    );
    assert_quoted("bench/README.md", &readme, &claim, profile);

    let file = "bench/results/rss-devbox-2cpu-24g-2026-12-04.jsonl";
    let rows: Vec<serde_json::Value> = read(file).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let row = |label: &str| rows.iter().find(|r| r["label"] == label).unwrap_or_else(|| panic!("{file}: no {label}"));
    let gb = |v: &serde_json::Value| format!("{:.2} GB", num(v) / 1e9);
    // Their table rows are checked with every other row of the file in
    // `notes_quote_the_memory_of_mapped_features`.
    let (full, tiny) = (row("after-parts-mosei-sized"), row("after-parts-tiny-step-only"));
    let claim = format!(
        "peak RssAnon {} on the MOSEI-sized data against {} for the step alone, under 7.5 GB and within the step's peak + 1 GB",
        gb(&full["max_rss_anon_bytes"]),
        gb(&tiny["max_rss_anon_bytes"])
    );
    assert_quoted("bench/NOTES.md", &notes, &claim, file);
    assert!(num(&full["max_rss_anon_bytes"]) <= 7.5e9 && num(&full["max_rss_anon_bytes"]) <= num(&tiny["max_rss_anon_bytes"]) + 1e9, "{file}: the target is met");
    let claim = format!("**met**: {} at a5922ae, the step alone {}", gb(&full["max_rss_anon_bytes"]), gb(&tiny["max_rss_anon_bytes"]));
    assert_quoted("bench/README.md", &readme, &claim, file);
}
