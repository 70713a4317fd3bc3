//! Helpers shared by several test files (each includes it with `mod common;`).
#![allow(dead_code)] // each test file uses some of these

use convnet::initializers::rng_from_seed;
use convnet::Tensor;
use rand::RngExt;

/// A tensor of `shape` with values drawn uniformly from [−1, 1) by a generator seeded
/// with `seed`.
pub fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = rng_from_seed(seed);
    let n = shape.iter().product();
    Tensor::new(
        shape.to_vec(),
        (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect(),
    )
    .unwrap()
}

/// The largest difference between `got` and `want`, relative to `want`'s largest
/// magnitude.
pub fn max_relative(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.shape(), want.shape());
    let scale = want
        .data()
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(1e-30);
    got.data()
        .iter()
        .zip(want.data())
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}
