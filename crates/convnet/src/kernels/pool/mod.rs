//! Max and average pooling over NHWC windows. Padded cells never take part: max pooling
//! ignores them, and average pooling divides by the number of real cells under the
//! window, as Keras (TensorFlow) does for `padding="same"`; except where a ZeroPadding2D
//! before the pooling is taken into its window at inference
//! ([`PoolGeometry::zero_padded`]), whose padded cells are zeros that take part.
//!
//! Files: `mod.rs` the shapes and entry points, `portable.rs` the loops (generic over
//! FMA, compiled for AVX2+FMA and the baseline by `dispatch!`; no intrinsics).

mod portable;

use crate::kernels::simd::dispatch;
use portable::{backward_image, forward_row, max_backward_disjoint, pool_pixels};
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
    /// Whether the padded cells are zeros that take part in each window, as a
    /// ZeroPadding2D before a `valid` pooling makes them, instead of being left out:
    /// the padding is taken into the window so that the padded copy is never made.
    /// Forward only.
    pub zero_padded: bool,
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

    /// Cells of a window the pooling counts: the whole window when padded cells are
    /// zeros that take part, else those of it on the input.
    fn counted_cells(&self, on_input: usize) -> usize {
        if self.zero_padded {
            self.pool_h * self.pool_w
        } else {
            on_input
        }
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

/// `out` combined with `xs`, value by value, by the pool's operation: the maximum or
/// the sum.
#[inline(always)]
fn combine(kind: PoolKind, out: &mut [f32], xs: &[f32]) {
    match kind {
        PoolKind::Max => out.iter_mut().zip(xs).for_each(|(o, &v)| *o = o.max(v)),
        PoolKind::Average => out.iter_mut().zip(xs).for_each(|(o, &v)| *o += v),
    }
}

/// Values of an image's map per part of a global pool, at least: smaller maps are one
/// part, so that a task is worth its bookkeeping.
const GLOBAL_PART: usize = 1 << 14;

/// `y = kind(x)` over all `pixels` pixels of each image (a global pool, `channels` per
/// pixel; `y` one row per image). A window pool would give a batch-1 image's one output
/// row to one thread; here each image's pixels are cut into up to eight parts, pooled
/// in parallel into a row each and then combined in order. The parts depend on the
/// sizes alone, so the result does not depend on the threads.
pub fn global_pool_forward(
    batch: usize,
    pixels: usize,
    channels: usize,
    kind: PoolKind,
    x: &[f32],
    y: &mut [f32],
) {
    assert_eq!(x.len(), batch * pixels * channels, "pool input length");
    assert_eq!(y.len(), batch * channels, "pool output length");
    if y.is_empty() {
        return;
    }
    let parts = (pixels * channels / GLOBAL_PART).clamp(1, 8);
    let part_pixels = pixels.div_ceil(parts).max(1);
    let parts = pixels.div_ceil(part_pixels).max(1);
    let mut partial = vec![0.0; batch * parts * channels];
    partial
        .par_chunks_mut(channels)
        .enumerate()
        .for_each(|(i, out)| {
            let (n, part) = (i / parts, i % parts);
            let first = part * part_pixels;
            let end = (first + part_pixels).min(pixels);
            let x = &x[(n * pixels + first) * channels..(n * pixels + end) * channels];
            dispatch!(pool_pixels(kind, x, out));
        });
    for (o, rows) in y
        .chunks_exact_mut(channels)
        .zip(partial.chunks(parts * channels))
    {
        // The parts' rows pooled like pixels.
        dispatch!(pool_pixels(kind, rows, o));
        if kind == PoolKind::Average && pixels > 0 {
            let inv = 1.0 / pixels as f32;
            o.iter_mut().for_each(|v| *v *= inv);
        }
    }
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
    assert!(
        !g.zero_padded,
        "pool_backward: zero-padded windows are forward only"
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The global pool in parts against the window pool whose window is the whole map,
    /// on maps of one part and of several (an uneven last part), batch 2.
    #[test]
    fn global_pool_in_parts_matches_the_whole_window() {
        for (h, w, c) in [(3, 5, 4), (61, 67, 24), (112, 112, 32)] {
            let x: Vec<f32> = (0..2 * h * w * c)
                .map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5)
                .collect();
            let g = PoolGeometry {
                batch: 2,
                in_h: h,
                in_w: w,
                channels: c,
                out_h: 1,
                out_w: 1,
                pool_h: h,
                pool_w: w,
                stride_h: 1,
                stride_w: 1,
                pad_top: 0,
                pad_left: 0,
                zero_padded: false,
            };
            for kind in [PoolKind::Max, PoolKind::Average] {
                let mut want = vec![0.0; 2 * c];
                pool_forward(&g, kind, &x, &mut want);
                let mut got = vec![f32::NAN; 2 * c];
                global_pool_forward(2, h * w, c, kind, &x, &mut got);
                for (a, b) in got.iter().zip(&want) {
                    assert!(
                        (a - b).abs() <= 1e-5,
                        "{h}x{w}x{c} {kind:?}: {a} against {b}"
                    );
                }
            }
        }
    }
}
