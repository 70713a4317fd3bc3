//! Embedding: integer indices → rows of a learned table, the first layer of a text or
//! sequence model. convnet's tensors are f32, so the indices arrive as whole numbers in
//! f32 (exact below 2^24, far beyond any vocabulary), from an `Input(dtype="int64")` or a
//! float array of integers; anything else is an error naming the layer and the value.

use super::declare::{self, AlwaysFalse, NullOnly};
use super::{single, Layer, LayerBase, Saved, Shape};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::initializers::{Initializer, Rng};
use crate::regularizers::Regularizer;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Keras's `Embedding(input_dim, output_dim)`: each index `i` in `[0, input_dim)` of the
/// input becomes row `i` of the `(input_dim, output_dim)` weight `embeddings`, so the
/// output has the input's shape plus `output_dim`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Embedding {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `input_dim`: the vocabulary size, one more than the largest index.
    #[serde(deserialize_with = "declare::positive")]
    pub input_dim: usize,
    /// Keras's `output_dim`: the length of each row.
    #[serde(deserialize_with = "declare::positive")]
    pub output_dim: usize,
    /// Keras's `embeddings_initializer`: how the table starts; default `uniform`
    /// (RandomUniform in ±0.05).
    #[serde(default = "uniform")]
    pub embeddings_initializer: Initializer,
    /// Keras's `embeddings_regularizer`: its penalty joins the training loss.
    #[serde(default)]
    pub embeddings_regularizer: Option<Regularizer>,
    // Where Embedding writes a null `activity_regularizer`; a set one is a common field.
    #[serde(default)]
    activity_regularizer: NullOnly,
    /// Keras's `embeddings_constraint`: applied after each optimizer step.
    #[serde(default)]
    pub embeddings_constraint: Option<Constraint>,
    // Masking (index 0 as padding, carried to later layers) is not implemented.
    #[serde(default)]
    mask_zero: AlwaysFalse,
    #[serde(default)]
    quantization_config: NullOnly,
    // tf.keras 2 writes the sequence length, which Keras 3 drops.
    #[allow(dead_code)]
    #[serde(default, skip_serializing)]
    input_length: Option<Value>,
}

/// Keras's `uniform`, written as Keras writes Embedding's default.
fn uniform() -> Initializer {
    Initializer::from_config(&json!({"class_name": "RandomUniform",
        "config": {"seed": null, "minval": -0.05, "maxval": 0.05}}))
    .expect("a valid initializer")
}

impl Embedding {
    /// An Embedding of `input_dim` rows of `output_dim`, like
    /// `keras.layers.Embedding(input_dim, output_dim)`.
    pub fn new(input_dim: usize, output_dim: usize) -> Self {
        Embedding {
            input_dim,
            output_dim,
            ..declare::defaults("embedding", json!({"input_dim": 1, "output_dim": 1}))
        }
    }

    /// The row of each index, or an error naming the first bad one.
    fn rows(&self, x: &Tensor) -> Result<Vec<usize>> {
        x.data()
            .iter()
            .map(|&v| {
                if v.fract() == 0.0 && v >= 0.0 && (v as usize) < self.input_dim {
                    Ok(v as usize)
                } else {
                    Err(self.shape_error(&format!(
                        "index {v} is not an integer in [0, {}) (input_dim {})",
                        self.input_dim, self.input_dim
                    )))
                }
            })
            .collect()
    }
}

impl Layer for Embedding {
    layer_common!("Embedding");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let mut shape = single(self, inputs)?.clone();
        shape.push(Some(self.output_dim));
        Ok(shape)
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        self.base.weights.clear();
        self.output_shape(inputs)?;
        let init = self.embeddings_initializer.clone();
        self.base.add_weight(
            "embeddings",
            &[self.input_dim, self.output_dim],
            &init,
            true,
            rng,
        )
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        super::conv::require_built(self)?;
        let table = self.base.weights[0].value.data();
        let d = self.output_dim;
        let mut data = Vec::with_capacity(x.len() * d);
        for row in self.rows(x)? {
            data.extend_from_slice(&table[row * d..(row + 1) * d]);
        }
        let mut shape = x.shape().to_vec();
        shape.push(d);
        Tensor::new(shape, data)
    }

    /// Indices have no gradient (Keras's is None; zeros here); each output row's
    /// gradient adds into its table row.
    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        _: &Saved,
        dy: &Tensor,
        dweights: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let x = *single(self, inputs)?;
        let d = self.output_dim;
        let dtable = dweights[0].data_mut();
        for (row, dy_row) in self.rows(x)?.into_iter().zip(dy.data().chunks_exact(d)) {
            dtable[row * d..(row + 1) * d]
                .iter_mut()
                .zip(dy_row)
                .for_each(|(g, d)| *g += d);
        }
        Ok(vec![Tensor::full(x.shape(), 0.0)])
    }
}
