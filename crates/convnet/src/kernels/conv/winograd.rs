//! Winograd's minimal filtering F(2x2, 3x3) for 3x3 convolutions at stride 1 (Lavin and
//! Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
//!
//! Each 2x2 block of outputs (a *tile*) comes from the 4x4 input patch around it as
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`: 16 multiplications per pair of input and output
//! channels where the direct convolution needs 36. Summed over input channels, the 16
//! elementwise products become 16 independent matrix products, one per position `e` of
//! the 4x4 transformed tile: `M[e] = V[e] · U[e]`, with `V[e]` (tiles × in channels) the
//! transformed inputs and `U[e]` (in × out channels) the transformed kernel. The
//! transforms are additions of whole channel vectors (NHWC keeps a pixel's channels
//! side by side), a few percent of the products' work.
//!
//! The work goes in bands of tile rows of one image, sized so a band's transformed
//! inputs stay near L2; bands run in parallel, each with its own products. A sample's
//! bands do not depend on the batch it came in, so neither do its outputs. The input
//! gradient is the forward pass of a flipped kernel; the kernel gradient runs the
//! transforms backwards ([`backward_kernel`]).
//!
//! F(2x2, 3x3) keeps f32 rounding close to the direct sum's: its transforms only add
//! and halve. The larger F(4x4, 3x3) would save more multiplications, but its
//! transforms' constants (up to 8) cost precision.

use super::ConvGeometry;
use crate::buffers::Scratch;
use crate::kernels::gemm::{matmul, matmul_packed, MatRef, PackedRight, Start};
use crate::kernels::simd::dispatch;
use crate::kernels::Epilogue;
use rayon::prelude::*;

/// Below this many channels on either side, the transforms cost more than the products
/// save (a first layer on RGB images stays on im2col).
const MIN_CHANNELS: usize = 16;

/// Floats of transformed input per band (16 positions × tiles × in channels): 512 KiB.
const BAND_FLOATS: usize = 1 << 17;

/// Whether a convolution takes this route: a 3x3 kernel at stride 1, no dilation, one
/// group, at least [`MIN_CHANNELS`] channels in and out, and padding of at most 2 (the
/// input gradient pads by 2 − pad; Keras's paddings are 0 and 1).
pub(crate) fn suits(g: &ConvGeometry) -> bool {
    g.pad_top <= 2
        && g.pad_left <= 2
        && g.kernel_h == 3
        && g.kernel_w == 3
        && g.stride_h == 1
        && g.stride_w == 1
        && g.dilation_h == 1
        && g.dilation_w == 1
        && g.groups == 1
        && g.in_c >= MIN_CHANNELS
        && g.out_c >= MIN_CHANNELS
}

/// Winograd's transformed kernel U, its 16 (in × out channels) matrices, in the form
/// the forward products read: packed where they read a packed operand (AVX-512 CPUs,
/// see `gemm::matmul_packed`), else as they are.
#[derive(Debug)]
pub enum TransformedKernel {
    /// The 16 matrices one after another, row-major.
    Matrices(Vec<f32>),
    /// Each matrix packed.
    Packed(Vec<PackedRight>),
}

/// The [`TransformedKernel`] of `w` for the forward products of geometry `g`.
pub(crate) fn prepared(g: &ConvGeometry, w: &[f32]) -> TransformedKernel {
    let (ci, co) = (g.in_c, g.out_c);
    let u = transformed_kernel(g, w);
    let packed: Option<Vec<PackedRight>> = u
        .chunks_exact(ci * co)
        .map(|u_e| PackedRight::new(ci, co, MatRef::row_major(u_e, co)))
        .collect();
    match packed {
        Some(packed) => TransformedKernel::Packed(packed),
        None => TransformedKernel::Matrices(u.into_vec()),
    }
}

/// `y = activation(conv(x, w) + bias)` for a geometry that [`suits`], from the kernel
/// `w` or, when the caller keeps it, its [`prepared`] form `u`; `y` is overwritten.
pub(crate) fn forward(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    u: Option<&TransformedKernel>,
    epilogue: Epilogue,
    y: &mut [f32],
) {
    debug_assert!(suits(g));
    let (ci, co) = (g.in_c, g.out_c);
    let made;
    let u = match u {
        Some(u) => u,
        None => {
            made = prepared(g, w);
            &made
        }
    };
    match u {
        TransformedKernel::Matrices(u) => {
            assert_eq!(u.len(), 16 * ci * co, "transformed kernel length")
        }
        TransformedKernel::Packed(u) => assert!(
            u.len() == 16 && u.iter().all(|u_e| u_e.shape() == (ci, co)),
            "transformed kernel shape"
        ),
    }
    let tiles_w = g.out_w.div_ceil(2);
    let row_len = g.out_w * co;
    let mut rest = y;
    let bands: Vec<_> = bands(g)
        .into_iter()
        .map(|(n, ty, rows)| {
            let (band, after) = std::mem::take(&mut rest).split_at_mut(rows * row_len);
            rest = after;
            (n, ty, band)
        })
        .collect();
    // Too few bands to share evenly between the threads (a small image at batch 1): a
    // band's 16 products run in parallel too.
    let few_bands = bands.len() < 4 * rayon::current_num_threads();
    bands.into_par_iter().for_each(|(n, ty, y_band)| {
        let tiles = (y_band.len() / row_len).div_ceil(2) * tiles_w;
        // Position-major, V[e] and M[e] each a contiguous row-major matrix: rows a
        // few hundred bytes apart, not 16 times that (rows 4 KiB apart share L1 sets).
        let mut v = Scratch::new(16 * tiles * ci);
        let mut m = Scratch::new(16 * tiles * co);
        dispatch!(input_transform(g, x, n, ty, tiles, &mut v));
        let product = |(e, m_e): (usize, &mut [f32])| {
            let v_e = MatRef::row_major(&v[e * tiles * ci..], ci);
            match u {
                TransformedKernel::Matrices(u) => {
                    let u_e = MatRef::row_major(&u[e * ci * co..], co);
                    matmul(tiles, co, ci, v_e, u_e, m_e, co, Start::Zeros, false);
                }
                TransformedKernel::Packed(u) => {
                    matmul_packed(tiles, v_e, &u[e], m_e, co, &Epilogue::default(), false);
                }
            }
        };
        if few_bands {
            m.par_chunks_mut(tiles * co).enumerate().for_each(product);
        } else {
            m.chunks_mut(tiles * co).enumerate().for_each(product);
        }
        dispatch!(output_transform(g, &m, tiles, epilogue.bias, y_band));
        epilogue.finish(y_band, co);
    });
}

/// The bands of a convolution's output, in memory order: (image, first tile row, output
/// rows). A band has as many tile rows as keep its transformed inputs within
/// [`BAND_FLOATS`].
fn bands(g: &ConvGeometry) -> Vec<(usize, usize, usize)> {
    let (tiles_h, tiles_w) = (g.out_h.div_ceil(2), g.out_w.div_ceil(2));
    let band_rows = (BAND_FLOATS / (16 * g.in_c * tiles_w).max(1)).clamp(1, tiles_h.max(1));
    (0..g.batch)
        .flat_map(|n| {
            (0..tiles_h).step_by(band_rows).map(move |ty| {
                let rows = (2 * (ty + band_rows)).min(g.out_h) - 2 * ty;
                (n, ty, rows)
            })
        })
        .collect()
}

/// Whether the kernel gradient takes this route too: outputs of at least 14x14. On
/// smaller ones (fmnist_cnn's second layer, 11x11; 7x7 with 256 channels) the
/// per-image bands leave the products too shallow, and im2col measured 10–20% faster;
/// chunks of bands from several images did not recover it.
pub(crate) fn suits_kernel_gradient(g: &ConvGeometry) -> bool {
    suits(g) && g.out_h >= 14 && g.out_w >= 14
}

/// `dw += dL/dW` from `x` and `dy` for a geometry that [`suits_kernel_gradient`]. With
/// `Y = Aᵀ M A` and `M = U ⊙ V`, dL/dM is `A dY Aᵀ` per tile, dL/dU[e] the sum over
/// tiles of `V[e]ᵀ · (A dY Aᵀ)[e]` (16 products, in channels × out channels, as deep as
/// a band's tiles), and dL/dW is `Gᵀ (dL/dU) G`.
pub(crate) fn backward_kernel(g: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    debug_assert!(suits_kernel_gradient(g));
    let (ci, co) = (g.in_c, g.out_c);
    let tiles_w = g.out_w.div_ceil(2);
    let bands = bands(g);
    // One contiguous run of bands per thread, each summing into its own dL/dU; the runs'
    // sums are added in order, as the im2col kernel gradient does.
    let runs = rayon::current_num_threads().clamp(1, bands.len().max(1));
    let partials: Vec<Scratch> = (0..runs)
        .into_par_iter()
        .map(|run| {
            let mut acc = Scratch::zeroed(16 * ci * co);
            let run_bands = &bands[run * bands.len() / runs..(run + 1) * bands.len() / runs];
            for &(n, ty, rows) in run_bands {
                let tiles = rows.div_ceil(2) * tiles_w;
                let mut v = Scratch::new(16 * tiles * ci);
                let mut dm = Scratch::new(16 * tiles * co);
                dispatch!(input_transform(g, x, n, ty, tiles, &mut v));
                dispatch!(gradient_transform(g, dy, n, ty, tiles, &mut dm));
                for e in 0..16 {
                    matmul(
                        ci,
                        co,
                        tiles,
                        MatRef::row_major(&v[e * tiles * ci..], ci).t(),
                        MatRef::row_major(&dm[e * tiles * co..], co),
                        &mut acc[e * ci * co..],
                        co,
                        Start::Dst,
                        false,
                    );
                }
            }
            acc
        })
        .collect();
    let mut du = Scratch::zeroed(16 * ci * co);
    crate::kernels::sum_in_order(&mut du, &partials);
    // dL/dW = Gᵀ (dL/dU) G per channel pair: the columns of G are (1, ½, ½, 0),
    // (0, ½, −½, 0) and (0, ½, ½, 1).
    let pairs = ci * co;
    let g_t =
        |a: f32, b: f32, c: f32, d: f32| [a + 0.5 * (b + c), 0.5 * (b - c), 0.5 * (b + c) + d];
    for p in 0..pairs {
        let at = |r: usize, s: usize| du[(r * 4 + s) * pairs + p];
        let columns: [[f32; 3]; 4] =
            std::array::from_fn(|s| g_t(at(0, s), at(1, s), at(2, s), at(3, s)));
        for i in 0..3 {
            let row = g_t(columns[0][i], columns[1][i], columns[2][i], columns[3][i]);
            for (j, value) in row.into_iter().enumerate() {
                dw[(i * 3 + j) * pairs + p] += value;
            }
        }
    }
}

/// `dL/dM = A dY Aᵀ` for every tile of the band whose first tile row is `ty` (image
/// `n`), with `A = [[1, 0], [1, 1], [1, −1], [0, −1]]`; a tile's outputs past the last
/// row or column (odd sizes) count as zero gradients.
#[inline(always)]
fn gradient_transform<const FMA: bool>(
    g: &ConvGeometry,
    dy: &[f32],
    n: usize,
    ty: usize,
    tiles: usize,
    dm: &mut [f32],
) {
    let co = g.out_c;
    let tiles_w = g.out_w.div_ceil(2);
    let zeros = Scratch::zeroed(co);
    let mut columns_done = Scratch::new(8 * co);
    for t in 0..tiles {
        let (tile_y, tile_x) = (ty + t / tiles_w, t % tiles_w);
        let shape = [g.out_h, g.out_w, co];
        let pixel = |a: usize, b: usize| {
            pixel_or_zeros(dy, shape, n, (2 * tile_y + a, 2 * tile_x + b), &zeros)
        };
        // A·dY down each column b (rows r at 2r + b), then (A dY)·Aᵀ along each row r.
        for b in 0..2 {
            expand_2(
                [pixel(0, b), pixel(1, b)],
                split_4(&mut columns_done, co, b, 2),
            );
        }
        for r in 0..4 {
            let row = &columns_done[2 * r * co..][..2 * co];
            let halves = [&row[..co], &row[co..]];
            expand_2(halves, split_4(dm, co, 4 * r * tiles + t, tiles));
        }
    }
}

/// `(out0, out1, out2, out3) = (p, p + q, p − q, −q)` elementwise: one side of `A dY Aᵀ`.
#[inline(always)]
fn expand_2([p, q]: [&[f32]; 2], [o0, o1, o2, o3]: [&mut [f32]; 4]) {
    let n = p.len();
    let q = &q[..n];
    let (o0, o1, o2, o3) = (&mut o0[..n], &mut o1[..n], &mut o2[..n], &mut o3[..n]);
    for i in 0..n {
        o0[i] = p[i];
        o1[i] = p[i] + q[i];
        o2[i] = p[i] - q[i];
        o3[i] = -q[i];
    }
}

/// `dx = dL/dx` from `dy` for a geometry that [`suits`]; `dx` is overwritten. At stride
/// 1 the input gradient is itself a 3x3 convolution: of `dy`, padded by `2 − pad`, with
/// the kernel flipped in both spatial axes and its channel axes swapped.
pub(crate) fn backward_input(g: &ConvGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    debug_assert!(suits(g));
    let (ci, co) = (g.in_c, g.out_c);
    let transposed = ConvGeometry {
        in_h: g.out_h,
        in_w: g.out_w,
        in_c: co,
        out_h: g.in_h,
        out_w: g.in_w,
        out_c: ci,
        pad_top: 2 - g.pad_top,
        pad_left: 2 - g.pad_left,
        ..*g
    };
    let mut flipped = Scratch::new(w.len());
    for (k, taps) in flipped.chunks_exact_mut(co * ci).enumerate() {
        let from = &w[(8 - k) * ci * co..][..ci * co];
        for (o, row) in taps.chunks_exact_mut(ci).enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = from[c * co + o];
            }
        }
    }
    forward(&transposed, dy, &flipped, None, Epilogue::default(), dx);
}

/// `U[e][c][o] = (G g Gᵀ)[e]` for every pair of channels, from the HWIO kernel `w`, with
/// `G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]`.
pub(crate) fn transformed_kernel(g: &ConvGeometry, w: &[f32]) -> Scratch {
    let pairs = g.in_c * g.out_c;
    let mut u = Scratch::new(16 * pairs);
    // Runs of (in, out) pairs, transformed slice by slice so the loops vectorise, and
    // shared among the threads: each run writes its own range of all 16 planes.
    let mut planes: Vec<_> = u
        .chunks_exact_mut(pairs)
        .map(|p| p.chunks_mut(KERNEL_RUN))
        .collect();
    let runs: Vec<Vec<&mut [f32]>> = (0..pairs.div_ceil(KERNEL_RUN))
        .map(|_| planes.iter_mut().filter_map(Iterator::next).collect())
        .collect();
    runs.into_par_iter().enumerate().for_each(|(run, mut out)| {
        let first = run * KERNEL_RUN;
        let len = out[0].len();
        let k = |i: usize, j: usize| &w[(i * 3 + j) * pairs + first..][..len];
        // G·g, column by column: G's rows are (1, 0, 0), ½(1, 1, 1), ½(1, −1, 1), (0, 0, 1).
        let columns: [[Vec<f32>; 4]; 3] =
            std::array::from_fn(|j| g_rows(k(0, j), k(1, j), k(2, j)));
        // Then (G·g)·Gᵀ, row by row.
        for r in 0..4 {
            let row = g_rows(&columns[0][r], &columns[1][r], &columns[2][r]);
            for (s, values) in row.into_iter().enumerate() {
                out[r * 4 + s].copy_from_slice(&values);
            }
        }
    });
    u
}

/// Pairs of channels a task of [`transformed_kernel`] transforms.
const KERNEL_RUN: usize = 2048;

/// G's four rows applied to (a, b, c), elementwise over slices: a, ½(a + b + c),
/// ½(a − b + c), c.
fn g_rows(a: &[f32], b: &[f32], c: &[f32]) -> [Vec<f32>; 4] {
    let plus = a
        .iter()
        .zip(b)
        .zip(c)
        .map(|((a, b), c)| 0.5 * (a + b + c))
        .collect();
    let minus = a
        .iter()
        .zip(b)
        .zip(c)
        .map(|((a, b), c)| 0.5 * (a - b + c))
        .collect();
    [a.to_vec(), plus, minus, c.to_vec()]
}

/// `V = Bᵀ d B` for every tile of the band whose first tile row is `ty` (image `n`),
/// with `Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]`; input
/// pixels in the padding read as zeros.
#[inline(always)]
fn input_transform<const FMA: bool>(
    g: &ConvGeometry,
    x: &[f32],
    n: usize,
    ty: usize,
    tiles: usize,
    v: &mut [f32],
) {
    let ci = g.in_c;
    let tiles_w = g.out_w.div_ceil(2);
    let zeros = Scratch::zeroed(ci);
    let mut rows_done = Scratch::new(16 * ci);
    for t in 0..tiles {
        let (tile_y, tile_x) = (ty + t / tiles_w, t % tiles_w);
        // Patch pixel (r, s), straight from `x`, or zeros in the padding.
        let shape = [g.in_h, g.in_w, ci];
        let pixel = |r: usize, s: usize| {
            let iy = (2 * tile_y + r).wrapping_sub(g.pad_top);
            let ix = (2 * tile_x + s).wrapping_sub(g.pad_left);
            pixel_or_zeros(x, shape, n, (iy, ix), &zeros)
        };
        // Bᵀ·d down each column s, then (Bᵀd)·B along each row r.
        for s in 0..4 {
            let column = [pixel(0, s), pixel(1, s), pixel(2, s), pixel(3, s)];
            transform_4(column, split_4(&mut rows_done, ci, s, 4));
        }
        for r in 0..4 {
            let row = &rows_done[r * 4 * ci..][..4 * ci];
            let at = |s: usize| &row[s * ci..][..ci];
            // V[e][t] for e = 4r..4r + 4.
            let v_rows = split_4(v, ci, 4 * r * tiles + t, tiles);
            transform_4([at(0), at(1), at(2), at(3)], v_rows);
        }
    }
}

/// Pixel (y, x) of image `n` in an NHWC buffer of `[height, width, channels]`, or
/// `zeros` where it lies outside (a coordinate that wrapped below zero is outside too).
#[inline(always)]
fn pixel_or_zeros<'a>(
    data: &'a [f32],
    [h, w, c]: [usize; 3],
    n: usize,
    (y, x): (usize, usize),
    zeros: &'a [f32],
) -> &'a [f32] {
    if y < h && x < w {
        &data[((n * h + y) * w + x) * c..][..c]
    } else {
        zeros
    }
}

/// `(out0, out1, out2, out3) = (a − c, b + c, c − b, b − d)` elementwise: one side of
/// `Bᵀ d B`.
#[inline(always)]
fn transform_4([a, b, c, d]: [&[f32]; 4], [o0, o1, o2, o3]: [&mut [f32]; 4]) {
    let n = a.len();
    let (b, c, d) = (&b[..n], &c[..n], &d[..n]);
    let (o0, o1, o2, o3) = (&mut o0[..n], &mut o1[..n], &mut o2[..n], &mut o3[..n]);
    for i in 0..n {
        o0[i] = a[i] - c[i];
        o1[i] = b[i] + c[i];
        o2[i] = c[i] - b[i];
        o3[i] = b[i] - d[i];
    }
}

/// Four disjoint `len`-long slices of `buf`: chunks `first`, `first + step`, ... of it.
fn split_4(buf: &mut [f32], len: usize, first: usize, step: usize) -> [&mut [f32]; 4] {
    let mut chunks = buf.chunks_exact_mut(len).skip(first).step_by(step);
    std::array::from_fn(|_| chunks.next().expect("four chunks"))
}

/// `Y = Aᵀ M A` (+ bias) for every tile of the band, written to its rows of `y`, with
/// `Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]`; a tile's outputs past the last row or column
/// (odd sizes) are dropped.
#[inline(always)]
fn output_transform<const FMA: bool>(
    g: &ConvGeometry,
    m: &[f32],
    tiles: usize,
    bias: Option<&[f32]>,
    y_band: &mut [f32],
) {
    let co = g.out_c;
    let tiles_w = g.out_w.div_ceil(2);
    let rows = y_band.len() / (g.out_w * co);
    let mut half = Scratch::new(8 * co);
    for t in 0..tiles {
        let (tile_y, tile_x) = (t / tiles_w, t % tiles_w);
        // Aᵀ·M down each column s: rows (m0 + m1 + m2, m1 − m2 − m3).
        for s in 0..4 {
            let at = |r: usize| &m[((r * 4 + s) * tiles + t) * co..][..co];
            let (top, bottom) = half.split_at_mut(4 * co);
            let (m0, m1, m2, m3) = (at(0), at(1), at(2), at(3));
            let (h0, h1) = (&mut top[s * co..][..co], &mut bottom[s * co..][..co]);
            for i in 0..co {
                h0[i] = m0[i] + m1[i] + m2[i];
                h1[i] = m1[i] - m2[i] - m3[i];
            }
        }
        // (AᵀM)·A along each row: outputs (h0 + h1 + h2, h1 − h2 − h3).
        for r in 0..2 {
            let oy = 2 * tile_y + r;
            if oy >= rows {
                continue;
            }
            let h = |s: usize| &half[(r * 4 + s) * co..][..co];
            let (h0, h1, h2, h3) = (h(0), h(1), h(2), h(3));
            for s in 0..2 {
                let ox = 2 * tile_x + s;
                if ox >= g.out_w {
                    continue;
                }
                let out = &mut y_band[(oy * g.out_w + ox) * co..][..co];
                if s == 0 {
                    for i in 0..co {
                        out[i] = h0[i] + h1[i] + h2[i];
                    }
                } else {
                    for i in 0..co {
                        out[i] = h1[i] - h2[i] - h3[i];
                    }
                }
                if let Some(bias) = bias {
                    out.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
                }
            }
        }
    }
}
