//! Depthwise convolution: each input channel convolved with its own `depth_multiplier`
//! filters, output channel `c·dm + m` from input channel `c`. Keras's kernel shape
//! (kh, kw, channels, dm) has exactly the memory layout of a grouped convolution's kernel
//! with `groups = channels`, so the same [`ConvGeometry`] describes it; but a matrix
//! product per channel would be mostly overhead, so these loops run directly over NHWC
//! rows, where the channels of a pixel are contiguous and the inner loop vectorises.
//!
//! With one filter per channel (the common case) outputs are computed in registers, a
//! block of 8 channels at a time: on AVX2 CPUs 3x3 rows go in strips of 8 outputs (the
//! `x86` module), elsewhere each output gathers its kernel taps before it is stored once.
//! The input gradient is computed the same way, as a gather from the output gradient (at
//! stride 1, as the forward pass of the flipped kernel), so its rows are independent and
//! run in parallel like the forward's.

use super::conv::ConvGeometry;
use super::simd::{dispatch, madd};
use super::Epilogue;
use crate::buffers::Scratch;
use rayon::prelude::*;

/// Above this many bytes of tensors read and written, the AVX2 3x3 rows prefetch the
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
    let whole_blocks = dm == 1 && g.in_c.is_multiple_of(BLOCK);
    let prefetch = 4 * (x.len() + y.len()) > PREFETCH_ABOVE_BYTES;
    y.par_chunks_mut(rows_per_task * row_len)
        .enumerate()
        .for_each(|(task, y_rows)| {
            for (r, y_row) in y_rows.chunks_exact_mut(row_len).enumerate() {
                let row = task * rows_per_task + r;
                let (n, oy) = (row / g.out_h, row % g.out_h);
                #[cfg(target_arch = "x86_64")]
                if whole_blocks && g.kernel_h == 3 && g.kernel_w == 3 && super::simd::has_avx2_fma()
                {
                    // SAFETY: the CPU has AVX2 and FMA.
                    unsafe { x86::forward_row_3x3(g, x, w, epilogue.bias, n, oy, prefetch, y_row) };
                    epilogue.finish(y_row, g.out_c);
                    continue;
                }
                forward_row(g, x, w, epilogue, dm, n, oy, y_row);
            }
        });
}

/// Output row `oy` of image `n` by the portable loops: the fixed-kernel interior where
/// it applies, every other pixel by its list of taps.
#[allow(clippy::too_many_arguments)]
fn forward_row(
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
            gather_fastest(out, &taps, x, w);
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

/// Channels per vector in the fixed-kernel loops: one AVX register, two SSE or NEON.
const BLOCK: usize = 8;

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

/// [`gather`] by the fastest route this CPU has.
fn gather_fastest(out: &mut [f32], pairs: &[(usize, usize)], a: &[f32], b: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if out.len().is_multiple_of(BLOCK) && super::simd::has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA.
        unsafe { x86::gather(out, pairs, a, b) };
        return;
    }
    dispatch!(gather(out, pairs, a, b));
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{ConvGeometry, BLOCK};
    use std::arch::x86_64::*;

    /// [`super::gather`] in AVX2 intrinsics, for whole blocks of channels.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gather(out: &mut [f32], pairs: &[(usize, usize)], a: &[f32], b: &[f32]) {
        let c = out.len();
        assert!(c.is_multiple_of(BLOCK));
        assert!(pairs
            .iter()
            .all(|&(p, q)| p + c <= a.len() && q + c <= b.len()));
        let (ap, bp, op) = (a.as_ptr(), b.as_ptr(), out.as_mut_ptr());
        for cb in (0..c).step_by(BLOCK) {
            let (mut even, mut odd) = (_mm256_loadu_ps(op.add(cb)), _mm256_setzero_ps());
            for pair in pairs.chunks(2) {
                let (p, q) = pair[0];
                even = _mm256_fmadd_ps(
                    _mm256_loadu_ps(ap.add(p + cb)),
                    _mm256_loadu_ps(bp.add(q + cb)),
                    even,
                );
                if let Some(&(p, q)) = pair.get(1) {
                    odd = _mm256_fmadd_ps(
                        _mm256_loadu_ps(ap.add(p + cb)),
                        _mm256_loadu_ps(bp.add(q + cb)),
                        odd,
                    );
                }
            }
            _mm256_storeu_ps(op.add(cb), _mm256_add_ps(even, odd));
        }
    }

    /// Adds dL/dW of output row `oy` of image `n` into `acc` (9·channels) and, when
    /// `bias_acc` is not empty, dL/db (the sum of `dy`) into it: a 3x3 kernel, one filter
    /// per channel, channels in whole blocks of 8, any stride, dilation and padding.
    ///
    /// At stride and dilation 1 with all three input rows inside the image, the row
    /// goes in strips of four columns ([`gradient_strip`]); the other rows, strides and
    /// the last columns go pixel by pixel, the nine taps' sums and the bias sum kept in
    /// registers along a segment of the row.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn kernel_gradient_row_3x3(
        g: &ConvGeometry,
        x: &[f32],
        dy: &[f32],
        n: usize,
        oy: usize,
        acc: &mut [f32],
        bias_acc: &mut [f32],
        prefetch: bool,
    ) {
        let c = g.in_c;
        assert!(c.is_multiple_of(BLOCK) && g.kernel_h == 3 && g.kernel_w == 3);
        assert!(acc.len() == 9 * c && (bias_acc.is_empty() || bias_acc.len() == c));
        let rows = input_rows(g, n, oy);
        assert!(rows.iter().flatten().all(|&r| r + g.in_w * c <= x.len()));
        let dy_row = (n * g.out_h + oy) * g.out_w * c;
        assert!(dy_row + g.out_w * c <= dy.len());
        let (xp, dp) = (x.as_ptr(), dy.as_ptr().add(dy_row));
        let mut done = 0;
        if let (true, [Some(r0), Some(r1), Some(r2)]) = (g.stride_w == 1 && g.dilation_w == 1, rows)
        {
            let rows = [r0, r1, r2].map(|r| xp.add(r));
            for s in 0..g.out_w / 4 {
                if prefetch {
                    // Strip s + 4's new lines: the bottom input row's (the rows above
                    // were read for the rows before) and dL/dy's.
                    let ahead = 4 * (s + 4) * c;
                    prefetch_lines(rows[2].wrapping_add(ahead), dp.wrapping_add(ahead), 4 * c);
                }
                // Input columns `first..first + 6` feed output columns 4s..4s + 4.
                let (first, inside) = strip_columns(g, 4 * s, 6);
                let at = rows.map(|r| r.wrapping_offset(first * c as isize));
                let grads = dp.add(4 * s * c);
                if inside == (0..6) {
                    gradient_strip::<false>(at, grads, c, inside, acc, bias_acc);
                } else {
                    gradient_strip::<true>(at, grads, c, inside, acc, bias_acc);
                }
            }
            done = g.out_w / 4 * 4;
        }
        let interior = interior_columns(g);
        // Segments of 16 columns, every channel block of a segment in turn: the
        // segment's input lines are used whole while in L1 (one channel block at a time
        // over a whole row would fetch each line four times), and the sums go back to
        // `acc` between segments, so each tap sums its columns in order.
        const SEGMENT: usize = 16;
        for s0 in (done..g.out_w).step_by(SEGMENT) {
            for cb in (0..c).step_by(BLOCK) {
                let mut sums: [__m256; 9] =
                    std::array::from_fn(|t| _mm256_loadu_ps(acc.as_ptr().add(t * c + cb)));
                let mut bias_sum = _mm256_setzero_ps();
                for ox in s0..(s0 + SEGMENT).min(g.out_w) {
                    let edge = !interior.contains(&ox);
                    let grad = _mm256_loadu_ps(dp.add(ox * c + cb));
                    bias_sum = _mm256_add_ps(bias_sum, grad);
                    for (i, row) in rows.iter().enumerate() {
                        let Some(row) = *row else { continue };
                        for j in 0..3 {
                            let ix = (ox * g.stride_w + j * g.dilation_w).wrapping_sub(g.pad_left);
                            if edge && ix >= g.in_w {
                                continue;
                            }
                            let xs = _mm256_loadu_ps(xp.add(row + ix * c + cb));
                            sums[i * 3 + j] = _mm256_fmadd_ps(xs, grad, sums[i * 3 + j]);
                        }
                    }
                }
                for (t, sum) in sums.iter().enumerate() {
                    _mm256_storeu_ps(acc.as_mut_ptr().add(t * c + cb), *sum);
                }
                if !bias_acc.is_empty() {
                    let b = bias_acc.as_mut_ptr().add(cb);
                    _mm256_storeu_ps(b, _mm256_add_ps(_mm256_loadu_ps(b), bias_sum));
                }
            }
        }
    }

    /// Four output columns of [`kernel_gradient_row_3x3`] at stride and dilation 1,
    /// every channel block in turn: `at[i]` is input row i's first column (of six) for
    /// the strip, `grads` the strip's first dL/dy vector. The four gradients stay in
    /// registers and each input vector is loaded once for the (up to) three taps it
    /// meets; the nine taps' partial sums start at zero and are added to `acc` once per
    /// strip, so each strip's chains of multiply-adds are independent of the last
    /// strip's (summing straight into `acc` would make one chain of the whole row).
    /// Without `EDGE` all six columns lie inside the input; with it, only `inside`.
    #[inline(always)]
    unsafe fn gradient_strip<const EDGE: bool>(
        at: [*const f32; 3],
        grads: *const f32,
        c: usize,
        inside: std::ops::Range<usize>,
        acc: &mut [f32],
        bias_acc: &mut [f32],
    ) {
        for cb in (0..c).step_by(BLOCK) {
            let grad: [__m256; 4] = std::array::from_fn(|o| _mm256_loadu_ps(grads.add(o * c + cb)));
            let mut part = [_mm256_setzero_ps(); 9];
            for (i, row) in at.iter().enumerate() {
                // Input column q meets output q − j through tap (i, j).
                let mut column = row.wrapping_add(cb);
                for q in 0..6usize {
                    let this = column;
                    column = column.wrapping_add(c);
                    if EDGE && !inside.contains(&q) {
                        continue;
                    }
                    let v = _mm256_loadu_ps(this);
                    for j in 0..3 {
                        if let Some(o) = q.checked_sub(j).filter(|&o| o < 4) {
                            part[i * 3 + j] = _mm256_fmadd_ps(v, grad[o], part[i * 3 + j]);
                        }
                    }
                }
            }
            for (t, part) in part.iter().enumerate() {
                let sum = acc.as_mut_ptr().add(t * c + cb);
                _mm256_storeu_ps(sum, _mm256_add_ps(_mm256_loadu_ps(sum), *part));
            }
            if !bias_acc.is_empty() {
                let strip = _mm256_add_ps(
                    _mm256_add_ps(grad[0], grad[1]),
                    _mm256_add_ps(grad[2], grad[3]),
                );
                let sum = bias_acc.as_mut_ptr().add(cb);
                _mm256_storeu_ps(sum, _mm256_add_ps(_mm256_loadu_ps(sum), strip));
            }
        }
    }

    /// The input columns of a stride-1 strip whose first output column is `ox`:
    /// `first = ox − pad_left` (negative in the padding) and which of the `width`
    /// columns from there lie inside the input.
    #[inline(always)]
    fn strip_columns(g: &ConvGeometry, ox: usize, width: usize) -> (isize, std::ops::Range<usize>) {
        let first = ox as isize - g.pad_left as isize;
        let inside =
            (-first).max(0) as usize..(g.in_w as isize - first).clamp(0, width as isize) as usize;
        (first, inside)
    }

    /// Prefetches `floats` floats from each of `a` and `b` into L1, a line at a time.
    /// (Prefetches never fault: addresses past a buffer's end are harmless.)
    #[inline(always)]
    unsafe fn prefetch_lines(a: *const f32, b: *const f32, floats: usize) {
        for line in (0..floats).step_by(16) {
            _mm_prefetch::<_MM_HINT_T0>(a.wrapping_add(line).cast());
            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(line).cast());
        }
    }

    /// The start in `x` of each kernel row's input row for output row `oy` of image
    /// `n`, or None where that row lies in the padding.
    fn input_rows(g: &ConvGeometry, n: usize, oy: usize) -> [Option<usize>; 3] {
        std::array::from_fn(|i| {
            let iy = (oy * g.stride_h + i * g.dilation_h).wrapping_sub(g.pad_top);
            (iy < g.in_h).then(|| (n * g.in_h + iy) * g.in_w * g.in_c)
        })
    }

    /// Whether every tap of output column `ox` lies inside the input (3 taps wide).
    fn column_inside(g: &ConvGeometry, ox: usize) -> bool {
        ox * g.stride_w >= g.pad_left && ox * g.stride_w + 2 * g.dilation_w - g.pad_left < g.in_w
    }

    /// The output columns whose taps all lie inside the input (a range: the condition
    /// holds from some column on and fails from a later one on).
    fn interior_columns(g: &ConvGeometry) -> std::ops::Range<usize> {
        let start = (0..g.out_w)
            .find(|&ox| column_inside(g, ox))
            .unwrap_or(g.out_w);
        let end = (start..g.out_w)
            .find(|&ox| !column_inside(g, ox))
            .unwrap_or(g.out_w);
        start..end
    }

    /// Output row `oy` of image `n`, every column, for a 3x3 kernel with one filter per
    /// channel and channels in whole blocks of 8 (any stride, dilation and padding).
    ///
    /// The row is cut into strips of up to 8 outputs; per block of channels, eight
    /// accumulators (independent chains, enough to keep both FMA units busy), a kernel
    /// row's three weights in registers, and at stride 1 each input vector loaded once for
    /// the (up to) three outputs it feeds. Strips at the row's ends skip the taps that
    /// fall in the padding, so the border needs no separate path. Each output sums its
    /// taps in kernel order, starting from the bias, as the portable loops do.
    ///
    /// The common case, stride and dilation 1 with all three input rows inside the
    /// image, runs whole strips of 8 through [`strip_unit_steps`]: its input pointer
    /// steps a pixel at a time, where the general strip's column arithmetic compiled to
    /// load offsets kept on the stack, and it measured 30% faster. Other rows and the
    /// last columns take [`Row::strip`].
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn forward_row_3x3(
        g: &ConvGeometry,
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        n: usize,
        oy: usize,
        prefetch: bool,
        y_row: &mut [f32],
    ) {
        let c = g.in_c;
        assert!(c.is_multiple_of(BLOCK) && g.kernel_h == 3 && g.kernel_w == 3);
        assert!(y_row.len() == g.out_w * c && w.len() == 9 * c);
        assert!(bias.is_none_or(|b| b.len() == c));
        let rows = input_rows(g, n, oy);
        assert!(rows.iter().flatten().all(|&r| r + g.in_w * c <= x.len()));
        let inside = |ox: usize| column_inside(g, ox);
        let row = Row {
            x: x.as_ptr(),
            rows,
            w: w.as_ptr(),
            g,
        };
        // Strip by strip, every channel block of a strip in turn: the strip's input and
        // output lines are used whole, in memory order, which the prefetcher follows.
        let mut ox = 0;
        if g.stride_w == 1 && g.dilation_w == 1 && rows.iter().all(Option::is_some) {
            let strips = g.out_w / 8;
            row.strips_unit_steps(strips, bias, prefetch, y_row.as_mut_ptr());
            ox = 8 * strips;
        }
        while ox < g.out_w {
            let left = g.out_w - ox;
            let len = [8, 4, 2, 1].into_iter().find(|&l| l <= left).unwrap_or(1);
            let edge = !(inside(ox) && inside(ox + len - 1));
            for cb in (0..c).step_by(BLOCK) {
                let start =
                    bias.map_or(_mm256_setzero_ps(), |b| _mm256_loadu_ps(b.as_ptr().add(cb)));
                let y = y_row.as_mut_ptr().add(cb);
                match (len, edge) {
                    (8, false) => row.strip::<8, false>(cb, start, ox, y),
                    (8, true) => row.strip::<8, true>(cb, start, ox, y),
                    (4, _) => row.strip::<4, true>(cb, start, ox, y),
                    (2, _) => row.strip::<2, true>(cb, start, ox, y),
                    _ => row.strip::<1, true>(cb, start, ox, y),
                }
            }
            ox += len;
        }
    }

    /// What the strips of one output row share (see [`forward_row_3x3`]).
    struct Row<'a> {
        x: *const f32,
        rows: [Option<usize>; 3],
        w: *const f32,
        g: &'a ConvGeometry,
    }

    impl Row<'_> {
        /// Outputs `0..8·strips` of the row at stride and dilation 1, in strips of 8,
        /// when all three input rows lie inside the input. Strip `s` reads the ten input
        /// columns from `8s − pad_left`; at the row's ends those outside are skipped.
        #[inline(always)]
        unsafe fn strips_unit_steps(
            &self,
            strips: usize,
            bias: Option<&[f32]>,
            prefetch: bool,
            y_row: *mut f32,
        ) {
            let (g, c) = (self.g, self.g.in_c);
            let rows = self
                .rows
                .map(|r| self.x.add(r.expect("a row inside the input")));
            for s in 0..strips {
                if prefetch {
                    // Strip s + 2's new input lines (the rows above were read for the
                    // rows before) and its output lines, a few hundred cycles ahead.
                    let ahead = 8 * (s + 2) * c;
                    let output = y_row.wrapping_add(ahead).cast_const();
                    prefetch_lines(rows[2].wrapping_add(ahead), output, 8 * c);
                }
                let (first, inside) = strip_columns(g, 8 * s, 10);
                let at = rows.map(|r| r.wrapping_offset(first * c as isize));
                let y = y_row.add(8 * s * c);
                if inside == (0..10) {
                    strip_unit_steps::<false>(at, self.w, c, inside, bias, y);
                } else {
                    strip_unit_steps::<true>(at, self.w, c, inside, bias, y);
                }
            }
        }

        /// Outputs `ox..ox + N` of channel block `cb`, stored at `y` + column·channels.
        /// With `EDGE`, taps outside the input are skipped; without, all lie inside.
        #[inline(always)]
        unsafe fn strip<const N: usize, const EDGE: bool>(
            &self,
            cb: usize,
            start: __m256,
            ox: usize,
            y: *mut f32,
        ) {
            let (g, c) = (self.g, self.g.in_c);
            let column = |o: usize, j: usize| {
                ((ox + o) * g.stride_w + j * g.dilation_w).wrapping_sub(g.pad_left)
            };
            let mut acc = [start; N];
            for (i, row) in self.rows.iter().enumerate() {
                let Some(row) = *row else { continue };
                let at = self.x.add(row + cb);
                let wv: [__m256; 3] =
                    std::array::from_fn(|j| _mm256_loadu_ps(self.w.add((i * 3 + j) * c + cb)));
                if g.stride_w == 1 && g.dilation_w == 1 {
                    // Input column q of the strip feeds outputs q − 2..=q.
                    for q in 0..N + 2 {
                        let ix = column(0, 0).wrapping_add(q);
                        if EDGE && ix >= g.in_w {
                            continue;
                        }
                        let v = _mm256_loadu_ps(at.add(ix * c));
                        for (j, wj) in wv.iter().enumerate() {
                            if let Some(o) = q.checked_sub(j).filter(|&o| o < N) {
                                acc[o] = _mm256_fmadd_ps(v, *wj, acc[o]);
                            }
                        }
                    }
                } else {
                    for (o, acc) in acc.iter_mut().enumerate() {
                        for (j, wj) in wv.iter().enumerate() {
                            let ix = column(o, j);
                            if EDGE && ix >= g.in_w {
                                continue;
                            }
                            *acc = _mm256_fmadd_ps(_mm256_loadu_ps(at.add(ix * c)), *wj, *acc);
                        }
                    }
                }
            }
            for (o, acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(y.add((ox + o) * c), *acc);
            }
        }
    }

    /// One strip of [`Row::strips_unit_steps`]: outputs from the input columns at
    /// `rows[i]`, `rows[i] + c`, ... (ten of them), every channel block in turn, with
    /// eight accumulators, a kernel row's three weights in registers, and each input
    /// vector loaded once for the (up to) three outputs it feeds. Without `EDGE`, all
    /// ten columns lie inside the input; with it, only those in `inside` are read.
    #[inline(always)]
    unsafe fn strip_unit_steps<const EDGE: bool>(
        rows: [*const f32; 3],
        w: *const f32,
        c: usize,
        inside: std::ops::Range<usize>,
        bias: Option<&[f32]>,
        y: *mut f32,
    ) {
        for cb in (0..c).step_by(BLOCK) {
            let start = bias.map_or(_mm256_setzero_ps(), |b| _mm256_loadu_ps(b.as_ptr().add(cb)));
            let mut acc = [start; 8];
            for (i, row) in rows.iter().enumerate() {
                let mut at = row.wrapping_add(cb);
                let wv: [__m256; 3] =
                    std::array::from_fn(|j| _mm256_loadu_ps(w.add((i * 3 + j) * c + cb)));
                // Input column q feeds outputs q − 2..=q.
                for q in 0..10usize {
                    let column = at;
                    at = at.wrapping_add(c);
                    if EDGE && !inside.contains(&q) {
                        continue;
                    }
                    let v = _mm256_loadu_ps(column);
                    for (j, wj) in wv.iter().enumerate() {
                        if let Some(o) = q.checked_sub(j).filter(|&o| o < 8) {
                            acc[o] = _mm256_fmadd_ps(v, *wj, acc[o]);
                        }
                    }
                }
            }
            let mut out = y.add(cb);
            for acc in acc {
                _mm256_storeu_ps(out, acc);
                out = out.add(c);
            }
        }
    }
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
fn gather<const FMA: bool>(out: &mut [f32], pairs: &[(usize, usize)], a: &[f32], b: &[f32]) {
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
        && super::simd::has_avx2_fma();
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
    super::sum_in_order(dw, &kernel_parts);
    if let Some(db) = db {
        let bias_parts: Vec<&[f32]> = partials.iter().map(|p| &p[dw.len()..]).collect();
        super::sum_in_order(db, &bias_parts);
    }
}

/// Adds dL/dW of output pixels `pixels` (whole rows) into `acc` (one kernel's worth).
#[inline(always)]
fn kernel_gradient<const FMA: bool>(
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
