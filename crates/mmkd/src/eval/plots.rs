//! Pictures: line charts of training curves, and the PNG plumbing every picture shares. Text
//! is drawn with an embedded font (DejaVu Sans, `assets/`), so pictures render the same on a
//! bare machine without system fonts; every PNG is encoded in memory and written atomically.

use std::path::Path;
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

/// The embedded font's family name, for `TextStyle`s.
pub const FONT: &str = "sans-serif";

static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// Register the embedded font once per process (plotters looks fonts up by name).
pub fn ensure_font() {
    REGISTER.call_once(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).unwrap_or_else(|_| panic!("the embedded font is a valid TrueType file"));
    });
}

/// Draw a `width x height` picture with `draw` into memory, encode it as PNG and write it to
/// `path` atomically (no half-written picture after a crash).
pub fn save_png(path: &Path, width: u32, height: u32, draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<()>) -> Result<()> {
    ensure_font();
    let mut rgb = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(|e| anyhow!("drawing {}: {e}", path.display()))?;
    }
    let mut png = Vec::new();
    use image::ImageEncoder;
    image::codecs::png::PngEncoder::new(&mut png).write_image(&rgb, width, height, image::ColorType::Rgb8).map_err(|e| anyhow!("encoding {}: {e}", path.display()))?;
    crate::durable::write_atomic(path, &png)
}

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Curve {
    /// Legend text.
    pub label: String,
    /// (x, y) points in drawing order; non-finite y values are skipped.
    pub points: Vec<(f64, f64)>,
}

/// One chart of a row of charts.
#[derive(Clone, Debug)]
pub struct Panel {
    /// Title above the chart.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Its lines.
    pub curves: Vec<Curve>,
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(1e-9 + lo.abs() * 0.05);
    (lo - pad, hi + pad)
}

/// Draw charts side by side into one PNG.
pub fn draw_panels(path: &Path, panels: &[Panel]) -> Result<()> {
    const PANEL_W: u32 = 420;
    const H: u32 = 320;
    let width = PANEL_W * panels.len().max(1) as u32;
    let colours = [BLUE, RED, RGBColor(0, 140, 60), MAGENTA];
    save_png(path, width, H, |root| {
        let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
        root.fill(&WHITE).map_err(|e| err(&e))?;
        for (panel, area) in panels.iter().zip(root.split_evenly((1, panels.len().max(1)))) {
            let xs = range(panel.curves.iter().flat_map(|c| c.points.iter().map(|p| p.0)));
            let ys = range(panel.curves.iter().flat_map(|c| c.points.iter().map(|p| p.1)));
            let mut chart =
                ChartBuilder::on(&area).caption(&panel.title, (FONT, 16)).margin(8).x_label_area_size(36).y_label_area_size(52).build_cartesian_2d(xs.0..xs.1, ys.0..ys.1).map_err(|e| err(&e))?;
            chart.configure_mesh().x_desc(panel.x_label.as_str()).y_desc(panel.y_label.as_str()).label_style((FONT, 12)).axis_desc_style((FONT, 13)).draw().map_err(|e| err(&e))?;
            for (curve, colour) in panel.curves.iter().zip(colours.iter().cycle()) {
                let points: Vec<(f64, f64)> = curve.points.iter().copied().filter(|p| p.1.is_finite()).collect();
                let style = ShapeStyle::from(*colour).stroke_width(2);
                chart
                    .draw_series(LineSeries::new(points.clone(), style).point_size(3))
                    .map_err(|e| err(&e))?
                    .label(curve.label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
            }
            if panel.curves.len() > 1 {
                chart.configure_series_labels().label_font((FONT, 12)).background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| err(&e))?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_are_drawn_with_text_on_a_png_of_the_expected_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let line = |label: &str, k: f64| Curve { label: label.into(), points: (1..=5).map(|e| (e as f64, k / e as f64)).collect() };
        let panels = vec![
            Panel { title: "loss".into(), x_label: "epoch".into(), y_label: "cross-entropy".into(), curves: vec![line("train", 2.0), line("valid", 2.5)] },
            Panel { title: "Acc-7".into(), x_label: "epoch".into(), y_label: "%".into(), curves: vec![line("valid", 50.0)] },
        ];
        draw_panels(&path, &panels).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (840, 320));
        // Not blank: many pixels differ from the white background, and some are dark (text,
        // axes) rather than only the coloured lines.
        let non_white = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 80)).count();
        assert!(non_white > 5_000 && dark > 500, "non-white {non_white}, dark {dark}");
        // Nothing but the picture is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
