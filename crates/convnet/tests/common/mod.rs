//! Helpers shared by several test files (each includes it with `mod common;`).

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
