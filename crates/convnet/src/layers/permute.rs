//! Permute and RepeatVector: layers that move or repeat whole elements without
//! arithmetic. Permute reorders the non-batch axes (`dims` counts them from 1, as Keras
//! does); RepeatVector turns `(batch, features)` into `(batch, n, features)`.

use super::declare;
use super::{infer, single, Layer, LayerBase, Saved, Shape};
use crate::error::Result;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Keras's `Permute(dims)`: output axis `i` (from 1) is input axis `dims[i - 1]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permute {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `dims`: a permutation of 1..=rank−1.
    pub dims: Vec<usize>,
}

impl Permute {
    /// A Permute of the non-batch axes, like `keras.layers.Permute((2, 1))`.
    pub fn new(dims: &[usize]) -> Self {
        Permute {
            dims: dims.to_vec(),
            ..declare::defaults("permute", json!({"dims": []}))
        }
    }

    /// The permutation with the batch axis: output axis `a` reads input axis `axes[a]`.
    fn axes(&self, rank: usize) -> Result<Vec<usize>> {
        let mut sorted = self.dims.clone();
        sorted.sort_unstable();
        if sorted != (1..rank).collect::<Vec<_>>() {
            return Err(self.shape_error(&format!(
                "dims {:?} must be a permutation of 1..={} for an input of rank {rank}",
                self.dims,
                rank - 1
            )));
        }
        Ok(std::iter::once(0)
            .chain(self.dims.iter().copied())
            .collect())
    }
}

impl Layer for Permute {
    layer_common!("Permute");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let shape = single(self, inputs)?;
        Ok(self.axes(shape.len())?.iter().map(|&a| shape[a]).collect())
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        infer(self, &[x])?;
        x.permute_axes(&self.axes(x.rank())?)
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let axes = self.axes(single(self, inputs)?.rank())?;
        let mut inverse = vec![0usize; axes.len()];
        for (out_axis, &in_axis) in axes.iter().enumerate() {
            inverse[in_axis] = out_axis;
        }
        Ok(vec![dy.permute_axes(&inverse)?])
    }
}

/// Keras's `RepeatVector(n)`: `(batch, features)` → `(batch, n, features)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepeatVector {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `n`: how many times the input repeats.
    #[serde(deserialize_with = "declare::positive")]
    pub n: usize,
}

impl RepeatVector {
    /// A RepeatVector of `n` copies.
    pub fn new(n: usize) -> Self {
        RepeatVector {
            n,
            ..declare::defaults("repeat_vector", json!({"n": 1}))
        }
    }
}

impl Layer for RepeatVector {
    layer_common!("RepeatVector");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let shape = single(self, inputs)?;
        match shape[..] {
            [batch, features] => Ok(vec![batch, Some(self.n), features]),
            _ => Err(self.shape_error(&format!(
                "expects input of rank 2 (batch, features), got {}",
                super::format_shape(shape)
            ))),
        }
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        let shape = infer(self, &[x])?;
        let features = shape[2];
        let mut data = Vec::with_capacity(x.len() * self.n);
        for row in x.data().chunks_exact(features.max(1)) {
            (0..self.n).for_each(|_| data.extend_from_slice(row));
        }
        Tensor::new(shape, data)
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let x = *single(self, inputs)?;
        let features = x.shape()[1];
        let mut dx = vec![0f32; x.len()];
        for (sample, copies) in dx
            .chunks_exact_mut(features.max(1))
            .zip(dy.data().chunks_exact((features * self.n).max(1)))
        {
            for copy in copies.chunks_exact(features.max(1)) {
                sample.iter_mut().zip(copy).for_each(|(d, g)| *d += g);
            }
        }
        Ok(vec![Tensor::new(x.shape().to_vec(), dx)?])
    }
}
