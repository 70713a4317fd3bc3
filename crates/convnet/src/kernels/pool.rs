//! Max and average pooling over NHWC windows. Padded cells never take part: max pooling
//! ignores them, and average pooling divides by the number of real cells under the
//! window, as Keras (TensorFlow) does for `padding="same"`.

use super::simd::dispatch;
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub pool_h: usize,
    pub pool_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

impl PoolGeometry {
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.channels
    }

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
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

#[inline(always)]
fn forward_row<const FMA: bool>(
    g: &PoolGeometry,
    kind: PoolKind,
    x: &[f32],
    row: usize,
    y_row: &mut [f32],
) {
    let c = g.channels;
    let (n, oy) = (row / g.out_h, row % g.out_h);
    let x_image = &x[n * g.in_h * g.in_w * c..][..g.in_h * g.in_w * c];
    for (ox, o) in y_row.chunks_exact_mut(c).enumerate() {
        let (rows, cols) = g.window(oy, ox);
        let cells = rows.len() * cols.len();
        let mut first = true;
        o.fill(0.0);
        for iy in rows {
            for ix in cols.clone() {
                let xs = &x_image[(iy * g.in_w + ix) * c..][..c];
                match kind {
                    PoolKind::Max if first => o.copy_from_slice(xs),
                    PoolKind::Max => o.iter_mut().zip(xs).for_each(|(o, &v)| *o = o.max(v)),
                    PoolKind::Average => o.iter_mut().zip(xs).for_each(|(o, &v)| *o += v),
                }
                first = false;
            }
        }
        if kind == PoolKind::Average && cells > 0 {
            let inv = 1.0 / cells as f32;
            o.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

/// `dx = dL/dx` from the input `x` and `dy`; `dx` is overwritten. Max pooling sends each
/// output's gradient to the first cell of its window that holds the maximum.
pub fn pool_backward(g: &PoolGeometry, kind: PoolKind, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    g.check(x.len(), dy.len());
    assert_eq!(dx.len(), x.len(), "pool gradient length");
    let image_in = g.in_h * g.in_w * g.channels;
    if image_in == 0 {
        return;
    }
    // Windows may overlap within an image, so each image is one task.
    dx.par_chunks_mut(image_in)
        .enumerate()
        .for_each(|(n, dx_image)| dispatch!(backward_image(g, kind, x, dy, n, dx_image)));
}

#[inline(always)]
fn backward_image<const FMA: bool>(
    g: &PoolGeometry,
    kind: PoolKind,
    x: &[f32],
    dy: &[f32],
    n: usize,
    dx_image: &mut [f32],
) {
    let c = g.channels;
    let image_out = g.out_h * g.out_w * c;
    let x_image = &x[n * dx_image.len()..][..dx_image.len()];
    let dy_image = &dy[n * image_out..][..image_out];
    dx_image.fill(0.0);
    // The window's maximum, and whether its gradient found its cell yet (all bits set
    // once it did): the gradient is masked in with bit operations, not branches or
    // conditional stores, so the loop vectorises well.
    let (mut max, mut taken) = (vec![0.0f32; c], vec![0u32; c]);
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            let (rows, cols) = g.window(oy, ox);
            let grad = &dy_image[(oy * g.out_w + ox) * c..][..c];
            let cells = || {
                rows.clone()
                    .flat_map(|iy| cols.clone().map(move |ix| (iy * g.in_w + ix) * c))
            };
            match kind {
                PoolKind::Average => {
                    let inv = 1.0 / (rows.len() * cols.len()).max(1) as f32;
                    for at in cells() {
                        dx_image[at..][..c]
                            .iter_mut()
                            .zip(grad)
                            .for_each(|(d, g)| *d += g * inv);
                    }
                }
                PoolKind::Max => {
                    max.fill(f32::NEG_INFINITY);
                    for at in cells() {
                        max.iter_mut()
                            .zip(&x_image[at..][..c])
                            .for_each(|(m, &v)| *m = m.max(v));
                    }
                    taken.fill(0);
                    for at in cells() {
                        let (d, xs) = (&mut dx_image[at..][..c], &x_image[at..][..c]);
                        let lanes = d.iter_mut().zip(xs).zip(grad).zip(&max).zip(&mut taken);
                        for ((((d, &x), &g), &m), t) in lanes {
                            let hit = if x == m { u32::MAX } else { 0 } & !*t;
                            *d += f32::from_bits(g.to_bits() & hit);
                            *t |= hit;
                        }
                    }
                }
            }
        }
    }
}
