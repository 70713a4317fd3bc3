//! `data_format="channels_first"`, which older Keras files saved for GPUs use: the layer
//! is its channels-last twin between two transposes, `(batch, channels, …)` →
//! `(batch, …, channels)` in front and back behind (when the output still has its
//! spatial axes). Keras's kernels have the same layout in both formats, so the weights
//! are the twin's as they are. Flatten's channels_first means the same thing: Keras
//! moves the channels last before flattening, as the transpose in front does.

use super::{Layer, LayerBase, Saved, Shape};
use crate::error::Result;
use crate::initializers::Rng;
use crate::tensor::Tensor;
use serde_json::{json, Map, Value};

/// The classes that take `data_format="channels_first"` this way.
const CLASSES: &[&str] = &[
    "Conv1D",
    "Conv2D",
    "SeparableConv1D",
    "SeparableConv2D",
    "DepthwiseConv1D",
    "DepthwiseConv2D",
    "Conv1DTranspose",
    "Conv2DTranspose",
    "MaxPooling1D",
    "MaxPooling2D",
    "AveragePooling1D",
    "AveragePooling2D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "UpSampling2D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "Cropping2D",
    "Conv3D",
    "Conv3DTranspose",
    "MaxPooling3D",
    "AveragePooling3D",
    "GlobalMaxPooling3D",
    "GlobalAveragePooling3D",
    "UpSampling3D",
    "ZeroPadding3D",
    "Cropping3D",
    "Flatten",
];

/// Whether `class` with this `config` is read as a [`ChannelsFirst`].
pub(super) fn applies(class: &str, config: &Value) -> bool {
    config.get("data_format").and_then(Value::as_str) == Some("channels_first")
        && CLASSES.contains(&class)
}

/// A layer in `channels_first` format: its channels-last twin, which holds the name and
/// weights, between transposes.
#[derive(Debug)]
pub struct ChannelsFirst {
    twin: Box<dyn Layer>,
}

impl Clone for ChannelsFirst {
    fn clone(&self) -> Self {
        ChannelsFirst {
            twin: self.twin.clone_layer(),
        }
    }
}

/// Axis order moving axis 1 to the end: `(n, c, a, b)` → `(n, a, b, c)`.
fn last_order(rank: usize) -> Vec<usize> {
    std::iter::once(0)
        .chain(2..rank)
        .chain(std::iter::once(1))
        .collect()
}

/// Axis order moving the last axis to 1: `(n, a, b, c)` → `(n, c, a, b)`.
fn first_order(rank: usize) -> Vec<usize> {
    std::iter::once(0)
        .chain(std::iter::once(rank - 1))
        .chain(1..rank - 1)
        .collect()
}

fn reorder<T: Clone>(items: &[T], order: &[usize]) -> Vec<T> {
    order.iter().map(|&a| items[a].clone()).collect()
}

impl ChannelsFirst {
    /// Reads a channels_first config as its channels-last twin.
    pub(super) fn read(class: &str, config: &Value) -> Result<Box<dyn Layer>> {
        let mut twin_config = config.clone();
        twin_config["data_format"] = json!("channels_last");
        Ok(Box::new(ChannelsFirst {
            twin: super::layer_from_config(class, &twin_config)?,
        }))
    }

    fn to_last(x: &Tensor) -> Result<Tensor> {
        x.permute_axes(&last_order(x.rank()))
    }

    /// The twin's output (or output gradient) in this layer's format.
    fn to_first(y: &Tensor) -> Result<Tensor> {
        if y.rank() < 3 {
            Ok(y.clone())
        } else {
            y.permute_axes(&first_order(y.rank()))
        }
    }

    fn input_rank(&self, shape: &Shape) -> Result<()> {
        if shape.len() < 3 {
            return Err(self.shape_error(&format!(
                "expects (batch, channels, …) in channels_first, got {}",
                super::format_shape(shape)
            )));
        }
        Ok(())
    }
}

impl Layer for ChannelsFirst {
    fn class_name(&self) -> &'static str {
        self.twin.class_name()
    }

    fn base(&self) -> &LayerBase {
        self.twin.base()
    }

    fn base_mut(&mut self) -> &mut LayerBase {
        self.twin.base_mut()
    }

    fn random_generator(&mut self) -> Option<&mut Option<Rng>> {
        self.twin.random_generator()
    }

    fn config_fields(&self) -> Map<String, Value> {
        let mut fields = self.twin.config_fields();
        fields.insert("data_format".into(), json!("channels_first"));
        fields
    }

    fn forward_macs(&self, inputs: &[Vec<usize>]) -> Option<usize> {
        let x = inputs.first().filter(|x| x.len() >= 3)?;
        self.twin.forward_macs(&[reorder(x, &last_order(x.len()))])
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let x = super::single(self, inputs)?;
        self.input_rank(x)?;
        let y = self
            .twin
            .output_shape(&[reorder(x, &last_order(x.len()))])?;
        Ok(if y.len() < 3 {
            y
        } else {
            reorder(&y, &first_order(y.len()))
        })
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        let x = super::single(self, inputs)?;
        self.input_rank(x)?;
        let last = reorder(x, &last_order(x.len()));
        self.twin.build(&[last], rng)
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = Self::to_last(super::single(self, inputs)?)?;
        Self::to_first(&self.twin.apply(&[&x])?)
    }

    fn forward(&mut self, inputs: &[&Tensor], training: bool) -> Result<(Tensor, Saved)> {
        let x = Self::to_last(super::single(self, inputs)?)?;
        let (y, saved) = self.twin.forward(&[&x], training)?;
        Ok((Self::to_first(&y)?, saved))
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        saved: &Saved,
        dy: &Tensor,
        dweights: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let x = Self::to_last(super::single(self, inputs)?)?;
        let (output, dy) = if output.rank() < 3 {
            (output.clone(), dy.clone())
        } else {
            (Self::to_last(output)?, Self::to_last(dy)?)
        };
        let dx = self
            .twin
            .backward_impl(&[&x], &output, saved, &dy, dweights)?;
        Ok(vec![Self::to_first(&dx[0])?])
    }
}
