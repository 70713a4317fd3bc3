//! Elementwise passes over buffers: a function over one in place (the activations), or
//! two equally long ones combined into a fresh output (the merge layers' Add, Multiply,
//! …), each in one pass, in parallel chunks when large.

use rayon::prelude::*;

/// Values at or above this many go to rayon's threads in chunks.
const PARALLEL_FROM: usize = 1 << 16;

/// Chunks go to the threads this long.
const CHUNK: usize = PARALLEL_FROM / 4;

/// `f` over `data` in place: over chunks on rayon's threads when there is enough of it.
pub fn in_chunks(data: &mut [f32], f: impl Fn(&mut [f32]) + Sync + Send) {
    if data.len() < PARALLEL_FROM {
        f(data);
    } else {
        data.par_chunks_mut(CHUNK).for_each(f);
    }
}

/// `f(start, chunk)` over `data` cut into chunks of whole rows of `row` values (`start`
/// the chunk's first index): over chunks on rayon's threads when there is enough of it.
pub fn in_rows(data: &mut [f32], row: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if data.len() < PARALLEL_FROM {
        return f(0, data);
    }
    let chunk = CHUNK.div_ceil(row) * row;
    data.par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| f(i * chunk, c));
}

/// `out` made a copy of `src`, then `then(start, chunk)` on each chunk of it (cut as
/// [`in_rows`] cuts it) while the chunk is in cache: a function's output written from
/// its input in one pass over memory, where a whole copy followed by a pass in place
/// would read and write every value twice.
pub fn copy_then(
    src: &[f32],
    out: &mut [f32],
    row: usize,
    then: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    assert_eq!(src.len(), out.len(), "copy_then lengths");
    in_rows(out, row.max(1), |start, chunk| {
        chunk.copy_from_slice(&src[start..][..chunk.len()]);
        then(start, chunk);
    });
}

/// Copies each part `(first, width, values)` into columns `first..first + width` of the
/// rows of `row` values in `out` (a Concatenate's inputs, each into its own columns):
/// row o of a part is `values[o * width..][..width]`. Every value is written once, the
/// rows in parallel chunks when large.
pub fn copy_into_columns(out: &mut [f32], row: usize, parts: &[(usize, usize, &[f32])]) {
    if row == 0 {
        return;
    }
    in_rows(out, row, |start, chunk| {
        for (r, out) in chunk.chunks_exact_mut(row).enumerate() {
            let o = start / row + r;
            for &(first, width, values) in parts {
                out[first..first + width].copy_from_slice(&values[o * width..][..width]);
            }
        }
    });
}

/// `combine(a[i], b[i])` for every i.
pub fn zip_with(a: &[f32], b: &[f32], combine: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    zip_with_then(a, b, combine, |_| {})
}

/// [`zip_with`], then `then` on each chunk of the result while it is in cache (an
/// activation after a residual Add).
pub fn zip_with_then(
    a: &[f32],
    b: &[f32],
    combine: impl Fn(f32, f32) -> f32 + Sync,
    then: impl Fn(&mut [f32]) + Sync,
) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "zip_with lengths");
    // Every value is written below, so a pooled buffer needs no zeroing first.
    let mut out = crate::buffers::take(a.len());
    let run = |(y, (a, b)): (&mut [f32], (&[f32], &[f32]))| {
        y.iter_mut()
            .zip(a.iter().zip(b))
            .for_each(|(y, (&a, &b))| *y = combine(a, b));
        then(y);
    };
    if a.len() < PARALLEL_FROM {
        run((&mut out, (a, b)));
    } else {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(run);
    }
    out
}

/// [`zip_with_then`] written over `acc`: `acc[i] = combine(acc[i], b[i])`, then `then`
/// on each chunk.
pub fn zip_into_then(
    acc: &mut [f32],
    b: &[f32],
    combine: impl Fn(f32, f32) -> f32 + Sync,
    then: impl Fn(&mut [f32]) + Sync,
) {
    assert_eq!(acc.len(), b.len(), "zip_with lengths");
    let run = |(y, b): (&mut [f32], &[f32])| {
        y.iter_mut().zip(b).for_each(|(y, &b)| *y = combine(*y, b));
        then(y);
    };
    if acc.len() < PARALLEL_FROM {
        run((acc, b));
    } else {
        acc.par_chunks_mut(CHUNK)
            .zip(b.par_chunks(CHUNK))
            .for_each(run);
    }
}
