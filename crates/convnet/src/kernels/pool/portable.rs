//! The pooling loops, per output row (forward) and per image (backward).

use super::{combine, PoolGeometry, PoolKind};

/// Channels pooled together in registers: four AVX-512 vectors.
const BLOCK: usize = 64;

#[inline(always)]
pub(super) fn forward_row<const FMA: bool>(
    g: &PoolGeometry,
    kind: PoolKind,
    x: &[f32],
    row: usize,
    y_row: &mut [f32],
) {
    let c = g.channels;
    let (n, oy) = (row / g.out_h, row % g.out_h);
    let x_image = &x[n * g.in_h * g.in_w * c..][..g.in_h * g.in_w * c];
    for (ox, o) in y_row.chunks_exact_mut(c).enumerate() {
        let (rows, cols) = g.window(oy, ox);
        let cells = rows.len() * cols.len();
        let counted = g.counted_cells(cells);
        // Each block of channels is pooled over the whole window in a local array the
        // compiler keeps in registers, and stored once.
        let pool = |start: usize, o: &mut [f32]| {
            let width = o.len();
            let mut acc = [0.0f32; BLOCK];
            let acc = &mut acc[..width];
            let mut first = true;
            for iy in rows.clone() {
                for ix in cols.clone() {
                    let xs = &x_image[(iy * g.in_w + ix) * c + start..][..width];
                    match kind {
                        PoolKind::Max if first => acc.copy_from_slice(xs),
                        _ => combine(kind, acc, xs),
                    }
                    first = false;
                }
            }
            if kind == PoolKind::Max && cells > 0 && counted > cells {
                // Padded zeros under the window.
                acc.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            if kind == PoolKind::Average && counted > 0 {
                let inv = 1.0 / counted as f32;
                acc.iter_mut().for_each(|v| *v *= inv);
            }
            o.copy_from_slice(acc);
        };
        let mut blocks = o.chunks_exact_mut(BLOCK);
        for (b, o) in blocks.by_ref().enumerate() {
            pool(b * BLOCK, o);
        }
        let rest = blocks.into_remainder();
        if !rest.is_empty() {
            pool(c - rest.len(), rest);
        }
    }
}

/// `out` = the maximum or the sum of the pixels of `x` (`out.len()` channels each);
/// zeros for no pixels.
#[inline(always)]
pub(super) fn pool_pixels<const FMA: bool>(kind: PoolKind, x: &[f32], out: &mut [f32]) {
    let mut pixels = x.chunks_exact(out.len());
    match pixels.next() {
        Some(first) => out.copy_from_slice(first),
        None => out.fill(0.0),
    }
    pixels.for_each(|xs| combine(kind, out, xs));
}

/// One image's gradient: `x_image` its input, `y_image` and `dy_image` its output and
/// output gradient.
#[inline(always)]
pub(super) fn backward_image<const FMA: bool>(
    g: &PoolGeometry,
    kind: PoolKind,
    x_image: &[f32],
    y_image: &[f32],
    dy_image: &[f32],
    dx_image: &mut [f32],
) {
    let c = g.channels;
    dx_image.fill(0.0);
    let mut taken = vec![0u32; c];
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            let (rows, cols) = g.window(oy, ox);
            let at = (oy * g.out_w + ox) * c;
            let (grad, max) = (&dy_image[at..][..c], &y_image[at..][..c]);
            let cells = || {
                rows.clone()
                    .flat_map(|iy| cols.clone().map(move |ix| (iy * g.in_w + ix) * c))
            };
            match kind {
                PoolKind::Average => {
                    let inv = 1.0 / (rows.len() * cols.len()).max(1) as f32;
                    for at in cells() {
                        dx_image[at..][..c]
                            .iter_mut()
                            .zip(grad)
                            .for_each(|(d, g)| *d += g * inv);
                    }
                }
                PoolKind::Max => {
                    to_first_max::<true>(dx_image, x_image, cells(), grad, max, &mut taken)
                }
            }
        }
    }
}

/// Max pooling's gradient for one image when the windows tile the input without
/// overlap or padding (2x2 windows at stride 2, the common case): every input cell
/// belongs to at most one window, so each is written once (the window's gradient at
/// the first cell holding its maximum, zero elsewhere), without a pass that zeroes the
/// image first or sums into it.
#[inline(always)]
pub(super) fn max_backward_disjoint<const FMA: bool>(
    g: &PoolGeometry,
    x_image: &[f32],
    y_image: &[f32],
    dy_image: &[f32],
    dx_image: &mut [f32],
) {
    let c = g.channels;
    let (ph, pw) = (g.pool_h, g.pool_w);
    // Rows and columns past the last window get no gradient.
    let (covered_h, covered_w) = (g.out_h * ph, g.out_w * pw);
    if covered_h < g.in_h || covered_w < g.in_w {
        dx_image.fill(0.0);
    }
    let mut taken = vec![0u32; c];
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            let at = (oy * g.out_w + ox) * c;
            let (grad, max) = (&dy_image[at..][..c], &y_image[at..][..c]);
            let cells = (0..ph)
                .flat_map(|i| (0..pw).map(move |j| ((oy * ph + i) * g.in_w + ox * pw + j) * c));
            to_first_max::<false>(dx_image, x_image, cells, grad, max, &mut taken);
        }
    }
}

/// Sends one window's gradient `grad` to the first of its cells (offsets into the
/// image, in window order) that holds the window's maximum `max` (the forward pass's
/// output), channel by channel: added onto `dx_image` with `ADD` (windows that overlap),
/// else written, zero in the other cells (windows that do not). `taken` is scratch of
/// `grad`'s length: whether a channel's gradient found its cell yet (all bits set once
/// it did). The gradient is masked in with bit operations, not branches or conditional
/// stores, so the loop vectorises well.
#[inline(always)]
fn to_first_max<const ADD: bool>(
    dx_image: &mut [f32],
    x_image: &[f32],
    cells: impl Iterator<Item = usize>,
    grad: &[f32],
    max: &[f32],
    taken: &mut [u32],
) {
    let c = grad.len();
    taken.fill(0);
    for at in cells {
        let (d, xs) = (&mut dx_image[at..][..c], &x_image[at..][..c]);
        let lanes = d.iter_mut().zip(xs).zip(grad).zip(max).zip(&mut *taken);
        for ((((d, &x), &g), &m), t) in lanes {
            let hit = if x == m { u32::MAX } else { 0 } & !*t;
            let routed = f32::from_bits(g.to_bits() & hit);
            *d = if ADD { *d + routed } else { routed };
            *t |= hit;
        }
    }
}
