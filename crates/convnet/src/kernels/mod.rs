//! Compute kernels: plain functions on slices, no layer logic and no allocation policy
//! beyond the small scratch tiles they need. Layers (in `crate::layers`) decide shapes,
//! weights and what to keep for backward; these functions only compute.
//!
//! Every kernel comes with its gradients side by side: `*_forward`, `*_backward_input`
//! (dL/dx from dL/dy) and, where there is a weight, `*_backward_kernel` (dL/dW, accumulated
//! into the caller's buffer so shared layers and tiles can add up).

pub mod conv;
pub mod depthwise;
pub mod gemm;
pub mod norm;
pub mod pool;

pub use conv::{ConvGeometry, Padding};
pub use pool::PoolGeometry;

/// Work below this many multiply-adds runs on the calling thread: splitting it would cost
/// more in rayon's bookkeeping than it saves.
pub(crate) const PARALLEL_THRESHOLD: usize = 1 << 15;

/// `dst += Σ partials`, the partials added one after another in their order: per-task
/// kernel gradients summed the same way whatever the thread count or scheduling.
pub(crate) fn sum_in_order(dst: &mut [f32], partials: &[Vec<f32>]) {
    let mut total = vec![0.0f32; dst.len()];
    for p in partials {
        total.iter_mut().zip(p).for_each(|(t, v)| *t += v);
    }
    dst.iter_mut().zip(&total).for_each(|(d, t)| *d += t);
}
