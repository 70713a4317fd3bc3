//! The AVX-512 route of [`matmul_packed`](super::matmul_packed): our own product for a
//! left operand read along its rows (a 1x1 layer's pixels × channels, an im2col tile's
//! pixels × patch, or a few-channel layer's windows read from its input through a
//! table of step offsets, [`LeftRows`]) and a right operand packed once (the layer's
//! kernel).
//!
//! The `gemm` crate packs both operands into its own layout on every call; for a
//! convolution's forward pass the left operand is the big one (the activations), and
//! packing took a seventh of MobileNetV2's time. This product reads it in place, one
//! broadcast per row and step. The right operand is packed ahead of time ([`pack`]) into
//! panels of 64 columns, each a block of at most [`KC`] steps, so a panel block stays in
//! L1 while the row tiles sweep it. A register tile is 6 rows × 64 columns, 24
//! accumulators of 16 lanes; the last vector of a row goes through a mask, so any column
//! count works. After a tile's last block its outputs are finished in registers (the
//! per-column affine map and the clamp of a ReLU) and stored once.
//!
//! The rows go in chunks whose left operand stays in L2; each output element is summed
//! by one tile in a fixed order (its steps in order, block by block), so the result
//! depends on neither threads nor chunking.

use super::avx2::Strided;
use super::{LeftRows, PackedRight};
use crate::kernels::{Clamp, Epilogue};
use std::arch::x86_64::*;

/// Rows of the register tile.
const MR: usize = 6;
/// Columns of a panel: four vectors of 16.
const NR: usize = 64;
/// Steps of the depth per block: a full panel block is then 32 KiB.
const KC: usize = 128;
/// Floats of the left operand a row chunk may hold: 128 KiB, a quarter of L2.
const CHUNK_FLOATS: usize = 32 * 1024;

/// Floats of `k`×`n` packed: the columns rounded up to whole vectors.
pub(super) fn packed_len(k: usize, n: usize) -> usize {
    k * n.next_multiple_of(16)
}

/// Packs `b` (`k`×`n` through any strides) into `out` ([`packed_len`] floats): for each
/// block of [`KC`] steps, for each panel of [`NR`] columns, the block's steps one after
/// another, each the panel's columns rounded up to whole vectors (zeros past the last
/// column).
///
/// # Safety
/// `b` holds `k` steps of `n` columns through its strides.
pub(super) unsafe fn pack(k: usize, n: usize, b: Strided, out: &mut [f32]) {
    assert_eq!(out.len(), packed_len(k, n));
    let mut at = 0;
    for k0 in (0..k).step_by(KC) {
        for j0 in (0..n).step_by(NR) {
            let width = NR.min(n - j0);
            let stride = width.next_multiple_of(16);
            for p in k0..(k0 + KC).min(k) {
                let row = &mut out[at..][..stride];
                for (j, v) in row[..width].iter_mut().enumerate() {
                    // SAFETY: the caller's contract bounds `b`; `p < k`, `j0 + j < n`.
                    *v = unsafe { *b.ptr.add(p * b.rows + (j0 + j) * b.steps) };
                }
                row[width..].fill(0.0);
                at += stride;
            }
        }
    }
}

/// What a tile does before it stores its last block: `v·scale + shift` per column when
/// `scale` is not null, then, with a clamp `(lo, hi)`, `min(hi, max(lo, v))`.
#[derive(Clone, Copy)]
struct Finish {
    scale: *const f32,
    shift: *const f32,
    clamp: Option<(f32, f32)>,
}

/// [`product`] over all `m` rows of `a`, split between `threads` of rayon's threads in
/// work items of whole tiles: row blocks and column groups of whole panels. Each row
/// block reads all of its columns' panels, and each column group all of its rows, so
/// the split goes first along the side whose operand is the smaller and the bigger one
/// is read once (a batch-1 layer's last 7x7 pixels have far more weights than pixels).
/// The tiles and panels are shared out as evenly as they go, in a few items per thread,
/// so that no thread is left with one item more than the others (9 panels in groups of
/// 3 were three items for two threads).
///
/// The caller (`matmul_packed_rows`) has checked that `a` holds `m` rows of `b.k`
/// steps, `dst` `m`×`b.n`, and the epilogue's vectors `b.n` floats each.
#[allow(clippy::too_many_arguments)]
pub(super) fn split_product(
    m: usize,
    a: LeftRows,
    b: &PackedRight,
    epilogue: &Epilogue,
    clamp: Clamp,
    dst: &mut [f32],
    ldd: usize,
    threads: usize,
) {
    let (k, n) = (b.k, b.n);
    let wanted = if threads > 1 { 4 * threads } else { 1 };
    let (tiles, panels) = (m.div_ceil(MR), n.div_ceil(NR));
    let (row_blocks, column_groups) = if n > m {
        let groups = panels.min(wanted);
        (tiles.min(wanted.div_ceil(groups)), groups)
    } else {
        let blocks = tiles.min(wanted);
        (blocks, panels.min(wanted.div_ceil(blocks)))
    };
    // Where part `i` of `whole` things cut into `parts` starts.
    let start = |i: usize, parts: usize, whole: usize| i * whole / parts;
    // Raw parts as addresses, so that the items can run on any thread.
    let address = |v: Option<&[f32]>| v.map_or(std::ptr::null(), <[f32]>::as_ptr) as usize;
    let affine = epilogue.affine;
    let (bias, scale, shift) = (
        address(epilogue.bias),
        address(affine.map(|f| f.scale)),
        address(affine.map(|f| f.shift)),
    );
    let (a_at, b_at, dst_at) = (
        a.data.as_ptr() as usize,
        b.data.as_ptr() as usize,
        dst.as_mut_ptr() as usize,
    );
    let offsets = a.offsets.map_or(std::ptr::null(), <[u32]>::as_ptr) as usize;
    let item = |i: usize| {
        let (block, group) = (i / column_groups, i % column_groups);
        let first = start(block, row_blocks, tiles) * MR;
        let end = (start(block + 1, row_blocks, tiles) * MR).min(m);
        let first_panel = start(group, column_groups, panels);
        let end_panel = start(group + 1, column_groups, panels);
        let window = Window {
            m: end - first,
            columns: first_panel * NR..(end_panel * NR).min(n),
        };
        let left = Left {
            ptr: (a_at as *const f32).wrapping_add(first * a.row_stride),
            rows: a.row_stride,
            offsets: offsets as *const u32,
        };
        let finish = Finish {
            scale: scale as *const f32,
            shift: shift as *const f32,
            clamp: clamp.bounds(),
        };
        // SAFETY: the caller checked the operands, the output and the vectors; the CPU
        // has AVX-512F (a PackedRight is made only there). Each item writes its own rows
        // × columns of `dst`, which is borrowed mutably, so no two items and no operand
        // overlap the writes.
        unsafe {
            product(
                window,
                n,
                k,
                left,
                b_at as *const f32,
                bias as *const f32,
                finish,
                (dst_at as *mut f32).add(first * ldd),
                ldd,
            )
        }
    };
    let items = row_blocks * column_groups;
    if items > 1 {
        use rayon::prelude::*;
        (0..items).into_par_iter().for_each(item);
    } else {
        item(0);
    }
}

/// A left operand as [`product`] reads it: row i starts at `ptr + i·rows`, and its
/// step p lies `offsets[p]` past that start, or `p` past it where `offsets` is null.
#[derive(Clone, Copy)]
struct Left {
    ptr: *const f32,
    rows: usize,
    offsets: *const u32,
}

/// The output window one call computes: rows `0..m` (of `a` and `dst`) and columns
/// `columns` (a range of whole panels, the last possibly partial).
struct Window {
    m: usize,
    columns: std::ops::Range<usize>,
}

/// `dst = finish(bias + a · b)` over `window`, for `a` (`k` steps) and `b` packed by
/// [`pack`] (`k`×`n`), into `dst` with rows `ldd` apart; `bias`, `finish.scale` and
/// `finish.shift` are null or `n` long.
///
/// # Safety
/// The CPU has AVX-512F; `a` holds `window.m` rows of `k` steps (its offsets, where
/// not null, `k` of them), `b` [`packed_len`] floats, `dst` `window.m` rows of `n`
/// floats `ldd` apart overlapping neither operand, and the non-null vectors `n` floats.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    window: Window,
    n: usize,
    k: usize,
    a: Left,
    b: *const f32,
    bias: *const f32,
    finish: Finish,
    dst: *mut f32,
    ldd: usize,
) {
    // SAFETY: the caller upholds the contract; every tile lies inside `m` × `n`.
    unsafe {
        assert!(k > 0);
        let table = !a.offsets.is_null();
        let padded = n.next_multiple_of(16);
        let chunk = (CHUNK_FLOATS / k / MR * MR).max(MR);
        for i0 in (0..window.m).step_by(chunk) {
            let rows = chunk.min(window.m - i0);
            for k0 in (0..k).step_by(KC) {
                let kc = KC.min(k - k0);
                let last_block = k0 + kc == k;
                for j0 in window.columns.clone().step_by(NR) {
                    let width = NR.min(n - j0);
                    let column = |v: *const f32| (!v.is_null()).then(|| v.add(j0));
                    let tile_start = if k0 > 0 {
                        Start::Dst
                    } else {
                        column(bias).map_or(Start::Zeros, Start::Bias)
                    };
                    let tile_finish = Finish {
                        scale: column(finish.scale).unwrap_or(std::ptr::null()),
                        shift: column(finish.shift).unwrap_or(std::ptr::null()),
                        ..finish
                    };
                    let tile = Tile {
                        kc,
                        b: b.add(k0 * padded + j0 * kc),
                        ldc: ldd,
                        width,
                        start: tile_start,
                        finish: last_block.then_some(tile_finish),
                    };
                    let mut r = 0;
                    while r < rows {
                        let mr = MR.min(rows - r);
                        let row = a.ptr.add((i0 + r) * a.rows);
                        let at_c = dst.add((i0 + r) * ldd + j0);
                        let vectors = width.div_ceil(16);
                        if table {
                            let steps = Table(a.offsets.add(k0));
                            kernel(mr, vectors)(&tile, row, a.rows, steps, at_c);
                        } else {
                            kernel(mr, vectors)(&tile, row.add(k0), a.rows, InOrder, at_c);
                        }
                        r += mr;
                    }
                }
            }
        }
    }
}

/// A register tile's kernel, as [`run`] takes its arguments.
type Kernel<S> = unsafe fn(&Tile, *const f32, usize, S, *mut f32);

/// The kernel of `rows` (1 to [`MR`]) × `vectors` (1 to 4) vectors of 16 columns.
fn kernel<S: Steps>(rows: usize, vectors: usize) -> Kernel<S> {
    match (rows, vectors) {
        (6, 4) => run::<6, 4, S>,
        (6, 3) => run::<6, 3, S>,
        (6, 2) => run::<6, 2, S>,
        (6, _) => run::<6, 1, S>,
        (5, 4) => run::<5, 4, S>,
        (5, 3) => run::<5, 3, S>,
        (5, 2) => run::<5, 2, S>,
        (5, _) => run::<5, 1, S>,
        (4, 4) => run::<4, 4, S>,
        (4, 3) => run::<4, 3, S>,
        (4, 2) => run::<4, 2, S>,
        (4, _) => run::<4, 1, S>,
        (3, 4) => run::<3, 4, S>,
        (3, 3) => run::<3, 3, S>,
        (3, 2) => run::<3, 2, S>,
        (3, _) => run::<3, 1, S>,
        (2, 4) => run::<2, 4, S>,
        (2, 3) => run::<2, 3, S>,
        (2, 2) => run::<2, 2, S>,
        (2, _) => run::<2, 1, S>,
        (_, 4) => run::<1, 4, S>,
        (_, 3) => run::<1, 3, S>,
        (_, 2) => run::<1, 2, S>,
        _ => run::<1, 1, S>,
    }
}

/// Where a tile's rows hold their steps: each kernel is compiled for one kind.
trait Steps: Copy {
    /// Step `p`'s distance from its row's start.
    ///
    /// # Safety
    /// `p` is a step of the block.
    unsafe fn at(self, p: usize) -> usize;

    /// Whether a row's steps follow each other (so the next rows can be prefetched).
    const IN_ORDER: bool;
}

/// Steps side by side, as in a matrix.
#[derive(Clone, Copy)]
struct InOrder;

impl Steps for InOrder {
    #[inline(always)]
    unsafe fn at(self, p: usize) -> usize {
        p
    }

    const IN_ORDER: bool = true;
}

/// Steps where a table of the block's offsets puts them.
#[derive(Clone, Copy)]
struct Table(*const u32);

impl Steps for Table {
    #[inline(always)]
    unsafe fn at(self, p: usize) -> usize {
        // SAFETY: the caller's `p` is a step of the block, which the table covers.
        unsafe { *self.0.add(p) as usize }
    }

    const IN_ORDER: bool = false;
}

/// What a tile starts from.
#[derive(Clone, Copy)]
enum Start {
    Zeros,
    Dst,
    Bias(*const f32),
}

/// What the tiles of one panel block share.
struct Tile {
    /// Steps in the block.
    kc: usize,
    /// The packed panel block.
    b: *const f32,
    /// Distance between output rows.
    ldc: usize,
    /// Columns of the panel (the last vector's lanes past it are masked).
    width: usize,
    start: Start,
    /// Applied before the store after the last block.
    finish: Option<Finish>,
}

/// One register tile: `c[r][j] = start + Σ_p a[r·lda + steps.at(p)] · b[p·16V + j]`
/// for `R` rows and the tile's `width` of `16·V` columns, over the block's steps,
/// finished when it is the last block.
///
/// Where the steps are in order, every 16 steps the tile asks for the next tile's rows
/// at the same steps, so they are in cache when that tile starts (the hardware
/// prefetcher, following six rows at once, falls behind).
///
/// # Safety
/// The CPU has AVX-512F; `a` holds `R` rows of the block's `kc` steps `lda` apart, the
/// block `kc`·16·`V` floats, `c` `R` rows `ldc` apart of `width` floats
/// (`16·(V − 1) < width <= 16·V`), and the start and finish vectors `width` floats.
#[target_feature(enable = "avx512f")]
unsafe fn run<const R: usize, const V: usize, S: Steps>(
    t: &Tile,
    a: *const f32,
    lda: usize,
    steps: S,
    c: *mut f32,
) {
    // SAFETY: the caller (`product`) passes a tile inside the operands and output it was
    // given; lanes past `width` are masked off; prefetches never fault.
    unsafe {
        let masks: [__mmask16; V] = std::array::from_fn(|v| {
            let lanes = t.width.saturating_sub(16 * v).min(16);
            ((1u32 << lanes) - 1) as __mmask16
        });
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        for (r, row) in acc.iter_mut().enumerate() {
            for (v, lane) in row.iter_mut().enumerate() {
                match t.start {
                    Start::Zeros => {}
                    Start::Dst => {
                        *lane = _mm512_maskz_loadu_ps(masks[v], c.add(r * t.ldc + v * 16))
                    }
                    Start::Bias(bias) => *lane = _mm512_maskz_loadu_ps(masks[v], bias.add(v * 16)),
                }
            }
        }
        // Steps in order walk a pointer along the rows; a table is read step by step.
        let (mut a_at, mut b_at, mut p) = (a, t.b, 0);
        let step = |a_at: &mut *const f32,
                    b_at: &mut *const f32,
                    p: &mut usize,
                    acc: &mut [[__m512; V]; R]| {
            let bv: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(b_at.add(v * 16)));
            let a_row = if S::IN_ORDER {
                *a_at
            } else {
                a.add(steps.at(*p))
            };
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a_row.add(r * lda));
                for (lane, bv) in row.iter_mut().zip(&bv) {
                    *lane = _mm512_fmadd_ps(av, *bv, *lane);
                }
            }
            *a_at = a_at.add(1);
            *b_at = b_at.add(16 * V);
            *p += 1;
        };
        let mut left = t.kc;
        while left >= 16 {
            if S::IN_ORDER {
                for r in R..2 * R {
                    _mm_prefetch::<_MM_HINT_T0>(a_at.wrapping_add(r * lda) as *const i8);
                }
            }
            // The count hidden from the compiler, which would otherwise unroll the 16
            // steps whole, slower on deep products.
            for _ in 0..std::hint::black_box(16) {
                step(&mut a_at, &mut b_at, &mut p, &mut acc);
            }
            left -= 16;
        }
        for _ in 0..left {
            step(&mut a_at, &mut b_at, &mut p, &mut acc);
        }
        if let Some(f) = t.finish {
            let bounds = f
                .clamp
                .map(|(lo, hi)| (_mm512_set1_ps(lo), _mm512_set1_ps(hi)));
            for v in 0..V {
                let affine = (!f.scale.is_null()).then(|| {
                    (
                        _mm512_maskz_loadu_ps(masks[v], f.scale.add(v * 16)),
                        _mm512_maskz_loadu_ps(masks[v], f.shift.add(v * 16)),
                    )
                });
                for row in acc.iter_mut() {
                    let mut x = row[v];
                    if let Some((scale, shift)) = affine {
                        x = _mm512_fmadd_ps(x, scale, shift);
                    }
                    if let Some((lo, hi)) = bounds {
                        // The bound first: where `x` is NaN, max and min return their
                        // second operand, so NaN passes through.
                        x = _mm512_min_ps(hi, _mm512_max_ps(lo, x));
                    }
                    row[v] = x;
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, lane) in row.iter().enumerate() {
                _mm512_mask_storeu_ps(c.add(r * t.ldc + v * 16), masks[v], *lane);
            }
        }
    }
}
