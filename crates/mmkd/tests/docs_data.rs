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
