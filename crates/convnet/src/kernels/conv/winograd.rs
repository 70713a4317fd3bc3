//! Winograd's minimal filtering F(m x m, 3x3) for 3x3 convolutions at stride 1 (Lavin
//! and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), with tiles of
//! m = 2 or 4 outputs a side ([`Tile`]).
//!
//! Each m x m block of outputs (a *tile*) comes from the (m + 2)² input patch around it
//! as `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`: (m + 2)² multiplications per pair of input and
//! output channels where the direct convolution needs 9m² (16 against 36 for F(2x2),
//! 36 against 144 for F(4x4)). Summed over input channels, the elementwise products
//! become (m + 2)² independent matrix products, one per position `e` of the transformed
//! tile: `M[e] = V[e] · U[e]`, with `V[e]` (tiles × in channels) the transformed inputs
//! and `U[e]` (in × out channels) the transformed kernel. The transforms are additions
//! and scalings of whole channel vectors (NHWC keeps a pixel's channels side by side),
//! a few percent of the products' work.
//!
//! The work goes in bands of tile rows of one image, sized so a band's transformed
//! inputs stay near L2; bands run in parallel, each with its own products. A sample's
//! bands do not depend on the batch it came in, so neither do its outputs. The input
//! gradient is the forward pass of a flipped kernel; the kernel gradient runs F(2x2)'s
//! transforms backwards ([`backward_kernel`]).
//!
//! F(2x2, 3x3)'s transforms only add and halve, so its rounding stays close to the
//! direct sum's. F(4x4, 3x3)'s constants (up to 8 in `Aᵀ`, 1/24 in `G`) cost some
//! precision: on random data its relative error is about five times F(2x2)'s (unit
//! test below), still well within the direct sum's tests. It is chosen where an image has enough of its tiles
//! ([`Tile::for_geometry`]).

use super::ConvGeometry;
use crate::buffers::Scratch;
use crate::kernels::gemm::{matmul, matmul_packed, MatRef, PackedRight, Start};
use crate::kernels::simd::{dispatch, madd};
use crate::kernels::Epilogue;
use rayon::prelude::*;

/// Below this many channels on either side, the transforms cost more than the products
/// save (a first layer on RGB images stays on im2col).
const MIN_CHANNELS: usize = 16;

/// Floats of transformed input per band (positions × tiles × in channels): 512 KiB.
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

/// The size of Winograd's tiles: F(2x2, 3x3) or F(4x4, 3x3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tile {
    /// 2x2 outputs from a 4x4 patch: 16 products.
    F2,
    /// 4x4 outputs from a 6x6 patch: 36 products.
    F4,
}

/// An image with fewer F(4x4) tiles than this (outputs smaller than about 24x24)
/// takes F(2x2). Each of F(4x4)'s 36 products reads the whole of its `U[e]` for as many
/// rows as a band has tiles: on a 7x7 output (four tiles) reading the 36 matrices costs
/// more than the multiplications saved, and on ResNet50's 14x14 layers at batch 1 the
/// layer was level and the one after it slower (see bench/notes.md).
const MIN_F4_TILES: usize = 36;

impl Tile {
    /// Outputs along each side of a tile.
    const fn outputs(self) -> usize {
        match self {
            Tile::F2 => 2,
            Tile::F4 => 4,
        }
    }

    /// The side of a tile's input patch and of its transformed tile: outputs + 2.
    const fn side(self) -> usize {
        self.outputs() + 2
    }

    /// Positions of a transformed tile, side²: its products.
    const fn positions(self) -> usize {
        self.side() * self.side()
    }

    /// The tile the forward pass of `g` takes.
    pub(crate) fn for_geometry(g: &ConvGeometry) -> Tile {
        let f4_tiles = g.out_h.div_ceil(4) * g.out_w.div_ceil(4);
        if f4_tiles >= MIN_F4_TILES {
            Tile::F4
        } else {
            Tile::F2
        }
    }

    /// Tiles across an output row.
    fn across(self, g: &ConvGeometry) -> usize {
        g.out_w.div_ceil(self.outputs())
    }
}

/// Winograd's transformed kernel U: its matrices (in × out channels), one per position
/// of the tile, in the form the forward products read.
#[derive(Debug)]
pub struct TransformedKernel {
    tile: Tile,
    matrices: Matrices,
}

/// U's matrices: packed where the products read a packed operand (AVX-512 CPUs, see
/// `gemm::matmul_packed`), else as they are.
#[derive(Debug)]
enum Matrices {
    /// One after another, row-major.
    Plain(Vec<f32>),
    /// Each packed.
    Packed(Vec<PackedRight>),
}

/// The [`TransformedKernel`] of `w` for the forward products of geometry `g`.
pub(crate) fn prepared(g: &ConvGeometry, w: &[f32]) -> TransformedKernel {
    prepared_for(Tile::for_geometry(g), g, w)
}

fn prepared_for(tile: Tile, g: &ConvGeometry, w: &[f32]) -> TransformedKernel {
    let (ci, co) = (g.in_c, g.out_c);
    let u = transformed_kernel(tile, g, w);
    let packed: Option<Vec<PackedRight>> = u
        .chunks_exact(ci * co)
        .map(|u_e| PackedRight::new(ci, co, MatRef::row_major(u_e, co)))
        .collect();
    let matrices = match packed {
        Some(packed) => Matrices::Packed(packed),
        None => Matrices::Plain(u.into_vec()),
    };
    TransformedKernel { tile, matrices }
}

/// `y = activation(conv(x, w) + bias)` for a geometry that [`suits`], from the kernel
/// `w` or, when the caller keeps it, its [`prepared`] form `u` (ignored if it was made
/// for another tile size); `y` is overwritten.
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
    let tile = Tile::for_geometry(g);
    let made;
    let u = match u.filter(|u| u.tile == tile) {
        Some(u) => u,
        None => {
            made = prepared_for(tile, g, w);
            &made
        }
    };
    let positions = tile.positions();
    match &u.matrices {
        Matrices::Plain(u) => {
            assert_eq!(u.len(), positions * ci * co, "transformed kernel length")
        }
        Matrices::Packed(u) => assert!(
            u.len() == positions && u.iter().all(|u_e| u_e.shape() == (ci, co)),
            "transformed kernel shape"
        ),
    }
    let (outputs, tiles_w) = (tile.outputs(), tile.across(g));
    let row_len = g.out_w * co;
    let mut rest = y;
    let bands: Vec<_> = bands(tile, g)
        .into_iter()
        .map(|(n, ty, rows)| {
            let (band, after) = std::mem::take(&mut rest).split_at_mut(rows * row_len);
            rest = after;
            (n, ty, band)
        })
        .collect();
    // Too few bands to share evenly between the threads (a small image at batch 1): a
    // band's products run in parallel too.
    let few_bands = bands.len() < 4 * rayon::current_num_threads();
    bands.into_par_iter().for_each(|(n, ty, y_band)| {
        let tiles = (y_band.len() / row_len).div_ceil(outputs) * tiles_w;
        // Position-major, V[e] and M[e] each a contiguous row-major matrix: rows a
        // few hundred bytes apart, not `positions` times that (rows 4 KiB apart share
        // L1 sets).
        let mut v = Scratch::new(positions * tiles * ci);
        let mut m = Scratch::new(positions * tiles * co);
        dispatch!(input_transform(tile, g, x, n, ty, tiles, &mut v));
        let product = |(e, m_e): (usize, &mut [f32])| {
            let v_e = MatRef::row_major(&v[e * tiles * ci..], ci);
            match &u.matrices {
                Matrices::Plain(u) => {
                    let u_e = MatRef::row_major(&u[e * ci * co..], co);
                    matmul(tiles, co, ci, v_e, u_e, m_e, co, Start::Zeros, false);
                }
                Matrices::Packed(u) => {
                    matmul_packed(tiles, v_e, &u[e], m_e, co, &Epilogue::default(), false);
                }
            }
        };
        if few_bands {
            m.par_chunks_mut(tiles * co).enumerate().for_each(product);
        } else {
            m.chunks_mut(tiles * co).enumerate().for_each(product);
        }
        dispatch!(output_transform(tile, g, &m, tiles, epilogue.bias, y_band));
        epilogue.finish(y_band, co);
    });
}

/// The bands of a convolution's output in `tile`s, in memory order: (image, first tile
/// row, output rows). A band has at most as many tile rows as keep its transformed
/// inputs within [`BAND_FLOATS`].
fn bands(tile: Tile, g: &ConvGeometry) -> Vec<(usize, usize, usize)> {
    let outputs = tile.outputs();
    let (tiles_h, tiles_w) = (g.out_h.div_ceil(outputs), tile.across(g));
    let most_rows =
        (BAND_FLOATS / (tile.positions() * g.in_c * tiles_w).max(1)).clamp(1, tiles_h.max(1));
    // As many bands as that takes, of even sizes: an image's band of three tile rows and
    // one of one would leave a thread with a quarter of the work.
    let band_rows = tiles_h.div_ceil(tiles_h.div_ceil(most_rows)).max(1);
    (0..g.batch)
        .flat_map(|n| {
            (0..tiles_h).step_by(band_rows).map(move |ty| {
                let rows = (outputs * (ty + band_rows)).min(g.out_h) - outputs * ty;
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
    let tiles_w = Tile::F2.across(g);
    let bands = bands(Tile::F2, g);
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
                dispatch!(input_transform(Tile::F2, g, x, n, ty, tiles, &mut v));
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
                split_n(&mut columns_done, co, b, 2, 0..co),
            );
        }
        for r in 0..4 {
            let row = &columns_done[2 * r * co..][..2 * co];
            let halves = [&row[..co], &row[co..]];
            expand_2(halves, split_n(dm, co, 4 * r * tiles + t, tiles, 0..co));
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

/// `U[e][c][o] = (G g Gᵀ)[e]` for every pair of channels, from the HWIO kernel `w`:
/// F(2x2)'s `G` is [`kernel_4`]'s, F(4x4)'s [`kernel_6`]'s.
fn transformed_kernel(tile: Tile, g: &ConvGeometry, w: &[f32]) -> Scratch {
    let pairs = g.in_c * g.out_c;
    let mut u = Scratch::new(tile.positions() * pairs);
    // Runs of (in, out) pairs, transformed slice by slice so the loops vectorise, and
    // shared among the threads: each run writes its own range of every plane.
    let mut planes: Vec<_> = u
        .chunks_exact_mut(pairs)
        .map(|p| p.chunks_mut(KERNEL_RUN))
        .collect();
    let runs: Vec<Vec<&mut [f32]>> = (0..pairs.div_ceil(KERNEL_RUN))
        .map(|_| planes.iter_mut().filter_map(Iterator::next).collect())
        .collect();
    runs.into_par_iter().enumerate().for_each(|(run, mut out)| {
        let (first, len) = (run * KERNEL_RUN, out[0].len());
        let columns: [[&[f32]; 3]; 3] = std::array::from_fn(|j| {
            std::array::from_fn(|i| &w[(i * 3 + j) * pairs + first..][..len])
        });
        dispatch!(kernel_run(tile, columns, &mut out));
    });
    u
}

/// One run of [`transformed_kernel`]: `columns[j][i]` the kernel's tap (i, j) for the
/// run's pairs, `planes` the run's range of each of U's planes.
///
/// Here and in the other transforms, `transform` is a closure that calls the 1-D
/// transform rather than the function itself: a closure marked `#[inline(always)]` is
/// inlined into `dispatch!`'s AVX-512 or AVX2 copy, where a function passed by name is
/// called through a shim compiled for the baseline CPU (scalar, its multiply-adds
/// library calls).
#[allow(clippy::redundant_closure)]
#[inline(always)]
fn kernel_run<const FMA: bool>(tile: Tile, columns: [[&[f32]; 3]; 3], planes: &mut [&mut [f32]]) {
    match tile {
        Tile::F2 => kernel_tiles::<4>(
            columns,
            planes,
            #[inline(always)]
            |g, u| kernel_4(g, u),
        ),
        Tile::F4 => kernel_tiles::<6>(
            columns,
            planes,
            #[inline(always)]
            |g, u| kernel_6::<FMA>(g, u),
        ),
    }
}

/// [`kernel_run`] with `transform` applying `G` to three slices.
#[inline(always)]
fn kernel_tiles<const SIDE: usize>(
    columns: [[&[f32]; 3]; 3],
    planes: &mut [&mut [f32]],
    transform: impl Fn([&[f32]; 3], [&mut [f32]; SIDE]),
) {
    let len = columns[0][0].len();
    // G·g column by column: `g_columns[j·SIDE + r]`, then (G·g)·Gᵀ row by row.
    let mut g_columns = Scratch::new(3 * SIDE * len);
    for (j, column) in columns.into_iter().enumerate() {
        transform(column, split_n(&mut g_columns, len, j * SIDE, 1, 0..len));
    }
    for r in 0..SIDE {
        let at = |j: usize| &g_columns[(j * SIDE + r) * len..][..len];
        let mut row = planes[r * SIDE..].iter_mut();
        let out = std::array::from_fn(|_| &mut **row.next().expect("a plane per position"));
        transform([at(0), at(1), at(2)], out);
    }
}

/// F(2x2)'s `G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]` applied elementwise.
#[inline(always)]
fn kernel_4([a, b, c]: [&[f32]; 3], [u0, u1, u2, u3]: [&mut [f32]; 4]) {
    let n = a.len();
    let (b, c) = (&b[..n], &c[..n]);
    let (u0, u1, u2, u3) = (&mut u0[..n], &mut u1[..n], &mut u2[..n], &mut u3[..n]);
    for i in 0..n {
        u0[i] = a[i];
        u1[i] = 0.5 * (a[i] + b[i] + c[i]);
        u2[i] = 0.5 * (a[i] - b[i] + c[i]);
        u3[i] = c[i];
    }
}

/// F(4x4)'s `G = [[¼, 0, 0], [−⅙, −⅙, −⅙], [−⅙, ⅙, −⅙], [1/24, 1/12, ⅙],
/// [1/24, −1/12, ⅙], [0, 0, 1]]` applied elementwise.
#[inline(always)]
fn kernel_6<const FMA: bool>([a, b, c]: [&[f32]; 3], u: [&mut [f32]; 6]) {
    let n = a.len();
    let (b, c) = (&b[..n], &c[..n]);
    let [u0, u1, u2, u3, u4, u5] = u;
    let (u0, u1, u2) = (&mut u0[..n], &mut u1[..n], &mut u2[..n]);
    let (u3, u4, u5) = (&mut u3[..n], &mut u4[..n], &mut u5[..n]);
    for i in 0..n {
        let (ends, middle) = (a[i] + c[i], b[i]);
        u0[i] = 0.25 * a[i];
        u1[i] = -(ends + middle) / 6.0;
        u2[i] = (middle - ends) / 6.0;
        let (quarter, twelfth) = (madd::<FMA>(0.25, a[i], c[i]) / 6.0, middle / 12.0);
        u3[i] = quarter + twelfth;
        u4[i] = quarter - twelfth;
        u5[i] = c[i];
    }
}

/// Pairs of channels a task of [`transformed_kernel`] transforms.
const KERNEL_RUN: usize = 2048;

/// Channels a tile's transforms take at a time, so that their intermediate rows stay
/// in L1 on deep layers.
const CHANNEL_BLOCK: usize = 64;

/// `V = Bᵀ d B` for every tile of the band whose first tile row is `ty` (image `n`);
/// input pixels in the padding read as zeros. F(2x2)'s `Bᵀ` is [`input_4`]'s, F(4x4)'s
/// [`input_6`]'s.
#[allow(clippy::redundant_closure)]
#[inline(always)]
fn input_transform<const FMA: bool>(
    tile: Tile,
    g: &ConvGeometry,
    x: &[f32],
    n: usize,
    ty: usize,
    tiles: usize,
    v: &mut [f32],
) {
    match tile {
        Tile::F2 => input_tiles::<4>(
            g,
            x,
            n,
            ty,
            tiles,
            v,
            #[inline(always)]
            |d, o| input_4(d, o),
        ),
        Tile::F4 => input_tiles::<6>(
            g,
            x,
            n,
            ty,
            tiles,
            v,
            #[inline(always)]
            |d, o| input_6::<FMA>(d, o),
        ),
    }
}

/// [`input_transform`] for tiles of `SIDE − 2` outputs, `transform` applying `Bᵀ` to
/// `SIDE` channel vectors.
#[inline(always)]
fn input_tiles<const SIDE: usize>(
    g: &ConvGeometry,
    x: &[f32],
    n: usize,
    ty: usize,
    tiles: usize,
    v: &mut [f32],
    transform: impl Fn([&[f32]; SIDE], [&mut [f32]; SIDE]),
) {
    let (ci, outputs) = (g.in_c, SIDE - 2);
    let tiles_w = g.out_w.div_ceil(outputs);
    let zeros = Scratch::zeroed(ci);
    let mut rows_done = Scratch::new(SIDE * SIDE * CHANNEL_BLOCK.min(ci));
    let shape = [g.in_h, g.in_w, ci];
    for t in 0..tiles {
        let (tile_y, tile_x) = (ty + t / tiles_w, t % tiles_w);
        // Patch pixel (r, s), straight from `x`, or zeros in the padding.
        let pixel = |r: usize, s: usize| {
            let iy = (outputs * tile_y + r).wrapping_sub(g.pad_top);
            let ix = (outputs * tile_x + s).wrapping_sub(g.pad_left);
            pixel_or_zeros(x, shape, n, (iy, ix), &zeros)
        };
        for c0 in (0..ci).step_by(CHANNEL_BLOCK) {
            let cb = CHANNEL_BLOCK.min(ci - c0);
            // Bᵀ·d down each column s, then (Bᵀd)·B along each row r.
            for s in 0..SIDE {
                let column = std::array::from_fn(|r| &pixel(r, s)[c0..c0 + cb]);
                transform(column, split_n(&mut rows_done, cb, s, SIDE, 0..cb));
            }
            for r in 0..SIDE {
                let row = &rows_done[r * SIDE * cb..][..SIDE * cb];
                // V[e][t] for e = SIDE·r .. SIDE·(r + 1).
                let v_rows = split_n(v, ci, SIDE * r * tiles + t, tiles, c0..c0 + cb);
                transform(std::array::from_fn(|s| &row[s * cb..][..cb]), v_rows);
            }
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

/// F(2x2)'s `Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]` applied
/// elementwise: `(a − c, b + c, c − b, b − d)`.
#[inline(always)]
fn input_4([a, b, c, d]: [&[f32]; 4], [o0, o1, o2, o3]: [&mut [f32]; 4]) {
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

/// F(4x4)'s `Bᵀ` applied elementwise, its rows `[4, 0, −5, 0, 1, 0]`,
/// `[0, −4, −4, 1, 1, 0]`, `[0, 4, −4, −1, 1, 0]`, `[0, −2, −1, 2, 1, 0]`,
/// `[0, 2, −1, −2, 1, 0]` and `[0, 4, 0, −5, 0, 1]`.
#[inline(always)]
fn input_6<const FMA: bool>(d: [&[f32]; 6], o: [&mut [f32]; 6]) {
    let [d0, d1, d2, d3, d4, d5] = d;
    let [o0, o1, o2, o3, o4, o5] = o;
    let n = d0.len();
    let (d1, d2, d3, d4, d5) = (&d1[..n], &d2[..n], &d3[..n], &d4[..n], &d5[..n]);
    let (o0, o1, o2) = (&mut o0[..n], &mut o1[..n], &mut o2[..n]);
    let (o3, o4, o5) = (&mut o3[..n], &mut o4[..n], &mut o5[..n]);
    for i in 0..n {
        let (a, b, c, e, f) = (
            d1[i] + d2[i],
            d1[i] - d2[i],
            d3[i] + d4[i],
            d4[i] - d3[i],
            d4[i] - d2[i],
        );
        let h = d3[i] - d1[i];
        o0[i] = madd::<FMA>(4.0, d0[i], madd::<FMA>(-5.0, d2[i], d4[i]));
        o1[i] = madd::<FMA>(-4.0, a, c);
        o2[i] = madd::<FMA>(4.0, b, e);
        o3[i] = madd::<FMA>(2.0, h, f);
        o4[i] = madd::<FMA>(-2.0, h, f);
        o5[i] = madd::<FMA>(4.0, d1[i], madd::<FMA>(-5.0, d3[i], d5[i]));
    }
}

/// Columns `cols` of rows `first`, `first + step`, ... of `buf`, read as rows of `len`.
fn split_n<const N: usize>(
    buf: &mut [f32],
    len: usize,
    first: usize,
    step: usize,
    cols: std::ops::Range<usize>,
) -> [&mut [f32]; N] {
    let mut rows = buf.chunks_exact_mut(len).skip(first).step_by(step);
    std::array::from_fn(|_| &mut rows.next().expect("enough rows")[cols.clone()])
}

/// `Y = Aᵀ M A` (+ bias) for every tile of the band, written to its rows of `y`; a
/// tile's outputs past the last row or column are dropped. F(2x2)'s `Aᵀ` is
/// [`output_2`]'s, F(4x4)'s [`output_4`]'s.
#[allow(clippy::redundant_closure)]
#[inline(always)]
fn output_transform<const FMA: bool>(
    tile: Tile,
    g: &ConvGeometry,
    m: &[f32],
    tiles: usize,
    bias: Option<&[f32]>,
    y_band: &mut [f32],
) {
    match tile {
        Tile::F2 => output_tiles::<4, 2>(
            g,
            m,
            tiles,
            bias,
            y_band,
            #[inline(always)]
            |m, y| output_2(m, y),
        ),
        Tile::F4 => output_tiles::<6, 4>(
            g,
            m,
            tiles,
            bias,
            y_band,
            #[inline(always)]
            |m, y| output_4::<FMA>(m, y),
        ),
    }
}

/// [`output_transform`] for tiles of `OUT` outputs from `SIDE` positions, `transform`
/// applying `Aᵀ` to `SIDE` channel vectors.
#[inline(always)]
fn output_tiles<const SIDE: usize, const OUT: usize>(
    g: &ConvGeometry,
    m: &[f32],
    tiles: usize,
    bias: Option<&[f32]>,
    y_band: &mut [f32],
    transform: impl Fn([&[f32]; SIDE], [&mut [f32]; OUT]),
) {
    let co = g.out_c;
    let tiles_w = g.out_w.div_ceil(OUT);
    let rows = y_band.len() / (g.out_w * co);
    let block = CHANNEL_BLOCK.min(co);
    let mut half = Scratch::new(OUT * SIDE * block);
    // A tile cut short by the right edge: its row's outputs, before the ones inside
    // are copied out.
    let mut edge = Scratch::new(OUT * block);
    for t in 0..tiles {
        let (tile_y, tile_x) = (t / tiles_w, t % tiles_w);
        let (ox, across) = (OUT * tile_x, OUT.min(g.out_w - OUT * tile_x));
        for c0 in (0..co).step_by(CHANNEL_BLOCK) {
            let cb = CHANNEL_BLOCK.min(co - c0);
            // Aᵀ·M down each column s.
            for s in 0..SIDE {
                let column =
                    std::array::from_fn(|r| &m[((r * SIDE + s) * tiles + t) * co + c0..][..cb]);
                transform(column, split_n(&mut half, cb, s, SIDE, 0..cb));
            }
            // (AᵀM)·A along each row r: outputs on row OUT·tile_y + r.
            for r in 0..OUT.min(rows - OUT * tile_y) {
                let oy = OUT * tile_y + r;
                let row = std::array::from_fn(|s| &half[(r * SIDE + s) * cb..][..cb]);
                let out = &mut y_band[(oy * g.out_w + ox) * co..][..across * co];
                if across == OUT {
                    transform(row, split_n(out, co, 0, 1, c0..c0 + cb));
                } else {
                    transform(row, split_n(&mut edge, cb, 0, 1, 0..cb));
                    for (o, e) in out.chunks_exact_mut(co).zip(edge.chunks_exact(cb)) {
                        o[c0..c0 + cb].copy_from_slice(e);
                    }
                }
                if let Some(bias) = bias {
                    for pixel in out.chunks_exact_mut(co) {
                        let pixel = &mut pixel[c0..c0 + cb];
                        pixel.iter_mut().zip(&bias[c0..]).for_each(|(o, b)| *o += b);
                    }
                }
            }
        }
    }
}

/// F(2x2)'s `Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]` applied elementwise.
#[inline(always)]
fn output_2([m0, m1, m2, m3]: [&[f32]; 4], [y0, y1]: [&mut [f32]; 2]) {
    let n = m0.len();
    let (m1, m2, m3) = (&m1[..n], &m2[..n], &m3[..n]);
    let (y0, y1) = (&mut y0[..n], &mut y1[..n]);
    for i in 0..n {
        y0[i] = m0[i] + m1[i] + m2[i];
        y1[i] = m1[i] - m2[i] - m3[i];
    }
}

/// F(4x4)'s `Aᵀ = [[1, 1, 1, 1, 1, 0], [0, 1, −1, 2, −2, 0], [0, 1, 1, 4, 4, 0],
/// [0, 1, −1, 8, −8, 1]]` applied elementwise.
#[inline(always)]
fn output_4<const FMA: bool>(m: [&[f32]; 6], y: [&mut [f32]; 4]) {
    let [m0, m1, m2, m3, m4, m5] = m;
    let [y0, y1, y2, y3] = y;
    let n = m0.len();
    let (m1, m2, m3, m4, m5) = (&m1[..n], &m2[..n], &m3[..n], &m4[..n], &m5[..n]);
    let (y0, y1, y2, y3) = (&mut y0[..n], &mut y1[..n], &mut y2[..n], &mut y3[..n]);
    for i in 0..n {
        let (a, b, c, d) = (m1[i] + m2[i], m1[i] - m2[i], m3[i] + m4[i], m3[i] - m4[i]);
        y0[i] = m0[i] + a + c;
        y1[i] = madd::<FMA>(2.0, d, b);
        y2[i] = madd::<FMA>(4.0, c, a);
        y3[i] = madd::<FMA>(8.0, d, b) + m5[i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 'same' 3x3 convolution of `hw`x`hw` images, `c` channels in and out.
    fn geometry(batch: usize, hw: usize, c: usize) -> ConvGeometry {
        ConvGeometry::square_windows([batch, hw, hw, c], c, 3, 1, 1, 1)
    }

    #[test]
    fn large_outputs_take_four_by_four_tiles_whatever_the_batch() {
        // ResNet50's 3x3 layers: 56x56 and 28x28 on F(4x4), 14x14 and 7x7 on F(2x2).
        for (hw, tile) in [
            (56, Tile::F4),
            (28, Tile::F4),
            (14, Tile::F2),
            (7, Tile::F2),
        ] {
            for batch in [1, 16] {
                assert_eq!(
                    Tile::for_geometry(&geometry(batch, hw, 64)),
                    tile,
                    "{hw}x{hw}"
                );
            }
        }
    }

    /// Relative L2 error of `tile`'s forward pass against the direct sum in f64.
    fn relative_error(tile: Tile, g: &ConvGeometry) -> f64 {
        let value =
            |i: usize, seed: usize| ((i * 7919 + seed * 104729) % 2001) as f32 / 1000.0 - 1.0;
        let x: Vec<f32> = (0..g.input_len()).map(|i| value(i, 1)).collect();
        let w: Vec<f32> = (0..g.kernel_len()).map(|i| value(i, 2)).collect();
        let mut y = vec![f32::NAN; g.output_len()];
        let u = prepared_for(tile, g, &w);
        // The forward pass reads `u` only where it is its own tile's: `tile` must be.
        assert_eq!(Tile::for_geometry(g), tile);
        forward(g, &x, &w, Some(&u), Epilogue::default(), &mut y);
        let (mut diff, mut norm) = (0.0f64, 0.0f64);
        let (h, wd, c) = (g.out_h as isize, g.out_w as isize, g.out_c);
        for oy in 0..h {
            for ox in 0..wd {
                for o in 0..c {
                    let mut sum = 0.0f64;
                    for (i, j) in (0..3).flat_map(|i| (0..3).map(move |j| (i, j))) {
                        let (iy, ix) = (oy + i - 1, ox + j - 1);
                        if iy < 0 || ix < 0 || iy >= h || ix >= wd {
                            continue;
                        }
                        for ci in 0..g.in_c {
                            let xv = x[((iy * wd + ix) as usize) * g.in_c + ci];
                            let wv = w[((i * 3 + j) as usize * g.in_c + ci) * c + o];
                            sum += f64::from(xv) * f64::from(wv);
                        }
                    }
                    let got = f64::from(y[((oy * wd + ox) as usize) * c + o]);
                    diff += (got - sum).powi(2);
                    norm += sum * sum;
                }
            }
        }
        (diff / norm).sqrt()
    }

    #[test]
    fn four_by_four_tiles_stay_within_the_direct_sums_tolerance() {
        // 256 channels: the sums are as deep as ResNet50's; F(4x4)'s constants cost a few
        // times F(2x2)'s error, both far inside the 1e-5 the kernels are held to.
        let f2 = relative_error(Tile::F2, &geometry(1, 12, 256));
        let f4 = relative_error(Tile::F4, &geometry(1, 24, 256));
        assert!(f2 < 1e-6, "F(2x2): {f2:.2e}");
        assert!(f4 < 5e-6, "F(4x4): {f4:.2e}");
    }
}
