//! Pictures of a study and of its runs: a distilled student's maps beside its teacher's (and
//! the no-KD student's), and the bar chart of Acc-7 per row with 95 % intervals.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::report::{TableRow, t_quantile_975};
use crate::choice::Choice;
use crate::eval::plots::{FONT, save_png};

/// For a distilled student: per distilled pair, the first test clip's maps of the teacher, the
/// student and (with `baseline`) the student without KD side by side, with each student's mean
/// row KL to the teacher: `OUT/compare-<pair>.png`.
#[allow(clippy::too_many_arguments)]
pub fn compare_with_teacher(
    out: &Path,
    dataset: &crate::data::Dataset,
    events: Option<&crate::data::events::Events>,
    temperature: f32,
    config: crate::model::StudentConfig,
    distill: &crate::distill::DistillConfig,
    student: &std::collections::BTreeMap<crate::model::TransformerId, Vec<crate::eval::maps::Map>>,
    baseline: Option<&Path>,
) -> Result<()> {
    use crate::eval::maps::{Panel, attention_maps, draw_comparison, mean_row_kl};
    let dev = burn::prelude::Device::flex();
    let first_clip = |run: &Path| -> Result<std::collections::BTreeMap<crate::model::TransformerId, Vec<crate::eval::maps::Map>>> {
        let opened = crate::run::Run::open(run)?;
        if !opened.config().shape.same_inputs(&dataset.shape) {
            crate::bail_input!("{}: trained on other dims/lengths than dataset {}", run.display(), dataset.name);
        }
        let net = opened.load_best(&dev)?;
        Ok(attention_maps(&net, &dataset.test, &dataset.shape, 1, temperature, None, &dev).1)
    };
    let teacher = first_clip(&distill.teacher_run)?;
    let base = baseline.map(first_clip).transpose()?;
    let event = events.map(|e| (e.test[0], e.burst_frames, e.video_len));
    for (t_id, s_id) in crate::distill::distilled_pairs(config) {
        let (Some(t_maps), Some(s_maps)) = (teacher.get(&t_id), student.get(&s_id)) else { continue };
        let b_maps = base.as_ref().and_then(|b| b.get(&s_id));
        let kl = |m: &crate::eval::maps::Map, t: &crate::eval::maps::Map| mean_row_kl(t, m).map_or("KL to teacher: n/a (shapes differ)".to_string(), |k| format!("mean row KL to teacher {k:.3}"));
        let layers: Vec<Vec<Panel>> = (0..t_maps.len().min(s_maps.len()))
            .map(|l| {
                let mut row = vec![
                    Panel { title: format!("teacher {t_id}"), map: &t_maps[l], caption: String::new() },
                    Panel { title: format!("student {s_id} ({})", distill.method.name()), map: &s_maps[l], caption: kl(&s_maps[l], &t_maps[l]) },
                ];
                if let Some(b) = b_maps.and_then(|b| b.get(l)) {
                    row.push(Panel { title: format!("no-KD student {s_id}"), map: b, caption: kl(b, &t_maps[l]) });
                }
                row
            })
            .collect();
        let (queries, keys) = match s_id {
            crate::model::TransformerId::Cross { keys, queries } => (queries.name(), keys.name()),
            crate::model::TransformerId::Temporal(m) => (m.name(), m.name()),
        };
        let name = s_id.to_string().replace("<-", "_from_");
        let title = format!("{t_id} -> {s_id}, first test clip of {}{}", dataset.name, if event.is_some() { "; red: the true event" } else { "" });
        draw_comparison(&out.join(format!("compare-{name}.png")), &title, queries, keys, &layers, event)?;
    }
    Ok(())
}

/// Acc-7 per row as horizontal bars (mean over seeds) with whiskers at the 95 % t-interval of
/// the mean (none with one seed), the student without KD as a dashed reference line.
pub fn draw_acc7_bars(path: &Path, rows: &[(String, &TableRow)]) -> Result<()> {
    let n = rows.len().max(1);
    let (width, height) = (900u32, 60 + 26 * n as u32);
    let half_width = |r: &TableRow| -> Option<f64> {
        let k = r.acc7_per_seed.len();
        (k >= 2).then(|| t_quantile_975(k - 1) * r.acc7_std / (k as f64).sqrt())
    };
    let lo = rows.iter().map(|(_, r)| r.acc7_mean - half_width(r).unwrap_or(0.0)).fold(f64::INFINITY, f64::min);
    let hi = rows.iter().map(|(_, r)| r.acc7_mean + half_width(r).unwrap_or(0.0)).fold(f64::NEG_INFINITY, f64::max);
    let (x0, x1) = if lo.is_finite() { ((lo - 3.0).max(0.0).floor(), (hi + 3.0).min(100.0).ceil()) } else { (0.0, 100.0) };
    let no_kd = rows.iter().find(|(_, r)| r.is_paper_baseline()).map(|(_, r)| r.acc7_mean);
    save_png(path, width, height, |root| {
        let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(root)
            .caption("test Acc-7 per row: mean over seeds, 95 % interval of the mean", (FONT, 15))
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(300)
            .build_cartesian_2d(x0..x1, 0.0..n as f64)
            .map_err(|e| err(&e))?;
        let labels: Vec<String> = rows.iter().map(|(l, _)| l.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n * 2 + 1)
            .y_label_formatter(&|y| {
                let i = y.floor() as usize;
                if (y - y.floor() - 0.5).abs() < 1e-6 && i < labels.len() { labels[labels.len() - 1 - i].clone() } else { String::new() }
            })
            .x_desc("Acc-7 (%)")
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, (_, r)) in rows.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            let colour = if r.role == super::report::RowRole::Teacher {
                RGBColor(120, 120, 120)
            } else if r.is_student_without_kd() {
                RGBColor(220, 120, 0)
            } else {
                BLUE
            };
            chart.draw_series(std::iter::once(Rectangle::new([(x0, y + 0.2), (r.acc7_mean, y + 0.8)], colour.mix(0.6).filled()))).map_err(|e| err(&e))?;
            if let Some(h) = half_width(r) {
                let (a, b) = (r.acc7_mean - h, r.acc7_mean + h);
                let style = BLACK.stroke_width(2);
                chart
                    .draw_series([
                        PathElement::new(vec![(a, y + 0.5), (b, y + 0.5)], style),
                        PathElement::new(vec![(a, y + 0.3), (a, y + 0.7)], style),
                        PathElement::new(vec![(b, y + 0.3), (b, y + 0.7)], style),
                    ])
                    .map_err(|e| err(&e))?;
            }
        }
        if let Some(base) = no_kd {
            chart.draw_series(DashedLineSeries::new(vec![(base, 0.0), (base, n as f64)], 6, 4, RGBColor(220, 120, 0).stroke_width(1))).map_err(|e| err(&e))?;
        }
        Ok(())
    })
}
