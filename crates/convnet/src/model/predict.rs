//! Keras's `model.predict(x, batch_size)`: inference over many samples in batches, and
//! the batch arithmetic that training shares with it.

use super::graph::Model;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use rayon::prelude::*;

impl Model {
    /// Keras's `model.predict(x, batch_size)`: inference in batches, the batches spread
    /// over threads; one tensor per output with all samples.
    pub fn predict(&self, x: &[Tensor], batch_size: usize) -> Result<Vec<Tensor>> {
        let n = sample_count(x, &[])?;
        let starts: Vec<usize> = (0..n).step_by(batch_size.max(1)).collect();
        // The batches run on rayon's threads at once: their plans add up.
        let copies = starts.len().min(rayon::current_num_threads());
        self.check_memory(&batch_shapes(x, batch_size.max(1).min(n)), copies, false)?;
        let batches: Vec<Vec<Tensor>> = starts
            .par_iter()
            .map(|&start| {
                let end = (start + batch_size).min(n);
                let bx = slice_rows(x, start, end)?;
                let refs: Vec<&Tensor> = bx.iter().collect();
                self.apply(&refs)
            })
            .collect::<Result<_>>()?;
        (0..self.outputs().len())
            .map(|o| {
                let parts: Vec<&Tensor> = batches.iter().map(|b| &b[o]).collect();
                concat_rows(&parts)
            })
            .collect()
    }
}

/// The number of samples; every input and target must have the same.
pub(crate) fn sample_count(x: &[Tensor], y: &[Tensor]) -> Result<usize> {
    let n = x
        .first()
        .map(Tensor::batch_len)
        .ok_or_else(|| Error::data("no input data"))?;
    for (what, t) in x
        .iter()
        .map(|t| ("input", t))
        .chain(y.iter().map(|t| ("target", t)))
    {
        if t.batch_len() != n {
            return Err(Error::data(format!(
                "every input and target needs the same number of samples: the first input has {n}, a {what} of shape {:?} has {}",
                t.shape(),
                t.batch_len()
            )));
        }
    }
    Ok(n)
}

/// Samples `start..end` of each tensor.
pub(crate) fn slice_rows(tensors: &[Tensor], start: usize, end: usize) -> Result<Vec<Tensor>> {
    tensors.iter().map(|t| t.slice_rows(start, end)).collect()
}

/// The shapes of a batch of `rows` samples of each tensor.
pub(crate) fn batch_shapes(x: &[Tensor], rows: usize) -> Vec<Vec<usize>> {
    x.iter()
        .map(|t| {
            let mut shape = t.shape().to_vec();
            if let Some(first) = shape.first_mut() {
                *first = rows.max(1);
            }
            shape
        })
        .collect()
}

/// Stacks tensors along the first axis.
fn concat_rows(parts: &[&Tensor]) -> Result<Tensor> {
    let first = parts
        .first()
        .ok_or_else(|| Error::data("nothing to predict: no samples"))?;
    let mut shape = first.shape().to_vec();
    shape[0] = parts.iter().map(|p| p.batch_len()).sum();
    let data = parts
        .iter()
        .flat_map(|p| p.data().iter().copied())
        .collect();
    Tensor::new(shape, data)
}
