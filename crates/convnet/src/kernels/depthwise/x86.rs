//! The depthwise kernels' x86 route: square KxK rows forward (K = 3 or 5) in AVX2 or
//! AVX-512 intrinsics, for channels in whole blocks of 8 or 16 (one body, generic over
//! the vector: [`Lanes`]); 3x3 rows of the kernel gradient and the tap gather in AVX2,
//! for channels in whole blocks of 8.

use super::BLOCK;
use crate::kernels::conv::ConvGeometry;
use std::arch::x86_64::*;

/// [`super::portable::gather`] in AVX2 intrinsics, for whole blocks of channels.
///
/// # Safety
/// The CPU has AVX2 and FMA (`out.len()` a multiple of 8 is checked here, as is every pair's reach into `a` and `b`).
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn gather(out: &mut [f32], pairs: &[(usize, usize)], a: &[f32], b: &[f32]) {
    // SAFETY: the asserts above bound every load and store to `a`, `b` and `out`; AVX2 and FMA are the caller's obligation.
    unsafe {
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
}

/// Adds dL/dW of output row `oy` of image `n` into `acc` (9·channels) and, when
/// `bias_acc` is not empty, dL/db (the sum of `dy`) into it: a 3x3 kernel, one filter
/// per channel, channels in whole blocks of 8, any stride, dilation and padding.
///
/// At stride and dilation 1 with all three input rows inside the image, the row
/// goes in strips of four columns ([`gradient_strip`]); the other rows, strides and
/// the last columns go pixel by pixel, the nine taps' sums and the bias sum kept in
/// registers along a segment of the row.
///
/// # Safety
/// The CPU has AVX2 and FMA. (The shapes and every row read are checked here.)
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
    // SAFETY: the asserts at the top bound every row of `x` and `dy` read and `acc`/`bias_acc` written; AVX2 and FMA are the caller's obligation.
    unsafe {
        let c = g.in_c;
        assert!(c.is_multiple_of(BLOCK) && g.kernel_h == 3 && g.kernel_w == 3);
        assert!(acc.len() == 9 * c && (bias_acc.is_empty() || bias_acc.len() == c));
        let rows = input_rows::<3>(g, oy, |iy| (n * g.in_h + iy) * g.in_w * c);
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
        let interior = interior_columns::<3>(g);
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
}

/// Four output columns of [`kernel_gradient_row_3x3`] at stride and dilation 1,
/// every channel block in turn: `at[i]` is input row i's first column (of six) for
/// the strip, `grads` the strip's first dL/dy vector. The four gradients stay in
/// registers and each input vector is loaded once for the (up to) three taps it
/// meets; the nine taps' partial sums start at zero and are added to `acc` once per
/// strip, so each strip's chains of multiply-adds are independent of the last
/// strip's (summing straight into `acc` would make one chain of the whole row).
/// Without `EDGE` all six columns lie inside the input; with it, only `inside`.
///
/// # Safety
/// The CPU has AVX2 and FMA; `at[i]` plus each column in `inside` (all six without `EDGE`) times `c`, plus `c` floats, lies inside the input; `grads` points at four columns of `c` floats of dL/dy; `acc` holds 9·`c` floats and `bias_acc` is empty or `c` long, `c` a multiple of 8.
#[inline(always)]
unsafe fn gradient_strip<const EDGE: bool>(
    at: [*const f32; 3],
    grads: *const f32,
    c: usize,
    inside: std::ops::Range<usize>,
    acc: &mut [f32],
    bias_acc: &mut [f32],
) {
    // SAFETY: the caller (`kernel_gradient_row_3x3`) passes pointers it checked, as this function's contract states; only the columns in `inside` are loaded.
    unsafe {
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
///
/// # Safety
/// None beyond the CPU having SSE (every x86_64 CPU): prefetches never fault, so `a` and `b` may point anywhere; the function is unsafe only because it runs with AVX2 enabled in its callers.
#[inline(always)]
unsafe fn prefetch_lines(a: *const f32, b: *const f32, floats: usize) {
    // SAFETY: prefetches never fault and the pointers are only offset with `wrapping_add`.
    unsafe {
        for line in (0..floats).step_by(16) {
            _mm_prefetch::<_MM_HINT_T0>(a.wrapping_add(line).cast());
            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(line).cast());
        }
    }
}

/// The start of each of a K-row kernel's input rows for output row `oy`, where input
/// row `iy` starts at `row_at(iy)`, or None where that row lies in the padding.
pub(super) fn input_rows<const K: usize>(
    g: &ConvGeometry,
    oy: usize,
    row_at: impl Fn(usize) -> usize,
) -> [Option<usize>; K] {
    std::array::from_fn(|i| {
        let iy = (oy * g.stride_h + i * g.dilation_h).wrapping_sub(g.pad_top);
        (iy < g.in_h).then(|| row_at(iy))
    })
}

/// Whether every tap of output column `ox` lies inside the input (K taps wide).
fn column_inside<const K: usize>(g: &ConvGeometry, ox: usize) -> bool {
    ox * g.stride_w >= g.pad_left && ox * g.stride_w + (K - 1) * g.dilation_w - g.pad_left < g.in_w
}

/// The output columns whose taps all lie inside the input (a range: the condition
/// holds from some column on and fails from a later one on).
fn interior_columns<const K: usize>(g: &ConvGeometry) -> std::ops::Range<usize> {
    let start = (0..g.out_w)
        .find(|&ox| column_inside::<K>(g, ox))
        .unwrap_or(g.out_w);
    let end = (start..g.out_w)
        .find(|&ox| !column_inside::<K>(g, ox))
        .unwrap_or(g.out_w);
    start..end
}

/// One output row, every column, from its K input rows at `rows` (offsets in `x`, None
/// in the padding; see [`input_rows`]), for a KxK kernel (K = 3 or 5: eight
/// accumulators and K weights fit AVX2's 16 registers) with one filter per channel and
/// channels in whole blocks of 8 (any stride, dilation and padding); on AVX-512 CPUs
/// [`forward_row_avx512`] runs the same body 16 channels a vector.
///
/// The row is cut into strips of up to 8 outputs; per block of channels, eight
/// accumulators (independent chains, enough to keep both FMA units busy), a kernel
/// row's K weights in registers, and at stride 1 each input vector loaded once for
/// the (up to) K outputs it feeds. Strips at the row's ends skip the taps that
/// fall in the padding, so the border needs no separate path. Each output sums its
/// taps in kernel order, starting from the bias, as the portable loops do.
///
/// The common case, stride and dilation 1 with all K input rows inside the
/// image, runs whole strips of 8 through [`strip_unit_steps`]: its input pointer
/// steps a pixel at a time, where the general strip's column arithmetic compiled to
/// load offsets kept on the stack, and it measured 30% faster. Other rows and the
/// last columns take [`Row::strip`].
///
/// # Safety
/// The CPU has AVX2 and FMA. (The shapes and every input row read are checked here.)
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn forward_row<const K: usize>(
    g: &ConvGeometry,
    x: &[f32],
    rows: [Option<usize>; K],
    w: &[f32],
    bias: Option<&[f32]>,
    prefetch: bool,
    y_row: &mut [f32],
) {
    // SAFETY: the CPU has AVX2 and FMA, the caller's obligation.
    unsafe { forward_row_in::<K, __m256>(g, x, rows, w, bias, prefetch, y_row) }
}

/// [`forward_row`] on AVX-512 CPUs, 16 channels a vector (a multiple of 16 channels).
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn forward_row_avx512<const K: usize>(
    g: &ConvGeometry,
    x: &[f32],
    rows: [Option<usize>; K],
    w: &[f32],
    bias: Option<&[f32]>,
    prefetch: bool,
    y_row: &mut [f32],
) {
    // SAFETY: the CPU has AVX-512F, the caller's obligation.
    unsafe { forward_row_in::<K, __m512>(g, x, rows, w, bias, prefetch, y_row) }
}

/// [`forward_row`]'s work with vectors of `V`, inlined into each CPU's entry point.
///
/// # Safety
/// The CPU has what `V`'s intrinsics need.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_row_in<const K: usize, V: Lanes>(
    g: &ConvGeometry,
    x: &[f32],
    rows: [Option<usize>; K],
    w: &[f32],
    bias: Option<&[f32]>,
    prefetch: bool,
    y_row: &mut [f32],
) {
    // SAFETY: the asserts at the top bound every read of `x` and `w` and every store to `y_row`; the vector instructions are the caller's obligation.
    unsafe {
        let c = g.in_c;
        assert!(c.is_multiple_of(V::WIDTH) && g.kernel_h == K && g.kernel_w == K);
        assert!(y_row.len() == g.out_w * c && w.len() == K * K * c);
        assert!(bias.is_none_or(|b| b.len() == c));
        assert!(rows.iter().flatten().all(|&r| r + g.in_w * c <= x.len()));
        let inside = |ox: usize| column_inside::<K>(g, ox);
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
            row.strips_unit_steps::<V>(strips, bias, prefetch, y_row.as_mut_ptr());
            ox = 8 * strips;
        }
        while ox < g.out_w {
            let left = g.out_w - ox;
            let len = [8, 4, 2, 1].into_iter().find(|&l| l <= left).unwrap_or(1);
            let edge = !(inside(ox) && inside(ox + len - 1));
            for cb in (0..c).step_by(V::WIDTH) {
                let start = bias.map_or(V::zero(), |b| V::load(b.as_ptr().add(cb)));
                let y = y_row.as_mut_ptr().add(cb);
                match (len, edge) {
                    (8, false) => row.strip::<8, false, V>(cb, start, ox, y),
                    (8, true) => row.strip::<8, true, V>(cb, start, ox, y),
                    (4, _) => row.strip::<4, true, V>(cb, start, ox, y),
                    (2, _) => row.strip::<2, true, V>(cb, start, ox, y),
                    _ => row.strip::<1, true, V>(cb, start, ox, y),
                }
            }
            ox += len;
        }
    }
}

/// What the strips of one output row share (see [`forward_row`]).
struct Row<'a, const K: usize> {
    x: *const f32,
    rows: [Option<usize>; K],
    w: *const f32,
    g: &'a ConvGeometry,
}

impl<const K: usize> Row<'_, K> {
    /// Outputs `0..8·strips` of the row at stride and dilation 1, in strips of 8,
    /// when all K input rows lie inside the input. Strip `s` reads the 8 + K − 1 input
    /// columns from `8s − pad_left`; at the row's ends those outside are skipped.
    ///
    /// # Safety
    /// The CPU has `V`'s instructions; the row's K input rows lie inside `self.x` (checked by `forward_row`), and `y_row` points at a whole output row (`out_w · c` floats).
    #[inline(always)]
    unsafe fn strips_unit_steps<V: Lanes>(
        &self,
        strips: usize,
        bias: Option<&[f32]>,
        prefetch: bool,
        y_row: *mut f32,
    ) {
        // SAFETY: `forward_row` checked the rows and the output row; each strip reads only the columns `strip_columns` reports inside.
        unsafe {
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
                let (first, inside) = strip_columns(g, 8 * s, 8 + K - 1);
                let at = rows.map(|r| r.wrapping_offset(first * c as isize));
                let y = y_row.add(8 * s * c);
                if inside == (0..8 + K - 1) {
                    strip_unit_steps::<K, false, V>(at, self.w, c, inside, bias, y);
                } else {
                    strip_unit_steps::<K, true, V>(at, self.w, c, inside, bias, y);
                }
            }
        }
    }

    /// Outputs `ox..ox + N` of channel block `cb`, stored at `y` + column·channels.
    /// With `EDGE`, taps outside the input are skipped; without, all lie inside.
    ///
    /// # Safety
    /// The CPU has `V`'s instructions; the rows in `self.rows` lie inside `self.x`, and `y` + column·channels for columns `ox..ox + N` lies inside the output row; without `EDGE` every tap of those columns lies inside the input.
    #[inline(always)]
    unsafe fn strip<const N: usize, const EDGE: bool, V: Lanes>(
        &self,
        cb: usize,
        start: V,
        ox: usize,
        y: *mut f32,
    ) {
        // SAFETY: the contract above; with `EDGE` taps outside the input are skipped before any load.
        unsafe {
            let (g, c) = (self.g, self.g.in_c);
            let column = |o: usize, j: usize| {
                ((ox + o) * g.stride_w + j * g.dilation_w).wrapping_sub(g.pad_left)
            };
            let mut acc = [start; N];
            for (i, row) in self.rows.iter().enumerate() {
                let Some(row) = *row else { continue };
                let at = self.x.add(row + cb);
                let wv: [V; K] = std::array::from_fn(|j| V::load(self.w.add((i * K + j) * c + cb)));
                if g.stride_w == 1 && g.dilation_w == 1 {
                    // Input column q of the strip feeds outputs q − (K − 1)..=q.
                    for q in 0..N + K - 1 {
                        let ix = column(0, 0).wrapping_add(q);
                        if EDGE && ix >= g.in_w {
                            continue;
                        }
                        let v = V::load(at.add(ix * c));
                        for (j, wj) in wv.iter().enumerate() {
                            if let Some(o) = q.checked_sub(j).filter(|&o| o < N) {
                                acc[o] = V::fmadd(v, *wj, acc[o]);
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
                            *acc = V::fmadd(V::load(at.add(ix * c)), *wj, *acc);
                        }
                    }
                }
            }
            for (o, acc) in acc.iter().enumerate() {
                V::store(y.add((ox + o) * c), *acc);
            }
        }
    }
}

/// One strip of [`Row::strips_unit_steps`]: outputs from the input columns at
/// `rows[i]`, `rows[i] + c`, ... (8 + K − 1 of them), every channel block in turn, with
/// eight accumulators, a kernel row's K weights in registers, and each input vector
/// loaded once for the (up to) K outputs it feeds. Without `EDGE`, all the columns lie
/// inside the input; with it, only those in `inside` are read.
///
/// # Safety
/// The CPU has `V`'s instructions; `rows[i]` plus each column in `inside` (all 8 + K − 1 without `EDGE`) times `c`, plus `c` floats, lies inside the input, `w` holds K·K·`c` floats, the bias (if any) `c`, and `y` points at eight output columns of `c` floats.
#[inline(always)]
unsafe fn strip_unit_steps<const K: usize, const EDGE: bool, V: Lanes>(
    rows: [*const f32; K],
    w: *const f32,
    c: usize,
    inside: std::ops::Range<usize>,
    bias: Option<&[f32]>,
    y: *mut f32,
) {
    // SAFETY: the caller (`Row::strips_unit_steps`) passes pointers within the rows it checked; only the columns in `inside` are loaded.
    unsafe {
        for cb in (0..c).step_by(V::WIDTH) {
            let start = bias.map_or(V::zero(), |b| V::load(b.as_ptr().add(cb)));
            let mut acc = [start; 8];
            for (i, row) in rows.iter().enumerate() {
                let mut at = row.wrapping_add(cb);
                let wv: [V; K] = std::array::from_fn(|j| V::load(w.add((i * K + j) * c + cb)));
                // Input column q feeds outputs q − (K − 1)..=q.
                for q in 0..8 + K - 1 {
                    let column = at;
                    at = at.wrapping_add(c);
                    if EDGE && !inside.contains(&q) {
                        continue;
                    }
                    let v = V::load(column);
                    for (j, wj) in wv.iter().enumerate() {
                        if let Some(o) = q.checked_sub(j).filter(|&o| o < 8) {
                            acc[o] = V::fmadd(v, *wj, acc[o]);
                        }
                    }
                }
            }
            let mut out = y.add(cb);
            for acc in acc {
                V::store(out, acc);
                out = out.add(c);
            }
        }
    }
}

/// One vector register of f32 lanes as the forward rows use it: AVX2's 8 lanes or
/// AVX-512's 16, so one body serves both.
trait Lanes: Copy {
    /// Lanes per vector: the channel block.
    const WIDTH: usize;
    /// # Safety
    /// The CPU has the vector's instructions.
    unsafe fn zero() -> Self;
    /// # Safety
    /// As [`Lanes::zero`], and `p` points at `WIDTH` readable floats.
    unsafe fn load(p: *const f32) -> Self;
    /// # Safety
    /// As [`Lanes::zero`], and `p` points at `WIDTH` writable floats.
    unsafe fn store(p: *mut f32, v: Self);
    /// `a·b + c`, fused.
    ///
    /// # Safety
    /// As [`Lanes::zero`].
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self;
}

impl Lanes for __m256 {
    const WIDTH: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: the trait's contract: the CPU has AVX.
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the trait's contract: AVX, and 8 readable floats at `p`.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self) {
        // SAFETY: the trait's contract: AVX, and 8 writable floats at `p`.
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: the trait's contract: the CPU has FMA.
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
}

impl Lanes for __m512 {
    const WIDTH: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: the trait's contract: the CPU has AVX-512F.
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the trait's contract: AVX-512F, and 16 readable floats at `p`.
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self) {
        // SAFETY: the trait's contract: AVX-512F, and 16 writable floats at `p`.
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: the trait's contract: the CPU has AVX-512F.
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
}
