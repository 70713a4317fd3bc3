//! A layer's bias: added to every row of an output, and its gradient, the per-channel
//! sum of the output gradient over rows.

use rayon::prelude::*;

/// Adds a bias along the last axis.
pub fn add_bias(y: &mut [f32], bias: &[f32]) {
    for row in y.chunks_exact_mut(bias.len()) {
        row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
    }
}

/// Sums a gradient over every axis but the last, into `db`: one contiguous run of rows
/// per thread, the runs' sums added in order (the same result for the same thread count,
/// however the threads are scheduled).
pub fn bias_grad(dz: &[f32], db: &mut [f32]) {
    let rows = dz.len().checked_div(db.len()).unwrap_or(0);
    let runs = if dz.len() < 1 << 16 {
        1
    } else {
        rayon::current_num_threads().clamp(1, rows)
    };
    let partials: Vec<Vec<f32>> = (0..runs)
        .into_par_iter()
        .map(|run| {
            let mut sum = vec![0.0f32; db.len()];
            let (start, end) = (run * rows / runs, (run + 1) * rows / runs);
            for row in dz[start * db.len()..end * db.len()].chunks_exact(db.len()) {
                sum.iter_mut().zip(row).for_each(|(d, g)| *d += g);
            }
            sum
        })
        .collect();
    crate::kernels::sum_in_order(db, &partials);
}
