//! Activation gradients that run as kernels of their own.

use rayon::prelude::*;

/// `dz = dy` where the ReLU's output `y` is positive, else 0: dL/dz through a ReLU, in
/// parallel chunks. `dz` is overwritten.
pub fn relu_backward(dy: &[f32], y: &[f32], dz: &mut [f32]) {
    assert!(
        dy.len() == dz.len() && y.len() == dz.len(),
        "relu_backward lengths"
    );
    // One pass that writes dz, rather than a copy of dy and a pass over the copy.
    const CHUNK: usize = 1 << 15;
    let chunks = dz.par_chunks_mut(CHUNK).zip(dy.par_chunks(CHUNK));
    chunks.zip(y.par_chunks(CHUNK)).for_each(|((dz, dy), y)| {
        let lanes = dz.iter_mut().zip(dy).zip(y);
        lanes.for_each(|((z, &d), &y)| *z = if y > 0.0 { d } else { 0.0 });
    });
}
