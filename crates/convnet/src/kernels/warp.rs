//! Affine image warps as TensorFlow's `ImageProjectiveTransformV3` computes them for
//! Keras's RandomRotation, RandomTranslation and RandomZoom: each output pixel (x, y)
//! reads the input at (a0·x + a1·y + a2, b0·x + b1·y + b2), that point is folded back
//! into the image by the fill mode, and sampled bilinearly or at the nearest pixel.
//! The arithmetic is f32, as TensorFlow's, so that points landing on pixel edges fold
//! the same way.
//!
//! A warp is a weighted sum of at most four input pixels per output pixel (plus the
//! constant fill), so it is planned once as taps, run forward, and its gradient
//! scatters `dy` back with the same weights.

/// How a warp treats a point outside the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Mirrored about the edge, the edge pixel repeated (`d c b a | a b c d`).
    Reflect,
    /// Wrapped around to the opposite edge.
    Wrap,
    /// The nearest edge pixel.
    Nearest,
    /// A constant value.
    Constant,
}

/// How a warp samples between pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    /// The four surrounding pixels, weighted by distance.
    Bilinear,
    /// The nearest pixel (halves rounded away from zero).
    Nearest,
}

/// One output pixel's reads: input pixels (row-major indices) and their weights; the
/// weight that falls outside the image is `outside`, taken by the constant fill.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PixelTaps {
    /// Input pixel indices, `row · width + column`.
    pub pixels: [u32; 4],
    /// Their weights; unused slots weigh 0.
    pub weights: [f32; 4],
    /// The weight of the fill value.
    pub outside: f32,
}

/// TensorFlow's `MapCoordinate` for `fill`: folds coordinate `x` of an axis of `len`
/// pixels into [0, len − 1] (left alone for the constant fill, whose reads outside
/// take the fill value).
fn fold(x: f32, len: usize, fill: Fill) -> f32 {
    let last = len as f32 - 1.0;
    match fill {
        Fill::Constant => x,
        Fill::Nearest => x.clamp(0.0, last),
        _ if len <= 1 => 0.0,
        Fill::Reflect => {
            let period = 2.0 * len as f32;
            let mut x = x;
            if x < 0.0 {
                x += period * (-x / period).trunc();
                x = if x < -(len as f32) {
                    x + period
                } else {
                    -x - 1.0
                };
            } else if x > last {
                x -= period * (x / period).trunc();
                if x >= len as f32 {
                    x = period - x - 1.0;
                }
            }
            x.clamp(0.0, last)
        }
        Fill::Wrap => {
            let span = last;
            let mut x = x;
            if x < 0.0 {
                x += len as f32 * ((-x / span).trunc() + 1.0);
            } else if x > last {
                x -= len as f32 * (x / span).trunc();
            }
            x.clamp(0.0, last)
        }
    }
}

/// The taps of the warp `matrix` = (a0, a1, a2, b0, b1, b2) over a `height`×`width`
/// image, one per output pixel in row-major order.
pub fn affine_taps(
    matrix: [f32; 6],
    height: usize,
    width: usize,
    fill: Fill,
    sampling: Sampling,
) -> Vec<PixelTaps> {
    let [a0, a1, a2, b0, b1, b2] = matrix;
    let inside = |row: f32, col: f32| {
        row >= 0.0 && col >= 0.0 && (row as usize) < height && (col as usize) < width
    };
    let index = |row: f32, col: f32| (row as usize * width + col as usize) as u32;
    let mut taps = Vec::with_capacity(height * width);
    for y in 0..height {
        for x in 0..width {
            let (xf, yf) = (x as f32, y as f32);
            let col = fold(a0 * xf + a1 * yf + a2, width, fill);
            let row = fold(b0 * xf + b1 * yf + b2, height, fill);
            let mut tap = PixelTaps::default();
            let mut slot = 0;
            let mut read = |r: f32, c: f32, weight: f32| {
                if inside(r, c) {
                    tap.pixels[slot] = index(r, c);
                    tap.weights[slot] = weight;
                    slot += 1;
                } else {
                    tap.outside += weight;
                }
            };
            match sampling {
                Sampling::Nearest => read(row.round(), col.round(), 1.0),
                Sampling::Bilinear => {
                    let (r0, c0) = (row.floor(), col.floor());
                    let (r1, c1) = (r0 + 1.0, c0 + 1.0);
                    // TensorFlow's order: along the row first, then between the rows.
                    read(r0, c0, (r1 - row) * (c1 - col));
                    read(r0, c1, (r1 - row) * (col - c0));
                    read(r1, c0, (row - r0) * (c1 - col));
                    read(r1, c1, (row - r0) * (col - c0));
                }
            }
            taps.push(tap);
        }
    }
    taps
}

/// Warps one image (HWC, `channels` values a pixel) by its taps into `y`.
pub fn warp_forward(
    x: &[f32],
    taps: &[PixelTaps],
    channels: usize,
    fill_value: f32,
    y: &mut [f32],
) {
    for (tap, out) in taps.iter().zip(y.chunks_exact_mut(channels)) {
        for (c, v) in out.iter_mut().enumerate() {
            let mut sum = tap.outside * fill_value;
            for (p, w) in tap.pixels.iter().zip(&tap.weights) {
                sum += w * x[*p as usize * channels + c];
            }
            *v = sum;
        }
    }
}

/// Adds the gradient of one warped image's output `dy` to `dx`, the input's.
pub fn warp_backward_input(dy: &[f32], taps: &[PixelTaps], channels: usize, dx: &mut [f32]) {
    for (tap, g) in taps.iter().zip(dy.chunks_exact(channels)) {
        for (p, w) in tap.pixels.iter().zip(&tap.weights) {
            if *w != 0.0 {
                let base = *p as usize * channels;
                for (d, g) in dx[base..base + channels].iter_mut().zip(g) {
                    *d += w * g;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_as_tensorflow_does() {
        // Reflect about the half pixel: -1 → 0, -1.5 → 0.5, 4 → 3, 4.5 → 2.5 (len 4).
        for (x, want) in [
            (-1.0, 0.0),
            (-1.5, 0.5),
            (4.0, 3.0),
            (4.5, 2.5),
            (-9.0, 0.0),
            (9.5, 1.5),
        ] {
            assert_eq!(fold(x, 4, Fill::Reflect), want, "reflect {x}");
        }
        for (x, want) in [(-1.0, 3.0), (4.0, 0.0), (3.5, 0.0), (-0.5, 3.0)] {
            assert_eq!(fold(x, 4, Fill::Wrap), want, "wrap {x}");
        }
        assert_eq!(fold(-2.0, 4, Fill::Nearest), 0.0);
        assert_eq!(fold(7.0, 4, Fill::Nearest), 3.0);
        assert_eq!(fold(-2.0, 4, Fill::Constant), -2.0);
    }

    #[test]
    fn the_gradient_is_the_adjoint_of_the_warp() {
        let (height, width, channels) = (5, 6, 2);
        let x: Vec<f32> = (0..height * width * channels)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0)
            .collect();
        let r: Vec<f32> = (0..height * width * channels)
            .map(|i| ((i * 53 % 13) as f32 - 6.0) / 5.0)
            .collect();
        let (c, s) = (0.3f32.cos(), 0.3f32.sin());
        for fill in [Fill::Reflect, Fill::Wrap, Fill::Nearest, Fill::Constant] {
            for sampling in [Sampling::Bilinear, Sampling::Nearest] {
                let taps = affine_taps(
                    [c * 1.2, -s, 0.7, s, c * 0.9, -1.3],
                    height,
                    width,
                    fill,
                    sampling,
                );
                let mut y = vec![0.0; x.len()];
                warp_forward(&x, &taps, channels, 0.0, &mut y);
                let mut dx = vec![0.0; x.len()];
                warp_backward_input(&r, &taps, channels, &mut dx);
                let lhs: f64 = y.iter().zip(&r).map(|(a, b)| f64::from(a * b)).sum();
                let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| f64::from(a * b)).sum();
                assert!(
                    (lhs - rhs).abs() < 1e-4,
                    "{fill:?} {sampling:?}: {lhs} vs {rhs}"
                );
            }
        }
    }

    #[test]
    fn the_identity_warp_copies_and_the_constant_fill_fills() {
        let taps = affine_taps(
            [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            3,
            4,
            Fill::Reflect,
            Sampling::Bilinear,
        );
        let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let mut y = vec![0.0; 12];
        warp_forward(&x, &taps, 1, 0.0, &mut y);
        assert_eq!(y, x);
        // Shifted right by 10 columns: nothing of the image is left.
        let taps = affine_taps(
            [1.0, 0.0, -10.0, 0.0, 1.0, 0.0],
            3,
            4,
            Fill::Constant,
            Sampling::Bilinear,
        );
        warp_forward(&x, &taps, 1, 2.5, &mut y);
        assert!(y.iter().all(|v| *v == 2.5));
    }
}
