//! Rescaling: `x · scale + offset`, e.g. `scale = 1/255` to bring pixels into [0, 1].
//! `scale` and `offset` are numbers, or lists applied along the last (channel) axis.

use super::config::ConfigReader;
use super::{single, Layer, LayerBase, Saved, Shape};
use crate::error::Result;
use crate::tensor::Tensor;
use serde_json::{json, Map, Value};

#[derive(Clone, Debug)]
pub struct Rescaling {
    base: LayerBase,
    pub scale: Vec<f64>,
    pub offset: Vec<f64>,
}

impl Rescaling {
    pub fn new(scale: f64, offset: f64) -> Self {
        Rescaling {
            base: LayerBase::new("rescaling"),
            scale: vec![scale],
            offset: vec![offset],
        }
    }

    pub(super) fn from_config(c: &ConfigReader) -> Result<Self> {
        let read = |field: &str, default: f64| -> Result<Vec<f64>> {
            match c.get(field) {
                None => Ok(vec![default]),
                Some(Value::Array(items)) if !items.is_empty() => items
                    .iter()
                    .map(|v| {
                        v.as_f64()
                            .ok_or_else(|| c.error(field, format!("expected numbers, found {v}")))
                    })
                    .collect(),
                Some(_) => Ok(vec![c.f64(field, default)?]),
            }
        };
        Ok(Rescaling {
            base: c.base()?,
            scale: read("scale", 1.0)?,
            offset: read("offset", 0.0)?,
        })
    }

    /// The per-position factor at flat index `i` (lists cycle along the last axis).
    fn at(values: &[f64], i: usize) -> f32 {
        values[i % values.len()] as f32
    }
}

fn number_or_list(values: &[f64]) -> Value {
    if values.len() == 1 {
        json!(values[0])
    } else {
        json!(values)
    }
}

impl Layer for Rescaling {
    layer_common!("Rescaling");

    fn config_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("scale".into(), number_or_list(&self.scale));
        m.insert("offset".into(), number_or_list(&self.offset));
        m
    }

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
