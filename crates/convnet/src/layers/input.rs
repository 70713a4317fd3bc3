//! InputLayer: where a functional model's data enters. It holds the input's shape
//! (batch axis first, unknown) and passes its tensor through unchanged; `Input::new`
//! (in the model module) creates one and returns its symbolic output.

use super::declare::{self, AlwaysFalse};
use super::{format_shape, single, Layer, LayerBase, Saved, Shape};
use crate::error::Result;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Keras's `InputLayer`: the entry point of a model, passing its input through after
/// checking the shape.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputLayer {
    #[serde(skip)]
    base: LayerBase,
    /// The full shape, batch axis included (usually `None`).
    #[serde(
        alias = "batch_input_shape",
        deserialize_with = "declare::sizes::deserialize"
    )]
    pub batch_shape: Shape,
    #[serde(default)]
    sparse: AlwaysFalse,
    #[serde(default)]
    ragged: AlwaysFalse,
    #[serde(default)]
    optional: bool,
}

impl InputLayer {
    /// An input for samples of `shape` (without the batch axis).
    pub fn new(shape: &[usize]) -> Self {
        let mut batch_shape = vec![None];
        batch_shape.extend(shape.iter().map(|&d| Some(d)));
        InputLayer {
            batch_shape,
            ..declare::defaults("input_layer", json!({"batch_shape": []}))
        }
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

    /// Keras writes an InputLayer's config without `trainable`, with the dtype as a string
    /// (`int64` for the indices an Embedding takes; convnet holds them in f32).
    fn config(&self) -> Value {
        let dtype = match &self.base.dtype {
            Value::String(dtype) => dtype.as_str(),
            _ => "float32",
        };
        json!({
            "batch_shape": self.batch_shape,
            "dtype": dtype,
            "sparse": self.sparse,
            "ragged": self.ragged,
            "name": self.base.name,
            "optional": self.optional,
        })
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
