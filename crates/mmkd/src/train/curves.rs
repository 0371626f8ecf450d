//! `RUN/curves.png`: a run's learning curves, drawn from its epoch log.

use std::path::Path;

use anyhow::Result;

use crate::run::{EpochLog, files};

/// `RUN/curves.png` from `RUN/metrics.jsonl`: train and validation loss, validation Acc-7, and
/// the learning rate, per epoch.
pub fn draw_curves(run: &Path) -> Result<()> {
    use crate::eval::plots::{Curve, Panel, draw_panels};
    let text = std::fs::read_to_string(run.join(files::METRICS))?;
    let logs: Vec<EpochLog> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let line = |label: &str, y: &dyn Fn(&EpochLog) -> f64| Curve { label: label.into(), points: logs.iter().map(|e| (e.epoch as f64, y(e))).collect() };
    let epoch = || "epoch".to_string();
    let panels = [
        Panel { title: "loss".into(), x_label: epoch(), y_label: "loss".into(), curves: vec![line("train (total)", &|e| e.train_loss), line("validation (CE)", &|e| e.val_loss)] },
        Panel { title: "validation Acc-7".into(), x_label: epoch(), y_label: "%".into(), curves: vec![line("Acc-7", &|e| 100.0 * e.val_acc7)] },
        Panel { title: "learning rate".into(), x_label: epoch(), y_label: "lr".into(), curves: vec![line("lr", &|e| e.lr)] },
    ];
    draw_panels(&run.join(files::CURVES), &panels)
}
