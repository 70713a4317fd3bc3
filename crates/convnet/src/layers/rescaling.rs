//! Rescaling: `x · scale + offset`, e.g. `scale = 1/255` to bring pixels into [0, 1].
//! `scale` and `offset` are numbers, or lists applied along the last (channel) axis.

use super::declare;
use super::{single, Layer, LayerBase, Saved, Shape};
use crate::error::Result;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Keras's `Rescaling(scale, offset=0.0)`: `x · scale + offset`, typically the first layer
/// of an image model.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rescaling {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `scale`: one factor, or one per channel (last axis).
    #[serde(with = "number_or_list", default = "one")]
    pub scale: Vec<f64>,
    /// Keras's `offset`: added after scaling, one value or one per channel; default 0.0.
    #[serde(with = "number_or_list", default = "zero")]
    pub offset: Vec<f64>,
}

fn one() -> Vec<f64> {
    vec![1.0]
}

fn zero() -> Vec<f64> {
    vec![0.0]
}

/// `scale` and `offset`: one number, or a list applied along the last axis.
mod number_or_list {
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(values: &[f64], s: S) -> Result<S::Ok, S::Error> {
        match values {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let v = Value::deserialize(d)?;
        let values = match &v {
            Value::Array(items) if !items.is_empty() => {
                items.iter().map(Value::as_f64).collect::<Option<Vec<_>>>()
            }
            one => one.as_f64().map(|x| vec![x]),
        };
        values.ok_or_else(|| {
            D::Error::custom(format!("expected a number or a list of numbers, found {v}"))
        })
    }
}

impl Rescaling {
    /// A Rescaling by one `scale` and one `offset`, like `keras.layers.Rescaling(1 / 255)`
    /// with offset 0.
    pub fn new(scale: f64, offset: f64) -> Self {
        Rescaling {
            scale: vec![scale],
            offset: vec![offset],
            ..declare::defaults("rescaling", json!({}))
        }
    }

    /// The per-position factor at flat index `i` (lists cycle along the last axis).
    fn at(values: &[f64], i: usize) -> f32 {
        values[i % values.len()] as f32
    }
}

impl Layer for Rescaling {
    layer_common!("Rescaling");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let shape = single(self, inputs)?;
        let last = shape.last().copied().flatten();
        for (what, values) in [("scale", &self.scale), ("offset", &self.offset)] {
            let fits = values.len() == 1 || last == Some(values.len());
            if values.is_empty() || !fits {
                return Err(self.shape_error(&format!(
                    "{what} has {} values, which do not match the last axis of {}",
                    values.len(),
                    super::format_shape(shape)
                )));
            }
        }
        Ok(shape.clone())
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        self.output_shape(&[super::shape_of(x)])?;
        let mut y = x.clone();
        for (i, v) in y.data_mut().iter_mut().enumerate() {
            *v = *v * Self::at(&self.scale, i) + Self::at(&self.offset, i);
        }
        Ok(y)
    }

    fn backward_impl(
        &self,
        _: &[&Tensor],
        _: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let mut dx = dy.clone();
        dx.data_mut()
            .iter_mut()
            .enumerate()
            .for_each(|(i, d)| *d *= Self::at(&self.scale, i));
        Ok(vec![dx])
    }
}
