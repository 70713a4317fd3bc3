//! Activation layers: Activation (any named function), ReLU with Keras's max_value,
//! negative_slope and threshold, LeakyReLU, PReLU (a learned slope per position) and
//! Softmax along any axis.

use super::config::ConfigReader;
use super::conv::activation_arg;
use super::{single, Layer, LayerBase, Saved, Shape};
use crate::activations::{self, ActivationFn};
use crate::error::Result;
use crate::initializers::{Initializer, Rng};
use crate::tensor::Tensor;
use serde_json::{json, Map, Value};

/// Applies `f` to every element of the single input, keeping its shape.
fn map_input(layer: &dyn Layer, inputs: &[&Tensor], f: impl Fn(f32) -> f32) -> Result<Tensor> {
    let x = *single(layer, inputs)?;
    layer.output_shape(&[super::shape_of(x)])?;
    let mut y = x.clone();
    y.map_inplace(f);
    Ok(y)
}

/// dy times `f'(x)`, elementwise.
fn chain(x: &Tensor, dy: &Tensor, derivative: impl Fn(f32) -> f32) -> Tensor {
    let mut dx = dy.clone();
    dx.data_mut()
        .iter_mut()
        .zip(x.data())
        .for_each(|(d, &x)| *d *= derivative(x));
    dx
}

/// Keras's `Activation(name)`.
#[derive(Clone, Debug)]
pub struct Activation {
    base: LayerBase,
    pub activation: ActivationFn,
}

impl Activation {
    pub fn new(name: &str) -> Self {
        let mut base = LayerBase::new("activation");
        let activation = activation_arg(&mut base, name);
        Activation { base, activation }
    }

    pub(super) fn from_config(c: &ConfigReader) -> Result<Self> {
        if c.get("activation").is_none() {
            return Err(c.error("activation", "missing"));
        }
        Ok(Activation {
            base: c.base()?,
            activation: c.activation("activation")?,
        })
    }
}

impl Layer for Activation {
    layer_common!("Activation");

    fn config_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("activation".into(), json!(self.activation.name()));
        m
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        self.base.check(self.class_name())?;
        Ok(single(self, inputs)?.clone())
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let mut y = map_input(self, inputs, |v| v)?;
        self.activation.apply_inplace(&mut y);
        Ok(y)
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let mut dx = dy.clone();
        let axis = output.shape().last().copied().unwrap_or(1);
        self.activation
            .backward_inplace(inputs[0].data(), output.data(), dx.data_mut(), axis);
        Ok(vec![dx])
    }
}

/// Keras's `ReLU(max_value=None, negative_slope=0.0, threshold=0.0)`:
/// `x` above the threshold (capped at max_value), `negative_slope · (x − threshold)` below.
#[derive(Clone, Debug)]
pub struct ReLU {
    base: LayerBase,
    pub max_value: Option<f64>,
    pub negative_slope: f64,
    pub threshold: f64,
}

impl Default for ReLU {
    fn default() -> Self {
        Self::new()
    }
}

impl ReLU {
    pub fn new() -> Self {
        ReLU {
            base: LayerBase::new("re_lu"),
            max_value: None,
            negative_slope: 0.0,
            threshold: 0.0,
        }
    }

    pub fn max_value(mut self, max_value: f64) -> Self {
        self.max_value = Some(max_value);
        self
    }

    pub fn negative_slope(mut self, slope: f64) -> Self {
        self.negative_slope = slope;
        self
    }

    pub fn threshold(mut self, threshold: f64) -> Self {
        self.threshold = threshold;
        self
    }

    pub(super) fn from_config(c: &ConfigReader) -> Result<Self> {
        let layer = ReLU {
            base: c.base()?,
            max_value: c.opt_f64("max_value")?,
            negative_slope: c.f64("negative_slope", 0.0)?,
            threshold: c.f64("threshold", 0.0)?,
        };
        if let Some(message) = layer.invalid_arguments() {
            return Err(c.error("max_value/negative_slope", message));
        }
        Ok(layer)
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

    fn config_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("max_value".into(), json!(self.max_value));
        m.insert("negative_slope".into(), json!(self.negative_slope));
        m.insert("threshold".into(), json!(self.threshold));
        m
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        if let Some(message) = self.invalid_arguments() {
            return Err(self.shape_error(&message));
        }
        Ok(single(self, inputs)?.clone())
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        map_input(self, inputs, |x| self.value(x))
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        Ok(vec![chain(inputs[0], dy, |x| self.derivative(x))])
    }
}

/// Keras's `LeakyReLU(negative_slope=0.3)`.
#[derive(Clone, Debug)]
pub struct LeakyReLU {
    base: LayerBase,
    pub negative_slope: f64,
}

impl Default for LeakyReLU {
    fn default() -> Self {
        Self::new()
    }
}

impl LeakyReLU {
    pub fn new() -> Self {
        LeakyReLU {
            base: LayerBase::new("leaky_re_lu"),
            negative_slope: 0.3,
        }
    }

    pub fn negative_slope(mut self, slope: f64) -> Self {
        self.negative_slope = slope;
        self
    }

    pub(super) fn from_config(c: &ConfigReader) -> Result<Self> {
        Ok(LeakyReLU {
            base: c.base()?,
            negative_slope: c.f64("negative_slope", 0.3)?,
        })
    }
}

impl Layer for LeakyReLU {
    layer_common!("LeakyReLU");

    fn config_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("negative_slope".into(), json!(self.negative_slope));
        m
    }

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
#[derive(Clone, Debug)]
pub struct PReLU {
    base: LayerBase,
    pub alpha_initializer: Initializer,
    pub shared_axes: Option<Vec<i64>>,
}

impl Default for PReLU {
    fn default() -> Self {
        Self::new()
    }
}

impl PReLU {
    pub fn new() -> Self {
        PReLU {
            base: LayerBase::new("p_re_lu"),
            alpha_initializer: Initializer::zeros(),
            shared_axes: None,
        }
    }

    pub fn shared_axes(mut self, axes: &[i64]) -> Self {
        self.shared_axes = Some(axes.to_vec());
        self
    }

    pub(super) fn from_config(c: &ConfigReader) -> Result<Self> {
        c.unsupported_unless_null(&["alpha_regularizer", "alpha_constraint"])?;
        let shared_axes = match c.get("shared_axes") {
            Some(v) if v.is_i64() => Some(vec![v.as_i64().expect("checked")]),
            _ => c.opt_int_list("shared_axes")?,
        };
        Ok(PReLU {
            base: c.base()?,
            alpha_initializer: c.initializer("alpha_initializer", Initializer::zeros())?,
            shared_axes,
        })
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

    fn config_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(
            "alpha_initializer".into(),
            self.alpha_initializer.to_config(),
        );
        m.insert("alpha_regularizer".into(), Value::Null);
        m.insert("alpha_constraint".into(), Value::Null);
        m.insert("shared_axes".into(), json!(self.shared_axes));
        m
    }

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
#[derive(Clone, Debug)]
pub struct Softmax {
    base: LayerBase,
    pub axis: i64,
}

impl Default for Softmax {
    fn default() -> Self {
        Self::new()
    }
}

impl Softmax {
    pub fn new() -> Self {
        Softmax {
            base: LayerBase::new("softmax"),
            axis: -1,
        }
    }

    pub fn axis(mut self, axis: i64) -> Self {
        self.axis = axis;
        self
    }

    pub(super) fn from_config(c: &ConfigReader) -> Result<Self> {
        let axis = match c.get("axis") {
            Some(Value::Array(items)) if items.len() == 1 => items[0].as_i64(),
            Some(v) => v.as_i64(),
            None => Some(-1),
        }
        .ok_or_else(|| c.error("axis", "expected one integer axis"))?;
        Ok(Softmax {
            base: c.base()?,
            axis,
        })
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

    fn config_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("axis".into(), json!(self.axis));
        m
    }

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
