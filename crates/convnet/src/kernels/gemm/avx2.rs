//! The AVX2 route of [`matmul`](super::matmul): our own matrix product for the shapes 1x1 convolutions make, on AVX2+FMA CPUs.
//!
//! A 1x1 layer's products are tall, thin and shallow: tens of thousands of pixels by a
//! few dozen to a few hundred channels, summed over a few dozen to a few hundred input
//! channels, so the output is the big side. A general GEMM (the `gemm` crate) packs both
//! operands into its own layout on every call and, asked to add onto the output or start
//! it from a bias, makes a pass over it first; on the benchmark's 1x1 layer that was a
//! fifth of the time. This product reads the left operand in place through any strides
//! (one broadcast per row and step), copies only the right operand (the weights, a few
//! KiB) into 16-column panels read front to back (its rows, a power of two apart, would
//! otherwise fight over a few L1 sets), and starts each register tile (6 rows × 16
//! columns, twelve accumulators) from zero, from the output or from the bias, storing it
//! once. A left operand read down its columns (`xᵀ · dy`) is copied into the tiles'
//! row-interleaved order for the same reason as the panels.
//!
//! The rows go in chunks whose left operand stays in L2 and whose output lines are
//! finished before they leave it; each output element is summed by one tile in a fixed
//! order, so the result depends on neither threads nor chunking.

use super::MatRef;
use crate::buffers::Scratch;
use std::arch::x86_64::*;

/// The deepest product this kernel takes: the depth is summed in one pass, its panels
/// (DEPTH × 16 floats) kept in L1.
pub(super) const MAX_DEPTH: usize = 256;
/// Floats of the left operand a row chunk may hold: 96 KiB, a fifth of L2.
const CHUNK_FLOATS: usize = 24 * 1024;
/// Floats of the output a row chunk may cover: 64 KiB, so its lines are finished
/// while still in L2 (a line evicted half written is read back from memory).
const OUT_FLOATS: usize = 16 * 1024;
/// Rows of the register tile.
const MR: usize = 6;

/// What a product (or a tile) adds onto (see `gemm::Start`), as raw parts.
#[derive(Clone, Copy)]
pub(super) enum Start {
    Zeros,
    Dst,
    Bias(*const f32),
}

/// A strided read-only operand as raw parts: element (i, p) at `ptr[i·rows + p·steps]`.
#[derive(Clone, Copy)]
pub(super) struct Strided {
    pub ptr: *const f32,
    pub rows: usize,
    pub steps: usize,
}

/// [`matmul`] by our own micro-kernel (see `microkernel`), for `n` a multiple of 8 on
/// AVX2+FMA CPUs; `parallel` splits the output rows between threads.
#[allow(clippy::too_many_arguments)]
pub(super) fn own_product(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef,
    b: MatRef,
    dst: &mut [f32],
    dst_row_stride: usize,
    start: super::Start,
    parallel: bool,
) {
    // Rows per parallel task: whole register tiles, at least 4 tasks per thread.
    let threads = if parallel && m * n * k >= crate::kernels::PARALLEL_THRESHOLD {
        rayon::current_num_threads()
    } else {
        1
    };
    let rows_per_task = if threads > 1 {
        m.div_ceil(4 * threads).next_multiple_of(6)
    } else {
        m
    };
    let run = |(t, dst_rows): (usize, &mut [f32])| {
        let first = t * rows_per_task;
        let rows = rows_per_task.min(m - first);
        let start = match start {
            super::Start::Zeros => Start::Zeros,
            super::Start::Dst => Start::Dst,
            super::Start::Bias(bias) => Start::Bias(bias.as_ptr()),
        };
        let right = Strided {
            ptr: b.data.as_ptr(),
            rows: b.row_stride,
            steps: b.col_stride,
        };
        let left = Strided {
            ptr: a.data[first * a.row_stride..].as_ptr(),
            rows: a.row_stride,
            steps: a.col_stride,
        };
        // SAFETY: `matmul` checked that a (m×k), b (k×n) and dst (m×n) lie inside their
        // slices; this task's rows of dst are
        // its own chunk, and dst is borrowed mutably so it overlaps neither operand. The
        // caller checked for AVX2 and FMA.
        unsafe {
            product(
                rows,
                n,
                k,
                left,
                right,
                dst_rows.as_mut_ptr(),
                dst_row_stride,
                start,
            )
        }
    };
    if threads > 1 {
        use rayon::prelude::*;
        dst.par_chunks_mut(rows_per_task * dst_row_stride)
            .take(m.div_ceil(rows_per_task))
            .enumerate()
            .for_each(run);
    } else {
        run((0, dst));
    }
}

/// `dst = start + a · b`: `a` is m×k through any strides, `b` is k×n, `dst` m×n with
/// rows `ldd` apart; `n` is a multiple of 8 (and the bias, if any, `n` long), and
/// `1 <= k <= MAX_DEPTH`.
///
/// # Safety
/// The CPU has AVX2 and FMA; every element the product reads or writes lies inside its
/// allocation, and `dst` overlaps neither operand.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn product(
    m: usize,
    n: usize,
    k: usize,
    a: Strided,
    b: Strided,
    dst: *mut f32,
    ldd: usize,
    start: Start,
) {
    // SAFETY: the caller upholds this function's contract (AVX2+FMA, every element in its allocation, no overlap), and the tiles stay within `m`×`n`.
    unsafe {
        assert!(n.is_multiple_of(8) && (1..=MAX_DEPTH).contains(&k));
        let mut panels = Scratch::new(k * n);
        pack_panels(k, n, b, &mut panels);
        let chunk = ((CHUNK_FLOATS / k).min(OUT_FLOATS / n) / MR * MR).max(MR);
        let mut a_tiles = Scratch::new(if a.steps == 1 { 0 } else { chunk * k });
        let mut i0 = 0;
        while i0 < m {
            let rows = chunk.min(m - i0);
            let slice = Strided {
                ptr: a.ptr.add(i0 * a.rows),
                ..a
            };
            if a.steps != 1 {
                pack_tiles(k, rows, slice, &mut a_tiles);
            }
            let mut j0 = 0;
            while j0 < n {
                let width = if n - j0 >= 16 { 16 } else { 8 };
                let panel = panels.as_ptr().add(j0 * k);
                let from = match start {
                    Start::Bias(bias) => Start::Bias(bias.add(j0)),
                    other => other,
                };
                let mut r = 0;
                while r < rows {
                    let mr = MR.min(rows - r);
                    let tile_a = if a.steps == 1 {
                        Strided {
                            ptr: slice.ptr.add(r * a.rows),
                            ..a
                        }
                    } else {
                        Strided {
                            ptr: a_tiles.as_ptr().add(r * k),
                            rows: 1,
                            steps: mr,
                        }
                    };
                    let c = dst.add((i0 + r) * ldd + j0);
                    let run = |f: unsafe fn(usize, Strided, *const f32, *mut f32, usize, Start)| {
                        f(k, tile_a, panel, c, ldd, from)
                    };
                    match (mr, width) {
                        (6, 16) => run(tile::<6, 2>),
                        (5, 16) => run(tile::<5, 2>),
                        (4, 16) => run(tile::<4, 2>),
                        (3, 16) => run(tile::<3, 2>),
                        (2, 16) => run(tile::<2, 2>),
                        (1, 16) => run(tile::<1, 2>),
                        (6, _) => run(tile::<6, 1>),
                        (5, _) => run(tile::<5, 1>),
                        (4, _) => run(tile::<4, 1>),
                        (3, _) => run(tile::<3, 1>),
                        (2, _) => run(tile::<2, 1>),
                        _ => run(tile::<1, 1>),
                    }
                    r += mr;
                }
                j0 += width;
            }
            i0 += rows;
        }
    }
}

/// Copies the `kc` steps of `b` into panels of 16 columns (8 for a last odd block),
/// each panel `kc` rows of its width. The source is read step by step, front to back,
/// which is the order the memory prefetcher follows best.
///
/// # Safety
/// The CPU has AVX2 and FMA; `b` holds `kc` steps of `n` columns (through its strides).
#[target_feature(enable = "avx2,fma")]
unsafe fn pack_panels(kc: usize, n: usize, b: Strided, panels: &mut [f32]) {
    // SAFETY: the caller's contract bounds `b`; the assert bounds `panels`.
    unsafe {
        assert!(panels.len() >= kc * n);
        let out = panels.as_mut_ptr();
        for p in 0..kc {
            let src = b.ptr.add(p * b.rows);
            let mut j0 = 0;
            while j0 < n {
                let width = if n - j0 >= 16 { 16 } else { 8 };
                let dst = out.add(j0 * kc + p * width);
                for v in (0..width).step_by(8) {
                    let lane = if b.steps == 1 {
                        _mm256_loadu_ps(src.add(j0 + v))
                    } else {
                        let at = |j: usize| *src.add((j0 + v + j) * b.steps);
                        _mm256_setr_ps(at(0), at(1), at(2), at(3), at(4), at(5), at(6), at(7))
                    };
                    _mm256_storeu_ps(dst.add(v), lane);
                }
                j0 += width;
            }
        }
    }
}

/// Copies the `rows` × `kc` slice of `a` into register tiles of `MR` rows (fewer for a
/// last one), each step-major: step p's values side by side, as the tile reads them.
/// The source is read step by step.
///
/// # Safety
/// `a` holds `rows` rows of `kc` steps (through its strides).
unsafe fn pack_tiles(kc: usize, rows: usize, a: Strided, tiles: &mut [f32]) {
    // SAFETY: the caller's contract bounds `a`; writes go through the bounds-checked `tiles` slice.
    unsafe {
        assert!(tiles.len() >= kc * rows);
        for p in 0..kc {
            let src = a.ptr.add(p * a.steps);
            let mut r0 = 0;
            while r0 < rows {
                let mr = MR.min(rows - r0);
                let dst = &mut tiles[r0 * kc + p * mr..][..mr];
                if mr == MR && a.rows == 1 {
                    // A step's values side by side already (a transposed operand): one
                    // fixed-size copy rather than six.
                    let dst: &mut [f32; MR] = dst.try_into().expect("a whole tile");
                    *dst = *src.add(r0).cast::<[f32; MR]>();
                } else {
                    for (i, v) in dst.iter_mut().enumerate() {
                        *v = *src.add((r0 + i) * a.rows);
                    }
                }
                r0 += mr;
            }
        }
    }
}

/// One register tile: `c[r][j] = start + Σ_p a(r, p) · b[p·8V + j]` for `R` rows and
/// `8·V` columns, over `k` steps of a packed panel; `start` is zero, what `c` held, or
/// the bias (pointing at the tile's first column).
///
/// A left operand read along its rows (`a.steps == 1`, not packed) may come from
/// memory: every 16 steps the tile asks for the next tile's rows at the same steps, so
/// they are in cache when that tile starts (the hardware prefetcher, following six rows
/// at once, falls behind).
///
/// # Safety
/// The CPU has AVX2 and FMA; `a` holds `R` rows of `k` steps, `b` `k`·8·`V` floats, `c` `R` rows `ldc` apart of 8·`V` floats, and the bias (if any) 8·`V` floats.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize, const V: usize>(
    k: usize,
    a: Strided,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    start: Start,
) {
    // SAFETY: the caller (`product`) passes a tile inside the operands and output it was given; prefetches of the next rows use `wrapping_add` and never fault.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); V]; R];
        for (r, row) in acc.iter_mut().enumerate() {
            for (v, lane) in row.iter_mut().enumerate() {
                match start {
                    Start::Zeros => {}
                    Start::Dst => *lane = _mm256_loadu_ps(c.add(r * ldc + v * 8)),
                    Start::Bias(bias) => *lane = _mm256_loadu_ps(bias.add(v * 8)),
                }
            }
        }
        let (mut a_at, mut b_at) = (a.ptr, b);
        let step = |a_at: *const f32, b_at: *const f32, acc: &mut [[__m256; V]; R]| {
            let bv: [__m256; V] = std::array::from_fn(|v| _mm256_loadu_ps(b_at.add(v * 8)));
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*a_at.add(r * a.rows));
                for (lane, bv) in row.iter_mut().zip(&bv) {
                    *lane = _mm256_fmadd_ps(av, *bv, *lane);
                }
            }
        };
        let mut left = k;
        if a.steps == 1 {
            while left >= 16 {
                for r in R..2 * R {
                    _mm_prefetch::<_MM_HINT_T0>(a_at.wrapping_add(r * a.rows) as *const i8);
                }
                for _ in 0..16 {
                    step(a_at, b_at, &mut acc);
                    a_at = a_at.add(1);
                    b_at = b_at.add(8 * V);
                }
                left -= 16;
            }
        }
        for _ in 0..left {
            step(a_at, b_at, &mut acc);
            a_at = a_at.add(a.steps);
            b_at = b_at.add(8 * V);
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, lane) in row.iter().enumerate() {
                _mm256_storeu_ps(c.add(r * ldc + v * 8), *lane);
            }
        }
    }
}
