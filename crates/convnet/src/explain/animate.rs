//! The sliding kernel as an animated GIF: each frame shows the padded input with the
//! kernel's window highlighted, the kernel, the output filling in cell by cell, and the
//! sum of products of the position as the caption. The values are the engine's: the
//! Conv2D layer is run on the padded input, and each caption ends in its output.

use super::{number, ConvWorking};
use crate::error::{Error, Result};
use crate::layers::{Conv2D, Layer};
use crate::tensor::Tensor;
use crate::train::plot::{draw_picture, Canvas};
use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame, RgbImage};
use plotters::prelude::*;
use std::path::Path;

/// The window's fill, and the output cell being computed.
pub const HIGHLIGHT: [u8; 3] = [255, 196, 87];
/// Positions shown at most; larger outputs are sampled evenly (each sampled frame
/// fills in every output up to its position), so a GIF stays small.
pub const MAX_STEPS: usize = 48;
/// A README-sized frame: the input panel is at most this wide and tall.
const PANEL: u32 = 360;
const MARGIN: u32 = 16;
const TITLE: u32 = 26;
const CAPTION_LINE: u32 = 22;

/// Where things are drawn, so tests can look at the pixels of a cell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    /// Side of a cell in pixels.
    pub cell: u32,
    /// Cells show their numbers (they are too small for large inputs, which are shaded
    /// by value instead).
    pub numbers: bool,
    /// Top-left pixel (x, y) of the padded input's panel.
    pub input_origin: (u32, u32),
    /// Top-left pixel (x, y) of the kernel's panel.
    pub kernel_origin: (u32, u32),
    /// Top-left pixel (x, y) of the output's panel.
    pub output_origin: (u32, u32),
    /// Pixel row where the caption (the sum of products) starts.
    pub caption_top: u32,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
}

impl Layout {
    /// Top-left pixel of cell (row, column) of the padded input.
    pub fn input_cell(&self, r: usize, c: usize) -> (u32, u32) {
        (
            self.input_origin.0 + c as u32 * self.cell,
            self.input_origin.1 + r as u32 * self.cell,
        )
    }

    /// Top-left pixel of cell (row, column) of the output.
    pub fn output_cell(&self, r: usize, c: usize) -> (u32, u32) {
        (
            self.output_origin.0 + c as u32 * self.cell,
            self.output_origin.1 + r as u32 * self.cell,
        )
    }
}

/// One frame: the position it shows (none for the last, whole output), how many
/// outputs (row-major) are filled in, and its caption.
#[derive(Clone, Debug, PartialEq)]
pub struct AnimationFrame {
    /// The output position (row, column) whose window is highlighted; `None` on the last
    /// frame, which shows the whole output.
    pub position: Option<(usize, usize)>,
    /// How many output cells, row-major, are filled in on this frame.
    pub filled: usize,
    /// The sum of products at this position, ending in the engine's output value.
    pub caption: String,
}

/// A convolution ready to draw as frames.
#[derive(Clone, Debug)]
pub struct ConvAnimation {
    /// The worked convolution the frames are drawn from (padded input, kernel, terms).
    pub working: ConvWorking,
    /// The engine's output at each position (Conv2D on the padded input).
    pub output: Vec<Vec<f64>>,
    /// The frames in order, at most `MAX_STEPS` positions plus the final whole output.
    pub frames: Vec<AnimationFrame>,
    /// Where panels and cells are drawn, shared by every frame.
    pub layout: Layout,
}

/// The engine's Conv2D on the padded input (valid padding, since the zeros are already
/// there), with the kernel as slid.
fn engine_output(w: &ConvWorking) -> Result<Vec<Vec<f64>>> {
    let (ph, pw) = (w.padded.len(), w.padded[0].len());
    let (kh, kw) = (w.kernel.len(), w.kernel[0].len());
    let mut conv = Conv2D::new(1, (kh, kw))
        .strides((w.stride, w.stride))
        .dilation_rate((w.dilation, w.dilation))
        .use_bias(false);
    conv.build(
        &[vec![None, Some(ph), Some(pw), Some(1)]],
        &mut crate::initializers::rng_from_seed(0),
    )?;
    let kernel: Vec<f32> = w.kernel.iter().flatten().map(|&v| v as f32).collect();
    conv.set_weights(vec![Tensor::new([kh, kw, 1, 1], kernel)?])?;
    let x = Tensor::new(
        [1, ph, pw, 1],
        w.padded.iter().flatten().map(|&v| v as f32).collect(),
    )?;
    let y = conv.apply(&[&x])?;
    let ow = y.shape()[2];
    Ok(y.data()
        .chunks(ow)
        .map(|r| r.iter().map(|&v| v as f64).collect())
        .collect())
}

/// The frames of `working`: one per output position (sampled down to [`MAX_STEPS`]
/// when there are more) and a last one with the whole output.
pub fn conv_animation(working: ConvWorking) -> Result<ConvAnimation> {
    let output = engine_output(&working)?;
    let (oh, ow) = working.output_size();
    if output.len() != oh || output.first().map_or(0, Vec::len) != ow {
        return Err(Error::data(format!(
            "the engine's output is {}x{}, the explanation's {oh}x{ow}",
            output.len(),
            output.first().map_or(0, Vec::len)
        )));
    }
    let count = oh * ow;
    let steps: Vec<usize> = if count <= MAX_STEPS {
        (0..count).collect()
    } else {
        // Evenly spread, always ending on the last position.
        (1..=MAX_STEPS).map(|s| s * count / MAX_STEPS - 1).collect()
    };
    let mut frames: Vec<AnimationFrame> = steps
        .into_iter()
        .map(|p| {
            let (i, j) = (p / ow, p % ow);
            AnimationFrame {
                position: Some((i, j)),
                filled: p + 1,
                caption: working.sum_text(i, j, output[i][j]),
            }
        })
        .collect();
    frames.push(AnimationFrame {
        position: None,
        filled: count,
        caption: format!("The output, {oh}x{ow}: every S(i,j), as the engine's Conv2D computes it"),
    });
    let layout = layout(&working, &frames);
    Ok(ConvAnimation {
        working,
        output,
        frames,
        layout,
    })
}

/// A caption in lines of one kernel row each, so a 3x3 kernel's sum reads in three
/// lines; long rows and tall kernels are cut with "…".
fn caption_lines(caption: &str, kernel_w: usize) -> Vec<String> {
    let Some((head, rest)) = caption.split_once(" = ") else {
        return vec![caption.to_string()];
    };
    let Some((sum, value)) = rest.rsplit_once(" = ") else {
        return vec![caption.to_string()];
    };
    let terms: Vec<&str> = sum.split(" + ").collect();
    let mut lines = vec![format!("{head} =")];
    let rows: Vec<String> = terms
        .chunks(kernel_w.max(1))
        .map(|row| {
            let shown: Vec<&str> = row.iter().take(7).copied().collect();
            let more = if row.len() > shown.len() {
                " + …"
            } else {
                ""
            };
            format!("{}{more}", shown.join(" + "))
        })
        .collect();
    let total = rows.len();
    for (k, row) in rows.into_iter().take(5).enumerate() {
        lines.push(format!("{}{row}", if k == 0 { "    " } else { "  + " }));
    }
    if total > 5 {
        lines.push("  + …".into());
    }
    lines.push(format!("  = {value}"));
    lines
}

fn layout(w: &ConvWorking, frames: &[AnimationFrame]) -> Layout {
    let (ph, pw) = (w.padded.len() as u32, w.padded[0].len() as u32);
    let cell = (PANEL / ph.max(pw)).clamp(2, 48);
    let numbers = cell >= 30;
    let (kh, kw) = (w.kernel.len() as u32, w.kernel[0].len() as u32);
    let kcell = if numbers { cell } else { cell.max(12) };
    let (oh, ow) = w.output_size();
    let top = MARGIN + TITLE;
    let input_origin = (MARGIN, top);
    let kernel_origin = (MARGIN * 3 + pw * cell, top);
    let output_origin = (kernel_origin.0 + kw * kcell + MARGIN * 3, top);
    let panels_w = output_origin.0 + ow as u32 * cell + MARGIN;
    let panels_h = top + (ph * cell).max(kh * kcell).max(oh as u32 * cell) + MARGIN;
    let lines = frames
        .iter()
        .map(|f| caption_lines(&f.caption, w.kernel[0].len()).len())
        .max()
        .unwrap_or(1) as u32;
    // Caption width from its longest line: ~9 px a character at 16 px.
    let longest = frames
        .iter()
        .flat_map(|f| caption_lines(&f.caption, w.kernel[0].len()))
        .map(|l| l.chars().count() as u32)
        .max()
        .unwrap_or(0);
    Layout {
        cell,
        numbers,
        input_origin,
        kernel_origin,
        output_origin,
        caption_top: panels_h,
        width: panels_w.max(longest * 9 + 2 * MARGIN),
        height: panels_h + lines * CAPTION_LINE + MARGIN,
    }
}

/// The smallest and largest value of a matrix, for shading its cells.
fn value_range(rows: &[Vec<f64>]) -> (f64, f64) {
    rows.iter()
        .flatten()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        })
}

fn rgb(c: [u8; 3]) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

type Drawn = std::result::Result<(), String>;

/// A grid of values; `shade` maps a value to a gray when the cells are too small for
/// numbers, `fill` gives a cell's background otherwise.
#[allow(clippy::too_many_arguments)]
fn grid(
    root: &Canvas,
    origin: (u32, u32),
    cell: u32,
    values: &[Vec<Option<f64>>],
    numbers: bool,
    range: (f64, f64),
    fill: &dyn Fn(usize, usize) -> Option<RGBColor>,
) -> Drawn {
    let font = ("sans-serif", (cell as f64 * 0.42).clamp(10.0, 18.0)).into_font();
    for (r, row) in values.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            let x = (origin.0 + c as u32 * cell) as i32;
            let y = (origin.1 + r as u32 * cell) as i32;
            let rect = [(x, y), (x + cell as i32, y + cell as i32)];
            let background = fill(r, c).or_else(|| match (numbers, v) {
                (false, Some(v)) => {
                    let t = ((v - range.0) / (range.1 - range.0).max(1e-12)).clamp(0.0, 1.0);
                    let g = (40.0 + 215.0 * t) as u8;
                    Some(RGBColor(g, g, g))
                }
                _ => None,
            });
            if let Some(color) = background {
                root.draw(&Rectangle::new(rect, color.filled()))
                    .map_err(|e| e.to_string())?;
            }
            if cell >= 6 {
                root.draw(&Rectangle::new(rect, RGBColor(170, 170, 170)))
                    .map_err(|e| e.to_string())?;
            }
            if let (true, Some(v)) = (numbers, v) {
                let text = number(*v);
                let (tw, th) = font.box_size(&text).map_err(|e| e.to_string())?;
                root.draw_text(
                    &text,
                    &font.color(&BLACK),
                    (
                        x + (cell as i32 - tw as i32) / 2,
                        y + (cell as i32 - th as i32) / 2,
                    ),
                )
                .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

impl ConvAnimation {
    /// Each frame's caption, one string per frame.
    pub fn captions(&self) -> Vec<String> {
        self.frames.iter().map(|f| f.caption.clone()).collect()
    }

    fn draw_frame(&self, frame: &AnimationFrame, root: &Canvas) -> Drawn {
        let w = &self.working;
        let l = &self.layout;
        let (top, _, left, _) = w.pad;
        let (h, wd) = (w.input.len(), w.input[0].len());
        let window: Vec<(usize, usize)> = frame
            .position
            .map(|(i, j)| w.window(i, j))
            .unwrap_or_default();
        let range = value_range(&w.padded);
        let title = ("sans-serif", 16).into_font().color(&BLACK);
        let pad_word = if w.pad == (0, 0, 0, 0) {
            "input"
        } else {
            "padded input"
        };
        for (text, x) in [
            (pad_word, l.input_origin.0),
            (
                if w.flip { "kernel (rotated)" } else { "kernel" },
                l.kernel_origin.0,
            ),
            ("output", l.output_origin.0),
        ] {
            root.draw_text(text, &title, (x as i32, MARGIN as i32))
                .map_err(|e| e.to_string())?;
        }
        let padded: Vec<Vec<Option<f64>>> = w
            .padded
            .iter()
            .map(|r| r.iter().map(|&v| Some(v)).collect())
            .collect();
        grid(
            root,
            l.input_origin,
            l.cell,
            &padded,
            l.numbers,
            range,
            &|r, c| {
                if window.contains(&(r, c)) {
                    Some(rgb(HIGHLIGHT))
                } else if r < top || r >= top + h || c < left || c >= left + wd {
                    // The zeros of the padding, apart from the input itself.
                    Some(RGBColor(232, 232, 240))
                } else {
                    None
                }
            },
        )?;
        let kcell = if l.numbers { l.cell } else { l.cell.max(12) };
        let kernel: Vec<Vec<Option<f64>>> = w
            .kernel
            .iter()
            .map(|r| r.iter().map(|&v| Some(v)).collect())
            .collect();
        let krange = value_range(&w.kernel);
        grid(
            root,
            l.kernel_origin,
            kcell,
            &kernel,
            l.numbers,
            krange,
            &|_, _| Some(RGBColor(255, 236, 200)).filter(|_| l.numbers),
        )?;
        let ow = w.output_size().1;
        let shown: Vec<Vec<Option<f64>>> = self
            .output
            .iter()
            .enumerate()
            .map(|(i, r)| {
                r.iter()
                    .enumerate()
                    .map(|(j, &v)| (i * ow + j < frame.filled).then_some(v))
                    .collect()
            })
            .collect();
        let orange = value_range(&self.output);
        grid(
            root,
            l.output_origin,
            l.cell,
            &shown,
            l.numbers,
            orange,
            &|r, c| (frame.position == Some((r, c))).then(|| rgb(HIGHLIGHT)),
        )?;
        let font = ("sans-serif", 16).into_font().color(&BLACK);
        for (k, line) in caption_lines(&frame.caption, w.kernel[0].len())
            .iter()
            .enumerate()
        {
            root.draw_text(
                line,
                &font,
                (
                    MARGIN as i32,
                    (l.caption_top + k as u32 * CAPTION_LINE) as i32,
                ),
            )
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The frames as pictures.
    pub fn render(&self) -> Result<Vec<RgbImage>> {
        self.frames
            .iter()
            .map(|f| {
                draw_picture(self.layout.width, self.layout.height, |root| {
                    self.draw_frame(f, root)
                })
                .map_err(|e| Error::format(format!("drawing the animation: {e}")))
            })
            .collect()
    }

    /// Writes the animation as a looping GIF: a second a position, three seconds on the
    /// whole output.
    pub fn save_gif(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let pictures = self.render()?;
        let file = std::fs::File::create(path)
            .map_err(|e| Error::file(path, format!("cannot write: {e}")))?;
        let mut encoder = GifEncoder::new_with_speed(std::io::BufWriter::new(file), 10);
        let fail = |e: image::ImageError| Error::file(path, format!("cannot write the GIF: {e}"));
        encoder.set_repeat(Repeat::Infinite).map_err(fail)?;
        let last = pictures.len() - 1;
        for (k, picture) in pictures.into_iter().enumerate() {
            let ms = if k == last { 3000 } else { 1000 };
            let rgba = image::DynamicImage::ImageRgb8(picture).into_rgba8();
            encoder
                .encode_frame(Frame::from_parts(
                    rgba,
                    0,
                    0,
                    Delay::from_numer_denom_ms(ms, 1),
                ))
                .map_err(fail)?;
        }
        Ok(())
    }
}
