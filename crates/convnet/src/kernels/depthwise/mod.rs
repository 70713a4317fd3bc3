//! Depthwise convolution: each input channel convolved with its own `depth_multiplier`
//! filters, output channel `c·dm + m` from input channel `c`. Keras's kernel shape
//! (kh, kw, channels, dm) has exactly the memory layout of a grouped convolution's kernel
//! with `groups = channels`, so the same [`ConvGeometry`] describes it; but a matrix
//! product per channel would be mostly overhead, so these loops run directly over NHWC
//! rows, where the channels of a pixel are contiguous and the inner loop vectorises.
//!
//! With one filter per channel (the common case) outputs are computed in registers, a
//! vector of channels at a time: on x86 CPUs 3x3 and 5x5 rows go in strips of 8
//! outputs (`x86.rs`: 16 channels a vector on AVX-512, 8 on AVX2), elsewhere each
//! output gathers its kernel taps before it is stored once.
//! The input gradient is computed the same way, as a gather from the output gradient (at
//! stride 1, as the forward pass of the flipped kernel), so its rows are independent and
//! run in parallel like the forward's.
//!
//! Files: `mod.rs` the entry points and the choice of route per row, `portable.rs` the
//! loops every CPU runs (generic over FMA, see `simd`), `x86.rs` the 3x3 and 5x5 rows
//! in AVX2 and AVX-512 intrinsics, and the gather and the 3x3 kernel gradient in AVX2,
//! `with_pointwise.rs` inference's depthwise layer run with the 1x1 layers next to it.

mod portable;
pub mod with_pointwise;
#[cfg(target_arch = "x86_64")]
mod x86;

use crate::buffers::Scratch;
use crate::kernels::conv::ConvGeometry;
use crate::kernels::simd::dispatch;
use crate::kernels::Epilogue;
use portable::{forward_row, gather, kernel_gradient};
use rayon::prelude::*;

/// Above this many bytes of tensors read and written, the x86 rows prefetch the
/// lines of a strip a little ahead: the tensors then stream from memory and the
/// prefetches hide its latency (W4's 26 MB: forward and kernel gradient 15–20% faster
/// on a 32 MB-L3 EPYC). Smaller ones usually sit in the cache from the pass before,
/// where the prefetches only take issue slots (3–6 MB: 5–10% slower).
const PREFETCH_ABOVE_BYTES: usize = 16 << 20;

fn check(g: &ConvGeometry, x: usize, w: usize, y: usize) -> usize {
    assert!(
        g.groups == g.in_c && g.in_c > 0 && g.out_c.is_multiple_of(g.in_c),
        "depthwise geometry"
    );
    assert_eq!(x, g.input_len(), "depthwise input length");
    assert_eq!(w, g.kernel_len(), "depthwise kernel length");
    assert_eq!(y, g.output_len(), "depthwise output length");
    g.out_c / g.in_c
}

/// `y = depthwise(x, w)`; `y` is overwritten.
pub fn depthwise_forward(g: &ConvGeometry, x: &[f32], w: &[f32], y: &mut [f32]) {
    depthwise_forward_with(g, x, w, Epilogue::default(), y);
}

/// `y = activation(depthwise(x, w) + bias)`; `y` is overwritten.
pub fn depthwise_forward_with(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    epilogue: Epilogue,
    y: &mut [f32],
) {
    let dm = check(g, x.len(), w.len(), y.len());
    if y.is_empty() {
        return;
    }
    // Rows are independent; a task takes a run of them, as many as make 16 tasks per
    // thread (a task per row cost as much in rayon's bookkeeping as the row's work).
    let row_len = g.out_w * g.out_c;
    let rows = g.batch * g.out_h;
    let rows_per_task = rows.div_ceil(16 * rayon::current_num_threads()).max(1);
    let lanes = vector_lanes(g, dm);
    let prefetch = 4 * (x.len() + y.len()) > PREFETCH_ABOVE_BYTES;
    let image_len = g.in_h * g.in_w * g.in_c;
    y.par_chunks_mut(rows_per_task * row_len)
        .enumerate()
        .for_each(|(task, y_rows)| {
            for (r, y_row) in y_rows.chunks_exact_mut(row_len).enumerate() {
                let row = task * rows_per_task + r;
                let (n, oy) = (row / g.out_h, row % g.out_h);
                #[cfg(target_arch = "x86_64")]
                if lanes > 0 {
                    let row_at = |iy: usize| n * image_len + iy * g.in_w * g.in_c;
                    // SAFETY: `lanes` was chosen for this CPU and geometry.
                    unsafe { vector_row(lanes, g, x, row_at, w, epilogue, oy, prefetch, y_row) };
                    continue;
                }
                forward_row(g, x, w, epilogue, dm, n, oy, y_row);
            }
        });
}

/// The lanes of the register-blocked rows for `g` on this CPU, where the channels come
/// in whole vectors: 16 on AVX-512, else 8 on AVX2; 0 where they do not apply (other
/// kernels, depth multipliers, channel counts or CPUs).
fn vector_lanes(g: &ConvGeometry, dm: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::kernels::simd::{has_avx2_fma, has_avx512};
        let whole = |lanes: usize| dm == 1 && g.in_c.is_multiple_of(lanes);
        let square = (g.kernel_h == 3 || g.kernel_h == 5) && g.kernel_w == g.kernel_h;
        if square && whole(16) && has_avx512() {
            return 16;
        } else if square && whole(BLOCK) && has_avx2_fma() {
            return BLOCK;
        }
    }
    let _ = (g, dm);
    0
}

/// Output row `oy` by the register-blocked rows of `lanes` lanes, input row `iy`
/// starting at `row_at(iy)` in `x`, then the epilogue's pass over it.
///
/// # Safety
/// `lanes` is [`vector_lanes`]'s choice for `g` on this CPU, not 0.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn vector_row(
    lanes: usize,
    g: &ConvGeometry,
    x: &[f32],
    row_at: impl Fn(usize) -> usize,
    w: &[f32],
    epilogue: Epilogue,
    oy: usize,
    prefetch: bool,
    y_row: &mut [f32],
) {
    use x86::input_rows;
    let bias = epilogue.bias;
    // SAFETY: the CPU has the route's instructions, checked when `lanes` was chosen;
    // the row functions check every row they read against `x`.
    unsafe {
        match (lanes, g.kernel_h) {
            (16, 3) => {
                let rows = input_rows::<3>(g, oy, row_at);
                x86::forward_row_avx512::<3>(g, x, rows, w, bias, prefetch, y_row)
            }
            (16, _) => {
                let rows = input_rows::<5>(g, oy, row_at);
                x86::forward_row_avx512::<5>(g, x, rows, w, bias, prefetch, y_row)
            }
            (_, 3) => {
                let rows = input_rows::<3>(g, oy, row_at);
                x86::forward_row::<3>(g, x, rows, w, bias, prefetch, y_row)
            }
            _ => {
                let rows = input_rows::<5>(g, oy, row_at);
                x86::forward_row::<5>(g, x, rows, w, bias, prefetch, y_row)
            }
        }
    }
    epilogue.finish(y_row, g.out_c);
}

/// Off x86 there are no register-blocked rows: [`vector_lanes`] is 0, so this is never
/// called.
///
/// # Safety
/// None: it is never called.
#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn vector_row(
    _lanes: usize,
    _g: &ConvGeometry,
    _x: &[f32],
    _row_at: impl Fn(usize) -> usize,
    _w: &[f32],
    _epilogue: Epilogue,
    _oy: usize,
    _prefetch: bool,
    _y_row: &mut [f32],
) {
    unreachable!("no register-blocked depthwise rows off x86")
}

/// Channels per vector in the fixed-kernel loops: one AVX register, two SSE or NEON.
const BLOCK: usize = 8;

/// [`gather`] by the fastest route this CPU has.
fn gather_fastest(out: &mut [f32], pairs: &[(usize, usize)], a: &[f32], b: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if out.len().is_multiple_of(BLOCK) && crate::kernels::simd::has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA.
        unsafe { x86::gather(out, pairs, a, b) };
        return;
    }
    dispatch!(gather(out, pairs, a, b));
}

/// `dx = dL/dx` from `dy`; `dx` is overwritten.
///
/// Input pixel (iy, ix) received tap (i, j) from output pixel
/// ((iy + pad_top − i·dilation) / stride, …) when that division is exact and in range, so
/// each input row gathers its gradient on its own.
pub fn depthwise_backward_input(g: &ConvGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let dm = check(g, dx.len(), w.len(), dy.len());
    let (c, oc) = (g.in_c, g.out_c);
    if dx.is_empty() {
        return;
    }
    if let Some((transposed, flipped)) = as_forward(g, dm, w) {
        depthwise_forward(&transposed, dy, &flipped, dx);
        return;
    }
    // The output position a tap at kernel index `k` came from, along one axis.
    let source = |i: usize, k: usize, pad: usize, dilation: usize, stride: usize, out: usize| {
        let at = (i + pad).checked_sub(k * dilation)?;
        (at % stride == 0 && at / stride < out).then_some(at / stride)
    };
    dx.par_chunks_mut(g.in_w * c)
        .enumerate()
        .for_each(|(row, dx_row)| {
            let (n, iy) = (row / g.in_h, row % g.in_h);
            dx_row.fill(0.0);
            let mut taps = Vec::with_capacity(g.kernel_h * g.kernel_w);
            for ix in 0..g.in_w {
                taps.clear();
                for i in 0..g.kernel_h {
                    let Some(oy) = source(iy, i, g.pad_top, g.dilation_h, g.stride_h, g.out_h)
                    else {
                        continue;
                    };
                    for j in 0..g.kernel_w {
                        if let Some(ox) =
                            source(ix, j, g.pad_left, g.dilation_w, g.stride_w, g.out_w)
                        {
                            let pixel = (n * g.out_h + oy) * g.out_w + ox;
                            taps.push((pixel * oc, (i * g.kernel_w + j) * oc));
                        }
                    }
                }
                let d = &mut dx_row[ix * c..][..c];
                if dm == 1 {
                    gather_fastest(d, &taps, dy, w);
                } else {
                    for &(p, q) in &taps {
                        for (ch, d) in d.iter_mut().enumerate() {
                            let r = ch * dm..(ch + 1) * dm;
                            *d += dy[p..][r.clone()]
                                .iter()
                                .zip(&w[q..][r])
                                .map(|(a, b)| a * b)
                                .sum::<f32>();
                        }
                    }
                }
            }
        });
}

/// With stride 1 and one filter per channel, dL/dx is itself a depthwise convolution:
/// of `dy`, by the kernel flipped in both spatial axes, with padding
/// `(kernel − 1)·dilation − pad`. Returns that geometry and kernel, or `None` when the
/// case does not apply.
fn as_forward(g: &ConvGeometry, dm: usize, w: &[f32]) -> Option<(ConvGeometry, Scratch)> {
    let pad_top = ((g.kernel_h - 1) * g.dilation_h).checked_sub(g.pad_top)?;
    let pad_left = ((g.kernel_w - 1) * g.dilation_w).checked_sub(g.pad_left)?;
    if dm != 1 || g.stride_h != 1 || g.stride_w != 1 {
        return None;
    }
    let transposed = ConvGeometry {
        in_h: g.out_h,
        in_w: g.out_w,
        out_h: g.in_h,
        out_w: g.in_w,
        pad_top,
        pad_left,
        ..*g
    };
    let c = g.in_c;
    let mut flipped = Scratch::new(w.len());
    for i in 0..g.kernel_h {
        for j in 0..g.kernel_w {
            let from = ((g.kernel_h - 1 - i) * g.kernel_w + (g.kernel_w - 1 - j)) * c;
            flipped[(i * g.kernel_w + j) * c..][..c].copy_from_slice(&w[from..][..c]);
        }
    }
    Some((transposed, flipped))
}

/// `dw += dL/dW` from the input `x` and `dy`, and `db += dL/db` (the sum of `dy` over
/// pixels) when the layer has a bias: one pass over `dy` for both.
pub fn depthwise_backward_kernel(
    g: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    let dm = check(g, x.len(), dw.len(), dy.len());
    let bias_len = db.as_ref().map_or(0, |db| db.len());
    assert!(
        bias_len == 0 || bias_len == g.out_c,
        "depthwise bias length"
    );
    let row_len = g.out_w * g.out_c;
    #[cfg(target_arch = "x86_64")]
    let fast = dm == 1
        && g.in_c.is_multiple_of(BLOCK)
        && g.kernel_h == 3
        && g.kernel_w == 3
        && crate::kernels::simd::has_avx2_fma();
    // Blocks of output rows in parallel, each summing into its own copy of the (small)
    // kernel and bias; the copies are added in block order, so the sum does not depend on
    // how threads took the work.
    const ROWS_PER_BLOCK: usize = 8;
    let prefetch = 4 * (x.len() + dy.len()) > PREFETCH_ABOVE_BYTES;
    let rows = g.batch * g.out_h;
    let partials: Vec<Scratch> = (0..rows.div_ceil(ROWS_PER_BLOCK))
        .into_par_iter()
        .map(|block| {
            let mut acc = Scratch::zeroed(dw.len() + bias_len);
            let (kernel_acc, bias_acc) = acc.split_at_mut(dw.len());
            for row in block * ROWS_PER_BLOCK..((block + 1) * ROWS_PER_BLOCK).min(rows) {
                let (n, oy) = (row / g.out_h, row % g.out_h);
                #[cfg(target_arch = "x86_64")]
                if fast {
                    // SAFETY: the CPU has AVX2 and FMA.
                    unsafe {
                        x86::kernel_gradient_row_3x3(
                            g, x, dy, n, oy, kernel_acc, bias_acc, prefetch,
                        )
                    };
                    continue;
                }
                let pixels = row * g.out_w..(row + 1) * g.out_w;
                dispatch!(kernel_gradient(g, x, dy, dm, pixels, kernel_acc));
                if bias_len > 0 {
                    for grad in dy[row * row_len..][..row_len].chunks_exact(g.out_c) {
                        bias_acc.iter_mut().zip(grad).for_each(|(b, d)| *b += d);
                    }
                }
            }
            acc
        })
        .collect();
    let kernel_parts: Vec<&[f32]> = partials.iter().map(|p| &p[..dw.len()]).collect();
    crate::kernels::sum_in_order(dw, &kernel_parts);
    if let Some(db) = db {
        let bias_parts: Vec<&[f32]> = partials.iter().map(|p| &p[dw.len()..]).collect();
        crate::kernels::sum_in_order(db, &bias_parts);
    }
}
