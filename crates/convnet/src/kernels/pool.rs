//! Max and average pooling over NHWC windows. Padded cells never take part: max pooling
//! ignores them, and average pooling divides by the number of real cells under the
//! window, as Keras (TensorFlow) does for `padding="same"`.

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

    /// Visits every output pixel of image `n` with its window; `f(out_offset, rows, cols)`.
    fn for_each_window(
        &self,
        mut f: impl FnMut(usize, std::ops::Range<usize>, std::ops::Range<usize>),
    ) {
        for oy in 0..self.out_h {
            for ox in 0..self.out_w {
                let (rows, cols) = self.window(oy, ox);
                f((oy * self.out_w + ox) * self.channels, rows, cols);
            }
        }
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
    let (c, image_in, image_out) = (
        g.channels,
        g.in_h * g.in_w * g.channels,
        g.out_h * g.out_w * g.channels,
    );
    if image_out == 0 {
        return;
    }
    y.par_chunks_mut(image_out)
        .enumerate()
        .for_each(|(n, y_image)| {
            let x_image = &x[n * image_in..(n + 1) * image_in];
            g.for_each_window(|out, rows, cols| {
                let o = &mut y_image[out..out + c];
                let cells = rows.len() * cols.len();
                o.fill(match kind {
                    PoolKind::Max if cells > 0 => f32::NEG_INFINITY,
                    _ => 0.0,
                });
                for iy in rows {
                    for ix in cols.clone() {
                        let xs = &x_image[(iy * g.in_w + ix) * c..(iy * g.in_w + ix + 1) * c];
                        match kind {
                            PoolKind::Max => o.iter_mut().zip(xs).for_each(|(o, &v)| *o = o.max(v)),
                            PoolKind::Average => o.iter_mut().zip(xs).for_each(|(o, &v)| *o += v),
                        }
                    }
                }
                if kind == PoolKind::Average && cells > 0 {
                    let inv = 1.0 / cells as f32;
                    o.iter_mut().for_each(|v| *v *= inv);
                }
            });
        });
}

/// `dx = dL/dx` from the input `x` and `dy`; `dx` is overwritten. Max pooling sends each
/// output's gradient to the first cell of its window that holds the maximum.
pub fn pool_backward(g: &PoolGeometry, kind: PoolKind, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    g.check(x.len(), dy.len());
    assert_eq!(dx.len(), x.len(), "pool gradient length");
    let (c, image_in, image_out) = (
        g.channels,
        g.in_h * g.in_w * g.channels,
        g.out_h * g.out_w * g.channels,
    );
    dx.fill(0.0);
    if image_in == 0 {
        return;
    }
    dx.par_chunks_mut(image_in)
        .enumerate()
        .for_each(|(n, dx_image)| {
            let x_image = &x[n * image_in..(n + 1) * image_in];
            let dy_image = &dy[n * image_out..(n + 1) * image_out];
            let mut best = vec![(f32::NEG_INFINITY, usize::MAX); c];
            g.for_each_window(|out, rows, cols| {
                let grad = &dy_image[out..out + c];
                match kind {
                    PoolKind::Average => {
                        let inv = 1.0 / (rows.len() * cols.len()).max(1) as f32;
                        for iy in rows {
                            for ix in cols.clone() {
                                let at = (iy * g.in_w + ix) * c;
                                dx_image[at..at + c]
                                    .iter_mut()
                                    .zip(grad)
                                    .for_each(|(d, g)| *d += g * inv);
                            }
                        }
                    }
                    PoolKind::Max => {
                        best.fill((f32::NEG_INFINITY, usize::MAX));
                        for iy in rows {
                            for ix in cols.clone() {
                                let at = (iy * g.in_w + ix) * c;
                                for (ch, b) in best.iter_mut().enumerate() {
                                    if x_image[at + ch] > b.0 || b.1 == usize::MAX {
                                        *b = (x_image[at + ch], at + ch);
                                    }
                                }
                            }
                        }
                        for (ch, &(_, at)) in best.iter().enumerate() {
                            if at != usize::MAX {
                                dx_image[at] += grad[ch];
                            }
                        }
                    }
                }
            });
        });
}
