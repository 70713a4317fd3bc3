//! Activation gradients that run as kernels of their own.

use rayon::prelude::*;

/// `dz = dy` where the ReLU's output `y` is positive, else 0: dL/dz through a ReLU, in
/// parallel chunks. `dz` is overwritten.
pub fn relu_backward(dy: &[f32], y: &[f32], dz: &mut [f32]) {
    assert!(
        dy.len() == dz.len() && y.len() == dz.len(),
        "relu_backward lengths"
    );
    // One pass that writes dz, rather than a copy of dy and a pass over the copy.
    const CHUNK: usize = 1 << 15;
    let chunks = dz.par_chunks_mut(CHUNK).zip(dy.par_chunks(CHUNK));
    chunks.zip(y.par_chunks(CHUNK)).for_each(|((dz, dy), y)| {
        let lanes = dz.iter_mut().zip(dy).zip(y);
        lanes.for_each(|((z, &d), &y)| *z = if y > 0.0 { d } else { 0.0 });
    });
}

use super::elementwise::in_chunks;
use super::simd::{dispatch, madd};

/// log₂e, and ln 2 split in two (Cody and Waite) so that n·ln 2 is subtracted exactly.
const LOG2_E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// eˣ within 2·10⁻⁷ relative over f32's normal range, in straight-line arithmetic that
/// the compiler vectorises in slice loops (std's `exp` is a library call per value):
/// x = n·ln 2 + r with |r| ≤ ln 2 / 2, Cephes's polynomial for eʳ, and 2ⁿ written into
/// the exponent bits. Inputs are clamped to where eˣ is a normal f32, so the result is
/// finite and not subnormal; NaN stays NaN.
#[inline(always)]
pub fn exp<const FMA: bool>(x: f32) -> f32 {
    let x = x.clamp(-87.33, 88.37);
    let n = madd::<FMA>(x, LOG2_E, 0.5).floor();
    let r = madd::<FMA>(n, -LN2_HI, x);
    let r = madd::<FMA>(n, -LN2_LO, r);
    let mut p = 1.987_569_1e-4;
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        p = madd::<FMA>(p, r, c);
    }
    let er = madd::<FMA>(p, r * r, r + 1.0);
    // n as an integer without a float-to-int conversion (which does not vectorise):
    // 1.5·2²³ + n holds n in its low mantissa bits.
    let n = (n + 12_582_912.0).to_bits().wrapping_sub(0x4B40_0000);
    er * f32::from_bits(n.wrapping_add(127) << 23)
}

#[inline(always)]
fn sigmoid_slice<const FMA: bool>(data: &mut [f32]) {
    data.iter_mut()
        .for_each(|v| *v = 1.0 / (1.0 + exp::<FMA>(-*v)));
}

#[inline(always)]
fn silu_slice<const FMA: bool>(data: &mut [f32]) {
    data.iter_mut().for_each(|v| *v /= 1.0 + exp::<FMA>(-*v));
}

#[inline(always)]
fn relu_slice<const FMA: bool>(data: &mut [f32]) {
    data.iter_mut().for_each(|v| *v = v.max(0.0));
}

#[inline(always)]
fn relu6_slice<const FMA: bool>(data: &mut [f32]) {
    data.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0));
}

/// ReLU, max(x, 0), in place.
pub fn relu(data: &mut [f32]) {
    in_chunks(data, |chunk| dispatch!(relu_slice(chunk)));
}

/// ReLU6, min(max(x, 0), 6), in place.
pub fn relu6(data: &mut [f32]) {
    in_chunks(data, |chunk| dispatch!(relu6_slice(chunk)));
}

/// The logistic sigmoid 1 / (1 + e⁻ˣ), in place.
pub fn sigmoid(data: &mut [f32]) {
    in_chunks(data, |chunk| dispatch!(sigmoid_slice(chunk)));
}

/// SiLU (swish), x / (1 + e⁻ˣ), in place.
pub fn silu(data: &mut [f32]) {
    in_chunks(data, |chunk| dispatch!(silu_slice(chunk)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ten_millionths_of_std_over_the_normal_range() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            for v in [x, x + 1e-3, x + 0.37] {
                let want = (v as f64).exp();
                for got in [exp::<true>(v), exp::<false>(v)] {
                    worst = worst.max(((got as f64 - want) / want).abs());
                }
            }
            x += 0.011;
        }
        assert!(worst < 2e-7, "worst relative error {worst:e}");
        assert_eq!(exp::<true>(0.0), 1.0);
        assert!(exp::<true>(f32::NAN).is_nan());
        assert!(exp::<true>(1e6).is_finite() && exp::<true>(-1e6) > 0.0);
    }

    #[test]
    fn sigmoid_and_silu_match_the_scalar_forms() {
        let x: Vec<f32> = (0..70_001).map(|i| (i as f32 - 35_000.0) * 1e-3).collect();
        let (mut s, mut w) = (x.clone(), x.clone());
        sigmoid(&mut s);
        silu(&mut w);
        for ((&x, s), w) in x.iter().zip(s).zip(w) {
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            assert!(
                (s as f64 - want).abs() <= 4e-7 * want,
                "sigmoid({x}) = {s}, not {want}"
            );
            let want = x as f64 * want;
            assert!(
                (w as f64 - want).abs() <= 4e-7 * want.abs() + 1e-30,
                "silu({x}) = {w}, not {want}"
            );
        }
    }
}
