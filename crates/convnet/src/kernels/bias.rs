//! A layer's bias gradient: the per-channel sum of the output gradient over rows. (The
//! bias itself is added in the forward kernels' epilogue, `Epilogue`.)

use rayon::prelude::*;

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
