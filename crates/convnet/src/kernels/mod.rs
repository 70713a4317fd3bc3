//! Compute kernels: plain functions on slices, no layer logic and no allocation policy
//! beyond the small scratch tiles they need. Layers (in `crate::layers`) decide shapes,
//! weights and what to keep for backward; these functions only compute.
//!
//! Every kernel comes with its gradients side by side: `*_forward`, `*_backward_input`
//! (dL/dx from dL/dy) and, where there is a weight, `*_backward_kernel` (dL/dW, accumulated
//! into the caller's buffer so shared layers and tiles can add up).

pub mod activation;
pub mod bias;
pub mod conv;
pub mod depthwise;
pub mod elementwise;
pub mod gemm;
pub mod norm;
pub mod pool;
pub mod resize;
pub mod simd;
pub mod warp;

pub use conv::{ConvGeometry, Padding};

use crate::activations::ActivationFn;

/// What a forward kernel does to each finished block of output rows while it is still
/// in cache: add the bias (per output channel) and apply the activation. Fusing them
/// saves two passes over the output, which on big layers cost as much as the products.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    /// Per-output-channel bias added to every output pixel, or `None` for no bias.
    pub bias: Option<&'a [f32]>,
    /// Applied element-wise after the bias (`Linear` leaves the values as they are).
    pub activation: ActivationFn,
}

impl Default for Epilogue<'_> {
    fn default() -> Self {
        Epilogue {
            bias: None,
            activation: ActivationFn::Linear,
        }
    }
}

impl Epilogue<'_> {
    /// Fills whole rows of `channels` outputs with the bias (or zeros), the starting
    /// value the products are added to.
    pub(crate) fn init(&self, rows: &mut [f32], channels: usize) {
        match self.bias {
            Some(bias) => rows
                .chunks_exact_mut(channels)
                .for_each(|r| r.copy_from_slice(bias)),
            None => rows.fill(0.0),
        }
    }

    /// The bias of output channels `channels` as a product's starting value.
    pub(crate) fn start(&self, channels: std::ops::Range<usize>) -> gemm::Start<'_> {
        self.bias
            .map_or(gemm::Start::Zeros, |b| gemm::Start::Bias(&b[channels]))
    }

    /// Applies the activation to whole rows of `channels` outputs.
    pub(crate) fn finish(&self, rows: &mut [f32], channels: usize) {
        self.activation.apply_slice(rows, channels);
    }
}
pub use pool::PoolGeometry;

/// Work below this many multiply-adds runs on the calling thread: splitting it would cost
/// more in rayon's bookkeeping than it saves.
pub(crate) const PARALLEL_THRESHOLD: usize = 1 << 15;

/// `dst += Σ partials`, the partials added one after another in their order: per-task
/// kernel gradients summed the same way whatever the thread count or scheduling.
pub(crate) fn sum_in_order<P: std::ops::Deref<Target = [f32]>>(dst: &mut [f32], partials: &[P]) {
    let mut total = crate::buffers::Scratch::zeroed(dst.len());
    for p in partials {
        total.iter_mut().zip(p.iter()).for_each(|(t, v)| *t += v);
    }
    dst.iter_mut().zip(total.iter()).for_each(|(d, t)| *d += t);
}
