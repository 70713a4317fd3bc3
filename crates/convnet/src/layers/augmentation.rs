//! Keras's random image augmentation layers (RandomFlip, RandomRotation,
//! RandomTranslation, RandomZoom, RandomContrast, RandomBrightness), as they sit at the
//! front of keras.io's image models. In inference, where `predict` and `evaluate` run
//! them, each is the identity, as in Keras. In training each draws one transform an
//! image from the layer's own generator and applies it as Keras 3's TensorFlow backend
//! does (its affine warps are `kernels::warp`); the draws are convnet's, so the same
//! seed gives the same augmentation, but not Keras's.

use super::declare::{self, ChannelsLast};
use super::dropout::{call_rng, layer_rng, sample_rng};
use super::{single, Layer, LayerBase, Saved, Shape};
use crate::error::Result;
use crate::initializers::Rng;
use crate::kernels::warp::{self, Fill, PixelTaps, Sampling};
use crate::tensor::Tensor;
use rand::RngExt as _;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

/// A range of a random transform: one number `f` (meaning `[-f, f]`, or `[0, f]` where
/// Keras says so) or a `[low, high]` pair, written back as read.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Factor(Value);

impl<'de> Deserialize<'de> for Factor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let finite = |v: &Value| v.as_f64().is_some_and(f64::is_finite);
        let ok = match &v {
            Value::Array(pair) => pair.len() == 2 && pair.iter().all(finite),
            one => finite(one),
        };
        if ok {
            Ok(Factor(v))
        } else {
            Err(D::Error::custom(format!(
                "expected a number or a [low, high] pair, found {v}"
            )))
        }
    }
}

/// How a geometric transform fills what it uncovers, and how it samples.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FillMode {
    /// Mirror about the edge (`d c b a | a b c d`), Keras's default.
    Reflect,
    /// Wrap around.
    Wrap,
    /// Repeat the edge pixel.
    Nearest,
    /// `fill_value`.
    Constant,
}

/// Keras's sampling of geometric transforms.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Bilinear, Keras's default.
    Bilinear,
    /// Nearest neighbour.
    Nearest,
}

/// RandomFlip's `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum FlipMode {
    /// Left-right.
    #[serde(rename = "horizontal")]
    Horizontal,
    /// Up-down.
    #[serde(rename = "vertical")]
    Vertical,
    /// Either or both, Keras's default.
    #[serde(rename = "horizontal_and_vertical")]
    HorizontalAndVertical,
}

fn reflect() -> FillMode {
    FillMode::Reflect
}
fn bilinear() -> Interpolation {
    Interpolation::Bilinear
}
fn both() -> FlipMode {
    FlipMode::HorizontalAndVertical
}
fn pixel_range() -> Value {
    json!([0, 255])
}

/// Keras's `RandomFlip(mode)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomFlip {
    #[serde(skip)]
    base: LayerBase,
    #[serde(default)]
    data_format: ChannelsLast,
    /// Keras's `seed`.
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(skip)]
    rng: Option<Rng>,
    /// The index of this call's first sample in the global batch.
    #[serde(skip)]
    first_sample: usize,
    /// Keras's `mode`; default `horizontal_and_vertical`.
    #[serde(default = "both")]
    pub mode: FlipMode,
}

/// Keras's `RandomRotation(factor)`: a fraction of a full turn.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomRotation {
    #[serde(skip)]
    base: LayerBase,
    #[serde(default)]
    data_format: ChannelsLast,
    /// Keras's `factor`.
    pub factor: Factor,
    /// Keras's `fill_mode`; default `reflect`.
    #[serde(default = "reflect")]
    pub fill_mode: FillMode,
    /// Keras's `fill_value`, for `constant`; default 0.
    #[serde(default)]
    pub fill_value: f64,
    /// Keras's `interpolation`; default `bilinear`.
    #[serde(default = "bilinear")]
    pub interpolation: Interpolation,
    /// Keras's `seed`.
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(skip)]
    rng: Option<Rng>,
    /// The index of this call's first sample in the global batch.
    #[serde(skip)]
    first_sample: usize,
}

/// Keras's `RandomTranslation(height_factor, width_factor)`: fractions of the size.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomTranslation {
    #[serde(skip)]
    base: LayerBase,
    #[serde(default)]
    data_format: ChannelsLast,
    /// Keras's `height_factor`.
    pub height_factor: Factor,
    /// Keras's `width_factor`.
    pub width_factor: Factor,
    /// Keras's `fill_mode`; default `reflect`.
    #[serde(default = "reflect")]
    pub fill_mode: FillMode,
    /// Keras's `interpolation`; default `bilinear`.
    #[serde(default = "bilinear")]
    pub interpolation: Interpolation,
    /// Keras's `seed`.
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(skip)]
    rng: Option<Rng>,
    /// The index of this call's first sample in the global batch.
    #[serde(skip)]
    first_sample: usize,
    /// Keras's `fill_value`, for `constant`; default 0.
    #[serde(default)]
    pub fill_value: f64,
}

/// Keras's `RandomZoom(height_factor, width_factor=None)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomZoom {
    #[serde(skip)]
    base: LayerBase,
    #[serde(default)]
    data_format: ChannelsLast,
    /// Keras's `height_factor`.
    pub height_factor: Factor,
    /// Keras's `width_factor`; None keeps the aspect ratio.
    #[serde(default)]
    pub width_factor: Option<Factor>,
    /// Keras's `fill_mode`; default `reflect`.
    #[serde(default = "reflect")]
    pub fill_mode: FillMode,
    /// Keras's `interpolation`; default `bilinear`.
    #[serde(default = "bilinear")]
    pub interpolation: Interpolation,
    /// Keras's `seed`.
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(skip)]
    rng: Option<Rng>,
    /// The index of this call's first sample in the global batch.
    #[serde(skip)]
    first_sample: usize,
    /// Keras's `fill_value`, for `constant`; default 0.
    #[serde(default)]
    pub fill_value: f64,
}

/// Keras's `RandomContrast(factor)` and `RandomBrightness(factor)`, which share their
/// config: a factor and the pixels' `value_range`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomIntensity {
    #[serde(skip)]
    base: LayerBase,
    #[serde(default)]
    data_format: ChannelsLast,
    /// Keras's `factor`.
    pub factor: Factor,
    /// Keras's `value_range`; default `[0, 255]`.
    #[serde(default = "pixel_range")]
    pub value_range: Value,
    /// Keras's `seed`.
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(skip)]
    rng: Option<Rng>,
    /// The index of this call's first sample in the global batch.
    #[serde(skip)]
    first_sample: usize,
    /// Which of the two classes.
    #[serde(skip)]
    brightness: bool,
}

impl RandomIntensity {
    pub(super) fn brightness(mut self, brightness: bool) -> Self {
        self.brightness = brightness;
        self
    }
}

/// One image's random draw, in Keras's terms.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Draw {
    /// RandomFlip: whether the image is flipped (Keras's uniform draw ≤ 0.5).
    Flip(bool),
    /// RandomRotation: the angle in degrees, counter-clockwise.
    Angle(f32),
    /// RandomTranslation: the shift in pixels, (right, down).
    Translation(f32, f32),
    /// RandomZoom: the (width, height) zoom; above 1 zooms out.
    Zoom(f32, f32),
    /// RandomContrast: the factor on each value's distance from its channel's mean.
    Contrast(f32),
    /// RandomBrightness: the value added (already scaled by the value range).
    Delta(f32),
}

/// What a training-mode call applied, kept for its backward pass.
enum Applied {
    /// One flag an image: flipped along width, height, or both.
    Flips { flips: Vec<bool>, mode: FlipMode },
    /// One warp an image.
    Warps(Vec<Vec<PixelTaps>>),
    /// The contrast factor of each image, and which outputs the clip left alone.
    Contrast { factors: Vec<f32>, kept: Vec<bool> },
    /// Which outputs the clip left alone.
    Clipped { kept: Vec<bool> },
}

/// The random part of an augmentation layer: its draw for one image, and the transform
/// of a batch for given draws (one an image).
trait Augment: Layer {
    fn rng(&mut self) -> &mut Option<Rng>;
    /// One image's draw for a `height`×`width` image.
    fn draw(&self, rng: &mut Rng, height: usize, width: usize) -> Result<Draw>;
    fn transform(&self, x: &Tensor, draws: &[Draw]) -> Result<(Tensor, Applied)>;
}

/// `factor` as Keras's `_set_factor` reads it: a pair sorted, one number `f` as
/// `[max(−|f|, floor), |f|]`; an error naming the field when outside `bounds`.
fn factor_range(
    layer: &dyn Layer,
    field: &str,
    factor: &Factor,
    floor: f64,
    bounds: (f64, f64),
) -> Result<(f64, f64)> {
    let (low, high) = match &factor.0 {
        Value::Array(pair) => {
            let (a, b) = (
                pair[0].as_f64().unwrap_or(0.0),
                pair[1].as_f64().unwrap_or(0.0),
            );
            (a.min(b), a.max(b))
        }
        one => {
            let f = one.as_f64().unwrap_or(0.0).abs();
            ((-f).max(floor), f)
        }
    };
    if low < bounds.0 || high > bounds.1 {
        return Err(layer.shape_error(&format!(
            "`{field}` must lie in [{}, {}], got {}",
            bounds.0, bounds.1, factor.0
        )));
    }
    Ok((low, high))
}

/// A uniform draw in [low, high), in f32 as Keras draws.
fn uniform(rng: &mut Rng, (low, high): (f64, f64)) -> f32 {
    (low + (high - low) * rng.random::<f64>()) as f32
}

/// The images' (batch, height, width, channels).
fn image_dims(x: &Tensor) -> (usize, usize, usize, usize) {
    let s = x.shape();
    (s[0], s[1], s[2], s[3])
}

/// Warps each image of `x` by its matrix (see [`warp::affine_taps`]).
fn warp_images(
    x: &Tensor,
    matrices: impl Iterator<Item = [f32; 6]>,
    fill: FillMode,
    interpolation: Interpolation,
    fill_value: f64,
) -> Result<(Tensor, Applied)> {
    let (_, height, width, channels) = image_dims(x);
    let (fill, sampling) = (fill.kernel(), interpolation.kernel());
    let mut y = Tensor::zeros(x.shape().to_vec());
    let image = height * width * channels;
    let mut all = Vec::new();
    for ((matrix, x), y) in matrices
        .zip(x.data().chunks_exact(image))
        .zip(y.data_mut().chunks_exact_mut(image))
    {
        let taps = warp::affine_taps(matrix, height, width, fill, sampling);
        warp::warp_forward(x, &taps, channels, fill_value as f32, y);
        all.push(taps);
    }
    Ok((y, Applied::Warps(all)))
}

/// Clips every value of `y` to `range`, noting which it left alone (TensorFlow's
/// clip passes the gradient of values on the bounds).
fn clip(y: &mut Tensor, (low, high): (f32, f32)) -> Vec<bool> {
    y.data_mut()
        .iter_mut()
        .map(|v| {
            let kept = *v >= low && *v <= high;
            *v = v.clamp(low, high);
            kept
        })
        .collect()
}

impl FillMode {
    fn kernel(self) -> Fill {
        match self {
            FillMode::Reflect => Fill::Reflect,
            FillMode::Wrap => Fill::Wrap,
            FillMode::Nearest => Fill::Nearest,
            FillMode::Constant => Fill::Constant,
        }
    }
}

impl Interpolation {
    fn kernel(self) -> Sampling {
        match self {
            Interpolation::Bilinear => Sampling::Bilinear,
            Interpolation::Nearest => Sampling::Nearest,
        }
    }
}

/// The draws of a batch, or an error when one is not the layer's kind.
fn each<T>(layer: &dyn Layer, draws: &[Draw], pick: impl Fn(&Draw) -> Option<T>) -> Result<Vec<T>> {
    draws
        .iter()
        .map(|d| pick(d).ok_or_else(|| layer.shape_error(&format!("cannot apply the draw {d:?}"))))
        .collect()
}

impl Augment for RandomFlip {
    fn rng(&mut self) -> &mut Option<Rng> {
        &mut self.rng
    }
    fn draw(&self, rng: &mut Rng, _: usize, _: usize) -> Result<Draw> {
        Ok(Draw::Flip(rng.random::<f32>() <= 0.5))
    }
    fn transform(&self, x: &Tensor, draws: &[Draw]) -> Result<(Tensor, Applied)> {
        let flips = each(self, draws, |d| match d {
            Draw::Flip(f) => Some(*f),
            _ => None,
        })?;
        let y = flip_images(x, &flips, self.mode);
        Ok((
            y,
            Applied::Flips {
                flips,
                mode: self.mode,
            },
        ))
    }
}

/// Each image of `x` flipped where `flips` says, along the axes of `mode` (Keras's
/// `horizontal_and_vertical` flips both axes of a drawn image, or neither). A flip is
/// its own inverse, and its own gradient.
fn flip_images(x: &Tensor, flips: &[bool], mode: FlipMode) -> Tensor {
    let (_, height, width, channels) = image_dims(x);
    let horizontal = mode != FlipMode::Vertical;
    let vertical = mode != FlipMode::Horizontal;
    let image = height * width * channels;
    let mut y = x.clone();
    for ((x, y), _) in x
        .data()
        .chunks_exact(image)
        .zip(y.data_mut().chunks_exact_mut(image))
        .zip(flips)
        .filter(|(_, f)| **f)
    {
        for row in 0..height {
            let from_row = if vertical { height - 1 - row } else { row };
            for col in 0..width {
                let from_col = if horizontal { width - 1 - col } else { col };
                let to = (row * width + col) * channels;
                let from = (from_row * width + from_col) * channels;
                y[to..to + channels].copy_from_slice(&x[from..from + channels]);
            }
        }
    }
    y
}

impl Augment for RandomRotation {
    fn rng(&mut self) -> &mut Option<Rng> {
        &mut self.rng
    }
    fn draw(&self, rng: &mut Rng, _: usize, _: usize) -> Result<Draw> {
        let (low, high) = factor_range(self, "factor", &self.factor, -1.0, (-1.0, 1.0))?;
        Ok(Draw::Angle(uniform(rng, (low * 360.0, high * 360.0))))
    }
    fn transform(&self, x: &Tensor, draws: &[Draw]) -> Result<(Tensor, Applied)> {
        let angles = each(self, draws, |d| match d {
            Draw::Angle(a) => Some(*a),
            _ => None,
        })?;
        let (_, height, width, _) = image_dims(x);
        // Keras's `_compute_affine_matrix` about the centre (0.5 of the last index),
        // in f32.
        let (cx, cy) = (0.5 * (width as f32 - 1.0), 0.5 * (height as f32 - 1.0));
        let matrices = angles.into_iter().map(|angle| {
            let theta = angle * std::f32::consts::PI / 180.0;
            let (sin, cos) = theta.sin_cos();
            let (a0, a1, b0, b1) = (cos, -sin, sin, cos);
            [
                a0,
                a1,
                cx - cx * a0 - cy * a1,
                b0,
                b1,
                cy - cx * b0 - cy * b1,
            ]
        });
        warp_images(
            x,
            matrices,
            self.fill_mode,
            self.interpolation,
            self.fill_value,
        )
    }
}

impl Augment for RandomTranslation {
    fn rng(&mut self) -> &mut Option<Rng> {
        &mut self.rng
    }
    fn draw(&self, rng: &mut Rng, height: usize, width: usize) -> Result<Draw> {
        let dy = factor_range(
            self,
            "height_factor",
            &self.height_factor,
            -1.0,
            (-1.0, 1.0),
        )?;
        let dx = factor_range(self, "width_factor", &self.width_factor, -1.0, (-1.0, 1.0))?;
        let dy = uniform(rng, dy) * height as f32;
        let dx = uniform(rng, dx) * width as f32;
        Ok(Draw::Translation(dx, dy))
    }
    fn transform(&self, x: &Tensor, draws: &[Draw]) -> Result<(Tensor, Applied)> {
        let shifts = each(self, draws, |d| match d {
            Draw::Translation(dx, dy) => Some((*dx, *dy)),
            _ => None,
        })?;
        let matrices = shifts
            .into_iter()
            .map(|(dx, dy)| [1.0, 0.0, -dx, 0.0, 1.0, -dy]);
        warp_images(
            x,
            matrices,
            self.fill_mode,
            self.interpolation,
            self.fill_value,
        )
    }
}

impl Augment for RandomZoom {
    fn rng(&mut self) -> &mut Option<Rng> {
        &mut self.rng
    }
    fn draw(&self, rng: &mut Rng, _: usize, _: usize) -> Result<Draw> {
        // Keras refuses -1 and below, which would zoom to a point or mirror.
        let zoom = |field: &str, factor: &Factor| -> Result<(f64, f64)> {
            let (low, high) = factor_range(self, field, factor, f64::NEG_INFINITY, (-1.0, 1.0))?;
            if low <= -1.0 {
                return Err(
                    self.shape_error(&format!("`{field}` must be above -1, got {}", factor.0))
                );
            }
            Ok((1.0 + low, 1.0 + high))
        };
        let height = uniform(rng, zoom("height_factor", &self.height_factor)?);
        let width = match &self.width_factor {
            Some(factor) => uniform(rng, zoom("width_factor", factor)?),
            None => height,
        };
        Ok(Draw::Zoom(width, height))
    }
    fn transform(&self, x: &Tensor, draws: &[Draw]) -> Result<(Tensor, Applied)> {
        let zooms = each(self, draws, |d| match d {
            Draw::Zoom(w, h) => Some((*w, *h)),
            _ => None,
        })?;
        let (_, height, width, _) = image_dims(x);
        let (half_w, half_h) = ((width as f32 - 1.0) / 2.0, (height as f32 - 1.0) / 2.0);
        let matrices = zooms
            .into_iter()
            .map(|(zx, zy)| [zx, 0.0, half_w * (1.0 - zx), 0.0, zy, half_h * (1.0 - zy)]);
        warp_images(
            x,
            matrices,
            self.fill_mode,
            self.interpolation,
            self.fill_value,
        )
    }
}

impl RandomIntensity {
    /// `value_range` as (low, high): RandomBrightness sorts it, RandomContrast clips to
    /// it as given.
    fn range(&self) -> Result<(f32, f32)> {
        let numbers: Option<Vec<f64>> = self
            .value_range
            .as_array()
            .and_then(|p| p.iter().map(Value::as_f64).collect());
        let Some(&[a, b]) = numbers.as_deref() else {
            return Err(self.shape_error(&format!(
                "`value_range` must be two numbers, got {}",
                self.value_range
            )));
        };
        Ok(if self.brightness && a > b {
            (b as f32, a as f32)
        } else {
            (a as f32, b as f32)
        })
    }
}

impl Augment for RandomIntensity {
    fn rng(&mut self) -> &mut Option<Rng> {
        &mut self.rng
    }
    fn draw(&self, rng: &mut Rng, _: usize, _: usize) -> Result<Draw> {
        if self.brightness {
            let (low, high) = self.range()?;
            let u = uniform(
                rng,
                factor_range(self, "factor", &self.factor, -1.0, (-1.0, 1.0))?,
            );
            Ok(Draw::Delta(u * (high - low)))
        } else {
            // Keras's bounds for the contrast factor are [0, 1], so one number f is
            // [0, f]: the factor is drawn from [1, 1 + f].
            let (low, high) = factor_range(self, "factor", &self.factor, 0.0, (0.0, 1.0))?;
            Ok(Draw::Contrast(uniform(rng, (1.0 - low, 1.0 + high))))
        }
    }
    fn transform(&self, x: &Tensor, draws: &[Draw]) -> Result<(Tensor, Applied)> {
        let range = self.range()?;
        let mut y = x.clone();
        if self.brightness {
            let deltas = each(self, draws, |d| match d {
                Draw::Delta(v) => Some(*v),
                _ => None,
            })?;
            let image = x.len() / deltas.len().max(1);
            for (y, delta) in y.data_mut().chunks_exact_mut(image.max(1)).zip(&deltas) {
                y.iter_mut().for_each(|v| *v += delta);
            }
            let kept = clip(&mut y, range);
            return Ok((y, Applied::Clipped { kept }));
        }
        let factors = each(self, draws, |d| match d {
            Draw::Contrast(f) => Some(*f),
            _ => None,
        })?;
        let (_, height, width, channels) = image_dims(x);
        let image = height * width * channels;
        for ((x, y), f) in x
            .data()
            .chunks_exact(image)
            .zip(y.data_mut().chunks_exact_mut(image))
            .zip(&factors)
        {
            let means = channel_means(x, channels);
            for (i, (y, x)) in y.iter_mut().zip(x).enumerate() {
                let mean = means[i % channels];
                *y = (x - mean) * f + mean;
            }
        }
        let kept = clip(&mut y, range);
        Ok((y, Applied::Contrast { factors, kept }))
    }
}

/// Each channel's mean over one image (HWC).
fn channel_means(image: &[f32], channels: usize) -> Vec<f32> {
    let mut sums = vec![0f64; channels];
    for pixel in image.chunks_exact(channels) {
        sums.iter_mut()
            .zip(pixel)
            .for_each(|(s, v)| *s += f64::from(*v));
    }
    let pixels = (image.len() / channels.max(1)).max(1) as f64;
    sums.iter().map(|s| (s / pixels) as f32).collect()
}

/// The gradient of what a training-mode call applied.
fn backward_applied(x: &Tensor, applied: &Applied, dy: &Tensor) -> Tensor {
    let (_, height, width, channels) = image_dims(x);
    let image = height * width * channels;
    match applied {
        Applied::Flips { flips, mode } => flip_images(dy, flips, *mode),
        Applied::Warps(taps) => {
            let mut dx = Tensor::zeros(x.shape().to_vec());
            for ((taps, dy), dx) in taps
                .iter()
                .zip(dy.data().chunks_exact(image))
                .zip(dx.data_mut().chunks_exact_mut(image))
            {
                warp::warp_backward_input(dy, taps, channels, dx);
            }
            dx
        }
        Applied::Clipped { kept } => {
            let mut dx = dy.clone();
            dx.data_mut()
                .iter_mut()
                .zip(kept)
                .for_each(|(d, k)| *d *= f32::from(u8::from(*k)));
            dx
        }
        Applied::Contrast { factors, kept } => {
            // y = (x − m)·f + m with m each channel's mean: dx = f·g + (1 − f)·mean(g).
            let mut dx = dy.clone();
            dx.data_mut()
                .iter_mut()
                .zip(kept)
                .for_each(|(d, k)| *d *= f32::from(u8::from(*k)));
            for (dx, f) in dx.data_mut().chunks_exact_mut(image).zip(factors) {
                let means = channel_means(dx, channels);
                for (i, d) in dx.iter_mut().enumerate() {
                    *d = f * *d + (1.0 - f) * means[i % channels];
                }
            }
            dx
        }
    }
}

/// The Layer impl of an augmentation: the identity in inference, as in Keras; in
/// training, a fresh draw an image from the layer's generator (its `seed`, else a draw
/// of the model's), so that the same seed gives the same augmentation.
macro_rules! augmentation {
    ($layer:ty, $class:expr) => {
        impl Layer for $layer {
            fn class_name(&self) -> &'static str {
                let class: fn(&Self) -> &'static str = $class;
                class(self)
            }

            layer_base!();

            fn random_generator(&mut self) -> Option<&mut Option<Rng>> {
                Some(self.rng())
            }

            fn set_first_sample(&mut self, first: usize) {
                self.first_sample = first;
            }

            fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
                let shape = single(self, inputs)?;
                if shape.len() != 4 {
                    return Err(self.shape_error(&format!(
                        "expects images (batch, height, width, channels), got {}",
                        super::format_shape(shape)
                    )));
                }
                Ok(shape.clone())
            }

            fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
                self.output_shape(inputs)?;
                let own = layer_rng(self.seed, rng);
                *self.rng() = Some(own);
                Ok(())
            }

            fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
                let x = *single(self, inputs)?;
                self.output_shape(&[super::shape_of(x)])?;
                Ok(x.clone())
            }

            fn forward(&mut self, inputs: &[&Tensor], training: bool) -> Result<(Tensor, Saved)> {
                let x = *single(self, inputs)?;
                self.output_shape(&[super::shape_of(x)])?;
                if !training {
                    return Ok((x.clone(), Saved::none()));
                }
                let (batch, height, width, _) = image_dims(x);
                // One draw per call from the layer's generator, then each image's own
                // generator from it and the image's index in the global batch, so an
                // image's augmentation does not depend on the rank that computes it.
                let seed = self.seed;
                let call_key = call_rng(self.rng(), seed).random::<u64>();
                let first = self.first_sample;
                let draws: Result<Vec<Draw>> = (0..batch)
                    .map(|i| self.draw(&mut sample_rng(call_key, first + i), height, width))
                    .collect();
                let (y, applied) = self.transform(x, &draws?)?;
                Ok((y, Saved::new(applied)))
            }

            fn backward_impl(
                &self,
                inputs: &[&Tensor],
                _: &Tensor,
                saved: &Saved,
                dy: &Tensor,
                _: &mut [Tensor],
            ) -> Result<Vec<Tensor>> {
                match saved.get::<Applied>(self) {
                    Ok(applied) => Ok(vec![backward_applied(inputs[0], applied, dy)]),
                    Err(_) => Ok(vec![dy.clone()]),
                }
            }
        }
    };
}

augmentation!(RandomFlip, |_| "RandomFlip");
augmentation!(RandomRotation, |_| "RandomRotation");
augmentation!(RandomTranslation, |_| "RandomTranslation");
augmentation!(RandomZoom, |_| "RandomZoom");
augmentation!(RandomIntensity, |l| if l.brightness {
    "RandomBrightness"
} else {
    "RandomContrast"
});

impl RandomFlip {
    /// A RandomFlip, like `keras.layers.RandomFlip(mode)`.
    pub fn new(mode: FlipMode) -> Self {
        RandomFlip {
            mode,
            ..declare::defaults("random_flip", json!({}))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::initializers::rng_from_seed;
    use crate::layers::layer_from_config;

    /// A case of scripts/make_augmentation_goldens.py: a layer, an input batch, Keras's
    /// draw for each image and its output for those draws.
    fn golden_cases() -> Vec<Value> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden/augmentation/cases.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn floats(v: &Value) -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    }

    fn keras_draws(draw: &Value) -> Vec<Draw> {
        let (kind, values) = draw.as_object().unwrap().iter().next().unwrap();
        let values = values.as_array().unwrap();
        let pair = |v: &Value| {
            let p = floats(v);
            (p[0], p[1])
        };
        values
            .iter()
            .map(|v| match kind.as_str() {
                "flip" => Draw::Flip(v.as_bool().unwrap()),
                "angle" => Draw::Angle(v.as_f64().unwrap() as f32),
                "translation" => {
                    let (dx, dy) = pair(v);
                    Draw::Translation(dx, dy)
                }
                "zoom" => {
                    let (w, h) = pair(v);
                    Draw::Zoom(w, h)
                }
                "contrast" => Draw::Contrast(v.as_f64().unwrap() as f32),
                "delta" => Draw::Delta(v.as_f64().unwrap() as f32),
                other => panic!("draw {other}"),
            })
            .collect()
    }

    /// The layer's [`Augment`] side.
    fn augment(layer: &dyn Layer) -> &dyn Augment {
        let any = layer.as_any();
        if let Some(l) = any.downcast_ref::<RandomFlip>() {
            l
        } else if let Some(l) = any.downcast_ref::<RandomRotation>() {
            l
        } else if let Some(l) = any.downcast_ref::<RandomTranslation>() {
            l
        } else if let Some(l) = any.downcast_ref::<RandomZoom>() {
            l
        } else {
            any.downcast_ref::<RandomIntensity>().unwrap()
        }
    }

    #[test]
    fn keras_draws_transform_as_keras_transforms_them() {
        let mut failures = Vec::new();
        for case in golden_cases()
            .into_iter()
            .filter(|c| c["layer"]["class_name"] != "RandomCrop")
        {
            let name = case["name"].as_str().unwrap();
            let layer = layer_from_config(
                case["layer"]["class_name"].as_str().unwrap(),
                &case["layer"]["config"],
            )
            .unwrap();
            if layer.config() != case["layer"]["config"] {
                failures.push(format!(
                    "{name}: config {} vs Keras's {}",
                    layer.config(),
                    case["layer"]["config"]
                ));
            }
            let shape: Vec<usize> = serde_json::from_value(case["shape"].clone()).unwrap();
            let x = Tensor::new(shape, floats(&case["x"])).unwrap();
            let (y, _) = augment(layer.as_ref())
                .transform(&x, &keras_draws(&case["draw"]))
                .unwrap();
            let want = floats(&case["y"]);
            let worst = y
                .data()
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                .fold(0f32, f32::max);
            if worst > 1e-4 {
                failures.push(format!("{name}: worst relative difference {worst:.2e}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// Runs `layer` in training on `x` through the Layer interface.
    fn train_call(layer: &mut dyn Layer, x: &Tensor) -> (Tensor, Saved) {
        layer
            .build(&[super::super::shape_of(x)], &mut rng_from_seed(7))
            .unwrap();
        layer.forward(&[x], true).unwrap()
    }

    fn batch() -> Tensor {
        let data = (0..4 * 5 * 6 * 2)
            .map(|i| ((i * 29 % 17) as f32) / 17.0)
            .collect();
        Tensor::new(vec![4, 5, 6, 2], data).unwrap()
    }

    #[test]
    fn a_seed_repeats_its_augmentation_and_inference_is_the_identity() {
        for config in [
            json!({"factor": 0.3, "seed": 5}),
            json!({"factor": [-0.2, 0.4], "seed": 5, "fill_mode": "constant"}),
        ] {
            let x = batch();
            let mut a = layer_from_config("RandomRotation", &config).unwrap();
            let mut b = layer_from_config("RandomRotation", &config).unwrap();
            let (ya, _) = train_call(a.as_mut(), &x);
            let (yb, _) = train_call(b.as_mut(), &x);
            assert_eq!(ya.data(), yb.data());
            assert_ne!(ya.data(), x.data(), "a training call transforms");
            // The next batch draws anew.
            let (ya2, _) = a.forward(&[&x], true).unwrap();
            assert_ne!(ya2.data(), ya.data());
            let (inference, _) = a.forward(&[&x], false).unwrap();
            assert_eq!(inference.data(), x.data());
        }
    }

    #[test]
    fn draws_stay_in_keras_ranges() {
        let mut rng = rng_from_seed(3);
        let layer = |class: &str, config: Value| layer_from_config(class, &config).unwrap();
        let rotation = layer("RandomRotation", json!({"factor": [-0.1, 0.25]}));
        let contrast = layer("RandomContrast", json!({"factor": 0.5}));
        let brightness = layer(
            "RandomBrightness",
            json!({"factor": 0.2, "value_range": [0, 1]}),
        );
        let zoom = layer("RandomZoom", json!({"height_factor": 0.3}));
        for _ in 0..500 {
            match augment(rotation.as_ref()).draw(&mut rng, 5, 6).unwrap() {
                Draw::Angle(a) => assert!((-36.0..90.0).contains(&a), "{a}"),
                d => panic!("{d:?}"),
            }
            match augment(contrast.as_ref()).draw(&mut rng, 5, 6).unwrap() {
                Draw::Contrast(f) => assert!((1.0..1.5).contains(&f), "{f}"),
                d => panic!("{d:?}"),
            }
            match augment(brightness.as_ref()).draw(&mut rng, 5, 6).unwrap() {
                Draw::Delta(d) => assert!((-0.2..0.2).contains(&d), "{d}"),
                d => panic!("{d:?}"),
            }
            match augment(zoom.as_ref()).draw(&mut rng, 5, 6).unwrap() {
                Draw::Zoom(w, h) => assert!(w == h && (0.7..1.3).contains(&w), "{w} {h}"),
                d => panic!("{d:?}"),
            }
        }
        let bad = layer("RandomRotation", json!({"factor": 1.5}));
        let error = augment(bad.as_ref())
            .draw(&mut rng, 5, 6)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("factor") && error.contains("random_rotation"),
            "{error}"
        );
    }

    #[test]
    fn training_gradients_match_finite_differences() {
        let x = batch();
        let r: Vec<f32> = (0..x.len())
            .map(|i| ((i * 13 % 7) as f32 - 3.0) / 3.0)
            .collect();
        for (class, config) in [
            ("RandomFlip", json!({"seed": 1})),
            ("RandomRotation", json!({"factor": 0.2, "seed": 2})),
            (
                "RandomTranslation",
                json!({"height_factor": 0.3, "width_factor": 0.3, "seed": 3}),
            ),
            (
                "RandomZoom",
                json!({"height_factor": 0.4, "fill_mode": "constant", "seed": 4}),
            ),
            (
                "RandomContrast",
                json!({"factor": 0.7, "value_range": [0, 1], "seed": 5}),
            ),
            (
                "RandomBrightness",
                json!({"factor": 0.2, "value_range": [0, 1], "seed": 6}),
            ),
        ] {
            let layer = layer_from_config(class, &config).unwrap();
            let aug = augment(layer.as_ref());
            let mut rng = rng_from_seed(11);
            let draws: Vec<Draw> = (0..4).map(|_| aug.draw(&mut rng, 5, 6).unwrap()).collect();
            let (y0, applied) = aug.transform(&x, &draws).unwrap();
            let dy = Tensor::new(x.shape().to_vec(), r.clone()).unwrap();
            let dx = backward_applied(&x, &applied, &dy);
            let v: Vec<f32> = (0..x.len())
                .map(|i| ((i * 7 % 5) as f32 - 2.0) / 2.0)
                .collect();
            // Small enough that no value crosses a clip bound (the nearest lies 8e-4 away).
            let e = 1e-4f32;
            let shifted = Tensor::new(
                x.shape().to_vec(),
                x.data().iter().zip(&v).map(|(a, b)| a + e * b).collect(),
            )
            .unwrap();
            let (y1, _) = aug.transform(&shifted, &draws).unwrap();
            let numeric: f64 = y1
                .data()
                .iter()
                .zip(y0.data())
                .zip(&r)
                .map(|((a, b), r)| f64::from((a - b) * r))
                .sum::<f64>()
                / f64::from(e);
            let analytic: f64 = v.iter().zip(dx.data()).map(|(a, b)| f64::from(a * b)).sum();
            assert!(
                (numeric - analytic).abs() < 2e-2 * analytic.abs().max(1.0),
                "{class}: {numeric} vs {analytic}"
            );
        }
    }
}
