//! Dropout: in training, each value is zeroed with probability `rate` and the survivors
//! are scaled by 1/(1 − rate), so the expected output equals the input; at inference it
//! is the identity. The mask comes from a seeded generator (the layer's `seed`, else one
//! drawn from the model's generator when the layer is built), so runs repeat exactly.
//! AlphaDropout, for SELU networks, sets the dropped values to SELU's negative
//! saturation instead and rescales so that mean and variance are kept.

use super::declare;
use super::{single, Layer, LayerBase, Saved, Shape};
use crate::error::Result;
use crate::initializers::{rng_from_seed, Rng};
use crate::kernels::elementwise::zip_with;
use crate::tensor::Tensor;
use rand::RngExt;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Keras's `Dropout(rate)`: in training, zeroes each input with probability `rate` and
/// scales the rest by 1/(1 − rate); the identity in inference.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dropout {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `rate`: the fraction of inputs dropped, in [0, 1].
    #[serde(deserialize_with = "declare::unit_interval")]
    pub rate: f64,
    /// Keras's `seed`: fixes the masks; default None (drawn from the model's generator).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Keras's `noise_shape`: the mask's shape, broadcast over axes of size 1; `None`
    /// entries take the input's size.
    #[serde(deserialize_with = "declare::sizes::optional::deserialize", default)]
    pub noise_shape: Option<Vec<Option<usize>>>,
    #[serde(skip)]
    rng: Option<Rng>,
    /// Keras's AlphaDropout rather than Dropout (the same config).
    #[serde(skip)]
    alpha: bool,
    /// The index of this call's first sample in the global batch.
    #[serde(skip)]
    first_sample: usize,
}

/// SELU's α and λ, whose product is the value AlphaDropout gives dropped inputs.
const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

impl Dropout {
    /// A Dropout of `rate`, like `keras.layers.Dropout(rate)`.
    pub fn new(rate: f64) -> Self {
        Dropout {
            rate,
            ..declare::defaults("dropout", json!({"rate": 0.5}))
        }
    }

    /// Keras's `AlphaDropout(rate)`: in training, dropped inputs take SELU's negative
    /// saturation −λα and the result is scaled and shifted (`a·x + b`) to keep the
    /// mean and variance of SELU activations; the identity in inference.
    pub fn alpha_dropout(rate: f64) -> Self {
        Dropout {
            rate,
            alpha: true,
            ..declare::defaults("alpha_dropout", json!({"rate": 0.5}))
        }
    }

    pub(super) fn alpha(mut self, alpha: bool) -> Self {
        self.alpha = alpha;
        self
    }

    /// Sets `seed`, so the masks repeat from run to run (Keras's default None).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self.rng = None;
        self
    }

    /// The mask's shape for an input shape, or an error when noise_shape cannot
    /// broadcast to it.
    fn mask_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let Some(noise) = &self.noise_shape else {
            return Ok(input.to_vec());
        };
        if noise.len() != input.len() {
            return Err(self.shape_error(&format!(
                "noise_shape {noise:?} does not have the input's rank {}",
                input.len()
            )));
        }
        noise
            .iter()
            .zip(input)
            .map(|(n, &d)| match n {
                None => Ok(d),
                Some(n) if *n == d || *n == 1 => Ok(*n),
                Some(n) => Err(self.shape_error(&format!(
                    "noise_shape size {n} cannot broadcast to input size {d}"
                ))),
            })
            .collect()
    }
}

impl Layer for Dropout {
    fn class_name(&self) -> &'static str {
        if self.alpha {
            "AlphaDropout"
        } else {
            "Dropout"
        }
    }

    layer_base!();

    fn random_generator(&mut self) -> Option<&mut Option<Rng>> {
        Some(&mut self.rng)
    }

    fn set_first_sample(&mut self, first: usize) {
        self.first_sample = first;
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        check_rate(self, self.rate)?;
        Ok(single(self, inputs)?.clone())
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        self.output_shape(inputs)?;
        self.rng = Some(layer_rng(self.seed, rng));
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
        if !training || self.rate == 0.0 {
            return Ok((x.clone(), Saved::none()));
        }
        let keep = 1.0 - self.rate;
        let mask_shape = self.mask_shape(x.shape())?;
        let rng = call_rng(&mut self.rng, self.seed);
        let scale = match (self.alpha, keep > 0.0) {
            (true, _) => 1.0,
            (false, true) => (1.0 / keep) as f32,
            (false, false) => 0.0,
        };
        // One draw per call, the same on every rank of a data-parallel run; each
        // sample's cells then come from a generator of its own, keyed by that draw and
        // the sample's index in the global batch, so a sample's mask does not depend on
        // which rank computes it. Each 64-bit draw decides two cells: a cell is kept
        // when its 32 bits fall under keep·2³².
        let call_key = rng.random::<u64>();
        let threshold = (keep * 4_294_967_296.0) as u64;
        let cells = mask_shape.iter().product::<usize>();
        let rows = mask_shape.first().copied().unwrap_or(1).max(1);
        let per_row = (cells / rows).max(1);
        let first_sample = self.first_sample;
        let mut small = crate::buffers::take(cells);
        // The samples' generators are independent, so their cells are drawn in parallel.
        small
            .par_chunks_mut(per_row)
            .enumerate()
            .for_each(|(row, cells)| {
                // A mask shared by the whole batch (noise_shape's batch axis 1) is row 0's.
                let index = if rows == 1 { 0 } else { first_sample + row };
                let mut generator = sample_rng(call_key, index);
                for pair in cells.chunks_mut(2) {
                    let bits = generator.random::<u64>();
                    for (cell, half) in pair.iter_mut().zip([bits & 0xffff_ffff, bits >> 32]) {
                        *cell = if half < threshold { scale } else { 0.0 };
                    }
                }
            });
        let mask = if mask_shape == x.shape() {
            Tensor::new(mask_shape, small)?
        } else {
            broadcast(&small, &mask_shape, x.shape())
        };
        if self.alpha {
            let mut y = x.clone();
            // Keras's a·(x·m + α'·(1 − m)) + b, with α' = −λα; dy/dx = a·m.
            let (rate, alpha_p) = (self.rate, -SELU_ALPHA * SELU_SCALE);
            let a = ((1.0 - rate) * (1.0 + rate * alpha_p * alpha_p)).powf(-0.5);
            let b = -a * alpha_p * rate;
            let mut factors = mask;
            for (v, m) in y.data_mut().iter_mut().zip(factors.data_mut()) {
                let kept = f64::from(*m);
                *v = (a * (f64::from(*v) * kept + alpha_p * (1.0 - kept)) + b) as f32;
                *m = (a * kept) as f32;
            }
            return Ok((y, Saved::new(factors)));
        }
        let y = zip_with(x.data(), mask.data(), |v, m| v * m);
        Ok((Tensor::new(x.shape().to_vec(), y)?, Saved::new(mask)))
    }

    fn backward_impl(
        &self,
        _: &[&Tensor],
        _: &Tensor,
        saved: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        Ok(vec![times_saved(self, saved, dy)])
    }
}

/// The generator of one sample's draws in a training call of a random layer: seeded by
/// SplitMix64 of the call's key (one draw of the layer's generator, the same on every
/// rank) and the sample's index in the global batch, so that a sample draws the same
/// whichever rank of a data-parallel run computes it.
pub(super) fn sample_rng(call_key: u64, index: usize) -> Rng {
    let mut z = call_key.wrapping_add((index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    rng_from_seed(z ^ (z >> 31))
}

/// Checks a dropout `rate`, which must lie in [0, 1].
fn check_rate(layer: &dyn Layer, rate: f64) -> Result<()> {
    if (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(layer.shape_error(&format!("rate must be between 0 and 1, got {rate}")))
    }
}

/// A noise layer's own generator: from its `seed`, else from a draw of the model's.
pub(super) fn layer_rng(seed: Option<u64>, rng: &mut Rng) -> Rng {
    rng_from_seed(seed.unwrap_or_else(|| rng.random()))
}

/// The generator a random layer's training call draws from: the one `build` made
/// ([`layer_rng`]), or, for a layer called without being built, one from its `seed`
/// (0 when unset).
pub(super) fn call_rng(slot: &mut Option<Rng>, seed: Option<u64>) -> &mut Rng {
    slot.get_or_insert_with(|| rng_from_seed(seed.unwrap_or(0)))
}

/// `dy` times the factors a training forward saved (a dropout mask, multiplied noise);
/// `dy` itself when it saved none (inference, added noise).
fn times_saved(layer: &dyn Layer, saved: &Saved, dy: &Tensor) -> Tensor {
    let mut dx = dy.clone();
    if let Ok(factors) = saved.get::<Tensor>(layer) {
        dx.data_mut()
            .iter_mut()
            .zip(factors.data())
            .for_each(|(d, f)| *d *= f);
    }
    dx
}

/// Repeats `small` (of shape `from`, with 1 on the broadcast axes) to shape `to`.
fn broadcast(small: &[f32], from: &[usize], to: &[usize]) -> Tensor {
    let mut out = Tensor::zeros(to.to_vec());
    let rank = to.len();
    for (i, v) in out.data_mut().iter_mut().enumerate() {
        let (mut rest, mut src, mut stride) = (i, 0, 1);
        for axis in (0..rank).rev() {
            let coord = rest % to[axis];
            rest /= to[axis];
            if from[axis] != 1 {
                src += coord * stride;
            }
            stride *= from[axis];
        }
        *v = small[src];
    }
    out
}

/// Keras's `SpatialDropout1D/2D/3D(rate)`: Dropout of whole channels, the same for
/// every position of a sample (a mask of shape `(batch, 1, …, 1, channels)`), for
/// convolutional features whose neighbours are correlated; the identity in inference.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpatialDropout {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `rate`: the fraction of channels dropped, in [0, 1].
    #[serde(deserialize_with = "declare::unit_interval")]
    pub rate: f64,
    /// Keras's `seed`: fixes the masks; default None (drawn from the model's generator).
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    data_format: declare::ChannelsLast,
    /// 1, 2 or 3: the spatial axes of the class.
    #[serde(skip)]
    spatial_axes: usize,
    #[serde(skip)]
    rng: Option<Rng>,
    /// The index of this call's first sample in the global batch.
    #[serde(skip)]
    first_sample: usize,
}

impl SpatialDropout {
    /// A SpatialDropout over `spatial_axes` axes (1, 2 or 3, for SpatialDropout1D/2D/3D).
    pub fn new(spatial_axes: usize, rate: f64) -> Self {
        let layer: Self = declare::defaults("spatial_dropout", json!({"rate": 0.5}));
        SpatialDropout { rate, ..layer }.spatial_axes(spatial_axes)
    }

    /// Sets `seed`, so the masks repeat from run to run (Keras's default None).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self.rng = None;
        self
    }

    pub(super) fn spatial_axes(mut self, spatial_axes: usize) -> Self {
        self.spatial_axes = spatial_axes;
        if self.base.auto_named {
            self.base.name = format!("spatial_dropout{spatial_axes}d");
        }
        self
    }

    /// The Dropout this is: one mask value per (sample, channel), carrying the
    /// generator's state.
    fn as_dropout(&mut self) -> Dropout {
        let mut noise = vec![None];
        noise.extend(std::iter::repeat_n(Some(1), self.spatial_axes));
        noise.push(None);
        Dropout {
            base: self.base.clone(),
            rate: self.rate,
            seed: self.seed,
            noise_shape: Some(noise),
            rng: self.rng.take(),
            alpha: false,
            first_sample: self.first_sample,
        }
    }
}

impl Layer for SpatialDropout {
    fn class_name(&self) -> &'static str {
        match self.spatial_axes {
            1 => "SpatialDropout1D",
            3 => "SpatialDropout3D",
            _ => "SpatialDropout2D",
        }
    }

    layer_base!();

    fn random_generator(&mut self) -> Option<&mut Option<Rng>> {
        Some(&mut self.rng)
    }

    fn set_first_sample(&mut self, first: usize) {
        self.first_sample = first;
    }

    /// Keras writes SpatialDropout's config in its own order, without `trainable`, and
    /// without `data_format` for SpatialDropout1D.
    fn config(&self) -> serde_json::Value {
        let mut config = json!({
            "rate": self.rate,
            "seed": self.seed,
            "name": self.base.name,
            "dtype": self.base.dtype,
        });
        if self.spatial_axes != 1 {
            config["data_format"] = json!(self.data_format);
        }
        config
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let shape = single(self, inputs)?;
        if shape.len() != self.spatial_axes + 2 {
            return Err(self.shape_error(&format!(
                "expects input of rank {} (batch, {} spatial axes, channels), got {}",
                self.spatial_axes + 2,
                self.spatial_axes,
                super::format_shape(shape)
            )));
        }
        check_rate(self, self.rate)?;
        Ok(shape.clone())
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        self.output_shape(inputs)?;
        self.rng = Some(layer_rng(self.seed, rng));
        Ok(())
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        self.output_shape(&[super::shape_of(x)])?;
        Ok(x.clone())
    }

    fn forward(&mut self, inputs: &[&Tensor], training: bool) -> Result<(Tensor, Saved)> {
        self.output_shape(&[super::shape_of(single(self, inputs)?)])?;
        let mut dropout = self.as_dropout();
        let out = dropout.forward(inputs, training);
        self.rng = dropout.rng;
        out
    }

    fn backward_impl(
        &self,
        _: &[&Tensor],
        _: &Tensor,
        saved: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        Ok(vec![times_saved(self, saved, dy)])
    }
}

/// Keras's `GaussianNoise(stddev)` and `GaussianDropout(rate)`: in training, noise
/// added (`x + N(0, stddev²)`) or multiplied (`x · N(1, rate / (1 − rate))`), as a
/// regulariser; the identity in inference.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaussianNoise {
    #[serde(skip)]
    base: LayerBase,
    /// GaussianNoise's `stddev`: the added noise's standard deviation.
    #[serde(
        default,
        deserialize_with = "opt_amount",
        skip_serializing_if = "Option::is_none"
    )]
    pub stddev: Option<f64>,
    /// GaussianDropout's `rate`: sets the multiplied noise's variance, rate / (1 − rate).
    #[serde(
        default,
        deserialize_with = "opt_rate",
        skip_serializing_if = "Option::is_none"
    )]
    pub rate: Option<f64>,
    /// Keras's `seed`: fixes the noise; default None (drawn from the model's generator).
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(skip)]
    rng: Option<Rng>,
    /// The index of this call's first sample in the global batch.
    #[serde(skip)]
    first_sample: usize,
}

fn opt_amount<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<f64>, D::Error> {
    declare::non_negative(d).map(Some)
}

fn opt_rate<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<f64>, D::Error> {
    declare::unit_interval(d).map(Some)
}

impl GaussianNoise {
    /// Keras's `GaussianNoise(stddev)`.
    pub fn additive(stddev: f64) -> Self {
        GaussianNoise {
            stddev: Some(stddev),
            ..declare::defaults("gaussian_noise", json!({}))
        }
    }

    /// Keras's `GaussianDropout(rate)`.
    pub fn multiplicative(rate: f64) -> Self {
        let mut layer = GaussianNoise {
            rate: Some(rate),
            ..declare::defaults("gaussian_dropout", json!({}))
        };
        layer.base.name = "gaussian_dropout".into();
        layer
    }
}

impl GaussianNoise {
    /// Reads GaussianNoise (which takes `stddev`) or GaussianDropout (`rate`).
    pub(super) fn read(class: &str, config: &serde_json::Value) -> Result<Box<dyn Layer>> {
        let layer: Self = declare::read_layer(class, config)?;
        if layer.class_name() != class || layer.stddev.is_some() == layer.rate.is_some() {
            let field = if class == "GaussianNoise" {
                "stddev"
            } else {
                "rate"
            };
            return Err(crate::error::Error::Config {
                layer: layer.base.name.clone(),
                class: class.into(),
                field: field.into(),
                message: format!("{class} takes `{field}` alone"),
            });
        }
        Ok(Box::new(layer))
    }
}

impl Layer for GaussianNoise {
    fn class_name(&self) -> &'static str {
        if self.rate.is_some() {
            "GaussianDropout"
        } else {
            "GaussianNoise"
        }
    }

    layer_base!();

    fn random_generator(&mut self) -> Option<&mut Option<Rng>> {
        Some(&mut self.rng)
    }

    fn set_first_sample(&mut self, first: usize) {
        self.first_sample = first;
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        match (self.stddev, self.rate) {
            (Some(_), None) | (None, Some(_)) => Ok(single(self, inputs)?.clone()),
            _ => Err(self.shape_error(if self.rate.is_some() {
                "takes `rate` (GaussianDropout) or `stddev` (GaussianNoise), not both"
            } else {
                "needs `stddev`"
            })),
        }
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        self.output_shape(inputs)?;
        self.rng = Some(layer_rng(self.seed, rng));
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
        let (shift, spread) = match (self.stddev, self.rate) {
            (Some(stddev), _) => (0.0, stddev),
            (_, Some(rate)) if rate < 1.0 => (1.0, (rate / (1.0 - rate)).sqrt()),
            _ => (1.0, 0.0),
        };
        if !training || spread == 0.0 {
            return Ok((x.clone(), Saved::none()));
        }
        // Each sample's noise from its own generator, as Dropout's masks.
        let call_key = call_rng(&mut self.rng, self.seed).random::<u64>();
        let batch = x.shape().first().copied().unwrap_or(1).max(1);
        let per_sample = x.len() / batch;
        let mut noise = Vec::with_capacity(x.len());
        for sample in 0..batch {
            let mut generator = sample_rng(call_key, self.first_sample + sample);
            noise.extend((0..per_sample).map(|_| {
                (shift + spread * generator.sample::<f64, _>(rand_distr::StandardNormal)) as f32
            }));
        }
        let mut y = x.clone();
        if self.stddev.is_some() {
            y.data_mut()
                .iter_mut()
                .zip(&noise)
                .for_each(|(v, n)| *v += n);
            return Ok((y, Saved::none()));
        }
        y.data_mut()
            .iter_mut()
            .zip(&noise)
            .for_each(|(v, n)| *v *= n);
        Ok((y, Saved::new(Tensor::new(x.shape().to_vec(), noise)?)))
    }

    fn backward_impl(
        &self,
        _: &[&Tensor],
        _: &Tensor,
        saved: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        // Added noise saves nothing, so its gradient is dy itself.
        Ok(vec![times_saved(self, saved, dy)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spatial_dropout_drops_whole_channels_and_scales_the_rest() {
        let mut layer = SpatialDropout::new(2, 0.5).seed(3);
        let x = Tensor::full([2, 3, 4, 8], 1.0);
        let (y, saved) = layer.forward(&[&x], true).unwrap();
        for sample in y.data().chunks(3 * 4 * 8) {
            let first: Vec<f32> = sample[..8].to_vec();
            assert!(first.iter().all(|&v| v == 0.0 || v == 2.0), "{first:?}");
            assert!(sample.chunks(8).all(|pixel| pixel == first.as_slice()));
        }
        let dx = layer
            .backward_impl(&[&x], &y, &saved, &Tensor::full([2, 3, 4, 8], 1.0), &mut [])
            .unwrap();
        assert_eq!(dx[0].data(), y.data());
        assert_eq!(layer.apply(&[&x]).unwrap().data(), x.data());
    }

    #[test]
    fn alpha_dropout_keeps_selu_moments_in_training_only() {
        // SELU's fixed point: mean 0, variance 1.
        let mut rng = rng_from_seed(3);
        let data: Vec<f32> = (0..40000)
            .map(|_| {
                let u: f64 = rng.random();
                let v: f64 = rng.random();
                ((-2.0 * u.max(1e-12).ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect();
        let x = Tensor::new([40000], data).unwrap();
        let mut layer = Dropout::alpha_dropout(0.3).seed(1);
        layer
            .build(&[vec![Some(40000)]], &mut rng_from_seed(0))
            .unwrap();
        assert_eq!(layer.apply(&[&x]).unwrap().data(), x.data());
        let (y, saved) = layer.forward(&[&x], true).unwrap();
        let n = y.len() as f64;
        let mean = y.data().iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = y
            .data()
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
        let dx = layer
            .backward_impl(&[&x], &y, &saved, &Tensor::full([40000], 1.0), &mut [])
            .unwrap()
            .swap_remove(0);
        let a = dx.data().iter().copied().fold(0f32, f32::max);
        let dropped = dx.data().iter().filter(|&&d| d == 0.0).count() as f64 / n;
        assert!((dropped - 0.3).abs() < 0.02, "{dropped}");
        assert!(dx.data().iter().all(|&d| d == 0.0 || d == a));
        assert_eq!(layer.class_name(), "AlphaDropout");
    }

    #[test]
    fn gaussian_noise_and_dropout_have_keras_moments_in_training_only() {
        let x = Tensor::full([4000], 2.0);
        let mut noise = GaussianNoise::additive(0.5);
        noise.seed = Some(1);
        let (y, _) = noise.forward(&[&x], true).unwrap();
        let mean = y.data().iter().map(|&v| f64::from(v)).sum::<f64>() / 4000.0;
        let var = y
            .data()
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / 4000.0;
        assert!(
            (mean - 2.0).abs() < 0.05 && (var.sqrt() - 0.5).abs() < 0.03,
            "{mean} {var}"
        );
        let mut dropout = GaussianNoise::multiplicative(0.2);
        let (y, saved) = dropout.forward(&[&x], true).unwrap();
        let mean = y.data().iter().map(|&v| f64::from(v)).sum::<f64>() / 4000.0;
        let var = y
            .data()
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / 4000.0;
        // x · N(1, 0.2 / 0.8): mean 2, standard deviation 2 · 0.5.
        assert!(
            (mean - 2.0).abs() < 0.1 && (var.sqrt() - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
        let dx = dropout
            .backward_impl(&[&x], &y, &saved, &Tensor::full([4000], 2.0), &mut [])
            .unwrap();
        assert_eq!(dx[0].data(), y.data());
        assert_eq!(dropout.apply(&[&x]).unwrap().data(), x.data());
    }
}
