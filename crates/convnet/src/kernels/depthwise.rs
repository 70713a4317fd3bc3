//! Depthwise convolution: each input channel convolved with its own `depth_multiplier`
//! filters, output channel `c·dm + m` from input channel `c`. Keras's kernel shape
//! (kh, kw, channels, dm) has exactly the memory layout of a grouped convolution's kernel
//! with `groups = channels`, so the same [`ConvGeometry`] describes it; but a matrix
//! product per channel would be mostly overhead, so these loops run directly over NHWC
//! rows, where the channels of a pixel are contiguous and the inner loop vectorises.

use super::conv::ConvGeometry;
use rayon::prelude::*;

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
    let dm = check(g, x.len(), w.len(), y.len());
    let (c, oc) = (g.in_c, g.out_c);
    if y.is_empty() {
        return;
    }
    // One task per output row: rows are independent and big enough to amortise rayon.
    let row_len = g.out_w * oc;
    y.par_chunks_mut(row_len)
        .enumerate()
        .for_each(|(row, y_row)| {
            y_row.fill(0.0);
            for ox in 0..g.out_w {
                let out = &mut y_row[ox * oc..(ox + 1) * oc];
                g.for_each_tap(row * g.out_w + ox, |tap, at| {
                    let (xs, ks) = (&x[at..at + c], &w[tap * oc..(tap + 1) * oc]);
                    if dm == 1 {
                        out.iter_mut()
                            .zip(xs.iter().zip(ks))
                            .for_each(|(o, (a, b))| *o += a * b);
                    } else {
                        for (ch, &a) in xs.iter().enumerate() {
                            let (o, k) = (
                                &mut out[ch * dm..(ch + 1) * dm],
                                &ks[ch * dm..(ch + 1) * dm],
                            );
                            o.iter_mut().zip(k).for_each(|(o, b)| *o += a * b);
                        }
                    }
                });
            }
        });
}

/// `dx = dL/dx` from `dy`; `dx` is overwritten.
pub fn depthwise_backward_input(g: &ConvGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let dm = check(g, dx.len(), w.len(), dy.len());
    let (c, oc) = (g.in_c, g.out_c);
    dx.fill(0.0);
    let image_in = g.in_h * g.in_w * c;
    let image_pixels = g.out_h * g.out_w;
    if image_in == 0 {
        return;
    }
    dx.par_chunks_mut(image_in)
        .enumerate()
        .for_each(|(n, dx_image)| {
            let image_geometry = ConvGeometry { batch: 1, ..*g };
            for p in 0..image_pixels {
                let grad = &dy[(n * image_pixels + p) * oc..(n * image_pixels + p + 1) * oc];
                image_geometry.for_each_tap(p, |tap, at| {
                    let ks = &w[tap * oc..(tap + 1) * oc];
                    let d = &mut dx_image[at..at + c];
                    if dm == 1 {
                        d.iter_mut()
                            .zip(grad.iter().zip(ks))
                            .for_each(|(d, (a, b))| *d += a * b);
                    } else {
                        for (ch, d) in d.iter_mut().enumerate() {
                            let r = ch * dm..(ch + 1) * dm;
                            *d += grad[r.clone()]
                                .iter()
                                .zip(&ks[r])
                                .map(|(a, b)| a * b)
                                .sum::<f32>();
                        }
                    }
                });
            }
        });
}

/// `dw += dL/dW` from the input `x` and `dy`.
pub fn depthwise_backward_kernel(g: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let dm = check(g, x.len(), dw.len(), dy.len());
    let (c, oc) = (g.in_c, g.out_c);
    // Blocks of output rows in parallel, each summing into its own copy of the (small)
    // kernel; the copies are added in block order, so the sum does not depend on how
    // threads took the work.
    const ROWS_PER_BLOCK: usize = 8;
    let rows = g.batch * g.out_h;
    let partials: Vec<Vec<f32>> = (0..rows.div_ceil(ROWS_PER_BLOCK))
        .into_par_iter()
        .map(|block| {
            let mut acc = vec![0.0f32; dw.len()];
            for row in block * ROWS_PER_BLOCK..((block + 1) * ROWS_PER_BLOCK).min(rows) {
                for p in row * g.out_w..(row + 1) * g.out_w {
                    let grad = &dy[p * oc..(p + 1) * oc];
                    g.for_each_tap(p, |tap, at| {
                        let xs = &x[at..at + c];
                        let k = &mut acc[tap * oc..(tap + 1) * oc];
                        for (o, kv) in k.iter_mut().enumerate() {
                            *kv += xs[o / dm] * grad[o];
                        }
                    });
                }
            }
            acc
        })
        .collect();
    super::sum_in_order(dw, &partials);
}
