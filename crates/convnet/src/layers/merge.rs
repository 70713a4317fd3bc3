//! Layers that merge several inputs: Concatenate along an axis, and the elementwise
//! Add, Subtract, Multiply, Average, Maximum and Minimum. The elementwise ones broadcast
//! as Keras does: inputs of one rank whose sizes agree or are 1 (EfficientNet's
//! squeeze-and-excite multiplies `(N, H, W, C)` by `(N, 1, 1, C)`); backward sums the
//! gradient over the axes an input was broadcast along.

use super::declare;
use super::{format_shape, infer, Fusion, Layer, LayerBase, Saved, Shape};
use crate::error::Result;
use crate::kernels::elementwise::{copy_into_columns, in_rows, zip_into_then, zip_with_then};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::borrow::Cow;

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
        let mut y = Tensor::for_overwrite(infer(self, inputs)?);
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        let (outer, blocks) = self.blocks(&shapes)?;
        let row: usize = blocks.iter().sum();
        if outer == 0 || row == 0 {
            return Ok(y);
        }
        let mut at = 0;
        let parts: Vec<(usize, usize, &[f32])> = inputs
            .iter()
            .zip(&blocks)
            .map(|(x, &len)| {
                at += len;
                (at - len, len, x.data())
            })
            .collect();
        copy_into_columns(y.data_mut(), row, &parts);
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
    /// Keras's `Subtract`: the first input minus the second (exactly two).
    Subtract,
    /// Keras's `Multiply`: the elementwise product.
    Multiply,
    /// Keras's `Average`: the elementwise mean.
    Average,
    /// Keras's `Maximum`: the elementwise maximum (ties go to the earlier input).
    Maximum,
    /// Keras's `Minimum`: the elementwise minimum (ties go to the earlier input).
    Minimum,
}

/// Runs `$body` with `$combine` bound to the closure computing `$op`'s two-operand step,
/// its operands swapped unless `$a_first`: a closure per operation, so that loops over
/// it vectorise (a `match` on the operation per value keeps them scalar).
macro_rules! with_combine {
    ($op:expr, $a_first:expr, |$combine:ident| $body:expr) => {
        match ($op, $a_first) {
            (MergeOp::Add | MergeOp::Average, _) => {
                let $combine = |a: f32, b: f32| a + b;
                $body
            }
            (MergeOp::Multiply, _) => {
                let $combine = |a: f32, b: f32| a * b;
                $body
            }
            (op, true) => {
                let $combine = move |a: f32, b: f32| op.combine(a, b);
                $body
            }
            (op, false) => {
                let $combine = move |a: f32, b: f32| op.combine(b, a);
                $body
            }
        }
    };
}

/// Every merge with its Keras class name and default layer name.
const MERGES: [(MergeOp, &str, &str); 6] = [
    (MergeOp::Add, "Add", "add"),
    (MergeOp::Subtract, "Subtract", "subtract"),
    (MergeOp::Multiply, "Multiply", "multiply"),
    (MergeOp::Average, "Average", "average"),
    (MergeOp::Maximum, "Maximum", "maximum"),
    (MergeOp::Minimum, "Minimum", "minimum"),
];

impl MergeOp {
    fn names(self) -> (&'static str, &'static str) {
        let (_, class, name) = MERGES
            .iter()
            .find(|(op, _, _)| *op == self)
            .expect("every merge is in MERGES");
        (class, name)
    }

    /// `a ∘ b` for the two-operand step of the merge (Average sums; Subtract subtracts).
    /// Loops over many values take [`with_combine!`]'s closures instead, which name the
    /// operation at compile time so that the loop vectorises.
    fn combine(self, a: f32, b: f32) -> f32 {
        match self {
            MergeOp::Add | MergeOp::Average => a + b,
            MergeOp::Subtract => a - b,
            MergeOp::Multiply => a * b,
            MergeOp::Maximum => a.max(b),
            MergeOp::Minimum => a.min(b),
        }
    }
}

/// One elementwise merge of two or more inputs that broadcast to one shape.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Merge {
    #[serde(skip)]
    base: LayerBase,
    /// Which merge the layer computes; also its Keras class name.
    #[serde(skip, default = "add")]
    pub op: MergeOp,
}

/// Keras's `Add()`: the sum of its inputs (a ResNet block's shortcut).
pub struct Add;
/// Keras's `Subtract()`: its first input minus its second.
pub struct Subtract;
/// Keras's `Multiply()`: the elementwise product of its inputs.
pub struct Multiply;
/// Keras's `Average()`: the elementwise mean of its inputs.
pub struct Average;
/// Keras's `Maximum()`: the elementwise maximum of its inputs.
pub struct Maximum;
/// Keras's `Minimum()`: the elementwise minimum of its inputs.
pub struct Minimum;

macro_rules! merge_constructor {
    ($ty:ident, $op:expr) => {
        impl $ty {
            /// The Keras layer of this class, taking inputs that broadcast to one shape.
            #[allow(clippy::new_ret_no_self)]
            pub fn new() -> Merge {
                Merge::new($op)
            }
        }
    };
}
merge_constructor!(Add, MergeOp::Add);
merge_constructor!(Subtract, MergeOp::Subtract);
merge_constructor!(Multiply, MergeOp::Multiply);
merge_constructor!(Average, MergeOp::Average);
merge_constructor!(Maximum, MergeOp::Maximum);
merge_constructor!(Minimum, MergeOp::Minimum);

impl Merge {
    /// Sets which merge this is (the registry reads every merge class alike).
    pub(super) fn op(mut self, op: MergeOp) -> Self {
        self.op = op;
        self
    }

    /// A merge layer computing `op`, named as Keras names its class (`add`, `multiply`, …).
    pub fn new(op: MergeOp) -> Self {
        Merge {
            base: LayerBase::new(op.names().1),
            op,
        }
    }
}

/// The shape that `shapes` broadcast to (same rank, each size equal or 1), or None.
pub(super) fn broadcast_shape(shapes: &[Shape]) -> Option<Shape> {
    let mut out = shapes.first()?.clone();
    for shape in &shapes[1..] {
        if shape.len() != out.len() {
            return None;
        }
        for (o, s) in out.iter_mut().zip(shape) {
            *o = match (*o, *s) {
                (Some(1), s) | (s, Some(1)) => s,
                (None, s) | (s, None) => s,
                (Some(a), Some(b)) if a == b => Some(a),
                _ => return None,
            };
        }
    }
    Some(out)
}

/// For each element of a tensor of shape `out`, the element of an input of shape
/// `shape` (broadcast to `out`) that it reads; None when the shapes are equal.
pub(super) fn broadcast_map(shape: &[usize], out: &[usize]) -> Option<Vec<usize>> {
    (shape != out).then(|| {
        let axes: Vec<usize> = (0..out.len()).filter(|&d| shape[d] != 1).collect();
        crate::kernels::norm::layer::subset_indices(out, &axes)
    })
}

/// Where each row (the last axis) of an `out`-shaped tensor finds its row of an input
/// of `shape` that keeps the last axis: a row per sample (a squeeze-and-excitation's
/// scale) or one for the whole batch is found by division, other shapes through a map
/// of the rows.
struct RowSources {
    /// Values a row: the last axis.
    row: usize,
    /// The source of each output row, where division does not find it.
    map: Option<Vec<usize>>,
    /// Output rows a sample, where the input has a row a sample (or one in all).
    sample_rows: usize,
    /// The input's batch.
    batch: usize,
}

impl RowSources {
    /// None where the input does not keep the last axis (or it is 1 long), so that
    /// whole rows do not line up.
    fn new(shape: &[usize], out: &[usize]) -> Option<RowSources> {
        let rank = out.len();
        let row = out.last().copied().unwrap_or(1);
        if rank < 2 || shape.len() != rank || shape[rank - 1] != row || row <= 1 {
            return None;
        }
        let per_sample = shape[1..rank - 1].iter().all(|&d| d == 1);
        Some(RowSources {
            row,
            map: (!per_sample)
                .then(|| broadcast_map(&shape[..rank - 1], &out[..rank - 1]))
                .flatten(),
            sample_rows: out[1..rank - 1].iter().product::<usize>().max(1),
            batch: shape[0],
        })
    }

    /// The row of `x` that output row `r` reads.
    fn row_of<'a>(&self, x: &'a Tensor, r: usize) -> &'a [f32] {
        let from = match &self.map {
            Some(map) => map[r],
            None => r / self.sample_rows % self.batch,
        };
        &x.data()[from * self.row..][..self.row]
    }
}

/// `y[i] = combine(acc[i], x[i broadcast])` for `y` and `acc` of shape `out`, each
/// value written once. When `x` keeps the last axis (a squeeze-and-excitation's
/// (N, 1, 1, C) against (N, H, W, C)), whole rows of that axis are combined at once:
/// only the rows are mapped, and the inner loop vectorises; large tensors are split
/// over rayon's threads.
fn combine_broadcast(
    y: &mut [f32],
    acc: &[f32],
    out: &[usize],
    x: &Tensor,
    combine: impl Fn(f32, f32) -> f32 + Sync,
) {
    let shape = x.shape();
    let combine_row = |row: &mut [f32], acc_row: &[f32], x_row: &[f32]| {
        for ((y, &a), &b) in row.iter_mut().zip(acc_row).zip(x_row) {
            *y = combine(a, b);
        }
    };
    if shape == out {
        in_rows(y, 1, |start, chunk| {
            let range = start..start + chunk.len();
            combine_row(chunk, &acc[range.clone()], &x.data()[range])
        });
        return;
    }
    if let Some(rows) = RowSources::new(shape, out) {
        let last = rows.row;
        in_rows(y, last, |first, chunk| {
            for (r, row) in chunk.chunks_mut(last).enumerate() {
                let r = first / last + r;
                let acc_row = &acc[r * last..(r + 1) * last];
                combine_row(row, acc_row, rows.row_of(x, r));
            }
        });
        return;
    }
    let map = broadcast_map(shape, out).expect("shapes differ");
    for ((y, &a), &j) in y.iter_mut().zip(acc).zip(&map) {
        *y = combine(a, x.data()[j]);
    }
}

/// The element of `x` that output element `i` reads.
fn read(x: &Tensor, map: &Option<Vec<usize>>, i: usize) -> f32 {
    x.data()[map.as_ref().map_or(i, |m| m[i])]
}

/// Adds `g` (of the output's shape) into `dx` (an input's), summing broadcast axes.
pub(super) fn reduce_into(
    dx: &mut Tensor,
    map: &Option<Vec<usize>>,
    g: impl Fn(usize) -> f32,
    len: usize,
) {
    let d = dx.data_mut();
    match map {
        None => d.iter_mut().enumerate().for_each(|(i, v)| *v += g(i)),
        Some(m) => (0..len).for_each(|i| d[m[i]] += g(i)),
    }
}

impl Layer for Merge {
    fn class_name(&self) -> &'static str {
        self.op.names().0
    }

    layer_base!();

    /// Every merge's gradient comes from its inputs (a maximum's winner is found again).
    fn backward_reads_output(&self) -> bool {
        false
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        if self.op == MergeOp::Subtract && inputs.len() != 2 {
            return Err(self.shape_error(&format!("needs exactly 2 inputs, got {}", inputs.len())));
        }
        at_least_two(self, inputs.len())?;
        broadcast_shape(inputs).ok_or_else(|| {
            self.shape_error(&format!(
                "inputs have incompatible shapes (they must be the same shape, or 1 where they differ): got {}",
                inputs
                    .iter()
                    .map(format_shape)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let out = infer(self, inputs)?;
        // The input of the output's shape, if any, starts the result; the others are
        // combined with it, each into a new buffer (written once, not copied first).
        let first = inputs.iter().position(|x| x.shape() == out.as_slice());
        let mut y = match first {
            Some(i) => Cow::Borrowed(inputs[i]),
            None => {
                let map = broadcast_map(inputs[0].shape(), &out);
                let m = map.expect("an input of another shape than the output");
                let values = m.iter().map(|&j| inputs[0].data()[j]).collect();
                Cow::Owned(Tensor::new(out.clone(), values)?)
            }
        };
        let start = first.unwrap_or(0);
        for (k, x) in inputs.iter().enumerate().filter(|&(k, _)| k != start) {
            let mut next = crate::buffers::take(y.len());
            // Subtract reads its inputs in order.
            with_combine!(self.op, k > start, |combine| combine_broadcast(
                &mut next,
                y.data(),
                &out,
                x,
                combine
            ));
            y = Cow::Owned(Tensor::new(out.clone(), next)?);
        }
        let mut y = y.into_owned();
        if self.op == MergeOp::Average {
            let inv = 1.0 / inputs.len() as f32;
            y.map_inplace(|v| v * inv);
        }
        Ok(y)
    }

    /// Two inputs of one shape and an element-wise activation after them (a residual
    /// block's Add → ReLU): one pass, the activation on each chunk as it is combined.
    fn apply_fused(&self, inputs: &[&Tensor], fusion: &Fusion) -> Option<Result<Tensor>> {
        let [a, b] = inputs else { return None };
        let plain = fusion.affine.is_none() && self.op != MergeOp::Average;
        if !plain || a.shape() != b.shape() {
            return None;
        }
        if let Err(e) = infer(self, inputs) {
            return Some(Err(e));
        }
        let activation = fusion.activation;
        let y = with_combine!(self.op, true, |combine| zip_with_then(
            a.data(),
            b.data(),
            combine,
            |chunk| activation.apply_slice(chunk, 1)
        ));
        Some(Tensor::new(a.shape().to_vec(), y))
    }

    /// A sum or product of two tensors (a residual Add; a squeeze-and-excitation's
    /// Multiply by its per-sample scale) combined into the first, which has the
    /// output's shape, and the activation after it: the order of the terms does not
    /// change a sum or a product.
    fn apply_fused_in_place(
        &self,
        acc: &mut Tensor,
        other: &Tensor,
        fusion: &Fusion,
    ) -> Option<Result<()>> {
        if !matches!(self.op, MergeOp::Add | MergeOp::Multiply) || fusion.affine.is_some() {
            return None;
        }
        let out = match infer(self, &[acc, other]) {
            Ok(out) => out,
            Err(e) => return Some(Err(e)),
        };
        let rows = (other.shape() != out)
            .then(|| RowSources::new(other.shape(), &out))
            .flatten();
        if acc.shape() != out || (other.shape() != out && rows.is_none()) {
            return None;
        }
        if acc.is_empty() {
            return Some(Ok(()));
        }
        let activation = fusion.activation;
        let then = |chunk: &mut [f32]| activation.apply_slice(chunk, 1);
        with_combine!(self.op, true, |combine| match &rows {
            None => zip_into_then(acc.data_mut(), other.data(), combine, then),
            Some(rows) => in_rows(acc.data_mut(), rows.row, |first, chunk| {
                for (r, row) in chunk.chunks_mut(rows.row).enumerate() {
                    let x_row = rows.row_of(other, first / rows.row + r);
                    row.iter_mut()
                        .zip(x_row)
                        .for_each(|(y, &b)| *y = combine(*y, b));
                }
                then(chunk);
            }),
        });
        Some(Ok(()))
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let out = dy.shape().to_vec();
        let len = dy.len();
        let maps: Vec<_> = inputs
            .iter()
            .map(|x| broadcast_map(x.shape(), &out))
            .collect();
        let n = inputs.len();
        let sum = matches!(self.op, MergeOp::Add | MergeOp::Average | MergeOp::Subtract);
        let factor = |k: usize| match self.op {
            MergeOp::Average => 1.0 / n as f32,
            MergeOp::Subtract if k == 1 => -1.0,
            _ => 1.0,
        };
        // An input of the output's shape that a sum takes as it is (a residual Add's)
        // has `dy` itself for its gradient, shared, not copied.
        let shares_dy = |k: usize| sum && maps[k].is_none() && factor(k) == 1.0;
        let mut grads: Vec<Tensor> = (0..n)
            .map(|k| match shares_dy(k) {
                true => dy.clone(),
                false => inputs[k].zeros_like(),
            })
            .collect();
        let dy = dy.data();
        match self.op {
            MergeOp::Add | MergeOp::Average | MergeOp::Subtract => {
                for k in (0..n).filter(|&k| !shares_dy(k)) {
                    let factor = factor(k);
                    reduce_into(&mut grads[k], &maps[k], |i| dy[i] * factor, len);
                }
            }
            // d(x0·x1·…)/dxk = dy · the product of the other inputs.
            MergeOp::Multiply => {
                for (k, (g, map)) in grads.iter_mut().zip(&maps).enumerate() {
                    let others = |i: usize| {
                        (0..n)
                            .filter(|&j| j != k)
                            .map(|j| read(inputs[j], &maps[j], i))
                            .product::<f32>()
                    };
                    reduce_into(g, map, |i| dy[i] * others(i), len);
                }
            }
            // The gradient goes to the input that gave the output.
            MergeOp::Maximum | MergeOp::Minimum => {
                let winner = |i: usize| {
                    let mut best = (0, read(inputs[0], &maps[0], i));
                    for j in 1..n {
                        let v = read(inputs[j], &maps[j], i);
                        if self.op.combine(best.1, v) != best.1 {
                            best = (j, v);
                        }
                    }
                    best.0
                };
                for (k, (g, map)) in grads.iter_mut().zip(&maps).enumerate() {
                    reduce_into(g, map, |i| if winner(i) == k { dy[i] } else { 0.0 }, len);
                }
            }
        }
        Ok(grads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `shape`'s values 0.1·(i + 1) − offset.
    fn ramp(shape: &[usize], offset: f32) -> Tensor {
        let n = shape.iter().product();
        Tensor::new(
            shape.to_vec(),
            (0..n).map(|i| 0.1 * (i + 1) as f32 - offset).collect(),
        )
        .unwrap()
    }

    /// Element `i` of `out`-shaped broadcasting from `x`, by its coordinates.
    fn at(x: &Tensor, out: &[usize], mut i: usize) -> f32 {
        let mut index = 0;
        let mut stride = 1;
        for d in (0..out.len()).rev() {
            let coord = i % out[d];
            i /= out[d];
            if x.shape()[d] != 1 {
                index += coord * stride;
            }
            stride *= x.shape()[d];
        }
        x.data()[index]
    }

    #[test]
    fn broadcasting_merges_match_elementwise_definitions() {
        let out = [2, 4, 3, 5];
        // Rows of the last axis (a squeeze-and-excitation, per sample and for the whole
        // batch), other axes (the general map), no input of the output's shape, and three
        // inputs in order.
        let cases: [(MergeOp, Vec<Vec<usize>>); 5] = [
            (MergeOp::Multiply, vec![vec![2, 4, 3, 5], vec![2, 1, 1, 5]]),
            (MergeOp::Multiply, vec![vec![1, 1, 1, 5], vec![2, 4, 3, 5]]),
            (MergeOp::Subtract, vec![vec![2, 1, 3, 1], vec![2, 4, 3, 5]]),
            (MergeOp::Maximum, vec![vec![2, 4, 1, 5], vec![1, 1, 3, 5]]),
            (MergeOp::Subtract, vec![vec![1, 4, 3, 5], vec![2, 4, 3, 5]]),
        ];
        for (op, shapes) in cases {
            let inputs: Vec<Tensor> = shapes
                .iter()
                .enumerate()
                .map(|(k, s)| ramp(s, k as f32))
                .collect();
            let refs: Vec<&Tensor> = inputs.iter().collect();
            let y = Merge::new(op).apply(&refs).unwrap();
            assert_eq!(y.shape(), out);
            for (i, &got) in y.data().iter().enumerate() {
                let want = inputs[1..].iter().fold(at(&inputs[0], &out, i), |acc, x| {
                    op.combine(acc, at(x, &out, i))
                });
                assert_eq!(got, want, "{op:?} {shapes:?} at {i}");
            }
        }
        // Big enough to be combined in parallel chunks.
        let big = [2, 40, 30, 64];
        for (op, other) in [(MergeOp::Multiply, [2, 1, 1, 64]), (MergeOp::Subtract, big)] {
            let (a, b) = (ramp(&big, 0.0), ramp(&other, 1.0));
            let y = Merge::new(op).apply(&[&b, &a]).unwrap();
            for (i, &got) in y.data().iter().enumerate() {
                assert_eq!(
                    got,
                    op.combine(at(&b, &big, i), a.data()[i]),
                    "{op:?} at {i}"
                );
            }
        }
        let three: Vec<Tensor> = [[2, 4, 3, 5], [2, 4, 1, 1], [2, 4, 3, 5]]
            .iter()
            .enumerate()
            .map(|(k, s)| ramp(s, k as f32))
            .collect();
        let y = Merge::new(MergeOp::Subtract)
            .apply(&[&three[0], &three[1]])
            .unwrap();
        let z = Merge::new(MergeOp::Add)
            .apply(&three.iter().collect::<Vec<_>>())
            .unwrap();
        for i in 0..y.len() {
            let (a, b, c) = (
                at(&three[0], &out, i),
                at(&three[1], &out, i),
                at(&three[2], &out, i),
            );
            assert_eq!(y.data()[i], a - b);
            assert_eq!(z.data()[i], a + b + c);
        }
    }
}
