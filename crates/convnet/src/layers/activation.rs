//! Activation layers: Activation (any named function), ReLU with Keras's max_value,
//! negative_slope and threshold, LeakyReLU, PReLU (a learned slope per position) and
//! Softmax along any axis.

use super::declare;
use super::{single, Layer, LayerBase, Saved, Shape};
use crate::activations::{self, ActivationFn};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::initializers::{Initializer, Rng};
use crate::kernels::elementwise::copy_then;
use crate::regularizers::Regularizer;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Applies `f` to every element of the single input, keeping its shape.
fn map_input(
    layer: &dyn Layer,
    inputs: &[&Tensor],
    f: impl Fn(f32) -> f32 + Sync + Send,
) -> Result<Tensor> {
    let x = *single(layer, inputs)?;
    layer.output_shape(&[super::shape_of(x)])?;
    let mut y = Tensor::for_overwrite(x.shape());
    copy_then(x.data(), y.data_mut(), 1, |_, chunk| {
        chunk.iter_mut().for_each(|v| *v = f(*v))
    });
    Ok(y)
}

/// The single input through an elementwise or row-wise activation function.
fn activate_input(layer: &dyn Layer, inputs: &[&Tensor], f: ActivationFn) -> Result<Tensor> {
    let x = *single(layer, inputs)?;
    layer.output_shape(&[super::shape_of(x)])?;
    let mut y = Tensor::for_overwrite(x.shape());
    f.apply_to(x.data(), y.data_mut(), axis_len(x));
    Ok(y)
}

/// dL/dx through `f`, from the layer's input `x`, output `y` and `dy`: `dy` itself where
/// the model applied `f` ahead ([`Saved::activation_applied`]).
fn activation_gradient(
    f: ActivationFn,
    x: &Tensor,
    y: &Tensor,
    saved: &Saved,
    dy: &Tensor,
) -> Tensor {
    if saved.is_activation_applied() {
        return dy.clone();
    }
    let mut dx = Tensor::for_overwrite(dy.shape());
    f.backward_to(x.data(), y.data(), dy.data(), dx.data_mut(), axis_len(y));
    dx
}

/// The length of a tensor's last axis, along which softmax-like functions run.
fn axis_len(t: &Tensor) -> usize {
    t.shape().last().copied().unwrap_or(1)
}

/// dy times `f'(x)`, elementwise.
fn chain(x: &Tensor, dy: &Tensor, derivative: impl Fn(f32) -> f32 + Sync + Send) -> Tensor {
    let mut dx = Tensor::for_overwrite(dy.shape());
    let x = x.data();
    copy_then(dy.data(), dx.data_mut(), 1, |start, chunk| {
        let x = &x[start..][..chunk.len()];
        chunk
            .iter_mut()
            .zip(x)
            .for_each(|(d, &x)| *d *= derivative(x))
    });
    dx
}

/// Keras's `Activation(name)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activation {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `activation`: the function applied to every element; default `linear`.
    pub activation: ActivationFn,
}

impl Activation {
    /// An `Activation` layer applying `activation`, like `keras.layers.Activation("relu")`.
    pub fn new(activation: ActivationFn) -> Self {
        Activation {
            activation,
            ..declare::defaults("activation", json!({"activation": "linear"}))
        }
    }
}

impl Layer for Activation {
    layer_common!("Activation");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        Ok(single(self, inputs)?.clone())
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        activate_input(self, inputs, self.activation)
    }

    fn elementwise_activation(&self) -> Option<ActivationFn> {
        let along_an_axis = matches!(
            self.activation,
            ActivationFn::Softmax | ActivationFn::LogSoftmax
        );
        (!along_an_axis).then_some(self.activation)
    }

    fn output_activation(&self) -> Option<ActivationFn> {
        Some(self.activation).filter(|f| !f.needs_input())
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        saved: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        Ok(vec![activation_gradient(
            self.activation,
            inputs[0],
            output,
            saved,
            dy,
        )])
    }
}

/// Keras's `ReLU(max_value=None, negative_slope=0.0, threshold=0.0)`:
/// `x` above the threshold (capped at max_value), `negative_slope · (x − threshold)` below.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReLU {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `max_value`: the cap on the output; default None (no cap).
    #[serde(deserialize_with = "declare::opt_non_negative", default)]
    pub max_value: Option<f64>,
    /// Keras's `negative_slope`: the slope below the threshold; default 0.0.
    #[serde(deserialize_with = "declare::non_negative", default)]
    pub negative_slope: f64,
    /// Keras's `threshold`: below it the output is `negative_slope · (x − threshold)`;
    /// default 0.0.
    #[serde(default)]
    pub threshold: f64,
}

impl Default for ReLU {
    fn default() -> Self {
        Self::new()
    }
}

impl ReLU {
    /// A `ReLU` with Keras's defaults: no cap, slope 0, threshold 0, i.e. max(x, 0).
    pub fn new() -> Self {
        declare::defaults("re_lu", json!({}))
    }

    /// Sets `max_value`, the cap on the output (Keras's default None).
    pub fn max_value(mut self, max_value: f64) -> Self {
        self.max_value = Some(max_value);
        self
    }

    /// Sets `negative_slope` below the threshold (Keras's default 0.0).
    pub fn negative_slope(mut self, slope: f64) -> Self {
        self.negative_slope = slope;
        self
    }

    /// Sets `threshold` (Keras's default 0.0).
    pub fn threshold(mut self, threshold: f64) -> Self {
        self.threshold = threshold;
        self
    }

    fn invalid_arguments(&self) -> Option<String> {
        if self.max_value.is_some_and(|m| m < 0.0) {
            return Some(format!("max_value must be ≥ 0, got {:?}", self.max_value));
        }
        (self.negative_slope < 0.0)
            .then(|| format!("negative_slope must be ≥ 0, got {}", self.negative_slope))
    }

    fn value(&self, x: f32) -> f32 {
        let (th, slope) = (self.threshold as f32, self.negative_slope as f32);
        let mut pos = if x > th { x } else { 0.0 };
        if let Some(max) = self.max_value {
            pos = pos.clamp(0.0, max as f32);
        }
        pos - slope * (th - x).max(0.0)
    }

    fn derivative(&self, x: f32) -> f32 {
        let (th, slope) = (self.threshold as f32, self.negative_slope as f32);
        let passes = x > th && self.max_value.is_none_or(|m| x > 0.0 && x < m as f32);
        (if passes { 1.0 } else { 0.0 }) + if x < th { slope } else { 0.0 }
    }
}

impl Layer for ReLU {
    layer_common!("ReLU");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        if let Some(message) = self.invalid_arguments() {
            return Err(self.shape_error(&message));
        }
        Ok(single(self, inputs)?.clone())
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        match self.elementwise_activation() {
            Some(f) => activate_input(self, inputs, f),
            None => map_input(self, inputs, |x| self.value(x)),
        }
    }

    fn output_activation(&self) -> Option<ActivationFn> {
        self.elementwise_activation()
    }

    /// The plain `relu` and `relu6` that most networks use (their vectorised loops).
    fn elementwise_activation(&self) -> Option<ActivationFn> {
        if self.negative_slope != 0.0 || self.threshold != 0.0 {
            return None;
        }
        match self.max_value {
            None => Some(ActivationFn::Relu),
            Some(6.0) => Some(ActivationFn::Relu6),
            Some(_) => None,
        }
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        saved: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        match self.elementwise_activation() {
            // From the output alone, as the Activation layer's: the training pass may
            // have written the output over the input.
            Some(f) => Ok(vec![activation_gradient(f, inputs[0], output, saved, dy)]),
            None => Ok(vec![chain(inputs[0], dy, |x| self.derivative(x))]),
        }
    }
}

/// Keras's `LeakyReLU(negative_slope=0.3)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeakyReLU {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `negative_slope`: the output is `negative_slope · x` for x < 0; default 0.3.
    /// tf.keras 2 called it `alpha`; Keras 3 reads that name too.
    #[serde(default = "leaky_slope", alias = "alpha")]
    pub negative_slope: f64,
}

/// LeakyReLU's default slope (the `leaky_relu` function's is 0.2).
fn leaky_slope() -> f64 {
    0.3
}

impl Default for LeakyReLU {
    fn default() -> Self {
        Self::new()
    }
}

impl LeakyReLU {
    /// A `LeakyReLU` with Keras's default slope 0.3.
    pub fn new() -> Self {
        declare::defaults("leaky_re_lu", json!({}))
    }

    /// Sets `negative_slope` (Keras's default 0.3).
    pub fn negative_slope(mut self, slope: f64) -> Self {
        self.negative_slope = slope;
        self
    }
}

impl Layer for LeakyReLU {
    layer_common!("LeakyReLU");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        Ok(single(self, inputs)?.clone())
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let slope = self.negative_slope as f32;
        map_input(self, inputs, |x| if x >= 0.0 { x } else { slope * x })
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let slope = self.negative_slope as f32;
        Ok(vec![chain(inputs[0], dy, |x| {
            if x >= 0.0 {
                1.0
            } else {
                slope
            }
        })])
    }
}

/// Keras's `PReLU`: `x` for x ≥ 0, `alpha · x` below, with a learned `alpha` of the
/// per-sample input shape, shared (size 1) along `shared_axes`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PReLU {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `alpha_initializer`: how the learned slopes start; default `zeros` (a plain
    /// ReLU).
    #[serde(default = "Initializer::zeros")]
    pub alpha_initializer: Initializer,
    /// Keras's `alpha_regularizer`: its penalty joins the training loss.
    #[serde(default)]
    pub alpha_regularizer: Option<Regularizer>,
    /// Keras's `alpha_constraint`: applied after each optimizer step.
    #[serde(default)]
    pub alpha_constraint: Option<Constraint>,
    /// Keras's `shared_axes`: the axes (1 = the first after the batch) along which one
    /// slope is shared; default None.
    #[serde(deserialize_with = "declare::opt_int_list", default)]
    pub shared_axes: Option<Vec<i64>>,
}

impl Default for PReLU {
    fn default() -> Self {
        Self::new()
    }
}

impl PReLU {
    /// A `PReLU` with Keras's defaults: slopes initialised to zeros, none shared.
    pub fn new() -> Self {
        declare::defaults("p_re_lu", json!({}))
    }

    /// Sets `shared_axes`, e.g. `&[1, 2]` for one slope per channel of an image (Keras's
    /// default None).
    pub fn shared_axes(mut self, axes: &[i64]) -> Self {
        self.shared_axes = Some(axes.to_vec());
        self
    }

    /// alpha's shape for an input shape: the per-sample shape with shared axes set to 1.
    fn alpha_shape(&self, input: &Shape) -> Result<Vec<usize>> {
        let mut shape: Vec<Option<usize>> = input[1..].to_vec();
        for &axis in self.shared_axes.iter().flatten() {
            let slot = usize::try_from(axis - 1)
                .ok()
                .filter(|&a| a < shape.len())
                .ok_or_else(|| {
                    self.shape_error(&format!(
                        "shared axis {axis} is out of range for input {}",
                        super::format_shape(input)
                    ))
                })?;
            shape[slot] = Some(1);
        }
        shape
            .into_iter()
            .map(|d| {
                d.ok_or_else(|| self.shape_error("every non-shared axis must have a known size"))
            })
            .collect()
    }

    /// Index into alpha for each flat input index within one sample.
    fn alpha_index(alpha_shape: &[usize], sample_shape: &[usize], i: usize) -> usize {
        let (mut rest, mut idx, mut stride) = (i, 0, 1);
        for axis in (0..sample_shape.len()).rev() {
            let coord = rest % sample_shape[axis];
            rest /= sample_shape[axis];
            if alpha_shape[axis] != 1 {
                idx += coord * stride;
            }
            stride *= alpha_shape[axis];
        }
        idx
    }
}

impl Layer for PReLU {
    layer_common!("PReLU");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let shape = single(self, inputs)?;
        if shape.len() < 2 {
            return Err(self.shape_error("expects an input of rank 2 or more"));
        }
        let alpha = self.alpha_shape(shape)?;
        if let Some(w) = self.base.weights.first() {
            if w.value.shape() != alpha.as_slice() {
                return Err(self.shape_error(&format!(
                    "was built for alpha of shape {:?}, which does not fit input {}",
                    w.value.shape(),
                    super::format_shape(shape)
                )));
            }
        }
        Ok(shape.clone())
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        self.base.weights.clear();
        self.output_shape(inputs)?;
        let shape = self.alpha_shape(&inputs[0])?;
        self.base
            .add_weight("alpha", &shape, &self.alpha_initializer.clone(), true, rng)?;
        Ok(())
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        self.output_shape(&[super::shape_of(x)])?;
        super::conv::require_built(self)?;
        let alpha = &self.base.weights[0].value;
        let sample = &x.shape()[1..];
        let per_sample: usize = sample.iter().product();
        let mut y = x.clone();
        for (i, v) in y.data_mut().iter_mut().enumerate() {
            if *v < 0.0 {
                *v *= alpha.data()[Self::alpha_index(alpha.shape(), sample, i % per_sample)];
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
        dweights: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let x = inputs[0];
        let alpha = &self.base.weights[0].value;
        let sample = &x.shape()[1..];
        let per_sample: usize = sample.iter().product();
        let mut dx = dy.clone();
        let dalpha = dweights[0].data_mut();
        for (i, d) in dx.data_mut().iter_mut().enumerate() {
            let xv = x.data()[i];
            if xv < 0.0 {
                let a = Self::alpha_index(alpha.shape(), sample, i % per_sample);
                dalpha[a] += *d * xv;
                *d *= alpha.data()[a];
            }
        }
        Ok(vec![dx])
    }
}

/// Keras's `Softmax(axis=-1)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Softmax {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `axis`: the axis the output sums to 1 along; default -1 (the last).
    #[serde(deserialize_with = "declare::one_axis", default = "declare::last_axis")]
    pub axis: i64,
}

impl Default for Softmax {
    fn default() -> Self {
        Self::new()
    }
}

impl Softmax {
    /// A `Softmax` along the last axis (Keras's default `axis=-1`).
    pub fn new() -> Self {
        declare::defaults("softmax", json!({}))
    }

    /// Sets `axis` (Keras's default -1).
    pub fn axis(mut self, axis: i64) -> Self {
        self.axis = axis;
        self
    }

    /// (axis length, inner) for a concrete shape.
    fn layout(&self, shape: &[usize]) -> Result<(usize, usize)> {
        let rank = shape.len() as i64;
        let axis = if self.axis < 0 {
            rank + self.axis
        } else {
            self.axis
        };
        if axis < 0 || axis >= rank {
            return Err(self.shape_error(&format!(
                "axis {} is out of range for rank {rank}",
                self.axis
            )));
        }
        let axis = axis as usize;
        Ok((shape[axis], shape[axis + 1..].iter().product()))
    }
}

impl Layer for Softmax {
    layer_common!("Softmax");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let shape = single(self, inputs)?;
        let rank = shape.len() as i64;
        if !(-rank..rank).contains(&self.axis) {
            return Err(self.shape_error(&format!(
                "axis {} is out of range for rank {rank}",
                self.axis
            )));
        }
        Ok(shape.clone())
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let mut y = map_input(self, inputs, |v| v)?;
        let (len, inner) = self.layout(y.shape())?;
        activations::softmax_inplace(y.data_mut(), len, inner);
        Ok(y)
    }

    fn backward_impl(
        &self,
        _: &[&Tensor],
        output: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let (len, inner) = self.layout(output.shape())?;
        let mut dx = dy.clone();
        activations::softmax_backward_inplace(output.data(), dx.data_mut(), len, inner);
        Ok(vec![dx])
    }
}
