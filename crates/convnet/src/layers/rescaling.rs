//! Rescaling: `x · scale + offset`, e.g. `scale = 1/255` to bring pixels into [0, 1].
//! `scale` and `offset` are numbers, or lists applied along the last (channel) axis.

use super::declare;
use super::{single, Layer, LayerBase, Saved, Shape};
use crate::error::Result;
use crate::kernels::elementwise::in_rows;
use crate::tensor::Tensor;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};

/// Keras's `Rescaling(scale, offset=0.0)`: `x · scale + offset`, typically the first layer
/// of an image model.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rescaling {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `scale`: one factor, or one per channel (last axis).
    #[serde(default = "one")]
    pub scale: Factors,
    /// Keras's `offset`: added after scaling, one value or one per channel; default 0.0.
    #[serde(default = "zero")]
    pub offset: Factors,
}

fn one() -> Factors {
    Factors::from(1.0)
}

fn zero() -> Factors {
    Factors::from(0.0)
}

/// `scale` or `offset`: one number, or a list applied along the last axis, written back
/// as it was read (`-1` stays `-1`, as Keras keeps the Python value it was given).
#[derive(Clone, Debug, PartialEq)]
pub struct Factors {
    written: Value,
    values: Vec<f32>,
}

impl From<f64> for Factors {
    fn from(value: f64) -> Self {
        Factors {
            written: json!(value),
            values: vec![value as f32],
        }
    }
}

impl Factors {
    /// The factors, one or one per channel.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The factor of each position along a last axis of `len` (one number repeated, or
    /// the list, whose length `output_shape` has checked).
    fn along(&self, len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| self.values[i % self.values.len()])
            .collect()
    }
}

impl Serialize for Factors {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.written.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Factors {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let written = Value::deserialize(d)?;
        let values = match &written {
            Value::Array(items) if !items.is_empty() => {
                items.iter().map(Value::as_f64).collect::<Option<Vec<_>>>()
            }
            one => one.as_f64().map(|x| vec![x]),
        };
        match values {
            Some(values) if values.iter().all(|v| v.is_finite()) => Ok(Factors {
                values: values.iter().map(|&v| v as f32).collect(),
                written,
            }),
            _ => Err(D::Error::custom(format!(
                "expected a finite number or a list of them, found {written}"
            ))),
        }
    }
}

impl Rescaling {
    /// A Rescaling by one `scale` and one `offset`, like `keras.layers.Rescaling(1 / 255)`
    /// with offset 0.
    pub fn new(scale: f64, offset: f64) -> Self {
        Rescaling {
            scale: Factors::from(scale),
            offset: Factors::from(offset),
            ..declare::defaults("rescaling", json!({}))
        }
    }
}

impl Layer for Rescaling {
    layer_common!("Rescaling");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let shape = single(self, inputs)?;
        let last = shape.last().copied().flatten();
        for (what, factors) in [("scale", &self.scale), ("offset", &self.offset)] {
            let values = factors.values();
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
        // A row of the last axis at a time, so the loop vectorises.
        let last = x.shape().last().copied().unwrap_or(1).max(1);
        let (scale, offset) = (self.scale.along(last), self.offset.along(last));
        let mut y = crate::buffers::take(x.len());
        in_rows(&mut y, last, |start, chunk| {
            let rows = chunk.chunks_mut(last).zip(x.data()[start..].chunks(last));
            for (y, x) in rows {
                for (((y, x), s), o) in y.iter_mut().zip(x).zip(&scale).zip(&offset) {
                    *y = x * s + o;
                }
            }
        });
        Tensor::new(x.shape().to_vec(), y)
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
        let last = dy.shape().last().copied().unwrap_or(1).max(1);
        let scale = self.scale.along(last);
        for row in dx.data_mut().chunks_mut(last) {
            row.iter_mut().zip(&scale).for_each(|(d, s)| *d *= s);
        }
        Ok(vec![dx])
    }
}
