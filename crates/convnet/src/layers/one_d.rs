//! The 1-D layers (Conv1D, SeparableConv1D, DepthwiseConv1D, Conv1DTranspose, the 1-D
//! poolings, UpSampling1D, ZeroPadding1D, Cropping1D), computed by their 2-D twins on
//! `(batch, 1, steps, channels)`: a 1-D window is a 2-D window of height 1, and the
//! NHWC buffer of `(batch, steps, channels)` already is that image, so the same kernels
//! run with no copy.
//!
//! A 1-D layer's Keras config is its twin's with each spatial pair cut to its second
//! half (`kernel_size: [3]` for `[1, 3]`), so the twin's declaration reads and writes it
//! through [`Spatial`], the one table of what differs. The layer keeps its weights in
//! Keras's 1-D shapes (`(3, in, out)`, what files hold); each call lends them to a copy
//! of the twin in 2-D shape (`(1, 3, in, out)`, the same buffer). `padding="causal"`
//! (Conv1D only) is `valid` after `dilation · (kernel − 1)` zero steps in front.

use super::declare;
use super::{single, Layer, LayerBase, Saved, Shape, Weight};
use crate::error::{Error, Result};
use crate::initializers::Rng;
use crate::tensor::Tensor;
use serde_json::{json, Map, Value};

/// How a 1-D config field maps to its twin's.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Spatial {
    /// The same value (`filters`, `activation`, …).
    Same,
    /// One length (`3` or `[3]`) ⇄ the twin's pair `[1, 3]`.
    Length,
    /// Conv1DTranspose's `output_padding`, `[1]` ⇄ `[0, 1]` (none on the height).
    Extra,
    /// UpSampling1D's `size`, an integer ⇄ `[1, size]`.
    Factor,
    /// One (left, right) pair (`1` or `[1, 2]`) ⇄ `[[0, 0], [1, 2]]`.
    Sides,
    /// Conv1D's `padding`, whose `causal` the twin reads as `valid`.
    CausalPadding,
}

/// A 1-D Keras class: its twin's class and the 1-D config's fields, in Keras's order.
struct Class {
    name: &'static str,
    twin: &'static str,
    fields: &'static [(&'static str, Spatial)],
}

use Spatial::{CausalPadding, Extra, Factor, Length, Same, Sides};

const CLASSES: &[Class] = &[
    Class {
        name: "Conv1D",
        twin: "Conv2D",
        fields: &[
            ("filters", Same),
            ("kernel_size", Length),
            ("strides", Length),
            ("padding", CausalPadding),
            ("data_format", Same),
            ("dilation_rate", Length),
            ("groups", Same),
            ("activation", Same),
            ("use_bias", Same),
            ("kernel_initializer", Same),
            ("bias_initializer", Same),
            ("kernel_regularizer", Same),
            ("bias_regularizer", Same),
            ("activity_regularizer", Same),
            ("kernel_constraint", Same),
            ("bias_constraint", Same),
        ],
    },
    Class {
        name: "SeparableConv1D",
        twin: "SeparableConv2D",
        fields: &[
            ("depth_multiplier", Same),
            ("filters", Same),
            ("kernel_size", Length),
            ("strides", Length),
            ("padding", Same),
            ("data_format", Same),
            ("dilation_rate", Length),
            ("activation", Same),
            ("use_bias", Same),
            ("depthwise_initializer", Same),
            ("pointwise_initializer", Same),
            ("bias_initializer", Same),
            ("depthwise_regularizer", Same),
            ("pointwise_regularizer", Same),
            ("bias_regularizer", Same),
            ("activity_regularizer", Same),
            ("depthwise_constraint", Same),
            ("pointwise_constraint", Same),
            ("bias_constraint", Same),
        ],
    },
    Class {
        name: "DepthwiseConv1D",
        twin: "DepthwiseConv2D",
        fields: &[
            ("depth_multiplier", Same),
            ("kernel_size", Length),
            ("strides", Length),
            ("padding", Same),
            ("data_format", Same),
            ("dilation_rate", Length),
            ("activation", Same),
            ("use_bias", Same),
            ("depthwise_initializer", Same),
            ("bias_initializer", Same),
            ("depthwise_regularizer", Same),
            ("bias_regularizer", Same),
            ("activity_regularizer", Same),
            ("depthwise_constraint", Same),
            ("bias_constraint", Same),
        ],
    },
    Class {
        name: "Conv1DTranspose",
        twin: "Conv2DTranspose",
        fields: &[
            ("filters", Same),
            ("kernel_size", Length),
            ("strides", Length),
            ("padding", Same),
            ("output_padding", Extra),
            ("data_format", Same),
            ("dilation_rate", Length),
            ("activation", Same),
            ("use_bias", Same),
            ("kernel_initializer", Same),
            ("bias_initializer", Same),
            ("kernel_regularizer", Same),
            ("bias_regularizer", Same),
            ("activity_regularizer", Same),
            ("kernel_constraint", Same),
            ("bias_constraint", Same),
        ],
    },
    Class {
        name: "MaxPooling1D",
        twin: "MaxPooling2D",
        fields: POOLING,
    },
    Class {
        name: "AveragePooling1D",
        twin: "AveragePooling2D",
        fields: POOLING,
    },
    Class {
        name: "GlobalMaxPooling1D",
        twin: "GlobalMaxPooling2D",
        fields: GLOBAL_POOLING,
    },
    Class {
        name: "GlobalAveragePooling1D",
        twin: "GlobalAveragePooling2D",
        fields: GLOBAL_POOLING,
    },
    Class {
        name: "UpSampling1D",
        twin: "UpSampling2D",
        fields: &[("size", Factor)],
    },
    Class {
        name: "ZeroPadding1D",
        twin: "ZeroPadding2D",
        fields: &[("padding", Sides), ("data_format", Same)],
    },
    Class {
        name: "Cropping1D",
        twin: "Cropping2D",
        fields: &[("cropping", Sides)],
    },
];

const POOLING: &[(&str, Spatial)] = &[
    ("pool_size", Length),
    ("padding", Same),
    ("strides", Length),
    ("data_format", Same),
];

const GLOBAL_POOLING: &[(&str, Spatial)] = &[("data_format", Same), ("keepdims", Same)];

/// A 1-D or 3-D class's config with Keras's default filled in for the field whose 2-D
/// twins' default is not its own (ZeroPadding2D's would pad the dummy axis too,
/// MaxPooling2D's pool it, and Cropping2D crops nothing), so that a field left out means
/// what it means in Keras.
pub(super) fn with_keras_defaults(class: &str, config: &Value) -> Map<String, Value> {
    let mut config = config.as_object().cloned().unwrap_or_default();
    let default = match class {
        "ZeroPadding1D" | "ZeroPadding3D" => Some(("padding", 1)),
        "Cropping1D" | "Cropping3D" => Some(("cropping", 1)),
        "UpSampling1D" | "UpSampling3D" => Some(("size", 2)),
        "MaxPooling1D" | "AveragePooling1D" | "MaxPooling3D" | "AveragePooling3D" => {
            Some(("pool_size", 2))
        }
        _ => None,
    };
    if let Some((field, value)) = default {
        config.entry(field).or_insert(json!(value));
    }
    config
}

/// A 1-D layer: the Keras class, its 2-D twin (config only; no weights), and the
/// weights in Keras's 1-D shapes.
#[derive(Debug)]
pub struct OneD {
    class: &'static Class,
    base: LayerBase,
    twin: Box<dyn Layer>,
    causal: bool,
    /// The zero steps causal padding puts in front, `dilation · (kernel − 1)`: fixed by
    /// the config, so worked out once rather than from the twin's config at each call.
    causal_steps: usize,
}

impl Clone for OneD {
    fn clone(&self) -> Self {
        OneD {
            class: self.class,
            base: self.base.clone(),
            twin: self.twin.clone_layer(),
            causal: self.causal,
            causal_steps: self.causal_steps,
        }
    }
}

impl std::fmt::Debug for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// A 1-D length as a number: `3` or `[3]`.
fn length(value: &Value) -> Option<i64> {
    match value {
        Value::Array(items) if items.len() == 1 => declare::as_int(&items[0]),
        other => declare::as_int(other),
    }
}

impl OneD {
    /// A 1-D layer from its Keras class and config, as Keras would build it:
    /// `OneD::new("Conv1D", json!({"filters": 8, "kernel_size": 3, "padding": "causal"}))`.
    /// Fields left out take Keras's defaults.
    pub fn new(class: &str, config: Value) -> Result<Self> {
        if !CLASSES.iter().any(|c| c.name == class) {
            let known: Vec<&str> = CLASSES.iter().map(|c| c.name).collect();
            return Err(Error::invalid(
                "class",
                format!("'{class}' is not a 1-D layer class ({})", known.join(", ")),
            ));
        }
        Self::read_one_d(class, &config)
    }

    /// Reads a 1-D class from its Keras config (the registry's reader).
    pub(super) fn read(name: &str, config: &Value) -> Result<Box<dyn Layer>> {
        Ok(Box::new(Self::read_one_d(name, config)?))
    }

    fn read_one_d(name: &str, config: &Value) -> Result<Self> {
        let class = CLASSES
            .iter()
            .find(|c| c.name == name)
            .expect("the registry lists only CLASSES");
        let layer = config
            .get("name")
            .and_then(Value::as_str)
            .map_or_else(|| super::default_name(name), str::to_string);
        let error = |field: &str, message: String| Error::Config {
            layer: layer.clone(),
            class: name.into(),
            field: field.into(),
            message,
        };
        let mut twin_config = Map::new();
        let mut causal = false;
        for (key, value) in &with_keras_defaults(name, config) {
            if matches!(key.as_str(), "name" | "trainable" | "dtype") || value.is_null() {
                twin_config.insert(key.clone(), value.clone());
                continue;
            }
            let spatial = class
                .fields
                .iter()
                .find(|(field, _)| field == key)
                .map(|(_, s)| *s)
                .ok_or_else(|| error(key, format!("unknown field for {name}")))?;
            let bad = |what: &str| error(key, format!("expected {what}, found {value}"));
            let twin_value = match spatial {
                Same => value.clone(),
                Length | Factor => {
                    let n = length(value).ok_or_else(|| bad("a positive integer"))?;
                    json!([1, n])
                }
                Extra => {
                    let n = length(value).ok_or_else(|| bad("an integer"))?;
                    json!([0, n])
                }
                Sides => {
                    let (a, b) = match value {
                        Value::Array(items) if items.len() == 2 => {
                            (declare::as_int(&items[0]), declare::as_int(&items[1]))
                        }
                        one => (declare::as_int(one), declare::as_int(one)),
                    };
                    match (a, b) {
                        (Some(a), Some(b)) if a >= 0 && b >= 0 => json!([[0, 0], [a, b]]),
                        _ => return Err(bad("an integer or a (left, right) pair")),
                    }
                }
                CausalPadding if value == "causal" => {
                    causal = true;
                    json!("valid")
                }
                CausalPadding => value.clone(),
            };
            twin_config.insert(key.clone(), twin_value);
        }
        let mut twin = super::layer_from_config(class.twin, &Value::Object(twin_config))
            .map_err(|e| twin_config_error(e, class.twin, name))?;
        let base = std::mem::take(twin.base_mut());
        let causal_steps = if causal {
            let fields = twin.config_fields();
            let pair = |key: &str| fields[key].get(1).and_then(Value::as_u64).unwrap_or(1) as usize;
            pair("dilation_rate") * (pair("kernel_size") - 1)
        } else {
            0
        };
        Ok(OneD {
            class,
            base,
            twin,
            causal,
            causal_steps,
        })
    }

    /// The twin, named as this layer, holding this layer's weights in 2-D shape (the
    /// same buffers).
    fn lent_twin(&self) -> Result<Box<dyn Layer>> {
        let mut twin = self.twin.clone_layer();
        let mut base = self.base.clone();
        for w in &mut base.weights {
            w.value = w.value.clone().reshape(twin_shape(w.value.shape()))?;
        }
        *twin.base_mut() = base;
        Ok(twin)
    }

    /// `(batch, steps, channels)` → `(batch, 1, steps + causal, channels)`.
    fn twin_input_shape(&self, shape: &Shape) -> Result<Shape> {
        match shape[..] {
            [n, steps, c] => Ok(vec![n, Some(1), steps.map(|s| s + self.causal_steps), c]),
            _ => Err(self.shape_error(&format!(
                "expects input of rank 3 (batch, steps, channels), got {}",
                super::format_shape(shape)
            ))),
        }
    }

    /// The input as the twin takes it: causal zeros in front, then a height of 1.
    fn twin_input(&self, x: &Tensor) -> Result<Tensor> {
        let &[n, steps, c] = x.shape() else {
            return Err(self.shape_error(&format!(
                "expects input of rank 3 (batch, steps, channels), got {:?}",
                x.shape()
            )));
        };
        let front = self.causal_steps;
        if front == 0 {
            return x.clone().reshape([n, 1, steps, c]);
        }
        let mut padded = vec![0f32; n * (steps + front) * c];
        for (image, out) in x
            .data()
            .chunks(steps * c)
            .zip(padded.chunks_mut((steps + front) * c))
        {
            out[front * c..].copy_from_slice(image);
        }
        Tensor::new(vec![n, 1, steps + front, c], padded)
    }

    /// The twin's input gradient back in this layer's input shape.
    fn input_gradient_of_twin(&self, dx: Tensor, shape: &[usize]) -> Result<Tensor> {
        let front = self.causal_steps;
        if front == 0 {
            return dx.reshape(shape);
        }
        let (steps, c) = (shape[1], shape[2]);
        let data: Vec<f32> = dx
            .data()
            .chunks((steps + front) * c)
            .flat_map(|image| image[front * c..].iter().copied())
            .collect();
        Tensor::new(shape.to_vec(), data)
    }

    /// The twin's error, as this layer's.
    fn own_error(&self, e: Error) -> Error {
        twin_shape_error(e, self.class.name)
    }
}

/// A twin's config error as the error of `class`, the class whose config it came from.
pub(super) fn twin_config_error(e: Error, twin: &str, class: &str) -> Error {
    match e {
        Error::Config {
            layer,
            field,
            message,
            ..
        } => Error::Config {
            layer,
            class: class.into(),
            field,
            message: message.replace(twin, class),
        },
        other => other,
    }
}

/// A twin's shape error as the error of `class`.
pub(super) fn twin_shape_error(e: Error, class: &str) -> Error {
    match e {
        Error::Shape { layer, message, .. } => Error::Shape {
            layer,
            class: class.into(),
            message,
        },
        other => other,
    }
}

/// A 1-D weight shape in 2-D: kernels gain a leading 1 (`(3, in, out)` → `(1, 3, in,
/// out)`); vectors (biases) stay.
fn twin_shape(shape: &[usize]) -> Vec<usize> {
    if shape.len() >= 2 {
        std::iter::once(1).chain(shape.iter().copied()).collect()
    } else {
        shape.to_vec()
    }
}

/// A twin output shape in 1-D: `(batch, 1, steps, channels)` → `(batch, steps,
/// channels)`; what has no height (global pooling's `(batch, channels)`) stays.
fn from_twin(shape: Shape) -> Shape {
    if shape.len() == 4 {
        vec![shape[0], shape[2], shape[3]]
    } else {
        shape
    }
}

fn output_as(y: Tensor) -> Result<Tensor> {
    let shape: Vec<usize> = y.shape().to_vec();
    if shape.len() == 4 {
        y.reshape([shape[0], shape[2], shape[3]])
    } else {
        Ok(y)
    }
}

impl Layer for OneD {
    fn class_name(&self) -> &'static str {
        self.class.name
    }

    fn base(&self) -> &LayerBase {
        &self.base
    }

    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }

    fn config_fields(&self) -> Map<String, Value> {
        let twin = self.twin.config_fields();
        let mut fields = Map::new();
        for (key, spatial) in self.class.fields {
            let Some(value) = twin.get(*key) else {
                continue;
            };
            let second = |v: &Value| v.get(1).cloned().unwrap_or(Value::Null);
            let value = match spatial {
                _ if value.is_null() => Value::Null,
                Same => value.clone(),
                Length | Extra => json!([second(value)]),
                Factor | Sides => second(value),
                CausalPadding if self.causal => json!("causal"),
                CausalPadding => value.clone(),
            };
            fields.insert(key.to_string(), value);
        }
        fields
    }

    fn forward_macs(&self, inputs: &[Vec<usize>]) -> Option<usize> {
        let x = inputs.first()?;
        let [n, steps, c] = x[..] else { return None };
        self.lent_twin()
            .ok()?
            .forward_macs(&[vec![n, 1, steps + self.causal_steps, c]])
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let x = self.twin_input_shape(single(self, inputs)?)?;
        let twin = self.lent_twin()?;
        twin.output_shape(&[x])
            .map(from_twin)
            .map_err(|e| self.own_error(e))
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        let x = self.twin_input_shape(single(self, inputs)?)?;
        let mut twin = self.twin.clone_layer();
        twin.base_mut().name = self.base.name.clone();
        twin.build(&[x], rng).map_err(|e| self.own_error(e))?;
        self.base.weights = std::mem::take(&mut twin.base_mut().weights)
            .into_iter()
            .map(|w| {
                let shape = w.value.shape();
                let keras: Vec<usize> = if shape.len() >= 2 {
                    shape[1..].to_vec()
                } else {
                    shape.to_vec()
                };
                Ok(Weight {
                    value: w.value.reshape(keras)?,
                    ..w
                })
            })
            .collect::<Result<_>>()?;
        Ok(())
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = self.twin_input(single(self, inputs)?)?;
        let twin = self.lent_twin()?;
        output_as(twin.apply(&[&x]).map_err(|e| self.own_error(e))?)
    }

    fn forward(&mut self, inputs: &[&Tensor], training: bool) -> Result<(Tensor, Saved)> {
        let x = self.twin_input(single(self, inputs)?)?;
        let mut twin = self.lent_twin()?;
        let (y, saved) = twin
            .forward(&[&x], training)
            .map_err(|e| self.own_error(e))?;
        Ok((output_as(y)?, saved))
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        saved: &Saved,
        dy: &Tensor,
        dweights: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let x_shape = single(self, inputs)?.shape().to_vec();
        let x = self.twin_input(inputs[0])?;
        let twin = self.lent_twin()?;
        let y_twin = twin
            .output_shape(&[super::shape_of(&x)])
            .map_err(|e| self.own_error(e))?;
        let y_twin: Vec<usize> = y_twin.iter().map(|d| d.unwrap_or(0)).collect();
        let output = output.clone().reshape(y_twin.clone())?;
        let dy = dy.clone().reshape(y_twin)?;
        let shapes: Vec<Vec<usize>> = dweights.iter().map(|d| d.shape().to_vec()).collect();
        let mut lent: Vec<Tensor> = dweights
            .iter_mut()
            .zip(&shapes)
            .map(|(d, shape)| {
                std::mem::replace(d, Tensor::full([0], 0.0)).reshape(twin_shape(shape))
            })
            .collect::<Result<_>>()?;
        let dx = twin
            .backward_impl(&[&x], &output, saved, &dy, &mut lent)
            .map_err(|e| self.own_error(e));
        for ((d, l), shape) in dweights.iter_mut().zip(lent).zip(shapes) {
            *d = l.reshape(shape)?;
        }
        let mut dx = dx?;
        let dx = dx.swap_remove(0);
        Ok(vec![self.input_gradient_of_twin(dx, &x_shape)?])
    }
}
