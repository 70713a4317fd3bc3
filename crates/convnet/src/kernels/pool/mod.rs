//! Max and average pooling over NHWC windows. Padded cells never take part: max pooling
//! ignores them, and average pooling divides by the number of real cells under the
//! window, as Keras (TensorFlow) does for `padding="same"`.
//!
//! Files: `mod.rs` the shapes and entry points, `portable.rs` the loops (generic over
//! FMA, compiled for AVX2+FMA and the baseline by `dispatch!`; no intrinsics).

mod portable;

use crate::kernels::simd::dispatch;
use portable::{backward_image, forward_row, max_backward_disjoint};
use rayon::prelude::*;

/// Everything a pooling kernel needs to know about its shapes (NHWC, channels pooled
/// independently).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    /// Images in the batch.
    pub batch: usize,
    /// Input rows.
    pub in_h: usize,
    /// Input columns.
    pub in_w: usize,
    /// Channels, the same in the input and the output.
    pub channels: usize,
    /// Output rows.
    pub out_h: usize,
    /// Output columns.
    pub out_w: usize,
    /// Window rows.
    pub pool_h: usize,
    /// Window columns.
    pub pool_w: usize,
    /// Step between neighbouring windows along the rows.
    pub stride_h: usize,
    /// Step between neighbouring windows along the columns.
    pub stride_w: usize,
    /// Padded rows above the input (they never count as cells of a window).
    pub pad_top: usize,
    /// Padded columns left of the input (they never count as cells of a window).
    pub pad_left: usize,
}

impl PoolGeometry {
    /// Elements of the NHWC input: `batch · in_h · in_w · channels`.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.channels
    }

    /// Elements of the NHWC output: `batch · out_h · out_w · channels`.
    pub fn output_len(&self) -> usize {
        self.batch * self.out_h * self.out_w * self.channels
    }

    /// The window of output pixel (oy, ox) clipped to the input: rows and columns.
    fn window(&self, oy: usize, ox: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let clip = |o: usize, stride: usize, pad: usize, size: usize, len: usize| {
            let start = (o * stride) as isize - pad as isize;
            let end = (start + size as isize).min(len as isize);
            (start.max(0) as usize)..(end.max(0) as usize)
        };
        (
            clip(oy, self.stride_h, self.pad_top, self.pool_h, self.in_h),
            clip(ox, self.stride_w, self.pad_left, self.pool_w, self.in_w),
        )
    }

    fn check(&self, x: usize, y: usize) {
        assert_eq!(x, self.input_len(), "pool input length");
        assert_eq!(y, self.output_len(), "pool output length");
    }
}

/// Which reduction a pooling window applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// The largest value under the window.
    Max,
    /// The mean of the real (unpadded) cells under the window.
    Average,
}

/// `y = pool(x)`; `y` is overwritten.
pub fn pool_forward(g: &PoolGeometry, kind: PoolKind, x: &[f32], y: &mut [f32]) {
    g.check(x.len(), y.len());
    if y.is_empty() {
        return;
    }
    // One task per output row; the channels of a pixel are the vectorised axis.
    y.par_chunks_mut(g.out_w * g.channels)
        .enumerate()
        .for_each(|(row, y_row)| dispatch!(forward_row(g, kind, x, row, y_row)));
}

/// `dx = dL/dx` from the input `x`, the forward pass's output `y` and `dy`; `dx` is
/// overwritten. Max pooling sends each output's gradient to the first cell of its window
/// that holds the maximum, `y`'s value (so the windows are not searched for it again).
pub fn pool_backward(
    g: &PoolGeometry,
    kind: PoolKind,
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    g.check(x.len(), dy.len());
    assert_eq!(y.len(), dy.len(), "pool output length");
    assert_eq!(dx.len(), x.len(), "pool gradient length");
    let image_in = g.in_h * g.in_w * g.channels;
    if image_in == 0 {
        return;
    }
    let disjoint = kind == PoolKind::Max
        && (g.stride_h, g.stride_w) == (g.pool_h, g.pool_w)
        && (g.pad_top, g.pad_left) == (0, 0)
        && g.out_h * g.pool_h <= g.in_h
        && g.out_w * g.pool_w <= g.in_w;
    let image_out = g.out_h * g.out_w * g.channels;
    // Windows may overlap within an image, so each image is one task.
    dx.par_chunks_mut(image_in)
        .enumerate()
        .for_each(|(n, dx_image)| {
            let x = &x[n * image_in..][..image_in];
            let (y, dy) = (
                &y[n * image_out..][..image_out],
                &dy[n * image_out..][..image_out],
            );
            if disjoint {
                dispatch!(max_backward_disjoint(g, x, y, dy, dx_image))
            } else {
                dispatch!(backward_image(g, kind, x, y, dy, dx_image))
            }
        });
}
