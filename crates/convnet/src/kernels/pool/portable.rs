//! The pooling loops, per output row (forward) and per image (backward).

use super::{PoolGeometry, PoolKind};

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
        let mut first = true;
        o.fill(0.0);
        for iy in rows {
            for ix in cols.clone() {
                let xs = &x_image[(iy * g.in_w + ix) * c..][..c];
                match kind {
                    PoolKind::Max if first => o.copy_from_slice(xs),
                    PoolKind::Max => o.iter_mut().zip(xs).for_each(|(o, &v)| *o = o.max(v)),
                    PoolKind::Average => o.iter_mut().zip(xs).for_each(|(o, &v)| *o += v),
                }
                first = false;
            }
        }
        if kind == PoolKind::Average && cells > 0 {
            let inv = 1.0 / cells as f32;
            o.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

#[inline(always)]
pub(super) fn backward_image<const FMA: bool>(
    g: &PoolGeometry,
    kind: PoolKind,
    x: &[f32],
    dy: &[f32],
    n: usize,
    dx_image: &mut [f32],
) {
    let c = g.channels;
    let image_out = g.out_h * g.out_w * c;
    let x_image = &x[n * dx_image.len()..][..dx_image.len()];
    let dy_image = &dy[n * image_out..][..image_out];
    dx_image.fill(0.0);
    // The window's maximum, and whether its gradient found its cell yet (all bits set
    // once it did): the gradient is masked in with bit operations, not branches or
    // conditional stores, so the loop vectorises well.
    let (mut max, mut taken) = (vec![0.0f32; c], vec![0u32; c]);
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            let (rows, cols) = g.window(oy, ox);
            let grad = &dy_image[(oy * g.out_w + ox) * c..][..c];
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
                    max.fill(f32::NEG_INFINITY);
                    for at in cells() {
                        max.iter_mut()
                            .zip(&x_image[at..][..c])
                            .for_each(|(m, &v)| *m = m.max(v));
                    }
                    taken.fill(0);
                    for at in cells() {
                        let (d, xs) = (&mut dx_image[at..][..c], &x_image[at..][..c]);
                        let lanes = d.iter_mut().zip(xs).zip(grad).zip(&max).zip(&mut taken);
                        for ((((d, &x), &g), &m), t) in lanes {
                            let hit = if x == m { u32::MAX } else { 0 } & !*t;
                            *d += f32::from_bits(g.to_bits() & hit);
                            *t |= hit;
                        }
                    }
                }
            }
        }
    }
}
