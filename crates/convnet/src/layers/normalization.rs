//! Normalization, the preprocessing layer: `(x − mean) / √variance` per position along
//! `axis` (by default per channel), with the mean and variance given in the config or
//! learned from data by [`Normalization::adapt`] (then they are the layer's non-trainable
//! weights `mean`, `variance` and `count`, as Keras stores them). With `invert` it maps
//! back: `mean + x · √variance`. EfficientNet and ConvNeXt start with one.

use super::declare::{self, Axes};
use super::{infer, single, Layer, LayerBase, Saved, Shape};
use crate::error::{Error, Result};
use crate::initializers::{Initializer, Rng};
use crate::kernels::norm::layer::subset_indices;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Keras's floor on the standard deviation (`backend.epsilon()`), so a zero variance
/// never divides by zero.
const MIN_STD: f32 = 1e-7;

/// Keras's `Normalization(axis=-1, mean=None, variance=None, invert=False)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `axis`: the axes that keep their own statistics; default `[-1]`.
    #[serde(default = "declare::last_axis_list")]
    pub axis: Axes,
    /// Keras's `invert`: map normalised values back; default false.
    #[serde(default)]
    pub invert: bool,
    /// Keras's `mean`: a number or nested lists (broadcast to the kept axes from the
    /// right); default None (learned by `adapt`, held as a weight).
    #[serde(default)]
    pub mean: Option<Value>,
    /// Keras's `variance`, shaped as `mean`.
    #[serde(default)]
    pub variance: Option<Value>,
}

impl Default for Normalization {
    fn default() -> Self {
        Self::new()
    }
}

/// Nested JSON lists of numbers as (shape, values), or a message saying what is wrong.
fn nested_numbers(value: &Value) -> std::result::Result<(Vec<usize>, Vec<f64>), String> {
    match value {
        Value::Array(items) => {
            let parts = items
                .iter()
                .map(nested_numbers)
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let inner = parts.first().map(|(s, _)| s.clone()).unwrap_or_default();
            if parts.iter().any(|(s, _)| *s != inner) {
                return Err("its nested lists differ in length".into());
            }
            let mut shape = vec![items.len()];
            shape.extend(inner);
            Ok((shape, parts.into_iter().flat_map(|(_, v)| v).collect()))
        }
        v => v
            .as_f64()
            .map(|x| (vec![], vec![x]))
            .ok_or_else(|| format!("expected numbers, found {v}")),
    }
}

impl Normalization {
    /// A Normalization to be adapted to data, per channel (Keras's defaults).
    pub fn new() -> Self {
        declare::defaults("normalization", json!({}))
    }

    /// A Normalization with a fixed mean and variance, one value or one per position of
    /// the kept axes.
    pub fn with_statistics(mean: Vec<f64>, variance: Vec<f64>) -> Self {
        Normalization {
            mean: Some(json!(mean)),
            variance: Some(json!(variance)),
            ..Self::new()
        }
    }

    /// Sets `axis`, the axes that keep their own statistics (Keras's default `[-1]`).
    pub fn axis(mut self, axis: Axes) -> Self {
        self.axis = axis;
        self
    }

    /// Sets `invert`: map normalised values back to the data's scale.
    pub fn invert(mut self, invert: bool) -> Self {
        self.invert = invert;
        self
    }

    fn kept_axes(&self, rank: usize) -> Result<Vec<usize>> {
        self.axis.resolve(rank).map_err(|m| self.shape_error(&m))
    }

    /// The statistics given in the config, broadcast to the kept axes' shape `kept`, as
    /// Keras aligns them (from the right); None when they are weights.
    fn given(&self, kept: &[usize]) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
        let (mean, variance) = match (&self.mean, &self.variance) {
            (None, None) => return Ok(None),
            (Some(m), Some(v)) => (m, v),
            _ => return Err(self.shape_error("mean and variance must be given together")),
        };
        let read = |what: &str, value: &Value| {
            let (shape, values) =
                nested_numbers(value).map_err(|m| self.shape_error(&format!("{what}: {m}")))?;
            if shape.len() > kept.len() {
                return Err(self.shape_error(&format!(
                    "{what} has rank {} but axis keeps {} axes",
                    shape.len(),
                    kept.len()
                )));
            }
            // Align from the right: missing leading axes, and axes of size 1, broadcast.
            let offset = kept.len() - shape.len();
            for (d, &n) in shape.iter().enumerate() {
                if n != 1 && n != kept[offset + d] {
                    return Err(self.shape_error(&format!(
                        "{what} of shape {shape:?} does not broadcast to the kept axes {kept:?}"
                    )));
                }
            }
            let axes: Vec<usize> = (0..kept.len())
                .filter(|&d| d >= offset && shape[d - offset] != 1)
                .collect();
            Ok(subset_indices(kept, &axes)
                .into_iter()
                .map(|i| values[i] as f32)
                .collect::<Vec<f32>>())
        };
        let (m, v) = (read("mean", mean)?, read("variance", variance)?);
        if let Some(bad) = v.iter().find(|v| v.is_nan() || **v < 0.0) {
            return Err(self.shape_error(&format!("variance holds {bad}, which is not ≥ 0")));
        }
        Ok(Some((m, v)))
    }

    /// The mean and the standard deviation (floored at Keras's epsilon) the layer uses
    /// for an input of `shape`, one per position of the kept axes (one per channel by
    /// default), whether given in the config or held as weights.
    pub fn statistics(&self, shape: &[usize]) -> Result<(Vec<f32>, Vec<f32>)> {
        let kept: Vec<usize> = self
            .kept_axes(shape.len())?
            .iter()
            .map(|&a| shape[a])
            .collect();
        let (mean, variance) = match self.given(&kept)? {
            Some(stats) => stats,
            None => {
                super::conv::require_built(self)?;
                let w = &self.base.weights;
                (w[0].value.data().to_vec(), w[1].value.data().to_vec())
            }
        };
        let std = variance.iter().map(|v| v.sqrt().max(MIN_STD)).collect();
        Ok((mean, std))
    }

    /// Learns the mean and (biased) variance of each kept position from `data`, a batch
    /// of samples, as Keras's `adapt` does; the layer must not have been given them.
    pub fn adapt(&mut self, data: &Tensor) -> Result<()> {
        if self.mean.is_some() {
            return Err(Error::invalid(
                "data",
                format!(
                    "layer '{}' was given its mean and variance; adapt learns them only when they are not",
                    self.name()
                ),
            ));
        }
        let shape: Vec<Shape> = vec![data.shape().iter().map(|&d| Some(d)).collect()];
        if self.base.weights.is_empty() {
            self.build(&shape, &mut crate::initializers::rng_from_seed(0))?;
        }
        let kept = self.kept_axes(data.rank())?;
        let slot = subset_indices(data.shape(), &kept);
        let slots = self.base.weights[0].value.len();
        if data.is_empty() || self.output_shape(&shape).is_err() {
            return Err(self.shape_error("adapt needs a non-empty batch of the built shape"));
        }
        let count = data.len() / slots;
        let (mut sum, mut squares) = (vec![0.0f64; slots], vec![0.0f64; slots]);
        for (&v, &s) in data.data().iter().zip(&slot) {
            sum[s] += f64::from(v);
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / count as f64).collect();
        for (&v, &s) in data.data().iter().zip(&slot) {
            squares[s] += (f64::from(v) - mean[s]).powi(2);
        }
        let w = &mut self.base.weights;
        w[0].value = Tensor::new(
            w[0].value.shape().to_vec(),
            mean.iter().map(|&m| m as f32).collect(),
        )?;
        w[1].value = Tensor::new(
            w[1].value.shape().to_vec(),
            squares.iter().map(|&s| (s / count as f64) as f32).collect(),
        )?;
        w[2].value = Tensor::new(Vec::<usize>::new(), vec![count as f32])?;
        Ok(())
    }
}

impl Layer for Normalization {
    layer_common!("Normalization");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let shape = single(self, inputs)?;
        let kept = self.kept_axes(shape.len())?;
        let sizes = kept
            .iter()
            .map(|&a| shape[a])
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| self.shape_error("the sizes of the kept axes must be known"))?;
        self.given(&sizes)?;
        if let Some(w) = self.base.weights.first() {
            if w.value.shape() != sizes {
                return Err(self.shape_error(&format!(
                    "was built for kept axes of sizes {:?} but the input has {sizes:?}",
                    w.value.shape()
                )));
            }
        }
        Ok(shape.clone())
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        self.base.weights.clear();
        self.output_shape(inputs)?;
        if self.mean.is_some() {
            return Ok(());
        }
        let kept: Vec<usize> = self
            .kept_axes(inputs[0].len())?
            .iter()
            .map(|&a| inputs[0][a].expect("checked by output_shape"))
            .collect();
        let b = &mut self.base;
        b.add_weight("mean", &kept, &Initializer::zeros(), false, rng)?;
        b.add_weight("variance", &kept, &Initializer::ones(), false, rng)?;
        b.add_weight("count", &[], &Initializer::zeros(), false, rng)?;
        b.weights[2].integer = true;
        Ok(())
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        infer(self, &[x])?;
        let (mean, std) = self.statistics(x.shape())?;
        let invert = self.invert;
        let map = |v: f32, m: f32, s: f32| if invert { m + v * s } else { (v - m) / s };
        let mut y = x.clone();
        let kept = self.kept_axes(x.rank())?;
        if kept == [x.rank() - 1] {
            // Per channel, the usual case: whole rows of channels, vectorised.
            for row in y.data_mut().chunks_mut(mean.len().max(1)) {
                for ((v, &m), &s) in row.iter_mut().zip(&mean).zip(&std) {
                    *v = map(*v, m, s);
                }
            }
        } else {
            let slot = subset_indices(x.shape(), &kept);
            for (v, &s) in y.data_mut().iter_mut().zip(&slot) {
                *v = map(*v, mean[s], std[s]);
            }
        }
        Ok(y)
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let x = *single(self, inputs)?;
        let (_, std) = self.statistics(x.shape())?;
        let slot = subset_indices(x.shape(), &self.kept_axes(x.rank())?);
        let mut dx = dy.clone();
        for (d, &s) in dx.data_mut().iter_mut().zip(&slot) {
            *d = if self.invert {
                *d * std[s]
            } else {
                *d / std[s]
            };
        }
        Ok(vec![dx])
    }
}
