//! Training curves as a PNG: one panel for the loss and one for each metric, training in
//! blue and validation in orange, drawn with `plotters` (text in the DejaVu Sans font
//! built into convnet, so no system font or C library is needed).

use super::fit::History;
use crate::error::{Error, Result};
use plotters::prelude::*;
use std::path::Path;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

pub(crate) fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The font is built in and valid; a failure here would be a build error.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// The canvas every picture convnet draws is drawn on: plotters on a white RGB bitmap,
/// with the built-in font registered as "sans-serif". The training curves, the
/// Inception block's diagram and the frames of `explain conv --animate` all go through
/// here.
pub(crate) type Canvas<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

pub(crate) fn draw_picture(
    width: u32,
    height: u32,
    draw: impl FnOnce(&Canvas) -> std::result::Result<(), String>,
) -> std::result::Result<image::RgbImage, String> {
    register_font();
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(image::RgbImage::from_raw(width, height, buffer).expect("buffer sized for the image"))
}

impl History {
    /// Draws the loss and metric curves (with their `val_` counterparts) as a PNG.
    pub fn plot(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let panels: Vec<&String> = self
            .history
            .keys()
            .filter(|k| !k.starts_with("val_"))
            .collect();
        if panels.is_empty() || self.epochs.is_empty() {
            return Err(Error::file(
                path,
                "nothing to plot: the history has no epochs",
            ));
        }
        let (panel_w, height) = (480u32, 360u32);
        let width = panel_w * panels.len() as u32;
        let draw = |root: &Canvas| -> std::result::Result<(), String> {
            let areas = root.split_evenly((1, panels.len()));
            let epochs: Vec<f64> = self.epochs.iter().map(|&e| (e + 1) as f64).collect();
            let (first, last) = (epochs[0], *epochs.last().expect("not empty"));
            for (area, key) in areas.iter().zip(&panels) {
                let series: Vec<(&str, &Vec<f64>, RGBColor)> = [
                    (key.as_str(), self.history.get(*key), BLUE),
                    (
                        &format!("val_{key}")[..],
                        self.history.get(&format!("val_{key}")),
                        RGBColor(230, 120, 20),
                    ),
                ]
                .into_iter()
                .filter_map(|(name, values, color)| {
                    values.map(|v| {
                        (
                            if name.starts_with("val_") {
                                "validation"
                            } else {
                                "training"
                            },
                            v,
                            color,
                        )
                    })
                })
                .collect();
                let all = series
                    .iter()
                    .flat_map(|(_, v, _)| v.iter().copied())
                    .filter(|v| v.is_finite());
                let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(v), hi.max(v))
                });
                let (lo, hi) = if lo < hi {
                    (lo, hi)
                } else {
                    (lo - 0.5, hi + 0.5)
                };
                let margin = (hi - lo) * 0.05;
                let mut chart = ChartBuilder::on(area)
                    .caption(key.as_str(), ("sans-serif", 20))
                    .margin(12)
                    .x_label_area_size(32)
                    .y_label_area_size(56)
                    .build_cartesian_2d(
                        first.min(last - 1.0).max(0.0)..last.max(first + 1.0),
                        (lo - margin)..(hi + margin),
                    )
                    .map_err(|e| e.to_string())?;
                chart
                    .configure_mesh()
                    .x_desc("epoch")
                    .label_style(("sans-serif", 13))
                    .draw()
                    .map_err(|e| e.to_string())?;
                for (name, values, color) in series {
                    chart
                        .draw_series(LineSeries::new(
                            epochs.iter().copied().zip(values.iter().copied()),
                            color.stroke_width(2),
                        ))
                        .map_err(|e| e.to_string())?
                        .label(name)
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                        });
                    chart
                        .draw_series(
                            epochs
                                .iter()
                                .copied()
                                .zip(values.iter().copied())
                                .map(|p| Circle::new(p, 3, color.filled())),
                        )
                        .map_err(|e| e.to_string())?;
                }
                chart
                    .configure_series_labels()
                    .border_style(BLACK)
                    .background_style(WHITE.mix(0.8))
                    .label_font(("sans-serif", 13))
                    .draw()
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        };
        let image = draw_picture(width, height, draw)
            .map_err(|e| Error::file(path, format!("drawing the curves: {e}")))?;
        image
            .save(path)
            .map_err(|e| Error::file(path, format!("cannot write: {e}")))
    }
}
