//! Image resizing as TensorFlow's `tf.image.resize` does it for Keras (half-pixel
//! centres, no antialiasing): each output position along an axis reads two input
//! positions (bilinear) or one (nearest), so a 2-D resize is a weighted sum of four
//! input pixels, and its gradient scatters with the same weights.

/// Where one output position along an axis reads: `lower` and `upper` (input indices)
/// mixed as `lower · (1 − lerp) + upper · lerp`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tap {
    /// The first input index.
    pub lower: usize,
    /// The second input index.
    pub upper: usize,
    /// The weight of `upper`.
    pub lerp: f32,
}

/// Bilinear taps mapping the `len` input positions from `start` onto `out` outputs:
/// output `o` samples input `(o + 0.5) · len / out − 0.5`, clamped to the window.
pub fn bilinear_taps(start: usize, len: usize, out: usize) -> Vec<Tap> {
    let scale = len as f64 / out as f64;
    let last = len.saturating_sub(1);
    (0..out)
        .map(|o| {
            let source = (o as f64 + 0.5) * scale - 0.5;
            let floor = source.floor();
            Tap {
                lower: start + (floor.max(0.0) as usize).min(last),
                upper: start + (source.ceil().max(0.0) as usize).min(last),
                lerp: (source - floor) as f32,
            }
        })
        .collect()
}

/// Nearest-neighbour taps: output `o` reads input `⌊(o + 0.5) · len / out⌋`.
pub fn nearest_taps(start: usize, len: usize, out: usize) -> Vec<Tap> {
    let scale = len as f64 / out as f64;
    let last = len.saturating_sub(1);
    (0..out)
        .map(|o| {
            let index = start + (((o as f64 + 0.5) * scale).floor() as usize).min(last);
            Tap {
                lower: index,
                upper: index,
                lerp: 0.0,
            }
        })
        .collect()
}

/// The four (input pixel, weight) pairs of each output pixel, in output order.
fn for_each_tap(rows: &[Tap], cols: &[Tap], mut f: impl FnMut(usize, [(usize, usize, f32); 4])) {
    for (oy, r) in rows.iter().enumerate() {
        for (ox, c) in cols.iter().enumerate() {
            let (ry, rx) = (r.lerp, c.lerp);
            f(
                oy * cols.len() + ox,
                [
                    (r.lower, c.lower, (1.0 - ry) * (1.0 - rx)),
                    (r.lower, c.upper, (1.0 - ry) * rx),
                    (r.upper, c.lower, ry * (1.0 - rx)),
                    (r.upper, c.upper, ry * rx),
                ],
            );
        }
    }
}

/// Resizes NHWC images `x` of shape `(n, h, w, c)` to `rows.len() × cols.len()`.
pub fn resize(x: &[f32], [n, h, w, c]: [usize; 4], rows: &[Tap], cols: &[Tap]) -> Vec<f32> {
    let out_pixels = rows.len() * cols.len();
    let mut y = vec![0f32; n * out_pixels * c];
    for (image, out) in x
        .chunks_exact(h * w * c)
        .zip(y.chunks_exact_mut(out_pixels * c))
    {
        for_each_tap(rows, cols, |o, taps| {
            let out = &mut out[o * c..(o + 1) * c];
            for (iy, ix, weight) in taps {
                if weight != 0.0 {
                    let pixel = &image[(iy * w + ix) * c..(iy * w + ix + 1) * c];
                    out.iter_mut()
                        .zip(pixel)
                        .for_each(|(o, v)| *o += weight * v);
                }
            }
        });
    }
    y
}

/// The gradient of [`resize`] with respect to `x`, from `dy`.
pub fn resize_backward(
    dy: &[f32],
    [n, h, w, c]: [usize; 4],
    rows: &[Tap],
    cols: &[Tap],
) -> Vec<f32> {
    let out_pixels = rows.len() * cols.len();
    let mut dx = vec![0f32; n * h * w * c];
    for (image, grad) in dx
        .chunks_exact_mut(h * w * c)
        .zip(dy.chunks_exact(out_pixels * c))
    {
        for_each_tap(rows, cols, |o, taps| {
            let grad = &grad[o * c..(o + 1) * c];
            for (iy, ix, weight) in taps {
                if weight != 0.0 {
                    let pixel = &mut image[(iy * w + ix) * c..(iy * w + ix + 1) * c];
                    pixel
                        .iter_mut()
                        .zip(grad)
                        .for_each(|(d, g)| *d += weight * g);
                }
            }
        });
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_follow_half_pixel_centres() {
        // Upsampling 2 → 4: sources -0.25, 0.25, 0.75, 1.25.
        let taps = bilinear_taps(0, 2, 4);
        assert_eq!(
            taps[0],
            Tap {
                lower: 0,
                upper: 0,
                lerp: 0.75
            }
        );
        assert_eq!(
            taps[1],
            Tap {
                lower: 0,
                upper: 1,
                lerp: 0.25
            }
        );
        assert_eq!(
            taps[3],
            Tap {
                lower: 1,
                upper: 1,
                lerp: 0.25
            }
        );
        // Downsampling 4 → 2 by nearest: inputs 1 and 3.
        let near: Vec<usize> = nearest_taps(0, 4, 2).iter().map(|t| t.lower).collect();
        assert_eq!(near, [1, 3]);
    }

    #[test]
    fn backward_is_the_transpose_of_forward() {
        let (rows, cols) = (bilinear_taps(1, 3, 5), bilinear_taps(0, 4, 3));
        let shape = [2, 5, 4, 3];
        let x: Vec<f32> = (0..120).map(|i| (i as f32 * 0.37).sin()).collect();
        let dy: Vec<f32> = (0..2 * 5 * 3 * 3)
            .map(|i| (i as f32 * 0.71).cos())
            .collect();
        let y = resize(&x, shape, &rows, &cols);
        let dx = resize_backward(&dy, shape, &rows, &cols);
        let lhs: f32 = y.iter().zip(&dy).map(|(a, b)| a * b).sum();
        let rhs: f32 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-4, "{lhs} {rhs}");
    }
}
