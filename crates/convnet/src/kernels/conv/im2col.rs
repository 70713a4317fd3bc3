//! im2col in tiles: the route of every convolution that Winograd's (`winograd`) does
//! not take (see the module above for the algorithm and its gradients).

use super::ConvGeometry;
use crate::activations::ActivationFn;
use crate::buffers::Scratch;
use crate::kernels::gemm::{matmul, matmul_packed, MatRef, PackedRight, Start};
use crate::kernels::Epilogue;
use rayon::prelude::*;

/// Scratch floats per tile: 64K floats (256 KiB) keeps a tile and its kernel panel in L2.
const TILE_FLOATS: usize = 1 << 16;

impl ConvGeometry {
    /// Output pixels per tile: as many as keep the tile's im2col rows within `TILE_FLOATS`.
    /// (Bounding the output rows too was tried: the 1x1 layers got slower.)
    fn tile_rows(&self) -> usize {
        (TILE_FLOATS / self.patch_len().max(1)).clamp(16, 4096)
    }

    /// Output pixels per tile when `pixels` are cut into tiles that run in parallel: at
    /// most [`Self::tile_rows`], in a number of tiles that the threads share evenly (a
    /// 112x112 image in tiles of 4096 is three whole tiles and a sliver, so one thread
    /// would do two whole tiles and the other one and the sliver).
    fn parallel_tile_rows(&self, pixels: usize) -> usize {
        let threads = rayon::current_num_threads();
        let tiles = pixels.div_ceil(self.tile_rows());
        if tiles <= 1 {
            return self.tile_rows();
        }
        pixels.div_ceil(tiles.next_multiple_of(threads)).max(1)
    }

    /// Whether every tap of the output pixel at (row, column) lies inside the input.
    #[inline]
    fn all_taps_inside(&self, oy: usize, ox: usize) -> bool {
        let inside = |o: usize, stride: usize, pad: usize, extent: usize, len: usize| {
            o * stride >= pad && o * stride - pad + extent <= len
        };
        inside(
            oy,
            self.stride_h,
            self.pad_top,
            (self.kernel_h - 1) * self.dilation_h + 1,
            self.in_h,
        ) && inside(
            ox,
            self.stride_w,
            self.pad_left,
            (self.kernel_w - 1) * self.dilation_w + 1,
            self.in_w,
        )
    }

    /// Fills `col` (rows × patch_len) with the receptive fields of output pixels
    /// `first..first + rows`, for group `group`; taps in the padding are zeros.
    fn im2col(&self, x: &[f32], group: usize, first: usize, rows: usize, col: &mut [f32]) {
        let (patch, cg) = (self.patch_len(), self.group_in());
        for (row, at) in col[..rows * patch]
            .chunks_exact_mut(patch)
            .zip(self.pixels(first, rows))
        {
            // Only pixels near the border have taps in the padding, which read as zeros.
            let inside = self.all_taps_inside(at.1, at.2);
            if !inside {
                row.fill(0.0);
            } else if self.groups == 1 && self.dilation_w == 1 {
                // A kernel row's taps are neighbouring pixels, whose channels lie side by
                // side in NHWC: one copy per kernel row.
                let (n, oy, ox) = at;
                let span = self.kernel_w * cg;
                for i in 0..self.kernel_h {
                    let iy = oy * self.stride_h + i * self.dilation_h - self.pad_top;
                    let ix = ox * self.stride_w - self.pad_left;
                    let src = ((n * self.in_h + iy) * self.in_w + ix) * cg;
                    row[i * span..][..span].copy_from_slice(&x[src..][..span]);
                }
                continue;
            }
            if cg == 1 {
                // One channel per tap (a first layer on grey images): a copy call per
                // float would cost more than the float.
                self.for_each_tap_at(at, |k, at| row[k] = x[at + group]);
            } else {
                self.for_each_tap_at(at, |k, at| {
                    let src = at + group * cg;
                    row[k..k + cg].copy_from_slice(&x[src..src + cg]);
                });
            }
        }
    }

    /// Adds the rows of `col` back onto the input positions they were gathered from.
    fn col2im_add(&self, col: &[f32], group: usize, first: usize, rows: usize, dx: &mut [f32]) {
        let (patch, cg) = (self.patch_len(), self.group_in());
        for (row, at) in col[..rows * patch]
            .chunks_exact(patch)
            .zip(self.pixels(first, rows))
        {
            self.for_each_tap_at(at, |k, at| {
                let dst = &mut dx[at + group * cg..at + group * cg + cg];
                dst.iter_mut()
                    .zip(&row[k..k + cg])
                    .for_each(|(d, s)| *d += s);
            });
        }
    }
}

/// `y = conv(x, w)`; `y` is overwritten.
pub fn conv2d_forward(g: &ConvGeometry, x: &[f32], w: &[f32], y: &mut [f32]) {
    conv2d_forward_with(g, x, w, Epilogue::default(), y);
}

/// `y = activation(conv(x, w) + bias)`; `y` is overwritten. Each tile of output rows
/// is the products started from the bias, and the activation runs on the tile before the
/// next one.
pub fn conv2d_forward_with(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    epilogue: Epilogue,
    y: &mut [f32],
) {
    conv2d_forward_prepared(g, x, w, None, epilogue, y, g.out_c);
}

/// A kernel in the form a forward route reads, made ahead of the calls.
#[derive(Debug)]
pub enum KernelForm {
    /// Winograd's transformed kernel (the 3x3 route).
    Winograd(super::winograd::TransformedKernel),
    /// The kernel as the right operand of a packed product (the im2col route, one group,
    /// on CPUs whose product reads a packed operand).
    Packed(PackedRight),
}

/// The form of kernel `w` that the forward route for `g` reads, when it is not `w`
/// itself, for callers that run the same kernel many times (inference) and keep it,
/// rather than have each call make it again.
pub fn prepared_kernel(g: &ConvGeometry, w: &[f32]) -> Option<KernelForm> {
    if super::winograd::suits(g) {
        return Some(KernelForm::Winograd(super::winograd::prepared(g, w)));
    }
    packed_kernel(g, w).map(KernelForm::Packed)
}

/// The kernel packed for the im2col route's products, where they read it packed.
fn packed_kernel(g: &ConvGeometry, w: &[f32]) -> Option<PackedRight> {
    (g.groups == 1)
        .then(|| PackedRight::new(g.patch_len(), g.out_c, MatRef::row_major(w, g.out_c)))?
}

/// [`conv2d_forward_with`] given, where the route reads one, the kernel's
/// [`prepared_kernel`] form, into output rows `y_row_stride` apart: `g.out_c` for an
/// output of its own, more for columns of a wider one (a Concatenate's), whose other
/// columns are left as they are. `y` starts at the first pixel's first channel. A form
/// that is not the route's (made for another geometry) is ignored and the route makes
/// its own.
pub fn conv2d_forward_prepared(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    prepared: Option<&KernelForm>,
    epilogue: Epilogue,
    y: &mut [f32],
    y_row_stride: usize,
) {
    let (cg, og, oc) = (g.group_in(), g.group_out(), g.out_c);
    let pixels = g.batch * g.out_h * g.out_w;
    assert!(y_row_stride >= oc, "conv output rows overlap");
    let y_len = if pixels == 0 {
        0
    } else {
        (pixels - 1) * y_row_stride + oc
    };
    assert!(y.len() >= y_len, "conv output length");
    g.check(x.len(), w.len(), g.output_len());
    if pixels == 0 || oc == 0 {
        return;
    }
    if super::winograd::suits(g) {
        let transformed = match prepared {
            Some(KernelForm::Winograd(u)) => Some(u),
            _ => None,
        };
        if y_row_stride == oc {
            super::winograd::forward(g, x, w, transformed, epilogue, &mut y[..y_len]);
        } else {
            // Winograd's output transform writes whole rows: it writes its own buffer,
            // whose rows are then copied into place.
            let mut own = Scratch::new(g.output_len());
            super::winograd::forward(g, x, w, transformed, epilogue, &mut own);
            copy_rows(&own, oc, y, y_row_stride);
        }
        return;
    }
    let own;
    let packed = match prepared {
        Some(KernelForm::Packed(p)) if p.shape() == (g.patch_len(), oc) && g.groups == 1 => Some(p),
        _ => {
            own = packed_kernel(g, w);
            own.as_ref()
        }
    };
    let y = &mut y[..y_len];
    if let Some((packed, plan)) = packed.and_then(|p| Some((p, super::gathered::plan(g)?))) {
        super::gathered::forward(g, &plan, x, packed, &epilogue, y, y_row_stride);
        return;
    }
    let rows_per_tile = g.parallel_tile_rows(pixels);
    let parallel_tiles = pixels > rows_per_tile;
    let ldy = y_row_stride;
    let run_tile = |(t, y_tile): (usize, &mut [f32])| {
        let first = t * rows_per_tile;
        let rows = rows_per_tile.min(pixels - first);
        let mut col = Scratch::new(if g.is_pointwise() {
            0
        } else {
            rows * g.patch_len()
        });
        if let Some(packed) = packed {
            let a = if g.is_pointwise() {
                MatRef::row_major(&x[first * g.in_c..], g.in_c)
            } else {
                g.im2col(x, 0, first, rows, &mut col);
                MatRef::row_major(&col, g.patch_len())
            };
            let after = matmul_packed(rows, a, packed, y_tile, ldy, &epilogue, !parallel_tiles);
            if after != ActivationFn::Linear {
                for_each_row(y_tile, rows, oc, ldy, |y_rows| {
                    after.apply_slice(y_rows, oc)
                });
            }
            return;
        }
        for group in 0..g.groups {
            let kernel = MatRef::row_major(&w[group * og..], oc);
            let out = &mut y_tile[group * og..];
            let (a, k) = if g.is_pointwise() {
                (
                    MatRef::row_major(&x[first * g.in_c + group * cg..], g.in_c),
                    cg,
                )
            } else {
                g.im2col(x, group, first, rows, &mut col);
                (MatRef::row_major(&col, g.patch_len()), g.patch_len())
            };
            matmul(
                rows,
                og,
                k,
                a,
                kernel,
                out,
                ldy,
                Start::Zeros,
                !parallel_tiles,
            );
        }
        // The bias is added in the epilogue's pass: started from it, a product first
        // copies it into every output row, a copy call per row.
        for_each_row(y_tile, rows, oc, ldy, |y_rows| {
            epilogue.apply_to(y_rows, oc)
        });
    };
    if parallel_tiles {
        y.par_chunks_mut(rows_per_tile * ldy)
            .enumerate()
            .for_each(run_tile);
    } else {
        run_tile((0, y));
    }
}

/// Calls `f` on the first `width` values of each of `rows` rows `stride` apart, or once
/// on all of them where the rows are contiguous (`stride == width`).
pub(super) fn for_each_row(
    y: &mut [f32],
    rows: usize,
    width: usize,
    stride: usize,
    f: impl Fn(&mut [f32]),
) {
    if stride == width {
        f(&mut y[..rows * width]);
    } else {
        for r in 0..rows {
            f(&mut y[r * stride..][..width]);
        }
    }
}

/// Copies the rows of `width` values in `src` into rows `stride` apart in `dst`.
fn copy_rows(src: &[f32], width: usize, dst: &mut [f32], stride: usize) {
    dst.par_chunks_mut(stride)
        .zip(src.par_chunks_exact(width))
        .for_each(|(d, s)| d[..width].copy_from_slice(s));
}

/// Each group's kernel transposed, `[group][out channel][patch]`: the input gradient's
/// right operand with its rows contiguous, made once per call rather than gathered
/// column by column by every tile's product.
fn transposed_kernel(g: &ConvGeometry, w: &[f32]) -> Scratch {
    let (patch, og, oc) = (g.patch_len(), g.group_out(), g.out_c);
    let mut wt = Scratch::new(w.len());
    for (group, wt_group) in wt.chunks_exact_mut(og * patch).enumerate() {
        for (o, row) in wt_group.chunks_exact_mut(patch).enumerate() {
            for (p, v) in row.iter_mut().enumerate() {
                *v = w[p * oc + group * og + o];
            }
        }
    }
    wt
}

/// `dx = dL/dx` from `dy = dL/dy`; `dx` is overwritten.
pub fn conv2d_backward_input(g: &ConvGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    g.check(dx.len(), w.len(), dy.len());
    if super::winograd::suits(g) {
        super::winograd::backward_input(g, dy, w, dx);
        return;
    }
    let (cg, og, oc) = (g.group_in(), g.group_out(), g.out_c);
    let patch = g.patch_len();
    let w_t = transposed_kernel(g, w);
    let kernel_t = |group: usize| MatRef::row_major(&w_t[group * og * patch..], patch);
    // Where products read a packed operand, Wᵀ is packed once for every tile.
    let packed_t = (g.groups == 1)
        .then(|| PackedRight::new(og, patch, kernel_t(0)))
        .flatten();
    // `out` (rows `ldd` apart) = `rows` rows of dy · Wᵀ, for one group.
    let product_t =
        |rows: usize, dy_rows: MatRef, group: usize, out: &mut [f32], ldd: usize| match &packed_t {
            Some(packed) => {
                matmul_packed(rows, dy_rows, packed, out, ldd, &Epilogue::default(), false);
            }
            None => {
                let wt = kernel_t(group);
                matmul(rows, patch, og, dy_rows, wt, out, ldd, Start::Zeros, false);
            }
        };
    if g.is_pointwise() {
        // dx (pixels × cin) = dy (pixels × cout) · Wᵀ, per group, in row blocks.
        let rows_per_tile = g.parallel_tile_rows(g.batch * g.in_h * g.in_w);
        let run = |(t, dx_tile): (usize, &mut [f32])| {
            let first = t * rows_per_tile;
            let rows = dx_tile.len() / g.in_c;
            for group in 0..g.groups {
                let a = MatRef::row_major(&dy[first * oc + group * og..], oc);
                product_t(rows, a, group, &mut dx_tile[group * cg..], g.in_c);
            }
        };
        if dx.is_empty() {
            return;
        }
        dx.par_chunks_mut(rows_per_tile * g.in_c)
            .enumerate()
            .for_each(run);
        return;
    }
    dx.fill(0.0);
    let image_in = g.in_h * g.in_w * g.in_c;
    let image_pixels = g.out_h * g.out_w;
    if image_in == 0 || image_pixels == 0 {
        return;
    }
    // Images are independent in dx, so each image is one parallel task; within an image
    // the tiles run in order because their receptive fields overlap.
    let rows_per_tile = g.tile_rows();
    dx.par_chunks_mut(image_in)
        .enumerate()
        .for_each(|(n, dx_image)| {
            let image_geometry = ConvGeometry { batch: 1, ..*g };
            let dy_image = &dy[n * image_pixels * oc..(n + 1) * image_pixels * oc];
            let mut col = Scratch::new(rows_per_tile.min(image_pixels) * patch);
            for first in (0..image_pixels).step_by(rows_per_tile) {
                let rows = rows_per_tile.min(image_pixels - first);
                for group in 0..g.groups {
                    let a = MatRef::row_major(&dy_image[first * oc + group * og..], oc);
                    product_t(rows, a, group, &mut col, patch);
                    image_geometry.col2im_add(&col, group, first, rows, dx_image);
                }
            }
        });
}

/// `dw += dL/dW` from the input `x` and `dy = dL/dy`.
pub fn conv2d_backward_kernel(g: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    g.check(x.len(), dw.len(), dy.len());
    let (cg, og, oc) = (g.group_in(), g.group_out(), g.out_c);
    let pixels = g.batch * g.out_h * g.out_w;
    if pixels == 0 || dw.is_empty() {
        return;
    }
    if super::winograd::suits_kernel_gradient(g) {
        super::winograd::backward_kernel(g, x, dy, dw);
        return;
    }
    if g.is_pointwise() {
        // dW (cin × cout) += xᵀ (cin × pixels) · dy (pixels × cout), one product per group
        // and per thread's run of pixels: the product is small and its inner dimension
        // long, so splitting that dimension is what keeps every core busy. The runs'
        // sums are added in order, as below.
        let runs = rayon::current_num_threads().clamp(1, pixels.div_ceil(1024));
        let partials: Vec<Scratch> = (0..runs)
            .into_par_iter()
            .map(|run| {
                let mut acc = Scratch::zeroed(dw.len());
                let (start, end) = (run * pixels / runs, (run + 1) * pixels / runs);
                for group in 0..g.groups {
                    let xt = MatRef::row_major(&x[start * g.in_c + group * cg..], g.in_c).t();
                    let b = MatRef::row_major(&dy[start * oc + group * og..], oc);
                    let dst = &mut acc[group * og..];
                    matmul(cg, og, end - start, xt, b, dst, oc, Start::Dst, false);
                }
                acc
            })
            .collect();
        crate::kernels::sum_in_order(dw, &partials);
        return;
    }
    // The tiles are split into one contiguous run per thread; each run sums into its own
    // copy of dW and the copies are added at the end in order, so the result does not
    // depend on how threads took the work (same seed and thread count, same weights, bit
    // for bit).
    let rows_per_tile = g.tile_rows();
    let patch = g.patch_len();
    let tiles = pixels.div_ceil(rows_per_tile);
    let runs = rayon::current_num_threads().clamp(1, tiles);
    let partials: Vec<Scratch> = (0..runs)
        .into_par_iter()
        .map(|run| {
            let mut acc = Scratch::zeroed(dw.len());
            let mut col = Scratch::new(rows_per_tile * patch);
            for t in run * tiles / runs..(run + 1) * tiles / runs {
                let first = t * rows_per_tile;
                let rows = rows_per_tile.min(pixels - first);
                for group in 0..g.groups {
                    g.im2col(x, group, first, rows, &mut col);
                    let colt = MatRef::row_major(&col, patch).t();
                    let b = MatRef::row_major(&dy[first * oc + group * og..], oc);
                    matmul(
                        patch,
                        og,
                        rows,
                        colt,
                        b,
                        &mut acc[group * og..],
                        oc,
                        Start::Dst,
                        false,
                    );
                }
            }
            acc
        })
        .collect();
    crate::kernels::sum_in_order(dw, &partials);
}
