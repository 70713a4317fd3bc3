//! Layers that merge several inputs: Concatenate along an axis, and the elementwise
//! Add, Multiply and Average of inputs of one shape.

use super::declare;
use super::{format_shape, infer, Layer, LayerBase, Saved, Shape};
use crate::error::Result;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::json;

fn at_least_two(layer: &dyn Layer, count: usize) -> Result<()> {
    if count < 2 {
        return Err(layer.shape_error(&format!("needs at least 2 inputs, got {count}")));
    }
    Ok(())
}

/// Concatenate: joins inputs along `axis` (default -1, the channels: the Inception
/// block's 1x1, 3x3 and 5x5 branches become one deeper tensor).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Concatenate {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `axis`: the axis the inputs are joined along (not the batch axis); default
    /// -1.
    #[serde(default = "declare::last_axis")]
    pub axis: i64,
}

impl Default for Concatenate {
    fn default() -> Self {
        Self::new()
    }
}

impl Concatenate {
    /// A Concatenate along the last axis (Keras's default `axis=-1`).
    pub fn new() -> Self {
        declare::defaults("concatenate", json!({}))
    }

    /// Sets `axis` (Keras's default -1).
    pub fn axis(mut self, axis: i64) -> Self {
        self.axis = axis;
        self
    }

    fn axis_index(&self, rank: usize) -> Result<usize> {
        let axis = if self.axis < 0 {
            rank as i64 + self.axis
        } else {
            self.axis
        };
        if axis <= 0 || axis >= rank as i64 {
            return Err(self.shape_error(&format!(
                "axis {} is out of range for inputs of rank {rank} (the batch axis cannot be joined)",
                self.axis
            )));
        }
        Ok(axis as usize)
    }

    /// (outer, per-input block lengths): each input is `outer` blocks of
    /// `shape[axis..].product()` values, and the output interleaves them block by block.
    fn blocks(&self, shapes: &[&[usize]]) -> Result<(usize, Vec<usize>)> {
        let axis = self.axis_index(shapes[0].len())?;
        let outer = shapes[0][..axis].iter().product();
        Ok((
            outer,
            shapes.iter().map(|s| s[axis..].iter().product()).collect(),
        ))
    }
}

impl Layer for Concatenate {
    layer_common!("Concatenate");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        at_least_two(self, inputs.len())?;
        let rank = inputs[0].len();
        let axis = self.axis_index(rank)?;
        let mut out = inputs[0].clone();
        for shape in &inputs[1..] {
            let compatible = shape.len() == rank
                && (0..rank).all(|a| {
                    a == axis || shape[a].is_none() || out[a].is_none() || shape[a] == out[a]
                });
            if !compatible {
                return Err(self.shape_error(&format!(
                    "inputs must match on every axis but axis {}: got {}",
                    self.axis,
                    inputs
                        .iter()
                        .map(format_shape)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            out[axis] = out[axis].zip(shape[axis]).map(|(a, b)| a + b);
            for a in 0..rank {
                if a != axis && out[a].is_none() {
                    out[a] = shape[a];
                }
            }
        }
        Ok(out)
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let mut y = Tensor::zeros(infer(self, inputs)?);
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        let (outer, blocks) = self.blocks(&shapes)?;
        let row: usize = blocks.iter().sum();
        let out = y.data_mut();
        for o in 0..outer {
            let mut at = o * row;
            for (x, &len) in inputs.iter().zip(&blocks) {
                out[at..at + len].copy_from_slice(&x.data()[o * len..(o + 1) * len]);
                at += len;
            }
        }
        Ok(y)
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        let (outer, blocks) = self.blocks(&shapes)?;
        let row: usize = blocks.iter().sum();
        let mut grads: Vec<Tensor> = inputs.iter().map(|x| x.zeros_like()).collect();
        for o in 0..outer {
            let mut at = o * row;
            for (g, &len) in grads.iter_mut().zip(&blocks) {
                g.data_mut()[o * len..(o + 1) * len].copy_from_slice(&dy.data()[at..at + len]);
                at += len;
            }
        }
        Ok(grads)
    }
}

/// What a Merge read from a config starts as, before the registry sets its op.
fn add() -> MergeOp {
    MergeOp::Add
}

/// The elementwise merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeOp {
    /// Keras's `Add`: the elementwise sum.
    Add,
    /// Keras's `Multiply`: the elementwise product.
    Multiply,
    /// Keras's `Average`: the elementwise mean.
    Average,
}

/// Add, Multiply or Average of two or more inputs of the same shape.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Merge {
    #[serde(skip)]
    base: LayerBase,
    /// Which of Add, Multiply and Average the layer computes; also its Keras class name.
    #[serde(skip, default = "add")]
    pub op: MergeOp,
}

/// Keras's `Add()`: the sum of its inputs (a ResNet block's shortcut).
pub struct Add;
/// Keras's `Multiply()`: the elementwise product of its inputs.
pub struct Multiply;
/// Keras's `Average()`: the elementwise mean of its inputs.
pub struct Average;

macro_rules! merge_constructor {
    ($ty:ident, $op:expr) => {
        impl $ty {
            /// The Keras layer of this class, taking two or more inputs of one shape.
            #[allow(clippy::new_ret_no_self)]
            pub fn new() -> Merge {
                Merge::new($op)
            }
        }
    };
}
merge_constructor!(Add, MergeOp::Add);
merge_constructor!(Multiply, MergeOp::Multiply);
merge_constructor!(Average, MergeOp::Average);

impl Merge {
    /// Sets which merge this is (the registry reads Add, Multiply and Average alike).
    pub(super) fn op(mut self, op: MergeOp) -> Self {
        self.op = op;
        self
    }

    /// A merge layer computing `op`, named as Keras names its class (`add`, `multiply`,
    /// `average`).
    pub fn new(op: MergeOp) -> Self {
        Merge {
            base: LayerBase::new(match op {
                MergeOp::Add => "add",
                MergeOp::Multiply => "multiply",
                MergeOp::Average => "average",
            }),
            op,
        }
    }
}

impl Layer for Merge {
    fn class_name(&self) -> &'static str {
        match self.op {
            MergeOp::Add => "Add",
            MergeOp::Multiply => "Multiply",
            MergeOp::Average => "Average",
        }
    }

    layer_base!();

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        at_least_two(self, inputs.len())?;
        let mut out = inputs[0].clone();
        for shape in &inputs[1..] {
            let compatible = shape.len() == out.len()
                && shape
                    .iter()
                    .zip(&out)
                    .all(|(a, b)| a.is_none() || b.is_none() || a == b);
            if !compatible {
                return Err(self.shape_error(&format!(
                    "inputs must all have the same shape, got {}",
                    inputs
                        .iter()
                        .map(format_shape)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            out.iter_mut().zip(shape).for_each(|(o, s)| *o = o.or(*s));
        }
        Ok(out)
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        infer(self, inputs)?;
        let mut y = inputs[0].clone();
        for x in &inputs[1..] {
            let pairs = y.data_mut().iter_mut().zip(x.data());
            match self.op {
                MergeOp::Add | MergeOp::Average => pairs.for_each(|(a, b)| *a += b),
                MergeOp::Multiply => pairs.for_each(|(a, b)| *a *= b),
            }
        }
        if self.op == MergeOp::Average {
            let inv = 1.0 / inputs.len() as f32;
            y.map_inplace(|v| v * inv);
        }
        Ok(y)
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        Ok(match self.op {
            MergeOp::Add => vec![dy.clone(); inputs.len()],
            MergeOp::Average => {
                let mut g = dy.clone();
                let inv = 1.0 / inputs.len() as f32;
                g.map_inplace(|v| v * inv);
                vec![g; inputs.len()]
            }
            // d(x0·x1·…)/dxi = dy · the product of the other inputs.
            MergeOp::Multiply => (0..inputs.len())
                .map(|i| {
                    let mut g = dy.clone();
                    for (_, x) in inputs.iter().enumerate().filter(|(j, _)| *j != i) {
                        g.data_mut()
                            .iter_mut()
                            .zip(x.data())
                            .for_each(|(a, b)| *a *= b);
                    }
                    g
                })
                .collect(),
        })
    }
}
