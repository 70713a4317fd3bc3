//! The portable loops of the depthwise kernels: written once, generic over whether the
//! CPU fuses multiply-adds, and compiled for AVX2+FMA and for the baseline by `dispatch!`.

use super::BLOCK;
use crate::kernels::conv::ConvGeometry;
use crate::kernels::simd::{dispatch, madd};
use crate::kernels::Epilogue;

/// Output row `oy` of image `n` by the portable loops: the fixed-kernel interior where
/// it applies, every other pixel by its list of taps.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_row(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    epilogue: Epilogue,
    dm: usize,
    n: usize,
    oy: usize,
    y_row: &mut [f32],
) {
    // The interior starts from the bias in registers; other pixels from memory.
    let interior = match FixedKernel::for_row(g, dm, oy) {
        Some(fixed) => {
            let columns = fixed.columns.clone();
            dispatch!(forward_interior(
                fixed,
                g,
                x,
                w,
                epilogue.bias,
                n,
                oy,
                y_row
            ));
            columns
        }
        None => 0..0,
    };
    let mut taps = Vec::with_capacity(g.kernel_h * g.kernel_w);
    for ox in (0..g.out_w).filter(|ox| !interior.contains(ox)) {
        let out = &mut y_row[ox * g.out_c..][..g.out_c];
        epilogue.init(out, g.out_c);
        taps.clear();
        g.for_each_tap_at((n, oy, ox), |tap, at| taps.push((at, tap * g.out_c)));
        if dm == 1 {
            super::gather_fastest(out, &taps, x, w);
        } else {
            for &(at, k) in &taps {
                for (ch, &a) in x[at..at + g.in_c].iter().enumerate() {
                    let (o, kw) = (&mut out[ch * dm..][..dm], &w[k + ch * dm..][..dm]);
                    o.iter_mut().zip(kw).for_each(|(o, b)| *o += a * b);
                }
            }
        }
    }
    epilogue.finish(y_row, g.out_c);
}

/// The fast case of a row: a 3x3 kernel, one filter per channel, channels in whole
/// blocks, and every kernel row inside the input. Over `columns` (where every tap is
/// inside too) the nine taps' weights of a channel block stay in registers while the
/// block slides along the row, so each multiply-add loads one value.
#[derive(Clone)]
struct FixedKernel {
    columns: std::ops::Range<usize>,
}

impl FixedKernel {
    const K: usize = 3;

    fn for_row(g: &ConvGeometry, dm: usize, oy: usize) -> Option<Self> {
        let fits = dm == 1
            && g.kernel_h == Self::K
            && g.kernel_w == Self::K
            && g.in_c.is_multiple_of(BLOCK)
            && (0..Self::K).all(|i| {
                (oy * g.stride_h + i * g.dilation_h)
                    .checked_sub(g.pad_top)
                    .is_some_and(|iy| iy < g.in_h)
            });
        if !fits {
            return None;
        }
        let columns = (0..Self::K)
            .map(|j| columns_inside(g, j))
            .reduce(|a, b| a.start.max(b.start)..a.end.min(b.end))?;
        (columns.start < columns.end).then_some(FixedKernel { columns })
    }
}

/// The output columns `ox` whose tap at kernel column `j` lands inside the input:
/// `0 <= ox·stride + j·dilation − pad_left < in_w`.
fn columns_inside(g: &ConvGeometry, j: usize) -> std::ops::Range<usize> {
    let offset = j * g.dilation_w;
    let first = g.pad_left.saturating_sub(offset).div_ceil(g.stride_w);
    let end = if g.in_w + g.pad_left > offset {
        ((g.in_w + g.pad_left - offset - 1) / g.stride_w + 1).min(g.out_w)
    } else {
        0
    };
    first..end.max(first)
}

/// Offsets into `x` of the nine taps of output column `ox` on row `oy` of image `n`, for
/// channel 0 (the caller adds its block's first channel).
#[inline(always)]
fn tap_offsets(g: &ConvGeometry, n: usize, oy: usize, ox: usize) -> [usize; 9] {
    let mut at = [0; 9];
    for i in 0..3 {
        let iy = oy * g.stride_h + i * g.dilation_h - g.pad_top;
        for j in 0..3 {
            let ix = ox * g.stride_w + j * g.dilation_w - g.pad_left;
            at[i * 3 + j] = ((n * g.in_h + iy) * g.in_w + ix) * g.in_c;
        }
    }
    at
}

/// Writes the interior columns of one output row: the bias (or zero) plus the products.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_interior<const FMA: bool>(
    fixed: FixedKernel,
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    n: usize,
    oy: usize,
    y_row: &mut [f32],
) {
    let c = g.in_c;
    for cb in (0..c).step_by(BLOCK) {
        let weights: [[f32; BLOCK]; 9] =
            std::array::from_fn(|t| w[t * c + cb..][..BLOCK].try_into().expect("a block"));
        let start: [f32; BLOCK] = bias.map_or([0.0; BLOCK], |b| {
            b[cb..][..BLOCK].try_into().expect("a block")
        });
        // Four columns at a time: four independent chains of multiply-adds, so the FMA
        // units are not left waiting on one accumulator's latency.
        let mut ox = fixed.columns.start;
        while ox + 4 <= fixed.columns.end {
            forward_columns::<FMA, 4>(g, x, &weights, &start, (n, oy, ox), cb, y_row);
            ox += 4;
        }
        for ox in ox..fixed.columns.end {
            forward_columns::<FMA, 1>(g, x, &weights, &start, (n, oy, ox), cb, y_row);
        }
    }
}

/// Channel block `cb` of output columns `ox..ox + N`: accumulators and weights in
/// registers (the sizes are constants, so the compiler can keep them there).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_columns<const FMA: bool, const N: usize>(
    g: &ConvGeometry,
    x: &[f32],
    weights: &[[f32; BLOCK]; 9],
    start: &[f32; BLOCK],
    (n, oy, ox): (usize, usize, usize),
    cb: usize,
    y_row: &mut [f32],
) {
    let c = g.in_c;
    let taps: [[usize; 9]; N] = std::array::from_fn(|k| tap_offsets(g, n, oy, ox + k));
    let mut acc: [[f32; BLOCK]; N] = [*start; N];
    for t in 0..9 {
        for k in 0..N {
            let xs: &[f32; BLOCK] = x[taps[k][t] + cb..][..BLOCK].try_into().expect("a block");
            for l in 0..BLOCK {
                acc[k][l] = madd::<FMA>(xs[l], weights[t][l], acc[k][l]);
            }
        }
    }
    for (k, acc) in acc.iter().enumerate() {
        y_row[(ox + k) * c + cb..][..BLOCK].copy_from_slice(acc);
    }
}

/// Adds dL/dW of the interior columns of output row `oy` of image `n` into `acc`.
#[inline(always)]
fn kernel_gradient_interior<const FMA: bool>(
    fixed: FixedKernel,
    g: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    n: usize,
    oy: usize,
    acc: &mut [f32],
) {
    let c = g.in_c;
    let row = (n * g.out_h + oy) * g.out_w;
    for cb in (0..c).step_by(BLOCK) {
        let mut sums = [[0.0f32; BLOCK]; 9];
        for ox in fixed.columns.clone() {
            let grad = &dy[(row + ox) * c + cb..][..BLOCK];
            for (t, at) in tap_offsets(g, n, oy, ox).into_iter().enumerate() {
                let xs = &x[at + cb..][..BLOCK];
                for l in 0..BLOCK {
                    sums[t][l] = madd::<FMA>(xs[l], grad[l], sums[t][l]);
                }
            }
        }
        for (t, sum) in sums.iter().enumerate() {
            for (a, s) in acc[t * c + cb..][..BLOCK].iter_mut().zip(sum) {
                *a += s;
            }
        }
    }
}

/// Channels per register block: two AVX vectors, four SSE or NEON vectors.
const LANES: usize = 16;

/// `out[ch] += Σ a[p + ch]·b[q + ch]` over the `(p, q)` pairs, for every channel of `out`:
/// each block of channels stays in registers across all pairs.
#[inline(always)]
pub(super) fn gather<const FMA: bool>(
    out: &mut [f32],
    pairs: &[(usize, usize)],
    a: &[f32],
    b: &[f32],
) {
    let c = out.len();
    let mut start = 0;
    while start + LANES <= c {
        let mut acc: [f32; LANES] = out[start..start + LANES].try_into().expect("a block");
        for &(p, q) in pairs {
            let (a, b) = (&a[p + start..][..LANES], &b[q + start..][..LANES]);
            for l in 0..LANES {
                acc[l] = madd::<FMA>(a[l], b[l], acc[l]);
            }
        }
        out[start..start + LANES].copy_from_slice(&acc);
        start += LANES;
    }
    for ch in start..c {
        let mut acc = out[ch];
        for &(p, q) in pairs {
            acc = madd::<FMA>(a[p + ch], b[q + ch], acc);
        }
        out[ch] = acc;
    }
}

/// Adds dL/dW of output pixels `pixels` (whole rows) into `acc` (one kernel's worth).
#[inline(always)]
pub(super) fn kernel_gradient<const FMA: bool>(
    g: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    dm: usize,
    pixels: std::ops::Range<usize>,
    acc: &mut [f32],
) {
    let (c, oc) = (g.in_c, g.out_c);
    for row in pixels.start / g.out_w..pixels.end / g.out_w {
        let (n, oy) = (row / g.out_h, row % g.out_h);
        let interior = match FixedKernel::for_row(g, dm, oy) {
            Some(fixed) => {
                kernel_gradient_interior::<FMA>(fixed.clone(), g, x, dy, n, oy, acc);
                fixed.columns
            }
            None => 0..0,
        };
        for ox in (0..g.out_w).filter(|ox| !interior.contains(ox)) {
            let grad = &dy[(row * g.out_w + ox) * oc..][..oc];
            g.for_each_tap_at((n, oy, ox), |tap, at| {
                let (xs, k) = (&x[at..][..c], &mut acc[tap * oc..][..oc]);
                if dm == 1 {
                    for ((k, &a), &b) in k.iter_mut().zip(xs).zip(grad) {
                        *k = madd::<FMA>(a, b, *k);
                    }
                } else {
                    for (o, k) in k.iter_mut().enumerate() {
                        *k = madd::<FMA>(xs[o / dm], grad[o], *k);
                    }
                }
            });
        }
    }
}
