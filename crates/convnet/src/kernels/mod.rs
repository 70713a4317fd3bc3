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
/// in cache: add the bias (per output channel), map each channel affinely and apply the
/// activation. Fusing them saves passes over the output, which on big layers cost as
/// much as the products.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// Per-output-channel bias added to every output pixel, or `None` for no bias.
    pub bias: Option<&'a [f32]>,
    /// A per-channel `y = x·scale + shift` after the bias: an inference-mode
    /// BatchNormalization folded into the layer before it.
    pub affine: Option<Affine<'a>>,
    /// Applied element-wise last (`Linear` leaves the values as they are).
    pub activation: ActivationFn,
}

/// Per-channel `y = x·scale + shift`, one scale and one shift per output channel.
#[derive(Clone, Copy, Debug)]
pub struct Affine<'a> {
    /// Multiplies channel c's values.
    pub scale: &'a [f32],
    /// Then added to channel c's values.
    pub shift: &'a [f32],
}

impl<'a> Epilogue<'a> {
    /// Just `activation`: no bias, no affine map.
    pub fn of(activation: ActivationFn) -> Self {
        Epilogue {
            activation,
            ..Epilogue::default()
        }
    }

    /// This epilogue with `bias` added first.
    pub fn with_bias(self, bias: Option<&'a [f32]>) -> Self {
        Epilogue { bias, ..self }
    }

    /// The whole epilogue on a finished output of rows of `channels`, for kernels that
    /// do not apply it block by block.
    pub(crate) fn apply_to(&self, y: &mut [f32], channels: usize) {
        self.finish_rows(y, channels, self.bias);
    }

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

    /// Applies the affine map and the activation to whole rows of `channels` outputs:
    /// in one vectorised pass for the ReLUs (the common case), else the affine map's
    /// pass and then the activation's.
    pub(crate) fn finish(&self, rows: &mut [f32], channels: usize) {
        self.finish_rows(rows, channels, None);
    }

    /// The activation split in two: the clamp that goes in the affine map's pass (the
    /// ReLUs), and any other activation, which runs after it.
    pub(crate) fn clamp_and_after(&self) -> (Clamp, ActivationFn) {
        match self.activation {
            ActivationFn::Relu => (Clamp::Relu, ActivationFn::Linear),
            ActivationFn::Relu6 => (Clamp::Relu6, ActivationFn::Linear),
            other => (Clamp::None, other),
        }
    }

    /// [`Epilogue::finish`] with `bias` added first, in the same pass.
    fn finish_rows(&self, rows: &mut [f32], channels: usize, bias: Option<&[f32]>) {
        let affine = self.affine;
        let (clamp, after) = self.clamp_and_after();
        if bias.is_some() || affine.is_some() || clamp != Clamp::None {
            simd::dispatch!(affine_then_clamp(rows, channels, bias, affine, clamp));
        }
        after.apply_slice(rows, channels);
    }
}

/// The ReLUs that [`Epilogue::finish`] applies in the affine map's pass.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Clamp {
    None,
    Relu,
    Relu6,
}

impl Clamp {
    /// Its (lower, upper) bounds; None for no clamp.
    pub(crate) fn bounds(self) -> Option<(f32, f32)> {
        match self {
            Clamp::None => None,
            Clamp::Relu => Some((0.0, f32::INFINITY)),
            Clamp::Relu6 => Some((0.0, 6.0)),
        }
    }
}

/// `v = clamp((v + bias)·scale + shift)` over rows of `channels`, the bias and the
/// affine map per channel.
#[inline(always)]
fn affine_then_clamp<const FMA: bool>(
    rows: &mut [f32],
    channels: usize,
    bias: Option<&[f32]>,
    affine: Option<Affine>,
    clamp: Clamp,
) {
    // A loop per clamp, each vectorised on its own.
    match clamp {
        Clamp::None => affine_then::<FMA>(rows, channels, bias, affine, |v| v),
        Clamp::Relu => affine_then::<FMA>(rows, channels, bias, affine, |v| v.max(0.0)),
        Clamp::Relu6 => affine_then::<FMA>(rows, channels, bias, affine, |v| v.clamp(0.0, 6.0)),
    }
}

#[inline(always)]
fn affine_then<const FMA: bool>(
    rows: &mut [f32],
    channels: usize,
    bias: Option<&[f32]>,
    affine: Option<Affine>,
    then: impl Fn(f32) -> f32,
) {
    match (bias, affine) {
        (Some(bias), Some(Affine { scale, shift })) => {
            for row in rows.chunks_exact_mut(channels) {
                let lanes = row.iter_mut().zip(bias).zip(scale).zip(shift);
                for (((v, &b), &s), &t) in lanes {
                    *v = then(simd::madd::<FMA>(*v + b, s, t));
                }
            }
        }
        (None, Some(Affine { scale, shift })) => {
            for row in rows.chunks_exact_mut(channels) {
                for ((v, &s), &t) in row.iter_mut().zip(scale).zip(shift) {
                    *v = then(simd::madd::<FMA>(*v, s, t));
                }
            }
        }
        (Some(bias), None) => {
            for row in rows.chunks_exact_mut(channels) {
                row.iter_mut()
                    .zip(bias)
                    .for_each(|(v, &b)| *v = then(*v + b));
            }
        }
        (None, None) => rows.iter_mut().for_each(|v| *v = then(*v)),
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
