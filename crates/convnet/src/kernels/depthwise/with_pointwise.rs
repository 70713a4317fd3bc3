//! A depthwise convolution run with the 1x1 convolutions around it, for inference:
//! MobileNet's and EfficientNet's block, expansion → depthwise → projection. Their
//! outputs, the biggest tensors in these networks (112x112x96 in MobileNetV2), are
//! never made whole:
//! - **before**: each task makes the expanded rows its depthwise rows read, one
//!   product per row, into a ring of a kernel's height of rows that stays in cache;
//! - **after**: each depthwise output row goes into a row buffer, and the projection's
//!   product reads it from there.
//!
//! The expanded tensor and the depthwise output are then not written out to memory by
//! one layer and read back by the next. Rows are made in order and each once per task;
//! with a 1x1 layer before, a task after an image's first makes again the rows its
//! first output row shares with the task before (a kernel's height less the stride).

use super::{vector_lanes, vector_row};
use crate::activations::ActivationFn;
use crate::buffers::Scratch;
use crate::kernels::conv::ConvGeometry;
use crate::kernels::gemm::{matmul_packed, MatRef, PackedRight};
use crate::kernels::Epilogue;
use rayon::prelude::*;

/// Below this many bytes the tensor between two of the layers stays in cache anyway
/// (a 28x28 or smaller layer), and the per-row products only add calls.
const BETWEEN_ABOVE_BYTES: usize = 1 << 20;

/// A 1x1 convolution next to the depthwise one.
pub struct Pointwise<'a> {
    /// Its kernel packed for the product (input × output channels).
    pub kernel: &'a PackedRight,
    /// Its epilogue (bias, folded BatchNormalization, activation).
    pub epilogue: Epilogue<'a>,
}

impl Pointwise<'_> {
    /// `out = epilogue(a · kernel)` for `rows` rows of `a`, on this thread.
    fn rows(&self, rows: usize, a: &[f32], out: &mut [f32]) {
        let (depth, width) = self.kernel.shape();
        let a = MatRef::row_major(&a[..rows * depth], depth);
        let out = &mut out[..rows * width];
        let after = matmul_packed(rows, a, self.kernel, out, width, &self.epilogue, false);
        if after != ActivationFn::Linear {
            after.apply_slice(out, width);
        }
    }
}

/// Whether [`forward`] runs depthwise geometry `g` with the 1x1 layers `before` and
/// `after` it: one filter per channel, a kernel that the register-blocked rows run on
/// this CPU, channels that match, and a tensor between two of the layers too big to
/// stay in cache.
pub fn suits(g: &ConvGeometry, before: Option<&Pointwise>, after: Option<&Pointwise>) -> bool {
    let big = |floats: usize| 4 * floats > BETWEEN_ABOVE_BYTES;
    g.groups == g.in_c
        && g.out_c == g.in_c
        && vector_lanes(g, 1) > 0
        && before.is_none_or(|p| p.kernel.shape().1 == g.in_c)
        && after.is_none_or(|p| p.kernel.shape().0 == g.out_c)
        && (before.is_some() && big(g.input_len()) || after.is_some() && big(g.output_len()))
}

/// `y = after(depthwise(before(x)))`, each layer with its epilogue, a missing 1x1 layer
/// left out; `y` is overwritten. `x` holds `g.batch × g.in_h × g.in_w` pixels of
/// `before`'s depth (of `g.in_c` without it), `y` `g.out_h × g.out_w` pixels per image
/// of `after`'s width (of `g.out_c`). The caller has checked [`suits`].
pub fn forward(
    before: Option<&Pointwise>,
    x: &[f32],
    g: &ConvGeometry,
    w: &[f32],
    epilogue: Epilogue,
    after: Option<&Pointwise>,
    y: &mut [f32],
) {
    assert!(
        suits(g, before, after),
        "depthwise with pointwise: geometry"
    );
    let x_pixel = before.map_or(g.in_c, |p| p.kernel.shape().0);
    let y_pixel = after.map_or(g.out_c, |p| p.kernel.shape().1);
    let x_row = g.in_w * x_pixel;
    assert_eq!(
        x.len(),
        g.batch * g.in_h * x_row,
        "depthwise block input length"
    );
    assert_eq!(w.len(), g.kernel_len(), "depthwise kernel length");
    let row_len = g.out_w * y_pixel;
    assert_eq!(
        y.len(),
        g.batch * g.out_h * row_len,
        "depthwise block output length"
    );
    if row_len == 0 {
        return;
    }
    let lanes = vector_lanes(g, 1);
    // With a 1x1 layer before, as many tasks as threads (at least one per image): each
    // task after an image's first makes some rows again, so more would cost more
    // products. Without, more tasks share the rows out more evenly.
    let tasks = if before.is_some() { 1 } else { 4 } * rayon::current_num_threads();
    let per_image = tasks.div_ceil(g.batch).clamp(1, g.out_h.max(1));
    let mut bands = Vec::with_capacity(g.batch * per_image);
    for (n, image) in y.chunks_exact_mut(g.out_h * row_len).enumerate() {
        let mut rest = image;
        for b in 0..per_image {
            let first = b * g.out_h / per_image;
            let end = (b + 1) * g.out_h / per_image;
            let (band, tail) = rest.split_at_mut((end - first) * row_len);
            rest = tail;
            bands.push((n, first, band));
        }
    }
    // The ring: input row iy of the depthwise layer in slot iy mod `span`. An output
    // row reads rows from its span only, whose rows lie in distinct slots.
    let span = (g.kernel_h - 1) * g.dilation_h + 1;
    let input_row = g.in_w * g.in_c;
    let depthwise_row = g.out_w * g.out_c;
    bands.into_par_iter().for_each(|(n, first, band)| {
        let mut ring = Scratch::new(if before.is_some() {
            span * input_row
        } else {
            0
        });
        let mut between = Scratch::new(if after.is_some() { depthwise_row } else { 0 });
        // The first input row not yet in the ring.
        let mut next = 0;
        for (r, y_row) in band.chunks_exact_mut(row_len).enumerate() {
            let oy = first + r;
            let out = if after.is_some() {
                &mut between[..]
            } else {
                &mut *y_row
            };
            // SAFETY (both calls): `lanes` is `vector_lanes`'s choice for `g` (not 0:
            // `suits`).
            if let Some(before) = before {
                let top = (oy * g.stride_h).saturating_sub(g.pad_top);
                let bottom = (oy * g.stride_h + span)
                    .saturating_sub(g.pad_top)
                    .min(g.in_h);
                for iy in next.max(top)..bottom {
                    let a = &x[(n * g.in_h + iy) * x_row..][..x_row];
                    before.rows(g.in_w, a, &mut ring[(iy % span) * input_row..]);
                }
                next = next.max(bottom);
                let slot = |iy: usize| (iy % span) * input_row;
                unsafe { vector_row(lanes, g, &ring, slot, w, epilogue, oy, false, out) };
            } else {
                let row_at = |iy: usize| (n * g.in_h + iy) * input_row;
                unsafe { vector_row(lanes, g, x, row_at, w, epilogue, oy, false, out) };
            }
            if let Some(after) = after {
                after.rows(g.out_w, &between, y_row);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::conv2d_forward_with;
    use crate::kernels::depthwise::depthwise_forward_with;
    use crate::kernels::Affine;

    /// A layer's weights: values in [-0.5, 0.5) from `seed`.
    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104729) % 97) as f32 / 97.0 - 0.5)
            .collect()
    }

    /// The block made in one pass against its layers run one after the other, with a
    /// 1x1 layer before, after or both, on geometries whose rings wrap, skip rows
    /// (stride 2) and start in the padding, in several tasks.
    #[test]
    fn matches_the_layers_run_in_turn() {
        let cases = [
            (
                1,
                40,
                48,
                8,
                144,
                3,
                1,
                1,
                ActivationFn::Relu6,
                (true, false),
            ),
            (
                2,
                33,
                40,
                24,
                128,
                3,
                2,
                1,
                ActivationFn::Silu,
                (true, true),
            ),
            (
                1,
                60,
                60,
                16,
                96,
                5,
                2,
                2,
                ActivationFn::Relu6,
                (true, true),
            ),
            (
                1,
                30,
                64,
                16,
                160,
                5,
                1,
                2,
                ActivationFn::Linear,
                (true, false),
            ),
            (
                1,
                57,
                50,
                0,
                96,
                3,
                1,
                1,
                ActivationFn::Linear,
                (false, true),
            ),
        ];
        for (batch, h, w, cin, c, k, stride, pad, activation, (expand, project)) in cases {
            let cin = if expand { cin } else { c };
            let x = values(batch * h * w * cin, 1);
            let (pw, pw_bias) = (values(cin * c, 2), values(c, 3));
            let scale: Vec<f32> = values(c, 4).iter().map(|v| 1.0 + v).collect();
            let shift = values(c, 5);
            let (dw, dw_bias) = (values(k * k * c, 6), values(c, 7));
            let (proj, proj_bias) = (values(c * 24, 8), values(24, 9));
            let dg = ConvGeometry::square_windows([batch, h, w, c], c, k, stride, pad, c);
            let pw_epilogue = Epilogue {
                bias: Some(&pw_bias),
                affine: Some(Affine {
                    scale: &scale,
                    shift: &shift,
                }),
                activation,
            };
            let dw_epilogue = Epilogue {
                bias: Some(&dw_bias),
                affine: None,
                activation: ActivationFn::Relu6,
            };
            let proj_epilogue = Epilogue::default().with_bias(Some(&proj_bias));
            let mut expanded = x.clone();
            if expand {
                let pg = ConvGeometry::square_windows([batch, h, w, cin], c, 1, 1, 0, 1);
                expanded = vec![0.0; pg.output_len()];
                conv2d_forward_with(&pg, &x, &pw, pw_epilogue, &mut expanded);
            }
            let mut expected = vec![0.0; dg.output_len()];
            depthwise_forward_with(&dg, &expanded, &dw, dw_epilogue, &mut expected);
            if project {
                let pg =
                    ConvGeometry::square_windows([batch, dg.out_h, dg.out_w, c], 24, 1, 1, 0, 1);
                let mut projected = vec![0.0; pg.output_len()];
                conv2d_forward_with(&pg, &expected, &proj, proj_epilogue, &mut projected);
                expected = projected;
            }
            // The route exists where products read a packed kernel (AVX-512).
            let packed =
                |w: &[f32], k: usize, n: usize| PackedRight::new(k, n, MatRef::row_major(w, n));
            let (Some(packed_pw), Some(packed_proj)) = (packed(&pw, cin, c), packed(&proj, c, 24))
            else {
                assert!(!crate::kernels::simd::has_avx512());
                return;
            };
            let before = expand.then_some(Pointwise {
                kernel: &packed_pw,
                epilogue: pw_epilogue,
            });
            let after = project.then_some(Pointwise {
                kernel: &packed_proj,
                epilogue: proj_epilogue,
            });
            let (before, after) = (before.as_ref(), after.as_ref());
            assert!(suits(&dg, before, after));
            let mut y = vec![f32::NAN; expected.len()];
            forward(before, &x, &dg, &dw, dw_epilogue, after, &mut y);
            let worst = y
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(
                worst < 1e-5,
                "{batch}x{h}x{w} k{k} s{stride}: off by {worst}"
            );
        }
    }
}
