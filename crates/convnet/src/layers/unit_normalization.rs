//! UnitNormalization: each vector along `axis` divided by its L2 norm (at least 1e-6,
//! Keras's `x · rsqrt(max(Σx², 1e-12))`), so it has length 1.

use super::declare::{self, Axes};
use super::{infer, single, Layer, LayerBase, Saved, Shape};
use crate::error::Result;
use crate::kernels::norm::layer::Groups;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The smallest Σx² Keras divides by.
const MIN_SQUARE_SUM: f64 = 1e-12;

/// Keras's `UnitNormalization(axis=-1)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitNormalization {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `axis`: the axis or axes each vector lies along; default -1.
    #[serde(default = "last")]
    pub axis: Axes,
}

fn last() -> Axes {
    Axes::One(-1)
}

impl Default for UnitNormalization {
    fn default() -> Self {
        Self::new()
    }
}

impl UnitNormalization {
    /// A UnitNormalization over the last axis.
    pub fn new() -> Self {
        declare::defaults("unit_normalization", json!({}))
    }

    /// The groups of the input and each group's Σx².
    fn square_sums(&self, x: &Tensor) -> Result<(Groups, Vec<f64>)> {
        let axes = self
            .axis
            .resolve(x.rank())
            .map_err(|m| self.shape_error(&m))?;
        let groups = Groups::new(x.shape(), &axes);
        let data = x.data();
        let squares = groups.sums(|i| data[i] * data[i]);
        Ok((groups, squares))
    }
}

/// 1/max(‖x‖, 1e-6), from Σx².
fn inverse_norm(square_sum: f64) -> f64 {
    1.0 / square_sum.max(MIN_SQUARE_SUM).sqrt()
}

impl Layer for UnitNormalization {
    layer_common!("UnitNormalization");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let shape = single(self, inputs)?;
        self.axis
            .resolve(shape.len())
            .map_err(|m| self.shape_error(&m))?;
        Ok(shape.clone())
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        infer(self, &[x])?;
        let (groups, squares) = self.square_sums(x)?;
        let inverse: Vec<f64> = squares.into_iter().map(inverse_norm).collect();
        let mut y = x.clone();
        for (i, v) in y.data_mut().iter_mut().enumerate() {
            *v = (f64::from(*v) * inverse[groups.group[i]]) as f32;
        }
        Ok(y)
    }

    /// y = x·r with r = (Σx²)^-½: dx = r·(dy − y·Σ(dy·y)); below the floor r is a
    /// constant and dx = r·dy.
    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let x = *single(self, inputs)?;
        let (groups, squares) = self.square_sums(x)?;
        let (y, dy) = (output.data(), dy.data());
        let dot = groups.sums(|i| dy[i] * y[i]);
        let dx: Vec<f32> = (0..y.len())
            .map(|i| {
                let g = groups.group[i];
                let projected = if squares[g] < MIN_SQUARE_SUM {
                    f64::from(dy[i])
                } else {
                    f64::from(dy[i]) - f64::from(y[i]) * dot[g]
                };
                (inverse_norm(squares[g]) * projected) as f32
            })
            .collect();
        Ok(vec![Tensor::new(x.shape().to_vec(), dx)?])
    }
}
