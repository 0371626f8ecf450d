//! Robustness to missing modalities, the paper's motivation: the teacher with every subset of
//! its three modalities missing, next to the video-only student, on the same test split. The
//! student only notices a missing video; the table says plainly where the teacher still wins.
//!
//! ```text
//! OUT/ROBUSTNESS.md   the table, with the dataset named and a one-line verdict per row
//! OUT/robustness.csv  the same rows
//! OUT/robustness.json the same rows plus the full evaluation reports
//! ```

use std::path::Path;

use anyhow::Result;
use burn::prelude::Device;
use serde::Serialize;

use crate::data::missing::{Missing, MissingMode};
use crate::eval::EvalReport;
use crate::model::Modality;
use crate::run::{RunConfig, RunRole, evaluate_run_with};

/// One row: which modalities are missing, and both networks' test scores.
#[derive(Clone, Debug, Serialize)]
pub struct RobustnessRow {
    /// The missing modalities (empty: all present).
    pub missing: Vec<Modality>,
    /// Teacher on the corrupted test split.
    pub teacher: EvalReport,
    /// Student on the same corrupted split (it reads video only).
    pub student: EvalReport,
}

impl RobustnessRow {
    fn missing_label(&self) -> String {
        if self.missing.is_empty() { "none".into() } else { self.missing.iter().map(|m| m.name()).collect::<Vec<_>>().join(" + ") }
    }

    /// "teacher", "student" or "tie" by Acc-7.
    pub fn winner(&self) -> &'static str {
        let d = self.teacher.acc7 - self.student.acc7;
        if d.abs() < 1e-9 {
            "tie"
        } else if d > 0.0 {
            "teacher"
        } else {
            "student"
        }
    }
}

/// Every subset of the three modalities, from none missing to all missing.
pub fn subsets() -> Vec<Vec<Modality>> {
    let mut all: Vec<Vec<Modality>> = (0u8..8).map(|bits| Modality::ALL.into_iter().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, m)| m).collect()).collect();
    all.sort_by_key(|s| s.len());
    all
}

/// Evaluate `teacher` and `student` (runs on the same dataset) with every subset of modalities
/// missing in the given way.
pub fn robustness(teacher: &Path, student: &Path, mode: MissingMode, fraction: f64, seed: u64, device: &Device) -> Result<(String, Vec<RobustnessRow>)> {
    let (tc, sc) = (RunConfig::load(teacher)?, RunConfig::load(student)?);
    if !matches!(tc.role, RunRole::Teacher { .. }) {
        crate::bail_input!("{}: --teacher needs a teacher run", teacher.display());
    }
    if !matches!(sc.role, RunRole::Student { .. }) {
        crate::bail_input!("{}: --student needs a student run", student.display());
    }
    let dataset = crate::data::load_any(&tc.data)?;
    if !dataset.shape.same_inputs(&sc.shape) {
        crate::bail_input!("{}: was trained on data shaped {:?}, the teacher on {:?}; compare runs on the same dataset", student.display(), sc.shape, tc.shape);
    }
    let mut rows = Vec::new();
    for missing in subsets() {
        let m = Missing { modalities: missing.clone(), mode, fraction, seed };
        rows.push(RobustnessRow { teacher: evaluate_run_with(teacher, Some(&dataset), Some(&m), device)?, student: evaluate_run_with(student, Some(&dataset), Some(&m), device)?, missing });
    }
    Ok((format!("{} [{}]", dataset.name, dataset.source), rows))
}

/// Write ROBUSTNESS.md, robustness.csv and robustness.json to `out`; returns the Markdown.
pub fn write_report(out: &Path, dataset: &str, how: &str, teacher: &Path, student: &Path, rows: &[RobustnessRow]) -> Result<String> {
    std::fs::create_dir_all(out).map_err(|e| crate::error::input_error(format!("{}: {e}", out.display())))?;
    let pct = |x: f64| format!("{:.2}", 100.0 * x);
    let mut md = format!(
        "# Robustness to missing modalities\n\n**Dataset: {dataset}.** Test split; a missing modality is replaced by {how}.\n\
         Teacher: `{}`. Student (video only): `{}`.\n\n\
         | missing | teacher Acc-7 % | teacher F1 % | student Acc-7 % | student F1 % | better by Acc-7 |\n| --- | --- | --- | --- | --- | --- |\n",
        teacher.display(),
        student.display()
    );
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(["missing", "teacher_acc7", "teacher_f1", "student_acc7", "student_f1", "winner"])?;
    for r in rows {
        md.push_str(&format!("| {} | {} | {} | {} | {} | {} |\n", r.missing_label(), pct(r.teacher.acc7), pct(r.teacher.f1_weighted), pct(r.student.acc7), pct(r.student.f1_weighted), r.winner()));
        csv.write_record([r.missing_label(), pct(r.teacher.acc7), pct(r.teacher.f1_weighted), pct(r.student.acc7), pct(r.student.f1_weighted), r.winner().to_string()])?;
    }
    let wins: Vec<String> = rows.iter().filter(|r| r.winner() == "teacher").map(|r| r.missing_label()).collect();
    let loses: Vec<String> = rows.iter().filter(|r| r.winner() == "student").map(|r| r.missing_label()).collect();
    md.push_str(&format!(
        "\nThe teacher still wins with missing: {}.\nThe video-only student wins with missing: {}.\n",
        if wins.is_empty() { "never".into() } else { wins.join("; ") },
        if loses.is_empty() { "never".into() } else { loses.join("; ") }
    ));
    crate::durable::write_atomic(&out.join("ROBUSTNESS.md"), md.as_bytes())?;
    crate::durable::write_atomic(&out.join("robustness.csv"), &csv.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?;
    let json = serde_json::json!({"dataset": dataset, "missing_replaced_by": how, "teacher": teacher, "student": student, "rows": rows});
    crate::durable::write_atomic(&out.join("robustness.json"), serde_json::to_string_pretty(&json)?.as_bytes())?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subset_once() {
        let s = subsets();
        assert_eq!(s.len(), 8);
        assert!(s.contains(&vec![]) && s.contains(&Modality::ALL.to_vec()));
        let mut sorted: Vec<Vec<Modality>> = s.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 8);
    }
}
