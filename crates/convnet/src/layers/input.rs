//! InputLayer: where a functional model's data enters. It holds the input's shape
//! (batch axis first, unknown) and passes its tensor through unchanged; `Input::new`
//! (in `crate::model`) creates one and returns its symbolic output.

use super::config::ConfigReader;
use super::{format_shape, single, Layer, LayerBase, Saved, Shape};
use crate::error::Result;
use crate::tensor::Tensor;
use serde_json::{json, Map, Value};

#[derive(Clone, Debug)]
pub struct InputLayer {
    base: LayerBase,
    /// The full shape, batch axis included (usually `None`).
    pub batch_shape: Shape,
}

impl InputLayer {
    /// An input for samples of `shape` (without the batch axis).
    pub fn new(shape: &[usize]) -> Self {
        let mut batch_shape = vec![None];
        batch_shape.extend(shape.iter().map(|&d| Some(d)));
        InputLayer {
            base: LayerBase::new("input_layer"),
            batch_shape,
        }
    }

    pub(super) fn from_config(c: &ConfigReader) -> Result<Self> {
        let dims = match c.get("batch_shape").or_else(|| c.get("batch_input_shape")) {
            Some(Value::Array(dims)) => dims,
            _ => return Err(c.error("batch_shape", "missing: an InputLayer needs its shape")),
        };
        let batch_shape = dims
            .iter()
            .map(|d| match d {
                Value::Null => Ok(None),
                d => d
                    .as_u64()
                    .filter(|&d| d > 0)
                    .map(|d| Some(d as usize))
                    .ok_or_else(|| {
                        c.error(
                            "batch_shape",
                            format!("expected positive sizes or null, found {d}"),
                        )
                    }),
            })
            .collect::<Result<Shape>>()?;
        if c.bool("sparse", false)? || c.bool("ragged", false)? {
            return Err(c.error(
                "sparse",
                "sparse and ragged inputs are not supported by convnet",
            ));
        }
        c.bool("optional", false)?;
        Ok(InputLayer {
            base: c.base()?,
            batch_shape,
        })
    }

    fn check(&self, shape: &Shape) -> Result<()> {
        let fits = shape.len() == self.batch_shape.len()
            && shape
                .iter()
                .zip(&self.batch_shape)
                .all(|(got, want)| want.is_none() || got == want);
        if fits {
            Ok(())
        } else {
            Err(self.shape_error(&format!(
                "expects inputs of shape {}, got {}",
                format_shape(&self.batch_shape),
                format_shape(shape)
            )))
        }
    }
}

impl Layer for InputLayer {
    layer_common!("InputLayer");

    /// Keras writes an InputLayer's config without `trainable`, with the dtype as a string.
    fn config(&self) -> Value {
        json!({
            "batch_shape": self.batch_shape,
            "dtype": "float32",
            "sparse": false,
            "ragged": false,
            "name": self.base.name,
            "optional": false,
        })
    }

    fn config_fields(&self) -> Map<String, Value> {
        Map::new()
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        match inputs {
            [] => Ok(self.batch_shape.clone()),
            [shape] => self.check(shape).map(|_| self.batch_shape.clone()),
            _ => Err(self.shape_error("takes one input")),
        }
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        self.check(&super::shape_of(x))?;
        Ok(x.clone())
    }

    fn backward_impl(
        &self,
        _: &[&Tensor],
        _: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        Ok(vec![dy.clone()])
    }
}
