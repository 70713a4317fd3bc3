//! Elementwise combinations of two equally long buffers (the merge layers' Add,
//! Multiply, …), written into a fresh output in one pass, in parallel chunks when large.

use rayon::prelude::*;

/// Values at or above this many go to rayon's threads in chunks.
const PARALLEL_FROM: usize = 1 << 16;

/// `combine(a[i], b[i])` for every i.
pub fn zip_with(a: &[f32], b: &[f32], combine: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "zip_with lengths");
    let mut out = vec![0f32; a.len()];
    let run = |(y, (a, b)): (&mut [f32], (&[f32], &[f32]))| {
        y.iter_mut()
            .zip(a.iter().zip(b))
            .for_each(|(y, (&a, &b))| *y = combine(a, b));
    };
    if a.len() < PARALLEL_FROM {
        run((&mut out, (a, b)));
    } else {
        let chunk = PARALLEL_FROM / 4;
        out.par_chunks_mut(chunk)
            .zip(a.par_chunks(chunk).zip(b.par_chunks(chunk)))
            .for_each(run);
    }
    out
}
